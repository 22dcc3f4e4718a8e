//! Writes captures: pcap and pcapng files with made-up link, IP and TCP framing around
//! byte streams (for `msntap synth`, the proxy's capture output and test fixtures), and
//! pcapng copies of read blocks with packet comments added (for `msntap annotate`).
//! It never parses packets and never decides what the bytes mean.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use etherparse::PacketBuilder;

use crate::event::{Dir, Ts};

/// File format of a capture being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap, one link type for the whole file.
    Pcap,
    /// pcapng: several interfaces, per-packet comments.
    PcapNg,
}

/// The link layer wrapped around each IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II (LINKTYPE_ETHERNET = 1).
    Ethernet,
    /// Ethernet with one 802.1Q tag carrying this VLAN id (still LINKTYPE_ETHERNET).
    EthernetVlan(u16),
    /// Linux cooked capture v1 (LINKTYPE_LINUX_SLL = 113).
    LinuxSll,
    /// Linux cooked capture v2 (LINKTYPE_LINUX_SLL2 = 276).
    LinuxSll2,
    /// BSD loopback, address family in host (little-endian) order (LINKTYPE_NULL = 0).
    Null,
    /// Raw IP, no link header (LINKTYPE_RAW = 101).
    Raw,
}

impl Link {
    /// The LINKTYPE_ number written in the file header.
    pub fn linktype(self) -> u16 {
        match self {
            Link::Ethernet | Link::EthernetVlan(_) => 1,
            Link::LinuxSll => 113,
            Link::LinuxSll2 => 276,
            Link::Null => 0,
            Link::Raw => 101,
        }
    }

    /// Prepends this link header to an IP packet.
    pub fn frame(self, ip: &[u8], out: &mut Vec<u8>) {
        let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
        let ethertype: u16 = if v6 { 0x86dd } else { 0x0800 };
        const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
        const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
        match self {
            Link::Ethernet => {
                out.extend_from_slice(&SERVER_MAC);
                out.extend_from_slice(&CLIENT_MAC);
                out.extend_from_slice(&ethertype.to_be_bytes());
            }
            Link::EthernetVlan(id) => {
                out.extend_from_slice(&SERVER_MAC);
                out.extend_from_slice(&CLIENT_MAC);
                out.extend_from_slice(&0x8100u16.to_be_bytes());
                out.extend_from_slice(&(id & 0x0fff).to_be_bytes());
                out.extend_from_slice(&ethertype.to_be_bytes());
            }
            Link::LinuxSll => {
                out.extend_from_slice(&0u16.to_be_bytes()); // packet type: to us
                out.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
                out.extend_from_slice(&6u16.to_be_bytes());
                out.extend_from_slice(&CLIENT_MAC);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&ethertype.to_be_bytes());
            }
            Link::LinuxSll2 => {
                out.extend_from_slice(&ethertype.to_be_bytes());
                out.extend_from_slice(&[0, 0]); // reserved
                out.extend_from_slice(&1u32.to_be_bytes()); // interface index
                out.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
                out.push(0); // packet type
                out.push(6);
                out.extend_from_slice(&CLIENT_MAC);
                out.extend_from_slice(&[0, 0]);
            }
            Link::Null => {
                let family: u32 = if v6 { 30 } else { 2 };
                out.extend_from_slice(&family.to_le_bytes());
            }
            Link::Raw => {}
        }
        out.extend_from_slice(ip);
    }
}

/// Byte order of the file being written (readers must accept both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endian {
    #[default]
    Little,
    Big,
}

/// Writes packets into a pcap or pcapng stream.
pub struct CaptureWriter<W: Write> {
    w: W,
    format: Format,
    endian: Endian,
    /// Per interface: link and nanosecond resolution.
    ifaces: Vec<(Link, bool)>,
    buf: Vec<u8>,
}

impl<W: Write> CaptureWriter<W> {
    /// Starts a capture with one interface (id 0) of the given link, microsecond timestamps,
    /// little-endian.
    pub fn new(w: W, format: Format, link: Link) -> io::Result<Self> {
        Self::with_options(w, format, link, false, Endian::Little)
    }

    /// Starts a capture choosing timestamp resolution and byte order.
    pub fn with_options(
        w: W,
        format: Format,
        link: Link,
        nanos: bool,
        endian: Endian,
    ) -> io::Result<Self> {
        let mut cw = CaptureWriter {
            w,
            format,
            endian,
            ifaces: Vec::new(),
            buf: Vec::with_capacity(2048),
        };
        match format {
            Format::Pcap => {
                let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
                let mut h = Vec::with_capacity(24);
                cw.put32(&mut h, magic);
                cw.put16(&mut h, 2);
                cw.put16(&mut h, 4);
                cw.put32(&mut h, 0); // thiszone
                cw.put32(&mut h, 0); // sigfigs
                cw.put32(&mut h, 262_144); // snaplen
                cw.put32(&mut h, link.linktype() as u32);
                cw.w.write_all(&h)?;
                cw.ifaces.push((link, nanos));
            }
            Format::PcapNg => {
                let mut b = Vec::with_capacity(28);
                cw.put32(&mut b, 0x0A0D_0D0A);
                cw.put32(&mut b, 28);
                cw.put32(&mut b, 0x1A2B_3C4D);
                cw.put16(&mut b, 1);
                cw.put16(&mut b, 0);
                b.extend_from_slice(&(-1i64 as u64).to_le_bytes()); // section length unknown
                cw.put32(&mut b, 28);
                cw.w.write_all(&b)?;
                cw.add_interface(link, nanos)?;
            }
        }
        Ok(cw)
    }

    fn put16(&self, b: &mut Vec<u8>, v: u16) {
        match self.endian {
            Endian::Little => b.extend_from_slice(&v.to_le_bytes()),
            Endian::Big => b.extend_from_slice(&v.to_be_bytes()),
        }
    }
    fn put32(&self, b: &mut Vec<u8>, v: u32) {
        match self.endian {
            Endian::Little => b.extend_from_slice(&v.to_le_bytes()),
            Endian::Big => b.extend_from_slice(&v.to_be_bytes()),
        }
    }

    /// Adds a pcapng interface and returns its id (pcap files have exactly one).
    pub fn add_interface(&mut self, link: Link, nanos: bool) -> io::Result<u32> {
        if self.format == Format::Pcap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "pcap files have a single interface",
            ));
        }
        let mut b = Vec::with_capacity(32);
        self.put32(&mut b, 1);
        self.put32(&mut b, 32);
        self.put16(&mut b, link.linktype());
        self.put16(&mut b, 0);
        self.put32(&mut b, 262_144);
        // if_tsresol (code 9, length 1): 10^-6 or 10^-9, padded to 4 bytes.
        self.put16(&mut b, 9);
        self.put16(&mut b, 1);
        b.extend_from_slice(&[if nanos { 9 } else { 6 }, 0, 0, 0]);
        self.put16(&mut b, 0); // opt_endofopt
        self.put16(&mut b, 0);
        self.put32(&mut b, 32);
        self.w.write_all(&b)?;
        self.ifaces.push((link, nanos));
        Ok(self.ifaces.len() as u32 - 1)
    }

    /// Writes one IP packet on interface `iface`, framed with that interface's link header.
    /// `comment` is stored as a pcapng opt_comment (ignored in pcap files).
    pub fn write_ip(
        &mut self,
        iface: u32,
        ts: Ts,
        ip: &[u8],
        comment: Option<&str>,
    ) -> io::Result<()> {
        let (link, _) = *self.ifaces.get(iface as usize).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("no interface {iface}"))
        })?;
        let mut frame = std::mem::take(&mut self.buf);
        frame.clear();
        link.frame(ip, &mut frame);
        let r = self.write_frame(iface, ts, &frame, comment);
        self.buf = frame;
        r
    }

    /// Writes one link-layer frame as it is.
    pub fn write_frame(
        &mut self,
        iface: u32,
        ts: Ts,
        frame: &[u8],
        comment: Option<&str>,
    ) -> io::Result<()> {
        let (_, nanos) = *self.ifaces.get(iface as usize).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("no interface {iface}"))
        })?;
        let len = u32::try_from(frame.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        let secs = ts.0.div_euclid(1_000_000);
        let micros = ts.0.rem_euclid(1_000_000);
        let mut h = Vec::with_capacity(64);
        match self.format {
            Format::Pcap => {
                let frac = if nanos { micros * 1000 } else { micros };
                self.put32(&mut h, secs as u32);
                self.put32(&mut h, frac as u32);
                self.put32(&mut h, len);
                self.put32(&mut h, len);
                self.w.write_all(&h)?;
                self.w.write_all(frame)?;
            }
            Format::PcapNg => {
                let units = if nanos {
                    ts.0.saturating_mul(1000)
                } else {
                    ts.0
                } as u64;
                let pad = (4 - frame.len() % 4) % 4;
                let mut opts = Vec::new();
                if let Some(c) = comment {
                    let c = c.as_bytes();
                    let clen = c.len().min(65_000);
                    self.put16(&mut opts, 1);
                    self.put16(&mut opts, clen as u16);
                    opts.extend_from_slice(&c[..clen]);
                    opts.resize(opts.len() + (4 - clen % 4) % 4, 0);
                    self.put16(&mut opts, 0);
                    self.put16(&mut opts, 0);
                }
                let total = 32 + frame.len() + pad + opts.len();
                self.put32(&mut h, 6);
                self.put32(&mut h, total as u32);
                self.put32(&mut h, iface);
                self.put32(&mut h, (units >> 32) as u32);
                self.put32(&mut h, units as u32);
                self.put32(&mut h, len);
                self.put32(&mut h, len);
                self.w.write_all(&h)?;
                self.w.write_all(frame)?;
                self.w.write_all(&[0u8; 3][..pad])?;
                self.w.write_all(&opts)?;
                let mut t = Vec::with_capacity(4);
                self.put32(&mut t, total as u32);
                self.w.write_all(&t)?;
            }
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Flushes and gives the underlying writer back.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Copies the blocks of an existing capture into a pcapng stream, adding packet comments.
/// pcapng input is copied block by block in its own byte order (section headers get an
/// unknown section length, since comments change it); packets keep their bytes, lengths,
/// timestamps, interface and options, and a comment is appended as one more opt_comment.
/// pcap input becomes one little-endian section with one interface of the pcap's link
/// type, snapshot length and timestamp resolution.
pub struct PcapNgCopier<W: Write> {
    w: W,
    /// The pcap input has nanosecond timestamps (for converting its records).
    pcap_nanos: bool,
    /// A section header has been written.
    started: bool,
    buf: Vec<u8>,
}

/// Largest comment stored (an option length is 16 bits).
pub const MAX_COMMENT: usize = 65_000;

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn rd32(b: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let x: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(x)
    } else {
        u32::from_le_bytes(x)
    })
}

fn rd16(b: &[u8], at: usize, big_endian: bool) -> Option<u16> {
    let x: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if big_endian {
        u16::from_be_bytes(x)
    } else {
        u16::from_le_bytes(x)
    })
}

fn put16e(b: &mut Vec<u8>, v: u16, big_endian: bool) {
    b.extend_from_slice(&if big_endian {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    });
}

fn put32e(b: &mut Vec<u8>, v: u32, big_endian: bool) {
    b.extend_from_slice(&if big_endian {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    });
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

/// Appends an opt_comment (code 1) holding `c` (clipped to [`MAX_COMMENT`] bytes).
fn put_comment(b: &mut Vec<u8>, c: &str, big_endian: bool) {
    let c = clip(c, MAX_COMMENT).as_bytes();
    put16e(b, 1, big_endian);
    put16e(b, c.len() as u16, big_endian);
    b.extend_from_slice(c);
    b.resize(b.len() + pad4(c.len()), 0);
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

const SHB_TYPE: u32 = 0x0A0D_0D0A;

impl<W: Write> PcapNgCopier<W> {
    pub fn new(w: W) -> Self {
        PcapNgCopier {
            w,
            pcap_nanos: false,
            started: false,
            buf: Vec::with_capacity(2048),
        }
    }

    /// Starts the output for a classic pcap input: a section header and one interface.
    /// `linktype` is the pcap header's field; FCS bits in its upper half become if_fcslen.
    pub fn pcap_header(&mut self, linktype: u32, snaplen: u32, nanos: bool) -> io::Result<()> {
        self.pcap_nanos = nanos;
        self.started = true;
        let mut b = Vec::with_capacity(64);
        put32e(&mut b, SHB_TYPE, false);
        put32e(&mut b, 28, false);
        put32e(&mut b, 0x1A2B_3C4D, false);
        put16e(&mut b, 1, false);
        put16e(&mut b, 0, false);
        b.extend_from_slice(&u64::MAX.to_le_bytes()); // section length unknown
        put32e(&mut b, 28, false);
        let start = b.len();
        put32e(&mut b, 1, false);
        put32e(&mut b, 0, false); // length, set below
        put16e(&mut b, (linktype & 0xffff) as u16, false);
        put16e(&mut b, 0, false);
        put32e(&mut b, snaplen, false);
        // if_tsresol (code 9): 10^-6 or 10^-9.
        put16e(&mut b, 9, false);
        put16e(&mut b, 1, false);
        b.extend_from_slice(&[if nanos { 9 } else { 6 }, 0, 0, 0]);
        if linktype & 0x1000_0000 != 0 {
            // if_fcslen (code 13): frames end with an FCS of this many bytes.
            put16e(&mut b, 13, false);
            put16e(&mut b, 1, false);
            b.extend_from_slice(&[(linktype >> 29) as u8 * 2, 0, 0, 0]);
        }
        put16e(&mut b, 0, false);
        put16e(&mut b, 0, false);
        let total = (b.len() - start + 4) as u32;
        put32e(&mut b, total, false);
        b[start + 4..start + 8].copy_from_slice(&total.to_le_bytes());
        self.w.write_all(&b)
    }

    /// Copies a pcapng block that is not a packet (section header, interface description,
    /// statistics, name resolution, ...) as it is; a section header's length becomes
    /// "unknown".
    pub fn block(&mut self, raw: &[u8], big_endian: bool) -> io::Result<()> {
        if rd32(raw, 0, big_endian) == Some(SHB_TYPE) {
            if raw.len() < 28 {
                return Err(bad("section header block too short"));
            }
            self.started = true;
            self.w.write_all(&raw[..16])?;
            self.w.write_all(&[0xff; 8])?;
            return self.w.write_all(&raw[24..]);
        }
        if !self.started {
            return Err(bad("block before any section header"));
        }
        self.w.write_all(raw)
    }

    /// Copies an enhanced packet block as it is, appending `comment` to its options.
    pub fn enhanced(
        &mut self,
        raw: &[u8],
        big_endian: bool,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let Some(c) = comment else {
            return self.w.write_all(raw);
        };
        let caplen = rd32(raw, 20, big_endian).ok_or_else(|| bad("short packet block"))? as usize;
        let opts_at = 28 + caplen + pad4(caplen);
        let end = raw
            .len()
            .checked_sub(4)
            .ok_or_else(|| bad("short packet block"))?;
        if opts_at > end {
            return Err(bad("packet data runs past its block"));
        }
        // Keep the options already there, up to (not including) opt_endofopt.
        let opts = &raw[opts_at..end];
        let mut keep = 0usize;
        while keep + 4 <= opts.len() {
            let (Some(code), Some(len)) = (
                rd16(opts, keep, big_endian),
                rd16(opts, keep + 2, big_endian),
            ) else {
                break;
            };
            let next = keep + 4 + len as usize + pad4(len as usize);
            if code == 0 || next > opts.len() {
                break;
            }
            keep = next;
        }
        let mut b = std::mem::take(&mut self.buf);
        b.clear();
        b.extend_from_slice(&raw[..opts_at]);
        b.extend_from_slice(&opts[..keep]);
        put_comment(&mut b, c, big_endian);
        put16e(&mut b, 0, big_endian);
        put16e(&mut b, 0, big_endian);
        let total = b.len() as u32 + 4;
        put32e(&mut b, total, big_endian);
        let t = if big_endian {
            total.to_be_bytes()
        } else {
            total.to_le_bytes()
        };
        b[4..8].copy_from_slice(&t);
        let r = self.w.write_all(&b);
        self.buf = b;
        r
    }

    /// Writes a classic pcap record (`raw`: 16-byte header and data, in the file's byte
    /// order) as an enhanced packet block on interface 0, timestamp and lengths unchanged.
    pub fn pcap_record(
        &mut self,
        raw: &[u8],
        big_endian: bool,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let f = |at| rd32(raw, at, big_endian).ok_or_else(|| bad("short pcap record"));
        let (secs, frac, caplen, origlen) = (f(0)?, f(4)?, f(8)? as usize, f(12)?);
        let data = raw
            .get(16..16 + caplen)
            .ok_or_else(|| bad("pcap record shorter than its captured length"))?;
        let units: u64 = if self.pcap_nanos {
            1_000_000_000
        } else {
            1_000_000
        };
        let t = u64::from(secs) * units + u64::from(frac);
        self.epb(0, t, data, origlen, comment, false)
    }

    /// Writes a pcapng simple packet block (`raw`, in its section's byte order) as an
    /// enhanced packet block on interface 0 with timestamp 0 (simple blocks have none).
    pub fn simple(
        &mut self,
        raw: &[u8],
        data: &[u8],
        big_endian: bool,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let origlen = rd32(raw, 8, big_endian).ok_or_else(|| bad("short simple packet block"))?;
        self.epb(0, 0, data, origlen, comment, big_endian)
    }

    fn epb(
        &mut self,
        iface: u32,
        t: u64,
        data: &[u8],
        origlen: u32,
        comment: Option<&str>,
        big_endian: bool,
    ) -> io::Result<()> {
        if !self.started {
            return Err(bad("packet before any section header"));
        }
        let mut b = std::mem::take(&mut self.buf);
        b.clear();
        put32e(&mut b, 6, big_endian);
        put32e(&mut b, 0, big_endian); // length, set below
        put32e(&mut b, iface, big_endian);
        put32e(&mut b, (t >> 32) as u32, big_endian);
        put32e(&mut b, t as u32, big_endian);
        put32e(&mut b, data.len() as u32, big_endian);
        put32e(&mut b, origlen, big_endian);
        b.extend_from_slice(data);
        b.resize(b.len() + pad4(data.len()), 0);
        if let Some(c) = comment {
            put_comment(&mut b, c, big_endian);
            put16e(&mut b, 0, big_endian);
            put16e(&mut b, 0, big_endian);
        }
        let total = b.len() as u32 + 4;
        put32e(&mut b, total, big_endian);
        let tb = if big_endian {
            total.to_be_bytes()
        } else {
            total.to_le_bytes()
        };
        b[4..8].copy_from_slice(&tb);
        let r = self.w.write_all(&b);
        self.buf = b;
        r
    }

    /// Flushes and gives the underlying writer back.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// TCP flag sets used by [`TcpFlowWriter::segment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

/// Largest TCP payload one synthetic segment may carry (keeps the IPv4 length field valid).
pub const MAX_SEGMENT: usize = 65_000;

/// One synthetic TCP connection: builds IP packets with consistent sequence and
/// acknowledgement numbers and valid checksums. Directions are from the client's side.
#[derive(Debug, Clone)]
pub struct TcpFlowWriter {
    client: SocketAddr,
    server: SocketAddr,
    isn: [u32; 2],
    /// Stream bytes sent so far per direction (excluding SYN/FIN).
    sent: [u64; 2],
    syn_sent: [bool; 2],
    fin_sent: [bool; 2],
    ip_id: u16,
}

impl TcpFlowWriter {
    /// A connection between two addresses of the same family; initial sequence numbers are
    /// derived from the ports so that different flows differ.
    pub fn new(client: SocketAddr, server: SocketAddr) -> Self {
        let c = (client.port() as u32).wrapping_mul(0x9E37_79B9) ^ 0x1000_0000;
        let s = (server.port() as u32).wrapping_mul(0x85EB_CA6B) ^ (client.port() as u32) << 16;
        Self::with_isn(client, server, c, s)
    }

    /// Chooses the initial sequence numbers (e.g. close to 2^32 to test wrap-around).
    pub fn with_isn(
        client: SocketAddr,
        server: SocketAddr,
        isn_client: u32,
        isn_server: u32,
    ) -> Self {
        TcpFlowWriter {
            client,
            server,
            isn: [isn_client, isn_server],
            sent: [0, 0],
            syn_sent: [false, false],
            fin_sent: [false, false],
            ip_id: 1,
        }
    }

    pub fn client(&self) -> SocketAddr {
        self.client
    }
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Stream bytes written so far in `dir`.
    pub fn sent(&self, dir: Dir) -> u64 {
        self.sent[dir.index()]
    }

    /// Sequence number of stream offset `off` in `dir` (the SYN takes one number).
    pub fn seq_at(&self, dir: Dir, off: u64) -> u32 {
        self.isn[dir.index()]
            .wrapping_add(1)
            .wrapping_add(off as u32)
    }

    fn next_ack(&self, dir: Dir) -> u32 {
        let o = dir.flip();
        let fin = u32::from(self.fin_sent[o.index()]);
        self.seq_at(o, self.sent[o.index()]).wrapping_add(fin)
    }

    /// Builds one IP packet from `dir`'s side with explicit sequence number and flags.
    /// Errors only when the payload is larger than [`MAX_SEGMENT`] or the two addresses
    /// are of different families.
    pub fn packet(
        &mut self,
        dir: Dir,
        seq: u32,
        flags: Flags,
        ack: u32,
        payload: &[u8],
    ) -> io::Result<Vec<u8>> {
        if payload.len() > MAX_SEGMENT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "segment payload too large",
            ));
        }
        let (src, dst) = match dir {
            Dir::C2s => (self.client, self.server),
            Dir::S2c => (self.server, self.client),
        };
        let ip = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "mixed IPv4/IPv6 flow",
                ))
            }
        };
        let mut b = ip.tcp(src.port(), dst.port(), seq, 65_535);
        if flags.syn {
            b = b.syn();
        }
        if flags.fin {
            b = b.fin();
        }
        if flags.rst {
            b = b.rst();
        }
        if flags.psh {
            b = b.psh();
        }
        if flags.ack {
            b = b.ack(ack);
        }
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload)
            .map_err(|e| io::Error::other(e.to_string()))?;
        // Give IPv4 packets distinct identification numbers (etherparse writes 0).
        if out.first().is_some_and(|v| v >> 4 == 4) && out.len() >= 20 {
            let id = self.ip_id;
            self.ip_id = self.ip_id.wrapping_add(1);
            out[4..6].copy_from_slice(&id.to_be_bytes());
            set_ipv4_checksum(&mut out);
        }
        Ok(out)
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self) -> io::Result<Vec<(Dir, Vec<u8>)>> {
        let syn = self.packet(
            Dir::C2s,
            self.isn[0],
            Flags {
                syn: true,
                ..Flags::default()
            },
            0,
            &[],
        )?;
        let synack = self.packet(
            Dir::S2c,
            self.isn[1],
            Flags {
                syn: true,
                ack: true,
                ..Flags::default()
            },
            self.isn[0].wrapping_add(1),
            &[],
        )?;
        self.syn_sent = [true, true];
        let ack = self.packet(
            Dir::C2s,
            self.seq_at(Dir::C2s, 0),
            Flags {
                ack: true,
                ..Flags::default()
            },
            self.seq_at(Dir::S2c, 0),
            &[],
        )?;
        Ok(vec![(Dir::C2s, syn), (Dir::S2c, synack), (Dir::C2s, ack)])
    }

    /// A data segment carrying `payload` at stream offset `off` of `dir`, without
    /// advancing the flow (for retransmissions, overlaps and reordering).
    pub fn segment_at(&mut self, dir: Dir, off: u64, payload: &[u8]) -> io::Result<Vec<u8>> {
        let ack = self.next_ack(dir);
        let flags = Flags {
            ack: true,
            psh: true,
            ..Flags::default()
        };
        self.packet(dir, self.seq_at(dir, off), flags, ack, payload)
    }

    /// Sends `data` in `dir` as segments of at most `seg` bytes; advances the flow.
    pub fn data(&mut self, dir: Dir, data: &[u8], seg: usize) -> io::Result<Vec<Vec<u8>>> {
        let seg = seg.clamp(1, MAX_SEGMENT);
        let mut out = Vec::with_capacity(data.len() / seg + 1);
        for chunk in data.chunks(seg) {
            let off = self.sent[dir.index()];
            out.push(self.segment_at(dir, off, chunk)?);
            self.sent[dir.index()] += chunk.len() as u64;
        }
        Ok(out)
    }

    /// Marks `n` bytes of `dir` as sent without building packets (their loss is simulated).
    pub fn skip(&mut self, dir: Dir, n: u64) {
        self.sent[dir.index()] += n;
    }

    /// A FIN from `dir` (with ACK).
    pub fn fin(&mut self, dir: Dir) -> io::Result<Vec<u8>> {
        let seq = self.seq_at(dir, self.sent[dir.index()]);
        let ack = self.next_ack(dir);
        let p = self.packet(
            dir,
            seq,
            Flags {
                fin: true,
                ack: true,
                ..Flags::default()
            },
            ack,
            &[],
        )?;
        self.fin_sent[dir.index()] = true;
        Ok(p)
    }

    /// A pure ACK from `dir` acknowledging everything the other side sent.
    pub fn ack(&mut self, dir: Dir) -> io::Result<Vec<u8>> {
        let seq = self
            .seq_at(dir, self.sent[dir.index()])
            .wrapping_add(u32::from(self.fin_sent[dir.index()]));
        let ack = self.next_ack(dir);
        self.packet(
            dir,
            seq,
            Flags {
                ack: true,
                ..Flags::default()
            },
            ack,
            &[],
        )
    }

    /// An RST from `dir`.
    pub fn rst(&mut self, dir: Dir) -> io::Result<Vec<u8>> {
        let seq = self.seq_at(dir, self.sent[dir.index()]);
        let ack = self.next_ack(dir);
        self.packet(
            dir,
            seq,
            Flags {
                rst: true,
                ack: true,
                ..Flags::default()
            },
            ack,
            &[],
        )
    }

    /// FIN from `dir`, FIN+ACK back, last ACK: an orderly close.
    pub fn close(&mut self, dir: Dir) -> io::Result<Vec<(Dir, Vec<u8>)>> {
        let a = self.fin(dir)?;
        let b = self.fin(dir.flip())?;
        let c = self.ack(dir)?;
        Ok(vec![(dir, a), (dir.flip(), b), (dir, c)])
    }
}

/// Recomputes the header checksum of an IPv4 packet in place.
pub fn set_ipv4_checksum(p: &mut [u8]) {
    let ihl = usize::from(p.first().map_or(0, |b| b & 0x0f)) * 4;
    if ihl < 20 || p.len() < ihl {
        return;
    }
    p[10] = 0;
    p[11] = 0;
    let mut sum: u32 = 0;
    for w in p[..ihl].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Splits an IPv4 packet into fragments whose payloads hold at most `max` bytes (rounded
/// down to a multiple of 8). Packets that are not IPv4 or already small are returned whole.
pub fn fragment_ipv4(p: &[u8], max: usize) -> Vec<Vec<u8>> {
    let ihl = usize::from(p.first().map_or(0, |b| b & 0x0f)) * 4;
    let step = (max / 8) * 8;
    if p.first().is_none_or(|b| b >> 4 != 4)
        || ihl < 20
        || p.len() <= ihl
        || step == 0
        || p.len() - ihl <= step
    {
        return vec![p.to_vec()];
    }
    let body = &p[ihl..];
    let mut out = Vec::new();
    for (i, chunk) in body.chunks(step).enumerate() {
        let off = i * step;
        let last = off + chunk.len() == body.len();
        let mut f = Vec::with_capacity(ihl + chunk.len());
        f.extend_from_slice(&p[..ihl]);
        f.extend_from_slice(chunk);
        let total = (ihl + chunk.len()) as u16;
        f[2..4].copy_from_slice(&total.to_be_bytes());
        let frag = ((off / 8) as u16) | if last { 0 } else { 0x2000 };
        f[6..8].copy_from_slice(&frag.to_be_bytes());
        set_ipv4_checksum(&mut f);
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:1863".parse().unwrap(),
        )
    }

    #[test]
    fn handshake_and_data_have_consistent_numbers() {
        let (c, s) = addrs();
        let mut f = TcpFlowWriter::with_isn(c, s, 100, 5000);
        let hs = f.handshake().unwrap();
        fn tcp(p: &[u8]) -> etherparse::SlicedPacket<'_> {
            etherparse::SlicedPacket::from_ip(p).unwrap()
        }
        let syn = tcp(&hs[0].1);
        let Some(etherparse::TransportSlice::Tcp(t)) = syn.transport else {
            panic!("not tcp")
        };
        assert!(t.syn() && !t.ack());
        assert_eq!(t.sequence_number(), 100);
        let Some(etherparse::TransportSlice::Tcp(t)) = tcp(&hs[1].1).transport else {
            panic!()
        };
        assert!(t.syn() && t.ack());
        assert_eq!(
            (t.sequence_number(), t.acknowledgment_number()),
            (5000, 101)
        );
        let segs = f.data(Dir::C2s, b"VER 1 MSNP8 CVR0\r\n", 5).unwrap();
        assert_eq!(segs.len(), 4);
        let Some(etherparse::TransportSlice::Tcp(t)) = tcp(&segs[1]).transport else {
            panic!()
        };
        assert_eq!(t.sequence_number(), 106);
        assert_eq!(t.acknowledgment_number(), 5001);
        assert_eq!(t.payload(), b" MSNP");
        // Checksums verified against an independent computation by etherparse.
        let sliced = tcp(&segs[1]);
        let Some(etherparse::NetSlice::Ipv4(ip)) = sliced.net else {
            panic!()
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let th = t.to_header();
        assert_eq!(th.checksum, th.calc_checksum_ipv4(&h, t.payload()).unwrap());
        let fin = f.fin(Dir::C2s).unwrap();
        let Some(etherparse::TransportSlice::Tcp(t)) = tcp(&fin).transport else {
            panic!()
        };
        assert!(t.fin());
        assert_eq!(t.sequence_number(), 101 + 18);
    }

    #[test]
    fn pcap_header_and_record_layout() {
        let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, Link::Ethernet).unwrap();
        w.write_ip(0, Ts(1_500_000), &[0x45; 20], None).unwrap();
        let b = w.into_inner().unwrap();
        assert_eq!(&b[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1);
        // record: ts_sec 1, ts_usec 500000, caplen 34 (14 + 20)
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(b[28..32].try_into().unwrap()), 500_000);
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 34);
        assert_eq!(b.len(), 24 + 16 + 34);
    }

    #[test]
    fn pcapng_blocks_are_padded_and_carry_comments() {
        let mut w = CaptureWriter::new(Vec::new(), Format::PcapNg, Link::Raw).unwrap();
        w.write_ip(0, Ts(0), &[0x45; 21], Some("hi")).unwrap();
        let b = w.into_inner().unwrap();
        assert_eq!(b.len() % 4, 0);
        // SHB 28 + IDB 32 + EPB (32 + 24 data incl. pad + 4+4 comment + 4 end-of-options)
        assert_eq!(b.len(), 28 + 32 + 32 + 24 + 8 + 4);
        let epb = &b[60..];
        assert_eq!(u32::from_le_bytes(epb[0..4].try_into().unwrap()), 6);
        let total = u32::from_le_bytes(epb[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, epb.len());
        assert_eq!(&epb[total - 4..], &epb[4..8]);
        assert!(epb.windows(2).any(|w| w == b"hi"));
    }

    #[test]
    fn ipv4_fragments_cover_the_packet() {
        let (c, s) = addrs();
        let mut f = TcpFlowWriter::new(c, s);
        let p = f.segment_at(Dir::C2s, 0, &[b'x'; 100]).unwrap();
        let frags = fragment_ipv4(&p, 40);
        assert_eq!(frags.len(), 3); // 20-byte TCP header + 100 data bytes in 40-byte pieces
        assert_eq!(frags[0][6] & 0x20, 0x20);
        assert_eq!(frags[2][6] & 0x20, 0);
        assert_eq!(u16::from_be_bytes([frags[2][6], frags[2][7]]) & 0x1fff, 10);
        // 80 / 8
    }
}
