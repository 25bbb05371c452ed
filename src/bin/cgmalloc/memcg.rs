//! The library's own grammar for size strings and group paths, compiled into the launcher
//! from the library's source files (`src/memcg/size.rs`, `src/memcg/path.rs`) rather than
//! rewritten, so that the launcher refuses exactly what the library would; and what it
//! shares with a running process it reads or writes: the names of events and statistics
//! (`src/memcg/events.rs`), the request area's format (`src/memcg/wire.rs`) and the
//! arithmetic of `memory.pressure` (`src/memcg/psi.rs`). They take
//! their constants from `crate::consts`, which the launcher compiles from the library's
//! `src/consts.rs`.

#[allow(dead_code)] // the launcher needs only `parse_with` and `SizeError::why`
#[path = "../../memcg/size.rs"]
pub mod size;

#[allow(dead_code)] // the launcher needs only `GroupPath::parse` and `is_root`
#[path = "../../memcg/path.rs"]
pub mod path;

#[allow(dead_code)] // the launcher needs only the names and their counts
#[path = "../../memcg/events.rs"]
pub mod events;

#[path = "../../memcg/wire.rs"]
pub mod wire;

#[allow(dead_code)] // the launcher reads; it never changes a state
#[path = "../../memcg/psi.rs"]
pub mod psi;
