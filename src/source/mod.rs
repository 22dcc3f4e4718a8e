//! The one way in: captures (pcap/pcapng), session logs and JSON Lines, from files or
//! standard input, recognised from their first bytes and turned into one event stream
//! with one connection numbering across inputs. It only dispatches and numbers: capture
//! reading is `capture`'s, log parsing `logfile`'s, decoding `protocol`'s. It never writes
//! anything but what the event callback does.

mod jsonl;
mod log;

use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::capture::{self, CaptureError, FlowOptions, ReadOptions, ReadStats};
use crate::event::Event;
use crate::protocol::{SessionHint, Tables};

/// Where events go. An error from it is an output problem: reading stops at once.
pub type EventFn<'f> = dyn FnMut(&mut Event<'_>) -> io::Result<()> + 'f;

/// What an input holds, as told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pcap,
    Pcapng,
    JsonLines,
    SessionLog,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pcap => "pcap capture",
            Kind::Pcapng => "pcapng capture",
            Kind::JsonLines => "JSON Lines",
            Kind::SessionLog => "session log",
        }
    }
    pub fn is_capture(self) -> bool {
        matches!(self, Kind::Pcap | Kind::Pcapng)
    }
}

/// One input: a file, or standard input (`-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    Path(PathBuf),
}

impl Input {
    /// `-` is standard input; anything else a path.
    pub fn from_arg(p: &Path) -> Input {
        if p.as_os_str() == "-" {
            Input::Stdin
        } else {
            Input::Path(p.to_path_buf())
        }
    }
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "standard input".to_string(),
            Input::Path(p) => p.display().to_string(),
        }
    }
    /// The file's size when known (for progress).
    pub fn size(&self) -> Option<u64> {
        match self {
            Input::Stdin => None,
            Input::Path(p) => std::fs::metadata(p)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// How session logs are read.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOptions {
    /// Service and version assumed until the log reveals them.
    pub hint: SessionHint,
    /// Read `>>>` as server-to-client (logs written by a server).
    pub flip: bool,
}

/// Options of every input kind.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub flows: FlowOptions,
    pub log: LogOptions,
}

/// What one input went through (also when it could not be read to its end).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub kind: Option<Kind>,
    /// Bytes read from the input.
    pub bytes: u64,
    /// Captures: packets, connections and what was skipped.
    pub capture: Option<ReadStats>,
    /// Session logs and JSON Lines: lines read.
    pub lines: u64,
    /// Events handed to the callback.
    pub events: u64,
    /// Connection numbers this input used.
    pub connections: u64,
}

/// Why an input could not be read to its end. Everything decoded before the problem has
/// already gone to the callback. One line each, naming the input and where.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    // io errors are shown in the message, not chained: a chain would print them twice.
    #[error("{name}: {err}")]
    Io { name: String, err: io::Error },
    #[error("{name}: is a directory, not a capture, session log or JSON Lines file")]
    Directory { name: String },
    #[error("{name}: empty input")]
    Empty { name: String },
    #[error("{name}: not a capture, session log or JSON Lines file ({what})")]
    Unknown { name: String, what: String },
    #[error("{0}")]
    Capture(String),
    #[error("{name}: no packets: the capture ends after its file header")]
    NoPackets { name: String },
    #[error("{name}: no MSNP lines: {why}")]
    NotALog { name: String, why: String },
    #[error("{name}:{line}: {message}")]
    Line {
        name: String,
        line: u64,
        message: String,
    },
    #[error("{name}: a second `-`: standard input can be read only once")]
    StdinTwice { name: String },
    /// The event callback failed (a closed pipe, a full disk): not the input's fault.
    #[error("writing events")]
    Output(#[source] io::Error),
}

impl SourceError {
    /// An output problem stops the whole run; any other stops only its input.
    pub fn is_output(&self) -> bool {
        matches!(self, SourceError::Output(_))
    }
}

/// The result of reading one input.
#[derive(Debug)]
pub struct Report {
    pub input: Input,
    pub stats: Stats,
    pub problem: Option<SourceError>,
}

/// How many bytes are looked at to tell the kind.
const HEAD: usize = capture::HEAD;

/// Tells the kind from the first bytes; `Err` says what the bytes look like instead.
pub fn kind_of(head: &[u8]) -> Result<Kind, String> {
    match head.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => return Ok(Kind::Pcapng),
        Some([0xd4, 0xc3, 0xb2, 0xa1])
        | Some([0xa1, 0xb2, 0xc3, 0xd4])
        | Some([0x4d, 0x3c, 0xb2, 0xa1])
        | Some([0xa1, 0xb2, 0x3c, 0x4d]) => return Ok(Kind::Pcap),
        _ => {}
    }
    if capture::is_gzip(head) {
        // Inside a decompressed input (Source takes one level off) or from `sniff`.
        return Err("gzip-compressed data; msntap takes off one level of gzip".into());
    }
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    if text.trim_ascii_start().starts_with(b"{") {
        return Ok(Kind::JsonLines);
    }
    // Text (UTF-8 or a legacy 8-bit encoding) has no NULs and few control bytes.
    let control = text
        .iter()
        .filter(|&&c| c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b))
        .count();
    if text.contains(&0) || control * 20 > text.len() {
        let hex: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(format!("binary data starting {}", hex.join(" ")));
    }
    Ok(Kind::SessionLog)
}

/// Looks at the first bytes of a file.
pub fn sniff(path: &Path) -> Result<Kind, SourceError> {
    let name = path.display().to_string();
    let mut f = open(path, &name)?;
    let mut head = Vec::new();
    (&mut f)
        .take(HEAD as u64)
        .read_to_end(&mut head)
        .map_err(|err| SourceError::Io {
            name: name.clone(),
            err,
        })?;
    if head.is_empty() {
        return Err(SourceError::Empty { name });
    }
    kind_of(&head).map_err(|what| SourceError::Unknown { name, what })
}

fn open(path: &Path, name: &str) -> Result<File, SourceError> {
    // Opening a directory succeeds on Unix; reading it fails with a vaguer message.
    if path.is_dir() {
        return Err(SourceError::Directory {
            name: name.to_string(),
        });
    }
    File::open(path).map_err(|err| SourceError::Io {
        name: name.to_string(),
        err,
    })
}

/// Counts the bytes read through it and reports them now and then.
struct Counted<'p, R> {
    inner: R,
    pos: &'p Cell<u64>,
    last: u64,
    progress: &'p mut dyn FnMut(u64),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let pos = self.pos.get() + n as u64;
        self.pos.set(pos);
        if pos - self.last >= 1 << 20 {
            self.last = pos;
            (self.progress)(pos);
        }
        Ok(n)
    }
}

/// Turns inputs into events, numbering connections across all of them.
pub struct Source {
    tables: Arc<Tables>,
    opts: Options,
    /// The number the next connection gets.
    next_conn: u64,
    stdin_used: bool,
}

impl Source {
    pub fn new(tables: Arc<Tables>, opts: Options) -> Source {
        Source {
            tables,
            opts,
            next_conn: 1,
            stdin_used: false,
        }
    }

    /// The number the next connection would get.
    pub fn next_conn(&self) -> u64 {
        self.next_conn
    }

    /// Reads every input in turn. An input problem is reported in its [`Report`] and the
    /// next input is read; an output problem (the callback failed) stops everything and
    /// is the `Err`. `progress` gets the input's index and the bytes read so far.
    pub fn read_all(
        &mut self,
        inputs: &[Input],
        f: &mut EventFn<'_>,
        progress: &mut dyn FnMut(usize, u64),
    ) -> Result<Vec<Report>, SourceError> {
        let mut out = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let (stats, r) = self.read(input, f, &mut |pos| progress(i, pos));
            match r {
                Err(e) if e.is_output() => return Err(e),
                r => out.push(Report {
                    input: input.clone(),
                    stats,
                    problem: r.err(),
                }),
            }
        }
        Ok(out)
    }

    /// Reads one file (any kind) without progress reports: a shorthand for tests and tools.
    pub fn read_path(&mut self, path: &Path, f: &mut EventFn<'_>) -> Result<Stats, SourceError> {
        let (stats, r) = self.read(&Input::Path(path.to_path_buf()), f, &mut |_| {});
        r.map(|()| stats)
    }

    /// Reads one input to its end (or its first problem), handing each event to `f`.
    pub fn read(
        &mut self,
        input: &Input,
        f: &mut EventFn<'_>,
        progress: &mut dyn FnMut(u64),
    ) -> (Stats, Result<(), SourceError>) {
        let name = input.name();
        let stats = Stats::default();
        let reader: Box<dyn Read> = match input {
            Input::Stdin => {
                if self.stdin_used {
                    return (stats, Err(SourceError::StdinTwice { name }));
                }
                self.stdin_used = true;
                Box::new(io::stdin().lock())
            }
            Input::Path(p) => match open(p, &name) {
                Ok(f) => Box::new(f),
                Err(e) => return (stats, Err(e)),
            },
        };
        let markdown = match input {
            Input::Path(p) => p
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("md") || e.eq_ignore_ascii_case("markdown"))
                .then_some(true),
            Input::Stdin => None,
        };
        self.read_reader(name, reader, markdown, f, progress)
    }

    /// Reads an already opened input named `name` (any kind, sniffed from its first
    /// bytes) to its end or its first problem. `markdown`: Some(true) when the name says
    /// the log is Markdown, None to sniff it. This is what [`Source::read`] does after
    /// opening; the fuzz targets feed it memory.
    pub fn read_reader(
        &mut self,
        name: String,
        reader: Box<dyn Read + '_>,
        markdown: Option<bool>,
        f: &mut EventFn<'_>,
        progress: &mut dyn FnMut(u64),
    ) -> (Stats, Result<(), SourceError>) {
        let mut stats = Stats::default();
        let pos = Cell::new(0u64);
        let mut counted = Counted {
            inner: reader,
            pos: &pos,
            last: 0,
            progress,
        };
        let mut head = Vec::with_capacity(HEAD);
        if let Err(err) = (&mut counted).take(HEAD as u64).read_to_end(&mut head) {
            return (stats, Err(SourceError::Io { name, err }));
        }
        if head.is_empty() {
            return (stats, Err(SourceError::Empty { name }));
        }
        // A gzip-compressed input (`capture.pcap.gz`, as archives and rotated tcpdump runs
        // keep them) is read through a streaming decompressor and sniffed again inside;
        // progress and `bytes` still count the file's own bytes. One level only: gzip
        // inside gzip is refused below.
        let (head, mut rest, name) = match capture::decompressed(head, counted) {
            Ok((false, head, rest)) => (head, rest, name),
            // Offsets in later messages count decompressed bytes: the name says so.
            Ok((true, head, rest)) => (head, rest, format!("{name} (gunzipped)")),
            Err(err) => {
                let name = format!("{name} (gunzipped)");
                return (stats, Err(SourceError::Io { name, err }));
            }
        };
        if head.is_empty() {
            return (stats, Err(SourceError::Empty { name }));
        }
        let kind = match kind_of(&head) {
            Ok(k) => k,
            Err(what) => return (stats, Err(SourceError::Unknown { name, what })),
        };
        stats.kind = Some(kind);
        tracing::info!("{name}: reading as {}", kind.as_str());
        let first = self.next_conn;
        let r = match kind {
            Kind::Pcap | Kind::Pcapng => self.capture(&name, head, &mut rest, f, &mut stats),
            Kind::SessionLog => {
                let input = io::BufReader::with_capacity(64 << 10, Cursor::new(head).chain(rest));
                let r = log::read(
                    &name,
                    input,
                    &self.tables,
                    self.opts.log,
                    markdown,
                    first,
                    f,
                    &mut stats,
                );
                self.next_conn = first + stats.connections;
                r
            }
            Kind::JsonLines => {
                let input = io::BufReader::with_capacity(64 << 10, Cursor::new(head).chain(rest));
                let r = jsonl::read(&name, input, first, f, &mut stats);
                self.next_conn = first + stats.connections;
                r
            }
        };
        stats.bytes = pos.get();
        (stats, r)
    }

    fn capture(
        &mut self,
        name: &str,
        head: Vec<u8>,
        rest: &mut dyn Read,
        f: &mut EventFn<'_>,
        stats: &mut Stats,
    ) -> Result<(), SourceError> {
        let opts = ReadOptions {
            flows: self.opts.flows.clone(),
            first_conn: self.next_conn,
        };
        // The capture layer sees its own error type for output failures; the original
        // error (a closed pipe, say) is kept here so the caller can tell it apart.
        let mut out_err: Option<io::Error> = None;
        let mut events = 0u64;
        let mut sink = |ev: &mut Event<'_>| -> io::Result<()> {
            events += 1;
            f(ev).map_err(|e| {
                let kind = e.kind();
                out_err = Some(e);
                io::Error::new(kind, "output")
            })
        };
        // Still a `dyn Read` for the reading loop (its code, and cost, stay the same).
        let start: Vec<u8> = head.iter().take(64).copied().collect();
        let (mut rest, kept) = capture::KeepErr::new(rest);
        let rest: &mut dyn Read = &mut rest;
        let (cs, r) = capture::read_from_counted(
            name,
            Cursor::new(head).chain(rest),
            self.tables.clone(),
            &opts,
            &mut sink,
            &mut |_| {},
        );
        let r = r.map_err(|e| match e {
            // Standard input cannot be read again: its first bytes say what the header is.
            capture::CaptureError::Format {
                path,
                offset: 0,
                message,
            } if message == capture::NOT_A_CAPTURE => capture::CaptureError::Format {
                path,
                offset: 0,
                message: capture::unrecognized_header(&start),
            },
            e => kept.explain(e),
        });
        stats.events = events;
        stats.connections = cs.next_conn.saturating_sub(self.next_conn);
        self.next_conn = cs.next_conn.max(self.next_conn);
        let packets = cs.packets;
        stats.capture = Some(cs);
        if let Some(e) = out_err {
            return Err(SourceError::Output(e));
        }
        match r {
            Ok(()) if packets == 0 => Err(SourceError::NoPackets {
                name: name.to_string(),
            }),
            Ok(()) => Ok(()),
            Err(CaptureError::Output(e)) => Err(SourceError::Output(e)),
            Err(CaptureError::Io { path, source }) => Err(SourceError::Io {
                name: path,
                err: source,
            }),
            Err(e) => Err(SourceError::Capture(e.to_string())),
        }
    }
}
