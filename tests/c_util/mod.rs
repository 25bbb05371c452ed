//! Helpers shared by the tests that build and run C programs against the library
//! (`preload.rs`, `capi.rs`): the library's path, scratch directories, finding programs,
//! compiling `tests/c/*`, and running a child with a time limit.
//!
//! Nothing here sets `LD_PRELOAD` for the test process itself, only for the programs it
//! starts. Not every test file uses every helper.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Time limit for one program run; a run that exceeds it is killed and fails the test.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// `target/release/libcgmalloc.so`, which must exist and export `malloc`.
pub fn library() -> PathBuf {
    static CHECKED: OnceLock<PathBuf> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let so = Path::new(ROOT).join("target/release/libcgmalloc.so");
            assert!(
                so.is_file(),
                "{} is missing: run `cargo build --release` (default features) before these \
                 tests",
                so.display()
            );
            // A build with `--no-default-features` also writes this file, without the
            // standard names: preloading it would silently test glibc's malloc.
            let nm = Command::new(need("nm"))
                .args(["-D", "--defined-only"])
                .arg(&so)
                .env_remove("LD_PRELOAD")
                .output()
                .unwrap();
            let syms = String::from_utf8_lossy(&nm.stdout);
            assert!(
                syms.lines().any(|l| l.ends_with(" T malloc")),
                "{} does not export `malloc` (built without the `override` feature?): run \
                 `cargo build --release`",
                so.display()
            );
            so
        })
        .clone()
}

/// Flags that link a program against the library: `-lcgmalloc`, with a run path that is
/// a DT_RPATH (`--disable-new-dtags`), which `LD_LIBRARY_PATH` does not override. Run the
/// program with [`linked`].
pub fn link_flags() -> Vec<String> {
    let lib = library();
    let libdir = lib.parent().unwrap().to_str().unwrap().to_owned();
    vec![
        format!("-L{libdir}"),
        "-lcgmalloc".to_owned(),
        format!("-Wl,--disable-new-dtags,-rpath,{libdir}"),
    ]
}

/// A fresh scratch directory for one test, removed when the test passes (kept for a look
/// when it fails). It lives under `CARGO_TARGET_TMPDIR/<test file>/`.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(env!("CARGO_CRATE_NAME"))
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
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

/// Compiles `tests/c/<source>` into `<dir>/<out>` with `compiler` (a program on `PATH`):
/// `compiler <flags> -o <out> <source> <after>`, where `after` holds what must follow the
/// source (libraries). Fails the test with the compiler's messages.
pub fn compile_c(
    compiler: &str,
    dir: &Path,
    source: &str,
    out: &str,
    flags: &[&str],
    after: &[&str],
) -> PathBuf {
    let cc = need(compiler);
    let src = Path::new(ROOT).join("tests/c").join(source);
    let exe = dir.join(out);
    let output = Command::new(cc)
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .args(after)
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "compiling {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    exe
}

pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn describe(&self) -> String {
        format!(
            "status {:?} after {:.1?}\n--- stdout (end) ---\n{}\n--- stderr (end) ---\n{}",
            self.status,
            self.elapsed,
            tail(&self.stdout(), 3000),
            tail(&self.stderr, 6000)
        )
    }

    pub fn assert_success(&self, what: &str) {
        assert!(self.status.success(), "{what} failed: {}", self.describe());
    }
}

pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
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
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            // SAFETY: signalling the process group we created for this child.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
            panic!(
                "{desc} hung: killed after {timeout:?}\n--- stderr (end) ---\n{}",
                tail(&stderr, 6000)
            );
        }
        thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    // Grandchildren that outlived the child (e.g. a hung fork child) would keep the pipes
    // open: end the group before collecting the output.
    // SAFETY: as above; the group may well be empty by now.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    Run {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        elapsed,
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

/// `cmd`, a program built with [`link_flags`], without any preload and with
/// `LD_LIBRARY_PATH` cleared: cargo points it at `target/release/deps`, which holds the
/// `--no-default-features` build of the same library (no `malloc`).
pub fn linked(cmd: Command) -> Command {
    let mut cmd = plain(cmd);
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd
}
