//! Decoder-only benchmark (run with `cargo bench --bench decode`): `Session::feed` over
//! about 64 MiB of bulk switchboard text MSG frames, of P2P MSG frames, and of the fixture
//! session mix of benches/read.rs, then the same events serialised to JSON Lines into a sink.
//! It reports MB/s and ns per frame; it measures only, asserts nothing, opens no socket.
//! MSNTAP_BENCH_MB sets the size of each input (default 64); MSNTAP_BENCH_INPUT (text, p2p,
//! fixture) and MSNTAP_BENCH_JSON (0, 1) select one part, for profiling.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use msntap::event::jsonl::JsonlSink;
use msntap::event::Sink;
use msntap::{Dir, Session, SessionHint, Tables, Ts};

/// The allocator of the msntap binary (src/main.rs), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One connection as bursts of one direction.
type Bursts = Vec<(Dir, Vec<u8>)>;

fn text_frame() -> Vec<u8> {
    let mut b = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Segoe%20UI; EF=; CO=0; CS=1; PF=0\r\n\r\n".to_vec();
    b.extend((0..1000).map(|i| b"the quick brown fox jumps over the lazy dog "[i % 44]));
    let mut f = format!("MSG bob@example.com Bob {}\r\n", b.len()).into_bytes();
    f.extend_from_slice(&b);
    f
}

fn p2p_frame() -> Vec<u8> {
    let mut b = b"MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: alice@example.com\r\n\r\n".to_vec();
    let mut h = [0u8; 48];
    h[0..4].copy_from_slice(&7u32.to_le_bytes());
    h[4..8].copy_from_slice(&12345u32.to_le_bytes());
    h[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
    h[24..28].copy_from_slice(&1202u32.to_le_bytes());
    h[28..32].copy_from_slice(&0x0100_0030u32.to_le_bytes());
    b.extend_from_slice(&h);
    b.extend((0..1202u32).map(|i| (i * 7 % 251) as u8));
    b.extend_from_slice(&2u32.to_be_bytes());
    let mut f = format!("MSG bob@example.com Bob {}\r\n", b.len()).into_bytes();
    f.extend_from_slice(&b);
    f
}

/// A switchboard connection: a client line, then `size` bytes of server MSG frames.
fn bulk(frame: &[u8], size: usize) -> Bursts {
    let mut data = Vec::with_capacity(size + frame.len());
    while data.len() < size {
        data.extend_from_slice(frame);
    }
    vec![
        (Dir::C2s, b"ANS 1 alice@example.com 1.2.3 99\r\n".to_vec()),
        (Dir::S2c, data),
    ]
}

/// The connections of the fixture logs (as benches/read.rs uses them), repeated to `size`.
fn fixture_mix(tables: &Arc<Tables>, size: usize) -> Vec<Bursts> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures/synth");
    let mut conns = Vec::new();
    for log in [
        "msnp2_md5.log",
        "msnp11_chat.log",
        "msnp15_adl.log",
        "msnp21_sdg.log",
    ] {
        let text = std::fs::read_to_string(dir.join(log)).expect("fixture log");
        for c in msntap::logfile::parse(&text, tables, false) {
            let mut b: Bursts = Vec::new();
            for ch in c.chunks {
                match b.last_mut() {
                    Some((d, v)) if *d == ch.dir => v.extend_from_slice(&ch.bytes),
                    _ => b.push((ch.dir, ch.bytes)),
                }
            }
            conns.push(b);
        }
    }
    let mut p2p = p2p_frame();
    p2p.extend_from_slice(&p2p_frame());
    conns.push(vec![
        (
            Dir::C2s,
            b"USR 1 erin@example.com 3110578.1117627230.2243\r\n".to_vec(),
        ),
        (Dir::S2c, b"USR 1 OK erin@example.com Erin\r\n".to_vec()),
        (Dir::S2c, p2p),
    ]);
    let mut out = Vec::new();
    let mut total = 0;
    while total < size {
        for c in &conns {
            total += c.iter().map(|(_, b)| b.len()).sum::<usize>();
            out.push(c.clone());
        }
    }
    out
}

/// Feeds every connection in 16 KiB chunks; returns (bytes, events, seconds).
fn run(tables: &Arc<Tables>, conns: &[Bursts], json: bool) -> (usize, usize, f64) {
    let mut sink = JsonlSink::new(std::io::sink());
    let (mut bytes, mut events) = (0, 0);
    let t = Instant::now();
    let mut out = |e: &mut msntap::Event<'_>| {
        events += 1;
        if json {
            sink.event(e).expect("sink");
        } else {
            black_box(e);
        }
    };
    for c in conns {
        let mut s = Session::new(tables.clone(), 1, SessionHint::default());
        for (d, b) in c {
            bytes += b.len();
            for chunk in b.chunks(16 << 10) {
                s.feed(*d, chunk, Ts(1_100_000_000_000_000), &mut out);
            }
        }
        s.finish(Ts(1_100_000_000_000_000), &mut out);
    }
    black_box(&mut sink);
    (bytes, events, t.elapsed().as_secs_f64())
}

fn main() {
    let mb: usize = std::env::var("MSNTAP_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let size = mb << 20;
    let tables = Arc::new(Tables::builtin().expect("tables"));
    let inputs = [
        ("text MSG", vec![bulk(&text_frame(), size)]),
        ("P2P MSG", vec![bulk(&p2p_frame(), size)]),
        ("fixture mix", fixture_mix(&tables, size)),
    ];
    // MSNTAP_BENCH_INPUT=text|p2p|fixture and MSNTAP_BENCH_JSON=0|1 run one part (profiling).
    let only = std::env::var("MSNTAP_BENCH_INPUT").unwrap_or_default();
    let json_only = std::env::var("MSNTAP_BENCH_JSON").ok();
    println!("msntap decoder benchmark ({mb} MiB per input, best of 3)\n");
    for (name, conns) in &inputs {
        if !name
            .to_ascii_lowercase()
            .contains(&only.to_ascii_lowercase())
        {
            continue;
        }
        for json in [false, true] {
            if json_only.as_deref().is_some_and(|j| (j == "1") != json) {
                continue;
            }
            let mut best: Option<(usize, usize, f64)> = None;
            for _ in 0..3 {
                let r = run(&tables, conns, json);
                if best.is_none_or(|b| r.2 < b.2) {
                    best = Some(r);
                }
            }
            let Some((bytes, events, secs)) = best else {
                continue;
            };
            println!(
                "{name:12} {:14} {:7.1} MB/s  {:6.0} ns/event  ({events} events)",
                if json { "decode + JSON" } else { "decode" },
                bytes as f64 / secs / 1e6,
                secs * 1e9 / events as f64,
            );
        }
    }
}
