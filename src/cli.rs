//! Command-line interface: clap definitions turned into validated configurations.

use std::collections::HashSet;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use msntap::event::filter::Filter;
use msntap::output::{ColorChoice, OutputConfig};
use msntap::{Dir, Service};

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
    Decode(DecodeArgs),
    /// Print the merged dissector table: commands with their forms, error codes, capabilities.
    Dissectors(DissectorArgs),
    /// Relay a client to its server and decode the session live; XFR and RNG redirects are
    /// rewritten so notification and switchboard connections pass through msntap too.
    Proxy(ProxyArgs),
    /// Discovery report: commands per version and service, unknown commands and forms,
    /// unfamiliar payload vocabulary, error codes, payload guesses and desyncs.
    Report(ReportArgs),
    /// Switchboard conversations: who joined and left, messages with formatting, typing,
    /// nudges, invitations.
    Transcript(TranscriptArgs),
    /// Extract display pictures, emoticons and files carried over P2P into a directory, and
    /// verify each against its MSNObject's SHA1D.
    Extract(ExtractArgs),
    /// Decode pcap/pcapng captures: TCP reassembly, MSNP found on any port.
    Read(ReadArgs),
    /// Turn a session log into a pcap/pcapng capture (one TCP connection per log connection).
    Synth(SynthArgs),
    /// Copy a capture into pcapng with a comment on each packet naming the MSNP commands it
    /// completes and what is still pending (Wireshark: frame.comment).
    Annotate(AnnotateArgs),
}

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

/// Inputs of the analysis commands: captures, session logs, or JSON Lines written earlier.
#[derive(Args, Debug)]
pub struct InputArgs {
    /// Input files: pcap/pcapng captures, session logs, or JSON Lines from --json.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Captures: also treat these server ports as MSNP (comma-separated; 1863 always is).
    #[arg(long, value_delimiter = ',', value_name = "PORT")]
    pub port: Vec<u16>,
    #[command(flatten)]
    pub log: LogArgs,
}

/// How session logs are read.
#[derive(Args, Debug, Clone, Copy)]
pub struct LogArgs {
    /// Session logs: assume this MSNP version (e.g. 8 or MSNP8) until a VER exchange says otherwise.
    #[arg(long = "msnp", value_name = "N", value_parser = parse_version)]
    pub version: Option<u8>,
    /// Session logs: assume this service (DS, NS or SB) for connections that do not reveal it.
    #[arg(long = "assume-service", value_name = "SERVICE", value_parser = parse_service)]
    pub assume_service: Option<Service>,
    /// In `>>>`/`<<<` logs, read `>>>` as server-to-client (logs written by a server).
    #[arg(long)]
    pub flip: bool,
}

impl LogArgs {
    pub fn options(&self) -> msntap::input::LogOptions {
        msntap::input::LogOptions {
            hint: msntap::SessionHint {
                service: self.assume_service,
                version: self.version,
            },
            flip: self.flip,
        }
    }
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Write the report as JSON to FILE ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Write a dissector stub (dissectors/ format) for each unknown command into DIR.
    #[arg(long, value_name = "DIR")]
    pub stubs: Option<PathBuf>,
    /// Keep secrets in the example lines instead of <redacted> (a --json file is then
    /// created readable by its owner only).
    #[arg(long)]
    pub no_redact: bool,
}

#[derive(Args, Debug)]
pub struct TranscriptArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Write the conversations as JSON to FILE ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Show invitation cookies instead of <redacted>.
    #[arg(long)]
    pub no_redact: bool,
}

#[derive(Args, Debug)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Directory to write the objects into (created if missing; files are never overwritten).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
    /// Also write one JSON report per object to FILE ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Largest object to reassemble, in bytes (larger announced sizes are refused).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_object_size: u64,
}

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
    #[arg(long, default_value = "256M", value_name = "BYTES", value_parser = parse_size)]
    pub max_buffer: usize,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

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

#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// Session log files ("-" for standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Args, Debug)]
pub struct DissectorArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show only these commands (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "CMD")]
    pub only: Vec<String>,
}

/// Output and filter options shared by every decoding command.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Write events as JSON Lines to FILE ("-" for standard output, which then replaces the log).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Color the log: auto (only on a terminal, honouring NO_COLOR), always or never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Print whole payloads under each command instead of a one-line summary.
    #[arg(long)]
    pub full: bool,
    /// No human log on standard output (with --json FILE: only the file is written).
    #[arg(short, long)]
    pub quiet: bool,
    /// Show secrets (cookies, password hashes, tickets, MSPAuth) instead of <redacted>.
    #[arg(long)]
    pub no_redact: bool,
    /// Hide these commands, e.g. --hide PNG,QNG to drop keep-alives.
    #[arg(long, value_delimiter = ',', value_name = "CMD")]
    pub hide: Vec<String>,
    /// Show only these commands (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "CMD")]
    pub only: Vec<String>,
    /// Show only one service: DS, NS or SB.
    #[arg(long, value_parser = parse_service, value_name = "SERVICE")]
    pub service: Option<Service>,
    /// Show only one direction: c2s or s2c.
    #[arg(long, value_parser = parse_dir, value_name = "DIR")]
    pub dir: Option<Dir>,
    /// Show only the connections of this user handle, and lines that name it.
    #[arg(long, value_name = "HANDLE")]
    pub user: Option<String>,
    /// Check MD5 logins (MSNP2-7) against this password (repeatable).
    #[arg(long, value_name = "PASSWORD")]
    pub password: Vec<String>,
    /// Check MD5 logins against every line of FILE.
    #[arg(long, value_name = "FILE")]
    pub wordlist: Option<PathBuf>,
}

fn parse_service(s: &str) -> Result<Service, String> {
    Service::parse(s).ok_or_else(|| format!("unknown service {s:?}: expected DS, NS or SB"))
}

fn parse_dir(s: &str) -> Result<Dir, String> {
    match s.to_ascii_lowercase().as_str() {
        "c2s" | ">>>" => Ok(Dir::C2s),
        "s2c" | "<<<" => Ok(Dir::S2c),
        _ => Err(format!("unknown direction {s:?}: expected c2s or s2c")),
    }
}

/// A byte count: digits with an optional K, M or G (powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 10),
        Some((i, 'm' | 'M')) => (&t[..i], 20),
        Some((i, 'g' | 'G')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (e.g. 268435456, 256M, 1G)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

pub fn parse_version(s: &str) -> Result<u8, String> {
    let n = s.trim_start_matches("MSNP").trim_start_matches("msnp");
    match n.parse::<u8>() {
        Ok(v) if (2..=21).contains(&v) => Ok(v),
        _ => Err(format!("unknown MSNP version {s:?}: expected 2 to 21")),
    }
}

impl OutputArgs {
    pub fn config(&self) -> anyhow::Result<OutputConfig> {
        let up = |v: &Vec<String>| -> HashSet<String> {
            v.iter()
                .map(|s| s.trim().to_ascii_uppercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let filter = Filter {
            only: up(&self.only),
            hide: up(&self.hide),
            service: self.service,
            dir: self.dir,
            user: self.user.as_ref().map(|u| u.to_ascii_lowercase()),
            ..Filter::default()
        };
        let mut passwords = self.password.clone();
        if let Some(w) = &self.wordlist {
            let text = std::fs::read(w)
                .map_err(|e| anyhow::anyhow!("reading word list {}: {e}", w.display()))?;
            passwords.extend(
                String::from_utf8_lossy(&text)
                    .lines()
                    .map(|l| l.trim_end_matches('\r').to_string())
                    .filter(|l| !l.is_empty()),
            );
        }
        Ok(OutputConfig {
            json: self.json.clone(),
            color: self.color,
            full: self.full,
            quiet: self.quiet,
            no_redact: self.no_redact,
            filter,
            passwords,
            challenge_keys: Vec::new(),
        })
    }
}
