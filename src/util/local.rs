//! References to the allocator's own statics without a load from the global offset table.
//!
//! The crate is compiled as position-independent code (it is also a shared library), and
//! rustc tells the assembler nothing that lets the linker turn a GOT load into a
//! `lea`, so every access to a static costs one more dependent load. The fast paths'
//! statics (the segment map, the size-class table, the TLS offset) are reached with
//! `lea` instead: their symbols are never exported, so the linker resolves the
//! PC-relative offset at link time, in the library as in an executable.

/// `&'static` of a static, by a `lea` on x86_64.
macro_rules! local_static {
    ($s:path) => {{
        #[cfg(target_arch = "x86_64")]
        let r = {
            let a: usize;
            // SAFETY: `lea` computes the static's address and reads or writes nothing.
            unsafe {
                core::arch::asm!(
                    "lea {a}, [rip + {s}]",
                    a = out(reg) a,
                    s = sym $s,
                    options(pure, nomem, nostack, preserves_flags),
                )
            };
            // SAFETY: `a` is the address of the static `$s`, of the type `addr_of!` names.
            unsafe { $crate::util::local::typed(core::ptr::addr_of!($s), a) }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let r = &$s;
        r
    }};
}
pub(crate) use local_static;

/// The static of `like`'s type at address `a`.
///
/// # Safety
/// `a` is the address of a static of type `T` (the one `like` points to), which lives for
/// the whole program and is only ever accessed through shared references.
#[inline(always)]
pub unsafe fn typed<T>(_like: *const T, a: usize) -> &'static T {
    // SAFETY: by the contract `a` is a static `T`, valid for the whole program.
    unsafe { &*(a as *const T) }
}
