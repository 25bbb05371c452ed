//! Thread churn with blocks passed between threads (mimalloc-bench's `mstress` in
//! small), with `CgMalloc` as the global allocator: each round the long-lived test
//! thread, then a fresh worker thread, allocate and free small blocks, keep some, and
//! swap a quarter of them through a shared array of slots (taking the other thread's);
//! the worker exits, and the test thread frees half of the blocks left in the slots. So
//! the exited worker's segments hold a few live blocks, each later freed by the test
//! thread or by the next worker, and blocks of the test thread's spans are freed by
//! workers. The threads take turns, so that the run is the same every time: the test
//! thread always allocates while the exited worker's segment waits to be adopted.
//!
//! Almost nothing is live from one round to the next: `memory.current` of the group
//! must stay bounded, not grow with the rounds. It grew by about 200 KiB a round (8 MiB
//! after 10 rounds, 49 MiB after 200) when the test thread adopted every exited
//! worker's segment on its next span miss: the next worker found none to adopt, and the
//! blocks later workers freed into the adopted spans (never on the test thread's full
//! list, so nobody told it) waited on the spans' `thread_free` for a collection that
//! never came: spans, and their segments, were kept with nothing live.
//!
//! `threads_that_each_leave_a_block_behind_share_spans` is mleak's shape: threads one
//! after another, each leaving one block behind; the live blocks must share spans.

use crate::support::alloc::*;
use crate::support::rng::Rng;
use cgmalloc::Group;
use std::alloc::{alloc, dealloc};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const SLOTS: usize = 1000;
const ROUNDS: usize = 200;
/// Allocations per thread and round.
const ALLOCS: usize = 3000;

/// A block of `words` words whose first word holds its size in words.
fn new_block(words: usize) -> usize {
    // SAFETY: a non-zero size.
    let p = unsafe { alloc(layout(words * 8)) } as *mut usize;
    assert!(!p.is_null());
    // SAFETY: the first word of the new block.
    unsafe { p.write(words) };
    p as usize
}

fn free_block(p: usize) {
    if p == 0 {
        return;
    }
    // SAFETY: a live block of `new_block`, whose first word is its size in words.
    let words = unsafe { (p as *const usize).read() };
    // SAFETY: as above: that block, freed once.
    unsafe { dealloc(p as *mut u8, layout(words * 8)) };
}

/// `mstress`'s size mix: 8–128 bytes, 1% a hundred times that.
fn size(rng: &mut Rng, shift: u64) -> usize {
    let words = 1usize << rng.below(shift);
    if rng.chance(1) {
        words * 100
    } else {
        words
    }
}

/// One thread's part of a round (`mstress`'s `stress`).
fn stress(seed: u64, slots: &[AtomicUsize]) {
    let mut rng = Rng(seed);
    let mut data: Vec<usize> = Vec::with_capacity(ALLOCS);
    let mut retained: Vec<usize> = Vec::with_capacity(ALLOCS / 2);
    let (mut allocs, mut retain) = (ALLOCS, ALLOCS / 2);
    while allocs > 0 || retain > 0 {
        if retain == 0 || (allocs > 0 && rng.chance(50)) {
            allocs -= 1;
            data.push(new_block(size(&mut rng, 5)));
        } else {
            retain -= 1;
            retained.push(new_block(size(&mut rng, 7)));
        }
        if !data.is_empty() && rng.chance(66) {
            let i = rng.below(data.len() as u64) as usize;
            free_block(std::mem::take(&mut data[i]));
        }
        if !data.is_empty() && rng.chance(25) {
            let i = rng.below(data.len() as u64) as usize;
            let k = rng.below(SLOTS as u64) as usize;
            data[i] = slots[k].swap(data[i], Ordering::AcqRel);
        }
    }
    retained.into_iter().for_each(free_block);
    data.into_iter().for_each(free_block);
}

#[test]
fn memory_stays_bounded_under_thread_churn() {
    let g = Group::create("/churn").unwrap();
    g.attach_current_thread().unwrap();
    let slots: Arc<Vec<AtomicUsize>> = Arc::new((0..SLOTS).map(|_| AtomicUsize::new(0)).collect());
    let mut rng = Rng(43);
    let mut early = 0;
    let mut highest = 0;
    for round in 0..ROUNDS {
        stress(round as u64 * 104_729 + 2, &slots);
        let s = Arc::clone(&slots);
        std::thread::spawn(move || {
            g.attach_current_thread().unwrap();
            stress(round as u64 * 7919 + 1, &s);
        })
        .join()
        .expect("worker thread");
        for slot in slots.iter() {
            if rng.chance(50) {
                free_block(slot.swap(0, Ordering::AcqRel));
            }
        }
        let c = current(&g);
        if round == 9 {
            early = c;
        }
        if round >= 10 {
            highest = highest.max(c);
        }
    }
    let st = kv(&g, "memory.stat");
    eprintln!(
        "memory.current after 10 rounds {} KiB, highest after {} KiB; memory.stat at the \
         end {st:?}",
        early >> 10,
        highest >> 10
    );
    assert!(
        highest <= early + 4 * MIB as u64,
        "memory.current grew from {early} B after 10 rounds to {highest} B in {ROUNDS} \
         rounds with almost nothing live: memory.stat {st:?}"
    );
    drop(st);
    for slot in slots.iter() {
        free_block(slot.swap(0, Ordering::AcqRel));
    }
    drop(slots);
    Group::root().attach_current_thread().unwrap();
    assert_all_returned(&g);
    g.destroy().unwrap();
}

/// A long-lived thread's blocks freed by another thread while their spans sit on the
/// thread's full list: each free takes the span's `FULL` flag down, and the thread's
/// next slow path moves the span to its class queue, not collecting it. A thread that
/// never allocates that class again would keep those spans, empty but charged, for
/// good; its heap's sweep collects them and gives them back after at most a few
/// hundred slow paths of any class.
#[test]
fn spans_another_thread_emptied_are_given_back() {
    const SPANS: usize = 64;
    const PER_SPAN: usize = 64 * KIB / 128;
    let g = Group::create("/sweep").unwrap();
    g.attach_current_thread().unwrap();
    let blocks: Vec<usize> = (0..SPANS * PER_SPAN)
        // SAFETY: a non-zero size.
        .map(|_| unsafe { alloc(layout(128)) } as usize)
        .collect();
    assert!(blocks.iter().all(|&p| p != 0));
    let full = stat_key(&g, "small");
    assert!(full >= (SPANS * 64 * KIB) as u64, "small {full}");
    std::thread::spawn(move || {
        for p in blocks {
            // SAFETY: live blocks of this layout, freed once.
            unsafe { dealloc(p as *mut u8, layout(128)) };
        }
    })
    .join()
    .unwrap();
    // Blocks of another class, allocated and freed: the slow path runs each time the
    // span's free list runs dry.
    let mut small = full;
    for _ in 0..100 {
        for _ in 0..100_000 {
            // SAFETY: a non-zero size.
            let p = unsafe { alloc(layout(48)) };
            assert!(!p.is_null());
            std::hint::black_box(p);
            // SAFETY: the block just allocated.
            unsafe { dealloc(p, layout(48)) };
        }
        small = stat_key(&g, "small");
        if small <= MIB as u64 {
            break;
        }
    }
    assert!(
        small <= MIB as u64,
        "{SPANS} spans emptied by another thread are still kept: memory.stat {:?}",
        kv(&g, "memory.stat")
    );
    Group::root().attach_current_thread().unwrap();
    assert_all_returned(&g);
    g.destroy().unwrap();
}

/// mimalloc-bench's `mleak` in small: threads come and go one after the other, each
/// allocating one small block into a random slot of a shared array and freeing the
/// block it replaces, so every exited thread leaves a block or two behind. A new
/// thread, with no segment of its own, adopts an exited thread's segment before it makes
/// a span, and allocates from the adopted spans' free blocks: the live blocks share a
/// few spans. Before, each thread made a span of its own in the adopted segment's free
/// slices, so a segment filled up with spans of one live block each, and the group held
/// megabytes (and hundreds of segments) for 125 KiB live.
#[test]
fn threads_that_each_leave_a_block_behind_share_spans() {
    const THREADS: usize = 1500;
    let g = Group::create("/leak").unwrap();
    // A limited group, as users' are: adoption charges the adopted spans to it.
    g.write("memory.max", "64M").unwrap();
    let slots: Arc<Vec<AtomicUsize>> = Arc::new((0..SLOTS).map(|_| AtomicUsize::new(0)).collect());
    for t in 0..THREADS {
        let s = Arc::clone(&slots);
        std::thread::spawn(move || {
            g.attach_current_thread().unwrap();
            let i = (t * 7919 + 13) % SLOTS;
            let old = s[i].swap(new_block(16), Ordering::AcqRel);
            if old != 0 {
                free_block(old);
            }
        })
        .join()
        .expect("worker thread");
    }
    let live = slots
        .iter()
        .filter(|s| s.load(Ordering::Relaxed) != 0)
        .count();
    let c = current(&g);
    let st = kv(&g, "memory.stat");
    eprintln!(
        "{live} blocks of 128 B live after {THREADS} threads: memory.current {} KiB, \
         memory.stat {st:?}",
        c >> 10
    );
    assert!(
        c <= MIB as u64,
        "{live} blocks of 128 B live, yet memory.current is {c} B: memory.stat {st:?}"
    );
    drop(st);
    for slot in slots.iter() {
        free_block(slot.swap(0, Ordering::AcqRel));
    }
    drop(slots);
    assert_all_returned(&g);
    g.destroy().unwrap();
}
