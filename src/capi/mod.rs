//! The C ABI: the malloc family (`malloc.rs`), the `cgm_*` control API (`control.rs`)
//! and, with `override`, the `pthread_create` interposition (`thread.rs`).

pub mod control;
/// cbindgen:ignore
pub mod malloc;
/// cbindgen:ignore
#[cfg(feature = "override")]
pub mod thread;
