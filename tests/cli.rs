//! The binary as a user runs it on session logs: JSON Lines fields, redaction, the shared
//! filters, the pretty log, dissectors and --dissectors overrides, missing inputs. `decode`
//! is the old name of `read` and must keep working. Files are written only under the
//! system temporary directory.

mod cli_support;

use std::path::Path;

use cli_support::{json_lines as events, msntap, scratch, write, Scratch};
use serde_json::Value;

const LOG: &str = "C: VER 1 MSNP8 CVR0\nS: VER 1 MSNP8\nC: USR 2 TWN I alice@example.com\nS: USR 2 TWN S lc=1033,id=507\nC: USR 3 TWN S t=secret&p=also\nS: USR 3 OK alice@example.com Alice 1 0\nC: PNG\nS: QNG 50\nC: FOO 4 bar\nC: OUT\n";

/// The log written in a scratch directory of its own: the guard (which must outlive every
/// run reading the log) and the log's path.
fn log_file(name: &str) -> (Scratch, String) {
    let dir = scratch(&format!("cli-{name}"));
    let p = dir.join(format!("{name}.log"));
    write(&p, LOG.as_bytes());
    let p = p.to_str().expect("utf-8").to_string();
    (dir, p)
}

#[test]
fn decode_writes_json_lines_with_the_schema_fields() {
    let (_dir, p) = log_file("a");
    for sub in ["read", "decode"] {
        let r = msntap(&[sub, &p, "--json", "-"]);
        assert_eq!(r.code, 0, "{sub}: {}", r.stderr);
        let evs = events(&r.stdout);
        assert_eq!(evs.len(), 10, "{sub}");
        for e in &evs {
            for k in ["schema", "ts", "conn", "dir", "service", "version", "type"] {
                assert!(e.get(k).is_some(), "missing {k} in {e}");
            }
        }
        assert_eq!(evs[1]["version"], "MSNP8");
        assert_eq!(
            evs[0]["ts"].as_str().unwrap().len(),
            "1970-01-01T00:00:00.000001Z".len()
        );
        // The ticket is a secret: redacted by default.
        assert_eq!(evs[4]["args"][3], "<redacted>");
        assert_eq!(evs[4]["redacted"], true);
        let foo = &evs[8];
        assert_eq!(foo["cmd"], "FOO");
        assert_eq!(foo["known"], false);
        assert!(
            r.stderr
                .contains("10 log lines; 1 connections, 10 commands, 1 unknown"),
            "{}",
            r.stderr
        );
    }
    let r = msntap(&["read", &p, "--json", "-", "--no-redact"]);
    assert_eq!(events(&r.stdout)[4]["args"][3], "t=secret&p=also");
}

#[test]
fn filters_hide_keepalives_and_pick_direction() {
    let (_dir, p) = log_file("b");
    let cmds = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["read", &p, "--json", "-"];
        a.extend_from_slice(args);
        events(&msntap(&a).stdout)
            .iter()
            .map(|e| e["cmd"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        cmds(&["--hide", "png,QNG", "--dir", "s2c"]),
        ["VER", "USR", "USR"]
    );
    assert!(
        cmds(&["--only", "USR", "--user", "bob@example.com"]).is_empty(),
        "no line names bob"
    );
    assert_eq!(
        cmds(&["--user", "Alice@Example.com", "--only", "PNG"]),
        ["PNG"],
        "PNG belongs to alice's connection"
    );
    assert_eq!(cmds(&["--service", "SB"]).len(), 0, "no switchboard here");
    assert_eq!(cmds(&["--service", "NS", "--only", "OUT"]), ["OUT"]);
}

#[test]
fn conn_filter_keeps_the_connections_named_on_every_command() {
    let cap = "captures/msnp8_twisted_escargot.pcap";
    let all = events(&msntap(&["read", cap, "--json", "-"]).stdout);
    let want: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| matches!(e["conn"].as_u64(), Some(2 | 4)))
        .collect();
    assert!(want.len() > 10 && want.len() < all.len());
    let r = msntap(&["read", cap, "--conn", "2,4", "--json", "-"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = events(&r.stdout);
    assert_eq!(got.iter().collect::<Vec<_>>(), want);
    // The log and the report see the same connections.
    let log = msntap(&["read", cap, "--conn", "3"]).stdout;
    assert!(log.lines().count() > 5);
    // Every event line names #3; the payload summaries under them are indented.
    assert!(
        log.lines()
            .all(|l| l.contains(" #3 ") || l.starts_with("        | ")),
        "{log}"
    );
    let r = msntap(&["report", cap, "--conn", "3", "--json", "-"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep: Value = serde_json::from_str(&r.stdout).expect("report JSON");
    assert_eq!(rep["connections"], serde_json::json!([3]));
    let of3 = all.iter().filter(|e| e["conn"] == 3).count();
    assert_eq!(rep["events"].as_u64(), Some(of3 as u64));
}

#[test]
fn since_and_until_keep_a_time_window() {
    let cap = "captures/msnp8_twisted_escargot.pcap";
    let all = events(&msntap(&["read", cap, "--json", "-"]).stdout);
    // The log's own form of a time, a fraction of a second, no zone: UTC.
    let (since, until) = ("2026-11-21 04:30:22.7", "2026-11-21T04:30:22.79Z");
    let want: Vec<&Value> = all
        .iter()
        .filter(|e| {
            let ts = e["ts"].as_str().unwrap();
            // The same bounds as msntap writes times, so that they compare as text.
            ("2026-11-21T04:30:22.700000Z".."2026-11-21T04:30:22.790000Z").contains(&ts)
        })
        .collect();
    assert!(want.len() > 5 && want.len() < all.len(), "{}", want.len());
    let r = msntap(&[
        "read", cap, "--since", since, "--until", until, "--json", "-",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(events(&r.stdout).iter().collect::<Vec<_>>(), want);
    let r = msntap(&["read", cap, "--since", "yesterday"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bad time \"yesterday\""), "{}", r.stderr);
    // A zone other than UTC is refused, not shifted.
    let r = msntap(&["read", cap, "--until", "2026-11-21T04:30:22+01:00"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn pretty_log_uses_arrows_utc_and_no_color_off_a_terminal() {
    let (_dir, p) = log_file("c");
    let r = msntap(&["read", &p]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout
            .contains("1970-01-01 00:00:00.000001Z #1 NS/? >>> VER 1 MSNP8 CVR0"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("<<< QNG 50"), "{}", r.stdout);
    assert!(r.stdout.contains("[unknown command]"));
    // Every line that starts with a timestamp marks it as UTC.
    for l in r.stdout.lines().filter(|l| l.starts_with("1970")) {
        assert_eq!(l.as_bytes().get(26), Some(&b'Z'), "{l}");
    }
    assert!(
        !r.stdout.contains('\u{1b}'),
        "no escape codes when stdout is a pipe"
    );
    let r = msntap(&["read", &p, "--color", "always"]);
    assert!(r.stdout.contains('\u{1b}'));
    // --color is global: accepted before the subcommand too.
    let r = msntap(&["--color", "always", "read", &p]);
    assert!(r.stdout.contains('\u{1b}'));
}

#[test]
fn dissectors_json_lists_commands_with_payload_rules() {
    let r = msntap(&["dissectors", "--json"]);
    assert_eq!(r.code, 0);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let cmds = v["commands"].as_array().unwrap();
    let find = |n: &str| {
        cmds.iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("{n} missing"))
            .clone()
    };
    let msg = find("MSG");
    assert!(msg["form"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["payload"] == "last"));
    let nln = find("NLN");
    assert!(nln["form"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["payload"] == "none"));
    assert!(v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["code"] == 911));
    // Every command of the msnp-wiki table of commands, when the reference is beside us.
    let toc = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/msnp-wiki/docs/table_of_commands.md");
    match std::fs::read_to_string(&toc) {
        Ok(text) => {
            let names: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("| [`"))
                .filter_map(|l| l.split('`').next())
                .collect();
            assert!(names.len() >= 50, "{}", names.len());
            for n in names {
                let c = find(n);
                assert!(
                    !c["form"].as_array().unwrap().is_empty(),
                    "{n} has no forms"
                );
            }
        }
        Err(_) => eprintln!(
            "SKIP: {} absent; table-of-commands coverage not checked",
            toc.display()
        ),
    }
}

#[test]
fn user_dissectors_add_and_override_entries() {
    let dir = scratch("cli-diss");
    std::fs::write(
        dir.join("foo.toml"),
        "[[command]]\nname = \"FOO\"\nmeaning = \"A command we found\"\nservices = [\"NS\"]\nversions = \"8-\"\n  [[command.form]]\n  dir = \"c2s\"\n  params = [{ name = \"trid\", type = \"trid\" }, { name = \"what\", type = \"string\" }]\n",
    )
    .unwrap();
    let (_dir, p) = log_file("d");
    let d = dir.to_str().unwrap();
    let r = msntap(&["read", &p, "--json", "-", "--dissectors", d]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let foo = events(&r.stdout)
        .into_iter()
        .find(|e| e["cmd"] == "FOO")
        .unwrap();
    assert_eq!(foo["known"], true);
    assert_eq!(foo["fields"]["what"], "bar");
    // The meaning lives in the tables (schema 2 keeps it out of every event).
    let r = msntap(&["dissectors", "--only", "FOO", "--dissectors", d]);
    assert!(r.stdout.contains("A command we found"), "{}", r.stdout);
    std::fs::write(dir.join("bad.toml"), "[[command]]\nname = \"TOOLONG\"\n").unwrap();
    let r = msntap(&["dissectors", "--dissectors", d]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bad.toml"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
}

#[test]
fn missing_input_is_a_clear_error() {
    let r = msntap(&["read", "/nonexistent/file.log"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .starts_with("msntap: /nonexistent/file.log: No such file or directory (os error 2)\n"),
        "{}",
        r.stderr
    );
    // A good file after a missing one is still decoded.
    let (_dir, p) = log_file("after-missing");
    let r = msntap(&["read", "/nonexistent/file.log", &p, "--json", "-"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(events(&r.stdout).len(), 10);
    assert!(
        r.stderr.contains("; 1 of 2 inputs had a problem (above)"),
        "{}",
        r.stderr
    );
}
