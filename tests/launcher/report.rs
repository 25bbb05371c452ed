//! `cgmalloc run --stats`: one report for the whole run, however many processes COMMAND
//! starts. The README's command through a wrapper that starts eleven processes before it
//! execs Python (as a version manager's shim does); `make -j2` of a small project in text
//! and JSON; a process that closes every descriptor it inherited; a process that hits a
//! limit; `N%` without a container limit (a fixture tree with no limit and its own
//! `meminfo`).

use crate::cli::launcher;
use crate::support::programs::{self, need, Run, Scratch};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

fn run(mut cmd: Command) -> Run {
    programs::run(&mut cmd, None, TIMEOUT)
}

/// The Python interpreter itself (not a version manager's shim, which would add its own
/// processes to every run).
fn python() -> PathBuf {
    let shim = need("python3");
    let out = programs::plain(Command::new(shim))
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    assert!(out.status.success());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The report's lines on stderr: `cgmalloc: report of` once, the summary rows (pid,
/// command, root peak, exit, events) up to the first blank line.
fn summary(stderr: &str) -> Vec<Vec<String>> {
    let starts = stderr
        .lines()
        .filter(|l| l.starts_with("cgmalloc: report of"))
        .count();
    assert_eq!(starts, 1, "not one report:\n{stderr}");
    stderr
        .lines()
        .skip_while(|l| !l.starts_with("cgmalloc: report of"))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The `groups at exit` titles of the report.
fn tables(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("cgmalloc: pid ") && l.ends_with("groups at exit"))
        .collect()
}

/// The README's first command, through a wrapper that runs ten Python processes of 2 MiB
/// and three tiny ones before it execs Python: exactly one report, one summary line per
/// Python process, the tiny ones folded, and the full table of the exec'd Python only.
#[test]
fn one_report_for_a_wrapper_that_forks_before_it_execs() {
    let dir = Scratch::new("report-wrapper");
    let py = python();
    let wrapper = dir.join("python3");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             for i in 1 2 3 4 5 6 7 8 9 10; do {py} -c 'x = bytearray(2 << 20)'; done\n\
             /bin/true; /bin/true; /bin/true\n\
             exec {py} \"$@\"\n",
            py = py.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut cmd = launcher([
        "run",
        "--max",
        "256M",
        "--group",
        "/etl:max=64M",
        "--stats",
        "--",
    ]);
    cmd.arg(&wrapper)
        .args(["-c", "print(len(bytearray(100 << 20)))"]);
    let r = run(cmd);
    r.assert_code(0, "the README command");
    assert_eq!(r.stdout(), "104857600\n");
    let rows = summary(&r.stderr);
    let main: Vec<_> = rows
        .iter()
        .filter(|r| r.last().unwrap() == "(COMMAND)")
        .collect();
    assert_eq!(main.len(), 1, "{}", r.stderr);
    assert!(main[0][1].starts_with("python"), "{:?}", main[0]);
    let others = rows.iter().filter(|r| r.last().unwrap() != "(COMMAND)");
    assert_eq!(
        others.filter(|r| r[1].starts_with("python")).count(),
        10,
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("and 3 more, each under 1 MiB with no events: true ×3"),
        "{}",
        r.stderr
    );
    let t = tables(&r.stderr);
    assert_eq!(t.len(), 1, "{}", r.stderr);
    assert!(
        t[0].starts_with(&format!("cgmalloc: pid {} (python", main[0][0])),
        "{t:?}"
    );
    assert!(t[0].contains(", COMMAND"), "{t:?}");
    // The table has the root and /etl; the root's max is --max.
    let table: Vec<&str> = r
        .stderr
        .lines()
        .skip_while(|l| !l.ends_with("groups at exit"))
        .skip(2)
        .collect();
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("/ ") && l.contains(" 256M ")),
        "{table:?}"
    );
    assert!(table.iter().any(|l| l.starts_with("/etl ")), "{table:?}");
}

/// A small project built with `make -j2`: one report in text; in JSON (`--stats=FILE.json`)
/// one object whose processes include the compilers, with `make` as COMMAND.
#[test]
fn one_report_for_a_parallel_build() {
    need("make");
    need("cc");
    let dir = Scratch::new("report-make");
    for i in 0..4 {
        std::fs::write(
            dir.join(format!("f{i}.c")),
            format!("int f{i}(int x) {{ return x * {i} + 1; }}\n"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("main.c"),
        "int f0(int);int f1(int);int f2(int);int f3(int);\n\
         int main(void) { return f0(1) + f1(1) + f2(1) + f3(1) - 10; }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("Makefile"),
        "prog: main.o f0.o f1.o f2.o f3.o\n\tcc -o $@ $^\n\
         %.o: %.c\n\tcc -O1 -c $< -o $@\n\
         clean:\n\trm -f prog *.o\n",
    )
    .unwrap();
    let make = |stats: &str| {
        let mut cmd = launcher(["run", stats, "--", "make", "-j2"]);
        cmd.current_dir(&*dir);
        let r = run(cmd);
        r.assert_code(0, "make -j2");
        for f in ["prog", "main.o", "f0.o", "f1.o", "f2.o", "f3.o"] {
            std::fs::remove_file(dir.join(f)).unwrap();
        }
        r
    };
    let r = make("--stats");
    let rows = summary(&r.stderr);
    assert!(rows.len() >= 2, "{}", r.stderr);
    assert!(
        rows[0][1] == "make" && rows[0].last().unwrap() == "(COMMAND)",
        "{rows:?}"
    );
    assert_eq!(tables(&r.stderr).len(), 1, "{}", r.stderr);

    let r = make("--stats=build.json");
    assert!(!r.stderr.contains("cgmalloc: report"), "{}", r.stderr);
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("build.json")).unwrap())
        .expect("the JSON report parses");
    assert_eq!(v["exit"]["code"], 0);
    let procs = v["processes"].as_array().unwrap();
    let main: Vec<_> = procs.iter().filter(|p| p["main"] == true).collect();
    assert_eq!(main.len(), 1);
    assert_eq!(main[0]["comm"], "make");
    assert_eq!(main[0]["pid"], v["pid"]);
    let comms: Vec<&str> = procs.iter().filter_map(|p| p["comm"].as_str()).collect();
    assert!(
        comms
            .iter()
            .filter(|c| **c == "cc" || c.starts_with("cc1") || **c == "as")
            .count()
            >= 5,
        "{comms:?}"
    );
    for p in procs {
        assert!(p["groups"][0]["path"] == "/", "{p}");
    }
}

/// A process that closes every descriptor it inherited, stderr included, still reports:
/// the channel is a directory, not a descriptor.
#[test]
fn a_process_that_closes_every_descriptor_still_reports() {
    let dir = Scratch::new("report-closerange");
    let py = python();
    let script = format!(
        "{} -c 'import os; os.closerange(0, 4096); x = bytearray(3 << 20)'; echo done",
        py.display()
    );
    let mut cmd = launcher(["run", "--stats=r.json", "--", "sh", "-c", &script]);
    cmd.current_dir(&*dir);
    let r = run(cmd);
    r.assert_code(0, "closerange");
    assert_eq!(r.stdout(), "done\n");
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("r.json")).unwrap()).unwrap();
    let procs = v["processes"].as_array().unwrap();
    let closed = procs
        .iter()
        .find(|p| p["comm"].as_str().unwrap().starts_with("python"))
        .unwrap_or_else(|| panic!("no record of the Python process: {v:#}"));
    assert!(closed["root_peak"].as_u64().unwrap() >= 3 << 20, "{closed}");
    assert_eq!(closed["exit"]["code"], 0);
}

/// A process of the run that hits a limit gets its full table too, with its events and
/// exit status; the others stay one line.
#[test]
fn a_process_that_hits_a_limit_gets_its_table() {
    let dir = Scratch::new("report-limit");
    let src = dir.join("hog.c");
    std::fs::write(
        &src,
        "#include <stdlib.h>\n#include <stdio.h>\n\
         int main(void) {\n\
             for (int i = 0; i < 64; i++)\n\
                 if (!malloc(1 << 20)) { puts(\"refused\"); return 3; }\n\
             return 0;\n}\n",
    )
    .unwrap();
    let hog = programs::compile_c("cc", &dir, &src, "hog", &["-O1"], &[]);
    let script = format!("CGMALLOC_ATTACH=/small {} ; exec /bin/true", hog.display());
    let mut cmd = launcher([
        "run",
        "--group",
        "/small:max=8M",
        "--stats",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    cmd.current_dir(&*dir);
    let r = run(cmd);
    r.assert_code(0, "sh");
    assert_eq!(r.stdout(), "refused\n");
    let rows = summary(&r.stderr);
    let hog_row = rows
        .iter()
        .find(|r| r[1] == "hog")
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert_eq!(hog_row[3], "3", "{hog_row:?}");
    assert!(hog_row.iter().any(|c| c.starts_with("max=")), "{hog_row:?}");
    let t = tables(&r.stderr);
    assert_eq!(t.len(), 2, "{}", r.stderr);
    assert!(t.iter().any(|l| l.contains("(hog), hit a limit")), "{t:?}");
    assert!(t.iter().any(|l| l.contains(", COMMAND")), "{t:?}");
}

/// A cgroup v2 fixture with no limit and a `meminfo` of 8 GiB.
fn unlimited_fixture(dir: &Path) {
    std::fs::create_dir_all(dir.join("proc/self")).unwrap();
    std::fs::create_dir_all(dir.join("sys/fs/cgroup/app")).unwrap();
    std::fs::write(dir.join("proc/self/cgroup"), "0::/app\n").unwrap();
    std::fs::write(
        dir.join("proc/self/mountinfo"),
        "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
    )
    .unwrap();
    std::fs::write(dir.join("sys/fs/cgroup/app/memory.max"), "max\n").unwrap();
    std::fs::write(
        dir.join("proc/meminfo"),
        "MemTotal:        8388608 kB\nMemFree:         1024 kB\n",
    )
    .unwrap();
}

/// `--max 50%` with no container limit: half of `MemTotal`, and the report says which
/// base it used.
#[test]
fn percentages_without_a_container_limit_resolve_in_the_report() {
    let dir = Scratch::new("report-percent");
    unlimited_fixture(&dir.join("root"));
    let mut cmd = launcher(["run", "--max", "50%", "--stats=r.json", "--", "/bin/true"]);
    cmd.current_dir(&*dir)
        .env("CGMALLOC_CGROUP", dir.join("root"));
    run(cmd).assert_code(0, "true");
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(v["percent_base"]["kind"], "mem_total", "{v:#}");
    assert_eq!(v["percent_base"]["bytes"], 8u64 << 30);
    let main = &v["processes"][0];
    assert_eq!(main["main"], true);
    assert_eq!(main["groups"][0]["path"], "/");
    assert_eq!(main["groups"][0]["max"], 4u64 << 30);

    // `--stats=json`: the same object, on stderr.
    let mut cmd = launcher(["run", "--max", "50%", "--stats=json", "--", "/bin/true"]);
    cmd.env("CGMALLOC_CGROUP", dir.join("root"));
    let r = run(cmd);
    r.assert_code(0, "true");
    let w: Value = serde_json::from_str(&r.stderr).expect("JSON on stderr");
    assert_eq!(w["percent_base"], v["percent_base"]);
    assert_eq!(w["processes"][0]["groups"][0]["max"], 4u64 << 30);

    let mut cmd = launcher(["run", "--max", "50%", "--stats", "--", "/bin/true"]);
    cmd.env("CGMALLOC_CGROUP", dir.join("root"));
    let r = run(cmd);
    r.assert_code(0, "true");
    assert!(
        r.stderr.contains("N% is a share of mem_total (8.0G)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("/ ") && l.contains(" 4.0G ")),
        "{}",
        r.stderr
    );
}
