//! Bad input: every malformed path, size string, file name, flag and stale handle gets its
//! documented errno and changes nothing (a full snapshot of a sentinel group, its parent
//! and the root is compared around every call).

use cgmalloc::internals::memcg::control;
use cgmalloc::internals::FmtBuf;
use cgmalloc::{drain_stocks, Group};

const PAGE: u64 = 4096;

const FILES: [&str; 14] = [
    "memory.current",
    "memory.peak",
    "memory.max",
    "memory.high",
    "memory.low",
    "memory.min",
    "memory.soft_limit_in_bytes",
    "memory.failcnt",
    "memory.events",
    "memory.events.local",
    "memory.stat",
    "memory.oom.policy",
    "cgroup.threads",
    "cgroup.stat",
];

fn snapshot(groups: &[Group]) -> Vec<(cgmalloc::Stat, Vec<String>)> {
    drain_stocks();
    groups
        .iter()
        .map(|g| {
            let files = FILES.iter().map(|f| g.read(f).unwrap()).collect();
            (g.stat().unwrap(), files)
        })
        .collect()
}

struct Fixture {
    parent: Group,
    sentinel: Group,
    _charge: cgmalloc::Charge,
}

fn fixture() -> Fixture {
    let parent = Group::create("/bad").unwrap();
    let sentinel = Group::create("/bad/sentinel").unwrap();
    sentinel.set_max(100 * PAGE).unwrap();
    sentinel.set_high(90 * PAGE).unwrap();
    sentinel.set_low(10 * PAGE).unwrap();
    sentinel.set_min(5 * PAGE).unwrap();
    sentinel.set_soft_limit(50 * PAGE).unwrap();
    let charge = sentinel.try_charge(40 * PAGE).unwrap();
    Fixture {
        parent,
        sentinel,
        _charge: charge,
    }
}

/// Runs `f`, expects `errno`, and checks nothing changed.
fn refused(fx: &Fixture, what: &str, errno: i32, f: impl FnOnce() -> Result<(), i32>) {
    let all = [Group::root(), fx.parent, fx.sentinel];
    let before = snapshot(&all);
    assert_eq!(f(), Err(errno), "{what}");
    let after = snapshot(&all);
    assert_eq!(before, after, "{what} changed state");
}

fn stale_handle() -> Group {
    let g = Group::create("/bad-stale").unwrap();
    g.destroy().unwrap();
    g
}

#[test]
fn malformed_paths() {
    let fx = fixture();
    let long = format!("/{}", "x".repeat(65));
    let deep = "/d".repeat(17);
    let bad = [
        "",
        "bad",
        "/bad/",
        "//bad",
        "/bad//x",
        "/.",
        "/..",
        "/bad/..",
        "/a b",
        "/a\tb",
        "/é",
        "/a*",
        "/a\n",
        &long,
        &deep,
        "/bad/sentinel/",
    ];
    for p in bad {
        refused(&fx, &format!("create {p:?}"), libc::EINVAL, || {
            control::create(p.as_bytes()).map(|_| ())
        });
        refused(&fx, &format!("open {p:?}"), libc::EINVAL, || {
            control::open(p.as_bytes()).map(|_| ())
        });
    }
    refused(&fx, "create existing", libc::EEXIST, || {
        control::create(b"/bad/sentinel").map(|_| ())
    });
    refused(&fx, "create root", libc::EEXIST, || {
        control::create(b"/").map(|_| ())
    });
    refused(&fx, "create under missing parent", libc::ENOENT, || {
        control::create(b"/nope/child").map(|_| ())
    });
    refused(&fx, "open missing", libc::ENOENT, || {
        control::open(b"/bad/nope").map(|_| ())
    });
    assert_eq!(Group::open("/bad/sentinel").unwrap(), fx.sentinel);
}

#[test]
fn malformed_size_strings() {
    let fx = fixture();
    let h = fx.sentinel.handle();
    let bad = [
        "",
        " ",
        "\n",
        "-1",
        "1.5M",
        "12Q",
        "M",
        "1KB",
        "0x10",
        "1 2",
        "+5",
        "1e3",
        "MAX",
        "max max",
        "18446744073709551616",
        "17179869184G",
        "%",
        "50.5%",
        "-5%",
        "101%",
        "ten",
    ];
    for file in [
        "memory.max",
        "memory.high",
        "memory.low",
        "memory.min",
        "memory.soft_limit_in_bytes",
        "memory.reclaim",
    ] {
        for v in bad {
            refused(&fx, &format!("{file} = {v:?}"), libc::EINVAL, || {
                control::write(h, file.as_bytes(), v.as_bytes())
            });
        }
    }
    for v in ["1", "fail!", "", "kill"] {
        refused(&fx, &format!("failcnt/policy {v:?}"), libc::EINVAL, || {
            if v == "1" {
                control::write(h, b"memory.failcnt", v.as_bytes())
            } else {
                control::write(h, b"memory.oom.policy", v.as_bytes())
            }
        });
    }
}

#[test]
fn unknown_and_wrong_direction_files() {
    let fx = fixture();
    let h = fx.sentinel.handle();
    for f in [
        "memory.nope",
        "",
        "memory.current ",
        "cgroup.procs",
        "memory.limit_in_bytes",
    ] {
        refused(&fx, &format!("read {f:?}"), libc::EINVAL, || {
            control::read(h, f.as_bytes(), &mut FmtBuf::new(&mut [0u8; 64]))
        });
        refused(&fx, &format!("write {f:?}"), libc::EINVAL, || {
            control::write(h, f.as_bytes(), b"1")
        });
    }
    refused(&fx, "read memory.reclaim", libc::EACCES, || {
        control::read(h, b"memory.reclaim", &mut FmtBuf::new(&mut [0u8; 64]))
    });
    for f in [
        "memory.current",
        "memory.events",
        "memory.events.local",
        "memory.stat",
        "cgroup.threads",
        "cgroup.stat",
    ] {
        refused(&fx, &format!("write {f}"), libc::EACCES, || {
            control::write(h, f.as_bytes(), b"0")
        });
    }
}

#[test]
fn stale_and_garbage_handles() {
    let fx = fixture();
    let stale = stale_handle().handle();
    let garbage = [
        0u64,
        1,
        u64::MAX,
        0xffff,
        stale,
        fx.sentinel.handle() + (1 << 16),
        fx.sentinel.handle() ^ 0x8000,
        (1 << 16) | 9000,
    ];
    for h in garbage {
        let w = |what: &str| format!("{what} on handle {h:#x}");
        let mut buf = [0u8; 64];
        refused(&fx, &w("read"), libc::ENOENT, || {
            control::read(h, b"memory.current", &mut FmtBuf::new(&mut buf))
        });
        refused(&fx, &w("write"), libc::ENOENT, || {
            control::write(h, b"memory.max", b"0")
        });
        refused(&fx, &w("stat"), libc::ENOENT, || {
            control::stat(h).map(|_| ())
        });
        refused(&fx, &w("path"), libc::ENOENT, || {
            control::path(h, &mut FmtBuf::new(&mut buf))
        });
        refused(&fx, &w("charge"), libc::ENOENT, || {
            control::charge(h, PAGE, 0)
        });
        refused(&fx, &w("uncharge"), libc::ENOENT, || {
            control::uncharge(h, PAGE)
        });
        refused(&fx, &w("reclaim"), libc::ENOENT, || {
            control::reclaim(h, PAGE)
        });
        refused(&fx, &w("attach"), libc::ENOENT, || {
            control::attach(h).map(|_| ())
        });
        refused(&fx, &w("threshold"), libc::ENOENT, || {
            control::threshold_eventfd(h, PAGE).map(|_| ())
        });
        refused(&fx, &w("threshold_remove"), libc::ENOENT, || {
            control::threshold_remove(h, 0, false)
        });
        refused(&fx, &w("destroy"), libc::ENOENT, || control::destroy(h));
        let g = Group::from_handle(h);
        assert_eq!(
            g.on_reclaim(|_| 0).err().map(|e| e.errno()),
            Some(libc::ENOENT)
        );
        assert_eq!(
            g.on_oom(|_| cgmalloc::OomAction::Fail)
                .err()
                .map(|e| e.errno()),
            Some(libc::ENOENT)
        );
        assert_eq!(g.clear_oom().unwrap_err().errno(), libc::ENOENT);
        assert_eq!(g.enter().err().map(|e| e.errno()), Some(libc::ENOENT));
        let forced = g.charge_force(PAGE);
        assert_eq!(forced.bytes(), PAGE);
        drop(forced);
        assert_eq!(
            Group::current(),
            Group::root(),
            "a failed attach keeps the group"
        );
    }
}

#[test]
fn other_refusals() {
    let fx = fixture();
    let h = fx.sentinel.handle();
    refused(
        &fx,
        "uncharge more than charged explicitly",
        libc::EINVAL,
        || control::uncharge(h, 41 * PAGE),
    );
    refused(&fx, "unknown flags", libc::EINVAL, || {
        control::charge(h, PAGE, 4)
    });
    refused(&fx, "unknown reclaimer", libc::ENOENT, || {
        control::reclaimer_remove(987654)
    });
    refused(&fx, "threshold fd never registered", libc::ENOENT, || {
        control::threshold_remove(h, 1, false)
    });
    refused(&fx, "destroy root", libc::EPERM, || {
        control::destroy(control::root())
    });
    refused(&fx, "destroy with children", libc::EBUSY, || {
        control::destroy(fx.parent.handle())
    });
    assert_eq!(
        cgmalloc::Error::from_errno(-libc::ENOENT).errno(),
        libc::ENOENT
    );
    assert!(cgmalloc::Error::from_errno(libc::EBUSY)
        .to_string()
        .contains("attached threads"));
}

#[test]
fn table_capacity_is_enospc() {
    let base = Group::create("/cap").unwrap();
    let mut made = Vec::new();
    let err = loop {
        match Group::create(&format!("/cap/g{}", made.len())) {
            Ok(g) => made.push(g),
            Err(e) => break e,
        }
    };
    assert_eq!(err.errno(), libc::ENOSPC);
    assert!(
        made.len() + 2 >= 4096,
        "at least 4,096 groups: {}",
        made.len()
    );
    let before = snapshot(&[base]);
    assert_eq!(
        Group::create("/cap/one-more").unwrap_err().errno(),
        libc::ENOSPC
    );
    assert_eq!(snapshot(&[base]), before);
    // Freed slots are reused; handles are not.
    let victim = made.pop().unwrap();
    victim.destroy().unwrap();
    let again = Group::create("/cap/again").unwrap();
    assert_ne!(again.handle(), victim.handle());
    assert_eq!(victim.stat().unwrap_err().errno(), libc::ENOENT);
}
