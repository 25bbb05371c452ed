//! The `CGMALLOC_*` environment (INTERFACE.md "Environment"), read by the library before
//! `main`: `tests/c/envprobe.c`, linked against `target/release/libcgmalloc.so`, prints
//! what the library made of it (root limits and policy, the container limit, groups,
//! where named threads went), and each test checks that against the variables it set.
//!
//! Every variable is tried in its valid forms, and with malformed values: each of those
//! must print exactly one line `cgmalloc: CGMALLOC_X: ...; ignored`, leave the setting
//! at its default, and let the program run to the end. Container limits come from
//! fixture trees (`CGMALLOC_CGROUP=<dir>`), never from the machine's own cgroup.
//!
//! The library is built by `cargo build --release` (default features) before the tests
//! run. The probe runs without `LD_PRELOAD`, `LD_LIBRARY_PATH` and the caller's
//! `CGMALLOC_*` variables, under a time limit. Needs `cc` and `nm`: a missing one is a
//! failure, not a skip.

use crate::support::programs::{self, Scratch, ROOT};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

/// `envprobe`, compiled once per test process and linked against the library.
fn probe() -> &'static Path {
    // The scratch directory lives as long as the process.
    static EXE: OnceLock<(Scratch, PathBuf)> = OnceLock::new();
    &EXE.get_or_init(|| {
        let dir = Scratch::new("probe");
        let include = format!("-I{ROOT}/include");
        let flags = [
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pthread",
            "-O1",
            "-fno-builtin",
            &include,
        ];
        let link = programs::link_flags();
        let exe = programs::compile_c("cc", &dir, "tests/c/envprobe.c", "envprobe", &flags, &link);
        (dir, exe)
    })
    .1
}

/// What one run printed: `key -> value` from stdout, and stderr.
struct Seen {
    lines: BTreeMap<String, String>,
    stderr: String,
}

impl Seen {
    fn get(&self, key: &str) -> &str {
        self.lines
            .get(key)
            .unwrap_or_else(|| panic!("no `{key}` in the output: {:#?}", self.lines))
    }

    /// The `cgmalloc:` lines on stderr.
    fn warnings(&self) -> Vec<&str> {
        programs::cgmalloc_lines(&self.stderr)
    }
}

/// Runs envprobe with `vars` (and no other `CGMALLOC_*`) and `args`; it must exit 0.
fn run(vars: &[(&str, &str)], args: &[&str]) -> Seen {
    let mut cmd = programs::linked(programs::without_cgmalloc_vars(Command::new(probe())));
    cmd.envs(vars.iter().copied()).args(args);
    let r = programs::run(&mut cmd, None, TIMEOUT);
    r.assert_success(&format!("envprobe with {vars:?}"));
    let mut lines = BTreeMap::new();
    for l in r.stdout().lines() {
        let (k, v) = l.rsplit_once(' ').unwrap();
        lines.insert(k.to_string(), v.to_string());
    }
    Seen {
        lines,
        stderr: r.stderr,
    }
}

const DEFAULTS: [(&str, &str); 7] = [
    ("root.memory.max", "max"),
    ("root.memory.high", "max"),
    ("root.memory.low", "0"),
    ("root.memory.min", "0"),
    ("root.memory.soft_limit_in_bytes", "max"),
    ("root.memory.oom.policy", "fail"),
    ("root.container_limit", "none"),
];

/// The root reads as `DEFAULTS` except for `changed`.
fn assert_root(seen: &Seen, changed: &[(&str, &str)]) {
    for (key, default) in DEFAULTS {
        let want = changed
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(default, |(_, v)| v);
        assert_eq!(seen.get(key), want, "{key}");
    }
}

/// A cgroup v2 fixture whose memory.max is `limit`; returns its root directory.
fn fixture_v2(name: &str, limit: &str) -> Scratch {
    let root = Scratch::new(name);
    std::fs::create_dir_all(root.join("proc/self")).unwrap();
    std::fs::create_dir_all(root.join("sys/fs/cgroup/app")).unwrap();
    std::fs::write(root.join("proc/self/cgroup"), "0::/app\n").unwrap();
    std::fs::write(
        root.join("proc/self/mountinfo"),
        "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
    )
    .unwrap();
    std::fs::write(root.join("sys/fs/cgroup/app/memory.max"), limit).unwrap();
    root
}

/// `fixture_v2` with a `proc/meminfo` of `mem_total_kb` kB.
fn fixture_v2_meminfo(name: &str, limit: &str, mem_total_kb: u64) -> Scratch {
    let root = fixture_v2(name, limit);
    std::fs::write(
        root.join("proc/meminfo"),
        format!("MemTotal:       {mem_total_kb} kB\nMemFree:        1024 kB\n"),
    )
    .unwrap();
    root
}

/// `MemTotal` of this machine's `/proc/meminfo`, in bytes.
fn machine_mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn no_variables_leave_every_default() {
    let seen = run(&[("CGMALLOC_CGROUP", "off")], &[]);
    assert_root(&seen, &[]);
    assert!(seen.warnings().is_empty(), "{}", seen.stderr);
}

#[test]
fn root_limits_in_every_size_form() {
    let cases: [(&str, &str, &str); 9] = [
        ("CGMALLOC_MAX", "256M", "268435456"),
        ("CGMALLOC_MAX", "1g", "1073741824"),
        ("CGMALLOC_MAX", " 512k\n", "524288"),
        ("CGMALLOC_MAX", "1048577", "1048576"),
        ("CGMALLOC_MAX", "max", "max"),
        ("CGMALLOC_MAX", "2T", "2199023255552"),
        ("CGMALLOC_HIGH", "100M", "104857600"),
        ("CGMALLOC_LOW", "8M", "8388608"),
        ("CGMALLOC_MIN", "4096", "4096"),
    ];
    for (var, value, want) in cases {
        let seen = run(&[("CGMALLOC_CGROUP", "off"), (var, value)], &[]);
        let file = match var {
            "CGMALLOC_MAX" => "root.memory.max",
            "CGMALLOC_HIGH" => "root.memory.high",
            "CGMALLOC_LOW" => "root.memory.low",
            _ => "root.memory.min",
        };
        assert_root(&seen, &[(file, want)]);
        assert!(
            seen.warnings().is_empty(),
            "{var}={value:?}: {}",
            seen.stderr
        );
    }
}

/// The root's limits apply from the process's first charge, before the constructor that
/// reads the configuration: a start-up charge (dynamic loader, libc, the configuration
/// itself) that passes them is forced, so the program starts, and counted as a `max`
/// event, so that no peak above `max` is unexplained.
#[test]
fn small_limits_apply_from_the_first_charge() {
    for (value, max) in [
        ("0", 0u64),
        ("100K", 100 << 10),
        ("256K", 256 << 10),
        ("64M", 64 << 20),
    ] {
        let seen = run(&[("CGMALLOC_CGROUP", "off"), ("CGMALLOC_MAX", value)], &[]);
        let n = |k: &str| seen.get(k).parse::<u64>().unwrap();
        let (peak, events) = (n("start.peak"), n("start.events_max"));
        assert_eq!(
            seen.get("root.memory.max"),
            max.to_string(),
            "CGMALLOC_MAX={value}"
        );
        assert!(n("start.current") <= peak, "CGMALLOC_MAX={value}");
        assert!(
            peak <= max || events > 0,
            "CGMALLOC_MAX={value}: peak {peak} above max with no max event"
        );
        if max >= 64 << 20 {
            assert_eq!(events, 0, "CGMALLOC_MAX={value}: start-up stays below it");
        }
        assert!(seen.warnings().is_empty(), "{}", seen.stderr);
    }
}

#[test]
fn percentages_resolve_against_the_container_limit() {
    let fix = fixture_v2("percent", "1073741824\n");
    let dir = fix.to_str().unwrap();
    let seen = run(
        &[
            ("CGMALLOC_CGROUP", dir),
            ("CGMALLOC_MAX", "50%"),
            ("CGMALLOC_HIGH", "25%"),
        ],
        &[],
    );
    assert_root(
        &seen,
        &[
            ("root.container_limit", "1073741824"),
            ("root.memory.max", "536870912"),
            ("root.memory.high", "268435456"),
        ],
    );
    assert!(seen.warnings().is_empty(), "{}", seen.stderr);
    assert_eq!(
        seen.get("root.mem_total"),
        "none",
        "one base, the container's"
    );
}

/// Without a container limit, `N%` is a share of the machine's memory (`MemTotal`), and
/// the root's `memory.stat` says so (`mem_total`, no `container_limit`).
#[test]
fn percentages_without_a_container_limit_are_of_mem_total() {
    // An unlimited container, whose tree also holds the meminfo read.
    let fix = fixture_v2_meminfo("unlimited", "max\n", 8 << 20);
    let seen = run(
        &[
            ("CGMALLOC_CGROUP", fix.to_str().unwrap()),
            ("CGMALLOC_MAX", "50%"),
        ],
        &[],
    );
    assert_root(&seen, &[("root.memory.max", "4294967296")]);
    assert_eq!(seen.get("root.mem_total"), "8589934592");
    assert!(seen.warnings().is_empty(), "{}", seen.stderr);
    // `off` ignores the container: this machine's MemTotal.
    let seen = run(&[("CGMALLOC_CGROUP", "off"), ("CGMALLOC_MAX", "50%")], &[]);
    let half = (machine_mem_total() / 2 / 4096 * 4096).to_string();
    assert_root(&seen, &[("root.memory.max", &half)]);
    assert!(seen.warnings().is_empty(), "{}", seen.stderr);
    // Neither a limit nor a meminfo under the fixture: the one warning, no limit.
    let fix = fixture_v2("bare", "max\n");
    let seen = run(
        &[
            ("CGMALLOC_CGROUP", fix.to_str().unwrap()),
            ("CGMALLOC_MAX", "50%"),
        ],
        &[],
    );
    assert_root(&seen, &[]);
    assert_eq!(seen.warnings().len(), 1, "{}", seen.stderr);
}

#[test]
fn oom_policy_forms() {
    for (value, want) in [("fail", "fail"), ("abort", "abort"), (" force\n", "force")] {
        let seen = run(&[("CGMALLOC_CGROUP", "off"), ("CGMALLOC_OOM", value)], &[]);
        assert_root(&seen, &[("root.memory.oom.policy", want)]);
        assert!(seen.warnings().is_empty(), "{}", seen.stderr);
    }
}

#[test]
fn groups_are_created_with_their_settings() {
    let seen = run(
        &[
            ("CGMALLOC_CGROUP", "off"),
            (
                "CGMALLOC_GROUPS",
                "/web:max=64M,high=48M,oom=force;/web/api:low=1M,min=4K,soft_limit=2M;\
                 /batch/nightly:max=1G;;/:high=3G;",
            ),
        ],
        &["/web", "/web/api", "/batch", "/batch/nightly", "/other"],
    );
    assert!(seen.warnings().is_empty(), "{}", seen.stderr);
    assert_root(&seen, &[("root.memory.high", "3221225472")]);
    assert_eq!(seen.get("group /web memory.max"), "67108864");
    assert_eq!(seen.get("group /web memory.high"), "50331648");
    assert_eq!(seen.get("group /web memory.oom.policy"), "force");
    assert_eq!(seen.get("group /web/api memory.low"), "1048576");
    assert_eq!(seen.get("group /web/api memory.min"), "4096");
    assert_eq!(
        seen.get("group /web/api memory.soft_limit_in_bytes"),
        "2097152"
    );
    // Inherited from /web until written.
    assert_eq!(seen.get("group /web/api memory.oom.policy"), "force");
    // A missing ancestor is created too, with no settings of its own.
    assert_eq!(seen.get("group /batch memory.max"), "max");
    assert_eq!(seen.get("group /batch/nightly memory.max"), "1073741824");
    assert_eq!(seen.get("group /other"), "missing");
}

#[test]
fn named_threads_join_their_groups() {
    let seen = run(
        &[
            ("CGMALLOC_CGROUP", "off"),
            ("CGMALLOC_GROUPS", "/w;/io"),
            (
                "CGMALLOC_THREADS",
                "self-w[a-z]*=/w; self-i?=/io;other-*er=/w;nomatch*=/io",
            ),
        ],
        &["--threads"],
    );
    assert!(seen.warnings().is_empty(), "{}", seen.stderr);
    assert_eq!(seen.get("thread self-worker"), "/w");
    assert_eq!(seen.get("thread self-io"), "/io");
    // Named by main while it waited: it moves at its next span refill or large-cache miss.
    assert_eq!(seen.get("thread other-worker"), "/w");
    // No rule matches: the thread stays where it started.
    assert_eq!(seen.get("thread other-x"), "/");
}

#[test]
fn the_first_thread_starts_in_the_attach_group_and_its_threads_follow() {
    let seen = run(
        &[
            ("CGMALLOC_CGROUP", "off"),
            ("CGMALLOC_GROUPS", "/bench:max=1G;/w"),
            ("CGMALLOC_ATTACH", " /bench\n"),
            ("CGMALLOC_THREADS", "self-w*=/w"),
        ],
        &["--threads"],
    );
    assert!(seen.warnings().is_empty(), "{}", seen.stderr);
    assert_eq!(seen.get("main.group"), "/bench");
    assert_eq!(seen.get("thread self-worker"), "/w");
    // Not named by any rule: created by main, so started in main's group.
    assert_eq!(seen.get("thread self-io"), "/bench");
    assert_eq!(seen.get("thread other-x"), "/bench");
    let seen = run(&[("CGMALLOC_CGROUP", "off")], &[]);
    assert_eq!(seen.get("main.group"), "/");
}

#[test]
fn a_rule_naming_a_missing_group_leaves_the_thread_and_says_so() {
    let seen = run(
        &[
            ("CGMALLOC_CGROUP", "off"),
            ("CGMALLOC_THREADS", "self-*=/not/there"),
        ],
        &["--threads"],
    );
    assert_eq!(seen.get("thread self-worker"), "/");
    assert_eq!(seen.get("thread self-io"), "/");
    let w = seen.warnings();
    assert_eq!(w.len(), 2, "{}", seen.stderr);
    assert!(w
        .iter()
        .all(|l| l.contains("CGMALLOC_THREADS") && l.contains("/not/there")));
}

#[test]
fn stats_go_to_stderr_or_a_file() {
    let seen = run(
        &[
            ("CGMALLOC_CGROUP", "off"),
            ("CGMALLOC_GROUPS", "/a:max=1M"),
            ("CGMALLOC_STATS", "stderr"),
        ],
        &[],
    );
    let lines: Vec<&str> = seen.stderr.lines().collect();
    assert!(lines[0].starts_with("cgmalloc: pid "), "{}", seen.stderr);
    assert!(lines[0].contains("(envprobe)"), "{}", seen.stderr);
    assert!(lines[1].starts_with("group"), "{}", seen.stderr);
    for col in ["current", "peak", "max", "high", "events"] {
        assert!(lines[1].contains(col), "{col}: {}", lines[1]);
    }
    assert!(lines.iter().any(|l| l.starts_with("/ ")), "{}", seen.stderr);
    let a = lines
        .iter()
        .find(|l| l.starts_with("/a "))
        .expect("a row for /a");
    assert!(a.contains("1.0M") && a.contains("oom_kill=0"), "{a}");

    let dir = Scratch::new("stats");
    let file = dir.join("table.txt");
    std::fs::write(&file, "before\n").unwrap();
    let seen = run(
        &[
            ("CGMALLOC_CGROUP", "off"),
            ("CGMALLOC_STATS", file.to_str().unwrap()),
        ],
        &[],
    );
    assert!(!seen.stderr.contains("cgmalloc: pid"), "{}", seen.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("before\ncgmalloc: pid "),
        "appended: {text}"
    );
    assert!(text.lines().any(|l| l.starts_with("/ ")), "{text}");
}

/// Malformed values: one `...; ignored` line each, the setting left unset, the program
/// runs on.
#[test]
fn malformed_values_are_reported_and_ignored() {
    let cases: &[(&str, &str)] = &[
        ("CGMALLOC_MAX", "12Q"),
        ("CGMALLOC_MAX", "-1"),
        ("CGMALLOC_MAX", "1.5G"),
        ("CGMALLOC_MAX", ""),
        ("CGMALLOC_MAX", "99999999999999999999"),
        ("CGMALLOC_MAX", "20000000T"),
        ("CGMALLOC_MAX", "101%"),
        ("CGMALLOC_HIGH", "M"),
        ("CGMALLOC_LOW", "1 G"),
        ("CGMALLOC_MIN", "0x1000"),
        ("CGMALLOC_OOM", "bogus"),
        ("CGMALLOC_OOM", ""),
        ("CGMALLOC_GROUPS", "a:max=1M"),
        ("CGMALLOC_GROUPS", "/a:foo=1"),
        ("CGMALLOC_GROUPS", "/a:max=zz"),
        ("CGMALLOC_GROUPS", "/a:max"),
        ("CGMALLOC_GROUPS", "/a:oom=never"),
        ("CGMALLOC_GROUPS", "/ok:max=1M;/a/../b"),
        ("CGMALLOC_THREADS", "worker"),
        ("CGMALLOC_THREADS", "=/a"),
        ("CGMALLOC_THREADS", "w*=not-a-path"),
        ("CGMALLOC_STATS", ""),
        ("CGMALLOC_STATS", "/nonexistent/dir/table.txt"),
        ("CGMALLOC_CGROUP", "maybe"),
        ("CGMALLOC_ATTACH", "bench"),
        ("CGMALLOC_ATTACH", "/not/there"),
        ("CGMALLOC_ATTACH", ""),
    ];
    for &(var, value) in cases {
        let mut vars = vec![(var, value)];
        if var != "CGMALLOC_CGROUP" {
            vars.push(("CGMALLOC_CGROUP", "off"));
        }
        let seen = run(&vars, &["/a", "/ok", "--threads"]);
        let w = seen.warnings();
        assert_eq!(w.len(), 1, "{var}={value:?}: {}", seen.stderr);
        assert!(
            w[0].starts_with(&format!("cgmalloc: {var}: ")) && w[0].ends_with("; ignored"),
            "{var}={value:?}: {}",
            w[0]
        );
        assert_root(&seen, &[]);
        // Nothing of a malformed CGMALLOC_GROUPS is created, not even its valid entries.
        assert_eq!(seen.get("group /a"), "missing", "{var}={value:?}");
        assert_eq!(seen.get("group /ok"), "missing", "{var}={value:?}");
        assert_eq!(seen.get("thread self-worker"), "/", "{var}={value:?}");
        assert_eq!(seen.get("main.group"), "/", "{var}={value:?}");
        assert!(!seen.stderr.contains("cgmalloc: pid"), "{var}={value:?}");
    }
}
