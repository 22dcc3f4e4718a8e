//! The lean path of issue 10, measured beside `msntap read --json` in the same run: how fast
//! this machine goes when nothing but the capture layer, the framer and a JSON line written
//! straight from each frame's bytes is done. It is a ceiling, not a product: it writes a
//! subset of the event schema (no typed field values, no payload structure, no connection
//! events, no redaction, no login annotation, no summary), so the real `read --json` can only
//! be slower. Benchmark support only; never part of the library, never used for output.
//!
//! Three stages, each over the whole capture:
//! - `Track`: `capture::track` (records, link/IP/TCP, reassembly, flow table), every
//!   delivery dropped;
//! - `Frame`: plus msntap's framer (`wire::Framer` with `FrameRules` from the tables) and
//!   the dialect, per connection and direction;
//! - `Json`: plus one JSON line per frame into a buffer flushed to /dev/null every 256 KiB:
//!   `schema`, `ts` (text cached per second), `conn`, `dir`, `service`, `version`, `type`,
//!   `cmd`, `trid`, `args`, `fields` (the form's parameter names, each token as a string),
//!   `known`, `line`, `offset`, and the payload as one string (text) or base64 (binary).
//!   Strings go through msntap's own JSON backend (`json::to_vec_into`), base64 through its
//!   `json::Base64`, so the string cost is the product's.
//!
//! Nothing is redacted and nothing at the end of a stream is framed with `eof` (a frame cut off
//! by the end of its stream is not counted; the benchmark capture has none, and benches/read.rs
//! says so when the lean frame count and the binary's command count differ).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use msntap::capture::{track, ReadOptions, StreamEvent};
use msntap::protocol::decode::{untag, FrameRules, NO_COMMAND};
use msntap::protocol::Dialect;
use msntap::wire::{Args, Framer, Item, Limits};
use msntap::{Dir, Service, SessionHint, Tables, Ts};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage {
    Track,
    Frame,
    Json,
}

#[allow(dead_code)] // benches/read.rs
impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Track, Stage::Frame, Stage::Json];
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Track => "capture layer alone (deliveries dropped)",
            Stage::Frame => "capture layer + framer + dialect",
            Stage::Json => "capture layer + framer + JSON from the frame's bytes",
        }
    }
}

/// What one run did: frames (or delivered bytes for `Track`), JSON bytes written, seconds.
pub struct Run {
    pub count: u64,
    pub json_bytes: u64,
    pub secs: f64,
}

struct DirState {
    buf: Vec<u8>,
    framer: Framer,
}

struct Conn {
    dialect: Dialect,
    dirs: [DirState; 2],
}

/// The text of a timestamp up to its seconds, made again only when the second changes.
struct Clock {
    secs: i64,
    text: [u8; 40],
    len: usize,
}

impl Clock {
    fn push(&mut self, out: &mut Vec<u8>, ts: Ts) {
        if ts.secs() != self.secs {
            let mut b = [0u8; msntap::event::ts::MAX_LEN];
            let n = ts.write_to(&mut b).min(19);
            self.text[..n].copy_from_slice(&b[..n]);
            self.len = n;
            self.secs = ts.secs();
        }
        out.push(b'"');
        out.extend_from_slice(&self.text[..self.len]);
        let mut frac = *b".000000Z\"";
        let mut u = ts.micros();
        for d in frac[1..7].iter_mut().rev() {
            *d = b'0' + (u % 10) as u8;
            u /= 10;
        }
        out.extend_from_slice(&frac);
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    match simdutf8::basic::from_utf8(s) {
        Ok(t) => {
            let _ = msntap::json::to_vec_into(out, t);
        }
        Err(_) => {
            let _ = msntap::json::to_vec_into(out, &*String::from_utf8_lossy(s));
        }
    }
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// One JSON line for one frame.
#[allow(clippy::too_many_arguments)]
fn render(
    out: &mut Vec<u8>,
    clock: &mut Clock,
    tables: &Tables,
    dialect: &Dialect,
    conn: u64,
    dir: Dir,
    ts: Ts,
    fr: &msntap::wire::Frame,
    b: &[u8],
) {
    let line = fr.line(b);
    let args = Args::of_line(line, &fr.toks);
    out.extend_from_slice(b"{\"schema\":2,\"ts\":");
    clock.push(out, ts);
    out.extend_from_slice(b",\"conn\":");
    number(out, conn);
    out.extend_from_slice(match dir {
        Dir::C2s => b",\"dir\":\"c2s\",\"service\":\"",
        Dir::S2c => b",\"dir\":\"s2c\",\"service\":\"",
    });
    out.extend_from_slice(match dialect.service {
        Service::Ds => b"DS",
        Service::Ns => b"NS",
        Service::Sb => b"SB",
        Service::Unknown => b"unknown" as &[u8],
    });
    out.extend_from_slice(b"\",\"version\":");
    match dialect.version {
        Some(v) => {
            out.extend_from_slice(b"\"MSNP");
            number(out, u64::from(v));
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"type\":\"command\",\"cmd\":");
    string(out, fr.name(b));
    if let Some(t) = args
        .get(0)
        .filter(|t| !t.is_empty() && t.len() < 10 && t.iter().all(u8::is_ascii_digit))
    {
        out.extend_from_slice(b",\"trid\":");
        out.extend_from_slice(t);
    }
    out.extend_from_slice(b",\"args\":[");
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, a);
    }
    out.push(b']');
    let form = untag(fr.tag)
        .and_then(|(ci, fi)| tables.command_at(ci).zip(fi))
        .and_then(|(def, fi)| def.forms.get(fi));
    if let Some(fd) = form {
        out.extend_from_slice(b",\"fields\":{");
        for (i, a) in args.iter().enumerate() {
            let Some(p) = fd.param(i) else { break };
            if i > 0 {
                out.push(b',');
            }
            string(out, p.name.as_bytes());
            out.push(b':');
            string(out, a);
        }
        out.push(b'}');
    }
    out.extend_from_slice(if fr.tag != NO_COMMAND {
        b",\"known\":true,\"line\":"
    } else {
        b",\"known\":false,\"line\":"
    });
    string(out, line);
    out.extend_from_slice(b",\"offset\":");
    number(out, fr.offset);
    if fr.payload.is_some() {
        let p = fr.payload(b);
        if simdutf8::basic::from_utf8(p).is_ok() {
            out.extend_from_slice(b",\"payload\":{\"kind\":\"text\",\"text\":");
            string(out, p);
        } else {
            out.extend_from_slice(b",\"payload\":{\"kind\":\"binary\",\"base64\":");
            let _ = msntap::json::to_vec_into(out, &msntap::json::Base64(p));
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
}

/// The lean path's state: per connection and direction a framer and its unframed bytes, the
/// dialect per connection, the JSON buffer.
pub struct Lean {
    tables: Arc<Tables>,
    stage: Stage,
    limits: Limits,
    conns: HashMap<u64, Conn>,
    clock: Clock,
    out: Vec<u8>,
    /// Frames (delivered bytes for `Track`).
    pub count: u64,
    pub json_bytes: u64,
}

impl Lean {
    pub fn new(tables: &Arc<Tables>, stage: Stage) -> Lean {
        Lean {
            tables: tables.clone(),
            stage,
            limits: Limits::default(),
            conns: HashMap::new(),
            clock: Clock {
                secs: i64::MIN,
                text: [0; 40],
                len: 0,
            },
            out: Vec::with_capacity(512 << 10),
            count: 0,
            json_bytes: 0,
        }
    }

    pub fn open(&mut self, flow: u64) {
        if self.stage == Stage::Track {
            return;
        }
        let dir = || DirState {
            buf: Vec::new(),
            framer: Framer::new(self.limits),
        };
        let conn = Conn {
            dialect: Dialect::new(SessionHint::default()),
            dirs: [dir(), dir()],
        };
        self.conns.insert(flow, conn);
    }

    pub fn close(&mut self, flow: u64) {
        self.conns.remove(&flow);
    }

    pub fn gap(&mut self, flow: u64, dir: Dir, len: u64) {
        if let Some(c) = self.conns.get_mut(&flow) {
            let st = &mut c.dirs[dir.index()];
            let held = std::mem::take(&mut st.buf);
            st.framer.lost(&held, len);
        }
    }

    /// The next bytes of one direction: framed, and for `Json` rendered into the buffer,
    /// which goes to `sink` every 256 KiB.
    pub fn data(&mut self, flow: u64, dir: Dir, ts: Ts, bytes: &[u8], sink: &mut dyn Write) {
        if self.stage == Stage::Track {
            self.count += bytes.len() as u64;
            return;
        }
        let Some(Conn { dialect, dirs }) = self.conns.get_mut(&flow) else {
            return;
        };
        let st = &mut dirs[dir.index()];
        let mut joined = std::mem::take(&mut st.buf);
        let s: &[u8] = if joined.is_empty() {
            bytes
        } else {
            joined.extend_from_slice(bytes);
            &joined
        };
        let tables: &Tables = &self.tables;
        let mut pos = 0;
        loop {
            let rules = FrameRules {
                tables,
                dialect,
                dir,
                limits: self.limits,
            };
            let rest = &s[pos..];
            match st.framer.decode(rest, false, &rules) {
                Item::NeedMore => break,
                Item::Skip(n) => pos += n,
                Item::Desync(_) => {}
                Item::Frame(fr) => {
                    self.count += 1;
                    let b = &rest[..fr.len];
                    let args = Args::of_line(fr.line(b), &fr.toks);
                    dialect.update(tables, dir, fr.name(b), &args);
                    if self.stage == Stage::Json {
                        let out = &mut self.out;
                        render(out, &mut self.clock, tables, dialect, flow, dir, ts, &fr, b);
                        if out.len() >= 256 << 10 {
                            self.json_bytes += out.len() as u64;
                            sink.write_all(out).expect("write");
                            out.clear();
                        }
                    }
                    pos += fr.len;
                }
            }
        }
        st.buf = s[pos..].to_vec();
    }

    /// Writes what the buffer holds.
    pub fn flush(&mut self, sink: &mut dyn Write) {
        self.json_bytes += self.out.len() as u64;
        sink.write_all(&self.out).expect("write");
        sink.flush().expect("flush");
        self.out.clear();
    }
}

/// Runs one stage over the capture at `cap`, the JSON (for `Json`) into `sink`.
#[allow(dead_code)] // benches/read.rs
pub fn run(cap: &Path, tables: &Arc<Tables>, stage: Stage, sink: &mut dyn Write) -> Run {
    let t0 = Instant::now();
    let input = std::fs::File::open(cap).expect("open the capture");
    let mut lean = Lean::new(tables, stage);
    let mut on_event = |ev: StreamEvent<'_>| match ev {
        StreamEvent::Open { flow, .. } => lean.open(flow),
        StreamEvent::Data {
            flow,
            dir,
            ts,
            bytes,
        } => lean.data(flow, dir, ts, bytes, sink),
        StreamEvent::Gap { flow, dir, len, .. } => lean.gap(flow, dir, len),
        StreamEvent::Close { flow, .. } => lean.close(flow),
        _ => {}
    };
    track(
        &cap.display().to_string(),
        input,
        tables.clone(),
        &ReadOptions::default(),
        &mut on_event,
    )
    .expect("read the capture");
    lean.flush(sink);
    Run {
        count: lean.count,
        json_bytes: lean.json_bytes,
        secs: t0.elapsed().as_secs_f64(),
    }
}

/// Runs one stage over one server-to-client byte stream (one connection) fed in `chunk`-sized
/// reads, as the proxy's event side gets them.
#[allow(dead_code)] // benches/proxy.rs
pub fn run_stream(
    data: &[u8],
    chunk: usize,
    tables: &Arc<Tables>,
    stage: Stage,
    sink: &mut dyn Write,
) -> Run {
    let t0 = Instant::now();
    let mut lean = Lean::new(tables, stage);
    lean.open(1);
    for c in data.chunks(chunk) {
        lean.data(1, Dir::S2c, Ts(0), c, sink);
    }
    lean.flush(sink);
    Run {
        count: lean.count,
        json_bytes: lean.json_bytes,
        secs: t0.elapsed().as_secs_f64(),
    }
}
