//! Memory budget measurement (run with `cargo bench --bench budget`): builds a crafted
//! capture of 1,000 connections (MSNTAP_BENCH_FLOWS) to port 1863, each missing one
//! segment right after its first command line and then sending 1 MiB that must be held
//! out of order, all interleaved so every connection holds at once; then runs the release
//! binary `msntap read --json FILE --quiet` on it under `/usr/bin/time -v` and reports
//! its peak RSS, time and gap events. MSNTAP_BENCH_MAX_BUFFER passes `--max-buffer`.
//! The capture is removed at the end unless MSNTAP_BENCH_KEEP=1, which keeps it and prints
//! where. It measures only; it asserts nothing and is never run as a test.

mod inputs;
mod timev;

use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use msntap::capture::writer::{CaptureWriter, Format, Link, TcpFlowWriter};
use msntap::{Dir, Ts};

const HELD: usize = 1 << 20;
const SEG: usize = 1460;

fn build(path: &Path, flows: u32) -> u64 {
    let f = std::fs::File::create(path).expect("create capture");
    let mut w = CaptureWriter::new(
        BufWriter::with_capacity(1 << 20, f),
        Format::Pcap,
        Link::Ethernet,
    )
    .expect("writer");
    let mut ts = Ts(1_117_627_200_000_000);
    let mut packets = 0u64;
    let mut put = |w: &mut CaptureWriter<_>, p: &[u8]| {
        ts.0 += 3;
        packets += 1;
        w.write_ip(0, ts, p, None).expect("write");
    };
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1)), 1863);
    let mut conns: Vec<TcpFlowWriter> = (0..flows)
        .map(|n| {
            let client = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n)),
                20_000 + (n % 40_000) as u16,
            );
            TcpFlowWriter::new(client, server)
        })
        .collect();
    for c in &mut conns {
        for (_, p) in c.handshake().expect("hs") {
            put(&mut w, &p);
        }
        for p in c
            .data(Dir::C2s, b"VER 1 MSNP8 CVR0\r\n", SEG)
            .expect("data")
        {
            put(&mut w, &p);
        }
        c.skip(Dir::C2s, SEG as u64);
    }
    // Text lines that are not commands: after the hole the decoder looks for one.
    let mut body = Vec::with_capacity(HELD);
    while body.len() < HELD {
        body.extend_from_slice(b"lorem ipsum dolor sit amet, consectetur adipiscing elit\r\n");
    }
    body.truncate(HELD);
    for chunk in body.chunks(SEG) {
        for c in &mut conns {
            for p in c.data(Dir::C2s, chunk, SEG).expect("data") {
                put(&mut w, &p);
            }
        }
    }
    for c in &mut conns {
        for (_, p) in c.close(Dir::C2s).expect("close") {
            put(&mut w, &p);
        }
    }
    w.into_inner().expect("flush").flush().expect("flush");
    packets
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let flows: u32 = std::env::var("MSNTAP_BENCH_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = inputs::Inputs::dir("budget");
    let cap = dir.join("held.pcap");
    let t0 = Instant::now();
    let packets = build(&cap, flows);
    let size = std::fs::metadata(&cap).map(|m| m.len()).unwrap_or(0);
    println!(
        "built {}: {:.1} MB, {packets} packets, {flows} connections each holding {} KiB out of order, in {:.1} s",
        cap.display(),
        size as f64 / 1e6,
        HELD >> 10,
        t0.elapsed().as_secs_f64()
    );
    let exe = env!("CARGO_BIN_EXE_msntap");
    let json = dir.join("events.jsonl");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v")
        .arg(exe)
        .args(["read", "--quiet", "--no-progress", "--json"]);
    cmd.arg(&json);
    if let Ok(b) = std::env::var("MSNTAP_BENCH_MAX_BUFFER") {
        cmd.args(["--max-buffer", &b]);
    }
    cmd.arg(&cap);
    let t1 = Instant::now();
    let out = cmd.output().expect("run /usr/bin/time msntap");
    let secs = t1.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak_kb = timev::peak_rss_kib(&stderr);
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let gaps = text
        .lines()
        .filter(|l| l.contains(r#""type":"gap""#))
        .count();
    let notes = text.lines().filter(|l| l.contains("memory budget")).count();
    if let Some(s) = timev::summary(&stderr) {
        println!("{s}");
    }
    println!(
        "msntap read: {:.2} s, peak RSS {}, {gaps} gap events, {notes} over-budget notes, exit {}",
        secs,
        peak_kb.map_or("unknown".to_string(), |k| format!(
            "{:.1} MB",
            k as f64 / 1024.0
        )),
        out.status
    );
}
