//! What the allocator tells the accounting engine: its statistics (`memory.stat`'s
//! `allocated`, `small`, `large`, `cached`, `free`, and the root's `meta`), its charge
//! records for the ledger, and its free pages for reclaim (empty spans, free slices,
//! freed large mappings and live mappings' slack, all still charged), through the hooks
//! `memcg` calls.
//!
//! They walk the global segment list and the segment cache, so nothing is counted on the
//! fast path. Reclaim releases the calling thread's own empty spans to their segments,
//! then purges the free slices of every segment (under each one's claim, or the cache
//! lock); other threads' cached spans and mappings are purged in place under their cache
//! lock (state `PURGED`, charge returned). The uncharges are applied after every lock is
//! dropped. A span is purged only after the reclaimer won it with `CACHED -> PURGING` (its
//! owner may take a parked span back without the lock: the state protocol in `span`).
//!
//! The walks hold the segment-list lock only, so owners format, reset and release spans
//! meanwhile: they read only descriptor fields that are atomics (`state`, `heap`,
//! `class`, `block_size`, `used`, `thread_free`, the charge record; a heap's `tld`).
//! Statistics taken while other threads allocate see each span as it was at some
//! instant of the walk, not every span at one instant.

use super::charged::{Uncharge, NO_GROUP};
use super::large::SLACK_BUSY;
use super::tld;
use super::types::{Segment, Span, State, KIND_LARGE, MEDIUM, SLICES};
use crate::memcg::files::AllocStats;
use crate::memcg::table::{GROUPS, ROOT};
use crate::os::mem::PAGE_SIZE;
use std::sync::atomic::Ordering;

/// Installs the hooks (idempotent).
pub fn install() {
    crate::memcg::files::set_alloc_stats(stats);
    crate::memcg::reclaim::set_cache_reclaim(reclaim);
}

fn stats(root: u32) -> AllocStats {
    let mut a = AllocStats::default();
    let inside = |g: u32| g != NO_GROUP && GROUPS.is_descendant(g, root);
    Segment::for_each(|sg| {
        if sg.kind.load(Ordering::Relaxed) == KIND_LARGE {
            let m = &sg.large;
            let Some((_, pages)) = m.charged.get().filter(|&(g, _)| inside(g)) else {
                return;
            };
            let bytes = pages * PAGE_SIZE as u64;
            let slack = (m.slack.load(Ordering::Relaxed) & !SLACK_BUSY) as u64;
            a.large += bytes;
            if m.state.load(Ordering::Relaxed) == State::Cached {
                a.cached += bytes;
            } else {
                a.cached += slack;
                a.allocated += bytes.saturating_sub(slack);
            }
            return;
        }
        for i in 1..SLICES {
            let s = &sg.spans[i];
            let Some((_, pages)) = s.charged.get().filter(|&(g, _)| inside(g)) else {
                continue;
            };
            let bytes = pages * PAGE_SIZE as u64;
            let st = s.state.load(Ordering::Relaxed);
            if st == State::Free {
                // A free slice's pages, left by a released span.
                a.free += bytes;
                continue;
            }
            if s.class() == MEDIUM {
                // A medium block is charged to the page, as a large mapping is.
                a.large += bytes;
            } else {
                a.small += bytes;
            }
            let live = s
                .used
                .load(Ordering::Relaxed)
                .saturating_sub(s.remote_count());
            if st == State::Cached
                || st == State::Parked
                || st == State::Purging
                || (s.class() == MEDIUM && live == 0)
            {
                // An empty span kept (a medium one whose block another thread freed is
                // empty too, until its owner collects it).
                a.cached += bytes;
            }
            a.allocated += live as u64 * s.block_size() as u64;
        }
    });
    Segment::for_each_cached(|sg| {
        for s in &sg.spans[1..] {
            if let Some((_, pages)) = s.charged.get().filter(|&(g, _)| inside(g)) {
                a.free += pages * PAGE_SIZE as u64;
            }
        }
    });
    a.free += a.cached;
    if root == ROOT {
        a.meta = meta_bytes();
    }
    a
}

/// The allocator's own metadata, resident and charged to no group (`meta` in the root's
/// `memory.stat`): every span segment's header (its descriptors and live map, counted
/// whole: an upper bound), a page of header per large mapping, and the pools of thread
/// states and heaps.
fn meta_bytes() -> u64 {
    let header = crate::os::mem::page_ceil(core::mem::size_of::<Segment>()).unwrap_or(0) as u64;
    let mut bytes = super::thread::pool_bytes() as u64;
    Segment::for_each(|sg| {
        bytes += if sg.kind.load(Ordering::Relaxed) == KIND_LARGE {
            PAGE_SIZE as u64
        } else {
            header
        };
    });
    Segment::for_each_cached(|_| bytes += header);
    bytes
}

/// The allocator's charge records, for the ledger (`memcg::ledger`): `(group, pages)` of
/// every span, free slice and large mapping that holds a charge.
pub fn records(f: &mut dyn FnMut(u32, u64)) {
    let slices = |sg: &Segment, f: &mut dyn FnMut(u32, u64)| {
        for s in &sg.spans[1..] {
            if let Some((g, pages)) = s.charged.get() {
                f(g, pages);
            }
        }
    };
    Segment::for_each(|sg| {
        if sg.kind.load(Ordering::Relaxed) == KIND_LARGE {
            if let Some((g, pages)) = sg.large.charged.get() {
                f(g, pages);
            }
            return;
        }
        slices(sg, f);
    });
    Segment::for_each_cached(|sg| slices(sg, f));
}

/// Compares every group's counter with what the allocator, the stocks and the explicit
/// charges record for it (`memcg::ledger::audit`). Only meaningful while no other thread
/// allocates, frees or charges.
pub fn audit() -> Result<(), crate::memcg::ledger::Mismatch> {
    crate::memcg::ledger::audit(&mut |f| records(f))
}

const BATCH: usize = 64;

/// Frees up to `want` pages of the allocator's free pages charged in the subtree of
/// `root`: exited threads' retired states are abandoned (`retired.rs`) and the calling
/// thread's empty spans go back to their segments, then the free slices of every
/// segment (listed or cached) are purged, then other threads' cached spans and
/// mappings.
fn reclaim(root: u32, want: u64) -> u64 {
    // Exited threads' retired states first: their empty spans (remote frees they did
    // not collect included) are released, their free slices purged below.
    super::thread::expire_retired(true);
    own_thread(root);
    let inside = |g: u32| GROUPS.is_descendant(g, root);
    let mut got = Segment::purge_listed_free(inside);
    if got < want {
        got += Segment::purge_cached_free(inside);
    }
    while got < want {
        let mut owed = [None; BATCH];
        let n = purge_cached(root, &mut owed);
        for (u, part) in owed[..n].iter().flatten() {
            if *part {
                u.apply_plain();
            } else {
                u.apply();
            }
            got += u.pages;
        }
        if n < BATCH {
            break;
        }
    }
    got
}

/// Releases the calling thread's empty spans in the subtree to their segments (as free
/// slices, still charged, for the purge that follows); its heaps of destroyed groups go
/// idle.
fn own_thread(root: u32) {
    let t = tld::current();
    if t.is_null() {
        return;
    }
    // SAFETY: this thread's live state; its heaps are ours.
    let mut h = unsafe { (*t).heaps };
    while !h.is_null() {
        // SAFETY: as above.
        let heap = unsafe { &mut *h };
        if GROUPS.is_descendant(heap.group, root) {
            if crate::memcg::charge::is_dying(heap.group) {
                // A destroyed group's heap: nothing is allocated in it any more, so it
                // keeps no direct span, and its spans go back as their blocks are freed.
                heap.go_idle();
            } else {
                heap.trim();
            }
        }
        h = heap.next;
    }
}

/// Purges other threads' cached spans and mappings in the subtree (at most `BATCH`),
/// recording the uncharges owed, taken from their records (with whether each is part of
/// a page run: a live block's slack); returns how many.
fn purge_cached(root: u32, owed: &mut [Option<(Uncharge, bool)>; BATCH]) -> usize {
    let mut n = 0;
    Segment::for_each(|sg| {
        if n == BATCH {
            return;
        }
        if sg.kind.load(Ordering::Relaxed) == KIND_LARGE {
            let m = &sg.large;
            if m.state.load(Ordering::Relaxed) == State::Active {
                // A live block's slack. The list lock keeps the mapping (a free waits
                // for the purge before it can unmap it). The group is read under the
                // slack's busy flag: a mapping taken from the cache changes group before
                // it publishes its slack.
                if let Some(u) = m.purge_slack(|g| GROUPS.is_descendant(g, root)) {
                    owed[n] = Some((u, true));
                    n += 1;
                }
                return;
            }
            let t = m.cache_tld.load(Ordering::Relaxed);
            if m.state.load(Ordering::Relaxed) != State::Cached || t.is_null() {
                return;
            }
            // SAFETY: thread states live in never-unmapped pool memory (their lock word
            // survives recycling).
            let _g = unsafe { (*t).lock_cache() };
            // Still in the cache of the thread whose lock is held: that thread may have
            // taken it out and another cached it since the look above.
            if m.state.load(Ordering::Acquire) == State::Cached
                && m.cache_tld.load(Ordering::Relaxed) == t
                && GROUPS.is_descendant(m.charged.group(), root)
            {
                // SAFETY: a cached mapping's block, unused, under the lock of the cache
                // holding it: no one else touches it meanwhile.
                unsafe { crate::os::mem::purge(m.data, m.usable) };
                if let Some(u) = m.charged.take(m.origin_now()) {
                    owed[n] = Some((u, false));
                    n += 1;
                }
                m.state.store(State::Purged, Ordering::Relaxed);
            }
            return;
        }
        for i in 1..SLICES {
            if n == BATCH {
                return;
            }
            let s = &sg.spans[i];
            let st = s.state.load(Ordering::Relaxed);
            if st != State::Cached && st != State::Parked {
                continue;
            }
            let heap = s.heap();
            if heap.is_null() {
                continue;
            }
            // SAFETY: heaps and thread states live in never-unmapped pool memory.
            let tld = unsafe { (*heap).tld() };
            if tld.is_null() {
                // A heap being recycled (zeroed before its new thread sets it up).
                continue;
            }
            // SAFETY: as above.
            let _g = unsafe { (*tld).lock_cache() };
            if s.heap() != heap || !win(s, st) {
                continue;
            }
            // Ours until we leave `PURGING`: its fields are stable. Purge it only if it is
            // the span of the thread whose lock we hold, in the subtree.
            if s.heap() != heap
                // SAFETY: as above.
                || unsafe { (*heap).tld() } != tld
                || !GROUPS.is_descendant(s.group(), root)
            {
                give_back(s, st);
                continue;
            }
            // SAFETY: an empty span we hold in `PURGING`: its owner does not use it until
            // it reads `PURGED`.
            unsafe { crate::os::mem::purge(s.start, s.bytes()) };
            if let Some(u) = s.take_charge() {
                owed[n] = Some((u, false));
                n += 1;
            }
            // The owner may reuse it (charging it afresh) once it reads this.
            s.state.store(State::Purged, Ordering::Release);
        }
    });
    n
}

/// Takes an empty span seen in state `st` (`CACHED` or `PARKED`) for purging, with its
/// owner's cache lock held: true if it is now `PURGING` and ours. A `PARKED` span its
/// owner may take with plain stores (`medium::plain_take`): after the swap a process
/// memory barrier makes the owner's `taking` flag visible if it read the state before
/// our swap, and we wait for it to finish and see whether it wrote `ACTIVE` over ours.
fn win(s: &Span, st: State) -> bool {
    if s.state
        .compare_exchange(st, State::Purging, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    if st != State::Parked || !super::medium::plain_take() {
        return true;
    }
    let _errno = crate::os::ErrnoGuard::new();
    if crate::os::membarrier().is_err() {
        give_back(s, st);
        return false;
    }
    while s.taking.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    s.state.load(Ordering::Acquire) == State::Purging
}

/// Returns a span won by `win` unpurged, to state `st` (unless its owner took it).
fn give_back(s: &Span, st: State) {
    let _ = s
        .state
        .compare_exchange(State::Purging, st, Ordering::Release, Ordering::Relaxed);
}

/// `malloc_trim`: returns the calling thread's empty spans and free slices, every cached
/// mapping's pages and every cached segment to the kernel; true if anything was released.
pub fn trim() -> bool {
    let mut any = reclaim(crate::memcg::table::ROOT, u64::MAX) > 0;
    let t = tld::current();
    if !t.is_null() {
        // SAFETY: this thread's live state.
        super::remote::flush(unsafe { &mut *t });
        // SAFETY: as above.
        unsafe { (*t).purge_all() };
    }
    any |= Segment::release_cached();
    any
}
