//! Helpers for the tests that run the msntap binary as a user would: run it with
//! arguments (and optionally standard input), in a scratch directory of its own.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "../scratch_support/mod.rs"]
mod scratch_support;
pub use scratch_support::Scratch;

/// What a run printed and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_msntap")
}

/// A scratch directory unique to this test process and `name`, created empty, removed
/// when the guard drops unless the test failed.
pub fn scratch(name: &str) -> Scratch {
    Scratch::dir(name)
}

pub fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(exe());
    c.args(args)
        .current_dir(root())
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG");
    c
}

fn finish(out: std::process::Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs msntap in the repository's root with `args`.
pub fn msntap(args: &[&str]) -> Run {
    finish(cmd(args).output().expect("run msntap"))
}

/// Runs msntap with `input` written to its standard input through a pipe.
pub fn msntap_stdin(args: &[&str], input: &[u8]) -> Run {
    let mut child = cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn msntap");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    // Written from another thread: msntap may fill its stdout pipe before reading it all.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait msntap");
    writer.join().expect("writer thread");
    finish(out)
}

pub fn fixture(rel: &str) -> String {
    root().join(rel).to_str().expect("utf-8 path").to_string()
}

pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

pub fn commands(stdout: &str) -> Vec<String> {
    json_lines(stdout)
        .into_iter()
        .filter(|e| e["type"] == "command")
        .filter_map(|e| e["line"].as_str().map(str::to_string))
        .collect()
}

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write test file");
}

#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}
