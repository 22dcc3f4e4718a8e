//! The sans-IO connection tracker: fed captured frames (link type, timestamp, bytes), it
//! parses link/IP/TCP, defragments, reassembles both directions of every TCP connection,
//! decides which connections carry MSNP (port, address learned from a referral, or
//! content) and hands out [`StreamEvent`]s: connections opened and closed, ordered stream
//! bytes, gaps and notes. It never reads files, never decodes MSNP beyond finding the first
//! command line of a stream, and knows nothing of sessions or decoded events: the consumer
//! tells it about referrals with [`Tracker::expect`].
//!
//! Memory: every byte held (out of order, waiting for a stream's start, before the first
//! command line) counts against one budget shared by all connections; past it the
//! connection holding most gives up waiting for its holes first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::event::{Dir, Service, Ts};
use crate::http::detect::{self, Detection, MsnHttp};
use crate::protocol::Tables;

use super::packet::{self, Defrag, Tcp};
use super::reasm::{Delivery, Early, HalfStream};

/// Id of a connection the tracker opened as MSNP: numbered from
/// [`FlowOptions::first_id`](FlowOptions) in the order they were opened.
pub type FlowId = u64;

/// The run's connection numbers, shared by the tracker (TCP connections) and the decoder
/// (HTTP gateway sessions, which are connections of their own): one sequence, no clashes.
#[derive(Debug, Clone)]
pub struct ConnIds(Arc<AtomicU64>);

impl ConnIds {
    pub fn new(first: FlowId) -> ConnIds {
        ConnIds(Arc::new(AtomicU64::new(first)))
    }
    /// Hands out the next id.
    pub fn next(&self) -> FlowId {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
    /// The id the next call to [`ConnIds::next`] returns.
    pub fn peek(&self) -> FlowId {
        self.0.load(Ordering::Relaxed)
    }
}

/// Limits and choices of the tracker.
#[derive(Debug, Clone)]
pub struct FlowOptions {
    /// Server ports that always carry MSNP (1863 by default, plus `--port`).
    pub ports: Vec<u16>,
    /// Most connections tracked at once; the least recently active go first.
    pub max_flows: usize,
    /// Bytes all connections together may hold (out of order, waiting for a stream's
    /// start, before the first command line); past it the connection holding most gives
    /// up waiting for its missing bytes.
    pub max_buffer: usize,
    /// Packets (of the whole capture) a hole the peer acknowledged may stay open before
    /// it is declared lost, and that a connection seen without its handshake waits for it
    /// before being taken up mid-stream. Reordering within this window changes nothing.
    pub reorder_window: u64,
    /// How far into a connection that is not on a known port or address MSNP is looked for.
    pub detect_window: usize,
}

/// Default of [`FlowOptions::max_buffer`]: 256 MiB.
pub const DEFAULT_MAX_BUFFER: usize = 256 << 20;

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
            max_buffer: DEFAULT_MAX_BUFFER,
            reorder_window: 32,
            detect_window: 4096,
        }
    }
}

/// Counters of one run of the tracker.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlowStats {
    pub tcp_segments: u64,
    pub msnp_connections: u64,
    /// Connections opened as MSN HTTP ([`OpenReason::Http`]).
    pub http_connections: u64,
    pub other_connections: u64,
    pub evicted: u64,
    /// Times a connection gave up waiting for missing bytes because of the budget.
    pub over_budget: u64,
    /// Frames that carried no IPv4/IPv6 TCP (ARP, UDP, ...).
    pub skipped_frames: u64,
}

/// Why a connection was taken as MSNP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenReason {
    /// Its server port is watched.
    Port(u16),
    /// Its server address was handed out by a referral earlier in the capture.
    Referral {
        service: Service,
        version: Option<u8>,
    },
    /// An MSNP command line was found in its first bytes.
    Content,
    /// Its first bytes are MSN's HTTP side (gateway, Passport, SSO, SOAP), on any port:
    /// its stream events carry HTTP, not MSNP.
    Http(MsnHttp),
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both directions closed by FIN, every byte before them delivered.
    Fin,
    Rst,
    EndOfCapture,
    /// Closed to make room for newer connections (`max_flows`).
    Evicted,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Fin => "FIN",
            CloseReason::Rst => "RST",
            CloseReason::EndOfCapture => "end of capture",
            CloseReason::Evicted => "evicted",
        }
    }
}

/// Something about a stream worth telling the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// A later copy of `len` bytes at stream offset `offset` differed from the first.
    Overlap { offset: u64, len: u64 },
    /// The stream was picked up at its first command line, `skipped` bytes in.
    MidStream { skipped: u64 },
    /// The connection closed before a command line was found in this direction.
    NoCommandLine { bytes: u64 },
    /// The budget ran out: this direction stopped waiting for missing bytes while it held
    /// `held` bytes after them.
    OverBudget { held: usize },
}

impl fmt::Display for NoteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NoteKind::Overlap { offset, len } => write!(
                f,
                "TCP overlap: {len} bytes at stream offset {offset} differ from the copy received first; kept the first"
            ),
            NoteKind::MidStream { skipped } => write!(
                f,
                "stream picked up mid-way: skipped {skipped} bytes to the first command line; offsets count from there"
            ),
            NoteKind::NoCommandLine { bytes } => write!(
                f,
                "no command line found in the {bytes} bytes captured in this direction"
            ),
            NoteKind::OverBudget { held } => write!(
                f,
                "memory budget (--max-buffer) exhausted: stopped waiting for missing bytes with {held} bytes held after them"
            ),
        }
    }
}

/// What the tracker hands to its consumer. Events of one connection come in stream
/// order per direction; `Open` first, `Close` last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    Open {
        flow: FlowId,
        client: SocketAddr,
        server: SocketAddr,
        /// Time of the connection's first packet.
        ts: Ts,
        why: OpenReason,
    },
    /// The next bytes of one direction (borrowed from the packet when it came in order).
    Data {
        flow: FlowId,
        dir: Dir,
        ts: Ts,
        bytes: &'a [u8],
    },
    /// `len` bytes of one direction are missing.
    Gap {
        flow: FlowId,
        dir: Dir,
        ts: Ts,
        len: u64,
    },
    Note {
        flow: FlowId,
        dir: Dir,
        ts: Ts,
        note: NoteKind,
    },
    /// One direction was closed by a FIN and every byte before it was delivered.
    End { flow: FlowId, dir: Dir, ts: Ts },
    Close {
        flow: FlowId,
        ts: Ts,
        /// The side whose FIN or RST came first, if any.
        by: Option<Dir>,
        how: CloseReason,
        /// Stream bytes delivered per direction (c2s, s2c), gaps excluded.
        bytes: [u64; 2],
    },
}

/// What the connection of the last packet holds, for per-packet annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    pub flow: FlowId,
    /// Direction and TCP payload length of the packet.
    pub dir: Dir,
    pub payload: usize,
    /// Bytes held by reassembly per direction (c2s, s2c): out of order, or waiting for
    /// the stream's start.
    pub out_of_order: [usize; 2],
    /// Bytes held before the first command line, per direction.
    pub seeking: [usize; 2],
}

/// A connection's two endpoints, smaller first, as a hash key of fixed layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    a: u128,
    b: u128,
    ports: u32,
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)) | (1 << 127),
        IpAddr::V6(v) => u128::from(v),
    }
}

impl Key {
    fn new(x: SocketAddr, y: SocketAddr) -> Key {
        let (x, y) = ((bits(x.ip()), x.port()), (bits(y.ip()), y.port()));
        let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
        Key {
            a: lo.0,
            b: hi.0,
            ports: (u32::from(lo.1) << 16) | u32::from(hi.1),
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // Hashing costs per word: two IPv4 addresses and the ports fit in 12 bytes.
        if self.a >> 127 == 1 && self.b >> 127 == 1 {
            h.write_u64((self.a as u64) << 32 | (self.b as u64 & 0xffff_ffff));
        } else {
            h.write_u128(self.a);
            h.write_u128(self.b);
        }
        h.write_u32(self.ports);
    }
}

/// The flow table's hasher: seeded at random per process, since the keys come from the
/// capture (foldhash: a fraction of SipHash's cost per packet, and a crafted capture cannot
/// learn the seed it would need to make its connections collide).
type Hasher_ = foldhash::quality::RandomState;

/// Where a direction is before its first command line.
#[derive(Debug)]
enum Start {
    /// Bytes go straight to the consumer.
    Live,
    /// Looking for the first command line; `pre` holds the undecided bytes.
    Seeking { pre: Vec<u8>, skipped: u64 },
}

impl Start {
    fn seeking() -> Start {
        Start::Seeking {
            pre: Vec::new(),
            skipped: 0,
        }
    }
    fn held(&self) -> usize {
        match self {
            Start::Live => 0,
            Start::Seeking { pre, .. } => pre.capacity(),
        }
    }
}

/// Everything of a connection but its two reassemblers.
struct State {
    key: Key,
    client: SocketAddr,
    server: SocketAddr,
    start: [Start; 2],
    /// Some once the connection is known to carry MSNP.
    id: Option<FlowId>,
    /// Known to be MSNP before any byte (port, learned address), and why.
    expected: Option<OpenReason>,
    /// The client was told by a SYN or SYN/ACK.
    oriented: bool,
    client_isn: Option<u32>,
    first_ts: Ts,
    last_seen: u64,
    bytes: [u64; 2],
    closed_by: Option<Dir>,
    /// Per direction: the sequence number of its FIN and the acknowledgement number the
    /// FIN carried (which side closed first, whatever order the file has them in).
    fins: [Option<(u32, Option<u32>)>; 2],
    /// Per direction, in the file's order: segments waiting for the other direction's
    /// bytes they acknowledge (at most `PARK_WINDOW` packets), and the bytes they hold.
    parked: [VecDeque<Parked>; 2],
    parked_bytes: usize,
    /// The first command line may be anywhere (picked up mid-way, a gap, a bad first line).
    anywhere: [bool; 2],
    ended: [bool; 2],
    /// An RST came (packet number, time): closed once the bytes sent before it are in,
    /// or a reorder window later.
    reset: Option<(u64, Ts)>,
    /// Not MSNP after all: to be dropped after this packet.
    rejected: bool,
    /// What this connection counts against the budget.
    held: usize,
    /// Unique among all connections of the run (slots are reused).
    serial: u64,
    /// When its timer is due (packet number), if it has one.
    timer: Option<u64>,
}

/// A segment held back: it acknowledges bytes of the other direction that are not
/// delivered yet, so it was sent after them even though the file has it first.
struct Parked {
    seq: u32,
    data: Vec<u8>,
    fin: bool,
    ts: Ts,
    pkt: u64,
    ack: u32,
}

struct Flow {
    half: [HalfStream; 2],
    st: State,
}

/// What a connection counts against the budget.
fn cost(half: &[HalfStream; 2], st: &State) -> usize {
    half[0].held() + half[1].held() + st.start[0].held() + st.start[1].held() + st.parked_bytes
}

/// Tracker-wide parts a delivery needs, borrowed apart from the flow table.
struct Ctx<'t> {
    tables: &'t Tables,
    detect_window: usize,
    ids: &'t ConnIds,
    stats: &'t mut FlowStats,
    out: &'t mut dyn FnMut(StreamEvent<'_>),
}

/// The context of one call into a connection, borrowed field by field from the tracker
/// (so the connection's own slot can be borrowed beside it), with the detection window
/// of the options or the one given.
macro_rules! ctx {
    ($t:ident, $out:ident) => {
        ctx!($t, $out, $t.opts.detect_window)
    };
    ($t:ident, $out:ident, $window:expr) => {
        Ctx {
            tables: &$t.tables,
            detect_window: $window,
            ids: &$t.ids,
            stats: &mut $t.stats,
            out: &mut *$out,
        }
    };
}

const MAX_DEAD: usize = 8192;
/// Packets a segment waits for the other direction's bytes it acknowledges. Two
/// directions' packets written out of order are a few packets apart; bytes lost in the
/// capture never come, and the segment should not wait long for them (its events would
/// come after much that was sent later).
const PARK_WINDOW: u64 = 8;
const MAX_LEARNED: usize = 4096;
/// Longest line searched for a command before it is skipped whole.
const MAX_SEEK_LINE: usize = 4096;

/// Tracks every TCP connection of a capture.
pub struct Tracker {
    tables: Arc<Tables>,
    opts: FlowOptions,
    slots: Vec<Option<Flow>>,
    free: Vec<usize>,
    index: HashMap<Key, usize, Hasher_>,
    /// Recently closed or rejected connections (with the client's initial sequence
    /// number): their stray packets, and repeated SYNs, are ignored.
    dead: HashMap<Key, Option<u32>, Hasher_>,
    dead_order: VecDeque<Key>,
    /// Server addresses handed out by referrals.
    learned: HashMap<SocketAddr, (Service, Option<u8>), Hasher_>,
    defrag: Defrag,
    ids: ConnIds,
    /// Packets seen (the reorder window's clock).
    packets: u64,
    last_ts: Ts,
    held: usize,
    /// After a vain attempt to get back under budget: what must be held to try again.
    stuck: usize,
    stats: FlowStats,
    /// Slot, direction and payload length of the last packet's connection.
    last: Option<(usize, Dir, usize)>,
    /// The slot of the last connection looked up (packets come in bursts).
    recent: Option<(Key, usize)>,
    /// (due packet number, slot, serial) of connections waiting for a reorder window.
    timers: BinaryHeap<Reverse<(u64, usize, u64)>>,
}

impl Tracker {
    /// A tracker numbering MSNP connections from `first_id`.
    pub fn new(tables: Arc<Tables>, opts: FlowOptions, first_id: FlowId) -> Tracker {
        Tracker {
            tables,
            opts,
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            dead: HashMap::default(),
            dead_order: VecDeque::new(),
            learned: HashMap::default(),
            defrag: Defrag::default(),
            ids: ConnIds::new(first_id),
            packets: 0,
            last_ts: Ts(0),
            held: 0,
            stuck: 0,
            stats: FlowStats::default(),
            last: None,
            recent: None,
            timers: BinaryHeap::new(),
        }
    }

    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }
    /// The id the next MSNP connection will get.
    pub fn next_id(&self) -> FlowId {
        self.ids.peek()
    }
    /// Connections currently tracked.
    pub fn tracked(&self) -> usize {
        self.index.len()
    }
    /// Bytes held by all connections (what the budget limits).
    pub fn held(&self) -> usize {
        self.held
    }
    /// The connection numbering, to hand out ids for connections that are not TCP
    /// connections (gateway sessions) from the same sequence.
    pub fn ids(&self) -> ConnIds {
        self.ids.clone()
    }
    /// IP datagrams given up or still incomplete.
    pub fn fragments_dropped(&self) -> u64 {
        self.defrag.dropped + self.defrag.pending() as u64
    }

    /// Connections to `server` carry MSNP of `service` (learned from a referral such as
    /// XFR or RNG); `version` is the protocol version of the connection that said so.
    pub fn expect(&mut self, server: SocketAddr, service: Service, version: Option<u8>) {
        if self.learned.len() >= MAX_LEARNED && !self.learned.contains_key(&server) {
            self.learned.clear();
        }
        self.learned.insert(server, (service, version));
    }

    /// What the MSNP connection of the last packet holds; None when that packet was not
    /// MSNP TCP or its connection is closed.
    pub fn last_packet(&self) -> Option<PacketInfo> {
        let (i, dir, payload) = self.last?;
        let f = self.slots.get(i)?.as_ref()?;
        Some(PacketInfo {
            flow: f.st.id?,
            dir,
            payload,
            out_of_order: [f.half[0].held(), f.half[1].held()],
            seeking: [f.st.start[0].held(), f.st.start[1].held()],
        })
    }

    /// One captured frame of link type `linktype` (LINKTYPE_* number).
    pub fn packet(
        &mut self,
        linktype: u16,
        ts: Ts,
        frame: &[u8],
        out: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        self.last = None;
        let Some(ip) = packet::ip_of_frame(linktype, frame).and_then(packet::parse_ip) else {
            self.stats.skipped_frames += 1;
            return;
        };
        if ip.proto != 6 {
            self.stats.skipped_frames += 1;
            return;
        }
        let whole;
        let payload = if ip.frag.is_some() {
            match self.defrag.add(&ip) {
                Some(b) => {
                    whole = b;
                    &whole[..]
                }
                None => return,
            }
        } else {
            ip.payload
        };
        let Some(tcp) = packet::parse_tcp(payload) else {
            self.stats.skipped_frames += 1;
            return;
        };
        let src = SocketAddr::new(ip.src, tcp.sport);
        let dst = SocketAddr::new(ip.dst, tcp.dport);
        self.segment(src, dst, &tcp, ts, out);
    }

    fn lookup(&mut self, k: Key) -> Option<usize> {
        if let Some((rk, i)) = self.recent {
            if rk == k {
                return Some(i);
            }
        }
        let i = *self.index.get(&k)?;
        self.recent = Some((k, i));
        Some(i)
    }

    fn is_server_port(&self, p: u16) -> bool {
        self.opts.ports.contains(&p)
    }

    fn kill(&mut self, k: Key, isn: Option<u32>) {
        if self.dead.insert(k, isn).is_none() {
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
        out: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        self.stats.tcp_segments += 1;
        self.packets += 1;
        self.last_ts = ts;
        let pkt = self.packets;
        if !self.timers.is_empty() {
            self.tick(ts, out);
        }
        let k = Key::new(src, dst);
        let opening = tcp.syn && !tcp.ack_flag;
        let i = match self.lookup(k) {
            Some(i) => i,
            None => {
                if let Some(&isn) = self.dead.get(&k) {
                    // A closed connection's stray packet, or its SYN repeated.
                    if !opening || isn == Some(tcp.seq) {
                        return;
                    }
                    self.dead.remove(&k);
                }
                if tcp.rst || (!tcp.syn && tcp.payload.is_empty()) {
                    return;
                }
                if self.index.len() >= self.opts.max_flows {
                    self.evict(ts, out);
                }
                let flow = self.new_flow(k, src, dst, tcp, ts);
                let i = match self.free.pop() {
                    Some(i) => {
                        self.slots[i] = Some(flow);
                        i
                    }
                    None => {
                        self.slots.push(Some(flow));
                        self.slots.len() - 1
                    }
                };
                self.index.insert(k, i);
                self.recent = Some((k, i));
                i
            }
        };
        let Some(Flow { half, st }) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let mut cx = ctx!(self, out);
        st.last_seen = pkt;
        if tcp.syn && st.id.is_none() && !st.oriented {
            // The handshake tells who the client is, whatever came before it.
            let client = if tcp.ack_flag { dst } else { src };
            if client != st.client {
                std::mem::swap(&mut st.client, &mut st.server);
                half.swap(0, 1);
                st.start.swap(0, 1);
                st.bytes.swap(0, 1);
            }
            st.oriented = true;
            st.expected = expectation(&self.opts.ports, &self.learned, st.server);
        }
        let dir = if src == st.client { Dir::C2s } else { Dir::S2c };
        let d = dir.index();
        let o = dir.flip().index();
        self.last = Some((i, dir, tcp.payload.len()));
        // A referral can come after the SYN it names in a capture (two connections' packets
        // a hair apart, written out of order): an address learned since counts until the
        // connection is opened by its content.
        if st.id.is_none() && st.expected.is_none() && !st.rejected && !self.learned.is_empty() {
            st.expected = self
                .learned
                .get(&st.server)
                .map(|&(service, version)| OpenReason::Referral { service, version });
        }
        // A watched port or learned address: the connection is MSNP from its first packet
        // (its Connect belongs to that packet even when its bytes wait for a handshake).
        if st.id.is_none() && st.expected.is_some() {
            cx.open(st, ts);
        }
        if tcp.syn {
            if opening {
                st.client_isn.get_or_insert(tcp.seq);
            }
            let early = half[d].anchor(tcp.seq.wrapping_add(1), true);
            replay(&mut half[d], st, dir, early, pkt, &mut cx);
            if tcp.ack_flag {
                // A SYN/ACK acknowledges the client's SYN: the client's stream starts there.
                let early = half[o].anchor(tcp.ack, true);
                replay(&mut half[o], st, dir.flip(), early, pkt, &mut cx);
            }
        }
        if tcp.ack_flag {
            half[o].on_peer_ack(tcp.ack, pkt);
        }
        if !tcp.payload.is_empty() || tcp.fin {
            let seq = if tcp.syn {
                tcp.seq.wrapping_add(1)
            } else {
                tcp.seq
            };
            // Bytes written before the other direction's bytes they answer wait for them,
            // so both directions reach the decoders in the order they were sent.
            if tcp.ack_flag && half[o].lacks(tcp.ack) {
                let data = tcp.payload.to_vec();
                st.parked_bytes += data.capacity();
                st.parked[d].push_back(Parked {
                    seq,
                    data,
                    fin: tcp.fin,
                    ts,
                    pkt,
                    ack: tcp.ack,
                });
            } else {
                half[d].on_segment(seq, tcp.payload, tcp.fin, ts, pkt, &mut |x| {
                    cx.take(st, dir, x, ts)
                });
                if !st.parked[o].is_empty() {
                    unpark(half, st, pkt, None, &mut cx);
                }
            }
        }
        if tcp.rst && st.reset.is_none() {
            st.closed_by.get_or_insert(dir);
            st.reset = Some((pkt, ts));
            // Nothing the RST's sender sent after it counts, nor what it had not received
            // of its peer; what came before may still be on its way in the capture.
            half[d].set_limit(tcp.seq);
            if tcp.ack_flag {
                half[o].set_limit(tcp.ack);
            }
        } else if tcp.fin {
            let at = tcp
                .seq
                .wrapping_add(u32::from(tcp.syn))
                .wrapping_add(tcp.payload.len() as u32);
            let fin = *st.fins[d].get_or_insert((at, tcp.ack_flag.then_some(tcp.ack)));
            match st.closed_by {
                None => st.closed_by = Some(dir),
                // The FIN written first acknowledged this one: this side closed first.
                Some(first) if first != dir && st.reset.is_none() => {
                    let acked = st.fins[first.index()]
                        .and_then(|(_, ack)| ack)
                        .is_some_and(|a| a.wrapping_sub(fin.0) as i32 > 0);
                    if acked {
                        st.closed_by = Some(dir);
                    }
                }
                _ => {}
            }
        }
        self.settle(i, ts, out);
    }

    /// After a packet of the connection in slot `i` (or its timer): gives up what waited a
    /// whole reorder window, ends and closes what is complete, keeps the budget's count.
    fn settle(&mut self, i: usize, ts: Ts, out: &mut dyn FnMut(StreamEvent<'_>)) {
        let window = self.opts.reorder_window;
        let pkt = self.packets;
        let Some(Flow { half, st }) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if half[0].quiet()
            && half[1].quiet()
            && st.reset.is_none()
            && !st.rejected
            && st.parked[0].is_empty()
            && st.parked[1].is_empty()
        {
            // The common case: in order, nothing waiting, not closing.
            let after = cost(half, st);
            self.held = self.held + after - st.held;
            st.held = after;
            self.check_budget(ts, out);
            return;
        }
        let mut cx = ctx!(self, out);
        unpark(half, st, pkt, Some(PARK_WINDOW), &mut cx);
        for dd in [Dir::C2s, Dir::S2c] {
            let h = &mut half[dd.index()];
            if h.waiting_since().is_some_and(|t| pkt - t >= window) {
                // No handshake came: the capture began in the middle of this stream.
                let early = h.anchor_midstream();
                replay(h, st, dd, early, pkt, &mut cx);
            }
            h.expire(pkt, window, &mut |x| cx.take(st, dd, x, ts));
        }
        let mut close = None;
        if let Some((t, rts)) = st.reset {
            if (half[0].settled() && half[1].settled()) || pkt - t >= window {
                close = Some((CloseReason::Rst, rts));
            }
        } else {
            for dd in [Dir::C2s, Dir::S2c] {
                let x = dd.index();
                if half[x].done() && half[x].fin_acked() && !st.ended[x] {
                    st.ended[x] = true;
                    if let Some(flow) = st.id {
                        (cx.out)(StreamEvent::End { flow, dir: dd, ts });
                    }
                }
            }
            if half[0].done() && half[1].done() {
                close = Some((CloseReason::Fin, ts));
            }
        }
        let after = cost(half, st);
        self.held = self.held + after - st.held;
        st.held = after;
        let (k, isn, serial) = (st.key, st.client_isn, st.serial);
        if st.rejected {
            self.remove(i);
            self.stats.other_connections += 1;
            self.kill(k, isn);
        } else if let Some((how, ts)) = close {
            self.close(i, ts, how, out);
        } else {
            // Something waits for the reorder window: come back when it is over, even if
            // no other packet of this connection comes.
            let due = [
                half[0].due(window),
                half[1].due(window),
                st.reset.map(|(t, _)| t.saturating_add(window)),
                st.parked[0]
                    .front()
                    .map(|p| p.pkt.saturating_add(PARK_WINDOW)),
                st.parked[1]
                    .front()
                    .map(|p| p.pkt.saturating_add(PARK_WINDOW)),
            ]
            .into_iter()
            .flatten()
            .min();
            if let Some(due) = due {
                if st.timer.is_none_or(|t| due < t) {
                    st.timer = Some(due);
                    self.timers.push(Reverse((due, i, serial)));
                }
            }
        }
        self.check_budget(ts, out);
    }

    #[inline]
    fn check_budget(&mut self, ts: Ts, out: &mut dyn FnMut(StreamEvent<'_>)) {
        if self.held > self.opts.max_buffer {
            if self.held > self.stuck {
                self.over_budget(ts, out);
            }
        } else {
            self.stuck = 0;
        }
    }

    /// Runs the timers that are due.
    fn tick(&mut self, ts: Ts, out: &mut dyn FnMut(StreamEvent<'_>)) {
        while let Some(&Reverse((due, i, serial))) = self.timers.peek() {
            if due > self.packets {
                return;
            }
            self.timers.pop();
            let live = self
                .slots
                .get_mut(i)
                .and_then(Option::as_mut)
                .is_some_and(|f| {
                    if f.st.serial == serial && f.st.timer == Some(due) {
                        f.st.timer = None;
                        true
                    } else {
                        false
                    }
                });
            if live {
                self.settle(i, ts, out);
            }
        }
    }

    fn new_flow(&self, key: Key, src: SocketAddr, dst: SocketAddr, tcp: &Tcp<'_>, ts: Ts) -> Flow {
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
                |a: SocketAddr| self.is_server_port(a.port()) || self.learned.contains_key(&a);
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
        Flow {
            half: Default::default(),
            st: State {
                key,
                client,
                server,
                start: [Start::seeking(), Start::seeking()],
                id: None,
                expected: expectation(&self.opts.ports, &self.learned, server),
                oriented: tcp.syn,
                client_isn: None,
                first_ts: ts,
                last_seen: self.packets,
                bytes: [0, 0],
                closed_by: None,
                fins: [None, None],
                parked: Default::default(),
                parked_bytes: 0,
                anywhere: [false, false],
                ended: [false, false],
                reset: None,
                rejected: false,
                held: 0,
                serial: self.packets,
                timer: None,
            },
        }
    }

    fn remove(&mut self, i: usize) -> Option<Flow> {
        let f = self.slots.get_mut(i)?.take()?;
        self.index.remove(&f.st.key);
        self.free.push(i);
        self.held -= f.st.held;
        if self.recent.is_some_and(|(_, r)| r == i) {
            self.recent = None;
        }
        Some(f)
    }

    fn close(&mut self, i: usize, ts: Ts, how: CloseReason, out: &mut dyn FnMut(StreamEvent<'_>)) {
        let Some(mut flow) = self.remove(i) else {
            return;
        };
        // A SYN that comes after the connection closed is its own, seen late.
        let isn = flow
            .st
            .client_isn
            .or(flow.half[0].base().map(|b| b.wrapping_sub(1)));
        self.kill(flow.st.key, isn);
        let pkt = self.packets;
        let mut cx = ctx!(self, out, usize::MAX);
        let Flow { half, st } = &mut flow;
        if st.id.is_none() && st.expected.is_some() {
            cx.open(st, ts);
        }
        unpark(half, st, pkt, Some(0), &mut cx);
        // Give up on holes: held data is decoded with gaps.
        for dd in [Dir::C2s, Dir::S2c] {
            let h = &mut half[dd.index()];
            let early = h.anchor_midstream();
            replay(h, st, dd, early, pkt, &mut cx);
            h.flush(&mut |x| cx.take(st, dd, x, ts));
        }
        let Some(id) = st.id else {
            self.stats.other_connections += 1;
            return;
        };
        for dd in [Dir::C2s, Dir::S2c] {
            if let Start::Seeking { skipped, pre } = &st.start[dd.index()] {
                let n = *skipped + pre.len() as u64;
                if n > 0 {
                    (cx.out)(StreamEvent::Note {
                        flow: id,
                        dir: dd,
                        ts,
                        note: NoteKind::NoCommandLine { bytes: n },
                    });
                }
            }
        }
        (cx.out)(StreamEvent::Close {
            flow: id,
            ts,
            by: st.closed_by,
            how,
            bytes: st.bytes,
        });
    }

    /// Over budget: the connections holding most give up waiting for their missing bytes
    /// (each once, with one gap per hole) until the total is back under seven eighths.
    fn over_budget(&mut self, ts: Ts, out: &mut dyn FnMut(StreamEvent<'_>)) {
        let low = self.opts.max_buffer - self.opts.max_buffer / 8;
        while self.held > low {
            let Some((i, held)) = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, f)| f.as_ref().map(|f| (i, f.st.held)))
                .max_by_key(|&(_, h)| h)
            else {
                return;
            };
            let pkt = self.packets;
            let Some(Flow { half, st }) = self.slots.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            let mut cx = ctx!(self, out);
            cx.stats.over_budget += 1;
            if st.id.is_none() && st.expected.is_some() {
                cx.open(st, ts);
            }
            unpark(half, st, pkt, Some(0), &mut cx);
            for dd in [Dir::C2s, Dir::S2c] {
                let h = &mut half[dd.index()];
                let n = h.held();
                if n == 0 {
                    continue;
                }
                if let Some(flow) = st.id {
                    (cx.out)(StreamEvent::Note {
                        flow,
                        dir: dd,
                        ts,
                        note: NoteKind::OverBudget { held: n },
                    });
                }
                let early = h.anchor_midstream();
                replay(h, st, dd, early, pkt, &mut cx);
                h.flush(&mut |x| cx.take(st, dd, x, ts));
            }
            let after = cost(half, st);
            st.held = after;
            let rejected = st.rejected;
            let (k, isn) = (st.key, st.client_isn);
            self.held = self.held + after - held;
            if rejected {
                self.remove(i);
                self.stats.other_connections += 1;
                self.kill(k, isn);
            } else if after >= held {
                // Nothing more to give up here (bytes before a first command line are
                // bounded by the detection window): do not scan every connection again
                // on every packet; try again once an eighth more is held.
                self.stuck = self.held + self.opts.max_buffer / 8 + 1;
                return;
            }
        }
        self.stuck = 0;
    }

    fn evict(&mut self, ts: Ts, out: &mut dyn FnMut(StreamEvent<'_>)) {
        let mut ages: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (f.st.last_seen, i)))
            .collect();
        ages.sort_unstable();
        let n = (ages.len() / 8).max(1);
        for (_, i) in ages.into_iter().take(n) {
            self.stats.evicted += 1;
            self.close(i, ts, CloseReason::Evicted, out);
        }
    }

    /// End of the capture: every open connection is delivered to its end and closed,
    /// in the order they were opened.
    pub fn finish(&mut self, out: &mut dyn FnMut(StreamEvent<'_>)) {
        let mut order: Vec<(u64, Key, usize, Option<Ts>)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let f = f.as_ref()?;
                Some((
                    f.st.id.unwrap_or(u64::MAX),
                    f.st.key,
                    i,
                    f.st.reset.map(|r| r.1),
                ))
            })
            .collect();
        order.sort_unstable();
        for (_, _, i, reset) in order {
            let fins = self.slots[i].as_ref().is_some_and(|f| {
                (0..2).all(|x| f.half[x].fin_seen() || f.st.parked[x].iter().any(|p| p.fin))
            });
            match reset {
                Some(ts) => self.close(i, ts, CloseReason::Rst, out),
                // Both sides said goodbye; only missing bytes kept it open.
                None if fins => self.close(i, self.last_ts, CloseReason::Fin, out),
                None => self.close(i, self.last_ts, CloseReason::EndOfCapture, out),
            }
        }
        self.timers.clear();
        self.last = None;
    }
}

/// Whether (and why) connections to `server` are MSNP before any byte is seen.
fn expectation(
    ports: &[u16],
    learned: &HashMap<SocketAddr, (Service, Option<u8>), Hasher_>,
    server: SocketAddr,
) -> Option<OpenReason> {
    if let Some(&(service, version)) = learned.get(&server) {
        return Some(OpenReason::Referral { service, version });
    }
    ports
        .contains(&server.port())
        .then_some(OpenReason::Port(server.port()))
}

/// Hands parked segments to their reassembler once the bytes they acknowledge are in, or
/// (`window`) once they waited that many packets; `Some(0)` releases all of them.
fn unpark(
    half: &mut [HalfStream; 2],
    st: &mut State,
    pkt: u64,
    window: Option<u64>,
    cx: &mut Ctx<'_>,
) {
    loop {
        let mut moved = false;
        for dir in [Dir::C2s, Dir::S2c] {
            let (d, o) = (dir.index(), dir.flip().index());
            while let Some(p) = st.parked[d].front() {
                let waited = window.is_some_and(|w| pkt.saturating_sub(p.pkt) >= w);
                if !waited && half[o].lacks(p.ack) {
                    break;
                }
                let Some(p) = st.parked[d].pop_front() else {
                    break;
                };
                st.parked_bytes -= p.data.capacity();
                let ts = p.ts;
                half[d].on_segment(p.seq, &p.data, p.fin, ts, pkt, &mut |x| {
                    cx.take(st, dir, x, ts)
                });
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
}

/// Hands segments held before a direction's start back to its reassembler, each with
/// its own timestamp (never earlier than the one before).
fn replay(
    h: &mut HalfStream,
    st: &mut State,
    dir: Dir,
    early: Vec<Early>,
    pkt: u64,
    cx: &mut Ctx<'_>,
) {
    if !h.syn && h.started() {
        st.anywhere[dir.index()] = true;
    }
    let mut t = Ts(i64::MIN);
    for e in early {
        t = t.max(e.ts);
        h.on_segment(e.seq, &e.data, e.fin, t, pkt, &mut |x| {
            cx.take(st, dir, x, t)
        });
    }
}

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
    match crate::wire::find_lf(window) {
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

enum Probe {
    Http(MsnHttp),
    /// It may be HTTP: hold the bytes (bounded by the detection window).
    Wait,
    No,
}

/// Is a connection MSN's HTTP side, from the first bytes of both directions?
fn http_probe(st: &State, window: usize) -> Probe {
    let (Start::Seeking { pre: c, skipped: 0 }, Start::Seeking { pre: s, skipped: 0 }) =
        (&st.start[0], &st.start[1])
    else {
        return Probe::No;
    };
    if st.anywhere[0] || st.anywhere[1] {
        return Probe::No;
    }
    if c.is_empty() {
        // HTTP's client speaks first; an answer seen before its request (reordering)
        // waits for it, anything else is for the MSNP search to judge as before.
        return if s.starts_with(b"HTTP/") && s.len() <= window {
            Probe::Wait
        } else {
            Probe::No
        };
    }
    match detect::detect(c, s) {
        Detection::Http(Some(kind)) => Probe::Http(kind),
        Detection::NotHttp => Probe::No,
        // A request head not complete yet, or one that says little with no answer yet.
        Detection::NeedMore if c.len() <= window => Probe::Wait,
        Detection::Http(None) if s.is_empty() && c.len() <= window => Probe::Wait,
        Detection::NeedMore | Detection::Http(None) => Probe::No,
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
        match crate::wire::find_lf(&buf[cand..]) {
            Some(lf) => cand += lf + 1,
            None => return Found::More(buf.len()),
        }
    }
}

impl Ctx<'_> {
    /// Numbers a connection and says that it opened, and why.
    fn announce(&mut self, st: &mut State, why: OpenReason) -> FlowId {
        let id = self.ids.next();
        st.id = Some(id);
        (self.out)(StreamEvent::Open {
            flow: id,
            client: st.client,
            server: st.server,
            ts: st.first_ts,
            why,
        });
        id
    }

    /// The connection is MSNP: number it and say so.
    fn open(&mut self, st: &mut State, ts: Ts) {
        if st.id.is_some() {
            return;
        }
        self.stats.msnp_connections += 1;
        self.announce(st, st.expected.unwrap_or(OpenReason::Content));
        // Bytes held while deciding now have somewhere to go.
        for dd in [Dir::C2s, Dir::S2c] {
            self.seek(st, dd, ts, true);
        }
    }

    fn take(&mut self, st: &mut State, dir: Dir, x: Delivery<'_>, ts: Ts) {
        let d = dir.index();
        match x {
            Delivery::Data(b) => {
                st.bytes[d] += b.len() as u64;
                match (&mut st.start[d], st.id) {
                    (Start::Live, Some(flow)) => (self.out)(StreamEvent::Data {
                        flow,
                        dir,
                        ts,
                        bytes: b,
                    }),
                    (Start::Live, None) => {}
                    (Start::Seeking { pre, .. }, _) => {
                        pre.extend_from_slice(b);
                        self.seek(st, dir, ts, false);
                    }
                }
            }
            Delivery::Gap { len, .. } => match (&mut st.start[d], st.id) {
                (Start::Live, Some(flow)) => (self.out)(StreamEvent::Gap { flow, dir, ts, len }),
                (Start::Live, None) => {}
                (Start::Seeking { pre, skipped }, _) => {
                    *skipped += pre.len() as u64 + len;
                    pre.clear();
                    st.anywhere[d] = true;
                }
            },
            Delivery::Conflict { offset, len } => {
                if let Some(flow) = st.id {
                    (self.out)(StreamEvent::Note {
                        flow,
                        dir,
                        ts,
                        note: NoteKind::Overlap { offset, len },
                    });
                }
            }
        }
    }

    /// The connection is MSN HTTP: number it, say so, and hand over what both directions
    /// held from their first byte.
    fn open_http(&mut self, st: &mut State, ts: Ts, kind: MsnHttp) {
        self.stats.http_connections += 1;
        let id = self.announce(st, OpenReason::Http(kind));
        for dir in [Dir::C2s, Dir::S2c] {
            let held = std::mem::replace(&mut st.start[dir.index()], Start::Live);
            if let Start::Seeking { pre, .. } = held {
                if !pre.is_empty() {
                    (self.out)(StreamEvent::Data {
                        flow: id,
                        dir,
                        ts,
                        bytes: &pre,
                    });
                }
            }
        }
    }

    /// Looks for the first command line in the held bytes of a seeking direction.
    /// `replay`: called right after the connection was opened, for bytes held before.
    fn seek(&mut self, st: &mut State, dir: Dir, ts: Ts, replay: bool) {
        let d = dir.index();
        // Only a connection nothing is known about yet, seen from its start, may be HTTP:
        // connections on MSNP ports or learned addresses never pay for this.
        if st.id.is_none() && st.expected.is_none() && !replay {
            match http_probe(st, self.detect_window) {
                Probe::Http(kind) => return self.open_http(st, ts, kind),
                Probe::Wait => return,
                Probe::No => {}
            }
        }
        loop {
            let Start::Seeking { pre, skipped } = &mut st.start[d] else {
                return;
            };
            if replay && pre.is_empty() {
                return;
            }
            // A stream opened by a SYN must start with a command; one picked up mid-way
            // may start at any line.
            match find_start(pre, st.anywhere[d], self.tables) {
                Found::At(pos) => {
                    let skip = pos as u64 + *skipped;
                    let Some(flow) = st.id else {
                        // Content says MSNP: open, which comes back here for both sides.
                        pre.drain(..pos);
                        *skipped = skip;
                        st.anywhere[d] = true;
                        self.open(st, ts);
                        return;
                    };
                    let pre = std::mem::take(pre);
                    st.start[d] = Start::Live;
                    if skip > 0 {
                        (self.out)(StreamEvent::Note {
                            flow,
                            dir,
                            ts,
                            note: NoteKind::MidStream { skipped: skip },
                        });
                    }
                    (self.out)(StreamEvent::Data {
                        flow,
                        dir,
                        ts,
                        bytes: &pre[pos..],
                    });
                    return;
                }
                Found::More(drop) => {
                    *skipped += drop as u64;
                    pre.drain(..drop);
                    if pre.len() > MAX_SEEK_LINE {
                        // A line longer than any command: skip it.
                        *skipped += pre.len() as u64;
                        pre.clear();
                        pre.shrink_to(MAX_SEEK_LINE);
                    }
                    if st.expected.is_none()
                        && st.id.is_none()
                        && (*skipped as usize).saturating_add(pre.len()) > self.detect_window
                    {
                        st.rejected = true;
                    }
                    return;
                }
                Found::No => {
                    if st.expected.is_none() && st.id.is_none() {
                        st.rejected = true;
                        return;
                    }
                    // Known MSNP that does not start with a command: look further on.
                    st.anywhere[d] = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::capture::writer::TcpFlowWriter;

    /// LINKTYPE_RAW: frames are IP packets.
    const RAW: u16 = 101;

    /// Runs one connection (handshake, the given exchanges, close) through a tracker and
    /// returns its open reason (if it was opened) and the bytes delivered per direction.
    fn one_flow(
        server: &str,
        exchanges: &[(Dir, &[u8])],
    ) -> (Option<OpenReason>, [Vec<u8>; 2], FlowStats) {
        let tables = Arc::new(Tables::builtin().expect("tables"));
        let mut t = Tracker::new(tables, FlowOptions::default(), 1);
        let mut f = TcpFlowWriter::new(
            "10.0.0.1:40000".parse().expect("addr"),
            server.parse().expect("addr"),
        );
        let mut why = None;
        let mut got: [Vec<u8>; 2] = Default::default();
        let mut on = |e: StreamEvent<'_>| match e {
            StreamEvent::Open { why: w, .. } => why = Some(w),
            StreamEvent::Data { dir, bytes, .. } => got[dir.index()].extend_from_slice(bytes),
            _ => {}
        };
        let mut n = 0;
        let mut pk: Vec<Vec<u8>> = f
            .handshake()
            .expect("hs")
            .into_iter()
            .map(|p| p.1)
            .collect();
        for (d, b) in exchanges {
            pk.extend(f.data(*d, b, 7).expect("data"));
        }
        pk.extend(f.close(Dir::C2s).expect("close").into_iter().map(|p| p.1));
        for p in pk {
            n += 1;
            t.packet(RAW, Ts(n), &p, &mut on);
        }
        t.finish(&mut on);
        let stats = t.stats().clone();
        (why, got, stats)
    }

    #[test]
    fn msn_http_is_found_by_content_on_any_port_and_other_http_is_not() {
        let req: &[u8] = b"POST http://gateway.messenger.hotmail.com/gateway/gateway.dll?Action=open&Server=NS&IP=messenger.hotmail.com HTTP/1.1\r\nContent-Type: application/x-msn-messenger\r\nContent-Length: 19\r\n\r\nVER 1 MSNP15 CVR0\r\n";
        let resp: &[u8] = b"HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID=1.2; GW-IP=10.9.9.9\r\nContent-Length: 14\r\n\r\nVER 1 MSNP15\r\n";
        let (why, got, st) = one_flow("10.9.9.9:5555", &[(Dir::C2s, req), (Dir::S2c, resp)]);
        assert_eq!(why, Some(OpenReason::Http(MsnHttp::Gateway)));
        // Every byte from the first, segmented at 7 bytes: nothing skipped or held back.
        assert_eq!(got, [req.to_vec(), resp.to_vec()]);
        assert_eq!((st.http_connections, st.msnp_connections), (1, 0));

        // A web page is HTTP, but not MSN's: ignored as before.
        let (why, _, st) = one_flow(
            "10.9.9.9:80",
            &[
                (
                    Dir::C2s,
                    b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n",
                ),
                (Dir::S2c, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"),
            ],
        );
        assert_eq!(why, None);
        assert_eq!((st.http_connections, st.other_connections), (0, 1));

        // A generic first request, then the answer says gateway (X-MSN-Messenger).
        let (why, _, _) = one_flow(
            "10.9.9.9:8080",
            &[
                (Dir::C2s, b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
                (Dir::S2c, resp),
            ],
        );
        assert_eq!(why, Some(OpenReason::Http(MsnHttp::Gateway)));

        // MSNP on an unwatched port is still found by its first command line.
        let (why, got, _) = one_flow(
            "10.9.9.9:7777",
            &[
                (Dir::C2s, b"VER 1 MSNP8 CVR0\r\n"),
                (Dir::S2c, b"VER 1 MSNP8\r\n"),
            ],
        );
        assert_eq!(why, Some(OpenReason::Content));
        assert_eq!(got[0], b"VER 1 MSNP8 CVR0\r\n");
    }

    /// A tracker, a connection to 10.9.9.9:1863 and the packets of its handshake.
    fn tracker_and_handshake() -> (Tracker, TcpFlowWriter, Vec<Vec<u8>>) {
        let tables = Arc::new(Tables::builtin().expect("tables"));
        let t = Tracker::new(tables, FlowOptions::default(), 1);
        let mut f = TcpFlowWriter::new(
            "10.0.0.1:40000".parse().expect("addr"),
            "10.9.9.9:1863".parse().expect("addr"),
        );
        let pk = f
            .handshake()
            .expect("hs")
            .into_iter()
            .map(|p| p.1)
            .collect();
        (t, f, pk)
    }

    /// Packets of the two directions written out of the order they were sent in (as a
    /// capture taken on two interfaces, or re-split by perturb.py, can have them): each
    /// direction's bytes still reach the decoder after the other direction's bytes they
    /// acknowledge, and the close says who closed first.
    #[test]
    fn an_answer_written_before_its_question_is_decoded_after_it() {
        let (mut t, mut f, mut pk) = tracker_and_handshake();
        let ask = f.data(Dir::C2s, b"VER 1 MSNP8 CVR0\r\n", 9).expect("data");
        let answer = f.data(Dir::S2c, b"VER 1 MSNP8\r\n", 64).expect("data");
        let next = f.data(Dir::C2s, b"CVR 2 0x0409\r\n", 64).expect("data");
        // The server closes first; the client's FIN (which acknowledges the server's) is
        // written before it.
        let server_fin = f.fin(Dir::S2c).expect("fin");
        let client_fin = f.fin(Dir::C2s).expect("fin");
        // The file: the question's first half, the answer, the question's second half.
        pk.push(ask[0].clone());
        pk.extend(answer);
        pk.extend(ask[1..].iter().cloned());
        pk.extend(next);
        pk.push(client_fin);
        pk.push(server_fin);
        let mut order: Vec<(Dir, Vec<u8>)> = Vec::new();
        let mut by = None;
        let mut on = |e: StreamEvent<'_>| match e {
            StreamEvent::Data { dir, bytes, .. } => match order.last_mut() {
                Some((d, b)) if *d == dir => b.extend_from_slice(bytes),
                _ => order.push((dir, bytes.to_vec())),
            },
            StreamEvent::Close { by: b, how, .. } => {
                assert_eq!(how, CloseReason::Fin);
                by = Some(b);
            }
            _ => {}
        };
        for (n, p) in pk.iter().enumerate() {
            t.packet(RAW, Ts(n as i64 + 1), p, &mut on);
        }
        t.finish(&mut on);
        assert_eq!(
            order,
            vec![
                (Dir::C2s, b"VER 1 MSNP8 CVR0\r\n".to_vec()),
                (Dir::S2c, b"VER 1 MSNP8\r\n".to_vec()),
                (Dir::C2s, b"CVR 2 0x0409\r\n".to_vec()),
            ]
        );
        assert_eq!(by, Some(Some(Dir::S2c)));
    }

    /// An acknowledgement of bytes that never come (lost in the capture) holds a segment
    /// back only a few packets: it is decoded, with its own time, not at the end.
    #[test]
    fn a_segment_acknowledging_lost_bytes_waits_only_a_few_packets() {
        let (mut t, mut f, mut pk) = tracker_and_handshake();
        pk.extend(f.data(Dir::C2s, b"VER 1 MSNP8 CVR0\r\n", 64).expect("data"));
        f.skip(Dir::S2c, 13); // "VER 1 MSNP8\r\n", lost
        let asked = pk.len();
        pk.extend(f.data(Dir::C2s, b"CVR 2 0x0409\r\n", 64).expect("data"));
        // Keep-alives of another direction's bytes: the packet count moves on.
        for i in 0..PARK_WINDOW + 2 {
            let line = format!("PNG {i}\r\n");
            pk.extend(f.data(Dir::C2s, line.as_bytes(), 64).expect("data"));
        }
        // (time stamped, packet being read when decoded, bytes)
        let mut seen: Vec<(Ts, i64, Vec<u8>)> = Vec::new();
        let now = std::cell::Cell::new(0i64);
        let mut on = |e: StreamEvent<'_>| {
            if let StreamEvent::Data {
                dir: Dir::C2s,
                bytes,
                ts,
                ..
            } = e
            {
                seen.push((ts, now.get(), bytes.to_vec()));
            }
        };
        for p in &pk {
            now.set(now.get() + 1);
            t.packet(RAW, Ts(now.get()), p, &mut on);
        }
        let cvr = seen
            .iter()
            .find(|(_, _, b)| b.starts_with(b"CVR"))
            .expect("CVR decoded before the end");
        // Stamped with its own packet's time (packet `asked + 1`), decoded a window later.
        assert_eq!(cvr.0, Ts(asked as i64 + 1));
        let at = cvr.1;
        assert!(
            at as u64 <= asked as u64 + 1 + PARK_WINDOW,
            "decoded at packet {at}, asked at {}",
            asked + 1
        );
    }

    #[test]
    fn over_budget_each_connection_gives_up_once_with_one_gap() {
        let tables = Arc::new(Tables::builtin().expect("tables"));
        let budget = 64 << 10;
        let opts = FlowOptions {
            max_buffer: budget,
            ..FlowOptions::default()
        };
        let mut t = Tracker::new(tables, opts, 1);
        let mut flows: Vec<TcpFlowWriter> = (0..3u16)
            .map(|i| {
                TcpFlowWriter::new(
                    format!("10.0.0.{}:4000{i}", i + 1).parse().expect("addr"),
                    "10.9.9.9:1863".parse().expect("addr"),
                )
            })
            .collect();
        let mut gaps: BTreeMap<FlowId, Vec<u64>> = BTreeMap::new();
        let mut notes = 0;
        let mut data: BTreeMap<FlowId, u64> = BTreeMap::new();
        let mut n = 0i64;
        let mut on = |e: StreamEvent<'_>| match e {
            StreamEvent::Gap { flow, len, .. } => gaps.entry(flow).or_default().push(len),
            StreamEvent::Note {
                note: NoteKind::OverBudget { .. },
                ..
            } => notes += 1,
            StreamEvent::Data { flow, bytes, .. } => {
                *data.entry(flow).or_default() += bytes.len() as u64
            }
            _ => {}
        };
        let line = b"VER 1 MSNP8 CVR0\r\n";
        for f in &mut flows {
            for (_, p) in f.handshake().expect("hs") {
                n += 1;
                t.packet(RAW, Ts(n), &p, &mut on);
            }
            for p in f.data(Dir::C2s, line, 1460).expect("data") {
                t.packet(RAW, Ts(n), &p, &mut on);
            }
            // A hole the capture never fills: everything after it is held.
            f.skip(Dir::C2s, 100);
        }
        let chunk = [b'x'; 1000];
        for _ in 0..100 {
            for f in &mut flows {
                for p in f.data(Dir::C2s, &chunk, 1460).expect("data") {
                    n += 1;
                    t.packet(RAW, Ts(n), &p, &mut on);
                }
                assert!(t.held() <= budget, "{} held", t.held());
            }
        }
        t.finish(&mut on);
        assert_eq!(notes, 3);
        assert_eq!(gaps.len(), 3, "{gaps:?}");
        for (flow, g) in &gaps {
            assert_eq!(g, &vec![100], "connection {flow}: one gap of the hole");
            assert_eq!(data[flow], line.len() as u64 + 100 * 1000);
        }
        assert_eq!(t.stats().over_budget, 3);
    }
}
