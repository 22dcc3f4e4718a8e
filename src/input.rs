//! Input dispatch for the commands that take "captures, session logs, or JSON Lines written
//! earlier": it recognises the file kind and turns it into events through the one decoder.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use crate::event::{Event, EventKind, Message};
use crate::logfile;
use crate::protocol::{Session, SessionHint, Tables};

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Pcap,
    Pcapng,
    JsonLines,
    SessionLog,
}

/// Options of the log decoder (version/service assumptions, `>>>` direction).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOptions {
    pub hint: SessionHint,
    pub flip: bool,
}

/// Errors of input handling.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    // The io::Error is shown in the message, not chained as a source (it would print twice).
    #[error("{path}: {err}")]
    Io { path: String, err: io::Error },
    #[error("{path}:{line}: not an event: {message}")]
    Json {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Other(String),
}

/// Looks at the first bytes of `path`.
pub fn sniff(path: &Path) -> Result<InputKind, InputError> {
    let mut f = std::fs::File::open(path).map_err(|e| InputError::Io {
        path: path.display().to_string(),
        err: e,
    })?;
    let mut head = [0u8; 64];
    let n = read_up_to(&mut f, &mut head).map_err(|e| InputError::Io {
        path: path.display().to_string(),
        err: e,
    })?;
    Ok(kind_of(&head[..n]))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

pub fn kind_of(head: &[u8]) -> InputKind {
    match head.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => InputKind::Pcapng,
        Some([0xd4, 0xc3, 0xb2, 0xa1])
        | Some([0xa1, 0xb2, 0xc3, 0xd4])
        | Some([0x4d, 0x3c, 0xb2, 0xa1])
        | Some([0xa1, 0xb2, 0x3c, 0x4d]) => InputKind::Pcap,
        _ => {
            if head.trim_ascii_start().starts_with(b"{") {
                InputKind::JsonLines
            } else {
                InputKind::SessionLog
            }
        }
    }
}

/// Decodes a session log into events (connection ids start after `first_conn`).
/// Returns the number of connections used.
pub fn decode_log(
    text: &str,
    name: &str,
    tables: &Arc<Tables>,
    opts: LogOptions,
    first_conn: u64,
    f: &mut dyn FnMut(&mut Event<'_>) -> io::Result<()>,
) -> io::Result<u64> {
    let conns = logfile::parse(text, tables, opts.flip);
    let mut id = first_conn;
    for c in &conns {
        id += 1;
        let mut s = Session::new(tables.clone(), id, opts.hint);
        let mut err: Option<io::Error> = None;
        let mut notes = c.notes.iter().peekable();
        let mut out = |e: &mut Event<'_>| {
            if err.is_none() {
                if let Err(x) = f(e) {
                    err = Some(x);
                }
            }
        };
        for ch in &c.chunks {
            while let Some((ln, msg)) = notes.next_if(|(ln, _)| *ln <= ch.line_no) {
                let mut ev = s.event(
                    ch.ts,
                    Some(ch.dir),
                    EventKind::Note(Message {
                        message: format!("{name}:{ln}: {msg}").into(),
                    }),
                );
                out(&mut ev);
            }
            s.feed(ch.dir, &ch.bytes, ch.ts, &mut out);
        }
        let end = c.chunks.last().map(|c| c.ts).unwrap_or_default();
        s.finish(end, &mut out);
        if let Some(e) = err {
            return Err(e);
        }
    }
    Ok(conns.len() as u64)
}

/// Reads JSON Lines written by `--json` back into events.
pub fn read_jsonl(
    path: &Path,
    f: &mut dyn FnMut(&mut Event<'_>) -> io::Result<()>,
) -> Result<(), InputError> {
    let file = std::fs::File::open(path).map_err(|e| InputError::Io {
        path: path.display().to_string(),
        err: e,
    })?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| InputError::Io {
            path: path.display().to_string(),
            err: e,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let mut ev = Event::from_json(&line).map_err(|e| InputError::Json {
            path: path.display().to_string(),
            line: i + 1,
            message: e.to_string(),
        })?;
        f(&mut ev).map_err(|e| InputError::Io {
            path: path.display().to_string(),
            err: e,
        })?;
    }
    Ok(())
}
