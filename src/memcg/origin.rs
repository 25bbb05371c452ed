//! Where an uncharge comes from: the holder of the charge (a span, a large mapping, a
//! stock, an explicit charge), its state and the charge it had recorded, so that a page
//! counter underflow — a bug in cgmalloc — names its source in the fatal line.
//!
//! Built by the holder when it gives its charge back; never stored.

#![forbid(unsafe_code)]

use crate::util::fmtbuf::FmtBuf;

/// The holder an uncharge comes from.
#[derive(Clone, Copy)]
pub struct Origin {
    /// What held the charge: `small span`, `medium span`, `large mapping`, `stock`, ...
    pub what: &'static str,
    /// Its state when it gave the charge back (`ACTIVE`, `CACHED`, ...), or empty.
    pub state: &'static str,
    /// Its address (0 when it has none).
    pub addr: usize,
    /// The group and pages it had recorded before this uncharge.
    pub recorded: (u32, u64),
}

impl Origin {
    /// An uncharge whose holder records nothing beyond the counters.
    pub const fn plain(what: &'static str) -> Origin {
        Origin {
            what,
            state: "",
            addr: 0,
            recorded: (u32::MAX, 0),
        }
    }

    /// ` from <what> [<state>] at 0x<addr> (recorded: N pages of group G)`.
    pub fn describe(&self, out: &mut FmtBuf<'_>) {
        out.push(b"; from ");
        out.push(self.what.as_bytes());
        if !self.state.is_empty() {
            out.push(b" ");
            out.push(self.state.as_bytes());
        }
        if self.addr != 0 {
            out.push(b" at 0x");
            push_hex(out, self.addr as u64);
        }
        let (g, pages) = self.recorded;
        if g != u32::MAX {
            out.push(b", which recorded ");
            out.push_u64(pages);
            out.push(b" pages of group ");
            out.push_u64(g as u64);
        }
    }
}

fn push_hex(out: &mut FmtBuf<'_>, v: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(v & 15) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.push(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_holder_and_its_record() {
        let o = Origin {
            what: "medium span",
            state: "ACTIVE",
            addr: 0x7f00_1234_0000,
            recorded: (3, 16),
        };
        let mut buf = [0u8; 128];
        let mut out = FmtBuf::new(&mut buf);
        o.describe(&mut out);
        assert_eq!(
            out.as_bytes(),
            b"; from medium span ACTIVE at 0x7f0012340000, which recorded 16 pages of group 3"
        );
        let mut buf = [0u8; 64];
        let mut out = FmtBuf::new(&mut buf);
        Origin::plain("stock").describe(&mut out);
        assert_eq!(out.as_bytes(), b"; from stock");
    }
}
