//! The C ABI: the malloc family (`malloc.rs`) and, later, the `cgm_*` control API.

pub mod malloc;
pub mod thread;
