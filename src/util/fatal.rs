//! The one way cgmalloc dies: a single `cgmalloc: fatal: ...` line on stderr, then
//! `abort()`. Nothing here allocates.

#![forbid(unsafe_code)]

use super::fmtbuf::FmtBuf;

/// Writes `cgmalloc: fatal: <parts...>` and a newline to stderr and aborts.
pub fn fatal(parts: &[&[u8]]) -> ! {
    let mut buf = [0u8; 512];
    let mut line = FmtBuf::new(&mut buf);
    line.push(b"cgmalloc: fatal: ");
    for p in parts {
        line.push(p);
    }
    line.push(b"\n");
    crate::os::write_stderr(line.as_bytes());
    crate::os::abort()
}
