//! `--http-proxy`: an explicit HTTP forward proxy (tokio). Absolute-URL requests go to
//! their origin (or to where `--map` sends the host), keep-alive connections carry many
//! requests, bodies and responses pass byte for byte (only the request target is rewritten
//! from absolute form to origin form), CONNECT is an opaque tunnel. Every upstream
//! connection is handed to the recorder, whose frames the event side decodes like a
//! capture; this file decodes nothing beyond the HTTP framing it needs to find message
//! ends, and buffers no more than one head.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

pub use super::httpframe::HostMap;
use super::httpframe::{self as hf, has_token, BodyFramer, Framing, ReqHead, MAX_HEAD};
use super::record::Rec;
use super::Shared;
use crate::event::{Dir, Event, EventKind, Message, Service, Ts};

/// Bytes read from a socket at a time.
const READ: usize = 64 * 1024;

fn note(conn: u64, message: String) -> Event<'static> {
    Event::new(
        Ts::now(),
        conn,
        None,
        Service::Unknown,
        None,
        EventKind::Note(Message {
            message: Cow::Owned(message),
        }),
    )
}

fn error(conn: u64, message: String) -> Event<'static> {
    Event::new(
        Ts::now(),
        conn,
        None,
        Service::Unknown,
        None,
        EventKind::Error(Message {
            message: Cow::Owned(message),
        }),
    )
}

pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut stop = shared.shutdown.clone();
    loop {
        let r = tokio::select! {
            _ = stop.wait_for(|v| *v) => break,
            r = listener.accept() => r,
        };
        match r {
            Ok((sock, peer)) => {
                if shared.active.load(Ordering::Acquire) >= shared.cfg.max_connections {
                    shared.emit(error(
                        0,
                        format!(
                            "refused an HTTP proxy connection from {peer}: {} connections already open",
                            shared.cfg.max_connections
                        ),
                    ));
                    continue;
                }
                shared.active.fetch_add(1, Ordering::AcqRel);
                let sh = shared.clone();
                tokio::spawn(async move {
                    let mut down = sh.shutdown.clone();
                    tokio::select! {
                        _ = handle(&sh, sock, peer) => {}
                        _ = down.wait_for(|v| *v) => {}
                    }
                    if sh.active.fetch_sub(1, Ordering::AcqRel) == 1 {
                        sh.idle.notify_waiters();
                    }
                });
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The client side of one proxy connection.
struct Client {
    id: u64,
    peer: SocketAddr,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    /// Bytes read from the client and not yet forwarded.
    buf: Vec<u8>,
}

/// One upstream connection: recorded (and decoded) as the TCP connection it is, from the
/// proxy's outgoing address to the origin.
struct Up {
    id: u64,
    /// `host:port` it was opened for.
    key: String,
    local: SocketAddr,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    buf: Vec<u8>,
    /// The server closed its side (FIN seen and recorded).
    eof: bool,
}

async fn record(sh: &Shared, m: Rec) {
    if let Some(r) = &sh.rec {
        r.send(m).await;
    }
}

/// Records bytes of one direction of a proxied connection, stamped now.
async fn record_data(sh: &Shared, conn: u64, dir: Dir, bytes: Bytes) {
    record(
        sh,
        Rec::Data {
            conn,
            dir,
            ts: Ts::now(),
            bytes,
        },
    )
    .await;
}

/// Reads more of `rd` into `buf`; 0 at the end of the stream. When `rec` names an upstream
/// connection, the bytes are recorded as the server's.
async fn read_more(
    sh: &Shared,
    rd: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    rec: Option<u64>,
) -> std::io::Result<usize> {
    let n = read_ready(rd, buf).await?;
    let at = buf.len() - n;
    if let Some(conn) = rec {
        if n > 0 {
            record_data(sh, conn, Dir::S2c, Bytes::copy_from_slice(&buf[at..])).await;
        } else {
            record(
                sh,
                Rec::Fin {
                    conn,
                    dir: Dir::S2c,
                    ts: Ts::now(),
                },
            )
            .await;
        }
    }
    Ok(n)
}

/// Frees an empty read buffer: a connection that waits holds none.
fn give_back(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = Vec::new();
    }
}

/// Appends what `rd` has to `buf` once it has something (0 at the end of the stream). An
/// empty buffer is given back while the socket is quiet, so that a connection waiting for
/// its next request, or an idle tunnel, holds no read buffer: a thousand of them would
/// otherwise keep [`READ`] bytes each.
async fn read_ready(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    loop {
        give_back(buf);
        rd.readable().await?;
        buf.reserve(READ);
        match rd.try_read_buf(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

enum Head {
    /// A complete head of this many bytes at the start of the buffer.
    At(usize),
    /// The stream ended cleanly before any byte of a head.
    Eof,
    /// The stream ended inside a head.
    Cut,
    TooLarge,
    Io(std::io::Error),
}

async fn read_head(
    sh: &Shared,
    rd: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    rec: Option<u64>,
    eof: &mut bool,
) -> Head {
    loop {
        if let Some(n) = hf::head_end(buf) {
            return Head::At(n);
        }
        if buf.len() > MAX_HEAD {
            return Head::TooLarge;
        }
        if *eof {
            return if buf.is_empty() { Head::Eof } else { Head::Cut };
        }
        match read_more(sh, rd, buf, rec).await {
            Ok(0) => *eof = true,
            Ok(_) => {}
            Err(e) => return Head::Io(e),
        }
    }
}

/// Writes a response of the proxy's own (an error) and ends the client connection.
async fn refuse(c: &mut Client, status: &str, msg: &str) {
    let body = format!("msntap: {msg}\n");
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nProxy-Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = c.wr.write_all(resp.as_bytes()).await;
    let _ = c.wr.shutdown().await;
}

/// A request msntap cannot relay: an error event, and a 400 to the client.
async fn bad_request(sh: &Arc<Shared>, c: &mut Client, peer: SocketAddr, e: &str) {
    sh.emit(error(
        c.id,
        format!("HTTP proxy: {e} from {peer}; answered 400"),
    ));
    refuse(c, "400 Bad Request", e).await;
}

async fn handle(sh: &Arc<Shared>, sock: TcpStream, peer: SocketAddr) {
    let id = sh.next_conn();
    let local = sock.local_addr().unwrap_or(sh.cfg.listen);
    if local.ip() == peer.ip() && sh.is_outbound(peer.port()) {
        sh.emit(error(
            id,
            format!(
                "loop: the connection from {peer} is this proxy's own upstream connection; refused"
            ),
        ));
        return;
    }
    let _ = sock.set_nodelay(true);
    let (rd, wr) = sock.into_split();
    let mut c = Client {
        id,
        peer,
        rd,
        wr,
        buf: Vec::new(),
    };
    let mut up: Option<Up> = None;
    let mut client_eof = false;
    loop {
        let idle = sh.cfg.idle_timeout;
        let head = read_head(sh, &mut c.rd, &mut c.buf, None, &mut client_eof);
        let head = if idle.is_zero() {
            head.await
        } else {
            match tokio::time::timeout(idle, head).await {
                Ok(h) => h,
                Err(_) => break,
            }
        };
        let n = match head {
            Head::At(n) => n,
            Head::Eof | Head::Io(_) => break,
            Head::Cut => {
                sh.emit(error(
                    c.id,
                    format!("HTTP proxy: the client {peer} closed inside a request head"),
                ));
                break;
            }
            Head::TooLarge => {
                sh.emit(error(
                    c.id,
                    format!("HTTP proxy: a request head from {peer} over {MAX_HEAD} bytes; answered 431"),
                ));
                refuse(
                    &mut c,
                    "431 Request Header Fields Too Large",
                    "request head too large",
                )
                .await;
                break;
            }
        };
        let parsed = hf::parse_request(&c.buf[..n]).and_then(|r| Ok((hf::target_of(&r)?, r)));
        let (target, req) = match parsed {
            Ok(p) => p,
            Err(e) => {
                bad_request(sh, &mut c, peer, &e).await;
                break;
            }
        };
        let (addr, mapped) = hf::resolve_map(&sh.cfg.http_maps, &target.host, target.port);
        let via = if mapped {
            format!("{addr} (mapped from {}:{})", target.host, target.port)
        } else {
            addr.clone()
        };
        if target.origin.is_none() {
            if let Some(u) = up.take() {
                retire(sh, u);
            }
            c.buf.drain(..n);
            tunnel(sh, c, &req.target, &addr, &via).await;
            return;
        }
        let framing = match hf::request_framing(&req) {
            Ok(f) => f,
            Err(e) => {
                bad_request(sh, &mut c, peer, &e).await;
                break;
            }
        };
        // An upstream kept from the previous request serves this one if it goes to the same
        // place and the server has not closed it meanwhile.
        if let Some(mut u) = up.take() {
            if u.key == addr && !u.eof && !stale(sh, &mut u).await {
                up = Some(u);
            } else {
                retire(sh, u);
            }
        }
        let t0 = Instant::now();
        let mut u = match up.take() {
            Some(u) => u,
            None => match open(sh, &addr).await {
                Ok(u) => u,
                Err(e) => {
                    let ms = t0.elapsed().as_secs_f64() * 1000.0;
                    let msg = format!(
                        "cannot connect to upstream {via} for {} {}: {e} (after {ms:.1} ms)",
                        req.method,
                        hf::loggable_url(&req.target)
                    );
                    sh.emit(error(c.id, format!("HTTP proxy: {msg}; answered 502")));
                    refuse(&mut c, "502 Bad Gateway", &msg).await;
                    break;
                }
            },
        };
        let head = hf::rewrite_target(
            &c.buf[..n],
            req.target_span.clone(),
            target.origin.as_deref().unwrap_or("/"),
        );
        c.buf.drain(..n);
        let out = exchange(sh, &mut c, &mut u, &req, head, framing, &mut client_eof).await;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let what = format!("{} {}", req.method, hf::loggable_url(&req.target));
        let keep = match out {
            Ok(x) => {
                let mut tail = String::new();
                if x.interim > 0 {
                    tail.push_str(&format!(", after {} interim response(s)", x.interim));
                }
                let body = match x.framing {
                    Framing::Chunked => " chunked",
                    Framing::Close => " to the close",
                    _ => "",
                };
                sh.emit(note(
                    u.id,
                    format!(
                        "HTTP {what} -> {} {}: request body {} bytes, response body {} bytes{body}, via {via} in {ms:.1} ms{tail}",
                        x.status, x.reason, x.req_body, x.resp_body
                    ),
                ));
                x.keep
            }
            Err(e) => {
                sh.emit(error(
                    u.id,
                    format!("HTTP {what} via {via}: {}", e.message()),
                ));
                if let ExErr::Upstream {
                    answered: false, ..
                } = e
                {
                    refuse(
                        &mut c,
                        "502 Bad Gateway",
                        &format!("upstream {via}: {}", e.message()),
                    )
                    .await;
                }
                retire(sh, u);
                break;
            }
        };
        match keep {
            Keep::Both => {
                // Kept for the next request, waiting (not reading) until then.
                give_back(&mut u.buf);
                up = Some(u);
            }
            Keep::Client => retire(sh, u),
            Keep::Neither => {
                retire(sh, u);
                let _ = c.wr.shutdown().await;
                break;
            }
        }
        if client_eof && c.buf.is_empty() {
            break;
        }
    }
    if let Some(u) = up.take() {
        retire(sh, u);
    }
    let _ = c.wr.shutdown().await;
}

/// Has the server closed a kept connection since its last response (a stale keep-alive),
/// or sent bytes nobody asked for? What it sent is recorded all the same.
async fn stale(sh: &Shared, u: &mut Up) -> bool {
    // The read buffer is gone before the first await: a buffer alive across one is part of
    // the state of every connection's task, tunnels and idle clients included.
    let read = {
        let mut b = [0u8; 4096];
        u.rd.try_read(&mut b)
            .map(|n| Bytes::copy_from_slice(b.get(..n).unwrap_or_default()))
    };
    match read {
        Ok(b) if b.is_empty() => {
            u.eof = true;
            let fin = Rec::Fin {
                conn: u.id,
                dir: Dir::S2c,
                ts: Ts::now(),
            };
            record(sh, fin).await;
            true
        }
        Ok(b) => {
            record_data(sh, u.id, Dir::S2c, b).await;
            true
        }
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Connects to `addr` (refusing this proxy's own listeners) and records the connection.
async fn open(sh: &Shared, addr: &str) -> std::io::Result<Up> {
    let s = super::relay::connect(sh, addr).await?;
    let _ = s.set_nodelay(true);
    let peer = s.peer_addr()?;
    let local = s.local_addr()?;
    let id = sh.next_conn();
    record(
        sh,
        Rec::Open {
            conn: id,
            client: local,
            server: peer,
            ts: Ts::now(),
            mirror: true,
        },
    )
    .await;
    let (rd, wr) = s.into_split();
    Ok(Up {
        id,
        key: addr.to_string(),
        local,
        rd,
        wr,
        buf: Vec::new(),
        eof: false,
    })
}

/// Closes an upstream connection: FIN, then a moment for the server's FIN (recorded), off
/// the client's path.
fn retire(sh: &Arc<Shared>, mut u: Up) {
    let sh = sh.clone();
    tokio::spawn(async move {
        let _ = u.wr.shutdown().await;
        record(
            &sh,
            Rec::Fin {
                conn: u.id,
                dir: Dir::C2s,
                ts: Ts::now(),
            },
        )
        .await;
        let mut eof = u.eof;
        let wait = async {
            while !eof {
                u.buf.clear();
                match read_more(&sh, &mut u.rd, &mut u.buf, Some(u.id)).await {
                    Ok(0) => eof = true,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
        record(&sh, Rec::End { conn: u.id }).await;
        sh.remove_outbound(u.local.port());
    });
}

/// What stays open after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Both,
    /// The upstream is done (it closes), the client connection goes on.
    Client,
    Neither,
}

struct Exchanged {
    status: u16,
    reason: String,
    interim: usize,
    framing: Framing,
    req_body: u64,
    resp_body: u64,
    keep: Keep,
}

enum ExErr {
    /// The upstream failed; `answered`: response bytes already reached the client.
    Upstream { msg: String, answered: bool },
    /// The client went away or sent something that cannot be followed.
    Client(String),
}

impl ExErr {
    fn message(&self) -> &str {
        match self {
            ExErr::Upstream { msg, .. } | ExErr::Client(msg) => msg,
        }
    }
}

/// Forwards one request (head, then body) and its response(s), both directions at once so
/// that `Expect: 100-continue` and early answers work.
async fn exchange(
    sh: &Shared,
    c: &mut Client,
    u: &mut Up,
    req: &ReqHead,
    head: Vec<u8>,
    framing: Framing,
    client_eof: &mut bool,
) -> Result<Exchanged, ExErr> {
    let up_id = u.id;
    record_data(sh, up_id, Dir::C2s, Bytes::from(head.clone())).await;
    if let Err(e) = u.wr.write_all(&head).await {
        return Err(ExErr::Upstream {
            msg: format!("writing the request failed: {e}"),
            answered: false,
        });
    }
    let expect = has_token(&req.headers, "expect", "100-continue");
    let Client {
        rd: crd,
        wr: cwr,
        buf: cbuf,
        ..
    } = c;
    let Up {
        rd: urd,
        wr: uwr,
        buf: ubuf,
        eof: ueof,
        ..
    } = u;
    let body = request_body(sh, up_id, crd, cbuf, uwr, framing, client_eof);
    let resp = responses(sh, up_id, urd, ubuf, cwr, &req.method, ueof);
    tokio::pin!(body);
    tokio::pin!(resp);
    enum First<B, R> {
        Body(B),
        Resp(R),
    }
    let first = tokio::select! {
        b = &mut body => First::Body(b),
        r = &mut resp => First::Resp(r),
    };
    let (b, r, body_pending) = match first {
        First::Body(b) => {
            if let Err(e) = &b {
                return Err(ExErr::Client(e.clone()));
            }
            (b, resp.await, false)
        }
        First::Resp(r) => {
            // The answer came before the body ended: the client may still send it (then it is
            // forwarded), or, after `Expect: 100-continue` without a 100, may never.
            let waits = r.as_ref().is_ok_and(|x| x.interim == 0) && expect;
            if r.is_err() || waits {
                (Ok(0), r, true)
            } else {
                (body.await, r, false)
            }
        }
    };
    let mut x = r?;
    x.req_body = match b {
        Ok(n) => n,
        Err(e) => return Err(ExErr::Client(e)),
    };
    if body_pending {
        x.keep = Keep::Neither;
    }
    Ok(x)
}

/// Forwards the request body; returns its bytes on the wire.
async fn request_body(
    sh: &Shared,
    up_id: u64,
    rd: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    wr: &mut OwnedWriteHalf,
    framing: Framing,
    eof: &mut bool,
) -> Result<u64, String> {
    let mut fr = BodyFramer::new(framing);
    while !fr.done() {
        if buf.is_empty() {
            if *eof {
                return Err(format!(
                    "the client closed {} bytes into the request body",
                    fr.wire
                ));
            }
            match read_more(sh, rd, buf, None).await {
                Ok(0) => {
                    *eof = true;
                    continue;
                }
                Ok(_) => {}
                Err(e) => return Err(format!("reading the request body: {e}")),
            }
        }
        let n = fr.take(buf)?;
        let piece: Vec<u8> = buf.drain(..n).collect();
        record_data(sh, up_id, Dir::C2s, Bytes::from(piece.clone())).await;
        wr.write_all(&piece)
            .await
            .map_err(|e| format!("writing the request body upstream: {e}"))?;
    }
    Ok(fr.wire)
}

/// Forwards interim responses and the final one; the final one's body to its end.
async fn responses(
    sh: &Shared,
    up_id: u64,
    rd: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    wr: &mut OwnedWriteHalf,
    method: &str,
    eof: &mut bool,
) -> Result<Exchanged, ExErr> {
    let mut interim = 0;
    let mut answered = false;
    let up = |msg: String, answered: bool| ExErr::Upstream { msg, answered };
    loop {
        let n = match read_head(sh, rd, buf, Some(up_id), eof).await {
            Head::At(n) => n,
            Head::Eof => return Err(up("the server closed without answering".into(), answered)),
            Head::Cut => {
                return Err(up(
                    "the server closed inside a response head".into(),
                    answered,
                ))
            }
            Head::TooLarge => {
                return Err(up(
                    format!("a response head over {MAX_HEAD} bytes"),
                    answered,
                ))
            }
            Head::Io(e) => return Err(up(format!("reading the response: {e}"), answered)),
        };
        let h = hf::parse_response(&buf[..n]).map_err(|e| up(e, answered))?;
        let framing = hf::response_framing(&h, method).map_err(|e| up(e, answered))?;
        let piece: Vec<u8> = buf.drain(..n).collect();
        wr.write_all(&piece)
            .await
            .map_err(|e| ExErr::Client(format!("writing the response to the client: {e}")))?;
        answered = true;
        if (100..200).contains(&h.status) && h.status != 101 {
            interim += 1;
            continue;
        }
        let mut fr = BodyFramer::new(if h.status == 101 {
            // Another protocol follows; it is relayed one way until the close.
            Framing::Close
        } else {
            framing
        });
        while !fr.done() {
            if buf.is_empty() {
                if *eof {
                    if fr.close_delimited() {
                        break;
                    }
                    return Err(up(
                        format!("the server closed {} bytes into the response body", fr.wire),
                        true,
                    ));
                }
                match read_more(sh, rd, buf, Some(up_id)).await {
                    Ok(0) => {
                        *eof = true;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => return Err(up(format!("reading the response body: {e}"), true)),
                }
            }
            let k = fr.take(buf).map_err(|e| up(e, true))?;
            let piece: Vec<u8> = buf.drain(..k).collect();
            wr.write_all(&piece)
                .await
                .map_err(|e| ExErr::Client(format!("writing the response to the client: {e}")))?;
        }
        let keep = if fr.close_delimited() || h.status == 101 {
            Keep::Neither
        } else if hf::response_closes(&h) || *eof {
            // The client reads the same headers and expects the close too.
            if hf::response_closes(&h) {
                Keep::Neither
            } else {
                Keep::Client
            }
        } else {
            Keep::Both
        };
        return Ok(Exchanged {
            status: h.status,
            reason: h.reason,
            interim,
            framing: if fr.close_delimited() {
                Framing::Close
            } else {
                framing
            },
            req_body: 0,
            resp_body: fr.wire,
            keep,
        });
    }
}

/// CONNECT: an opaque tunnel to `addr`, logged with its byte counts and duration.
async fn tunnel(sh: &Arc<Shared>, mut c: Client, authority: &str, addr: &str, via: &str) {
    let t0 = Instant::now();
    let mut u = match open(sh, addr).await {
        Ok(u) => u,
        Err(e) => {
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            let msg = format!(
                "cannot connect to {via} for CONNECT {}: {e} (after {ms:.1} ms)",
                hf::short(authority)
            );
            sh.emit(error(c.id, format!("HTTP proxy: {msg}; answered 502")));
            refuse(&mut c, "502 Bad Gateway", &msg).await;
            return;
        }
    };
    if c.wr
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        retire(sh, u);
        return;
    }
    sh.emit(note(
        u.id,
        format!(
            "CONNECT {} from {} via {via}: tunnel open (relayed opaque, not decrypted)",
            hf::short(authority),
            c.peer
        ),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let early = std::mem::take(&mut c.buf);
    let pending = std::mem::take(&mut u.buf);
    let id = u.id;
    let act = Activity {
        t0,
        last_ms: AtomicU64::new(0),
    };
    let copies = async {
        tokio::join!(
            copy(
                sh,
                id,
                Dir::C2s,
                &act,
                &mut c.rd,
                &mut u.wr,
                early,
                &stop_tx,
                stop_rx.clone()
            ),
            copy(
                sh,
                id,
                Dir::S2c,
                &act,
                &mut u.rd,
                &mut c.wr,
                pending,
                &stop_tx,
                stop_rx
            )
        )
    };
    tokio::pin!(copies);
    let idle = sh.cfg.idle_timeout;
    let mut idled = false;
    let ((sent, how_c), (recv, how_s)) = tokio::select! {
        r = &mut copies => r,
        () = act.quiet_for(idle) => {
            idled = true;
            let _ = stop_tx.send(true);
            copies.await
        }
    };
    if how_c == "reset" || how_s == "reset" {
        record(
            sh,
            Rec::Rst {
                conn: id,
                dir: if how_c == "reset" { Dir::C2s } else { Dir::S2c },
                ts: Ts::now(),
            },
        )
        .await;
    }
    record(sh, Rec::End { conn: id }).await;
    sh.remove_outbound(u.local.port());
    sh.emit(note(
        id,
        format!(
            "CONNECT {} via {via} closed{}: {sent} bytes client to server, {recv} bytes server to client, {:.3} s (client side: {how_c}; server side: {how_s})",
            hf::short(authority),
            if idled {
                format!(
                    " by the proxy, no bytes either way for {} s (idle timeout)",
                    idle.as_secs()
                )
            } else {
                String::new()
            },
            t0.elapsed().as_secs_f64()
        ),
    ));
}

/// When a tunnel last passed a byte either way, for its idle timeout.
struct Activity {
    t0: Instant,
    /// Milliseconds after `t0` of the latest bytes.
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns once no byte has passed either way for `idle`; never when `idle` is zero.
    async fn quiet_for(&self, idle: Duration) {
        if idle.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let due =
                Duration::from_millis(self.last_ms.load(Ordering::Relaxed)).saturating_add(idle);
            let now = self.t0.elapsed();
            if now >= due {
                return;
            }
            tokio::time::sleep(due - now).await;
        }
    }
}

/// One direction of a tunnel: `first` (bytes already read), then `rd` to `wr`, recorded,
/// each pass noted in `act`. Returns the bytes passed and how the reading side ended.
#[allow(clippy::too_many_arguments)]
async fn copy(
    sh: &Shared,
    conn: u64,
    dir: Dir,
    act: &Activity,
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    first: Vec<u8>,
    stop_tx: &tokio::sync::watch::Sender<bool>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (u64, &'static str) {
    let mut total = 0u64;
    let mut buf = first;
    loop {
        if !buf.is_empty() {
            act.touch();
            record_data(sh, conn, dir, Bytes::copy_from_slice(&buf)).await;
            total += buf.len() as u64;
            if wr.write_all(&buf).await.is_err() {
                let _ = stop_tx.send(true);
                return (total, "stopped (the other side failed)");
            }
            buf.clear();
        }
        let r = tokio::select! {
            r = read_ready(rd, &mut buf) => r,
            _ = stop.wait_for(|v| *v) => return (total, "aborted"),
        };
        match r {
            Ok(0) => {
                record(
                    sh,
                    Rec::Fin {
                        conn,
                        dir,
                        ts: Ts::now(),
                    },
                )
                .await;
                let _ = wr.shutdown().await;
                return (total, "fin");
            }
            Ok(_) => {}
            Err(_) => {
                let _ = stop_tx.send(true);
                return (total, "reset");
            }
        }
    }
}
