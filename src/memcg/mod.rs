//! The accounting engine: the Linux memory controller (memcg) rebuilt inside one process.
//!
//! Pure accounting: atomics and static tables, no pointers into user memory, no calls
//! into the allocator (which reaches in through the hooks in `reclaim` and `files`).
//!
//! Map of the module, bottom up:
//! - `counter`: page counters and the hierarchical charge walk (I1, I2, I3, I6);
//! - `table`: the group table, handles and the live → dying → free lifecycle;
//! - `stock`, `threads`: per-thread stocks of precharged pages (I4) and thread state;
//! - `charge`: the charge path (`try_charge`), with `reclaim`, `oom`, `high`,
//!   `threshold`, `events` and `callbacks` beside it; `pressure` measures its stalls
//!   (`memory.pressure`, with the arithmetic in `psi`) and signals their triggers;
//! - `ledger`: who records each charged page, the counters rebuilt from the records in a
//!   fork child, and the audit that compares them; `origin` names the holder of a charge
//!   in the fatal line of a counter underflow;
//! - `files`, `control`, `report`: the interface files and control operations;
//! - `layout`, `request`, `wire`: the table's description for readers outside the
//!   process, the writes they request, and what both sides share byte for byte;
//! - `size`, `container`: size strings, and the container limit their `N%` refers to.
//!
//! Under `--cfg loom` only `counter`, `table` and `stock` are built, for the model checks.

/// cbindgen:ignore
pub mod counter;
/// cbindgen:ignore
pub mod events;
/// cbindgen:ignore
pub mod origin;
/// cbindgen:ignore
pub mod path;
/// cbindgen:ignore
pub mod psi;
/// cbindgen:ignore
pub mod stock;
/// cbindgen:ignore
pub mod table;
/// cbindgen:ignore
pub mod wire;

#[cfg(not(loom))]
pub mod callbacks;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod charge;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod container;
#[cfg(not(loom))]
pub mod control;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod files;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod high;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod layout;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod ledger;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod oom;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod pressure;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod reclaim;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod report;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod request;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod size;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod threads;
/// cbindgen:ignore
#[cfg(not(loom))]
pub mod threshold;
