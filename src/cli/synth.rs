//! `msntap synth`: turns a session log into a capture through msntap::capture::synth,
//! reading the log twice (once to index its connections, once to lay them out), so memory
//! stays flat in the log's size. No log parsing or packet building lives here.

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use msntap::capture::synth::{SynthOptions, Synthesizer};
use msntap::capture::writer::Format;
use msntap::logfile::{self, Item, Reader};
use msntap::protocol::tables::Tables;

pub const EXAMPLES: &str = "\
Examples:
  msntap synth captures/synth/msnp2_md5.log -o md5.pcap
  msntap synth captures/synth/msnp11_chat.log -o chat.pcapng --pcapng --segment 64
  msntap synth captures/logs/msnp8.log -o lossy.pcap --segment 50 --drop 3 --reorder
  msntap read md5.pcap
";

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Session log (`C:`/`S:` transcript, markdown with fenced transcripts, or `>>>`/`<<<`
    /// log), also gzip-compressed. It is read twice, so it must be a file, not `-`.
    #[arg(value_name = "LOG")]
    pub log: PathBuf,
    /// Output capture file (created readable by its owner only: it holds the log's
    /// secrets as they are).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Largest TCP payload per segment.
    #[arg(long, default_value_t = 1460, value_name = "N", value_parser = positive)]
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
    #[arg(long, value_name = "N", value_parser = positive)]
    pub drop: Option<usize>,
    /// Seed of the pseudo-random choices.
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// In `>>>`/`<<<` logs, read `>>>` as server-to-client.
    #[arg(long)]
    pub flip: bool,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a number: {e}")),
    }
}

fn open(a: &SynthArgs) -> Result<BufReader<Box<dyn std::io::Read>>> {
    if a.log.as_os_str() == "-" {
        anyhow::bail!("synth reads its log twice: give a file, not `-`");
    }
    if a.log.is_dir() {
        anyhow::bail!("{}: is a directory, not a session log", a.log.display());
    }
    // A gzip-compressed log (`session.log.gz`) is read as the log inside.
    let (_, f) = msntap::capture::open_decompressed(&a.log)
        .with_context(|| format!("opening {}", a.log.display()))?;
    Ok(BufReader::with_capacity(64 << 10, f))
}

pub fn run(a: &SynthArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    let name = a.log.display().to_string();
    let index =
        logfile::index(open(a)?, &tables, a.flip).with_context(|| format!("reading {name}"))?;
    if index.is_empty() {
        anyhow::bail!("{name}: no C:/S: or >>>/<<< lines found");
    }
    let opts = SynthOptions {
        segment: a.segment,
        format: if a.pcapng {
            Format::PcapNg
        } else {
            Format::Pcap
        },
        reorder: a.reorder,
        duplicate: a.duplicate,
        overlap: a.overlap,
        drop_every: a.drop,
        seed: a.seed,
        ..SynthOptions::default()
    };
    let inputs = super::args::input_ids(std::slice::from_ref(&a.log));
    let f = super::create(&a.output, true, &inputs)?;
    let out = format!("writing {}", a.output.display());
    let mut synth =
        Synthesizer::new(std::io::BufWriter::new(f), opts, index).context(out.clone())?;
    let mut reader = Reader::new(open(a)?, &tables, a.flip, None);
    while let Some(it) = reader
        .next_item()
        .with_context(|| format!("reading {name}"))?
    {
        match it {
            Item::Chunk { conn, chunk } => synth.chunk(conn, &chunk).context(out.clone())?,
            Item::Note { line, message, .. } => {
                super::say(format_args!("{name}:{line}: {message}"))
            }
            Item::End { .. } => {}
        }
    }
    let s = synth.finish().context(out.clone())?;
    std::io::stdout().flush().ok();
    super::say(format_args!(
        "wrote {}: {} connections, {} packets, {} data bytes, {} segments dropped",
        a.output.display(),
        s.connections,
        s.packets,
        s.data_bytes,
        s.dropped
    ));
    Ok(ExitCode::SUCCESS)
}
