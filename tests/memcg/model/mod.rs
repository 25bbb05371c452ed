//! Model-based test of the accounting engine, through the public Rust API.
//!
//! Each seed runs a random sequence of operations on a small tree of groups below its own
//! top group `/m/t<seed>` (at most three levels below it): create, destroy, `memory.max` /
//! `memory.high` / `memory.low` / `memory.min` writes, explicit charges (`try_charge`,
//! `charge_force`, and `NORETRY` charges through `memcg::control::charge`), uncharges
//! (dropping a `Charge`), `drain_stocks()`, `enter()` guards, OOM policy writes and
//! peak / failcnt resets. The same operations run against a sequential model of the
//! engine: hierarchical page counters, the calling thread's stock (one word: group slot
//! and pages, as in stock.rs), the charge ladder of charge.rs (batch, retry with the
//! exact size, `max` event, stock drain, `MAX_RETRIES` rounds, OOM policy) and the group
//! lifecycle (live → dying → freed). After every step every group's counters, limits,
//! events and statistics must match the model exactly, and the invariants of DESIGN.md
//! are checked on the library's own numbers: I1 (hierarchy), I2 (limit), I3 (rollback),
//! I5 (quiescence, at the end of each seed) and I6 (peak ≥ current, events only grow).
//!
//! It is one test: every property is checked after every step of the same sequences, and
//! its last assertion (that the sequences reached every path they are meant to: charges
//! through the counters, refused, forced, succeeding after the stock drain, sent as
//! `NORETRY` to avoid throttling; dying groups freed by an uncharge; `high` events) is
//! over all the seeds. It needs a process of its own (the stock and `drain_stocks()` are
//! process-wide), which nextest gives every test.
//!
//! - `CGMALLOC_MODEL_SEED=N` runs seed N alone (every failure message names its seed);
//! - `CGMALLOC_MODEL_SEEDS=N` runs seeds 0..N (default 1,000) and
//!   `CGMALLOC_MODEL_OPS=N` sets the operations per seed (default 100).
//!
//! `memory.high` throttling sleeps: a flags-0 or forced charge that the model predicts
//! would leave some level above `high` is sent as a `NORETRY` charge instead (which counts
//! the same `high` events but neither reclaims nor sleeps).
//!
//! The model is in `engine.rs`, a seed's run in `run.rs`, the checks made after every
//! step in `checks.rs` and the operations in `ops.rs`.

mod checks;
mod engine;
mod ops;
mod run;

use cgmalloc::Group;
use run::Run;

const PAGE: u64 = 4096;
const UNLIMITED: u64 = u64::MAX;
/// Levels below the seed's top group.
const MAX_LEVEL: u32 = 3;
/// `level` of the root and of `/m`, which are outside the seed's tree.
const OUTSIDE: u32 = u32::MAX;

const LOW: usize = 0;
const HIGH: usize = 1;
const MAX: usize = 2;
const OOM: usize = 3;
const OOM_KILL: usize = 4;
const EVENT_NAMES: [&str; 6] = ["low", "high", "max", "oom", "oom_kill", "warn"];

fn parse_events(text: &str) -> [u64; 6] {
    let mut ev = [0; 6];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "events file {text:?}");
    assert!(text.ends_with('\n'), "events file {text:?}");
    for (k, line) in lines.iter().enumerate() {
        let (name, v) = line.split_once(' ').expect("events line");
        assert_eq!(name, EVENT_NAMES[k], "events file {text:?}");
        ev[k] = v.parse().expect("events value");
    }
    ev
}

fn parse_kv(text: &str) -> Vec<(String, u64)> {
    assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
    text.lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("key value line");
            (k.to_string(), v.parse().expect("value"))
        })
        .collect()
}

fn kv(kvs: &[(String, u64)], key: &str) -> u64 {
    kvs.iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no key {key} in {kvs:?}"))
        .1
}

fn bytes_of(pages: u64) -> u64 {
    if pages == UNLIMITED {
        u64::MAX
    } else {
        pages * PAGE
    }
}

fn limit_text(pages: u64) -> String {
    if pages == UNLIMITED {
        "max\n".to_string()
    } else {
        format!("{}\n", pages * PAGE)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

#[test]
fn model() {
    match Group::create("/m") {
        Ok(_) => {}
        Err(e) => assert_eq!(e.errno(), libc::EEXIST, "create /m: {e}"),
    }
    let ops = env_u64("CGMALLOC_MODEL_OPS").unwrap_or(100) as usize;
    let seeds: Vec<u64> = match env_u64("CGMALLOC_MODEL_SEED") {
        Some(s) => vec![s],
        None => (0..env_u64("CGMALLOC_MODEL_SEEDS").unwrap_or(1000)).collect(),
    };
    let many = seeds.len() >= 100;
    let mut tally = [0u64; 6];
    let mut high_events = 0;
    for seed in seeds {
        let mut run = Run::new(seed);
        let high0 = run.m.nodes[1].events[HIGH];
        for _ in 0..ops {
            run.one_op();
        }
        high_events += run.m.nodes[1].events[HIGH] - high0;
        run.finish();
        for (t, r) in tally.iter_mut().zip(run.tally) {
            *t += r;
        }
    }
    eprintln!(
        "model: charges walked {}, refused {}, forced {}, ok after drain {}, \
         sent NORETRY {}, dying freed by uncharge {}; high events {high_events}",
        tally[0], tally[1], tally[2], tally[3], tally[4], tally[5]
    );
    if many {
        // The sequences must reach the interesting paths, or the test proves little.
        assert!(tally.iter().all(|&t| t > 0), "paths not reached: {tally:?}");
        assert!(high_events > 0, "no high events");
    }
}
