//! The event side of the proxy: turns what the forwarding path queued (frames as byte
//! ranges, connection events, drop counts) into events, decoding each frame with the core
//! decoder. It runs on the consumer's thread, never on a forwarding task, and holds nothing
//! a forwarding task waits for.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backlog::{Backlog, BacklogStats, Item};
use super::forward::{Batch, Entry};
use super::mirror::Mirror;
use super::pool::Pool;
use crate::event::{Command, Desync, Dir, Event, EventKind, Message, Preview, Service, Ts};
use crate::protocol::decode;
use crate::protocol::session::desync_reason;
use crate::protocol::Tables;
use crate::wire::{DesyncInfo, DesyncReason, Limits};

/// Where the proxy's events come out: call [`Events::next`] on a thread of its own until it
/// returns `None` (the proxy stopped and every event was handed out).
pub struct Events {
    backlog: Arc<Backlog>,
    tables: Arc<Tables>,
    limits: Limits,
    work: VecDeque<(Item, usize)>,
    pool: Arc<Pool>,
    /// The capture decoder of the HTTP proxy's connections, and whether it has been
    /// finished (at the end of the run).
    mirror: Option<(Mirror, bool)>,
}

/// See [`Events::abandon_handle`].
#[derive(Clone)]
pub struct Abandon(Arc<Backlog>);

impl Abandon {
    pub fn abandon(&self) {
        self.0.abandon();
    }
}

/// What one call to [`Events::next`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Events handed to the callback.
    pub events: usize,
    /// Nothing is queued any more (a good moment to flush outputs).
    pub idle: bool,
}

impl Events {
    pub(crate) fn new(
        backlog: Arc<Backlog>,
        tables: Arc<Tables>,
        limits: Limits,
        pool: Arc<Pool>,
        mirror: Option<Mirror>,
    ) -> Events {
        Events {
            backlog,
            tables,
            limits,
            work: VecDeque::new(),
            pool,
            mirror: mirror.map(|m| (m, false)),
        }
    }

    /// Waits up to `wait` for events, then hands them to `f` in order, for at most about
    /// `budget` of work (so the caller can flush on time). `None`: the proxy has stopped and
    /// nothing is left.
    pub fn next(
        &mut self,
        wait: Duration,
        budget: Duration,
        f: &mut dyn FnMut(&mut Event<'_>),
    ) -> Option<Delivered> {
        if self.work.is_empty() && !self.backlog.take(&mut self.work, wait) {
            // The connections the capture decoder still holds end with the run.
            if let Some((m, done @ false)) = &mut self.mirror {
                *done = true;
                let mut events = 0;
                m.finish(&mut |e| {
                    events += 1;
                    f(e)
                });
                return Some(Delivered { events, idle: true });
            }
            return None;
        }
        let start = Instant::now();
        let mut events = 0;
        while let Some((item, cost)) = self.work.pop_front() {
            if self.backlog.abandoned() {
                self.work.push_front((item, cost));
                self.backlog.drop_items(self.work.drain(..));
                break;
            }
            events += self.deliver(item, f);
            self.backlog.done(cost);
            if start.elapsed() >= budget {
                break;
            }
        }
        Some(Delivered {
            events,
            idle: self.work.is_empty() && self.backlog.queued() == 0,
        })
    }

    /// Takes what is queued without decoding it (no events come out of it, and it is not
    /// counted as dropped): for measuring the forwarding path alone. `None` as for
    /// [`next`](Self::next).
    pub fn skip(&mut self, wait: Duration) -> Option<usize> {
        if self.work.is_empty() && !self.backlog.take(&mut self.work, wait) {
            return None;
        }
        let n = self.work.len();
        for (item, cost) in self.work.drain(..) {
            if let Item::Batch { batch, .. } = item {
                for c in batch.containers {
                    self.pool.put(c);
                }
            }
            self.backlog.done(cost);
        }
        Some(n)
    }

    /// A handle that can give up what is queued from another thread (counted in one
    /// `dropped` event still to come), for a stop that cannot wait for the outputs.
    pub fn abandon_handle(&self) -> Abandon {
        Abandon(self.backlog.clone())
    }

    pub fn stats(&self) -> BacklogStats {
        self.backlog.stats()
    }

    fn deliver(&mut self, item: Item, f: &mut dyn FnMut(&mut Event<'_>)) -> usize {
        match item {
            Item::Batch {
                conn,
                dir,
                ts,
                batch,
            } => self.batch(conn, dir, ts, batch, f),
            Item::Event(mut ev) => {
                f(&mut ev);
                1
            }
            Item::Packets { conn, ts, frames } => {
                let Some((m, _)) = &mut self.mirror else {
                    return 0;
                };
                let mut n = 0;
                for fr in &frames {
                    // A decoder bug must not cost the other events (or the thread).
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        m.frame(conn, ts, fr, &mut |e| {
                            n += 1;
                            f(e)
                        })
                    }));
                    if r.is_err() {
                        let mut ev = Event::new(
                            ts,
                            conn,
                            None,
                            Service::Unknown,
                            None,
                            EventKind::Error(Message {
                                message: Cow::Borrowed(
                                    "the capture decoder failed on a frame of this connection; it was forwarded unchanged",
                                ),
                            }),
                        );
                        f(&mut ev);
                    }
                }
                n
            }
            Item::Dropped(d) => {
                let mut ev = Event::new(
                    d.until,
                    0,
                    None,
                    Service::Unknown,
                    None,
                    EventKind::Dropped(d),
                );
                f(&mut ev);
                1
            }
        }
    }

    fn batch(
        &self,
        conn: u64,
        dir: Dir,
        ts: Ts,
        batch: Batch,
        f: &mut dyn FnMut(&mut Event<'_>),
    ) -> usize {
        let tables: &Tables = &self.tables;
        let Batch {
            containers,
            entries,
            ..
        } = batch;
        let mut n = 0;
        let mut rewritten: Option<Box<str>> = None;
        for entry in entries {
            n += 1;
            match entry {
                Entry::Rewritten(r) => {
                    rewritten = Some(r);
                    n -= 1;
                }
                Entry::Frame(fr) => {
                    let Some(bytes) = containers.get(fr.container as usize).and_then(|c| {
                        c.get(fr.start as usize..fr.start as usize + fr.len as usize)
                    }) else {
                        continue;
                    };
                    let frame = fr.frame(bytes);
                    // The command is decoded in its event (no copy of either). A decoder bug
                    // must not cost the other events (or the thread): the event becomes an
                    // error, whatever the command held when it failed.
                    let mut ev = Event::new(
                        ts,
                        conn,
                        Some(dir),
                        fr.service,
                        fr.version,
                        EventKind::Command(Command::blank()),
                    );
                    let limits = self.limits;
                    let decoded = match &mut ev.kind {
                        EventKind::Command(c) => catch_unwind(AssertUnwindSafe(|| {
                            decode::command_into(
                                c,
                                tables,
                                dir,
                                fr.decode_version,
                                limits,
                                &frame,
                                bytes,
                            );
                            c.rewritten = rewritten.take().map(|r| Cow::Owned(r.into()));
                        }))
                        .is_ok(),
                        _ => false,
                    };
                    if !decoded {
                        ev.kind = EventKind::Error(Message {
                            message: Cow::Owned(format!(
                                "the decoder failed on the frame at stream offset {} ({} bytes); it was forwarded unchanged",
                                fr.offset, fr.len
                            )),
                        });
                    }
                    f(&mut ev);
                }
                Entry::Desync(d) => {
                    let mut ev = Event::new(
                        ts,
                        conn,
                        Some(dir),
                        d.service,
                        d.version,
                        desync_kind(&d.info, self.limits),
                    );
                    f(&mut ev);
                }
                Entry::Event(mut e) => f(&mut e),
            }
        }
        for c in containers {
            self.pool.put(c);
        }
        n
    }
}

/// The desync event of bytes the forwarding path could not frame (they were forwarded).
fn desync_kind(d: &DesyncInfo, limits: Limits) -> EventKind<'_> {
    let reason = match d.reason {
        // The proxy loses bytes only when it gives up a partial frame to stay in its
        // memory budget.
        DesyncReason::BytesLost => Cow::Borrowed(
            "a partial frame was given up: the proxy's framing memory budget was spent (decoding resumed at the next command line; forwarding was not affected)",
        ),
        r => desync_reason(r, limits),
    };
    EventKind::Desync(Desync {
        offset: d.offset,
        skipped: d.skipped,
        reason,
        preview: Preview(Cow::Borrowed(&d.preview)),
        redacted: false,
    })
}
