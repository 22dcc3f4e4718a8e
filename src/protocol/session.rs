//! The sans-IO session decoder: one per connection. It is fed `(direction, bytes,
//! timestamp)` and hands events, borrowed from those bytes, to a callback. It owns the
//! per-direction buffers, framers and the dialect; it never touches sockets, files or
//! clocks.

use std::borrow::Cow;
use std::sync::Arc;

use super::decode::{self, FrameRules};
use super::dialect::{Dialect, SessionHint};
use super::tables::Tables;
use crate::event::{Command, Desync, Dir, Event, EventKind, Gap, Preview, Service, Ts, Version};
use crate::wire::{self, DesyncInfo, DesyncReason, Framer, Item, Limits, Plan, Rules, Toks};

/// Where a session's events go. The event borrows the bytes fed and the tables; consumers
/// that keep it call `into_owned`.
pub type Out<'o> = dyn FnMut(&mut Event<'_>) + 'o;

#[derive(Debug)]
struct DirState {
    framer: Framer,
    /// Bytes received and not yet framed.
    buf: Vec<u8>,
    finished: bool,
}

/// Bytes of one direction not yet turned into events (see [`Session::pending`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    pub buffered: usize,
    pub awaiting: Option<Awaiting>,
}

/// A command whose line is in but whose payload is still arriving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awaiting {
    pub cmd: String,
    /// The first argument when it is a number (the transaction id of most commands).
    pub trid: Option<String>,
    pub have: usize,
    pub need: usize,
}

/// Decoder state for one connection.
pub struct Session {
    tables: Arc<Tables>,
    limits: Limits,
    conn: u64,
    dialect: Dialect,
    dirs: [DirState; 2],
}

pub fn desync_reason(r: DesyncReason, limits: Limits) -> Cow<'static, str> {
    match r {
        DesyncReason::NotACommandLine => Cow::Borrowed("not a command line"),
        DesyncReason::EmptyLine => Cow::Borrowed("empty line"),
        DesyncReason::LineTooLong => {
            Cow::Owned(format!("line longer than {} bytes", limits.max_line))
        }
        DesyncReason::OversizePayload => Cow::Owned(format!(
            "declared payload exceeds the {}-byte limit; skipped to the next command line",
            limits.max_payload
        )),
        DesyncReason::BytesLost => Cow::Borrowed("bytes lost in the capture"),
        DesyncReason::IncompleteLine => Cow::Borrowed("incomplete line at end of stream"),
    }
}

/// The desync event of a run of unframeable bytes.
pub fn desync_event(d: DesyncInfo, limits: Limits) -> EventKind<'static> {
    EventKind::Desync(Desync {
        offset: d.offset,
        skipped: d.skipped,
        reason: desync_reason(d.reason, limits),
        preview: Preview(Cow::Owned(d.preview)),
        redacted: false,
    })
}

/// New bytes appended at first behind a buffered, unfinished frame (see [`Session::feed`]).
const FEED_PIECE: usize = 4096;

impl Session {
    pub fn new(tables: Arc<Tables>, conn: u64, hint: SessionHint) -> Session {
        Session::with_limits(tables, conn, hint, Limits::default())
    }

    pub fn with_limits(
        tables: Arc<Tables>,
        conn: u64,
        hint: SessionHint,
        limits: Limits,
    ) -> Session {
        let d = || DirState {
            framer: Framer::new(limits),
            buf: Vec::new(),
            finished: false,
        };
        Session {
            tables,
            limits,
            conn,
            dialect: Dialect::new(hint),
            dirs: [d(), d()],
        }
    }

    pub fn conn(&self) -> u64 {
        self.conn
    }
    pub fn service(&self) -> Service {
        self.dialect.service
    }
    pub fn version(&self) -> Option<u8> {
        self.dialect.version
    }
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }
    pub fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }
    /// Bytes buffered and not yet framed, both directions.
    pub fn buffered(&self) -> usize {
        self.dirs.iter().map(|d| d.buf.len()).sum()
    }

    /// An event of this connection stamped with the current service and version.
    pub fn event<'a>(&self, ts: Ts, dir: Option<Dir>, kind: EventKind<'a>) -> Event<'a> {
        Event::new(
            ts,
            self.conn,
            dir,
            self.dialect.service,
            self.dialect.version,
            kind,
        )
    }

    /// Feeds bytes of one direction; complete frames become events handed to `out`.
    /// Frames are cut wherever the bytes are; only a frame that the end of `data` cuts is
    /// copied, to be finished by the next call.
    pub fn feed(&mut self, dir: Dir, data: &[u8], ts: Ts, out: &mut Out<'_>) {
        let i = dir.index();
        if self.dirs[i].finished {
            return;
        }
        let mut data = data;
        if !self.dirs[i].buf.is_empty() {
            // A frame cut by the end of the last call: finished with as few of the new bytes
            // as it takes (pieces doubling from FEED_PIECE), and the rest read where it lies.
            // Appending every new byte behind such a frame copied nearly all of a stream
            // whose segments cut its frames.
            let mut buf = std::mem::take(&mut self.dirs[i].buf);
            let mut piece = FEED_PIECE.max(buf.len());
            loop {
                let (head, rest) = data.split_at(piece.min(data.len()));
                buf.extend_from_slice(head);
                data = rest;
                let used = self.run(dir, &buf, false, ts, out);
                buf.drain(..used);
                if buf.is_empty() || data.is_empty() {
                    break;
                }
                piece = piece.saturating_mul(2);
            }
            let done = buf.is_empty();
            self.dirs[i].buf = buf;
            if !done || data.is_empty() {
                return;
            }
        }
        let used = self.run(dir, data, false, ts, out);
        self.dirs[i].buf.extend_from_slice(&data[used..]);
    }

    /// `len` bytes of `dir` were lost (a capture gap): what was buffered is dropped, and
    /// decoding resumes at the next command line.
    pub fn gap(&mut self, dir: Dir, len: u64, ts: Ts, out: &mut Out<'_>) {
        let st = &mut self.dirs[dir.index()];
        if st.finished {
            return;
        }
        let at = st.framer.offset() + st.buf.len() as u64;
        let buf = std::mem::take(&mut st.buf);
        st.framer.lost(&buf, len);
        let mut ev = self.event(
            ts,
            Some(dir),
            EventKind::Gap(Gap {
                offset: at,
                length: len,
            }),
        );
        out(&mut ev);
    }

    /// Ends one direction: whatever is buffered is decoded as far as it goes and reported.
    pub fn finish_dir(&mut self, dir: Dir, ts: Ts, out: &mut Out<'_>) {
        let i = dir.index();
        if self.dirs[i].finished {
            return;
        }
        let buf = std::mem::take(&mut self.dirs[i].buf);
        self.run(dir, &buf, true, ts, out);
        if let Some(d) = self.dirs[i].framer.finish() {
            let mut ev = self.event(ts, Some(dir), desync_event(d, self.limits));
            out(&mut ev);
        }
        self.dirs[i].finished = true;
    }

    /// Ends both directions.
    pub fn finish(&mut self, ts: Ts, out: &mut Out<'_>) {
        self.finish_dir(Dir::C2s, ts, out);
        self.finish_dir(Dir::S2c, ts, out);
    }

    /// Frames as much of `s` as possible; returns the number of bytes consumed.
    fn run(&mut self, dir: Dir, s: &[u8], eof: bool, ts: Ts, out: &mut Out<'_>) -> usize {
        let Session {
            tables,
            limits,
            conn,
            dialect,
            dirs,
        } = self;
        let tables: &Tables = tables;
        let st = &mut dirs[dir.index()];
        let mut pos = 0;
        loop {
            let rules = FrameRules {
                tables,
                dialect,
                dir,
                limits: *limits,
            };
            let rest = &s[pos..];
            match st.framer.decode(rest, eof, &rules) {
                Item::NeedMore => return pos,
                Item::Skip(n) => pos += n,
                Item::Desync(d) => {
                    let mut ev = Event::new(
                        ts,
                        *conn,
                        Some(dir),
                        dialect.service,
                        dialect.version,
                        desync_event(d, *limits),
                    );
                    out(&mut ev);
                }
                Item::Frame(f) => {
                    let bytes = &rest[..f.len];
                    let version = dialect.version;
                    // The event first, the command decoded into it: no copy of either.
                    let mut ev = Event::new(
                        ts,
                        *conn,
                        Some(dir),
                        dialect.service,
                        version,
                        EventKind::Command(Command::blank()),
                    );
                    if let EventKind::Command(c) = &mut ev.kind {
                        decode::command_into(c, tables, dir, version, *limits, &f, bytes);
                    }
                    let line = f.line(bytes);
                    dialect.update(
                        tables,
                        dir,
                        f.name(bytes),
                        &wire::Args::of_line(line, &f.toks),
                    );
                    // The event carries the dialect as this line left it.
                    ev.service = dialect.service;
                    ev.version = dialect.version.map(Version);
                    out(&mut ev);
                    pos += f.len;
                }
            }
        }
    }

    /// What one direction holds that is not yet an event: bytes buffered and, when they
    /// start with a complete command line whose payload has not all arrived, how much of
    /// it is in.
    pub fn pending(&self, dir: Dir) -> Pending {
        let st = &self.dirs[dir.index()];
        let mut p = Pending {
            buffered: st.buf.len(),
            awaiting: None,
        };
        if st.framer.resyncing() || st.finished {
            return p;
        }
        let window = &st.buf[..st.buf.len().min(self.limits.max_line + 2)];
        let Some(lf) = wire::find_lf(window) else {
            return p;
        };
        let end = if lf > 0 && window[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        };
        let line = &window[..end];
        if !wire::is_command_line(line) {
            return p;
        }
        let mut toks = Toks::new();
        wire::tokenize(line, &mut toks);
        let after = &st.buf[lf + 1..];
        let rules = FrameRules {
            tables: &self.tables,
            dialect: &self.dialect,
            dir,
            limits: self.limits,
        };
        if let Plan::Payload { len, .. } = rules.plan(line, &toks, after, false) {
            if (after.len() as u64) < len && len <= self.limits.max_payload as u64 {
                let args = wire::Args::of_line(line, &toks);
                let trid = args
                    .get(0)
                    .filter(|t| t.iter().all(u8::is_ascii_digit))
                    .map(|t| String::from_utf8_lossy(t).into_owned());
                p.awaiting = Some(Awaiting {
                    cmd: String::from_utf8_lossy(&line[..3]).into_owned(),
                    trid,
                    have: after.len(),
                    need: len as usize,
                });
            }
        }
        p
    }
}

/// Decodes a whole byte stream of one connection at once (both directions interleaved in
/// the order given). Convenient for tests and small tools.
pub fn decode_all(tables: Arc<Tables>, chunks: &[(Dir, &[u8])]) -> Vec<Event<'static>> {
    let mut s = Session::new(tables, 1, SessionHint::default());
    let mut out = Vec::new();
    let mut keep = |e: &mut Event<'_>| out.push(e.clone().into_owned());
    for (d, b) in chunks {
        s.feed(*d, b, Ts(0), &mut keep);
    }
    s.finish(Ts(0), &mut keep);
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Command, FieldValue, Version};
    use crate::payload::Kind;

    /// A small table written for these tests, so they check the framing logic alone.
    const TEST_TABLE: &str = r#"
[[command]]
name = "VER"
meaning = "version"
services = ["DS", "NS"]
versions = "2-21"
  [[command.form]]
  dir = "both"
  params = [{ name = "trid", type = "trid" }, { name = "dialects", type = "dialect" }]
  repeat_last = true

[[command]]
name = "MSG"
meaning = "message"
services = ["NS", "SB"]
versions = "2-21"
  [[command.form]]
  dir = "c2s"
  services = ["SB"]
  payload = "last"
  payload_kind = "mime"
  params = [{ name = "trid", type = "trid" }, { name = "ack", type = "enum" }, { name = "length", type = "length" }]
  [[command.form]]
  dir = "s2c"
  payload = "last"
  payload_kind = "mime"
  params = [{ name = "handle", type = "handle" }, { name = "friendly", type = "friendly" }, { name = "length", type = "length" }]

[[command]]
name = "NLN"
meaning = "online"
services = ["NS"]
versions = "2-21"
  [[command.form]]
  dir = "s2c"
  params = [{ name = "status", type = "status" }, { name = "handle", type = "handle" }, { name = "friendly", type = "friendly" }, { name = "caps", type = "caps" }]
  optional = 1

[[command]]
name = "UUX"
meaning = "set personal data"
services = ["NS"]
versions = "11-21"
  [[command.form]]
  dir = "both"
  payload = "last"
  payload_kind = "xml"
  params = [{ name = "trid", type = "trid" }, { name = "length", type = "length" }]

[[command]]
name = "XFR"
meaning = "transfer"
services = ["DS", "NS"]
versions = "2-21"
  [[command.form]]
  dir = "s2c"
  params = [{ name = "trid", type = "trid" }, { name = "kind", type = "enum" }, { name = "address", type = "address" }, { name = "auth", type = "string" }, { name = "cookie", type = "cookie" }]
  optional = 2

[[command]]
name = "USR"
meaning = "auth"
services = ["NS", "SB"]
versions = "2-21"
  [[command.form]]
  dir = "both"
  params = [{ name = "trid", type = "trid" }, { name = "a", type = "string" }, { name = "b", type = "string" }, { name = "c", type = "string" }, { name = "d", type = "string" }]
  optional = 4

[[command]]
name = "PNG"
meaning = "ping"
services = ["NS"]
versions = "2-21"
  [[command.form]]
  dir = "c2s"
"#;

    fn tables() -> Arc<Tables> {
        let mut t = Tables::empty();
        t.add_file("test.toml", TEST_TABLE)
            .expect("test table parses");
        // The dialect rules, client-version names and list bits are data too: use the
        // built-in ones.
        let b = Tables::builtin().expect("built-in tables");
        t.client_versions = b.client_versions;
        t.lists = b.lists;
        t.set_rules(b.rules);
        Arc::new(t)
    }

    fn run(chunks: &[(Dir, &[u8])]) -> Vec<Event<'static>> {
        decode_all(tables(), chunks)
    }

    fn cmds<'e>(evs: &'e [Event<'static>]) -> Vec<&'e Command<'static>> {
        evs.iter().filter_map(Event::command).collect()
    }

    fn kinds(evs: &[Event]) -> Vec<&'static str> {
        evs.iter().map(Event::type_name).collect()
    }

    fn feed_all(s: &mut Session, dir: Dir, b: &[u8], out: &mut Vec<Event<'static>>) {
        s.feed(dir, b, Ts(0), &mut |e| out.push(e.clone().into_owned()));
    }

    #[test]
    fn pending_says_how_much_of_a_payload_is_in() {
        let mut sess = Session::new(tables(), 1, SessionHint::default());
        let mut out = Vec::new();
        feed_all(&mut sess, Dir::C2s, b"UUX 7 10\r\n<Dat", &mut out);
        assert!(out.is_empty());
        assert_eq!(
            sess.pending(Dir::C2s),
            Pending {
                buffered: 14,
                awaiting: Some(Awaiting {
                    cmd: "UUX".into(),
                    trid: Some("7".into()),
                    have: 4,
                    need: 10
                })
            }
        );
        assert_eq!(sess.pending(Dir::S2c), Pending::default());
        // A partial line: bytes only.
        feed_all(&mut sess, Dir::S2c, b"PN", &mut out);
        assert_eq!(sess.pending(Dir::S2c).buffered, 2);
        assert_eq!(sess.pending(Dir::S2c).awaiting, None);
        // Once complete, nothing is pending.
        feed_all(&mut sess, Dir::C2s, b"a></Da", &mut out);
        assert_eq!(cmds(&out).len(), 1);
        assert_eq!(sess.pending(Dir::C2s), Pending::default());
    }

    #[test]
    fn payload_framed_by_length_and_next_command_follows_without_crlf() {
        let body = b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nhi";
        let mut s = format!("MSG 1 N {}\r\n", body.len()).into_bytes();
        s.extend_from_slice(body);
        s.extend_from_slice(b"PNG\r\n");
        let evs = run(&[(Dir::C2s, &s)]);
        let c = cmds(&evs);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].cmd, "MSG");
        assert_eq!(c[0].trid, Some(1));
        let p = c[0].payload.as_ref().unwrap();
        assert_eq!(p.length, body.len() as u64);
        assert_eq!(p.content().unwrap().text(), Some("hi"));
        assert_eq!(c[1].cmd, "PNG");
        assert_eq!(c[1].line, "PNG");
    }

    #[test]
    fn numeric_last_token_is_not_a_payload_for_nln() {
        // NLN ends in capability flags: the next bytes are a new command, not a payload.
        let evs = run(&[(
            Dir::S2c,
            b"NLN NLN a@b.c Alice 268435500\r\nNLN BSY d@e.f Dee 12\r\n",
        )]);
        let c = cmds(&evs);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.payload.is_none()));
        assert_eq!(c[0].fields.str("friendly"), Some("Alice"));
        let Some(FieldValue::Caps(caps)) = c[0].fields.get("caps") else {
            panic!("{:?}", c[0].fields)
        };
        assert_eq!(caps.value, 268435500);
        // 268435500 = 0x1000002C: client nibble 1 = 6.0.
        assert_eq!(caps.client.as_deref(), Some("6.0"));
    }

    #[test]
    fn version_follows_the_ver_exchange() {
        let evs = run(&[
            (Dir::C2s, b"VER 1 MSNP11 MSNP10 CVR0\r\n"),
            (Dir::S2c, b"VER 1 MSNP11\r\n"),
        ]);
        assert_eq!(evs[0].version, None);
        assert_eq!(evs[0].service, Service::Ns);
        assert_eq!(evs[1].version, Some(Version(11)));
        let Some(FieldValue::List(d)) = evs[0].command().unwrap().fields.get("dialects") else {
            panic!()
        };
        let d: Vec<&str> = d.iter().filter_map(FieldValue::as_str).collect();
        assert_eq!(d, ["MSNP11", "MSNP10", "CVR0"]);
    }

    #[test]
    fn refused_version_leaves_version_unknown() {
        let evs = run(&[(Dir::C2s, b"VER 1 MSNP99\r\n"), (Dir::S2c, b"VER 1 0\r\n")]);
        assert_eq!(evs[1].version, None);
    }

    #[test]
    fn uux_zero_length_reply_and_error_with_payload_in_msnp13() {
        let evs = run(&[
            (Dir::C2s, b"VER 1 MSNP13\r\n"),
            (
                Dir::S2c,
                b"VER 1 MSNP13\r\nUUX 2 0\r\n241 3 5\r\n<ml/>VER 9 X\r\n",
            ),
        ]);
        let c = cmds(&evs);
        assert_eq!(c[2].cmd, "UUX");
        assert_eq!(c[2].payload.as_ref().unwrap().length, 0);
        assert_eq!(c[3].cmd, "241");
        let p = c[3].payload.as_ref().unwrap();
        assert_eq!(p.length, 5);
        assert_eq!(p.xml().unwrap().name, "ml");
        assert_eq!(c[4].cmd, "VER");
    }

    #[test]
    fn errors_before_msnp13_have_no_payload() {
        let evs = run(&[
            (Dir::C2s, b"VER 1 MSNP8\r\n"),
            (Dir::S2c, b"VER 1 MSNP8\r\n911 3 5\r\nVER 4 MSNP8\r\n"),
        ]);
        let c = cmds(&evs);
        assert_eq!(c[2].cmd, "911");
        assert!(c[2].payload.is_none());
        assert_eq!(c[3].cmd, "VER");
    }

    #[test]
    fn unknown_command_is_kept_and_payload_guessed_from_what_follows() {
        let evs = run(&[(Dir::S2c, b"ZZZ 1 5\r\nhelloPNG\r\nQQQ 2 7\r\nPNG\r\n")]);
        let c = cmds(&evs);
        assert_eq!(kinds(&evs), ["command", "command", "command", "command"]);
        assert_eq!(c[0].cmd, "ZZZ");
        assert!(!c[0].known);
        let p = c[0].payload.as_ref().unwrap();
        assert!(p.guess);
        assert_eq!(p.text.as_deref(), Some("hello"));
        // QQQ ends in 7 but a command line follows at once: no payload.
        assert_eq!(c[2].cmd, "QQQ");
        assert!(c[2].payload.is_none());
    }

    #[test]
    fn garbage_becomes_one_desync_and_decoding_resumes() {
        let evs = run(&[(
            Dir::C2s,
            b"PNG\r\n\x00\x01garbage here\r\nmore junk\r\nPNG\r\n",
        )]);
        assert_eq!(kinds(&evs), ["command", "desync", "command"]);
        let EventKind::Desync(d) = &evs[1].kind else {
            panic!()
        };
        assert_eq!(d.offset, 5);
        // "\x00\x01garbage here\r\n" is 16 bytes, "more junk\r\n" 11.
        assert_eq!(d.skipped, 27);
    }

    #[test]
    fn hostile_length_costs_nothing() {
        let mut s = b"MSG 1 U 4294967295\r\n".to_vec();
        s.extend_from_slice(&[b'x'; 1000]);
        s.extend_from_slice(b"\r\nPNG\r\n");
        let mut sess = Session::new(tables(), 1, SessionHint::default());
        let mut out = Vec::new();
        feed_all(&mut sess, Dir::C2s, &s, &mut out);
        assert!(sess.buffered() < 64, "buffered {}", sess.buffered());
        sess.finish(Ts(0), &mut |e| out.push(e.clone().into_owned()));
        assert_eq!(kinds(&out), ["command", "desync", "command"]);
        let p = out[0].command().unwrap().payload.as_ref().unwrap();
        assert_eq!(p.kind, Kind::Skipped);
        assert_eq!(p.length, 4294967295);
        assert_eq!(out[2].command().unwrap().cmd, "PNG");
    }

    #[test]
    fn endless_line_is_bounded() {
        let limits = Limits {
            max_line: 100,
            ..Limits::default()
        };
        let mut sess = Session::with_limits(tables(), 1, SessionHint::default(), limits);
        let mut out = Vec::new();
        for _ in 0..100 {
            feed_all(&mut sess, Dir::S2c, &[b'A'; 1000], &mut out);
            assert!(sess.buffered() <= 1000);
        }
        feed_all(&mut sess, Dir::S2c, b"\r\nPNG\r\n", &mut out);
        sess.finish(Ts(0), &mut |e| out.push(e.clone().into_owned()));
        assert_eq!(kinds(&out), ["desync", "command"]);
    }

    #[test]
    fn truncated_payload_at_end_is_reported_not_lost() {
        let evs = run(&[(Dir::S2c, b"MSG a@b.c A 50\r\nMIME-Version: 1.0\r\n")]);
        let c = cmds(&evs);
        assert_eq!(c.len(), 1);
        let p = c[0].payload.as_ref().unwrap();
        assert_eq!(p.length, 50);
        assert!(p.problem.as_deref().unwrap().contains("truncated"));
    }

    #[test]
    fn last_line_without_a_line_ending_is_a_command() {
        let evs = run(&[(Dir::C2s, b"PNG\r\nOUT")]);
        let c = cmds(&evs);
        assert_eq!(kinds(&evs), ["command", "command"]);
        assert_eq!(c[1].cmd, "OUT");
        assert!(c[1].unterminated);
        assert!(!c[0].unterminated);
    }

    #[test]
    fn dispatch_and_switchboard_detection() {
        let evs = run(&[
            (Dir::C2s, b"VER 1 MSNP8 CVR0\r\nUSR 2 TWN I a@b.c\r\n"),
            (
                Dir::S2c,
                b"VER 1 MSNP8\r\nXFR 2 NS 10.0.0.5:1863 0 10.0.0.1:1863\r\n",
            ),
        ]);
        let last = evs.last().unwrap();
        assert_eq!(last.service, Service::Ds);
        let (target, address, _) =
            crate::protocol::redirect::of_command(last.dir, last.command().unwrap()).unwrap();
        assert_eq!(target, Service::Ns);
        assert_eq!(address, "10.0.0.5:1863");
        let evs = run(&[(Dir::C2s, b"USR 1 a@b.c 123.456\r\n")]);
        assert_eq!(evs[0].service, Service::Sb);
    }

    #[test]
    fn bare_lf_lines_are_accepted() {
        let evs = run(&[(Dir::C2s, b"PNG\nPNG\r\n")]);
        assert_eq!(cmds(&evs).len(), 2);
        assert_eq!(cmds(&evs)[1].offset, 4);
    }

    #[test]
    fn non_utf8_line_keeps_its_bytes() {
        let evs = run(&[(Dir::S2c, b"NLN NLN a@b.c Caf\xe9 0\r\n")]);
        let c = cmds(&evs)[0];
        assert_eq!(c.line, "NLN NLN a@b.c Caf\u{fffd} 0");
        assert_eq!(
            c.line_base64.as_ref().unwrap().0.as_ref(),
            b"NLN NLN a@b.c Caf\xe9 0"
        );
        let j = serde_json::to_string(&evs[0]).unwrap();
        let back = Event::from_json(&j).unwrap();
        assert_eq!(back.command().unwrap().line_base64, c.line_base64);
    }
}
