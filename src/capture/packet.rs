//! Link-layer, IP and TCP header parsing for captured frames, and bounded IPv4/IPv6
//! fragment reassembly. Pure functions over byte slices: no flow state, no MSNP.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Link types this reader understands (LINKTYPE_* numbers).
pub fn link_supported(linktype: u16) -> bool {
    matches!(
        linktype,
        0 | 1 | 12 | 14 | 101 | 108 | 113 | 228 | 229 | 276
    )
}

/// A human name for a link type in error messages.
pub fn link_name(linktype: u16) -> String {
    let n = match linktype {
        0 => "NULL (BSD loopback)",
        1 => "Ethernet",
        101 | 12 | 14 => "raw IP",
        108 => "OpenBSD loopback",
        113 => "Linux cooked v1",
        228 => "raw IPv4",
        229 => "raw IPv6",
        276 => "Linux cooked v2",
        105 => "IEEE 802.11",
        127 => "802.11 radiotap",
        220 => "USB Linux",
        _ => "",
    };
    if n.is_empty() {
        format!("link type {linktype}")
    } else {
        format!("link type {linktype} ({n})")
    }
}

/// Returns the IP packet inside a frame, or None when the frame does not carry IPv4/IPv6
/// (ARP, spanning tree, ...) or is too short. The link type must be supported.
pub fn ip_of_frame(linktype: u16, f: &[u8]) -> Option<&[u8]> {
    let ip = match linktype {
        1 => {
            let mut et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
            let mut off = 14;
            // 802.1Q, 802.1ad and the old QinQ type, possibly stacked.
            while matches!(et, 0x8100 | 0x88a8 | 0x9100) {
                et = u16::from_be_bytes([*f.get(off + 2)?, *f.get(off + 3)?]);
                off += 4;
            }
            match et {
                0x0800 | 0x86dd => f.get(off..)?,
                _ => return None,
            }
        }
        113 => match u16::from_be_bytes([*f.get(14)?, *f.get(15)?]) {
            0x0800 | 0x86dd => f.get(16..)?,
            _ => return None,
        },
        276 => match u16::from_be_bytes([*f.first()?, *f.get(1)?]) {
            0x0800 | 0x86dd => f.get(20..)?,
            _ => return None,
        },
        // The address family is in the writer's byte order (0) or network order (108);
        // IPv4 is 2 everywhere, IPv6 is 24, 28 or 30 depending on the OS.
        0 | 108 => {
            let b: [u8; 4] = f.get(..4)?.try_into().ok()?;
            let fam = if linktype == 108 || (b[0] == 0 && b[1] == 0) {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            };
            match fam {
                2 | 24 | 28 | 30 => f.get(4..)?,
                _ => return None,
            }
        }
        12 | 14 | 101 | 228 | 229 => f,
        _ => return None,
    };
    match ip.first()? >> 4 {
        4 | 6 => Some(ip),
        _ => None,
    }
}

/// An IP datagram (or fragment of one).
#[derive(Debug, Clone)]
pub struct IpPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub payload: &'a [u8],
    /// Set for fragments: (identification, byte offset, more fragments follow).
    pub frag: Option<(u32, usize, bool)>,
}

/// Parses an IPv4 or IPv6 header. The payload is cut to the length the header declares
/// (Ethernet padding is dropped); a payload cut short by the snap length stays short.
pub fn parse_ip(p: &[u8]) -> Option<IpPacket<'_>> {
    match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if ihl < 20 || p.len() < ihl {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            if total < ihl {
                return None;
            }
            let end = total.min(p.len());
            let fl = u16::from_be_bytes([p[6], p[7]]);
            let more = fl & 0x2000 != 0;
            let off = usize::from(fl & 0x1fff) * 8;
            let id = u32::from(u16::from_be_bytes([p[4], p[5]]));
            let src = IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]));
            Some(IpPacket {
                src,
                dst,
                proto: p[9],
                payload: &p[ihl..end],
                frag: (more || off > 0).then_some((id, off, more)),
            })
        }
        6 => {
            if p.len() < 40 {
                return None;
            }
            let plen = usize::from(u16::from_be_bytes([p[4], p[5]]));
            let end = (40 + plen).min(p.len());
            let a: [u8; 16] = p[8..24].try_into().ok()?;
            let b: [u8; 16] = p[24..40].try_into().ok()?;
            let mut next = p[6];
            let mut off = 40;
            let mut frag = None;
            // Walk extension headers: hop-by-hop, routing, destination options, fragment.
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 => {
                        let h = p.get(off..off + 2)?;
                        next = h[0];
                        off += (usize::from(h[1]) + 1) * 8;
                    }
                    44 => {
                        let h = p.get(off..off + 8)?;
                        next = h[0];
                        let fo = u16::from_be_bytes([h[2], h[3]]);
                        let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                        let more = fo & 1 != 0;
                        let fo = usize::from(fo >> 3) * 8;
                        frag = (more || fo > 0).then_some((id, fo, more));
                        off += 8;
                    }
                    _ => break,
                }
            }
            if off > end {
                return None;
            }
            Some(IpPacket {
                src: IpAddr::V6(Ipv6Addr::from(a)),
                dst: IpAddr::V6(Ipv6Addr::from(b)),
                proto: next,
                payload: &p[off..end],
                frag,
            })
        }
        _ => None,
    }
}

/// A TCP segment header and its payload.
#[derive(Debug, Clone, Copy)]
pub struct Tcp<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
}

/// Parses a TCP header (checksums are not verified: captures taken on the sending host
/// often carry offloaded, unfinished checksums).
pub fn parse_tcp(p: &[u8]) -> Option<Tcp<'_>> {
    if p.len() < 20 {
        return None;
    }
    let doff = usize::from(p[12] >> 4) * 4;
    if doff < 20 || p.len() < doff {
        return None;
    }
    let fl = p[13];
    Some(Tcp {
        sport: u16::from_be_bytes([p[0], p[1]]),
        dport: u16::from_be_bytes([p[2], p[3]]),
        seq: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ack: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        fin: fl & 0x01 != 0,
        syn: fl & 0x02 != 0,
        rst: fl & 0x04 != 0,
        ack_flag: fl & 0x10 != 0,
        payload: &p[doff..],
    })
}

type FragKey = (IpAddr, IpAddr, u8, u32);

struct Partial {
    buf: Vec<u8>,
    /// Covered byte ranges, sorted and merged.
    have: Vec<(usize, usize)>,
    total: Option<usize>,
    age: u64,
}

/// Bounded IP fragment reassembly. Overlapping fragments: the bytes received first win.
#[derive(Default)]
pub struct Defrag {
    pending: HashMap<FragKey, Partial>,
    bytes: usize,
    clock: u64,
    /// Datagrams given up (limits exceeded or never completed).
    pub dropped: u64,
}

/// Most fragmented datagrams held at once.
const MAX_PENDING: usize = 256;
/// Most bytes held for incomplete datagrams.
const MAX_BYTES: usize = 4 << 20;
/// Largest reassembled datagram payload.
const MAX_DATAGRAM: usize = 65_535;

impl Defrag {
    /// Adds a fragment; returns the whole datagram payload once every piece is there.
    pub fn add(&mut self, ip: &IpPacket<'_>) -> Option<Vec<u8>> {
        let (id, off, more) = ip.frag?;
        let end = off + ip.payload.len();
        if end > MAX_DATAGRAM {
            self.dropped += 1;
            return None;
        }
        self.clock += 1;
        let key = (ip.src, ip.dst, ip.proto, id);
        if !self.pending.contains_key(&key) {
            if self.pending.len() >= MAX_PENDING || self.bytes + end > MAX_BYTES {
                self.evict_oldest();
            }
            self.pending.insert(
                key,
                Partial {
                    buf: Vec::new(),
                    have: Vec::new(),
                    total: None,
                    age: self.clock,
                },
            );
        }
        let p = self.pending.get_mut(&key)?;
        if !more {
            p.total = Some(end);
        }
        if p.buf.len() < end {
            self.bytes += end - p.buf.len();
            p.buf.resize(end, 0);
        }
        // Copy only the parts not yet covered.
        let mut pos = off;
        for &(a, b) in p.have.iter().chain(std::iter::once(&(end, end))) {
            if b <= pos {
                continue;
            }
            if a > pos {
                let stop = a.min(end);
                p.buf[pos..stop].copy_from_slice(&ip.payload[pos - off..stop - off]);
            }
            pos = pos.max(b);
            if pos >= end {
                break;
            }
        }
        p.have.push((off, end));
        p.have.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(p.have.len());
        for &(a, b) in &p.have {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        p.have = merged;
        let done = p.total.is_some_and(|t| {
            p.have.first() == Some(&(0, t))
                || p.have.first().is_some_and(|&(a, b)| a == 0 && b >= t)
        });
        if done {
            let p = self.pending.remove(&key)?;
            self.bytes -= p.buf.len();
            let mut buf = p.buf;
            buf.truncate(p.total.unwrap_or(buf.len()));
            return Some(buf);
        }
        None
    }

    fn evict_oldest(&mut self) {
        while self.pending.len() >= MAX_PENDING
            || (self.bytes > MAX_BYTES / 2 && !self.pending.is_empty())
        {
            let Some(k) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.age)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(p) = self.pending.remove(&k) {
                self.bytes -= p.buf.len();
                self.dropped += 1;
            }
        }
    }

    /// Incomplete datagrams still held.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::writer::{fragment_ipv4, Link, TcpFlowWriter};
    use crate::event::Dir;

    fn sample() -> Vec<u8> {
        let mut f = TcpFlowWriter::new(
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:1863".parse().unwrap(),
        );
        f.segment_at(Dir::C2s, 0, b"VER 1 MSNP8 CVR0\r\n").unwrap()
    }

    #[test]
    fn every_link_type_yields_the_same_ip_packet() {
        let ip = sample();
        for link in [
            Link::Ethernet,
            Link::EthernetVlan(7),
            Link::LinuxSll,
            Link::LinuxSll2,
            Link::Null,
            Link::Raw,
        ] {
            let mut fr = Vec::new();
            link.frame(&ip, &mut fr);
            assert_eq!(ip_of_frame(link.linktype(), &fr), Some(&ip[..]), "{link:?}");
        }
        // OpenBSD loopback: family in network byte order.
        let mut fr = 2u32.to_be_bytes().to_vec();
        fr.extend_from_slice(&ip);
        assert_eq!(ip_of_frame(108, &fr), Some(&ip[..]));
        // ARP over Ethernet is not IP.
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 1]);
        assert_eq!(ip_of_frame(1, &arp), None);
    }

    #[test]
    fn ethernet_padding_is_dropped_and_tcp_parsed() {
        let mut ip = sample();
        ip.extend_from_slice(&[0u8; 6]); // padding after the datagram
        let p = parse_ip(&ip).unwrap();
        assert_eq!(p.proto, 6);
        let t = parse_tcp(p.payload).unwrap();
        assert_eq!(t.payload, b"VER 1 MSNP8 CVR0\r\n");
        assert_eq!((t.sport, t.dport), (40000, 1863));
        assert!(t.ack_flag && !t.syn);
    }

    #[test]
    fn ipv6_is_parsed() {
        let mut f = TcpFlowWriter::new(
            "[::1]:40000".parse().unwrap(),
            "[::2]:1864".parse().unwrap(),
        );
        let ip = f.segment_at(Dir::S2c, 0, b"IRO 1 1 1 a@b A\r\n").unwrap();
        let p = parse_ip(&ip).unwrap();
        assert_eq!(p.src, "::2".parse::<IpAddr>().unwrap());
        assert_eq!(
            parse_tcp(p.payload).unwrap().payload,
            b"IRO 1 1 1 a@b A\r\n"
        );
    }

    #[test]
    fn fragments_reassemble_in_any_order_with_duplicates() {
        let ip = sample();
        let whole = parse_ip(&ip).unwrap().payload.to_vec();
        let mut frags = fragment_ipv4(&ip, 16);
        assert!(frags.len() >= 3);
        frags.reverse();
        let dup = frags[1].clone();
        frags.insert(0, dup);
        let mut d = Defrag::default();
        let mut got = None;
        for f in &frags {
            let p = parse_ip(f).unwrap();
            assert!(p.frag.is_some());
            if let Some(b) = d.add(&p) {
                got = Some(b);
            }
        }
        assert_eq!(got.as_deref(), Some(&whole[..]));
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn defrag_memory_is_bounded() {
        let mut d = Defrag::default();
        let payload = vec![0u8; 1000];
        for id in 0..10_000u32 {
            let p = IpPacket {
                src: "1.1.1.1".parse().unwrap(),
                dst: "2.2.2.2".parse().unwrap(),
                proto: 6,
                payload: &payload,
                frag: Some((id, 0, true)),
            };
            assert!(d.add(&p).is_none());
        }
        assert!(d.pending() <= MAX_PENDING);
        assert!(d.bytes <= MAX_BYTES);
        assert!(d.dropped > 0);
    }
}
