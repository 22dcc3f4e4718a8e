//! Option groups shared by the subcommands (inputs, session-log reading, filters, login
//! checks, the event log) and their parsers, turned into the library's configurations
//! here. A subcommand flattens the groups it needs; nothing here reads or writes files
//! except the word list of --wordlist.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use msntap::capture::FlowOptions;
use msntap::event::filter::Filter;
use msntap::output::{FileId, OutputConfig};
use msntap::source::{self, Input};
use msntap::{Dir, Service, Ts};

/// Inputs of every command that consumes events: captures, session logs, or JSON Lines
/// written earlier, in any mix.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Input")]
pub struct InputArgs {
    /// Captures (pcap/pcapng), session logs or JSON Lines from --json, told apart by their
    /// first bytes, each also gzip-compressed (`capture.pcap.gz`); `-` reads standard input.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Captures: also treat these server ports as MSNP (comma-separated; 1863 always is).
    #[arg(long, value_delimiter = ',', value_name = "PORT")]
    pub port: Vec<u16>,
    /// Captures: most TCP connections tracked at once (the least recently active are
    /// closed first); at least 16.
    #[arg(long, default_value_t = 20_000, value_name = "N", value_parser = parse_max_flows)]
    pub max_flows: usize,
    /// Captures: memory all connections together may hold while waiting for missing or
    /// reordered bytes (suffix K, M or G for KiB, MiB, GiB); past it the connection holding
    /// most stops waiting first.
    #[arg(long, default_value = "256M", value_name = "BYTES", value_parser = parse_size)]
    pub max_buffer: usize,
    /// No progress bar (one is shown on a terminal for inputs of 16 MiB or more).
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

impl InputArgs {
    pub fn inputs(&self) -> Vec<Input> {
        self.inputs.iter().map(|p| Input::from_arg(p)).collect()
    }

    pub fn options(&self) -> source::Options {
        source::Options {
            flows: FlowOptions {
                max_buffer: self.max_buffer,
                ..FlowOptions::with(&self.port, self.max_flows)
            },
            log: self.log.options(),
        }
    }

    /// The input files' identities, so that no output of the run overwrites one.
    pub fn file_ids(&self) -> Vec<FileId> {
        input_ids(&self.inputs)
    }
}

/// The identities of the files among `paths` (`-`: standard input when it is a file).
pub fn input_ids(paths: &[PathBuf]) -> Vec<FileId> {
    paths
        .iter()
        .filter_map(|p| {
            if p.as_os_str() == "-" {
                FileId::of_stdin()
            } else {
                FileId::of_path(p)
            }
        })
        .collect()
}

/// How session logs are read.
#[derive(Args, Debug, Clone, Copy)]
#[command(next_help_heading = "Session logs")]
pub struct LogArgs {
    /// Assume this MSNP version (e.g. 8 or MSNP8) until a VER exchange says otherwise.
    #[arg(long = "msnp", value_name = "N", value_parser = parse_version)]
    pub version: Option<u8>,
    /// Assume this service (DS, NS or SB) for connections that do not reveal it.
    #[arg(long = "assume-service", value_name = "SERVICE", value_parser = parse_service)]
    pub assume_service: Option<Service>,
    /// In `>>>`/`<<<` logs, read `>>>` as server-to-client (logs written by a server).
    #[arg(long)]
    pub flip: bool,
}

impl LogArgs {
    pub fn options(&self) -> source::LogOptions {
        source::LogOptions {
            hint: msntap::SessionHint {
                service: self.assume_service,
                version: self.version,
            },
            flip: self.flip,
        }
    }
}

/// Which events a command looks at: the same filters everywhere.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Filters")]
pub struct FilterArgs {
    /// Only these commands (comma-separated), e.g. --only MSG,JOI.
    #[arg(long, value_delimiter = ',', value_name = "CMD")]
    pub only: Vec<String>,
    /// Never these commands, e.g. --hide PNG,QNG to drop keep-alives.
    #[arg(long, value_delimiter = ',', value_name = "CMD")]
    pub hide: Vec<String>,
    /// Only one service: DS, NS or SB.
    #[arg(long, value_parser = parse_service, value_name = "SERVICE")]
    pub service: Option<Service>,
    /// Only one direction: c2s or s2c.
    #[arg(long, value_parser = parse_dir, value_name = "DIR")]
    pub dir: Option<Dir>,
    /// Only the connections this user logged in on, and lines that name the user.
    #[arg(long, value_name = "HANDLE")]
    pub user: Option<String>,
    /// Only these connections (comma-separated): the `#N` of the log, `conn` in JSON Lines,
    /// e.g. --conn 3,4.
    #[arg(long, value_delimiter = ',', value_name = "N")]
    pub conn: Vec<u64>,
    /// Only events at or after TIME, UTC, as the log prints it (`2005-06-01 12:00:00`, also
    /// with a `T`, fractions of a second and a final `Z`).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub since: Option<Ts>,
    /// Only events before TIME (same form as --since).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub until: Option<Ts>,
}

impl FilterArgs {
    /// The library filter (stateful: call `pass` on every event, in order).
    pub fn filter(&self) -> Filter {
        let up = |v: &Vec<String>| -> HashSet<String> {
            v.iter()
                .map(|s| s.trim().to_ascii_uppercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Filter {
            only: up(&self.only),
            hide: up(&self.hide),
            service: self.service,
            dir: self.dir,
            user: self.user.as_ref().map(|u| u.to_ascii_lowercase()),
            conns: self.conn.iter().copied().collect(),
            since: self.since,
            until: self.until,
            ..Filter::default()
        }
    }
}

/// Candidate passwords for MD5 logins (MSNP2-7).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Login checks")]
pub struct AuthArgs {
    /// Check MD5 logins against this password (repeatable).
    #[arg(long, value_name = "PASSWORD")]
    pub password: Vec<String>,
    /// Check MD5 logins against every line of FILE.
    #[arg(long, value_name = "FILE")]
    pub wordlist: Option<PathBuf>,
}

impl AuthArgs {
    pub fn passwords(&self) -> anyhow::Result<Vec<String>> {
        let mut passwords = self.password.clone();
        if let Some(w) = &self.wordlist {
            let text =
                std::fs::read(w).with_context(|| format!("reading word list {}", w.display()))?;
            passwords.extend(
                String::from_utf8_lossy(&text)
                    .lines()
                    .map(|l| l.trim_end_matches('\r').to_string())
                    .filter(|l| !l.is_empty()),
            );
        }
        Ok(passwords)
    }
}

/// Where the events of a decoding command go: the human log and JSON Lines.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Write events as JSON Lines to FILE ("-": standard output, instead of the log). With
    /// a file, the log is no longer printed unless --log is given.
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Print the log on standard output even when --json writes a file.
    #[arg(long)]
    pub log: bool,
    /// Print whole payloads under each command instead of a one-line summary.
    #[arg(long)]
    pub full: bool,
    /// No log on standard output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show secrets (cookies, password hashes, tickets, MSPAuth) instead of <redacted>;
    /// a --json file is then created readable by its owner only.
    #[arg(long)]
    pub no_redact: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
}

impl OutputArgs {
    pub fn config(&self) -> anyhow::Result<OutputConfig> {
        if self.log && self.json.as_deref() == Some("-") {
            anyhow::bail!(
                "--log and --json - would both write standard output: give --json a file to have both"
            );
        }
        let json_file = self.json.as_deref().is_some_and(|j| j != "-");
        Ok(OutputConfig {
            json: self.json.clone(),
            color: super::color_choice(),
            full: self.full,
            // A JSON file is what was asked for: the log would bury the progress bar.
            quiet: self.quiet || (json_file && !self.log),
            no_redact: self.no_redact,
            filter: self.filter.filter(),
            passwords: self.auth.passwords()?,
            challenge_keys: Vec::new(),
            inputs: Vec::new(),
        })
    }
}

pub fn parse_service(s: &str) -> Result<Service, String> {
    Service::parse(s).ok_or_else(|| format!("unknown service {s:?}: expected DS, NS or SB"))
}

/// A UTC time as the log prints it (`2005-06-01 12:00:00.5Z`) or as RFC 3339 has it
/// (`2005-06-01T12:00:00Z`); the zone, when given, must be UTC (`Z` or `+00:00`).
pub fn parse_time(s: &str) -> Result<Ts, String> {
    let t = s.trim();
    let mut text = t.replacen(' ', "T", 1);
    if !(text.ends_with('Z') || text.ends_with("+00:00")) {
        text.push('Z');
    }
    Ts::parse_rfc3339(&text)
        .ok_or_else(|| format!("bad time {s:?}: expected UTC as YYYY-MM-DD HH:MM:SS[.ffffff][Z]"))
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

/// The capture reader tracks at least 16 connections: a smaller number is refused
/// rather than silently raised.
pub fn parse_max_flows(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 16 => Ok(n),
        Ok(n) => Err(format!(
            "{n} is too few: the capture reader tracks at least 16 connections"
        )),
        Err(e) => Err(format!("{s:?} is not a number: {e}")),
    }
}
