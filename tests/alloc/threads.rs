//! Thread churn with `CgMalloc` as the global allocator: 100,000 thread create / join
//! cycles. Each thread attaches to `/tc`, allocates a `Box<[u8; 100]>` (a small block in
//! a span) and a 40 KiB `Vec` (a medium block, a span of its own), fills both, hands one
//! of them to the main thread (alternately) and drops the other before exiting; the main
//! thread checks and frees what it was handed.
//!
//! Every 10,000 cycles, and at the end, with no worker alive, every stock drained and
//! the caches reclaimed, `/tc` reads exactly 0 (its baseline): nothing leaks per thread
//! (spans of exited threads, their caches of large mappings, their stocks). At the end
//! `cgroup.threads` of `/tc` is empty and `nr_charges == nr_uncharges`.
//!
//! `CGMALLOC_ALLOC_THREADS=N` changes the number of cycles.
//!
//! A thread's life in the allocator (heaps set up, every size band, remote frees, trim,
//! exit) touches at most 24 KiB of its stack, the test body's frames included.

use crate::support::alloc::*;
use cgmalloc::Group;
use std::time::Instant;

const CYCLES: usize = 100_000;
const CHECK_EVERY: usize = 10_000;

enum Handed {
    Small(Box<[u8; 100]>),
    Large(Vec<u8>),
}

fn cycles() -> usize {
    std::env::var("CGMALLOC_ALLOC_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES)
}

#[test]
fn thread_create_join_cycles_return_to_baseline() {
    let g = Group::create("/tc").unwrap();
    let baseline = current(&g);
    assert_eq!(baseline, 0);
    let n = cycles();
    let started = Instant::now();
    let mut max_seen = 0u64;
    for i in 0..n {
        let tag = i as u8;
        let h = std::thread::spawn(move || {
            g.attach_current_thread().unwrap();
            assert_eq!(Group::current(), g);
            let mut small = Box::new([0u8; 100]);
            small.fill(tag);
            let large = vec![tag ^ 0xff; 40 * KIB];
            // Still attached and charged while alive.
            assert!(current(&g) >= 40 * KIB as u64);
            if i % 2 == 0 {
                Handed::Small(small)
            } else {
                Handed::Large(large)
            }
        });
        let handed = h.join().expect("worker thread");
        match &handed {
            Handed::Small(b) => assert!(b.iter().all(|&x| x == tag), "cycle {i}"),
            Handed::Large(v) => {
                assert_eq!(v.len(), 40 * KIB);
                assert!(v.iter().all(|&x| x == tag ^ 0xff), "cycle {i}");
            }
        }
        // The block the thread handed over is still charged to /tc after its exit.
        let c = current(&g);
        assert!(c > 0, "cycle {i}: the handed block is no longer charged");
        max_seen = max_seen.max(c);
        drop(handed);
        if (i + 1) % CHECK_EVERY == 0 {
            quiesce(&g);
            let c = current(&g);
            assert_eq!(
                c,
                baseline,
                "after {} cycles: memory.current {c}, memory.stat {:?}",
                i + 1,
                kv(&g, "memory.stat")
            );
        }
    }
    let elapsed = started.elapsed();
    let before_quiesce = current(&g);
    quiesce(&g);
    eprintln!(
        "{n} cycles in {elapsed:.2?} ({:.1} µs each); highest memory.current seen {max_seen} B; \
         {before_quiesce} B before the last drain/reclaim",
        elapsed.as_secs_f64() * 1e6 / n as f64
    );
    assert_eq!(current(&g), baseline);
    assert_empty(&g);
    assert_eq!(
        g.read("cgroup.threads").unwrap(),
        "",
        "exited threads still listed"
    );
    let st = kv(&g, "memory.stat");
    // The next thread takes over the state an exited one retired (`alloc::retired`),
    // its spans still charged: the cycles need not charge again.
    assert!(st["nr_charges"] > 0, "{st:?}");
    assert_eq!(st["nr_charges"], st["nr_uncharges"], "{st:?}");
    // The group can go away: no thread is attached any more.
    g.destroy().unwrap();
}

/// The owner's fast `free` knows a segment is its own by the thread pointer it records.
/// glibc reuses an exited thread's stack, and so its thread pointer, for the next thread
/// it creates: that thread must not take the exited thread's segments for its own. Each
/// cycle, a thread leaves live small blocks behind (its segment is abandoned) and the
/// next thread, usually on the same thread pointer, frees them, which empties their span,
/// and allocates the same size again.
#[test]
fn a_thread_on_an_exited_threads_thread_pointer_owns_none_of_its_memory() {
    let g = Group::create("/tp").unwrap();
    let mut left: Vec<usize> = Vec::new();
    let mut reused = 0;
    let mut last_tp = 0usize;
    for i in 0..500u64 {
        let to_free = std::mem::take(&mut left);
        let h = std::thread::spawn(move || {
            g.attach_current_thread().unwrap();
            // SAFETY: pthread_self has no preconditions; on glibc it is the thread
            // pointer.
            let tp = unsafe { libc::pthread_self() } as usize;
            for p in to_free {
                // SAFETY: a block of `layout(200)` from the thread before, freed once.
                unsafe { std::alloc::dealloc(p as *mut u8, layout(200)) };
            }
            let mine: Vec<usize> = (0..40)
                .map(|k| {
                    // SAFETY: non-zero size.
                    let p = unsafe { std::alloc::alloc(layout(200)) };
                    assert!(!p.is_null());
                    // SAFETY: a live block of 200 bytes.
                    unsafe { fill(p, 200, i << 8 | k) };
                    p as usize
                })
                .collect();
            (tp, mine)
        });
        let (tp, mine) = h.join().expect("worker thread");
        if tp == last_tp {
            reused += 1;
        }
        last_tp = tp;
        for (k, &p) in mine.iter().enumerate() {
            // SAFETY: a live block of 200 bytes the thread left.
            let bad = unsafe { check(p as *const u8, 200, i << 8 | k as u64) };
            assert_eq!(bad, None, "cycle {i}");
        }
        left = mine;
    }
    for p in left {
        // SAFETY: as above.
        unsafe { std::alloc::dealloc(p as *mut u8, layout(200)) };
    }
    assert!(
        reused > 100,
        "thread pointers reused in only {reused} of 500 cycles"
    );
    quiesce(&g);
    assert_eq!(current(&g), 0, "memory.stat {:?}", kv(&g, "memory.stat"));
    let st = kv(&g, "memory.stat");
    assert_eq!(st["nr_charges"], st["nr_uncharges"], "{st:?}");
    g.destroy().unwrap();
}

/// The stack a thread's life in the allocator touches: the body below, run on a stack
/// of our own filled with a pattern, allocates in every size band in a limited child
/// group (its first allocation sets up its heaps), frees blocks another thread
/// allocated, trims, moves to the root and exits (its heaps abandoned, its spans
/// released, on this stack). A stack stays resident until its thread is joined, so a
/// program with many threads pays this per thread; the allocator's frames must stay
/// well inside a few pages (a record of 4.6 KiB on several of them once made every
/// thread touch 20 KiB where glibc's malloc touches 8).
#[test]
fn a_thread_touches_few_pages_of_its_stack() {
    const STACK: usize = 1 << 20;
    const PATTERN: u8 = 0xa5;
    /// What the allocator's frames may add to the body's own.
    const LIMIT: usize = 24 * KIB;
    let g = Group::create("/stack").unwrap();
    g.write("memory.max", "64M").unwrap();
    let foreign: Vec<Box<[u8; 48]>> = (0..2000).map(|_| Box::new([1u8; 48])).collect();
    struct Work {
        group: Group,
        /// Small blocks of the main thread, one allocation each, for remote frees.
        #[allow(clippy::vec_box)]
        foreign: Vec<Box<[u8; 48]>>,
    }
    extern "C" fn body(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the `Work` boxed below, handed to this thread alone.
        let work = unsafe { Box::from_raw(arg as *mut Work) };
        work.group.attach_current_thread().unwrap();
        let mut kept = Vec::new();
        for size in [8usize, 100, 1000, 16 * KIB, 40 * KIB, 300 * KIB, 3 * MIB] {
            for _ in 0..8 {
                kept.push(vec![7u8; size]);
            }
        }
        drop(work.foreign);
        kept.truncate(10);
        cgmalloc::trim();
        Group::root().attach_current_thread().unwrap();
        drop(kept);
        std::ptr::null_mut()
    }
    // SAFETY: an anonymous private mapping, checked below.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(stack, libc::MAP_FAILED);
    // SAFETY: the mapping just made, `STACK` bytes.
    unsafe { std::ptr::write_bytes(stack.cast::<u8>(), PATTERN, STACK) };
    let work = Box::into_raw(Box::new(Work { group: g, foreign }));
    // SAFETY: a zeroed attribute initialised by `pthread_attr_init`; the stack is ours,
    // outlives the thread (joined below) and is unmapped after; `body` takes `work`.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_attr_init(&mut attr), 0);
        assert_eq!(libc::pthread_attr_setstack(&mut attr, stack, STACK), 0);
        let mut t: libc::pthread_t = 0;
        assert_eq!(libc::pthread_create(&mut t, &attr, body, work.cast()), 0);
        assert_eq!(libc::pthread_join(t, std::ptr::null_mut()), 0);
        libc::pthread_attr_destroy(&mut attr);
    }
    // SAFETY: the mapping, which the joined thread no longer uses.
    let bytes = unsafe { std::slice::from_raw_parts(stack.cast::<u8>(), STACK) };
    let untouched = bytes.iter().take_while(|&&b| b == PATTERN).count();
    let used = STACK - untouched;
    eprintln!("stack touched: {} KiB", used / KIB);
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(stack, STACK) };
    // The sanitizers' instrumentation makes every frame larger (scripts/sanitize.sh sets
    // their options): the figure says nothing there.
    let sanitized =
        std::env::var_os("TSAN_OPTIONS").is_some() || std::env::var_os("ASAN_OPTIONS").is_some();
    assert!(
        used <= LIMIT || sanitized,
        "a thread's life in the allocator touched {} KiB of its stack (at most {} KiB)",
        used / KIB,
        LIMIT / KIB
    );
}
