//! `memory.max` enforced through the allocator, with `CgMalloc` as the global allocator.
//!
//! A group with `memory.max` = 16 MiB, entered by the test thread, which first fills a
//! cache of 64 KiB boxes (4 MiB, in the group), then allocates 64 KiB blocks and then
//! 1 KiB blocks with `std::alloc::alloc` until each returns null:
//! - both eventually return null (not an abort), and `memory.peak` ≤ 16 MiB;
//! - `memory.events` counts `max` and `oom_kill`; `memory.failcnt` > 0;
//! - after a reclaim callback is registered (`Group::on_reclaim`) that frees boxes of the
//!   cache and returns the bytes freed, the allocation that failed succeeds, the
//!   callback was called (with a positive `bytes_wanted`), `memory.stat` counts
//!   `reclaim_calls` and `reclaimed`, and `memory.peak` is still ≤ 16 MiB.
//!
//! A second test lowers `memory.max` below the usage of live blocks: the write succeeds,
//! new allocations fail until blocks are freed, and then succeed again.
//!
//! A last one sets `memory.high`: a block a reclaim callback frees goes to the allocator's
//! cache, still charged, and the cache step that `high` runs after the callbacks uncharges
//! it before the overage is read, so the allocation above `high` is not throttled.

use crate::support::alloc::*;
use cgmalloc::Group;
use std::alloc::{alloc, dealloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const LIMIT: u64 = 16 << 20;

/// Allocates blocks of `layout` until one is refused (at most `cap`); returns them.
fn fill_until_null(layout: Layout, cap: usize, out: &mut Vec<*mut u8>) -> bool {
    for _ in 0..cap {
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        if p.is_null() {
            return true;
        }
        // SAFETY: a live block; touch it.
        unsafe { std::ptr::write_bytes(p, 0x11, layout.size()) };
        out.push(p);
    }
    false
}

#[test]
fn allocations_fail_at_max_and_a_reclaim_callback_makes_room() {
    let g = Group::create("/lim").unwrap();
    g.set_max(LIMIT).unwrap();
    let cache: Arc<Mutex<Vec<Box<[u8]>>>> = Arc::new(Mutex::new(Vec::with_capacity(64)));
    let big = Layout::from_size_align(64 * KIB, 16).unwrap();
    let small = Layout::from_size_align(KIB, 16).unwrap();
    // Bookkeeping outside the group.
    let mut held_big: Vec<*mut u8> = Vec::with_capacity(1024);
    let mut held_small: Vec<*mut u8> = Vec::with_capacity(32 * 1024);
    let calls = Arc::new(AtomicU64::new(0));
    let wanted_seen = Arc::new(AtomicU64::new(0));
    let (big_refused, small_refused, retried_big, retried_small, callback_left);
    {
        let _in = g.enter().unwrap();
        {
            let mut c = cache.lock().unwrap();
            for i in 0..64 {
                c.push(vec![i as u8; 64 * KIB].into_boxed_slice());
            }
        }
        big_refused = fill_until_null(big, 1024, &mut held_big);
        small_refused = fill_until_null(small, 32 * 1024, &mut held_small);
    }
    // The reclaim callback frees boxes of the cache until it has freed what was asked
    // for, and says how much. (Registering boxes the closure: done outside the full
    // group, where the allocation would fail and abort.)
    let r = {
        let (cache, calls, wanted_seen) = (cache.clone(), calls.clone(), wanted_seen.clone());
        g.on_reclaim(move |wanted| {
            calls.fetch_add(1, Ordering::Relaxed);
            wanted_seen.fetch_max(wanted, Ordering::Relaxed);
            let mut c = cache.lock().unwrap();
            let mut freed = 0u64;
            while freed < wanted {
                match c.pop() {
                    Some(b) => freed += b.len() as u64,
                    None => break,
                }
            }
            freed
        })
        .unwrap()
    };
    {
        let _in = g.enter().unwrap();
        // The allocations that were refused above.
        // SAFETY: non-zero sizes.
        let p = unsafe { alloc(big) };
        retried_big = !p.is_null();
        if retried_big {
            held_big.push(p);
        }
        let q = unsafe { alloc(small) };
        retried_small = !q.is_null();
        if retried_small {
            held_small.push(q);
        }
        drop(r);
        callback_left = cache.lock().unwrap().len();
    }
    let s = g.stat().unwrap();
    let st = kv(&g, "memory.stat");
    let ev = kv(&g, "memory.events");
    eprintln!(
        "{} blocks of 64 KiB, {} of 1 KiB before the refusals; {} callback calls, \
         {callback_left} boxes left; peak {}; {ev:?}",
        held_big.len(),
        held_small.len(),
        calls.load(Ordering::Relaxed),
        s.peak
    );
    assert!(big_refused, "64 KiB allocations were never refused");
    assert!(small_refused, "1 KiB allocations were never refused");
    assert!(
        held_big.len() >= 100,
        "only {} blocks of 64 KiB fit",
        held_big.len()
    );
    assert!(
        s.peak <= LIMIT,
        "memory.peak {} > memory.max {LIMIT}",
        s.peak
    );
    assert!(s.current <= LIMIT);
    assert!(s.failcnt > 0);
    assert!(ev["max"] > 0, "{ev:?}");
    assert!(ev["oom_kill"] > 0, "{ev:?}");
    assert!(ev["oom"] >= ev["oom_kill"], "{ev:?}");
    assert_eq!(ev["oom_kill"], s.events_oom_kill);
    assert!(
        retried_big,
        "the 64 KiB allocation still fails with the callback"
    );
    assert!(
        retried_small,
        "the 1 KiB allocation still fails with the callback"
    );
    assert!(
        calls.load(Ordering::Relaxed) > 0,
        "the callback was not called"
    );
    assert!(wanted_seen.load(Ordering::Relaxed) > 0);
    assert!(callback_left < 64, "the callback freed nothing");
    assert!(st["reclaim_calls"] > 0, "{st:?}");
    assert!(st["reclaimed"] >= 64 * KIB as u64, "{st:?}");

    for p in held_big {
        // SAFETY: live blocks of `big`.
        unsafe { dealloc(p, big) };
    }
    for p in held_small {
        // SAFETY: live blocks of `small`.
        unsafe { dealloc(p, small) };
    }
    cache.lock().unwrap().clear();
    quiesce(&g);
    assert_empty(&g);
}

#[test]
fn lowering_max_below_usage_refuses_until_memory_is_freed() {
    let g = Group::create("/lim_lower").unwrap();
    let layout = Layout::from_size_align(256 * KIB, 16).unwrap();
    let mut held: Vec<*mut u8> = Vec::with_capacity(64);
    let (refused_at_lowered, ok_after_free);
    {
        let _in = g.enter().unwrap();
        for _ in 0..40 {
            // SAFETY: non-zero size.
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null());
            unsafe { std::ptr::write_bytes(p, 1, layout.size()) };
            held.push(p);
        }
        // 10 MiB live; the limit goes to 4 MiB.
        g.set_max(4 << 20).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        refused_at_lowered = p.is_null();
        if !p.is_null() {
            held.push(p);
        }
        // Free down to 2 MiB of live blocks: allocations fit again.
        while held.len() > 8 {
            // SAFETY: live blocks of `layout`.
            unsafe { dealloc(held.pop().unwrap(), layout) };
        }
        let q = unsafe { alloc(layout) };
        ok_after_free = !q.is_null();
        if !q.is_null() {
            held.push(q);
        }
    }
    assert!(
        refused_at_lowered,
        "allocation above a lowered memory.max succeeded"
    );
    assert!(
        ok_after_free,
        "allocation refused after usage dropped below memory.max"
    );
    let s = g.stat().unwrap();
    assert!(s.current <= 4 << 20, "memory.current {}", s.current);
    for p in held {
        // SAFETY: live blocks of `layout`.
        unsafe { dealloc(p, layout) };
    }
    quiesce(&g);
    assert_empty(&g);
}

/// A large `realloc` refused by its own group fails after one trip down the charge path:
/// the OOM handler runs once and `oom`/`oom_kill` count one failed allocation, as for a
/// `malloc` of the new size. Growing in another group's thread may still move the block.
#[test]
fn a_refused_large_realloc_runs_the_oom_path_once() {
    let g = Group::create("/grow").unwrap();
    g.set_max(4 << 20).unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    g.on_oom(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        cgmalloc::OomAction::Fail
    })
    .unwrap();
    let two = Layout::from_size_align(2 << 20, 16).unwrap();
    let (p, grown) = {
        let _in = g.enter().unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { alloc(two) };
        assert!(!p.is_null());
        // SAFETY: `p` is live with layout `two`; the new size is non-zero.
        // `black_box`: an allocation whose result is only compared with null may be
        // removed by the optimizer, the comparison folded as if it had succeeded (some
        // builds of this test did so).
        let grown = std::hint::black_box(unsafe { std::alloc::realloc(p, two, 10 << 20) });
        (p, grown)
    };
    assert!(grown.is_null(), "10 MiB cannot fit under a 4 MiB max");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the OOM handler ran once");
    assert_eq!((event(&g, "oom"), event(&g, "oom_kill")), (1, 1));
    // From the root's thread, the same realloc moves the block into the root.
    // SAFETY: `p` is still live with layout `two`.
    let moved = std::hint::black_box(unsafe { std::alloc::realloc(p, two, 10 << 20) });
    assert!(!moved.is_null());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // SAFETY: the moved block, with its new layout.
    unsafe { dealloc(moved, Layout::from_size_align(10 << 20, 16).unwrap()) };
    // The old block left the group (its mapping may stay cached there, still charged).
    assert_eq!(stat_key(&g, "allocated"), 0);
}

/// `memory.high` with a reclaim callback that frees large blocks: a freed 4 MiB block goes
/// to the freeing thread's cache of mappings, still charged, and `high` uncharges it with
/// the cache step it runs after the callbacks, before it reads the overage. So an
/// allocation that lands 4 MiB (25%) over `high` does not sleep (without that step it
/// would sleep the 2 s cap) and the group ends back near `high`.
#[test]
fn high_uncharges_blocks_a_callback_frees_into_the_cache() {
    let g = Group::create("/high_cache").unwrap();
    let block = Layout::from_size_align(4 * MIB, 16).unwrap();
    // Bookkeeping outside the group.
    let held: Arc<Mutex<Vec<Box<[u8]>>>> = Arc::new(Mutex::new(Vec::with_capacity(8)));
    // What freeing the blocks left charged, as the callback sees it.
    let kept_in_callback = Arc::new(AtomicU64::new(0));
    {
        let _in = g.enter().unwrap();
        let mut h = held.lock().unwrap();
        for i in 0..4 {
            h.push(vec![i as u8 + 1; 4 * MIB].into_boxed_slice());
        }
    }
    cgmalloc::drain_stocks();
    let usage = current(&g);
    assert!(usage >= 16 * MIB as u64);
    g.set_high(usage).unwrap();
    let r = {
        let (held, kept) = (held.clone(), kept_in_callback.clone());
        g.on_reclaim(move |wanted| {
            // Nothing here allocates: an allocation would be charged to the group.
            let before = g.stat().unwrap().current;
            let mut h = held.lock().unwrap();
            let mut freed = 0u64;
            while freed < wanted {
                match h.pop() {
                    Some(b) => freed += b.len() as u64,
                    None => break,
                }
            }
            drop(h);
            // The premise of this test: the freed blocks stay charged, in the cache.
            let after = g.stat().unwrap().current;
            kept.store(freed.saturating_sub(before - after), Ordering::SeqCst);
            freed
        })
        .unwrap()
    };
    let (p, took) = {
        let _in = g.enter().unwrap();
        let t = std::time::Instant::now();
        // SAFETY: non-zero size.
        let p = std::hint::black_box(unsafe { alloc(block) });
        (p, t.elapsed())
    };
    assert!(!p.is_null());
    drop(r);
    let s = g.stat().unwrap();
    eprintln!(
        "4 MiB above high: {took:?}; freed by the callback and still charged {} KiB; \
         current {} KiB, high {} KiB",
        kept_in_callback.load(Ordering::SeqCst) >> 10,
        s.current >> 10,
        s.high >> 10
    );
    assert!(
        kept_in_callback.load(Ordering::SeqCst) >= 4 * MIB as u64,
        "the freed block was not kept charged in the cache: this test no longer tests \
         the cache step"
    );
    assert_eq!(s.events_high, 1);
    assert!(
        took < std::time::Duration::from_secs(1),
        "throttled for {took:?}"
    );
    // Within a tenth of the 4 MiB the allocation went over by.
    assert!(s.current <= s.high + 4 * MIB as u64 / 10, "{s:?}");
    assert_eq!(held.lock().unwrap().len(), 3, "one block freed");
    // SAFETY: a live block of `block`.
    unsafe { dealloc(p, block) };
    held.lock().unwrap().clear();
    quiesce(&g);
    assert_empty(&g);
}
