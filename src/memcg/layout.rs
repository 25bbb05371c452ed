//! The group table's description for readers outside the process (`cgmalloc ps`,
//! `cgmalloc stat`): the exported symbol `cgmalloc_layout` holds a magic, a layout
//! version, the table's address and where each field a reader needs lies. A reader
//! finds the symbol in the ELF file the process mapped, reads this record and then the
//! table itself from the process's memory (`process_vm_readv`): nothing runs in the
//! process for it, and nothing is kept anywhere else (DESIGN.md, "Watching a running
//! process").
//!
//! Layout version 2, every field a little-endian `u64` in declaration order (version 1
//! was the same up to `enforce`):
//! - `root_oom_policy` is the address of the root's default policy (a `u32`, as below);
//! - `life` is a `u32`: the slot's state in its low two bits (0 free, 1 live, 2 dying,
//!   3 being destroyed); `serial` a `u64`; `parent` and `nr_threads`, `oom_policy` `u32`s
//!   (the policy: 0 inherit, 1 fail, 2 abort, 3 force); `explicit` pages;
//! - `bound` a `u32`: slots from it on were never used (0 stands for 1);
//! - the page counter's `usage`, `watermark`, `failcnt`, `low` and `min` are `u64` pages;
//!   `max`, `high` and `soft_limit` are stored as `unlimited - pages`;
//! - `events` and `events_local` are `nr_events` `u64`s in the order of `memory.events`
//!   (`low`, `high`, `max`, `oom`, `oom_kill`, `warn`),
//!   `stats` `nr_stats` `u64`s (`STAT_NAMES`' order), this slot's own (a subtree's are summed); `enforce` a `u32` (0 on,
//!   1 warn, 2 off);
//! - `names` is `max_groups × name_max` bytes, `name_len` one byte per slot;
//! - `request` is the address of the request area, laid out as `wire.rs` says;
//! - the thread registry: `threads_used` slots from `threads` are in use, each
//!   `thread_size` bytes, with `tid` and `group` `u32`s (a slot whose `tid` is 0 is
//!   free) and `stock` a `u64`: the group plus one in its high half (0: none), pages in
//!   its low half;
//! - `psi` is the offset into a slot of `memory.pressure`'s state: a sequence count
//!   (odd while the process writes it; a reader retries until it reads the same even
//!   count before and after), then `psi_words` `u64`s, `psi.rs`'s stored form, which a
//!   reader brings to its own `CLOCK_MONOTONIC` now with `psi.rs` itself.
//!
//! A change to any of this is a new version: a reader refuses a version it does not know.

#![deny(unsafe_code)]

use super::counter::{PageCounter, UNLIMITED};
use super::events::{NR_EVENTS, NR_STATS};
use super::size::PAGE_SIZE;
use super::table::{GroupTable, GROUPS, MAX_GROUPS};
use super::threads::MAX_THREADS;
use crate::consts::NAME_MAX;
use core::mem::offset_of;
use std::sync::atomic::{AtomicU32, AtomicUsize};

/// The magic a reader checks first.
pub const MAGIC: [u8; 8] = *b"cgmalloc";
/// The layout described in the module docs.
pub const VERSION: u64 = 2;

/// The record behind `cgmalloc_layout`.
#[repr(C)]
pub struct Layout {
    pub magic: [u8; 8],
    pub version: u64,
    /// Bytes of this record.
    pub size: u64,
    pub table: &'static GroupTable<MAX_GROUPS>,
    /// The root's default `memory.oom.policy`, a `u32` as `oom_policy`.
    pub root_oom_policy: &'static AtomicU32,
    pub max_groups: u64,
    pub page_size: u64,
    pub name_max: u64,
    pub nr_events: u64,
    pub nr_stats: u64,
    pub unlimited: u64,
    /// Offsets into the table.
    pub bound: u64,
    pub slots: u64,
    pub slot_size: u64,
    pub names: u64,
    pub name_len: u64,
    /// Offsets into a slot.
    pub life: u64,
    pub serial: u64,
    pub parent: u64,
    pub nr_threads: u64,
    pub oom_policy: u64,
    pub explicit: u64,
    pub events: u64,
    pub events_local: u64,
    pub stats: u64,
    pub usage: u64,
    pub watermark: u64,
    pub failcnt: u64,
    pub max: u64,
    pub high: u64,
    pub soft_limit: u64,
    pub low: u64,
    pub min: u64,
    /// The request area (`request.rs`; its format is `wire.rs`'s).
    pub request: &'static super::request::Request,
    /// The thread registry (`threads.rs`): its slots, how many, the address of the
    /// `usize` one past the highest slot used, and a slot's size and fields.
    pub(super) threads: &'static [super::threads::ThreadSlot; MAX_THREADS],
    pub max_threads: u64,
    pub threads_used: &'static AtomicUsize,
    pub thread_size: u64,
    pub thread_tid: u64,
    pub thread_group: u64,
    pub thread_stock: u64,
    /// Offset into a slot of `memory.enforce`, a `u32`: 0 on, 1 warn, 2 off.
    pub enforce: u64,
    /// Offset into a slot of `memory.pressure`'s sequence count and state (`psi.rs`).
    pub psi: u64,
    pub psi_words: u64,
}

const T: super::table::TableLayout = GroupTable::<MAX_GROUPS>::LAYOUT;

const fn counter(field: usize) -> u64 {
    (T.counter + field) as u64
}

/// cbindgen:ignore
// An exported name is what `unsafe_code` flags (two libraries could export it); this one
// is the crate's own, read only by other processes.
#[allow(unsafe_code)]
#[no_mangle]
#[used]
#[allow(non_upper_case_globals)]
pub static cgmalloc_layout: Layout = Layout {
    magic: MAGIC,
    version: VERSION,
    size: core::mem::size_of::<Layout>() as u64,
    table: &GROUPS,
    root_oom_policy: &super::oom::ROOT_DEFAULT,
    max_groups: MAX_GROUPS as u64,
    page_size: PAGE_SIZE,
    name_max: NAME_MAX as u64,
    nr_events: NR_EVENTS as u64,
    nr_stats: NR_STATS as u64,
    unlimited: UNLIMITED,
    bound: T.bound as u64,
    slots: T.slots as u64,
    slot_size: T.slot_size as u64,
    names: T.names as u64,
    name_len: T.name_len as u64,
    life: T.life as u64,
    serial: T.serial as u64,
    parent: T.parent as u64,
    nr_threads: T.nr_threads as u64,
    oom_policy: T.oom_policy as u64,
    explicit: T.explicit as u64,
    events: T.events as u64,
    events_local: T.events_local as u64,
    stats: T.stats as u64,
    usage: counter(offset_of!(PageCounter, usage)),
    watermark: counter(offset_of!(PageCounter, watermark)),
    failcnt: counter(offset_of!(PageCounter, failcnt)),
    max: counter(offset_of!(PageCounter, max)),
    high: counter(offset_of!(PageCounter, high)),
    soft_limit: counter(offset_of!(PageCounter, soft_limit)),
    low: counter(offset_of!(PageCounter, low)),
    min: counter(offset_of!(PageCounter, min)),
    request: &super::request::REQUEST,
    threads: &super::threads::THREADS,
    max_threads: MAX_THREADS as u64,
    threads_used: &super::threads::HIGH_WATER,
    thread_size: super::threads::SLOT_LAYOUT[0] as u64,
    thread_tid: super::threads::SLOT_LAYOUT[1] as u64,
    thread_group: super::threads::SLOT_LAYOUT[2] as u64,
    thread_stock: super::threads::SLOT_LAYOUT[3] as u64,
    enforce: counter(offset_of!(PageCounter, enforce)),
    psi: T.psi as u64,
    psi_words: super::psi::WORDS as u64,
};
