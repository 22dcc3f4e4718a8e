//! Where decoded events go: filters, redaction, the pretty log and JSON Lines, and the
//! run summary. Shared by every subcommand so they all behave the same way.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::Path;

use crate::analysis::auth::AuthAnnotator;
use crate::event::filter::Filter;
use crate::event::jsonl::JsonlSink;
use crate::event::pretty::PrettySink;
use crate::event::{Event, EventKind, Sink};
use crate::protocol::tables::{ChallengeKey, Tables};
use crate::secret::Redact;

/// When to color the human log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// Options that decide what a run writes.
#[derive(Debug, Clone, Default)]
pub struct OutputConfig {
    /// JSON Lines destination: None, `-` for stdout, or a file path.
    pub json: Option<String>,
    pub color: ColorChoice,
    pub full: bool,
    pub quiet: bool,
    pub no_redact: bool,
    pub filter: Filter,
    /// Candidate passwords for MD5 logins (--password, --wordlist).
    pub passwords: Vec<String>,
    /// Known CHL/QRY keys; empty means the built-in table's.
    pub challenge_keys: Vec<ChallengeKey>,
}

/// A set of connection ids: a bitmap for the small sequential ids every input hands out,
/// a tree for the rest (ids read back from JSON Lines can be anything).
#[derive(Debug, Default, Clone)]
pub struct ConnSet {
    bits: Vec<u64>,
    others: BTreeSet<u64>,
    len: usize,
    max: Option<u64>,
}

/// Ids below this live in the bitmap (at most 2 MiB of it).
const DENSE: u64 = 1 << 24;

impl ConnSet {
    pub fn insert(&mut self, id: u64) -> bool {
        let new = if id < DENSE {
            let (w, b) = ((id / 64) as usize, id % 64);
            if w >= self.bits.len() {
                self.bits.resize(w + 1, 0);
            }
            let was = self.bits[w] & (1 << b) != 0;
            self.bits[w] |= 1 << b;
            !was
        } else {
            self.others.insert(id)
        };
        if new {
            self.len += 1;
            self.max = Some(self.max.map_or(id, |m| m.max(id)));
        }
        new
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The largest id seen.
    pub fn max(&self) -> Option<u64> {
        self.max
    }
}

/// Counts for the end-of-run summary.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub connections: ConnSet,
    pub commands: u64,
    pub unknown: u64,
    pub unmatched_forms: u64,
    pub payload_guesses: u64,
    pub desyncs: u64,
    pub gaps: u64,
    pub errors: u64,
}

impl Summary {
    pub fn count(&mut self, ev: &Event<'_>) {
        self.connections.insert(ev.conn);
        match &ev.kind {
            EventKind::Command(c) => {
                self.commands += 1;
                if !c.known {
                    self.unknown += 1;
                }
                if c.unmatched_form {
                    self.unmatched_forms += 1;
                }
                if c.payload.as_ref().is_some_and(|p| p.guess) {
                    self.payload_guesses += 1;
                }
            }
            EventKind::Desync(_) => self.desyncs += 1,
            EventKind::Gap(_) => self.gaps += 1,
            EventKind::Error(_) => self.errors += 1,
            _ => {}
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} connections, {} commands, {} unknown, {} unmatched forms, {} payload guesses, {} gaps, {} desyncs, {} errors",
            self.connections.len(),
            self.commands,
            self.unknown,
            self.unmatched_forms,
            self.payload_guesses,
            self.gaps,
            self.desyncs,
            self.errors
        )
    }
}

/// Creates a file that only its owner can read when it may hold secrets.
pub fn create_private(path: &Path, private: bool) -> io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let _ = private;
    o.open(path)
}

/// The event pipeline of a run.
pub struct Output {
    sinks: Vec<Box<dyn Sink + Send>>,
    filter: Filter,
    redact: bool,
    auth: AuthAnnotator,
    pub summary: Summary,
}

fn annotator(cfg: &OutputConfig) -> AuthAnnotator {
    let mut t = Tables::empty();
    t.challenge_keys = if cfg.challenge_keys.is_empty() {
        Tables::builtin()
            .map(|b| b.challenge_keys)
            .unwrap_or_default()
    } else {
        cfg.challenge_keys.clone()
    };
    AuthAnnotator::new(&t, cfg.passwords.clone())
}

fn color_enabled(choice: ColorChoice, stream_is_tty: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            stream_is_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

impl Output {
    pub fn new(cfg: &OutputConfig) -> io::Result<Output> {
        let mut sinks: Vec<Box<dyn Sink + Send>> = Vec::new();
        let json_stdout = cfg.json.as_deref() == Some("-");
        if let Some(j) = &cfg.json {
            if json_stdout {
                sinks.push(Box::new(JsonlSink::new(io::stdout())));
            } else {
                let f = create_private(Path::new(j), cfg.no_redact)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot create {j}: {e}")))?;
                sinks.push(Box::new(JsonlSink::new(f)));
            }
        }
        if !json_stdout && !cfg.quiet {
            let color = color_enabled(cfg.color, io::stdout().is_terminal());
            sinks.push(Box::new(PrettySink::new(io::stdout(), color, cfg.full)));
        }
        Ok(Output {
            sinks,
            filter: cfg.filter.clone(),
            redact: !cfg.no_redact,
            auth: annotator(cfg),
            summary: Summary::default(),
        })
    }

    /// An output that writes into a buffer as JSON Lines (tests, benchmarks).
    pub fn to_writer<W: Write + Send + 'static>(w: W, cfg: &OutputConfig) -> Output {
        Output {
            sinks: vec![Box::new(JsonlSink::new(w))],
            filter: cfg.filter.clone(),
            redact: !cfg.no_redact,
            auth: annotator(cfg),
            summary: Summary::default(),
        }
    }

    pub fn emit(&mut self, ev: &mut Event<'_>) -> io::Result<()> {
        self.summary.count(ev);
        self.auth.annotate(ev);
        if !self.filter.pass(ev) {
            return Ok(());
        }
        if self.redact {
            ev.redact();
        }
        for s in &mut self.sinks {
            s.event(ev)?;
        }
        Ok(())
    }

    pub fn finish(&mut self) -> io::Result<()> {
        for s in &mut self.sinks {
            s.finish()?;
        }
        Ok(())
    }
}
