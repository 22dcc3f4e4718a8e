//! Byte-level framing helpers: line splitting, command tokens, numeric tokens, bounds.
//! No protocol meaning lives here; which command carries a payload is decided by the tables.

/// Bounds that keep hostile input cheap.
#[derive(Debug, Clone, Copy)]
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

/// Is `b` the start of a command name: three upper-case letters or three digits?
pub fn is_command_name(b: &[u8]) -> bool {
    b.len() >= 3
        && (b[..3].iter().all(u8::is_ascii_uppercase) || b[..3].iter().all(u8::is_ascii_digit))
}

/// Does `line` (without line ending) start with a well-formed command token?
pub fn is_command_line(line: &[u8]) -> bool {
    is_command_name(line) && (line.len() == 3 || line[3] == b' ')
}

/// Does `b` look like the start of a command line (name followed by space or line end)?
/// `known` decides whether an alphabetic name is acceptable (digits always are).
/// Returns None when more bytes are needed to tell.
pub fn looks_like_line_start(b: &[u8], eof: bool, known: impl Fn(&[u8]) -> bool) -> Option<bool> {
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
        return Some(b.len() == 3 && (b[0].is_ascii_digit() || known(&b[..3])));
    }
    let sep = matches!(b[3], b' ' | b'\r' | b'\n');
    Some(sep && (b[0].is_ascii_digit() || known(&b[..3])))
}

/// Parses an unsigned decimal token (no sign, no spaces), at most 20 digits.
pub fn parse_len(tok: &str) -> Option<u64> {
    if tok.is_empty() || tok.len() > 20 || !tok.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    tok.parse().ok()
}

/// Finds the next LF in `b`.
pub fn find_lf(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
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
    fn line_start_needs_four_bytes_unless_eof() {
        let any = |_: &[u8]| true;
        assert_eq!(looks_like_line_start(b"MS", false, any), None);
        assert_eq!(looks_like_line_start(b"MSG", false, any), None);
        assert_eq!(looks_like_line_start(b"MSG", true, any), Some(true));
        assert_eq!(looks_like_line_start(b"MSG ", false, any), Some(true));
        assert_eq!(looks_like_line_start(b"MIME", false, any), Some(false));
        assert_eq!(looks_like_line_start(b"<ml", false, any), Some(false));
        assert_eq!(
            looks_like_line_start(b"XYZ ", false, |_| false),
            Some(false)
        );
        assert_eq!(looks_like_line_start(b"540 ", false, |_| false), Some(true));
    }

    #[test]
    fn lengths() {
        assert_eq!(parse_len("0"), Some(0));
        assert_eq!(parse_len("4294967295"), Some(4294967295));
        assert_eq!(parse_len("-1"), None);
        assert_eq!(parse_len("12a"), None);
        assert_eq!(parse_len("OK"), None);
        assert_eq!(parse_len("99999999999999999999999"), None);
    }
}
