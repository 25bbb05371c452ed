//! Segments: 4 MiB regions aligned to 4 MiB, so any pointer finds its segment by masking.
//!
//! A span segment is 64 slices of 64 KiB. Slice 0 holds this header and the span
//! descriptors (out of band: no header precedes any block); each of slices 1–63 is one
//! span, so the span of a pointer is `spans[(p - segment) >> 16]`. A large mapping is a
//! segment of kind `LARGE` holding one block, its data after the header slice.
//!
//! Ownership: a span segment belongs to one thread (`tld`), which alone changes its slice
//! map. When that thread exits with live blocks in it, the segment is abandoned
//! (`tld` null): then whoever frees into it takes its `claim` lock first, and the last
//! span released unmaps it.
//!
//! Every segment is on the global list (under `LIST`), which statistics and reclaim walk;
//! a segment is unlinked under the same lock before it is unmapped.
//!
//! Invariants: `free_slices` bit `i` set iff slice `i` belongs to no span (its descriptor
//! is `FREE`); `nr_spans` counts spans not `FREE`. The segment map names a span segment
//! (`HERE`) exactly while it is in use: a cached segment is out of the map, so a stale
//! pointer into it is foreign.

use super::segmap;
use super::span::{self, Span};
use crate::os::mem;
use crate::util::spin::SpinLock;
use core::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU8, Ordering};

pub const SEG_SHIFT: usize = 22;
pub const SEG_SIZE: usize = 1 << SEG_SHIFT;
pub const SLICE_SHIFT: usize = 16;
pub const SLICE_SIZE: usize = 1 << SLICE_SHIFT;
pub const SLICES: usize = SEG_SIZE / SLICE_SIZE;

pub const KIND_SPANS: u8 = 1;
pub const KIND_LARGE: u8 = 2;

const MAGIC: u64 = 0x6367_6d61_6c6c_6f63; // "cgmalloc"

#[repr(C)]
pub struct Segment {
    magic: u64,
    pub kind: AtomicU8,
    /// Owner thread's allocator state; null when abandoned.
    pub tld: AtomicPtr<super::tld::Tld>,
    /// Held by a thread freeing into an abandoned segment.
    pub claim: AtomicU32,
    pub free_slices: u64,
    pub nr_spans: AtomicU32,
    /// Links in the owner's list of span segments.
    pub next_owned: *mut Segment,
    pub prev_owned: *mut Segment,
    /// Links in the global list.
    next_all: *mut Segment,
    prev_all: *mut Segment,
    /// The mapping holding this segment: `mapped` bytes from `map_base` (a large mapping
    /// aligned beyond a segment starts before its header).
    pub mapped: usize,
    pub map_base: *mut u8,
    /// Large mappings: the block's start, its size as asked and the group charged.
    pub large: super::large::LargeMeta,
    pub spans: [Span; SLICES],
}

const _: () = assert!(core::mem::size_of::<Segment>() <= SLICE_SIZE);

struct List {
    head: *mut Segment,
}

// SAFETY: the list's pointers are only followed under the lock.
unsafe impl Send for List {}

static LIST: SpinLock<List> = SpinLock::new(List {
    head: ptr::null_mut(),
});

/// Span segments ready for reuse: purged, unlinked from the global list, still mapped,
/// chained through `next_all`. Span segments are unmapped only by `release_cached`
/// (`malloc_trim`): a thread that pushed a block on a span's `thread_free` may still read
/// the segment's header after another thread released it.
static CACHE: SpinLock<List> = SpinLock::new(List {
    head: ptr::null_mut(),
});

impl Segment {
    /// The segment of a pointer cgmalloc handed out, or `None` for foreign memory.
    #[inline]
    pub fn of(p: *const u8) -> Option<*mut Segment> {
        let base = segmap::segment_of(p as usize)? as *mut Segment;
        // SAFETY: the segment map names only segments in use, whose header is readable.
        debug_assert_eq!(unsafe { (*base).magic }, MAGIC);
        Some(base)
    }

    /// The span holding `p` (a pointer into this span segment's slices).
    #[inline]
    pub fn span_of(&mut self, p: *const u8) -> Option<&mut Span> {
        let slice = (p as usize - self as *mut Segment as usize) >> SLICE_SHIFT;
        if slice == 0 || slice >= SLICES {
            return None;
        }
        let s = &mut self.spans[slice];
        (s.state.load(Ordering::Relaxed) != span::FREE).then_some(s)
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
        // SAFETY: a fresh or cached (purged, unlisted) mapping of `SEG_SIZE` bytes.
        Some(unsafe { Self::init(base, KIND_SPANS, SEG_SIZE) })
    }

    /// Formats the header at `base` (mapped by the caller, `mapped` bytes from `base`),
    /// links the segment and enters it in the segment map.
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
            (*seg).claim.store(0, Ordering::Relaxed);
            (*seg).free_slices = !1u64;
            (*seg).nr_spans.store(0, Ordering::Relaxed);
            (*seg).next_owned = ptr::null_mut();
            (*seg).prev_owned = ptr::null_mut();
            (*seg).mapped = mapped;
            (*seg).map_base = base;
            if kind == KIND_SPANS {
                for s in (*seg).spans.iter_mut() {
                    *s = Span::EMPTY;
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
    pub fn destroy(seg: *mut Segment) {
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
            mem::purge(seg.cast(), SEG_SIZE);
            let mut c = CACHE.lock();
            // SAFETY: the purged header is still mapped and ours.
            unsafe { (*seg).next_all = c.head };
            c.head = seg;
            return;
        }
        segmap::set(seg as usize, segmap::NONE);
        mem::unmap(base, mapped);
    }

    /// Unmaps every cached span segment; true if any was.
    pub fn release_cached() -> bool {
        let mut head = core::mem::replace(&mut CACHE.lock().head, ptr::null_mut());
        let any = !head.is_null();
        while !head.is_null() {
            // SAFETY: cached segments are mapped and unreferenced.
            let next = unsafe { (*head).next_all };
            mem::unmap(head.cast(), SEG_SIZE);
            head = next;
        }
        any
    }

    /// Moves a large mapping (header and data) to a new segment-aligned address, grown to
    /// `new_len` bytes, without copying; returns the segment at its new address.
    pub fn move_large(seg: *mut Segment, new_len: usize) -> Option<*mut Segment> {
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
        if !mem::remap_to(base, mapped, to, new_len) {
            drop(l);
            mem::unmap(to, new_len);
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

    /// Calls `f` on every segment without the list lock, for a process with one thread
    /// (a fork child); `f` may destroy the segment it is given.
    pub fn for_each_unlocked(mut f: impl FnMut(*mut Segment)) {
        let mut s = LIST.lock().head;
        while !s.is_null() {
            // SAFETY: no other thread runs, and `next_all` is read before `f` can unlink `s`.
            let next = unsafe { (*s).next_all };
            f(s);
            s = next;
        }
    }

    /// Takes a free slice for a new span and returns its descriptor.
    pub fn take_slice(&mut self) -> Option<&mut Span> {
        if self.free_slices == 0 {
            return None;
        }
        let i = self.free_slices.trailing_zeros() as usize;
        self.free_slices &= !(1 << i);
        self.nr_spans.fetch_add(1, Ordering::Relaxed);
        // SAFETY: slice `i` lies inside this segment's mapping.
        let start = unsafe { (self as *mut Segment as *mut u8).add(i << SLICE_SHIFT) };
        let s = &mut self.spans[i];
        *s = Span::EMPTY;
        s.slices = 1;
        s.start = start;
        Some(s)
    }

    /// Returns a span's slice; true when the segment has no span left.
    pub fn release_slice(&mut self, span: &mut Span) -> bool {
        let i = (span.start as usize - self as *mut Segment as usize) >> SLICE_SHIFT;
        self.free_slices |= 1 << i;
        *span = Span::EMPTY;
        self.nr_spans.fetch_sub(1, Ordering::Relaxed) == 1
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

    pub fn unlock_claim(&self) {
        self.claim.store(0, Ordering::Release);
    }
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
