//! Where a live run's events go: the same pipeline as every subcommand (summary, login
//! annotations, filters, redaction, the pretty log and JSON Lines) plus what a live run
//! needs: timed flushes, standard output written by a thread of its own through a queue
//! bounded in bytes (a terminal nobody reads, or a closed pipe, costs log lines, never
//! the JSON file or forwarding), and an output that fails is dropped with a message
//! while the others go on. It never touches sockets.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::analysis::auth::AuthAnnotator;
use crate::event::filter::Filter;
use crate::event::jsonl::JsonlSink;
use crate::event::pretty::PrettySink;
use crate::event::{Dropped, Event, EventKind, Service, Sink, Ts};
use crate::output::{create_private, ColorChoice, OutputConfig, Summary};
use crate::protocol::Tables;

use super::events::Events;

/// Bytes of log (or JSON Lines on standard output) waiting for standard output before
/// lines are dropped and counted.
pub const STDOUT_QUEUE: usize = 4 << 20;
/// Outputs are flushed at least this often while events arrive.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// A `Write` that collects bytes for a hand-off to the standard-output thread.
#[derive(Clone, Default)]
struct Handoff(Arc<Mutex<Vec<u8>>>);

impl Handoff {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Write for Handoff {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The thread that writes to standard output, and its queue.
struct StdoutWriter {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    queued: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
    done: mpsc::Receiver<()>,
    cap: usize,
}

impl StdoutWriter {
    fn start(mut out: Box<dyn Write + Send>, cap: usize) -> io::Result<StdoutWriter> {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let (done_tx, done) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let (q, cl) = (queued.clone(), closed.clone());
        std::thread::Builder::new()
            .name("msntap-stdout".into())
            .spawn(move || {
                for chunk in rx {
                    let n = chunk.len();
                    if !cl.load(Ordering::Relaxed)
                        && (out.write_all(&chunk).is_err() || out.flush().is_err())
                    {
                        // A closed pipe (`| head`) ends the log quietly; everything else
                        // goes on.
                        cl.store(true, Ordering::Relaxed);
                        let _ = writeln!(
                            io::stderr(),
                            "msntap: standard output was closed; the log stops there (JSON Lines, --pcap and forwarding go on)"
                        );
                    }
                    q.fetch_sub(n, Ordering::AcqRel);
                }
                let _ = done_tx.send(());
            })?;
        Ok(StdoutWriter {
            tx: Some(tx),
            queued,
            closed,
            done,
            cap,
        })
    }

    /// Queues `chunk`; false when it was dropped (the queue is full or the output closed).
    fn send(&self, chunk: Vec<u8>) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        let n = chunk.len();
        if self.queued.load(Ordering::Acquire) + n > self.cap {
            return false;
        }
        self.queued.fetch_add(n, Ordering::AcqRel);
        match &self.tx {
            Some(tx) if tx.send(chunk).is_ok() => true,
            _ => {
                self.queued.fetch_sub(n, Ordering::AcqRel);
                false
            }
        }
    }

    fn has_room(&self, n: usize) -> bool {
        self.queued.load(Ordering::Acquire) + n <= self.cap
    }

    /// Lets the thread write what is queued, waiting at most `wait` for it (a terminal
    /// nobody reads must not keep the process from ending).
    fn finish(&mut self, wait: Duration) -> bool {
        self.tx = None;
        self.done.recv_timeout(wait).is_ok()
    }
}

enum Format {
    Pretty(PrettySink<Handoff>),
    Json(JsonlSink<Handoff>),
}

impl Format {
    fn event(&mut self, ev: &Event<'_>) -> io::Result<()> {
        match self {
            Format::Pretty(s) => s.event(ev),
            Format::Json(s) => s.event(ev),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Format::Pretty(s) => s.flush(),
            Format::Json(s) => s.flush(),
        }
    }
}

/// Standard output: the log, or JSON Lines with `--json -`.
struct StdoutOut {
    format: Format,
    buf: Handoff,
    writer: StdoutWriter,
    /// Events rendered into `buf` since the last hand-off.
    pending: u64,
    first: Option<Ts>,
    last: Option<Ts>,
    /// Events whose lines were dropped, not yet reported on standard output.
    dropped: Option<Dropped>,
    dropped_total: u64,
    color: bool,
    full: bool,
    json: bool,
}

impl StdoutOut {
    fn event(&mut self, ev: &Event<'_>) {
        if self.writer.closed.load(Ordering::Relaxed) {
            return;
        }
        if self.format.event(ev).is_ok() {
            self.pending += 1;
            self.first = self.first.or(Some(ev.ts));
            self.last = Some(ev.ts);
        }
        if self.buf.len() >= 256 * 1024 {
            self.hand_off();
        }
    }

    /// The lines saying how many events standard output lost, in its own format.
    fn render_dropped(&self, d: Dropped) -> Vec<u8> {
        let ev = Event::new(
            d.until,
            0,
            None,
            Service::Unknown,
            None,
            EventKind::Dropped(d),
        );
        let h = Handoff::default();
        if self.json {
            let mut s = JsonlSink::new(h.clone());
            let _ = s.event(&ev);
            let _ = s.flush();
        } else {
            let mut s = PrettySink::new(h.clone(), self.color, self.full);
            let _ = s.event(&ev);
            let _ = s.flush();
        }
        h.take()
    }

    fn hand_off(&mut self) {
        let _ = self.format.flush();
        let chunk = self.buf.take();
        if chunk.is_empty() {
            return;
        }
        let lost = chunk.len();
        let n = std::mem::take(&mut self.pending);
        let (first, last) = (self.first.take(), self.last.take());
        if let Some(d) = self.dropped {
            let note = self.render_dropped(d);
            if self.writer.has_room(note.len() + chunk.len()) && self.writer.send(note) {
                self.dropped = None;
            }
        }
        if self.dropped.is_some() || !self.writer.send(chunk) {
            let d = self.dropped.get_or_insert(Dropped {
                events: 0,
                bytes: 0,
                since: first.unwrap_or(Ts(0)),
                until: last.unwrap_or(Ts(0)),
            });
            d.events += n;
            d.bytes += lost as u64;
            if let Some(l) = last {
                d.until = l;
            }
            self.dropped_total += n;
        }
    }
}

/// The outputs of a live run.
pub struct LiveOutput {
    /// Outputs that see every event, before filters and redaction (object extraction).
    extra: Vec<Box<dyn Sink + Send>>,
    json: Option<(String, JsonlSink<File>)>,
    stdout: Option<StdoutOut>,
    filter: Filter,
    redact: bool,
    auth: AuthAnnotator,
    pub summary: Summary,
    written: Arc<AtomicU64>,
    last_flush: Instant,
    dirty: bool,
}

fn color_enabled(choice: ColorChoice, tty: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

fn say(msg: &str) {
    let _ = writeln!(io::stderr(), "msntap: {msg}");
}

impl LiveOutput {
    /// The outputs `cfg` asks for, standard output being the process's own.
    pub fn new(cfg: &OutputConfig, tables: &Tables) -> io::Result<LiveOutput> {
        let tty = io::stdout().is_terminal();
        Self::with_stdout(cfg, tables, Box::new(io::stdout()), tty)
    }

    /// As [`new`](Self::new), with `stdout` standing for standard output (`tty`: it is a
    /// terminal, so the log is written line by line).
    pub fn with_stdout(
        cfg: &OutputConfig,
        tables: &Tables,
        stdout: Box<dyn Write + Send>,
        tty: bool,
    ) -> io::Result<LiveOutput> {
        let json_stdout = cfg.json.as_deref() == Some("-");
        let json = match cfg.json.as_deref() {
            Some(p) if p != "-" => {
                let f = create_private(Path::new(p), cfg.no_redact)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot create {p}: {e}")))?;
                Some((p.to_string(), JsonlSink::new(f)))
            }
            _ => None,
        };
        let stdout = if json_stdout || !cfg.quiet {
            let buf = Handoff::default();
            let color = !json_stdout && color_enabled(cfg.color, tty);
            let format = if json_stdout {
                Format::Json(JsonlSink::new(buf.clone()))
            } else {
                Format::Pretty(PrettySink::new(buf.clone(), color, cfg.full).eager(tty))
            };
            Some(StdoutOut {
                format,
                buf,
                writer: StdoutWriter::start(stdout, STDOUT_QUEUE)?,
                pending: 0,
                first: None,
                last: None,
                dropped: None,
                dropped_total: 0,
                color,
                full: cfg.full,
                json: json_stdout,
            })
        } else {
            None
        };
        let mut keys = Tables::empty();
        keys.challenge_keys = if cfg.challenge_keys.is_empty() {
            tables.challenge_keys.clone()
        } else {
            cfg.challenge_keys.clone()
        };
        Ok(LiveOutput {
            extra: Vec::new(),
            json,
            stdout,
            filter: cfg.filter.clone(),
            redact: !cfg.no_redact,
            auth: AuthAnnotator::new(&keys, cfg.passwords.clone()),
            summary: Summary::default(),
            written: Arc::new(AtomicU64::new(0)),
            last_flush: Instant::now(),
            dirty: false,
        })
    }

    /// Adds an output that sees every event before filters and redaction.
    pub fn add_sink(&mut self, s: Box<dyn Sink + Send>) {
        self.extra.push(s);
    }

    /// Counts every event handed to the outputs (benchmarks wait on it).
    pub fn written(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }

    /// Events whose log lines standard output lost.
    pub fn stdout_dropped(&self) -> u64 {
        self.stdout.as_ref().map_or(0, |s| s.dropped_total)
    }

    pub fn event(&mut self, ev: &mut Event<'_>) {
        self.dirty = true;
        let mut i = 0;
        while i < self.extra.len() {
            if let Err(e) = self.extra[i].event(ev) {
                say(&format!("an output failed and was closed: {e}"));
                self.extra.remove(i);
            } else {
                i += 1;
            }
        }
        self.summary.count(ev);
        self.auth.annotate(ev);
        if self.filter.pass(ev) {
            if self.redact {
                crate::secret::Redact::redact(ev);
            }
            if let Some((name, s)) = &mut self.json {
                if let Err(e) = s.event(ev) {
                    say(&format!(
                        "writing {name} failed ({e}); JSON Lines stop there"
                    ));
                    self.json = None;
                }
            }
            if let Some(s) = &mut self.stdout {
                s.event(ev);
            }
        }
        self.written.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        if let Some((name, s)) = &mut self.json {
            if let Err(e) = s.flush() {
                say(&format!(
                    "writing {name} failed ({e}); JSON Lines stop there"
                ));
                self.json = None;
            }
        }
        if let Some(s) = &mut self.stdout {
            s.hand_off();
        }
    }

    /// Flushes when it is due: nothing more is queued, or the last flush is
    /// [`FLUSH_EVERY`] old.
    pub fn tick(&mut self, idle: bool) {
        if idle || self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Writes everything out and closes the outputs (waiting at most `wait` for standard
    /// output to take the rest).
    pub fn finish(&mut self, wait: Duration) {
        for s in &mut self.extra {
            if let Err(e) = s.finish() {
                say(&format!("an output failed: {e}"));
            }
        }
        self.dirty = true;
        self.flush();
        if let Some((name, s)) = &mut self.json {
            if let Err(e) = s.finish() {
                say(&format!("writing {name} failed: {e}"));
            }
        }
        self.json = None;
        if let Some(s) = &mut self.stdout {
            if let Some(d) = s.dropped.take() {
                let note = s.render_dropped(d);
                let _ = s.writer.send(note);
            }
            if !s.writer.finish(wait) {
                say("standard output did not take the rest of the log in time");
            }
        }
    }

    /// Runs until the proxy has stopped and every event was written: the loop of the
    /// event thread.
    pub fn run(&mut self, events: &mut Events) {
        lower_priority();
        while let Some(d) = events.next(FLUSH_EVERY, FLUSH_EVERY, &mut |ev| self.event(ev)) {
            self.tick(d.idle);
        }
        self.finish(Duration::from_secs(2));
    }
}

/// Gives the calling thread (the event thread) a lower scheduling priority than forwarding:
/// on a busy machine the cores go to moving bytes first, and the backlog absorbs the delay.
/// Best effort (Linux `nice` 10 for this thread only).
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
    }
}
