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
