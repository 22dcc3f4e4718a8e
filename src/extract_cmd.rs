//! `msntap extract`: turns inputs (session logs, JSON Lines events) into events and feeds
//! them to the library's ExtractSink, printing one report line per object. The reassembly
//! and verification live in msntap::analysis::extract; this file must not decode anything.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use msntap::analysis::extract::{Check, ExtractSink, Limits};
use msntap::event::Sink;
use msntap::protocol::tables::Tables;
use msntap::{logfile, Event, EventKind, Session, SessionHint};

use crate::cli::ExtractArgs;

/// What an input file holds, judged from its first bytes.
#[derive(Debug, PartialEq, Eq)]
enum InputKind {
    Capture,
    JsonLines,
    SessionLog,
}

fn kind_of(bytes: &[u8]) -> InputKind {
    const MAGICS: [[u8; 4]; 5] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
        [0x0a, 0x0d, 0x0d, 0x0a],
    ];
    if bytes.len() >= 4 && MAGICS.iter().any(|m| bytes[..4] == m[..]) {
        InputKind::Capture
    } else if bytes.trim_ascii_start().starts_with(b"{") {
        InputKind::JsonLines
    } else {
        InputKind::SessionLog
    }
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .context("reading standard input")?;
        Ok(b)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Reports objects as they are finished.
struct Reporter {
    sink: ExtractSink,
    printed: usize,
    json: Option<Box<dyn Write>>,
    /// The JSON reports go to standard output, so the human lines stay off it.
    json_stdout: bool,
}

impl Reporter {
    fn event(&mut self, ev: &Event) -> Result<()> {
        self.sink.event(ev).context("writing an extracted object")?;
        self.report()
    }

    fn report(&mut self) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        for e in &self.sink.done[self.printed..] {
            let path = e.path.as_deref();
            if let Some(j) = self.json.as_mut() {
                serde_json::to_writer(&mut *j, &e.object.report(path))?;
                writeln!(j)?;
            }
            if !self.json_stdout {
                writeln!(stdout, "{}", e.object.line(path))?;
            }
        }
        self.printed = self.sink.done.len();
        Ok(())
    }
}

pub fn run(a: &ExtractArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    let limits = Limits {
        max_object: a.max_object_size,
        ..Limits::default()
    };
    let sink = ExtractSink::new(&a.output, limits)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let json: Option<Box<dyn Write>> = match a.json.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::stdout())),
        Some(f) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(f).with_context(|| format!("creating {f}"))?,
        ))),
    };
    let mut r = Reporter {
        sink,
        printed: 0,
        json,
        json_stdout: a.json.as_deref() == Some("-"),
    };
    let mut conn_base = 0u64;
    for f in &a.inputs {
        let bytes = read_all(f)?;
        match kind_of(&bytes) {
            InputKind::Capture => bail!(
                "{}: pcap/pcapng input needs the capture reader, which this build does not have yet; \
                 decode the capture to JSON Lines elsewhere or use a session log",
                f.display()
            ),
            InputKind::JsonLines => {
                let text = String::from_utf8_lossy(&bytes);
                let mut max_conn = 0;
                for (n, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Event>(line) {
                        Ok(mut ev) => {
                            max_conn = max_conn.max(ev.conn);
                            ev.conn += conn_base;
                            r.event(&ev)?;
                        }
                        Err(e) => eprintln!("msntap: {}:{}: not an event: {e}", f.display(), n + 1),
                    }
                }
                conn_base += max_conn;
            }
            InputKind::SessionLog => {
                let text = String::from_utf8_lossy(&bytes);
                let conns = logfile::parse(&text, &tables, a.flip);
                if conns.is_empty() {
                    eprintln!("msntap: {}: no C:/S: or >>>/<<< lines found", f.display());
                }
                for c in conns {
                    conn_base += 1;
                    let hint = SessionHint {
                        service: a.assume_service,
                        version: a.version,
                    };
                    let mut s = Session::new(tables.clone(), conn_base, hint);
                    let mut evs = Vec::new();
                    for ch in &c.chunks {
                        s.feed(ch.dir, &ch.bytes, ch.ts, &mut evs);
                        for ev in evs.drain(..) {
                            r.event(&ev)?;
                        }
                    }
                    let end = c.chunks.last().map(|c| c.ts).unwrap_or_default();
                    s.finish(end, &mut evs);
                    evs.push(s.event(
                        end,
                        None,
                        EventKind::Close {
                            by: None,
                            reason: Some("end of log".into()),
                            bytes_c2s: 0,
                            bytes_s2c: 0,
                        },
                    ));
                    for ev in evs.drain(..) {
                        r.event(&ev)?;
                    }
                }
            }
        }
    }
    r.sink.finish().context("writing an extracted object")?;
    r.report()?;
    if let Some(j) = r.json.as_mut() {
        j.flush()?;
    }
    for n in r.sink.notes() {
        eprintln!("msntap: {n}");
    }
    let done = &r.sink.done;
    let count = |f: &dyn Fn(&msntap::analysis::extract::Object) -> bool| {
        done.iter().filter(|e| f(&e.object)).count()
    };
    eprintln!(
        "msntap: {} objects ({} complete, {} truncated, {} duplicates); SHA1D: {} match, {} mismatch, {} no hash known",
        done.len(),
        count(&|o| o.complete),
        count(&|o| !o.complete),
        count(&|o| o.duplicate_of.is_some()),
        count(&|o| o.check == Check::Match),
        count(&|o| matches!(o.check, Check::Mismatch { .. })),
        count(&|o| o.check == Check::NoHash),
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_kinds() {
        assert_eq!(kind_of(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]), InputKind::Capture);
        assert_eq!(kind_of(&[0x0a, 0x0d, 0x0d, 0x0a]), InputKind::Capture);
        assert_eq!(kind_of(b"\n{\"schema\":1}"), InputKind::JsonLines);
        assert_eq!(kind_of(b"C: VER 1 MSNP8\n"), InputKind::SessionLog);
    }
}
