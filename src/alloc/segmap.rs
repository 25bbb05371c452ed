//! The segment map: which 4 MiB-aligned regions of the address space hold cgmalloc's
//! segments. `free`, `realloc` and `malloc_usable_size` consult it before reading any
//! metadata, so a pointer cgmalloc never returned is recognised instead of dereferenced.
//!
//! One byte per segment-sized region of the 48-bit user address space: 64 MiB of
//! zero-initialised `.bss`, of which only the pages covering regions in use are ever
//! touched (a few KiB for a typical process). Entries:
//! - `NONE`: not cgmalloc's;
//! - `HERE`: a segment header starts at this region;
//! - `BACK`: the data of a large mapping aligned beyond a segment, whose header starts
//!   one region lower.
//!
//! Writers: the thread mapping or unmapping a segment, before handing out / after taking
//! back its memory. Readers: any thread freeing a pointer into it (which is then live).

use super::types::SEG_SHIFT;
use std::sync::atomic::{AtomicU8, Ordering};

const ADDR_BITS: usize = 48;
const ENTRIES: usize = 1 << (ADDR_BITS - SEG_SHIFT);

pub const NONE: u8 = 0;
pub const HERE: u8 = 1;
pub const BACK: u8 = 2;

static MAP: [AtomicU8; ENTRIES] = [const { AtomicU8::new(NONE) }; ENTRIES];

/// The entry for the region holding `addr`.
#[inline]
pub fn get(addr: usize) -> u8 {
    match crate::util::local::local_static!(MAP).get(addr >> SEG_SHIFT) {
        Some(e) => e.load(Ordering::Acquire),
        None => NONE,
    }
}

/// Sets the entry for the region holding `addr`.
pub fn set(addr: usize, kind: u8) {
    if let Some(e) = MAP.get(addr >> SEG_SHIFT) {
        e.store(kind, Ordering::Release);
    }
}

/// The segment header responsible for `p`, if `p` points into a region cgmalloc owns.
#[inline]
pub fn segment_of(p: usize) -> Option<usize> {
    let base = p & !((1usize << SEG_SHIFT) - 1);
    match get(p) {
        HERE => Some(base),
        BACK => Some(base - (1 << SEG_SHIFT)),
        _ => None,
    }
}
