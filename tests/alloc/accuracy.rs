//! Accounting accuracy and ownership with `CgMalloc` as the global allocator.
//!
//! Accuracy: in a group, one thread allocates N = 50 MiB in blocks of random sizes from
//! 4 KiB to 1 MiB (log-uniform, so that about 3/8 of the blocks are small blocks in
//! spans and the rest medium blocks, a span each; and, in a second test, uniform) and
//! keeps them:
//! - `N ≤ memory.current ≤ 1.125·N + 32 pages` (the bound for one thread: block rounding
//!   and span slack within 12.5%, plus at most one stock);
//! - `memory.stat`: `allocated ≥ N`; `allocated + cached ≤ small + large`; and
//!   `small + large + stock == memory.current` exactly (the group's charges are its page
//!   runs and its stock, nothing else); after `drain_stocks()`, `stock == 0` and
//!   `small + large == memory.current`.
//! - After freeing everything `allocated == 0` and, with the caches reclaimed,
//!   `memory.current == 0` exactly, `nr_charges == nr_uncharges`.
//!
//! Ownership (I7): blocks allocated in group A and freed by a thread attached to group B
//! credit A: A returns to 0 and B's usage does not move.

use crate::support::alloc::*;
use crate::support::rng::Rng;
use cgmalloc::Group;
use std::alloc::{alloc, dealloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};

const N: usize = 50 * MIB;

/// Should the tests of this module share a process (nextest gives each its own),
/// another test's `drain_stocks()` would move the stocks (and so `memory.current`) that
/// these tests compare exactly: they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Raw(*mut u8, Layout, u64);
// SAFETY: plain memory owned by whoever holds it.
unsafe impl Send for Raw {}

/// Allocates `N` bytes in total (the last block cut to fit) in the calling thread's
/// group; `sizes(rng)` draws a block size. The result vector is reserved by the caller.
fn allocate_n(rng: &mut Rng, out: &mut Vec<Raw>, sizes: impl Fn(&mut Rng) -> usize) {
    let mut total = 0;
    while total < N {
        let size = sizes(rng).min(N - total);
        let layout = Layout::from_size_align(size, 16).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null(), "alloc({size}) in an unlimited group");
        let key = rng.next();
        // SAFETY: a live block of `size` bytes.
        unsafe { fill(p, size, key) };
        out.push(Raw(p, layout, key));
        total += size;
    }
    assert_eq!(out.iter().map(|r| r.1.size()).sum::<usize>(), N);
}

fn free_all(blocks: Vec<Raw>) {
    for Raw(p, layout, key) in blocks {
        // SAFETY: live blocks with their layouts.
        unsafe {
            assert_eq!(check(p, layout.size(), key), None, "block of {layout:?}");
            dealloc(p, layout);
        }
    }
}

fn accuracy(path: &str, seed: u64, sizes: impl Fn(&mut Rng) -> usize) {
    let _serial = serial();
    let g = Group::create(path).unwrap();
    let mut rng = Rng(seed);
    let mut blocks = Vec::with_capacity(N / (4 * KIB) + 1);
    {
        let _in = g.enter().unwrap();
        allocate_n(&mut rng, &mut blocks, sizes);
    }
    let small_blocks = blocks.iter().filter(|r| r.1.size() <= 32 * KIB).count();
    // Out of the group; nothing allocated since.
    let s = g.stat().unwrap();
    let n = N as u64;
    let bound = n + n / 8 + 32 * PAGE;
    eprintln!(
        "{path}: {} blocks ({small_blocks} small), memory.current {} = N + {:.2}%, stock {}",
        blocks.len(),
        s.current,
        (s.current as f64 - n as f64) * 100.0 / n as f64,
        s.stock
    );
    assert!(s.current >= n, "memory.current {} < N = {n}", s.current);
    assert!(
        s.current <= bound,
        "memory.current {} > 1.125 N + 32 pages = {bound}",
        s.current
    );
    assert!(s.stock <= 32 * PAGE);
    assert_eq!(s.current % PAGE, 0);

    // memory.stat. Reading it allocates in the root, which may return this group's
    // pages from the thread's stock: compare it with a `stat()` taken right after (which
    // allocates nothing), not before.
    let st = kv(&g, "memory.stat");
    let s = g.stat().unwrap();
    assert!(st["allocated"] >= n, "allocated < N: {st:?}");
    assert_eq!(st["cached"], 0, "nothing freed yet: {st:?}");
    assert!(
        st["allocated"] + st["cached"] <= st["small"] + st["large"],
        "{st:?}"
    );
    assert_eq!(
        st["small"] + st["large"] + s.stock,
        s.current,
        "small + large + stock != memory.current: {st:?}, stat {s:?}"
    );
    assert!(st["small"] > 0 || small_blocks == 0, "{st:?}");
    assert!(st["large"] > 0, "{st:?}");
    cgmalloc::drain_stocks();
    let st = kv(&g, "memory.stat");
    let s = g.stat().unwrap();
    assert_eq!(s.stock, 0);
    assert_eq!(st["stock"], 0, "{st:?}");
    assert_eq!(st["small"] + st["large"], s.current, "{st:?}, stat {s:?}");
    assert_eq!(current_file(&g), s.current);
    assert!(s.peak >= s.current);

    // Free (from inside the group, as the owner), then everything goes back.
    {
        let _in = g.enter().unwrap();
        free_all(blocks);
    }
    let st = kv(&g, "memory.stat");
    assert_eq!(st["allocated"], 0, "all freed: {st:?}");
    let s = g.stat().unwrap();
    // Freed spans keep their pages charged as free slices until they are purged:
    // `free` counts them and the cached spans and mappings (`cached`, which `small` and
    // `large` count too).
    assert_eq!(
        st["small"] + st["large"] + (st["free"] - st["cached"]) + s.stock,
        s.current,
        "after free: {st:?}, stat {s:?}"
    );
    assert!(st["cached"] <= st["small"] + st["large"], "{st:?}");
    assert_all_returned(&g);
}

#[test]
fn accuracy_log_uniform_4k_to_1m() {
    accuracy("/acc_log", 0xacc0_1234, |r: &mut Rng| {
        r.log_range(4 * KIB as u64, MIB as u64) as usize
    });
}

#[test]
fn accuracy_uniform_4k_to_1m() {
    accuracy("/acc_uni", 0xacc0_5678, |r: &mut Rng| {
        r.range(4 * KIB as u64, MIB as u64) as usize
    });
}

/// Blocks of A (small and large) freed by a thread of B, with the allocating thread
/// gone (abandoned spans) or still alive (remote frees into its spans). The blocks are
/// handed over through a slot allocated outside both groups (a channel would allocate
/// its own buffers in the sender's group).
fn owner_correct(tag: &str, allocator_exits_first: bool) {
    let _serial = serial();
    let a = Group::create(&format!("/own_{tag}_a")).unwrap();
    let b = Group::create(&format!("/own_{tag}_b")).unwrap();
    let slot: Arc<Mutex<Option<Vec<Raw>>>> = Arc::new(Mutex::new(None));
    let handed = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let owner_reclaimed = Arc::new(AtomicU64::new(u64::MAX));
    let allocator = {
        let (slot, handed, release) = (slot.clone(), handed.clone(), release.clone());
        let owner_reclaimed = owner_reclaimed.clone();
        std::thread::spawn(move || {
            a.attach_current_thread().unwrap();
            let mut rng = Rng(7);
            let mut blocks = Vec::with_capacity(4096);
            for i in 0..3000 {
                let size = if i % 10 == 0 {
                    rng.range(33 * KIB as u64, 512 * KIB as u64)
                } else {
                    rng.log_range(1, 32 * KIB as u64)
                } as usize;
                let layout = Layout::from_size_align(size, 16).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe { alloc(layout) };
                assert!(!p.is_null());
                let key = rng.next();
                // SAFETY: a live block.
                unsafe { fill(p, size, key) };
                blocks.push(Raw(p, layout, key));
            }
            *slot.lock().unwrap() = Some(blocks);
            handed.wait();
            if !allocator_exits_first {
                // Stay alive (still attached to A) until the blocks were freed elsewhere,
                // then reclaim A from here, the thread that owns A's spans.
                release.wait();
                quiesce(&a);
                owner_reclaimed.store(current(&a), Ordering::SeqCst);
            }
        })
    };
    handed.wait();
    let mut allocator = Some(allocator);
    if allocator_exits_first {
        allocator.take().unwrap().join().unwrap();
    }
    let a_full = current(&a);
    assert!(a_full >= 10 * MIB as u64, "A holds the blocks: {a_full}");
    let b_result = {
        let slot = slot.clone();
        std::thread::spawn(move || {
            b.attach_current_thread().unwrap();
            // B holds some memory of its own.
            let own: Vec<Vec<u8>> = (0..100).map(|i| vec![i as u8; 1000 * i + 1]).collect();
            let blocks = slot.lock().unwrap().take().unwrap();
            let b_before = b.stat().unwrap();
            let b_alloc_before = stat_key(&b, "allocated");
            // The read allocates in B: measure B again after it, with nothing that
            // allocates between that measurement and the frees.
            let b_before_current = b.stat().unwrap().current;
            free_all(blocks);
            let b_after = b.stat().unwrap();
            let b_alloc_after = stat_key(&b, "allocated");
            assert!(own
                .iter()
                .enumerate()
                .all(|(i, v)| v.iter().all(|&x| x == i as u8)));
            drop(own);
            (
                b_before,
                b_before_current,
                b_after,
                b_alloc_before,
                b_alloc_after,
            )
        })
        .join()
        .unwrap()
    };
    let (b_before, b_before_current, b_after, b_alloc_before, b_alloc_after) = b_result;
    assert_eq!(
        b_after.current, b_before_current,
        "freeing A's blocks changed B's memory.current"
    );
    assert_eq!(
        b_after.peak,
        b_before.peak.max(b_before_current),
        "B's peak moved"
    );
    assert_eq!(b_alloc_after, b_alloc_before, "B's allocated bytes moved");
    // Every block of A is free: A's live bytes are 0 (checked last, below).
    let a_allocated_after_free = stat_key(&a, "allocated");
    if !allocator_exits_first {
        // What reclaim achieves while the owner of A's spans lives (informational).
        quiesce(&a);
        eprintln!(
            "A while its allocating thread lives, all its blocks freed by B, after \
             drain + reclaim: memory.current {} (was {a_full}), memory.stat {:?}",
            current(&a),
            kv(&a, "memory.stat")
        );
        release.wait();
        allocator.take().unwrap().join().unwrap();
    }
    quiesce(&a);
    assert_empty(&a);
    quiesce(&b);
    assert_empty(&b);
    // Checked last, so that a failure here does not hide the checks above.
    let mut problems = Vec::new();
    if a_allocated_after_free != 0 {
        problems.push(format!(
            "memory.stat allocated of A reads {a_allocated_after_free} with every block of A \
             freed (by B)"
        ));
    }
    let by_owner = owner_reclaimed.load(Ordering::SeqCst);
    if !allocator_exits_first && by_owner != 0 {
        problems.push(format!(
            "A reads memory.current {by_owner} after drain_stocks + reclaim(u64::MAX) run by \
             the thread owning its spans, with every block of A freed (by B)"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("; "));
}

#[test]
fn owner_correct_after_the_allocating_thread_exited() {
    owner_correct("exited", true);
}

#[test]
fn owner_correct_while_the_allocating_thread_lives() {
    owner_correct("alive", false);
}

/// `memory.stat` of group `path` (with `memory.max` = `max`, if given) walks every span
/// descriptor while the group's thread formats, resets and releases them (small spans of
/// every class, medium spans, large mappings, slices going back to their segments with
/// `trim`). Under ThreadSanitizer (scripts/sanitize.sh) this is where a plain access to a
/// descriptor field the walk reads shows up as a race; here every snapshot must parse,
/// and the group must hold nothing once its thread is done.
fn stat_walk_while_spans_change(path: &str, max: Option<&str>) {
    let _s = serial();
    let g = Arc::new(Group::create(path).unwrap());
    if let Some(max) = max {
        g.write("memory.max", max).unwrap();
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let owner = {
        let (g, done) = (g.clone(), done.clone());
        std::thread::spawn(move || {
            let _in = g.enter().unwrap();
            let mut rng = Rng(0x57a7);
            for _ in 0..150 {
                let mut blocks = Vec::with_capacity(64);
                for _ in 0..64 {
                    let layout = layout(rng.log_range(8, 4 << 20) as usize);
                    // SAFETY: non-zero size.
                    let p = unsafe { alloc(layout) };
                    assert!(!p.is_null());
                    blocks.push((p, layout));
                }
                for (p, layout) in blocks {
                    // SAFETY: a live block with its layout.
                    unsafe { dealloc(p, layout) };
                }
                cgmalloc::trim();
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut reads = 0u64;
    while !done.load(Ordering::Acquire) {
        let st = kv(&g, "memory.stat");
        assert!(
            st.contains_key("allocated") && st.contains_key("small"),
            "{st:?}"
        );
        reads += 1;
    }
    owner.join().unwrap();
    assert!(reads > 0);
    assert_all_returned(&g);
    Arc::into_inner(g).unwrap().destroy().unwrap();
}

#[test]
fn memory_stat_read_while_another_thread_makes_and_releases_spans() {
    stat_walk_while_spans_change("/acc_stat_walk", None);
}

#[test]
fn memory_stat_read_while_a_limited_groups_thread_makes_and_releases_spans() {
    stat_walk_while_spans_change("/acc_stat_walk_lim", Some("512M"));
}
