//! Medium blocks (above 32 KiB, up to 1 MiB): a span of their own inside a segment,
//! charged to the page, with `CgMalloc` as the global allocator.
//!
//! - Each block is charged exactly its size rounded up to 4 KiB (`memory.stat` `large`),
//!   and everything returns to 0 once freed and reclaimed.
//! - A block freed by a thread other than its allocator stays charged, shown as `free`,
//!   until the allocating thread collects its span (here by `malloc_trim`), which gives
//!   the pages back; within a quarter of the group's `max` the free gives back all but
//!   the block's first page at once.
//! - Alignments up to 64 KiB; zeroed blocks are zero also when they reuse memory a
//!   freed block dirtied; contents survive reuse of the span cache.
//!
//! Interface files are read from outside the group (reading allocates a `String`).

use crate::support::alloc::*;
use cgmalloc::Group;
use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

const PAGE_BYTES: usize = PAGE as usize;

fn page_round(n: usize) -> u64 {
    n.div_ceil(PAGE_BYTES) as u64 * PAGE
}

struct Raw(*mut u8, Layout);
// SAFETY: plain memory owned by whoever holds it.
unsafe impl Send for Raw {}

/// Sizes on both sides of the slice and page boundaries, up to the largest medium block.
const SIZES: [usize; 10] = [
    32 * KIB + 1,
    40_000,
    64 * KIB - 1,
    64 * KIB,
    64 * KIB + 1,
    100_000,
    200_000,
    300_000,
    MIB - 4096,
    MIB,
];

#[test]
fn medium_blocks_are_charged_to_the_page() {
    let g = Group::create("/med_exact").unwrap();
    let mut blocks = Vec::with_capacity(SIZES.len() * 3);
    {
        let _in = g.enter().unwrap();
        for (k, &size) in SIZES.iter().cycle().take(SIZES.len() * 3).enumerate() {
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null(), "alloc({size})");
            // SAFETY: a live block of `size` bytes.
            unsafe { fill(p, size, k as u64) };
            blocks.push(Raw(p, layout));
        }
    }
    let want: u64 = blocks.iter().map(|r| page_round(r.1.size())).sum();
    let st = kv(&g, "memory.stat");
    assert_eq!(
        st["large"], want,
        "large must be the page-rounded sizes: {st:?}"
    );
    assert_eq!(st["small"], 0, "{st:?}");
    assert_eq!(st["cached"], 0, "{st:?}");
    let sizes: u64 = blocks.iter().map(|r| r.1.size() as u64).sum();
    assert!(st["allocated"] >= sizes, "{st:?}");
    assert_eq!(
        st["allocated"], want,
        "a medium block's usable size is its pages"
    );
    let s = g.stat().unwrap();
    assert_eq!(s.current, want + s.stock, "{st:?}, stat {s:?}");
    {
        let _in = g.enter().unwrap();
        for (k, Raw(p, layout)) in blocks.into_iter().enumerate() {
            // SAFETY: live blocks with their layouts.
            unsafe {
                assert_eq!(check(p, layout.size(), k as u64), None, "{layout:?}");
                dealloc(p, layout);
            }
        }
    }
    let st = kv(&g, "memory.stat");
    assert_eq!(st["allocated"], 0, "{st:?}");
    assert!(st["cached"] <= st["large"], "{st:?}");
    assert_all_returned(&g);
    g.destroy().unwrap();
}

#[test]
fn a_remote_free_keeps_the_charge_until_the_owner_collects() {
    let g = Group::create("/med_remote").unwrap();
    const N: usize = 6;
    let slot: Arc<Mutex<Vec<Raw>>> = Arc::new(Mutex::new(Vec::with_capacity(N)));
    let handed = Arc::new(Barrier::new(2));
    let checked = Arc::new(Barrier::new(2));
    let collected = Arc::new(Barrier::new(2));
    let owner = {
        let (slot, handed, checked, collected) = (
            slot.clone(),
            handed.clone(),
            checked.clone(),
            collected.clone(),
        );
        thread::spawn(move || {
            let _in = g.enter().unwrap();
            {
                let mut v = slot.lock().unwrap();
                for i in 0..N {
                    let layout = Layout::from_size_align(100_000 + i * 50_000, 16).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { alloc(layout) };
                    assert!(!p.is_null());
                    v.push(Raw(p, layout));
                }
            }
            handed.wait();
            // Asleep (no allocation) until the main thread has freed and checked.
            checked.wait();
            // The owner collects its spans (and gives their pages back).
            assert!(cgmalloc::trim(), "the owner's trim must release the spans");
            collected.wait();
        })
    };
    handed.wait();
    let blocks: Vec<Raw> = std::mem::take(&mut *slot.lock().unwrap());
    let charged: u64 = blocks.iter().map(|r| page_round(r.1.size())).sum();
    let before = g.stat().unwrap();
    let st = kv(&g, "memory.stat");
    assert_eq!(st["large"], charged, "{st:?}");
    let free_before = st["free"];
    for Raw(p, layout) in blocks {
        // SAFETY: live blocks with their layouts, freed by a thread that did not
        // allocate them.
        unsafe { dealloc(p, layout) };
    }
    // The pages are resident until the owner collects the spans: still charged, shown
    // as free.
    let after = g.stat().unwrap();
    assert_eq!(
        before.current, after.current,
        "a remote free keeps the charge: before {before:?}, after {after:?}"
    );
    let st = kv(&g, "memory.stat");
    assert_eq!(st["allocated"], 0, "{st:?}");
    assert_eq!(st["free"] - free_before, charged, "{st:?}");
    checked.wait();
    collected.wait();
    let st = kv(&g, "memory.stat");
    assert_eq!(
        st["free"], 0,
        "the owner's trim gave the pages back: {st:?}"
    );
    assert_eq!(st["large"], 0, "{st:?}");
    owner.join().unwrap();
    assert_all_returned(&g);
    g.destroy().unwrap();
}

#[test]
fn near_its_limit_a_remote_free_gives_the_pages_back_at_once() {
    // A reclaim callback frees a cache another thread built: the memory must come back
    // without its owner's help. Within a quarter of `max`, a remote free purges the
    // block's pages but the first (which the free links through) and uncharges them.
    let g = Group::create("/med_remote_max").unwrap();
    g.set_max(10_400 * KIB as u64).unwrap();
    const N: usize = 10;
    const SIZE: usize = 1000 * KIB;
    let slot: Arc<Mutex<Vec<Raw>>> = Arc::new(Mutex::new(Vec::with_capacity(N)));
    let handed = Arc::new(Barrier::new(2));
    let checked = Arc::new(Barrier::new(2));
    let owner = {
        let (slot, handed, checked) = (slot.clone(), handed.clone(), checked.clone());
        thread::spawn(move || {
            {
                let _in = g.enter().unwrap();
                let mut v = slot.lock().unwrap();
                for i in 0..N {
                    let layout = Layout::from_size_align(SIZE, 16).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { alloc(layout) };
                    assert!(!p.is_null());
                    // SAFETY: a live block of SIZE bytes.
                    unsafe { fill(p, SIZE, i as u64) };
                    v.push(Raw(p, layout));
                }
            }
            handed.wait();
            // Asleep until the main thread has freed and checked.
            checked.wait();
        })
    };
    handed.wait();
    let blocks: Vec<Raw> = std::mem::take(&mut *slot.lock().unwrap());
    let before = g.stat().unwrap();
    for Raw(p, layout) in blocks {
        // SAFETY: live blocks with their layouts, freed by a thread that did not
        // allocate them.
        unsafe { dealloc(p, layout) };
    }
    let after = g.stat().unwrap();
    // Each free within a quarter of `max` uncharges all but a page; the frees after the
    // group left that zone keep their charge (free pages, until the owner collects).
    let per_block = page_round(SIZE) - PAGE;
    let (mut cur, mut released) = (before.current, 0u64);
    for _ in 0..N {
        if before.max - cur < before.max / 4 {
            cur -= per_block;
            released += 1;
        }
    }
    assert!(
        released >= 2,
        "the test must start near the limit: {before:?}"
    );
    assert_eq!(
        before.current - after.current,
        released * per_block,
        "near the limit a remote free uncharges all but a page: before {before:?}, after {after:?}"
    );
    let st = kv(&g, "memory.stat");
    assert_eq!(st["allocated"], 0, "{st:?}");
    assert_eq!(
        st["large"],
        N as u64 * page_round(SIZE) - released * per_block,
        "one page stays of each span given back: {st:?}"
    );
    checked.wait();
    owner.join().unwrap();
    assert_all_returned(&g);
    g.destroy().unwrap();
}

#[test]
fn aligned_and_zeroed_medium_blocks() {
    let g = Group::create("/med_align").unwrap();
    {
        let _in = g.enter().unwrap();
        for align in [16, 4096, 32 * KIB, 64 * KIB] {
            for size in [100, 5000, 40_000, 200_000, MIB] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe { alloc(layout) };
                assert!(!p.is_null(), "{layout:?}");
                assert_eq!(p as usize % align, 0, "{layout:?} at {p:?}");
                // SAFETY: a live block of `size` bytes.
                unsafe {
                    fill(p, size, size as u64);
                    assert_eq!(check(p, size, size as u64), None);
                    dealloc(p, layout);
                }
            }
        }
        // Dirty memory, freed, then asked for zeroed: in the span cache, in slices
        // released to the segment, and across sizes.
        for round in 0..4 {
            let sizes = [200_000, 200_000, 200_000, 70_000, 500_000, 1_000_000];
            let dirty: Vec<Raw> = sizes
                .iter()
                .map(|&n| {
                    let layout = Layout::from_size_align(n, 16).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { alloc(layout) };
                    assert!(!p.is_null());
                    // SAFETY: a live block of `n` bytes.
                    unsafe { p.write_bytes(0xa5, n) };
                    Raw(p, layout)
                })
                .collect();
            for Raw(p, layout) in dirty {
                // SAFETY: live blocks with their layouts.
                unsafe { dealloc(p, layout) };
            }
            for &n in sizes.iter().rev() {
                let n = n - round * 4096;
                let layout = Layout::from_size_align(n, 16).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe { alloc_zeroed(layout) };
                assert!(!p.is_null());
                // SAFETY: a live block of `n` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(p, n) };
                let nz = bytes.iter().position(|&b| b != 0);
                assert_eq!(
                    nz, None,
                    "alloc_zeroed({n}) in round {round}: a byte not zero"
                );
                // SAFETY: as above.
                unsafe { dealloc(p, layout) };
            }
        }
    }
    quiesce(&g);
    assert_empty(&g);
    g.destroy().unwrap();
}

/// What the owner thread of `parked_spans_*` is told to do, in its group.
enum Step {
    Alloc(usize),
    Free,
    Done,
}

#[test]
fn a_parked_span_is_purged_by_another_threads_reclaim_and_reused_exactly() {
    // The owner frees a medium block, which stays charged as `cached` (its span parked);
    // a reclaim from this thread purges and uncharges it exactly once; the owner's next
    // block of as many slices reuses it, charged afresh, zeroed; a block of another page
    // count in the same slices is refitted to its pages.
    let g = Arc::new(Group::create("/med_parked").unwrap());
    let (to_owner, steps) = std::sync::mpsc::channel::<Step>();
    let (to_main, acks) = std::sync::mpsc::channel::<(usize, usize)>();
    let owner = {
        let g = g.clone();
        thread::spawn(move || {
            let mut live: Option<Raw> = None;
            for step in steps {
                let reply = {
                    let _in = g.enter().unwrap();
                    match step {
                        Step::Alloc(n) => {
                            let layout = layout(n);
                            // SAFETY: non-zero size.
                            let p = unsafe { alloc(layout) };
                            assert!(!p.is_null());
                            // SAFETY: a live block of `n` bytes.
                            let zero = unsafe { std::slice::from_raw_parts(p, n) }
                                .iter()
                                .all(|&b| b == 0);
                            // SAFETY: as above.
                            unsafe { p.write_bytes(0x5a, n) };
                            live = Some(Raw(p, layout));
                            (p as usize, zero as usize)
                        }
                        Step::Free => {
                            let Raw(p, layout) = live.take().unwrap();
                            // SAFETY: the live block with its layout.
                            unsafe { dealloc(p, layout) };
                            (p as usize, 0)
                        }
                        Step::Done => break,
                    }
                };
                to_main.send(reply).unwrap();
            }
        })
    };
    let ask = |s: Step| {
        to_owner.send(s).unwrap();
        acks.recv().unwrap()
    };
    let exact = |large: u64, cached: u64, what: &str| {
        cgmalloc::drain_stocks();
        let st = kv(&g, "memory.stat");
        assert_eq!(st["large"], large, "{what}: {st:?}");
        assert_eq!(st["cached"], cached, "{what}: {st:?}");
        assert_eq!(current(&g), large, "{what}: memory.current, {st:?}");
    };
    let n = 250_000;
    let (p, _) = ask(Step::Alloc(n));
    exact(page_round(n), 0, "live");
    ask(Step::Free);
    exact(page_round(n), page_round(n), "parked");
    assert!(resident(p as *const u8, page_round(n) as usize) > 0);
    let before = kv(&g, "memory.stat")["nr_uncharges"];
    reclaim_all(&g);
    exact(0, 0, "purged by another thread's reclaim");
    assert_eq!(resident(p as *const u8, page_round(n) as usize), 0);
    assert_eq!(kv(&g, "memory.stat")["nr_uncharges"], before + 1);
    // The purged span again: charged in full, zeroed.
    let (q, zero) = ask(Step::Alloc(n));
    assert_eq!((q, zero), (p, 1), "the parked span, zeroed by its purge");
    exact(page_round(n), 0, "reused after the purge");
    ask(Step::Free);
    exact(page_round(n), page_round(n), "parked again");
    // Fewer pages in as many slices: the charged parked span, refitted.
    let m = 200_000;
    assert_eq!(
        page_round(m).div_ceil(64 << 10),
        page_round(n).div_ceil(64 << 10)
    );
    // Its pages beyond the smaller block stay resident, so they stay charged with it.
    let (q, zero) = ask(Step::Alloc(m));
    assert_eq!((q, zero), (p, 0), "the parked span, not purged");
    exact(page_round(n), 0, "reused while charged");
    ask(Step::Free);
    exact(page_round(n), page_round(n), "parked, refitted");
    to_owner.send(Step::Done).unwrap();
    owner.join().unwrap();
    // The owner's exit released its parked span.
    assert_all_returned(&g);
    Arc::into_inner(g).unwrap().destroy().unwrap();
}

#[test]
fn parked_spans_reclaimed_while_their_owner_reuses_them() {
    // The owner allocates and frees one medium block over and over (its span parked in
    // between), checking that the block keeps what it wrote while it lives; this thread
    // reclaims meanwhile. A purge of a block in use would zero it; a lost race would
    // leave a charge or uncharge twice.
    let g = Arc::new(Group::create("/med_parked_race").unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let owner = {
        let (g, stop) = (g.clone(), stop.clone());
        thread::spawn(move || {
            let _in = g.enter().unwrap();
            let n = 3 * 64 * KIB;
            let layout = layout(n);
            let mut rounds = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || rounds < 1000 {
                // SAFETY: non-zero size.
                let p = unsafe { alloc(layout) };
                assert!(!p.is_null());
                for off in (0..n).step_by(PAGE_BYTES) {
                    // SAFETY: inside the live block, 8-aligned.
                    unsafe { (p.add(off) as *mut u64).write(rounds ^ off as u64) };
                }
                std::hint::spin_loop();
                for off in (0..n).step_by(PAGE_BYTES) {
                    // SAFETY: as above.
                    let v = unsafe { (p.add(off) as *const u64).read() };
                    assert_eq!(v, rounds ^ off as u64, "round {rounds}, offset {off}");
                }
                // SAFETY: the live block with its layout.
                unsafe { dealloc(p, layout) };
                rounds += 1;
            }
            rounds
        })
    };
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(1500) {
        reclaim_all(&g);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = owner.join().unwrap();
    assert!(rounds >= 1000);
    assert_all_returned(&g);
    Arc::into_inner(g).unwrap().destroy().unwrap();
}

/// A group over its limit (lowered below its usage) gets back the medium spans its
/// thread frees, but for the one the heap keeps parked; that one a charge needing the
/// room reclaims, for a block of another size.
#[test]
fn over_the_limit_freed_medium_spans_go_back_but_the_parked_one() {
    const BLOCK: usize = 512 * KIB;
    const N: usize = 6;
    let g = Group::create("/med_limit").unwrap();
    let layout = Layout::from_size_align(BLOCK, 16).unwrap();
    let mut blocks = Vec::with_capacity(N);
    let _in = g.enter().unwrap();
    for _ in 0..N {
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null());
        blocks.push(p);
    }
    drop(_in);
    assert!(current(&g) >= (N * BLOCK) as u64);
    // Lowered below the usage: the frees must bring it down.
    g.set_max(MIB as u64).unwrap();
    let _in = g.enter().unwrap();
    for p in blocks.drain(..) {
        // SAFETY: allocated above with `layout`.
        unsafe { dealloc(p, layout) };
    }
    drop(_in);
    let held = current(&g);
    assert!(
        held <= (BLOCK + 32 * PAGE_BYTES) as u64,
        "{held} bytes still charged after freeing everything over the limit"
    );
    // A block of another size, which the parked span does not serve and which does not
    // fit beside it: the charge reclaims the parked span.
    let other = Layout::from_size_align(700 * KIB, 16).unwrap();
    let _in = g.enter().unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { alloc(other) };
    assert!(
        !p.is_null(),
        "700 KiB refused in 1 MiB with the room parked"
    );
    // SAFETY: allocated above with `other`.
    unsafe { dealloc(p, other) };
    drop(_in);
    reclaim_all(&g);
    assert_eq!(current(&g), 0);
}

/// What `g` is charged for beyond its threads' stocks (pages charged ahead of use).
fn charged(g: &Group) -> u64 {
    let s = g.stat().expect("stat");
    s.current - s.stock
}

/// In a thread attached to `grower`: a 60 KiB block, and a 120 KiB block of `owner`'s
/// in the two slices right after it, every page written, freed. Four other groups'
/// heaps then push `owner`'s and `grower`'s out of the thread's warm heaps, so their
/// empty spans are given back: the 120 KiB block's slices are free and dirty, their 30
/// pages resident and still charged to `owner`. Then, in `grower`, the first block grows
/// in place to 180 KiB over them, and `check` sees the block, `owner`'s and `grower`'s
/// charges (`charged`) before and after.
fn grow_over_freed_pages(
    grower: Group,
    owner: Group,
    check: impl FnOnce(*mut u8, [u64; 2], [u64; 2]) + Send + 'static,
) {
    let visits: Vec<Group> = (0..4)
        .map(|i| Group::create(&format!("/grow-over-visit{i}")).unwrap())
        .collect();
    let seen = visits.clone();
    thread::spawn(move || {
        // A large mapping makes a visited group's heap and takes no slices (a small
        // block's span would take the freed ones).
        let visit = Layout::from_size_align(2 * MIB, 16).unwrap();
        let first = Layout::from_size_align(60 * KIB, 16).unwrap();
        let next = Layout::from_size_align(120 * KIB, 16).unwrap();
        grower.attach_current_thread().unwrap();
        // SAFETY: non-zero sizes; live blocks written within their sizes, then freed.
        let (p, q) = unsafe {
            let p = alloc(first);
            assert!(!p.is_null());
            p.write_bytes(1, 60 * KIB);
            owner.attach_current_thread().unwrap();
            let q = alloc(next);
            assert!(!q.is_null());
            q.write_bytes(2, 120 * KIB);
            dealloc(std::hint::black_box(q), next);
            (p, q)
        };
        assert_eq!(
            q as usize,
            p as usize + 64 * KIB,
            "the blocks are not neighbours"
        );
        for g in &seen {
            g.attach_current_thread().unwrap();
            // SAFETY: a non-zero size; freed at once.
            unsafe { dealloc(std::hint::black_box(alloc(visit)), visit) };
        }
        grower.attach_current_thread().unwrap();
        let before = [charged(&grower), charged(&owner)];
        // SAFETY: the live block `p` of layout `first`, grown.
        let p2 = unsafe { std::alloc::realloc(p, first, 180 * KIB) };
        assert_eq!(p2, p, "the block did not grow in place");
        // SAFETY: the first 60 KiB are the block's old contents.
        assert!(unsafe { std::slice::from_raw_parts(p2, 60 * KIB) }
            .iter()
            .all(|&b| b == 1));
        let after = [charged(&grower), charged(&owner)];
        check(p2, before, after);
        // SAFETY: the live block, grown to 180 KiB.
        unsafe { dealloc(p2, Layout::from_size_align(180 * KIB, 16).unwrap()) };
    })
    .join()
    .unwrap();
    for g in [grower, owner].iter().chain(&visits) {
        assert_all_returned(g);
    }
}

/// Grown over another group's freed pages, a medium block takes them over as a new span
/// would: they stay resident (no fault), their charge changes hands, and the page of
/// theirs past the block is purged.
#[test]
fn a_medium_block_grows_over_another_groups_freed_pages_without_faulting() {
    let a = Group::create("/grow-over-a").unwrap();
    let b = Group::create("/grow-over-b").unwrap();
    grow_over_freed_pages(a, b, move |p, before, after| {
        // SAFETY: the block's pages past its first slice, in the freed block's slices.
        let kept = resident(unsafe { p.add(64 * KIB) }, 116 * KIB);
        assert_eq!(
            kept, 29,
            "the other group's pages the block covers were not kept"
        );
        // SAFETY: the freed block's last page, past the grown block, in its slices.
        let past = resident(unsafe { p.add(180 * KIB) }, 4 * KIB);
        assert_eq!(
            past, 0,
            "the other group's page past the block stayed resident"
        );
        assert_eq!(before[1], 30 * PAGE, "the freed block's pages stay charged");
        assert_eq!(
            after[1], 0,
            "the other group kept a charge for pages it gave up"
        );
        assert_eq!(
            after[0] - before[0],
            30 * PAGE,
            "the block's group was not charged for its growth"
        );
    });
}

/// Grown over its own group's freed pages, a medium block is charged once for each
/// page it holds: those it covers were charged already, the one past it too.
#[test]
fn a_medium_block_grown_over_its_groups_freed_pages_is_charged_once_for_each() {
    let a = Group::create("/grow-own-a").unwrap();
    grow_over_freed_pages(a, a, move |p, before, after| {
        // SAFETY: the block's three slices: its own 15 pages, the page it grows by in
        // its first slice, the freed block's 30 pages (one past the block).
        unsafe { p.write_bytes(3, 180 * KIB) };
        let held = resident(p, 192 * KIB) as u64;
        assert_eq!(held, 46);
        assert_eq!(
            after[0] - before[0],
            PAGE,
            "the growth was not charged exactly the one page the group did not hold"
        );
    });
}
