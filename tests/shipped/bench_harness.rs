//! The benchmark harness (`benches/run.py`) as a smoke test: `--quick` builds the C
//! workloads in `benches/workloads`, runs each once (`--short`, 2 threads) under every
//! allocator configuration it can find (glibc, cgmalloc, cgmalloc-limited, and mimalloc,
//! jemalloc, tcmalloc when installed or installable: a missing peer is skipped, with a
//! note in the report) and the accounting-overhead runs with 1 and 16 groups, and exits
//! non-zero if any run failed or printed no `RESULT` line. The figures are not checked;
//! this test asserts exit 0 and that the markdown report has a row for every workload
//! built and columns for glibc and cgmalloc.
//!
//! It runs with `--no-build-lib`: the library is the `target/release/libcgmalloc.so` that
//! `cargo build --release` made before the tests (the harness checks that it exports
//! `malloc`), so nothing here rebuilds what other tests use. Everything the run writes
//! (workload programs, report, results) goes under `CARGO_TARGET_TMPDIR`. Needs
//! `python3`, `make` and `cc`; a missing one is a failure, not a skip. Nothing here sets
//! `LD_PRELOAD`; it is removed from the harness's environment.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The quick run takes well under three minutes on two cores; this is for a loaded CI
/// machine that also installs the peer allocators.
const TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `python3 benches/run.py --quick --no-build-lib --out <out>` in its own process
/// group, its output in files under `out`; kills the group if it exceeds `TIMEOUT`.
fn run_quick(out: &Path) -> (ExitStatus, String) {
    let log_path = out.join("run.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut child = Command::new("python3")
        .arg(Path::new(ROOT).join("benches/run.py"))
        .args(["--quick", "--no-build-lib", "--out"])
        .arg(out)
        .current_dir(ROOT)
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start python3 benches/run.py: {e}"));
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
                "benches/run.py --quick did not finish within {TIMEOUT:?}: killed\n{}",
                fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    (status, fs::read_to_string(&log_path).unwrap_or_default())
}

/// The executables the Makefile built: the workloads the report must list.
fn workloads(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .filter(|e| {
            use std::os::unix::fs::PermissionsExt;
            let meta = e.metadata().unwrap();
            meta.is_file() && meta.permissions().mode() & 0o111 != 0
        })
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The cells of a markdown table row, trimmed.
fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

#[test]
fn quick_run_reports_every_workload() {
    let out: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench_harness");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).unwrap();

    let (status, log) = run_quick(&out);
    assert!(
        status.success(),
        "benches/run.py --quick failed: {status}\n{log}"
    );

    let report = fs::read_to_string(out.join("BENCHMARKS.md"))
        .unwrap_or_else(|e| panic!("no BENCHMARKS.md in {}: {e}\n{log}", out.display()));
    let names = workloads(&out.join("workloads"));
    assert!(!names.is_empty(), "no workload was built\n{log}");

    // The time table: its header names the allocators, its rows the workloads.
    let header = report
        .lines()
        .find(|l| l.starts_with("| workload |") && cells(l).contains(&"glibc"))
        .unwrap_or_else(|| panic!("no table with a glibc column:\n{report}"));
    let columns = cells(header);
    for allocator in ["glibc", "cgmalloc"] {
        assert!(
            columns.contains(&allocator),
            "no {allocator} column in {header:?}\n{report}"
        );
    }
    let table: Vec<&str> = report
        .lines()
        .skip_while(|l| *l != header)
        .take_while(|l| l.starts_with('|'))
        .collect();
    for name in &names {
        let row = table
            .iter()
            .find(|l| cells(l).first() == Some(&name.as_str()))
            .unwrap_or_else(|| panic!("no row for workload {name}:\n{report}"));
        assert_eq!(
            cells(row).len(),
            columns.len(),
            "row {row:?} does not match {header:?}"
        );
    }
    assert!(out.join("results.json").is_file(), "no results.json\n{log}");
}
