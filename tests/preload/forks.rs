//! `fork()` (`tests/c/forks.c`) while other threads allocate, and from two threads at
//! once, never hangs a child.

use crate::compile;
use crate::support::programs::{preloaded, run, Scratch, TIMEOUT};
use std::process::Command;

fn forks(mode: &str, children: usize) {
    let dir = Scratch::new(&format!("forks-{mode}"));
    let exe = compile(&dir, "forks.c", "forks", &[]);
    let mut cmd = preloaded(Command::new(&exe));
    cmd.arg(mode);
    // `run` fails the test if the program is still running after TIMEOUT: 0 hangs.
    let r = run(&mut cmd, None, TIMEOUT);
    r.assert_success(&format!("forks {mode}"));
    let want = format!("forks {mode}: {children} children, 0 failed, 0 hung");
    assert!(
        r.stdout().lines().any(|l| l == want),
        "forks {mode}: expected `{want}`: {}",
        r.describe()
    );
    eprintln!("{want} ({:.1?})", r.elapsed);
}

/// One thread forks 40 times while 8 others allocate and free continuously.
#[test]
fn fork_while_threads_allocate() {
    forks("busy", 40);
}

/// Two threads fork 50 times each, at once.
#[test]
fn fork_from_two_threads() {
    forks("many", 100);
}
