//! `msntap proxy` as a user runs it, outputs observed from outside: a scripted dispatch ->
//! notification -> switchboard session whose events show up in the `--json` file and on the
//! log pipe while the proxy is still running; SIGTERM leaving the log, the JSON Lines and
//! the pcapng recording complete; a standard output nobody reads for 20 s while a bulk
//! transfer still completes (and the JSON file loses nothing); a closed standard output
//! that ends the log quietly while `--json` goes on. Unix only; loopback only; every wait
//! is bounded.
#![cfg(unix)]

mod proxy_support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msntap::capture::{read_events, FlowOptions, ReadOptions};
use msntap::{Event, EventKind, Tables};
use proxy_support::binary::spawn_proxy_with;
use proxy_support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

fn args(v: &[&str], json: &Path, extra: &[OsString]) -> Vec<OsString> {
    let mut a: Vec<OsString> = v.iter().map(OsString::from).collect();
    a.push("--json".into());
    a.push(json.as_os_str().to_owned());
    // These tests watch the log on standard output too (a --json file alone turns it off).
    a.push("--log".into());
    a.extend(extra.iter().cloned());
    a
}

/// Everything the proxy writes on standard output, collected by a thread.
fn collect(mut out: std::process::ChildStdout) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let t = text.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 8192];
        while let Ok(n) = out.read(&mut b) {
            if n == 0 {
                break;
            }
            t.lock()
                .expect("log")
                .push_str(&String::from_utf8_lossy(&b[..n]));
        }
    });
    text
}

/// The events of a JSON Lines file, every line checked to parse.
fn json_events(path: &Path) -> Vec<Event<'static>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| Event::from_json(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Complete lines of a JSON Lines file written so far (a line still being written is not
/// counted).
fn json_so_far(path: &Path) -> Vec<Event<'static>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    whole
        .lines()
        .filter_map(|l| Event::from_json(l).ok())
        .collect()
}

async fn until<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const BODY: &str = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Arial; EF=; CO=0; CS=0; PF=22\r\n\r\nhello through the live proxy";

/// Servers of one session: dispatch, notification, switchboard. The switchboard and the
/// notification connection stay open until their client goes.
async fn servers(ds: TcpListener, ns: TcpListener, sb: TcpListener) {
    let ns_addr = ns.local_addr().expect("addr").to_string();
    let sb_addr = sb.local_addr().expect("addr").to_string();
    let mut d = accept(&ds).await;
    assert_eq!(d.line().await, "VER 1 MSNP8 CVR0");
    d.send_line("VER 1 MSNP8").await;
    assert_eq!(d.line().await, "USR 2 TWN I alice@example.com");
    d.send_line(&format!("XFR 2 NS {ns_addr} 0 {}", "10.0.0.1:1863"))
        .await;
    d.s.shutdown().await.expect("close");
    d.read_to_eof().await;
    let mut n = accept(&ns).await;
    assert_eq!(n.line().await, "VER 1 MSNP8 CVR0");
    n.send_line("VER 1 MSNP8").await;
    assert_eq!(n.line().await, "XFR 2 SB");
    n.send_line(&format!("XFR 2 SB {sb_addr} CKI 17262740.1050826919.32308"))
        .await;
    let mut s = accept(&sb).await;
    assert_eq!(
        s.line().await,
        "USR 1 alice@example.com 17262740.1050826919.32308"
    );
    s.send_line("USR 1 OK alice@example.com Alice").await;
    s.send(format!("MSG bob@example.com Bob {}\r\n{BODY}", BODY.len()).as_bytes())
        .await;
    // Both stay until the client goes (or the proxy closes them).
    let _ = tokio::join!(s.read_to_eof_quietly(), n.read_to_eof_quietly());
}

/// The client side of the session; returns its open NS and SB connections.
async fn client(proxy: &str) -> (Peer, Peer) {
    let mut c = connect(proxy).await;
    c.send_line("VER 1 MSNP8 CVR0").await;
    assert_eq!(c.line().await, "VER 1 MSNP8");
    c.send_line("USR 2 TWN I alice@example.com").await;
    let x = c.line().await;
    let ns_via = x.split(' ').nth(3).expect("address").to_string();
    c.eof().await;
    drop(c);
    let mut n = connect(&ns_via).await;
    n.send_line("VER 1 MSNP8 CVR0").await;
    assert_eq!(n.line().await, "VER 1 MSNP8");
    n.send_line("XFR 2 SB").await;
    let x = n.line().await;
    let sb_via = x.split(' ').nth(3).expect("address").to_string();
    let mut s = connect(&sb_via).await;
    s.send_line("USR 1 alice@example.com 17262740.1050826919.32308")
        .await;
    assert_eq!(s.line().await, "USR 1 OK alice@example.com Alice");
    let m = s.line().await;
    assert_eq!(m, format!("MSG bob@example.com Bob {}", BODY.len()));
    assert_eq!(s.bytes(BODY.len()).await, BODY.as_bytes());
    (n, s)
}

async fn session_servers() -> (String, tokio::task::JoinHandle<()>) {
    let (ds, ds_addr) = server().await;
    let (ns, _) = server().await;
    let (sb, _) = server().await;
    (ds_addr, tokio::spawn(servers(ds, ns, sb)))
}

fn is_msg(e: &Event<'_>) -> bool {
    e.command().is_some_and(|c| c.cmd == "MSG")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn events_reach_the_json_file_and_the_log_pipe_while_the_proxy_runs() {
    let (_dir, json) = json_scratch("live-running");
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let (ds, servers) = session_servers().await;
            let mut p = spawn_proxy_with(
                args(&["--upstream", &ds, "--color", "never"], &json, &[]),
                Stdio::piped(),
            );
            let log = collect(p.stdout());
            let (n, s) = client(&p.addr).await;
            // The client has the switchboard message: its events must be out already,
            // with the proxy still running and the connections still open.
            let t0 = Instant::now();
            let evs = until("the MSG event in the JSON file", STEP, || {
                let e = json_so_far(&json);
                e.iter().any(is_msg).then_some(e)
            })
            .await;
            let json_after = t0.elapsed();
            until("the MSG line on the log pipe", STEP, || {
                log.lock()
                    .expect("log")
                    .contains("<<< MSG bob@example.com Bob")
                    .then_some(())
            })
            .await;
            let log_after = t0.elapsed();
            eprintln!("events out {json_after:?} (JSON) and {log_after:?} (log) after the client had the bytes");
            assert!(p.running(), "the proxy is still running");
            let redirects = evs
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Redirect(_)))
                .count();
            assert_eq!(redirects, 2, "the NS and SB referrals");
            let rewritten: Vec<_> = evs
                .iter()
                .filter_map(|e| e.command())
                .filter_map(|c| c.rewritten.as_deref().map(str::to_string))
                .collect();
            assert_eq!(rewritten.len(), 2, "{rewritten:?}");
            let text = log.lock().expect("log").clone();
            assert!(text.contains(">>> USR 1 alice@example.com <redacted>"), "{text}");
            assert!(text.contains("redirect XFR to SB"), "{text}");
            drop((n, s));
            let (status, _) = p.interrupt();
            assert!(status.success(), "{status:?}");
            let _ = tokio::time::timeout(STEP, servers).await;
        })
        .await
        .expect("test finishes in time")
    })
}

/// Per connection, the commands as (direction, line), in order.
fn commands_by_conn(evs: &[Event<'static>]) -> Vec<Vec<(String, String)>> {
    let mut by: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
    for e in evs {
        if let Some(c) = e.command() {
            by.entry(e.conn).or_default().push((
                e.dir.map(|d| d.as_str()).unwrap_or("?").to_string(),
                c.line.to_string(),
            ));
        }
    }
    let mut v: Vec<_> = by.into_values().collect();
    v.sort();
    v
}

#[test]
fn sigterm_leaves_the_log_the_json_lines_and_the_recording_complete() {
    let (dir, json) = json_scratch("live-term");
    let pcap = dir.join("proxy.pcapng");
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let (ds, servers) = session_servers().await;
            let mut p = spawn_proxy_with(
                args(
                    &["--upstream", &ds, "--color", "never", "--no-redact"],
                    &json,
                    &["--pcap".into(), pcap.as_os_str().to_owned()],
                ),
                Stdio::piped(),
            );
            let log = collect(p.stdout());
            // The session is still open (NS and SB connected) when the signal comes.
            let (mut n, mut s) = client(&p.addr).await;
            let (status, err) = p.terminate();
            assert!(status.success(), "{status:?} {err}");
            n.read_to_eof_quietly().await;
            s.read_to_eof_quietly().await;
            let _ = tokio::time::timeout(STEP, servers).await;

            // JSON Lines: every line parses, and every connection ends with its close.
            let evs = json_events(&json);
            let conns: std::collections::BTreeSet<u64> =
                evs.iter().map(|e| e.conn).filter(|&c| c > 0).collect();
            assert_eq!(conns.len(), 3, "dispatch, notification, switchboard");
            for c in &conns {
                let last = evs.iter().rfind(|e| e.conn == *c).expect("events");
                assert!(
                    matches!(last.kind, EventKind::Close(_)),
                    "connection {c} ends with {:?}",
                    last.kind
                );
            }
            let closes = close_of(&evs);
            assert_eq!(
                closes
                    .iter()
                    .filter(|c| c.reason.as_deref() == Some("proxy shutting down"))
                    .count(),
                2
            );
            // The log: one close line per connection, the last line complete.
            std::thread::sleep(Duration::from_millis(200));
            let text = log.lock().expect("log").clone();
            assert_eq!(text.matches(" close by ").count(), 3, "{text}");
            assert!(text.ends_with('\n'));
            // The recording reads back to the same commands as the JSON Lines.
            let tables = Arc::new(Tables::builtin().expect("tables"));
            let opts = ReadOptions {
                flows: FlowOptions {
                    ports: evs
                        .iter()
                        .filter_map(|e| match &e.kind {
                            EventKind::Connect(c) => c.server.as_deref(),
                            _ => None,
                        })
                        .filter_map(|s| s.rsplit(':').next()?.parse().ok())
                        .collect(),
                    ..FlowOptions::default()
                },
                first_conn: 1,
            };
            let read = read_events(&pcap, tables, &opts).expect("the recording reads back");
            assert_eq!(commands_by_conn(&read), commands_by_conn(&evs));
        })
        .await
        .expect("test finishes in time")
    })
}

/// A server that sends `count` copies of `frame` to whoever connects, after one line.
async fn bulk_server(frame: Vec<u8>, count: usize) -> String {
    let (l, a) = server().await;
    tokio::spawn(async move {
        let mut p = accept(&l).await;
        p.line().await;
        let batch = frame.repeat(64);
        for _ in 0..count / 64 {
            p.s.write_all(&batch).await.expect("server write");
        }
        for _ in 0..count % 64 {
            p.s.write_all(&frame).await.expect("server write");
        }
        p.s.shutdown().await.expect("close");
        p.read_to_eof_quietly().await;
    });
    a
}

fn msg_frame() -> Vec<u8> {
    let body = format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{}",
        "the quick brown fox jumps over the lazy dog ".repeat(20)
    );
    format!("MSG bob@example.com Bob {}\r\n{body}", body.len()).into_bytes()
}

/// Connects, asks for the bulk and reads all of it; returns the bytes.
async fn pull(addr: &str) -> usize {
    let mut c = connect(addr).await;
    c.send_line("ANS 1 alice@example.com 1.2.3 99").await;
    c.read_to_eof_quietly().await;
    c.got.len()
}

fn drain_pipe(mut out: std::process::ChildStdout) -> String {
    let mut v = Vec::new();
    let _ = out.read_to_end(&mut v);
    String::from_utf8_lossy(&v).into_owned()
}

#[test]
fn a_standard_output_nobody_reads_does_not_stall_forwarding_or_the_json_file() {
    let (_dir, json) = json_scratch("live-unread");
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            let frame = msg_frame();
            let count = 40_000;
            let up = bulk_server(frame.clone(), count).await;
            // A backlog that holds the whole transfer, so that what is measured is standard
            // output alone (a debug build decodes slower than it forwards).
            let mut p = spawn_proxy_with(
                args(
                    &["--upstream", &up, "--color", "never", "--backlog", "256M"],
                    &json,
                    &[],
                ),
                Stdio::piped(),
            );
            // Nobody reads standard output for 20 s.
            let out = p.stdout();
            let t0 = Instant::now();
            let got = tokio::time::timeout(Duration::from_secs(20), pull(&p.addr))
                .await
                .expect("the transfer completes while standard output is not read");
            assert_eq!(got, frame.len() * count);
            let took = t0.elapsed();
            eprintln!("{got} bytes through in {took:?} with standard output unread");
            // The JSON file has every message, standard output or not.
            let msgs = until(
                "every MSG event in the JSON file",
                Duration::from_secs(60),
                || {
                    let n = json_so_far(&json).iter().filter(|e| is_msg(e)).count();
                    (n == count).then_some(n)
                },
            )
            .await;
            assert_eq!(msgs, count);
            assert!(
                !json_so_far(&json)
                    .iter()
                    .any(|e| matches!(e.kind, EventKind::Dropped(_))),
                "the JSON Lines lost nothing"
            );
            let rest = Duration::from_secs(20).saturating_sub(t0.elapsed());
            tokio::time::sleep(rest).await;
            assert!(p.running());
            let reader = std::thread::spawn(move || drain_pipe(out));
            let (status, err) = p.interrupt();
            assert!(status.success(), "{status:?} {err}");
            let text = reader.join().expect("reader");
            // The log lost lines (it is far larger than what waits for a pipe), and says so.
            let dropped: Vec<&str> = text.lines().filter(|l| l.contains(" dropped ")).collect();
            assert!(
                !dropped.is_empty(),
                "no drop notice in {} bytes of log",
                text.len()
            );
            assert!(dropped[0].contains("events"), "{}", dropped[0]);
            let shown = text.matches("<<< MSG bob@example.com").count();
            let lost: u64 = dropped
                .iter()
                .filter_map(|l| {
                    l.split(" dropped ")
                        .nth(1)?
                        .split(' ')
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .sum();
            assert!(shown < count, "{shown} lines shown");
            // Every event is either shown or counted as dropped from the log (MSG lines and
            // the connection's few other events).
            assert!(
                shown as u64 + lost >= count as u64,
                "{shown} shown + {lost} counted < {count}"
            );
            assert!(err.contains("events not shown in the log"), "{err}");
        })
        .await
        .expect("test finishes in time")
    })
}

#[test]
fn a_closed_standard_output_ends_the_log_quietly_and_json_lines_go_on() {
    let (_dir, json) = json_scratch("live-closed");
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let (ds, servers) = session_servers().await;
            let mut p = spawn_proxy_with(
                args(&["--upstream", &ds, "--color", "never"], &json, &[]),
                Stdio::piped(),
            );
            drop(p.stdout());
            let (n, s) = client(&p.addr).await;
            until("the MSG event in the JSON file", STEP, || {
                json_so_far(&json).iter().any(is_msg).then_some(())
            })
            .await;
            assert!(
                p.running(),
                "a closed standard output does not stop the proxy"
            );
            drop((n, s));
            let _ = tokio::time::timeout(STEP, servers).await;
            let (status, err) = p.interrupt();
            assert!(status.success(), "{status:?} {err}");
            assert!(err.contains("standard output was closed"), "{err}");
            let evs = json_events(&json);
            let closes = close_of(&evs).len();
            assert_eq!(closes, 3, "every connection's close is in the file");
        })
        .await
        .expect("test finishes in time")
    })
}
