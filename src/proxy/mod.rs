//! The live proxy shell (tokio): listeners, the redirect route table and the loop guard,
//! around the sans-IO forwarding of `forward` and the event side of `events`. Forwarding
//! never waits for decoding or for an output; the proxy never listens beyond loopback
//! unless told to.

mod backlog;
pub mod events;
pub mod forward;
pub mod http;
mod httpframe;
mod mirror;
pub mod output;
mod pool;
mod record;
mod relay;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::event::{Event, EventKind, Message, Service, Ts};
use crate::protocol::Tables;
use crate::wire::Limits;

pub use backlog::BacklogStats;
pub use events::{Delivered, Events};
pub use forward::Budget;

/// How the proxy runs. `Config::default()` holds the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients connect (default 127.0.0.1:1863).
    pub listen: SocketAddr,
    /// The real server, `host:port`. Optional only in transparent mode, where it is the
    /// fallback for connections that were not redirected by the firewall.
    pub upstream: Option<String>,
    /// Host written into rewritten redirect addresses (default: the address the client
    /// reached the proxy on).
    pub advertise: Option<String>,
    /// Take each connection's destination from SO_ORIGINAL_DST (Linux REDIRECT rules).
    pub transparent: bool,
    /// Give up connecting upstream after this long.
    pub connect_timeout: Duration,
    /// A client that has not sent a complete command line this long after connecting is
    /// disconnected (zero: never).
    pub handshake_timeout: Duration,
    /// A connection with no bytes in either direction for this long is closed (zero: never).
    pub idle_timeout: Duration,
    /// Connections relayed at once; more are refused with an error event.
    pub max_connections: usize,
    /// Redirect targets (each one a listener) kept at once.
    pub max_routes: usize,
    /// A route listener nobody was sent to or connected through for this long is closed.
    pub route_timeout: Duration,
    /// Bytes of undecoded frames waiting for the event side; beyond it events are dropped
    /// and counted (a `dropped` event says how many).
    pub backlog: usize,
    /// Bytes all connections together may buffer for frames that span reads (beyond a
    /// few KiB each); a frame that does not fit is given up for decoding, never for
    /// forwarding.
    pub framing_budget: usize,
    /// Framing limits (longest line, largest payload).
    pub limits: Limits,
    /// Record the proxied connections into this pcapng file.
    pub pcap: Option<std::path::PathBuf>,
    /// Where the explicit HTTP forward proxy listens (`--http-proxy`), if it runs.
    pub http_proxy: Option<SocketAddr>,
    /// `--map HOST=ADDR`: where the HTTP proxy sends requests for these hosts.
    pub http_maps: Vec<http::HostMap>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 1863)),
            upstream: None,
            advertise: None,
            transparent: false,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            max_connections: 4096,
            max_routes: 256,
            route_timeout: Duration::from_secs(600),
            backlog: 16 << 20,
            framing_budget: 32 << 20,
            limits: Limits::default(),
            pcap: None,
            http_proxy: None,
            http_maps: Vec::new(),
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "no upstream server: give --upstream HOST:PORT (or --transparent, or --http-proxy ADDR)"
    )]
    NoUpstream,
    #[error("upstream {0:?} is not HOST:PORT")]
    BadUpstream(String),
    #[error("cannot resolve upstream {target}: {source}")]
    Resolve {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "upstream {target} resolves to {addr}, which is this proxy's own listener {listen}: \
         that would be a loop (check the hosts file, or point --upstream at the real server)"
    )]
    Loop {
        target: String,
        addr: SocketAddr,
        listen: SocketAddr,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot record into {path}: {source}")]
    Pcap {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--transparent needs Linux (SO_ORIGINAL_DST)")]
    TransparentUnsupported,
}

/// Counts for the end of a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub connections: u64,
    /// Route listeners opened over the run.
    pub routes: u64,
    /// Route listeners closed because nobody used them.
    pub routes_expired: u64,
    pub backlog: BacklogStats,
}

/// Where a listener's connections go.
#[derive(Debug, Clone)]
pub(crate) enum Upstream {
    /// The main listener: --upstream (or the original destination in transparent mode).
    Main,
    /// A listener opened for one redirect target.
    Route {
        target: String,
        service: Service,
        version: Option<u8>,
        state: Arc<RouteState>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RouteKey {
    service: Service,
    target: String,
    version: Option<u8>,
}

/// What a route's accept loop and the route table share.
#[derive(Debug)]
pub(crate) struct RouteState {
    port: u16,
    /// Connections open through this route.
    pub active: AtomicUsize,
    /// Milliseconds since the proxy started when a redirect last named this route or a
    /// client last connected through it.
    last_used: AtomicU64,
    stop: Notify,
}

/// State shared by every listener and connection of one proxy.
pub(crate) struct Shared {
    pub cfg: Config,
    pub tables: Arc<Tables>,
    pub backlog: Arc<backlog::Backlog>,
    pub budget: Budget,
    pub(crate) pool: Arc<pool::Pool>,
    pub shutdown: watch::Receiver<bool>,
    /// The `--pcap` recorder.
    pub(crate) rec: Option<record::Recorder>,
    started: Instant,
    next_conn: Arc<AtomicU64>,
    routes: Mutex<HashMap<RouteKey, Arc<RouteState>>>,
    routes_opened: AtomicU64,
    routes_expired: AtomicU64,
    /// Addresses this proxy listens on.
    listeners: Mutex<HashSet<SocketAddr>>,
    /// Local ports of this proxy's upstream sockets (loop detection at accept).
    outbound: Mutex<HashSet<u16>>,
    pub(crate) active: AtomicUsize,
    pub(crate) idle: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A proxy-level event (connection 0).
    pub fn note(&self, kind: EventKind<'static>) -> Event<'static> {
        Event::new(Ts::now(), 0, None, Service::Unknown, None, kind)
    }

    pub fn emit(&self, ev: Event<'static>) {
        self.backlog.push_event(ev);
    }

    pub fn is_listener(&self, a: &SocketAddr) -> bool {
        let l = lock(&self.listeners);
        l.iter().any(|x| same_endpoint(*x, *a))
    }

    pub fn add_outbound(&self, port: u16) {
        lock(&self.outbound).insert(port);
    }
    pub fn remove_outbound(&self, port: u16) {
        lock(&self.outbound).remove(&port);
    }
    pub fn is_outbound(&self, port: u16) -> bool {
        lock(&self.outbound).contains(&port)
    }

    /// The address to write into a redirect for `target`: a listener of this proxy that
    /// relays to it, opened on first use. When the table is full, the route unused longest
    /// with no open connection makes room.
    pub fn route(
        self: &Arc<Self>,
        service: Service,
        target: &str,
        version: Option<u8>,
        advertise: &str,
    ) -> Result<String, String> {
        let key = RouteKey {
            service,
            target: target.to_string(),
            version,
        };
        let now = self.now_ms();
        let mut routes = lock(&self.routes);
        if let Some(r) = routes.get(&key) {
            r.last_used.store(now, Ordering::Relaxed);
            return Ok(join_host_port(advertise, r.port));
        }
        if routes.len() >= self.cfg.max_routes {
            let idle = routes
                .iter()
                .filter(|(_, r)| r.active.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, r)| r.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone());
            match idle.and_then(|k| routes.remove(&k)) {
                Some(old) => {
                    self.routes_expired.fetch_add(1, Ordering::Relaxed);
                    old.stop.notify_one();
                }
                None => {
                    return Err(format!(
                        "the route table is full ({} redirect targets, each with open connections)",
                        self.cfg.max_routes
                    ))
                }
            }
        }
        let open = || -> std::io::Result<TcpListener> {
            let l = std::net::TcpListener::bind(SocketAddr::new(self.cfg.listen.ip(), 0))?;
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        };
        let l = open().map_err(|e| format!("cannot open a listener for {target}: {e}"))?;
        let addr = l
            .local_addr()
            .map_err(|e| format!("cannot open a listener for {target}: {e}"))?;
        lock(&self.listeners).insert(addr);
        let state = Arc::new(RouteState {
            port: addr.port(),
            active: AtomicUsize::new(0),
            last_used: AtomicU64::new(now),
            stop: Notify::new(),
        });
        routes.insert(key.clone(), state.clone());
        drop(routes);
        self.routes_opened.fetch_add(1, Ordering::Relaxed);
        let up = Upstream::Route {
            target: target.to_string(),
            service,
            version,
            state,
        };
        tokio::spawn(accept_loop(self.clone(), l, up, Some(key)));
        Ok(join_host_port(advertise, addr.port()))
    }
}

/// `host:port`, bracketing IPv6 literals.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Would a connection to `target` land on a socket listening on `listen`?
pub fn same_endpoint(listen: SocketAddr, target: SocketAddr) -> bool {
    if listen.port() != target.port() {
        return false;
    }
    let (l, t) = (listen.ip(), target.ip());
    l == t
        || (l.is_unspecified() && (t.is_loopback() || t.is_unspecified()))
        || (t.is_unspecified() && l.is_loopback())
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// Closes the backlog when the proxy goes away, however it goes: the event side then
/// drains what is left and ends.
struct CloseOnDrop(Arc<backlog::Backlog>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A bound proxy, ready to run.
pub struct Proxy {
    shared: Arc<Shared>,
    /// The MSNP listener (absent when only the HTTP proxy runs).
    listener: Option<TcpListener>,
    http_listener: Option<TcpListener>,
    shutdown_tx: watch::Sender<bool>,
    closer: CloseOnDrop,
}

impl Proxy {
    /// Checks the configuration, resolves the upstream and binds the listener. The
    /// returned [`Events`] is where every event of the run comes out.
    pub async fn bind(cfg: Config, tables: Arc<Tables>) -> Result<(Proxy, Events), ProxyError> {
        if cfg.transparent && !cfg!(target_os = "linux") {
            return Err(ProxyError::TransparentUnsupported);
        }
        let msnp = cfg.upstream.is_some() || cfg.transparent;
        let resolved = match &cfg.upstream {
            None if cfg.transparent || cfg.http_proxy.is_some() => Vec::new(),
            None => return Err(ProxyError::NoUpstream),
            Some(u) => {
                if !u
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                {
                    return Err(ProxyError::BadUpstream(u.clone()));
                }
                tokio::net::lookup_host(u.as_str())
                    .await
                    .map_err(|source| ProxyError::Resolve {
                        target: u.clone(),
                        source,
                    })?
                    .collect()
            }
        };
        let bind = |addr: SocketAddr| async move {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind { addr, source })?;
            let a = l
                .local_addr()
                .map_err(|source| ProxyError::Bind { addr, source })?;
            Ok::<_, ProxyError>((l, a))
        };
        let (listener, listen) = if msnp {
            let (l, a) = bind(cfg.listen).await?;
            (Some(l), a)
        } else {
            (None, cfg.listen)
        };
        let (http_listener, http_addr) = match cfg.http_proxy {
            Some(a) => {
                let (l, a) = bind(a).await?;
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        if let Some(addr) = resolved.iter().find(|a| {
            (msnp && same_endpoint(listen, **a)) || http_addr.is_some_and(|h| same_endpoint(h, **a))
        }) {
            return Err(ProxyError::Loop {
                target: cfg.upstream.clone().unwrap_or_default(),
                addr: *addr,
                listen,
            });
        }
        let backlog = Arc::new(backlog::Backlog::new(cfg.backlog));
        let rec = if cfg.pcap.is_some() || http_addr.is_some() {
            let mirror = http_addr.map(|_| backlog.clone());
            Some(
                record::Recorder::start(cfg.pcap.as_deref(), mirror).map_err(|source| {
                    ProxyError::Pcap {
                        path: cfg
                            .pcap
                            .as_ref()
                            .map_or_else(|| "the frame thread".into(), |p| p.display().to_string()),
                        source,
                    }
                })?,
            )
        } else {
            None
        };
        let next_conn = Arc::new(AtomicU64::new(1));
        let pool = Arc::new(pool::Pool::default());
        let mirror = http_addr.map(|_| mirror::Mirror::new(tables.clone(), next_conn.clone()));
        let events = Events::new(
            backlog.clone(),
            tables.clone(),
            cfg.limits,
            pool.clone(),
            mirror,
        );
        let (shutdown_tx, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            budget: Budget::new(cfg.framing_budget),
            pool,
            cfg: Config {
                listen,
                http_proxy: http_addr,
                ..cfg
            },
            tables,
            backlog: backlog.clone(),
            shutdown,
            rec,
            started: Instant::now(),
            next_conn,
            routes: Mutex::new(HashMap::new()),
            routes_opened: AtomicU64::new(0),
            routes_expired: AtomicU64::new(0),
            listeners: Mutex::new(
                listener
                    .iter()
                    .map(|_| listen)
                    .chain(http_addr)
                    .collect::<HashSet<_>>(),
            ),
            outbound: Mutex::new(HashSet::new()),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        Ok((
            Proxy {
                shared,
                listener,
                http_listener,
                shutdown_tx,
                closer: CloseOnDrop(backlog),
            },
            events,
        ))
    }

    /// The address the main (MSNP) listener is bound to (the configured one when only the
    /// HTTP proxy runs).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.cfg.listen
    }

    /// The address the HTTP proxy listens on, when it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.shared.cfg.http_proxy
    }

    /// Relays until `shutdown` resolves; then closes the listeners, ends every connection
    /// (each one reports its close), completes the recording and closes the event stream.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Stats {
        let Proxy {
            shared,
            listener,
            http_listener,
            shutdown_tx,
            closer,
        } = self;
        let listen = shared.cfg.listen;
        for l in listener
            .iter()
            .map(|_| listen)
            .chain(shared.cfg.http_proxy)
            .filter(|a| !is_loopback(a.ip()))
        {
            let msg = format!(
                "listening on {l}, which is reachable from other machines: anyone who can connect \
                 relays through this proxy and every session is logged"
            );
            tracing::warn!("{msg}");
            shared.emit(shared.note(EventKind::Note(Message {
                message: msg.into(),
            })));
        }
        let main =
            listener.map(|l| tokio::spawn(accept_loop(shared.clone(), l, Upstream::Main, None)));
        let http = http_listener.map(|l| tokio::spawn(http::accept_loop(shared.clone(), l)));
        shutdown.await;
        let _ = shutdown_tx.send(true);
        for t in [main, http].into_iter().flatten() {
            let _ = t.await;
        }
        // Every connection sees the shutdown flag and reports its close; give them a moment.
        let wait = async {
            loop {
                let notified = shared.idle.notified();
                if shared.active.load(Ordering::Acquire) == 0 {
                    break;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
        if let Some(rec) = &shared.rec {
            if let Err(e) = rec.close().await {
                let msg = format!("the --pcap recording is incomplete: {e}");
                tracing::error!("{msg}");
                shared.emit(shared.note(EventKind::Error(Message {
                    message: msg.into(),
                })));
            }
        }
        let stats = Stats {
            connections: shared.next_conn.load(Ordering::Relaxed) - 1,
            routes: shared.routes_opened.load(Ordering::Relaxed),
            routes_expired: shared.routes_expired.load(Ordering::Relaxed),
            backlog: shared.backlog.stats(),
        };
        drop(closer);
        stats
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    up: Upstream,
    key: Option<RouteKey>,
) {
    let mut stop = shared.shutdown.clone();
    let route = match &up {
        Upstream::Route { state, .. } => Some(state.clone()),
        Upstream::Main => None,
    };
    loop {
        // A route listener that nobody used for route_timeout closes.
        let expiry = async {
            match &route {
                Some(r) => loop {
                    let last = r.last_used.load(Ordering::Relaxed);
                    let timeout = u64::try_from(shared.cfg.route_timeout.as_millis());
                    let due = last.saturating_add(timeout.unwrap_or(u64::MAX));
                    let now = shared.now_ms();
                    if now >= due && r.active.load(Ordering::Acquire) == 0 {
                        break;
                    }
                    let wait = due.saturating_sub(now).max(1000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                },
                None => std::future::pending::<()>().await,
            }
        };
        let r = tokio::select! {
            _ = stop.wait_for(|v| *v) => break,
            _ = async {
                match &route {
                    Some(r) => r.stop.notified().await,
                    None => std::future::pending::<()>().await,
                }
            } => break,
            _ = expiry => {
                if let Some(k) = &key {
                    let mut routes = lock(&shared.routes);
                    let same = routes
                        .get(k)
                        .zip(route.as_ref())
                        .is_some_and(|(a, b)| Arc::ptr_eq(a, b));
                    if same {
                        routes.remove(k);
                        shared.routes_expired.fetch_add(1, Ordering::Relaxed);
                    }
                }
                break;
            }
            r = listener.accept() => r,
        };
        match r {
            Ok((sock, peer)) => {
                if shared.active.load(Ordering::Acquire) >= shared.cfg.max_connections {
                    let msg = format!(
                        "refused a connection from {peer}: {} connections already open",
                        shared.cfg.max_connections
                    );
                    shared.emit(shared.note(EventKind::Error(Message {
                        message: msg.into(),
                    })));
                    drop(sock);
                    continue;
                }
                if let Some(r) = &route {
                    r.active.fetch_add(1, Ordering::AcqRel);
                    r.last_used.store(shared.now_ms(), Ordering::Relaxed);
                }
                shared.active.fetch_add(1, Ordering::AcqRel);
                let sh = shared.clone();
                let up = up.clone();
                let route = route.clone();
                tokio::spawn(async move {
                    relay::handle(sh.clone(), sock, peer, up).await;
                    if let Some(r) = route {
                        r.last_used.store(sh.now_ms(), Ordering::Relaxed);
                        r.active.fetch_sub(1, Ordering::AcqRel);
                    }
                    if sh.active.fetch_sub(1, Ordering::AcqRel) == 1 {
                        sh.idle.notify_waiters();
                    }
                });
            }
            Err(e) => {
                // Out of descriptors and the like: report, breathe, keep serving.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    if let Ok(a) = listener.local_addr() {
        lock(&shared.listeners).remove(&a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_detection_matches_what_the_kernel_would_route() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(same_endpoint(a("127.0.0.1:1863"), a("127.0.0.1:1863")));
        assert!(same_endpoint(a("0.0.0.0:1863"), a("127.0.0.1:1863")));
        assert!(!same_endpoint(a("127.0.0.1:1863"), a("127.0.0.1:1864")));
        assert!(!same_endpoint(a("127.0.0.1:1863"), a("10.0.0.1:1863")));
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("::1", 5), "[::1]:5");
        assert_eq!(join_host_port("127.0.0.1", 5), "127.0.0.1:5");
        assert_eq!(join_host_port("proxy.lan", 5), "proxy.lan:5");
    }
}
