//! Large mappings: blocks above `SMALL_MAX` (or aligned beyond a slice), each in its own
//! segment-aligned mapping whose first slice holds the header. The data is charged to
//! the page: `usable` bytes, a multiple of 4 KiB, as `usable / 4096` pages.
//!
//! Freed mappings are cached by the freeing thread, unless their group is at its `max`
//! (a ring of at most `LARGE_CACHE`, each at most `CACHE_MAX_BYTES`, `CACHE_BUDGET` in
//! all), still charged (`CACHED`), for reuse at any size a mapping's reservation holds
//! (its pages are fitted to the new size: a longer tail kept as the block's `slack`,
//! still charged and counted as cached, unless the group is at its `max`, where it is
//! purged and uncharged; a shorter one grown with a charge; another group's mapping
//! changes hands with its charge, its tail only if the group's stock and counters take
//! it at once). A block that no cached mapping serves, and the pages
//! a shorter one grows by, are filled with other cached mappings' resident pages moved
//! by `harvest` rather than faulted in. Every
//! entry is `CACHED` or `PURGED` while in the ring. Other threads reclaiming memory purge
//! cached mappings under the owner's cache lock (their charge is returned, state
//! `PURGED`); a purged mapping is charged again when reused.
//!
//! Growth room: a mapping reserves four times its size (up to 256 MiB more) of address
//! space after the data, so that, cached, it can serve a block up to four times larger.
//! Pages past `usable` and the slack are never touched (a shrink purges them), so they
//! are neither resident nor charged, and `realloc` grows into them with a charge and no
//! system call. Beyond the reservation it tries `mremap` in place, then moves the pages
//! to a new address (`mremap` to a fixed address: no copy).
//!
//! Placement: data starts at `max(SLICE_SIZE, align)` from the header when that stays in
//! the header's segment; for alignments of a segment or more, the data starts one segment
//! after the header and its region is marked `BACK` in the segment map. A block of a huge
//! page or more is aligned to one, and its whole huge pages are advised for transparent
//! huge pages while it is live (`huge_pages_on`): only pages it is charged for, so the
//! advice never makes more resident than the charge.

use super::charged::Uncharge;
use super::harvest;
use super::resize::{charge_growth, NotResized};
use super::segmap;
use super::tld;
use super::types::{LargeMeta, Segment, State, Tld, KIND_LARGE, LARGE_CACHE, SEG_SIZE, SLICE_SIZE};
use crate::consts::pages;
use crate::memcg;
use crate::memcg::origin::Origin;
use crate::os::mem::{self, PAGE_SIZE};
use core::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Largest mapping kept in a thread's cache.
pub const CACHE_MAX_BYTES: usize = 64 << 20;
/// Most bytes of mappings a thread's cache holds (the newest is kept whatever its size).
pub const CACHE_BUDGET: usize = 192 << 20;

/// Set in `slack` while a reclaiming thread purges it.
pub const SLACK_BUSY: usize = 1 << 63;

impl LargeMeta {
    /// Takes the slack back into the block's own bytes (the holder of a live block,
    /// before it changes `usable`); waits for a reclaimer purging it.
    fn absorb_slack(&mut self) {
        loop {
            let v = self.slack.load(Ordering::Acquire);
            if v == 0 {
                return;
            }
            if v & SLACK_BUSY != 0 {
                core::hint::spin_loop();
                continue;
            }
            if self
                .slack
                .compare_exchange(v, 0, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.usable += v;
                return;
            }
        }
    }

    /// For reclaim: purges the slack of a live block charged to a group `wanted` accepts,
    /// and returns the uncharge owed (taken from the record); `None` if there is none,
    /// its holder is taking it, or the group is not wanted.
    pub fn purge_slack(&self, wanted: impl Fn(u32) -> bool) -> Option<Uncharge> {
        let v = self.slack.load(Ordering::Relaxed);
        if v == 0
            || v & SLACK_BUSY != 0
            || self
                .slack
                .compare_exchange(v, v | SLACK_BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        // The acquire pairs with the release that published the slack, after the block's
        // `usable` and record were set; while the flag is up the holder changes neither
        // (it absorbs the slack first, waiting for the flag), and the pages after
        // `usable` are ours to purge.
        let group = self.charged.group();
        if !wanted(group) {
            self.slack.store(v, Ordering::Release);
            return None;
        }
        // SAFETY: the slack lies inside the mapping, right after the block, and the busy
        // flag makes it ours.
        unsafe { mem::purge(self.data.add(self.usable), v) };
        let u = self.charged.take_part(pages(v), self.origin_now());
        self.slack.store(0, Ordering::Release);
        Some(u)
    }
}

const ROOM_MAX: usize = 256 << 20;

/// No block is larger than this (a quarter of the 47-bit user address space): larger
/// requests fail before anything is charged or mapped, and no size computation below
/// can overflow.
pub const LARGE_MAX: usize = 1 << 45;

/// The data reservation for a block of `usable` bytes.
fn room_for(usable: usize) -> usize {
    usable.saturating_add(usable.saturating_mul(3).min(ROOM_MAX))
}

/// Charges `bytes` (whole pages) to `group`; the caller records them (`Charged::add`,
/// which counts a new page run).
fn charge(group: u32, bytes: usize) -> bool {
    bytes == 0 || memcg::charge::try_charge(group, pages(bytes), 0).is_ok()
}

/// A block of `size` bytes aligned to `align` for `group`; `(ptr, zeroed)`, null on
/// failure (refused charge or no memory).
pub fn alloc(group: u32, size: usize, align: usize) -> (*mut u8, bool) {
    if size > LARGE_MAX || align > LARGE_MAX {
        return (ptr::null_mut(), false);
    }
    let Some(usable) = mem::page_ceil(size.max(1)) else {
        return (ptr::null_mut(), false);
    };
    let (seg, zeroed) = match from_cache(group, usable, align) {
        Some(r) => r,
        None => new_block(group, usable, align),
    };
    if seg.is_null() {
        return (ptr::null_mut(), false);
    }
    // SAFETY: the mapping of the block just made or reused, not handed out yet: ours.
    let m = unsafe { &mut (*seg).large };
    huge_pages_on(m);
    (m.data, zeroed)
}

/// A block of `usable` bytes aligned to `align` for `group` in a new mapping: its
/// segment (null on failure) and whether the block reads as zeros.
fn new_block(group: u32, usable: usize, align: usize) -> (*mut Segment, bool) {
    // A group change another thread asked for applies from the next allocation on.
    memcg::control::apply_pending_attach();
    if !charge(group, usable) {
        return (ptr::null_mut(), false);
    }
    // A block of a huge page or more starts on a huge page boundary.
    let huge = usable >= mem::HUGE_PAGE;
    let placed = if huge {
        align.max(mem::HUGE_PAGE)
    } else {
        align
    };
    match map_new(usable, placed) {
        Some(seg) => {
            // SAFETY: a new mapping's header, ours alone.
            let m = unsafe { &mut (*seg).large };
            m.charged.add(group, pages(usable));
            m.state.store(State::Active, Ordering::Release);
            // Cached pages rather than fresh ones: no fault, but not zeroed.
            // SAFETY: a new mapping, ours alone; its `usable` bytes are untouched and
            // charged.
            match unsafe { fill(seg, 0, usable) } {
                Some(moved) => (seg, moved == 0),
                None => (ptr::null_mut(), false),
            }
        }
        None => {
            Uncharge {
                group,
                pages: pages(usable),
                origin: Origin::plain("large mapping not mapped"),
            }
            .apply();
            (ptr::null_mut(), false)
        }
    }
}

/// Most live blocks advised for huge pages: the advice splits a mapping's address-space
/// area in up to three while the block lives, and the process stays far below the
/// kernel's `vm.max_map_count` (65,530 by default; `harvest` keeps its own cuts below 16
/// Ki).
const HUGE_LIVE_MAX: usize = 4096;

/// Live blocks advised for huge pages (`LargeMeta::huge` not 0).
static HUGE_LIVE: AtomicUsize = AtomicUsize::new(0);

/// A live block (its data on a huge page boundary) faults its whole huge pages in as
/// transparent huge pages: one 2 MiB fault and one page-table entry for 512 of each.
/// Only while the block is live, and only over pages it is charged for in full, so that
/// the pages resident never exceed the charge: `huge_pages_off` comes before the
/// block's pages are cached, purged, shrunk or moved, where `khugepaged` could fill a
/// range partly given back. Nothing for a block of less than a huge page, one whose data
/// is not on a huge page boundary (a mapping cached from a smaller block), past
/// `HUGE_LIVE_MAX`, or on a kernel without them. The advice splits the mapping's area
/// only while the block lives (`huge_pages_off` joins it again): `harvest` moves pages
/// into a block before it is advised, and out of cached mappings only.
fn huge_pages_on(m: &mut LargeMeta) {
    let huge = m.usable & !(mem::HUGE_PAGE - 1);
    if huge == 0
        || m.data as usize % mem::HUGE_PAGE != 0
        || HUGE_LIVE.load(Ordering::Relaxed) >= HUGE_LIVE_MAX
    {
        return;
    }
    debug_assert_eq!(m.huge, 0);
    // SAFETY: the block's data, charged and held by the caller.
    if unsafe { mem::huge_pages(m.data, huge, true) } {
        m.huge = huge;
        HUGE_LIVE.fetch_add(1, Ordering::Relaxed);
    }
}

/// Ends `huge_pages_on` for the block of `seg`, whose pages are about to be cached, given
/// back or moved (the huge pages already resident stay until then): the whole mapping is
/// advised against huge pages, which makes it one area again (as `mremap` needs);
/// `unmapping`: the mapping goes altogether, no advice needed.
///
/// # Safety
/// `seg` is a large mapping the caller holds alone.
unsafe fn huge_pages_off(seg: *mut Segment, unmapping: bool) {
    // SAFETY: this function's contract.
    let sg = unsafe { &mut *seg };
    if sg.large.huge == 0 {
        return;
    }
    if !unmapping {
        // SAFETY: the whole mapping, held by the caller.
        unsafe { mem::huge_pages(sg.map_base, sg.mapped, false) };
    }
    sg.large.huge = 0;
    HUGE_LIVE.fetch_sub(1, Ordering::Relaxed);
}

/// Maps a new large segment with `usable` bytes of data aligned to `align`.
fn map_new(usable: usize, align: usize) -> Option<*mut Segment> {
    let align = align.max(PAGE_SIZE);
    if align < SEG_SIZE {
        let offset = SLICE_SIZE.max(align);
        let capacity = room_for(usable);
        let len = offset.checked_add(capacity)?;
        let base = mem::map_aligned(len, SEG_SIZE).ok()?.as_ptr();
        // SAFETY: a fresh segment-aligned mapping of `len` bytes.
        let seg = unsafe { Segment::init(base, KIND_LARGE, len) };
        // SAFETY: the header is ours.
        unsafe {
            (*seg).large.data = base.add(offset);
            (*seg).large.usable = usable;
            (*seg).large.capacity = capacity;
        }
        Some(seg)
    } else {
        let len = align.checked_add(usable)?;
        let base = mem::map_aligned(len, align).ok()?.as_ptr();
        // SAFETY: `base + align - SEG_SIZE` lies inside the mapping and is segment-aligned.
        let header = unsafe { base.add(align - SEG_SIZE) };
        // SAFETY: the header region is inside our fresh mapping.
        let seg = unsafe { Segment::init(header, KIND_LARGE, len) };
        // SAFETY: the header is ours; the data starts `align` into the mapping.
        unsafe {
            (*seg).map_base = base;
            (*seg).large.data = base.add(align);
            (*seg).large.usable = usable;
            (*seg).large.capacity = usable;
        }
        segmap::set(base as usize + align, segmap::BACK);
        Some(seg)
    }
}

/// Reuses a cached mapping of this thread for `need` bytes: among those that can serve
/// it (its reservation holds `need`, and it has at most twice `need` in pages: more
/// would keep too much as slack), ranked by what it would cost: a resident one before
/// a purged one (whose every page is faulted in or harvested), then one at least as
/// long before a shorter one (which grows), then one already charged to `group` before
/// another group's (whose charge only changes hands), then the closest in size. Its
/// pages are fitted to `need` (a longer tail kept as slack, or purged and uncharged when
/// the group is at its `max`; a shorter one grown into the reservation) and charged to
/// `group`; a mapping cached for another group hands its resident pages over, its old
/// group uncharged. Returns the mapping (null if the charge was refused or its pages
/// could not be filled: the mapping is released) and whether the block reads as zeros;
/// `None` if no cached mapping serves.
fn from_cache(group: u32, need: usize, align: usize) -> Option<(*mut Segment, bool)> {
    let tld = tld::current();
    if tld.is_null() {
        return None;
    }
    // SAFETY: this thread's live state.
    let t = unsafe { &mut *tld };
    let (seg, purged, exact) = {
        let _g = t.lock_cache();
        // Score: the size difference, under the ranks above. 0 is an exact fit, resident
        // and already charged to `group`.
        let (mut best, mut best_i) = (usize::MAX, 0);
        let mask = align.max(1) - 1;
        // Newest first: a block freed and asked for again is found at once.
        for k in 0..LARGE_CACHE {
            let i = (t.large_head + LARGE_CACHE - 1 - k) % LARGE_CACHE;
            let s = t.large_cache[i];
            if s.is_null() {
                continue;
            }
            // SAFETY: cached segments are live and held by this cache.
            let m = unsafe { &(*s).large };
            if m.capacity < need || m.usable > need.saturating_mul(2) || m.data as usize & mask != 0
            {
                continue;
            }
            // A longer mapping costs nothing now (its tail is kept as slack); a shorter
            // one faults in (or harvests) the pages it grows by; another group's hands
            // its charge over (a few counter updates, no system call). Ranking a mapping
            // of `group` first whatever its length made a thread visiting a few groups
            // grow its own short mappings past longer ones (`malloc_large --groups 16`:
            // 122 K faults against 90 K in one group).
            let purged = m.state.load(Ordering::Relaxed) != State::Cached;
            let score = m.usable.abs_diff(need)
                | (usize::from(!m.charged.is_of(group)) << 61)
                | (usize::from(m.usable < need) << 62)
                | (usize::from(purged) << 63);
            if score < best {
                (best, best_i) = (score, i);
                if score == 0 {
                    break;
                }
            }
        }
        if best == usize::MAX {
            return None;
        }
        let s = core::mem::replace(&mut t.large_cache[best_i], ptr::null_mut());
        // SAFETY: as above.
        let m = unsafe { &(*s).large };
        t.large_bytes -= m.usable;
        let purged = m.state.load(Ordering::Relaxed) == State::Purged;
        m.state.store(State::Active, Ordering::Relaxed);
        (s, purged, best == 0)
    };
    // SAFETY: the segment is ours now.
    let m = unsafe { &mut (*seg).large };
    m.cache_tld.store(ptr::null_mut(), Ordering::Relaxed);
    if exact {
        // Already charged to `group`, with `need` bytes: nothing to fit.
        return Some((seg, false));
    }
    let resident = if purged { 0 } else { m.usable };
    // What the mapping already holds charged to `group` (a purged one holds nothing;
    // another group's holds nothing of `group`).
    let held = if m.charged.is_of(group) {
        m.charged.pages() as usize * PAGE_SIZE
    } else {
        0
    };
    // A longer mapping's tail stays resident as the block's slack, charged to `group`
    // (another group's mapping hands all its pages over), unless `group` is at its
    // `max` or refuses the tail: then it is purged.
    let mut keep = if resident > need && !memcg::charge::at_max(group) {
        resident
    } else {
        need
    };
    // Charge first, so that a refusal leaves the mapping as it was, to be released: what
    // the block needs through the whole charge path, then the slack (another group's
    // tail, which `group` may do without) from the stock and the counters only, so that
    // keeping it never reclaims, calls a handler or counts an OOM; refused, it is purged.
    let ok = charge(group, need.saturating_sub(held));
    if ok && keep > need.max(held) {
        let slack = pages(keep - need.max(held));
        if memcg::charge::try_charge(group, slack, memcg::charge::NORETRY).is_err() {
            keep = need;
        }
    }
    if !ok {
        // SAFETY: taken out of the cache above, ours alone, and used no more.
        unsafe { release(seg) };
        return Some((ptr::null_mut(), false));
    }
    // `group` is charged for `max(keep, held)` bytes of the mapping: that is its record
    // now. Another group's record, replaced, is uncharged (its pages change hands).
    let total = keep.max(held);
    if let Some((g, p)) = m.charged.replace(group, pages(total)) {
        if g != group {
            Uncharge {
                group: g,
                pages: p,
                origin: m.origin((g, p)),
            }
            .apply();
        }
    }
    if keep > need {
        // The pages beyond `need` stay resident and charged, as the group's cache. The
        // block's size first: a reclaimer that sees the slack (acquire) purges the pages
        // after `usable` and uncharges the group its record names.
        m.usable = need;
        m.slack.store(keep - need, Ordering::Release);
        return Some((seg, false));
    }
    if !purged && m.usable > need {
        // SAFETY: the tail beyond `need` belongs to this mapping, ours alone, and its
        // contents are not needed.
        unsafe { mem::purge(m.data.add(need), m.usable - need) };
    }
    if total > need {
        m.charged
            .take_part(pages(total - need), m.origin_now())
            .apply_plain();
    }
    let (old, mut zeroed) = (m.usable, purged);
    m.usable = need;
    if old < need {
        // A shorter mapping grows with other cached mappings' pages.
        // SAFETY: taken out of the cache, ours alone; `old..need` lies in its reservation,
        // untouched (purged or never used) and charged above.
        match unsafe { fill(seg, old, need) } {
            Some(moved) => zeroed &= moved == 0,
            None => return Some((ptr::null_mut(), false)),
        }
    }
    Some((seg, zeroed))
}

/// Fills `from..to` of a new or reused block with cached mappings' pages (`harvest`) and
/// releases what the harvest emptied. Returns the bytes moved, or `None` when a move was
/// lost: then the block is released too, the lost range left alone.
///
/// # Safety
/// As `harvest::harvest`; on `None`, `seg` is used no more.
unsafe fn fill(seg: *mut Segment, from: usize, to: usize) -> Option<usize> {
    // SAFETY: this function's contract is `harvest`'s.
    let h = unsafe { harvest::harvest(seg, from, to) };
    for &d in h.emptied() {
        // SAFETY: a donor left with nothing, out of the cache (`ACTIVE`), ours alone.
        unsafe { release(d) };
    }
    match h.lost {
        None => Some(h.moved),
        Some((hole, len)) => {
            // SAFETY: the caller's mapping, held alone and given up on `None` (this
            // function's contract); the hole lies inside it.
            unsafe { release_except(seg, hole, len) };
            None
        }
    }
}

/// Frees the large block of `seg` (found live by `free::locate`): into this thread's
/// cache, or released.
///
/// # Safety
/// `seg` is the large mapping of a live block that the caller frees: nothing uses the
/// block afterwards.
pub unsafe fn free(seg: *mut Segment) {
    // SAFETY: `seg` is the live segment of a block being freed, so no one else holds it.
    let m = unsafe { &mut (*seg).large };
    m.absorb_slack();
    let tld = tld::current();
    if tld.is_null()
        || m.usable > CACHE_MAX_BYTES
        || memcg::charge::keeps_no_free_pages(m.charged.group())
    {
        // SAFETY: the mapping of the block being freed, ours alone.
        unsafe { release(seg) };
        return;
    }
    // SAFETY: the mapping of the block being freed, ours alone.
    unsafe { huge_pages_off(seg, false) };
    // SAFETY: as above.
    let m = unsafe { &mut (*seg).large };
    // SAFETY: this thread's live state.
    let t = unsafe { &mut *tld };
    let mut evicted = [ptr::null_mut(); LARGE_CACHE];
    let mut n = 0;
    {
        let _g = t.lock_cache();
        m.cache_tld.store(tld, Ordering::Relaxed);
        m.state.store(State::Cached, Ordering::Release);
        // A ring, oldest at `large_head`: the new mapping takes the oldest's place.
        let slot = t.large_head;
        let old = core::mem::replace(&mut t.large_cache[slot], seg);
        t.large_head = (slot + 1) % LARGE_CACHE;
        t.large_bytes += m.usable;
        let mut take = |t: &mut Tld, v: *mut Segment| {
            // SAFETY: a segment that was in this cache.
            t.large_bytes -= unsafe { (*v).large.usable };
            evicted[n] = v;
            n += 1;
        };
        if !old.is_null() {
            take(t, old);
        }
        // Over the byte budget: the oldest go first; the newest always stays.
        let mut i = t.large_head;
        while t.large_bytes > CACHE_BUDGET && i != slot {
            let v = core::mem::replace(&mut t.large_cache[i], ptr::null_mut());
            if !v.is_null() {
                take(t, v);
            }
            i = (i + 1) % LARGE_CACHE;
        }
        for &v in &evicted[..n] {
            // SAFETY: a segment taken out of the cache; make it ours before releasing it.
            let vm = unsafe { &(*v).large };
            if vm.state.load(Ordering::Relaxed) == State::Cached {
                vm.state.store(State::Active, Ordering::Relaxed);
            }
        }
    }
    for &v in &evicted[..n] {
        // SAFETY: evicted from our cache under its lock (`ACTIVE` or `PURGED`): ours alone.
        unsafe { release(v) };
    }
}

/// Unmaps a large segment the caller holds, returning the charge its record holds.
///
/// # Safety
/// As for `release_except`, with no hole.
pub unsafe fn release(seg: *mut Segment) {
    // SAFETY: this function's contract, with no hole.
    unsafe { release_except(seg, 0, 0) };
}

/// `release`, leaving `hole..hole+hole_len` unmapped by us (`Segment::destroy_except`).
///
/// # Safety
/// `seg` is a listed large mapping the caller holds alone and that is used no more: its
/// block freed (or never handed out), in no live thread's cache, and out of reclaimers'
/// reach (not `CACHED`, unless no other thread runs). `hole_len` is 0, or the hole is a
/// page-aligned range inside the mapping.
pub unsafe fn release_except(seg: *mut Segment, hole: usize, hole_len: usize) {
    // SAFETY: the caller holds the segment exclusively.
    unsafe { huge_pages_off(seg, true) };
    // SAFETY: as above.
    let m = unsafe { &(*seg).large };
    let owed = m.charged.take(m.origin_now());
    harvest::forget(m);
    // SAFETY: a listed large mapping held alone and used no more (this contract).
    unsafe { Segment::destroy_except(seg, hole, hole_len) };
    if let Some(u) = owed {
        u.apply();
    }
}

/// Thread exit: releases every mapping in the thread's cache.
pub fn drop_cache(t: &mut Tld) {
    let taken = {
        let _g = t.lock_cache();
        let taken = t.large_cache;
        for &s in taken.iter().filter(|s| !s.is_null()) {
            // SAFETY: cached segments are live; they become ours.
            let m = unsafe { &(*s).large };
            if m.state.load(Ordering::Relaxed) == State::Cached {
                m.state.store(State::Active, Ordering::Relaxed);
            }
        }
        t.large_cache = [ptr::null_mut(); LARGE_CACHE];
        t.large_bytes = 0;
        taken
    };
    for s in taken.into_iter().filter(|s| !s.is_null()) {
        // SAFETY: taken out of the cache under its lock (`ACTIVE` or `PURGED`): ours.
        unsafe { release(s) };
    }
}

/// Usable bytes of the block of `seg`.
///
/// # Safety
/// `seg` is the large mapping of a live block the caller holds.
pub unsafe fn usable_size(seg: *mut Segment) -> usize {
    // SAFETY: the segment of a live block.
    unsafe { (*seg).large.usable }
}

/// Resizes the block of `seg` without copying: within its reservation, by `mremap` in
/// place, or (to grow) by moving its pages to a new address. Returns the block's new
/// address. Charges follow the size and stay with the block's owner group
/// (`charge_growth`).
///
/// # Safety
/// `seg` is the large mapping of a live block the caller holds alone (its holder). On
/// `Ok`, only the returned address is used: the block may have moved.
pub unsafe fn resize(seg: *mut Segment, new_size: usize) -> Result<*mut u8, NotResized> {
    if new_size > LARGE_MAX {
        return Err(NotResized::NoRoom);
    }
    let Some(new) = mem::page_ceil(new_size) else {
        return Err(NotResized::NoRoom);
    };
    // A block shrunk gives pages back; one grown may move, with `mremap`, which takes a
    // mapping of one area.
    // SAFETY: the segment of a live block held by the caller.
    unsafe { huge_pages_off(seg, false) };
    // SAFETY: as above.
    let sg = unsafe { &mut *seg };
    sg.large.absorb_slack();
    let old = sg.large.usable;
    let group = sg.large.charged.group();
    if new <= old {
        // SAFETY: the tail beyond the new size belongs to this mapping, whose block the
        // caller holds alone; its contents are not needed.
        unsafe { mem::purge(sg.large.data.add(new), old - new) };
        sg.large.usable = new;
        let origin = sg.large.origin_now();
        sg.large
            .charged
            .take_part(pages(old - new), origin)
            .apply_plain();
        return Ok(sg.large.data);
    }
    charge_growth(group, pages(new - old))?;
    sg.large.charged.add(group, pages(new - old));
    if new <= sg.large.capacity {
        sg.large.usable = new;
        return Ok(sg.large.data);
    }
    let head = sg.mapped - sg.large.capacity;
    let capacity = room_for(new);
    // A mapping of several areas (pages moved in by `harvest`) is neither resized nor
    // moved by `mremap`: the caller copies.
    if sg.map_base == seg as *mut u8 && !sg.large.cuts.any() {
        // SAFETY: the whole mapping (it starts at the header and is one area), held by
        // the caller; it only grows.
        if unsafe { crate::os::mem::remap_in_place(sg.map_base, sg.mapped, head + capacity) } {
            sg.mapped = head + capacity;
            sg.large.capacity = capacity;
            sg.large.usable = new;
            return Ok(sg.large.data);
        }
        // SAFETY: a listed large mapping the caller holds alone, grown; on success the
        // caller uses only the new address returned.
        if let Some(moved) = unsafe { Segment::move_large(seg, head + capacity) } {
            // SAFETY: the moved header, still ours.
            let m = unsafe { &mut (*moved).large };
            m.capacity = capacity;
            m.usable = new;
            return Ok(m.data);
        }
    }
    let origin = sg.large.origin_now();
    sg.large
        .charged
        .take_part(pages(new - old), origin)
        .apply_plain();
    Err(NotResized::NoRoom)
}
