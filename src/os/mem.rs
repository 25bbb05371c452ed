//! Memory mappings: the allocator's only way to get and give back memory.
//!
//! Contract:
//! - `map` and `map_aligned` return fresh anonymous private memory, zero-filled and
//!   read-write, or `ENOMEM` (also when fault injection says so); nothing is mapped on
//!   failure.
//! - `purge` keeps the range mapped but returns its pages to the kernel: the next touch
//!   reads zeros (`MADV_DONTNEED`).
//! - `unmap` releases a range that was mapped here; `remap_in_place` grows or shrinks a
//!   mapping where it is, `remap_to` moves it to a given address (`mremap`), keeping its
//!   contents.
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
        // SAFETY: the lead of the mapping just made, which nothing knows of.
        unsafe { unmap(raw as *mut u8, lead) };
    }
    if tail > 0 {
        // SAFETY: the tail of the mapping just made, which nothing knows of.
        unsafe { unmap((start + len) as *mut u8, tail) };
    }
    NonNull::new(start as *mut u8).ok_or(libc::ENOMEM)
}

/// Unmaps a range mapped by this module.
///
/// # Safety
/// `p..p+len` is a page-aligned range of mappings made by this module that the caller
/// owns, and nothing refers into it afterwards.
pub unsafe fn unmap(p: *mut u8, len: usize) {
    // SAFETY: by the contract the range is ours and unreferenced.
    unsafe { libc::munmap(p.cast(), len) };
}

/// Gives the pages of a range back to the kernel; the range stays mapped and reads as
/// zeros afterwards.
///
/// # Safety
/// `p..p+len` is a page-aligned range of a mapping made by this module that the caller
/// owns (no other thread reads or writes it meanwhile), and its contents are not needed.
pub unsafe fn purge(p: *mut u8, len: usize) {
    // SAFETY: by the contract the range is ours and its contents are not needed.
    unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
}

/// The size of a transparent huge page on x86_64 (a PMD mapping).
pub const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back a range with transparent huge pages as it faults in
/// (`MADV_HUGEPAGE`; with `on` false, `MADV_NOHUGEPAGE`: no more of them, and none
/// assembled later by `khugepaged`). False if the kernel refused (one without them).
///
/// # Safety
/// `p..p+len` is a range of a mapping made by this module that the caller owns.
pub unsafe fn huge_pages(p: *mut u8, len: usize, on: bool) -> bool {
    let advice = if on {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    // SAFETY: by the contract the range is ours; the advice changes no contents.
    unsafe { libc::madvise(p.cast(), len, advice) == 0 }
}

/// Grows or shrinks a mapping without moving it; false when the address space after it
/// is taken.
///
/// # Safety
/// `p..p+old_len` is a whole mapping made by this module that the caller owns; when
/// shrinking, nothing refers past `p+new_len` afterwards.
pub unsafe fn remap_in_place(p: *mut u8, old_len: usize, new_len: usize) -> bool {
    if fault::should_fail() {
        return false;
    }
    // SAFETY: by the contract the mapping is ours; without MREMAP_MAYMOVE the kernel
    // resizes it in place or fails leaving it untouched.
    let q = unsafe { libc::mremap(p.cast(), old_len, new_len, 0) };
    q != libc::MAP_FAILED
}

/// Moves the pages of a mapping to `to` (which the caller has reserved: it is replaced),
/// resizing it to `new_len`; the old range is unmapped. No copy is made.
///
/// # Safety
/// `p..p+old_len` is a whole mapping made by this module and `to..to+new_len` a
/// reservation made by this module, both owned by the caller; nothing refers into
/// `to..to+new_len` before, nor, once this returns true, into `p..p+old_len`.
pub unsafe fn remap_to(p: *mut u8, old_len: usize, to: *mut u8, new_len: usize) -> bool {
    if fault::should_fail() {
        return false;
    }
    // SAFETY: by the contract both ranges are ours; MREMAP_FIXED replaces the
    // reservation at `to`.
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
/// `dst` holds what `src` held, and `src` stays mapped, reading zeros.
///
/// # Safety
/// The caller owns both ranges, page-aligned and `len` bytes long, of private anonymous
/// memory mapped here (the source within one mapping area); no other thread reads or
/// writes them meanwhile, and `dst` holds nothing the caller needs: it is replaced.
/// After `Moved::Lost` the caller neither touches nor unmaps `dst..dst+len`.
pub unsafe fn move_pages(src: *mut u8, dst: *mut u8, len: usize) -> Moved {
    if fault::should_fail() {
        return Moved::No;
    }
    // SAFETY: by the contract both ranges are ours; MREMAP_FIXED replaces the
    // destination, and MREMAP_DONTUNMAP leaves the source mapped.
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
        // SAFETY: `r` is the mapping just made, which nothing knows of.
        unsafe { unmap(r.cast(), len) };
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
        // SAFETY: the mapping made above, ours; its contents are not needed.
        unsafe { purge(p, align) };
        // SAFETY: still mapped; purged pages read as zero.
        unsafe { assert_eq!(*p.add(12345), 0) };
        // SAFETY: the mapping made above, not used again.
        unsafe { unmap(p, align) };
        fault::fail_after(1);
        assert!(map(PAGE_SIZE).is_ok());
        // SAFETY: fault injection refuses this move before its system call: the unmapped
        // `p` is not touched.
        assert_eq!(unsafe { move_pages(p, p, PAGE_SIZE) }, Moved::No);
        fault::clear();
        let r = map(PAGE_SIZE).unwrap();
        // SAFETY: the mapping just made, not used again.
        unsafe { unmap(r.as_ptr(), PAGE_SIZE) };
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
        // SAFETY: both ranges were mapped above and are ours; `dst` holds nothing needed.
        assert_eq!(unsafe { move_pages(a, dst, len) }, Moved::Yes);
        // SAFETY: every range read is still mapped.
        unsafe {
            for i in 0..64 {
                assert_eq!(*dst.add(i * PAGE_SIZE), i as u8 + 1);
                assert_eq!(*a.add(i * PAGE_SIZE), 0);
            }
            assert_eq!(*b, 9);
        }
        // SAFETY: the mappings made above, not used again.
        unsafe {
            unmap(a, len);
            unmap(b, 2 * len);
        }
    }
}
