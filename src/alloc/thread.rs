//! A thread's life in the allocator: its set-up on the first allocation, its heaps (one
//! per group it allocates in), and its exit.
//!
//! The TLS heap starts as the static empty heap, so a thread's first allocation takes the
//! slow path, which creates the thread's state (`Tld`) and the heap of its current group.
//! When the thread changes group, the TLS heap goes back to the empty heap and the next
//! allocation finds (or creates) the heap of the new group.
//!
//! At thread exit the state is retired whole, for the next thread (`retired.rs`); a
//! young thread that frees into a retired state of its group swaps its own for it, and a
//! thread with no state yet takes over a retired state of any group it frees into
//! (`swap_to_retired`). A state that cannot be retired, or that expires retired, has every
//! owned segment abandoned: under its claim, `tld` is cleared, then each span is
//! collected; empty spans are released, the others marked `ABANDONED` and left to the
//! threads that free their last blocks (see `remote.rs`). The pages of released spans
//! stay charged as free slices until purged.

use super::abandoned;
use super::charged::Owed;
use super::charged::NO_GROUP;
use super::heap::release_span;
use super::large;
use super::medium;
use super::meta::Pool;
use super::remote;
use super::retired;
use super::tld;
use super::tls;
use super::types::{empty_heap, Heap, List, Segment, Span, State, Tld, SLICES};
use crate::memcg;
use core::ptr;
use std::sync::atomic::Ordering;

static TLDS: Pool = Pool::with_kept_tail(
    core::mem::size_of::<Tld>(),
    core::mem::offset_of!(Tld, cache_lock),
);
static HEAPS: Pool = Pool::new(core::mem::size_of::<Heap>());

/// Called when the thread changes group: the next allocation looks up the new heap.
pub fn group_switched() {
    // SAFETY: the static empty heap.
    unsafe { tls::set_heap(empty_heap()) };
}

/// The heap for `group` in this thread, created on first use; null when out of memory.
///
/// # Safety
/// `tld` is the calling thread's live state.
unsafe fn heap_for(tld: *mut Tld, group: u32) -> *mut Heap {
    // SAFETY: `tld` is this thread's live state.
    let t = unsafe { &mut *tld };
    // Find the group's heap and unlink it, to put it first (most recently used).
    let mut link: *mut *mut Heap = &mut t.heaps;
    let mut found = ptr::null_mut();
    // SAFETY: heaps on the thread's list are live and only this thread links them.
    unsafe {
        while !(*link).is_null() {
            let h = *link;
            if (*h).group == group {
                *link = (*h).next;
                found = h;
                break;
            }
            link = &mut (*h).next;
        }
    }
    let h = if found.is_null() {
        let h = HEAPS.alloc() as *mut Heap;
        if h.is_null() {
            return h;
        }
        // SAFETY: a zeroed pool object of the right size, ours alone; `tld` is this
        // thread's live state, which outlives its heaps.
        unsafe { (*h).init(group, tld) };
        h
    } else {
        found
    };
    // SAFETY: `h` is ours and unlinked.
    unsafe {
        (*h).next = t.heaps;
        (*h).idle_trimmed = false;
    }
    t.heaps = h;
    trim_idle_heap(t);
    h
}

/// Heaps a thread keeps warm: beyond the `WARM_HEAPS` it used last, a heap gives back its
/// empty spans when it falls out of that window, and each span its frees empty later
/// (its live blocks stay where they are), so a thread that visits many groups does not
/// keep a span cache in each (`Heap::go_idle`).
const WARM_HEAPS: usize = 4;

fn trim_idle_heap(t: &mut Tld) {
    let mut h = t.heaps;
    for _ in 0..WARM_HEAPS {
        if h.is_null() {
            return;
        }
        // SAFETY: heaps on the thread's list are live.
        h = unsafe { (*h).next };
    }
    // SAFETY: as above; `h` is this thread's, not the TLS heap (which is the list head).
    if !h.is_null() && !unsafe { (*h).idle_trimmed } {
        // SAFETY: as above.
        unsafe { (*h).go_idle() };
    }
}

/// This thread's state, set up on first use (the first allocation, or a first free into
/// another thread's span, `remote.rs`). Null when out of memory.
#[cold]
pub fn setup_state() -> *mut Tld {
    let tld = tld::current();
    if !tld.is_null() {
        return tld;
    }
    medium::init_parking();
    // Past the thread's exit (a destructor run after, glibc's own clean-up), the thread
    // does not register again (the slot would die with it), and each allocation gives
    // the state it set up, or took over, back at once (`front::alloc_slow`).
    if !tls::exited() {
        memcg::threads::ensure_registered();
    }
    if let Some(t) = retired::take(memcg::threads::current_group()) {
        // SAFETY: a retired state taken off the list: ours alone now.
        unsafe { take_over(t) };
        return t;
    }
    let tld = TLDS.alloc() as *mut Tld;
    if tld.is_null() {
        return tld;
    }
    let seed = (tld as u64) ^ crate::os::now_ns().rotate_left(17) ^ crate::os::gettid() as u64;
    // SAFETY: a zeroed pool object, ours alone.
    unsafe {
        (*tld).rng = seed | 1;
        (*tld).id = tls::thread_id();
    }
    // SAFETY: this thread's state, set up, recycled only by its `thread_exit`.
    unsafe { tls::set_tld(tld) };
    tls::calibrate();
    tld
}

/// The calling thread takes over the retired state `t`: its id goes into the state and
/// its segments, its registry word into the heaps. The heaps of other groups than the
/// thread's go idle (`Heap::go_idle`): their empty spans go back now, and the spans
/// their frees empty later, unless the thread joins their group.
///
/// # Safety
/// `t` is a retired state the caller took off the list, and the caller has no state.
#[cold]
unsafe fn take_over(t: *mut Tld) {
    // SAFETY: ours alone (this function's contract).
    let st = unsafe { &mut *t };
    st.id = tls::thread_id();
    // SAFETY: the state's segments are live, and the state ours.
    unsafe { retired::restore_owner(st) };
    let word = memcg::threads::pending_word();
    let mut h = st.heaps;
    while !h.is_null() {
        // SAFETY: the state's heaps are live, and ours with it.
        unsafe {
            (*h).attach_word = word;
            h = (*h).next;
        }
    }
    // SAFETY: this thread's state now, recycled only by its `thread_exit`.
    unsafe { tls::set_tld(t) };
    tls::calibrate();
    // Installed: a swap is over (what the thread allocates below keeps this state), and
    // a thread past its exit, which gives the state back after its allocation, idles
    // nothing (an uncharge's hook could allocate, and give the state back, mid-walk).
    tls::set_swapping(false);
    if tls::exited() {
        return;
    }
    let group = memcg::threads::current_group();
    let mut h = st.heaps;
    while !h.is_null() {
        // SAFETY: a heap of this thread's state, not the TLS heap (the empty heap yet).
        let heap = unsafe { &mut *h };
        if heap.group != group && !heap.idle_trimmed {
            heap.go_idle();
        }
        h = heap.next;
    }
}

/// The slow path's first step: the thread's state and the heap of its current group,
/// installed as the TLS heap. Null when out of memory.
#[cold]
pub fn setup_heap() -> *mut Heap {
    let tld = setup_state();
    if tld.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: this thread's live state.
    let h = unsafe { heap_for(tld, memcg::threads::current_group()) };
    if !h.is_null() {
        // SAFETY: a live heap of this thread, recycled only by its `thread_exit`.
        unsafe { tls::set_heap(h) };
    }
    h
}

/// Thread exit: push the pending remote frees, release the cached mappings, and retire
/// the state; or, if it cannot be retired, abandon every segment and recycle the state.
pub fn thread_exit() {
    tls::mark_exited();
    // SAFETY: the thread's exit runs between its operations (a key destructor).
    unsafe { give_up_state() };
}

/// A thread swaps its state only while it is young, within this many allocation slow
/// paths of its start: an older thread's own state holds blocks it goes on using and
/// freeing, which would wait in the state it retired (mstress: peak RSS 12.4 → 18.8 MiB
/// with the swap at any age).
const SWAP_YOUNG: u32 = 128;

/// A thread frees into a span of the retired state `r` (`retired.rs`). Once in its life,
/// while young, the thread takes `r` over, so the frees still to come are its own:
/// - a thread with a state of its own, if `r`'s thread was of its group: larson's shape,
///   a thread handing its blocks to a successor it starts before it exits, so the
///   successor set itself up before the state retired. The thread's own state is retired
///   (or abandoned) in place of `r`;
/// - a thread with no state yet, whatever `r`'s group: its first call is a free of
///   another thread's block (larson-sized with groups, a new thread of one group taking
///   over blocks a thread of another left). Setting up would take a state of its own
///   group, and every free of those blocks would then be a remote free to the state's
///   next owner; `r`'s heaps of other groups go idle, and its heap of the thread's group
///   is found or made there, as at any setup (`setup_state`).
///
/// False if it may not (past its exit, once already, past its youth, or at memalloc
/// depth: in the program's code run inside the allocator, a reclaim callback, an OOM
/// handler or a callback context's drop, which may be in the middle of one of the
/// thread's own operations) or `r` is no longer retired (or, for a thread with a state,
/// was of another group).
#[cold]
pub fn swap_to_retired(r: *mut Tld) -> bool {
    if tls::exited() || tls::slow_paths() >= SWAP_YOUNG || memcg::threads::in_memalloc() {
        return false;
    }
    let _errno = crate::os::ErrnoGuard::new();
    // Registered before, not inside the swap (registration may allocate).
    memcg::threads::ensure_registered();
    let group = (!tld::current().is_null()).then(memcg::threads::current_group);
    if !retired::take_exact(r, group) {
        return false;
    }
    // Until `take_over` installs `r` the thread has no state: what it frees meanwhile
    // (an uncharge's hook) sets none up, and what it allocates gives its state back at
    // once (`front::alloc_slow`).
    tls::set_swapping(true);
    tls::age_out();
    // SAFETY: not at memalloc depth (checked above): called from `free`, the thread is
    // between its own operations.
    unsafe { give_up_state() };
    // SAFETY: a retired state taken off the list, and the thread has none now.
    unsafe { take_over(r) };
    true
}

/// The calling thread gives its state up: pushes its pending remote frees, releases its
/// cached mappings, and retires the state; or, if it cannot be retired, abandons every
/// segment and recycles the state.
///
/// # Safety
/// No frame of the calling thread is using its state: the thread is between its own
/// operations (or the state was set up for the one allocation just made past its exit
/// or during a swap, `front::alloc_slow`).
pub unsafe fn give_up_state() {
    let tld = tld::current();
    if tld.is_null() {
        return;
    }
    let group = tls::heap();
    // SAFETY: the static empty heap, and no state: the thread's are retired or recycled
    // below.
    unsafe {
        tls::set_heap(empty_heap());
        tls::set_tld(ptr::null_mut());
    }
    // SAFETY: `tld` was this thread's state; no other thread writes it.
    let t = unsafe { &mut *tld };
    // First, while every span the chains name is still live: this thread's pending
    // remote frees (some may fall into its own segments, adopted since).
    remote::flush(t);
    large::drop_cache(t);
    // The group of the heap in use, or of the one used last.
    let group = if group != empty_heap() {
        group
    } else {
        t.heaps
    };
    if !t.segments.is_null() && !group.is_null() {
        // SAFETY: a heap of this state, live.
        let g = unsafe { (*group).group };
        // SAFETY: this thread's state, uninstalled, its chains pushed and its mappings
        // released; no other thread uses it.
        if unsafe { retired::retire(tld, g, crate::os::coarse_now_ns()) } {
            return;
        }
    }
    // SAFETY: as above.
    unsafe { abandon_state(tld) };
}

/// Abandons every segment of `tld`, recycles its heaps and the state.
///
/// # Safety
/// `tld` is a thread state no thread uses or will use (its thread exited, or it was
/// retired and taken off the list), its pending remote frees pushed and its large
/// mappings released.
unsafe fn abandon_state(tld: *mut Tld) {
    // SAFETY: this function's contract.
    let t = unsafe { &mut *tld };
    // The uncharges below may run the program's code in this thread (a callback context
    // dropped as its group is freed), which may free blocks of segments not abandoned
    // yet: those frees must not take the owner's path (they could empty and release a
    // segment this walk is about to visit).
    // SAFETY: the state's segments are live and the state is ours alone.
    unsafe { retired::hide_owner(t) };
    let mut seg = t.segments;
    t.segments = ptr::null_mut();
    while !seg.is_null() {
        // SAFETY: segments on the list are ours until abandoned below.
        let next = unsafe { (*seg).next_owned };
        // Reclaiming threads purge cached spans under this lock; hold it while spans
        // change hands, and destroy segments (which takes the segment list lock) after.
        let guard = t.lock_cache();
        let mut owed = Owed::new();
        // SAFETY: a segment of this exiting thread, taken off its list.
        let destroy = unsafe { abandon_segment(seg, &mut owed) };
        drop(guard);
        if destroy {
            // SAFETY: left with no span, unlisted, under our claim: used no more.
            unsafe { Segment::destroy(seg) };
        }
        owed.apply();
        seg = next;
    }
    // SAFETY: its segments abandoned (their spans name no heap of it), used no more.
    unsafe { recycle(tld) };
}

/// Abandons the segments of retired states that have expired (of every retired state,
/// with `all`: `malloc_trim`).
pub fn expire_retired(all: bool) {
    let now = crate::os::coarse_now_ns();
    let mut out = [ptr::null_mut(); retired::BATCH];
    loop {
        let n = retired::take_expired(now, all, &mut out);
        for &t in &out[..n] {
            // SAFETY: a retired state taken off the list: no thread uses it, its chains
            // were pushed and its mappings released when it retired.
            unsafe { abandon_state(t) };
        }
        if n < retired::BATCH {
            return;
        }
    }
}

/// In a fork child: the retired states' segments were settled with the vanished
/// threads' (their `tld` is not this thread's); recycles the states and their heaps.
///
/// # Safety
/// A fork child, whose segments not of this thread were settled (`fork.rs`): no segment
/// or span names a retired state any more.
pub unsafe fn forget_retired_in_child() {
    let mut t = retired::take_all_in_child();
    while !t.is_null() {
        // SAFETY: a state taken off the list with the rest of it.
        let next = unsafe { retired::next(t) };
        // SAFETY: only this thread runs, and no segment names the state any more.
        unsafe { recycle(t) };
        t = next;
    }
}

/// Recycles the heaps of `tld` and the state.
///
/// # Safety
/// No thread uses `tld` or its heaps, and no segment or span names them.
unsafe fn recycle(tld: *mut Tld) {
    // SAFETY: this function's contract.
    let mut h = unsafe { (*tld).heaps };
    while !h.is_null() {
        // SAFETY: heaps on the list are the state's; recycled after unlinking.
        let next = unsafe { (*h).next };
        // SAFETY: a heap of this pool, used no more.
        unsafe { HEAPS.free(h.cast()) };
        h = next;
    }
    // SAFETY: a state of this pool, used no more, its heaps gone.
    unsafe { TLDS.free(tld.cast()) };
}

/// Gives up ownership of a segment: releases its empty spans and lists it for adoption
/// if live blocks remain. Returns whether the segment is now empty (the caller destroys
/// it).
///
/// # Safety
/// `seg` is a segment of a state no thread uses any more (`abandon_state`), taken off
/// its list.
unsafe fn abandon_segment(seg: *mut Segment, owed: &mut Owed) -> bool {
    // SAFETY: `seg` is a live segment this thread owned; the claim serialises us with
    // threads freeing into it once `tld` is cleared.
    let sg = unsafe { &*seg };
    sg.lock_claim();
    sg.owner.store(0, Ordering::Relaxed);
    sg.tld.store(ptr::null_mut(), Ordering::SeqCst);
    // A remote free pushes, then reads `tld`; we clear `tld`, then look at the pushes
    // (`settle_spans`): one of the two sees the other.
    std::sync::atomic::fence(Ordering::SeqCst);
    // SAFETY: we hold the claim, and `tld` is null.
    let r = unsafe { settle_spans(seg, owed) };
    if !r {
        // SAFETY: claimed, `tld` cleared, `orphan_group` set by `settle_spans`, and on no
        // list.
        unsafe { abandoned::push(seg) };
        sg.unlock_claim();
    }
    r
}

/// For a segment whose owner is gone (`tld` already null) and which the caller holds:
/// releases its empty spans (cached ones included), marks the others `ABANDONED` and
/// notes their group in `orphan_group`. Returns whether the segment is now empty (the
/// caller destroys it, and it goes to the segment cache with its dirty slices, still
/// charged). A segment left with live blocks keeps its dirty slices, for the
/// thread that adopts it (`abandoned::purge_due` purges them if none does in time).
///
/// # Safety
/// `seg` is a span segment in use whose `tld` is null and which the caller holds: its
/// claim, or no other thread runs (a fork child).
pub unsafe fn settle_spans(seg: *mut Segment, owed: &mut Owed) -> bool {
    let now = crate::os::coarse_now_ns();
    let mut orphans = NO_GROUP;
    // SAFETY: the caller holds the segment (its claim, or the only thread of a fork child).
    let sg = unsafe { &mut *seg };
    for i in 1..SLICES {
        let s: *mut Span = &mut sg.spans[i];
        // SAFETY: a descriptor of this segment, which we hold.
        let sp = unsafe { &mut *s };
        let st = sp.state.load(Ordering::Relaxed);
        if st == State::Free || st == State::Interior {
            continue;
        }
        sp.collect();
        sp.heap.store(ptr::null_mut(), Ordering::Relaxed);
        sp.list = List::None;
        sp.is_direct = false;
        sp.lower_full();
        if st == State::Cached
            || st == State::Parked
            || st == State::Purged
            || sp.used.load(Ordering::Relaxed) == 0
        {
            // SAFETY: an empty span of a segment we hold.
            if unsafe { release_span(seg, s, now, owed) } {
                return true;
            }
        } else {
            sp.state.store(State::Abandoned, Ordering::Release);
            let g = sp.group();
            orphans = match orphans {
                NO_GROUP => g,
                o if o == g || g == NO_GROUP => o,
                _ => abandoned::MIXED,
            };
        }
    }
    sg.orphan_group = orphans;
    false
}

/// Bytes of thread states and heaps ever made (pool memory, never unmapped).
pub fn pool_bytes() -> usize {
    TLDS.bytes() + HEAPS.bytes()
}

pub fn lock_pools_for_fork() {
    TLDS.lock_for_fork();
    HEAPS.lock_for_fork();
}

pub fn unlock_pools_after_fork() {
    HEAPS.unlock_after_fork();
    TLDS.unlock_after_fork();
}
