//! What the browser tests share: a minimal W3C WebDriver client over std's TcpStream
//! (chromedriver on 127.0.0.1), and msntap / chromedriver child processes that are killed
//! when dropped. Every wait has a deadline. Loopback only.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Where Debian puts chromium and its driver (or what PATH finds).
pub fn browser_tools() -> Result<(PathBuf, PathBuf), String> {
    let find = |names: &[&str]| -> Option<PathBuf> {
        for n in names {
            let p = PathBuf::from(n);
            if p.is_absolute() && p.exists() {
                return Some(p);
            }
            if let Some(path) = std::env::var_os("PATH") {
                for dir in std::env::split_paths(&path) {
                    let c = dir.join(n);
                    if c.exists() {
                        return Some(c);
                    }
                }
            }
        }
        None
    };
    let chromium = find(&["/usr/bin/chromium", "chromium", "chromium-browser"])
        .ok_or("chromium not installed (apt-get install chromium chromium-driver)")?;
    let driver = find(&["/usr/bin/chromedriver", "chromedriver"])
        .ok_or("chromedriver not installed (apt-get install chromium-driver)")?;
    Ok((chromium, driver))
}

/// A child killed on drop, its stderr collected by a thread.
pub struct Proc {
    pub child: Child,
    pub stderr: Arc<Mutex<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Proc {
    /// Kills the process and waits for it (again: a no-op).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let err = child.stderr.take().expect("stderr");
        let text = Arc::new(Mutex::new(String::new()));
        let t = text.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                t.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Proc {
            child,
            stderr: text,
        }
    }

    /// Waits for a stderr line containing `marker`; returns that line.
    pub fn wait_line(&self, marker: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .stderr
                .lock()
                .unwrap()
                .lines()
                .find(|l| l.contains(marker))
            {
                return l.to_string();
            }
            assert!(
                Instant::now() < end,
                "no {marker:?} on stderr within {timeout:?}:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `msntap ARGS... --listen 127.0.0.1:0`; returns the process and the view's URL.
pub fn msntap_view(args: &[&str]) -> (Proc, String) {
    let p = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_msntap"))
            .args(args)
            .args(["--listen", "127.0.0.1:0"]),
    );
    let line = p.wait_line(" at http://", Duration::from_secs(30));
    let url = line.split(" at ").last().expect("url").trim().to_string();
    (p, url)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One HTTP/1.1 exchange with `Connection: close`; (status, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let b = body.map(|v| v.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
        b.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // chromedriver may keep the connection open: read by Content-Length (or chunks).
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line).map_err(|e| e.to_string())?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).map_err(|e| e.to_string())? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).map_err(|e| e.to_string())?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(|e| e.to_string())?;
    } else {
        r.read_to_end(&mut body).map_err(|e| e.to_string())?;
    }
    Ok((status, body))
}

/// A chromedriver process and one headless chromium session.
pub struct Browser {
    driver: Proc,
    port: u16,
    session: String,
    _profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        // chromedriver (and any browser it still runs) must be gone before its profile is:
        // the fields would only be dropped after this.
        self.driver.stop();
        let _ = std::fs::remove_dir_all(&self._profile);
    }
}

impl Browser {
    pub fn start(chromium: &std::path::Path, driver: &std::path::Path) -> Browser {
        let port = free_port();
        let drv = Proc::spawn(Command::new(driver).arg(format!("--port={port}")));
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, b)) = http(port, "GET", "/status", None) {
                let v: Value = serde_json::from_slice(&b).unwrap_or_default();
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                Instant::now() < end,
                "chromedriver did not start: {}",
                drv.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile =
            std::env::temp_dir().join(format!("msntap-chromium-{}-{}", std::process::id(), port));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--disable-dev-shm-usage", "--window-size=1600,1000",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let (status, b) = http(port, "POST", "/session", Some(&caps)).expect("new session");
        let v: Value = serde_json::from_slice(&b).unwrap_or_default();
        assert_eq!(status, 200, "new session: {v}");
        let session = v["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        Browser {
            driver: drv,
            port,
            session,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let p = format!("/session/{}{path}", self.session);
        let (status, b) = http(self.port, method, &p, body.as_ref())
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        let v: Value = serde_json::from_slice(&b).unwrap_or_default();
        assert_eq!(status, 200, "webdriver {method} {path}: {v}");
        v["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `body` (a function body; `arguments` are `args`) in the page.
    pub fn js(&self, body: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": body, "args": args })),
        )
    }

    /// Runs `body` asynchronously: it calls `arguments[arguments.length - 1](value)` when
    /// done (within two minutes).
    pub fn js_async(&self, body: &str, args: Value) -> Value {
        self.call("POST", "/timeouts", Some(json!({ "script": 120_000 })));
        self.call(
            "POST",
            "/execute/async",
            Some(json!({ "script": body, "args": args })),
        )
    }

    /// Polls `expr` (a JavaScript expression) until it is truthy; returns its value.
    pub fn wait_for(&self, what: &str, expr: &str, timeout: Duration) -> Value {
        let end = Instant::now() + timeout;
        loop {
            let v = self.js(
                &format!("try {{ return ({expr}); }} catch (e) {{ return null; }}"),
                json!([]),
            );
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() >= end {
                let _ = self.screenshot(&std::env::temp_dir().join("msntap-browser-failure.png"));
                panic!("waited {timeout:?} for {what} ({expr}); last value {v}");
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    pub fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|x| x.as_str())
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// Clicks the element `css` finds; a live page may re-render it between finding and
    /// clicking, so a stale element is looked up again (a few times).
    pub fn click(&self, css: &str) {
        for _ in 0..10 {
            let id = self.find(css);
            let p = format!("/session/{}/element/{id}/click", self.session);
            let (status, b) = http(self.port, "POST", &p, Some(&json!({}))).expect("click");
            if status == 200 {
                return;
            }
            let v: Value = serde_json::from_slice(&b).unwrap_or_default();
            assert_eq!(
                v["value"]["error"], "stale element reference",
                "click {css}: {v}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
        panic!("{css} kept going stale");
    }

    pub fn clear(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/clear"), Some(json!({})));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Browser console entries so far (chromedriver's log endpoint).
    pub fn console(&self) -> Vec<Value> {
        let p = format!("/session/{}/se/log", self.session);
        match http(self.port, "POST", &p, Some(&json!({"type": "browser"}))) {
            Ok((200, b)) => {
                let v: Value = serde_json::from_slice(&b).unwrap_or_default();
                v["value"].as_array().cloned().unwrap_or_default()
            }
            other => panic!("reading the browser console: {other:?}"),
        }
    }

    /// Console entries at SEVERE level (errors, failed loads, CSP violations).
    pub fn console_errors(&self) -> Vec<String> {
        self.console()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub fn screenshot(&self, path: &std::path::Path) -> std::io::Result<()> {
        let v = self.call("GET", "/screenshot", None);
        let b64 = v.as_str().unwrap_or_default();
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::write(path, png)
    }
}
