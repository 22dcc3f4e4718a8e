//! Glue between the connection tracker and the MSNP decoder: turns [`StreamEvent`]s into
//! `Session` calls and events, and hands referrals back to the tracker. It holds no
//! capture logic (that is tracker.rs) and no protocol logic (that is `protocol`); keep it
//! thin, it is what changes when the decoder's API does.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::event::{Dir, Event, EventKind, Service, Ts};
use crate::protocol::session::Pending;
use crate::protocol::{Session, SessionHint, Tables};

use super::tracker::{FlowId, OpenReason, StreamEvent, Tracker};

/// What a connection holds that has not yet become events, per direction (c2s, s2c).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowPending {
    pub conn: u64,
    /// Direction and payload length of the segment just handled.
    pub dir: Dir,
    pub payload: usize,
    /// Bytes in the decoder's buffer, and the command waiting for its payload, if any.
    pub decoder: [Pending; 2],
    /// Bytes held by TCP reassembly (waiting for a hole to fill or the stream's start).
    pub out_of_order: [usize; 2],
    /// Bytes held before the first command line was found.
    pub seeking: [usize; 2],
}

/// Connection ids are handed out by the tracker in sequence: no need for a keyed hash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One `Session` per MSNP connection the tracker opened.
pub struct Decoder {
    tables: Arc<Tables>,
    sessions: HashMap<FlowId, Session, BuildHasherDefault<IdHasher>>,
    /// Events of the packet being handled, in order.
    pub evs: Vec<Event>,
}

impl Decoder {
    pub fn new(tables: Arc<Tables>) -> Decoder {
        Decoder {
            tables,
            sessions: HashMap::default(),
            evs: Vec::new(),
        }
    }

    /// Handles one tracker event; the decoded events go to [`Decoder::evs`].
    pub fn on(&mut self, ev: StreamEvent<'_>) {
        match ev {
            StreamEvent::Open {
                flow,
                client,
                server,
                ts,
                why,
            } => {
                let (hint, detail) = match why {
                    OpenReason::Referral { service, version } => (
                        SessionHint {
                            service: Some(service),
                            // Only a switchboard speaks its referrer's version from the start.
                            version: if service == Service::Sb {
                                version
                            } else {
                                None
                            },
                        },
                        format!("{service} address learned from a referral earlier in the capture"),
                    ),
                    OpenReason::Port(p) => (SessionHint::default(), format!("MSNP port {p}")),
                    OpenReason::Content => (
                        SessionHint::default(),
                        "MSNP command line seen on a port not otherwise watched".to_string(),
                    ),
                };
                let s = Session::new(self.tables.clone(), flow, hint);
                self.evs.push(s.event(
                    ts,
                    None,
                    EventKind::Connect {
                        client: Some(client.to_string()),
                        server: Some(server.to_string()),
                        detail: Some(detail),
                    },
                ));
                self.sessions.insert(flow, s);
            }
            StreamEvent::Data {
                flow,
                dir,
                ts,
                bytes,
            } => {
                if let Some(s) = self.sessions.get_mut(&flow) {
                    s.feed(dir, bytes, ts, &mut self.evs);
                }
            }
            StreamEvent::Gap { flow, dir, ts, len } => {
                if let Some(s) = self.sessions.get_mut(&flow) {
                    s.gap(dir, len, ts, &mut self.evs);
                }
            }
            StreamEvent::Note {
                flow,
                dir,
                ts,
                note,
            } => {
                if let Some(s) = self.sessions.get(&flow) {
                    self.evs.push(s.event(
                        ts,
                        Some(dir),
                        EventKind::Note {
                            message: note.to_string(),
                        },
                    ));
                }
            }
            StreamEvent::End { flow, dir, ts } => {
                if let Some(s) = self.sessions.get_mut(&flow) {
                    s.finish_dir(dir, ts, &mut self.evs);
                }
            }
            StreamEvent::Close {
                flow,
                ts,
                by,
                how,
                bytes,
            } => {
                if let Some(mut s) = self.sessions.remove(&flow) {
                    s.finish(ts, &mut self.evs);
                    let by = by.map(|d| if d == Dir::C2s { "client" } else { "server" });
                    self.evs.push(s.event(
                        ts,
                        None,
                        EventKind::Close {
                            by: by.map(str::to_string),
                            reason: Some(how.as_str().to_string()),
                            bytes_c2s: bytes[0],
                            bytes_s2c: bytes[1],
                        },
                    ));
                }
            }
        }
    }

    /// Tells the tracker about server addresses the events just decoded handed out.
    pub fn learn(&self, tracker: &mut Tracker) {
        for ev in &self.evs {
            let Some(c) = ev.command() else { continue };
            if ev.dir != Some(Dir::S2c) || c.address_args.is_empty() {
                continue;
            }
            if let Some(r) = c.referral() {
                if let Ok(a) = r.address.parse::<SocketAddr>() {
                    tracker.expect(a, r.target, ev.version.map(|v| v.0));
                }
            }
        }
    }

    /// What the MSNP connection of the tracker's last packet still holds.
    pub fn pending(&self, tracker: &Tracker) -> Option<FlowPending> {
        let p = tracker.last_packet()?;
        let s = self.sessions.get(&p.flow)?;
        Some(FlowPending {
            conn: p.flow,
            dir: p.dir,
            payload: p.payload,
            decoder: [s.pending(Dir::C2s), s.pending(Dir::S2c)],
            out_of_order: p.out_of_order,
            seeking: p.seeking,
        })
    }
}

/// Feeds one frame through `tracker` and `dec`, then learns referrals; the events are
/// left in `dec.evs`.
pub fn frame(tracker: &mut Tracker, dec: &mut Decoder, linktype: u16, ts: Ts, data: &[u8]) {
    tracker.packet(linktype, ts, data, &mut |e| dec.on(e));
    dec.learn(tracker);
}
