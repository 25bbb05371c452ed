//! Stress: 8 threads × 250,000 explicit charge / uncharge operations over 16 groups in
//! three levels below `/s`, with random sizes from 1 B to 256 KiB, while another thread
//! keeps moving `memory.max` (to values below the current usage, with room, and back to
//! `max`) and `memory.high`. Workers move between groups with `enter()` guards, keep the
//! charges that succeed, drop them later, and hand some to other threads to drop.
//!
//! At the end, with every charge dropped and every stock drained, every group must read
//! exactly 0 (I5), with `memory.peak` ≥ `memory.current` and `memory.stat` counting
//! exactly the charges that succeeded; `memory.events` must be the sum of the
//! `memory.events.local` of the subtree; events never go down while the test runs (I6).
//!
//! `memory.high` throttles a charge that leaves usage above it (up to 2 s of sleep), so
//! `high` is only moved in the `/s/d` subtree, whose charges are all made with `NORETRY`
//! (which counts `high` events but neither reclaims nor sleeps); elsewhere `high` stays
//! `max`.
//!
//! `CGMALLOC_STRESS_OPS=N` changes the operations per worker.

use super::events;
use crate::support::rng::Rng;
use cgmalloc::internals::memcg::charge::NORETRY;
use cgmalloc::internals::memcg::control;
use cgmalloc::{Charge, Group};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const PAGE: u64 = 4096;
const WORKERS: usize = 8;
const OPS: u64 = 250_000;
/// Charges a worker keeps at most.
const KEEP: usize = 48;

const PATHS: [&str; 16] = [
    "/s/a", "/s/b", "/s/c", "/s/d", "/s/a/x", "/s/a/y", "/s/b/x", "/s/b/y", "/s/c/x", "/s/c/y",
    "/s/d/x", "/s/d/y", "/s/a/x/q", "/s/b/x/q", "/s/c/x/q", "/s/d/x/q",
];

/// Groups whose charges are `NORETRY` and whose `memory.high` moves.
fn quiet(i: usize) -> bool {
    PATHS[i].starts_with("/s/d")
}

/// A charge held by the test: through the Rust API, or a raw `NORETRY` one returned with
/// `control::uncharge` when dropped.
enum Held {
    Api(#[allow(dead_code)] Charge),
    Raw { handle: u64, bytes: u64 },
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Held::Raw { handle, bytes } = *self {
            assert_eq!(
                control::uncharge(handle, bytes),
                Ok(()),
                "uncharge of {bytes} B"
            );
        }
    }
}

fn size(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0..=4 => rng.range(1, 16 << 10),
        5..=7 => rng.range(1, 64 << 10),
        _ => rng.range(1, 256 << 10),
    }
}

fn local_events(g: Group) -> [u64; 6] {
    let text = g.read("memory.events.local").unwrap();
    let v: Vec<u64> = text
        .lines()
        .map(|l| l.split_once(' ').unwrap().1.parse().unwrap())
        .collect();
    v.try_into().unwrap()
}

fn stat_value(g: Group, key: &str) -> u64 {
    let text = g.read("memory.stat").unwrap();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {key} in memory.stat: {text}"))
}

/// What a worker did, by group.
#[derive(Default)]
struct Counts {
    ok: [u64; 16],
    refused: [u64; 16],
}

fn worker(
    t: usize,
    ops: u64,
    groups: Arc<Vec<Group>>,
    exchange: Arc<Mutex<Vec<Held>>>,
    barrier: Arc<Barrier>,
) -> Counts {
    let mut rng = Rng(0xc0ffee ^ (t as u64) << 32);
    let mut held: Vec<Held> = Vec::with_capacity(KEEP + 1);
    let mut guard = None;
    let mut counts = Counts::default();
    barrier.wait();
    for _ in 0..ops {
        let r = rng.below(1000);
        if r < 560 {
            let i = rng.below(16) as usize;
            let g = groups[i];
            let bytes = size(&mut rng);
            let got = if quiet(i) {
                match control::charge(g.handle(), bytes, NORETRY) {
                    Ok(()) => Some(Held::Raw {
                        handle: g.handle(),
                        bytes,
                    }),
                    Err(e) => {
                        assert_eq!(e, libc::ENOMEM, "NORETRY charge of {}", PATHS[i]);
                        None
                    }
                }
            } else if rng.chance(2) {
                Some(Held::Api(g.charge_force(bytes)))
            } else {
                match g.try_charge(bytes) {
                    Ok(c) => {
                        assert_eq!(c.bytes(), bytes);
                        Some(Held::Api(c))
                    }
                    Err(e) => {
                        assert_eq!(e.errno(), libc::ENOMEM, "charge of {}", PATHS[i]);
                        None
                    }
                }
            };
            match got {
                Some(h) => {
                    counts.ok[i] += 1;
                    held.push(h);
                }
                None => counts.refused[i] += 1,
            }
            if held.len() > KEEP {
                let k = rng.below(held.len() as u64) as usize;
                drop(held.swap_remove(k));
            }
        } else if r < 960 {
            if !held.is_empty() {
                let k = rng.below(held.len() as u64) as usize;
                drop(held.swap_remove(k));
            }
        } else if r < 980 {
            // Hand a charge over, or drop one another thread handed over.
            let mut ex = exchange.lock().unwrap();
            if rng.chance(50) && !held.is_empty() {
                let k = rng.below(held.len() as u64) as usize;
                ex.push(held.swap_remove(k));
            } else if !ex.is_empty() {
                let k = rng.below(ex.len() as u64) as usize;
                let h = ex.swap_remove(k);
                drop(ex);
                drop(h);
            }
        } else if guard.is_some() && rng.chance(50) {
            guard = None;
        } else {
            let i = rng.below(16) as usize;
            // Drop the old guard first, so that guards unwind in order.
            drop(guard.take());
            guard = Some(groups[i].enter().expect("enter"));
            assert_eq!(Group::current(), groups[i]);
        }
    }
    drop(guard);
    // Half the workers exit attached: thread exit must detach them (the groups are
    // destroyed at the end, which an attached thread would prevent).
    if t % 2 == 1 {
        let i = rng.below(16) as usize;
        groups[i].attach_current_thread().expect("attach");
        assert_eq!(Group::current(), groups[i]);
    }
    // Some of what is left goes to the other threads, the rest is dropped here.
    let mut ex = exchange.lock().unwrap();
    for (k, h) in held.into_iter().enumerate() {
        if k % 2 == 0 {
            ex.push(h);
        }
    }
    counts
}

/// Moves limits until told to stop; checks that events never go down meanwhile. Now and
/// then creates a group beside the others, charges it, hands the charges to the workers
/// and destroys it: the workers' drops free it while it is dying. Returns the limit
/// changes and the charges made to those groups.
fn limiter(
    groups: Arc<Vec<Group>>,
    exchange: Arc<Mutex<Vec<Held>>>,
    stop: Arc<AtomicBool>,
) -> (u64, u64) {
    let mut tmp_charges = 0;
    let mut tmp = 0;
    let mut rng = Rng(0x11_31);
    let mut seen = vec![[0u64; 5]; 17];
    let all: Vec<Group> = groups
        .iter()
        .copied()
        .chain([Group::open("/s").unwrap()])
        .collect();
    let mut changes = 0;
    while !stop.load(Ordering::Relaxed) {
        let i = rng.below(17) as usize;
        let g = all[i];
        let cur = g.stat().unwrap().current / PAGE;
        let pages = match rng.below(10) {
            0..=3 => None,
            4..=5 => Some(cur / 2),
            6 => Some(cur.saturating_sub(rng.range(1, 8))),
            _ => Some(cur + rng.range(0, cur + 64)),
        };
        let value = match pages {
            None => "max".to_string(),
            Some(p) => format!("{}", p * PAGE + rng.below(PAGE)),
        };
        let file = if i < 16 && quiet(i) && rng.chance(40) {
            "memory.high"
        } else {
            "memory.max"
        };
        g.write(file, &value).unwrap();
        changes += 1;
        for (k, g) in all.iter().enumerate() {
            let now = events(*g);
            for e in 0..5 {
                assert!(now[e] >= seen[k][e], "I6: events of group {k} went down");
            }
            seen[k] = now;
        }
        if changes % 16 == 0 {
            tmp += 1;
            let path = format!("/s/tmp{tmp}");
            let g = Group::create(&path).unwrap_or_else(|e| panic!("create {path}: {e}"));
            let mut ex = exchange.lock().unwrap();
            for _ in 0..rng.range(1, 8) {
                // `/s` may be at its limit.
                if let Ok(c) = g.try_charge(size(&mut rng)) {
                    ex.push(Held::Api(c));
                    tmp_charges += 1;
                }
            }
            drop(ex);
            g.destroy()
                .unwrap_or_else(|e| panic!("destroy {path}: {e}"));
            assert_eq!(Group::open(&path).map_err(|e| e.errno()), Err(libc::ENOENT));
        }
        // Let the workers run under these limits for a moment (a sleep would hand the
        // core to the workers for a whole time slice on a busy machine).
        let pause = Instant::now() + Duration::from_micros(rng.range(20, 200));
        while Instant::now() < pause {
            std::thread::yield_now();
        }
    }
    (changes, tmp_charges)
}

#[test]
fn stress() {
    let ops = std::env::var("CGMALLOC_STRESS_OPS")
        .ok()
        .map(|v| v.parse().expect("CGMALLOC_STRESS_OPS"))
        .unwrap_or(OPS);
    let top = Group::create("/s").unwrap();
    let groups: Arc<Vec<Group>> = Arc::new(
        PATHS
            .iter()
            .map(|p| Group::create(p).unwrap_or_else(|e| panic!("create {p}: {e}")))
            .collect(),
    );
    // `/s/d` starts with a `memory.high` its first charges pass, so that `high` events are
    // counted whatever limits the limiter happens to pick (39 changes in a fast run may
    // never put a `high` below the usage of the `/s/d` subtree).
    Group::open("/s/d")
        .unwrap()
        .write("memory.high", "4K")
        .unwrap();
    let exchange = Arc::new(Mutex::new(Vec::new()));
    let barrier = Arc::new(Barrier::new(WORKERS));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let lim = {
        let (groups, exchange, stop) = (groups.clone(), exchange.clone(), stop.clone());
        std::thread::spawn(move || limiter(groups, exchange, stop))
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|t| {
            let (groups, exchange, barrier) = (groups.clone(), exchange.clone(), barrier.clone());
            std::thread::spawn(move || worker(t, ops, groups, exchange, barrier))
        })
        .collect();
    let mut ok = [0u64; 16];
    let mut refused = [0u64; 16];
    for w in workers {
        let c = w.join().expect("worker");
        for i in 0..16 {
            ok[i] += c.ok[i];
            refused[i] += c.refused[i];
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (changes, tmp_charges) = lim.join().expect("limiter");
    let elapsed = started.elapsed();

    // Everything back.
    let left = std::mem::take(&mut *exchange.lock().unwrap());
    drop(left);
    cgmalloc::drain_stocks();

    let all: Vec<(Group, &str)> = groups
        .iter()
        .copied()
        .zip(PATHS)
        .chain([(top, "/s")])
        .collect();
    let below = |p: &str, q: &str| q == p || q.starts_with(&format!("{p}/"));
    for &(g, p) in &all {
        let s = g.stat().unwrap();
        assert_eq!(
            s.current, 0,
            "I5: {p} memory.current after everything was returned"
        );
        assert_eq!(g.read("memory.current").unwrap(), "0\n", "{p}");
        assert_eq!(s.stock, 0, "{p} stock after drain_stocks");
        assert!(s.peak >= s.current, "I6: {p} peak below current");
        assert_eq!(stat_value(g, "explicit"), 0, "{p} explicit");
        assert_eq!(stat_value(g, "stock"), 0, "{p} stock");
        // Exactly the charges that succeeded, charged and uncharged once each.
        let mut want: u64 = (0..16).filter(|&i| below(p, PATHS[i])).map(|i| ok[i]).sum();
        if p == "/s" {
            // The destroyed groups' statistics were folded into /s when they were freed.
            want += tmp_charges;
        }
        assert_eq!(stat_value(g, "nr_charges"), want, "{p} nr_charges");
        assert_eq!(stat_value(g, "nr_uncharges"), want, "{p} nr_uncharges");
        if want > 0 {
            assert!(s.peak > 0, "{p}: charged, yet memory.peak is 0");
        }
        // Hierarchical events are the local events of the subtree.
        let mut sum = [0u64; 6];
        for &(h, q) in &all {
            if below(p, q) {
                for (x, y) in sum.iter_mut().zip(local_events(h)) {
                    *x += y;
                }
            }
        }
        // `Stat` has no `warn` (nothing here sets `memory.enforce`): it stays 0.
        assert_eq!(sum[5], 0, "{p}: warn events");
        assert_eq!(
            events(g)[..],
            sum[..5],
            "{p}: memory.events != sum of events.local below"
        );
        assert_eq!(
            g.read("cgroup.threads").unwrap(),
            "",
            "{p}: threads still attached"
        );
    }
    assert_eq!(Group::root().stat().unwrap().current, 0, "I5: root");
    // Every destroyed group was freed with its last charge.
    assert_eq!(
        top.read("cgroup.stat").unwrap(),
        "nr_descendants 16\nnr_dying_descendants 0\n",
        "/s cgroup.stat"
    );
    let total_ok: u64 = ok.iter().sum();
    let total_refused: u64 = refused.iter().sum();
    let ev = events(top);
    eprintln!(
        "stress: {} ops in {elapsed:?}: {total_ok} charges, {total_refused} refused, \
         {changes} limit changes, {tmp_charges} charges to destroyed groups, /s events {ev:?}",
        ops * WORKERS as u64
    );
    // The run must have reached the limits, or it proved little.
    assert!(
        total_ok > 0 && total_refused > 0,
        "no refusals: limits never bit"
    );
    assert!(ev[2] > 0 && ev[1] > 0, "no max or high events: {ev:?}");
    for (g, p) in all.into_iter().take(16).rev() {
        g.destroy().unwrap_or_else(|e| panic!("destroy {p}: {e}"));
    }
    top.destroy().unwrap();
}
