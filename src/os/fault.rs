//! Fault injection for tests: makes the next mappings fail with `ENOMEM` as if the kernel
//! refused them, and makes race points yield the CPU, as if the scheduler preempted the
//! thread there.
//!
//! Built only for the crate's own tests (`cfg(test)` or the `internals` feature): one
//! relaxed load on each mapping call or race point when unused. In a build for users
//! `should_fail` is `false` and `race_point` is empty, so neither leaves a trace in the
//! code (`tests/shipped/release_build.rs` checks the shipped library for the statics below).

#![forbid(unsafe_code)]

#[cfg(any(test, feature = "internals"))]
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Whether race points yield (`widen_races`).
#[cfg(any(test, feature = "internals"))]
static WIDEN: AtomicBool = AtomicBool::new(false);

/// Makes every race point yield the CPU (or stops it): a thread reaching one is likely
/// to be preempted there, so that a window the code must tolerate, a few instructions
/// wide otherwise, is open for a whole time slice of the other threads.
#[cfg(any(test, feature = "internals"))]
pub fn widen_races(on: bool) {
    WIDEN.store(on, Ordering::SeqCst);
}

/// A place where a preemption opens a window other threads may use (the code after it
/// must not assume what held before it). Yields when `widen_races` is on.
#[inline(always)]
pub(crate) fn race_point() {
    #[cfg(any(test, feature = "internals"))]
    if WIDEN.load(Ordering::Relaxed) {
        super::yield_now();
    }
}

/// Mappings left to succeed before failures start; negative means "never fail".
#[cfg(any(test, feature = "internals"))]
static BUDGET: AtomicI64 = AtomicI64::new(-1);

/// Lets `ok` more mappings succeed, then fails every one until [`clear`].
#[cfg(any(test, feature = "internals"))]
pub fn fail_after(ok: u64) {
    BUDGET.store(ok as i64, Ordering::SeqCst);
}

/// Stops injecting failures.
#[cfg(any(test, feature = "internals"))]
pub fn clear() {
    BUDGET.store(-1, Ordering::SeqCst);
}

/// Consumes one unit of budget; true when this mapping must fail.
#[inline(always)]
pub(crate) fn should_fail() -> bool {
    #[cfg(any(test, feature = "internals"))]
    {
        if BUDGET.load(Ordering::Relaxed) < 0 {
            return false;
        }
        let prev = BUDGET.fetch_sub(1, Ordering::SeqCst);
        if prev <= 0 {
            BUDGET.store(0, Ordering::SeqCst);
            return true;
        }
    }
    false
}
