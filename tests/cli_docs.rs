//! Help, completions and manual pages: every subcommand's --help shows real examples, the
//! completion scripts of every shell and the manual pages generate and name every
//! subcommand. Files go only under the temporary directory.

mod cli_support;

use cli_support::{msntap, scratch};

/// The subcommands, from the main help (so a new one is not forgotten here).
fn subcommands() -> Vec<String> {
    let r = msntap(&["--help"]);
    assert_eq!(r.code, 0);
    let mut names = Vec::new();
    let mut inside = false;
    for l in r.stdout.lines() {
        if l == "Commands:" {
            inside = true;
            continue;
        }
        if inside {
            if l.is_empty() {
                break;
            }
            if let Some(n) = l.split_whitespace().next() {
                if n != "help" {
                    names.push(n.to_string());
                }
            }
        }
    }
    names
}

#[test]
fn every_subcommand_help_shows_examples() {
    let subs = subcommands();
    for want in [
        "read",
        "report",
        "transcript",
        "extract",
        "annotate",
        "synth",
        "dissectors",
        "completions",
        "man",
    ] {
        assert!(subs.iter().any(|s| s == want), "{want} not in {subs:?}");
    }
    let main = msntap(&["--help"]);
    assert!(
        main.stdout.contains("\nExamples:\n  msntap read "),
        "{}",
        main.stdout
    );
    for s in &subs {
        for flag in ["--help", "-h"] {
            let r = msntap(&[s, flag]);
            assert_eq!(r.code, 0, "{s} {flag}: {}", r.stderr);
            let ex = r
                .stdout
                .split("\nExamples:\n")
                .nth(1)
                .unwrap_or_else(|| panic!("{s} {flag} shows no examples:\n{}", r.stdout));
            let lines: Vec<&str> = ex.lines().filter(|l| l.starts_with("  ")).collect();
            assert!(lines.len() >= 2, "{s}: {ex}");
            assert!(
                lines.iter().any(|l| l.contains(&format!("msntap {s}"))),
                "{s}: no example of itself: {ex}"
            );
        }
    }
    // The old spelling is still there, and said so.
    let r = msntap(&["decode", "--help"]);
    assert_eq!(r.code, 0);
    assert!(msntap(&["--help"]).stdout.contains("[alias: decode]"));
}

#[test]
fn examples_in_help_parse() {
    // Each msntap example of every --help is a valid command line: asking it for --help
    // parses every option before it (a typo would be a usage error, exit 2).
    for s in subcommands() {
        let r = msntap(&[&s, "--help"]);
        let ex = r.stdout.split("\nExamples:\n").nth(1).unwrap_or("");
        for l in ex.lines() {
            let Some(cmd) = l.trim().strip_prefix("msntap ") else {
                continue;
            };
            let first = cmd
                .split('|')
                .next()
                .unwrap_or("")
                .split("&&")
                .next()
                .unwrap_or("");
            let mut args: Vec<String> = first
                .split_whitespace()
                .take_while(|a| !a.starts_with('>') && !a.starts_with('\''))
                .map(str::to_string)
                .collect();
            if args.is_empty() {
                continue;
            }
            args.push("--help".into());
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = msntap(&a);
            assert_eq!(r.code, 0, "`{l}` does not parse: {}", r.stderr);
        }
    }
}

#[test]
fn completions_generate_for_every_shell() {
    let subs = subcommands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = msntap(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        assert!(r.stdout.len() > 1000, "{shell}: {}", r.stdout.len());
        for s in &subs {
            assert!(
                r.stdout.contains(s.as_str()),
                "{shell} completions lack {s}"
            );
        }
        assert!(r.stdout.contains("max-flows"), "{shell}: options completed");
    }
    let r = msntap(&["completions", "tcsh"]);
    assert_eq!(r.code, 2);
    // bash can load what it gets.
    if std::path::Path::new("/bin/bash").exists() {
        let d = scratch("docs-bash");
        let f = d.join("msntap.bash");
        std::fs::write(&f, msntap(&["completions", "bash"]).stdout).unwrap();
        let out = std::process::Command::new("/bin/bash")
            .arg("-c")
            .arg(format!("source {} && complete -p msntap", f.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("msntap"));
    } else {
        eprintln!("SKIP: no /bin/bash to load the bash completions");
    }
}

#[test]
fn man_pages_generate() {
    let r = msntap(&["man"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        &r.stdout[..80.min(r.stdout.len())]
    );
    assert!(r.stdout.contains(".TH msntap 1"), "roff title");
    assert!(r.stdout.contains("Examples:"));
    let d = scratch("docs-man");
    let r = msntap(&["man", "--dir", d.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut files: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    files.sort();
    let mut want: Vec<String> = subcommands()
        .iter()
        .map(|s| format!("msntap-{s}.1"))
        .collect();
    want.push("msntap.1".into());
    want.sort();
    assert_eq!(files, want);
    let read = std::fs::read_to_string(d.join("msntap-read.1")).unwrap();
    assert!(
        read.contains(".TH msntap-read 1"),
        "{}",
        &read[..200.min(read.len())]
    );
    assert!(read.contains("max\\-flows"), "options in the page");
    // man can render it, when installed.
    let man = ["/usr/bin/man", "/bin/man"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    match man {
        Some(m) => {
            let out = std::process::Command::new(m)
                .arg("-l")
                .arg(d.join("msntap-read.1"))
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"));
        }
        None => eprintln!("SKIP: man is not installed; the pages were checked as roff text only"),
    }
}
