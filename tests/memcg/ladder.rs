//! The charge ladder: the order at `max` (the allocator's cache, every stock, callbacks
//! asked for the shortfall, the cache again after them), reclaim order among callbacks,
//! callbacks that free, OOM handler outcomes and policies, exact event counts. (Dying groups are in `dying.rs`, threshold eventfds and
//! `memory.high` in `pressure.rs`.)
//!
//! Each test uses its own groups; run under nextest, each test has its own process.

use super::events;
use cgmalloc::internals::memcg::charge::{FORCE, MAX_OOM_RETRIES, MAX_RETRIES, NORETRY};
use cgmalloc::internals::memcg::control;
use cgmalloc::{drain_stocks, Charge, Group, OomAction, Reclaimer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const PAGE: u64 = 4096;

fn current(g: Group) -> u64 {
    g.stat().unwrap().current
}

/// Rounds of the ladder a charge of `pages` that nothing can satisfy goes through:
/// the batch attempt (only below 32 pages), the first exact attempt, the drain retry and
/// `MAX_RETRIES` reclaim retries.
fn failing_rounds(pages: u64) -> (u64, u64) {
    let exact_rounds = 2 + MAX_RETRIES as u64;
    let failcnt = exact_rounds + u64::from(pages < 32);
    (failcnt, exact_rounds)
}

/// A reclaim callback on `g` that frees nothing and counts its calls.
fn counting_reclaimer(g: Group) -> (Arc<AtomicUsize>, Reclaimer) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let r = g
        .on_reclaim(move |_| {
            c2.fetch_add(1, Ordering::SeqCst);
            0
        })
        .unwrap();
    (calls, r)
}

#[test]
fn refused_charge_counts_events_exactly() {
    let g = Group::create("/ev").unwrap();
    g.set_max(64 * PAGE).unwrap();
    let held = g.try_charge(60 * PAGE).unwrap();
    drain_stocks();
    let before = events(g);
    let root_before = events(Group::root());
    assert_eq!(g.try_charge(10 * PAGE).unwrap_err().errno(), libc::ENOMEM);
    let after = events(g);
    let (failcnt, rounds) = failing_rounds(10);
    assert_eq!(after[2] - before[2], rounds, "max events");
    assert_eq!(after[3] - before[3], 1, "oom events");
    assert_eq!(after[4] - before[4], 1, "oom_kill events");
    assert_eq!(after[0], before[0]);
    assert_eq!(after[1], before[1]);
    assert_eq!(g.stat().unwrap().failcnt, failcnt);
    // Hierarchical in the root, local only in the group.
    let root_after = events(Group::root());
    assert_eq!(root_after[2] - root_before[2], rounds);
    let local = Group::root().read("memory.events.local").unwrap();
    assert!(local.contains("max 0\n"), "{local}");
    assert_eq!(current(g), 60 * PAGE);
    drop(held);
}

#[test]
fn noretry_fails_fast_without_callbacks() {
    let g = Group::create("/nr").unwrap();
    g.set_max(16 * PAGE).unwrap();
    let (calls, _r) = counting_reclaimer(g);
    let oom_calls = Arc::new(AtomicUsize::new(0));
    let o2 = oom_calls.clone();
    g.on_oom(move |_| {
        o2.fetch_add(1, Ordering::SeqCst);
        OomAction::Fail
    })
    .unwrap();
    assert_eq!(
        control::charge(g.handle(), 17 * PAGE, NORETRY),
        Err(libc::ENOMEM)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(oom_calls.load(Ordering::SeqCst), 0);
    let e = events(g);
    assert_eq!(e[2], 1, "one max event");
    assert_eq!(e[3], 0);
    assert_eq!(e[4], 0);
}

#[test]
fn force_charges_past_max_after_reclaim() {
    let g = Group::create("/force").unwrap();
    g.set_max(8 * PAGE).unwrap();
    let (calls, _r) = counting_reclaimer(g);
    let c = g.charge_force(20 * PAGE);
    assert_eq!(c.bytes(), 20 * PAGE);
    assert!(
        calls.load(Ordering::SeqCst) > 0,
        "reclaim ran before forcing"
    );
    assert_eq!(current(g), 20 * PAGE);
    assert_eq!(events(g)[3], 0, "FORCE never reaches the OOM path");
    drop(c);
    drain_stocks();
    assert_eq!(current(g), 0);
    assert_eq!(
        control::charge(g.handle(), PAGE, FORCE | NORETRY | 8),
        Err(libc::EINVAL)
    );
}

/// Four children of /L with different usage, soft limits and protection; the parent is
/// full. Reclaim must call: largest soft-limit excess first, skip `min`-protected groups,
/// call `low`-protected ones only in a second pass.
#[test]
fn reclaim_order_follows_soft_limit_excess_and_protection() {
    let l = Group::create("/L").unwrap();
    let a = Group::create("/L/a").unwrap();
    let b = Group::create("/L/b").unwrap();
    let c = Group::create("/L/c").unwrap();
    let d = Group::create("/L/d").unwrap();
    let _ca = a.try_charge(40 * PAGE).unwrap();
    let _cb = b.try_charge(60 * PAGE).unwrap();
    let _cc = c.try_charge(50 * PAGE).unwrap();
    let _cd = d.try_charge(45 * PAGE).unwrap();
    drain_stocks();
    b.set_soft_limit(35 * PAGE).unwrap(); // excess 25
    a.set_soft_limit(0).unwrap(); // excess 40
    c.set_low(100 * PAGE).unwrap(); // under low
    d.set_min(100 * PAGE).unwrap(); // under min: never
    l.set_max(195 * PAGE).unwrap();

    let order = Arc::new(Mutex::new(Vec::new()));
    let mut regs = Vec::new();
    for (name, g) in [("a", a), ("b", b), ("c", c), ("d", d)] {
        let o = order.clone();
        regs.push(
            g.on_reclaim(move |wanted| {
                assert!(wanted >= 33 * PAGE, "told the shortfall: {wanted}");
                o.lock().unwrap().push(name);
                0
            })
            .unwrap(),
        );
    }
    assert!(a.try_charge(33 * PAGE).is_err());
    let seen = order.lock().unwrap().clone();
    let rounds = 2 + MAX_RETRIES as usize;
    assert_eq!(seen.len(), 3 * rounds, "{seen:?}");
    for round in seen.chunks(3) {
        assert_eq!(round, ["a", "b", "c"], "{seen:?}");
    }
    assert_eq!(events(c)[0], rounds as u64, "low events on c");
    assert_eq!(events(a)[0], 0);
    let stat = l.read("memory.stat").unwrap();
    assert!(
        stat.contains(&format!("reclaim_calls {}\n", 3 * rounds)),
        "{stat}"
    );
}

#[test]
fn a_callback_that_frees_lets_the_charge_succeed() {
    let g = Group::create("/F").unwrap();
    g.set_max(64 * PAGE).unwrap();
    let cache: Arc<Mutex<Option<Charge>>> =
        Arc::new(Mutex::new(Some(g.try_charge(60 * PAGE).unwrap())));
    drain_stocks();
    let c2 = cache.clone();
    let _r = g
        .on_reclaim(move |_| match c2.lock().unwrap().take() {
            Some(c) => {
                let b = c.bytes();
                drop(c);
                b
            }
            None => 0,
        })
        .unwrap();
    let got = g.try_charge(10 * PAGE).unwrap();
    assert!(cache.lock().unwrap().is_none());
    drain_stocks();
    assert_eq!(current(g), 10 * PAGE);
    let stat = g.read("memory.stat").unwrap();
    assert!(stat.contains("reclaim_calls 1\n"), "{stat}");
    assert!(
        stat.contains(&format!("reclaimed {}\n", 60 * PAGE)),
        "{stat}"
    );
    assert_eq!(events(g)[3], 0, "no OOM");
    drop(got);
}

/// At `max`, every thread's stock is drained before any reclaim callback is called
/// (INTERFACE.md "Semantics": the allocator's cache, the stocks, then the callbacks): a
/// charge that another thread's stock covers succeeds without calling one.
#[test]
fn a_drained_stock_that_covers_the_charge_calls_no_callback() {
    let g = Group::create("/DS").unwrap();
    let (calls, _r) = counting_reclaimer(g);
    // Thread B charges one page: a 32-page batch, 31 pages left in its stock for g. It
    // stays alive, and its stock with it, until told.
    let (stay_tx, stay_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Charge>();
    let b = std::thread::spawn(move || {
        ready_tx.send(g.try_charge(PAGE).unwrap()).unwrap();
        stay_rx.recv().unwrap();
    });
    let one = ready_rx.recv().unwrap();
    assert_eq!(g.stat().unwrap().stock, 31 * PAGE);
    assert_eq!(current(g), 32 * PAGE);
    // g at its max, with no margin left.
    g.set_max(32 * PAGE).unwrap();
    assert_eq!(
        g.stat().unwrap().stock,
        31 * PAGE,
        "set_max drained B's stock"
    );
    let before = events(g);
    let failcnt = g.stat().unwrap().failcnt;
    // This thread (A), with no stock for g, charges 10 pages: fewer than B's stock holds.
    let ten = g.try_charge(10 * PAGE).unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a reclaim callback ran before the stocks were drained"
    );
    assert_eq!(g.stat().unwrap().stock, 0, "B's stock drained");
    assert_eq!(current(g), 11 * PAGE);
    // Refused twice (the batch, then the exact 10 pages: the only `max` event); the
    // drain made room and the retry fitted.
    let after = events(g);
    assert_eq!(after[2] - before[2], 1, "max events");
    assert_eq!(after[3], before[3], "no oom");
    assert_eq!(g.stat().unwrap().failcnt - failcnt, 2);
    let stat = g.read("memory.stat").unwrap();
    assert!(stat.contains("reclaim_calls 0\n"), "{stat}");
    drop(ten);
    drop(one);
    stay_tx.send(()).unwrap();
    b.join().unwrap();
}

/// A reclaim callback at `max` is told what the charge lacks, `usage + nr - max` pages of
/// the group over its limit, and at least the charge itself.
#[test]
fn a_callback_at_max_is_asked_for_the_shortfall() {
    const MIB: u64 = 1 << 20;
    let g = Group::create("/SF").unwrap();
    // 30 MiB charged, then `max` lowered to 10 MiB: usage stays 20 MiB above it (with
    // no callback yet, the write reclaims nothing).
    let held: Arc<Mutex<Option<Charge>>> =
        Arc::new(Mutex::new(Some(g.try_charge(30 * MIB).unwrap())));
    g.set_max(10 * MIB).unwrap();
    drain_stocks();
    assert_eq!(current(g), 30 * MIB);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let (a2, h2) = (asked.clone(), held.clone());
    let _r = g
        .on_reclaim(move |wanted| {
            a2.lock().unwrap().push(wanted);
            match h2.lock().unwrap().take() {
                Some(c) => {
                    let b = c.bytes();
                    drop(c);
                    b
                }
                None => 0,
            }
        })
        .unwrap();
    // A 1 MiB charge (256 pages, no batch, no stock; nothing cached) lacks
    // 30 + 1 - 10 = 21 MiB: the callback is asked for that, once, and frees 30 MiB.
    let one = g.try_charge(MIB).unwrap();
    assert_eq!(
        *asked.lock().unwrap(),
        [21 * MIB],
        "asked for the shortfall"
    );
    assert_eq!(current(g), MIB);
    assert_eq!(events(g)[2], 1, "one refusal");

    // Below `max` the shortfall is less than the charge: with 9 MiB charged, a 3 MiB
    // charge lacks 2 MiB, and every round asks for the 3 MiB.
    let eight = g.try_charge(8 * MIB).unwrap();
    assert_eq!(current(g), 9 * MIB);
    asked.lock().unwrap().clear();
    assert!(g.try_charge(3 * MIB).is_err());
    let seen = asked.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        2 + MAX_RETRIES as usize,
        "one call a round: {seen:?}"
    );
    assert!(seen.iter().all(|&w| w == 3 * MIB), "{seen:?}");
    drop(eight);
    drop(one);
}

/// What a callback frees may sit in the allocator's caches, still charged: the cache step
/// runs again after the callbacks, before the margin is measured, so the round that
/// called them succeeds (one `max` event), instead of failing and leaving the cache to
/// the next round.
#[test]
fn what_callbacks_free_into_the_cache_is_uncharged_in_the_same_round() {
    super::fake_cache::install();
    let g = Group::create("/FC").unwrap();
    g.set_max(160 * PAGE).unwrap();
    // Charges above the 32 pages a stock holds: uncharged, they go to the counters.
    let live: Arc<Mutex<Vec<Charge>>> = Arc::new(Mutex::new(
        (0..4).map(|_| g.try_charge(40 * PAGE).unwrap()).collect(),
    ));
    drain_stocks();
    assert_eq!(current(g), 160 * PAGE);
    let calls = Arc::new(AtomicUsize::new(0));
    let (l2, c2) = (live.clone(), calls.clone());
    // The callback frees 40 pages into the cache, as freeing blocks would.
    let _r = g
        .on_reclaim(move |_| {
            c2.fetch_add(1, Ordering::SeqCst);
            let c = l2.lock().unwrap().pop().unwrap();
            let b = c.bytes();
            super::fake_cache::put(c);
            b
        })
        .unwrap();
    let cache_calls = super::fake_cache::calls();
    let ten = g.try_charge(10 * PAGE).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(super::fake_cache::held(), 0, "the cache was reclaimed");
    assert_eq!(
        super::fake_cache::calls() - cache_calls,
        2,
        "the cache step before the callbacks and after them"
    );
    assert_eq!(
        events(g)[2],
        1,
        "one refusal: the round that called back succeeded"
    );
    assert_eq!(current(g), 130 * PAGE);
    drop(ten);
}

#[test]
fn dropping_a_reclaimer_unregisters_it() {
    let g = Group::create("/unreg").unwrap();
    g.set_max(4 * PAGE).unwrap();
    let (calls, r) = counting_reclaimer(g);
    let id = r.id();
    drop(r);
    assert!(g.try_charge(5 * PAGE).is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(control::reclaimer_remove(id), Err(libc::ENOENT));
}

#[test]
fn oom_handler_runs_once_per_failed_charge_with_its_info() {
    let p = Group::create("/O").unwrap();
    let g = Group::create("/O/k").unwrap();
    p.set_max(16 * PAGE).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    // Handler on the parent: found as the nearest ancestor of the over-limit group.
    p.on_oom(move |info| {
        s2.lock().unwrap().push(*info);
        OomAction::Fail
    })
    .unwrap();
    for _ in 0..3 {
        assert!(g.try_charge(20 * PAGE).is_err());
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for info in seen.iter() {
        assert_eq!(info.group, g);
        assert_eq!(info.over_limit, p);
        assert_eq!(info.bytes, 20 * PAGE);
        assert_eq!(info.max, 16 * PAGE);
        assert!(info.usage <= 16 * PAGE);
    }
    assert_eq!(events(p)[3], 3);
    assert_eq!(events(p)[4], 3);
}

#[test]
fn oom_retry_after_freeing_succeeds_and_force_charges_past_max() {
    let g = Group::create("/R").unwrap();
    g.set_max(32 * PAGE).unwrap();
    let hold: Arc<Mutex<Option<Charge>>> =
        Arc::new(Mutex::new(Some(g.try_charge(32 * PAGE).unwrap())));
    let calls = Arc::new(AtomicUsize::new(0));
    let (h2, c2) = (hold.clone(), calls.clone());
    g.on_oom(move |_| {
        c2.fetch_add(1, Ordering::SeqCst);
        h2.lock().unwrap().take();
        OomAction::Retry
    })
    .unwrap();
    let ok = g.try_charge(32 * PAGE).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(current(g), 32 * PAGE);

    // A second handler replaces the first: FORCE.
    let forced = Arc::new(AtomicUsize::new(0));
    let f2 = forced.clone();
    g.on_oom(move |_| {
        f2.fetch_add(1, Ordering::SeqCst);
        OomAction::Force
    })
    .unwrap();
    let over = g.try_charge(40 * PAGE).unwrap();
    assert_eq!(forced.load(Ordering::SeqCst), 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the replaced handler is gone"
    );
    assert_eq!(current(g), 72 * PAGE);
    drop(over);
    drop(ok);
    g.clear_oom().unwrap();
    let _fill = g.try_charge(32 * PAGE).unwrap();
    assert!(g.try_charge(PAGE * 40).is_err(), "cleared: policy fail");
}

#[test]
fn oom_retry_is_bounded() {
    let g = Group::create("/RB").unwrap();
    g.set_max(0).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    g.on_oom(move |_| {
        c2.fetch_add(1, Ordering::SeqCst);
        OomAction::Retry
    })
    .unwrap();
    assert!(g.try_charge(PAGE).is_err());
    assert_eq!(calls.load(Ordering::SeqCst), MAX_OOM_RETRIES as usize + 1);
    assert_eq!(events(g)[4], 1, "one failed charge");
}

#[test]
fn charges_inside_callbacks_are_forced() {
    let g = Group::create("/M").unwrap();
    g.set_max(8 * PAGE).unwrap();
    let inner: Arc<Mutex<Vec<Charge>>> = Arc::new(Mutex::new(Vec::new()));
    let i2 = inner.clone();
    let gg = g;
    let _r = g
        .on_reclaim(move |_| {
            // Over the limit, yet forced: no recursion into reclaim.
            i2.lock().unwrap().push(gg.try_charge(16 * PAGE).unwrap());
            0
        })
        .unwrap();
    let i3 = inner.clone();
    g.on_oom(move |_| {
        i3.lock().unwrap().push(gg.try_charge(4 * PAGE).unwrap());
        OomAction::Fail
    })
    .unwrap();
    assert!(g.try_charge(9 * PAGE).is_err());
    let n = inner.lock().unwrap().len();
    assert_eq!(
        n,
        2 + MAX_RETRIES as usize + 1,
        "one per reclaim round, one in the handler"
    );
    inner.lock().unwrap().clear();
    drain_stocks();
    assert_eq!(current(g), 0);
}

#[test]
fn policy_force_and_inheritance() {
    let p = Group::create("/P").unwrap();
    let k = Group::create("/P/k").unwrap();
    assert_eq!(k.read("memory.oom.policy").unwrap(), "fail\n");
    p.write("memory.oom.policy", "force\n").unwrap();
    assert_eq!(k.read("memory.oom.policy").unwrap(), "force\n");
    k.set_max(PAGE).unwrap();
    let c = k.try_charge(3 * PAGE).unwrap();
    assert_eq!(current(k), 3 * PAGE);
    k.write("memory.oom.policy", "fail").unwrap();
    assert!(k.try_charge(3 * PAGE).is_err());
    assert_eq!(p.read("memory.oom.policy").unwrap(), "force\n");
    drop(c);
}

/// ABORT (handler) and `abort` (policy) end the process with the report and one fatal
/// line; run in a child process.
#[test]
fn abort_outcomes_kill_the_process_with_a_report() {
    if let Ok(mode) = std::env::var("CGMALLOC_LADDER_CHILD") {
        let g = Group::create("/doomed").unwrap();
        g.set_max(PAGE).unwrap();
        if mode == "handler" {
            g.on_oom(|_| OomAction::Abort).unwrap();
        } else {
            g.write("memory.oom.policy", "abort").unwrap();
        }
        let _ = g.try_charge(2 * PAGE);
        std::process::exit(0); // not reached
    }
    // This test's name for the harness: its path without the crate's name.
    let (_, name) = concat!(
        module_path!(),
        "::abort_outcomes_kill_the_process_with_a_report"
    )
    .split_once("::")
    .unwrap();
    for mode in ["handler", "policy"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture"])
            .env("CGMALLOC_LADDER_CHILD", mode)
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{mode}: {:?}",
            out.status
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cgmalloc: group report"), "{mode}: {err}");
        assert!(err.contains("/doomed"), "{mode}: {err}");
        let fatal: Vec<_> = err
            .lines()
            .filter(|l| l.starts_with("cgmalloc: fatal: "))
            .collect();
        assert_eq!(fatal.len(), 1, "{mode}: {err}");
        assert!(fatal[0].contains("/doomed"), "{mode}: {err}");
    }
}
