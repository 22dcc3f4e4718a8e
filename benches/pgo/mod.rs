//! A profile-guided (PGO) build of the msntap binary, for `benches/read.rs` to time beside the
//! plain release build. It builds an instrumented binary in `target/pgo-gen`, runs it over the
//! project's own fixtures (every capture, log and JSON Lines file under captures/, never the
//! benchmark's capture), merges the profiles with the toolchain's `llvm-profdata` and builds
//! `target/pgo/release/msntap` from them. Benchmark support only; the release profile in
//! Cargo.toml is untouched.
//!
//! It needs the `llvm-profdata` of the Rust toolchain's own LLVM (`rustup component add
//! llvm-tools`: a system LLVM of another version cannot read the profiles); without it the
//! build is skipped with that message. MSNTAP_BENCH_PGO=0 skips it too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Builds the PGO binary and returns its path, or why there is none.
pub fn build() -> Result<PathBuf, String> {
    if std::env::var_os("MSNTAP_BENCH_PGO").is_some_and(|v| v == "0") {
        return Err("skipped (MSNTAP_BENCH_PGO=0)".into());
    }
    let profdata = llvm_profdata()?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"));
    let gen_dir = target.join("pgo-gen");
    let use_dir = target.join("pgo");
    let raw = gen_dir.join("profiles");
    let _ = std::fs::remove_dir_all(&raw);
    std::fs::create_dir_all(&raw).map_err(|e| format!("{}: {e}", raw.display()))?;
    let merged = use_dir.join("msntap.profdata");

    println!(
        "PGO: building the instrumented binary in {}",
        gen_dir.display()
    );
    cargo_build(
        manifest,
        &gen_dir,
        &format!("-Cprofile-generate={}", raw.display()),
    )?;
    let inst = gen_dir.join("release").join("msntap");

    let fixtures = fixtures(&manifest.join("captures"));
    if fixtures.is_empty() {
        return Err("no fixtures under captures/ to train on".into());
    }
    println!("PGO: training on {} fixtures of captures/", fixtures.len());
    for f in &fixtures {
        // `read` to JSON Lines and to the log, and `report`: the decoding paths a user runs.
        // Exit codes do not matter here (some fixtures are deliberately damaged).
        for args in [
            &["read", "--json", "/dev/null", "--quiet", "--no-progress"][..],
            &["read", "--no-progress"][..],
            &["report"][..],
        ] {
            let st = Command::new(&inst)
                .args(args)
                .arg(f)
                .env("LLVM_PROFILE_FILE", raw.join("%p-%m.profraw"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if let Err(e) = st {
                return Err(format!("running {}: {e}", inst.display()));
            }
        }
    }

    let logs: Vec<&PathBuf> = fixtures
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    println!(
        "PGO: training the proxy on the connections of {} session logs of captures/",
        logs.len()
    );
    train_proxy(&inst, &raw, &logs)?;

    std::fs::create_dir_all(&use_dir).map_err(|e| format!("{}: {e}", use_dir.display()))?;
    let st = Command::new(&profdata)
        .arg("merge")
        .arg("-o")
        .arg(&merged)
        .arg(&raw)
        .status()
        .map_err(|e| format!("running {}: {e}", profdata.display()))?;
    if !st.success() {
        return Err(format!("{} merge exited with {st}", profdata.display()));
    }

    println!(
        "PGO: building the optimized binary in {}",
        use_dir.display()
    );
    cargo_build(
        manifest,
        &use_dir,
        &format!("-Cprofile-use={}", merged.display()),
    )?;
    Ok(use_dir.join("release").join("msntap"))
}

/// Rounds of replaying every log connection through the instrumented proxy.
const PROXY_ROUNDS: usize = 20;

/// Runs the instrumented `msntap proxy` in front of a server on 127.0.0.1 and replays the
/// connections of `logs` through it: per connection the client sends its side of the log
/// and the server its own, each in a thread of its own, then both close. The profiles are
/// written when the proxy exits on SIGTERM.
fn train_proxy(inst: &Path, raw: &Path, logs: &[&PathBuf]) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let tables = msntap::Tables::builtin().map_err(|e| format!("tables: {e}"))?;
    let mut conns: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for l in logs {
        let Ok(text) = std::fs::read_to_string(l) else {
            continue;
        };
        for c in msntap::logfile::parse(&text, &tables, false) {
            let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
            for ch in &c.chunks {
                match ch.dir {
                    msntap::event::Dir::C2s => c2s.extend_from_slice(&ch.bytes),
                    msntap::event::Dir::S2c => s2c.extend_from_slice(&ch.bytes),
                }
            }
            if !c2s.is_empty() {
                conns.push((c2s, s2c));
            }
        }
    }
    if conns.is_empty() {
        return Err("no connections in the session logs to train the proxy on".into());
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let server = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    // What the server sends on the next connection (the client connects one at a time).
    let next: Arc<Mutex<Vec<u8>>> = Arc::default();
    let n2 = next.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { break };
            let reply = n2.lock().map(|v| v.clone()).unwrap_or_default();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                if let Ok(mut w) = s.try_clone() {
                    std::thread::spawn(move || {
                        let _ = w.write_all(&reply);
                        let _ = w.shutdown(Shutdown::Write);
                    });
                }
                let _ = std::io::copy(&mut s, &mut std::io::sink());
            });
        }
    });
    let mut child = Command::new(inst)
        .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", &server])
        .args(["--json", "/dev/null", "--quiet"])
        .env("LLVM_PROFILE_FILE", raw.join("%p-%m.profraw"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {}: {e}", inst.display()))?;
    let mut err = BufReader::new(child.stderr.take().ok_or("no stderr")?);
    let mut first = String::new();
    let _ = err.read_line(&mut first);
    let addr = first
        .split_whitespace()
        .find(|t| t.starts_with("127.0.0.1:"))
        .map(str::to_string);
    let mut failed = None;
    if let Some(addr) = &addr {
        'rounds: for _ in 0..PROXY_ROUNDS {
            for (c2s, s2c) in &conns {
                if let Ok(mut v) = next.lock() {
                    v.clone_from(s2c);
                }
                let mut c = match TcpStream::connect(addr) {
                    Ok(c) => c,
                    Err(e) => {
                        failed = Some(format!("connecting to the proxy: {e}"));
                        break 'rounds;
                    }
                };
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut w = c.try_clone().map_err(|e| e.to_string())?;
                let data = c2s.clone();
                let t = std::thread::spawn(move || {
                    let _ = w.write_all(&data);
                    let _ = w.shutdown(Shutdown::Write);
                });
                let mut sink = Vec::new();
                let _ = c.read_to_end(&mut sink);
                let _ = t.join();
            }
        }
    } else {
        failed = Some(format!("the proxy did not start: {}", first.trim()));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    match failed {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// `cargo build --release --bin msntap` into `dir` with one more rustc flag.
fn cargo_build(manifest: &Path, dir: &Path, flag: &str) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let flags = match std::env::var("RUSTFLAGS") {
        Ok(f) if !f.trim().is_empty() => format!("{f} {flag}"),
        _ => flag.to_string(),
    };
    let st = Command::new(cargo)
        .current_dir(manifest)
        .args([
            "build",
            "--release",
            "--quiet",
            "--bin",
            "msntap",
            "--target-dir",
        ])
        .arg(dir)
        .env("RUSTFLAGS", flags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("cargo build ({flag}) exited with {st}"))
    }
}

/// The toolchain's own llvm-profdata: `<sysroot>/lib/rustlib/<host>/bin/llvm-profdata`.
fn llvm_profdata() -> Result<PathBuf, String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = |args: &[&str]| -> Result<String, String> {
        let o = Command::new(&rustc)
            .args(args)
            .output()
            .map_err(|e| format!("running rustc: {e}"))?;
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let sysroot = out(&["--print", "sysroot"])?;
    let vv = out(&["-vV"])?;
    let host = vv
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .ok_or("rustc -vV names no host")?;
    let p = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host.trim())
        .join("bin/llvm-profdata");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "skipped: {} not found (rustup component add llvm-tools)",
            p.display()
        ))
    }
}

/// Every capture, log and JSON Lines file under `dir`, sorted.
fn fixtures(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "pcap" | "pcapng" | "log" | "jsonl"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
