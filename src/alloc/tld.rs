//! Thread state of the allocator (`Tld`): the thread's heaps (one per group it allocated
//! in), the span segments it owns, its cache of large mappings, and the TLS word the fast
//! path reads: the current heap.
//!
//! The TLS heap starts as the static empty heap, so a thread's first allocation takes the
//! slow path, which creates the `Tld` and the heap of the thread's current group. When
//! the thread changes group, the TLS heap goes back to the empty heap and the next
//! allocation finds (or creates) the heap of the new group.
//!
//! At thread exit every owned segment is abandoned: under its claim, `tld` is cleared,
//! then each span is collected; empty spans are released, the others marked `ABANDONED`
//! and left to the threads that free their last blocks (see `free.rs`). Uncharges owed
//! are applied after the claim is dropped.
//!
//! Invariant: a segment's `tld` is this thread's `Tld` exactly while it is on `segments`.

use super::abandoned;
use super::heap::{self, Owed};
use super::meta::Pool;
use super::span;
use super::tls;
use super::types::{empty_heap, Heap, List, Segment, Span, State, Tld, SLICES};
use crate::memcg;
use core::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

static TLDS: Pool = Pool::with_kept_tail(
    core::mem::size_of::<Tld>(),
    core::mem::offset_of!(Tld, cache_lock),
);
static HEAPS: Pool = Pool::new(core::mem::size_of::<Heap>());

/// The current heap (a TLS load): the fast path's only lookup.
#[inline]
pub fn heap() -> *mut Heap {
    tls::heap()
}

/// This thread's state, null before its first allocation.
#[inline]
pub fn current() -> *mut Tld {
    tls::tld()
}

/// The current heap if it can be read without a call (`tls::heap_inline`).
#[inline(always)]
pub fn heap_inline() -> Option<*mut Heap> {
    tls::heap_inline()
}

/// Called when the thread changes group: the next allocation looks up the new heap.
pub fn group_switched() {
    // SAFETY: the static empty heap.
    unsafe { tls::set_heap(empty_heap()) };
}

/// Holds a thread's cache lock. Thread states are never unmapped, so the guard keeps a
/// plain pointer and does not borrow the state.
pub struct CacheGuard(*const AtomicU32);

impl Drop for CacheGuard {
    fn drop(&mut self) {
        // SAFETY: the lock word lives in never-unmapped pool memory.
        unsafe { (*self.0).store(0, Ordering::Release) };
    }
}

impl Tld {
    pub fn lock_cache(&self) -> CacheGuard {
        while self
            .cache_lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        CacheGuard(&self.cache_lock)
    }

    /// A per-span key for free-list links (xorshift64*).
    pub fn next_key(&mut self) -> usize {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1) as usize
    }

    /// An owned segment has dirty slices due at `at`.
    pub fn note_dirty(&mut self, at: u64) {
        if at != 0 && (self.purge_at == 0 || at < self.purge_at) {
            self.purge_at = at;
        }
    }

    /// Purges the dirty slices of owned, cached and abandoned segments that are due at
    /// `now`.
    pub fn purge_due(&mut self, now: u64) {
        Segment::purge_cached_due(now);
        abandoned::purge_due(now);
        if self.purge_at != 0 && self.purge_at <= now {
            self.purge_owned_due(now);
        }
    }

    /// Purges the dirty slices of every owned segment (`malloc_trim`).
    pub fn purge_all(&mut self) {
        self.purge_owned(|sg| sg.purge_dirty());
    }

    /// Ages the owned segments' dirty slices at `now` (`Segment::purge_expired`).
    fn purge_owned_due(&mut self, now: u64) {
        self.purge_owned(|sg| sg.purge_expired(now));
    }

    /// Applies `purge` to every owned segment; notes the next deadline.
    fn purge_owned(&mut self, mut purge: impl FnMut(&mut Segment)) {
        self.purge_at = 0;
        let mut seg = self.segments;
        while !seg.is_null() {
            // SAFETY: segments on the owner's list are live and ours.
            let sg = unsafe { &mut *seg };
            purge(sg);
            self.note_dirty(sg.purge_at);
            seg = sg.next_owned;
        }
    }

    /// Makes `seg` this thread's.
    ///
    /// # Safety
    /// `self` is the calling thread's state; `seg` is a span segment in use that no
    /// thread owns or holds but the caller, on no owner's or abandoned list: new, from the
    /// segment cache, or abandoned and claimed by the caller (then taken off the list).
    pub unsafe fn adopt_segment(&mut self, seg: *mut Segment) {
        // A segment from the cache or the abandoned list may come with dirty slices.
        // SAFETY: a segment no other thread owns or holds: new, from the cache, or
        // abandoned and claimed by us (so on no list).
        unsafe {
            self.note_dirty((*seg).purge_at);
            (*seg).tld.store(self, Ordering::Release);
            (*seg).owner.store(self.id, Ordering::Relaxed);
            Segment::link_owned(&mut self.segments, seg);
        }
    }

    /// Adopts an abandoned segment whose live spans are all charged to `heap`'s group:
    /// the segment becomes this thread's, its live spans `heap`'s, and spans emptied
    /// since are released. False if no segment qualified.
    pub fn adopt_abandoned(&mut self, heap: &mut Heap) -> bool {
        let Some(seg) = abandoned::take(heap.group) else {
            return false;
        };
        // Claimed and off the list: from here the segment is ours. Frees that saw `tld`
        // null wait for the claim, then find the new owner and free again.
        // SAFETY: taken off the abandoned list with its claim held by us; `self` is the
        // state of this thread (whose heap `heap` is).
        unsafe { self.adopt_segment(seg) };
        let now = crate::os::coarse_now_ns();
        let mut owed = Owed::new();
        let mut emptied = false;
        // SAFETY: a segment we own and hold the claim of.
        let sg = unsafe { &mut *seg };
        for i in 1..SLICES {
            let s: *mut Span = &mut sg.spans[i];
            // SAFETY: a descriptor of our segment.
            let sp = unsafe { &mut *s };
            if sp.state.load(Ordering::Relaxed) != State::Abandoned {
                continue;
            }
            sp.collect();
            if sp.used.load(Ordering::Relaxed) == 0 {
                // SAFETY: an empty span of our segment, on no list.
                let (u, empty) = unsafe { heap::release_span(seg, s, now) };
                owed.add(u);
                emptied = empty;
            } else {
                // SAFETY: an `ABANDONED` span, collected, on no list, of the segment this
                // thread just adopted; `heap` is this thread's.
                unsafe { heap.adopt_span(s) };
            }
        }
        if emptied {
            // Every span was gone: the segment goes to the cache (its claim released).
            // SAFETY: on our list since `adopt_segment`, with no span left.
            unsafe { self.drop_segment(seg) };
        } else {
            self.note_dirty(sg.purge_at);
            sg.unlock_claim();
        }
        owed.apply();
        !emptied
    }

    /// Unlinks an owned segment that has no span left and destroys it.
    ///
    /// # Safety
    /// `self` is the calling thread's state and `seg` a segment on its list with no span
    /// left, used no more.
    pub unsafe fn drop_segment(&mut self, seg: *mut Segment) {
        // SAFETY: `seg` is on our list, which only this thread links.
        unsafe { Segment::unlink_owned(&mut self.segments, seg) };
        // SAFETY: our segment, unlinked, with no span left and used no more.
        unsafe { Segment::destroy(seg) };
    }
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

/// The slow path's first step: the thread's state and the heap of its current group,
/// installed as the TLS heap. Null when out of memory.
#[cold]
pub fn setup_heap() -> *mut Heap {
    let mut tld = current();
    if tld.is_null() {
        super::init();
        super::medium::init_parking();
        tld = TLDS.alloc() as *mut Tld;
        if tld.is_null() {
            return ptr::null_mut();
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
        memcg::threads::ensure_registered();
    }
    // SAFETY: this thread's live state.
    let h = unsafe { heap_for(tld, memcg::threads::current_group()) };
    if !h.is_null() {
        // SAFETY: a live heap of this thread, recycled only by its `thread_exit`.
        unsafe { tls::set_heap(h) };
    }
    h
}

/// Thread exit: abandon every segment, release every cache, recycle the state.
pub fn thread_exit() {
    let tld = current();
    if tld.is_null() {
        return;
    }
    // SAFETY: the static empty heap, and no state: the thread's are recycled below.
    unsafe {
        tls::set_heap(empty_heap());
        tls::set_tld(ptr::null_mut());
    }
    // SAFETY: `tld` was this thread's state; no other thread writes it.
    let t = unsafe { &mut *tld };
    super::large::drop_cache(t);
    let mut seg = t.segments;
    t.segments = ptr::null_mut();
    while !seg.is_null() {
        // SAFETY: segments on the list are ours until abandoned below.
        let next = unsafe { (*seg).next_owned };
        // Reclaiming threads purge cached spans under this lock; hold it while spans
        // change hands, and destroy segments (which takes the segment list lock) after.
        let guard = t.lock_cache();
        // SAFETY: a segment of this exiting thread, taken off its list.
        let (destroy, owed) = unsafe { abandon_segment(seg) };
        drop(guard);
        if destroy {
            // SAFETY: left with no span, unlisted, under our claim: used no more.
            unsafe { Segment::destroy(seg) };
        }
        owed.apply();
        seg = next;
    }
    let mut h = t.heaps;
    while !h.is_null() {
        // SAFETY: heaps on the list are ours; recycled after unlinking.
        let next = unsafe { (*h).next };
        // SAFETY: a heap of this pool, unlinked, and no longer the TLS heap.
        unsafe { HEAPS.free(h.cast()) };
        h = next;
    }
    // SAFETY: a state of this pool, no longer the TLS state, its heaps gone.
    unsafe { TLDS.free(tld.cast()) };
}

/// Gives up ownership of a segment: releases its empty spans and lists it for adoption
/// if live blocks remain. Returns whether the segment is now empty (the caller destroys
/// it) and the uncharges owed.
///
/// # Safety
/// `seg` is a segment the exiting calling thread owned, taken off its list.
unsafe fn abandon_segment(seg: *mut Segment) -> (bool, Owed) {
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
    let r = unsafe { settle_spans(seg) };
    if !r.0 {
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
/// caller destroys it, and it goes to the segment cache with its dirty slices) and the
/// uncharges owed. A segment left with live blocks keeps its dirty slices, for the
/// thread that adopts it (`abandoned::purge_due` purges them if none does in time).
///
/// # Safety
/// `seg` is a span segment in use whose `tld` is null and which the caller holds: its
/// claim, or no other thread runs (a fork child).
pub unsafe fn settle_spans(seg: *mut Segment) -> (bool, Owed) {
    let now = crate::os::coarse_now_ns();
    let mut owed = Owed::new();
    let mut orphans = span::NO_GROUP;
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
        sp.heap = ptr::null_mut();
        sp.list = List::None;
        sp.is_direct = false;
        sp.lower_full();
        if st == State::Cached
            || st == State::Parked
            || st == State::Purged
            || sp.used.load(Ordering::Relaxed) == 0
        {
            // SAFETY: an empty span of a segment we hold.
            let (u, empty) = unsafe { heap::release_span(seg, s, now) };
            owed.add(u);
            if empty {
                return (true, owed);
            }
        } else {
            sp.state.store(State::Abandoned, Ordering::Release);
            let g = sp.group();
            orphans = match orphans {
                span::NO_GROUP => g,
                o if o == g || g == span::NO_GROUP => o,
                _ => abandoned::MIXED,
            };
        }
    }
    sg.orphan_group = orphans;
    (false, owed)
}

pub fn lock_pools_for_fork() {
    TLDS.lock_for_fork();
    HEAPS.lock_for_fork();
}

pub fn unlock_pools_after_fork() {
    HEAPS.unlock_after_fork();
    TLDS.unlock_after_fork();
}
