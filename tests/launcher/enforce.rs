//! `memory.enforce`: `warn` lets a charge pass a group's `max` and `high` and only reports
//! it (events `max` and `warn`, one line on stderr per group per 10 s, no reclaim, no
//! callback), `off` ignores them, and an ancestor left `on` still holds its own.
//! `tests/c/enforce.c` allocates under `cgmalloc run` and prints what it got.

use super::cli::launcher;
use crate::support::programs::{self, Scratch};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

fn build(dir: &Path) -> PathBuf {
    let src = format!("{}/tests/c/enforce.c", env!("CARGO_MANIFEST_DIR"));
    let include = format!("-I{}/include", env!("CARGO_MANIFEST_DIR"));
    programs::compile_c(
        "cc",
        dir,
        &src,
        "enforce",
        &["-O2", "-Wall", &include],
        &programs::link_flags(),
    )
}

/// What the program printed, `key value` (events as `events.KEY`), and its stderr.
struct Outcome {
    kv: BTreeMap<String, String>,
    stderr: String,
}

impl Outcome {
    fn num(&self, key: &str) -> u64 {
        self.kv
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.kv))
            .parse()
            .unwrap()
    }

    fn warn_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("cgmalloc: warn: "))
            .collect()
    }
}

fn run(exe: &Path, groups: &[&str], group: &str, mib: u32) -> Outcome {
    run_pausing(exe, groups, group, mib, 0)
}

fn run_pausing(exe: &Path, groups: &[&str], group: &str, mib: u32, pause: u32) -> Outcome {
    // `--stats`: the exit table shows each group's mode.
    let mut args: Vec<String> = vec!["run".into(), "--stats".into()];
    for g in groups {
        args.push("--group".into());
        args.push(g.to_string());
    }
    args.extend(["--attach".into(), group.into(), "--".into()]);
    let mut cmd = launcher(&args);
    cmd.arg(exe)
        .args([group, &mib.to_string(), &pause.to_string()]);
    let r = programs::run(&mut cmd, None, TIMEOUT);
    r.assert_success("the enforce program");
    let mut kv = BTreeMap::new();
    for line in r.stdout().lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["events", k, v] => kv.insert(format!("events.{k}"), v.to_string()),
            [k, v] => kv.insert(k.to_string(), v.to_string()),
            _ => None,
        };
    }
    Outcome {
        kv,
        stderr: r.stderr.clone(),
    }
}

#[test]
fn warn_reports_a_limit_without_holding_the_charge_back() {
    let dir = Scratch::new("enforce-warn");
    let exe = build(&dir);
    let o = run(
        &exe,
        &["/p", "/p/t:max=16M,high=12M,enforce=warn"],
        "/p/t",
        64,
    );
    assert_eq!(o.num("allocated"), 64, "{:?}", o.kv);
    assert_eq!(
        o.num("callbacks"),
        0,
        "no reclaim for a group in warn: {:?}",
        o.kv
    );
    assert!(o.num("events.max") >= 1, "{:?}", o.kv);
    assert!(o.num("events.high") >= 1, "{:?}", o.kv);
    assert!(o.num("events.warn") >= o.num("events.max"), "{:?}", o.kv);
    assert_eq!(o.num("events.oom"), 0, "{:?}", o.kv);
    assert!(o.num("current") >= 64 << 20, "{:?}", o.kv);
    assert_eq!(o.kv["enforce"], "warn");
    let row = o
        .stderr
        .lines()
        .find(|l| l.starts_with("/p/t "))
        .unwrap_or("");
    assert!(row.ends_with("enforce=warn"), "{}", o.stderr);
    // One line in the run (well under 10 s), for the first limit passed.
    let lines = o.warn_lines();
    assert_eq!(lines.len(), 1, "{}", o.stderr);
    assert!(
        lines[0].starts_with("cgmalloc: warn: /p/t would exceed memory.high (12.0M) by "),
        "{}",
        lines[0]
    );
}

#[test]
fn warn_says_it_again_after_10_seconds() {
    let dir = Scratch::new("enforce-again");
    let exe = build(&dir);
    // 16 MiB past the limit, 11 s asleep, 16 MiB more.
    let o = run_pausing(&exe, &["/p", "/p/t:max=16M,enforce=warn"], "/p/t", 64, 11);
    assert_eq!(o.num("allocated"), 64, "{:?}", o.kv);
    let lines = o.warn_lines();
    assert_eq!(lines.len(), 2, "{}", o.stderr);
    for l in lines {
        assert!(
            l.starts_with("cgmalloc: warn: /p/t would exceed memory.max (16.0M) by "),
            "{l}"
        );
    }
}

#[test]
fn an_ancestor_left_on_still_holds_its_own_max() {
    let dir = Scratch::new("enforce-ancestor");
    let exe = build(&dir);
    let o = run(
        &exe,
        &["/p:max=32M", "/p/t:max=16M,enforce=warn"],
        "/p/t",
        64,
    );
    let got = o.num("allocated");
    assert!(
        (24..=32).contains(&got),
        "stopped near 32 MiB, not 16: {got}"
    );
    assert!(o.num("events.warn") >= 1, "{:?}", o.kv);
    assert!(o.num("current") <= 32 << 20, "{:?}", o.kv);
}

#[test]
fn off_ignores_the_limits_and_still_counts() {
    let dir = Scratch::new("enforce-off");
    let exe = build(&dir);
    let o = run(
        &exe,
        &["/p", "/p/t:max=16M,high=8M,enforce=off"],
        "/p/t",
        48,
    );
    assert_eq!(o.num("allocated"), 48, "{:?}", o.kv);
    assert_eq!(o.num("callbacks"), 0, "{:?}", o.kv);
    for e in ["max", "high", "warn", "oom"] {
        assert_eq!(o.num(&format!("events.{e}")), 0, "{e}: {:?}", o.kv);
    }
    assert!(o.num("current") >= 48 << 20, "{:?}", o.kv);
    assert!(o.num("peak") >= o.num("current"), "{:?}", o.kv);
    assert!(o.warn_lines().is_empty(), "{}", o.stderr);
    assert_eq!(o.kv["enforce"], "off");
    let row = o
        .stderr
        .lines()
        .find(|l| l.starts_with("/p/t "))
        .unwrap_or("");
    assert!(row.ends_with("enforce=off"), "{}", o.stderr);
}

#[test]
fn the_launcher_sets_the_roots_mode_and_refuses_a_bad_one() {
    let dir = Scratch::new("enforce-root");
    let exe = build(&dir);
    let mut cmd = launcher(["run", "--max", "16M", "--enforce", "warn", "--"]);
    cmd.arg(&exe).args(["/", "40"]);
    let r = programs::run(&mut cmd, None, TIMEOUT);
    r.assert_success("the enforce program");
    assert!(r.stdout().contains("allocated 40"), "{}", r.stdout());
    assert!(r.stdout().contains("enforce warn"), "{}", r.stdout());
    let out = launcher(["run", "--enforce", "maybe", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an enforce mode"), "{err}");
    let out = launcher(["run", "--group", "/g:enforce=maybe", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
