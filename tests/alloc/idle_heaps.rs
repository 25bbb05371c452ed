//! Idle heaps, with `CgMalloc` as the global allocator: a thread keeps the heaps of the
//! four groups it allocated in last warm; a heap that falls out of that window gives back
//! its empty spans, and every span that the frees of its remaining blocks empty later is
//! released at once (uncharged), so a thread passing through many groups does not keep
//! empty spans, direct or cached, in each. Heaps still warm keep theirs for reuse.

use crate::support::alloc::*;
use cgmalloc::Group;
use std::alloc::{alloc, dealloc};

/// Small sizes of several classes, and a medium block.
const SIZES: [usize; 5] = [48, 256, 1024, 8 * KIB, 256 * KIB];

/// Allocates a few blocks of every size in the calling thread's group and writes them.
fn take_blocks() -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for &size in &SIZES {
        for _ in 0..8 {
            // SAFETY: non-zero size.
            let p = unsafe { alloc(layout(size)) };
            assert!(!p.is_null());
            // SAFETY: inside the live block.
            unsafe { p.write_bytes(0x5a, size) };
            out.push((p as usize, size));
        }
    }
    out
}

fn free_blocks(blocks: Vec<(usize, usize)>) {
    for (p, size) in blocks {
        // SAFETY: live blocks, freed once with their layout.
        unsafe { dealloc(p as *mut u8, layout(size)) };
    }
}

#[test]
fn spans_emptied_in_an_idle_heap_are_released() {
    std::thread::spawn(|| {
        Group::create("/idle").unwrap();
        let groups: Vec<Group> = (0..8)
            .map(|i| Group::create(&format!("/idle/g{i}")).unwrap())
            .collect();
        let last = Group::create("/idle/last").unwrap();
        // Every block stays live while the thread moves on through the groups (`held`
        // itself is allocated before).
        let mut held = Vec::with_capacity(groups.len());
        for g in &groups {
            g.attach_current_thread().unwrap();
            held.push(take_blocks());
            assert!(current(g) > 0);
        }
        last.attach_current_thread().unwrap();
        // Something allocated in `last` makes its heap the newest: g0..g4 are out of the
        // four warm heaps (last, g7, g6, g5), g5..g7 in.
        let keep = take_blocks();
        for (i, blocks) in held.into_iter().enumerate() {
            free_blocks(blocks);
            cgmalloc::drain_stocks();
            let path = groups[i].path().unwrap();
            let st = kv(&groups[i], "memory.stat");
            if i < 5 {
                // No reclaim: the frees alone gave every span back to its segment, where
                // its pages stay charged as free slices until they are purged.
                assert_eq!(
                    st["small"] + st["cached"],
                    0,
                    "{path}: idle heap kept {st:?}"
                );
                assert_eq!(current(&groups[i]), st["free"], "{path}: {st:?}");
            } else {
                // A warm heap keeps empty spans to reuse (at least the direct ones).
                assert!(current(&groups[i]) > 0, "{path}: warm heap kept nothing");
                assert!(st["cached"] > 0 || st["small"] > 0, "{path}: {st:?}");
            }
        }
        free_blocks(keep);
        // (`last` may still hold the thread's own bookkeeping, made while it was attached
        // there.)
        Group::root().attach_current_thread().unwrap();
        for g in &groups {
            assert_all_returned(g);
        }
    })
    .join()
    .unwrap();
}
