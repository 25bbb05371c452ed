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

use super::callbacks::{self, Func};
use super::counter::{Hierarchy, Pages};
use super::events::{self, Event, StatKey};
use super::size::PAGE_SIZE;
use super::table::GROUPS;
use super::threads;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `fn(group id, pages wanted) -> pages uncharged` freeing the allocator's cached spans.
pub type CacheReclaimFn = fn(u32, Pages) -> Pages;

static CACHE_RECLAIM: AtomicUsize = AtomicUsize::new(0);

/// Installs the allocator's cache reclaimer (once, at start).
pub fn set_cache_reclaim(f: CacheReclaimFn) {
    CACHE_RECLAIM.store(f as usize, Ordering::Release);
}

fn reclaim_cache(id: u32, want: Pages) -> Pages {
    let f = CACHE_RECLAIM.load(Ordering::Acquire);
    if f == 0 {
        return 0;
    }
    // SAFETY: the only non-zero value ever stored is a `CacheReclaimFn`.
    let f: CacheReclaimFn = unsafe { core::mem::transmute::<usize, CacheReclaimFn>(f) };
    f(id, want)
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
            let Func::Reclaim(f) = held.func else { break };
            let gid = (held.group & 0xffff) as u32;
            if include_low {
                events::count(gid, Event::Low);
            }
            let wanted = want - got.bytes();
            let ctx = held.ctx;
            let group = held.group;
            // SAFETY: `f` and `ctx` were registered together as a `cgm_reclaim_fn` and its
            // context, which the registrant made callable from any thread; `held` keeps the
            // registration alive for the call.
            let freed = threads::with_memalloc(|| unsafe { f(ctx, group, wanted as usize) });
            drop(held);
            events::add_stat(gid, StatKey::ReclaimCalls, 1);
            events::add_stat(gid, StatKey::Reclaimed, freed as u64);
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
