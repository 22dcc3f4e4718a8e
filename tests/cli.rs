//! The binary as a user runs it: decode, dissectors, --dissectors overrides, filters, errors.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn msntap(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_msntap"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run msntap");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("msntap-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const LOG: &str = "C: VER 1 MSNP8 CVR0\nS: VER 1 MSNP8\nC: USR 2 TWN I alice@example.com\nS: USR 2 TWN S lc=1033,id=507\nC: USR 3 TWN S t=secret&p=also\nS: USR 3 OK alice@example.com Alice 1 0\nC: PNG\nS: QNG 50\nC: FOO 4 bar\nC: OUT\n";

fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn decode_writes_json_lines_with_the_schema_fields() {
    let p = tmp("a.log", LOG);
    let (code, out, err) = msntap(&["decode", p.to_str().unwrap(), "--json", "-"]);
    assert_eq!(code, 0, "{err}");
    let evs = events(&out);
    assert_eq!(evs.len(), 10);
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
    // The ticket is a secret: redacted by default, shown with --no-redact.
    assert_eq!(evs[4]["args"][3], "<redacted>");
    assert_eq!(evs[4]["redacted"], true);
    let foo = &evs[8];
    assert_eq!(foo["cmd"], "FOO");
    assert_eq!(foo["known"], false);
    assert!(err.contains("10 commands, 1 unknown"), "{err}");
    let (_, out, _) = msntap(&["decode", p.to_str().unwrap(), "--json", "-", "--no-redact"]);
    assert_eq!(events(&out)[4]["args"][3], "t=secret&p=also");
}

#[test]
fn filters_hide_keepalives_and_pick_direction() {
    let p = tmp("b.log", LOG);
    let (_, out, _) = msntap(&[
        "decode",
        p.to_str().unwrap(),
        "--json",
        "-",
        "--hide",
        "png,QNG",
        "--dir",
        "s2c",
    ]);
    let cmds: Vec<String> = events(&out)
        .iter()
        .map(|e| e["cmd"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(cmds, ["VER", "USR", "USR"]);
    let (_, out, _) = msntap(&[
        "decode",
        p.to_str().unwrap(),
        "--json",
        "-",
        "--only",
        "USR",
        "--user",
        "bob@example.com",
    ]);
    assert!(out.is_empty(), "no line names bob: {out}");
    let (_, out, _) = msntap(&[
        "decode",
        p.to_str().unwrap(),
        "--json",
        "-",
        "--user",
        "Alice@Example.com",
        "--only",
        "PNG",
    ]);
    assert_eq!(events(&out).len(), 1, "PNG belongs to alice's connection");
}

#[test]
fn pretty_log_uses_arrows_and_no_color_off_a_terminal() {
    let p = tmp("c.log", LOG);
    let (code, out, _) = msntap(&["decode", p.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains(">>> VER 1 MSNP8 CVR0"), "{out}");
    assert!(out.contains("<<< QNG 50"), "{out}");
    assert!(out.contains("[unknown command]"));
    assert!(
        !out.contains('\u{1b}'),
        "no escape codes when stdout is a pipe"
    );
    let (_, out, _) = msntap(&["decode", p.to_str().unwrap(), "--color", "always"]);
    assert!(out.contains('\u{1b}'));
}

#[test]
fn dissectors_json_lists_commands_with_payload_rules() {
    let (code, out, _) = msntap(&["dissectors", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
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
    let dir = std::env::temp_dir().join(format!("msntap-diss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("foo.toml"),
        "[[command]]\nname = \"FOO\"\nmeaning = \"A command we found\"\nservices = [\"NS\"]\nversions = \"8-\"\n  [[command.form]]\n  dir = \"c2s\"\n  params = [{ name = \"trid\", type = \"trid\" }, { name = \"what\", type = \"string\" }]\n",
    )
    .unwrap();
    let p = tmp("d.log", LOG);
    let (code, out, err) = msntap(&[
        "decode",
        p.to_str().unwrap(),
        "--json",
        "-",
        "--dissectors",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let foo = events(&out)
        .into_iter()
        .find(|e| e["cmd"] == "FOO")
        .unwrap();
    assert_eq!(foo["known"], true);
    assert_eq!(foo["fields"]["what"], "bar");
    assert_eq!(foo["meaning"], "A command we found");
    std::fs::write(dir.join("bad.toml"), "[[command]]\nname = \"TOOLONG\"\n").unwrap();
    let (code, _, err) = msntap(&["dissectors", "--dissectors", dir.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("bad.toml"), "{err}");
}

#[test]
fn missing_input_is_a_clear_error() {
    let (code, _, err) = msntap(&["decode", "/nonexistent/file.log"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/file.log"), "{err}");
    // A good file after a missing one is still decoded.
    let p = tmp("after-missing.log", LOG);
    let (code, out, err) = msntap(&[
        "decode",
        "/nonexistent/file.log",
        p.to_str().unwrap(),
        "--json",
        "-",
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(events(&out).len(), 10);
}
