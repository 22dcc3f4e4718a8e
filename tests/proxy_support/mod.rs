//! Shared helpers of the proxy integration tests: a proxy started in-process with its events
//! collected in memory, and line-oriented peers with timeouts. Loopback only; nothing here may
//! wait without a deadline.
#![allow(dead_code)]

#[cfg(unix)]
pub mod binary;
#[path = "../scratch_support/mod.rs"]
mod scratch_support;
pub use scratch_support::Scratch;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msntap::proxy::{Config, Proxy, Stats};
use msntap::{Event, EventKind, Tables};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait in a test may take.
pub const STEP: Duration = Duration::from_secs(10);

pub type Owned = Event<'static>;

/// A test's scratch directory and the path of the proxy's JSON Lines in it. Made before the
/// test's timeout starts (and before the proxy), so that it outlives the proxy and a test
/// that runs out of time keeps its files.
pub fn json_scratch(name: &str) -> (Scratch, PathBuf) {
    let dir = Scratch::dir(name);
    let json = dir.join("events.jsonl");
    (dir, json)
}

pub struct Running {
    pub addr: std::net::SocketAddr,
    pub events: Arc<Mutex<Vec<Owned>>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Stats>,
    collector: std::thread::JoinHandle<()>,
}

/// The config the tests start from: 127.0.0.1 on an ephemeral port in front of `upstream`.
pub fn config(upstream: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        upstream: Some(upstream.to_string()),
        connect_timeout: Duration::from_secs(3),
        ..Config::default()
    }
}

/// Starts a proxy on 127.0.0.1 (ephemeral port) in front of `upstream`.
pub async fn start(upstream: &str) -> Running {
    start_with(config(upstream), |_| true).await
}

/// Starts a proxy with `cfg`, keeping only the events `keep` accepts. The events are
/// collected on a thread of their own, as `msntap proxy` writes them.
pub async fn start_with(cfg: Config, keep: fn(&Event<'_>) -> bool) -> Running {
    let tables = Arc::new(Tables::builtin().expect("built-in tables"));
    let (p, mut rx) = Proxy::bind(cfg, tables).await.expect("proxy binds");
    let addr = p.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(p.run(async move {
        let _ = stopped.await;
    }));
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev2 = events.clone();
    let collector = std::thread::spawn(move || {
        let mut f = |e: &mut Event<'_>| {
            if keep(e) {
                ev2.lock().expect("events").push(e.clone().into_owned());
            }
        };
        while rx
            .next(Duration::from_millis(20), Duration::from_millis(20), &mut f)
            .is_some()
        {}
    });
    Running {
        addr,
        events,
        stop,
        task,
        collector,
    }
}

impl Running {
    /// Stops the proxy and returns every event it emitted.
    pub async fn stop(self) -> Vec<Owned> {
        self.stop_with_stats().await.0
    }

    /// Stops the proxy; returns every event it emitted and its counts.
    pub async fn stop_with_stats(self) -> (Vec<Owned>, Stats) {
        let _ = self.stop.send(());
        let stats = tokio::time::timeout(STEP, self.task)
            .await
            .expect("proxy stops in time")
            .expect("proxy task");
        let c = self.collector;
        tokio::time::timeout(STEP, tokio::task::spawn_blocking(move || c.join()))
            .await
            .expect("events drained")
            .expect("collector")
            .expect("collector thread");
        let v = self.events.lock().expect("events").clone();
        (v, stats)
    }

    /// Waits until an event matching `f` has been seen.
    pub async fn wait_for(&self, what: &str, f: impl Fn(&Owned) -> bool) {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            if self.events.lock().expect("events").iter().any(&f) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A listener for a scripted server.
pub async fn server() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr").to_string();
    (l, a)
}

pub async fn accept(l: &TcpListener) -> Peer {
    let (s, _) = tokio::time::timeout(STEP, l.accept())
        .await
        .expect("accept in time")
        .expect("accept");
    Peer::new(s)
}

pub async fn connect(addr: &str) -> Peer {
    let s = tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    Peer::new(s)
}

/// One end of a TCP connection that records everything it receives.
pub struct Peer {
    pub s: TcpStream,
    /// Every byte received so far.
    pub got: Vec<u8>,
    /// How much of `got` the script has consumed.
    pos: usize,
    /// Every byte sent.
    pub sent: Vec<u8>,
}

impl Peer {
    pub fn new(s: TcpStream) -> Peer {
        Peer {
            s,
            got: Vec::new(),
            pos: 0,
            sent: Vec::new(),
        }
    }

    async fn fill(&mut self) -> usize {
        let mut b = [0u8; 4096];
        let n = match tokio::time::timeout(STEP, self.s.read(&mut b)).await {
            Ok(r) => r.expect("read"),
            Err(_) => panic!(
                "no data in time on {:?}; received so far {:?}",
                self.s.local_addr(),
                String::from_utf8_lossy(&self.got)
            ),
        };
        self.got.extend_from_slice(&b[..n]);
        n
    }

    /// Asserts the peer is closed in an orderly way (FIN, not a reset) with no data first.
    pub async fn expect_clean_close(&mut self) {
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(STEP, self.s.read(&mut b))
            .await
            .expect("close in time")
            .expect("an orderly close, not a reset");
        assert_eq!(
            n,
            0,
            "no data expected, got {:?}",
            String::from_utf8_lossy(&b[..n])
        );
    }

    /// The next CRLF-terminated line, without its CRLF.
    pub async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.got[self.pos..].windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.got[self.pos..self.pos + i]).into_owned();
                self.pos += i + 2;
                return l;
            }
            if self.fill().await == 0 {
                panic!(
                    "connection closed while waiting for a line; got {:?}",
                    String::from_utf8_lossy(&self.got)
                );
            }
        }
    }

    /// Exactly `n` more bytes.
    pub async fn bytes(&mut self, n: usize) -> Vec<u8> {
        while self.got.len() - self.pos < n {
            if self.fill().await == 0 {
                panic!("connection closed while waiting for {n} bytes");
            }
        }
        let v = self.got[self.pos..self.pos + n].to_vec();
        self.pos += n;
        v
    }

    /// Reads until the peer's FIN.
    pub async fn read_to_eof(&mut self) {
        while self.fill().await > 0 {}
    }

    /// Reads until the peer closes (FIN or reset) or nothing comes for a step.
    pub async fn read_to_eof_quietly(&mut self) {
        let mut b = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(STEP, self.s.read(&mut b)).await {
                Ok(Ok(n)) if n > 0 => self.got.extend_from_slice(&b[..n]),
                _ => return,
            }
        }
    }

    /// Waits for the peer's FIN; panics on more data.
    pub async fn eof(&mut self) {
        let n = self.fill().await;
        assert_eq!(
            n,
            0,
            "expected the connection to close, got {:?}",
            String::from_utf8_lossy(&self.got[self.got.len() - n..])
        );
    }

    pub async fn send(&mut self, b: &[u8]) {
        self.sent.extend_from_slice(b);
        tokio::time::timeout(STEP, self.s.write_all(b))
            .await
            .expect("write in time")
            .expect("write");
    }

    /// Closes the connection; returns (received, sent).
    pub fn done(self) -> (Vec<u8>, Vec<u8>) {
        (self.got, self.sent)
    }

    pub async fn send_line(&mut self, l: &str) {
        self.send(format!("{l}\r\n").as_bytes()).await;
    }
}

/// (original, rewritten) of every redirect event.
pub fn redirects(evs: &[Owned]) -> Vec<(String, Option<String>)> {
    evs.iter()
        .filter_map(|e| match &e.kind {
            EventKind::Redirect(r) => Some((
                r.original.to_string(),
                r.rewritten.as_ref().map(|s| s.to_string()),
            )),
            _ => None,
        })
        .collect()
}

/// A proxy in front of a scripted server, and one client whose `VER 1 MSNP8 CVR0` the
/// server has already read: (proxy, client, server side).
pub async fn opened_session() -> (Running, Peer, Peer) {
    opened_session_with(|c| c).await
}

/// [`opened_session`] through a proxy whose configuration `tune` adjusts.
pub async fn opened_session_with(tune: impl FnOnce(Config) -> Config) -> (Running, Peer, Peer) {
    let (l, up) = server().await;
    let proxy = start_with(tune(config(&up)), |_| true).await;
    let mut c = connect(&proxy.addr.to_string()).await;
    c.send_line("VER 1 MSNP8 CVR0").await;
    let mut s = accept(&l).await;
    assert_eq!(s.line().await, "VER 1 MSNP8 CVR0");
    (proxy, c, s)
}

/// The one error event of `evs` (asserts there is exactly one).
pub fn only_error(evs: &[Owned]) -> String {
    let errs = errors(evs);
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs[0].clone()
}

pub fn errors(evs: &[Owned]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match &e.kind {
            EventKind::Error(m) => Some(m.message.to_string()),
            _ => None,
        })
        .collect()
}

/// The event stream of one connection id.
pub fn of_conn(evs: &[Owned], conn: u64) -> Vec<&Owned> {
    evs.iter().filter(|e| e.conn == conn).collect()
}

/// The close events: (by, reason, bytes_c2s, bytes_s2c).
pub fn closes(evs: &[Owned]) -> Vec<(String, String, u64, u64)> {
    evs.iter()
        .filter_map(|e| match &e.kind {
            EventKind::Close(c) => Some((
                c.by.as_deref().unwrap_or_default().to_string(),
                c.reason.as_deref().unwrap_or_default().to_string(),
                c.bytes_c2s,
                c.bytes_s2c,
            )),
            _ => None,
        })
        .collect()
}

/// The close event of a connection.
pub fn close_of(evs: &[Owned]) -> Vec<msntap::event::Close<'static>> {
    evs.iter()
        .filter_map(|e| match &e.kind {
            EventKind::Close(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// (conn, server) of every `accepted` connect event.
pub fn accepted(evs: &[Owned]) -> Vec<(u64, String)> {
    evs.iter()
        .filter_map(|e| match &e.kind {
            EventKind::Connect(c)
                if c.detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with("accepted")) =>
            {
                Some((e.conn, c.server.as_deref().unwrap_or_default().to_string()))
            }
            _ => None,
        })
        .collect()
}

/// How many upstream connects succeeded.
pub fn upstream_connects(evs: &[Owned]) -> usize {
    evs.iter()
        .filter(|e| matches!(&e.kind, EventKind::Connect(c) if c.detail.as_deref().is_some_and(|d| d.starts_with("upstream connected in"))))
        .count()
}
