//! The goldens checked against something outside msntap: Wireshark's TCP reassembly
//! (`tshark -z follow,tcp,raw`) gives each connection's two byte streams, and a small
//! framer written here from the protocol reference's payload table (protocol-facts A.2),
//! independently of msntap's tables and framer, cuts them into command lines. msntap's
//! `read` must give the same command lines, per connection and direction, in the same order.
//! Needs tshark (installed by .ci/run); skips with a message when it is missing. Also reads
//! ../shared/captures when present.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use msntap::capture::{read_path, ReadOptions};
use msntap::{Dir, EventKind, Tables};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tshark() -> bool {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIP: tshark is not installed; the outside reference for the goldens was not run"
        );
    }
    ok
}

/// Commands that carry a payload whose length is their last argument, by direction, as
/// protocol-facts A.2 lists them (for every version: the captures here do not need more).
fn payload_command(name: &str, dir: Dir, args: &[&str], msnp13: bool) -> bool {
    let last_is_len = args
        .last()
        .is_some_and(|a| a.bytes().all(|c| c.is_ascii_digit()));
    if !last_is_len {
        return false;
    }
    if name.bytes().all(|c| c.is_ascii_digit()) {
        // NNN trid len, from MSNP13.
        return msnp13 && args.len() == 2;
    }
    matches!(
        (name, dir),
        ("MSG", _)
            | ("NOT" | "IPG" | "UBX" | "UBN" | "UBM" | "NFY", Dir::S2c)
            | ("GCF", Dir::S2c)
            | (
                "SDC" | "PAG" | "PGD" | "QRY" | "UUN" | "UUM" | "VAS",
                Dir::C2s
            )
            | ("UUX" | "ADL" | "RML" | "FQY" | "PUT" | "DEL" | "SDG", _)
    )
}

/// The command lines of one direction of a stream, cut by the rule above.
fn command_lines(stream: &[u8], dir: Dir, msnp13: &mut bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let rest = &stream[pos..];
        let (line, next) = match rest.iter().position(|&c| c == b'\n') {
            Some(i) => (&rest[..i], pos + i + 1),
            None => (rest, stream.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line).into_owned();
        let toks: Vec<&str> = text.split(' ').filter(|t| !t.is_empty()).collect();
        pos = next;
        let Some(&name) = toks.first() else { continue };
        if name == "VER"
            && toks.iter().any(|t| {
                t.strip_prefix("MSNP")
                    .and_then(|n| n.parse::<u8>().ok())
                    .is_some_and(|n| n >= 13)
            })
            && dir == Dir::S2c
        {
            *msnp13 = true;
        }
        let args = &toks[1..];
        if payload_command(name, dir, args, *msnp13) {
            let n: usize = args.last().and_then(|a| a.parse().ok()).unwrap_or(0);
            pos = (pos + n).min(stream.len());
        }
        out.push(text);
    }
    out
}

/// Each TCP connection's (client, server) address text and its two streams, per tshark.
fn tshark_streams(cap: &Path) -> Vec<(String, String, Vec<u8>, Vec<u8>)> {
    let ids = Command::new("tshark")
        .arg("-r")
        .arg(cap)
        .args(["-T", "fields", "-e", "tcp.stream"])
        .output()
        .expect("tshark runs");
    let mut n: Vec<u32> = String::from_utf8_lossy(&ids.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    n.sort();
    n.dedup();
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(cap).arg("-q");
    for i in &n {
        cmd.arg("-z").arg(format!("follow,tcp,raw,{i}"));
    }
    let out = cmd.output().expect("tshark runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut streams = Vec::new();
    for block in text.split("===================================================================") {
        let mut nodes = Vec::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for l in block.lines() {
            if let Some(n) = l.strip_prefix("Node ").and_then(|r| r.split_once(": ")) {
                nodes.push(n.1.trim().to_string());
                continue;
            }
            let (to, hex) = match l.strip_prefix('\t') {
                Some(h) => (&mut b, h),
                None => (&mut a, l),
            };
            if hex.is_empty() || !hex.bytes().all(|c| c.is_ascii_hexdigit()) || hex.len() % 2 != 0 {
                continue;
            }
            for i in (0..hex.len()).step_by(2) {
                to.push(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"));
            }
        }
        if nodes.len() == 2 {
            streams.push((nodes[0].clone(), nodes[1].clone(), a, b));
        }
    }
    streams
}

fn check(cap: &Path) {
    let tables = Arc::new(Tables::builtin().expect("tables"));
    // msntap's command lines by (client, server, dir).
    let mut conns: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let mut got: BTreeMap<(u64, Dir), Vec<String>> = BTreeMap::new();
    read_path(cap, tables, &ReadOptions::default(), &mut |e| {
        match &e.kind {
            EventKind::Connect(c) => {
                conns.insert(
                    e.conn,
                    (
                        c.client.as_deref().unwrap_or("").to_string(),
                        c.server.as_deref().unwrap_or("").to_string(),
                    ),
                );
            }
            EventKind::Command(c) => got
                .entry((e.conn, e.dir.expect("dir")))
                .or_default()
                .push(c.line.to_string()),
            _ => {}
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let streams = tshark_streams(cap);
    assert!(
        !streams.is_empty(),
        "{}: tshark found no TCP stream",
        cap.display()
    );
    let mut compared = 0;
    for (conn, (client, server)) in &conns {
        let s = streams
            .iter()
            .find(|(a, b, _, _)| (a, b) == (client, server) || (b, a) == (client, server))
            .unwrap_or_else(|| {
                panic!(
                    "{}: tshark has no stream {client} -> {server}",
                    cap.display()
                )
            });
        // Node 0 is whoever tshark saw first; orient by the client address.
        let (c2s, s2c) = if &s.0 == client {
            (&s.2, &s.3)
        } else {
            (&s.3, &s.2)
        };
        let mut v13 = false;
        // The server's VER tells the version; cut that direction first.
        let want_s2c = command_lines(s2c, Dir::S2c, &mut v13);
        let want_c2s = command_lines(c2s, Dir::C2s, &mut v13);
        for (dir, want) in [(Dir::C2s, want_c2s), (Dir::S2c, want_s2c)] {
            let have = got.get(&(*conn, dir)).cloned().unwrap_or_default();
            assert_eq!(
                have,
                want,
                "{}: connection {conn} ({client} -> {server}) {dir:?}",
                cap.display()
            );
            compared += want.len();
        }
    }
    assert!(compared > 0, "{}: nothing compared", cap.display());
}

fn captures() -> Vec<PathBuf> {
    let mut v = vec![
        root().join("captures/msnp8_twisted_escargot.pcap"),
        root().join("captures/msnp11_msnp11-sdk_escargot.pcap"),
    ];
    // The synthetic fixtures, hazards included (tshark reassembles reordered, duplicated
    // and overlapping segments on its own); not the one with dropped segments.
    for n in [
        "msnp2_md5.pcap",
        "msnp11_chat.pcapng",
        "msnp15_adl.pcap",
        "msnp21_sdg.pcap",
        "msnp11_chat_reorder.pcap",
        "msnp11_chat_duplicate.pcap",
        "msnp11_chat_overlap.pcap",
    ] {
        v.push(root().join("captures/synth").join(n));
    }
    let shared = root().join("../shared/captures");
    if shared.is_dir() {
        for n in ["msnms.pcap", "msnp11_msnp11-sdk_http_escargot.pcap"] {
            let p = shared.join(n);
            if p.exists() {
                v.push(p);
            }
        }
    } else {
        eprintln!("SKIP: ../shared/captures is absent; compared captures/ only");
    }
    v
}

#[test]
fn command_lines_match_an_independent_framing_of_tsharks_streams() {
    if !tshark() {
        return;
    }
    for cap in captures() {
        check(&cap);
    }
}
