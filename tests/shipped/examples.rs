//! The examples, run as programs: each must exit 0 and print what it demonstrates.
//!
//! - Rust (`examples/*.rs`): `tenants` (the README's main job), `workers`, `cache`,
//!   `oom`, `scope`. They are run from `target/release/examples/`, where
//!   `cargo nextest run --release --no-default-features --all-targets` (what
//!   `scripts/test.sh` runs) builds them; to run only these tests, build them first with
//!   `cargo build --release --no-default-features --examples`.
//! - C (`examples/c/*.c`): `groups.c` and `threshold.c`, compiled here with `cc -std=c11
//!   -Wall -Wextra -Werror -pthread` against `include/cgmalloc.h` and linked with
//!   `-lcgmalloc` against `target/release/libcgmalloc.so`, which `cargo build --release`
//!   (default features: it exports `malloc`) builds before the tests. A missing `cc` is a
//!   failure, not a skip.
//!
//! Every run has a time limit (the program is killed and the test fails) and the checks
//! parse the numbers the programs print, so a demonstration that did not happen fails
//! here even if a program forgot to say so in its exit status. Nothing here sets
//! `LD_PRELOAD`; it is removed from the programs' environment.

use crate::support::programs::{self, Run, Scratch, ROOT};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Per run. The programs take well under a second; this is for a loaded CI machine.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A program that ran to a successful end, and what it printed.
struct Example {
    what: String,
    run: Run,
}

impl Example {
    /// Runs `cmd` (without `LD_PRELOAD`) under `TIMEOUT`; it must exit 0.
    fn run(cmd: Command, what: &str) -> Example {
        let r = Example {
            what: what.to_owned(),
            run: programs::run(&mut programs::plain(cmd), None, TIMEOUT),
        };
        assert!(r.run.status.success(), "{} failed: {r}", r.what);
        r
    }

    fn stdout(&self) -> &str {
        self.run.stdout()
    }

    /// The line of the output that contains `needle`.
    fn line(&self, needle: &str) -> &str {
        self.stdout()
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{}: no line with {needle:?}: {self}", self.what))
    }

    /// The integer that follows `key` in the line containing `key`.
    fn num(&self, key: &str) -> u64 {
        self.num_in(key, key)
    }

    /// The integer that follows `key` in the line containing `needle`.
    fn num_in(&self, needle: &str, key: &str) -> u64 {
        let line = self.line(needle);
        number_after(line, key)
            .unwrap_or_else(|| panic!("{}: no number after {key:?} in {line:?}", self.what))
    }
}

impl std::fmt::Display for Example {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.run.status,
            self.stdout(),
            self.run.stderr
        )
    }
}

/// The integer right after the first `key` in `line` (leading spaces skipped).
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = line[line.find(key)? + key.len()..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Runs the Rust example `name` from `target/release/examples`; it must exit 0.
fn rust_example(name: &str) -> Example {
    let exe = Path::new(ROOT).join("target/release/examples").join(name);
    assert!(
        exe.is_file(),
        "{} is missing: build the examples first (`cargo build --release \
         --no-default-features --examples`, or run the tests with `--all-targets`)",
        exe.display()
    );
    Example::run(Command::new(&exe), &format!("example {name}"))
}

/// Compiles `examples/c/<name>.c` with the flags its comment shows, into a scratch
/// directory (kept if it fails), and runs it; it must exit 0.
fn c_example(name: &str) -> Example {
    let dir = Scratch::new(name);
    let include = format!("-I{ROOT}/include");
    let flags = [
        "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-O2", &include,
    ];
    // `-lcgmalloc` with a DT_RPATH (not RUNPATH), and no LD_LIBRARY_PATH below: cargo
    // points that at target/release/deps, which holds a build of the library without
    // `malloc`. `link_flags` checks that the library exports it.
    let link = programs::link_flags();
    let source = format!("examples/c/{name}.c");
    let exe = programs::compile_c("cc", &dir, source, name, &flags, &link);
    Example::run(programs::linked(Command::new(&exe)), &format!("{name}.c"))
}

/// A size of the group report (`83.0M`, `512K`, `max`) in bytes; `None` for `max`.
fn report_size(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let scale = match unit {
        "" | "B" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(num.parse::<f64>().ok()? * scale)
}

// ---------------------------------------------------------------------------------------
// Rust examples.

/// The README's main job: three tenants, a report row for each, each tenant's cache
/// called back (each tenant caches more than its `max` over the run).
#[test]
fn tenants() {
    let r = rust_example("tenants");
    for t in ["gold", "silver", "bronze"] {
        let row = r.line(&format!("/tenants/{t} "));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert!(cols.len() >= 5, "tenants: short row {row:?}: {r}");
        let peak = report_size(cols[2]).unwrap_or_else(|| panic!("peak in {row:?}"));
        let max = report_size(cols[3]).unwrap_or_else(|| panic!("max in {row:?}"));
        assert!(peak <= max, "tenants: {t} peaked above its max: {row:?}");
        let calls = r.num(&format!("{t:<7} cache callbacks:"));
        assert!(calls > 0, "tenants: {t}'s cache was never called back: {r}");
    }
    assert!(r.line("/tenants ").contains("96.0M"), "{r}");
}

#[test]
fn workers() {
    let r = rust_example("workers");
    assert!(r.line("workers: ok").starts_with("workers: ok"), "{r}");
    for i in 0..4 {
        let row = r.line(&format!("/workers/{i} "));
        let cols: Vec<u64> = row
            .split_whitespace()
            .skip(1)
            .map(|c| c.parse().unwrap())
            .collect();
        let [max, working_set, current, peak, oom_kill] = cols[..] else {
            panic!("workers: bad row {row:?}: {r}");
        };
        assert!(
            current >= working_set && peak >= working_set,
            "workers: /workers/{i} not charged its working set: {row:?}"
        );
        assert!(peak <= max, "workers: /workers/{i} above its max: {row:?}");
        // Only the last worker has a max too small for its extra reservation.
        assert_eq!(
            oom_kill > 0,
            i == 3,
            "workers: oom_kill of /workers/{i}: {row:?}"
        );
    }
    assert!(
        r.line("/workers/3 could not reserve").contains("shed"),
        "{r}"
    );
    assert_eq!(r.num("workers refused an allocation:"), 1, "{r}");
    let sums = r.line("/workers current");
    assert_eq!(
        number_after(sums, "current"),
        number_after(sums, "children"),
        "{r}"
    );
}

#[test]
fn cache() {
    let r = rust_example("cache");
    assert_eq!(r.num("failed fills:"), 0, "{r}");
    let calls = r.num("reclaim callback:");
    let freed = r.num_in("reclaim callback:", "calls,");
    assert!(calls > 0 && freed > 0, "cache: never reclaimed: {r}");
    // 100 MiB inserted into 16 MiB: at least 84 MiB were given back.
    assert!(freed >= 84 << 20, "cache: freed only {freed}: {r}");
    assert_eq!(r.num("reclaim_calls"), calls, "{r}");
    assert_eq!(r.num("reclaimed"), freed, "{r}");
    let held = r.num("entries still cached:");
    assert!(held > 0 && held * (256 << 10) <= 16 << 20, "{r}");
    let peak = r.num("memory.peak");
    let max = r.num("memory.max");
    assert_eq!(max, 16 << 20, "{r}");
    assert!(
        peak <= max && r.num("highest seen") <= max,
        "cache: above max: {r}"
    );
    r.line("cache: ok");
}

#[test]
fn oom() {
    let r = rust_example("oom");
    let accepted = r.num_in("jobs accepted", "batch:");
    assert!(
        accepted > 0 && accepted < 16,
        "oom: batch accepted {accepted}: {r}"
    );
    assert!(r.line("batch: job").contains("shedding"), "{r}");
    let batch = r.line("/oom/batch memory.events:");
    assert!(number_after(batch, "oom_kill").unwrap() >= 1, "{r}");
    assert!(number_after(batch, "max").unwrap() >= 1, "{r}");
    assert!(number_after(batch, "oom ").unwrap() >= 1, "{r}");
    let interactive = r.line("/oom/interactive memory.events:");
    assert_eq!(number_after(interactive, "oom_kill"), Some(0), "{r}");
    assert!(number_after(interactive, "oom ").unwrap() >= 2, "{r}");
    assert_eq!(
        r.num_in("requests served", "interactive:"),
        10,
        "oom: not every request served: {r}"
    );
    assert!(r.line("freed the 2 MiB reserve").ends_with("Retry"), "{r}");
    r.line("Force past max");
    let usage = r.line("/oom/interactive memory.current");
    assert!(
        number_after(usage, "memory.current") > number_after(usage, "memory.max"),
        "oom: the forced charges are not past max: {r}"
    );
    r.line("oom: ok");
}

#[test]
fn scope() {
    let r = rust_example("scope");
    assert_eq!(r.num_in("polls on thread", ""), 66, "scope: polls: {r}");
    assert!(
        r.line("first ten")
            .ends_with("[0, 1, 0, 1, 0, 1, 0, 1, 0, 1]"),
        "{r}"
    );
    let a = r.line("/tasks/a:");
    let b = r.line("/tasks/b:");
    let (a_cur, b_cur) = (
        number_after(a, "memory.current").unwrap(),
        number_after(b, "memory.current").unwrap(),
    );
    // KiB: task a allocated 4096, task b 1024, on the same thread.
    assert!(
        (4096..5120).contains(&a_cur),
        "scope: /tasks/a holds {a_cur} KiB: {r}"
    );
    assert!(
        (1024..2048).contains(&b_cur),
        "scope: /tasks/b holds {b_cur} KiB: {r}"
    );
    r.line("scope: ok");
}

// ---------------------------------------------------------------------------------------
// C examples.

#[test]
fn c_groups() {
    let r = c_example("groups");
    assert!(r.line("worker: started in").ends_with("/app/cache"), "{r}");
    assert!(r.line("worker: attached to").ends_with("/app/work"), "{r}");
    assert_eq!(
        r.num_in("mallocs failed", "worker:"),
        0,
        "groups.c: a malloc failed: {r}"
    );
    let calls = r.num("reclaimer:");
    assert!(calls > 0, "groups.c: the reclaimer was never called: {r}");
    assert_eq!(r.num("reclaim_calls"), calls, "{r}");
    // 88 MiB allocated under 64 MiB: the reclaimer freed at least 24 MiB.
    assert!(r.num_in("reclaimer:", "calls,") >= 24, "{r}");
    let app = r.line("/app: current");
    let (peak, max) = (
        number_after(app, "peak").unwrap(),
        number_after(app, "max").unwrap(),
    );
    assert_eq!(max, 64, "{r}");
    assert!(peak <= max, "groups.c: /app went past its max: {r}");
    assert!(r.num("highest /app usage seen") <= max, "{r}");
    let events = r.line("/app memory.events:");
    assert!(number_after(events, "max").unwrap() > 0, "{r}");
    assert_eq!(number_after(events, "oom_kill"), Some(0), "{r}");
    r.line("groups destroyed");
    r.line("groups: ok");
}

#[test]
fn c_threshold() {
    let r = c_example("threshold");
    let crossings: Vec<&str> = r
        .stdout()
        .lines()
        .filter(|l| l.starts_with("watcher: crossing"))
        .collect();
    assert!(
        crossings.iter().any(|l| l.contains("above"))
            && crossings.iter().any(|l| l.contains("below")),
        "threshold.c: no crossing in each direction: {r}"
    );
    assert_eq!(crossings.len(), 6, "{r}");
    assert_eq!(r.num("crossings:"), 3, "threshold.c: upward crossings: {r}");
    assert_eq!(
        r.num_in("crossings:", "up,"),
        3,
        "threshold.c: downward crossings: {r}"
    );
    r.line("threshold: ok");
}
