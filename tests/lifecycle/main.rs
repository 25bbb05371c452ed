//! C programs whose threads allocate in groups while lifecycle events race with them:
//!
//! - `matrix`: the lifecycle matrix, `tests/c/lifecycle.c` once per cell (where the
//!   threads allocate × block sizes × the event: `fork()` with three kinds of child,
//!   thread exit, `malloc_trim`, `memory.reclaim`, lowering `memory.max`, destroying
//!   groups), every group back at exactly 0 and `cgm_audit` passing at the end;
//! - `fork_storm`: `tests/c/fork_storm.c`, fork() from programs whose threads allocate
//!   in non-root groups: no child may be lost.
//!
//! The programs are linked against `target/release/libcgmalloc.so` or preloaded with it
//! (`cargo build --release` builds it before the tests); this binary keeps glibc's
//! malloc. `CGMALLOC_SOAK=1` turns both into soaks (`scripts/test.sh` runs them so,
//! one test at a time, with the `soak` profile of `.config/nextest.toml`).

#[path = "../support/mod.rs"]
mod support;

mod fork_storm;
mod matrix;
