//! The calling thread's pthread identity, and a destructor that runs when it exits.

use core::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};

/// The calling thread's `pthread_self()`.
pub fn pthread_self() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() }
}

/// Registers the `fork()` handlers: `prepare` before the fork, `parent` and `child`
/// after it in each process.
pub fn atfork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // SAFETY: the handlers are plain functions that stay valid for the life of the
    // process; the caller's never unwind (`extern "C"`).
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// The process's one `pthread_key`, whose destructor is the first `on_exit` given to
/// [`arm_exit`].
static KEY: AtomicU32 = AtomicU32::new(UNSET);
const UNSET: u32 = u32::MAX;

fn key(on_exit: extern "C" fn(*mut c_void)) -> Option<libc::pthread_key_t> {
    let k = KEY.load(Ordering::Acquire);
    if k != UNSET {
        return Some(k);
    }
    let mut new: libc::pthread_key_t = 0;
    // SAFETY: `new` is a valid out-pointer; `on_exit` matches the destructor type.
    if unsafe { libc::pthread_key_create(&mut new, Some(on_exit)) } != 0 {
        return None;
    }
    match KEY.compare_exchange(UNSET, new, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(new),
        Err(won) => {
            // SAFETY: `new` was created above and never published.
            unsafe { libc::pthread_key_delete(new) };
            Some(won)
        }
    }
}

/// Makes `on_exit` run when the calling thread exits (the destructor of a pthread key,
/// so after the thread's own code and before its stack goes). Every caller must pass
/// the same function: the key keeps the first.
pub fn arm_exit(on_exit: extern "C" fn(*mut c_void)) {
    if let Some(k) = key(on_exit) {
        // SAFETY: any non-null value arms the destructor; it is never dereferenced.
        unsafe { libc::pthread_setspecific(k, 1 as *const c_void) };
    }
}
