//! The malloc family's contract (INTERFACE.md "The malloc family"): `tests/c/conformance.c`
//! preloaded, linked, and preloaded under valgrind memcheck.

use crate::compile;
use crate::support::programs::{self, linked, need, preloaded, run, Run, Scratch, TIMEOUT};
use std::process::Command;
use std::time::Duration;

/// The `N` of the conformance program's "N passed, 0 failed" line.
fn conformance_result(r: &Run, what: &str) -> usize {
    r.assert_success(what);
    let out = r.stdout();
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or_else(|| panic!("{what}: no summary line: {}", r.describe()));
    let mut words = line.split_whitespace();
    let passed: usize = words.next().unwrap().parse().unwrap();
    assert_eq!(line, format!("{passed} passed, 0 failed"), "{what}");
    assert!(passed >= 60, "{what}: only {passed} assertions ran");
    passed
}

#[test]
fn conformance_preloaded() {
    let dir = Scratch::new("conformance-preloaded");
    let exe = compile(&dir, "conformance.c", "conformance", &[]);
    let r = run(&mut preloaded(Command::new(&exe)), None, TIMEOUT);
    let n = conformance_result(&r, "conformance (LD_PRELOAD)");
    eprintln!("conformance (LD_PRELOAD): {n} passed in {:.1?}", r.elapsed);
}

/// Linked with `-lcgmalloc`. The run path is a DT_RPATH (`--disable-new-dtags`) and
/// `LD_LIBRARY_PATH` is cleared: cargo points `LD_LIBRARY_PATH` at `target/release/deps`,
/// which holds the `--no-default-features` build of the same library (no `malloc`).
#[test]
fn conformance_linked() {
    let dir = Scratch::new("conformance-linked");
    let link = programs::link_flags();
    let exe = compile(&dir, "conformance.c", "conformance-linked", &link);
    let r = run(&mut linked(Command::new(&exe)), None, TIMEOUT);
    let n = conformance_result(&r, "conformance (linked with -lcgmalloc)");
    eprintln!("conformance (linked): {n} passed in {:.1?}", r.elapsed);
}

/// memcheck over the conformance program with the library preloaded. With
/// `--soname-synonyms=somalloc=nouserintercepts` valgrind leaves our malloc alone (it
/// only replaces libc's), so memcheck checks the allocator's own code: reads and writes
/// outside mappings, uninitialised values in its decisions, bad system call arguments.
#[test]
fn valgrind_conformance() {
    let valgrind = need("valgrind");
    let dir = Scratch::new("valgrind");
    let exe = compile(&dir, "conformance.c", "conformance", &[]);
    let mut cmd = preloaded(Command::new(valgrind));
    cmd.args([
        "--error-exitcode=99",
        "--soname-synonyms=somalloc=nouserintercepts",
        "--trace-children=no",
        "-q",
    ])
    .arg(&exe);
    let r = run(&mut cmd, None, Duration::from_secs(180));
    let summary_errors = r.stderr.lines().any(|l| {
        l.split_once("ERROR SUMMARY: ")
            .is_some_and(|(_, rest)| rest.starts_with(|c: char| c.is_ascii_digit() && c != '0'))
    });
    assert!(
        r.status.code() != Some(99) && !summary_errors,
        "valgrind memcheck found errors: {}",
        r.describe()
    );
    let n = conformance_result(&r, "conformance under valgrind (memcheck clean)");
    eprintln!("valgrind: 0 errors, {n} passed in {:.1?}", r.elapsed);
}
