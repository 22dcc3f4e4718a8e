//! The `msntap proxy` subcommand: runtime, Ctrl-C and the event writer thread around
//! `msntap::proxy`. No relaying logic lives here.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::ProxyArgs;
use msntap::analysis::extract::{ExtractSink, Limits};
use msntap::event::Sink;
use msntap::output::Output;
use msntap::protocol::tables::Tables;
use msntap::proxy::{Config, Proxy, ProxyError};

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
