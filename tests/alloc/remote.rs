//! Frees into other threads' spans wait on the freeing thread's chains (`remote.rs`):
//! what waits is bounded, goes to the owner when the chain fills, when the freeing
//! thread takes an allocation slow path, and when it exits; until then it counts as live
//! in the owner's group (`allocated`), as a block does until its free reaches its span.

use crate::support::alloc::*;
use cgmalloc::Group;
use std::alloc::{alloc, dealloc};
use std::sync::{Arc, Barrier};

/// Spans of each size freed by the other thread.
const SPANS: usize = 32;
/// Chains a thread keeps, and bytes a chain holds before it is pushed
/// (`PENDING_CHAINS`, `CHAIN_BYTES`).
const PENDING: u64 = 8 * 16 * KIB as u64;
/// The test thread's own small blocks made meanwhile (channels, the thread's handle).
const SLACK: u64 = 8 * KIB as u64;

/// Blocks of `size` filling `SPANS` spans, allocated by the calling thread.
fn fill(size: usize) -> Vec<usize> {
    (0..SPANS * 64 * KIB / size)
        // SAFETY: a non-zero size.
        .map(|_| unsafe { alloc(layout(size)) } as usize)
        .inspect(|&p| assert!(p != 0))
        .collect()
}

/// Frees `blocks`, each of `size` bytes.
fn free_all(blocks: Vec<usize>, size: usize) {
    for p in blocks {
        // SAFETY: live blocks of this layout, freed once.
        unsafe { dealloc(p as *mut u8, layout(size)) };
    }
}

/// Live bytes of `g`'s blocks above `base` (`allocated`, which counts blocks waiting on
/// chains).
fn held(g: &Group, base: u64) -> u64 {
    stat_key(g, "allocated").saturating_sub(base)
}

/// A limited group the calling thread is attached to, as users' are.
fn limited(path: &str) -> Group {
    let g = Group::create(path).unwrap();
    g.write("memory.max", "64M").unwrap();
    g.attach_current_thread().unwrap();
    g
}

/// Back to the root; `g` must have been given everything back.
fn finish(g: Group) {
    Group::root().attach_current_thread().unwrap();
    assert_all_returned(&g);
    g.destroy().unwrap();
}

/// A medium block allocated and freed: the allocation slow path, whatever the thread's
/// spans hold. False if it was refused.
fn slow_path() -> bool {
    // Kept from the optimiser, which removes an allocation nothing reads.
    // SAFETY: a non-zero size.
    let q = std::hint::black_box(unsafe { alloc(layout(200 * KIB)) });
    if q.is_null() {
        return false;
    }
    // SAFETY: the block just allocated.
    unsafe { dealloc(q, layout(200 * KIB)) };
    true
}

/// Another thread frees `blocks` of `size`, then `then()`, and waits at `go` (a barrier
/// of two, which the caller passes when it has looked). Barriers, not channels: a
/// channel's blocking receive keeps a block for the thread's life, charged to its group.
fn free_elsewhere(
    blocks: Vec<usize>,
    size: usize,
    then: fn(),
    go: Arc<Barrier>,
) -> std::thread::JoinHandle<()> {
    let freed = Arc::new(Barrier::new(2));
    let freed2 = Arc::clone(&freed);
    let t = std::thread::spawn(move || {
        free_all(blocks, size);
        then();
        freed2.wait();
        go.wait();
    });
    freed.wait();
    t
}

/// A thread that frees every block of 32 spans of another thread's limited group, in
/// each band of small sizes, and then waits without allocating holds at most 8 chains
/// of 16 KiB; when it exits, they reach their spans.
#[test]
fn a_thread_that_frees_and_waits_holds_little() {
    let g = limited("/pending");
    // Sizes whose span does not end on a chain boundary: each leaves a part chain.
    for size in [48, 80, 1200, 5000, 12000] {
        let base = stat_key(&g, "allocated");
        let blocks = fill(size);
        let full = stat_key(&g, "allocated");
        assert!(
            full >= base + (SPANS * 60 * KIB) as u64,
            "{size} B: allocated {full}"
        );
        let go = Arc::new(Barrier::new(2));
        let t = free_elsewhere(blocks, size, || {}, Arc::clone(&go));
        let live = held(&g, base);
        assert!(
            live <= PENDING + SLACK,
            "{size} B: a waiting thread holds {live} B of freed blocks (at most {PENDING}): \
             memory.stat {:?}",
            kv(&g, "memory.stat")
        );
        go.wait();
        t.join().unwrap();
        let live = held(&g, base);
        assert!(
            live <= SLACK,
            "{size} B: blocks freed by an exited thread never reached their spans: {live} B \
             still live, memory.stat {:?}",
            kv(&g, "memory.stat")
        );
    }
    finish(g);
}

/// A thread's chains go to their spans when it takes an allocation slow path: a thread
/// that frees other threads' blocks and then allocates a medium block (always the slow
/// path) holds none of them.
#[test]
fn a_thread_pushes_its_chains_when_it_allocates() {
    let g = limited("/pending-alloc");
    let base = stat_key(&g, "allocated");
    let blocks = fill(48);
    let go = Arc::new(Barrier::new(2));
    let t = free_elsewhere(blocks, 48, || assert!(slow_path()), Arc::clone(&go));
    let live = held(&g, base);
    assert!(
        live <= SLACK,
        "blocks a thread freed before its slow path still wait: {live} B, memory.stat {:?}",
        kv(&g, "memory.stat")
    );
    go.wait();
    t.join().unwrap();
    drop(go);
    finish(g);
}

/// `fork()` while both threads hold chains: the forking thread's (blocks of the other
/// thread's spans, in a limited group) and the other thread's, which does not exist in
/// the child. The child's counters match the records (`cgmalloc::audit`), its own chains
/// reach their spans (whose owner is gone there: abandoned) when it allocates, and it
/// audits again after freeing; the parent then gets everything back.
#[test]
fn fork_with_chains_pending_in_both_threads() {
    let g = limited("/pending-fork");
    let mine = fill(48);
    let go = Arc::new(Barrier::new(2));
    let ready = Arc::new(Barrier::new(2));
    let filled = Arc::new(Barrier::new(2));
    let handed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (go2, ready2, filled2, handed2) = (
        Arc::clone(&go),
        Arc::clone(&ready),
        Arc::clone(&filled),
        Arc::clone(&handed),
    );
    let t = std::thread::spawn(move || {
        g.attach_current_thread().unwrap();
        *handed2.lock().unwrap() = fill(80);
        filled2.wait();
        // Frees the main thread's blocks: its chains wait.
        free_all(mine, 48);
        ready2.wait();
        go2.wait();
    });
    filled.wait();
    let theirs = std::mem::take(&mut *handed.lock().unwrap());
    // The main thread frees the other thread's blocks: its own chains wait too.
    free_all(theirs, 80);
    ready.wait();
    // SAFETY: the child runs only async-signal-safe code and our allocator, then
    // `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let fail = |msg: &[u8]| -> ! {
            // SAFETY: writes `msg`; `_exit` has no preconditions.
            unsafe {
                libc::write(2, msg.as_ptr().cast(), msg.len());
                libc::_exit(1)
            }
        };
        if cgmalloc::audit().is_err() {
            fail(b"child: audit after fork\n");
        }
        // A slow path of the child's own: its chains go to their spans.
        if !slow_path() {
            fail(b"child: allocation refused\n");
        }
        cgmalloc::trim();
        cgmalloc::drain_stocks();
        if cgmalloc::audit().is_err() {
            fail(b"child: audit after its chains were pushed\n");
        }
        // SAFETY: `_exit` has no preconditions; the parent's handlers must not run.
        unsafe { libc::_exit(0) }
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the fork child failed: status {status:#x}"
    );
    go.wait();
    t.join().unwrap();
    drop((go, ready, filled, handed));
    // The main thread's chains go to their spans (the exited thread's, abandoned) as
    // `malloc_trim` runs; the reclaim that follows purges what they free.
    cgmalloc::trim();
    finish(g);
}
