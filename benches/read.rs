//! Benchmark of `msntap read --json` (run with `cargo bench --bench read`): builds a large
//! capture of thousands of interleaved MSNP sessions (every payload kind of the fixture
//! logs plus binary P2P data) in a temporary directory, then times the release binary
//! reading it with JSON output to /dev/null and reports MB/s, packets/s and peak memory.
//! MSNTAP_BENCH_MB sets the capture size (default 100; use 1000 to check memory stays flat).
//! The capture is removed at the end unless MSNTAP_BENCH_KEEP=1, which keeps it and prints
//! where (for MSNTAP_BENCH_CAPTURE=FILE of benches/capture.rs and benches/json.rs).
//! When the toolchain has llvm-profdata it also builds a profile-guided binary (benches/pgo)
//! and times it beside the release build (MSNTAP_BENCH_PGO=0 skips that; MSNTAP_BENCH_PGO=only
//! builds it, prints its path and measures nothing).
//! In the same rounds it times the lean path of benches/lean (capture layer, framer, and a
//! JSON line written straight from each frame's bytes: the ceiling of this machine for the
//! prototype shape issue 10 describes; MSNTAP_BENCH_LEAN=0 skips it), then tshark.
//! It measures only; it asserts nothing and is never run as a test.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use msntap::Tables;

mod common;
mod inputs;
mod lean;
mod pgo;
mod timev;
use common::build;

/// The allocator of the msntap binary (src/main.rs), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // `cargo test` runs benches in test mode with --test: do nothing then.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    // MSNTAP_BENCH_PGO=only: just the profile-guided binary, for use (no capture, no runs).
    if std::env::var_os("MSNTAP_BENCH_PGO").is_some_and(|v| v == "only") {
        match pgo::build() {
            Ok(p) => println!("profile-guided binary: {}", p.display()),
            Err(why) => println!("PGO build: {why}"),
        }
        return;
    }
    let mb: u64 = std::env::var("MSNTAP_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = inputs::Inputs::dir("bench");
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
        tables.clone(),
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
    // Stage 2: the release binary, JSON Lines to /dev/null, as a user runs it, and beside it
    // a profile-guided build of the same source when the toolchain can make one
    // (benches/pgo): the two take turns, so a change in the shared machine's pace falls on
    // both. Several runs (MSNTAP_BENCH_RUNS, default 5): on a shared machine one run can be
    // twice as slow as the next. The best and the median are printed; the tshark ratio
    // uses the median.
    let runs: usize = std::env::var("MSNTAP_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5);
    let mut bins = vec![Timed::new("release", env!("CARGO_BIN_EXE_msntap").into())];
    match pgo::build() {
        Ok(p) => bins.push(Timed::new("PGO", p)),
        Err(why) => println!("PGO build: {why}"),
    }
    // The lean path (benches/lean) takes its turn in the same rounds: capture layer, framer
    // and a JSON line written straight from each frame's bytes, a subset of the schema, in
    // this process. A ceiling for this machine: the real read --json does more per frame.
    // MSNTAP_BENCH_LEAN=0 skips it; MSNTAP_BENCH_LEAN_OUT=FILE keeps the last run's JSON
    // Lines there (to check them with jq), owner-only: the lean path redacts nothing.
    let lean_on = std::env::var_os("MSNTAP_BENCH_LEAN").is_none_or(|v| v != "0");
    let keep = std::env::var_os("MSNTAP_BENCH_LEAN_OUT").filter(|v| !v.is_empty());
    let mut lean_times = vec![Vec::new(); lean::Stage::ALL.len()];
    let mut lean_counts = vec![(0u64, 0u64); lean::Stage::ALL.len()];
    for r in 0..runs {
        for b in &mut bins {
            b.run(&cap);
        }
        for (i, &stage) in lean::Stage::ALL.iter().enumerate().filter(|_| lean_on) {
            let mut sink: Box<dyn std::io::Write> = match &keep {
                Some(p) if r + 1 == runs && stage == lean::Stage::Json => Box::new(
                    msntap::output::create_private(Path::new(p), true)
                        .expect("MSNTAP_BENCH_LEAN_OUT"),
                ),
                _ => Box::new(std::io::sink()),
            };
            let run = lean::run(&cap, &tables, stage, &mut sink);
            lean_times[i].push(run.secs);
            lean_counts[i] = (run.count, run.json_bytes);
        }
    }
    // The builds must decode the same: the PGO figures count only if its summary is the
    // release build's.
    if let [r, p] = &bins[..] {
        if r.summary != p.summary {
            println!("the PGO build's summary DIFFERS from the release build's:");
        }
    }
    let mut medians = Vec::new();
    for b in &mut bins {
        b.times.sort_by(f64::total_cmp);
        let best = b.times[0];
        let secs = b.times[b.times.len() / 2];
        println!("{}", b.summary);
        println!(
            "msntap read --json /dev/null ({}: {}), {runs} runs: best {:.2} s, {:.0} MB/s; median {:.2} s, {:.0} MB/s, {:.0} packets/s; peak RSS {}",
            b.name,
            b.exe.display(),
            best,
            size as f64 / 1e6 / best,
            secs,
            size as f64 / 1e6 / secs,
            packets as f64 / secs,
            b.peak_kb.map_or("unknown (no /usr/bin/time)".to_string(), |k| format!(
                "{:.1} MB",
                k as f64 / 1024.0
            ))
        );
        if let Some(st) = b.failed {
            println!("msntap ({}) exited with {st}", b.name);
        }
        medians.push((b.name, secs));
    }
    // The lean path's figures.
    let mut lean_medians = Vec::new();
    if lean_on {
        for (i, &stage) in lean::Stage::ALL.iter().enumerate() {
            let t = &mut lean_times[i];
            t.sort_by(f64::total_cmp);
            let (best, median) = (t[0], t[t.len() / 2]);
            let (count, json) = lean_counts[i];
            let what = match stage {
                lean::Stage::Track => format!("{count} bytes delivered"),
                lean::Stage::Frame => format!("{count} frames"),
                lean::Stage::Json => format!("{count} frames, {:.1} MB of JSON", json as f64 / 1e6),
            };
            println!(
                "lean path, {}: {runs} runs: best {:.3} s, {:.0} MB/s; median {:.3} s, {:.0} MB/s ({what})",
                stage.describe(),
                best,
                size as f64 / 1e6 / best,
                median,
                size as f64 / 1e6 / median,
            );
            if stage == lean::Stage::Json {
                lean_medians.push(("lean path, JSON from the frame's bytes", median));
                // The ceiling counts only if it framed what the binary decoded.
                let commands = bins.first().and_then(|b| {
                    let (head, _) = b.summary.split_once(" commands")?;
                    head.rsplit(' ').next()?.parse::<u64>().ok()
                });
                if commands != Some(count) {
                    println!(
                        "the lean path framed {count} commands, the binary decoded {commands:?}: they DIFFER"
                    );
                }
            }
        }
        if let Some(p) = &keep {
            println!(
                "kept the lean path's JSON Lines in {}",
                Path::new(p).display()
            );
        }
    }
    // Stage 3: tshark's MSNMS dissector on the same capture, in the same run, when tshark
    // is installed (the issue's "200x tshark" target). tshark decodes only the first
    // MSNMS_TSHARK_MB of it (default 20 MB; it is slow) and the rate is scaled from that
    // cut, which favours tshark (its start-up is spread over fewer bytes).
    let tshark_ok = Command::new("tshark")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if tshark_ok {
        let cut_mb: u64 = std::env::var("MSNTAP_TSHARK_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let cut = dir.join("tshark-cut.pcap");
        let cut_size = cut_capture(&cap, &cut, cut_mb << 20);
        let t2 = Instant::now();
        let ts = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&cut)
            .args(["-d", "tcp.port==1863,msnms", "-Y", "msnms", "-T", "json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let tsecs = t2.elapsed().as_secs_f64();
        match ts {
            Ok(st) if st.success() => {
                let t_rate = cut_size as f64 / 1e6 / tsecs;
                println!(
                    "tshark -Y msnms -T json on the first {:.1} MB: {:.2} s, {:.2} MB/s",
                    cut_size as f64 / 1e6,
                    tsecs,
                    t_rate,
                );
                for (name, secs) in &medians {
                    let m_rate = size as f64 / 1e6 / secs;
                    println!(
                        "msntap read --json ({name}, median) is {:.0}x tshark",
                        m_rate / t_rate
                    );
                }
                for (name, secs) in &lean_medians {
                    println!(
                        "{name} (median) is {:.0}x tshark",
                        size as f64 / 1e6 / secs / t_rate
                    );
                }
            }
            other => println!("tshark failed on the cut capture: {other:?}"),
        }
    } else {
        println!("tshark not installed: no comparison (apt-get install tshark)");
    }
}

/// One binary's runs of `read --json /dev/null --quiet` on the bench capture.
struct Timed {
    name: &'static str,
    exe: std::path::PathBuf,
    times: Vec<f64>,
    peak_kb: Option<u64>,
    summary: String,
    failed: Option<std::process::ExitStatus>,
}

impl Timed {
    fn new(name: &'static str, exe: std::path::PathBuf) -> Timed {
        Timed {
            name,
            exe,
            times: Vec::new(),
            peak_kb: None,
            summary: String::new(),
            failed: None,
        }
    }

    /// One run, under `/usr/bin/time -v` when it is there (for the peak RSS).
    fn run(&mut self, cap: &std::path::Path) {
        let mut cmd = if std::path::Path::new("/usr/bin/time").exists() {
            let mut c = Command::new("/usr/bin/time");
            c.arg("-v").arg(&self.exe);
            c
        } else {
            Command::new(&self.exe)
        };
        cmd.args(["read", "--json", "/dev/null", "--quiet", "--no-progress"])
            .arg(cap);
        let t1 = Instant::now();
        let out = cmd.output().expect("run msntap");
        self.times.push(t1.elapsed().as_secs_f64());
        let stderr = String::from_utf8_lossy(&out.stderr);
        self.peak_kb = self.peak_kb.max(timev::peak_rss_kib(&stderr));
        self.summary = timev::summary(&stderr).unwrap_or("").to_string();
        if !out.status.success() {
            self.failed = Some(out.status);
        }
    }
}

/// The first packets of a classic pcap, up to `max` bytes: the global header copied, then
/// whole records (16-byte record header plus captured length). Returns the bytes written.
fn cut_capture(src: &std::path::Path, dst: &std::path::Path, max: u64) -> u64 {
    let data = std::fs::read(src).expect("read the bench capture");
    let mut end = 24usize;
    while end + 16 <= data.len() && (end as u64) < max {
        let incl =
            u32::from_le_bytes(data[end + 8..end + 12].try_into().expect("4 bytes")) as usize;
        if end + 16 + incl > data.len() {
            break;
        }
        end += 16 + incl;
    }
    std::fs::write(dst, &data[..end]).expect("write the cut capture");
    end as u64
}
