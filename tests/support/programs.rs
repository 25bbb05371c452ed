//! Helpers of the tests that build and run programs: the library's path (and the check
//! that it exports `malloc`), scratch directories, finding programs, compiling C, and
//! running a child in its own process group with a time limit.
//!
//! Used by the areas `preload`, `capi` and `lifecycle` (C programs preloaded with or
//! linked against the library), `launcher` (`cgmalloc run`, and a probe linked against
//! the library) and `shipped` (the Rust and C examples, the release library). Nothing
//! here sets `LD_PRELOAD` for the test process itself, only for the programs it starts.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Time limit for one program run; a run that exceeds it is killed and fails the test.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Flags for the C test programs of `tests/c` (the `preload` and `lifecycle` tests).
/// `-fno-builtin`: without it GCC treats the malloc family as builtins (e.g. it assumes
/// `free` leaves `errno` alone), so some checks would be folded away instead of
/// exercising the allocator.
pub const CFLAGS: [&str; 5] = ["-O1", "-g", "-pthread", "-Wall", "-fno-builtin"];

/// `target/release/libcgmalloc.so`, which must exist and export `malloc` (checked once).
pub fn library() -> PathBuf {
    static CHECKED: OnceLock<PathBuf> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let so = Path::new(ROOT).join("target/release/libcgmalloc.so");
            check_library(&so);
            so
        })
        .clone()
}

/// Fails unless `so` exists and exports `malloc`, with what to build.
pub fn check_library(so: &Path) {
    assert!(
        so.is_file(),
        "{} is missing: run `cargo build --release` (default features) before these tests",
        so.display()
    );
    // A build with `--no-default-features` also writes this file, without the standard
    // names: preloading it (or linking against it) would silently test glibc's malloc.
    let nm = plain(Command::new(need("nm")))
        .args(["-D", "--defined-only"])
        .arg(so)
        .output()
        .unwrap();
    let syms = String::from_utf8_lossy(&nm.stdout);
    assert!(
        syms.lines().any(|l| l.ends_with(" T malloc")),
        "{} does not export `malloc` (built without the `override` feature?): run `cargo \
         build --release`",
        so.display()
    );
}

/// Flags that link a program against the library: `-lcgmalloc`, with a run path that is
/// a DT_RPATH (`--disable-new-dtags`), which `LD_LIBRARY_PATH` does not override. Run the
/// program with [`linked`].
pub fn link_flags() -> Vec<&'static str> {
    static FLAGS: OnceLock<Vec<String>> = OnceLock::new();
    FLAGS
        .get_or_init(|| {
            let lib = library();
            let libdir = lib.parent().unwrap().to_str().unwrap().to_owned();
            vec![
                format!("-L{libdir}"),
                "-lcgmalloc".to_owned(),
                format!("-Wl,--disable-new-dtags,-rpath,{libdir}"),
            ]
        })
        .iter()
        .map(String::as_str)
        .collect()
}

/// A fresh scratch directory for one test, removed when the test passes (kept for a look
/// when it fails). It lives under `CARGO_TARGET_TMPDIR/<test binary>/`, and its path is
/// canonical (what a child's `getcwd` reports).
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(env!("CARGO_CRATE_NAME"))
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(std::fs::canonicalize(&dir).unwrap())
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The absolute path of a program on `PATH`, or a failure telling what to install.
pub fn need(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{program}` is not installed (CI must install it, e.g. `apt-get install -y {program}`)"
    );
}

/// Runs `compiler ARGS` (a program on `PATH`, without `LD_PRELOAD`); fails the test with
/// the compiler's messages.
pub fn compile<S: AsRef<OsStr>>(compiler: &str, args: &[S]) {
    let out = plain(Command::new(need(compiler)))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{compiler} {:?} failed:\n{}",
        args.iter().map(AsRef::as_ref).collect::<Vec<&OsStr>>(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles `source` (relative to the crate root, or absolute) into `<dir>/<out>` with
/// `compiler`: `compiler <flags> -o <out> <source> <after>`, where `after` holds what
/// must follow the source (libraries). Returns the path of `<out>`.
pub fn compile_c(
    compiler: &str,
    dir: &Path,
    source: impl AsRef<Path>,
    out: &str,
    flags: &[&str],
    after: &[&str],
) -> PathBuf {
    let src = Path::new(ROOT).join(source);
    let exe = dir.join(out);
    let mut args: Vec<&OsStr> = flags.iter().map(OsStr::new).collect();
    args.extend([OsStr::new("-o"), exe.as_os_str(), src.as_os_str()]);
    args.extend(after.iter().map(OsStr::new));
    compile(compiler, &args);
    exe
}

/// How a program run by [`run`] ended, and what it printed.
pub struct Run {
    pub status: ExitStatus,
    /// Standard output as written (compare these bytes when they matter).
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
    /// `stdout` as text (invalid UTF-8 replaced).
    stdout_text: String,
}

impl Run {
    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout(&self) -> &str {
        &self.stdout_text
    }

    pub fn describe(&self) -> String {
        format!(
            "status {:?} after {:.1?}\n--- stdout (end) ---\n{}\n--- stderr (end) ---\n{}",
            self.status,
            self.elapsed,
            tail(self.stdout(), 4000),
            tail(&self.stderr, 6000)
        )
    }

    #[track_caller]
    pub fn assert_success(&self, what: &str) {
        assert!(self.status.success(), "{what} failed: {}", self.describe());
    }

    /// The exit code; a failure if the program died of a signal.
    #[track_caller]
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("the program did not exit normally: {}", self.describe()))
    }

    #[track_caller]
    pub fn assert_code(&self, want: i32, what: &str) {
        assert_eq!(self.code(), want, "{what}: {}", self.describe());
    }

    /// The lines of stderr that start with `cgmalloc:`.
    pub fn cgmalloc_lines(&self) -> Vec<&str> {
        cgmalloc_lines(&self.stderr)
    }
}

/// The lines of `text` that start with `cgmalloc:` (what the library and the launcher
/// print).
pub fn cgmalloc_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("cgmalloc:"))
        .collect()
}

/// A problem to report when a run printed `cgmalloc:` lines on stderr (a fatal line, a
/// warning): how many, and up to three distinct ones.
pub fn cgmalloc_lines_problem(stderr: &str) -> Option<String> {
    let lines = cgmalloc_lines(stderr);
    let mut distinct: Vec<&str> = Vec::new();
    for l in &lines {
        if !distinct.contains(l) && distinct.len() < 3 {
            distinct.push(l);
        }
    }
    (!lines.is_empty()).then(|| {
        format!(
            "{} `cgmalloc:` lines on stderr, e.g.:\n    {}",
            lines.len(),
            distinct.join("\n    ")
        )
    })
}

pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Kills the process group that `child` leads (started with `process_group(0)`).
pub fn kill_group(child: &Child) {
    // SAFETY: signalling the process group the test created for this child; it may well
    // be empty by now.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
}

/// Waits for `child`, which leads its own process group, at most `timeout`: `None` when
/// it had not finished by then, and the group was killed and the child reaped.
pub fn wait_or_kill_group(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() > timeout {
            kill_group(child);
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` (in its own process group) with `stdin`, collecting its output; kills the
/// whole group and fails if it has not finished within `timeout`.
pub fn run(cmd: &mut Command, stdin: Option<&Path>, timeout: Duration) -> Run {
    let desc = format!("{cmd:?}");
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    match stdin {
        Some(p) => cmd.stdin(std::fs::File::open(p).unwrap()),
        None => cmd.stdin(Stdio::null()),
    };
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_or_kill_group(&mut child, timeout);
    let elapsed = start.elapsed();
    // Grandchildren that outlived the child (e.g. a hung fork child) would keep the pipes
    // open: end the group before collecting the output.
    kill_group(&child);
    let stdout = out_reader.join().unwrap();
    let stdout_text = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
    let Some(status) = status else {
        panic!(
            "{desc} hung: killed after {timeout:?}\n--- stdout (end) ---\n{}\n--- stderr \
             (end) ---\n{}",
            tail(&stdout_text, 4000),
            tail(&stderr, 6000)
        );
    };
    Run {
        status,
        stdout,
        stderr,
        elapsed,
        stdout_text,
    }
}

/// `cmd` with the library preloaded.
pub fn preloaded(mut cmd: Command) -> Command {
    cmd.env("LD_PRELOAD", library());
    cmd
}

/// `cmd` without any preload.
pub fn plain(mut cmd: Command) -> Command {
    cmd.env_remove("LD_PRELOAD");
    cmd
}

/// `cmd` without the `CGMALLOC_*` variables of whoever runs the tests: the program sees
/// only those the test sets.
pub fn without_cgmalloc_vars(mut cmd: Command) -> Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CGMALLOC_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `cmd`, a program built with [`link_flags`], without any preload and with
/// `LD_LIBRARY_PATH` cleared: cargo points it at `target/release/deps`, which holds the
/// `--no-default-features` build of the same library (no `malloc`).
pub fn linked(cmd: Command) -> Command {
    let mut cmd = plain(cmd);
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd
}

/// Whether the long soaks run: `CGMALLOC_SOAK` set, and not empty or `0`.
pub fn soak() -> bool {
    std::env::var("CGMALLOC_SOAK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Under a soak, how long it runs: `CGMALLOC_SOAK_S` seconds (default 1800).
pub fn soak_seconds() -> Option<f64> {
    if !soak() {
        return None;
    }
    let s = match std::env::var("CGMALLOC_SOAK_S") {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("CGMALLOC_SOAK_S={v:?} is not a number of seconds")),
        Err(_) => 1800,
    };
    Some(s as f64)
}

/// How a test program gets the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// Linked with `-lcgmalloc`.
    Linked,
    /// Built without the library (`-DCGM_DLSYM`: the C API resolved with `dlsym`,
    /// `tests/c/capi_dl.h`) and run with it preloaded.
    Preloaded,
}

/// Builds `tests/c/<name>.c` for `mode` into `<dir>/<name>-linked` or
/// `<dir>/<name>-preloaded`, with `flags`, the library's header and `tests/c` on the
/// include path.
pub fn build_program(dir: &Path, name: &str, mode: Mode, flags: &[&str]) -> PathBuf {
    let include = format!("-I{ROOT}/include");
    let tests_c = format!("-I{ROOT}/tests/c");
    let mut flags = flags.to_vec();
    flags.extend([include.as_str(), tests_c.as_str()]);
    let mut after = Vec::new();
    let out = match mode {
        Mode::Linked => {
            after.extend(link_flags());
            format!("{name}-linked")
        }
        Mode::Preloaded => {
            flags.push("-DCGM_DLSYM");
            format!("{name}-preloaded")
        }
    };
    after.push("-ldl");
    compile_c("cc", dir, format!("tests/c/{name}.c"), &out, &flags, &after)
}
