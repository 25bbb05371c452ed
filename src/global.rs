//! `CgMalloc`, the Rust global allocator: `#[global_allocator] static A: CgMalloc = CgMalloc;`.
//! Allocations charge the calling thread's current group.

use crate::alloc;
use core::alloc::{GlobalAlloc, Layout};

pub struct CgMalloc;

// SAFETY: every method returns blocks of at least `layout.size()` bytes aligned to
// `layout.align()`, or null; `dealloc` and `realloc` accept exactly the blocks these return.
unsafe impl GlobalAlloc for CgMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        alloc::aligned(layout.align(), layout.size())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `GlobalAlloc::dealloc`'s contract: `ptr` (never null) is a block this
        // allocator handed out and not yet freed.
        unsafe { alloc::free::free(ptr) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        alloc::zeroed(layout.size(), layout.align())
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `GlobalAlloc::realloc`'s contract: `ptr` is a block this allocator handed
        // out and not yet freed (`new_size` is not 0), and on success the caller uses only
        // the result.
        unsafe { alloc::realloc(ptr, new_size, layout.align()) }
    }
}
