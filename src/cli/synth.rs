//! `msntap synth`: turns a session log into a capture through msntap::capture::synth.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use msntap::capture::synth::{synthesize, SynthOptions};
use msntap::capture::writer::Format;
use msntap::protocol::tables::Tables;

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Session log (`C:`/`S:` transcript or `>>>`/`<<<` log).
    #[arg(value_name = "LOG")]
    pub log: PathBuf,
    /// Output capture file.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Largest TCP payload per segment.
    #[arg(long, default_value_t = 1460, value_name = "N")]
    pub segment: usize,
    /// Write pcapng instead of pcap.
    #[arg(long)]
    pub pcapng: bool,
    /// Shuffle the segments of each burst of one direction.
    #[arg(long)]
    pub reorder: bool,
    /// Send some segments twice.
    #[arg(long)]
    pub duplicate: bool,
    /// Add retransmissions that overlap neighbouring segments (same bytes).
    #[arg(long)]
    pub overlap: bool,
    /// Drop every Nth data segment (simulated capture loss; the peer still acknowledges it).
    #[arg(long, value_name = "N")]
    pub drop: Option<usize>,
    /// Seed of the pseudo-random choices.
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// In `>>>`/`<<<` logs, read `>>>` as server-to-client.
    #[arg(long)]
    pub flip: bool,
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
