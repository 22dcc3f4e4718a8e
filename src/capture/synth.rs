//! `msntap synth`: turns session-log connections into a valid capture, one TCP connection
//! per log connection, with optional reassembly hazards (reordering, duplicates,
//! overlaps, losses). It writes packets only; it never decodes MSNP beyond choosing
//! server ports and addresses from the log's first lines and referrals.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::event::{Dir, Ts};
use crate::logfile::{Chunk, ConnIndex, LogConn};

use super::writer::{CaptureWriter, Format, Link, TcpFlowWriter};

/// How to lay the log out as packets.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Largest TCP payload per segment.
    pub segment: usize,
    pub format: Format,
    pub link: Link,
    /// Shuffle the segments of each burst (consecutive bytes of one direction).
    pub reorder: bool,
    /// Repeat some segments.
    pub duplicate: bool,
    /// Add retransmissions that straddle two neighbouring segments (same bytes).
    pub overlap: bool,
    /// Leave out every Nth data segment.
    pub drop_every: Option<usize>,
    pub seed: u64,
    /// Time of the first packet.
    pub start: Ts,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            segment: 1460,
            format: Format::Pcap,
            link: Link::Ethernet,
            reorder: false,
            duplicate: false,
            overlap: false,
            drop_every: None,
            seed: 1,
            // 2005-06-01T12:00:00Z: the era of the protocol, and a fixed value for goldens.
            start: Ts(1_117_627_200_000_000),
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SynthStats {
    pub connections: usize,
    pub packets: u64,
    pub dropped: u64,
    pub data_bytes: u64,
}

/// A small deterministic generator (SplitMix64): fixtures must not change between runs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

fn first_line(b: &[u8]) -> Vec<&str> {
    let end = b
        .iter()
        .position(|&c| c == b'\r' || c == b'\n')
        .unwrap_or(b.len());
    std::str::from_utf8(&b[..end])
        .unwrap_or("")
        .split(' ')
        .filter(|t| !t.is_empty())
        .collect()
}

/// Is this log connection a switchboard session (USR with a cookie, or ANS)?
fn is_switchboard(c: &LogConn) -> bool {
    c.chunks
        .iter()
        .find(|ch| ch.dir == Dir::C2s)
        .is_some_and(|ch| crate::logfile::is_switchboard_line(&ch.bytes))
}

/// Server addresses a chunk refers the client to: (is switchboard, address).
fn referral(bytes: &[u8]) -> Option<(bool, SocketAddr)> {
    let t = first_line(bytes);
    let addr = match *t.first()? {
        "XFR" if t.get(2) == Some(&"SB") || t.get(2) == Some(&"NS") => {
            (t.get(2) == Some(&"SB"), *t.get(3)?)
        }
        "RNG" => (true, *t.get(2)?),
        _ => return None,
    };
    let sa: SocketAddr = addr.1.parse().ok()?;
    Some((addr.0, sa))
}

struct Live {
    flow: TcpFlowWriter,
    last: Option<Dir>,
    burst: Vec<u8>,
    remaining: usize,
}

/// Writes `conns` (from `logfile::parse`) as a capture into `w`.
pub fn synthesize<W: Write>(
    conns: &[LogConn],
    opts: &SynthOptions,
    w: W,
) -> io::Result<SynthStats> {
    let index: Vec<ConnIndex> = conns
        .iter()
        .map(|c| ConnIndex {
            chunks: c.chunks.len(),
            switchboard: is_switchboard(c),
        })
        .collect();
    // Every chunk of every connection, in log order.
    let mut order: Vec<(usize, usize, usize)> = Vec::new();
    for (ci, c) in conns.iter().enumerate() {
        for (k, ch) in c.chunks.iter().enumerate() {
            order.push((ch.line_no, ci, k));
        }
    }
    order.sort_unstable();
    let mut s = Synthesizer::new(w, opts.clone(), index)?;
    for &(_, ci, k) in &order {
        s.chunk(ci, &conns[ci].chunks[k])?;
    }
    s.finish()
}

/// Lays out a log's chunks as packets as they come, in log order (memory flat in the
/// log's size). It needs a first pass ([`crate::logfile::index`]) to know each
/// connection's kind and where it ends.
pub struct Synthesizer<W: Write> {
    cap: CaptureWriter<W>,
    opts: SynthOptions,
    index: Vec<ConnIndex>,
    rng: Rng,
    stats: SynthStats,
    live: HashMap<usize, Live>,
    next_ns: Option<SocketAddr>,
    next_sb: Option<SocketAddr>,
    clock: Ts,
    seg_counter: usize,
    last_conn: Option<usize>,
}

impl<W: Write> Synthesizer<W> {
    pub fn new(w: W, opts: SynthOptions, index: Vec<ConnIndex>) -> io::Result<Self> {
        Ok(Synthesizer {
            cap: CaptureWriter::new(w, opts.format, opts.link)?,
            rng: Rng::new(opts.seed),
            stats: SynthStats {
                connections: index.len(),
                ..SynthStats::default()
            },
            clock: opts.start,
            opts,
            index,
            live: HashMap::new(),
            next_ns: None,
            next_sb: None,
            seg_counter: 0,
            last_conn: None,
        })
    }

    /// The next chunk of the log, of connection `ci` (numbered as the index numbers them).
    pub fn chunk(&mut self, ci: usize, ch: &Chunk) -> io::Result<()> {
        let Synthesizer {
            cap,
            opts,
            index,
            rng,
            stats,
            live,
            next_ns,
            next_sb,
            clock,
            seg_counter,
            last_conn,
        } = self;
        let Some(meta) = index.get(ci) else {
            return Err(io::Error::other(format!(
                "connection {ci} is not in the log's index (the log changed between two readings)"
            )));
        };
        // Another connection's pending burst goes out first, so that packets keep the
        // log's order across connections (a referral precedes the connection it names).
        if let Some(prev) = last_conn.filter(|&p| p != ci) {
            if let Some(pl) = live.get_mut(&prev) {
                *clock = send_burst(cap, pl, opts, rng, *clock, seg_counter, stats)?;
                pl.last = None;
            }
        }
        *last_conn = Some(ci);
        if let std::collections::hash_map::Entry::Vacant(v) = live.entry(ci) {
            let n = ci as u16;
            let client = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)),
                50_000u16.wrapping_add(n),
            );
            let server = if meta.switchboard {
                next_sb.take().unwrap_or(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)),
                    1864,
                ))
            } else {
                next_ns.take().unwrap_or(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                    1863,
                ))
            };
            let mut flow = TcpFlowWriter::new(client, server);
            for (_, p) in flow.handshake()? {
                *clock = Ts(clock.0 + 100);
                cap.write_ip(0, *clock, &p, None)?;
                stats.packets += 1;
            }
            v.insert(Live {
                flow,
                last: None,
                burst: Vec::new(),
                remaining: meta.chunks,
            });
        }
        if ch.dir == Dir::S2c {
            if let Some((sb, a)) = referral(&ch.bytes) {
                if sb {
                    *next_sb = Some(a);
                } else {
                    *next_ns = Some(a);
                }
            }
        }
        let Some(l) = live.get_mut(&ci) else {
            return Ok(());
        };
        // A direction change ends a burst: send it.
        if l.last.is_some_and(|d| d != ch.dir) {
            *clock = send_burst(cap, l, opts, rng, *clock, seg_counter, stats)?;
        }
        l.last = Some(ch.dir);
        l.burst.extend_from_slice(&ch.bytes);
        l.remaining = l.remaining.saturating_sub(1);
        if l.remaining == 0 {
            *clock = send_burst(cap, l, opts, rng, *clock, seg_counter, stats)?;
            for (_, p) in l.flow.close(Dir::C2s)? {
                *clock = Ts(clock.0 + 100);
                cap.write_ip(0, *clock, &p, None)?;
                stats.packets += 1;
            }
            live.remove(&ci);
        }
        Ok(())
    }

    /// Flushes the capture; connections whose last chunk never came stay open in it.
    pub fn finish(mut self) -> io::Result<SynthStats> {
        self.cap.flush()?;
        Ok(self.stats)
    }
}

fn send_burst<W: Write>(
    cap: &mut CaptureWriter<W>,
    l: &mut Live,
    opts: &SynthOptions,
    rng: &mut Rng,
    mut clock: Ts,
    seg_counter: &mut usize,
    stats: &mut SynthStats,
) -> io::Result<Ts> {
    let Some(dir) = l.last else { return Ok(clock) };
    if l.burst.is_empty() {
        return Ok(clock);
    }
    let data = std::mem::take(&mut l.burst);
    stats.data_bytes += data.len() as u64;
    let seg = opts.segment.clamp(1, super::writer::MAX_SEGMENT);
    let start = l.flow.sent(dir);
    // (stream offset, length) of each segment, then hazards.
    let mut segs: Vec<(u64, usize)> = Vec::new();
    let mut off = 0usize;
    while off < data.len() {
        let n = seg.min(data.len() - off);
        segs.push((off as u64, n));
        off += n;
    }
    if let Some(n) = opts.drop_every.filter(|&n| n > 0) {
        segs.retain(|_| {
            *seg_counter += 1;
            let keep = *seg_counter % n != 0;
            if !keep {
                stats.dropped += 1;
            }
            keep
        });
    }
    if opts.overlap && segs.len() >= 2 {
        let mut extra = Vec::new();
        for w in segs.windows(2) {
            if rng.below(3) == 0 {
                let (a, an) = w[0];
                let (b, bn) = w[1];
                if a + an as u64 == b {
                    let s = a + (an as u64) / 2;
                    let e = b + (bn as u64).div_ceil(2);
                    extra.push((s, (e - s) as usize));
                }
            }
        }
        for x in extra {
            let at = rng.below(segs.len() + 1);
            segs.insert(at, x);
        }
    }
    if opts.duplicate {
        let mut i = 0;
        while i < segs.len() {
            if rng.below(3) == 0 {
                let copy = segs[i];
                let at = i + 1 + rng.below(segs.len() - i);
                segs.insert(at.min(segs.len()), copy);
                i += 1;
            }
            i += 1;
        }
    }
    if opts.reorder {
        for i in (1..segs.len()).rev() {
            let j = rng.below(i + 1);
            segs.swap(i, j);
        }
    }
    for (o, n) in segs {
        let o = o as usize;
        let p = l.flow.segment_at(dir, start + o as u64, &data[o..o + n])?;
        clock = Ts(clock.0 + 100);
        cap.write_ip(0, clock, &p, None)?;
        stats.packets += 1;
    }
    l.flow.skip(dir, data.len() as u64);
    // The receiver acknowledges the burst.
    let ack = l.flow.ack(dir.flip())?;
    clock = Ts(clock.0 + 100);
    cap.write_ip(0, clock, &ack, None)?;
    stats.packets += 1;
    Ok(Ts(clock.0 + 10_000))
}
