//! `--pcap`: records proxied connections as pcapng with synthetic Ethernet/IP/TCP framing,
//! on a thread of its own. Each proxied connection appears as one TCP connection between
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
    /// Opens `path` (owner-only: recordings hold secrets) and starts the recorder thread.
    pub fn start(path: &Path) -> io::Result<Recorder> {
        let f = create_private(path, true)?;
        let w = CaptureWriter::new(
            BufWriter::with_capacity(256 << 10, f),
            Format::PcapNg,
            Link::Ethernet,
        )?;
        let (tx, rx) = mpsc::channel();
        let room = Arc::new(Semaphore::new(QUEUE_BYTES));
        let name = path.display().to_string();
        let r2 = room.clone();
        std::thread::Builder::new()
            .name("msntap-pcap".into())
            .spawn(move || run(w, rx, &name, &r2))?;
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

fn run(
    mut w: CaptureWriter<BufWriter<std::fs::File>>,
    rx: mpsc::Receiver<Rec>,
    name: &str,
    room: &Semaphore,
) {
    let mut flows: HashMap<u64, TcpFlowWriter> = HashMap::new();
    let mut failed: Option<String> = None;
    while let Ok(m) = rx.recv() {
        let n = match &m {
            Rec::Data { bytes, .. } => bytes.len().clamp(1, QUEUE_BYTES),
            _ => 0,
        };
        if let Rec::Close(ack) = m {
            let r = match &failed {
                Some(e) => Err(io::Error::other(e.clone())),
                None => w.flush(),
            };
            let _ = ack.send(r);
            return;
        }
        if failed.is_none() {
            if let Err(e) = write(&mut w, &mut flows, m) {
                tracing::error!("{name}: recording stopped: {e}");
                failed = Some(format!("{name}: {e}"));
            }
        }
        if n > 0 {
            room.add_permits(n);
        }
    }
    let _ = w.flush();
}

fn write(
    w: &mut CaptureWriter<BufWriter<std::fs::File>>,
    flows: &mut HashMap<u64, TcpFlowWriter>,
    m: Rec,
) -> io::Result<()> {
    match m {
        Rec::Open {
            conn,
            client,
            server,
            ts,
        } => {
            if client.is_ipv4() != server.is_ipv4() {
                // A TCP connection cannot mix families; such a connection is left out.
                tracing::warn!(
                    "connection {conn}: {client} -> {server} mixes IPv4 and IPv6; not recorded"
                );
                return Ok(());
            }
            let mut f = TcpFlowWriter::new(client, server);
            for (_, p) in f.handshake()? {
                w.write_ip(0, ts, &p, None)?;
            }
            flows.insert(conn, f);
        }
        Rec::Data {
            conn,
            dir,
            ts,
            bytes,
        } => {
            if let Some(f) = flows.get_mut(&conn) {
                for p in f.data(dir, &bytes, MSS)? {
                    w.write_ip(0, ts, &p, None)?;
                }
                let ack = f.ack(dir.flip())?;
                w.write_ip(0, ts, &ack, None)?;
            }
        }
        Rec::Fin { conn, dir, ts } => {
            if let Some(f) = flows.get_mut(&conn) {
                let p = f.fin(dir)?;
                w.write_ip(0, ts, &p, None)?;
                let ack = f.ack(dir.flip())?;
                w.write_ip(0, ts, &ack, None)?;
            }
        }
        Rec::Rst { conn, dir, ts } => {
            if let Some(mut f) = flows.remove(&conn) {
                let p = f.rst(dir)?;
                w.write_ip(0, ts, &p, None)?;
            }
        }
        Rec::End { conn } => {
            flows.remove(&conn);
        }
        Rec::Close(_) => {}
    }
    Ok(())
}
