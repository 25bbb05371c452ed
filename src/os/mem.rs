//! Memory mappings: the allocator's only way to get and give back memory.
//!
//! Contract:
//! - `map` and `map_aligned` return fresh anonymous private memory, zero-filled and
//!   read-write, or `ENOMEM` (also when fault injection says so); nothing is mapped on
//!   failure.
//! - `purge` keeps the range mapped but returns its pages to the kernel: the next touch
//!   reads zeros (`MADV_DONTNEED`).
//! - `unmap` releases a range that was mapped here; `remap` moves or grows a mapping
//!   (`mremap` with `MREMAP_MAYMOVE`), keeping its contents.
//! - `move_pages` moves the pages of one range onto another (`MREMAP_DONTUNMAP`): the
//!   source stays mapped, empty (it reads zeros); on failure the destination is mapped
//!   again, untouched, or `false` is returned with it possibly unmapped (`Moved::Lost`).
//!
//! None of them allocates.

use super::{errno, fault};
use core::ptr::NonNull;

pub use crate::consts::PAGE_SIZE;

/// `n` rounded up to a whole number of pages; `None` if that overflows.
pub fn page_ceil(n: usize) -> Option<usize> {
    n.checked_add(PAGE_SIZE - 1).map(|v| v & !(PAGE_SIZE - 1))
}

fn mmap(len: usize) -> Result<NonNull<u8>, i32> {
    if fault::should_fail() {
        return Err(libc::ENOMEM);
    }
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing has no
    // preconditions; the result is checked before use.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        NonNull::new(p.cast()).ok_or(libc::ENOMEM)
    }
}

/// Maps `len` bytes (a multiple of the page size).
pub fn map(len: usize) -> Result<NonNull<u8>, i32> {
    mmap(len)
}

/// Maps `len` bytes at an address aligned to `align` (a power of two ≥ the page size), by
/// mapping `len + align` and unmapping the ends.
pub fn map_aligned(len: usize, align: usize) -> Result<NonNull<u8>, i32> {
    let over = len.checked_add(align).ok_or(libc::ENOMEM)?;
    let raw = mmap(over)?.as_ptr() as usize;
    let start = (raw + align - 1) & !(align - 1);
    let lead = start - raw;
    let tail = over - lead - len;
    if lead > 0 {
        unmap(raw as *mut u8, lead);
    }
    if tail > 0 {
        unmap((start + len) as *mut u8, tail);
    }
    NonNull::new(start as *mut u8).ok_or(libc::ENOMEM)
}

/// Unmaps a range mapped by this module.
pub fn unmap(p: *mut u8, len: usize) {
    // SAFETY: the caller owns the range `p..p+len`, mapped by this module, and nothing
    // refers into it any more.
    unsafe { libc::munmap(p.cast(), len) };
}

/// Gives the pages of a range back to the kernel; the range stays mapped and reads as
/// zeros afterwards.
pub fn purge(p: *mut u8, len: usize) {
    // SAFETY: the caller owns the mapped range and no longer needs its contents.
    unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
}

/// Grows or shrinks a mapping without moving it; false when the address space after it
/// is taken.
pub fn remap_in_place(p: *mut u8, old_len: usize, new_len: usize) -> bool {
    if fault::should_fail() {
        return false;
    }
    // SAFETY: the caller owns the mapping; without MREMAP_MAYMOVE the kernel resizes it in
    // place or fails leaving it untouched.
    let q = unsafe { libc::mremap(p.cast(), old_len, new_len, 0) };
    q != libc::MAP_FAILED
}

/// Moves the pages of a mapping to `to` (which the caller has reserved: it is replaced),
/// resizing it to `new_len`; the old range is unmapped. No copy is made.
pub fn remap_to(p: *mut u8, old_len: usize, to: *mut u8, new_len: usize) -> bool {
    if fault::should_fail() {
        return false;
    }
    // SAFETY: the caller owns both ranges; MREMAP_FIXED replaces the reservation at `to`.
    let q = unsafe {
        libc::mremap(
            p.cast(),
            old_len,
            new_len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            to.cast::<libc::c_void>(),
        )
    };
    q != libc::MAP_FAILED
}

/// What `move_pages` did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Moved {
    /// The pages now back the destination; the source is mapped and empty.
    Yes,
    /// Nothing moved; both ranges are mapped, the destination untouched (it may have
    /// been mapped again: its area may begin and end at the range).
    No,
    /// Nothing moved, and the destination may now be a hole, or another mapping's: the
    /// caller must not touch or unmap it.
    Lost,
}

/// Moves the pages behind `src..src+len` to `dst..dst+len` without copying or faulting
/// (`mremap` with `MREMAP_FIXED | MREMAP_DONTUNMAP`, Linux 5.7 and later): afterwards
/// `dst` holds what `src` held, and `src` stays mapped, reading zeros. The caller owns
/// both ranges (private anonymous memory mapped here; the source within one mapping
/// area), and `dst` holds nothing it needs: it is replaced.
pub fn move_pages(src: *mut u8, dst: *mut u8, len: usize) -> Moved {
    if fault::should_fail() {
        return Moved::No;
    }
    // SAFETY: the caller owns both ranges; MREMAP_FIXED replaces the destination, and
    // MREMAP_DONTUNMAP leaves the source mapped.
    let q = unsafe {
        libc::mremap(
            src.cast(),
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP,
            dst.cast::<libc::c_void>(),
        )
    };
    if q != libc::MAP_FAILED {
        return Moved::Yes;
    }
    if errno() == libc::EINVAL {
        // Refused before anything was unmapped (a kernel without MREMAP_DONTUNMAP).
        return Moved::No;
    }
    // Other refusals may come after the kernel unmapped the destination; map it again,
    // unless another thread's mapping took its place meanwhile.
    // SAFETY: NOREPLACE maps only where nothing is mapped; the result is checked.
    let r = unsafe {
        libc::mmap(
            dst.cast(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if r == dst.cast() {
        return Moved::No;
    }
    if r != libc::MAP_FAILED {
        // A kernel older than 4.17 took NOREPLACE as a hint and mapped elsewhere.
        unmap(r.cast(), len);
    }
    Moved::Lost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_maps_zeroed_purge_and_remap() {
        let align = 4 << 20;
        let p = map_aligned(align, align).unwrap().as_ptr();
        assert_eq!(p as usize % align, 0);
        // SAFETY: the range was just mapped read-write.
        unsafe {
            assert_eq!(*p.add(12345), 0);
            *p.add(12345) = 7;
        }
        purge(p, align);
        // SAFETY: still mapped; purged pages read as zero.
        unsafe { assert_eq!(*p.add(12345), 0) };
        unmap(p, align);
        fault::fail_after(1);
        assert!(map(PAGE_SIZE).is_ok());
        assert_eq!(map(PAGE_SIZE).err(), Some(libc::ENOMEM));
        assert_eq!(move_pages(p, p, PAGE_SIZE), Moved::No);
        fault::clear();
        let r = map(PAGE_SIZE).unwrap();
        unmap(r.as_ptr(), PAGE_SIZE);
    }

    #[test]
    fn move_pages_keeps_contents_and_empties_the_source() {
        let len = 64 * PAGE_SIZE;
        let a = map(len).unwrap().as_ptr();
        let b = map(2 * len).unwrap().as_ptr();
        // SAFETY: both ranges were just mapped read-write.
        unsafe {
            for i in 0..64 {
                *a.add(i * PAGE_SIZE) = i as u8 + 1;
            }
            *b = 9;
        }
        // SAFETY: `b + len` lies inside `b`'s mapping.
        let dst = unsafe { b.add(len) };
        assert_eq!(move_pages(a, dst, len), Moved::Yes);
        // SAFETY: every range read is still mapped.
        unsafe {
            for i in 0..64 {
                assert_eq!(*dst.add(i * PAGE_SIZE), i as u8 + 1);
                assert_eq!(*a.add(i * PAGE_SIZE), 0);
            }
            assert_eq!(*b, 9);
        }
        unmap(a, len);
        unmap(b, 2 * len);
    }
}
