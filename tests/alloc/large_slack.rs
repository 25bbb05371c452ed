//! A cached large mapping reused for a smaller block keeps the pages past the block
//! (its slack) resident and charged as the group's cache: `memory.stat` counts them
//! under `large` and `cached`, reclaim purges and uncharges them while the block lives
//! (its contents untouched), a resize or free takes them back, and a group at its `max`
//! gets them uncharged at once. With `CgMalloc` as the global allocator; every test ends
//! with its group at exactly 0.

use crate::support::alloc::*;
use crate::support::rng::Rng;
use cgmalloc::Group;
use std::alloc::{alloc, dealloc, realloc};
use std::thread;

/// A block of `size` bytes, every page written, then freed: it becomes a cached mapping.
fn cache_one(size: usize) {
    let p = written(size);
    // SAFETY: a live block of this layout.
    unsafe { dealloc(std::hint::black_box(p), layout(size)) };
}

#[test]
fn a_smaller_block_keeps_the_rest_as_cached_slack() {
    let g = Group::create("/slack").unwrap();
    thread::spawn(move || {
        g.attach_current_thread().unwrap();
        let m = MIB as u64;
        cache_one(8 * MIB);
        assert_eq!(stat_key(&g, "large"), 8 * m);
        assert_eq!(stat_key(&g, "cached"), 8 * m);

        // The cached 8 MiB serve 5 MiB: 3 MiB stay resident and charged, as cache.
        let size = 5 * MIB;
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout(size)) };
        assert!(!p.is_null());
        let key = 0x51ac;
        // SAFETY: a live block of `size` bytes.
        unsafe { fill(p, size, key) };
        assert_eq!(stat_key(&g, "large"), 8 * m);
        assert_eq!(stat_key(&g, "cached"), 3 * m);
        assert_eq!(stat_key(&g, "allocated"), 5 * m);
        assert!(current(&g) >= 8 * m);
        // SAFETY: the slack lies in the block's mapping, right after it.
        let slack = unsafe { p.add(size) };
        assert_eq!(resident(slack, 3 * MIB), 3 * MIB / PAGE as usize);

        // Reclaim purges and uncharges the slack of the live block.
        reclaim_all(&g);
        assert_eq!(stat_key(&g, "cached"), 0);
        assert_eq!(stat_key(&g, "large"), 5 * m);
        assert_eq!(
            resident(slack, 3 * MIB),
            0,
            "slack pages resident after reclaim"
        );
        // SAFETY: the live block.
        assert_eq!(unsafe { check(p, size, key) }, None);

        // Growing it now charges the new pages.
        // SAFETY: a live block of this layout.
        let p = unsafe { realloc(p, layout(size), 7 * MIB) };
        assert!(!p.is_null());
        assert_eq!(stat_key(&g, "large"), 7 * m);
        assert_eq!(stat_key(&g, "cached"), 0);
        // SAFETY: the live block, grown.
        assert_eq!(unsafe { check(p, size, key) }, None);
        // SAFETY: a live block of this layout.
        unsafe { dealloc(p, layout(7 * MIB)) };

        // A resize takes the slack back before fitting the block: 5 MiB out of a cached
        // 7 MiB, grown to 6 MiB, holds 6 MiB and no cache.
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout(size)) };
        assert!(!p.is_null());
        assert_eq!(stat_key(&g, "cached"), 2 * m);
        // SAFETY: a live block of `size` bytes.
        unsafe { fill(p, size, key) };
        // SAFETY: a live block of this layout.
        let p = unsafe { realloc(p, layout(size), 6 * MIB) };
        assert!(!p.is_null());
        assert_eq!(stat_key(&g, "large"), 6 * m);
        assert_eq!(stat_key(&g, "cached"), 0);
        // SAFETY: the live block.
        assert_eq!(unsafe { check(p, size, key) }, None);

        // Freed, the block and its slack go back to the cache as one mapping.
        // SAFETY: a live block of this layout.
        unsafe { dealloc(p, layout(6 * MIB)) };
        // SAFETY: non-zero size.
        let p = std::hint::black_box(unsafe { alloc(layout(size)) });
        assert_eq!(stat_key(&g, "cached"), m);
        // SAFETY: a live block of this layout.
        unsafe { dealloc(p, layout(size)) };
        assert_eq!(stat_key(&g, "cached"), 6 * m);
        assert_eq!(stat_key(&g, "allocated"), 0);
    })
    .join()
    .unwrap();
    assert_all_returned(&g);
    g.destroy().unwrap();
}

#[test]
fn a_group_at_its_max_keeps_no_slack() {
    let g = Group::create("/slack-max").unwrap();
    thread::spawn(move || {
        g.attach_current_thread().unwrap();
        cache_one(8 * MIB);
        cgmalloc::drain_stocks();
        g.set_max(current(&g)).unwrap();
        // SAFETY: non-zero size.
        let p = std::hint::black_box(unsafe { alloc(layout(5 * MIB)) });
        // The limit goes before anything else allocates here (reading a file does).
        g.set_max(u64::MAX).unwrap();
        assert!(!p.is_null());
        assert_eq!(stat_key(&g, "cached"), 0);
        assert_eq!(stat_key(&g, "large"), 5 * MIB as u64);
        // SAFETY: the tail lies in the block's mapping, right after it.
        assert_eq!(resident(unsafe { p.add(5 * MIB) }, 3 * MIB), 0);
        // SAFETY: a live block of this layout.
        unsafe { dealloc(p, layout(5 * MIB)) };
    })
    .join()
    .unwrap();
    assert_all_returned(&g);
    g.destroy().unwrap();
}

#[test]
fn another_groups_mapping_hands_over_its_slack_too() {
    let a = Group::create("/slack-from").unwrap();
    let b = Group::create("/slack-to").unwrap();
    thread::spawn(move || {
        a.attach_current_thread().unwrap();
        cache_one(8 * MIB);
        assert_eq!(stat_key(&a, "cached"), 8 * MIB as u64);
        // The same thread in `b`: its cache still holds `a`'s mapping, which serves the
        // block with all its pages, the 3 MiB past it kept as `b`'s slack.
        b.attach_current_thread().unwrap();
        // SAFETY: non-zero size.
        let p = std::hint::black_box(unsafe { alloc(layout(5 * MIB)) });
        assert!(!p.is_null());
        assert_eq!(stat_key(&a, "large"), 0);
        assert_eq!(stat_key(&b, "large"), 8 * MIB as u64);
        assert_eq!(stat_key(&b, "cached"), 3 * MIB as u64);
        assert_eq!(stat_key(&b, "allocated"), 5 * MIB as u64);
        // SAFETY: the slack lies in the block's mapping, right after it.
        assert_eq!(
            resident(unsafe { p.add(5 * MIB) }, 3 * MIB),
            3 * MIB / PAGE as usize
        );
        // SAFETY: a live block of this layout.
        unsafe { dealloc(p, layout(5 * MIB)) };
    })
    .join()
    .unwrap();
    assert_all_returned(&a);
    assert_all_returned(&b);
}

/// A thread back in its group, whose cache holds a shorter mapping of that group and a
/// longer one of the group it visited, takes the longer one for a block longer than the
/// first: its charge changes hands, where the shorter one would grow by pages faulted
/// in or moved.
#[test]
fn a_longer_mapping_of_another_group_goes_before_a_shorter_one_of_its_own() {
    let ours = Group::create("/slack-own-short").unwrap();
    let theirs = Group::create("/slack-their-long").unwrap();
    thread::spawn(move || {
        // Two mappings, live at once, then cached: each freed in its own group.
        ours.attach_current_thread().unwrap();
        let short = written(4 * MIB);
        theirs.attach_current_thread().unwrap();
        let long = written(8 * MIB);
        // SAFETY: live blocks of these layouts.
        unsafe { dealloc(long, layout(8 * MIB)) };
        ours.attach_current_thread().unwrap();
        // SAFETY: as above.
        unsafe { dealloc(short, layout(4 * MIB)) };
        // SAFETY: non-zero size.
        let p = std::hint::black_box(unsafe { alloc(layout(6 * MIB)) });
        assert!(!p.is_null());
        assert_eq!(
            p, long,
            "the block got a mapping other than the longer one (the shorter one is at \
             {short:?})"
        );
        assert_eq!(stat_key(&theirs, "large"), 0, "the charge changed hands");
        // The longer mapping whole, its 2 MiB past the block as slack; the shorter one
        // still cached.
        assert_eq!(stat_key(&ours, "large"), 12 * MIB as u64);
        assert_eq!(stat_key(&ours, "cached"), 6 * MIB as u64);
        // SAFETY: a live block of this layout.
        unsafe { dealloc(p, layout(6 * MIB)) };
    })
    .join()
    .unwrap();
    assert_all_returned(&ours);
    assert_all_returned(&theirs);
}

/// A group near its `max` takes another group's longer mapping for a block: the block's
/// pages are charged through the whole charge path (reclaiming the group's own cached
/// mapping), but the tail past them only if the counters have room at once. Refused, the
/// tail is purged: keeping it never counts an OOM or calls the handler.
#[test]
fn near_its_max_a_group_takes_another_groups_mapping_without_its_slack() {
    let ours = Group::create("/slack-near-max").unwrap();
    let theirs = Group::create("/slack-lender").unwrap();
    ours.set_max(10 * MIB as u64).unwrap();
    thread::spawn(move || {
        theirs.attach_current_thread().unwrap();
        let long = written(8 * MIB);
        ours.attach_current_thread().unwrap();
        let live = written(3 * MIB);
        let short = written(4 * MIB);
        // SAFETY: live blocks of these layouts: both mappings cached, 7 MiB charged here.
        unsafe {
            dealloc(long, layout(8 * MIB));
            dealloc(short, layout(4 * MIB));
        }
        // SAFETY: non-zero size.
        let p = std::hint::black_box(unsafe { alloc(layout(6 * MIB)) });
        assert_eq!(p, long, "the block did not get the longer mapping");
        let s = ours.stat().unwrap();
        assert_eq!(s.events_oom, 0, "keeping the slack counted an OOM");
        assert!(s.current <= 10 * MIB as u64);
        // SAFETY: the tail lies in the block's mapping, right after it.
        assert_eq!(resident(unsafe { p.add(6 * MIB) }, 2 * MIB), 0);
        // SAFETY: live blocks of these layouts.
        unsafe {
            dealloc(p, layout(6 * MIB));
            dealloc(live, layout(3 * MIB));
        }
    })
    .join()
    .unwrap();
    assert_all_returned(&ours);
    assert_all_returned(&theirs);
}

/// One thread reuses cached mappings for blocks of other sizes (making slack), grows and
/// shrinks them and frees them, checking their contents, while another reclaims the
/// group in a loop (purging that slack under its feet).
#[test]
fn reclaim_races_with_resizes_and_frees() {
    const ROUNDS: usize = 4000;
    let g = Group::create("/slack-race").unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let reclaimer = thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            reclaim_all(&g);
            n += 1;
        }
        n
    });
    let worker = thread::spawn(move || {
        g.attach_current_thread().unwrap();
        let mut rng = Rng(0x51ac_0001);
        let mut live: Vec<(*mut u8, usize, u64)> = Vec::new();
        let mut bad = 0;
        for _ in 0..ROUNDS {
            let size = rng.range(MIB as u64 + 1, 6 * MIB as u64) as usize;
            // SAFETY: non-zero size.
            let p = unsafe { alloc(layout(size)) };
            assert!(!p.is_null());
            let key = rng.next();
            // SAFETY: a live block of `size` bytes.
            unsafe { fill(p, size, key) };
            live.push((p, size, key));
            if rng.chance(40) {
                let i = rng.below(live.len() as u64) as usize;
                let (p, size, key) = live[i];
                let to = rng.range(MIB as u64 + 1, 6 * MIB as u64) as usize;
                // SAFETY: a live block of this layout.
                let q = unsafe { realloc(p, layout(size), to) };
                assert!(!q.is_null());
                // SAFETY: the resized block keeps its first bytes (all written).
                bad += usize::from(unsafe { check(q, 512, key) }.is_some());
                // SAFETY: a live block of `to` bytes.
                unsafe { fill(q, to, key) };
                live[i] = (q, to, key);
            }
            if live.len() > 6 {
                let i = rng.below(live.len() as u64) as usize;
                let (p, size, key) = live.swap_remove(i);
                // SAFETY: a live block of this layout.
                unsafe {
                    bad += usize::from(check(p, size, key).is_some());
                    dealloc(p, layout(size));
                }
            }
        }
        for (p, size, key) in live {
            // SAFETY: a live block of this layout.
            unsafe {
                bad += usize::from(check(p, size, key).is_some());
                dealloc(p, layout(size));
            }
        }
        bad
    });
    let bad = worker.join().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = reclaimer.join().unwrap();
    assert_eq!(bad, 0, "corrupted blocks");
    assert!(rounds > 0);
    assert_all_returned(&g);
    g.destroy().unwrap();
}

/// A cached mapping of one group taken by another changes hands with its charge, and
/// the tail it keeps becomes the new group's slack, while another thread reclaims both
/// groups: both end at exactly 0. (A reclaimer that saw the slack before the mapping's
/// new group and size could uncharge the old group a second time, a page counter
/// underflow; that window is a few instructions wide and this test did not hit it in 4
/// runs of the code that had it, so it guards the hand-over under reclaim in general.)
#[test]
fn slack_purged_while_a_mapping_changes_group() {
    let top = Group::create("/hand").unwrap();
    let a = Group::create("/hand/a").unwrap();
    let b = Group::create("/hand/b").unwrap();
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    // Enough rounds of both sides to cross the windows many times; counted, not timed,
    // so a loaded machine takes longer instead of failing (a limit stops a hang).
    const ROUNDS: u64 = 200;
    const RECLAIMS: u64 = 100;
    let stop = Arc::new(AtomicBool::new(false));
    let reclaims = Arc::new(AtomicU64::new(0));
    let reclaimer = {
        let (stop, reclaims) = (stop.clone(), reclaims.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                reclaim_all(&a);
                reclaim_all(&b);
                reclaims.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let seen = reclaims.clone();
    let handed = thread::spawn(move || {
        let started = std::time::Instant::now();
        let mut rounds = 0u64;
        while (rounds < ROUNDS || seen.load(Ordering::Relaxed) < RECLAIMS)
            && started.elapsed() < std::time::Duration::from_secs(120)
        {
            for (from, to) in [(a, b), (b, a)] {
                from.attach_current_thread().unwrap();
                cache_one(8 * MIB);
                to.attach_current_thread().unwrap();
                // Served by the cached 8 MiB of `from`: 6 MiB of slack for `to`.
                cache_one(2 * MIB);
            }
            rounds += 1;
        }
        Group::root().attach_current_thread().unwrap();
        rounds
    })
    .join()
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    reclaimer.join().unwrap();
    let reclaims = reclaims.load(Ordering::Relaxed);
    assert!(
        handed >= ROUNDS && reclaims >= RECLAIMS,
        "{handed} rounds, {reclaims} reclaims in 120 s"
    );
    for g in [a, b, top] {
        quiesce(&g);
        assert_eq!(current(&g), 0, "memory.stat {:?}", kv(&g, "memory.stat"));
    }
}
