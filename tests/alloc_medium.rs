//! Medium blocks (above 32 KiB, up to 1 MiB): a span of their own inside a segment,
//! charged to the page, with `CgMalloc` as the global allocator.
//!
//! - Each block is charged exactly its size rounded up to 4 KiB (`memory.stat` `large`),
//!   and everything returns to 0 once freed and reclaimed.
//! - A block freed by a thread other than its allocator is uncharged by that free, while
//!   the allocating thread sleeps (it does not wait for the owner to collect it).
//! - Alignments up to 64 KiB; zeroed blocks are zero also when they reuse memory a
//!   freed block dirtied; contents survive reuse of the span cache.
//!
//! Interface files are read from outside the group (reading allocates a `String`).

#[global_allocator]
static GLOBAL: cgmalloc::CgMalloc = cgmalloc::CgMalloc;

mod alloc_util;

use alloc_util::*;
use cgmalloc::Group;
use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

const PAGE_BYTES: usize = PAGE as usize;

fn page_round(n: usize) -> u64 {
    n.div_ceil(PAGE_BYTES) as u64 * PAGE
}

struct Raw(*mut u8, Layout);
// SAFETY: plain memory owned by whoever holds it.
unsafe impl Send for Raw {}

/// Sizes on both sides of the slice and page boundaries, up to the largest medium block.
const SIZES: [usize; 10] = [
    32 * KIB + 1,
    40_000,
    64 * KIB - 1,
    64 * KIB,
    64 * KIB + 1,
    100_000,
    200_000,
    300_000,
    MIB - 4096,
    MIB,
];

#[test]
fn medium_blocks_are_charged_to_the_page() {
    let g = Group::create("/med_exact").unwrap();
    let mut blocks = Vec::with_capacity(SIZES.len() * 3);
    {
        let _in = g.enter().unwrap();
        for (k, &size) in SIZES.iter().cycle().take(SIZES.len() * 3).enumerate() {
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null(), "alloc({size})");
            // SAFETY: a live block of `size` bytes.
            unsafe { fill(p, size, k as u64) };
            blocks.push(Raw(p, layout));
        }
    }
    let want: u64 = blocks.iter().map(|r| page_round(r.1.size())).sum();
    let st = kv(&g, "memory.stat");
    assert_eq!(
        st["large"], want,
        "large must be the page-rounded sizes: {st:?}"
    );
    assert_eq!(st["small"], 0, "{st:?}");
    assert_eq!(st["cached"], 0, "{st:?}");
    let sizes: u64 = blocks.iter().map(|r| r.1.size() as u64).sum();
    assert!(st["allocated"] >= sizes, "{st:?}");
    assert_eq!(
        st["allocated"], want,
        "a medium block's usable size is its pages"
    );
    let s = g.stat().unwrap();
    assert_eq!(s.current, want + s.stock, "{st:?}, stat {s:?}");
    {
        let _in = g.enter().unwrap();
        for (k, Raw(p, layout)) in blocks.into_iter().enumerate() {
            // SAFETY: live blocks with their layouts.
            unsafe {
                assert_eq!(check(p, layout.size(), k as u64), None, "{layout:?}");
                dealloc(p, layout);
            }
        }
    }
    let st = kv(&g, "memory.stat");
    assert_eq!(st["allocated"], 0, "{st:?}");
    assert!(st["cached"] <= st["large"], "{st:?}");
    assert_all_returned(&g);
    g.destroy().unwrap();
}

#[test]
fn a_remote_free_uncharges_at_once() {
    let g = Group::create("/med_remote").unwrap();
    const N: usize = 6;
    let slot: Arc<Mutex<Vec<Raw>>> = Arc::new(Mutex::new(Vec::with_capacity(N)));
    let handed = Arc::new(Barrier::new(2));
    let checked = Arc::new(Barrier::new(2));
    let owner = {
        let (slot, handed, checked) = (slot.clone(), handed.clone(), checked.clone());
        thread::spawn(move || {
            {
                let _in = g.enter().unwrap();
                let mut v = slot.lock().unwrap();
                for i in 0..N {
                    let layout = Layout::from_size_align(100_000 + i * 50_000, 16).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { alloc(layout) };
                    assert!(!p.is_null());
                    v.push(Raw(p, layout));
                }
            }
            handed.wait();
            // Asleep (no allocation) until the main thread has freed and checked.
            checked.wait();
        })
    };
    handed.wait();
    let blocks: Vec<Raw> = std::mem::take(&mut *slot.lock().unwrap());
    let charged: u64 = blocks.iter().map(|r| page_round(r.1.size())).sum();
    let before = g.stat().unwrap();
    assert_eq!(stat_key(&g, "large"), charged);
    for Raw(p, layout) in blocks {
        // SAFETY: live blocks with their layouts, freed by a thread that did not
        // allocate them.
        unsafe { dealloc(p, layout) };
    }
    let after = g.stat().unwrap();
    assert_eq!(
        before.current - after.current,
        charged,
        "the frees must uncharge at once: before {before:?}, after {after:?}"
    );
    assert_eq!(stat_key(&g, "large"), 0);
    assert_eq!(stat_key(&g, "allocated"), 0);
    checked.wait();
    owner.join().unwrap();
    assert_all_returned(&g);
    g.destroy().unwrap();
}

#[test]
fn aligned_and_zeroed_medium_blocks() {
    let g = Group::create("/med_align").unwrap();
    {
        let _in = g.enter().unwrap();
        for align in [16, 4096, 32 * KIB, 64 * KIB] {
            for size in [100, 5000, 40_000, 200_000, MIB] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe { alloc(layout) };
                assert!(!p.is_null(), "{layout:?}");
                assert_eq!(p as usize % align, 0, "{layout:?} at {p:?}");
                // SAFETY: a live block of `size` bytes.
                unsafe {
                    fill(p, size, size as u64);
                    assert_eq!(check(p, size, size as u64), None);
                    dealloc(p, layout);
                }
            }
        }
        // Dirty memory, freed, then asked for zeroed: in the span cache, in slices
        // released to the segment, and across sizes.
        for round in 0..4 {
            let sizes = [200_000, 200_000, 200_000, 70_000, 500_000, 1_000_000];
            let dirty: Vec<Raw> = sizes
                .iter()
                .map(|&n| {
                    let layout = Layout::from_size_align(n, 16).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { alloc(layout) };
                    assert!(!p.is_null());
                    // SAFETY: a live block of `n` bytes.
                    unsafe { p.write_bytes(0xa5, n) };
                    Raw(p, layout)
                })
                .collect();
            for Raw(p, layout) in dirty {
                // SAFETY: live blocks with their layouts.
                unsafe { dealloc(p, layout) };
            }
            for &n in sizes.iter().rev() {
                let n = n - round * 4096;
                let layout = Layout::from_size_align(n, 16).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe { alloc_zeroed(layout) };
                assert!(!p.is_null());
                // SAFETY: a live block of `n` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(p, n) };
                let nz = bytes.iter().position(|&b| b != 0);
                assert_eq!(
                    nz, None,
                    "alloc_zeroed({n}) in round {round}: a byte not zero"
                );
                // SAFETY: as above.
                unsafe { dealloc(p, layout) };
            }
        }
    }
    quiesce(&g);
    assert_empty(&g);
    g.destroy().unwrap();
}
