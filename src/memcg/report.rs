//! The group report: one row per group with its path, `memory.current`, `memory.peak`,
//! `memory.max`, `memory.high` and events (then `memory.enforce` unless `on`, and
//! `memory.pressure` if the group ever stalled), written straight to a file descriptor without
//! allocating (it is printed by the `abort` OOM policy and at exit with
//! `CGMALLOC_STATS`).

#![forbid(unsafe_code)]

use super::counter::{Hierarchy, UNLIMITED};
use super::counter::{ENFORCE_OFF, ENFORCE_WARN};
use super::events::EVENT_NAMES;
use super::psi::SOME;
use super::size::PAGE_SIZE;
use super::table::{DYING, GROUPS};
use crate::util::fmtbuf::FmtBuf;
use std::sync::atomic::Ordering;

const PATH_COL: usize = 24;
const NUM_COL: usize = 10;

fn pad(b: &mut FmtBuf<'_>, from: usize, width: usize) {
    for _ in b.total() - from..width {
        b.push(b" ");
    }
}

/// Bytes in a short human form: `0`, `812K`, `12.5M`, `3.0G`; `max` for no limit.
pub fn push_human(b: &mut FmtBuf<'_>, bytes: u64, unlimited: bool) {
    if unlimited {
        b.push(b"max");
        return;
    }
    const UNITS: [(u64, &[u8]); 4] = [
        (1 << 40, b"T"),
        (1 << 30, b"G"),
        (1 << 20, b"M"),
        (1 << 10, b"K"),
    ];
    for (unit, suffix) in UNITS {
        if bytes >= unit {
            let tenths = bytes * 10 / unit;
            b.push_u64(tenths / 10);
            if tenths < 1000 {
                b.push(b".");
                b.push_u64(tenths % 10);
            }
            b.push(suffix);
            return;
        }
    }
    b.push_u64(bytes);
}

fn push_cell(b: &mut FmtBuf<'_>, pages: u64) {
    b.push(b" ");
    let start = b.total();
    push_human(b, pages.saturating_mul(PAGE_SIZE), pages == UNLIMITED);
    pad(b, start, NUM_COL);
}

/// Writes `title` (a line), the column header and one row per live or dying group to
/// `fd`.
pub fn write_table(fd: i32, title: &[u8]) {
    crate::os::write_all(fd, title);
    let mut line = [0u8; 1536];
    let mut b = FmtBuf::new(&mut line);
    let start = b.total();
    b.push(b"group");
    pad(&mut b, start, PATH_COL);
    for h in ["current", "peak", "max", "high"] {
        b.push(b" ");
        let s = b.total();
        b.push(h.as_bytes());
        pad(&mut b, s, NUM_COL);
    }
    b.push(b" events\n");
    crate::os::write_all(fd, b.as_bytes());
    for id in GROUPS.in_use() {
        let mut line = [0u8; 1536];
        let mut b = FmtBuf::new(&mut line);
        let start = b.total();
        GROUPS.write_path(id, &mut b);
        if GROUPS.state(id) == DYING {
            b.push(b" (dying)");
        }
        pad(&mut b, start, PATH_COL);
        let c = GROUPS.counter(id);
        push_cell(&mut b, c.usage());
        push_cell(&mut b, c.watermark.load(Ordering::Relaxed));
        push_cell(&mut b, c.max.get());
        push_cell(&mut b, c.high.get());
        let ev = GROUPS.events(id, false);
        for (i, name) in EVENT_NAMES.iter().enumerate() {
            b.push(b" ");
            b.push(name.as_bytes());
            b.push(b"=");
            b.push_u64(ev[i]);
        }
        // A group whose limits are only reported or ignored says so.
        match c.enforce.load(Ordering::Relaxed) {
            ENFORCE_WARN => b.push(b" enforce=warn"),
            ENFORCE_OFF => b.push(b" enforce=off"),
            _ => {}
        }
        // A group whose threads ever stalled shows `memory.pressure`, its lines joined.
        let p = super::pressure::read(id);
        if p.total_us[SOME] > 0 {
            b.push(b" pressure:");
            p.write(&mut |s| {
                if s == b"\n" {
                    return;
                }
                if s == b"some" || s == b"full" {
                    b.push(b" ");
                }
                b.push(s);
            });
        }
        b.push(b"\n");
        crate::os::write_all(fd, b.as_bytes());
    }
}

/// What a process says of itself in its record (`write_record`).
pub struct Process<'a> {
    pub pid: i32,
    pub ppid: i32,
    /// `/proc/self/comm`.
    pub comm: &'a [u8],
    /// The status given to `exit`.
    pub exit: i32,
}

/// `s` as a JSON string, quotes included (control bytes and non-ASCII as `\u00XX`, so
/// a name that is not UTF-8 still reads).
fn push_json_str(b: &mut FmtBuf<'_>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    b.push(b"\"");
    for &c in s {
        match c {
            b'"' => b.push(b"\\\""),
            b'\\' => b.push(b"\\\\"),
            0x20..=0x7e => b.push(&[c]),
            _ => b.push(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 15) as usize],
            ]),
        }
    }
    b.push(b"\"");
}

/// A limit in bytes, `null` for none.
fn push_json_limit(b: &mut FmtBuf<'_>, pages: u64) {
    if pages == UNLIMITED {
        b.push(b"null");
    } else {
        b.push_u64(pages.saturating_mul(PAGE_SIZE));
    }
}

/// An average of `memory.pressure` as a JSON number with two decimals.
fn push_json_avg(b: &mut FmtBuf<'_>, fixed: u64) {
    let (i, f) = super::psi::Values::int_frac(fixed);
    b.push_u64(i);
    b.push(if f < 10 { b".0" } else { b"." });
    b.push_u64(f);
}

/// Writes the record a process leaves for `cgmalloc run --stats` (one JSON object on
/// one line, then a newline): the process, what `N%` meant, and every live or dying
/// group with its `memory.current`, `peak`, `max`, `high` (bytes, `null` for none),
/// hierarchical `memory.events`, `memory.enforce` and `memory.pressure`. Allocates
/// nothing; written a group at a time.
pub fn write_record(fd: i32, p: &Process<'_>) -> bool {
    let mut line = [0u8; 512];
    let mut b = FmtBuf::new(&mut line);
    b.push(b"{\"version\":1,\"pid\":");
    b.push_u64(p.pid as u64);
    b.push(b",\"ppid\":");
    b.push_u64(p.ppid as u64);
    b.push(b",\"comm\":");
    push_json_str(&mut b, p.comm);
    b.push(b",\"exit\":");
    if p.exit < 0 {
        b.push(b"-");
    }
    b.push_u64(p.exit.unsigned_abs() as u64);
    b.push(b",\"percent_base\":");
    match super::size::percent_base() {
        Some((bytes, base)) => {
            b.push(b"{\"kind\":\"");
            b.push(base.key().as_bytes());
            b.push(b"\",\"bytes\":");
            b.push_u64(bytes);
            b.push(b"}");
        }
        None => b.push(b"null"),
    }
    b.push(b",\"groups\":[");
    if b.total() > line_len(&b) || !crate::os::write_all(fd, b.as_bytes()) {
        return false;
    }
    for (n, id) in GROUPS.in_use().enumerate() {
        let mut line = [0u8; 1536];
        let mut b = FmtBuf::new(&mut line);
        if n > 0 {
            b.push(b",");
        }
        b.push(b"{\"path\":\"");
        GROUPS.write_path(id, &mut b);
        b.push(b"\",\"state\":");
        b.push(if GROUPS.state(id) == DYING {
            b"\"dying\""
        } else {
            b"\"live\""
        });
        let c = GROUPS.counter(id);
        b.push(b",\"current\":");
        b.push_u64(c.usage() * PAGE_SIZE);
        b.push(b",\"peak\":");
        b.push_u64(c.watermark.load(Ordering::Relaxed) * PAGE_SIZE);
        b.push(b",\"max\":");
        push_json_limit(&mut b, c.max.get());
        b.push(b",\"high\":");
        push_json_limit(&mut b, c.high.get());
        b.push(b",\"events\":{");
        let ev = GROUPS.events(id, false);
        for (i, name) in EVENT_NAMES.iter().enumerate() {
            if i > 0 {
                b.push(b",");
            }
            push_json_str(&mut b, name.as_bytes());
            b.push(b":");
            b.push_u64(ev[i]);
        }
        b.push(b"},\"enforce\":\"");
        b.push(
            super::wire::ENFORCE_NAMES[c.enforce.load(Ordering::Relaxed) as usize % 3].as_bytes(),
        );
        b.push(b"\",\"pressure\":{");
        let v = super::pressure::read(id);
        for (k, kind) in super::psi::KINDS.iter().enumerate() {
            if k > 0 {
                b.push(b",");
            }
            push_json_str(&mut b, kind.as_bytes());
            for (w, name) in ["avg10", "avg60", "avg300"].iter().enumerate() {
                b.push(if w == 0 { b":{\"" } else { b",\"" });
                b.push(name.as_bytes());
                b.push(b"\":");
                push_json_avg(&mut b, v.avg[k][w]);
            }
            b.push(b",\"total\":");
            b.push_u64(v.total_us[k]);
            b.push(b"}");
        }
        b.push(b"}}");
        if b.total() > line_len(&b) || !crate::os::write_all(fd, b.as_bytes()) {
            return false;
        }
    }
    crate::os::write_all(fd, b"]}\n")
}

/// The bytes a `FmtBuf` holds (what did not fit is lost: the record would be invalid).
fn line_len(b: &FmtBuf<'_>) -> usize {
    b.as_bytes().len()
}

/// Least time between two `memory.enforce = warn` lines of one group.
const WARN_EVERY_NS: u64 = 10_000_000_000;

/// `memory.enforce = warn`: a charge took group `id` past its `file` (`memory.max` or
/// `memory.high`) of `limit` pages, to `usage`: one line on stderr, at most once per
/// group per 10 s, as `cgmalloc: warn: /tenants/a would exceed memory.max (64.0M) by 1.2M`.
/// Allocates nothing.
pub fn warn_over(id: u32, file: &[u8], limit: u64, usage: u64) {
    let slot = GROUPS.slot(id);
    let now = crate::os::coarse_now_ns();
    let last = slot.last_warn.load(Ordering::Relaxed);
    if (last != 0 && now.saturating_sub(last) < WARN_EVERY_NS)
        || slot
            .last_warn
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let mut line = [0u8; 1536];
    let mut b = FmtBuf::new(&mut line);
    b.push(b"cgmalloc: warn: ");
    GROUPS.write_path(id, &mut b);
    b.push(b" would exceed ");
    b.push(file);
    b.push(b" (");
    push_human(&mut b, limit.saturating_mul(PAGE_SIZE), false);
    b.push(b") by ");
    push_human(
        &mut b,
        usage.saturating_sub(limit).saturating_mul(PAGE_SIZE),
        false,
    );
    b.push(b"\n");
    crate::os::write_all(crate::os::stderr::fd(), b.as_bytes());
}
