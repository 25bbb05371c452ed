//! The preloadable library from the outside: C programs and real programs run with
//! `LD_PRELOAD=target/release/libcgmalloc.so` (and one C program linked against it).
//!
//! - `conformance`: `tests/c/conformance.c`, the malloc family's contract (INTERFACE.md
//!   "The malloc family"), preloaded, linked, and preloaded under valgrind memcheck;
//! - `misuse`: `tests/c/misuse.c`, double free, foreign and interior pointers die by
//!   `SIGABRT` after exactly one `cgmalloc: fatal: ...` line;
//! - `forks`: `tests/c/forks.c`, `fork()` while other threads allocate, and from two
//!   threads at once, never hangs a child;
//! - `layout`: `tests/c/resident_text.c`, the library's rarely run code stays unmapped
//!   in a process that runs every common path (`link/text.ld`);
//! - `real_programs`: python3, perl, sqlite3, gcc and sort print the same with and without
//!   the library.
//!
//! The library is built by `cargo build --release` (default features, which export
//! `malloc` & co.) before the tests run; these tests only use it. The test binary itself
//! keeps glibc's malloc: nothing here sets `LD_PRELOAD` for this process, only for the
//! programs it starts. Needs `cc`, `nm`, `python3`, `perl`, `sqlite3`, `valgrind` and
//! `sort` on `PATH`; a missing one is a failure, not a skip.

#[path = "../support/mod.rs"]
mod support;

mod conformance;
mod forks;
mod layout;
mod misuse;
mod real_programs;

use std::path::{Path, PathBuf};
use support::programs::CFLAGS;

/// Compiles `tests/c/<source>` into `<dir>/<out>` with `CFLAGS` and `extra` flags.
pub fn compile(dir: &Path, source: &str, out: &str, extra: &[&str]) -> PathBuf {
    let mut after = extra.to_vec();
    after.push("-ldl");
    support::programs::compile_c("cc", dir, format!("tests/c/{source}"), out, &CFLAGS, &after)
}
