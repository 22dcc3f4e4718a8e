//! `msntap proxy --http-proxy` as a user runs it, on 127.0.0.1 only: a scripted gateway
//! client (open, a chunked request after `Expect: 100-continue`, an empty poll, a
//! close-delimited answer, a second connection) against a scripted gateway.dll origin,
//! relayed byte for byte both ways (only the absolute-form target becomes origin form);
//! CONNECT tunnels (random bytes both ways, and MSNP inside one); `--map` with exact and
//! wildcard hosts; an unreachable upstream answered 502 with a log line; a bad request
//! answered 400; and the live `--json` events equal to `msntap read` of the `--record`
//! pcapng. Every wait is bounded.
#![cfg(unix)]

mod proxy_support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msntap::{Event, EventKind};
use proxy_support::binary::spawn_proxy_with;
use proxy_support::json_scratch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const STEP: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn json_events(path: &Path) -> Vec<Event<'static>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| Event::from_json(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Per connection, the commands as (direction, line), connections in order of first
/// command (ids differ between a live run and a read of its recording).
fn commands_by_conn(evs: &[Event<'static>]) -> Vec<Vec<(String, String)>> {
    let mut order: Vec<u64> = Vec::new();
    let mut by: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for e in evs {
        if let Some(c) = e.command() {
            if !by.contains_key(&e.conn) {
                order.push(e.conn);
            }
            by.entry(e.conn).or_default().push((
                e.dir.map(|d| d.as_str()).unwrap_or("?").to_string(),
                c.line.to_string(),
            ));
        }
    }
    let mut v: Vec<_> = order.iter().filter_map(|c| by.remove(c)).collect();
    v.sort();
    v
}

fn messages(evs: &[Event<'static>]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match &e.kind {
            EventKind::Note(m) | EventKind::Error(m) => Some(m.message.to_string()),
            _ => None,
        })
        .collect()
}

/// What one origin connection received and sent, in order.
#[derive(Default, Clone, Debug)]
struct Wire {
    got: Vec<u8>,
    sent: Vec<u8>,
}

async fn read_head(s: &mut TcpStream, w: &mut Wire) -> Option<String> {
    let start = w.got.len();
    let mut b = [0u8; 1];
    loop {
        match tokio::time::timeout(STEP, s.read(&mut b)).await.ok()? {
            Ok(1) => w.got.push(b[0]),
            _ => return None,
        }
        if w.got[start..].ends_with(b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&w.got[start..]).into_owned());
        }
    }
}

async fn read_n(s: &mut TcpStream, w: &mut Wire, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    tokio::time::timeout(STEP, s.read_exact(&mut v))
        .await
        .expect("in time")
        .expect("read");
    w.got.extend_from_slice(&v);
    v
}

/// A chunked body, read to its end (sizes in hex, no extensions in this script).
async fn read_chunked(s: &mut TcpStream, w: &mut Wire) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            line.extend(read_n(s, w, 1).await);
        }
        let n = usize::from_str_radix(
            std::str::from_utf8(&line[..line.len() - 2]).expect("hex"),
            16,
        )
        .expect("size");
        if n == 0 {
            read_n(s, w, 2).await;
            return body;
        }
        body.extend(read_n(s, w, n).await);
        read_n(s, w, 2).await;
    }
}

async fn send(s: &mut TcpStream, w: &mut Wire, b: &[u8]) {
    w.sent.extend_from_slice(b);
    s.write_all(b).await.expect("write");
}

const SID: &str = "SessionID=954547325.13160; GW-IP=127.0.0.1";

fn resp_cl(extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nX-MSN-Messenger: {SID}{extra}\r\nContent-Type: application/x-msn-messenger\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A scripted gateway.dll: answers by the request's query and body, as Escargot's gateway
/// would, recording every byte of every connection.
async fn gateway(l: TcpListener, wires: Arc<Mutex<Vec<Wire>>>) {
    loop {
        let Ok(Ok((mut s, _))) = tokio::time::timeout(Duration::from_secs(30), l.accept()).await
        else {
            return;
        };
        let wires = wires.clone();
        tokio::spawn(async move {
            let mut w = Wire::default();
            while let Some(head) = read_head(&mut s, &mut w).await {
                let lower = head.to_ascii_lowercase();
                let cl: usize = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().expect("length"))
                    .unwrap_or(0);
                if lower.contains("expect: 100-continue") {
                    send(&mut s, &mut w, b"HTTP/1.1 100 Continue\r\n\r\n").await;
                }
                let body = if lower.contains("transfer-encoding: chunked") {
                    read_chunked(&mut s, &mut w).await
                } else {
                    read_n(&mut s, &mut w, cl).await
                };
                let body = String::from_utf8(body).expect("body");
                if head.contains("Action=open") {
                    assert!(head.starts_with("POST /gateway/gateway.dll?"), "{head}");
                    send(
                        &mut s,
                        &mut w,
                        resp_cl("", "VER 1 MSNP8 CVR0\r\n").as_bytes(),
                    )
                    .await;
                } else if head.contains("Action=poll") && head.contains("Session-Close: yes") {
                    send(
                        &mut s,
                        &mut w,
                        resp_cl("; Session=close", "OUT\r\n").as_bytes(),
                    )
                    .await;
                } else if head.contains("Action=poll") {
                    send(&mut s, &mut w, resp_cl("", "").as_bytes()).await;
                } else if body.starts_with("CVR") {
                    // Chunked: the command split over chunks.
                    let r = format!("HTTP/1.1 200 OK\r\nX-MSN-Messenger: {SID}\r\nContent-Type: application/x-msn-messenger\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nCVR 2 \r\n2C\r\n6.0.0602 6.0.0602 1.0.0000 http://x http://y\r\n2\r\n\r\n\r\n0\r\n\r\n");
                    send(&mut s, &mut w, r.as_bytes()).await;
                } else if body.starts_with("USR") {
                    // HTTP/1.0 without a length: the body runs to the close.
                    let r = format!("HTTP/1.0 200 OK\r\nX-MSN-Messenger: {SID}\r\nContent-Type: application/x-msn-messenger\r\n\r\nUSR 3 TWN S lc=1033,id=507,tw=40\r\n");
                    send(&mut s, &mut w, r.as_bytes()).await;
                    break;
                } else {
                    panic!("unscripted request {head}");
                }
            }
            let _ = s.shutdown().await;
            wires.lock().expect("wires").push(w);
        });
    }
}

/// A client connection through the proxy: what it sent and received.
struct Peer {
    s: TcpStream,
    w: Wire,
}

impl Peer {
    async fn connect(proxy: &str) -> Peer {
        Peer {
            s: TcpStream::connect(proxy).await.expect("proxy"),
            w: Wire::default(),
        }
    }
    async fn send(&mut self, b: &[u8]) {
        self.w.sent.extend_from_slice(b);
        self.s.write_all(b).await.expect("write");
    }
    /// Reads exactly `want`'s length and checks it is `want`.
    async fn expect(&mut self, want: &[u8]) {
        let mut v = vec![0u8; want.len()];
        tokio::time::timeout(STEP, self.s.read_exact(&mut v))
            .await
            .expect("in time")
            .expect("read");
        self.w.got.extend_from_slice(&v);
        assert_eq!(
            String::from_utf8_lossy(&v),
            String::from_utf8_lossy(want),
            "client received"
        );
    }
    /// Reads to the end of the stream.
    async fn rest(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        tokio::time::timeout(STEP, self.s.read_to_end(&mut v))
            .await
            .expect("in time")
            .expect("read");
        self.w.got.extend_from_slice(&v);
        v
    }
}

fn post(url: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {url} HTTP/1.1\r\nAccept: */*\r\nContent-Type: application/x-msn-messenger\r\nUser-Agent: MSMSGS\r\nHost: gateway.messenger.hotmail.com\r\nProxy-Connection: Keep-Alive\r\nPragma: no-cache\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const GW: &str = "http://gateway.messenger.hotmail.com/gateway/gateway.dll";

/// A scripted MSNP server reached through CONNECT: VER and CVR, then the close.
async fn msnp_server(l: TcpListener) {
    let Ok(Ok((mut s, _))) = tokio::time::timeout(Duration::from_secs(30), l.accept()).await else {
        return;
    };
    let mut w = Wire::default();
    let mut line = Vec::new();
    for reply in [
        &b"VER 5 MSNP8\r\n"[..],
        b"CVR 6 6.0.0602 6.0.0602 1.0.0000 http://x http://y\r\n",
    ] {
        line.clear();
        while !line.ends_with(b"\r\n") {
            line.extend(read_n(&mut s, &mut w, 1).await);
        }
        send(&mut s, &mut w, reply).await;
    }
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(STEP, s.read_to_end(&mut rest)).await;
}

#[test]
fn a_gateway_session_is_relayed_byte_exact_and_live_events_equal_the_recording() {
    let (dir, json) = json_scratch("httpproxy-gw");
    let pcap = dir.join("proxy.pcapng");
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(90), async {
            let gl = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let gaddr = gl.local_addr().expect("addr");
            let wires = Arc::new(Mutex::new(Vec::new()));
            tokio::spawn(gateway(gl, wires.clone()));
            let ml = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let maddr = ml.local_addr().expect("addr");
            let msnp = tokio::spawn(msnp_server(ml));

            let args: Vec<OsString> = [
                "--http-proxy".to_string(),
                "127.0.0.1:0".into(),
                "--map".into(),
                format!("gateway.messenger.hotmail.com={gaddr}"),
                "--map".into(),
                format!("messenger.hotmail.com={maddr}"),
                "--json".into(),
                json.display().to_string(),
                "--record".into(),
                pcap.display().to_string(),
                "--log".into(),
                "--color".into(),
                "never".into(),
            ]
            .into_iter()
            .map(OsString::from)
            .collect();
            let p = spawn_proxy_with(args, Stdio::null());
            let proxy = p.addr.clone();

            // Connection 1: open, a chunked CVR after 100 Continue, an empty poll, then a
            // USR answered close-delimited (which ends the connection).
            let mut a = Peer::connect(&proxy).await;
            a.send(post(&format!("{GW}?Action=open&Server=NS&IP=messenger.hotmail.com"), "", "VER 1 MSNP8 CVR0\r\n").as_bytes()).await;
            a.expect(resp_cl("", "VER 1 MSNP8 CVR0\r\n").as_bytes()).await;
            let sid = "SessionID=954547325.13160";
            a.send(format!("POST {GW}?{sid} HTTP/1.1\r\nHost: gateway.messenger.hotmail.com\r\nContent-Type: application/x-msn-messenger\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n").as_bytes()).await;
            a.expect(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            a.send(b"9\r\nCVR 2 0x0\r\n26\r\n409 win 4.10 i386 MSNMSGR 5.0 MSMSGS a\r\n2\r\n\r\n\r\n0\r\n\r\n").await;
            a.expect(format!("HTTP/1.1 200 OK\r\nX-MSN-Messenger: {SID}\r\nContent-Type: application/x-msn-messenger\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nCVR 2 \r\n2C\r\n6.0.0602 6.0.0602 1.0.0000 http://x http://y\r\n2\r\n\r\n\r\n0\r\n\r\n").as_bytes()).await;
            a.send(post(&format!("{GW}?Action=poll&{sid}"), "", "").as_bytes()).await;
            a.expect(resp_cl("", "").as_bytes()).await;
            a.send(post(&format!("{GW}?{sid}"), "", "USR 3 TWN I alice@example.com\r\n").as_bytes()).await;
            let rest = a.rest().await;
            assert_eq!(
                String::from_utf8_lossy(&rest),
                format!("HTTP/1.0 200 OK\r\nX-MSN-Messenger: {SID}\r\nContent-Type: application/x-msn-messenger\r\n\r\nUSR 3 TWN S lc=1033,id=507,tw=40\r\n")
            );
            // Connection 2 (the same session): the last poll, answered Session=close.
            let mut b = Peer::connect(&proxy).await;
            b.send(post(&format!("{GW}?Action=poll&{sid}"), "Session-Close: yes\r\n", "").as_bytes()).await;
            b.expect(resp_cl("; Session=close", "OUT\r\n").as_bytes()).await;
            drop(b.s);

            // MSNP through a CONNECT tunnel (a client whose proxy is set for everything).
            let mut t = Peer::connect(&proxy).await;
            t.send(b"CONNECT messenger.hotmail.com:1863 HTTP/1.1\r\nHost: messenger.hotmail.com:1863\r\n\r\n").await;
            t.expect(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
            // Sent before the answer is read: bytes right behind the head go through too.
            t.send(b"VER 5 MSNP8 CVR0\r\n").await;
            t.expect(b"VER 5 MSNP8\r\n").await;
            t.send(b"CVR 6 0x0409 win 4.10 i386 MSNMSGR 6.0.0602 MSMSGS alice@example.com\r\n").await;
            t.expect(b"CVR 6 6.0.0602 6.0.0602 1.0.0000 http://x http://y\r\n").await;
            t.s.shutdown().await.expect("fin");
            let _ = tokio::time::timeout(STEP, msnp).await;
            let _ = t.rest().await;

            // Byte-exact: the origin got what the clients sent (target in origin form) and the
            // clients got what the origin sent.
            let deadline = std::time::Instant::now() + STEP;
            while wires.lock().expect("wires").len() < 2 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut origin = wires.lock().expect("wires").clone();
            assert_eq!(origin.len(), 2, "two upstream connections");
            origin.sort_by_key(|w| w.got.len());
            origin.reverse();
            let rewrite = |b: &[u8]| {
                String::from_utf8_lossy(b).replace("POST http://gateway.messenger.hotmail.com/", "POST /")
            };
            assert_eq!(String::from_utf8_lossy(&origin[0].got), rewrite(&a.w.sent));
            assert_eq!(origin[0].sent, a.w.got);
            assert_eq!(String::from_utf8_lossy(&origin[1].got), rewrite(&b.w.sent));
            assert_eq!(origin[1].sent, b.w.got);

            let (status, err) = p.terminate();
            assert!(status.success(), "{status:?} {err}");
            let live = json_events(&json);
            let notes = messages(&live);
            for want in [
                "HTTP POST http://gateway.messenger.hotmail.com/gateway/gateway.dll?Action=open&Server=NS&IP=messenger.hotmail.com -> 200 OK: request body 18 bytes, response body 18 bytes",
                "-> 200 OK: request body 70 bytes, response body 73 bytes chunked",
                "?Action=poll&SessionID=954547325.13160 -> 200 OK: request body 0 bytes, response body 0 bytes",
                "response body 34 bytes to the close",
                "after 1 interim response(s)",
                "CONNECT messenger.hotmail.com:1863 via",
            ] {
                assert!(notes.iter().any(|n| n.contains(want)), "{want:?} in {notes:#?}");
            }
            let tunnel = notes
                .iter()
                .find(|n| n.starts_with("CONNECT messenger.hotmail.com:1863") && n.contains("closed"))
                .unwrap_or_else(|| panic!("tunnel close line in {notes:#?}"));
            assert!(tunnel.contains("88 bytes client to server, 65 bytes server to client"), "{tunnel}");

            // The recording read back by `msntap read` gives the live commands.
            let offline = dir.join("read.jsonl");
            let st = Command::new(env!("CARGO_BIN_EXE_msntap"))
                .arg("read")
                .arg(&pcap)
                .arg("--json")
                .arg(&offline)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .expect("msntap read runs");
            assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
            let read = json_events(&offline);
            let (l, r) = (commands_by_conn(&live), commands_by_conn(&read));
            assert_eq!(l, r);
            // The tunnel's MSNP is there (and, once HTTP is decoded, the gateway session's).
            let tunnel_cmds: Vec<(String, String)> = vec![
                ("c2s".into(), "VER 5 MSNP8 CVR0".into()),
                ("s2c".into(), "VER 5 MSNP8".into()),
                ("c2s".into(), "CVR 6 0x0409 win 4.10 i386 MSNMSGR 6.0.0602 MSMSGS alice@example.com".into()),
                ("s2c".into(), "CVR 6 6.0.0602 6.0.0602 1.0.0000 http://x http://y".into()),
            ];
            assert!(l.contains(&tunnel_cmds), "{l:#?}");
            // The gateway session, over two TCP connections, is one MSNP connection whose
            // streams are the bodies (decoded by the capture path, live and offline alike).
            let gw_cmds: Vec<(String, String)> = [
                ("c2s", "VER 1 MSNP8 CVR0"),
                ("s2c", "VER 1 MSNP8 CVR0"),
                ("c2s", "CVR 2 0x0409 win 4.10 i386 MSNMSGR 5.0 MSMSGS a"),
                ("s2c", "CVR 2 6.0.0602 6.0.0602 1.0.0000 http://x http://y"),
                ("c2s", "USR 3 TWN I alice@example.com"),
                ("s2c", "USR 3 TWN S lc=1033,id=507,tw=40"),
                ("s2c", "OUT"),
            ]
            .iter()
            .map(|(d, l)| (d.to_string(), l.to_string()))
            .collect();
            assert!(l.contains(&gw_cmds), "{l:#?}");
            assert_eq!(l.len(), 2, "{l:#?}");
            let gw_conn = live
                .iter()
                .find(|e| e.command().is_some_and(|c| c.line == "OUT"))
                .map(|e| e.conn)
                .expect("the gateway session's connection");
            assert!(live
                .iter()
                .filter(|e| e.conn == gw_conn && e.command().is_some())
                .all(|e| e.via.is_some()));
            // The HTTP and gateway events are the same too, timestamps included (the same
            // frames); only the connection numbering differs.
            let http_events = |evs: &[Event<'static>]| {
                let mut v: Vec<serde_json::Value> = evs
                    .iter()
                    .filter(|e| matches!(e.kind, EventKind::Http(_) | EventKind::Gateway(_)))
                    .map(|e| {
                        let mut j = serde_json::to_value(e).expect("json");
                        if let Some(o) = j.as_object_mut() {
                            o.remove("conn");
                            o.remove("tcp_conn");
                            if let Some(v) = o.get_mut("via").and_then(|v| v.as_object_mut()) {
                                v.remove("tcp_conn");
                            }
                        }
                        j
                    })
                    .collect();
                v.sort_by_key(|j| j.to_string());
                v
            };
            assert_eq!(http_events(&live), http_events(&read));
            // Live, `via.tcp_conn` names the proxy's id of the TCP connection.
            let http_conns: std::collections::BTreeSet<u64> = live
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Http(_)))
                .map(|e| e.conn)
                .collect();
            let via: std::collections::BTreeSet<u64> = live
                .iter()
                .filter_map(|e| e.via.as_ref()?.tcp_conn)
                .collect();
            assert_eq!(via, http_conns);
            let kinds = |evs: &[Event<'static>]| {
                evs.iter()
                    .filter(|e| matches!(e.kind, EventKind::Http(_) | EventKind::Gateway(_)))
                    .map(|e| e.type_name().to_string())
                    .collect::<Vec<_>>()
            };
            let lk = kinds(&live);
            // Five requests, five final responses and one 100 Continue; open, poll, poll, close.
            assert_eq!(lk.iter().filter(|k| *k == "http").count(), 11, "{lk:?}");
            assert!(lk.iter().filter(|k| *k == "gateway").count() >= 3, "{lk:?}");
        })
        .await
        .expect("test finishes in time")
    })
}

/// xorshift64*: reproducible bytes without a dependency.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn connect_tunnels_wildcard_maps_unreachable_upstreams_and_bad_requests() {
    let (_dir, json) = json_scratch("httpproxy-tun");
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(90), async {
            let up = random_bytes(7, 300_000);
            let down = random_bytes(11, 500_000);
            let tl = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let taddr = tl.local_addr().expect("addr");
            let (u2, d2) = (up.clone(), down.clone());
            let server = tokio::spawn(async move {
                let (mut s, _) = tokio::time::timeout(STEP, tl.accept())
                    .await
                    .expect("in time")
                    .expect("accept");
                // Both ways at once: the server writes while the client is still sending.
                let (mut r, mut w) = s.split();
                let reader = async {
                    let mut got = Vec::new();
                    r.read_to_end(&mut got).await.expect("read");
                    got
                };
                let writer = async {
                    w.write_all(&d2).await.expect("write");
                    w.shutdown().await.expect("fin");
                };
                let (got, ()) = tokio::join!(reader, writer);
                assert!(got == u2, "the server got {} bytes, not the client's", got.len());
            });
            // An origin whose answers have no body although some name a length: HEAD, 204,
            // 304; then one with a body. A proxy waiting for a body there would hang.
            let pl = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let paddr = pl.local_addr().expect("addr");
            let plain_got = Arc::new(Mutex::new(Vec::new()));
            let pg = plain_got.clone();
            tokio::spawn(async move {
                let Ok(Ok((mut s, _))) = tokio::time::timeout(STEP, pl.accept()).await else {
                    return;
                };
                let mut w = Wire::default();
                while let Some(head) = read_head(&mut s, &mut w).await {
                    let r: &[u8] = if head.starts_with("HEAD /h ") {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                    } else if head.starts_with("GET /204 ") {
                        b"HTTP/1.1 204 No Content\r\n\r\n"
                    } else if head.starts_with("GET /304 ") {
                        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    };
                    send(&mut s, &mut w, r).await;
                }
                *pg.lock().expect("got") = w.got;
            });
            let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let daddr = dead.local_addr().expect("addr");
            drop(dead);

            let args: Vec<OsString> = [
                "--http-proxy".to_string(),
                "127.0.0.1:0".into(),
                "--map".into(),
                format!("*.hotmail.com={taddr}"),
                "--map".into(),
                format!("dead.hotmail.com={daddr}"),
                "--map".into(),
                format!("plain.example={paddr}"),
                "--json".into(),
                json.display().to_string(),
            ]
            .into_iter()
            .map(OsString::from)
            .collect();
            let p = spawn_proxy_with(args, Stdio::null());
            let proxy = p.addr.clone();

            // CONNECT to a host only the wildcard maps, random bytes both ways.
            let mut t = TcpStream::connect(&proxy).await.expect("proxy");
            t.write_all(b"CONNECT rsi.hotmail.com:443 HTTP/1.1\r\nHost: rsi.hotmail.com:443\r\n\r\n")
                .await
                .expect("write");
            let mut ok = vec![0u8; 39];
            tokio::time::timeout(STEP, t.read_exact(&mut ok)).await.expect("in time").expect("read");
            assert_eq!(&ok[..], b"HTTP/1.1 200 Connection established\r\n\r\n");
            let (mut r, mut w) = t.split();
            let sender = async {
                for piece in up.chunks(7919) {
                    w.write_all(piece).await.expect("write");
                }
                w.shutdown().await.expect("fin");
            };
            let receiver = async {
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.expect("read");
                got
            };
            let ((), got) = tokio::time::timeout(STEP, async { tokio::join!(sender, receiver) })
                .await
                .expect("in time");
            assert!(got == down, "the client got {} bytes, not the server's", got.len());
            tokio::time::timeout(STEP, server).await.expect("in time").expect("server");

            // HEAD, 204 and 304 on one keep-alive connection, the last two pipelined in one
            // write: every answer arrives whole and nothing waits for a body.
            let mut k = Peer::connect(&proxy).await;
            let q = |m: &str, path: &str| format!("{m} http://plain.example{path} HTTP/1.1\r\nHost: plain.example\r\n\r\n");
            k.send(q("HEAD", "/h").as_bytes()).await;
            k.expect(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").await;
            k.send(format!("{}{}", q("GET", "/204"), q("GET", "/304")).as_bytes()).await;
            k.expect(b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n").await;
            k.send(q("GET", "/after").as_bytes()).await;
            k.expect(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            drop(k.s);
            let deadline = std::time::Instant::now() + STEP;
            while plain_got.lock().expect("got").is_empty() && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(
                String::from_utf8_lossy(&plain_got.lock().expect("got")),
                String::from_utf8_lossy(&k.w.sent).replace(" http://plain.example/", " /"),
                "one upstream connection got the four requests, targets in origin form"
            );

            // An exact mapping beats the wildcard: this one leads nowhere, so 502.
            let mut d = TcpStream::connect(&proxy).await.expect("proxy");
            d.write_all(b"GET http://dead.hotmail.com/x HTTP/1.1\r\nHost: dead.hotmail.com\r\n\r\n")
                .await
                .expect("write");
            let mut resp = Vec::new();
            tokio::time::timeout(STEP, d.read_to_end(&mut resp)).await.expect("in time").expect("read");
            let resp = String::from_utf8_lossy(&resp).into_owned();
            assert!(resp.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{resp}");
            assert!(resp.contains(&format!("cannot connect to upstream {daddr} (mapped from dead.hotmail.com:80)")), "{resp}");

            // Not HTTP at all: 400, and the proxy goes on.
            let mut bad = TcpStream::connect(&proxy).await.expect("proxy");
            bad.write_all(b"VER 1 MSNP8 CVR0\r\n\r\n").await.expect("write");
            let mut resp = Vec::new();
            tokio::time::timeout(STEP, bad.read_to_end(&mut resp)).await.expect("in time").expect("read");
            assert!(resp.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{}", String::from_utf8_lossy(&resp));
            // A head that never ends is cut off at 64 KiB with 431.
            let mut big = TcpStream::connect(&proxy).await.expect("proxy");
            let mut head = b"GET http://x.hotmail.com/ HTTP/1.1\r\n".to_vec();
            head.extend(std::iter::repeat_n(b'a', 70_000));
            let _ = big.write_all(&head).await;
            let mut resp = Vec::new();
            let _ = tokio::time::timeout(STEP, big.read_to_end(&mut resp)).await.expect("in time");
            assert!(resp.starts_with(b"HTTP/1.1 431 "), "{}", String::from_utf8_lossy(&resp));

            let (status, err) = p.terminate();
            assert!(status.success(), "{status:?} {err}");
            let notes = messages(&json_events(&json));
            let line = format!("{} bytes client to server, {} bytes server to client", up.len(), down.len());
            assert!(
                notes.iter().any(|n| n.starts_with("CONNECT rsi.hotmail.com:443 via") && n.contains(&line)),
                "{line:?} in {notes:#?}"
            );
            assert!(
                notes.iter().any(|n| n.contains("cannot connect to upstream") && n.contains("answered 502")),
                "{notes:#?}"
            );
            assert!(notes.iter().any(|n| n.contains("answered 400")), "{notes:#?}");
            assert!(notes.iter().any(|n| n.contains("answered 431")), "{notes:#?}");
        })
        .await
        .expect("test finishes in time")
    })
}

/// Peak and current resident memory of a process, in KiB, from /proc.
fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn an_idle_tunnel_is_closed_after_the_idle_timeout_and_idle_tunnels_hold_no_read_buffers() {
    let (_dir, json) = json_scratch("httpproxy-idle");
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(90), async {
            const TUNNELS: usize = 300;
            let tl = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let taddr = tl.local_addr().expect("addr");
            // The origin answers each tunnel's first bytes once, then says nothing.
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((mut s, _)) = tl.accept().await {
                    let mut b = [0u8; 4];
                    if s.read_exact(&mut b).await.is_ok() {
                        let _ = s.write_all(b"pong").await;
                    }
                    held.push(s);
                }
            });
            let args: Vec<OsString> = [
                "--http-proxy",
                "127.0.0.1:0",
                "--idle-timeout",
                "3",
                "--json",
                &json.display().to_string(),
            ]
            .into_iter()
            .map(OsString::from)
            .collect();
            let p = spawn_proxy_with(args, Stdio::null());
            let before = status_kib(p.pid(), "VmRSS:");
            let mut tunnels = Vec::new();
            for _ in 0..TUNNELS {
                let mut t = TcpStream::connect(&p.addr).await.expect("proxy");
                t.write_all(format!("CONNECT {taddr} HTTP/1.1\r\nHost: {taddr}\r\n\r\n").as_bytes())
                    .await
                    .expect("write");
                let mut ok = vec![0u8; 39 + 4];
                t.write_all(b"ping").await.expect("write");
                tokio::time::timeout(STEP, t.read_exact(&mut ok)).await.expect("in time").expect("read");
                assert_eq!(&ok[..], b"HTTP/1.1 200 Connection established\r\n\r\npong");
                tunnels.push(t);
            }
            let t_open = std::time::Instant::now();
            // Every tunnel has read both ways and now waits: 64 KiB read buffers per side
            // held while waiting came to 128 KiB a tunnel (about 40 MB here).
            let open = status_kib(p.pid(), "VmRSS:");
            let per = open.saturating_sub(before) * 1024 / TUNNELS as u64;
            assert!(per < 64 * 1024, "{per} bytes per idle tunnel ({before} KiB before, {open} KiB with them)");
            // Silence closes each one, from the proxy's side, after the timeout.
            for t in &mut tunnels {
                let mut b = [0u8; 1];
                let n = tokio::time::timeout(STEP, t.read(&mut b)).await.expect("closed in time");
                assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
            }
            let waited = t_open.elapsed();
            assert!(waited >= Duration::from_millis(2000), "closed after {waited:?}, before the timeout");
            let (status, err) = p.terminate();
            assert!(status.success(), "{status:?} {err}");
            let notes = messages(&json_events(&json));
            let idle = notes
                .iter()
                .filter(|n| n.contains("closed by the proxy, no bytes either way for 3 s (idle timeout): 4 bytes client to server, 4 bytes server to client"))
                .count();
            assert_eq!(idle, TUNNELS, "{notes:#?}");
        })
        .await
        .expect("test finishes in time")
    })
}
