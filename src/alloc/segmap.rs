//! The segment map: which 4 MiB-aligned regions of the address space hold cgmalloc's
//! segments. `free`, `realloc` and `malloc_usable_size` consult it before reading any
//! metadata, so a pointer cgmalloc never returned is recognised instead of dereferenced.
//!
//! One 2-bit entry per segment-sized region of the 48-bit user address space (8 MiB of
//! zero-initialised `.bss`, touched only where segments live):
//! - `NONE`: not cgmalloc's;
//! - `HERE`: a segment header starts at this region;
//! - `BACK`: the data of a large mapping aligned beyond a segment, whose header starts
//!   one region lower.
//!
//! Writers: the thread mapping or unmapping a segment, before handing out / after taking
//! back its memory. Readers: any thread freeing a pointer into it (which is then live).

use super::segment::SEG_SHIFT;
use std::sync::atomic::{AtomicU64, Ordering};

const ADDR_BITS: usize = 48;
const ENTRIES: usize = 1 << (ADDR_BITS - SEG_SHIFT);
const PER_WORD: usize = 32;

pub const NONE: u64 = 0;
pub const HERE: u64 = 1;
pub const BACK: u64 = 2;

static MAP: [AtomicU64; ENTRIES / PER_WORD] = [const { AtomicU64::new(0) }; ENTRIES / PER_WORD];

fn locate(addr: usize) -> Option<(usize, u32)> {
    let index = addr >> SEG_SHIFT;
    (index < ENTRIES).then_some((index / PER_WORD, ((index % PER_WORD) * 2) as u32))
}

/// The entry for the region holding `addr`.
#[inline]
pub fn get(addr: usize) -> u64 {
    match locate(addr) {
        Some((w, shift)) => (MAP[w].load(Ordering::Acquire) >> shift) & 3,
        None => NONE,
    }
}

/// Sets the entry for the region holding `addr`.
pub fn set(addr: usize, kind: u64) {
    if let Some((w, shift)) = locate(addr) {
        let mask = 3u64 << shift;
        let mut cur = MAP[w].load(Ordering::Relaxed);
        loop {
            let new = (cur & !mask) | (kind << shift);
            match MAP[w].compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(v) => cur = v,
            }
        }
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
