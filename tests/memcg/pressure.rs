//! Pressure short of `memory.max`: threshold eventfds signal crossings of a usage level
//! both ways (also through the stock), and `memory.high` counts `high` events, asks the
//! reclaim callbacks for the excess and throttles the charging thread.
//!
//! Each test uses its own groups; run under nextest, each test has its own process.

use cgmalloc::{drain_stocks, Group};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const PAGE: u64 = 4096;

fn read_eventfd(fd: &std::os::fd::OwnedFd) -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v` from a descriptor we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    (n == 8).then_some(v)
}

#[test]
fn threshold_eventfd_signals_crossings_both_ways() {
    let g = Group::create("/T").unwrap();
    let fd = g.threshold_eventfd(100 * PAGE).unwrap();
    assert_eq!(read_eventfd(&fd), None, "nothing crossed yet");
    let below = g.try_charge(90 * PAGE).unwrap();
    assert_eq!(read_eventfd(&fd), None);
    let above = g.try_charge(40 * PAGE).unwrap();
    assert_eq!(read_eventfd(&fd), Some(1), "crossed upwards");
    drop(above);
    drain_stocks();
    assert_eq!(read_eventfd(&fd), Some(1), "crossed downwards");
    // A crossing seen within 32 pages even through the stock.
    let mut small = Vec::new();
    for _ in 0..20 {
        small.push(g.try_charge(PAGE).unwrap());
    }
    assert_eq!(read_eventfd(&fd), Some(1), "small charges crossed upwards");
    drop(small);
    drop(below);
    g.threshold_remove(fd).unwrap();
}

#[test]
fn high_counts_events_reclaims_and_throttles() {
    let g = Group::create("/H").unwrap();
    let wanted = Arc::new(AtomicU64::new(0));
    let w2 = wanted.clone();
    let _r = g
        .on_reclaim(move |w| {
            w2.fetch_add(w, Ordering::SeqCst);
            0
        })
        .unwrap();
    g.set_high(31 * PAGE).unwrap();
    let t = std::time::Instant::now();
    let c = g.try_charge(PAGE).unwrap(); // a 32-page batch lands 1 page over high
    let slept = t.elapsed();
    assert_eq!(g.stat().unwrap().events_high, 1, "one high event");
    assert!(
        wanted.load(Ordering::SeqCst) >= PAGE,
        "reclaimed the excess"
    );
    // Overage 1/31: 64 s / 961 ≈ 66 ms of throttling (the kernel's curve).
    assert!(slept >= std::time::Duration::from_millis(50), "{slept:?}");
    drop(c);
}
