//! Offline captures: pcap/pcapng reading, link layers, IP defragmentation, TCP reassembly,
//! MSNP stream detection, and synthetic capture writing. Decoding itself is the
//! protocol module's job; nothing here interprets MSNP beyond finding where streams start.
//! Files are streamed through a bounded buffer, never read whole.

pub mod decode;
pub mod httpconn;
pub mod packet;
pub mod reasm;
pub mod synth;
pub mod tracker;
pub mod writer;

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};

use crate::event::{Event, Ts};
use crate::protocol::Tables;

pub use decode::FlowPending;
pub use tracker::{FlowOptions, FlowStats, StreamEvent, Tracker};

/// Options of a capture read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub flows: FlowOptions,
    /// Id of the first MSNP connection (to number several files as one run).
    pub first_conn: u64,
}

/// What a read went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// File bytes consumed.
    pub bytes: u64,
    /// Packet records (pcap records, pcapng enhanced/simple packet blocks).
    pub packets: u64,
    /// Frames that carried no IPv4/IPv6 TCP (ARP, UDP, ...).
    pub skipped_frames: u64,
    /// IP fragments still incomplete at the end or given up.
    pub fragments_dropped: u64,
    pub flows: FlowStats,
    /// The id the next connection would get (for numbering the next file).
    pub next_conn: u64,
}

/// A capture that could not be read to its end. Everything decoded before the problem
/// has already been handed to the event callback.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: at byte offset {offset}: {message}")]
    Format {
        path: String,
        offset: u64,
        message: String,
    },
    #[error("writing events: {0}")]
    Output(io::Error),
}

/// Largest single record accepted: beyond this a length field is taken as corrupt.
const MAX_RECORD: usize = 16 << 20;
const BUF: usize = 256 << 10;

struct Iface {
    linktype: u16,
    /// Timestamp units per second.
    units: u64,
    offset_secs: i64,
}

fn ts_from_units(t: u64, units: u64, offset_secs: i64) -> Ts {
    let (secs, frac) = match units {
        1_000_000 => ((t / 1_000_000) as i64, (t % 1_000_000) as i64),
        1_000_000_000 => (
            (t / 1_000_000_000) as i64,
            (t % 1_000_000_000 / 1000) as i64,
        ),
        u => (
            (t / u) as i64,
            (u128::from(t % u) * 1_000_000 / u128::from(u)) as i64,
        ),
    };
    Ts(secs
        .saturating_add(offset_secs)
        .saturating_mul(1_000_000)
        .saturating_add(frac))
}

/// Reads one capture file and hands every event to `sink`; returns the counts.
pub fn read_path(
    path: &Path,
    tables: Arc<Tables>,
    opts: &ReadOptions,
    sink: &mut decode::Sink<'_>,
) -> Result<ReadStats, CaptureError> {
    read_path_with_progress(path, tables, opts, sink, &mut |_| {})
}

/// Every event of a capture file, owned (for tests and small captures: it holds them all;
/// [`read_path`] streams).
pub fn read_events(
    path: &Path,
    tables: Arc<Tables>,
    opts: &ReadOptions,
) -> Result<Vec<Event<'static>>, CaptureError> {
    let mut evs = Vec::new();
    read_path(path, tables, opts, &mut |e| {
        evs.push(e.clone().into_owned());
        Ok(())
    })?;
    Ok(evs)
}

/// As [`read_path`], calling `progress` with the bytes consumed so far now and then.
pub fn read_path_with_progress(
    path: &Path,
    tables: Arc<Tables>,
    opts: &ReadOptions,
    sink: &mut decode::Sink<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<ReadStats, CaptureError> {
    let (name, f, kept) = open_file(path)?;
    read_from(&name, f, tables, opts, sink, progress).map_err(|e| kept.explain(e))
}

/// Whether the first bytes are a gzip member's (RFC 1952: 1f 8b, then deflate's method 8).
pub fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b, 0x08])
}

/// Bytes looked at before a reader is handed on: pcap-parser takes its file header from
/// one read, so the first read must hold it whole.
pub const HEAD: usize = 512;

/// The bytes of one input whose first `head` bytes were read (up to [`HEAD`] of them):
/// through a streaming gzip decompressor when they start a gzip member (captures and logs
/// are often kept as `.pcap.gz`). Returns whether it was gzip, the first bytes of what is
/// to be read (again up to [`HEAD`]) and the rest.
pub fn decompressed<'a>(
    head: Vec<u8>,
    rest: impl Read + 'a,
) -> io::Result<(bool, Vec<u8>, Box<dyn Read + 'a>)> {
    if !is_gzip(&head) {
        return Ok((false, head, Box::new(rest)));
    }
    let mut inner = flate2::read::MultiGzDecoder::new(io::Cursor::new(head).chain(rest));
    let mut first = Vec::with_capacity(HEAD);
    (&mut inner).take(HEAD as u64).read_to_end(&mut first)?;
    Ok((true, first, Box::new(inner)))
}

/// Opens a file, decompressed when it is gzip (see [`decompressed`]); true when it was.
pub fn open_decompressed(path: &Path) -> io::Result<(bool, Box<dyn Read>)> {
    let mut f = File::open(path)?;
    let mut head = Vec::with_capacity(HEAD);
    (&mut f).take(HEAD as u64).read_to_end(&mut head)?;
    let (gz, head, rest) = decompressed(head, f)?;
    Ok((gz, Box::new(io::Cursor::new(head).chain(rest))))
}

/// A capture file opened by [`open_file`]: its name for messages, the reader, and what
/// explains a failed read.
type Opened = (String, KeepErr<Box<dyn Read>>, Kept);

/// Opens a capture file for the path entry points.
fn open_file(path: &Path) -> Result<Opened, CaptureError> {
    let name = path.display().to_string();
    let (name, r) = match open_decompressed(path) {
        // Offsets in later messages count decompressed bytes: the name says so.
        Ok((true, r)) => (format!("{name} (gunzipped)"), r),
        Ok((false, r)) => (name, r),
        Err(source) => return Err(CaptureError::Io { path: name, source }),
    };
    let (r, kept) = KeepErr::new(r);
    Ok((name, r, kept))
}

/// Reads a capture from any byte source; `name` is used in error messages.
pub fn read_from<R: Read>(
    name: &str,
    input: R,
    tables: Arc<Tables>,
    opts: &ReadOptions,
    sink: &mut decode::Sink<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<ReadStats, CaptureError> {
    let (stats, r) = read_core(name, input, tables, opts, sink, progress, None);
    r.map(|()| stats)
}

/// As [`read_from`], but the counts come back whatever happened: a capture cut short
/// still says how many packets and connections it held before the problem.
pub fn read_from_counted<R: Read>(
    name: &str,
    input: R,
    tables: Arc<Tables>,
    opts: &ReadOptions,
    sink: &mut decode::Sink<'_>,
    progress: &mut dyn FnMut(u64),
) -> (ReadStats, Result<(), CaptureError>) {
    read_core(name, input, tables, opts, sink, progress, None)
}

/// Reads one capture file like [`read_path`], but hands over every block of the file in
/// order: packets with the events processing them produced, other blocks as they are.
/// Events that no packet produced (connections closed at the end of the capture) come
/// last, with [`Record::End`].
pub fn read_with_packets(
    path: &Path,
    tables: Arc<Tables>,
    opts: &ReadOptions,
    on_record: &mut dyn FnMut(Record<'_>, &[Event<'static>]) -> io::Result<()>,
) -> Result<ReadStats, CaptureError> {
    let (name, f, kept) = open_file(path)?;
    read_records_from(&name, f, tables, opts, on_record).map_err(|e| kept.explain(e))
}

/// As [`read_with_packets`], from any byte source; `name` is used in error messages.
pub fn read_records_from<R: Read>(
    name: &str,
    input: R,
    tables: Arc<Tables>,
    opts: &ReadOptions,
    on_record: &mut dyn FnMut(Record<'_>, &[Event<'static>]) -> io::Result<()>,
) -> Result<ReadStats, CaptureError> {
    let evs = RefCell::new(Vec::new());
    let mut sink = |e: &mut Event<'_>| {
        evs.borrow_mut().push(e.clone().into_owned());
        Ok(())
    };
    let mut observe = |r: Record<'_>| {
        let batch = std::mem::take(&mut *evs.borrow_mut());
        on_record(r, &batch)
    };
    let (stats, r) = read_core(
        name,
        input,
        tables,
        opts,
        &mut sink,
        &mut |_| {},
        Some(&mut observe),
    );
    let rest = std::mem::take(&mut *evs.borrow_mut());
    on_record(Record::End, &rest).map_err(CaptureError::Output)?;
    r.map(|()| stats)
}

/// How a packet is stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A classic pcap record: 16-byte header (seconds, fraction, captured and original
    /// length) then the data.
    Pcap,
    /// A pcapng enhanced packet block.
    Enhanced,
    /// A pcapng simple packet block (no timestamp, interface 0).
    Simple,
}

/// One block of a capture file as [`read_with_packets`] hands it over.
#[derive(Debug)]
pub enum Record<'a> {
    /// The header of a classic pcap file.
    PcapHeader {
        /// The link type field as stored (its upper bits may hold FCS information).
        linktype: u32,
        snaplen: u32,
        /// Timestamps are in nanoseconds (else microseconds).
        nanos: bool,
    },
    /// A pcapng block that is not a packet (section header, interface description,
    /// statistics, name resolution...), exactly as in the file.
    Block {
        raw: &'a [u8],
        big_endian: bool,
    },
    Packet(PacketRecord<'a>),
    /// The end of the file (or of what could be read of it).
    End,
}

/// One packet record and what decoding it left behind.
#[derive(Debug)]
pub struct PacketRecord<'a> {
    /// 1-based number of the packet in the file.
    pub number: u64,
    pub kind: RecordKind,
    /// Interface id within the current pcapng section (0 in pcap files).
    pub iface: u32,
    pub ts: Ts,
    /// The captured frame.
    pub data: &'a [u8],
    /// The whole record as in the file (pcap: record header and data; pcapng: the block).
    pub raw: &'a [u8],
    /// Byte order of the file or section.
    pub big_endian: bool,
    /// What the packet's MSNP connection still holds after it was processed.
    pub pending: Option<Box<FlowPending>>,
}

/// What the loop learns of a block while it is parsed, for the observer afterwards.
enum Seen {
    PcapHeader {
        linktype: u32,
        snaplen: u32,
        nanos: bool,
    },
    Block,
    Packet {
        kind: RecordKind,
        iface: u32,
        ts: Ts,
        data_off: usize,
        data_len: usize,
        pending: Option<Box<FlowPending>>,
    },
}

/// Called by the reading loop with each block, after the block's events went to the sink.
type Observer<'o> = dyn FnMut(Record<'_>) -> io::Result<()> + 'o;

/// Called with each packet's link type, timestamp and frame; what its connection still
/// holds comes back for the observer (when there is one).
type OnFrame<'f> = dyn FnMut(u16, Ts, &[u8]) -> Result<Option<Box<FlowPending>>, CaptureError> + 'f;

fn read_core<R: Read>(
    name: &str,
    input: R,
    tables: Arc<Tables>,
    opts: &ReadOptions,
    sink: &mut decode::Sink<'_>,
    progress: &mut dyn FnMut(u64),
    observer: Option<&mut Observer<'_>>,
) -> (ReadStats, Result<(), CaptureError>) {
    let watch = observer.is_some();
    let mut flows = Tracker::new(tables.clone(), opts.flows.clone(), opts.first_conn.max(1));
    let mut dec = decode::Decoder::new(tables, flows.ids());
    let mut stats = ReadStats::default();
    let result = frames_core(
        name,
        input,
        &mut |lt, ts, data| {
            decode::frame(&mut flows, &mut dec, sink, lt, ts, data)
                .map_err(CaptureError::Output)?;
            Ok(if watch {
                dec.pending(&flows).map(Box::new)
            } else {
                None
            })
        },
        progress,
        observer,
        &mut stats,
    );
    // Whatever happened, decode what is buffered and close every connection.
    flows.finish(&mut |e| dec.on(e, sink));
    dec.finish(sink);
    let closed = match dec.take_error() {
        Some(e) => Err(CaptureError::Output(e)),
        None => Ok(()),
    };
    stats.fragments_dropped = flows.fragments_dropped();
    stats.skipped_frames = flows.stats().skipped_frames;
    stats.flows = flows.stats().clone();
    stats.next_conn = flows.next_id();
    (stats, result.and(closed))
}

/// Reads a capture from any byte source and hands every packet to `on_frame` (link
/// type, timestamp, captured bytes); `name` is used in error messages. Nothing is
/// parsed beyond the file's records.
pub fn frames<R: Read>(
    name: &str,
    input: R,
    on_frame: &mut dyn FnMut(u16, Ts, &[u8]),
) -> Result<ReadStats, CaptureError> {
    let mut stats = ReadStats::default();
    frames_core(
        name,
        input,
        &mut |lt, ts, data| {
            on_frame(lt, ts, data);
            Ok(None)
        },
        &mut |_| {},
        None,
        &mut stats,
    )?;
    Ok(stats)
}

/// Reads a capture from any byte source through a [`Tracker`]: every stream event goes
/// to `out`, with no MSNP decoding. Connections still open at the end (or at an error)
/// are closed.
pub fn track<R: Read>(
    name: &str,
    input: R,
    tables: Arc<Tables>,
    opts: &ReadOptions,
    out: &mut dyn FnMut(StreamEvent<'_>),
) -> Result<ReadStats, CaptureError> {
    let mut flows = Tracker::new(tables, opts.flows.clone(), opts.first_conn.max(1));
    let mut stats = ReadStats::default();
    let result = frames_core(
        name,
        input,
        &mut |lt, ts, data| {
            flows.packet(lt, ts, data, out);
            Ok(None)
        },
        &mut |_| {},
        None,
        &mut stats,
    );
    flows.finish(out);
    stats.fragments_dropped = flows.fragments_dropped();
    stats.skipped_frames = flows.stats().skipped_frames;
    stats.flows = flows.stats().clone();
    stats.next_conn = flows.next_id();
    result.map(|()| stats)
}

/// The reading loop: records, interfaces, errors with their offsets.
fn frames_core<R: Read>(
    name: &str,
    input: R,
    on_frame: &mut OnFrame<'_>,
    progress: &mut dyn FnMut(u64),
    mut observer: Option<&mut Observer<'_>>,
    stats: &mut ReadStats,
) -> Result<(), CaptureError> {
    let watch = observer.is_some();
    let fmt_err = |offset: u64, message: String| CaptureError::Format {
        path: name.to_string(),
        offset,
        message,
    };
    (|| -> Result<(), CaptureError> {
        let mut reader = match create_reader(BUF, input) {
            Ok(r) => r,
            Err(PcapError::HeaderNotRecognized) => {
                // A regular file can be read again to tell a cut header from another format
                // (not a FIFO: opening one again would wait for a writer).
                let mut head = Vec::new();
                if std::fs::metadata(name).is_ok_and(|m| m.is_file()) {
                    let _ =
                        std::fs::File::open(name).and_then(|f| f.take(64).read_to_end(&mut head));
                }
                return Err(fmt_err(0, unrecognized_header(&head)));
            }
            Err(PcapError::Eof) => return Err(fmt_err(0, "empty file".into())),
            Err(PcapError::Incomplete(_)) | Err(PcapError::UnexpectedEof) => {
                return Err(fmt_err(0, "file too short for a capture header".into()))
            }
            Err(PcapError::ReadError) => {
                return Err(CaptureError::Io {
                    path: name.to_string(),
                    source: io::Error::other("read failed"),
                })
            }
            Err(e) => return Err(fmt_err(0, format!("bad capture header: {e:?}"))),
        };
        let mut ifaces: Vec<Iface> = Vec::new();
        // (pcapng, big-endian) once the file header is known: to read length fields.
        let mut layout = (false, false);
        let mut cap = BUF;
        let mut last_progress = 0u64;
        // Classic pcap with the standard record layout: Some(big-endian) once its header is
        // read. Its records are then cut straight from the reader's buffer (16-byte
        // header, data), which costs a fraction of a parsed block; whatever that fast path
        // cannot take whole (the last bytes of the buffer, a corrupt length, the end of
        // the file) goes through the reader as before, with its errors.
        let mut plain_pcap: Option<bool> = None;
        loop {
            if let (Some(be), false, Some(i)) = (plain_pcap, watch, ifaces.first()) {
                let buf = reader.data();
                let mut off = 0usize;
                let u32_at = |b: &[u8], k: usize| {
                    let w = [b[k], b[k + 1], b[k + 2], b[k + 3]];
                    if be {
                        u32::from_be_bytes(w)
                    } else {
                        u32::from_le_bytes(w)
                    }
                };
                while buf.len() - off >= 16 {
                    let h = &buf[off..off + 16];
                    let caplen = u32_at(h, 8) as usize;
                    let Some(data) = buf.get(off + 16..off + 16 + caplen) else {
                        break;
                    };
                    let (sec, usec) = (u32_at(h, 0), u32_at(h, 4));
                    let frac = match i.units {
                        1_000_000 => u64::from(usec),
                        _ => u64::from(usec) / 1000,
                    };
                    stats.packets += 1;
                    on_frame(
                        i.linktype,
                        Ts::from_secs_micros(i64::from(sec), frac as u32),
                        data,
                    )?;
                    off += 16 + caplen;
                }
                if off > 0 {
                    reader.consume(off);
                    let pos = reader.consumed() as u64;
                    if pos - last_progress >= 1 << 20 {
                        last_progress = pos;
                        progress(pos);
                    }
                }
            }
            let at = reader.consumed() as u64;
            match reader.next() {
                Ok((len, block)) => {
                    let mut seen = Seen::Block;
                    let pkt: Option<(u16, Ts, &[u8], RecordKind, u32)> = match &block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            layout = (false, h.is_bigendian());
                            let standard = matches!(
                                h.magic_number,
                                0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1
                            );
                            plain_pcap = (standard && packet::link_supported(h.network.0 as u16))
                                .then_some(h.is_bigendian());
                            seen = Seen::PcapHeader {
                                linktype: h.network.0 as u32,
                                snaplen: h.snaplen,
                                nanos: h.is_nanosecond_precision(),
                            };
                            let units = if h.is_nanosecond_precision() {
                                1_000_000_000
                            } else {
                                1_000_000
                            };
                            ifaces = vec![Iface {
                                linktype: h.network.0 as u16,
                                units,
                                offset_secs: 0,
                            }];
                            None
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let i = ifaces.first().ok_or_else(|| {
                                fmt_err(at, "record before the file header".into())
                            })?;
                            // Dividing by a constant is a multiply; by a variable, a division
                            // per packet.
                            let frac = match i.units {
                                1_000_000 => u64::from(b.ts_usec),
                                1_000_000_000 => u64::from(b.ts_usec) / 1000,
                                u => u64::from(b.ts_usec) * 1_000_000 / u,
                            };
                            let ts = Ts::from_secs_micros(i64::from(b.ts_sec), frac as u32);
                            Some((i.linktype, ts, b.data, RecordKind::Pcap, 0))
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                            layout = (true, shb.big_endian());
                            ifaces.clear();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            let units = pcap_parser::pcapng::build_ts_resolution(idb.if_tsresol)
                                .filter(|&u| u > 0)
                                .ok_or_else(|| {
                                    fmt_err(
                                        at,
                                        format!("bad timestamp resolution {:#x}", idb.if_tsresol),
                                    )
                                })?;
                            ifaces.push(Iface {
                                linktype: idb.linktype.0 as u16,
                                units,
                                offset_secs: idb.if_tsoffset,
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let i = ifaces.get(epb.if_id as usize).ok_or_else(|| {
                                fmt_err(
                                    at,
                                    format!(
                                        "packet on interface {} which was never described",
                                        epb.if_id
                                    ),
                                )
                            })?;
                            let t = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let ts = ts_from_units(t, i.units, i.offset_secs);
                            let n = (epb.caplen as usize).min(epb.data.len());
                            Some((
                                i.linktype,
                                ts,
                                &epb.data[..n],
                                RecordKind::Enhanced,
                                epb.if_id,
                            ))
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            let i = ifaces
                                .first()
                                .ok_or_else(|| fmt_err(at, "packet before any interface".into()))?;
                            // Simple packets carry no timestamp; their data is padded
                            // to 4 bytes and captured up to the original length.
                            let n = (spb.origlen as usize).min(spb.data.len());
                            Some((i.linktype, Ts(0), &spb.data[..n], RecordKind::Simple, 0))
                        }
                        PcapBlockOwned::NG(_) => None,
                    };
                    if let Some((lt, ts, data, kind, iface)) = pkt {
                        stats.packets += 1;
                        if !packet::link_supported(lt) {
                            return Err(fmt_err(
                                at,
                                format!("unsupported {}", packet::link_name(lt)),
                            ));
                        }
                        let pending = on_frame(lt, ts, data)?;
                        if watch {
                            seen = Seen::Packet {
                                kind,
                                iface,
                                ts,
                                data_off: match kind {
                                    RecordKind::Pcap => 16,
                                    RecordKind::Enhanced => 28,
                                    RecordKind::Simple => 12,
                                },
                                data_len: data.len(),
                                pending,
                            };
                        }
                    }
                    drop(block);
                    if let Some(obs) = observer.as_mut() {
                        let raw = reader.data().get(..len).unwrap_or_default();
                        let big_endian = layout.1;
                        let rec = match seen {
                            Seen::PcapHeader {
                                linktype,
                                snaplen,
                                nanos,
                            } => Record::PcapHeader {
                                linktype,
                                snaplen,
                                nanos,
                            },
                            Seen::Block => Record::Block { raw, big_endian },
                            Seen::Packet {
                                kind,
                                iface,
                                ts,
                                data_off,
                                data_len,
                                pending,
                            } => {
                                let data =
                                    raw.get(data_off..data_off + data_len).ok_or_else(|| {
                                        fmt_err(at, "packet data outside its record".into())
                                    })?;
                                Record::Packet(PacketRecord {
                                    number: stats.packets,
                                    kind,
                                    iface,
                                    ts,
                                    data,
                                    raw,
                                    big_endian,
                                    pending,
                                })
                            }
                        };
                        obs(rec).map_err(CaptureError::Output)?;
                    }
                    reader.consume(len);
                    let pos = reader.consumed() as u64;
                    if pos - last_progress >= 1 << 20 {
                        last_progress = pos;
                        progress(pos);
                    }
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => {
                    reader.refill().map_err(|e| CaptureError::Io {
                        path: name.to_string(),
                        source: io::Error::other(format!("{e:?}")),
                    })?;
                }
                Err(PcapError::BufferTooSmall) => {
                    if let Some(msg) = absurd_length(reader.data(), layout) {
                        return Err(fmt_err(at, msg));
                    }
                    if cap >= MAX_RECORD || !reader.grow(cap * 2) {
                        return Err(fmt_err(
                            at,
                            format!(
                                "record longer than {} MiB: corrupt length field",
                                MAX_RECORD >> 20
                            ),
                        ));
                    }
                    cap *= 2;
                    reader.refill().map_err(|e| CaptureError::Io {
                        path: name.to_string(),
                        source: io::Error::other(format!("{e:?}")),
                    })?;
                }
                Err(PcapError::UnexpectedEof) => {
                    let left = reader.data().len();
                    let msg = absurd_length(reader.data(), layout).unwrap_or_else(|| {
                        format!("capture truncated in the middle of a record ({left} bytes left)")
                    });
                    return Err(fmt_err(at, msg));
                }
                Err(e) => {
                    let msg = match e {
                        PcapError::NomError(_, k) | PcapError::OwnedNomError(_, k) => {
                            malformed(reader.data(), layout, k)
                        }
                        other => format!("{other:?}"),
                    };
                    return Err(fmt_err(at, msg));
                }
            }
        }
        stats.bytes = reader.consumed() as u64;
        Ok(())
    })()
}

/// A reader that keeps its last error: pcap-parser reports a failed read as a bare
/// `ReadError`, so the reading loop cannot say what failed (a disk error, a corrupt or cut
/// gzip stream); [`Kept::explain`] puts the kept error back into the message. It wraps the
/// input outside the reading loop, whose inlining (and 0.5% of a `read`) it would change.
pub(crate) struct KeepErr<R> {
    inner: R,
    kept: Kept,
}

/// The error a [`KeepErr`] kept.
#[derive(Clone, Default)]
pub(crate) struct Kept(std::rc::Rc<RefCell<Option<io::Error>>>);

impl<R: Read> KeepErr<R> {
    pub(crate) fn new(inner: R) -> (KeepErr<R>, Kept) {
        let kept = Kept::default();
        (
            KeepErr {
                inner,
                kept: kept.clone(),
            },
            kept,
        )
    }
}

impl<R: Read> Read for KeepErr<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let kind = e.kind();
            *self.kept.0.borrow_mut() = Some(e);
            io::Error::from(kind)
        })
    }
}

impl Kept {
    /// `e` with the kept read error as its cause, when it is a read failure.
    pub(crate) fn explain(&self, e: CaptureError) -> CaptureError {
        match (e, self.0.borrow_mut().take()) {
            (CaptureError::Io { path, .. }, Some(source)) => CaptureError::Io { path, source },
            (e, _) => e,
        }
    }
}

/// What pcap-parser's "header not recognized" means, given the first bytes of the input
/// (empty when they cannot be had): a capture cut inside its file header (a pcap's 24
/// bytes, a pcapng section header) starts with a known magic number.
pub fn unrecognized_header(head: &[u8]) -> String {
    let pcap = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
    ];
    match head.get(..4) {
        Some(m) if pcap.iter().any(|p| p == m) && head.len() < 24 => format!(
            "pcap file cut inside its 24-byte file header ({} bytes)",
            head.len()
        ),
        Some([0x0a, 0x0d, 0x0d, 0x0a]) if head.len() < 28 => format!(
            "pcapng file cut inside its section header block ({} bytes)",
            head.len()
        ),
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => {
            "pcapng section header block is malformed (byte-order magic or length)".into()
        }
        _ => NOT_A_CAPTURE.into(),
    }
}

/// The message for input that starts with no capture magic number (or whose first bytes
/// could not be had again: the source then explains it from the bytes it sniffed).
pub const NOT_A_CAPTURE: &str = "not a pcap or pcapng file (unknown magic number)";

/// A block the parser refused, said in the format's words: which block (pcapng: its type)
/// and what is wrong with it.
fn malformed(
    data: &[u8],
    (ng, be): (bool, bool),
    kind: pcap_parser::nom::error::ErrorKind,
) -> String {
    use pcap_parser::nom::error::ErrorKind;
    let what = match kind {
        ErrorKind::Verify => "its length fields are too small or disagree",
        ErrorKind::Eof => "a field runs past the end of the block",
        ErrorKind::Tag => "a section header where a block of the section was expected",
        _ => "its contents do not parse",
    };
    if !ng {
        return format!("malformed record: {what}");
    }
    let Some(b) = data.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
        return format!("malformed block: {what}");
    };
    let ty = if be {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    };
    let name = match ty {
        0x0a0d_0d0a => "section header",
        1 => "interface description",
        2 => "packet (obsolete)",
        3 => "simple packet",
        4 => "name resolution",
        5 => "interface statistics",
        6 => "enhanced packet",
        0x0a => "decryption secrets",
        0x0bad | 0x4000_0bad => "custom",
        _ => "unknown",
    };
    format!("malformed pcapng block (type {ty:#010x}, {name}): {what}")
}

/// Reads the length field of the record at the start of `data`; a message when it is
/// beyond any sane record (so the problem is a corrupt field, not a short file).
fn absurd_length(data: &[u8], (ng, be): (bool, bool)) -> Option<String> {
    let at = if ng { 4 } else { 8 };
    let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
    let n = if be {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    } as usize;
    (n > MAX_RECORD).then(|| {
        format!(
            "record length {n} is absurd (over {} MiB): corrupt length field",
            MAX_RECORD >> 20
        )
    })
}

#[cfg(test)]
mod tests {
    use super::writer::{fragment_ipv4, CaptureWriter, Endian, Format, Link, TcpFlowWriter};
    use super::*;
    use crate::event::{Dir, EventKind};

    fn tables() -> Arc<Tables> {
        Arc::new(Tables::builtin().expect("tables"))
    }

    fn read_bytes(b: &[u8]) -> (Vec<Event<'static>>, Result<ReadStats, CaptureError>) {
        let mut evs = Vec::new();
        let r = read_from(
            "test.pcap",
            b,
            tables(),
            &ReadOptions::default(),
            &mut |e| {
                evs.push(e.clone().into_owned());
                Ok(())
            },
            &mut |_| {},
        );
        (evs, r)
    }

    fn lines(evs: &[Event]) -> Vec<String> {
        evs.iter()
            .filter_map(|e| e.command().map(|c| c.line.to_string()))
            .collect()
    }

    const LOGIN: &[(Dir, &[u8])] = &[
        (Dir::C2s, b"VER 1 MSNP8 CVR0\r\n"),
        (Dir::S2c, b"VER 1 MSNP8\r\n"),
        (
            Dir::C2s,
            b"CVR 2 0x0409 win 4.10 i386 MSNMSGR 5.0.0544 MSMSGS a@b.c\r\n",
        ),
        (
            Dir::S2c,
            b"MSG Hotmail Hotmail 23\r\nMIME-Version: 1.0\r\n\r\nhi",
        ),
        (Dir::C2s, b"OUT\r\n"),
    ];

    /// Writes a whole connection: handshake, LOGIN in segments of `seg`, orderly close.
    fn conversation<W: std::io::Write>(
        w: &mut CaptureWriter<W>,
        iface: u32,
        flow: &mut TcpFlowWriter,
        seg: usize,
        t0: i64,
    ) {
        let mut t = t0;
        let mut put = |w: &mut CaptureWriter<W>, p: &[u8]| {
            t += 1000;
            w.write_ip(iface, Ts(t), p, None).expect("write");
        };
        for (_, p) in flow.handshake().expect("hs") {
            put(w, &p);
        }
        for (d, data) in LOGIN {
            for p in flow.data(*d, data, seg).expect("data") {
                put(w, &p);
            }
        }
        for (_, p) in flow.close(Dir::C2s).expect("close") {
            put(w, &p);
        }
    }

    fn flow(c: &str, s: &str) -> TcpFlowWriter {
        TcpFlowWriter::new(c.parse().expect("addr"), s.parse().expect("addr"))
    }

    /// One gateway session over two TCP connections on an unwatched port: a chunked open
    /// answered gzip'd, an empty poll, then a request answered HTTP/1.0 without a length
    /// (the body runs to the close) with `Session=close`.
    #[test]
    fn gateway_session_over_two_connections_is_one_msnp_connection() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"VER 1 MSNP8\r\n").expect("gzip");
        let gz = gz.finish().expect("gzip");
        let mut open_resp = format!(
            "HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID=77.1; GW-IP=10.2.2.2\r\nContent-Type: application/x-msn-messenger\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .into_bytes();
        open_resp.extend_from_slice(&gz);
        let a: Vec<(Dir, Vec<u8>)> = vec![
            (Dir::C2s, b"POST http://gateway.messenger.hotmail.com/gateway/gateway.dll?Action=open&Server=NS&IP=messenger.hotmail.com HTTP/1.1\r\nContent-Type: application/x-msn-messenger\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nVER 1\r\nd\r\n MSNP8 CVR0\r\n\r\n0\r\n\r\n".to_vec()),
            (Dir::S2c, open_resp),
            (Dir::C2s, b"POST /gateway/gateway.dll?Action=poll&SessionID=77.1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec()),
            (Dir::S2c, b"HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID=77.1; GW-IP=10.2.2.2\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ];
        let b: Vec<(Dir, Vec<u8>)> = vec![
            (Dir::C2s, {
                let body = "CVR 2 0x0409 win 4.10 i386 MSNMSGR 5.0 MSMSGS\r\n";
                format!("POST /gateway/gateway.dll?SessionID=77.1 HTTP/1.0\r\nContent-Type: application/x-msn-messenger\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
            }),
            (Dir::S2c, b"HTTP/1.0 200 OK\r\nX-MSN-Messenger: SessionID=77.1; GW-IP=10.2.2.2; Session=close\r\nContent-Type: application/x-msn-messenger\r\n\r\nCVR 2 6.0.0602 6.0.0602 1.0.0000 http://x http://y\r\n".to_vec()),
        ];
        let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, Link::Ethernet).expect("w");
        let mut t = 1_117_627_200_000_000i64;
        for (conn, steps) in [("10.1.1.1:40000", &a), ("10.1.1.1:40001", &b)] {
            let mut f = flow(conn, "10.2.2.2:8000");
            let mut pk: Vec<Vec<u8>> = f
                .handshake()
                .expect("hs")
                .into_iter()
                .map(|p| p.1)
                .collect();
            for (d, data) in steps.iter() {
                pk.extend(f.data(*d, data, 40).expect("data"));
            }
            pk.extend(f.close(Dir::S2c).expect("close").into_iter().map(|p| p.1));
            for p in pk {
                t += 1000;
                w.write_ip(0, Ts(t), &p, None).expect("write");
            }
        }
        let (evs, r) = read_bytes(&w.into_inner().expect("bytes"));
        let st = r.expect("read");
        assert_eq!(
            (st.flows.http_connections, st.flows.msnp_connections),
            (2, 0)
        );
        let gw: Vec<&Event> = evs.iter().filter(|e| e.via.is_some()).collect();
        let conns: std::collections::BTreeSet<u64> = gw.iter().map(|e| e.conn).collect();
        assert_eq!(conns.len(), 1, "one MSNP connection for the session");
        let http_conns: std::collections::BTreeSet<u64> = evs
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Http(_)))
            .map(|e| e.conn)
            .collect();
        assert_eq!(http_conns.len(), 2);
        assert!(
            conns.is_disjoint(&http_conns),
            "its own id: {conns:?} {http_conns:?}"
        );
        assert_eq!(
            lines(&evs),
            [
                "VER 1 MSNP8 CVR0",
                "VER 1 MSNP8",
                "CVR 2 0x0409 win 4.10 i386 MSNMSGR 5.0 MSMSGS",
                "CVR 2 6.0.0602 6.0.0602 1.0.0000 http://x http://y"
            ]
        );
        assert!(gw.iter().all(|e| e.service == crate::event::Service::Ns));
        let tcp: std::collections::BTreeSet<u64> = gw
            .iter()
            .filter(|e| e.command().is_some())
            .filter_map(|e| e.via.as_ref().and_then(|v| v.tcp_conn))
            .collect();
        assert_eq!(tcp.len(), 2, "{tcp:?}");
        use crate::event::http::GatewayStep;
        let steps: Vec<(GatewayStep, Option<bool>)> = evs
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Gateway(g) => Some((g.step, g.empty)),
                _ => None,
            })
            .collect();
        assert_eq!(
            steps,
            [
                (GatewayStep::Opened, None),
                (GatewayStep::Poll, Some(true)),
                (GatewayStep::Closed, None)
            ]
        );
        let close = gw
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::Close(c) => Some(c.clone()),
                _ => None,
            })
            .expect("the session's close");
        assert_eq!(close.reason.as_deref(), Some("Session=close"));
        // The HTTP view: the gzip'd answer decoded, the close-delimited one framed so.
        let https: Vec<&crate::event::http::Http> = evs
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Http(h) => Some(&**h),
                _ => None,
            })
            .collect();
        assert_eq!(https.len(), 6);
        assert!(https
            .iter()
            .any(|h| h.content_encoding.as_deref() == Some("gzip")));
        assert!(https
            .iter()
            .any(|h| h.framing == Some(crate::http::stream::Framing::Close) && !h.incomplete));
        assert!(https
            .iter()
            .any(|h| h.framing == Some(crate::http::stream::Framing::Chunked)));
        assert!(evs.iter().all(|e| !matches!(
            &e.kind,
            EventKind::Desync(_) | EventKind::Gap(_) | EventKind::Error(_)
        )));
    }

    #[test]
    fn pcap_both_byte_orders_and_resolutions() {
        for (nanos, endian) in [
            (false, Endian::Little),
            (true, Endian::Big),
            (true, Endian::Little),
            (false, Endian::Big),
        ] {
            let mut w = CaptureWriter::with_options(
                Vec::new(),
                Format::Pcap,
                Link::Ethernet,
                nanos,
                endian,
            )
            .expect("w");
            conversation(
                &mut w,
                0,
                &mut flow("10.1.1.1:40000", "10.2.2.2:1863"),
                7,
                1_117_627_200_000_000,
            );
            let b = w.into_inner().expect("bytes");
            let (evs, r) = read_bytes(&b);
            r.expect("read");
            assert_eq!(
                lines(&evs),
                [
                    "VER 1 MSNP8 CVR0",
                    "VER 1 MSNP8",
                    "CVR 2 0x0409 win 4.10 i386 MSNMSGR 5.0.0544 MSMSGS a@b.c",
                    "MSG Hotmail Hotmail 23",
                    "OUT"
                ]
            );
            // First packet at t0 + 1 ms: the connect event carries the capture's time.
            assert_eq!(evs[0].ts, Ts(1_117_627_200_001_000), "{nanos} {endian:?}");
            assert!(matches!(
                evs.last().map(|e| &e.kind),
                Some(EventKind::Close(c)) if c.bytes_c2s == 81
            ));
        }
    }

    #[test]
    fn pcapng_with_several_interfaces_and_link_types() {
        let mut w = CaptureWriter::with_options(
            Vec::new(),
            Format::PcapNg,
            Link::LinuxSll,
            false,
            Endian::Big,
        )
        .expect("w");
        let i1 = w.add_interface(Link::Raw, true).expect("iface");
        let i2 = w.add_interface(Link::LinuxSll2, false).expect("iface");
        let i3 = w
            .add_interface(Link::EthernetVlan(42), false)
            .expect("iface");
        let i4 = w.add_interface(Link::Null, true).expect("iface");
        conversation(
            &mut w,
            0,
            &mut flow("10.1.1.1:40000", "10.2.2.2:1863"),
            5,
            1_000_000,
        );
        conversation(
            &mut w,
            i1,
            &mut flow("[2001:db8::1]:40001", "[2001:db8::2]:1863"),
            9,
            2_000_000,
        );
        conversation(
            &mut w,
            i2,
            &mut flow("10.1.1.3:40002", "10.2.2.2:1863"),
            64,
            3_000_000,
        );
        conversation(
            &mut w,
            i3,
            &mut flow("10.1.1.4:40003", "10.2.2.2:1863"),
            3,
            4_000_000,
        );
        conversation(
            &mut w,
            i4,
            &mut flow("10.1.1.5:40004", "10.2.2.2:1863"),
            1000,
            5_000_000,
        );
        let (evs, r) = read_bytes(&w.into_inner().expect("bytes"));
        let st = r.expect("read");
        assert_eq!(st.flows.msnp_connections, 5);
        assert_eq!(lines(&evs).len(), 25);
        // Timestamps per interface resolution: the nanosecond interface's first packet.
        let c2 = evs.iter().find(|e| e.conn == 2).expect("conn 2");
        assert_eq!(c2.ts, Ts(2_001_000));
        assert!(
            matches!(&c2.kind, EventKind::Connect(c) if c.client.as_deref() == Some("[2001:db8::1]:40001"))
        );
    }

    /// A pcapng block whose two length fields disagree is named by its type and fault,
    /// and what came before it is decoded.
    #[test]
    fn a_corrupt_pcapng_block_is_named_in_the_formats_words() {
        let mut w = CaptureWriter::with_options(
            Vec::new(),
            Format::PcapNg,
            Link::Ethernet,
            false,
            Endian::Little,
        )
        .expect("w");
        conversation(
            &mut w,
            0,
            &mut flow("10.1.1.1:40000", "10.2.2.2:1863"),
            64,
            1_000_000,
        );
        let mut b = w.into_inner().expect("bytes");
        // Walk the blocks; the last enhanced packet block gets a wrong trailing length.
        let (mut off, mut last) = (0, None);
        while off + 8 <= b.len() {
            let ty = u32::from_le_bytes(b[off..off + 4].try_into().expect("4"));
            let len = u32::from_le_bytes(b[off + 4..off + 8].try_into().expect("4")) as usize;
            if ty == 6 {
                last = Some((off, len));
            }
            off += len;
        }
        let (at, len) = last.expect("an enhanced packet block");
        b[at + len - 4..at + len].copy_from_slice(&(len as u32 + 4).to_le_bytes());
        let (evs, r) = read_bytes(&b);
        let msg = r.expect_err("corrupt").to_string();
        assert_eq!(
            msg,
            format!(
                "test.pcap: at byte offset {at}: malformed pcapng block (type 0x00000006, enhanced packet): its length fields are too small or disagree"
            )
        );
        assert!(!lines(&evs).is_empty(), "the blocks before it are decoded");
    }

    #[test]
    fn fragmented_ipv4_and_wrapping_sequence_numbers() {
        let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, Link::Ethernet).expect("w");
        let mut f = TcpFlowWriter::with_isn(
            "10.1.1.1:40000".parse().expect("a"),
            "10.2.2.2:1863".parse().expect("a"),
            u32::MAX - 20,
            u32::MAX - 3,
        );
        let mut t = 0;
        for (_, p) in f.handshake().expect("hs") {
            t += 1;
            w.write_ip(0, Ts(t), &p, None).expect("w");
        }
        for (d, data) in LOGIN {
            for p in f.data(*d, data, 30).expect("data") {
                let mut frags = fragment_ipv4(&p, 16);
                frags.reverse();
                for fr in frags {
                    t += 1;
                    w.write_ip(0, Ts(t), &fr, None).expect("w");
                }
            }
        }
        let (evs, r) = read_bytes(&w.into_inner().expect("bytes"));
        r.expect("read");
        assert_eq!(lines(&evs).len(), 5);
        assert!(evs
            .iter()
            .all(|e| !matches!(e.kind, EventKind::Desync(_) | EventKind::Gap(_))));
        // No FIN: closed at the end of the capture.
        assert!(
            matches!(&evs.last().expect("ev").kind, EventKind::Close(c) if c.reason.as_deref() == Some("end of capture"))
        );
    }

    #[test]
    fn midstream_connections_are_picked_up_at_a_command_line() {
        let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, Link::Ethernet).expect("w");
        let mut f = flow("10.1.1.1:40000", "10.2.2.2:1863");
        // No handshake; the first segment starts inside a payload.
        let data = b"text/plain\r\n\r\nhello world\r\nMSG 5 N 3\r\nabcPNG\r\n";
        let p = f.segment_at(Dir::C2s, 0, data).expect("seg");
        w.write_ip(0, Ts(1), &p, None).expect("w");
        let q = f.segment_at(Dir::S2c, 0, b"QNG 50\r\n").expect("seg");
        w.write_ip(0, Ts(2), &q, None).expect("w");
        let (evs, r) = read_bytes(&w.into_inner().expect("bytes"));
        r.expect("read");
        assert_eq!(lines(&evs), ["MSG 5 N 3", "PNG", "QNG 50"]);
        let note = evs.iter().find_map(|e| match &e.kind {
            EventKind::Note(m) => Some(m.message.to_string()),
            _ => None,
        });
        assert!(note.is_some_and(|m| m.contains("skipped 27 bytes")));
        assert!(!evs.iter().any(|e| matches!(e.kind, EventKind::Desync(_))));
    }

    #[test]
    fn content_detection_on_other_ports_ignores_other_protocols() {
        let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, Link::Ethernet).expect("w");
        conversation(
            &mut w,
            0,
            &mut flow("10.1.1.1:40000", "10.2.2.2:7001"),
            100,
            0,
        );
        let mut http = flow("10.1.1.1:40001", "10.2.2.2:80");
        for (_, p) in http.handshake().expect("hs") {
            w.write_ip(0, Ts(9), &p, None).expect("w");
        }
        for p in http
            .data(Dir::C2s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 100)
            .expect("d")
        {
            w.write_ip(0, Ts(10), &p, None).expect("w");
        }
        // SMTP greets with a 3-digit code, which must not pass for an MSNP error.
        let mut smtp = flow("10.1.1.1:40002", "10.2.2.2:25");
        for (_, p) in smtp.handshake().expect("hs") {
            w.write_ip(0, Ts(11), &p, None).expect("w");
        }
        for p in smtp
            .data(Dir::S2c, b"220 mail.example.com ESMTP\r\n", 100)
            .expect("d")
        {
            w.write_ip(0, Ts(12), &p, None).expect("w");
        }
        let (evs, r) = read_bytes(&w.into_inner().expect("bytes"));
        let st = r.expect("read");
        assert_eq!(st.flows.msnp_connections, 1);
        assert_eq!(st.flows.other_connections, 2);
        assert_eq!(lines(&evs).len(), 5);
    }

    #[test]
    fn rst_closes_and_conflicting_overlap_is_reported() {
        let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, Link::Ethernet).expect("w");
        let mut f = flow("10.1.1.1:40000", "10.2.2.2:1863");
        for (_, p) in f.handshake().expect("hs") {
            w.write_ip(0, Ts(1), &p, None).expect("w");
        }
        for p in f.data(Dir::C2s, b"VER 1 MSNP8 CVR0\r\n", 100).expect("d") {
            w.write_ip(0, Ts(2), &p, None).expect("w");
        }
        let bad = f.segment_at(Dir::C2s, 4, b"2").expect("seg");
        w.write_ip(0, Ts(3), &bad, None).expect("w");
        let rst = f.rst(Dir::S2c).expect("rst");
        w.write_ip(0, Ts(4), &rst, None).expect("w");
        // Stray packets after the reset are ignored.
        let late = f.segment_at(Dir::C2s, 18, b"OUT\r\n").expect("seg");
        w.write_ip(0, Ts(5), &late, None).expect("w");
        let (evs, r) = read_bytes(&w.into_inner().expect("bytes"));
        r.expect("read");
        assert_eq!(lines(&evs), ["VER 1 MSNP8 CVR0"]);
        assert!(evs.iter().any(|e| matches!(&e.kind, EventKind::Note(m) if m.message.contains("TCP overlap: 1 bytes at stream offset 4"))));
        assert!(
            matches!(&evs.last().expect("ev").kind, EventKind::Close(c) if c.by.as_deref() == Some("server") && c.reason.as_deref() == Some("RST"))
        );
    }

    #[test]
    fn closed_connections_are_released() {
        let tables = tables();
        let mut ft = Tracker::new(tables.clone(), FlowOptions::default(), 1);
        let mut dec = decode::Decoder::new(tables, ft.ids());
        let mut n = 0u64;
        for i in 0..2000u16 {
            let mut w = Vec::new();
            let mut f = flow(
                &format!("10.1.{}.{}:{}", i / 200, i % 200, 40000 + i),
                "10.2.2.2:1863",
            );
            let mut pk = f.handshake().expect("hs");
            for (d, data) in LOGIN {
                pk.extend(
                    f.data(*d, data, 50)
                        .expect("d")
                        .into_iter()
                        .map(|p| (*d, p)),
                );
            }
            pk.extend(f.close(Dir::S2c).expect("close"));
            for (_, p) in pk {
                decode::frame(
                    &mut ft,
                    &mut dec,
                    &mut |e| {
                        w.push(e.type_name());
                        Ok(())
                    },
                    101,
                    Ts(0),
                    &p,
                )
                .expect("frame");
            }
            n += w.len() as u64;
            assert_eq!(ft.tracked(), 0, "connection {i} still tracked");
        }
        assert_eq!(n, 2000 * 7);
    }

    #[test]
    fn bad_input_gives_clear_errors_after_what_was_decoded() {
        let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, Link::Ethernet).expect("w");
        conversation(
            &mut w,
            0,
            &mut flow("10.1.1.1:40000", "10.2.2.2:1863"),
            1000,
            0,
        );
        let good = w.into_inner().expect("bytes");

        // Truncated in the middle of the last record.
        let cut = &good[..good.len() - 10];
        let (evs, r) = read_bytes(cut);
        let e = r.expect_err("truncated");
        let msg = e.to_string();
        assert!(
            msg.starts_with("test.pcap: at byte offset ") && msg.contains("truncated"),
            "{msg}"
        );
        assert_eq!(lines(&evs).len(), 5, "everything before the cut is decoded");

        // Bad magic.
        let (evs, r) = read_bytes(b"GIF89a not a capture at all, certainly not");
        assert!(evs.is_empty());
        let msg = r.expect_err("magic").to_string();
        assert_eq!(
            msg,
            "test.pcap: at byte offset 0: not a pcap or pcapng file (unknown magic number)"
        );

        // Cut inside the file header: the magic number is known, the header incomplete.
        assert_eq!(
            unrecognized_header(&[0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0, 0x4d, 0x3c]),
            "pcapng file cut inside its section header block (10 bytes)"
        );
        assert_eq!(
            unrecognized_header(&good[..12]),
            "pcap file cut inside its 24-byte file header (12 bytes)"
        );
        assert_eq!(
            unrecognized_header(b"GIF89a"),
            "not a pcap or pcapng file (unknown magic number)"
        );

        // An absurd record length after the first record.
        let mut bad = good.clone();
        let first_len = u32::from_le_bytes(bad[32..36].try_into().expect("4")) as usize;
        let second = 24 + 16 + first_len;
        bad[second + 8..second + 12].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
        let (_, r) = read_bytes(&bad);
        let msg = r.expect_err("absurd").to_string();
        assert!(
            msg.contains(&format!("at byte offset {second}")) && msg.contains("corrupt length"),
            "{msg}"
        );

        // Unsupported link type (IEEE 802.11 = 105).
        let mut wifi = good.clone();
        wifi[20..24].copy_from_slice(&105u32.to_le_bytes());
        let msg = read_bytes(&wifi).1.expect_err("link").to_string();
        assert_eq!(
            msg,
            "test.pcap: at byte offset 24: unsupported link type 105 (IEEE 802.11)"
        );

        // Empty file.
        assert!(read_bytes(b"")
            .1
            .expect_err("empty")
            .to_string()
            .contains("empty file"));
    }
}
