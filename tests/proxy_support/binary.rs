//! The `msntap proxy` binary as a test runs it: started on 127.0.0.1 with an ephemeral port,
//! its listen address read from the first stderr line, stopped with SIGINT or SIGTERM within
//! a deadline.
#![cfg(unix)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct ProxyProcess {
    child: Child,
    err: BufReader<ChildStderr>,
    /// Where clients connect.
    pub addr: String,
}

/// Runs `msntap proxy --listen 127.0.0.1:0 ARGS...` with its standard output discarded.
pub fn spawn_proxy<I, S>(args: I) -> ProxyProcess
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    spawn_proxy_with(args, Stdio::null())
}

/// As [`spawn_proxy`], with standard output going to `stdout` (`Stdio::piped()` makes it
/// available through [`ProxyProcess::stdout`]).
pub fn spawn_proxy_with<I, S>(args: I, stdout: Stdio) -> ProxyProcess
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = Command::new(env!("CARGO_BIN_EXE_msntap"))
        .args(["proxy", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("msntap runs");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    err.read_line(&mut first).expect("startup line");
    let addr = first
        .split_whitespace()
        .find(|t| t.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no listen address in {first:?}"))
        .to_string();
    ProxyProcess { child, err, addr }
}

impl ProxyProcess {
    /// The proxy's standard output, when it was piped (once).
    pub fn stdout(&mut self) -> ChildStdout {
        self.child.stdout.take().expect("stdout was piped")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Ctrl-C: returns the exit status and what the proxy wrote on stderr after starting.
    pub fn interrupt(self) -> (ExitStatus, String) {
        self.signal("-INT")
    }

    /// What systemd, docker and `timeout` send.
    pub fn terminate(self) -> (ExitStatus, String) {
        self.signal("-TERM")
    }

    fn signal(mut self, sig: &str) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill runs");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "msntap did not stop after {sig}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = String::new();
        self.err.read_to_string(&mut rest).expect("stderr");
        (status, rest)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        // A failed test must not leave the proxy running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
