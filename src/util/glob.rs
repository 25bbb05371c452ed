//! Shell-style glob matching of byte strings (thread names against `CGMALLOC_THREADS`):
//! `*` matches any run of bytes, `?` one byte, `[abc]`, `[a-z]` and `[!a-z]` (or `[^...]`)
//! one byte of, or not of, a set; `\x` matches `x` literally. No allocation.
//!
//! Matching is iterative with one backtrack point (the last `*`), so it runs in
//! O(pattern × text) time whatever the input.

#![forbid(unsafe_code)]

/// The set at the start of `p` (just after `[`): `(matched, bytes of p consumed)`, or
/// `None` if the set is not closed (then `[` is an ordinary byte).
fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let &lo = p.get(i)?;
        if lo == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        let lo = if lo == b'\\' {
            i += 1;
            *p.get(i)?
        } else {
            lo
        };
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = p[i + 2];
            hit |= lo <= c && c <= hi;
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
}

/// One pattern element at the start of `p` against byte `c`: `(matched, consumed)`.
fn single(p: &[u8], c: u8) -> (bool, usize) {
    match p[0] {
        b'?' => (true, 1),
        b'[' => match class(&p[1..], c) {
            Some((m, n)) => (m, n + 1),
            None => (c == b'[', 1),
        },
        b'\\' if p.len() > 1 => (p[1] == c, 2),
        lit => (lit == c, 1),
    }
}

/// True if `text` matches `pattern` as a whole.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while ti < text.len() {
        if pi < pattern.len() && pattern[pi] == b'*' {
            pi += 1;
            star = Some((pi, ti));
            continue;
        }
        if pi < pattern.len() {
            let (ok, n) = single(&pattern[pi..], text[ti]);
            if ok {
                pi += n;
                ti += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literals_and_wildcards() {
        assert!(matches(b"worker", b"worker"));
        assert!(!matches(b"worker", b"worker1"));
        assert!(matches(b"worker*", b"worker-12"));
        assert!(matches(b"worker*", b"worker"));
        assert!(matches(b"*", b""));
        assert!(!matches(b"?", b""));
        assert!(matches(b"w?rk*r", b"work-er"));
        assert!(matches(b"*-io-*", b"tokio-io-3"));
        assert!(!matches(b"*-io-*", b"tokio-3"));
        assert!(matches(b"a*b*c", b"axxbyybzc"));
        assert!(!matches(b"a*b*c", b"axxbyyb"));
    }

    #[test]
    fn sets_and_escapes() {
        assert!(matches(b"w[0-9]", b"w7"));
        assert!(!matches(b"w[0-9]", b"wx"));
        assert!(matches(b"w[!0-9]", b"wx"));
        assert!(!matches(b"w[^0-9]", b"w3"));
        assert!(matches(b"[]x]", b"]"));
        assert!(matches(b"[a-]", b"-"));
        assert!(matches(b"\\*", b"*"));
        assert!(!matches(b"\\*", b"x"));
        // An unclosed set is a literal `[`.
        assert!(matches(b"[ab", b"[ab"));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let text = [b'a'; 4096];
        let mut pat = [b'*'; 64];
        for i in (1..64).step_by(2) {
            pat[i] = b'a';
        }
        pat[63] = b'b';
        assert!(!matches(&pat, &text));
    }
}
