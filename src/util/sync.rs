//! The atomics seam: the rest of the crate takes its atomic types from here, so that the
//! `loom` model checker can replace them (`RUSTFLAGS="--cfg loom"`) for the structures
//! that are checked under it (page counters, stock words, group lifecycle).

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
