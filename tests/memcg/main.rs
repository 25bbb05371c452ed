//! The accounting engine through the Rust API (`cgmalloc::Group`, `Charge`, the
//! interface files, and `cgmalloc::internals` for the raw charge path): explicit charges
//! only. This binary keeps glibc's malloc as its global allocator, so nothing but the
//! tests' own charges moves the counters. One module per concern:
//!
//! - `api`: the `Group` API and the interface files (formats, paths, threads, peaks,
//!   limits, proactive reclaim, `scope`);
//! - `bad_input`: every malformed path, size string, file name, flag and stale handle is
//!   refused with its errno and changes nothing;
//! - `ladder`: the charge ladder (reclaim order, callbacks, OOM handlers and policies,
//!   exact event counts);
//! - `dying`: destroyed groups, alive until their last uncharge; destroy refusals;
//! - `pressure`: threshold eventfds and `memory.high`;
//! - `rollback`: a refused charge leaves no trace but its `failcnt` and events (I3);
//! - `model`: random operation sequences checked step by step against a model of the
//!   engine (I1, I2, I3, I5, I6);
//! - `stress`: 8 threads of explicit charges over 16 groups with moving limits;
//! - `container`: the container limit read from fixture cgroup trees.
//!
//! The engine's state (group table, per-thread stocks) is process-wide: run these tests
//! with `cargo nextest`, which gives every test a process of its own (see
//! `tests/README.md`).

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
mod stress;

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
