//! Links `libcgmalloc.so` with `link/text.ld`, which places the code a typical process
//! never runs after the code it does run (see the script). Only the shared library
//! gets it; on targets other than Linux nothing is added.
//!
//! On GNU/Linux the unwinder that std's backtraces use is linked in from the C
//! compiler's `libgcc_eh.a` rather than loaded from `libgcc_s.so.1`: the shared one is
//! mapped and relocated in every process the library is preloaded into (about 80 KiB of
//! resident pages), for code that runs only on a panic, which the library turns into an
//! abort. The static copy's symbols stay local to the library, and `link/text.ld` places
//! its code with std's symbolizer. Where the compiler names no such archive, or when
//! cross-compiling, std links `libgcc_s` as usual.

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
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{dir}/link/text.ld");
    // The C compiler found is the host's: its archive is only right for a native build.
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    if native && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu") {
        if let Some(archive) = static_unwinder() {
            let search = archive
                .parent()
                .expect("an absolute file path has a parent");
            // Named with the crate's own libraries, so the linker meets it before std's
            // `-lgcc_s` and takes the unwinder's symbols from it; `--as-needed` then
            // drops `libgcc_s`.
            println!("cargo:rustc-link-search=native={}", search.display());
            println!("cargo:rustc-link-lib=static=gcc_eh");
        }
    }
}
