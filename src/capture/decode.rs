//! Glue between the connection tracker and the MSNP decoder: turns [`StreamEvent`]s into
//! `Session` calls and events, and hands referrals back to the tracker. It holds no
//! capture logic (that is tracker.rs) and no protocol logic (that is `protocol`); keep it
//! thin, it is what changes when the decoder's API does.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::event::{Close, Connect, Dir, Ending, Event, EventKind, Message, Service, Ts};
use crate::protocol::session::Pending;
use crate::protocol::{redirect, Session, SessionHint, Tables};

use super::httpconn::HttpSide;
use super::tracker::{CloseReason, ConnIds, FlowId, OpenReason, StreamEvent, Tracker};

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

/// Where decoded events go; an error stops nothing here but is handed back after the packet.
pub type Sink<'s> = dyn FnMut(&mut Event<'_>) -> std::io::Result<()> + 's;

/// One `Session` per MSNP connection the tracker opened.
pub struct Decoder {
    tables: Arc<Tables>,
    sessions: HashMap<FlowId, Session, BuildHasherDefault<IdHasher>>,
    /// Connections opened as MSN HTTP, and the gateway sessions they carry.
    http: HttpSide,
    /// Time of the last stream event (for closing gateway sessions at the end).
    last_ts: Ts,
    /// Server addresses handed out by the events of the packet being handled.
    learned: Vec<(SocketAddr, Service, Option<u8>)>,
    /// The first error the sink returned.
    failed: Option<std::io::Error>,
}

impl Decoder {
    /// A decoder for the connections of `ids`' tracker ([`Tracker::ids`]): gateway
    /// sessions are numbered from the same sequence.
    pub fn new(tables: Arc<Tables>, ids: ConnIds) -> Decoder {
        Decoder {
            http: HttpSide::new(tables.clone(), ids),
            last_ts: Ts(0),
            tables,
            sessions: HashMap::default(),
            learned: Vec::new(),
            failed: None,
        }
    }

    /// Handles one tracker event; decoded events go to `sink` as they are made.
    pub fn on(&mut self, ev: StreamEvent<'_>, sink: &mut Sink<'_>) {
        let Decoder {
            tables,
            sessions,
            http,
            last_ts,
            learned,
            failed,
        } = self;
        let mut out = |e: &mut Event<'_>| {
            if let Some(c) = e.command().filter(|c| !c.address_args.is_empty()) {
                if let Some((svc, addr, _)) = redirect::of_command(e.dir, c) {
                    if let Ok(a) = addr.parse::<SocketAddr>() {
                        learned.push((a, svc, e.version.map(|v| v.0)));
                    }
                }
            }
            if failed.is_none() {
                if let Err(x) = sink(e) {
                    *failed = Some(x);
                }
            }
        };
        match ev {
            StreamEvent::Open {
                flow,
                client,
                server,
                ts,
                why: OpenReason::Http(kind),
            } => {
                *last_ts = ts;
                http.open(flow, client, server, ts, kind, &mut out);
            }
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
                    OpenReason::Port(p) => {
                        let mut d = String::with_capacity(16);
                        d.push_str("MSNP port ");
                        d.push_str(itoa::Buffer::new().format(p));
                        (SessionHint::default(), d)
                    }
                    OpenReason::Content | OpenReason::Http(_) => (
                        SessionHint::default(),
                        "MSNP command line seen on a port not otherwise watched".to_string(),
                    ),
                };
                let s = Session::new(tables.clone(), flow, hint);
                out(&mut s.event(
                    ts,
                    None,
                    EventKind::Connect(Connect {
                        client: Some(addr_text(&client).into()),
                        server: Some(addr_text(&server).into()),
                        detail: Some(detail.into()),
                    }),
                ));
                sessions.insert(flow, s);
            }
            StreamEvent::Data {
                flow,
                dir,
                ts,
                bytes,
            } => {
                if let Some(s) = sessions.get_mut(&flow) {
                    s.feed(dir, bytes, ts, &mut out);
                } else {
                    *last_ts = ts;
                    http.data(flow, dir, ts, bytes, &mut out);
                }
            }
            StreamEvent::Gap { flow, dir, ts, len } => {
                if let Some(s) = sessions.get_mut(&flow) {
                    s.gap(dir, len, ts, &mut out);
                } else {
                    http.gap(flow, dir, ts, len, &mut out);
                }
            }
            StreamEvent::Note {
                flow,
                dir,
                ts,
                note,
            } => {
                let kind = EventKind::Note(Message {
                    message: note.to_string().into(),
                });
                if let Some(s) = sessions.get(&flow) {
                    out(&mut s.event(ts, Some(dir), kind));
                } else if http.has(flow) {
                    out(&mut Event::new(
                        ts,
                        flow,
                        Some(dir),
                        Service::Unknown,
                        None,
                        kind,
                    ));
                }
            }
            StreamEvent::End { flow, dir, ts } => {
                if let Some(s) = sessions.get_mut(&flow) {
                    s.finish_dir(dir, ts, &mut out);
                } else {
                    http.end(flow, dir, ts, &mut out);
                }
            }
            StreamEvent::Close {
                flow,
                ts,
                by,
                how,
                bytes,
            } => {
                let name = by.map(|d| if d == Dir::C2s { "client" } else { "server" });
                let (client_end, server_end) = ends(by, how);
                let close = Close {
                    by: name.map(Into::into),
                    reason: Some(how.as_str().into()),
                    bytes_c2s: bytes[0],
                    bytes_s2c: bytes[1],
                    client_end,
                    server_end,
                    ..Close::default()
                };
                if let Some(mut s) = sessions.remove(&flow) {
                    s.finish(ts, &mut out);
                    out(&mut s.event(ts, None, EventKind::Close(close)));
                } else {
                    *last_ts = (*last_ts).max(ts);
                    http.close(flow, ts, close, &mut out);
                }
            }
        }
    }

    /// The input ended (after the tracker's `finish`): gateway sessions still open are
    /// decoded to their end and closed.
    pub fn finish(&mut self, sink: &mut Sink<'_>) {
        let Decoder {
            http,
            last_ts,
            failed,
            ..
        } = self;
        let mut out = |e: &mut Event<'_>| {
            if failed.is_none() {
                if let Err(x) = sink(e) {
                    *failed = Some(x);
                }
            }
        };
        http.finish(*last_ts, &mut out);
    }

    /// Tells the tracker about server addresses the events just decoded handed out.
    pub fn learn(&mut self, tracker: &mut Tracker) {
        for (a, svc, v) in self.learned.drain(..) {
            if svc == Service::Sb {
                self.http.referral(&a.to_string(), v);
            }
            tracker.expect(a, svc, v);
        }
    }

    /// The sink's first error since the last call.
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        self.failed.take()
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

/// How each side ended, from who closed first and how.
/// `SocketAddr`'s text (`1.2.3.4:1863`, `[::1]:1863`), IPv4 without the formatting
/// machinery: two per connection cost about 3,200 instructions through `Display`.
fn addr_text(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => {
            let mut t = String::with_capacity(21);
            let mut b = itoa::Buffer::new();
            for (i, o) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    t.push('.');
                }
                t.push_str(b.format(*o));
            }
            t.push(':');
            t.push_str(b.format(v4.port()));
            t
        }
        SocketAddr::V6(_) => a.to_string(),
    }
}

fn ends(by: Option<Dir>, how: CloseReason) -> (Option<Ending>, Option<Ending>) {
    let e = match how {
        CloseReason::Fin => Ending::Fin,
        CloseReason::Rst => Ending::Reset,
        CloseReason::EndOfCapture | CloseReason::Evicted => {
            return (Some(Ending::Open), Some(Ending::Open))
        }
    };
    match by {
        Some(Dir::C2s) => (Some(e), None),
        Some(Dir::S2c) => (None, Some(e)),
        None => (None, None),
    }
}

/// Feeds one frame through `tracker` and `dec` (events to `sink`), then learns referrals.
pub fn frame(
    tracker: &mut Tracker,
    dec: &mut Decoder,
    sink: &mut Sink<'_>,
    linktype: u16,
    ts: Ts,
    data: &[u8],
) -> std::io::Result<()> {
    tracker.packet(linktype, ts, data, &mut |e| dec.on(e, sink));
    dec.learn(tracker);
    dec.take_error().map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_text_is_display() {
        for a in [
            "0.0.0.0:0",
            "10.0.0.6:20006",
            "255.255.255.255:65535",
            "[::1]:1863",
            "[fe80::1%2]:80",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(addr_text(&a), a.to_string());
        }
    }
}
