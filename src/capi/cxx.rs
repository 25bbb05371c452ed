//! C++ `operator new` and `operator delete` (every replaceable form of the Itanium C++
//! ABI, as libstdc++ and libc++ export them), so that a C++ program reaches the
//! allocator in one call, not through its runtime's `operator new` and a second PLT hop
//! to `malloc`. Preloaded or linked library only (`override`).
//!
//! Failure keeps C++'s rules without C++ here: when the allocator has no block, the call
//! goes to the next definition of the same operator (the C++ runtime's, `next.rs`), which
//! tries `malloc` (ours) again, runs the `new_handler` and throws `std::bad_alloc` (or,
//! for the `nothrow` forms, returns null). A program with no C++ runtime after this
//! library cannot call these operators but through a direct `dlsym`; should one do so
//! and run out of memory, the throwing forms end it with one line, since nothing could
//! be thrown.
//!
//! Every `delete` form frees the block: the size and alignment a sized or aligned
//! `delete` passes are the ones of its `new`, which `free` does not need.

use super::next::lookup;
use crate::alloc;
use crate::util::fatal::fatal;
use core::ffi::{c_void, CStr};
use core::ptr;
use std::sync::atomic::AtomicUsize;

/// `operator new(size_t)` and its array and `nothrow` forms.
type NewFn = unsafe extern "C" fn(usize) -> *mut c_void;
/// `operator new(size_t, const std::nothrow_t&)` (the tag is a reference, unused).
type NewNothrowFn = unsafe extern "C" fn(usize, *const c_void) -> *mut c_void;
/// `operator new(size_t, std::align_val_t)`.
type NewAlignedFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
/// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
type NewAlignedNothrowFn = unsafe extern "C" fn(usize, usize, *const c_void) -> *mut c_void;

/// The allocator had no block for a throwing form and no C++ runtime follows to throw.
#[cold]
fn cannot_throw() -> ! {
    fatal(&[b"operator new: out of memory, and no C++ runtime to throw std::bad_alloc"])
}

/// The allocator's block for `new`, else the C++ runtime's answer (its `new_handler`
/// loop: a block, or `std::bad_alloc` thrown through this frame, or null for `nothrow`).
macro_rules! or_runtime {
    ($p:expr, $cache:ident, $name:literal, $ty:ty, $nothrow:expr, |$next:ident| $call:expr) => {{
        let p = $p;
        if !p.is_null() {
            return p.cast();
        }
        static $cache: AtomicUsize = AtomicUsize::new(0);
        const NAME: &CStr = $name;
        // SAFETY: the C++ runtime's definition of this same operator has type `$ty`.
        match unsafe { lookup::<$ty>(&$cache, NAME) } {
            // SAFETY: the caller's arguments, unchanged, to the same operator.
            Some($next) => unsafe { $call },
            None if $nothrow => ptr::null_mut(),
            None => cannot_throw(),
        }
    }};
}

/// `operator new(size_t)`.
///
/// # Safety
/// None beyond C++'s: the result is freed with a matching `operator delete`.
#[export_name = "_Znwm"]
pub unsafe extern "C" fn cxx_new(size: usize) -> *mut c_void {
    or_runtime!(alloc::malloc(size), NEXT, c"_Znwm", NewFn, false, |f| f(
        size
    ))
}

/// `operator new[](size_t)`.
///
/// # Safety
/// As for `cxx_new`.
#[export_name = "_Znam"]
pub unsafe extern "C" fn cxx_new_array(size: usize) -> *mut c_void {
    or_runtime!(alloc::malloc(size), NEXT, c"_Znam", NewFn, false, |f| f(
        size
    ))
}

/// `operator new(size_t, const std::nothrow_t&)`.
///
/// # Safety
/// As for `cxx_new`.
#[export_name = "_ZnwmRKSt9nothrow_t"]
pub unsafe extern "C" fn cxx_new_nothrow(size: usize, tag: *const c_void) -> *mut c_void {
    or_runtime!(
        alloc::malloc(size),
        NEXT,
        c"_ZnwmRKSt9nothrow_t",
        NewNothrowFn,
        true,
        |f| f(size, tag)
    )
}

/// `operator new[](size_t, const std::nothrow_t&)`.
///
/// # Safety
/// As for `cxx_new`.
#[export_name = "_ZnamRKSt9nothrow_t"]
pub unsafe extern "C" fn cxx_new_array_nothrow(size: usize, tag: *const c_void) -> *mut c_void {
    or_runtime!(
        alloc::malloc(size),
        NEXT,
        c"_ZnamRKSt9nothrow_t",
        NewNothrowFn,
        true,
        |f| f(size, tag)
    )
}

/// `operator new(size_t, std::align_val_t)`: `align` is a power of two (C++'s rule).
///
/// # Safety
/// As for `cxx_new`.
#[export_name = "_ZnwmSt11align_val_t"]
pub unsafe extern "C" fn cxx_new_aligned(size: usize, align: usize) -> *mut c_void {
    or_runtime!(
        aligned(align, size),
        NEXT,
        c"_ZnwmSt11align_val_t",
        NewAlignedFn,
        false,
        |f| f(size, align)
    )
}

/// `operator new[](size_t, std::align_val_t)`.
///
/// # Safety
/// As for `cxx_new`.
#[export_name = "_ZnamSt11align_val_t"]
pub unsafe extern "C" fn cxx_new_array_aligned(size: usize, align: usize) -> *mut c_void {
    or_runtime!(
        aligned(align, size),
        NEXT,
        c"_ZnamSt11align_val_t",
        NewAlignedFn,
        false,
        |f| f(size, align)
    )
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
/// As for `cxx_new`.
#[export_name = "_ZnwmSt11align_val_tRKSt9nothrow_t"]
pub unsafe extern "C" fn cxx_new_aligned_nothrow(
    size: usize,
    align: usize,
    tag: *const c_void,
) -> *mut c_void {
    or_runtime!(
        aligned(align, size),
        NEXT,
        c"_ZnwmSt11align_val_tRKSt9nothrow_t",
        NewAlignedNothrowFn,
        true,
        |f| f(size, align, tag)
    )
}

/// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
/// As for `cxx_new`.
#[export_name = "_ZnamSt11align_val_tRKSt9nothrow_t"]
pub unsafe extern "C" fn cxx_new_array_aligned_nothrow(
    size: usize,
    align: usize,
    tag: *const c_void,
) -> *mut c_void {
    or_runtime!(
        aligned(align, size),
        NEXT,
        c"_ZnamSt11align_val_tRKSt9nothrow_t",
        NewAlignedNothrowFn,
        true,
        |f| f(size, align, tag)
    )
}

/// A block for an aligned `new`; null for an alignment that is not a power of two
/// (undefined in C++), which the runtime then refuses in its own way.
fn aligned(align: usize, size: usize) -> *mut u8 {
    if align.is_power_of_two() {
        alloc::aligned(align, size)
    } else {
        ptr::null_mut()
    }
}

/// Every `operator delete` form: each frees its block.
macro_rules! deletes {
    ($($sym:literal $name:ident ($($extra:ident: $ty:ty),*);)*) => {$(
        #[doc = concat!("`operator delete` as `", $sym, "`.")]
        ///
        /// # Safety
        /// `p` is null or a block of the matching `operator new`, not yet freed.
        #[export_name = $sym]
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $extra: $ty)*) {
            $(let _ = $extra;)*
            // SAFETY: this function's contract.
            unsafe { alloc::free(p.cast()) }
        }
    )*};
}

deletes! {
    "_ZdlPv" cxx_delete();
    "_ZdaPv" cxx_delete_array();
    "_ZdlPvm" cxx_delete_sized(size: usize);
    "_ZdaPvm" cxx_delete_array_sized(size: usize);
    "_ZdlPvRKSt9nothrow_t" cxx_delete_nothrow(tag: *const c_void);
    "_ZdaPvRKSt9nothrow_t" cxx_delete_array_nothrow(tag: *const c_void);
    "_ZdlPvSt11align_val_t" cxx_delete_aligned(align: usize);
    "_ZdaPvSt11align_val_t" cxx_delete_array_aligned(align: usize);
    "_ZdlPvmSt11align_val_t" cxx_delete_sized_aligned(size: usize, align: usize);
    "_ZdaPvmSt11align_val_t" cxx_delete_array_sized_aligned(size: usize, align: usize);
    "_ZdlPvSt11align_val_tRKSt9nothrow_t" cxx_delete_aligned_nothrow(align: usize, tag: *const c_void);
    "_ZdaPvSt11align_val_tRKSt9nothrow_t" cxx_delete_array_aligned_nothrow(align: usize, tag: *const c_void);
}
