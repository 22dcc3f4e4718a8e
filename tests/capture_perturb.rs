//! Perturbed captures: ../shared/tools/perturb.py rewrites a classic pcap with the same
//! TCP byte streams delivered differently (segments re-split, some sent twice, neighbours
//! swapped, handshake, ACKs and FINs included, the two directions' packets interleaved
//! otherwise). Every capture of captures/ and ../shared/captures it can read, under many
//! seeds, must decode to the same events per connection and direction as the original
//! (commands with their version and fields, HTTP messages paired with their requests,
//! who closed first), with no more gaps or mid-stream notes. The copies are made in a
//! temporary directory and never kept.

mod scratch_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use msntap::capture::{read_events, ReadOptions};
use msntap::{EventKind, Tables};
use scratch_support::Scratch;

const SEEDS: u64 = 10;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every event as JSON, per (client, server, direction): connect and close under no
/// direction. Timestamps are left out (a re-split segment may be stamped a little later)
/// and so is the `detail` of a connect event opened by port or by referral (see
/// `comparable`); and the count of gap and mid-stream note events.
type Decoded = (BTreeMap<(String, String, String), Vec<String>>, usize);

fn decode(path: &Path) -> Decoded {
    let tables = Arc::new(Tables::builtin().expect("tables"));
    let evs = read_events(path, tables, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut addrs = BTreeMap::new();
    let mut lines: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    let mut bad = 0;
    for e in &evs {
        match &e.kind {
            EventKind::Connect(c) => {
                addrs.insert(
                    e.conn,
                    (
                        c.client.as_deref().unwrap_or_default().to_string(),
                        c.server.as_deref().unwrap_or_default().to_string(),
                    ),
                );
            }
            EventKind::Gap(_) => bad += 1,
            EventKind::Note(m) if m.message.contains("mid-way") => bad += 1,
            _ => {}
        }
        let (cl, sv) = addrs.get(&e.conn).cloned().unwrap_or_default();
        let d = e.dir.map_or("-", |d| d.as_str()).to_string();
        let mut v = serde_json::to_value(e).expect("event to JSON");
        comparable(&mut v);
        lines.entry((cl, sv, d)).or_default().push(v.to_string());
    }
    (lines, bad)
}

/// Leaves out what may differ between two deliveries of the same bytes: every `ts` (also
/// those inside payload summaries) and the connection number. A switchboard on port 1863
/// (msnms.pcap) is opened at its SYN by its port, or by the referral that named it when
/// the file has that referral first; which one depends on the order of two connections'
/// packets in the file (docs/capture.md, "ordering limits"), so a connect event's
/// `service`, `version` and `detail` are compared only when it was opened otherwise.
fn comparable(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("ts");
            m.remove("conn");
            let by_port_or_referral = m.get("type").and_then(|t| t.as_str()) == Some("connect")
                && m.get("detail").and_then(|d| d.as_str()).is_some_and(|d| {
                    d.starts_with("MSNP port ") || d.contains("learned from a referral")
                });
            if by_port_or_referral {
                for k in ["service", "version", "detail"] {
                    m.remove(k);
                }
            }
            for x in m.values_mut() {
                comparable(x);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(comparable),
        _ => {}
    }
}

/// Classic little-endian microsecond pcap over Ethernet: what perturb.py reads.
fn perturbable(p: &Path) -> bool {
    let Ok(b) = std::fs::read(p) else {
        return false;
    };
    b.len() >= 24 && b[..4] == [0xd4, 0xc3, 0xb2, 0xa1] && b[20..24] == [1, 0, 0, 0]
}

#[test]
fn perturbed_captures_decode_to_the_same_commands() {
    let tool = root().join("../shared/tools/perturb.py");
    if !tool.exists() {
        println!(
            "SKIP: {} is absent (it is not part of the project)",
            tool.display()
        );
        return;
    }
    if Command::new("python3").arg("--version").output().is_err() {
        println!("SKIP: python3 is not installed");
        return;
    }
    let mut caps: Vec<PathBuf> = Vec::new();
    for dir in [
        "captures",
        "captures/synth",
        "captures/http",
        "../shared/captures",
    ] {
        let Ok(rd) = std::fs::read_dir(root().join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "pcap") && perturbable(&p) {
                caps.push(p);
            }
        }
    }
    caps.sort();
    assert!(caps.len() >= 4, "captures missing: {caps:?}");
    let tmp = Scratch::dir("perturb");
    let mut failures = Vec::new();
    let mut runs = 0;
    for cap in &caps {
        let (want, want_bad) = decode(cap);
        assert!(!want.is_empty(), "{}: no commands", cap.display());
        for seed in 0..SEEDS {
            let out = tmp.join("p.pcap");
            let st = Command::new("python3")
                .arg(&tool)
                .arg(cap)
                .arg(&out)
                .arg(seed.to_string())
                .output()
                .expect("run perturb.py");
            assert!(
                st.status.success(),
                "perturb.py failed: {}",
                String::from_utf8_lossy(&st.stderr)
            );
            let (got, bad) = decode(&out);
            runs += 1;
            if got != want || bad > want_bad {
                let lost: Vec<_> = want
                    .iter()
                    .filter(|(k, v)| got.get(*k) != Some(v))
                    .map(|(k, _)| k.clone())
                    .collect();
                failures.push(format!(
                    "{} seed {seed}: {bad} gaps/mid-stream notes (original {want_bad}); differing streams {lost:?}",
                    cap.display()
                ));
            }
        }
    }
    println!(
        "{} captures x {SEEDS} seeds = {runs} perturbed copies decoded",
        caps.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
