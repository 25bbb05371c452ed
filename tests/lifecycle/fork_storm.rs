//! fork() from multithreaded programs whose threads allocate in non-root groups
//! (`tests/c/fork_storm.c`): no child may be lost.
//!
//! - `repro`: the reproducer. 4 threads `worker-*` allocate 1..70000 bytes (2 MiB
//!   now and then) and hand them to each other, `worker-0` calls `malloc_trim(0)` now and
//!   then (`trim` variants), while the main thread forks 200 children that `_exit(0)`.
//!   Preloaded under `cgmalloc run --group /w:max=1G --thread 'worker-*=/w'`, and linked
//!   with `/w` made and attached through the C API.
//! - `storm`: 2 threads fork (one from the root, one from `/s1`) while 4 threads allocate
//!   and hand blocks around, each in a group of its own (`/s0`../s3`), with and without
//!   `malloc_trim`; each child allocates, reads its group's `memory.current` (which must
//!   cover the blocks it holds), and one in four execs `/bin/true`. Preloaded with
//!   `CGMALLOC_GROUPS`/`CGMALLOC_THREADS`, and linked with the groups made through the
//!   C API.
//!
//! Every variant also runs with every thread in the root group (`root` variants, the
//! control). The program reports the group each thread ended in, which must be the one
//! the variant puts it in. Acceptance is 0 children lost in 10 runs of 200 forks per
//! variant, which `CGMALLOC_SOAK=1` runs; the default run makes one run of 200 forks
//! (`repro`: 100) per variant.
//!
//! The library and the launcher are built by `cargo build --release` before the tests.

use crate::support::programs::{
    self, build_program, linked, preloaded, run, soak, tail, without_cgmalloc_vars, Mode, Run,
    Scratch, CFLAGS, ROOT,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Time limit of one run (children that hang are killed by the program after 20 s).
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// The acceptance: runs of `FORKS` forks per variant (under `CGMALLOC_SOAK=1`).
const SOAK_RUNS: usize = 10;
const FORKS: u64 = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Program {
    Repro,
    Storm,
}

#[derive(Clone, Copy, Debug)]
struct Variant {
    program: Program,
    mode: Mode,
    /// Threads in their groups, or all in the root.
    groups: bool,
    trim: bool,
}

impl Variant {
    fn name(&self) -> String {
        format!(
            "{} {} {} {}",
            match self.program {
                Program::Repro => "repro",
                Program::Storm => "storm",
            },
            match self.mode {
                Mode::Linked => "linked",
                Mode::Preloaded => "preloaded",
            },
            if self.groups { "groups" } else { "root" },
            if self.trim { "trim" } else { "no-trim" }
        )
    }

    /// `(runs, forks per run)`.
    fn plan(&self) -> (usize, u64) {
        if soak() {
            (SOAK_RUNS, FORKS)
        } else if self.program == Program::Repro {
            // Its 4 workers never yield: on 2 cores a fork takes 20-40 ms.
            (1, FORKS / 2)
        } else {
            (1, FORKS)
        }
    }

    /// The `NAME=PATH` words the program must report: where each thread ended.
    fn expected_groups(&self) -> Vec<String> {
        let at = |path: &str| {
            if self.groups {
                path.to_owned()
            } else {
                "/".into()
            }
        };
        match self.program {
            Program::Repro => (0..4).map(|i| format!("worker-{i}={}", at("/w"))).collect(),
            Program::Storm => (0..4)
                .map(|i| format!("alloc-{i}={}", at(&format!("/s{i}"))))
                .chain(["forker-0=/".to_owned(), format!("forker-1={}", at("/s1"))])
                .collect(),
        }
    }

    fn command(&self, exe: &Path, forks: u64) -> Command {
        let mut args = vec![match self.program {
            Program::Repro => "repro".to_owned(),
            Program::Storm => "storm".to_owned(),
        }];
        if self.trim {
            args.push("trim".into());
        }
        if self.groups && self.mode == Mode::Linked {
            args.push("attach".into());
        }
        args.push(format!("forks={forks}"));
        match (self.mode, self.program) {
            (Mode::Linked, _) => {
                let mut c = linked(without_cgmalloc_vars(Command::new(exe)));
                c.args(&args);
                c
            }
            (Mode::Preloaded, Program::Repro) => {
                // The launcher preloads the library itself.
                let launcher = Path::new(ROOT).join("target/release/cgmalloc");
                assert!(
                    launcher.is_file(),
                    "{} is missing: run `cargo build --release`",
                    launcher.display()
                );
                programs::library();
                let mut c = programs::plain(without_cgmalloc_vars(Command::new(launcher)));
                c.arg("run");
                if self.groups {
                    c.args(["--group", "/w:max=1G", "--thread", "worker-*=/w"]);
                }
                c.arg("--").arg(exe).args(&args);
                c
            }
            (Mode::Preloaded, Program::Storm) => {
                let mut c = preloaded(without_cgmalloc_vars(Command::new(exe)));
                if self.groups {
                    c.env(
                        "CGMALLOC_GROUPS",
                        "/s0:max=1G;/s1:max=1G;/s2:max=1G;/s3:max=1G",
                    )
                    .env(
                        "CGMALLOC_THREADS",
                        "alloc-0=/s0;alloc-1=/s1;alloc-2=/s2;alloc-3=/s3;forker-1=/s1",
                    );
                }
                c.args(&args);
                c
            }
        }
    }
}

fn build(dir: &Path, mode: Mode) -> PathBuf {
    build_program(dir, "fork_storm", mode, &CFLAGS)
}

/// What is wrong with one run of `v` (nothing when it lost no child).
fn check(v: &Variant, r: &Run, forks: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let line = r
        .stdout()
        .lines()
        .find(|l| l.contains(" forks, "))
        .unwrap_or("");
    // "MODE trim=T: F forks, D children died, X failed, H hung; groups: NAME=PATH ..."
    let (counts, groups) = line.split_once("; groups:").unwrap_or(("", ""));
    let number = |what: &str| -> Option<u64> {
        let words: Vec<&str> = counts.split_whitespace().collect();
        let at = words.iter().position(|w| w.trim_end_matches(',') == what)?;
        words.get(at.checked_sub(1)?)?.parse().ok()
    };
    if line.is_empty() {
        problems.push("no summary line".into());
    }
    if number("forks") != Some(forks) {
        problems.push(format!("{:?} forks, expected {forks}", number("forks")));
    }
    let died = number("children").unwrap_or(u64::MAX);
    if died != 0 {
        problems.push(format!(
            "{died} of {forks} children died (killed by a signal)"
        ));
    }
    for what in ["failed", "hung"] {
        if number(what) != Some(0) {
            problems.push(format!("children {what}: {:?}", number(what)));
        }
    }
    let got: Vec<&str> = groups.split_whitespace().collect();
    let want = v.expected_groups();
    if got != want {
        problems.push(format!(
            "the threads were not in the variant's groups: got {got:?}, want {want:?}"
        ));
    }
    if !r.status.success() {
        problems.push(format!("the program ended with {:?}", r.status));
    }
    problems.extend(programs::cgmalloc_lines_problem(&r.stderr));
    if !problems.is_empty() {
        problems.push(format!(
            "--- stdout ---\n{}\n--- stderr (end) ---\n{}",
            tail(r.stdout(), 2000),
            tail(&r.stderr, 1500)
        ));
    }
    problems
}

fn variant(program: Program, mode: Mode, groups: bool, trim: bool) {
    let v = Variant {
        program,
        mode,
        groups,
        trim,
    };
    let name = v.name();
    let dir = Scratch::new(&name.replace(' ', "-"));
    let exe = build(&dir, mode);
    let (runs, forks) = v.plan();
    let start = Instant::now();
    let mut failed = Vec::new();
    for i in 0..runs {
        let r = run(&mut v.command(&exe, forks), None, RUN_TIMEOUT);
        let problems = check(&v, &r, forks);
        eprintln!(
            "fork_storm {name}: run {}/{runs}: {} ({:.1?})",
            i + 1,
            r.stdout().lines().last().unwrap_or("no output"),
            r.elapsed
        );
        if !problems.is_empty() {
            failed.push(format!("run {}: {}", i + 1, problems.join("\n  ")));
        }
    }
    eprintln!(
        "fork_storm {name}: {runs} runs of {forks} forks, {} failed, {:.1?}",
        failed.len(),
        start.elapsed()
    );
    assert!(
        failed.is_empty(),
        "fork_storm {name}: {} of {runs} runs lost children:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The reproducer.

#[test]
fn repro_preloaded_groups() {
    variant(Program::Repro, Mode::Preloaded, true, false);
}

#[test]
fn repro_preloaded_groups_trim() {
    variant(Program::Repro, Mode::Preloaded, true, true);
}

#[test]
fn repro_linked_groups() {
    variant(Program::Repro, Mode::Linked, true, false);
}

#[test]
fn repro_linked_groups_trim() {
    variant(Program::Repro, Mode::Linked, true, true);
}

#[test]
fn repro_preloaded_root() {
    variant(Program::Repro, Mode::Preloaded, false, false);
}

#[test]
fn repro_preloaded_root_trim() {
    variant(Program::Repro, Mode::Preloaded, false, true);
}

#[test]
fn repro_linked_root() {
    variant(Program::Repro, Mode::Linked, false, false);
}

#[test]
fn repro_linked_root_trim() {
    variant(Program::Repro, Mode::Linked, false, true);
}

// ---------------------------------------------------------------------------------------
// Two forking threads, four allocating threads in four groups.

#[test]
fn storm_preloaded_groups() {
    variant(Program::Storm, Mode::Preloaded, true, false);
}

#[test]
fn storm_preloaded_groups_trim() {
    variant(Program::Storm, Mode::Preloaded, true, true);
}

#[test]
fn storm_linked_groups() {
    variant(Program::Storm, Mode::Linked, true, false);
}

#[test]
fn storm_linked_groups_trim() {
    variant(Program::Storm, Mode::Linked, true, true);
}

#[test]
fn storm_preloaded_root() {
    variant(Program::Storm, Mode::Preloaded, false, false);
}

#[test]
fn storm_preloaded_root_trim() {
    variant(Program::Storm, Mode::Preloaded, false, true);
}

#[test]
fn storm_linked_root() {
    variant(Program::Storm, Mode::Linked, false, false);
}

#[test]
fn storm_linked_root_trim() {
    variant(Program::Storm, Mode::Linked, false, true);
}
