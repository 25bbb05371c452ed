//! Thread functions interposed (preloaded or linked library only), the real ones found
//! with `dlsym(RTLD_NEXT)`:
//! - `pthread_create`: a new thread starts in its creator's group (INTERFACE.md
//!   "Semantics"); the start routine is wrapped to attach the group first;
//! - `pthread_setname_np`: the name is matched against `CGMALLOC_THREADS`.

use super::next::lookup;
use crate::memcg::threads;
use core::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::AtomicUsize;

type StartFn = extern "C" fn(*mut c_void) -> *mut c_void;
/// A start routine as the real `pthread_create` takes it: ours, `trampoline`, is unsafe.
type RealStartFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type CreateFn = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    RealStartFn,
    *mut c_void,
) -> c_int;

static REAL: AtomicUsize = AtomicUsize::new(0);

struct Start {
    f: StartFn,
    arg: *mut c_void,
    group: u64,
}

/// A new thread's start: attaches the creator's group, then runs the start routine.
///
/// # Safety
/// `p` is a `Start` boxed by `pthread_create` below, given to this call alone.
unsafe extern "C" fn trampoline(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the `Start` boxed by `pthread_create` below, handed to us alone.
    let start = unsafe { Box::from_raw(p as *mut Start) };
    crate::memcg::control::reattach(start.group);
    let (f, arg) = (start.f, start.arg);
    drop(start);
    f(arg)
}

/// `pthread_create(3)`, starting the thread in the creator's group.
///
/// # Safety
/// As `pthread_create(3)`.
#[no_mangle]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    f: StartFn,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: a dlsym result for "pthread_create" has this signature.
    let Some(real) = (unsafe { lookup::<CreateFn>(&REAL, c"pthread_create") }) else {
        return libc::EAGAIN;
    };
    let group = crate::memcg::control::current();
    if group == crate::memcg::control::root() {
        // SAFETY: forwarding the caller's arguments unchanged.
        let r = unsafe { real(thread, attr, f, arg) };
        // SAFETY: `r` is what the real function returned for `thread`.
        unsafe { forget_requests(r, thread) };
        return r;
    }
    // The library's own bookkeeping, freed as the thread starts: charged forced (as a
    // reclaim callback's allocations are), so that a creator at its group's `max` still
    // starts threads; without memory at all, `EAGAIN` as for any resource shortage.
    let layout = std::alloc::Layout::new::<Start>();
    // SAFETY: `Start` has a non-zero size.
    let start = threads::with_memalloc(|| unsafe { std::alloc::alloc(layout) }).cast::<Start>();
    if start.is_null() {
        return libc::EAGAIN;
    }
    // SAFETY: freshly allocated for a `Start`; the trampoline takes it back as a `Box`
    // (same layout, same global allocator).
    unsafe { start.write(Start { f, arg, group }) };
    // SAFETY: forwarding the caller's arguments, with our trampoline owning `start`.
    let r = unsafe { real(thread, attr, trampoline, start.cast()) };
    if r != 0 {
        // SAFETY: the thread was not created, so `start` is still ours.
        drop(unsafe { Box::from_raw(start) });
    }
    // SAFETY: `r` is what the real function returned for `thread`.
    unsafe { forget_requests(r, thread) };
    r
}

/// A new thread may reuse a dead thread's `pthread_t`: drop group requests made for it.
///
/// # Safety
/// `r` is what the real `pthread_create` returned for the out-parameter `thread`: when
/// it is 0, `thread` is null or holds the new thread's id.
unsafe fn forget_requests(r: c_int, thread: *mut libc::pthread_t) {
    if r == 0 && !thread.is_null() {
        // SAFETY: the real pthread_create succeeded and wrote the new id.
        let id = unsafe { *thread };
        crate::memcg::threads::forget_requests(id);
    }
}

type SetNameFn = unsafe extern "C" fn(libc::pthread_t, *const c_char) -> c_int;

static REAL_SETNAME: AtomicUsize = AtomicUsize::new(0);

/// `pthread_setname_np(3)`, then the `CGMALLOC_THREADS` rules for the new name.
///
/// # Safety
/// As `pthread_setname_np(3)`.
#[no_mangle]
pub unsafe extern "C" fn pthread_setname_np(thread: libc::pthread_t, name: *const c_char) -> c_int {
    // SAFETY: a dlsym result for "pthread_setname_np" has this signature.
    let Some(real) = (unsafe { lookup::<SetNameFn>(&REAL_SETNAME, c"pthread_setname_np") }) else {
        return libc::ENOSYS;
    };
    // SAFETY: forwarding the caller's arguments unchanged.
    let r = unsafe { real(thread, name) };
    if r == 0 && !name.is_null() {
        // SAFETY: the real function accepted `name`, a NUL-terminated string.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        // SAFETY: pthread_self and pthread_equal have no preconditions.
        let is_self = unsafe { libc::pthread_equal(thread, libc::pthread_self()) } != 0;
        crate::config::threads::on_named(thread, is_self, name);
    }
    r
}
