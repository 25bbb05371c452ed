//! `pthread_create` interposed (preloaded library only): a new thread starts in its
//! creator's group (INTERFACE.md "Semantics"). The real function is found with
//! `dlsym(RTLD_NEXT)`; the start routine is wrapped to attach the group first.

use core::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

type StartFn = extern "C" fn(*mut c_void) -> *mut c_void;
type CreateFn = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    StartFn,
    *mut c_void,
) -> c_int;

static REAL: AtomicUsize = AtomicUsize::new(0);

struct Start {
    f: StartFn,
    arg: *mut c_void,
    group: u64,
}

extern "C" fn trampoline(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the `Start` boxed by `pthread_create` below, handed to us alone.
    let start = unsafe { Box::from_raw(p as *mut Start) };
    crate::memcg::control::reattach(start.group);
    let (f, arg) = (start.f, start.arg);
    drop(start);
    f(arg)
}

fn real() -> Option<CreateFn> {
    let mut f = REAL.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds libc's definition.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"pthread_create".as_ptr()) } as usize;
        REAL.store(f, Ordering::Release);
    }
    // SAFETY: a non-zero result of dlsym for "pthread_create" has this signature.
    (f != 0).then(|| unsafe { core::mem::transmute::<usize, CreateFn>(f) })
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
    let Some(real) = real() else {
        return libc::EAGAIN;
    };
    let group = crate::memcg::control::current();
    if group == crate::memcg::control::root() {
        // SAFETY: forwarding the caller's arguments unchanged.
        return unsafe { real(thread, attr, f, arg) };
    }
    let start = Box::into_raw(Box::new(Start { f, arg, group }));
    // SAFETY: forwarding the caller's arguments, with our trampoline owning `start`.
    let r = unsafe { real(thread, attr, trampoline, start.cast()) };
    if r != 0 {
        // SAFETY: the thread was not created, so `start` is still ours.
        drop(unsafe { Box::from_raw(start) });
    }
    r
}
