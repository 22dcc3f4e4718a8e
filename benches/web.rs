//! Benchmark of the web view on a large capture (run with `cargo bench --bench web`):
//! writes a session log of thousands of clients (copies of the MSNP11 chat fixture, each
//! with its own handle, cookie and connections), turns it into a capture with `msntap
//! synth`, serves it with `msntap view` and drives Debian's chromium through chromedriver
//! to time what a person waits for: the first sessions on screen, the list after a filter
//! and a search, and scrolling through the whole list (jumps, and a continuous scroll
//! whose longest frame shows any freeze). MSNTAP_BENCH_MB sets the capture size (default
//! 50). It measures only; it asserts nothing and is never run as a test. Needs chromium
//! and chromedriver (it says so and stops without them). The log and capture are removed
//! at the end unless MSNTAP_BENCH_KEEP=1, which keeps them and prints where.

mod inputs;
#[path = "../tests/web_support/mod.rs"]
mod web_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use web_support::{browser_tools, Browser, Proc};

/// A session log of `copies` clients, each an NS login and a switchboard chat.
fn write_log(path: &Path, target_bytes: u64) -> u64 {
    let tpl = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/synth/msnp11_chat.log"),
    )
    .expect("fixture log");
    let body: String = tpl
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("log"));
    let mut written = 0u64;
    let mut k = 0u64;
    use std::io::Write;
    while written < target_bytes {
        let copy = body
            .replace(" #1 ", &format!(" #{} ", 2 * k + 1))
            .replace(" #2 ", &format!(" #{} ", 2 * k + 2))
            // Same lengths as the originals, so every declared payload length still holds.
            .replace("erin@example.com", &format!("e{k:05}@examp.com"))
            .replace("3110578.1117627230.2243", &format!("3110578.{k:010}.2243"));
        out.write_all(copy.as_bytes()).expect("write");
        written += copy.len() as u64;
        k += 1;
    }
    out.flush().expect("flush");
    k
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let (chromium, driver) = match browser_tools() {
        Ok(t) => t,
        Err(why) => {
            println!("web bench not run: {why}");
            return;
        }
    };
    let mb: u64 = std::env::var("MSNTAP_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    // Declared before the browser and the view, so that it outlives both.
    let dir = inputs::Inputs::dir("web-bench");
    let (log, cap) = (dir.join("clients.log"), dir.join("clients.pcap"));
    // The capture is about 2.4 times its log (headers of small packets).
    let clients = write_log(&log, (mb << 20) * 10 / 24);
    let exe = env!("CARGO_BIN_EXE_msntap");
    let st = Command::new(exe)
        .args(["synth", "-o"])
        .arg(&cap)
        .arg(&log)
        .status()
        .expect("synth");
    assert!(st.success(), "synth failed");
    let size = std::fs::metadata(&cap).map(|m| m.len()).unwrap_or(0);
    println!(
        "capture: {:.1} MB, {clients} clients ({} connections)",
        size as f64 / 1e6,
        clients * 2
    );

    let b = Browser::start(&chromium, &driver);
    let t0 = Instant::now();
    let view = Proc::spawn(
        Command::new(exe)
            .arg("view")
            .arg(&cap)
            .args(["--listen", "127.0.0.1:0"]),
    );
    let line = view.wait_line(" at http://", Duration::from_secs(30));
    let url = line.split(" at ").last().unwrap().trim().to_string();
    let t_listen = t0.elapsed();
    b.goto(&url);
    let t_nav = t0.elapsed();
    b.wait_for(
        "the first session",
        "document.querySelector('#chains .chain')",
        Duration::from_secs(30),
    );
    let t_first = t0.elapsed();
    b.wait_for(
        "the first rows",
        "document.querySelector('#rows .row[data-seq]')",
        Duration::from_secs(30),
    );
    let t_rows = t0.elapsed();
    println!(
        "view: listening {:.0} ms after start; page navigated at {:.0} ms; first sessions shown {:.0} ms after start ({:.0} ms after navigation); first rows {:.0} ms",
        ms(t_listen),
        ms(t_nav),
        ms(t_first),
        ms(t_first - t_nav),
        ms(t_rows)
    );
    let read = view.wait_line("msntap: read ", Duration::from_secs(600));
    println!(
        "{} ({:.1} s after start)",
        read.trim(),
        t0.elapsed().as_secs_f64()
    );
    b.wait_for(
        "complete",
        "document.getElementById('status').textContent.includes('complete')",
        Duration::from_secs(30),
    );
    let total = b.wait_for(
        "the whole list",
        "(t => t > 0 && t)(Number((document.getElementById('count').textContent.match(/^([0-9,]+) events/) || ['', '0'])[1].replace(/,/g, '')))",
        Duration::from_secs(30),
    );
    let status = b.js(
        "return document.getElementById('status').textContent",
        json!([]),
    );
    println!("list: {total} events; status: {status}");
    if let Some(rss) = rss_kb(view.child.id()) {
        println!("msntap view resident memory: {:.0} MB", rss as f64 / 1024.0);
    }

    // Scrolling: jumps to 40 places across the list, each timed until its rows are real,
    // then 600 frames of continuous scrolling with the longest frame recorded.
    let scroll = b.js_async(
        r#"
        const done = arguments[arguments.length - 1];
        const list = document.getElementById('list');
        const frame = () => new Promise(r => requestAnimationFrame(r));
        const filled = () => { const r = document.querySelectorAll('#rows .row'); return r.length > 0 && [...r].every(x => x.dataset.seq !== undefined); };
        const long = [];
        try { new PerformanceObserver(l => l.getEntries().forEach(e => long.push(e.duration))).observe({type: 'longtask', buffered: false}); } catch (_) {}
        (async () => {
          const jumps = [];
          for (let i = 0; i < 40; i++) {
            const t = performance.now();
            list.scrollTop = (list.scrollHeight - list.clientHeight) * ((i * 37) % 40) / 40;
            await frame();
            while (!filled()) await frame();
            jumps.push(performance.now() - t);
          }
          list.scrollTop = 0;
          await frame();
          let last = performance.now(), worst = 0, sum = 0;
          for (let i = 0; i < 600; i++) {
            list.scrollTop += 120;
            await frame();
            const now = performance.now();
            worst = Math.max(worst, now - last); sum += now - last; last = now;
          }
          jumps.sort((a, b) => a - b);
          done({jump_median: jumps[20], jump_max: jumps[39], frames: 600, frame_mean: sum / 600, frame_max: worst, long_tasks: long.length, long_max: Math.max(0, ...long)});
        })();
        "#,
        json!([]),
    );
    println!(
        "scroll: 40 jumps across the list, rows shown after median {:.0} ms, slowest {:.0} ms; continuous scroll 600 frames: mean frame {:.1} ms, longest {:.0} ms; long tasks (>50 ms): {} (longest {:.0} ms)",
        f(&scroll["jump_median"]),
        f(&scroll["jump_max"]),
        f(&scroll["frame_mean"]),
        f(&scroll["frame_max"]),
        scroll["long_tasks"],
        f(&scroll["long_max"])
    );

    // Filter and search over the whole list: time until the count changes.
    for (field, text, clear) in [("only", "MSG", None), ("q", "e04711@", Some("only"))] {
        if let Some(c) = clear {
            b.clear(&format!("#filters input[name={c}]"));
            b.wait_for(
                "the whole list again",
                // The count reads "6,204 events match": compared as digits, whatever the
                // browser's thousands separator (the first three characters were "6,2").
                &format!(
                    "document.getElementById('count').textContent.replace(/[^0-9 ]/g, '').startsWith({:?})",
                    format!("{} ", total.as_u64().unwrap_or(0))
                ),
                Duration::from_secs(30),
            );
        }
        let before = b.js(
            "return document.getElementById('count').textContent",
            json!([]),
        );
        let t = Instant::now();
        b.type_into(&format!("#filters input[name={field}]"), text);
        let after = b.wait_for(
            "the filtered count",
            &format!(
                "(c => c !== {before} && c)(document.getElementById('count').textContent)",
                before = before
            ),
            Duration::from_secs(30),
        );
        println!(
            "filter {field}={text}: {after} {:.0} ms after typing (includes the page's 150 ms debounce)",
            ms(t.elapsed())
        );
    }
    let errors = b.console_errors();
    println!("console errors: {}", errors.len());
    drop(view);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
