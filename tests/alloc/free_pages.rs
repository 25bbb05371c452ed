//! Free pages: a page is charged from the first block handed out on it until it goes
//! back to the OS. Freed blocks' pages stay charged (as `free` in `memory.stat`) to the
//! group that last used them until they are purged or reclaimed; a destroyed group gives
//! its free pages back at once; `malloc_trim` and `memory.reclaim` say truly what they
//! did. Every band: small blocks, medium blocks, large mappings.

use crate::support::alloc::*;
use cgmalloc::Group;
use std::alloc::{alloc, dealloc, Layout};

/// Sizes of every band: small (one and several per page), medium, large.
const SIZES: [usize; 6] = [16, 1000, 24 * KIB, 200 * KIB, 900 * KIB, 3 * MIB];

struct Blocks(Vec<(*mut u8, Layout)>);

/// `n` blocks of each size of `SIZES`, written over (so their pages are resident).
fn take(n: usize) -> Blocks {
    let mut v = Vec::with_capacity(n * SIZES.len());
    for &size in &SIZES {
        let l = Layout::from_size_align(size, 16).unwrap();
        for _ in 0..n {
            // SAFETY: non-zero size.
            let p = unsafe { alloc(l) };
            assert!(!p.is_null(), "{size} bytes refused");
            // SAFETY: a live block of `size` bytes.
            unsafe { p.write_bytes(0x5a, size) };
            v.push((p, l));
        }
    }
    Blocks(v)
}

fn give_back(b: Blocks) {
    for (p, l) in b.0 {
        // SAFETY: live blocks with their layouts.
        unsafe { dealloc(p, l) };
    }
}

fn dying(parent: &Group) -> u64 {
    kv(parent, "cgroup.stat")["nr_dying_descendants"]
}

#[test]
fn freed_pages_stay_charged_as_free_until_reclaimed() {
    let g = Group::create("/fp_free").unwrap();
    let blocks = {
        let _in = g.enter().unwrap();
        take(64)
    };
    cgmalloc::drain_stocks();
    let live = current(&g);
    {
        let _in = g.enter().unwrap();
        give_back(blocks);
    }
    cgmalloc::drain_stocks();
    cgmalloc::audit().expect("records and counters agree");
    // Reading memory.stat allocates in the root, whose first spans may take over some
    // of this group's free slices (another group's pages are purged first): read it
    // once for that, then compare a second read with a `stat` taken right after.
    let _ = kv(&g, "memory.stat");
    let st = kv(&g, "memory.stat");
    assert_eq!(st["allocated"], 0, "{st:?}");
    // What stays charged is what stays resident: the free pages, counted as such.
    assert!(
        st["free"] > 0,
        "nothing charged as free after the frees: {st:?}"
    );
    let s = g.stat().unwrap();
    assert_eq!(
        st["small"] + st["large"] + (st["free"] - st["cached"]) + s.stock,
        s.current,
        "{st:?}, {s:?}"
    );
    assert!(current(&g) <= live, "{} > {live}", current(&g));
    // Reclaim gives them back, and says it did.
    let held = current(&g);
    g.reclaim(held / 2).expect("reclaim of half the free pages");
    assert!(current(&g) < held);
    assert_all_returned(&g);
    assert_eq!(stat_key(&g, "free"), 0);
    g.destroy().unwrap();
}

#[test]
fn a_destroyed_group_whose_blocks_were_freed_is_not_kept_dying() {
    let parent = Group::create("/fp_dead").unwrap();
    let g = Group::create("/fp_dead/g").unwrap();
    let blocks = {
        let _in = g.enter().unwrap();
        take(16)
    };
    {
        let _in = g.enter().unwrap();
        give_back(blocks);
    }
    assert!(
        current(&g) > 0,
        "the freed pages stay charged while the group lives"
    );
    g.destroy().unwrap();
    cgmalloc::drain_stocks();
    // No trim, no reclaim: the destroy gave the free pages back.
    assert_eq!(dying(&parent), 0, "{:?}", kv(&parent, "memory.stat"));
    assert_eq!(current(&parent), 0, "{:?}", kv(&parent, "memory.stat"));
    parent.destroy().unwrap();
}

#[test]
fn a_group_destroyed_with_live_blocks_goes_as_they_are_freed() {
    let parent = Group::create("/fp_late").unwrap();
    let g = Group::create("/fp_late/g").unwrap();
    let blocks = {
        let _in = g.enter().unwrap();
        take(16)
    };
    g.destroy().unwrap();
    assert_eq!(dying(&parent), 1, "live blocks keep the group dying");
    // Freed from the root: the pages of a dying group go back as they are freed.
    give_back(blocks);
    cgmalloc::drain_stocks();
    assert_eq!(dying(&parent), 0, "{:?}", kv(&parent, "memory.stat"));
    assert_eq!(current(&parent), 0, "{:?}", kv(&parent, "memory.stat"));
    parent.destroy().unwrap();
}

#[test]
fn malloc_trim_gives_back_every_free_page_and_says_whether_it_did() {
    let g = Group::create("/fp_trim").unwrap();
    let blocks = {
        let _in = g.enter().unwrap();
        take(32)
    };
    {
        let _in = g.enter().unwrap();
        give_back(blocks);
    }
    assert!(stat_key(&g, "free") > 0);
    assert!(cgmalloc::trim(), "the first trim released the free pages");
    cgmalloc::drain_stocks();
    assert_eq!(current(&g), 0, "{:?}", kv(&g, "memory.stat"));
    assert!(!cgmalloc::trim(), "nothing was left for a second trim");
    g.destroy().unwrap();
}

#[test]
fn memory_reclaim_succeeds_when_it_freed_what_was_asked() {
    let g = Group::create("/fp_reclaim").unwrap();
    let blocks = {
        let _in = g.enter().unwrap();
        take(32)
    };
    {
        let _in = g.enter().unwrap();
        give_back(blocks);
    }
    cgmalloc::drain_stocks();
    let held = current(&g);
    assert!(held >= 4 << 20, "{held}");
    g.write("memory.reclaim", "1M")
        .expect("1M of free pages reclaimed");
    assert!(current(&g) <= held - (1 << 20));
    // More than is left: EAGAIN, after giving back all there was.
    let e = g.reclaim(held * 2).unwrap_err();
    assert_eq!(e.errno(), libc::EAGAIN);
    cgmalloc::drain_stocks();
    assert_eq!(current(&g), 0, "{:?}", kv(&g, "memory.stat"));
    g.destroy().unwrap();
}

#[test]
fn the_root_reports_the_allocators_metadata_and_groups_do_not() {
    let g = Group::create("/fp_meta").unwrap();
    let blocks = {
        let _in = g.enter().unwrap();
        take(4)
    };
    let root = kv(&Group::root(), "memory.stat");
    // At least the header of the segment the small blocks live in.
    assert!(root["meta"] >= 4096, "{root:?}");
    assert!(!kv(&g, "memory.stat").contains_key("meta"));
    {
        let _in = g.enter().unwrap();
        give_back(blocks);
    }
    assert_all_returned(&g);
    g.destroy().unwrap();
}

fn read_eventfd(fd: &std::os::fd::OwnedFd) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v` from a descriptor we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    (n == 8).then_some(v)
}

#[test]
fn a_threshold_is_crossed_downwards_when_the_pages_go_back_not_when_blocks_are_freed() {
    let g = Group::create("/fp_thr").unwrap();
    let fd = g.threshold_eventfd(8 << 20).unwrap();
    let blocks = {
        let _in = g.enter().unwrap();
        take(16)
    };
    cgmalloc::drain_stocks();
    assert_eq!(read_eventfd(&fd), Some(1), "crossed upwards");
    {
        let _in = g.enter().unwrap();
        give_back(blocks);
    }
    cgmalloc::drain_stocks();
    // The freed blocks' pages are still held, and charged: usage has not come down.
    assert!(current(&g) > 8 << 20, "{:?}", kv(&g, "memory.stat"));
    assert_eq!(
        read_eventfd(&fd),
        None,
        "no crossing while the pages are held"
    );
    reclaim_all(&g);
    cgmalloc::drain_stocks();
    assert_eq!(current(&g), 0, "{:?}", kv(&g, "memory.stat"));
    assert_eq!(
        read_eventfd(&fd),
        Some(1),
        "crossed downwards when they went back"
    );
    g.threshold_remove(fd).unwrap();
    g.destroy().unwrap();
}

#[test]
fn another_group_takes_over_free_pages_with_their_charge() {
    // One thread allocates in /fp_a, frees, then allocates in /fp_b: the free slices
    // /fp_a left are reused by /fp_b's spans, their pages resident, so their charge
    // moves from /fp_a to /fp_b (no system call, no fault); the counters keep matching
    // the records.
    let a = Group::create("/fp_a").unwrap();
    let b = Group::create("/fp_b").unwrap();
    let l = Layout::from_size_align(1000, 16).unwrap();
    const N: usize = 8000; // 8 MB of 1000 B blocks: many spans beyond the heap's cache
    let fill = |g: &Group| {
        let _in = g.enter().unwrap();
        (0..N)
            .map(|_| {
                // SAFETY: non-zero size.
                let p = unsafe { alloc(l) };
                assert!(!p.is_null());
                // SAFETY: a live block of 1000 bytes.
                unsafe { p.write_bytes(0x5a, l.size()) };
                p
            })
            .collect::<Vec<_>>()
    };
    let free_all = |g: &Group, v: Vec<*mut u8>| {
        let _in = g.enter().unwrap();
        for p in v {
            // SAFETY: live blocks of this layout.
            unsafe { dealloc(p, l) };
        }
    };
    let blocks = fill(&a);
    free_all(&a, blocks);
    // No reading of interface files here (they allocate in the root, whose spans would
    // take over some of the free slices), and no delay (they would be purged).
    let a_before = current(&a);
    let faults = minor_faults();
    let blocks = fill(&b);
    let faulted = minor_faults() - faults;
    println!("faulted {faulted} pages while filling /fp_b");
    cgmalloc::drain_stocks();
    cgmalloc::audit().expect("records and counters agree after the hand-over");
    let a_after = current(&a);
    let st = kv(&b, "memory.stat");
    assert!(
        a_before - a_after > MIB as u64,
        "/fp_a's free pages did not move to /fp_b: /fp_a {a_before} -> {a_after}, /fp_b {st:?}"
    );
    assert!(
        st["small"] >= N as u64 * 1000,
        "/fp_b is charged for its blocks: {st:?}"
    );
    // Taken over resident, not purged and faulted in again (purging them faults in
    // about as many pages as the blocks cover; some of /fp_a's pages are in its heap's
    // cache, and some slices may pass their purge delay meanwhile).
    // Under ThreadSanitizer every access also faults in shadow pages (scripts/sanitize.sh
    // sets TSAN_OPTIONS): the count says nothing there. AddressSanitizer (ASAN_OPTIONS)
    // faults one shadow page for every 8 pages the blocks cover.
    let pages = (N * l.size()) as u64 / PAGE;
    let shadow = if std::env::var_os("ASAN_OPTIONS").is_some() {
        pages / 8 + 1
    } else {
        0
    };
    assert!(
        faulted < pages * 2 / 3 + shadow || std::env::var_os("TSAN_OPTIONS").is_some(),
        "/fp_b faulted {faulted} pages for {pages} pages of blocks on /fp_a's free slices"
    );
    free_all(&b, blocks);
    assert_all_returned(&a);
    assert_all_returned(&b);
    a.destroy().unwrap();
    b.destroy().unwrap();
}

/// Minor page faults of the calling thread so far.
fn minor_faults() -> u64 {
    // SAFETY: `getrusage` writes the struct it is given.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut r) }, 0);
    r.ru_minflt as u64
}
