//! Control operations by group handle: what the Rust `Group` API and the C `cgm_*` API
//! both call. Every operation validates its handle (a pin for its whole duration, so a
//! concurrent destroy cannot free the group under it) and returns a positive errno on
//! failure, changing nothing.

#![forbid(unsafe_code)]

use super::callbacks::{self, Callback};
use super::charge;
use super::counter::Hierarchy;
use super::events::{Event, StatKey};
use super::files;
use super::oom;
use super::path::GroupPath;
use super::size::PAGE_SIZE;
use super::table::GROUPS;
use super::threads;
use crate::util::fmtbuf::FmtBuf;
use std::sync::atomic::Ordering;

pub type Errno = i32;

/// `struct cgm_stat`: a group's counters in bytes (limits that are `max` read as
/// `UINT64_MAX`) and its hierarchical `memory.events`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// `memory.current`: charged to the group and its descendants, stock included.
    pub current: u64,
    /// `memory.peak`.
    pub peak: u64,
    pub max: u64,
    pub high: u64,
    pub low: u64,
    pub min: u64,
    /// `memory.soft_limit_in_bytes`.
    pub soft_limit: u64,
    /// Charges refused at this group's `max` (`memory.failcnt`).
    pub failcnt: u64,
    /// Precharged pages held in thread stocks for this group and its descendants.
    pub stock: u64,
    pub events_low: u64,
    pub events_high: u64,
    pub events_max: u64,
    pub events_oom: u64,
    pub events_oom_kill: u64,
}

/// `struct cgm_pressure`: a group's `memory.pressure`. Averages are the share of wall
/// time stalled over the last 10, 60 and 300 s, in percent; totals are microseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pressure {
    pub some_avg10: f64,
    pub some_avg60: f64,
    pub some_avg300: f64,
    pub some_total_us: u64,
    pub full_avg10: f64,
    pub full_avg60: f64,
    pub full_avg300: f64,
    pub full_total_us: u64,
}

pub fn root() -> u64 {
    GROUPS.handle(super::table::ROOT)
}

pub fn create(path: &[u8]) -> Result<u64, Errno> {
    GROUPS.create(&GroupPath::parse(path)?)
}

pub fn open(path: &[u8]) -> Result<u64, Errno> {
    GROUPS.open(&GroupPath::parse(path)?)
}

/// Destroys the group: it stops being reachable at once and is freed when its last
/// charge goes (after every stock holding its pages has been drained).
pub fn destroy(handle: u64) -> Result<(), Errno> {
    let (id, serial) = GROUPS.destroy(handle)?;
    threads::drain_all_stock(id);
    // Its free pages go back now (those freed later go back as they are freed), so a
    // group whose blocks are all freed is not kept dying by pages it no longer uses.
    super::reclaim::cache(id, super::counter::UNLIMITED);
    GROUPS.maybe_free(id, serial);
    Ok(())
}

pub fn path(handle: u64, out: &mut FmtBuf<'_>) -> Result<(), Errno> {
    let pin = GROUPS.pin(handle, false)?;
    GROUPS.write_path(pin.id, out);
    Ok(())
}

/// Attaches the calling thread to the group; returns the handle of its previous group.
pub fn attach(handle: u64) -> Result<u64, Errno> {
    let pin = GROUPS.pin(handle, false)?;
    let old = threads::attach(pin.id)?;
    Ok(GROUPS.handle(old))
}

/// Puts the calling thread back in the group `id` it left (an `enter` guard ending);
/// falls back to the root if that group can no longer take threads.
pub fn reattach(handle: u64) {
    if attach(handle).is_err() {
        let _ = threads::attach(super::table::ROOT);
    }
}

/// Applies an attach another thread asked of this one (`threads::request_attach`);
/// called from the allocator between allocations (span refills, large-cache misses). A
/// group destroyed since is ignored.
#[inline]
pub fn apply_pending_attach() {
    if let Some(h) = threads::take_pending() {
        let _ = attach(h);
    }
}

pub fn current() -> u64 {
    GROUPS.handle(threads::current_group())
}

pub fn read(handle: u64, file: &[u8], out: &mut FmtBuf<'_>) -> Result<(), Errno> {
    let pin = GROUPS.pin(handle, false)?;
    files::read(pin.id, file, out)
}

pub fn write(handle: u64, file: &[u8], value: &[u8]) -> Result<(), Errno> {
    let pin = GROUPS.pin(handle, false)?;
    files::write(pin.id, file, value)
}

/// Applies a write requested from outside the process (`request.rs`): the group by its
/// path, then as [`write`]. 0 or a negative errno.
fn apply_request(group: &[u8], file: &[u8], value: &[u8]) -> i64 {
    let Ok(path) = GroupPath::parse(group) else {
        return -(libc::EINVAL as i64);
    };
    match GROUPS.open(&path).and_then(|h| write(h, file, value)) {
        Ok(()) => 0,
        Err(e) => -(e as i64),
    }
}

/// Lets the charge path apply writes requested from outside (idempotent).
pub fn install_requests() {
    super::request::APPLY.install(apply_request);
}

/// The variables that set the root's limits, and the files they write.
pub const ROOT_LIMIT_VARS: [(&core::ffi::CStr, &str); 4] = [
    (c"CGMALLOC_MAX", "memory.max"),
    (c"CGMALLOC_HIGH", "memory.high"),
    (c"CGMALLOC_LOW", "memory.low"),
    (c"CGMALLOC_MIN", "memory.min"),
];

/// At the process's first allocation, before its first charge: the root's limits given
/// as sizes in the environment apply from that charge on, not from the constructor that
/// reads the configuration (the dynamic loader and libc allocate before it runs), so no
/// start-up charge passes them unseen. Until that constructor has run, charges past them
/// are forced and counted as `max` events (`charge::begin_startup`): the program's
/// start-up cannot be refused. `N%` waits for the container limit, read by the
/// constructor, which also applies every value again and reports the malformed ones.
/// Allocates nothing.
pub fn apply_root_limits_early() {
    for (var, file) in ROOT_LIMIT_VARS {
        if let Some(v) = crate::os::getenv(var) {
            charge::begin_startup();
            // A malformed or `N%` value is left to the configuration.
            let _ = files::write(super::table::ROOT, file.as_bytes(), v);
        }
    }
}

fn bytes_of(pages: u64) -> u64 {
    pages.saturating_mul(PAGE_SIZE)
}

/// cbindgen:ignore
/// Explicit charges beyond the 48-bit address space cannot be memory: refused with
/// `ENOMEM`, so no counter can overflow its byte conversion.
pub const MAX_CHARGE_BYTES: u64 = 1 << 48;

pub fn stat(handle: u64) -> Result<Stat, Errno> {
    let pin = GROUPS.pin(handle, false)?;
    let c = GROUPS.counter(pin.id);
    let ev = GROUPS.events(pin.id, false);
    Ok(Stat {
        current: bytes_of(c.usage()),
        peak: bytes_of(c.watermark.load(Ordering::Relaxed)),
        max: bytes_of(c.max.get()),
        high: bytes_of(c.high.get()),
        low: bytes_of(c.low.load(Ordering::Relaxed)),
        min: bytes_of(c.min.load(Ordering::Relaxed)),
        soft_limit: bytes_of(c.soft_limit.get()),
        failcnt: c.failcnt.load(Ordering::Relaxed),
        stock: threads::stock_pages(pin.id) * PAGE_SIZE,
        events_low: ev[Event::Low as usize],
        events_high: ev[Event::High as usize],
        events_max: ev[Event::Max as usize],
        events_oom: ev[Event::Oom as usize],
        events_oom_kill: ev[Event::OomKill as usize],
    })
}

/// `memory.pressure` of the group, as numbers.
pub fn pressure(handle: u64) -> Result<Pressure, Errno> {
    use super::psi::{Values, FULL, SOME};
    let pin = GROUPS.pin(handle, false)?;
    let v = super::pressure::read(pin.id);
    let pct = |k: usize, w: usize| Values::percent(v.avg[k][w]);
    Ok(Pressure {
        some_avg10: pct(SOME, 0),
        some_avg60: pct(SOME, 1),
        some_avg300: pct(SOME, 2),
        some_total_us: v.total_us[SOME],
        full_avg10: pct(FULL, 0),
        full_avg60: pct(FULL, 1),
        full_avg300: pct(FULL, 2),
        full_total_us: v.total_us[FULL],
    })
}

/// A pressure trigger on the group: an eventfd signalled when the stall of `kind`
/// (`some` or `full`) within any `window_us` reaches `stall_us`, at most once a window.
pub fn pressure_eventfd(
    handle: u64,
    kind: &[u8],
    stall_us: u64,
    window_us: u64,
) -> Result<i32, Errno> {
    let pin = GROUPS.pin(handle, false)?;
    let kind = super::pressure::parse_kind(kind).ok_or(libc::EINVAL)?;
    super::pressure::add(pin.id, handle, kind, stall_us, window_us)
}

/// Ends a pressure trigger; `close_user` also closes the caller's descriptor.
pub fn pressure_remove(handle: u64, fd: i32, close_user: bool) -> Result<(), Errno> {
    let _pin = GROUPS.pin(handle, false)?;
    super::pressure::remove(handle, fd, close_user)
}

/// Registers a reclaim callback; returns its id. On failure its context has been
/// dropped.
pub fn reclaimer_add(handle: u64, callback: Callback) -> Result<u64, Errno> {
    let pin = GROUPS.pin(handle, false)?;
    let (id, _) = callbacks::add(GROUPS.handle(pin.id), callback)?;
    Ok(id)
}

pub fn reclaimer_remove(id: u64) -> Result<(), Errno> {
    callbacks::remove(id)
}

/// Sets (or with `None` clears) the group's OOM handler. On failure its context has
/// been dropped.
pub fn oom_handler_set(handle: u64, handler: Option<Callback>) -> Result<(), Errno> {
    let pin = GROUPS.pin(handle, false)?;
    oom::set_handler(pin.id, GROUPS.handle(pin.id), handler)
}

pub fn threshold_eventfd(handle: u64, bytes: u64) -> Result<i32, Errno> {
    let pin = GROUPS.pin(handle, false)?;
    super::threshold::add(pin.id, handle, bytes)
}

/// Ends a threshold registration; `close_user` also closes the caller's descriptor.
pub fn threshold_remove(handle: u64, fd: i32, close_user: bool) -> Result<(), Errno> {
    let pin = GROUPS.pin(handle, false)?;
    super::threshold::remove(pin.id, handle, fd, close_user)
}

/// An explicit charge of `bytes` (rounded up to pages) through the whole charge path.
pub fn charge(handle: u64, bytes: u64, flags: u32) -> Result<(), Errno> {
    if flags & !(charge::NORETRY | charge::FORCE) != 0 {
        return Err(libc::EINVAL);
    }
    let pin = GROUPS.pin(handle, false)?;
    if bytes > MAX_CHARGE_BYTES {
        return Err(libc::ENOMEM);
    }
    let pages = bytes.div_ceil(PAGE_SIZE);
    if pages == 0 {
        return Ok(());
    }
    charge::try_charge(pin.id, pages, flags).map_err(|_| libc::ENOMEM)?;
    GROUPS
        .slot(pin.id)
        .explicit
        .fetch_add(pages, Ordering::Relaxed);
    GROUPS.add_stat(pin.id, StatKey::NrCharges, 1);
    Ok(())
}

/// Returns an explicit charge; `EINVAL` for more than is charged that way. Works on a
/// dying group until it is freed.
pub fn uncharge(handle: u64, bytes: u64) -> Result<(), Errno> {
    let pin = GROUPS.pin(handle, true)?;
    let pages = bytes.div_ceil(PAGE_SIZE);
    if pages == 0 {
        return Ok(());
    }
    let explicit = &GROUPS.slot(pin.id).explicit;
    explicit
        .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
            v.checked_sub(pages)
        })
        .map_err(|_| libc::EINVAL)?;
    GROUPS.add_stat(pin.id, StatKey::NrUncharges, 1);
    charge::uncharge(pin.id, pages);
    Ok(())
}

pub fn reclaim(handle: u64, bytes: u64) -> Result<(), Errno> {
    let pin = GROUPS.pin(handle, false)?;
    files::reclaim_bytes(pin.id, bytes)
}

pub fn drain_stocks() {
    threads::drain_all_stock(super::table::ROOT);
}
