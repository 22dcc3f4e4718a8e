//! The benchmark capture shared by benches/read.rs and benches/capture.rs: thousands of
//! interleaved MSNP sessions built with the project's own capture writer. Benchmark
//! support only; never part of the library.

use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use msntap::capture::synth::Rng;
use msntap::capture::writer::{CaptureWriter, Format, Link, TcpFlowWriter};
use msntap::{Dir, Tables, Ts};

type Bursts = Vec<(Dir, Vec<u8>)>;

/// Each connection of each fixture log as bursts of one direction.
fn templates() -> Vec<Bursts> {
    let tables = Arc::new(Tables::builtin().expect("tables"));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures/synth");
    let mut out = Vec::new();
    for log in [
        "msnp2_md5.log",
        "msnp11_chat.log",
        "msnp15_adl.log",
        "msnp21_sdg.log",
    ] {
        let text = std::fs::read_to_string(dir.join(log)).expect("fixture log");
        for c in msntap::logfile::parse(&text, &tables, false) {
            let mut b: Bursts = Vec::new();
            for ch in c.chunks {
                match b.last_mut() {
                    Some((d, v)) if *d == ch.dir => v.extend_from_slice(&ch.bytes),
                    _ => b.push((ch.dir, ch.bytes)),
                }
            }
            out.push(b);
        }
    }
    // A switchboard session with a P2P (binary) transfer of 12 chunks of 1202 bytes.
    let mut p2p: Bursts = vec![
        (
            Dir::C2s,
            b"USR 1 erin@example.com 3110578.1117627230.2243\r\n".to_vec(),
        ),
        (Dir::S2c, b"USR 1 OK erin@example.com Erin\r\n".to_vec()),
    ];
    let mut data = Vec::new();
    for i in 0..12u32 {
        let mut head = b"MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: frank@example.com\r\n\r\n".to_vec();
        let mut bin = vec![0u8; 48];
        bin[0..4].copy_from_slice(&7u32.to_le_bytes());
        bin[4..8].copy_from_slice(&(1000 + i).to_le_bytes());
        bin[8..16].copy_from_slice(&(u64::from(i) * 1202).to_le_bytes());
        bin[16..24].copy_from_slice(&(12u64 * 1202).to_le_bytes());
        bin[24..28].copy_from_slice(&1202u32.to_le_bytes());
        bin[28..32].copy_from_slice(&0x20u32.to_le_bytes());
        head.extend_from_slice(&bin);
        head.extend((0..1202u32).map(|k| (k.wrapping_mul(2_654_435_761) >> 13) as u8));
        head.extend_from_slice(&1u32.to_be_bytes());
        data.extend_from_slice(format!("MSG {} D {}\r\n", i + 2, head.len()).as_bytes());
        data.extend_from_slice(&head);
    }
    p2p.push((Dir::C2s, data));
    p2p.push((Dir::S2c, b"ACK 13\r\n".to_vec()));
    p2p.push((Dir::C2s, b"OUT\r\n".to_vec()));
    out.push(p2p);
    out
}

struct Live {
    flow: TcpFlowWriter,
    bursts: std::vec::IntoIter<(Dir, Vec<u8>)>,
}

/// Writes the capture to `path` until it holds `target` bytes; (packets, sessions).
pub fn build(path: &PathBuf, target: u64) -> (u64, u64) {
    let t = templates();
    let f = std::fs::File::create(path).expect("create capture");
    let mut w = CaptureWriter::new(
        BufWriter::with_capacity(1 << 20, f),
        Format::Pcap,
        Link::Ethernet,
    )
    .expect("writer");
    let mut rng = Rng::new(42);
    let mut live: Vec<Live> = Vec::new();
    let (mut written, mut packets, mut sessions) = (0u64, 0u64, 0u64);
    let mut ts = Ts(1_117_627_200_000_000);
    let put =
        |w: &mut CaptureWriter<_>, p: &[u8], written: &mut u64, packets: &mut u64, ts: &mut Ts| {
            ts.0 += 37;
            w.write_ip(0, *ts, p, None).expect("write");
            *written += p.len() as u64 + 14 + 16;
            *packets += 1;
        };
    while written < target || !live.is_empty() {
        // Keep 64 sessions open at once, interleaved, until the target size is reached.
        while written < target && live.len() < 64 {
            let tpl = &t[(sessions as usize) % t.len()];
            let n = sessions as u32;
            let client = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(
                    0x0a00_0000 | (n >> 8 & 0xffff) << 8 | (n & 0xff),
                )),
                20_000 + (n % 40_000) as u16,
            );
            let sb = matches!(tpl.first(), Some((_, b)) if b.starts_with(b"USR") || b.starts_with(b"ANS"));
            let server = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1)),
                if sb { 1864 } else { 1863 },
            );
            let mut flow = TcpFlowWriter::new(client, server);
            for (_, p) in flow.handshake().expect("hs") {
                put(&mut w, &p, &mut written, &mut packets, &mut ts);
            }
            live.push(Live {
                flow,
                bursts: tpl.clone().into_iter(),
            });
            sessions += 1;
        }
        let i = rng.below(live.len());
        match live[i].bursts.next() {
            Some((d, b)) => {
                for p in live[i].flow.data(d, &b, 1460).expect("data") {
                    put(&mut w, &p, &mut written, &mut packets, &mut ts);
                }
                let a = live[i].flow.ack(d.flip()).expect("ack");
                put(&mut w, &a, &mut written, &mut packets, &mut ts);
            }
            None => {
                let mut l = live.swap_remove(i);
                for (_, p) in l.flow.close(Dir::C2s).expect("close") {
                    put(&mut w, &p, &mut written, &mut packets, &mut ts);
                }
            }
        }
    }
    w.into_inner().expect("flush").flush().expect("flush");
    (packets, sessions)
}
