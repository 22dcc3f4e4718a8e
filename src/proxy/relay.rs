//! One proxied connection: upstream connect, the two forwarding pumps, timeouts, close and
//! reset propagation, and the close event that says what reached each side. A pump reads,
//! asks its `forward::Direction` what to forward, writes it, and only then queues the frames
//! for the event side; nothing here decodes a payload or waits for an output.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use super::forward::{Ctx, Direction, Router};
use super::record::Rec;
use super::{lock, Shared, Upstream};
use crate::event::{Close, Connect, Dir, Ending, Event, EventKind, Message, Service, Ts};
use crate::protocol::{Dialect, SessionHint};

/// Reads smaller than this are copied out of the read buffer (which is then reused or
/// freed) instead of keeping the whole buffer alive in the backlog.
const COPY_BELOW: usize = super::pool::READ_CHUNK / 4;
/// A pump that always has data yields after forwarding this much, so that one bulk
/// connection does not hold a worker from the others.
const YIELD_EVERY: u64 = 256 * 1024;

/// Why msntap itself ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Shutdown,
    Idle,
    Handshake,
    /// The other pump met a reset and asked this one to stop.
    Reset,
}

/// How a pump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The read side closed (FIN).
    Eof,
    /// The read side reset or failed.
    ReadReset,
    /// Writing to the other side failed (it reset).
    WriteReset,
    /// msntap stopped it.
    Stopped(Stop),
}

/// What a pump did.
#[derive(Debug, Clone, Copy)]
struct Done {
    end: End,
    /// Bytes received from the read side.
    received: u64,
    /// Bytes written to the other side (after rewriting).
    delivered: u64,
    /// Stream bytes received whose forwarding completed.
    sent: u64,
}

struct Conn {
    shared: Arc<Shared>,
    conn: u64,
    dialect: Mutex<Dialect>,
    stop: watch::Sender<Option<Stop>>,
    /// Host written into rewritten addresses.
    advertise: String,
    /// Who ended first and how, set once.
    first: Mutex<Option<(Dir, End)>>,
    started: Instant,
    /// Milliseconds since `started` of the last byte received.
    last_activity: AtomicU64,
    /// The client has sent a complete command line.
    greeted: AtomicBool,
}

impl Conn {
    fn ev(&self, dir: Option<Dir>, kind: EventKind<'static>) -> Event<'static> {
        let d = lock(&self.dialect);
        Event::new(Ts::now(), self.conn, dir, d.service, d.version, kind)
    }

    fn emit(&self, dir: Option<Dir>, kind: EventKind<'static>) {
        self.shared.emit(self.ev(dir, kind));
    }

    async fn record(&self, m: Rec) {
        if let Some(rec) = &self.shared.rec {
            rec.send(m).await;
        }
    }

    fn mark(&self, dir: Dir, end: End) {
        let mut f = lock(&self.first);
        if f.is_none() {
            *f = Some((dir, end));
        }
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_activity.store(ms, Ordering::Relaxed);
    }
}

struct ConnRouter<'a> {
    shared: &'a Arc<Shared>,
    advertise: &'a str,
}

impl Router for ConnRouter<'_> {
    fn route(
        &mut self,
        target: Service,
        address: &str,
        version: Option<u8>,
    ) -> Result<String, String> {
        self.shared.route(target, address, version, self.advertise)
    }
}

fn connect_event(client: SocketAddr, server: Option<String>, detail: String) -> EventKind<'static> {
    EventKind::Connect(Connect {
        client: Some(Cow::Owned(client.to_string())),
        server: server.map(Cow::Owned),
        detail: Some(Cow::Owned(detail)),
    })
}

fn error(message: String) -> EventKind<'static> {
    EventKind::Error(Message {
        message: Cow::Owned(message),
    })
}

/// The close of a connection that never reached its upstream.
fn early_close(reason: &str, client_end: Ending) -> EventKind<'static> {
    EventKind::Close(Close {
        by: Some(Cow::Borrowed("proxy")),
        reason: Some(Cow::Owned(reason.to_string())),
        client_end: Some(client_end),
        ..Close::default()
    })
}

pub(crate) async fn handle(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr, up: Upstream) {
    let conn = shared.next_conn();
    let local = client.local_addr().unwrap_or(shared.cfg.listen);
    let hint = match &up {
        Upstream::Main => SessionHint::default(),
        Upstream::Route {
            service, version, ..
        } => SessionHint {
            service: Some(*service),
            version: *version,
        },
    };
    let (stop, _) = watch::channel(None);
    let c = Conn {
        shared: shared.clone(),
        conn,
        dialect: Mutex::new(Dialect::new(hint)),
        stop,
        advertise: shared
            .cfg
            .advertise
            .clone()
            .unwrap_or_else(|| local.ip().to_string()),
        first: Mutex::new(None),
        started: Instant::now(),
        last_activity: AtomicU64::new(0),
        greeted: AtomicBool::new(false),
    };

    // A connection from one of our own upstream sockets means the upstream leads back here.
    if local.ip() == peer.ip() && shared.is_outbound(peer.port()) {
        c.emit(
            None,
            error(format!(
                "loop: the connection from {peer} is this proxy's own upstream connection; refused"
            )),
        );
        return;
    }

    let target = match target_of(&shared, &client, local, &up) {
        Ok(t) => t,
        Err(message) => {
            c.emit(
                None,
                connect_event(peer, None, format!("accepted on {local}")),
            );
            c.emit(None, error(message));
            close_cleanly(client).await;
            c.emit(
                None,
                early_close("no upstream for this connection", Ending::Aborted),
            );
            return;
        }
    };
    let detail = match &up {
        Upstream::Main => format!("accepted on {local}"),
        Upstream::Route { service, .. } => {
            format!("accepted on {local} (route to {service} {target})")
        }
    };
    c.emit(None, connect_event(peer, Some(target.clone()), detail));

    let t0 = Instant::now();
    let mut down = shared.shutdown.clone();
    let server = tokio::select! {
        r = connect(&shared, &target) => r,
        _ = async { let _ = down.wait_for(|v| *v).await; } => {
            close_cleanly(client).await;
            c.emit(None, early_close("proxy shutting down", Ending::Aborted));
            return;
        }
    };
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            c.emit(
                None,
                error(format!(
                    "cannot connect to upstream {target}: {e} (after {ms:.1} ms); closing the client"
                )),
            );
            close_cleanly(client).await;
            c.emit(None, early_close("upstream unreachable", Ending::Aborted));
            return;
        }
    };
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let server_addr = server.peer_addr().ok();
    let out_port = server.local_addr().map(|a| a.port()).unwrap_or(0);
    c.emit(
        None,
        connect_event(
            peer,
            Some(server_addr.map_or_else(|| target.clone(), |a| a.to_string())),
            format!("upstream connected in {ms:.3} ms"),
        ),
    );
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    if let Some(server_addr) = server_addr {
        c.record(Rec::Open {
            conn,
            client: peer,
            server: server_addr,
            ts: Ts::now(),
            mirror: false,
        })
        .await;
    }

    let limits = shared.cfg.limits;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut c2s = Direction::new(Dir::C2s, limits);
    let mut s2c = Direction::new(Dir::S2c, limits);
    let (d1, d2) = {
        let pumps = async {
            tokio::join!(
                pump(&c, Dir::C2s, &mut cr, &mut sw, &mut c2s),
                pump(&c, Dir::S2c, &mut sr, &mut cw, &mut s2c)
            )
        };
        tokio::pin!(pumps);
        tokio::select! {
            r = &mut pumps => r,
            why = watchdog(&c) => {
                c.mark(Dir::C2s, End::Stopped(why));
                let _ = c.stop.send(Some(why));
                (&mut pumps).await
            }
        }
    };
    shared.remove_outbound(out_port);
    let reset = [d1.end, d2.end].iter().any(|e| {
        matches!(
            e,
            End::ReadReset | End::WriteReset | End::Stopped(Stop::Reset)
        )
    });
    if reset {
        // One side reset: the other sees a reset too (linger 0), never a FIN first (a
        // write half that is dropped would send one).
        let _ = SockRef::from(cr.as_ref()).set_linger(Some(Duration::ZERO));
        let _ = SockRef::from(sr.as_ref()).set_linger(Some(Duration::ZERO));
        cw.forget();
        sw.forget();
    } else {
        drop((cw, sw));
    }
    drop((cr, sr));
    c.record(Rec::End { conn }).await;
    c.emit(None, EventKind::Close(close_of(&c, d1, d2)));
}

/// Waits for the next timeout of the connection and returns it.
async fn watchdog(c: &Conn) -> Stop {
    let cfg = &c.shared.cfg;
    loop {
        let now = c.started.elapsed();
        let mut next = Duration::from_secs(3600);
        if !cfg.handshake_timeout.is_zero() && !c.greeted.load(Ordering::Relaxed) {
            if now >= cfg.handshake_timeout {
                return Stop::Handshake;
            }
            next = next.min(cfg.handshake_timeout - now);
        }
        if !cfg.idle_timeout.is_zero() {
            let last = Duration::from_millis(c.last_activity.load(Ordering::Relaxed));
            let due = last.saturating_add(cfg.idle_timeout);
            if now >= due {
                return Stop::Idle;
            }
            next = next.min(due - now);
        }
        tokio::time::sleep(next.max(Duration::from_millis(10))).await;
    }
}

fn side(d: Dir) -> &'static str {
    match d {
        Dir::C2s => "client",
        Dir::S2c => "server",
    }
}

/// The close event: who ended first and how, and what reached each side.
fn close_of(c: &Conn, c2s: Done, s2c: Done) -> Close<'static> {
    let cfg = &c.shared.cfg;
    // How each side ended, from what its reading pump met and what writing to it met.
    let mut client_end = None;
    let mut server_end = None;
    for (reader, done) in [(Dir::C2s, c2s), (Dir::S2c, s2c)] {
        let (r, w) = match reader {
            Dir::C2s => (&mut client_end, &mut server_end),
            Dir::S2c => (&mut server_end, &mut client_end),
        };
        match done.end {
            End::Eof => *r = r.or(Some(Ending::Fin)),
            End::ReadReset => *r = Some(Ending::Reset),
            End::WriteReset => *w = Some(Ending::Reset),
            End::Stopped(_) => {}
        }
    }
    let client_end = client_end.unwrap_or(Ending::Aborted);
    let server_end = server_end.unwrap_or(Ending::Aborted);
    let first = *lock(&c.first);
    let (by, reason) = match first {
        None | Some((_, End::Stopped(Stop::Shutdown))) => {
            ("proxy", "proxy shutting down".to_string())
        }
        Some((_, End::Stopped(Stop::Idle))) => (
            "proxy",
            format!(
                "no bytes either way for {} s (idle timeout)",
                cfg.idle_timeout.as_secs()
            ),
        ),
        Some((_, End::Stopped(Stop::Handshake))) => (
            "proxy",
            format!(
                "no command from the client within {} s (handshake timeout)",
                cfg.handshake_timeout.as_secs()
            ),
        ),
        Some((_, End::Stopped(Stop::Reset))) => ("proxy", "reset".to_string()),
        Some((d, End::Eof)) => (side(d), "closed (FIN)".to_string()),
        Some((d, End::ReadReset)) => (
            side(d),
            format!(
                "{} reset the connection; the {} was reset too",
                side(d),
                side(d.flip())
            ),
        ),
        Some((d, End::WriteReset)) => (
            side(d.flip()),
            format!(
                "{} reset the connection; the {} was reset too",
                side(d.flip()),
                side(d)
            ),
        ),
    };
    Close {
        by: Some(Cow::Borrowed(by)),
        reason: Some(Cow::Owned(reason)),
        bytes_c2s: c2s.received,
        bytes_s2c: s2c.received,
        delivered_c2s: Some(c2s.delivered),
        delivered_s2c: Some(s2c.delivered),
        undelivered_c2s: Some(c2s.received - c2s.sent.min(c2s.received)),
        undelivered_s2c: Some(s2c.received - s2c.sent.min(s2c.received)),
        client_end: Some(client_end),
        server_end: Some(server_end),
    }
}

/// Sends FIN and waits briefly for the client to go, so it sees an orderly close.
async fn close_cleanly(mut client: TcpStream) {
    let _ = client.shutdown().await;
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        loop {
            if client.readable().await.is_err() {
                break;
            }
            match client.try_read(&mut sink) {
                Ok(0) => break,
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break,
                _ => {}
            }
        }
    })
    .await;
}

/// The upstream address for a new connection.
fn target_of(
    shared: &Shared,
    client: &TcpStream,
    local: SocketAddr,
    up: &Upstream,
) -> Result<String, String> {
    match up {
        Upstream::Route { target, .. } => Ok(target.clone()),
        Upstream::Main if shared.cfg.transparent => match original_dst(client, local) {
            Some(dst) if !shared.is_listener(&dst) => Ok(dst.to_string()),
            _ => shared.cfg.upstream.clone().ok_or_else(|| {
                format!(
                    "transparent mode: the connection to {local} was not redirected by the firewall \
                     and no --upstream fallback is set"
                )
            }),
        },
        Upstream::Main => shared
            .cfg
            .upstream
            .clone()
            .ok_or_else(|| "no upstream configured".to_string()),
    }
}

/// The destination the client asked for before a REDIRECT rule sent it here.
fn original_dst(s: &TcpStream, local: SocketAddr) -> Option<SocketAddr> {
    #[cfg(target_os = "linux")]
    {
        let r = SockRef::from(s);
        let a = if local.is_ipv4() {
            r.original_dst_v4()
        } else {
            r.original_dst_v6()
        };
        a.ok()?.as_socket()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (s, local);
        None
    }
}

/// Resolves and connects, refusing any address that is one of our own listeners.
pub(crate) async fn connect(shared: &Shared, target: &str) -> std::io::Result<TcpStream> {
    use std::io::{Error, ErrorKind};
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(shared.cfg.connect_timeout, tokio::net::lookup_host(target))
            .await
            .map_err(|_| Error::new(ErrorKind::TimedOut, "name lookup timed out"))??
            .collect();
    if addrs.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            "the name resolves to no address",
        ));
    }
    let mut last = Error::new(ErrorKind::NotFound, "no address tried");
    for a in addrs {
        if shared.is_listener(&a) {
            last = Error::new(
                ErrorKind::InvalidInput,
                format!("{a} is this proxy's own listener (a loop); refused"),
            );
            continue;
        }
        let sock = if a.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }?;
        // Bind first so the local port is known before the peer can accept: that port is how
        // a loop through an address we did not foresee is recognised at accept.
        let any: SocketAddr = if a.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        sock.bind(any)?;
        let port = sock.local_addr()?.port();
        shared.add_outbound(port);
        match tokio::time::timeout(shared.cfg.connect_timeout, sock.connect(a)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = Error::new(
                    ErrorKind::TimedOut,
                    format!("no answer from {a} within {:?}", shared.cfg.connect_timeout),
                )
            }
        }
        shared.remove_outbound(port);
    }
    Err(last)
}

/// Runs `st` over one received chunk (or the end of the stream) under the connection's
/// dialect lock. Sync: the lock is never held across an await.
fn step(
    c: &Conn,
    st: &mut Direction,
    chunk: &Bytes,
    capacity: usize,
    eof: bool,
) -> super::forward::Pushed {
    let mut dialect = lock(&c.dialect);
    let mut router = ConnRouter {
        shared: &c.shared,
        advertise: &c.advertise,
    };
    let mut ctx = Ctx {
        tables: &c.shared.tables,
        dialect: &mut dialect,
        router: &mut router,
        budget: &c.shared.budget,
        conn: c.conn,
        ts: Ts::now(),
        chunk_capacity: capacity,
    };
    st.push(chunk, eof, &mut ctx)
}

fn push_all(c: &Conn, dir: Dir, ts: Ts, batches: smallvec::SmallVec<[super::forward::Batch; 1]>) {
    for b in batches {
        c.shared.backlog.push_batch(c.conn, dir, ts, b);
    }
}

/// Writes `out` in order; returns the bytes written, and whether all of it was.
async fn write_out(wr: &mut OwnedWriteHalf, out: &[Bytes]) -> (u64, bool) {
    let mut n = 0u64;
    for piece in out {
        let mut at = 0;
        while at < piece.len() {
            match wr.write(&piece[at..]).await {
                Ok(0) | Err(_) => return (n, false),
                Ok(k) => {
                    at += k;
                    n += k as u64;
                }
            }
        }
    }
    (n, true)
}

/// Forwards `rd` to `wr` until EOF, reset or a stop; queues the frames for the event side
/// after their bytes were written.
async fn pump(
    c: &Conn,
    dir: Dir,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    st: &mut Direction,
) -> Done {
    let mut down = c.shared.shutdown.clone();
    let mut stop = c.stop.subscribe();
    let mut delivered = 0u64;
    let mut sent = 0u64;
    let pool = &c.shared.pool;
    let mut rbuf: Vec<u8> = Vec::new();
    let mut since_yield = 0u64;
    let end = loop {
        if rbuf.capacity() == 0 {
            let ready = tokio::select! {
                biased;
                r = rd.readable() => r,
                _ = down.wait_for(|v| *v) => break End::Stopped(Stop::Shutdown),
                why = stop.wait_for(Option::is_some) => {
                    break End::Stopped(why.ok().and_then(|w| *w).unwrap_or(Stop::Reset))
                }
            };
            if ready.is_err() {
                break End::ReadReset;
            }
            rbuf = pool.get();
        }
        let n = match rd.try_read_buf(&mut rbuf) {
            Ok(0) => break End::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Nothing more for now: an idle connection keeps no read buffer.
                pool.put_vec(std::mem::take(&mut rbuf));
                continue;
            }
            Err(_) => break End::ReadReset,
        };
        let capacity = if n >= COPY_BELOW { rbuf.capacity() } else { n };
        let chunk = if n >= COPY_BELOW {
            Bytes::from(std::mem::take(&mut rbuf))
        } else {
            let b = Bytes::copy_from_slice(&rbuf);
            rbuf.clear();
            b
        };
        c.touch();
        let ts = Ts::now();
        let before = st.forwarded();
        let pushed = step(c, st, &chunk, capacity, false);
        if dir == Dir::C2s && st.commands() > 0 {
            c.greeted.store(true, Ordering::Relaxed);
        }
        if c.shared.rec.is_some() {
            c.record(Rec::Data {
                conn: c.conn,
                dir,
                ts,
                bytes: chunk,
            })
            .await;
        }
        let covered = st.forwarded() - before;
        let (w, ok) = tokio::select! {
            r = write_out(wr, &pushed.out) => r,
            _ = down.wait_for(|v| *v) => {
                push_all(c, dir, ts, pushed.batches);
                break End::Stopped(Stop::Shutdown);
            }
            why = stop.wait_for(Option::is_some) => {
                push_all(c, dir, ts, pushed.batches);
                break End::Stopped(why.ok().and_then(|w| *w).unwrap_or(Stop::Reset));
            }
        };
        delivered += w;
        sent += if ok { covered } else { w.min(covered) };
        push_all(c, dir, ts, pushed.batches);
        if !ok {
            break End::WriteReset;
        }
        since_yield += n as u64;
        if since_yield >= YIELD_EVERY {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    };
    pool.put_vec(rbuf);
    // Whatever is left is framed as the end of the stream, for the events.
    let before = st.forwarded();
    let rest = step(c, st, &Bytes::new(), 0, true);
    match end {
        End::Eof => {
            c.mark(dir, End::Eof);
            let covered = st.forwarded() - before;
            let (w, ok) = write_out(wr, &rest.out).await;
            delivered += w;
            sent += if ok { covered } else { w.min(covered) };
            push_all(c, dir, Ts::now(), rest.batches);
            c.record(Rec::Fin {
                conn: c.conn,
                dir,
                ts: Ts::now(),
            })
            .await;
            if !ok {
                c.mark(dir, End::WriteReset);
                reset_other(c, dir, true).await;
                return Done {
                    end: End::WriteReset,
                    received: st.received(),
                    delivered,
                    sent,
                };
            }
            // Half-close: the FIN is passed on; the other direction keeps flowing.
            let _ = wr.shutdown().await;
        }
        End::ReadReset | End::WriteReset => {
            c.mark(dir, end);
            push_all(c, dir, Ts::now(), rest.batches);
            reset_other(c, dir, end == End::WriteReset).await;
        }
        End::Stopped(_) => {
            c.mark(dir, end);
            push_all(c, dir, Ts::now(), rest.batches);
        }
    }
    Done {
        end,
        received: st.received(),
        delivered,
        sent,
    }
}

/// One side reset: record it and stop the other pump (the connection's sockets are then
/// closed with a reset). `write_failed`: it was the receiving side that reset.
async fn reset_other(c: &Conn, dir: Dir, write_failed: bool) {
    let by = if write_failed { dir.flip() } else { dir };
    c.record(Rec::Rst {
        conn: c.conn,
        dir: by,
        ts: Ts::now(),
    })
    .await;
    let _ = c.stop.send(Some(Stop::Reset));
}
