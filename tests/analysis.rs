//! Analysis features on the project's own fixtures: report and stubs, transcripts, and
//! authentication annotations through the binary.

mod scratch_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use msntap::analysis::report::Report;
use msntap::analysis::transcript::{Detail, EntryKind, Transcripts};
use msntap::source::{Options, Source};
use msntap::{Event, Tables};
use scratch_support::Scratch;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures/logs")
        .join(name)
}

fn events(tables: &Arc<Tables>, path: &Path) -> Vec<Event<'static>> {
    let mut v = Vec::new();
    Source::new(tables.clone(), Options::default())
        .read_path(path, &mut |e| {
            v.push(e.clone().into_owned());
            Ok(())
        })
        .unwrap();
    v
}

#[test]
fn report_finds_a_removed_command_and_its_stub_restores_it() {
    let mut t = Tables::builtin().unwrap();
    assert!(t.remove_command("JOI"));
    let t = Arc::new(t);
    let log = fixture("sb_chat_msnp8.log");
    let mut r = Report::default();
    for e in events(&t, &log) {
        r.add(&e, &t);
    }
    let joi = r.unknown_commands.get("JOI").expect("JOI reported unknown");
    assert_eq!(joi.count, 1);
    assert_eq!(joi.arities.iter().copied().collect::<Vec<_>>(), [2]);
    assert_eq!(joi.examples[0].line, "JOI bob@example.com Bob");
    // The log also holds XYZ, which no table knows.
    assert!(r.unknown_commands.contains_key("XYZ"));
    let dir = Scratch::path("stubs");
    let stubs = r.write_stubs(&dir).unwrap();
    assert_eq!(stubs.written.len(), 2);
    assert!(stubs.kept.is_empty());
    let mut t2 = (*t).clone();
    t2.add_dir(&dir).expect("stubs load as dissectors");
    let t2 = Arc::new(t2);
    let again = events(&t2, &log);
    let unknown: Vec<&str> = again
        .iter()
        .filter_map(Event::command)
        .filter(|c| !c.known)
        .map(|c| c.cmd.as_ref())
        .collect();
    assert!(unknown.is_empty(), "{unknown:?}");
    let joi = again
        .iter()
        .filter_map(Event::command)
        .find(|c| c.cmd == "JOI")
        .unwrap();
    assert!(!joi.unmatched_form);
    assert_eq!(joi.fields.str("arg0"), Some("bob@example.com"));
}

#[test]
fn transcript_of_a_switchboard_chat() {
    let t = Arc::new(Tables::builtin().unwrap());
    let mut tr = Transcripts::default();
    for e in events(&t, &fixture("sb_chat_msnp8.log")) {
        tr.add(&e);
    }
    tr.finish();
    assert_eq!(tr.done.len(), 1);
    let c = &tr.done[0];
    assert_eq!(c.user.as_deref(), Some("alice@example.com"));
    let kinds: Vec<(&str, &str)> = c
        .entries
        .iter()
        .map(|e| (e.kind.as_str(), e.who.as_str()))
        .collect();
    assert_eq!(c.entries[0].kind, EntryKind::Invited);
    assert_eq!(
        kinds,
        [
            ("invited", "alice@example.com"),
            ("joined", "bob@example.com"),
            ("typing", "alice@example.com"),
            ("message", "alice@example.com"),
            ("datacast", "bob@example.com"),
            ("left", "bob@example.com"),
        ]
    );
    let m = &c.entries[3];
    assert_eq!(m.text.as_deref(), Some("Hello Bob"));
    let f = m.format.as_ref().unwrap();
    assert_eq!(f.font.as_deref(), Some("Arial"));
    // CO=ff0000 is BGR: blue.
    assert_eq!(f.color.as_deref(), Some("#0000ff"));
    match c.entries[4].detail.as_ref().unwrap() {
        Detail::Datacast(d) => assert_eq!(d.name, "nudge"),
        other => panic!("{other:?}"),
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_msntap"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn line_starting<'a>(evs: &'a [Value], prefix: &str) -> &'a Value {
    evs.iter()
        .find(|e| e["line"].as_str().unwrap_or("").starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix}"))
}

#[test]
fn md5_login_and_challenge_are_checked() {
    let dir = Scratch::dir("auth");
    // md5("1013928519.693957190" + "hunter2"), computed with Python's hashlib.
    let hash = "8aca4d4721b726ba9cd5e3a5f601671a";
    let log = format!(
        "C: VER 1 MSNP7 CVR0\nS: VER 1 MSNP7\nC: INF 2\nS: INF 2 MD5\nC: USR 3 MD5 I alice@example.com\nS: USR 3 MD5 S 1013928519.693957190\nC: USR 4 MD5 S {hash}\nS: USR 4 OK alice@example.com Alice 1\nS: CHL 0 11111111111111111111\nC: QRY 5 msmsgs@msnmsgr.com 32\n3b6666b60157322b6fc6e41a115968f5\nS: QRY 5\n"
    );
    let p = dir.join("md5.log");
    std::fs::write(&p, log).unwrap();
    let words = dir.join("words");
    std::fs::write(&words, "letmein\nhunter2\n").unwrap();
    let (code, out, err) = run(&[
        "decode",
        p.to_str().unwrap(),
        "--json",
        "-",
        "--wordlist",
        words.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let evs = json_lines(&out);
    let resp = line_starting(&evs, "USR 4 MD5 S");
    assert_eq!(resp["annotations"]["auth"]["password"]["matched"], true);
    assert_eq!(resp["annotations"]["auth"]["password"]["candidate"], 2);
    assert_eq!(
        resp["annotations"]["auth"]["password"]["value"],
        "<redacted>"
    );
    let qry = evs
        .iter()
        .find(|e| e["cmd"] == "QRY" && e["dir"] == "c2s")
        .unwrap();
    assert_eq!(qry["annotations"]["challenge"]["valid"], true);
    assert_eq!(qry["annotations"]["challenge"]["algorithm"], "md5");
    let (_, out, _) = run(&[
        "decode",
        p.to_str().unwrap(),
        "--json",
        "-",
        "--password",
        "wrong",
        "--no-redact",
    ]);
    let evs = json_lines(&out);
    let resp = line_starting(&evs, "USR 4 MD5 S");
    assert_eq!(resp["annotations"]["auth"]["password"]["matched"], false);
    assert_eq!(resp["args"][3], hash);
}

#[test]
fn json_lines_read_back_give_the_same_report() {
    let dir = Scratch::dir("rt");
    let jl = dir.join("events.jsonl");
    let log = fixture("sb_chat_msnp8.log");
    let (code, _, err) = run(&[
        "decode",
        log.to_str().unwrap(),
        "--json",
        jl.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, from_log, _) = run(&["transcript", log.to_str().unwrap(), "--json", "-"]);
    let (_, from_jsonl, _) = run(&["transcript", jl.to_str().unwrap(), "--json", "-"]);
    assert!(!from_log.trim().is_empty());
    assert_eq!(from_log, from_jsonl);
    let (_, r1, _) = run(&["report", log.to_str().unwrap(), "--json", "-"]);
    let (_, r2, _) = run(&["report", jl.to_str().unwrap(), "--json", "-"]);
    let mut v1: Value = serde_json::from_str(&r1).unwrap();
    let mut v2: Value = serde_json::from_str(&r2).unwrap();
    v1["inputs"] = Value::Null;
    v2["inputs"] = Value::Null;
    assert_eq!(v1, v2);
}

#[test]
fn report_examples_are_redacted_unless_asked() {
    let dir = Scratch::dir("rr");
    let p = dir.join("r.log");
    // A login line with extra tokens: a form the tables do not describe, so it is quoted as an example.
    std::fs::write(
        &p,
        "C: VER 1 MSNP8 CVR0\nS: VER 1 MSNP8\nC: USR 3 TWN S t=secret&p=x EXTRA1 EXTRA2 EXTRA3\n",
    )
    .unwrap();
    let (code, out, err) = run(&["report", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("USR: 1 times"), "{out}");
    assert!(!out.contains("t=secret"), "{out}");
    let json = dir.join("r.json");
    let (code, _, _) = run(&[
        "report",
        p.to_str().unwrap(),
        "--no-redact",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(std::fs::read_to_string(&json).unwrap().contains("t=secret"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&json).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn a_damaged_input_keeps_what_was_decoded_and_fails_clearly() {
    let dir = Scratch::dir("dmg");
    // The Twisted capture cut inside a record: the switchboard chat comes before the cut.
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/msnp8_twisted_escargot.pcap");
    let bytes = std::fs::read(&cap).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..20_000]).unwrap();
    let log = fixture("sb_chat_msnp8.log");
    let (code, out, err) = run(&["transcript", log.to_str().unwrap(), cut.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cut.pcap: at byte offset"), "{err}");
    // The log's conversation and the capture's, up to the cut, are all there, with
    // connection ids kept apart across the two inputs.
    assert!(out.contains("connection #1 (SB"), "{out}");
    assert!(
        out.contains("Hello from alice@example.com (Twisted MSNP8)"),
        "{out}"
    );
    assert!(out.contains("Hello Bob"), "{out}");
    let (code, out, err) = run(&["report", "/nonexistent/input.pcap"]);
    assert_eq!(code, 1);
    assert!(out.contains("0 events"));
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[test]
fn stubs_already_written_are_never_overwritten() {
    let dir = Scratch::path("stubs-keep");
    let log = fixture("sb_chat_msnp8.log");
    let stubs = || {
        let (code, _, err) = run(&[
            "report",
            log.to_str().unwrap(),
            "--stubs",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        err
    };
    let err = stubs();
    assert!(err.contains("wrote 1 dissector stubs"), "{err}");
    // The user fills the stub in; a second run must leave it alone and say so.
    let stub = dir.join("xyz.toml");
    let edited = std::fs::read_to_string(&stub)
        .unwrap()
        .replace("Undocumented (seen by msntap report)", "Edited by hand");
    std::fs::write(&stub, &edited).unwrap();
    let err = stubs();
    assert!(
        err.contains(&format!(
            "{} already exists: not overwritten",
            stub.display()
        )),
        "{err}"
    );
    assert!(err.contains("wrote 0 dissector stubs"), "{err}");
    assert_eq!(std::fs::read_to_string(&stub).unwrap(), edited);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // The library says the same: nothing written, the file kept.
    let t = Arc::new(Tables::builtin().unwrap());
    let mut r = Report::default();
    for e in events(&t, &log) {
        r.add(&e, &t);
    }
    let s = r.write_stubs(&dir).unwrap();
    assert!(s.written.is_empty());
    assert_eq!(s.kept, std::slice::from_ref(&stub));
    assert_eq!(std::fs::read_to_string(&stub).unwrap(), edited);
}

/// The secrets of `secrets.log` (written below) and of the msnp11 capture (its tickets,
/// switchboard cookies and MSPAuth start with the ticket), as they are on the wire.
const SECRETS: &[&str] = &[
    "TICKETSECRET1234",
    "PROFILESECRET5678",
    "XFRCOOKIE31337",
    "DESYNCTICKETSECRET9",
    "AUTHCOOKIESECRET42",
    "05d3b27efd8cdffeaf4a",
    "58b002139826b14b1538",
    "80c6b0e380e23edcadc3",
    "26ed93d99da73783c81c",
];

const SECRETS_LOG: &str = "# notification server
C: VER 1 MSNP8 CVR0
S: VER 1 MSNP8
C: USR 3 TWN I alice@example.com
S: USR 3 TWN S lc=1033,id=507,tw=40,fs=1,ct=1130000000,kpp=1,kv=7,ver=2.1.0173.1
C: USR 4 TWN S t=TICKETSECRET1234&p=PROFILESECRET5678 EXTRA1 EXTRA2
S: USR 4 OK alice@example.com Alice 1 0
C: XFR 5 SB
S: XFR 5 SB 10.0.0.9:1864 CKI 17262740.XFRCOOKIE31337.32308
C: garbage t=DESYNCTICKETSECRET9 more
# switchboard
C: USR 1 alice@example.com 17262740.XFRCOOKIE31337.32308
S: USR 1 OK alice@example.com Alice
C: CAL 2 bob@example.com
S: CAL 2 RINGING 11752013
S: JOI bob@example.com Bob
S: MSG bob@example.com Bob 213
MIME-Version: 1.0
Content-Type: text/x-msmsgsinvite; charset=UTF-8

Invitation-Command: ACCEPT
Invitation-Cookie: 7
IP-Address: 192.0.2.7
Port: 6891
AuthCookie: AUTHCOOKIESECRET42
Launch-Application: FALSE
Request-Data: IP-Address:

";

fn leaked<'a>(text: &str) -> Vec<&'a str> {
    SECRETS
        .iter()
        .copied()
        .filter(|s| text.contains(s))
        .collect()
}

/// JSON Lines written with --no-redact hold every secret; report, transcript and extract
/// read them back typed, so they hide the secrets again unless --no-redact.
#[test]
fn no_redact_json_lines_are_redacted_again_on_reading() {
    let dir = Scratch::dir("jsonl-secrets");
    let log = dir.join("secrets.log");
    std::fs::write(&log, SECRETS_LOG).unwrap();
    let unredacted = |cmd: &str, input: &Path, name: &str| {
        let out = dir.join(name);
        let (code, _, err) = run(&[
            cmd,
            input.to_str().unwrap(),
            "--no-redact",
            "--json",
            out.to_str().unwrap(),
            "-q",
        ]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let a = unredacted("decode", &log, "log.jsonl");
    let cap =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/msnp11_msnp11-sdk_escargot.pcap");
    let b = unredacted("read", &cap, "capture.jsonl");
    let inputs = format!(
        "{}{}",
        std::fs::read_to_string(&a).unwrap(),
        std::fs::read_to_string(&b).unwrap()
    );
    // Not vacuous: every secret is in the inputs.
    assert_eq!(leaked(&inputs), SECRETS);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    let (code, out, err) = run(&["report", a, b]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("USR 4 TWN ") && out.contains("<redacted> EXTRA1 EXTRA2"),
        "{out}"
    );
    assert!(out.contains("garbage <redacted> more"), "{out}");
    assert_eq!(leaked(&(out + &err)), [] as [&str; 0]);
    let (_, out, err) = run(&["report", a, b, "--json", "-"]);
    assert_eq!(leaked(&(out + &err)), [] as [&str; 0]);
    // With --no-redact the report does show them (the check above could fail).
    let (_, out, _) = run(&["report", a, b, "--no-redact"]);
    assert_eq!(
        leaked(&out),
        [
            "TICKETSECRET1234",
            "PROFILESECRET5678",
            "DESYNCTICKETSECRET9"
        ]
    );

    let (code, out, err) = run(&["transcript", a, b, "--json", "-"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"auth_cookie\": \"<redacted>\""), "{out}");
    assert_eq!(leaked(&(out + &err)), [] as [&str; 0]);
    let (_, out, err) = run(&["transcript", a, b]);
    assert!(out.contains("invitation ACCEPT"), "{out}");
    assert_eq!(leaked(&(out + &err)), [] as [&str; 0]);
    let (_, out, _) = run(&["transcript", a, b, "--json", "-", "--no-redact"]);
    assert_eq!(leaked(&out), ["AUTHCOOKIESECRET42"]);

    let objects = dir.join("objects");
    let report = dir.join("objects.jsonl");
    let (code, out, err) = run(&[
        "extract",
        a,
        b,
        "-o",
        objects.to_str().unwrap(),
        "--json",
        report.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2 objects (2 complete"), "{err}");
    let names: String = std::fs::read_dir(&objects)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let json = std::fs::read_to_string(&report).unwrap();
    assert_eq!(json.lines().count(), 2);
    assert_eq!(leaked(&(out + &err + &json + &names)), [] as [&str; 0]);
}
