//! End-to-end test with a real third-party client: the msnp11-sdk crate logs in through the
//! proxy against scripted dispatch, notification and Passport (HTTP) servers, following the
//! `XFR NS` referral the proxy rewrites. Loopback only; every wait has a deadline; it must not
//! contact any real server.

mod proxy_support;

use msnp11_sdk::{Client, Event as SdkEvent};
use msntap::{Dir, Service};
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const EMAIL: &str = "alice@example.com";
const PASSWORD: &str = "hunter2";
/// The challenge string the notification server hands out in `USR .. TWN S`.
const CHALLENGE: &str = "lc=1033,id=507,tw=40,fs=1,ru=http%3A%2F%2Fmessenger%2Emsn%2Ecom,ct=1062764229,kpp=1,kv=5,ver=2.1.0173.1,tpf=43f8a4c8ed940c04e3740be46c4d1619";
/// The ticket the scripted Passport server issues; the client must present it in `USR .. S`.
const TICKET: &str = "t=ticket-for-alice&p=profile-for-alice";
const SHIELDS: &str =
    "<?xml version=\"1.0\" encoding=\"utf-8\" ?><config><shield></shield><block></block></config>";
const PROFILE: &str = "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsprofile; charset=UTF-8\r\nLoginTime: 1700000000\r\nkv: 5\r\n\r\n";

/// The SDK connects to `host:port` and logs in; both steps bounded by STEP.
async fn sdk_login(host: &str, port: u16, nexus_url: &str) -> (Client, SdkEvent) {
    let c = tokio::time::timeout(STEP, Client::new(host, port))
        .await
        .expect("connect in time")
        .expect("the SDK connects");
    let r = tokio::time::timeout(
        STEP,
        c.login(EMAIL.to_string(), PASSWORD, nexus_url, "msntap-test", "1.0"),
    )
    .await
    .expect("login answered in time")
    .expect("login step succeeds");
    (c, r)
}

/// One scripted HTTP exchange: reads a request head, answers 200 with `headers` (each line
/// ending in CRLF) and no body. Returns the request head as text.
async fn http_once(l: &TcpListener, headers: &str) -> String {
    let mut p = accept(l).await;
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut b = [0u8; 2048];
        let n = tokio::time::timeout(STEP, p.s.read(&mut b))
            .await
            .expect("request in time")
            .expect("read request");
        assert!(n > 0, "HTTP client closed early");
        head.extend_from_slice(&b[..n]);
        assert!(head.len() < 64 * 1024, "request head too long");
    }
    let resp =
        format!("HTTP/1.1 200 OK\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n");
    p.send(resp.as_bytes()).await;
    let _ = p.s.shutdown().await;
    String::from_utf8_lossy(&head).into_owned()
}

/// The Passport nexus, then the login server it names (both on one listener).
async fn passport(l: TcpListener, own: String) -> (String, String) {
    let nexus = http_once(
        &l,
        &format!("PassportURLs: DALogin=http://{own}/login2.srf\r\n"),
    )
    .await;
    let login = http_once(
        &l,
        &format!("Authentication-Info: Passport1.4 da-status=success,tname=MSPAuth,ru=http://messenger.msn.com,from-PP='{TICKET}'\r\n"),
    )
    .await;
    (nexus, login)
}

/// Dispatch server: negotiates, then refers the client to `ns`.
async fn dispatch(l: TcpListener, ns: String, ds: String) -> (Vec<u8>, Vec<u8>) {
    let mut p = accept(&l).await;
    assert_eq!(p.line().await, "VER 1 MSNP11 CVR0");
    p.send_line("VER 1 MSNP11").await;
    assert_eq!(
        p.line().await,
        format!("CVR 2 0x0409 winnt 10 i386 msntap-test 1.0 msmsgs {EMAIL}")
    );
    p.send_line(
        "CVR 2 7.0.0816 7.0.0816 7.0.0425 http://example.invalid/dl http://example.invalid",
    )
    .await;
    assert_eq!(p.line().await, format!("USR 3 TWN I {EMAIL}"));
    p.send_line(&format!("XFR 3 NS {ns} 0 {ds}")).await;
    p.s.shutdown().await.expect("shutdown");
    p.read_to_eof().await;
    p.done()
}

/// Notification server: the full MSNP11 login up to the point the SDK reports success.
async fn notification(l: TcpListener) -> (Vec<u8>, Vec<u8>) {
    let mut p = accept(&l).await;
    assert_eq!(p.line().await, "VER 1 MSNP11 CVR0");
    p.send_line("VER 1 MSNP11").await;
    assert_eq!(
        p.line().await,
        format!("CVR 2 0x0409 winnt 10 i386 msntap-test 1.0 msmsgs {EMAIL}")
    );
    p.send_line(
        "CVR 2 7.0.0816 7.0.0816 7.0.0425 http://example.invalid/dl http://example.invalid",
    )
    .await;
    assert_eq!(p.line().await, format!("USR 3 TWN I {EMAIL}"));
    p.send_line(&format!("USR 3 TWN S {CHALLENGE}")).await;
    assert_eq!(p.line().await, format!("USR 4 TWN S {TICKET}"));
    p.send(
        format!(
            "USR 4 OK {EMAIL} 1 0\r\nMSG Hotmail Hotmail {}\r\n{PROFILE}",
            PROFILE.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(p.line().await, "SYN 5 0 0");
    p.send_line("SYN 5 2005-04-23T18:57:44.8130000-07:00 2005-04-23T18:57:54.2070000-07:00 0 0")
        .await;
    assert_eq!(p.line().await, "GCF 6 Shields.xml");
    p.send(format!("GCF 6 Shields.xml {}\r\n{SHIELDS}", SHIELDS.len()).as_bytes())
        .await;
    // After login the SDK may ping and, on disconnect, may say OUT; both race its shutdown.
    p.read_to_eof().await;
    p.done()
}

#[test]
fn msnp11_sdk_logs_in_through_the_proxy() {
    // The SDK's HTTP client honours proxy variables; its Passport requests must stay on
    // loopback. Set before the runtime starts any thread.
    std::env::set_var("NO_PROXY", "127.0.0.1");
    std::env::set_var("no_proxy", "127.0.0.1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(60), scenario())
            .await
            .expect("test finishes in time");
    });
}

async fn scenario() {
    let (ds_l, ds) = server().await;
    let (ns_l, ns) = server().await;
    let (http_l, http) = server().await;
    let proxy = start(&ds).await;
    let nexus_url = format!("http://{http}/rdr/pprdr.asp");

    let ds_task = tokio::spawn(dispatch(ds_l, ns.clone(), ds.clone()));
    let ns_task = tokio::spawn(notification(ns_l));
    let pp_task = tokio::spawn(passport(http_l, http.clone()));

    // The SDK, pointed at the proxy as if it were the dispatch server.
    let (c, r) = sdk_login("127.0.0.1", proxy.addr.port(), &nexus_url).await;
    let (server, port) = match r {
        SdkEvent::RedirectedTo { server, port } => (server, port),
        other => panic!("expected a redirect, got {other:?}"),
    };
    let via = format!("{server}:{port}");
    assert!(
        server == "127.0.0.1" && via != ns && port != proxy.addr.port(),
        "the referral must point at a proxy route, got {via}"
    );
    let _ = c.disconnect().await;

    let (c2, r) = sdk_login(&server, port, &nexus_url).await;
    assert!(
        matches!(r, SdkEvent::Authenticated),
        "expected Authenticated, got {r:?}"
    );
    let _ = c2.disconnect().await;

    let ds_seen = tokio::time::timeout(STEP, ds_task)
        .await
        .expect("dispatch done in time")
        .expect("dispatch script");
    let ns_seen = tokio::time::timeout(STEP, ns_task)
        .await
        .expect("notification done in time")
        .expect("notification script");
    let (nexus_req, login_req) = tokio::time::timeout(STEP, pp_task)
        .await
        .expect("passport done in time")
        .expect("passport script");
    let evs = proxy.stop().await;

    // The Passport leg went straight to the HTTP server, carrying the NS challenge.
    assert!(nexus_req.starts_with("GET /rdr/pprdr.asp "), "{nexus_req}");
    assert!(login_req.starts_with("GET /login2.srf "), "{login_req}");
    let auth = login_req
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .expect("Authorization header");
    assert!(
        auth.contains(&format!("sign-in={EMAIL}")) && auth.contains(CHALLENGE),
        "{auth}"
    );

    // What the servers received after the script: only pings and goodbyes.
    let ns_text = String::from_utf8_lossy(&ns_seen.0).into_owned();
    let tail = ns_text.split_once("GCF 6 Shields.xml\r\n").expect("GCF").1;
    assert!(
        tail.split_terminator("\r\n")
            .all(|l| l == "PNG" || l == "OUT"),
        "{tail:?}"
    );
    let ds_text = String::from_utf8_lossy(&ds_seen.0).into_owned();
    let tail = ds_text.split_once("USR 3 TWN I ").expect("USR").1;
    assert!(
        tail.split_terminator("\r\n").skip(1).all(|l| l == "OUT"),
        "{tail:?}"
    );

    // Both connections went through the proxy, each to the server it was meant for.
    let accepted = accepted(&evs);
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    let conn_of = |addr: &str| {
        accepted
            .iter()
            .find(|(_, s)| s == addr)
            .unwrap_or_else(|| panic!("no proxied connection to {addr}: {accepted:?}"))
            .0
    };
    let ds_conn = conn_of(&ds);
    let ns_conn = conn_of(&ns);
    let upstream = upstream_connects(&evs);
    assert_eq!(upstream, 2);

    // The one referral: the real NS address, rewritten to the route the SDK then used.
    assert_eq!(redirects(&evs), vec![(ns.clone(), Some(via.clone()))]);
    assert!(errors(&evs).is_empty(), "{:?}", errors(&evs));

    // The client's commands were decoded on both connections, in MSNP11.
    let client_cmds = |conn: u64| -> Vec<(String, Vec<String>, Option<u8>, Service)> {
        of_conn(&evs, conn)
            .into_iter()
            .filter(|e| e.dir == Some(Dir::C2s))
            .filter_map(|e| {
                e.command().map(|c| {
                    (
                        c.cmd.to_string(),
                        c.args().map(str::to_string).collect(),
                        e.version.map(|v| v.0),
                        e.service,
                    )
                })
            })
            .collect()
    };
    let ds_cmds = client_cmds(ds_conn);
    let ns_cmds = client_cmds(ns_conn);
    let names = |v: &[(String, Vec<String>, Option<u8>, Service)]| -> Vec<String> {
        v.iter().map(|c| c.0.clone()).collect()
    };
    assert_eq!(names(&ds_cmds)[..3], ["VER", "CVR", "USR"], "{ds_cmds:?}");
    assert_eq!(
        names(&ns_cmds)[..6],
        ["VER", "CVR", "USR", "USR", "SYN", "GCF"],
        "{ns_cmds:?}"
    );
    for cmds in [&ds_cmds, &ns_cmds] {
        assert_eq!(cmds[0].1, ["1", "MSNP11", "CVR0"]);
        for c in &cmds[1..3] {
            assert_eq!(c.2, Some(11), "{c:?} decoded as MSNP11");
        }
        assert_eq!(cmds[2].1, ["3", "TWN", "I", EMAIL]);
    }
    assert_eq!(ns_cmds[3].1[..3], ["4", "TWN", "S"]);
    assert!(
        ns_cmds[1..].iter().all(|c| c.2 == Some(11)),
        "every NS command after VER decoded as MSNP11: {ns_cmds:?}"
    );
    assert!(ns_cmds.iter().all(|c| c.3 == Service::Ns), "{ns_cmds:?}");
    // The server's USR OK reached the decoder too.
    assert!(of_conn(&evs, ns_conn)
        .iter()
        .any(|e| e.dir == Some(Dir::S2c)
            && e.command()
                .is_some_and(|c| c.cmd == "USR" && c.arg(1) == Some("OK"))));
}
