//! The C control API (INTERFACE.md "The C control API"): the `cgm_*` functions declared
//! in `include/cgmalloc.h`, thin shims over `memcg::control`.
//!
//! Contract kept by every function here:
//! - success is `0` (or the non-negative value stated), failure a negative errno;
//! - an out-parameter is written only on success, and a NULL one is `-EINVAL` before
//!   anything changes;
//! - a handle that names no live group is `-ENOENT`; a NULL string is `-EINVAL`, and so
//!   is a string with no NUL within [`MAX_STRING`] bytes (no valid path, file name or
//!   value is that long);
//! - callbacks run on the allocating thread with no allocator lock held (the charge path
//!   guarantees it; nothing here calls them).
//!
//! Types that appear in the header are named as C names them (`cgm_group_t`, ...).
#![allow(non_camel_case_types)]

use crate::memcg::callbacks::{Callback, OomInfoC};
use crate::memcg::control::{self, Errno, Pressure, Stat};
use crate::memcg::{charge, oom};
use crate::util::fmtbuf::FmtBuf;
use core::ffi::{c_char, c_int, c_long, c_void, CStr};

/// A group handle; 0 is never a valid one.
pub type cgm_group_t = u64;

/// A reclaim callback: `(ctx, group it was registered on, bytes wanted) -> bytes freed`.
pub type cgm_reclaim_fn = Option<
    unsafe extern "C" fn(ctx: *mut c_void, group: cgm_group_t, bytes_wanted: usize) -> usize,
>;

/// An OOM handler: returns one of `CGM_OOM_*`.
pub type cgm_oom_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, info: *const OomInfoC) -> c_int>;

/// The charge fails: the allocation returns NULL with `ENOMEM`.
pub const CGM_OOM_FAIL: c_int = 0;
/// Try the charge again: the handler freed something.
pub const CGM_OOM_RETRY: c_int = 1;
/// Charge past the limit.
pub const CGM_OOM_FORCE: c_int = 2;
/// Print the group report and abort the process.
pub const CGM_OOM_ABORT: c_int = 3;

/// No reclaim, no stock draining, no OOM handler: fail fast (`__GFP_NORETRY`).
pub const CGM_CHARGE_NORETRY: c_int = 1;
/// Never fail: charge past `max` and count it (`__GFP_NOFAIL`).
pub const CGM_CHARGE_FORCE: c_int = 2;

// The C values are the engine's: a handler's return is decoded by `oom::Action::decode`
// and charge flags pass through unchanged.
const _: () = {
    assert!(CGM_OOM_FAIL == oom::Action::Fail as c_int);
    assert!(CGM_OOM_RETRY == oom::Action::Retry as c_int);
    assert!(CGM_OOM_FORCE == oom::Action::Force as c_int);
    assert!(CGM_OOM_ABORT == oom::Action::Abort as c_int);
    assert!(CGM_CHARGE_NORETRY as u32 == charge::NORETRY);
    assert!(CGM_CHARGE_FORCE as u32 == charge::FORCE);
};

/// The longest string (path, file name, value) read from a caller, NUL excluded.
const MAX_STRING: usize = 4096;

fn err(e: Errno) -> c_int {
    -e
}

fn status(r: Result<(), Errno>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => err(e),
    }
}

/// The bytes of a caller's NUL-terminated string, or `EINVAL`.
///
/// # Safety
/// `s` is NULL or points to readable memory up to its NUL or `MAX_STRING + 1` bytes.
unsafe fn string<'a>(s: *const c_char) -> Result<&'a [u8], Errno> {
    if s.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: per this function's contract, at most MAX_STRING + 1 bytes are readable.
    let len = unsafe { libc::strnlen(s, MAX_STRING + 1) };
    if len > MAX_STRING {
        return Err(libc::EINVAL);
    }
    // SAFETY: `s[..len]` is readable and `s[len]` is its NUL.
    Ok(unsafe { CStr::from_ptr(s) }.to_bytes())
}

/// A caller's buffer for text, `snprintf`-style: room for `len - 1` bytes and a NUL.
/// `(NULL, 0)` only measures; `(NULL, len > 0)` is `EINVAL`.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes.
unsafe fn text_buf<'a>(buf: *mut c_char, len: usize) -> Result<&'a mut [u8], Errno> {
    match (buf.is_null(), len) {
        (true, 0) => Ok(&mut []),
        (true, _) => Err(libc::EINVAL),
        // SAFETY: per this function's contract.
        (false, _) => Ok(unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) }),
    }
}

/// Formats with `fill` into a scratch buffer first (so a failed call leaves `buf`
/// untouched), then copies what fits into `out` and NUL-terminates it. Returns the full
/// length. Text longer than the scratch buffer is formatted straight into `out`, which
/// `fill` only writes after its checks pass.
fn snprintf_with(
    out: &mut [u8],
    mut fill: impl FnMut(&mut FmtBuf<'_>) -> Result<(), Errno>,
) -> Result<usize, Errno> {
    let mut scratch = [0u8; 1024];
    let mut f = FmtBuf::new(&mut scratch);
    fill(&mut f)?;
    let total = f.total();
    let Some(room) = out.len().checked_sub(1) else {
        return Ok(total);
    };
    if total <= scratch.len() {
        let n = total.min(room);
        out[..n].copy_from_slice(&scratch[..n]);
        out[n] = 0;
    } else {
        let (head, _) = out.split_at_mut(room);
        let mut f = FmtBuf::new(head);
        fill(&mut f)?;
        let n = f.as_bytes().len();
        out[n] = 0;
    }
    Ok(total)
}

/// Runs `op` and writes its result to `out`: `-EINVAL` for a NULL `out` before `op`
/// runs (so it changes nothing), `out` untouched when `op` fails.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
unsafe fn with_out<T>(out: *mut T, op: impl FnOnce() -> Result<T, Errno>) -> c_int {
    if out.is_null() {
        return err(libc::EINVAL);
    }
    match op() {
        Ok(v) => {
            // SAFETY: non-NULL, and writable per this function's contract.
            unsafe { out.write(v) };
            0
        }
        Err(e) => err(e),
    }
}

/// The root group's handle.
#[no_mangle]
pub extern "C" fn cgm_root() -> cgm_group_t {
    control::root()
}

/// Creates the group at `path` (its parent must exist) and writes its handle to `*out`.
/// Errors: `-EEXIST`, `-ENOENT` (no parent), `-EINVAL` (malformed path), `-ENOSPC`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cgm_group_create(path: *const c_char, out: *mut cgm_group_t) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { with_out(out, || string(path).and_then(control::create)) }
}

/// Writes the handle of the live group at `path` to `*out`; `-ENOENT` if there is none.
///
/// # Safety
/// As for [`cgm_group_create`].
#[no_mangle]
pub unsafe extern "C" fn cgm_group_open(path: *const c_char, out: *mut cgm_group_t) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { with_out(out, || string(path).and_then(control::open)) }
}

/// Destroys the group. `-EBUSY` with children or attached threads, `-EPERM` for the
/// root. Charges it still holds keep it *dying* until they are freed.
#[no_mangle]
pub extern "C" fn cgm_group_destroy(group: cgm_group_t) -> c_int {
    status(control::destroy(group))
}

/// The group's path: returns its length and, when `len > 0`, writes a NUL-terminated,
/// possibly truncated copy to `buf`.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn cgm_group_path(group: cgm_group_t, buf: *mut c_char, len: usize) -> c_int {
    // SAFETY: per this function's contract.
    let out = match unsafe { text_buf(buf, len) } {
        Ok(o) => o,
        Err(e) => return err(e),
    };
    match snprintf_with(out, |f| control::path(group, f)) {
        Ok(n) => n as c_int,
        Err(e) => err(e),
    }
}

/// Attaches the calling thread to `group`: its allocations charge it from now on.
#[no_mangle]
pub extern "C" fn cgm_thread_attach(group: cgm_group_t) -> c_int {
    status(control::attach(group).map(|_| ()))
}

/// The calling thread's group.
#[no_mangle]
pub extern "C" fn cgm_thread_group() -> cgm_group_t {
    control::current()
}

/// The text of interface file `file`: returns its full length (like `snprintf`) and,
/// when `len > 0`, writes a NUL-terminated, possibly truncated copy to `buf`.
/// `-EINVAL` for an unknown file, `-EACCES` for a write-only one.
///
/// # Safety
/// `file` is NULL or a NUL-terminated string; `buf` is NULL or writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn cgm_group_read(
    group: cgm_group_t,
    file: *const c_char,
    buf: *mut c_char,
    len: usize,
) -> c_long {
    // SAFETY: per this function's contract.
    let r = unsafe { string(file) }.and_then(|file| {
        // SAFETY: per this function's contract.
        let out = unsafe { text_buf(buf, len) }?;
        snprintf_with(out, |f| control::read(group, file, f))
    });
    match r {
        Ok(n) => n as c_long,
        Err(e) => -(e as c_long),
    }
}

/// Writes `value` to interface file `file`. `-EINVAL` for an unknown file or a malformed
/// value, `-EACCES` for a read-only file, `-EAGAIN` when `memory.reclaim` freed less.
///
/// # Safety
/// `file` and `value` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn cgm_group_write(
    group: cgm_group_t,
    file: *const c_char,
    value: *const c_char,
) -> c_int {
    // SAFETY: per this function's contract.
    let args = unsafe { string(file).and_then(|f| Ok((f, string(value)?))) };
    status(args.and_then(|(file, value)| control::write(group, file, value)))
}

/// Writes the group's counters and hierarchical events to `*out`; never allocates.
/// Limits that are `max` read as `UINT64_MAX`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cgm_group_stat(group: cgm_group_t, out: *mut Stat) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { with_out(out, || control::stat(group)) }
}

/// Registers `fn(ctx, group, bytes_wanted)`, called when `group` or an ancestor hits a
/// limit; writes its id to `*id_out`. `-ENOSPC` when the callback table is full.
///
/// # Safety
/// `fn` must be safe to call with `ctx` from any thread until it is removed; `id_out` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cgm_reclaimer_add(
    group: cgm_group_t,
    r#fn: cgm_reclaim_fn,
    ctx: *mut c_void,
    id_out: *mut u64,
) -> c_int {
    let Some(f) = r#fn else {
        return err(libc::EINVAL);
    };
    // SAFETY: the caller vouches for `f` and `ctx` (this function's contract), and there
    // is no context to drop.
    let callback = unsafe { Callback::reclaim(f, ctx, None) };
    // SAFETY: `id_out` per this function's contract.
    unsafe { with_out(id_out, || control::reclaimer_add(group, callback)) }
}

/// Unregisters a reclaim callback; `-ENOENT` for an unknown id. A call already running
/// may still finish after this returns.
#[no_mangle]
pub extern "C" fn cgm_reclaimer_remove(id: u64) -> c_int {
    status(control::reclaimer_remove(id))
}

/// Sets `group`'s OOM handler, replacing any earlier one; `fn == NULL` clears it.
///
/// # Safety
/// `fn` must be safe to call with `ctx` from any thread until it is replaced or cleared.
#[no_mangle]
pub unsafe extern "C" fn cgm_oom_handler_set(
    group: cgm_group_t,
    r#fn: cgm_oom_fn,
    ctx: *mut c_void,
) -> c_int {
    // SAFETY: the caller vouches for `f` and `ctx` (this function's contract); there is
    // no context to drop.
    let handler = r#fn.map(|f| unsafe { Callback::oom(f, ctx, None) });
    status(control::oom_handler_set(group, handler))
}

/// An eventfd (`O_NONBLOCK | O_CLOEXEC`) signalled each time the group's usage crosses
/// `bytes` in either direction. End it with [`cgm_threshold_remove`], not `close` (once
/// the group is destroyed, the library has let go of it: then `close` it).
#[no_mangle]
pub extern "C" fn cgm_threshold_eventfd(group: cgm_group_t, bytes: u64) -> c_int {
    match control::threshold_eventfd(group, bytes) {
        Ok(fd) => fd,
        Err(e) => err(e),
    }
}

/// Unregisters a threshold eventfd and closes it.
#[no_mangle]
pub extern "C" fn cgm_threshold_remove(group: cgm_group_t, fd: c_int) -> c_int {
    status(control::threshold_remove(group, fd, true))
}

/// Reads the group's `memory.pressure` into `*out`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cgm_group_pressure(group: cgm_group_t, out: *mut Pressure) -> c_int {
    // SAFETY: per this function's contract.
    unsafe { with_out(out, || control::pressure(group)) }
}

/// An eventfd (`O_NONBLOCK | O_CLOEXEC`) signalled when the stall of `kind` (`"some"` or
/// `"full"`) within any window of `window_us` (500 ms..10 s) reaches `stall_us`, at most
/// once a window. End it with [`cgm_pressure_remove`], not `close` (once the group is
/// destroyed, the library has let go of it: then `close` it).
///
/// # Safety
/// `kind` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cgm_pressure_eventfd(
    group: cgm_group_t,
    kind: *const c_char,
    stall_us: u64,
    window_us: u64,
) -> c_int {
    // SAFETY: per this function's contract.
    let kind = match unsafe { string(kind) } {
        Ok(k) => k,
        Err(e) => return err(e),
    };
    match control::pressure_eventfd(group, kind, stall_us, window_us) {
        Ok(fd) => fd,
        Err(e) => err(e),
    }
}

/// Unregisters a pressure trigger and closes its eventfd.
#[no_mangle]
pub extern "C" fn cgm_pressure_remove(group: cgm_group_t, fd: c_int) -> c_int {
    status(control::pressure_remove(group, fd, true))
}

/// Charges `bytes` (rounded up to pages) to `group` through the whole charge path:
/// stock, limits, reclaim, OOM handler. `flags`: `CGM_CHARGE_NORETRY`,
/// `CGM_CHARGE_FORCE`. `-ENOMEM` when refused.
#[no_mangle]
pub extern "C" fn cgm_charge(group: cgm_group_t, bytes: u64, flags: c_int) -> c_int {
    let Ok(flags) = u32::try_from(flags) else {
        return err(libc::EINVAL);
    };
    status(control::charge(group, bytes, flags))
}

/// Returns an explicit charge; `-EINVAL` if more than was charged that way. Works on a
/// destroyed group until its last charge is gone.
#[no_mangle]
pub extern "C" fn cgm_uncharge(group: cgm_group_t, bytes: u64) -> c_int {
    status(control::uncharge(group, bytes))
}

/// Proactive reclaim of `bytes` from the group's subtree; `-EAGAIN` if less was freed.
#[no_mangle]
pub extern "C" fn cgm_group_reclaim(group: cgm_group_t, bytes: u64) -> c_int {
    status(control::reclaim(group, bytes))
}

/// Returns every thread's stock of precharged pages to its group.
#[no_mangle]
pub extern "C" fn cgm_drain_stocks() -> c_int {
    control::drain_stocks();
    0
}

/// Checks the accounting: 0 when every group's `memory.current` is exactly what its
/// spans, large mappings, thread stocks and explicit charges record; otherwise `-EIO`,
/// with the first group that differs described in `buf` (`snprintf` contract; `buf`
/// may be NULL with `len` 0). Only meaningful while no other thread allocates, frees or
/// charges (after joining them, or in a fork child): meant for tests.
///
/// # Safety
/// `buf` is NULL (with `len` 0) or writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn cgm_audit(buf: *mut c_char, len: usize) -> c_int {
    // SAFETY: per this function's contract.
    let out = match unsafe { text_buf(buf, len) } {
        Ok(o) => o,
        Err(e) => return err(e),
    };
    match crate::alloc::account::audit() {
        Ok(()) => {
            if let Some(first) = out.first_mut() {
                *first = 0;
            }
            0
        }
        Err(m) => {
            let _ = snprintf_with(out, |f| {
                m.describe(f);
                Ok(())
            });
            err(libc::EIO)
        }
    }
}

/// A static description of an errno (either sign).
#[no_mangle]
pub extern "C" fn cgm_strerror(err: c_int) -> *const c_char {
    crate::error::describe(err).as_ptr().cast()
}

/// The library's version, e.g. `"0.1.0"`.
#[no_mangle]
pub extern "C" fn cgm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
