//! Links `libcgmalloc.so` with `link/text.ld`, which places the code a typical process
//! never runs after the code it does run (see the script). Only the shared library
//! gets it; on targets other than Linux nothing is added.

fn main() {
    println!("cargo:rerun-if-changed=link/text.ld");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{dir}/link/text.ld");
    }
}
