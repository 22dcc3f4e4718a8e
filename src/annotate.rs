//! `msntap annotate`: copies a capture into pcapng, every packet unchanged and in order,
//! with a comment on each packet saying which MSNP events it completed and what its
//! connection still holds. Reading and decoding are the capture module's; this file only
//! words comments (redacted unless asked) and must never alter packet bytes, timestamps or
//! order. Since the packets keep their secrets, it reports whether the input held any, so
//! that the caller can keep the output owner-only.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::analysis::auth::AuthAnnotator;
use crate::capture::writer::PcapNgCopier;
use crate::capture::{
    read_with_packets, CaptureError, FlowPending, ReadOptions, ReadStats, Record, RecordKind,
};
use crate::event::pretty::{describe_other, one_line, payload_summary};
use crate::event::{Dir, Event, EventKind};
use crate::protocol::Tables;
use crate::secret::Redact;

/// Choices of an annotation run.
#[derive(Debug, Clone, Default)]
pub struct AnnotateOptions {
    pub read: ReadOptions,
    /// Keep secrets (tickets, cookies, hashes) in the comments.
    pub no_redact: bool,
}

/// What an annotation run did.
#[derive(Debug, Clone, Default)]
pub struct AnnotateStats {
    pub read: ReadStats,
    /// Packets that got a comment.
    pub commented: u64,
    /// Events no packet produced (connections closed at the end of the capture).
    pub unattributed: u64,
    /// Events that held a secret (a ticket, cookie, hash, MSPAuth...): hidden in the
    /// comments unless `no_redact`, but still in the copied packets.
    pub secret_events: u64,
}

impl AnnotateStats {
    /// Whether the copied packets may hold secrets: a decoded event held one, or a TCP
    /// connection was not MSNP (its bytes were never looked at, so nothing can be said).
    pub fn may_hold_secrets(&self) -> bool {
        self.secret_events > 0 || self.read.flows.other_connections > 0
    }
}

/// One comment line for an event: `#3 c2s MSG 4 N 129: text/plain: Hello`.
pub fn describe(ev: &Event<'_>) -> String {
    let mut s = format!("#{}", ev.conn);
    if let Some(d) = ev.dir {
        let _ = write!(s, " {}", d.as_str());
    }
    match &ev.kind {
        EventKind::Command(c) => {
            let _ = write!(s, " {}", one_line(&c.line, 300));
            if let Some(p) = &c.payload {
                let _ = write!(s, ": {}", payload_summary(p));
            }
            if !c.known {
                s.push_str(" [unknown command]");
            } else if c.unmatched_form {
                s.push_str(" [form not in tables]");
            }
            if let Some(e) = &c.error {
                let _ = write!(
                    s,
                    " [{} {}]",
                    e.name.as_deref().unwrap_or("?"),
                    e.meaning.as_deref().unwrap_or("unknown error")
                );
            }
            if let Some(a) = &c.annotations.auth {
                let v = serde_json::to_string(a).unwrap_or_default();
                let _ = write!(s, " [auth {}]", one_line(&v, 200));
            }
            if let Some(ch) = &c.annotations.challenge {
                let v = serde_json::to_string(ch).unwrap_or_default();
                let _ = write!(s, " [challenge {}]", one_line(&v, 200));
            }
        }
        other => {
            if let Some(t) = describe_other(other) {
                let _ = write!(s, " {t}");
            }
        }
    }
    s
}

/// The "pending" lines of direction `d` of a connection, if it holds anything.
fn pending_lines(p: &FlowPending, d: Dir, out: &mut Vec<String>) {
    let i = d.index();
    let head = format!("#{} pending {}:", p.conn, d.as_str());
    let dec = &p.decoder[i];
    if let Some(a) = &dec.awaiting {
        let name = match &a.trid {
            Some(t) => format!("{} {t}", a.cmd),
            None => a.cmd.clone(),
        };
        out.push(format!(
            "{head} {} of {} payload bytes of {name}",
            a.have, a.need
        ));
    } else if dec.buffered > 0 {
        out.push(format!("{head} {} bytes buffered", dec.buffered));
    }
    if p.out_of_order[i] > 0 {
        out.push(format!(
            "{head} {} bytes held out of order (waiting for missing bytes before them)",
            p.out_of_order[i]
        ));
    }
    if p.seeking[i] > 0 {
        out.push(format!(
            "{head} {} bytes held before the first command line",
            p.seeking[i]
        ));
    }
}

/// The comment of one packet: a line per event it produced, then what its connection still
/// holds in each direction this packet carried data in or produced events for. None when
/// there is nothing to say. Events are expected already annotated and redacted as wanted.
pub fn comment(evs: &[Event<'_>], pending: Option<&FlowPending>) -> Option<String> {
    let mut lines: Vec<String> = evs.iter().map(describe).collect();
    if let Some(p) = pending {
        for d in [Dir::C2s, Dir::S2c] {
            let touched = (p.dir == d && p.payload > 0)
                || evs.iter().any(|e| e.conn == p.conn && e.dir == Some(d));
            if touched {
                pending_lines(p, d, &mut lines);
            }
        }
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Copies `input` (pcap or pcapng) into `out` as pcapng with a comment on every packet
/// that carried MSNP. On an error, what was copied before it stays written. The packets
/// are copied as they are, secrets included: see [`AnnotateStats::may_hold_secrets`].
pub fn annotate(
    input: &Path,
    out: &mut dyn Write,
    tables: Arc<Tables>,
    opts: &AnnotateOptions,
) -> Result<AnnotateStats, CaptureError> {
    let mut copier = PcapNgCopier::new(out);
    let mut auth = AuthAnnotator::new(&tables, Vec::new());
    let mut stats = AnnotateStats::default();
    let mut batch: Vec<Event<'static>> = Vec::new();
    let read = read_with_packets(input, tables.clone(), &opts.read, &mut |rec, evs| {
        batch.clear();
        batch.extend_from_slice(evs);
        for ev in &mut batch {
            auth.annotate(ev);
            let held = if opts.no_redact {
                // Only to count it: the comment keeps the secret.
                ev.clone().redact()
            } else {
                ev.redact()
            };
            if held {
                stats.secret_events += 1;
            }
        }
        match rec {
            Record::PcapHeader {
                linktype,
                snaplen,
                nanos,
            } => copier.pcap_header(linktype, snaplen, nanos),
            Record::Block { raw, big_endian } => copier.block(raw, big_endian),
            Record::Packet(p) => {
                let c = comment(&batch, p.pending.as_deref());
                if c.is_some() {
                    stats.commented += 1;
                }
                let c = c.as_deref();
                match p.kind {
                    RecordKind::Enhanced => copier.enhanced(p.raw, p.big_endian, c),
                    RecordKind::Pcap => copier.pcap_record(p.raw, p.big_endian, c),
                    RecordKind::Simple => copier.simple(p.raw, p.data, p.big_endian, c),
                }
            }
            Record::End => {
                stats.unattributed += batch.len() as u64;
                Ok(())
            }
        }
    });
    let flushed = copier.into_inner().map(|_| ());
    stats.read = read?;
    flushed.map_err(|e| CaptureError::Io {
        path: "output".into(),
        source: e,
    })?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::session::{Awaiting, Pending};

    #[test]
    fn simple_packet_blocks_become_enhanced_ones_with_the_same_bytes() {
        use crate::capture::writer::{CaptureWriter, Format, Link, TcpFlowWriter};
        use pcap_parser::pcapng::Block;
        use pcap_parser::traits::PcapReaderIterator;
        use pcap_parser::{PcapBlockOwned, PcapNGReader};
        let mut w = CaptureWriter::new(Vec::new(), Format::PcapNg, Link::Raw).expect("w");
        let mut f = TcpFlowWriter::new(
            "10.1.1.1:40000".parse().expect("a"),
            "10.2.2.2:1863".parse().expect("a"),
        );
        w.flush().expect("flush");
        let mut file = w.into_inner().expect("bytes");
        let ip = f.segment_at(Dir::C2s, 0, b"VER 1 MSNP8\r\n").expect("seg");
        // Simple packet block: type 3, length, original length, data padded, length.
        let total = (16 + ip.len() + (4 - ip.len() % 4) % 4) as u32;
        file.extend_from_slice(&3u32.to_le_bytes());
        file.extend_from_slice(&total.to_le_bytes());
        file.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        file.extend_from_slice(&ip);
        file.resize(file.len() + (4 - ip.len() % 4) % 4, 0);
        file.extend_from_slice(&total.to_le_bytes());
        let dir = std::env::temp_dir().join(format!("msntap-annotate-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let input = dir.join("spb.pcapng");
        std::fs::write(&input, &file).expect("write");
        let mut out = Vec::new();
        let tables = Arc::new(Tables::builtin().expect("tables"));
        let st = annotate(&input, &mut out, tables, &AnnotateOptions::default()).expect("ok");
        assert_eq!((st.read.packets, st.commented), (1, 1));
        let mut r = PcapNGReader::new(1 << 16, &out[..]).expect("reader");
        let mut seen = 0;
        while let Ok((len, b)) = r.next() {
            if let PcapBlockOwned::NG(Block::EnhancedPacket(e)) = b {
                assert_eq!(&e.data[..e.caplen as usize], &ip[..]);
                assert_eq!(
                    (e.if_id, e.ts_high, e.ts_low, e.origlen),
                    (0, 0, 0, ip.len() as u32)
                );
                let c = e
                    .options
                    .iter()
                    .find(|o| o.code == pcap_parser::OptionCode::Comment);
                let c = c.expect("comment");
                assert!(String::from_utf8_lossy(c.value()).starts_with("#1 connect "));
                seen += 1;
            }
            r.consume(len);
        }
        assert_eq!(seen, 1);
        // Only once every check passed: a failure leaves the input to look at.
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pending_lines_name_the_waiting_command() {
        let p = FlowPending {
            conn: 3,
            dir: Dir::C2s,
            payload: 100,
            decoder: [
                Pending {
                    buffered: 1220,
                    awaiting: Some(Awaiting {
                        cmd: "MSG".into(),
                        trid: Some("4".into()),
                        have: 1200,
                        need: 1442,
                    }),
                },
                Pending {
                    buffered: 7,
                    awaiting: None,
                },
            ],
            out_of_order: [0, 0],
            seeking: [0, 0],
        };
        // Only the direction the packet carried data in is described.
        assert_eq!(
            comment(&[], Some(&p)).as_deref(),
            Some("#3 pending c2s: 1200 of 1442 payload bytes of MSG 4")
        );
        let ack_only = FlowPending {
            payload: 0,
            ..p.clone()
        };
        assert_eq!(comment(&[], Some(&ack_only)), None);
        let s2c = FlowPending {
            dir: Dir::S2c,
            out_of_order: [0, 300],
            ..p
        };
        assert_eq!(
            comment(&[], Some(&s2c)).as_deref(),
            Some("#3 pending s2c: 7 bytes buffered\n#3 pending s2c: 300 bytes held out of order (waiting for missing bytes before them)")
        );
    }
}
