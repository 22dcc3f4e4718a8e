//! Byte-level framing: the one tokenizer, the one "a command line starts here" test, limits,
//! and the [`Framer`] that cuts a byte stream into frames. No protocol meaning lives here:
//! which command carries a payload is asked of a [`Rules`] implementation (the protocol
//! layer answers from the dissector tables and the negotiated dialect).

pub mod framer;

pub use framer::{DesyncInfo, DesyncReason, Eol, Frame, Framer, Item, PayloadSpan, Plan, Rules};

/// Bounds that keep hostile input cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line accepted, without its line ending.
    pub max_line: usize,
    /// Largest payload that will be buffered.
    pub max_payload: usize,
    /// Largest payload that will be guessed for an unknown command.
    pub max_guess: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_payload: 1024 * 1024,
            max_guess: 64 * 1024,
        }
    }
}

/// The byte range of one token inside its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tok {
    pub start: u32,
    pub end: u32,
}

impl Tok {
    pub fn of<'a>(&self, line: &'a [u8]) -> &'a [u8] {
        &line[self.start as usize..self.end as usize]
    }
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Token ranges of a line; the first is the command name. Lines of up to a dozen tokens
/// (nearly all) need no allocation.
pub type Toks = smallvec::SmallVec<[Tok; 12]>;

/// The arguments of a command line (its tokens after the name), by index.
#[derive(Debug, Clone, Copy)]
pub struct Args<'a, 't> {
    line: &'a [u8],
    toks: &'t [Tok],
    /// The line as text, when it is UTF-8: tokens are then cut from it without checks.
    text: Option<&'a str>,
}

impl<'a, 't> Args<'a, 't> {
    /// `toks` are all the tokens of `line`, the name first.
    pub fn of_line(line: &'a [u8], toks: &'t [Tok]) -> Args<'a, 't> {
        Args {
            line,
            toks: toks.get(1..).unwrap_or(&[]),
            text: None,
        }
    }
    /// As [`Args::of_line`], for a line already known to be this text.
    pub fn of_text(text: &'a str, toks: &'t [Tok]) -> Args<'a, 't> {
        Args {
            line: text.as_bytes(),
            toks: toks.get(1..).unwrap_or(&[]),
            text: Some(text),
        }
    }
    /// The `i`th argument as text (invalid UTF-8 replaced).
    pub fn str(&self, i: usize) -> Option<std::borrow::Cow<'a, str>> {
        let t = self.toks.get(i)?;
        match self.text.and_then(|s| s.get(t.range())) {
            Some(s) => Some(std::borrow::Cow::Borrowed(s)),
            None => Some(match std::str::from_utf8(t.of(self.line)) {
                Ok(s) => std::borrow::Cow::Borrowed(s),
                Err(_) => {
                    std::borrow::Cow::Owned(String::from_utf8_lossy(t.of(self.line)).into_owned())
                }
            }),
        }
    }
    pub fn len(&self) -> usize {
        self.toks.len()
    }
    pub fn is_empty(&self) -> bool {
        self.toks.is_empty()
    }
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.toks.get(i).map(|t| t.of(self.line))
    }
    pub fn tok(&self, i: usize) -> Option<Tok> {
        self.toks.get(i).copied()
    }
    pub fn last(&self) -> Option<&'a [u8]> {
        self.toks.last().map(|t| t.of(self.line))
    }
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.toks.iter().map(|t| t.of(self.line))
    }
}

/// The one tokenizer: tokens are separated by one or more spaces. Lines are read eight bytes
/// at a time (the spaces of a word found at once), since it runs on every frame and on every
/// rendered command's `args`.
pub fn tokenize(line: &[u8], out: &mut Toks) {
    out.clear();
    let n = line.len();
    // Where the current token would start: one past the last space seen.
    let mut from = 0;
    let mut cut = |p: usize, out: &mut Toks| {
        if p > from {
            out.push(Tok {
                start: from as u32,
                end: p as u32,
            });
        }
        from = p + 1;
    };
    let mut i = 0;
    while let Some(w) = line.get(i..i + 8) {
        let mut m = spaces(u64::from_le_bytes(w.try_into().unwrap_or_default()));
        while m != 0 {
            cut(i + (m.trailing_zeros() / 8) as usize, out);
            m &= m - 1;
        }
        i += 8;
    }
    if i < n && n >= 8 {
        // The last word overlaps the previous one; its first bytes are already done.
        let w = line
            .get(n - 8..)
            .and_then(|w| w.try_into().ok())
            .unwrap_or_default();
        let mut m = spaces(u64::from_le_bytes(w)) & (!0u64 << (8 * (i - (n - 8))));
        while m != 0 {
            cut(n - 8 + (m.trailing_zeros() / 8) as usize, out);
            m &= m - 1;
        }
    } else {
        for (j, &b) in line.iter().enumerate().skip(i) {
            if b == b' ' {
                cut(j, out);
            }
        }
    }
    cut(n, out);
}

/// The high bit of each byte of `w` that is a space, exactly (no borrow between bytes).
#[inline(always)]
fn spaces(w: u64) -> u64 {
    const LOW7: u64 = u64::from_le_bytes([0x7f; 8]);
    let x = w ^ u64::from_le_bytes([b' '; 8]);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Tokens of a text line (the same rule as [`tokenize`]): the runs of bytes other than a
/// space. A byte loop, not `split(' ')`: the tokens are a few bytes long, and `str::split`
/// set up a searcher per token (about 600 instructions to reach the fourth argument).
pub fn tokens(line: &str) -> Tokens<'_> {
    Tokens { rest: line }
}

/// The iterator of [`tokens`].
#[derive(Clone, Debug)]
pub struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let b = self.rest.as_bytes();
        let start = b.iter().position(|&c| c != b' ')?;
        let end = b[start..]
            .iter()
            .position(|&c| c == b' ')
            .map_or(b.len(), |i| start + i);
        // Both ends are at a space or at an end of the string: char boundaries.
        let tok = self.rest.get(start..end)?;
        self.rest = self.rest.get(end..).unwrap_or_default();
        Some(tok)
    }
}

/// Is `b` a command name: three upper-case letters or three digits?
pub fn is_command_name(b: &[u8]) -> bool {
    b.len() >= 3
        && (b[..3].iter().all(u8::is_ascii_uppercase) || b[..3].iter().all(u8::is_ascii_digit))
}

/// Does `line` (without its line ending) start with a well-formed command token?
pub fn is_command_line(line: &[u8]) -> bool {
    is_command_name(line) && (line.len() == 3 || line[3] == b' ')
}

/// The one "a command line starts here" test: a name (three upper-case letters that
/// `known` accepts, or three digits) followed by a space or a line end. None when more
/// bytes are needed to tell; at the end of the stream (`eof`) a bare name counts.
pub fn line_starts(b: &[u8], eof: bool, known: impl Fn(&[u8]) -> bool) -> Option<bool> {
    let digits = b.first().is_some_and(u8::is_ascii_digit);
    for &c in &b[..b.len().min(3)] {
        let ok = if digits {
            c.is_ascii_digit()
        } else {
            c.is_ascii_uppercase()
        };
        if !ok {
            return Some(false);
        }
    }
    if b.len() < 4 {
        if !eof {
            return None;
        }
        return Some(b.len() == 3 && (digits || known(&b[..3])));
    }
    Some(matches!(b[3], b' ' | b'\r' | b'\n') && (digits || known(&b[..3])))
}

/// Parses an unsigned decimal token (no sign, no spaces), at most 20 digits.
pub fn parse_len(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() || tok.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in tok {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// [`parse_len`] of a text token.
pub fn parse_num(tok: &str) -> Option<u64> {
    parse_len(tok.as_bytes())
}

/// Finds the next LF in `b`.
pub fn find_lf(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tokens() {
        assert!(is_command_line(b"VER 1 MSNP8"));
        assert!(is_command_line(b"OUT"));
        assert!(is_command_line(b"911 3"));
        assert!(!is_command_line(b"Ver 1"));
        assert!(!is_command_line(b"MIME-Version: 1.0"));
        assert!(!is_command_line(b"9A1 3"));
        assert!(!is_command_line(b"VE"));
    }

    #[test]
    fn tokenizer_skips_runs_of_spaces() {
        let mut t = Toks::new();
        let line = b"  MSG 1  N 12 ";
        tokenize(line, &mut t);
        let v: Vec<&[u8]> = t.iter().map(|x| x.of(line)).collect();
        assert_eq!(v, [&b"MSG"[..], b"1", b"N", b"12"]);
        assert_eq!(
            tokens("  MSG 1  N 12 ").collect::<Vec<_>>(),
            ["MSG", "1", "N", "12"]
        );
        tokenize(b"", &mut t);
        assert!(t.is_empty());
        // `tokens` against the rule it replaces, on lines with tabs, non-ASCII and every
        // spacing at the ends.
        for line in [
            "",
            " ",
            "   ",
            "a",
            " a",
            "a ",
            "  a  b\tc  ",
            "USR 1 MD5 S 1013928519.693957190",
            "MSG 3 N 12\r",
            "ÄÖ x  ü ",
            "\u{1f600} \u{1f600}",
            "x\u{a0}y z",
        ] {
            let old: Vec<&str> = line.split(' ').filter(|t| !t.is_empty()).collect();
            assert_eq!(tokens(line).collect::<Vec<_>>(), old, "{line:?}");
        }
    }

    #[test]
    fn tokenizer_is_a_byte_loop_at_every_length_and_spacing() {
        fn by_bytes(line: &[u8]) -> Vec<(u32, u32)> {
            let mut v = Vec::new();
            let mut i = 0;
            while i < line.len() {
                while i < line.len() && line[i] == b' ' {
                    i += 1;
                }
                let s = i;
                while i < line.len() && line[i] != b' ' {
                    i += 1;
                }
                if i > s {
                    v.push((s as u32, i as u32));
                }
            }
            v
        }
        let mut t = Toks::new();
        // Every pattern of spaces over 12 bytes, and longer lines with the pattern repeated,
        // with bytes that differ from a space by one bit (0x21, 0xa0, 0x00) as the others.
        for pattern in 0u32..1 << 12 {
            for len in [0, 1, 5, 7, 8, 9, 12, 15, 16, 17, 23, 31, 40] {
                let line: Vec<u8> = (0..len)
                    .map(|i| {
                        if pattern >> (i % 12) & 1 == 1 {
                            b' '
                        } else {
                            [b'A', 0x21, 0xa0, 0x00][i % 4]
                        }
                    })
                    .collect();
                tokenize(&line, &mut t);
                let got: Vec<(u32, u32)> = t.iter().map(|x| (x.start, x.end)).collect();
                assert_eq!(got, by_bytes(&line), "{line:?}");
            }
        }
    }

    #[test]
    fn line_start_needs_four_bytes_unless_eof() {
        let any = |_: &[u8]| true;
        assert_eq!(line_starts(b"MS", false, any), None);
        assert_eq!(line_starts(b"MSG", false, any), None);
        assert_eq!(line_starts(b"MSG", true, any), Some(true));
        assert_eq!(line_starts(b"MSG ", false, any), Some(true));
        assert_eq!(line_starts(b"MIME", false, any), Some(false));
        assert_eq!(line_starts(b"<ml", false, any), Some(false));
        assert_eq!(line_starts(b"XYZ ", false, |_| false), Some(false));
        assert_eq!(line_starts(b"540 ", false, |_| false), Some(true));
    }

    #[test]
    fn lengths() {
        assert_eq!(parse_len(b"0"), Some(0));
        assert_eq!(parse_len(b"4294967295"), Some(4294967295));
        assert_eq!(parse_len(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_len(b"18446744073709551616"), None);
        assert_eq!(parse_len(b"-1"), None);
        assert_eq!(parse_len(b"12a"), None);
        assert_eq!(parse_len(b"OK"), None);
        assert_eq!(parse_len(b"99999999999999999999999"), None);
    }
}
