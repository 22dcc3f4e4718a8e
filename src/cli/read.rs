//! `msntap read`: wires command-line options to the capture reader, the output pipeline
//! and the progress bar. No capture parsing or decoding lives here.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use msntap::capture::{read_path_with_progress, FlowOptions, ReadOptions, ReadStats};
use msntap::output::Output;
use msntap::protocol::tables::Tables;

use super::args::OutputArgs;

#[derive(Args, Debug)]
pub struct ReadArgs {
    /// Capture files (pcap or pcapng, any byte order, micro- or nanosecond timestamps).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also treat these server ports as MSNP (comma-separated; 1863 always is).
    #[arg(long, value_delimiter = ',', value_name = "PORT")]
    pub port: Vec<u16>,
    /// Most TCP connections tracked at once (the least recently active are closed first).
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub max_flows: usize,
    /// Memory all connections together may hold while waiting for missing or reordered
    /// bytes (suffix K, M or G for KiB, MiB, GiB); past it the connection holding most
    /// stops waiting first.
    #[arg(long, default_value = "256M", value_name = "BYTES", value_parser = super::args::parse_size)]
    pub max_buffer: usize,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Files smaller than this are read without a progress bar.
const PROGRESS_MIN: u64 = 16 << 20;

pub fn read(a: &ReadArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    let mut cfg = a.out.config()?;
    cfg.challenge_keys = tables.challenge_keys.clone();
    let mut out = Output::new(&cfg)?;
    let mut opts = ReadOptions {
        flows: FlowOptions {
            max_buffer: a.max_buffer,
            ..FlowOptions::with(&a.port, a.max_flows)
        },
        first_conn: 1,
    };
    let mut total = ReadStats::default();
    let mut failed = false;
    for f in &a.files {
        let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        let bar = (!a.no_progress && size >= PROGRESS_MIN && std::io::stderr().is_terminal()).then(
            || {
                let b = indicatif::ProgressBar::new(size);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b.set_message(f.display().to_string());
                b
            },
        );
        let r = read_path_with_progress(
            f,
            tables.clone(),
            &opts,
            &mut |ev| out.emit(ev),
            &mut |pos| {
                if let Some(b) = &bar {
                    b.set_position(pos);
                }
            },
        );
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        match r {
            Ok(s) => {
                opts.first_conn = s.next_conn;
                total.bytes += s.bytes;
                total.packets += s.packets;
                total.flows.msnp_connections += s.flows.msnp_connections;
                total.flows.other_connections += s.flows.other_connections;
            }
            Err(e) => {
                failed = true;
                // Everything decoded before the problem was already written.
                out.finish().ok();
                eprintln!("msntap: {e}");
                opts.first_conn = out
                    .summary
                    .connections
                    .max()
                    .map_or(1, |m| m + 1)
                    .max(opts.first_conn);
            }
        }
    }
    out.finish()?;
    std::io::stdout().flush().ok();
    eprintln!(
        "msntap: {} packets, {} MSNP connections ({} other TCP connections ignored); {}",
        total.packets,
        total.flows.msnp_connections,
        total.flows.other_connections,
        out.summary.line()
    );
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
