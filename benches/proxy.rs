//! Proxy benchmark (run with `cargo bench --bench proxy`): throughput of a bulk text MSG
//! stream and of a real-shaped mix through msntap with full decoding and JSON Lines to
//! /dev/null, against a direct connection, socat (the plain-relay baseline) and mitmproxy
//! (`mitmdump --mode reverse:tcp://`, when installed); added round-trip latency; and the
//! peak memory of the `msntap` binary under a PNG flood, a 200 MB line and 1,000 idle
//! clients. Loopback only, bounded counts; it prints figures and asserts nothing (the
//! targets are judged in docs/performance.md). MSNTAP_BENCH=throughput|latency|memory|
//! binary|profile runs one part; profile runs msntap's throughput alone with CPU time per MB
//! by thread group, the A/B measure on a shared machine; binary times the msntap binary
//! itself, as a process of its own, beside a profile-guided build of it (benches/pgo) when
//! the toolchain can make one (MSNTAP_BENCH_PGO=0 skips that).

use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use msntap::event::EventKind;
use msntap::output::OutputConfig;
use msntap::proxy::output::{LiveOutput, FLUSH_EVERY};
use msntap::proxy::{Config, Proxy};
use msntap::Tables;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

mod lean;
mod pgo;

/// The allocator of the msntap binary (src/main.rs), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bytes of server traffic per throughput run.
const BULK: usize = 64 << 20;
const RUNS: usize = 5;
const ROUND_TRIPS: usize = 20_000;
const IDLE: usize = 1_000;
const FLOOD: usize = 100 << 20;
const LONG_LINE: usize = 200 << 20;

fn main() {
    let only = std::env::var("MSNTAP_BENCH").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only == part;
    // The clients and servers of the benchmark; msntap gets a runtime of its own, as the
    // binary has, and socat and mitmproxy are processes of their own.
    let bench = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench")
        .enable_all()
        .build()
        .expect("runtime");
    let tables = Arc::new(Tables::builtin().expect("tables"));
    println!("msntap proxy benchmark (loopback; msntap: 2 worker threads and an event thread)\n");
    if only == "profile" {
        for kind in [Traffic::Bulk, Traffic::Mix] {
            profile(&bench, &tables, kind);
        }
        return;
    }
    if run("memory") {
        memory(&bench);
    }
    if run("throughput") {
        for kind in [Traffic::Bulk, Traffic::Mix] {
            throughput(&bench, &tables, kind);
        }
    }
    if run("latency") {
        latency(&bench, &tables);
    }
    if run("binary") {
        let pgo = match pgo::build() {
            Ok(p) => Some(p),
            Err(why) => {
                println!("PGO build: {why}");
                None
            }
        };
        for kind in [Traffic::Bulk, Traffic::Mix] {
            binaries(&bench, kind, pgo.as_deref());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Traffic {
    /// Instant messages: text/plain bodies of about 1 KiB (1,147-byte frames).
    Bulk,
    /// Shaped like a real session: mostly short command lines (presence, acks, pings),
    /// messages of about 350 bytes, and P2P data chunks of about 1,250 bytes with their
    /// 48-byte binary header.
    Mix,
}

fn text_msg(n: usize) -> Vec<u8> {
    let mut b = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Segoe%20UI; EF=; CO=0; CS=1; PF=0\r\n\r\n".to_vec();
    b.extend((0..n).map(|i| b"the quick brown fox jumps over the lazy dog "[i % 44]));
    let mut f = format!("MSG bob@example.com Bob {}\r\n", b.len()).into_bytes();
    f.extend_from_slice(&b);
    f
}

fn typing() -> Vec<u8> {
    let b = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\nTypingUser: bob@example.com\r\n\r\n\r\n";
    let mut f = format!("MSG bob@example.com Bob {}\r\n", b.len()).into_bytes();
    f.extend_from_slice(b);
    f
}

fn p2p_chunk(id: u32, offset: u64) -> Vec<u8> {
    let mut b = b"MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: alice@example.com\r\n\r\n".to_vec();
    let mut h = [0u8; 48];
    h[0..4].copy_from_slice(&7u32.to_le_bytes()); // session id
    h[4..8].copy_from_slice(&id.to_le_bytes()); // message id
    h[8..16].copy_from_slice(&offset.to_le_bytes());
    h[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes()); // total size
    h[24..28].copy_from_slice(&1202u32.to_le_bytes()); // message size
    h[28..32].copy_from_slice(&0x0100_0030u32.to_le_bytes()); // flags: file data
    b.extend_from_slice(&h);
    b.extend((0..1202u32).map(|i| (i * 7 % 251) as u8));
    b.extend_from_slice(&2u32.to_be_bytes()); // footer: application id
    let mut f = format!("MSG bob@example.com Bob {}\r\n", b.len()).into_bytes();
    f.extend_from_slice(&b);
    f
}

/// One repeating unit of the traffic and the frames in it.
fn unit(kind: Traffic) -> (Vec<u8>, usize, Vec<usize>) {
    let frames: Vec<Vec<u8>> = match kind {
        Traffic::Bulk => vec![text_msg(1000)],
        Traffic::Mix => {
            let small: [&[u8]; 10] = [
                b"NLN NLN carol@example.com Carol 1342210085\r\n",
                b"ACK 12\r\n",
                b"QNG 50\r\n",
                b"ILN 5 AWY dave@example.com Dave 268435492\r\n",
                b"CHG 7 NLN 1342210085\r\n",
                b"FLN erin@example.com\r\n",
                b"BPR PHH 1%20425%20555%200100\r\n",
                b"NAK 13\r\n",
                b"JOI frank@example.com Frank 1342210085\r\n",
                b"BYE frank@example.com\r\n",
            ];
            let mut v: Vec<Vec<u8>> = small.iter().map(|s| s.to_vec()).collect();
            v.push(typing());
            v.push(text_msg(210));
            v.push(text_msg(230));
            v.push(text_msg(190));
            for i in 0..3 {
                v.push(p2p_chunk(12345 + i, u64::from(i) * 1202));
            }
            // Interleave: a short line between longer frames, as a busy session reads.
            let (s, l): (Vec<_>, Vec<_>) = v.into_iter().partition(|f| f.len() < 100);
            let mut out = Vec::new();
            let mut li = l.into_iter();
            for x in s {
                out.push(x);
                if let Some(y) = li.next() {
                    out.push(y);
                }
            }
            out.extend(li);
            out
        }
    };
    let sizes: Vec<usize> = frames.iter().map(Vec::len).collect();
    (frames.concat(), sizes.len(), sizes)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A server that, per connection, waits for one line and then sends `data` (in 64 KiB
/// writes, as a busy server's socket buffer would take it).
fn bulk_server(rt: &Runtime, data: Arc<Vec<u8>>) -> String {
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = l.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let d = data.clone();
                tokio::spawn(async move {
                    let _ = s.set_nodelay(true);
                    let mut b = [0u8; 256];
                    let _ = s.read(&mut b).await;
                    for chunk in d.chunks(64 << 10) {
                        if s.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = s.shutdown().await;
                    while matches!(s.read(&mut b).await, Ok(n) if n > 0) {}
                });
            }
        });
        a
    })
}

/// Connects, asks for the bulk and reads it all; returns the seconds it took.
async fn pull(addr: &str, expect: usize) -> f64 {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let _ = c.set_nodelay(true);
    let t = Instant::now();
    c.write_all(b"ANS 1 alice@example.com 1.2.3 99\r\n")
        .await
        .expect("write");
    let mut b = vec![0u8; 256 << 10];
    let mut got = 0;
    loop {
        let n = c.read(&mut b).await.expect("read");
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, expect, "all bytes arrived");
    t.elapsed().as_secs_f64()
}

/// msntap in this process, on a runtime of its own, with the outputs `msntap proxy --json
/// /dev/null --quiet` has, on an event thread of its own.
struct Tap {
    addr: String,
    rt: Option<Runtime>,
    stop: Option<oneshot::Sender<()>>,
    /// Events written, plus events dropped (counted from the dropped events).
    handled: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn tap(tables: &Arc<Tables>, upstream: String) -> Tap {
    tap_with(tables, upstream, true, Config::default().backlog)
}

/// `decode`: false to take the frames off the backlog without decoding them (the
/// forwarding path alone).
fn tap_with(tables: &Arc<Tables>, upstream: String, decode: bool, backlog: usize) -> Tap {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("msntap-proxy")
        .enable_all()
        .build()
        .expect("runtime");
    let cfg = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        upstream: Some(upstream),
        max_connections: 8192,
        backlog,
        ..Config::default()
    };
    let (p, mut events) = rt
        .block_on(Proxy::bind(cfg, tables.clone()))
        .expect("proxy");
    let addr = p.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    rt.spawn(p.run(async move {
        let _ = stopped.await;
    }));
    let ocfg = OutputConfig {
        json: Some("/dev/null".into()),
        quiet: true,
        ..OutputConfig::default()
    };
    let mut out = LiveOutput::new(&ocfg, tables).expect("outputs");
    let handled = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let (h, d) = (handled.clone(), dropped.clone());
    let thread = std::thread::Builder::new()
        .name("msntap-events".into())
        .spawn(move || {
            msntap::proxy::output::lower_priority();
            if !decode {
                while events.skip(FLUSH_EVERY).is_some() {}
                return;
            }
            loop {
                let r = events.next(FLUSH_EVERY, FLUSH_EVERY, &mut |ev| {
                    if let EventKind::Dropped(x) = &ev.kind {
                        d.fetch_add(x.events, Ordering::Relaxed);
                        h.fetch_add(x.events, Ordering::Relaxed);
                    }
                    out.event(ev);
                    h.fetch_add(1, Ordering::Relaxed);
                });
                match r {
                    Some(del) => out.tick(del.idle),
                    None => break,
                }
            }
            out.finish(Duration::from_secs(1));
        })
        .expect("event thread");
    Tap {
        addr,
        rt: Some(rt),
        stop: Some(stop),
        handled,
        dropped,
        thread: Some(thread),
    }
}

impl Tap {
    /// Waits until `n` events were handled (written or counted as dropped).
    fn wait_handled(&self, n: u64) {
        let end = Instant::now() + Duration::from_secs(120);
        while self.handled.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < end, "events not written in time");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// A free loopback port (for the relays that are processes of their own).
fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn wait_listening(addr: &str, what: &str) -> bool {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("  ({what} did not start listening on {addr})");
    false
}

/// A relay process, killed when dropped.
struct Relay(Child, String);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// socat relaying `port` to `upstream` (`buf`: its -b transfer size).
fn socat(upstream: &str, buf: usize) -> Option<Relay> {
    let port = free_port();
    let child = Command::new("socat")
        .args([
            "-b".to_string(),
            buf.to_string(),
            format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
            format!("TCP:{upstream},nodelay"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr = format!("127.0.0.1:{port}");
    let r = Relay(child, addr.clone());
    wait_listening(&addr, "socat").then_some(r)
}

/// mitmproxy in reverse TCP mode (no MSNP decoding), if installed.
fn mitmproxy(upstream: &str) -> Option<Relay> {
    let port = free_port();
    let child = Command::new("mitmdump")
        .args([
            "-q".to_string(),
            "--mode".to_string(),
            format!("reverse:tcp://{upstream}"),
            "--listen-host".to_string(),
            "127.0.0.1".to_string(),
            "--listen-port".to_string(),
            port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr = format!("127.0.0.1:{port}");
    let r = Relay(child, addr.clone());
    wait_listening(&addr, "mitmdump").then_some(r)
}

fn throughput(bench: &Runtime, tables: &Arc<Tables>, kind: Traffic) {
    let (u, per_unit, sizes) = unit(kind);
    let units = BULK / u.len();
    let data = Arc::new(u.repeat(units));
    let total = data.len();
    let frames = (units * per_unit) as u64;
    let server = bulk_server(bench, data);
    let mut sorted = sizes.clone();
    sorted.sort();
    println!(
        "throughput, {kind:?}: {} MiB per run, {frames} frames ({} bytes on average, median {}), median of {RUNS} runs:",
        total >> 20,
        total as u64 / frames,
        sorted[sorted.len() / 2]
    );
    // socat's transfer size: the faster of its default (8 KiB) and 64 KiB is the baseline.
    let mut best_socat: Option<(usize, f64)> = None;
    for b in [8192, 65536] {
        if let Some(r) = socat(&server, b) {
            let v: Vec<f64> = (0..3).map(|_| bench.block_on(pull(&r.1, total))).collect();
            let mbs = total as f64 / median(v) / 1e6;
            if best_socat.is_none_or(|(_, m)| mbs > m) {
                best_socat = Some((b, mbs));
            }
        }
    }
    let socat_buf = best_socat.map(|(b, _)| b);
    let s = socat_buf.and_then(|b| socat(&server, b));
    if s.is_none() {
        println!("  (socat not installed: apt-get install socat)");
    }
    let m = mitmproxy(&server);
    let t = tap(tables, server.clone());
    // The same with a backlog that holds a whole run: the time until every event is decoded
    // and written, nothing dropped (the throughput with full decoding).
    let big = tap_with(tables, server.clone(), true, 1 << 30);
    let (mut direct, mut plain, mut mitm, mut fwd, mut all, mut full) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut expected = 0u64;
    for _ in 0..RUNS {
        direct.push(bench.block_on(pull(&server, total)));
        if let Some(s) = &s {
            plain.push(bench.block_on(pull(&s.1, total)));
        }
        if let Some(m) = &m {
            mitm.push(bench.block_on(pull(&m.1, total)));
        }
        // Every event of the run: the frames, the client's ANS, two connects and a close.
        expected += frames + 4;
        let t0 = Instant::now();
        fwd.push(bench.block_on(pull(&t.addr, total)));
        t.wait_handled(expected);
        all.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        bench.block_on(pull(&big.addr, total));
        big.wait_handled(expected);
        full.push(t0.elapsed().as_secs_f64());
    }
    let dropped = t.dropped.load(Ordering::Relaxed);
    let big_dropped = big.dropped.load(Ordering::Relaxed);
    drop(t);
    drop(big);
    let mbs = |v: Vec<f64>| total as f64 / median(v) / 1e6;
    let d = mbs(direct);
    println!("  direct (no relay)                        {d:8.1} MB/s");
    let p = if plain.is_empty() {
        None
    } else {
        let p = mbs(plain);
        println!(
            "  socat -b {:<6} (plain relay)            {p:8.1} MB/s",
            socat_buf.unwrap_or(0)
        );
        Some(p)
    };
    let mt = if mitm.is_empty() {
        println!("  mitmproxy: not installed (pip install mitmproxy), skipped");
        None
    } else {
        let v = mbs(mitm);
        println!("  mitmdump --mode reverse:tcp://            {v:8.1} MB/s");
        Some(v)
    };
    let f = mbs(fwd);
    let a = mbs(all);
    let per_run = median(full.clone());
    let fl = mbs(full);
    let ratio = |x: f64, y: Option<f64>| y.map_or("-".to_string(), |y| format!("{:.2}x", x / y));
    let of = RUNS as u64 * (frames + 4);
    println!(
        "  msntap (default backlog), bytes delivered {f:8.1} MB/s  ({} socat)",
        ratio(f, p)
    );
    println!(
        "  msntap (default backlog), run over        {a:8.1} MB/s  ({dropped} of {of} events dropped)"
    );
    println!(
        "  msntap, every event decoded and written   {fl:8.1} MB/s  ({} socat, {} mitmproxy; {:.0} frames/s; {big_dropped} dropped)",
        ratio(fl, p),
        ratio(fl, mt),
        frames as f64 / per_run
    );
    println!();
}

/// The msntap binary as a process of its own, `proxy --json /dev/null --quiet --backlog 1G`:
/// the release build and, when the toolchain can make one, the profile-guided build
/// (benches/pgo, trained on the fixtures in captures/), with socat, taking turns.
/// Each run starts a fresh process and times from the client's connect until that process
/// has exited after SIGTERM, which it does once every queued event is written: the
/// throughput with full decoding, as a user runs it. A run whose summary counts other than
/// every frame and the client's ANS as commands, or any dropped event, is reported.
fn binaries(bench: &Runtime, kind: Traffic, pgo: Option<&std::path::Path>) {
    let (u, per_unit, _) = unit(kind);
    let units = BULK / u.len();
    let commands = (units * per_unit + 1) as u64;
    let data = Arc::new(u.repeat(units));
    let total = data.len();
    let server = bulk_server(bench, data);
    let s = socat(&server, 65536);
    let release = std::path::PathBuf::from(env!("CARGO_BIN_EXE_msntap"));
    let mut bins: Vec<(&str, &std::path::Path, Vec<f64>)> = vec![("release", &release, vec![])];
    if let Some(p) = pgo {
        bins.push(("PGO", p, vec![]));
    }
    let mut plain = Vec::new();
    let mut wrong = Vec::new();
    for _ in 0..RUNS {
        if let Some(s) = &s {
            plain.push(bench.block_on(pull(&s.1, total)));
        }
        for (name, exe, times) in &mut bins {
            let b = bin_at(exe, &server, &["--backlog", "1G"]);
            let t0 = Instant::now();
            bench.block_on(pull(&b.addr, total));
            let rest = b.stop_with("-TERM");
            times.push(t0.elapsed().as_secs_f64());
            let counted = rest
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .find(|w| w[1].trim_end_matches(',') == "commands")
                .and_then(|w| w[0].parse::<u64>().ok());
            if counted != Some(commands) || rest.contains("dropped") {
                let line = rest.lines().rfind(|l| l.contains("proxied connections"));
                wrong.push(format!(
                    "{name}: {counted:?} commands of {commands}: {}",
                    line.unwrap_or("no summary")
                ));
            }
        }
    }
    let mbs = |v: &[f64]| total as f64 / median(v.to_vec()) / 1e6;
    println!(
        "binary, {kind:?}: {} MiB per run, median of {RUNS} runs, every event decoded and written:",
        total >> 20
    );
    let p = (!plain.is_empty()).then(|| mbs(&plain));
    match p {
        Some(p) => println!("  socat -b 65536                            {p:8.1} MB/s"),
        None => println!("  (socat not installed: apt-get install socat)"),
    }
    for (name, _, times) in &bins {
        let v = mbs(times);
        println!(
            "  msntap, {name:<8} {:<24} {v:8.1} MB/s  ({})",
            "",
            p.map_or("-".to_string(), |p| format!("{:.2}x socat", v / p))
        );
    }
    for w in wrong {
        println!("  NOT every event decoded and written: {w}");
    }
    println!();
}

/// msntap's throughput runs alone, with CPU time per MB by thread group; then the same
/// with the events taken off the backlog undecoded (the forwarding path alone), then socat
/// with its own CPU time, and the event side alone (no sockets).
fn profile(bench: &Runtime, tables: &Arc<Tables>, kind: Traffic) {
    let (u, per_unit, _) = unit(kind);
    let units = BULK / u.len();
    let data = Arc::new(u.repeat(units));
    let total = data.len();
    let frames = (units * per_unit) as u64;
    let mb = (RUNS * total) as f64 / 1e6;
    let server = bulk_server(bench, data.clone());
    for decode in [true, false] {
        let t = tap_with(tables, server.clone(), decode, Config::default().backlog);
        // Warm up once.
        bench.block_on(pull(&t.addr, total));
        let mut expected = frames + 4;
        if decode {
            t.wait_handled(expected);
        }
        let s0 = sched_times();
        let t0 = Instant::now();
        let mut v = Vec::new();
        for _ in 0..RUNS {
            let t1 = Instant::now();
            bench.block_on(pull(&t.addr, total));
            if decode {
                expected += frames + 4;
                t.wait_handled(expected);
            }
            v.push(t1.elapsed().as_secs_f64());
        }
        let wall = t0.elapsed().as_secs_f64();
        let s1 = sched_times();
        let dropped = t.dropped.load(Ordering::Relaxed);
        drop(t);
        if decode {
            println!(
                "msntap, {kind:?}: {:.1} MB/s with every event written (median of {RUNS}; {dropped} dropped); CPU per MB by thread:",
                total as f64 / median(v) / 1e6
            );
        } else {
            println!(
                "msntap, {kind:?}, frames taken off the backlog undecoded (the forwarding path alone): {:.1} MB/s; CPU per MB:",
                total as f64 / median(v) / 1e6
            );
        }
        print_groups(&s0, &s1, wall, mb);
    }
    if let Some(r) = socat(&server, 65536) {
        let c0 = proc_cpu(r.0.id());
        let s0 = sched_times();
        let t0 = Instant::now();
        let v: Vec<f64> = (0..RUNS)
            .map(|_| bench.block_on(pull(&r.1, total)))
            .collect();
        let wall = t0.elapsed().as_secs_f64();
        let s1 = sched_times();
        let c1 = proc_cpu(r.0.id());
        println!(
            "socat -b 65536, {kind:?}: {:.1} MB/s; CPU per MB: socat {:.3} ms, and in this process:",
            total as f64 / median(v) / 1e6,
            (c1 - c0) * 1e3 / mb
        );
        print_groups(&s0, &s1, wall, mb);
    }
    // The event side alone on one thread: framing and decoding (Session::feed) and the
    // outputs of `--json /dev/null --quiet`.
    let ocfg = OutputConfig {
        json: Some("/dev/null".into()),
        quiet: true,
        ..OutputConfig::default()
    };
    let mut alone = 0f64;
    for _ in 0..3 {
        let mut s = msntap::Session::new(tables.clone(), 1, msntap::SessionHint::default());
        let mut n = 0u64;
        let t = Instant::now();
        for chunk in data.chunks(64 << 10) {
            s.feed(msntap::Dir::S2c, chunk, msntap::Ts(0), &mut |e| {
                n += u64::from(e.command().is_some());
            });
        }
        std::hint::black_box(n);
        alone = alone.max(total as f64 / t.elapsed().as_secs_f64() / 1e6);
    }
    println!("decoding alone, {kind:?} (Session::feed, events dropped at once): {alone:.1} MB/s = {:.3} ms per MB", 1e3 / alone);
    let mut best = 0f64;
    for _ in 0..3 {
        let mut out = LiveOutput::new(&ocfg, tables).expect("outputs");
        let mut s = msntap::Session::new(tables.clone(), 1, msntap::SessionHint::default());
        let t = Instant::now();
        s.feed(
            msntap::Dir::C2s,
            b"ANS 1 alice@example.com 1.2.3 99\r\n",
            msntap::Ts(0),
            &mut |e| out.event(e),
        );
        for chunk in data.chunks(64 << 10) {
            s.feed(msntap::Dir::S2c, chunk, msntap::Ts(0), &mut |e| {
                out.event(e)
            });
        }
        out.finish(Duration::from_secs(1));
        best = best.max(total as f64 / t.elapsed().as_secs_f64() / 1e6);
    }
    println!(
        "the event side alone, {kind:?} (one thread, no sockets): {best:.1} MB/s = {:.3} ms per MB",
        1e3 / best
    );
    // The lean path of benches/lean on the same stream, one thread: the framer alone, then
    // the framer and a JSON line written straight from each frame's bytes (a subset of the
    // schema). What an event side of the prototype's shape could do on one core here.
    for stage in [lean::Stage::Frame, lean::Stage::Json] {
        let mut best = 0f64;
        let mut run = None;
        for _ in 0..3 {
            let r = lean::run_stream(&data, 64 << 10, tables, stage, &mut std::io::sink());
            best = best.max(total as f64 / r.secs / 1e6);
            run = Some(r);
        }
        let (frames, json) = run.map_or((0, 0), |r| (r.count, r.json_bytes));
        println!(
            "lean path alone, {kind:?}, {} (benches/lean, one thread, {frames} frames, {:.1} MB of JSON): {best:.1} MB/s = {:.3} ms per MB",
            match stage {
                lean::Stage::Frame => "framer + dialect",
                _ => "framer + JSON from the frame's bytes",
            },
            json as f64 / 1e6,
            1e3 / best
        );
    }
    println!();
}

fn print_groups(
    s0: &std::collections::BTreeMap<String, (String, f64, f64)>,
    s1: &std::collections::BTreeMap<String, (String, f64, f64)>,
    wall: f64,
    mb: f64,
) {
    let mut groups: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for (tid, (name, run1, wait1)) in s1 {
        let (run0, wait0) = s0.get(tid).map(|(_, r, w)| (*r, *w)).unwrap_or((0.0, 0.0));
        let g = groups.entry(name.clone()).or_default();
        g.0 += run1 - run0;
        g.1 += wait1 - wait0;
    }
    let mut sum = 0.0;
    for (name, (run, wait)) in &groups {
        if *run > 0.001 * wall {
            sum += run;
            println!(
                "  {name:<16} {:6.3} ms on a CPU per MB ({:5.1}% of the wall time), waiting for a CPU {:5.1}%",
                run * 1e3 / mb,
                100.0 * run / wall,
                100.0 * wait / wall
            );
        }
    }
    println!("  all threads      {:6.3} ms per MB", sum * 1e3 / mb);
}

/// User plus system CPU seconds of process `pid` and of its children it waited for so far
/// (socat forks a child per connection; Linux /proc/PID/stat).
fn proc_cpu(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    get(11) + get(12) + get(13) + get(14)
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

/// Rounds of [`ROUND_TRIPS`] / `ROUNDS` round trips: the paths take turns, so that a change in
/// the machine's load (it is shared) falls on all of them alike instead of on whichever ran
/// then.
const ROUNDS: usize = 20;

/// One client connection sending `PNG` and timing each `QNG` (µs).
struct Pinger {
    c: TcpStream,
    v: Vec<f64>,
}

impl Pinger {
    /// Connected and warmed up by 200 untimed exchanges.
    async fn connect(addr: &str) -> Pinger {
        let c = TcpStream::connect(addr).await.expect("connect");
        let _ = c.set_nodelay(true);
        let mut p = Pinger {
            c,
            v: Vec::with_capacity(ROUND_TRIPS),
        };
        p.exchange(200).await;
        p.v.clear();
        p
    }

    async fn exchange(&mut self, n: usize) {
        let mut b = [0u8; 64];
        for _ in 0..n {
            let t = Instant::now();
            self.c.write_all(b"PNG\r\n").await.expect("write");
            let mut got = 0;
            while got < 8 {
                let n = self.c.read(&mut b[got..]).await.expect("read");
                assert!(n > 0, "server closed");
                got += n;
            }
            self.v.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }

    fn sorted(mut self) -> Vec<f64> {
        self.v.sort_by(|a, b| a.total_cmp(b));
        self.v
    }
}

fn pong_server(rt: &Runtime) -> String {
    rt.block_on(async {
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
    })
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn latency(bench: &Runtime, tables: &Arc<Tables>) {
    let server = pong_server(bench);
    let s = socat(&server, 8192);
    let m = mitmproxy(&server);
    let t = tap(tables, server.clone());
    let mut paths = vec![("direct", server.clone())];
    if let Some(s) = &s {
        paths.push(("socat", s.1.clone()));
    }
    if let Some(m) = &m {
        paths.push(("mitmproxy", m.1.clone()));
    }
    paths.push(("msntap", t.addr.clone()));
    let mut pingers: Vec<Pinger> = paths
        .iter()
        .map(|(_, a)| bench.block_on(Pinger::connect(a)))
        .collect();
    for round in 0..ROUNDS {
        // Each round starts with another path.
        for k in 0..pingers.len() {
            let i = (round + k) % pingers.len();
            bench.block_on(pingers[i].exchange(ROUND_TRIPS / ROUNDS));
        }
    }
    let rows: Vec<(&str, Vec<f64>)> = paths
        .iter()
        .map(|(name, _)| *name)
        .zip(pingers.into_iter().map(Pinger::sorted))
        .collect();
    drop(t);
    println!("round-trip latency, {ROUND_TRIPS} PNG/QNG exchanges per path in {ROUNDS} rounds taken in turn (µs; msntap decodes and writes JSON Lines to /dev/null):");
    for (name, v) in &rows {
        println!(
            "  {name:<10} p50 {:7.1}  p99 {:7.1}  p99.9 {:7.1}",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 0.999)
        );
    }
    let d = &rows[0].1;
    let tp = &rows[rows.len() - 1].1;
    println!(
        "  added by msntap over direct: p50 {:.1} µs, p99 {:.1} µs",
        pct(tp, 0.5) - pct(d, 0.5),
        pct(tp, 0.99) - pct(d, 0.99)
    );
    println!();
}

/// The `msntap` binary as a user runs it, JSON Lines to /dev/null; its stderr is read on.
struct Bin {
    child: Child,
    addr: String,
    err: Option<BufReader<std::process::ChildStderr>>,
}

fn bin(upstream: &str, extra: &[&str]) -> Bin {
    // MSNTAP_BENCH_BIN runs another build of msntap instead (an A/B against an older one).
    let exe =
        std::env::var_os("MSNTAP_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_msntap").into());
    bin_at(exe.as_ref(), upstream, extra)
}

fn bin_at(exe: &std::path::Path, upstream: &str, extra: &[&str]) -> Bin {
    let mut child = Command::new(exe)
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
            "--json",
            "/dev/null",
            "--quiet",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("msntap runs");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    err.read_line(&mut first).expect("startup line");
    let addr = first
        .split_whitespace()
        .find(|t| t.starts_with("127.0.0.1:"))
        .expect("listen address")
        .to_string();
    Bin {
        child,
        addr,
        err: Some(err),
    }
}

impl Bin {
    /// A /proc/PID/status figure in KiB.
    fn status_kib(&self, key: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    /// SIGINT; returns what it wrote on stderr after starting.
    fn stop(self) -> String {
        self.stop_with("-INT")
    }

    /// `kill SIG`, then waits for the exit; returns what it wrote on stderr after starting.
    fn stop_with(mut self, sig: &str) -> String {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let mut rest = String::new();
        if let Some(mut e) = self.err.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut rest);
        }
        rest
    }
}

/// A server that reads and discards everything; returns its address and the bytes it got.
fn sink_server(rt: &Runtime) -> (String, Arc<AtomicU64>) {
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    let a = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = l.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let g = g.clone();
                tokio::spawn(async move {
                    let mut b = vec![0u8; 256 << 10];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 {
                            break;
                        }
                        g.fetch_add(n as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        a
    });
    (a, got)
}

/// Sends `data` (as 64 KiB writes) through `addr` to a sink server; returns the seconds.
fn flood(rt: &Runtime, addr: &str, data: &[u8], got: &AtomicU64) -> f64 {
    let before = got.load(Ordering::Relaxed);
    let t = Instant::now();
    rt.block_on(async {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        for chunk in data.chunks(64 << 10) {
            c.write_all(chunk).await.expect("write");
        }
        let end = Instant::now() + Duration::from_secs(300);
        while got.load(Ordering::Relaxed) - before < data.len() as u64 {
            assert!(Instant::now() < end, "flood not delivered");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(c);
    });
    t.elapsed().as_secs_f64()
}

fn summary_tail(stderr: &str) -> String {
    stderr
        .lines()
        .rfind(|l| l.contains("proxied connections"))
        .map(|l| {
            l.split("errors")
                .nth(1)
                .unwrap_or("")
                .trim_start_matches(';')
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// A notification server that answers VER and then keeps the connection open, idle.
fn idle_server(rt: &Runtime) -> String {
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = l.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 128];
                    if matches!(s.read(&mut b).await, Ok(n) if n > 0) {
                        let _ = s.write_all(b"VER 1 MSNP11\r\n").await;
                    }
                    while matches!(s.read(&mut b).await, Ok(n) if n > 0) {}
                });
            }
        });
        a
    })
}

fn memory(bench: &Runtime) {
    println!("memory of the msntap binary (`proxy --json /dev/null --quiet`), VmHWM = peak RSS:");
    // A PNG flood and one endless line, each from one client.
    let (sink, got) = sink_server(bench);
    let png = b"PNG\r\n".repeat(FLOOD / 5);
    let mut line = vec![b'A'; LONG_LINE];
    line.extend_from_slice(b"\r\nOUT\r\n");
    let backlog = std::env::var("MSNTAP_BENCH_BACKLOG").ok();
    let extra: Vec<&str> = match &backlog {
        Some(b) => vec!["--backlog", b.as_str()],
        None => Vec::new(),
    };
    for (name, data) in [
        ("PNG flood, 100 MB of PNG\\r\\n", &png),
        ("one 200 MB line", &line),
    ] {
        let b = bin(&sink, &extra);
        let start = b.status_kib("VmRSS:");
        let secs = flood(bench, &b.addr, data, &got);
        std::thread::sleep(Duration::from_millis(300));
        let hwm = b.status_kib("VmHWM:");
        let err = b.stop();
        println!(
            "  {name:<28} peak RSS {:6.1} MB (at start {:5.1} MB), forwarded at {:6.1} MB/s; {}",
            hwm as f64 / 1024.0,
            start as f64 / 1024.0,
            data.len() as f64 / secs / 1e6,
            summary_tail(&err)
        );
    }
    // Idle clients, each past its VER exchange.
    let server = idle_server(bench);
    let b = bin(&server, &[]);
    let addr = b.addr.clone();
    idle_memory(
        bench,
        b,
        &addr,
        b"VER 1 MSNP11 CVR0\r\n",
        14,
        "idle clients",
        "session",
    );
    // Idle CONNECT tunnels through --http-proxy (to the same server), each past its VER
    // exchange. The port is found free first: the startup line names the MSNP listener.
    let hp = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let b = bin(&server, &["--http-proxy", &hp]);
    let hello = format!("CONNECT {server} HTTP/1.1\r\nHost: {server}\r\n\r\nVER 1 MSNP11 CVR0\r\n");
    // "HTTP/1.1 200 Connection established\r\n\r\n", then the server's VER.
    idle_memory(
        bench,
        b,
        &hp,
        hello.as_bytes(),
        39 + 14,
        "idle CONNECT tunnels",
        "tunnel",
    );
    println!();
}

/// Opens [`IDLE`] connections to `addr` through the msntap binary `b`, each sending `hello`
/// and reading `reply` bytes, then prints the binary's memory with them all open and idle.
fn idle_memory(
    bench: &Runtime,
    b: Bin,
    addr: &str,
    hello: &[u8],
    reply: usize,
    what: &str,
    unit: &str,
) {
    std::thread::sleep(Duration::from_millis(200));
    let before = b.status_kib("VmRSS:");
    let conns = bench.block_on(async {
        let mut v = Vec::with_capacity(IDLE);
        for _ in 0..IDLE {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            c.write_all(hello).await.expect("write");
            let mut r = [0u8; 64];
            let mut n = 0;
            while n < reply {
                let k = c.read(&mut r[n..]).await.expect("read");
                assert!(k > 0);
                n += k;
            }
            v.push(c);
        }
        v
    });
    std::thread::sleep(Duration::from_millis(500));
    let after = b.status_kib("VmRSS:");
    let hwm = b.status_kib("VmHWM:");
    drop(conns);
    let _ = b.stop();
    println!(
        "  {IDLE} {what:<24} peak RSS {:6.1} MB (RSS {:5.1} MB before, {:5.1} MB with them open: {:.1} KiB per {unit})",
        hwm as f64 / 1024.0,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / IDLE as f64
    );
}
