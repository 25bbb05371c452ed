//! The examples, run as programs: each must exit 0 and print what it demonstrates.
//!
//! - Rust (`examples/*.rs`): `tenants` (the README's main job), `workers`, `cache`,
//!   `oom`, `scope`. They are run from `target/release/examples/`, where
//!   `cargo nextest run --release --no-default-features --all-targets` (what
//!   `scripts/test.sh` runs) builds them; to run only this file, build them first with
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

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Per run. The programs take well under a second; this is for a loaded CI machine.
const TIMEOUT: Duration = Duration::from_secs(120);

struct Run {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Fails unless the program exited 0; returns its standard output.
    fn success(&self) -> &str {
        assert!(self.status.success(), "{} failed: {self}", self.what);
        &self.stdout
    }

    /// The line of the output that contains `needle`.
    fn line(&self, needle: &str) -> &str {
        self.stdout
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

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
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

/// Runs `cmd` in its own process group with no `LD_PRELOAD`; kills the group and fails
/// if it runs longer than `TIMEOUT`.
fn run(mut cmd: Command, what: &str) -> Run {
    cmd.env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            // SAFETY: signalling the process group created for this child.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!(
                "{what} did not finish within {TIMEOUT:?}: killed\n--- stdout ---\n{}",
                out.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run {
        what: what.to_owned(),
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs the Rust example `name` from `target/release/examples`.
fn rust_example(name: &str) -> Run {
    let exe = Path::new(ROOT).join("target/release/examples").join(name);
    assert!(
        exe.is_file(),
        "{} is missing: build the examples first (`cargo build --release \
         --no-default-features --examples`, or run the tests with `--all-targets`)",
        exe.display()
    );
    run(Command::new(&exe), &format!("example {name}"))
}

/// The absolute path of a program on `PATH`, or a failure telling what to install.
fn need(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not installed (CI must install it, e.g. `apt-get install -y gcc`)"
            )
        })
}

/// `target/release/libcgmalloc.so` as `cargo build --release` makes it: it must export
/// `malloc`, or the C examples would silently keep glibc's.
fn library_dir() -> PathBuf {
    let so = Path::new(ROOT).join("target/release/libcgmalloc.so");
    assert!(
        so.is_file(),
        "{} is missing: run `cargo build --release` before these tests",
        so.display()
    );
    let nm = Command::new(need("nm"))
        .args(["-D", "--defined-only"])
        .arg(&so)
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&nm.stdout)
            .lines()
            .any(|l| l.ends_with(" T malloc")),
        "{} does not export `malloc` (built with --no-default-features?): run `cargo build \
         --release`",
        so.display()
    );
    so.parent().unwrap().to_owned()
}

/// Compiles `examples/c/<name>.c` with the flags its comment shows, into a scratch
/// directory, and runs it.
fn c_example(name: &str) -> Run {
    let cc = need("cc");
    let lib = library_dir();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("examples-c")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(ROOT).join(format!("examples/c/{name}.c"));
    let exe = dir.join(name);
    let output = Command::new(cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-O2"])
        .arg(format!("-I{ROOT}/include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", lib.display()))
        .arg("-lcgmalloc")
        // DT_RPATH (not RUNPATH), and no LD_LIBRARY_PATH below: cargo points that at
        // target/release/deps, which holds a build of the library without `malloc`.
        .arg(format!("-Wl,--disable-new-dtags,-rpath,{}", lib.display()))
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "compiling {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut cmd = Command::new(&exe);
    cmd.env_remove("LD_LIBRARY_PATH");
    let r = run(cmd, &format!("{name}.c"));
    if r.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
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
    r.success();
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
    r.success();
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
    r.success();
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
    r.success();
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
    r.success();
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
    r.success();
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
    r.success();
    let crossings: Vec<&str> = r
        .stdout
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
