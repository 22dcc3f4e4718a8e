//! JSON Lines sink: one event per line, schema documented in docs/events.md.

use std::io::{BufWriter, Write};

use super::{Event, Sink};

pub struct JsonlSink<W: Write> {
    out: BufWriter<W>,
}

impl<W: Write> JsonlSink<W> {
    pub fn new(w: W) -> Self {
        JsonlSink {
            out: BufWriter::with_capacity(256 * 1024, w),
        }
    }
}

impl<W: Write> Sink for JsonlSink<W> {
    fn event(&mut self, ev: &Event) -> std::io::Result<()> {
        // Straight into the buffer: a scratch Vec would copy every event once more.
        serde_json::to_writer(&mut self.out, ev)?;
        self.out.write_all(b"\n")
    }
    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
