//! Benchmark of the capture layer alone (run with `cargo bench --bench capture`): builds
//! the capture of benches/read.rs (MSNTAP_BENCH_MB, default 100) and times, in this
//! process, best of MSNTAP_BENCH_RUNS (default 3):
//!   1. the pcap reading loop alone (`capture::frames`);
//!   2. plus link/IP/TCP parsing with capture/packet.rs, and the same with etherparse's
//!      sliced parser (`SlicedPacket::from_ethernet`), to choose between them;
//!   3. reading, parsing, reassembly and the connection tracker with every delivery
//!      discarded (`capture::track`);
//!   4. writing the same packets as a pcap with capture/writer.rs and with pcap-parser's
//!      serializer.
//!
//! MB/s counts the capture file's bytes. MSNTAP_BENCH_STAGE=NAME runs one stage
//! (read, packet, etherparse, tracker and write name the stages, for callgrind);
//! MSNTAP_BENCH_CAPTURE=FILE reads FILE instead of building one, and
//! MSNTAP_BENCH_KEEP=1 keeps the capture built and prints where (it is removed at the end
//! otherwise). It measures only; it asserts nothing and is never run as a test.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use msntap::capture::packet;
use msntap::capture::writer::{CaptureWriter, Format, Link};
use msntap::capture::{frames, track, ReadOptions, StreamEvent};
use msntap::{Tables, Ts};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
mod inputs;

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    (best, last.expect("at least one run"))
}

/// As `capture::read_path` opens files: pcap-parser's own buffer reads the file.
fn open(p: &std::path::Path) -> std::fs::File {
    std::fs::File::open(p).expect("open capture")
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mb = env("MSNTAP_BENCH_MB", 100);
    let runs = env("MSNTAP_BENCH_RUNS", 3) as usize;
    let stage = std::env::var("MSNTAP_BENCH_STAGE").ok();
    let want = |name: &str| stage.as_deref().is_none_or(|s| s == name);
    let dir = inputs::Inputs::dir("capbench");
    let (cap, packets, sessions) = match std::env::var_os("MSNTAP_BENCH_CAPTURE") {
        // A capture built earlier (e.g. by a native run, to run this one under callgrind).
        Some(p) => {
            let p = std::path::PathBuf::from(p);
            let mut n = 0u64;
            frames("bench", open(&p), &mut |_, _, _| n += 1).expect("read");
            (p, n, 0)
        }
        None => {
            let cap = dir.join("bench.pcap");
            let (p, s) = common::build(&cap, mb << 20);
            (cap, p, s)
        }
    };
    let size = std::fs::metadata(&cap).map(|m| m.len()).unwrap_or(0) as f64;
    println!(
        "capture: {:.1} MB, {packets} packets, {sessions} sessions",
        size / 1e6
    );
    let report = |what: &str, secs: f64, extra: String| {
        println!(
            "{what:<44} {:>7.3} s {:>7.0} MB/s {:>6.2} M packets/s {:>6.1} ns/packet  {extra}",
            secs,
            size / 1e6 / secs,
            packets as f64 / 1e6 / secs,
            secs * 1e9 / packets as f64
        );
    };
    let tables = Arc::new(Tables::builtin().expect("tables"));
    let tracker = |cap: &std::path::Path| {
        let mut bytes = 0u64;
        let mut gaps = 0u64;
        let st = track(
            "bench",
            open(cap),
            tables.clone(),
            &ReadOptions::default(),
            &mut |e| match e {
                StreamEvent::Data { bytes: b, .. } => bytes += b.len() as u64,
                StreamEvent::Gap { .. } => gaps += 1,
                _ => {}
            },
        )
        .expect("track");
        (bytes, gaps, st.flows.msnp_connections)
    };
    if want("read") {
        let (s, n) = best(runs, || {
            let mut n = 0u64;
            frames("bench", open(&cap), &mut |_, _, d| n += d.len() as u64).expect("read");
            n
        });
        report("1. read (pcap records)", s, format!("{n} frame bytes"));
    }

    if want("packet") {
        let (s, n) = best(runs, || {
            let mut n = 0u64;
            frames("bench", open(&cap), &mut |lt, _, d| {
                if let Some(ip) = packet::ip_of_frame(lt, d).and_then(packet::parse_ip) {
                    if let Some(t) = packet::parse_tcp(ip.payload) {
                        n += t.payload.len() as u64 + u64::from(t.seq & 1) + u64::from(t.sport);
                    }
                }
            })
            .expect("read");
            n
        });
        report(
            "2a. read + parse (capture/packet.rs)",
            s,
            format!("checksum {n}"),
        );
    }
    if want("etherparse") {
        let (s, n) = best(runs, || {
            let mut n = 0u64;
            frames("bench", open(&cap), &mut |_, _, d| {
                if let Ok(p) = etherparse::SlicedPacket::from_ethernet(d) {
                    if let Some(etherparse::TransportSlice::Tcp(t)) = p.transport {
                        n += t.payload().len() as u64
                            + u64::from(t.sequence_number() & 1)
                            + u64::from(t.source_port());
                    }
                }
            })
            .expect("read");
            n
        });
        report(
            "2b. read + parse (etherparse SlicedPacket)",
            s,
            format!("checksum {n}"),
        );
    }
    if want("tracker") {
        let (s, (bytes, gaps, conns)) = best(runs, || tracker(&cap));
        report(
            "3. read + parse + reassembly + tracker",
            s,
            format!("{bytes} stream bytes, {gaps} gaps, {conns} connections"),
        );
    }
    if !want("write") {
        return;
    }

    // Writing: the first 200,000 frames, kept in memory, written to a Vec.
    let mut kept: Vec<(Ts, Vec<u8>)> = Vec::new();
    frames("bench", open(&cap), &mut |_, ts, d| {
        if kept.len() < 200_000 {
            kept.push((ts, d.to_vec()));
        }
    })
    .expect("read");
    let total: usize = kept.iter().map(|(_, d)| d.len() + 16).sum();
    let wreport = |what: &str, secs: f64, len: usize| {
        println!(
            "{what:<44} {:>7.3} s {:>7.0} MB/s {:>6.1} ns/packet  ({len} bytes written)",
            secs,
            total as f64 / 1e6 / secs,
            secs * 1e9 / kept.len() as f64
        );
    };
    let (s, len) = best(runs, || {
        let mut w =
            CaptureWriter::new(Vec::with_capacity(total + 64), Format::Pcap, Link::Ethernet)
                .expect("writer");
        for (ts, d) in &kept {
            w.write_frame(0, *ts, d, None).expect("write");
        }
        w.into_inner().expect("bytes").len()
    });
    wreport("4a. write pcap (capture/writer.rs)", s, len);
    let (s, len) = best(runs, || {
        use pcap_parser::ToVec;
        let mut out: Vec<u8> = Vec::with_capacity(total + 64);
        let mut h = pcap_parser::PcapHeader::new();
        out.extend_from_slice(&h.to_vec().expect("header"));
        for (ts, d) in &kept {
            let mut b = pcap_parser::LegacyPcapBlock {
                ts_sec: ts.0.div_euclid(1_000_000) as u32,
                ts_usec: ts.0.rem_euclid(1_000_000) as u32,
                caplen: d.len() as u32,
                origlen: d.len() as u32,
                data: d,
            };
            out.extend_from_slice(&b.to_vec().expect("block"));
        }
        out.flush().expect("flush");
        out.len()
    });
    wreport("4b. write pcap (pcap-parser serialize)", s, len);
}
