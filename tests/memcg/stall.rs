//! `memory.pressure`: the stall time of threads in the charge path, per group, with its
//! averages and triggers (the kernel's PSI). The stalls here are `memory.high` throttles of
//! explicit charges, whose length the kernel's curve gives (`high::delay_ns`): a 1 MiB
//! charge that leaves a group 1% over a `high` of 100 MiB sleeps about 51 ms, 2% over
//! about 205 ms, 6% and more the 2 s cap.
//!
//! Each test uses its own groups; run under nextest, each test has its own process.

use cgmalloc::{drain_stocks, Charge, Group, PressureKind};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Charges `g` to `100 + pct` percent of a `high` of 100 MiB, less 1 MiB, so that each
/// further 1 MiB charge lands `pct`% over `high` and sleeps in the throttle.
fn over_high_by(g: Group, pct: u64) -> Charge {
    g.set_high(u64::MAX).unwrap();
    let base = g.try_charge(100 * MIB * (100 + pct) / 100 - MIB).unwrap();
    g.set_high(100 * MIB).unwrap();
    drain_stocks();
    base
}

/// One throttled 1 MiB charge, given back at once: how long it took.
fn stall_once(g: Group) -> Duration {
    let t = Instant::now();
    let c = g.try_charge(MIB).unwrap();
    let took = t.elapsed();
    drop(c);
    drain_stocks();
    took
}

fn read_eventfd(fd: &OwnedFd) -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v` from a descriptor we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    (n == 8).then_some(v)
}

/// Waits up to `timeout` for `fd` to become readable; true if it did.
fn wait_readable(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on this stack.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    n == 1
}

/// `FIXED_1 / exp(2 s / 10 s)` of the kernel, as a fraction: avg10's decay per period.
const DECAY10: f64 = 1677.0 / 2048.0;

/// A thread that spends about half its time asleep in the `high` throttle for 10 s shows
/// that share as `some` (the growth of `total` over the 10 s, and `avg10` as 5 periods
/// of it predict), `full` no more than `some`, the same in the parent and the root; once
/// the stalls end, avg10 halves within 8 s.
#[test]
fn some_is_the_share_of_time_stalled_and_decays_after() {
    let parent = Group::create("/psi").unwrap();
    let g = Group::create("/psi/a").unwrap();
    let _in = g.enter().unwrap();
    let _base = over_high_by(g, 1);
    let p0 = g.pressure().unwrap();
    let root0 = Group::root().pressure().unwrap();
    assert_eq!(p0.some_total_us, 0, "{p0:?}");
    let start = Instant::now();
    let mut asleep = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(10) {
        asleep += stall_once(g);
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed();
    let p1 = g.pressure().unwrap();
    let measured = asleep.as_secs_f64() / elapsed.as_secs_f64() * 100.0;
    let shown = (p1.some_total_us - p0.some_total_us) as f64 / elapsed.as_micros() as f64 * 100.0;
    println!("stalled {measured:.1}% of {elapsed:?}; memory.pressure: {p1:?}");
    assert!(
        measured > 20.0,
        "the throttle slept too little: {measured:.1}%"
    );
    assert!(
        (shown - measured).abs() < 10.0,
        "{shown:.1}% vs {measured:.1}%"
    );
    let periods = (elapsed.as_secs_f64() / 2.0).floor() as i32;
    let expect10 = measured * (1.0 - DECAY10.powi(periods));
    assert!(
        (p1.some_avg10 - expect10).abs() < 10.0,
        "avg10 {:.2} vs {expect10:.2}",
        p1.some_avg10
    );
    assert!(p1.some_avg60 > 0.0 && p1.some_avg60 < p1.some_avg10);
    assert!(p1.some_avg300 > 0.0 && p1.some_avg300 < p1.some_avg60);
    // The only thread attached was the stalled one: `full` is `some`, never more.
    assert!(p1.full_total_us <= p1.some_total_us);
    assert!(p1.full_total_us * 10 >= p1.some_total_us * 9, "{p1:?}");
    // The parent and the root saw the same stalls.
    let pp = parent.pressure().unwrap();
    assert!(pp.some_total_us >= p1.some_total_us, "{pp:?}");
    let root = Group::root().pressure().unwrap();
    assert!(root.some_total_us - root0.some_total_us >= p1.some_total_us - p0.some_total_us);
    // The file says the same as the numbers.
    let text = g.read("memory.pressure").unwrap();
    let total: u64 = text
        .lines()
        .next()
        .unwrap()
        .rsplit("total=")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(total, p1.some_total_us, "{text}");

    // Quiet from now on: the period that saw the last stall ends, then 8 s pass.
    std::thread::sleep(Duration::from_millis(2100));
    let a0 = g.pressure().unwrap();
    std::thread::sleep(Duration::from_millis(8100));
    let a1 = g.pressure().unwrap();
    println!(
        "avg10 {:.2} then, 8.1 s later, {:.2}",
        a0.some_avg10, a1.some_avg10
    );
    assert!(a0.some_avg10 > 5.0, "{a0:?}");
    assert!(a1.some_avg10 <= a0.some_avg10 / 2.0, "{a0:?} -> {a1:?}");
    assert_eq!(a1.some_total_us, a0.some_total_us, "no stall since");
}

/// A group whose threads never stalled reads zero, in numbers and as the kernel's text,
/// while its sibling stalls.
#[test]
fn a_group_without_stalls_reads_zero() {
    Group::create("/quiet").unwrap();
    let busy = Group::create("/quiet/busy").unwrap();
    let idle = Group::create("/quiet/idle").unwrap();
    let _base = over_high_by(busy, 1);
    for _ in 0..3 {
        assert!(stall_once(busy) >= Duration::from_millis(40));
    }
    let b = busy.pressure().unwrap();
    assert!(b.some_total_us >= 120_000, "{b:?}");
    let i = idle.pressure().unwrap();
    assert_eq!(i, cgmalloc::Pressure::default());
    assert_eq!(
        idle.read("memory.pressure").unwrap(),
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
         full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    );
    // The charging thread is attached to the root, not to `busy`: no `full` there.
    assert_eq!(b.full_total_us, 0, "{b:?}");
}

/// `full` counts only while every thread attached to the group is stalled: not while a
/// second attached thread waits idle, and from the moment that thread exits during a
/// stall (a thread leaving re-evaluates `full`).
#[test]
fn full_needs_every_attached_thread_stalled() {
    let g = Group::create("/full").unwrap();
    let _in = g.enter().unwrap();
    let (go, wait) = mpsc::channel::<()>();
    let (ready_tx, ready) = mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let _in = g.enter().unwrap();
        ready_tx.send(()).unwrap();
        wait.recv().unwrap();
    });
    ready.recv().unwrap();
    let base = over_high_by(g, 2);
    for _ in 0..3 {
        assert!(stall_once(g) >= Duration::from_millis(150));
    }
    let p = g.pressure().unwrap();
    assert!(p.some_total_us >= 450_000, "{p:?}");
    assert_eq!(
        p.full_total_us, 0,
        "a second attached thread was not stalled: {p:?}"
    );
    drop(base);

    // A 2 s throttle; the other thread exits 0.5 s into it.
    let _base = over_high_by(g, 50);
    let release = std::thread::spawn(move || {
        // Started in `/full` (threads start in their creator's group): out of it.
        let _out = Group::root().enter().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        go.send(()).unwrap();
        other.join().unwrap();
    });
    let took = stall_once(g);
    release.join().unwrap();
    let q = g.pressure().unwrap();
    let full = Duration::from_micros(q.full_total_us);
    println!("a {took:?} stall, the other thread gone after 0.5 s: full {full:?}");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(
        full >= Duration::from_millis(1000) && full <= took,
        "full {full:?} of a {took:?} stall"
    );
    assert!(q.full_total_us < q.some_total_us);
}

/// A trigger of 100 ms per 1 s: quiet while nothing stalls, readable during a 2 s
/// throttle (before the throttled charge returns), quiet again after; one on another
/// group stays quiet throughout. Windows outside 500 ms..10 s, a stall of 0 or one longer
/// than the window are `EINVAL`; a removed trigger is gone.
#[test]
fn a_trigger_fires_while_throttled_and_stays_quiet_otherwise() {
    let g = Group::create("/trig").unwrap();
    let other = Group::create("/trig_other").unwrap();
    let ms = Duration::from_millis;
    let fd = g
        .pressure_eventfd(PressureKind::Some, ms(100), ms(1000))
        .unwrap();
    let fd_other = other
        .pressure_eventfd(PressureKind::Some, ms(100), ms(1000))
        .unwrap();
    std::thread::sleep(ms(1200));
    let _ = g.pressure().unwrap();
    assert_eq!(read_eventfd(&fd), None, "no stall yet");

    let _base = over_high_by(g, 50);
    let start = Instant::now();
    let stalled = std::thread::spawn(move || {
        let took = stall_once(g);
        (took, Instant::now())
    });
    assert!(
        wait_readable(&fd, Duration::from_secs(3)),
        "no event in 3 s"
    );
    let fired = Instant::now();
    let (took, returned) = stalled.join().unwrap();
    println!(
        "fired {:?} into a {took:?} stall",
        fired.duration_since(start)
    );
    assert!(fired < returned, "fired only after the stall");
    assert!(fired.duration_since(start) >= ms(100));
    assert!(read_eventfd(&fd).unwrap() >= 1);

    // Settled: an event held back by the once-a-window rule may follow the stall, at
    // the next check (this read), and then nothing.
    std::thread::sleep(ms(1200));
    let _ = g.pressure().unwrap();
    let _ = read_eventfd(&fd);
    std::thread::sleep(ms(2500));
    let _ = g.pressure().unwrap();
    assert_eq!(read_eventfd(&fd), None, "an event without a stall");
    assert_eq!(
        read_eventfd(&fd_other),
        None,
        "another group's trigger fired"
    );

    for (stall, window) in [
        (ms(100), Duration::from_micros(499_999)),
        (ms(100), Duration::from_micros(10_000_001)),
        (Duration::ZERO, ms(1000)),
        (ms(1001), ms(1000)),
    ] {
        let e = g
            .pressure_eventfd(PressureKind::Full, stall, window)
            .unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "{stall:?} per {window:?}");
    }
    g.pressure_eventfd(PressureKind::Full, ms(500), ms(500))
        .and_then(|f| g.pressure_remove(f))
        .unwrap();
    g.pressure_remove(fd).unwrap();
    other.pressure_remove(fd_other).unwrap();
}

/// At `max` the stall runs from the refusal until the charge returns: through the reclaim
/// callbacks (here one that takes 300 ms to free what the charge needs) and the OOM
/// handler (here one that takes 200 ms to say fail). A charge that fits stalls nothing.
#[test]
fn a_charge_at_max_stalls_through_callbacks_and_the_oom_handler() {
    use std::sync::{Arc, Mutex};
    let g = Group::create("/atmax").unwrap();
    g.set_max(16 * MIB).unwrap();
    let held = Arc::new(Mutex::new(Some(g.try_charge(12 * MIB).unwrap())));
    let fits = g.try_charge(2 * MIB).unwrap();
    assert_eq!(g.pressure().unwrap().some_total_us, 0, "a charge that fits");
    drop(fits);
    let h = held.clone();
    let _r = g
        .on_reclaim(move |_| {
            std::thread::sleep(Duration::from_millis(300));
            h.lock().unwrap().take().map_or(0, |c| c.bytes())
        })
        .unwrap();
    let t = Instant::now();
    let c = g.try_charge(8 * MIB).unwrap();
    let took = t.elapsed();
    let p = g.pressure().unwrap();
    println!("a charge at max that waited {took:?} for its callback: {p:?}");
    assert!(p.some_total_us >= 300_000, "{p:?}");
    assert!(
        p.some_total_us <= took.as_micros() as u64,
        "{p:?} in {took:?}"
    );

    // Nothing left to free: every retry's callback (300 ms for nothing) and then the OOM
    // handler's 200 ms count.
    g.on_oom(|_| {
        std::thread::sleep(Duration::from_millis(200));
        cgmalloc::OomAction::Fail
    })
    .unwrap();
    let t = Instant::now();
    assert!(g.try_charge(16 * MIB).is_err());
    let took = t.elapsed();
    let q = g.pressure().unwrap();
    let grew = q.some_total_us - p.some_total_us;
    assert!(
        grew >= took.as_micros() as u64 * 9 / 10 && grew <= took.as_micros() as u64,
        "{grew} µs in {took:?}"
    );
    drop(c);
}
