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
    /// The run's input files: the JSON Lines file must not be one of them.
    pub inputs: Vec<FileId>,
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

/// A file's identity (device and inode on Unix, the canonical path elsewhere): two paths
/// name the same file when their ids are equal, whatever links lead to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileId(FileKey);

#[cfg(unix)]
type FileKey = (u64, u64);
#[cfg(not(unix))]
type FileKey = std::path::PathBuf;

impl FileId {
    /// The id of the file at `path` (links followed); None when there is no such file.
    pub fn of_path(path: &Path) -> Option<FileId> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path)
                .ok()
                .map(|m| FileId((m.dev(), m.ino())))
        }
        #[cfg(not(unix))]
        {
            path.canonicalize().ok().map(FileId)
        }
    }

    /// The id of an open file.
    pub fn of_file(f: &File) -> Option<FileId> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            f.metadata().ok().map(|m| FileId((m.dev(), m.ino())))
        }
        #[cfg(not(unix))]
        {
            let _ = f;
            None
        }
    }

    /// What standard input is, when it is a file (`msntap read - < x.pcap`).
    pub fn of_stdin() -> Option<FileId> {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            let fd = io::stdin().as_fd().try_clone_to_owned().ok()?;
            let f = File::from(fd);
            f.metadata().ok().filter(|m| m.is_file())?;
            FileId::of_file(&f)
        }
        #[cfg(not(unix))]
        {
            None
        }
    }
}

/// Why an output file was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{path}: is also an input of this run; refusing to overwrite it")]
    IsInput { path: String },
    #[error("{path}: {err}")]
    Io { path: String, err: io::Error },
}

/// An output file, and what was done to its mode (to be told to the user).
#[derive(Debug)]
pub struct Created {
    pub file: File,
    pub note: Option<String>,
    /// The permission bits of the file it replaced (None: a new file, or not Unix).
    pub previous_mode: Option<u32>,
}

/// Creates (or truncates) the output file `path`: the one way msntap opens a file to
/// write. With `private` (the output can hold secrets) a new file is created readable by
/// its owner only, and an existing file readable by others is made owner-only before
/// anything is written (`note` says so). A file that is one of `inputs` is refused before
/// it is truncated. Devices and pipes (`/dev/null`, `/dev/stdout`) are written as they
/// are.
pub fn create_output(
    path: &Path,
    private: bool,
    inputs: &[FileId],
) -> Result<Created, CreateError> {
    let name = || path.display().to_string();
    let io_err = |err: io::Error| CreateError::Io { path: name(), err };
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    // A new file is created as asked; an existing one is opened without truncation, since
    // the checks below must come first.
    let (file, existed) = match o.open(path) {
        Ok(f) => (f, false),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err)?,
            true,
        ),
        Err(e) => return Err(io_err(e)),
    };
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Ok(Created {
            file,
            note: None,
            previous_mode: None,
        });
    }
    if FileId::of_file(&file).is_some_and(|id| inputs.contains(&id)) {
        return Err(CreateError::IsInput { path: name() });
    }
    let mut note = None;
    #[cfg(unix)]
    let previous_mode = {
        use std::os::unix::fs::PermissionsExt;
        existed.then_some(meta.permissions().mode() & 0o7777)
    };
    #[cfg(not(unix))]
    let previous_mode = {
        let _ = existed;
        None
    };
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(|err| CreateError::Io {
                    path: name(),
                    err: io::Error::new(
                        err.kind(),
                        format!(
                            "readable by others (mode {mode:o}) and its mode cannot be changed ({err}); not written"
                        ),
                    ),
                })?;
            note = Some(format!(
                "{}: was readable by others (mode {mode:o}); made owner-only ({:o}) before writing, since it can hold secrets",
                name(),
                mode & 0o700
            ));
        }
    }
    file.set_len(0).map_err(io_err)?;
    Ok(Created {
        file,
        note,
        previous_mode,
    })
}

/// [`create_output`] without inputs to check; a mode fix is logged as a warning.
pub fn create_private(path: &Path, private: bool) -> io::Result<File> {
    match create_output(path, private, &[]) {
        Ok(c) => {
            if let Some(n) = c.note {
                tracing::warn!("{n}");
            }
            Ok(c.file)
        }
        Err(CreateError::Io { err, .. }) => Err(err),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
    }
}

/// The event pipeline of a run.
pub struct Output {
    sinks: Vec<Box<dyn Sink + Send>>,
    filter: Filter,
    redact: bool,
    auth: AuthAnnotator,
    pub summary: Summary,
    /// Things done while setting up that the user should hear of (a file mode fixed).
    pub notes: Vec<String>,
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
    pub fn new(cfg: &OutputConfig) -> Result<Output, CreateError> {
        let mut notes = Vec::new();
        let mut sinks: Vec<Box<dyn Sink + Send>> = Vec::new();
        let json_stdout = cfg.json.as_deref() == Some("-");
        if let Some(j) = &cfg.json {
            if json_stdout {
                sinks.push(Box::new(JsonlSink::new(io::stdout())));
            } else {
                let c = create_output(Path::new(j), cfg.no_redact, &cfg.inputs)?;
                notes.extend(c.note);
                sinks.push(Box::new(JsonlSink::new(c.file)));
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
            notes,
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
            notes: Vec::new(),
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
