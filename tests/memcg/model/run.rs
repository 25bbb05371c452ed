//! One seed's run: the library's groups and charges side by side with the model, the
//! log of operations that failure messages show, and the random choices of groups and
//! sizes. The checks are in `checks.rs`, the operations in `ops.rs`.

use super::engine::{Model, Node, St};
use super::{parse_events, OUTSIDE, PAGE, UNLIMITED};
use crate::support::rng::Rng;
use cgmalloc::{Charge, EnterGuard, Group, Stat};

pub(super) enum Kind {
    Api(Charge),
    Raw(u64),
}

pub(super) struct Held {
    pub(super) node: usize,
    pub(super) pages: u64,
    pub(super) bytes: u64,
    pub(super) kind: Kind,
}

/// What the library shows of one live group.
#[derive(Clone, Debug)]
pub(super) struct Obs {
    pub(super) stat: Stat,
    pub(super) local: [u64; 6],
}

pub(super) struct Run {
    pub(super) seed: u64,
    pub(super) rng: Rng,
    pub(super) m: Model,
    pub(super) held: Vec<Held>,
    pub(super) guards: Vec<(EnterGuard, u64)>,
    pub(super) step: usize,
    pub(super) log: Vec<String>,
    pub(super) last: Vec<Option<Obs>>,
    pub(super) top: usize,
    pub(super) top_path: String,
    pub(super) tid: u64,
    /// Paths reached: charges through the counters, refused, forced past `max`,
    /// succeeding after the ladder's stock drain, sent as `NORETRY` to avoid throttling,
    /// dying groups freed by their last uncharge.
    pub(super) tally: [u64; 6],
}

impl Run {
    pub(super) fn ctx(&self) -> String {
        let from = self.log.len().saturating_sub(12);
        format!(
            "seed {} step {} (rerun with CGMALLOC_MODEL_SEED={}); last ops: {:#?}",
            self.seed,
            self.step,
            self.seed,
            &self.log[from..]
        )
    }

    pub(super) fn note(&mut self, s: String) {
        self.log.push(s);
    }

    pub(super) fn new(seed: u64) -> Run {
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
                // `warn`: not in `Stat`; the model never sets `memory.enforce`.
                0,
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

    pub(super) fn live_tree(&self) -> Vec<usize> {
        (0..self.m.nodes.len())
            .filter(|&i| self.m.nodes[i].st == St::Live && self.m.nodes[i].level != OUTSIDE)
            .collect()
    }

    pub(super) fn dead(&self) -> Vec<usize> {
        (0..self.m.nodes.len())
            .filter(|&i| self.m.nodes[i].st != St::Live)
            .collect()
    }

    /// A live group of the tree, or `/m` (now and then, and when the tree is gone).
    pub(super) fn pick_target(&mut self, outside_pct: u64) -> usize {
        let live = self.live_tree();
        if live.is_empty() || self.rng.chance(outside_pct) {
            return 1;
        }
        self.rng.pick(&live)
    }

    pub(super) fn pick_pages(&mut self) -> u64 {
        match self.rng.below(100) {
            0 => 0,
            1..=69 => self.rng.range(1, 8),
            70..=89 => self.rng.range(9, 40),
            _ => self.rng.range(41, 80),
        }
    }

    pub(super) fn step_check(&mut self) {
        self.check();
        self.step += 1;
    }
}
