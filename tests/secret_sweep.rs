//! Secret sweep (issue 12): every session log in captures/ is turned into captures with
//! segments dropped and cut small (`msntap synth --drop N --segment M`), and those, the
//! logs themselves and the real captures are put through every output (the log, JSON
//! Lines, report and its JSON, transcript and its JSON, ladder, annotate's packet
//! comments, extract's report lines, JSON reports and written files, the web view's API
//! and live stream, and what each prints on stderr). No secret of the input may appear in
//! any of them without --no-redact, not even a piece of it; with --no-redact each secret
//! must appear somewhere, so that the check can fail. The secrets are found here by
//! reading the input's text with patterns of this file (never through msntap's own
//! redaction code). Writes only under the system temporary directory; the view listens
//! on 127.0.0.1 only.

mod cli_support;
mod web_support;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cli_support::{cmd, root, scratch};
use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, OptionCode, PcapBlockOwned, PcapError};
use serde_json::Value;

/// Shorter pieces of a secret than this are not looked for (they could be anything).
const PIECE: usize = 12;

/// Values after `key` up to the next byte of `stop` (or the end), at every occurrence.
fn values_after<'a>(text: &'a str, key: &str, stop: &[char]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(key) {
        rest = &rest[i + key.len()..];
        let end = rest.find(|c: char| stop.contains(&c)).unwrap_or(rest.len());
        out.push(&rest[..end]);
    }
    out
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The secrets in the text of an input (a log, or a capture's bytes read as text: the
/// command lines and HTTP bodies of the captures here sit whole in single packets).
fn secrets_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut add = |s: &str| {
        let s = s.trim();
        if s.len() >= 6 {
            found.insert(s.to_string());
        }
    };
    for line in text.split(['\r', '\n']) {
        for cmd in ["USR ", "ANS "] {
            let mut at = 0;
            while let Some(i) = line[at..].find(cmd) {
                let start = at + i;
                at = start + cmd.len();
                // Only where the command starts a line or follows packet bytes.
                if start > 0 && line.as_bytes()[start - 1].is_ascii_alphanumeric() {
                    continue;
                }
                let toks: Vec<&str> = line[start..].split(' ').filter(|t| !t.is_empty()).collect();
                match (cmd, toks.as_slice()) {
                    // The client's TWN ticket (the server's TWN S is the challenge).
                    ("USR ", [_, _, "TWN", "S", t, ..])
                        if !t.contains("lc=") && !t.contains("ct=") =>
                    {
                        add(t)
                    }
                    // The client's SSO ticket and response (the server's is the policy).
                    ("USR ", [_, _, "SSO", "S", t, rest @ ..]) if !t.starts_with("MBI") => {
                        add(t);
                        if let Some(r) = rest.first() {
                            add(r);
                        }
                    }
                    ("USR ", [_, _, "MD5", "S", h, ..]) if is_hex32(h) => add(h),
                    // A switchboard login: handle and cookie.
                    ("USR ", [_, _, handle, cookie]) if handle.contains('@') => add(cookie),
                    ("ANS ", [_, _, handle, cookie, ..]) if handle.contains('@') => add(cookie),
                    _ => {}
                }
            }
        }
        for c in values_after(line, "CKI ", &[' ']) {
            add(c);
        }
        for v in values_after(line, "MSPAuth: ", &[' ', ';']) {
            add(v);
        }
        for v in values_after(line, "MSPAuth=", &[' ', ';', '&']) {
            add(v);
        }
    }
    for key in ["BinarySecret>", "Password>"] {
        for v in values_after(text, key, &['<']) {
            add(v);
        }
    }
    // Tickets in SOAP responses: `t=...&amp;p=...` inside the token element.
    let mut rest = text;
    while let Some(i) = rest.find("BinarySecurityToken") {
        rest = &rest[i + 19..];
        let Some(gt) = rest.find('>') else { break };
        if rest[..gt].ends_with('/') {
            continue;
        }
        let body = &rest[gt + 1..];
        let end = body.find('<').unwrap_or(body.len());
        for part in body[..end].split("&amp;").flat_map(|p| p.split('&')) {
            add(part);
        }
    }
    found
}

/// The comments of the packets of a pcapng file, read with pcap-parser.
fn comments(path: &Path) -> String {
    let f = std::fs::File::open(path).expect("open annotate output");
    let mut r = create_reader(1 << 20, f).expect("pcapng header");
    let mut out = String::new();
    loop {
        match r.next() {
            Ok((len, block)) => {
                if let PcapBlockOwned::NG(Block::EnhancedPacket(epb)) = block {
                    for o in epb.options.iter().filter(|o| o.code == OptionCode::Comment) {
                        out.push_str(&String::from_utf8_lossy(&o.value()[..o.len as usize]));
                        out.push('\n');
                    }
                }
                r.consume(len);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => r.refill().expect("refill"),
            Err(e) => panic!("{}: {e:?}", path.display()),
        }
    }
    out
}

/// A heading in the checked text: a leak is reported with the heading before it.
fn heading(what: &str) -> String {
    format!("\n{HEADING}{what}\n")
}

const HEADING: &str = "== ";

/// An argument as a heading shows it: a path by its file name.
fn short(arg: &str) -> &str {
    Path::new(arg)
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| arg.contains('/'))
        .unwrap_or(arg)
}

/// Runs msntap and returns everything it printed (stdout and stderr), under a heading.
fn run(args: &[String]) -> String {
    let out = cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .expect("run msntap");
    let shown: Vec<&str> = args.iter().map(|a| short(a)).collect();
    let text = format!(
        "{}{}\n{}",
        heading(&format!("msntap {}", shown.join(" "))),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Damaged captures may end with an input problem (exit 1), and a ladder finds no
    // chain to draw when the login was lost (a usage error, 2); anything else is a bug.
    let no_chain = args[0] == "ladder" && text.contains("no such chain");
    assert!(
        matches!(out.status.code(), Some(0 | 1)) || (no_chain && out.status.code() == Some(2)),
        "msntap {args:?} ended with {:?}: {text}",
        out.status
    );
    text
}

/// Every output of msntap for `inputs`, redacted or not: the commands' and the view's.
fn outputs(inputs: &[PathBuf], no_redact: bool, dir: &Path) -> String {
    cli_outputs(inputs, no_redact, dir) + &view_outputs(inputs, no_redact)
}

/// What the commands print and write for `inputs`, redacted or not (annotate once per
/// input).
fn cli_outputs(inputs: &[PathBuf], no_redact: bool, dir: &Path) -> String {
    let files: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    let with = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if no_redact {
            v.push("--no-redact".into());
        }
        v.extend(files.iter().cloned());
        v
    };
    let mut all = String::new();
    for args in [
        &["read", "--color", "never"][..],
        &["read", "--json", "-"],
        &["report", "--color", "never"],
        &["report", "--json", "-"],
        &["transcript", "--color", "never"],
        &["transcript", "--json", "-"],
    ] {
        all.push_str(&run(&with(args)));
    }
    if !no_redact {
        // ladder has no --no-redact: its diagrams are always redacted.
        all.push_str(&run(&with(&["ladder", "--list"])));
    }
    for (i, input) in inputs.iter().enumerate() {
        if !no_redact {
            for format in ["mermaid", "svg"] {
                let args =
                    ["ladder", "--format", format, &input.display().to_string()].map(String::from);
                all.push_str(&run(&args));
            }
        }
        let is_capture = input
            .extension()
            .is_some_and(|e| e == "pcap" || e == "pcapng");
        if !is_capture {
            continue;
        }
        let out = dir.join(format!("annotated-{i}-{no_redact}.pcapng"));
        let _ = std::fs::remove_file(&out);
        let mut args = vec![
            "annotate".to_string(),
            input.display().to_string(),
            "-o".into(),
            out.display().to_string(),
        ];
        if no_redact {
            args.push("--no-redact".into());
        }
        all.push_str(&run(&args));
        all.push_str(&heading(&format!(
            "annotate's packet comments ({})",
            short(&input.display().to_string())
        )));
        all.push_str(&comments(&out));
    }
    if !no_redact {
        // extract has no --no-redact: it always redacts.
        all.push_str(&extract_outputs(inputs, dir));
    }
    all
}

/// Object contents worth reading as text: valid UTF-8 (a text file, an XML or a log). The
/// rest (pictures, emoticons, sounds, archives) is checked by its name only.
fn text_like(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
}

/// What `msntap extract` prints and writes for `inputs`: run once with its JSON reports on
/// standard output (`--json -`, which keeps the report lines off it) and once with them in
/// a file (the report lines on standard output), into fresh directories.
///
/// The written files are checked by name (sender, kind and the MSNObject's or file's own
/// name) and, when text-like, by content. An object's content is the peer's data byte for
/// byte (its SHA1D is checked against it), never redacted, and a transferred file could
/// legitimately hold text that looks like a login; but the secrets here come from login
/// and switchboard command lines, and no input's P2P data carries one, so a secret in an
/// object would mean the reassembly took in bytes that were not the object's. (An input
/// that transfers a file holding its own login text would have to be left out of this.)
/// Binary objects are not read: their bytes are what the peer sent, whatever they hold.
fn extract_outputs(inputs: &[PathBuf], dir: &Path) -> String {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let mut all = String::new();
    for json_to_stdout in [true, false] {
        let out = dir.join(format!("extract-{n}-{json_to_stdout}"));
        let report = dir.join(format!("extract-{n}.jsonl"));
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_file(&report);
        let mut args = vec![
            "extract".to_string(),
            "-o".into(),
            out.display().to_string(),
            "--json".into(),
        ];
        args.push(if json_to_stdout {
            "-".into()
        } else {
            report.display().to_string()
        });
        args.extend(inputs.iter().map(|p| p.display().to_string()));
        all.push_str(&run(&args));
        if !json_to_stdout {
            all.push_str(&heading("extract's --json file"));
            all.push_str(&std::fs::read_to_string(&report).expect("extract's --json file"));
        }
        let mut written: Vec<PathBuf> = std::fs::read_dir(&out)
            .expect("extract's output directory")
            .map(|e| e.expect("directory entry").path())
            .collect();
        written.sort();
        for f in written {
            // The heading holds the file's name, which is checked as well.
            all.push_str(&heading(&format!(
                "extract wrote {}",
                f.file_name().unwrap().to_string_lossy()
            )));
            let bytes = std::fs::read(&f).expect("an extracted object");
            if text_like(&bytes) {
                all.push_str(&String::from_utf8_lossy(&bytes));
                all.push('\n');
            }
        }
    }
    all
}

/// The most events fetched one by one from a view (`/api/event`); past it, evenly spread.
const MAX_EVENTS: usize = 4000;
/// The most chains whose ladder is fetched from a view.
const MAX_LADDERS: usize = 200;
/// How long a view may take to read its inputs.
const VIEW_READ: Duration = Duration::from_secs(60);

/// A view's HTTP API, asked over one kept-alive connection to 127.0.0.1 (every read and
/// write with a deadline).
struct Api {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl Api {
    fn connect(port: u16) -> std::io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(5),
        )?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(s)
    }

    fn exchange(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        if self.conn.is_none() {
            self.conn = Some(BufReader::new(Self::connect(self.port)?));
        }
        let r = self.conn.as_mut().unwrap();
        // One write (not write!'s pieces, which Nagle's algorithm would hold back).
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        );
        r.get_mut().write_all(req.as_bytes())?;
        let bad = |what: &str| std::io::Error::other(format!("{what} from GET {path}"));
        let mut line = String::new();
        r.read_line(&mut line)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut length = None;
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(bad("end of stream in the head"));
            }
            let h = line.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; length.ok_or_else(|| bad("no Content-Length"))?];
        r.read_exact(&mut body)?;
        Ok((status, body))
    }

    /// GET `path`: its status and body (once more on a fresh connection if the kept one
    /// failed).
    fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        match self.exchange(path) {
            Ok(r) => r,
            Err(_) => {
                self.conn = None;
                self.exchange(path)
                    .unwrap_or_else(|e| panic!("GET {path} on the view: {e}"))
            }
        }
    }

    /// GET `path`, which must answer 200 with JSON: the body's text and its value.
    fn json(&mut self, path: &str) -> (String, Value) {
        let (status, body) = self.get(path);
        let text = String::from_utf8(body).expect("the view's JSON is UTF-8");
        assert_eq!(status, 200, "GET {path}: {text}");
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"));
        (text, v)
    }
}

/// Every string in `v` (JSON escapes undone), a line each.
fn strings(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push_str(k);
            out.push('\n');
            strings(x, out)
        }),
        _ => {}
    }
}

/// The first tick of the view's live stream (`/events`, which never ends by itself).
fn first_tick(port: u16) -> String {
    let mut s = Api::connect(port).expect("connect to the view's /events");
    let req =
        format!("GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("ask for /events");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let end = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains("event: tick\ndata: ") || !got.ends_with(b"\n\n")
    {
        assert!(Instant::now() < end, "no tick on /events: {got:?}");
        match s.read(&mut buf) {
            Ok(0) => panic!("/events ended: {}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading /events: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Everything `msntap view` serves for `inputs` (redacted or not): it is started on a free
/// port of 127.0.0.1 (no token there), read until it has read its inputs, and asked for its
/// summary, report, transcripts, objects (and the kept pictures, when text-like: see
/// [`extract_outputs`]), every page of rows, every event by its sequence number (at most
/// [`MAX_EVENTS`]), every chain's ladder with nothing hidden, the first tick of its live
/// stream, and what it printed on stderr. The child is killed when this returns or panics.
fn view_outputs(inputs: &[PathBuf], no_redact: bool) -> String {
    let mut args = vec!["view".to_string()];
    if no_redact {
        args.push("--no-redact".into());
    }
    let mode = args.join(" ");
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    let (view, url) =
        web_support::msntap_view(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.strip_suffix('/'))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a loopback view's URL has no token: {url}"));
    let mut api = Api { port, conn: None };
    let mut all = String::new();
    // A JSON body as it came (what a browser gets), then its strings unescaped.
    let add = |path: &str, text: &str, v: &Value, all: &mut String| {
        all.push_str(&heading(&format!("{mode}: GET {path}")));
        all.push_str(text);
        all.push('\n');
        strings(v, all);
    };
    let end = Instant::now() + VIEW_READ;
    let summary = loop {
        let (text, v) = api.json("/api/summary");
        if v["done"] == true {
            add("/api/summary", &text, &v, &mut all);
            break v;
        }
        assert!(
            Instant::now() < end,
            "the view did not read {inputs:?} within {VIEW_READ:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(summary["redacted"], !no_redact, "{summary}");
    for path in ["/api/report", "/api/transcript"] {
        let (text, v) = api.json(path);
        add(path, &text, &v, &mut all);
    }
    let (text, objects) = api.json("/api/objects");
    add("/api/objects", &text, &objects, &mut all);
    for o in objects["objects"].as_array().expect("objects") {
        if o["image"] == true {
            let path = format!("/api/object?id={}", o["id"]);
            let (status, body) = api.get(&path);
            assert_eq!(status, 200, "{path}: {o}");
            if text_like(&body) {
                all.push_str(&heading(&format!("{mode}: GET {path}")));
                all.push_str(&String::from_utf8_lossy(&body));
            }
        }
    }
    let mut seqs = Vec::new();
    loop {
        let path = format!("/api/rows?offset={}&limit=2000", seqs.len());
        let (text, v) = api.json(&path);
        add(&path, &text, &v, &mut all);
        let rows = v["rows"].as_array().expect("rows");
        seqs.extend(rows.iter().map(|r| r[0].as_u64().expect("a row's seq")));
        if rows.is_empty() || seqs.len() >= v["total"].as_u64().expect("total") as usize {
            break;
        }
    }
    assert!(!seqs.is_empty(), "the view of {inputs:?} lists no events");
    let step = seqs.len().div_ceil(MAX_EVENTS);
    if step > 1 {
        println!("{mode}: {} events, every {step}th fetched", seqs.len());
    }
    for seq in seqs.iter().step_by(step) {
        let path = format!("/api/event?seq={seq}");
        let (text, v) = api.json(&path);
        add(&path, &text, &v, &mut all);
    }
    let chains = summary["chains"].as_array().expect("chains");
    for c in chains.iter().take(MAX_LADDERS) {
        let mut skip = 0;
        loop {
            let path = format!("/api/ladder?chain={}&hide=&limit=3000&skip={skip}", c["id"]);
            let (text, v) = api.json(&path);
            add(&path, &text, &v, &mut all);
            let steps = v["steps"].as_u64().expect("steps") as usize;
            if v["truncated"] == 0 || steps == 0 {
                break;
            }
            skip += steps;
        }
    }
    all.push_str(&heading(&format!("{mode}: GET /events (its first tick)")));
    all.push_str(&first_tick(port));
    all.push_str(&heading(&format!("{mode}: stderr")));
    all.push_str(&view.stderr.lock().unwrap());
    drop(view);
    all
}

/// The first piece of `secret` (at least [`PIECE`] characters, or all of it) found in
/// `text`.
fn leaked<'s>(secret: &'s str, text: &str) -> Option<&'s str> {
    let chars: Vec<(usize, char)> = secret.char_indices().collect();
    if chars.len() <= PIECE {
        return text.contains(secret).then_some(secret);
    }
    (0..=chars.len() - PIECE).find_map(|i| {
        let a = chars[i].0;
        let b = chars.get(i + PIECE).map_or(secret.len(), |c| c.0);
        text.contains(&secret[a..b]).then_some(&secret[a..b])
    })
}

/// The secrets that may have a piece in `text`: all that [`leaked`] finds there, perhaps a
/// few more. [`leaked`] searches `text` once for every piece of a secret, which for long
/// tickets and megabytes of output is slow; this makes one pass over `text`, looking its
/// [`PIECE`]-byte windows up (by a rolling hash) among the pieces of the ASCII secrets.
/// Shorter or non-ASCII secrets are always suspects.
fn suspects<'s>(secrets: &[&'s str], text: &str) -> Vec<&'s str> {
    const BASE: u64 = 0x0000_0100_0000_01b3;
    const BITS: u32 = 22;
    let hash = |w: &[u8]| {
        w.iter().fold(0u64, |h, &b| {
            h.wrapping_mul(BASE).wrapping_add(u64::from(b))
        })
    };
    let slot = |h: u64| (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - BITS)) as usize;
    let mut out = Vec::new();
    let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut seen = vec![0u64; 1 << (BITS - 6)];
    for (i, s) in secrets.iter().enumerate() {
        if !s.is_ascii() || s.len() <= PIECE {
            out.push(*s);
            continue;
        }
        for w in s.as_bytes().windows(PIECE) {
            let h = hash(w);
            let k = slot(h);
            seen[k >> 6] |= 1 << (k & 63);
            by_hash.entry(h).or_default().push(i);
        }
    }
    let t = text.as_bytes();
    if t.len() >= PIECE && !by_hash.is_empty() {
        let top = BASE.wrapping_pow(PIECE as u32 - 1);
        let mut hit = vec![false; secrets.len()];
        let mut h = hash(&t[..PIECE]);
        let mut i = 0;
        loop {
            let k = slot(h);
            if (seen[k >> 6] >> (k & 63)) & 1 == 1 {
                for &j in by_hash.get(&h).into_iter().flatten() {
                    hit[j] = true;
                }
            }
            if i + PIECE >= t.len() {
                break;
            }
            h = h
                .wrapping_sub(u64::from(t[i]).wrapping_mul(top))
                .wrapping_mul(BASE)
                .wrapping_add(u64::from(t[i + PIECE]));
            i += 1;
        }
        out.extend(
            secrets
                .iter()
                .zip(&hit)
                .filter(|(_, &x)| x)
                .map(|(s, _)| *s),
        );
    }
    out.sort_unstable();
    out
}

/// Every secret of `secrets` with a piece in `text`, and its first piece found there.
fn leaks_in<'s>(secrets: &[&'s str], text: &str) -> Vec<(&'s str, &'s str)> {
    suspects(secrets, text)
        .into_iter()
        .filter_map(|s| leaked(s, text).map(|piece| (s, piece)))
        .collect()
}

/// Checks one input family: `redacted` inputs must not show any secret, `clear` inputs
/// (the undamaged ones) must show every secret with --no-redact (the real captures' SOAP
/// secrets and gateway sessions included, now that msntap decodes the HTTP side). The
/// view's --no-redact output must on its own show every secret the commands show.
fn check(
    name: &str,
    secrets: &BTreeSet<String>,
    redacted: &[PathBuf],
    clear: &[PathBuf],
    dir: &Path,
) {
    assert!(!secrets.is_empty(), "{name}: no secrets found in the input");
    let shown_view = view_outputs(clear, true);
    let shown = cli_outputs(clear, true, dir) + &shown_view;
    // The view on its own shows every secret the commands show, so that its half of the
    // leak check can fail as well.
    let not_in_view: Vec<&String> = secrets
        .iter()
        .filter(|s| shown.contains(s.as_str()) && !shown_view.contains(s.as_str()))
        .collect();
    assert!(
        not_in_view.is_empty(),
        "{name}: secrets the commands show with --no-redact and the view does not: {not_in_view:?}"
    );
    let unseen: Vec<&String> = secrets
        .iter()
        .filter(|s| !shown.contains(s.as_str()))
        .collect();
    assert!(
        unseen.is_empty(),
        "{name}: secrets that do not appear even with --no-redact (the check would not see them): {unseen:?}"
    );
    let hidden = outputs(redacted, false, dir);
    let list: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let leaks: Vec<String> = leaks_in(&list, &hidden)
        .into_iter()
        .map(|(s, piece)| {
            let at = hidden.find(piece).unwrap_or(0);
            let from = hidden[..at].rfind('\n').map_or(0, |i| i + 1);
            let to = hidden[at..].find('\n').map_or(hidden.len(), |i| at + i);
            // At most 150 characters either side (JSON bodies are single long lines).
            let mut from = from.max(at.saturating_sub(150));
            while !hidden.is_char_boundary(from) {
                from -= 1;
            }
            let mut to = to.min(at + piece.len() + 150);
            while !hidden.is_char_boundary(to) {
                to += 1;
            }
            let under = hidden[..at].rfind(&format!("\n{HEADING}")).map_or("", |i| {
                let h = &hidden[i + 1..];
                &h[..h.find('\n').unwrap_or(h.len())]
            });
            format!(
                "{s:?} (piece {piece:?}) under {under:?} in: {}",
                &hidden[from..to]
            )
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "{name}: secrets leaked without --no-redact:\n{}",
        leaks.join("\n")
    );
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == ext));
    v.sort();
    v
}

/// The drop/segment grid of the issue's example, for its log; a smaller one for the rest.
fn grid(log: &Path) -> Vec<(Option<u32>, u32)> {
    let full = log
        .file_name()
        .is_some_and(|n| n == "msnp8.log" || n == "sb_chat_msnp8.log");
    let (drops, segments): (&[Option<u32>], &[u32]) = if full {
        (
            &[None, Some(2), Some(3), Some(4), Some(5), Some(7)],
            &[7, 13, 50, 200, 1460],
        )
    } else {
        (&[None, Some(2), Some(3), Some(5)], &[13, 50, 1460])
    };
    drops
        .iter()
        .flat_map(|&d| segments.iter().map(move |&s| (d, s)))
        .collect()
}

/// Sweeps one log: synthesizes its grid of captures into `dir` and checks the family.
/// Returns how many drop/segment combinations it swept.
fn sweep_log(log: &Path, dir: &Path) -> usize {
    let text = std::fs::read_to_string(log).expect("log");
    let secrets = secrets_in(&text);
    if secrets.is_empty() {
        // A log without a login (none here so far) has nothing to sweep.
        println!("SKIP {}: no secrets in it", log.display());
        return 0;
    }
    let stem = log.file_stem().unwrap().to_string_lossy().into_owned();
    let dir = dir.join(&stem);
    std::fs::create_dir_all(&dir).expect("a log's scratch dir");
    let mut combos = 0;
    let mut damaged = Vec::new();
    let mut whole = vec![log.to_path_buf()];
    for (drop, segment) in grid(log) {
        let out = dir.join(format!("{stem}-d{}-s{segment}.pcap", drop.unwrap_or(0)));
        let mut args = vec![
            "synth".to_string(),
            log.display().to_string(),
            "-o".into(),
            out.display().to_string(),
            "--segment".into(),
            segment.to_string(),
        ];
        if let Some(d) = drop {
            args.extend(["--drop".to_string(), d.to_string()]);
        }
        run(&args);
        combos += 1;
        if drop.is_none() {
            whole.push(out.clone());
        }
        damaged.push(out);
    }
    damaged.push(log.to_path_buf());
    check(&stem, &secrets, &damaged, &whole, &dir);
    combos
}

#[test]
fn no_secret_of_any_log_leaks_under_any_drop_and_segment() {
    let dir = scratch("secret-sweep-logs");
    let logs = files(&root().join("captures/logs"), "log");
    assert!(logs.len() >= 20, "the logs of captures/logs");
    // The logs are swept by as many threads as there are cores (up to 4), each running
    // its msntap processes one after another, each log in a directory of its own.
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    let combos: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut combos = 0;
                    while let Some(log) = logs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        combos += sweep_log(log, &dir);
                    }
                    combos
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .sum()
    });
    assert!(combos >= 200, "{combos} drop/segment combinations swept");
}

#[test]
fn no_secret_of_a_real_capture_leaks() {
    let dir = scratch("secret-sweep-real");
    let mut caps = files(&root().join("captures"), "pcap");
    caps.extend(files(&root().join("captures/http"), "pcap"));
    assert!(caps.len() >= 6, "the real captures");
    for cap in &caps {
        let bytes = std::fs::read(cap).expect("capture");
        let secrets = secrets_in(&String::from_utf8_lossy(&bytes));
        let name = cap.file_name().unwrap().to_string_lossy().into_owned();
        if secrets.is_empty() {
            println!("SKIP {name}: no secrets found in it");
            continue;
        }
        let one = std::slice::from_ref(cap);
        check(&name, &secrets, one, one, &dir);
    }
}

#[test]
fn the_secret_finder_finds_what_the_issue_names() {
    let log = "C: USR 7 TWN S t=abc*def!ghi$$&p=jkl*mno$$\r\n\
               S: USR 6 TWN S lc=1033,id=507,tw=40\r\n\
               C: USR 7 MD5 S 7b0d349dbe78c447549c31e22e2702c5\r\n\
               S: USR 3 MD5 S 1013928519.693957190\r\n\
               S: XFR 10 SB 10.0.0.8:1864 CKI 17267.1184000385.4411\r\n\
               C: USR 1 alice@example.com 17262788.1234567\r\n\
               C: ANS 1 bob@example.com 9033.1184100182.2207 11752125\r\n\
               S: USR 3 SSO S MBI_KEY_OLD Zm9vYmFy\r\n\
               C: USR 8 SSO S t=EwCoAq15AAAU HAAAAAEAAAADZgAA\r\n\
               MSPAuth: 4a1b3bf8b2be5377f75cY6\r\n\
               <wst:BinarySecret>qw8DrvdAtYoKIpvo</wst:BinarySecret>\r\n\
               <wsse:BinarySecurityToken Id=\"Compact1\">t=00e305887c&amp;p=abcdef12</wsse:BinarySecurityToken>\r\n";
    let want: BTreeSet<String> = [
        "t=abc*def!ghi$$&p=jkl*mno$$",
        "7b0d349dbe78c447549c31e22e2702c5",
        "17267.1184000385.4411",
        "17262788.1234567",
        "9033.1184100182.2207",
        "t=EwCoAq15AAAU",
        "HAAAAAEAAAADZgAA",
        "4a1b3bf8b2be5377f75cY6",
        "qw8DrvdAtYoKIpvo",
        "t=00e305887c",
        "p=abcdef12",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(secrets_in(log), want);
    assert_eq!(
        leaked("17267.1184000385.4411", "x 1184000385.4 y"),
        Some("1184000385.4")
    );
    assert_eq!(leaked("17267.1184000385.4411", "x 1184000385 y"), None);
    // The one-pass prefilter finds what the piece by piece search finds, at any place.
    let all = [
        "17267.1184000385.4411",
        "t=abc*def!ghi$$&p=jkl*mno$$",
        "short",
        "n\u{e9}e-long-non-ascii-secret",
    ];
    for text in [
        "x 1184000385.4 y",
        "1184000385.4",
        "ghi$$&p=jkl*m",
        "x 1184000385 y ghi$$&p=jkl*",
        "",
    ] {
        let slow: Vec<_> = all
            .iter()
            .filter_map(|s| leaked(s, text).map(|p| (*s, p)))
            .collect();
        let mut fast = leaks_in(&all, text);
        fast.sort_by_key(|&(s, _)| all.iter().position(|x| *x == s));
        assert_eq!(fast, slow, "{text:?}");
    }
    // The ticket is no suspect there; the short and the non-ASCII secret always are.
    assert_eq!(
        suspects(&all, "x 1184000385.4 y"),
        [
            "17267.1184000385.4411",
            "n\u{e9}e-long-non-ascii-secret",
            "short"
        ]
    );
}

/// An over-long USR line (a ticket past the longest line the framer takes) is skipped as
/// a desync: its preview must not carry the ticket, in a log or a capture of it.
#[test]
fn an_over_long_usr_line_does_not_leak_its_ticket() {
    let dir = scratch("secret-sweep-long");
    let ticket = format!("t=LoNgTiCkEt*{}$$&p=PaSsPoRt*Xy$$", "Qz9".repeat(22_000));
    let log = format!(
        "C: VER 1 MSNP8 CVR0\nS: VER 1 MSNP8\nC: USR 2 TWN I a@b.c\n\
         S: USR 2 TWN S lc=1033,id=507\nC: USR 3 TWN S {ticket}\nS: USR 3 OK a@b.c A 1 0\n\
         S: XFR 4 SB 10.0.0.9:1863 CKI 4242.1184000154.9911 0 a.b:1863\nC: OUT\n"
    );
    let path = dir.join("long.log");
    std::fs::write(&path, &log).expect("write log");
    let secrets = secrets_in(&log);
    assert!(secrets.contains(&ticket) && secrets.contains("4242.1184000154.9911"));
    let pcap = dir.join("long.pcap");
    run(&[
        "synth",
        &path.display().to_string(),
        "-o",
        &pcap.display().to_string(),
    ]
    .map(String::from));
    let inputs = vec![path.clone(), pcap];
    let hidden = outputs(&inputs, false, &dir);
    let list: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let leaks: Vec<String> = leaks_in(&list, &hidden)
        .into_iter()
        .map(|(s, piece)| format!("{s:.40} leaked: {piece:?}"))
        .collect();
    assert!(leaks.is_empty(), "{leaks:?}");
    // The ticket's line is too long to be a command, so --no-redact shows at most the
    // preview's start: the check is that a piece of it does show there.
    let shown = outputs(&inputs, true, &dir);
    assert!(
        leaked(&ticket, &shown).is_some(),
        "the preview shows nothing of the ticket even with --no-redact"
    );
}
