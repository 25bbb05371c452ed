//! `CGMALLOC_GROUPS=PATH:key=value,key=value;PATH:...`: groups to create at start, with
//! keys `max high low min soft_limit` (size strings) and `oom` (`fail|abort|force`).
//!
//! The whole value is checked before anything is created: one malformed entry and the
//! variable is ignored. Missing ancestors are created too (`/a/b` creates `/a`); a group
//! that already exists gets the settings. Empty entries (`;;`, a trailing `;`) are
//! allowed.

#![forbid(unsafe_code)]

use super::{bad_value, entries};
use crate::error;
use crate::memcg::path::GroupPath;
use crate::memcg::{control, oom, size};

/// One checked entry: a path and its `(file, value)` writes.
struct Entry<'a> {
    path: &'a [u8],
    writes: Vec<(&'static str, &'a [u8])>,
}

fn file_of(key: &[u8]) -> Option<&'static str> {
    Some(match key {
        b"max" => "memory.max",
        b"high" => "memory.high",
        b"low" => "memory.low",
        b"min" => "memory.min",
        b"soft_limit" => "memory.soft_limit_in_bytes",
        b"oom" => "memory.oom.policy",
        b"enforce" => "memory.enforce",
        _ => return None,
    })
}

fn parse_entry(entry: &[u8]) -> Result<Entry<'_>, String> {
    let (path, settings) = match entry.iter().position(|&b| b == b':') {
        Some(i) => (&entry[..i], &entry[i + 1..]),
        None => (entry, &b""[..]),
    };
    GroupPath::parse(path).map_err(|_| bad_value(path, "not a group path (/name/name...)"))?;
    let mut writes = Vec::new();
    for kv in settings.split(|&b| b == b',').filter(|kv| !kv.is_empty()) {
        let Some(eq) = kv.iter().position(|&b| b == b'=') else {
            return Err(bad_value(kv, "want key=value"));
        };
        let (key, value) = (kv[..eq].trim_ascii(), kv[eq + 1..].trim_ascii());
        let file = file_of(key).ok_or_else(|| {
            bad_value(
                key,
                "unknown key (want max, high, low, min, soft_limit, oom or enforce)",
            )
        })?;
        if key == b"oom" {
            oom::Policy::parse(value)
                .ok_or_else(|| bad_value(value, "want fail, abort or force"))?;
        } else if key == b"enforce" {
            if !matches!(value, b"on" | b"warn" | b"off") {
                return Err(bad_value(value, "want on, warn or off"));
            }
        } else {
            size::parse(value).map_err(|e| bad_value(value, e.why()))?;
        }
        writes.push((file, value));
    }
    Ok(Entry { path, writes })
}

/// Creates `path` and its missing ancestors; returns its handle (an existing group's,
/// the root's for `/`).
fn create_all(path: &[u8]) -> Result<u64, i32> {
    for (i, &b) in path.iter().enumerate().skip(1) {
        if b == b'/' {
            match control::create(&path[..i]) {
                Ok(_) | Err(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
    }
    match control::create(path) {
        Err(libc::EEXIST) => control::open(path),
        r => r,
    }
}

/// Checks the whole value, then creates and configures every group.
pub fn apply(value: &[u8]) -> Result<(), String> {
    let parsed = entries(value, parse_entry)?;
    let mut failed = Vec::new();
    for e in &parsed {
        let shown = String::from_utf8_lossy(e.path);
        match create_all(e.path) {
            Ok(g) => {
                for (file, v) in &e.writes {
                    if let Err(err) = control::write(g, file.as_bytes(), v) {
                        failed.push(format!("{shown}: {file}: {}", error::text(err)));
                    }
                }
            }
            Err(err) => failed.push(format!("{shown}: {}", error::text(err))),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("could not apply {}", failed.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_into_paths_and_file_writes() {
        let e = parse_entry(b"/a/b:max=64M, high = 48M ,oom=force,,soft_limit=1G").unwrap();
        assert_eq!(e.path, b"/a/b");
        let writes: Vec<(&str, &[u8])> = e.writes.iter().map(|&(f, v)| (f, v)).collect();
        assert_eq!(
            writes,
            [
                ("memory.max", &b"64M"[..]),
                ("memory.high", b"48M"),
                ("memory.oom.policy", b"force"),
                ("memory.soft_limit_in_bytes", b"1G"),
            ]
        );
        let bare = parse_entry(b"/x").unwrap();
        assert_eq!((bare.path, bare.writes.len()), (&b"/x"[..], 0));
        assert_eq!(parse_entry(b"/x:").unwrap().writes.len(), 0);
        for key in ["max", "high", "low", "min", "soft_limit", "oom", "enforce"] {
            assert!(file_of(key.as_bytes()).is_some(), "{key}");
        }
        assert_eq!(file_of(b"memory.max"), None);
    }

    #[test]
    fn malformed_entries_say_why() {
        for (entry, why) in [
            ("a:max=1M", "not a group path"),
            ("/a/:max=1M", "not a group path"),
            ("/a:max", "want key=value"),
            ("/a:limit=1M", "unknown key"),
            ("/a:max=lots", "not a size"),
            ("/a:max=", "empty size"),
            ("/a:oom=retry", "want fail, abort or force"),
        ] {
            let err = parse_entry(entry.as_bytes()).err().unwrap();
            assert!(err.contains(why), "{entry}: {err}");
        }
        // One bad entry voids the whole value.
        assert!(entries(b"/a:max=1M;/b:max=x", parse_entry).is_err());
        assert_eq!(entries(b";/a;; /b ;", parse_entry).unwrap().len(), 2);
    }
}
