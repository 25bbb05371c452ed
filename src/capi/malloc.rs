//! The malloc family with glibc's semantics (INTERFACE.md "The malloc family"), exported
//! as `cgm_malloc`, `cgm_free`, ... and, with the default `override` feature, under the
//! standard names, which is what makes `LD_PRELOAD=libcgmalloc.so` (or linking it)
//! replace the program's malloc.
//!
//! Errors: `NULL` with `errno = ENOMEM`; `posix_memalign` returns the error instead;
//! `free` preserves `errno`.

use crate::alloc::{self, front::MIN_ALIGN};
use crate::os::set_errno;
use core::ffi::{c_int, c_void};
use core::ptr;

use crate::consts::PAGE_SIZE as PAGE;

fn nomem() -> *mut c_void {
    set_errno(libc::ENOMEM);
    ptr::null_mut()
}

fn checked(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        nomem()
    } else {
        p.cast()
    }
}

macro_rules! exports {
    ($($(#[$m:meta])* fn $name:ident / $cgm:ident ($($arg:ident: $ty:ty),*) -> $ret:ty $body:block)*) => {$(
        $(#[$m])*
        ///
        /// # Safety
        /// The C contract of the function of the same name: pointers are null or come
        /// from this allocator, out-pointers are writable.
        #[no_mangle]
        pub unsafe extern "C" fn $cgm($($arg: $ty),*) -> $ret $body

        $(#[$m])*
        ///
        /// # Safety
        /// As for the `cgm_` function of the same name.
        #[cfg(feature = "override")]
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret $body
    )*};
}

exports! {
    /// `malloc(3)`.
    fn malloc / cgm_malloc(size: usize) -> *mut c_void {
        checked(alloc::malloc(size))
    }

    /// `free(3)`; preserves `errno`.
    fn free / cgm_free(p: *mut c_void) -> () {
        // `errno` is preserved by the free path itself.
        // SAFETY: the C contract of `free(3)`, this function's: `p` is null or a block
        // this allocator handed out and not yet freed.
        unsafe { alloc::free(p.cast()) };
    }

    /// `calloc(3)`: overflow is `ENOMEM`.
    fn calloc / cgm_calloc(n: usize, size: usize) -> *mut c_void {
        checked(alloc::calloc(n, size))
    }

    /// `realloc(3)`: `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and
    /// returns `NULL`; on failure `p` is untouched.
    fn realloc / cgm_realloc(p: *mut c_void, size: usize) -> *mut c_void {
        if p.is_null() {
            return checked(alloc::malloc(size));
        }
        if size == 0 {
            // SAFETY: the C contract of `realloc(3)`, this function's: `p` is a block this
            // allocator handed out and not yet freed.
            unsafe { alloc::free(p.cast()) };
            return ptr::null_mut();
        }
        // SAFETY: as above; on success the C caller uses only the result.
        checked(unsafe { alloc::realloc(p.cast(), size, MIN_ALIGN) })
    }

    /// `reallocarray(3)`: `realloc` of `n * size` bytes, `ENOMEM` on overflow.
    fn reallocarray / cgm_reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
        match n.checked_mul(size) {
            // SAFETY: forwarding our caller's pointer.
            Some(bytes) => unsafe { cgm_realloc(p, bytes) },
            None => nomem(),
        }
    }

    /// `posix_memalign(3)`: `EINVAL` (and `*out` untouched) unless `align` is a power of
    /// two multiple of `sizeof(void *)`.
    fn posix_memalign / cgm_posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
        if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
            return libc::EINVAL;
        }
        if out.is_null() {
            return libc::EINVAL;
        }
        let p = alloc::aligned(align, size);
        if p.is_null() {
            return libc::ENOMEM;
        }
        // SAFETY: the caller passed a valid out-pointer.
        unsafe { *out = p.cast() };
        0
    }

    /// `aligned_alloc(3)`: `NULL` with `EINVAL` unless `align` is a power of two.
    fn aligned_alloc / cgm_aligned_alloc(align: usize, size: usize) -> *mut c_void {
        if !align.is_power_of_two() {
            set_errno(libc::EINVAL);
            return ptr::null_mut();
        }
        checked(alloc::aligned(align, size))
    }

    /// `memalign(3)`: a non-power-of-two alignment is rounded up.
    fn memalign / cgm_memalign(align: usize, size: usize) -> *mut c_void {
        match align.max(1).checked_next_power_of_two() {
            Some(a) => checked(alloc::aligned(a, size)),
            None => nomem(),
        }
    }

    /// `valloc(3)`: page-aligned.
    fn valloc / cgm_valloc(size: usize) -> *mut c_void {
        checked(alloc::aligned(PAGE, size))
    }

    /// `pvalloc(3)`: page-aligned, size rounded up to whole pages.
    fn pvalloc / cgm_pvalloc(size: usize) -> *mut c_void {
        match size.max(1).checked_add(PAGE - 1) {
            Some(s) => checked(alloc::aligned(PAGE, s & !(PAGE - 1))),
            None => nomem(),
        }
    }

    /// `malloc_usable_size(3)`; 0 for `NULL`.
    fn malloc_usable_size / cgm_malloc_usable_size(p: *mut c_void) -> usize {
        // SAFETY: the C contract of `malloc_usable_size(3)`, this function's: `p` is null
        // or a block this allocator handed out and not yet freed.
        unsafe { alloc::usable_size(p.cast()) }
    }

    /// C23 `free_sized`.
    fn free_sized / cgm_free_sized(p: *mut c_void, _size: usize) -> () {
        // SAFETY: forwarding our caller's pointer.
        unsafe { cgm_free(p) }
    }

    /// C23 `free_aligned_sized`.
    fn free_aligned_sized / cgm_free_aligned_sized(p: *mut c_void, _align: usize, _size: usize) -> () {
        // SAFETY: forwarding our caller's pointer.
        unsafe { cgm_free(p) }
    }

    /// `malloc_trim(3)`: returns memory to the kernel; 1 if any was released.
    fn malloc_trim / cgm_malloc_trim(_pad: usize) -> c_int {
        alloc::account::trim() as c_int
    }
}
