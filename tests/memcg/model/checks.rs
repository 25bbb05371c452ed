//! The checks made after every step: the library's numbers against the model's, exactly
//! (`compare`, and every 8 steps the text interface files, `deep_check`), and the
//! invariants of DESIGN.md on the library's own numbers: I1 (hierarchy) and I6 (peak ≥
//! current, events only grow) in `compare`, I2 (limit) after a charge that went through
//! the counters, I3 (rollback) after a refused one. I5 (quiescence) is checked at the
//! end of each seed (`Run::finish`, in `ops.rs`).

use super::engine::{Node, Outcome, Policy, St};
use super::run::{Obs, Run};
use super::{bytes_of, kv, limit_text, parse_events, parse_kv, LOW, OUTSIDE, PAGE};
use cgmalloc::Group;

impl Run {
    pub(super) fn observe(&self) -> Vec<Option<Obs>> {
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
    pub(super) fn lib_usage(&self, obs: &[Option<Obs>], i: usize) -> u64 {
        match &obs[i] {
            Some(o) => o.stat.current / PAGE,
            None => self.m.nodes[i].usage,
        }
    }

    /// Exact comparison with the model, and I1 and I6 on the library's numbers.
    pub(super) fn compare(&self, obs: &[Option<Obs>]) {
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
                // `warn`: not in `Stat`; the model never sets `memory.enforce`.
                0,
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
    pub(super) fn deep_check(&self) {
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
    pub(super) fn check(&mut self) {
        let obs = self.observe();
        self.compare(&obs);
        if self.step % 8 == 0 {
            self.deep_check();
        }
        self.last = obs;
    }

    /// I2: a charge that went through the counters left every level within `max`.
    pub(super) fn check_i2(&self, i: usize, after: &[Option<Obs>]) {
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
    pub(super) fn check_i3(&self, before: &[Option<Obs>], after: &[Option<Obs>], out: &Outcome) {
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
}
