//! Reclaim: making room in a group that hit a limit, the kernel's
//! `try_to_free_mem_cgroup_pages` rebuilt over what a process can give back.
//!
//! Two steps, over the subtree of the group that is over its limit:
//! 1. `cache`: the allocator's own cached free page runs (empty spans, cached large
//!    mappings, live mappings' slack; a hook installed by the allocator at start). Cheap,
//!    and no user code runs.
//! 2. `callbacks`: the reclaim callbacks registered on the group and its descendants,
//!    the group with the largest excess over its soft limit first, skipping groups within
//!    a non-zero `min` (`usage ≤ min`), and groups within a non-zero `low` unless nothing
//!    else gave enough (a `low` event counts each such group called).
//!
//! The charge path at `max` runs them apart, with every thread's stock drained between
//! them (INTERFACE.md "Semantics"; charge.rs). `reclaim(id, want)`, for `memory.high`
//! after a charge and for the `memory.max`, `memory.high` and `memory.reclaim` writes,
//! runs the cache, then the callbacks for what is still wanted, then, if the callbacks
//! reported freeing anything, the cache again: what a callback frees may sit in the
//! allocator's caches still charged (an emptied span or a freed mapping may be kept
//! rather than returned), and only the cache step uncharges it.
//!
//! Callbacks run in the calling thread with no lock held and with its charges forced
//! (`with_memalloc`), each told the bytes still wanted; they return the bytes they freed.
//! A thread already in memalloc does not reclaim (no recursion).

#![forbid(unsafe_code)]

use super::callbacks;
use super::counter::{Hierarchy, Pages};
use super::events::{Event, StatKey};
use super::size::PAGE_SIZE;
use super::table::GROUPS;
use super::threads;
use crate::util::hook::Hook;
use std::sync::atomic::Ordering;

/// `fn(group id, pages wanted) -> pages uncharged` freeing the allocator's cached spans.
pub type CacheReclaimFn = fn(u32, Pages) -> Pages;

static CACHE_RECLAIM: Hook<CacheReclaimFn> = Hook::new();

/// Installs the allocator's cache reclaimer (once, at start).
pub fn set_cache_reclaim(f: CacheReclaimFn) {
    CACHE_RECLAIM.install(f);
}

/// The cache step: asks the allocator to uncharge `want` pages of its cached free pages
/// in the subtree of `id` (it may uncharge more, or less when it holds less); returns
/// the pages uncharged.
pub fn cache(id: u32, want: Pages) -> Pages {
    if threads::in_memalloc() || want == 0 {
        return 0;
    }
    CACHE_RECLAIM.get().map_or(0, |f| f(id, want))
}

/// What one `reclaim` call achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Pages of the allocator's cache uncharged before the callbacks ran.
    pub cache_pages: Pages,
    /// Bytes the callbacks reported freed.
    pub callback_bytes: u64,
    /// Pages of the allocator's cache uncharged after the callbacks, mostly what they
    /// freed into it.
    pub after_pages: Pages,
}

impl Reclaimed {
    /// The bytes freed: the first cache step, and the larger of what the callbacks
    /// reported and what the cache step after them uncharged (pages a callback freed
    /// into the cache are counted once).
    pub fn bytes(&self) -> u64 {
        self.cache_pages * PAGE_SIZE + self.callback_bytes.max(self.after_pages * PAGE_SIZE)
    }
    pub fn any(&self) -> bool {
        self.bytes() > 0
    }
}

/// Reclaims up to `want` bytes from the subtree of `id`: the cache, the callbacks for
/// the rest, and the cache again if the callbacks freed anything.
pub fn reclaim(id: u32, want: u64) -> Reclaimed {
    let mut got = Reclaimed::default();
    if threads::in_memalloc() || want == 0 {
        return got;
    }
    got.cache_pages = cache(id, want.div_ceil(PAGE_SIZE));
    let rest = want.saturating_sub(got.cache_pages * PAGE_SIZE);
    if rest == 0 {
        return got;
    }
    got.callback_bytes = callbacks(id, rest);
    if got.callback_bytes > 0 {
        got.after_pages = cache(id, rest.div_ceil(PAGE_SIZE));
    }
    got
}

/// The callback step: calls the reclaim callbacks of the subtree of `id` in reclaim
/// order until they report `want` bytes freed or none is left to call; returns the bytes
/// they reported freed.
pub fn callbacks(id: u32, want: u64) -> u64 {
    let mut got = 0u64;
    if threads::in_memalloc() || want == 0 {
        return got;
    }
    for include_low in [false, true] {
        let pass = callbacks::new_pass();
        while got < want {
            let Some(held) = callbacks::pick_reclaimer(pass, |h| rank(h, id, include_low)) else {
                break;
            };
            let gid = (held.group() & 0xffff) as u32;
            if include_low {
                GROUPS.count_event(gid, Event::Low);
            }
            let wanted = want - got;
            // The callback's reference goes back inside too: its drop may drop the
            // callback (removed meanwhile), the program's code.
            let freed = threads::with_memalloc(|| {
                let f = held.call_reclaim(wanted as usize);
                drop(held);
                f
            });
            // `pick_reclaimer` hands out reclaim callbacks only.
            let freed = freed.unwrap_or(0);
            GROUPS.add_stat(gid, StatKey::ReclaimCalls, 1);
            GROUPS.add_stat(gid, StatKey::Reclaimed, freed as u64);
            got = got.saturating_add(freed as u64);
        }
        if got >= want {
            break;
        }
    }
    got
}

/// The rank of a registration on group `handle` when reclaiming the subtree of `root`:
/// its excess over the soft limit, or `None` when it is outside the subtree or protected.
fn rank(handle: u64, root: u32, include_low: bool) -> Option<u64> {
    let gid = (handle & 0xffff) as u32;
    if GROUPS.handle(gid) != handle || !GROUPS.is_descendant(gid, root) {
        return None;
    }
    let c = GROUPS.counter(gid);
    let usage = c.usage();
    // Within a protection means `usage <= protection` for a non-zero protection. A group
    // without protection is always called, even with no usage of its own: its cache may
    // be charged to another group of the subtree.
    let under = |p: u64| p > 0 && usage <= p;
    if under(c.min.load(Ordering::Relaxed)) {
        return None;
    }
    // The first pass calls groups above `low`, the second only those it skipped.
    if include_low != under(c.low.load(Ordering::Relaxed)) {
        return None;
    }
    Some(usage.saturating_sub(c.soft_limit.get()))
}
