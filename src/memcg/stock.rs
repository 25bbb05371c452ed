//! Stocks: a thread's precharged pages for one group (`memcg_stock_pcp`, per thread here).
//!
//! A stock is one atomic word, `(group id + 1) << 32 | pages`, so that its owner and any
//! thread draining it agree on who holds the pages:
//! - the owner consumes and refills with compare-and-swap;
//! - `drain` (the owner at exit, or any thread in `drain_all_stock`) swaps the word with 0
//!   and uncharges what it took.
//!
//! Invariant I4: `0 ≤ pages ≤ CHARGE_BATCH`, and the pages are charged to the group on
//! every level, so a drain is a plain uncharge. A word with 0 pages may still name a
//! group; a stale id is harmless because only pages move charges.

use super::counter::Pages;
use super::origin::Origin;
use super::table::GroupTable;
use crate::util::sync::{AtomicU64, Ordering};

/// Pages a batched charge takes at once, and the most a stock holds (`CHARGE_BATCH`).
pub const CHARGE_BATCH: Pages = 32;

#[inline]
fn pack(id: u32, pages: Pages) -> u64 {
    (id as u64 + 1) << 32 | pages
}

/// The group a stock word caches, if any, and its pages.
#[inline]
pub fn unpack(w: u64) -> (Option<u32>, Pages) {
    let g = (w >> 32) as u32;
    (g.checked_sub(1), w & 0xffff_ffff)
}

/// Takes `nr` pages of `id` from the stock (`consume_stock`).
#[inline]
pub fn consume(word: &AtomicU64, id: u32, nr: Pages) -> bool {
    let cur = word.load(Ordering::Relaxed);
    cur >> 32 == id as u64 + 1
        && cur & 0xffff_ffff >= nr
        && word
            .compare_exchange(cur, cur - nr, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
}

/// Puts `nr` charged pages of `id` into the stock (`refill_stock`): a stock of another
/// group is drained first, and pages beyond `CHARGE_BATCH` are uncharged.
pub fn refill<const N: usize>(word: &AtomicU64, table: &GroupTable<N>, id: u32, nr: Pages) {
    let mut cur = word.load(Ordering::Relaxed);
    loop {
        let (g, pages) = unpack(cur);
        let (keep, old) = if g == Some(id) {
            (pages + nr, None)
        } else {
            (nr, g.map(|g| (g, pages)))
        };
        let kept = keep.min(CHARGE_BATCH);
        match word.compare_exchange_weak(cur, pack(id, kept), Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                if keep > kept {
                    table.uncharge(id, keep - kept);
                }
                if let Some((g, pages)) = old {
                    if pages > 0 {
                        table.uncharge(g, pages);
                    }
                }
                return;
            }
            Err(v) => cur = v,
        }
    }
}

/// Returns `nr` pages of `id` through the stock when it caches `id` and has room;
/// otherwise uncharges them from the counters. Used when memory is freed.
///
/// A group destroyed meanwhile must not keep pages in a stock after `destroy` drained
/// every stock: the put-back and this re-check of the state pair with destroy's state
/// change and drain (all read-modify-writes), so one side sees the other, and the pages
/// are drained here if the group is no longer live.
pub fn put_back<const N: usize>(
    word: &AtomicU64,
    table: &GroupTable<N>,
    id: u32,
    nr: Pages,
    origin: &Origin,
) {
    let cur = word.load(Ordering::Relaxed);
    let (g, pages) = unpack(cur);
    if g == Some(id)
        && pages + nr <= CHARGE_BATCH
        && word
            .compare_exchange(cur, cur + nr, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    {
        if table.state_fenced(id) != super::table::LIVE {
            drain(word, table);
        }
        return;
    }
    table.uncharge_from(id, nr, origin);
}

/// Empties the stock and uncharges its pages (`drain_stock`); returns the pages drained.
pub fn drain<const N: usize>(word: &AtomicU64, table: &GroupTable<N>) -> Pages {
    let (g, pages) = unpack(word.swap(0, Ordering::SeqCst));
    match g {
        Some(g) if pages > 0 => {
            table.uncharge(g, pages);
            pages
        }
        _ => 0,
    }
}
