//! `memory.pressure` of a running program read from outside (`cgmalloc stat` as JSON,
//! text and Prometheus, `cgmalloc top`'s `PSI10`) and in the run's report (`--stats`).
//!
//! `tests/c/stalled.c` runs under `cgmalloc run` with its main thread in `/s`
//! (`memory.high` 16M) and a second thread in `/idle`, which never stalls. The main
//! thread allocates 128 KiB blocks past `/s`'s high, each one throttled a little longer,
//! until `cgm_group_pressure` says `/s` stalled 400 ms (about 0.55 s in the end); it
//! prints the time it spent in `malloc` and what `cgm_group_pressure` reads of `/`, `/s`
//! and `/idle`, then waits on stdin. Nothing stalls after that, so what the launcher
//! computes from outside must be what the program read of itself: the same totals; `full`
//! equal to `some` in `/s` (its one thread was the one stalled) and zero at the root (the
//! idle thread was not); `/idle` zero everywhere. The whole stall lies in the first 2 s
//! averaging period, so once that period ends the averages are one decay step of its
//! share of those 2 s, which `stat`, Prometheus and `top` must all show.

use super::cli::launcher;
use crate::support::programs::{self, Scratch};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
/// The stall the program asks of its throttle, in µs (`stalled.c`'s TARGET_MS).
const TARGET_US: u64 = 400_000;
/// How far two readings of a total with no stall between them may be apart, in µs (they
/// should be equal).
const CLOSE_US: u64 = 10_000;
/// The kernel's decay factors for avg10, avg60 and avg300, over 2048 (`psi.rs`'s `EXP`).
const EXP: [f64; 3] = [1677.0, 1981.0, 2034.0];
const GROUPS: [&str; 3] = ["/", "/s", "/idle"];

/// `tests/c/stalled.c`, linked against the library.
fn build(dir: &Path) -> PathBuf {
    let src = format!("{}/tests/c/stalled.c", env!("CARGO_MANIFEST_DIR"));
    let include = format!("-I{}/include", env!("CARGO_MANIFEST_DIR"));
    programs::compile_c(
        "cc",
        dir,
        &src,
        "stalled",
        &["-O2", "-Wall", "-pthread", "-fno-builtin", &include],
        &programs::link_flags(),
    )
}

/// `memory.pressure` as the program read it with `cgm_group_pressure`.
#[derive(Clone, Copy, Debug)]
struct Inside {
    some_total: u64,
    full_total: u64,
    some_avg10: f64,
    full_avg10: f64,
}

/// `stalled.c` under `cgmalloc run`, stalled and waiting on stdin; killed when dropped.
struct Stalled {
    _dir: Scratch,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    pid: String,
    /// Blocks it allocated, and the time spent in their `malloc` calls (µs).
    steps: u32,
    malloc_us: u64,
    /// What it read of `/`, `/s` and `/idle`.
    inside: BTreeMap<String, Inside>,
}

impl Stalled {
    /// Starts the program (with `--stats` when `stats`: the report on stderr) and waits
    /// until it has stalled and printed what it read.
    fn start(name: &str, stats: bool) -> Stalled {
        let dir = Scratch::new(name);
        let exe = build(&dir);
        let mut args = vec!["run"];
        if stats {
            args.push("--stats");
        }
        args.extend([
            "--group",
            "/s:high=16M",
            "--group",
            "/idle",
            "--attach",
            "/s",
            "--",
        ]);
        let mut cmd = launcher(args);
        cmd.arg(&exe).args(["/s", "/idle", "128", "400"]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut err = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut s = Stalled {
            _dir: dir,
            child,
            stdin,
            stderr: Some(stderr),
            pid: String::new(),
            steps: 0,
            malloc_us: 0,
            inside: BTreeMap::new(),
        };
        let mut lines = Vec::new();
        loop {
            let Ok(l) = rx.recv_timeout(WAIT) else {
                let _ = s.child.kill();
                let err = s.stderr.take().unwrap().join().unwrap();
                panic!("no `ready` after {lines:?}; stderr:\n{err}");
            };
            if l == "ready" {
                break;
            }
            lines.push(l);
        }
        for l in &lines {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["pid", p] => s.pid = p.to_string(),
                ["steps", n] => s.steps = n.parse().unwrap(),
                ["malloc_us", n] => s.malloc_us = n.parse().unwrap(),
                ["pressure", path, st, ft, sa, fa] => {
                    s.inside.insert(
                        path.to_string(),
                        Inside {
                            some_total: st.parse().unwrap(),
                            full_total: ft.parse().unwrap(),
                            some_avg10: sa.parse().unwrap(),
                            full_avg10: fa.parse().unwrap(),
                        },
                    );
                }
                _ => panic!("unexpected line {l:?} in {lines:?}"),
            }
        }
        assert!(!s.pid.is_empty(), "{lines:?}");
        assert_eq!(s.inside.len(), 3, "{lines:?}");
        // The set-up worked: the throttle, not the step limit, ended the loop, and the whole
        // stall fits in one averaging period.
        let own = s.inside("/s").some_total;
        assert!(
            s.steps < 1024 && (TARGET_US..1_900_000).contains(&own),
            "stalled {own} µs in {} steps: {lines:?}",
            s.steps
        );
        s
    }

    fn inside(&self, path: &str) -> Inside {
        self.inside[path]
    }

    /// Tells the program to exit and returns its stderr (the report, with `--stats`).
    fn finish(mut self) -> String {
        let mut stdin = self.stdin.take().unwrap();
        writeln!(stdin, "q").unwrap();
        drop(stdin);
        let st = self.child.wait().unwrap();
        let err = self.stderr.take().unwrap().join().unwrap();
        assert!(st.success(), "the run ended with {st}; stderr:\n{err}");
        err
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cgmalloc ARGS`: stdout, failing unless it exits 0 with nothing on stderr.
fn tool(args: &[&str]) -> String {
    let out = launcher(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.is_empty(),
        "cgmalloc {args:?}: {}\n{err}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cgmalloc stat PID --json`: `memory.pressure` of each group, by path.
fn pressures(pid: &str) -> BTreeMap<String, Value> {
    let out = tool(&["stat", pid, "--json"]);
    let groups: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("stat --json is not JSON ({e}):\n{out}"));
    groups
        .as_array()
        .expect("an array of groups")
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_string(),
                g["memory.pressure"].clone(),
            )
        })
        .collect()
}

/// A total of `memory.pressure` as JSON (`kind` "some" or "full"), in µs.
fn total(p: &Value, kind: &str) -> u64 {
    p[kind]["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no {kind}.total in {p}"))
}

/// avg10, avg60 and avg300 of `kind` as JSON, in percent.
fn avgs(p: &Value, kind: &str) -> [f64; 3] {
    ["avg10", "avg60", "avg300"].map(|w| {
        p[kind][w]
            .as_f64()
            .unwrap_or_else(|| panic!("no {kind}.{w} in {p}"))
    })
}

/// Polls `stat --json` until the first averaging period after the stall has ended
/// (`/s`'s some avg10 is no longer 0); the pressures then.
fn after_first_period(pid: &str) -> BTreeMap<String, Value> {
    let start = Instant::now();
    loop {
        let p = pressures(pid);
        if avgs(&p["/s"], "some")[0] > 0.0 {
            return p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "avg10 still 0 after 10 s: {p:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The averages after a stall of `total_us` (under 2 s) within one period, and
/// `decays` quiet periods after it: `100 · total / 2 s · (1 − e) · eᵏ` for each window's
/// factor `e` (`calc_load` from 0).
fn expected_avgs(total_us: u64, decays: i32) -> [f64; 3] {
    let share = total_us as f64 / 2e6 * 100.0;
    EXP.map(|e| share * (1.0 - e / 2048.0) * (e / 2048.0).powi(decays))
}

/// Whether `got` are the averages of a stall of `total_us` read at the end of the first
/// period after it, or of the next (a poll that came late), to within 0.05 points.
fn averages_of(got: [f64; 3], total_us: u64) -> bool {
    (0..=1).any(|k| {
        expected_avgs(total_us, k)
            .iter()
            .zip(got)
            .all(|(want, got)| (want - got).abs() < 0.05)
    })
}

/// What `stat --json` reads from outside is what the program read of itself with
/// `cgm_group_pressure` before (nothing stalled since), and both fit what the program
/// measured: `some` of `/s` is most of the time spent in `malloc` and no more; `full` of
/// `/s` is `some` (its one thread stalled), the root's `some` is at least `/s`'s and its
/// `full` 0 (the idle thread never stalled), `/idle` reads zero. Once the first period
/// has ended, the averages are its share of stall, decayed once by each window's factor.
#[test]
fn stat_json_reads_the_stall_the_program_read_of_itself() {
    let p = Stalled::start("pressure-json", false);
    let out = pressures(&p.pid);
    assert_eq!(
        out.keys().map(String::as_str).collect::<Vec<_>>(),
        ["/", "/idle", "/s"]
    );
    let keys = |v: &Value| {
        let mut k: Vec<String> = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {v}"))
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    };
    for (path, v) in &out {
        assert_eq!(keys(v), ["full", "some"], "{path}: {v}");
        for kind in ["some", "full"] {
            assert_eq!(
                keys(&v[kind]),
                ["avg10", "avg300", "avg60", "total"],
                "{path}: {v}"
            );
        }
    }

    // The program's own view fits its measurements.
    let own = p.inside("/s");
    assert!(
        own.some_total <= p.malloc_us && own.some_total + 100_000 >= p.malloc_us,
        "stalled {} µs of {} µs in malloc",
        own.some_total,
        p.malloc_us
    );
    assert_eq!(own.full_total, own.some_total, "{own:?}");
    // Read within the first 2 s period after the stall began: averages are as of the last
    // period's end, as the kernel's are, so still 0.
    for path in GROUPS {
        let i = p.inside(path);
        assert_eq!((i.some_avg10, i.full_avg10), (0.0, 0.0), "{path}: {i:?}");
    }

    // Outside, the same totals.
    for path in GROUPS {
        let inside = p.inside(path);
        for (kind, was) in [("some", inside.some_total), ("full", inside.full_total)] {
            let now = total(&out[path], kind);
            assert!(
                now >= was && now - was <= CLOSE_US,
                "{path} {kind}: {now} µs from outside, {was} µs inside before"
            );
        }
    }
    let s = &out["/s"];
    let first_total = total(s, "some");
    assert!(first_total >= TARGET_US, "{s}");
    assert_eq!(total(s, "full"), total(s, "some"), "{s}");
    let root = &out["/"];
    assert!(total(root, "some") >= total(s, "some"), "{root} {s}");
    assert_eq!(
        total(root, "full"),
        0,
        "the idle thread never stalled: {root}"
    );
    let idle = &out["/idle"];
    for kind in ["some", "full"] {
        assert_eq!(total(idle, kind), 0, "{idle}");
        assert_eq!(avgs(idle, kind), [0.0; 3], "{idle}");
    }

    // The averages, once the period that holds the stall has ended.
    let out = after_first_period(&p.pid);
    let s = &out["/s"];
    let stalled = total(s, "some");
    for kind in ["some", "full"] {
        let got = avgs(s, kind);
        assert!(
            averages_of(got, stalled),
            "/s {kind}: {got:?} for {stalled} µs, want {:?}",
            expected_avgs(stalled, 0)
        );
    }
    assert_eq!(avgs(&out["/"], "some"), avgs(s, "some"), "{out:?}");
    assert_eq!(avgs(&out["/"], "full"), [0.0; 3], "{out:?}");
    assert_eq!(avgs(&out["/idle"], "some"), [0.0; 3], "{out:?}");
    // Totals do not move with the clock.
    assert_eq!(stalled, first_total, "{out:?}");
    p.finish();
}

/// `stat --prometheus` parses, and has for each group both pressure metrics with their
/// types: the stall seconds of `some` and `full`, equal to the JSON totals, and the
/// percentages of `some` and `full` over the windows 10, 60 and 300, equal to the JSON
/// averages (`/s`'s some avg10 above 0 once the first period ended, `/idle`'s all 0).
#[test]
fn prometheus_text_has_both_pressure_metrics_per_group_kind_and_window() {
    let p = Stalled::start("pressure-prometheus", false);
    let json = after_first_period(&p.pid);
    let prom = tool(&["stat", &p.pid, "--prometheus"]);
    let scrape = prometheus_parse::Scrape::parse(prom.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{prom}"));
    const STALL: &str = "cgmalloc_memory_pressure_stall_seconds_total";
    const PERCENT: &str = "cgmalloc_memory_pressure_percent";
    for name in [STALL, PERCENT] {
        assert!(
            scrape.docs.contains_key(name),
            "no HELP for {name}:\n{prom}"
        );
    }
    for s in scrape
        .samples
        .iter()
        .filter(|s| s.metric.contains("pressure"))
    {
        assert_eq!(s.labels.get("pid"), Some(p.pid.as_str()), "{s:?}");
        assert_eq!(s.labels.get("comm"), Some("stalled"), "{s:?}");
    }
    // Samples of `metric` for `path`: as many as there are distinct label sets.
    let count = |metric: &str, path: &str| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric && s.labels.get("group") == Some(path))
            .count()
    };
    for path in GROUPS {
        let v = &json[path];
        assert_eq!(count(STALL, path), 2, "{path}:\n{prom}");
        assert_eq!(count(PERCENT, path), 6, "{path}:\n{prom}");
        // kind → value.
        let stall: BTreeMap<&str, f64> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == STALL && s.labels.get("group") == Some(path))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(x) => (s.labels.get("kind").unwrap(), x),
                ref x => panic!("{STALL} is a counter: {x:?}"),
            })
            .collect();
        assert_eq!(
            stall.keys().copied().collect::<Vec<_>>(),
            ["full", "some"],
            "{path}:\n{prom}"
        );
        for (kind, secs) in &stall {
            let want = total(v, kind) as f64 / 1e6;
            assert!(
                (secs - want).abs() < 1e-6,
                "{path} {kind}: {secs} s, JSON {v}"
            );
        }
        // (kind, window) → value.
        let percent: BTreeMap<(&str, &str), f64> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == PERCENT && s.labels.get("group") == Some(path))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(x) => (
                    (
                        s.labels.get("kind").unwrap(),
                        s.labels.get("window").unwrap(),
                    ),
                    x,
                ),
                ref x => panic!("{PERCENT} is a gauge: {x:?}"),
            })
            .collect();
        let keys: Vec<(&str, &str)> = percent.keys().copied().collect();
        assert_eq!(
            keys,
            [
                ("full", "10"),
                ("full", "300"),
                ("full", "60"),
                ("some", "10"),
                ("some", "300"),
                ("some", "60")
            ],
            "{path}:\n{prom}"
        );
        for kind in ["some", "full"] {
            let a = avgs(v, kind);
            for (w, window) in ["10", "60", "300"].into_iter().enumerate() {
                let got = percent[&(kind, window)];
                assert!(
                    (got - a[w]).abs() < 1e-9,
                    "{path} {kind} {window}: {got}, JSON {v}"
                );
            }
        }
    }
    assert!(
        json["/s"]["some"]["avg10"].as_f64().unwrap() > 0.0,
        "{json:?}"
    );
    assert_eq!(avgs(&json["/idle"], "some"), [0.0; 3]);
    p.finish();
}

/// One line of `memory.pressure` as the kernel writes it: `KIND avg10=A.AA avg60=A.AA
/// avg300=A.AA total=N`, as (kind, averages, total).
fn kernel_line(line: &str) -> (String, [f64; 3], u64) {
    let w: Vec<&str> = line.split(' ').collect();
    assert_eq!(w.len(), 5, "{line:?}");
    let mut avg = [0.0; 3];
    for (i, key) in ["avg10=", "avg60=", "avg300="].iter().enumerate() {
        let v = w[1 + i]
            .strip_prefix(key)
            .unwrap_or_else(|| panic!("{key} in {line:?}"));
        let (int, frac) = v.split_once('.').unwrap_or_else(|| panic!("{line:?}"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        assert!(digits(int) && digits(frac) && frac.len() == 2, "{line:?}");
        avg[i] = v.parse().unwrap();
    }
    let total = w[4]
        .strip_prefix("total=")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    (w[0].to_string(), avg, total)
}

/// `cgmalloc stat PID` as text: each group has a `memory.pressure` line that starts with
/// the kernel's `some` line, and the `full` line under it, with the totals the program
/// read of itself; one group's text has its own.
#[test]
fn stat_text_has_the_kernels_some_and_full_lines() {
    let p = Stalled::start("pressure-text", false);
    let text = tool(&["stat", &p.pid]);
    // Group → its lines.
    let mut sections: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut current = None;
    for l in text.lines() {
        if !l.starts_with(' ') {
            current = Some(l.to_string());
            sections.entry(l.to_string()).or_default();
        } else if let Some(g) = &current {
            sections.get_mut(g).unwrap().push(l);
        }
    }
    assert_eq!(
        sections.keys().map(String::as_str).collect::<Vec<_>>(),
        ["/", "/idle", "/s"],
        "{text}"
    );
    for path in GROUPS {
        let lines = &sections[path];
        let at: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].trim_start().starts_with("memory.pressure"))
            .collect();
        assert_eq!(at.len(), 1, "{path}:\n{text}");
        let some = lines[at[0]]
            .trim_start()
            .strip_prefix("memory.pressure")
            .unwrap()
            .trim_start();
        assert!(some.starts_with("some avg10="), "{path}: {some:?}");
        let full = lines.get(at[0] + 1).map_or("", |l| l.trim_start());
        assert!(full.starts_with("full avg10="), "{path}:\n{text}");
        // The continuation line is aligned under the value.
        let column = |l: &str, v: &str| l.find(v).unwrap();
        assert_eq!(
            column(lines[at[0]], some),
            column(lines[at[0] + 1], full),
            "{path}:\n{text}"
        );
        let inside = p.inside(path);
        for (line, kind, was) in [
            (some, "some", inside.some_total),
            (full, "full", inside.full_total),
        ] {
            let (k, _, now) = kernel_line(line);
            assert_eq!(k, kind);
            assert!(
                now >= was && now - was <= CLOSE_US,
                "{path} {kind}: {now} µs from outside, {was} µs inside before"
            );
        }
    }

    // One group.
    let one = tool(&["stat", &p.pid, "/s"]);
    let line = one
        .lines()
        .find(|l| l.trim_start().starts_with("memory.pressure"))
        .unwrap_or_else(|| panic!("{one}"));
    let (kind, _, t) = kernel_line(line.trim_start()["memory.pressure".len()..].trim_start());
    assert_eq!(kind, "some");
    assert!(t >= TARGET_US, "{line}");
    assert_eq!(one.matches("memory.pressure").count(), 1, "{one}");
    p.finish();
}

/// `cgmalloc top --once PID` has the `PSI10` column, last, and each group's some avg10
/// in it as a percentage with one decimal: `/s`'s and the root's what `stat --json`
/// reads (above 0 once the first period ended), `/idle`'s `0.0%`.
#[test]
fn top_shows_some_avg10_in_its_psi10_column() {
    let p = Stalled::start("pressure-top", false);
    let json = after_first_period(&p.pid);
    let out = tool(&["top", "--once", &p.pid]);
    let header = out
        .lines()
        .find(|l| l.trim_start().starts_with("PID"))
        .unwrap_or_else(|| panic!("no header:\n{out}"));
    assert_eq!(header.split_whitespace().last(), Some("PSI10"), "{out}");
    for (path, leaf) in [("/", "/"), ("/s", "s"), ("/idle", "idle")] {
        let rows: Vec<&str> = out
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some(leaf))
            .collect();
        assert_eq!(rows.len(), 1, "{path}:\n{out}");
        let cell = rows[0].split_whitespace().last().unwrap();
        let got: f64 = cell
            .strip_suffix('%')
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{path}: {cell:?} is not a percentage:\n{out}"));
        let want = avgs(&json[path], "some")[0];
        assert_eq!(cell, format!("{want:.1}%"), "{path}: JSON {}", json[path]);
        if path == "/idle" {
            assert_eq!(got, 0.0, "{out}");
        } else {
            assert!(got > 0.0, "{path}:\n{out}");
        }
    }
    p.finish();
}

/// The report of `cgmalloc run --stats` (on stderr): the row of `/s`, whose thread
/// stalled, ends with ` pressure: some avg10=… total=… full avg10=… total=…` with the
/// totals the program read; the root's too (with `full` 0); `/idle`'s has none.
#[test]
fn the_exit_table_shows_pressure_on_the_stalled_groups_only() {
    let p = Stalled::start("pressure-report", true);
    let inside = p.inside.clone();
    let err = p.finish();
    let table = err
        .split_once("groups at exit\n")
        .unwrap_or_else(|| panic!("no table at exit:\n{err}"))
        .1;
    let row = |path: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(path))
            .unwrap_or_else(|| panic!("no row for {path}:\n{err}"))
    };
    let idle = row("/idle");
    assert!(!idle.contains("pressure"), "{idle}");
    for path in ["/s", "/"] {
        let r = row(path);
        let (_, psi) = r
            .split_once(" pressure: ")
            .unwrap_or_else(|| panic!("no pressure on {path}'s row:\n{err}"));
        assert!(psi.starts_with("some avg10="), "{r}");
        let at = psi.find(" full avg10=").unwrap_or_else(|| panic!("{r}"));
        let (some, full) = (&psi[..at], &psi[at + 1..]);
        let (_, _, some_total) = kernel_line(some);
        let (_, _, full_total) = kernel_line(full);
        let was = inside[path];
        for (kind, now, was) in [
            ("some", some_total, was.some_total),
            ("full", full_total, was.full_total),
        ] {
            assert!(
                now >= was && now - was <= CLOSE_US,
                "{path} {kind}: {now} µs at exit, {was} µs inside before:\n{r}"
            );
        }
        if path == "/" {
            assert_eq!(full_total, 0, "{r}");
        }
    }
}
