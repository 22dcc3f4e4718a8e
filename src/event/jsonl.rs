//! JSON Lines sink: one event per line, rendered by the events' own `Serialize` (the one
//! renderer; docs/events.md documents it), into a buffer written out in whole lines. Live
//! callers flush it on a timer; `finish` writes what is left.

use std::io::Write;

use super::{Event, Sink};

/// Buffered bytes written out once past this size.
const FLUSH_AT: usize = 256 * 1024;

pub struct JsonlSink<W: Write> {
    out: W,
    /// Whole lines not yet written to `out`.
    buf: Vec<u8>,
}

/// Appends one event as a JSON line to `buf`, through the events' `Serialize` and the fast
/// generic backend (src/json: the same bytes as serde_json, without its per-byte escape
/// loop; tests/json_events.rs compares the two on every fixture event).
pub fn render(buf: &mut Vec<u8>, ev: &Event<'_>) {
    // These types cannot fail to serialize (no maps with non-string keys); should one ever,
    // the line still says so rather than vanish.
    if crate::json::to_vec_into(buf, ev).is_err() {
        buf.extend_from_slice(
            b"{\"type\":\"error\",\"message\":\"event could not be serialized\"}",
        );
    }
    buf.push(b'\n');
}

impl<W: Write> JsonlSink<W> {
    pub fn new(w: W) -> Self {
        JsonlSink {
            out: w,
            buf: Vec::with_capacity(FLUSH_AT + 16 * 1024),
        }
    }

    /// Writes the buffered lines out and flushes the writer.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.out.flush()
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn into_inner(mut self) -> std::io::Result<W> {
        self.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Sink for JsonlSink<W> {
    fn event(&mut self, ev: &Event<'_>) -> std::io::Result<()> {
        render(&mut self.buf, ev);
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
    fn finish(&mut self) -> std::io::Result<()> {
        self.flush()
    }
}
