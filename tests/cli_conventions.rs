//! The conventions every subcommand shares: a reader that closes the pipe early ends the
//! run quietly (exit 0, nothing on stderr); one line per error with each cause once;
//! exit 2 for usage and runs that cannot start, 1 for input problems; diagnostics colored
//! only as --color and the terminal say; --json FILE keeps the log off unless --log; login
//! and challenge results in the terminal log. Files go only under the temporary directory.

mod cli_support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use cli_support::{cmd, msntap, scratch, write};

const TWISTED: &str = "captures/msnp8_twisted_escargot.pcap";

/// Runs msntap, reads one line of its standard output, closes the pipe, and returns the
/// exit code and what it printed on stderr.
fn close_after_one_line(args: &[&str]) -> (i32, String, String) {
    let mut child = cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn msntap");
    let mut first = String::new();
    {
        let stdout = child.stdout.take().expect("stdout");
        let mut r = BufReader::new(stdout);
        r.read_line(&mut first).expect("first line");
        // Dropping the reader closes the pipe, as `| head -1` does.
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        first,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_pipe_ends_the_run_quietly() {
    // Enough output that msntap is still writing when the pipe closes (a pipe holds 64 KiB).
    let many: Vec<&str> = std::iter::repeat_n(TWISTED, 12).collect();
    let mut log = vec!["read", "--full"];
    log.extend(&many);
    let mut jsonl = vec!["decode", "--json", "-"];
    jsonl.extend(&many);
    for args in [
        log,
        jsonl,
        vec!["dissectors"],
        vec!["dissectors", "--json"],
        vec!["completions", "zsh"],
        vec!["man"],
    ] {
        let (code, first, err) = close_after_one_line(&args);
        assert!(!first.is_empty(), "{args:?} printed nothing");
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}");
    }
}

#[test]
fn errors_are_one_line_with_each_cause_once() {
    let r = msntap(&["read", TWISTED, "--dissectors", "/nonexistent-dir"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("msntap: loading dissectors from /nonexistent-dir"),
        "{}",
        r.stderr
    );
    // No cause is printed twice.
    let parts: Vec<&str> = r.stderr.trim_end().split(": ").collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(p), "repeated {p:?}: {}", r.stderr);
    }
    let r = msntap(&["read", "captures"]);
    assert_eq!(r.code, 1);
    assert!(!r.stderr.contains("read failed"), "{}", r.stderr);
    let r = msntap(&["read", TWISTED, "--json", "/nonexistent-dir/x.jsonl"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "msntap: /nonexistent-dir/x.jsonl: No such file or directory (os error 2)\n"
    );
    let r = msntap(&["read", TWISTED, "--wordlist", "/nonexistent-words"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "msntap: reading word list /nonexistent-words: No such file or directory (os error 2)\n"
    );
}

#[test]
fn usage_errors_exit_2_and_bad_values_are_refused_not_adjusted() {
    for (args, want) in [
        (vec!["read"], "required arguments were not provided"),
        (vec!["read", TWISTED, "--max-flows", "0"], "0 is too few"),
        (vec!["read", TWISTED, "--max-flows", "15"], "15 is too few"),
        (vec!["read", TWISTED, "--dir", "up"], "unknown direction"),
        (vec!["read", TWISTED, "--service", "XX"], "unknown service"),
        (
            vec!["read", TWISTED, "--msnp", "99"],
            "unknown MSNP version",
        ),
        (vec!["nosuch"], "unrecognized subcommand"),
    ] {
        let r = msntap(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
    let r = msntap(&["read", TWISTED, "--max-flows", "16", "--json", "/dev/null"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = msntap(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.is_empty());
    let r = msntap(&["--version"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("msntap "), "{}", r.stdout);
}

#[test]
fn diagnostics_follow_color_and_the_terminal() {
    // --log-level info makes the input reader say what each input is.
    let base = [
        "read",
        "captures/logs/msnp8.log",
        "--log-level",
        "info",
        "--json",
        "/dev/null",
    ];
    let r = msntap(&base);
    assert!(
        r.stderr
            .contains("captures/logs/msnp8.log: reading as session log"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains('\u{1b}'),
        "stderr is not a terminal: {}",
        r.stderr
    );
    let mut always = base.to_vec();
    always.extend(["--color", "always"]);
    assert!(msntap(&always).stderr.contains('\u{1b}'));
    let mut never = base.to_vec();
    never.extend(["--color", "never"]);
    assert!(!msntap(&never).stderr.contains('\u{1b}'));
    // RUST_LOG, when set, decides the level.
    let out = cmd(&["read", "captures/logs/msnp8.log", "--json", "/dev/null"])
        .env("RUST_LOG", "info")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading as session log"));
}

#[test]
fn a_json_file_keeps_the_log_off_the_terminal_unless_asked() {
    let d = scratch("conv-json");
    let j = d.join("events.jsonl");
    let j = j.to_str().unwrap();
    let r = msntap(&["read", TWISTED, "--json", j]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(r.stderr.starts_with("msntap: 151 packets"));
    let n = std::fs::read_to_string(j).unwrap().lines().count();
    assert!(n > 90, "{n}");
    let r = msntap(&["read", TWISTED, "--json", j, "--log"]);
    assert!(r.stdout.contains(">>> VER 1 MSNP8 CVR0"), "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(j).unwrap().lines().count(), n);
    // --json - replaces the log; -q silences it.
    let r = msntap(&["read", TWISTED, "-q"]);
    assert!(r.stdout.is_empty());
    // Both on standard output cannot be: said, rather than the log silently left out.
    let r = msntap(&["read", TWISTED, "--json", "-", "--log"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("--log and --json - would both write standard output"),
        "{}",
        r.stderr
    );
}

#[test]
fn login_and_challenge_results_show_in_the_terminal_log() {
    use md5::{Digest, Md5};
    let d = scratch("conv-auth");
    let hash = |salt: &str, pw: &str| {
        let mut h = Md5::new();
        h.update(salt.as_bytes());
        h.update(pw.as_bytes());
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let log = d.join("md5.log");
    write(
        &log,
        format!(
            "C: VER 1 MSNP2 CVR0\nS: VER 1 MSNP2\nC: INF 2\nS: INF 2 MD5\nC: USR 3 MD5 I carol@example.net\nS: USR 3 MD5 S 1117627200.4242\nC: USR 4 MD5 S {}\nS: USR 4 OK carol@example.net Carol\n",
            hash("1117627200.4242", "hunter2")
        )
        .as_bytes(),
    );
    let l = log.to_str().unwrap();
    let r = msntap(&["read", l, "--password", "wrong", "--password", "hunter2"]);
    assert!(
        r.stdout
            .contains("        = auth: MD5 response, password matched (candidate 2)"),
        "{}",
        r.stdout
    );
    let words = d.join("words.txt");
    write(&words, b"a\nb\nc\n");
    let r = msntap(&["read", l, "--wordlist", words.to_str().unwrap()]);
    assert!(
        r.stdout
            .contains("= auth: MD5 response, password not among 3 candidates"),
        "{}",
        r.stdout
    );
    let r = msntap(&["read", l]);
    assert!(
        r.stdout
            .contains("= auth: MD5 response (not checked: no candidate passwords given)"),
        "{}",
        r.stdout
    );
    // The matched password is a secret: only with --no-redact in JSON.
    let r = msntap(&["read", l, "--password", "hunter2", "--json", "-"]);
    assert!(!r.stdout.contains("hunter2"), "{}", r.stdout);
    let r = msntap(&["read", "captures/logs/msnp11.log", "--only", "QRY"]);
    assert!(
        r.stdout
            .contains("        = challenge response valid (product PROD0090YUAUV{2B, msnp11)"),
        "{}",
        r.stdout
    );
    // A wrong response says INVALID and what was expected.
    let bad = d.join("qry.log");
    let text = std::fs::read_to_string(cli_support::root().join("captures/logs/msnp11.log"))
        .unwrap()
        .replace(
            "d3d5ace274161cab6680f9e180269fe6",
            "00000000000000000000000000000000",
        );
    write(&bad, text.as_bytes());
    let r = msntap(&["read", bad.to_str().unwrap(), "--only", "QRY"]);
    assert!(
        r.stdout.contains("= challenge response INVALID (product PROD0090YUAUV{2B), expected d3d5ace274161cab6680f9e180269fe6"),
        "{}",
        r.stdout
    );
}
