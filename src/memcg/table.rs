//! The group table: a fixed array of group slots addressed by id, with the tree links, the
//! page counter, events and statistics of each group, and the lifecycle that decides
//! when a slot may be reused.
//!
//! Handles: a group's public handle is `serial << 16 | id`. Serials come from one counter
//! and are never reused, so a handle naming a freed or reused slot is rejected. The root
//! is slot 0 with serial 1 and is always live.
//!
//! Lifecycle (the seed patch "kmem accounting lifecycle"): `Free → Live → (Destroying →)
//! Dying → Free`. A destroyed group becomes `Dying`: its handle stops working, its charges
//! stay, and the slot is freed by whoever observes, under the tree lock, all of
//! - state `Dying` and no pins (`refs == 0`; pins and state share one atomic word),
//! - `usage == 0` (nothing charged: no span, mapping, explicit charge or stock pages),
//! - `nr_children == 0` (no live or dying child).
//!
//! Invariants:
//! - a slot's `parent`, `depth` and `serial` change only while it is `Free` (under the
//!   tree lock) and are stable while the slot holds charges, pins, threads or children;
//! - `nr_threads > 0` implies `Live` (destroy fails with `EBUSY` instead);
//! - a charge is only ever made on a group that is pinned, has an attached thread, or
//!   already holds charges (stock pages moved back by a free), so `usage` cannot rise on
//!   a slot that some thread has decided to free.
//!
//! Who writes what: `counter.usage` any charging thread; `life` pins (any thread), state
//! transitions under the tree lock; `nr_threads` attaching threads; names, `parent`,
//! `depth`, `serial` and `nr_children` under the tree lock.

#![forbid(unsafe_code)]

use super::counter::{Hierarchy, PageCounter, Pages};
#[cfg(not(loom))]
use super::events::{Event, StatKey};
use super::events::{NR_EVENTS, NR_STATS};
use super::origin::Origin;
use crate::consts::NAME_MAX;
use crate::util::hook::Hook;
use crate::util::spin::SpinLock;
use crate::util::sync::{AtomicU32, AtomicU64, Ordering};

/// Slots in the table; INTERFACE.md asks for at least 4,096 groups, dying ones included.
pub const MAX_GROUPS: usize = 8192;
pub const ROOT: u32 = 0;
const ROOT_SERIAL: u64 = 1;

/// Slot states, in the low two bits of `life`; pins count in the rest.
pub const FREE: u32 = 0;
pub const LIVE: u32 = 1;
pub const DYING: u32 = 2;
pub const DESTROYING: u32 = 3;
const STATE_MASK: u32 = 3;
const PIN: u32 = 4;

/// The public handle of slot `id` with `serial`.
/// Told the handle of every group slot freed, to end the registrations that named it:
/// one hook per layer that keeps registrations per group ([`FREED_CALLBACKS`],
/// [`FREED_THRESHOLDS`], [`FREED_PRESSURE`]), installed by its first registration. The
/// table imports none of the layers it tells (they are above it).
pub static GROUP_FREED: [Hook<fn(u64)>; 3] = [Hook::new(), Hook::new(), Hook::new()];
pub const FREED_CALLBACKS: usize = 0;
pub const FREED_THRESHOLDS: usize = 1;
pub const FREED_PRESSURE: usize = 2;

/// Told the id of a group whose usage moved while it has thresholds (`nr_thresholds`),
/// installed by the first threshold registered.
pub static USAGE_WATCHED: Hook<fn(u32)> = Hook::new();

pub fn handle_of(id: u32, serial: u64) -> u64 {
    serial << 16 | id as u64
}

fn split_handle(h: u64) -> (u32, u64) {
    ((h & 0xffff) as u32, h >> 16)
}

/// Errors of the table, as positive errno values.
pub type Errno = i32;

#[repr(C, align(64))]
pub struct Slot {
    pub counter: PageCounter,
    /// State in bits 0-1, pin count above (`PIN` per pin).
    life: AtomicU32,
    serial: AtomicU64,
    parent: AtomicU32,
    depth: AtomicU32,
    /// Threads whose current group this is.
    pub nr_threads: AtomicU32,
    nr_children: AtomicU32,
    /// `memory.oom.policy`: 0 inherit, else `oom::Policy as u32`.
    pub oom_policy: AtomicU32,
    /// Callback-table entry of the OOM handler, plus one; 0 for none.
    pub oom_handler: AtomicU32,
    /// Registered threshold eventfds; lets the charge path skip the check.
    pub nr_thresholds: AtomicU32,
    /// Pages charged through explicit charges (`cgm_charge`), for `cgm_uncharge` checks.
    pub explicit: AtomicU64,
    /// `memory.events`: this group and its descendants.
    pub events: [AtomicU64; NR_EVENTS],
    /// `memory.events.local`.
    pub events_local: [AtomicU64; NR_EVENTS],
    /// Statistics of this group, with those of freed descendants folded in.
    pub stats: [AtomicU64; NR_STATS],
    /// When (`coarse_now_ns`) the last `memory.enforce = warn` line was written.
    pub last_warn: AtomicU64,
    /// `memory.pressure`: a sequence count (odd while being written), then the stored
    /// form of the group's `psi::Psi`, written only by `pressure.rs`.
    pub psi: [AtomicU64; 1 + super::psi::WORDS],
}

#[cfg(not(loom))]
const fn zeroed_counters<const K: usize>() -> [AtomicU64; K] {
    [const { AtomicU64::new(0) }; K]
}

#[cfg(loom)]
fn zeroed_counters<const K: usize>() -> [AtomicU64; K] {
    core::array::from_fn(|_| AtomicU64::new(0))
}

impl Slot {
    crate::util::sync::const_unless_loom! {
        pub fn new() -> Slot {
            Slot {
                counter: PageCounter::new(),
                life: AtomicU32::new(FREE),
                serial: AtomicU64::new(0),
                parent: AtomicU32::new(ROOT),
                depth: AtomicU32::new(0),
                nr_threads: AtomicU32::new(0),
                nr_children: AtomicU32::new(0),
                oom_policy: AtomicU32::new(0),
                oom_handler: AtomicU32::new(0),
                nr_thresholds: AtomicU32::new(0),
                explicit: AtomicU64::new(0),
                events: zeroed_counters(),
                events_local: zeroed_counters(),
                stats: zeroed_counters(),
                last_warn: AtomicU64::new(0),
                psi: zeroed_counters(),
            }
        }
    }
}

/// Metadata changed only under the tree lock.
pub struct TreeMeta<const N: usize> {
    names: [[u8; NAME_MAX]; N],
    name_len: [u8; N],
    /// Serials handed out after the root's: the next is `ROOT_SERIAL + 1 + serials`.
    serials: u64,
    scan_hint: usize,
}

pub struct GroupTable<const N: usize> {
    slots: [Slot; N],
    /// Slots from this index on have never been used (at least 1, the root; 0 stands for
    /// 1): scans of the table stop here, so they touch only the pages of slots in use
    /// (the table is 2 MiB). Raised under the tree lock before a slot goes live, never
    /// lowered.
    bound: AtomicU32,
    tree: SpinLock<TreeMeta<N>>,
}

/// A pin on a live (or, where asked, dying) group: the slot cannot be freed while it
/// exists.
pub struct Pin<'a, const N: usize> {
    table: &'a GroupTable<N>,
    pub id: u32,
}

impl<const N: usize> Drop for Pin<'_, N> {
    fn drop(&mut self) {
        self.table.unpin(self.id);
    }
}

impl<const N: usize> Hierarchy for GroupTable<N> {
    #[inline]
    fn counter(&self, id: u32) -> &PageCounter {
        &self.slots[id as usize].counter
    }
    #[inline]
    fn parent(&self, id: u32) -> Option<u32> {
        if id == ROOT {
            None
        } else {
            Some(self.slots[id as usize].parent.load(Ordering::Relaxed))
        }
    }
}

impl<const N: usize> GroupTable<N> {
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        GroupTable {
            slots: [const { Slot::new() }; N],
            bound: AtomicU32::new(0),
            tree: SpinLock::new(TreeMeta {
                names: [[0; NAME_MAX]; N],
                name_len: [0; N],
                serials: 0,
                scan_hint: 0,
            }),
        }
    }

    #[cfg(loom)]
    pub fn new() -> Self {
        GroupTable {
            slots: core::array::from_fn(|_| Slot::new()),
            bound: AtomicU32::new(0),
            tree: SpinLock::new(TreeMeta {
                names: [[0; NAME_MAX]; N],
                name_len: [0; N],
                serials: 0,
                scan_hint: 0,
            }),
        }
    }

    #[inline]
    pub fn slot(&self, id: u32) -> &Slot {
        &self.slots[id as usize]
    }

    pub fn state(&self, id: u32) -> u32 {
        if id == ROOT {
            LIVE
        } else {
            self.slots[id as usize].life.load(Ordering::SeqCst) & STATE_MASK
        }
    }

    /// The state, read with a read-modify-write so that it is ordered after this thread's
    /// preceding atomic updates as strictly as a fence (used where a Dekker-style check
    /// pairs it with `destroy`).
    pub fn state_fenced(&self, id: u32) -> u32 {
        if id == ROOT {
            LIVE
        } else {
            self.slots[id as usize].life.fetch_add(0, Ordering::SeqCst) & STATE_MASK
        }
    }

    pub fn serial(&self, id: u32) -> u64 {
        if id == ROOT {
            ROOT_SERIAL
        } else {
            self.slots[id as usize].serial.load(Ordering::Acquire)
        }
    }

    pub fn handle(&self, id: u32) -> u64 {
        handle_of(id, self.serial(id))
    }

    pub fn depth(&self, id: u32) -> u32 {
        self.slots[id as usize].depth.load(Ordering::Relaxed)
    }

    /// Takes a pin on the group named by `handle` if it is live (or dying, when
    /// `allow_dying`); `ENOENT` otherwise.
    pub fn pin(&self, handle: u64, allow_dying: bool) -> Result<Pin<'_, N>, Errno> {
        let (id, serial) = split_handle(handle);
        if id as usize >= N || handle == 0 {
            return Err(libc::ENOENT);
        }
        if id == ROOT {
            return if serial == ROOT_SERIAL {
                Ok(Pin { table: self, id })
            } else {
                Err(libc::ENOENT)
            };
        }
        let life = &self.slots[id as usize].life;
        let mut cur = life.load(Ordering::SeqCst);
        loop {
            let st = cur & STATE_MASK;
            let ok = st == LIVE || (allow_dying && st == DYING) || st == DESTROYING;
            if !ok {
                return Err(libc::ENOENT);
            }
            match life.compare_exchange_weak(cur, cur + PIN, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(v) => cur = v,
            }
        }
        // Pinned: the slot cannot be freed and reused now, so its serial is stable.
        let pin = Pin { table: self, id };
        if self.serial(id) != serial {
            return Err(libc::ENOENT);
        }
        // A destroy in progress resolves to live or dying under the tree lock.
        loop {
            match self.state(id) {
                DESTROYING => crate::util::sync::spin_hint(),
                LIVE => return Ok(pin),
                DYING if allow_dying => return Ok(pin),
                _ => return Err(libc::ENOENT),
            }
        }
    }

    fn unpin(&self, id: u32) {
        if id == ROOT {
            return;
        }
        let serial = self.serial(id);
        let prev = self.slots[id as usize]
            .life
            .fetch_sub(PIN, Ordering::SeqCst);
        if prev & STATE_MASK == DYING && prev >> 2 == 1 {
            self.maybe_free(id, serial);
        }
    }

    /// Frees `id` if it is dying, unpinned, empty and childless, then its dying ancestors
    /// that became free with it, and runs their clean-up hooks with no lock held.
    pub fn maybe_free(&self, id: u32, serial: u64) {
        let mut freed = [(0u32, 0u64); super::counter::MAX_LEVELS];
        let mut n = 0;
        let tree = self.tree.lock();
        let mut cur = id;
        let mut ser = serial;
        while n < freed.len() && self.try_free_locked(cur, ser) {
            freed[n] = (cur, ser);
            n += 1;
            match self.parent(cur) {
                Some(p) if p != ROOT && self.state(p) == DYING => {
                    ser = self.serial(p);
                    cur = p;
                }
                _ => break,
            }
        }
        drop(tree);
        for &(g, ser) in &freed[..n] {
            for hook in &GROUP_FREED {
                if let Some(f) = hook.get() {
                    f(handle_of(g, ser));
                }
            }
        }
    }

    /// With the tree lock held: frees the slot if every condition holds.
    fn try_free_locked(&self, id: u32, serial: u64) -> bool {
        if id == ROOT || self.serial(id) != serial {
            return false;
        }
        let s = &self.slots[id as usize];
        if s.counter.usage() != 0 || s.nr_children.load(Ordering::SeqCst) != 0 {
            return false;
        }
        if s.life
            .compare_exchange(DYING, FREE, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        let parent = s.parent.load(Ordering::Relaxed);
        let ps = &self.slots[parent as usize];
        for (i, v) in s.stats.iter().enumerate() {
            ps.stats[i].fetch_add(v.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        ps.nr_children.fetch_sub(1, Ordering::SeqCst);
        true
    }

    /// Decides whether an uncharge that left `usage == 0` at `id` should free it.
    fn check_dying(&self, id: u32, serial: u64) {
        if id != ROOT && self.slots[id as usize].life.load(Ordering::SeqCst) == DYING {
            self.maybe_free(id, serial);
        }
    }

    /// Removes `nr` pages from `id` and every ancestor (`page_counter_uncharge`), freeing
    /// dying groups whose last charge this was. Uncharging more than is charged is a bug
    /// in cgmalloc and fatal.
    pub fn uncharge(&self, id: u32, nr: Pages) {
        self.uncharge_from(id, nr, &Origin::plain("counter"));
    }

    /// `uncharge` of a charge given back by `origin`, which the fatal line of an
    /// underflow names.
    pub fn uncharge_from(&self, id: u32, nr: Pages, origin: &Origin) {
        let mut cur = Some(id);
        let mut emptied: [(u32, u64); super::counter::MAX_LEVELS] =
            [(0, 0); super::counter::MAX_LEVELS];
        let mut n = 0;
        let mut watched = [ROOT; super::counter::MAX_LEVELS];
        let mut nw = 0;
        while let Some(g) = cur {
            // Read the links before the update: once `usage` drops, another thread may free
            // the slot, but not while this walk's pages are still counted in it.
            let next = self.parent(g);
            let serial = self.serial(g);
            if self.slots[g as usize].nr_thresholds.load(Ordering::Relaxed) != 0
                && nw < watched.len()
            {
                watched[nw] = g;
                nw += 1;
            }
            let prev = self.counter(g).usage.fetch_sub(nr, Ordering::SeqCst);
            if prev < nr {
                let mut buf = [0u8; 256];
                let mut what = crate::util::fmtbuf::FmtBuf::new(&mut buf);
                what.push(b" (");
                what.push_u64(nr);
                what.push(b" pages from group ");
                what.push_u64(g as u64);
                what.push(b", charged to group ");
                what.push_u64(id as u64);
                what.push(b", which held ");
                what.push_u64(prev);
                origin.describe(&mut what);
                what.push(b")");
                crate::util::fatal::fatal(&[
                    b"page counter underflow: uncharge of more than was charged",
                    what.as_bytes(),
                ]);
            }
            if prev == nr && n < emptied.len() {
                emptied[n] = (g, serial);
                n += 1;
            }
            cur = next;
        }
        for &g in &watched[..nw] {
            if let Some(f) = USAGE_WATCHED.get() {
                f(g);
            }
        }
        for &(g, serial) in &emptied[..n] {
            self.check_dying(g, serial);
        }
    }

    /// Whether `id` is `ancestor` or below it.
    pub fn is_descendant(&self, mut id: u32, ancestor: u32) -> bool {
        loop {
            if id == ancestor {
                return true;
            }
            match self.parent(id) {
                Some(p) => id = p,
                None => return false,
            }
        }
    }

    /// One past the highest slot ever used.
    pub fn bound(&self) -> u32 {
        self.bound.load(Ordering::Acquire).max(1)
    }

    /// Ids of every live or dying slot, root first.
    pub fn in_use(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.bound()).filter(move |&id| self.state(id) != FREE)
    }

    /// Live and dying slots in the subtree of `root`, `root` included.
    pub fn subtree(&self, root: u32) -> impl Iterator<Item = u32> + '_ {
        self.in_use()
            .filter(move |&id| self.is_descendant(id, root))
    }

    /// Finds the live child of `parent` called `name`.
    fn find_child(&self, meta: &TreeMeta<N>, parent: u32, name: &[u8]) -> Option<u32> {
        (1..self.bound()).find(|&id| {
            let s = &self.slots[id as usize];
            s.life.load(Ordering::SeqCst) & STATE_MASK == LIVE
                && s.parent.load(Ordering::Relaxed) == parent
                && &meta.names[id as usize][..meta.name_len[id as usize] as usize] == name
        })
    }

    /// Resolves a validated path to the id of a live group.
    fn resolve(&self, meta: &TreeMeta<N>, path: &super::path::GroupPath<'_>) -> Option<u32> {
        let mut id = ROOT;
        for name in path.names() {
            id = self.find_child(meta, id, name)?;
        }
        Some(id)
    }

    /// Creates the group at `path`; returns its handle.
    pub fn create(&self, path: &super::path::GroupPath<'_>) -> Result<u64, Errno> {
        let mut meta = self.tree.lock();
        let (parent_path, name) = path.split_last().ok_or(libc::EEXIST)?;
        let parent = self.resolve(&meta, &parent_path).ok_or(libc::ENOENT)?;
        if self.find_child(&meta, parent, name).is_some() {
            return Err(libc::EEXIST);
        }
        let start = meta.scan_hint.clamp(1, N - 1);
        let id = (start..N)
            .chain(1..start)
            .find(|&i| self.slots[i].life.load(Ordering::SeqCst) == FREE)
            .ok_or(libc::ENOSPC)? as u32;
        meta.scan_hint = id as usize + 1;
        if id + 1 > self.bound.load(Ordering::Relaxed) {
            self.bound.store(id + 1, Ordering::Release);
        }
        let serial = ROOT_SERIAL + 1 + meta.serials;
        meta.serials += 1;
        meta.names[id as usize][..name.len()].copy_from_slice(name);
        meta.name_len[id as usize] = name.len() as u8;
        let s = &self.slots[id as usize];
        s.counter.reset();
        s.last_warn.store(0, Ordering::Relaxed);
        s.serial.store(serial, Ordering::Release);
        s.parent.store(parent, Ordering::Relaxed);
        s.depth.store(self.depth(parent) + 1, Ordering::Relaxed);
        s.nr_threads.store(0, Ordering::SeqCst);
        s.nr_children.store(0, Ordering::SeqCst);
        s.oom_policy.store(0, Ordering::Relaxed);
        s.oom_handler.store(0, Ordering::Relaxed);
        s.nr_thresholds.store(0, Ordering::Relaxed);
        s.explicit.store(0, Ordering::Relaxed);
        for a in s
            .events
            .iter()
            .chain(&s.events_local)
            .chain(&s.stats)
            .chain(&s.psi)
        {
            a.store(0, Ordering::Relaxed);
        }
        self.slots[parent as usize]
            .nr_children
            .fetch_add(1, Ordering::SeqCst);
        s.life.store(LIVE, Ordering::SeqCst);
        Ok(handle_of(id, serial))
    }

    /// The handle of the live group at `path`.
    pub fn open(&self, path: &super::path::GroupPath<'_>) -> Result<u64, Errno> {
        let meta = self.tree.lock();
        let id = self.resolve(&meta, path).ok_or(libc::ENOENT)?;
        Ok(self.handle(id))
    }

    /// Marks the group dying. `EPERM` for the root, `EBUSY` with live children or attached
    /// threads. The caller drains stocks and then calls [`GroupTable::maybe_free`].
    pub fn destroy(&self, handle: u64) -> Result<(u32, u64), Errno> {
        let (id, serial) = split_handle(handle);
        if id as usize >= N || handle == 0 {
            return Err(libc::ENOENT);
        }
        if id == ROOT {
            return if serial == ROOT_SERIAL {
                Err(libc::EPERM)
            } else {
                Err(libc::ENOENT)
            };
        }
        let _meta = self.tree.lock();
        let s = &self.slots[id as usize];
        if self.serial(id) != serial || self.state(id) != LIVE {
            return Err(libc::ENOENT);
        }
        let live_children = (1..self.bound()).any(|c| {
            self.state(c) == LIVE && self.slots[c as usize].parent.load(Ordering::Relaxed) == id
        });
        if live_children {
            return Err(libc::EBUSY);
        }
        self.set_state(s, DESTROYING);
        if s.nr_threads.load(Ordering::SeqCst) != 0 {
            self.set_state(s, LIVE);
            return Err(libc::EBUSY);
        }
        self.set_state(s, DYING);
        Ok((id, serial))
    }

    fn set_state(&self, s: &Slot, state: u32) {
        let mut cur = s.life.load(Ordering::SeqCst);
        loop {
            let new = (cur & !STATE_MASK) | state;
            match s
                .life
                .compare_exchange_weak(cur, new, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return,
                Err(v) => cur = v,
            }
        }
    }

    /// Counts a thread into `id` (which the caller has pinned); `ENOENT` if it is not live.
    pub fn attach_thread(&self, id: u32) -> Result<(), Errno> {
        let s = &self.slots[id as usize];
        loop {
            s.nr_threads.fetch_add(1, Ordering::SeqCst);
            match self.state(id) {
                LIVE => return Ok(()),
                DESTROYING => {
                    s.nr_threads.fetch_sub(1, Ordering::SeqCst);
                    while self.state(id) == DESTROYING {
                        crate::util::sync::spin_hint();
                    }
                }
                _ => {
                    s.nr_threads.fetch_sub(1, Ordering::SeqCst);
                    return Err(libc::ENOENT);
                }
            }
        }
    }

    /// Counts a thread out of `id`.
    pub fn detach_thread(&self, id: u32) {
        self.slots[id as usize]
            .nr_threads
            .fetch_sub(1, Ordering::SeqCst);
    }

    /// Writes the path of `id` into `out` (the `snprintf` contract of [`FmtBuf`]).
    ///
    /// [`FmtBuf`]: crate::util::fmtbuf::FmtBuf
    pub fn write_path(&self, id: u32, out: &mut crate::util::fmtbuf::FmtBuf<'_>) {
        let meta = self.tree.lock();
        let mut chain = [0u32; super::counter::MAX_LEVELS];
        let mut n = 0;
        let mut cur = id;
        while cur != ROOT && n < chain.len() {
            chain[n] = cur;
            n += 1;
            cur = self.parent(cur).unwrap_or(ROOT);
        }
        if n == 0 {
            out.push(b"/");
        }
        for &g in chain[..n].iter().rev() {
            out.push(b"/");
            out.push(&meta.names[g as usize][..meta.name_len[g as usize] as usize]);
        }
    }

    /// Live and dying descendants of `id` (`cgroup.stat`).
    pub fn count_descendants(&self, id: u32) -> (u64, u64) {
        let (mut live, mut dying) = (0, 0);
        for g in self.subtree(id).filter(|&g| g != id) {
            match self.state(g) {
                DYING => dying += 1,
                _ => live += 1,
            }
        }
        (live, dying)
    }

    /// Takes the tree lock for `fork()`.
    pub fn lock_for_fork(&self) {
        self.tree.lock_for_fork();
    }

    pub fn unlock_after_fork(&self) {
        self.tree.force_unlock();
    }
}

/// Events and statistics (`memory.events`, `memory.stat`; events.rs says what each key
/// counts and how).
#[cfg(not(loom))]
impl<const N: usize> GroupTable<N> {
    /// Counts `ev` on `id` (local) and on `id` and every ancestor (hierarchical).
    pub fn count_event(&self, id: u32, ev: Event) {
        let i = ev as usize;
        self.slot(id).events_local[i].fetch_add(1, Ordering::Relaxed);
        let mut cur = Some(id);
        while let Some(g) = cur {
            self.slot(g).events[i].fetch_add(1, Ordering::Relaxed);
            cur = self.parent(g);
        }
    }

    pub fn add_stat(&self, id: u32, stat: StatKey, v: u64) {
        self.slot(id).stats[stat as usize].fetch_add(v, Ordering::Relaxed);
    }

    /// A statistic summed over the subtree of `id`.
    pub fn stat_hier(&self, id: u32, stat: StatKey) -> u64 {
        self.subtree(id)
            .map(|g| self.slot(g).stats[stat as usize].load(Ordering::Relaxed))
            .sum()
    }

    /// `id`'s events, local or hierarchical.
    pub fn events(&self, id: u32, local: bool) -> [u64; NR_EVENTS] {
        let s = self.slot(id);
        let src = if local { &s.events_local } else { &s.events };
        core::array::from_fn(|i| src[i].load(Ordering::Relaxed))
    }
}

#[cfg(not(loom))]
pub static GROUPS: GroupTable<MAX_GROUPS> = GroupTable::new();

/// Where a reader outside the process finds a table's fields (`memcg::layout`): byte
/// offsets into the table and into a slot.
pub struct TableLayout {
    pub bound: usize,
    pub slots: usize,
    pub slot_size: usize,
    pub names: usize,
    pub name_len: usize,
    pub life: usize,
    pub serial: usize,
    pub parent: usize,
    pub nr_threads: usize,
    pub oom_policy: usize,
    pub explicit: usize,
    pub events: usize,
    pub events_local: usize,
    pub stats: usize,
    pub counter: usize,
    pub psi: usize,
}

#[cfg(not(loom))]
impl<const N: usize> GroupTable<N> {
    pub const LAYOUT: TableLayout = {
        use core::mem::{offset_of, size_of};
        let tree = offset_of!(GroupTable<N>, tree) + SpinLock::<TreeMeta<N>>::VALUE_OFFSET;
        TableLayout {
            bound: offset_of!(GroupTable<N>, bound),
            slots: offset_of!(GroupTable<N>, slots),
            slot_size: size_of::<Slot>(),
            names: tree + offset_of!(TreeMeta<N>, names),
            name_len: tree + offset_of!(TreeMeta<N>, name_len),
            life: offset_of!(Slot, life),
            serial: offset_of!(Slot, serial),
            parent: offset_of!(Slot, parent),
            nr_threads: offset_of!(Slot, nr_threads),
            oom_policy: offset_of!(Slot, oom_policy),
            explicit: offset_of!(Slot, explicit),
            events: offset_of!(Slot, events),
            events_local: offset_of!(Slot, events_local),
            stats: offset_of!(Slot, stats),
            counter: offset_of!(Slot, counter),
            psi: offset_of!(Slot, psi),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memcg::counter::charge_force;
    use crate::memcg::path::GroupPath;
    use crate::util::fmtbuf::FmtBuf;

    /// A table of 4 slots (the root and 3 groups), not the process's.
    type Small = GroupTable<4>;

    fn create(t: &Small, path: &str) -> Result<u64, Errno> {
        t.create(&GroupPath::parse(path.as_bytes()).unwrap())
    }

    fn open(t: &Small, path: &str) -> Result<u64, Errno> {
        t.open(&GroupPath::parse(path.as_bytes()).unwrap())
    }

    fn id(handle: u64) -> u32 {
        split_handle(handle).0
    }

    fn path_of(t: &Small, id: u32) -> String {
        let mut buf = [0u8; 64];
        let mut out = FmtBuf::new(&mut buf);
        t.write_path(id, &mut out);
        String::from_utf8(out.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn create_open_and_the_tree() {
        let t = Small::new();
        let a = create(&t, "/a").unwrap();
        let b = create(&t, "/a/b").unwrap();
        let c = create(&t, "/c").unwrap();
        assert_eq!(open(&t, "/a/b"), Ok(b));
        assert_eq!(create(&t, "/a"), Err(libc::EEXIST));
        assert_eq!(create(&t, "/"), Err(libc::EEXIST));
        assert_eq!(create(&t, "/x/y"), Err(libc::ENOENT), "no parent");
        assert_eq!(open(&t, "/x"), Err(libc::ENOENT));
        assert_eq!(create(&t, "/d"), Err(libc::ENOSPC), "every slot is used");
        assert_eq!(path_of(&t, id(b)), "/a/b");
        assert_eq!(path_of(&t, ROOT), "/");
        assert_eq!((t.depth(id(a)), t.depth(id(b))), (1, 2));
        assert_eq!(t.parent(id(b)), Some(id(a)));
        assert_eq!(t.parent(ROOT), None);
        assert!(t.is_descendant(id(b), ROOT) && t.is_descendant(id(b), id(a)));
        assert!(!t.is_descendant(id(c), id(a)) && !t.is_descendant(id(a), id(b)));
        assert_eq!(t.subtree(id(a)).collect::<Vec<_>>(), [id(a), id(b)]);
        assert_eq!(t.count_descendants(ROOT), (3, 0));
        assert_eq!(t.handle(ROOT), handle_of(ROOT, ROOT_SERIAL));
    }

    #[test]
    fn stale_and_garbage_handles_are_refused() {
        let t = Small::new();
        let a = create(&t, "/a").unwrap();
        assert!(t.pin(a, false).is_ok());
        for bad in [0, a + (1 << 16), handle_of(7, 2), handle_of(ROOT, 5)] {
            assert_eq!(t.pin(bad, true).err(), Some(libc::ENOENT), "{bad:#x}");
        }
        assert_eq!(t.destroy(a), Ok((id(a), split_handle(a).1)));
        t.maybe_free(id(a), split_handle(a).1);
        assert_eq!(t.state(id(a)), FREE);
        assert_eq!(t.pin(a, true).err(), Some(libc::ENOENT));
        // With the other slots taken, the slot is reused under a new serial: the old
        // handle stays dead.
        create(&t, "/b").unwrap();
        create(&t, "/c").unwrap();
        let a2 = create(&t, "/a").unwrap();
        assert_eq!(id(a2), id(a));
        assert_ne!(a2, a);
        assert_eq!(t.pin(a, true).err(), Some(libc::ENOENT));
        assert_eq!(t.destroy(a), Err(libc::ENOENT));
    }

    #[test]
    fn destroy_refusals() {
        let t = Small::new();
        assert_eq!(t.destroy(t.handle(ROOT)), Err(libc::EPERM));
        let a = create(&t, "/a").unwrap();
        let b = create(&t, "/a/b").unwrap();
        assert_eq!(t.destroy(a), Err(libc::EBUSY), "a live child");
        t.attach_thread(id(b)).unwrap();
        assert_eq!(t.destroy(b), Err(libc::EBUSY), "an attached thread");
        assert_eq!(t.state(id(b)), LIVE);
        t.detach_thread(id(b));
        assert!(t.destroy(b).is_ok());
        assert_eq!(t.destroy(b), Err(libc::ENOENT), "already destroyed");
        assert_eq!(t.attach_thread(id(b)), Err(libc::ENOENT));
    }

    /// A destroyed group with charges is dying: reachable only with `allow_dying`, freed
    /// by its last uncharge, after which its parent can be destroyed and freed too.
    #[test]
    fn a_dying_group_is_freed_by_its_last_uncharge() {
        let t = Small::new();
        let a = create(&t, "/a").unwrap();
        let b = create(&t, "/a/b").unwrap();
        charge_force(&t, id(b), 3);
        let (bid, bser) = t.destroy(b).unwrap();
        t.maybe_free(bid, bser);
        assert_eq!(t.state(bid), DYING);
        assert_eq!(open(&t, "/a/b"), Err(libc::ENOENT));
        assert_eq!(t.pin(b, false).err(), Some(libc::ENOENT));
        assert!(t.pin(b, true).is_ok());
        assert_eq!(t.count_descendants(id(a)), (0, 1));
        let (aid, aser) = t.destroy(a).unwrap();
        t.maybe_free(aid, aser);
        assert_eq!(t.state(aid), DYING, "a dying child keeps its parent");
        t.uncharge(bid, 2);
        assert_eq!(t.state(bid), DYING);
        t.uncharge(bid, 1);
        assert_eq!((t.state(bid), t.state(aid)), (FREE, FREE));
        assert_eq!(t.counter(ROOT).usage(), 0);
        assert_eq!(t.count_descendants(ROOT), (0, 0));
    }

    /// A pin taken before a destroy keeps the dying slot until it is dropped, from
    /// another thread.
    #[test]
    fn the_last_pin_frees_a_dying_group() {
        let t = Small::new();
        let a = create(&t, "/a").unwrap();
        let pin = t.pin(a, false).unwrap();
        let (aid, aser) = t.destroy(a).unwrap();
        t.maybe_free(aid, aser);
        assert_eq!(t.state(aid), DYING);
        std::thread::scope(|s| {
            s.spawn(move || drop(pin));
        });
        assert_eq!(t.state(aid), FREE);
    }

    /// Threads pin and unpin a group while it is destroyed: it ends freed, once, and
    /// every pin that succeeded saw it live or dying.
    #[test]
    fn pins_racing_with_destroy() {
        let t = Small::new();
        let a = create(&t, "/a").unwrap();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..8 {
                        if let Ok(p) = t.pin(a, true) {
                            assert_ne!(t.state(p.id), FREE);
                        }
                    }
                });
            }
            let (aid, aser) = t.destroy(a).unwrap();
            t.maybe_free(aid, aser);
        });
        assert_eq!(t.state(id(a)), FREE);
        assert_eq!(t.pin(a, true).err(), Some(libc::ENOENT));
        assert_eq!(t.count_descendants(ROOT), (0, 0));
    }
}
