//! `CGMALLOC_STATS=stderr|FILE`: at exit, the table of every group (path,
//! `memory.current`, `memory.peak`, `memory.max`, `memory.high`, events) goes to stderr or
//! is appended to FILE (created if missing).
//!
//! The file is opened at exit, not kept open (programs close descriptors they do not
//! know); at start it is opened once to check that it can be. Only the process that
//! read the variable writes the table: a forked child that exits does not repeat it
//! (one that execs starts afresh and reads the variable itself).

use super::bad_value;
use crate::memcg::report;
use crate::util::fmtbuf::FmtBuf;
use std::ffi::CString;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

/// Where the table goes: `None` for stderr, else the file.
static DEST: OnceLock<Option<CString>> = OnceLock::new();
/// The process that armed the report.
static PID: AtomicI32 = AtomicI32::new(0);

const FILE_FLAGS: i32 = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC;

fn open(path: &CString) -> Result<i32, i32> {
    // SAFETY: `path` is NUL-terminated; the mode is a plain integer.
    let fd = unsafe { libc::open(path.as_ptr(), FILE_FLAGS, 0o644) };
    if fd < 0 {
        Err(crate::os::errno())
    } else {
        Ok(fd)
    }
}

/// Checks the destination and registers the exit report.
pub fn arm(value: &[u8]) -> Result<(), String> {
    let v = value.trim_ascii();
    let dest = match v {
        b"" => return Err(bad_value(value, "want stderr or a file path")),
        b"stderr" => None,
        path => {
            let c = CString::new(path).map_err(|_| bad_value(value, "NUL in path"))?;
            let fd = open(&c).map_err(|e| {
                let text = std::io::Error::from_raw_os_error(e);
                bad_value(value, &format!("cannot open: {text}"))
            })?;
            crate::os::close(fd);
            Some(c)
        }
    };
    if DEST.set(dest).is_err() {
        return Ok(());
    }
    // SAFETY: getpid has no preconditions.
    PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    // SAFETY: `at_exit` is an `extern "C" fn()` that stays valid for the process' life.
    if unsafe { libc::atexit(at_exit) } != 0 {
        return Err("cannot register the exit report".into());
    }
    Ok(())
}

/// The process' name, from `/proc/self/comm`, into `out`.
fn push_comm(out: &mut FmtBuf<'_>) {
    let mut buf = [0u8; 64];
    // SAFETY: a NUL-terminated path; `buf` is writable for its length.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/comm".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n > 0 {
        out.push(buf[..n as usize].trim_ascii_end());
    }
}

extern "C" fn at_exit() {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    if pid != PID.load(Ordering::Relaxed) {
        return;
    }
    let (fd, opened) = match DEST.get() {
        Some(Some(path)) => match open(path) {
            Ok(fd) => (fd, true),
            Err(_) => return,
        },
        _ => (crate::os::stderr::fd(), false),
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
        crate::os::close(fd);
    }
}
