//! Session logs as input: the `C:`/`S:` transcripts of the protocol docs (plain or inside
//! markdown code fences) and `>>>`/`<<<` logs. A log becomes per-connection byte streams
//! that the decoder (or `msntap synth`) consumes exactly like captured traffic.

use crate::event::{Dir, Ts};
use crate::protocol::Tables;
use crate::wire;

/// One chunk of bytes as a log line gave it.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub dir: Dir,
    pub bytes: Vec<u8>,
    /// 1-based line number in the log where the command starts.
    pub line_no: usize,
    pub ts: Ts,
}

/// A connection reconstructed from a log.
#[derive(Debug, Clone, Default)]
pub struct LogConn {
    pub chunks: Vec<Chunk>,
    /// Remarks about the log itself (payload lengths that did not match the text, ...).
    pub notes: Vec<(usize, String)>,
}

/// How a log marks direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Transcript,
    Arrows,
}

fn classify(line: &str, flip: bool) -> Option<(Dir, &str, Option<u64>)> {
    let (c2s, s2c) = if flip {
        (Dir::S2c, Dir::C2s)
    } else {
        (Dir::C2s, Dir::S2c)
    };
    if let Some(r) = line.strip_prefix("C: ") {
        return Some((Dir::C2s, r, None));
    }
    if let Some(r) = line.strip_prefix("S: ") {
        return Some((Dir::S2c, r, None));
    }
    for (arrow, d) in [(">>> ", c2s), ("<<< ", s2c)] {
        if let Some(i) = line.find(arrow) {
            let before = &line[..i];
            let conn = before
                .split_whitespace()
                .find_map(|t| t.strip_prefix('#').and_then(|n| n.parse::<u64>().ok()));
            return Some((d, &line[i + 4..], conn));
        }
    }
    if line == "C:" || line == "S:" {
        return None;
    }
    None
}

fn is_b64(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='
}

/// Docs wrap long tokens (URL-encoded MSNObjects, tickets, base64) mid-word: such a
/// continuation is glued to the previous line without a space.
fn glued(prev: &str, cont: &str) -> bool {
    if cont.starts_with('%') || prev.ends_with('%') {
        return true;
    }
    let last = prev.rsplit(' ').next().unwrap_or("");
    let first = cont.split(' ').next().unwrap_or("");
    last.len() >= 20 && last.chars().all(is_b64) && !first.is_empty() && first.chars().all(is_b64)
}

/// Docs write computed values as `$md5(prefix + password)`: one token on the wire.
fn collapse_placeholders(line: &str) -> String {
    if !line.contains("$") {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    let mut depth = 0usize;
    let mut in_ph = false;
    let mut prev = ' ';
    for c in line.chars() {
        if c == '$' && prev == ' ' {
            in_ph = true;
        }
        if in_ph {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        in_ph = false;
                    }
                }
                ' ' if depth > 0 => {
                    prev = c;
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
        prev = c;
    }
    out
}

/// Parses a session log. `tables` tells which commands carry a payload, so that prose
/// after a non-payload line is not mistaken for payload. `flip` swaps `>>>` and `<<<`.
pub fn parse(text: &str, tables: &Tables, flip: bool) -> Vec<LogConn> {
    let is_md = text.lines().any(|l| l.trim_start().starts_with("```"));
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut conns: Vec<LogConn> = Vec::new();
    let mut by_id: Vec<(u64, usize)> = Vec::new();
    let mut cur: Option<usize> = None;
    let mut in_fence = false;
    let mut i = 0;
    let mut style = None;
    while i < lines.len() {
        let raw = lines[i];
        if raw.trim_start().starts_with("```") {
            in_fence = !in_fence;
            i += 1;
            continue;
        }
        if is_md && !in_fence {
            // Each headed section of a doc page is its own example scenario.
            if raw.starts_with('#') {
                cur = None;
            }
            i += 1;
            continue;
        }
        let Some((dir, body, conn_id)) = classify(raw, flip) else {
            i += 1;
            continue;
        };
        style.get_or_insert(if raw.starts_with("C: ") || raw.starts_with("S: ") {
            Style::Transcript
        } else {
            Style::Arrows
        });
        let line_no = i + 1;
        // Join `.. ` continuations.
        let mut line = body.to_string();
        let mut j = i + 1;
        while j < lines.len() && lines[j].starts_with(".. ") {
            let cont = &lines[j][3..];
            if !glued(&line, cont) {
                line.push(' ');
            }
            line.push_str(cont);
            j += 1;
        }
        let line = collapse_placeholders(&line);
        let mut line = line;
        i = j;
        // Which connection?
        let idx = match conn_id {
            Some(id) => match by_id.iter().find(|(k, _)| *k == id) {
                Some((_, x)) => *x,
                None => {
                    conns.push(LogConn::default());
                    by_id.push((id, conns.len() - 1));
                    conns.len() - 1
                }
            },
            None => {
                let toks: Vec<&str> = line.split(' ').filter(|t| !t.is_empty()).collect();
                let opens = dir == Dir::C2s
                    && (toks.first() == Some(&"VER")
                        || toks.first() == Some(&"ANS")
                        || (toks.first() == Some(&"USR") && toks.len() == 4));
                match cur {
                    Some(c) if !opens || conns[c].chunks.is_empty() => c,
                    _ => {
                        conns.push(LogConn::default());
                        conns.len() - 1
                    }
                }
            }
        };
        cur = Some(idx);
        // Payload lines follow a payload command.
        let toks: Vec<&str> = line.split(' ').filter(|t| !t.is_empty()).collect();
        let declared = toks.last().and_then(|t| wire::parse_num(t));
        let name = toks.first().copied().unwrap_or("");
        let may_payload = toks.len() >= 2
            && declared.is_some()
            // An error code carries a payload only as `NNN trid len` (protocol-facts A.4).
            && if name.bytes().all(|c| c.is_ascii_digit()) {
                toks.len() >= 3
            } else {
                tables.command(name.as_bytes()).is_none_or(|d| d.may_carry_payload(dir))
            };
        let mut bytes = Vec::new();
        if may_payload {
            let want = declared.unwrap_or(0) as usize;
            let mut body: Vec<&str> = Vec::new();
            let mut len = 0usize;
            let mut exact = None;
            while i < lines.len() && want > 0 {
                let l = lines[i];
                if classify(l, flip).is_some() || l.trim_start().starts_with("```") {
                    break;
                }
                body.push(l);
                len += l.len() + 2;
                i += 1;
                if len == want {
                    exact = Some(true);
                    break;
                }
                if len - 2 == want {
                    exact = Some(false);
                    break;
                }
                if len > want {
                    break;
                }
            }
            let mut payload = body.join("\r\n").into_bytes();
            match exact {
                Some(true) => payload.extend_from_slice(b"\r\n"),
                Some(false) => {}
                None => {
                    if body.last().is_some_and(|l| l.is_empty()) {
                        payload.extend_from_slice(b"\r\n");
                    }
                }
            }
            if payload.len() != want {
                conns[idx].notes.push((
                    line_no,
                    format!(
                        "the log declares {want} payload bytes but its text holds {}; framed by the text",
                        payload.len()
                    ),
                ));
                // Rewrite the declared length so the stream stays well-framed.
                if let Some(p) = line.rfind(' ') {
                    line.truncate(p + 1);
                    line.push_str(&payload.len().to_string());
                }
            }
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(&payload);
        } else {
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        conns[idx].chunks.push(Chunk {
            dir,
            bytes,
            line_no,
            ts: Ts(line_no as i64),
        });
    }
    let _ = style;
    conns.retain(|c| !c.chunks.is_empty());
    conns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Tables {
        Tables::builtin().expect("built-in tables load")
    }

    #[test]
    fn transcript_with_payload_and_continuations() {
        let log = "C: VER 1 MSNP8 CVR0\nS: VER 1 MSNP8\nS: CVR 2 1 2 3\n.. http://a\nS: MSG Hotmail Hotmail 7\nA: b\r\n\nC: OUT\n";
        let conns = parse(log, &tables(), false);
        assert_eq!(conns.len(), 1);
        let c = &conns[0];
        assert_eq!(c.chunks[2].bytes, b"CVR 2 1 2 3 http://a\r\n");
        // "A: b" CRLF + blank line CRLF = 8 bytes, so the declared 7 was fixed.
        assert_eq!(c.chunks[3].bytes, b"MSG Hotmail Hotmail 8\r\nA: b\r\n\r\n");
        assert_eq!(c.notes.len(), 1);
        assert_eq!(c.chunks[4].bytes, b"OUT\r\n");
    }

    #[test]
    fn exact_length_without_trailing_crlf() {
        let log = "S: MSG a b 2\nhi\nClient disconnects.\n";
        let conns = parse(log, &tables(), false);
        assert_eq!(conns[0].chunks[0].bytes, b"MSG a b 2\r\nhi");
        assert!(conns[0].notes.is_empty());
    }

    #[test]
    fn new_connection_on_second_ver_and_arrows() {
        let log = "C: VER 1 MSNP8\nS: XFR 3 NS 1.2.3.4:1863 0\nC: VER 4 MSNP8\n";
        assert_eq!(parse(log, &tables(), false).len(), 2);
        let log = "12:00 #1 NS >>> PNG\n12:00 #2 SB <<< JOI a@b c\n12:01 #1 NS <<< QNG 50\n";
        let conns = parse(log, &tables(), false);
        assert_eq!(conns.len(), 2);
        assert_eq!(conns[0].chunks.len(), 2);
        assert_eq!(conns[0].chunks[1].dir, Dir::S2c);
    }

    #[test]
    fn error_with_only_a_trid_has_no_payload() {
        let log = "C: ADD 10 FL a@b.com a\nS: 215 10\nC: PNG\nS: 241 11 5\n<ml/>\n";
        let conns = parse(log, &tables(), false);
        assert!(conns[0].notes.is_empty(), "{:?}", conns[0].notes);
        assert_eq!(conns[0].chunks[1].bytes, b"215 10\r\n");
        assert_eq!(conns[0].chunks[2].bytes, b"PNG\r\n");
        assert_eq!(conns[0].chunks[3].bytes, b"241 11 5\r\n<ml/>");
    }

    #[test]
    fn markdown_prose_outside_fences_is_ignored() {
        let log = "Intro C: not this\n```msnp\nC: PNG\n```\nS: QNG 5 is prose outside a fence\n";
        let conns = parse(log, &tables(), false);
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].chunks.len(), 1);
    }
}
