//! The next definition of a symbol this library interposes (`dlsym(RTLD_NEXT)`): libc's
//! `pthread_create`, the C++ runtime's `operator new`. Looked up once and cached.

use core::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The next definition of `name` after this library, cached in `cache` (0: not looked
/// up yet, or not found).
///
/// # Safety
/// `F` is the function pointer type of `name`.
pub unsafe fn lookup<F: Copy>(cache: &AtomicUsize, name: &CStr) -> Option<F> {
    const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<usize>()) };
    let mut f = cache.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT searches the objects loaded
        // after this one.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        cache.store(f, Ordering::Release);
    }
    // SAFETY: a non-zero dlsym result for `name` is a function of type `F` (caller's
    // contract), and `F` is pointer-sized (checked above).
    (f != 0).then(|| unsafe { core::mem::transmute_copy::<usize, F>(&f) })
}
