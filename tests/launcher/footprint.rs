//! `memory.max` bounds what the process really holds, and `memory.current` is what it
//! holds: a page is charged from its first use until it goes back to the OS.
//!
//! `tests/c/phases.c` allocates a total in blocks of one size (every byte written), frees
//! them, and goes on with the next size, from 1, 2 or 4 threads; it prints its RSS at
//! start, its RSS and the root's `memory.current` at every quiescent point, and `VmHWM`
//! at the end. Freed memory of one phase must not stay resident, uncharged, while the
//! next phase allocates.

use super::cli::{launcher, library};
use crate::support::programs::{self, Run, Scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);
const MIB: i64 = 1 << 20;

fn build(dir: &Path, name: &str) -> PathBuf {
    let src = format!("{}/tests/c/{name}.c", env!("CARGO_MANIFEST_DIR"));
    programs::compile_c(
        "cc",
        dir,
        &src,
        name,
        &["-O2", "-Wall"],
        &["-ldl", "-lpthread"],
    )
}

/// `key=value` fields of the first line starting with `tag`.
fn fields<'a>(line: &'a str, tag: &str) -> Option<Vec<(&'a str, i64)>> {
    let rest = line.strip_prefix(tag)?.strip_prefix(' ')?;
    Some(
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
            .collect(),
    )
}

fn get(f: &[(&str, i64)], key: &str) -> i64 {
    f.iter().find(|(k, _)| *k == key).unwrap().1
}

struct Phases {
    base_kib: i64,
    hwm_kib: i64,
    failed: i64,
    /// `(rss KiB, memory.current bytes)` at each quiescent point.
    points: Vec<(i64, i64)>,
}

fn parse(run: &Run) -> Phases {
    run.assert_success("phases");
    let out = run.stdout();
    let mut p = Phases {
        base_kib: -1,
        hwm_kib: -1,
        failed: -1,
        points: Vec::new(),
    };
    for line in out.lines() {
        if let Some(f) = fields(line, "base") {
            p.base_kib = get(&f, "rss");
        } else if let Some(f) = fields(line, "point") {
            p.points.push((get(&f, "rss"), get(&f, "current")));
        } else if let Some(f) = fields(line, "end") {
            p.hwm_kib = get(&f, "hwm");
            p.failed = get(&f, "failed");
        }
    }
    assert!(p.base_kib > 0 && p.hwm_kib > 0, "{}", run.describe());
    p
}

/// Where the limit is: the root's `max` (`--max`), or a child group's the program's
/// threads are attached to.
#[derive(Clone, Copy, Debug)]
enum Limit {
    Root,
    Child,
}

/// Bound 2: under `cgmalloc run --max M` (or a child group with `max=M` the program runs
/// in), `VmHWM − start-up RSS ≤ M + 4 MiB + 2% of M`.
fn max_bounds_the_process(max_mib: i64, per_phase_mib: i64, threads: u32) {
    max_bounds(Limit::Root, max_mib, per_phase_mib, threads);
}

fn max_bounds(limit: Limit, max_mib: i64, per_phase_mib: i64, threads: u32) {
    let dir = Scratch::new(&format!("footprint-max{max_mib}-t{threads}-{limit:?}"));
    let exe = build(&dir, "phases");
    let mut cmd = launcher(["run"]);
    match limit {
        Limit::Root => cmd.args(["--max", &format!("{max_mib}M")]),
        Limit::Child => cmd.args([
            "--group",
            &format!("/app:max={max_mib}M"),
            "--attach",
            "/app",
        ]),
    };
    cmd.arg("--")
        .arg(&exe)
        .args([per_phase_mib.to_string(), threads.to_string()]);
    let run = programs::run(&mut cmd, None, TIMEOUT);
    let p = parse(&run);
    let max = max_mib * MIB;
    let grown = (p.hwm_kib - p.base_kib) * 1024;
    let bound = max + 4 * MIB + max / 50;
    println!(
        "{limit:?} max {max_mib}M, {threads} thread(s), {per_phase_mib} MiB a phase: VmHWM − start \
         {:.1} MiB (bound {:.1} MiB), {} blocks refused",
        grown as f64 / MIB as f64,
        bound as f64 / MIB as f64,
        p.failed
    );
    assert_eq!(
        p.failed,
        0,
        "every phase fits under the limit: {}",
        run.describe()
    );
    assert!(
        grown <= bound,
        "the process grew by {grown} bytes under --max {max_mib}M (bound {bound}): {}",
        run.describe()
    );
}

#[test]
fn max_256m_bounds_the_process_1_thread() {
    max_bounds_the_process(256, 160, 1);
}

#[test]
fn max_256m_bounds_the_process_2_threads() {
    max_bounds_the_process(256, 160, 2);
}

#[test]
fn max_256m_bounds_the_process_4_threads() {
    max_bounds_the_process(256, 160, 4);
}

#[test]
fn a_child_groups_max_64m_bounds_the_process_2_threads() {
    max_bounds(Limit::Child, 64, 40, 2);
}

#[test]
fn a_child_groups_max_256m_bounds_the_process_4_threads() {
    max_bounds(Limit::Child, 256, 160, 4);
}

#[test]
fn max_64m_bounds_the_process_1_thread() {
    max_bounds_the_process(64, 40, 1);
}

#[test]
fn max_64m_bounds_the_process_2_threads() {
    max_bounds_the_process(64, 40, 2);
}

#[test]
fn max_64m_bounds_the_process_4_threads() {
    max_bounds_the_process(64, 40, 4);
}

/// Bound 1: preloaded without a limit, at every quiescent point
/// `|RSS − start-up RSS − memory.current| ≤ 4 MiB + 2% of memory.current`.
fn charged_is_held(threads: u32) {
    let so = library();
    let dir = Scratch::new(&format!("footprint-held-t{threads}"));
    let exe = build(&dir, "phases");
    let mut cmd = programs::without_cgmalloc_vars(Command::new(&exe));
    cmd.env("LD_PRELOAD", &so)
        .args(["120".to_string(), threads.to_string()]);
    let run = programs::run(&mut cmd, None, TIMEOUT);
    let p = parse(&run);
    assert_eq!(p.points.len(), 12, "{}", run.describe());
    for &(rss, current) in &p.points {
        assert!(current >= 0, "no memory.current: {}", run.describe());
        let held = (rss - p.base_kib) * 1024;
        let off = (held - current).abs();
        let bound = 4 * MIB + current / 50;
        println!(
            "{threads} thread(s): held {:.1} MiB, charged {:.1} MiB, apart {:.2} MiB (bound {:.1})",
            held as f64 / MIB as f64,
            current as f64 / MIB as f64,
            off as f64 / MIB as f64,
            bound as f64 / MIB as f64
        );
        assert!(
            off <= bound,
            "RSS grew by {held} bytes, memory.current is {current}: {}",
            run.describe()
        );
    }
}

#[test]
fn charged_is_held_1_thread() {
    charged_is_held(1);
}

#[test]
fn charged_is_held_2_threads() {
    charged_is_held(2);
}

#[test]
fn charged_is_held_4_threads() {
    charged_is_held(4);
}

/// A few small blocks: at most 128 KiB charged at `main`, and a limit of 256 KiB lets
/// `/bin/true` run.
#[test]
fn little_is_charged_before_main() {
    let so = library();
    let dir = Scratch::new("footprint-main");
    let src = dir.join("few.c");
    std::fs::write(
        &src,
        r#"
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    void *p[4] = {malloc(10), malloc(100), malloc(1000), malloc(4000)};
    uint64_t (*root)(void) = (uint64_t (*)(void))dlsym(RTLD_DEFAULT, "cgm_root");
    int (*stat)(uint64_t, void *) = (int (*)(uint64_t, void *))dlsym(RTLD_DEFAULT, "cgm_group_stat");
    uint64_t st[32] = {0};
    if (!root || !stat || stat(root(), st) != 0 || !p[0] || !p[1] || !p[2] || !p[3])
        return 2;
    printf("current=%llu\n", (unsigned long long)st[0]);
    return 0;
}
"#,
    )
    .unwrap();
    let exe = programs::compile_c("cc", &dir, &src, "few", &["-O2", "-Wall"], &["-ldl"]);
    let mut cmd = programs::without_cgmalloc_vars(Command::new(&exe));
    cmd.env("LD_PRELOAD", &so);
    let run = programs::run(&mut cmd, None, TIMEOUT);
    run.assert_success("few");
    let current: u64 = run
        .stdout()
        .trim()
        .strip_prefix("current=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{}", run.describe()));
    println!("charged at main: {current} bytes");
    assert!(current <= 128 << 10, "{current} bytes charged at main");

    let mut cmd = programs::without_cgmalloc_vars(Command::new("/bin/true"));
    cmd.env("LD_PRELOAD", &so).env("CGMALLOC_MAX", "256K");
    programs::run(&mut cmd, None, TIMEOUT).assert_success("/bin/true under CGMALLOC_MAX=256K");
}

/// A program that needs more than a small limit gets NULL, and its peak never passes the
/// limit.
#[test]
fn a_small_limit_refuses_and_holds() {
    let so = library();
    let dir = Scratch::new("footprint-small");
    let src = dir.join("needy.c");
    std::fs::write(
        &src,
        r#"
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    int got = 0, refused = 0;
    for (int i = 0; i < 1024; i++) {
        char *p = malloc(1024);
        if (!p) { refused++; continue; }
        p[0] = 1;
        got++;
    }
    uint64_t (*root)(void) = (uint64_t (*)(void))dlsym(RTLD_DEFAULT, "cgm_root");
    int (*stat)(uint64_t, uint64_t *) = (int (*)(uint64_t, uint64_t *))dlsym(RTLD_DEFAULT, "cgm_group_stat");
    uint64_t st[32] = {0};
    if (!root || !stat || stat(root(), st) != 0)
        return 2;
    printf("got=%d refused=%d peak=%llu max=%llu\n", got, refused, (unsigned long long)st[1],
           (unsigned long long)st[2]);
    return 0;
}
"#,
    )
    .unwrap();
    let exe = programs::compile_c("cc", &dir, &src, "needy", &["-O2", "-Wall"], &["-ldl"]);
    let mut cmd = programs::without_cgmalloc_vars(Command::new(&exe));
    cmd.env("LD_PRELOAD", &so).env("CGMALLOC_MAX", "256K");
    let run = programs::run(&mut cmd, None, TIMEOUT);
    run.assert_success("needy");
    let kv: Vec<(&str, u64)> = run
        .stdout()
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect();
    let v = |k: &str| kv.iter().find(|(x, _)| *x == k).unwrap().1;
    println!("{}", run.stdout().trim());
    assert!(v("refused") > 0, "1 MiB fit in 256 KiB: {}", run.describe());
    assert!(v("got") > 0, "nothing fit in 256 KiB: {}", run.describe());
    assert_eq!(v("max"), 256 << 10);
    assert!(
        v("peak") <= v("max"),
        "memory.peak above memory.max: {}",
        run.describe()
    );
}
