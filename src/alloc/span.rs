//! Spans: runs of 64 KiB slices of a segment holding blocks of one size class, the unit
//! charged to a group (mimalloc's "page"). A small-block span is one slice, charged
//! whole; a medium span (`class == MEDIUM`) holds one block above `SMALL_MAX`, charged
//! to the page (`block_size` bytes, a page multiple), in as many slices as it needs.
//!
//! Free-list sharding (mimalloc): a span has three free lists,
//! - `free`: blocks ready to hand out, popped by the owner on the fast path; the owner's
//!   frees go back on it first (last freed, first reused, as tcache and tcmalloc do), up
//!   to `HOT_BUDGET` frees per `collect`;
//! - `local_free`: the owner's frees past that budget, swapped with `free` when it runs
//!   dry (or on any `collect`: the two lists are never walked to be joined), so `free`
//!   runs dry and the slow path runs however the program alternates malloc and free;
//! - `thread_free`: blocks other threads freed, pushed with compare-and-swap and taken by
//!   the owner with one atomic operation. Its low bit is the `FULL` flag: the span sits
//!   on its heap's full list and the owner waits to be told of a remote free. The push
//!   that finds the flag clears it in the same compare-and-swap, so exactly one pusher
//!   learns it must mark the heap `full_dirty`, and the flag always belongs to the span
//!   as it is now. Its next two bits are the `UNCHECKED` and `SUSPECT` flags (below).
//!   Its top 16 bits count the blocks on the list (block addresses lie below 2^48, as
//!   every segment does, `segmap.rs`), so a remote push (a chain of blocks, `remote.rs`)
//!   is one locked instruction and the count is exact with the list.
//!
//! Taking remote frees without a walk: when `free` and `local_free` are both empty, the
//! owner's `collect` makes the list it takes from `thread_free` its `free` list as it is
//! (the pushers linked it as `free` links blocks), touching none of its blocks, as
//! snmalloc hands a batch of one slab to its free list whole. Walking it would wait for
//! each block's line in turn, still in the freeing thread's cache: the walk was a fifth
//! of a producer/consumer pipeline's time. Not while `local_free` holds blocks: one the
//! owner freed while another thread's free of it waited on a chain would then be on both
//! lists, where the walk meets it free (misuse.c `double-free-owner-while-remote-pending`).
//! Those blocks are *unchecked*: free, but their live bits still set. While any may be on
//! `free` the owner keeps `UNCHECKED` up:
//! - unchecked blocks are only ever on `free` (taken into an empty `free`, then popped),
//!   so an empty `free` holds none, and `collect`, `raise_full` lower the flag there;
//! - the owner's fast `free` leaves a span with the flag up to the checked path, which
//!   links onto `local_free` (so `free` runs dry), and looks for a block that looks
//!   free on `free` as well as on `thread_free`;
//! - a `collect` that cannot take its list whole (`free` not empty) first checks the
//!   blocks on `free` (clears their live bits) and lowers the flag;
//! - when the last block handed out comes back, every block is free: the slice's live
//!   bits are cleared at once (`freemap::clear_slice`) and the flag goes down.
//!
//! Double frees: the owner's free asks the segment's live map (`freemap.rs`), which
//! knows the blocks on `free` and `local_free` (but the unchecked ones, looked for on
//! `free`), and reads no block. Blocks on `thread_free` keep their live bit until
//! collected: links are stored XORed with the span's `key`, so a block whose first word
//! decodes to a link into its own span is suspected and checked in full
//! (`is_free_block`: the live map, `thread_free`, the unchecked blocks); a block handed
//! out has its first word cleared. The owner's fast path leaves a span with remote frees
//! pending to that check. A suspected block that is not found free (it waits on another
//! thread's chain, `remote.rs`, or was being popped) goes onto the freeing thread's
//! chain marked: its push raises `SUSPECT`, and from then on, until the span is
//! formatted again, every `collect` of the span checks unchecked blocks first and walks
//! what it takes: each block must be live in the map, and the list must hold exactly
//! its count, so a block pushed twice, or freed by its owner meanwhile, is fatal there.
//! A list taken whole must not count more blocks than are handed out. A free by another
//! thread of a block the map shows free (never handed out, or freed and checked) is
//! fatal at once (`free.rs`), since a list taken whole would not meet it. Two frees of
//! one block that race (neither sees the other's link) may both go unnoticed.
//!
//! `FULL` may stay up on a span that holds no live block and is on no heap list (a
//! medium span its owner freed, parked or cached): nothing reads it there, and the span
//! is formatted before it is used again.
//!
//! Fields written only by the owner thread (or, for an abandoned span, the thread holding
//! its segment's claim) are plain or relaxed atomics read by statistics; `thread_free`
//! is shared. The descriptor's second cache line (`types.rs`) holds what stays fixed
//! while the span is formatted, so other threads' frees read it without waiting for the
//! owner's writes to the first.
//!
//! A remote free changes the span only up to its successful push: until then its block
//! is live, so the span cannot be emptied, released or formatted again. From the push
//! on the owner may collect the block, empty the span and reuse the descriptor for
//! another class or a medium block; so the pusher counts the block and learns about
//! `FULL` in the push itself, and afterwards only reads (the heap to mark, the
//! segment's owner), where a stale answer costs a spurious scan.
//!
//! Invariants: `used` = blocks handed out and not yet returned to `free`/`local_free`
//! (blocks on `thread_free` still count; `remote_count` of them are there); with
//! `UNCHECKED` down no block on `free` or `local_free` has its live bit set, with it up
//! only blocks on `free` may;
//! `used ≤ reserved ≤ capacity`; blocks at index
//! `≥ reserved` were never handed out; the span holds exactly the charge its record
//! `charged` says (`charged.rs`), whatever its state: every slice of a small-block span,
//! the block of a medium one, while it has live blocks or is kept `CACHED` or `PARKED`;
//! none once `PURGED` or released.
//!
//! State protocol of an empty kept span (`CACHED` in a heap's cache, `PARKED` in its
//! `parked` slot): the owner makes a span `CACHED` or `PARKED` with a release store (a
//! span nobody else touches). A reclaimer takes it with a compare-and-swap to `PURGING`,
//! purges the memory and stores `PURGED` (release); the owner takes it back with
//! `claim`, a compare-and-swap to `ACTIVE` that waits out `PURGING`. A `PARKED` span the
//! owner may also take with plain stores, the reclaimer then confirming with a process
//! memory barrier that it did not (`medium.rs`). So the owner never reuses memory being
//! purged and a span is uncharged once.

use super::charged::Uncharge;
use super::freemap;
use super::types::{Block, Heap, List, Span, State, MEDIUM, SLICE_SHIFT, SLICE_SIZE};
use crate::memcg::origin::Origin;
use core::ptr;
use std::sync::atomic::{compiler_fence, Ordering};

use super::charged::NO_GROUP;

/// A block freed twice: fatal, with one line.
#[cold]
pub fn double_free() -> ! {
    crate::util::fatal::fatal(&[b"free(): double free detected"])
}

/// The low bit of `thread_free` (blocks are 16-byte aligned): the span is on its heap's
/// full list and a remote free must tell the owner.
pub const FULL: usize = 1;

/// A bit of `thread_free` the owner raises while blocks it took from `thread_free`
/// without a walk (*unchecked*: free, on `free`, their live bits still set) may be on
/// `free`; the module docs say when it is raised and lowered.
const UNCHECKED: usize = 2;

/// A bit of `thread_free` a push raises when its chain holds a block that looked free
/// to its freeing thread but was not found free (a suspected double free). It stays up
/// until the span is formatted again: every later `collect` walks and checks what it
/// takes.
const SUSPECT: usize = 4;

/// Where the count of blocks on `thread_free` starts: above every block address.
const COUNT_SHIFT: u32 = 48;
/// One block in the count of `thread_free`.
const ONE_BLOCK: usize = 1 << COUNT_SHIFT;
/// The head of the list in `thread_free` (blocks are 16-byte aligned: the low four bits
/// are flags).
const HEAD: usize = (ONE_BLOCK - 1) & !15;

/// Owner frees per `collect` that go straight back onto `free`: the block freed last is
/// handed out next, warm in the cache. Past the budget frees wait on `local_free`, so
/// `free` still runs dry and the slow path (remote frees, a group change another thread
/// asked for) runs at least once every `HOT_BUDGET` frees plus a span's blocks.
pub const HOT_BUDGET: u16 = 16384;

impl Span {
    /// The owner takes back an empty span of its own that may be `State::Cached` or `State::Parked`:
    /// afterwards no reclaimer touches it. Returns whether it was purged (uncharged,
    /// zeroed; its state stays `State::Purged`); otherwise it is `State::Active` and still holds its
    /// charge.
    pub fn claim(&self) -> bool {
        loop {
            let st = self.state.load(Ordering::Acquire);
            match st {
                State::Cached | State::Parked => {
                    if self
                        .state
                        .compare_exchange(st, State::Active, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return false;
                    }
                }
                State::Purging => core::hint::spin_loop(),
                // `State::Purged`, or a span taken off the cache earlier (`State::Active`).
                _ => return st == State::Purged,
            }
        }
    }

    /// The group of the span's blocks (the group its record names), or `NO_GROUP`.
    #[inline]
    pub fn group(&self) -> u32 {
        self.charged.group()
    }

    /// Takes the span's whole charge record: the uncharge owed, if it held one.
    pub fn take_charge(&self) -> Option<Uncharge> {
        self.charged.take(self.origin())
    }

    /// The span as the origin of an uncharge.
    pub fn origin(&self) -> Origin {
        Origin {
            what: if self.class() == MEDIUM {
                "medium span"
            } else {
                "small span"
            },
            state: self.state.load(Ordering::Relaxed).name(),
            addr: self.start as usize,
            recorded: (NO_GROUP, 0),
        }
    }

    pub fn bytes(&self) -> usize {
        (self.slices as usize) << SLICE_SHIFT
    }

    /// The size of the span's blocks.
    #[inline]
    pub fn block_size(&self) -> u32 {
        self.block_size.load(Ordering::Relaxed)
    }

    /// The heap holding the span (null for a free or abandoned span).
    #[inline]
    pub fn heap(&self) -> *mut Heap {
        self.heap.load(Ordering::Relaxed)
    }

    /// The span's size class (`MEDIUM` for a medium span).
    #[inline]
    pub fn class(&self) -> u8 {
        self.class.load(Ordering::Relaxed)
    }

    /// Sets the block size and the `magic` that divides by it (`magic` is a function of
    /// `block_size` alone, so an unchanged size costs no division).
    pub fn set_block_size(&mut self, size: usize) {
        if self.block_size() as usize == size && self.magic != 0 {
            return;
        }
        self.block_size.store(size as u32, Ordering::Relaxed);
        self.magic = (1u64 << 32).div_ceil(size as u64);
    }

    /// Makes the descriptor `Span::EMPTY`'s again (`State::Free`), but for its charge
    /// record, which is the holder's to take or hand on first (`charged.rs`). Field by
    /// field, its atomics with atomic stores: other threads' walks (statistics,
    /// reclaim, `account.rs`) read them meanwhile, which a copy of `Span::EMPTY` would
    /// race with. `state` goes first: a fork child (`fork.rs`) settles the descriptors a
    /// vanished thread left at any instruction, and must find either the span as it was
    /// or a `FREE` descriptor it skips, never a live state over cleared fields.
    pub fn reset(&mut self) {
        self.state.store(State::Free, Ordering::Relaxed);
        // Program order is what a fork child sees of this thread's stores.
        compiler_fence(Ordering::SeqCst);
        let Span {
            free,
            local_free,
            used,
            reserved,
            hot,
            list,
            is_direct,
            taking,
            thread_free,
            charged: _,
            prev,
            next,
            key,
            start,
            magic,
            heap,
            block_size,
            capacity,
            state: _,
            class,
            slices,
        } = self;
        *free = ptr::null_mut();
        *local_free = ptr::null_mut();
        used.store(0, Ordering::Relaxed);
        *reserved = 0;
        *hot = 0;
        *list = List::None;
        *is_direct = false;
        taking.store(false, Ordering::Relaxed);
        thread_free.store(0, Ordering::Relaxed);
        *prev = ptr::null_mut();
        *next = ptr::null_mut();
        *key = 0;
        *start = ptr::null_mut();
        *magic = 0;
        heap.store(ptr::null_mut(), Ordering::Relaxed);
        block_size.store(0, Ordering::Relaxed);
        *capacity = 0;
        class.store(0, Ordering::Relaxed);
        *slices = 0;
    }

    /// Formats a span its owner took (on no list) as an `State::Active` span of `heap` holding
    /// `capacity` blocks of `size` bytes of `class`, none handed out yet. Its charge
    /// record is left as it is.
    ///
    /// # Safety
    /// `self` is the descriptor of a span (its `start` and `slices` set) of a span segment
    /// in use that the calling thread owns or holds the claim of; `heap` is the live heap
    /// of that thread that will hold the span (the fast paths follow it).
    pub unsafe fn format(
        &mut self,
        class: u8,
        size: usize,
        capacity: u32,
        key: usize,
        heap: *mut Heap,
    ) {
        self.class.store(class, Ordering::Relaxed);
        self.set_block_size(size);
        self.capacity = capacity;
        self.reserved = 0;
        self.free = ptr::null_mut();
        self.local_free = ptr::null_mut();
        self.hot = HOT_BUDGET;
        self.thread_free.store(0, Ordering::Relaxed);
        self.used.store(0, Ordering::Relaxed);
        self.key = key;
        self.heap.store(heap, Ordering::Relaxed);
        self.state.store(State::Active, Ordering::Relaxed);
        if class != MEDIUM {
            // SAFETY: `start` is the first slice of the span, in a segment in use that the
            // caller owns (this function's contract).
            unsafe { freemap::set_slice_free(self.start as usize) };
        }
    }

    /// A link as stored in a block: `p` XORed with the span's key (`p` is not read).
    #[inline]
    pub fn encode(&self, p: *mut Block) -> usize {
        p as usize ^ self.key
    }

    #[inline]
    pub fn decode(&self, v: usize) -> *mut Block {
        (v ^ self.key) as *mut Block
    }

    /// Pops a block from `free`.
    #[inline]
    pub fn pop(&mut self) -> *mut u8 {
        let b = self.free;
        if b.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: `b` is a free block of this span: its first word holds an encoded link,
        // cleared on the way out so a live block never looks free to `looks_free`.
        unsafe {
            self.free = self.decode((*b).next);
            (*b).next = 0;
        }
        // SAFETY: `b` is a block of this span, in its segment (in use); the holder of the
        // span alone writes the live bits of its slices.
        unsafe { freemap::set_used(b as usize) };
        self.used
            .store(self.used.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        b.cast()
    }

    /// The owner frees `p` (a block of this span, not free).
    ///
    /// # Safety
    /// `p` is the start of a block of this span, handed out and not freed, which the caller
    /// gives up; the caller owns the span's segment (or holds the claim of it, abandoned).
    #[inline]
    pub unsafe fn push_local(&mut self, p: *mut u8) {
        // SAFETY: a block of this span, whose segment (in use) the caller owns.
        unsafe { freemap::set_free(p as usize) };
        if self.thread_free.load(Ordering::Relaxed) & UNCHECKED == 0 {
            // SAFETY: the block was live, so on no free list; it is marked free now.
            unsafe { self.link_local(p) };
            return;
        }
        // Unchecked blocks are on `free`: this one waits on `local_free`, so that `free`
        // runs dry and the flag goes down at the next `collect`.
        // SAFETY: as above.
        let used = unsafe { self.link_onto(p, false) };
        if used == 0 {
            // Every block is free: no live bit of the span's slice may stay set.
            // SAFETY: the span's slice, in a segment the caller owns (or holds).
            unsafe { freemap::clear_slice(self.start as usize) };
            self.thread_free.fetch_and(!UNCHECKED, Ordering::Relaxed);
        }
    }

    /// The owner frees `p` (a block of this span) unless the live map shows it free
    /// already: `None`, and nothing changed, for a block already free; else the blocks
    /// still handed out (`used`).
    ///
    /// # Safety
    /// `p` lies in the slice this descriptor describes, of a span segment in use that the
    /// calling thread owns. (A set live bit then makes `p` a live block of this span.)
    #[inline(always)]
    pub unsafe fn try_push_local(&mut self, p: *mut u8) -> Option<u32> {
        // SAFETY: `p` lies in a span segment in use that the caller owns.
        if !unsafe { freemap::try_set_free(p as usize) } {
            return None;
        }
        // SAFETY: its live bit was set: `p` is a block of this span handed out (on no free
        // list), which the caller gives up; it is marked free now.
        Some(unsafe { self.link_local(p) })
    }

    /// Links a block the owner freed onto `free` (reused next, while still in the cache)
    /// while the span's `hot` budget lasts, else onto `local_free`; returns `used`.
    ///
    /// # Safety
    /// `p` is the start of a block of this span that the caller gives up, on no free list
    /// and already marked free in the live map.
    #[inline(always)]
    unsafe fn link_local(&mut self, p: *mut u8) -> u32 {
        let hot = self.hot != 0;
        if hot {
            self.hot -= 1;
        }
        // SAFETY: this function's contract.
        unsafe { self.link_onto(p, hot) }
    }

    /// Links a block the owner freed onto `free` (`onto_free`) or `local_free`; returns
    /// `used`.
    ///
    /// # Safety
    /// As for `link_local`.
    #[inline(always)]
    unsafe fn link_onto(&mut self, p: *mut u8, onto_free: bool) -> u32 {
        let b = p as *mut Block;
        let head = if onto_free {
            &mut self.free
        } else {
            &mut self.local_free
        };
        let link = *head as usize ^ self.key;
        // SAFETY: `p` is a block of this span being freed: its memory is ours to reuse.
        unsafe { (*b).next = link };
        *head = b;
        let used = self.used.load(Ordering::Relaxed) - 1;
        self.used.store(used, Ordering::Relaxed);
        used
    }

    /// Whether no other thread's free waits on `thread_free`, no unchecked block is on
    /// `free` and no double free was suspected (only the `FULL` flag may be up).
    #[inline(always)]
    pub fn no_remote(&self) -> bool {
        self.thread_free.load(Ordering::Relaxed) <= FULL
    }

    /// The head of `thread_free` (flag and count removed).
    #[inline]
    fn remote_head(&self, order: Ordering) -> *mut Block {
        (self.thread_free.load(order) & HEAD) as *mut Block
    }

    /// The blocks on `thread_free`: freed by other threads, not yet collected.
    #[inline]
    pub fn remote_count(&self) -> u32 {
        (self.thread_free.load(Ordering::Relaxed) >> COUNT_SHIFT) as u32
    }

    /// Whether the `FULL` flag is up: no remote free came since the owner raised it.
    pub fn in_full(&self) -> bool {
        self.thread_free.load(Ordering::Acquire) & FULL != 0
    }

    /// The owner raises `FULL` on a span it just put on its full list (with no free
    /// block, so no unchecked one: `UNCHECKED` goes down); false, and nothing changed, if
    /// a remote free is pending (the span has blocks to collect).
    pub fn raise_full(&self) -> bool {
        let cur = self.thread_free.load(Ordering::Relaxed);
        cur & !(UNCHECKED | SUSPECT) == 0
            && self
                .thread_free
                .compare_exchange(
                    cur,
                    FULL | (cur & SUSPECT),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Raises `FULL` on a span just formatted, whose blocks are not handed out yet (so no
    /// other thread can push): a plain store, no locked instruction.
    pub fn raise_full_fresh(&self) {
        debug_assert!(self.no_remote());
        self.thread_free.store(FULL, Ordering::Relaxed);
    }

    /// The owner takes a span off its full list: lowers `FULL` (if a remote free has not).
    pub fn lower_full(&self) {
        if self.thread_free.load(Ordering::Relaxed) & FULL != 0 {
            self.thread_free.fetch_and(!FULL, Ordering::Relaxed);
        }
    }

    /// Another thread frees a chain of `n` blocks of this span, `head` to `tail`, linked
    /// as `thread_free` links them (`tail`'s link is set here): push it onto
    /// `thread_free`, raising `SUSPECT` if the chain holds a block suspected freed
    /// already (`suspect`). Returns true when the span was on its heap's full list and
    /// this push took the `FULL` flag down: the pusher must mark the heap `full_dirty`.
    /// After the push the span may be reused at once (module docs); the caller only reads
    /// it.
    ///
    /// # Safety
    /// The chain's blocks are blocks of this small-block span, handed out and not freed
    /// but by this chain (unless `suspect`), which the caller gives up; afterwards the
    /// caller writes nothing of the span.
    #[inline]
    pub unsafe fn push_remote(
        &self,
        head: *mut Block,
        tail: *mut Block,
        n: u32,
        suspect: bool,
    ) -> bool {
        let flags = if suspect { SUSPECT } else { 0 };
        let mut old = self.thread_free.load(Ordering::Relaxed);
        loop {
            // SAFETY: the chain's blocks are live blocks of this span that the caller
            // gives up.
            match unsafe { self.try_link(head, tail, n, flags, old) } {
                Ok(unfulled) => return unfulled,
                Err(h) => old = h,
            }
        }
    }

    /// `push_remote` for a span of one block (medium): the push succeeds only onto an
    /// empty `thread_free`, since a non-empty one already holds that block. `None`, and
    /// nothing pushed, for a block already freed by another thread: of two threads
    /// freeing the block at once, one gets `None`.
    ///
    /// # Safety
    /// `p` is the start of this medium span's block, handed out and not freed except by a
    /// free racing with this one; the caller gives it up and afterwards writes nothing of
    /// the span.
    pub unsafe fn push_remote_sole(&self, p: *mut u8) -> Option<bool> {
        let b = p as *mut Block;
        let mut old = self.thread_free.load(Ordering::Relaxed);
        loop {
            if old & !FULL != 0 {
                return None;
            }
            // SAFETY: `b` is the span's block, which the caller gives up; the list is
            // empty, so no other push has published it.
            match unsafe { self.try_link(b, b, 1, 0, old) } {
                Ok(unfulled) => return Some(unfulled),
                Err(h) => old = h,
            }
        }
    }

    /// One attempt of a push: links the chain `head`..`tail` of `n` blocks in front of
    /// `old`, the value of `thread_free` last read, and swaps it in with the count `n` up,
    /// `FULL` down and `flags` up. `Ok(whether FULL was up)`, or `Err(the current value)`
    /// when `thread_free` changed.
    ///
    /// # Safety
    /// The chain's blocks are blocks of this span that the caller gives up; no push has
    /// published them.
    #[inline(always)]
    unsafe fn try_link(
        &self,
        head: *mut Block,
        tail: *mut Block,
        n: u32,
        flags: usize,
        old: usize,
    ) -> Result<bool, usize> {
        // SAFETY: by the contract the block is ours to write until the exchange publishes
        // it (a racing second free of a sole block writes the same link).
        unsafe { (*tail).next = self.encode((old & HEAD) as *mut Block) };
        debug_assert!(head as usize & !HEAD == 0, "a block address above 2^48");
        let new = ((old & !(HEAD | FULL)) + n as usize * ONE_BLOCK + head as usize) | flags;
        // Sequentially consistent: the pusher then reads the segment's owner, which an
        // exiting owner clears before it collects (`remote.rs`, `after_push`).
        match self
            .thread_free
            .compare_exchange_weak(old, new, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => {
                // From here the span may be reused under us.
                crate::os::fault::published(head as usize);
                Ok(old & FULL != 0)
            }
            Err(h) => Err(h),
        }
    }

    /// Moves `thread_free` into `free`, and puts `local_free` (the blocks most recently
    /// freed here, warm in the cache) first: it becomes `free`, and a non-empty `free`
    /// waits on `local_free` (appending one list to the other would walk it). Returns
    /// blocks gained from other threads. Afterwards `free` is empty only if the span has
    /// no free block on any list.
    ///
    /// Into empty lists the blocks are taken without a walk (unchecked, module docs);
    /// otherwise, and after a suspected double free, each is checked as it is relinked.
    pub fn collect(&mut self) -> u32 {
        let mut gained = 0;
        let tf = self.thread_free.load(Ordering::Relaxed);
        if tf > FULL {
            if tf & UNCHECKED != 0 && !self.free.is_null() {
                // Unchecked blocks are on `free` alone: checked now, the flag goes down
                // with the take below.
                self.check_free();
            }
            let used = self.used.load(Ordering::Relaxed);
            let mut cur = tf;
            let (taken, unchecked) = loop {
                let count = (cur >> COUNT_SHIFT) as u32;
                let unchecked = count != 0
                    && cur & SUSPECT == 0
                    && self.free.is_null()
                    && self.local_free.is_null()
                    && self.class() != MEDIUM;
                // Taking every block left handed out leaves none unchecked.
                let flag = if unchecked && count < used {
                    UNCHECKED
                } else {
                    0
                };
                let new = (cur & (FULL | SUSPECT)) | flag;
                match self.thread_free.compare_exchange_weak(
                    cur,
                    new,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break (cur, unchecked),
                    Err(v) => cur = v,
                }
            };
            let count = (taken >> COUNT_SHIFT) as u32;
            let head = (taken & HEAD) as *mut Block;
            if unchecked {
                // More blocks pushed than handed out: one was pushed twice.
                if count > used {
                    double_free();
                }
                self.free = head;
                gained = count;
                if count == used {
                    // Every block is free: no live bit of the slice may stay set.
                    // SAFETY: the span's slice, in a segment the owner holds.
                    unsafe { freemap::clear_slice(self.start as usize) };
                }
            } else {
                gained = self.relink_checked(head, count);
            }
            self.used.store(used - gained, Ordering::Relaxed);
        }
        if !self.local_free.is_null() {
            core::mem::swap(&mut self.free, &mut self.local_free);
        }
        self.hot = HOT_BUDGET;
        gained
    }

    /// Moves the `count` blocks of the list at `head` (taken from `thread_free`) onto
    /// `free`, checking each: a block pushed twice (freed by two threads, or by its owner
    /// while another thread still held it, `remote.rs`) is met free (a medium span is in
    /// no map: its one block is pushed only onto an empty list), or the list runs past
    /// its count. Returns `count`.
    fn relink_checked(&mut self, head: *mut Block, count: u32) -> u32 {
        let mut gained = 0;
        let mut b = head;
        while !b.is_null() {
            let live = self.class() == MEDIUM
                // SAFETY: a block on `thread_free` is a block of this span, in its
                // segment (in use); the holder of the span alone writes the live
                // bits of its slices.
                || unsafe { freemap::try_set_free(b as usize) };
            if gained == count || !live {
                double_free();
            }
            // SAFETY: blocks on `thread_free` are free blocks of this span with links.
            let next = self.decode(unsafe { (*b).next });
            // SAFETY: as above; relinking a block we now own.
            unsafe { (*b).next = self.encode(self.free) };
            self.free = b;
            gained += 1;
            b = next;
        }
        if gained != count {
            double_free();
        }
        gained
    }

    /// Checks the unchecked blocks, which are all on `free` (module docs): clears their
    /// live bits. A bit found clear is not taken for a double free: in a fork child the
    /// span's owner may have vanished in the middle of this walk, or of the clearing of
    /// the whole slice in `push_local`. A list longer than the span's blocks (a block on
    /// it twice, in a loop) is. The caller then lowers `UNCHECKED`.
    fn check_free(&mut self) {
        let mut b = self.free;
        let mut steps = 0;
        while !b.is_null() {
            if steps == self.capacity {
                double_free();
            }
            // SAFETY: a block on `free` is a block of this span, in its segment (in use);
            // the holder of the span alone writes the live bits of its slices.
            unsafe { freemap::set_free(b as usize) };
            // SAFETY: a free block of this span, with a link.
            b = self.decode(unsafe { (*b).next });
            steps += 1;
        }
    }

    /// Carves up to `n` never-used blocks onto `free` (touching memory lazily).
    pub fn extend(&mut self, n: u32) -> u32 {
        let n = n.min(self.capacity - self.reserved);
        let size = self.block_size() as usize;
        for i in (0..n).rev() {
            // SAFETY: block `reserved + i` lies inside the span's mapped, owned memory.
            let b = unsafe { self.start.add((self.reserved + i) as usize * size) } as *mut Block;
            // SAFETY: as above; writing the link into a block nobody else knows.
            unsafe { (*b).next = self.encode(self.free) };
            self.free = b;
        }
        self.reserved += n;
        n
    }

    /// Whether `p` is the start of a block of this span (a multiply, no division).
    #[inline]
    pub fn is_block_start(&self, p: usize) -> bool {
        let off = p.wrapping_sub(self.start as usize) as u64;
        let index = off.wrapping_mul(self.magic) >> 32;
        off < (1 << 20) && index < self.capacity as u64 && index * self.block_size() as u64 == off
    }

    /// Whether the live map shows the block at `p` free (a medium span is in no map).
    ///
    /// # Safety
    /// `p` lies in this span's segment, which is in use.
    #[inline]
    pub unsafe fn mapped_free(&self, p: usize) -> bool {
        // SAFETY: `p` lies in a span segment in use (this function's contract).
        self.class() != MEDIUM && unsafe { freemap::is_free(p) }
    }

    /// Whether `p` (a block start of this span) is free: clear in the live map, on
    /// `thread_free`, or unchecked on `free`. Slow when either list is not empty: used
    /// only to confirm a suspected double free.
    ///
    /// # Safety
    /// `p` is the start of a block of this span, whose segment is in use.
    pub unsafe fn is_free_block(&self, p: usize) -> bool {
        debug_assert!(self.is_block_start(p));
        // SAFETY: `p` lies in this span's segment, in use.
        let mapped = unsafe { self.mapped_free(p) };
        mapped || self.on_thread_free(p) || self.on_unchecked(p)
    }

    /// The owner's (or claim holder's) full check of a block being freed: whether it is
    /// free already. A small block is free if the map says so or it is on `thread_free`
    /// or unchecked on `free` (and then has a link in its first word); a medium span is
    /// in no map.
    ///
    /// # Safety
    /// `p` is the start of a block of this span, whose segment is in use.
    pub unsafe fn owner_sees_free(&self, p: *mut u8) -> bool {
        // SAFETY: `p` is a block of this span, in its segment (in use).
        if unsafe { self.mapped_free(p as usize) } {
            return true;
        }
        let tf = self.thread_free.load(Ordering::Acquire);
        (self.class() == MEDIUM || tf & (HEAD | UNCHECKED) != 0)
            // SAFETY: as above.
            && unsafe { self.looks_free(p) }
            && (self.on_thread_free(p as usize) || self.on_unchecked(p as usize))
    }

    /// Whether `p` is on `thread_free`, by a walk. It may run in a thread other than the
    /// owner while the list changes under it: every link is checked to be a block of this
    /// span before it is followed, so the walk stays inside the span and ends. (`p` is
    /// only compared.)
    fn on_thread_free(&self, p: usize) -> bool {
        self.on_list(self.remote_head(Ordering::Acquire), p)
    }

    /// Whether `p` is an unchecked block (on `free` while `UNCHECKED` is up), by a walk
    /// of `free`, with `on_thread_free`'s care when another thread walks.
    fn on_unchecked(&self, p: usize) -> bool {
        if self.thread_free.load(Ordering::Acquire) & UNCHECKED == 0 {
            return false;
        }
        // SAFETY: a field of this live descriptor. Another thread reads it while the
        // owner may pop (a race, as `on_thread_free`'s reads of links the owner may
        // rewrite): a stale head at worst makes the walk miss `p`, and the free is then
        // only suspected; the walk stays inside the span (`on_list`).
        let head = unsafe { ptr::read_volatile(&self.free) };
        self.on_list(head, p)
    }

    /// Whether `p` is on the list starting at `head`, by a walk that checks each link is
    /// a block of this span before it follows it.
    fn on_list(&self, head: *mut Block, p: usize) -> bool {
        let mut b = head;
        let mut steps = 0;
        while !b.is_null() && steps <= self.capacity {
            if b as usize == p {
                return true;
            }
            if !self.is_block_start(b as usize) {
                return false;
            }
            // SAFETY: `b` is a block of this span (checked above), so readable.
            b = self.decode(unsafe { (*b).next });
            steps += 1;
        }
        false
    }

    /// The first word of a block being freed looks like a free-list link of this span:
    /// it decodes to null or into the span. A live block's first word does so with odds
    /// of about 2^-48 (it was cleared when handed out, and the key is random), and a hit
    /// is confirmed by `is_free_block`.
    ///
    /// # Safety
    /// `p` is the start of a block of this span, whose segment is in use.
    #[inline]
    pub unsafe fn looks_free(&self, p: *mut u8) -> bool {
        // SAFETY: by the contract `p` is a block of this span: its first word is readable.
        let next = self.decode(unsafe { (*(p as *mut Block)).next }) as usize;
        next == 0 || next.wrapping_sub(self.start as usize) < SLICE_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for a block: 16-byte aligned, as blocks are (the low bits of
    /// `thread_free` are flags).
    #[repr(C, align(16))]
    struct Aligned([usize; 4]);

    #[test]
    fn a_one_block_span_takes_one_remote_free() {
        let mut block = Aligned([0; 4]);
        let block = &mut block.0;
        let p = block.as_mut_ptr().cast::<u8>();
        let mut s = Span::EMPTY;
        s.key = 0x5a5a;
        // SAFETY: `p` is the test's aligned block standing for the span's one block; a
        // push only writes its first word.
        assert_eq!(unsafe { s.push_remote_sole(p) }, Some(false));
        assert_eq!(s.remote_head(Ordering::Relaxed), p.cast());
        assert_eq!(
            // SAFETY: as above.
            unsafe { s.push_remote_sole(p) },
            None,
            "a second free is refused"
        );
        assert_eq!(s.remote_count(), 1);
        assert_eq!(s.decode(block[0]), ptr::null_mut());
        s.thread_free.store(0, Ordering::Relaxed);
        assert!(s.raise_full());
        assert!(s.in_full());
        assert_eq!(
            // SAFETY: as above.
            unsafe { s.push_remote_sole(p) },
            Some(true),
            "the pusher unfulls the span"
        );
        assert!(!s.in_full(), "the push took the flag down");
        assert_eq!(
            s.thread_free.load(Ordering::Relaxed),
            ONE_BLOCK + p as usize
        );
        assert!(!s.raise_full(), "not raised over a pending remote free");
    }

    #[test]
    fn the_full_flag_goes_to_one_pusher() {
        let mut blocks = [
            Aligned([0; 4]),
            Aligned([0; 4]),
            Aligned([0; 4]),
            Aligned([0; 4]),
        ];
        let mut s = Span::EMPTY;
        s.key = 0x1234_5670;
        s.used.store(4, Ordering::Relaxed);
        assert!(s.raise_full());
        let ps: Vec<*mut u8> = blocks.iter_mut().map(|b| b.0.as_mut_ptr().cast()).collect();
        assert!(
            // SAFETY: the test's aligned blocks stand for blocks of the span; a push only
            // writes a block's first word.
            unsafe { s.push_remote(ps[0].cast(), ps[0].cast(), 1, false) },
            "the first push takes the flag"
        );
        // A chain of two, as `remote.rs` links it: the block freed last first.
        // SAFETY: as above.
        unsafe { (*(ps[2] as *mut Block)).next = s.encode(ps[1].cast()) };
        assert!(
            // SAFETY: as above.
            !unsafe { s.push_remote(ps[2].cast(), ps[1].cast(), 2, false) },
            "the second finds it down"
        );
        assert_eq!(s.remote_count(), 3);
        // The chain goes in front, its last block linked to the list it found.
        // SAFETY: as above; the blocks hold the links the pushes wrote.
        unsafe {
            assert_eq!(s.decode((*(ps[2] as *mut Block)).next), ps[1].cast());
            assert_eq!(s.decode((*(ps[1] as *mut Block)).next), ps[0].cast());
            assert!(s.decode((*(ps[0] as *mut Block)).next).is_null());
        }
        // The owner raises it again with the list non-empty: refused.
        assert!(!s.raise_full());
        assert!(!s.no_remote());
        s.thread_free.fetch_or(FULL, Ordering::Relaxed);
        s.lower_full();
        assert!(!s.in_full());
        assert_eq!(s.remote_head(Ordering::Relaxed), ps[2].cast());
        assert_eq!(s.remote_count(), 3);
        // Taken as `collect` takes it: the count goes with the list.
        s.thread_free.fetch_and(FULL, Ordering::Acquire);
        assert_eq!(s.remote_count(), 0);
        assert!(s.no_remote());
    }

    /// A chain of `blocks` as another thread links it (the block freed last first),
    /// pushed onto `s`'s `thread_free`.
    fn push_chain(s: &Span, blocks: &[*mut u8], suspect: bool) {
        let mut head: *mut Block = ptr::null_mut();
        for &p in blocks {
            // SAFETY: blocks of the test's span, handed out and given up here.
            unsafe { (*(p as *mut Block)).next = s.encode(head) };
            head = p.cast();
        }
        let tail = blocks[0].cast();
        // SAFETY: as above.
        unsafe { s.push_remote(head, tail, blocks.len() as u32, suspect) };
    }

    fn is_free(p: *mut u8) -> bool {
        // SAFETY: `p` lies in the test's segment, in use.
        unsafe { freemap::is_free(p as usize) }
    }

    /// Runs `f` on a small-block span of 64-byte blocks in slice 1 of a fresh segment,
    /// with `n` blocks handed out (given to `f`), then gives the segment back.
    fn with_span(n: usize, f: impl FnOnce(&mut Span, &[*mut u8])) {
        let seg = crate::alloc::types::Segment::create_spans().expect("a segment");
        // SAFETY: a fresh segment that this test alone holds.
        let s = unsafe { &mut (*seg).spans[1] };
        s.start = (seg as usize + SLICE_SIZE) as *mut u8;
        s.slices = 1;
        // SAFETY: the descriptor of slice 1 of the test's segment; the heap is never
        // followed here.
        unsafe {
            s.format(
                3,
                64,
                (SLICE_SIZE / 64) as u32,
                0x5eed_1235,
                ptr::null_mut(),
            )
        };
        s.extend(n as u32);
        let blocks: Vec<*mut u8> = (0..n).map(|_| s.pop()).collect();
        f(s, &blocks);
        // SAFETY: the test's segment, whose descriptors no span uses.
        unsafe { crate::alloc::types::Segment::destroy(seg) };
    }

    #[test]
    fn a_list_taken_into_empty_lists_is_taken_whole_then_checked() {
        with_span(8, |s, b| {
            push_chain(s, &b[..6], false);
            assert!(s.free.is_null() && s.local_free.is_null());
            assert_eq!(s.collect(), 6);
            // Taken whole: the list as pushed, its blocks unchecked (live bits still set).
            assert_eq!(s.free, b[5].cast());
            assert_eq!(s.used.load(Ordering::Relaxed), 2);
            assert_ne!(s.thread_free.load(Ordering::Relaxed) & UNCHECKED, 0);
            assert!(
                !s.no_remote(),
                "the owner's fast free leaves the span to the checks"
            );
            assert!(b[..6].iter().all(|&p| !is_free(p)));
            // SAFETY: block starts of the span, in the test's segment.
            unsafe {
                assert!(s.owner_sees_free(b[3]), "an unchecked block is seen free");
                assert!(s.is_free_block(b[0] as usize));
                assert!(!s.owner_sees_free(b[6]), "a live block is not");
            }
            assert_eq!(s.pop(), b[5]);
            // The owner's free waits on `local_free` while unchecked blocks are on `free`.
            // SAFETY: a live block of the span, given up.
            unsafe { s.push_local(b[6]) };
            assert_eq!(s.local_free, b[6].cast());
            assert!(is_free(b[6]));
            // A list that cannot be taken whole: the unchecked blocks are checked first.
            push_chain(s, &b[5..6], false);
            assert_eq!(s.collect(), 1);
            assert_eq!(
                s.thread_free.load(Ordering::Relaxed),
                0,
                "UNCHECKED is down"
            );
            assert!(
                b[..7].iter().all(|&p| is_free(p)),
                "every free block is clear"
            );
            assert_eq!(s.used.load(Ordering::Relaxed), 1);
        });
    }

    #[test]
    fn a_check_cut_short_is_taken_up_again() {
        // As a fork child finds a span whose owner vanished in the middle of
        // `check_free`: unchecked blocks on `free`, some with their bits cleared.
        with_span(8, |s, b| {
            push_chain(s, &b[..6], false);
            assert_eq!(s.collect(), 6);
            // SAFETY: a block of the test's span.
            unsafe { freemap::set_free(b[4] as usize) };
            push_chain(s, &b[6..7], false);
            assert_eq!(s.collect(), 1, "no double free is reported");
            assert_eq!(s.thread_free.load(Ordering::Relaxed), 0);
            assert!(b[..7].iter().all(|&p| is_free(p)));
        });
    }

    #[test]
    fn the_last_blocks_taken_whole_clear_the_slice() {
        with_span(8, |s, b| {
            push_chain(s, &b[..5], false);
            push_chain(s, &b[5..], false);
            assert_eq!(s.collect(), 8);
            assert_eq!(s.used.load(Ordering::Relaxed), 0);
            assert_eq!(
                s.thread_free.load(Ordering::Relaxed),
                0,
                "no block left unchecked"
            );
            assert!(b.iter().all(|&p| is_free(p)));
        });
    }

    #[test]
    fn a_suspected_push_makes_every_later_list_checked() {
        with_span(8, |s, b| {
            push_chain(s, &b[..2], true);
            assert_eq!(s.collect(), 2);
            assert!(is_free(b[0]) && is_free(b[1]), "walked and checked");
            assert_eq!(
                s.thread_free.load(Ordering::Relaxed),
                SUSPECT,
                "and it stays"
            );
            // Emptied lists do not bring back the unchecked take.
            while !s.pop().is_null() {}
            push_chain(s, &b[2..4], false);
            assert_eq!(s.collect(), 2);
            assert!(is_free(b[2]) && is_free(b[3]));
            assert!(s.raise_full(), "the flag does not stand for a pending free");
            assert_eq!(s.thread_free.load(Ordering::Relaxed), FULL | SUSPECT);
        });
    }

    #[test]
    fn block_start_by_multiplication() {
        for class in 0..crate::alloc::size_class::NR_CLASSES {
            let size = crate::alloc::size_class::size_of(class);
            let mut s = Span::EMPTY;
            s.start = 0x10_0000 as *mut u8;
            s.set_block_size(size);
            s.capacity = ((128 << 10) / size) as u32;
            let end = s.capacity as usize * size;
            for off in (0..end + 64).step_by(16) {
                let want = off % size == 0 && off < end;
                assert_eq!(
                    s.is_block_start(0x10_0000 + off),
                    want,
                    "size {size} off {off}"
                );
            }
            assert!(!s.is_block_start(0x10_0000 - 16));
        }
    }
}
