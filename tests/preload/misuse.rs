//! Misuse: double free, foreign and interior pointers (`tests/c/misuse.c`) die by
//! `SIGABRT` after exactly one `cgmalloc: fatal: ...` line naming the misuse.

use crate::compile;
use crate::support::programs::{preloaded, run, Scratch, TIMEOUT};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

fn misuse(mode: &str) {
    misuse_in(mode, &[]);
}

/// `misuse` with the environment `env` (a group to attach to).
fn misuse_in(mode: &str, env: &[(&str, &str)]) {
    let dir = Scratch::new(&format!("misuse-{mode}"));
    let exe = compile(&dir, "misuse.c", "misuse", &[]);
    let mut cmd = preloaded(Command::new(&exe));
    cmd.arg(mode).envs(env.iter().copied());
    let r = run(&mut cmd, None, TIMEOUT);
    assert_eq!(
        r.status.signal(),
        Some(libc::SIGABRT),
        "misuse `{mode}` was not killed by SIGABRT: {}",
        r.describe()
    );
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("cgmalloc: fatal: "),
        "misuse `{mode}`: stderr must be exactly one `cgmalloc: fatal: ...` line, got {:?}",
        r.stderr
    );
    // The line names the misuse the mode commits.
    let says = if mode.starts_with("double-free") {
        "double free"
    } else if mode.contains("after-free") {
        "already freed"
    } else if mode.contains("interior") {
        "inside a block"
    } else {
        "not allocated by cgmalloc"
    };
    assert!(
        lines[0].contains(says),
        "misuse `{mode}`: the fatal line should say {says:?}: {:?}",
        lines[0]
    );
}

#[test]
fn misuse_double_free() {
    misuse("double-free");
}

#[test]
fn misuse_double_free_large() {
    misuse("double-free-large");
}

/// A medium block (a span of its own) freed twice by its owner: the second free finds
/// the span in its heap's cache.
#[test]
fn misuse_double_free_medium() {
    misuse("double-free-medium");
}

/// A medium block freed twice by other threads (uncharged by the first).
#[test]
fn misuse_double_free_medium_remote() {
    misuse("double-free-medium-remote");
}

/// A medium block freed by two other threads at the same moment. Before the second push
/// was refused, about one run in five let both frees through ("undetected"); 20 runs.
#[test]
fn misuse_double_free_medium_racing() {
    for _ in 0..20 {
        misuse("double-free-medium-racing");
    }
}

/// Freed by its owner thread, then again by another thread.
#[test]
fn misuse_double_free_owner_then_remote() {
    misuse("double-free-owner-then-remote");
}

#[test]
fn misuse_double_free_remote_then_owner() {
    misuse("double-free-remote-then-owner");
}

#[test]
fn misuse_double_free_remote_twice() {
    misuse("double-free-remote-twice");
}

/// Freed twice in a row by another thread, whose first free still waits on its chain:
/// found when the owner collects the span.
#[test]
fn misuse_double_free_remote_pending() {
    misuse("double-free-remote-pending");
}

/// Every thread in a child group with a limit.
const LIMITED: [(&str, &str); 2] = [
    ("CGMALLOC_GROUPS", "/t:max=256M"),
    ("CGMALLOC_ATTACH", "/t"),
];

/// Freed by another thread, whose blocks its owner took back unchecked (without a walk,
/// their live bits still set), then freed again by the owner: found among the unchecked
/// blocks. In the root group and in a limited child group.
#[test]
fn misuse_double_free_unchecked_owner() {
    misuse("double-free-unchecked-owner");
    misuse_in("double-free-unchecked-owner", &LIMITED);
}

/// Freed by another thread whose free still waits on its chain, then by the owner
/// while the span holds unchecked blocks (so the owner's free waits on `local_free`):
/// the owner's collect of the pushed chain meets the block free. In the root group and
/// in a limited child group.
#[test]
fn misuse_double_free_owner_while_remote_pending() {
    misuse("double-free-owner-while-remote-pending");
    misuse_in("double-free-owner-while-remote-pending", &LIMITED);
}

/// As above, freed again by a third thread.
#[test]
fn misuse_double_free_unchecked_remote() {
    misuse("double-free-unchecked-remote");
    misuse_in("double-free-unchecked-remote", &LIMITED);
}

/// Both, in spans of 1 KiB and of 8 KiB blocks.
#[test]
fn misuse_double_free_unchecked_larger_blocks() {
    for mode in [
        "double-free-unchecked-owner-1k",
        "double-free-unchecked-owner-8k",
        "double-free-unchecked-remote-1k",
        "double-free-unchecked-remote-8k",
    ] {
        misuse(mode);
        misuse_in(mode, &LIMITED);
    }
}

/// A block start never handed out, freed by another thread: the live map shows it free
/// (the owner would take it in a list unchecked).
#[test]
fn misuse_double_free_never_handed_out_remote() {
    misuse("double-free-never-handed-out-remote");
    misuse_in("double-free-never-handed-out-remote", &LIMITED);
}

/// `realloc` and `malloc_usable_size` of a block freed by another thread and taken back
/// unchecked (its live bit still set): found among the unchecked blocks.
#[test]
fn misuse_after_free_unchecked() {
    for mode in [
        "realloc-after-free-unchecked",
        "usable-size-after-free-unchecked",
    ] {
        misuse(mode);
        misuse_in(mode, &LIMITED);
    }
}

/// Freed by a thread that has exited since (abandoned segment).
#[test]
fn misuse_double_free_abandoned() {
    misuse("double-free-abandoned");
}

#[test]
fn misuse_foreign_stack() {
    misuse("foreign-stack");
}

#[test]
fn misuse_foreign_static() {
    misuse("foreign-static");
}

#[test]
fn misuse_foreign_mmap() {
    misuse("foreign-mmap");
}

#[test]
fn misuse_interior() {
    misuse("interior");
}

#[test]
fn misuse_interior_large() {
    misuse("interior-large");
}

/// A pointer into a later slice of a multi-slice medium span.
#[test]
fn misuse_interior_medium() {
    misuse("interior-medium");
}

#[test]
fn misuse_realloc_foreign() {
    misuse("realloc-foreign");
}

#[test]
fn misuse_realloc_after_free_medium() {
    misuse("realloc-after-free-medium");
}

/// A small block the live map shows free.
#[test]
fn misuse_realloc_after_free_small() {
    misuse("realloc-after-free-small");
}

#[test]
fn misuse_usable_size_after_free_small() {
    misuse("usable-size-after-free-small");
}

/// A block start of a span that never handed that block out counts as free.
#[test]
fn misuse_double_free_never_handed_out() {
    misuse("double-free-never-handed-out");
}

#[test]
fn misuse_realloc_after_free_large() {
    misuse("realloc-after-free-large");
}

#[test]
fn misuse_usable_size_after_free_medium() {
    misuse("usable-size-after-free-medium");
}

#[test]
fn misuse_usable_size_interior() {
    misuse("usable-size-interior");
}
