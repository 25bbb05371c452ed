//! A function that a higher layer installs once at start-up and a lower layer calls:
//! how the accounting engine reaches the allocator without importing it (layers point
//! one way).
//!
//! Invariant: a hook holds at most one function, the first installed, for the life of
//! the process; reading it is one acquire load. Nothing here allocates.

#![forbid(unsafe_code)]

use std::sync::OnceLock;

/// A function of type `F` (a `fn` pointer), installed once.
pub struct Hook<F>(OnceLock<F>);

impl<F: Copy> Hook<F> {
    pub const fn new() -> Self {
        Hook(OnceLock::new())
    }

    /// Installs `f`; a later call changes nothing.
    pub fn install(&self, f: F) {
        let _ = self.0.set(f);
    }

    /// The installed function, if any.
    #[inline]
    pub fn get(&self) -> Option<F> {
        self.0.get().copied()
    }
}
