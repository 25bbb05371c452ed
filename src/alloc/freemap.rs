//! The live map: one bit per 16-byte granule of a span segment, kept in the segment's
//! header, set exactly where a small block handed out starts. It lets the owner's `free`
//! see a double free or an interior pointer without reading the block: a wide read of a
//! word the program has just written in narrower stores cannot be forwarded from the
//! store buffer, and waits for the stores to reach the cache (about as long as the rest of
//! the pair of calls).
//!
//! Invariant, for every granule of a span segment at all times: the bit is set iff a
//! small block (not `MEDIUM`) handed out (live, or on `thread_free` until the owner
//! collects it) starts there, or an unchecked block does: taken from `thread_free`
//! without a walk, on its span's `free` while the span's `UNCHECKED` flag is up
//! (`span.rs`). So it is clear for every other block on `free` or `local_free`, for a
//! block never handed out (index `≥ reserved`), for every granule that starts no block,
//! for medium spans (never set), the header slice and free slices (a span is released
//! with no block handed out, and no unchecked one). A pointer whose bit is set, in a
//! span with `UNCHECKED` down, is the start of a small block handed out, of an `ACTIVE`
//! or `ABANDONED` span: the owner's fast `free` (which leaves spans with the flag up to
//! the checked path) needs no other check that `p` is a block start, nor of the span's
//! state or class. A fresh segment's map is zero, which is the invariant.
//!
//! Writers: the span's owner (or the claim holder of an abandoned segment), with plain
//! relaxed load/store pairs. Other threads only read bits, to confirm a double free they
//! suspect; a live block's bit is set for whoever may legally free it.

use super::types::{Segment, GRANULE_SHIFT, SEG_SIZE, SLICE_SIZE, SLICE_WORDS, WORD_SHIFT};
use std::sync::atomic::{AtomicU64, Ordering};

/// The word holding `p`'s bit, and the bit.
///
/// # Safety
/// `p` lies in a span segment in use: its header (and so its map) stays mapped while the
/// returned word is used.
#[inline(always)]
unsafe fn locate(p: usize) -> (&'static AtomicU64, u64) {
    let base = p & !(SEG_SIZE - 1);
    let index = (p & (SEG_SIZE - 1)) >> (GRANULE_SHIFT + WORD_SHIFT);
    let bit = 1u64 << ((p >> GRANULE_SHIFT) & 63);
    let map = (base + core::mem::offset_of!(Segment, free_map)) as *const AtomicU64;
    // SAFETY: by the contract the segment's header, and so its map (`WORDS` words of
    // which `index` is one), is mapped while the word is used.
    (unsafe { &*map.add(index) }, bit)
}

/// Whether the block at `p` is free: no block handed out starts there.
///
/// # Safety
/// `p` lies in a span segment in use.
#[inline(always)]
pub unsafe fn is_free(p: usize) -> bool {
    // SAFETY: `p` lies in a span segment in use (this function's contract).
    let (w, bit) = unsafe { locate(p) };
    w.load(Ordering::Relaxed) & bit == 0
}

/// The owner marks the block at `p` free unless it is already: false (and nothing
/// changed) where no block handed out starts.
///
/// # Safety
/// `p` lies in a span segment in use that the calling thread owns (or holds the claim
/// of): only the owner writes the map.
#[inline(always)]
pub unsafe fn try_set_free(p: usize) -> bool {
    // SAFETY: `p` lies in a span segment in use (this function's contract).
    let (w, bit) = unsafe { locate(p) };
    let v = w.load(Ordering::Relaxed);
    w.store(v & !bit, Ordering::Relaxed);
    v & bit != 0
}

/// The owner marks the block at `p` free.
///
/// # Safety
/// As for `try_set_free`.
#[inline(always)]
pub unsafe fn set_free(p: usize) {
    // SAFETY: this function's contract is `try_set_free`'s.
    unsafe { try_set_free(p) };
}

/// The owner hands the block at `p` out.
///
/// # Safety
/// As for `try_set_free`.
#[inline(always)]
pub unsafe fn set_used(p: usize) {
    // SAFETY: `p` lies in a span segment in use (this function's contract).
    let (w, bit) = unsafe { locate(p) };
    w.store(w.load(Ordering::Relaxed) | bit, Ordering::Relaxed);
}

/// The map's words of the slice at `start`.
///
/// # Safety
/// `start` is the start of a slice of a span segment in use, whose header stays mapped
/// while the words are used.
unsafe fn slice_words(start: usize) -> &'static [AtomicU64] {
    debug_assert_eq!(start % SLICE_SIZE, 0);
    // SAFETY: `start` lies in a span segment in use (this function's contract).
    let (first, _) = unsafe { locate(start) };
    // SAFETY: the slice's words follow its first one inside the same map.
    unsafe { core::slice::from_raw_parts(first, SLICE_WORDS) }
}

/// The owner clears every bit of the slice at `start`: the small-block span there has
/// no block handed out, but unchecked blocks (`span.rs`) may have kept their bits.
///
/// # Safety
/// `start` is the start of a slice of a span segment in use that the calling thread owns
/// (or holds the claim of).
pub unsafe fn clear_slice(start: usize) {
    // SAFETY: this function's contract.
    for w in unsafe { slice_words(start) } {
        w.store(0, Ordering::Relaxed);
    }
}

/// The owner formats the small-block span of the slice at `start`: no block handed out.
/// The invariant says the slice's bits are clear already (debug builds check it); a bit
/// found set is cleared. Reading leaves untouched map pages unallocated.
///
/// # Safety
/// `start` is the start of a slice of a span segment in use that the calling thread owns
/// (or holds the claim of).
pub unsafe fn set_slice_free(start: usize) {
    // SAFETY: this function's contract.
    for w in unsafe { slice_words(start) } {
        if w.load(Ordering::Relaxed) != 0 {
            debug_assert!(false, "live bits in a slice being formatted");
            w.store(0, Ordering::Relaxed);
        }
    }
}
