//! Outputs never destroy inputs and never leak by their mode: no output of a run may be one
//! of its inputs (same path, a link to it, standard input redirected from it), and an
//! output that can hold secrets is created owner-only, an existing wider file made
//! owner-only first (and said so). Both through `output::create_output`, tested here
//! directly and through the commands. Files go only under the temporary directory.

mod cli_support;

use std::process::Stdio;

use cli_support::{cmd, msntap, root, scratch};
use msntap::output::{create_output, CreateError, FileId};

const TWISTED: &str = "captures/msnp8_twisted_escargot.pcap";

fn copy_fixture(dir: &std::path::Path, rel: &str) -> std::path::PathBuf {
    let p = dir.join(std::path::Path::new(rel).file_name().unwrap());
    std::fs::copy(root().join(rel), &p).expect("copy fixture");
    p
}

#[test]
fn an_input_is_never_overwritten() {
    let d = scratch("outputs-input");
    let cap = copy_fixture(&d, TWISTED);
    let log = copy_fixture(&d, "captures/synth/msnp2_md5.log");
    let before_cap = std::fs::read(&cap).unwrap();
    let before_log = std::fs::read(&log).unwrap();
    let c = cap.to_str().unwrap();
    let l = log.to_str().unwrap();
    // The same path, another spelling of it, a hard link and a symbolic link to it.
    let hard = d.join("hard.pcap");
    std::fs::hard_link(&cap, &hard).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&cap, d.join("sym.pcap")).unwrap();
    let dotted = format!(
        "{}/./{}",
        d.display(),
        cap.file_name().unwrap().to_str().unwrap()
    );
    let mut outs = vec![c.to_string(), dotted, hard.display().to_string()];
    #[cfg(unix)]
    outs.push(d.join("sym.pcap").display().to_string());
    for out in &outs {
        for args in [
            vec!["read", c, "--json", out],
            vec!["read", l, c, "--json", out, "--no-redact"],
        ] {
            let r = msntap(&args);
            assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
            assert_eq!(
                r.stderr,
                format!("msntap: {out}: is also an input of this run; refusing to overwrite it\n")
            );
            assert!(r.stdout.is_empty());
        }
    }
    let r = msntap(&["synth", l, "-o", l]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!("msntap: {l}: is also an input of this run; refusing to overwrite it\n")
    );
    // Standard input redirected from the output file.
    let out = cmd(&["read", "-", "--json", c])
        .stdin(Stdio::from(std::fs::File::open(&cap).unwrap()))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&cap).unwrap(), before_cap);
    assert_eq!(std::fs::read(&log).unwrap(), before_log);
    // Another file is fine.
    let r = msntap(&["read", c, "--json", d.join("other.jsonl").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[cfg(unix)]
#[test]
fn secret_outputs_are_owner_only_and_say_when_a_mode_was_fixed() {
    use std::os::unix::fs::PermissionsExt;
    let d = scratch("outputs-mode");
    let mode = cli_support::mode;
    let j = d.join("clear.jsonl");
    let js = j.to_str().unwrap();
    // New file, secrets kept: 600.
    let r = msntap(&["read", TWISTED, "--json", js, "--no-redact"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(mode(&j), 0o600);
    assert!(!r.stderr.contains("owner-only"), "{}", r.stderr);
    // An existing file readable by others: made 600 before anything is written, and said.
    std::fs::set_permissions(&j, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = msntap(&["read", TWISTED, "--json", js, "--no-redact"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(mode(&j), 0o600);
    assert_eq!(
        r.stderr.lines().next(),
        Some(format!("msntap: {js}: was readable by others (mode 644); made owner-only (600) before writing, since it can hold secrets").as_str()),
        "{}",
        r.stderr
    );
    // Redacted output holds no secrets: its mode is the user's choice.
    let red = d.join("redacted.jsonl");
    let r = msntap(&["read", TWISTED, "--json", red.to_str().unwrap()]);
    assert_eq!(r.code, 0);
    std::fs::set_permissions(&red, std::fs::Permissions::from_mode(0o644)).unwrap();
    msntap(&["read", TWISTED, "--json", red.to_str().unwrap()]);
    assert_eq!(mode(&red), 0o644);
    // synth copies the log's secrets as they are: always owner-only.
    let cap = d.join("s.pcap");
    std::fs::write(&cap, b"old").unwrap();
    std::fs::set_permissions(&cap, std::fs::Permissions::from_mode(0o664)).unwrap();
    let r = msntap(&[
        "synth",
        "captures/synth/msnp2_md5.log",
        "-o",
        cap.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(mode(&cap), 0o600);
    assert!(
        r.stderr.contains("was readable by others (mode 664)"),
        "{}",
        r.stderr
    );
    // Devices are written as they are.
    let r = msntap(&["read", TWISTED, "--json", "/dev/null", "--no-redact"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("owner-only"));
}

#[test]
fn create_output_checks_before_truncating() {
    let d = scratch("outputs-lib");
    let p = d.join("x.txt");
    std::fs::write(&p, b"precious").unwrap();
    let id = FileId::of_path(&p).expect("id");
    match create_output(&p, false, &[id]) {
        Err(CreateError::IsInput { path }) => assert_eq!(path, p.display().to_string()),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&p).unwrap(), b"precious");
    let c = create_output(&p, true, &[]).expect("create");
    assert_eq!(
        c.file.metadata().unwrap().len(),
        0,
        "truncated once allowed"
    );
    #[cfg(unix)]
    {
        assert!(c.note.is_some(), "a 644 file made private is reported");
        assert_eq!(cli_support::mode(&p), 0o600);
        let again = create_output(&p, true, &[]).expect("create");
        assert!(again.note.is_none(), "already owner-only");
    }
    // A path in a missing directory fails with the path named once.
    let e = create_output(&d.join("no/such/file"), true, &[]).unwrap_err();
    let s = e.to_string();
    assert!(
        s.starts_with(&format!("{}: ", d.join("no/such/file").display())),
        "{s}"
    );
    assert_eq!(s.matches("No such file").count(), 1, "{s}");
}
