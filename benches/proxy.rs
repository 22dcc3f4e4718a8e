//! Proxy benchmark (run with `cargo bench --bench proxy`): bulk switchboard MSG traffic through
//! msntap with full decoding against the same traffic through a plain relay that decodes
//! nothing, added round-trip latency, and memory per idle session. Loopback only, bounded
//! counts; it prints figures and asserts nothing (targets are judged in docs/performance.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use msntap::proxy::{Config, Proxy};
use msntap::Tables;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The allocator of the msntap binary (src/main.rs), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bytes of MSG traffic per throughput run.
const BULK: usize = 64 << 20;
const RUNS: usize = 5;
const ROUND_TRIPS: usize = 20_000;
const IDLE: usize = 1_000;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tables = Arc::new(Tables::builtin().expect("tables"));
        println!("msntap proxy benchmark (loopback, 2 worker threads)\n");
        // MSNTAP_BENCH=throughput|latency|idle runs one part only. MSNTAP_BENCH=profile runs
        // msntap's throughput runs alone (no decoder-alone, direct or plain relay runs) and
        // prints CPU time per MB and per thread: for `perf record` and A/B comparisons on a
        // shared machine, where CPU time varies less than throughput.
        let only = std::env::var("MSNTAP_BENCH").unwrap_or_default();
        if only == "profile" {
            for kind in [Traffic::Text, Traffic::P2p] {
                profile(&tables, kind).await;
            }
            return;
        }
        let run = |part: &str| only.is_empty() || only == part;
        // Memory first, while the heap is fresh: later parts leave freed pages behind that
        // would hide growth.
        if run("idle") {
            idle(&tables).await;
        }
        if run("throughput") {
            for kind in [Traffic::Text, Traffic::P2p] {
                decode_only(&tables, kind);
                throughput(&tables, kind).await;
            }
        }
        if run("latency") {
            latency(&tables).await;
        }
    });
}

#[derive(Clone, Copy, Debug)]
enum Traffic {
    /// Instant messages: text/plain bodies of about 1 KiB.
    Text,
    /// File-transfer style P2P data messages: 48-byte binary header, 1,202 data bytes, footer.
    P2p,
}

fn frame(kind: Traffic) -> Vec<u8> {
    let body: Vec<u8> = match kind {
        Traffic::Text => {
            let mut b = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Segoe%20UI; EF=; CO=0; CS=1; PF=0\r\n\r\n".to_vec();
            b.extend((0..1000).map(|i| b"the quick brown fox jumps over the lazy dog "[i % 44]));
            b
        }
        Traffic::P2p => {
            let mut b = b"MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: alice@example.com\r\n\r\n".to_vec();
            let mut h = [0u8; 48];
            h[0..4].copy_from_slice(&7u32.to_le_bytes()); // session id
            h[4..8].copy_from_slice(&12345u32.to_le_bytes()); // message id
            h[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes()); // total size
            h[24..28].copy_from_slice(&1202u32.to_le_bytes()); // message size
            h[28..32].copy_from_slice(&0x0100_0030u32.to_le_bytes()); // flags: file data
            b.extend_from_slice(&h);
            b.extend((0..1202u32).map(|i| (i * 7 % 251) as u8));
            b.extend_from_slice(&2u32.to_be_bytes()); // footer: application id
            b
        }
    };
    let mut f = format!("MSG bob@example.com Bob {}\r\n", body.len()).into_bytes();
    f.extend_from_slice(&body);
    f
}

/// A switchboard that, per connection, waits for one line and then sends `count` frames.
async fn bulk_server(frame: Vec<u8>, count: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr").to_string();
    let frame = Arc::new(frame);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let f = frame.clone();
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut b = [0u8; 256];
                let _ = s.read(&mut b).await;
                // Batches of frames per write, as a busy server would send them.
                let batch: Vec<u8> = f.repeat(16);
                let mut left = count;
                while left >= 16 {
                    if s.write_all(&batch).await.is_err() {
                        return;
                    }
                    left -= 16;
                }
                for _ in 0..left {
                    if s.write_all(&f).await.is_err() {
                        return;
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    a
}

/// A relay that only copies bytes: the baseline.
async fn plain_relay(upstream: String) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let up = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut s) = TcpStream::connect(up).await else {
                    return;
                };
                let _ = c.set_nodelay(true);
                let _ = s.set_nodelay(true);
                let _ =
                    tokio::io::copy_bidirectional_with_sizes(&mut c, &mut s, 16 << 10, 16 << 10)
                        .await;
            });
        }
    });
    a
}

struct Running {
    addr: String,
    stop: oneshot::Sender<()>,
    events: Arc<AtomicU64>,
}

/// msntap in front of `upstream`, its events consumed (counted) as fast as they come.
async fn msntap(tables: &Arc<Tables>, upstream: String) -> Running {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<msntap::proxy::EventBatch>(256);
    let cfg = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        upstream: Some(upstream),
        max_connections: 8192,
        ..Config::default()
    };
    let p = Proxy::bind(cfg, tables.clone(), tx).await.expect("proxy");
    let addr = p.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(p.run(async move {
        let _ = stopped.await;
    }));
    let events = Arc::new(AtomicU64::new(0));
    let e2 = events.clone();
    tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            std::hint::black_box(&batch);
            e2.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    });
    Running { addr, stop, events }
}

/// Connects, asks for the bulk and reads it all; returns MB/s.
async fn pull(addr: &str, expect: usize) -> f64 {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let _ = c.set_nodelay(true);
    let t = Instant::now();
    c.write_all(b"ANS 1 alice@example.com 1.2.3 99\r\n")
        .await
        .expect("write");
    let mut b = vec![0u8; 64 << 10];
    let mut got = 0;
    loop {
        let n = c.read(&mut b).await.expect("read");
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, expect, "all bytes arrived");
    got as f64 / t.elapsed().as_secs_f64() / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The decoder alone on the same bytes (16 KiB chunks, no sockets): the ceiling for the proxy.
fn decode_only(tables: &Arc<Tables>, kind: Traffic) {
    let f = frame(kind);
    let count = BULK / f.len();
    let mut data = b"ANS 1 alice@example.com 1.2.3 99\r\n".to_vec();
    let c2s_len = data.len();
    for _ in 0..count {
        data.extend_from_slice(&f);
    }
    let mut best = 0f64;
    for _ in 0..3 {
        let mut s = msntap::Session::new(tables.clone(), 1, msntap::SessionHint::default());
        let mut evs = Vec::new();
        let t = Instant::now();
        s.feed(msntap::Dir::C2s, &data[..c2s_len], msntap::Ts(0), &mut evs);
        let mut n = 0;
        for chunk in data[c2s_len..].chunks(16 << 10) {
            s.feed(msntap::Dir::S2c, chunk, msntap::Ts(0), &mut evs);
            n += evs.len();
            evs.clear();
        }
        let mbs = (data.len() - c2s_len) as f64 / t.elapsed().as_secs_f64() / 1e6;
        std::hint::black_box(n);
        best = best.max(mbs);
    }
    println!("decoder alone (Session::feed, no sockets), {kind:?}: {best:.1} MB/s");
}

async fn throughput(tables: &Arc<Tables>, kind: Traffic) {
    let f = frame(kind);
    let count = BULK / f.len();
    let total = count * f.len();
    let server = bulk_server(f.clone(), count).await;
    let relay = plain_relay(server.clone()).await;
    let proxy = msntap(tables, server.clone()).await;
    let (mut direct, mut plain, mut tap) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        direct.push(pull(&server, total).await);
        plain.push(pull(&relay, total).await);
        tap.push(pull(&proxy.addr, total).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let events = proxy.events.load(Ordering::Relaxed);
    let _ = proxy.stop.send(());
    let (d, p, t) = (median(direct), median(plain), median(tap));
    println!(
        "throughput, {kind:?} MSG frames of {} bytes, {} MiB per run, median of {RUNS} runs:",
        f.len(),
        total >> 20
    );
    println!("  direct (no relay)        {d:8.1} MB/s");
    println!("  plain relay, no decoding {p:8.1} MB/s");
    println!(
        "  msntap, full decoding    {t:8.1} MB/s  = {:.0}% of the plain relay ({events} events, {:.0} frames/s)",
        100.0 * t / p,
        t * 1e6 / f.len() as f64
    );
    println!();
}

/// msntap's throughput runs alone, with the process's CPU time (user and system) per MB and
/// each busy thread's time on a CPU and waiting for one.
async fn profile(tables: &Arc<Tables>, kind: Traffic) {
    let f = frame(kind);
    let count = BULK / f.len();
    let total = count * f.len();
    let server = bulk_server(f.clone(), count).await;
    let proxy = msntap(tables, server.clone()).await;
    let mut tap = Vec::new();
    let cpu0 = cpu_times();
    let sched0 = sched_times();
    let t0 = Instant::now();
    for _ in 0..RUNS {
        tap.push(pull(&proxy.addr, total).await);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_times();
    let sched1 = sched_times();
    let _ = proxy.stop.send(());
    let t = median(tap);
    let mb = (RUNS * total) as f64 / 1e6;
    println!(
        "msntap alone, {kind:?}: {t:.1} MB/s (median of {RUNS}); per MB: wall {:.2} ms, CPU user {:.2} ms + system {:.2} ms (server, client and proxy together)",
        wall * 1e3 / mb,
        (cpu1.0 - cpu0.0) * 1e3 / mb,
        (cpu1.1 - cpu0.1) * 1e3 / mb
    );
    // Per thread: time on a CPU and time runnable but waiting for one (other load on the
    // machine), from /proc/self/task/*/schedstat.
    for (tid, (name, run1, wait1)) in &sched1 {
        let (run0, wait0) = sched0
            .get(tid)
            .map(|(_, r, w)| (*r, *w))
            .unwrap_or((0.0, 0.0));
        let (run, wait) = (run1 - run0, wait1 - wait0);
        if run > 0.01 * wall {
            println!(
                "  thread {name:<16} on CPU {:5.1}% of the wall time, waiting for a CPU {:5.1}%",
                100.0 * run / wall,
                100.0 * wait / wall
            );
        }
    }
}

/// Per thread id: name, seconds on a CPU, seconds runnable but waiting (Linux schedstat).
fn sched_times() -> std::collections::BTreeMap<String, (String, f64, f64)> {
    let mut m = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return m;
    };
    for e in dir.flatten() {
        let p = e.path();
        let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let st = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
        let v: Vec<f64> = st
            .split_whitespace()
            .filter_map(|x| x.parse::<f64>().ok())
            .collect();
        if v.len() >= 2 {
            let tid = e.file_name().to_string_lossy().into_owned();
            m.insert(tid, (name.trim().to_string(), v[0] / 1e9, v[1] / 1e9));
        }
    }
    m
}

/// User and system CPU seconds of this process so far (Linux /proc/self/stat).
fn cpu_times() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th field.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0; // USER_HZ on Linux
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / tick;
    (get(11), get(12))
}

/// Round trips of a keep-alive (PNG -> QNG) through `addr`; returns sorted RTTs in µs.
async fn ping(addr: &str) -> Vec<f64> {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let _ = c.set_nodelay(true);
    let mut b = [0u8; 64];
    let mut v = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS + 200 {
        let t = Instant::now();
        c.write_all(b"PNG\r\n").await.expect("write");
        let mut got = 0;
        while got < 8 {
            let n = c.read(&mut b[got..]).await.expect("read");
            assert!(n > 0, "server closed");
            got += n;
        }
        if i >= 200 {
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

async fn pong_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut b = [0u8; 64];
                let mut pending = 0usize;
                loop {
                    let n = match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending += n;
                    while pending >= 5 {
                        pending -= 5;
                        if s.write_all(b"QNG 50\r\n").await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    a
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency(tables: &Arc<Tables>) {
    let server = pong_server().await;
    let relay = plain_relay(server.clone()).await;
    let proxy = msntap(tables, server.clone()).await;
    let d = ping(&server).await;
    let p = ping(&relay).await;
    let t = ping(&proxy.addr).await;
    let _ = proxy.stop.send(());
    println!("round-trip latency, {ROUND_TRIPS} PNG/QNG exchanges (µs):");
    for (name, v) in [("direct", &d), ("plain relay", &p), ("msntap", &t)] {
        println!(
            "  {name:<12} p50 {:7.1}  p99 {:7.1}  p99.9 {:7.1}",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 0.999)
        );
    }
    println!(
        "  added by msntap: p50 {:.1} µs, p99 {:.1} µs over direct ({:.1} µs p99 over the plain relay)",
        pct(&t, 0.5) - pct(&d, 0.5),
        pct(&t, 0.99) - pct(&d, 0.99),
        pct(&t, 0.99) - pct(&p, 0.99)
    );
    println!();
}

fn vm_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// A notification server that answers VER and then keeps the connection open, idle.
async fn idle_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 128];
                if matches!(s.read(&mut b).await, Ok(n) if n > 0) {
                    let _ = s.write_all(b"VER 1 MSNP11\r\n").await;
                }
                // Stay until the client goes.
                while matches!(s.read(&mut b).await, Ok(n) if n > 0) {}
            });
        }
    });
    a
}

/// Opens `IDLE` sessions through `addr`, each past its VER exchange; returns the RSS growth
/// in KiB and the streams (kept open by the caller).
async fn open_idle(addr: &str) -> (u64, Vec<TcpStream>) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = vm_rss_kib().unwrap_or(0);
    let mut v = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(b"VER 1 MSNP11 CVR0\r\n").await.expect("write");
        let mut b = [0u8; 32];
        let mut got = 0;
        while got < 14 {
            let n = c.read(&mut b[got..]).await.expect("read");
            assert!(n > 0);
            got += n;
        }
        v.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = vm_rss_kib().unwrap_or(0);
    (after.saturating_sub(before), v)
}

async fn idle(tables: &Arc<Tables>) {
    let server = idle_server().await;
    // msntap first: memory it frees afterwards can only make the baseline look smaller, so
    // the per-session figure errs on the high side.
    let proxy = msntap(tables, server.clone()).await;
    let (with, conns) = open_idle(&proxy.addr).await;
    let events = proxy.events.load(Ordering::Relaxed);
    drop(conns);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = proxy.stop.send(());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Baseline: the same clients and server without a proxy in between.
    let (base, conns) = open_idle(&server).await;
    drop(conns);
    let per = (with.saturating_sub(base)) as f64 / IDLE as f64;
    println!("{IDLE} concurrent idle sessions (each past VER), VmRSS growth:");
    println!("  with msntap in between    {with:7} KiB  ({events} events)");
    println!("  clients and server alone  {base:7} KiB");
    println!(
        "  msntap per session        {per:7.1} KiB  (upper bound, all growth counted: {:.1} KiB)",
        with as f64 / IDLE as f64
    );
    println!();
}
