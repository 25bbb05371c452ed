//! The library's own grammar for size strings and group paths, compiled into the launcher
//! from the library's source files (`src/memcg/size.rs`, `src/memcg/path.rs`) rather than
//! rewritten, so that the launcher refuses exactly what the library would. The two
//! modules import a few constants from their siblings through `super::`; the shim
//! modules below provide them with the library's values.

#[allow(dead_code)] // the launcher needs only `parse_with` and `SizeError::why`
#[path = "../../memcg/size.rs"]
pub mod size;

#[allow(dead_code)] // the launcher needs only `GroupPath::parse` and `is_root`
#[path = "../../memcg/path.rs"]
pub mod path;

/// What `size.rs` and `path.rs` import from `src/memcg/counter.rs`.
mod counter {
    pub type Pages = u64;
    pub const UNLIMITED: Pages = u64::MAX;
    pub const MAX_DEPTH: usize = 16;
}

/// What `path.rs` imports from `src/memcg/table.rs`.
mod table {
    pub const NAME_MAX: usize = 64;
}
