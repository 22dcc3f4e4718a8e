//! The proxy's bounds, observed from outside: a stopped event consumer never stalls
//! forwarding (work beyond the backlog is dropped and counted in `dropped` events, never
//! silently); handshake and idle timeouts; unused route listeners expire; a line longer
//! than any limit (and a redirect-looking one longer than the hold) is forwarded byte for
//! byte; partial frames beyond the shared framing budget are given up for decoding only;
//! a client reset is reported with what reached each side. Loopback only; bounded waits.

mod proxy_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msntap::event::Ending;
use msntap::proxy::{Config, Proxy};
use msntap::{Event, EventKind, Tables};
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test finishes in time")
}

fn msg_frame(n: usize) -> Vec<u8> {
    let body = format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{}",
        "x".repeat(n)
    );
    format!("MSG bob@example.com Bob {}\r\n{body}", body.len()).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_consumer_never_stalls_forwarding_and_drops_are_counted() {
    within(async {
        let (l, up) = server().await;
        let cfg = Config {
            backlog: 256 << 10,
            ..config(&up)
        };
        let tables = Arc::new(Tables::builtin().expect("tables"));
        let (p, mut events) = Proxy::bind(cfg, tables).await.expect("binds");
        let addr = p.local_addr().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(p.run(async move {
            let _ = stopped.await;
        }));
        // The consumer does not take a single event until the transfer is over.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let seen: Arc<Mutex<Vec<Event<'static>>>> = Arc::default();
        let s2 = seen.clone();
        let consumer = std::thread::spawn(move || {
            let _ = wait.recv();
            let mut f = |e: &mut Event<'_>| s2.lock().expect("seen").push(e.clone().into_owned());
            while events
                .next(Duration::from_millis(20), Duration::from_millis(20), &mut f)
                .is_some()
            {}
        });
        let frame = msg_frame(1000);
        let count = 4000;
        let mut c = connect(&addr).await;
        c.send_line("ANS 1 alice@example.com 1.2.3 99").await;
        let mut s = accept(&l).await;
        s.line().await;
        let t0 = Instant::now();
        let all = frame.repeat(count);
        let (w, r) = tokio::join!(
            async {
                s.s.write_all(&all).await.expect("server writes");
                s.s.shutdown().await.expect("close");
            },
            c.read_to_eof_quietly()
        );
        let () = w;
        let () = r;
        assert_eq!(
            c.got, all,
            "every byte forwarded while nothing was consumed"
        );
        eprintln!(
            "{} MB through with the consumer stopped in {:?}",
            all.len() >> 20,
            t0.elapsed()
        );
        drop((c, s));
        let _ = go.send(());
        let _ = stop.send(());
        let stats = task.await.expect("proxy");
        tokio::task::spawn_blocking(move || consumer.join())
            .await
            .expect("join")
            .expect("consumer");
        let seen = seen.lock().expect("seen").clone();
        let commands = seen.iter().filter(|e| e.command().is_some()).count() as u64;
        let dropped: Vec<_> = seen
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Dropped(d) => Some(*d),
                _ => None,
            })
            .collect();
        assert!(
            !dropped.is_empty(),
            "the backlog filled: a dropped event says so"
        );
        let n: u64 = dropped.iter().map(|d| d.events).sum();
        assert!(dropped
            .iter()
            .all(|d| d.events > 0 && d.bytes > 0 && d.since <= d.until));
        // Never silent: every frame is an event or counted as dropped.
        assert_eq!(
            commands + n,
            count as u64 + 1,
            "{commands} seen + {n} dropped"
        );
        assert_eq!(stats.backlog.dropped_events, n);
        assert!(
            stats.backlog.peak_bytes <= (256 << 10) + (64 << 10),
            "{:?}",
            stats.backlog
        );
        // Connection events are kept (they have a small reserve of their own).
        assert_eq!(close_of(&seen).len(), 1);
    })
    .await
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_handshake_timeout() {
    within(async {
        let (l, up) = server().await;
        let cfg = Config {
            handshake_timeout: Duration::from_millis(300),
            ..config(&up)
        };
        let proxy = start_with(cfg, |_| true).await;
        let t0 = Instant::now();
        let mut c = connect(&proxy.addr.to_string()).await;
        let _s = accept(&l).await;
        c.expect_clean_close().await;
        assert!(t0.elapsed() >= Duration::from_millis(300));
        let evs = proxy.stop().await;
        let cl = closes(&evs);
        assert_eq!(cl.len(), 1);
        assert_eq!(cl[0].0, "proxy");
        assert!(cl[0].1.contains("handshake timeout"), "{cl:?}");
    })
    .await
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    within(async {
        let (proxy, mut c, mut s) = opened_session_with(|cfg| Config {
            idle_timeout: Duration::from_millis(400),
            ..cfg
        })
        .await;
        // Traffic keeps it open past the timeout...
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c.send_line("PNG").await;
            assert_eq!(s.line().await, "PNG");
        }
        // ...silence closes it.
        let t0 = Instant::now();
        c.expect_clean_close().await;
        s.eof().await;
        assert!(t0.elapsed() >= Duration::from_millis(300));
        let evs = proxy.stop().await;
        let cl = closes(&evs);
        assert!(cl[0].1.contains("idle timeout"), "{cl:?}");
        let c = &close_of(&evs)[0];
        assert_eq!(
            (c.client_end, c.server_end),
            (Some(Ending::Aborted), Some(Ending::Aborted))
        );
    })
    .await
}

#[tokio::test]
async fn unused_route_listeners_expire() {
    within(async {
        let (_sb, sb) = server().await;
        let (proxy, mut c, mut s) = opened_session_with(|cfg| Config {
            route_timeout: Duration::from_secs(1),
            ..cfg
        })
        .await;
        s.send_line(&format!("XFR 1 SB {sb} CKI 1.2")).await;
        let x = c.line().await;
        let via = x.split(' ').nth(3).expect("address").to_string();
        assert!(via.starts_with("127.0.0.1:") && via != sb);
        // Nobody connects: the listener closes (a probe would count as a use, so the test
        // waits first and probes once).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            tokio::net::TcpStream::connect(&via).await.is_err(),
            "the route to {sb} did not expire"
        );
        // The next redirect to the same target opens a new route.
        s.send_line(&format!("XFR 2 SB {sb} CKI 3.4")).await;
        let x = c.line().await;
        let via2 = x.split(' ').nth(3).expect("address").to_string();
        assert!(tokio::net::TcpStream::connect(&via2).await.is_ok());
        drop((c, s));
        let (_, stats) = proxy.stop_with_stats().await;
        assert_eq!((stats.routes, stats.routes_expired), (2, 1));
    })
    .await
}

/// `--idle-timeout` and `--route-timeout` take any number of seconds: the largest one a
/// user can type must mean "never", not an overflow in the deadline arithmetic. (The idle
/// watchdog added the timeout to the time of the last activity, which overflowed once that
/// was a second or more into the connection; the route expiry's sum wrapped the same way.)
/// The handshake timeout makes the watchdog look again after the activity at 1.2 s.
#[tokio::test]
async fn the_largest_timeouts_mean_never() {
    within(async {
        let (sbl, sb) = server().await;
        let (proxy, mut c, mut s) = opened_session_with(|cfg| Config {
            idle_timeout: Duration::from_secs(u64::MAX),
            route_timeout: Duration::from_secs(u64::MAX),
            handshake_timeout: Duration::from_secs(2),
            ..cfg
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        s.send_line(&format!("XFR 1 SB {sb} CKI 1.2")).await;
        let x = c.line().await;
        let via = x.split(' ').nth(3).expect("address").to_string();
        // The route's listener takes a connection to the target, 1.2 s into the run.
        let mut c2 = connect(&via).await;
        c2.send_line("USR 1 a@b.c 1.2").await;
        let mut s2 = accept(&sbl).await;
        assert_eq!(s2.line().await, "USR 1 a@b.c 1.2");
        // Past the watchdog's second look (2 s), both connections still relay.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        c.send_line("PNG").await;
        assert_eq!(s.line().await, "PNG");
        c2.send_line("CAL 2 x@y.z").await;
        assert_eq!(s2.line().await, "CAL 2 x@y.z");
        drop((c2, s2));
        // The route stays open for a second connection.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut c3 = connect(&via).await;
        c3.send_line("USR 1 a@b.c 1.2").await;
        let mut s3 = accept(&sbl).await;
        assert_eq!(s3.line().await, "USR 1 a@b.c 1.2");
        drop((c, s, c3, s3));
        let evs = proxy.stop().await;
        let cl = closes(&evs);
        assert_eq!(cl.len(), 3, "{cl:?}");
        assert!(cl.iter().all(|c| !c.1.contains("timeout")), "{cl:?}");
    })
    .await
}

#[tokio::test]
async fn overlong_lines_are_forwarded_exactly() {
    within(async {
        let (proxy, mut c, mut s) = opened_session().await;
        // A line beyond any limit, then a redirect-looking line longer than what is held
        // back, then an ordinary command.
        let mut junk = vec![b'A'; 5 << 20];
        junk.extend_from_slice(b"\r\n");
        let long_xfr = format!("XFR 9 SB 10.0.0.9:1865 CKI {}\r\n", "c".repeat(10_000));
        let mut all = b"VER 1 MSNP8\r\n".to_vec();
        all.extend_from_slice(&junk);
        all.extend_from_slice(long_xfr.as_bytes());
        all.extend_from_slice(b"OUT\r\n");
        let (w, ()) = tokio::join!(
            async {
                s.s.write_all(&all).await.expect("write");
                s.s.shutdown().await.expect("close");
            },
            c.read_to_eof_quietly()
        );
        let () = w;
        assert!(
            c.got == all,
            "forwarded byte for byte ({} of {})",
            c.got.len(),
            all.len()
        );
        drop((c, s));
        let evs = proxy.stop().await;
        let desync = evs
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::Desync(d) => Some(d.clone()),
                _ => None,
            })
            .expect("a desync for the long line");
        assert!(desync.reason.contains("longer than"), "{}", desync.reason);
        assert_eq!(desync.skipped, junk.len() as u64);
        let r = redirects(&evs);
        assert_eq!(r, vec![("10.0.0.9:1865".to_string(), None)]);
        let problem = evs
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::Redirect(r) => r.problem.as_deref().map(str::to_string),
                _ => None,
            })
            .expect("problem");
        assert!(
            problem.contains("longer than 4096 bytes") && problem.contains("leave the proxy"),
            "{problem}"
        );
        assert!(evs
            .iter()
            .filter_map(|e| e.command())
            .any(|c| c.cmd == "OUT"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frames_beyond_the_framing_budget_are_given_up_for_decoding_only() {
    within(async {
        let (l, up) = server().await;
        let cfg = Config {
            framing_budget: 1 << 20,
            ..config(&up)
        };
        let proxy = start_with(cfg, |e| e.command().is_none()).await;
        let addr = proxy.addr.to_string();
        let payload = 900_000;
        let mut pairs = Vec::new();
        for _ in 0..4 {
            let mut c = connect(&addr).await;
            c.send_line("VER 1 MSNP11 CVR0").await;
            let mut s = accept(&l).await;
            s.line().await;
            // Most of a large payload: each connection holds about 600 KB for framing.
            c.send(format!("UUX 2 {payload}\r\n").as_bytes()).await;
            c.send(&vec![b'<'; 600_000]).await;
            let mut got = vec![0u8; 600_000 + 14];
            s.s.read_exact(&mut got).await.expect("forwarded at once");
            pairs.push((c, s));
        }
        for (c, s) in &mut pairs {
            c.send(&vec![b'>'; payload - 600_000]).await;
            c.send_line("PNG").await;
            let mut got = vec![0u8; payload - 600_000 + 5];
            s.s.read_exact(&mut got).await.expect("forwarded");
            assert!(got.ends_with(b">PNG\r\n"));
        }
        drop(pairs);
        let evs = proxy.stop().await;
        let given_up = evs
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::Desync(d) if d.reason.contains("framing memory budget")))
            .count();
        assert!((2..=3).contains(&given_up), "{given_up} connections gave up a frame");
    })
    .await
}

#[tokio::test]
async fn a_client_reset_is_reported_with_what_reached_each_side() {
    within(async {
        let (proxy, mut c, mut s) = opened_session().await;
        s.send_line("VER 1 MSNP8").await;
        assert_eq!(c.line().await, "VER 1 MSNP8");
        socket2::SockRef::from(&c.s)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(c);
        let mut b = [0u8; 16];
        let r = tokio::time::timeout(STEP, s.s.read(&mut b))
            .await
            .expect("in time");
        assert_eq!(
            r.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset)
        );
        let evs = proxy.stop().await;
        let cl = close_of(&evs);
        assert_eq!(cl.len(), 1);
        let c = &cl[0];
        assert_eq!(c.by.as_deref(), Some("client"));
        assert_eq!(c.client_end, Some(Ending::Reset));
        assert_eq!(c.server_end, Some(Ending::Aborted));
        assert_eq!(
            (c.bytes_c2s, c.delivered_c2s, c.undelivered_c2s),
            (18, Some(18), Some(0))
        );
        assert_eq!(
            (c.bytes_s2c, c.delivered_s2c, c.undelivered_s2c),
            (13, Some(13), Some(0))
        );
    })
    .await
}
