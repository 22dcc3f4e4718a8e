//! Fault tests of the proxy: unreachable upstream, upstream reset, half-close, a slow reader
//! (backpressure instead of buffering), a self-loop, a desync in the middle of a connection
//! (rewriting resumes at the next command line), an unrewritable redirect, and shutdown
//! with a connection open. Loopback only; every wait has a deadline.

mod proxy_support;

use std::time::Duration;

use msntap::event::Ending;
use msntap::proxy::{Config, Proxy, ProxyError};
use msntap::{EventKind, Tables};
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test finishes in time")
}

#[tokio::test]
async fn unreachable_upstream_closes_the_client_cleanly_with_a_clear_error() {
    within(async {
        // A port that was just free: nothing listens there, so the connect is refused.
        let (l, dead) = server().await;
        drop(l);
        let proxy = start(&dead).await;
        let mut c = connect(&proxy.addr.to_string()).await;
        c.send_line("VER 1 MSNP8 CVR0").await;
        // The client sees an orderly close (FIN, not a reset) and no data.
        c.expect_clean_close().await;
        let evs = proxy.stop().await;
        let err = only_error(&evs);
        assert!(
            err.starts_with(&format!("cannot connect to upstream {dead}: ")),
            "{err}"
        );
        assert!(err.to_lowercase().contains("refused"), "{err}");
        assert_eq!(
            closes(&evs),
            vec![(
                "proxy".to_string(),
                "upstream unreachable".to_string(),
                0,
                0
            )]
        );
    })
    .await
}

#[tokio::test]
async fn an_upstream_reset_resets_the_client() {
    within(async {
        let (proxy, mut c, mut s) = opened_session().await;
        s.send_line("VER 1 MSNP8").await;
        assert_eq!(c.line().await, "VER 1 MSNP8");
        // Linger 0 makes the close an RST.
        socket2::SockRef::from(&s.s)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(s);
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(STEP, c.s.read(&mut b))
            .await
            .expect("reset in time");
        assert_eq!(
            r.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset),
            "the client sees a reset, not a clean close"
        );
        let evs = proxy.stop().await;
        let cl = closes(&evs);
        assert_eq!(cl.len(), 1);
        assert_eq!(cl[0].0, "server");
        assert!(cl[0].1.starts_with("server reset"), "{cl:?}");
        assert_eq!((cl[0].2, cl[0].3), (18, 13));
        let c = &close_of(&evs)[0];
        assert_eq!(c.server_end, Some(Ending::Reset));
        assert_eq!(
            c.client_end,
            Some(Ending::Aborted),
            "msntap reset the client"
        );
        assert_eq!((c.delivered_c2s, c.delivered_s2c), (Some(18), Some(13)));
        assert_eq!((c.undelivered_c2s, c.undelivered_s2c), (Some(0), Some(0)));
    })
    .await
}

#[tokio::test]
async fn half_close_lets_the_other_direction_finish() {
    within(async {
        let (l, up) = server().await;
        let proxy = start(&up).await;
        let mut c = connect(&proxy.addr.to_string()).await;
        c.send_line("VER 1 MSNP8 CVR0").await;
        c.s.shutdown().await.expect("client half-close");
        let mut s = accept(&l).await;
        assert_eq!(s.line().await, "VER 1 MSNP8 CVR0");
        s.eof().await; // the client's FIN arrived
        // The server can still talk: the client receives it all, then the server's FIN.
        let reply = "VER 1 MSNP8\r\nCVR 2 6.0.0602 6.0.0602 1.0.0000 http://example.invalid/dl http://example.invalid\r\n";
        s.send(reply.as_bytes()).await;
        s.s.shutdown().await.expect("server close");
        assert_eq!(c.line().await, "VER 1 MSNP8");
        c.line().await;
        c.eof().await;
        assert_eq!(String::from_utf8_lossy(&c.got), reply);
        let evs = proxy.stop().await;
        assert_eq!(
            closes(&evs),
            vec![("client".to_string(), "closed (FIN)".to_string(), 18, reply.len() as u64)]
        );
        let c = &close_of(&evs)[0];
        assert_eq!((c.client_end, c.server_end), (Some(Ending::Fin), Some(Ending::Fin)));
        assert_eq!(c.delivered_s2c, Some(reply.len() as u64));
    })
    .await
}

#[tokio::test]
async fn a_slow_reader_slows_the_sender_instead_of_growing_buffers() {
    within(async {
        let (l, up) = server().await;
        // Keep only connection-level events: the payloads of 64 MiB are not the point here.
        let proxy = start_with(
            Config {
                listen: "127.0.0.1:0".parse().expect("addr"),
                upstream: Some(up),
                ..Config::default()
            },
            |e| e.command().is_none(),
        )
        .await;
        let mut c = connect(&proxy.addr.to_string()).await;
        c.send_line("ANS 1 alice@example.com 123.456 789").await;
        let mut s = accept(&l).await;
        s.line().await;
        // The server pushes 64 MiB of switchboard messages as fast as the proxy takes them.
        let body = vec![b'x'; 64 * 1024 - 64];
        let frame = [
            format!("MSG bob@example.com Bob {}\r\n", body.len()).into_bytes(),
            body,
        ]
        .concat();
        let count = (64 << 20) / frame.len();
        let total = frame.len() * count;
        let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let w2 = written.clone();
        let mut ss = s.s;
        let writer = tokio::spawn(async move {
            for _ in 0..count {
                ss.write_all(&frame).await.expect("server write");
                w2.fetch_add(frame.len(), std::sync::atomic::Ordering::Relaxed);
            }
            ss.shutdown().await.expect("server close");
            ss
        });
        // The client does not read for a second: the server must stall long before 64 MiB
        // (what is in flight is only the kernel socket buffers plus one chunk in the proxy).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stalled_at = written.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            stalled_at < total / 2,
            "the server wrote {stalled_at} of {total} bytes into a proxy nobody reads from"
        );
        // Now the client reads everything, byte for byte.
        let mut got = 0usize;
        let mut b = vec![0u8; 1 << 16];
        loop {
            let n = tokio::time::timeout(STEP, c.s.read(&mut b))
                .await
                .expect("data in time")
                .expect("read");
            if n == 0 {
                break;
            }
            got += n;
        }
        assert_eq!(got, total);
        let _ = writer.await.expect("writer");
        let evs = proxy.stop().await;
        let cl = closes(&evs);
        assert_eq!(cl.len(), 1);
        assert_eq!(cl[0].3, total as u64);
    })
    .await
}

#[tokio::test]
async fn an_upstream_that_is_the_proxy_itself_is_refused() {
    within(async {
        let (l, addr) = server().await;
        drop(l);
        let tables = std::sync::Arc::new(Tables::builtin().expect("tables"));
        let cfg = Config {
            listen: addr.parse().expect("addr"),
            upstream: Some(addr.clone()),
            ..Config::default()
        };
        match Proxy::bind(cfg, tables).await {
            Err(e @ ProxyError::Loop { .. }) => assert!(e.to_string().contains("loop"), "{e}"),
            Err(e) => panic!("expected a loop error, got {e}"),
            Ok(_) => panic!("a proxy relaying to itself must be refused"),
        }
    })
    .await
}

#[tokio::test]
async fn a_redirect_back_to_the_proxy_is_not_followed_in_circles() {
    within(async {
        let (l, up) = server().await;
        let proxy = start(&up).await;
        let me = proxy.addr.to_string();
        let mut c = connect(&me).await;
        c.send_line("VER 1 MSNP8 CVR0").await;
        let mut s = accept(&l).await;
        s.line().await;
        // The server refers the client to the proxy's own listener (as a hosts-file redirect
        // would): the route's upstream connect must refuse instead of looping.
        s.send_line(&format!("XFR 1 NS {me} 0")).await;
        let x = c.line().await;
        let via = x.split(' ').nth(3).expect("addr").to_string();
        let mut c2 = connect(&via).await;
        c2.expect_clean_close().await;
        drop((c, s));
        let evs = proxy.stop().await;
        assert!(
            errors(&evs)
                .iter()
                .any(|e| e.contains("this proxy's own listener (a loop)")),
            "{:?}",
            errors(&evs)
        );
    })
    .await
}

#[tokio::test]
async fn a_desync_in_the_middle_does_not_stop_a_later_xfr_from_being_rewritten() {
    within(async {
        let (proxy, mut c, mut s) = opened_session().await;
        // Junk the framer cannot frame, in the middle of a notification connection, then a
        // switchboard referral: the junk is forwarded exactly, the framer resynchronises at
        // the next command line, and the XFR is rewritten all the same.
        let junk: &[u8] = b"VER 1 MSNP8\r\n\x00\x01binary junk\xff\r\nmore junk\r\n";
        s.send(junk).await;
        s.send_line("XFR 2 SB 10.0.0.1:1865 CKI 1234.5678").await;
        s.send_line("OUT").await;
        s.s.shutdown().await.expect("close");
        c.read_to_eof().await;
        assert_eq!(&c.got[..junk.len()], junk, "the junk is forwarded exactly");
        let rest = String::from_utf8_lossy(&c.got[junk.len()..]).into_owned();
        let xfr = rest.lines().next().expect("xfr line");
        let via = xfr.split(' ').nth(3).expect("address");
        assert!(via.starts_with("127.0.0.1:"), "not rewritten: {xfr}");
        assert_eq!(xfr, format!("XFR 2 SB {via} CKI 1234.5678"));
        assert!(rest.ends_with("\r\nOUT\r\n"), "{rest:?}");
        drop(s);
        let evs = proxy.stop().await;
        assert!(evs.iter().any(|e| matches!(e.kind, EventKind::Desync(_))));
        assert_eq!(
            redirects(&evs),
            vec![("10.0.0.1:1865".to_string(), Some(via.to_string()))]
        );
        // The command event carries the line as it was forwarded.
        let cmd = evs
            .iter()
            .filter_map(|e| e.command())
            .find(|c| c.cmd == "XFR")
            .expect("XFR event");
        assert_eq!(cmd.line, "XFR 2 SB 10.0.0.1:1865 CKI 1234.5678");
        assert_eq!(
            cmd.rewritten.as_deref(),
            Some(format!("XFR 2 SB {via} CKI 1234.5678").as_str())
        );
    })
    .await
}

#[tokio::test]
async fn a_redirect_that_cannot_be_rewritten_says_the_client_leaves() {
    within(async {
        let (proxy, mut c, mut s) = opened_session().await;
        let lines = "VER 1 MSNP8\r\nXFR 4 SB 127.0.0.1:99999 CKI x\r\n";
        s.send(lines.as_bytes()).await;
        s.s.shutdown().await.expect("close");
        c.read_to_eof().await;
        assert_eq!(
            String::from_utf8_lossy(&c.got),
            lines,
            "forwarded unmodified"
        );
        drop(s);
        let evs = proxy.stop().await;
        let r: Vec<_> = evs
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Redirect(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].original, "127.0.0.1:99999");
        assert_eq!(r[0].rewritten, None);
        let p = r[0].problem.as_deref().expect("a problem");
        assert!(p.contains("the client will leave the proxy"), "{p}");
        let cmd = evs
            .iter()
            .filter_map(|e| e.command())
            .find(|c| c.cmd == "XFR")
            .expect("XFR");
        assert_eq!(cmd.rewritten, None);
    })
    .await
}

#[tokio::test]
async fn shutdown_closes_open_connections_and_reports_them() {
    within(async {
        let (proxy, mut c, mut s) = opened_session().await;
        proxy
            .wait_for("the first command", |e| e.command().is_some())
            .await;
        let addr = proxy.addr;
        let evs = proxy.stop().await;
        assert_eq!(
            closes(&evs),
            vec![(
                "proxy".to_string(),
                "proxy shutting down".to_string(),
                18,
                0
            )]
        );
        // Both sides were closed, and the listener is gone.
        c.eof().await;
        s.eof().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    })
    .await
}
