//! The values the options carry: size strings, group paths, `--group` and `--thread`
//! specifications, OOM policies and enforce modes. Size strings and group paths are checked by the
//! library's own parsers (see `memcg.rs`), so the launcher accepts exactly what the
//! library will. Each check returns the value normalised for the environment (trimmed)
//! or the message for the `cgmalloc: ...` line.

use crate::memcg::path::GroupPath;
use crate::memcg::size::parse_with;

/// The keys a `--group` specification may set (`CGMALLOC_GROUPS`).
pub const GROUP_KEYS: [&str; 7] = ["max", "high", "low", "min", "soft_limit", "oom", "enforce"];

/// The values of `--oom` and of a group's `oom` key.
pub const OOM_POLICIES: [&str; 3] = ["fail", "abort", "force"];

/// A size string: a number with an optional K/M/G/T suffix, `max` or `N%`. A percentage
/// is resolved by the library against the container limit; here only its syntax counts.
pub fn size(value: &str) -> Result<String, String> {
    // Any container limit will do: it only decides what a valid percentage resolves to.
    match parse_with(value.as_bytes(), Some(1 << 40)) {
        Ok(_) => Ok(value.trim().to_string()),
        Err(e) => Err(format!("{:?} is not a valid size: {}", value, e.why())),
    }
}

/// A group path, `/` included when `root_ok`.
pub fn group_path(path: &str, root_ok: bool) -> Result<String, String> {
    const WANT: &str = "a group path is /name/name/..., names of 1-64 characters from \
                        [A-Za-z0-9_.-] other than . and .., at most 16 deep";
    const ROOT: &str = "\"/\" is the root group, which --group cannot configure (use --max, \
                        --high, --low, --min, --oom)";
    match GroupPath::parse(path.as_bytes()) {
        Ok(p) if p.is_root() && !root_ok => Err(ROOT.to_string()),
        Ok(_) => Ok(path.to_string()),
        Err(_) => Err(format!("{path:?} is not a valid group path ({WANT})")),
    }
}

/// `value` (trimmed) if it is one of `allowed`, else the message: `"x" is not WHAT (want
/// a, b or c)`.
fn one_of(value: &str, allowed: &[&str], what: &str) -> Result<String, String> {
    let v = value.trim();
    if allowed.contains(&v) {
        return Ok(v.to_string());
    }
    let (last, rest) = allowed.split_last().expect("a choice");
    Err(format!(
        "{value:?} is not {what} (want {} or {last})",
        rest.join(", ")
    ))
}

/// A `memory.enforce` mode: `on`, `warn` or `off` (the library's names, `wire.rs`).
pub fn enforce(value: &str) -> Result<String, String> {
    one_of(value, &crate::memcg::wire::ENFORCE_NAMES, "an enforce mode")
}

/// An OOM policy: `fail`, `abort` or `force`.
pub fn oom_policy(value: &str) -> Result<String, String> {
    one_of(value, &OOM_POLICIES, "an OOM policy")
}

/// `PATH:key=value,key=value` (or just `PATH`: create the group), one entry of
/// `CGMALLOC_GROUPS`. As in the library, empty settings are skipped.
pub fn group_spec(spec: &str) -> Result<String, String> {
    let (path, settings) = spec.split_once(':').unwrap_or((spec, ""));
    let path = group_path(path.trim(), false)?;
    let mut out = path.clone();
    let mut seen: Vec<&str> = Vec::new();
    for setting in settings.split(',').filter(|s| !s.trim().is_empty()) {
        let (key, value) = setting.split_once('=').ok_or_else(|| {
            format!(
                "{path}: {setting:?} is not KEY=VALUE (keys: {})",
                GROUP_KEYS.join(" ")
            )
        })?;
        let key = key.trim();
        if !GROUP_KEYS.contains(&key) {
            return Err(format!(
                "{path}: unknown key {key:?} (keys: {})",
                GROUP_KEYS.join(" ")
            ));
        }
        if seen.contains(&key) {
            return Err(format!("{path}: {key} is given twice"));
        }
        let value = match key {
            "oom" => oom_policy(value),
            "enforce" => enforce(value),
            _ => size(value),
        }
        .map_err(|e| format!("{path}: {key}: {e}"))?;
        out.push(if seen.is_empty() { ':' } else { ',' });
        seen.push(key);
        out.push_str(key);
        out.push('=');
        out.push_str(&value);
    }
    Ok(out)
}

/// `GLOB=PATH`, one entry of `CGMALLOC_THREADS`; PATH may be `/`. As in the library, the
/// last `=` separates them (a glob may contain `=`, a path cannot).
pub fn thread_spec(spec: &str) -> Result<String, String> {
    let (glob, path) = spec
        .rsplit_once('=')
        .ok_or_else(|| format!("{spec:?} is not GLOB=PATH (e.g. 'worker-*=/workers')"))?;
    let glob = glob.trim();
    if glob.is_empty() {
        return Err(format!("{spec:?}: the thread-name glob is empty"));
    }
    if glob.contains(';') {
        return Err(format!("{spec:?}: the glob may not contain ';'"));
    }
    let path = group_path(path.trim(), true)?;
    Ok(format!("{glob}={path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(" 256M ").unwrap(), "256M");
        for ok in [
            "0",
            "1k",
            "2G",
            "3t",
            "max",
            "50%",
            "100%",
            "18446744073709551615",
        ] {
            assert!(size(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "12Q",
            "-5",
            "99999999999999999999T",
            "101%",
            "1.5G",
            "MAX",
        ] {
            assert!(size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups() {
        assert_eq!(
            group_spec("/a/b: max = 1M ,oom=abort").unwrap(),
            "/a/b:max=1M,oom=abort"
        );
        assert!(group_spec("/a:soft_limit=max,high=10%,low=1K,min=0").is_ok());
        assert_eq!(group_spec("/a").unwrap(), "/a");
        assert_eq!(group_spec("/a:").unwrap(), "/a");
        assert_eq!(group_spec("/a:,max=1M,").unwrap(), "/a:max=1M");
        for bad in [
            "/",
            "/:max=1M",
            "/a/../b:max=1M",
            "a:max=1M",
            "/a:bogus=1",
            "/a:max=12Q",
            "/a:oom=maybe",
            "/a:max=1M,max=2M",
            "/a:max",
        ] {
            assert!(group_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn threads() {
        assert_eq!(thread_spec("worker-*=/w").unwrap(), "worker-*=/w");
        assert_eq!(thread_spec("main=/").unwrap(), "main=/");
        assert_eq!(thread_spec(" a=b = /w").unwrap(), "a=b=/w");
        for bad in ["worker", "=/w", "w=", "w=/a/../b", "a;b=/w"] {
            assert!(thread_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn oom() {
        assert_eq!(oom_policy("abort").unwrap(), "abort");
        assert!(oom_policy("retry").is_err());
    }
}
