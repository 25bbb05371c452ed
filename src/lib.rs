//! cgmalloc: a cgroup-aware memory allocator, the Linux memory controller (memcg) rebuilt
//! inside one process.
//!
//! Every thread belongs to a group in a tree of groups; memory is charged to groups
//! through per-thread stocks of precharged pages and hierarchical page counters with
//! `max`, `high`, `low` and `min`, and a charge that hits a limit runs the kernel's
//! `try_charge` ladder: reclaim, drain every stock, retry, OOM handler.
//!
//! Layers (DESIGN.md): `api` (Rust groups) → `memcg` (accounting) → `os` → `util`.

// Statics are built with `const fn new()`; a `Default` would add nothing.
#![allow(clippy::new_without_default)]

#[cfg(not(loom))]
pub(crate) mod alloc;
pub mod memcg;
pub mod os;
pub mod util;

#[cfg(not(loom))]
mod api;
#[cfg(not(loom))]
pub mod capi;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod global;

#[cfg(not(loom))]
pub use api::{drain_stocks, Charge, EnterGuard, Group, OomAction, OomInfo, Reclaimer, Stat};
#[cfg(not(loom))]
pub use error::{describe as strerror, Error, Result};
#[cfg(not(loom))]
pub use global::CgMalloc;
