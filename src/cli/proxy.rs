//! The `msntap proxy` subcommand: options, the runtime, SIGINT/SIGTERM and the event
//! thread around `msntap::proxy`. No relaying or decoding logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};

use msntap::analysis::extract::{ExtractSink, Limits};
use msntap::protocol::tables::Tables;
use msntap::proxy::output::LiveOutput;
use msntap::proxy::{Config, Proxy};

use super::args::OutputArgs;

pub const EXAMPLES: &str = "\
Examples:
  # Point the client at 127.0.0.1:1863; msntap connects to the real server.
  msntap proxy --upstream messenger.example.org:1863 --hide PNG,QNG
  # Also JSON Lines, a pcapng recording and the pictures/files sent over P2P.
  msntap proxy --upstream messenger.example.org:1863 --json s.jsonl --pcap s.pcapng --extract objects/
  # An HTTP proxy for clients configured with one; the gateway goes to a local server.
  msntap proxy --http-proxy 127.0.0.1:3128 --map gateway.messenger.hotmail.com=127.0.0.1:8080 --record h.pcapng
  # Transparent mode behind an iptables/nftables REDIRECT rule (see docs/proxy.md).
  msntap proxy --transparent --listen 127.0.0.1:1863
";

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// The real server, HOST:PORT (e.g. messenger.example.org:1863).
    #[arg(
        long,
        value_name = "HOST:PORT",
        required_unless_present_any = ["transparent", "http_proxy"]
    )]
    pub upstream: Option<String>,
    /// Also (or, without --upstream, only) run an explicit HTTP forward proxy on ADDR that a
    /// client's proxy settings point at: gateway.dll polling, HTTP SOAP and CONNECT tunnels
    /// (opaque) are relayed and decoded. See docs/proxy.md.
    #[arg(long, value_name = "ADDR:PORT")]
    pub http_proxy: Option<std::net::SocketAddr>,
    /// With --http-proxy: send requests (and CONNECTs) for HOST to ADDR instead, e.g.
    /// `gateway.messenger.hotmail.com=127.0.0.1:8080` or `'*.hotmail.com=127.0.0.1'`
    /// (without a port the request's port is kept). Repeatable; exact names win over `*.`.
    #[arg(long = "map", value_name = "HOST=ADDR", value_parser = parse_map, requires = "http_proxy")]
    pub maps: Vec<msntap::proxy::http::HostMap>,
    /// Where clients connect. Anything but a loopback address exposes the proxy to the network.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:1863")]
    pub listen: std::net::SocketAddr,
    /// Host written into rewritten redirect addresses (default: the address the client
    /// reached the proxy on). Needed when clients reach the proxy through NAT or a name.
    #[arg(long, value_name = "HOST")]
    pub advertise: Option<String>,
    /// Linux: take each connection's real destination from an iptables/nftables REDIRECT
    /// rule (SO_ORIGINAL_DST); --upstream is then only the fallback. See docs/proxy.md.
    #[arg(long)]
    pub transparent: bool,
    /// Record the proxied connections into FILE as pcapng (readable by Wireshark and
    /// `msntap read`). The file holds everything, secrets included: it is made owner-only.
    #[arg(long, value_name = "FILE", visible_alias = "record")]
    pub pcap: Option<PathBuf>,
    /// Seconds to wait for the upstream server to accept a connection.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub connect_timeout: u64,
    /// Seconds a client may take to send its first command line before it is
    /// disconnected (0: no limit).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub handshake_timeout: u64,
    /// Seconds without a byte in either direction after which a connection (or an
    /// --http-proxy keep-alive connection or CONNECT tunnel) is closed (0: never). Clients
    /// ping about once a minute, so 600 closes only dead sessions.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub idle_timeout: u64,
    /// Seconds an unused redirect route listener stays open.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub route_timeout: u64,
    /// Connections relayed at once; more are refused.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_connections: usize,
    /// Bytes of events waiting for the outputs (e.g. 16M, 1G); beyond it events are dropped,
    /// counted and reported in a `dropped` event. Forwarding never waits for the outputs.
    #[arg(long, value_name = "BYTES", default_value = "16M", value_parser = parse_bytes)]
    pub backlog: usize,
    /// Extract display pictures, emoticons and files sent over P2P into DIR as they
    /// complete, each verified against its MSNObject (as `msntap extract` does).
    #[arg(long, value_name = "DIR")]
    pub extract: Option<PathBuf>,
    /// Serve the live web view on ADDR (e.g. 127.0.0.1:8863): sessions, ladders and events
    /// as they happen. Anything but loopback requires the random token printed at start.
    #[arg(long, value_name = "ADDR:PORT")]
    pub web: Option<std::net::SocketAddr>,
    /// Bytes of events the web view keeps (the oldest go first) and may have waiting; a
    /// browser tab that falls behind costs view events (counted), never forwarding.
    #[arg(long, value_name = "BYTES", default_value = "256M", value_parser = parse_bytes)]
    pub web_memory: usize,
    #[command(flatten)]
    pub out: OutputArgs,
}

fn parse_map(s: &str) -> Result<msntap::proxy::http::HostMap, String> {
    msntap::proxy::http::HostMap::parse(s)
}

/// A backlog size: a byte count (`64M`, `1G`, ...) of at least 64 KiB.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let n = super::args::parse_size(s)?;
    if n < 64 << 10 {
        return Err(format!("{s:?}: give at least 64K"));
    }
    Ok(n)
}

pub fn run(a: &ProxyArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    let secs = Duration::from_secs;
    let cfg = Config {
        listen: a.listen,
        upstream: a.upstream.clone(),
        advertise: a.advertise.clone(),
        transparent: a.transparent,
        pcap: a.pcap.clone(),
        connect_timeout: secs(a.connect_timeout.max(1)),
        handshake_timeout: secs(a.handshake_timeout),
        idle_timeout: secs(a.idle_timeout),
        route_timeout: secs(a.route_timeout.max(1)),
        max_connections: a.max_connections.max(1),
        backlog: a.backlog,
        http_proxy: a.http_proxy,
        http_maps: a.maps.clone(),
        ..Config::default()
    };
    let mut ocfg = a.out.config()?;
    ocfg.challenge_keys = tables.challenge_keys.clone();
    let mut out = LiveOutput::new(&ocfg, &tables)?;
    if let Some(dir) = &a.extract {
        let sink = ExtractSink::new(dir, Limits::default())
            .with_context(|| format!("creating {}", dir.display()))?
            .on_object(|e| super::say(format!("extracted {}", e.object.line(e.path.as_deref()))));
        out.add_sink(Box::new(sink));
    }
    let web = match a.web {
        Some(addr) => {
            let hub = msntap::web::Hub::new(
                msntap::web::StoreLimits {
                    bytes: a.web_memory,
                    ..Default::default()
                },
                tables.clone(),
                vec![format!("proxy on {}", a.listen)], // the bound address once known
                true,
                !ocfg.no_redact,
            );
            let server = msntap::web::start(hub.clone(), addr)?;
            let feed = hub.feed((a.web_memory / 4).max(1 << 20));
            out.add_sink(Box::new(msntap::web::WebSink::new(
                feed,
                &tables,
                ocfg.passwords.clone(),
            )));
            Some((server, hub))
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let upstream = match (&a.upstream, a.transparent) {
        (Some(u), _) => u.clone(),
        (None, true) => "the original destinations".to_string(),
        (None, false) => String::new(),
    };
    let res = rt.block_on(async move {
        // Installed before the startup line, so a signal right after it is not lost.
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("installing SIGINT")?;
        let (p, mut events) = Proxy::bind(cfg, tables).await?;
        let addr = p.local_addr();
        let msnp = !upstream.is_empty();
        let http = p.http_addr();
        for l in msnp.then_some(addr).into_iter().chain(http) {
            if !l.ip().is_loopback() {
                eprintln!(
                    "msntap: WARNING: listening on {l}, NOT a loopback address: other machines can \
                     connect, relay through this proxy and have their sessions logged"
                );
            }
        }
        if msnp {
            eprintln!("msntap: proxying {addr} -> {upstream}; Ctrl-C or SIGTERM stops");
        }
        if let Some(h) = http {
            eprintln!("msntap: HTTP proxy on {h} (point the client's HTTP proxy setting here); Ctrl-C or SIGTERM stops");
        }
        if let Some((server, hub)) = &web {
            hub.store().title = match http {
                Some(h) if !msnp => format!("HTTP proxy on {h}"),
                Some(h) => format!("proxy on {addr} -> {upstream}, HTTP proxy on {h}"),
                None => format!("proxy on {addr} -> {upstream}"),
            };
            eprintln!("msntap: live view at {}", server.url);
        }
        let abandon = events.abandon_handle();
        // Events are written on their own thread: an output never sits inside forwarding.
        let writer = std::thread::Builder::new()
            .name("msntap-events".into())
            .spawn(move || {
                out.run(&mut events);
                out
            })
            .context("starting the event thread")?;
        let stats = p
            .run(async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            })
            .await;
        // The outputs get what is queued; a second signal gives that up (counted).
        let mut joined = tokio::task::spawn_blocking(move || writer.join());
        let out = tokio::select! {
            r = &mut joined => r,
            _ = async {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            } => {
                eprintln!("msntap: second signal: the events still queued are dropped");
                abandon.abandon();
                joined.await
            }
        };
        let out = match out {
            Ok(Ok(o)) => o,
            _ => anyhow::bail!("the event thread failed"),
        };
        Ok::<_, anyhow::Error>((stats, out))
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    let (stats, out) = res?;
    let mut tail = String::new();
    if stats.backlog.dropped_events > 0 {
        tail.push_str(&format!(
            "; {} events dropped ({} bytes) because the outputs fell behind",
            stats.backlog.dropped_events, stats.backlog.dropped_bytes
        ));
    }
    if out.stdout_dropped() > 0 {
        tail.push_str(&format!(
            "; {} events not shown in the log (standard output was not read in time)",
            out.stdout_dropped()
        ));
    }
    eprintln!(
        "msntap: {} proxied connections, {} redirect routes ({} expired); {}{tail}",
        stats.connections,
        stats.routes,
        stats.routes_expired,
        out.summary.line()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert!(parse_bytes("1K").is_err());
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("").is_err());
        assert_eq!(parse_bytes("256k"), Ok(256 << 10));
    }
}
