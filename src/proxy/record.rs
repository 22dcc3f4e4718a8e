//! `--pcap`: records proxied connections as pcapng with synthetic Ethernet/IP/TCP framing, on
//! a thread of its own. Each proxied connection appears as one TCP connection between the
//! client and the real server carrying the bytes each side sent (server bytes as the server
//! sent them, before address rewriting), so reading the file back gives the live events.
//! A recording failure is reported once and never touches forwarding.

use std::collections::HashMap;
use std::io::{self, BufWriter};
use std::net::SocketAddr;
use std::path::Path;

use tokio::sync::{mpsc, oneshot};

use crate::capture::writer::{CaptureWriter, Format, Link, TcpFlowWriter};
use crate::event::{Dir, Ts};
use crate::output::create_private;

/// Largest TCP segment written (a typical Ethernet MSS).
const MSS: usize = 1460;
/// Messages queued for the recorder before the relay waits.
pub(crate) const QUEUE: usize = 256;

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
        bytes: Vec<u8>,
    },
    /// `dir`'s sender closed (FIN).
    Fin { conn: u64, dir: Dir, ts: Ts },
    /// `dir`'s sender reset.
    Rst { conn: u64, dir: Dir, ts: Ts },
    /// The connection is over: forget it.
    End { conn: u64 },
    /// Flush the file and say how it went.
    Flush(oneshot::Sender<io::Result<()>>),
}

/// Opens `path` (owner-only: recordings hold secrets) and starts the recorder thread.
pub(crate) fn start(path: &Path) -> io::Result<mpsc::Sender<Rec>> {
    let f = create_private(path, true)?;
    let w = CaptureWriter::new(
        BufWriter::with_capacity(256 << 10, f),
        Format::PcapNg,
        Link::Ethernet,
    )?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let name = path.display().to_string();
    std::thread::Builder::new()
        .name("msntap-pcap".into())
        .spawn(move || run(w, rx, &name))?;
    Ok(tx)
}

fn run(mut w: CaptureWriter<BufWriter<std::fs::File>>, mut rx: mpsc::Receiver<Rec>, name: &str) {
    let mut flows: HashMap<u64, TcpFlowWriter> = HashMap::new();
    let mut failed: Option<String> = None;
    while let Some(m) = rx.blocking_recv() {
        if let Rec::Flush(ack) = m {
            let r = match &failed {
                Some(e) => Err(io::Error::other(e.clone())),
                None => w.flush(),
            };
            let _ = ack.send(r);
            continue;
        }
        if failed.is_some() {
            continue;
        }
        if let Err(e) = write(&mut w, &mut flows, m) {
            tracing::error!("{name}: recording stopped: {e}");
            failed = Some(format!("{name}: {e}"));
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
        Rec::Flush(_) => {}
    }
    Ok(())
}
