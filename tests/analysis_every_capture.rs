//! Every analysis feature runs on every capture of captures/ and ../shared/captures (the
//! latter skipped, saying so, when absent): report, transcript, annotate, extract, and the
//! login/challenge annotations of `read`. Each must succeed, say something, and keep
//! decoding clean (no desync where the capture has no loss).

mod scratch_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use scratch_support::Scratch;

fn captures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = Vec::new();
    for dir in [
        root.join("captures"),
        root.join("captures/synth"),
        root.join("../shared/captures"),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            eprintln!("SKIP: {} absent", dir.display());
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn run(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_msntap"))
        .args(args)
        .output()
        .expect("msntap runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn every_feature_runs_on_every_capture() {
    let caps = captures();
    assert!(caps.len() >= 10, "{caps:?}");
    let tmp = Scratch::dir("every");
    for (i, c) in caps.iter().enumerate() {
        let c = c.to_str().unwrap();
        let lossy = c.contains("_drop");
        let (ok, out, err) = run(&["report", c, "--json", "-"]);
        assert!(ok, "report {c}: {err}");
        let r: serde_json::Value = serde_json::from_str(&out).expect("report JSON");
        assert!(r["events"].as_u64().unwrap() > 0, "{c}");
        assert!(
            r["unknown_commands"].as_object().unwrap().is_empty(),
            "{c}: {}",
            r["unknown_commands"]
        );
        if !lossy {
            assert!(
                r["desyncs"].as_array().unwrap().is_empty(),
                "{c}: {}",
                r["desyncs"]
            );
        }
        let (ok, out, err) = run(&["transcript", c, "--json", "-"]);
        assert!(ok, "transcript {c}: {err}");
        let t: serde_json::Value = serde_json::from_str(&out).expect("transcript JSON");
        let has_sb = r["commands"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.ends_with(" SB"));
        if has_sb {
            assert!(
                !t.as_array().unwrap().is_empty(),
                "{c}: switchboard traffic but no conversation"
            );
        }
        let ann = tmp.join(format!("{i}.pcapng"));
        let (ok, _, err) = run(&["annotate", c, "-o", ann.to_str().unwrap()]);
        assert!(ok, "annotate {c}: {err}");
        assert!(std::fs::metadata(&ann).unwrap().len() > 0);
        let dir = tmp.join(format!("x{i}"));
        let (ok, _, err) = run(&["extract", c, "-o", dir.to_str().unwrap()]);
        assert!(ok, "extract {c}: {err}");
        assert!(err.contains("objects"), "{c}: {err}");
        let (ok, out, err) = run(&["read", c, "--json", "-"]);
        assert!(ok, "read {c}: {err}");
        // Every login line that carries a scheme is annotated.
        for l in out.lines() {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            let scheme = e["args"].get(1).and_then(|a| a.as_str()).unwrap_or("");
            if e["cmd"] == "USR" && matches!(scheme, "MD5" | "TWN" | "SSO") {
                assert!(e["annotations"]["auth"]["scheme"].is_string(), "{c}: {l}");
            }
        }
    }
}
