//! JSON Lines written by `--json` read back into events (through `Event::from_json`, so
//! secrets are typed again and redaction works), renumbered into the run's connections.
//! A line at a time, each line bounded.

use std::io::BufRead;

use super::{EventFn, SourceError, Stats};
use crate::logfile::read_line_capped;

/// Longest event line accepted (a 1 MiB payload written as base64 and as text, with room).
pub const MAX_EVENT_LINE: usize = 16 << 20;

pub(super) fn read<R: BufRead>(
    name: &str,
    mut input: R,
    first_conn: u64,
    f: &mut EventFn<'_>,
    stats: &mut Stats,
) -> Result<(), SourceError> {
    let line_err = |line: u64, message: String| SourceError::Line {
        name: name.to_string(),
        line,
        message,
    };
    // Connection 0 is the proxy's own (events of no connection) and stays 0; the others
    // move up so they follow the previous inputs' connections.
    let base = first_conn.saturating_sub(1);
    let mut highest = base;
    let mut buf = Vec::new();
    let mut n = 0u64;
    let r = loop {
        let cut = match read_line_capped(&mut input, &mut buf, MAX_EVENT_LINE) {
            Ok(Some(cut)) => cut,
            Ok(None) => break Ok(()),
            Err(e) => break Err(line_err(n + 1, e.to_string())),
        };
        n += 1;
        if cut {
            break Err(line_err(
                n,
                format!(
                    "line longer than {} MiB: not an event",
                    MAX_EVENT_LINE >> 20
                ),
            ));
        }
        let Ok(text) = std::str::from_utf8(&buf) else {
            break Err(line_err(n, "not UTF-8: not an event".to_string()));
        };
        if text.trim().is_empty() {
            continue;
        }
        let mut ev = match crate::Event::from_json(text) {
            Ok(ev) => ev,
            Err(e) => break Err(line_err(n, format!("not an event: {e}"))),
        };
        if ev.conn != 0 {
            ev.conn = ev.conn.saturating_add(base);
            highest = highest.max(ev.conn);
        }
        stats.events += 1;
        if let Err(e) = f(&mut ev) {
            break Err(SourceError::Output(e));
        }
    };
    stats.lines = n;
    stats.connections = highest - base;
    r
}
