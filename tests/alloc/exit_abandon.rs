//! A thread's exit that abandons its state, with `CgMalloc` as the global allocator: its
//! state cannot be retired (`fault::refuse_retirement`, as when the list of retired
//! states is full, `alloc::retired`), so the exiting thread abandons its segments one by
//! one (`thread::abandon_state`). Settling the newest one releases the last pages
//! of a destroyed group, which frees the group and drops its OOM handler's context in
//! the exiting thread; the context's drop frees that thread's blocks, which lie in the
//! segments the walk has yet to visit. Those frees must not take the owner's path (they
//! would empty and release segments under the walk): they are pushed and settled with
//! their segments. Afterwards the context was dropped by the exiting thread, every block
//! was freed with its contents intact, every segment of that thread was emptied and
//! released (a trim unmaps it), the accounting holds, and the blocks' group reads
//! exactly 0.

use crate::support::alloc::*;
use cgmalloc::internals::{expire_retired, fault, retired_states};
use cgmalloc::{Group, OomAction};
use std::alloc::{alloc, dealloc};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

/// The exiting thread's blocks: a size class of its own, 8 blocks to a span.
const SIZE: usize = 8 * KIB;

/// Segments the exiting thread fills with its blocks before its newest one.
const FULL_SEGMENTS: usize = 3;

/// Blocks of the destroyed group: one span.
const DYING_BLOCKS: usize = 4;

/// The exiting thread's id, and the id of the thread that dropped the context.
static EXITING_TID: AtomicI32 = AtomicI32::new(0);
static DROPPED_BY: AtomicI32 = AtomicI32::new(0);
/// States retired when the context was dropped (`usize::MAX` until it is).
static RETIRED_AT_DROP: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Blocks the drop found with a wrong pattern.
static BAD_BLOCKS: AtomicUsize = AtomicUsize::new(0);

/// The key of the pattern the block at `p` holds.
fn key_of(p: usize) -> u64 {
    (p as u64).rotate_left(17) ^ 0x0e1d_ab0d
}

/// The OOM handler's context: frees the exiting thread's blocks when dropped, in order.
struct FreeOnDrop {
    blocks: Vec<usize>,
}

impl Drop for FreeOnDrop {
    fn drop(&mut self) {
        RETIRED_AT_DROP.store(retired_states(), Ordering::SeqCst);
        for &p in &self.blocks {
            // SAFETY: a live block of `SIZE` bytes, filled with its pattern, freed once.
            unsafe {
                if check(p as *const u8, SIZE, key_of(p)).is_some() {
                    BAD_BLOCKS.fetch_add(1, Ordering::SeqCst);
                }
                dealloc(p as *mut u8, layout(SIZE));
            }
        }
        // SAFETY: a plain system call.
        DROPPED_BY.store(unsafe { libc::gettid() }, Ordering::SeqCst);
    }
}

/// What the exiting thread hands over: its blocks (in allocation order) and the blocks
/// of the group to destroy.
type Handed = (Vec<usize>, [usize; DYING_BLOCKS]);

#[test]
fn frees_run_by_an_uncharge_of_an_abandoning_exit_wait_for_the_walk() {
    let kept = Group::create("/exit-abandon-kept").unwrap();
    let dying = Group::create("/exit-abandon-dying").unwrap();
    for g in [kept, dying] {
        g.set_max(64 * MIB as u64).unwrap();
    }
    // The exiting thread sets up a state of its own, not a retired one.
    expire_retired();
    assert_eq!(retired_states(), 0);
    let handed: Arc<Mutex<Option<Handed>>> = Arc::new(Mutex::new(None));
    let built = Arc::new(Barrier::new(2));
    let go = Arc::new(Barrier::new(2));
    let exiting = thread::spawn({
        let (handed, built, go) = (handed.clone(), built.clone(), go.clone());
        move || {
            // SAFETY: a plain system call.
            EXITING_TID.store(unsafe { libc::gettid() }, Ordering::SeqCst);
            let mut blocks = Vec::with_capacity((FULL_SEGMENTS + 1) * SEG / SIZE);
            // Segments are filled one after the other; counted with no allocation.
            let (mut segments, mut last) = (0, 0);
            kept.attach_current_thread().unwrap();
            // Whole segments of blocks, up to the first block of a newest segment.
            while segments <= FULL_SEGMENTS {
                assert!(blocks.len() < blocks.capacity());
                // SAFETY: non-zero size.
                let p = unsafe { alloc(layout(SIZE)) };
                assert!(!p.is_null());
                // SAFETY: a live block of `SIZE` bytes.
                unsafe { fill(p, SIZE, key_of(p as usize)) };
                blocks.push(p as usize);
                if segment_of(p as usize) != last {
                    last = segment_of(p as usize);
                    segments += 1;
                }
            }
            // A span of the group to destroy, in that newest segment.
            dying.attach_current_thread().unwrap();
            let mut few = [0; DYING_BLOCKS];
            for b in &mut few {
                // SAFETY: non-zero size.
                *b = unsafe { alloc(layout(100)) } as usize;
                assert_ne!(*b, 0);
            }
            Group::root().attach_current_thread().unwrap();
            *handed.lock().unwrap() = Some((blocks, few));
            built.wait();
            go.wait();
        }
    });
    built.wait();
    let (blocks, few) = handed.lock().unwrap().take().unwrap();
    // Segments from the newest (the first the walk visits) to the oldest.
    let mut newest_first: Vec<usize> = Vec::new();
    for &p in blocks.iter().rev() {
        if !newest_first.contains(&segment_of(p)) {
            newest_first.push(segment_of(p));
        }
    }
    assert_eq!(newest_first.len(), FULL_SEGMENTS + 1);
    let newest = newest_first[0];
    for &b in &few {
        assert_eq!(
            segment_of(b),
            newest,
            "the dying group's span is not in the exiting thread's newest segment"
        );
    }
    // The blocks of the segments visited after the newest one, newest first (so that the
    // owner's path, at its cache's bound, would release the whole of the segment the
    // walk visits next), then the newest segment's.
    let order: Vec<usize> = newest_first[1..]
        .iter()
        .chain(&newest_first[..1])
        .flat_map(|&s| blocks.iter().copied().filter(move |&p| segment_of(p) == s))
        .collect();
    assert_eq!(order.len(), blocks.len());
    drop(blocks);
    // The dying group's blocks, freed by this thread into the exiting thread's span: they
    // wait on this thread's chain, which the trim pushes onto the span, where only the
    // exiting thread collects them.
    for &b in &few {
        // SAFETY: a live block of 100 bytes, freed once.
        unsafe { dealloc(b as *mut u8, layout(100)) };
    }
    cgmalloc::trim();
    let ctx = FreeOnDrop { blocks: order };
    dying
        .on_oom(move |_| {
            std::hint::black_box(&ctx);
            OomAction::Fail
        })
        .unwrap();
    // Its stocks drained and its free pages purged, the group is left dying with the
    // pages of that span, released only when the exiting thread settles it.
    dying.destroy().unwrap();
    let dying_groups = || kv(&Group::root(), "cgroup.stat")["nr_dying_descendants"];
    assert_eq!(dying_groups(), 1, "the destroyed group holds no charge");
    // The exiting thread's state cannot be retired (as when the list of retired states
    // is full): it abandons its segments.
    fault::refuse_retirement(true);
    assert_eq!(DROPPED_BY.load(Ordering::SeqCst), 0);
    go.wait();
    exiting.join().unwrap();
    fault::refuse_retirement(false);
    assert_eq!(
        DROPPED_BY.load(Ordering::SeqCst),
        EXITING_TID.load(Ordering::SeqCst),
        "the context was not dropped by the exiting thread's walk"
    );
    assert_eq!(
        RETIRED_AT_DROP.load(Ordering::SeqCst),
        0,
        "the exiting thread's state was retired"
    );
    assert_eq!(dying_groups(), 0, "the destroyed group was not freed");
    assert_eq!(
        BAD_BLOCKS.load(Ordering::SeqCst),
        0,
        "blocks were overwritten"
    );
    cgmalloc::audit().unwrap();
    // Every block of the exiting thread's segments was freed and settled: each segment
    // was emptied and cached, and the trim unmaps it.
    let mut buf = Vec::with_capacity(MIB);
    cgmalloc::trim();
    // Read at once, into memory taken before (an allocation could map a segment there).
    let maps = read_maps(&mut buf);
    let left: Vec<usize> = newest_first
        .iter()
        .copied()
        .filter(|&a| maps_hold(maps, a))
        .collect();
    assert!(
        left.is_empty(),
        "the exiting thread's segments {left:x?} were not emptied and released \
         (its segments, newest first: {newest_first:x?})"
    );
    // The segments and the caches are whole: a thread of the group fills as many
    // segments again, its blocks intact, and everything goes back.
    thread::spawn(move || {
        kept.attach_current_thread().unwrap();
        let blocks: Vec<usize> = (0..(FULL_SEGMENTS + 1) * SEG / SIZE)
            .map(|_| {
                // SAFETY: non-zero size.
                let p = unsafe { alloc(layout(SIZE)) };
                assert!(!p.is_null());
                // SAFETY: a live block of `SIZE` bytes.
                unsafe { fill(p, SIZE, key_of(p as usize)) };
                p as usize
            })
            .collect();
        let distinct: BTreeSet<usize> = blocks.iter().copied().collect();
        assert_eq!(distinct.len(), blocks.len(), "a block was handed out twice");
        for p in blocks {
            // SAFETY: a live block of `SIZE` bytes, freed once.
            unsafe {
                assert_eq!(check(p as *const u8, SIZE, key_of(p)), None, "block {p:#x}");
                dealloc(p as *mut u8, layout(SIZE));
            }
        }
    })
    .join()
    .unwrap();
    cgmalloc::trim();
    cgmalloc::audit().unwrap();
    assert_all_returned(&kept);
    assert_eq!(retired_states(), 0);
    kept.destroy().unwrap();
}
