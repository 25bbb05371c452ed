//! Medium blocks: above `SMALL_MAX`, up to `MEDIUM_MAX`. Each is a span of its own, as
//! many 64 KiB slices of a segment as it needs, charged to the page: `block_size` is the
//! request rounded up to 4 KiB and `pages()` its charge; the rest of the last slice is
//! neither touched nor charged.
//!
//! While the block lives its span is on its heap's full list with `in_full` set, so a
//! free by another thread (which uncharges the span at once, `free.rs`) tells the owner
//! to collect and release it. Freed by its owner, the span goes to the heap's cache (at
//! most `MEDIUM_CACHE` medium spans there, still charged) to serve a block of as many
//! slices again, its charge refitted; beyond that it is released to its segment.
//!
//! `grow` resizes a block in place for `realloc`: within its last slice, or into the free
//! slices right after it, which only the segment's owner thread may take.

use super::heap::Heap;
use super::resize::{charge_growth, NotResized};
use super::segment::{Segment, SLICE_SIZE};
use super::span::{self, Span};
use crate::memcg;
use crate::os::mem::{self, PAGE_SIZE};
use core::ptr;
use std::sync::atomic::Ordering;

/// Medium spans a heap's cache keeps (among its `CACHE_MAX` spans).
const MEDIUM_CACHE: u32 = 2;

/// The bytes of a medium block of `size` bytes (`size ≤ MEDIUM_MAX`: no overflow).
fn usable_for(size: usize) -> usize {
    mem::page_ceil(size.max(1)).unwrap_or(usize::MAX)
}

impl Heap {
    /// A medium block of `size` bytes (`size ≤ MEDIUM_MAX`), aligned to a slice: a span
    /// of its own, charged to the page. `(block, zeroed)`; null when the group refuses
    /// the charge or memory is exhausted.
    pub fn alloc_medium(&mut self, size: usize) -> (*mut u8, bool) {
        self.reactivate();
        let usable = usable_for(size);
        let pages = (usable / PAGE_SIZE) as u64;
        let slices = usable.div_ceil(SLICE_SIZE);
        let (s, zeroed) = match self.take_cached_medium(slices, usable) {
            Some(found) => match self.refit_medium(found, pages) {
                Some(r) => r,
                None => return (ptr::null_mut(), false),
            },
            None => {
                if memcg::charge::try_charge(self.group, pages, 0).is_err() {
                    return (ptr::null_mut(), false);
                }
                // The charge may have run callbacks that used this heap; it is
                // consistent again.
                let Some(r) = self.fresh_slices(slices) else {
                    memcg::charge::uncharge(self.group, pages);
                    return (ptr::null_mut(), false);
                };
                memcg::events::add_stat(self.group, memcg::events::StatKey::NrCharges, 1);
                r
            }
        };
        // SAFETY: the thread state outlives its heaps.
        let key = unsafe { (*self.tld).next_key() };
        // SAFETY: a span we own, on no list, charged for `usable` bytes.
        let span = unsafe { &mut *s };
        span.format(span::MEDIUM, usable, 1, key, self, self.group);
        // Its one block, handed out now.
        span.reserved = 1;
        span.used.store(1, Ordering::Relaxed);
        // On the full list: a remote free of its block tells the owner through `in_full`.
        span.in_full.store(true, Ordering::Relaxed);
        self.move_list(s, span::LIST_FULL);
        let p = span.start;
        if !zeroed {
            // A live block's first word must not look like a free-list link.
            // SAFETY: the block's first word, inside the span.
            unsafe { (p as *mut usize).write(0) };
        }
        (p, zeroed)
    }

    /// A cached medium span of `slices` slices, one of `usable` bytes first; with
    /// whether it was purged (then uncharged and zeroed). It is `ACTIVE` and on no list.
    fn take_cached_medium(&mut self, slices: usize, usable: usize) -> Option<(*mut Span, bool)> {
        if self.medium_cached == 0 {
            return None;
        }
        // SAFETY: the thread's cache lock guards span states against reclaimers.
        let _g = unsafe { (*self.tld).lock_cache() };
        let mut found: *mut Span = ptr::null_mut();
        let mut s = self.cache.head;
        while !s.is_null() {
            // SAFETY: cached spans are live descriptors owned by this heap.
            let span = unsafe { &*s };
            if span.class == span::MEDIUM && span.slices as usize == slices {
                found = s;
                if span.block_size as usize == usable {
                    break;
                }
            }
            s = span.next;
        }
        if found.is_null() {
            return None;
        }
        self.move_list(found, span::LIST_NONE);
        // SAFETY: as above.
        let st = unsafe { &(*found).state };
        let purged = st.load(Ordering::Relaxed) == span::PURGED;
        st.store(span::ACTIVE, Ordering::Relaxed);
        Some((found, purged))
    }

    /// Charges a cached medium span for `pages` pages: the difference from what it holds
    /// (all of them if it was purged). On refusal the span is released and `None`
    /// returned.
    fn refit_medium(
        &mut self,
        (s, purged): (*mut Span, bool),
        pages: u64,
    ) -> Option<(*mut Span, bool)> {
        // SAFETY: a span we own, on no list.
        let held = if purged { 0 } else { unsafe { (*s).pages() } };
        if pages > held {
            // The span is on no list and `ACTIVE`: callbacks run by the charge cannot
            // reach it.
            if memcg::charge::try_charge(self.group, pages - held, 0).is_err() {
                if purged {
                    // SAFETY: as above; it holds no charge.
                    unsafe { (*s).state.store(span::PURGED, Ordering::Relaxed) };
                }
                self.release(s);
                return None;
            }
            if purged {
                memcg::events::add_stat(self.group, memcg::events::StatKey::NrCharges, 1);
            }
        } else if held > pages {
            memcg::charge::uncharge(self.group, held - pages);
        }
        Some((s, purged))
    }

    /// The owner freed (or collected) the block of medium span `s`: cache the span, or
    /// release it (beyond `MEDIUM_CACHE`, or when the freeing thread already uncharged
    /// it).
    pub fn free_medium(&mut self, s: *mut Span) {
        self.move_list(s, span::LIST_NONE);
        // SAFETY: a span of this heap.
        let span = unsafe { &mut *s };
        span.in_full.store(false, Ordering::Relaxed);
        span.collect();
        if self.medium_cached < MEDIUM_CACHE
            && span.group.load(Ordering::Relaxed) != span::NO_GROUP
            && !memcg::charge::at_max(self.group)
        {
            self.cache_span(s);
        } else {
            self.release(s);
        }
    }
}

/// Grows the medium block of span `s` in segment `seg` to `new_size` bytes in place
/// (`new_size ≤ MEDIUM_MAX`, larger than its `block_size`): within its last slice, or
/// into the free slices right after it when this thread owns the segment. The extra
/// pages are charged to the block's group (`charge_growth`).
pub fn grow(seg: *mut Segment, s: *mut Span, new_size: usize) -> Result<(), NotResized> {
    // SAFETY: the live segment and span of a block the caller holds.
    let (sg, span) = unsafe { (&mut *seg, &mut *s) };
    let usable = usable_for(new_size);
    let slices = usable.div_ceil(SLICE_SIZE);
    let mine =
        sg.tld.load(Ordering::Relaxed) == super::tld::current() && !super::tld::current().is_null();
    if slices > span.slices as usize && (!mine || !sg.can_extend(span, slices)) {
        return Err(NotResized::NoRoom);
    }
    let group = span.group.load(Ordering::Relaxed);
    let more = ((usable - span.block_size as usize) / PAGE_SIZE) as u64;
    charge_growth(group, more)?;
    // A callback run by the charge may have taken the slices (it ran in this thread).
    if slices > span.slices as usize && !sg.extend_span(span, slices) {
        memcg::charge::uncharge(group, more);
        return Err(NotResized::NoRoom);
    }
    span.set_block_size(usable);
    Ok(())
}
