//! A thread's allocator state (`Tld`, in `types.rs`) as the owner of span segments: the
//! lock that guards its caches against reclaiming threads, the keys of its spans, its
//! owned segments and their purge deadline. Its heaps, set-up and exit are `thread.rs`'s.
//!
//! Invariant: a segment's `tld` is this thread's `Tld` exactly while it is on `segments`.

use super::abandoned;
use super::charged::Owed;
use super::tls;
use super::types::{Segment, Tld};
use std::sync::atomic::{AtomicU32, Ordering};

/// This thread's state, null before its first allocation.
#[inline]
pub fn current() -> *mut Tld {
    tls::tld()
}

/// Holds a thread's cache lock. Thread states are never unmapped, so the guard keeps a
/// plain pointer and does not borrow the state.
pub struct CacheGuard(*const AtomicU32);

impl Drop for CacheGuard {
    fn drop(&mut self) {
        // SAFETY: the lock word lives in never-unmapped pool memory.
        unsafe { (*self.0).store(0, Ordering::Release) };
    }
}

impl Tld {
    pub fn lock_cache(&self) -> CacheGuard {
        while self
            .cache_lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        CacheGuard(&self.cache_lock)
    }

    /// A per-span key for free-list links (xorshift64*).
    pub fn next_key(&mut self) -> usize {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1) as usize
    }

    /// An owned segment has dirty slices due at `at`.
    pub fn note_dirty(&mut self, at: u64) {
        if at != 0 && (self.purge_at == 0 || at < self.purge_at) {
            self.purge_at = at;
        }
    }

    /// Purges the dirty slices of owned, cached and abandoned segments that are due at
    /// `now`.
    pub fn purge_due(&mut self, now: u64) {
        Segment::purge_cached_due(now);
        abandoned::purge_due(now);
        if self.purge_at != 0 && self.purge_at <= now {
            self.purge_owned_due(now);
        }
    }

    /// Purges the dirty slices of every owned segment (`malloc_trim`).
    pub fn purge_all(&mut self) {
        self.purge_owned(|sg, owed| sg.purge_dirty(owed));
    }

    /// Ages the owned segments' dirty slices at `now` (`Segment::purge_expired`).
    fn purge_owned_due(&mut self, now: u64) {
        self.purge_owned(|sg, owed| sg.purge_expired(now, owed));
    }

    /// Applies `purge` to every owned segment, under its claim (a reclaiming thread may
    /// purge its free slices meanwhile); notes the next deadline, and applies the
    /// uncharges owed once the claim is dropped.
    fn purge_owned(&mut self, mut purge: impl FnMut(&mut Segment, &mut Owed)) {
        self.purge_at = 0;
        let mut seg = self.segments;
        while !seg.is_null() {
            // SAFETY: segments on the owner's list are live and ours.
            let sg = unsafe { &mut *seg };
            let mut owed = Owed::new();
            sg.lock_claim();
            purge(sg, &mut owed);
            self.note_dirty(sg.purge_at);
            sg.unlock_claim();
            owed.apply();
            seg = sg.next_owned;
        }
    }

    /// Makes `seg` this thread's.
    ///
    /// # Safety
    /// `self` is the calling thread's state; `seg` is a span segment in use that no
    /// thread owns or holds but the caller, on no owner's or abandoned list: new, from the
    /// segment cache, or abandoned and claimed by the caller (then taken off the list).
    pub unsafe fn adopt_segment(&mut self, seg: *mut Segment) {
        // A segment from the cache or the abandoned list may come with dirty slices.
        // SAFETY: a segment no other thread owns or holds: new, from the cache, or
        // abandoned and claimed by us (so on no list).
        unsafe {
            self.note_dirty((*seg).purge_at);
            (*seg).tld.store(self, Ordering::Release);
            (*seg).owner.store(self.id, Ordering::Relaxed);
            Segment::link_owned(&mut self.segments, seg);
        }
    }

    /// Unlinks an owned segment that has no span left and destroys it.
    ///
    /// # Safety
    /// `self` is the calling thread's state and `seg` a segment on its list with no span
    /// left, used no more, whose claim the caller holds (`Segment::destroy` drops it).
    pub unsafe fn drop_segment(&mut self, seg: *mut Segment) {
        // SAFETY: `seg` is on our list, which only this thread links.
        unsafe { Segment::unlink_owned(&mut self.segments, seg) };
        // SAFETY: our segment, unlinked, with no span left and used no more.
        unsafe { Segment::destroy(seg) };
    }
}
