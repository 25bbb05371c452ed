//! The numbers every layer agrees on: the page, the unit of every charge, and the shape
//! of the group tree. Defined here once; the launcher compiles this file too
//! (`src/bin/cgmalloc/main.rs`), so it refuses exactly the paths the library would.

#![forbid(unsafe_code)]

/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// Bytes in a page: what the kernel maps, and the unit of every counter.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;

/// Pages, the unit of every counter.
pub type Pages = u64;
/// The pages in `bytes`, a page multiple.
pub const fn pages(bytes: usize) -> Pages {
    (bytes >> PAGE_SHIFT) as Pages
}

/// "No limit", as a page count.
pub const UNLIMITED: Pages = u64::MAX;

/// Deepest group path below the root (INTERFACE.md), so at most `MAX_DEPTH + 1` levels.
pub const MAX_DEPTH: usize = 16;
/// Longest name of one group in a path, in bytes.
pub const NAME_MAX: usize = 64;
