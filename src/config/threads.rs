//! `CGMALLOC_THREADS=GLOB=PATH;GLOB=PATH`: a thread whose name (`pthread_setname_np`)
//! matches GLOB is attached to the group at PATH; the first matching rule wins, and a
//! name that matches none leaves the thread where it is.
//!
//! Rules are checked once at start (one malformed rule and the variable is ignored);
//! the groups are looked up when a thread is named, so they may be created later. The
//! calling thread moves at once; another thread moves at its next span refill or
//! large-cache miss (it must have been seen by cgmalloc, i.e. have allocated or
//! attached).
//!
//! Only builds with `override` interpose `pthread_setname_np`; without it the rules are
//! checked but never consulted.

#![forbid(unsafe_code)]
#![cfg_attr(not(feature = "override"), allow(dead_code))]

use super::{bad_value, entries, warn};
use crate::memcg::path::GroupPath;
use crate::memcg::{control, threads};
use crate::util::glob;
use std::sync::OnceLock;

struct Rule {
    glob: Vec<u8>,
    path: Vec<u8>,
}

static RULES: OnceLock<Vec<Rule>> = OnceLock::new();

fn parse_rule(rule: &[u8]) -> Result<Rule, String> {
    let Some(eq) = rule.iter().rposition(|&b| b == b'=') else {
        return Err(bad_value(rule, "want GLOB=PATH"));
    };
    let (g, path) = (rule[..eq].trim_ascii(), rule[eq + 1..].trim_ascii());
    if g.is_empty() {
        return Err(bad_value(rule, "empty glob"));
    }
    GroupPath::parse(path).map_err(|_| bad_value(path, "not a group path (/name/name...)"))?;
    Ok(Rule {
        glob: g.to_vec(),
        path: path.to_vec(),
    })
}

/// Checks and installs the rules.
pub fn set_rules(value: &[u8]) -> Result<(), String> {
    let rules = entries(value, parse_rule)?;
    let _ = RULES.set(rules);
    Ok(())
}

/// A thread was named `name`: attach it to the group of the first matching rule.
/// `is_self` says whether it is the calling thread; otherwise `pthread` identifies it.
pub fn on_named(pthread: libc::pthread_t, is_self: bool, name: &[u8]) {
    let Some(rules) = RULES.get() else {
        return;
    };
    let Some(rule) = rules.iter().find(|r| glob::matches(&r.glob, name)) else {
        return;
    };
    let Ok(group) = control::open(&rule.path) else {
        let why = format!(
            "thread \"{}\": no group {}",
            name.escape_ascii(),
            String::from_utf8_lossy(&rule.path)
        );
        warn("CGMALLOC_THREADS", &why);
        return;
    };
    if is_self {
        let _ = control::attach(group);
    } else {
        threads::request_attach(pthread, group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_glob_equals_path() {
        let r = parse_rule(b" io-* = /io ").unwrap();
        assert_eq!((&r.glob[..], &r.path[..]), (&b"io-*"[..], &b"/io"[..]));
        // The last `=` splits, so a glob may contain one.
        let r = parse_rule(b"a=b=/x").unwrap();
        assert_eq!((&r.glob[..], &r.path[..]), (&b"a=b"[..], &b"/x"[..]));
        for (rule, why) in [
            ("io-*", "want GLOB=PATH"),
            ("=/io", "empty glob"),
            ("io-*=io", "not a group path"),
            ("io-*=/", ""),
        ] {
            match parse_rule(rule.as_bytes()) {
                Err(err) => assert!(!why.is_empty() && err.contains(why), "{rule}: {err}"),
                Ok(_) => assert!(why.is_empty(), "{rule} was accepted"),
            }
        }
        let rules = entries(b"w-[0-9]*=/a;;*=/", parse_rule).unwrap();
        assert_eq!(rules.len(), 2);
        assert!(entries(b"w*=/a;bad", parse_rule).is_err());
    }
}
