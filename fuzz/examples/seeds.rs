//! Writes the seed corpora of the fuzz targets from the repository's captures/ (run from
//! fuzz/: `cargo run --example seeds`). It reads only the committed captures and logs and
//! writes only under fuzz/corpus/ (ignored by git); corpora are rebuilt, never committed.

use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use msntap::capture::{self, ReadOptions, StreamEvent};
use msntap::logfile;
use msntap::Dir;
use msntap_fuzz::{encode, tables};

/// Commands whose last argument is a payload length in the captures.
const PAYLOAD_CMDS: &[&str] = &[
    "MSG", "NOT", "UBX", "UUX", "GCF", "ADL", "RML", "FQY", "SDG", "NFY", "PUT", "DEL", "UUN",
    "UBN", "IPG", "QRY", "UBM", "UUM", "ADG",
];

struct Seeds {
    root: PathBuf,
    n: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).expect("corpus directory");
        self.n += 1;
        fs::write(dir.join(format!("seed-{:05}", self.n)), bytes).expect("seed file");
    }
}

fn files(dir: &Path, ext: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut v: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    v.sort();
    for p in v {
        if p.is_dir() {
            files(&p, ext, out);
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ext.contains(&e))
        {
            out.push(p);
        }
    }
}

/// The payload bodies of one direction's stream, found by a plain scan of its lines.
fn bodies(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let Some(lf) = stream[at..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let line = String::from_utf8_lossy(&stream[at..at + lf]);
        let line = line.trim_end();
        at += lf + 1;
        let mut toks = line.split(' ');
        let cmd = toks.next().unwrap_or("");
        if !PAYLOAD_CMDS.contains(&cmd) {
            continue;
        }
        let Some(n) = line
            .rsplit(' ')
            .next()
            .and_then(|t| t.parse::<usize>().ok())
        else {
            continue;
        };
        if n > 0 && at + n <= stream.len() {
            out.push(&stream[at..at + n]);
            at += n;
        }
    }
    out
}

fn payload_seeds(s: &mut Seeds, body: &[u8]) {
    let mut with = |sel: u8, b: &[u8]| {
        let mut v = vec![sel];
        v.extend_from_slice(b);
        s.put("payload", &v);
    };
    let text = String::from_utf8_lossy(body);
    with(0x60, body); // MIME, version 11
    with(0x68, body); // sniffed
    if text.starts_with("Routing:") {
        with(0xf1, body);
    }
    if text.trim_start().starts_with('<') {
        with(0x02, body);
    }
    if let Some(i) = text.find("<msnobj") {
        let end = text[i..].find("/>").map_or(text.len(), |e| i + e + 2);
        with(0x07, text[i..end].as_bytes());
    }
    // A P2P body follows the MIME headers of an application/x-msnmsgrp2p message.
    if let Some(h) = body.windows(4).position(|w| w == b"\r\n\r\n") {
        let headers = String::from_utf8_lossy(&body[..h]);
        if headers.contains("x-msnmsgrp2p") {
            let p2p = &body[h + 4..];
            with(0x03, p2p);
            with(0xa3, p2p);
            if let Some(k) = p2p
                .windows(7)
                .position(|w| w == b"MSNSLP/" || w == b"INVITE ")
            {
                let from = p2p[..k]
                    .iter()
                    .rposition(|&b| b == 0)
                    .map_or(48.min(k), |z| z + 1);
                with(0x05, &p2p[from..]);
            }
        }
    }
}

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let captures = here.join("../captures");
    let mut s = Seeds {
        root: here.join("corpus"),
        n: 0,
    };
    let tables = tables();

    // Session logs: the session and forward targets get their byte streams, the source
    // target the log itself.
    let mut logs = Vec::new();
    files(&captures, &["log"], &mut logs);
    for p in &logs {
        let text = fs::read_to_string(p).expect("log");
        s.put("source", text.as_bytes());
        for conn in logfile::parse(&text, &tables, false) {
            let recs: Vec<(Dir, &[u8])> =
                conn.chunks.iter().map(|c| (c.dir, &c.bytes[..])).collect();
            if recs.is_empty() {
                continue;
            }
            let mut v = vec![0, 0];
            v.extend(encode(&recs));
            s.put("session", &v);
            let s2c: Vec<(Dir, &[u8])> = recs.iter().copied().filter(|r| r.0 == Dir::S2c).collect();
            let mut f = vec![1];
            f.extend(encode(&s2c));
            s.put("forward", &f);
            let mut stream = Vec::new();
            for (_, b) in &recs {
                stream.extend_from_slice(b);
            }
            for b in bodies(&stream) {
                payload_seeds(&mut s, b);
            }
        }
    }

    // Captures: the source target gets the files, the others the TCP streams in them.
    let mut caps = Vec::new();
    files(&captures, &["pcap", "pcapng"], &mut caps);
    for (i, p) in caps.iter().enumerate() {
        let bytes = fs::read(p).expect("capture");
        s.put("source", &bytes);
        if i == 0 {
            // One compressed copy, so that the gzip input path starts from a real stream.
            use std::io::Write;
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&bytes).expect("compress");
            s.put("source", &z.finish().expect("compress"));
        }
        let mut flows: BTreeMap<u64, Vec<(Dir, Vec<u8>)>> = BTreeMap::new();
        let name = p.display().to_string();
        let _ = capture::track(
            &name,
            Cursor::new(&bytes),
            tables.clone(),
            &ReadOptions::default(),
            &mut |ev| {
                if let StreamEvent::Data {
                    flow, dir, bytes, ..
                } = ev
                {
                    flows.entry(flow).or_default().push((dir, bytes.to_vec()));
                }
            },
        );
        for recs in flows.values() {
            let recs: Vec<(Dir, &[u8])> = recs.iter().map(|(d, b)| (*d, &b[..])).collect();
            let enc = encode(&recs);
            let first = recs.first().map_or(&b""[..], |r| r.1);
            if first.starts_with(b"GET ")
                || first.starts_with(b"POST ")
                || first.starts_with(b"CONNECT ")
                || first.starts_with(b"HTTP/")
            {
                let mut v = vec![0];
                v.extend_from_slice(&enc);
                s.put("http_stream", &v);
                continue;
            }
            let mut v = vec![0, 0];
            v.extend_from_slice(&enc);
            s.put("session", &v);
            for dir in [Dir::C2s, Dir::S2c] {
                let mut stream = Vec::new();
                for (d, b) in &recs {
                    if *d == dir {
                        stream.extend_from_slice(b);
                    }
                }
                for b in bodies(&stream) {
                    payload_seeds(&mut s, b);
                }
                if dir == Dir::S2c {
                    let mut f = vec![1];
                    f.extend(encode(&[(dir, &stream[..])]));
                    s.put("forward", &f);
                }
            }
        }
    }

    // JSON Lines: a few lines of each expected file per seed.
    let mut jsonl = Vec::new();
    files(&captures, &["jsonl"], &mut jsonl);
    for p in &jsonl {
        let text = fs::read_to_string(p).expect("jsonl");
        let lines: Vec<&str> = text.lines().collect();
        for group in lines.chunks(8) {
            let mut v = group.join("\n");
            v.push('\n');
            s.put("jsonl", v.as_bytes());
        }
        s.put("source", lines[..lines.len().min(20)].join("\n").as_bytes());
    }

    // A few HTTP exchanges of the kinds the captures hold, should a capture have none.
    for h in [
        &b"POST /RST.srf HTTP/1.1\r\nHost: login.live.com\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET /login2.srf HTTP/1.1\r\nAuthorization: Passport1.4 OrgVerb=GET,sign-in=a%40b.c,pwd=x\r\n\r\n",
    ] {
        let dir = if h.starts_with(b"HTTP/") { Dir::S2c } else { Dir::C2s };
        let mut v = vec![0];
        v.extend(encode(&[(dir, h)]));
        s.put("http_stream", &v);
    }
    println!("{} seed files under {}", s.n, s.root.display());
}
