//! The backlog between the forwarding tasks and the event thread: a queue bounded in
//! bytes. A push never waits: past the bound, work is dropped and counted, and one
//! `dropped` event says how much and when. It holds undecoded frames (byte ranges), not
//! events; it must never block a forwarding task or let the queue grow past its bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::forward::Batch;
use crate::event::{Dir, Dropped, Event, Ts};

/// One unit of work for the event thread.
#[derive(Debug)]
pub(crate) enum Item {
    /// Frames one read produced on one connection.
    Batch {
        conn: u64,
        dir: Dir,
        ts: Ts,
        batch: Batch,
    },
    /// A connection-level event (connect, close, error, note).
    Event(Box<Event<'static>>),
    /// Work dropped before this point.
    Dropped(Dropped),
    /// Synthesized frames of a connection the HTTP proxy relayed (the packets the
    /// recording holds), for the event side's capture decoder.
    Packets {
        /// The proxy's id of the connection.
        conn: u64,
        ts: Ts,
        /// Link-layer frames ([`crate::capture::writer::Link::Ethernet`]).
        frames: Vec<Vec<u8>>,
    },
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<(Item, usize)>,
    closed: bool,
    /// The event thread sleeps and must be woken.
    waiting: bool,
    /// Dropping until the queue has drained to three quarters of the bound, so that a
    /// flood gives a few long runs of drops instead of one event per read.
    dropping: bool,
    pending: Option<Dropped>,
}

/// Totals since the start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BacklogStats {
    pub dropped_events: u64,
    pub dropped_bytes: u64,
    /// The most bytes queued at once.
    pub peak_bytes: usize,
}

#[derive(Debug)]
pub(crate) struct Backlog {
    inner: Mutex<Inner>,
    ready: Condvar,
    /// Bytes queued or being worked on by the event thread.
    bytes: AtomicUsize,
    peak: AtomicUsize,
    cap: usize,
    dropped_events: AtomicU64,
    dropped_bytes: AtomicU64,
    abandoned: AtomicBool,
}

/// The event thread is woken at once only when this much is queued; otherwise it finds the
/// work when it next looks (at most [`POLL`] later). Interactive traffic then costs the
/// forwarding path no wake-up call per read, and the event thread does not compete with it
/// for a core on every message.
const WAKE_AT: usize = 256 * 1024;
/// Longest the event thread sleeps before looking again.
pub(crate) const POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Connection-level events may use this much beyond the bound: they are few and small,
/// and a close event is worth more than a command event.
fn reserve(cap: usize) -> usize {
    (cap / 8).max(64 * 1024)
}

impl Backlog {
    pub fn new(cap: usize) -> Backlog {
        Backlog {
            inner: Mutex::new(Inner::default()),
            ready: Condvar::new(),
            bytes: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            cap,
            dropped_events: AtomicU64::new(0),
            dropped_bytes: AtomicU64::new(0),
            abandoned: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> BacklogStats {
        BacklogStats {
            dropped_events: self.dropped_events.load(Ordering::Relaxed),
            dropped_bytes: self.dropped_bytes.load(Ordering::Relaxed),
            peak_bytes: self.peak.load(Ordering::Relaxed),
        }
    }

    /// Bytes queued now (including the item the event thread works on).
    pub fn queued(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    pub fn push_batch(&self, conn: u64, dir: Dir, ts: Ts, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let cost = batch.cost();
        let events = batch.events() as u64;
        self.push(
            Item::Batch {
                conn,
                dir,
                ts,
                batch,
            },
            cost,
            events,
            false,
            ts,
        );
    }

    /// Frames for the event side's capture decoder. `control`: frames without payload
    /// (handshake, FIN, RST), which may use the reserve like connection events, so that a
    /// connection's boundaries survive a flood of data that is dropped.
    pub fn push_packets(&self, conn: u64, ts: Ts, frames: Vec<Vec<u8>>, control: bool) {
        if frames.is_empty() {
            return;
        }
        let cost = frames.iter().map(|f| f.len() + 32).sum::<usize>() + 64;
        self.push(Item::Packets { conn, ts, frames }, cost, 1, control, ts);
    }

    pub fn push_event(&self, ev: Event<'static>) {
        let ts = ev.ts;
        self.push(Item::Event(Box::new(ev)), 512, 1, true, ts);
    }

    fn push(&self, item: Item, cost: usize, events: u64, control: bool, ts: Ts) {
        let mut g = self.lock();
        if g.closed {
            return;
        }
        let cur = self.bytes.load(Ordering::Acquire);
        if g.dropping && cur <= self.cap / 4 * 3 {
            g.dropping = false;
        }
        let limit = if control {
            self.cap + reserve(self.cap)
        } else {
            self.cap
        };
        if (g.dropping && !control) || cur + cost > limit {
            if !control {
                g.dropping = true;
            }
            let d = g.pending.get_or_insert(Dropped {
                events: 0,
                bytes: 0,
                since: ts,
                until: ts,
            });
            d.events += events;
            d.bytes += cost as u64;
            d.until = ts;
            self.dropped_events.fetch_add(events, Ordering::Relaxed);
            self.dropped_bytes.fetch_add(cost as u64, Ordering::Relaxed);
            return;
        }
        if let Some(d) = g.pending.take() {
            g.queue.push_back((Item::Dropped(d), 0));
        }
        let now = self.bytes.fetch_add(cost, Ordering::AcqRel) + cost;
        self.peak.fetch_max(now, Ordering::Relaxed);
        g.queue.push_back((item, cost));
        if g.waiting && now >= WAKE_AT {
            g.waiting = false;
            drop(g);
            self.ready.notify_one();
        }
    }

    /// No more pushes: the event thread drains what is queued and stops.
    pub fn close(&self) {
        let mut g = self.lock();
        g.closed = true;
        drop(g);
        self.ready.notify_all();
    }

    /// Drops everything queued (counted in one `dropped` event), and whatever the event
    /// thread still holds as it reaches it: for a stop that cannot wait for the outputs.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
        let mut g = self.lock();
        let q = std::mem::take(&mut g.queue);
        self.count_dropped(&mut g, q);
        g.closed = true;
        drop(g);
        self.ready.notify_all();
    }

    pub fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// Counts `items` as dropped (the event thread gives up what it took).
    pub fn drop_items(&self, items: impl IntoIterator<Item = (Item, usize)>) {
        let mut g = self.lock();
        self.count_dropped(&mut g, items);
    }

    fn count_dropped(&self, g: &mut Inner, items: impl IntoIterator<Item = (Item, usize)>) {
        let mut events = 0u64;
        let mut bytes = 0u64;
        let (mut since, mut until): (Option<Ts>, Option<Ts>) = (None, None);
        for (item, cost) in items {
            let ts = match &item {
                Item::Batch { batch, ts, .. } => {
                    events += batch.events() as u64;
                    Some(*ts)
                }
                Item::Event(e) => {
                    events += 1;
                    Some(e.ts)
                }
                Item::Packets { ts, .. } => {
                    events += 1;
                    Some(*ts)
                }
                Item::Dropped(d) => {
                    events += d.events;
                    bytes += d.bytes;
                    since = since.or(Some(d.since));
                    Some(d.until)
                }
            };
            bytes += cost as u64;
            if let Some(t) = ts {
                since = since.or(Some(t));
                until = Some(until.map_or(t, |u| u.max(t)));
            }
            self.bytes.fetch_sub(cost, Ordering::AcqRel);
        }
        if events == 0 {
            return;
        }
        self.dropped_events.fetch_add(events, Ordering::Relaxed);
        self.dropped_bytes.fetch_add(bytes, Ordering::Relaxed);
        let p = g.pending.get_or_insert(Dropped {
            events: 0,
            bytes: 0,
            since: since.unwrap_or(Ts(0)),
            until: until.unwrap_or(Ts(0)),
        });
        p.events += events;
        p.bytes += bytes;
        if let Some(u) = until {
            p.until = p.until.max(u);
        }
    }

    /// Swaps the queued items into `into` (which must be empty), waiting up to `wait` for
    /// some. False when the backlog is closed and nothing is left.
    pub fn take(&self, into: &mut VecDeque<(Item, usize)>, wait: Duration) -> bool {
        let mut g = self.lock();
        loop {
            if !g.queue.is_empty() {
                std::mem::swap(&mut g.queue, into);
                return true;
            }
            // Caught up: the drops so far are reported now, not with the next push.
            if let Some(d) = g.pending.take() {
                g.dropping = false;
                into.push_back((Item::Dropped(d), 0));
                return true;
            }
            if g.closed {
                return false;
            }
            g.waiting = true;
            let (g2, r) = self
                .ready
                .wait_timeout(g, wait.min(POLL))
                .unwrap_or_else(|e| e.into_inner());
            g = g2;
            g.waiting = false;
            if r.timed_out() && !g.queue.is_empty() {
                continue;
            }
            if r.timed_out() {
                return true;
            }
        }
    }

    /// The event thread is done with an item of `cost` bytes.
    pub fn done(&self, cost: usize) {
        if cost > 0 {
            self.bytes.fetch_sub(cost, Ordering::AcqRel);
        }
    }
}
