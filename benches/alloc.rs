//! Allocator benchmarks: cgmalloc against `System` (glibc) and the `mimalloc` crate, each
//! called through `GlobalAlloc` in the same binary, so the figures are side by side.
//!
//! `cargo bench --no-default-features --bench alloc`
//!
//! - `pair/<size>`: malloc + free of one block, 16 B to 1 MiB;
//! - `cross_thread`: a producer allocates 64-byte blocks, a consumer thread frees them;
//! - `realloc_growth`: a buffer grown by doubling from 16 B to 1 MiB, then freed;
//! - `cgmalloc-limited`: cgmalloc with the thread in a child group with a limit
//!   (accounting on), against `cgmalloc` in the root.

use cgmalloc::{CgMalloc, Group};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SIZES: [usize; 7] = [16, 64, 256, 1024, 8 << 10, 64 << 10, 1 << 20];

fn limited_group() -> Group {
    let g = Group::open("/bench")
        .or_else(|_| Group::create("/bench"))
        .unwrap();
    g.set_max(1 << 40).unwrap();
    g
}

fn pairs<A: GlobalAlloc>(a: &A, size: usize, iters: u64) -> Duration {
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

fn cross_thread<A: GlobalAlloc + Sync>(a: &A, iters: u64) -> Duration {
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

fn realloc_growth<A: GlobalAlloc>(a: &A, iters: u64) -> Duration {
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

fn bench(c: &mut Criterion) {
    let limited = limited_group();
    let mut g = c.benchmark_group("pair");
    for size in SIZES {
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("cgmalloc", size), &size, |b, &s| {
            b.iter_custom(|n| pairs(&CgMalloc, s, n))
        });
        g.bench_with_input(
            BenchmarkId::new("cgmalloc-limited", size),
            &size,
            |b, &s| {
                b.iter_custom(|n| {
                    let _in = limited.enter().unwrap();
                    pairs(&CgMalloc, s, n)
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("system", size), &size, |b, &s| {
            b.iter_custom(|n| pairs(&System, s, n))
        });
        g.bench_with_input(BenchmarkId::new("mimalloc", size), &size, |b, &s| {
            b.iter_custom(|n| pairs(&MiMalloc, s, n))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("cross_thread");
    g.bench_function("cgmalloc", |b| {
        b.iter_custom(|n| cross_thread(&CgMalloc, n))
    });
    g.bench_function("cgmalloc-limited", |b| {
        b.iter_custom(|n| {
            let _in = limited.enter().unwrap();
            cross_thread(&CgMalloc, n)
        })
    });
    g.bench_function("system", |b| b.iter_custom(|n| cross_thread(&System, n)));
    g.bench_function("mimalloc", |b| {
        b.iter_custom(|n| cross_thread(&MiMalloc, n))
    });
    g.finish();

    let mut g = c.benchmark_group("realloc_growth");
    g.bench_function("cgmalloc", |b| {
        b.iter_custom(|n| realloc_growth(&CgMalloc, n))
    });
    g.bench_function("cgmalloc-limited", |b| {
        b.iter_custom(|n| {
            let _in = limited.enter().unwrap();
            realloc_growth(&CgMalloc, n)
        })
    });
    g.bench_function("system", |b| b.iter_custom(|n| realloc_growth(&System, n)));
    g.bench_function("mimalloc", |b| {
        b.iter_custom(|n| realloc_growth(&MiMalloc, n))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
