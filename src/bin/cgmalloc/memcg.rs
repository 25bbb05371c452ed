//! The library's own grammar for size strings and group paths, compiled into the launcher
//! from the library's source files (`src/memcg/size.rs`, `src/memcg/path.rs`) rather than
//! rewritten, so that the launcher refuses exactly what the library would. Both take
//! their constants from `crate::consts`, which the launcher compiles from the library's
//! `src/consts.rs`.

#[allow(dead_code)] // the launcher needs only `parse_with` and `SizeError::why`
#[path = "../../memcg/size.rs"]
pub mod size;

#[allow(dead_code)] // the launcher needs only `GroupPath::parse` and `is_root`
#[path = "../../memcg/path.rs"]
pub mod path;
