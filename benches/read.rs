//! Benchmark of `msntap read --json` (run with `cargo bench --bench read`): builds a large
//! capture of thousands of interleaved MSNP sessions (every payload kind of the fixture
//! logs plus binary P2P data) in a temporary directory, then times the release binary
//! reading it with JSON output to /dev/null and reports MB/s, packets/s and peak memory.
//! MSNTAP_BENCH_MB sets the capture size (default 100; use 1000 to check memory stays flat).
//! It measures only; it asserts nothing and is never run as a test.

use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use msntap::capture::synth::Rng;
use msntap::capture::writer::{CaptureWriter, Format, Link, TcpFlowWriter};
use msntap::{Dir, Tables, Ts};

/// The allocator of the msntap binary (src/main.rs), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

fn build(path: &PathBuf, target: u64) -> (u64, u64) {
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

fn main() {
    // `cargo test` runs benches in test mode with --test: do nothing then.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let mb: u64 = std::env::var("MSNTAP_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = std::env::temp_dir().join(format!("msntap-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cap = dir.join("bench.pcap");
    let t0 = Instant::now();
    let (packets, sessions) = build(&cap, mb << 20);
    let size = std::fs::metadata(&cap).map(|m| m.len()).unwrap_or(0);
    println!(
        "built {}: {:.1} MB, {packets} packets, {sessions} sessions in {:.1} s",
        cap.display(),
        size as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    // Stage 1, in this process: read, reassemble and decode, events counted and dropped.
    let tables = Arc::new(Tables::builtin().expect("tables"));
    let mut n_events = 0u64;
    let t_dec = Instant::now();
    let st = msntap::capture::read_path(
        &cap,
        tables,
        &msntap::capture::ReadOptions::default(),
        &mut |_| {
            n_events += 1;
            Ok(())
        },
    )
    .expect("read");
    let dec = t_dec.elapsed().as_secs_f64();
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "read + reassemble + decode (events dropped): {:.2} s, {:.0} MB/s, {:.0} packets/s, {n_events} events, {} connections, peak RSS of this process {hwm}",
        dec,
        size as f64 / 1e6 / dec,
        st.packets as f64 / dec,
        st.flows.msnp_connections
    );
    // Stage 2: the release binary, JSON Lines to /dev/null, as a user runs it.
    let exe = env!("CARGO_BIN_EXE_msntap");
    let time = std::path::Path::new("/usr/bin/time").exists();
    let mut cmd = if time {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-v").arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(["read", "--json", "/dev/null", "--quiet", "--no-progress"])
        .arg(&cap);
    let t1 = Instant::now();
    let out = cmd.output().expect("run msntap");
    let secs = t1.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak_kb = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse::<u64>().ok());
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("msntap: "))
        .unwrap_or("");
    println!("{summary}");
    println!(
        "msntap read --json /dev/null: {:.2} s, {:.0} MB/s, {:.0} packets/s, peak RSS {}",
        secs,
        size as f64 / 1e6 / secs,
        packets as f64 / secs,
        peak_kb.map_or("unknown (no /usr/bin/time)".to_string(), |k| format!(
            "{:.1} MB",
            k as f64 / 1024.0
        ))
    );
    if !out.status.success() {
        println!("msntap exited with {}", out.status);
    }
    if std::env::var_os("MSNTAP_BENCH_KEEP").is_some() {
        println!("kept {}", cap.display());
    } else {
        std::fs::remove_dir_all(&dir).ok();
    }
}
