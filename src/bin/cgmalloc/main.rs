//! `cgmalloc`, the launcher: `cgmalloc run [OPTIONS] -- COMMAND [ARGS...]` starts COMMAND
//! with `libcgmalloc.so` preloaded and its options turned into the `CGMALLOC_*`
//! environment variables the library reads at start (INTERFACE.md "The launcher" and
//! "Environment"), then exits with COMMAND's status; with `--stats` it prints one report
//! for the run from the records its processes leave (`report.rs`). `cgmalloc ps`, `stat`,
//! `top` and `set` read and write running processes' groups from outside (`target.rs`,
//! `inspect.rs`, `top.rs`).
//!
//! The launcher does not link the `cgmalloc` crate: its own malloc stays glibc's. It
//! compiles in only what it shares with the library (`memcg.rs`: the size-string and
//! group-path grammar, event names, the request format, the `memory.pressure`
//! arithmetic), so it refuses exactly what the library would refuse, before anything
//! starts, and computes what the library would.
//!
//! Exit status: COMMAND's own status, or `128 + N` when COMMAND died of signal N; `2` for
//! a usage error or a library that cannot be found or read (one line
//! `cgmalloc: <what is wrong>` on stderr, COMMAND not started); `126` when COMMAND was
//! found but could not be executed; `127` when it was not found.

mod args;
mod child;
/// The library's constants (`src/consts.rs`).
#[allow(dead_code)] // the launcher needs the group tree's limits, not the page size
#[path = "../../consts.rs"]
mod consts;
mod help;
mod inspect;
mod library;
mod memcg;
mod report;
mod syntax;
mod target;
mod top;

use args::{Invocation, Run};
use std::ffi::OsString;
use std::process::ExitCode;

/// Exit status for a usage error or an unusable library.
const EXIT_USAGE: u8 = 2;

/// A reason not to run COMMAND: the line to print (without the `cgmalloc: ` prefix),
/// whether to add the hint to read `--help`, and the exit status.
#[derive(Debug)]
pub struct Fail {
    pub message: String,
    pub hint: bool,
    pub code: u8,
}

impl Fail {
    /// A usage error: exit 2, with the hint to read `--help`.
    pub fn usage(message: impl Into<String>) -> Fail {
        Fail {
            message: message.into(),
            hint: true,
            code: EXIT_USAGE,
        }
    }

    /// Any other failure, with its own exit status and no hint.
    pub fn with_code(code: u8, message: impl Into<String>) -> Fail {
        Fail {
            message: message.into(),
            hint: false,
            code,
        }
    }

    fn report(&self) -> ExitCode {
        eprintln!("cgmalloc: {}", self.message);
        if self.hint {
            eprintln!("(see `cgmalloc --help`)");
        }
        ExitCode::from(self.code)
    }
}

/// For the commands that print and end (`ps`, `stat`): a reader that closes the pipe
/// early (`| head`) ends the launcher quietly, as it ends `cat`, instead of a failed
/// write. Not for `run`, whose COMMAND starts with the dispositions it inherited.
fn quiet_on_closed_pipe() {
    // SAFETY: `signal` with the default disposition takes plain integers.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let parsed = args::parse(&argv);
    if matches!(parsed, Ok(Invocation::Ps | Invocation::Stat { .. })) {
        quiet_on_closed_pipe();
    }
    match parsed {
        Ok(Invocation::Help) => {
            print!("{}", help::HELP);
            ExitCode::SUCCESS
        }
        Ok(Invocation::Version) => {
            println!("cgmalloc {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Invocation::Usage) => {
            eprint!("{}", help::USAGE);
            ExitCode::from(EXIT_USAGE)
        }
        Ok(Invocation::Run(run)) => match launch(run) {
            Ok(code) => code,
            Err(fail) => fail.report(),
        },
        Ok(Invocation::Ps) => match inspect::ps() {
            Ok(()) => ExitCode::SUCCESS,
            Err(fail) => fail.report(),
        },
        Ok(Invocation::Top(opts)) => match top::top(opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(fail) => fail.report(),
        },
        Ok(Invocation::Set {
            pid,
            group,
            file,
            value,
        }) => match inspect::set(&pid, &group, &file, &value) {
            Ok(()) => ExitCode::SUCCESS,
            Err(fail) => fail.report(),
        },
        Ok(Invocation::Stat { pid, group, format }) => {
            match inspect::stat(&pid, group.as_deref(), format) {
                Ok(()) => ExitCode::SUCCESS,
                Err(fail) => fail.report(),
            }
        }
        Err(fail) => fail.report(),
    }
}

/// Finds the library, prepares the report and the environment, runs COMMAND, and with
/// `--stats` prints the run's one report.
fn launch(run: Run) -> Result<ExitCode, Fail> {
    let lib = library::locate(run.lib.as_deref())?;
    let mut env = run.env;
    let mut unset: Vec<&str> = Vec::new();
    let inbox = match &run.stats {
        None => None,
        Some(stats) => {
            if let Some(path) = &stats.file {
                // Created now, so that a path that cannot be written is refused before
                // COMMAND starts; written when it has ended.
                std::fs::File::create(path).map_err(|e| {
                    Fail::with_code(
                        EXIT_USAGE,
                        format!("--stats: cannot create {}: {e}", path.display()),
                    )
                })?;
            }
            let inbox = report::Inbox::create()?;
            env.push(("CGMALLOC_REPORT", inbox.path().as_os_str().to_owned()));
            // One report for the run, not a table per process.
            unset.push("CGMALLOC_STATS");
            Some(inbox)
        }
    };
    env.push((
        "LD_PRELOAD",
        library::preload_value(&lib, std::env::var_os("LD_PRELOAD")),
    ));
    let ended = child::run(&run.command, &env, &unset)?;
    if let (Some(stats), Some(inbox)) = (&run.stats, &inbox) {
        report::write(stats, inbox, &run.command, ended.pid, ended.end)?;
    }
    Ok(ended.code)
}
