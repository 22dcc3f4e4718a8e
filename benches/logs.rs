//! Benchmark of session logs as input (run with `cargo bench --bench logs`): writes logs of
//! the fixture sessions repeated to 14 MB and 4 times that in a temporary directory, then
//! times the release binary on each: `read --json /dev/null`, the same from standard input,
//! and `synth`, reporting MB/s and peak memory (from /usr/bin/time). Streaming means the
//! peak stays flat as the log grows. MSNTAP_BENCH_LOG_MB sets the smaller size. Each log
//! is removed once timed unless MSNTAP_BENCH_KEEP=1, which keeps the logs and prints where.
//! It measures only; it asserts nothing and is never run as a test.

mod inputs;
mod timev;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn write_log(path: &Path, size: u64) -> u64 {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let parts: Vec<String> = [
        "captures/logs/msnp11.log",
        "captures/logs/msnp8.log",
        "captures/synth/msnp11_chat.log",
        "captures/synth/msnp15_adl.log",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(root.join(p)).expect("fixture log"))
    .collect();
    let mut w = BufWriter::new(std::fs::File::create(path).expect("create log"));
    let mut n = 0u64;
    while n < size {
        for p in &parts {
            w.write_all(p.as_bytes()).expect("write log");
            n += p.len() as u64;
        }
    }
    w.flush().expect("flush log");
    n
}

/// Runs `args` under /usr/bin/time (when present), optionally with `stdin` from a file;
/// returns seconds, peak RSS in KiB and the summary line.
fn run(args: &[&str], stdin: Option<&Path>) -> (f64, Option<u64>, String) {
    let exe = env!("CARGO_BIN_EXE_msntap");
    let time = Path::new("/usr/bin/time").exists();
    let mut cmd = if time {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-v").arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(args);
    if let Some(p) = stdin {
        cmd.stdin(Stdio::from(std::fs::File::open(p).expect("open log")));
    }
    let t = Instant::now();
    let out = cmd.output().expect("run msntap");
    let secs = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak = timev::peak_rss_kib(&stderr);
    let summary = timev::summary(&stderr).unwrap_or("").to_string();
    if !out.status.success() {
        println!("msntap {args:?} exited with {}", out.status);
    }
    (secs, peak, summary)
}

fn main() {
    // `cargo test --benches` runs benches with --test: do nothing then.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let mb: u64 = std::env::var("MSNTAP_BENCH_LOG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14);
    let dir = inputs::Inputs::dir("bench-logs");
    for size in [mb, mb * 4] {
        let log = dir.join(format!("sessions-{size}MB.log"));
        let bytes = write_log(&log, size * 1_000_000);
        let l = log.to_str().expect("utf-8 path");
        let pcap = dir.join("out.pcap");
        let p = pcap.to_str().expect("utf-8 path");
        println!("log of {:.1} MB:", bytes as f64 / 1e6);
        for (what, args, stdin) in [
            (
                "read --json /dev/null",
                vec!["read", l, "--json", "/dev/null", "--no-progress"],
                None,
            ),
            (
                "read - (standard input)",
                vec!["read", "-", "--json", "/dev/null", "--no-progress"],
                Some(log.as_path()),
            ),
            ("synth -o out.pcap", vec!["synth", l, "-o", p], None),
        ] {
            let (secs, peak, summary) = run(&args, stdin);
            println!(
                "  {what}: {secs:.2} s, {:.0} MB/s, peak RSS {}",
                bytes as f64 / 1e6 / secs,
                peak.map_or("unknown (no /usr/bin/time)".to_string(), |k| format!(
                    "{:.1} MB",
                    k as f64 / 1024.0
                ))
            );
            println!("    {summary}");
        }
        // The next size needs the room.
        if !inputs::keep() {
            std::fs::remove_file(&log).ok();
            std::fs::remove_file(&pcap).ok();
        }
    }
}
