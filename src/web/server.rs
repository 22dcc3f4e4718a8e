//! The view's HTTP server: one thread with its own small tokio runtime, so a slow or
//! closed browser tab can only ever hold up its own connection, never the proxy or the
//! reader feeding the hub. Serves the embedded page, a JSON API over the store and a
//! server-sent events stream of change ticks. Loopback by default; anywhere else a random
//! token in the URL is required.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::http::{self, json_str, parse_head, response, Request};
use super::hub::Hub;
use super::ladder::{self, LadderOptions};
use super::store::Query;
use crate::event::{Event, EventKind};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the web server: {0}")]
    Start(std::io::Error),
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// Connections served at once (the page uses a few; the rest wait in the backlog).
const MAX_CONNS: usize = 64;
/// A request head must arrive within this.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A response (or one live tick) must be taken by the browser within this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Ticks are sent at most this often: bursts of events become one tick.
const TICK_EVERY: Duration = Duration::from_millis(150);
/// Longest list page.
const MAX_PAGE: usize = 2000;

/// A running server. Dropping it stops it.
pub struct Server {
    pub addr: SocketAddr,
    /// The URL to open (with the token when one is required).
    pub url: String,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// 128 random bits as hex, from the kernel (or, failing that, from std's random keys).
pub fn random_token() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        use std::hash::BuildHasher;
        let s = std::collections::hash_map::RandomState::new();
        let t = crate::Ts::now().0;
        b[..8].copy_from_slice(&s.hash_one(t).to_le_bytes());
        b[8..].copy_from_slice(&s.hash_one((t, std::process::id())).to_le_bytes());
    }
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// Starts serving `hub` on `addr`. A token is required unless `addr` is loopback.
pub fn start(hub: Arc<Hub>, addr: SocketAddr) -> Result<Server, WebError> {
    let std_listener =
        std::net::TcpListener::bind(addr).map_err(|source| WebError::Bind { addr, source })?;
    std_listener
        .set_nonblocking(true)
        .map_err(WebError::Start)?;
    let bound = std_listener.local_addr().map_err(WebError::Start)?;
    let token = (!addr.ip().is_loopback()).then(random_token);
    let host = match bound.ip() {
        IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
        IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let url = match &token {
        Some(t) => format!("http://{host}:{}/?token={t}", bound.port()),
        None => format!("http://{host}:{}/", bound.port()),
    };
    let (stop, stop_rx) = watch::channel(false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(WebError::Start)?;
    let token: Option<Arc<str>> = token.map(Arc::from);
    let thread = std::thread::Builder::new()
        .name("msntap-web".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else {
                    return;
                };
                accept_loop(hub, listener, token, stop_rx).await;
            })
        })
        .map_err(WebError::Start)?;
    Ok(Server {
        addr: bound,
        url,
        stop,
        thread: Some(thread),
    })
}

async fn accept_loop(
    hub: Arc<Hub>,
    listener: TcpListener,
    token: Option<Arc<str>>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of descriptors or the like: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let hub = hub.clone();
        let token = token.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            serve_conn(hub, stream, token, stop).await;
            drop(permit);
        });
    }
}

enum Reply {
    Body(u16, &'static str, Vec<u8>),
    Events,
}

fn json(body: String) -> Reply {
    Reply::Body(200, "application/json", body.into_bytes())
}

fn error(status: u16, msg: &str) -> Reply {
    Reply::Body(
        status,
        "application/json",
        format!(r#"{{"error":{}}}"#, json_str(msg)).into_bytes(),
    )
}

async fn serve_conn(
    hub: Arc<Hub>,
    mut stream: TcpStream,
    token: Option<Arc<str>>,
    stop: watch::Receiver<bool>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let req = loop {
            match parse_head(&buf) {
                Ok(Some((r, n))) => {
                    buf.drain(..n);
                    break r;
                }
                Ok(None) => {}
                Err(e) => {
                    let body = format!(r#"{{"error":{}}}"#, json_str(&e.to_string()));
                    let out = response(e.status(), "application/json", body.as_bytes(), true);
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&out)).await;
                    return;
                }
            }
            match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let close = req.close;
        match route(&hub, &req, token.as_deref()) {
            Reply::Body(status, ctype, body) => {
                let mut out = response(status, ctype, &body, close);
                if req.method == "HEAD" {
                    out.truncate(out.len() - body.len());
                }
                match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&out)).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            Reply::Events => {
                events(&hub, stream, stop).await;
                return;
            }
        }
        if close {
            return;
        }
    }
}

/// The live stream: a tick whenever the store changed, at most every `TICK_EVERY`. It
/// holds nothing but the newest tick, so a reader that falls behind just skips ticks.
async fn events(hub: &Hub, mut stream: TcpStream, mut stop: watch::Receiver<bool>) {
    let mut rx = hub.subscribe();
    let head = http::sse_head();
    if !matches!(
        tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&head)).await,
        Ok(Ok(()))
    ) {
        return;
    }
    rx.mark_changed();
    loop {
        let changed = tokio::select! {
            r = rx.changed() => r.is_ok(),
            _ = tokio::time::sleep(Duration::from_secs(15)) => false,
            _ = stop.changed() => return,
        };
        let msg = if changed {
            let t = *rx.borrow_and_update();
            format!(
                "event: tick\ndata: {{\"next_seq\":{},\"chains\":{},\"done\":{}}}\n\n",
                t.next_seq, t.chains, t.done
            )
        } else {
            ": still here\n\n".to_string()
        };
        match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(msg.as_bytes())).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        tokio::time::sleep(TICK_EVERY).await;
    }
}

fn host_is_local(host: Option<&str>) -> bool {
    let Some(h) = host else {
        return false;
    };
    let name = match h.rfind(':') {
        Some(i) if !h.ends_with(']') => &h[..i],
        _ => h,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn token_ok(req: &Request, token: Option<&str>) -> bool {
    match token {
        // Compared in full whatever the first difference, so timing says nothing.
        Some(t) => req.param("token").is_some_and(|given| {
            given.len() == t.len()
                && given
                    .bytes()
                    .zip(t.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        }),
        // Loopback without a token: refuse other Host names, so a web page elsewhere cannot
        // read the view through DNS rebinding.
        None => host_is_local(req.host.as_deref()),
    }
}

fn route(hub: &Hub, req: &Request, token: Option<&str>) -> Reply {
    if req.method != "GET" && req.method != "HEAD" {
        return error(405, "only GET");
    }
    match req.path.as_str() {
        "/app.js" => {
            return Reply::Body(
                200,
                "text/javascript; charset=utf-8",
                APP_JS.as_bytes().to_vec(),
            )
        }
        "/app.css" => {
            return Reply::Body(200, "text/css; charset=utf-8", APP_CSS.as_bytes().to_vec())
        }
        "/favicon.svg" | "/favicon.ico" => {
            return Reply::Body(200, "image/svg+xml", FAVICON.as_bytes().to_vec())
        }
        _ => {}
    }
    if !token_ok(req, token) {
        return if token.is_some() {
            error(
                403,
                "this view needs the token printed when msntap started (?token=...)",
            )
        } else {
            error(421, "use 127.0.0.1 or localhost to reach this view")
        };
    }
    match req.path.as_str() {
        "/" | "/index.html" => Reply::Body(
            200,
            "text/html; charset=utf-8",
            INDEX_HTML.as_bytes().to_vec(),
        ),
        "/events" => Reply::Events,
        "/api/summary" => {
            let s = hub.store();
            match serde_json::to_string(&s.summary()) {
                Ok(j) => json(j),
                Err(e) => error(500, &e.to_string()),
            }
        }
        "/api/rows" => rows(hub, req),
        "/api/event" => event(hub, req),
        "/api/ladder" => ladder_of(hub, req),
        "/api/transcript" => {
            let p = hub.panels();
            let convs = p.conversations();
            match serde_json::to_string(&convs) {
                Ok(j) => json(format!(
                    r#"{{"stopped":{},"conversations":{j}}}"#,
                    p.transcript_stopped
                )),
                Err(e) => error(500, &e.to_string()),
            }
        }
        "/api/objects" => {
            let p = hub.panels();
            match serde_json::to_string(&p.objects) {
                Ok(j) => json(format!(
                    r#"{{"not_listed":{},"notes":{},"objects":{j}}}"#,
                    p.objects_not_listed,
                    serde_json::to_string(p.notes()).unwrap_or_else(|_| "[]".into())
                )),
                Err(e) => error(500, &e.to_string()),
            }
        }
        "/api/object" => {
            let Some(id) = req.param("id").and_then(|v| v.parse::<usize>().ok()) else {
                return error(400, "id= expected");
            };
            let p = hub.panels();
            match p
                .objects
                .iter()
                .find(|o| o.id == id)
                .and_then(|o| o.data.as_ref())
            {
                Some((ctype, data)) => Reply::Body(200, ctype, data.clone()),
                None => error(404, "no such picture kept"),
            }
        }
        "/api/report" => {
            let p = hub.panels();
            let r = &p.report;
            let odd = |m: &std::collections::BTreeMap<String, crate::analysis::report::Oddity>| {
                serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
            };
            json(format!(
                r#"{{"text":{},"unknown_commands":{},"unmatched_forms":{}}}"#,
                json_str(&r.text()),
                odd(&r.unknown_commands),
                odd(&r.unmatched_forms)
            ))
        }
        _ => error(404, "no such page"),
    }
}

fn num(req: &Request, name: &str, default: usize) -> usize {
    req.param(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rows(hub: &Hub, req: &Request) -> Reply {
    let q = match Query::from_pairs(&req.query) {
        Ok(q) => q,
        Err(e) => return error(400, &e),
    };
    let offset = num(req, "offset", 0);
    let limit = num(req, "limit", 100).min(MAX_PAGE);
    let mut s = hub.store();
    let at = req
        .param("find")
        .and_then(|v| v.parse().ok())
        .and_then(|seq| s.position(&q, seq));
    let (total, rows) = s.query(&q, offset, limit);
    let mut o = String::with_capacity(64 + rows.len() * 160);
    let _ = write!(o, r#"{{"total":{total},"offset":{offset},"#);
    if let Some(p) = at {
        let _ = write!(o, r#""position":{p},"#);
    }
    o.push_str(r#""rows":["#);
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            r#"[{},{},{},{},{},{},{},{},{}]"#,
            r.seq,
            json_str(&r.ts.to_string()),
            r.conn,
            json_str(r.dir.map_or("", |d| d.as_str())),
            json_str(r.service.as_str()),
            json_str(&r.cmd),
            json_str(r.kind.as_str()),
            r.flags,
            json_str(&r.text)
        );
    }
    o.push_str("]}");
    json(o)
}

/// `0000  56 45 52 20 ...  VER ...` lines.
pub fn hex_dump(b: &[u8], max: usize) -> String {
    let mut o = String::new();
    for (i, chunk) in b[..b.len().min(max)].chunks(16).enumerate() {
        let _ = write!(o, "{:04x}  ", i * 16);
        for k in 0..16 {
            match chunk.get(k) {
                Some(x) => {
                    let _ = write!(o, "{x:02x} ");
                }
                None => o.push_str("   "),
            }
        }
        o.push(' ');
        o.extend(chunk.iter().map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '.'
            }
        }));
        o.push('\n');
    }
    if b.len() > max {
        let _ = writeln!(o, "... {} more bytes", b.len() - max);
    }
    o
}

fn event(hub: &Hub, req: &Request) -> Reply {
    let Some(seq) = req.param("seq").and_then(|v| v.parse::<u64>().ok()) else {
        return error(400, "seq= expected");
    };
    let mut s = hub.store();
    let Some((row, j)) = s.get(seq) else {
        return error(404, "no such event (or no longer kept)");
    };
    let conn = row.conn;
    let j = j.to_string();
    let chain = s.chain_of(conn);
    drop(s);
    let parsed = Event::from_json(&j).ok();
    let line_bytes: Option<Vec<u8>> = parsed.as_ref().and_then(|e| match &e.kind {
        EventKind::Command(c) => Some(match &c.line_base64 {
            Some(b) => b.0.to_vec(),
            None => c.line.as_bytes().to_vec(),
        }),
        _ => None,
    });
    let mut o = String::with_capacity(j.len() + 512);
    let _ = write!(
        o,
        r#"{{"seq":{seq},"conn":{conn},"chain":{},"#,
        chain.map_or("null".to_string(), |c| c.to_string())
    );
    if let Some(b) = &line_bytes {
        let _ = write!(
            o,
            r#""line_hex":{},"line_text":{},"#,
            json_str(&hex_dump(b, 4096)),
            json_str(&String::from_utf8_lossy(b))
        );
    }
    if let Some(EventKind::Command(c)) = parsed.as_ref().map(|e| &e.kind) {
        if let Some(def) = hub.tables.command(c.cmd.as_bytes()) {
            let _ = write!(o, r#""meaning":{},"#, json_str(&def.meaning));
            let mut fm = serde_json::Map::new();
            for f in c.fields.iter() {
                let m = def
                    .forms
                    .iter()
                    .flat_map(|form| form.params.iter())
                    .find(|p| p.name == f.name)
                    .and_then(|p| p.meaning.clone());
                if let Some(m) = m {
                    fm.insert(f.name.to_string(), serde_json::Value::String(m));
                }
            }
            let _ = write!(o, r#""field_meanings":{},"#, serde_json::Value::Object(fm));
        }
    }
    let _ = write!(o, r#""event":{j}}}"#);
    json(o)
}

fn ladder_of(hub: &Hub, req: &Request) -> Reply {
    let Some(id) = req.param("chain").and_then(|v| v.parse::<u64>().ok()) else {
        return error(400, "chain= expected");
    };
    let s = hub.store();
    let Some(chain) = s.chain(id) else {
        return error(404, "no such chain");
    };
    let hide = match req.param("hide") {
        Some(h) => h
            .split(',')
            .map(|x| x.trim().to_ascii_uppercase())
            .filter(|x| !x.is_empty())
            .collect(),
        None => ladder::keepalives(),
    };
    let opts = LadderOptions {
        hide,
        skip: num(req, "skip", 0),
        max_steps: num(req, "limit", 300).clamp(1, 3000),
        ..LadderOptions::default()
    };
    let l = ladder::layout(&s.chains, &chain, s.rows(), &opts);
    drop(s);
    let svg = ladder::svg(&l);
    json(format!(
        r#"{{"chain":{id},"steps":{},"commands":{},"skipped":{},"truncated":{},"hidden":{},"svg":{}}}"#,
        l.steps.len(),
        l.commands(),
        l.skipped,
        l.truncated,
        l.hidden,
        json_str(&svg)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_check_and_token() {
        assert!(host_is_local(Some("127.0.0.1:8080")));
        assert!(host_is_local(Some("localhost:1")));
        assert!(host_is_local(Some("[::1]:80")));
        assert!(!host_is_local(Some("evil.example:8080")));
        assert!(!host_is_local(None));
        let req = |q: &str| {
            parse_head(format!("GET /?{q} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
                .unwrap()
                .unwrap()
                .0
        };
        assert!(token_ok(&req("token=abc"), Some("abc")));
        assert!(!token_ok(&req("token=abd"), Some("abc")));
        assert!(!token_ok(&req("token=ab"), Some("abc")));
        assert!(!token_ok(&req(""), Some("abc")));
        assert_eq!(random_token().len(), 32);
        assert_ne!(random_token(), random_token());
    }

    #[test]
    fn hex_dump_lines() {
        let d = hex_dump(b"VER 1 MSNP8\r\n", 100);
        assert!(
            d.starts_with("0000  56 45 52 20 31 20 4d 53 4e 50 38 0d 0a "),
            "{d}"
        );
        assert!(d.trim_end().ends_with("VER 1 MSNP8.."), "{d}");
        assert!(hex_dump(&[0u8; 40], 16).contains("24 more bytes"));
    }
}
