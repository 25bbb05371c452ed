//! Freeing a block: whoever frees it, the block returns to its span, and the span's group
//! is credited when the span is released (owner-correct accounting, I7).
//!
//! Three cases, by the owner of the block's segment:
//! - this thread: push on the span's `free` (or `local_free` past its budget, or while
//!   the span holds unchecked blocks, `span.rs`; no atomics);
//! - another live thread, or a retired state (its thread exited, kept for the next,
//!   `retired.rs`): linked onto this thread's chain for the span, which goes onto the
//!   span's `thread_free` in one push (`remote.rs`); a medium block, or a block of a
//!   retired state, is pushed at once (a young thread first takes a retired state of its
//!   group over, or of any group if it has no state yet, `thread::swap_to_retired`, and
//!   frees the block as its own). If the span
//!   sat on its heap's full list (the push took its `FULL` flag down), the heap is
//!   marked so the owner takes it back. Once pushed, the block may be collected and the
//!   span reused at once: the freeing thread writes nothing of the span after its push
//!   (`span.rs`). Its pages stay charged until the owner collects the span and keeps or
//!   releases it, as for its own frees (a medium block's span too: its pages are
//!   resident until then);
//! - nobody (the owner's state was abandoned, `thread.rs`): under the segment's claim, free locally and release the
//!   span when it empties. A remote free that races with the owner's exit checks the
//!   owner again after its push (both sides sequentially consistent), and settles the
//!   span itself if the owner is gone (`remote.rs`). A thread adopting the segment holds
//!   the claim while it takes the spans over, so a free that finds an owner under the
//!   claim frees again as a remote or local free.
//!
//! `free` takes the owner's common case inline, `free_not_owned` the common case of a
//! block of another live thread's span (the checks `free_general` makes of it, in a few
//! loads of lines other threads only read), and `free_general` every case, with every
//! misuse check.
//!
//! `errno` is preserved: only the slow paths make system calls, and they restore it.
//!
//! A medium block freed by its owner is neither read nor linked: its span (one block) is
//! parked or cached as it is (`medium.rs`), and a later free of it finds the span
//! `PARKED`, `CACHED`, `PURGING` or `PURGED`, which is a double free.
//!
//! Misuse is fatal with one line: a pointer outside cgmalloc's segments, into a header or
//! free slices, not at a block start, or a block already free (a block freed again while
//! another thread's free of it waits on a chain or on `thread_free` is found when its
//! owner collects it, `Span::collect`; two frees of one block that race may both pass).

use super::charged::NO_GROUP;
use super::inflight::Pushing;
use super::remote;
use super::segmap;
use super::span::double_free;
use super::thread;
use super::tld;
use super::tls;
use super::types::{
    List, Segment, Span, State, KIND_LARGE, KIND_SPANS, MEDIUM, SEG_SIZE, SLICE_SHIFT,
};
use crate::consts::PAGE_SIZE;
use crate::memcg;
use crate::util::fatal::fatal;
use std::sync::atomic::Ordering;

/// The entry point a misused pointer was given to, for the fatal line.
#[derive(Clone, Copy)]
pub enum Caller {
    Free,
    Realloc,
    UsableSize,
}

impl Caller {
    fn name(self) -> &'static [u8] {
        match self {
            Caller::Free => b"free(): ",
            Caller::Realloc => b"realloc(): ",
            Caller::UsableSize => b"malloc_usable_size(): ",
        }
    }
}

#[cold]
fn foreign(caller: Caller) -> ! {
    fatal(&[
        caller.name(),
        b"invalid pointer (not allocated by cgmalloc)",
    ])
}

#[cold]
fn interior(caller: Caller) -> ! {
    fatal(&[
        caller.name(),
        b"invalid pointer (inside a block, not its start)",
    ])
}

/// A block found already freed: a double free, or (for `realloc` and
/// `malloc_usable_size`) a use after free.
#[cold]
fn freed(caller: Caller) -> ! {
    match caller {
        Caller::Free => double_free(),
        _ => fatal(&[caller.name(), b"invalid pointer (block already freed)"]),
    }
}

/// The segment and span of a live small block, or the segment of a large one; fatal for
/// anything else.
///
/// # Safety
/// `p` is a block this allocator handed out and not yet freed. (Pointers outside every
/// segment, into headers or free slices, inside blocks, and most freed blocks are
/// caught, fatally; a block freed by another thread at the same time is not.)
#[inline]
pub unsafe fn locate(p: *mut u8, caller: Caller) -> (*mut Segment, Option<*mut Span>) {
    // SAFETY: a segment holding the live block `p` is not released meanwhile.
    let Some(seg) = (unsafe { Segment::of(p) }) else {
        foreign(caller)
    };
    // SAFETY: `Segment::of` only returns mapped segments with a valid header.
    let sg = unsafe { &mut *seg };
    if sg.kind.load(Ordering::Relaxed) == KIND_LARGE {
        if p != sg.large.data {
            interior(caller);
        }
        // A cached (or purged) mapping's block was freed.
        if sg.large.state.load(Ordering::Relaxed) != State::Active {
            freed(caller);
        }
        return (seg, None);
    }
    let Some(s) = sg.span_of(p) else {
        foreign(caller)
    };
    if !s.is_block_start(p as usize) {
        interior(caller);
    }
    // A small block the live map shows free, or whose first word is a link of its
    // span and which is found on a free list (on `thread_free`, or unchecked on `free`,
    // its live bit still set). `free` makes these checks itself.
    if !matches!(caller, Caller::Free) {
        // SAFETY: `p` is a block start of `s`, whose segment is in use.
        let free = unsafe {
            s.mapped_free(p as usize) || (s.looks_free(p) && s.is_free_block(p as usize))
        };
        if free {
            freed(caller);
        }
    }
    // A medium span kept empty: its one block was freed (and is on no free list).
    if s.class() == MEDIUM
        && matches!(
            s.state.load(Ordering::Relaxed),
            State::Cached | State::Parked | State::Purging | State::Purged
        )
    {
        freed(caller);
    }
    (seg, Some(s as *mut Span))
}

/// Frees `p` (not null). The common case (a small block of a span this thread owns,
/// not already free) is handled inline; everything else goes to `free_general`.
///
/// # Safety
/// `p` is null or a block this allocator handed out and not yet freed (null is fatal
/// here, as an invalid pointer).
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    let a = p as usize;
    if segmap::get(a) != segmap::HERE {
        // SAFETY: this function's contract.
        return unsafe { free_general(p) };
    }
    let base = a & !(SEG_SIZE - 1);
    // SAFETY: the segment map names this region as a segment in use: its header is
    // mapped and valid.
    let sg = unsafe { &mut *(base as *mut Segment) };
    // Only span segments have an owner (a large mapping's `owner` stays 0).
    let owner = sg.owner.load(Ordering::Relaxed);
    if owner != tls::thread_id() {
        // SAFETY: this function's contract; `sg` is `p`'s segment.
        return unsafe { free_not_owned(p, sg, owner) };
    }
    let span = &mut sg.spans[(a & (SEG_SIZE - 1)) >> SLICE_SHIFT];
    // A set bit in the live map is the start of a small block handed out, of an
    // `ACTIVE` span of this slice (`freemap.rs`), which this clears: anything else (an
    // interior pointer, a block already free, a medium block) goes to `free_general`.
    // Blocks on `thread_free`, and unchecked ones, are still in the map: with any
    // there (or a suspected double free, `span.rs`), `free_general` checks the block.
    if !span.no_remote() {
        // SAFETY: this function's contract.
        return unsafe { free_general(p) };
    }
    // SAFETY: `p` lies in the slice `span` describes, of a span segment in use (the map
    // says so) that this thread owns (it holds our id).
    let Some(used) = (unsafe { span.try_push_local(p) }) else {
        // SAFETY: this function's contract; nothing changed.
        return unsafe { free_general(p) };
    };
    if span.list == List::Full || (used == 0 && !span.is_direct) {
        // SAFETY: `span` held the live block `p` in a segment we own: it is a span of one
        // of our heaps.
        unsafe { free_local_slow(span) };
    }
}

/// Frees `p` (not null), a block of segment `sg`, which this thread does not own (`owner`
/// is the segment's owner id as `free` read it). The common case, a small block of another
/// live thread's `ACTIVE` span, not free, is linked onto this thread's chain for the span
/// after the checks `free_general` makes of it; everything else goes to `free_general`.
///
/// # Safety
/// As for `free`; `sg` is the segment holding `p` (a span segment or a large mapping, in
/// use).
#[inline(never)]
unsafe fn free_not_owned(p: *mut u8, sg: &Segment, owner: usize) {
    let me = tld::current();
    // A retired state's segments carry its address as owner (`retired.rs`): its
    // blocks are pushed alone (`free_general`), not chained.
    if owner == 0
        || me.is_null()
        || sg.kind.load(Ordering::Relaxed) != KIND_SPANS
        || owner == sg.tld.load(Ordering::Relaxed) as usize
    {
        // SAFETY: this function's contract.
        return unsafe { free_general(p) };
    }
    let a = p as usize;
    let slice = (a & (SEG_SIZE - 1)) >> SLICE_SHIFT;
    // Slice 0 is the header.
    if slice == 0 {
        // SAFETY: this function's contract.
        return unsafe { free_general(p) };
    }
    let mut s = &sg.spans[slice];
    let mut state = s.state.load(Ordering::Relaxed);
    if state == State::Interior {
        s = &sg.spans[(s.start as usize & (SEG_SIZE - 1)) >> SLICE_SHIFT];
        state = s.state.load(Ordering::Relaxed);
    }
    // The checks of `locate` and `free_general` for a small block: a block start of an
    // `ACTIVE` span, live in the map (a block free there, or never handed out, is a
    // double free: the owner may take its list unchecked, `span.rs`), not looking free
    // (`free_general` tells a double free from a block whose first word only looks like
    // a link).
    if state != State::Active
        || s.class() == MEDIUM
        || !s.is_block_start(a)
        // SAFETY: `p` is a block start of `s` (just checked), whose segment is in use.
        || unsafe { s.mapped_free(a) || s.looks_free(p) }
    {
        // SAFETY: this function's contract.
        return unsafe { free_general(p) };
    }
    let seg = sg as *const Segment as *mut Segment;
    let s = s as *const Span as *mut Span;
    // SAFETY: `me` is this thread's state; `p` a live block (checked above) of the
    // small-block span `s` of `seg`, owned by another thread, which the caller gives up.
    unsafe { remote::free(&mut *me, seg, s, p) };
}

/// Frees `p` (not null): any case, with every misuse check.
///
/// # Safety
/// As for `free`.
#[cold]
#[inline(never)]
unsafe fn free_general(p: *mut u8) {
    // SAFETY: this function's contract.
    let (seg, s) = unsafe { locate(p, Caller::Free) };
    let Some(s) = s else {
        let _errno = crate::os::ErrnoGuard::new();
        // SAFETY: the mapping of the live large block `p`, which the caller frees.
        unsafe { super::large::free(seg) };
        return;
    };
    // SAFETY: `seg` and `s` are the live segment and span of the block being freed.
    let (sg, span) = unsafe { (&*seg, &mut *s) };
    let owner = sg.tld.load(Ordering::Relaxed);
    let me = tld::current();
    if owner == me && !me.is_null() {
        if span.class() == MEDIUM
            && span.state.load(Ordering::Relaxed) == State::Active
            && span.no_remote()
        {
            // The span's one block, live (`locate` checked it is the block's start, and
            // a freed one's span is not `ACTIVE`, or has it on `thread_free`).
            // SAFETY: a medium span of our segment, so of one of our heaps, `ACTIVE`, with
            // its block live, which the caller frees.
            unsafe { free_medium_owned(span) };
            return;
        }
        // SAFETY: `p` is a block start of `span` (`locate`), in our segment.
        if unsafe { span.owner_sees_free(p) } {
            double_free();
        }
        // SAFETY: a live block of `span` (checked just above) in a segment we own, which
        // the caller gives up.
        unsafe { span.push_local(p) };
        if span.list == List::Full || (span.used.load(Ordering::Relaxed) == 0 && !span.is_direct) {
            // SAFETY: a span of our segment, so of one of our heaps.
            unsafe { free_local_slow(span) };
        }
    } else if owner.is_null() {
        let block = remote::Freeing::Block(p);
        // SAFETY: the segment and span of the live block `p`, which the caller frees.
        if let remote::Abandoned::Adopted = unsafe { remote::free_abandoned(seg, s, block) } {
            // SAFETY: `p` is still a live block, not freed yet.
            unsafe { free_general(p) };
        }
    } else {
        // A block free in the live map (or never handed out), or that looks free and is
        // found free, is a double free; one that looks free and is not found is
        // suspected (`Span::collect` checks what it collects there from then on).
        // SAFETY: `p` is a block start of `span` (`locate`), whose segment is in use.
        let suspect = unsafe { span.looks_free(p) };
        // SAFETY: as above.
        if unsafe { span.mapped_free(p as usize) || (suspect && span.is_free_block(p as usize)) } {
            double_free();
        }
        // Into a retired state's span (`retired.rs`), the block goes alone, at once:
        // chained, it would wait on this thread for the state's next owner, or its
        // expiry, and a reclaim (which pushes no chain) would not see its span empty.
        let retired = sg.owner.load(Ordering::Relaxed) == owner as usize;
        if retired && thread::swap_to_retired(owner) {
            // The block's state is this thread's now.
            // SAFETY: this function's contract; nothing changed.
            return unsafe { free_general(p) };
        }
        // A thread that frees before it ever allocated gets its state here (not for a
        // retired state's block, nor past the thread's exit or in the middle of a swap
        // of its state: the block goes alone).
        let me = if me.is_null() && span.class() != MEDIUM && !retired && !tls::keeps_no_state() {
            thread::setup_state()
        } else {
            me
        };
        if span.class() != MEDIUM && !me.is_null() && !retired {
            // SAFETY: `me` is this thread's state; `p` a live block (checked above) of the
            // small-block span `s` of `seg`, owned by another thread, which the caller
            // gives up.
            unsafe {
                if suspect {
                    remote::free_suspected(&mut *me, seg, s, p);
                } else {
                    remote::free(&mut *me, seg, s, p);
                }
            }
            return;
        }
        if span.class() == MEDIUM {
            // SAFETY: the span's block, live, which the caller frees; not pushed yet.
            unsafe { remote_medium_release(span, p) };
        }
        let pushing = Pushing::start();
        let unfulled = if span.class() == MEDIUM {
            // Two threads freeing the block at once may both pass the check above: one
            // push wins, the other is the double free.
            // SAFETY: the span's block, handed out and (but for a racing free) live,
            // which the caller gives up; only reads of the span follow.
            match unsafe { span.push_remote_sole(p) } {
                Some(u) => u,
                None => double_free(),
            }
        } else {
            // A retired owner, or out of memory for a thread state: the block goes
            // alone.
            // SAFETY: a live block of this small-block span (checked above), which the
            // caller gives up; only reads of the span follow.
            unsafe { span.push_remote(p.cast(), p.cast(), 1, suspect) }
        };
        // SAFETY: we have just pushed onto `s`, of `seg`, counted by `pushing`, and write
        // nothing of it since.
        unsafe { remote::after_push(seg, s, unfulled, pushing) };
    }
}

/// Another thread frees the block `p` of medium span `span`: with the group near its
/// limit (or destroyed), the span's pages past the one the push links through go back to
/// the OS now, and their charge with them; only the owner could give them back later,
/// and a reclaim callback freeing a cache built by another thread must free memory.
/// Otherwise they stay charged (free pages) until the owner collects the span.
///
/// # Safety
/// `p` is the live block of `span` (at its start), which the caller frees and has not
/// pushed yet: no one else touches the block's pages meanwhile.
#[cold]
unsafe fn remote_medium_release(span: &Span, p: *mut u8) {
    let group = span.group();
    if group == NO_GROUP
        || !(memcg::charge::keeps_no_free_pages(group) || memcg::charge::under_pressure(group))
    {
        return;
    }
    let _errno = crate::os::ErrnoGuard::new();
    let start = span.start as usize;
    let kept_end = start + PAGE_SIZE;
    let end = start + span.bytes();
    debug_assert_eq!(p as usize, start);
    // SAFETY: the block's pages past its first, which the caller gives up (this
    // function's contract); the push writes only the first.
    unsafe { crate::os::mem::purge(kept_end as *mut u8, end - kept_end) };
    // Part of the run: it goes on with the first page.
    if let Some(u) = span.charged.trim_to(1, span.origin()) {
        u.apply_plain();
    }
}

/// The owner frees the live block of its medium span (`Heap::free_medium_owned`).
///
/// # Safety
/// `span` is a medium span of a heap of the calling thread, `ACTIVE`, nothing on
/// `thread_free`, whose live block the caller frees.
#[inline(never)]
unsafe fn free_medium_owned(span: &mut Span) {
    // SAFETY: the owner's span has its owner's heap.
    let heap = unsafe { &mut *span.heap() };
    // SAFETY: a medium span of that heap, as this function's contract says.
    unsafe { heap.free_medium_owned(span) };
}

/// The owner freed a block of `span`, which sat on the full list or is now empty: its
/// heap takes it off the full list, and caches or releases it if empty.
///
/// # Safety
/// `span` is a span of a heap of the calling thread (`heap.rs` module docs), into which
/// the caller has just freed a block.
#[cold]
unsafe fn free_local_slow(span: &mut Span) {
    let h = span.heap();
    // SAFETY: the owner's span has its owner's heap.
    let heap = unsafe { &mut *h };
    if span.class() == MEDIUM {
        // Saves `errno` itself where it may make system calls.
        // SAFETY: a medium span of that heap whose block was just freed.
        unsafe { heap.free_medium(span) };
        return;
    }
    let _errno = crate::os::ErrnoGuard::new();
    if span.list == List::Full {
        // SAFETY: a small-block span of that heap.
        unsafe { heap.unfull(span) };
    }
    if span.used.load(Ordering::Relaxed) == 0 {
        // SAFETY: an empty small-block span of that heap, on its class queue.
        unsafe { heap.span_emptied(span) };
    }
}

/// Usable bytes of the live block `p`.
///
/// # Safety
/// `p` is a block this allocator handed out and not yet freed.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    // SAFETY: this function's contract.
    match unsafe { locate(p, Caller::UsableSize) } {
        // SAFETY: the mapping of the live large block `p`.
        (seg, None) => unsafe { super::large::usable_size(seg) },
        // SAFETY: `locate` returned the live span of `p`.
        (_, Some(s)) => unsafe { (*s).block_size() as usize },
    }
}
