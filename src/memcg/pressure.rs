//! `memory.pressure`: how long threads waited in the charge path, per group, and the
//! triggers that signal an eventfd when the stall within a window passes a threshold
//! (the kernel's PSI and its triggers; the arithmetic is `psi.rs`).
//!
//! A stall ([`Stall`]) runs from the first refusal of a charge (reclaim, stock drains,
//! callbacks, retries, the OOM handler) until the charge returns, and through the `high`
//! path's reclaim and throttle. It counts in the charged group and every ancestor.
//! Only those paths read the clock: the fast path, and a charge that the counters accept
//! at once, measure nothing.
//!
//! At each change (a thread entering or leaving a stall, or joining or leaving a group
//! while some thread is stalled) every level concerned is recomputed under one lock and
//! stored in its slot (`Slot::psi`) behind a sequence count that readers outside the
//! process check. `full` at a level compares its stalled members (stalled threads
//! attached to that level or below) with the threads the registry lists there.
//!
//! Triggers are checked as the kernel's `update_triggers` checks them: at every change,
//! on every read, and every window/10 while a thread sleeps in the `high` throttle. With
//! no thread of its own, a breach held back by the once-a-window rule is signalled at the
//! next of those.
//!
//! Invariants: only this module writes `Slot::psi`, always under `LOCK`; a thread is in
//! at most one stall at a time (`IN_STALL`); `STALLS` counts the threads in a stall; in a
//! fork child no thread is (`fork_child`).

#![forbid(unsafe_code)]

use super::counter::{Hierarchy, MAX_LEVELS};
use super::psi::{Psi, Values, Window, FULL, SOME, WORDS};
use super::table::{self, GROUPS, ROOT};
use super::threads;
use crate::util::spin::SpinLock;
use core::cell::Cell;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Triggers in the process.
pub const MAX_TRIGGERS: usize = 128;
/// Bounds of a trigger's window, in microseconds (the kernel's).
pub const MIN_WINDOW_US: u64 = 500_000;
pub const MAX_WINDOW_US: u64 = 10_000_000;

#[derive(Clone, Copy)]
struct Trigger {
    /// Group handle; 0 when free.
    group: u64,
    id: u32,
    kind: usize,
    user_fd: i32,
    own_fd: i32,
    threshold_ns: u64,
    win: Window,
    /// The total at the last check: a check with no new stall only sends a pending event.
    last_total: u64,
    last_event: u64,
    /// Past the threshold, held back by the once-a-window rule.
    pending: bool,
}

/// A free slot: all zero bytes, so that the table lives in `.bss` and a process that
/// registers nothing has none of it resident. A free slot's fds are never read.
const FREE: Trigger = Trigger {
    group: 0,
    id: 0,
    kind: SOME,
    user_fd: 0,
    own_fd: 0,
    threshold_ns: 0,
    win: Window {
        size: 0,
        start: 0,
        start_value: 0,
        prev_growth: 0,
    },
    last_total: 0,
    last_event: 0,
    pending: false,
};

static LOCK: SpinLock<[Trigger; MAX_TRIGGERS]> = SpinLock::new([FREE; MAX_TRIGGERS]);
/// Threads in a stall now: joining or leaving a group costs one load while 0.
static STALLS: AtomicU32 = AtomicU32::new(0);
/// Triggers registered, and a tenth of the smallest window among them (the throttle's
/// sleep slice); both read without the lock.
static NR_TRIGGERS: AtomicU32 = AtomicU32::new(0);
static SLICE_NS: AtomicU64 = AtomicU64::new(u64::MAX);
/// Bumped in a fork child: a stall begun before the fork ends without counting.
static GENERATION: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static IN_STALL: Cell<bool> = const { Cell::new(false) };
}

/// One thread's stall, from [`Stall::begin`] to its drop. A thread already in a stall
/// (the `high` path inside a charge's) begins none.
pub struct Stall {
    id: u32,
    member: u32,
    generation: u32,
    on: bool,
}

impl Default for Stall {
    fn default() -> Self {
        Self::new()
    }
}

impl Stall {
    /// No stall yet.
    pub const fn new() -> Stall {
        Stall {
            id: ROOT,
            member: ROOT,
            generation: 0,
            on: false,
        }
    }

    /// The calling thread stalls charging to `id` (once; later calls change nothing).
    pub fn begin(&mut self, id: u32) {
        if self.on || IN_STALL.with(|s| s.replace(true)) {
            return;
        }
        threads::MEMBERSHIP.install(membership_changed);
        self.on = true;
        self.id = id;
        self.member = threads::current_group();
        self.generation = GENERATION.load(Ordering::Acquire);
        STALLS.fetch_add(1, Ordering::SeqCst);
        let mut triggers = LOCK.lock();
        let now = crate::os::now_ns();
        change(id, self.member, 1, now);
        poll(&mut triggers, now);
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        if !self.on {
            return;
        }
        IN_STALL.with(|s| s.set(false));
        if GENERATION.load(Ordering::Acquire) != self.generation {
            return;
        }
        STALLS.fetch_sub(1, Ordering::SeqCst);
        let mut triggers = LOCK.lock();
        let now = crate::os::now_ns();
        change(self.id, self.member, -1, now);
        poll(&mut triggers, now);
    }
}

/// Sleeps `ns` in the `high` throttle: in slices of a tenth of the smallest trigger
/// window while there are triggers, checking them between slices.
pub fn sleep(ns: u64) {
    let mut left = ns;
    while left > 0 {
        let step = if NR_TRIGGERS.load(Ordering::Relaxed) == 0 {
            left
        } else {
            left.min(SLICE_NS.load(Ordering::Relaxed))
        };
        crate::os::sleep_ns(step);
        left -= step;
        if left > 0 && NR_TRIGGERS.load(Ordering::Relaxed) != 0 {
            let mut triggers = LOCK.lock();
            poll(&mut triggers, crate::os::now_ns());
        }
    }
}

/// `id` and its ancestors, from `id` up; the count used.
fn chain(id: u32) -> ([u32; MAX_LEVELS], usize) {
    let mut out = [ROOT; MAX_LEVELS];
    let mut n = 0;
    let mut cur = Some(id);
    while let Some(g) = cur {
        if n == out.len() {
            break;
        }
        out[n] = g;
        n += 1;
        cur = GROUPS.parent(g);
    }
    (out, n)
}

/// The first index of `chain` that is `g` or one of its ancestors: `g` is in the
/// subtree of that level and every one above it.
fn first_level(chain: &[u32], g: u32) -> Option<usize> {
    let mut cur = Some(g);
    while let Some(a) = cur {
        if let Some(i) = chain.iter().position(|&c| c == a) {
            return Some(i);
        }
        cur = GROUPS.parent(a);
    }
    None
}

/// With `LOCK` held: `delta` threads attached to `member` start (1) or end (-1) a stall
/// charging to `id`, or (0) the threads of `id`'s levels changed; every level of `id`
/// is recomputed and stored at `now`.
fn change(id: u32, member: u32, delta: i64, now: u64) {
    let (levels, n) = chain(id);
    let levels = &levels[..n];
    let mut attached = [0u64; MAX_LEVELS];
    threads::for_each_member(|g| {
        if let Some(i) = first_level(levels, g) {
            for a in &mut attached[i..n] {
                *a += 1;
            }
        }
    });
    let from = if delta == 0 {
        n
    } else {
        first_level(levels, member).unwrap_or(n)
    };
    for (i, &g) in levels.iter().enumerate() {
        let mut p = load(g);
        let stalled = p.stalled.saturating_add_signed(delta);
        let members = if i >= from {
            p.members.saturating_add_signed(delta)
        } else {
            p.members
        };
        let full = members > 0 && members >= attached[i];
        if delta != 0 || full != (p.full != 0) {
            p.set(now, stalled, members, full);
            store(g, &p);
        }
    }
}

/// The pressure state of `id` (exact under `LOCK`, where it is written).
fn load(id: u32) -> Psi {
    let w = &GROUPS.slot(id).psi;
    let mut words = [0u64; WORDS];
    for (i, v) in words.iter_mut().enumerate() {
        *v = w[1 + i].load(Ordering::Relaxed);
    }
    Psi::from_words(&words)
}

/// With `LOCK` held: stores `p` as `id`'s state, the sequence count odd meanwhile.
fn store(id: u32, p: &Psi) {
    let w = &GROUPS.slot(id).psi;
    let seq = w[0].load(Ordering::Relaxed);
    w[0].store(seq.wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    for (i, v) in p.to_words().iter().enumerate() {
        w[1 + i].store(*v, Ordering::Relaxed);
    }
    w[0].store(seq.wrapping_add(2), Ordering::Release);
}

/// With `LOCK` held: checks every trigger at `now` (`update_triggers` of the kernel).
fn poll(triggers: &mut [Trigger; MAX_TRIGGERS], now: u64) {
    for t in triggers.iter_mut().filter(|t| t.group != 0) {
        let total = load(t.id).total_at(t.kind, now);
        let new_stall = total != t.last_total;
        t.last_total = total;
        if !new_stall && !t.pending {
            continue;
        }
        if new_stall {
            let growth = t.win.update(now, total);
            if !t.pending {
                if growth < t.threshold_ns {
                    continue;
                }
                t.pending = true;
            }
        }
        if now < t.last_event.saturating_add(t.win.size) {
            continue;
        }
        crate::os::eventfd_signal(t.own_fd);
        t.last_event = now;
        t.pending = false;
    }
}

/// Told a thread joined or left `id` (`threads::MEMBERSHIP`): while some thread is
/// stalled, `full` of `id`'s levels is recomputed.
fn membership_changed(id: u32) {
    if STALLS.load(Ordering::SeqCst) == 0 {
        return;
    }
    let mut triggers = LOCK.lock();
    let now = crate::os::now_ns();
    change(id, id, 0, now);
    poll(&mut triggers, now);
}

/// What `memory.pressure` of `id` shows now; checks the triggers on the way.
pub fn read(id: u32) -> Values {
    let mut triggers = LOCK.lock();
    let now = crate::os::now_ns();
    poll(&mut triggers, now);
    load(id).values(now)
}

/// `"some"` or `"full"`.
pub fn parse_kind(kind: &[u8]) -> Option<usize> {
    match kind {
        b"some" => Some(SOME),
        b"full" => Some(FULL),
        _ => None,
    }
}

/// Registers a trigger on group `id` (handle `handle`): signalled when the stall of
/// `kind` within any `window_us` reaches `stall_us`, at most once a window. Returns the
/// caller's eventfd; `EINVAL` for a window outside 500 ms..10 s or a stall of 0 or longer
/// than the window, `ENOSPC` when the table is full.
pub fn add(id: u32, handle: u64, kind: usize, stall_us: u64, window_us: u64) -> Result<i32, i32> {
    if !(MIN_WINDOW_US..=MAX_WINDOW_US).contains(&window_us)
        || stall_us == 0
        || stall_us > window_us
    {
        return Err(libc::EINVAL);
    }
    table::GROUP_FREED[table::FREED_PRESSURE].install(group_freed);
    let (user_fd, own_fd) = crate::os::eventfd_pair()?;
    let mut triggers = LOCK.lock();
    let Some(t) = triggers.iter_mut().find(|t| t.group == 0) else {
        drop(triggers);
        crate::os::close(user_fd);
        crate::os::close(own_fd);
        return Err(libc::ENOSPC);
    };
    let now = crate::os::now_ns();
    let total = load(id).total_at(kind, now);
    *t = Trigger {
        group: handle,
        id,
        kind,
        user_fd,
        own_fd,
        threshold_ns: stall_us * 1000,
        win: Window::new(window_us * 1000, now, total),
        last_total: total,
        last_event: 0,
        pending: false,
    };
    settle(&triggers);
    Ok(user_fd)
}

/// Unregisters the trigger `fd` of group `handle` and closes both copies (the caller's
/// only with `close_user`).
pub fn remove(handle: u64, fd: i32, close_user: bool) -> Result<(), i32> {
    let t = {
        let mut triggers = LOCK.lock();
        let t = triggers
            .iter_mut()
            .find(|t| t.group == handle && t.user_fd == fd)
            .ok_or(libc::ENOENT)?;
        let t = core::mem::replace(t, FREE);
        settle(&triggers);
        t
    };
    crate::os::close(t.own_fd);
    if close_user {
        crate::os::close(t.user_fd);
    }
    Ok(())
}

/// Ends the triggers of a freed group: the library's copies are closed.
fn group_freed(handle: u64) {
    let mut triggers = LOCK.lock();
    for t in triggers.iter_mut().filter(|t| t.group == handle) {
        crate::os::close(t.own_fd);
        *t = FREE;
    }
    settle(&triggers);
}

/// With `LOCK` held: `NR_TRIGGERS` and `SLICE_NS` after the table changed.
fn settle(triggers: &[Trigger; MAX_TRIGGERS]) {
    let live = triggers.iter().filter(|t| t.group != 0);
    let slice = live
        .clone()
        .map(|t| t.win.size / 10)
        .min()
        .unwrap_or(u64::MAX);
    SLICE_NS.store(slice, Ordering::Relaxed);
    NR_TRIGGERS.store(live.count() as u32, Ordering::Relaxed);
}

/// Takes the lock for `fork()`.
pub fn lock_for_fork() {
    LOCK.lock_for_fork();
}

pub fn unlock_after_fork() {
    LOCK.force_unlock();
}

/// In a fork child, after `unlock_after_fork`: only the forking thread exists, and it
/// is in no stall that counts (one begun before the fork ends without counting).
pub fn fork_child() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    STALLS.store(0, Ordering::SeqCst);
    let _triggers = LOCK.lock();
    let now = crate::os::now_ns();
    for id in GROUPS.in_use() {
        let mut p = load(id);
        if p.stalled != 0 || p.full != 0 {
            p.set(now, 0, 0, false);
            store(id, &p);
        }
    }
}
