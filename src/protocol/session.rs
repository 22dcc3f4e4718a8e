//! The sans-IO session decoder: one per TCP connection. It is fed `(direction, bytes,
//! timestamp)` and returns events. It owns the framing state machine, version and service
//! tracking; it never touches sockets, files or clocks.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::fields;
use super::tables::{CommandDef, FormDef, PayloadKind, PayloadRule, Tables, VersionRange};
use crate::event::{
    preview, Command, Dir, ErrorInfo, Event, EventKind, Payload, Service, Ts, Version,
    SCHEMA_VERSION,
};
use crate::payload;
use crate::wire::{self, Limits};

/// What the caller knows about a connection before any byte is seen (from redirects).
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionHint {
    pub service: Option<Service>,
    pub version: Option<u8>,
}

#[derive(Debug)]
struct Resync {
    start: u64,
    skipped: u64,
    preview: Vec<u8>,
    reason: String,
    /// The unconsumed input starts right after an LF: a candidate line start.
    at_line_start: bool,
}

#[derive(Debug, Default)]
struct DirState {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    offset: u64,
    resync: Option<Resync>,
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
    service: Service,
    service_hinted: bool,
    version: Option<u8>,
    range: VersionRange,
    offered: Vec<u8>,
    logged_in: bool,
    dirs: [DirState; 2],
}

enum PayloadPlan {
    None,
    Len { n: usize, guess: bool },
    Oversize(u64),
}

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
        let version = hint.version.filter(|v| VersionRange::ALL.contains(*v));
        Session {
            tables,
            limits,
            conn,
            service: hint.service.unwrap_or(Service::Unknown),
            service_hinted: hint.service.is_some_and(|s| s != Service::Unknown),
            version,
            range: version.map_or(VersionRange::ALL, |v| VersionRange { lo: v, hi: v }),
            offered: Vec::new(),
            logged_in: false,
            dirs: Default::default(),
        }
    }

    pub fn conn(&self) -> u64 {
        self.conn
    }
    pub fn service(&self) -> Service {
        self.service
    }
    pub fn version(&self) -> Option<u8> {
        self.version
    }
    pub fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }
    /// Bytes buffered and not yet framed, both directions.
    pub fn buffered(&self) -> usize {
        self.dirs.iter().map(|d| d.buf.len()).sum()
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
        if st.resync.is_some() || st.finished {
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
        let text = String::from_utf8_lossy(line);
        let mut toks = text.split(' ').filter(|t| !t.is_empty());
        let name = toks.next().unwrap_or_default().to_string();
        let args: Vec<String> = toks.map(str::to_string).collect();
        let after = &st.buf[lf + 1..];
        let (def, form) = self.lookup(dir, &name, &args);
        if let Some(PayloadPlan::Len { n, .. }) =
            self.plan_payload(dir, &name, def, form, &args, after, false)
        {
            if after.len() < n {
                let trid = args
                    .first()
                    .filter(|t| t.bytes().all(|b| b.is_ascii_digit()));
                p.awaiting = Some(Awaiting {
                    cmd: name,
                    trid: trid.cloned(),
                    have: after.len(),
                    need: n,
                });
            }
        }
        p
    }

    /// An event of this connection stamped with the current service and version.
    pub fn event(&self, ts: Ts, dir: Option<Dir>, kind: EventKind) -> Event {
        Event {
            schema: SCHEMA_VERSION,
            ts,
            conn: self.conn,
            dir,
            service: self.service,
            version: self.version.map(Version),
            kind,
        }
    }

    /// Feeds bytes of one direction; complete frames become events in `out`.
    pub fn feed(&mut self, dir: Dir, data: &[u8], ts: Ts, out: &mut Vec<Event>) {
        let i = dir.index();
        if self.dirs[i].finished {
            return;
        }
        if self.dirs[i].buf.is_empty() {
            let used = self.parse(dir, data, false, ts, out);
            let st = &mut self.dirs[i];
            st.buf.extend_from_slice(&data[used..]);
            st.offset += used as u64;
        } else {
            let mut buf = std::mem::take(&mut self.dirs[i].buf);
            buf.extend_from_slice(data);
            let used = self.parse(dir, &buf, false, ts, out);
            buf.drain(..used);
            let st = &mut self.dirs[i];
            st.offset += used as u64;
            st.buf = buf;
        }
    }

    /// Tells the decoder that `len` bytes of `dir` were lost (capture gap): what was
    /// buffered is reported, and decoding resumes at the next command line.
    pub fn gap(&mut self, dir: Dir, len: u64, ts: Ts, out: &mut Vec<Event>) {
        let i = dir.index();
        let buf = std::mem::take(&mut self.dirs[i].buf);
        let st = &mut self.dirs[i];
        let at = st.offset + buf.len() as u64;
        let r = st.resync.get_or_insert(Resync {
            start: st.offset,
            skipped: 0,
            preview: Vec::new(),
            reason: "bytes lost in the capture".into(),
            at_line_start: false,
        });
        if r.preview.len() < 64 {
            let take = (64 - r.preview.len()).min(buf.len());
            r.preview.extend_from_slice(&buf[..take]);
        }
        r.skipped += buf.len() as u64 + len;
        st.offset = at + len;
        out.push(self.event(
            ts,
            Some(dir),
            EventKind::Gap {
                offset: at,
                length: len,
            },
        ));
    }

    /// Ends one direction: whatever is buffered is decoded as far as it goes and reported.
    pub fn finish_dir(&mut self, dir: Dir, ts: Ts, out: &mut Vec<Event>) {
        let i = dir.index();
        if self.dirs[i].finished {
            return;
        }
        let buf = std::mem::take(&mut self.dirs[i].buf);
        let used = self.parse(dir, &buf, true, ts, out);
        self.dirs[i].offset += used as u64;
        self.end_resync(dir, ts, out);
        self.dirs[i].finished = true;
    }

    /// Ends both directions.
    pub fn finish(&mut self, ts: Ts, out: &mut Vec<Event>) {
        self.finish_dir(Dir::C2s, ts, out);
        self.finish_dir(Dir::S2c, ts, out);
    }

    fn start_resync(&mut self, dir: Dir, at: u64, reason: String) {
        let st = &mut self.dirs[dir.index()];
        if st.resync.is_none() {
            st.resync = Some(Resync {
                start: at,
                skipped: 0,
                preview: Vec::new(),
                reason,
                at_line_start: false,
            });
        }
    }

    fn end_resync(&mut self, dir: Dir, ts: Ts, out: &mut Vec<Event>) {
        if let Some(r) = self.dirs[dir.index()].resync.take() {
            if r.skipped > 0 {
                out.push(self.event(
                    ts,
                    Some(dir),
                    EventKind::Desync {
                        offset: r.start,
                        skipped: r.skipped,
                        reason: r.reason,
                        preview: preview(&r.preview, 64),
                    },
                ));
            }
        }
    }

    fn skip(&mut self, dir: Dir, bytes: &[u8]) {
        if let Some(r) = self.dirs[dir.index()].resync.as_mut() {
            if r.preview.len() < 64 {
                let take = (64 - r.preview.len()).min(bytes.len());
                r.preview.extend_from_slice(&bytes[..take]);
            }
            r.skipped += bytes.len() as u64;
        }
    }

    fn known(&self) -> impl Fn(&[u8]) -> bool + '_ {
        |n: &[u8]| self.tables.is_known(n)
    }

    /// Frames as much of `s` as possible; returns the number of bytes consumed.
    fn parse(&mut self, dir: Dir, s: &[u8], eof: bool, ts: Ts, out: &mut Vec<Event>) -> usize {
        let base = self.dirs[dir.index()].offset;
        let mut pos = 0usize;
        loop {
            if let Some(r) = self.dirs[dir.index()].resync.as_mut() {
                if r.at_line_start {
                    match wire::looks_like_line_start(&s[pos..], eof, |n: &[u8]| {
                        self.tables.is_known(n)
                    }) {
                        None => return pos,
                        Some(true) => {
                            self.end_resync(dir, ts, out);
                            continue;
                        }
                        Some(false) => r.at_line_start = false,
                    }
                }
                // Look for the next line that starts with a known command or an error code.
                let Some(lf) = wire::find_lf(&s[pos..]) else {
                    self.skip(dir, &s[pos..]);
                    return s.len();
                };
                let cand = pos + lf + 1;
                match wire::looks_like_line_start(&s[cand..], eof, self.known()) {
                    None => {
                        self.skip(dir, &s[pos..cand]);
                        if let Some(r) = self.dirs[dir.index()].resync.as_mut() {
                            r.at_line_start = true;
                        }
                        return cand;
                    }
                    Some(true) => {
                        self.skip(dir, &s[pos..cand]);
                        self.end_resync(dir, ts, out);
                        pos = cand;
                    }
                    Some(false) => {
                        self.skip(dir, &s[pos..cand]);
                        pos = cand;
                        if pos == s.len() {
                            return pos;
                        }
                    }
                }
                continue;
            }
            if pos >= s.len() {
                return pos;
            }
            let rest = &s[pos..];
            let window = &rest[..rest.len().min(self.limits.max_line + 2)];
            let Some(lf) = wire::find_lf(window) else {
                if rest.len() > self.limits.max_line {
                    let reason = format!("line longer than {} bytes", self.limits.max_line);
                    self.start_resync(dir, base + pos as u64, reason);
                    continue;
                }
                if eof {
                    self.start_resync(
                        dir,
                        base + pos as u64,
                        "incomplete line at end of stream".into(),
                    );
                    self.skip(dir, rest);
                    return s.len();
                }
                return pos;
            };
            let line_end = if lf > 0 && rest[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            let line = &rest[..line_end];
            if line.len() > self.limits.max_line {
                let reason = format!("line longer than {} bytes", self.limits.max_line);
                self.start_resync(dir, base + pos as u64, reason);
                continue;
            }
            if !wire::is_command_line(line) {
                let reason = if line.is_empty() {
                    "empty line".to_string()
                } else {
                    "not a command line".to_string()
                };
                self.start_resync(dir, base + pos as u64, reason);
                continue;
            }
            // The line is converted once: tokens are cut from it and it becomes `Command::line`.
            let text = crate::payload::lossy(line).into_owned();
            let mut toks = text.split(' ').filter(|t| !t.is_empty());
            let name = toks.next().unwrap_or_default().to_string();
            let args: Vec<String> = toks.map(str::to_string).collect();
            let after = &rest[lf + 1..];
            // The form is selected once, for framing and for the fields.
            let (def, form) = self.lookup(dir, &name, &args);
            let plan = match self.plan_payload(dir, &name, def, form, &args, after, eof) {
                Some(p) => p,
                None => return pos, // need more bytes to decide
            };
            let (frame_len, payload_range, oversize) = match plan {
                PayloadPlan::None => (lf + 1, None, None),
                PayloadPlan::Len { n, guess } => {
                    if after.len() < n {
                        if !eof {
                            return pos;
                        }
                        // Truncated at the end of the stream: keep what there is.
                        (rest.len(), Some((lf + 1, rest.len(), guess, Some(n))), None)
                    } else {
                        (lf + 1 + n, Some((lf + 1, lf + 1 + n, guess, None)), None)
                    }
                }
                PayloadPlan::Oversize(n) => (lf + 1, None, Some(n)),
            };
            let raw = &rest[..frame_len];
            let cmd = self.build_command(
                dir,
                name,
                args,
                text,
                (def, form),
                raw,
                payload_range,
                oversize,
                base + pos as u64,
            );
            self.update_state(dir, &cmd);
            let over = cmd.payload.as_ref().is_some_and(|p| p.kind == "skipped");
            out.push(self.event(ts, Some(dir), EventKind::Command(Box::new(cmd))));
            pos += frame_len;
            if over {
                let n = oversize.unwrap_or(0);
                self.start_resync(
                    dir,
                    base + pos as u64,
                    format!(
                        "declared payload of {n} bytes exceeds the {}-byte limit; skipped to the next command line",
                        self.limits.max_payload
                    ),
                );
                // A bogus length is usually followed at once by the next command; a real
                // payload is skipped to the next line that looks like a command.
                if let Some(r) = self.dirs[dir.index()].resync.as_mut() {
                    r.at_line_start = true;
                }
            }
        }
    }

    /// The table entry of a command name and the form the line fits (errors have neither).
    fn lookup(
        &self,
        dir: Dir,
        name: &str,
        args: &[String],
    ) -> (Option<&CommandDef>, Option<&FormDef>) {
        if name.as_bytes()[0].is_ascii_digit() {
            return (None, None);
        }
        let def = self.tables.command(name.as_bytes());
        let form =
            def.and_then(|d| Tables::select_form(d, dir, self.service, self.versions(), args));
        (def, form)
    }

    /// Decides whether a payload follows the line. None: more bytes needed to decide.
    #[allow(clippy::too_many_arguments)]
    fn plan_payload(
        &self,
        dir: Dir,
        name: &str,
        def: Option<&CommandDef>,
        form: Option<&FormDef>,
        args: &[String],
        after: &[u8],
        eof: bool,
    ) -> Option<PayloadPlan> {
        let nb = name.as_bytes();
        let declared = |i: usize| args.get(i).and_then(|t| wire::parse_len(t));
        let len = if nb[0].is_ascii_digit() {
            // Errors carry a payload only from MSNP13 on, as `NNN trid len`.
            if self.range.hi >= 13 && args.len() == 2 {
                declared(1)
            } else {
                None
            }
        } else if let Some(def) = def {
            match form {
                Some(f) if f.payload == PayloadRule::Last => {
                    args.len().checked_sub(1).and_then(declared)
                }
                Some(_) => None,
                // No form fits: fall back to what the command can do in this direction.
                None if def.may_carry_payload(dir) => args.len().checked_sub(1).and_then(declared),
                None => None,
            }
        } else {
            // Unknown command: guess from what follows.
            match args.len().checked_sub(1).and_then(declared) {
                Some(n) if n > 0 && n as usize <= self.limits.max_guess => {
                    match wire::looks_like_line_start(after, eof, |_| true) {
                        None => return None,
                        Some(true) => return Some(PayloadPlan::None),
                        _ => {
                            if eof && after.is_empty() {
                                return Some(PayloadPlan::None);
                            }
                            return Some(PayloadPlan::Len {
                                n: n as usize,
                                guess: true,
                            });
                        }
                    }
                }
                _ => None,
            }
        };
        Some(match len {
            None | Some(0) => {
                if len == Some(0) {
                    PayloadPlan::Len { n: 0, guess: false }
                } else {
                    PayloadPlan::None
                }
            }
            Some(n) if n > self.limits.max_payload as u64 => PayloadPlan::Oversize(n),
            Some(n) => PayloadPlan::Len {
                n: n as usize,
                guess: false,
            },
        })
    }

    fn versions(&self) -> VersionRange {
        match self.version {
            Some(v) => VersionRange { lo: v, hi: v },
            None => self.range,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn build_command(
        &self,
        dir: Dir,
        name: String,
        args: Vec<String>,
        line: String,
        (def, form): (Option<&CommandDef>, Option<&FormDef>),
        raw: &[u8],
        payload_range: Option<(usize, usize, bool, Option<usize>)>,
        oversize: Option<u64>,
        offset: u64,
    ) -> Command {
        let mut cmd = Command {
            trid: None,
            args,
            fields: Map::new(),
            known: false,
            unmatched_form: false,
            meaning: None,
            error: None,
            payload: None,
            line,
            offset,
            redacted: false,
            annotations: Map::new(),
            address_args: Vec::new(),
            secret_args: Vec::new(),
            raw: raw.to_vec(),
            cmd: name,
        };
        let mut kind: Option<PayloadKind> = None;
        if cmd.cmd.as_bytes()[0].is_ascii_digit() {
            let code: u16 = cmd.cmd.parse().unwrap_or(0);
            let def = self.tables.error(code);
            cmd.known = def.is_some();
            cmd.error = Some(ErrorInfo {
                code,
                name: def.map(|d| d.name.clone()),
                meaning: def.map(|d| d.meaning.clone()),
            });
            cmd.meaning = def.map(|d| d.meaning.clone());
            cmd.trid = cmd.args.first().and_then(|t| wire::parse_len(t));
            kind = Some(PayloadKind::Xml);
        } else if let Some(def) = def {
            cmd.known = true;
            match form {
                Some(form) => {
                    cmd.meaning = Some(form.meaning.clone().unwrap_or_else(|| def.meaning.clone()));
                    kind = form.payload_kind;
                    fields::decode(&self.tables, form, &mut cmd);
                }
                None => {
                    cmd.unmatched_form = true;
                    cmd.meaning = Some(def.meaning.clone());
                    cmd.trid = cmd.args.first().and_then(|t| wire::parse_len(t));
                    // Still mark addresses and secrets by looking at any form of this direction.
                    fields::mark_by_any_form(def, dir, &mut cmd);
                }
            }
        } else {
            cmd.trid = cmd.args.first().and_then(|t| wire::parse_len(t));
        }
        if let Some(n) = oversize {
            cmd.payload = Some(Payload {
                length: n,
                kind: "skipped".into(),
                guess: false,
                decoded: None,
                text: None,
                base64: None,
                problem: Some("declared length exceeds the payload limit; not read".into()),
            });
        } else if let Some((a, b, guess, want)) = payload_range {
            let body = &raw[a..b];
            let mut p = payload::decode(kind, &cmd.cmd, body, &self.tables, self.version);
            p.guess = guess;
            if let Some(w) = want {
                p.length = w as u64;
                p.problem = Some(format!(
                    "truncated: the stream ended after {} of {} payload bytes",
                    body.len(),
                    w
                ));
            }
            cmd.payload = Some(p);
        }
        cmd
    }

    /// Version and service tracking from what the command says.
    fn update_state(&mut self, dir: Dir, cmd: &Command) {
        let a = |i: usize| cmd.args.get(i).map(String::as_str);
        match (dir, cmd.cmd.as_str()) {
            (Dir::C2s, "VER") => {
                self.offered = cmd.args.iter().filter_map(|t| dialect(t)).collect();
                if self.service == Service::Unknown {
                    self.service = Service::Ns;
                }
                if self.version.is_none() {
                    if let (Some(lo), Some(hi)) =
                        (self.offered.iter().min(), self.offered.iter().max())
                    {
                        self.range = VersionRange { lo: *lo, hi: *hi };
                    }
                }
            }
            (Dir::S2c, "VER") => {
                if let Some(v) = cmd.args.iter().filter_map(|t| dialect(t)).max() {
                    self.version = Some(v);
                    self.range = VersionRange { lo: v, hi: v };
                }
                if self.service == Service::Unknown {
                    self.service = Service::Ns;
                }
            }
            (Dir::C2s, "INF") if self.version.is_none() => self.narrow(2, 7),
            (Dir::C2s, "CVR") if self.version.is_none() && cmd.args.len() >= 9 => {
                self.narrow(8, 21)
            }
            (Dir::C2s, "USR") => {
                let scheme = a(1).unwrap_or("");
                match scheme {
                    "MD5" | "CTP" => self.narrow(2, 7),
                    "TWN" => self.narrow(8, 14),
                    "SSO" => self.narrow(15, 21),
                    "SHA" => self.narrow(18, 21),
                    _ if cmd.args.len() == 3 && self.service == Service::Unknown => {
                        self.service = Service::Sb;
                    }
                    _ => {}
                }
            }
            (Dir::C2s, "ANS") | (Dir::C2s, "CAL") if self.service == Service::Unknown => {
                self.service = Service::Sb;
            }
            (Dir::S2c, "USR") if a(1) == Some("OK") => self.logged_in = true,
            // A referral answering the login is what a dispatch server does.
            (Dir::S2c, "XFR")
                if a(1) == Some("NS")
                    && a(2) != Some("0")
                    && !self.logged_in
                    && !self.service_hinted =>
            {
                self.service = Service::Ds;
            }
            // A client sends MSG only on a switchboard (captures that start mid-session).
            (Dir::S2c, "IRO" | "JOI" | "BYE" | "ACK" | "NAK") | (Dir::C2s, "MSG")
                if self.service == Service::Unknown =>
            {
                self.service = Service::Sb;
            }
            // Keep-alives and presence exist only on the notification server.
            (Dir::C2s, "PNG") | (Dir::S2c, "QNG" | "NLN" | "ILN" | "FLN" | "UBX")
                if self.service == Service::Unknown =>
            {
                self.service = Service::Ns;
            }
            _ => {}
        }
    }

    fn narrow(&mut self, lo: u8, hi: u8) {
        let r = VersionRange {
            lo: self.range.lo.max(lo),
            hi: self.range.hi.min(hi),
        };
        if r.lo <= r.hi {
            self.range = r;
        }
    }
}

/// `MSNP11` -> 11.
fn dialect(t: &str) -> Option<u8> {
    t.strip_prefix("MSNP")?.parse().ok()
}

/// Decodes a whole byte stream of one connection at once (both directions interleaved in
/// the order given). Convenient for tests and small tools.
pub fn decode_all(tables: Arc<Tables>, chunks: &[(Dir, &[u8])]) -> Vec<Event> {
    let mut s = Session::new(tables, 1, SessionHint::default());
    let mut out = Vec::new();
    for (d, b) in chunks {
        s.feed(*d, b, Ts(0), &mut out);
    }
    s.finish(Ts(0), &mut out);
    out
}

#[allow(dead_code)]
fn _assert_send() {
    fn f<T: Send>() {}
    f::<Session>();
    let _ = Value::Null;
}

#[cfg(test)]
mod tests {
    use super::*;

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
        Arc::new(t)
    }

    fn run(chunks: &[(Dir, &[u8])]) -> Vec<Event> {
        decode_all(tables(), chunks)
    }

    fn cmds(evs: &[Event]) -> Vec<&Command> {
        evs.iter().filter_map(Event::command).collect()
    }

    fn kinds(evs: &[Event]) -> Vec<&'static str> {
        evs.iter().map(Event::type_name).collect()
    }

    #[test]
    fn pending_says_how_much_of_a_payload_is_in() {
        let mut sess = Session::new(tables(), 1, SessionHint::default());
        let mut out = Vec::new();
        sess.feed(Dir::C2s, b"UUX 7 10\r\n<Dat", Ts(0), &mut out);
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
        sess.feed(Dir::S2c, b"PN", Ts(0), &mut out);
        assert_eq!(sess.pending(Dir::S2c).buffered, 2);
        assert_eq!(sess.pending(Dir::S2c).awaiting, None);
        // Once complete, nothing is pending.
        sess.feed(Dir::C2s, b"a></Da", Ts(0), &mut out);
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
        assert_eq!(c[0].payload.as_ref().unwrap().length, body.len() as u64);
        assert_eq!(c[0].payload_bytes(), body);
        assert_eq!(
            c[0].payload.as_ref().unwrap().decoded.as_ref().unwrap()["body"],
            "hi"
        );
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
        assert_eq!(c[0].fields["friendly"], "Alice");
        assert_eq!(c[0].fields["caps"]["value"], 268435500);
        // 268435500 = 0x1000002C: client nibble 1 = 6.0.
        assert_eq!(c[0].fields["caps"]["client"], "6.0");
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
        assert_eq!(
            evs[0].command().unwrap().fields["dialects"],
            serde_json::json!(["MSNP11", "MSNP10", "CVR0"])
        );
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
        assert_eq!(c[3].payload.as_ref().unwrap().length, 5);
        assert_eq!(
            c[3].payload.as_ref().unwrap().decoded.as_ref().unwrap()["name"],
            "ml"
        );
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
        let EventKind::Desync {
            offset, skipped, ..
        } = &evs[1].kind
        else {
            panic!()
        };
        assert_eq!(*offset, 5);
        // "\x00\x01garbage here\r\n" is 16 bytes, "more junk\r\n" 11.
        assert_eq!(*skipped, 27);
    }

    #[test]
    fn hostile_length_costs_nothing() {
        let mut s = b"MSG 1 U 4294967295\r\n".to_vec();
        s.extend_from_slice(&[b'x'; 1000]);
        s.extend_from_slice(b"\r\nPNG\r\n");
        let t = tables();
        let mut sess = Session::new(t, 1, SessionHint::default());
        let mut out = Vec::new();
        sess.feed(Dir::C2s, &s, Ts(0), &mut out);
        assert!(sess.buffered() < 64, "buffered {}", sess.buffered());
        sess.finish(Ts(0), &mut out);
        assert_eq!(kinds(&out), ["command", "desync", "command"]);
        let p = out[0].command().unwrap().payload.as_ref().unwrap();
        assert_eq!(p.kind, "skipped");
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
            sess.feed(Dir::S2c, &[b'A'; 1000], Ts(0), &mut out);
            assert!(sess.buffered() <= 1000);
        }
        sess.feed(Dir::S2c, b"\r\nPNG\r\n", Ts(0), &mut out);
        sess.finish(Ts(0), &mut out);
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
    fn dispatch_and_switchboard_detection() {
        let evs = run(&[
            (Dir::C2s, b"VER 1 MSNP8 CVR0\r\nUSR 2 TWN I a@b.c\r\n"),
            (
                Dir::S2c,
                b"VER 1 MSNP8\r\nXFR 2 NS 10.0.0.5:1863 0 10.0.0.1:1863\r\n",
            ),
        ]);
        assert_eq!(evs.last().unwrap().service, Service::Ds);
        let r = evs.last().unwrap().command().unwrap().referral().unwrap();
        assert_eq!(r.target, Service::Ns);
        assert_eq!(r.address, "10.0.0.5:1863");
        let evs = run(&[(Dir::C2s, b"USR 1 a@b.c 123.456\r\n")]);
        assert_eq!(evs[0].service, Service::Sb);
    }

    #[test]
    fn bare_lf_lines_are_accepted() {
        let evs = run(&[(Dir::C2s, b"PNG\nPNG\r\n")]);
        assert_eq!(cmds(&evs).len(), 2);
        assert_eq!(cmds(&evs)[0].raw, b"PNG\n");
    }
}
