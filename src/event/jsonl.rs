//! JSON Lines sink: one event per line, schema documented in docs/events.md.

use std::io::{BufWriter, Write};

use super::{Event, Sink};

pub struct JsonlSink<W: Write> {
    out: BufWriter<W>,
    scratch: Vec<u8>,
}

impl<W: Write> JsonlSink<W> {
    pub fn new(w: W) -> Self {
        JsonlSink {
            out: BufWriter::with_capacity(256 * 1024, w),
            scratch: Vec::with_capacity(4096),
        }
    }
}

impl<W: Write> Sink for JsonlSink<W> {
    fn event(&mut self, ev: &Event) -> std::io::Result<()> {
        self.scratch.clear();
        serde_json::to_writer(&mut self.scratch, ev)?;
        self.scratch.push(b'\n');
        self.out.write_all(&self.scratch)
    }
    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
