//! The HTTP side decoded from real captures: the Passport 1.4 login of msnp11-sdk against
//! Escargot (../shared/captures, when present) and our scripted MSNP15 SSO scenario against
//! Escargot over plain TCP and over the HTTP gateway (captures/http). The TCP streams come
//! from a small pcap reader and an in-order reassembly written here, so these tests do
//! not depend on the capture reader being refactored elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use msntap::capture::reasm::Delivery;
use msntap::http::gateway::{Gateway, GatewayItem, GatewayService};
use msntap::http::passport::{self, Outcome, PassportExchange};
use msntap::http::soap::{self, SoapBody, SoapMessage};
use msntap::http::stream::{Framing, HttpItem, HttpStream, Request, Response};
use msntap::http::{sso, REDACTED};
use msntap::secret::Redact;
use msntap::{Dir, EventKind, Service, Session, SessionHint, Tables, Ts};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ------------------------------------------------------------------ a tiny pcap reader

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Addr([u8; 4], u16);

struct Seg {
    ts: Ts,
    src: Addr,
    dst: Addr,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
    data: Vec<u8>,
}

/// Legacy pcap, Ethernet, IPv4/TCP only: what tcpdump writes on Linux loopback.
fn read_pcap(path: &Path) -> Vec<Seg> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(b.len() >= 24, "short pcap");
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (le, nanos) = match magic {
        0xa1b2c3d4 => (true, false),
        0xa1b23c4d => (true, true),
        0xd4c3b2a1 => (false, false),
        0x4d3cb2a1 => (false, true),
        m => panic!("not a legacy pcap: {m:08x}"),
    };
    let u32at = |i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    assert_eq!(u32at(20), 1, "Ethernet link type expected");
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= b.len() {
        let (sec, frac, incl) = (u32at(i), u32at(i + 4), u32at(i + 8) as usize);
        let f = &b[i + 16..(i + 16 + incl).min(b.len())];
        i += 16 + incl;
        let micros = if nanos { frac / 1000 } else { frac };
        let ts = Ts::from_secs_micros(i64::from(sec), micros);
        if f.len() < 14 + 20 || f[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &f[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        if ip[9] != 6 || total < ihl + 20 {
            continue;
        }
        let tcp = &ip[ihl..total];
        let off = usize::from(tcp[12] >> 4) * 4;
        let flags = tcp[13];
        let ipv4 = |o: usize| [ip[o], ip[o + 1], ip[o + 2], ip[o + 3]];
        out.push(Seg {
            ts,
            src: Addr(ipv4(12), u16::from_be_bytes([tcp[0], tcp[1]])),
            dst: Addr(ipv4(16), u16::from_be_bytes([tcp[2], tcp[3]])),
            seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            ack: (flags & 0x10 != 0)
                .then(|| u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]])),
            syn: flags & 0x02 != 0,
            fin: flags & 0x01 != 0,
            data: tcp[off.min(tcp.len())..].to_vec(),
        });
    }
    out
}

/// What the reassembly hands on, per connection, in capture order.
enum Ev {
    Data(u64, Dir, Vec<u8>, Ts),
    Gap(u64, Dir, u64, Ts),
    Fin(u64, Dir, Ts),
}

/// One direction, reassembled in capture order (these loopback captures are in order;
/// a retransmission is trimmed, a hole is a gap).
#[derive(Default)]
struct Half {
    next: Option<u32>,
    fin: bool,
}

impl Half {
    fn segment(&mut self, seq: u32, data: &[u8], fin: bool, out: &mut dyn FnMut(Delivery<'_>)) {
        let next = *self.next.get_or_insert(seq);
        let ahead = seq.wrapping_sub(next) as i32;
        let data = if ahead < 0 {
            let skip = (-ahead) as usize;
            &data[skip.min(data.len())..]
        } else {
            if ahead > 0 {
                out(Delivery::Gap {
                    offset: 0,
                    len: ahead as u64,
                });
            }
            data
        };
        if !data.is_empty() {
            out(Delivery::Data(data));
        }
        let end = seq.wrapping_add((data.len() as i32 + ahead.min(0).abs()) as u32);
        if end.wrapping_sub(next) as i32 > 0 {
            self.next = Some(end);
        }
        self.fin |= fin;
    }
}

struct Conn {
    id: u64,
    client: Addr,
    halves: [Half; 2],
    fin: [bool; 2],
}

/// TCP connections of a pcap (client = the SYN's sender) and their ordered events.
fn reassemble(path: &Path) -> (Vec<(u64, Addr, Addr)>, Vec<Ev>) {
    let mut conns: HashMap<(Addr, Addr), Conn> = HashMap::new();
    let mut list = Vec::new();
    let mut evs = Vec::new();
    for s in read_pcap(path) {
        let key = if s.src < s.dst {
            (s.src, s.dst)
        } else {
            (s.dst, s.src)
        };
        let n = conns.len() as u64 + 1;
        let c = conns.entry(key).or_insert_with(|| {
            // The SYN without ACK comes from the client; else assume the lower port serves.
            let (client, server) = if s.syn && s.ack.is_none() || s.dst.1 < s.src.1 {
                (s.src, s.dst)
            } else {
                (s.dst, s.src)
            };
            list.push((n, client, server));
            Conn {
                id: n,
                client,
                halves: Default::default(),
                fin: [false; 2],
            }
        });
        let dir = if s.src == c.client {
            Dir::C2s
        } else {
            Dir::S2c
        };
        let d = dir.index();
        let id = c.id;
        if s.syn {
            c.halves[d].next = Some(s.seq.wrapping_add(1));
        }
        let seq = if s.syn { s.seq.wrapping_add(1) } else { s.seq };
        let ts = s.ts;
        let mut push = |x: Delivery<'_>| match x {
            Delivery::Data(b) => evs.push(Ev::Data(id, dir, b.to_vec(), ts)),
            Delivery::Gap { len, .. } => evs.push(Ev::Gap(id, dir, len, ts)),
            Delivery::Conflict { .. } => {}
        };
        if !s.data.is_empty() || s.fin {
            c.halves[d].segment(seq, &s.data, s.fin, &mut push);
        }
        for k in 0..2 {
            if !c.fin[k] && c.halves[k].fin {
                c.fin[k] = true;
                evs.push(Ev::Fin(id, if k == 0 { Dir::C2s } else { Dir::S2c }, ts));
            }
        }
    }
    list.sort();
    (list, evs)
}

// ------------------------------------------------------------------ decoding helpers

/// Everything the HTTP layer made of the connections on `http_port`, plus the raw bytes
/// per direction of every other connection.
#[derive(Default)]
struct Decoded {
    http: Vec<(u64, HttpItem)>,
    gateway: Vec<GatewayItem>,
    tcp: BTreeMap<u64, (Addr, Addr, [Vec<u8>; 2])>,
}

fn decode(path: &Path, http_port: u16) -> Decoded {
    let (conns, evs) = reassemble(path);
    let is_http: HashMap<u64, bool> = conns
        .iter()
        .map(|(id, _, s)| (*id, s.1 == http_port))
        .collect();
    let mut out = Decoded::default();
    for (id, c, s) in &conns {
        if s.1 != http_port {
            out.tcp.insert(*id, (*c, *s, [Vec::new(), Vec::new()]));
        }
    }
    let mut streams: HashMap<u64, HttpStream> = HashMap::new();
    let mut gw = Gateway::default();
    let mut fins: HashMap<u64, u8> = HashMap::new();
    for e in evs {
        let (id, mut items) = (
            match &e {
                Ev::Data(i, ..) | Ev::Gap(i, ..) | Ev::Fin(i, ..) => *i,
            },
            Vec::new(),
        );
        if !is_http[&id] {
            match e {
                Ev::Data(_, d, b, _) => out.tcp.get_mut(&id).unwrap().2[d.index()].extend(b),
                Ev::Gap(..) => panic!("gap in a TCP stream of {}", path.display()),
                Ev::Fin(..) => {}
            }
            continue;
        }
        let st = streams.entry(id).or_default();
        let mut closed = false;
        match e {
            Ev::Data(_, d, b, ts) => st.feed(d, &b, ts, &mut items),
            Ev::Gap(_, d, n, ts) => st.gap(d, n, ts, &mut items),
            Ev::Fin(_, d, ts) => {
                st.finish_dir(d, ts, &mut items);
                let f = fins.entry(id).or_default();
                *f += 1;
                closed = *f == 2;
            }
        }
        for i in items {
            gw.on_item(id, &i, &mut out.gateway);
            out.http.push((id, i));
        }
        if closed {
            gw.connection_closed(id, Ts(0), &mut out.gateway);
        }
    }
    let mut rest = Vec::new();
    for (id, st) in &mut streams {
        let mut items = Vec::new();
        st.finish(Ts(0), &mut items);
        rest.extend(items.into_iter().map(|i| (*id, i)));
    }
    for (id, i) in rest {
        gw.on_item(id, &i, &mut out.gateway);
        out.http.push((id, i));
    }
    gw.finish(Ts(0), &mut out.gateway);
    out
}

/// Requests with their final responses, per connection.
fn exchanges(http: &[(u64, HttpItem)]) -> Vec<(Request, Option<Response>)> {
    let mut reqs: BTreeMap<(u64, u64), (Request, Option<Response>)> = BTreeMap::new();
    for (c, i) in http {
        match i {
            HttpItem::Request(r) => {
                reqs.insert((*c, r.seq), (r.clone(), None));
            }
            HttpItem::Response(r) if !r.interim => {
                if let Some(x) = r.request_seq.and_then(|s| reqs.get_mut(&(*c, s))) {
                    x.1 = Some(r.clone());
                }
            }
            _ => {}
        }
    }
    let mut v: Vec<_> = reqs.into_values().collect();
    v.sort_by_key(|(r, _)| r.ts);
    v
}

fn problems(http: &[(u64, HttpItem)]) -> Vec<&HttpItem> {
    http.iter()
        .map(|(_, i)| i)
        .filter(|i| matches!(i, HttpItem::Problem(_)))
        .collect()
}

fn tables() -> Arc<Tables> {
    Arc::new(Tables::builtin().expect("tables"))
}

/// (command, trid) per direction, decoded by msntap's MSNP session decoder.
type Commands = [Vec<(String, Option<u64>)>; 2];

fn decode_msnp(
    service: Service,
    chunks: &[(Dir, Vec<u8>)],
) -> (Commands, Vec<msntap::event::Command<'static>>) {
    let mut s = Session::new(
        tables(),
        1,
        SessionHint {
            service: Some(service),
            version: None,
        },
    );
    let mut evs: Vec<msntap::Event<'static>> = Vec::new();
    let mut keep = |e: &mut msntap::Event<'_>| evs.push(e.clone().into_owned());
    for (d, b) in chunks {
        s.feed(*d, b, Ts(0), &mut keep);
    }
    s.finish(Ts(0), &mut keep);
    let mut out: Commands = Default::default();
    let mut cmds = Vec::new();
    for e in evs {
        match e.kind {
            EventKind::Command(c) => {
                let d = e.dir.expect("a command has a direction");
                out[d.index()].push((c.cmd.to_string(), c.trid));
                cmds.push(c);
            }
            EventKind::Desync(_) | EventKind::Gap(_) | EventKind::Error(_) => {
                panic!("MSNP decoding problem: {e:?}")
            }
            _ => {}
        }
    }
    (out, cmds)
}

// ------------------------------------------------------------------ Passport 1.4

#[test]
fn passport_capture_yields_nexus_and_logins_with_secrets_redacted() {
    let path = root().join("../shared/captures/msnp11_msnp11-sdk_http_escargot.pcap");
    if !path.exists() {
        println!("SKIP: {} is absent (../shared not mounted)", path.display());
        return;
    }
    let d = decode(&path, 8081);
    assert!(problems(&d.http).is_empty(), "{:?}", problems(&d.http));
    assert!(d.gateway.is_empty());
    let ex: Vec<PassportExchange> = exchanges(&d.http)
        .iter()
        .filter_map(|(q, r)| passport::parse_exchange(q, r.as_ref()))
        .collect();
    assert_eq!(ex.len(), 4, "{ex:#?}");
    let mut tickets = Vec::new();
    let mut accounts = Vec::new();
    for (k, e) in ex.iter().enumerate() {
        match (k % 2, e) {
            (
                0,
                PassportExchange::Nexus {
                    urls: Some(u),
                    status: Some(200),
                    ..
                },
            ) => {
                assert_eq!(u.da_login.as_deref(), Some("http://127.0.0.1:8081/login"));
            }
            (
                1,
                PassportExchange::Login {
                    credentials: Some(c),
                    outcome: Some(Outcome::Success(s)),
                    ..
                },
            ) => {
                assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("password1"));
                assert_eq!(c.org_verb.as_deref(), Some("GET"));
                assert!(c
                    .challenge
                    .iter()
                    .any(|f| f.key == "wp" && f.value == "FS_40SEC_0_COMPACT"));
                accounts.push(c.sign_in.clone().unwrap());
                tickets.push(s.ticket.as_ref().unwrap().expose().to_string());
            }
            _ => panic!("exchange {k} unexpected: {e:?}"),
        }
    }
    assert_eq!(accounts, ["alice@example.com", "bob@example.com"]);
    // The tickets are the ones the clients then gave the NS (`USR 4 TWN S <ticket>`).
    let mut ns_tickets = Vec::new();
    for (_, s, streams) in d.tcp.values() {
        if s.1 != 1863 {
            continue;
        }
        let (_, cmds) = decode_msnp(
            Service::Ns,
            &[
                (Dir::C2s, streams[0].clone()),
                (Dir::S2c, streams[1].clone()),
            ],
        );
        for c in cmds {
            if c.cmd == "USR" && c.arg(1) == Some("TWN") && c.arg(2) == Some("S") {
                if let Some(t) = c.arg(3).filter(|t| !t.contains('=')) {
                    ns_tickets.push(t.to_string());
                }
            }
        }
    }
    ns_tickets.sort();
    let mut sorted = tickets.clone();
    sorted.sort();
    assert_eq!(ns_tickets, sorted);

    // Serialized, the secrets are there; after redact() not one occurrence is left, in
    // the HTTP items nor in the Passport values.
    let mut http: Vec<HttpItem> = d.http.iter().map(|(_, i)| i.clone()).collect();
    let mut ex = ex;
    let before = serde_json::to_string(&(&http, &ex)).unwrap();
    assert!(before.contains("password1"));
    assert!(tickets.iter().all(|t| before.contains(t.as_str())));
    for i in &mut http {
        i.redact();
    }
    for e in &mut ex {
        e.redact();
    }
    let after = serde_json::to_string(&(&http, &ex)).unwrap();
    assert!(!after.contains("password1"), "password left in {after}");
    for t in &tickets {
        assert!(!after.contains(t.as_str()), "ticket {t} left");
    }
    assert!(after.contains(REDACTED) && after.contains("alice@example.com"));
}

// ------------------------------------------------------------------ SSO and the gateway

fn scenario(name: &str) -> PathBuf {
    root().join("captures/http").join(name)
}

/// The SOAP messages of a capture's HTTP exchanges.
fn soap_messages(d: &Decoded) -> Vec<(SoapMessage, Option<SoapMessage>)> {
    exchanges(&d.http)
        .iter()
        .filter_map(|(q, r)| {
            let req = soap::parse_request(q)?.expect("request SOAP parses");
            let resp = r
                .as_ref()
                .and_then(soap::parse_response)
                .map(|x| x.expect("response SOAP parses"));
            Some((req, resp))
        })
        .collect()
}

/// Account -> BinarySecret and messengerclear ticket, from the RST2 exchanges.
fn secrets(d: &Decoded) -> BTreeMap<String, (String, String)> {
    let mut m = BTreeMap::new();
    for (q, r) in soap_messages(d) {
        let (SoapBody::RstRequest(rq), Some(SoapBody::RstResponse(rs))) =
            (&q.body, r.as_ref().map(|r| &r.body))
        else {
            continue;
        };
        assert_eq!(rq.password.as_ref().map(|p| p.expose()), Some("password1"));
        assert!(rq
            .tokens
            .iter()
            .any(|t| t.address == "messengerclear.live.com"
                && t.policy.as_deref() == Some("MBI_KEY_OLD")));
        let t = rs
            .token("messengerclear.live.com")
            .expect("messengerclear token");
        m.insert(
            rq.username.clone().unwrap(),
            (
                t.binary_secret.as_ref().unwrap().expose().to_string(),
                t.ticket.as_ref().unwrap().expose().to_string(),
            ),
        );
    }
    m
}

/// The SSO login of an NS command list: account, nonce, ticket and answer.
fn sso_login(cmds: &[msntap::event::Command]) -> Option<(String, String, String, String)> {
    let arg = |c: &msntap::event::Command, i: usize| c.arg(i).unwrap_or_default().to_string();
    let account = cmds
        .iter()
        .find(|c| c.cmd == "USR" && arg(c, 1) == "SSO" && arg(c, 2) == "I")
        .map(|c| arg(c, 3))?;
    let nonce = cmds
        .iter()
        .find(|c| c.cmd == "USR" && arg(c, 2) == "S" && arg(c, 3) == "MBI_KEY_OLD")
        .map(|c| arg(c, 4))?;
    let ans = cmds
        .iter()
        .find(|c| c.cmd == "USR" && arg(c, 2) == "S" && arg(c, 3).starts_with("t="))?;
    Some((account, nonce, arg(ans, 3), arg(ans, 4)))
}

fn flip_one_byte(b64: &str) -> String {
    use base64::Engine;
    let mut b = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    b[70] ^= 0x01;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Alice's MSNP streams per service, from the plain TCP capture.
fn tcp_streams(d: &Decoded) -> BTreeMap<&'static str, Vec<(Dir, Vec<u8>)>> {
    let mut m = BTreeMap::new();
    for (_, s, st) in d.tcp.values() {
        let c2s = String::from_utf8_lossy(&st[0]);
        let name = if s.1 == 1863 && c2s.contains("USR 3 SSO I alice@example.com") {
            "NS"
        } else if s.1 == 1864 && c2s.starts_with("USR 1 alice@example.com") {
            "SB"
        } else {
            continue;
        };
        m.insert(
            name,
            vec![(Dir::C2s, st[0].clone()), (Dir::S2c, st[1].clone())],
        );
    }
    m
}

#[test]
fn sso_answers_in_both_scenario_captures_verify() {
    for name in [
        "msnp15_sso_tcp_escargot.pcap",
        "msnp15_sso_gateway_escargot.pcap",
    ] {
        let d = decode(&scenario(name), 8081);
        assert!(
            problems(&d.http).is_empty(),
            "{name}: {:?}",
            problems(&d.http)
        );
        let secrets = secrets(&d);
        assert_eq!(secrets.len(), 2, "{name}: two RST2 logins");
        // The NS sessions: bob's over TCP in both, alice's over TCP or the gateway.
        let mut sessions: Vec<Vec<(Dir, Vec<u8>)>> = d
            .tcp
            .values()
            .filter(|(_, s, _)| s.1 == 1863)
            .map(|(_, _, st)| vec![(Dir::C2s, st[0].clone()), (Dir::S2c, st[1].clone())])
            .collect();
        sessions.extend(
            gateway_streams(&d)
                .into_iter()
                .filter(|(s, _)| *s == GatewayService::Ns)
                .map(|(_, c)| c),
        );
        let mut checked = 0;
        for chunks in sessions {
            let (_, cmds) = decode_msnp(Service::Ns, &chunks);
            let Some((account, nonce, ticket, answer)) = sso_login(&cmds) else {
                continue;
            };
            let (secret, issued) = &secrets[&account];
            assert_eq!(&ticket, issued, "{name}: {account} used the RST2 ticket");
            assert_eq!(
                sso::verify(secret, &nonce, &answer),
                sso::Verdict::Valid,
                "{name}: {account}"
            );
            // The server accepted it too.
            assert!(cmds
                .iter()
                .any(|c| c.cmd == "USR" && c.arg(1) == Some("OK")));
            assert!(!sso::verify(secret, &nonce, &flip_one_byte(&answer)).is_valid());
            assert!(!sso::verify(
                secret,
                &nonce.replacen(|c: char| c.is_ascii_alphabetic(), "0", 1),
                &answer
            )
            .is_valid());
            checked += 1;
        }
        assert_eq!(checked, 2, "{name}: alice and bob");
    }
}

/// Per gateway session: its service and its two streams as the gateway decoder gave them.
type Chunks = Vec<(Dir, Vec<u8>)>;

fn gateway_streams(d: &Decoded) -> Vec<(GatewayService, Chunks)> {
    let mut svc = BTreeMap::new();
    let mut chunks: BTreeMap<u64, Vec<(Dir, Vec<u8>)>> = BTreeMap::new();
    for g in &d.gateway {
        match g {
            GatewayItem::Opened(o) => {
                svc.insert(o.session, o.service.clone());
            }
            GatewayItem::Bytes {
                session, dir, data, ..
            } => {
                chunks
                    .entry(*session)
                    .or_default()
                    .push((*dir, data.0.clone()));
            }
            GatewayItem::Gap { .. } | GatewayItem::Error { .. } => panic!("gateway problem: {g:?}"),
            _ => {}
        }
    }
    svc.into_iter()
        .map(|(s, k)| (k, chunks.remove(&s).unwrap_or_default()))
        .collect()
}

#[test]
fn gateway_session_decodes_like_the_same_scenario_over_tcp() {
    let gw = decode(&scenario("msnp15_sso_gateway_escargot.pcap"), 8081);
    let tcp = decode(&scenario("msnp15_sso_tcp_escargot.pcap"), 8081);
    assert!(problems(&gw.http).is_empty(), "{:?}", problems(&gw.http));

    // What the gateway capture holds, as recorded: two sessions (NS, then the SB from
    // XFR) sharing a keep-alive connection with alice's RST2 call, requests with
    // Expect: 100-continue and chunked bodies, empty polls, and the SB session moved to a
    // second TCP connection.
    let opened: Vec<_> = gw
        .gateway
        .iter()
        .filter_map(|g| match g {
            GatewayItem::Opened(o) => Some(o.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(opened.len(), 2);
    assert_eq!(
        (&opened[0].service, opened[0].server.as_deref()),
        (&GatewayService::Ns, Some("messenger.hotmail.com"))
    );
    assert_eq!(
        (&opened[1].service, opened[1].server.as_deref()),
        (&GatewayService::Sb, Some("127.0.0.1:1864"))
    );
    assert_eq!(opened[0].http.conn, opened[1].http.conn);
    let alice_rst2: Vec<u64> = gw
        .http
        .iter()
        .filter_map(|(c, i)| match i {
            HttpItem::Request(r)
                if r.head.target.ends_with("RST2.srf")
                    && String::from_utf8_lossy(&r.body.data.0).contains("alice@example.com") =>
            {
                Some(*c)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        alice_rst2,
        vec![opened[0].http.conn],
        "alice's RST2 on her gateway connection"
    );
    let interim = gw
        .http
        .iter()
        .filter(|(_, i)| matches!(i, HttpItem::Response(r) if r.interim && r.head.status == 100))
        .count();
    let chunked = gw
        .http
        .iter()
        .filter(|(_, i)| matches!(i, HttpItem::Request(r) if r.body.framing == Framing::Chunked))
        .count();
    assert!(
        interim >= 3 && chunked >= 3,
        "interim {interim}, chunked {chunked}"
    );
    let empty_polls = gw
        .gateway
        .iter()
        .filter(|g| matches!(g, GatewayItem::Poll { empty: true, .. }))
        .count();
    assert!(empty_polls >= 2, "{empty_polls} empty polls");
    let sb_conns: std::collections::BTreeSet<u64> = gw
        .gateway
        .iter()
        .filter_map(|g| match g {
            GatewayItem::Bytes {
                session: 2, http, ..
            } => Some(http.conn),
            _ => None,
        })
        .collect();
    assert_eq!(
        sb_conns.len(),
        2,
        "the SB session spans two TCP connections"
    );
    // Alice's sessions never went over 1863/1864 in the gateway capture.
    assert!(tcp_streams(&gw).is_empty());

    let over_tcp = tcp_streams(&tcp);
    assert_eq!(over_tcp.len(), 2);
    for (svc, chunks) in gateway_streams(&gw) {
        let (name, service) = match svc {
            GatewayService::Ns => ("NS", Service::Ns),
            GatewayService::Sb => ("SB", Service::Sb),
            GatewayService::Other(o) => panic!("service {o}"),
        };
        let (via_gateway, _) = decode_msnp(service, &chunks);
        let (via_tcp, _) = decode_msnp(service, &over_tcp[name]);
        let names = |d: Dir| {
            via_gateway[d.index()]
                .iter()
                .map(|(c, _)| c.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let expect = match service {
            Service::Ns => [
                "VER CVR USR USR BLP PRP CHG XFR OUT",
                "VER CVR GCF USR USR SBS MSG BLP PRP CHG MSG XFR",
            ],
            _ => ["USR CAL MSG OUT", "USR CAL JOI MSG"],
        };
        assert_eq!(
            [names(Dir::C2s), names(Dir::S2c)],
            expect.map(String::from),
            "{name}"
        );
        for d in [Dir::C2s, Dir::S2c] {
            assert_eq!(
                via_gateway[d.index()],
                via_tcp[d.index()],
                "{name} {d:?} commands differ"
            );
        }
    }
}

#[test]
fn scenario_redaction_leaves_no_password_ticket_or_binary_secret() {
    let d = decode(&scenario("msnp15_sso_gateway_escargot.pcap"), 8081);
    let secrets = secrets(&d);
    let mut http: Vec<HttpItem> = d.http.iter().map(|(_, i)| i.clone()).collect();
    let mut soap: Vec<SoapMessage> = soap_messages(&d)
        .into_iter()
        .flat_map(|(q, r)| std::iter::once(q).chain(r))
        .collect();
    let mut gw = d.gateway.clone();
    let before = serde_json::to_string(&(&http, &soap, &gw)).unwrap();
    // The ticket's variable part (Escargot's token) is its first 20 characters after t=.
    let needles: Vec<String> = std::iter::once("password1".to_string())
        .chain(
            secrets
                .values()
                .flat_map(|(bs, t)| [bs.clone(), t[2..22].to_string()]),
        )
        .collect();
    for n in &needles {
        assert!(
            before.contains(n.as_str()),
            "{n} not in the unredacted output"
        );
    }
    http.iter_mut().for_each(|x| {
        x.redact();
    });
    soap.iter_mut().for_each(|x| {
        x.redact();
    });
    gw.iter_mut().for_each(|x| {
        x.redact();
    });
    let after = serde_json::to_string(&(&http, &soap, &gw)).unwrap();
    for n in &needles {
        if let Some(i) = after.find(n.as_str()) {
            let lo = after[..i]
                .char_indices()
                .rev()
                .nth(200)
                .map_or(0, |(k, _)| k);
            panic!(
                "{n} left after redact(): ...{}...",
                &after[lo..(i + 100).min(after.len())]
            );
        }
    }
}

// ------------------------------------------------------------------ a real client: MSNPSharp

#[test]
fn real_client_sso_answer_verifies_from_its_binary_secret() {
    let d = decode(&scenario("msnp18_msnpsharp_sso_escargot.pcap"), 8081);
    assert!(problems(&d.http).is_empty(), "{:?}", problems(&d.http));
    // .NET sends Expect: 100-continue on its SOAP posts.
    assert!(d
        .http
        .iter()
        .any(|(_, i)| matches!(i, HttpItem::Response(r) if r.interim)));
    let secrets = secrets(&d);
    let (secret, issued) = &secrets["alice@example.com"];
    let ns: Vec<_> = d.tcp.values().filter(|(_, s, _)| s.1 == 1863).collect();
    assert_eq!(ns.len(), 1);
    let st = &ns[0].2;
    let (_, cmds) = decode_msnp(
        Service::Ns,
        &[(Dir::C2s, st[0].clone()), (Dir::S2c, st[1].clone())],
    );
    assert!(cmds
        .iter()
        .any(|c| c.cmd == "VER" && c.args().any(|a| a == "MSNP18")));
    let (account, nonce, ticket, answer) = sso_login(&cmds).expect("an SSO login");
    assert_eq!(account, "alice@example.com");
    assert_eq!(&ticket, issued);
    // MSNP16+ adds the machine GUID after the answer.
    let usr = cmds
        .iter()
        .find(|c| c.cmd == "USR" && c.arg(3).is_some_and(|t| t.starts_with("t=")))
        .unwrap();
    assert!(
        usr.arg(5).is_some_and(|g| g.starts_with('{')),
        "{:?}",
        usr.line
    );
    assert_eq!(sso::verify(secret, &nonce, &answer), sso::Verdict::Valid);
    assert!(!sso::verify(secret, &nonce, &flip_one_byte(&answer)).is_valid());
    // A BinarySecret of another login does not fit.
    let other = decode(&scenario("msnp15_sso_tcp_escargot.pcap"), 8081);
    let (other_secret, _) = &secrets_of(&other)["alice@example.com"];
    assert!(!sso::verify(other_secret, &nonce, &answer).is_valid());
}

fn secrets_of(d: &Decoded) -> BTreeMap<String, (String, String)> {
    secrets(d)
}

#[test]
fn real_client_soap_calls_are_typed_and_redacted() {
    let d = decode(&scenario("msnp18_msnpsharp_sso_escargot.pcap"), 8081);
    let msgs = soap_messages(&d);
    let ops: Vec<(String, String)> = msgs
        .iter()
        .map(|(q, r)| {
            (
                q.operation.clone(),
                r.as_ref().map_or(String::new(), |r| r.operation.clone()),
            )
        })
        .collect();
    let want = [
        (
            "RequestMultipleSecurityTokens",
            "RequestSecurityTokenResponseCollection",
        ),
        ("FindMembership", "FindMembershipResponse"),
        ("ABFindContactsPaged", "ABFindContactsPagedResponse"),
        ("GetProfile", "GetProfileResponse"),
    ];
    for (q, r) in want {
        assert!(
            ops.iter().any(|(a, b)| a == q && b == r),
            "{q}/{r} not in {ops:?}"
        );
    }
    for (q, r) in &msgs {
        if q.service != soap::SoapService::SecurityToken {
            assert!(
                q.auth.ticket_token.is_some(),
                "{} without TicketToken",
                q.operation
            );
            assert!(
                q.action
                    .as_deref()
                    .is_some_and(|a| a.ends_with(&q.operation)),
                "{:?}",
                q.action
            );
        }
        match r.as_ref().map(|r| &r.body) {
            Some(SoapBody::Memberships { memberships }) => {
                assert!(memberships.iter().all(|m| !m.role.is_empty()));
            }
            Some(SoapBody::AddressBook { contacts, .. }) => {
                // The owner's own entry.
                assert!(
                    contacts
                        .iter()
                        .any(|c| c.passport_name.as_deref() == Some("alice@example.com")),
                    "{contacts:?}"
                );
            }
            _ => {}
        }
    }
    let mut all: Vec<SoapMessage> = msgs
        .into_iter()
        .flat_map(|(q, r)| std::iter::once(q).chain(r))
        .collect();
    let mut http: Vec<HttpItem> = d.http.iter().map(|(_, i)| i.clone()).collect();
    let (bs, ticket) = &secrets(&d)["alice@example.com"];
    let needles = [
        "password1".to_string(),
        bs.clone(),
        ticket[2..22].to_string(),
    ];
    let before = serde_json::to_string(&(&all, &http)).unwrap();
    assert!(needles.iter().all(|n| before.contains(n.as_str())));
    all.iter_mut().for_each(|x| {
        x.redact();
    });
    http.iter_mut().for_each(|x| {
        x.redact();
    });
    let after = serde_json::to_string(&(&all, &http)).unwrap();
    for n in &needles {
        assert!(!after.contains(n.as_str()), "{n} left after redact()");
    }
}

#[test]
fn real_client_bad_password_is_a_typed_fault() {
    let d = decode(
        &scenario("msnp18_msnpsharp_badpassword_escargot.pcap"),
        8081,
    );
    let msgs = soap_messages(&d);
    assert_eq!(msgs.len(), 1);
    let (q, r) = &msgs[0];
    let SoapBody::RstRequest(rq) = &q.body else {
        panic!("{q:?}")
    };
    assert_eq!(
        rq.password.as_ref().map(|p| p.expose()),
        Some("wrongpassword")
    );
    let f = r.as_ref().and_then(SoapMessage::fault).expect("a fault");
    assert_eq!(f.code, "S:Sender");
    assert_eq!(f.subcode.as_deref(), Some("wst:FailedAuthentication"));
    assert_eq!(f.error_code.as_deref(), Some("0x80048821"));
    assert_eq!(f.reason, "Authentication Failure");
}
