//! Fault injection for tests: makes the next mappings fail with `ENOMEM` as if the kernel
//! refused them, makes race points yield the CPU, as if the scheduler preempted the
//! thread there, parks a chosen remote push just after it has published its blocks, and
//! refuses to retire exiting threads' states.
//!
//! Built only for the crate's own tests (`cfg(test)` or the `internals` feature): one
//! relaxed load on each mapping call, race point or retirement when unused. In a build
//! for users `should_fail` and `retirement_refused` are `false` and `race_point`,
//! `published` and `waiting_for_pushes` are empty, so none leaves a trace in the code
//! (`tests/shipped/release_build.rs` checks the shipped library for the statics below).

#![forbid(unsafe_code)]

#[cfg(any(test, feature = "internals"))]
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

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

/// The block whose push is to park (`park_push_of`), 0 for none; and whether it has.
#[cfg(any(test, feature = "internals"))]
static PARK_AT: AtomicUsize = AtomicUsize::new(0);
#[cfg(any(test, feature = "internals"))]
static PARKED: AtomicBool = AtomicBool::new(false);

/// Makes the thread that pushes the block `p` onto another thread's span stop just after
/// the push has published it (`published`), until `release_parked_push`: the window in
/// which the span's owner may collect the block and reuse the span under the pusher
/// stays open for as long as a test needs.
#[cfg(any(test, feature = "internals"))]
pub fn park_push_of(p: *mut u8) {
    PARKED.store(false, Ordering::SeqCst);
    PARK_AT.store(p as usize, Ordering::SeqCst);
}

/// Whether the push `park_push_of` named is parked.
#[cfg(any(test, feature = "internals"))]
pub fn push_parked() -> bool {
    PARKED.load(Ordering::SeqCst)
}

/// Lets the parked push go on (or disarms the parking).
#[cfg(any(test, feature = "internals"))]
pub fn release_parked_push() {
    PARK_AT.store(0, Ordering::SeqCst);
}

/// The race point just after a remote push of the chain whose head is `head` has
/// published it: yields as every race point does, and parks the push `park_push_of`
/// names.
#[inline(always)]
pub(crate) fn published(head: usize) {
    race_point();
    #[cfg(any(test, feature = "internals"))]
    if PARK_AT.load(Ordering::Relaxed) == head {
        PARKED.store(true, Ordering::SeqCst);
        while PARK_AT.load(Ordering::SeqCst) == head {
            super::yield_now();
        }
    }
    let _ = head;
}

/// How many times `malloc_trim` has begun to wait for pushes in flight.
#[cfg(any(test, feature = "internals"))]
static PUSH_WAITS: AtomicUsize = AtomicUsize::new(0);

/// How many times `malloc_trim` has begun to wait for remote pushes in flight before
/// unmapping cached segments (`alloc::inflight`).
#[cfg(any(test, feature = "internals"))]
pub fn push_waits() -> usize {
    PUSH_WAITS.load(Ordering::SeqCst)
}

/// Where `malloc_trim` begins to wait for pushes in flight: counted for tests.
#[inline(always)]
pub(crate) fn waiting_for_pushes() {
    #[cfg(any(test, feature = "internals"))]
    PUSH_WAITS.fetch_add(1, Ordering::SeqCst);
}

/// Whether retiring a thread's state fails (`refuse_retirement`).
#[cfg(any(test, feature = "internals"))]
static REFUSE_RETIREMENT: AtomicBool = AtomicBool::new(false);

/// Makes every retirement of an exiting thread's state fail, as when the list of retired
/// states is full, until turned off: the state is abandoned instead.
#[cfg(any(test, feature = "internals"))]
pub fn refuse_retirement(on: bool) {
    REFUSE_RETIREMENT.store(on, Ordering::SeqCst);
}

/// Whether a retirement must fail (`refuse_retirement`).
#[inline(always)]
pub(crate) fn retirement_refused() -> bool {
    #[cfg(any(test, feature = "internals"))]
    if REFUSE_RETIREMENT.load(Ordering::Relaxed) {
        return true;
    }
    false
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
