//! The `read` and `synth` subcommands as a user runs them: output, summary, exit status,
//! and error messages for a damaged capture. Files are written only under the system
//! temporary directory.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn msntap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_msntap"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("msntap-capture-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d.join(name)
}

#[test]
fn read_prints_the_log_and_a_summary() {
    let out = msntap()
        .args(["read", "--color", "never"])
        .arg(root().join("captures/msnp8_twisted_escargot.pcap"))
        .output()
        .expect("run");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("#3 SB/MSNP8 >>> USR 1 alice@example.com <redacted>"),
        "{stdout}"
    );
    assert!(
        stdout.contains(": Hello from alice@example.com (Twisted MSNP8)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("151 packets, 4 MSNP connections")
            && stderr.contains("0 unknown")
            && stderr.contains("0 desyncs"),
        "{stderr}"
    );
}

#[test]
fn damaged_capture_keeps_what_was_decoded_and_fails() {
    let good =
        std::fs::read(root().join("captures/msnp11_msnp11-sdk_escargot.pcap")).expect("fixture");
    let cut = tmp("cut.pcap");
    std::fs::write(&cut, &good[..good.len() / 2]).expect("write");
    let out = msntap()
        .args(["read", "--json", "-"])
        .arg(&cut)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cut.pcap: at byte offset ") && stderr.contains("truncated"),
        "{stderr}"
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(events.iter().filter(|e| e["type"] == "command").count() > 40);
    assert!(
        events.iter().any(|e| e["type"] == "close"),
        "connections are closed at the error"
    );
}

#[test]
fn synth_then_read_round_trips_a_log() {
    let out_pcap = tmp("chat.pcapng");
    let st = msntap()
        .args(["synth"])
        .arg(root().join("captures/synth/msnp2_md5.log"))
        .arg("-o")
        .arg(&out_pcap)
        .args([
            "--pcapng",
            "--segment",
            "3",
            "--reorder",
            "--duplicate",
            "--seed",
            "9",
        ])
        .status()
        .expect("run");
    assert!(st.success());
    let read = msntap()
        .args(["read", "--json", "-"])
        .arg(&out_pcap)
        .output()
        .expect("run");
    assert!(read.status.success());
    let cmds: Vec<String> = String::from_utf8_lossy(&read.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "command")
        .filter_map(|e| e["line"].as_str().map(str::to_string))
        .collect();
    assert_eq!(cmds.len(), 37);
    assert_eq!(cmds.first().map(String::as_str), Some("VER 1 MSNP2 CVR0"));
    assert_eq!(cmds.last().map(String::as_str), Some("OUT"));
}

#[test]
fn max_buffer_bounds_what_is_held_and_is_checked() {
    let cap = root().join("captures/synth/msnp11_chat_reorder.pcap");
    let run = |limit: &str| {
        let out = msntap()
            .args(["read", "--json", "-", "--quiet", "--max-buffer", limit])
            .arg(&cap)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The default holds every reordered segment until its hole fills: nothing is lost.
    let plenty = run("256M");
    assert!(!plenty.contains(r#""type":"gap""#));
    assert!(!plenty.contains("memory budget"));
    // With room for nothing, held segments are given up: a note says why, then gaps.
    let none = run("1");
    assert!(
        none.contains("memory budget (--max-buffer) exhausted"),
        "{none}"
    );
    assert!(none.contains(r#""type":"gap""#));
    let bad = msntap()
        .args(["read", "--max-buffer", "lots"])
        .arg(&cap)
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a byte count"));
}
