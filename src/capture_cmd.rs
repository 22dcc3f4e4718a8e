//! The `read` and `synth` subcommands: wire command-line options to the capture module,
//! the output pipeline and the progress bar. No capture parsing or decoding lives here.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use msntap::capture::synth::{synthesize, SynthOptions};
use msntap::capture::writer::Format;
use msntap::capture::{read_path_with_progress, FlowOptions, ReadOptions, ReadStats};
use msntap::output::Output;
use msntap::protocol::tables::Tables;

use crate::cli::{ReadArgs, SynthArgs};

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
                    .iter()
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

pub fn synth(a: &SynthArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    let text = std::fs::read(&a.log).with_context(|| format!("reading {}", a.log.display()))?;
    let text = String::from_utf8_lossy(&text);
    let conns = msntap::logfile::parse(&text, &tables, a.flip);
    if conns.is_empty() {
        anyhow::bail!("{}: no C:/S: or >>>/<<< lines found", a.log.display());
    }
    for c in &conns {
        for (line, note) in &c.notes {
            eprintln!("msntap: {}:{line}: {note}", a.log.display());
        }
    }
    let opts = SynthOptions {
        segment: a.segment.max(1),
        format: if a.pcapng {
            Format::PcapNg
        } else {
            Format::Pcap
        },
        reorder: a.reorder,
        duplicate: a.duplicate,
        overlap: a.overlap,
        drop_every: a.drop.filter(|n| *n > 0),
        seed: a.seed,
        ..SynthOptions::default()
    };
    let f = std::fs::File::create(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let s = synthesize(&conns, &opts, std::io::BufWriter::new(f))
        .with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!(
        "msntap: wrote {}: {} connections, {} packets, {} data bytes, {} segments dropped",
        a.output.display(),
        s.connections,
        s.packets,
        s.data_bytes,
        s.dropped
    );
    Ok(ExitCode::SUCCESS)
}
