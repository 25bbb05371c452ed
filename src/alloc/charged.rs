//! The charge a span, a free slice or a large mapping holds (`Charged`), the uncharge
//! owed when a holder gives it back (`Uncharge`), and the uncharges a holder of a segment
//! owes until it drops its lock (`Owed`).
//!
//! One truth for "charged": a holder's record is one atomic word, `(group + 1) << 48 |
//! pages` (0: nothing), written in the same step as the charge — right after the counters
//! took the pages — and taken in the same step as the uncharge — right before the counters
//! give them back (the ledger's rule, `memcg::ledger`). Every observer (the owner, a
//! reclaimer, a thread freeing the last block, an exiting thread, a fork child) uncharges
//! exactly what the record says, never a count derived from the holder's state; the swap
//! that takes a record makes exactly one of two racing observers do it. A record never
//! names two groups: a holder handed to another group swaps its record in one step.
//!
//! Invariants: a span, free slice or mapping holds `pages` pages charged to `group`
//! exactly while its record says so (a released span's record moves to its free slices
//! with `end_run` and `put`, without touching the counters); the sum of the records, stocks and explicit charges of a group's
//! subtree is its `usage`, less the charges in flight (`memcg::ledger::audit`).

use crate::memcg;
use crate::memcg::events::StatKey;
use crate::memcg::origin::Origin;
use crate::util::fatal::fatal;
use core::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};

/// No group: what `Charged::group` says of a record of nothing.
pub const NO_GROUP: u32 = u32::MAX;

const SHIFT: u32 = 48;
const PAGES: u64 = (1 << SHIFT) - 1;

/// The record: `None` or `(group, pages)` with `pages > 0`.
#[repr(transparent)]
pub struct Charged(AtomicU64);

#[inline]
fn unpack(w: u64) -> Option<(u32, u64)> {
    (w != 0).then(|| (((w >> SHIFT) - 1) as u32, w & PAGES))
}

#[inline]
fn pack(group: u32, pages: u64) -> u64 {
    if pages == 0 {
        0
    } else {
        (group as u64 + 1) << SHIFT | pages
    }
}

impl Charged {
    /// A record of no charge.
    pub const fn none() -> Charged {
        Charged(AtomicU64::new(0))
    }

    /// The group and pages recorded, if any.
    #[inline]
    pub fn get(&self) -> Option<(u32, u64)> {
        unpack(self.0.load(Ordering::Acquire))
    }

    /// The group recorded, or `NO_GROUP`.
    #[inline]
    pub fn group(&self) -> u32 {
        self.get().map_or(NO_GROUP, |(g, _)| g)
    }

    /// The pages recorded (0 for none).
    #[inline]
    pub fn pages(&self) -> u64 {
        self.0.load(Ordering::Acquire) & PAGES
    }

    /// Whether the holder holds a charge of `group`.
    #[inline]
    pub fn is_of(&self, group: u32) -> bool {
        self.get().is_some_and(|(g, _)| g == group)
    }

    /// Records `pages` more of `group`, which the caller has just charged. The record must
    /// be empty or of `group`; a record that was empty counts a page run charged
    /// (`nr_charges` of `memory.stat`), as `Uncharge::apply` counts one given back.
    pub fn add(&self, group: u32, pages: u64) {
        if pages == 0 {
            return;
        }
        // Charged and not yet recorded: a fork here leaves the child a charge in flight.
        crate::os::fault::race_point();
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let held = match unpack(cur) {
                None => 0,
                Some((g, p)) if g == group => p,
                Some(_) => fatal(&[b"charge record of another group (cgmalloc bug)"]),
            };
            match self.0.compare_exchange_weak(
                cur,
                pack(group, held + pages),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if held == 0 {
                        memcg::table::GROUPS.add_stat(group, StatKey::NrCharges, 1);
                    }
                    return;
                }
                Err(v) => cur = v,
            }
        }
    }

    /// Records `pages` of `group` (charged by the caller) in place of what was recorded,
    /// which is returned for the caller to uncharge. A record that becomes `group`'s
    /// counts a page run charged, as in `add`.
    pub fn replace(&self, group: u32, pages: u64) -> Option<(u32, u64)> {
        crate::os::fault::race_point();
        let old = unpack(self.0.swap(pack(group, pages), Ordering::AcqRel));
        if pages > 0 && old.map_or(true, |(g, _)| g != group) {
            memcg::table::GROUPS.add_stat(group, StatKey::NrCharges, 1);
        }
        crate::os::fault::race_point();
        old
    }

    /// Records `pages` of `group` in an empty record without counting a page run: pages
    /// already charged that change holders (a released span's pages kept by its free
    /// slices, `segment.rs`).
    pub fn put(&self, group: u32, pages: u64) {
        let old = self.0.swap(pack(group, pages), Ordering::AcqRel);
        if old != 0 {
            fatal(&[b"charge record put over another (cgmalloc bug)"]);
        }
    }

    /// Takes the whole record as `(group, pages)`, for a holder that hands the pages on
    /// still charged (`put`, `add`) rather than uncharging them.
    pub fn take_raw(&self) -> Option<(u32, u64)> {
        unpack(self.0.swap(0, Ordering::AcqRel))
    }

    /// Takes the whole record of a holder whose page run ends while its pages stay
    /// charged, as free pages of their next holder (a released span's slices): counted
    /// in `nr_uncharges`, as the run's end.
    pub fn end_run(&self) -> Option<(u32, u64)> {
        let r = self.take_raw();
        if let Some((g, _)) = r {
            memcg::table::GROUPS.add_stat(g, StatKey::NrUncharges, 1);
        }
        r
    }

    /// Takes the whole record: the uncharge owed, with `origin` (its `recorded` filled).
    pub fn take(&self, origin: Origin) -> Option<Uncharge> {
        let (group, pages) = unpack(self.0.swap(0, Ordering::AcqRel))?;
        // Taken and not yet uncharged: a fork here leaves the child an uncharge in flight.
        crate::os::fault::race_point();
        Some(Uncharge {
            group,
            pages,
            origin: Origin {
                recorded: (group, pages),
                ..origin
            },
        })
    }

    /// Lowers the record to at most `keep` pages (`keep ≥ 1`: the run goes on), for a
    /// holder whose other pages went back to the OS: the uncharge owed, if any. Unlike
    /// `take_part` it takes only what is there, so two racing callers take it once.
    pub fn trim_to(&self, keep: u64, origin: Origin) -> Option<Uncharge> {
        debug_assert!(keep >= 1);
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let (group, held) = unpack(cur).filter(|&(_, p)| p > keep)?;
            match self.0.compare_exchange_weak(
                cur,
                pack(group, keep),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    crate::os::fault::race_point();
                    return Some(Uncharge {
                        group,
                        pages: held - keep,
                        origin: Origin {
                            recorded: (group, held),
                            ..origin
                        },
                    });
                }
                Err(v) => cur = v,
            }
        }
    }

    /// Takes `pages` of the record (a block shrinking, a mapping giving pages away): the
    /// uncharge owed. Taking more than is recorded is a bug, and fatal.
    pub fn take_part(&self, pages: u64, origin: Origin) -> Uncharge {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let Some((group, held)) = unpack(cur).filter(|&(_, p)| p >= pages) else {
                fatal(&[b"uncharge of more than a span or mapping recorded (cgmalloc bug)"])
            };
            match self.0.compare_exchange_weak(
                cur,
                pack(group, held - pages),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    crate::os::fault::race_point();
                    return Uncharge {
                        group,
                        pages,
                        origin: Origin {
                            recorded: (group, held),
                            ..origin
                        },
                    };
                }
                Err(v) => cur = v,
            }
        }
    }
}

/// A charge given back, to apply once the holder is consistent and no lock is held.
#[derive(Clone, Copy)]
pub struct Uncharge {
    pub group: u32,
    pub pages: u64,
    /// Who gave it back (named by the fatal line if the counters underflow).
    pub origin: Origin,
}

impl Uncharge {
    /// Returns a page run's charge (counted in `nr_uncharges`).
    pub fn apply(self) {
        memcg::table::GROUPS.add_stat(self.group, StatKey::NrUncharges, 1);
        self.apply_plain();
    }

    /// Returns part of a page run's charge (a shrinking block).
    pub fn apply_plain(self) {
        if self.pages > 0 {
            memcg::charge::uncharge_from(self.group, self.pages, &self.origin);
        }
    }
}

/// Most uncharges an `Owed` holds: one per slice of a segment.
pub const OWED_MAX: usize = 64;

/// Free pages given back while a segment or the segment cache was held, to uncharge once
/// no lock is held (an uncharge may signal thresholds and free a dying group): one entry
/// a group. No page run ends here (`Uncharge::apply_plain`): the run ended when its span
/// was released (`Charged::end_run`).
///
/// An entry is a group and its pages (16 bytes), and the whole holds one `Origin`, the
/// first given (each names a free slice: the fatal line of an underflow names one of
/// them). So the record is 1 KiB of stack, below the 4 KiB past which a frame is probed
/// page by page: the thread-exit and span-release paths that make one touch no more of
/// a thread's stack than they use (a stack stays resident until its thread is joined).
/// The entries past `n` are left unwritten: making one costs nothing, as it is made on
/// every span release.
pub struct Owed {
    /// The first `n` are written.
    list: [MaybeUninit<(u32, u64)>; OWED_MAX],
    n: usize,
    /// The origin of the first uncharge added (written once `n > 0`).
    origin: MaybeUninit<Origin>,
}

impl Owed {
    pub const fn new() -> Self {
        Owed {
            list: [const { MaybeUninit::uninit() }; OWED_MAX],
            n: 0,
            origin: MaybeUninit::uninit(),
        }
    }

    fn entries(&mut self) -> &mut [(u32, u64)] {
        // SAFETY: the first `n` entries are written (`add_plain`), plain `Copy` values.
        unsafe { core::slice::from_raw_parts_mut(self.list.as_mut_ptr().cast(), self.n) }
    }

    /// Pages of `u.group` given back.
    pub fn add_plain(&mut self, u: Uncharge) {
        if let Some(o) = self.entries().iter_mut().find(|o| o.0 == u.group) {
            o.1 += u.pages;
            return;
        }
        if self.n == OWED_MAX {
            // More groups than a segment has slices: give the oldest back now.
            self.apply();
            self.n = 0;
        }
        if self.n == 0 {
            self.origin.write(u.origin);
        }
        self.list[self.n].write((u.group, u.pages));
        self.n += 1;
    }

    /// Whether one more group could overflow it (a walk over many segments stops there
    /// and applies what it owes).
    pub fn nearly_full(&self) -> bool {
        self.n + 1 >= OWED_MAX
    }

    /// Applies them, with no lock held.
    pub fn apply(&mut self) {
        if self.n == 0 {
            return;
        }
        // SAFETY: written by the first `add_plain` (`n > 0`); `Origin` is `Copy`.
        let origin = unsafe { self.origin.assume_init() };
        for &mut (group, pages) in self.entries() {
            Uncharge {
                group,
                pages,
                origin,
            }
            .apply_plain();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const O: Origin = Origin::plain("test");

    #[test]
    fn a_record_holds_one_group_and_gives_back_what_it_holds() {
        let c = Charged::none();
        assert_eq!(c.get(), None);
        assert_eq!(c.group(), NO_GROUP);
        c.add(7, 16);
        c.add(7, 4);
        assert_eq!(c.get(), Some((7, 20)));
        assert!(c.is_of(7) && !c.is_of(0));
        let u = c.take_part(5, O);
        assert_eq!((u.group, u.pages, u.origin.recorded), (7, 5, (7, 20)));
        assert_eq!(c.get(), Some((7, 15)));
        let u = c.take_part(15, O);
        assert_eq!(u.pages, 15);
        assert_eq!(c.get(), None, "an emptied record names no group");
        c.add(0, 1);
        assert_eq!(c.replace(3, 2), Some((0, 1)));
        let u = c.take(O).unwrap();
        assert_eq!((u.group, u.pages, u.origin.recorded), (3, 2, (3, 2)));
        assert!(c.take(O).is_none(), "taken once");
    }

    #[test]
    fn large_mappings_fit() {
        let c = Charged::none();
        let pages = (crate::alloc::large::LARGE_MAX / 4096) as u64 * 2;
        c.add(8191, pages);
        assert_eq!(c.get(), Some((8191, pages)));
    }
}
