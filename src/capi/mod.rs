//! The C ABI: the malloc family (`malloc.rs`) and, later, the `cgm_*` control API.

pub mod malloc;
#[cfg(feature = "override")]
pub mod thread;
