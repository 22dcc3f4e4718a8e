//! One direction of a proxied connection, sans-IO: the core framer cuts the received bytes
//! into frames (command boundaries, XFR/RNG lines), the address token of a server's redirect
//! line is rewritten, and everything else is forwarded exactly as received. It must never
//! decode a payload or wait for one: it says which bytes go out now and hands the frames it
//! found, as byte ranges, to the event side, which decodes them later on its own thread.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use smallvec::SmallVec;

use crate::event::{Command, Dir, Event, EventKind, Redirect, Service, Ts};
use crate::protocol::decode::{self, FrameRules};
use crate::protocol::redirect;
use crate::protocol::{Dialect, Tables};
use crate::wire::{
    self, Args, DesyncInfo, Eol, Frame, Framer, Item, Limits, PayloadSpan, Plan, Rules, Toks,
};

/// Longest partial line held back while it may still become a redirect line. Real XFR and
/// RNG lines are a few hundred bytes (RNG carries a friendly name of up to ~390).
pub const MAX_HOLD: usize = 4096;

/// Most entries in one batch (a read full of short commands gives several batches).
pub const MAX_ENTRIES: usize = 1024;

/// Bytes a direction may buffer for framing without drawing on the shared [`Budget`].
pub const FREE_BUFFER: usize = 4096;

/// Framing memory shared by every connection: a partial frame larger than [`FREE_BUFFER`]
/// is buffered only while the budget lasts. Forwarding never depends on it.
#[derive(Debug)]
pub struct Budget {
    cap: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(cap: usize) -> Budget {
        Budget {
            cap,
            used: AtomicUsize::new(0),
        }
    }
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
    fn try_take(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur + n > self.cap {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(cur, cur + n, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }
    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// One frame found by the forwarding path, as ranges into a container of its [`Batch`]:
/// everything the event side needs to decode it without framing again. Kept small (a flood
/// of short commands is a flood of these).
#[derive(Debug, Clone)]
pub struct FrameRef {
    /// Stream offset of the frame in its direction.
    pub offset: u64,
    /// The payload length the line declared (0 without a payload).
    pub declared: u64,
    /// Offset of the frame in its container.
    pub start: u32,
    pub len: u32,
    pub line_len: u32,
    /// The dissector form the framer chose.
    pub tag: u32,
    /// Where the payload starts in the frame, and how many of its bytes are there.
    pub payload_start: u32,
    pub payload_have: u32,
    pub container: u8,
    pub eol: Eol,
    /// `HAS_PAYLOAD`, `GUESS`, `OVERSIZE`.
    pub flags: u8,
    /// The dialect's version when the frame was cut (payload decoders use it).
    pub decode_version: Option<u8>,
    /// Service and version after the frame (what its event is stamped with).
    pub service: Service,
    pub version: Option<u8>,
}

pub const HAS_PAYLOAD: u8 = 1;
pub const GUESS: u8 = 2;
pub const OVERSIZE: u8 = 4;

impl FrameRef {
    pub fn payload(&self) -> Option<PayloadSpan> {
        (self.flags & HAS_PAYLOAD != 0).then_some(PayloadSpan {
            start: self.payload_start as usize,
            have: self.payload_have as usize,
            declared: self.declared,
            guess: self.flags & GUESS != 0,
            oversize: self.flags & OVERSIZE != 0,
        })
    }

    /// The frame as the core framer cut it (its tokens found again from the line).
    pub fn frame(&self, bytes: &[u8]) -> Frame {
        let mut toks = Toks::new();
        wire::tokenize(&bytes[..self.line_len as usize], &mut toks);
        Frame {
            offset: self.offset,
            len: self.len as usize,
            line_len: self.line_len as usize,
            eol: self.eol,
            toks,
            payload: self.payload(),
            tag: self.tag,
        }
    }
}

/// Bytes that could not be framed, with the dialect at that point.
#[derive(Debug)]
pub struct DesyncEntry {
    pub info: DesyncInfo,
    pub service: Service,
    pub version: Option<u8>,
}

/// What the event side gets from one push, in stream order.
#[derive(Debug)]
pub enum Entry {
    Frame(FrameRef),
    /// The next frame's line as it was forwarded (its address rewritten).
    Rewritten(Box<str>),
    /// Bytes that could not be framed (forwarded all the same).
    Desync(Box<DesyncEntry>),
    /// An event the forwarding path made itself (redirects).
    Event(Box<Event<'static>>),
}

/// Frames and events of one push, with the bytes they refer to.
#[derive(Debug, Default)]
pub struct Batch {
    pub containers: SmallVec<[Bytes; 2]>,
    pub entries: Vec<Entry>,
    /// Bytes of read buffer kept alive beyond the containers' lengths (a container that is
    /// a slice of a larger read buffer keeps all of it).
    pub pinned: usize,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Memory the batch holds, for the backlog's byte bound.
    pub fn cost(&self) -> usize {
        let rewritten: usize = self
            .entries
            .iter()
            .map(|e| match e {
                Entry::Frame(_) => 0,
                Entry::Rewritten(r) => r.len(),
                Entry::Desync(d) => 64 + d.info.preview.capacity(),
                Entry::Event(_) => 256,
            })
            .sum();
        self.containers.iter().map(Bytes::len).sum::<usize>()
            + self.pinned
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + rewritten
            + 64
    }
    /// Events this batch turns into.
    pub fn events(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !matches!(e, Entry::Rewritten(_)))
            .count()
    }
}

/// Where a redirect target is routed: the address to write instead, or why there is none.
pub trait Router {
    fn route(
        &mut self,
        target: Service,
        address: &str,
        version: Option<u8>,
    ) -> Result<String, String>;
}

/// What a push needs besides the direction's own state.
pub struct Ctx<'a> {
    pub tables: &'a Tables,
    pub dialect: &'a mut Dialect,
    pub router: &'a mut dyn Router,
    pub budget: &'a Budget,
    pub conn: u64,
    pub ts: Ts,
    /// The size of the allocation behind the chunk pushed (at least its length).
    pub chunk_capacity: usize,
}

/// The result of one push.
#[derive(Debug, Default)]
pub struct Pushed {
    /// To write to the other side now, in order.
    pub out: Pieces,
    /// In stream order; several when a read holds many short frames.
    pub batches: SmallVec<[Batch; 1]>,
}

impl Pushed {
    pub fn out_len(&self) -> usize {
        self.out.iter().map(Bytes::len).sum()
    }
}

/// Forwarding and framing state of one direction.
#[derive(Debug)]
pub struct Direction {
    dir: Dir,
    limits: Limits,
    framer: Framer,
    /// Received bytes the framer has not consumed (they start at `framer.offset()`).
    buf: Vec<u8>,
    /// Budget drawn for `buf` beyond [`FREE_BUFFER`].
    drawn: usize,
    /// The received bytes not forwarded yet: always a suffix of the stream.
    held: Vec<u8>,
    /// Stream bytes received.
    recv: u64,
    /// Stream offset up to which bytes were handed out for forwarding.
    fwd: u64,
    commands: u64,
}

fn could_be_redirect(b: &[u8]) -> bool {
    let n = b.len().min(4);
    n > 0 && (b[..n] == b"XFR "[..n] || b[..n] == b"RNG "[..n])
}

/// Byte pieces written in order.
pub type Pieces = SmallVec<[Bytes; 3]>;

/// A rewrite of one frame: stream range and the bytes that replace it.
type Rewrite = (u64, u64, Bytes);

impl Direction {
    pub fn new(dir: Dir, limits: Limits) -> Direction {
        Direction {
            dir,
            limits,
            framer: Framer::new(limits),
            buf: Vec::new(),
            drawn: 0,
            held: Vec::new(),
            recv: 0,
            fwd: 0,
            commands: 0,
        }
    }

    pub fn received(&self) -> u64 {
        self.recv
    }
    /// Stream bytes handed out for forwarding so far.
    pub fn forwarded(&self) -> u64 {
        self.fwd
    }
    /// Bytes held back (a partial line that may become a redirect).
    pub fn held(&self) -> usize {
        self.held.len()
    }
    /// Bytes buffered for framing.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
    /// Complete command lines framed so far.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// Takes the next bytes received (`eof`: the sender closed after them). Returns what to
    /// forward and what the event side decodes.
    pub fn push(&mut self, chunk: &Bytes, eof: bool, ctx: &mut Ctx<'_>) -> Pushed {
        let recv0 = self.recv;
        self.recv += chunk.len() as u64;
        let mut batches = SmallVec::new();
        let mut batch = Batch::default();
        let mut rewrites: SmallVec<[Rewrite; 1]> = SmallVec::new();
        let mut ci = 0;

        // A frame that began in an earlier read: give it only the bytes it still needs, so
        // the rest of the chunk is framed in place without being copied.
        if !self.buf.is_empty() {
            loop {
                let k = self.wanted(&chunk[ci..], ctx);
                if !self.grow(k, ctx.budget) {
                    // Over the shared budget: give up on this frame (the framer resumes at
                    // the next command line); forwarding is not affected.
                    let dropped = std::mem::take(&mut self.buf);
                    self.framer.lost(&dropped, 0);
                    self.release(ctx.budget);
                    break;
                }
                self.buf.extend_from_slice(&chunk[ci..ci + k]);
                ci += k;
                let last = eof && ci == chunk.len();
                let buf = std::mem::take(&mut self.buf);
                let index = batch.containers.len() as u8;
                let (used, framed) =
                    self.frame_all(&buf, last, index, &mut batch, &mut rewrites, ctx);
                if batch.entries.len() >= MAX_ENTRIES {
                    batches.push(std::mem::take(&mut batch));
                }
                self.buf = buf;
                if used == self.buf.len() {
                    let b = std::mem::take(&mut self.buf);
                    self.release(ctx.budget);
                    if framed {
                        batch.containers.push(Bytes::from(b));
                    }
                    break;
                }
                if used > 0 {
                    if framed {
                        batch
                            .containers
                            .push(Bytes::copy_from_slice(&self.buf[..used]));
                    }
                    self.buf.drain(..used);
                }
                if ci == chunk.len() {
                    break;
                }
            }
        }
        while self.buf.is_empty() && ci < chunk.len() {
            let rest = &chunk[ci..];
            let index = batch.containers.len() as u8;
            let (used, framed) = self.frame_all(rest, eof, index, &mut batch, &mut rewrites, ctx);
            if framed {
                // A slice keeps the whole read buffer alive: copy a small part out.
                let cap = ctx.chunk_capacity.max(chunk.len());
                let part = if used * 4 >= cap {
                    batch.pinned += cap - used;
                    chunk.slice(ci..ci + used)
                } else {
                    Bytes::copy_from_slice(&rest[..used])
                };
                batch.containers.push(part);
            }
            ci += used;
            if batch.entries.len() >= MAX_ENTRIES {
                // A flood of short commands: hand the frames over in batches of a bounded
                // size rather than one list per read.
                batches.push(std::mem::take(&mut batch));
                continue;
            }
            let tail = &chunk[ci..];
            if !tail.is_empty() {
                if self.grow(tail.len(), ctx.budget) {
                    self.buf.extend_from_slice(tail);
                } else {
                    self.framer.lost(tail, 0);
                }
            }
            break;
        }
        if eof {
            if let Some(info) = self.framer.finish() {
                batch.entries.push(Entry::Desync(Box::new(DesyncEntry {
                    info,
                    service: ctx.dialect.service,
                    version: ctx.dialect.version,
                })));
            }
            self.release(ctx.budget);
            self.buf = Vec::new();
        }

        // Only a partial line at a line start that may still become XFR/RNG waits.
        let tail_start = self.recv - self.buf.len() as u64;
        let hold_from = if self.dir == Dir::S2c
            && !eof
            && !self.buf.is_empty()
            && tail_start >= self.fwd
            && self.buf.len() <= MAX_HOLD
            && could_be_redirect(&self.buf)
        {
            tail_start
        } else {
            self.recv
        };
        let mut out = Pieces::new();
        let mut at = self.fwd;
        for (a, b, rep) in rewrites {
            self.slice(at, a, chunk, recv0, &mut out);
            out.push(rep);
            at = b;
        }
        self.slice(at, hold_from, chunk, recv0, &mut out);
        let mut held = Pieces::new();
        self.slice(hold_from.max(at), self.recv, chunk, recv0, &mut held);
        self.held.clear();
        for h in held {
            self.held.extend_from_slice(&h);
        }
        self.fwd = hold_from.max(at);
        if self.held.is_empty() && self.held.capacity() > MAX_HOLD {
            self.held = Vec::new();
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        Pushed { out, batches }
    }

    /// Appends the stream's bytes `[x, y)` to `out`: held bytes first, then the chunk that
    /// starts at stream offset `recv0`.
    fn slice(&self, x: u64, y: u64, chunk: &Bytes, recv0: u64, out: &mut Pieces) {
        if x >= y {
            return;
        }
        if x < recv0 {
            let h0 = recv0 - self.held.len() as u64;
            let (a, b) = ((x - h0) as usize, (y.min(recv0) - h0) as usize);
            out.push(Bytes::copy_from_slice(&self.held[a..b]));
        }
        if y > recv0 {
            let (a, b) = ((x.max(recv0) - recv0) as usize, (y - recv0) as usize);
            out.push(chunk.slice(a..b));
        }
    }

    /// How many of `rest` to add to a partial frame: the rest of a payload whose line is
    /// in, otherwise up to and including the next line ending.
    fn wanted(&self, rest: &[u8], ctx: &Ctx<'_>) -> usize {
        let to_lf = || wire::find_lf(rest).map_or(rest.len(), |i| i + 1);
        if self.framer.resyncing() {
            return to_lf();
        }
        let buf = &self.buf;
        let window = &buf[..buf.len().min(self.limits.max_line + 2)];
        let Some(lf) = wire::find_lf(window) else {
            return to_lf();
        };
        let end = if lf > 0 && window[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        };
        let line = &window[..end];
        if !wire::is_command_line(line) {
            return to_lf();
        }
        let mut toks = Toks::new();
        wire::tokenize(line, &mut toks);
        let rules = FrameRules {
            tables: ctx.tables,
            dialect: ctx.dialect,
            dir: self.dir,
            limits: self.limits,
        };
        match rules.plan(line, &toks, &buf[lf + 1..], false) {
            Plan::Payload { len, .. } if len <= self.limits.max_payload as u64 => {
                let need = (lf as u64 + 1 + len).saturating_sub(buf.len() as u64);
                if need == 0 {
                    to_lf()
                } else {
                    need.min(rest.len() as u64) as usize
                }
            }
            _ => to_lf(),
        }
    }

    /// Makes room for `n` more buffered bytes; false when the shared budget is spent.
    fn grow(&mut self, n: usize, budget: &Budget) -> bool {
        let want = (self.buf.len() + n).saturating_sub(FREE_BUFFER);
        if want <= self.drawn {
            return true;
        }
        // Draw in steps so that a payload arriving in many reads does not hit the atomic
        // for each one.
        let step = (want - self.drawn).max(16 * 1024);
        if budget.try_take(step) {
            self.drawn += step;
            true
        } else if budget.try_take(want - self.drawn) {
            self.drawn = want;
            true
        } else {
            false
        }
    }

    fn release(&mut self, budget: &Budget) {
        if self.drawn > 0 {
            budget.give(self.drawn);
            self.drawn = 0;
        }
    }

    /// Frames as much of `work` as possible. Returns the bytes consumed and whether any
    /// entry refers to `work` (as container `index`).
    fn frame_all(
        &mut self,
        work: &[u8],
        eof: bool,
        index: u8,
        batch: &mut Batch,
        rewrites: &mut SmallVec<[Rewrite; 1]>,
        ctx: &mut Ctx<'_>,
    ) -> (usize, bool) {
        let mut pos = 0;
        let mut framed = false;
        loop {
            if batch.entries.len() >= MAX_ENTRIES {
                return (pos, framed);
            }
            let rules = FrameRules {
                tables: ctx.tables,
                dialect: ctx.dialect,
                dir: self.dir,
                limits: self.limits,
            };
            match self.framer.decode(&work[pos..], eof, &rules) {
                Item::NeedMore => return (pos, framed),
                Item::Skip(n) => pos += n,
                Item::Desync(info) => batch.entries.push(Entry::Desync(Box::new(DesyncEntry {
                    info,
                    service: ctx.dialect.service,
                    version: ctx.dialect.version,
                }))),
                Item::Frame(f) => {
                    let bytes = &work[pos..pos + f.len];
                    let decode_version = ctx.dialect.version;
                    let name = f.name(bytes);
                    ctx.dialect.update(
                        ctx.tables,
                        self.dir,
                        name,
                        &Args::of_line(f.line(bytes), &f.toks),
                    );
                    self.commands += 1;
                    let p = f.payload;
                    let flags = p.map_or(0, |p| {
                        HAS_PAYLOAD
                            | if p.guess { GUESS } else { 0 }
                            | if p.oversize { OVERSIZE } else { 0 }
                    });
                    let fr = FrameRef {
                        offset: f.offset,
                        declared: p.map_or(0, |p| p.declared),
                        start: pos as u32,
                        len: f.len as u32,
                        line_len: f.line_len as u32,
                        tag: f.tag,
                        payload_start: p.map_or(0, |p| p.start as u32),
                        payload_have: p.map_or(0, |p| p.have as u32),
                        container: index,
                        eol: f.eol,
                        flags,
                        decode_version,
                        service: ctx.dialect.service,
                        version: ctx.dialect.version,
                    };
                    let mut extra = None;
                    if self.dir == Dir::S2c && (name == b"XFR" || name == b"RNG") {
                        if let Some((line, ev)) =
                            self.redirect(&f, bytes, decode_version, rewrites, ctx)
                        {
                            if let Some(l) = line {
                                batch.entries.push(Entry::Rewritten(l));
                            }
                            extra = Some(ev);
                        }
                    }
                    batch.entries.push(Entry::Frame(fr));
                    if let Some(e) = extra {
                        batch.entries.push(Entry::Event(Box::new(e)));
                    }
                    framed = true;
                    pos += f.len;
                }
            }
        }
    }

    /// Rewrites the address of a redirect frame when it can; returns the line as forwarded
    /// (when rewritten) and the redirect event.
    fn redirect(
        &mut self,
        f: &Frame,
        bytes: &[u8],
        decode_version: Option<u8>,
        rewrites: &mut SmallVec<[Rewrite; 1]>,
        ctx: &mut Ctx<'_>,
    ) -> Option<(Option<Box<str>>, Event<'static>)> {
        // The tables say which argument is the address (the same decoding as the event's).
        let mut c = Command::blank();
        decode::command_into(
            &mut c,
            ctx.tables,
            self.dir,
            decode_version,
            self.limits,
            f,
            bytes,
        );
        let line = f.line(bytes);
        let name = f.name(bytes);
        let args = Args::of_line(line, &f.toks);
        let r = redirect::find(self.dir, name, &args, &c.address_args)?;
        let original = r.address_str();
        let tok = f.toks.get(r.arg + 1).copied()?;
        // A longer line is never rewritten, however it was split into reads: a partial
        // line is held back for at most MAX_HOLD bytes, so the result must not depend on
        // whether it arrived whole.
        let result = if f.offset < self.fwd || f.line_len > MAX_HOLD {
            Err(format!(
                "the line is longer than {MAX_HOLD} bytes, which is as much as is held back to rewrite it"
            ))
        } else if r.port().is_none()
            || r.host().is_empty()
            || !r.address.iter().all(u8::is_ascii_graphic)
        {
            // Bytes outside printable ASCII are no host name: the router would be handed
            // a lossy text of them, and the rewrite would no longer be the only change.
            Err(format!("{original} is not a HOST:PORT address"))
        } else {
            ctx.router.route(r.target, &original, ctx.dialect.version)
        };
        let mut forwarded = None;
        let kind = match result {
            Ok(to) => {
                let mut new_line = Vec::with_capacity(line.len() + to.len());
                new_line.extend_from_slice(&line[..tok.start as usize]);
                new_line.extend_from_slice(to.as_bytes());
                new_line.extend_from_slice(&line[tok.end as usize..]);
                let mut frame = new_line.clone();
                frame.extend_from_slice(&bytes[f.line_len..]);
                rewrites.push((f.offset, f.offset + f.len as u64, Bytes::from(frame)));
                forwarded = Some(String::from_utf8_lossy(&new_line).into());
                Redirect {
                    cmd: Cow::Owned(String::from_utf8_lossy(name).into_owned()),
                    target: r.target,
                    original: Cow::Owned(original),
                    rewritten: Some(Cow::Owned(to)),
                    problem: None,
                }
            }
            Err(why) => Redirect {
                cmd: Cow::Owned(String::from_utf8_lossy(name).into_owned()),
                target: r.target,
                original: Cow::Owned(original),
                rewritten: None,
                problem: Some(Cow::Owned(format!(
                    "{why}; forwarded unmodified: the client will leave the proxy"
                ))),
            },
        };
        let ev = Event::new(
            ctx.ts,
            ctx.conn,
            Some(self.dir),
            ctx.dialect.service,
            ctx.dialect.version,
            EventKind::Redirect(kind),
        );
        Some((forwarded, ev))
    }
}
