//! The launcher `cgmalloc run` from the outside (INTERFACE.md "The launcher"):
//!
//! - COMMAND's exit status is passed on, `128 + N` for death by signal N; `SIGTERM` and
//!   `SIGHUP` sent to the launcher reach COMMAND, `SIGINT` does not end the launcher,
//!   and COMMAND starts with no blocked signals;
//! - `libcgmalloc.so` goes first in `LD_PRELOAD`, ahead of an inherited preload (a tiny C
//!   library whose constructor prints a marker), never twice; `--lib` and
//!   `CGMALLOC_LIB` choose another library;
//! - every option becomes the right `CGMALLOC_*` variable, in both `--opt value` and
//!   `--opt=value` forms, repeated `--group` / `--thread` joined with `;`, `--stats=FILE`
//!   made absolute and truncated, inherited variables overridden or passed on;
//! - malformed invocations exit with the documented status (2 for usage errors and an
//!   unusable library, 126 / 127 for a command that cannot run or is missing), print one
//!   `cgmalloc:` line naming the problem, and never start COMMAND;
//! - `--help` documents every option and variable, `--version` prints the version;
//! - with the library reading its environment: `--stats` prints the group table, and
//!   `--max 64M` turns a Python program's growth into `MemoryError`.
//!
//! Uses `target/release/cgmalloc` and the `libcgmalloc.so` beside it, built by
//! `cargo build --release` (default features; the test binaries are built without them,
//! and so without the launcher). Needs `cc`, `nm`,
//! `sh` and `python3` on `PATH`; a missing one is a failure, not a skip. Every program
//! runs in its own process group under a time limit, and is killed (failing the test)
//! when it exceeds it.

use crate::support::programs::{self, kill_group, need, wait_or_kill_group, Run, Scratch};
use std::borrow::BorrowMut;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::Duration;

const LAUNCHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/cgmalloc");
/// Time limit for one launcher run.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit for the Python run, which allocates up to its limit.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// Helpers (and those of `support::programs`).

/// The absolute (canonical) path of `libcgmalloc.so` beside the launcher, which must
/// exist and export `malloc`: it is the path the launcher puts in `LD_PRELOAD`.
pub(crate) fn library() -> PathBuf {
    static CHECKED: OnceLock<PathBuf> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            assert!(
                Path::new(LAUNCHER).is_file(),
                "{LAUNCHER} is missing: run `cargo build --release` (default features) first"
            );
            let exe = std::fs::canonicalize(LAUNCHER).unwrap();
            let so = exe.parent().unwrap().join("libcgmalloc.so");
            programs::check_library(&so);
            so
        })
        .clone()
}

/// `cgmalloc ARGS...` with a clean environment: no `LD_PRELOAD` and no `CGMALLOC_*`
/// variables inherited from whoever runs the tests. The library is checked first.
pub(crate) fn launcher<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    library();
    let mut cmd = programs::plain(programs::without_cgmalloc_vars(Command::new(LAUNCHER)));
    cmd.args(args);
    cmd
}

/// Runs `cmd` in its own process group with no stdin, collecting its output; kills the
/// group and fails if it has not finished within `TIMEOUT`.
fn run(mut cmd: impl BorrowMut<Command>) -> Run {
    programs::run(cmd.borrow_mut(), None, TIMEOUT)
}

/// A launcher started in the background, for sending it signals: stdout lines arrive on
/// a channel.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    desc: String,
}

impl Background {
    /// `cgmalloc run -- sh -c "echo ready; SCRIPT"`, once COMMAND has printed `ready`.
    fn ready(script: &str) -> Background {
        let script = format!("echo ready; {script}");
        let mut bg = Background::start(launcher(["run", "--", "sh", "-c", &script]));
        bg.wait_for_line("ready");
        bg
    }

    fn start(mut cmd: Command) -> Background {
        let desc = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background { child, lines, desc }
    }

    /// Waits for COMMAND to print `want` (it is running and the launcher is waiting).
    fn wait_for_line(&mut self, want: &str) {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) if line == want => {}
            other => {
                kill_group(&self.child);
                panic!("{}: expected {want:?} on stdout, got {other:?}", self.desc);
            }
        }
    }

    /// Sends `signal` to the launcher alone.
    fn signal_launcher(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child process, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Sends `signal` to the launcher's whole process group, as a terminal would.
    fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: signalling the process group this test created.
        unsafe { libc::kill(-(self.child.id() as i32), signal) };
    }

    fn finish(mut self) -> ExitStatus {
        let status = wait_or_kill_group(&mut self.child, TIMEOUT)
            .unwrap_or_else(|| panic!("{} hung: killed after {TIMEOUT:?}", self.desc));
        kill_group(&self.child);
        status
    }
}

/// Compiles the C source `code` into a shared library `<dir>/<name>`.
fn compile_shared(dir: &Path, name: &str, code: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, code).unwrap();
    let flags = ["-shared", "-fPIC", "-O1", "-Wall"];
    programs::compile_c("cc", dir, &src, name, &flags, &[])
}

/// A shared library whose constructor prints `tiny-marker <pid>` to stderr.
fn tiny_library(dir: &Path) -> PathBuf {
    compile_shared(
        dir,
        "libtiny.so",
        r#"#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void tiny_init(void) {
    dprintf(2, "tiny-marker %d\n", (int)getpid());
}
"#,
    )
}

/// `env`'s output as a map.
fn parse_env(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn lib_str() -> String {
    library().to_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------
// 1. Exit status.

#[test]
fn exit_status_is_the_commands() {
    run(launcher(["run", "--", "sh", "-c", "exit 7"])).assert_code(7, "sh -c 'exit 7'");
    run(launcher(["run", "--", "true"])).assert_code(0, "true");
    run(launcher(["run", "--", "false"])).assert_code(1, "false");
    // Lenient: no `--` before a COMMAND that does not start with `-`.
    run(launcher(["run", "--max", "1G", "sh", "-c", "exit 42"])).assert_code(42, "without `--`");
    // Arguments after COMMAND that look like options belong to COMMAND.
    let r = run(launcher([
        "run",
        "--",
        "sh",
        "-c",
        "echo \"$1\"",
        "sh",
        "--max",
    ]));
    r.assert_code(0, "COMMAND's own options");
    assert_eq!(r.stdout(), "--max\n", "{}", r.describe());
}

// ---------------------------------------------------------------------------------------
// 2. Signals.

#[test]
fn death_by_signal_is_128_plus_n() {
    run(launcher(["run", "--", "sh", "-c", "kill -TERM $$"])).assert_code(143, "SIGTERM");
    run(launcher(["run", "--", "sh", "-c", "kill -KILL $$"])).assert_code(137, "SIGKILL");
    run(launcher(["run", "--", "sh", "-c", "kill -SEGV $$"])).assert_code(139, "SIGSEGV");
}

#[test]
fn sigterm_and_sighup_are_forwarded_to_the_command() {
    for (signal, want) in [(libc::SIGTERM, 143), (libc::SIGHUP, 129)] {
        let bg = Background::ready("exec sleep 60");
        bg.signal_launcher(signal);
        let status = bg.finish();
        assert_eq!(
            status.code(),
            Some(want),
            "signal {signal} to the launcher: {status:?} (the launcher must forward it and \
             exit 128+N when COMMAND dies of it)"
        );
    }
}

#[test]
fn sigint_and_sigquit_do_not_end_the_launcher() {
    // Sent to the launcher alone: it ignores them and still reports COMMAND's status.
    let bg = Background::ready("sleep 1; exit 5");
    bg.signal_launcher(libc::SIGINT);
    bg.signal_launcher(libc::SIGQUIT);
    let status = bg.finish();
    assert_eq!(status.code(), Some(5), "{status:?}");

    // Sent to the whole group, as by a terminal: COMMAND (which does not inherit the
    // launcher's ignoring) dies of it, and the launcher reports 128+2.
    let bg = Background::ready("exec sleep 60");
    bg.signal_group(libc::SIGINT);
    let status = bg.finish();
    assert_eq!(status.code(), Some(130), "{status:?}");
}

#[test]
fn command_starts_with_no_blocked_signals() {
    let r = run(launcher([
        "run",
        "--",
        "grep",
        "^SigBlk",
        "/proc/self/status",
    ]));
    r.assert_code(0, "grep SigBlk");
    let mask = r.stdout().trim().strip_prefix("SigBlk:").unwrap().trim();
    assert!(
        mask.chars().all(|c| c == '0'),
        "COMMAND starts with blocked signals: {}",
        r.describe()
    );
}

// ---------------------------------------------------------------------------------------
// 3. LD_PRELOAD.

/// Prints `$LD_PRELOAD`, the shell's pid and the shell's memory map.
const SHOW_PRELOAD: &str = r#"printf '%s\n' "$LD_PRELOAD"; echo $$; cat /proc/$$/maps"#;

#[test]
fn library_goes_first_in_ld_preload() {
    let dir = Scratch::new("preload-chain");
    let tiny = tiny_library(&dir);
    let lib = lib_str();
    let tiny_s = tiny.to_str().unwrap();
    let r = run(launcher(["run", "--", "sh", "-c", SHOW_PRELOAD]).env("LD_PRELOAD", &tiny));
    r.assert_code(0, "sh with an inherited preload");
    let mut lines = r.stdout().lines();
    assert_eq!(
        lines.next(),
        Some(&*format!("{lib}:{tiny_s}")),
        "{}",
        r.describe()
    );
    let pid = lines.next().unwrap();
    let maps: String = lines.collect::<Vec<_>>().join("\n");
    assert!(
        maps.contains(&lib),
        "libcgmalloc.so is not mapped in COMMAND"
    );
    assert!(
        maps.contains(tiny_s),
        "the inherited preload is not mapped in COMMAND"
    );
    assert!(
        r.stderr.contains(&format!("tiny-marker {pid}\n")),
        "the inherited preload's constructor did not run in COMMAND: {}",
        r.describe()
    );

    // Already first: not added again; empty: just the library.
    for (inherited, want) in [
        (format!("{lib}:{tiny_s}"), format!("{lib}:{tiny_s}")),
        (lib.clone(), lib.clone()),
        (String::new(), lib.clone()),
    ] {
        let r =
            run(launcher(["run", "--", "sh", "-c", SHOW_PRELOAD]).env("LD_PRELOAD", &inherited));
        r.assert_code(0, "sh");
        assert_eq!(
            r.stdout().lines().next(),
            Some(&*want),
            "inherited LD_PRELOAD={inherited:?}: {}",
            r.describe()
        );
    }
    // Unset.
    let r = run(launcher(["run", "--", "sh", "-c", SHOW_PRELOAD]));
    assert_eq!(r.stdout().lines().next(), Some(&*lib), "{}", r.describe());
}

#[test]
fn lib_option_and_cgmalloc_lib_choose_the_library() {
    let dir = Scratch::new("lib-choice");
    let tiny = tiny_library(&dir);
    let tiny_s = tiny.to_str().unwrap();
    // `--lib` relative to the current directory, made absolute.
    let r = run(
        launcher(["run", "--lib", "libtiny.so", "--", "sh", "-c", SHOW_PRELOAD]).current_dir(&*dir),
    );
    r.assert_code(0, "--lib");
    assert_eq!(r.stdout().lines().next(), Some(tiny_s), "{}", r.describe());
    // `CGMALLOC_LIB`, and `--lib` overriding it.
    let r = run(launcher(["run", "--", "sh", "-c", SHOW_PRELOAD]).env("CGMALLOC_LIB", &tiny));
    r.assert_code(0, "CGMALLOC_LIB");
    assert_eq!(r.stdout().lines().next(), Some(tiny_s), "{}", r.describe());
    let r = run(
        launcher(["run", "--lib=/nonexistent/lib.so", "--", "true"]).env("CGMALLOC_LIB", &tiny)
    );
    r.assert_code(2, "--lib overrides CGMALLOC_LIB");
}

// ---------------------------------------------------------------------------------------
// 4. Options to environment variables.

#[test]
fn every_option_becomes_its_variable() {
    let dir = Scratch::new("env-mapping");
    std::fs::write(dir.join("stats.txt"), "old contents\n").unwrap();
    let r = run(launcher([
        "run",
        "--max=256M",
        "--high",
        "200M",
        "--low=1M",
        "--min",
        "512k",
        "--group",
        "/a:max=1M,oom=abort",
        "--group=/a/b:high=50%,soft_limit=max",
        "--thread",
        "w-*=/a",
        "--thread=main=/",
        "--group",
        "/c",
        "--oom",
        "force",
        "--attach",
        "/a/b",
        "--stats=stats.txt",
        "--no-cgroup",
        "--",
        "env",
    ])
    .current_dir(&*dir)
    .env("CGMALLOC_MAX", "1G")
    .env("CGMALLOC_OOM", "fail")
    .env("UNRELATED_VARIABLE", "kept"));
    r.assert_code(0, "env");
    let env = parse_env(r.stdout());
    let stats = dir.join("stats.txt");
    let want = [
        ("CGMALLOC_MAX", "256M"),
        ("CGMALLOC_HIGH", "200M"),
        ("CGMALLOC_LOW", "1M"),
        ("CGMALLOC_MIN", "512k"),
        (
            "CGMALLOC_GROUPS",
            "/a:max=1M,oom=abort;/a/b:high=50%,soft_limit=max;/c",
        ),
        ("CGMALLOC_THREADS", "w-*=/a;main=/"),
        ("CGMALLOC_OOM", "force"),
        ("CGMALLOC_ATTACH", "/a/b"),
        ("CGMALLOC_CGROUP", "off"),
        ("UNRELATED_VARIABLE", "kept"),
    ];
    for (key, value) in want {
        assert_eq!(
            env.get(key).map(String::as_str),
            Some(value),
            "{key}: {}",
            r.describe()
        );
    }
    // `--stats`: the processes leave their records in a directory the launcher made,
    // not a table each (CGMALLOC_STATS unset); the report replaced the file's contents.
    let inbox = env.get("CGMALLOC_REPORT").expect("CGMALLOC_REPORT");
    assert!(inbox.starts_with('/'), "{inbox}");
    assert!(!Path::new(inbox).exists(), "{inbox} was left behind");
    assert_eq!(env.get("CGMALLOC_STATS"), None);
    let contents = std::fs::read_to_string(&stats).unwrap();
    assert!(
        !contents.contains("old contents"),
        "{stats:?} was not truncated"
    );
    assert!(
        contents.starts_with("cgmalloc: report of `env`"),
        "{contents}"
    );

    // `--stats` alone; variables no option sets are inherited unchanged, unset ones stay
    // unset.
    let r = run(launcher(["run", "--stats", "env"])
        .env("CGMALLOC_HIGH", "100M")
        .env("CGMALLOC_GROUPS", "/z:max=1M")
        .env("CGMALLOC_STATS", "stderr"));
    r.assert_code(0, "env");
    let env = parse_env(r.stdout());
    assert_eq!(env.get("CGMALLOC_STATS"), None, "one report for the run");
    assert!(env.contains_key("CGMALLOC_REPORT"));
    assert_eq!(env.get("CGMALLOC_HIGH").map(String::as_str), Some("100M"));
    assert_eq!(
        env.get("CGMALLOC_GROUPS").map(String::as_str),
        Some("/z:max=1M")
    );
    for absent in [
        "CGMALLOC_MAX",
        "CGMALLOC_THREADS",
        "CGMALLOC_OOM",
        "CGMALLOC_CGROUP",
    ] {
        assert!(
            !env.contains_key(absent),
            "{absent} is set: {}",
            r.describe()
        );
    }

    // The last of a repeated single-valued option wins; white space around sizes goes.
    let r = run(launcher(["run", "--max", "1G", "--max= 2G ", "--", "env"]));
    let env = parse_env(r.stdout());
    assert_eq!(
        env.get("CGMALLOC_MAX").map(String::as_str),
        Some("2G"),
        "{}",
        r.describe()
    );
}

// ---------------------------------------------------------------------------------------
// 5. Bad input.

/// `r` exited `code` after exactly one `cgmalloc:` line, which names every one of `words`.
#[track_caller]
fn assert_refused(r: &Run, code: i32, what: &str, words: &[&str]) {
    r.assert_code(code, what);
    let lines = r.cgmalloc_lines();
    assert_eq!(
        lines.len(),
        1,
        "{what}: want one cgmalloc: line: {}",
        r.describe()
    );
    for word in words {
        assert!(
            lines[0].contains(word),
            "{what}: {:?} lacks {word:?}",
            lines[0]
        );
    }
}

#[test]
fn bad_invocations_are_refused_before_anything_starts() {
    let dir = Scratch::new("bad-input");
    let marker = dir.join("started");
    let touch = format!("touch '{}'", marker.display());
    let not_executable = dir.join("not-executable");
    std::fs::write(&not_executable, format!("#!/bin/sh\n{touch}\n")).unwrap();
    let deep17 = "/a".repeat(17);
    let group17 = format!("{deep17}:max=1M");
    // (options before COMMAND, whether COMMAND follows, words the line names): exit 2.
    let cases: &[(&[&str], bool, &[&str])] = &[
        (&["--bogus"], true, &["unknown option", "--bogus"]),
        (&["--max"], true, &["--max", "needs a value"]),
        (&["--max", "12Q"], true, &["--max", "12Q"]),
        (&["--max=-5"], true, &["--max", "-5"]),
        (&["--high", "-5"], true, &["--high", "-5"]),
        (
            &["--low", "99999999999999999999T"],
            true,
            &["--low", "too large"],
        ),
        (&["--min=101%"], true, &["--min", "101%"]),
        (&["--max="], true, &["--max", "empty"]),
        (
            &["--group", "/a/../b:max=1M"],
            true,
            &["--group", "/a/../b"],
        ),
        (&["--group=/:max=1M"], true, &["--group", "root"]),
        (&["--group", "a:max=1M"], true, &["--group", "\"a\""]),
        (&["--group", &group17], true, &["--group", "16 deep"]),
        (&["--group", "/a:max"], true, &["--group", "KEY=VALUE"]),
        (&["--group", "/a:bogus=1"], true, &["--group", "bogus"]),
        (&["--group", "/a:max=12Q"], true, &["--group", "12Q"]),
        (&["--group", "/a:oom=maybe"], true, &["--group", "maybe"]),
        (&["--oom", "maybe"], true, &["--oom", "maybe"]),
        (&["--thread", "worker"], true, &["--thread", "GLOB=PATH"]),
        (&["--thread", "=/a"], true, &["--thread", "glob is empty"]),
        (&["--thread", "w=/a/../b"], true, &["--thread", "/a/../b"]),
        (&["--attach", "a/b"], true, &["--attach", "a/b"]),
        // A group no --group creates: the library would only warn and run in the root.
        (
            &["--attach", "/nope"],
            true,
            &["--attach", "/nope", "--group"],
        ),
        (
            &["--group", "/nop:max=1M", "--attach", "/no"],
            true,
            &["--attach", "/no"],
        ),
        (&["--no-cgroup=yes"], true, &["--no-cgroup", "no value"]),
        (&["--stats="], true, &["--stats", "file name"]),
        (&["--max", "1G"], false, &["no COMMAND"]),
        (
            &["--lib", "/nonexistent/libcgmalloc.so"],
            true,
            &["/nonexistent/libcgmalloc.so", "--lib", "CGMALLOC_LIB"],
        ),
        (
            &["--stats=/nonexistent/dir/stats.txt"],
            true,
            &["--stats", "/nonexistent/dir/stats.txt"],
        ),
    ];
    for &(options, with_command, words) in cases {
        let mut args = vec!["run"];
        args.extend(options);
        if with_command {
            args.extend(["--", "sh", "-c", &touch]);
        }
        let r = run(launcher(&args));
        let what = format!("cgmalloc {}", args.join(" "));
        assert_refused(&r, 2, &what, words);
        assert!(r.stdout().is_empty(), "{what}: {}", r.describe());
        assert!(!marker.exists(), "{what}: COMMAND was started");
    }
    // Usage errors point to --help.
    let r = run(launcher(["run", "--max", "12Q", "--", "true"]));
    assert!(r.stderr.contains("cgmalloc --help"), "{}", r.describe());

    // Outside `run`.
    for (args, words) in [
        (vec!["frobnicate"], vec!["unknown subcommand", "frobnicate"]),
        (vec!["--bogus"], vec!["unknown option", "--bogus"]),
        (vec!["run"], vec!["no COMMAND"]),
    ] {
        assert_refused(&run(launcher(&args)), 2, &format!("{args:?}"), &words);
    }

    // A command that is missing, or cannot be executed.
    for (command, code, words) in [
        (
            "/nonexistent/cmd",
            127,
            vec!["/nonexistent/cmd", "command not found"],
        ),
        (
            "no-such-command-cgmalloc-test",
            127,
            vec!["command not found"],
        ),
        (
            not_executable.to_str().unwrap(),
            126,
            vec!["cannot execute"],
        ),
        (dir.to_str().unwrap(), 126, vec!["cannot execute"]),
    ] {
        assert_refused(
            &run(launcher(["run", "--", command])),
            code,
            command,
            &words,
        );
    }
    assert!(!marker.exists(), "a command that cannot be executed ran");
}

// ---------------------------------------------------------------------------------------
// 6. Help and version.

#[test]
fn help_documents_every_option_and_variable() {
    let r = run(launcher(["--help"]));
    r.assert_code(0, "--help");
    for word in [
        "--max",
        "--high",
        "--low",
        "--min",
        "--group",
        "--thread",
        "--oom",
        "--attach",
        "--stats",
        "--no-cgroup",
        "--lib",
        "--version",
        "--help",
        "CGMALLOC_ATTACH",
        "CGMALLOC_MAX",
        "CGMALLOC_HIGH",
        "CGMALLOC_LOW",
        "CGMALLOC_MIN",
        "CGMALLOC_GROUPS",
        "CGMALLOC_THREADS",
        "CGMALLOC_OOM",
        "CGMALLOC_STATS",
        "CGMALLOC_CGROUP",
        "CGMALLOC_LIB",
        "LD_PRELOAD",
        "cgmalloc run",
    ] {
        assert!(r.stdout().contains(word), "--help does not mention {word}");
    }
    // Every option line has an example.
    let examples = r.stdout().matches("e.g.").count();
    assert!(examples >= 12, "only {examples} examples in --help");
    // `run --help` is the same text.
    let r2 = run(launcher(["run", "--help"]));
    r2.assert_code(0, "run --help");
    assert_eq!(r.stdout(), r2.stdout());
}

#[test]
fn version_and_usage() {
    let r = run(launcher(["--version"]));
    r.assert_code(0, "--version");
    assert_eq!(
        r.stdout(),
        format!("cgmalloc {}\n", env!("CARGO_PKG_VERSION"))
    );
    // No arguments: usage on stderr, exit 2.
    let r = run(&mut launcher::<[&str; 0], &str>([]));
    r.assert_code(2, "no arguments");
    assert!(r.stdout().is_empty(), "{}", r.describe());
    assert!(r.stderr.contains("cgmalloc run"), "{}", r.describe());
}

// ---------------------------------------------------------------------------------------
// 7. With the library reading its environment.

/// The group table in `text`: (column names, rows as words), after checking the header
/// line `cgmalloc: pid <N>` and the column line.
fn parse_table(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("cgmalloc: pid "));
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no `cgmalloc: pid <N>` line in:\n{text}"));
    let pid = header["cgmalloc: pid ".len()..]
        .split_whitespace()
        .next()
        .unwrap_or("");
    assert!(
        pid.parse::<u32>().is_ok(),
        "header {header:?} does not name a pid"
    );
    let columns_line = lines
        .next()
        .filter(|l| l.starts_with("group"))
        .unwrap_or_else(|| panic!("no column line starting with `group` in:\n{text}"));
    let columns: Vec<String> = columns_line
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    for word in ["current", "peak", "max", "high", "events"] {
        assert!(
            columns.iter().any(|c| c == word),
            "the column line {columns_line:?} lacks {word}"
        );
    }
    let rows = lines
        .take_while(|l| l.starts_with('/'))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    (columns, rows)
}

fn has_row(rows: &[Vec<String>], path: &str) -> bool {
    rows.iter()
        .any(|r| r.first().map(String::as_str) == Some(path))
}

#[test]
fn stats_prints_the_group_table() {
    let r = run(launcher(["run", "--stats", "--", "true"]));
    r.assert_code(0, "--stats true");
    let (_, rows) = parse_table(&r.stderr);
    assert!(
        r.stderr.lines().any(|l| l.starts_with("/ ")),
        "no root row: {}",
        r.describe()
    );
    assert!(has_row(&rows, "/"), "{}", r.describe());

    let dir = Scratch::new("stats-file");
    let file = dir.join("stats.txt");
    let r = run(launcher([
        "run",
        "--stats=stats.txt",
        "--group",
        "/a:max=1M",
        "--",
        "true",
    ])
    .current_dir(&*dir));
    r.assert_code(0, "--stats=FILE");
    assert!(
        !r.stderr.contains("cgmalloc: pid"),
        "the table went to stderr: {}",
        r.describe()
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let (_, rows) = parse_table(&text);
    assert!(has_row(&rows, "/"), "no root row in:\n{text}");
    assert!(has_row(&rows, "/a"), "no /a row in:\n{text}");
}

/// Programs that close their stderr before cgmalloc's exit handler runs (coreutils does,
/// in its own `atexit` handler) still print the table: it goes to a duplicate of fd 2
/// taken at start-up.
#[test]
fn stats_reach_programs_that_close_stderr() {
    let r = run(launcher(["run", "--stats", "--", "ls", "/"]));
    r.assert_code(0, "--stats ls /");
    assert!(has_row(&parse_table(&r.stderr).1, "/"), "{}", r.describe());
    let mut echo = programs::plain(programs::without_cgmalloc_vars(Command::new("/bin/echo")));
    echo.arg("ok")
        .env("LD_PRELOAD", library())
        .env("CGMALLOC_STATS", "stderr");
    let r = run(echo);
    r.assert_code(0, "CGMALLOC_STATS=stderr echo ok");
    assert_eq!(r.stdout(), "ok\n");
    assert!(has_row(&parse_table(&r.stderr).1, "/"), "{}", r.describe());
}

/// A program that closes every descriptor above 2 (the duplicate among them) and opens a
/// file that takes the duplicate's number: the table goes to fd 2, never into that file.
#[test]
fn stats_never_go_to_a_file_that_took_the_duplicates_number() {
    let dir = Scratch::new("stats-reused-fd");
    let src = dir.join("reuse.c");
    std::fs::write(
        &src,
        r#"#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    int taken = open("taken.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    printf("%d\n", taken);
    return taken < 0;
}
"#,
    )
    .unwrap();
    let exe = programs::compile_c("cc", &dir, &src, "reuse", &["-O1", "-Wall"], &[]);
    let mut cmd = launcher(["run", "--stats", "--"]);
    cmd.arg(&exe).current_dir(&*dir);
    let r = run(cmd);
    r.assert_code(0, "--stats reuse");
    assert_eq!(r.stdout().trim(), "3", "the file did not take fd 3");
    let taken = std::fs::read_to_string(dir.join("taken.txt")).unwrap();
    assert_eq!(taken, "", "the table went into the program's file");
    assert!(has_row(&parse_table(&r.stderr).1, "/"), "{}", r.describe());
}

/// A table cell in bytes: `123`, `812K`, `12.5M`, `3.0G`; `max` is `u64::MAX`.
fn cell_bytes(cell: &str) -> u64 {
    if cell == "max" {
        return u64::MAX;
    }
    let (num, unit) = match cell.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&cell[..i], c.to_ascii_uppercase()),
        _ => (cell, ' '),
    };
    let mult: f64 = match unit {
        ' ' => 1.0,
        'K' => 1024.0,
        'M' => 1024.0 * 1024.0,
        'G' => 1024.0 * 1024.0 * 1024.0,
        'T' => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => panic!("cell {cell:?} is not a size"),
    };
    let n: f64 = num
        .parse()
        .unwrap_or_else(|_| panic!("cell {cell:?} is not a size"));
    (n * mult) as u64
}

/// Tries to allocate 256 MiB, then grows a list of small objects until `MemoryError`; a
/// resident size past 512 MiB means the limit did not hold (exit 3 rather than eat the
/// machine).
const PYTHON_GROW: &str = r#"
import resource, sys
try:
    big = bytearray(256 << 20)
    print("not caught: 256 MiB allocated", flush=True)
    del big
except MemoryError:
    print("caught", flush=True)
keep = []
n = 0
try:
    while True:
        n = len(keep)
        keep.append([n, str(n)])
        if n % 50000 == 0 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 512 * 1024:
            print("runaway: no MemoryError below 512 MiB", flush=True)
            sys.exit(3)
except MemoryError:
    keep = None  # free everything first: a plain store allocates nothing
    print("caught2", n, flush=True)
"#;

/// The Python interpreter itself: `python3` on `PATH` may be a wrapper script (pyenv's
/// shims are bash scripts that start subprocesses), and every process that inherits
/// `CGMALLOC_STATS` appends its own table to the file.
fn real_python() -> PathBuf {
    let out = programs::plain(Command::new(need("python3")))
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 -c 'print(sys.executable)' failed"
    );
    let exe = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(exe.is_file(), "python3 names {exe:?} as its executable");
    exe
}

#[test]
fn a_limit_turns_python_growth_into_memory_error() {
    let dir = Scratch::new("python-limit");
    let python = real_python();
    let r = programs::run(
        launcher(["run", "--max", "64M", "--stats=stats.txt", "--"])
            .arg(&python)
            .args(["-c", PYTHON_GROW])
            .current_dir(&*dir)
            // Every Python object through malloc (not pymalloc's mmap'd arenas), so the
            // small objects are charged too.
            .env("PYTHONMALLOC", "malloc"),
        None,
        PYTHON_TIMEOUT,
    );
    r.assert_code(0, "python3 under --max 64M");
    let mut lines = r.stdout().lines();
    assert_eq!(lines.next(), Some("caught"), "{}", r.describe());
    let second = lines.next().unwrap_or("");
    assert!(second.starts_with("caught2 "), "{}", r.describe());
    let text = std::fs::read_to_string(dir.join("stats.txt")).unwrap();
    let (columns, rows) = parse_table(&text);
    let peak_col = columns.iter().position(|c| c == "peak").unwrap();
    let root = rows
        .iter()
        .find(|r| r.first().map(String::as_str) == Some("/"))
        .unwrap_or_else(|| panic!("no root row in:\n{text}"));
    let peak = cell_bytes(&root[peak_col]);
    assert!(
        peak <= (64 << 20) + (1 << 20),
        "root peak {peak} is past the 64 MiB limit:\n{text}"
    );
    assert!(
        peak >= 48 << 20,
        "root peak {peak} never came near the limit:\n{text}"
    );
}
