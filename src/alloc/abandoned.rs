//! Abandoned segments: span segments whose owner thread exited while blocks in them were
//! still live (its state could not be retired, or its retirement expired, `retired.rs`),
//! waiting for a thread to adopt them.
//!
//! They wait on one global list, linked through `next_owned`/`prev_owned` (unused while a
//! segment has no owner). A thread that needs slices for a new span and has no room in
//! its own segments adopts one, in place of a new segment (as mimalloc reclaims), whose
//! live spans are all charged to its heap's group (`orphan_group`): the segment becomes
//! its own, the live spans join its heap's queues, so the frees still to come are local
//! frees and the segment's free slices are reused. A thread with room adopts nothing: a
//! long-lived thread adopting on every span miss took every exited thread's segment
//! under thread churn, so the next thread found none and started a new one, while the
//! adopted segments' free slices waited for their purge and their spans, freed into by
//! other threads, for a collection. Until a thread adopts it, a thread freeing into the
//! segment takes its claim (see `remote.rs`); the one releasing its last span unlinks it.
//!
//! Dirty slices of abandoned segments are aged and purged (see `segment.rs`) by whichever
//! thread's slow path sees `DUE` pass, under the segment's claim.
//!
//! Lock order: a segment's claim, then the list lock. Under the list lock a thread only
//! tries claims (never waits for one), so the two orders cannot deadlock.
//!
//! Invariant: a span segment in use whose `tld` is null and whose claim is free is on the
//! list; only a thread holding the claim (to adopt the segment) takes it off.

use super::charged::Owed;
use super::segment::DueHint;
use super::types::Segment;
use crate::util::spin::SpinLock;
use core::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `orphan_group` of a segment whose live spans belong to more than one group (never
/// adopted).
pub const MIXED: u32 = u32::MAX - 1;

/// How many listed segments a thread looking for one to adopt examines.
const SCAN: usize = 16;

struct List {
    head: *mut Segment,
}

// SAFETY: the list's pointers are only followed under the lock.
unsafe impl Send for List {}

static LIST: SpinLock<List> = SpinLock::new(List {
    head: ptr::null_mut(),
});

/// Segments on the list, read without the lock by the slow paths.
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// When `purge_due` has work.
static DUE: DueHint = DueHint::new();

/// Whether any segment waits to be adopted (a hint).
#[inline]
pub fn waiting() -> bool {
    COUNT.load(Ordering::Relaxed) != 0
}

/// Puts a segment whose owner just left on the list. The caller holds its claim, has
/// cleared `tld` and set `orphan_group`.
///
/// # Safety
/// `seg` is a span segment in use, on no list, whose `tld` is null and `orphan_group`
/// set, and which the caller holds (its claim, or no other thread runs).
pub unsafe fn push(seg: *mut Segment) {
    let mut l = LIST.lock();
    // SAFETY: under the list lock; `seg`, held by the caller, is on no list.
    unsafe { Segment::link_owned(&mut l.head, seg) };
    COUNT.fetch_add(1, Ordering::Relaxed);
    // Under the lock, so that a `purge_due` walk either sees the segment or comes after
    // this deadline.
    // SAFETY: the caller holds the segment.
    DUE.note(unsafe { (*seg).purge_at });
}

/// Takes a listed segment off the list, for its last span is gone. The caller holds its
/// claim.
///
/// # Safety
/// `seg` is on the list, and the caller holds its claim.
pub unsafe fn unlink(seg: *mut Segment) {
    let mut l = LIST.lock();
    // SAFETY: `seg` is on the list (this function's contract), which we hold.
    unsafe { unlink_locked(&mut l, seg) };
}

/// Takes `seg` off the list `l` (locked).
///
/// # Safety
/// `seg` is on `l`.
unsafe fn unlink_locked(l: &mut List, seg: *mut Segment) {
    // SAFETY: under the list lock, `seg` is listed.
    unsafe { Segment::unlink_owned(&mut l.head, seg) };
    COUNT.fetch_sub(1, Ordering::Relaxed);
}

/// Takes off the list a segment whose live spans all belong to `group` and returns it
/// with its claim held; `None` if none of the first `SCAN` listed segments qualifies or
/// can be claimed at once.
pub fn take(group: u32) -> Option<*mut Segment> {
    let mut l = LIST.lock();
    let mut s = l.head;
    for _ in 0..SCAN {
        if s.is_null() {
            break;
        }
        // SAFETY: listed segments are mapped; `orphan_group` is written before `push`.
        let sg = unsafe { &*s };
        if sg.orphan_group == group && sg.try_claim() {
            // SAFETY: a segment of the list we hold.
            unsafe { unlink_locked(&mut l, s) };
            return Some(s);
        }
        s = sg.next_owned;
    }
    None
}

/// A listed segment has dirty slices due at `at` (0: none).
pub fn note_dirty(at: u64) {
    DUE.note(at);
}

/// Ages the dirty slices of the listed segments that are due and can be claimed at once
/// (`Segment::purge_expired`).
pub fn purge_due(now: u64) {
    if !DUE.is_due(now) {
        return;
    }
    const BATCH: usize = 16;
    let mut held = [ptr::null_mut::<Segment>(); BATCH];
    let mut n = 0;
    {
        let l = LIST.lock();
        DUE.reset();
        let mut s = l.head;
        while !s.is_null() {
            // SAFETY: listed segments are mapped.
            let sg = unsafe { &*s };
            let next = sg.next_owned;
            if !sg.try_claim() {
                // Its holder is busy with it: look again soon.
                DUE.note(now + super::segment::PURGE_DELAY_NS / 4);
            } else if sg.purge_at != 0 && sg.purge_at <= now && n < BATCH {
                held[n] = s;
                n += 1;
            } else {
                DUE.note(sg.purge_at);
                sg.unlock_claim();
            }
            s = next;
        }
    }
    for &s in &held[..n] {
        let mut owed = Owed::new();
        // SAFETY: claimed above, and still listed: ours until the claim is dropped.
        unsafe {
            (*s).purge_expired(now, &mut owed);
            DUE.note((*s).purge_at);
            (*s).unlock_claim();
        }
        owed.apply();
    }
}

/// In a fork child, whose other threads are gone: forgets the list, which the caller
/// rebuilds with `push`.
pub fn reset_in_child() {
    LIST.lock().head = ptr::null_mut();
    COUNT.store(0, Ordering::Relaxed);
    DUE.reset();
}

pub fn lock_for_fork() {
    LIST.lock_for_fork();
}

pub fn unlock_after_fork() {
    LIST.force_unlock();
}
