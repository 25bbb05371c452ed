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

/// The allocator had no block for a throwing form and no C++ runtime follows to throw.
#[cold]
fn cannot_throw() -> ! {
    fatal(&[b"operator new: out of memory, and no C++ runtime to throw std::bad_alloc"])
}

/// Every `operator new` form: the allocator's block (`$block`), else the answer of the
/// C++ runtime's definition of the same operator, called with the same arguments (its
/// `new_handler` loop: a block, `std::bad_alloc` thrown through this frame, or null from
/// a `nothrow` form). With no runtime after this library, a `nothrow` form returns null
/// and a throwing one ends the program (`cannot_throw`).
macro_rules! news {
    ($($sym:literal $name:ident ($($arg:ident: $ty:ty),*) = $block:expr, nothrow: $nothrow:literal;)*) => {$(
        #[doc = concat!("`operator new` as `", $sym, "`.")]
        ///
        /// # Safety
        /// None beyond C++'s: the result is freed with a matching `operator delete`.
        #[export_name = $sym]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> *mut c_void {
            let p: *mut u8 = $block;
            if !p.is_null() {
                return p.cast();
            }
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            const NAME: &CStr = match CStr::from_bytes_with_nul(concat!($sym, "\0").as_bytes()) {
                Ok(name) => name,
                Err(_) => panic!("a symbol name without a NUL inside"),
            };
            // SAFETY: the C++ runtime's definition of this operator has this function's
            // type.
            match unsafe { lookup::<unsafe extern "C" fn($($ty),*) -> *mut c_void>(&NEXT, NAME) } {
                // SAFETY: the caller's arguments, unchanged, to the same operator.
                Some(next) => unsafe { next($($arg),*) },
                None if $nothrow => ptr::null_mut(),
                None => cannot_throw(),
            }
        }
    )*};
}

// `align` is a power of two (C++'s rule); the `std::nothrow_t` tag, a reference, is only
// passed on to the runtime.
news! {
    "_Znwm" cxx_new(size: usize) = alloc::malloc(size), nothrow: false;
    "_Znam" cxx_new_array(size: usize) = alloc::malloc(size), nothrow: false;
    "_ZnwmRKSt9nothrow_t" cxx_new_nothrow(size: usize, tag: *const c_void)
        = alloc::malloc(size), nothrow: true;
    "_ZnamRKSt9nothrow_t" cxx_new_array_nothrow(size: usize, tag: *const c_void)
        = alloc::malloc(size), nothrow: true;
    "_ZnwmSt11align_val_t" cxx_new_aligned(size: usize, align: usize)
        = aligned(align, size), nothrow: false;
    "_ZnamSt11align_val_t" cxx_new_array_aligned(size: usize, align: usize)
        = aligned(align, size), nothrow: false;
    "_ZnwmSt11align_val_tRKSt9nothrow_t"
        cxx_new_aligned_nothrow(size: usize, align: usize, tag: *const c_void)
        = aligned(align, size), nothrow: true;
    "_ZnamSt11align_val_tRKSt9nothrow_t"
        cxx_new_array_aligned_nothrow(size: usize, align: usize, tag: *const c_void)
        = aligned(align, size), nothrow: true;
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
