//! Pools for the allocator's own metadata (heaps, thread states): fixed-size objects
//! carved from mapped chunks, never from the global allocator, never unmapped.
//!
//! Because pool memory is never returned to the kernel, a stale pointer to a recycled
//! object still points to readable memory of the same type; the allocator relies on this
//! only for harmless hints (a flag set on a heap that may have been recycled), and for
//! lock words that must outlive an object's recycling: a pool made `with_kept_tail`
//! never zeroes the bytes from `keep_from` on, so a thread still holding (or about to
//! take) a lock in a recycled object keeps exclusion with the object's next user, who
//! finds the lock as it was left instead of a zero written under the holder.

use crate::os::mem;
use crate::util::spin::SpinLock;
use core::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

const CHUNK: usize = 1 << 20;

pub struct Pool {
    inner: SpinLock<PoolInner>,
    /// Bytes of objects ever carved (their memory touched): the pool's metadata in
    /// `memory.stat`'s `meta`.
    carved: AtomicUsize,
    size: usize,
    /// Bytes zeroed when an object is handed out again (the rest survive recycling).
    keep_from: usize,
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
        Pool::with_kept_tail(size, size)
    }

    /// A pool of objects of `size` bytes whose bytes from `keep_from` on are zero when
    /// first handed out and never written by the pool afterwards (the free list's link
    /// lives in the first word, below `keep_from`).
    pub const fn with_kept_tail(size: usize, keep_from: usize) -> Pool {
        assert!(keep_from >= core::mem::size_of::<FreeObj>() && keep_from <= size);
        Pool {
            inner: SpinLock::new(PoolInner {
                free: ptr::null_mut(),
                cur: 0,
                end: 0,
            }),
            carved: AtomicUsize::new(0),
            size: (size + 63) & !63,
            keep_from,
        }
    }

    /// An object zeroed below `keep_from` (all of it when new), or null when memory
    /// cannot be mapped.
    pub fn alloc(&self) -> *mut u8 {
        let mut p = self.inner.lock();
        let o = p.free;
        if !o.is_null() {
            // SAFETY: objects on the free list are pool memory holding a `FreeObj`.
            p.free = unsafe { (*o).next };
            drop(p);
            // SAFETY: `o` is `size` bytes of pool memory owned by nobody else now; only
            // the part below `keep_from` is written.
            unsafe { ptr::write_bytes(o as *mut u8, 0, self.keep_from) };
            return o.cast();
        }
        if p.cur + self.size > p.end {
            let Ok(chunk) = mem::map(CHUNK) else {
                return ptr::null_mut();
            };
            p.cur = chunk.as_ptr() as usize;
            p.end = p.cur + CHUNK;
        }
        // Fresh mapped memory: zero.
        let o = p.cur as *mut u8;
        p.cur += self.size;
        self.carved.fetch_add(self.size, Ordering::Relaxed);
        o
    }

    /// Bytes of objects carved so far (kept for reuse, never unmapped).
    pub fn bytes(&self) -> usize {
        self.carved.load(Ordering::Relaxed)
    }

    /// Returns an object to the pool.
    ///
    /// # Safety
    /// `obj` came from this pool's `alloc` and is not on its free list; the caller gives it
    /// up (what is kept past `keep_from` may still be read, as the module docs say).
    pub unsafe fn free(&self, obj: *mut u8) {
        let mut p = self.inner.lock();
        let o = obj as *mut FreeObj;
        // SAFETY: the caller gives up `obj`, an object of this pool (the contract).
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

#[cfg(test)]
mod tests {
    use super::Pool;

    #[test]
    fn recycled_object_keeps_its_tail_and_zeroes_the_rest() {
        static P: Pool = Pool::with_kept_tail(128, 96);
        let a = P.alloc();
        assert!(!a.is_null());
        // SAFETY: `a` is 128 bytes of pool memory, ours.
        unsafe {
            assert!((0..128).all(|i| *a.add(i) == 0), "a new object is zero");
            core::ptr::write_bytes(a, 0xab, 128);
        }
        // SAFETY: `a` came from `P` and is given up.
        unsafe { P.free(a) };
        let b = P.alloc();
        assert_eq!(a, b, "the freed object is handed out again");
        // SAFETY: as above.
        unsafe {
            assert!((0..96).all(|i| *b.add(i) == 0), "below keep_from is zeroed");
            assert!((96..128).all(|i| *b.add(i) == 0xab), "the tail survives");
        }
    }

    #[test]
    fn plain_pool_zeroes_recycled_objects() {
        static P: Pool = Pool::new(72);
        let a = P.alloc();
        // SAFETY: `a` is 72 bytes of pool memory, ours.
        unsafe { core::ptr::write_bytes(a, 0xcd, 72) };
        // SAFETY: `a` came from `P` and is given up.
        unsafe { P.free(a) };
        let b = P.alloc();
        assert_eq!(a, b);
        // SAFETY: as above.
        assert!((0..72).all(|i| unsafe { *b.add(i) } == 0));
    }
}
