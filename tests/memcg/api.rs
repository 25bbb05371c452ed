//! The Rust `Group` API and the interface files: formats, paths, threads, peaks, limits,
//! proactive reclaim, `scope`.

use cgmalloc::{drain_stocks, Group};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const PAGE: u64 = 4096;

#[test]
fn create_open_path_and_handles() {
    let a = Group::create("/api").unwrap();
    let b = Group::create("/api/b.x-1_Z").unwrap();
    assert_eq!(Group::open("/api/b.x-1_Z").unwrap(), b);
    assert_eq!(b.path().unwrap(), "/api/b.x-1_Z");
    assert_eq!(Group::root().path().unwrap(), "/");
    assert_eq!(Group::open("/").unwrap(), Group::root());
    let deep: String = (0..15).map(|i| format!("/n{i}")).collect();
    let mut p = String::from("/api");
    for part in deep.split('/').skip(1) {
        p = format!("{p}/{part}");
        Group::create(&p).unwrap();
    }
    assert_eq!(Group::open(&p).unwrap().path().unwrap(), p);
    assert_eq!(
        Group::create(&format!("{p}/too-deep")).unwrap_err().errno(),
        libc::EINVAL
    );
    assert_ne!(a.handle(), 0);
    assert_ne!(a, b);
}

#[test]
fn interface_file_formats() {
    let g = Group::create("/fmt").unwrap();
    assert_eq!(g.read("memory.current").unwrap(), "0\n");
    assert_eq!(g.read("memory.max").unwrap(), "max\n");
    assert_eq!(g.read("memory.low").unwrap(), "0\n");
    g.write("memory.max", "10M").unwrap();
    assert_eq!(g.read("memory.max").unwrap(), format!("{}\n", 10 << 20));
    g.write("memory.high", " 8191 \n").unwrap();
    assert_eq!(
        g.read("memory.high").unwrap(),
        "4096\n",
        "rounded down to pages"
    );
    g.write("memory.high", "max").unwrap();
    assert_eq!(g.read("memory.high").unwrap(), "max\n");
    assert_eq!(
        g.read("memory.events").unwrap(),
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\nwarn 0\n"
    );
    let stat = g.read("memory.stat").unwrap();
    for key in [
        "allocated",
        "small",
        "large",
        "cached",
        "stock",
        "nr_charges",
        "nr_uncharges",
        "reclaim_calls",
        "reclaimed",
    ] {
        assert!(
            stat.lines().any(|l| l.split(' ').next() == Some(key)),
            "{key} in {stat}"
        );
    }
    assert!(stat.lines().all(|l| l.split(' ').count() == 2), "{stat}");
    assert_eq!(g.read("cgroup.threads").unwrap(), "");
    assert_eq!(
        g.read("cgroup.stat").unwrap(),
        "nr_descendants 0\nnr_dying_descendants 0\n"
    );
    assert_eq!(g.read("memory.oom.policy").unwrap(), "fail\n");
    assert_eq!(g.read("memory.failcnt").unwrap(), "0\n");
}

#[test]
fn hierarchy_peak_failcnt_and_stat() {
    let p = Group::create("/hp").unwrap();
    let a = Group::create("/hp/a").unwrap();
    let b = Group::create("/hp/b").unwrap();
    let ca = a.try_charge(40 * PAGE).unwrap();
    let cb = b.try_charge(50 * PAGE).unwrap();
    assert_eq!(p.stat().unwrap().current, 90 * PAGE);
    assert_eq!(p.stat().unwrap().peak, 90 * PAGE);
    drop(cb);
    assert_eq!(p.stat().unwrap().current, 40 * PAGE);
    assert_eq!(p.stat().unwrap().peak, 90 * PAGE);
    p.write("memory.peak", "reset").unwrap();
    assert_eq!(p.stat().unwrap().peak, 40 * PAGE);
    p.set_max(60 * PAGE).unwrap();
    assert!(b.try_charge(40 * PAGE).is_err());
    assert!(p.stat().unwrap().failcnt > 0);
    assert_eq!(b.stat().unwrap().failcnt, 0, "refused at the parent");
    p.write("memory.failcnt", "0").unwrap();
    assert_eq!(p.stat().unwrap().failcnt, 0);
    let stat = p.read("memory.stat").unwrap();
    assert!(stat.contains("nr_charges 2\n"), "{stat}");
    assert!(stat.contains("nr_uncharges 1\n"), "{stat}");
    assert!(
        stat.contains(&format!("explicit {}\n", 40 * PAGE)),
        "{stat}"
    );
    drop(ca);
    drain_stocks();
    assert_eq!(p.stat().unwrap().current, 0);
}

#[test]
fn stocks_hold_at_most_32_pages_and_drain() {
    let g = Group::create("/stk").unwrap();
    let _in = g.enter().unwrap();
    let c = g.try_charge(PAGE).unwrap();
    let s = g.stat().unwrap();
    assert_eq!(s.current, 32 * PAGE, "a batch of 32 was charged");
    assert_eq!(s.stock, 31 * PAGE);
    let many: Vec<_> = (0..31).map(|_| g.try_charge(PAGE).unwrap()).collect();
    assert_eq!(
        g.stat().unwrap().current,
        32 * PAGE,
        "served from the stock"
    );
    assert_eq!(g.stat().unwrap().stock, 0);
    drop(many);
    drop(c);
    let s = g.stat().unwrap();
    assert!(s.stock <= 32 * PAGE);
    assert_eq!(s.current, s.stock, "only the stock is left");
    drain_stocks();
    assert_eq!(g.stat().unwrap().current, 0);
    assert_eq!(g.stat().unwrap().stock, 0);
}

#[test]
fn threads_enter_attach_and_exit() {
    let g = Group::create("/thr").unwrap();
    assert_eq!(Group::current(), Group::root());
    let tids = std::thread::scope(|s| {
        let h = s.spawn(|| {
            assert_eq!(
                Group::current(),
                Group::root(),
                "new threads start in the root"
            );
            g.attach_current_thread().unwrap();
            assert_eq!(Group::current(), g);
            let tid = unsafe { libc::gettid() } as u32;
            let listed = g.read("cgroup.threads").unwrap();
            assert_eq!(listed, format!("{tid}\n"));
            // Leave pages in this thread's stock: the exit returns them.
            std::mem::forget(g.try_charge(PAGE).unwrap());
            tid
        });
        h.join().unwrap()
    });
    assert_ne!(tids, 0);
    assert_eq!(
        g.read("cgroup.threads").unwrap(),
        "",
        "exited threads leave"
    );
    // One page is still charged explicitly (the forgotten Charge); the stock is back.
    assert_eq!(g.stat().unwrap().current, PAGE);
    assert_eq!(g.stat().unwrap().stock, 0);
    cgmalloc::internals::memcg::control::uncharge(g.handle(), PAGE).unwrap();
    g.destroy().unwrap();
}

#[test]
fn lowering_max_reclaims_and_blocks_new_charges() {
    let g = Group::create("/lower").unwrap();
    let cache = Arc::new(std::sync::Mutex::new(vec![
        g.try_charge(30 * PAGE).unwrap(),
        g.try_charge(30 * PAGE).unwrap(),
    ]));
    let c2 = cache.clone();
    let _r = g
        .on_reclaim(move |_| match c2.lock().unwrap().pop() {
            Some(c) => c.bytes(),
            None => 0,
        })
        .unwrap();
    g.set_max(40 * PAGE).unwrap();
    drain_stocks();
    assert_eq!(
        g.stat().unwrap().current,
        30 * PAGE,
        "one cache entry reclaimed"
    );
    g.set_max(10 * PAGE).unwrap();
    assert_eq!(g.stat().unwrap().current, 0, "both reclaimed");
    g.set_max(0).unwrap();
    assert!(g.try_charge(1).is_err(), "max 0: nothing may be charged");
}

#[test]
fn max_left_above_when_reclaim_cannot_help() {
    let g = Group::create("/stuck").unwrap();
    let c = g.try_charge(50 * PAGE).unwrap();
    g.set_max(10 * PAGE).unwrap();
    assert_eq!(g.read("memory.max").unwrap(), format!("{}\n", 10 * PAGE));
    assert_eq!(g.stat().unwrap().current, 50 * PAGE);
    assert!(g.try_charge(PAGE).is_err());
    drop(c);
    assert!(g.try_charge(PAGE).is_ok());
}

#[test]
fn proactive_reclaim() {
    let g = Group::create("/pro").unwrap();
    let freed = Arc::new(AtomicU64::new(0));
    let f2 = freed.clone();
    let _r = g
        .on_reclaim(move |want| {
            let give = want.min(8 * PAGE);
            f2.fetch_add(give, Ordering::SeqCst);
            give
        })
        .unwrap();
    let _c = g.try_charge(100 * PAGE).unwrap();
    g.write("memory.reclaim", "16K").unwrap();
    assert_eq!(freed.load(Ordering::SeqCst), 16 * 1024);
    // Five rounds of 8 pages cannot give 100 pages.
    assert_eq!(g.reclaim(100 * PAGE).unwrap_err().errno(), libc::EAGAIN);
    let none = Group::create("/pro2").unwrap();
    assert_eq!(none.reclaim(PAGE).unwrap_err().errno(), libc::EAGAIN);
    none.reclaim(0).unwrap();
}

#[test]
fn scope_runs_every_poll_in_the_group() {
    let g = Group::create("/scoped").unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    struct YieldOnce(bool);
    impl std::future::Future for YieldOnce {
        type Output = ();
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            if self.0 {
                std::task::Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        }
    }
    let fut = g.scope(async move {
        s2.lock().unwrap().push(Group::current());
        YieldOnce(false).await;
        s2.lock().unwrap().push(Group::current());
    });
    let mut fut = std::pin::pin!(fut);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut polls = 0;
    while fut.as_mut().poll(&mut cx).is_pending() {
        assert_eq!(Group::current(), Group::root(), "between polls");
        polls += 1;
    }
    assert_eq!(polls, 1);
    assert_eq!(*seen.lock().unwrap(), vec![g, g]);
    assert_eq!(Group::current(), Group::root());
}

#[test]
fn strerror_texts() {
    for e in [libc::ENOENT, -libc::EINVAL, libc::ENOMEM, libc::EBUSY, 9999] {
        let t = cgmalloc::strerror(e);
        assert!(t.ends_with('\0') && t.len() > 5, "{t}");
    }
    assert_ne!(
        cgmalloc::strerror(libc::ENOENT),
        cgmalloc::strerror(libc::EINVAL)
    );
}
