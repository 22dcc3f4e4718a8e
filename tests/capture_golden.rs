//! Golden tests over captures/: every fixture capture is read and its events, written by
//! the JSON Lines sink exactly as `msntap read --json` writes them, compared byte for byte
//! with captures/expected/NAME.jsonl; synthetic fixtures are rebuilt from their logs and
//! must match the committed files byte for byte. `MSNTAP_BLESS=1` rewrites both (check
//! the diff by hand before committing). These tests never touch the network.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use msntap::capture::synth::{synthesize, SynthOptions};
use msntap::capture::writer::Format;
use msntap::capture::{read_events, ReadOptions};
use msntap::event::jsonl::JsonlSink;
use msntap::event::Sink;
use msntap::{Event, EventKind, Tables};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tables() -> Arc<Tables> {
    Arc::new(Tables::builtin().expect("built-in tables"))
}

fn bless() -> bool {
    std::env::var_os("MSNTAP_BLESS").is_some_and(|v| v == "1")
}

fn read(path: &Path) -> Vec<Event<'static>> {
    read_events(path, tables(), &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Synthetic fixtures: (capture, log, options as given to `msntap synth`).
fn synth_fixtures() -> Vec<(&'static str, &'static str, SynthOptions)> {
    let o = SynthOptions::default;
    vec![
        ("msnp2_md5.pcap", "msnp2_md5.log", o()),
        (
            "msnp11_chat.pcapng",
            "msnp11_chat.log",
            SynthOptions {
                format: Format::PcapNg,
                segment: 64,
                ..o()
            },
        ),
        (
            "msnp15_adl.pcap",
            "msnp15_adl.log",
            SynthOptions {
                segment: 100,
                ..o()
            },
        ),
        ("msnp21_sdg.pcap", "msnp21_sdg.log", o()),
        (
            "msnp11_chat_reorder.pcap",
            "msnp11_chat.log",
            SynthOptions {
                segment: 16,
                reorder: true,
                seed: 3,
                ..o()
            },
        ),
        (
            "msnp11_chat_duplicate.pcap",
            "msnp11_chat.log",
            SynthOptions {
                segment: 16,
                duplicate: true,
                seed: 4,
                ..o()
            },
        ),
        (
            "msnp11_chat_overlap.pcap",
            "msnp11_chat.log",
            SynthOptions {
                segment: 16,
                overlap: true,
                seed: 5,
                ..o()
            },
        ),
        (
            "msnp11_chat_drop.pcap",
            "msnp11_chat.log",
            SynthOptions {
                segment: 40,
                drop_every: Some(9),
                seed: 6,
                ..o()
            },
        ),
    ]
}

#[test]
fn synthetic_fixtures_are_rebuilt_identically_from_their_logs() {
    rebuild_synth();
}

/// Rebuilds every synthetic fixture and compares (or, when blessing, rewrites) it.
fn rebuild_synth() {
    let dir = root().join("captures/synth");
    let t = tables();
    for (cap, log, opts) in synth_fixtures() {
        let text = std::fs::read_to_string(dir.join(log)).expect(log);
        let conns = msntap::logfile::parse(&text, &t, false);
        assert!(!conns.is_empty(), "{log}: no connections");
        let mut bytes = Vec::new();
        synthesize(&conns, &opts, &mut bytes).expect("synthesize");
        let path = dir.join(cap);
        if bless() {
            std::fs::write(&path, &bytes).expect("write fixture");
            continue;
        }
        let old =
            std::fs::read(&path).unwrap_or_else(|e| panic!("{cap}: {e} (run with MSNTAP_BLESS=1)"));
        assert!(
            old == bytes,
            "{cap} differs from what `msntap synth {log}` makes now"
        );
    }
}

fn captures() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in ["captures", "captures/synth"] {
        for e in std::fs::read_dir(root().join(d))
            .expect("captures dir")
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

#[test]
fn every_capture_matches_its_expected_events() {
    if bless() {
        // The captures must be rewritten before their events are.
        rebuild_synth();
    }
    let caps = captures();
    assert!(caps.len() >= 10, "fixtures missing: {caps:?}");
    let mut failures = Vec::new();
    for p in caps {
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let mut out = Vec::new();
        let mut sink = JsonlSink::new(&mut out);
        for e in read(&p) {
            sink.event(&e).expect("sink");
        }
        sink.finish().expect("sink");
        drop(sink);
        let got = String::from_utf8(out).expect("JSON Lines are UTF-8");
        let exp = root()
            .join("captures/expected")
            .join(format!("{name}.jsonl"));
        if bless() {
            std::fs::write(&exp, &got).expect("write expected");
            continue;
        }
        let want = std::fs::read_to_string(&exp).unwrap_or_default();
        if want != got {
            let line = want
                .lines()
                .zip(got.lines())
                .position(|(a, b)| a != b)
                .map_or(
                    format!(
                        "line counts {} vs {}",
                        want.lines().count(),
                        got.lines().count()
                    ),
                    |i| format!("first difference at line {}", i + 1),
                );
            failures.push(format!("{name}: {line}"));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (MSNTAP_BLESS=1 to rewrite):\n{}",
        failures.join("\n")
    );
}

/// The events without timestamps (reassembly hazards change packet times, not meaning).
fn untimed(evs: &[Event<'_>]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            let mut e = e.clone();
            e.ts = msntap::Ts(0);
            serde_json::to_string(&e).expect("serialize")
        })
        .collect()
}

#[test]
fn reordering_duplicates_and_overlaps_change_nothing() {
    let dir = root().join("captures/synth");
    let clean = untimed(&read(&dir.join("msnp11_chat.pcapng")));
    assert_eq!(
        clean
            .iter()
            .filter(|l| l.contains("\"type\":\"command\""))
            .count(),
        43
    );
    for hazard in ["reorder", "duplicate", "overlap"] {
        let got = untimed(&read(&dir.join(format!("msnp11_chat_{hazard}.pcap"))));
        assert_eq!(got, clean, "{hazard}");
    }
}

#[test]
fn dropped_segments_become_gaps_and_decoding_resumes() {
    let dir = root().join("captures/synth");
    let clean: Vec<String> = read(&dir.join("msnp11_chat.pcapng"))
        .iter()
        .filter_map(|e| e.command().map(|c| c.line.to_string()))
        .collect();
    let evs = read(&dir.join("msnp11_chat_drop.pcap"));
    let gaps = evs
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Gap(_)))
        .count();
    assert!(
        gaps >= 5,
        "expected gaps for the dropped segments, got {gaps}"
    );
    let lines: Vec<String> = evs
        .iter()
        .filter_map(|e| e.command().map(|c| c.line.to_string()))
        .collect();
    // Everything decoded is something the log holds; most of the session survives.
    for l in &lines {
        assert!(
            clean.contains(l),
            "decoded a line the log does not have: {l}"
        );
    }
    assert!(lines.len() >= 25, "only {} commands survived", lines.len());
    // A command that starts right where lost bytes end is decoded, not skipped with them:
    // the server's GCF reply follows a gap inside the LST line before it.
    assert!(
        lines.iter().any(|l| l == "GCF 6 Shields.xml 147"),
        "the command after a gap was lost"
    );
    assert!(
        lines.iter().any(|l| l == "OUT"),
        "decoding did not resume before the end"
    );
}
