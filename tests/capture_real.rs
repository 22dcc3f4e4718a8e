//! Real captures: the two Escargot captures in captures/ (recorded from client libraries
//! this project did not write) and, when present, Wireshark's public sample in
//! ../shared/captures. Checks what a user would: nothing desynchronised or unknown, every
//! switchboard found, and the messages the client reported seeing are the ones decoded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use msntap::capture::{read_events, ReadOptions};
use msntap::{Dir, Event, EventKind, Service, Tables};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> Vec<Event<'static>> {
    let tables = Arc::new(Tables::builtin().expect("tables"));
    read_events(path, tables, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_clean(evs: &[Event<'static>]) {
    for e in evs {
        match &e.kind {
            EventKind::Desync(_) | EventKind::Gap(_) | EventKind::Error(_) => {
                panic!("unexpected {} event: {e:?}", e.type_name())
            }
            EventKind::Command(c) => assert!(c.known, "unknown command {}", c.line),
            _ => {}
        }
    }
}

/// Texts of `text/plain` messages received by the client (server to client) on switchboards.
fn received_texts(evs: &[Event<'static>]) -> Vec<(u64, String)> {
    evs.iter()
        .filter(|e| e.service == Service::Sb && e.dir == Some(Dir::S2c))
        .filter_map(|e| {
            let c = e.command()?;
            if c.cmd != "MSG" {
                return None;
            }
            let p = c.payload.as_ref()?;
            if p.content_type()? != "text/plain" {
                return None;
            }
            Some((e.conn, p.content()?.text()?.to_string()))
        })
        .collect()
}

fn switchboards(evs: &[Event<'static>]) -> Vec<u64> {
    let mut v: Vec<u64> = evs
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Connect(_)) && e.service == Service::Sb)
        .map(|e| e.conn)
        .collect();
    v.dedup();
    v
}

/// Quoted message texts from the client logs: `MSG from X 'text'` or `text: "text"`.
fn client_log_texts(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in log.lines() {
        if let Some(i) = l.find("MSG from ") {
            if let (Some(a), Some(b)) = (l[i..].find('\''), l.rfind('\'')) {
                if i + a < b {
                    out.push(l[i + a + 1..b].to_string());
                }
            }
        } else if l.contains("TextMessage") {
            if let Some(i) = l.find("text: \"") {
                let rest = &l[i + 7..];
                if let Some(j) = rest.find('"') {
                    out.push(rest[..j].to_string());
                }
            }
        }
    }
    out
}

#[test]
fn escargot_msnp8_twisted() {
    let evs = read(&root().join("captures/msnp8_twisted_escargot.pcap"));
    assert_clean(&evs);
    // Two NS logins on 1863 and two switchboard sessions on 1864 (one per side of the chat).
    let sbs = switchboards(&evs);
    assert_eq!(sbs.len(), 2, "switchboards: {sbs:?}");
    for e in &evs {
        if let EventKind::Connect(c) = &e.kind {
            let server = &c.server;
            let port = if e.service == Service::Sb {
                ":1864"
            } else {
                ":1863"
            };
            assert!(
                server.as_deref().is_some_and(|s| s.ends_with(port)),
                "{e:?}"
            );
        }
        // Every command after the client's opening VER is labelled with the negotiated version.
        if e.command().is_some_and(|c| c.cmd != "VER") {
            assert_eq!(e.version.map(|v| v.0), Some(8), "{e:?}");
        }
    }
    let log = std::fs::read_to_string(root().join("captures/msnp8_twisted_escargot.client.log"))
        .expect("client log");
    let want = client_log_texts(&log);
    assert_eq!(
        want,
        vec![
            "Hello from alice@example.com (Twisted MSNP8)".to_string(),
            "Reply from bob@example.com".to_string()
        ]
    );
    let got: Vec<String> = received_texts(&evs).into_iter().map(|(_, t)| t).collect();
    assert_eq!(got, want);
    // The client log's ACK, typing and BYE are there too.
    let lines: Vec<&str> = evs
        .iter()
        .filter_map(|e| e.command().map(|c| c.line.as_ref()))
        .collect();
    assert!(lines.iter().any(|l| l.starts_with("ACK ")));
    assert!(lines.contains(&"BYE alice@example.com"));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("RNG ") && l.contains("127.0.0.1:1864")));
}

#[test]
fn escargot_msnp11_sdk() {
    let evs = read(&root().join("captures/msnp11_msnp11-sdk_escargot.pcap"));
    assert_clean(&evs);
    let sbs = switchboards(&evs);
    assert_eq!(sbs.len(), 2, "switchboards: {sbs:?}");
    let log =
        std::fs::read_to_string(root().join("captures/msnp11_msnp11-sdk_escargot.client.log"))
            .expect("client log");
    let want = client_log_texts(&log);
    assert_eq!(want.len(), 2, "{want:?}");
    let got: Vec<String> = received_texts(&evs).into_iter().map(|(_, t)| t).collect();
    assert_eq!(got, want);
    // The nudge and the display picture: a datacast and P2P data carrying the PNG the
    // client log prints (its first bytes are the PNG signature).
    let sb_msgs: Vec<&msntap::event::Command> = evs
        .iter()
        .filter(|e| e.service == Service::Sb)
        .filter_map(|e| e.command())
        .filter(|c| c.cmd == "MSG")
        .collect();
    let ctype = |c: &msntap::event::Command| {
        c.payload
            .as_ref()
            .and_then(|p| p.content_type())
            .map(str::to_string)
    };
    assert!(sb_msgs
        .iter()
        .any(|c| ctype(c).as_deref() == Some("text/x-msnmsgr-datacast")));
    let png = [
        137u8, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82,
    ];
    assert!(
        sb_msgs
            .iter()
            .filter_map(|c| c.payload.as_ref()?.content()?.body.as_ref())
            .any(|b| b.bytes().windows(png.len()).any(|w| w == png)),
        "display picture data not found in any P2P message"
    );
    for e in evs
        .iter()
        .filter(|e| e.command().is_some_and(|c| c.cmd != "VER"))
    {
        assert_eq!(e.version.map(|v| v.0), Some(11), "{e:?}");
    }
}

#[test]
fn wireshark_sample_msnms() {
    let p = root().join("../shared/captures/msnms.pcap");
    if !p.exists() {
        println!(
            "SKIP: {} is absent (it is not part of the project)",
            p.display()
        );
        return;
    }
    let evs = read(&p);
    // The capture starts mid-session (no SYN, no login) yet every stream begins on a
    // command line: no desync, no gap, nothing unknown.
    assert_clean(&evs);
    let conns: std::collections::BTreeSet<u64> = evs.iter().map(|e| e.conn).collect();
    assert_eq!(conns.len(), 6);
    let msgs = evs
        .iter()
        .filter(|e| e.command().is_some_and(|c| c.cmd == "MSG"))
        .count();
    assert_eq!(msgs, 244, "the capture's README counts 244 MSG");
    // Three switchboard conversations answered with ANS/IRO.
    let iro_conns: std::collections::BTreeSet<u64> = evs
        .iter()
        .filter(|e| e.command().is_some_and(|c| c.cmd == "IRO"))
        .map(|e| e.conn)
        .collect();
    assert_eq!(iro_conns.len(), 3);
    // No VER in the capture, so no version; the service still shows from the commands:
    // five switchboards (client MSG) and one notification server (PNG/QNG).
    let mut svc: std::collections::BTreeMap<u64, Service> = Default::default();
    for e in evs.iter().filter(|e| e.command().is_some()) {
        svc.insert(e.conn, e.service);
    }
    let sb = svc.values().filter(|s| **s == Service::Sb).count();
    let ns = svc.values().filter(|s| **s == Service::Ns).count();
    assert_eq!((sb, ns), (5, 1), "{svc:?}");
}
