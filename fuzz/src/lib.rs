//! Helpers shared by the fuzz targets: cutting a fuzz input into the chunks a connection
//! delivers, and the checks every event must pass (JSON written can be read back, the
//! pretty log renders, redaction runs). It must not hide a failure: checks panic.

use std::sync::{Arc, OnceLock};

use msntap::event::pretty::PrettySink;
use msntap::event::{jsonl, Sink};
use msntap::secret::Redact;
use msntap::{Dir, Event, Tables};

/// The built-in tables, loaded once per process.
pub fn tables() -> Arc<Tables> {
    static T: OnceLock<Arc<Tables>> = OnceLock::new();
    T.get_or_init(|| Arc::new(Tables::builtin().expect("built-in tables")))
        .clone()
}

/// What one record of a chunked input asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Feed,
    /// Bytes lost; the length is the record's length byte times 7 (sometimes large).
    Gap(u64),
    FinishDir,
}

/// One record: a direction, an operation and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Rec<'a> {
    pub dir: Dir,
    pub op: Op,
    pub data: &'a [u8],
}

/// Cuts `data` into records `[ctl][len][len bytes]` (the last one may be short). `ctl`
/// bit 0 is the direction (1 = server to client), bits 1-3 the operation (0-5 feed, 6
/// gap, 7 finish the direction), so most records feed bytes.
pub fn records(mut data: &[u8]) -> Vec<Rec<'_>> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let ctl = data[0];
        let len = usize::from(data[1]);
        let rest = &data[2..];
        let n = len.min(rest.len());
        let dir = if ctl & 1 == 1 { Dir::S2c } else { Dir::C2s };
        let op = match (ctl >> 1) & 7 {
            6 => Op::Gap(len as u64 * 7 + u64::from(ctl >> 4) * 65536),
            7 => Op::FinishDir,
            _ => Op::Feed,
        };
        out.push(Rec {
            dir,
            op,
            data: &rest[..n],
        });
        data = &rest[n..];
    }
    out
}

/// The inverse of [`records`] for feed records (seed corpora are written with it).
pub fn encode(recs: &[(Dir, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (dir, bytes) in recs {
        for piece in bytes.chunks(255) {
            out.push(if *dir == Dir::S2c { 1 } else { 0 });
            out.push(piece.len() as u8);
            out.extend_from_slice(piece);
        }
    }
    out
}

/// What every event from the wire must survive: its JSON line reads back as an event,
/// redaction runs and leaves a JSON line that reads back too, and the log line renders.
pub fn check_event(ev: &Event<'_>) {
    let mut line = Vec::new();
    jsonl::render(&mut line, ev);
    let text = std::str::from_utf8(&line).expect("JSON lines are UTF-8");
    if let Err(e) = Event::from_json(text.trim_end()) {
        panic!("JSON line does not read back: {e}: {text}");
    }
    let mut owned = ev.clone().into_owned();
    owned.redact();
    line.clear();
    jsonl::render(&mut line, &owned);
    let text = std::str::from_utf8(&line).expect("JSON lines are UTF-8");
    if let Err(e) = Event::from_json(text.trim_end()) {
        panic!("redacted JSON line does not read back: {e}: {text}");
    }
    let mut pretty = PrettySink::new(std::io::sink(), false, true);
    pretty.event(&owned).expect("writing to a sink");
    let _ = pretty.finish();
}
