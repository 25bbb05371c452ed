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
//!
//! Criterion measures one benchmark after another, so on a shared machine two rows may
//! differ by the load of the moment; `side_by_side` runs the same workloads in
//! interleaved rounds for ratios.

mod common;

use cgmalloc::CgMalloc;
use common::{cross_thread, limited_group, pairs, realloc_growth, SIZES};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mimalloc::MiMalloc;
use std::alloc::System;

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
