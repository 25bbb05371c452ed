//! Group paths: `/` or `/name/name/...`, names of 1–64 bytes from `[A-Za-z0-9_.-]`, not
//! `.` or `..`, at most 16 deep (INTERFACE.md). Parsing borrows the caller's bytes and
//! never allocates.

#![forbid(unsafe_code)]

use crate::consts::{MAX_DEPTH, NAME_MAX};

/// A validated path: its names, root first.
#[derive(Clone, Copy)]
pub struct GroupPath<'a> {
    names: [&'a [u8]; MAX_DEPTH],
    n: usize,
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name != b"."
        && name != b".."
        && name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

impl<'a> GroupPath<'a> {
    /// Parses `path`; `EINVAL` for anything but the grammar above.
    pub fn parse(path: &'a [u8]) -> Result<Self, i32> {
        let mut out = GroupPath {
            names: [&[]; MAX_DEPTH],
            n: 0,
        };
        if path == b"/" {
            return Ok(out);
        }
        let rest = path.strip_prefix(b"/").ok_or(libc::EINVAL)?;
        for name in rest.split(|&c| c == b'/') {
            if !valid_name(name) || out.n == MAX_DEPTH {
                return Err(libc::EINVAL);
            }
            out.names[out.n] = name;
            out.n += 1;
        }
        Ok(out)
    }

    pub fn names(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.names[..self.n].iter().copied()
    }

    /// Whether this is `/` (the launcher, which includes this file, refuses it where a
    /// group is to be created).
    #[allow(dead_code)]
    pub fn is_root(&self) -> bool {
        self.n == 0
    }

    /// The parent path and the last name; `None` for the root.
    pub fn split_last(&self) -> Option<(GroupPath<'a>, &'a [u8])> {
        if self.n == 0 {
            return None;
        }
        let mut parent = *self;
        parent.n -= 1;
        Some((parent, self.names[self.n - 1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert_eq!(GroupPath::parse(b"/").unwrap().names().count(), 0);
        let p = GroupPath::parse(b"/a/b-c/d.e_F9").unwrap();
        assert_eq!(p.names().count(), 3);
        let (parent, last) = p.split_last().unwrap();
        assert_eq!(last, b"d.e_F9");
        assert_eq!(parent.names().count(), 2);
        let long = [b'x'; 64];
        let mut ok = b"/".to_vec();
        ok.extend_from_slice(&long);
        assert!(GroupPath::parse(&ok).is_ok());
        ok.push(b'x');
        assert!(GroupPath::parse(&ok).is_err());
        let deep16 = "/a".repeat(16);
        assert!(GroupPath::parse(deep16.as_bytes()).is_ok());
        let deep17 = "/a".repeat(17);
        assert!(GroupPath::parse(deep17.as_bytes()).is_err());
        for bad in [
            "", "a", "//", "/a/", "/a//b", "/.", "/..", "/a/../b", "/a b", "/a\n", "/é", "/a/*",
        ] {
            assert_eq!(
                GroupPath::parse(bad.as_bytes()).err(),
                Some(libc::EINVAL),
                "{bad:?}"
            );
        }
    }
}
