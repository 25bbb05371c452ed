//! The lifecycle matrix: `tests/c/lifecycle.c`, run once per cell, crosses in every
//! combination
//!
//! - where the workers allocate: the root group, a child group (`/lc`), and a child group
//!   whose `memory.max` their bursts reach now and then (allocations return NULL);
//! - block sizes: small (≤ 32 KiB), medium (32 KiB–1 MiB) and large (1–4 MiB), each freed
//!   by the thread that allocated it, and a mix of all three handed between threads
//!   through a shared mailbox;
//! - the event one more thread fires while 4 workers allocate and free: `fork()` with a
//!   child that `_exit`s, one that frees, allocates and frees every band and checks its
//!   group's `memory.current`, one that execs `/bin/true`; workers exiting and new ones
//!   starting in the group; `malloc_trim(0)`; `memory.reclaim`; `memory.max` lowered
//!   below the usage and raised back; temporary groups the workers allocate in (and
//!   leave) destroyed while their blocks live, re-created and re-entered.
//!
//! Worker 0 also trims now and then during every other run of ten events, so every event
//! races with trims part of the time.
//!
//! Each cell must end without an abort or a hang (each run has a time limit), with every
//! fork child exited 0 (none killed by a signal), and, once the workers are joined, their
//! blocks checked and freed, every stock drained and everything reclaimable reclaimed:
//! every group of the cell at exactly 0 (`memory.current`, `stock`, and `memory.stat`'s
//! `allocated`, `small`, `large`, `cached`), `nr_charges == nr_uncharges` in the child
//! group (in the destroy cells too: a destroyed group's counts go to its parent), the root's `memory.current` equal to its value at the cell's start after
//! the same quiesce (the threads the cell starts reuse cached stacks, so glibc allocates
//! nothing new for them), and, with the cell's groups destroyed, no live or dying group
//! left. A fork-alloc child checks that its group's `memory.current` grew by at least
//! the medium and large blocks it holds and went back to exactly its value before them.
//!
//! `cgm_audit` runs in every fork-alloc child right after `fork()` and after it freed its
//! blocks, and in the parent after joining the workers, before and after freeing: every
//! group's counter must be exactly what is recorded for it.
//!
//! The cells of one event, linked with `-lcgmalloc`, make one test (so nextest runs
//! them in parallel, each in its own process); two more run a subset preloaded (built
//! without the library, `tests/c/capi_dl.h`). Each run prints a one-line summary to
//! stderr. The default run fires 120 forks in each fork cell (5,040 in all) and 400 events
//! in each of the others. With `CGMALLOC_SOAK=1`, the matrix runs for `CGMALLOC_SOAK_S`
//! seconds (default 1800) in all, one test at a time: each test gets the share of its
//! cells and loops over them, each run firing events for a slice of that time.
//!
//! The library is built by `cargo build --release` before the tests run.

use crate::support::programs::{
    self, build_program, linked, preloaded, run, soak_seconds, tail, without_cgmalloc_vars, Mode,
    Run, Scratch, CFLAGS, ROOT,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const GROUPS: [&str; 3] = ["root", "child", "max"];
const BANDS: [&str; 4] = ["small", "medium", "large", "mix"];
const EVENTS: [&str; 8] = [
    "fork-exit",
    "fork-alloc",
    "fork-exec",
    "thread-exit",
    "trim",
    "reclaim",
    "lower-max",
    "destroy",
];
/// The cells also run preloaded, for every event.
const PRELOADED: [(&str, &str); 2] = [("child", "mix"), ("max", "large")];

/// Forks of a fork cell, and events of the others, in the default run.
const FORKS_PER_CELL: u64 = 120;
const EVENTS_PER_CELL: u64 = 400;
/// The default run must fork at least this often in all.
const MIN_FORKS: u64 = 2000;
/// Time limit of one run, beyond the seconds a soak asks of it.
const CELL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cell {
    mode: Mode,
    group: &'static str,
    band: &'static str,
    event: &'static str,
}

impl Cell {
    fn name(&self) -> String {
        let mode = match self.mode {
            Mode::Linked => "linked",
            Mode::Preloaded => "preloaded",
        };
        format!("{mode}/{}/{}/{}", self.group, self.band, self.event)
    }

    fn forks(&self) -> bool {
        self.event.starts_with("fork-")
    }

    /// Forks the default run of this cell makes.
    fn planned_forks(&self) -> u64 {
        if self.forks() {
            FORKS_PER_CELL
        } else {
            0
        }
    }
}

/// The linked cells of `event`: every group setting with every band.
fn linked_cells(event: &'static str) -> Vec<Cell> {
    let mut cells = Vec::new();
    for group in GROUPS {
        for band in BANDS {
            cells.push(Cell {
                mode: Mode::Linked,
                group,
                band,
                event,
            });
        }
    }
    cells
}

/// The preloaded cells of the fork events (`forks`) or of the others.
fn preloaded_cells(forks: bool) -> Vec<Cell> {
    let mut cells = Vec::new();
    for event in EVENTS {
        for (group, band) in PRELOADED {
            let c = Cell {
                mode: Mode::Preloaded,
                group,
                band,
                event,
            };
            if c.forks() == forks {
                cells.push(c);
            }
        }
    }
    cells
}

/// Every cell of the matrix, as the tests below run them.
fn all_cells() -> Vec<Cell> {
    let mut cells: Vec<Cell> = EVENTS.iter().flat_map(|e| linked_cells(e)).collect();
    cells.extend(preloaded_cells(true));
    cells.extend(preloaded_cells(false));
    cells
}

fn build(dir: &Path, mode: Mode) -> PathBuf {
    build_program(dir, "lifecycle", mode, &CFLAGS)
}

/// What one run of a cell printed, and what is wrong with it.
struct Outcome {
    name: String,
    counts: BTreeMap<String, f64>,
    audits_ok: u64,
    problems: Vec<String>,
}

impl Outcome {
    fn count(&self, key: &str) -> u64 {
        self.counts.get(key).copied().unwrap_or(0.0) as u64
    }

    fn summary(&self) -> String {
        format!(
            "lifecycle {}: forks {}, died {}, failed {}, hung {}, allocs {}, nulls {}, events \
             {}, limit hits {}, audits ok {}, {:.2} s: {}",
            self.name,
            self.count("forks"),
            self.count("died"),
            self.count("failed"),
            self.count("hung"),
            self.count("allocs"),
            self.count("nulls"),
            self.count("events"),
            self.count("limit_hits"),
            self.audits_ok,
            self.counts.get("seconds").copied().unwrap_or(0.0),
            if self.problems.is_empty() {
                "ok"
            } else {
                "FAILED"
            }
        )
    }
}

/// Checks one run of `cell`, which should have fired `min_forks` forks at least (exactly,
/// unless `soak`).
fn check(cell: &Cell, r: &Run, min_forks: u64, soak: bool) -> Outcome {
    let name = cell.name();
    let mut problems = Vec::new();
    let mut counts = BTreeMap::new();
    let (mut audits_ok, mut result) = (0, None);
    for line in r.stdout().lines() {
        if line.starts_with("audit: ok ") {
            audits_ok += 1;
        } else if line.starts_with("audit: ") {
            problems.push(line.to_owned());
        } else if let Some(rest) = line.strip_prefix("cell ") {
            let (_, fields) = rest.split_once(": ").unwrap_or(("", ""));
            let words: Vec<&str> = fields.split_whitespace().collect();
            for kv in words.chunks(2) {
                if let [k, v] = kv {
                    counts.insert(k.to_string(), v.parse::<f64>().unwrap_or(f64::NAN));
                }
            }
        } else if let Some(rest) = line.strip_prefix("result: ") {
            result = Some(rest.to_owned());
        } else if line.starts_with("error: ") || line.contains(": FAIL ") {
            problems.push(line.to_owned());
        }
    }
    if !r.status.success() {
        problems.push(format!("the program ended with {:?}", r.status));
    }
    if result.as_deref() != Some("ok") {
        problems.push(format!("result line: {result:?}"));
    }
    if counts.is_empty() {
        problems.push("no `cell ...` summary line".into());
    }
    let get = |k: &str| counts.get(k).copied().unwrap_or(f64::NAN);
    let forks = get("forks");
    let forks_ok = if soak {
        forks >= min_forks as f64
    } else {
        forks == min_forks as f64
    };
    if !forks_ok {
        problems.push(format!("{forks} forks, expected {min_forks}"));
    }
    for k in ["died", "failed", "hung"] {
        if get(k) != 0.0 {
            problems.push(format!("{} fork children {k}", get(k)));
        }
    }
    // Two audits in the parent, and two in each fork-alloc child that got that far.
    let audits = audits_ok + problems.iter().filter(|p| p.starts_with("audit: ")).count() as u64;
    let mut want_audits = 2;
    if cell.event == "fork-alloc" && get("died") == 0.0 && get("failed") == 0.0 {
        want_audits += 2 * forks as u64;
    }
    if audits != want_audits {
        problems.push(format!("{audits} audit lines, expected {want_audits}"));
    }
    problems.extend(programs::cgmalloc_lines_problem(&r.stderr));
    Outcome {
        name,
        counts,
        audits_ok,
        problems,
    }
}

/// Runs `cell` once with `args` and checks the run.
fn run_cell(exe: &Path, cell: &Cell, args: &[String], min_forks: u64, soak: bool) -> Outcome {
    let mut cmd = without_cgmalloc_vars(Command::new(exe));
    cmd.args([cell.group, cell.band, cell.event]).args(args);
    let mut cmd = match cell.mode {
        Mode::Linked => linked(cmd),
        Mode::Preloaded => preloaded(cmd),
    };
    let seconds: f64 = args
        .iter()
        .find_map(|a| a.strip_prefix("seconds=").and_then(|s| s.parse().ok()))
        .unwrap_or(0.0);
    // `run` fails the test, naming the command (and so the cell), if the run hangs.
    let r = run(
        &mut cmd,
        None,
        CELL_TIMEOUT + Duration::from_secs_f64(seconds),
    );
    let o = check(cell, &r, min_forks, soak);
    if o.problems.is_empty() {
        eprintln!("{}", o.summary());
    }
    if !o.problems.is_empty() {
        let errors: Vec<&str> = r
            .stdout()
            .lines()
            .filter(|l| !l.starts_with("audit: ok "))
            .collect();
        let mut detail = format!("{}\n  {}", o.summary(), o.problems.join("\n  "));
        detail.push_str(&format!(
            "\n--- stdout (audit lines left out, end) ---\n{}\n--- stderr (end) ---\n{}",
            tail(&errors.join("\n"), 3000),
            tail(&r.stderr, 2000)
        ));
        eprintln!("{detail}");
    }
    o
}

/// Runs `cells` (the default run, or under `CGMALLOC_SOAK=1` their share of the soak) and
/// fails with every failed run described.
fn matrix(test: &str, cells: &[Cell]) {
    let dir = Scratch::new(test);
    let mut exes: BTreeMap<Mode, PathBuf> = BTreeMap::new();
    for c in cells {
        exes.entry(c.mode).or_insert_with(|| build(&dir, c.mode));
    }
    let start = Instant::now();
    let mut failed: Vec<String> = Vec::new();
    let (mut runs, mut forks) = (0u64, 0u64);
    let mut one = |cell: &Cell, args: Vec<String>, min_forks: u64, soak: bool| {
        let o = run_cell(&exes[&cell.mode], cell, &args, min_forks, soak);
        runs += 1;
        forks += o.count("forks");
        if !o.problems.is_empty() {
            failed.push(format!("{}\n  {}", o.summary(), o.problems.join("\n  ")));
        }
    };
    match soak_seconds() {
        None => {
            for cell in cells {
                let args = if cell.forks() {
                    format!("forks={FORKS_PER_CELL}")
                } else {
                    format!("events={EVENTS_PER_CELL}")
                };
                one(cell, vec![args], cell.planned_forks(), false);
            }
        }
        Some(total) => {
            // This test's share of the soak, spread over its cells in rounds (three when
            // there is time for them), each run firing events for a slice of it. Every
            // round is run to its end, the first one whatever the share.
            let share = total * cells.len() as f64 / all_cells().len() as f64;
            let slice = (share / cells.len() as f64 / 3.0).max(1.0);
            eprintln!(
                "lifecycle {test}: soak of {share:.0} s over {} cells, {slice:.1} s a run",
                cells.len()
            );
            loop {
                for cell in cells {
                    let args = vec![
                        format!("forks={FORKS_PER_CELL}"),
                        format!("events={EVENTS_PER_CELL}"),
                        format!("seconds={slice:.1}"),
                    ];
                    one(cell, args, cell.planned_forks(), true);
                }
                if start.elapsed().as_secs_f64() >= share {
                    break;
                }
            }
        }
    }
    eprintln!(
        "lifecycle {test}: {runs} runs of {} cells, {forks} forks, {} failed, {:.1?}",
        cells.len(),
        failed.len(),
        start.elapsed()
    );
    assert!(
        failed.is_empty(),
        "{test}: {} of {runs} runs failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    if soak_seconds().is_none() {
        let planned: u64 = cells.iter().map(Cell::planned_forks).sum();
        assert_eq!(forks, planned, "{test}: forks made");
    }
}

// ---------------------------------------------------------------------------------------
// The plan.

/// The matrix has every combination of group setting, band and event (linked), and the
/// default run forks at least `MIN_FORKS` times (each run checks it made its forks).
#[test]
fn plan_covers_every_cell_and_enough_forks() {
    let cells = all_cells();
    let mut linked: Vec<(&str, &str, &str)> = cells
        .iter()
        .filter(|c| c.mode == Mode::Linked)
        .map(|c| (c.group, c.band, c.event))
        .collect();
    linked.sort();
    linked.dedup();
    assert_eq!(linked.len(), GROUPS.len() * BANDS.len() * EVENTS.len());
    let mut names: Vec<String> = cells.iter().map(Cell::name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cells.len(), "a cell is listed twice");
    let forks: u64 = cells.iter().map(Cell::planned_forks).sum();
    assert!(
        forks >= MIN_FORKS,
        "the default run forks {forks} times, fewer than {MIN_FORKS}"
    );
    let source = std::fs::read_to_string(Path::new(ROOT).join("tests/c/lifecycle.c")).unwrap();
    for word in GROUPS.iter().chain(&BANDS).chain(&EVENTS) {
        assert!(
            source.contains(&format!("\"{word}\"")),
            "tests/c/lifecycle.c does not know {word:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The linked cells, one test per event.

#[test]
fn fork_exit() {
    matrix("fork-exit", &linked_cells("fork-exit"));
}

#[test]
fn fork_alloc() {
    matrix("fork-alloc", &linked_cells("fork-alloc"));
}

#[test]
fn fork_exec() {
    matrix("fork-exec", &linked_cells("fork-exec"));
}

#[test]
fn thread_exit() {
    matrix("thread-exit", &linked_cells("thread-exit"));
}

#[test]
fn trim() {
    matrix("trim", &linked_cells("trim"));
}

#[test]
fn reclaim() {
    matrix("reclaim", &linked_cells("reclaim"));
}

#[test]
fn lower_max() {
    matrix("lower-max", &linked_cells("lower-max"));
}

#[test]
fn destroy() {
    matrix("destroy", &linked_cells("destroy"));
}

// ---------------------------------------------------------------------------------------
// Preloaded.

#[test]
fn preloaded_fork_events() {
    matrix("preloaded-forks", &preloaded_cells(true));
}

#[test]
fn preloaded_other_events() {
    matrix("preloaded-others", &preloaded_cells(false));
}
