//! Fault injection for tests: makes the next mappings fail with `ENOMEM` as if the kernel
//! refused them. One relaxed load on each mapping call when unused.

use std::sync::atomic::{AtomicI64, Ordering};

/// Mappings left to succeed before failures start; negative means "never fail".
static BUDGET: AtomicI64 = AtomicI64::new(-1);

/// Lets `ok` more mappings succeed, then fails every one until [`clear`].
pub fn fail_after(ok: u64) {
    BUDGET.store(ok as i64, Ordering::SeqCst);
}

/// Stops injecting failures.
pub fn clear() {
    BUDGET.store(-1, Ordering::SeqCst);
}

/// Consumes one unit of budget; true when this mapping must fail.
#[inline]
pub(crate) fn should_fail() -> bool {
    if BUDGET.load(Ordering::Relaxed) < 0 {
        return false;
    }
    let prev = BUDGET.fetch_sub(1, Ordering::SeqCst);
    if prev <= 0 {
        BUDGET.store(0, Ordering::SeqCst);
        true
    } else {
        false
    }
}
