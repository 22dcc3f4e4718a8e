//! Connection tracking for offline captures: finds MSNP streams (port, content, addresses
//! learned from referrals), reassembles both directions, feeds one `Session` per
//! connection and emits its events. It never reads files and never parses MSNP itself
//! beyond spotting where a stream's first command line starts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::event::{Close, Connect, Dir, Event, EventKind, Message, Service, Ts};
use crate::protocol::session::Pending;
use crate::protocol::{Session, SessionHint, Tables};

use super::packet::Tcp;
use super::reasm::{Delivery, HalfStream};

/// Limits and choices of the flow tracker.
#[derive(Debug, Clone)]
pub struct FlowOptions {
    /// Server ports that always carry MSNP (1863 by default, plus `--port`).
    pub ports: Vec<u16>,
    /// Most connections tracked at once; the least recently active go first.
    pub max_flows: usize,
    /// Most bytes held out of order per direction before a hole is declared lost.
    pub max_held: usize,
    /// How far into a connection that is not on a known port or address MSNP is looked for.
    pub detect_window: usize,
}

impl FlowOptions {
    /// The defaults, with `extra` server ports watched besides 1863 and at most
    /// `max_flows` connections tracked (never fewer than 16).
    pub fn with(extra: &[u16], max_flows: usize) -> FlowOptions {
        let mut o = FlowOptions {
            max_flows: max_flows.max(16),
            ..FlowOptions::default()
        };
        for p in extra {
            if !o.ports.contains(p) {
                o.ports.push(*p);
            }
        }
        o
    }
}

impl Default for FlowOptions {
    fn default() -> Self {
        FlowOptions {
            ports: vec![1863],
            max_flows: 20_000,
            max_held: 1 << 20,
            detect_window: 4096,
        }
    }
}

/// Counters of one read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlowStats {
    pub tcp_segments: u64,
    pub msnp_connections: u64,
    pub other_connections: u64,
    pub evicted: u64,
}

type Key = (SocketAddr, SocketAddr);

/// A cheap multiplicative hasher for the flow table: keys are addresses seen in the
/// capture, and a skewed table only costs time (the table size is bounded anyway).
#[derive(Default, Clone, Copy)]
pub struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

fn key(a: SocketAddr, b: SocketAddr) -> Key {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Where a direction is before its first command line.
#[derive(Debug)]
enum Start {
    /// Bytes go straight to the session.
    Live,
    /// Looking for the first command line; `pre` holds the undecided bytes.
    Seeking { pre: Vec<u8>, skipped: u64 },
}

struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    half: [HalfStream; 2],
    start: [Start; 2],
    /// Some once the connection is known to carry MSNP.
    session: Option<Session>,
    hint: SessionHint,
    first_ts: Ts,
    last_seen: u64,
    bytes: [u64; 2],
    closed_by: Option<(Dir, &'static str)>,
    /// Known to be MSNP before any byte (port, learned address).
    expected: bool,
    /// The first command line may be anywhere (no SYN, a gap, or a bad first line).
    anywhere: [bool; 2],
}

/// Tracks every TCP connection of a capture.
pub struct FlowTable {
    tables: Arc<Tables>,
    opts: FlowOptions,
    flows: HashMap<Key, Flow, FastHash>,
    /// Recently closed or rejected connections: their stray packets are ignored.
    dead: HashSet<Key, FastHash>,
    dead_order: VecDeque<Key>,
    /// Server addresses handed out by XFR/RNG: address -> (service, version).
    learned: HashMap<String, (Service, Option<u8>)>,
    next_conn: u64,
    clock: u64,
    last_ts: Ts,
    pub stats: FlowStats,
    evs: Vec<Event<'static>>,
    /// The connection of the last segment handled (for [`FlowTable::last_pending`]), its
    /// direction and payload length.
    last: Option<Key>,
    last_seg: (Dir, usize),
}

/// What a connection holds that has not yet become events, per direction (c2s, s2c).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowPending {
    pub conn: u64,
    /// Direction and payload length of the segment just handled.
    pub dir: Dir,
    pub payload: usize,
    /// Bytes in the decoder's buffer, and the command waiting for its payload, if any.
    pub decoder: [Pending; 2],
    /// Bytes held out of order by TCP reassembly (waiting for a hole to fill).
    pub out_of_order: [usize; 2],
    /// Bytes held before the first command line was found.
    pub seeking: [usize; 2],
}

const MAX_DEAD: usize = 8192;
const MAX_LEARNED: usize = 4096;

/// Does `b` start with a plausible MSNP command line? A known command name, then a space
/// or the line end, and a CRLF-terminated printable line. None: more bytes needed.
fn plausible_line(b: &[u8], tables: &Tables) -> Option<bool> {
    if b.len() < 4 {
        let ok = b.iter().all(u8::is_ascii_uppercase);
        return if ok { None } else { Some(false) };
    }
    if !b[..3].iter().all(u8::is_ascii_uppercase)
        || !matches!(b[3], b' ' | b'\r')
        || !tables.is_known(&b[..3])
    {
        return Some(false);
    }
    let window = &b[..b.len().min(2048)];
    match window.iter().position(|&c| c == b'\n') {
        None if window.len() == 2048 => Some(false),
        None => {
            if window
                .iter()
                .all(|&c| c == b'\r' || (0x20..0x7f).contains(&c))
            {
                None
            } else {
                Some(false)
            }
        }
        // An HTTP request line ("GET / HTTP/1.1") is not MSNP even if its verb is a command.
        Some(lf) => Some(
            lf >= 4
                && window[lf - 1] == b'\r'
                && window[..lf - 1].iter().all(|&c| (0x20..0x7f).contains(&c))
                && !window[..lf - 1].windows(6).any(|w| w == b" HTTP/"),
        ),
    }
}

enum Found {
    At(usize),
    /// Not yet; bytes before this index can be dropped.
    More(usize),
    No,
}

/// Looks for the first command line: at offset 0 only (`anywhere` false) or at any line start.
fn find_start(buf: &[u8], anywhere: bool, tables: &Tables) -> Found {
    let mut cand = 0usize;
    loop {
        match plausible_line(&buf[cand..], tables) {
            Some(true) => return Found::At(cand),
            None => return Found::More(cand),
            Some(false) if !anywhere => return Found::No,
            Some(false) => {}
        }
        match buf[cand..].iter().position(|&c| c == b'\n') {
            Some(lf) => cand += lf + 1,
            None => return Found::More(buf.len()),
        }
    }
}

impl FlowTable {
    pub fn new(tables: Arc<Tables>, opts: FlowOptions, first_conn: u64) -> FlowTable {
        FlowTable {
            tables,
            opts,
            flows: HashMap::default(),
            dead: HashSet::default(),
            dead_order: VecDeque::new(),
            learned: HashMap::new(),
            next_conn: first_conn,
            clock: 0,
            last_ts: Ts(0),
            stats: FlowStats::default(),
            evs: Vec::new(),
            last: None,
            last_seg: (Dir::C2s, 0),
        }
    }

    /// The connection id the next MSNP connection will get.
    pub fn next_conn(&self) -> u64 {
        self.next_conn
    }

    /// What the MSNP connection of the last segment handled still holds; None when that
    /// segment was not MSNP or its connection is closed.
    pub fn last_pending(&self) -> Option<FlowPending> {
        let f = self.flows.get(&self.last?)?;
        let s = f.session.as_ref()?;
        let seeking = |d: usize| match &f.start[d] {
            Start::Seeking { pre, .. } => pre.len(),
            Start::Live => 0,
        };
        Some(FlowPending {
            conn: s.conn(),
            dir: self.last_seg.0,
            payload: self.last_seg.1,
            decoder: [s.pending(Dir::C2s), s.pending(Dir::S2c)],
            out_of_order: [f.half[0].held(), f.half[1].held()],
            seeking: [seeking(0), seeking(1)],
        })
    }

    /// Connections currently tracked.
    pub fn tracked(&self) -> usize {
        self.flows.len()
    }

    fn is_server_port(&self, p: u16) -> bool {
        self.opts.ports.contains(&p)
    }

    fn learned_hint(&self, server: SocketAddr) -> Option<(Service, Option<u8>)> {
        self.learned.get(&server.to_string()).copied()
    }

    fn kill(&mut self, k: Key) {
        if self.dead.insert(k) {
            self.dead_order.push_back(k);
            if self.dead_order.len() > MAX_DEAD {
                if let Some(old) = self.dead_order.pop_front() {
                    self.dead.remove(&old);
                }
            }
        }
    }

    /// One TCP segment from `src` to `dst`.
    pub fn segment(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        tcp: &Tcp<'_>,
        ts: Ts,
        sink: &mut Sink<'_>,
    ) -> std::io::Result<()> {
        self.stats.tcp_segments += 1;
        self.clock += 1;
        self.last_ts = ts;
        let k = key(src, dst);
        self.last = Some(k);
        let opening = tcp.syn && !tcp.ack_flag;
        if self.dead.contains(&k) {
            if !opening {
                return Ok(());
            }
            self.dead.remove(&k);
        }
        if !self.flows.contains_key(&k) {
            if tcp.rst || (!tcp.syn && tcp.payload.is_empty()) {
                return Ok(());
            }
            if self.flows.len() >= self.opts.max_flows {
                self.evict(ts, sink)?;
            }
            let flow = self.new_flow(src, dst, tcp, ts);
            let expected = flow.expected;
            self.flows.insert(k, flow);
            if expected {
                let mut evs = std::mem::take(&mut self.evs);
                self.open_session(k, ts, &mut evs);
                self.evs = evs;
            }
        }
        let tables = self.tables.clone();
        let max_held = self.opts.max_held;
        let window = self.opts.detect_window;
        let Some(flow) = self.flows.get_mut(&k) else {
            return Ok(());
        };
        flow.last_seen = self.clock;
        let dir = if src == flow.client {
            Dir::C2s
        } else {
            Dir::S2c
        };
        let d = dir.index();
        self.last_seg = (dir, tcp.payload.len());
        let mut evs = std::mem::take(&mut self.evs);
        let mut rejected = false;
        let mut opened = false;
        if tcp.syn {
            flow.half[d].on_syn(tcp.seq);
        }
        if tcp.ack_flag {
            let o = dir.flip().index();
            let (half, mut ctx) = split(flow, o);
            half.on_peer_ack(tcp.ack, &mut |x| {
                ctx.take(
                    dir.flip(),
                    x,
                    ts,
                    &tables,
                    window,
                    &mut evs,
                    &mut rejected,
                    &mut opened,
                )
            });
        }
        if !tcp.payload.is_empty() || tcp.fin {
            let seq = if tcp.syn {
                tcp.seq.wrapping_add(1)
            } else {
                tcp.seq
            };
            let (half, mut ctx) = split(flow, d);
            half.on_segment(seq, tcp.payload, tcp.fin, max_held, &mut |x| {
                ctx.take(
                    dir,
                    x,
                    ts,
                    &tables,
                    window,
                    &mut evs,
                    &mut rejected,
                    &mut opened,
                )
            });
        }
        if opened {
            self.open_session(k, ts, &mut evs);
            // Replay what was held while deciding.
            if let Some(flow) = self.flows.get_mut(&k) {
                for dd in [Dir::C2s, Dir::S2c] {
                    replay(flow, dd, ts, &tables, &mut evs);
                }
            }
        }
        let mut close = false;
        if let Some(flow) = self.flows.get_mut(&k) {
            if tcp.rst {
                flow.closed_by.get_or_insert((dir, "RST"));
                close = true;
            } else {
                if tcp.fin {
                    flow.closed_by.get_or_insert((dir, "FIN"));
                }
                for dd in [Dir::C2s, Dir::S2c] {
                    if flow.half[dd.index()].done() {
                        if let Some(s) = flow.session.as_mut() {
                            s.finish_dir(dd, ts, &mut keep(&mut evs));
                        }
                    }
                }
                close = flow.half[0].done() && flow.half[1].done();
            }
        }
        self.learn(&evs);
        for mut ev in evs.drain(..) {
            sink(&mut ev)?;
        }
        self.evs = evs;
        if rejected {
            if let Some(f) = self.flows.remove(&k) {
                if f.session.is_none() {
                    self.stats.other_connections += 1;
                }
            }
            self.kill(k);
        } else if close {
            let reason = if tcp.rst { "RST" } else { "FIN" };
            self.close(k, ts, reason, sink)?;
        }
        Ok(())
    }

    fn new_flow(&mut self, src: SocketAddr, dst: SocketAddr, tcp: &Tcp<'_>, ts: Ts) -> Flow {
        // Orientation: the SYN's sender is the client; otherwise the side on a known
        // MSNP port or learned address is the server; otherwise the lower port.
        let (client, server) = if tcp.syn {
            if tcp.ack_flag {
                (dst, src)
            } else {
                (src, dst)
            }
        } else {
            let srv =
                |a: SocketAddr| self.is_server_port(a.port()) || self.learned_hint(a).is_some();
            let src_is_server = if srv(dst) != srv(src) {
                srv(src)
            } else {
                src.port() < dst.port()
            };
            if src_is_server {
                (dst, src)
            } else {
                (src, dst)
            }
        };
        let learned = self.learned_hint(server);
        let expected = self.is_server_port(server.port()) || learned.is_some();
        let hint = match learned {
            Some((svc, v)) => SessionHint {
                service: Some(svc),
                version: if svc == Service::Sb { v } else { None },
            },
            None => SessionHint::default(),
        };
        let seeking = || Start::Seeking {
            pre: Vec::new(),
            skipped: 0,
        };
        Flow {
            client,
            server,
            half: Default::default(),
            start: [seeking(), seeking()],
            session: None,
            hint,
            first_ts: ts,
            last_seen: self.clock,
            bytes: [0, 0],
            closed_by: None,
            expected,
            anywhere: [false, false],
        }
    }

    fn open_session(&mut self, k: Key, ts: Ts, evs: &mut Vec<Event<'static>>) {
        let Some(flow) = self.flows.get_mut(&k) else {
            return;
        };
        if flow.session.is_some() {
            return;
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        self.stats.msnp_connections += 1;
        let s = Session::new(self.tables.clone(), conn, flow.hint);
        let detail = match (flow.expected, flow.hint.service) {
            (true, Some(svc)) => format!(
                "{} address learned from a referral earlier in the capture",
                svc
            ),
            (true, None) => format!("MSNP port {}", flow.server.port()),
            (false, _) => "MSNP command line seen on a port not otherwise watched".to_string(),
        };
        let ev = s
            .event(
                flow.first_ts.min(ts),
                None,
                EventKind::Connect(Connect {
                    client: Some(flow.client.to_string().into()),
                    server: Some(flow.server.to_string().into()),
                    detail: Some(detail.into()),
                }),
            )
            .into_owned();
        evs.push(ev);
        flow.session = Some(s);
    }

    /// Remembers server addresses from XFR/RNG so later connections to them are decoded.
    fn learn(&mut self, evs: &[Event<'static>]) {
        for ev in evs {
            let Some(c) = ev.command() else { continue };
            if let Some((target, address, _)) = crate::protocol::redirect::of_command(ev.dir, c) {
                if self.learned.len() >= MAX_LEARNED {
                    self.learned.clear();
                }
                let v = ev.version.map(|v| v.0);
                self.learned.insert(address, (target, v));
            }
        }
    }

    fn close(&mut self, k: Key, ts: Ts, reason: &str, sink: &mut Sink<'_>) -> std::io::Result<()> {
        let Some(mut flow) = self.flows.remove(&k) else {
            return Ok(());
        };
        self.kill(k);
        let mut evs = std::mem::take(&mut self.evs);
        // Give up on holes: held data is decoded with gaps.
        for dd in [Dir::C2s, Dir::S2c] {
            let (half, mut ctx) = split(&mut flow, dd.index());
            let tables = self.tables.clone();
            let mut rejected = false;
            let mut opened = false;
            half.flush(&mut |x| {
                ctx.take(
                    dd,
                    x,
                    ts,
                    &tables,
                    usize::MAX,
                    &mut evs,
                    &mut rejected,
                    &mut opened,
                )
            });
        }
        match flow.session.as_mut() {
            Some(s) => {
                for dd in [Dir::C2s, Dir::S2c] {
                    if let Start::Seeking { skipped, pre } = &flow.start[dd.index()] {
                        let n = *skipped + pre.len() as u64;
                        if n > 0 {
                            evs.push(s.event(
                                ts,
                                Some(dd),
                                EventKind::Note(Message {
                                    message: format!("no command line found in the {n} bytes captured in this direction").into(),
                                }),
                            ));
                        }
                    }
                }
                s.finish(ts, &mut keep(&mut evs));
                let by = flow
                    .closed_by
                    .map(|(d, _)| if d == Dir::C2s { "client" } else { "server" }.to_string());
                let why = match flow.closed_by {
                    Some((_, r)) if reason != "end of capture" && reason != "evicted" => {
                        r.to_string()
                    }
                    _ => reason.to_string(),
                };
                let (client_end, server_end) = ends(flow.closed_by, reason);
                evs.push(s.event(
                    ts,
                    None,
                    EventKind::Close(Close {
                        by: by.map(Into::into),
                        reason: Some(why.into()),
                        bytes_c2s: flow.bytes[0],
                        bytes_s2c: flow.bytes[1],
                        client_end,
                        server_end,
                        ..Close::default()
                    }),
                ));
            }
            None => self.stats.other_connections += 1,
        }
        self.learn(&evs);
        for mut ev in evs.drain(..) {
            sink(&mut ev)?;
        }
        self.evs = evs;
        Ok(())
    }

    fn evict(&mut self, ts: Ts, sink: &mut Sink<'_>) -> std::io::Result<()> {
        let mut ages: Vec<(u64, Key)> = self.flows.iter().map(|(k, f)| (f.last_seen, *k)).collect();
        ages.sort_unstable();
        let n = (ages.len() / 8).max(1);
        for (_, k) in ages.into_iter().take(n) {
            self.stats.evicted += 1;
            self.close(k, ts, "evicted", sink)?;
        }
        Ok(())
    }

    /// End of the capture: every open connection is decoded to its end and closed.
    pub fn finish(&mut self, sink: &mut Sink<'_>) -> std::io::Result<()> {
        let mut keys: Vec<(u64, Key)> = self
            .flows
            .iter()
            .map(|(k, f)| (f.session.as_ref().map_or(u64::MAX, |s| s.conn()), *k))
            .collect();
        keys.sort_unstable();
        let ts = self.last_ts;
        for (_, k) in keys {
            self.close(k, ts, "end of capture", sink)?;
        }
        Ok(())
    }
}

/// The parts of a flow a delivery callback needs, borrowed apart from one half-stream.
struct Ctx<'a> {
    start: &'a mut [Start; 2],
    session: &'a mut Option<Session>,
    bytes: &'a mut [u64; 2],
    anywhere: &'a mut [bool; 2],
    expected: bool,
}

fn split(flow: &mut Flow, d: usize) -> (&mut HalfStream, Ctx<'_>) {
    for (i, h) in flow.half.iter().enumerate() {
        if h.started() && !h.syn {
            flow.anywhere[i] = true;
        }
    }
    let [h0, h1] = &mut flow.half;
    let half = if d == 0 { h0 } else { h1 };
    (
        half,
        Ctx {
            start: &mut flow.start,
            session: &mut flow.session,
            bytes: &mut flow.bytes,
            anywhere: &mut flow.anywhere,
            expected: flow.expected,
        },
    )
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        dir: Dir,
        x: Delivery<'_>,
        ts: Ts,
        tables: &Tables,
        window: usize,
        evs: &mut Vec<Event<'static>>,
        rejected: &mut bool,
        opened: &mut bool,
    ) {
        let d = dir.index();
        match x {
            Delivery::Data(b) => {
                self.bytes[d] += b.len() as u64;
                match &mut self.start[d] {
                    Start::Live => {
                        if let Some(s) = self.session.as_mut() {
                            s.feed(dir, b, ts, &mut keep(evs));
                        }
                    }
                    Start::Seeking { pre, .. } => {
                        pre.extend_from_slice(b);
                        self.seek(dir, ts, tables, window, evs, rejected, opened);
                    }
                }
            }
            Delivery::Gap { len, .. } => match &mut self.start[d] {
                Start::Live => {
                    if let Some(s) = self.session.as_mut() {
                        s.gap(dir, len, ts, &mut keep(evs));
                    }
                }
                Start::Seeking { pre, skipped } => {
                    *skipped += pre.len() as u64 + len;
                    pre.clear();
                    self.anywhere[d] = true;
                }
            },
            Delivery::Conflict { offset, len } => {
                if let Some(s) = self.session.as_mut() {
                    evs.push(s.event(
                        ts,
                        Some(dir),
                        EventKind::Note(Message {
                            message: format!(
                                "TCP overlap: {len} bytes at stream offset {offset} differ from the copy received first; kept the first"
                            ).into(),
                        }),
                    ));
                }
            }
        }
    }
}

impl Ctx<'_> {
    /// Looks for the first command line in the held bytes of a seeking direction.
    #[allow(clippy::too_many_arguments)]
    fn seek(
        &mut self,
        dir: Dir,
        ts: Ts,
        tables: &Tables,
        window: usize,
        evs: &mut Vec<Event<'static>>,
        rejected: &mut bool,
        opened: &mut bool,
    ) {
        let d = dir.index();
        loop {
            let Start::Seeking { pre, skipped } = &mut self.start[d] else {
                return;
            };
            // A stream opened by a SYN must start with a command; one picked up mid-way
            // may start at any line.
            match find_start(pre, self.anywhere[d], tables) {
                Found::At(pos) => {
                    let skip = pos as u64 + *skipped;
                    let rest = pre.split_off(pos);
                    if self.session.is_none() {
                        // The session is created by the caller, which then replays this.
                        *opened = true;
                        self.start[d] = Start::Seeking {
                            pre: rest,
                            skipped: skip,
                        };
                        return;
                    }
                    self.start[d] = Start::Live;
                    if let Some(s) = self.session.as_mut() {
                        if skip > 0 {
                            evs.push(mid_note(s, dir, skip, ts));
                        }
                        s.feed(dir, &rest, ts, &mut keep(evs));
                    }
                    return;
                }
                Found::More(drop) => {
                    *skipped += drop as u64;
                    pre.drain(..drop);
                    if pre.len() > 4096 {
                        // A line longer than any command: skip it.
                        *skipped += pre.len() as u64;
                        pre.clear();
                    }
                    if !self.expected
                        && self.session.is_none()
                        && (*skipped as usize + pre.len()) > window
                    {
                        *rejected = true;
                    }
                    return;
                }
                Found::No => {
                    if !self.expected && self.session.is_none() {
                        *rejected = true;
                        return;
                    }
                    // Known MSNP that does not start with a command: look further on.
                    self.anywhere[d] = true;
                }
            }
        }
    }
}

fn mid_note(s: &Session, dir: Dir, skip: u64, ts: Ts) -> Event<'static> {
    s.event(
        ts,
        Some(dir),
        EventKind::Note(Message {
            message: format!(
                "stream picked up mid-way: skipped {skip} bytes to the first command line; offsets count from there"
            ).into(),
        }),
    )
}

/// Where a session's events are kept until the flow table has learned from them.
fn keep<'v>(evs: &'v mut Vec<Event<'static>>) -> impl FnMut(&mut Event<'_>) + 'v {
    |e: &mut Event<'_>| evs.push(e.clone().into_owned())
}

/// How each side ended, from who closed first and how the connection was closed.
fn ends(
    closed_by: Option<(Dir, &'static str)>,
    reason: &str,
) -> (Option<crate::event::Ending>, Option<crate::event::Ending>) {
    use crate::event::Ending;
    let how = |r: &str| {
        if r == "RST" {
            Ending::Reset
        } else {
            Ending::Fin
        }
    };
    match closed_by {
        Some((Dir::C2s, r)) => (Some(how(r)), None),
        Some((Dir::S2c, r)) => (None, Some(how(r))),
        None if reason == "end of capture" || reason == "evicted" => {
            (Some(Ending::Open), Some(Ending::Open))
        }
        None => (None, None),
    }
}

/// Where the flow table hands events.
pub type Sink<'s> = dyn FnMut(&mut Event<'_>) -> std::io::Result<()> + 's;

/// Feeds a direction's held bytes once its session exists.
fn replay(flow: &mut Flow, dir: Dir, ts: Ts, tables: &Tables, evs: &mut Vec<Event<'static>>) {
    let d = dir.index();
    let Start::Seeking { pre, skipped } = &mut flow.start[d] else {
        return;
    };
    let anywhere = flow.anywhere[d] || (flow.half[d].started() && !flow.half[d].syn);
    let Some(s) = flow.session.as_mut() else {
        return;
    };
    match find_start(pre, anywhere, tables) {
        Found::At(pos) => {
            let skip = *skipped + pos as u64;
            let rest = pre.split_off(pos);
            flow.start[d] = Start::Live;
            if skip > 0 {
                evs.push(mid_note(s, dir, skip, ts));
            }
            s.feed(dir, &rest, ts, &mut keep(evs));
        }
        Found::More(drop) => {
            *skipped += drop as u64;
            pre.drain(..drop);
        }
        Found::No => {
            // The session exists (the other side proved MSNP): search further on.
            flow.anywhere[d] = true;
            replay(flow, dir, ts, tables, evs);
        }
    }
}
