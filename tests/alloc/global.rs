//! `CgMalloc` as the Rust global allocator: standard collections, boxed slices of every
//! size from 1 B to 8 MiB, zeroed allocations (also when they reuse dirty memory),
//! over-aligned types and layouts (64 B up to 8 MiB), data moved to and dropped in other
//! threads, and `try_reserve` failing gracefully (an `Err`, no abort) at a group's
//! `memory.max`.
//!
//! Every test works in a group of its own and ends by freeing everything, draining the
//! stocks and reclaiming the caches: the group must then read exactly 0 (invariant I5).
//! Interface files are read from outside the group (reading allocates a `String`).

use crate::support::alloc::*;
use cgmalloc::Group;
use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::mpsc;
use std::thread;

#[test]
fn collections_work_and_are_charged() {
    let g = Group::create("/glob_coll").unwrap();
    let before = current(&g);
    assert_eq!(before, 0);
    let (v, map, tree, s, dq) = {
        let _in = g.enter().unwrap();
        let v: Vec<u64> = (0..1_000_000u64).map(|i| i * 3).collect();
        let mut map: HashMap<u64, String> = HashMap::new();
        for i in 0..100_000u64 {
            map.insert(i, format!("value-{i}"));
        }
        let mut tree: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for i in 0..50_000u32 {
            tree.insert(
                format!("k{:08}", i * 7 % 50_000),
                vec![i; (i % 13) as usize],
            );
        }
        let mut s = String::new();
        for i in 0..200_000u32 {
            s.push_str(&i.to_string());
            s.push(',');
        }
        let mut dq: VecDeque<Box<u64>> = VecDeque::new();
        for i in 0..100_000u64 {
            dq.push_back(Box::new(i));
            if i % 3 == 0 {
                dq.pop_front();
            }
        }
        (v, map, tree, s, dq)
    };
    // Contents.
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    assert_eq!(map.len(), 100_000);
    for i in (0..100_000u64).step_by(997) {
        assert_eq!(map[&i], format!("value-{i}"));
    }
    assert_eq!(tree.len(), 50_000);
    for (k, val) in tree.iter().step_by(101) {
        let key: u32 = k[1..].parse().unwrap();
        // key = i * 7 % 50000 with 7 invertible mod 50000.
        let i = val.first().copied();
        if let Some(i) = i {
            assert_eq!(i * 7 % 50_000, key);
            assert_eq!(val.len(), (i % 13) as usize);
            assert!(val.iter().all(|&x| x == i));
        }
    }
    let parsed: Vec<u32> = s
        .split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(parsed.len(), 200_000);
    assert!(parsed.iter().enumerate().all(|(i, &x)| x == i as u32));
    let dq_sum: u64 = dq.iter().map(|b| **b).sum();
    assert_eq!(dq.len(), 100_000 - 33_334);
    assert!(dq_sum > 0);

    // Accounting: the vector alone is 8 MB of live blocks in the group.
    let s1 = g.stat().unwrap();
    let stat = kv(&g, "memory.stat");
    assert!(s1.current >= 8_000_000, "memory.current {}", s1.current);
    assert!(stat["allocated"] >= 8_000_000, "{stat:?}");
    assert!(
        stat["allocated"] <= stat["small"] + stat["large"],
        "{stat:?}"
    );
    assert!(s1.peak >= s1.current);

    drop((v, map, tree, s, dq));
    quiesce(&g);
    assert_empty(&g);
}

/// Sizes 1..=2048, every 16 bytes up to 40 KiB (across the small/large boundary at
/// 32 KiB), then 2^k - 1, 2^k, 2^k + 1 and 3 * 2^(k-1) up to 8 MiB.
fn many_sizes() -> Vec<usize> {
    let mut sizes: Vec<usize> = (1..=2048).collect();
    sizes.extend((2048 + 16..=40 * KIB).step_by(16));
    for k in 11..=23 {
        let p = 1usize << k;
        sizes.extend([p - 1, p, p + 1, 3 * (p / 2)]);
    }
    sizes.retain(|&s| s <= 8 * MIB);
    sizes.push(8 * MIB);
    sizes
}

#[test]
fn boxed_slices_of_every_size_up_to_8_mib() {
    let g = Group::create("/glob_sizes").unwrap();
    let sizes = many_sizes();
    let total: usize = sizes.iter().sum();
    let mut boxes: Vec<Box<[u8]>> = Vec::with_capacity(sizes.len());
    {
        let _in = g.enter().unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            let key = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let b: Box<[u8]> = (0..n).map(|j| pat(key, j)).collect();
            assert_eq!(b.len(), n);
            boxes.push(b);
        }
    }
    // Every block is 16-byte aligned (INTERFACE.md: every result is).
    for b in &boxes {
        assert_eq!(
            b.as_ptr() as usize % 16,
            0,
            "block of {} bytes at {:p}",
            b.len(),
            b.as_ptr()
        );
    }
    // No two blocks overlap.
    let mut ranges: Vec<(usize, usize)> = boxes
        .iter()
        .map(|b| (b.as_ptr() as usize, b.len()))
        .collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(
            w[0].0 + w[0].1 <= w[1].0,
            "blocks overlap: {:x?} and {:x?}",
            w[0],
            w[1]
        );
    }
    // Contents intact with every block alive.
    for (i, b) in boxes.iter().enumerate() {
        let key = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        if let Some(j) = b.iter().enumerate().position(|(j, &x)| x != pat(key, j)) {
            panic!("block {i} of {} bytes differs at {j}", b.len());
        }
    }
    let s = g.stat().unwrap();
    let stat = kv(&g, "memory.stat");
    assert!(
        s.current >= total as u64,
        "current {} < {total} live bytes",
        s.current
    );
    assert!(
        stat["allocated"] >= total as u64,
        "allocated < {total}: {stat:?}"
    );
    assert!(
        stat["allocated"] + stat["cached"] <= stat["small"] + stat["large"],
        "{stat:?}"
    );

    // Free in an interleaved order, then everything is returned.
    let mut rest = Vec::with_capacity(boxes.len());
    for (i, b) in boxes.into_iter().enumerate() {
        if i % 2 == 0 {
            drop(b);
        } else {
            rest.push(b);
        }
    }
    drop(rest);
    assert_eq!(stat_key(&g, "allocated"), 0);
    quiesce(&g);
    assert_empty(&g);
}

const ZERO_SIZES: [usize; 18] = [
    1,
    15,
    16,
    17,
    100,
    1000,
    4096,
    8000,
    16 * KIB,
    32 * KIB,
    32 * KIB + 1,
    40 * KIB,
    64 * KIB,
    200 * KIB,
    MIB,
    3 * MIB + 5,
    8 * MIB,
    8 * MIB + 4096,
];

#[test]
fn zeroed_allocations_are_zero_even_over_dirty_memory() {
    let g = Group::create("/glob_zero").unwrap();
    {
        let _in = g.enter().unwrap();
        for round in 0..4 {
            for &n in &ZERO_SIZES {
                // Dirty blocks of the same size first, so the zeroed ones may reuse them
                // (span free lists, the thread's cache of large mappings).
                let dirty: Vec<Vec<u8>> = (0..3).map(|_| vec![0xa5u8; n]).collect();
                drop(dirty);
                let z = vec![0u8; n];
                assert_eq!(z.len(), n);
                if let Some(i) = z.iter().position(|&b| b != 0) {
                    panic!("round {round}: vec![0u8; {n}] has {:#x} at {i}", z[i]);
                }
                let w = vec![0u64; n.div_ceil(8)];
                assert!(w.iter().all(|&x| x == 0), "vec![0u64; ..] of {n} bytes");
                drop((z, w));
            }
        }
        // alloc_zeroed with alignments beyond 16, over dirty memory too.
        for &align in &[32usize, 64, 4096, 64 * KIB, 2 * MIB] {
            for &n in &[1usize, 100, 4096, 40 * KIB, MIB + 1] {
                let layout = Layout::from_size_align(n, align).unwrap();
                for _ in 0..3 {
                    // SAFETY: non-zero size; freed with the same layout.
                    unsafe {
                        let d = alloc(layout);
                        assert!(!d.is_null());
                        std::ptr::write_bytes(d, 0x5a, n);
                        dealloc(d, layout);
                        let z = alloc_zeroed(layout);
                        assert!(!z.is_null());
                        assert_eq!(z as usize % align, 0, "alloc_zeroed({n}, {align})");
                        let s = std::slice::from_raw_parts(z, n);
                        if let Some(i) = s.iter().position(|&b| b != 0) {
                            panic!("alloc_zeroed({n}, align {align}) has {:#x} at {i}", s[i]);
                        }
                        dealloc(z, layout);
                    }
                }
            }
        }
    }
    quiesce(&g);
    assert_empty(&g);
}

#[repr(C, align(4096))]
struct Page4K([u8; 4096]);

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line64(u64);

#[test]
fn over_aligned_types_and_layouts() {
    let g = Group::create("/glob_align").unwrap();
    {
        let _in = g.enter().unwrap();
        // Types.
        let pages: Vec<Box<Page4K>> = (0..20).map(|i| Box::new(Page4K([i as u8; 4096]))).collect();
        for (i, p) in pages.iter().enumerate() {
            assert_eq!(&**p as *const Page4K as usize % 4096, 0);
            assert!(p.0.iter().all(|&b| b == i as u8));
        }
        let mut vp: Vec<Page4K> = Vec::new();
        for i in 0..40u8 {
            vp.push(Page4K([i; 4096]));
            assert_eq!(
                vp.as_ptr() as usize % 4096,
                0,
                "Vec<Page4K> of {}",
                vp.len()
            );
        }
        assert!(vp
            .iter()
            .enumerate()
            .all(|(i, p)| p.0[0] == i as u8 && p.0[4095] == i as u8));
        let mut lines: Vec<Line64> = Vec::new();
        for i in 0..100_000u64 {
            lines.push(Line64(i));
            if lines.len().is_power_of_two() {
                assert_eq!(lines.as_ptr() as usize % 64, 0);
            }
        }
        assert!(lines.iter().enumerate().all(|(i, l)| l.0 == i as u64));
        drop((pages, vp, lines));

        // Layouts: every alignment with every size, all alive at once.
        let aligns = [64usize, 256, 4096, 64 * KIB, 2 * MIB, 4 * MIB, 8 * MIB];
        let sizes = [
            1usize,
            8,
            64,
            100,
            4096,
            5000,
            40 * KIB,
            64 * KIB,
            300 * KIB,
            3 * MIB,
        ];
        let mut blocks = Vec::new();
        for (ai, &align) in aligns.iter().enumerate() {
            for (si, &size) in sizes.iter().enumerate() {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe { alloc(layout) };
                assert!(!p.is_null(), "alloc({size}, align {align})");
                assert_eq!(
                    p as usize % align,
                    0,
                    "alloc({size}, align {align}) = {p:p}"
                );
                let key = ((ai * 100 + si) as u64).wrapping_mul(0x0101_0101_0101_0101) + 7;
                // SAFETY: a live block of `size` bytes.
                unsafe { std::ptr::write_bytes(p, 0, size) };
                unsafe { fill(p, size, key) };
                blocks.push((p, layout, key));
            }
        }
        let mut ranges: Vec<(usize, usize)> =
            blocks.iter().map(|b| (b.0 as usize, b.1.size())).collect();
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            assert!(
                w[0].0 + w[0].1 <= w[1].0,
                "blocks overlap: {:x?} and {:x?}",
                w[0],
                w[1]
            );
        }
        for &(p, layout, key) in &blocks {
            // SAFETY: live blocks.
            assert_eq!(unsafe { check(p, layout.size(), key) }, None, "{layout:?}");
        }
        // realloc keeps the alignment and the contents (grow, then shrink).
        for b in blocks.iter_mut() {
            let (p, layout, key) = *b;
            let old = layout.size();
            let grown = old * 3 + 1;
            // SAFETY: `p` is live with `layout`; the new size is non-zero.
            let q = unsafe { realloc(p, layout, grown) };
            assert!(!q.is_null(), "realloc {layout:?} -> {grown}");
            assert_eq!(
                q as usize % layout.align(),
                0,
                "realloc {layout:?} -> {grown}"
            );
            // SAFETY: the first `old` bytes moved with the block.
            assert_eq!(
                unsafe { check(q, old, key) },
                None,
                "realloc {layout:?} -> {grown}"
            );
            let l2 = Layout::from_size_align(grown, layout.align()).unwrap();
            let small = old.div_ceil(2);
            // SAFETY: as above.
            let r = unsafe { realloc(q, l2, small) };
            assert!(!r.is_null());
            assert_eq!(r as usize % layout.align(), 0, "realloc {l2:?} -> {small}");
            // SAFETY: the block is at least `small` bytes.
            let bad = unsafe { check_upto(r, old, small, key) };
            assert_eq!(bad, None, "shrinking realloc of {layout:?} lost data");
            *b = (
                r,
                Layout::from_size_align(small, layout.align()).unwrap(),
                key,
            );
        }
        for (p, layout, _) in blocks {
            // SAFETY: live with this layout.
            unsafe { dealloc(p, layout) };
        }
    }
    quiesce(&g);
    assert_empty(&g);
}

#[test]
fn realloc_growth_keeps_contents_and_charges() {
    let g = Group::create("/glob_realloc").unwrap();
    {
        let _in = g.enter().unwrap();
        // Byte-by-byte growth through every size class and into large mappings (the
        // in-place remap path), checked all along.
        let mut v: Vec<u8> = Vec::new();
        for i in 0..(12 * MIB) {
            v.push((i % 251) as u8);
            if v.len().is_power_of_two() {
                assert!(
                    v.iter().enumerate().all(|(j, &b)| b == (j % 251) as u8),
                    "len {}",
                    v.len()
                );
            }
        }
        assert!(v.iter().enumerate().all(|(j, &b)| b == (j % 251) as u8));
        // Shrinking.
        v.truncate(3 * MIB + 7);
        v.shrink_to_fit();
        assert!(v.iter().enumerate().all(|(j, &b)| b == (j % 251) as u8));
        v.truncate(1000);
        v.shrink_to_fit();
        assert!(v.iter().enumerate().all(|(j, &b)| b == (j % 251) as u8));
        drop(v);
    }
    quiesce(&g);
    assert_empty(&g);
}

/// What the threads hand each other: sender, strings, bytes, a set.
type Parcel = (usize, Vec<String>, Box<[u8]>, HashSet<u64>);

#[test]
fn data_moves_across_threads_and_is_dropped_elsewhere() {
    let groups: Vec<Group> = (0..4)
        .map(|i| Group::create(&format!("/glob_thr{i}")).unwrap())
        .collect();
    let n = groups.len();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel::<Parcel>()).unzip();
    let mut handles = Vec::new();
    for (i, rx) in rxs.into_iter().enumerate() {
        let g = groups[i];
        let tx = txs[(i + 1) % n].clone();
        handles.push(thread::spawn(move || {
            let _in = g.enter().unwrap();
            let mut returned = Vec::new();
            for round in 0..50usize {
                let strings: Vec<String> = (0..200).map(|k| format!("{i}:{round}:{k}")).collect();
                let bytes: Box<[u8]> = vec![(i * 50 + round) as u8; 1000 + round * 3000].into();
                let set: HashSet<u64> = (0..500)
                    .map(|k| (i * 1_000_000 + round * 1000 + k) as u64)
                    .collect();
                tx.send((i, strings, bytes, set)).unwrap();
                // Receive the neighbour's data, check it and drop it here (or keep some
                // to hand to the main thread).
                let (from, strings, bytes, set) = rx.recv().unwrap();
                for (k, s) in strings.iter().enumerate() {
                    assert_eq!(*s, format!("{from}:{round}:{k}"));
                }
                assert_eq!(bytes.len(), 1000 + round * 3000);
                assert!(bytes.iter().all(|&b| b == (from * 50 + round) as u8));
                assert_eq!(set.len(), 500);
                assert!(set.contains(&((from * 1_000_000 + round * 1000 + 499) as u64)));
                if round % 10 == 0 {
                    returned.push((from, round, bytes));
                }
            }
            // A 1 MiB block allocated here, kept by the main thread after this thread
            // exits.
            let big = vec![i as u8; MIB];
            (returned, big)
        }));
    }
    drop(txs);
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // Every thread has exited; the blocks they allocated stay charged to their groups.
    for (i, (returned, big)) in results.iter().enumerate() {
        assert!(big.iter().all(|&b| b == i as u8));
        for (from, round, bytes) in returned {
            assert!(bytes.iter().all(|&b| b == (from * 50 + round) as u8));
        }
        let c = current(&groups[i]);
        assert!(c >= MIB as u64, "group {i} holds the 1 MiB block: {c}");
    }
    drop(results);
    for g in &groups {
        quiesce(g);
        assert_empty(g);
    }
}

#[test]
fn try_reserve_fails_gracefully_in_a_limited_group() {
    const LIMIT: u64 = 16 << 20;
    let g = Group::create("/glob_reserve").unwrap();
    g.set_max(LIMIT).unwrap();
    assert_eq!(g.stat().unwrap().max, LIMIT);
    // Bookkeeping allocated outside the group.
    let mut keep: Vec<Vec<u8>> = Vec::with_capacity(64);
    let mut results: Vec<bool> = Vec::with_capacity(16);
    {
        let _in = g.enter().unwrap();
        let mut v = Vec::<u8>::new();
        results.push(v.try_reserve(64 << 20).is_err());
        results.push(v.try_reserve_exact(64 << 20).is_err());
        results.push(v.capacity() == 0);
        // Small allocations still work after the failure.
        let b = Box::new(12345u64);
        let s = format!("still {}", *b);
        let small = vec![7u8; 1000];
        results.push(*b == 12345 && s == "still 12345" && small.iter().all(|&x| x == 7));
        drop((b, s, small));
        // A vector with data that cannot grow past the limit keeps its data.
        let mut w = vec![1u8; MIB];
        results.push(w.try_reserve(32 << 20).is_err());
        results.push(w.len() == MIB && w.iter().all(|&x| x == 1));
        results.push(w.try_reserve(MIB).is_ok());
        drop(w);
        // 1 MiB blocks until the limit refuses one.
        loop {
            let mut c = Vec::new();
            if c.try_reserve_exact(MIB).is_err() {
                break;
            }
            c.resize(MIB, keep.len() as u8);
            keep.push(c);
            if keep.len() == 64 {
                break;
            }
        }
        results.push(keep.len() <= 16);
        results.push(keep.len() >= 8);
        keep.clear();
        // And after freeing, small and medium allocations work again.
        let again: Vec<Vec<u8>> = (0..100).map(|i| vec![i as u8; 10 * KIB]).collect();
        results.push(
            again
                .iter()
                .enumerate()
                .all(|(i, v)| v.iter().all(|&x| x == i as u8)),
        );
        drop(again);
    }
    let names = [
        "try_reserve(64 MiB) fails",
        "try_reserve_exact(64 MiB) fails",
        "capacity unchanged",
        "small allocations work after the failure",
        "try_reserve(32 MiB) on a 1 MiB vec fails",
        "the vec keeps its data",
        "try_reserve(1 MiB) fits",
        "at most 16 blocks of 1 MiB fit",
        "at least 8 blocks of 1 MiB fit",
        "allocations work after freeing",
    ];
    for (ok, name) in results.iter().zip(names) {
        assert!(*ok, "{name}");
    }
    let s = g.stat().unwrap();
    assert!(
        s.peak <= LIMIT,
        "memory.peak {} above memory.max {LIMIT}",
        s.peak
    );
    assert!(s.peak > 8 << 20, "memory.peak {}", s.peak);
    assert!(s.failcnt > 0);
    assert!(s.events_max > 0, "max events {}", s.events_max);
    assert!(
        s.events_oom_kill > 0,
        "oom_kill events {}",
        s.events_oom_kill
    );
    assert_eq!(event(&g, "oom_kill"), s.events_oom_kill);
    quiesce(&g);
    assert_empty(&g);
}
