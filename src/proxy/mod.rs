//! The live proxy shell (tokio): listeners, the redirect route table and the loop guard.
//! It feeds the sans-IO core and forwards bytes; it must never let decoding stop or change
//! forwarding (see relay.rs), and never listens beyond loopback unless told to.

mod record;
mod relay;
pub mod rewrite;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};

use crate::event::{Event, EventKind, Service, Ts, SCHEMA_VERSION};
use crate::protocol::Tables;

/// Events of one connection in order, sent together: one channel message per socket read
/// instead of one per event keeps the hand-off cheap.
pub type EventBatch = Vec<Event>;

/// How the proxy runs.
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
    /// Connections relayed at once; more are refused with an error event.
    pub max_connections: usize,
    /// Redirect targets (each one a listener) kept at once.
    pub max_routes: usize,
    /// Record the proxied connections into this pcapng file.
    pub pcap: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 1863)),
            upstream: None,
            advertise: None,
            transparent: false,
            connect_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_routes: 256,
            pcap: None,
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no upstream server: give --upstream HOST:PORT (or --transparent)")]
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
    pub routes: usize,
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
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RouteKey {
    service: Service,
    target: String,
    version: Option<u8>,
}

/// State shared by every listener and connection of one proxy.
pub(crate) struct Shared {
    pub cfg: Config,
    pub tables: Arc<Tables>,
    pub events: mpsc::Sender<EventBatch>,
    pub shutdown: watch::Receiver<bool>,
    /// The `--pcap` recorder.
    pub rec: Option<mpsc::Sender<record::Rec>>,
    next_conn: AtomicU64,
    routes: Mutex<HashMap<RouteKey, u16>>,
    /// Addresses this proxy listens on.
    listeners: Mutex<HashSet<SocketAddr>>,
    /// Local ports of this proxy's upstream sockets (loop detection at accept).
    outbound: Mutex<HashSet<u16>>,
    active: AtomicUsize,
    idle: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A proxy-level event (connection 0).
    pub fn note(&self, kind: EventKind) -> Event {
        Event {
            schema: SCHEMA_VERSION,
            ts: Ts::now(),
            conn: 0,
            dir: None,
            service: Service::Unknown,
            version: None,
            kind,
        }
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
    /// relays to it, opened on first use.
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
        let mut routes = lock(&self.routes);
        let port = match routes.get(&key) {
            Some(p) => *p,
            None => {
                if routes.len() >= self.cfg.max_routes {
                    return Err(format!(
                        "route table full ({} redirect targets)",
                        self.cfg.max_routes
                    ));
                }
                let std_l = std::net::TcpListener::bind(SocketAddr::new(self.cfg.listen.ip(), 0))
                    .map_err(|e| format!("cannot open a listener for {target}: {e}"))?;
                std_l
                    .set_nonblocking(true)
                    .map_err(|e| format!("cannot open a listener for {target}: {e}"))?;
                let l = TcpListener::from_std(std_l)
                    .map_err(|e| format!("cannot open a listener for {target}: {e}"))?;
                let addr = l
                    .local_addr()
                    .map_err(|e| format!("listener address: {e}"))?;
                lock(&self.listeners).insert(addr);
                let up = Upstream::Route {
                    target: target.to_string(),
                    service,
                    version,
                };
                tokio::spawn(accept_loop(self.clone(), l, up));
                routes.insert(key, addr.port());
                addr.port()
            }
        };
        Ok(join_host_port(advertise, port))
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

/// A bound proxy, ready to run.
pub struct Proxy {
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown_tx: watch::Sender<bool>,
}

impl Proxy {
    /// Checks the configuration, resolves the upstream and binds the listener.
    pub async fn bind(
        cfg: Config,
        tables: Arc<Tables>,
        events: mpsc::Sender<EventBatch>,
    ) -> Result<Proxy, ProxyError> {
        if cfg.transparent && !cfg!(target_os = "linux") {
            return Err(ProxyError::TransparentUnsupported);
        }
        let resolved = match &cfg.upstream {
            None if cfg.transparent => Vec::new(),
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
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let listen = listener.local_addr().map_err(|source| ProxyError::Bind {
            addr: cfg.listen,
            source,
        })?;
        if let Some(addr) = resolved.iter().find(|a| same_endpoint(listen, **a)) {
            return Err(ProxyError::Loop {
                target: cfg.upstream.clone().unwrap_or_default(),
                addr: *addr,
                listen,
            });
        }
        let rec = match &cfg.pcap {
            Some(p) => Some(record::start(p).map_err(|source| ProxyError::Pcap {
                path: p.display().to_string(),
                source,
            })?),
            None => None,
        };
        let (shutdown_tx, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            cfg: Config { listen, ..cfg },
            tables,
            events,
            shutdown,
            rec,
            next_conn: AtomicU64::new(1),
            routes: Mutex::new(HashMap::new()),
            listeners: Mutex::new(HashSet::from([listen])),
            outbound: Mutex::new(HashSet::new()),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        Ok(Proxy {
            shared,
            listener,
            shutdown_tx,
        })
    }

    /// The address the main listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.cfg.listen
    }

    /// Relays until `shutdown` resolves; then closes the listeners, ends every connection
    /// (each one reports its close) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Stats {
        let Proxy {
            shared,
            listener,
            shutdown_tx,
        } = self;
        let listen = shared.cfg.listen;
        if !is_loopback(listen.ip()) {
            let msg = format!(
                "listening on {listen}, which is reachable from other machines: anyone who can connect \
                 relays through this proxy and every session is logged"
            );
            tracing::warn!("{msg}");
            let _ = shared
                .events
                .send(vec![shared.note(EventKind::Note { message: msg })])
                .await;
        }
        let main = tokio::spawn(accept_loop(shared.clone(), listener, Upstream::Main));
        shutdown.await;
        let _ = shutdown_tx.send(true);
        let _ = main.await;
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
            let (ack, done) = tokio::sync::oneshot::channel();
            if rec.send(record::Rec::Flush(ack)).await.is_ok() {
                if let Ok(Err(e)) = done.await {
                    let msg = format!("the --pcap recording is incomplete: {e}");
                    tracing::error!("{msg}");
                    let _ = shared
                        .events
                        .send(vec![shared.note(EventKind::Error { message: msg })])
                        .await;
                }
            }
        }
        let routes = lock(&shared.routes).len();
        Stats {
            connections: shared.next_conn.load(Ordering::Relaxed) - 1,
            routes,
        }
    }
}

/// Binds and runs in one call (see [`Proxy::bind`] and [`Proxy::run`]).
pub async fn run(
    cfg: Config,
    tables: Arc<Tables>,
    events: mpsc::Sender<EventBatch>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stats, ProxyError> {
    Ok(Proxy::bind(cfg, tables, events).await?.run(shutdown).await)
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, up: Upstream) {
    let mut stop = shared.shutdown.clone();
    loop {
        let r = tokio::select! {
            _ = stop.wait_for(|v| *v) => break,
            r = listener.accept() => r,
        };
        match r {
            Ok((sock, peer)) => {
                if shared.active.load(Ordering::Acquire) >= shared.cfg.max_connections {
                    let msg = format!(
                        "refused a connection from {peer}: {} connections already open",
                        shared.cfg.max_connections
                    );
                    let _ = shared
                        .events
                        .send(vec![shared.note(EventKind::Error { message: msg })])
                        .await;
                    drop(sock);
                    continue;
                }
                shared.active.fetch_add(1, Ordering::AcqRel);
                let sh = shared.clone();
                let up = up.clone();
                tokio::spawn(async move {
                    relay::handle(sh.clone(), sock, peer, up).await;
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
