//! Session logs as input: the `C:`/`S:` transcripts of the protocol docs (plain or inside
//! markdown code fences) and `>>>`/`<<<` logs. A log becomes per-connection byte streams
//! that the decoder (or `msntap synth`) consumes exactly like captured traffic. The log is
//! read a line at a time ([`Reader`]): memory stays flat whatever the log's size. Nothing
//! here decodes MSNP beyond asking the tables which commands may carry a payload, and the
//! bytes of a line are kept as the log has them (no UTF-8 conversion).

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead};

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

/// A connection reconstructed from a log (all of it: see [`parse`]).
#[derive(Debug, Clone, Default)]
pub struct LogConn {
    pub chunks: Vec<Chunk>,
    /// Remarks about the log itself (payload lengths that did not match the text, ...).
    pub notes: Vec<(usize, String)>,
}

/// What [`Reader`] reports, in log order. Connections are numbered from 0 in the order
/// in which they first appear.
#[derive(Debug, Clone)]
pub enum Item {
    /// The next bytes of connection `conn`.
    Chunk { conn: usize, chunk: Chunk },
    /// A remark about the log at `line`, concerning connection `conn`; it comes before the
    /// chunk of that line.
    Note {
        conn: usize,
        dir: Dir,
        line: usize,
        message: String,
    },
    /// Connection `conn` gets no more chunks.
    End { conn: usize },
}

/// Longest log line kept: a payload may be one line of the largest payload the decoder
/// accepts. Longer lines are cut (with a note), so a log without line breaks cannot make
/// the reader hold it whole.
pub const MAX_LINE: usize = (1 << 20) + (64 << 10);

/// Connections marked `#N` stay open until the log ends; past this many at once, the one
/// idle the longest is ended (its later lines then start a new connection).
pub const MAX_OPEN: usize = 4096;

/// How far the reader looks ahead for a markdown fence before deciding that the log is a
/// plain transcript rather than a markdown page.
const SNIFF_BYTES: usize = 64 << 10;

/// Reads one line into `buf` (without the LF), at most `cap` bytes of it. Returns `None`
/// at the end of the input, else whether the line was cut.
pub fn read_line_capped<R: BufRead + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    let mut any = false;
    let mut cut = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(any.then_some(cut));
        }
        any = true;
        let (take, done) = match memchr::memchr(b'\n', avail) {
            Some(i) => (i, Some(i + 1)),
            None => (avail.len(), None),
        };
        let room = cap.saturating_sub(buf.len());
        if take > room {
            cut = true;
        }
        buf.extend_from_slice(&avail[..take.min(room)]);
        match done {
            Some(n) => {
                r.consume(n);
                return Ok(Some(cut));
            }
            None => {
                let n = avail.len();
                r.consume(n);
            }
        }
    }
}

fn trim_cr(mut l: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r'] = l {
        l = rest;
    }
    l
}

fn is_fence(l: &[u8]) -> bool {
    l.trim_ascii_start().starts_with(b"```")
}

fn tokens(l: &[u8]) -> impl Iterator<Item = &[u8]> {
    l.split(|&c| c == b' ').filter(|t| !t.is_empty())
}

/// Direction, the command text and the connection number of a log line.
fn classify(line: &[u8], flip: bool) -> Option<(Dir, &[u8], Option<u64>)> {
    let (c2s, s2c) = if flip {
        (Dir::S2c, Dir::C2s)
    } else {
        (Dir::C2s, Dir::S2c)
    };
    if let Some(r) = line.strip_prefix(b"C: ") {
        return Some((Dir::C2s, r, None));
    }
    if let Some(r) = line.strip_prefix(b"S: ") {
        return Some((Dir::S2c, r, None));
    }
    for (arrow, d) in [(b">>> ", c2s), (b"<<< ", s2c)] {
        if let Some(i) = memchr::memmem::find(line, arrow) {
            let conn = line[..i].split(|c| c.is_ascii_whitespace()).find_map(|t| {
                t.strip_prefix(b"#")
                    .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok())
            });
            return Some((d, &line[i + 4..], conn));
        }
    }
    None
}

fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'='
}

/// Docs wrap long tokens (URL-encoded MSNObjects, tickets, base64) mid-word: such a
/// continuation is glued to the previous line without a space.
fn glued(prev: &[u8], cont: &[u8]) -> bool {
    if cont.starts_with(b"%") || prev.ends_with(b"%") {
        return true;
    }
    let last = prev.rsplit(|&c| c == b' ').next().unwrap_or(b"");
    let first = cont.split(|&c| c == b' ').next().unwrap_or(b"");
    last.len() >= 20
        && last.iter().all(|&c| is_b64(c))
        && !first.is_empty()
        && first.iter().all(|&c| is_b64(c))
}

/// Docs write computed values as `$md5(prefix + password)`: one token on the wire.
fn collapse_placeholders(line: Vec<u8>) -> Vec<u8> {
    if !line.contains(&b'$') {
        return line;
    }
    let mut out = Vec::with_capacity(line.len());
    let mut depth = 0usize;
    let mut in_ph = false;
    let mut prev = b' ';
    for &c in &line {
        if c == b'$' && prev == b' ' {
            in_ph = true;
        }
        if in_ph {
            match c {
                b'(' => depth += 1,
                b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        in_ph = false;
                    }
                }
                b' ' if depth > 0 => {
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

/// A connection still receiving chunks.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// Marked `#N` in the log (such connections may interleave, so they end only with
    /// the log).
    id: Option<u64>,
    last_line: usize,
}

/// A session log read a line at a time. `next` hands out chunks, notes and connection
/// ends in log order.
pub struct Reader<'t, R> {
    input: R,
    tables: &'t Tables,
    flip: bool,
    /// None until the first lines were looked at.
    markdown: Option<bool>,
    /// Lines read ahead (markdown detection) or pushed back (one line of lookahead).
    ahead: VecDeque<(usize, Vec<u8>, bool)>,
    line_no: usize,
    eof: bool,
    in_fence: bool,
    cur: Option<usize>,
    open: HashMap<usize, Open>,
    by_id: HashMap<u64, usize>,
    conns: usize,
    out: VecDeque<Item>,
    lines_read: u64,
    buf: Vec<u8>,
    /// A read error met while reading ahead: given once the lines before it are used.
    failed: Option<io::Error>,
}

impl<'t, R: BufRead> Reader<'t, R> {
    /// `markdown`: Some when the caller knows (a `.md` file name); None lets the reader
    /// decide from a fence in the first 64 KiB. `flip` swaps `>>>` and `<<<`.
    pub fn new(input: R, tables: &'t Tables, flip: bool, markdown: Option<bool>) -> Self {
        Reader {
            input,
            tables,
            flip,
            markdown,
            ahead: VecDeque::new(),
            line_no: 0,
            eof: false,
            in_fence: false,
            cur: None,
            open: HashMap::new(),
            by_id: HashMap::new(),
            conns: 0,
            out: VecDeque::new(),
            lines_read: 0,
            buf: Vec::new(),
            failed: None,
        }
    }

    /// Lines read so far.
    pub fn lines(&self) -> u64 {
        self.lines_read
    }

    /// Connections seen so far.
    pub fn connections(&self) -> usize {
        self.conns
    }

    fn read_raw(&mut self) -> io::Result<Option<(usize, Vec<u8>, bool)>> {
        if self.eof {
            return Ok(None);
        }
        let mut buf = std::mem::take(&mut self.buf);
        match read_line_capped(&mut self.input, &mut buf, MAX_LINE)? {
            None => {
                self.eof = true;
                self.buf = buf;
                Ok(None)
            }
            Some(cut) => {
                self.line_no += 1;
                self.lines_read += 1;
                let line = trim_cr(&buf).to_vec();
                self.buf = buf;
                Ok(Some((self.line_no, line, cut)))
            }
        }
    }

    fn line(&mut self) -> io::Result<Option<(usize, Vec<u8>, bool)>> {
        if self.markdown.is_none() {
            let mut size = 0;
            let mut md = false;
            while size < SNIFF_BYTES {
                // A read error here (a cut .gz) must not take the lines before it along.
                let l = match self.read_raw() {
                    Ok(Some(l)) => l,
                    Ok(None) => break,
                    Err(e) => {
                        self.failed = Some(e);
                        break;
                    }
                };
                size += l.1.len() + 1;
                md = is_fence(&l.1);
                self.ahead.push_back(l);
                if md {
                    break;
                }
            }
            self.markdown = Some(md);
        }
        match (self.ahead.pop_front(), self.failed.take()) {
            (Some(l), failed) => {
                self.failed = failed;
                Ok(Some(l))
            }
            (None, Some(e)) => Err(e),
            (None, None) => self.read_raw(),
        }
    }

    fn push_back(&mut self, l: (usize, Vec<u8>, bool)) {
        self.ahead.push_front(l);
    }

    fn end(&mut self, conn: usize) {
        if let Some(o) = self.open.remove(&conn) {
            if let Some(id) = o.id {
                self.by_id.remove(&id);
            }
            self.out.push_back(Item::End { conn });
        }
    }

    fn new_conn(&mut self, id: Option<u64>, line: usize) -> usize {
        if self.open.len() >= MAX_OPEN {
            if let Some((&oldest, _)) = self.open.iter().min_by_key(|(_, o)| o.last_line) {
                self.end(oldest);
            }
        }
        let c = self.conns;
        self.conns += 1;
        self.open.insert(
            c,
            Open {
                id,
                last_line: line,
            },
        );
        if let Some(id) = id {
            self.by_id.insert(id, c);
        }
        c
    }

    /// Leaves the current connection; one without a `#N` can never be picked again.
    fn leave_cur(&mut self) {
        if let Some(c) = self.cur.take() {
            if self.open.get(&c).is_some_and(|o| o.id.is_none()) {
                self.end(c);
            }
        }
    }

    /// The next chunk, note or connection end; None at the end of the log.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        loop {
            if let Some(it) = self.out.pop_front() {
                return Ok(Some(it));
            }
            if !self.step()? {
                // The end of the log ends every connection, in the order they began.
                let mut left: Vec<usize> = self.open.keys().copied().collect();
                left.sort_unstable();
                for c in left {
                    self.end(c);
                }
                return Ok(self.out.pop_front());
            }
        }
    }

    /// Reads one log line (and what belongs to it); false at the end of the input.
    fn step(&mut self) -> io::Result<bool> {
        let Some((line_no, raw, cut)) = self.line()? else {
            return Ok(false);
        };
        let md = self.markdown == Some(true);
        if is_fence(&raw) {
            self.in_fence = !self.in_fence;
            return Ok(true);
        }
        if md && !self.in_fence {
            // Each headed section of a doc page is its own example scenario.
            if raw.starts_with(b"#") {
                self.leave_cur();
            }
            return Ok(true);
        }
        let Some((dir, body, conn_id)) = classify(&raw, self.flip) else {
            return Ok(true);
        };
        let mut notes: Vec<String> = Vec::new();
        if cut {
            notes.push(format!(
                "line longer than {MAX_LINE} bytes: the rest of it was left out"
            ));
        }
        // Join `.. ` continuations.
        let mut line = body.to_vec();
        while let Some(next) = self.line()? {
            match next.1.strip_prefix(b".. ") {
                Some(cont) if line.len() < MAX_LINE => {
                    if !glued(&line, cont) {
                        line.push(b' ');
                    }
                    line.extend_from_slice(cont);
                }
                _ => {
                    self.push_back(next);
                    break;
                }
            }
        }
        let mut line = collapse_placeholders(line);
        // Which connection?
        let idx = match conn_id {
            Some(id) => match self.by_id.get(&id) {
                Some(&c) => c,
                None => self.new_conn(Some(id), line_no),
            },
            None => {
                let toks: Vec<&[u8]> = tokens(&line).take(5).collect();
                let opens = dir == Dir::C2s
                    && (toks.first() == Some(&&b"VER"[..])
                        || toks.first() == Some(&&b"ANS"[..])
                        || (toks.first() == Some(&&b"USR"[..]) && toks.len() == 4));
                match self.cur {
                    Some(c) if !opens && self.open.contains_key(&c) => c,
                    _ => {
                        self.leave_cur();
                        self.new_conn(None, line_no)
                    }
                }
            }
        };
        self.cur = Some(idx);
        if let Some(o) = self.open.get_mut(&idx) {
            o.last_line = line_no;
        }
        let bytes = self.payload(dir, &mut line, &mut notes)?;
        for message in notes {
            self.out.push_back(Item::Note {
                conn: idx,
                dir,
                line: line_no,
                message,
            });
        }
        self.out.push_back(Item::Chunk {
            conn: idx,
            chunk: Chunk {
                dir,
                bytes,
                line_no,
                ts: Ts(line_no as i64),
            },
        });
        Ok(true)
    }

    /// The bytes of a command line and of the payload lines that follow it.
    fn payload(
        &mut self,
        dir: Dir,
        line: &mut Vec<u8>,
        notes: &mut Vec<String>,
    ) -> io::Result<Vec<u8>> {
        let (name, ntoks, declared) = {
            let toks: Vec<&[u8]> = tokens(line).collect();
            (
                toks.first().map(|t| t.to_vec()).unwrap_or_default(),
                toks.len(),
                toks.last().and_then(|t| wire::parse_len(t)),
            )
        };
        let def = self.tables.command(&name);
        let code = !name.is_empty() && name.iter().all(u8::is_ascii_digit);
        let may_payload = ntoks >= 2
            && declared.is_some()
            // An error code carries a payload only as `NNN trid len` (protocol-facts A.4).
            && if code {
                ntoks >= 3
            } else {
                def.is_none_or(|d| d.may_carry_payload(dir))
            };
        let want = declared.unwrap_or(0);
        let mut bytes = Vec::with_capacity(line.len() + 2);
        // A length beyond what the decoder accepts is not collected: the stream carries
        // the line as written and the decoder reports it.
        if !may_payload || want == 0 || want > wire::Limits::default().max_payload as u64 {
            bytes.extend_from_slice(line);
            bytes.extend_from_slice(b"\r\n");
            return Ok(bytes);
        }
        let want = want as usize;
        let mut body: Vec<Vec<u8>> = Vec::new();
        let mut len = 0usize;
        let mut exact = None;
        while len < want {
            let Some(next) = self.line()? else { break };
            if classify(&next.1, self.flip).is_some() || is_fence(&next.1) {
                self.push_back(next);
                break;
            }
            if next.2 {
                notes.push(format!(
                    "payload line {} longer than {MAX_LINE} bytes: the rest of it was left out",
                    next.0
                ));
            }
            len += next.1.len() + 2;
            body.push(next.1);
            if len == want {
                exact = Some(true);
                break;
            }
            if len - 2 == want {
                exact = Some(false);
                break;
            }
        }
        // The tables do not know this command: its last number is a payload length only if
        // the text after it matches it exactly.
        if def.is_none() && !code && exact.is_none() {
            bytes.extend_from_slice(line);
            bytes.extend_from_slice(b"\r\n");
            return Ok(bytes);
        }
        let mut payload = body.join(&b"\r\n"[..]);
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
            notes.push(format!(
                "the log declares {want} payload bytes but its text holds {}; framed by the text",
                payload.len()
            ));
            // Rewrite the declared length so the stream stays well-framed.
            if let Some(p) = line.iter().rposition(|&c| c == b' ') {
                line.truncate(p + 1);
                line.extend_from_slice(payload.len().to_string().as_bytes());
            }
        }
        bytes.extend_from_slice(line);
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&payload);
        Ok(bytes)
    }
}

/// Parses a whole session log held in memory (tests, benchmarks, small tools; the
/// commands stream it with [`Reader`]). `tables` tells which commands carry a payload,
/// so that prose after a non-payload line is not mistaken for payload. `flip` swaps
/// `>>>` and `<<<`.
pub fn parse(text: &str, tables: &Tables, flip: bool) -> Vec<LogConn> {
    let mut r = Reader::new(text.as_bytes(), tables, flip, None);
    let mut conns: Vec<LogConn> = Vec::new();
    // Reading from memory cannot fail.
    while let Ok(Some(it)) = r.next_item() {
        match it {
            Item::Chunk { conn, chunk } => {
                if conns.len() <= conn {
                    conns.resize_with(conn + 1, LogConn::default);
                }
                conns[conn].chunks.push(chunk);
            }
            Item::Note {
                conn,
                line,
                message,
                ..
            } => {
                if conns.len() <= conn {
                    conns.resize_with(conn + 1, LogConn::default);
                }
                conns[conn].notes.push((line, message));
            }
            Item::End { .. } => {}
        }
    }
    conns
}

/// What [`index`] learns of a log's connections in a first pass (for `msntap synth`, which
/// lays out each connection knowing where it ends).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnIndex {
    pub chunks: usize,
    /// The first client line is `ANS` or a `USR` with a cookie.
    pub switchboard: bool,
}

/// Reads a whole log once, keeping per connection only its chunk count and kind.
pub fn index<R: BufRead>(input: R, tables: &Tables, flip: bool) -> io::Result<Vec<ConnIndex>> {
    let mut r = Reader::new(input, tables, flip, None);
    let mut out: Vec<(ConnIndex, bool)> = Vec::new();
    while let Some(it) = r.next_item()? {
        if let Item::Chunk { conn, chunk } = it {
            if out.len() <= conn {
                out.resize_with(conn + 1, Default::default);
            }
            let (ix, seen_c2s) = &mut out[conn];
            ix.chunks += 1;
            if chunk.dir == Dir::C2s && !*seen_c2s {
                *seen_c2s = true;
                ix.switchboard = is_switchboard_line(&chunk.bytes);
            }
        }
    }
    Ok(out.into_iter().map(|(ix, _)| ix).collect())
}

/// `ANS ...` or `USR trid handle cookie`: a switchboard connection's first client line.
pub fn is_switchboard_line(bytes: &[u8]) -> bool {
    let end = memchr::memchr2(b'\r', b'\n', bytes).unwrap_or(bytes.len());
    let toks: Vec<&[u8]> = tokens(&bytes[..end]).take(5).collect();
    toks.first() == Some(&&b"ANS"[..]) || (toks.first() == Some(&&b"USR"[..]) && toks.len() == 4)
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
