//! `CGMALLOC_STATS=stderr|FILE`: at exit, the table of every group (path,
//! `memory.current`, `memory.peak`, `memory.max`, `memory.high`, events) goes to stderr or
//! is appended to FILE (created if missing).
//!
//! The file is opened at exit, not kept open (programs close descriptors they do not
//! know); at start it is opened once to check that it can be. Only the process that
//! read the variable writes the table: a forked child that exits does not repeat it
//! (one that execs starts afresh and reads the variable itself).

#![forbid(unsafe_code)]

use super::bad_value;
use crate::memcg::report;
use crate::os;
use crate::util::fmtbuf::FmtBuf;
use std::ffi::CString;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

/// Where the table goes: `None` for stderr, else the file.
static DEST: OnceLock<Option<CString>> = OnceLock::new();
/// The process that armed the report.
static PID: AtomicI32 = AtomicI32::new(0);

/// Checks the destination and registers the exit report.
pub fn arm(value: &[u8]) -> Result<(), String> {
    let v = value.trim_ascii();
    let dest = match v {
        b"" => return Err(bad_value(value, "want stderr or a file path")),
        b"stderr" => None,
        path => {
            let c = CString::new(path).map_err(|_| bad_value(value, "NUL in path"))?;
            let fd = os::open_append(&c).map_err(|e| {
                let text = std::io::Error::from_raw_os_error(e);
                bad_value(value, &format!("cannot open: {text}"))
            })?;
            os::close(fd);
            Some(c)
        }
    };
    if DEST.set(dest).is_err() {
        return Ok(());
    }
    PID.store(os::getpid(), Ordering::Relaxed);
    os::atexit(at_exit).map_err(|()| "cannot register the exit report".to_string())
}

/// The process' name, from `/proc/self/comm`, into `out`.
fn push_comm(out: &mut FmtBuf<'_>) {
    let mut buf = [0u8; 64];
    let n = os::read_file(c"/proc/self/comm", &mut buf);
    if n > 0 {
        out.push(buf[..n].trim_ascii_end());
    }
}

extern "C" fn at_exit() {
    let pid = os::getpid();
    if pid != PID.load(Ordering::Relaxed) {
        return;
    }
    let (fd, opened) = match DEST.get() {
        Some(Some(path)) => match os::open_append(path) {
            Ok(fd) => (fd, true),
            Err(_) => return,
        },
        _ => (os::stderr::fd(), false),
    };
    let mut title = [0u8; 160];
    let mut t = FmtBuf::new(&mut title);
    t.push(b"cgmalloc: pid ");
    t.push_u64(pid as u64);
    t.push(b" (");
    push_comm(&mut t);
    t.push(b"): groups at exit\n");
    report::write_table(fd, t.as_bytes());
    if opened {
        os::close(fd);
    }
}
