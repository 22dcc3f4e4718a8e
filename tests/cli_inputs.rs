//! One way in: every decoding command reads captures, session logs and JSON Lines, from
//! files or from a pipe (`-`), told apart by their first bytes, with one connection
//! numbering across inputs and a clear message (exit 1) for what it cannot read. Files are
//! written only under the system temporary directory.

mod cli_support;

use cli_support::{commands, fixture, json_lines, msntap, msntap_stdin, root, scratch, write};

const TWISTED: &str = "captures/msnp8_twisted_escargot.pcap";

fn json(args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let mut a = args.to_vec();
    a.extend(["--json", "-"]);
    let r = msntap(&a);
    (r.code, json_lines(&r.stdout), r.stderr)
}

#[test]
fn read_dash_takes_a_capture_from_a_pipe() {
    // What `tcpdump -w - | msntap read -` does.
    let pcap = std::fs::read(root().join(TWISTED)).expect("fixture");
    let piped = msntap_stdin(&["read", "-", "--json", "-"], &pcap);
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    let from_file = msntap(&["read", TWISTED, "--json", "-"]);
    assert_eq!(piped.stdout, from_file.stdout);
    assert!(piped
        .stderr
        .starts_with("msntap: 151 packets, 4 MSNP connections"));
    // pcapng, a session log and JSON Lines through the pipe too.
    let ng = std::fs::read(root().join("captures/synth/msnp11_chat.pcapng")).expect("fixture");
    let r = msntap_stdin(&["read", "-", "--json", "-"], &ng);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(commands(&r.stdout).len() > 30);
    let log = std::fs::read(root().join("captures/logs/msnp8.log")).expect("fixture");
    let r = msntap_stdin(&["decode", "-", "--json", "-"], &log);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        msntap(&["read", "captures/logs/msnp8.log", "--json", "-"]).stdout
    );
    let r = msntap_stdin(&["read", "-", "--json", "-"], from_file.stdout.as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(commands(&r.stdout), commands(&from_file.stdout));
    assert!(r.stderr.starts_with("msntap: "), "{}", r.stderr);
    assert!(
        r.stderr.contains(" JSON lines; 4 connections, 90 commands"),
        "{}",
        r.stderr
    );
}

#[test]
fn every_kind_in_one_run_with_one_numbering() {
    let d = scratch("inputs-mix");
    let j = d.join("twisted.jsonl");
    let r = msntap(&["read", TWISTED, "--json", j.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (code, evs, err) = json(&[
        "read",
        TWISTED,
        "captures/logs/msnp11.log",
        j.to_str().unwrap(),
        "captures/synth/msnp11_chat.pcapng",
    ]);
    assert_eq!(code, 0, "{err}");
    // Each input alone: how many connections it has.
    let inputs = [
        TWISTED,
        "captures/logs/msnp11.log",
        j.to_str().unwrap(),
        "captures/synth/msnp11_chat.pcapng",
    ];
    let counts: Vec<u64> = inputs
        .iter()
        .map(|i| {
            let (_, evs, _) = json(&["read", i]);
            let c: std::collections::BTreeSet<u64> =
                evs.iter().filter_map(|e| e["conn"].as_u64()).collect();
            assert_eq!(c.first(), Some(&1), "{i}");
            c.len() as u64
        })
        .collect();
    // Together: input k's connections follow input k-1's, in the order read.
    let mut ranges = Vec::new();
    let mut lo = 1;
    for n in &counts {
        ranges.push(lo..=lo + n - 1);
        lo += n;
    }
    let mut at = 0;
    for e in &evs {
        let c = e["conn"].as_u64().unwrap();
        while !ranges[at].contains(&c) {
            at += 1;
            assert!(at < ranges.len(), "connection {c} out of order: {ranges:?}");
        }
    }
    assert_eq!(at, 3, "events of every input: {ranges:?}");
    // The JSON Lines input is the capture again: same commands, connections moved up.
    let cap: Vec<&serde_json::Value> = evs
        .iter()
        .filter(|e| ranges[0].contains(&e["conn"].as_u64().unwrap()))
        .collect();
    let again: Vec<&serde_json::Value> = evs
        .iter()
        .filter(|e| ranges[2].contains(&e["conn"].as_u64().unwrap()))
        .collect();
    assert_eq!(cap.len(), again.len());
    for (a, b) in cap.iter().zip(&again) {
        assert_eq!(a["line"], b["line"]);
        assert_eq!(
            a["conn"].as_u64().unwrap() + ranges[2].start() - 1,
            b["conn"].as_u64().unwrap()
        );
    }
    assert!(
        err.contains("packets, ") && err.contains(" log lines, ") && err.contains(" JSON lines; "),
        "{err}"
    );
}

#[test]
fn what_cannot_be_read_says_why_and_costs_nothing_else() {
    let d = scratch("inputs-bad");
    let empty = d.join("empty.log");
    write(&empty, b"");
    let binary = d.join("random.bin");
    write(
        &binary,
        &(0..=255u8).cycle().take(4096).collect::<Vec<u8>>(),
    );
    let prose = d.join("prose.txt");
    write(
        &prose,
        b"Just a note about a session.\nNothing MSNP in here.\n",
    );
    let badjson = d.join("bad.jsonl");
    let good = msntap(&["read", "captures/logs/msnp8.log", "--json", "-"]).stdout;
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(5, "{\"schema\":2, not json");
    write(&badjson, (lines.join("\n") + "\n").as_bytes());
    let client = fixture("captures/msnp8_twisted_escargot.client.log");
    let cases: [(String, String); 7] = [
        (
            empty.display().to_string(),
            format!("msntap: {}: empty input", empty.display()),
        ),
        (
            binary.display().to_string(),
            format!(
                "msntap: {}: not a capture, session log or JSON Lines file (binary data starting 00 01 02 03)",
                binary.display()
            ),
        ),
        (
            prose.display().to_string(),
            format!(
                "msntap: {}: no MSNP lines: msntap reads `C: `/`S: ` transcripts (also inside markdown fences) and `>>>`/`<<<` logs",
                prose.display()
            ),
        ),
        (
            client.clone(),
            format!(
                "msntap: {client}: no MSNP lines: its lines look like a program's own messages (`[user] ...`), not a record of the traffic; msntap reads `C: `/`S: ` transcripts (also inside markdown fences) and `>>>`/`<<<` logs"
            ),
        ),
        (
            "captures".to_string(),
            "msntap: captures: is a directory, not a capture, session log or JSON Lines file"
                .to_string(),
        ),
        (
            badjson.display().to_string(),
            format!("msntap: {}:6: not an event: ", badjson.display()),
        ),
        (
            "/nonexistent.pcap".to_string(),
            "msntap: /nonexistent.pcap: No such file or directory (os error 2)".to_string(),
        ),
    ];
    for (input, want) in &cases {
        // Alone: exit 1, the message on one line, then the summary.
        let (code, evs, err) = json(&["read", input]);
        assert_eq!(code, 1, "{input}: {err}");
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with(want.as_str()), "{input}:\n{err}");
        assert_eq!(err.lines().count(), 2, "{input}:\n{err}");
        if input.ends_with("bad.jsonl") {
            // The events before the bad line were handed on.
            assert_eq!(evs.len(), 5, "{input}");
        }
        // Beside a good input: the good one is read whole.
        let (code, evs, err) = json(&["read", input, TWISTED]);
        assert_eq!(code, 1, "{input}: {err}");
        assert!(
            evs.iter().filter(|e| e["type"] == "command").count() >= 90,
            "{input}"
        );
    }
    // Every problem of a run is listed, one line each, before the summary.
    let all: Vec<&str> = cases.iter().map(|(i, _)| i.as_str()).collect();
    let mut args = vec!["read"];
    args.extend(all.iter().copied());
    let r = msntap(&args);
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.lines().count(), cases.len() + 1, "{}", r.stderr);
    assert!(
        r.stderr
            .trim_end()
            .ends_with("; 7 of 7 inputs had a problem (above)"),
        "{}",
        r.stderr
    );
}

#[test]
fn standard_input_can_be_read_once() {
    let r = msntap_stdin(&["read", "-", "-"], b"C: PNG\n");
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "msntap: `-` (standard input) is given more than once\n"
    );
}

#[test]
fn markdown_pages_and_log_lines_kept_as_written() {
    let d = scratch("inputs-md");
    let md = d.join("page.md");
    write(
        &md,
        b"# Example\nProse with >>> arrows is not a log line.\n```\nC: VER 1 MSNP8 CVR0\nS: VER 1 MSNP8\n```\n## Another\n```\nC: VER 1 MSNP8 CVR0\n```\n",
    );
    let (code, evs, err) = json(&["read", md.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let conns: Vec<u64> = evs.iter().filter_map(|e| e["conn"].as_u64()).collect();
    assert_eq!(
        conns,
        [1, 1, 2],
        "each headed section is its own connection"
    );
    // An unknown command ending in a number is not rewritten, nor an impossible length.
    let log = d.join("numbers.log");
    write(
        &log,
        b"C: VER 1 MSNP8 CVR0\nS: VER 1 MSNP8\nC: ZZQ 5 hello 42\nC: PNG\nS: MSG 1 U 4294967295\nC: OUT\n",
    );
    let (_, evs, _) = json(&["read", log.to_str().unwrap()]);
    let lines: Vec<String> = evs
        .iter()
        .filter_map(|e| e["line"].as_str().map(str::to_string))
        .collect();
    assert!(lines.contains(&"ZZQ 5 hello 42".to_string()), "{lines:?}");
    assert!(lines.contains(&"PNG".to_string()), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l == "MSG 1 U 0"),
        "the declared length is what the log says: {lines:?}"
    );
    // Bytes that are not UTF-8 (a Latin-1 friendly name) reach the decoder as they are.
    let latin = d.join("latin1.log");
    write(
        &latin,
        b"C: VER 1 MSNP8 CVR0\nS: VER 1 MSNP8\nS: ILN 9 NLN bob@example.com Jos\xe9 0\n",
    );
    let (_, evs, _) = json(&["read", latin.to_str().unwrap()]);
    let iln = evs.iter().find(|e| e["cmd"] == "ILN").expect("ILN");
    assert_eq!(
        iln["line_base64"], "SUxOIDkgTkxOIGJvYkBleGFtcGxlLmNvbSBKb3PpIDA=",
        "{iln}"
    );
}

/// `x.gz` as the gzip tool writes it by default (the original name in the header).
fn gzipped(bytes: &[u8], name: &str) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::GzBuilder::new()
        .filename(name)
        .write(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).expect("compress");
    z.finish().expect("compress")
}

#[test]
fn gzip_compressed_inputs_read_as_the_files_inside() {
    let d = scratch("inputs-gzip");
    let pcap = std::fs::read(root().join(TWISTED)).expect("fixture");
    let gz = d.join("twisted.pcap.gz");
    write(&gz, &gzipped(&pcap, "twisted.pcap"));
    let gz = gz.to_str().unwrap();
    let plain = msntap(&["read", TWISTED, "--json", "-"]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    // The same events, from the file and from a pipe; the summary counts the same packets.
    for r in [
        msntap(&["read", gz, "--json", "-"]),
        msntap_stdin(&["read", "-", "--json", "-"], &gzipped(&pcap, "-")),
    ] {
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, plain.stdout);
        assert_eq!(r.stderr, plain.stderr);
    }
    // A session log inside gzip reads as the log does.
    let log = std::fs::read(root().join("captures/logs/msnp8.log")).expect("fixture");
    let lgz = d.join("msnp8.log.gz");
    write(&lgz, &gzipped(&log, "msnp8.log"));
    let r = msntap(&["read", lgz.to_str().unwrap(), "--json", "-"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        msntap(&["read", "captures/logs/msnp8.log", "--json", "-"]).stdout
    );
    // annotate copies the records inside: the same pcapng as from the plain capture.
    let (a, b) = (d.join("a.pcapng"), d.join("b.pcapng"));
    for (input, out) in [(TWISTED, &a), (gz, &b)] {
        let r = msntap(&["annotate", "-o", out.to_str().unwrap(), input]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn a_cut_or_doubled_gzip_file_says_so_and_keeps_what_came_before() {
    let d = scratch("inputs-gzip-bad");
    let pcap = std::fs::read(root().join(TWISTED)).expect("fixture");
    let whole = gzipped(&pcap, "twisted.pcap");
    let cut = d.join("cut.pcap.gz");
    write(&cut, &whole[..whole.len() / 2]);
    let r = msntap(&["read", cut.to_str().unwrap(), "--json", "-"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("cut.pcap.gz (gunzipped): ") && r.stderr.contains("deflate"),
        "{}",
        r.stderr
    );
    // What was decoded before the cut is there, as the whole file has it.
    let all = commands(&msntap(&["read", TWISTED, "--json", "-"]).stdout);
    let got = commands(&r.stdout);
    assert!(got.len() > 10 && got.len() < all.len(), "{}", got.len());
    let mut rest = all.iter();
    for c in &got {
        assert!(
            rest.any(|a| a == c),
            "{c} is not in the full capture's order"
        );
    }
    // A log cut the same way keeps the commands read before the cut, the ones the reader
    // had read ahead (to tell Markdown) included.
    let log = std::fs::read(root().join("captures/logs/msnp11.log")).expect("fixture");
    let lgz = gzipped(&log, "msnp11.log");
    let lcut = d.join("cut.log.gz");
    write(&lcut, &lgz[..lgz.len() / 2]);
    let r = msntap(&["read", lcut.to_str().unwrap(), "--json", "-"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cut.log.gz (gunzipped):"), "{}", r.stderr);
    let all = commands(&msntap(&["read", "captures/logs/msnp11.log", "--json", "-"]).stdout);
    let got = commands(&r.stdout);
    assert!(got.len() > 5 && got.len() < all.len(), "{}", got.len());
    let mut rest = all.iter();
    for c in &got {
        assert!(rest.any(|a| a == c), "{c} is not in the full log's order");
    }
    // annotate says the same, and keeps the packets copied before the cut.
    let out = d.join("cut.pcapng");
    let r = msntap(&[
        "annotate",
        "-o",
        out.to_str().unwrap(),
        cut.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("cut.pcap.gz (gunzipped): ") && r.stderr.contains("deflate"));
    assert!(std::fs::metadata(&out).unwrap().len() > 1000);
    // gzip inside gzip: one level is taken off, the second is named.
    let twice = d.join("twice.gz");
    write(&twice, &gzipped(&whole, "twisted.pcap.gz"));
    let r = msntap(&["read", twice.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("twice.gz (gunzipped): not a capture")
            && r.stderr.contains("gzip-compressed data"),
        "{}",
        r.stderr
    );
}

#[test]
fn synth_takes_a_gzip_compressed_log() {
    let d = scratch("inputs-gzip-synth");
    let log = std::fs::read(root().join("captures/logs/msnp8.log")).expect("fixture");
    let lgz = d.join("msnp8.log.gz");
    write(&lgz, &gzipped(&log, "msnp8.log"));
    let (a, b) = (d.join("a.pcap"), d.join("b.pcap"));
    for (input, out) in [("captures/logs/msnp8.log", &a), (lgz.to_str().unwrap(), &b)] {
        let r = msntap(&["synth", input, "-o", out.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let (a, b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(a.len() > 1000);
    assert_eq!(a, b);
}
