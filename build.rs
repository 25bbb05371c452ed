//! Links `libcgmalloc.so` with `link/text.ld`, which places the code a typical process
//! never runs after the code it does run (see the script). Only the shared library
//! gets it; on targets other than Linux nothing is added.
//!
//! On GNU/Linux, in a build that exports the malloc family (the `override` feature: the
//! preloadable library), the unwinder that std's backtraces use is linked in from the C
//! compiler's `libgcc_eh.a` rather than loaded from `libgcc_s.so.1`: the shared one is
//! mapped and relocated in every process the library is preloaded into (about 80 KiB of
//! resident pages), for code that runs only on a panic, which the library turns into an
//! abort. The static copy's symbols stay local to the library, and `link/text.ld` places
//! its code with std's symbolizer. A Rust program that links the crate with `override`
//! gets its own static copy too (the archive travels with the crate; the `-u` below does
//! not, so under GNU ld such a program may still load `libgcc_s` as well).
//! Without `override`, where the compiler names no such archive, or when
//! cross-compiling, std links `libgcc_s` as usual. `CGMALLOC_STATIC_UNWINDER` (the
//! archive's path, or empty) tells the crate's tests what a build with `override` links.

use std::path::PathBuf;
use std::process::Command;

/// The C compiler's `libgcc_eh.a`, if it has one.
fn static_unwinder() -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let out = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // Without the archive the compiler prints the bare name back.
    (out.status.success() && path.is_absolute() && path.is_file()).then_some(path)
}

fn main() {
    println!("cargo:rerun-if-changed=link/text.ld");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{dir}/link/text.ld");
    }
    // The C compiler found is the host's: its archive is only right for a native build.
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let archive = (linux && native && gnu).then(static_unwinder).flatten();
    let shown = archive.as_ref().map(|a| a.display().to_string());
    println!(
        "cargo:rustc-env=CGMALLOC_STATIC_UNWINDER={}",
        shown.as_deref().unwrap_or("")
    );
    let Some(archive) = archive else {
        return;
    };
    // A compiler upgrade moves the archive: find it again.
    println!("cargo:rerun-if-changed={}", archive.display());
    if std::env::var_os("CARGO_FEATURE_OVERRIDE").is_none() {
        return;
    }
    let search = archive
        .parent()
        .expect("an absolute file path has a parent");
    // Named with the crate's own libraries, so that lld, which remembers what an archive
    // holds, takes the unwinder's symbols from it before std's `-lgcc_s`; the `-u` makes
    // GNU ld, which searches an archive only where it meets it, take them too.
    // `--as-needed` then drops `libgcc_s`.
    println!("cargo:rustc-link-search=native={}", search.display());
    println!("cargo:rustc-link-lib=static=gcc_eh");
    println!("cargo:rustc-link-arg=-Wl,-u,_Unwind_Resume");
}
