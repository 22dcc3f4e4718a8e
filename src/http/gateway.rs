//! The MSN HTTP gateway (gateway.dll, `application/x-msn-messenger`) as logical MSNP
//! connections: each gateway SessionID, followed across TCP connections, SessionID and
//! GW-IP changes, becomes one session whose client bytes are the request bodies and whose
//! server bytes are the response bodies. Fed the [`HttpItem`]s of every connection in time
//! order; it does not decode MSNP (the caller feeds [`GatewayItem::Bytes`] to the session
//! decoder) and ignores HTTP that is not gateway traffic.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::stream::{Body, HttpItem, Request, Response};
use super::{header, query_params, target_host, target_path, Bytes};
use crate::event::{Dir, Ts};

/// Which MSNP server a gateway session talks to (`Server=` of the open request).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GatewayService {
    #[serde(rename = "NS")]
    Ns,
    #[serde(rename = "SB")]
    Sb,
    /// Absent, or a value other than NS/SB (kept as sent).
    #[serde(rename = "other")]
    Other(String),
}

impl GatewayService {
    fn parse(s: Option<&str>) -> GatewayService {
        match s {
            Some(s) if s.eq_ignore_ascii_case("NS") => GatewayService::Ns,
            Some(s) if s.eq_ignore_ascii_case("SB") => GatewayService::Sb,
            Some(s) => GatewayService::Other(s.to_string()),
            None => GatewayService::Other(String::new()),
        }
    }
}

/// The HTTP exchange an item came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpContext {
    /// The caller's id of the TCP connection.
    pub conn: u64,
    /// [`Request::seq`] on that connection.
    pub request_seq: u64,
}

/// A new logical MSNP connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    /// This decoder's number for the session (from 1), stable across SessionID changes.
    pub session: u64,
    /// The gateway's SessionID.
    pub gateway_id: String,
    pub service: GatewayService,
    /// `IP=` of the open request: the NS host, or the switchboard's address from XFR/RNG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// `GW-IP=` of the answer (or `X-MSN-Host`): where the client sends the next requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_host: Option<String>,
    /// The host the open request went to (absolute target, else Host header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_host: Option<String>,
    /// The capture started inside this session (no open request seen).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub midway: bool,
    pub ts: Ts,
    pub http: HttpContext,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The server's `Session=close`.
    ServerClosed,
    /// More sessions than [`GatewayLimits::max_sessions`]: the least recently used ended.
    Evicted,
    /// The input ended with the session still open.
    EndOfInput,
}

/// What the gateway decoder hands on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GatewayItem {
    Opened(Opened),
    /// The next bytes of a session's MSNP stream in one direction (a request or response
    /// body), to be fed to the session decoder as if they came over TCP.
    Bytes {
        session: u64,
        dir: Dir,
        ts: Ts,
        data: Bytes,
        http: HttpContext,
    },
    /// Bytes of a session's stream that were not captured (a cut or truncated body);
    /// `len` is 1 when only the fact is known (a truncated Content-Encoding'd body).
    Gap {
        session: u64,
        dir: Dir,
        ts: Ts,
        len: u64,
        http: HttpContext,
    },
    /// An `Action=poll` exchange; `empty` when the server had nothing queued.
    Poll {
        session: u64,
        ts: Ts,
        empty: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lifespan: Option<u32>,
        http: HttpContext,
    },
    /// The server gave the session a new SessionID.
    IdChanged {
        session: u64,
        ts: Ts,
        old: String,
        new: String,
    },
    /// `GW-IP` / `X-MSN-Host` moved the session to another gateway host.
    HostChanged {
        session: u64,
        ts: Ts,
        old: String,
        new: String,
    },
    Closed {
        session: u64,
        ts: Ts,
        reason: CloseReason,
    },
    /// A gateway exchange that could not be attributed or failed (non-200 answer, no
    /// `X-MSN-Messenger`, a request never answered). `lost` client bytes did not reach
    /// any session.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<u64>,
        ts: Ts,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        detail: String,
        #[serde(default, skip_serializing_if = "is_zero")]
        lost: u64,
        http: HttpContext,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl crate::secret::Redact for GatewayItem {
    /// Replaces secrets inside MSNP bytes (tickets of `USR ... TWN S`, see
    /// [`super::redact_text`]). The MSNP decoder redacts its own events; this is for
    /// writing these items out directly.
    fn redact(&mut self) -> bool {
        match self {
            GatewayItem::Bytes { data, .. } => super::redact_text(&mut data.0) > 0,
            _ => false,
        }
    }
}

/// Bounds on what the decoder keeps.
#[derive(Debug, Clone, Copy)]
pub struct GatewayLimits {
    /// Open sessions tracked at once.
    pub max_sessions: usize,
    /// Gateway requests waiting for their answers (over all connections).
    pub max_pending: usize,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        GatewayLimits {
            max_sessions: 4096,
            max_pending: 1024,
        }
    }
}

/// `X-MSN-Messenger: SessionID=...; GW-IP=...[; Session=close]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessengerHeader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw_ip: Option<String>,
    pub close: bool,
}

impl MessengerHeader {
    pub fn parse(v: &str) -> MessengerHeader {
        let mut h = MessengerHeader::default();
        for part in v.split(';') {
            let (k, val) = part.split_once('=').unwrap_or((part, ""));
            let (k, val) = (k.trim(), val.trim());
            if k.eq_ignore_ascii_case("SessionID") && !val.is_empty() {
                h.session_id = Some(val.to_string());
            } else if k.eq_ignore_ascii_case("GW-IP") && !val.is_empty() {
                h.gw_ip = Some(val.to_string());
            } else if k.eq_ignore_ascii_case("Session") && val.eq_ignore_ascii_case("close") {
                h.close = true;
            }
        }
        h
    }
}

/// The query of a gateway request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifespan: Option<u32>,
}

impl GatewayQuery {
    pub fn parse(target: &str) -> GatewayQuery {
        let mut q = GatewayQuery::default();
        for (k, v) in query_params(target) {
            match k.to_ascii_lowercase().as_str() {
                "action" => q.action = Some(v),
                "sessionid" => q.session_id = Some(v).filter(|s| !s.is_empty()),
                "server" => q.server = Some(v),
                "ip" => q.ip = Some(v).filter(|s| !s.is_empty()),
                "lifespan" => q.lifespan = v.parse().ok(),
                _ => {}
            }
        }
        q
    }
    fn is(&self, action: &str) -> bool {
        self.action
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(action))
    }
}

/// Is this request target the gateway (`.../gateway.dll`, origin or absolute form)?
pub fn is_gateway_target(target: &str) -> bool {
    let p = target_path(target);
    p.len() >= 11 && p[p.len() - 11..].eq_ignore_ascii_case("gateway.dll")
}

#[derive(Debug)]
struct PendingReq {
    query: GatewayQuery,
    /// The session the request was attributed to when it arrived (its body already sent).
    session: Option<u64>,
    body: Option<Body>,
    http_host: Option<String>,
    ts: Ts,
    order: u64,
}

#[derive(Debug)]
struct Sess {
    gateway_id: String,
    host: Option<String>,
    last_used: u64,
}

/// The gateway decoder over all connections of an input.
#[derive(Debug, Default)]
pub struct Gateway {
    limits: GatewayLimits,
    /// Gateway SessionID -> logical session.
    ids: HashMap<String, u64>,
    sessions: BTreeMap<u64, Sess>,
    pending: HashMap<(u64, u64), PendingReq>,
    next_session: u64,
    clock: u64,
}

impl Gateway {
    pub fn new(limits: GatewayLimits) -> Gateway {
        Gateway {
            limits,
            ..Gateway::default()
        }
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// One item of connection `conn`. Returns true when it was gateway traffic.
    pub fn on_item(&mut self, conn: u64, item: &HttpItem, out: &mut Vec<GatewayItem>) -> bool {
        match item {
            HttpItem::Request(r) => self.on_request(conn, r, out),
            HttpItem::Response(r) => self.on_response(conn, r, out),
            HttpItem::Problem(_) | HttpItem::Tunnel { .. } => false,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn on_request(&mut self, conn: u64, r: &Request, out: &mut Vec<GatewayItem>) -> bool {
        if !is_gateway_target(&r.head.target) {
            return false;
        }
        if r.head.method.eq_ignore_ascii_case("OPTIONS") {
            // CORS preflight of web clients: no MSNP in it.
            return true;
        }
        let query = GatewayQuery::parse(&r.head.target);
        let http = HttpContext {
            conn,
            request_seq: r.seq,
        };
        let order = self.tick();
        let known = if query.is("open") {
            None
        } else {
            query
                .session_id
                .as_ref()
                .and_then(|id| self.ids.get(id).copied())
        };
        // A known session's bytes go on at once; an open's wait for the SessionID.
        let body = match known {
            Some(s) => {
                if let Some(sess) = self.sessions.get_mut(&s) {
                    sess.last_used = order;
                }
                push_body(out, s, Dir::C2s, r.ts_end, &r.body, &http);
                None
            }
            None => Some(r.body.clone()),
        };
        if self.pending.len() >= self.limits.max_pending {
            if let Some((&k, _)) = self.pending.iter().min_by_key(|(_, p)| p.order) {
                if let Some(p) = self.pending.remove(&k) {
                    self.unanswered(k, p, r.ts, out);
                }
            }
        }
        let http_host = target_host(&r.head.target)
            .map(str::to_string)
            .or_else(|| r.header("host").map(str::to_string));
        self.pending.insert(
            (conn, r.seq),
            PendingReq {
                query,
                session: known,
                body,
                http_host,
                ts: r.ts_end,
                order,
            },
        );
        true
    }

    fn unanswered(
        &mut self,
        (conn, seq): (u64, u64),
        p: PendingReq,
        ts: Ts,
        out: &mut Vec<GatewayItem>,
    ) {
        let lost = p.body.as_ref().map_or(0, |b| b.wire_length);
        out.push(GatewayItem::Error {
            session: p.session,
            ts,
            status: None,
            detail: "gateway request never answered".into(),
            lost: if p.session.is_some() { 0 } else { lost },
            http: HttpContext {
                conn,
                request_seq: seq,
            },
        });
    }

    fn on_response(&mut self, conn: u64, r: &Response, out: &mut Vec<GatewayItem>) -> bool {
        if r.interim {
            return self
                .pending
                .contains_key(&(conn, r.request_seq.unwrap_or(u64::MAX)));
        }
        let mh = r.header("x-msn-messenger").map(MessengerHeader::parse);
        let Some(p) = r.request_seq.and_then(|s| self.pending.remove(&(conn, s))) else {
            if mh.is_some() {
                out.push(GatewayItem::Error {
                    session: None,
                    ts: r.ts,
                    status: Some(r.head.status),
                    detail: "gateway answer to a request not seen".into(),
                    lost: r.body.wire_length,
                    http: HttpContext {
                        conn,
                        request_seq: r.request_seq.unwrap_or(0),
                    },
                });
                return true;
            }
            return false;
        };
        let http = HttpContext {
            conn,
            request_seq: r.request_seq.unwrap_or(0),
        };
        let ts = r.ts_end;
        let mh = mh.unwrap_or_default();
        let new_host = r
            .header("x-msn-host")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or(mh.gw_ip.clone());
        if r.head.status != 200 || mh.session_id.is_none() && p.session.is_none() {
            let lost = if p.session.is_some() {
                0
            } else {
                p.body.as_ref().map_or(0, |b| b.wire_length)
            };
            out.push(GatewayItem::Error {
                session: p.session,
                ts,
                status: Some(r.head.status),
                detail: if r.head.status != 200 {
                    format!("gateway answered {} {}", r.head.status, r.head.reason)
                } else {
                    "gateway answer without X-MSN-Messenger SessionID".into()
                },
                lost,
                http,
            });
            return true;
        }
        let session = match p.session {
            Some(s) => s,
            None => {
                // An open, or a session the capture joined midway.
                let id = mh
                    .session_id
                    .clone()
                    .or(p.query.session_id.clone())
                    .unwrap_or_default();
                let midway = !p.query.is("open");
                let s = match (midway, self.ids.get(&id)) {
                    // Another request of a midway session answered first.
                    (true, Some(&s)) => s,
                    _ => self.open(&p, &id, new_host.clone(), midway, ts, &http, out),
                };
                if let Some(b) = &p.body {
                    push_body(out, s, Dir::C2s, p.ts, b, &http);
                }
                s
            }
        };
        let order = self.tick();
        let mut changes = Vec::new();
        if let Some(sess) = self.sessions.get_mut(&session) {
            sess.last_used = order;
            if let Some(id) = &mh.session_id {
                if *id != sess.gateway_id {
                    changes.push(GatewayItem::IdChanged {
                        session,
                        ts,
                        old: std::mem::replace(&mut sess.gateway_id, id.clone()),
                        new: id.clone(),
                    });
                    self.ids.insert(id.clone(), session);
                }
            }
            if let Some(h) = &new_host {
                match &sess.host {
                    Some(old) if old != h => {
                        changes.push(GatewayItem::HostChanged {
                            session,
                            ts,
                            old: old.clone(),
                            new: h.clone(),
                        });
                        sess.host = Some(h.clone());
                    }
                    None => sess.host = Some(h.clone()),
                    _ => {}
                }
            }
        }
        out.extend(changes);
        if p.query.is("poll") {
            out.push(GatewayItem::Poll {
                session,
                ts,
                empty: r.body.data.0.is_empty() && r.body.wire_length == 0,
                lifespan: p.query.lifespan,
                http: http.clone(),
            });
        }
        push_body(out, session, Dir::S2c, ts, &r.body, &http);
        if mh.close {
            self.close(session, ts, CloseReason::ServerClosed, out);
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        p: &PendingReq,
        id: &str,
        host: Option<String>,
        midway: bool,
        ts: Ts,
        http: &HttpContext,
        out: &mut Vec<GatewayItem>,
    ) -> u64 {
        if self.sessions.len() >= self.limits.max_sessions {
            if let Some((&old, _)) = self.sessions.iter().min_by_key(|(_, s)| s.last_used) {
                self.close(old, ts, CloseReason::Evicted, out);
            }
        }
        self.next_session += 1;
        let s = self.next_session;
        // A reused SessionID now names the new session.
        if let Some(prev) = self.ids.insert(id.to_string(), s) {
            if self.sessions.get(&prev).is_some_and(|x| x.gateway_id == id) {
                self.close(prev, ts, CloseReason::ServerClosed, out);
                self.ids.insert(id.to_string(), s);
            }
        }
        let order = self.tick();
        self.sessions.insert(
            s,
            Sess {
                gateway_id: id.to_string(),
                host: host.clone(),
                last_used: order,
            },
        );
        out.push(GatewayItem::Opened(Opened {
            session: s,
            gateway_id: id.to_string(),
            service: GatewayService::parse(p.query.server.as_deref()),
            server: p.query.ip.clone(),
            gateway_host: host,
            http_host: p.http_host.clone(),
            midway,
            ts: p.ts,
            http: http.clone(),
        }));
        s
    }

    fn close(&mut self, session: u64, ts: Ts, reason: CloseReason, out: &mut Vec<GatewayItem>) {
        if self.sessions.remove(&session).is_some() {
            self.ids.retain(|_, s| *s != session);
            out.push(GatewayItem::Closed {
                session,
                ts,
                reason,
            });
        }
    }

    /// Connection `conn` ended: its requests still waiting will never be answered.
    pub fn connection_closed(&mut self, conn: u64, ts: Ts, out: &mut Vec<GatewayItem>) {
        let mut keys: Vec<_> = self
            .pending
            .keys()
            .filter(|k| k.0 == conn)
            .copied()
            .collect();
        keys.sort_unstable();
        for k in keys {
            if let Some(p) = self.pending.remove(&k) {
                self.unanswered(k, p, ts, out);
            }
        }
    }

    /// The input ended: requests never answered are reported, open sessions closed.
    pub fn finish(&mut self, ts: Ts, out: &mut Vec<GatewayItem>) {
        let mut keys: Vec<_> = self.pending.keys().copied().collect();
        keys.sort_unstable();
        for k in keys {
            if let Some(p) = self.pending.remove(&k) {
                self.unanswered(k, p, ts, out);
            }
        }
        let open: Vec<u64> = self.sessions.keys().copied().collect();
        for s in open {
            self.close(s, ts, CloseReason::EndOfInput, out);
        }
    }
}

fn push_body(
    out: &mut Vec<GatewayItem>,
    session: u64,
    dir: Dir,
    ts: Ts,
    b: &Body,
    http: &HttpContext,
) {
    if !b.data.0.is_empty() {
        out.push(GatewayItem::Bytes {
            session,
            dir,
            ts,
            data: b.data.clone(),
            http: http.clone(),
        });
    }
    // What the stream did not keep (over its body limit, lost in the capture, or cut by
    // the end of the stream) is a hole in the MSNP stream.
    let mut missing = if b.decoded {
        u64::from(b.truncated)
    } else {
        b.wire_length.saturating_sub(b.data.0.len() as u64)
    };
    if !b.complete {
        missing += match b.declared_length {
            Some(n) => n.saturating_sub(b.wire_length),
            None => 1,
        }
        .max(u64::from(missing == 0));
    }
    if missing > 0 {
        out.push(GatewayItem::Gap {
            session,
            dir,
            ts,
            len: missing,
            http: http.clone(),
        });
    }
}

/// Is this the `Content-Type` of gateway bodies?
pub fn is_gateway_content_type(v: &str) -> bool {
    v.split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-msn-messenger"))
}

/// The `X-MSN-Messenger` header of a response, parsed.
pub fn messenger_header(r: &Response) -> Option<MessengerHeader> {
    header(&r.head.headers, "x-msn-messenger").map(MessengerHeader::parse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::stream::HttpStream;

    /// Several TCP connections, each with its own HTTP decoder, feeding one gateway.
    #[derive(Default)]
    struct Net {
        conns: BTreeMap<u64, HttpStream>,
        gw: Gateway,
        out: Vec<GatewayItem>,
        t: i64,
    }

    impl Net {
        fn send(&mut self, conn: u64, dir: Dir, bytes: &[u8]) {
            self.t += 1;
            let mut items = Vec::new();
            self.conns
                .entry(conn)
                .or_default()
                .feed(dir, bytes, Ts(self.t), &mut items);
            for i in &items {
                self.gw.on_item(conn, i, &mut self.out);
            }
        }
        fn close(&mut self, conn: u64) {
            let mut items = Vec::new();
            if let Some(mut s) = self.conns.remove(&conn) {
                s.finish(Ts(self.t), &mut items);
            }
            for i in &items {
                self.gw.on_item(conn, i, &mut self.out);
            }
            self.gw.connection_closed(conn, Ts(self.t), &mut self.out);
        }
        fn finish(mut self) -> Vec<GatewayItem> {
            let conns: Vec<u64> = self.conns.keys().copied().collect();
            for c in conns {
                self.close(c);
            }
            self.gw.finish(Ts(self.t), &mut self.out);
            self.out
        }
    }

    fn post(target: &str, body: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "POST {target} HTTP/1.1\r\nUser-Agent: MSMSGS\r\nContent-Type: application/x-msn-messenger\r\nProxy-Connection: Keep-Alive\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    }

    fn ok(xmsn: &str, body: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "HTTP/1.1 200 OK\r\nX-MSN-Messenger: {xmsn}\r\nContent-Type: application/x-msn-messenger\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    }

    /// Per session and direction, the concatenated bytes.
    fn streams(items: &[GatewayItem]) -> BTreeMap<(u64, Dir), Vec<u8>> {
        let mut m: BTreeMap<(u64, Dir), Vec<u8>> = BTreeMap::new();
        for i in items {
            if let GatewayItem::Bytes {
                session, dir, data, ..
            } = i
            {
                m.entry((*session, *dir))
                    .or_default()
                    .extend_from_slice(&data.0);
            }
        }
        m
    }

    #[test]
    fn open_poll_and_session_over_two_connections() {
        let mut n = Net::default();
        n.send(1, Dir::C2s, &post("http://gateway.messenger.hotmail.com/gateway/gateway.dll?Action=open&Server=NS&IP=messenger.hotmail.com", b"VER 1 MSNP8 CVR0\r\n"));
        n.send(
            1,
            Dir::S2c,
            &ok(
                "SessionID=954547325.13160; GW-IP=207.46.110.18",
                b"VER 1 MSNP8\r\n",
            ),
        );
        n.send(
            1,
            Dir::C2s,
            &post(
                "http://207.46.110.18/gateway/gateway.dll?Action=poll&SessionID=954547325.13160",
                b"",
            ),
        );
        n.send(
            1,
            Dir::S2c,
            &ok("SessionID=954547325.13160; GW-IP=207.46.110.18", b""),
        );
        n.close(1);
        // The next request on a fresh connection, to a new host given by GW-IP.
        n.send(
            2,
            Dir::C2s,
            &post(
                "http://207.46.110.18/gateway/gateway.dll?SessionID=954547325.13160",
                b"CVR 2 0x0409 win 4.10 i386 MSNMSGR 5.0.0544 MSMSGS a@b.c\r\n",
            ),
        );
        n.send(
            2,
            Dir::S2c,
            &ok(
                "SessionID=954547325.13161; GW-IP=207.46.110.19",
                b"CVR 2 6.0.0602 6.0.0602 1.0.0000 http://x http://y\r\n",
            ),
        );
        n.send(
            2,
            Dir::C2s,
            &post(
                "http://207.46.110.19/gateway/gateway.dll?SessionID=954547325.13161",
                b"OUT\r\n",
            ),
        );
        n.send(
            2,
            Dir::S2c,
            &ok(
                "SessionID=954547325.13161; GW-IP=207.46.110.19; Session=close",
                b"",
            ),
        );
        let items = n.finish();
        let Some(GatewayItem::Opened(o)) = items.first() else {
            panic!("{items:?}")
        };
        assert_eq!(o.service, GatewayService::Ns);
        assert_eq!(o.server.as_deref(), Some("messenger.hotmail.com"));
        assert_eq!(o.gateway_host.as_deref(), Some("207.46.110.18"));
        assert_eq!(
            o.http_host.as_deref(),
            Some("gateway.messenger.hotmail.com")
        );
        assert!(!o.midway);
        let s = streams(&items);
        assert_eq!(s.len(), 2, "one session: {items:?}");
        assert_eq!(
            s[&(1, Dir::C2s)],
            b"VER 1 MSNP8 CVR0\r\nCVR 2 0x0409 win 4.10 i386 MSNMSGR 5.0.0544 MSMSGS a@b.c\r\nOUT\r\n"
        );
        assert!(items.iter().any(|i| matches!(
            i,
            GatewayItem::Poll {
                session: 1,
                empty: true,
                ..
            }
        )));
        assert!(items
            .iter()
            .any(|i| matches!(i, GatewayItem::IdChanged { new, .. } if new == "954547325.13161")));
        assert!(items
            .iter()
            .any(|i| matches!(i, GatewayItem::HostChanged { new, .. } if new == "207.46.110.19")));
        assert!(matches!(
            items.last(),
            Some(GatewayItem::Closed {
                session: 1,
                reason: CloseReason::ServerClosed,
                ..
            })
        ));
        assert!(
            !items.iter().any(|i| matches!(i, GatewayItem::Error { .. })),
            "{items:?}"
        );
    }

    #[test]
    fn two_users_and_soap_interleaved_on_one_connection() {
        let mut n = Net::default();
        n.send(
            7,
            Dir::C2s,
            &post(
                "/gateway/gateway.dll?Action=open&Server=NS&IP=127.0.0.1",
                b"VER 1 MSNP11 CVR0\r\n",
            ),
        );
        n.send(
            7,
            Dir::S2c,
            &ok("SessionID=A; GW-IP=127.0.0.1", b"VER 1 MSNP11\r\n"),
        );
        n.send(7, Dir::C2s, b"POST /abservice/abservice.asmx HTTP/1.1\r\nContent-Type: text/xml\r\nContent-Length: 4\r\n\r\n<a/>");
        n.send(
            7,
            Dir::S2c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n<b/>",
        );
        n.send(
            7,
            Dir::C2s,
            &post(
                "/gateway/gateway.dll?Action=open&Server=SB&IP=127.0.0.1:1864",
                b"USR 1 b@c.d 123.456\r\n",
            ),
        );
        n.send(
            7,
            Dir::S2c,
            &ok("SessionID=B; GW-IP=127.0.0.1:1864", b"USR 1 OK b@c.d B\r\n"),
        );
        // The client of session A sends with Expect: 100-continue and a chunked body.
        n.send(7, Dir::C2s, b"POST /gateway/gateway.dll?SessionID=A HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
        n.send(7, Dir::S2c, b"HTTP/1.1 100 Continue\r\n\r\n");
        n.send(
            7,
            Dir::C2s,
            b"8\r\nCHG 2 NL\r\n3\r\nN 0\r\n2\r\n\r\n\r\n0\r\n\r\n",
        );
        n.send(
            7,
            Dir::S2c,
            &ok("SessionID=A; GW-IP=127.0.0.1", b"CHG 2 NLN 0\r\n"),
        );
        n.send(
            7,
            Dir::C2s,
            &post("/gateway/gateway.dll?SessionID=B", b"CAL 2 a@b.c\r\n"),
        );
        n.send(
            7,
            Dir::S2c,
            &ok("SessionID=B; GW-IP=127.0.0.1:1864", b"CAL 2 RINGING 1\r\n"),
        );
        let items = n.finish();
        let opened: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                GatewayItem::Opened(o) => Some((o.session, o.service.clone(), o.server.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            opened,
            vec![
                (1, GatewayService::Ns, Some("127.0.0.1".into())),
                (2, GatewayService::Sb, Some("127.0.0.1:1864".into()))
            ]
        );
        let s = streams(&items);
        assert_eq!(s[&(1, Dir::C2s)], b"VER 1 MSNP11 CVR0\r\nCHG 2 NLN 0\r\n");
        assert_eq!(s[&(1, Dir::S2c)], b"VER 1 MSNP11\r\nCHG 2 NLN 0\r\n");
        assert_eq!(s[&(2, Dir::C2s)], b"USR 1 b@c.d 123.456\r\nCAL 2 a@b.c\r\n");
        assert_eq!(
            s[&(2, Dir::S2c)],
            b"USR 1 OK b@c.d B\r\nCAL 2 RINGING 1\r\n"
        );
        assert!(
            !items.iter().any(|i| matches!(i, GatewayItem::Error { .. })),
            "{items:?}"
        );
        assert_eq!(
            items
                .iter()
                .filter(|i| matches!(
                    i,
                    GatewayItem::Closed {
                        reason: CloseReason::EndOfInput,
                        ..
                    }
                ))
                .count(),
            2
        );
    }

    #[test]
    fn msnp21_lifespan_and_x_msn_host() {
        let mut n = Net::default();
        n.send(
            1,
            Dir::C2s,
            &post(
                "/gateway/gateway.dll?SessionID=&Action=open&Server=NS&IP=geo.messenger.live.com",
                b"VER 1 MSNP21 CVR0\r\n",
            ),
        );
        n.send(1, Dir::S2c, &{
            let mut v = b"HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID=S1; GW-IP=1.2.3.4\r\nX-MSN-Host: bn1.gateway.messenger.live.com\r\nContent-Length: 0\r\n\r\n".to_vec();
            v.extend_from_slice(b"");
            v
        });
        n.send(
            1,
            Dir::C2s,
            &post(
                "/gateway/gateway.dll?Action=poll&Lifespan=60&SessionID=S1",
                b"",
            ),
        );
        n.send(
            1,
            Dir::S2c,
            &ok("SessionID=S1; GW-IP=1.2.3.4", b"VER 1 MSNP21\r\n"),
        );
        let items = n.finish();
        let Some(GatewayItem::Opened(o)) = items.first() else {
            panic!()
        };
        assert_eq!(
            o.gateway_host.as_deref(),
            Some("bn1.gateway.messenger.live.com")
        );
        assert!(items.iter().any(|i| matches!(
            i,
            GatewayItem::Poll {
                lifespan: Some(60),
                empty: false,
                ..
            }
        )));
        assert_eq!(streams(&items)[&(1, Dir::S2c)], b"VER 1 MSNP21\r\n");
    }

    #[test]
    fn errors_and_unknown_sessions() {
        let mut n = Net::default();
        // The capture starts inside a session: it is opened midway.
        n.send(
            1,
            Dir::C2s,
            &post("/gateway/gateway.dll?SessionID=OLD", b"PNG\r\n"),
        );
        n.send(1, Dir::S2c, &ok("SessionID=OLD; GW-IP=h", b"QNG 50\r\n"));
        // An open that the server refuses: the client's bytes reach no session.
        n.send(
            1,
            Dir::C2s,
            &post(
                "/gateway/gateway.dll?Action=open&Server=NS&IP=x",
                b"VER 1 MSNP8\r\n",
            ),
        );
        n.send(
            1,
            Dir::S2c,
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        );
        // A request whose answer never comes.
        n.send(
            1,
            Dir::C2s,
            &post("/gateway/gateway.dll?SessionID=OLD", b"CHG 3 NLN\r\n"),
        );
        let items = n.finish();
        assert!(matches!(&items[0], GatewayItem::Opened(o) if o.midway && o.gateway_id == "OLD"));
        let errors: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                GatewayItem::Error {
                    status,
                    lost,
                    session,
                    ..
                } => Some((*status, *lost, *session)),
                _ => None,
            })
            .collect();
        assert_eq!(errors, vec![(Some(400), 13, None), (None, 0, Some(1))]);
        // The unanswered request's bytes were still given to the session.
        assert_eq!(streams(&items)[&(1, Dir::C2s)], b"PNG\r\nCHG 3 NLN\r\n");
    }

    #[test]
    fn cut_bodies_become_gaps() {
        let mut n = Net::default();
        n.send(
            1,
            Dir::C2s,
            &post(
                "/gateway/gateway.dll?Action=open&Server=NS&IP=x",
                b"VER 1 MSNP8\r\n",
            ),
        );
        n.send(1, Dir::S2c, b"HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID=Z; GW-IP=x\r\nContent-Length: 20\r\n\r\nVER 1 MS");
        let items = n.finish();
        assert!(
            items.iter().any(|i| matches!(
                i,
                GatewayItem::Gap {
                    dir: Dir::S2c,
                    len: 12,
                    ..
                }
            )),
            "{items:?}"
        );
    }

    #[test]
    fn sessions_are_bounded() {
        let mut n = Net {
            gw: Gateway::new(GatewayLimits {
                max_sessions: 2,
                max_pending: 8,
            }),
            ..Net::default()
        };
        for i in 0..5 {
            n.send(
                1,
                Dir::C2s,
                &post("/gateway/gateway.dll?Action=open&Server=SB&IP=x", b""),
            );
            n.send(1, Dir::S2c, &ok(&format!("SessionID=S{i}"), b""));
            assert!(n.gw.open_sessions() <= 2);
        }
        let items = n.finish();
        assert_eq!(
            items
                .iter()
                .filter(|i| matches!(
                    i,
                    GatewayItem::Closed {
                        reason: CloseReason::Evicted,
                        ..
                    }
                ))
                .count(),
            3
        );
    }

    #[test]
    fn headers_and_queries() {
        let h =
            MessengerHeader::parse("SessionID=954547325.13160; GW-IP=207.46.110.18; Session=close");
        assert_eq!(h.session_id.as_deref(), Some("954547325.13160"));
        assert_eq!(h.gw_ip.as_deref(), Some("207.46.110.18"));
        assert!(h.close);
        assert!(is_gateway_target(
            "http://gw/gateway/gateway.dll?Action=open"
        ));
        assert!(is_gateway_target("/gateway/GATEWAY.DLL"));
        assert!(!is_gateway_target("/gateway/gateway.dllx"));
        assert!(is_gateway_content_type(
            "application/x-msn-messenger; charset=utf-8"
        ));
    }
}
