//! The allocation entry points shared by `GlobalAlloc` and the C malloc family: plain
//! results (null on failure), no `errno`; the C layer adds C's rules.
//!
//! Fast path (`malloc` of at most `SMALL_MAX` bytes): a TLS load (the heap), a size-class
//! lookup (for at most `LOOKUP_MAX` bytes, folded into the heap's by-size table), a pop
//! from the direct span's free list. Everything else is in `alloc_slow`:
//! medium blocks (up to `MEDIUM_MAX`, a span each) and large mappings.

use super::account;
use super::fork;
use super::free as free_path;
use super::large;
use super::medium;
use super::remote;
use super::resize::NotResized;
use super::retired;
use super::size_class::{self, LOOKUP_MAX, MEDIUM_MAX, SMALL_MAX};
use super::thread;
use super::tld;
use super::tls;
use super::types::{empty_heap, Heap, MEDIUM, SLICE_SIZE};
use core::ptr;

/// Alignment every block has.
pub const MIN_ALIGN: usize = 16;

#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    if size <= SMALL_MAX {
        if let Some(heap) = tls::heap_inline() {
            // SAFETY: the TLS heap is the static empty heap or this thread's live heap,
            // whose by-size and direct slots always point to valid span descriptors.
            let span = unsafe {
                if size <= LOOKUP_MAX {
                    (*heap).by_size[size_class::slot_of(size)]
                } else {
                    (*heap).direct[size_class::class_of(size)]
                }
            };
            // SAFETY: as above.
            let p = unsafe { (*span).pop() };
            if !p.is_null() {
                return p;
            }
        }
    }
    alloc_slow(size, MIN_ALIGN).0
}

/// The current heap, setting the thread up on its first allocation.
#[inline]
fn current_heap() -> *mut Heap {
    let h = tls::heap();
    if h == empty_heap() {
        first_heap()
    } else {
        h
    }
}

/// The heap of a thread whose TLS heap is the empty one: on its first allocation the
/// thread is set up (and, on the process's first, the allocator); after a group change
/// the heap of its new group is found or made.
#[cold]
fn first_heap() -> *mut Heap {
    if tld::current().is_null() {
        init();
    }
    thread::setup_heap()
}

/// One-time set-up: the hooks through which the accounting engine reaches the allocator.
fn init() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    crate::memcg::control::apply_root_limits_early();
    account::install();
    crate::memcg::control::install_requests();
    crate::memcg::threads::set_hooks(thread::group_switched, thread::thread_exit);
    fork::register();
}

/// Any allocation: `(block, zeroed)`.
#[cold]
pub fn alloc_slow(size: usize, align: usize) -> (*mut u8, bool) {
    let r = alloc_slow_in_heap(size, align);
    if tls::keeps_no_state() {
        // Past the thread's exit (a destructor run after, glibc's own clean-up), or in
        // the middle of a swap of its state (`thread::swap_to_retired`): the state set up
        // for this allocation goes back now, since nothing else would give it back.
        // SAFETY: that state was set up (or taken over) for this allocation, done: no
        // frame uses it.
        unsafe { thread::give_up_state() };
    }
    r
}

fn alloc_slow_in_heap(size: usize, align: usize) -> (*mut u8, bool) {
    tls::count_slow_path();
    let t = tld::current();
    if !t.is_null() {
        // SAFETY: this thread's live state.
        remote::flush(unsafe { &mut *t });
    }
    if retired::waiting() {
        thread::expire_retired(false);
    }
    if size <= MEDIUM_MAX {
        // Between allocations, before the heap is chosen: a group change another thread
        // asked for (large allocations check on a cache miss, in `large::alloc`). A live
        // heap looks at the request word it keeps, with no TLS access.
        let h = tls::heap();
        // SAFETY: the TLS heap is the empty heap or this thread's live heap.
        if h == empty_heap() || unsafe { (*h).attach_asked() } {
            crate::memcg::control::apply_pending_attach();
        }
    }
    let heap = current_heap();
    if heap.is_null() {
        return (ptr::null_mut(), false);
    }
    // SAFETY: this thread's live heap.
    let heap = unsafe { &mut *heap };
    if align <= MIN_ALIGN && size <= SMALL_MAX {
        return (heap.alloc_class(size_class::class_of(size)), false);
    }
    if align <= SLICE_SIZE && size <= SMALL_MAX {
        // A class whose block size is a multiple of `align`: its blocks are aligned,
        // since spans start on slice boundaries.
        let mut class = size_class::class_of(size.max(align));
        while class < size_class::NR_CLASSES {
            if size_class::size_of(class) % align == 0 {
                let p = heap.alloc_class(class);
                return (p, false);
            }
            class += 1;
        }
    }
    if align <= SLICE_SIZE && size <= MEDIUM_MAX {
        // A medium block starts on a slice boundary.
        return heap.alloc_medium(size);
    }
    large::alloc(heap.group, size, align)
}

/// A zeroed block of `n * size` bytes; null on overflow or failure.
pub fn calloc(n: usize, size: usize) -> *mut u8 {
    let Some(bytes) = n.checked_mul(size) else {
        return ptr::null_mut();
    };
    zeroed(bytes, MIN_ALIGN)
}

/// A zeroed block of `bytes` aligned to `align`.
pub fn zeroed(bytes: usize, align: usize) -> *mut u8 {
    let (p, fresh) = if align <= MIN_ALIGN && bytes <= SMALL_MAX {
        (malloc(bytes), false)
    } else {
        // Large mappings come zeroed from the kernel when fresh.
        alloc_slow(bytes, align)
    };
    if !p.is_null() && !fresh {
        // SAFETY: `p` is a new block of at least `bytes` bytes.
        unsafe { ptr::write_bytes(p, 0, bytes) };
    }
    p
}

/// A block of `size` bytes aligned to `align` (a power of two).
#[inline(always)]
pub fn aligned(align: usize, size: usize) -> *mut u8 {
    if align <= MIN_ALIGN {
        malloc(size)
    } else {
        alloc_slow(size, align).0
    }
}

/// Frees `p`; nothing for null.
///
/// # Safety
/// `p` is null or a block this allocator handed out and not yet freed.
#[inline]
pub unsafe fn free(p: *mut u8) {
    if !p.is_null() {
        // SAFETY: a block handed out and not yet freed (this function's contract).
        unsafe { free_path::free(p) };
    }
}

/// The usable bytes of block `p`; 0 for null.
///
/// # Safety
/// `p` is null or a block this allocator handed out and not yet freed.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    if p.is_null() {
        0
    } else {
        // SAFETY: a block handed out and not yet freed (this function's contract).
        unsafe { free_path::usable_size(p) }
    }
}

/// Resizes `p` (not null) to `size` bytes (not 0) keeping `align`: in place when the
/// block fits without wasting more than half of it, else a new block in the calling
/// thread's current group. Null on failure, `p` untouched.
///
/// # Safety
/// `p` is null or a block this allocator handed out and not yet freed (null is fatal
/// here, as an invalid pointer). A non-null result replaces `p`, which is used no more.
pub unsafe fn realloc(p: *mut u8, size: usize, align: usize) -> *mut u8 {
    // SAFETY: this function's contract.
    let (seg, span) = unsafe { free_path::locate(p, free_path::Caller::Realloc) };
    let old = match span {
        // SAFETY: `locate` returned the live span of `p`.
        Some(s) => unsafe { (*s).block_size() as usize },
        // SAFETY: the mapping of the live large block `p`.
        None => unsafe { large::usable_size(seg) },
    };
    if span.is_some() && size <= old && (size >= old / 2 || old <= 64) {
        return p;
    }
    let in_place = match span {
        // SAFETY: `locate` returned the live span of `p`.
        Some(s) if unsafe { (*s).class() } == MEDIUM && size > old && size <= MEDIUM_MAX => {
            // SAFETY: the segment and span of the live medium block `p`, the caller's.
            Some(unsafe { medium::grow(seg, s, size) }.map(|()| p))
        }
        None if size > SMALL_MAX && align <= SLICE_SIZE => {
            // SAFETY: the mapping of the live large block `p`, the caller's; on success
            // only the address returned is used.
            Some(unsafe { large::resize(seg, size) })
        }
        _ => None,
    };
    match in_place {
        Some(Ok(q)) => return q,
        // The charge path already ran (and counted its OOM) for this thread's group:
        // a new block would be charged to it again and refused again.
        Some(Err(NotResized::Refused)) => return ptr::null_mut(),
        Some(Err(NotResized::NoRoom)) | None => {}
    }
    let q = aligned(align, size);
    if !q.is_null() {
        // SAFETY: both blocks are live and at least `min(old, size)` bytes long.
        unsafe { ptr::copy_nonoverlapping(p, q, old.min(size)) };
        // SAFETY: `p` is still live (this function's contract); its contents are copied.
        unsafe { free_path::free(p) };
    }
    q
}
