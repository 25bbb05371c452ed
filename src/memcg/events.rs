//! Events (`memory.events`) and the accounting engine's statistics (`memory.stat`).
//!
//! Events are counted twice: in `events_local` of the group they happened to, and in
//! `events` of that group and every ancestor, so `memory.events` stays hierarchical after
//! a descendant is freed. Statistics are counted locally and summed over the subtree on
//! read; a freed group's statistics are folded into its parent, so nothing is lost.
//! Both only grow (I6). They are kept in the group table's slots and counted by its
//! methods (`GroupTable::count_event`, `add_stat`, `stat_hier`, `events`).

#![forbid(unsafe_code)]

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
    /// A charge passed a `max` or `high` that `memory.enforce = warn` only reports.
    Warn = 5,
}

pub const NR_EVENTS: usize = 6;
pub const EVENT_NAMES: [&str; NR_EVENTS] = ["low", "high", "max", "oom", "oom_kill", "warn"];

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

impl StatKey {
    /// Every key, in order.
    pub const ALL: [StatKey; NR_STATS] = [
        StatKey::NrCharges,
        StatKey::NrUncharges,
        StatKey::ReclaimCalls,
        StatKey::Reclaimed,
    ];
}

pub const NR_STATS: usize = 4;
/// Their keys in `memory.stat`, in `StatKey` order.
pub const STAT_NAMES: [&str; NR_STATS] =
    ["nr_charges", "nr_uncharges", "reclaim_calls", "reclaimed"];
