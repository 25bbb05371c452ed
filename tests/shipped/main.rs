//! What ships beside the library, run as a user would:
//!
//! - `examples`: the Rust and C examples, each exiting 0 and printing what it
//!   demonstrates;
//! - `release_build`: the library `cargo build --release` makes has no fault injection;
//! - `bench_harness`: the benchmark harness (`benches/run.py --quick`) as a smoke test;
//! - `layers`: the source's layer graph, as DESIGN.md's `layers` block lists it.
//!
//! They use what `scripts/test.sh` builds first (`cargo build --release`, and the
//! examples with `--no-default-features`); this binary keeps glibc's malloc.

#[path = "../support/mod.rs"]
mod support;

mod bench_harness;
mod examples;
mod layers;
mod release_build;
