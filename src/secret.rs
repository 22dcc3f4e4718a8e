//! Secrets by type: a value that must never reach an output unless the user asked for it
//! (`--no-redact`), and the one redaction rule every event type implements. Nothing here
//! knows where a secret came from; the decoders decide what is one by typing it `Secret`.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a redacted secret is replaced by, in every output.
pub const REDACTED: &str = "<redacted>";

/// A credential or session secret: a cookie, password hash, ticket, password, BinarySecret.
/// It serializes as its plain text (so `--no-redact` output is what was on the wire); a
/// redacted secret serializes as [`REDACTED`].
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret<'a>(pub Cow<'a, str>);

impl<'a> Secret<'a> {
    pub fn new(s: impl Into<Cow<'a, str>>) -> Self {
        Secret(s.into())
    }
    /// The text as it was on the wire (or [`REDACTED`] once redacted).
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_redacted(&self) -> bool {
        self.0 == REDACTED
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_owned(self) -> Secret<'static> {
        Secret(Cow::Owned(self.0.into_owned()))
    }
}

impl fmt::Debug for Secret<'_> {
    /// Debug output never shows the value: a stray `{:?}` must not leak it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_redacted() {
            f.write_str("Secret(<redacted>)")
        } else {
            write!(f, "Secret({} bytes)", self.0.len())
        }
    }
}

/// The redaction rule: every event type, payload type and annotation implements it, so
/// whatever path the bytes took, one call hides every secret it holds.
pub trait Redact {
    /// Replaces every secret by [`REDACTED`]; returns whether anything changed.
    fn redact(&mut self) -> bool;
}

impl Redact for Secret<'_> {
    fn redact(&mut self) -> bool {
        if self.is_redacted() {
            return false;
        }
        self.0 = Cow::Borrowed(REDACTED);
        true
    }
}

impl<T: Redact> Redact for Option<T> {
    fn redact(&mut self) -> bool {
        self.as_mut().is_some_and(Redact::redact)
    }
}

impl<T: Redact> Redact for Vec<T> {
    fn redact(&mut self) -> bool {
        let mut changed = false;
        for x in self.iter_mut() {
            changed |= x.redact();
        }
        changed
    }
}

impl<T: Redact> Redact for Box<T> {
    fn redact(&mut self) -> bool {
        (**self).redact()
    }
}

/// Header and body-line names whose values are secrets wherever they appear (MIME headers,
/// `Key: value` bodies, SLP bodies): `MSPAuth`/`MSPProf` cookies of the profile message,
/// tickets, the MSNFTP `AuthCookie`, Passport `t`/`p` tokens.
pub const SECRET_NAMES: &[&str] = &[
    "mspauth",
    "mspprof",
    "ticket",
    "authcookie",
    "auth_cookie",
    "passport",
    "password",
];

pub fn is_secret_name(name: &str) -> bool {
    let n = name.trim();
    // Every name on the list starts with one of these letters: most names are turned
    // away by one comparison.
    if !n
        .as_bytes()
        .first()
        .is_some_and(|c| matches!(c.to_ascii_lowercase(), b'm' | b't' | b'a' | b'p'))
    {
        return false;
    }
    SECRET_NAMES.iter().any(|s| n.eq_ignore_ascii_case(s))
}

/// Could this line be `Name: value` with a secret name? (A cheap look before the real one.)
fn maybe_secret_line(line: &str) -> bool {
    let t = line.trim_start();
    t.as_bytes()
        .first()
        .is_some_and(|c| matches!(c.to_ascii_lowercase(), b'm' | b't' | b'a' | b'p'))
        && memchr::memchr(b':', t.as_bytes()).is_some()
}

/// The lines of `text` (each with its line end) that hold a colon, the only ones that can be
/// `Name: value`: found by a vector search for colons, not a walk over every line (message
/// bodies are mostly long lines with none; `split_inclusive` costs about one instruction a
/// byte on them).
fn lines_with_colon(text: &str) -> impl Iterator<Item = &str> {
    let b = text.as_bytes();
    let mut from = 0;
    std::iter::from_fn(move || {
        let colon = from + memchr::memchr(b':', b.get(from..)?)?;
        let start = memchr::memrchr(b'\n', &b[..colon]).map_or(0, |i| i + 1);
        let end = memchr::memchr(b'\n', &b[colon..]).map_or(b.len(), |i| colon + i + 1);
        from = end;
        // Cut after LF or at the ends: char boundaries.
        text.get(start..end)
    })
}

/// `Name: value` lines of a text whose name is secret get `Name: <redacted>`; None when
/// the text holds no such line (nearly always: it is looked for before anything is copied).
pub fn redact_lines(text: &str) -> Option<String> {
    let secret = |line: &str| {
        maybe_secret_line(line)
            && match line.split_once(':') {
                Some((k, rest)) => is_secret_name(k) && rest.trim() != REDACTED,
                None => false,
            }
    };
    if !lines_with_colon(text).any(secret) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match line.split_once(':') {
            Some((k, _)) if secret(line) => {
                let end = if line.ends_with("\r\n") {
                    "\r\n"
                } else if line.ends_with('\n') {
                    "\n"
                } else {
                    ""
                };
                out.push_str(k);
                out.push_str(": ");
                out.push_str(REDACTED);
                out.push_str(end);
            }
            _ => out.push_str(line),
        }
    }
    Some(out)
}

/// Makes raw bytes of unknown structure safe to show (desync previews, over-long lines):
/// every token that could be a credential is replaced. Without the tables' knowledge of
/// which argument is which, anything longer than a command word, a number or a short
/// keyword might be a ticket or hash, so only those are kept; line structure, command
/// names, transaction ids and short words stay readable.
pub fn scrub(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if matches!(c, b' ' | b'\r' | b'\n' | b'\t') {
            out.push(c);
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !matches!(bytes[i], b' ' | b'\r' | b'\n' | b'\t') {
            i += 1;
        }
        let tok = &bytes[start..i];
        if harmless(tok) {
            out.extend_from_slice(tok);
        } else {
            out.extend_from_slice(REDACTED.as_bytes());
        }
    }
    out
}

/// Tokens that cannot hide a credential: short words of letters (commands, keywords such
/// as `TWN`, `OK`, `MSNP8`), numbers of up to 10 digits (transaction ids, lengths), and
/// short header names (`Content-Type:`).
fn harmless(tok: &[u8]) -> bool {
    if tok.len() <= 10 && tok.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if tok.len() > 16 {
        return false;
    }
    let letters = tok.iter().filter(|c| c.is_ascii_alphabetic()).count();
    let digits = tok.iter().filter(|c| c.is_ascii_digit()).count();
    let other_ok = tok
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b':' | b'/' | b'.'));
    other_ok && letters > 0 && digits <= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_redacts_once_and_hides_in_debug() {
        let mut s = Secret::new("t=abc&p=def");
        assert_eq!(format!("{s:?}"), "Secret(11 bytes)");
        assert!(s.redact());
        assert!(!s.redact());
        assert_eq!(s.expose(), REDACTED);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
    }

    #[test]
    fn lines_with_secret_names() {
        let t = "MIME-Version: 1.0\r\nMSPAuth: 7abc\r\nAuthCookie: 99\n";
        assert_eq!(
            redact_lines(t).unwrap(),
            "MIME-Version: 1.0\r\nMSPAuth: <redacted>\r\nAuthCookie: <redacted>\n"
        );
        assert_eq!(redact_lines("Content-Type: text/plain\r\n"), None);
    }

    /// The colon search finds the same lines as walking every line: the first line, the
    /// last one without a line end, lines with several colons, and none at all.
    #[test]
    fn lines_with_colon_are_the_lines_that_hold_one() {
        let texts = [
            "",
            "no colon at all, a long body of text",
            "Ticket: t=1",
            "a\nb: c\r\n\nx:y:z\npassword:  p\n",
            "first: line\r\nthe quick brown fox\r\nlast: no end",
            ":\n:\n\n::",
            "caf\u{e9}: \u{e9}t\u{e9}\nMSPProf: p",
        ];
        for t in texts {
            let walk: Vec<&str> = t
                .split_inclusive('\n')
                .filter(|l| l.contains(':'))
                .collect();
            assert_eq!(lines_with_colon(t).collect::<Vec<_>>(), walk, "{t:?}");
        }
        assert_eq!(
            redact_lines("the quick brown fox\r\nMSPProf: p").unwrap(),
            "the quick brown fox\r\nMSPProf: <redacted>"
        );
        assert_eq!(redact_lines("the quick: brown fox"), None);
    }

    #[test]
    fn scrub_keeps_structure_and_hides_credentials() {
        let s = scrub(b"USR 7 TWN S t=53*1hAu8ADuD3TEwdXoOMi08sD*2\r\nXFR 10 SB 10.0.0.1:1864 CKI 17262740.1050826919.32308\r\n");
        let s = String::from_utf8(s).unwrap();
        assert_eq!(
            s,
            "USR 7 TWN S <redacted>\r\nXFR 10 SB <redacted> CKI <redacted>\r\n"
        );
        assert_eq!(
            String::from_utf8(scrub(b"USR 3 MD5 S 0123456789abcdef0123456789abcdef")).unwrap(),
            "USR 3 MD5 S <redacted>"
        );
    }
}
