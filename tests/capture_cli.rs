//! The `read` and `synth` subcommands on captures as a user runs them: output, the summary
//! line (right for inputs cut short, totals over several files), exit status, messages for
//! damaged captures, and synth's output (the committed fixtures, owner-only). Files are
//! written only under the system temporary directory.

mod cli_support;

use cli_support::{commands, fixture, json_lines, msntap, root, scratch, write};

const TWISTED: &str = "captures/msnp8_twisted_escargot.pcap";
const SDK: &str = "captures/msnp11_msnp11-sdk_escargot.pcap";

#[test]
fn read_prints_the_log_and_a_summary() {
    let r = msntap(&["read", "--color", "never", TWISTED]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("#3 SB/MSNP8 >>> USR 1 alice@example.com <redacted>"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains(": Hello from alice@example.com (Twisted MSNP8)"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stderr,
        "msntap: 151 packets, 4 MSNP connections (0 other TCP connections ignored); 4 connections, 90 commands, 0 unknown, 0 unmatched forms, 0 payload guesses, 0 gaps, 0 desyncs, 0 errors\n"
    );
}

#[test]
fn damaged_capture_keeps_what_was_decoded_and_counts_it() {
    let good = std::fs::read(root().join(SDK)).expect("fixture");
    let d = scratch("capture-cli-cut");
    let cut = d.join("cut.pcap");
    write(&cut, &good[..good.len() / 2]);
    let c = cut.to_str().unwrap();
    let r = msntap(&["read", "--json", "-", c]);
    assert_eq!(r.code, 1);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    assert!(
        lines[0].starts_with(&format!("msntap: {c}: at byte offset "))
            && lines[0].contains("truncated"),
        "{}",
        r.stderr
    );
    let evs = json_lines(&r.stdout);
    let n_cmds = evs.iter().filter(|e| e["type"] == "command").count();
    assert!(n_cmds > 40, "{n_cmds}");
    assert!(
        evs.iter().any(|e| e["type"] == "close"),
        "connections are closed at the error"
    );
    // The summary counts what was read of the cut file, not zero.
    let packets: u64 = lines[1]
        .strip_prefix("msntap: ")
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("packet count first");
    assert!(packets > 40, "{}", lines[1]);
    assert!(
        lines[1].contains(&format!("{n_cmds} commands"))
            && lines[1].ends_with("; the input had a problem (above)"),
        "{}",
        lines[1]
    );
    // Several files: the cut one's packets are in the total.
    let both = msntap(&["read", "--json", "-", c, TWISTED]);
    assert_eq!(both.code, 1);
    let last = both.stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with(&format!("msntap: {} packets, ", packets + 151)),
        "{last}"
    );
    assert!(
        last.ends_with("; 1 of 2 inputs had a problem (above)"),
        "{last}"
    );
    // The second file's connections are numbered after the first's.
    let cut_conns: std::collections::BTreeSet<u64> =
        evs.iter().filter_map(|e| e["conn"].as_u64()).collect();
    let conns: std::collections::BTreeSet<u64> = json_lines(&both.stdout)
        .iter()
        .filter_map(|e| e["conn"].as_u64())
        .collect();
    let n = cut_conns.len() as u64 + 4;
    assert_eq!(conns, (1..=n).collect(), "{conns:?}");
}

#[test]
fn a_capture_cut_after_its_header_is_an_error() {
    let good = std::fs::read(root().join(TWISTED)).expect("fixture");
    let d = scratch("capture-cli-header");
    let p = d.join("header.pcap");
    write(&p, &good[..24]);
    let r = msntap(&["read", p.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(&format!(
            "msntap: {}: no packets: the capture ends after its file header\n",
            p.display()
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("msntap: 0 packets, 0 MSNP connections"));
    // Shorter than a header: the capture layer's own message.
    write(&p, &good[..10]);
    let r = msntap(&["read", p.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("file too short for a capture header"),
        "{}",
        r.stderr
    );
}

#[test]
fn synth_then_read_round_trips_a_log() {
    let d = scratch("capture-cli-synth");
    let out_pcap = d.join("chat.pcapng");
    let o = out_pcap.to_str().unwrap();
    let r = msntap(&[
        "synth",
        "captures/synth/msnp2_md5.log",
        "-o",
        o,
        "--pcapng",
        "--segment",
        "3",
        "--reorder",
        "--duplicate",
        "--seed",
        "9",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let read = msntap(&["read", "--json", "-", o]);
    assert_eq!(read.code, 0, "{}", read.stderr);
    let cmds = commands(&read.stdout);
    assert_eq!(cmds.len(), 37);
    assert_eq!(cmds.first().map(String::as_str), Some("VER 1 MSNP2 CVR0"));
    assert_eq!(cmds.last().map(String::as_str), Some("OUT"));
    // The capture holds the log's secrets as they are: owner-only.
    #[cfg(unix)]
    assert_eq!(cli_support::mode(&out_pcap), 0o600);
}

#[test]
fn synth_streams_to_the_committed_fixtures() {
    // The same options as tests/capture_golden.rs gives the library: the command, which
    // reads the log twice a line at a time, must write the same bytes.
    let d = scratch("capture-cli-fixtures");
    for (cap, log, opts) in [
        ("msnp2_md5.pcap", "msnp2_md5.log", vec![]),
        (
            "msnp11_chat.pcapng",
            "msnp11_chat.log",
            vec!["--pcapng", "--segment", "64"],
        ),
        (
            "msnp11_chat_drop.pcap",
            "msnp11_chat.log",
            vec!["--segment", "40", "--drop", "9", "--seed", "6"],
        ),
        (
            "msnp11_chat_reorder.pcap",
            "msnp11_chat.log",
            vec!["--segment", "16", "--reorder", "--seed", "3"],
        ),
    ] {
        let out = d.join(cap);
        let log = fixture(&format!("captures/synth/{log}"));
        let mut args = vec!["synth", &log, "-o", out.to_str().unwrap()];
        args.extend(opts);
        let r = msntap(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let want = std::fs::read(root().join("captures/synth").join(cap)).expect("fixture");
        let got = std::fs::read(&out).expect("output");
        assert!(got == want, "{cap} differs from the committed fixture");
    }
}

#[test]
fn synth_refuses_what_it_cannot_read_twice() {
    let r = msntap(&["synth", "-", "-o", "/dev/null"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "msntap: synth reads its log twice: give a file, not `-`\n"
    );
    let r = msntap(&["synth", "captures", "-o", "/dev/null"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("captures: is a directory"),
        "{}",
        r.stderr
    );
    let r = msntap(&[
        "synth",
        "captures/msnp8_twisted_escargot.client.log",
        "-o",
        "/dev/null",
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no C:/S: or >>>/<<< lines found"),
        "{}",
        r.stderr
    );
    for bad in [["--segment", "0"], ["--drop", "0"]] {
        let r = msntap(&[
            "synth",
            "captures/synth/msnp2_md5.log",
            "-o",
            "/dev/null",
            bad[0],
            bad[1],
        ]);
        assert_eq!(r.code, 2, "{bad:?}");
        assert!(r.stderr.contains("must be at least 1"), "{}", r.stderr);
    }
}

#[test]
fn max_buffer_bounds_what_is_held_and_is_checked() {
    let cap = fixture("captures/synth/msnp11_chat_reorder.pcap");
    let run = |limit: &str| {
        let r = msntap(&[
            "read",
            "--json",
            "-",
            "--quiet",
            "--max-buffer",
            limit,
            &cap,
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
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
    let bad = msntap(&["read", "--max-buffer", "lots", &cap]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("is not a byte count"));
}
