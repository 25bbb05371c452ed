//! Configuring a program from the outside:
//!
//! - `cli`: the launcher `cgmalloc run` (exit status, signals, `LD_PRELOAD`, options
//!   turned into `CGMALLOC_*` variables, malformed invocations, `--help`, `--stats`);
//! - `env`: the `CGMALLOC_*` environment as the library reads it before `main` (through
//!   `tests/c/envprobe.c`, linked against the library), valid and malformed values;
//! - `enforce`: `memory.enforce` on, warn and off (`tests/c/enforce.c`), set through
//!   `--group`, `--enforce` and refused when malformed;
//! - `footprint`: `memory.max` bounds the process's real footprint and `memory.current`
//!   is what it holds (`tests/c/phases.c`), little is charged before `main`;
//! - `report`: `cgmalloc run --stats`, one report for every process of the run (a shim
//!   that forks before it execs, `make -j2`, a process that closes its descriptors or hits
//!   a limit, `N%` of `MemTotal`);
//! - `inspect`: `cgmalloc ps` and `cgmalloc stat` read a running program's groups from
//!   outside (`tests/c/watched.c`, a Python program, bad targets, an unknown layout);
//! - `pressure`: `memory.pressure` of a program stalled in `memory.high`'s throttle
//!   (`tests/c/stalled.c`) read from outside by `stat` (JSON, text, Prometheus) and `top`
//!   against what the program read of itself, and in the `--stats` report.
//!
//! Both use `target/release/` (the launcher and `libcgmalloc.so`), which
//! `cargo build --release` builds before the tests; this binary keeps glibc's malloc.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod enforce;
mod env;
mod footprint;
mod inspect;
mod pressure;
mod report;
