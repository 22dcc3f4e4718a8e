//! Integration test of the proxy's redirect handling: two clients at once are referred from a
//! scripted dispatch server to their own notification servers (one by IP, one by host name),
//! then to switchboards by `XFR SB` and by `RNG`. Every byte each side receives is checked,
//! and so are the events. Loopback only; every wait has a deadline.

mod proxy_support;

use msntap::{EventKind, Service};
use proxy_support::*;
use tokio::net::TcpListener;

/// The real servers of one client.
struct Servers {
    ns: (TcpListener, String),
    /// The address the dispatch server writes for the NS (a host name for client 2).
    ns_written: String,
    sb_xfr: (TcpListener, String),
    sb_rng: (TcpListener, String),
}

const MOTD: &str = "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nold logs said:\r\nXFR 9 NS 10.9.9.9:1863 0\r\nRNG 1 10.9.9.9:1865 CKI x a@b c\r\n";

async fn dispatch(
    l: TcpListener,
    ns_for: [(String, String); 2],
    ds: String,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let mut p = accept(&l).await;
        let ns_for = ns_for.clone();
        let ds = ds.clone();
        tasks.push(tokio::spawn(async move {
            assert_eq!(p.line().await, "VER 1 MSNP11 CVR0");
            p.send_line("VER 1 MSNP11").await;
            let cvr = p.line().await;
            assert!(cvr.starts_with("CVR 2 0x0409 "), "{cvr}");
            p.send_line(
                "CVR 2 7.0.0816 7.0.0816 7.0.0425 http://example.invalid/dl http://example.invalid",
            )
            .await;
            let usr = p.line().await;
            let handle = usr.split(' ').nth(4).expect("handle").to_string();
            let ns = &ns_for
                .iter()
                .find(|(h, _)| *h == handle)
                .expect("known handle")
                .1;
            p.send_line(&format!("XFR 3 NS {ns} 0 {ds}")).await;
            p.s.shutdown().await.expect("shutdown");
            p.eof().await;
            p.done()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("dispatch task"));
    }
    out
}

use tokio::io::AsyncWriteExt;

/// Notification server: answers VER, sends a message of the day whose body quotes redirect
/// lines (must pass untouched), answers `XFR SB`, sends an `RNG`, then waits for OUT.
async fn notification(
    l: TcpListener,
    sb_xfr: String,
    sb_rng: String,
    who: &str,
) -> (Vec<u8>, Vec<u8>) {
    let mut p = accept(&l).await;
    assert_eq!(p.line().await, "VER 4 MSNP11 CVR0");
    p.send_line("VER 4 MSNP11").await;
    p.send(format!("MSG Hotmail Hotmail {}\r\n{MOTD}", MOTD.len()).as_bytes())
        .await;
    assert_eq!(p.line().await, "XFR 5 SB");
    p.send_line(&format!(
        "XFR 5 SB {sb_xfr} CKI cookie-x-{who} U messenger.msn.com 1"
    ))
    .await;
    p.send_line(&format!("RNG 11752013 {sb_rng} CKI cookie-r-{who} carol@example.com Carol U messenger.hotmail.com 1"))
        .await;
    assert_eq!(p.line().await, "OUT");
    p.s.shutdown().await.expect("shutdown");
    p.eof().await;
    p.done()
}

/// Switchboard reached by XFR SB: checks the cookie it issued arrives here and nowhere else.
async fn switchboard_xfr(l: TcpListener, who: &str) -> (Vec<u8>, Vec<u8>) {
    let mut p = accept(&l).await;
    assert_eq!(
        p.line().await,
        format!("USR 6 {who}@example.com cookie-x-{who}")
    );
    p.send_line(&format!("USR 6 OK {who}@example.com {who}"))
        .await;
    let body = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nhi";
    let msg = p.line().await;
    assert_eq!(msg, format!("MSG 7 N {}", body.len()));
    assert_eq!(p.bytes(body.len()).await, body.as_bytes());
    assert_eq!(p.line().await, "OUT");
    p.s.shutdown().await.expect("shutdown");
    p.eof().await;
    p.done()
}

/// Switchboard reached by RNG: the invited client answers with ANS.
async fn switchboard_rng(l: TcpListener, who: &str) -> (Vec<u8>, Vec<u8>) {
    let mut p = accept(&l).await;
    assert_eq!(
        p.line().await,
        format!("ANS 1 {who}@example.com cookie-r-{who} 11752013")
    );
    p.send_line("IRO 1 1 1 carol@example.com Carol").await;
    p.send_line("ANS 1 OK").await;
    let body =
        "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nXFR 2 SB 10.1.1.1:1865 CKI nope\r\n";
    p.send(format!("MSG carol@example.com Carol {}\r\n{body}", body.len()).as_bytes())
        .await;
    assert_eq!(p.line().await, "OUT");
    p.s.shutdown().await.expect("shutdown");
    p.eof().await;
    p.done()
}

/// Replaces the address token of a redirect line, for building what the client must see.
fn swap(line: &str, from: &str, to: &str) -> String {
    line.split(' ')
        .map(|t| if t == from { to } else { t })
        .collect::<Vec<_>>()
        .join(" ")
}

struct ClientSeen {
    conns: Vec<(Vec<u8>, Vec<u8>)>,
    via: Vec<String>,
}

/// One client: logs in through the proxy, follows every redirect it is given.
async fn client(proxy: String, who: &str, real: [String; 4]) -> ClientSeen {
    let [ds, ns_written, sb_xfr, sb_rng] = real;
    let mut c = connect(&proxy).await;
    c.send_line("VER 1 MSNP11 CVR0").await;
    assert_eq!(c.line().await, "VER 1 MSNP11");
    c.send_line(&format!(
        "CVR 2 0x0409 winnt 5.1 i386 MSNMSGR 7.0.0816 msmsgs {who}@example.com"
    ))
    .await;
    c.line().await;
    c.send_line(&format!("USR 3 TWN I {who}@example.com")).await;
    let xfr = c.line().await;
    let t: Vec<&str> = xfr.split(' ').collect();
    assert_eq!(
        (t[0], t[1], t[2], t[4], t[5]),
        ("XFR", "3", "NS", "0", ds.as_str()),
        "{xfr}"
    );
    let ns_via = t[3].to_string();
    assert!(
        ns_via.starts_with("127.0.0.1:") && ns_via != ns_written,
        "NS address not rewritten: {xfr}"
    );
    c.eof().await;
    let ds_conn = c.done();

    let mut n = connect(&ns_via).await;
    n.send_line("VER 4 MSNP11 CVR0").await;
    assert_eq!(n.line().await, "VER 4 MSNP11");
    let motd_line = n.line().await;
    assert_eq!(motd_line, format!("MSG Hotmail Hotmail {}", MOTD.len()));
    assert_eq!(
        n.bytes(MOTD.len()).await,
        MOTD.as_bytes(),
        "payload must pass untouched"
    );
    n.send_line("XFR 5 SB").await;
    let x = n.line().await;
    let sb1_via = x.split(' ').nth(3).expect("address").to_string();
    assert_eq!(
        x,
        format!("XFR 5 SB {sb1_via} CKI cookie-x-{who} U messenger.msn.com 1")
    );
    let r = n.line().await;
    let sb2_via = r.split(' ').nth(2).expect("address").to_string();
    assert_eq!(
        r,
        format!("RNG 11752013 {sb2_via} CKI cookie-r-{who} carol@example.com Carol U messenger.hotmail.com 1")
    );
    for v in [&sb1_via, &sb2_via] {
        assert!(
            v.starts_with("127.0.0.1:") && *v != sb_xfr && *v != sb_rng,
            "not rewritten: {v}"
        );
    }

    let mut s1 = connect(&sb1_via).await;
    s1.send_line(&format!("USR 6 {who}@example.com cookie-x-{who}"))
        .await;
    assert_eq!(s1.line().await, format!("USR 6 OK {who}@example.com {who}"));
    let body = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nhi";
    s1.send(format!("MSG 7 N {}\r\n{body}", body.len()).as_bytes())
        .await;
    s1.send_line("OUT").await;
    s1.eof().await;

    let mut s2 = connect(&sb2_via).await;
    s2.send_line(&format!("ANS 1 {who}@example.com cookie-r-{who} 11752013"))
        .await;
    assert_eq!(s2.line().await, "IRO 1 1 1 carol@example.com Carol");
    assert_eq!(s2.line().await, "ANS 1 OK");
    let m = s2.line().await;
    let len: usize = m
        .rsplit(' ')
        .next()
        .and_then(|l| l.parse().ok())
        .expect("length");
    s2.bytes(len).await;
    s2.send_line("OUT").await;
    s2.eof().await;

    n.send_line("OUT").await;
    n.eof().await;
    ClientSeen {
        conns: vec![ds_conn, n.done(), s1.done(), s2.done()],
        via: vec![ns_via, sb1_via, sb2_via],
    }
}

async fn servers(hostname: bool) -> Servers {
    let ns = server().await;
    let port = ns.1.rsplit(':').next().expect("port").to_string();
    let ns_written = if hostname {
        format!("localhost:{port}")
    } else {
        ns.1.clone()
    };
    Servers {
        ns,
        ns_written,
        sb_xfr: server().await,
        sb_rng: server().await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_follow_ns_sb_and_rng_redirects_through_the_proxy() {
    tokio::time::timeout(std::time::Duration::from_secs(60), scenario())
        .await
        .expect("test finishes in time");
}

async fn scenario() {
    let (ds_l, ds) = server().await;
    let a = servers(false).await;
    let b = servers(true).await;
    let proxy = start(&ds).await;
    let paddr = proxy.addr.to_string();

    let ns_for = [
        ("alice@example.com".to_string(), a.ns_written.clone()),
        ("bob@example.com".to_string(), b.ns_written.clone()),
    ];
    let real_a = [
        ds.clone(),
        a.ns_written.clone(),
        a.sb_xfr.1.clone(),
        a.sb_rng.1.clone(),
    ];
    let real_b = [
        ds.clone(),
        b.ns_written.clone(),
        b.sb_xfr.1.clone(),
        b.sb_rng.1.clone(),
    ];
    let addrs_a = (a.ns_written.clone(), a.sb_xfr.1.clone(), a.sb_rng.1.clone());
    let addrs_b = (b.ns_written.clone(), b.sb_xfr.1.clone(), b.sb_rng.1.clone());

    let ds_task = tokio::spawn(dispatch(ds_l, ns_for, ds.clone()));
    let sa = tokio::spawn(async move {
        tokio::join!(
            notification(a.ns.0, a.sb_xfr.1.clone(), a.sb_rng.1.clone(), "alice"),
            switchboard_xfr(a.sb_xfr.0, "alice"),
            switchboard_rng(a.sb_rng.0, "alice")
        )
    });
    let sb = tokio::spawn(async move {
        tokio::join!(
            notification(b.ns.0, b.sb_xfr.1.clone(), b.sb_rng.1.clone(), "bob"),
            switchboard_xfr(b.sb_xfr.0, "bob"),
            switchboard_rng(b.sb_rng.0, "bob")
        )
    });
    let (ca, cb) = tokio::join!(
        client(paddr.clone(), "alice", real_a),
        client(paddr.clone(), "bob", real_b)
    );
    let ds_seen = ds_task.await.expect("dispatch");
    let (na, xa, ra) = sa.await.expect("servers a");
    let (nb, xb, rb) = sb.await.expect("servers b");
    let evs = proxy.stop().await;

    // Each server received exactly what its client sent (the client side was never rewritten).
    for (client, servers) in [(&ca, [&na, &xa, &ra]), (&cb, [&nb, &xb, &rb])] {
        for (i, srv) in servers.iter().enumerate() {
            assert_eq!(
                srv.0,
                client.conns[i + 1].1,
                "server {i} got exactly what the client sent"
            );
        }
    }
    // The dispatch server saw both clients; which connection was whose is read from USR.
    for (got, _) in &ds_seen {
        let text = String::from_utf8_lossy(got);
        let c = if text.contains("alice@") { &ca } else { &cb };
        assert_eq!(*got, c.conns[0].1);
    }

    // Each client received exactly what its server sent, except the one address token.
    let check = |c: &ClientSeen,
                 srv: [&(Vec<u8>, Vec<u8>); 3],
                 ds_sent: &Vec<u8>,
                 real: &(String, String, String)| {
        let ds_expect = String::from_utf8_lossy(ds_sent).replace(&real.0, &c.via[0]);
        assert_eq!(String::from_utf8_lossy(&c.conns[0].0), ds_expect);
        let ns_sent = String::from_utf8_lossy(&srv[0].1).into_owned();
        let ns_expect: String = ns_sent
            .split_inclusive("\r\n")
            .map(|l| {
                if l.starts_with("XFR 5 SB ") {
                    swap(l, &real.1, &c.via[1])
                } else if l.starts_with("RNG 11752013 ") {
                    swap(l, &real.2, &c.via[2])
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert_eq!(String::from_utf8_lossy(&c.conns[1].0), ns_expect);
        assert_eq!(c.conns[2].0, srv[1].1, "switchboard bytes pass untouched");
        assert_eq!(
            c.conns[3].0, srv[2].1,
            "switchboard bytes (with XFR text in a payload) pass untouched"
        );
    };
    let ds_sent_for = |who: &str| {
        &ds_seen
            .iter()
            .find(|(got, _)| String::from_utf8_lossy(got).contains(who))
            .expect("dispatch conn")
            .1
    };
    check(&ca, [&na, &xa, &ra], ds_sent_for("alice@"), &addrs_a);
    check(&cb, [&nb, &xb, &rb], ds_sent_for("bob@"), &addrs_b);

    // Events: six redirects, each original -> the address the client used.
    let mut r = redirects(&evs);
    r.sort();
    let mut want = vec![
        (addrs_a.0.clone(), Some(ca.via[0].clone())),
        (addrs_a.1.clone(), Some(ca.via[1].clone())),
        (addrs_a.2.clone(), Some(ca.via[2].clone())),
        (addrs_b.0.clone(), Some(cb.via[0].clone())),
        (addrs_b.1.clone(), Some(cb.via[1].clone())),
        (addrs_b.2.clone(), Some(cb.via[2].clone())),
    ];
    want.sort();
    assert_eq!(r, want);
    // Each rewritten XFR/RNG command carries the line exactly as the client received it.
    let mut forwarded: Vec<String> = evs
        .iter()
        .filter_map(|e| e.command())
        .filter_map(|c| c.rewritten.as_deref().map(str::to_string))
        .collect();
    forwarded.sort();
    let mut seen: Vec<String> = [&ca, &cb]
        .iter()
        .flat_map(|c| c.conns[..2].iter())
        .flat_map(|(got, _)| {
            String::from_utf8_lossy(got)
                .split("\r\n")
                .filter(|l| {
                    l.starts_with("XFR 3 NS ")
                        || l.starts_with("XFR 5 SB ")
                        || l.starts_with("RNG 11752013 ")
                })
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    seen.sort();
    assert_eq!(forwarded, seen);
    let mut ports: Vec<&Option<String>> = r.iter().map(|(_, v)| v).collect();
    ports.dedup();
    assert_eq!(ports.len(), 6, "different targets never share a route");

    // Every connection went through the proxy: 8 accepts, 8 upstream connects, 8 closes.
    let accepted = accepted(&evs);
    assert_eq!(accepted.len(), 8, "{accepted:?}");
    for t in [
        &ds, &addrs_a.0, &addrs_a.1, &addrs_a.2, &addrs_b.0, &addrs_b.1, &addrs_b.2,
    ] {
        assert!(
            accepted.iter().any(|(_, s)| s == t),
            "no proxied connection to {t}"
        );
    }
    let upstream = upstream_connects(&evs);
    assert_eq!(upstream, 8);
    let closes = evs
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Close(_)))
        .count();
    assert_eq!(closes, 8);
    assert!(errors(&evs).is_empty(), "{:?}", errors(&evs));

    // The connections opened through routes are decoded with the service the redirect named.
    for (conn, target) in &accepted {
        let svc = if *target == addrs_a.1
            || *target == addrs_a.2
            || *target == addrs_b.1
            || *target == addrs_b.2
        {
            Some(Service::Sb)
        } else if *target == addrs_a.0 || *target == addrs_b.0 {
            Some(Service::Ns)
        } else {
            None
        };
        if let Some(svc) = svc {
            let cmds: Vec<_> = of_conn(&evs, *conn)
                .into_iter()
                .filter(|e| e.command().is_some())
                .collect();
            assert!(!cmds.is_empty());
            assert!(
                cmds.iter().all(|e| e.service == svc),
                "conn {conn} to {target}"
            );
        }
    }
    // The close of a switchboard connection counts the bytes each way.
    let (conn_sb, _) = accepted
        .iter()
        .find(|(_, t)| *t == addrs_a.1)
        .expect("sb conn");
    let close = of_conn(&evs, *conn_sb)
        .into_iter()
        .find_map(|e| match &e.kind {
            EventKind::Close(c) => Some((c.bytes_c2s, c.bytes_s2c)),
            _ => None,
        });
    assert_eq!(
        close,
        Some((ca.conns[2].1.len() as u64, ca.conns[2].0.len() as u64))
    );
}
