//! Benchmark of the JSON backend (run with `cargo bench --bench json`): serialises event-shaped
//! data as JSON Lines into a buffer emptied every 256 KiB (as a sink does), once with
//! `serde_json::to_writer` and once with `msntap::json::to_vec_into`, and reports MB/s of
//! output and ns per event (on-CPU time, from /proc/thread-self/schedstat where there is one),
//! best of 15 alternating runs. It measures only; it asserts nothing but that the two
//! wrote the same bytes, and is never run as a test.
//!
//! Shapes: `value` is every line of captures/expected parsed into `serde_json::Value`;
//! `command` a derived struct of borrowed fields built from the command events of those files
//! (about 10 strings, integers, the args array), 1 in 10 carrying a 1604-byte base64 body;
//! `command_short` the same without bodies; `command_flatten` the `command` data laid out as
//! the present `Event` is (a flattened, internally tagged enum, so through `serialize_map`);
//! `events` the real events of the benchmark capture of benches/read.rs (benches/common),
//! decoded, annotated and redacted as `msntap read --json` does, held in memory, so that the
//! figure is `event::jsonl::render`'s alone. It reads MSNTAP_BENCH_CAPTURE=FILE (a capture
//! kept by `MSNTAP_BENCH_KEEP=1 cargo bench --bench read`), or builds a 5 MB one; its
//! msntap::json side is `event::jsonl::render` itself (toggle `json::pass_render*`). The
//! capture it builds is removed once read unless MSNTAP_BENCH_KEEP=1, which keeps it and
//! prints where.
//!
//! MSNTAP_BENCH_SHAPE picks one shape; MSNTAP_BENCH_ROUNDS fixes the passes per run. For
//! instructions per event:
//!   MSNTAP_BENCH_SHAPE=command MSNTAP_BENCH_ROUNDS=1 valgrind --tool=callgrind \
//!     --toggle-collect='json::pass_ours*' target/release/deps/json-HASH
//! then divide Ir by 15 runs x the events printed; `pass_serde_json*` for serde_json.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use msntap::analysis::auth::AuthAnnotator;
use msntap::capture::{read_path, ReadOptions};
use msntap::secret::Redact;
use msntap::Tables;

mod common;
mod inputs;

/// The allocator of the msntap binary (src/main.rs), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FLUSH_AT: usize = 256 * 1024;
const RUNS: usize = 15;

#[derive(Serialize)]
struct Command<'a> {
    schema: u32,
    ts: &'a str,
    conn: u64,
    dir: &'a str,
    service: &'a str,
    version: Option<&'a str>,
    #[serde(rename = "type")]
    ty: &'static str,
    cmd: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    trid: Option<u64>,
    args: Vec<&'a str>,
    known: bool,
    meaning: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    line: &'a str,
    offset: u64,
}

#[derive(Serialize)]
struct Event<'a> {
    schema: u32,
    ts: &'a str,
    conn: u64,
    dir: &'a str,
    service: &'a str,
    version: Option<&'a str>,
    #[serde(flatten)]
    kind: Kind<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Kind<'a> {
    Command {
        cmd: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        trid: Option<u64>,
        args: Vec<&'a str>,
        known: bool,
        meaning: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<&'a str>,
        line: &'a str,
        offset: u64,
    },
}

fn flatten<'a>(c: &Command<'a>) -> Event<'a> {
    Event {
        schema: c.schema,
        ts: c.ts,
        conn: c.conn,
        dir: c.dir,
        service: c.service,
        version: c.version,
        kind: Kind::Command {
            cmd: c.cmd,
            trid: c.trid,
            args: c.args.clone(),
            known: c.known,
            meaning: c.meaning,
            body: c.body,
            line: c.line,
            offset: c.offset,
        },
    }
}

/// The events `msntap read --json` writes for the benchmark capture, owned.
fn capture_events() -> Vec<msntap::Event<'static>> {
    // The built capture is removed (or kept and named) when this function returns, read.
    let mut built = None;
    let cap = match std::env::var_os("MSNTAP_BENCH_CAPTURE") {
        Some(p) => PathBuf::from(p),
        None => {
            let dir = built.insert(inputs::Inputs::dir("jsonbench"));
            let cap = dir.join("bench.pcap");
            common::build(&cap, 5 << 20);
            cap
        }
    };
    let tables = Arc::new(Tables::builtin().expect("tables"));
    // As src/output.rs: the tables' challenge keys, no password to try, then redaction.
    let mut annot = AuthAnnotator::new(&tables, Vec::new());
    let mut out = Vec::new();
    read_path(&cap, tables.clone(), &ReadOptions::default(), &mut |ev| {
        annot.annotate(ev);
        ev.redact();
        out.push(ev.clone().into_owned());
        Ok(())
    })
    .expect("read the capture");
    out
}

fn values() -> Vec<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures/expected");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("captures/expected")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).expect("readable");
        for line in text.lines() {
            out.push(serde_json::from_str(line).expect("fixture line is JSON"));
        }
    }
    out
}

fn commands<'a>(values: &'a [Value], body: &'a str, with_body: bool) -> Vec<Command<'a>> {
    let s = |v: &'a Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let n = |v: &'a Value, k: &str| v.get(k).and_then(Value::as_u64);
    values
        .iter()
        .filter(|v| v.get("type").and_then(Value::as_str) == Some("command"))
        .enumerate()
        .map(|(i, v)| Command {
            schema: 1,
            ts: s(v, "ts"),
            conn: n(v, "conn").unwrap_or(0),
            dir: s(v, "dir"),
            service: s(v, "service"),
            version: v.get("version").and_then(Value::as_str),
            ty: "command",
            cmd: s(v, "cmd"),
            trid: n(v, "trid"),
            args: v
                .get("args")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default(),
            known: true,
            meaning: s(v, "meaning"),
            body: (with_body && i % 10 == 0).then_some(body),
            line: s(v, "line"),
            offset: n(v, "offset").unwrap_or(0),
        })
        .collect()
}

#[inline(never)]
fn pass_ours<T: Serialize>(buf: &mut Vec<u8>, events: &[T]) -> usize {
    let mut written = 0;
    for ev in events {
        msntap::json::to_vec_into(buf, ev).expect("serialises");
        buf.push(b'\n');
        if buf.len() >= FLUSH_AT {
            written += buf.len();
            black_box(&buf[..]);
            buf.clear();
        }
    }
    written
}

#[inline(never)]
fn pass_serde_json<T: Serialize>(buf: &mut Vec<u8>, events: &[T]) -> usize {
    let mut written = 0;
    for ev in events {
        serde_json::to_writer(&mut *buf, ev).expect("serialises");
        buf.push(b'\n');
        if buf.len() >= FLUSH_AT {
            written += buf.len();
            black_box(&buf[..]);
            buf.clear();
        }
    }
    written
}

type Pass<T> = fn(&mut Vec<u8>, &[T]) -> usize;

/// Nanoseconds this thread has been on a CPU, from the scheduler's own accounting, so that
/// time spent waiting for a core on a shared machine does not count; None off Linux.
fn on_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Seconds of one run of `rounds` passes: on-CPU time where known, else wall time.
fn run<T: Serialize>(pass: Pass<T>, buf: &mut Vec<u8>, events: &[T], rounds: usize) -> f64 {
    buf.clear();
    let (t, cpu) = (Instant::now(), on_cpu_ns());
    for _ in 0..rounds {
        pass(buf, black_box(events));
    }
    match (cpu, on_cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => t.elapsed().as_secs_f64(),
    }
}

fn shape<T: Serialize>(name: &str, events: &[T], rounds: Option<usize>) {
    shape_with(name, events, rounds, pass_ours::<T>);
}

/// Events through `event::jsonl::render`, the sink's own entry point: the serialization code
/// is then compiled inside the library, as in the binary (a generic pass instantiated here
/// could not inline the library's non-generic helpers).
#[inline(never)]
fn pass_render(buf: &mut Vec<u8>, events: &[msntap::Event<'static>]) -> usize {
    let mut written = 0;
    for ev in events {
        msntap::event::jsonl::render(buf, ev);
        if buf.len() >= FLUSH_AT {
            written += buf.len();
            black_box(&buf[..]);
            buf.clear();
        }
    }
    written
}

fn shape_with<T: Serialize>(name: &str, events: &[T], rounds: Option<usize>, ours_pass: Pass<T>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for ev in events {
        serde_json::to_writer(&mut a, ev).expect("serialises");
        a.push(b'\n');
        msntap::json::to_vec_into(&mut b, ev).expect("serialises");
        b.push(b'\n');
    }
    assert!(a == b, "{name}: the two serialisers disagree");
    let bytes = a.len();
    // About 0.1 s of serde_json per run unless fixed; the two alternate, best of RUNS each,
    // so that load from other processes hits both alike.
    let rounds = rounds.unwrap_or_else(|| (100_000_000 / bytes.max(1)).max(1));
    let mut buf = Vec::with_capacity(FLUSH_AT + 64 * 1024);
    let (mut theirs, mut ours) = (f64::MAX, f64::MAX);
    for _ in 0..RUNS {
        theirs = theirs.min(run(pass_serde_json::<T>, &mut buf, events, rounds));
        ours = ours.min(run(ours_pass, &mut buf, events, rounds));
    }
    let mbs = |t: f64| (bytes * rounds) as f64 / t / 1e6;
    let ns = |t: f64| t * 1e9 / (rounds * events.len()) as f64;
    println!(
        "{name:16} {:4} events, {:4} B/event | serde_json {:5.0} MB/s {:4.0} ns/event | msntap::json {:5.0} MB/s {:4.0} ns/event | x{:.2}",
        events.len(),
        bytes / events.len().max(1),
        mbs(theirs),
        ns(theirs),
        mbs(ours),
        ns(ours),
        theirs / ours
    );
}

fn main() {
    let only = std::env::var("MSNTAP_BENCH_SHAPE").ok();
    let rounds = std::env::var("MSNTAP_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok());
    let want = |s: &str| only.as_deref().is_none_or(|o| o == s);

    let values = values();
    // A P2P data chunk's worth (1202 bytes) of bytes that do not compress, as base64.
    let raw: Vec<u8> = (0..1202u32)
        .map(|k| (k.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let body = base64::engine::general_purpose::STANDARD.encode(raw);
    let cmds = commands(&values, &body, true);
    let short = commands(&values, &body, false);
    let flat: Vec<Event> = cmds.iter().map(flatten).collect();

    if want("value") {
        shape("value", &values, rounds);
    }
    if want("command") {
        shape("command", &cmds, rounds);
    }
    if want("command_short") {
        shape("command_short", &short, rounds);
    }
    if want("command_flatten") {
        shape("command_flatten", &flat, rounds);
    }
    if want("events") {
        shape_with("events", &capture_events(), rounds, pass_render);
    }
}
