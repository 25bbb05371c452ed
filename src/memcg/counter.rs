//! The page counter: one group's usage and limits, in 4 KiB pages, and the hierarchical
//! charge and uncharge walks over a tree of counters.
//!
//! Invariants (DESIGN.md):
//! - I1: `usage(g) = own(g) + Σ usage(children)`: every walk adds or removes the same
//!   `nr` at every level from the charged group to the root.
//! - I2: a successful non-forced charge saw `usage ≤ max` at every level at the moment
//!   of its own update (the `new` value returned by the atomic add, against `max` loaded
//!   after it, both sequentially consistent, so a concurrent `set_max` either sees the
//!   charge in `usage` or the charge sees the new `max`).
//! - I3: a failed charge leaves every `usage` and `watermark` as it found them; the level
//!   that refused counts one `failcnt`.
//! - I6: `watermark` only grows (until reset) and is raised after a walk succeeds, so a
//!   charge that fails never raises a peak.
//!
//! Writers: `usage` by any charging or uncharging thread; limits by control calls;
//! `watermark` by charging threads (`fetch_max`) and resets.

#![forbid(unsafe_code)]

use crate::util::sync::{const_unless_loom, AtomicU32, AtomicU64, Ordering};

use crate::consts::MAX_DEPTH;
pub use crate::consts::{Pages, UNLIMITED};

/// Levels of the tree: the root and `MAX_DEPTH` below it.
pub const MAX_LEVELS: usize = MAX_DEPTH + 1;

/// A limit that defaults to "no limit" when its memory is all zeros: it is stored as
/// `UNLIMITED - value`, so static tables of counters stay in `.bss`.
#[repr(transparent)]
pub struct Limit(AtomicU64);

impl Limit {
    const_unless_loom! {
        pub fn new() -> Limit {
            Limit(AtomicU64::new(0))
        }
    }

    #[inline]
    pub fn get(&self) -> Pages {
        UNLIMITED - self.0.load(Ordering::SeqCst)
    }

    pub fn set(&self, pages: Pages) {
        self.0.store(UNLIMITED - pages, Ordering::SeqCst);
    }
}

/// The kernel's `struct page_counter`, with the parent link kept by the tree.
#[repr(C, align(64))]
pub struct PageCounter {
    /// Pages charged to this group and its descendants, stocks included.
    pub usage: AtomicU64,
    /// Highest `usage` since creation or the last reset (`memory.peak`).
    pub watermark: AtomicU64,
    /// Charges refused at this level's `max` (`memory.failcnt`).
    pub failcnt: AtomicU64,
    pub max: Limit,
    pub high: Limit,
    pub soft_limit: Limit,
    /// Protection: below it the group is reclaimed only when nothing else can give.
    pub low: AtomicU64,
    /// Protection: below it the group is never reclaimed.
    pub min: AtomicU64,
    /// `memory.enforce`: [`ENFORCE_ON`] (zeroed memory's default), [`ENFORCE_WARN`] or
    /// [`ENFORCE_OFF`].
    pub enforce: AtomicU32,
}

/// `memory.enforce`: this level's `max` and `high` hold charges back.
pub const ENFORCE_ON: u32 = 0;
/// Passing them is only counted and reported (`warn` in `memory.events`).
pub const ENFORCE_WARN: u32 = 1;
/// They are ignored; usage, peak and statistics still count.
pub const ENFORCE_OFF: u32 = 2;

impl PageCounter {
    const_unless_loom! {
        pub fn new() -> PageCounter {
            PageCounter {
                usage: AtomicU64::new(0),
                watermark: AtomicU64::new(0),
                failcnt: AtomicU64::new(0),
                max: Limit::new(),
                high: Limit::new(),
                soft_limit: Limit::new(),
                low: AtomicU64::new(0),
                min: AtomicU64::new(0),
                enforce: AtomicU32::new(ENFORCE_ON),
            }
        }
    }

    #[inline]
    pub fn usage(&self) -> Pages {
        self.usage.load(Ordering::SeqCst)
    }

    /// `max - usage`, or 0 when at or over the limit (`mem_cgroup_margin`); no limit at
    /// a level that does not enforce its own.
    pub fn margin(&self) -> Pages {
        self.limit().saturating_sub(self.usage())
    }

    /// Whether this level's `max` and `high` hold charges back (`memory.enforce` on).
    #[inline]
    pub fn enforced(&self) -> bool {
        self.enforce.load(Ordering::Relaxed) == ENFORCE_ON
    }

    /// The `max` that charges are held to: `max` if enforced, else none.
    pub fn limit(&self) -> Pages {
        if self.enforced() {
            self.max.get()
        } else {
            UNLIMITED
        }
    }

    pub fn raise_watermark(&self, usage: Pages) {
        if usage > self.watermark.load(Ordering::Relaxed) {
            self.watermark.fetch_max(usage, Ordering::Relaxed);
        }
    }

    /// `memory.peak` written: the peak restarts from the current usage.
    pub fn reset_watermark(&self) {
        self.watermark.store(self.usage(), Ordering::Relaxed);
    }

    /// Resets every field for a newly created group.
    pub fn reset(&self) {
        self.usage.store(0, Ordering::SeqCst);
        self.watermark.store(0, Ordering::Relaxed);
        self.failcnt.store(0, Ordering::Relaxed);
        self.max.set(UNLIMITED);
        self.high.set(UNLIMITED);
        self.soft_limit.set(UNLIMITED);
        self.low.store(0, Ordering::Relaxed);
        self.min.store(0, Ordering::Relaxed);
        self.enforce.store(ENFORCE_ON, Ordering::Relaxed);
    }
}

impl Default for PageCounter {
    fn default() -> Self {
        Self::new()
    }
}

/// A tree of counters addressed by small integer ids.
pub trait Hierarchy {
    fn counter(&self, id: u32) -> &PageCounter;
    /// The parent's id, `None` for the root. Stable while `id` holds charges.
    fn parent(&self, id: u32) -> Option<u32>;
}

/// Charges `nr` pages to `id` and every ancestor, each against its `max`
/// (`page_counter_try_charge`). On refusal every level already charged is rolled back and
/// the id of the refusing level is returned.
pub fn try_charge<H: Hierarchy + ?Sized>(tree: &H, id: u32, nr: Pages) -> Result<(), u32> {
    let mut done: [(u32, Pages); MAX_LEVELS] = [(0, 0); MAX_LEVELS];
    let mut n = 0;
    let mut cur = Some(id);
    while let Some(g) = cur {
        let c = tree.counter(g);
        let new = c.usage.fetch_add(nr, Ordering::SeqCst) + nr;
        if new > c.max.get() && c.enforced() {
            c.usage.fetch_sub(nr, Ordering::SeqCst);
            c.failcnt.fetch_add(1, Ordering::Relaxed);
            for &(lower, _) in &done[..n] {
                tree.counter(lower).usage.fetch_sub(nr, Ordering::SeqCst);
            }
            return Err(g);
        }
        done[n] = (g, new);
        n += 1;
        cur = tree.parent(g);
    }
    for &(g, new) in &done[..n] {
        tree.counter(g).raise_watermark(new);
    }
    Ok(())
}

/// Charges `nr` pages to `id` and every ancestor regardless of limits
/// (`page_counter_charge`).
pub fn charge_force<H: Hierarchy + ?Sized>(tree: &H, id: u32, nr: Pages) {
    let mut cur = Some(id);
    while let Some(g) = cur {
        let c = tree.counter(g);
        let new = c.usage.fetch_add(nr, Ordering::SeqCst) + nr;
        c.raise_watermark(new);
        cur = tree.parent(g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True when `id` and every ancestor have room for `nr` more pages right now.
    fn fits<H: Hierarchy + ?Sized>(tree: &H, id: u32, nr: Pages) -> bool {
        let mut cur = Some(id);
        while let Some(g) = cur {
            if tree.counter(g).margin() < nr {
                return false;
            }
            cur = tree.parent(g);
        }
        true
    }

    /// `root (0) ← a (1) ← b (2)` and `root ← c (3)`.
    struct Tree {
        c: [PageCounter; 4],
        parent: [Option<u32>; 4],
    }

    impl Hierarchy for Tree {
        fn counter(&self, id: u32) -> &PageCounter {
            &self.c[id as usize]
        }
        fn parent(&self, id: u32) -> Option<u32> {
            self.parent[id as usize]
        }
    }

    fn tree() -> Tree {
        Tree {
            c: [const { PageCounter::new() }; 4],
            parent: [None, Some(0), Some(1), Some(0)],
        }
    }

    fn usages(t: &Tree) -> [Pages; 4] {
        core::array::from_fn(|i| t.c[i].usage())
    }

    fn failcnts(t: &Tree) -> [u64; 4] {
        core::array::from_fn(|i| t.c[i].failcnt.load(Ordering::Relaxed))
    }

    fn peaks(t: &Tree) -> [Pages; 4] {
        core::array::from_fn(|i| t.c[i].watermark.load(Ordering::Relaxed))
    }

    #[test]
    fn zeroed_counter_has_no_limits() {
        let c = PageCounter::new();
        assert_eq!(c.max.get(), UNLIMITED);
        assert_eq!(c.high.get(), UNLIMITED);
        assert_eq!(c.soft_limit.get(), UNLIMITED);
        assert_eq!(c.low.load(Ordering::Relaxed), 0);
        assert_eq!(c.margin(), UNLIMITED);
        c.max.set(0);
        assert_eq!((c.max.get(), c.margin()), (0, 0));
        c.max.set(10);
        c.usage.store(4, Ordering::SeqCst);
        assert_eq!(c.margin(), 6);
        c.usage.store(12, Ordering::SeqCst);
        assert_eq!(c.margin(), 0, "over the limit: no margin, no underflow");
        c.reset();
        assert_eq!((c.usage(), c.max.get()), (0, UNLIMITED));
    }

    #[test]
    fn charge_walks_to_the_root_and_raises_peaks() {
        let t = tree();
        assert_eq!(try_charge(&t, 2, 5), Ok(()));
        assert_eq!(try_charge(&t, 3, 2), Ok(()));
        assert_eq!(usages(&t), [7, 5, 5, 2]);
        assert_eq!(peaks(&t), [7, 5, 5, 2]);
        // Peaks stay when usage drops, and restart from usage when reset.
        t.c[2].usage.fetch_sub(5, Ordering::SeqCst);
        assert_eq!(peaks(&t)[2], 5);
        t.c[2].reset_watermark();
        assert_eq!(peaks(&t)[2], 0);
    }

    #[test]
    fn refusal_rolls_back_every_level_and_counts_one_failcnt() {
        let t = tree();
        t.c[1].max.set(8);
        assert_eq!(try_charge(&t, 2, 5), Ok(()));
        // Refused at `a`: `b`, charged first, is rolled back; nothing above is touched.
        assert_eq!(try_charge(&t, 2, 4), Err(1));
        assert_eq!(usages(&t), [5, 5, 5, 0]);
        assert_eq!(failcnts(&t), [0, 1, 0, 0]);
        assert_eq!(peaks(&t), [5, 5, 5, 0], "a refused charge raises no peak");
        // Refused at the root, two levels up from `b`.
        t.c[0].max.set(6);
        assert_eq!(try_charge(&t, 2, 2), Err(0));
        assert_eq!(try_charge(&t, 3, 2), Err(0));
        assert_eq!(usages(&t), [5, 5, 5, 0]);
        assert_eq!(failcnts(&t), [2, 1, 0, 0]);
        // Exactly at the limit is allowed.
        assert_eq!(try_charge(&t, 3, 1), Ok(()));
        assert_eq!(usages(&t), [6, 5, 5, 1]);
    }

    #[test]
    fn forced_charges_pass_max_and_margins_hold_at_every_level() {
        let t = tree();
        t.c[1].max.set(4);
        assert!(fits(&t, 2, 4));
        assert!(!fits(&t, 2, 5));
        assert!(fits(&t, 3, 5), "a sibling's limit does not apply");
        charge_force(&t, 2, 10);
        assert_eq!(usages(&t), [10, 10, 10, 0]);
        assert_eq!(peaks(&t), [10, 10, 10, 0]);
        assert_eq!(t.c[1].margin(), 0);
        assert!(!fits(&t, 2, 1));
        assert!(fits(&t, 3, 1));
    }

    /// Two threads charge siblings below a limited root: every level ends with exactly
    /// the pages that were accepted (I1), the root never exceeds its limit (I2), and each
    /// refusal is one root `failcnt` (I3).
    #[test]
    fn concurrent_charges_keep_the_hierarchy_and_the_limit() {
        const TRIES: u64 = 12;
        let t = tree();
        t.c[0].max.set(16);
        let (ok_b, ok_c) = std::thread::scope(|s| {
            let charge = |id| {
                let t = &t;
                s.spawn(move || (0..TRIES).filter(|_| try_charge(t, id, 1).is_ok()).count() as u64)
            };
            let (b, c) = (charge(2), charge(3));
            (b.join().unwrap(), c.join().unwrap())
        });
        assert_eq!(ok_b + ok_c, 16);
        assert_eq!(usages(&t), [16, ok_b, ok_b, ok_c]);
        assert_eq!(failcnts(&t), [2 * TRIES - 16, 0, 0, 0]);
        assert_eq!(peaks(&t)[0], 16);
    }
}
