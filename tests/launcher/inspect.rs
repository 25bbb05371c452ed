//! `cgmalloc ps`, `stat`, `set` and `top` read and steer a running program's groups from
//! outside.
//!
//! `tests/c/watched.c` runs under `cgmalloc run` with groups, allocates on request, prints
//! the `memory.current` it reads of itself, then waits on stdin: what `stat` reads
//! meanwhile must be what the program read, and a limit `set` writes meanwhile applies
//! at its next allocation. Python programs (`PYTHONMALLOC=malloc`) are found and read the
//! same way; through `ctypes` they create and destroy groups for `top` to follow, and
//! fork a child whose table is its own, after closing every fd as a daemon does. `top`
//! runs on a terminal through `script`. Bad targets, bad values and an unknown layout
//! are refused with exit 2 and one line.

use super::cli::launcher;
use crate::support::programs::{self, Scratch};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
/// One stock: what a thread may hold charged beyond what it has allocated.
const STOCK: i64 = 32 * 4096;

fn build(dir: &Path, name: &str, link: bool) -> PathBuf {
    let src = format!("{}/tests/c/{name}.c", env!("CARGO_MANIFEST_DIR"));
    let include = format!("-I{}/include", env!("CARGO_MANIFEST_DIR"));
    let after = if link {
        programs::link_flags()
    } else {
        Vec::new()
    };
    programs::compile_c("cc", dir, &src, name, &["-O2", "-Wall", &include], &after)
}

/// A program started in the background with stdin and stdout piped.
struct Watched {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Watched {
    fn start(mut cmd: Command) -> Watched {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Watched {
            child,
            stdin,
            lines,
        }
    }

    /// Lines up to (not including) `ready`.
    fn until_ready(&self) -> Vec<String> {
        let mut got = Vec::new();
        loop {
            let l = self
                .lines
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no `ready` after {got:?}"));
            if l.starts_with("ready") {
                return got;
            }
            got.push(l);
        }
    }

    fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        writeln!(s, "{line}").unwrap();
        s.flush().unwrap();
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let st = self.child.wait().unwrap();
        assert!(st.success(), "the watched program ended with {st}");
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `current PATH BYTES` lines → path → bytes.
fn currents(lines: &[String]) -> BTreeMap<String, i64> {
    lines
        .iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("current")).then_some(())?;
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

fn pid_of(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("pid ").map(str::to_string))
        .expect("the program prints its pid")
}

/// `cgmalloc ARGS`: (exit code, stdout, stderr).
fn tool(args: &[&str]) -> (i32, String, String) {
    let out = launcher(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A refusal: exit 2 and one `cgmalloc:` line on stderr `err` that says `want`
/// (`what` names the run in a failure).
fn assert_one_line(code: i32, err: &str, want: &str, what: &str) {
    assert_eq!(code, 2, "{what}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("cgmalloc:")).collect();
    assert_eq!(lines.len(), 1, "{what}: {err}");
    assert!(lines[0].contains(want), "{what}: {err}");
}

/// `cgmalloc ARGS` is refused in one line that says `want`.
fn refused(args: &[&str], want: &str) {
    let (code, out, err) = tool(args);
    assert_one_line(code, &err, want, &format!("{args:?} (stdout {out:?})"));
}

/// A process that does not run cgmalloc (`sleep`), killed when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(
            programs::plain(Command::new("sleep"))
                .arg("30")
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stat_json(pid: &str) -> Vec<serde_json::Value> {
    let (code, out, err) = tool(&["stat", pid, "--json"]);
    assert_eq!(code, 0, "stat --json failed: {err}");
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap_or_else(|e| panic!("stat --json is not JSON ({e}):\n{out}"))
        .as_array()
        .expect("an array of groups")
        .clone()
}

fn group<'a>(groups: &'a [serde_json::Value], path: &str) -> &'a serde_json::Value {
    groups
        .iter()
        .find(|g| g["group"] == path)
        .unwrap_or_else(|| panic!("no group {path} in {groups:?}"))
}

#[test]
fn stat_reads_what_the_program_reads_of_itself() {
    let dir = Scratch::new("watched");
    let exe = build(&dir, "watched", true);
    let mut cmd = launcher([
        "run",
        "--max",
        "256M",
        "--group",
        "/w:max=64M,high=48M",
        "--group",
        "/w/a",
        "--attach",
        "/w/a",
        "--",
    ]);
    cmd.arg(&exe).args(["/w", "/w/a"]);
    let mut w = Watched::start(cmd);
    let first = w.until_ready();
    let pid = pid_of(&first);

    let (code, ps, err) = tool(&["ps"]);
    assert_eq!(code, 0, "ps failed: {err}");
    let row = ps
        .lines()
        .find(|l| l.split_whitespace().next() == Some(pid.as_str()))
        .unwrap_or_else(|| panic!("ps does not list {pid}:\n{ps}"));
    assert!(row.contains("watched") && row.contains("256M"), "{row}");

    for mib in ["4", "12"] {
        w.send(mib);
        let own = currents(&w.until_ready());
        assert_eq!(own.len(), 3, "{own:?}");
        let groups = stat_json(&pid);
        assert_eq!(groups.len(), 3, "{groups:?}");
        for (path, bytes) in &own {
            let seen = group(&groups, path)["memory.current"].as_i64().unwrap();
            assert!(
                (seen - bytes).abs() <= STOCK,
                "{path}: stat read {seen}, the program {bytes}"
            );
        }
        let wg = group(&groups, "/w");
        assert_eq!(wg["memory.max"], 64 << 20);
        assert_eq!(wg["memory.high"], 48 << 20);
        assert_eq!(group(&groups, "/w/a")["memory.max"], "max");
        assert_eq!(group(&groups, "/w")["cgroup.stat"]["nr_descendants"], 1);
        assert_eq!(group(&groups, "/w/a")["nr_threads"], 1);
        // The one thread, the main one, whose id is the pid.
        let tid: u64 = pid.parse().unwrap();
        assert_eq!(
            group(&groups, "/w/a")["cgroup.threads"],
            serde_json::json!([tid])
        );
        assert_eq!(
            group(&groups, "/w")["cgroup.threads"],
            serde_json::json!([])
        );
        let stock = group(&groups, "/w")["memory.stat"]["stock"]
            .as_i64()
            .unwrap();
        assert!((0..=STOCK).contains(&stock), "{stock}");
    }
    assert!(own_current_at_least(&pid, "/w/a", 16 << 20));

    // One group, as text.
    let (code, text, err) = tool(&["stat", &pid, "/w"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.starts_with("/w\n"), "{text}");
    let max_line = format!("memory.max {}", 64 << 20);
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == max_line),
        "{text}"
    );
    assert!(!text.contains("/w/a"), "{text}");

    // Prometheus, through a real parser.
    let (code, prom, err) = tool(&["stat", &pid, "--prometheus"]);
    assert_eq!(code, 0, "{err}");
    let scrape = prometheus_parse::Scrape::parse(prom.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{prom}"));
    let sample = |name: &str, g: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("group") == Some(g))
            .unwrap_or_else(|| panic!("no {name} for {g}"))
            .value
            .clone()
    };
    use prometheus_parse::Value as P;
    match sample("cgmalloc_memory_max_bytes", "/w/a") {
        P::Gauge(v) => assert!(v.is_infinite()),
        v => panic!("{v:?}"),
    }
    match sample("cgmalloc_memory_max_bytes", "/w") {
        P::Gauge(v) => assert_eq!(v, (64 << 20) as f64),
        v => panic!("{v:?}"),
    }
    match sample("cgmalloc_memory_current_bytes", "/w/a") {
        P::Gauge(v) => assert!(v >= (16 << 20) as f64),
        v => panic!("{v:?}"),
    }
    assert!(scrape
        .samples
        .iter()
        .all(|s| s.labels.get("pid") == Some(pid.as_str())));
    w.send("q");
    w.finish();
}

fn own_current_at_least(pid: &str, path: &str, bytes: i64) -> bool {
    group(&stat_json(pid), path)["memory.current"]
        .as_i64()
        .unwrap()
        >= bytes
}

#[test]
fn a_python_program_is_found_and_read() {
    let python = programs::need("python3");
    let script = "import os, sys\n\
                  b = bytearray(8 << 20)\n\
                  print('pid', os.getpid(), flush=True)\n\
                  print('ready', flush=True)\n\
                  sys.stdin.readline()\n";
    let mut cmd = launcher(["run", "--group", "/py:max=1G", "--attach", "/py", "--"]);
    cmd.arg(&python)
        .args(["-c", script])
        .env("PYTHONMALLOC", "malloc");
    let w = Watched::start(cmd);
    let pid = pid_of(&w.until_ready());
    let (code, ps, err) = tool(&["ps"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        ps.lines()
            .any(|l| l.split_whitespace().next() == Some(pid.as_str())),
        "ps does not list {pid}:\n{ps}"
    );
    let groups = stat_json(&pid);
    let py = group(&groups, "/py");
    assert!(py["memory.current"].as_i64().unwrap() >= 8 << 20, "{py}");
    assert_eq!(py["memory.max"], 1i64 << 30);
    assert!(py["memory.peak"].as_i64() >= py["memory.current"].as_i64());
    w.finish();
}

#[test]
fn bad_targets_are_refused_in_refused() {
    let dir = Scratch::new("bad-targets");
    refused(&["stat", "abc"], "not a process id");
    refused(&["stat"], "a PID is needed");
    refused(&["stat", "1", "/bad name"], "stat:");
    refused(&["stat", "1", "--json", "--prometheus"], "exclude");
    // No such process (pid_max is at most 2^22).
    refused(&["stat", "99999999"], "no process 99999999");

    // A process without cgmalloc.
    let sleeper = Sleeper::start();
    refused(&["stat", &sleeper.pid()], "does not run cgmalloc");

    // A layout this reader does not know.
    let exe = build(&dir, "layout_v99", false);
    let w = Watched::start(programs::plain(Command::new(&exe)));
    w.until_ready();
    let pid = w.child.id().to_string();
    refused(&["stat", &pid], "layout version 99");
    w.finish();

    // A group the process does not have.
    let exe = build(&dir, "watched", true);
    let mut cmd = launcher(["run", "--group", "/g", "--"]);
    cmd.arg(&exe);
    let w = Watched::start(cmd);
    let pid = pid_of(&w.until_ready());
    refused(&["stat", &pid, "/nope"], "no group /nope");
    let (code, _, err) = tool(&["stat", &pid, "/g"]);
    assert_eq!(code, 0, "{err}");
    w.finish();
}

#[test]
fn set_changes_a_running_programs_limit_at_its_next_allocation() {
    let dir = Scratch::new("set");
    let exe = build(&dir, "watched", true);
    let mut cmd = launcher(["run", "--group", "/s", "--attach", "/s", "--"]);
    cmd.arg(&exe).arg("/s");
    let mut w = Watched::start(cmd);
    let pid = pid_of(&w.until_ready());
    w.send("2");
    assert!(!w.until_ready().iter().any(|l| l.contains("failed")));

    // The program waits on stdin: the write waits for its next allocation.
    let (code, out, err) = tool(&["set", &pid, "/s", "memory.max", "8M"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("at its next allocation"), "{out}");
    w.send("16");
    let lines = w.until_ready();
    assert!(
        lines.iter().any(|l| l == "malloc failed"),
        "16 MiB past a max of 8M: {lines:?}"
    );
    let g = stat_json(&pid);
    let s = group(&g, "/s");
    assert_eq!(s["memory.max"], 8 << 20);
    assert!(s["memory.events"]["max"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["memory.current"].as_i64().unwrap() <= 8 << 20, "{s}");

    let (code, _, err) = tool(&["set", &pid, "/s", "memory.max", "max"]);
    assert_eq!(code, 0, "{err}");
    w.send("16");
    let lines = w.until_ready();
    assert!(!lines.iter().any(|l| l.contains("failed")), "{lines:?}");
    assert_eq!(group(&stat_json(&pid), "/s")["memory.max"], "max");

    // The other files, and the policy.
    for (file, value, want) in [
        ("memory.high", "64M", serde_json::json!(64 << 20)),
        ("memory.low", "1M", serde_json::json!(1 << 20)),
        ("memory.min", "512K", serde_json::json!(512 << 10)),
        (
            "memory.soft_limit_in_bytes",
            "32M",
            serde_json::json!(32 << 20),
        ),
        ("memory.oom.policy", "force", serde_json::json!("force")),
        ("memory.enforce", "warn", serde_json::json!("warn")),
    ] {
        let (code, _, err) = tool(&["set", &pid, "/s", file, value]);
        assert_eq!(code, 0, "{file}: {err}");
        w.send("1");
        w.until_ready();
        assert_eq!(group(&stat_json(&pid), "/s")[file], want, "{file}");
    }

    // Refused by the tool, the process never asked: one line, exit 2.
    refused(
        &["set", &pid, "/s", "memory.max", "12Q"],
        "not a valid size",
    );
    refused(
        &["set", &pid, "/s", "memory.oom.policy", "maybe"],
        "not an OOM policy",
    );
    refused(
        &["set", &pid, "/s", "memory.enforce", "maybe"],
        "not an enforce mode",
    );
    // `top` shows the mode.
    let (code, out, err) = tool(&["top", &pid, "--once"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(" s ") && l.ends_with("(enforce=warn)")),
        "{out}"
    );
    refused(
        &["set", &pid, "/s", "memory.current", "1M"],
        "not a file set can write",
    );
    refused(
        &["set", &pid, "/nope", "memory.max", "1M"],
        "no group /nope",
    );
    refused(
        &["set", &pid, "/s", "memory.max"],
        "want PID GROUP FILE VALUE",
    );
    refused(&["set", "99999999", "/s", "memory.max", "1M"], "no process");
    let sleeper = Sleeper::start();
    refused(
        &["set", &sleeper.pid(), "/", "memory.max", "1M"],
        "does not run cgmalloc",
    );
    // Nothing of those reached the process.
    assert_eq!(group(&stat_json(&pid), "/s")["memory.max"], "max");
    w.send("q");
    w.finish();
}

/// Frames of `top` (`-n N` output), each as its lines.
fn frames(out: &str) -> Vec<Vec<&str>> {
    out.split("\n\n")
        .map(|f| f.lines().collect())
        .filter(|f: &Vec<&str>| !f.is_empty())
        .collect()
}

#[test]
fn top_follows_groups_as_they_come_and_go_and_a_process_that_exits() {
    let python = programs::need("python3");
    // Creates and destroys a group through the C API, on cue.
    let script = "import ctypes, os, sys\n\
                  lib = ctypes.CDLL(None)\n\
                  h = ctypes.c_uint64()\n\
                  print('pid', os.getpid(), flush=True)\n\
                  print('ready', flush=True)\n\
                  sys.stdin.readline()\n\
                  assert lib.cgm_group_create(b'/job/dyn', ctypes.byref(h)) == 0\n\
                  print('ready', flush=True)\n\
                  sys.stdin.readline()\n\
                  assert lib.cgm_group_destroy(h) == 0\n\
                  print('ready', flush=True)\n\
                  sys.stdin.readline()\n";
    let mut cmd = launcher(["run", "--group", "/job:max=512M", "--attach", "/job", "--"]);
    cmd.arg(&python)
        .args(["-c", script])
        .env("PYTHONMALLOC", "malloc");
    let mut w = Watched::start(cmd);
    let pid = pid_of(&w.until_ready());
    let once = || {
        let (code, out, err) = tool(&["top", &pid, "--once"]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let rows = |out: &str, leaf: &str| {
        out.lines()
            .filter(|l| l.split_whitespace().nth(2) == Some(leaf))
            .count()
    };
    let out = once();
    assert_eq!(frames(&out).len(), 1, "{out}");
    assert_eq!(
        (rows(&out, "/"), rows(&out, "job"), rows(&out, "dyn")),
        (1, 1, 0),
        "{out}"
    );
    // The bar of `/job` against its max, which the text shows.
    assert!(out.contains("512M"), "{out}");
    w.send("");
    w.until_ready();
    let out = once();
    assert_eq!(rows(&out, "dyn"), 1, "{out}");
    w.send("");
    w.until_ready();
    let out = once();
    assert_eq!(rows(&out, "dyn"), 0, "{out}");

    // The process exits while `top` refreshes: it says so and goes on to its last frame.
    let top = launcher(["top", &pid, "-n", "4", "-d", "0.3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    w.send("");
    w.finish();
    let out = top.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = frames(&text);
    assert_eq!(f.len(), 4, "{text}");
    assert!(rows(&f[0].join("\n"), "job") == 1, "{text}");
    assert_eq!(rows(&f[3].join("\n"), "job"), 0, "{text}");
    let said = f
        .iter()
        .flatten()
        .filter(|l| l.starts_with("exited:"))
        .count();
    assert_eq!(said, 1, "the exit is told once:\n{text}");
}

#[test]
fn top_on_a_terminal_sorts_on_s_and_quits_on_q() {
    // `script` gives `top` a terminal; the keys arrive on it.
    let script = programs::need("script");
    let dir = Scratch::new("top-live");
    let exe = build(&dir, "watched", true);
    let mut cmd = launcher(["run", "--group", "/live:max=64M", "--attach", "/live", "--"]);
    cmd.arg(&exe).arg("/live");
    let w = Watched::start(cmd);
    let pid = pid_of(&w.until_ready());
    let top = format!(
        "{} top {pid} -d 0.2",
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/cgmalloc")
    );
    let mut child = programs::plain(Command::new(script))
        .args(["-qec", &top, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    keys.write_all(b"s").unwrap();
    keys.flush().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    keys.write_all(b"q").unwrap();
    keys.flush().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(WAIT)
        .expect("top did not quit on q")
        .unwrap();
    assert!(out.status.success(), "{}", out.status);
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("sorted by tree"), "{screen}");
    assert!(screen.contains("sorted by current"), "{screen}");
    assert!(screen.contains("live"), "{screen}");
    // The alternate screen is left and the cursor shown again.
    assert!(screen.contains("\x1b[?1049l"), "{screen}");
    w.finish();
}

/// No shared file is involved: nothing named for cgmalloc is left in `/dev/shm`.
fn nothing_in_dev_shm() {
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        let left: Vec<String> = dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains("cgmalloc"))
            .collect();
        assert!(left.is_empty(), "left in /dev/shm: {left:?}");
    }
}

#[test]
fn a_fork_child_is_read_on_its_own_and_closing_every_fd_changes_nothing() {
    let python = programs::need("python3");
    // The parent closes every fd but the three standard ones, as a daemon does, then
    // forks; the child creates a group of its own.
    let script = "import ctypes, os, sys\n\
                  os.closerange(3, 4096)\n\
                  lib = ctypes.CDLL(None)\n\
                  h = ctypes.c_uint64()\n\
                  r, w = os.pipe()\n\
                  print('pid', os.getpid(), flush=True)\n\
                  pid = os.fork()\n\
                  if pid == 0:\n\
                  \x20   assert lib.cgm_group_create(b'/job/child', ctypes.byref(h)) == 0\n\
                  \x20   print('child', os.getpid(), flush=True)\n\
                  \x20   print('ready', flush=True)\n\
                  \x20   os.read(r, 1)\n\
                  \x20   os._exit(0)\n\
                  sys.stdin.readline()\n\
                  os.write(w, b'x')\n\
                  os.waitpid(pid, 0)\n";
    let mut cmd = launcher(["run", "--group", "/job:max=256M", "--attach", "/job", "--"]);
    cmd.arg(&python)
        .args(["-c", script])
        .env("PYTHONMALLOC", "malloc");
    let w = Watched::start(cmd);
    let lines = w.until_ready();
    let parent = pid_of(&lines);
    let child = lines
        .iter()
        .find_map(|l| l.strip_prefix("child ").map(str::to_string))
        .unwrap();
    let paths = |pid: &str| -> Vec<String> {
        stat_json(pid)
            .iter()
            .map(|g| g["group"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(paths(&parent), ["/", "/job"]);
    assert_eq!(paths(&child), ["/", "/job", "/job/child"]);
    let (code, ps, err) = tool(&["ps"]);
    assert_eq!(code, 0, "{err}");
    for pid in [&parent, &child] {
        assert!(
            ps.lines()
                .any(|l| l.split_whitespace().next() == Some(pid.as_str())),
            "ps does not list {pid}:\n{ps}"
        );
    }
    w.finish();
    nothing_in_dev_shm();
}

#[test]
fn a_process_of_another_user_is_refused_with_the_reason() {
    let dir = Scratch::new("other-user");
    let exe = build(&dir, "watched", true);
    let mut cmd = launcher(["run", "--group", "/g", "--"]);
    cmd.arg(&exe);
    let w = Watched::start(cmd);
    let pid = pid_of(&w.until_ready());
    // SAFETY: a plain system call without arguments.
    let root = unsafe { libc::geteuid() } == 0;
    // As root, look as `nobody`; otherwise look at a process of root's (init).
    // `nobody` may not reach into the checkout: it runs a copy of the launcher in /tmp.
    let copy = std::env::temp_dir().join(format!("cgmalloc-inspect-{}", std::process::id()));
    let (target, mut tool_cmd) = if root {
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/cgmalloc"),
            &copy,
        )
        .unwrap();
        let mut c = programs::plain(Command::new(programs::need("setpriv")));
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(&copy);
        (pid.clone(), c)
    } else {
        let c = launcher(Vec::<&str>::new());
        ("1".to_string(), c)
    };
    let out = tool_cmd.args(["stat", &target]).output().unwrap();
    let _ = std::fs::remove_file(&copy);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_one_line(
        out.status.code().unwrap_or(-1),
        &err,
        "permission denied",
        "stat as another user",
    );
    w.finish();
}

/// `memory.pressure` read from outside: a program whose 12 MiB allocation lands 50% over
/// `high` sleeps the 2 s throttle; `stat --json` then shows that stall as `some` (no more
/// than the time the allocation took, at least most of it), `full` no more than `some`,
/// the root at least as much, an idle sibling zero; the text form has the kernel's line,
/// Prometheus text has both metrics, `top` its `PSI10` column, and the run's report the
/// group's pressure.
#[test]
fn pressure_is_read_from_outside_and_in_the_report() {
    let dir = Scratch::new("pressure-outside");
    let exe = build(&dir, "watched", true);
    let report = dir.join("report.txt");
    let mut cmd = launcher([
        "run",
        "--group",
        "/s:high=8M",
        "--group",
        "/idle",
        "--attach",
        "/s",
        &format!("--stats={}", report.display()),
        "--",
    ]);
    cmd.arg(&exe).arg("/s");
    let mut w = Watched::start(cmd);
    let pid = pid_of(&w.until_ready());
    let start = std::time::Instant::now();
    w.send("12");
    w.until_ready();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1500), "no throttle: {took:?}");

    let groups = stat_json(&pid);
    let psi = |path: &str, kind: &str, key: &str| {
        group(&groups, path)["memory.pressure"][kind][key].clone()
    };
    let some = psi("/s", "some", "total").as_u64().unwrap();
    assert!(
        some >= 1_400_000 && some <= took.as_micros() as u64,
        "some {some} µs for an allocation that took {took:?}"
    );
    assert!(psi("/s", "full", "total").as_u64().unwrap() <= some);
    assert!(psi("/", "some", "total").as_u64().unwrap() >= some);
    assert_eq!(psi("/idle", "some", "total"), 0);
    assert_eq!(psi("/idle", "some", "avg10").as_f64(), Some(0.0));

    let (code, text, err) = tool(&["stat", &pid, "/s"]);
    assert_eq!(code, 0, "{err}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("memory.pressure"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("some avg10="), "{line}");
    assert!(text.contains("full avg10="), "{text}");

    let (code, prom, err) = tool(&["stat", &pid, "--prometheus"]);
    assert_eq!(code, 0, "{err}");
    let scrape = prometheus_parse::Scrape::parse(prom.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{prom}"));
    let stalled = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "cgmalloc_memory_pressure_stall_seconds_total"
                && s.labels.get("group") == Some("/s")
                && s.labels.get("kind") == Some("some")
        })
        .unwrap_or_else(|| panic!("no stall seconds for /s:\n{prom}"));
    match stalled.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => {
            assert!((v - some as f64 / 1e6).abs() < 0.5, "{v}")
        }
        ref v => panic!("{v:?}"),
    }
    let windows = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "cgmalloc_memory_pressure_percent" && s.labels.get("group") == Some("/s")
        })
        .count();
    assert_eq!(windows, 6, "some and full × 10, 60, 300 s");

    let (code, top, err) = tool(&["top", "--once", &pid]);
    assert_eq!(code, 0, "{err}");
    assert!(top.contains("PSI10"), "{top}");
    let row = top
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("s"))
        .unwrap_or_else(|| panic!("no row for /s:\n{top}"));
    assert!(row.trim_end().ends_with('%'), "{row}");

    w.send("q");
    w.finish();
    let text = std::fs::read_to_string(&report).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with("/s "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains(" pressure: some avg10="), "{row}");
    let idle = text.lines().find(|l| l.starts_with("/idle ")).unwrap();
    assert!(!idle.contains("pressure"), "{idle}");
}
