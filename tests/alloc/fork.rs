//! `fork()` at any instant, with `CgMalloc` as the global allocator: four workers allocate
//! and free blocks of every band (small, medium, large) in the root, in a child group and
//! in a child group whose limit is hit now and then, handing a quarter of their blocks to
//! each other; one of them trims now and then. Meanwhile the main thread, itself in a
//! child group, forks again and again, and reclaims or lowers a limit between forks.
//!
//! Each child, whose only thread is the forking one, checks right away that every
//! group's counter is exactly what the spans, mappings, stocks and explicit charges
//! record (`cgmalloc::audit`): the workers may have been anywhere, between a charge and
//! its record included; and that every free slice not marked dirty reads as zeros (a
//! new span there is not zeroed). It then allocates and frees blocks of every band, checks again
//! after returning its caches, and exits 0; any other end (a fatal line and `SIGABRT`, a
//! failed audit) fails the test.
//!
//! A second run has every charge record's update, and a released span's slices between
//! being marked dirty and free, yield the CPU (`os::fault::widen_races`): those windows
//! are then wide open when the parent forks. Afterwards, with every block freed, every group reads exactly 0 and the audit
//! holds in the parent too.

use crate::support::alloc::*;
use crate::support::rng::Rng;
use cgmalloc::Group;
use std::alloc::{alloc, dealloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

const WORKERS: usize = 4;
const SLOTS: usize = 256;

/// Writes `msg` to stderr and leaves the child process with status 1, without unwinding
/// or running the parent's exit handlers.
fn child_fail(msg: &str) -> ! {
    // SAFETY: writes `msg.len()` bytes of `msg`; `_exit` has no preconditions.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(1)
    }
}

/// A block's size is kept in its first word, so another thread can free it.
fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

fn new_block(size: usize) -> *mut u8 {
    // SAFETY: a non-zero size.
    let p = unsafe { alloc(layout(size)) };
    if !p.is_null() {
        // SAFETY: a block of at least 16 bytes.
        unsafe { (p as *mut usize).write(size) };
    }
    p
}

fn free_block(p: *mut u8) {
    if p.is_null() {
        return;
    }
    // SAFETY: a block made by `new_block`, whose first word holds its size.
    unsafe { dealloc(p, layout((p as *const usize).read())) };
}

/// A size of band `b`: small, medium or large; with `b == 3`, any of them.
fn size_of_band(r: &mut Rng, b: u64) -> usize {
    match b {
        0 => r.log_range(16, 32 << 10) as usize,
        1 => r.range((32 << 10) + 1, 1 << 20) as usize,
        2 => r.range((1 << 20) + 1, 4 << 20) as usize,
        _ => {
            let b = if r.chance(2) { 2 } else { r.below(2) };
            size_of_band(r, b)
        }
    }
}

struct Shared {
    stop: AtomicBool,
    mailbox: Vec<AtomicPtr<u8>>,
    ops: AtomicU64,
    refused: AtomicU64,
}

fn worker(sh: &Shared, group: Group, id: u64) {
    let _in = group.enter().unwrap();
    let mut r = Rng(id * 7919 + 1);
    let mut own: [*mut u8; 16] = [std::ptr::null_mut(); 16];
    while !sh.stop.load(Ordering::Relaxed) {
        let size = size_of_band(&mut r, 3);
        let p = new_block(size);
        if p.is_null() {
            sh.refused.fetch_add(1, Ordering::Relaxed);
        }
        if r.chance(25) {
            let slot = r.below(SLOTS as u64) as usize;
            free_block(sh.mailbox[slot].swap(p, Ordering::AcqRel));
        } else {
            let i = r.below(own.len() as u64) as usize;
            free_block(std::mem::replace(&mut own[i], p));
        }
        if id == 0 && r.chance(1) && r.chance(10) {
            cgmalloc::trim();
        }
        sh.ops.fetch_add(1, Ordering::Relaxed);
    }
    for p in own {
        free_block(p);
    }
}

/// In the child: the audit, blocks of every band allocated and freed, the audit again.
fn child(band_seed: u64) -> ! {
    if let Err(why) = cgmalloc::audit() {
        child_fail(&format!("child: audit after fork: {why}\n"));
    }
    // A free slice not marked dirty must read as zeros: a new span there skips zeroing.
    // SAFETY: only this thread runs in the child.
    if let Some((seg, slice)) = unsafe { cgmalloc::internals::first_unclean_free_slice() } {
        child_fail(&format!(
            "child: free slice {slice} of segment {seg:#x} is not dirty but not zero\n"
        ));
    }
    let mut r = Rng(band_seed);
    let mut blocks = Vec::with_capacity(32);
    for b in 0..3 {
        for _ in 0..8 {
            blocks.push(new_block(size_of_band(&mut r, b)));
        }
    }
    let here = Group::current().stat().map(|s| s.current).unwrap_or(0);
    if here == 0 {
        child_fail("child: its group reads 0 with blocks live\n");
    }
    for p in blocks.drain(..) {
        free_block(p);
    }
    drop(blocks);
    cgmalloc::trim();
    cgmalloc::drain_stocks();
    if let Err(why) = cgmalloc::audit() {
        child_fail(&format!("child: audit after its frees: {why}\n"));
    }
    // SAFETY: `_exit` has no preconditions; the parent's atexit handlers must not run.
    unsafe { libc::_exit(0) }
}

/// Forks `forks` times while the workers run; returns the children that did not exit 0.
fn forks_under_load(top: &str, forks: u64) -> u64 {
    let root_kids = Group::create(top).unwrap();
    let plain = Group::create(&format!("{top}/plain")).unwrap();
    let limited = Group::create(&format!("{top}/limited")).unwrap();
    limited.set_max(24 << 20).unwrap();
    let forker = Group::create(&format!("{top}/forker")).unwrap();
    let sh = Arc::new(Shared {
        stop: AtomicBool::new(false),
        mailbox: (0..SLOTS)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect(),
        ops: AtomicU64::new(0),
        refused: AtomicU64::new(0),
    });
    let groups = [Group::root(), plain, limited, limited];
    let handles: Vec<_> = (0..WORKERS)
        .map(|i| {
            let sh = sh.clone();
            let g = groups[i];
            std::thread::spawn(move || worker(&sh, g, i as u64))
        })
        .collect();
    let _in = forker.enter().unwrap();
    let mut bad = 0;
    let mut r = Rng(42);
    while sh.ops.load(Ordering::Relaxed) < 200 {
        std::thread::yield_now();
    }
    for i in 0..forks {
        // SAFETY: the child runs `child`, which only allocates through cgmalloc (whose
        // fork handlers leave it consistent), and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            child(i + 1);
        }
        let mut st = 0;
        // SAFETY: waits for our own child; `st` is a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        if !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
            bad += 1;
        }
        match r.below(8) {
            0 => {
                let _ = plain.reclaim(r.range(1, 64) << 16);
            }
            1 => limited.set_max(r.range(8, 32) << 20).unwrap(),
            _ => {}
        }
    }
    sh.stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    for slot in &sh.mailbox {
        free_block(slot.swap(std::ptr::null_mut(), Ordering::AcqRel));
    }
    eprintln!(
        "{top}: {forks} forks, {bad} children failed; workers made {} blocks, {} refused",
        sh.ops.load(Ordering::Relaxed),
        sh.refused.load(Ordering::Relaxed)
    );
    drop(_in);
    cgmalloc::audit().unwrap();
    for g in [plain, limited, forker] {
        assert_all_returned(&g);
    }
    quiesce(&root_kids);
    assert_empty(&root_kids);
    cgmalloc::audit().unwrap();
    bad
}

#[test]
fn fork_children_survive_every_band_in_every_group() {
    assert_eq!(
        forks_under_load("/fk", 150),
        0,
        "children died (see stderr)"
    );
}

#[test]
fn fork_children_survive_with_the_record_windows_wide_open() {
    cgmalloc::internals::fault::widen_races(true);
    let bad = forks_under_load("/fw", 150);
    cgmalloc::internals::fault::widen_races(false);
    assert_eq!(bad, 0, "children died (see stderr)");
}

/// A fork while a thread of a child group sleeps in its `high` throttle (a stall of
/// `memory.pressure`): the child, whose only thread is the forking one, has no stalled
/// thread, so its totals stop growing, in the group and the root alike; it then stalls
/// on its own, which counts again. The parent's stall counts in full.
#[test]
fn a_fork_during_a_stall_leaves_the_child_unstalled() {
    const MIB: u64 = 1 << 20;
    let top = Group::create("/fs").unwrap();
    let t = Group::create("/fs/t").unwrap();
    top.set_max(512 * MIB).unwrap();
    // A 1 MiB charge that lands 50% over `high` sleeps the 2 s cap; 2% over, ~205 ms.
    let base = t.try_charge(149 * MIB).unwrap();
    let (ready, stalling) = std::sync::mpsc::channel();
    let stalled = std::thread::spawn(move || {
        let _in = t.enter().unwrap();
        // Blocks of every band, charged to the group, around the stall.
        let blocks: Vec<Vec<u8>> = [16usize, 4 << 10, 200 << 10, 4 << 20]
            .iter()
            .map(|&n| vec![1u8; n])
            .collect();
        t.set_high(100 * MIB).unwrap();
        ready.send(()).unwrap();
        let start = std::time::Instant::now();
        drop(t.try_charge(MIB).unwrap());
        let took = start.elapsed();
        drop(blocks);
        took
    });
    stalling.recv().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = t.pressure().unwrap();
    assert!(
        before.some_total_us >= 200_000,
        "not stalled yet: {before:?}"
    );
    // SAFETY: the child reads its groups, charges and leaves with `_exit`; cgmalloc's
    // fork handlers leave it consistent.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let read = || (t.pressure().unwrap(), Group::root().pressure().unwrap());
        let (g1, r1) = read();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (g2, r2) = read();
        if g2.some_total_us != g1.some_total_us || r2.some_total_us != r1.some_total_us {
            child_fail(&format!("child: stalls grew: {g1:?} -> {g2:?}\n"));
        }
        // Its own stall counts: 1 MiB at 2% over `high`.
        drop(base);
        t.set_high(u64::MAX).unwrap();
        let base = t.try_charge(101 * MIB).unwrap();
        t.set_high(100 * MIB).unwrap();
        drop(t.try_charge(MIB).unwrap());
        let (g3, _) = read();
        if g3.some_total_us < g2.some_total_us + 150_000 {
            child_fail(&format!("child: its own stall missed: {g2:?} -> {g3:?}\n"));
        }
        drop(base);
        // SAFETY: leaves the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut st = 0;
    // SAFETY: waits for our own child; `st` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "the child failed (see stderr): {st:#x}"
    );
    let took = stalled.join().unwrap();
    let after = t.pressure().unwrap();
    println!("a {took:?} stall across a fork: {after:?}");
    assert!(took >= std::time::Duration::from_millis(1900), "{took:?}");
    let us = took.as_micros() as u64;
    assert!(
        after.some_total_us >= us * 9 / 10 && after.some_total_us <= us + 100_000,
        "{after:?} for a {took:?} stall"
    );
    drop(base);
}
