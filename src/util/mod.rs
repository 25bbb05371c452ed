//! Small building blocks shared by every layer: the atomics seam, a spin lock, an
//! allocation-free text buffer, glob matching and the fatal-error path.
//!
//! Nothing here allocates, so all of it may be used on paths reachable from `malloc`.

pub mod fatal;
pub mod fmtbuf;
pub mod glob;
pub mod local;
pub mod spin;
pub mod sync;
