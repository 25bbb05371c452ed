//! Reclaim: making room in a group that hit a limit, the kernel's
//! `try_to_free_mem_cgroup_pages` rebuilt over what a process can give back.
//!
//! Order (INTERFACE.md "Semantics"):
//! 1. the allocator's own cached empty page runs in the subtree (a hook installed by the
//!    allocator at start);
//! 2. reclaim callbacks registered on the over-limit group and its descendants, the group
//!    with the largest excess over its soft limit first, skipping groups within a
//!    non-zero `min` (`usage ≤ min`), and groups within a non-zero `low` unless nothing
//!    else gave enough (a `low` event counts each such group called).
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

fn reclaim_cache(id: u32, want: Pages) -> Pages {
    CACHE_RECLAIM.get().map_or(0, |f| f(id, want))
}

/// Gives back every free page the allocator holds charged in the subtree of `id` (its
/// cache only: no callback runs), e.g. for a group being destroyed.
pub fn release_free(id: u32) -> Pages {
    reclaim_cache(id, Pages::MAX)
}

/// What one reclaim call achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Pages of the allocator's cache uncharged.
    pub cache_pages: Pages,
    /// Bytes the callbacks reported freed.
    pub callback_bytes: u64,
}

impl Reclaimed {
    pub fn bytes(&self) -> u64 {
        self.cache_pages * PAGE_SIZE + self.callback_bytes
    }
    pub fn any(&self) -> bool {
        self.bytes() > 0
    }
}

/// Reclaims up to `want` bytes from the subtree of `id`.
pub fn reclaim(id: u32, want: u64) -> Reclaimed {
    let mut got = Reclaimed::default();
    if threads::in_memalloc() || want == 0 {
        return got;
    }
    got.cache_pages = reclaim_cache(id, want.div_ceil(PAGE_SIZE));
    if got.bytes() >= want {
        return got;
    }
    for include_low in [false, true] {
        let pass = callbacks::new_pass();
        while got.bytes() < want {
            let Some(held) = callbacks::pick_reclaimer(pass, |h| rank(h, id, include_low)) else {
                break;
            };
            let gid = (held.group() & 0xffff) as u32;
            if include_low {
                GROUPS.count_event(gid, Event::Low);
            }
            let wanted = want - got.bytes();
            let freed = threads::with_memalloc(|| held.call_reclaim(wanted as usize));
            drop(held);
            // `pick_reclaimer` hands out reclaim callbacks only.
            let freed = freed.unwrap_or(0);
            GROUPS.add_stat(gid, StatKey::ReclaimCalls, 1);
            GROUPS.add_stat(gid, StatKey::Reclaimed, freed as u64);
            got.callback_bytes += freed as u64;
        }
        if got.bytes() >= want {
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
