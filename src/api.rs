//! The Rust API for groups (INTERFACE.md "The Rust API"): `Group` handles, explicit
//! `Charge`s, reclaim callbacks, OOM handlers and threshold eventfds, over the same
//! control operations as the C API.

use crate::error::{Error, Result};
use crate::memcg::callbacks::{Callback, OomInfoC};
use crate::memcg::charge;
use crate::memcg::control;
use crate::util::fmtbuf::FmtBuf;
use core::ffi::c_void;
use core::future::Future;
use core::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub use crate::memcg::control::{Pressure, Stat};

/// Which stall a pressure trigger watches (`memory.pressure`'s two lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PressureKind {
    /// At least one thread charging to the group was stalled.
    Some,
    /// Every thread attached to the group was stalled at once.
    Full,
}

impl PressureKind {
    fn name(self) -> &'static [u8] {
        match self {
            PressureKind::Some => b"some",
            PressureKind::Full => b"full",
        }
    }
}

fn check<T>(r: core::result::Result<T, i32>) -> Result<T> {
    r.map_err(Error::from_errno)
}

/// A group in the tree of groups: a plain handle, valid until the group is destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    handle: u64,
}

/// What an OOM handler is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomInfo {
    /// The group being charged.
    pub group: Group,
    /// The group whose limit refused the charge (the group itself or an ancestor).
    pub over_limit: Group,
    /// Bytes of the charge.
    pub bytes: u64,
    /// `memory.current` of `over_limit`.
    pub usage: u64,
    /// `memory.max` of `over_limit` (`u64::MAX` for none).
    pub max: u64,
}

/// What an OOM handler decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OomAction {
    /// The charge fails (`NULL`/`ENOMEM` for an allocation).
    Fail,
    /// Try the charge again (the handler freed something).
    Retry,
    /// Charge past the limit.
    Force,
    /// Print the group report and abort the process.
    Abort,
}

/// While it lives, the thread that made it charges its group.
#[derive(Debug)]
#[must_use = "the thread leaves the group when the guard is dropped"]
pub struct EnterGuard {
    previous: u64,
    _not_send: PhantomData<*const ()>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        control::reattach(self.previous);
    }
}

/// A registered reclaim callback; dropping it unregisters the callback.
#[derive(Debug)]
#[must_use = "dropping a Reclaimer unregisters the callback"]
pub struct Reclaimer {
    id: u64,
}

impl Reclaimer {
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Reclaimer {
    fn drop(&mut self) {
        let _ = control::reclaimer_remove(self.id);
    }
}

/// An explicit charge on a group's ledger, returned when dropped (even after the group
/// was destroyed).
#[derive(Debug)]
#[must_use = "dropping a Charge uncharges it"]
pub struct Charge {
    group: u64,
    bytes: u64,
    charged: bool,
}

impl Charge {
    /// The bytes asked for (the ledger holds them rounded up to whole pages).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.charged {
            let _ = control::uncharge(self.group, self.bytes);
        }
    }
}

type ReclaimBox = Box<dyn Fn(u64) -> u64 + Send + Sync>;
type OomBox = Box<dyn Fn(&OomInfo) -> OomAction + Send + Sync>;

unsafe extern "C" fn reclaim_trampoline(ctx: *mut c_void, _group: u64, bytes: usize) -> usize {
    // SAFETY: `ctx` is the `ReclaimBox` leaked by `on_reclaim`, alive until `drop_reclaim`.
    let f = unsafe { &*(ctx as *const ReclaimBox) };
    f(bytes as u64) as usize
}

unsafe fn drop_reclaim(ctx: *mut c_void) {
    // SAFETY: `ctx` came from `Box::into_raw` in `on_reclaim` and is dropped once.
    drop(unsafe { Box::from_raw(ctx as *mut ReclaimBox) });
}

unsafe extern "C" fn oom_trampoline(ctx: *mut c_void, info: *const OomInfoC) -> i32 {
    // SAFETY: `ctx` is the `OomBox` leaked by `on_oom`, alive until `drop_oom`; `info` points
    // to a live `OomInfoC` for the duration of the call.
    let (f, info) = unsafe { (&*(ctx as *const OomBox), &*info) };
    let info = OomInfo {
        group: Group { handle: info.group },
        over_limit: Group {
            handle: info.over_limit,
        },
        bytes: info.bytes as u64,
        usage: info.usage,
        max: info.max,
    };
    f(&info) as i32
}

unsafe fn drop_oom(ctx: *mut c_void) {
    // SAFETY: `ctx` came from `Box::into_raw` in `on_oom` and is dropped once.
    drop(unsafe { Box::from_raw(ctx as *mut OomBox) });
}

impl Group {
    /// The root group.
    pub fn root() -> Group {
        Group {
            handle: control::root(),
        }
    }

    /// The calling thread's group.
    pub fn current() -> Group {
        Group {
            handle: control::current(),
        }
    }

    /// Creates the group at `path` (its parent must exist).
    pub fn create(path: &str) -> Result<Group> {
        check(control::create(path.as_bytes())).map(|handle| Group { handle })
    }

    /// Opens the live group at `path`.
    pub fn open(path: &str) -> Result<Group> {
        check(control::open(path.as_bytes())).map(|handle| Group { handle })
    }

    /// The group named by a C handle (`cgm_group_t`); not checked until used.
    pub fn from_handle(handle: u64) -> Group {
        Group { handle }
    }

    /// The C handle (`cgm_group_t`).
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// Destroys the group; charges it still holds stay until freed (a dying group).
    pub fn destroy(self) -> Result<()> {
        check(control::destroy(self.handle))
    }

    pub fn path(&self) -> Result<String> {
        let mut buf = [0u8; 17 * 66];
        let mut out = FmtBuf::new(&mut buf);
        check(control::path(self.handle, &mut out))?;
        Ok(String::from_utf8_lossy(out.as_bytes()).into_owned())
    }

    fn set_limit(&self, file: &str, bytes: u64) -> Result<()> {
        let mut buf = [0u8; 24];
        let mut v = FmtBuf::new(&mut buf);
        if bytes == u64::MAX {
            v.push(b"max");
        } else {
            v.push_u64(bytes);
        }
        check(control::write(self.handle, file.as_bytes(), v.as_bytes()))
    }

    /// `memory.max` in bytes (`u64::MAX` for no limit).
    pub fn set_max(&self, bytes: u64) -> Result<()> {
        self.set_limit("memory.max", bytes)
    }

    pub fn set_high(&self, bytes: u64) -> Result<()> {
        self.set_limit("memory.high", bytes)
    }

    pub fn set_low(&self, bytes: u64) -> Result<()> {
        self.set_limit("memory.low", bytes)
    }

    pub fn set_min(&self, bytes: u64) -> Result<()> {
        self.set_limit("memory.min", bytes)
    }

    pub fn set_soft_limit(&self, bytes: u64) -> Result<()> {
        self.set_limit("memory.soft_limit_in_bytes", bytes)
    }

    /// The text of an interface file.
    pub fn read(&self, file: &str) -> Result<String> {
        let mut small = [0u8; 4096];
        let mut out = FmtBuf::new(&mut small);
        check(control::read(self.handle, file.as_bytes(), &mut out))?;
        let total = out.total();
        if total <= small.len() {
            return Ok(String::from_utf8_lossy(&small[..total]).into_owned());
        }
        let mut big = vec![0u8; total * 2];
        let mut out = FmtBuf::new(&mut big);
        check(control::read(self.handle, file.as_bytes(), &mut out))?;
        Ok(String::from_utf8_lossy(out.as_bytes()).into_owned())
    }

    /// Writes an interface file.
    pub fn write(&self, file: &str, value: &str) -> Result<()> {
        check(control::write(
            self.handle,
            file.as_bytes(),
            value.as_bytes(),
        ))
    }

    pub fn stat(&self) -> Result<Stat> {
        check(control::stat(self.handle))
    }

    /// `memory.pressure` as numbers: averages in percent, totals in microseconds.
    pub fn pressure(&self) -> Result<Pressure> {
        check(control::pressure(self.handle))
    }

    /// An eventfd signalled when the stall of `kind` within any `window` (500 ms..10 s)
    /// reaches `stall`, at most once a window; `EINVAL` for a window outside those
    /// bounds or a stall of zero or longer than the window. Durations count in whole
    /// microseconds.
    pub fn pressure_eventfd(
        &self,
        kind: PressureKind,
        stall: core::time::Duration,
        window: core::time::Duration,
    ) -> Result<OwnedFd> {
        let us = |d: core::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let fd = check(control::pressure_eventfd(
            self.handle,
            kind.name(),
            us(stall),
            us(window),
        ))?;
        // SAFETY: `fd` is a new descriptor owned by nobody else (the library kept its own
        // duplicate).
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Ends a pressure trigger and closes `fd`.
    pub fn pressure_remove(&self, fd: OwnedFd) -> Result<()> {
        check(control::pressure_remove(self.handle, fd.as_raw_fd(), false))
    }

    /// Makes the calling thread charge this group until the guard drops.
    pub fn enter(&self) -> Result<EnterGuard> {
        let previous = check(control::attach(self.handle))?;
        Ok(EnterGuard {
            previous,
            _not_send: PhantomData,
        })
    }

    /// Makes the calling thread charge this group from now on.
    pub fn attach_current_thread(&self) -> Result<()> {
        check(control::attach(self.handle)).map(|_| ())
    }

    /// Registers `f(bytes_wanted) -> bytes_freed`, called when this group or an ancestor
    /// hits a limit; unregistered when the `Reclaimer` drops.
    pub fn on_reclaim<F: Fn(u64) -> u64 + Send + Sync + 'static>(&self, f: F) -> Result<Reclaimer> {
        let ctx = Box::into_raw(Box::new(Box::new(f) as ReclaimBox)) as *mut c_void;
        // SAFETY: the trampoline and drop function match the boxed closure in `ctx`, which
        // is `Send + Sync`; the table drops it once.
        let callback = unsafe { Callback::reclaim(reclaim_trampoline, ctx, Some(drop_reclaim)) };
        let id = check(control::reclaimer_add(self.handle, callback))?;
        Ok(Reclaimer { id })
    }

    /// Sets the OOM handler, replacing any earlier one.
    pub fn on_oom<F: Fn(&OomInfo) -> OomAction + Send + Sync + 'static>(&self, f: F) -> Result<()> {
        let ctx = Box::into_raw(Box::new(Box::new(f) as OomBox)) as *mut c_void;
        // SAFETY: as in `on_reclaim`, for the OOM trampoline and its boxed closure.
        let callback = unsafe { Callback::oom(oom_trampoline, ctx, Some(drop_oom)) };
        check(control::oom_handler_set(self.handle, Some(callback)))
    }

    /// Clears the OOM handler.
    pub fn clear_oom(&self) -> Result<()> {
        check(control::oom_handler_set(self.handle, None))
    }

    /// Charges `bytes` to this group through the whole charge path.
    pub fn try_charge(&self, bytes: u64) -> Result<Charge> {
        check(control::charge(self.handle, bytes, 0))?;
        Ok(Charge {
            group: self.handle,
            bytes,
            charged: true,
        })
    }

    /// Charges `bytes` past any limit. On a handle that names no live group nothing is
    /// charged.
    pub fn charge_force(&self, bytes: u64) -> Charge {
        let charged = control::charge(self.handle, bytes, charge::FORCE).is_ok();
        Charge {
            group: self.handle,
            bytes,
            charged,
        }
    }

    /// Proactive reclaim of `bytes`; `EAGAIN` if less was freed.
    pub fn reclaim(&self, bytes: u64) -> Result<()> {
        check(control::reclaim(self.handle, bytes))
    }

    /// An eventfd signalled each time usage crosses `bytes` in either direction.
    pub fn threshold_eventfd(&self, bytes: u64) -> Result<OwnedFd> {
        let fd = check(control::threshold_eventfd(self.handle, bytes))?;
        // SAFETY: `fd` is a new descriptor owned by nobody else (the library kept its own
        // duplicate).
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Ends a threshold registration and closes `fd`.
    pub fn threshold_remove(&self, fd: OwnedFd) -> Result<()> {
        check(control::threshold_remove(
            self.handle,
            fd.as_raw_fd(),
            false,
        ))
    }

    /// Runs every poll of `fut` with the polling thread in this group.
    pub fn scope<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        let group = *self;
        async move {
            let mut fut = core::pin::pin!(fut);
            core::future::poll_fn(move |cx| {
                let _guard = group.enter().ok();
                fut.as_mut().poll(cx)
            })
            .await
        }
    }
}

/// Checks the accounting: `Ok` when every group's `memory.current` is exactly what its
/// spans, large mappings, thread stocks and explicit charges record; otherwise the first
/// group that differs, described. Only meaningful while no other thread allocates,
/// frees or charges (after joining them, or in a fork child): meant for tests.
pub fn audit() -> std::result::Result<(), String> {
    crate::alloc::account::audit().map_err(|m| {
        let mut buf = [0u8; 512];
        let mut out = crate::util::fmtbuf::FmtBuf::new(&mut buf);
        m.describe(&mut out);
        String::from_utf8_lossy(out.as_bytes()).into_owned()
    })
}

/// Returns every thread's stock to its group.
pub fn drain_stocks() {
    control::drain_stocks();
}

/// `malloc_trim`: gives the calling thread's empty spans and free pages, every cached
/// large mapping's pages and every cached segment back to the kernel (uncharging what
/// was charged); true if anything was released.
pub fn trim() -> bool {
    crate::alloc::account::trim()
}
