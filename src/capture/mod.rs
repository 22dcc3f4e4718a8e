//! Offline captures: pcap/pcapng reading, link layers, IP defragmentation, TCP reassembly,
//! MSNP stream detection, and synthetic capture writing. Decoding itself is the
//! protocol module's job; nothing here interprets MSNP beyond finding where streams start.
//! Files are streamed through a bounded buffer, never read whole.

pub mod flow;
pub mod packet;
pub mod reasm;
pub mod synth;
pub mod writer;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};

use crate::event::{Event, Ts};
use crate::protocol::Tables;

pub use flow::{FlowOptions, FlowStats, FlowTable};

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
    let secs = (t / units) as i64;
    let frac = (u128::from(t % units) * 1_000_000 / u128::from(units)) as i64;
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
    sink: &mut dyn FnMut(Event) -> io::Result<()>,
) -> Result<ReadStats, CaptureError> {
    read_path_with_progress(path, tables, opts, sink, &mut |_| {})
}

/// As [`read_path`], calling `progress` with the bytes consumed so far now and then.
pub fn read_path_with_progress(
    path: &Path,
    tables: Arc<Tables>,
    opts: &ReadOptions,
    sink: &mut dyn FnMut(Event) -> io::Result<()>,
    progress: &mut dyn FnMut(u64),
) -> Result<ReadStats, CaptureError> {
    let name = path.display().to_string();
    let f = File::open(path).map_err(|source| CaptureError::Io {
        path: name.clone(),
        source,
    })?;
    read_from(
        &name,
        BufReader::with_capacity(BUF, f),
        tables,
        opts,
        sink,
        progress,
    )
}

/// Reads a capture from any byte source; `name` is used in error messages.
pub fn read_from<R: Read>(
    name: &str,
    input: R,
    tables: Arc<Tables>,
    opts: &ReadOptions,
    sink: &mut dyn FnMut(Event) -> io::Result<()>,
    progress: &mut dyn FnMut(u64),
) -> Result<ReadStats, CaptureError> {
    let mut flows = FlowTable::new(tables, opts.flows.clone(), opts.first_conn.max(1));
    let mut defrag = packet::Defrag::default();
    let mut stats = ReadStats::default();
    let fmt_err = |offset: u64, message: String| CaptureError::Format {
        path: name.to_string(),
        offset,
        message,
    };
    let result = (|| -> Result<(), CaptureError> {
        let mut reader = match create_reader(BUF, input) {
            Ok(r) => r,
            Err(PcapError::HeaderNotRecognized) => {
                return Err(fmt_err(
                    0,
                    "not a pcap or pcapng file (unknown magic number)".into(),
                ))
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
        let mut cap = BUF;
        let mut last_progress = 0u64;
        loop {
            let at = reader.consumed() as u64;
            match reader.next() {
                Ok((len, block)) => {
                    let pkt: Option<(u16, Ts, &[u8])> = match &block {
                        PcapBlockOwned::LegacyHeader(h) => {
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
                            let frac = u64::from(b.ts_usec) * 1_000_000 / i.units;
                            let ts = Ts::from_secs_micros(i64::from(b.ts_sec), frac as u32);
                            Some((i.linktype, ts, b.data))
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
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
                            Some((i.linktype, ts, &epb.data[..n]))
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            let i = ifaces
                                .first()
                                .ok_or_else(|| fmt_err(at, "packet before any interface".into()))?;
                            // Simple packets carry no timestamp.
                            Some((i.linktype, Ts(0), spb.data))
                        }
                        PcapBlockOwned::NG(_) => None,
                    };
                    if let Some((lt, ts, data)) = pkt {
                        stats.packets += 1;
                        if !packet::link_supported(lt) {
                            return Err(fmt_err(
                                at,
                                format!("unsupported {}", packet::link_name(lt)),
                            ));
                        }
                        handle_frame(lt, data, ts, &mut defrag, &mut flows, &mut stats, sink)?;
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
                    return Err(fmt_err(
                        at,
                        "capture truncated in the middle of a record".into(),
                    ));
                }
                Err(e) => {
                    let msg = match e {
                        PcapError::NomError(_, k) => format!("malformed block ({k:?})"),
                        PcapError::OwnedNomError(_, k) => format!("malformed block ({k:?})"),
                        other => format!("{other:?}"),
                    };
                    return Err(fmt_err(at, msg));
                }
            }
        }
        stats.bytes = reader.consumed() as u64;
        Ok(())
    })();
    // Whatever happened, decode what is buffered and close every connection.
    flows.finish(sink).map_err(CaptureError::Output)?;
    stats.fragments_dropped = defrag.dropped + defrag.pending() as u64;
    stats.flows = flows.stats.clone();
    stats.next_conn = flows.next_conn();
    result.map(|()| stats)
}

fn handle_frame(
    linktype: u16,
    data: &[u8],
    ts: Ts,
    defrag: &mut packet::Defrag,
    flows: &mut FlowTable,
    stats: &mut ReadStats,
    sink: &mut dyn FnMut(Event) -> io::Result<()>,
) -> Result<(), CaptureError> {
    let Some(ip) = packet::ip_of_frame(linktype, data).and_then(packet::parse_ip) else {
        stats.skipped_frames += 1;
        return Ok(());
    };
    if ip.proto != 6 {
        stats.skipped_frames += 1;
        return Ok(());
    }
    let whole;
    let payload = if ip.frag.is_some() {
        match defrag.add(&ip) {
            Some(b) => {
                whole = b;
                &whole[..]
            }
            None => return Ok(()),
        }
    } else {
        ip.payload
    };
    let Some(tcp) = packet::parse_tcp(payload) else {
        stats.skipped_frames += 1;
        return Ok(());
    };
    let src = SocketAddr::new(ip.src, tcp.sport);
    let dst = SocketAddr::new(ip.dst, tcp.dport);
    flows
        .segment(src, dst, &tcp, ts, sink)
        .map_err(CaptureError::Output)
}
