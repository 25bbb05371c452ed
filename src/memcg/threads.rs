//! Threads as the accounting engine sees them: each thread's current group, its stock,
//! and whether it is inside a reclaim callback or OOM handler (the kernel's `PF_MEMALLOC`).
//!
//! State lives in two places:
//! - `TLS`, a `const`-initialised thread-local with no destructor (so reading it never
//!   allocates): the current group, the registry slot (the memalloc depth is
//!   `util::memalloc`'s);
//! - `THREADS`, a static registry of slots `{tid, group, stock, pthread, pending}` that
//!   other threads can read (`cgroup.threads`), drain (`drain_all_stock`) and ask to
//!   change group (`request_attach`: `pthread_setname_np` on another thread).
//!
//! A thread registers on its first stock use or attach and gets a `pthread_key`
//! destructor that drains its stock, detaches it from its group and frees its slot.
//! Without a free slot (more than `MAX_THREADS` live threads) a thread charges without a
//! stock and is not listed; accounting stays exact.
//!
//! Invariants: `THREADS[i].tid != 0` iff slot `i` belongs to a live registered thread
//! (or, in a fork child, to a thread of the parent until `fork_child` runs);
//! `THREADS[i].group == TLS.group` of its owner; a thread attached to a non-root group is
//! counted in that group's `nr_threads`.

#![forbid(unsafe_code)]

use super::counter::Pages;
use super::origin::Origin;
use super::stock;
use super::table::{GROUPS, ROOT};
use crate::util::hook::Hook;
use core::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

pub const MAX_THREADS: usize = 4096;
const NO_SLOT: u32 = u32::MAX;
/// The slot search found nothing once; do not search again on every charge.
const NO_ROOM: u32 = u32::MAX - 1;

#[repr(C, align(64))]
pub(super) struct ThreadSlot {
    tid: AtomicU32,
    group: AtomicU32,
    stock: AtomicU64,
    /// The owner's `pthread_self()`, to find it by `pthread_t`.
    pthread: AtomicU64,
    /// A group handle another thread asked this one to attach to (0: none); the owner
    /// applies it at its next span refill or large-cache miss (`take_pending`).
    pending: AtomicU64,
}

pub(super) static THREADS: [ThreadSlot; MAX_THREADS] = [const {
    ThreadSlot {
        tid: AtomicU32::new(0),
        group: AtomicU32::new(0),
        stock: AtomicU64::new(0),
        pthread: AtomicU64::new(0),
        pending: AtomicU64::new(0),
    }
}; MAX_THREADS];

/// One past the highest slot ever claimed: scans stop there.
pub(super) static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);
static SCAN_HINT: AtomicUsize = AtomicUsize::new(0);

struct ThreadState {
    slot: Cell<u32>,
    group: Cell<u32>,
}

thread_local! {
    static TLS: ThreadState = const {
        ThreadState {
            slot: Cell::new(NO_SLOT),
            group: Cell::new(ROOT),
        }
    };
}

/// The calling thread's current group (a TLS load).
#[inline]
pub fn current_group() -> u32 {
    TLS.with(|t| t.group.get())
}

/// True inside a reclaim callback or OOM handler (or a callback context's drop): charges
/// are forced (`util::memalloc`).
pub use crate::util::memalloc::in_memalloc;
/// Runs `f` with this thread's charges forced and never recursing into reclaim.
pub use crate::util::memalloc::with_memalloc;

/// This thread's registry slot, registering it on first use; `None` if the registry is
/// full.
#[inline]
fn my_slot() -> Option<&'static ThreadSlot> {
    let s = TLS.with(|t| t.slot.get());
    if (s as usize) < MAX_THREADS {
        Some(&THREADS[s as usize])
    } else if s == NO_ROOM {
        None
    } else {
        register()
    }
}

#[cold]
fn register() -> Option<&'static ThreadSlot> {
    let tid = crate::os::gettid();
    let start = SCAN_HINT.load(Ordering::Relaxed) % MAX_THREADS;
    let found = (start..MAX_THREADS).chain(0..start).find(|&i| {
        THREADS[i].tid.load(Ordering::Relaxed) == 0
            && THREADS[i]
                .tid
                .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    });
    let Some(i) = found else {
        TLS.with(|t| t.slot.set(NO_ROOM));
        return None;
    };
    SCAN_HINT.store(i + 1, Ordering::Relaxed);
    HIGH_WATER.fetch_max(i + 1, Ordering::AcqRel);
    let slot = &THREADS[i];
    slot.group
        .store(TLS.with(|t| t.group.get()), Ordering::Release);
    let me = key(crate::os::thread::pthread_self());
    slot.pending.store(0, Ordering::SeqCst);
    slot.pthread.store(me, Ordering::SeqCst);
    let early = take_early_request(me);
    if early != 0 {
        slot.pending.store(early, Ordering::SeqCst);
    }
    TLS.with(|t| t.slot.set(i as u32));
    crate::os::thread::arm_exit(on_thread_exit);
    Some(slot)
}

/// Registers the calling thread (slot, exit destructor) if it is not yet.
pub fn ensure_registered() {
    my_slot();
}

/// The word in which other threads ask the calling thread to change group (`None`
/// without a slot): nonzero when `take_pending` has a request. The slot is the thread's
/// until it leaves the registry at exit, so its allocator state may keep this to look
/// without a thread-local access.
pub fn pending_word() -> Option<&'static AtomicU64> {
    my_slot().map(|s| &s.pending)
}

/// Functions the allocator installs: called when a thread changes group, and first
/// thing at thread exit.
static SWITCH_HOOK: Hook<fn()> = Hook::new();
static EXIT_HOOK: Hook<fn()> = Hook::new();

pub fn set_hooks(on_switch: fn(), on_exit: fn()) {
    SWITCH_HOOK.install(on_switch);
    EXIT_HOOK.install(on_exit);
}

/// Told each group a thread joined or left (`pressure` re-evaluates `full` there),
/// installed by the first stall.
pub static MEMBERSHIP: Hook<fn(u32)> = Hook::new();

fn membership_changed(id: u32) {
    if let Some(f) = MEMBERSHIP.get() {
        f(id);
    }
}

fn run_hook(h: &Hook<fn()>) {
    if let Some(f) = h.get() {
        f();
    }
}

/// Makes `id` (pinned by the caller, or the root) this thread's current group;
/// returns the previous one.
pub fn attach(id: u32) -> Result<u32, i32> {
    let old = current_group();
    if id == old {
        my_slot();
        return Ok(old);
    }
    if id != ROOT {
        GROUPS.attach_thread(id)?;
    }
    TLS.with(|t| t.group.set(id));
    if let Some(slot) = my_slot() {
        slot.group.store(id, Ordering::Release);
    }
    run_hook(&SWITCH_HOOK);
    if old != ROOT {
        GROUPS.detach_thread(old);
    }
    membership_changed(old);
    membership_changed(id);
    Ok(old)
}

/// Requests for threads not registered yet: `(pthread_t, group handle)`, 0 when free.
/// A thread takes its request when it registers.
const MAX_PENDING: usize = 64;

struct Pending {
    pthread: AtomicU64,
    handle: AtomicU64,
}

static PENDING: [Pending; MAX_PENDING] = [const {
    Pending {
        pthread: AtomicU64::new(0),
        handle: AtomicU64::new(0),
    }
}; MAX_PENDING];

/// A `pthread_t` as stored in the registry.
#[allow(clippy::unnecessary_cast)] // `pthread_t` is `c_ulong`: 32 bits on some targets.
fn key(t: libc::pthread_t) -> u64 {
    t as u64
}

/// The slot of the registered thread `pthread`.
fn find(pthread: u64) -> Option<&'static ThreadSlot> {
    registered()
        .iter()
        .find(|s| s.tid.load(Ordering::SeqCst) != 0 && s.pthread.load(Ordering::SeqCst) == pthread)
}

/// Asks thread `pthread` to attach to the group `handle` at its next span refill or
/// large-cache miss. A thread not registered yet gets the request when it registers (if the small
/// table of such requests is full, the request is dropped).
pub fn request_attach(pthread: libc::pthread_t, handle: u64) {
    let pthread = key(pthread);
    if let Some(slot) = find(pthread) {
        slot.pending.store(handle, Ordering::SeqCst);
        return;
    }
    let Some(entry) = PENDING.iter().find(|e| {
        e.pthread
            .compare_exchange(0, pthread, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
            || e.pthread.load(Ordering::SeqCst) == pthread
    }) else {
        return;
    };
    entry.handle.store(handle, Ordering::SeqCst);
    // The thread may have registered between `find` and the store, and missed the entry:
    // then whoever empties the entry first delivers the request.
    if let Some(slot) = find(pthread) {
        let h = entry.handle.swap(0, Ordering::SeqCst);
        if h != 0 {
            entry.pthread.store(0, Ordering::SeqCst);
            slot.pending.store(h, Ordering::SeqCst);
        }
    }
}

/// At registration: a request made for this thread before it registered.
fn take_early_request(pthread: u64) -> u64 {
    for e in &PENDING {
        if e.pthread.load(Ordering::SeqCst) == pthread {
            let h = e.handle.swap(0, Ordering::SeqCst);
            if h != 0 {
                e.pthread.store(0, Ordering::SeqCst);
                return h;
            }
        }
    }
    0
}

/// A new thread got `pthread` (its id may be a dead thread's): forget requests made for
/// the dead one.
#[cfg(feature = "override")]
pub fn forget_requests(pthread: libc::pthread_t) {
    let pthread = key(pthread);
    for e in &PENDING {
        if e.pthread.load(Ordering::SeqCst) == pthread {
            e.handle.store(0, Ordering::SeqCst);
            e.pthread.store(0, Ordering::SeqCst);
        }
    }
}

/// The group handle another thread asked this one to attach to, if any (taken once).
#[inline]
pub fn take_pending() -> Option<u64> {
    let s = TLS.with(|t| t.slot.get());
    let slot = THREADS.get(s as usize)?;
    if slot.pending.load(Ordering::Relaxed) == 0 {
        return None;
    }
    match slot.pending.swap(0, Ordering::AcqRel) {
        0 => None,
        h => Some(h),
    }
}

/// Takes `nr` pages of `id` from this thread's stock.
#[inline]
pub fn consume_stock(id: u32, nr: Pages) -> bool {
    match my_slot() {
        Some(s) => stock::consume(&s.stock, id, nr),
        None => false,
    }
}

/// Puts the surplus of a batched charge into this thread's stock.
pub fn refill_stock(id: u32, nr: Pages) {
    match my_slot() {
        Some(s) => stock::refill(&s.stock, &GROUPS, id, nr),
        None => GROUPS.uncharge(id, nr),
    }
}

/// Returns freed pages of `id` (given back by `origin`) through this thread's stock when
/// it caches `id`.
pub fn uncharge_via_stock(id: u32, nr: Pages, origin: &Origin) {
    match my_slot() {
        Some(s) => stock::put_back(&s.stock, &GROUPS, id, nr, origin),
        None => GROUPS.uncharge_from(id, nr, origin),
    }
}

fn registered() -> &'static [ThreadSlot] {
    &THREADS[..HIGH_WATER.load(Ordering::Acquire).min(MAX_THREADS)]
}

/// Drains every thread's stock that caches a group in the subtree of `root`
/// (`drain_all_stock`); returns the pages returned.
pub fn drain_all_stock(root: u32) -> Pages {
    registered()
        .iter()
        .filter(|s| {
            let (g, pages) = stock::unpack(s.stock.load(Ordering::SeqCst));
            pages > 0 && g.is_some_and(|g| GROUPS.is_descendant(g, root))
        })
        .map(|s| stock::drain(&s.stock, &GROUPS))
        .sum()
}

/// Calls `f` with the group of every registered thread.
pub fn for_each_member(mut f: impl FnMut(u32)) {
    for s in registered() {
        if s.tid.load(Ordering::Acquire) != 0 {
            f(s.group.load(Ordering::Acquire));
        }
    }
}

/// Calls `f` with the group and pages of every stock that holds pages, the stocks of
/// threads that do not exist any more in a fork child included.
pub fn for_each_stock(mut f: impl FnMut(u32, Pages)) {
    for s in registered() {
        if let (Some(g), pages @ 1..) = stock::unpack(s.stock.load(Ordering::Acquire)) {
            f(g, pages);
        }
    }
}

/// Where a reader outside the process finds a registry slot's fields (`layout.rs`): the
/// slot size, and the offsets of `tid`, `group` and `stock`.
pub const SLOT_LAYOUT: [usize; 4] = [
    core::mem::size_of::<ThreadSlot>(),
    core::mem::offset_of!(ThreadSlot, tid),
    core::mem::offset_of!(ThreadSlot, group),
    core::mem::offset_of!(ThreadSlot, stock),
];

/// Stock pages held for groups in the subtree of `root`.
pub fn stock_pages(root: u32) -> Pages {
    registered()
        .iter()
        .map(|s| stock::unpack(s.stock.load(Ordering::Relaxed)))
        .filter(|&(g, _)| g.is_some_and(|g| GROUPS.is_descendant(g, root)))
        .map(|(_, p)| p)
        .sum()
}

/// Calls `f` with the tid of every registered thread attached to `id`.
pub fn for_each_thread_in(id: u32, mut f: impl FnMut(u32)) {
    for s in registered() {
        let tid = s.tid.load(Ordering::Acquire);
        if tid != 0 && s.group.load(Ordering::Acquire) == id {
            f(tid);
        }
    }
}

/// Leaves the registry: stock back to its group, thread out of its group, slot freed.
/// Runs at thread exit; the thread may register again if it charges afterwards.
pub fn thread_exit() {
    run_hook(&EXIT_HOOK);
    let s = TLS.with(|t| t.slot.get());
    if (s as usize) < MAX_THREADS {
        let slot = &THREADS[s as usize];
        stock::drain(&slot.stock, &GROUPS);
        slot.group.store(ROOT, Ordering::Release);
        slot.pending.store(0, Ordering::Relaxed);
        slot.tid.store(0, Ordering::Release);
    }
    let g = TLS.with(|t| t.group.replace(ROOT));
    if g != ROOT {
        GROUPS.detach_thread(g);
    }
    TLS.with(|t| t.slot.set(NO_SLOT));
    membership_changed(g);
}

/// In a fork child: only the forking thread survives. Every other thread's stock goes
/// back to its group and its attachment ends; this thread's slot takes its new tid.
/// Requests for threads that never registered die with them.
pub fn fork_child() {
    for e in &PENDING {
        e.handle.store(0, Ordering::Relaxed);
        e.pthread.store(0, Ordering::Relaxed);
    }
    let mine = TLS.with(|t| t.slot.get());
    for (i, s) in registered().iter().enumerate() {
        if i as u32 == mine {
            s.tid.store(crate::os::gettid(), Ordering::Release);
            let me = key(crate::os::thread::pthread_self());
            s.pthread.store(me, Ordering::Release);
            continue;
        }
        if s.tid.load(Ordering::Acquire) == 0 {
            continue;
        }
        stock::drain(&s.stock, &GROUPS);
        let g = s.group.swap(ROOT, Ordering::AcqRel);
        if g != ROOT {
            GROUPS.detach_thread(g);
        }
        s.pending.store(0, Ordering::Relaxed);
        s.tid.store(0, Ordering::Release);
    }
}

/// The destructor that runs `thread_exit` (`os::thread::arm_exit`).
extern "C" fn on_thread_exit(_: *mut core::ffi::c_void) {
    thread_exit();
}
