//! The README cannot rot: every example in it is run. In `text` blocks, each `$ ` line is a
//! command and the lines under it what it prints (stdout and stderr together): each shown
//! line must appear, in order, `...` alone standing for lines left out and `...` inside a
//! line for text left out. In `sh` blocks, each `msntap` line (and `cargo run -- ...`) must
//! run and exit 0. Commands run in a scratch directory holding `captures/` (a link to the
//! repository's), with HOME inside it, as on a fresh clone; a command whose program is not
//! installed, or that needs a live server, prints SKIP with the reason.

mod cli_support;

use std::path::Path;
use std::process::Command;

use cli_support::{exe, root, scratch};

#[derive(Debug)]
struct Example {
    line: usize,
    command: String,
    /// Shown output; None: only the exit status is checked.
    shown: Option<Vec<String>>,
}

fn examples(readme: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for (i, l) in readme.lines().enumerate() {
        if let Some(rest) = l.strip_prefix("```") {
            block = match block {
                Some(_) => None,
                None => Some(rest.trim().to_string()),
            };
            continue;
        }
        match block.as_deref() {
            Some("text") => {
                if let Some(c) = l.strip_prefix("$ ") {
                    out.push(Example {
                        line: i + 1,
                        command: c.to_string(),
                        shown: Some(Vec::new()),
                    });
                } else if let Some(Example { shown: Some(s), .. }) = out.last_mut() {
                    s.push(l.to_string());
                }
            }
            Some("sh") => {
                let c = l.split(" # ").next().unwrap_or("").trim();
                if c.starts_with("msntap ") || c.starts_with("cargo ") {
                    out.push(Example {
                        line: i + 1,
                        command: c.to_string(),
                        shown: None,
                    });
                }
            }
            _ => {
                // Lines of a text block outside any command belong to none.
            }
        }
    }
    out
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// Checks the shown lines against the output; returns the first one not found.
fn missing(shown: &[String], output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().map(str::trim_end).collect();
    let mut at = 0;
    for s in shown.iter().map(|s| s.trim_end()) {
        if s == "..." || s.is_empty() {
            continue;
        }
        let parts: Vec<&str> = s.split("...").collect();
        let fits = |l: &str| {
            if parts.len() == 1 {
                return l == s;
            }
            let mut rest = l;
            for (k, p) in parts.iter().enumerate() {
                match rest.find(p) {
                    Some(i) if k > 0 || i == 0 || p.is_empty() => rest = &rest[i + p.len()..],
                    _ => return false,
                }
            }
            parts.last().is_some_and(|p| p.is_empty() || l.ends_with(p))
        };
        match lines[at..].iter().position(|l| fits(l)) {
            Some(i) => at += i + 1,
            None => return Some(s.to_string()),
        }
    }
    None
}

#[test]
fn every_readme_example_runs_and_prints_what_it_shows() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let all = examples(&readme);
    assert!(all.len() >= 10, "found only {} examples", all.len());
    let dir = scratch("readme");
    #[cfg(unix)]
    std::os::unix::fs::symlink(root().join("captures"), dir.join("captures")).expect("link");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home");
    // `msntap` on PATH is the binary under test.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    #[cfg(unix)]
    std::os::unix::fs::symlink(exe(), bin.join("msntap")).expect("link msntap");
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let mut ran = 0;
    let mut failures = Vec::new();
    for ex in &all {
        let mut c = ex.command.clone();
        if let Some(rest) = c.strip_prefix("cargo run --release -- ") {
            c = format!("msntap {rest}");
        } else if c.starts_with("cargo ") {
            eprintln!(
                "SKIP: README line {}: `{c}` (the test suite does not build or install itself)",
                ex.line
            );
            continue;
        }
        if c.starts_with("msntap proxy") {
            eprintln!("SKIP: README line {}: `{c}` needs a live server", ex.line);
            continue;
        }
        if c.starts_with("msntap view") && !c.contains("--help") {
            // The view serves until Ctrl-C: it is started on a free port (so parallel runs
            // do not collide on 8863), must announce its URL and read the whole input,
            // then is stopped.
            let line = c.split('#').next().unwrap_or("").trim().to_string();
            match serve_view(&format!("{line} --listen 127.0.0.1:0"), &dir, &home, &path) {
                Ok(()) => ran += 1,
                Err(e) => failures.push(format!("line {}: `{c}`: {e}", ex.line)),
            }
            continue;
        }
        let progs: Vec<&str> = c
            .split('|')
            .filter_map(|p| p.split_whitespace().next())
            .collect();
        if let Some(p) = progs.iter().find(|p| **p != "msntap" && !on_path(p)) {
            eprintln!(
                "SKIP: README line {}: `{c}` needs {p}, which is not installed",
                ex.line
            );
            continue;
        }
        // Directories a command writes into under ~ exist, as they would for a user.
        for w in c.split_whitespace().filter_map(|w| w.strip_prefix("~/")) {
            if let Some(parent) = Path::new(w).parent() {
                std::fs::create_dir_all(home.join(parent)).expect("dir under HOME");
            }
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{c} 2>&1"))
            .current_dir(&dir)
            .env("HOME", &home)
            .env("PATH", &path)
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .output()
            .expect("run sh");
        ran += 1;
        let text = String::from_utf8_lossy(&out.stdout);
        match &ex.shown {
            None => {
                if !out.status.success() {
                    failures.push(format!(
                        "line {}: `{c}` exited {}:\n{text}",
                        ex.line, out.status
                    ));
                }
            }
            Some(shown) => {
                if let Some(m) = missing(shown, &text) {
                    failures.push(format!(
                        "line {}: `{c}` did not print\n  {m}\nit printed:\n{text}",
                        ex.line
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(ran >= 10, "only {ran} examples ran");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_matcher_fails_on_what_is_not_there() {
    let shown = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let out = "a 1\nb 2 x 3\nc\n";
    assert_eq!(missing(&shown(&["a 1", "...", "c"]), out), None);
    assert_eq!(missing(&shown(&["b 2 ... 3"]), out), None);
    assert_eq!(missing(&shown(&["b ...x..."]), out), None);
    assert_eq!(missing(&shown(&["c", "a 1"]), out), Some("a 1".into()));
    assert_eq!(
        missing(&shown(&["b 2 ... 4"]), out),
        Some("b 2 ... 4".into())
    );
    assert_eq!(missing(&shown(&["x 3"]), out), Some("x 3".into()));
    assert_eq!(missing(&shown(&["2 x ..."]), out), Some("2 x ...".into()));
}

/// Runs a `msntap view` command until it has said where it listens and that it read its
/// input (at most 60 s), then kills it.
fn serve_view(cmd: &str, dir: &Path, home: &Path, path: &std::ffi::OsStr) -> Result<(), String> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {cmd} 2>&1"))
        .current_dir(dir)
        .env("HOME", home)
        .env("PATH", path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (mut url, mut read) = (false, false);
    let mut seen = Vec::new();
    while !(url && read) {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                url |= l.contains("view of ") && l.contains("http://127.0.0.1:");
                read |= l.contains("read ") && l.contains(" events in ");
                seen.push(l);
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    if url && read {
        Ok(())
    } else {
        Err(format!(
            "did not announce its URL and read its input within 60 s; it printed:\n{}",
            seen.join("\n")
        ))
    }
}
