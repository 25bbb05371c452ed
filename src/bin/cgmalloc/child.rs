//! Running COMMAND: spawn it (searched on `PATH`) with the prepared environment, wait for
//! it, and turn its end into the launcher's exit status (its code, or `128 + N` for
//! death by signal N).
//!
//! While COMMAND runs the launcher ignores `SIGINT` and `SIGQUIT` (a terminal sends them
//! to the whole foreground process group, so COMMAND gets its own copy) and forwards
//! `SIGTERM` and `SIGHUP` to COMMAND. These four signals are blocked from before the
//! spawn until the handlers are in place, so one that arrives in between is forwarded
//! (or ignored) rather than killing the launcher and orphaning COMMAND. COMMAND starts
//! with the launcher's original signal mask (restored between fork and exec) and the
//! dispositions the launcher inherited.

use crate::Fail;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};

/// Exit status when COMMAND is not found (as in the shell).
const EXIT_NOT_FOUND: u8 = 127;
/// Exit status when COMMAND is found but cannot be executed (as in the shell).
const EXIT_CANNOT_EXECUTE: u8 = 126;

/// The signals the launcher handles while COMMAND runs.
const FORWARDED: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGHUP];
const IGNORED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGQUIT];

/// COMMAND's pid while it can receive a forwarded signal; 0 before it starts and once it
/// has ended (before it is reaped, so the pid cannot have been reused).
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: `kill` is async-signal-safe; `pid` is our unreaped child.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Blocks the four handled signals; returns the previous mask for `restore_mask`.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on local, initialised `sigset_t`s.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED.iter().chain(&IGNORED) {
            libc::sigaddset(&mut set, *s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        old
    }
}

fn restore_mask(old: &libc::sigset_t) {
    // SAFETY: `old` is a mask returned by `pthread_sigmask`.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// Installs the forwarding handler and the ignore dispositions.
fn install_handlers() {
    // SAFETY: `forward` only reads an atomic and calls `kill`, both async-signal-safe;
    // the `sigaction` structure is fully initialised.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = forward as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        for s in FORWARDED {
            libc::sigaction(s, &action, std::ptr::null_mut());
        }
        for s in IGNORED {
            libc::signal(s, libc::SIG_IGN);
        }
    }
}

/// Waits until process `pid` has ended, without reaping it.
fn wait_for_end(pid: libc::pid_t) {
    loop {
        // SAFETY: `info` is a valid out-parameter; WNOWAIT leaves the child unreaped.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            return;
        }
    }
}

/// How COMMAND ended.
pub struct Ended {
    pub pid: u32,
    pub end: crate::report::End,
    /// The exit status the launcher should end with.
    pub code: ExitCode,
}

/// Runs `command` with `env` set on top of the inherited environment and the variables
/// `unset` removed from it, and waits for it to end.
pub fn run(
    command: &[OsString],
    env: &[(&'static str, OsString)],
    unset: &[&str],
) -> Result<Ended, Fail> {
    let name = command[0].to_string_lossy().into_owned();
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    for key in unset {
        cmd.env_remove(key);
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    let old_mask = block_signals();
    // SAFETY: the closure runs in the forked child before exec and only calls
    // `pthread_sigmask`, which is async-signal-safe, on a copied mask.
    unsafe {
        cmd.pre_exec(move || {
            restore_mask(&old_mask);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            restore_mask(&old_mask);
            return Err(match e.kind() {
                ErrorKind::NotFound => {
                    Fail::with_code(EXIT_NOT_FOUND, format!("{name}: command not found"))
                }
                _ => Fail::with_code(EXIT_CANNOT_EXECUTE, format!("{name}: cannot execute: {e}")),
            });
        }
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    install_handlers();
    restore_mask(&old_mask);
    wait_for_end(child.id() as libc::pid_t);
    CHILD.store(0, Ordering::SeqCst);
    let status = child
        .wait()
        .map_err(|e| Fail::with_code(1, format!("{name}: cannot wait for it: {e}")))?;
    let end = match (status.code(), status.signal()) {
        (Some(code), _) => crate::report::End::Code(code),
        (None, Some(signal)) => crate::report::End::Signal(signal),
        (None, None) => crate::report::End::Code(1),
    };
    Ok(Ended {
        pid: child.id(),
        end,
        code: exit_code(status),
    })
}

/// COMMAND's exit code, or `128 + N` when it died of signal N.
fn exit_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(signal)) => ExitCode::from((128 + signal) as u8),
        (None, None) => ExitCode::FAILURE,
    }
}
