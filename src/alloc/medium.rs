//! Medium blocks: above `SMALL_MAX`, up to `MEDIUM_MAX`. Each is a span of its own, as
//! many 64 KiB slices of a segment as it needs, charged to the page: `block_size` is the
//! request rounded up to 4 KiB and `pages()` its charge; the rest of the last slice is
//! neither touched nor charged.
//!
//! While the block lives its span is on its heap's full list with its `FULL` flag up, so a
//! free by another thread (which uncharges the span at once, `free.rs`) tells the owner
//! to collect and release it. Freed by its owner, the span is kept, still charged
//! (`PARKED`, or `CACHED` in the cache), to serve a block of as many slices again, its charge refitted: in the
//! heap's `parked` slot, whose previous span moves to the heap's cache; at most
//! `MEDIUM_CACHE` medium spans in both together, beyond that (or, for the span the
//! parked slot gives up, with the group at its limit) a span is released to its
//! segment. Keeping a freed span is the heap's (`Heap::free_medium` in `heap.rs`, which
//! its own trim and full-list scan call too); taking one back, and growing a block, are
//! this module's.
//!
//! The `parked` slot makes a free and malloc pair of one medium block cheap: no cache
//! lock, no list move, no atomic read-modify-write. The owner parks the span with plain
//! stores (its state becomes `PARKED` with a release store) and takes it back with plain
//! stores too when the process could register for `membarrier` (`plain_take`; else
//! with the compare-and-swap of `Span::claim`). A reclaiming thread purges a parked span
//! as a cached one (the state protocol in `span`), swapping `PARKED -> PURGING`; the
//! owner then finds it `PURGED`: uncharged and zeroed, charged afresh on reuse.
//!
//! The plain take (an asymmetric Dekker handshake, as folly's asymmetric barriers): the
//! owner raises the span's `taking`, reads the state, and if `PARKED` stores `ACTIVE`,
//! then lowers `taking` (release); if not, it lowers `taking` and `claim`s (waiting out
//! `PURGING`). The reclaimer, after its swap to `PURGING`, runs `os::membarrier`: the
//! owner either read the state after that barrier (it sees `PURGING` and waits) or raised
//! `taking` before it (the reclaimer sees the flag, waits for it to drop, and finds
//! `ACTIVE` if the owner took the span: it backs off). A reclaimer purges only a span
//! still `PURGING` after that, which the owner can no longer take.
//!
//! The owner's free of a medium block (`free_general` in `free.rs`, after the checks of
//! `locate`) neither reads nor links the block: the span has one block, so its state
//! tells a live block (`ACTIVE`, nothing on `thread_free`) from a freed one (`PARKED`,
//! `CACHED`, `PURGING`, `PURGED`: a double free), and `errno` is saved only on the paths that
//! may make system calls (releasing a span).
//!
//! `grow` resizes a block in place for `realloc`: within its last slice, or into the free
//! slices right after it, which only the segment's owner thread may take.

use super::charged::Owed;
use super::resize::{charge_growth, NotResized};
use super::types::{Heap, List, Segment, Span, State, MEDIUM, SLICE_SIZE};
use crate::consts::pages;
use crate::memcg;
use crate::os::mem;
use core::ptr;
use std::sync::atomic::{compiler_fence, AtomicBool, Ordering};

/// Whether owners take their parked spans back with plain stores: set once, before any
/// thread has a heap (`init_parking`), when the process is registered for `membarrier`.
static PLAIN_TAKE: AtomicBool = AtomicBool::new(false);

/// Decides `PLAIN_TAKE`, once; every thread calls it before it creates its heaps.
pub fn init_parking() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _errno = crate::os::ErrnoGuard::new();
        if crate::os::membarrier_register().is_ok() {
            PLAIN_TAKE.store(true, Ordering::Release);
        }
    });
}

/// Whether parked spans are taken back with plain stores (the handshake above).
#[inline]
pub fn plain_take() -> bool {
    PLAIN_TAKE.load(Ordering::Relaxed)
}

/// The bytes of a medium block of `size` bytes (`size ≤ MEDIUM_MAX`: no overflow).
fn usable_for(size: usize) -> usize {
    mem::page_ceil(size.max(1)).unwrap_or(usize::MAX)
}

/// The pages of reused dirty slices a new or grown medium span of `group` keeps charged,
/// for a block of `pages`: all of them (no system call) unless the group is short of
/// room, where the slices' pages past the block are purged.
fn kept(group: u32, pages: u64) -> u64 {
    if memcg::charge::under_pressure(group) {
        pages
    } else {
        u64::MAX
    }
}

impl Heap {
    /// A medium block of `size` bytes (`size ≤ MEDIUM_MAX`), aligned to a slice: a span
    /// of its own, charged to the page. `(block, zeroed)`; null when the group refuses
    /// the charge or memory is exhausted.
    pub fn alloc_medium(&mut self, size: usize) -> (*mut u8, bool) {
        self.reactivate();
        let usable = usable_for(size);
        let pages = pages(usable);
        let slices = usable.div_ceil(SLICE_SIZE);
        let cached = match self.take_parked(slices) {
            Some(found) => Some(found),
            None => self.take_cached_medium(slices, usable),
        };
        let (s, zeroed) = match cached {
            // SAFETY: a medium span of this heap just taken: `ACTIVE`, on no list.
            Some(found) => match unsafe { self.refit_medium(found, pages) } {
                Some(r) => r,
                None => return (ptr::null_mut(), false),
            },
            None => {
                let Some(r) = self.fresh_slices(slices, kept(self.group, pages)) else {
                    return (ptr::null_mut(), false);
                };
                // The slices may bring pages of our group still charged
                // (`Segment::take_slices`): charge the rest. The span is on no list:
                // callbacks the charge runs, which may use this heap, do not see it.
                // SAFETY: fresh slices we own, on no list.
                let held = unsafe { (*r.0).charged.pages() };
                if held < pages {
                    if memcg::charge::try_charge(self.group, pages - held, 0).is_err() {
                        // SAFETY: a span of this heap on no list, with no block, fresh.
                        unsafe { self.release(r.0) };
                        return (ptr::null_mut(), false);
                    }
                    // SAFETY: as above.
                    unsafe { (*r.0).charged.add(self.group, pages - held) };
                }
                r
            }
        };
        // SAFETY: the thread state outlives its heaps.
        let key = unsafe { (*self.tld()).next_key() };
        // SAFETY: a span we own, on no list, charged for `usable` bytes.
        let span = unsafe { &mut *s };
        // SAFETY: a span of a segment this thread owns; this heap is the thread's.
        unsafe { span.format(MEDIUM, usable, 1, key, self) };
        // Its one block, handed out now.
        span.reserved = 1;
        span.used.store(1, Ordering::Relaxed);
        // On the full list: a remote free of its block tells the owner through `FULL`
        // (nothing can be pending on the span just formatted).
        span.raise_full_fresh();
        // SAFETY: a span of this heap now, on no list.
        unsafe { self.move_list(s, List::Full) };
        let p = span.start;
        if !zeroed {
            // A live block's first word must not look like a free-list link.
            // SAFETY: the block's first word, inside the span.
            unsafe { (p as *mut usize).write(0) };
        }
        self.settle_quiet_charges();
        (p, zeroed)
    }

    /// The parked span if it has `slices` slices, with whether it was purged (then
    /// uncharged and zeroed). It is `ACTIVE` and on no list.
    #[inline]
    fn take_parked(&mut self, slices: usize) -> Option<(*mut Span, bool)> {
        let s = self.parked;
        // SAFETY: the parked span is a live descriptor of this heap; only the owner
        // writes its shape while it is parked.
        if s.is_null() || unsafe { (*s).slices } as usize != slices {
            return None;
        }
        self.parked = ptr::null_mut();
        // SAFETY: as above; once taken, no reclaimer touches it.
        let span = unsafe { &mut *s };
        let purged = if plain_take() {
            // The handshake of the module doc.
            span.taking.store(true, Ordering::Relaxed);
            // The reclaimer's `membarrier` orders the load after the store.
            compiler_fence(Ordering::SeqCst);
            if span.state.load(Ordering::Relaxed) == State::Parked {
                span.state.store(State::Active, Ordering::Relaxed);
                span.taking.store(false, Ordering::Release);
                false
            } else {
                span.taking.store(false, Ordering::Release);
                span.claim()
            }
        } else {
            span.claim()
        };
        span.list = List::None;
        span.state.store(State::Active, Ordering::Relaxed);
        Some((s, purged))
    }

    /// A cached medium span of `slices` slices, one of `usable` bytes first; with
    /// whether it was purged (then uncharged and zeroed). It is `ACTIVE` and on no list.
    fn take_cached_medium(&mut self, slices: usize, usable: usize) -> Option<(*mut Span, bool)> {
        if self.medium_cached == 0 {
            return None;
        }
        // SAFETY: the thread's cache lock guards span states against reclaimers.
        let _g = unsafe { (*self.tld()).lock_cache() };
        let mut found: *mut Span = ptr::null_mut();
        let mut s = self.cache.head;
        while !s.is_null() {
            // SAFETY: cached spans are live descriptors owned by this heap.
            let span = unsafe { &*s };
            if span.class() == MEDIUM && span.slices as usize == slices {
                found = s;
                if span.block_size() as usize == usable {
                    break;
                }
            }
            s = span.next;
        }
        if found.is_null() {
            return None;
        }
        // SAFETY: a span of this heap, in its cache.
        unsafe { self.move_list(found, List::None) };
        // SAFETY: as above.
        let span = unsafe { &*found };
        let purged = span.claim();
        span.state.store(State::Active, Ordering::Relaxed);
        Some((found, purged))
    }

    /// Charges a cached medium span for `pages` pages: the difference from what its
    /// record holds (nothing if it was purged). On refusal the span is released and
    /// `None` returned.
    ///
    /// # Safety
    /// `s` is a medium span of this heap (`heap.rs` module docs) with no block handed
    /// out, taken back from its slot or cache (`ACTIVE`, on no list).
    unsafe fn refit_medium(
        &mut self,
        (s, purged): (*mut Span, bool),
        pages: u64,
    ) -> Option<(*mut Span, bool)> {
        // SAFETY: a span we own, on no list.
        let span = unsafe { &*s };
        let held = span.charged.pages();
        debug_assert!(held == 0 || span.charged.is_of(self.group));
        if pages > held {
            // The span is on no list and `ACTIVE`: callbacks run by the charge cannot
            // reach it.
            if memcg::charge::try_charge(self.group, pages - held, 0).is_err() {
                // SAFETY: an empty span of this heap on no list, taken back.
                unsafe { self.release(s) };
                return None;
            }
            span.charged.add(self.group, pages - held);
        }
        // A span holding more than the block needs keeps it: those pages stay resident
        // (charged until purged or reclaimed with the span).
        Some((s, purged))
    }
}

/// Grows the medium block of span `s` in segment `seg` to `new_size` bytes in place
/// (`new_size ≤ MEDIUM_MAX`, larger than its `block_size`): within its last slice, or
/// into the free slices right after it when this thread owns the segment. The extra
/// pages are charged to the block's group (`charge_growth`).
///
/// # Safety
/// `seg` and `s` are the segment and span of a live medium block the caller holds (as
/// `free::locate` finds them).
pub unsafe fn grow(seg: *mut Segment, s: *mut Span, new_size: usize) -> Result<(), NotResized> {
    // SAFETY: the live segment and span of a block the caller holds.
    let (sg, span) = unsafe { (&mut *seg, &mut *s) };
    let usable = usable_for(new_size);
    let slices = usable.div_ceil(SLICE_SIZE);
    let mine =
        sg.tld.load(Ordering::Relaxed) == super::tld::current() && !super::tld::current().is_null();
    if slices > span.slices as usize && (!mine || !sg.can_extend(span, slices)) {
        return Err(NotResized::NoRoom);
    }
    let group = span.group();
    // What the span holds may exceed its block (pages it took over or kept).
    let need = pages(usable);
    let mut more = need.saturating_sub(span.charged.pages());
    if more > 0 {
        charge_growth(group, more)?;
    }
    // A callback run by the charge may have taken the slices (it ran in this thread).
    if slices > span.slices as usize {
        let mut owed = Owed::new();
        sg.lock_claim();
        let taken = sg.extend_span(span, slices, need, kept(group, need), &mut owed);
        sg.unlock_claim();
        owed.apply();
        let Some(covered) = taken else {
            memcg::charge::uncharge(group, more);
            return Err(NotResized::NoRoom);
        };
        // Pages of the group the new slices still held came with them, charged: those the
        // block covers were charged again above. (Other groups' pages it covers changed
        // hands under that charge.)
        let back = covered.min(more);
        if back > 0 {
            memcg::charge::uncharge(group, back);
            more -= back;
        }
    }
    span.charged.add(group, more);
    span.set_block_size(usable);
    Ok(())
}
