//! Deferred purge: the pages of freed spans stay resident for a short delay (memory freed
//! and allocated again costs no page faults), then go back to the kernel at the owner's
//! next allocator slow path; `malloc_trim` gives them back at once. Residency is read
//! with `mincore(2)` over the freed blocks' addresses.
//!
//! It needs a process of its own (nextest gives every test one), so that no other test
//! reuses the freed memory.

use crate::support::alloc::*;
use std::alloc::{alloc, dealloc, Layout};
use std::time::Duration;

const PAGE_BYTES: usize = PAGE as usize;

fn freed_resident(blocks: &[(usize, usize)]) -> usize {
    blocks
        .iter()
        .map(|&(p, len)| resident(p as *const u8, len))
        .sum()
}

/// Allocates `n` medium blocks of 512 KiB, writes every page, frees them; returns their
/// addresses (block start, length).
fn touch_and_free(n: usize) -> Vec<(usize, usize)> {
    let layout = Layout::from_size_align(512 * KIB, 16).unwrap();
    let mut out = Vec::with_capacity(n);
    let blocks: Vec<usize> = (0..n)
        .map(|_| {
            // SAFETY: non-zero size.
            let p = std::hint::black_box(unsafe { alloc(layout) });
            assert!(!p.is_null());
            for off in (0..layout.size()).step_by(PAGE_BYTES) {
                // SAFETY: inside the live block.
                unsafe { p.add(off).write(1) };
            }
            p as usize
        })
        .collect();
    for p in blocks {
        out.push((p, layout.size()));
        // SAFETY: live blocks with their layout.
        unsafe { dealloc(p as *mut u8, layout) };
    }
    out
}

#[test]
fn freed_pages_are_kept_briefly_then_purged() {
    // In a thread of its own: its segments are its own.
    std::thread::spawn(|| {
        const N: usize = 32;
        let pages = N * 512 * KIB / PAGE_BYTES;
        let freed = touch_and_free(N);
        let kept = freed_resident(&freed);
        assert!(
            kept * 10 >= pages * 9,
            "freed pages are kept for reuse: {kept} of {pages} resident right after free"
        );
        // After the delay, the next slow path of this thread (a span of a slice count
        // that is not cached) purges them.
        std::thread::sleep(Duration::from_millis(60));
        let layout = Layout::from_size_align(3 * 64 * KIB, 16).unwrap();
        // SAFETY: non-zero size.
        let p = std::hint::black_box(unsafe { alloc(layout) });
        assert!(!p.is_null());
        // SAFETY: the live block with its layout.
        unsafe {
            p.write(1);
            dealloc(p, layout);
        }
        let left = freed_resident(&freed);
        // The heap's span cache keeps up to two medium spans charged (and resident); the
        // test's own small allocations since may have taken a slice or two of the range.
        assert!(
            left <= 2 * 512 * KIB / PAGE_BYTES + 64,
            "after the delay: {left} of {pages} freed pages still resident"
        );

        // malloc_trim returns everything at once, without waiting.
        let freed = touch_and_free(N);
        assert!(freed_resident(&freed) * 10 >= pages * 9);
        cgmalloc::trim();
        let left = freed_resident(&freed);
        assert!(
            left <= 64,
            "after trim: {left} of {pages} freed pages resident"
        );
    })
    .join()
    .unwrap();
}
