//! `CGMALLOC_STATS=stderr|FILE`: at exit, the table of every group (path,
//! `memory.current`, `memory.peak`, `memory.max`, `memory.high`, events) goes to stderr or
//! is appended to FILE (created if missing).
//!
//! The file is opened at exit, not kept open (programs close descriptors they do not
//! know); at start it is opened once to check that it can be. Only the process that
//! read the variable writes the table: a forked child that exits does not repeat it
//! (one that execs starts afresh and reads the variable itself).
//!
//! `CGMALLOC_REPORT=DIR` (set by `cgmalloc run --stats`, which makes DIR and prints one
//! report for the run from what it finds there): every process of the run, forked
//! children included, leaves at `exit` one record `DIR/PID.json` (`report::write_record`),
//! written under a temporary name and then linked to its final one, so the launcher never
//! reads half a record. A name is never replaced: a pid seen twice in one run (reused)
//! gets `PID.1.json`, and so on. DIR is a path, not a descriptor, so a program that closes
//! every descriptor it inherited still reports; one that ends without `exit` (killed by a
//! signal, `_exit`, a failed `exec`) leaves no record.

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

/// `CGMALLOC_REPORT`'s directory, NUL-terminated.
static REPORT_DIR: OnceLock<CString> = OnceLock::new();

/// Registers the record for `cgmalloc run --stats` in the directory `value`.
pub fn arm_report(value: &[u8]) -> Result<(), String> {
    let v = value.trim_ascii();
    if !v.starts_with(b"/") {
        return Err(bad_value(value, "want an absolute directory"));
    }
    let dir = CString::new(v).map_err(|_| bad_value(value, "NUL in path"))?;
    if REPORT_DIR.set(dir).is_err() {
        return Ok(());
    }
    os::at_exit_with_status(write_report)
        .map_err(|()| "cannot register the exit record".to_string())
}

/// `DIR/NAME` into `buf`, NUL-terminated; `None` if it does not fit.
fn dir_path<'a>(buf: &'a mut [u8], dir: &CString, name: &[&[u8]]) -> Option<&'a core::ffi::CStr> {
    let mut b = FmtBuf::new(buf);
    b.push(dir.as_bytes());
    b.push(b"/");
    for part in name {
        b.push(part);
    }
    b.push(b"\0");
    let n = b.total();
    if n > b.as_bytes().len() {
        return None;
    }
    core::ffi::CStr::from_bytes_with_nul(&buf[..n]).ok()
}

extern "C" fn write_report(status: libc::c_int, _: *mut libc::c_void) {
    let Some(dir) = REPORT_DIR.get() else {
        return;
    };
    let pid = os::getpid();
    let mut digits = [0u8; 24];
    let mut d = FmtBuf::new(&mut digits);
    d.push_u64(pid as u64);
    let pid_text = d.as_bytes();
    let mut tmp_buf = [0u8; 4200];
    let Some(tmp) = dir_path(&mut tmp_buf, dir, &[b".", pid_text, b".tmp"]) else {
        return;
    };
    let Ok(fd) = os::create_private(tmp) else {
        return;
    };
    let mut comm = [0u8; 64];
    let n = os::read_file(c"/proc/self/comm", &mut comm);
    let p = report::Process {
        pid,
        ppid: os::getppid(),
        comm: comm[..n].trim_ascii_end(),
        exit: status,
    };
    let ok = report::write_record(fd, &p);
    os::close(fd);
    if ok {
        let mut name_buf = [0u8; 4200];
        for i in 0u64..1000 {
            let mut suffix = [0u8; 24];
            let mut sfx = FmtBuf::new(&mut suffix);
            if i > 0 {
                sfx.push(b".");
                sfx.push_u64(i);
            }
            let Some(name) = dir_path(&mut name_buf, dir, &[pid_text, sfx.as_bytes(), b".json"])
            else {
                break;
            };
            match os::rename_noreplace(tmp, name) {
                Err(libc::EEXIST) => continue,
                _ => break,
            }
        }
    }
    os::unlink(tmp);
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
