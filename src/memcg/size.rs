//! Size strings (INTERFACE.md "Units and strings"): a decimal integer with an optional
//! `K`, `M`, `G` or `T` suffix (powers of 1024, either case), the word `max`, or `N%` of
//! the percent base: the container limit, or without one the machine's memory
//! (`MemTotal`), as the JVM's `MaxRAMPercentage` does. Leading and trailing white space and one trailing newline are
//! ignored; anything else is `EINVAL`, as is a value that overflows 64 bits.

#![forbid(unsafe_code)]

use crate::consts::{Pages, UNLIMITED};
use std::sync::atomic::{AtomicU64, Ordering};

pub const PAGE_SIZE: u64 = crate::consts::PAGE_SIZE as u64;

/// What `N%` is a share of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// The memory limit of the container (cgroup) the process runs in.
    ContainerLimit,
    /// The machine's memory, `MemTotal` of `/proc/meminfo`.
    MemTotal,
}

impl Base {
    /// Its key in the root's `memory.stat`.
    pub fn key(self) -> &'static str {
        match self {
            Base::ContainerLimit => "container_limit",
            Base::MemTotal => "mem_total",
        }
    }
}

/// The percent base in bytes, 0 when unknown; and which base it is (0 the container
/// limit, 1 `MemTotal`). Set once at start by the container probe.
static BASE_BYTES: AtomicU64 = AtomicU64::new(0);
static BASE_KIND: AtomicU64 = AtomicU64::new(0);

/// The percent base, if known.
pub fn percent_base() -> Option<(u64, Base)> {
    let kind = match BASE_KIND.load(Ordering::Relaxed) {
        0 => Base::ContainerLimit,
        _ => Base::MemTotal,
    };
    match BASE_BYTES.load(Ordering::Relaxed) {
        0 => None,
        v => Some((v, kind)),
    }
}

pub fn set_percent_base(base: Option<(u64, Base)>) {
    let (bytes, kind) = base.unwrap_or((0, Base::ContainerLimit));
    BASE_KIND.store(kind as u64, Ordering::Relaxed);
    BASE_BYTES.store(bytes, Ordering::Relaxed);
}

/// A parsed size: bytes, or no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    Max,
}

impl Size {
    /// Whole pages, rounded down; `UNLIMITED` for `max`.
    pub fn pages(self) -> Pages {
        match self {
            Size::Bytes(b) => b / PAGE_SIZE,
            Size::Max => UNLIMITED,
        }
    }
}

/// Why a size string was refused, for messages (`cgmalloc: CGMALLOC_X: <why>; ignored`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeError {
    Empty,
    Malformed,
    Overflow,
    NoBase,
}

impl SizeError {
    pub fn why(self) -> &'static str {
        match self {
            SizeError::Empty => "empty size",
            SizeError::Malformed => {
                "not a size (want a number with an optional K/M/G/T suffix, `max` or `N%`)"
            }
            SizeError::Overflow => "size too large",
            SizeError::NoBase => {
                "a percentage needs a container memory limit or the machine's MemTotal, \
                 and neither was found"
            }
        }
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    if let Some(r) = s.strip_suffix(b"\n") {
        s = r;
    }
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

fn parse_decimal(digits: &[u8]) -> Result<u64, SizeError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(SizeError::Malformed);
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|v| v.checked_add((d - b'0') as u64))
            .ok_or(SizeError::Overflow)
    })
}

/// Parses a size string against a given percent base (bytes).
pub fn parse_with(s: &[u8], base: Option<u64>) -> Result<Size, SizeError> {
    let s = trim(s);
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    if s == b"max" {
        return Ok(Size::Max);
    }
    if let Some(num) = s.strip_suffix(b"%") {
        let pct = parse_decimal(num)?;
        if pct > 100 {
            return Err(SizeError::Malformed);
        }
        let limit = base.ok_or(SizeError::NoBase)?;
        return Ok(Size::Bytes(((limit as u128 * pct as u128) / 100) as u64));
    }
    let (num, shift) = match s[s.len() - 1].to_ascii_uppercase() {
        b'K' => (&s[..s.len() - 1], 10),
        b'M' => (&s[..s.len() - 1], 20),
        b'G' => (&s[..s.len() - 1], 30),
        b'T' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let v = parse_decimal(num)?;
    v.checked_mul(1u64 << shift)
        .map(Size::Bytes)
        .ok_or(SizeError::Overflow)
}

/// Parses a size string against the process's percent base.
pub fn parse(s: &[u8]) -> Result<Size, SizeError> {
    parse_with(s, percent_base().map(|(bytes, _)| bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let ok: &[(&str, Size)] = &[
            ("0", Size::Bytes(0)),
            ("4096", Size::Bytes(4096)),
            ("512M", Size::Bytes(512 << 20)),
            ("512m", Size::Bytes(512 << 20)),
            ("1k", Size::Bytes(1024)),
            ("2G", Size::Bytes(2 << 30)),
            ("3t", Size::Bytes(3 << 40)),
            ("max", Size::Max),
            ("  7K \n", Size::Bytes(7 << 10)),
            ("\t9\n", Size::Bytes(9)),
            ("1K\n\n", Size::Bytes(1024)),
            ("18446744073709551615", Size::Bytes(u64::MAX)),
        ];
        for (s, want) in ok {
            assert_eq!(parse_with(s.as_bytes(), None), Ok(*want), "{s:?}");
        }
        let bad = [
            "",
            " ",
            "\n",
            "-1",
            "1.5G",
            "12Q",
            "M",
            "max max",
            "1 K",
            "MAX",
            "1KB",
            "0x10",
            "1 2",
            "+5",
            "1e3",
            "18446744073709551616",
            "17179869184G",
            "%",
            "101%",
        ];
        for s in bad {
            assert!(parse_with(s.as_bytes(), Some(1 << 30)).is_err(), "{s:?}");
        }
        assert_eq!(parse_with(b"50%", Some(1 << 30)), Ok(Size::Bytes(1 << 29)));
        assert_eq!(parse_with(b"50%", None), Err(SizeError::NoBase));
        assert_eq!(Size::Bytes(8191).pages(), 1);
        assert_eq!(Size::Max.pages(), UNLIMITED);
    }
}
