//! Abandoned segments, with `CgMalloc` as the global allocator: a thread that exits with
//! live blocks leaves its segments to the next thread of the same group that needs a
//! span, which adopts them (its frees of the blocks left there are then local, and the
//! segment's free room is reused); threads of another group leave them alone, and so
//! does everyone for a segment whose live blocks belong to several groups. Dirty slices
//! of a segment nobody adopts are purged once due, and a fork child still finds the
//! segments its parent abandoned. Every test ends with its groups at exactly 0.
//!
//! Each test uses groups of its own, so that no test adopts another's segments.
//!
//! An exited thread's state is retired first, for the next thread to take over whole
//! (`alloc::retired`, tested in `retire.rs`); these tests expire it at once
//! (`internals::expire_retired`), as its delay would, to see its segments abandoned.

use crate::support::alloc::*;
use crate::support::rng::Rng;
use cgmalloc::Group;
use std::alloc::{alloc, dealloc};
use std::collections::BTreeSet;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// In a thread attached to `g`: allocates `n` blocks of `size` bytes, frees every other
/// one, and exits; returns the addresses left live.
fn leave_blocks(g: &Group, n: usize, size: usize) -> Vec<usize> {
    let g = *g;
    let live = thread::spawn(move || {
        g.attach_current_thread().unwrap();
        let all: Vec<usize> = (0..n)
            // SAFETY: non-zero size.
            .map(|_| unsafe { alloc(layout(size)) } as usize)
            .collect();
        assert!(all.iter().all(|&p| p != 0));
        let mut live = Vec::with_capacity(n / 2);
        for (i, &p) in all.iter().enumerate() {
            if i % 2 == 0 {
                // SAFETY: a live block of this layout.
                unsafe { dealloc(p as *mut u8, layout(size)) };
            } else {
                live.push(p);
            }
        }
        live
    })
    .join()
    .unwrap();
    cgmalloc::internals::expire_retired();
    live
}

/// In a thread attached to `g`: the address of one new block of `size` bytes (freed
/// before the thread exits, its state expired then).
fn first_block_in(g: &Group, size: usize) -> usize {
    let g = *g;
    let p = thread::spawn(move || {
        g.attach_current_thread().unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout(size)) };
        assert!(!p.is_null());
        // SAFETY: the live block just allocated.
        unsafe { dealloc(p, layout(size)) };
        p as usize
    })
    .join()
    .unwrap();
    cgmalloc::internals::expire_retired();
    p
}

/// Frees the blocks, then the vector holding them (allocated in their group too).
fn free_all(blocks: Vec<usize>, size: usize) {
    for &p in &blocks {
        // SAFETY: live blocks of this layout, left by their exited owner.
        unsafe { dealloc(p as *mut u8, layout(size)) };
    }
}

#[test]
fn a_thread_of_the_same_group_adopts() {
    let g = Group::create("/adopt-same").unwrap();
    let live = leave_blocks(&g, 4000, 64);
    let segments: BTreeSet<usize> = live.iter().map(|&p| segment_of(p)).collect();
    // The exited thread's group still holds the spans of its live blocks.
    assert!(stat_key(&g, "small") > 0);
    let p = first_block_in(&g, 64);
    assert!(
        segments.contains(&segment_of(p)),
        "a new thread of the group allocated at {p:#x}, outside the exited thread's \
         segments {segments:x?}"
    );
    // The adopting thread exited in turn: its blocks are freed by this thread now.
    free_all(live, 64);
    assert_all_returned(&g);
    g.destroy().unwrap();
}

#[test]
fn a_thread_of_another_group_does_not_adopt() {
    let a = Group::create("/adopt-a").unwrap();
    let b = Group::create("/adopt-b").unwrap();
    let live = leave_blocks(&a, 4000, 64);
    let segments: BTreeSet<usize> = live.iter().map(|&p| segment_of(p)).collect();
    let p = first_block_in(&b, 64);
    assert!(
        !segments.contains(&segment_of(p)),
        "a thread of /adopt-b allocated at {p:#x}, in a segment whose live blocks are \
         charged to /adopt-a"
    );
    // The segment is still there for /adopt-a.
    let q = first_block_in(&a, 64);
    assert!(
        segments.contains(&segment_of(q)),
        "{q:#x} not in {segments:x?}"
    );
    free_all(live, 64);
    assert_all_returned(&a);
    assert_all_returned(&b);
    a.destroy().unwrap();
    b.destroy().unwrap();
}

#[test]
fn a_segment_of_two_groups_is_not_adopted() {
    let a = Group::create("/adopt-m1").unwrap();
    let b = Group::create("/adopt-m2").unwrap();
    let (ga, gb) = (a, b);
    // One thread leaves live blocks of both groups (its heaps share its segments).
    let (live_a, live_b) = thread::spawn(move || {
        let mut out = (Vec::new(), Vec::new());
        for (g, live) in [(&ga, &mut out.0), (&gb, &mut out.1)] {
            g.attach_current_thread().unwrap();
            for _ in 0..100 {
                // SAFETY: non-zero size.
                let p = unsafe { alloc(layout(64)) };
                assert!(!p.is_null());
                live.push(p as usize);
            }
        }
        out
    })
    .join()
    .unwrap();
    cgmalloc::internals::expire_retired();
    let shared: BTreeSet<usize> = live_a
        .iter()
        .map(|&p| segment_of(p))
        .filter(|s| live_b.iter().any(|&q| segment_of(q) == *s))
        .collect();
    assert!(!shared.is_empty(), "the two groups' blocks share a segment");
    for g in [&a, &b] {
        let p = first_block_in(g, 64);
        assert!(
            !shared.contains(&segment_of(p)),
            "{p:#x} allocated in a segment holding both groups' blocks"
        );
    }
    free_all(live_a, 64);
    free_all(live_b, 64);
    assert_all_returned(&a);
    assert_all_returned(&b);
    a.destroy().unwrap();
    b.destroy().unwrap();
}

#[test]
fn dirty_slices_of_an_abandoned_segment_are_purged_when_due() {
    const BLOCK: usize = 512 * KIB;
    let g = Group::create("/adopt-purge").unwrap();
    let gc = g;
    // A thread writes six medium blocks, frees five and exits with the sixth.
    let (freed, kept) = thread::spawn(move || {
        gc.attach_current_thread().unwrap();
        let blocks: Vec<usize> = (0..6)
            .map(|_| {
                // SAFETY: non-zero size.
                let p = unsafe { alloc(layout(BLOCK)) };
                assert!(!p.is_null());
                // SAFETY: inside the live block.
                unsafe { p.write_bytes(7, BLOCK) };
                p as usize
            })
            .collect();
        for &p in &blocks[..5] {
            // SAFETY: live blocks of this layout.
            unsafe { dealloc(p as *mut u8, layout(BLOCK)) };
        }
        (blocks[..5].to_vec(), blocks[5])
    })
    .join()
    .unwrap();
    cgmalloc::internals::expire_retired();
    let pages = 5 * BLOCK / PAGE as usize;
    let sum = || {
        freed
            .iter()
            .map(|&p| resident(p as *const u8, BLOCK))
            .sum::<usize>()
    };
    let before = sum();
    assert!(
        before * 10 >= pages * 9,
        "kept for an adopter: {before} of {pages} freed pages resident after the exit"
    );
    // Nobody of the group comes; after the delay, another group's thread's slow path
    // (a medium block of a size nobody cached) purges them.
    thread::sleep(Duration::from_millis(60));
    let other = Group::create("/adopt-purge-other").unwrap();
    first_block_in(&other, 3 * 64 * KIB);
    let after = sum();
    assert!(
        after <= 64,
        "after the delay: {after} of {pages} freed pages of the abandoned segment resident"
    );
    free_all(vec![kept], BLOCK);
    drop(freed); // allocated in the group
    assert_all_returned(&g);
    assert_all_returned(&other);
    g.destroy().unwrap();
    other.destroy().unwrap();
}

struct Block(usize, usize, u64);

/// A server in the Larson shape: two lanes of slots, each worked by a chain of short-lived
/// threads that free a random slot's block and allocate a new one; each thread hands
/// the lane to its successor and exits, so most frees hit blocks of exited threads,
/// whose segments the successors adopt, while a freer thread frees some blocks remotely
/// as segments change hands. Lanes are in two groups. Contents are checked on every free.
#[test]
fn generations_of_threads_adopt_each_others_segments() {
    const SLOTS: usize = 600;
    const GENERATIONS: usize = 120;
    const STEPS: usize = 3000;
    let groups = [
        Group::create("/adopt-l0").unwrap(),
        Group::create("/adopt-l1").unwrap(),
    ];
    let (to_freer, rx) = mpsc::channel::<Block>();
    let freer = thread::spawn(move || {
        let mut bad = 0;
        for Block(p, size, key) in rx {
            // SAFETY: a live block of `size` bytes handed over by its owner.
            unsafe {
                bad += usize::from(check(p as *const u8, size, key).is_some());
                dealloc(p as *mut u8, layout(size));
            }
        }
        bad
    });
    let lanes: Vec<_> = groups
        .iter()
        .enumerate()
        .map(|(lane, g)| {
            let (g, tx) = (*g, to_freer.clone());
            thread::spawn(move || {
                let mut slots: Vec<Option<Block>> = (0..SLOTS).map(|_| None).collect();
                let mut rng = Rng(0x1a45_0000 + lane as u64);
                let mut bad = 0;
                for _ in 0..GENERATIONS {
                    let (g, tx, seed) = (g, tx.clone(), rng.next());
                    let (back, b) = thread::spawn(move || {
                        g.attach_current_thread().unwrap();
                        let mut r = Rng(seed);
                        let mut bad = 0;
                        for _ in 0..STEPS {
                            let i = r.below(SLOTS as u64) as usize;
                            if let Some(Block(p, size, key)) = slots[i].take() {
                                if r.chance(10) {
                                    tx.send(Block(p, size, key)).unwrap();
                                } else {
                                    // SAFETY: a live block of `size` bytes of this lane.
                                    unsafe {
                                        bad +=
                                            usize::from(check(p as *const u8, size, key).is_some());
                                        dealloc(p as *mut u8, layout(size));
                                    }
                                }
                            }
                            let size = if r.chance(2) {
                                r.range(33 * KIB as u64, 200 * KIB as u64)
                            } else {
                                r.range(16, 1024)
                            } as usize;
                            // SAFETY: non-zero size.
                            let p = unsafe { alloc(layout(size)) };
                            assert!(!p.is_null());
                            let key = r.next();
                            // SAFETY: a live block of `size` bytes.
                            unsafe { fill(p, size, key) };
                            slots[i] = Some(Block(p as usize, size, key));
                        }
                        (slots, bad)
                    })
                    .join()
                    .unwrap();
                    slots = back;
                    bad += b;
                }
                for Block(p, size, key) in slots.into_iter().flatten() {
                    tx.send(Block(p, size, key)).unwrap();
                }
                bad
            })
        })
        .collect();
    drop(to_freer);
    for l in lanes {
        assert_eq!(l.join().unwrap(), 0, "corrupted blocks in a lane");
    }
    assert_eq!(freer.join().unwrap(), 0, "corrupted blocks at the freer");
    for g in groups {
        assert_all_returned(&g);
        g.destroy().unwrap();
    }
}

/// What a fork child is told: the group and the segments its parent abandoned there.
struct ForkArg {
    g: Group,
    segments: BTreeSet<usize>,
}

/// A raw thread (it never allocates before forking, so it has no allocator state): forks;
/// the child exits 0 if a thread of the group adopts one of the abandoned segments.
extern "C" fn fork_and_adopt(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: the `ForkArg` the test keeps alive until this thread is joined.
    let a = unsafe { &*(arg as *const ForkArg) };
    // SAFETY: fork in a process whose allocator handles it; the child only allocates
    // through cgmalloc and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let p = first_block_in(&a.g, 64);
        let code = i32::from(!a.segments.contains(&segment_of(p)));
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    exit_code_of(pid) as isize as *mut libc::c_void
}

#[test]
fn a_fork_child_keeps_the_abandoned_segments_for_adoption() {
    let g = Group::create("/adopt-fork").unwrap();
    let live = leave_blocks(&g, 4000, 64);
    // On the heap: in the child, glibc reuses the stacks of the threads that did not
    // survive the fork (this test's thread among them) for new threads.
    let arg = Box::new(ForkArg {
        g,
        segments: live.iter().map(|&p| segment_of(p)).collect(),
    });
    let mut t: libc::pthread_t = 0;
    let mut ret: *mut libc::c_void = std::ptr::null_mut();
    // SAFETY: `arg` outlives the thread, which is joined here.
    unsafe {
        let argp = &*arg as *const ForkArg as *mut libc::c_void;
        assert_eq!(
            libc::pthread_create(&mut t, std::ptr::null(), fork_and_adopt, argp),
            0
        );
        assert_eq!(libc::pthread_join(t, &mut ret), 0);
    }
    assert_eq!(
        ret as isize, 0,
        "in the child of a fork from a thread that never allocated, no thread of the \
         group adopted a segment its parent abandoned"
    );
    drop(arg);
    free_all(live, 64);
    assert_all_returned(&g);
    g.destroy().unwrap();
}
