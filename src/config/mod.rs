//! Configuration from the environment (INTERFACE.md "Environment"), read once when the
//! library initialises: from an `.init_array` constructor when the library is loaded
//! (preloaded, linked, or the Rust crate's code linked into a program), before `main`.
//!
//! Order matters: the percent base first (`N%` sizes refer to it: the container limit, or
//! `MemTotal` without one), then the root's limits and OOM policy, then the groups, the
//! first thread's group (`CGMALLOC_ATTACH`, an addition to INTERFACE.md's list), the
//! thread-name rules, the exit table (`CGMALLOC_STATS`) and the record for the launcher's
//! run report (`CGMALLOC_REPORT`).
//!
//! Every malformed value prints one line `cgmalloc: CGMALLOC_X: <why>; ignored` and
//! leaves that setting unset; nothing here stops the program. Runs outside `malloc`, so
//! it may allocate (through whichever allocator the process uses).

mod groups;
mod stats;
pub mod threads;

use crate::memcg::{control, oom, size};
use std::sync::atomic::{AtomicBool, Ordering};

static DONE: AtomicBool = AtomicBool::new(false);

/// Reads and applies every `CGMALLOC_*` variable, once per process.
pub fn init() {
    if DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    crate::os::stderr::keep();
    container();
    for (name, file) in control::ROOT_LIMIT_VARS {
        let name = name.to_str().unwrap_or_default();
        if let Some(v) = var(name) {
            if let Err(why) = root_limit(file, &v) {
                warn(name, &why);
            }
        }
    }
    if let Some(v) = var("CGMALLOC_OOM") {
        match oom::Policy::parse(&v) {
            Some(p) => oom::set_root_default(p),
            None => warn("CGMALLOC_OOM", &bad_value(&v, "want fail, abort or force")),
        }
    }
    if let Some(v) = var("CGMALLOC_GROUPS") {
        if let Err(why) = groups::apply(&v) {
            warn("CGMALLOC_GROUPS", &why);
        }
    }
    if let Some(v) = var("CGMALLOC_ATTACH") {
        if let Err(why) = attach(&v) {
            warn("CGMALLOC_ATTACH", &why);
        }
    }
    if let Some(v) = var("CGMALLOC_THREADS") {
        if let Err(why) = threads::set_rules(&v) {
            warn("CGMALLOC_THREADS", &why);
        }
    }
    if let Some(v) = var("CGMALLOC_STATS") {
        if let Err(why) = stats::arm(&v) {
            warn("CGMALLOC_STATS", &why);
        }
    }
    if let Some(v) = var("CGMALLOC_REPORT") {
        if let Err(why) = stats::arm_report(&v) {
            warn("CGMALLOC_REPORT", &why);
        }
    }
    crate::memcg::charge::end_startup();
}

extern "C" fn init_at_load() {
    init();
}

// SAFETY (of the section): `.init_array` entries are `extern "C" fn()`, called once by
// the dynamic loader (or libc start-up) before `main`.
#[used]
#[link_section = ".init_array"]
static INIT_AT_LOAD: extern "C" fn() = init_at_load;

/// `CGMALLOC_CGROUP`: `auto` (the default) reads the container's limit, `off` does not,
/// and an absolute directory reads the cgroup files (and `proc/meminfo`) below it instead
/// of below `/` (a chroot's view, or a test's fixture tree). Without a container limit,
/// `N%` is a share of `MemTotal`.
fn container() {
    use crate::memcg::container;
    use size::Base;
    use std::os::unix::ffi::OsStrExt;
    let root = match var("CGMALLOC_CGROUP") {
        None => Some(b"/".to_vec()),
        Some(v) => match v.trim_ascii() {
            b"auto" => Some(b"/".to_vec()),
            b"off" => None,
            dir if dir.starts_with(b"/") => Some(dir.to_vec()),
            _ => {
                let why = "want auto, off or an absolute directory";
                warn("CGMALLOC_CGROUP", &bad_value(&v, why));
                Some(b"/".to_vec())
            }
        },
    };
    let dir = root.clone().unwrap_or_else(|| b"/".to_vec());
    let dir = std::path::Path::new(std::ffi::OsStr::from_bytes(&dir));
    let limit = root
        .and_then(|_| container::probe_at(dir))
        .map(|bytes| (bytes, Base::ContainerLimit));
    let base = limit.or_else(|| container::mem_total_at(dir).map(|b| (b, Base::MemTotal)));
    size::set_percent_base(base);
}

/// `CGMALLOC_ATTACH=PATH`: the process's first thread (the one loading the library)
/// starts in PATH, so the threads it creates do too.
fn attach(v: &[u8]) -> Result<(), String> {
    let group = control::open(v.trim_ascii()).map_err(|e| match e {
        libc::ENOENT => bad_value(v, "no such group (create it with CGMALLOC_GROUPS)"),
        _ => bad_value(v, "not a group path (/name/name...)"),
    })?;
    control::attach(group).map_err(|e| bad_value(v, crate::error::text(e)))?;
    Ok(())
}

fn root_limit(file: &str, v: &[u8]) -> Result<(), String> {
    size::parse(v).map_err(|e| bad_value(v, e.why()))?;
    control::write(control::root(), file.as_bytes(), v)
        .map_err(|e| format!("cannot set {file}: {}", crate::error::text(e)))
}

/// The value of `name`, if set.
fn var(name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    std::env::var_os(name).map(OsStringExt::into_vec)
}

/// `"<value>": <why>`, the value shown escaped and cut short.
pub(crate) fn bad_value(v: &[u8], why: &str) -> String {
    let shown: String = v.escape_ascii().to_string().chars().take(80).collect();
    format!("\"{shown}\": {why}")
}

/// The non-empty `;`-separated entries of `value`, trimmed, each parsed; the first that
/// does not parse voids the whole value.
pub(crate) fn entries<'a, T>(
    value: &'a [u8],
    parse: impl Fn(&'a [u8]) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    value
        .split(|&b| b == b';')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
        .map(parse)
        .collect()
}

/// `cgmalloc: <var>: <why>; ignored`, one line on stderr.
pub(crate) fn warn(var: &str, why: &str) {
    let line = format!("cgmalloc: {var}: {why}; ignored\n");
    crate::os::write_stderr(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_shown_escaped_and_cut_short() {
        assert_eq!(bad_value(b"12Q", "not a size"), "\"12Q\": not a size");
        assert_eq!(bad_value(b"a\"b\n\xff", "x"), "\"a\\\"b\\n\\xff\": x");
        let long = bad_value(&[b'x'; 200], "why");
        assert_eq!(long, format!("\"{}\": why", "x".repeat(80)));
    }

    #[test]
    fn entries_split_on_semicolons_and_skip_empty_ones() {
        let parse = |e: &[u8]| -> Result<Vec<u8>, String> {
            if e == b"bad" {
                Err("bad entry".into())
            } else {
                Ok(e.to_vec())
            }
        };
        assert_eq!(
            entries(b" a ;;b; ", parse).unwrap(),
            [b"a".to_vec(), b"b".to_vec()]
        );
        assert!(entries(b"", parse).unwrap().is_empty());
        assert_eq!(entries(b"a;bad;c", parse), Err("bad entry".to_string()));
    }
}
