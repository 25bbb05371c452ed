//! Frees into spans this thread does not own: another live thread's (pushed onto the
//! span's `thread_free`, in chains; a retired state's alone, `free.rs`) or nobody's (the
//! owner's state was abandoned, `thread.rs`: freed under the segment's claim).
//!
//! A thread frees a block of another thread's small-block span by linking it onto a chain
//! of its own for that span (`Tld::pending`, `PENDING_CHAINS` chains, the slot chosen by
//! the span's address), linked as `thread_free` links blocks; a chain goes onto the
//! span's `thread_free` in one push when it holds `CHAIN_BYTES`, when a block of another
//! span needs its slot, and when the thread takes an allocation slow path, trims or
//! exits (`flush`). snmalloc batches its remote frees for the same reason: a remote free
//! is then a few plain stores, and the span's shared word sees one locked instruction
//! per chain instead of one per block. (A medium span holds one block: it is pushed at
//! once.)
//!
//! Invariants:
//! - a pending block counts in its span's `used`, as a block on `thread_free` does: its
//!   span is not emptied, released or formatted again while the block waits, and its
//!   pages stay charged to the span's group, as every block freed but not yet collected
//!   is (at most `PENDING_CHAINS × CHAIN_BYTES` per thread);
//! - a chain holds blocks of its span only, `count` of them, `bytes` in all, `head` the
//!   block freed last; an empty slot is `Chain::EMPTY` (all zero, as a fresh thread state
//!   is);
//! - a push moves the whole chain, taken out of its slot first, so a free that runs
//!   during the push (the settling of an abandoned span) finds the slot empty.
//!
//! Double frees: a remote free checks what it can without waiting on other threads (a
//! block free in the live map, or whose first word looks like a link of its span and
//! which is on `thread_free` or unchecked on `free`). A block that looks free and is not
//! found so (one free of it waits on a chain) goes onto the chain marked suspected
//! (`free_suspected`), and the chain's push makes the owner check every block it
//! collects from that span (`Span::collect`), which aborts on a block pushed twice or
//! already free. A block its owner frees while another thread's free of it waits on a
//! chain is met there only if the owner's lists still hold it when the chain arrives
//! (the owner takes a list unchecked only into empty free lists): not if it was handed
//! out again, nor if its span was emptied and formatted again meanwhile.

use super::abandoned;
use super::charged::Owed;
use super::heap;
use super::inflight::Pushing;
use super::span::double_free;
use super::types::{Block, Chain, Segment, Span, State, Tld, PENDING_CHAINS};
use std::sync::atomic::Ordering;

/// Bytes of blocks a chain collects before it is pushed.
const CHAIN_BYTES: u32 = 16 << 10;

/// The slot of `s`'s chain: span descriptors are 128 bytes apart, so neighbouring spans
/// of a segment take different slots.
#[inline]
fn slot_of(s: *mut Span) -> usize {
    (s as usize / core::mem::size_of::<Span>()) % PENDING_CHAINS
}

/// This thread frees `p`, a block of the small-block span `s` of another live thread:
/// links it onto this thread's chain for `s`, pushing chains as the module docs say.
///
/// # Safety
/// `t` is the calling thread's state; `p` is a live block of the small-block span `s` of
/// segment `seg` (checked not to be free), which the caller gives up.
#[inline(always)]
pub unsafe fn free(t: &mut Tld, seg: *mut Segment, s: *mut Span, p: *mut u8) {
    let c = &mut t.pending[slot_of(s)];
    if c.span != s {
        // SAFETY: this function's contract.
        return unsafe { start_chain(c, seg, s, p) };
    }
    // SAFETY: as for `link`, by this function's contract.
    unsafe { link(c, p) };
}

/// As `free`, for a block suspected freed already: its first word looks like a link of
/// its span, but it was not found on any free list. The chain's push raises the span's
/// `SUSPECT` flag, and from then on the owner checks every block it collects there.
///
/// # Safety
/// As for `free`, except that `p` may be free already.
#[cold]
pub unsafe fn free_suspected(t: &mut Tld, seg: *mut Segment, s: *mut Span, p: *mut u8) {
    let c = &mut t.pending[slot_of(s)];
    if c.span != s {
        // SAFETY: this function's contract.
        unsafe { open_chain(c, seg, s, p) };
    }
    c.suspect = true;
    // SAFETY: this function's contract.
    unsafe { link(c, p) };
}

/// Starts `s`'s chain in the slot `c` with `p`, pushing the chain that held the slot.
///
/// # Safety
/// As for `free`; `c` is the slot of `s` in the calling thread's state.
#[cold]
#[inline(never)]
unsafe fn start_chain(c: &mut Chain, seg: *mut Segment, s: *mut Span, p: *mut u8) {
    // SAFETY: this function's contract.
    unsafe { open_chain(c, seg, s, p) };
    // SAFETY: this function's contract.
    unsafe { link(c, p) };
}

/// Pushes the chain that holds the slot `c` (if any) and makes the slot `s`'s empty
/// chain, of which `p`, to be linked next, is the tail.
///
/// # Safety
/// As for `start_chain`.
unsafe fn open_chain(c: &mut Chain, seg: *mut Segment, s: *mut Span, p: *mut u8) {
    if !c.span.is_null() {
        // SAFETY: a chain of this thread (module invariants).
        unsafe { push(take(c)) };
    }
    *c = Chain {
        span: s,
        seg,
        tail: p.cast(),
        ..Chain::EMPTY
    };
}

/// Links `p` onto the chain `c`, pushing the chain once it holds `CHAIN_BYTES`.
///
/// # Safety
/// `c` is a chain of the calling thread, of the span of the live block `p`, which the
/// caller gives up (checked not to be free).
#[inline(always)]
unsafe fn link(c: &mut Chain, p: *mut u8) {
    // SAFETY: the span of the live block `p`, which stays formatted while the chain
    // holds a block of it (module invariants).
    let span = unsafe { &*c.span };
    let b = p as *mut Block;
    // SAFETY: `p` is ours to write: the caller gives it up.
    unsafe { (*b).next = span.encode(c.head) };
    c.head = b;
    c.count += 1;
    c.bytes += span.block_size();
    if c.bytes >= CHAIN_BYTES {
        // SAFETY: a chain of this thread.
        unsafe { push_full(c) };
    }
}

/// Pushes the full chain `c`, emptying its slot.
///
/// # Safety
/// `c` is a chain of the calling thread.
#[cold]
#[inline(never)]
unsafe fn push_full(c: &mut Chain) {
    // SAFETY: this function's contract.
    unsafe { push(take(c)) };
}

/// Pushes every chain this thread holds.
pub fn flush(t: &mut Tld) {
    for i in 0..PENDING_CHAINS {
        if !t.pending[i].span.is_null() {
            // SAFETY: a chain of this thread, taken out of its slot.
            unsafe { push(take(&mut t.pending[i])) };
        }
    }
}

/// Takes a chain out of its slot, leaving the slot empty.
fn take(c: &mut Chain) -> Chain {
    core::mem::replace(c, Chain::EMPTY)
}

/// Pushes the chain `c` onto its span's `thread_free`: tells the owner if that took the
/// span off its full list, and settles the span if its owner has exited.
///
/// # Safety
/// `c` is a chain a thread built for a span it did not own when it freed the chain's
/// blocks, taken out of its slot.
pub unsafe fn push(c: Chain) {
    // SAFETY: the span stays formatted while the chain's blocks are live (module
    // invariants).
    let span = unsafe { &*c.span };
    let pushing = Pushing::start();
    // SAFETY: the chain's blocks, live blocks of this span that the caller gives up;
    // only reads of the span follow.
    let unfulled = unsafe { span.push_remote(c.head, c.tail, c.count, c.suspect) };
    // SAFETY: the segment of a span we have just pushed blocks onto, counted.
    unsafe { after_push(c.seg, c.span, unfulled, pushing) };
}

/// After a push onto `s`'s `thread_free` (of segment `seg`), counted by `pushing`: marks
/// the owner's heap if the push took the span off its full list, and settles the span if
/// its owner is gone.
///
/// # Safety
/// The caller has just pushed blocks onto `s`'s `thread_free`, counted by `pushing`
/// since before the push, and writes nothing of the span since.
pub unsafe fn after_push(seg: *mut Segment, s: *mut Span, unfulled: bool, pushing: Pushing) {
    // From the push on the owner may collect the block and reuse the span: only reads
    // follow. `span.heap` is the heap whose full list held the span unless the owner has
    // collected the span since (or it was abandoned: null); a heap marked then is scanned
    // for nothing.
    // SAFETY: descriptors stay mapped with their segment, which stays mapped while the
    // push is counted (an emptied span segment is cached, and `malloc_trim` waits for
    // counted pushes before it unmaps cached segments, `inflight.rs`).
    let heap = unsafe { (*s).heap() };
    if unfulled && !heap.is_null() {
        // SAFETY: heaps live in never-unmapped pool memory; on a recycled heap the flag
        // only causes a spurious scan.
        unsafe { (*heap).full_dirty.store(true, Ordering::Release) };
    }
    // SAFETY: as above.
    if unsafe { (*seg).tld.load(Ordering::SeqCst) }.is_null() {
        // SAFETY: `s` is a span of `seg`, on which we have just pushed, counted.
        let _ = unsafe { free_abandoned(seg, s, Freeing::Pushed(pushing)) };
    }
}

/// What a thread brings to a span of an abandoned segment (`free_abandoned`).
pub enum Freeing {
    /// A live block of the span, to free.
    Block(*mut u8),
    /// Blocks it has just pushed onto the span's `thread_free`, the push still counted.
    Pushed(Pushing),
}

/// What `free_abandoned` did with a block it was given.
#[must_use]
pub enum Abandoned {
    Done,
    /// The segment was adopted meanwhile: the block is still live, to be freed again.
    Adopted,
}

/// Frees a block into a span of an abandoned segment, or settles the blocks just pushed
/// there, under the segment's claim; releases the span if that emptied it.
///
/// # Safety
/// `s` is the descriptor of a span of span segment `seg`; `what` is a live block of `s`
/// that the caller frees, or a push the caller has just made onto `s`'s `thread_free`,
/// still counted.
#[cold]
pub unsafe fn free_abandoned(seg: *mut Segment, s: *mut Span, what: Freeing) -> Abandoned {
    let _errno = crate::os::ErrnoGuard::new();
    let p = match what {
        Freeing::Block(p) => Some(p),
        Freeing::Pushed(_) => None,
    };
    // SAFETY: the segment is live while one of its blocks is (ours, `p`, or one pushed
    // on `thread_free`, which only the claim holder can retire), and mapped while the
    // push is counted.
    let sg = unsafe { &mut *seg };
    sg.lock_claim();
    if !sg.tld.load(Ordering::Relaxed).is_null() {
        // Adopted while we waited: the new owner collects what was pushed; a block not
        // yet freed is freed again, to its new owner.
        sg.unlock_claim();
        return if p.is_some() {
            Abandoned::Adopted
        } else {
            Abandoned::Done
        };
    }
    // SAFETY: the claim gives us the span.
    let span = unsafe { &mut *s };
    let mut destroyed = false;
    let mut owed = Owed::new();
    // Anything but `ABANDONED` means there is nothing left to do: the exiting owner
    // collected our block and released the span (or the whole segment, which may since
    // have been reused).
    if span.state.load(Ordering::Relaxed) == State::Abandoned {
        span.collect();
        if let Some(p) = p {
            // SAFETY: a block start of `span` in a segment in use, whose claim we hold.
            if unsafe { span.owner_sees_free(p) } {
                sg.unlock_claim();
                double_free();
            }
            // SAFETY: a live block of `span` (checked just above), under the segment's
            // claim, which the caller gives up.
            unsafe { span.push_local(p) };
        }
        if span.used.load(Ordering::Relaxed) == 0 {
            let now = crate::os::coarse_now_ns();
            // SAFETY: an empty span of a segment we hold the claim of.
            destroyed = unsafe { heap::release_span(seg, s, now, &mut owed) };
            if !destroyed {
                abandoned::note_dirty(sg.purge_at);
            }
        }
    }
    if destroyed {
        // SAFETY: an abandoned segment (listed while its owner is gone), whose claim we
        // hold.
        unsafe { abandoned::unlink(seg) };
        // SAFETY: its last span released, unlisted, under our claim: used no more.
        unsafe { Segment::destroy(seg) };
    } else {
        sg.unlock_claim();
    }
    if let Freeing::Pushed(pushing) = what {
        // Done with the segment: the push is no longer counted before the program's code
        // (an uncharge's callbacks) may run.
        pushing.done();
    }
    owed.apply();
    Abandoned::Done
}
