//! The msntap command line: the clap definitions, one module per subcommand, and the
//! wiring of inputs, outputs and exit codes. The library below does all the decoding;
//! anyhow and process exit codes live only here.

mod annotate;
mod args;
mod decode;
mod dissectors;
mod extract;
mod ladder;
mod proxy;
mod read;
mod report;
mod synth;
mod transcript;
mod view;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use msntap::protocol::tables::Tables;

#[derive(Parser, Debug)]
#[command(
    name = "msntap",
    version,
    about = "See everything an MSN Messenger client and server say (MSNP2-MSNP21)",
    long_about = "msntap decodes MSNP, the MSN Messenger / Windows Live Messenger protocol, into \
structured events: from session logs (decode), from pcap/pcapng captures (read), or live as a \
man-in-the-middle proxy between a client and its server (proxy). Events are printed as a \
colored >>> / <<< log, or written as JSON Lines with --json."
)]
pub struct Cli {
    /// Add or override dissector entries from the *.toml files of DIR (see dissectors/README.md).
    #[arg(long, global = true, value_name = "DIR")]
    pub dissectors: Option<PathBuf>,

    /// Diagnostics on stderr: error, warn, info, debug or trace (also RUST_LOG).
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Decode a plain-text session log: `C:`/`S:` transcripts (as in the protocol docs, also
    /// inside markdown code fences) or `>>>`/`<<<` logs.
    Decode(decode::DecodeArgs),
    /// Print the merged dissector table: commands with their forms, error codes, capabilities.
    Dissectors(dissectors::DissectorArgs),
    /// Relay a client to its server and decode the session live; XFR and RNG redirects are
    /// rewritten so notification and switchboard connections pass through msntap too.
    Proxy(proxy::ProxyArgs),
    /// Discovery report: commands per version and service, unknown commands and forms,
    /// unfamiliar payload vocabulary, error codes, payload guesses and desyncs.
    Report(report::ReportArgs),
    /// Switchboard conversations: who joined and left, messages with formatting, typing,
    /// nudges, invitations.
    Transcript(transcript::TranscriptArgs),
    /// Extract display pictures, emoticons and files carried over P2P into a directory, and
    /// verify each against its MSNObject's SHA1D.
    Extract(extract::ExtractArgs),
    /// Decode pcap/pcapng captures: TCP reassembly, MSNP found on any port.
    Read(read::ReadArgs),
    /// Turn a session log into a pcap/pcapng capture (one TCP connection per log connection).
    Synth(synth::SynthArgs),
    /// Copy a capture into pcapng with a comment on each packet naming the MSNP commands it
    /// completes and what is still pending (Wireshark: frame.comment).
    Annotate(annotate::AnnotateArgs),
    /// Write one client's chain (DS -> NS -> SB ...) as a ladder diagram: SVG, or Mermaid
    /// sequenceDiagram text.
    Ladder(ladder::LadderArgs),
    /// Serve a web view of captures, logs or JSON Lines: sessions, ladder diagrams, a
    /// filterable event list and decoded details, on 127.0.0.1.
    View(view::ViewArgs),
}

/// The binary's entry point: parse, set up diagnostics, run, map errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("msntap: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load_tables(cli: &Cli) -> Result<Arc<Tables>> {
    let t = match &cli.dissectors {
        Some(d) => Tables::with_overrides(d)
            .with_context(|| format!("loading dissectors from {}", d.display()))?,
        None => Tables::builtin().context("loading the built-in dissector tables")?,
    };
    Ok(Arc::new(t))
}

fn run(cli: Cli) -> Result<ExitCode> {
    let tables = load_tables(&cli)?;
    match &cli.command {
        Command::Decode(a) => decode::run(a, tables),
        Command::Dissectors(a) => dissectors::run(a, &tables),
        Command::Proxy(a) => proxy::run(a, tables),
        Command::Read(a) => read::read(a, tables),
        Command::Synth(a) => synth::synth(a, tables),
        Command::Report(a) => report::run(a, tables),
        Command::Transcript(a) => transcript::run(a, tables),
        Command::Extract(a) => extract::run(a, tables),
        Command::Annotate(a) => annotate::run(a, tables),
        Command::Ladder(a) => ladder::run(a, tables),
        Command::View(a) => view::run(a, tables),
    }
}

/// Reports input problems after the output was written; exit status 1 if there were any.
pub(crate) fn finish_inputs(problems: &[String]) -> ExitCode {
    for p in problems {
        eprintln!("msntap: {p}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Writes `text` to stdout (`-`) or a file; a file that may hold secrets is owner-only.
#[allow(dead_code)]
pub(crate) fn write_out(dest: &str, text: &str, secrets: bool) -> Result<()> {
    if dest == "-" {
        std::io::stdout().lock().write_all(text.as_bytes())?;
    } else {
        let mut f = msntap::output::create_private(std::path::Path::new(dest), secrets)
            .with_context(|| format!("creating {dest}"))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("writing {dest}"))?;
    }
    Ok(())
}

pub(crate) fn read_input(path: &std::path::Path) -> Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[allow(dead_code)]
/// Feeds every event of every input (captures, logs, JSON Lines) to `f`. An input that
/// cannot be read to its end does not stop the others: its problem is returned (one line
/// each), and everything decoded before it has already gone to `f`.
pub(crate) fn for_each_input_event(
    a: &args::InputArgs,
    tables: &Arc<Tables>,
    f: &mut dyn FnMut(&mut msntap::Event<'_>) -> std::io::Result<()>,
) -> Vec<String> {
    let mut problems = Vec::new();
    // Connection ids stay distinct across inputs, whatever happens inside one.
    let mut conn_base = 0u64;
    for path in &a.inputs {
        let base = conn_base;
        let mut max = base;
        let mut g = |ev: &mut msntap::Event<'_>| {
            ev.conn += base;
            max = max.max(ev.conn);
            f(ev)
        };
        let r: Result<()> = (|| {
            match msntap::input::sniff(path)? {
                msntap::input::InputKind::JsonLines => msntap::input::read_jsonl(path, &mut g)?,
                msntap::input::InputKind::SessionLog => {
                    let text = read_input(path)?;
                    let name = path.display().to_string();
                    msntap::input::decode_log(&text, &name, tables, a.log.options(), 0, &mut g)?;
                }
                msntap::input::InputKind::Pcap | msntap::input::InputKind::Pcapng => {
                    let opts = msntap::capture::ReadOptions {
                        flows: msntap::capture::FlowOptions::with(&a.port, 20_000),
                        first_conn: 1,
                    };
                    msntap::capture::read_path(path, tables.clone(), &opts, &mut g)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            problems.push(format!("{e:#}"));
        }
        conn_base = max;
    }
    problems
}
