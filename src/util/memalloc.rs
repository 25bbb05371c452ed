//! The memalloc depth (the kernel's `PF_MEMALLOC`): nonzero while the calling thread
//! runs code of the program's inside the allocator or the accounting engine (a reclaim
//! callback, an OOM handler, the drop of a callback's context). Charges made then are
//! forced and never recurse into reclaim (`memcg::charge`), and the allocator does no
//! work there that it may only do between its own operations (`alloc::thread`'s swap
//! of a thread's state).
//!
//! Kept at the bottom layer so that every layer that calls into the program can mark it.

use core::cell::Cell;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// True inside a reclaim callback, an OOM handler or a callback context's drop.
#[inline]
pub fn in_memalloc() -> bool {
    DEPTH.with(|d| d.get() != 0)
}

/// Runs `f` at memalloc depth one more.
pub fn with_memalloc<R>(f: impl FnOnce() -> R) -> R {
    DEPTH.with(|d| d.set(d.get() + 1));
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    let _leave = Leave;
    f()
}
