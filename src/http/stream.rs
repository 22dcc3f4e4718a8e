//! HTTP/1.1 message reassembly over the two byte streams of one TCP connection: heads
//! (httparse), bodies by Content-Length, chunked, close-delimited, interim 1xx responses,
//! request/response pairing in order (pipelining), gzip/deflate decoding. Sans-IO: fed
//! `(dir, bytes, ts)` in arrival order, it returns typed items; partial input is never an
//! error and every buffer is bounded. It knows nothing about MSN.

use std::collections::VecDeque;
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::{header, Bytes, Header};
use crate::event::{Dir, Ts};
use crate::secret::Redact;

/// Bounds on what one connection may make this decoder hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest head (start line and headers, also chunked trailers).
    pub max_head: usize,
    /// Most header fields in one head.
    pub max_headers: usize,
    /// Most body bytes kept per message; the rest is counted and the body marked truncated.
    pub max_body: usize,
    /// Most bytes a Content-Encoding may decode to (a decompression bomb stops here).
    pub max_decoded: usize,
    /// Most requests waiting for their responses (pipelining).
    pub max_pending: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 64 * 1024,
            max_headers: 128,
            max_body: 4 * 1024 * 1024,
            max_decoded: 4 * 1024 * 1024,
            max_pending: 64,
        }
    }
}

/// The longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;

/// Request line and headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestHead {
    pub method: String,
    /// As sent: origin form (`/gateway/gateway.dll?...`) or absolute form (`http://host/...`).
    pub target: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub headers: Vec<Header>,
}

/// Status line and headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHead {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<Header>,
}

/// How a body's end was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// No body (requests without length, HEAD, 1xx, 204, 304).
    None,
    ContentLength,
    Chunked,
    /// The body runs to the end of the stream (responses without a length).
    Close,
}

/// A message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// The content: decoded when a Content-Encoding was applied and decoding worked, else
    /// as transferred (after de-chunking). At most [`Limits::max_body`] or
    /// [`Limits::max_decoded`] bytes.
    pub data: Bytes,
    pub framing: Framing,
    /// Bytes the body had on the wire after de-chunking (also those not kept).
    pub wire_length: u64,
    /// The Content-Length, when that framed the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_length: Option<u64>,
    /// The Content-Encoding named by the message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `data` is the decoded form of the transferred bytes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub decoded: bool,
    /// `data` holds only the first bytes of the body (a limit was reached).
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
    /// False when the stream ended, or bytes were lost, before the framing's end.
    pub complete: bool,
    /// Bytes of this body that the capture never had (the holes are absent from `data`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost: u64,
    /// Trailer fields of a chunked body.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trailers: Vec<Header>,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Body {
    fn empty(framing: Framing) -> Body {
        Body {
            data: Bytes::default(),
            framing,
            wire_length: 0,
            declared_length: None,
            content_encoding: None,
            decoded: false,
            truncated: false,
            complete: true,
            lost: 0,
            trailers: Vec::new(),
        }
    }
}

impl Redact for Body {
    /// Replaces secrets inside the body text (see [`super::redact_text`]) and in trailers.
    fn redact(&mut self) -> bool {
        let n = super::redact_text(&mut self.data.0);
        self.trailers.redact() | (n > 0)
    }
}

/// A complete (or, at the end of the stream, cut-short) request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Position among this connection's requests, from 0.
    pub seq: u64,
    /// Stream offset of the request line in the client's direction.
    pub offset: u64,
    /// When its first byte arrived.
    pub ts: Ts,
    /// When its last byte arrived.
    pub ts_end: Ts,
    pub head: RequestHead,
    pub body: Body,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.head.headers, name)
    }
}

impl Redact for Request {
    fn redact(&mut self) -> bool {
        self.head.headers.redact() | self.body.redact()
    }
}

/// A response, paired with the request it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The [`Request::seq`] answered; None when no request was waiting.
    pub request_seq: Option<u64>,
    /// Method and target of that request, so a response can be read alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_target: Option<String>,
    /// A 1xx interim response (`100 Continue`): the final one follows.
    #[serde(default, skip_serializing_if = "is_false")]
    pub interim: bool,
    pub offset: u64,
    pub ts: Ts,
    pub ts_end: Ts,
    pub head: ResponseHead,
    pub body: Body,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.head.headers, name)
    }
}

impl Redact for Response {
    fn redact(&mut self) -> bool {
        self.head.headers.redact() | self.body.redact()
    }
}

/// What went wrong; decoding goes on after each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A start line or header that does not parse.
    MalformedHead,
    /// A head (or trailer section) longer than [`Limits::max_head`].
    HeadTooLong,
    /// An unusable Content-Length or Transfer-Encoding.
    BadLength,
    /// A chunk-size line that does not parse.
    BadChunk,
    /// The stream ended inside a message.
    Incomplete,
    /// Bytes the capture never had.
    Gap,
    /// Bytes skipped while looking for the next message start.
    Skipped,
    /// A response with no request waiting for it.
    UnpairedResponse,
    /// More requests waiting than [`Limits::max_pending`]: the oldest was dropped.
    TooManyPending,
    /// A Content-Encoding that failed to decode or hit [`Limits::max_decoded`].
    Decode,
}

/// A problem in one direction, at a stream offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub dir: Dir,
    pub offset: u64,
    pub ts: Ts,
    pub kind: ProblemKind,
    pub detail: String,
}

/// What the decoder hands on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HttpItem {
    Request(Request),
    Response(Response),
    Problem(Problem),
    /// After a 2xx to CONNECT or a 101: the rest of the connection is not HTTP.
    Tunnel {
        ts: Ts,
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
}

impl Redact for HttpItem {
    /// Replaces every secret (credential headers, secrets inside bodies) by `<redacted>`.
    fn redact(&mut self) -> bool {
        match self {
            HttpItem::Request(r) => r.redact(),
            HttpItem::Response(r) => r.redact(),
            HttpItem::Problem(_) | HttpItem::Tunnel { .. } => false,
        }
    }
}

#[derive(Debug, Clone)]
enum Head {
    Request(RequestHead),
    Response(ResponseHead),
}

impl Head {
    fn headers(&self) -> &[Header] {
        match self {
            Head::Request(h) => &h.headers,
            Head::Response(h) => &h.headers,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length(u64),
    Chunked(Chunk),
    Close,
    /// Looking for a message start after unparseable bytes.
    Lost,
    /// Client bytes after a CONNECT or Upgrade request, held until the response says
    /// whether they are HTTP.
    Hold,
    Tunnel,
}

#[derive(Debug)]
struct Partial {
    head: Head,
    offset: u64,
    ts: Ts,
    seq: u64,
    pairing: Option<Pending>,
    interim: bool,
    body: Body,
    data: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    method: String,
    target: String,
}

#[derive(Debug, Default)]
struct Half {
    /// Unconsumed bytes are `buf[pos..]`; the consumed prefix is dropped after each run
    /// (dropping it per message would be quadratic in the number of messages per feed).
    buf: Vec<u8>,
    pos: usize,
    /// Stream offset of `buf[pos]`.
    offset: u64,
    /// When `buf[0]` arrived.
    buf_ts: Option<Ts>,
    /// `buf` is known to start right after a line end (a message start candidate).
    at_line_start: bool,
    /// Where the search for the head's end resumes.
    scan: usize,
    msg: Option<Partial>,
    /// Start offset and length of the run being skipped in [`State::Lost`].
    skipping: Option<(u64, u64)>,
    finished: bool,
}

/// The HTTP decoder of one TCP connection. `C2s` is the client (requests).
#[derive(Debug)]
pub struct HttpStream {
    limits: Limits,
    halves: [Half; 2],
    states: [State; 2],
    pending: VecDeque<Pending>,
    next_seq: u64,
    /// The request that put the client's side in [`State::Hold`].
    hold_for: Option<u64>,
    /// A response released the client's held bytes: they are parsed after it.
    rerun_client: bool,
}

impl Default for HttpStream {
    fn default() -> Self {
        HttpStream::new(Limits::default())
    }
}

impl HttpStream {
    pub fn new(limits: Limits) -> HttpStream {
        let mut halves: [Half; 2] = Default::default();
        for h in &mut halves {
            h.at_line_start = true;
        }
        HttpStream {
            limits,
            halves,
            states: [State::Head; 2],
            pending: VecDeque::new(),
            next_seq: 0,
            hold_for: None,
            rerun_client: false,
        }
    }

    /// Requests sent and not answered yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes held for messages not complete yet (both directions).
    pub fn buffered(&self) -> usize {
        self.halves
            .iter()
            .map(|h| h.buf.len() - h.pos + h.msg.as_ref().map_or(0, |m| m.data.len()))
            .sum()
    }

    /// The next bytes of one direction.
    pub fn feed(&mut self, dir: Dir, data: &[u8], ts: Ts, out: &mut Vec<HttpItem>) {
        let d = dir.index();
        if self.halves[d].finished || data.is_empty() {
            return;
        }
        if self.states[d] == State::Tunnel {
            self.halves[d].offset += data.len() as u64;
            return;
        }
        let h = &mut self.halves[d];
        if h.pos == h.buf.len() {
            h.buf_ts = Some(ts);
        }
        h.buf.extend_from_slice(data);
        self.run(dir, ts, out);
    }

    /// `len` bytes of one direction were never captured.
    pub fn gap(&mut self, dir: Dir, len: u64, ts: Ts, out: &mut Vec<HttpItem>) {
        let d = dir.index();
        if self.halves[d].finished || len == 0 {
            return;
        }
        let empty = self.avail(d).is_empty();
        match self.states[d] {
            State::Tunnel => {
                self.halves[d].offset += len;
                return;
            }
            // A hole inside a body of known size keeps the framing; the body is marked.
            State::Length(rem) if empty && len < rem => {
                self.states[d] = State::Length(rem - len);
                self.note_lost(d, len);
                return;
            }
            State::Chunked(Chunk::Data(rem)) if empty && len < rem => {
                self.states[d] = State::Chunked(Chunk::Data(rem - len));
                self.note_lost(d, len);
                return;
            }
            State::Close if empty => {
                self.note_lost(d, len);
                return;
            }
            _ => {}
        }
        let h = &mut self.halves[d];
        let at = h.offset + (h.buf.len() - h.pos) as u64;
        out.push(problem(
            dir,
            at,
            ts,
            ProblemKind::Gap,
            format!("{len} bytes not captured"),
        ));
        if let Some(mut m) = h.msg.take() {
            m.body.complete = false;
            m.body.lost += len;
            self.emit(dir, m, ts, out);
        }
        let h = &mut self.halves[d];
        h.offset = at + len;
        h.buf.clear();
        h.pos = 0;
        h.scan = 0;
        h.at_line_start = false;
        if h.skipping.is_none() {
            h.skipping = Some((h.offset, 0));
        }
        self.states[d] = State::Lost;
    }

    fn note_lost(&mut self, d: usize, len: u64) {
        let h = &mut self.halves[d];
        h.offset += len;
        if let Some(m) = &mut h.msg {
            m.body.lost += len;
            m.body.wire_length += len;
            m.body.complete = false;
        }
    }

    /// One direction ended (FIN): a close-delimited body ends here; anything else
    /// half-received is handed on as incomplete.
    pub fn finish_dir(&mut self, dir: Dir, ts: Ts, out: &mut Vec<HttpItem>) {
        let d = dir.index();
        if self.halves[d].finished {
            return;
        }
        self.run(dir, ts, out);
        let state = self.states[d];
        let h = &mut self.halves[d];
        let left = h.buf.len() - h.pos;
        let at = h.offset + left as u64;
        if let Some(mut m) = h.msg.take() {
            if state != State::Close {
                m.body.complete = false;
                out.push(problem(
                    dir,
                    at,
                    ts,
                    ProblemKind::Incomplete,
                    "stream ended inside a body".into(),
                ));
            }
            self.emit(dir, m, ts, out);
        }
        let h = &mut self.halves[d];
        if let Some((off, n)) = h.skipping.take() {
            let n = n + left as u64;
            if n > 0 {
                out.push(problem(
                    dir,
                    off,
                    ts,
                    ProblemKind::Skipped,
                    format!("{n} bytes skipped"),
                ));
            }
        } else if !matches!(state, State::Tunnel | State::Hold)
            && h.buf[h.pos..].iter().any(|c| !c.is_ascii_whitespace())
        {
            out.push(problem(
                dir,
                h.offset,
                ts,
                ProblemKind::Incomplete,
                format!("stream ended inside a head ({left} bytes)"),
            ));
        }
        h.offset += left as u64;
        h.buf = Vec::new();
        h.pos = 0;
        h.finished = true;
    }

    /// Both directions ended.
    pub fn finish(&mut self, ts: Ts, out: &mut Vec<HttpItem>) {
        self.finish_dir(Dir::C2s, ts, out);
        self.finish_dir(Dir::S2c, ts, out);
    }

    fn avail(&self, d: usize) -> &[u8] {
        let h = &self.halves[d];
        &h.buf[h.pos..]
    }

    fn run(&mut self, dir: Dir, ts: Ts, out: &mut Vec<HttpItem>) {
        let d = dir.index();
        // Every step that returns true consumed bytes or changed state, so this ends.
        while self.step(dir, ts, out) {
            // A refused CONNECT/Upgrade released the client's held bytes: their requests
            // come before the responses that follow in this direction.
            if self.rerun_client && dir == Dir::S2c {
                self.rerun_client = false;
                self.run(Dir::C2s, ts, out);
            }
        }
        let h = &mut self.halves[d];
        if h.pos > 0 {
            h.buf.drain(..h.pos);
            h.pos = 0;
        }
    }

    fn step(&mut self, dir: Dir, ts: Ts, out: &mut Vec<HttpItem>) -> bool {
        let d = dir.index();
        match self.states[d] {
            State::Head => self.step_head(dir, ts, out),
            State::Length(_) | State::Close | State::Chunked(_) => self.step_body(dir, ts, out),
            State::Lost => self.step_lost(dir, ts, out),
            State::Hold => {
                if self.avail(d).len() > self.limits.max_head {
                    // A client that does not wait for the answer: what follows is taken
                    // for tunnel bytes.
                    self.states[d] = State::Tunnel;
                    return true;
                }
                false
            }
            State::Tunnel => {
                let n = self.avail(d).len();
                self.consume(d, n, ts);
                false
            }
        }
    }

    /// Drops the first `n` unconsumed bytes.
    fn consume(&mut self, d: usize, n: usize, ts: Ts) {
        let h = &mut self.halves[d];
        let n = n.min(h.buf.len() - h.pos);
        if n > 0 {
            h.at_line_start = h.buf[h.pos + n - 1] == b'\n';
            h.pos += n;
            h.offset += n as u64;
            h.scan = 0;
            h.buf_ts = if h.pos == h.buf.len() { None } else { Some(ts) };
        }
    }

    fn step_head(&mut self, dir: Dir, ts: Ts, out: &mut Vec<HttpItem>) -> bool {
        let d = dir.index();
        let limits = self.limits;
        // Empty lines between messages are tolerated (RFC 9112 2.2).
        let blank = self
            .avail(d)
            .iter()
            .take_while(|&&c| c == b'\r' || c == b'\n')
            .count();
        if blank > 0 {
            self.consume(d, blank, ts);
            return true;
        }
        let h = &mut self.halves[d];
        let buf = &h.buf[h.pos..];
        if buf.is_empty() {
            return false;
        }
        let at = h.offset;
        let Some(end) = head_end(buf, h.scan) else {
            h.scan = buf.len();
            if buf.len() > limits.max_head {
                out.push(problem(
                    dir,
                    at,
                    ts,
                    ProblemKind::HeadTooLong,
                    format!("no end of head within {} bytes", limits.max_head),
                ));
                self.lose(d);
                return true;
            }
            // A stream that cannot be HTTP is given up at once rather than at the limit.
            if !plausible_start(buf, dir) {
                out.push(problem(
                    dir,
                    at,
                    ts,
                    ProblemKind::MalformedHead,
                    format!(
                        "not the start of an HTTP {}",
                        if dir == Dir::C2s {
                            "request"
                        } else {
                            "response"
                        }
                    ),
                ));
                self.lose(d);
                return true;
            }
            return false;
        };
        if end > limits.max_head {
            out.push(problem(
                dir,
                at,
                ts,
                ProblemKind::HeadTooLong,
                format!("head of {end} bytes"),
            ));
            self.lose(d);
            return true;
        }
        let start_ts = h.buf_ts.unwrap_or(ts);
        let parsed = match dir {
            Dir::C2s => complete(
                parse_request_head(&buf[..end], limits.max_headers),
                "request",
            )
            .map(Head::Request),
            Dir::S2c => complete(
                parse_response_head(&buf[..end], limits.max_headers),
                "response",
            )
            .map(Head::Response),
        };
        let head = match parsed {
            Ok(head) => head,
            Err(e) => {
                out.push(problem(dir, at, ts, ProblemKind::MalformedHead, e));
                self.lose(d);
                return true;
            }
        };
        self.consume(d, end, ts);
        self.start_message(dir, head, at, start_ts, ts, out);
        true
    }

    /// Decides the body of a new head; bodiless messages are handed on at once.
    fn start_message(
        &mut self,
        dir: Dir,
        head: Head,
        offset: u64,
        start_ts: Ts,
        ts: Ts,
        out: &mut Vec<HttpItem>,
    ) {
        let d = dir.index();
        let mut seq = 0;
        let mut pairing = None;
        let mut interim = false;
        let mut hold = false;
        let mut tunnel = None;
        let framing = match &head {
            Head::Request(r) => {
                seq = self.next_seq;
                self.next_seq += 1;
                if self.pending.len() >= self.limits.max_pending {
                    self.pending.pop_front();
                    out.push(problem(
                        dir,
                        offset,
                        ts,
                        ProblemKind::TooManyPending,
                        format!("over {} unanswered requests", self.limits.max_pending),
                    ));
                }
                self.pending.push_back(Pending {
                    seq,
                    method: r.method.clone(),
                    target: r.target.clone(),
                });
                hold = r.method.eq_ignore_ascii_case("CONNECT")
                    || header(&r.headers, "upgrade").is_some();
                request_framing(&r.headers)
            }
            Head::Response(r) => {
                if (100..200).contains(&r.status) && r.status != 101 {
                    interim = true;
                    pairing = self.pending.front().cloned();
                    Ok(State::Head)
                } else {
                    pairing = self.pending.pop_front();
                    if pairing.is_none() {
                        out.push(problem(
                            dir,
                            offset,
                            ts,
                            ProblemKind::UnpairedResponse,
                            format!("{} with no request waiting", r.status),
                        ));
                    }
                    let method = pairing.as_ref().map_or("", |p| p.method.as_str());
                    let connect = method.eq_ignore_ascii_case("CONNECT");
                    let held =
                        pairing.is_some() && pairing.as_ref().map(|p| p.seq) == self.hold_for;
                    if r.status == 101 || (connect && (200..300).contains(&r.status)) {
                        tunnel = Some((r.status, pairing.as_ref().map(|p| p.target.clone())));
                        Ok(State::Head)
                    } else {
                        if held {
                            self.hold_for = None;
                            let c = Dir::C2s.index();
                            if self.states[c] == State::Hold {
                                self.states[c] = State::Head;
                                self.rerun_client = true;
                            }
                        }
                        if method.eq_ignore_ascii_case("HEAD") || r.status == 204 || r.status == 304
                        {
                            Ok(State::Head)
                        } else {
                            response_framing(&r.headers)
                        }
                    }
                }
            }
        };
        let next = match framing {
            Ok(s) => s,
            Err(e) => {
                out.push(problem(dir, offset, ts, ProblemKind::BadLength, e));
                State::Lost
            }
        };
        let body_framing = match next {
            State::Length(_) => Framing::ContentLength,
            State::Chunked(_) => Framing::Chunked,
            State::Close => Framing::Close,
            _ => Framing::None,
        };
        let mut body = Body::empty(body_framing);
        if let State::Length(n) = next {
            body.declared_length = Some(n);
        }
        body.content_encoding = header(head.headers(), "content-encoding")
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty() && s != "identity");
        let m = Partial {
            head,
            offset,
            ts: start_ts,
            seq,
            pairing,
            interim,
            body,
            data: Vec::new(),
        };
        match next {
            State::Head | State::Length(0) => {
                self.emit(dir, m, ts, out);
                self.states[d] = State::Head;
            }
            State::Lost => {
                self.emit(dir, m, ts, out);
                self.lose_at_boundary(d);
            }
            _ => {
                self.halves[d].msg = Some(m);
                self.states[d] = next;
            }
        }
        if hold && dir == Dir::C2s && self.states[d] == State::Head {
            self.states[d] = State::Hold;
            self.hold_for = Some(seq);
        }
        if let Some((status, target)) = tunnel {
            out.push(HttpItem::Tunnel { ts, status, target });
            self.states = [State::Tunnel; 2];
            self.hold_for = None;
        }
    }

    fn step_body(&mut self, dir: Dir, ts: Ts, out: &mut Vec<HttpItem>) -> bool {
        let d = dir.index();
        let limits = self.limits;
        let avail = self.avail(d).len();
        match self.states[d] {
            State::Length(rem) => {
                if avail == 0 {
                    return false;
                }
                let n = rem.min(avail as u64) as usize;
                self.take_body(d, n, ts);
                let rem = rem - n as u64;
                if rem == 0 {
                    self.states[d] = State::Head;
                    self.complete(dir, ts, out);
                } else {
                    self.states[d] = State::Length(rem);
                }
                true
            }
            State::Close => {
                if avail == 0 {
                    return false;
                }
                self.take_body(d, avail, ts);
                true
            }
            State::Chunked(Chunk::Size) => {
                let at = self.halves[d].offset;
                let buf = self.avail(d);
                let Some(nl) = buf.iter().position(|&c| c == b'\n') else {
                    if buf.len() > MAX_CHUNK_LINE {
                        self.bad_chunk(dir, at, ts, "chunk-size line too long".into(), out);
                        return true;
                    }
                    return false;
                };
                match chunk_size(&buf[..=nl]) {
                    Ok(size) => {
                        self.consume(d, nl + 1, ts);
                        self.states[d] = State::Chunked(if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        });
                    }
                    Err(e) => self.bad_chunk(dir, at, ts, e, out),
                }
                true
            }
            State::Chunked(Chunk::Data(rem)) => {
                if avail == 0 {
                    return false;
                }
                let n = rem.min(avail as u64) as usize;
                self.take_body(d, n, ts);
                let rem = rem - n as u64;
                self.states[d] = State::Chunked(if rem == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(rem)
                });
                true
            }
            State::Chunked(Chunk::DataEnd) => {
                let at = self.halves[d].offset;
                let n = match self.avail(d) {
                    [] | [b'\r'] => return false,
                    [b'\r', b'\n', ..] => 2,
                    [b'\n', ..] => 1,
                    _ => {
                        self.bad_chunk(dir, at, ts, "chunk data not followed by CRLF".into(), out);
                        return true;
                    }
                };
                self.consume(d, n, ts);
                self.states[d] = State::Chunked(Chunk::Size);
                true
            }
            State::Chunked(Chunk::Trailers) => {
                let at = self.halves[d].offset;
                let buf = self.avail(d);
                // Without trailers the last chunk is followed by an empty line.
                let (n, trailers) = match buf {
                    [] | [b'\r'] => return false,
                    [b'\r', b'\n', ..] => (2, Vec::new()),
                    [b'\n', ..] => (1, Vec::new()),
                    _ => match head_end(buf, 0) {
                        Some(e) if e <= limits.max_head => {
                            let mut fields = vec![httparse::EMPTY_HEADER; limits.max_headers];
                            match httparse::parse_headers(&buf[..e], &mut fields) {
                                Ok(httparse::Status::Complete((_, hs))) => (e, to_headers(hs)),
                                _ => {
                                    out.push(problem(
                                        dir,
                                        at,
                                        ts,
                                        ProblemKind::MalformedHead,
                                        "bad trailer section".into(),
                                    ));
                                    (e, Vec::new())
                                }
                            }
                        }
                        None if buf.len() <= limits.max_head => return false,
                        _ => {
                            out.push(problem(
                                dir,
                                at,
                                ts,
                                ProblemKind::HeadTooLong,
                                "trailer section too long".into(),
                            ));
                            self.states[d] = State::Head;
                            self.complete(dir, ts, out);
                            self.lose(d);
                            return true;
                        }
                    },
                };
                self.consume(d, n, ts);
                if let Some(m) = &mut self.halves[d].msg {
                    m.body.trailers = trailers;
                }
                self.states[d] = State::Head;
                self.complete(dir, ts, out);
                true
            }
            _ => false,
        }
    }

    fn bad_chunk(&mut self, dir: Dir, at: u64, ts: Ts, e: String, out: &mut Vec<HttpItem>) {
        out.push(problem(dir, at, ts, ProblemKind::BadChunk, e));
        if let Some(mut m) = self.halves[dir.index()].msg.take() {
            m.body.complete = false;
            self.emit(dir, m, ts, out);
        }
        self.lose(dir.index());
    }

    /// Moves `n` unconsumed bytes into the current body (keeping at most `max_body`).
    fn take_body(&mut self, d: usize, n: usize, ts: Ts) {
        let max = self.limits.max_body;
        let h = &mut self.halves[d];
        if let Some(m) = &mut h.msg {
            let keep = max.saturating_sub(m.data.len()).min(n);
            m.data.extend_from_slice(&h.buf[h.pos..h.pos + keep]);
            if keep < n {
                m.body.truncated = true;
            }
            m.body.wire_length += n as u64;
        }
        self.consume(d, n, ts);
    }

    fn complete(&mut self, dir: Dir, ts: Ts, out: &mut Vec<HttpItem>) {
        if let Some(m) = self.halves[dir.index()].msg.take() {
            self.emit(dir, m, ts, out);
        }
    }

    /// Finishes a message (decoding its body) and hands it on.
    fn emit(&mut self, dir: Dir, mut m: Partial, ts: Ts, out: &mut Vec<HttpItem>) {
        let mut data = std::mem::take(&mut m.data);
        if let Some(enc) = m.body.content_encoding.clone() {
            if !m.body.truncated && m.body.lost == 0 && !data.is_empty() {
                match decode(&enc, &data, self.limits.max_decoded) {
                    Decoded::Ok(v) => {
                        data = v;
                        m.body.decoded = true;
                    }
                    Decoded::TooLarge(v) => {
                        data = v;
                        m.body.decoded = true;
                        m.body.truncated = true;
                        out.push(problem(
                            dir,
                            m.offset,
                            ts,
                            ProblemKind::Decode,
                            format!(
                                "{enc} body decodes to more than {} bytes",
                                self.limits.max_decoded
                            ),
                        ));
                    }
                    Decoded::Unsupported => {}
                    Decoded::Failed(e) => out.push(problem(
                        dir,
                        m.offset,
                        ts,
                        ProblemKind::Decode,
                        format!("{enc} body does not decode: {e}"),
                    )),
                }
            }
        }
        m.body.data = Bytes(data);
        out.push(match m.head {
            Head::Request(head) => HttpItem::Request(Request {
                seq: m.seq,
                offset: m.offset,
                ts: m.ts,
                ts_end: ts,
                head,
                body: m.body,
            }),
            Head::Response(head) => HttpItem::Response(Response {
                request_seq: m.pairing.as_ref().map(|p| p.seq),
                request_method: m.pairing.as_ref().map(|p| p.method.clone()),
                request_target: m.pairing.map(|p| p.target),
                interim: m.interim,
                offset: m.offset,
                ts: m.ts,
                ts_end: ts,
                head,
                body: m.body,
            }),
        });
    }

    /// Enters [`State::Lost`] because the bytes at the cursor failed: the next message
    /// start is searched after the first of them.
    fn lose(&mut self, d: usize) {
        self.states[d] = State::Lost;
        let h = &mut self.halves[d];
        if h.skipping.is_none() {
            h.skipping = Some((h.offset, 0));
        }
        if h.pos < h.buf.len() {
            h.pos += 1;
            h.offset += 1;
            h.at_line_start = false;
            h.scan = 0;
            if let Some((_, n)) = &mut h.skipping {
                *n += 1;
            }
        }
    }

    /// Enters [`State::Lost`] right after a message whose body cannot be framed: the
    /// bytes at the cursor may well be a new message.
    fn lose_at_boundary(&mut self, d: usize) {
        self.states[d] = State::Lost;
        let h = &mut self.halves[d];
        if h.skipping.is_none() {
            h.skipping = Some((h.offset, 0));
        }
        h.at_line_start = true;
    }

    fn step_lost(&mut self, dir: Dir, ts: Ts, out: &mut Vec<HttpItem>) -> bool {
        let d = dir.index();
        let h = &mut self.halves[d];
        if h.skipping.is_none() {
            h.skipping = Some((h.offset, 0));
        }
        let buf = &h.buf[h.pos..];
        let mut found = None;
        let mut keep_from = buf.len();
        for i in 0..buf.len() {
            let line_start = if i == 0 {
                h.at_line_start
            } else {
                buf[i - 1] == b'\n'
            };
            if !line_start {
                continue;
            }
            match start_candidate(&buf[i..], dir) {
                Some(true) => {
                    found = Some(i);
                    break;
                }
                None => {
                    keep_from = i;
                    break;
                }
                Some(false) => {}
            }
        }
        let skip = found.unwrap_or(keep_from);
        if skip > 0 {
            h.at_line_start = buf[skip - 1] == b'\n';
            h.pos += skip;
            h.offset += skip as u64;
            h.scan = 0;
            if let Some((_, n)) = &mut h.skipping {
                *n += skip as u64;
            }
        }
        if found.is_none() {
            return false;
        }
        if let Some((off, n)) = h.skipping.take() {
            if n > 0 {
                out.push(problem(
                    dir,
                    off,
                    ts,
                    ProblemKind::Skipped,
                    format!("{n} bytes skipped"),
                ));
            }
        }
        h.buf_ts = Some(ts);
        self.states[d] = State::Head;
        true
    }
}

fn problem(dir: Dir, offset: u64, ts: Ts, kind: ProblemKind, detail: String) -> HttpItem {
    HttpItem::Problem(Problem {
        dir,
        offset,
        ts,
        kind,
        detail,
    })
}

/// Length of the head (through its empty line), searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from.saturating_sub(3);
    while i < buf.len() {
        let nl = i + buf[i..].iter().position(|&c| c == b'\n')?;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

const METHODS: &[&[u8]] = &[
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"TRACE", b"PATCH",
];

/// Could these bytes start a message of this direction? None: not enough bytes to tell.
fn start_candidate(b: &[u8], dir: Dir) -> Option<bool> {
    match dir {
        Dir::S2c => {
            let want = b"HTTP/1.";
            let n = b.len().min(want.len());
            if b[..n] != want[..n] {
                Some(false)
            } else if n < want.len() {
                None
            } else {
                Some(true)
            }
        }
        Dir::C2s => {
            let mut undecided = false;
            for m in METHODS {
                let n = b.len().min(m.len() + 1);
                let full: Vec<u8> = m.iter().copied().chain([b' ']).collect();
                if b[..n] == full[..n] {
                    if n == full.len() {
                        return Some(true);
                    }
                    undecided = true;
                }
            }
            if undecided {
                None
            } else {
                Some(false)
            }
        }
    }
}

/// Early check that a head in progress could still be HTTP (its first line so far).
fn plausible_start(b: &[u8], dir: Dir) -> bool {
    match dir {
        Dir::S2c => start_candidate(b, dir) != Some(false),
        Dir::C2s => {
            // Any token then a space: methods outside the list are allowed when complete.
            let tok = b
                .iter()
                .take_while(|c| c.is_ascii_alphabetic() || **c == b'-')
                .count();
            if tok == b.len() {
                return tok <= 32;
            }
            tok > 0 && tok <= 32 && b[tok] == b' '
        }
    }
}

pub(crate) fn to_headers(hs: &[httparse::Header<'_>]) -> Vec<Header> {
    hs.iter()
        .map(|h| Header::new(h.name, &String::from_utf8_lossy(h.value)))
        .collect()
}

/// A head parsed by httparse (with the lenient options old clients and servers need).
pub(crate) enum Parsed<T> {
    Done(T),
    Partial,
    Bad(httparse::Error),
}

pub(crate) fn parse_request_head(buf: &[u8], max_headers: usize) -> Parsed<RequestHead> {
    let mut fields = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut fields);
    let mut cfg = httparse::ParserConfig::default();
    cfg.allow_multiple_spaces_in_request_line_delimiters(true);
    match cfg.parse_request(&mut req, buf) {
        Ok(httparse::Status::Complete(_)) => Parsed::Done(RequestHead {
            method: req.method.unwrap_or("").to_string(),
            target: req.path.unwrap_or("").to_string(),
            version: format!("HTTP/1.{}", req.version.unwrap_or(1)),
            headers: to_headers(req.headers),
        }),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(e) => Parsed::Bad(e),
    }
}

pub(crate) fn parse_response_head(buf: &[u8], max_headers: usize) -> Parsed<ResponseHead> {
    let mut fields = vec![httparse::EMPTY_HEADER; max_headers];
    let mut res = httparse::Response::new(&mut fields);
    let mut cfg = httparse::ParserConfig::default();
    cfg.allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true);
    match cfg.parse_response(&mut res, buf) {
        Ok(httparse::Status::Complete(_)) => Parsed::Done(ResponseHead {
            version: format!("HTTP/1.{}", res.version.unwrap_or(1)),
            status: res.code.unwrap_or(0),
            reason: res.reason.unwrap_or("").to_string(),
            headers: to_headers(res.headers),
        }),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(e) => Parsed::Bad(e),
    }
}

/// A complete head (its end already found) or why it is not one.
fn complete<T>(p: Parsed<T>, what: &str) -> Result<T, String> {
    match p {
        Parsed::Done(h) => Ok(h),
        Parsed::Partial => Err(format!("{what} head ends early")),
        Parsed::Bad(e) => Err(format!("bad {what} head: {e}")),
    }
}

/// Is `chunked` the last transfer coding?
fn te_chunked(te: &str) -> bool {
    te.rsplit(',')
        .next()
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

fn content_length(headers: &[Header]) -> Result<Option<u64>, String> {
    let mut found: Option<u64> = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        for part in h.value().split(',') {
            let p = part.trim();
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!("bad Content-Length {:?}", h.value()));
            }
            let n: u64 = p
                .parse()
                .map_err(|_| format!("Content-Length {p} out of range"))?;
            if found.is_some_and(|f| f != n) {
                return Err("conflicting Content-Length values".into());
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn request_framing(headers: &[Header]) -> Result<State, String> {
    if let Some(te) = header(headers, "transfer-encoding") {
        if te_chunked(te) {
            return Ok(State::Chunked(Chunk::Size));
        }
        return Err(format!(
            "request Transfer-Encoding {te:?} without chunked last"
        ));
    }
    Ok(match content_length(headers)? {
        Some(n) => State::Length(n),
        None => State::Head,
    })
}

fn response_framing(headers: &[Header]) -> Result<State, String> {
    if let Some(te) = header(headers, "transfer-encoding") {
        return Ok(if te_chunked(te) {
            State::Chunked(Chunk::Size)
        } else {
            State::Close
        });
    }
    Ok(match content_length(headers)? {
        Some(n) => State::Length(n),
        None => State::Close,
    })
}

fn chunk_size(line: &[u8]) -> Result<u64, String> {
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((_, n))) => Ok(n),
        Ok(httparse::Status::Partial) => Err("chunk-size line ends early".into()),
        Err(_) => Err(format!(
            "bad chunk-size line {:?}",
            String::from_utf8_lossy(&line[..line.len().min(40)])
        )),
    }
}

enum Decoded {
    Ok(Vec<u8>),
    TooLarge(Vec<u8>),
    Unsupported,
    Failed(String),
}

/// Decodes a Content-Encoding into at most `max` bytes.
fn decode(enc: &str, data: &[u8], max: usize) -> Decoded {
    fn bounded(mut r: impl Read, max: usize) -> Result<(Vec<u8>, bool), std::io::Error> {
        let mut out = Vec::new();
        (&mut r).take(max as u64 + 1).read_to_end(&mut out)?;
        let over = out.len() > max;
        out.truncate(max);
        Ok((out, over))
    }
    let res = match enc {
        "gzip" | "x-gzip" => bounded(flate2::read::MultiGzDecoder::new(data), max),
        // "deflate" is zlib-wrapped by the spec; some servers send raw deflate.
        "deflate" => bounded(flate2::read::ZlibDecoder::new(data), max)
            .or_else(|_| bounded(flate2::read::DeflateDecoder::new(data), max)),
        _ => return Decoded::Unsupported,
    };
    match res {
        Ok((v, false)) => Decoded::Ok(v),
        Ok((v, true)) => Decoded::TooLarge(v),
        Err(e) => Decoded::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn run(chunks: &[(Dir, &[u8])]) -> Vec<HttpItem> {
        run_with(Limits::default(), chunks)
    }

    fn run_with(limits: Limits, chunks: &[(Dir, &[u8])]) -> Vec<HttpItem> {
        let mut s = HttpStream::new(limits);
        let mut out = Vec::new();
        for (i, (d, b)) in chunks.iter().enumerate() {
            s.feed(*d, b, Ts(i as i64), &mut out);
        }
        s.finish(Ts(1000), &mut out);
        out
    }

    fn requests(items: &[HttpItem]) -> Vec<&Request> {
        items
            .iter()
            .filter_map(|i| match i {
                HttpItem::Request(r) => Some(r),
                _ => None,
            })
            .collect()
    }
    fn responses(items: &[HttpItem]) -> Vec<&Response> {
        items
            .iter()
            .filter_map(|i| match i {
                HttpItem::Response(r) => Some(r),
                _ => None,
            })
            .collect()
    }
    fn problems(items: &[HttpItem]) -> Vec<&Problem> {
        items
            .iter()
            .filter_map(|i| match i {
                HttpItem::Problem(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    const GW_OPEN: &[u8] = b"POST http://gateway.messenger.hotmail.com/gateway/gateway.dll?Action=open&Server=NS&IP=messenger.hotmail.com HTTP/1.1\r\nAccept: */*\r\nContent-Type: application/x-msn-messenger\r\nContent-Length: 23\r\n\r\nVER 1 MSNP8 CVR0\r\nX\r\nYZ";

    #[test]
    fn content_length_request_and_response() {
        let resp = b"HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID=1.2; GW-IP=10.0.0.1\r\nContent-Length: 13\r\n\r\nVER 1 MSNP8\r\n";
        let items = run(&[(Dir::C2s, GW_OPEN), (Dir::S2c, resp)]);
        assert!(problems(&items).is_empty(), "{items:?}");
        let rq = requests(&items);
        assert_eq!(rq.len(), 1);
        assert_eq!(rq[0].head.method, "POST");
        assert!(rq[0].head.target.starts_with("http://gateway."));
        assert_eq!(rq[0].body.data.0, b"VER 1 MSNP8 CVR0\r\nX\r\nYZ");
        assert_eq!(rq[0].body.framing, Framing::ContentLength);
        let rs = responses(&items);
        assert_eq!(rs[0].request_seq, Some(0));
        assert_eq!(rs[0].head.status, 200);
        assert_eq!(
            rs[0].header("x-msn-messenger"),
            Some("SessionID=1.2; GW-IP=10.0.0.1")
        );
        assert_eq!(rs[0].body.data.0, b"VER 1 MSNP8\r\n");
        assert!(rs[0].body.complete);
    }

    #[test]
    fn pipelined_requests_pair_in_order() {
        let reqs = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
        let resps = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nc";
        let items = run(&[(Dir::C2s, reqs), (Dir::S2c, resps)]);
        assert!(problems(&items).is_empty(), "{items:?}");
        let rs = responses(&items);
        let got: Vec<_> = rs
            .iter()
            .map(|r| {
                (
                    r.request_seq,
                    r.request_target.as_deref(),
                    r.head.status,
                    r.body.data.0.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(0), Some("/a"), 200, b"a".to_vec()),
                // HEAD: Content-Length describes the GET body that was not sent.
                (Some(1), Some("/b"), 200, vec![]),
                (Some(2), Some("/c"), 404, b"c".to_vec()),
            ]
        );
    }

    #[test]
    fn chunked_with_trailers_and_extensions() {
        let req = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: 42\r\n\r\n";
        let resp =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let items = run(&[(Dir::C2s, req), (Dir::S2c, resp)]);
        let rq = requests(&items);
        assert_eq!(rq[0].body.data.0, b"hello, world");
        assert_eq!(rq[0].body.framing, Framing::Chunked);
        assert_eq!(rq[0].body.trailers, vec![Header::new("X-Sum", "42")]);
        assert!(rq[0].body.complete);
        assert_eq!(responses(&items)[0].body.data.0, b"abc");
    }

    #[test]
    fn bad_chunk_size_is_a_problem_and_decoding_resumes() {
        let req = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /next HTTP/1.1\r\n\r\n";
        let items = run(&[(Dir::C2s, req)]);
        let p = problems(&items);
        assert_eq!(p[0].kind, ProblemKind::BadChunk);
        let rq = requests(&items);
        assert!(!rq[0].body.complete);
        assert_eq!(rq[1].head.target, "/next");
    }

    #[test]
    fn close_delimited_response() {
        let items = run(&[
            (Dir::C2s, b"GET / HTTP/1.0\r\n\r\n"),
            (
                Dir::S2c,
                b"HTTP/1.0 200 OK\r\nX-MSN-Messenger: SessionID=9\r\n\r\nMSG 1 2",
            ),
            (Dir::S2c, b"\r\nrest"),
        ]);
        assert!(problems(&items).is_empty(), "{items:?}");
        let rs = responses(&items);
        assert_eq!(rs[0].body.framing, Framing::Close);
        assert_eq!(rs[0].body.data.0, b"MSG 1 2\r\nrest");
        assert!(rs[0].body.complete);
        // The response is handed on only when the stream ends.
        let mut s = HttpStream::default();
        let mut out = Vec::new();
        s.feed(Dir::C2s, b"GET / HTTP/1.0\r\n\r\n", Ts(0), &mut out);
        s.feed(Dir::S2c, b"HTTP/1.0 200 OK\r\n\r\nabc", Ts(1), &mut out);
        assert_eq!(responses(&out).len(), 0);
        s.finish_dir(Dir::S2c, Ts(2), &mut out);
        assert_eq!(responses(&out)[0].body.data.0, b"abc");
    }

    #[test]
    fn expect_100_continue() {
        let items = run(&[
            (
                Dir::C2s,
                b"POST /g HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
            ),
            (Dir::S2c, b"HTTP/1.1 100 Continue\r\n\r\n"),
            (Dir::C2s, b"body"),
            (Dir::S2c, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ]);
        assert!(problems(&items).is_empty(), "{items:?}");
        let rs = responses(&items);
        assert_eq!(rs.len(), 2);
        assert!(rs[0].interim && rs[0].head.status == 100 && rs[0].request_seq == Some(0));
        assert!(!rs[1].interim && rs[1].request_seq == Some(0));
        assert_eq!(rs[1].body.data.0, b"ok");
        assert_eq!(requests(&items)[0].body.data.0, b"body");
    }

    #[test]
    fn no_body_for_204_and_304() {
        let items = run(&[
            (Dir::C2s, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
            (
                Dir::S2c,
                b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            ),
        ]);
        assert!(problems(&items).is_empty(), "{items:?}");
        let rs = responses(&items);
        assert_eq!((rs[0].head.status, rs[1].head.status), (204, 304));
        assert!(rs
            .iter()
            .all(|r| r.body.data.0.is_empty() && r.body.framing == Framing::None));
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn resp_with(enc: &str, body: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: {enc}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn gzip_and_deflate_bodies_are_decoded() {
        let text = b"<soap:Envelope>hello</soap:Envelope>".repeat(10);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).unwrap();
        let zlib = z.finish().unwrap();
        let mut r = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        r.write_all(&text).unwrap();
        let raw = r.finish().unwrap();
        for (enc, body) in [("gzip", gzip(&text)), ("deflate", zlib), ("deflate", raw)] {
            let items = run(&[
                (Dir::C2s, b"GET / HTTP/1.1\r\n\r\n"),
                (Dir::S2c, &resp_with(enc, &body)),
            ]);
            assert!(problems(&items).is_empty(), "{enc}: {items:?}");
            let b = &responses(&items)[0].body;
            assert!(b.decoded, "{enc}");
            assert_eq!(b.data.0, text, "{enc}");
            assert_eq!(b.wire_length, body.len() as u64);
        }
        // Not gzip at all: kept as sent, with a problem.
        let items = run(&[
            (Dir::C2s, b"GET / HTTP/1.1\r\n\r\n"),
            (Dir::S2c, &resp_with("gzip", b"plain")),
        ]);
        assert_eq!(problems(&items)[0].kind, ProblemKind::Decode);
        assert_eq!(responses(&items)[0].body.data.0, b"plain");
    }

    #[test]
    fn decompression_bomb_is_bounded() {
        let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        let limits = Limits {
            max_decoded: 1024 * 1024,
            ..Limits::default()
        };
        let items = run_with(
            limits,
            &[
                (Dir::C2s, b"GET / HTTP/1.1\r\n\r\n"),
                (Dir::S2c, &resp_with("gzip", &bomb)),
            ],
        );
        let b = &responses(&items)[0].body;
        assert!(b.truncated && b.decoded);
        assert_eq!(b.data.0.len(), 1024 * 1024);
        assert_eq!(problems(&items)[0].kind, ProblemKind::Decode);
    }

    #[test]
    fn oversize_body_is_truncated_not_an_error() {
        let limits = Limits {
            max_body: 10,
            ..Limits::default()
        };
        let mut req = b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n".to_vec();
        req.extend_from_slice(&[b'a'; 100]);
        req.extend_from_slice(b"GET /after HTTP/1.1\r\n\r\n");
        let items = run_with(limits, &[(Dir::C2s, &req)]);
        assert!(problems(&items).is_empty(), "{items:?}");
        let rq = requests(&items);
        assert_eq!(rq[0].body.data.0.len(), 10);
        assert!(rq[0].body.truncated && rq[0].body.complete);
        assert_eq!(rq[0].body.wire_length, 100);
        assert_eq!(rq[1].head.target, "/after");
    }

    #[test]
    fn head_too_long_then_resync() {
        let limits = Limits {
            max_head: 256,
            ..Limits::default()
        };
        let mut req = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        req.extend_from_slice(&[b'x'; 1000]);
        req.extend_from_slice(b"\r\n\r\nGET /ok HTTP/1.1\r\n\r\n");
        let mut s = HttpStream::new(limits);
        let mut out = Vec::new();
        for c in req.chunks(50) {
            s.feed(Dir::C2s, c, Ts(0), &mut out);
            assert!(s.buffered() <= 256 + 50);
        }
        s.finish(Ts(1), &mut out);
        let p = problems(&out);
        assert_eq!(p[0].kind, ProblemKind::HeadTooLong);
        assert_eq!(p[1].kind, ProblemKind::Skipped);
        let rq = requests(&out);
        assert_eq!(rq.len(), 1);
        assert_eq!(rq[0].head.target, "/ok");
    }

    #[test]
    fn malformed_heads_are_problems_not_panics() {
        for bad in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"VER 1 MSNP8 CVR0\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            let items = run(&[(Dir::C2s, bad), (Dir::S2c, bad)]);
            assert!(
                !problems(&items).is_empty(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let items = run(&[(Dir::S2c, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]);
        assert_eq!(problems(&items)[0].kind, ProblemKind::UnpairedResponse);
        assert_eq!(responses(&items).len(), 1);
    }

    #[test]
    fn gap_inside_a_sized_body_keeps_framing() {
        let mut s = HttpStream::default();
        let mut out = Vec::new();
        s.feed(
            Dir::C2s,
            b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab",
            Ts(0),
            &mut out,
        );
        s.gap(Dir::C2s, 3, Ts(1), &mut out);
        s.feed(Dir::C2s, b"cdefgGET /n HTTP/1.1\r\n\r\n", Ts(2), &mut out);
        s.finish(Ts(3), &mut out);
        let rq = requests(&out);
        assert_eq!(rq[0].body.data.0, b"abcdefg");
        assert_eq!((rq[0].body.lost, rq[0].body.complete), (3, false));
        assert_eq!(rq[1].head.target, "/n");
        // A gap in a head: lost up to the next request line.
        let mut s = HttpStream::default();
        let mut out = Vec::new();
        s.feed(Dir::C2s, b"POST / HT", Ts(0), &mut out);
        s.gap(Dir::C2s, 30, Ts(1), &mut out);
        s.feed(
            Dir::C2s,
            b"tail of something\r\nGET /n HTTP/1.1\r\n\r\n",
            Ts(2),
            &mut out,
        );
        s.finish(Ts(3), &mut out);
        assert_eq!(problems(&out)[0].kind, ProblemKind::Gap);
        assert_eq!(requests(&out)[0].head.target, "/n");
    }

    #[test]
    fn stream_ending_inside_messages() {
        let items = run(&[(
            Dir::C2s,
            b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        )]);
        assert_eq!(problems(&items)[0].kind, ProblemKind::Incomplete);
        let rq = requests(&items);
        assert_eq!(rq[0].body.data.0, b"abc");
        assert!(!rq[0].body.complete);
        let items = run(&[(Dir::C2s, b"POST / HTTP/1.1\r\nHost")]);
        assert_eq!(problems(&items)[0].kind, ProblemKind::Incomplete);
    }

    #[test]
    fn connect_becomes_a_tunnel() {
        let items = run(&[
            (
                Dir::C2s,
                b"CONNECT login.live.com:443 HTTP/1.1\r\nHost: login.live.com:443\r\n\r\n",
            ),
            (Dir::S2c, b"HTTP/1.1 200 Connection established\r\n\r\n"),
            (Dir::C2s, b"\x16\x03\x01\x00\x05hello"),
            (Dir::S2c, b"\x16\x03\x01\x00\x05world"),
        ]);
        assert!(problems(&items).is_empty(), "{items:?}");
        assert!(
            matches!(&items[2], HttpItem::Tunnel { status: 200, target: Some(t), .. } if t == "login.live.com:443")
        );
        // Refused: the client's next request is parsed.
        let items = run(&[
            (Dir::C2s, b"CONNECT a:443 HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n"),
            (Dir::S2c, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ]);
        assert!(problems(&items).is_empty(), "{items:?}");
        assert_eq!(requests(&items).len(), 2);
        assert_eq!(responses(&items)[1].request_target.as_deref(), Some("/x"));
    }

    #[test]
    fn pending_requests_are_bounded() {
        let limits = Limits {
            max_pending: 4,
            ..Limits::default()
        };
        let reqs = b"GET / HTTP/1.1\r\n\r\n".repeat(10);
        let mut s = HttpStream::new(limits);
        let mut out = Vec::new();
        s.feed(Dir::C2s, &reqs, Ts(0), &mut out);
        assert_eq!(s.pending(), 4);
        assert_eq!(
            problems(&out)
                .iter()
                .filter(|p| p.kind == ProblemKind::TooManyPending)
                .count(),
            6
        );
    }

    #[test]
    fn redaction_of_messages() {
        let req = b"GET /login HTTP/1.1\r\nAuthorization: Passport1.4 OrgVerb=GET,sign-in=a,pwd=password1,ct=1\r\n\r\n";
        let resp = b"HTTP/1.1 200 OK\r\nAuthentication-Info: Passport1.4 da-status=success,from-PP='t=TICKET&p=PROF'\r\nContent-Length: 47\r\n\r\n<wsse:Password>password1</wsse:Password>      ";
        let mut items = run(&[(Dir::C2s, req), (Dir::S2c, resp)]);
        let before = serde_json::to_string(&items).unwrap();
        assert!(before.contains("password1") && before.contains("TICKET"));
        for i in &mut items {
            i.redact();
        }
        let after = serde_json::to_string(&items).unwrap();
        assert!(
            !after.contains("password1") && !after.contains("TICKET") && !after.contains("PROF")
        );
        let back: Vec<HttpItem> = serde_json::from_str(&after).unwrap();
        assert_eq!(back, items);
    }

    /// A conversation with every framing, fed whole and in arbitrary pieces.
    fn corpus() -> Vec<(Dir, Vec<u8>)> {
        vec![
            (Dir::C2s, GW_OPEN.to_vec()),
            (
                Dir::S2c,
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nVER 1".to_vec(),
            ),
            (
                Dir::C2s,
                b"POST /p HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec(),
            ),
            (Dir::S2c, b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
            (
                Dir::C2s,
                b"4\r\nabcd\r\n0\r\nT: 1\r\n\r\nHEAD /h HTTP/1.1\r\n\r\n".to_vec(),
            ),
            (Dir::S2c, resp_with("gzip", &gzip(b"zipped body"))),
            (
                Dir::S2c,
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n".to_vec(),
            ),
            (Dir::C2s, b"GET /last HTTP/1.0\r\n\r\n".to_vec()),
            (
                Dir::S2c,
                b"HTTP/1.0 200 OK\r\n\r\nclose-delimited tail".to_vec(),
            ),
        ]
    }

    fn normalize(items: Vec<HttpItem>) -> Vec<HttpItem> {
        // Timestamps depend on the split; everything else must not.
        items
            .into_iter()
            .map(|mut i| {
                match &mut i {
                    HttpItem::Request(r) => (r.ts, r.ts_end) = (Ts(0), Ts(0)),
                    HttpItem::Response(r) => (r.ts, r.ts_end) = (Ts(0), Ts(0)),
                    HttpItem::Problem(p) => p.ts = Ts(0),
                    HttpItem::Tunnel { ts, .. } => *ts = Ts(0),
                }
                i
            })
            .collect()
    }

    #[test]
    fn corpus_decodes_cleanly() {
        let c = corpus();
        let chunks: Vec<(Dir, &[u8])> = c.iter().map(|(d, b)| (*d, b.as_slice())).collect();
        let items = run(&chunks);
        assert!(problems(&items).is_empty(), "{items:?}");
        assert_eq!(requests(&items).len(), 4);
        let rs = responses(&items);
        assert_eq!(rs.len(), 5);
        assert_eq!(rs[2].body.data.0, b"zipped body");
        assert!(rs[3].body.data.0.is_empty());
        assert_eq!(rs[4].body.data.0, b"close-delimited tail");
    }

    proptest::proptest! {
        #[test]
        fn any_split_gives_the_same_messages(cuts in proptest::collection::vec(0usize..400, 0..40)) {
            let c = corpus();
            let whole: Vec<(Dir, &[u8])> = c.iter().map(|(d, b)| (*d, b.as_slice())).collect();
            let expect = normalize(run(&whole));
            let mut pieces: Vec<(Dir, &[u8])> = Vec::new();
            let mut k = 0;
            for (d, b) in &c {
                let mut rest = b.as_slice();
                while !rest.is_empty() {
                    let n = (cuts.get(k).copied().unwrap_or(400) % (rest.len() + 1)).max(1);
                    k += 1;
                    pieces.push((*d, &rest[..n]));
                    rest = &rest[n..];
                }
            }
            proptest::prop_assert_eq!(normalize(run(&pieces)), expect);
        }

        #[test]
        fn arbitrary_bytes_never_panic(a in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
                                       b in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
                                       split in 0usize..600) {
            let mut s = HttpStream::new(Limits { max_head: 128, max_body: 64, ..Limits::default() });
            let mut out = Vec::new();
            let (a1, a2) = a.split_at(split.min(a.len()));
            s.feed(Dir::C2s, a1, Ts(0), &mut out);
            s.feed(Dir::S2c, &b, Ts(1), &mut out);
            s.gap(Dir::S2c, 7, Ts(2), &mut out);
            s.feed(Dir::C2s, a2, Ts(3), &mut out);
            proptest::prop_assert!(s.buffered() <= 2 * (128 + 64 + 1024));
            s.finish(Ts(4), &mut out);
        }
    }
}
