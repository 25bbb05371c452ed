//! Heaps: one thread's allocation state for one group.
//!
//! `direct[class]` is the span the fast path pops from; `by_size[slot_of(n)]` is the same
//! span for a request of `n ≤ LOOKUP_MAX` bytes (kept in step by `set_direct`), so small
//! requests skip the class lookup. Behind it, per class, a queue of
//! spans that may have free blocks; spans found with none move to `full`, and come back
//! when a remote free takes down their `FULL` flag (which marks the heap `full_dirty`).
//! A remote free into a queued span tells nobody: the slow path collects it when it
//! walks that queue, and every `max(SWEEP_MIN, spans)` slow paths the heap sweeps all
//! its queues (`sweep`) for spans other threads emptied, which go back.
//! Empty spans are cached (still charged, `CACHED`), at most `CACHE_MAX` per heap; the
//! oldest beyond that is released: returned to its segment, its pages still charged as
//! free slices until they are purged or reused (see `segment`). A group at its `max` or
//! dying keeps no empty span, and a released span's pages are purged at once there. A medium block has a span of its own, on the full list
//! while it lives; freed, it is parked in `parked` or cached (`medium.rs`).
//!
//! Only the owner thread touches a heap's queues and `parked`. The cached spans (in
//! `cache` and `parked`) are also reached by other threads reclaiming memory, through
//! the segment list and under the thread's `cache_lock`: they may purge a `CACHED` or
//! `PARKED` span (uncharging it, state `PURGED`), never unlink it. The owner changes
//! `cache` under `cache_lock` and takes spans out of `CACHED` with `Span::claim`;
//! `parked` it takes back with no lock (the state protocol in `span`, the handshake in
//! `medium`).
//!
//! Every charge, uncharge or user callback happens with the heap consistent and no lock
//! held, because a callback may allocate or free on this very heap.
//!
//! The methods that take a span by pointer are `unsafe`. Unless one says otherwise, their
//! contract is that the caller is the heap's owner thread and the span is *a span of this
//! heap*: the live descriptor of a span (not an `INTERIOR` one) in a segment that thread
//! owns, whose `heap` is this heap and which is on the list of this heap its `list`
//! names (none for `LIST_NONE`).

use super::abandoned;
use super::charged::{Owed, NO_GROUP};
use super::size_class::{self, NR_CLASSES, SLOTS};
use super::types::{
    empty_span, Heap, List, Queue, Segment, Span, State, Tld, MEDIUM, SEG_SIZE, SLICES, SLICE_PAGES,
};
use crate::memcg;
use core::ptr;
use std::sync::atomic::Ordering;

/// Empty spans kept per heap before the oldest is released.
pub const CACHE_MAX: u32 = 8;
/// Medium spans a heap keeps: its parked span and those in its cache (among its
/// `CACHE_MAX` spans).
pub const MEDIUM_CACHE: u32 = 2;
/// Slow paths between two sweeps of a heap's class queues, at least (`Heap::sweep`).
const SWEEP_MIN: u32 = 64;
/// Bytes of never-used blocks made available at a time: one page, so a span touches only
/// the pages it hands blocks out from (memory is touched lazily).
const EXTEND_BYTES: usize = 4 << 10;

impl Queue {
    /// # Safety
    /// `s` is a live span descriptor on no list.
    pub unsafe fn push_front(&mut self, s: *mut Span) {
        // SAFETY: by the contract, `s` is valid; `head` is a listed span.
        unsafe {
            (*s).prev = ptr::null_mut();
            (*s).next = self.head;
            if self.head.is_null() {
                self.tail = s;
            } else {
                (*self.head).prev = s;
            }
        }
        self.head = s;
    }

    /// # Safety
    /// `s` is a live span descriptor on no list.
    #[inline]
    pub unsafe fn push_back(&mut self, s: *mut Span) {
        // SAFETY: by the contract, `s` is valid; `tail` is a listed span.
        unsafe {
            (*s).next = ptr::null_mut();
            (*s).prev = self.tail;
            if self.tail.is_null() {
                self.head = s;
            } else {
                (*self.tail).next = s;
            }
        }
        self.tail = s;
    }

    /// # Safety
    /// `s` is on this list.
    #[inline]
    pub unsafe fn remove(&mut self, s: *mut Span) {
        // SAFETY: by the contract `s` and its neighbours are listed spans.
        unsafe {
            let (p, n) = ((*s).prev, (*s).next);
            if p.is_null() {
                self.head = n;
            } else {
                (*p).next = n;
            }
            if n.is_null() {
                self.tail = p;
            } else {
                (*n).prev = p;
            }
            (*s).prev = ptr::null_mut();
            (*s).next = ptr::null_mut();
        }
    }
}

/// Releases an empty span's slices: dirty, and still charged as free pages of its group
/// (the holder of the segment purges them when due, a reclaimer at a limit sooner) —
/// unless the group is at its `max` (or an ancestor is) or dying: then they are purged
/// now, their uncharge owed. Returns whether the segment has no span left.
///
/// # Safety
/// `seg` is the segment of `s`, held by the caller (its owner thread under its claim, or
/// the claim holder of an abandoned one, or a fork child's one thread); `s` is on no list.
pub unsafe fn release_span(seg: *mut Segment, s: *mut Span, now: u64, owed: &mut Owed) -> bool {
    // SAFETY: by the contract `s` and `seg` are valid and held by the caller.
    let (sg, span) = unsafe { (&mut *seg, &mut *s) };
    let group = span.group();
    let purge = group != NO_GROUP && memcg::charge::keeps_no_free_pages(group);
    sg.release_slices(span, now, purge.then_some(owed))
}

impl Heap {
    /// The owner thread's state.
    #[inline]
    pub fn tld(&self) -> *mut Tld {
        self.tld.load(Ordering::Relaxed)
    }

    /// Sets up a pool-allocated heap for `group` owned by `tld`.
    ///
    /// # Safety
    /// `tld` is the calling thread's live state, which outlives the heap: the heap's
    /// methods follow it.
    pub unsafe fn init(&mut self, group: u32, tld: *mut Tld) {
        self.by_size = [empty_span(); SLOTS];
        self.direct = [empty_span(); NR_CLASSES];
        self.group = group;
        self.tld.store(tld, Ordering::Relaxed);
        self.attach_word = memcg::threads::pending_word();
        self.next = ptr::null_mut();
        self.queues = [Queue::EMPTY; NR_CLASSES];
        self.full = Queue::EMPTY;
        self.full_dirty.store(false, Ordering::Relaxed);
        self.cache = Queue::EMPTY;
        self.cache_len = 0;
        self.medium_cached = 0;
        self.parked = ptr::null_mut();
        self.sweep_in = SWEEP_MIN;
    }

    /// Whether another thread asked this thread to change group (`apply_pending_attach`
    /// takes the request).
    #[inline]
    pub fn attach_asked(&self) -> bool {
        self.attach_word
            .is_some_and(|w| w.load(Ordering::Relaxed) != 0)
    }

    /// Brings back spans that remote frees took out of the full list.
    pub(super) fn reactivate(&mut self) {
        if !self.full_dirty.load(Ordering::Relaxed)
            || !self.full_dirty.swap(false, Ordering::Acquire)
        {
            return;
        }
        let mut s = self.full.head;
        while !s.is_null() {
            // SAFETY: spans on our lists are live descriptors we own.
            let next = unsafe { (*s).next };
            // SAFETY: as above.
            if !unsafe { (*s).in_full() } {
                // SAFETY: as above.
                if unsafe { (*s).class() } == MEDIUM {
                    // Its one block was freed by another thread.
                    // SAFETY: a span of this heap, on its full list.
                    unsafe { self.free_medium(s) };
                } else {
                    // SAFETY: as above.
                    unsafe { self.move_list(s, List::Class) };
                }
            }
            s = next;
        }
    }

    /// Makes `s` the span the fast path allocates from for `class`, keeping the spans'
    /// `is_direct` flags in step (the shared empty span is never written).
    ///
    /// # Safety
    /// `s` is the empty span, or a span of this heap of `class` (module docs) that stays
    /// one while it is direct.
    unsafe fn set_direct(&mut self, class: usize, s: *mut Span) {
        let old = self.direct[class];
        if old != empty_span() {
            // SAFETY: a direct span other than the empty one is a span of this heap.
            unsafe { (*old).is_direct = false };
        }
        if s != empty_span() {
            // SAFETY: a span of this heap (the contract).
            unsafe { (*s).is_direct = true };
        }
        self.direct[class] = s;
        for slot in size_class::slots_of(class) {
            self.by_size[slot] = s;
        }
    }

    /// Moves `s` from whichever list it is on to `to` (front of a class queue, back of the
    /// full list, front of the cache). Inlined: with `to` known, only one arm is left.
    ///
    /// # Safety
    /// `s` is a span of this heap (module docs).
    #[inline]
    pub(super) unsafe fn move_list(&mut self, s: *mut Span, to: List) {
        // SAFETY: `s` is a span of this heap; `list` says where it is.
        unsafe {
            let class = (*s).class() as usize;
            match (*s).list {
                List::Class => self.queues[class].remove(s),
                List::Full => self.full.remove(s),
                List::Cache => {
                    self.cache.remove(s);
                    self.cache_len -= 1;
                    self.medium_cached -= u32::from(class == MEDIUM as usize);
                }
                _ => {}
            }
            match to {
                List::Class => self.queues[class].push_front(s),
                List::Full => self.full.push_back(s),
                List::Cache => {
                    self.cache.push_front(s);
                    self.cache_len += 1;
                    self.medium_cached += u32::from(class == MEDIUM as usize);
                }
                _ => {}
            }
            (*s).list = to;
        }
    }

    /// Makes `s` yield blocks if it can: collects frees, or extends into fresh blocks.
    /// `Err(())` when extending needs a page the group refuses without reclaim.
    fn refill(&mut self, s: &mut Span) -> Result<bool, ()> {
        s.collect();
        if s.free.is_null() && s.reserved < s.capacity {
            let n = (EXTEND_BYTES / s.block_size() as usize).max(1) as u32;
            self.extend_charged(s, n)?;
        }
        Ok(!s.free.is_null())
    }

    /// Carves up to `n` more blocks of `s` (a small-block span of this heap), charging
    /// the pages they reach first: a span is charged for the pages its blocks have
    /// reached, not whole. The charge uses the stock and the counters only (`NORETRY`: no
    /// callback may run while the heap is walked); what it leaves above `high` is
    /// handled once the allocation is done (`alloc_class`). `Err(())` if refused.
    fn extend_charged(&mut self, s: &mut Span, n: u32) -> Result<(), ()> {
        let reach = (s.reserved + n).min(s.capacity) as usize * s.block_size() as usize;
        let want = reach.div_ceil(crate::consts::PAGE_SIZE) as u64;
        let held = s.charged.pages();
        if want > held {
            memcg::charge::try_charge(self.group, want - held, memcg::charge::NORETRY)
                .map_err(|_| ())?;
            s.charged.add(self.group, want - held);
            self.charged_quietly = true;
        }
        s.extend(n);
        Ok(())
    }

    /// Moves a span with no free block to the full list.
    ///
    /// # Safety
    /// `s` is a span of this heap (module docs) on its class queue.
    unsafe fn move_to_full(&mut self, s: *mut Span) {
        // SAFETY: `s` is on its class queue, owned by this heap.
        let class = unsafe { (*s).class() as usize };
        if self.direct[class] == s {
            // SAFETY: the empty span.
            unsafe { self.set_direct(class, empty_span()) };
        }
        // SAFETY: a span of this heap.
        unsafe { self.move_list(s, List::Full) };
        // SAFETY: a span of this heap.
        if !unsafe { (*s).raise_full() } {
            // A remote free came in since the span was collected: it has blocks.
            // SAFETY: a span of this heap, on its full list now.
            unsafe { self.move_list(s, List::Class) };
        }
    }

    /// Allocates a block of `class` when `direct[class]` is empty.
    pub fn alloc_class(&mut self, class: usize) -> *mut u8 {
        self.reactivate();
        if self.sweep_in <= 1 {
            self.sweep();
        } else {
            self.sweep_in -= 1;
        }
        let mut p = self.alloc_queued(class);
        if p.is_null() && self.adopt_before_new_span() {
            // The adopted segment's spans of `class` may have free blocks.
            p = self.alloc_queued(class);
        }
        if p.is_null() {
            p = match self.new_span(class) {
                Some(s) => {
                    // SAFETY: a span of this heap of `class`, just queued.
                    unsafe { self.set_direct(class, s) };
                    // SAFETY: a fresh span with free blocks, owned by us.
                    unsafe { (*s).pop() }
                }
                None => ptr::null_mut(),
            };
        }
        self.settle_quiet_charges();
        p
    }

    /// Pages charged without reclaim while spans were extended or took over other
    /// groups' pages: the heap is consistent again, so `high` may now reclaim (and
    /// callbacks run) and throttle.
    pub(super) fn settle_quiet_charges(&mut self) {
        if self.charged_quietly {
            self.charged_quietly = false;
            memcg::high::handle_over_high(self.group);
        }
    }

    /// Gives back the spans of the class queues that other threads emptied: a span
    /// (not direct) every block of which they freed is collected and handed to
    /// `span_emptied`. Then purges what is due in the thread's segments and in the
    /// cached and abandoned ones (`Tld::purge_due`).
    ///
    /// A remote free into a span that is not on the full list tells nobody (only a span
    /// on the full list has a flag to take down), and the slow path looks at its class's
    /// queue only up to the first span with blocks: a span behind it, emptied by other
    /// threads, kept its pages, and its segment, until that queue ran dry, which for a
    /// class the thread no longer allocates is never. Run every `max(SWEEP_MIN, spans
    /// seen the time before)` slow paths, so that a slow path looks at one span at most,
    /// amortised.
    #[cold]
    fn sweep(&mut self) {
        let mut seen = 0u32;
        for class in 0..NR_CLASSES {
            let mut s = self.queues[class].head;
            while !s.is_null() {
                // SAFETY: spans on our queues are live descriptors we own.
                let span = unsafe { &mut *s };
                let next = span.next;
                seen = seen.saturating_add(1);
                // Only a span whose every block handed out was freed by other threads
                // (`remote_count`). Collecting the others would only do early what the
                // owner's walk does when it needs them, and in a producer's spans, while
                // its consumers are still freeing into them, it would pull their blocks'
                // lines back and forth (xmalloc: 1.5x the time).
                let used = span.used.load(Ordering::Relaxed);
                if used != 0 && !span.is_direct && span.remote_count() == used {
                    span.collect();
                    if span.used.load(Ordering::Relaxed) == 0 {
                        // SAFETY: a small-block span of this heap with no block handed
                        // out, on its class queue.
                        unsafe { self.span_emptied(s) };
                    }
                }
                s = next;
            }
        }
        self.sweep_in = seen.max(SWEEP_MIN);
        // SAFETY: the heap's thread state is live while the thread runs.
        unsafe { (*self.tld()).purge_due(crate::os::coarse_now_ns()) };
    }

    /// Before a new span is made: when it would take a new segment (the thread's
    /// segments have no free slice, and no cached span would do), adopts an abandoned
    /// segment first (`adopt`), whose live spans join the queues with their free blocks.
    /// Whether one was adopted.
    ///
    /// Without this, the new span came from the adopted segment's free slices while its
    /// spans of the class waited: under thread churn where each thread leaves a block or
    /// two behind (mleak), every thread took a slice of its own, one segment filled
    /// with spans of one live block each, and the next thread made a new one (2,000
    /// threads made 801 segments, 29 MiB for 125 KiB live).
    fn adopt_before_new_span(&mut self) -> bool {
        if !abandoned::waiting() || self.cache_len != 0 {
            return false;
        }
        // SAFETY: the heap's thread state is live while the thread runs.
        let mut seg = unsafe { (*self.tld()).segments };
        while !seg.is_null() {
            // SAFETY: segments on the owner's list are live and ours.
            let sg = unsafe { &*seg };
            if sg.has_free_run(1) {
                return false;
            }
            seg = sg.next_owned;
        }
        self.adopt()
    }

    /// Adopts an abandoned segment of this heap's group, if one waits: the segment
    /// becomes this thread's, its live spans this heap's, and spans emptied since are
    /// released. False if no segment qualified.
    ///
    /// Called only when the thread's own segments have no room for a new span
    /// (`fresh_slices`), in place of a new segment, as mimalloc reclaims: a thread that
    /// has room takes none, so a long-lived thread does not collect every exited
    /// thread's segment (its free slices, which the next thread would have reused, and
    /// its spans, whose blocks other threads go on freeing).
    fn adopt(&mut self) -> bool {
        if !abandoned::waiting() {
            return false;
        }
        let Some(seg) = abandoned::take(self.group) else {
            return false;
        };
        // Claimed and off the list: from here the segment is ours. Frees that saw `tld`
        // null wait for the claim, then find the new owner and free again.
        // SAFETY: the heap's thread state is live while the thread runs, and is this
        // thread's.
        let t = unsafe { &mut *self.tld() };
        // SAFETY: taken off the abandoned list with its claim held by us; `t` is this
        // thread's state.
        unsafe { t.adopt_segment(seg) };
        let now = crate::os::coarse_now_ns();
        let mut emptied = false;
        let mut owed = Owed::new();
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
                emptied = unsafe { release_span(seg, s, now, &mut owed) };
            } else {
                // SAFETY: an `ABANDONED` span, collected, on no list, of the segment this
                // thread just adopted; this heap is this thread's.
                unsafe { self.adopt_span(s) };
            }
        }
        if emptied {
            // Every span was gone: the segment goes to the cache (its claim released).
            // SAFETY: on our list since `adopt_segment`, with no span left.
            unsafe { t.drop_segment(seg) };
        } else {
            t.note_dirty(sg.purge_at);
            sg.unlock_claim();
        }
        owed.apply();
        !emptied
    }

    /// A block from the spans queued for `class` (null if none has one), moving spans
    /// found full to the full list.
    fn alloc_queued(&mut self, class: usize) -> *mut u8 {
        let mut s = self.queues[class].head;
        while !s.is_null() {
            // SAFETY: spans on our queues are live descriptors we own.
            let span = unsafe { &mut *s };
            let next = span.next;
            let Ok(refilled) = self.refill(span) else {
                // Its next page was refused: leave it queued for a later try.
                s = next;
                continue;
            };
            if refilled {
                if span.used.load(Ordering::Relaxed) == 0 && self.direct[class] != s {
                    // Emptied by remote frees: cache it unless it is all we have.
                    if !next.is_null() {
                        // SAFETY: an empty span of this heap, on its class queue.
                        unsafe { self.retire(s) };
                        s = next;
                        continue;
                    }
                }
                // SAFETY: a span of this heap on the queue of `class`.
                unsafe { self.set_direct(class, s) };
                return span.pop();
            }
            // SAFETY: a span of this heap on its class queue.
            unsafe { self.move_to_full(s) };
            s = next;
        }
        ptr::null_mut()
    }

    /// Takes over a live span of a segment this thread just adopted (on no list): it
    /// joins its class queue, or the full list for a medium block.
    ///
    /// # Safety
    /// The caller is this heap's owner thread; `s` is the descriptor of an `ABANDONED`
    /// span (collected, on no list) of a segment that thread has just adopted.
    pub(super) unsafe fn adopt_span(&mut self, s: *mut Span) {
        // SAFETY: a span of a segment we own, on no list.
        let span = unsafe { &mut *s };
        span.heap.store(self, Ordering::Relaxed);
        span.list = List::None;
        span.is_direct = false;
        span.state.store(State::Active, Ordering::Relaxed);
        if span.class() != MEDIUM {
            // SAFETY: a span of this heap now, on no list.
            unsafe { self.move_list(s, List::Class) };
            return;
        }
        // SAFETY: a span of this heap now, on no list.
        unsafe { self.move_list(s, List::Full) };
        if !span.raise_full() {
            // Freed by another thread meanwhile: `reactivate` frees it.
            self.full_dirty.store(true, Ordering::Release);
        }
    }

    /// A new span for `class`: a cached empty span (one of `class` first, whose free
    /// lists still hold all its blocks), or fresh slices charged to the group.
    fn new_span(&mut self, class: usize) -> Option<*mut Span> {
        if let Some(s) = self.take_cached(true, Some(class as u8)) {
            // SAFETY: taken from our cache: a span of this heap of `class`, still charged,
            // `ACTIVE`, on no list.
            return Some(unsafe { self.revive(s) });
        }
        // A charged span of another class (its pages charged as far as its blocks
        // reached), a purged one (nothing charged), or fresh slices (the pages of our
        // group they still had, `Segment::take_slices`).
        let s = match self.take_cached(true, None) {
            Some(s) => s,
            None => match self.take_cached(false, None) {
                Some(s) => s,
                None => self.fresh_slice()?,
            },
        };
        // Charged: the pages its first blocks reach (`setup` carves them); the rest is
        // charged as the span extends. The span is on no list and in no cache: callbacks
        // the charge runs, which may use this heap, do not see it.
        let size = size_class::size_of(class);
        let pages = ((EXTEND_BYTES / size).max(1) * size).div_ceil(crate::consts::PAGE_SIZE) as u64;
        // SAFETY: `s` is a span we own, on no list.
        let held = unsafe { (*s).charged.pages() };
        if held < pages {
            if memcg::charge::try_charge(self.group, pages - held, 0).is_err() {
                // SAFETY: a span of this heap on no list, with no block, out of
                // reclaimers' reach (taken back `ACTIVE`, or fresh).
                unsafe { self.release(s) };
                return None;
            }
            // SAFETY: as above.
            unsafe { (*s).charged.add(self.group, pages - held) };
        }
        // SAFETY: as above: on no list, in a segment we own.
        Some(unsafe { self.setup(s, class) })
    }

    /// Takes a cached span: a resident one, still charged (`charged`), or a purged one,
    /// which holds no charge; of `class` only, if given.
    fn take_cached(&mut self, charged: bool, class: Option<u8>) -> Option<*mut Span> {
        // SAFETY: the thread's cache lock guards span states against reclaimers.
        let tld = unsafe { &*self.tld() };
        let _g = tld.lock_cache();
        let mut s = self.cache.head;
        while !s.is_null() {
            // SAFETY: cached spans are live descriptors owned by this heap.
            let span = unsafe { &mut *s };
            let st = span.state.load(Ordering::Relaxed);
            // Under the lock a span is `PURGING` only for a moment, by a reclaimer that
            // locked for another thread and gives it back: skip it.
            if st != State::Purging
                && (st == State::Cached) == charged
                && span.class() != MEDIUM
                && class.map_or(true, |c| c == span.class())
            {
                let purged = span.claim();
                if purged != charged {
                    // SAFETY: a span of this heap, in its cache.
                    unsafe { self.move_list(s, List::None) };
                    span.state.store(State::Active, Ordering::Relaxed);
                    return Some(s);
                }
                // Not what it looked like (cannot happen under the lock): leave it cached.
                if !purged {
                    span.state.store(State::Cached, Ordering::Release);
                }
            }
            s = span.next;
        }
        None
    }

    /// A fresh slice (`fresh_slices`).
    fn fresh_slice(&mut self) -> Option<*mut Span> {
        self.fresh_slices(1, SLICE_PAGES).map(|(s, _)| s)
    }

    /// A new span of `n` slices that will use its first `need` pages, and whether its
    /// memory reads as zeros: from this thread's segments, else from an abandoned
    /// segment of its group that it adopts (`adopt`), else from a new segment (or one
    /// from the segment cache). Its record holds the pages of our group it took over (at
    /// most `need`).
    pub(super) fn fresh_slices(&mut self, n: usize, need: u64) -> Option<(*mut Span, bool)> {
        // SAFETY: the heap's thread state is live while the thread runs.
        let tld = unsafe { &mut *self.tld() };
        tld.purge_due(crate::os::coarse_now_ns());
        let mut seg = tld.segments;
        while !seg.is_null() {
            // SAFETY: segments on the owner's list are live and ours.
            if let Some(r) = unsafe { self.take_from(seg, n, need) } {
                return Some(r);
            }
            // SAFETY: as above.
            seg = unsafe { (*seg).next_owned };
        }
        if self.adopt() {
            // SAFETY: the segment just adopted heads the list.
            if let Some(r) = unsafe { self.take_from(tld.segments, n, need) } {
                return Some(r);
            }
        }
        let seg = Segment::create_spans()?;
        // Listed already: a reclaimer may look at its free slices (a cached segment's may
        // be charged), under its claim.
        // SAFETY: a segment just made (or taken from the cache), nobody else's.
        unsafe { (*seg).lock_claim() };
        // SAFETY: as above; `tld` is this thread's.
        unsafe { tld.adopt_segment(seg) };
        // SAFETY: as above.
        unsafe { (*seg).unlock_claim() };
        // SAFETY: a new segment we own, with every slice but the header free.
        unsafe { self.take_from(seg, n, need) }
    }

    /// `n` slices for a new span of this heap's group from `seg`, taken under its claim
    /// (a reclaiming thread may be purging its free slices); other groups' pages taken
    /// over are uncharged from them once the claim is dropped and charged to ours (or, if
    /// ours refuses them, the span's memory is purged).
    ///
    /// # Safety
    /// `seg` is a span segment this thread owns.
    unsafe fn take_from(
        &mut self,
        seg: *mut Segment,
        n: usize,
        need: u64,
    ) -> Option<(*mut Span, bool)> {
        // SAFETY: by the contract, a live segment of ours.
        let sg = unsafe { &mut *seg };
        if !sg.has_free_run(n) {
            return None;
        }
        let mut owed = Owed::new();
        sg.lock_claim();
        let r = sg
            .take_slices(n, self.group, need, &mut owed)
            .map(|t| (t.span as *mut Span, t.zeroed, t.moved));
        sg.unlock_claim();
        owed.apply();
        let (s, zeroed, moved) = r?;
        if moved > 0 {
            // Other groups' resident pages change hands: charged to ours, without reclaim
            // (what passes `high` is handled once the allocation is done), or given back.
            // SAFETY: the span just taken: ours, on no list, with no block.
            let span = unsafe { &*s };
            if memcg::charge::try_charge(self.group, moved, memcg::charge::NORETRY).is_ok() {
                span.charged.add(self.group, moved);
                self.charged_quietly = true;
            } else {
                let _errno = crate::os::ErrnoGuard::new();
                // SAFETY: the span's memory, which holds no block.
                unsafe { crate::os::mem::purge(span.start, span.bytes()) };
                if let Some(u) = span.take_charge() {
                    u.apply();
                }
                return Some((s, true));
            }
        }
        Some((s, zeroed))
    }

    /// Formats span `s` for `class` and queues it.
    ///
    /// # Safety
    /// The caller is this heap's owner thread; `s` is the descriptor of a span (not
    /// `INTERIOR`) of a segment that thread owns, `ACTIVE` or taken fresh, on no list, with
    /// no block handed out.
    unsafe fn setup(&mut self, s: *mut Span, class: usize) -> *mut Span {
        // SAFETY: `s` is a span we own, on no list.
        let span = unsafe { &mut *s };
        let size = size_class::size_of(class);
        // SAFETY: the thread state outlives its heaps.
        let key = unsafe { (*self.tld()).next_key() };
        let capacity = (span.bytes() / size) as u32;
        // SAFETY: a span of a segment this thread owns; this heap is the thread's.
        unsafe { span.format(class as u8, size, capacity, key, self) };
        let n = (EXTEND_BYTES / size).max(1) as u32;
        span.extend(n);
        span.list = List::None;
        // SAFETY: a span of this heap now, on no list.
        unsafe { self.move_list(s, List::Class) };
        s
    }

    /// Puts back on its class queue a span taken from the cache still charged and of the
    /// class wanted: its blocks are all on its free lists (never purged, so their links
    /// are intact), and its key, shape and group stay; the span is not formatted again,
    /// and its blocks come back most recently freed first, without carving.
    ///
    /// # Safety
    /// `s` is a span of this heap (module docs), on no list, `ACTIVE`, charged, with no
    /// block handed out.
    unsafe fn revive(&mut self, s: *mut Span) -> *mut Span {
        // SAFETY: `s` is a span we own, on no list, `ACTIVE`.
        let span = unsafe { &mut *s };
        debug_assert_eq!(span.used.load(Ordering::Relaxed), 0);
        debug_assert_eq!(span.remote_count(), 0);
        debug_assert!(span.charged.is_of(self.group));
        span.collect();
        // SAFETY: a span of this heap, on no list.
        unsafe { self.move_list(s, List::Class) };
        s
    }

    /// The owner freed into `s` while it sat on the full list: it has room again. It
    /// goes to the back of its class queue, behind the spans that have had longer to
    /// gather free blocks, so that the slow path, which takes spans from the front,
    /// finds more than the one block just freed (as mimalloc does: at the front,
    /// random-order frees send every few allocations to the slow path).
    ///
    /// # Safety
    /// `s` is a small-block span of this heap (module docs).
    pub unsafe fn unfull(&mut self, s: *mut Span) {
        // SAFETY: `s` is a span of this heap.
        let span = unsafe { &mut *s };
        if span.list == List::Full {
            span.lower_full();
            // SAFETY: `s` is on this heap's full list; it moves to its class queue.
            unsafe {
                self.full.remove(s);
                self.queues[span.class() as usize].push_back(s);
            }
            span.list = List::Class;
        }
    }

    /// The owner's free made `s` empty (or found it empty): cache it, unless it is the
    /// span the fast path allocates from.
    ///
    /// # Safety
    /// `s` is a small-block span of this heap (module docs) with no block handed out, on
    /// its class queue or the full list.
    pub unsafe fn span_emptied(&mut self, s: *mut Span) {
        // SAFETY: `s` is a span of this heap.
        let class = unsafe { (*s).class() as usize };
        if self.direct[class] == s {
            if !memcg::charge::is_dying(self.group) {
                return;
            }
            // A dying group's spans go back as they empty, the direct one too.
            // SAFETY: the empty span.
            unsafe { self.set_direct(class, empty_span()) };
        }
        // An idle heap keeps no empty span; nor does a group at its `max` or dying,
        // where free pages must go back.
        if self.idle_trimmed || memcg::charge::keeps_no_free_pages(self.group) {
            // SAFETY: as above.
            unsafe { (*s).lower_full() };
            // SAFETY: as above.
            unsafe { self.move_list(s, List::None) };
            // SAFETY: an empty span of this heap, not direct (seen above), on no list now.
            unsafe { self.release(s) };
            return;
        }
        // SAFETY: an empty span of this heap on its class queue.
        unsafe { self.retire(s) };
    }

    /// The thread has left this heap's group for a while (`thread::trim_idle_heap`): gives
    /// back its empty spans and makes none of its spans direct, so the frees that empty
    /// them later reach `span_emptied`, which releases them.
    pub fn go_idle(&mut self) {
        self.idle_trimmed = true;
        self.trim();
        for class in 0..NR_CLASSES {
            // SAFETY: the empty span.
            unsafe { self.set_direct(class, empty_span()) };
        }
    }

    /// Moves an empty span from its queue to the cache; releases the oldest beyond
    /// `CACHE_MAX`.
    ///
    /// # Safety
    /// `s` is a small-block span of this heap (module docs) with no block handed out, on
    /// its class queue or the full list.
    unsafe fn retire(&mut self, s: *mut Span) {
        // SAFETY: `s` is a span of this heap.
        unsafe { (*s).lower_full() };
        // SAFETY: as above.
        let class = unsafe { (*s).class() as usize };
        if self.direct[class] == s {
            // SAFETY: the empty span.
            unsafe { self.set_direct(class, empty_span()) };
        }
        // SAFETY: an empty span of this heap on its queue.
        unsafe { self.cache_span(s) };
    }

    /// Puts an empty span on no list (or its queue) in the cache; releases the oldest
    /// beyond `CACHE_MAX`.
    ///
    /// # Safety
    /// `s` is a span of this heap (module docs) with no block handed out, `ACTIVE`, on no
    /// list or on its class queue or the full list, and not direct.
    pub(super) unsafe fn cache_span(&mut self, s: *mut Span) {
        let victim = {
            // SAFETY: the thread state outlives its heaps.
            let _g = unsafe { (*self.tld()).lock_cache() };
            // SAFETY: a span of this heap.
            unsafe { self.move_list(s, List::Cache) };
            // SAFETY: `s` is ours.
            unsafe { (*s).state.store(State::Cached, Ordering::Release) };
            if self.cache_len > CACHE_MAX {
                let v = self.cache.tail;
                // SAFETY: the oldest span in our cache, under the cache lock.
                unsafe { self.take_off_cache(v) };
                Some(v)
            } else {
                None
            }
        };
        if let Some(v) = victim {
            // SAFETY: taken off our cache: an empty span of this heap on no list, claimed.
            unsafe { self.release(v) };
        }
    }

    /// With the cache lock held: unlists a cached span for release. A charged span becomes
    /// `ACTIVE` so reclaiming threads leave it (and its charge) to us.
    ///
    /// # Safety
    /// `s` is a span in this heap's cache (module docs), and the caller holds the thread's
    /// cache lock.
    unsafe fn take_off_cache(&mut self, s: *mut Span) {
        // SAFETY: a span of this heap, in its cache.
        unsafe { self.move_list(s, List::None) };
        // SAFETY: a span we own; `claim` leaves a purged one `PURGED` (no charge).
        unsafe { (*s).claim() };
    }

    /// Releases a span of this heap that is on no list: its slices go back to the
    /// segment, its pages still charged as the group's free pages.
    ///
    /// # Safety
    /// `s` is a span of this heap (module docs) on no list and not direct, with no block
    /// handed out, out of reclaimers' reach (`ACTIVE`, or claimed back `PURGED`).
    pub unsafe fn release(&mut self, s: *mut Span) {
        let seg = (s as usize & !(SEG_SIZE - 1)) as *mut Segment;
        let now = crate::os::coarse_now_ns();
        // SAFETY: its segment is owned by this thread: live.
        let sg = unsafe { &mut *seg };
        let mut owed = Owed::new();
        sg.lock_claim();
        // SAFETY: `s` is ours and listed nowhere; we hold its segment's claim.
        let seg_empty = unsafe { release_span(seg, s, now, &mut owed) };
        // SAFETY: the thread state outlives its heaps.
        let tld = unsafe { &mut *self.tld() };
        if seg_empty {
            // SAFETY: a segment of this thread's list with no span left, whose claim we
            // hold (`destroy` drops it).
            unsafe { tld.drop_segment(seg) };
        } else {
            tld.note_dirty(sg.purge_at);
            sg.unlock_claim();
        }
        owed.apply();
        if !seg_empty {
            tld.purge_due(now);
        }
    }

    /// Releases every empty span this heap holds (emptied by local or remote frees, or
    /// cached), for `malloc_trim` and for reclaim in the owner thread: their pages become
    /// free slices of their segments, which the caller purges.
    pub fn trim(&mut self) {
        let lists: [*mut Span; NR_CLASSES + 1] = core::array::from_fn(|i| {
            if i < NR_CLASSES {
                self.queues[i].head
            } else {
                self.full.head
            }
        });
        for mut s in lists {
            while !s.is_null() {
                // SAFETY: spans on our lists are live descriptors we own.
                let span = unsafe { &mut *s };
                let next = span.next;
                span.collect();
                if span.used.load(Ordering::Relaxed) == 0 {
                    if span.class() == MEDIUM {
                        // SAFETY: a span of this heap whose block was freed.
                        unsafe { self.free_medium(s) };
                    } else {
                        // SAFETY: an empty span of this heap on its queue.
                        unsafe { self.retire(s) };
                    }
                }
                s = next;
            }
        }
        let p = self.parked;
        if !p.is_null() {
            self.parked = ptr::null_mut();
            // SAFETY: our parked span; once claimed no reclaimer touches it.
            unsafe {
                (*p).list = List::None;
                (*p).claim();
            }
            // SAFETY: our parked span, empty, on no list now and claimed.
            unsafe { self.release(p) };
        }
        loop {
            let s = {
                // SAFETY: the thread state outlives its heaps.
                let _g = unsafe { (*self.tld()).lock_cache() };
                let s = self.cache.head;
                if s.is_null() {
                    break;
                }
                // SAFETY: the newest span in our cache, under the cache lock.
                unsafe { self.take_off_cache(s) };
                s
            };
            // SAFETY: taken off our cache: an empty span of this heap on no list, claimed.
            unsafe { self.release(s) };
        }
    }
}

/// Emptied medium spans: parked, cached or released (the allocation side, and the
/// parking handshake, are `medium.rs`'s).
impl Heap {
    /// The owner freed (pushing it on a free list) or collected the block of medium
    /// span `s`: keep or release the span (`keep_medium`).
    ///
    /// # Safety
    /// `s` is a medium span of this heap (`heap.rs` module docs), `ACTIVE`, whose block
    /// has been freed (pushed on one of its free lists).
    pub unsafe fn free_medium(&mut self, s: *mut Span) {
        // SAFETY: a span of this heap.
        unsafe { self.move_list(s, List::None) };
        // SAFETY: a span of this heap.
        let span = unsafe { &mut *s };
        span.lower_full();
        span.collect();
        // SAFETY: an empty medium span of this heap, on no list now.
        unsafe { self.keep_medium(s) };
    }

    /// The owner frees the live block of its medium span `s` (`ACTIVE`, nothing on
    /// `thread_free`), without touching the block: keep or release the span.
    ///
    /// # Safety
    /// `s` is a medium span of this heap (`heap.rs` module docs), `ACTIVE`, whose block
    /// is live and given up by the caller.
    pub unsafe fn free_medium_owned(&mut self, s: *mut Span) {
        // SAFETY: a span of this heap.
        let span = unsafe { &mut *s };
        // SAFETY: as above.
        unsafe { self.move_list(s, List::None) };
        // `FULL` stays up (span.rs): taking it down would cost a locked instruction, and
        // the span is formatted before its next block.
        span.used.store(0, Ordering::Relaxed);
        // SAFETY: an empty medium span of this heap, on no list now.
        unsafe { self.keep_medium(s) };
    }

    /// An empty medium span on no list: parked (the span parked before goes to the
    /// cache or, with the group at its limit, back to its segment: `unpark`); released
    /// instead when the freeing thread already uncharged it, or when the heap is idle.
    ///
    /// The limit is not looked at for the span parked: a malloc/free pair of a medium
    /// block would pay the walk up the group's ancestors every time (1 ns of 16). At the
    /// limit a heap so keeps at most one medium span charged, which a charge that needs
    /// the room reclaims (`account.rs` purges parked spans).
    ///
    /// # Safety
    /// `s` is a medium span of this heap (`heap.rs` module docs), `ACTIVE`, on no list,
    /// with its block freed.
    unsafe fn keep_medium(&mut self, s: *mut Span) {
        // SAFETY: a span of this heap.
        let span = unsafe { &mut *s };
        if span.charged.get().is_none()
            || self.idle_trimmed
            || memcg::charge::keeps_no_free_pages(self.group)
        {
            let _errno = crate::os::ErrnoGuard::new();
            // SAFETY: an empty span of this heap on no list, `ACTIVE`.
            unsafe { self.release(s) };
            return;
        }
        let old = self.parked;
        span.list = List::Park;
        self.parked = s;
        // Publishes the span's fields to reclaimers, which act on `PARKED` only.
        span.state.store(State::Parked, Ordering::Release);
        if !old.is_null() {
            // SAFETY: the span parked before, a medium span of this heap.
            unsafe { self.unpark(old) };
        }
    }

    /// A span just displaced from `parked`: cached while fewer than `MEDIUM_CACHE`
    /// medium spans are kept (the parked one included) and the group is below its limit,
    /// else released; released too if a reclaimer purged it (it holds nothing).
    ///
    /// # Safety
    /// `s` is an empty medium span of this heap (`heap.rs` module docs) just taken out of
    /// the `parked` slot (its `list` still `LIST_PARK`).
    #[cold]
    unsafe fn unpark(&mut self, s: *mut Span) {
        // The cache may release a victim, and a release may purge (system calls).
        let _errno = crate::os::ErrnoGuard::new();
        // SAFETY: a span of this heap, no longer parked; once claimed no reclaimer
        // touches it.
        let purged = unsafe {
            (*s).list = List::None;
            (*s).claim()
        };
        if !purged
            && self.medium_cached + 1 < MEDIUM_CACHE
            && !memcg::charge::keeps_no_free_pages(self.group)
        {
            // SAFETY: an empty span of this heap on no list, claimed back (`ACTIVE`).
            unsafe { self.cache_span(s) };
        } else {
            // SAFETY: an empty span of this heap on no list, claimed back.
            unsafe { self.release(s) };
        }
    }
}
