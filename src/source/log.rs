//! Session logs into events: the streaming log reader's chunks fed to one decoder session
//! per log connection, as a capture's streams are. No parsing of the log here.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, BufRead};
use std::sync::Arc;

use super::{EventFn, LogOptions, SourceError, Stats};
use crate::event::{Event, EventKind, Message, Ts};
use crate::logfile::{Item, Reader};
use crate::protocol::{Session, Tables};

/// One connection of the log being decoded.
struct Conn {
    session: Session,
    last: Ts,
}

/// What a log first line looks like when it is a program's own output rather than a
/// record of the traffic (the `.client.log` files beside the captures are such).
fn why_not_a_log(first: &[u8]) -> String {
    let t = first.trim_ascii();
    if t.starts_with(b"[") && t.contains(&b']') {
        return "its lines look like a program's own messages (`[user] ...`), not a record of \
                the traffic; msntap reads `C: `/`S: ` transcripts (also inside markdown \
                fences) and `>>>`/`<<<` logs"
            .to_string();
    }
    "msntap reads `C: `/`S: ` transcripts (also inside markdown fences) and `>>>`/`<<<` logs"
        .to_string()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn read<R: BufRead>(
    name: &str,
    mut input: R,
    tables: &Arc<Tables>,
    opts: LogOptions,
    markdown: Option<bool>,
    first_conn: u64,
    f: &mut EventFn<'_>,
    stats: &mut Stats,
) -> Result<(), SourceError> {
    let first_line = input
        .fill_buf()
        .map(|b| {
            let end = memchr::memchr(b'\n', b).unwrap_or(b.len());
            b[..end].to_vec()
        })
        .unwrap_or_default();
    let mut reader = Reader::new(input, tables, opts.flip, markdown);
    let mut open: HashMap<usize, Conn> = HashMap::new();
    // The sessions' callback cannot fail: the first output error is kept and ends the read.
    let out_err: RefCell<Option<io::Error>> = RefCell::new(None);
    let events = Cell::new(0u64);
    let mut emit = |ev: &mut Event<'_>| {
        if out_err.borrow().is_none() {
            events.set(events.get() + 1);
            if let Err(e) = f(ev) {
                *out_err.borrow_mut() = Some(e);
            }
        }
    };
    let result = loop {
        let item = match reader.next_item() {
            Ok(Some(it)) => it,
            Ok(None) => break Ok(()),
            Err(err) => {
                break Err(SourceError::Line {
                    name: name.to_string(),
                    line: reader.lines() + 1,
                    message: err.to_string(),
                })
            }
        };
        let id = |c: usize| first_conn + c as u64;
        match item {
            Item::Chunk { conn, chunk } => {
                let c = open.entry(conn).or_insert_with(|| Conn {
                    session: Session::new(tables.clone(), id(conn), opts.hint),
                    last: chunk.ts,
                });
                c.last = chunk.ts;
                c.session.feed(chunk.dir, &chunk.bytes, chunk.ts, &mut emit);
            }
            Item::Note {
                conn,
                dir,
                line,
                message,
            } => {
                let ts = Ts(line as i64);
                let c = open.entry(conn).or_insert_with(|| Conn {
                    session: Session::new(tables.clone(), id(conn), opts.hint),
                    last: ts,
                });
                let mut ev = c.session.event(
                    ts,
                    Some(dir),
                    EventKind::Note(Message {
                        message: format!("{name}:{line}: {message}").into(),
                    }),
                );
                emit(&mut ev);
            }
            Item::End { conn } => {
                if let Some(mut c) = open.remove(&conn) {
                    c.session.finish(c.last, &mut emit);
                }
            }
        }
        if out_err.borrow().is_some() {
            break Ok(());
        }
    };
    // A read error ends the log where it happened: what is buffered is still decoded.
    let mut left: Vec<(usize, Conn)> = open.drain().collect();
    left.sort_unstable_by_key(|(k, _)| *k);
    for (_, mut c) in left {
        c.session.finish(c.last, &mut emit);
    }
    stats.lines = reader.lines();
    stats.connections = reader.connections() as u64;
    stats.events = events.get();
    if let Some(e) = out_err.into_inner() {
        return Err(SourceError::Output(e));
    }
    result?;
    if reader.connections() == 0 {
        return Err(SourceError::NotALog {
            name: name.to_string(),
            why: why_not_a_log(&first_line),
        });
    }
    Ok(())
}
