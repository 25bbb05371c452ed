//! Rollback (invariant I3): a refused charge changes no usage and no peak anywhere; the
//! only traces it leaves are `failcnt` and the `max` / `oom` / `oom_kill` events of the
//! group that refused it (and the hierarchical `memory.events` of that group's ancestors),
//! in exactly the amounts the charge path of charge.rs implies.
//!
//! The tree is `/<tag>r1/r2/r3/r4` with a sibling beside every level (`/<tag>sib`,
//! `r1/s2`, `r2/s3`, `r3/s4`) and a child below the bottom (`r4/c5`), every group
//! holding some charges. Charges are made to `r4` and refused in turn at `r4`, `r3`,
//! `r2`, `r1` and the root, by setting that level's `memory.max` one page short of what
//! the charge needs (the other levels of the chain get limits with plenty of room).
//! Before and after, every group's `memory.current`, `memory.peak`, `memory.failcnt`,
//! `memory.events`, `memory.events.local` and `memory.stat` are read and compared.
//!
//! Expected counts for a charge of `nr` pages that cannot fit, with no reclaim callbacks,
//! no OOM handler and the `fail` policy (charge.rs):
//! - below `CHARGE_BATCH` pages, a first walk with the whole batch is refused (one
//!   `failcnt`, no event) and the charge is retried with exactly `nr` pages;
//! - every refused exact walk counts one `failcnt` and one `max` event; without `NORETRY`
//!   there are `2 + MAX_RETRIES` of them (before the stock drain, after it, then one per
//!   retry), then one `oom` and one `oom_kill`; with `NORETRY` there is one, and no `oom`.
//!
//! The root's counters are checked: should the tests of this module share a process
//! (nextest gives each its own), they take a lock so that they run one at a time.

use crate::support::rng::Rng;
use cgmalloc::internals::memcg::charge::{MAX_RETRIES, NORETRY};
use cgmalloc::internals::memcg::control;
use cgmalloc::internals::memcg::stock::CHARGE_BATCH;
use cgmalloc::{Charge, Group};
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};

const PAGE: u64 = 4096;
const MAX: usize = 2;
const OOM: usize = 3;
const OOM_KILL: usize = 4;
const EVENT_NAMES: [&str; 6] = ["low", "high", "max", "oom", "oom_kill", "warn"];

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes that round up to exactly `pages` pages.
fn bytes_for(rng: &mut Rng, pages: u64) -> u64 {
    (pages - 1) * PAGE + rng.range(1, PAGE)
}

/// How a failing charge is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    /// `Group::try_charge` (flags 0).
    Api,
    /// `control::charge` with flags 0.
    Control,
    /// `control::charge` with `NORETRY`.
    NoRetry,
}

const HOWS: [How; 3] = [How::Api, How::Control, How::NoRetry];

/// Makes a charge that must be refused; panics with `what` if it is not.
fn failing_charge(g: Group, bytes: u64, how: How, what: &str) {
    let r = match how {
        How::Api => g.try_charge(bytes).map(drop).map_err(|e| e.errno()),
        How::Control => control::charge(g.handle(), bytes, 0),
        How::NoRetry => control::charge(g.handle(), bytes, NORETRY),
    };
    assert_eq!(
        r,
        Err(libc::ENOMEM),
        "{what}: a charge of {bytes} B ({how:?}) was not refused"
    );
}

/// `failcnt`, `max`, `oom` and `oom_kill` a refused charge of `nr` pages counts at the
/// refusing group.
fn expected(nr: u64, how: How) -> [u64; 4] {
    let batch = u64::from(nr < CHARGE_BATCH);
    if how == How::NoRetry {
        [batch + 1, 1, 0, 0]
    } else {
        let rounds = 2 + MAX_RETRIES as u64;
        [batch + rounds, rounds, 1, 1]
    }
}

fn add(a: &mut [u64; 4], b: [u64; 4]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Snap {
    current: u64,
    peak: u64,
    failcnt: u64,
    events: [u64; 6],
    local: [u64; 6],
    stat: BTreeMap<String, u64>,
}

fn parse_events(text: &str) -> [u64; 6] {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text:?}");
    let mut ev = [0; 6];
    for (k, line) in lines.iter().enumerate() {
        let (name, v) = line.split_once(' ').expect("events line");
        assert_eq!(name, EVENT_NAMES[k], "{text:?}");
        ev[k] = v.parse().expect("events value");
    }
    ev
}

fn num(text: &str) -> u64 {
    assert!(text.ends_with('\n'), "{text:?}");
    text.trim_end()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

fn snap(g: Group) -> Snap {
    let rd = |f: &str| g.read(f).unwrap_or_else(|e| panic!("read {f}: {e}"));
    let stat = rd("memory.stat")
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("memory.stat line");
            (k.to_string(), v.parse().expect("memory.stat value"))
        })
        .collect();
    Snap {
        current: num(&rd("memory.current")),
        peak: num(&rd("memory.peak")),
        failcnt: num(&rd("memory.failcnt")),
        events: parse_events(&rd("memory.events")),
        local: parse_events(&rd("memory.events.local")),
        stat,
    }
}

/// The chain (root, r1, r2, r3, r4), the other groups, and the charges they hold.
struct Tree {
    /// root, r1, r2, r3, r4.
    chain: Vec<(Group, String)>,
    /// Siblings at every level and the child of r4.
    others: Vec<(Group, String)>,
    held: Vec<Charge>,
    root_max: String,
}

impl Tree {
    fn new(tag: &str) -> Tree {
        let root_max = Group::root().read("memory.max").unwrap();
        let mut chain = vec![(Group::root(), "/".to_string())];
        let mut others = Vec::new();
        let mut path = String::new();
        for (i, (r, s)) in [("r1", "sib"), ("r2", "s2"), ("r3", "s3"), ("r4", "s4")]
            .iter()
            .enumerate()
        {
            let parent = path.clone();
            let prefix = if i == 0 { tag } else { "" };
            path = format!("{parent}/{prefix}{r}");
            let sib = format!("{parent}/{prefix}{s}");
            chain.push((Group::create(&path).unwrap(), path.clone()));
            others.push((Group::create(&sib).unwrap(), sib));
        }
        let c5 = format!("{path}/c5");
        others.push((Group::create(&c5).unwrap(), c5));
        // Some usage everywhere, of different sizes, through batches and stocks.
        let mut held = Vec::new();
        for (k, (g, _)) in chain.iter().skip(1).chain(&others).enumerate() {
            for j in 0..3 {
                held.push(g.try_charge((k as u64 * 7 + j * 13 + 3) * 1000).unwrap());
            }
        }
        cgmalloc::drain_stocks();
        Tree {
            chain,
            others,
            held,
            root_max,
        }
    }

    fn all(&self) -> impl Iterator<Item = &(Group, String)> {
        self.chain.iter().chain(&self.others)
    }

    fn snaps(&self) -> Vec<Snap> {
        self.all().map(|(g, _)| snap(*g)).collect()
    }

    fn bottom(&self) -> Group {
        self.chain[4].0
    }

    fn pages(g: Group) -> u64 {
        g.stat().unwrap().current / PAGE
    }

    /// Limits for a charge of `nr` pages to r4 refused at chain level `level` (0 = root):
    /// that level one page short, the levels of the chain below and above with room.
    fn limit(&self, level: usize, nr: u64) {
        for (l, (g, _)) in self.chain.iter().enumerate() {
            let usage = Self::pages(*g);
            if l == level {
                g.set_max((usage + nr - 1) * PAGE).unwrap();
            } else if l != 0 {
                g.set_max((usage + 4 * nr + 2000) * PAGE + 123).unwrap();
            }
        }
        if level != 0 {
            Group::root().write("memory.max", &self.root_max).unwrap();
        }
    }

    /// No limits on the chain but the root's own.
    fn unlimit(&self) {
        for (g, _) in &self.chain[1..] {
            g.set_max(u64::MAX).unwrap();
        }
        Group::root().write("memory.max", &self.root_max).unwrap();
    }

    /// Compares two snapshots: nothing may differ but `failcnt` and the `max` / `oom` /
    /// `oom_kill` events of the chain level `level`, by `delta`, and the hierarchical
    /// events of its ancestors by the same amounts.
    fn assert_delta(
        &self,
        before: &[Snap],
        after: &[Snap],
        level: usize,
        delta: [u64; 4],
        what: &str,
    ) {
        for (k, ((_, path), (b, a))) in self.all().zip(before.iter().zip(after)).enumerate() {
            let in_chain = k < self.chain.len();
            let refusing = in_chain && k == level;
            let ancestor = in_chain && k <= level;
            let mut want = b.clone();
            if refusing {
                want.failcnt += delta[0];
                want.local[MAX] += delta[1];
                want.local[OOM] += delta[2];
                want.local[OOM_KILL] += delta[3];
            }
            if ancestor {
                want.events[MAX] += delta[1];
                want.events[OOM] += delta[2];
                want.events[OOM_KILL] += delta[3];
            }
            assert_eq!(
                a.current, b.current,
                "{what}: usage of {path} moved (refusing level {level})"
            );
            assert_eq!(
                a.peak, b.peak,
                "{what}: peak of {path} moved (refusing level {level})"
            );
            assert_eq!(a.stat, b.stat, "{what}: memory.stat of {path} changed");
            assert_eq!(
                *a, want,
                "{what}: {path} (refusing level {level}, delta {delta:?})"
            );
        }
    }

    fn finish(self) {
        Group::root().write("memory.max", &self.root_max).unwrap();
        let Tree {
            chain,
            others,
            held,
            ..
        } = self;
        drop(held);
        cgmalloc::drain_stocks();
        for (g, path) in others.iter().rev().chain(chain[1..].iter().rev()) {
            assert_eq!(g.stat().unwrap().current, 0, "{path} not empty at the end");
            g.destroy()
                .unwrap_or_else(|e| panic!("destroy {path}: {e}"));
        }
    }
}

const LEVEL_NAMES: [&str; 5] = ["root", "r1", "r2", "r3", "r4"];

/// 100 sequential refused charges at every level, each compared before and after, and
/// the whole run compared at the end.
#[test]
fn sequential_refusals_change_nothing_else() {
    let _serial = serial();
    let tree = Tree::new("seq");
    let mut rng = Rng(0x5e9);
    for level in (0..5).rev() {
        let start = tree.snaps();
        let mut total = [0; 4];
        for i in 0..100 {
            let nr = match i % 5 {
                0 => 1,
                1 => rng.range(2, CHARGE_BATCH - 1),
                2 => CHARGE_BATCH,
                3 => rng.range(CHARGE_BATCH + 1, 64),
                _ => rng.range(1, 64),
            };
            let how = HOWS[(i / 5) % 3];
            tree.limit(level, nr);
            let before = tree.snaps();
            let what = format!("level {} charge {i} of {nr} pages", LEVEL_NAMES[level]);
            failing_charge(tree.bottom(), bytes_for(&mut rng, nr), how, &what);
            let after = tree.snaps();
            tree.assert_delta(&before, &after, level, expected(nr, how), &what);
            add(&mut total, expected(nr, how));
        }
        let end = tree.snaps();
        let what = format!("100 refusals at {}", LEVEL_NAMES[level]);
        tree.assert_delta(&start, &end, level, total, &what);
    }
    tree.finish();
}

/// 16 threads making refused charges at the same time, at every level: the counts add
/// up exactly and nothing else moves (a walk's transient increments are all undone, and
/// a refused walk never raises a peak).
#[test]
fn concurrent_refusals_change_nothing_else() {
    let _serial = serial();
    const THREADS: u64 = 16;
    const EACH: u64 = 200;
    let tree = Tree::new("con");
    for (level, nr) in [(4, 1), (3, 31), (2, 32), (1, 64), (0, 5)] {
        tree.limit(level, nr);
        let before = tree.snaps();
        let bottom = tree.bottom();
        let barrier = Arc::new(Barrier::new(THREADS as usize));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut rng = Rng(t * 1000 + level as u64);
                    let mut total = [0; 4];
                    barrier.wait();
                    for i in 0..EACH {
                        let how = HOWS[((t + i) % 3) as usize];
                        let what = format!("thread {t} level {} charge {i}", LEVEL_NAMES[level]);
                        failing_charge(bottom, bytes_for(&mut rng, nr), how, &what);
                        add(&mut total, expected(nr, how));
                    }
                    total
                })
            })
            .collect();
        let mut total = [0; 4];
        for t in threads {
            add(&mut total, t.join().expect("charging thread"));
        }
        let after = tree.snaps();
        let what = format!(
            "{THREADS} threads x {EACH} refusals of {nr} pages at {}",
            LEVEL_NAMES[level]
        );
        tree.assert_delta(&before, &after, level, total, &what);
    }
    tree.finish();
}

/// A refused charge drains the stocks of the over-limit subtree (the ladder's
/// `drain_all_stock`), and only those: a stock of a group outside stays, and no usage
/// moves except by the drained pages; peaks never move.
#[test]
fn refusals_drain_only_the_refusing_subtree() {
    let _serial = serial();
    let tree = Tree::new("stk");
    let sib = tree.others[0].0; // beside r1, outside every refusing subtree but the root's
    for level in (1..5).rev() {
        tree.unlimit();
        // This thread's stock caches the outside sibling.
        let keep = sib.try_charge(PAGE).unwrap();
        let sib_stock = sib.stat().unwrap().stock;
        assert_eq!(
            sib_stock,
            (CHARGE_BATCH - 1) * PAGE,
            "stock after a batched charge"
        );
        // Another thread's stock caches r4, inside every refusing subtree.
        let bottom = tree.bottom();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Charge>();
        let holder = std::thread::spawn(move || {
            ready_tx.send(bottom.try_charge(3 * PAGE).unwrap()).unwrap();
            rx.recv().unwrap(); // keep the thread, and its stock, alive
        });
        let inner = ready_rx.recv().unwrap();
        let inner_stock = (CHARGE_BATCH - 3) * PAGE;
        assert_eq!(bottom.stat().unwrap().stock, inner_stock);
        // One page short even after the inner stock is drained, but not below the usage
        // (a `memory.max` below usage would drain the stocks itself).
        let nr = 40;
        tree.limit(level, nr);
        let (g, _) = &tree.chain[level];
        let usage = g.stat().unwrap().current / PAGE;
        let max = usage - inner_stock / PAGE + nr - 1;
        assert!(max >= usage);
        g.set_max(max * PAGE).unwrap();
        assert_eq!(bottom.stat().unwrap().stock, inner_stock, "set_max drained");
        let before = tree.snaps();
        let what = format!("refusal at {} with stocks", LEVEL_NAMES[level]);
        failing_charge(bottom, nr * PAGE, How::Api, &what);
        let after = tree.snaps();
        assert_eq!(
            sib.stat().unwrap().stock,
            sib_stock,
            "{what}: outside stock drained"
        );
        assert_eq!(bottom.stat().unwrap().stock, 0, "{what}: inside stock kept");
        // Usage fell by the drained stock exactly on r4 and its ancestors; nothing else
        // moved but the refusal's counts.
        let mut want = before.clone();
        for s in want.iter_mut().take(5) {
            s.current -= inner_stock;
            *s.stat.get_mut("stock").unwrap() -= inner_stock;
        }
        let mut after_adj = after.clone();
        for (a, w) in after_adj.iter_mut().zip(&want).take(5) {
            assert_eq!(a.current, w.current, "{what}: usage after the drain");
            assert_eq!(
                a.stat["stock"], w.stat["stock"],
                "{what}: stock after the drain"
            );
            a.current += inner_stock;
            *a.stat.get_mut("stock").unwrap() += inner_stock;
        }
        tree.assert_delta(&before, &after_adj, level, expected(nr, How::Api), &what);
        drop(inner);
        drop(keep);
        tx.send(()).unwrap();
        holder.join().unwrap();
        cgmalloc::drain_stocks();
    }
    tree.finish();
}

/// A charge whose size in whole pages is too large to read back in bytes (`u64::MAX`
/// bytes rounds up to 2^52 pages, 2^64 bytes) must either be refused, changing nothing,
/// or be visible in `memory.current`; it must not succeed and read as 0.
#[test]
fn a_charge_too_large_to_count_is_refused_or_counted() {
    let _serial = serial();
    let g = Group::create("/huge").unwrap();
    let root = Group::root();
    let before = (snap(g), snap(root));
    for bytes in [u64::MAX, u64::MAX - 1, u64::MAX - PAGE + 2] {
        match g.try_charge(bytes) {
            Err(e) => {
                assert_eq!(e.errno(), libc::ENOMEM, "charge of {bytes} B");
                let after = (snap(g), snap(root));
                assert_eq!(
                    after.0.current, before.0.current,
                    "refused {bytes} B moved usage"
                );
                assert_eq!(
                    after.0.peak, before.0.peak,
                    "refused {bytes} B moved the peak"
                );
                assert_eq!(
                    after.1.current, before.1.current,
                    "refused {bytes} B moved the root"
                );
            }
            Ok(c) => {
                let current = g.stat().map(|s| s.current);
                let text = g.read("memory.current").map(|t| num(&t));
                let root_text = root.read("memory.current").map(|t| num(&t));
                drop(c);
                for (what, v) in [
                    ("stat().current", current),
                    ("memory.current", text),
                    ("root memory.current", root_text),
                ] {
                    let v = v.unwrap();
                    assert!(
                        v >= bytes,
                        "a charge of {bytes} B succeeded but {what} reads {v} \
                         (pages * 4096 wrapped around)"
                    );
                }
            }
        }
    }
    cgmalloc::drain_stocks();
    assert_eq!(g.stat().unwrap().current, 0);
    g.destroy().unwrap();
}
