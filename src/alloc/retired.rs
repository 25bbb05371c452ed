//! Retired thread states: the state (`Tld`) of an exited thread, kept whole (its heaps,
//! their spans and caches, its segments) for the next thread that sets itself up (one
//! whose thread used the new thread's group last, if any), as snmalloc pools its
//! allocators. Under thread churn, where a thread frees the blocks of the thread before
//! it, those frees stay frees into a live owner's spans (chained, or the new owner's
//! own), where an abandoned segment took its claim for each (`remote.rs`), and the
//! exiting thread settles none of its spans (a walk of every block other threads freed
//! into them).
//!
//! A thread may also take a state over at its first free into it
//! (`thread::swap_to_retired`: `take_exact`): one that set itself up before the state
//! retired, if the state's thread was of its group; one that has no state yet, whatever
//! the state's group.
//!
//! A state retired longer than `KEEP_NS` is taken off the list by whichever thread's
//! allocation slow path sees it due, and its segments are abandoned then
//! (`thread::expire_retired`), as at an exit without retirement; reclaim and
//! `malloc_trim` abandon every retired state. So a process whose thread count falls
//! does not keep its exited threads' empty spans and dirty slices.
//!
//! Invariants:
//! - a retired state is on the list, and was its thread's (`thread_exit`, after the
//!   thread's pending remote frees were pushed and its large mappings released); no
//!   thread uses it until one takes it off under the lock;
//! - its segments' `owner` is the state's own address, which no thread's id
//!   (`tls::thread_id`) can be: a new thread handed the exited thread's id does not take
//!   their blocks for its own. Other threads' frees into them are pushed at once, not
//!   chained (`free.rs`); a reclaimer purges the state's cached spans under its cache
//!   lock, as any thread's. The thread that takes the state over stores its own id in each segment.
//!
//! Lock order: the list lock is a leaf.

use super::segment::DueHint;
use super::types::Tld;
use crate::util::spin::SpinLock;
use core::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How long a state stays retired before its segments are abandoned.
pub const KEEP_NS: u64 = 100_000_000;

/// Most states retired at once; past this an exiting thread abandons its segments.
const MAX: usize = 64;

/// How many retired states a thread setting itself up examines for its group.
const SCAN: usize = 8;

/// States `take_expired` hands back at once.
pub const BATCH: usize = 8;

struct List {
    head: *mut Tld,
}

// SAFETY: the list's pointers are only followed under the lock.
unsafe impl Send for List {}

static LIST: SpinLock<List> = SpinLock::new(List {
    head: ptr::null_mut(),
});

/// States on the list, read without the lock.
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// When the oldest retired state is due to expire.
static DUE: DueHint = DueHint::new();

/// Whether any state is retired (a hint).
#[inline]
pub fn waiting() -> bool {
    COUNT.load(Ordering::Relaxed) != 0
}

/// States retired now (for tests).
#[cfg(feature = "internals")]
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// Retires `t`, whose thread used `group` last, at `now`; false (and nothing changed)
/// when `MAX` states are retired already.
///
/// # Safety
/// `t` was the calling thread's state, no longer installed (`tls::set_tld(null)`), its
/// pending remote frees pushed and its large mappings released; no other thread uses it.
pub unsafe fn retire(t: *mut Tld, group: u32, now: u64) -> bool {
    if COUNT.load(Ordering::Relaxed) >= MAX || crate::os::fault::retirement_refused() {
        return false;
    }
    // SAFETY: the state is ours alone (this function's contract).
    let st = unsafe { &mut *t };
    // SAFETY: as above.
    unsafe { set_owner(st, t as usize) };
    st.retired_group = group;
    st.retired_at = now;
    let mut l = LIST.lock();
    if COUNT.load(Ordering::Relaxed) >= MAX {
        drop(l);
        // SAFETY: as above; nobody saw the token, as the state was listed nowhere.
        unsafe { restore_owner(st) };
        return false;
    }
    st.retired_next = l.head;
    l.head = t;
    COUNT.fetch_add(1, Ordering::Relaxed);
    DUE.note(now + KEEP_NS);
    true
}

/// Stores the state's own address as its segments' owner, as retiring does, for a state
/// about to be abandoned (`thread::abandon_state`): until each segment is abandoned, a
/// free into it takes the path of a retired state's block (pushed, settled with the
/// segment), never the owner's, even by the thread that owned the state (the program's
/// code an uncharge runs during the abandonment, in that thread, may free its blocks).
///
/// # Safety
/// As for `restore_owner`.
pub unsafe fn hide_owner(t: &Tld) {
    // SAFETY: this function's contract.
    unsafe { set_owner(t, t as *const Tld as usize) };
}

/// Stores the state's id back as its segments' owner.
///
/// # Safety
/// `t`'s segments are live, and `t` is the calling thread's (or held by it alone).
pub unsafe fn restore_owner(t: &Tld) {
    // SAFETY: this function's contract.
    unsafe { set_owner(t, t.id) };
}

/// Stores `owner` in every segment of `t`.
///
/// # Safety
/// As for `restore_owner`.
unsafe fn set_owner(t: &Tld, owner: usize) {
    let mut seg = t.segments;
    while !seg.is_null() {
        // SAFETY: the state's segments are live.
        unsafe {
            (*seg).owner.store(owner, Ordering::Relaxed);
            seg = (*seg).next_owned;
        }
    }
}

/// Takes the state `*link` names off the list and returns it.
///
/// # Safety
/// The caller holds the list lock; `link` is the head or a listed state's link, and
/// names a state.
unsafe fn unlink(link: *mut *mut Tld) -> *mut Tld {
    // SAFETY: this function's contract.
    unsafe {
        let t = *link;
        *link = (*t).retired_next;
        (*t).retired_next = ptr::null_mut();
        COUNT.fetch_sub(1, Ordering::Relaxed);
        t
    }
}

/// Takes off the list the state retired last of the first `SCAN` whose thread used
/// `group` last, else the state retired last; the caller takes it over
/// (`thread::setup_state`). A thread often sets itself up before it joins its group (a
/// runtime allocates for a new thread before its code runs), and a heap of the group it
/// joins then is found in the state, or made there, as in any thread's.
pub fn take(group: u32) -> Option<*mut Tld> {
    if !waiting() {
        return None;
    }
    let mut l = LIST.lock();
    let head: *mut *mut Tld = &mut l.head;
    let mut link = head;
    let mut found = false;
    for _ in 0..SCAN {
        // SAFETY: `link` is the list head or a listed state's link, under the lock.
        let t = unsafe { *link };
        if t.is_null() {
            break;
        }
        // SAFETY: a listed state, under the lock.
        if unsafe { (*t).retired_group } == group {
            found = true;
            break;
        }
        // SAFETY: as above.
        link = unsafe { &mut (*t).retired_next };
    }
    if !found {
        link = head;
    }
    // SAFETY: `link` is the head or a listed state's link, under the lock.
    unsafe { (!(*link).is_null()).then(|| unlink(link)) }
}

/// Takes `t` off the list if it is listed and, with a `group`, its thread used that
/// group last.
pub fn take_exact(t: *mut Tld, group: Option<u32>) -> bool {
    let mut l = LIST.lock();
    let mut link: *mut *mut Tld = &mut l.head;
    // SAFETY: `link` is the list head or a listed state's link, and every state on the
    // list is followed under the lock.
    unsafe {
        while !(*link).is_null() {
            let c = *link;
            if c == t {
                if group.is_some_and(|g| (*c).retired_group != g) {
                    return false;
                }
                unlink(link);
                return true;
            }
            link = &mut (*c).retired_next;
        }
    }
    false
}

/// Takes off the list up to `BATCH` states retired at `now - KEEP_NS` or before (every
/// state, with `all`) into `out`; returns how many. The caller abandons them.
pub fn take_expired(now: u64, all: bool, out: &mut [*mut Tld; BATCH]) -> usize {
    if !waiting() || !(all || DUE.is_due(now)) {
        return 0;
    }
    let mut l = LIST.lock();
    DUE.reset();
    let mut n = 0;
    let mut link: *mut *mut Tld = &mut l.head;
    // SAFETY: `link` is the list head or a listed state's link, and every state on the
    // list is followed under the lock.
    unsafe {
        while !(*link).is_null() {
            let t = *link;
            if n < BATCH && (all || (*t).retired_at + KEEP_NS <= now) {
                out[n] = unlink(link);
                n += 1;
            } else {
                DUE.note((*t).retired_at + KEEP_NS);
                link = &mut (*t).retired_next;
            }
        }
    }
    n
}

/// In a fork child, whose other threads are gone: takes the whole list (its states'
/// segments are settled with the vanished threads'), for the caller to recycle.
pub fn take_all_in_child() -> *mut Tld {
    let mut l = LIST.lock();
    let head = l.head;
    l.head = ptr::null_mut();
    COUNT.store(0, Ordering::Relaxed);
    DUE.reset();
    head
}

/// The state listed after `t` (for walking what `take_all_in_child` returned).
///
/// # Safety
/// `t` is a retired state taken off the list with the rest of it.
pub unsafe fn next(t: *mut Tld) -> *mut Tld {
    // SAFETY: this function's contract.
    unsafe { (*t).retired_next }
}

pub fn lock_for_fork() {
    LIST.lock_for_fork();
}

pub fn unlock_after_fork() {
    LIST.force_unlock();
}
