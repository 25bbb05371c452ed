//! The operations of a run, each made on the library and on the model: create, destroy,
//! limit writes, explicit charges, uncharges, `enter()` guards, resets and OOM policy
//! writes (`one_op` picks one), and `finish`, which returns everything and checks I5.

use super::engine::{Node, Policy, St};
use super::run::{Held, Kind, Run};
use super::{kv, parse_kv, MAX_LEVEL, OUTSIDE, PAGE, UNLIMITED};
use cgmalloc::internals::memcg::charge::{FORCE, NORETRY};
use cgmalloc::internals::memcg::control;
use cgmalloc::Group;

impl Run {
    pub(super) fn op_create(&mut self) {
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

    pub(super) fn op_destroy(&mut self) {
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

    pub(super) fn op_limit(&mut self) {
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

    pub(super) fn op_charge(&mut self, kind: u32) {
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

    pub(super) fn op_uncharge(&mut self, idx: usize) {
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

    pub(super) fn op_enter(&mut self) {
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

    pub(super) fn op_leave(&mut self, idx: usize) {
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

    pub(super) fn op_misc(&mut self) {
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

    pub(super) fn one_op(&mut self) {
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
    pub(super) fn finish(&mut self) {
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
