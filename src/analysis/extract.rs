//! Object extraction: reassembles display pictures, emoticons and files from the P2P chunks
//! of the event stream, ties each to the MSNSLP session that opened it, verifies it against
//! the MSNObject's SHA1D and writes it out. It reads typed events only (the P2P header
//! fields and the chunk's bytes from the payload's content, the same whether the event was
//! decoded here or read back from JSON Lines); it never frames or re-decodes the wire, and
//! it holds a bounded amount of data.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha1::{Digest, Sha1};

use crate::event::{Dir, Event, EventKind, Sink, Ts};
use crate::payload::p2p::{ChunkKind, Layout};
use crate::payload::slp::{self, Context, Slp, SlpKind};
use crate::payload::{b64, mime, Body, MsnObject, Payload};

/// Bounds on what the extractor holds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest object reassembled; larger declared sizes are refused.
    pub max_object: u64,
    /// Most objects (and SLP messages) being reassembled at once; the oldest is given up.
    pub max_open: usize,
    /// Most data bytes held across all open objects; the oldest is given up.
    pub max_buffered: u64,
    /// Largest SLP message reassembled from chunks.
    pub max_slp: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object: 64 << 20,
            max_open: 64,
            max_buffered: 256 << 20,
            max_slp: 1 << 20,
        }
    }
}

/// The SHA1D verdict of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// base64(SHA-1(data)) equals the MSNObject's SHA1D.
    Match,
    /// It does not; `expected` is the MSNObject's SHA1D.
    Mismatch { expected: String },
    /// No MSNObject with a SHA1D is known for this object.
    NoHash,
}

impl Check {
    pub fn as_str(&self) -> &'static str {
        match self {
            Check::Match => "match",
            Check::Mismatch { .. } => "mismatch",
            Check::NoHash => "no hash known",
        }
    }
}

/// One reassembled object (complete or not).
#[derive(Debug, Clone)]
pub struct Object {
    /// 1-based, in the order objects were finished.
    pub index: usize,
    pub conn: u64,
    /// Direction of the chunks on their connection.
    pub dir: Dir,
    pub session_id: u32,
    /// v1 message identifier, or v2 package number.
    pub message_id: u64,
    /// `display_picture`, `custom_emoticon`, `file`, ... (MSNObject type, SLP application,
    /// else the footer's application id).
    pub kind: String,
    pub sender: Option<String>,
    pub receiver: Option<String>,
    /// MSNObject friendly name, file name, or MSNObject location.
    pub name: Option<String>,
    /// The MSNObject from the INVITE context, when there was one (the attributes that
    /// describe the object, each cut to a bounded length).
    pub msnobj: Option<MsnObject<'static>>,
    /// The SLP Call-ID and EUF-GUID application of the session, when seen.
    pub call_id: Option<String>,
    pub application: Option<String>,
    /// The size the context (MSNObject Size, file size) or the P2P header announced.
    pub expected_size: Option<u64>,
    /// Data as reassembled; holes of a truncated object are zero-filled. ExtractSink
    /// empties it once the object is written, to hold no more than it must.
    pub data: Vec<u8>,
    /// Length of the reassembled data.
    pub size: u64,
    /// Bytes actually received (without holes).
    pub received: u64,
    pub complete: bool,
    pub check: Check,
    /// base64 of the SHA-1 of `data` (the form SHA1D uses).
    pub sha1: String,
    pub first_ts: Ts,
    pub last_ts: Ts,
    /// Index of an earlier object with the same session and content (the other leg of a
    /// relayed transfer): it is reported but not written again.
    pub duplicate_of: Option<usize>,
    pub problems: Vec<String>,
}

/// The JSON report of one object (`extract --json`): everything but its data.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport<'o> {
    pub object: usize,
    pub conn: u64,
    pub dir: Dir,
    pub session_id: u32,
    pub kind: &'o str,
    pub size: u64,
    pub received: u64,
    pub expected_size: Option<u64>,
    pub complete: bool,
    pub sha1d_check: &'static str,
    pub sha1: &'o str,
    pub first_ts: Ts,
    pub last_ts: Ts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<&'o str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver: Option<&'o str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'o str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<&'o str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<&'o str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha1d_expected: Option<&'o str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub problems: &'o [String],
}

impl Object {
    /// The JSON report of the object (without its data).
    pub fn report(&self, path: Option<&Path>) -> ObjectReport<'_> {
        ObjectReport {
            object: self.index,
            conn: self.conn,
            dir: self.dir,
            session_id: self.session_id,
            kind: &self.kind,
            size: self.size,
            received: self.received,
            expected_size: self.expected_size,
            complete: self.complete,
            sha1d_check: self.check.as_str(),
            sha1: &self.sha1,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            sender: self.sender.as_deref(),
            receiver: self.receiver.as_deref(),
            name: self.name.as_deref(),
            call_id: self.call_id.as_deref(),
            application: self.application.as_deref(),
            sha1d_expected: match &self.check {
                Check::Mismatch { expected } => Some(expected),
                _ => None,
            },
            duplicate_of: self.duplicate_of,
            path: path.map(|p| p.display().to_string()),
            problems: &self.problems,
        }
    }

    /// One human line: `#1 display_picture 70 bytes from bob@example.com: SHA1D match, complete`.
    pub fn line(&self, path: Option<&Path>) -> String {
        let mut s = format!("#{} {} {} bytes", self.index, self.kind, self.size);
        if let Some(n) = self.name.as_deref().filter(|n| !n.is_empty()) {
            s.push_str(&format!(" {n:?}"));
        }
        if let Some(f) = &self.sender {
            s.push_str(&format!(" from {f}"));
        }
        s.push_str(&format!(
            " (conn {} session {})",
            self.conn, self.session_id
        ));
        s.push_str(&format!(": SHA1D {}", self.check.as_str()));
        if self.complete {
            s.push_str(", complete");
        } else {
            let exp = self
                .expected_size
                .map(|e| format!(" of {e}"))
                .unwrap_or_default();
            s.push_str(&format!(
                ", truncated ({} bytes received{exp})",
                self.received
            ));
        }
        match (path, self.duplicate_of) {
            (_, Some(d)) => s.push_str(&format!(", same as #{d} (not written again)")),
            (Some(p), None) => s.push_str(&format!(" -> {}", p.display())),
            _ => {}
        }
        for p in &self.problems {
            s.push_str(&format!(" [{p}]"));
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    conn: u64,
    dir: Dir,
    session: u32,
    id: u64,
}

/// Where a chunk goes: an explicit offset (v1, v2 first chunk) or "this many bytes remain
/// after it" (v2), which needs the total to be placed.
#[derive(Debug, Clone, Copy)]
enum Place {
    At(u64),
    Remaining(u64),
}

/// A message being reassembled.
#[derive(Debug)]
struct Partial {
    seq: u64,
    total: Option<u64>,
    chunks: BTreeMap<u64, Vec<u8>>,
    pending: Vec<(u64, Vec<u8>)>,
    contig: u64,
    scan_from: u64,
    stored: u64,
    cap: u64,
    first_ts: Ts,
    last_ts: Ts,
    sender_hint: Option<String>,
    receiver_hint: Option<String>,
    app_id: Option<u32>,
    problems: Vec<String>,
}

impl Partial {
    fn new(seq: u64, cap: u64, ts: Ts) -> Partial {
        Partial {
            seq,
            total: None,
            chunks: BTreeMap::new(),
            pending: Vec::new(),
            contig: 0,
            scan_from: 0,
            stored: 0,
            cap,
            first_ts: ts,
            last_ts: ts,
            sender_hint: None,
            receiver_hint: None,
            app_id: None,
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < 8 && !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }

    /// Sets the total once; a different later value is a problem, not a change.
    fn set_total(&mut self, t: u64) -> Result<(), String> {
        match self.total {
            Some(old) if old != t => {
                self.problem(format!("chunks disagree on the total size ({old} vs {t})"));
                Ok(())
            }
            Some(_) => Ok(()),
            None => {
                if t > self.cap {
                    return Err(format!(
                        "declares {t} bytes, over the {} byte limit",
                        self.cap
                    ));
                }
                self.total = Some(t);
                for (rem, d) in std::mem::take(&mut self.pending) {
                    self.stored -= d.len() as u64;
                    self.place(Place::Remaining(rem), d);
                }
                Ok(())
            }
        }
    }

    /// Stores one chunk; returns the bytes newly held.
    fn place(&mut self, p: Place, mut data: Vec<u8>) -> u64 {
        if data.is_empty() {
            return 0;
        }
        let len = data.len() as u64;
        let off = match (p, self.total) {
            (Place::At(o), _) => o,
            (Place::Remaining(r), Some(t)) => {
                match t.checked_sub(r).and_then(|x| x.checked_sub(len)) {
                    Some(o) => o,
                    None => {
                        self.problem(format!(
                            "a chunk with {r} bytes remaining does not fit {t} bytes"
                        ));
                        return 0;
                    }
                }
            }
            (Place::Remaining(r), None) => {
                if self.stored + len > self.cap {
                    self.problem("more data than the size limit before the size was known".into());
                    return 0;
                }
                self.stored += len;
                self.pending.push((r, data));
                return len;
            }
        };
        let limit = self.total.unwrap_or(self.cap);
        if off >= limit {
            self.problem(format!("a chunk at offset {off} lies beyond {limit} bytes"));
            return 0;
        }
        if off + len > limit {
            self.problem(format!(
                "a chunk at offset {off} runs past {limit} bytes; cut"
            ));
            data.truncate((limit - off) as usize);
        }
        let len = data.len() as u64;
        if self.stored + len > self.cap {
            self.problem("more data than the size limit".into());
            return 0;
        }
        let mut added = len;
        match self.chunks.get(&off) {
            Some(old) if old.len() as u64 >= len => return 0, // a repeat
            Some(old) => {
                let l = old.len() as u64;
                self.stored -= l;
                added -= l;
            }
            None => {}
        }
        self.stored += len;
        self.chunks.insert(off, data);
        if off <= self.contig {
            self.contig = self.contig.max(off + len);
            self.advance();
        }
        added
    }

    /// Extends the contiguous prefix over chunks that start inside it.
    fn advance(&mut self) {
        loop {
            let mut best = self.contig;
            for (&s, d) in self.chunks.range(self.scan_from..=self.contig) {
                best = best.max(s + d.len() as u64);
            }
            self.scan_from = self.contig;
            if best == self.contig {
                break;
            }
            self.contig = best;
        }
    }

    fn complete(&self) -> bool {
        self.total.is_some_and(|t| self.contig >= t)
    }

    /// The reassembled bytes and how many were actually received.
    fn assemble(&self) -> (Vec<u8>, u64) {
        let end = self
            .chunks
            .iter()
            .map(|(&o, d)| o + d.len() as u64)
            .max()
            .unwrap_or(0);
        let len = match self.total {
            Some(t) if self.complete() => t,
            _ => end,
        };
        let mut buf = vec![0u8; len as usize];
        let mut covered = 0u64;
        let mut reach = 0u64;
        for (&o, d) in &self.chunks {
            let s = o as usize;
            let e = (s + d.len()).min(buf.len());
            if s < e {
                buf[s..e].copy_from_slice(&d[..e - s]);
            }
            let ce = o + d.len() as u64;
            if ce > reach {
                covered += ce - reach.max(o);
                reach = ce;
            }
        }
        (buf, covered)
    }
}

/// The file a file-transfer INVITE offered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileOffer {
    name: String,
    size: u64,
}

/// What an SLP INVITE said about a session: copied out of the event, every string cut to
/// [`MAX_KEPT`] bytes so that remembered sessions stay small whatever the INVITE held.
#[derive(Debug, Clone, Default)]
struct SlpSession {
    invite_dir: Option<Dir>,
    from: Option<String>,
    to: Option<String>,
    call_id: Option<String>,
    application: Option<String>,
    msnobj: Option<MsnObject<'static>>,
    file: Option<FileOffer>,
    app_id: Option<u32>,
    state: &'static str,
}

/// Longest string kept from an SLP message or MSNObject.
const MAX_KEPT: usize = 1024;

/// `s` cut to at most [`MAX_KEPT`] bytes, on a character boundary.
fn kept(s: &str) -> String {
    let mut end = s.len().min(MAX_KEPT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The MSNObject attributes extraction uses (and a few that identify it), bounded.
fn kept_msnobj(m: &MsnObject<'_>) -> MsnObject<'static> {
    let mut o = MsnObject::default();
    for k in [
        "Creator", "Size", "Type", "Location", "Friendly", "SHA1D", "SHA1C",
    ] {
        if let Some(v) = m.get(k) {
            o.attrs.insert(k, kept(v));
        }
    }
    o.type_name = m.type_name.as_deref().map(|t| kept(t).into());
    o.friendly_decoded = m.friendly_decoded.as_deref().map(kept);
    o
}

/// Reassembles objects from events. Feed it every event (`event`), then call `finish`;
/// both return the objects they finished.
#[derive(Debug, Default)]
pub struct Extractor {
    limits: Limits,
    seq: u64,
    objects: usize,
    partials: HashMap<Key, Partial>,
    slp_partials: HashMap<Key, Partial>,
    sessions: HashMap<(u64, u32), SlpSession>,
    calls: HashMap<(u64, String), u32>,
    session_order: VecDeque<(u64, u32)>,
    buffered: u64,
    /// Complete objects by (session, SHA-1), to tell the second leg of a relayed transfer;
    /// the oldest are forgotten past MAX_SEEN.
    seen: HashMap<(u32, String), usize>,
    seen_order: VecDeque<(u32, String)>,
    /// Things worth telling the user that belong to no object (declined sessions, ...);
    /// at most MAX_NOTES, then one line saying how many more there were.
    pub notes: Vec<String>,
    notes_dropped: u64,
}

/// Most SLP sessions remembered at once (INVITEs whose connection is still open).
const MAX_SESSIONS: usize = 4096;
/// Most notes kept.
const MAX_NOTES: usize = 1000;
/// Most complete objects remembered for duplicate detection.
const MAX_SEEN: usize = 65_536;

/// A header of the MIME (or multipart) payload carrying a P2P chunk.
fn payload_header<'p>(p: &'p Payload<'_>, name: &str) -> Option<&'p str> {
    if let Some(m) = p.mime() {
        return m.header(name);
    }
    p.multipart()?
        .blocks
        .iter()
        .rev()
        .find_map(|b| mime::header(&b.headers, name))
}

fn handle_of(s: &str) -> &str {
    s.split(';').next().unwrap_or(s)
}

/// What a data chunk's event says about its object besides the data.
#[derive(Debug, Default)]
struct Hints {
    sender: Option<String>,
    receiver: Option<String>,
    app_id: Option<u32>,
    /// The P2P decoder's problem with the chunk (e.g. cut off by the end of the stream).
    problem: Option<String>,
}

impl Extractor {
    pub fn new(limits: Limits) -> Extractor {
        Extractor {
            limits,
            ..Extractor::default()
        }
    }

    /// Objects and SLP messages currently being reassembled.
    pub fn open(&self) -> usize {
        self.partials.len() + self.slp_partials.len()
    }

    /// Data bytes currently held.
    pub fn buffered(&self) -> u64 {
        self.buffered
    }

    /// Consumes one event; objects it completes are appended to `out`. The event is only
    /// read: the chunk's bytes are copied into the object being reassembled.
    pub fn event(&mut self, ev: &Event<'_>, out: &mut Vec<Object>) {
        let c = match &ev.kind {
            EventKind::Command(c) => c,
            EventKind::Close(_) => {
                self.flush(|k| k.conn == ev.conn, out);
                // SLP sessions live on one connection: forget them with it.
                let conn = ev.conn;
                self.sessions.retain(|(c, _), _| *c != conn);
                self.calls.retain(|(c, _), _| *c != conn);
                self.session_order.retain(|(c, _)| *c != conn);
                return;
            }
            _ => return,
        };
        let Some(dir) = ev.dir else { return };
        let Some(payload) = &c.payload else { return };
        let Some(content) = payload.content() else {
            return;
        };
        let Some(p2p) = content.p2p.as_deref() else {
            return;
        };
        let is_slp = match p2p.kind {
            Some(ChunkKind::Slp) => true,
            Some(ChunkKind::Data) => false,
            _ => return,
        };
        // The P2P body is always held as bytes (base64 in JSON), so this is the same for
        // an event decoded here and one read back from JSON Lines. A chunk cut off by the
        // end of the stream has `data_length` short of its header's size: only the bytes
        // that arrived are taken.
        let Some(body) = content.body.as_ref().map(Body::bytes) else {
            return;
        };
        let Some(start) = p2p.data_start else { return };
        let len = p2p.data_length.unwrap_or(0);
        let Some(data) = body.get(start..start.saturating_add(len)) else {
            return;
        };
        let session = p2p.session_id.unwrap_or(0);
        let id = match p2p.header {
            Layout::V2 => p2p.package_number.map(u64::from),
            Layout::V1 => p2p.identifier.map(u64::from),
        }
        .unwrap_or(0);
        let key = Key {
            conn: ev.conn,
            dir,
            session,
            id,
        };
        let place = match (p2p.offset, p2p.data_remaining) {
            (Some(o), _) => Place::At(o),
            (None, Some(r)) => Place::Remaining(r),
            (None, None) => Place::At(0),
        };
        let total = p2p.total_size;
        if is_slp {
            if let Some(s) = &p2p.slp {
                self.slp(ev.conn, dir, s);
            } else {
                self.slp_chunk(key, place, total, data, ev.ts, out);
            }
            return;
        }
        // Senders: the MSG line names the sender on server-to-client switchboard frames.
        let hints = Hints {
            sender: (dir == Dir::S2c && c.cmd == "MSG")
                .then(|| c.arg(0).map(kept))
                .flatten(),
            receiver: payload_header(payload, "P2P-Dest").map(|d| kept(handle_of(d))),
            app_id: p2p.app_id,
            // Why the chunk is short (the stream ended early) and what is off in it.
            problem: p2p
                .problem
                .as_deref()
                .map(|p| match payload.problem.as_deref() {
                    Some(why) => format!("a chunk was {}; {}", kept(why), kept(p)),
                    None => format!("a chunk is malformed: {}", kept(p)),
                }),
        };
        let context_total = self.context_size(ev.conn, session);
        self.data_chunk(key, place, total.or(context_total), data, ev.ts, hints, out);
    }

    /// Gives up every open object (end of input): they come out truncated.
    pub fn finish(&mut self, out: &mut Vec<Object>) {
        self.flush(|_| true, out);
        self.slp_partials.clear();
        if self.notes_dropped > 0 {
            let n = std::mem::take(&mut self.notes_dropped);
            self.notes.push(format!("... and {n} more notes"));
        }
    }

    fn note(&mut self, n: String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(n);
        } else {
            self.notes_dropped += 1;
        }
    }

    fn context_size(&self, conn: u64, session: u32) -> Option<u64> {
        let s = self.sessions.get(&(conn, session))?;
        s.msnobj
            .as_ref()
            .and_then(MsnObject::size)
            .or_else(|| s.file.as_ref().map(|f| f.size))
    }

    fn flush(&mut self, which: impl Fn(&Key) -> bool, out: &mut Vec<Object>) {
        let mut keys: Vec<(u64, Key)> = self
            .partials
            .iter()
            .filter(|(k, _)| which(k))
            .map(|(k, p)| (p.seq, *k))
            .collect();
        keys.sort_unstable_by_key(|(s, _)| *s);
        for (_, k) in keys {
            if let Some(p) = self.partials.remove(&k) {
                self.buffered -= p.stored;
                out.push(self.finalize(k, p));
            }
        }
        self.slp_partials.retain(|k, _| !which(k));
    }

    /// Makes room for one more open message within the limits.
    fn make_room(&mut self, incoming: u64, out: &mut Vec<Object>) {
        while self.open() >= self.limits.max_open
            || self.buffered + incoming > self.limits.max_buffered
        {
            let oldest_slp = self
                .slp_partials
                .iter()
                .min_by_key(|(_, p)| p.seq)
                .map(|(k, p)| (p.seq, *k));
            let oldest = self
                .partials
                .iter()
                .min_by_key(|(_, p)| p.seq)
                .map(|(k, p)| (p.seq, *k));
            match (oldest, oldest_slp) {
                (Some((a, k)), Some((b, _)))
                    if a < b || self.buffered + incoming > self.limits.max_buffered =>
                {
                    self.give_up(k, out)
                }
                (_, Some((_, k))) => {
                    self.slp_partials.remove(&k);
                }
                (Some((_, k)), None) => self.give_up(k, out),
                (None, None) => break,
            }
        }
    }

    fn give_up(&mut self, k: Key, out: &mut Vec<Object>) {
        if let Some(mut p) = self.partials.remove(&k) {
            self.buffered -= p.stored;
            p.problem("given up to stay within the memory limits".into());
            out.push(self.finalize(k, p));
        }
    }

    fn slp_chunk(
        &mut self,
        key: Key,
        place: Place,
        total: Option<u64>,
        data: &[u8],
        ts: Ts,
        out: &mut Vec<Object>,
    ) {
        if !self.slp_partials.contains_key(&key) {
            self.make_room(0, out);
            self.seq += 1;
            self.slp_partials
                .insert(key, Partial::new(self.seq, self.limits.max_slp, ts));
        }
        let Some(p) = self.slp_partials.get_mut(&key) else {
            return;
        };
        if let Some(t) = total {
            if p.set_total(t).is_err() {
                self.slp_partials.remove(&key);
                return;
            }
        }
        p.place(place, data.to_vec());
        if p.complete() {
            if let Some(p) = self.slp_partials.remove(&key) {
                let (bytes, _) = p.assemble();
                match slp::parse(&bytes) {
                    Ok(v) => self.slp(key.conn, key.dir, &v),
                    Err(e) => self.note(format!("conn {}: reassembled SLP message: {e}", key.conn)),
                }
            }
        }
    }

    /// Learns from one whole SLP message.
    fn slp(&mut self, conn: u64, dir: Dir, v: &Slp<'_>) {
        let call = v.call_id.as_deref().map(kept);
        let sid = v.session_id.or_else(|| {
            call.as_ref()
                .and_then(|c| self.calls.get(&(conn, c.clone())).copied())
        });
        match v.kind {
            SlpKind::Invite => {
                let Some(sid) = v.session_id else {
                    return;
                };
                let (msnobj, file) = match &v.context {
                    Some(Context::MsnObj { msnobj }) => (Some(kept_msnobj(msnobj)), None),
                    Some(Context::File(f)) => (
                        None,
                        Some(FileOffer {
                            name: kept(&f.file_name),
                            size: f.file_size,
                        }),
                    ),
                    _ => (None, None),
                };
                let s = SlpSession {
                    invite_dir: Some(dir),
                    from: v.from.as_deref().map(kept),
                    to: v.to.as_deref().map(kept),
                    call_id: call.clone(),
                    application: v.application.as_deref().map(kept),
                    msnobj,
                    file,
                    app_id: v.app_id,
                    state: "invited",
                };
                if self.sessions.len() >= MAX_SESSIONS {
                    // Forget the oldest INVITEs first; their objects lose only their names.
                    while let Some(old) = self.session_order.pop_front() {
                        if let Some(gone) = self.sessions.remove(&old) {
                            if let Some(c) = gone.call_id {
                                self.calls.remove(&(old.0, c));
                            }
                            break;
                        }
                    }
                }
                if let Some(c) = call {
                    self.calls.insert((conn, c), sid);
                }
                if self.sessions.insert((conn, sid), s).is_none() {
                    self.session_order.push_back((conn, sid));
                }
            }
            k @ (SlpKind::Ok | SlpKind::Decline | SlpKind::Error | SlpKind::Bye) => {
                let Some(sid) = sid else { return };
                let mut note = None;
                if let Some(s) = self.sessions.get_mut(&(conn, sid)) {
                    s.state = match k {
                        SlpKind::Ok => "accepted",
                        SlpKind::Decline => "declined",
                        SlpKind::Error => "failed",
                        _ => "closed",
                    };
                    if matches!(k, SlpKind::Decline | SlpKind::Error) {
                        let what = s.application.as_deref().unwrap_or("unknown");
                        note = Some(format!(
                            "conn {conn} session {sid} ({what}) was {}: {}",
                            s.state,
                            crate::event::pretty::one_line(&v.start_line, 200)
                        ));
                    }
                }
                if let Some(n) = note {
                    self.note(n);
                }
            }
            SlpKind::Ack | SlpKind::Other => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn data_chunk(
        &mut self,
        key: Key,
        place: Place,
        total: Option<u64>,
        data: &[u8],
        ts: Ts,
        hints: Hints,
        out: &mut Vec<Object>,
    ) {
        if !self.partials.contains_key(&key) {
            self.make_room(data.len() as u64, out);
            self.seq += 1;
            self.partials
                .insert(key, Partial::new(self.seq, self.limits.max_object, ts));
        } else if self.buffered + data.len() as u64 > self.limits.max_buffered {
            self.make_room(data.len() as u64, out);
        }
        let Some(p) = self.partials.get_mut(&key) else {
            return;
        };
        p.last_ts = ts;
        if p.sender_hint.is_none() {
            p.sender_hint = hints.sender;
        }
        if p.receiver_hint.is_none() {
            p.receiver_hint = hints.receiver;
        }
        if p.app_id.is_none() {
            p.app_id = hints.app_id;
        }
        if let Some(pr) = hints.problem {
            p.problem(pr);
        }
        if let Some(t) = total {
            let before = p.stored;
            if let Err(e) = p.set_total(t) {
                // Refused: report it once, as an empty truncated object.
                p.problem(e);
                if let Some(p) = self.partials.remove(&key) {
                    self.buffered -= before;
                    out.push(self.finalize(key, p));
                }
                return;
            }
            self.buffered = self.buffered - before + p.stored;
        }
        let added = p.place(place, data.to_vec());
        self.buffered += added;
        if p.complete() {
            if let Some(p) = self.partials.remove(&key) {
                self.buffered -= p.stored;
                out.push(self.finalize(key, p));
            }
        }
    }

    fn finalize(&mut self, k: Key, p: Partial) -> Object {
        let complete = p.complete();
        let (data, received) = p.assemble();
        let mut problems = p.problems.clone();
        if !p.pending.is_empty() {
            problems.push(format!(
                "{} chunks could not be placed: the total size never became known",
                p.pending.len()
            ));
        }
        let s = self.sessions.get(&(k.conn, k.session)).cloned();
        let msnobj = s.as_ref().and_then(|s| s.msnobj.clone());
        let file = s.as_ref().and_then(|s| s.file.clone());
        let app = s.as_ref().and_then(|s| s.application.clone());
        let app_id = p.app_id.or(s.as_ref().and_then(|s| s.app_id));
        let kind = if let Some(t) = msnobj.as_ref().and_then(|m| m.type_name.as_deref()) {
            t.to_string()
        } else if file.is_some() || app.as_deref() == Some("file_transfer") {
            "file".to_string()
        } else {
            match app_id.map(crate::payload::p2p::app_name) {
                Some("display_picture") => "display_picture".into(),
                Some("custom_emoticon") => "custom_emoticon".into(),
                Some("file_transfer") => "file".into(),
                Some("msnobj") => "msnobj".into(),
                _ => "unknown".into(),
            }
        };
        // The data flows from the INVITE's sender for files, towards it for MSNObjects.
        let (sender, receiver) = match &s {
            Some(s) if s.invite_dir.is_some() => {
                if s.invite_dir == Some(k.dir) {
                    (s.from.clone(), s.to.clone())
                } else {
                    (s.to.clone(), s.from.clone())
                }
            }
            _ => (
                p.sender_hint.clone().or_else(|| {
                    msnobj
                        .as_ref()
                        .and_then(|m| m.creator().map(str::to_string))
                }),
                p.receiver_hint.clone(),
            ),
        };
        let name = msnobj
            .as_ref()
            .and_then(|m| m.friendly_decoded.clone().filter(|f| !f.is_empty()))
            .or_else(|| file.as_ref().map(|f| f.name.clone()))
            .or_else(|| {
                msnobj.as_ref().and_then(|m| {
                    m.location()
                        .filter(|l| !l.is_empty() && *l != "0")
                        .map(str::to_string)
                })
            });
        let expected_size = msnobj
            .as_ref()
            .and_then(MsnObject::size)
            .or_else(|| file.as_ref().map(|f| f.size))
            .or(p.total);
        if let (Some(e), true) = (expected_size, complete) {
            if e != data.len() as u64 {
                problems.push(format!(
                    "the context announced {e} bytes, the transfer carried {}",
                    data.len()
                ));
            }
        }
        let digest = Sha1::digest(&data);
        let sha1 = b64(&digest);
        let check = match msnobj
            .as_ref()
            .and_then(MsnObject::sha1d)
            .filter(|h| !h.is_empty())
        {
            Some(h) if h == sha1 => Check::Match,
            Some(h) => Check::Mismatch {
                expected: h.to_string(),
            },
            None => Check::NoHash,
        };
        self.objects += 1;
        let index = self.objects;
        let duplicate_of = if complete {
            let key = (k.session, sha1.clone());
            match self.seen.get(&key) {
                Some(&i) => Some(i),
                None => {
                    if self.seen_order.len() >= MAX_SEEN {
                        if let Some(old) = self.seen_order.pop_front() {
                            self.seen.remove(&old);
                        }
                    }
                    self.seen.insert(key.clone(), index);
                    self.seen_order.push_back(key);
                    None
                }
            }
        } else {
            None
        };
        Object {
            index,
            conn: k.conn,
            dir: k.dir,
            session_id: k.session,
            message_id: k.id,
            kind,
            sender,
            receiver,
            name,
            msnobj,
            call_id: s.as_ref().and_then(|s| s.call_id.clone()),
            application: app,
            expected_size,
            size: data.len() as u64,
            data,
            received,
            complete,
            check,
            sha1,
            first_ts: p.first_ts,
            last_ts: p.last_ts,
            duplicate_of,
            problems,
        }
    }
}

/// Makes one path component safe: no separators, no leading dots, printable, bounded.
pub fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        let ok = ch.is_alphanumeric() || matches!(ch, '.' | '-' | '_' | '@' | '+');
        let c = if ok { ch } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
        if out.len() >= 80 {
            break;
        }
    }
    let t = out.trim_matches(['.', '_']);
    if t.is_empty() {
        "unnamed".into()
    } else {
        t.to_string()
    }
}

/// The file extension the data's first bytes announce.
fn magic_ext(d: &[u8]) -> Option<&'static str> {
    if d.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if d.starts_with(b"GIF8") {
        Some("gif")
    } else if d.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("jpg")
    } else if d.starts_with(b"BM") && d.len() > 14 {
        Some("bmp")
    } else if d.starts_with(b"RIFF") && d.get(8..12) == Some(b"WAVE") {
        Some("wav")
    } else if d.starts_with(b"MSCF") {
        Some("cab")
    } else {
        None
    }
}

/// The file name an object is written under: `sender-kind-name.ext` (plus `.partial` when
/// truncated), every part sanitised.
pub fn file_name(o: &Object) -> String {
    let (stem, suffix) = name_parts(o);
    stem + &suffix
}

/// The file name split where a counter goes to make it unique: (`stem`, `.ext[.partial]`).
fn name_parts(o: &Object) -> (String, String) {
    let sender = sanitize(o.sender.as_deref().unwrap_or("unknown"));
    // A file's own name may carry a path from the sender's machine: keep its last part.
    let name = match o
        .name
        .as_deref()
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n))
        .filter(|n| !n.is_empty())
    {
        Some(n) => sanitize(n),
        None => format!("session{}", o.session_id),
    };
    let magic = magic_ext(&o.data);
    let (stem, own_ext) = match name.rsplit_once('.') {
        Some((a, e)) if !a.is_empty() && (1..=5).contains(&e.len()) => {
            (a.to_string(), Some(e.to_string()))
        }
        _ => (name.clone(), None),
    };
    let (stem, ext) = if o.kind == "file" {
        // A file keeps its own extension; the content names one only when it has none.
        match (own_ext, magic) {
            (Some(e), _) => (stem, format!(".{e}")),
            (None, Some(m)) => (name, format!(".{m}")),
            (None, None) => (name, String::new()),
        }
    } else {
        // An MSNObject location such as `PIC.tmp` says nothing about the content.
        (stem, format!(".{}", magic.unwrap_or("bin")))
    };
    let mut suffix = ext;
    if !o.complete {
        suffix.push_str(".partial");
    }
    (format!("{sender}-{}-{stem}", sanitize(&o.kind)), suffix)
}

/// Writes objects into one directory, never overwriting a file.
#[derive(Debug)]
pub struct Writer {
    dir: PathBuf,
    used: HashSet<String>,
}

impl Writer {
    /// Creates the directory if needed.
    pub fn new(dir: &Path) -> io::Result<Writer> {
        std::fs::create_dir_all(dir)?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            used: HashSet::new(),
        })
    }

    /// Writes `o` and returns its path.
    pub fn write(&mut self, o: &Object) -> io::Result<PathBuf> {
        let (base, ext) = name_parts(o);
        for n in 1..10_000 {
            let cand = if n == 1 {
                format!("{base}{ext}")
            } else {
                format!("{base}-{n}{ext}")
            };
            if self.used.contains(&cand) {
                continue;
            }
            let path = self.dir.join(&cand);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(&o.data)?;
                    self.used.insert(cand);
                    return Ok(path);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "no free file name for {base}{ext} in {}",
            self.dir.display()
        )))
    }
}

/// One finished object with where it was written.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub object: Object,
    pub path: Option<PathBuf>,
}

/// An event sink that extracts objects into a directory: what `msntap extract` uses and
/// what a live proxy can add to its sinks (`--extract DIR`).
#[derive(Debug)]
pub struct ExtractSink {
    extractor: Extractor,
    writer: Writer,
    /// Every object finished so far, in order (reports only: `data` is emptied once the
    /// object is written).
    pub done: Vec<Extracted>,
    /// Called for each finished object (e.g. to print a report line as it happens).
    on_object: Option<fn(&Extracted)>,
}

impl ExtractSink {
    pub fn new(dir: &Path, limits: Limits) -> io::Result<ExtractSink> {
        Ok(ExtractSink {
            extractor: Extractor::new(limits),
            writer: Writer::new(dir)?,
            done: Vec::new(),
            on_object: None,
        })
    }

    /// Calls `f` for every object as soon as it is finished.
    pub fn on_object(mut self, f: fn(&Extracted)) -> ExtractSink {
        self.on_object = Some(f);
        self
    }

    /// Notes from the extractor (declined sessions, unparsable reassembled SLP).
    pub fn notes(&self) -> &[String] {
        &self.extractor.notes
    }

    fn store(&mut self, objs: Vec<Object>) -> io::Result<()> {
        for o in objs {
            let path = if o.duplicate_of.is_some() {
                None
            } else {
                Some(self.writer.write(&o)?)
            };
            let mut e = Extracted { object: o, path };
            if let Some(f) = self.on_object {
                f(&e);
            }
            // The bytes are on disk now; keep only the report.
            e.object.data = Vec::new();
            self.done.push(e);
        }
        Ok(())
    }

    /// Feeds every event of `events` (any source: a session, a capture, JSON Lines).
    pub fn feed_all<'e, I: IntoIterator<Item = Event<'e>>>(&mut self, events: I) -> io::Result<()> {
        for ev in events {
            self.event(&ev)?;
        }
        Ok(())
    }
}

impl Sink for ExtractSink {
    fn event(&mut self, ev: &Event<'_>) -> io::Result<()> {
        let mut out = Vec::new();
        self.extractor.event(ev, &mut out);
        self.store(out)
    }

    fn finish(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        self.extractor.finish(&mut out);
        self.store(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_removes_separators_and_dots() {
        assert_eq!(sanitize("../../etc/passwd"), "etc_passwd");
        assert_eq!(sanitize("a\\b:c"), "a_b_c");
        assert_eq!(sanitize(""), "unnamed");
        assert_eq!(sanitize("bob@example.com"), "bob@example.com");
        assert!(sanitize(&"x".repeat(500)).len() <= 80);
    }

    #[test]
    fn partial_reassembles_out_of_order_and_repeats() {
        let mut p = Partial::new(1, 1000, Ts(0));
        p.set_total(10).unwrap();
        p.place(Place::At(6), b"ghij".to_vec());
        assert!(!p.complete());
        p.place(Place::At(0), b"abc".to_vec());
        assert!(!p.complete());
        p.place(Place::At(0), b"abc".to_vec());
        p.place(Place::At(3), b"def".to_vec());
        assert!(p.complete());
        assert_eq!(p.assemble(), (b"abcdefghij".to_vec(), 10));
    }

    #[test]
    fn partial_places_v2_chunks_by_remaining_once_total_is_known() {
        let mut p = Partial::new(1, 1000, Ts(0));
        p.place(Place::Remaining(0), b"ij".to_vec());
        p.place(Place::Remaining(2), b"efgh".to_vec());
        assert!(!p.complete());
        p.set_total(10).unwrap();
        p.place(Place::At(0), b"abcd".to_vec());
        assert!(p.complete());
        assert_eq!(p.assemble().0, b"abcdefghij");
    }

    #[test]
    fn partial_refuses_oversize_and_counts_holes() {
        let mut p = Partial::new(1, 100, Ts(0));
        assert!(p.set_total(101).is_err());
        let mut p = Partial::new(1, 100, Ts(0));
        p.set_total(10).unwrap();
        p.place(Place::At(0), b"ab".to_vec());
        p.place(Place::At(5), b"fg".to_vec());
        p.place(Place::At(9), b"jXYZ".to_vec()); // cut at the total
        let (d, got) = p.assemble();
        assert_eq!(d, b"ab\0\0\0fg\0\0j");
        assert_eq!(got, 5);
        assert!(!p.complete());
        assert!(!p.problems.is_empty());
    }

    #[test]
    fn remembered_sessions_and_notes_are_bounded() {
        let mut ex = Extractor::new(Limits::default());
        for sid in 0..(MAX_SESSIONS as u32 + 500) {
            let body = format!("SessionID: {sid}\r\n\r\n\0");
            let head = |start: &str| {
                format!(
                    "{start}\r\nTo: <msnmsgr:b@x>\r\nFrom: <msnmsgr:a@x>\r\nCall-ID: {{{sid}}}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            };
            let inv = head("INVITE MSNMSGR:b@x MSNSLP/1.0");
            let inv = slp::parse(inv.as_bytes()).unwrap();
            assert_eq!((inv.kind, inv.session_id), (SlpKind::Invite, Some(sid)));
            ex.slp(1, Dir::C2s, &inv);
            // The decline names the session by its Call-ID only.
            let no = head("MSNSLP/1.0 603 Decline").replace(&body, "");
            let no = slp::parse(no.as_bytes()).unwrap();
            assert_eq!((no.kind, no.session_id), (SlpKind::Decline, None));
            ex.slp(1, Dir::S2c, &no);
        }
        assert_eq!(ex.sessions.len(), MAX_SESSIONS);
        assert!(ex.calls.len() <= MAX_SESSIONS);
        // The newest INVITE is still known, the oldest forgotten.
        assert!(ex.sessions.contains_key(&(1, MAX_SESSIONS as u32 + 499)));
        assert!(!ex.sessions.contains_key(&(1, 0)));
        let mut out = Vec::new();
        ex.finish(&mut out);
        assert_eq!(ex.notes.len(), MAX_NOTES + 1);
        assert_eq!(ex.notes[MAX_NOTES], "... and 3596 more notes");
    }
}
