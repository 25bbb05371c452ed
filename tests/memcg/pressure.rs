//! Pressure short of `memory.max`: threshold eventfds signal crossings of a usage level
//! both ways (also through the stock), and `memory.high` counts `high` events, asks the
//! reclaim callbacks for the excess (after the allocator's cache, and the cache again
//! after them) and throttles the charging thread only for what is left above `high`, on
//! the kernel's curve.
//!
//! Each test uses its own groups; run under nextest, each test has its own process.

use cgmalloc::internals::memcg::high;
use cgmalloc::{drain_stocks, Charge, Group};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;

/// The calling thread's voluntary and involuntary context switches so far: a sleep is a
/// voluntary one, being preempted an involuntary one.
fn context_switches() -> (i64, i64) {
    // SAFETY: `getrusage` writes the `rusage` it is given, and nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and a pointer to a live `rusage`.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
    (ru.ru_nvcsw, ru.ru_nivcsw)
}

/// Charges `n` times 1 MiB to `g`: the charges, their total time, and whether the
/// thread slept (a voluntary context switch) or was preempted meanwhile.
fn timed_mib_charges(g: Group, n: usize) -> (Vec<Charge>, Duration, bool, bool) {
    let mut got = Vec::with_capacity(n);
    let (vol0, invol0) = context_switches();
    let t = Instant::now();
    for _ in 0..n {
        got.push(g.try_charge(MIB).unwrap());
    }
    let took = t.elapsed();
    let (vol1, invol1) = context_switches();
    (got, took, vol1 > vol0, invol1 > invol0)
}

/// Asserts that charges which took `took` did not sleep: none made a voluntary context
/// switch, and they took well under the 10 ms below which no throttle sleeps (any
/// throttle sleeps longer). A thread preempted meanwhile is given more time, still far
/// below the 2 s these charges would sleep without reclaim.
fn assert_no_throttle(took: Duration, slept: bool, preempted: bool) {
    assert!(!slept, "a charge slept ({took:?})");
    let bound = if preempted {
        Duration::from_millis(200)
    } else {
        Duration::from_millis(5)
    };
    assert!(took < bound, "{took:?} (preempted: {preempted})");
}

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

/// A callback that frees the excess over `high` leaves nothing to throttle for: charges
/// above `high` do not sleep, and the group ends at `high`. The callback drops charges the
/// test holds (no allocator cache involved).
#[test]
fn high_with_a_callback_that_frees_enough_does_not_throttle() {
    let g = Group::create("/HF").unwrap();
    let held: Arc<Mutex<Vec<Charge>>> = Arc::new(Mutex::new(
        (0..10).map(|_| g.try_charge(MIB).unwrap()).collect(),
    ));
    g.set_high(10 * MIB).unwrap();
    drain_stocks();
    assert_eq!(g.stat().unwrap().current, 10 * MIB);
    let (asked, calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)));
    let (h2, a2, c2) = (held.clone(), asked.clone(), calls.clone());
    let _r = g
        .on_reclaim(move |wanted| {
            c2.fetch_add(1, Ordering::SeqCst);
            a2.fetch_add(wanted, Ordering::SeqCst);
            let mut freed = 0;
            let mut h = h2.lock().unwrap();
            while freed < wanted {
                let Some(c) = h.pop() else { break };
                freed += c.bytes();
            }
            freed
        })
        .unwrap();
    // Each 1 MiB charge lands 10% over `high`: 2 s of throttle, were it not reclaimed.
    let (charges, took, slept, preempted) = timed_mib_charges(g, 4);
    println!("4 charges of 1 MiB above high with a freeing callback: {took:?}");
    assert_no_throttle(took, slept, preempted);
    let s = g.stat().unwrap();
    assert_eq!(s.events_high, 4);
    assert_eq!(calls.load(Ordering::SeqCst), 4, "one call per charge");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        4 * MIB,
        "asked for the excess"
    );
    assert!(s.current <= s.high, "{} above high", s.current - s.high);
    assert_eq!(s.current, 10 * MIB);
    drop(charges);
}

/// What a callback frees into the allocator's cache is still charged: `high` runs the
/// cache step again after the callbacks before it reads the overage, so charges above
/// `high` whose excess a callback frees into the cache do not sleep either.
#[test]
fn high_uncharges_what_callbacks_free_into_the_cache_before_throttling() {
    super::fake_cache::install();
    let g = Group::create("/HC").unwrap();
    let held: Arc<Mutex<Vec<Charge>>> = Arc::new(Mutex::new(
        (0..10).map(|_| g.try_charge(MIB).unwrap()).collect(),
    ));
    g.set_high(10 * MIB).unwrap();
    drain_stocks();
    let h2 = held.clone();
    let _r = g
        .on_reclaim(move |wanted| {
            let mut freed = 0;
            let mut h = h2.lock().unwrap();
            while freed < wanted {
                let Some(c) = h.pop() else { break };
                freed += c.bytes();
                super::fake_cache::put(c);
            }
            freed
        })
        .unwrap();
    let cache_calls = super::fake_cache::calls();
    let (charges, took, slept, preempted) = timed_mib_charges(g, 4);
    println!("4 charges of 1 MiB above high, freed into the cache: {took:?}");
    assert_no_throttle(took, slept, preempted);
    assert_eq!(
        super::fake_cache::calls() - cache_calls,
        8,
        "the cache step before and after the callbacks, for each charge"
    );
    assert_eq!(super::fake_cache::held(), 0);
    let s = g.stat().unwrap();
    assert_eq!(s.events_high, 4);
    assert_eq!(s.current, 10 * MIB);
    drop(charges);
}

/// Without reclaim, a charge above `high` sleeps as the kernel's curve says
/// (`high::delay_ns`): 1 MiB charges (256 pages, 8 times the 32-page batch) that leave the
/// group 1%, 2%, 10%, 50% and 100% over a `high` of 100 MiB. Above about 6% the 2 s cap
/// applies.
#[test]
fn high_throttle_follows_the_curve() {
    let g = Group::create("/HT").unwrap();
    let high_pages = 100 * MIB / PAGE;
    for pct in [1, 2, 10, 50, 100] {
        // The usage before the charge, reached while `high` is unlimited.
        g.set_high(u64::MAX).unwrap();
        let base = g
            .try_charge(100 * MIB * pct / 100 + 100 * MIB - MIB)
            .unwrap();
        g.set_high(100 * MIB).unwrap();
        drain_stocks();
        let t = Instant::now();
        let one = g.try_charge(MIB).unwrap();
        let took = t.elapsed();
        let usage = g.stat().unwrap().current / PAGE;
        assert_eq!(usage, high_pages * (100 + pct) / 100);
        let expected = Duration::from_nanos(high::delay_ns(high::overage(usage, high_pages), 256));
        println!(
            "1 MiB charge {pct}% over high: slept {:.1} ms, the curve says {:.1} ms",
            took.as_secs_f64() * 1e3,
            expected.as_secs_f64() * 1e3
        );
        assert!(expected > Duration::ZERO);
        assert!(took >= expected, "{pct}%: {took:?} < {expected:?}");
        assert!(
            took < expected + expected / 4 + Duration::from_millis(200),
            "{pct}%: {took:?}, the curve says {expected:?}"
        );
        drop(one);
        drop(base);
    }
    assert_eq!(g.stat().unwrap().events_high, 5);
}
