//! The `msntap proxy` subcommand: runtime, Ctrl-C and the event writer thread around
//! `msntap::proxy`. No relaying logic lives here.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use clap::Args;
use std::path::PathBuf;

use msntap::analysis::extract::{ExtractSink, Limits};
use msntap::event::Sink;
use msntap::output::Output;
use msntap::protocol::tables::Tables;
use msntap::proxy::{Config, Proxy, ProxyError};

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// The real server, HOST:PORT (e.g. messenger.example.org:1863).
    #[arg(
        long,
        value_name = "HOST:PORT",
        required_unless_present = "transparent"
    )]
    pub upstream: Option<String>,
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
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Seconds to wait for the upstream server to accept a connection.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub connect_timeout: u64,
    /// Extract display pictures, emoticons and files sent over P2P into DIR as they
    /// complete, each verified against its MSNObject (as `msntap extract` does).
    #[arg(long, value_name = "DIR")]
    pub extract: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
}

pub fn run(a: &ProxyArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    let cfg = Config {
        listen: a.listen,
        upstream: a.upstream.clone(),
        advertise: a.advertise.clone(),
        transparent: a.transparent,
        pcap: a.pcap.clone(),
        connect_timeout: Duration::from_secs(a.connect_timeout.max(1)),
        ..Config::default()
    };
    let mut ocfg = a.out.config()?;
    ocfg.challenge_keys = tables.challenge_keys.clone();
    let mut out = Output::new(&ocfg)?;
    let mut extract = match &a.extract {
        Some(dir) => Some(
            ExtractSink::new(dir, Limits::default())
                .with_context(|| format!("creating {}", dir.display()))?
                .on_object(|e| eprintln!("msntap: extracted {}", e.object.line(e.path.as_deref()))),
        ),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<msntap::proxy::EventBatch>(64);
    // Events are written on their own thread so a slow terminal never sits inside the relay.
    let writer = std::thread::spawn(move || -> std::io::Result<Output> {
        while let Some(mut batch) = rx.blocking_recv() {
            // The extractor sees every event, before filters and redaction.
            if let Some(x) = extract.as_mut() {
                for ev in &batch {
                    x.event(ev)?;
                }
            }
            out.emit_all(&mut batch)?;
        }
        if let Some(x) = extract.as_mut() {
            x.finish()?;
            for n in x.notes() {
                eprintln!("msntap: {n}");
            }
        }
        out.finish()?;
        Ok(out)
    });
    let upstream = a.upstream.as_deref().unwrap_or("the original destinations");
    let res = rt.block_on(async move {
        let p = Proxy::bind(cfg, tables, tx).await?;
        let addr = p.local_addr();
        if !addr.ip().is_loopback() {
            eprintln!(
                "msntap: WARNING: listening on {addr}, NOT a loopback address: other machines can \
                 connect, relay through this proxy and have their sessions logged"
            );
        }
        eprintln!("msntap: proxying {addr} -> {upstream}; Ctrl-C stops");
        let stats = p
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
        Ok::<_, ProxyError>(stats)
    });
    // Dropping the runtime drops every task and with it the last event sender.
    rt.shutdown_timeout(Duration::from_secs(1));
    let out = match writer.join() {
        Ok(r) => r.context("writing events")?,
        Err(_) => anyhow::bail!("the event writer thread failed"),
    };
    let stats = res?;
    eprintln!(
        "msntap: {} proxied connections, {} redirect routes; {}",
        stats.connections,
        stats.routes,
        out.summary.line()
    );
    Ok(ExitCode::SUCCESS)
}
