//! Finding `libcgmalloc.so` and putting it in front of `LD_PRELOAD`.
//!
//! The library is `--lib PATH`, else `$CGMALLOC_LIB`, else `libcgmalloc.so` in the
//! directory of the launcher's own executable (where `cargo build --release` puts both).
//! It must be a readable file; its path is made absolute, since COMMAND may change
//! directory before it starts other programs that inherit `LD_PRELOAD`.

use crate::Fail;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Exit status when the library cannot be used (the same as a usage error).
const EXIT_NO_LIBRARY: u8 = 2;

const FIX: &str = "pass --lib PATH or set CGMALLOC_LIB to the path of libcgmalloc.so";

/// The absolute path of the library to preload, or why there is none.
pub fn locate(lib_option: Option<&Path>) -> Result<PathBuf, Fail> {
    let (path, source) = match (lib_option, std::env::var_os("CGMALLOC_LIB")) {
        (Some(p), _) => (p.to_path_buf(), "given by --lib"),
        (None, Some(p)) if !p.is_empty() => (PathBuf::from(p), "given by CGMALLOC_LIB"),
        _ => {
            let exe = std::env::current_exe().map_err(|e| {
                Fail::with_code(
                    EXIT_NO_LIBRARY,
                    format!("cannot find the launcher's own executable ({e}); {FIX}"),
                )
            })?;
            let dir = exe.parent().unwrap_or(Path::new("/"));
            (dir.join("libcgmalloc.so"), "beside the cgmalloc executable")
        }
    };
    let path = std::path::absolute(&path).unwrap_or(path);
    let unusable = |why: String| {
        Fail::with_code(
            EXIT_NO_LIBRARY,
            format!(
                "cannot use the library {} ({source}): {why}; {FIX}",
                path.display()
            ),
        )
    };
    match std::fs::File::open(&path).and_then(|f| f.metadata()) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(unusable("not a regular file".into())),
        Err(e) => return Err(unusable(e.to_string())),
    }
    // The dynamic loader splits LD_PRELOAD at colons and white space.
    if path
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|&c| c == b':' || c.is_ascii_whitespace())
    {
        return Err(unusable(
            "LD_PRELOAD cannot carry a path with ':' or white space".into(),
        ));
    }
    Ok(path)
}

/// `LD_PRELOAD` for COMMAND: the library, then the inherited value if any, unless the
/// library is already its first entry.
pub fn preload_value(lib: &Path, inherited: Option<OsString>) -> OsString {
    let lib = lib.as_os_str().as_bytes();
    let old = inherited.map(OsString::into_vec).unwrap_or_default();
    let first = old
        .split(|&c| c == b':' || c.is_ascii_whitespace())
        .find(|entry| !entry.is_empty());
    if first == Some(lib) {
        return OsString::from_vec(old);
    }
    let mut v = lib.to_vec();
    if old.iter().any(|&c| c != b':' && !c.is_ascii_whitespace()) {
        v.push(b':');
        v.extend_from_slice(&old);
    }
    OsString::from_vec(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload() {
        let lib = Path::new("/l/libcgmalloc.so");
        let v = |old: Option<&str>| {
            preload_value(lib, old.map(OsString::from))
                .into_string()
                .unwrap()
        };
        assert_eq!(v(None), "/l/libcgmalloc.so");
        assert_eq!(v(Some("")), "/l/libcgmalloc.so");
        assert_eq!(v(Some(" ")), "/l/libcgmalloc.so");
        assert_eq!(v(Some("/x.so")), "/l/libcgmalloc.so:/x.so");
        assert_eq!(v(Some("/l/libcgmalloc.so")), "/l/libcgmalloc.so");
        assert_eq!(
            v(Some("/l/libcgmalloc.so:/x.so")),
            "/l/libcgmalloc.so:/x.so"
        );
        assert_eq!(
            v(Some("/x.so:/l/libcgmalloc.so")),
            "/l/libcgmalloc.so:/x.so:/l/libcgmalloc.so"
        );
    }
}
