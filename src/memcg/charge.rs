//! The charge path: the kernel's `try_charge`, step by step (DESIGN.md "The charge path").
//!
//! 1. Take the pages from this thread's stock when it caches the group.
//! 2. Charge a batch (`max(32, nr)`) on every level; on refusal, retry with exactly `nr`.
//! 3. On success put the surplus in the stock, check thresholds, and handle `high`.
//! 4. On refusal at `over`: a thread in a reclaim callback or OOM handler forces; a
//!    `NORETRY` charge fails. Otherwise count `max` and make room in the subtree of
//!    `over`, in the order of INTERFACE.md ("Semantics"), retrying as soon as the margin
//!    fits `nr`:
//!    a. the allocator's cached free pages (`reclaim::cache`);
//!    b. every thread's stock, once (`threads::drain_all_stock`);
//!    c. the reclaim callbacks, asked for the shortfall, `usage + nr - max` pages of
//!       `over` and at least `nr` (`reclaim::callbacks`); if they report freeing
//!       anything, the cache again before the margin is measured: what they freed may sit
//!       in the allocator's caches, still charged;
//!    d. retries: the round that drained the stocks earns one (as the kernel's drain
//!       does), then `MAX_RETRIES` more, each refusal running the cache step and the
//!       callbacks (c) again;
//!    e. then `FORCE` charges past `max`, and anything else runs the OOM decision: fail
//!       (`oom_kill` event), force, abort, or retry (at most `MAX_OOM_RETRIES` times,
//!       each with `MAX_RETRIES` rounds again).
//!
//! From the first refusal that makes room (step a) until the charge returns, the thread
//! is in a stall of `memory.pressure` (`pressure::Stall`).
//!
//! No lock is held at any point where a callback can run.

#![forbid(unsafe_code)]

use super::counter::{self, Hierarchy, Pages};
use super::events::Event;
use super::oom::{self, Action};
use super::origin::Origin;
use super::pressure::Stall;
use super::reclaim;
use super::request;
use super::size::PAGE_SIZE;
use super::stock::CHARGE_BATCH;
use super::table::GROUPS;
use super::threads;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Fail fast: stock and counters only (`__GFP_NORETRY`).
pub const NORETRY: u32 = 1;
/// Never fail: charge past `max` after reclaim (`__GFP_NOFAIL`).
pub const FORCE: u32 = 2;

/// Reclaim rounds after the one that drained the stocks (`MEM_CGROUP_RECLAIM_RETRIES`).
pub const MAX_RETRIES: u32 = 5;
/// OOM handler `RETRY` answers honoured for one charge before it fails.
pub const MAX_OOM_RETRIES: u32 = 16;

/// Set from the process's first allocation, when the environment sets the root's limits,
/// until the configuration has been applied (`end_startup`): the charges of the dynamic
/// loader, libc and cgmalloc's own start-up are forced (`FORCE`), so that a small limit
/// cannot fail them, and one that passes a limit counts `max` in `memory.events`.
static STARTING: AtomicBool = AtomicBool::new(false);

/// Start-up charges are forced from now until `end_startup`.
pub fn begin_startup() {
    STARTING.store(true, Ordering::Release);
}

/// The configuration is applied: limits are enforced from the next charge on.
pub fn end_startup() {
    STARTING.store(false, Ordering::Release);
}

/// The charge was refused (`-ENOMEM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoMem;

/// Charges `nr` pages to group `id` for the calling thread.
#[inline]
pub fn try_charge(id: u32, nr: Pages, flags: u32) -> Result<(), NoMem> {
    if nr <= CHARGE_BATCH && threads::consume_stock(id, nr) {
        return Ok(());
    }
    try_charge_slow(id, nr, flags)
}

#[cold]
fn try_charge_slow(id: u32, nr: Pages, flags: u32) -> Result<(), NoMem> {
    // A write requested from outside (`cgmalloc set`) takes effect here, before the
    // charge it may refuse; never from inside a callback or handler.
    if request::pending() && !threads::in_memalloc() {
        request::apply_pending();
    }
    let flags = if STARTING.load(Ordering::Acquire) {
        flags | FORCE
    } else {
        flags
    };
    let mut batch = nr.max(CHARGE_BATCH);
    let mut retries = MAX_RETRIES;
    let mut oom_retries = MAX_OOM_RETRIES;
    let mut drained = false;
    let mut first = true;
    // From the first refusal that makes room, until the charge returns
    // (`memory.pressure`).
    let mut stall = Stall::new();
    loop {
        if !first && nr <= CHARGE_BATCH && threads::consume_stock(id, nr) {
            return Ok(());
        }
        first = false;
        let over = match counter::try_charge(&GROUPS, id, batch) {
            Ok(()) => {
                done_restock(id, nr, batch, flags);
                return Ok(());
            }
            Err(over) => over,
        };
        if batch > nr {
            batch = nr;
            continue;
        }
        if threads::in_memalloc() {
            return force(id, nr);
        }
        GROUPS.count_event(over, Event::Max);
        if flags & NORETRY != 0 {
            return Err(NoMem);
        }
        stall.begin(id);
        let fits = || GROUPS.counter(over).margin() >= nr;
        // a. The allocator's cached free pages: no user code runs.
        reclaim::cache(over, shortfall(over, nr));
        if fits() {
            continue;
        }
        // b. Every thread's stock, once.
        let drain_round = !drained;
        if !drained {
            drained = true;
            threads::drain_all_stock(over);
            if fits() {
                continue;
            }
        }
        // c. The callbacks, for what the charge still lacks. Pages they free may go to
        // the allocator's caches, still charged: uncharge them before measuring.
        if reclaim::callbacks(over, shortfall(over, nr) * PAGE_SIZE) > 0 {
            reclaim::cache(over, shortfall(over, nr));
        }
        // d. The round that drained the stocks retries without using a retry, as the
        // kernel's `drain_all_stock` round does.
        if fits() || drain_round {
            continue;
        }
        // The kernel lets a small charge (`PAGE_ALLOC_COSTLY_ORDER`) retry without using
        // a retry while reclaim makes progress; here progress includes what callbacks
        // say they freed, so every retry counts, and a callback that reports bytes it did
        // not free cannot hold a charge in this loop.
        if retries > 0 {
            retries -= 1;
            continue;
        }
        if flags & FORCE != 0 {
            return force(id, nr);
        }
        GROUPS.count_event(over, Event::Oom);
        match oom::decide(id, over, nr) {
            Action::Retry if oom_retries > 0 => {
                oom_retries -= 1;
                retries = MAX_RETRIES;
                continue;
            }
            Action::Force => return force(id, nr),
            Action::Abort => oom::abort_oom(over, nr),
            Action::Fail | Action::Retry => {
                GROUPS.count_event(over, Event::OomKill);
                return Err(NoMem);
            }
        }
    }
}

/// The pages a charge of `nr` lacks at `over`: `usage + nr - max`, at least `nr` (the
/// usage of `over` may be above its `max` after the limit was lowered or a charge forced).
fn shortfall(over: u32, nr: Pages) -> Pages {
    let c = GROUPS.counter(over);
    c.usage()
        .saturating_add(nr)
        .saturating_sub(c.max.get())
        .max(nr)
}

/// Charges past every limit (`force:` in the kernel).
fn force(id: u32, nr: Pages) -> Result<(), NoMem> {
    counter::charge_force(&GROUPS, id, nr);
    usage_changed(id);
    Ok(())
}

/// After a successful counter charge of `batch` pages for a request of `nr`.
fn done_restock(id: u32, nr: Pages, batch: Pages, flags: u32) {
    if batch > nr {
        threads::refill_stock(id, batch - nr);
    }
    if WARN_LEVELS.load(Ordering::Relaxed) > 0 {
        warn_over_max(id);
    }
    usage_changed(id);
    super::high::after_charge(id, batch, flags & NORETRY != 0 || threads::in_memalloc());
}

/// Groups set to `memory.enforce = warn` (never lowered when such a group is freed):
/// while 0, a charge does not look for them.
static WARN_LEVELS: AtomicU32 = AtomicU32::new(0);

/// `memory.enforce` of `id` is now `mode` (`counter::ENFORCE_*`).
pub fn set_enforce(id: u32, mode: u32) {
    let old = GROUPS.counter(id).enforce.swap(mode, Ordering::Relaxed);
    if mode == counter::ENFORCE_WARN && old != counter::ENFORCE_WARN {
        WARN_LEVELS.fetch_add(1, Ordering::Relaxed);
    } else if old == counter::ENFORCE_WARN && mode != counter::ENFORCE_WARN {
        WARN_LEVELS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// After a charge to `id`: each level in `warn` that it left above `max` counts `max`
/// and `warn`, as if enforced, and says so (`report::warn_over`).
fn warn_over_max(id: u32) {
    let mut cur = Some(id);
    while let Some(g) = cur {
        let c = GROUPS.counter(g);
        if c.enforce.load(Ordering::Relaxed) == counter::ENFORCE_WARN {
            let (usage, max) = (c.usage(), c.max.get());
            if usage > max {
                GROUPS.count_event(g, Event::Max);
                GROUPS.count_event(g, Event::Warn);
                super::report::warn_over(g, b"memory.max", max, usage);
            }
        }
        cur = GROUPS.parent(g);
    }
}

/// Signals the thresholds of `id` and its ancestors after their counters moved.
pub fn usage_changed(id: u32) {
    let mut cur = Some(id);
    while let Some(g) = cur {
        super::threshold::check(g);
        cur = GROUPS.parent(g);
    }
}

/// True if `id` or an ancestor is at or over its `max`: memory freed there should go back
/// rather than be cached (a lowered limit waits for usage to drop).
pub fn at_max(id: u32) -> bool {
    let mut cur = Some(id);
    while let Some(g) = cur {
        if GROUPS.counter(g).margin() == 0 {
            return true;
        }
        cur = GROUPS.parent(g);
    }
    false
}

/// True if pages freed in `id` must go back to the system rather than stay charged as
/// free pages: `id` or an ancestor is at its `max` (`at_max`), or `id` is dying (so that
/// it can be freed once its blocks are).
pub fn keeps_no_free_pages(id: u32) -> bool {
    is_dying(id) || at_max(id)
}

/// True if `id` or an ancestor has a `max` and is within a quarter of it: pages the
/// allocator could keep resident without using them (a slice's tail past a new block)
/// are better given back.
pub fn under_pressure(id: u32) -> bool {
    let mut cur = Some(id);
    while let Some(g) = cur {
        let c = GROUPS.counter(g);
        let max = c.limit();
        if max != counter::UNLIMITED && c.margin() < max / 4 {
            return true;
        }
        cur = GROUPS.parent(g);
    }
    false
}

/// True if `id` was destroyed (its charges go back as their memory is freed).
pub fn is_dying(id: u32) -> bool {
    GROUPS.state(id) != super::table::LIVE
}

/// Returns `nr` pages of `id` to the counters, or to this thread's stock when it caches
/// `id` and `id` is live (a dying group's pages go straight back, so it can be freed).
pub fn uncharge(id: u32, nr: Pages) {
    uncharge_from(id, nr, &Origin::plain("charge"));
}

/// `uncharge` of a charge given back by `origin` (named if the counters underflow).
pub fn uncharge_from(id: u32, nr: Pages, origin: &Origin) {
    if GROUPS.state(id) == super::table::LIVE {
        threads::uncharge_via_stock(id, nr, origin);
    } else {
        GROUPS.uncharge_from(id, nr, origin);
    }
}
