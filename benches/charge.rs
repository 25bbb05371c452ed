//! The cost of a charge: stock hits, stock misses (the hierarchical counter walk) at
//! depths 1, 4 and 8, and one against two threads charging one group.
//!
//! Run with `cargo bench --bench charge -- --warm-up-time 1 --measurement-time 3`.
//! Targets (DESIGN.md): a stock hit ≤ 5 ns; an uncontended depth-4 counter charge
//! ≤ 60 ns.

use cgmalloc::internals::memcg::charge;
use cgmalloc::internals::memcg::counter::{self, Hierarchy};
use cgmalloc::internals::memcg::table::GROUPS;
use cgmalloc::Group;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// A charge of more pages than a stock holds: it bypasses the stock both ways.
const MISS_PAGES: u64 = 33;
/// Pages a stock holds; a full stock serves this many 1-page charges.
const BATCH: u64 = 32;

/// Creates `/<top>/l2/.../l<depth>` and returns the deepest group.
fn group_at_depth(top: &str, depth: usize) -> Group {
    let mut path = format!("/{top}");
    let mut g = Group::create(&path).expect("create bench group");
    for level in 2..=depth {
        path.push_str(&format!("/l{level}"));
        g = Group::create(&path).expect("create bench group");
    }
    g
}

/// The slot id the charge functions take.
fn id_of(g: &Group) -> u32 {
    (g.handle() & 0xffff) as u32
}

fn stock_hit(c: &mut Criterion) {
    let g = group_at_depth("bench-stock", 4);
    let id = id_of(&g);
    let _enter = g.enter().expect("enter bench group");
    // Fill this thread's stock: a miss stocks 31 pages, the uncharge puts one back.
    charge::try_charge(id, 1, 0).expect("charge");
    charge::uncharge(id, 1);

    let mut grp = c.benchmark_group("stock_hit");
    grp.bench_function("charge1+uncharge1", |b| {
        b.iter(|| {
            charge::try_charge(black_box(id), black_box(1), 0).unwrap();
            charge::uncharge(black_box(id), black_box(1));
        })
    });
    // Charges only: at most 32 from a full stock, timed; the uncharges that refill it
    // are not.
    grp.bench_function("charge1_only", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                let start = Instant::now();
                for _ in 0..n {
                    charge::try_charge(black_box(id), black_box(1), 0).unwrap();
                }
                timed += start.elapsed();
                for _ in 0..n {
                    charge::uncharge(id, 1);
                }
                left -= n;
            }
            timed
        })
    });
    grp.finish();
}

fn stock_miss(c: &mut Criterion) {
    let mut grp = c.benchmark_group("stock_miss");
    for depth in [1usize, 4, 8] {
        let g = group_at_depth(&format!("bench-miss{depth}"), depth);
        let id = id_of(&g);
        // The public charge path with a charge the stock cannot take: counter walk,
        // threshold and `high` checks, then the uncharge walk.
        grp.bench_with_input(
            BenchmarkId::new("charge33+uncharge33", depth),
            &id,
            |b, &id| {
                b.iter(|| {
                    charge::try_charge(black_box(id), black_box(MISS_PAGES), 0).unwrap();
                    charge::uncharge(black_box(id), black_box(MISS_PAGES));
                })
            },
        );
        // The raw hierarchical walks (`page_counter_try_charge`, `page_counter_uncharge`).
        grp.bench_with_input(
            BenchmarkId::new("counter_charge1+uncharge1", depth),
            &id,
            |b, &id| {
                b.iter(|| {
                    counter::try_charge(&GROUPS, black_box(id), black_box(1)).unwrap();
                    GROUPS.uncharge(black_box(id), black_box(1));
                })
            },
        );
        // The charge walk alone; the uncharges are not timed.
        grp.bench_with_input(
            BenchmarkId::new("counter_charge1_only", depth),
            &id,
            |b, &id| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(1024);
                        let start = Instant::now();
                        for _ in 0..n {
                            counter::try_charge(&GROUPS, black_box(id), black_box(1)).unwrap();
                        }
                        timed += start.elapsed();
                        GROUPS.uncharge(id, n);
                        left -= n;
                    }
                    timed
                })
            },
        );
    }
    grp.finish();
}

/// Runs `pair` `iters` times on each of `threads` threads at once; the wall time from a
/// common start to the last thread's end, so one iteration is one pair on every thread.
fn wall_time(threads: usize, iters: u64, pair: impl Fn() + Sync) -> Duration {
    let start_line = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start_line.wait();
                    for _ in 0..iters {
                        pair();
                    }
                })
            })
            .collect();
        start_line.wait();
        let start = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        start.elapsed()
    })
}

fn contended(c: &mut Criterion) {
    let g = group_at_depth("bench-shared", 1);
    let id = id_of(&g);
    let mut grp = c.benchmark_group("one_group");
    for threads in [1usize, 2] {
        grp.bench_with_input(
            BenchmarkId::new("counter_charge1+uncharge1/threads", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    wall_time(threads, iters, || {
                        counter::try_charge(&GROUPS, black_box(id), 1).unwrap();
                        GROUPS.uncharge(black_box(id), 1);
                    })
                })
            },
        );
        grp.bench_with_input(
            BenchmarkId::new("charge33+uncharge33/threads", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    wall_time(threads, iters, || {
                        charge::try_charge(black_box(id), MISS_PAGES, 0).unwrap();
                        charge::uncharge(black_box(id), MISS_PAGES);
                    })
                })
            },
        );
    }
    grp.finish();
    // Every pair returned its pages.
    assert_eq!(GROUPS.counter(id).usage(), 0);
}

criterion_group!(benches, stock_hit, stock_miss, contended);
criterion_main!(benches);
