//! `msntap view`: serves the web view of captures, logs or JSON Lines. The server starts
//! first and the inputs are read into it in the background, so the page shows the first
//! sessions while a large capture is still being read. The view lives in `msntap::web`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use msntap::analysis::auth::AuthAnnotator;
use msntap::protocol::tables::Tables;
use msntap::web::{prepare, CookieKey, Hub, StoreLimits};

use super::args::InputArgs;
use super::{read_inputs, say};

pub const EXAMPLES: &str = "\
Examples:
  msntap view captures/msnp11_msnp11-sdk_escargot.pcap
  msntap view captures/logs/msnp8.log captures/logs/msnp11.log --listen 127.0.0.1:9000
  msntap read capture.pcap --json events.jsonl && msntap view events.jsonl
";

#[derive(Args, Debug)]
pub struct ViewArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Where the view listens. Anything but loopback requires the random token printed at start.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8863")]
    pub listen: SocketAddr,
    /// Bytes of events the view keeps, e.g. 512M or 2G (past it the oldest go, counted).
    #[arg(long, value_name = "BYTES", default_value = "512M", value_parser = super::args::parse_size)]
    pub memory: usize,
    /// Show secrets (cookies, password hashes, tickets) instead of <redacted>.
    #[arg(long)]
    pub no_redact: bool,
    /// Check MD5 logins (MSNP2-7) against this password (repeatable).
    #[arg(long, value_name = "PASSWORD")]
    pub password: Vec<String>,
}

/// Events are handed to the hub in batches: one lock per batch, and the page sees them
/// at least this often while a large input is read.
const BATCH: usize = 512;
const BATCH_EVERY: Duration = Duration::from_millis(50);

pub fn run(a: &ViewArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    super::check_inputs(&a.input)?;
    let inputs: Vec<String> = a
        .input
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let title = inputs.join(", ");
    let limits = StoreLimits {
        bytes: a.memory.max(1 << 20),
        ..StoreLimits::default()
    };
    let hub = Hub::new(limits, tables.clone(), inputs, false, !a.no_redact);
    let server = msntap::web::start(hub.clone(), a.listen)?;
    say(format_args!("view of {title} at {}", server.url));
    if !a.listen.ip().is_loopback() {
        say("listening beyond loopback: the URL's token is the only protection");
    }

    let reader = {
        let hub = hub.clone();
        let tables = tables.clone();
        let input = a.input.clone();
        let passwords = a.password.clone();
        let redact = !a.no_redact;
        std::thread::Builder::new()
            .name("msntap-view-read".into())
            .spawn(move || {
                let t0 = Instant::now();
                let key = CookieKey::default();
                let mut auth = AuthAnnotator::new(&tables, passwords);
                let mut batch = Vec::with_capacity(BATCH);
                let mut last = Instant::now();
                let mut n = 0u64;
                let read = read_inputs(&input, &tables, &mut |ev| {
                    auth.annotate(ev);
                    if matches!(ev.kind, msntap::EventKind::Close(_)) {
                        auth.close(ev.conn);
                    }
                    batch.push(prepare(&key, ev, redact));
                    n += 1;
                    if batch.len() >= BATCH || last.elapsed() >= BATCH_EVERY {
                        hub.push(&batch);
                        batch.clear();
                        last = Instant::now();
                    }
                    Ok(())
                });
                hub.push(&batch);
                let problems: Vec<String> = match &read {
                    Ok(inputs) => inputs.problems().map(|p| p.to_string()).collect(),
                    Err(e) => vec![format!("{e:#}")],
                };
                for p in &problems {
                    say(p);
                }
                say(format_args!(
                    "read {n} events in {:.2} s",
                    t0.elapsed().as_secs_f64()
                ));
                hub.finish(problems);
            })
            .context("starting the reader")?
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal handler")?;
    // The view stays up (the reader may still be at work) until Ctrl-C.
    rt.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    drop(reader);
    server.stop();
    let failed = !hub.store().problems.is_empty();
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
