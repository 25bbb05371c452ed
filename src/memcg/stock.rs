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

#![forbid(unsafe_code)]

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memcg::counter::{charge_force, Hierarchy};
    use crate::memcg::path::GroupPath;
    use crate::memcg::table::{DYING, FREE};

    /// A small table of its own (not the process's groups) with the given groups.
    fn table_with(paths: &[&str]) -> (GroupTable<4>, Vec<u32>) {
        let t = GroupTable::<4>::new();
        let ids = paths
            .iter()
            .map(|p| (t.create(&GroupPath::parse(p.as_bytes()).unwrap()).unwrap() & 0xffff) as u32)
            .collect();
        (t, ids)
    }

    fn usage(t: &GroupTable<4>, id: u32) -> Pages {
        t.counter(id).usage()
    }

    #[test]
    fn word_names_the_group_and_its_pages() {
        assert_eq!(unpack(0), (None, 0));
        assert_eq!(unpack(pack(0, 0)), (Some(0), 0));
        assert_eq!(unpack(pack(3, CHARGE_BATCH)), (Some(3), CHARGE_BATCH));
    }

    #[test]
    fn consume_takes_only_the_cached_group_and_what_it_holds() {
        let (t, g) = table_with(&["/a", "/b"]);
        let (a, b) = (g[0], g[1]);
        let w = AtomicU64::new(0);
        assert!(!consume(&w, a, 1), "an empty stock has nothing");
        charge_force(&t, a, 5);
        refill(&w, &t, a, 5);
        assert!(consume(&w, a, 3));
        assert!(!consume(&w, a, 3), "only 2 left");
        assert!(!consume(&w, b, 1), "another group's pages");
        assert_eq!(unpack(w.load(Ordering::Relaxed)), (Some(a), 2));
        assert_eq!(usage(&t, a), 5, "consuming moves no counter");
    }

    #[test]
    fn refill_keeps_at_most_a_batch_and_drains_another_group() {
        let (t, g) = table_with(&["/a", "/b"]);
        let (a, b) = (g[0], g[1]);
        let w = AtomicU64::new(0);
        charge_force(&t, a, 40);
        refill(&w, &t, a, 40);
        assert_eq!(unpack(w.load(Ordering::Relaxed)), (Some(a), CHARGE_BATCH));
        assert_eq!(
            usage(&t, a),
            CHARGE_BATCH,
            "pages past the batch are uncharged"
        );
        charge_force(&t, b, 3);
        refill(&w, &t, b, 3);
        assert_eq!(unpack(w.load(Ordering::Relaxed)), (Some(b), 3));
        assert_eq!(
            (usage(&t, a), usage(&t, b)),
            (0, 3),
            "a's stock was drained"
        );
        assert_eq!(usage(&t, 0), 3);
        assert_eq!(drain(&w, &t), 3);
        assert_eq!(
            (w.load(Ordering::Relaxed), usage(&t, b), usage(&t, 0)),
            (0, 0, 0)
        );
        assert_eq!(drain(&w, &t), 0);
    }

    #[test]
    fn put_back_fills_the_stock_up_to_a_batch_then_uncharges() {
        let (t, g) = table_with(&["/a", "/b"]);
        let (a, b) = (g[0], g[1]);
        let w = AtomicU64::new(0);
        charge_force(&t, a, CHARGE_BATCH + 2);
        refill(&w, &t, a, CHARGE_BATCH - 1);
        assert_eq!(usage(&t, a), CHARGE_BATCH + 2);
        put_back(&w, &t, a, 1, &Origin::plain("test"));
        assert_eq!(unpack(w.load(Ordering::Relaxed)), (Some(a), CHARGE_BATCH));
        assert_eq!(
            usage(&t, a),
            CHARGE_BATCH + 2,
            "kept in the stock, still charged"
        );
        put_back(&w, &t, a, 1, &Origin::plain("test"));
        assert_eq!(usage(&t, a), CHARGE_BATCH + 1, "no room: uncharged");
        charge_force(&t, b, 1);
        put_back(&w, &t, b, 1, &Origin::plain("test"));
        assert_eq!(usage(&t, b), 0, "another group's pages: uncharged");
        assert_eq!(unpack(w.load(Ordering::Relaxed)), (Some(a), CHARGE_BATCH));
    }

    #[test]
    fn put_back_to_a_dying_group_drains_and_frees_it() {
        let (t, g) = table_with(&["/a"]);
        let a = g[0];
        let w = AtomicU64::new(0);
        charge_force(&t, a, 3);
        refill(&w, &t, a, 2);
        let (id, _) = t.destroy(t.handle(a)).unwrap();
        assert_eq!((id, t.state(a)), (a, DYING));
        put_back(&w, &t, a, 1, &Origin::plain("test"));
        assert_eq!(
            w.load(Ordering::Relaxed) & 0xffff_ffff,
            0,
            "the stock was drained"
        );
        assert_eq!(usage(&t, a), 0);
        assert_eq!(t.state(a), FREE, "the last uncharge freed the dying group");
    }

    /// The owner consumes page by page while another thread drains the stock: every page
    /// is either consumed (and stays charged) or drained (and uncharged), once (I4).
    #[test]
    fn consume_racing_with_drain_moves_each_page_once() {
        let (t, g) = table_with(&["/a"]);
        let a = g[0];
        let w = AtomicU64::new(0);
        charge_force(&t, a, CHARGE_BATCH);
        refill(&w, &t, a, CHARGE_BATCH);
        let (consumed, drained) = std::thread::scope(|s| {
            let owner =
                s.spawn(|| (0..CHARGE_BATCH).filter(|_| consume(&w, a, 1)).count() as Pages);
            let drainer = s.spawn(|| drain(&w, &t));
            (owner.join().unwrap(), drainer.join().unwrap())
        });
        assert_eq!(consumed + drained, CHARGE_BATCH);
        assert_eq!(usage(&t, a), consumed);
        assert_eq!(w.load(Ordering::Relaxed) & 0xffff_ffff, 0);
    }
}
