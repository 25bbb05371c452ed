//! The allocator in process: this binary installs `CgMalloc` as its Rust global
//! allocator, so every allocation of the test (and of the test harness) goes through
//! cgmalloc's spans, segments and large mappings, and is charged to the calling thread's
//! group. One module per concern:
//!
//! - `global`: standard collections, every size and alignment, zeroed memory, data moved
//!   across threads, `try_reserve` at a group's `memory.max`;
//! - `accuracy`: `memory.current` and `memory.stat` against what was allocated, and
//!   ownership (a block is credited to the group it was charged to, whoever frees it);
//! - `limits`: `memory.max` enforced through the allocator, reclaim callbacks, and what
//!   they free into the allocator's cache reclaimed before `memory.high` throttles;
//! - `medium`: medium blocks (32 KiB–1 MiB), a span each;
//! - `large_slack`: the slack of a cached large mapping reused for a smaller block;
//! - `harvest`: large blocks taking the resident pages of cached mappings;
//! - `huge_pages`: large blocks of 2 MiB or more advised for huge pages while live only;
//! - `reuse`: block reuse order;
//! - `purge`: deferred purge of freed spans, `malloc_trim`;
//! - `free_pages`: freed pages stay charged (`free`) until they go back to the OS;
//!   destroyed groups, `malloc_trim` and `memory.reclaim` give them back;
//! - `idle_heaps`: heaps of groups a thread no longer allocates in give back their spans;
//! - `retire`: an exited thread's state taken over whole by the next thread, expired,
//!   trimmed and recycled across `fork()`;
//! - `adopt`: segments of exited threads adopted by the next thread of their group;
//! - `threads`: 100,000 thread create / join cycles, nothing leaked per thread; the
//!   stack a thread's life in the allocator touches;
//! - `churn`: threads coming and going while blocks pass between them, memory bounded;
//! - `remote`: frees into other threads' spans wait on chains, bounded, pushed on time,
//!   and across `fork()`;
//! - `exit_abandon`: frees an uncharge's callback runs during an abandoning exit, into
//!   the exiting thread's segments not yet abandoned;
//! - `exit_race`: frees racing with their owner's exit;
//! - `fork`: `fork()` at any instant, audited in every child;
//! - `stress`: 8 threads of random allocations across 16 groups with moving limits.
//!
//! The allocator's state is process-wide: run these tests with `cargo nextest`, which
//! gives every test a process of its own (see `tests/README.md`).

#[global_allocator]
static GLOBAL: cgmalloc::CgMalloc = cgmalloc::CgMalloc;

#[path = "../support/mod.rs"]
mod support;

mod accuracy;
mod adopt;
mod churn;
mod exit_abandon;
mod exit_race;
mod fork;
mod free_pages;
mod global;
mod harvest;
mod huge_pages;
mod idle_heaps;
mod large_slack;
mod limits;
mod medium;
mod purge;
mod remote;
mod retire;
mod reuse;
mod stress;
mod threads;
