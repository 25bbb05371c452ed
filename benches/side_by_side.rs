//! The workloads of `benches/alloc.rs` for every allocator in interleaved rounds, so
//! that their ratios are measured side by side: each round runs one batch of each
//! allocator (in an order that rotates from round to round), and the table gives each
//! allocator's median time per operation over the rounds and the ratios of medians.
//! `limited / root` is cgmalloc with the thread in a child group with a limit
//! (accounting on) against cgmalloc in the root; `per round` is the median of that
//! ratio taken within each round, which a drift of the machine's load over the run
//! does not move.
//!
//! `cargo bench --no-default-features --bench side_by_side` prints a Markdown table on
//! stdout. `CGMALLOC_BENCH_ROUNDS` (default 21) sets the rounds, `CGMALLOC_BENCH_BATCH_MS`
//! (default 10) the length of one batch.

mod common;

use cgmalloc::CgMalloc;
use common::{cross_thread, limited_group, pairs, realloc_growth, SIZES};
use mimalloc::MiMalloc;
use std::alloc::System;
use std::time::Duration;

/// The allocators, in the table's order.
const NAMES: [&str; 4] = ["system", "mimalloc", "cgmalloc", "cgmalloc-limited"];

/// A workload: runs `iters` operations with allocator `a` (an index into `NAMES`).
type Run<'a> = Box<dyn Fn(usize, u64) -> Duration + 'a>;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{name}: not a number: {v:?}");
            std::process::exit(2)
        }),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.2} ns")
    }
}

/// Operations in one batch of about `batch` for the slowest allocator of a quick probe
/// (each probe run twice, the first warming up: a first call may map and fault in
/// memory the later ones reuse).
fn calibrate(run: &Run, batch: Duration) -> u64 {
    let mut iters = 1u64;
    loop {
        let slowest = (0..NAMES.len())
            .map(|a| {
                run(a, iters);
                run(a, iters)
            })
            .max()
            .unwrap();
        if slowest >= batch / 8 || iters >= 1 << 40 {
            let per = slowest.as_secs_f64() / iters as f64;
            return ((batch.as_secs_f64() / per) as u64).max(1);
        }
        iters *= 2;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        // A test runner asking for tests (`cargo nextest run --all-targets`): none here.
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("side_by_side: a benchmark; run it with `cargo bench --bench side_by_side`");
        return;
    }
    let rounds = env_u64("CGMALLOC_BENCH_ROUNDS", 21).max(1) as usize;
    let batch = Duration::from_millis(env_u64("CGMALLOC_BENCH_BATCH_MS", 10).max(1));
    let limited = limited_group();
    let with = |a: usize, f: &dyn Fn() -> Duration| -> Duration {
        if a == 3 {
            let _in = limited.enter().unwrap();
            f()
        } else {
            f()
        }
    };
    // `each!(a, f(args))` runs workload `f` with allocator `a`, the allocator passed
    // by type (a `dyn GlobalAlloc` would add a call through a pointer per operation).
    macro_rules! each {
        ($a:expr, $f:ident($($arg:expr),*)) => {
            match $a {
                0 => $f(&System, $($arg),*),
                1 => $f(&MiMalloc, $($arg),*),
                a => with(a, &|| $f(&CgMalloc, $($arg),*)),
            }
        };
    }
    let mut benches: Vec<(String, Run)> = SIZES
        .iter()
        .map(|&size| -> (String, Run) {
            (
                format!("pair/{size}"),
                Box::new(move |a, n| each!(a, pairs(size, n))),
            )
        })
        .collect();
    benches.push((
        "cross_thread".into(),
        Box::new(|a, n| each!(a, cross_thread(n))),
    ));
    benches.push((
        "realloc_growth".into(),
        Box::new(|a, n| each!(a, realloc_growth(n))),
    ));

    println!(
        "| benchmark | {} | cgmalloc / system | cgmalloc / mimalloc | limited / root | per round |",
        NAMES.join(" | ")
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, run) in &benches {
        let iters = calibrate(run, batch);
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); NAMES.len()];
        let mut per_round = Vec::with_capacity(rounds);
        for r in 0..rounds {
            let mut t = [0f64; NAMES.len()];
            for k in 0..NAMES.len() {
                let a = (r + k) % NAMES.len();
                t[a] = run(a, iters).as_nanos() as f64 / iters as f64;
            }
            for a in 0..NAMES.len() {
                times[a].push(t[a]);
            }
            per_round.push(t[3] / t[2]);
        }
        let m: Vec<f64> = times.iter_mut().map(|v| median(v)).collect();
        let cells: Vec<String> = m.iter().map(|&x| fmt_ns(x)).collect();
        println!(
            "| `{name}` | {} | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
            cells.join(" | "),
            m[2] / m[0],
            m[2] / m[1],
            m[3] / m[2],
            median(&mut per_round)
        );
        eprintln!("{name}: {iters} operations a batch, {rounds} rounds");
    }
}
