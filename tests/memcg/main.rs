//! The accounting engine through the Rust API (`cgmalloc::Group`, `Charge`, the
//! interface files, and `cgmalloc::internals` for the raw charge path): explicit charges
//! only. This binary keeps glibc's malloc as its global allocator, so nothing but the
//! tests' own charges moves the counters. One module per concern:
//!
//! - `api`: the `Group` API and the interface files (formats, paths, threads, peaks,
//!   limits, proactive reclaim, `scope`);
//! - `bad_input`: every malformed path, size string, file name, flag and stale handle is
//!   refused with its errno and changes nothing;
//! - `ladder`: the charge ladder (the order at `max`: cache, stocks, callbacks asked for
//!   the shortfall, retries; reclaim order among callbacks, OOM handlers and policies,
//!   exact event counts);
//! - `dying`: destroyed groups, alive until their last uncharge; destroy refusals;
//! - `pressure`: threshold eventfds and `memory.high` (reclaim before the throttle, the
//!   throttle's curve);
//! - `stall`: `memory.pressure` (stall shares, `full`, decay) and its triggers;
//! - `rollback`: a refused charge leaves no trace but its `failcnt` and events (I3);
//! - `model`: random operation sequences checked step by step against a model of the
//!   engine (I1, I2, I3, I5, I6);
//! - `stress`: 8 threads of explicit charges over 16 groups with moving limits;
//! - `container`: the container limit read from fixture cgroup trees.
//!
//! `fake_cache` below stands in for the allocator's cache in the tests of the cache step.
//!
//! The engine's state (group table, per-thread stocks, the cache hook) is process-wide:
//! run these tests with `cargo nextest`, which gives every test a process of its own
//! (see `tests/README.md`).

#[path = "../support/mod.rs"]
mod support;

mod api;
mod bad_input;
mod container;
mod dying;
mod ladder;
mod model;
mod pressure;
mod rollback;
mod stall;
mod stress;

/// A stand-in for the allocator's cache of free pages, still charged, for the tests of
/// the cache step that runs after reclaim callbacks (`reclaim::cache`). This binary never
/// starts the allocator, so the hook it would install is free: `install` puts this one
/// in its place, for the test's process.
mod fake_cache {
    use cgmalloc::internals::memcg::reclaim;
    use cgmalloc::Charge;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    static CACHED: Mutex<Vec<Charge>> = Mutex::new(Vec::new());
    static CALLS: AtomicUsize = AtomicUsize::new(0);

    /// Installs the stand-in as the cache hook; fails if another hook was there first.
    pub fn install() {
        reclaim::set_cache_reclaim(take_all);
        let before = calls();
        // The hook answers whoever installed it first: make sure it is this one.
        reclaim::cache(0, 1);
        assert_eq!(calls(), before + 1, "the cache hook is not the stand-in");
    }

    /// Keeps `c` charged in the cache, as an allocator keeps a freed span.
    pub fn put(c: Charge) {
        CACHED.lock().unwrap().push(c);
    }

    /// Bytes in the cache.
    pub fn held() -> u64 {
        CACHED.lock().unwrap().iter().map(|c| c.bytes()).sum()
    }

    /// Times the cache step ran.
    pub fn calls() -> usize {
        CALLS.load(Ordering::SeqCst)
    }

    /// The hook: uncharges everything cached, whatever the group and the pages wanted.
    fn take_all(_group: u32, _want: u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        let taken = std::mem::take(&mut *CACHED.lock().unwrap());
        let pages = taken.iter().map(|c| c.bytes().div_ceil(4096)).sum();
        drop(taken);
        pages
    }
}

/// A group's `memory.events`, in file order: low, high, max, oom, oom_kill.
fn events(g: cgmalloc::Group) -> [u64; 5] {
    let s = g.stat().unwrap();
    [
        s.events_low,
        s.events_high,
        s.events_max,
        s.events_oom,
        s.events_oom_kill,
    ]
}
