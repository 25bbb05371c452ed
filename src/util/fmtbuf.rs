//! `FmtBuf`: formats text into a caller's byte buffer without allocating, truncating what
//! does not fit while counting the full length (the `snprintf` contract).
//!
//! Invariant: `written <= buf.len()` and `total >= written`; `total` is the length the
//! text would have with an unbounded buffer.

#![forbid(unsafe_code)]

use core::fmt;

pub struct FmtBuf<'a> {
    buf: &'a mut [u8],
    written: usize,
    total: usize,
}

impl<'a> FmtBuf<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        FmtBuf {
            buf,
            written: 0,
            total: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.written;
        let n = room.min(bytes.len());
        self.buf[self.written..self.written + n].copy_from_slice(&bytes[..n]);
        self.written += n;
        self.total += bytes.len();
    }

    pub fn push_u64(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    /// Full length of the text pushed so far, truncated or not.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The bytes that fit.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.written]
    }
}

impl fmt::Write for FmtBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_and_counts() {
        let mut b = [0u8; 5];
        let mut f = FmtBuf::new(&mut b);
        f.push(b"abc");
        f.push_u64(12345);
        assert_eq!(f.total(), 8);
        assert_eq!(f.as_bytes(), b"abc12");
        let mut z = [0u8; 24];
        let mut g = FmtBuf::new(&mut z);
        g.push_u64(0);
        g.push(b" ");
        g.push_u64(u64::MAX);
        assert_eq!(g.as_bytes(), b"0 18446744073709551615");
    }
}
