//! The event side of the HTTP proxy: the frames the recorder synthesized for its
//! connections go through the offline capture path (tracker and decoder), so the live
//! events are by construction those `msntap read` gives for the recording. It only renumbers
//! connections into the proxy's sequence; it must not decode anything itself.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::capture::decode::{Decoder, Sink};
use crate::capture::tracker::{FlowOptions, StreamEvent, Tracker};
use crate::capture::writer::Link;
use crate::event::{Event, EventKind, Ts};
use crate::protocol::Tables;

pub(crate) struct Mirror {
    tracker: Tracker,
    dec: Decoder,
    /// Tracker connection id -> proxy connection id, for open connections.
    ids: Ids,
    next_conn: Arc<AtomicU64>,
}

impl Mirror {
    pub fn new(tables: Arc<Tables>, next_conn: Arc<AtomicU64>) -> Mirror {
        // The options `msntap read` uses by default: the same frames give the same events.
        let tracker = Tracker::new(tables.clone(), FlowOptions::default(), 1);
        Mirror {
            dec: Decoder::new(tables, tracker.ids()),
            tracker,
            ids: Ids::default(),
            next_conn,
        }
    }

    /// Decodes one synthesized frame of the proxy's connection `conn`; its events go to `f`.
    pub fn frame(&mut self, conn: u64, ts: Ts, frame: &[u8], f: &mut dyn FnMut(&mut Event<'_>)) {
        self.with_sink(f, |tracker, dec, ids, sink| {
            tracker.packet(Link::Ethernet.linktype(), ts, frame, &mut |e| {
                // A connection is opened by one of its own frames: it keeps the proxy's id.
                if let StreamEvent::Open { flow, .. } = &e {
                    ids.borrow_mut().insert(*flow, conn);
                }
                dec.on(e, sink)
            });
            dec.learn(tracker);
        });
    }

    /// The run is over: what is still open is decoded to its end and closed.
    pub fn finish(&mut self, f: &mut dyn FnMut(&mut Event<'_>)) {
        self.with_sink(f, |tracker, dec, _, sink| {
            tracker.finish(&mut |e: StreamEvent<'_>| dec.on(e, sink));
            // Gateway sessions still open end with the input, as in `msntap read`.
            dec.finish(sink);
        });
    }

    /// Runs `body` on the tracker and the decoder with a sink that gives each event the
    /// proxy's connection id before `f` sees it (the sink never fails, so the decoder's
    /// error slot stays empty and is cleared).
    fn with_sink(
        &mut self,
        f: &mut dyn FnMut(&mut Event<'_>),
        body: impl FnOnce(&mut Tracker, &mut Decoder, &RefCell<&mut Ids>, &mut Sink<'_>),
    ) {
        let Mirror {
            tracker,
            dec,
            ids,
            next_conn,
        } = self;
        let ids = RefCell::new(ids);
        let mut sink = |e: &mut Event<'_>| {
            renumber(&mut ids.borrow_mut(), next_conn, e);
            f(e);
            Ok(())
        };
        body(tracker, dec, &ids, &mut sink);
        let _ = dec.take_error();
    }
}

/// Gives a connection of the decoder (a TCP connection or a gateway session) an id of the proxy's sequence on first sight, so that ids never clash
/// with the MSNP listener's connections.
fn renumber(ids: &mut Ids, next: &AtomicU64, e: &mut Event<'_>) {
    if e.conn == 0 {
        return;
    }
    let own = e.conn;
    let id = *ids
        .open
        .entry(own)
        .or_insert_with(|| next.fetch_add(1, Ordering::Relaxed));
    e.conn = id;
    // Events of gateway sessions name the TCP connection their bytes came over.
    let tcp = |t: &mut Option<u64>| {
        if let Some(p) = t.and_then(|t| ids.get(t)) {
            *t = Some(p);
        }
    };
    if let Some(v) = &mut e.via {
        tcp(&mut v.tcp_conn);
    }
    if let EventKind::Gateway(g) = &mut e.kind {
        tcp(&mut g.tcp_conn);
    }
    if matches!(e.kind, EventKind::Close(_)) {
        // Nothing follows a close: the table holds open connections only, and a few
        // closed ones that later events may still name.
        ids.open.remove(&own);
        if ids.closed.len() >= CLOSED_KEPT {
            ids.closed.pop_front();
        }
        ids.closed.push_back((own, id));
    }
}

/// Closed connections whose ids are still translated.
const CLOSED_KEPT: usize = 1024;

#[derive(Default)]
struct Ids {
    open: HashMap<u64, u64>,
    closed: VecDeque<(u64, u64)>,
}

impl Ids {
    fn insert(&mut self, own: u64, proxy: u64) {
        self.open.insert(own, proxy);
    }

    /// The proxy's id of a connection the decoder named (open or recently closed).
    fn get(&self, own: u64) -> Option<u64> {
        self.open.get(&own).copied().or_else(|| {
            self.closed
                .iter()
                .rev()
                .find(|(o, _)| *o == own)
                .map(|(_, p)| *p)
        })
    }
}
