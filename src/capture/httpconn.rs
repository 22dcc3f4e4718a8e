//! Glue between the connection tracker and the HTTP side (`crate::http`): each TCP
//! connection the tracker opened as MSN HTTP gets an `HttpStream`; its requests and
//! responses become `http` events, gateway exchanges of all connections go to one
//! `Gateway`, and each gateway session becomes an MSNP connection of its own, decoded by
//! the same `protocol::Session` as TCP. It parses nothing itself (that is `crate::http`
//! and `crate::protocol`) and never sees connections the tracker opened as MSNP.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::event::http::{Gateway as GatewayEv, GatewayStep, Http, HttpMessage, HttpProblem, Via};
use crate::event::{Close, Connect, Dir, Event, EventKind, Message, Service, Ts};
use crate::http::detect::{self, MsnHttp};
use crate::http::gateway::{
    self, CloseReason, Gateway, GatewayItem, GatewayLimits, GatewayQuery, GatewayService,
};
use crate::http::passport::{self, PassportExchange};
use crate::http::soap;
use crate::http::stream::{Body, HttpItem, HttpStream, Limits, Request, Response};
use crate::http::{target_host, target_path};
use crate::protocol::{Session, SessionHint, Tables};

use super::tracker::{ConnIds, FlowId};

/// Where events go.
pub type Out<'o> = dyn FnMut(&mut Event<'_>) + 'o;

/// Request heads kept per connection for pairing with their answers (MSN clients have
/// one outstanding; the stream itself keeps at most `Limits::max_pending`).
const MAX_HEADS: usize = 64;

/// Bytes all HTTP connections of a read may hold in unfinished messages together. Each
/// stream is bounded by its `Limits` (a head, a body and the pending requests), but a
/// capture with thousands of connections each holding a large unfinished body would add
/// up: past this, the connection holding most is decoded as far as it got and given up,
/// with a note, as the tracker does with its own budget.
pub const MAX_HTTP_HELD: usize = 64 << 20;

struct Conn {
    stream: HttpStream,
    /// Requests not answered yet, without their bodies: what a response is read against.
    heads: VecDeque<Request>,
    /// What `stream` held after the last feed (counted in `HttpSide::held`).
    held: usize,
    /// Given up over the budget: its bytes are ignored until it closes.
    given_up: bool,
}

struct GwSession {
    session: Session,
    via: Via,
    bytes: [u64; 2],
}

/// The HTTP connections of one capture read and the gateway sessions they carry.
pub struct HttpSide {
    tables: Arc<Tables>,
    ids: ConnIds,
    conns: HashMap<FlowId, Conn>,
    gateway: Gateway,
    sessions: HashMap<u64, GwSession>,
    items: Vec<HttpItem>,
    gitems: Vec<GatewayItem>,
    /// Switchboard addresses handed out by XFR/RNG, with the referrer's version: a
    /// switchboard opened through the gateway speaks it from its first line (as over TCP).
    referrals: HashMap<String, Option<u8>>,
    /// Bytes held by all connections' streams, and the most they may hold.
    held: usize,
    budget: usize,
}

/// Most referrals remembered.
const MAX_REFERRALS: usize = 4096;

impl HttpSide {
    pub fn new(tables: Arc<Tables>, ids: ConnIds) -> HttpSide {
        HttpSide {
            tables,
            ids,
            conns: HashMap::new(),
            gateway: Gateway::new(GatewayLimits::default()),
            sessions: HashMap::new(),
            items: Vec::new(),
            gitems: Vec::new(),
            referrals: HashMap::new(),
            held: 0,
            budget: MAX_HTTP_HELD,
        }
    }

    /// The same with another budget for unfinished messages (tests).
    pub fn with_budget(mut self, bytes: usize) -> HttpSide {
        self.budget = bytes;
        self
    }

    /// Bytes held in unfinished messages by all HTTP connections.
    pub fn held(&self) -> usize {
        self.held
    }

    /// After a connection's stream moved: its share of the budget updated, and the
    /// connection holding most given up while the total is over.
    fn account(&mut self, flow: FlowId, ts: Ts, out: &mut Out<'_>) {
        if let Some(c) = self.conns.get_mut(&flow) {
            let now = c.stream.buffered();
            self.held = self.held - c.held + now;
            c.held = now;
        }
        while self.held > self.budget {
            let Some((&big, _)) = self
                .conns
                .iter()
                .filter(|(_, c)| !c.given_up && c.held > 0)
                .max_by_key(|(_, c)| c.held)
            else {
                return;
            };
            let Some(c) = self.conns.get_mut(&big) else {
                return;
            };
            let held = c.held;
            // What it has is decoded (truncated messages say so), then its buffers go.
            c.stream.finish(ts, &mut self.items);
            c.stream = HttpStream::new(Limits::default());
            c.given_up = true;
            c.held = 0;
            self.held -= held;
            self.drain(big, out);
            let mut ev = Event::new(
                ts,
                big,
                None,
                Service::Unknown,
                None,
                EventKind::Note(Message {
                    message: format!(
                        "HTTP memory budget ({} MiB for all connections) exhausted: stopped decoding this connection with {held} bytes held in unfinished messages",
                        self.budget >> 20
                    )
                    .into(),
                }),
            );
            out(&mut ev);
        }
    }

    /// A switchboard address (`host:port`) was handed out by a connection of `version`.
    pub fn referral(&mut self, addr: &str, version: Option<u8>) {
        if self.referrals.len() >= MAX_REFERRALS && !self.referrals.contains_key(addr) {
            self.referrals.clear();
        }
        self.referrals.insert(addr.to_string(), version);
    }

    pub fn set_ids(&mut self, ids: ConnIds) {
        self.ids = ids;
    }

    pub fn has(&self, flow: FlowId) -> bool {
        self.conns.contains_key(&flow)
    }

    pub fn open(
        &mut self,
        flow: FlowId,
        client: SocketAddr,
        server: SocketAddr,
        ts: Ts,
        kind: MsnHttp,
        out: &mut Out<'_>,
    ) {
        self.conns.insert(
            flow,
            Conn {
                stream: HttpStream::new(Limits::default()),
                heads: VecDeque::new(),
                held: 0,
                given_up: false,
            },
        );
        let what = match kind {
            MsnHttp::Gateway => "HTTP gateway",
            MsnHttp::Passport => "Passport 1.4",
            MsnHttp::SecurityToken => "SSO security token service",
            MsnHttp::Soap => "SOAP services",
            MsnHttp::Config => "client configuration",
        };
        let mut ev = Event::new(
            ts,
            flow,
            None,
            Service::Unknown,
            None,
            EventKind::Connect(Connect {
                client: Some(client.to_string().into()),
                server: Some(server.to_string().into()),
                detail: Some(format!("MSN HTTP ({what}) recognised by content").into()),
            }),
        );
        out(&mut ev);
    }

    pub fn data(&mut self, flow: FlowId, dir: Dir, ts: Ts, bytes: &[u8], out: &mut Out<'_>) {
        self.stream_step(flow, ts, out, |st, items| st.feed(dir, bytes, ts, items));
    }

    pub fn gap(&mut self, flow: FlowId, dir: Dir, ts: Ts, len: u64, out: &mut Out<'_>) {
        self.stream_step(flow, ts, out, |st, items| st.gap(dir, len, ts, items));
    }

    pub fn end(&mut self, flow: FlowId, dir: Dir, ts: Ts, out: &mut Out<'_>) {
        self.stream_step(flow, ts, out, |st, items| st.finish_dir(dir, ts, items));
    }

    /// One step of a connection's HTTP stream (unless it was given up), then what it made
    /// decoded and the byte budget checked.
    fn stream_step(
        &mut self,
        flow: FlowId,
        ts: Ts,
        out: &mut Out<'_>,
        f: impl FnOnce(&mut HttpStream, &mut Vec<HttpItem>),
    ) {
        if let Some(c) = self.conns.get_mut(&flow) {
            if c.given_up {
                return;
            }
            f(&mut c.stream, &mut self.items);
            self.drain(flow, out);
            self.account(flow, ts, out);
        }
    }

    /// The TCP connection closed: what it held is decoded, its unanswered gateway
    /// requests reported, then its `close` event.
    pub fn close(&mut self, flow: FlowId, ts: Ts, close: Close<'_>, out: &mut Out<'_>) {
        let Some(c) = self.conns.get_mut(&flow) else {
            return;
        };
        c.stream.finish(ts, &mut self.items);
        self.drain(flow, out);
        if let Some(c) = self.conns.remove(&flow) {
            self.held -= c.held;
        }
        self.gateway.connection_closed(flow, ts, &mut self.gitems);
        self.gateway_items(out);
        let mut ev = Event::new(
            ts,
            flow,
            None,
            Service::Unknown,
            None,
            EventKind::Close(close),
        );
        out(&mut ev);
    }

    /// The input ended: gateway sessions still open are closed.
    pub fn finish(&mut self, ts: Ts, out: &mut Out<'_>) {
        self.gateway.finish(ts, &mut self.gitems);
        self.gateway_items(out);
    }

    fn drain(&mut self, flow: FlowId, out: &mut Out<'_>) {
        let items = std::mem::take(&mut self.items);
        for item in &items {
            self.gateway.on_item(flow, item, &mut self.gitems);
            let (dir, ts, h) = match item {
                HttpItem::Request(r) => {
                    let h = request_event(r);
                    if let Some(c) = self.conns.get_mut(&flow) {
                        if c.heads.len() >= MAX_HEADS {
                            c.heads.pop_front();
                        }
                        c.heads.push_back(head_only(r));
                    }
                    (Dir::C2s, r.ts, h)
                }
                HttpItem::Response(r) => {
                    let req = self.conns.get_mut(&flow).and_then(|c| {
                        let i = c.heads.iter().position(|q| Some(q.seq) == r.request_seq)?;
                        if r.interim {
                            c.heads.get(i).cloned()
                        } else {
                            c.heads.remove(i)
                        }
                    });
                    (Dir::S2c, r.ts, response_event(r, req.as_ref()))
                }
                HttpItem::Problem(p) => (
                    p.dir,
                    p.ts,
                    Http {
                        message: Some(HttpMessage::Problem),
                        problem: Some(HttpProblem {
                            kind: p.kind,
                            detail: p.detail.clone(),
                            offset: p.offset,
                        }),
                        ..Http::default()
                    },
                ),
                HttpItem::Tunnel { ts, status, target } => (
                    Dir::S2c,
                    *ts,
                    Http {
                        message: Some(HttpMessage::Tunnel),
                        status: Some(*status),
                        target: target.clone(),
                        ..Http::default()
                    },
                ),
            };
            let mut ev = Event::new(
                ts,
                flow,
                Some(dir),
                Service::Unknown,
                None,
                EventKind::Http(Box::new(h)),
            );
            out(&mut ev);
            // The MSNP of a gateway body comes after the HTTP message that carried it.
            self.gateway_items(out);
        }
        let mut items = items;
        items.clear();
        self.items = items;
    }

    fn gateway_items(&mut self, out: &mut Out<'_>) {
        let items = std::mem::take(&mut self.gitems);
        for g in items {
            self.gateway_item(g, out);
        }
    }

    fn gateway_item(&mut self, g: GatewayItem, out: &mut Out<'_>) {
        let id_change = matches!(g, GatewayItem::IdChanged { .. });
        match g {
            GatewayItem::Opened(o) => {
                let conn = self.ids.next();
                let service = match o.service {
                    GatewayService::Ns => Some(Service::Ns),
                    GatewayService::Sb => Some(Service::Sb),
                    GatewayService::Other(_) => None,
                };
                let version = match service {
                    Some(Service::Sb) => o
                        .server
                        .as_deref()
                        .and_then(|a| self.referrals.get(a).copied())
                        .flatten(),
                    _ => None,
                };
                let session =
                    Session::new(self.tables.clone(), conn, SessionHint { service, version });
                let via = Via {
                    gateway_session: o.session,
                    gateway_id: o.gateway_id.clone(),
                    gateway_service: o.service.clone(),
                    server: o.server.clone(),
                    tcp_conn: Some(o.http.conn),
                    request_seq: Some(o.http.request_seq),
                };
                let s = GwSession {
                    session,
                    via,
                    bytes: [0, 0],
                };
                let mut ev = s.session.event(
                    o.ts,
                    None,
                    EventKind::Connect(Connect {
                        client: None,
                        server: o.server.clone().map(Into::into),
                        detail: Some(
                            format!(
                                "HTTP gateway session {} (SessionID={}) on TCP connection {}",
                                o.session, o.gateway_id, o.http.conn
                            )
                            .into(),
                        ),
                    }),
                );
                ev.via = Some(Box::new(s.via.clone()));
                out(&mut ev);
                let mut step = GatewayEv::new(GatewayStep::Opened);
                step.session = Some(o.session);
                step.gateway_id = Some(o.gateway_id);
                step.gateway_service = Some(o.service);
                step.server = o.server;
                step.gateway_host = o.gateway_host;
                step.http_host = o.http_host;
                step.midway = o.midway;
                step.tcp_conn = Some(o.http.conn);
                step.request_seq = Some(o.http.request_seq);
                let mut ev = s
                    .session
                    .event(o.ts, None, EventKind::Gateway(Box::new(step)));
                ev.via = Some(Box::new(s.via.clone()));
                out(&mut ev);
                self.sessions.insert(o.session, s);
            }
            GatewayItem::Bytes {
                session,
                dir,
                ts,
                data,
                http,
            } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.via.tcp_conn = Some(http.conn);
                    s.via.request_seq = Some(http.request_seq);
                    s.bytes[dir.index()] += data.0.len() as u64;
                    let via = &s.via;
                    s.session.feed(dir, &data.0, ts, &mut |e| {
                        e.via = Some(Box::new(via.clone()));
                        out(e)
                    });
                }
            }
            GatewayItem::Gap {
                session,
                dir,
                ts,
                len,
                http,
            } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.via.tcp_conn = Some(http.conn);
                    s.via.request_seq = Some(http.request_seq);
                    let via = &s.via;
                    s.session.gap(dir, len, ts, &mut |e| {
                        e.via = Some(Box::new(via.clone()));
                        out(e)
                    });
                }
            }
            GatewayItem::Poll {
                session,
                ts,
                empty,
                lifespan,
                http,
            } => {
                let mut step = GatewayEv::new(GatewayStep::Poll);
                step.empty = Some(empty);
                step.lifespan = lifespan;
                step.tcp_conn = Some(http.conn);
                step.request_seq = Some(http.request_seq);
                self.step(session, ts, step, out);
            }
            GatewayItem::IdChanged {
                session,
                ts,
                old,
                new,
            }
            | GatewayItem::HostChanged {
                session,
                ts,
                old,
                new,
            } => {
                let kind = if id_change {
                    if let Some(s) = self.sessions.get_mut(&session) {
                        s.via.gateway_id = new.clone();
                    }
                    GatewayStep::IdChanged
                } else {
                    GatewayStep::HostChanged
                };
                let mut step = GatewayEv::new(kind);
                step.old = Some(old);
                step.new = Some(new);
                self.step(session, ts, step, out);
            }
            GatewayItem::Closed {
                session,
                ts,
                reason,
            } => {
                let Some(mut s) = self.sessions.remove(&session) else {
                    return;
                };
                let via = s.via.clone();
                s.session.finish(ts, &mut |e| {
                    e.via = Some(Box::new(via.clone()));
                    out(e)
                });
                let mut step = GatewayEv::new(GatewayStep::Closed);
                step.session = Some(session);
                step.gateway_id = Some(via.gateway_id.clone());
                step.reason = Some(reason);
                let mut ev = s
                    .session
                    .event(ts, None, EventKind::Gateway(Box::new(step)));
                ev.via = Some(Box::new(via.clone()));
                out(&mut ev);
                let (by, why) = match reason {
                    CloseReason::ServerClosed => (Some("server"), "Session=close"),
                    CloseReason::Evicted => (None, "evicted"),
                    CloseReason::EndOfInput => (None, "end of input"),
                };
                let mut ev = s.session.event(
                    ts,
                    None,
                    EventKind::Close(Close {
                        by: by.map(Into::into),
                        reason: Some(why.into()),
                        bytes_c2s: s.bytes[0],
                        bytes_s2c: s.bytes[1],
                        ..Close::default()
                    }),
                );
                ev.via = Some(Box::new(via));
                out(&mut ev);
            }
            GatewayItem::Error {
                session,
                ts,
                status,
                detail,
                lost,
                http,
            } => {
                let mut step = GatewayEv::new(GatewayStep::Error);
                step.status = status;
                step.detail = Some(detail);
                step.lost = Some(lost).filter(|&n| n > 0);
                step.tcp_conn = Some(http.conn);
                step.request_seq = Some(http.request_seq);
                match session {
                    Some(sid) if self.sessions.contains_key(&sid) => self.step(sid, ts, step, out),
                    _ => {
                        let mut ev = Event::new(
                            ts,
                            http.conn,
                            None,
                            Service::Unknown,
                            None,
                            EventKind::Gateway(Box::new(step)),
                        );
                        out(&mut ev);
                    }
                }
            }
        }
    }

    /// A gateway event of an open session, on that session's connection.
    fn step(&mut self, session: u64, ts: Ts, mut step: GatewayEv, out: &mut Out<'_>) {
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        step.session = Some(session);
        step.gateway_id
            .get_or_insert_with(|| s.via.gateway_id.clone());
        let mut ev = s
            .session
            .event(ts, None, EventKind::Gateway(Box::new(step)));
        ev.via = Some(Box::new(s.via.clone()));
        out(&mut ev);
    }
}

/// A request without its body (bodies can be megabytes; pairing needs the head).
fn head_only(r: &Request) -> Request {
    let b = &r.body;
    Request {
        seq: r.seq,
        offset: r.offset,
        ts: r.ts,
        ts_end: r.ts_end,
        head: r.head.clone(),
        body: Body {
            data: Default::default(),
            framing: b.framing,
            wire_length: b.wire_length,
            declared_length: b.declared_length,
            content_encoding: b.content_encoding.clone(),
            decoded: b.decoded,
            truncated: b.truncated,
            complete: b.complete,
            lost: b.lost,
            trailers: Vec::new(),
        },
    }
}

fn content_summary(h: &mut Http, headers: &[crate::http::Header], body: &Body) {
    h.content_type = crate::http::header(headers, "content-type").map(str::to_string);
    h.content_length = Some(body.wire_length);
    h.content_encoding = body.content_encoding.clone();
    h.framing = Some(body.framing);
    h.incomplete = !body.complete || body.lost > 0;
}

fn request_event(r: &Request) -> Http {
    let target = &r.head.target;
    let mut h = Http {
        message: Some(HttpMessage::Request),
        request_seq: Some(r.seq),
        method: Some(r.head.method.clone()),
        target: Some(target.clone()),
        endpoint: Some(target_path(target).to_string()),
        host: target_host(target)
            .map(str::to_string)
            .or_else(|| r.header("host").map(str::to_string)),
        ..Http::default()
    };
    content_summary(&mut h, &r.head.headers, &r.body);
    let known = detect::endpoint(target);
    h.known_endpoint = known.is_some();
    h.part = known.or_else(|| detect::classify_request(&r.head));
    if gateway::is_gateway_target(target) {
        h.gateway = Some(GatewayQuery::parse(target));
    }
    h.passport = passport::parse_exchange(r, None);
    if h.passport.is_some() {
        h.part.get_or_insert(MsnHttp::Passport);
    }
    match soap::parse_request(r) {
        Some(Ok(m)) => h.soap = Some(m),
        Some(Err(e)) => h.soap_error = Some(e.to_string()),
        None => {}
    }
    // A login found by its Passport headers, or SOAP of a known service, is MSN's on
    // whatever path the server chose (DALogin names it).
    h.known_endpoint |= h.passport.is_some()
        || h.soap
            .as_ref()
            .is_some_and(|m| m.service != soap::SoapService::Other);
    h
}

fn response_event(r: &Response, req: Option<&Request>) -> Http {
    let mut h = Http {
        message: Some(HttpMessage::Response),
        request_seq: r.request_seq,
        method: r.request_method.clone(),
        target: r.request_target.clone(),
        endpoint: r
            .request_target
            .as_deref()
            .map(|t| target_path(t).to_string()),
        status: Some(r.head.status),
        reason: Some(r.head.reason.clone()).filter(|s| !s.is_empty()),
        interim: r.interim,
        ..Http::default()
    };
    content_summary(&mut h, &r.head.headers, &r.body);
    let known = r.request_target.as_deref().and_then(detect::endpoint);
    h.known_endpoint = known.is_some();
    h.part = known
        .or_else(|| detect::classify_response(&r.head))
        .or_else(|| req.and_then(|q| detect::classify_request(&q.head)));
    h.messenger = gateway::messenger_header(r);
    if r.interim {
        return h;
    }
    if let Some(q) = req {
        h.passport = passport::parse_exchange(q, Some(r)).map(|mut p| {
            // The request's event carried the credentials; the answer's carries the outcome.
            if let PassportExchange::Login { credentials, .. } = &mut p {
                *credentials = None;
            }
            p
        });
    }
    match soap::parse_response(r) {
        Some(Ok(m)) => h.soap = Some(m),
        Some(Err(e)) => h.soap_error = Some(e.to_string()),
        None => {}
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_bodies_of_many_connections_stay_within_the_budget() {
        let tables = Arc::new(Tables::builtin().expect("tables"));
        let budget = 1 << 20;
        let mut side = HttpSide::new(tables, ConnIds::new(1)).with_budget(budget);
        let notes = std::cell::RefCell::new(Vec::new());
        let mut out = |e: &mut Event<'_>| {
            if let EventKind::Note(m) = &e.kind {
                notes.borrow_mut().push((e.conn, m.message.to_string()));
            }
        };
        let c: SocketAddr = "10.0.0.1:5000".parse().expect("addr");
        let s: SocketAddr = "10.0.0.2:80".parse().expect("addr");
        let head = b"POST /gateway/gateway.dll?Action=open&Server=NS&IP=1.2.3.4 HTTP/1.1\r\n\
            Content-Type: application/x-msn-messenger\r\nContent-Length: 4000000\r\n\r\n";
        let chunk = vec![b'x'; 64 << 10];
        // 40 connections, each 256 KiB into a 4 MB body it never finishes: 10 MiB in all
        // without the budget.
        for flow in 1..=40u64 {
            side.open(flow, c, s, Ts(0), MsnHttp::Gateway, &mut out);
            side.data(flow, Dir::C2s, Ts(0), head, &mut out);
            for _ in 0..4 {
                side.data(flow, Dir::C2s, Ts(0), &chunk, &mut out);
                assert!(
                    side.held() <= budget,
                    "{} bytes held over a {budget}-byte budget",
                    side.held()
                );
            }
        }
        let (n, first, text) = {
            let v = notes.borrow();
            (v.len(), v[0].0, v[0].1.clone())
        };
        assert!(n >= 30, "{n} connections given up");
        assert!(text.contains("HTTP memory budget"), "{text}");
        // A connection given up ignores what follows, and its close still comes.
        side.data(first, Dir::C2s, Ts(1), &chunk, &mut out);
        side.close(first, Ts(2), Close::default(), &mut out);
        assert!(side.held() <= budget);
    }
}
