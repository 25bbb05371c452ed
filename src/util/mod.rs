//! Small building blocks shared by the layers above `os`: the atomics seam (`sync`), a
//! spin lock (`spin`), an allocation-free text buffer (`fmtbuf`), glob matching
//! (`glob`), hooks through which a lower layer calls a higher one (`hook`), statics
//! reached without the GOT (`local`) and the fatal-error line (`fatal`).
//!
//! Nothing here allocates, so all of it may be used on paths reachable from `malloc`.

pub mod fatal;
pub mod fmtbuf;
pub mod glob;
pub mod hook;
pub mod local;
pub mod memalloc;
pub mod spin;
pub mod sync;
