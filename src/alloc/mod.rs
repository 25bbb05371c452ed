//! The allocator: size classes, spans carved from aligned segments, per-(thread, group)
//! heaps and large mappings. Every page run is charged to a group with the accounting
//! engine's `try_charge`, recorded in its holder's charge record (`charged`) in the same
//! step, and uncharged from what the record says (DESIGN.md, "One truth for charged").
//!
//! Map, bottom up: `segmap` (which memory is ours), `segment` (4 MiB regions of 64 KiB
//! slices), `charged` (the charge a span or mapping holds), `span` (blocks of one class,
//! three free lists), `freemap` (the live map: where handed-out small blocks start),
//! `heap` (one thread's spans for one group), `medium` (blocks up to 1 MiB, a span
//! each), `large` (bigger blocks in their own mappings), `harvest` (cached mappings'
//! pages moved into new blocks), `tld` (thread state and exit), `abandoned` (segments of
//! exited threads), `free` (the free path), `front` (entry points), `resize` (growing a
//! block where it is), `account` (statistics and reclaim for the accounting engine),
//! `meta` (pools for heaps and thread states), `fork` (the `pthread_atfork` handlers).

pub mod abandoned;
pub mod account;
pub mod charged;
pub mod fork;
pub mod free;
pub mod freemap;
pub mod front;
pub mod harvest;
pub mod heap;
pub mod large;
pub mod medium;
pub mod meta;
pub mod resize;
pub mod segmap;
pub mod segment;
pub mod size_class;
pub mod span;
pub mod tld;
pub mod tls;
pub mod types;

pub use front::{aligned, calloc, free, malloc, realloc, usable_size, zeroed};

/// One-time set-up: the hooks through which the accounting engine reaches the allocator.
pub fn init() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    crate::memcg::control::apply_root_limits_early();
    account::install();
    crate::memcg::threads::set_hooks(tld::group_switched, tld::thread_exit);
    fork::register();
}
