//! Transparent mode. For real: the README's iptables and nftables recipes are run in a
//! network namespace made for the test (so no rule touches the machine), a client connects
//! to an address on port 1863 there, the REDIRECT rule sends it to `msntap proxy
//! --transparent` (running as another user, as the recipe says), and the session must reach
//! the original address with its switchboard referral rewritten. It needs root, `ip`,
//! `iptables`/`nft` and `setpriv`; without them it prints SKIP and why. Without a rule: a
//! connection that was not redirected goes to the `--upstream` fallback, or is closed
//! cleanly with an error saying why. Linux only; all addresses are loopback addresses of
//! the test's own namespace; every wait is bounded.
#![cfg(target_os = "linux")]

mod proxy_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use msntap::proxy::Config;
use msntap::{Event, EventKind};
use proxy_support::*;

fn transparent(upstream: Option<String>) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        upstream,
        transparent: true,
        connect_timeout: Duration::from_secs(3),
        ..Config::default()
    }
}

#[tokio::test]
async fn a_connection_that_was_not_redirected_uses_the_fallback_upstream() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (l, up) = server().await;
        let proxy = start_with(transparent(Some(up.clone())), |_| true).await;
        let mut c = connect(&proxy.addr.to_string()).await;
        c.send_line("VER 1 MSNP8 CVR0").await;
        let mut s = accept(&l).await;
        assert_eq!(s.line().await, "VER 1 MSNP8 CVR0");
        s.send_line("VER 1 MSNP8").await;
        assert_eq!(c.line().await, "VER 1 MSNP8");
        drop((c, s));
        let evs = proxy.stop().await;
        assert!(accepted(&evs).iter().any(|(_, t)| *t == up), "{evs:?}");
    })
    .await
    .expect("test finishes in time")
}

#[tokio::test]
async fn without_a_fallback_the_client_is_told_nothing_and_closed_cleanly() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let proxy = start_with(transparent(None), |_| true).await;
        let mut c = connect(&proxy.addr.to_string()).await;
        c.expect_clean_close().await;
        let evs = proxy.stop().await;
        let err = only_error(&evs);
        assert!(err.contains("was not redirected by the firewall"), "{err}");
    })
    .await
    .expect("test finishes in time")
}

/// The uid the proxy runs as (nobody): the rules exempt its own connections by uid.
const PROXY_UID: &str = "65534";
/// Where the client thinks the server is, inside the namespace.
const SERVER: &str = "127.0.0.2:1863";
const SWITCHBOARD: &str = "127.0.0.3:1864";
/// The variable that makes the scenario run (inside the namespace).
const ROLE: &str = "MSNTAP_TRANSPARENT_SCENARIO";

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md")
}

/// The README's iptables rule and proxy command, as argument lists.
fn iptables_recipe() -> (Vec<String>, Vec<String>) {
    let text = readme();
    let rule = text
        .lines()
        .find(|l| l.contains("iptables -t nat -A OUTPUT"))
        .expect("the README has the iptables OUTPUT recipe");
    let proxy = text
        .lines()
        .find(|l| l.contains("msntap proxy --transparent --listen 127.0.0.1:1863"))
        .expect("the README has the transparent proxy command");
    let rule: Vec<String> = rule
        .split_whitespace()
        .skip_while(|w| *w == "sudo")
        .map(|w| if w == "msntap" { PROXY_UID } else { w }.to_string())
        .collect();
    let proxy: Vec<String> = proxy
        .split_whitespace()
        .skip_while(|w| *w != "proxy")
        .map(str::to_string)
        .collect();
    (rule, proxy)
}

/// The README's nftables table.
fn nft_recipe() -> String {
    let text = readme();
    let start = text
        .find("table ip msntap {")
        .expect("the README has the nft recipe");
    let end = start + text[start..].find("\n}\n").expect("the table ends") + 2;
    text[start..end].replace("\"msntap\"", PROXY_UID)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg(if tool == "ip" { "-V" } else { "--version" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// A network namespace that is deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Result<Netns, String> {
        let name = format!("msntap-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err(format!("ip netns add {name} failed"));
        }
        let ns = Netns(name);
        ns.run(&["ip", "link", "set", "lo", "up"], None)?;
        Ok(ns)
    }

    /// Runs `argv` inside the namespace (with `input` on its standard input).
    fn run(&self, argv: &[&str], input: Option<&str>) -> Result<String, String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(argv);
        c.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| format!("{argv:?}: {e}"))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| format!("{argv:?}: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{argv:?}: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{argv:?} failed ({}): {text}", out.status))
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Why the real test cannot run here, if it cannot.
fn cannot_run() -> Option<String> {
    if !is_root() {
        return Some("not root (network namespaces and NAT rules need it)".into());
    }
    for t in ["ip", "iptables", "nft", "setpriv"] {
        if !have(t) {
            return Some(format!("{t} is not installed (.ci/run installs it)"));
        }
    }
    None
}

/// Runs the scenario inside `ns` with the rules already loaded: this test binary, again,
/// with ROLE set.
fn scenario_in(ns: &Netns, proxy_args: &[String]) -> Result<String, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let me = me.to_string_lossy().into_owned();
    let args = proxy_args.join("\u{1f}");
    ns.run(
        &[
            "env",
            &format!("{ROLE}={args}"),
            &me,
            "--exact",
            "scenario_inside_the_namespace",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
        None,
    )
}

fn real(tag: &str, load: impl Fn(&Netns) -> Result<String, String>) {
    if let Some(why) = cannot_run() {
        eprintln!("SKIP: transparent mode with a real REDIRECT rule: {why}");
        return;
    }
    let ns = match Netns::new(tag) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("SKIP: transparent mode with a real REDIRECT rule: cannot make a network namespace: {e}");
            return;
        }
    };
    load(&ns).expect("the README's rule loads");
    let (_, proxy) = iptables_recipe();
    match scenario_in(&ns, &proxy) {
        Ok(out) => {
            assert!(out.contains("scenario passed"), "{out}");
        }
        Err(e) => panic!("the scenario failed inside the namespace:\n{e}"),
    }
}

#[test]
fn the_readme_iptables_recipe_redirects_a_client_through_the_proxy() {
    real("ipt", |ns| {
        let (rule, _) = iptables_recipe();
        let argv: Vec<&str> = rule.iter().map(String::as_str).collect();
        ns.run(&argv, None)
    });
}

#[test]
fn the_readme_nftables_recipe_redirects_a_client_through_the_proxy() {
    real("nft", |ns| ns.run(&["nft", "-f", "-"], Some(&nft_recipe())));
}

fn temp_dir() -> Scratch {
    let d = Scratch::dir("transparent");
    // The proxy runs as another user and writes its JSON Lines here.
    let _ = Command::new("chmod")
        .args(["777", &d.to_string_lossy()])
        .status();
    d
}

/// Inside the namespace, with the rule loaded: servers at SERVER and SWITCHBOARD, the proxy
/// as PROXY_UID with the README's arguments, a client that only knows SERVER. Run by the
/// tests above; does nothing on its own.
#[test]
#[ignore = "runs inside a network namespace made by the transparent tests"]
fn scenario_inside_the_namespace() {
    let Ok(args) = std::env::var(ROLE) else {
        return;
    };
    let proxy_args: Vec<String> = args.split('\u{1f}').map(str::to_string).collect();
    let dir = temp_dir();
    let json = dir.join("events.jsonl");
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={PROXY_UID}"),
        &format!("--regid={PROXY_UID}"),
        "--clear-groups",
        env!("CARGO_BIN_EXE_msntap"),
    ])
    .args(&proxy_args)
    .args(["--quiet", "--json", &json.to_string_lossy()])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let evs = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), scenario(cmd, &json))
            .await
            .expect("scenario finishes in time")
    });
    // The proxy connected to the address the client asked for, and routed the referral.
    let servers: Vec<String> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Connect(c) => c.server.as_deref().map(str::to_string),
            _ => None,
        })
        .collect();
    assert!(servers.iter().any(|s| s == SERVER), "{servers:?}");
    assert!(servers.iter().any(|s| s == SWITCHBOARD), "{servers:?}");
    let r = redirects(&evs);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, SWITCHBOARD);
    assert!(evs
        .iter()
        .any(|e| e.command().is_some_and(|c| c.cmd == "MSG")));
    println!("scenario passed");
}

async fn scenario(mut cmd: Command, json: &Path) -> Vec<Event<'static>> {
    let ns = tokio::net::TcpListener::bind(SERVER)
        .await
        .expect("bind the server");
    let sb = tokio::net::TcpListener::bind(SWITCHBOARD)
        .await
        .expect("bind the switchboard");
    let mut child = cmd.spawn().expect("the proxy starts");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut err, &mut first).expect("startup line");
    assert!(first.contains("proxying 127.0.0.1:1863"), "{first}");
    let servers = tokio::spawn(async move {
        let mut n = accept(&ns).await;
        assert_eq!(n.line().await, "VER 1 MSNP11 CVR0");
        n.send_line("VER 1 MSNP11").await;
        assert_eq!(n.line().await, "XFR 2 SB");
        n.send_line(&format!(
            "XFR 2 SB {SWITCHBOARD} CKI 99.88 U messenger.msn.com 1"
        ))
        .await;
        let mut s = accept(&sb).await;
        assert_eq!(s.line().await, "USR 1 alice@example.com 99.88");
        s.send_line("USR 1 OK alice@example.com Alice").await;
        let body = "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nhi";
        s.send(format!("MSG bob@example.com Bob {}\r\n{body}", body.len()).as_bytes())
            .await;
        s.read_to_eof_quietly().await;
        n.read_to_eof_quietly().await;
    });
    // The client knows nothing of the proxy.
    let mut c = connect(SERVER).await;
    c.send_line("VER 1 MSNP11 CVR0").await;
    assert_eq!(c.line().await, "VER 1 MSNP11");
    c.send_line("XFR 2 SB").await;
    let x = c.line().await;
    let via = x.split(' ').nth(3).expect("address").to_string();
    assert!(
        via.starts_with("127.0.0.1:") && via != SWITCHBOARD,
        "not rewritten: {x}"
    );
    let mut s = connect(&via).await;
    s.send_line("USR 1 alice@example.com 99.88").await;
    assert_eq!(s.line().await, "USR 1 OK alice@example.com Alice");
    assert!(s.line().await.starts_with("MSG bob@example.com Bob "));
    drop((c, s));
    let _ = tokio::time::timeout(STEP, servers).await;
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().expect("the proxy stops");
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(json).expect("the proxy wrote its events");
    text.lines()
        .map(|l| Event::from_json(l).expect("JSON line"))
        .collect()
}
