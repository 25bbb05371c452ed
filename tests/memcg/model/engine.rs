//! The sequential model of the accounting engine that the library is checked against:
//! hierarchical page counters, the calling thread's stock (one word: group slot and
//! pages, as in stock.rs), the charge ladder of charge.rs for one thread with no
//! callbacks (batch, retry with the exact size, `max` event, stock drain, `MAX_RETRIES`
//! rounds, OOM policy) and the group lifecycle (live → dying → freed).

use super::{HIGH, MAX, OOM, OOM_KILL, UNLIMITED};
use cgmalloc::internals::memcg::charge::{FORCE, MAX_RETRIES, NORETRY};
use cgmalloc::internals::memcg::stock::CHARGE_BATCH;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum St {
    Live,
    Dying,
    Freed,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Policy {
    Fail,
    Force,
}

#[derive(Clone, Debug)]
pub(super) struct Node {
    pub(super) handle: u64,
    pub(super) slot: u32,
    pub(super) path: String,
    pub(super) parent: Option<usize>,
    pub(super) level: u32,
    pub(super) st: St,
    pub(super) usage: u64,
    pub(super) peak: u64,
    pub(super) failcnt: u64,
    pub(super) events: [u64; 6],
    pub(super) local: [u64; 6],
    pub(super) max: u64,
    pub(super) high: u64,
    pub(super) low: u64,
    pub(super) min: u64,
    /// Pages of explicit charges held on this group.
    pub(super) explicit: u64,
    /// Local `nr_charges` / `nr_uncharges`, with freed children folded in.
    pub(super) nr_charges: u64,
    pub(super) nr_uncharges: u64,
    /// Live and dying children (the table's `nr_children`).
    pub(super) children: u32,
    pub(super) policy: Option<Policy>,
}

impl Node {
    pub(super) fn new(handle: u64, path: String, parent: Option<usize>, level: u32) -> Node {
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
            events: [0; 6],
            local: [0; 6],
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
pub(super) struct Outcome {
    pub(super) ok: bool,
    /// Charged past the limits (`force()`), not through `done_restock`.
    pub(super) forced: bool,
    /// Charged through the counters (`done_restock`).
    pub(super) walked: bool,
    /// `after_charge` would reclaim and throttle (not quiet, some level above `high`).
    pub(super) throttle: bool,
    /// Levels whose walk refused (each counted one `failcnt`), in order.
    pub(super) refused: Vec<usize>,
    /// Levels that counted `max` / `oom` / `oom_kill`.
    pub(super) evented: Vec<usize>,
    /// Stock pages drained back to their group by the ladder.
    pub(super) drained: Vec<(usize, u64)>,
}

#[derive(Clone)]
pub(super) struct Model {
    pub(super) nodes: Vec<Node>,
    /// The calling thread's stock word: the slot it names (if any) and its pages.
    pub(super) stock: (Option<u32>, u64),
    /// The calling thread's current group.
    pub(super) current: usize,
}

impl Model {
    pub(super) fn chain(&self, i: usize) -> Vec<usize> {
        let mut v = Vec::new();
        let mut c = Some(i);
        while let Some(g) = c {
            v.push(g);
            c = self.nodes[g].parent;
        }
        v
    }

    pub(super) fn is_desc(&self, i: usize, anc: usize) -> bool {
        self.chain(i).contains(&anc)
    }

    pub(super) fn by_slot(&self, slot: u32) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.st != St::Freed && n.slot == slot)
    }

    pub(super) fn by_handle(&self, h: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.handle == h)
    }

    pub(super) fn live_at(&self, path: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.st == St::Live && n.path == path)
    }

    pub(super) fn count(&mut self, g: usize, ev: usize) {
        self.nodes[g].local[ev] += 1;
        for a in self.chain(g) {
            self.nodes[a].events[ev] += 1;
        }
    }

    /// `counter::try_charge`: all levels or none; the refusing level counts `failcnt`.
    pub(super) fn walk(&mut self, i: usize, nr: u64) -> Result<(), usize> {
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

    pub(super) fn force(&mut self, i: usize, nr: u64) {
        for g in self.chain(i) {
            let n = &mut self.nodes[g];
            n.usage += nr;
            n.peak = n.peak.max(n.usage);
        }
    }

    pub(super) fn uncharge_counters(&mut self, i: usize, nr: u64) {
        for g in self.chain(i) {
            let n = &mut self.nodes[g];
            assert!(n.usage >= nr, "model underflow at {}", n.path);
            n.usage -= nr;
        }
        self.free_dead();
    }

    /// Frees every dying group that holds nothing and has no children, cascading.
    pub(super) fn free_dead(&mut self) {
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

    pub(super) fn stock_node(&self) -> Option<usize> {
        match self.stock {
            (Some(s), p) if p > 0 => Some(
                self.by_slot(s)
                    .unwrap_or_else(|| panic!("model: stock pages for unknown slot {s}")),
            ),
            _ => None,
        }
    }

    /// `consume_stock`.
    pub(super) fn consume(&mut self, i: usize, nr: u64) -> bool {
        let slot = self.nodes[i].slot;
        if self.stock.0 == Some(slot) && self.stock.1 >= nr {
            self.stock.1 -= nr;
            true
        } else {
            false
        }
    }

    /// `refill_stock`.
    pub(super) fn refill(&mut self, i: usize, nr: u64) {
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
    pub(super) fn put_back(&mut self, i: usize, nr: u64) {
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
    pub(super) fn drain_all(&mut self, root: usize) -> Option<(usize, u64)> {
        let n = self.stock_node()?;
        if !self.is_desc(n, root) {
            return None;
        }
        let pages = self.stock.1;
        self.stock = (None, 0);
        self.uncharge_counters(n, pages);
        Some((n, pages))
    }

    pub(super) fn stock_in(&self, i: usize) -> u64 {
        match self.stock_node() {
            Some(n) if self.is_desc(n, i) => self.stock.1,
            _ => 0,
        }
    }

    pub(super) fn own(&self, i: usize) -> u64 {
        let stock = match self.stock {
            (Some(s), p) if s == self.nodes[i].slot && self.nodes[i].st != St::Freed => p,
            _ => 0,
        };
        self.nodes[i].explicit + stock
    }

    pub(super) fn policy(&self, over: usize) -> Policy {
        self.chain(over)
            .into_iter()
            .find_map(|g| self.nodes[g].policy)
            .unwrap_or(Policy::Fail)
    }

    /// `high::after_charge`: counts `high` on every level above it.
    pub(super) fn after_charge(&mut self, i: usize, quiet: bool) -> bool {
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
    pub(super) fn charge(&mut self, i: usize, nr: u64, flags: u32) -> Outcome {
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
