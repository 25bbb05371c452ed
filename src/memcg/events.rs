//! Events (`memory.events`) and the accounting engine's statistics (`memory.stat`).
//!
//! Events are counted twice: in `events_local` of the group they happened to, and in
//! `events` of that group and every ancestor, so `memory.events` stays hierarchical after
//! a descendant is freed. Statistics are counted locally and summed over the subtree on
//! read; a freed group's statistics are folded into its parent (table.rs), so nothing
//! is lost. Both only grow (I6).

/// `memory.events` keys, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The group was reclaimed while below `low`.
    Low = 0,
    /// A charge left usage above `high`.
    High = 1,
    /// A charge hit `max`.
    Max = 2,
    /// The OOM path ran.
    Oom = 3,
    /// An allocation failed or aborted because of this group's limit.
    OomKill = 4,
}

pub const NR_EVENTS: usize = 5;
pub const EVENT_NAMES: [&str; NR_EVENTS] = ["low", "high", "max", "oom", "oom_kill"];

/// Statistics kept by the accounting engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatKey {
    /// Page runs charged (spans, large mappings, explicit charges).
    NrCharges = 0,
    /// Page runs uncharged.
    NrUncharges = 1,
    /// Calls to reclaim callbacks registered on the group.
    ReclaimCalls = 2,
    /// Bytes those callbacks reported freed.
    Reclaimed = 3,
}

pub const NR_STATS: usize = 4;

#[cfg(not(loom))]
mod counting {
    use super::*;
    use crate::memcg::counter::Hierarchy;
    use crate::memcg::table::GROUPS;
    use std::sync::atomic::Ordering;

    /// Counts `ev` on `id` (local) and on `id` and every ancestor (hierarchical).
    pub fn count(id: u32, ev: Event) {
        let i = ev as usize;
        GROUPS.slot(id).events_local[i].fetch_add(1, Ordering::Relaxed);
        let mut cur = Some(id);
        while let Some(g) = cur {
            GROUPS.slot(g).events[i].fetch_add(1, Ordering::Relaxed);
            cur = GROUPS.parent(g);
        }
    }

    pub fn add_stat(id: u32, stat: StatKey, v: u64) {
        GROUPS.slot(id).stats[stat as usize].fetch_add(v, Ordering::Relaxed);
    }

    /// A statistic summed over the subtree of `id`.
    pub fn stat_hier(id: u32, stat: StatKey) -> u64 {
        GROUPS
            .subtree(id)
            .map(|g| GROUPS.slot(g).stats[stat as usize].load(Ordering::Relaxed))
            .sum()
    }

    pub fn events(id: u32, local: bool) -> [u64; NR_EVENTS] {
        let s = GROUPS.slot(id);
        let src = if local { &s.events_local } else { &s.events };
        core::array::from_fn(|i| src[i].load(Ordering::Relaxed))
    }
}

#[cfg(not(loom))]
pub use counting::*;
