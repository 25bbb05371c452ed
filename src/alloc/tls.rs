//! The two thread-local words the fast paths read: the current heap and the thread's
//! allocator state; and, for the slow paths, whether the thread has run its exit or is
//! swapping its state for a retired one, and its age in slow paths.
//!
//! In a Rust program the compiler reaches them with one `fs`-relative load. In the shared
//! library (feature `override`) it would call `__tls_get_addr` for each access, since a
//! library's TLS could be anywhere. A library loaded at program start (`LD_PRELOAD` or a
//! link-time dependency) has its TLS in the static block at the same offset from the
//! thread pointer in every thread, so the first thread measures that offset and
//! publishes it if it is plausible (within 1 MiB below the thread pointer); every thread
//! that sets itself up checks it sees the same offset, and the shortcut is switched off
//! for good otherwise. The shortcut is only an alternative way to read the same words.

use super::types::{Heap, Tld, EMPTY_HEAP};
use core::cell::Cell;
use core::ptr;

#[repr(C)]
pub struct Words {
    pub heap: Cell<*mut Heap>,
    pub tld: Cell<*mut Tld>,
    /// The thread has run its exit (`thread::thread_exit`): a state it sets up later (a
    /// destructor run after, glibc's own clean-up) must not stay with it, to die with
    /// it.
    pub exited: Cell<bool>,
    /// The swap is under way: the thread has no state until it ends.
    pub swapping: Cell<bool>,
    /// The thread's age: allocation slow paths it has taken (up to `u32::MAX`, where a
    /// swap of its state puts it). A young thread may swap its state, once
    /// (`thread::swap_to_retired`).
    pub slow_paths: Cell<u32>,
}

thread_local! {
    pub static WORDS: Words = const {
        Words {
            heap: Cell::new(&EMPTY_HEAP.0 as *const Heap as *mut Heap),
            tld: Cell::new(ptr::null_mut()),
            exited: Cell::new(false),
            swapping: Cell::new(false),
            slow_paths: Cell::new(0),
        }
    };
}

#[cfg(all(feature = "override", target_arch = "x86_64"))]
mod fast {
    use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

    /// Offset of `WORDS` from the thread pointer; 0 while unknown or switched off.
    pub static OFFSET: AtomicIsize = AtomicIsize::new(0);
    static OFF: AtomicBool = AtomicBool::new(false);

    #[inline(always)]
    pub fn read(field: usize) -> Option<usize> {
        let off = crate::util::local::local_static!(OFFSET).load(Ordering::Relaxed);
        if off == 0 {
            return None;
        }
        let v: usize;
        // SAFETY: `off` was measured as the distance from the thread pointer to `WORDS` and
        // confirmed for every thread that set itself up; reading a word of the static TLS
        // block through `fs` is what the compiler's initial-exec accesses do.
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr fs:[{a}]",
                v = out(reg) v,
                a = in(reg) off + field as isize,
                options(nostack, readonly, preserves_flags),
            );
        }
        Some(v)
    }

    /// Measures this thread's offset; publishes or checks it.
    pub fn calibrate(words: usize) {
        let tp: usize;
        // SAFETY: on x86_64 Linux, `fs:0` holds the thread pointer itself.
        unsafe {
            core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
        };
        let off = words as isize - tp as isize;
        if OFF.load(Ordering::Acquire) {
            return;
        }
        let plausible = off < 0 && off > -(1 << 20);
        let cur = OFFSET.load(Ordering::Acquire);
        if !plausible || (cur != 0 && cur != off) {
            OFF.store(true, Ordering::Release);
            OFFSET.store(0, Ordering::Release);
        } else if cur == 0 {
            OFFSET.store(off, Ordering::Release);
        }
    }
}

/// The current heap.
#[inline(always)]
pub fn heap() -> *mut Heap {
    #[cfg(all(feature = "override", target_arch = "x86_64"))]
    return match fast::read(0) {
        Some(v) => v as *mut Heap,
        None => words().0,
    };
    #[cfg(not(all(feature = "override", target_arch = "x86_64")))]
    WORDS.with(|w| w.heap.get())
}

/// This thread's allocator state.
#[inline(always)]
pub fn tld() -> *mut Tld {
    #[cfg(all(feature = "override", target_arch = "x86_64"))]
    return match fast::read(8) {
        Some(v) => v as *mut Tld,
        None => words().1,
    };
    #[cfg(not(all(feature = "override", target_arch = "x86_64")))]
    WORDS.with(|w| w.tld.get())
}

/// The two words through `__tls_get_addr`, in the shared library without the measured
/// offset. Out of line: the compiler otherwise computes the words' address (the call)
/// on entry to every function that reads them, whichever way the read then goes.
#[cfg(all(feature = "override", target_arch = "x86_64"))]
#[cold]
#[inline(never)]
fn words() -> (*mut Heap, *mut Tld) {
    WORDS.with(|w| (w.heap.get(), w.tld.get()))
}

/// The current heap if it can be read without a call: always in a Rust program; in the
/// shared library, while the measured offset is in use. Lets a fast path that cannot
/// afford to save registers for a call go to its slow path instead.
#[inline(always)]
pub fn heap_inline() -> Option<*mut Heap> {
    #[cfg(all(feature = "override", target_arch = "x86_64"))]
    return fast::read(0).map(|v| v as *mut Heap);
    #[cfg(not(all(feature = "override", target_arch = "x86_64")))]
    Some(WORDS.with(|w| w.heap.get()))
}

/// A number for the calling thread, never 0, that no other live thread has: the thread
/// pointer on x86_64 (one load, `fs:0`), else the address of the thread's TLS words. A
/// thread that exits may pass its id on to a thread created later.
#[inline(always)]
pub fn thread_id() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let tp: usize;
        // SAFETY: on x86_64 Linux, `fs:0` holds the thread pointer itself.
        unsafe {
            core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags, pure))
        };
        tp
    }
    #[cfg(not(target_arch = "x86_64"))]
    WORDS.with(|w| w as *const Words as usize)
}

/// Sets the current heap, which the fast paths follow without a check.
///
/// # Safety
/// `h` is the static empty heap or a live heap of the calling thread, which stays live
/// while it is the current heap.
pub unsafe fn set_heap(h: *mut Heap) {
    WORDS.with(|w| w.heap.set(h));
}

/// Sets this thread's allocator state, which the slow paths follow when it is not null.
///
/// # Safety
/// `t` is null or the calling thread's live state, which stays live while it is set.
pub unsafe fn set_tld(t: *mut Tld) {
    WORDS.with(|w| w.tld.set(t));
}

/// The thread runs its exit.
pub fn mark_exited() {
    WORDS.with(|w| w.exited.set(true));
}

/// Whether the thread has run its exit.
pub fn exited() -> bool {
    WORDS.with(|w| w.exited.get())
}

/// Counts an allocation slow path.
pub fn count_slow_path() {
    WORDS.with(|w| w.slow_paths.set(w.slow_paths.get().saturating_add(1)));
}

/// Allocation slow paths the thread has taken (`u32::MAX` once it swapped its state).
pub fn slow_paths() -> u32 {
    WORDS.with(|w| w.slow_paths.get())
}

/// The thread swaps its state: it is old from now on.
pub fn age_out() {
    WORDS.with(|w| w.slow_paths.set(u32::MAX));
}

/// The swap of the thread's state starts or ends.
pub fn set_swapping(on: bool) {
    WORDS.with(|w| w.swapping.set(on));
}

/// Whether a state the thread sets up now must be given back at once: past its exit, or
/// in the middle of a swap.
pub fn keeps_no_state() -> bool {
    WORDS.with(|w| w.exited.get() || w.swapping.get())
}

/// Called when a thread sets itself up.
pub fn calibrate() {
    #[cfg(all(feature = "override", target_arch = "x86_64"))]
    fast::calibrate(WORDS.with(|w| w as *const Words as usize));
}
