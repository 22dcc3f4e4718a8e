//! Options shared by several subcommands (inputs, session-log reading, output and
//! filters) and their parsers; turned into the library's configurations here.

use std::collections::HashSet;
use std::path::PathBuf;

use clap::Args;

use msntap::event::filter::Filter;
use msntap::output::{ColorChoice, OutputConfig};
use msntap::{Dir, Service};

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

pub fn parse_service(s: &str) -> Result<Service, String> {
    Service::parse(s).ok_or_else(|| format!("unknown service {s:?}: expected DS, NS or SB"))
}

pub fn parse_dir(s: &str) -> Result<Dir, String> {
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
