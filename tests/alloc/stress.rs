//! Allocator stress with `CgMalloc` as the global allocator: 8 threads × 250,000
//! operations on raw blocks (`std::alloc::alloc` / `realloc` / `dealloc`, so that a
//! refused allocation is a null to handle, not an abort).
//!
//! - Sizes are log-uniform from 1 B to 256 KiB (every octave equally likely: small
//!   blocks in spans, medium blocks above 32 KiB), plus 1% from 1 to 8 MiB; 2% of
//!   the blocks are over-aligned (32 B to 64 KiB).
//! - Every block carries a pattern derived from a per-block key (every byte up to 4 KiB;
//!   head, tail and 8 bytes every 16 KiB above, every 256 KiB from 1 MiB), checked
//!   before it is freed or reallocated.
//! - A quarter of the frees are handed to another worker through its mailbox (a
//!   `Mutex<Vec>` reserved up front), which checks and frees them; 3% of the operations
//!   are `realloc`s. Workers allocate nothing but the raw blocks while in the groups:
//!   any allocation may be refused there, and a collection would abort.
//! - 5% of the operations move the thread to another of 16 groups in three levels below
//!   `/st` (`enter()` guards); a block is charged to the group current when it was
//!   allocated, whoever frees it.
//! - Meanwhile another thread keeps setting `memory.max` of random groups of the tree to
//!   32, 64 or 256 MiB or `max`. Refused allocations are counted, not errors.
//!
//! Afterwards, with every block freed, the workers joined, every stock drained and the
//! caches reclaimed, every group of the tree reads exactly 0 in `memory.current` and in
//! `memory.stat`'s `allocated`, `small`, `large`, `cached` and `stock`, and
//! `nr_charges == nr_uncharges` (every page run charged was uncharged once).
//!
//! A second run, a twelfth as long, has every remote free yield the CPU just after its
//! push, so that the owner reuses spans under pushers that have not finished.
//!
//! `CGMALLOC_ALLOC_STRESS_OPS=N` changes the operations per worker.

use crate::support::alloc::*;
use crate::support::rng::Rng;
use cgmalloc::{EnterGuard, Group};
use std::alloc::{alloc, dealloc, realloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Writes one line to stderr without allocating (the failing thread may be in a group
/// that refuses every allocation, and a panic's message would be lost) and aborts, which
/// keeps the process's memory for a core dump.
fn die(args: std::fmt::Arguments) -> ! {
    struct Buf([u8; 512], usize);
    impl std::fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let n = s.len().min(self.0.len() - self.1);
            self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
            self.1 += n;
            Ok(())
        }
    }
    let mut b = Buf([0; 512], 0);
    let _ = std::fmt::write(&mut b, args);
    let _ = std::fmt::Write::write_str(&mut b, "\n");
    // SAFETY: writes `b.1` initialised bytes of `b.0` to fd 2.
    unsafe { libc::write(2, b.0.as_ptr().cast(), b.1) };
    std::process::abort();
}

/// Dies naming the block at `p` of `layout` with key `key` corrupted at `off`: the
/// 16 bytes from `off` as found and as expected.
fn corrupted(who: &str, p: *const u8, layout: Layout, key: u64, off: usize) -> ! {
    let mut found = [0u8; 16];
    let mut want = [0u8; 16];
    for i in 0..16.min(layout.size() - off) {
        // SAFETY: `off + i < layout.size()`, inside the live block.
        found[i] = unsafe { p.add(off + i).read() };
        want[i] = pat(key, off + i);
    }
    die(format_args!(
        "{who}: block {p:p} ({layout:?}) corrupted at offset {off}: found {found:02x?}, \
         expected {want:02x?}"
    ))
}

const WORKERS: usize = 8;
const OPS: usize = 250_000;
/// Live blocks a worker keeps at most.
const KEEP: usize = 64;
/// Capacity of a mailbox (reserved up front; a full mailbox makes the sender free the
/// block itself).
const MAILBOX: usize = 4096;

/// The groups below the test's top group.
const PATHS: [&str; 16] = [
    "a", "b", "c", "d", "a/x", "a/y", "b/x", "b/y", "c/x", "d/x", "a/x/p", "a/x/q", "b/x/p",
    "c/x/p", "d/x/p", "a/y/p",
];

/// A live block and the key of its pattern.
struct Block {
    ptr: *mut u8,
    layout: Layout,
    key: u64,
}

// SAFETY: a block is plain memory owned by whoever holds the `Block`.
unsafe impl Send for Block {}

impl Block {
    /// Checks the pattern and frees the block.
    fn free(self, who: &str) {
        // SAFETY: a live block of `layout.size()` bytes.
        if let Some(i) = unsafe { check(self.ptr, self.layout.size(), self.key) } {
            corrupted(who, self.ptr, self.layout, self.key, i);
        }
        // SAFETY: allocated with this layout, freed once.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

#[derive(Default)]
struct Counts {
    allocs: AtomicU64,
    failed: AtomicU64,
    frees: AtomicU64,
    handed: AtomicU64,
    remote_frees: AtomicU64,
    reallocs: AtomicU64,
    realloc_failed: AtomicU64,
    switches: AtomicU64,
    bytes: AtomicU64,
}

fn ops() -> usize {
    std::env::var("CGMALLOC_ALLOC_STRESS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(OPS)
}

fn pick_layout(rng: &mut Rng) -> Layout {
    let size = if rng.chance(1) {
        rng.range(MIB as u64, 8 * MIB as u64)
    } else {
        rng.log_range(1, 256 * KIB as u64)
    } as usize;
    let align = if rng.chance(2) {
        [32usize, 64, 128, 4096, 64 * KIB][rng.below(5) as usize]
    } else {
        16
    };
    Layout::from_size_align(size, align).unwrap()
}

struct Shared {
    groups: Vec<Group>,
    mailboxes: Vec<Mutex<Vec<Block>>>,
    counts: Counts,
}

/// Frees what other workers handed to `me`. `spare` is an empty vector with the
/// mailboxes' capacity, swapped with the mailbox (nothing is allocated: the workers run
/// in groups whose limits may refuse any allocation, and a collection would abort).
fn drain_mailbox(sh: &Shared, me: usize, spare: &mut Vec<Block>) {
    debug_assert!(spare.is_empty());
    std::mem::swap(&mut *sh.mailboxes[me].lock().unwrap(), spare);
    let n = spare.len() as u64;
    for b in spare.drain(..) {
        b.free("mailbox");
    }
    sh.counts.remote_frees.fetch_add(n, Ordering::Relaxed);
}

fn worker(sh: &Shared, me: usize, ops: usize) {
    let mut rng = Rng(0x5eed_0000 + me as u64 * 7919);
    let mut live: Vec<Block> = Vec::with_capacity(KEEP);
    let mut spare: Vec<Block> = Vec::with_capacity(MAILBOX);
    let mut guard: Option<EnterGuard> = Some(sh.groups[me % PATHS.len()].enter().unwrap());
    let c = &sh.counts;
    for op in 0..ops {
        if op % 64 == 63 {
            drain_mailbox(sh, me, &mut spare);
        }
        if rng.chance(5) {
            // Leave the current group before entering the next, so that the guards do
            // not nest.
            drop(guard.take());
            let g = sh.groups[rng.below(PATHS.len() as u64) as usize];
            guard = Some(g.enter().unwrap());
            c.switches.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if !live.is_empty() && rng.chance(3) {
            let i = rng.below(live.len() as u64) as usize;
            let b = &mut live[i];
            // SAFETY: a live block.
            if let Some(off) = unsafe { check(b.ptr, b.layout.size(), b.key) } {
                corrupted("before realloc", b.ptr, b.layout, b.key, off);
            }
            let new_size = pick_layout(&mut rng).size();
            // SAFETY: `b.ptr` is live with `b.layout`; the new size is non-zero.
            let q = unsafe { realloc(b.ptr, b.layout, new_size) };
            c.reallocs.fetch_add(1, Ordering::Relaxed);
            if q.is_null() {
                c.realloc_failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            assert_eq!(
                q as usize % b.layout.align(),
                0,
                "realloc lost the alignment"
            );
            // SAFETY: the contents moved up to the smaller size.
            if let Some(off) = unsafe { check_upto(q, b.layout.size(), new_size, b.key) } {
                die(format_args!(
                    "worker {me}: realloc {:?} of {:p} -> {q:p} ({new_size}) lost data at {off}",
                    b.layout, b.ptr
                ));
            }
            b.ptr = q;
            b.layout = Layout::from_size_align(new_size, b.layout.align()).unwrap();
            b.key = rng.next();
            // SAFETY: a live block of the new size.
            unsafe { fill(q, new_size, b.key) };
            continue;
        }
        let want_alloc = live.is_empty() || (live.len() < KEEP && rng.chance(55));
        if want_alloc {
            let layout = pick_layout(&mut rng);
            // SAFETY: non-zero size.
            let p = unsafe { alloc(layout) };
            if p.is_null() {
                c.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            assert_eq!(p as usize % layout.align(), 0, "{layout:?} misaligned");
            let key = rng.next();
            // SAFETY: a new block of `layout.size()` bytes.
            unsafe { fill(p, layout.size(), key) };
            c.allocs.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(layout.size() as u64, Ordering::Relaxed);
            live.push(Block {
                ptr: p,
                layout,
                key,
            });
        } else {
            let i = rng.below(live.len() as u64) as usize;
            let b = live.swap_remove(i);
            if rng.chance(25) {
                let mut to = rng.below(WORKERS as u64 - 1) as usize;
                if to >= me {
                    to += 1;
                }
                let mut mb = sh.mailboxes[to].lock().unwrap();
                if mb.len() < mb.capacity() {
                    mb.push(b);
                    c.handed.fetch_add(1, Ordering::Relaxed);
                } else {
                    drop(mb);
                    b.free("owner, mailbox full");
                    c.frees.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                b.free("owner");
                c.frees.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    for b in live.drain(..) {
        b.free("owner at the end");
        c.frees.fetch_add(1, Ordering::Relaxed);
    }
    drain_mailbox(sh, me, &mut spare);
    drop(guard);
}

#[test]
fn stress_threads_groups_and_limits() {
    stress("/st", ops());
}

/// The same with every remote free yielding the CPU just after its push
/// (`os::fault::widen_races`): the owner then often collects the block, empties the span
/// and reuses it before the freeing thread goes on, a window that is a few instructions
/// wide otherwise.
#[test]
fn stress_with_remote_frees_preempted_after_their_push() {
    cgmalloc::internals::fault::widen_races(true);
    stress("/sw", ops() / 12);
    cgmalloc::internals::fault::widen_races(false);
}

/// Runs the stress with the groups below `top`, `ops` operations per worker, and checks
/// that every group reads 0 afterwards.
fn stress(top_path: &str, ops: usize) {
    let started = Instant::now();
    let top = Group::create(top_path).unwrap();
    let groups: Vec<Group> = PATHS
        .iter()
        .map(|p| Group::create(&format!("{top_path}/{p}")).unwrap())
        .collect();
    let sh = Arc::new(Shared {
        groups: groups.clone(),
        mailboxes: (0..WORKERS)
            .map(|_| Mutex::new(Vec::with_capacity(MAILBOX)))
            .collect(),
        counts: Counts::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let limit_changes = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(WORKERS + 2));

    // Workers, the limit mover and this thread start together.
    // The limit mover: random groups of the tree (the top included) get a generous
    // `memory.max` or none.
    let mover = {
        let (stop, changes, barrier) = (stop.clone(), limit_changes.clone(), barrier.clone());
        let mut all = groups.clone();
        all.push(top);
        std::thread::spawn(move || {
            let mut rng = Rng(42);
            barrier.wait();
            while !stop.load(Ordering::Relaxed) {
                let g = all[rng.below(all.len() as u64) as usize];
                let v = match rng.below(6) {
                    0 => 32 << 20,
                    1 => 64 << 20,
                    2 => 256 << 20,
                    _ => u64::MAX,
                };
                g.set_max(v).unwrap();
                changes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            for g in &all {
                g.set_max(u64::MAX).unwrap();
            }
        })
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|me| {
            let sh = sh.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                worker(&sh, me, ops);
            })
        })
        .collect();
    barrier.wait();
    let mut panicked = false;
    for w in workers {
        panicked |= w.join().is_err();
    }
    stop.store(true, Ordering::Relaxed);
    mover.join().unwrap();
    assert!(!panicked, "a worker failed");
    let run_time = started.elapsed();

    // Blocks handed to workers after their last look at their mailbox.
    let mut spare = Vec::with_capacity(MAILBOX);
    for me in 0..WORKERS {
        drain_mailbox(&sh, me, &mut spare);
    }
    drop(spare);
    let c = &sh.counts;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "{} ops/worker in {:.2?}: {} allocs ({} MiB), {} refused, {} owner frees, {} handed over, \
         {} freed from mailboxes, {} reallocs ({} refused), {} group switches, {} limit changes",
        ops,
        run_time,
        get(&c.allocs),
        get(&c.bytes) >> 20,
        get(&c.failed),
        get(&c.frees),
        get(&c.handed),
        get(&c.remote_frees),
        get(&c.reallocs),
        get(&c.realloc_failed),
        get(&c.switches),
        get(&limit_changes),
    );
    assert_eq!(
        get(&c.allocs),
        get(&c.frees) + get(&c.remote_frees),
        "every block allocated was freed once"
    );
    assert_eq!(get(&c.handed), get(&c.remote_frees));
    assert!(
        get(&c.handed) * 5 >= (get(&c.frees) + get(&c.handed)),
        "about a quarter handed over"
    );
    assert!(get(&c.switches) > 0);
    drop(sh);

    // Every group used, and its peak kept above its current.
    for (g, p) in groups.iter().zip(PATHS) {
        let s = g.stat().unwrap();
        assert!(s.peak > 0, "{p} was never charged");
        assert!(s.peak >= s.current, "{p}");
    }
    quiesce(&top);
    for (g, p) in groups.iter().zip(PATHS) {
        let st = kv(g, "memory.stat");
        assert_eq!(
            current(g),
            0,
            "{p}: memory.current after quiescence; memory.stat {st:?}"
        );
        assert_empty(g);
    }
    assert_empty(&top);
    let st = kv(&top, "memory.stat");
    assert_eq!(
        st["nr_charges"], st["nr_uncharges"],
        "every page run charged in {top_path} was uncharged once: {st:?}"
    );
    eprintln!("total {:.2?}", started.elapsed());
}
