//! The ledger: every page charged to a group is held by exactly one recorder — a span or
//! large mapping of the allocator (its charge record), a thread's stock, or the group's
//! explicit charges — and a group's `usage` is the sum of what is recorded in its subtree
//! (I1, I5).
//!
//! Every recorder follows one rule: a charge updates the counters first and then the
//! record; an uncharge takes the record first and then updates the counters. So at any
//! instant `usage ≥ recorded` on every level, the difference being the charges in flight
//! in some thread, and an observer that uncharges what is recorded can never take a
//! counter below zero.
//!
//! A fork child inherits that difference from threads that do not exist in it: their
//! charges in flight would never complete (a counter held above what anything records, a
//! hierarchy walk half done). `rebuild` sets every counter of the child to what is
//! recorded, before anything else runs there, so the child is exact whatever instant the
//! parent forked at. `audit` compares the two in a quiescent process (`cgm_audit`).
//!
//! The per-group sums go in two static tables (`MAX_GROUPS` words each, untouched until
//! the first rebuild or audit) under `LOCK`, which `fork` takes in its prepare handler.

#![forbid(unsafe_code)]

use super::counter::{Hierarchy, Pages};
use super::table::{DYING, GROUPS, MAX_GROUPS};
use super::threads;
use crate::util::fmtbuf::FmtBuf;
use crate::util::spin::SpinLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Pages recorded for each group itself.
static OWN: [AtomicU64; MAX_GROUPS] = [const { AtomicU64::new(0) }; MAX_GROUPS];
/// Pages recorded in each group's subtree.
static SUM: [AtomicU64; MAX_GROUPS] = [const { AtomicU64::new(0) }; MAX_GROUPS];
static LOCK: SpinLock<()> = SpinLock::new(());

/// The allocator's records: calls its argument with `(group, pages)` for every span and
/// large mapping that holds a charge.
pub type Records<'a> = &'a mut dyn FnMut(&mut dyn FnMut(u32, Pages));

/// A group whose counter is not what is recorded for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub group: u32,
    /// Its counter's `usage`, in pages (0 for a slot not in use).
    pub usage: Pages,
    /// What is recorded in its subtree, in pages.
    pub recorded: Pages,
    /// Of which recorded by the allocator, by stocks, and as explicit charges, for the
    /// group itself.
    pub own: (Pages, Pages, Pages),
}

impl Mismatch {
    /// `group /a/b: memory.current N pages, recorded M (own: A by the allocator, S in
    /// stocks, E explicit)`.
    pub fn describe(&self, out: &mut FmtBuf<'_>) {
        out.push(b"group ");
        if GROUPS.state(self.group) == super::table::FREE {
            out.push(b"(free slot ");
            out.push_u64(self.group as u64);
            out.push(b")");
        } else {
            GROUPS.write_path(self.group, out);
        }
        out.push(b": memory.current ");
        out.push_u64(self.usage);
        out.push(b" pages, recorded ");
        out.push_u64(self.recorded);
        out.push(b" (own: ");
        out.push_u64(self.own.0);
        out.push(b" by the allocator, ");
        out.push_u64(self.own.1);
        out.push(b" in stocks, ");
        out.push_u64(self.own.2);
        out.push(b" explicit)");
    }
}

/// Fills `OWN` and `SUM` (the caller holds `LOCK`) for the slots below the table's
/// bound, and returns the bound.
fn tally(records: Records<'_>) -> usize {
    let bound = (GROUPS.bound() as usize).min(MAX_GROUPS);
    for i in 0..bound {
        OWN[i].store(0, Ordering::Relaxed);
        SUM[i].store(0, Ordering::Relaxed);
    }
    let mut add = |g: u32, pages: Pages| {
        if let Some(w) = OWN.get(g as usize) {
            w.fetch_add(pages, Ordering::Relaxed);
        }
    };
    records(&mut add);
    threads::for_each_stock(&mut add);
    for g in GROUPS.in_use() {
        add(g, GROUPS.slot(g).explicit.load(Ordering::Relaxed));
    }
    for (g, own) in OWN.iter().enumerate().take(bound) {
        let pages = own.load(Ordering::Relaxed);
        if pages == 0 {
            continue;
        }
        let mut cur = Some(g as u32);
        while let Some(a) = cur {
            SUM[a as usize].fetch_add(pages, Ordering::Relaxed);
            cur = GROUPS.parent(a);
        }
    }
    bound
}

/// In a fork child, before anything else runs: every counter becomes what is recorded in
/// its subtree (peaks raised to it if below), and a dying group that holds nothing now is
/// freed. Thresholds are not signalled: their eventfds are shared with the parent.
pub fn rebuild(records: Records<'_>) {
    let _l = LOCK.lock();
    tally(records);
    let mut emptied = [(0u32, 0u64); 64];
    let mut n = 0;
    for g in GROUPS.in_use() {
        let sum = SUM[g as usize].load(Ordering::Relaxed);
        let c = GROUPS.counter(g);
        c.usage.store(sum, Ordering::SeqCst);
        c.raise_watermark(sum);
        if sum == 0 && GROUPS.state(g) == DYING && n < emptied.len() {
            emptied[n] = (g, GROUPS.serial(g));
            n += 1;
        }
    }
    for &(g, serial) in emptied[..n].iter().rev() {
        GROUPS.maybe_free(g, serial);
    }
}

/// Compares every group's counter with what is recorded for it; the first group that
/// differs (or a slot not in use that has pages recorded). Only meaningful while no other
/// thread charges, uncharges or moves a record.
pub fn audit(records: Records<'_>) -> Result<(), Mismatch> {
    let _l = LOCK.lock();
    let bound = tally(records);
    for g in 0..bound as u32 {
        let in_use = GROUPS.state(g) != super::table::FREE;
        let usage = if in_use { GROUPS.counter(g).usage() } else { 0 };
        let recorded = SUM[g as usize].load(Ordering::Relaxed);
        if usage != recorded {
            let mut stock = 0;
            threads::for_each_stock(|sg, p| {
                if sg == g {
                    stock += p;
                }
            });
            let explicit = if in_use {
                GROUPS.slot(g).explicit.load(Ordering::Relaxed)
            } else {
                0
            };
            let own = OWN[g as usize].load(Ordering::Relaxed);
            return Err(Mismatch {
                group: g,
                usage,
                recorded,
                own: (own - stock - explicit, stock, explicit),
            });
        }
    }
    Ok(())
}

/// Takes the ledger's lock for `fork()`.
pub fn lock_for_fork() {
    LOCK.lock_for_fork();
}

pub fn unlock_after_fork() {
    LOCK.force_unlock();
}
