//! The workloads of the allocator benchmarks, shared by `alloc` (criterion) and
//! `side_by_side` (interleaved rounds): each runs `iters` operations through a
//! `GlobalAlloc` and returns the time they took.

use cgmalloc::Group;
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Block sizes of the `pair` benchmarks.
pub const SIZES: [usize; 7] = [16, 64, 256, 1024, 8 << 10, 64 << 10, 1 << 20];

/// The child group with a limit (far above the benchmarks' need) that the
/// `cgmalloc-limited` rows run in.
pub fn limited_group() -> Group {
    let g = Group::open("/bench")
        .or_else(|_| Group::create("/bench"))
        .unwrap();
    g.set_max(1 << 40).unwrap();
    g
}

/// `iters` times: allocate a block of `size` bytes, write it, free it.
pub fn pairs<A: GlobalAlloc>(a: &A, size: usize, iters: u64) -> Duration {
    let layout = Layout::from_size_align(size, 16).unwrap();
    let start = Instant::now();
    for _ in 0..iters {
        // SAFETY: a non-zero layout; the block is written once and freed with its layout.
        unsafe {
            let p = a.alloc(layout);
            black_box(p).write(1);
            a.dealloc(p, layout);
        }
    }
    start.elapsed()
}

/// A producer allocates `iters` 64-byte blocks and hands them to a consumer thread,
/// which frees them.
pub fn cross_thread<A: GlobalAlloc + Sync>(a: &A, iters: u64) -> Duration {
    let layout = Layout::from_size_align(64, 16).unwrap();
    let (tx, rx) = mpsc::sync_channel::<usize>(1024);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            for p in rx {
                // SAFETY: blocks from the producer, freed once with their layout.
                unsafe { a.dealloc(p as *mut u8, layout) };
            }
        });
        for _ in 0..iters {
            // SAFETY: a non-zero layout.
            let p = unsafe { a.alloc(layout) };
            tx.send(p as usize).unwrap();
        }
        drop(tx);
    });
    start.elapsed()
}

/// `iters` times: grow a buffer by doubling from 16 B to 1 MiB, then free it.
pub fn realloc_growth<A: GlobalAlloc>(a: &A, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let mut size = 16;
        // SAFETY: layouts are non-zero; every block is reallocated or freed with the
        // layout it has.
        unsafe {
            let mut p = a.alloc(Layout::from_size_align(size, 16).unwrap());
            while size < 1 << 20 {
                p = a.realloc(p, Layout::from_size_align(size, 16).unwrap(), size * 2);
                size *= 2;
                black_box(p).write(1);
            }
            a.dealloc(p, Layout::from_size_align(size, 16).unwrap());
        }
    }
    start.elapsed()
}
