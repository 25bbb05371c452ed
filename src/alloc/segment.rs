//! Segments: 4 MiB regions aligned to 4 MiB, so any pointer finds its segment by masking.
//!
//! A span segment is 64 slices of 64 KiB. Slice 0 holds this header and the span
//! descriptors (out of band: no header precedes any block); slices 1–63 are carved into
//! spans of one slice (small blocks) or of several (one medium block). The descriptor of
//! a span's first slice describes it, so the span of a pointer is
//! `spans[(p - segment) >> 16]`; the descriptors of its other slices are `INTERIOR` and
//! point back to the first. A large mapping is a segment of kind `LARGE` holding one
//! block, its data after the header slice.
//!
//! Deferred purge: a released span's slices keep their pages (`dirty`) and their charge
//! (the span's record spread over its slices, a slice's pages each: DESIGN.md, "What is
//! charged"), so memory freed and allocated again soon costs no page faults and no
//! `madvise`. New spans prefer dirty slices of their own group and take their charge
//! over; another group's pages a span (new, or a medium block grown in place) will use
//! change hands resident, their charge owed back to that group, and the rest of such a
//! slice is purged (`take_slices`, `extend_span`). A slice is purged once it has been unused for
//! `PURGE_DELAY_NS`, never just after its release: dirty slices form two generations, the
//! young one (released since the last look) and the aging one, with the time of its
//! newest release; a look purges a generation all of whose slices are old enough, and
//! turns a young generation whose oldest is into the aging one. Under steady frees a
//! slice is purged within about three delays. Whoever holds the segment (its owner
//! thread, the claim holder of an abandoned one, or the thread taking it out of the
//! segment cache) does this on its span-level slow paths; a reclaimer purges the slices of
//! the groups it reclaims for at once. A purge uncharges what the slices' records hold, in
//! the same step (the uncharges owed, applied once no lock is held).
//!
//! Ownership: a span segment belongs to one thread (`tld`), which alone changes its slice
//! map, under the segment's `claim` (which a reclaiming thread takes, if it is free, to
//! purge free slices). When that thread exits with live blocks in it, the segment is abandoned
//! (`tld` null, see `abandoned.rs`): then whoever frees into it takes its `claim` lock
//! first, until a thread adopts it or the last span released sends it to the cache.
//!
//! Every segment is on the global list (under `LIST`), which statistics and reclaim walk;
//! a segment is unlinked under the same lock before it is unmapped.
//!
//! Invariants: `free_slices` bit `i` set iff slice `i` belongs to no span (its descriptor
//! is `FREE`); `aging ⊆ dirty ⊆ free_slices` (but in a fork child, where the slices of a
//! span a vanished thread was taking or releasing may be dirty and not free: they are
//! only purged early), and a free slice not `dirty` reads as zeros
//! (never touched since it was mapped or purged); a free slice holds a charge record only
//! while it is dirty, of at most a slice's pages; `purge_at` is 0 iff `dirty` is 0; `nr_spans`
//! counts spans. The segment map names a span segment
//! (`HERE`) exactly while it is in use: a cached segment is out of the map, so a stale
//! pointer into it is foreign.

use super::charged::{Owed, NO_GROUP};
use super::segmap;
use super::types::{
    Segment, Span, State, KIND_LARGE, KIND_SPANS, SEG_SIZE, SLICES, SLICE_PAGES, SLICE_SHIFT,
};
use crate::memcg::origin::Origin;
use crate::os::mem;
use crate::util::spin::SpinLock;
use core::ptr;
use std::sync::atomic::{compiler_fence, AtomicU64, Ordering};

/// How long a released span's pages are kept before they are given back to the kernel.
pub const PURGE_DELAY_NS: u64 = 20_000_000;

const MAGIC: u64 = 0x6367_6d61_6c6c_6f63; // "cgmalloc"

struct List {
    head: *mut Segment,
}

// SAFETY: the list's pointers are only followed under the lock.
unsafe impl Send for List {}

static LIST: SpinLock<List> = SpinLock::new(List {
    head: ptr::null_mut(),
});

/// Span segments ready for reuse: empty, unlinked from the global list, still mapped,
/// most recently emptied first (their dirty slices still resident), chained through
/// `next_all`. Span segments are unmapped only by `release_cached` (`malloc_trim`),
/// which first waits for the pushes in flight (`inflight.rs`): a thread that pushed a
/// block on a span's `thread_free` may still read the segment's header just after
/// another thread released it.
static CACHE: SpinLock<List> = SpinLock::new(List {
    head: ptr::null_mut(),
});

/// The earliest `purge_at` among a set of segments that no single thread owns (cached or
/// abandoned ones), or earlier: read without a lock by threads' slow paths to see whether
/// a purge walk has work. A walk `reset`s it under the set's lock and `note`s the
/// deadlines it leaves, so a deadline noted meanwhile is never lost.
pub struct DueHint(AtomicU64);

impl DueHint {
    pub const fn new() -> Self {
        DueHint(AtomicU64::new(u64::MAX))
    }

    /// A segment of the set has dirty slices to look at `at` (0: none).
    pub fn note(&self, at: u64) {
        if at != 0 {
            self.0.fetch_min(at, Ordering::Relaxed);
        }
    }

    pub fn is_due(&self, now: u64) -> bool {
        self.0.load(Ordering::Relaxed) <= now
    }

    pub fn reset(&self) {
        self.0.store(u64::MAX, Ordering::Relaxed);
    }
}

/// Slices taken for a new span (`Segment::take_slices`).
pub struct Taken<'a> {
    pub span: &'a mut Span,
    /// No slice was dirty: the memory reads as zeros.
    pub zeroed: bool,
    /// Resident pages other groups held that the span took over, uncharged: the caller
    /// charges them to the span's group (and records them) or purges the span.
    pub moved: u64,
}

/// When `purge_cached_due` has work.
static CACHE_DUE: DueHint = DueHint::new();

impl Segment {
    /// The segment of a pointer cgmalloc handed out, or `None` for foreign memory.
    ///
    /// # Safety
    /// The segment the segment map names for `p`, if any, is not released while this
    /// runs (true when `p` is a live block the caller holds): debug builds read its header.
    #[inline]
    pub unsafe fn of(p: *const u8) -> Option<*mut Segment> {
        let base = segmap::segment_of(p as usize)? as *mut Segment;
        // SAFETY: the segment map names only segments in use, whose header is readable,
        // and by the contract this one is not released meanwhile.
        debug_assert_eq!(unsafe { (*base).magic }, MAGIC);
        Some(base)
    }

    /// The span holding `p` (a pointer into this span segment's slices; only its address
    /// is used).
    #[inline]
    pub fn span_of(&mut self, p: *const u8) -> Option<&mut Span> {
        let slice = self.slice_of(p);
        if slice == 0 || slice >= SLICES {
            return None;
        }
        let s = &self.spans[slice];
        let slice = match s.state.load(Ordering::Relaxed) {
            State::Free => return None,
            State::Interior => self.slice_of(s.start),
            _ => slice,
        };
        Some(&mut self.spans[slice])
    }

    /// Maps (or reuses) a new span segment, linked on the global list.
    pub fn create_spans() -> Option<*mut Segment> {
        let reuse = {
            let mut c = CACHE.lock();
            let s = c.head;
            if !s.is_null() {
                // SAFETY: cached segments are mapped; `next_all` chains the cache.
                c.head = unsafe { (*s).next_all };
            }
            s
        };
        let base = if reuse.is_null() {
            mem::map_aligned(SEG_SIZE, SEG_SIZE).ok()?.as_ptr()
        } else {
            reuse as *mut u8
        };
        // SAFETY: a fresh or cached (unlisted) mapping of `SEG_SIZE` bytes.
        Some(unsafe { Self::init(base, KIND_SPANS, SEG_SIZE) })
    }

    /// Formats the header at `base` (mapped by the caller, `mapped` bytes from `base`),
    /// links the segment and enters it in the segment map. `dirty` and `purge_at` are
    /// kept: zero in a fresh mapping, a cached segment's dirty slices in a reused one.
    ///
    /// # Safety
    /// `base` is a segment-aligned mapping of at least one slice that nothing references.
    pub unsafe fn init(base: *mut u8, kind: u8, mapped: usize) -> *mut Segment {
        let seg = base as *mut Segment;
        // SAFETY: by the contract the header's memory is ours; zeroed or purged memory is
        // a valid `Segment` apart from the fields set here.
        unsafe {
            (*seg).magic = MAGIC;
            (*seg).kind.store(kind, Ordering::Relaxed);
            (*seg).tld.store(ptr::null_mut(), Ordering::Relaxed);
            (*seg).owner.store(0, Ordering::Relaxed);
            // `claim` is left alone: 0 in a fresh mapping and released by `destroy`, it
            // may be held again by a late freer of the segment's previous life, who
            // finds nothing to do and releases it.
            (*seg).free_slices = !1u64;
            (*seg).nr_spans.store(0, Ordering::Relaxed);
            (*seg).next_owned = ptr::null_mut();
            (*seg).prev_owned = ptr::null_mut();
            (*seg).mapped = mapped;
            (*seg).map_base = base;
            if kind == KIND_SPANS {
                // A cached segment's dirty slices keep their charge records.
                for s in (*seg).spans.iter_mut() {
                    s.reset();
                }
            }
        }
        let mut l = LIST.lock();
        // SAFETY: under the list lock; `seg` is ours and `l.head` is a listed segment.
        unsafe {
            (*seg).prev_all = ptr::null_mut();
            (*seg).next_all = l.head;
            if !l.head.is_null() {
                (*l.head).prev_all = seg;
            }
        }
        l.head = seg;
        drop(l);
        segmap::set(base as usize, segmap::HERE);
        seg
    }

    /// Unlinks and unmaps (or caches) a segment nobody references any more.
    ///
    /// # Safety
    /// As for `destroy_except`.
    pub unsafe fn destroy(seg: *mut Segment) {
        // SAFETY: this function's contract, with no hole.
        unsafe { Self::destroy_except(seg, 0, 0) };
    }

    /// `destroy`, leaving `hole..hole+hole_len` of a large mapping alone: a range the
    /// kernel may have given to another mapping (`os::mem::Moved::Lost`).
    ///
    /// # Safety
    /// `seg` is a segment on the global list that the caller holds alone and that is used
    /// no more after this (a span segment with no span left, under its owner or its
    /// claim; a large mapping whose block is freed, in no cache). `hole_len` is 0, or the
    /// hole is a page-aligned range inside a large mapping.
    pub unsafe fn destroy_except(seg: *mut Segment, hole: usize, hole_len: usize) {
        let mut l = LIST.lock();
        // SAFETY: under the list lock, `seg` and its neighbours are listed segments.
        unsafe {
            let (p, n) = ((*seg).prev_all, (*seg).next_all);
            if p.is_null() {
                l.head = n;
            } else {
                (*p).next_all = n;
            }
            if !n.is_null() {
                (*n).prev_all = p;
            }
        }
        drop(l);
        // SAFETY: the segment is unlisted and unreferenced; reading its own header.
        let (kind, mapped, base, data) = unsafe {
            (
                (*seg).kind.load(Ordering::Relaxed),
                (*seg).mapped,
                (*seg).map_base,
                (*seg).large.data as usize,
            )
        };
        if kind == KIND_LARGE && segmap::get(data) == segmap::BACK {
            segmap::set(data, segmap::NONE);
        }
        if kind == KIND_SPANS {
            segmap::set(seg as usize, segmap::NONE);
            // Destroyed by its owner or by the holder of its claim: a thread still
            // waiting for the claim (a remote freer that saw the owner exit) gets it and
            // finds every span `FREE`.
            // SAFETY: the header is still mapped and ours.
            unsafe {
                (*seg).tld.store(ptr::null_mut(), Ordering::Relaxed);
                (*seg).owner.store(0, Ordering::Relaxed);
                (*seg).claim.store(0, Ordering::Release);
            }
            // SAFETY: an empty span segment, out of the map and the list, ours.
            unsafe { Self::cache(seg) };
            return;
        }
        segmap::set(seg as usize, segmap::NONE);
        if hole_len == 0 {
            // SAFETY: the whole mapping, unlisted, out of the map and used no more.
            unsafe { mem::unmap(base, mapped) };
            return;
        }
        let (start, end) = (base as usize, base as usize + mapped);
        // SAFETY: the mapping up to the hole, which lies inside it (the contract).
        unsafe { mem::unmap(base, hole - start) };
        if hole + hole_len < end {
            // SAFETY: the mapping after the hole.
            unsafe { mem::unmap((hole + hole_len) as *mut u8, end - hole - hole_len) };
        }
    }

    /// Puts an empty span segment (out of the map and the list) in the cache, first in
    /// line for reuse.
    ///
    /// # Safety
    /// `seg` is a mapped span segment with no span left, out of the segment map, the
    /// global list and the cache, which the caller holds alone and uses no more.
    unsafe fn cache(seg: *mut Segment) {
        let mut c = CACHE.lock();
        // SAFETY: the header is still mapped and ours.
        let at = unsafe {
            (*seg).next_all = c.head;
            (*seg).purge_at
        };
        c.head = seg;
        CACHE_DUE.note(at);
    }

    /// Ages the dirty slices of cached segments that are due at `now` (outside the cache
    /// lock; `purge_expired`), and moves those segments to the back of the line.
    pub fn purge_cached_due(now: u64) {
        if !CACHE_DUE.is_due(now) {
            return;
        }
        const BATCH: usize = 16;
        let mut taken = [ptr::null_mut::<Segment>(); BATCH];
        let mut n = 0;
        {
            let mut c = CACHE.lock();
            CACHE_DUE.reset();
            let mut link: *mut *mut Segment = &mut c.head;
            // SAFETY: cached segments are mapped; only the cache lock holder links them.
            unsafe {
                while !(*link).is_null() {
                    let s = *link;
                    let at = (*s).purge_at;
                    if at != 0 && at <= now && n < BATCH {
                        *link = (*s).next_all;
                        taken[n] = s;
                        n += 1;
                        continue;
                    }
                    CACHE_DUE.note(at);
                    link = &mut (*s).next_all;
                }
            }
        }
        let mut owed = Owed::new();
        for &s in &taken[..n] {
            // SAFETY: taken out of the cache: ours until put back.
            unsafe { (*s).purge_expired(now, &mut owed) };
        }
        // Put back, deadlines noted, under the lock: a walk sees them or comes after.
        let mut c = CACHE.lock();
        let mut link: *mut *mut Segment = &mut c.head;
        // SAFETY: as above.
        unsafe {
            while !(*link).is_null() {
                link = &mut (**link).next_all;
            }
            for &s in &taken[..n] {
                (*s).next_all = ptr::null_mut();
                *link = s;
                link = &mut (*s).next_all;
                CACHE_DUE.note((*s).purge_at);
            }
        }
        drop(c);
        owed.apply();
    }

    /// Gives back the dirty slices of cached segments whose pages are charged to a group
    /// `wanted` accepts (reclaim); returns the pages uncharged (applied).
    pub fn purge_cached_free(wanted: impl Fn(u32) -> bool) -> u64 {
        let mut pages = 0;
        let mut owed = Owed::new();
        {
            let c = CACHE.lock();
            let mut s = c.head;
            while !s.is_null() {
                // SAFETY: cached segments are mapped and held by the cache lock.
                let sg = unsafe { &mut *s };
                pages += sg.purge_free(&wanted, &mut owed);
                s = sg.next_all;
            }
        }
        owed.apply();
        pages
    }

    /// Calls `f` on every cached span segment (under the cache lock: `f` must not
    /// allocate or take a segment lock).
    pub fn for_each_cached(mut f: impl FnMut(&Segment)) {
        let c = CACHE.lock();
        let mut s = c.head;
        while !s.is_null() {
            // SAFETY: cached segments are mapped while the cache lock is held.
            let sg = unsafe { &*s };
            f(sg);
            s = sg.next_all;
        }
    }

    /// Unmaps every cached span segment; true if any was.
    pub fn release_cached() -> bool {
        let mut head = {
            let mut c = CACHE.lock();
            CACHE_DUE.reset();
            core::mem::replace(&mut c.head, ptr::null_mut())
        };
        let any = !head.is_null();
        if any {
            // A thread that pushed onto one of these segments' spans may still read it.
            super::inflight::wait_for_pushes();
        }
        while !head.is_null() {
            // SAFETY: cached segments are mapped and unreferenced.
            let next = unsafe { (*head).next_all };
            // Its dirty slices' charges go with the mapping.
            let mut owed = Owed::new();
            // SAFETY: as above: ours alone now.
            unsafe { (*head).purge_records(&mut owed) };
            owed.apply();
            // SAFETY: a cached segment, taken out of the cache: a whole mapping of ours
            // that nothing refers to.
            unsafe { mem::unmap(head.cast(), SEG_SIZE) };
            head = next;
        }
        any
    }

    /// Moves a large mapping (header and data) to a new segment-aligned address, grown to
    /// `new_len` bytes, without copying; returns the segment at its new address.
    ///
    /// # Safety
    /// `seg` is a listed large mapping the caller holds alone, and `new_len` (a page
    /// multiple) at least its `mapped` length. Once this returns `Some`, nothing uses the
    /// old address.
    pub unsafe fn move_large(seg: *mut Segment, new_len: usize) -> Option<*mut Segment> {
        // SAFETY: the caller holds this large segment exclusively.
        let (base, mapped, data_off) = unsafe {
            (
                (*seg).map_base,
                (*seg).mapped,
                (*seg).large.data as usize - seg as usize,
            )
        };
        if base != seg as *mut u8 {
            return None; // aligned beyond a segment: not moved
        }
        let to = mem::map_aligned(new_len, SEG_SIZE).ok()?.as_ptr();
        let mut l = LIST.lock();
        // SAFETY: `base..base+mapped` is the whole mapping, the caller's alone (the
        // contract: on success nothing uses it any more); `to` is the reservation just
        // made.
        if !unsafe { mem::remap_to(base, mapped, to, new_len) } {
            drop(l);
            // SAFETY: the reservation just made, which nothing knows of.
            unsafe { mem::unmap(to, new_len) };
            return None;
        }
        let new = to as *mut Segment;
        // SAFETY: under the list lock: the header moved to `new`; its neighbours are
        // listed segments whose links are repaired here.
        unsafe {
            (*new).map_base = to;
            (*new).mapped = new_len;
            (*new).large.data = to.add(data_off);
            let (p, n) = ((*new).prev_all, (*new).next_all);
            if p.is_null() {
                l.head = new;
            } else {
                (*p).next_all = new;
            }
            if !n.is_null() {
                (*n).prev_all = new;
            }
        }
        drop(l);
        segmap::set(seg as usize, segmap::NONE);
        segmap::set(to as usize, segmap::HERE);
        // Data aligned to a segment starts one region after the header, marked `BACK`.
        let (old_data, new_data) = (seg as usize + data_off, to as usize + data_off);
        if segmap::get(old_data) == segmap::BACK {
            segmap::set(old_data, segmap::NONE);
            segmap::set(new_data, segmap::BACK);
        }
        Some(new)
    }

    /// Calls `f` on every segment, under the list lock (no allocation, no callbacks).
    pub fn for_each(mut f: impl FnMut(&Segment)) {
        let l = LIST.lock();
        let mut s = l.head;
        while !s.is_null() {
            // SAFETY: listed segments stay mapped while the lock is held.
            let seg = unsafe { &*s };
            f(seg);
            s = seg.next_all;
        }
    }

    /// Reclaim: gives back the dirty slices of listed span segments whose pages are
    /// charged to a group `wanted` accepts, taking each segment's claim if it is free (a
    /// busy segment is skipped: its holder may be waiting for the list lock); returns the
    /// pages uncharged (applied after the list lock is dropped).
    pub fn purge_listed_free(wanted: impl Fn(u32) -> bool) -> u64 {
        let mut pages = 0;
        let mut owed = Owed::new();
        {
            let l = LIST.lock();
            let mut s = l.head;
            while !s.is_null() && !owed.nearly_full() {
                // SAFETY: listed segments stay mapped while the lock is held.
                let sg = unsafe { &*s };
                let next = sg.next_all;
                if sg.kind.load(Ordering::Relaxed) == KIND_SPANS && sg.try_claim() {
                    // SAFETY: a listed span segment whose claim we hold: its free slices
                    // are ours until we drop it.
                    pages += unsafe { (*s).purge_free(&wanted, &mut owed) };
                    sg.unlock_claim();
                }
                s = next;
            }
        }
        owed.apply();
        pages
    }

    /// The first free slice not marked dirty that does not read as zeros (its segment's
    /// address and its index), in any listed span segment: the invariant that lets a new
    /// span skip zeroing. For tests.
    ///
    /// # Safety
    /// No other thread allocates, frees or purges meanwhile (a fork child, say): the
    /// free slices are read whole.
    #[cfg(any(test, feature = "internals"))]
    pub unsafe fn first_unclean_free_slice() -> Option<(usize, usize)> {
        let mut found = None;
        Segment::for_each(|sg| {
            if found.is_some() || sg.kind.load(Ordering::Relaxed) != KIND_SPANS {
                return;
            }
            let base = sg as *const Segment as usize;
            let mut clean = sg.free_slices & !sg.dirty & !1;
            while clean != 0 {
                let j = clean.trailing_zeros() as usize;
                clean &= clean - 1;
                // SAFETY: slice `j` of a listed span segment, mapped with it; no other
                // thread writes it (this function's contract).
                let words = unsafe {
                    core::slice::from_raw_parts(
                        (base + (j << SLICE_SHIFT)) as *const u64,
                        super::types::SLICE_SIZE / 8,
                    )
                };
                if words.iter().any(|&w| w != 0) {
                    found = Some((base, j));
                    return;
                }
            }
        });
        found
    }

    /// Calls `f` on every segment without the list lock, for a process with one thread
    /// (a fork child); `f` may destroy the segment it is given.
    ///
    /// # Safety
    /// No other thread runs.
    pub unsafe fn for_each_unlocked(mut f: impl FnMut(*mut Segment)) {
        let mut s = LIST.lock().head;
        while !s.is_null() {
            // SAFETY: no other thread runs (the contract), and `next_all` is read before
            // `f` can unlink `s`.
            let next = unsafe { (*s).next_all };
            f(s);
            s = next;
        }
    }

    /// The index of the slice holding `p` (a pointer into this segment; only its address
    /// is used).
    fn slice_of(&self, p: *const u8) -> usize {
        (p as usize - self as *const Segment as usize) >> SLICE_SHIFT
    }

    /// Gives the free slices `first..end` to the span starting at slice `head`: they
    /// leave `free_slices` and `dirty`, and those after `head` become `INTERIOR`
    /// descriptors pointing back to it.
    fn take_run(&mut self, head: usize, first: usize, end: usize) {
        let mask = run_mask(first, end - first);
        self.free_slices &= !mask;
        self.dirty &= !mask;
        self.aging &= !mask;
        if self.dirty == 0 {
            self.purge_at = 0;
        }
        // SAFETY: slice `head` lies inside this segment's mapping.
        let start = unsafe { (self as *mut Segment as *mut u8).add(head << SLICE_SHIFT) };
        for j in first.max(head + 1)..end {
            let d = &mut self.spans[j];
            d.reset();
            d.start = start;
            d.state.store(State::Interior, Ordering::Relaxed);
        }
    }

    /// Of the dirty slices in `set`, those whose pages are charged to a group other than
    /// `group`.
    fn foreign_dirty(&self, set: u64, group: u32) -> u64 {
        let mut foreign = 0u64;
        let mut d = self.dirty & set;
        while d != 0 {
            let j = d.trailing_zeros() as usize;
            d &= d - 1;
            if self.spans[j].charged.get().is_some_and(|(g, _)| g != group) {
                foreign |= 1 << j;
            }
        }
        foreign
    }

    /// Takes the charge records of the free slices `i..i+n` (all of one group) for a span
    /// that keeps its first `need` pages: returns the pages it takes over. A slice's
    /// charged pages past them are purged (resident and charged, they would be neither
    /// used nor reclaimable while the span lives), their uncharge owed; the caller asks
    /// for that only when its group is short of room (a system call per span).
    fn inherit(&mut self, i: usize, n: usize, need: u64, owed: &mut Owed) -> u64 {
        let base = self as *mut Segment as *mut u8;
        let mut inherited = 0;
        for k in 0..n {
            let j = i + k;
            let used = slice_share(need, k);
            let Some((g, p)) = self.spans[j].charged.get() else {
                continue;
            };
            if p > used {
                let page = crate::consts::PAGE_SIZE;
                // SAFETY: slice `j` lies inside this segment's mapping.
                let at = unsafe { base.add((j << SLICE_SHIFT) + used as usize * page) };
                // SAFETY: the slice is free (no block lives there) and held by the caller.
                unsafe { mem::purge(at, (p - used) as usize * page) };
                let origin = free_slice(at as usize, (g, p));
                owed.add_plain(self.spans[j].charged.take_part(p - used, origin));
            }
            if let Some((_, q)) = self.spans[j].charged.take_raw() {
                inherited += q;
            }
        }
        inherited
    }

    /// Whether `n` contiguous slices are free (the owner's look before it takes the claim).
    pub fn has_free_run(&self, n: usize) -> bool {
        runs(self.free_slices, n) != 0
    }

    /// Takes `n` contiguous free slices (`1 ≤ n < SLICES`) for a new span of `group`, and
    /// returns its descriptor, whether its memory reads as zeros (no slice was dirty), and
    /// the resident pages of other groups it took over uncharged (`Taken`). Runs of dirty
    /// slices whose pages `group` already holds come first (resident and charged: the
    /// span takes them over, its record starts with them), then other dirty runs (their
    /// pages change hands: resident, no fault and no system call), then any. Of the pages
    /// taken over, only those the span will use (its first `need` pages) are kept: a
    /// slice's pages past them are purged. Other groups' charges on the pages kept are
    /// owed back to them, and the caller charges `group` for those pages (`Taken::moved`)
    /// or purges the span. The caller holds the segment.
    pub fn take_slices(
        &mut self,
        n: usize,
        group: u32,
        need: u64,
        owed: &mut Owed,
    ) -> Option<Taken<'_>> {
        let free = runs(self.free_slices, n);
        if free == 0 {
            return None;
        }
        let foreign = self.foreign_dirty(u64::MAX, group);
        let own = free & runs(self.dirty & !foreign, n);
        let dirty = free & runs(self.dirty, n);
        let i = [own, dirty, free]
            .into_iter()
            .find(|&m| m != 0)
            .unwrap_or(free)
            .trailing_zeros() as usize;
        let mask = run_mask(i, n);
        let zeroed = self.dirty & mask == 0;
        let moved = self.hand_over(foreign & mask, i, need, owed);
        let inherited = self.inherit(i, n, need, owed);
        self.take_run(i, i, i + n);
        self.nr_spans.fetch_add(1, Ordering::Relaxed);
        // SAFETY: slice `i` lies inside this segment's mapping.
        let start = unsafe { (self as *mut Segment as *mut u8).add(i << SLICE_SHIFT) };
        let s = &mut self.spans[i];
        s.reset();
        s.slices = n as u8;
        s.start = start;
        s.charged.add(group, inherited);
        Some(Taken {
            span: s,
            zeroed,
            moved,
        })
    }

    /// The free slices in `set` (of a run starting at slice `i` for a span that keeps
    /// its first `need` pages) hold other groups' pages: their charges are owed back, the
    /// pages the span keeps stay resident (returned: the caller charges them to the new
    /// group, unless it charged them already, `extend_span`) and the rest are purged.
    fn hand_over(&mut self, set: u64, i: usize, need: u64, owed: &mut Owed) -> u64 {
        let base = self as *mut Segment as *mut u8;
        let mut moved = 0;
        let mut d = set;
        while d != 0 {
            let j = d.trailing_zeros() as usize;
            d &= d - 1;
            let used = slice_share(need, j - i);
            let Some((g, p)) = self.spans[j].charged.get() else {
                continue;
            };
            // SAFETY: slice `j` lies inside this segment's mapping.
            let at = unsafe { base.add(j << SLICE_SHIFT) };
            let origin = free_slice(at as usize, (g, p));
            if p > used {
                let page = crate::consts::PAGE_SIZE;
                // SAFETY: the slice is free (no block lives there) and held by the caller.
                unsafe { mem::purge(at.add(used as usize * page), (p - used) as usize * page) };
            }
            if let Some(u) = self.spans[j].charged.take(origin) {
                owed.add_plain(u);
            }
            moved += p.min(used);
        }
        moved
    }

    /// Whether the slices after `span` are free up to `slices` slices in all.
    pub fn can_extend(&self, span: &Span, slices: usize) -> bool {
        let i = self.slice_of(span.start);
        let n = span.slices as usize;
        if i + slices > SLICES {
            return false;
        }
        let more = run_mask(i + n, slices - n);
        self.free_slices & more == more
    }

    /// Grows `span` (one block) to `slices` slices with the free slices after it (the
    /// holder) for a block of `block` pages; `None` if they are not free. Pages of the
    /// span's group that they still held join its record, up to `keep` pages from the
    /// span's start (the rest are purged, their uncharges owed); returned: how many of
    /// them the block covers, which the caller's charge for the block's growth counted a
    /// second time (those past the block were charged once, as the group's free pages).
    /// Other groups' pages that the block covers change hands as for a new span
    /// (`take_slices`): they stay resident, their charges owed back, and the caller's
    /// charge for the growth covers them; their pages past the block are purged.
    pub fn extend_span(
        &mut self,
        span: &mut Span,
        slices: usize,
        block: u64,
        keep: u64,
        owed: &mut Owed,
    ) -> Option<u64> {
        if !self.can_extend(span, slices) {
            return None;
        }
        let i = self.slice_of(span.start);
        let n = span.slices as usize;
        let group = span.group();
        let foreign = self.foreign_dirty(run_mask(i + n, slices - n), group);
        if foreign != 0 {
            self.hand_over(foreign, i, block, owed);
        }
        // What the block covers of each new slice's pages of the group (a prefix of the
        // slice, as a record is spread): counted before `inherit` takes the records.
        let covered = (n..slices)
            .map(|k| {
                let used = slice_share(block, k);
                self.spans[i + k]
                    .charged
                    .get()
                    .map_or(0, |(_, q)| q.min(used))
            })
            .sum();
        let keep = keep.saturating_sub(n as u64 * SLICE_PAGES);
        let inherited = self.inherit(i + n, slices - n, keep, owed);
        self.take_run(i, i + n, i + slices);
        span.slices = slices as u8;
        span.charged.add(group, inherited);
        Some(covered)
    }

    /// Returns a span's slices, dirty (the holder purges them when due); true when the
    /// segment has no span left. The span's page run ends, but its charge stays with its
    /// pages: spread over its slices from the first, a slice's pages each (a small span's
    /// pages are a prefix of its slice, a medium block's a prefix of its run), as free
    /// pages of the group, until they are purged or a span of that group reuses them.
    ///
    /// With `purge`, the slices are purged at once instead (their charge owed there): the
    /// span's group is at its `max` or dying, where free pages must not stay charged.
    pub fn release_slices(&mut self, span: &mut Span, now: u64, purge: Option<&mut Owed>) -> bool {
        let i = self.slice_of(span.start);
        let n = span.slices as usize;
        let rec = span.charged.end_run();
        for j in i + 1..i + n {
            self.spans[j].reset();
        }
        span.reset();
        if let Some((g, mut p)) = rec {
            for j in i..i + n {
                let q = p.min(SLICE_PAGES);
                if q == 0 {
                    break;
                }
                self.spans[j].charged.put(g, q);
                p -= q;
            }
            debug_assert_eq!(p, 0, "a span recorded more pages than its slices hold");
        }
        let mask = run_mask(i, n);
        if self.dirty & !self.aging == 0 {
            self.young_first = now;
        }
        self.young_last = now;
        if self.dirty == 0 {
            self.purge_at = now + PURGE_DELAY_NS;
        }
        self.dirty |= mask;
        // Dirty before free: a fork child (which sees this thread's stores in program
        // order) must never find the slices free and not dirty, which would say their
        // pages read as zeros. Dirty and not yet free, they are only purged early.
        compiler_fence(Ordering::SeqCst);
        crate::os::fault::race_point();
        self.free_slices |= mask;
        if let Some(owed) = purge {
            self.purge_slices(mask, owed);
            if self.dirty == 0 {
                self.purge_at = 0;
            }
        }
        self.nr_spans.fetch_sub(1, Ordering::Relaxed) == 1
    }

    /// Once `purge_at` has passed: purges each generation of dirty slices all unused for
    /// the delay at `now`, makes a young generation whose oldest slice is the aging one,
    /// and sets the next `purge_at`.
    pub fn purge_expired(&mut self, now: u64, owed: &mut Owed) {
        if self.purge_at == 0 || self.purge_at > now {
            return;
        }
        if self.aging != 0 && self.aging_due <= now {
            self.purge_slices(self.aging, owed);
            self.aging = 0;
        }
        let young = self.dirty & !self.aging;
        if young != 0 && self.young_first + PURGE_DELAY_NS <= now {
            if self.young_last + PURGE_DELAY_NS <= now {
                self.purge_slices(young, owed);
            } else if self.aging == 0 {
                self.aging = young;
                self.aging_due = self.young_last + PURGE_DELAY_NS;
            }
        }
        self.purge_at = if self.aging != 0 {
            self.aging_due
        } else if self.dirty != 0 {
            self.young_first + PURGE_DELAY_NS
        } else {
            0
        };
    }

    /// Gives the pages of every dirty slice back to the kernel now.
    pub fn purge_dirty(&mut self, owed: &mut Owed) {
        self.purge_slices(self.dirty, owed);
        self.aging = 0;
        self.purge_at = 0;
    }

    /// Gives back the dirty slices whose pages are charged to a group `wanted` accepts
    /// (reclaim); returns the pages uncharged (owed).
    pub fn purge_free(&mut self, wanted: impl Fn(u32) -> bool, owed: &mut Owed) -> u64 {
        let mut set = 0u64;
        let mut pages = 0;
        let mut d = self.dirty;
        while d != 0 {
            let j = d.trailing_zeros() as usize;
            d &= d - 1;
            if let Some((g, p)) = self.spans[j].charged.get() {
                if wanted(g) {
                    set |= 1 << j;
                    pages += p;
                }
            }
        }
        if set != 0 {
            self.purge_slices(set, owed);
            if self.dirty == 0 {
                self.purge_at = 0;
            }
        }
        pages
    }

    /// Gives the pages of the dirty slices in `set` back to the kernel, one call per run,
    /// and their charges with them (owed).
    fn purge_slices(&mut self, set: u64, owed: &mut Owed) {
        let base = self as *mut Segment as *mut u8;
        let mut d = set;
        while d != 0 {
            let i = d.trailing_zeros() as usize;
            let n = (!(d >> i)).trailing_zeros() as usize;
            // SAFETY: free slices of this segment, whose holder we are: mapped, and no
            // block lives there.
            unsafe { mem::purge(base.add(i << SLICE_SHIFT), n << SLICE_SHIFT) };
            d &= !run_mask(i, n);
        }
        self.take_records(set, owed);
        self.dirty &= !set;
        self.aging &= !set;
    }

    /// Takes the charge records of the free slices in `set` (owed), their pages given
    /// back or about to be.
    fn take_records(&mut self, set: u64, owed: &mut Owed) {
        let base = self as *mut Segment as *mut u8;
        let mut d = set;
        while d != 0 {
            let j = d.trailing_zeros() as usize;
            d &= d - 1;
            // SAFETY: slice `j` lies inside this segment's mapping.
            let at = unsafe { base.add(j << SLICE_SHIFT) } as usize;
            if let Some(u) = self.spans[j].charged.take(free_slice(at, (NO_GROUP, 0))) {
                owed.add_plain(u);
            }
        }
    }

    /// Takes the charge records of every dirty slice of a segment about to be unmapped.
    fn purge_records(&mut self, owed: &mut Owed) {
        self.take_records(self.dirty, owed);
    }

    /// Holds the claim of an abandoned segment.
    pub fn lock_claim(&self) {
        while self
            .claim
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }

    /// Puts `seg` first on the list at `head` linked through `next_owned`/`prev_owned`.
    ///
    /// # Safety
    /// The caller has that list to itself; `seg` is on no such list.
    pub unsafe fn link_owned(head: &mut *mut Segment, seg: *mut Segment) {
        // SAFETY: by the contract, `seg` and the listed head are ours to relink.
        unsafe {
            (*seg).prev_owned = ptr::null_mut();
            (*seg).next_owned = *head;
            if !head.is_null() {
                (**head).prev_owned = seg;
            }
        }
        *head = seg;
    }

    /// Takes `seg` off the list at `head` linked through `next_owned`/`prev_owned`.
    ///
    /// # Safety
    /// The caller has that list to itself; `seg` is on it.
    pub unsafe fn unlink_owned(head: &mut *mut Segment, seg: *mut Segment) {
        // SAFETY: by the contract, `seg` and its neighbours are ours to relink.
        unsafe {
            let (p, n) = ((*seg).prev_owned, (*seg).next_owned);
            if p.is_null() {
                *head = n;
            } else {
                (*p).next_owned = n;
            }
            if !n.is_null() {
                (*n).prev_owned = p;
            }
            (*seg).prev_owned = ptr::null_mut();
            (*seg).next_owned = ptr::null_mut();
        }
    }

    /// Takes the claim if it is free.
    pub fn try_claim(&self) -> bool {
        self.claim.load(Ordering::Relaxed) == 0
            && self
                .claim
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    pub fn unlock_claim(&self) {
        self.claim.store(0, Ordering::Release);
    }
}

/// Bit `i` set iff bits `i..i+n` of `m` are all set: where a run of `n` slices with the
/// property `m` starts.
fn runs(m: u64, n: usize) -> u64 {
    (1..n).fold(m, |r, k| r & (m >> k))
}

/// A free slice's pages at `addr` as the origin of an uncharge of `recorded`.
fn free_slice(addr: usize, recorded: (u32, u64)) -> Origin {
    Origin {
        what: "free slice",
        state: State::Free.name(),
        addr,
        recorded,
    }
}

/// Of a span that keeps its first `need` pages (counted from its first slice), the pages
/// its `k`-th slice holds: a record spread over a run's slices fills each from its start.
fn slice_share(need: u64, k: usize) -> u64 {
    need.saturating_sub(k as u64 * SLICE_PAGES).min(SLICE_PAGES)
}

/// Bits `i..i+n` (`i + n ≤ 64`).
fn run_mask(i: usize, n: usize) -> u64 {
    (u64::MAX >> (64 - n)) << i
}

/// Takes the segment locks for `fork()`.
pub fn lock_for_fork() {
    LIST.lock_for_fork();
    CACHE.lock_for_fork();
}

pub fn unlock_after_fork() {
    CACHE.force_unlock();
    LIST.force_unlock();
}
