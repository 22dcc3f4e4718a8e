//! The framer: the one framing contract (tokio-util's `Decoder` shape). Fed the unconsumed
//! bytes of one direction, it returns one [`Item`] at a time: a complete [`Frame`] (byte
//! ranges into those bytes, nothing copied), bytes that cannot be framed (`Skip`, ending in
//! one `Desync`), or `NeedMore`. Partial input is never an error. Which command carries a
//! payload is asked of [`Rules`]; the framer itself knows no command.

use super::{find_lf, is_command_line, line_starts, tokenize, Limits, Tok, Toks};

/// What the protocol layer answers about a complete command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// No payload follows. `tag` is whatever the rules chose (the dissector form), handed
    /// back in the frame so that the choice is made once.
    None { tag: u32 },
    /// `len` payload bytes follow the line; `guess` when the command is unknown and the
    /// payload was framed by looking at what followed.
    Payload { len: u64, guess: bool, tag: u32 },
    /// The bytes after the line must be seen to decide.
    NeedMore,
}

/// The protocol knowledge the framer needs.
pub trait Rules {
    /// Is this three-letter name a known command (a resynchronisation point)?
    fn is_known(&self, name: &[u8]) -> bool;
    /// Decides what follows `line` (its tokens in `toks`, the name first); `after` holds the
    /// bytes received after its line ending so far, `eof` that no more will come.
    fn plan(&self, line: &[u8], toks: &[Tok], after: &[u8], eof: bool) -> Plan;
}

/// How a command line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eol {
    Crlf,
    Lf,
    /// The stream ended right after the line (no line ending was sent).
    Missing,
}

/// Where a frame's payload sits in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadSpan {
    /// Offset of the first payload byte in the frame.
    pub start: usize,
    /// Payload bytes present in the frame (fewer than declared when the stream ended early).
    pub have: usize,
    /// The length the command line declared.
    pub declared: u64,
    pub guess: bool,
    /// The declared length is over the limit: nothing was read (the framer resynchronises).
    pub oversize: bool,
}

impl PayloadSpan {
    pub fn truncated(&self) -> bool {
        !self.oversize && (self.have as u64) < self.declared
    }
}

/// One complete frame: a command line and its payload, as ranges into the bytes it was cut
/// from (`&bytes[..len]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Stream offset of the frame's first byte in its direction.
    pub offset: u64,
    /// Bytes of the frame: line, line ending and payload.
    pub len: usize,
    /// Length of the command line without its line ending.
    pub line_len: usize,
    pub eol: Eol,
    /// Tokens of the line; the first is the command name.
    pub toks: Toks,
    pub payload: Option<PayloadSpan>,
    /// What [`Rules::plan`] chose.
    pub tag: u32,
}

impl Frame {
    pub fn line<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[..self.line_len]
    }
    pub fn name<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        self.toks.first().map_or(&[][..], |t| t.of(bytes))
    }
    /// The `i`th argument (the token after the name is argument 0).
    pub fn arg<'a>(&self, bytes: &'a [u8], i: usize) -> Option<&'a [u8]> {
        self.toks.get(i + 1).map(|t| t.of(bytes))
    }
    pub fn argc(&self) -> usize {
        self.toks.len().saturating_sub(1)
    }
    /// The payload bytes present (empty when there is none or it was not read).
    pub fn payload<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        match self.payload {
            Some(p) if !p.oversize => &bytes[p.start..p.start + p.have],
            _ => &[],
        }
    }
}

/// Why bytes could not be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesyncReason {
    NotACommandLine,
    EmptyLine,
    LineTooLong,
    /// A declared payload over the limit was skipped to the next command line.
    OversizePayload,
    /// Bytes were lost (a capture gap); decoding resumes at the next command line.
    BytesLost,
    /// The stream ended inside a line that is not a command.
    IncompleteLine,
}

/// The end of a run of bytes that could not be framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesyncInfo {
    /// Stream offset where the run began.
    pub offset: u64,
    /// Bytes in the run (including bytes lost in a gap).
    pub skipped: u64,
    pub reason: DesyncReason,
    /// The run's first bytes (at most [`PREVIEW`]), raw: redaction is the event layer's job.
    pub preview: Vec<u8>,
}

/// Bytes of an unframeable run kept for its desync event.
pub const PREVIEW: usize = 64;

/// What one call to [`Framer::decode`] found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A frame of `frame.len` bytes; the caller consumes them.
    Frame(Frame),
    /// `n` bytes that are not a frame; the caller consumes them (they belong to a desync).
    Skip(usize),
    /// A run of skipped bytes ended; nothing to consume.
    Desync(DesyncInfo),
    /// Nothing more can be decided until more bytes arrive (or `eof`).
    NeedMore,
}

#[derive(Debug, Clone)]
struct Resync {
    start: u64,
    skipped: u64,
    preview: Vec<u8>,
    reason: DesyncReason,
    /// The next byte is right after an LF: a candidate line start.
    at_line_start: bool,
}

/// Framing state of one direction of one connection.
#[derive(Debug, Clone)]
pub struct Framer {
    limits: Limits,
    /// Stream offset of the first byte the next call will be given.
    offset: u64,
    resync: Option<Resync>,
}

impl Framer {
    pub fn new(limits: Limits) -> Framer {
        Framer {
            limits,
            offset: 0,
            resync: None,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Stream offset of the first unconsumed byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Inside a run of unframeable bytes.
    pub fn resyncing(&self) -> bool {
        self.resync.is_some()
    }

    fn start_resync(&mut self, reason: DesyncReason, at_line_start: bool) {
        if self.resync.is_none() {
            self.resync = Some(Resync {
                start: self.offset,
                skipped: 0,
                preview: Vec::new(),
                reason,
                at_line_start,
            });
        }
    }

    fn skip(&mut self, bytes: &[u8]) -> Item {
        if let Some(r) = self.resync.as_mut() {
            if r.preview.len() < PREVIEW {
                let take = (PREVIEW - r.preview.len()).min(bytes.len());
                r.preview.extend_from_slice(&bytes[..take]);
            }
            r.skipped += bytes.len() as u64;
        }
        self.offset += bytes.len() as u64;
        Item::Skip(bytes.len())
    }

    /// Ends a run of skipped bytes: its desync, if it skipped anything.
    fn end_resync(&mut self) -> Option<DesyncInfo> {
        let r = self.resync.take()?;
        (r.skipped > 0).then_some(DesyncInfo {
            offset: r.start,
            skipped: r.skipped,
            reason: r.reason,
            preview: r.preview,
        })
    }

    /// `buffered` (bytes the caller held and now drops) and then `len` more bytes of the
    /// stream were lost: decoding resumes at the next command line.
    pub fn lost(&mut self, buffered: &[u8], len: u64) {
        self.start_resync(DesyncReason::BytesLost, true);
        if let Some(r) = self.resync.as_mut() {
            if r.preview.len() < PREVIEW {
                let take = (PREVIEW - r.preview.len()).min(buffered.len());
                r.preview.extend_from_slice(&buffered[..take]);
            }
            r.skipped += buffered.len() as u64 + len;
            r.at_line_start = true;
        }
        self.offset += buffered.len() as u64 + len;
    }

    /// The stream ended: the desync still open, if any. Call after `decode` with `eof`
    /// returned `NeedMore`.
    pub fn finish(&mut self) -> Option<DesyncInfo> {
        self.end_resync()
    }

    /// Decodes the front of `buf`, the unconsumed bytes of the stream; `eof` says no more
    /// will come. The caller consumes what the item says and calls again.
    pub fn decode(&mut self, buf: &[u8], eof: bool, rules: &dyn Rules) -> Item {
        loop {
            if let Some(r) = self.resync.as_mut() {
                if r.at_line_start {
                    match line_starts(buf, eof, |n| rules.is_known(n)) {
                        None if !buf.is_empty() || !eof => return Item::NeedMore,
                        None | Some(false) => r.at_line_start = false,
                        Some(true) => {
                            if let Some(d) = self.end_resync() {
                                return Item::Desync(d);
                            }
                            continue;
                        }
                    }
                }
                if buf.is_empty() {
                    return Item::NeedMore;
                }
                // Skip to the end of this line; the next one may start a command.
                let Some(lf) = find_lf(buf) else {
                    return self.skip(buf);
                };
                let item = self.skip(&buf[..lf + 1]);
                if let Some(r) = self.resync.as_mut() {
                    r.at_line_start = true;
                }
                return item;
            }
            if buf.is_empty() {
                return Item::NeedMore;
            }
            let max = self.limits.max_line;
            let window = &buf[..buf.len().min(max + 2)];
            let (lf, line_end, eol) = match find_lf(window) {
                Some(lf) => {
                    let cr = lf > 0 && buf[lf - 1] == b'\r';
                    let end = if cr { lf - 1 } else { lf };
                    (lf, end, if cr { Eol::Crlf } else { Eol::Lf })
                }
                None if buf.len() > max => {
                    self.start_resync(DesyncReason::LineTooLong, false);
                    continue;
                }
                None if !eof => return Item::NeedMore,
                // A line ended by the stream's end is still a command line.
                None if is_command_line(buf.strip_suffix(b"\r").unwrap_or(buf)) => {
                    let end = buf.len() - usize::from(buf.ends_with(b"\r"));
                    (buf.len(), end, Eol::Missing)
                }
                None => {
                    self.start_resync(DesyncReason::IncompleteLine, false);
                    continue;
                }
            };
            let line = &buf[..line_end];
            if line.len() > max {
                self.start_resync(DesyncReason::LineTooLong, false);
                continue;
            }
            if !is_command_line(line) {
                let why = if line.is_empty() {
                    DesyncReason::EmptyLine
                } else {
                    DesyncReason::NotACommandLine
                };
                self.start_resync(why, false);
                continue;
            }
            let head = (lf + 1).min(buf.len());
            let mut toks = Toks::new();
            tokenize(line, &mut toks);
            let after = &buf[head..];
            let (payload, len, tag) = match rules.plan(line, &toks, after, eof) {
                Plan::NeedMore => return Item::NeedMore,
                Plan::None { tag } => (None, head, tag),
                Plan::Payload { len, guess, tag } => {
                    if len > self.limits.max_payload as u64 {
                        let span = PayloadSpan {
                            start: head,
                            have: 0,
                            declared: len,
                            guess,
                            oversize: true,
                        };
                        (Some(span), head, tag)
                    } else if (after.len() as u64) < len {
                        if !eof {
                            return Item::NeedMore;
                        }
                        // Cut off by the end of the stream: keep what there is.
                        let span = PayloadSpan {
                            start: head,
                            have: after.len(),
                            declared: len,
                            guess,
                            oversize: false,
                        };
                        (Some(span), buf.len(), tag)
                    } else {
                        let n = len as usize;
                        let span = PayloadSpan {
                            start: head,
                            have: n,
                            declared: len,
                            guess,
                            oversize: false,
                        };
                        (Some(span), head + n, tag)
                    }
                }
            };
            let frame = Frame {
                offset: self.offset,
                len,
                line_len: line_end,
                eol,
                toks,
                payload,
                tag,
            };
            self.offset += len as u64;
            if payload.is_some_and(|p| p.oversize) {
                // A bogus length is usually followed at once by the next command; a real
                // payload is skipped to the next line that looks like one.
                self.start_resync(DesyncReason::OversizePayload, true);
            }
            return Item::Frame(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_len;

    /// Rules for these tests: MSG and UUX carry a payload (last token), everything else
    /// known has none; unknown commands never do.
    struct T;
    impl Rules for T {
        fn is_known(&self, n: &[u8]) -> bool {
            matches!(n, b"MSG" | b"PNG" | b"UUX" | b"VER")
        }
        fn plan(&self, line: &[u8], toks: &[Tok], _after: &[u8], _eof: bool) -> Plan {
            let name = toks[0].of(line);
            if matches!(name, b"MSG" | b"UUX") {
                if let Some(n) = toks.last().and_then(|t| parse_len(t.of(line))) {
                    return Plan::Payload {
                        len: n,
                        guess: false,
                        tag: 7,
                    };
                }
            }
            Plan::None { tag: 1 }
        }
    }

    /// Runs a whole stream through one framer in chunks; returns (items, bytes per item).
    fn run(chunks: &[&[u8]]) -> Vec<(Item, Vec<u8>)> {
        let mut f = Framer::new(Limits {
            max_line: 40,
            max_payload: 100,
            max_guess: 10,
        });
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let last = chunks.len();
        for (i, c) in chunks.iter().enumerate() {
            buf.extend_from_slice(c);
            let eof = i + 1 == last;
            loop {
                let item = f.decode(&buf, eof, &T);
                let n = match &item {
                    Item::Frame(fr) => fr.len,
                    Item::Skip(n) => *n,
                    Item::Desync(_) => 0,
                    Item::NeedMore => break,
                };
                out.push((item, buf[..n].to_vec()));
                buf.drain(..n);
            }
        }
        if let Some(d) = f.finish() {
            out.push((Item::Desync(d), Vec::new()));
        }
        out
    }

    fn frames(items: &[(Item, Vec<u8>)]) -> Vec<Vec<u8>> {
        items
            .iter()
            .filter(|(i, _)| matches!(i, Item::Frame(_)))
            .map(|(_, b)| b.clone())
            .collect()
    }

    fn desyncs(items: &[(Item, Vec<u8>)]) -> Vec<DesyncInfo> {
        items
            .iter()
            .filter_map(|(i, _)| match i {
                Item::Desync(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn payload_by_length_and_next_frame_without_crlf() {
        let s: &[u8] = b"MSG 1 N 2\r\nhiPNG\r\nPNG\n";
        let items = run(&[s]);
        assert_eq!(
            frames(&items),
            [&b"MSG 1 N 2\r\nhi"[..], b"PNG\r\n", b"PNG\n"]
        );
        let Item::Frame(f) = &items[0].0 else {
            panic!()
        };
        assert_eq!(f.tag, 7);
        assert_eq!(f.payload(&items[0].1), b"hi");
        assert_eq!(f.name(&items[0].1), b"MSG");
        assert_eq!(f.arg(&items[0].1, 2), Some(&b"2"[..]));
        assert_eq!(f.eol, Eol::Crlf);
    }

    #[test]
    fn any_split_gives_the_same_frames() {
        let s: &[u8] = b"VER 1 MSNP8\r\nMSG 1 N 5\r\nhelloPNG\r\njunk\r\nmore\r\nUUX 2 0\r\nPNG";
        let whole = run(&[s]);
        for cut in 0..s.len() {
            let parts = run(&[&s[..cut], &s[cut..]]);
            assert_eq!(frames(&parts), frames(&whole), "cut at {cut}");
            assert_eq!(desyncs(&parts), desyncs(&whole), "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(frames(&run(&bytes)), frames(&whole));
        // The last line has no line ending: it is still a frame.
        let last = frames(&whole).pop().unwrap();
        assert_eq!(last, b"PNG");
    }

    #[test]
    fn junk_is_one_desync_and_framing_resumes() {
        let items = run(&[b"PNG\r\n\x00\x01garbage here\r\nmore junk\r\nPNG\r\n"]);
        assert_eq!(frames(&items).len(), 2);
        let d = desyncs(&items);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].offset, 5);
        assert_eq!(d[0].skipped, 27);
        assert_eq!(d[0].reason, DesyncReason::NotACommandLine);
        assert!(d[0].preview.starts_with(b"\x00\x01garbage"));
    }

    #[test]
    fn oversize_payload_is_not_read() {
        let items = run(&[b"MSG 1 U 4294967295\r\nxxxxxxxx\r\nPNG\r\n"]);
        let Item::Frame(f) = &items[0].0 else {
            panic!()
        };
        let p = f.payload.unwrap();
        assert!(p.oversize);
        assert_eq!(p.declared, 4294967295);
        assert_eq!(f.len, 20);
        assert_eq!(frames(&items).len(), 2);
        assert_eq!(desyncs(&items)[0].reason, DesyncReason::OversizePayload);
        // A bogus length followed at once by a command costs no desync.
        let items = run(&[b"MSG 1 U 4294967295\r\nPNG\r\n"]);
        assert_eq!(frames(&items).len(), 2);
        assert!(desyncs(&items).is_empty());
    }

    #[test]
    fn truncated_payload_at_the_end_is_kept() {
        let items = run(&[b"MSG a b 50\r\nMIME-Version: 1.0\r\n"]);
        let Item::Frame(f) = &items[0].0 else {
            panic!()
        };
        let p = f.payload.unwrap();
        assert!(p.truncated());
        assert_eq!(p.have, 19);
        assert_eq!(f.payload(&items[0].1), b"MIME-Version: 1.0\r\n");
    }

    #[test]
    fn long_lines_are_bounded() {
        let mut f = Framer::new(Limits {
            max_line: 10,
            ..Limits::default()
        });
        let junk = [b'A'; 100];
        let mut skipped = 0;
        loop {
            match f.decode(&junk, false, &T) {
                Item::Skip(n) => skipped += n,
                Item::NeedMore => break,
                other => panic!("{other:?}"),
            }
            if skipped >= 100 {
                break;
            }
        }
        assert_eq!(skipped, 100);
        assert_eq!(f.offset(), 100);
    }

    #[test]
    fn lost_bytes_resume_at_the_next_command_line() {
        let mut f = Framer::new(Limits::default());
        f.lost(b"MSG 1 N 9\r\nhel", 4);
        match f.decode(b"PNG\r\n", false, &T) {
            Item::Desync(d) => {
                assert_eq!(d.reason, DesyncReason::BytesLost);
                assert_eq!(d.skipped, 18);
                assert_eq!(d.offset, 0);
            }
            other => panic!("{other:?}"),
        }
        match f.decode(b"PNG\r\n", false, &T) {
            Item::Frame(fr) => assert_eq!(fr.offset, 18),
            other => panic!("{other:?}"),
        }
    }
}
