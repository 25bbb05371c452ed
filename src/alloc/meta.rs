//! Pools for the allocator's own metadata (heaps, thread states): fixed-size objects
//! carved from mapped chunks, never from the global allocator, never unmapped.
//!
//! Because pool memory is never returned to the kernel, a stale pointer to a recycled
//! object still points to readable memory of the same type; the allocator relies on this
//! only for harmless hints (a flag set on a heap that may have been recycled).

use crate::os::mem;
use crate::util::spin::SpinLock;
use core::ptr;

const CHUNK: usize = 1 << 20;

pub struct Pool {
    inner: SpinLock<PoolInner>,
    size: usize,
}

struct PoolInner {
    free: *mut FreeObj,
    cur: usize,
    end: usize,
}

struct FreeObj {
    next: *mut FreeObj,
}

// SAFETY: the raw pointers are only followed under the pool's lock.
unsafe impl Send for PoolInner {}

impl Pool {
    /// A pool of objects of `size` bytes (rounded up to 64).
    pub const fn new(size: usize) -> Pool {
        Pool {
            inner: SpinLock::new(PoolInner {
                free: ptr::null_mut(),
                cur: 0,
                end: 0,
            }),
            size: (size + 63) & !63,
        }
    }

    /// A zeroed object, or null when memory cannot be mapped.
    pub fn alloc(&self) -> *mut u8 {
        let mut p = self.inner.lock();
        let obj = if !p.free.is_null() {
            let o = p.free;
            // SAFETY: objects on the free list are pool memory holding a `FreeObj`.
            p.free = unsafe { (*o).next };
            o as *mut u8
        } else {
            if p.cur + self.size > p.end {
                let Ok(chunk) = mem::map(CHUNK) else {
                    return ptr::null_mut();
                };
                p.cur = chunk.as_ptr() as usize;
                p.end = p.cur + CHUNK;
            }
            let o = p.cur as *mut u8;
            p.cur += self.size;
            o
        };
        drop(p);
        // SAFETY: `obj` is `size` bytes of pool memory owned by nobody else now.
        unsafe { ptr::write_bytes(obj, 0, self.size) };
        obj
    }

    /// Returns an object to the pool.
    pub fn free(&self, obj: *mut u8) {
        let mut p = self.inner.lock();
        let o = obj as *mut FreeObj;
        // SAFETY: the caller gives up `obj`, an object of this pool.
        unsafe { (*o).next = p.free };
        p.free = o;
    }

    pub fn lock_for_fork(&self) {
        self.inner.lock_for_fork();
    }

    pub fn unlock_after_fork(&self) {
        self.inner.force_unlock();
    }
}
