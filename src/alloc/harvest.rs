//! Harvest: a large block being formed or grown takes resident pages from the thread's
//! cached mappings instead of faulting in fresh ones.
//!
//! The pages of a cached mapping are resident, charged and unused; a new block would
//! otherwise fault in (and the kernel zero) every page it touches. `harvest` moves the
//! tail pages of cached mappings onto the block's untouched range with `mremap`
//! (`os::mem::move_pages`: page-table entries change hands, nothing is copied, faulted
//! or zeroed; about 80 µs for 16 MiB against 6 ms of faults), so any cached memory can
//! serve a block of any size, as a page heap that splits and merges runs would.
//!
//! Invariants:
//! - A donor is `CACHED` in the calling thread's ring. Under the cache lock it is taken
//!   out (`ACTIVE`: reclaimers leave it alone, and it cannot be reused), its tail moved
//!   without the lock, and it is put back in the same slot with fewer `usable` bytes
//!   (only the owner thread fills its ring, so the slot is still empty), or released
//!   when nothing is left.
//! - Charges follow the pages: the caller has charged the block's group for the whole
//!   range; each donor's group is uncharged for what it gave, after the lock is
//!   dropped.
//! - Moved pages keep their address-space area: a block's range that received pages is
//!   split where they begin and end, and carries the areas the donor's range had.
//!   `Cuts` records, per mapping, every data offset where an area may begin (a superset:
//!   the kernel may merge areas, never split them further, as the source of a
//!   `MREMAP_DONTUNMAP` move on a `MAP_NORESERVE` mapping keeps its one area). A move
//!   that would leave a mapping more than `CUTS` cuts is not made, and the cuts of every
//!   live mapping add up to at most `CUTS_TOTAL` (`TOTAL`), so the process stays far
//!   below the kernel's `vm.max_map_count` (65,530 by default).
//! - A kernel that refuses the move (before 5.7, or a source spanning several areas
//!   before 6.17) leaves the block's range mapped and untouched: the caller faults it in
//!   as before. Only when that range cannot even be mapped again does `harvest` fail, and
//!   the caller releases the block.

use super::tld;
use super::types::{Cuts, LargeMeta, Segment, State, CUTS, LARGE_CACHE};
use crate::consts::pages;
use crate::os::mem::{self, Moved, PAGE_SIZE};
use core::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most cuts over every live mapping of the process.
const CUTS_TOTAL: usize = 16 << 10;
/// Below this a range is faulted in: a move costs a system call and a TLB flush.
const MIN_BYTES: usize = 64 << 10;

/// Sum of `Cuts::n` over every live large mapping.
static TOTAL: AtomicUsize = AtomicUsize::new(0);

impl Cuts {
    fn slice(&self) -> &[u32] {
        &self.at[..self.n as usize]
    }

    /// Whether the data may span more than one area.
    pub fn any(&self) -> bool {
        self.n != 0
    }

    /// Where the area holding the page before `page` begins: the last cut below it, or
    /// 0.
    fn last_below(&self, page: u32) -> u32 {
        self.slice()
            .iter()
            .rev()
            .find(|&&c| c < page)
            .copied()
            .unwrap_or(0)
    }

    /// The cuts of `self` after `src`'s pages `src_lo..src_hi` replace pages `lo..hi`:
    /// those outside `lo..hi`, the two ends, and `src`'s cuts inside its range shifted
    /// into place; `None` if that makes more than `CUTS`.
    fn receive(&self, lo: u32, hi: u32, src: &Cuts, src_lo: u32, src_hi: u32) -> Option<Cuts> {
        let mut out = Cuts {
            at: [0; CUTS],
            n: 0,
        };
        let mut push = |c: u32| -> Option<()> {
            let n = out.n as usize;
            if n > 0 && out.at[n - 1] >= c {
                return Some(()); // merged ends (sorted input never goes back)
            }
            *out.at.get_mut(n)? = c;
            out.n += 1;
            Some(())
        };
        for &c in self.slice().iter().filter(|&&c| c < lo) {
            push(c)?;
        }
        push(lo)?;
        for &c in src.slice().iter().filter(|&&c| c > src_lo && c < src_hi) {
            push(c - src_lo + lo)?;
        }
        push(hi)?;
        for &c in self.slice().iter().filter(|&&c| c > hi) {
            push(c)?;
        }
        Some(out)
    }
}

/// A large mapping is released: its cuts go with it.
pub fn forget(m: &LargeMeta) {
    if m.cuts.n != 0 {
        TOTAL.fetch_sub(m.cuts.n as usize, Ordering::Relaxed);
    }
}

/// What a harvest leaves its caller (`large.rs`) to do.
pub struct Harvest {
    /// Bytes moved into the block, from its start on (the rest is left to fault in).
    pub moved: usize,
    /// `(address, length)` of a range a refused move may have given to another mapping:
    /// the caller releases the block, that range left alone.
    pub lost: Option<(usize, usize)>,
    /// Donors left with nothing, out of the cache (`ACTIVE`) and the caller's alone: it
    /// releases them.
    emptied: [*mut Segment; LARGE_CACHE],
    n_emptied: usize,
}

impl Harvest {
    /// The donors left with nothing.
    pub fn emptied(&self) -> &[*mut Segment] {
        &self.emptied[..self.n_emptied]
    }

    fn none() -> Harvest {
        Harvest {
            moved: 0,
            lost: None,
            emptied: [ptr::null_mut(); LARGE_CACHE],
            n_emptied: 0,
        }
    }
}

/// Fills the data of large mapping `seg` from byte `from` to byte `to` (page multiples
/// within its reservation, not resident, charged by the caller to its group) with
/// resident pages moved out of the calling thread's cached mappings, the largest first,
/// each from its last area only. Returns the bytes moved, and what the caller must
/// release: the donors emptied, and the block itself when a move was lost.
///
/// # Safety
/// `seg` is a listed large mapping in no cache, whose block is not handed out yet, held
/// by the caller alone; `from..to` is page-aligned, within its reservation, and holds
/// nothing the caller needs.
pub unsafe fn harvest(seg: *mut Segment, from: usize, to: usize) -> Harvest {
    let want = to - from;
    let tld = tld::current();
    // SAFETY: the caller holds the block's mapping exclusively.
    let m = unsafe { &mut (*seg).large };
    if want < MIN_BYTES || tld.is_null() || m.cuts.n as usize + 2 > CUTS {
        return Harvest::none();
    }
    // SAFETY: this thread's live state.
    let t = unsafe { &mut *tld };
    let mut donors = [(0usize, ptr::null_mut::<Segment>()); LARGE_CACHE];
    let mut n = 0;
    {
        let _g = t.lock_cache();
        let mut got = 0;
        while got < want && n < LARGE_CACHE {
            let mut best: Option<(usize, usize)> = None;
            for (i, &s) in t.large_cache.iter().enumerate() {
                if s.is_null() {
                    continue;
                }
                // SAFETY: cached segments are live and held by this cache.
                let d = unsafe { &(*s).large };
                if d.state.load(Ordering::Relaxed) == State::Cached
                    && best.map_or(true, |(_, u)| d.usable > u)
                {
                    best = Some((i, d.usable));
                }
            }
            let Some((i, usable)) = best else { break };
            let s = core::mem::replace(&mut t.large_cache[i], ptr::null_mut());
            // SAFETY: as above; taken out under the lock, it is ours now (a fork child
            // releases it: `ACTIVE` with `cache_tld` set).
            unsafe { (*s).large.state.store(State::Active, Ordering::Relaxed) };
            t.large_bytes -= usable;
            donors[n] = (i, s);
            n += 1;
            got += usable;
        }
    }
    let page = |b: usize| (b / PAGE_SIZE) as u32;
    let mut at = from;
    let mut lost = None;
    for &(_, s) in &donors[..n] {
        if at == to {
            break;
        }
        // SAFETY: a donor taken out of the cache above, ours alone.
        let d = unsafe { &mut (*s).large };
        // From the donor's last area only: a source of several areas is refused by
        // kernels before 6.17, some of them after unmapping the destination.
        let tail = d.cuts.last_below(page(d.usable)) as usize * PAGE_SIZE;
        let take = (d.usable - tail).min(to - at);
        let (src_lo, lo, hi) = (page(d.usable - take), page(at), page(at + take));
        let Some(cuts) = m.cuts.receive(lo, hi, &d.cuts, src_lo, page(d.usable)) else {
            break;
        };
        let (old_n, new_n) = (m.cuts.n as usize, cuts.n as usize);
        if new_n > old_n && TOTAL.load(Ordering::Relaxed) + (new_n - old_n) > CUTS_TOTAL {
            break;
        }
        // SAFETY: the donor's last `take` bytes of data and the block's range at `at`
        // both lie inside their mappings.
        let (src, dst) = unsafe { (d.data.add(d.usable - take), m.data.add(at)) };
        // SAFETY: both ranges are ours alone (the donor out of the cache, the block the
        // caller's) and page-aligned; the source lies in the donor's last area; the
        // block's range holds nothing needed (this function's contract).
        let moved = unsafe { mem::move_pages(src, dst, take) };
        if moved == Moved::Lost {
            lost = Some((dst as usize, take));
            break;
        }
        // Moved or mapped again, the range may be an area of its own.
        m.cuts = cuts;
        if new_n > old_n {
            TOTAL.fetch_add(new_n - old_n, Ordering::Relaxed);
        } else {
            TOTAL.fetch_sub(old_n - new_n, Ordering::Relaxed);
        }
        if moved == Moved::No {
            break;
        }
        d.usable -= take;
        // At once, so that no uncharge is pending while the donor is out of the cache. A
        // donor left with nothing ends its page run here (its release finds no record).
        let u = d.charged.take_part(pages(take), d.origin_now());
        if d.usable == 0 {
            u.apply();
        } else {
            u.apply_plain();
        }
        at += take;
    }
    let mut out = Harvest {
        moved: at - from,
        lost,
        ..Harvest::none()
    };
    {
        let _g = t.lock_cache();
        for &(i, s) in &donors[..n] {
            // SAFETY: as above.
            let d = unsafe { &(*s).large };
            if d.usable == 0 {
                out.emptied[out.n_emptied] = s;
                out.n_emptied += 1;
                continue;
            }
            // Only this thread fills its ring: the slot it came from is still free.
            t.large_cache[i] = s;
            t.large_bytes += d.usable;
            d.state.store(State::Cached, Ordering::Release);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuts(v: &[u32]) -> Cuts {
        let mut c = Cuts {
            at: [0; CUTS],
            n: v.len() as u8,
        };
        c.at[..v.len()].copy_from_slice(v);
        c
    }

    #[test]
    fn a_move_cuts_at_its_ends_and_brings_the_sources_cuts() {
        let none = cuts(&[]);
        // Into a fresh mapping from a fresh one: the moved range is one area of its own.
        assert_eq!(
            none.receive(0, 8, &none, 100, 108).unwrap().slice(),
            &[0, 8]
        );
        // The source's cuts inside its range come along, shifted; those outside do not.
        let src = cuts(&[50, 103, 105, 200]);
        let dst = cuts(&[2, 4, 30]);
        let got = dst.receive(4, 12, &src, 100, 108).unwrap();
        assert_eq!(got.slice(), &[2, 4, 7, 9, 12, 30]);
        // Cuts inside the replaced range disappear.
        let got = cuts(&[5, 6, 20]).receive(4, 12, &none, 0, 8).unwrap();
        assert_eq!(got.slice(), &[4, 12, 20]);
        // More than `CUTS` is refused.
        let full: Vec<u32> = (0..CUTS as u32).map(|i| i * 10 + 100).collect();
        assert!(cuts(&full).receive(0, 8, &none, 0, 8).is_none());
        let many: Vec<u32> = (1..CUTS as u32).collect();
        assert!(none.receive(0, 64, &cuts(&many), 0, 64).is_none());
    }

    #[test]
    fn the_last_area_begins_at_the_last_cut_below() {
        assert_eq!(cuts(&[]).last_below(10), 0);
        let c = cuts(&[0, 4, 9]);
        assert_eq!(c.last_below(10), 9);
        assert_eq!(c.last_below(9), 4);
        assert_eq!(c.last_below(4), 0);
        assert!(c.any() && !cuts(&[]).any());
    }
}
