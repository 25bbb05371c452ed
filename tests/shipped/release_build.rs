//! What a build for users contains: the library that `cargo build --release` makes
//! (`target/release/libcgmalloc.so`, default features) has none of the fault injection
//! that the tests drive through the `internals` feature. Its statics
//! (`cgmalloc::os::fault::WIDEN`, `BUDGET`) exist in every build that compiles the
//! injection in, so their absence from the symbol table shows that the race points and
//! the mapping failures are compiled out, not merely unused.

use crate::support::programs;
use std::process::Command;

/// Every symbol of the library, demangled (`nm -C`, the static symbol table included).
fn symbols() -> String {
    let so = programs::library();
    let out = programs::plain(Command::new(programs::need("nm")))
        .arg("-C")
        .arg(&so)
        .output()
        .unwrap();
    assert!(out.status.success(), "nm -C {} failed", so.display());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_shipped_library_has_no_fault_injection() {
    let syms = symbols();
    // The check reads the symbols of Rust items: a library stripped of them would pass
    // it without proving anything.
    assert!(
        syms.contains("cgmalloc::alloc::"),
        "the library has no symbols of the crate's own (stripped?)"
    );
    let injected: Vec<&str> = syms.lines().filter(|l| l.contains("os::fault::")).collect();
    assert!(
        injected.is_empty(),
        "the release library contains fault injection:\n{}",
        injected.join("\n")
    );
}
