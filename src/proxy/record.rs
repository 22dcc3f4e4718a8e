//! `--pcap`/`--record`: records proxied connections as pcapng with synthetic
//! Ethernet/IP/TCP framing, on a thread of its own. The same thread hands the very frames it
//! writes for the HTTP proxy's connections to the event side (the backlog), whose capture
//! decoder turns them into the live events: live and offline decoding see the same packets
//! in the same order. Each proxied connection appears as one TCP connection between
//! the client and the real server carrying the bytes each side sent (server bytes as the
//! server sent them, before address rewriting), so reading the file back gives the live
//! events. It keeps every byte: when the disk falls behind, forwarding waits for it (the
//! queue is bounded in bytes) rather than the recording losing data. A write failure is
//! reported once and never touches forwarding.

use std::collections::HashMap;
use std::io::{self, BufWriter};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{mpsc, Arc};

use bytes::Bytes;
use tokio::sync::{oneshot, Semaphore};

use super::backlog::Backlog;
use crate::capture::writer::{CaptureWriter, Format, Link, TcpFlowWriter};
use crate::event::{Dir, Ts};
use crate::output::create_private;

/// Largest TCP segment written (a typical Ethernet MSS).
const MSS: usize = 1460;
/// Bytes of data queued for the recorder before forwarding waits for it.
pub(crate) const QUEUE_BYTES: usize = 16 << 20;

/// What the relay tells the recorder.
pub(crate) enum Rec {
    Open {
        conn: u64,
        client: SocketAddr,
        server: SocketAddr,
        ts: Ts,
        /// Decode this connection from its frames on the event side (HTTP proxy).
        mirror: bool,
    },
    Data {
        conn: u64,
        dir: Dir,
        ts: Ts,
        bytes: Bytes,
    },
    /// `dir`'s sender closed (FIN).
    Fin { conn: u64, dir: Dir, ts: Ts },
    /// `dir`'s sender reset.
    Rst { conn: u64, dir: Dir, ts: Ts },
    /// The connection is over: forget it.
    End { conn: u64 },
    /// Write everything out, close the file and say how it went.
    Close(oneshot::Sender<io::Result<()>>),
}

/// The relay's handle on the recorder.
#[derive(Clone)]
pub(crate) struct Recorder {
    tx: mpsc::Sender<Rec>,
    room: Arc<Semaphore>,
}

impl Recorder {
    /// Opens `path`, if any (owner-only: recordings hold secrets), and starts the recorder
    /// thread. `mirror`: where the frames of connections opened with `mirror` go.
    pub fn start(path: Option<&Path>, mirror: Option<Arc<Backlog>>) -> io::Result<Recorder> {
        let w = match path {
            Some(path) => {
                let f = create_private(path, true)?;
                Some(CaptureWriter::new(
                    BufWriter::with_capacity(256 << 10, f),
                    Format::PcapNg,
                    Link::Ethernet,
                )?)
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel();
        let room = Arc::new(Semaphore::new(QUEUE_BYTES));
        let name = path.map_or_else(|| "frames".to_string(), |p| p.display().to_string());
        let r2 = room.clone();
        std::thread::Builder::new()
            .name("msntap-pcap".into())
            .spawn(move || {
                let mut out = Out {
                    w,
                    mirror,
                    frames: Vec::new(),
                };
                run(&mut out, rx, &name, &r2)
            })?;
        Ok(Recorder { tx, room })
    }

    /// Queues a message; data waits for room in the queue (the recording keeps every byte).
    pub async fn send(&self, m: Rec) {
        if let Rec::Data { bytes, .. } = &m {
            let n = bytes.len().clamp(1, QUEUE_BYTES) as u32;
            match self.room.acquire_many(n).await {
                // Given back by the recorder thread once written.
                Ok(p) => p.forget(),
                Err(_) => return,
            }
        }
        let _ = self.tx.send(m);
    }

    /// Writes out everything queued and closes the file.
    pub async fn close(&self) -> io::Result<()> {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Rec::Close(ack)).is_err() {
            return Err(io::Error::other("the recorder thread has stopped"));
        }
        done.await
            .unwrap_or_else(|_| Err(io::Error::other("the recorder thread has stopped")))
    }
}

/// Where synthesized packets go: the file, and the event side for mirrored connections.
struct Out {
    w: Option<CaptureWriter<BufWriter<std::fs::File>>>,
    mirror: Option<Arc<Backlog>>,
    /// Frames of the message being handled, for the event side.
    frames: Vec<Vec<u8>>,
}

impl Out {
    fn ip(&mut self, mirror: bool, ts: Ts, p: &[u8]) -> io::Result<()> {
        if let Some(w) = &mut self.w {
            w.write_ip(0, ts, p, None)?;
        }
        if mirror && self.mirror.is_some() {
            let mut f = Vec::with_capacity(p.len() + 14);
            Link::Ethernet.frame(p, &mut f);
            self.frames.push(f);
        }
        Ok(())
    }

    /// Hands the frames of one message to the event side (never waits).
    fn flush_frames(&mut self, conn: u64, ts: Ts, control: bool) {
        if let Some(b) = &self.mirror {
            if !self.frames.is_empty() {
                b.push_packets(conn, ts, std::mem::take(&mut self.frames), control);
            }
        }
    }
}

struct Flow {
    w: TcpFlowWriter,
    mirror: bool,
}

fn run(out: &mut Out, rx: mpsc::Receiver<Rec>, name: &str, room: &Semaphore) {
    let mut flows: HashMap<u64, Flow> = HashMap::new();
    let mut failed: Option<String> = None;
    while let Ok(m) = rx.recv() {
        let n = match &m {
            Rec::Data { bytes, .. } => bytes.len().clamp(1, QUEUE_BYTES),
            _ => 0,
        };
        if let Rec::Close(ack) = m {
            let r = match (&failed, &mut out.w) {
                (Some(e), _) => Err(io::Error::other(e.clone())),
                (None, Some(w)) => w.flush(),
                (None, None) => Ok(()),
            };
            let _ = ack.send(r);
            return;
        }
        let (conn, ts, control) = match &m {
            Rec::Open { conn, ts, .. } | Rec::Fin { conn, ts, .. } | Rec::Rst { conn, ts, .. } => {
                (*conn, *ts, true)
            }
            Rec::Data { conn, ts, .. } => (*conn, *ts, false),
            Rec::End { conn } => (*conn, Ts(0), true),
            Rec::Close(_) => (0, Ts(0), true),
        };
        if failed.is_none() {
            if let Err(e) = write(out, &mut flows, m) {
                tracing::error!("{name}: recording stopped: {e}");
                failed = Some(format!("{name}: {e}"));
                // The event side still gets its frames; only the file stops.
                out.w = None;
            }
        } else if let Err(e) = write(out, &mut flows, m) {
            tracing::debug!("{name}: {e}");
        }
        out.flush_frames(conn, ts, control);
        if n > 0 {
            room.add_permits(n);
        }
    }
    if let Some(w) = &mut out.w {
        let _ = w.flush();
    }
}

fn write(out: &mut Out, flows: &mut HashMap<u64, Flow>, m: Rec) -> io::Result<()> {
    match m {
        Rec::Open {
            conn,
            client,
            server,
            ts,
            mirror,
        } => {
            if client.is_ipv4() != server.is_ipv4() {
                // A TCP connection cannot mix families; such a connection is left out.
                tracing::warn!(
                    "connection {conn}: {client} -> {server} mixes IPv4 and IPv6; not recorded"
                );
                return Ok(());
            }
            if out.w.is_none() && !(mirror && out.mirror.is_some()) {
                return Ok(());
            }
            let mut f = TcpFlowWriter::new(client, server);
            let hs = f.handshake()?;
            flows.insert(conn, Flow { w: f, mirror });
            for (_, p) in hs {
                out.ip(mirror, ts, &p)?;
            }
        }
        Rec::Data {
            conn,
            dir,
            ts,
            bytes,
        } => {
            if let Some(f) = flows.get_mut(&conn) {
                let m = f.mirror;
                for p in f.w.data(dir, &bytes, MSS)? {
                    out.ip(m, ts, &p)?;
                }
                let ack = f.w.ack(dir.flip())?;
                out.ip(m, ts, &ack)?;
            }
        }
        Rec::Fin { conn, dir, ts } => {
            if let Some(f) = flows.get_mut(&conn) {
                let m = f.mirror;
                let p = f.w.fin(dir)?;
                out.ip(m, ts, &p)?;
                let ack = f.w.ack(dir.flip())?;
                out.ip(m, ts, &ack)?;
            }
        }
        Rec::Rst { conn, dir, ts } => {
            if let Some(mut f) = flows.remove(&conn) {
                let p = f.w.rst(dir)?;
                out.ip(f.mirror, ts, &p)?;
            }
        }
        Rec::End { conn } => {
            flows.remove(&conn);
        }
        Rec::Close(_) => {}
    }
    Ok(())
}
