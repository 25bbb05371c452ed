//! Block reuse order, with `CgMalloc` as the global allocator: a block its owner frees is
//! the next one handed out for its size class (last freed, first reused), and a program
//! that only alternates malloc and free still reaches the slow path, so blocks other
//! threads freed are reused.

use crate::support::alloc::*;
use std::alloc::{alloc, dealloc};

const SIZE: usize = KIB;

// `black_box`: the compiler knows `alloc` and `dealloc`, and may otherwise drop a pair of
// them or decide that a fresh block cannot equal a pointer it already has.
fn take() -> usize {
    // SAFETY: non-zero size.
    let p = std::hint::black_box(unsafe { alloc(layout(SIZE)) });
    assert!(!p.is_null());
    // SAFETY: inside the live block.
    unsafe { p.write_bytes(0x5a, SIZE) };
    p as usize
}

fn give(p: usize) {
    // SAFETY: a block from `take`, freed once.
    unsafe { dealloc(std::hint::black_box(p as *mut u8), layout(SIZE)) };
}

#[test]
fn the_block_freed_last_is_handed_out_next() {
    std::thread::spawn(|| {
        let blocks: Vec<usize> = (0..8).map(|_| take()).collect();
        give(blocks[3]);
        assert_eq!(take(), blocks[3], "a freed block is reused first");
        give(blocks[5]);
        give(blocks[1]);
        assert_eq!(take(), blocks[1]);
        assert_eq!(take(), blocks[5]);
        // A malloc/free pair keeps using one block.
        let p = take();
        give(p);
        for _ in 0..1000 {
            let q = take();
            assert_eq!(q, p);
            give(q);
        }
        for b in blocks {
            give(b);
        }
    })
    .join()
    .unwrap();
}

#[test]
fn pairs_alone_still_reuse_blocks_freed_by_another_thread() {
    std::thread::spawn(|| {
        let keep: Vec<usize> = (0..4).map(|_| take()).collect();
        let remote = take();
        std::thread::spawn(move || give(remote)).join().unwrap();
        // Owner frees go straight back for reuse only up to a budget per collect; past
        // it the free list runs dry, and the collect that refills it takes the remote
        // free. Without the budget, pairs would reuse one block forever.
        let mut seen = false;
        for _ in 0..100_000 {
            let q = take();
            give(q);
            if q == remote {
                seen = true;
                break;
            }
        }
        assert!(seen, "a block freed by another thread was never reused");
        for b in keep {
            give(b);
        }
    })
    .join()
    .unwrap();
}

#[test]
fn a_span_taken_back_from_the_cache_keeps_its_free_list() {
    std::thread::spawn(|| {
        // Three spans' worth of 1 KiB blocks (64 a span); the first span fills first.
        const PER_SPAN: usize = 64 * KIB / SIZE;
        let mut blocks: Vec<usize> = Vec::with_capacity(4 * PER_SPAN);
        for _ in 0..3 * PER_SPAN {
            blocks.push(take());
        }
        let span_of = |p: usize| p & !(64 * KIB - 1);
        let first = span_of(blocks[0]);
        let mut in_first: Vec<usize> = blocks
            .iter()
            .copied()
            .filter(|&p| span_of(p) == first)
            .collect();
        assert_eq!(
            in_first.len(),
            PER_SPAN,
            "the first span holds {PER_SPAN} blocks"
        );
        // Free the first span in an order unlike its address order: it empties, is not
        // the span allocations come from, and goes to the cache.
        in_first.sort_unstable();
        let order: Vec<usize> = (0..PER_SPAN)
            .map(|i| in_first[(i * 7 + 3) % PER_SPAN])
            .collect();
        for &p in &order {
            give(p);
        }
        // Every other span is full: the next allocations take the cached span back,
        // with its blocks in the order they were freed, last freed first (a span
        // formatted again would hand them out from its start).
        let again: Vec<usize> = (0..PER_SPAN).map(|_| take()).collect();
        let expect: Vec<usize> = order.iter().rev().copied().collect();
        assert_eq!(again, expect, "the cached span's blocks, last freed first");
        for p in again {
            give(p);
        }
        for p in blocks {
            if span_of(p) != first {
                give(p);
            }
        }
    })
    .join()
    .unwrap();
}
