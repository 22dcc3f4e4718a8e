//! One proxied connection: upstream connect, the two forwarding pumps, decoding beside them,
//! close and reset propagation. Forwarding never depends on the decoder succeeding: a decoder
//! problem (desync, even a panic) turns the connection into a raw byte pipe.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Mutex};

use super::record::Rec;
use super::rewrite::{Found, Outcome, Rewriter};
use super::{Shared, Upstream};
use crate::event::{Dir, Event, EventKind, Ts};
use crate::protocol::{Session, SessionHint};

/// Bytes read per socket read. Buffers are allocated per read, so idle connections hold none.
const READ_CHUNK: usize = 64 * 1024;

/// The decoder side of a connection, shared by both pumps.
struct Decoder {
    session: Session,
    rewriter: Rewriter,
    /// The session panicked: no more decoding, bytes pass through.
    dead: bool,
}

impl Decoder {
    fn ev(&self, dir: Option<Dir>, kind: EventKind) -> Event {
        self.session.event(Ts::now(), dir, kind)
    }

    /// Decodes `data`; never panics, never fails.
    fn feed(&mut self, dir: Dir, data: &[u8], out: &mut Vec<Event>) {
        if self.dead {
            return;
        }
        let s = &mut self.session;
        let r = catch_unwind(AssertUnwindSafe(|| s.feed(dir, data, Ts::now(), out)));
        if r.is_err() {
            self.fail(dir, out);
        }
    }

    fn finish_dir(&mut self, dir: Dir, out: &mut Vec<Event>) {
        if self.dead {
            return;
        }
        let s = &mut self.session;
        if catch_unwind(AssertUnwindSafe(|| s.finish_dir(dir, Ts::now(), out))).is_err() {
            self.fail(dir, out);
        }
    }

    fn fail(&mut self, dir: Dir, out: &mut Vec<Event>) {
        self.dead = true;
        self.rewriter.disable();
        out.push(self.ev(
            Some(dir),
            EventKind::Error {
                message:
                    "decoder failed; this connection is relayed as raw bytes from here on".into(),
            },
        ));
    }
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
    /// The other pump asked to stop (reset on the other side).
    Aborted,
    /// The proxy is shutting down.
    Shutdown,
}

struct Conn {
    shared: Arc<Shared>,
    conn: u64,
    dec: Mutex<Decoder>,
    abort: watch::Sender<bool>,
    /// Host written into rewritten addresses.
    advertise: String,
    /// Who closed first and how, set once.
    first: std::sync::Mutex<Option<(Dir, End)>>,
}

impl Conn {
    async fn send(&self, evs: Vec<Event>) {
        if !evs.is_empty() {
            // A closed channel means nobody listens any more; forwarding goes on regardless.
            let _ = self.shared.events.send(evs).await;
        }
    }

    async fn record(&self, m: Rec) {
        if let Some(rec) = &self.shared.rec {
            let _ = rec.send(m).await;
        }
    }

    fn mark(&self, dir: Dir, end: End) {
        let mut f = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some((dir, end));
        }
    }
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
    let session = Session::new(shared.tables.clone(), conn, hint);
    let ev = |kind| session.event(Ts::now(), None, kind);
    let send = |e: Event| {
        let sh = shared.clone();
        async move {
            let _ = sh.events.send(vec![e]).await;
        }
    };

    // A connection from one of our own upstream sockets means the upstream leads back here.
    if local.ip() == peer.ip() && shared.is_outbound(peer.port()) {
        let message = format!(
            "loop: the connection from {peer} is this proxy's own upstream connection; refused"
        );
        send(ev(EventKind::Error { message })).await;
        return;
    }

    let target = match target_of(&shared, &client, local, &up) {
        Ok(t) => t,
        Err(message) => {
            send(ev(EventKind::Connect {
                client: Some(peer.to_string()),
                server: None,
                detail: Some(format!("accepted on {local}")),
            }))
            .await;
            send(ev(EventKind::Error { message })).await;
            close_cleanly(client).await;
            send(ev(close_kind(
                "proxy",
                "no upstream for this connection",
                0,
                0,
            )))
            .await;
            return;
        }
    };
    send(ev(EventKind::Connect {
        client: Some(peer.to_string()),
        server: Some(target.clone()),
        detail: Some(match &up {
            Upstream::Main => format!("accepted on {local}"),
            Upstream::Route { service, .. } => {
                format!("accepted on {local} (route to {service} {target})")
            }
        }),
    }))
    .await;

    let t0 = Instant::now();
    let server = match connect(&shared, &target).await {
        Ok(s) => s,
        Err(e) => {
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            send(ev(EventKind::Error {
                message: format!("cannot connect to upstream {target}: {e} (after {ms:.1} ms); closing the client"),
            }))
            .await;
            close_cleanly(client).await;
            send(ev(close_kind("proxy", "upstream unreachable", 0, 0))).await;
            return;
        }
    };
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let server_addr = server
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| target.clone());
    let out_port = server.local_addr().map(|a| a.port()).unwrap_or(0);
    send(ev(EventKind::Connect {
        client: Some(peer.to_string()),
        server: Some(server_addr),
        detail: Some(format!("upstream connected in {ms:.3} ms")),
    }))
    .await;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    if let (Some(rec), Ok(server_addr)) = (&shared.rec, server.peer_addr()) {
        let _ = rec
            .send(Rec::Open {
                conn,
                client: peer,
                server: server_addr,
                ts: Ts::now(),
            })
            .await;
    }

    let advertise = shared
        .cfg
        .advertise
        .clone()
        .unwrap_or_else(|| local.ip().to_string());
    let (abort, _) = watch::channel(false);
    let c = Conn {
        shared: shared.clone(),
        conn,
        dec: Mutex::new(Decoder {
            session,
            rewriter: Rewriter::new(),
            dead: false,
        }),
        abort,
        advertise,
        first: std::sync::Mutex::new(None),
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let ((e1, n_c2s), (e2, n_s2c)) =
        tokio::join!(pump(&c, Dir::C2s, cr, sw), pump(&c, Dir::S2c, sr, cw));
    shared.remove_outbound(out_port);

    let first = *c.first.lock().unwrap_or_else(|e| e.into_inner());
    let (by, reason) = match first {
        Some((_, End::Shutdown)) | None => ("proxy", "proxy shutting down".to_string()),
        Some((d, end)) => {
            let side = |d: Dir| if d == Dir::C2s { "client" } else { "server" };
            match end {
                End::Eof => (side(d), "closed (FIN)".to_string()),
                End::ReadReset => (side(d), "reset; the other side was reset too".to_string()),
                End::WriteReset => (
                    side(d.flip()),
                    "reset; the other side was reset too".to_string(),
                ),
                _ => ("proxy", format!("ended ({e1:?}/{e2:?})")),
            }
        }
    };
    if let Some(rec) = &shared.rec {
        let _ = rec.send(Rec::End { conn }).await;
    }
    let mut dec = c.dec.lock().await;
    let mut evs = Vec::new();
    dec.finish_dir(Dir::C2s, &mut evs);
    dec.finish_dir(Dir::S2c, &mut evs);
    evs.push(dec.ev(None, close_kind(by, &reason, n_c2s, n_s2c)));
    c.send(evs).await;
}

fn close_kind(by: &str, reason: &str, c2s: u64, s2c: u64) -> EventKind {
    EventKind::Close {
        by: Some(by.to_string()),
        reason: Some(reason.to_string()),
        bytes_c2s: c2s,
        bytes_s2c: s2c,
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
async fn connect(shared: &Shared, target: &str) -> std::io::Result<TcpStream> {
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

/// Forwards `rd` to `wr` until EOF, reset, abort or shutdown; decodes beside it.
/// Returns how it ended and the bytes read.
async fn pump(c: &Conn, dir: Dir, rd: OwnedReadHalf, mut wr: OwnedWriteHalf) -> (End, u64) {
    let mut stop = c.shared.shutdown.clone();
    let mut abort = c.abort.subscribe();
    let mut total = 0u64;
    let end = loop {
        let ready = tokio::select! {
            r = rd.readable() => r,
            _ = abort.wait_for(|v| *v) => break End::Aborted,
            _ = stop.wait_for(|v| *v) => break End::Shutdown,
        };
        let mut buf = Vec::with_capacity(READ_CHUNK);
        let n = match ready.and_then(|()| rd.try_read_buf(&mut buf)) {
            Ok(0) => break End::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break End::ReadReset,
        };
        total += n as u64;
        if let Some(rec) = &c.shared.rec {
            let m = Rec::Data {
                conn: c.conn,
                dir,
                ts: Ts::now(),
                bytes: buf.clone(),
            };
            let _ = rec.send(m).await;
        }
        let out = decode(c, dir, buf).await;
        if out.is_empty() {
            continue;
        }
        let w = tokio::select! {
            r = wr.write_all(&out) => r,
            _ = abort.wait_for(|v| *v) => break End::Aborted,
            _ = stop.wait_for(|v| *v) => break End::Shutdown,
        };
        if w.is_err() {
            break End::WriteReset;
        }
        // Bulk traffic: let the runtime run other tasks each time another READ_CHUNK bytes
        // have been forwarded. Without this a pump whose socket always has data runs until
        // tokio's cooperative budget forces a yield (some 30 chunks, several ms of decoding),
        // holding the worker the whole time; an event consumer on the same runtime then frees
        // ~2 MB of events at once, long after they left the cache, which made decoding itself
        // ~1.4x slower (docs/performance.md). Interactive traffic waits for its socket between
        // reads anyway and is not delayed by a yield per message. (Derived from `total`: a
        // counter of its own made the connection task 16 bytes bigger, which measured as
        // +2 KiB per idle session, an allocator size step.)
        let step = READ_CHUNK as u64;
        if (total - n as u64) / step != total / step {
            tokio::task::yield_now().await;
        }
    };
    match end {
        End::Eof => {
            // Half-close: pass the FIN on after whatever was held back; the other direction
            // keeps flowing.
            let mut rest = Vec::new();
            let mut evs = Vec::new();
            {
                let mut d = c.dec.lock().await;
                if dir == Dir::S2c {
                    d.rewriter.finish(&mut rest);
                }
                d.finish_dir(dir, &mut evs);
            }
            c.mark(dir, End::Eof);
            c.send(evs).await;
            c.record(Rec::Fin {
                conn: c.conn,
                dir,
                ts: Ts::now(),
            })
            .await;
            if !rest.is_empty() && wr.write_all(&rest).await.is_err() {
                c.mark(dir, End::WriteReset);
            }
            let _ = wr.shutdown().await;
        }
        End::ReadReset | End::WriteReset => {
            c.mark(dir, end);
            let by = if end == End::ReadReset {
                dir
            } else {
                dir.flip()
            };
            c.record(Rec::Rst {
                conn: c.conn,
                dir: by,
                ts: Ts::now(),
            })
            .await;
            // Make the close of the other socket a reset too, then stop the other pump.
            let other: &TcpStream = if end == End::ReadReset {
                wr.as_ref()
            } else {
                rd.as_ref()
            };
            let _ = SockRef::from(other).set_linger(Some(Duration::ZERO));
            let _ = c.abort.send(true);
            // Dropping a write half would send FIN first; the peer must see only the reset.
            wr.forget();
        }
        End::Shutdown => c.mark(dir, End::Shutdown),
        End::Aborted => wr.forget(),
    }
    (end, total)
}

/// Feeds the decoder and returns the bytes to forward (rewritten for server-to-client).
async fn decode(c: &Conn, dir: Dir, buf: Vec<u8>) -> Vec<u8> {
    let mut d = c.dec.lock().await;
    let mut evs = Vec::new();
    d.feed(dir, &buf, &mut evs);
    if dir == Dir::C2s {
        c.send(evs).await;
        return buf;
    }
    let mut out = Vec::new();
    let mut outcomes = Vec::new();
    let version = d.session.version();
    let shared = &c.shared;
    let advertise = c.advertise.as_str();
    let mut route = |f: &Found<'_>| shared.route(f.target, f.address, version, advertise);
    if d.dead {
        out = buf;
    } else {
        d.rewriter
            .push_owned(buf, &evs, &mut route, &mut out, &mut outcomes);
    }
    for o in outcomes {
        let kind = match o {
            Outcome::Rewritten {
                cmd,
                target,
                original,
                rewritten,
            } => EventKind::Redirect {
                cmd,
                target,
                original,
                rewritten,
            },
            Outcome::Untouched { cmd, original, reason } => EventKind::Error {
                message: format!("{cmd} to {original} passed on unmodified: {reason}; the client will leave the proxy"),
            },
            Outcome::Passthrough { reason } => EventKind::Note {
                message: format!("{reason}: later redirects on this connection pass unmodified"),
            },
        };
        evs.push(d.ev(Some(Dir::S2c), kind));
    }
    c.send(evs).await;
    out
}
