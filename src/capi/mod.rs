//! The C ABI: the malloc family (`malloc.rs`), the `cgm_*` control API (`control.rs`)
//! and, with `override`, C++'s `operator new`/`delete` (`cxx.rs`) and the
//! `pthread_create` interposition (`thread.rs`), which find the definitions they stand
//! in for through `next.rs`.

pub mod control;
/// cbindgen:ignore
#[cfg(feature = "override")]
pub mod cxx;
/// cbindgen:ignore
pub mod malloc;
/// cbindgen:ignore
#[cfg(feature = "override")]
mod next;
/// cbindgen:ignore
#[cfg(feature = "override")]
pub mod thread;
