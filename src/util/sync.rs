//! The atomics seam: the structures model-checked under `loom` (page counters, stock
//! words, the group table's lifecycle word) take their atomic types from here, so that
//! `RUSTFLAGS="--cfg loom"` replaces them with loom's. The rest of the crate uses
//! `std`'s directly.

#![forbid(unsafe_code)]

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Hints the CPU that the caller spins; under loom, yields to the model scheduler.
#[inline]
pub fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Declares `fn NAME() -> T` as a `const fn`, except under loom, whose atomics have no
/// const constructors.
macro_rules! const_unless_loom {
    ($(#[$m:meta])* $vis:vis fn $name:ident() -> $ret:ty $body:block) => {
        #[cfg(not(loom))]
        $(#[$m])* $vis const fn $name() -> $ret $body
        #[cfg(loom)]
        $(#[$m])* $vis fn $name() -> $ret $body
    };
}
pub(crate) use const_unless_loom;
