//! The allocator's shared structures, in one place (as mimalloc's `types.h`): the
//! segment geometry, segments, spans and their states, heaps, thread states and large
//! mappings' headers. Behaviour lives in the module named for each structure
//! (`segment.rs`, `span.rs`, `heap.rs`, `tld.rs`, `large.rs`, `harvest.rs`,
//! `freemap.rs`); those modules import these types rather than each other, so the
//! allocator's files form layers (DESIGN.md, "Layers"). The invariants of each structure
//! are stated in its module. A field that only its structure's module may touch is
//! `pub(super)`; the others are read or written across the allocator, under the rules
//! that module states.

use super::charged::{Charged, NO_GROUP};
use super::size_class::{NR_CLASSES, SLOTS};
use crate::memcg::origin::Origin;
use core::ptr;
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

// ---- Segment geometry -------------------------------------------------------------

/// A segment is 4 MiB, aligned to its size, of 64 slices of 64 KiB.
pub const SEG_SHIFT: usize = 22;
pub const SEG_SIZE: usize = 1 << SEG_SHIFT;
pub const SLICE_SHIFT: usize = 16;
pub const SLICE_SIZE: usize = 1 << SLICE_SHIFT;
pub const SLICES: usize = SEG_SIZE / SLICE_SIZE;
/// Pages in a slice.
pub const SLICE_PAGES: u64 = (SLICE_SIZE >> crate::consts::PAGE_SHIFT) as u64;

/// A segment's `kind`: spans, or one large mapping.
pub const KIND_SPANS: u8 = 1;
pub const KIND_LARGE: u8 = 2;

/// A segment's header, at its start: in slice 0 of a span segment, in the first slice of
/// a large mapping (`segment.rs`).
#[repr(C)]
pub struct Segment {
    pub(super) magic: u64,
    pub kind: AtomicU8,
    /// Owner thread's allocator state; null when abandoned, and always null in a large
    /// mapping.
    pub tld: AtomicPtr<Tld>,
    /// The owner's thread id (`tls::thread_id`, never 0), 0 whenever `tld` is null: the
    /// owner's fast `free` compares it with its own. Only the owner stores its id here
    /// and only the owner, the claim holder of an abandoned segment or a fork child's one
    /// thread clear it, so a thread that reads its own id is the owner.
    pub owner: AtomicUsize,
    /// Held by a thread freeing into, purging or adopting an abandoned segment.
    pub claim: AtomicU32,
    /// Abandoned: the group all its live spans are charged to (`abandoned::MIXED` if
    /// several), set before it is listed.
    pub orphan_group: u32,
    pub free_slices: u64,
    /// Free slices whose pages may be resident (released, not purged yet).
    pub dirty: u64,
    /// Dirty slices of the older generation, all unused since `aging_due - PURGE_DELAY_NS`
    /// at least: purged at `aging_due`. The others (`dirty & !aging`) are the young
    /// generation, released between `young_first` and `young_last`.
    pub(super) aging: u64,
    pub(super) aging_due: u64,
    pub(super) young_first: u64,
    pub(super) young_last: u64,
    /// When the dirty slices are next looked at (monotonic ns); 0 when none is dirty.
    pub purge_at: u64,
    pub nr_spans: AtomicU32,
    /// Links in the owner's list of span segments, or, abandoned, in the list of
    /// abandoned segments (`link_owned`, `unlink_owned`).
    pub next_owned: *mut Segment,
    pub prev_owned: *mut Segment,
    /// Links in the global list.
    pub(super) next_all: *mut Segment,
    pub(super) prev_all: *mut Segment,
    /// The mapping holding this segment: `mapped` bytes from `map_base` (a large mapping
    /// aligned beyond a segment starts before its header).
    pub mapped: usize,
    pub map_base: *mut u8,
    /// Large mappings: the block's start, its size as asked and the group charged.
    pub large: LargeMeta,
    pub spans: [Span; SLICES],
    /// Which small blocks of the slices are free (`freemap.rs`).
    pub free_map: FreeMap,
}

const _: () = assert!(core::mem::size_of::<Segment>() <= SLICE_SIZE);

// ---- Live map (`freemap.rs`) -------------------------------------------------------

/// Bytes per bit of the live map.
pub const GRANULE_SHIFT: usize = 4;
/// Bits per word.
pub const WORD_SHIFT: usize = 6;
pub const WORDS: usize = SEG_SIZE >> (GRANULE_SHIFT + WORD_SHIFT);
pub const SLICE_WORDS: usize = SLICE_SIZE >> (GRANULE_SHIFT + WORD_SHIFT);

/// The bits of one segment (32 KiB; the words of slice 0, the header, are unused).
#[repr(C)]
pub struct FreeMap(pub [AtomicU64; WORDS]);

// ---- Spans (`span.rs`) --------------------------------------------------------------

/// A span's state (a large mapping's too: `ACTIVE`, `CACHED`, `PURGED`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not in use.
    Free = 0,
    /// In a heap's queue for its class (or full list), handing out blocks.
    Active,
    /// Empty, still charged, kept in the heap's cache.
    Cached,
    /// Empty, uncharged and purged, still in the heap's cache.
    Purged,
    /// Has live blocks; its owner thread exited.
    Abandoned,
    /// Not a span: a later slice of a multi-slice span, whose `start` is the span's start.
    Interior,
    /// Was `Cached`; a reclaiming thread holding the owner's cache lock is purging it,
    /// and leaves the state `Purged` (or `Cached` again if the span is not the one it
    /// locked for). Nobody else changes the span meanwhile.
    Purging,
    /// Empty, still charged, in its heap's `parked` slot (`medium.rs`): as `Cached`, but
    /// the owner may take it back with plain stores.
    Parked,
}

impl State {
    /// Its name, for diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            State::Free => "FREE",
            State::Active => "ACTIVE",
            State::Cached => "CACHED",
            State::Purged => "PURGED",
            State::Abandoned => "ABANDONED",
            State::Interior => "INTERIOR",
            State::Purging => "PURGING",
            State::Parked => "PARKED",
        }
    }

    #[inline(always)]
    fn from_u8(v: u8) -> State {
        debug_assert!(v <= State::Parked as u8);
        // SAFETY: the word is written only from a `State` (`AtomicState`'s constructor
        // and stores), so it holds one of its discriminants.
        unsafe { core::mem::transmute::<u8, State>(v) }
    }
}

/// A `State` in an atomic byte.
#[repr(transparent)]
pub struct AtomicState(AtomicU8);

impl AtomicState {
    pub const fn new(s: State) -> AtomicState {
        AtomicState(AtomicU8::new(s as u8))
    }

    #[inline(always)]
    pub fn load(&self, order: Ordering) -> State {
        State::from_u8(self.0.load(order))
    }

    #[inline(always)]
    pub fn store(&self, s: State, order: Ordering) {
        self.0.store(s as u8, order);
    }

    #[inline(always)]
    pub fn compare_exchange(
        &self,
        current: State,
        new: State,
        success: Ordering,
        failure: Ordering,
    ) -> Result<State, State> {
        self.0
            .compare_exchange(current as u8, new as u8, success, failure)
            .map(State::from_u8)
            .map_err(State::from_u8)
    }
}

/// The class of a medium span (one block, no size class, on no class queue).
pub const MEDIUM: u8 = u8::MAX;

/// Which of its heap's lists a span is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    None,
    /// Its class's queue.
    Class,
    /// The heap's full list.
    Full,
    /// The heap's cache of empty spans.
    Cache,
    /// A medium span in its heap's `parked` slot.
    Park,
}

/// A free block's first word.
#[repr(C)]
pub struct Block {
    pub(super) next: usize,
}

/// A span descriptor, two cache lines. The first holds what the owner writes (its free
/// lists and counts, its list links, the charge record) and `thread_free`; the second
/// what is fixed while the span is formatted, which other threads' frees read (`free.rs`
/// `locate`, `remote.rs`) without waiting for the owner's writes.
#[repr(C, align(64))]
pub struct Span {
    // --- the owner's line ---
    pub free: *mut Block,
    pub local_free: *mut Block,
    pub used: AtomicU32,
    pub reserved: u32,
    /// Owner frees left that go straight back onto `free` (`HOT_BUDGET` after each
    /// `collect`); the rest wait on `local_free`.
    pub hot: u16,
    /// Which of its heap's lists the span is on (owner only).
    pub list: List,
    /// Whether the span is its heap's `direct` span for its class (owner only).
    pub is_direct: bool,
    /// Raised by the owner while it takes the span out of `PARKED` with plain stores
    /// (`medium.rs`); read by reclaimers.
    pub taking: AtomicBool,
    /// The head of the blocks other threads freed (a `*mut Block`), with the `FULL`,
    /// `UNCHECKED` and `SUSPECT` flags in its low bits and their count in its top 16 bits
    /// (`span.rs`).
    pub thread_free: AtomicUsize,
    /// The charge the span holds, and of which group (the group of its blocks).
    pub charged: Charged,
    pub prev: *mut Span,
    pub next: *mut Span,
    // --- the fixed line ---
    pub key: usize,
    pub start: *mut u8,
    /// `ceil(2^32 / block_size)`: `off * magic >> 32` is `off / block_size` for every
    /// offset inside a small-block span (one slice, blocks of at least 16 bytes); inside a
    /// medium span's one block it is 0 or 1, and only offset 0 passes `is_block_start`.
    pub magic: u64,
    /// Owner heap (null for a free or abandoned span), read with `Span::heap`: an atomic,
    /// stored and loaded relaxed, because reclaimers and remote freers read it while the
    /// owner changes it.
    pub heap: AtomicPtr<Heap>,
    /// `block_size` and `class` (read with `Span::block_size`, `Span::class`) are
    /// atomics, stored and loaded relaxed (plain moves on x86-64), because the statistics
    /// walk (`account.rs`) reads them while the owner formats the span.
    pub block_size: AtomicU32,
    pub capacity: u32,
    pub state: AtomicState,
    pub class: AtomicU8,
    pub slices: u8,
}

impl Span {
    #[allow(clippy::declare_interior_mutable_const)] // a template, copied into each descriptor
    pub const EMPTY: Span = Span {
        free: ptr::null_mut(),
        key: 0,
        used: AtomicU32::new(0),
        block_size: AtomicU32::new(0),
        local_free: ptr::null_mut(),
        thread_free: AtomicUsize::new(0),
        start: ptr::null_mut(),
        magic: 0,
        reserved: 0,
        capacity: 0,
        class: AtomicU8::new(0),
        state: AtomicState::new(State::Free),
        slices: 0,
        list: List::None,
        is_direct: false,
        taking: AtomicBool::new(false),
        hot: 0,
        charged: Charged::none(),
        heap: AtomicPtr::new(ptr::null_mut()),
        prev: ptr::null_mut(),
        next: ptr::null_mut(),
    };
}

// ---- Heaps (`heap.rs`) --------------------------------------------------------------

/// A doubly linked list of spans (through `Span::prev` / `Span::next`).
#[derive(Clone, Copy)]
pub struct Queue {
    pub head: *mut Span,
    pub tail: *mut Span,
}

impl Queue {
    pub const EMPTY: Queue = Queue {
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
    };
}

/// One thread's allocation state for one group (`heap.rs`).
#[repr(C)]
pub struct Heap {
    /// `direct[class_of(16 * i)]` in slot `i`.
    pub by_size: [*mut Span; SLOTS],
    pub direct: [*mut Span; NR_CLASSES],
    pub group: u32,
    /// The owner thread's state, read with `Heap::tld`: an atomic, stored and loaded
    /// relaxed, because reclaimers read it while a recycled heap is set up for its thread.
    pub tld: AtomicPtr<Tld>,
    /// The thread's registry word for group-change requests (`threads::pending_word`;
    /// the thread keeps its slot while it has heaps): the slow path looks at it with no
    /// TLS access.
    pub attach_word: Option<&'static AtomicU64>,
    /// Next heap of the same thread.
    pub next: *mut Heap,
    pub queues: [Queue; NR_CLASSES],
    pub full: Queue,
    pub full_dirty: AtomicBool,
    /// Empty spans, most recent first.
    pub cache: Queue,
    pub cache_len: u32,
    /// Medium spans in `cache`.
    pub medium_cached: u32,
    /// The medium span its owner freed last, kept out of `cache` (null if none): list
    /// `LIST_PARK`, state `PARKED` or (purged by a reclaimer) `PURGING` / `PURGED`.
    /// `medium_cached + (parked != null) ≤ MEDIUM_CACHE`.
    pub parked: *mut Span,
    /// Out of its thread's warm heaps since the thread last used it (`thread::heap_for`):
    /// trimmed, with no direct span, and a span its frees empty is released at once, so
    /// that a thread passing through many groups does not keep empty spans in each.
    pub idle_trimmed: bool,
    /// Pages were charged without reclaim while spans were extended (`extend_charged`):
    /// `high` is looked at once the allocation is done.
    pub charged_quietly: bool,
    /// Slow paths (`alloc_class`) left before the heap sweeps its class queues
    /// (`Heap::sweep`).
    pub sweep_in: u32,
}

/// A span with no free block, shared read-only by every empty `direct` slot.
pub struct SyncSpan(pub Span);
// SAFETY: the empty span is never written: the fast path only reads its null `free`.
unsafe impl Sync for SyncSpan {}
pub static EMPTY_SPAN: SyncSpan = SyncSpan(Span::EMPTY);

#[inline]
pub fn empty_span() -> *mut Span {
    &EMPTY_SPAN.0 as *const Span as *mut Span
}

/// The heap of a thread that has not allocated yet: every `direct` slot is empty, so the
/// first allocation takes the slow path, which sets the thread up.
pub struct SyncHeap(pub Heap);
// SAFETY: the empty heap is never written; the slow path recognises it by address.
unsafe impl Sync for SyncHeap {}
pub static EMPTY_HEAP: SyncHeap = SyncHeap(Heap {
    by_size: [&EMPTY_SPAN.0 as *const Span as *mut Span; SLOTS],
    direct: [&EMPTY_SPAN.0 as *const Span as *mut Span; NR_CLASSES],
    group: 0,
    tld: AtomicPtr::new(ptr::null_mut()),
    attach_word: None,
    next: ptr::null_mut(),
    queues: [Queue::EMPTY; NR_CLASSES],
    full: Queue::EMPTY,
    full_dirty: AtomicBool::new(false),
    cache: Queue::EMPTY,
    cache_len: 0,
    medium_cached: 0,
    parked: ptr::null_mut(),
    idle_trimmed: false,
    charged_quietly: false,
    sweep_in: 0,
});

#[inline]
pub fn empty_heap() -> *mut Heap {
    &EMPTY_HEAP.0 as *const Heap as *mut Heap
}

// ---- Thread states (`tld.rs`) --------------------------------------------------------

/// Freed large mappings a thread keeps for reuse.
pub const LARGE_CACHE: usize = 32;

/// A thread's allocator state: its heaps, the span segments it owns, its cache of large
/// mappings (`tld.rs`, `thread.rs`).
#[repr(C)]
pub struct Tld {
    /// The owning thread's id (`tls::thread_id`), stored in the segments it owns.
    pub id: usize,
    pub heaps: *mut Heap,
    pub segments: *mut Segment,
    /// Freed large mappings kept for reuse (still charged unless purged).
    pub large_cache: [*mut Segment; LARGE_CACHE],
    /// Where the next freed mapping goes in the `large_cache` ring (the oldest entry).
    pub large_head: usize,
    /// Sum of `usable` over `large_cache` (constant while a mapping is cached).
    pub large_bytes: usize,
    /// The earliest `purge_at` of the owned segments (0: none has dirty slices), or
    /// earlier.
    pub(super) purge_at: u64,
    pub(super) rng: u64,
    /// Blocks this thread freed into other threads' spans, not yet pushed (`remote.rs`).
    pub(super) pending: [Chain; PENDING_CHAINS],
    /// Retired (its thread exited, `retired.rs`): the next retired state, the group of
    /// the heap its thread used last, and when it retired.
    pub(super) retired_next: *mut Tld,
    pub(super) retired_group: u32,
    pub(super) retired_at: u64,
    /// Guards span states in this thread's caches against reclaiming threads. Last, and
    /// kept when the state is recycled: a reclaimer that read a stale owner may hold it
    /// while the state goes to a new thread, which then waits for it (a zero written
    /// under the holder would let both in).
    pub(super) cache_lock: AtomicU32,
}

/// Chains of pending remote frees a thread keeps (`remote.rs`), one span each.
pub const PENDING_CHAINS: usize = 8;

/// Blocks of one span that this thread freed and has not pushed onto the span's
/// `thread_free` yet, linked as that list links them (`remote.rs`). All zero: no span.
#[derive(Clone, Copy)]
pub struct Chain {
    pub span: *mut Span,
    pub seg: *mut Segment,
    /// The block freed last; each links to the one freed before it.
    pub head: *mut Block,
    /// The block freed first, whose link the push sets.
    pub tail: *mut Block,
    pub count: u32,
    pub bytes: u32,
    /// The chain holds a block that looked free when it was linked, and was not found
    /// free: its push raises the span's `SUSPECT` flag (`span.rs`).
    pub suspect: bool,
}

impl Chain {
    /// An empty slot.
    pub const EMPTY: Chain = Chain {
        span: ptr::null_mut(),
        seg: ptr::null_mut(),
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
        count: 0,
        bytes: 0,
        suspect: false,
    };
}

// ---- Large mappings (`large.rs`, `harvest.rs`) ---------------------------------------

/// A large mapping's part of its header (`large.rs`).
#[repr(C)]
pub struct LargeMeta {
    pub data: *mut u8,
    /// Bytes of data charged and usable (a page multiple).
    pub usable: usize,
    /// Bytes of data address space reserved (`usable` and the growth room).
    pub capacity: usize,
    /// The charge the mapping holds, and of which group: `usable` and `slack` in pages
    /// while it is resident, nothing once `PURGED` (`charged.rs`).
    pub charged: Charged,
    /// `span::State::Active`, `CACHED` or `PURGED`.
    pub state: AtomicState,
    /// The thread whose cache holds it, while cached; set before `state` becomes
    /// `CACHED` (a release store), so a reclaimer that sees `CACHED` under the lock of the
    /// thread it names knows the mapping is in that thread's cache.
    pub cache_tld: AtomicPtr<Tld>,
    /// Bytes right after `usable` that are resident and still charged to its group, left
    /// over when a cached mapping served a smaller block: reported as `cached`, taken
    /// back by the block when it is resized or freed, purged by reclaim (`SLACK_BUSY`
    /// set while it does).
    pub slack: AtomicUsize,
    /// Where the data's address-space areas may begin: pages moved in by `harvest`
    /// split the mapping's area.
    pub cuts: Cuts,
    /// Bytes from `data` on that fault in as transparent huge pages: advised so while the
    /// block is live (`large.rs`, `huge_pages_on`), 0 otherwise.
    pub huge: usize,
}

impl LargeMeta {
    /// The mapping as the origin of an uncharge, with `recorded` to be filled in.
    pub fn origin_now(&self) -> Origin {
        self.origin((NO_GROUP, 0))
    }

    /// The mapping as the origin of an uncharge of `recorded`.
    pub fn origin(&self, recorded: (u32, u64)) -> Origin {
        Origin {
            what: "large mapping",
            state: self.state.load(Ordering::Relaxed).name(),
            addr: self.data as usize,
            recorded,
        }
    }
}

/// Most cuts one mapping keeps.
pub const CUTS: usize = 16;

/// The data offsets (in pages, sorted, distinct) at which an address-space area of a
/// large mapping may begin, besides the mapping's own start. All zero in a new header.
#[derive(Clone, Copy)]
pub struct Cuts {
    pub(super) at: [u32; CUTS],
    pub(super) n: u8,
}
