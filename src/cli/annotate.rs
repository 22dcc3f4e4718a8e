//! The `annotate` subcommand: wires command-line options to `msntap::annotate` and
//! creates the output file (owner-only when secrets are kept). No capture parsing or
//! comment wording lives here.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use msntap::annotate::{annotate, AnnotateOptions};
use msntap::capture::{FlowOptions, ReadOptions};
use msntap::output::create_private;
use msntap::protocol::tables::Tables;

use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AnnotateArgs {
    /// Capture to annotate (pcap or pcapng).
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Output pcapng file.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Also treat these server ports as MSNP (comma-separated; 1863 always is).
    #[arg(long, value_delimiter = ',', value_name = "PORT")]
    pub port: Vec<u16>,
    /// Most TCP connections tracked at once (the least recently active are closed first).
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub max_flows: usize,
    /// Keep secrets (tickets, cookies, hashes) in the comments; the output file is then
    /// created readable by its owner only.
    #[arg(long)]
    pub no_redact: bool,
}


pub fn run(a: &AnnotateArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    // Creating the output would truncate the input before it is read.
    if let (Ok(i), Ok(o)) = (a.input.canonicalize(), a.output.canonicalize()) {
        if i == o {
            anyhow::bail!(
                "{}: the output must not be the input file",
                a.output.display()
            );
        }
    }
    // Fail on a missing or unreadable input before creating anything.
    std::fs::File::open(&a.input).with_context(|| format!("opening {}", a.input.display()))?;
    let opts = AnnotateOptions {
        read: ReadOptions {
            flows: FlowOptions::with(&a.port, a.max_flows),
            first_conn: 1,
        },
        no_redact: a.no_redact,
    };
    let f = create_private(&a.output, a.no_redact)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let mut w = std::io::BufWriter::new(f);
    let r = annotate(&a.input, &mut w, tables, &opts);
    w.flush()
        .with_context(|| format!("writing {}", a.output.display()))?;
    match r {
        Ok(s) => {
            eprintln!(
                "msntap: wrote {}: {} packets, {} with comments; {} MSNP connections; {} events at the end of the capture belong to no packet",
                a.output.display(),
                s.read.packets,
                s.commented,
                s.read.flows.msnp_connections,
                s.unattributed
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // Every packet read before the problem has been copied.
            eprintln!("msntap: {e}");
            eprintln!(
                "msntap: {} holds the packets read before the problem",
                a.output.display()
            );
            Ok(ExitCode::from(1))
        }
    }
}
