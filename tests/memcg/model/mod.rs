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
//! The test needs a process of its own (the stock and `drain_stocks()` are process-wide),
//! which nextest gives every test.
//!
//! - `CGMALLOC_MODEL_SEED=N` runs seed N alone (every failure message names its seed);
//! - `CGMALLOC_MODEL_SEEDS=N` runs seeds 0..N (default 1,000) and
//!   `CGMALLOC_MODEL_OPS=N` sets the operations per seed (default 100).
//!
//! `memory.high` throttling sleeps: a flags-0 or forced charge that the model predicts
//! would leave some level above `high` is sent as a `NORETRY` charge instead (which counts
//! the same `high` events but neither reclaims nor sleeps).

use crate::support::rng::Rng;
use cgmalloc::internals::memcg::charge::{FORCE, MAX_RETRIES, NORETRY};
use cgmalloc::internals::memcg::control;
use cgmalloc::internals::memcg::stock::CHARGE_BATCH;
use cgmalloc::{Charge, EnterGuard, Group, Stat};

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
const EVENT_NAMES: [&str; 5] = ["low", "high", "max", "oom", "oom_kill"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Live,
    Dying,
    Freed,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Policy {
    Fail,
    Force,
}

#[derive(Clone, Debug)]
struct Node {
    handle: u64,
    slot: u32,
    path: String,
    parent: Option<usize>,
    level: u32,
    st: St,
    usage: u64,
    peak: u64,
    failcnt: u64,
    events: [u64; 5],
    local: [u64; 5],
    max: u64,
    high: u64,
    low: u64,
    min: u64,
    /// Pages of explicit charges held on this group.
    explicit: u64,
    /// Local `nr_charges` / `nr_uncharges`, with freed children folded in.
    nr_charges: u64,
    nr_uncharges: u64,
    /// Live and dying children (the table's `nr_children`).
    children: u32,
    policy: Option<Policy>,
}

impl Node {
    fn new(handle: u64, path: String, parent: Option<usize>, level: u32) -> Node {
        Node {
            handle,
            slot: (handle & 0xffff) as u32,
            path,
            parent,
            level,
            st: St::Live,
            usage: 0,
            peak: 0,
            failcnt: 0,
            events: [0; 5],
            local: [0; 5],
            max: UNLIMITED,
            high: UNLIMITED,
            low: 0,
            min: 0,
            explicit: 0,
            nr_charges: 0,
            nr_uncharges: 0,
            children: 0,
            policy: None,
        }
    }
}

/// What the model says a charge did.
#[derive(Clone, Debug, Default)]
struct Outcome {
    ok: bool,
    /// Charged past the limits (`force()`), not through `done_restock`.
    forced: bool,
    /// Charged through the counters (`done_restock`).
    walked: bool,
    /// `after_charge` would reclaim and throttle (not quiet, some level above `high`).
    throttle: bool,
    /// Levels whose walk refused (each counted one `failcnt`), in order.
    refused: Vec<usize>,
    /// Levels that counted `max` / `oom` / `oom_kill`.
    evented: Vec<usize>,
    /// Stock pages drained back to their group by the ladder.
    drained: Vec<(usize, u64)>,
}

#[derive(Clone)]
struct Model {
    nodes: Vec<Node>,
    /// The calling thread's stock word: the slot it names (if any) and its pages.
    stock: (Option<u32>, u64),
    /// The calling thread's current group.
    current: usize,
}

impl Model {
    fn chain(&self, i: usize) -> Vec<usize> {
        let mut v = Vec::new();
        let mut c = Some(i);
        while let Some(g) = c {
            v.push(g);
            c = self.nodes[g].parent;
        }
        v
    }

    fn is_desc(&self, i: usize, anc: usize) -> bool {
        self.chain(i).contains(&anc)
    }

    fn by_slot(&self, slot: u32) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.st != St::Freed && n.slot == slot)
    }

    fn by_handle(&self, h: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.handle == h)
    }

    fn live_at(&self, path: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.st == St::Live && n.path == path)
    }

    fn count(&mut self, g: usize, ev: usize) {
        self.nodes[g].local[ev] += 1;
        for a in self.chain(g) {
            self.nodes[a].events[ev] += 1;
        }
    }

    /// `counter::try_charge`: all levels or none; the refusing level counts `failcnt`.
    fn walk(&mut self, i: usize, nr: u64) -> Result<(), usize> {
        let chain = self.chain(i);
        for &g in &chain {
            let n = &mut self.nodes[g];
            if n.usage + nr > n.max {
                n.failcnt += 1;
                return Err(g);
            }
        }
        for &g in &chain {
            let n = &mut self.nodes[g];
            n.usage += nr;
            n.peak = n.peak.max(n.usage);
        }
        Ok(())
    }

    fn force(&mut self, i: usize, nr: u64) {
        for g in self.chain(i) {
            let n = &mut self.nodes[g];
            n.usage += nr;
            n.peak = n.peak.max(n.usage);
        }
    }

    fn uncharge_counters(&mut self, i: usize, nr: u64) {
        for g in self.chain(i) {
            let n = &mut self.nodes[g];
            assert!(n.usage >= nr, "model underflow at {}", n.path);
            n.usage -= nr;
        }
        self.free_dead();
    }

    /// Frees every dying group that holds nothing and has no children, cascading.
    fn free_dead(&mut self) {
        loop {
            let Some(i) = self
                .nodes
                .iter()
                .position(|n| n.st == St::Dying && n.usage == 0 && n.children == 0)
            else {
                return;
            };
            assert_eq!(self.nodes[i].explicit, 0, "model: freed with charges");
            self.nodes[i].st = St::Freed;
            let p = self.nodes[i].parent.expect("dying root");
            let (c, u) = (self.nodes[i].nr_charges, self.nodes[i].nr_uncharges);
            let pn = &mut self.nodes[p];
            pn.children -= 1;
            pn.nr_charges += c;
            pn.nr_uncharges += u;
        }
    }

    fn stock_node(&self) -> Option<usize> {
        match self.stock {
            (Some(s), p) if p > 0 => Some(
                self.by_slot(s)
                    .unwrap_or_else(|| panic!("model: stock pages for unknown slot {s}")),
            ),
            _ => None,
        }
    }

    /// `consume_stock`.
    fn consume(&mut self, i: usize, nr: u64) -> bool {
        let slot = self.nodes[i].slot;
        if self.stock.0 == Some(slot) && self.stock.1 >= nr {
            self.stock.1 -= nr;
            true
        } else {
            false
        }
    }

    /// `refill_stock`.
    fn refill(&mut self, i: usize, nr: u64) {
        let slot = self.nodes[i].slot;
        let (g, pages) = self.stock;
        let (keep, old) = if g == Some(slot) {
            (pages + nr, None)
        } else {
            (nr, g.map(|g| (g, pages)))
        };
        let kept = keep.min(CHARGE_BATCH);
        self.stock = (Some(slot), kept);
        if keep > kept {
            self.uncharge_counters(i, keep - kept);
        }
        if let Some((g, pages)) = old {
            if pages > 0 {
                let n = self.by_slot(g).expect("model: old stock of unknown slot");
                self.uncharge_counters(n, pages);
            }
        }
    }

    /// `uncharge` of a live group's pages: through the stock when it caches the group
    /// and has room.
    fn put_back(&mut self, i: usize, nr: u64) {
        let slot = self.nodes[i].slot;
        if self.nodes[i].st == St::Live
            && self.stock.0 == Some(slot)
            && self.stock.1 + nr <= CHARGE_BATCH
        {
            self.stock.1 += nr;
        } else {
            self.uncharge_counters(i, nr);
        }
    }

    /// `drain_all_stock(root)`.
    fn drain_all(&mut self, root: usize) -> Option<(usize, u64)> {
        let n = self.stock_node()?;
        if !self.is_desc(n, root) {
            return None;
        }
        let pages = self.stock.1;
        self.stock = (None, 0);
        self.uncharge_counters(n, pages);
        Some((n, pages))
    }

    fn stock_in(&self, i: usize) -> u64 {
        match self.stock_node() {
            Some(n) if self.is_desc(n, i) => self.stock.1,
            _ => 0,
        }
    }

    fn own(&self, i: usize) -> u64 {
        let stock = match self.stock {
            (Some(s), p) if s == self.nodes[i].slot && self.nodes[i].st != St::Freed => p,
            _ => 0,
        };
        self.nodes[i].explicit + stock
    }

    fn policy(&self, over: usize) -> Policy {
        self.chain(over)
            .into_iter()
            .find_map(|g| self.nodes[g].policy)
            .unwrap_or(Policy::Fail)
    }

    /// `high::after_charge`: counts `high` on every level above it.
    fn after_charge(&mut self, i: usize, quiet: bool) -> bool {
        let mut over_any = false;
        for g in self.chain(i) {
            if self.nodes[g].usage > self.nodes[g].high {
                over_any = true;
                self.count(g, HIGH);
            }
        }
        over_any && !quiet
    }

    /// The charge path of charge.rs for one thread with no reclaim callbacks and no OOM
    /// handlers: stock, batch, exact retry, `max` event, stock drain, `MAX_RETRIES`
    /// rounds, then `FORCE` or the OOM policy.
    fn charge(&mut self, i: usize, nr: u64, flags: u32) -> Outcome {
        let mut out = Outcome::default();
        if nr == 0 {
            out.ok = true;
            return out;
        }
        if nr <= CHARGE_BATCH && self.consume(i, nr) {
            out.ok = true;
            return out;
        }
        let mut batch = nr.max(CHARGE_BATCH);
        let mut retries = MAX_RETRIES;
        let mut drained = false;
        let mut first = true;
        loop {
            if !first && nr <= CHARGE_BATCH && self.consume(i, nr) {
                out.ok = true;
                return out;
            }
            first = false;
            let over = match self.walk(i, batch) {
                Ok(()) => {
                    if batch > nr {
                        self.refill(i, batch - nr);
                    }
                    out.throttle = self.after_charge(i, flags & NORETRY != 0);
                    out.ok = true;
                    out.walked = true;
                    return out;
                }
                Err(over) => over,
            };
            out.refused.push(over);
            if batch > nr {
                batch = nr;
                continue;
            }
            self.count(over, MAX);
            out.evented.push(over);
            if flags & NORETRY != 0 {
                return out;
            }
            let o = &self.nodes[over];
            if o.max.saturating_sub(o.usage) >= nr {
                continue;
            }
            if !drained {
                drained = true;
                if let Some(d) = self.drain_all(over) {
                    out.drained.push(d);
                }
                continue;
            }
            if retries > 0 {
                retries -= 1;
                continue;
            }
            if flags & FORCE != 0 {
                self.force(i, nr);
                out.ok = true;
                out.forced = true;
                return out;
            }
            self.count(over, OOM);
            match self.policy(over) {
                Policy::Force => {
                    self.force(i, nr);
                    out.ok = true;
                    out.forced = true;
                    return out;
                }
                Policy::Fail => {
                    self.count(over, OOM_KILL);
                    return out;
                }
            }
        }
    }
}

enum Kind {
    Api(Charge),
    Raw(u64),
}

struct Held {
    node: usize,
    pages: u64,
    bytes: u64,
    kind: Kind,
}

/// What the library shows of one live group.
#[derive(Clone, Debug)]
struct Obs {
    stat: Stat,
    local: [u64; 5],
}

fn parse_events(text: &str) -> [u64; 5] {
    let mut ev = [0; 5];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "events file {text:?}");
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

struct Run {
    seed: u64,
    rng: Rng,
    m: Model,
    held: Vec<Held>,
    guards: Vec<(EnterGuard, u64)>,
    step: usize,
    log: Vec<String>,
    last: Vec<Option<Obs>>,
    top: usize,
    top_path: String,
    tid: u64,
    /// Paths reached: charges through the counters, refused, forced past `max`,
    /// succeeding after the ladder's stock drain, sent as `NORETRY` to avoid throttling,
    /// dying groups freed by their last uncharge.
    tally: [u64; 6],
}

impl Run {
    fn ctx(&self) -> String {
        let from = self.log.len().saturating_sub(12);
        format!(
            "seed {} step {} (rerun with CGMALLOC_MODEL_SEED={}); last ops: {:#?}",
            self.seed,
            self.step,
            self.seed,
            &self.log[from..]
        )
    }

    fn note(&mut self, s: String) {
        self.log.push(s);
    }

    fn new(seed: u64) -> Run {
        let m_group = Group::open("/m").expect("/m");
        // Leave the stock word empty and naming no slot, so the model starts exact: a
        // one-page charge makes the stock cache `/m`, and a drain swaps the word to 0.
        drop(m_group.try_charge(1).expect("stock reset charge"));
        cgmalloc::drain_stocks();
        let root = Group::root();
        let mut nodes = Vec::new();
        for (g, path, parent) in [(root, "/", None), (m_group, "/m", Some(0))] {
            let s = g.stat().expect("stat");
            let local = parse_events(&g.read("memory.events.local").expect("events.local"));
            let pages = |b: u64| if b == u64::MAX { UNLIMITED } else { b / PAGE };
            let mut n = Node::new(g.handle(), path.to_string(), parent, OUTSIDE);
            n.usage = s.current / PAGE;
            n.peak = s.peak / PAGE;
            n.failcnt = s.failcnt;
            n.events = [
                s.events_low,
                s.events_high,
                s.events_max,
                s.events_oom,
                s.events_oom_kill,
            ];
            n.local = local;
            n.max = pages(s.max);
            n.high = pages(s.high);
            n.low = pages(s.low);
            n.min = pages(s.min);
            n.children = if parent.is_none() { 1 } else { 0 };
            nodes.push(n);
        }
        assert_eq!(
            nodes[0].usage, 0,
            "seed {seed}: root not quiescent at start"
        );
        assert_eq!(nodes[1].usage, 0, "seed {seed}: /m not quiescent at start");
        let top_path = format!("/m/t{seed}");
        let t = Group::create(&top_path)
            .unwrap_or_else(|e| panic!("seed {seed}: create {top_path}: {e}"));
        nodes.push(Node::new(t.handle(), top_path.clone(), Some(1), 0));
        nodes[1].children += 1;
        let mut run = Run {
            seed,
            rng: Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed),
            m: Model {
                nodes,
                stock: (None, 0),
                current: 0,
            },
            held: Vec::new(),
            guards: Vec::new(),
            step: 0,
            log: Vec::new(),
            last: Vec::new(),
            top: 2,
            top_path,
            // SAFETY: gettid has no preconditions.
            tid: unsafe { libc::gettid() } as u64,
            tally: [0; 6],
        };
        assert_eq!(
            Group::current(),
            root,
            "{}: the test thread must start in the root",
            run.ctx()
        );
        run.last = run.observe();
        run.compare(&run.last.clone());
        run
    }

    // ---- observation and checks ----

    fn observe(&self) -> Vec<Option<Obs>> {
        self.m
            .nodes
            .iter()
            .map(|n| {
                let g = Group::from_handle(n.handle);
                if n.st == St::Live {
                    let stat = g
                        .stat()
                        .unwrap_or_else(|e| panic!("{}: stat {}: {e}", self.ctx(), n.path));
                    let text = g
                        .read("memory.events.local")
                        .unwrap_or_else(|e| panic!("{}: events.local {}: {e}", self.ctx(), n.path));
                    Some(Obs {
                        stat,
                        local: parse_events(&text),
                    })
                } else {
                    let e = g.stat().expect_err("stat of a destroyed group");
                    assert_eq!(
                        e.errno(),
                        libc::ENOENT,
                        "{}: stat of destroyed {}",
                        self.ctx(),
                        n.path
                    );
                    None
                }
            })
            .collect()
    }

    /// The usage the library shows for node `i` (the model's for a dying group, whose
    /// handle no longer reads).
    fn lib_usage(&self, obs: &[Option<Obs>], i: usize) -> u64 {
        match &obs[i] {
            Some(o) => o.stat.current / PAGE,
            None => self.m.nodes[i].usage,
        }
    }

    /// Exact comparison with the model, and I1 and I6 on the library's numbers.
    fn compare(&self, obs: &[Option<Obs>]) {
        let ctx = || self.ctx();
        for (i, n) in self.m.nodes.iter().enumerate() {
            let Some(o) = &obs[i] else { continue };
            let s = &o.stat;
            let p = &n.path;
            assert_eq!(s.current, n.usage * PAGE, "{}: {p} memory.current", ctx());
            assert_eq!(s.peak, n.peak * PAGE, "{}: {p} memory.peak", ctx());
            assert_eq!(s.max, bytes_of(n.max), "{}: {p} memory.max", ctx());
            assert_eq!(s.high, bytes_of(n.high), "{}: {p} memory.high", ctx());
            assert_eq!(s.low, bytes_of(n.low), "{}: {p} memory.low", ctx());
            assert_eq!(s.min, bytes_of(n.min), "{}: {p} memory.min", ctx());
            assert_eq!(s.failcnt, n.failcnt, "{}: {p} memory.failcnt", ctx());
            assert_eq!(s.stock, self.m.stock_in(i) * PAGE, "{}: {p} stock", ctx());
            let ev = [
                s.events_low,
                s.events_high,
                s.events_max,
                s.events_oom,
                s.events_oom_kill,
            ];
            assert_eq!(ev, n.events, "{}: {p} memory.events", ctx());
            assert_eq!(o.local, n.local, "{}: {p} memory.events.local", ctx());
            // I6
            assert!(s.peak >= s.current, "{}: I6 {p} peak < current", ctx());
            // I1 on the library's numbers.
            let children: u64 = (0..self.m.nodes.len())
                .filter(|&c| self.m.nodes[c].parent == Some(i) && self.m.nodes[c].st != St::Freed)
                .map(|c| self.lib_usage(obs, c))
                .sum();
            assert_eq!(
                s.current / PAGE,
                self.m.own(i) + children,
                "{}: I1 at {p}: usage != own + children",
                ctx()
            );
        }
        // Events never decrease (I6), against the previous observation.
        for (i, n) in self.m.nodes.iter().enumerate() {
            let (Some(Some(a)), Some(b)) = (self.last.get(i), &obs[i]) else {
                continue;
            };
            let ea = [
                a.stat.events_low,
                a.stat.events_high,
                a.stat.events_max,
                a.stat.events_oom,
                a.stat.events_oom_kill,
            ];
            let eb = [
                b.stat.events_low,
                b.stat.events_high,
                b.stat.events_max,
                b.stat.events_oom,
                b.stat.events_oom_kill,
            ];
            for k in 0..5 {
                assert!(eb[k] >= ea[k], "{}: I6 {} events went down", ctx(), n.path);
                assert!(
                    b.local[k] >= a.local[k],
                    "{}: I6 {} events.local went down",
                    ctx(),
                    n.path
                );
            }
        }
        assert_eq!(
            Group::current().handle(),
            self.m.nodes[self.m.current].handle,
            "{}: Group::current()",
            ctx()
        );
    }

    /// The text interface files of every live group, against the model.
    fn deep_check(&self) {
        let ctx = || self.ctx();
        for (i, n) in self.m.nodes.iter().enumerate() {
            if n.st != St::Live {
                continue;
            }
            let g = Group::from_handle(n.handle);
            let p = &n.path;
            let rd = |f: &str| {
                g.read(f)
                    .unwrap_or_else(|e| panic!("{}: read {p} {f}: {e}", ctx()))
            };
            assert_eq!(
                rd("memory.current"),
                format!("{}\n", n.usage * PAGE),
                "{}: {p}",
                ctx()
            );
            assert_eq!(
                rd("memory.peak"),
                format!("{}\n", n.peak * PAGE),
                "{}: {p}",
                ctx()
            );
            assert_eq!(rd("memory.max"), limit_text(n.max), "{}: {p}", ctx());
            assert_eq!(rd("memory.high"), limit_text(n.high), "{}: {p}", ctx());
            assert_eq!(rd("memory.low"), limit_text(n.low), "{}: {p}", ctx());
            assert_eq!(rd("memory.min"), limit_text(n.min), "{}: {p}", ctx());
            assert_eq!(
                rd("memory.failcnt"),
                format!("{}\n", n.failcnt),
                "{}: {p}",
                ctx()
            );
            assert_eq!(
                parse_events(&rd("memory.events")),
                n.events,
                "{}: {p}",
                ctx()
            );
            assert_eq!(
                Group::open(p).map(|g| g.handle()).ok(),
                Some(n.handle),
                "{}: open {p}",
                ctx()
            );
            let threads = rd("cgroup.threads");
            if self.m.current == i && i != 0 {
                assert_eq!(
                    threads,
                    format!("{}\n", self.tid),
                    "{}: {p} cgroup.threads",
                    ctx()
                );
            } else if i != 0 {
                assert_eq!(threads, "", "{}: {p} cgroup.threads", ctx());
            }
            if i == 0 {
                continue;
            }
            let below: Vec<usize> = (0..self.m.nodes.len())
                .filter(|&c| c != i && self.m.nodes[c].st != St::Freed && self.m.is_desc(c, i))
                .collect();
            let cs = parse_kv(&rd("cgroup.stat"));
            let live = below
                .iter()
                .filter(|&&c| self.m.nodes[c].st == St::Live)
                .count() as u64;
            assert_eq!(
                kv(&cs, "nr_descendants"),
                live,
                "{}: {p} cgroup.stat",
                ctx()
            );
            assert_eq!(
                kv(&cs, "nr_dying_descendants"),
                below.len() as u64 - live,
                "{}: {p} cgroup.stat",
                ctx()
            );
            if n.level == OUTSIDE {
                continue;
            }
            let pol = match self.m.policy(i) {
                Policy::Fail => "fail\n",
                Policy::Force => "force\n",
            };
            assert_eq!(rd("memory.oom.policy"), pol, "{}: {p}", ctx());
            let st = parse_kv(&rd("memory.stat"));
            let sub: Vec<usize> = below.iter().copied().chain([i]).collect();
            let sum = |f: fn(&Node) -> u64| sub.iter().map(|&c| f(&self.m.nodes[c])).sum::<u64>();
            assert_eq!(
                kv(&st, "stock"),
                self.m.stock_in(i) * PAGE,
                "{}: {p} stat",
                ctx()
            );
            assert_eq!(
                kv(&st, "explicit"),
                sum(|n| n.explicit) * PAGE,
                "{}: {p}",
                ctx()
            );
            assert_eq!(
                kv(&st, "nr_charges"),
                sum(|n| n.nr_charges),
                "{}: {p}",
                ctx()
            );
            assert_eq!(
                kv(&st, "nr_uncharges"),
                sum(|n| n.nr_uncharges),
                "{}: {p}",
                ctx()
            );
            for key in [
                "allocated",
                "small",
                "large",
                "cached",
                "reclaim_calls",
                "reclaimed",
            ] {
                assert_eq!(kv(&st, key), 0, "{}: {p} memory.stat {key}", ctx());
            }
        }
    }

    /// Observes, compares with the model, and keeps the observation for the next step.
    fn check(&mut self) {
        let obs = self.observe();
        self.compare(&obs);
        if self.step % 8 == 0 {
            self.deep_check();
        }
        self.last = obs;
    }

    // ---- choosing ----

    fn live_tree(&self) -> Vec<usize> {
        (0..self.m.nodes.len())
            .filter(|&i| self.m.nodes[i].st == St::Live && self.m.nodes[i].level != OUTSIDE)
            .collect()
    }

    fn dead(&self) -> Vec<usize> {
        (0..self.m.nodes.len())
            .filter(|&i| self.m.nodes[i].st != St::Live)
            .collect()
    }

    /// A live group of the tree, or `/m` (now and then, and when the tree is gone).
    fn pick_target(&mut self, outside_pct: u64) -> usize {
        let live = self.live_tree();
        if live.is_empty() || self.rng.chance(outside_pct) {
            return 1;
        }
        self.rng.pick(&live)
    }

    fn pick_pages(&mut self) -> u64 {
        match self.rng.below(100) {
            0 => 0,
            1..=69 => self.rng.range(1, 8),
            70..=89 => self.rng.range(9, 40),
            _ => self.rng.range(41, 80),
        }
    }

    // ---- operations ----

    fn op_create(&mut self) {
        // Parent: a group of the tree (live or not) above the deepest level, or the top
        // group's own parent when the top is gone.
        let mut parents: Vec<usize> = (0..self.m.nodes.len())
            .filter(|&i| {
                let n = &self.m.nodes[i];
                n.st != St::Freed && n.level != OUTSIDE && n.level < MAX_LEVEL
            })
            .collect();
        let top_live = self.m.nodes[self.top].st == St::Live;
        let (path, parent_path, level) = if !top_live && (parents.is_empty() || self.rng.chance(50))
        {
            (self.top_path.clone(), "/m".to_string(), 0)
        } else {
            if parents.is_empty() {
                parents.push(self.top);
            }
            let p = self.rng.pick(&parents);
            let name = self.rng.pick(&["a", "b", "c"]);
            let pp = self.m.nodes[p].path.clone();
            (format!("{pp}/{name}"), pp, self.m.nodes[p].level + 1)
        };
        self.note(format!("create {path}"));
        let want: Result<usize, i32> = match self.m.live_at(&parent_path) {
            None => Err(libc::ENOENT),
            Some(_) if self.m.live_at(&path).is_some() => Err(libc::EEXIST),
            Some(p) => Ok(p),
        };
        let got = Group::create(&path);
        match (want, got) {
            (Ok(p), Ok(g)) => {
                let slot = (g.handle() & 0xffff) as u32;
                assert!(
                    self.m.by_slot(slot).is_none(),
                    "{}: new group {path} in slot {slot} still in use",
                    self.ctx()
                );
                assert!(
                    self.m.by_handle(g.handle()).is_none(),
                    "{}: handle {:#x} reused",
                    self.ctx(),
                    g.handle()
                );
                assert_eq!(
                    Group::open(&path).ok(),
                    Some(g),
                    "{}: open {path}",
                    self.ctx()
                );
                assert_eq!(
                    g.path().ok().as_deref(),
                    Some(path.as_str()),
                    "{}",
                    self.ctx()
                );
                self.m
                    .nodes
                    .push(Node::new(g.handle(), path, Some(p), level));
                self.m.nodes[p].children += 1;
                if level == 0 {
                    self.top = self.m.nodes.len() - 1;
                }
            }
            (Err(e), Err(got)) => {
                assert_eq!(got.errno(), e, "{}: create {path}", self.ctx())
            }
            (w, g) => panic!("{}: create {path}: model {w:?}, library {g:?}", self.ctx()),
        }
    }

    fn op_destroy(&mut self) {
        let mut cands: Vec<usize> = (0..self.m.nodes.len())
            .filter(|&i| self.m.nodes[i].level != OUTSIDE)
            .collect();
        // Prefer leaves, so that destroys succeed often.
        if self.rng.chance(70) {
            let leaves: Vec<usize> = cands
                .iter()
                .copied()
                .filter(|&i| {
                    self.m.nodes[i].st == St::Live
                        && !self
                            .m
                            .nodes
                            .iter()
                            .any(|c| c.parent == Some(i) && c.st == St::Live)
                })
                .collect();
            if !leaves.is_empty() {
                cands = leaves;
            }
        }
        let i = self.rng.pick(&cands);
        let path = self.m.nodes[i].path.clone();
        self.note(format!("destroy {path} ({:?})", self.m.nodes[i].st));
        let want = if self.m.nodes[i].st != St::Live {
            Err(libc::ENOENT)
        } else if self
            .m
            .nodes
            .iter()
            .any(|c| c.parent == Some(i) && c.st == St::Live)
            || self.m.current == i
        {
            Err(libc::EBUSY)
        } else {
            Ok(())
        };
        let got = Group::from_handle(self.m.nodes[i].handle)
            .destroy()
            .map_err(|e| e.errno());
        assert_eq!(got, want, "{}: destroy {path}", self.ctx());
        if want.is_ok() {
            self.m.nodes[i].st = St::Dying;
            self.m.drain_all(i);
            self.m.free_dead();
            assert_ne!(
                Group::open(&path).ok().map(|g| g.handle()),
                Some(self.m.nodes[i].handle),
                "{}: open finds a destroyed group",
                self.ctx()
            );
        }
    }

    fn op_limit(&mut self) {
        let i = self.pick_target(8);
        let n = &self.m.nodes[i];
        let usage = n.usage;
        let path = n.path.clone();
        let file = match self.rng.below(100) {
            0..=59 => "memory.max",
            60..=79 => "memory.high",
            80..=89 => "memory.low",
            _ => "memory.min",
        };
        let pages = match self.rng.below(100) {
            0..=24 => UNLIMITED,
            25..=59 => (usage + self.rng.range(0, 16)).saturating_sub(8),
            _ => self.rng.range(0, 160),
        };
        let g = Group::from_handle(self.m.nodes[i].handle);
        let (text, r) = match self.rng.below(6) {
            0 if pages != UNLIMITED => {
                let s = format!("{}K", pages * 4);
                let r = g.write(file, &s);
                (s, r)
            }
            1 if pages != UNLIMITED => {
                let s = format!(" {}\n", pages * PAGE + self.rng.below(PAGE));
                let r = g.write(file, &s);
                (s, r)
            }
            2 => {
                // A malformed value changes nothing.
                let s = self.rng.pick(&["12Q", "-1", "", "1.5M", "MAX"]).to_string();
                self.note(format!("write {path} {file} {s:?} (invalid)"));
                let e = g.write(file, &s).expect_err("malformed size accepted");
                assert_eq!(e.errno(), libc::EINVAL, "{}: write {s:?}", self.ctx());
                return;
            }
            _ => {
                let bytes = if pages == UNLIMITED {
                    u64::MAX
                } else {
                    pages * PAGE + self.rng.below(PAGE)
                };
                let r = match file {
                    "memory.max" => g.set_max(bytes),
                    "memory.high" => g.set_high(bytes),
                    "memory.low" => g.set_low(bytes),
                    _ => g.set_min(bytes),
                };
                (format!("set {bytes}"), r)
            }
        };
        self.note(format!("write {path} {file} {text:?} = {pages} pages"));
        r.unwrap_or_else(|e| panic!("{}: write {path} {file}: {e}", self.ctx()));
        let n = &mut self.m.nodes[i];
        match file {
            "memory.max" => {
                n.max = pages;
                // shrink_to: one stock drain of the subtree when usage is above.
                if n.usage > pages {
                    self.m.drain_all(i);
                }
            }
            "memory.high" => n.high = pages,
            "memory.low" => n.low = pages,
            _ => n.min = pages,
        }
    }

    fn op_charge(&mut self, kind: u32) {
        let dead = self.dead();
        let i = if !dead.is_empty() && self.rng.chance(4) {
            self.rng.pick(&dead)
        } else {
            self.pick_target(5)
        };
        let pages = self.pick_pages();
        let bytes = if pages == 0 {
            0
        } else {
            (pages - 1) * PAGE + self.rng.range(1, PAGE)
        };
        let h = self.m.nodes[i].handle;
        let path = self.m.nodes[i].path.clone();
        if self.m.nodes[i].st != St::Live {
            self.note(format!("charge {bytes} to destroyed {path}"));
            let g = Group::from_handle(h);
            let e = g.try_charge(bytes.max(1)).err().map(|e| e.errno());
            assert_eq!(
                e,
                Some(libc::ENOENT),
                "{}: charge of a destroyed group",
                self.ctx()
            );
            let e = control::charge(h, bytes.max(1), NORETRY).err();
            assert_eq!(
                e,
                Some(libc::ENOENT),
                "{}: charge of a destroyed group",
                self.ctx()
            );
            drop(g.charge_force(bytes.max(1))); // charges nothing, uncharges nothing
            self.step_check();
            return;
        }
        // kind: 0 try_charge, 1 charge_force, 2 NORETRY, 3 control::charge flags 0
        let mut flags = match kind {
            1 => FORCE,
            2 => NORETRY,
            _ => 0,
        };
        if flags != NORETRY {
            let mut sim = self.m.clone();
            if sim.charge(i, pages, flags).throttle {
                flags = NORETRY;
            }
        }
        let api = kind < 2 && flags != NORETRY;
        let what = match (flags, api) {
            (0, true) => "try_charge",
            (0, false) => "control::charge(0)",
            (FORCE, _) => "charge_force",
            _ => "charge NORETRY",
        };
        self.note(format!(
            "{what} {bytes} B ({pages} pages) to {path}; stock {:?}",
            self.m.stock
        ));
        let before = self.last.clone();
        let lib: Result<Kind, i32> = if api {
            let g = Group::from_handle(h);
            if flags == FORCE {
                Ok(Kind::Api(g.charge_force(bytes)))
            } else {
                g.try_charge(bytes).map(Kind::Api).map_err(|e| e.errno())
            }
        } else {
            control::charge(h, bytes, flags).map(|()| Kind::Raw(h))
        };
        let out = self.m.charge(i, pages, flags);
        assert!(
            !out.throttle,
            "{}: the test sent a throttling charge",
            self.ctx()
        );
        match (&lib, out.ok) {
            (Ok(_), true) => {}
            (Err(e), false) => assert_eq!(*e, libc::ENOMEM, "{}: charge errno", self.ctx()),
            _ => panic!(
                "{}: charge: library {}, model {:?}",
                self.ctx(),
                if lib.is_ok() { "ok" } else { "refused" },
                out
            ),
        }
        self.tally[0] += out.walked as u64;
        self.tally[1] += !out.ok as u64;
        self.tally[2] += out.forced as u64;
        self.tally[3] += (out.ok && !out.drained.is_empty()) as u64;
        self.tally[4] += (flags == NORETRY && kind != 2) as u64;
        if out.ok && pages > 0 {
            self.m.nodes[i].explicit += pages;
            self.m.nodes[i].nr_charges += 1;
        }
        if let Ok(k) = lib {
            if let Kind::Api(c) = &k {
                assert_eq!(c.bytes(), bytes, "{}: Charge::bytes", self.ctx());
            }
            self.held.push(Held {
                node: i,
                pages,
                bytes,
                kind: k,
            });
        }
        self.step_check();
        let after = self.last.clone();
        if out.ok && out.walked {
            self.check_i2(i, &after);
        }
        if !out.ok {
            self.check_i3(&before, &after, &out);
        }
    }

    /// I2: a charge that went through the counters left every level within `max`.
    fn check_i2(&self, i: usize, after: &[Option<Obs>]) {
        for g in self.m.chain(i) {
            if let Some(o) = &after[g] {
                assert!(
                    o.stat.current <= o.stat.max,
                    "{}: I2 {} usage {} above max {} after a charge",
                    self.ctx(),
                    self.m.nodes[g].path,
                    o.stat.current,
                    o.stat.max
                );
            }
        }
    }

    /// I3: a refused charge moved no usage and no peak anywhere (but for stock pages the
    /// ladder drained), `failcnt` only where a walk was refused, and events only at the
    /// refusing levels (`memory.events` also at their ancestors).
    fn check_i3(&self, before: &[Option<Obs>], after: &[Option<Obs>], out: &Outcome) {
        for (g, n) in self.m.nodes.iter().enumerate() {
            let (Some(Some(a)), Some(b)) = (before.get(g), &after[g]) else {
                continue;
            };
            let p = &n.path;
            let drained: u64 = out
                .drained
                .iter()
                .filter(|&&(d, _)| self.m.is_desc(d, g))
                .map(|&(_, pages)| pages)
                .sum();
            assert_eq!(
                b.stat.current + drained * PAGE,
                a.stat.current,
                "{}: I3 usage of {p} moved on a refused charge",
                self.ctx()
            );
            assert_eq!(
                b.stat.peak,
                a.stat.peak,
                "{}: I3 peak of {p} moved",
                self.ctx()
            );
            if !out.refused.contains(&g) {
                assert_eq!(
                    b.stat.failcnt,
                    a.stat.failcnt,
                    "{}: I3 failcnt of {p}",
                    self.ctx()
                );
            }
            if !out.evented.contains(&g) {
                assert_eq!(b.local, a.local, "{}: I3 events.local of {p}", self.ctx());
            }
            if !out.evented.iter().any(|&e| self.m.is_desc(e, g)) {
                assert_eq!(
                    (b.stat.events_max, b.stat.events_oom, b.stat.events_oom_kill),
                    (a.stat.events_max, a.stat.events_oom, a.stat.events_oom_kill),
                    "{}: I3 events of {p}",
                    self.ctx()
                );
            }
            assert_eq!(
                b.stat.events_high,
                a.stat.events_high,
                "{}: {p}",
                self.ctx()
            );
            assert_eq!(b.stat.events_low, a.stat.events_low, "{}: {p}", self.ctx());
            assert_eq!(b.local[LOW], a.local[LOW], "{}: {p}", self.ctx());
        }
    }

    fn op_uncharge(&mut self, idx: usize) {
        let h = self.held.swap_remove(idx);
        let path = self.m.nodes[h.node].path.clone();
        self.note(format!(
            "uncharge {} B ({} pages) of {path} ({:?}); stock {:?}",
            h.bytes, h.pages, self.m.nodes[h.node].st, self.m.stock
        ));
        match h.kind {
            Kind::Api(c) => drop(c),
            Kind::Raw(handle) => {
                // A handle works for uncharges until its group is freed (which a zero-byte
                // charge does not delay).
                let want = if self.m.nodes[h.node].st == St::Freed {
                    Err(libc::ENOENT)
                } else {
                    Ok(())
                };
                let r = control::uncharge(handle, h.bytes);
                assert_eq!(r, want, "{}: control::uncharge", self.ctx());
            }
        }
        if h.pages > 0 {
            let n = &mut self.m.nodes[h.node];
            n.explicit -= h.pages;
            n.nr_uncharges += 1;
            let was = self.m.nodes[h.node].st;
            self.m.put_back(h.node, h.pages);
            if was == St::Dying && self.m.nodes[h.node].st == St::Freed {
                self.tally[5] += 1;
            }
        }
    }

    fn op_enter(&mut self) {
        let mut cands = self.live_tree();
        cands.push(0);
        cands.push(1);
        let dead = self.dead();
        if !dead.is_empty() && self.rng.chance(10) {
            let i = self.rng.pick(&dead);
            self.note(format!("enter destroyed {}", self.m.nodes[i].path));
            let e = Group::from_handle(self.m.nodes[i].handle).enter().err();
            assert_eq!(e.map(|e| e.errno()), Some(libc::ENOENT), "{}", self.ctx());
            return;
        }
        let i = self.rng.pick(&cands);
        self.note(format!("enter {}", self.m.nodes[i].path));
        let prev = self.m.nodes[self.m.current].handle;
        let guard = Group::from_handle(self.m.nodes[i].handle)
            .enter()
            .unwrap_or_else(|e| panic!("{}: enter: {e}", self.ctx()));
        self.m.current = i;
        self.guards.push((guard, prev));
    }

    fn op_leave(&mut self, idx: usize) {
        let (guard, prev) = self.guards.remove(idx);
        let back = match self.m.by_handle(prev) {
            Some(p) if self.m.nodes[p].st == St::Live => p,
            _ => 0,
        };
        self.note(format!(
            "leave guard {idx} back to {}",
            self.m.nodes[back].path
        ));
        drop(guard);
        self.m.current = back;
    }

    fn op_misc(&mut self) {
        let i = self.pick_target(0);
        let g = Group::from_handle(self.m.nodes[i].handle);
        let path = self.m.nodes[i].path.clone();
        match self.rng.below(5) {
            0 => {
                self.note(format!("reset {path} memory.peak"));
                g.write("memory.peak", "0").expect("peak reset");
                let n = &mut self.m.nodes[i];
                n.peak = n.usage;
            }
            1 => {
                self.note(format!("reset {path} memory.failcnt"));
                g.write("memory.failcnt", "0\n").expect("failcnt reset");
                self.m.nodes[i].failcnt = 0;
                let e = g.write("memory.failcnt", "5").err().map(|e| e.errno());
                assert_eq!(e, Some(libc::EINVAL), "{}: failcnt write 5", self.ctx());
            }
            2 => {
                let e = g.write("memory.current", "0").err().map(|e| e.errno());
                assert_eq!(
                    e,
                    Some(libc::EACCES),
                    "{}: write memory.current",
                    self.ctx()
                );
            }
            _ => {
                if i == 1 {
                    return;
                }
                let force = self.rng.chance(50);
                self.note(format!("{path} memory.oom.policy force={force}"));
                g.write("memory.oom.policy", if force { "force" } else { "fail" })
                    .expect("policy");
                self.m.nodes[i].policy = Some(if force { Policy::Force } else { Policy::Fail });
            }
        }
    }

    fn step_check(&mut self) {
        self.check();
        self.step += 1;
    }

    fn one_op(&mut self) {
        let r = self.rng.below(100);
        match r {
            0..=11 => self.op_create(),
            12..=17 => self.op_destroy(),
            18..=31 => self.op_limit(),
            32..=55 => {
                let kind = self.rng.pick(&[0, 0, 0, 1, 2, 3]);
                // op_charge checks by itself (it needs the observation before and after).
                return self.op_charge(kind);
            }
            56..=74 => {
                if self.held.is_empty() {
                    return self.op_charge(0);
                }
                let idx = self.rng.below(self.held.len() as u64) as usize;
                self.op_uncharge(idx);
            }
            75..=79 => {
                self.note(format!("drain_stocks; stock {:?}", self.m.stock));
                cgmalloc::drain_stocks();
                self.m.drain_all(0);
            }
            80..=86 => self.op_enter(),
            87..=93 => {
                if self.guards.is_empty() {
                    self.op_enter();
                } else {
                    // Mostly the newest guard, sometimes one out of order.
                    let idx = if self.rng.chance(75) {
                        self.guards.len() - 1
                    } else {
                        self.rng.below(self.guards.len() as u64) as usize
                    };
                    self.op_leave(idx);
                }
            }
            _ => self.op_misc(),
        }
        self.step_check();
    }

    /// Everything back: guards, charges, stocks; then I5, and the tree destroyed.
    fn finish(&mut self) {
        while !self.guards.is_empty() {
            let idx = self.rng.below(self.guards.len() as u64) as usize;
            self.op_leave(idx);
            self.step_check();
        }
        self.note("attach to the root".to_string());
        Group::root()
            .attach_current_thread()
            .unwrap_or_else(|e| panic!("{}: attach root: {e}", self.ctx()));
        self.m.current = 0;
        while !self.held.is_empty() {
            let idx = self.rng.below(self.held.len() as u64) as usize;
            self.op_uncharge(idx);
            self.step_check();
        }
        self.note("final drain_stocks".to_string());
        cgmalloc::drain_stocks();
        self.m.drain_all(0);
        self.step_check();
        self.deep_check();
        // I5: with every charge returned and every stock drained, every group reads 0,
        // and every destroyed group has been freed.
        for (i, n) in self.m.nodes.iter().enumerate() {
            assert_eq!(
                n.usage,
                0,
                "{}: model usage of {} at quiescence",
                self.ctx(),
                n.path
            );
            assert_ne!(n.st, St::Dying, "{}: {} still dying", self.ctx(), n.path);
            if let Some(o) = &self.last[i] {
                assert_eq!(
                    o.stat.current,
                    0,
                    "{}: I5 {} reads non-zero",
                    self.ctx(),
                    n.path
                );
                assert_eq!(o.stat.stock, 0, "{}: I5 {} stock", self.ctx(), n.path);
            }
        }
        let cs = parse_kv(
            &Group::from_handle(self.m.nodes[1].handle)
                .read("cgroup.stat")
                .unwrap(),
        );
        assert_eq!(
            kv(&cs, "nr_dying_descendants"),
            0,
            "{}: /m cgroup.stat",
            self.ctx()
        );
        // Destroy the tree, deepest first: each goes at once.
        let mut live = self.live_tree();
        live.sort_by_key(|&i| std::cmp::Reverse(self.m.nodes[i].level));
        for i in live {
            let n = &self.m.nodes[i];
            let (h, path) = (n.handle, n.path.clone());
            self.note(format!("final destroy {path}"));
            Group::from_handle(h)
                .destroy()
                .unwrap_or_else(|e| panic!("{}: destroy {path}: {e}", self.ctx()));
            self.m.nodes[i].st = St::Dying;
            self.m.free_dead();
            assert_eq!(self.m.nodes[i].st, St::Freed, "{}: model", self.ctx());
            assert_eq!(
                Group::open(&path).map_err(|e| e.errno()),
                Err(libc::ENOENT),
                "{}: open {path} after destroy",
                self.ctx()
            );
        }
        let m = Group::from_handle(self.m.nodes[1].handle);
        let cs = parse_kv(&m.read("cgroup.stat").unwrap());
        assert_eq!(
            kv(&cs, "nr_descendants"),
            0,
            "{}: /m cgroup.stat",
            self.ctx()
        );
        assert_eq!(
            kv(&cs, "nr_dying_descendants"),
            0,
            "{}: /m cgroup.stat",
            self.ctx()
        );
        // Restore /m.
        m.set_max(u64::MAX).unwrap();
        m.set_high(u64::MAX).unwrap();
        m.set_low(0).unwrap();
        m.set_min(0).unwrap();
        let n = &mut self.m.nodes[1];
        (n.max, n.high, n.low, n.min) = (UNLIMITED, UNLIMITED, 0, 0);
        self.step_check();
        let root = &self.last[0].as_ref().expect("root").stat;
        assert_eq!(root.current, 0, "{}: I5 root", self.ctx());
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
