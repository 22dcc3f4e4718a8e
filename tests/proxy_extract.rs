//! `msntap proxy --extract DIR`: the switchboard connection of the msnp11-sdk capture that
//! carries bob's display picture is replayed through the proxy (a scripted server on
//! 127.0.0.1 plays the server's bytes, the test plays the client's), and the picture lands
//! in DIR with its SHA1D verified. Unix only (SIGINT through `kill`); every wait is bounded.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use msntap::capture::{read_path, ReadOptions};
use msntap::event::{Dir, Event};
use msntap::Tables;
use sha1::{Digest, Sha1};

/// The two byte streams of the capture's connection on which bob sends P2P data.
fn picture_connection() -> Option<(Vec<u8>, Vec<u8>)> {
    let cap =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/msnp11_msnp11-sdk_escargot.pcap");
    if !cap.exists() {
        eprintln!("SKIP: {} absent", cap.display());
        return None;
    }
    let tables = Arc::new(Tables::builtin().expect("tables"));
    let mut events: Vec<Event> = Vec::new();
    read_path(
        &cap,
        tables,
        &ReadOptions {
            first_conn: 1,
            ..Default::default()
        },
        &mut |e| {
            events.push(e);
            Ok(())
        },
    )
    .expect("capture reads");
    let sender_conn = events.iter().find_map(|e| {
        let c = e.command()?;
        let ct = c
            .payload
            .as_ref()?
            .decoded
            .as_ref()?
            .get("content_type")?
            .as_str()?;
        (e.dir == Some(Dir::C2s)
            && ct == "application/x-msnmsgrp2p"
            && c.payload_bytes().len() > 200)
            .then_some(e.conn)
    })?;
    let mut c2s = Vec::new();
    let mut s2c = Vec::new();
    for e in events.iter().filter(|e| e.conn == sender_conn) {
        if let Some(c) = e.command() {
            match e.dir {
                Some(Dir::C2s) => c2s.extend_from_slice(c.to_wire()),
                _ => s2c.extend_from_slice(c.to_wire()),
            }
        }
    }
    Some((c2s, s2c))
}

#[test]
fn proxy_extracts_the_display_picture_live() {
    let Some((c2s, s2c)) = picture_connection() else {
        return;
    };
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = server.local_addr().expect("addr").to_string();
    let expect_c2s = c2s.clone();
    let srv = std::thread::spawn(move || {
        let (mut s, _) = server.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(&s2c).expect("write");
        let mut got = Vec::new();
        s.read_to_end(&mut got)
            .expect("read until the client is done");
        assert_eq!(
            got, expect_c2s,
            "the server gets the client's bytes unchanged"
        );
    });
    let dir = std::env::temp_dir().join(format!("msntap-proxy-extract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_msntap"))
        .args([
            "proxy",
            "--upstream",
            &up,
            "--listen",
            "127.0.0.1:0",
            "--quiet",
            "--extract",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
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
    let mut c = TcpStream::connect(&addr).expect("connect to the proxy");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    c.write_all(&c2s).expect("write");
    c.shutdown(Shutdown::Write).expect("half-close");
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("read the server's bytes");
    srv.join().expect("server thread");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "msntap did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    err.read_to_string(&mut rest).expect("stderr");
    assert!(status.success(), "{status:?}: {rest}");
    assert!(
        rest.contains("extracted") && rest.contains("SHA1D match"),
        "{rest}"
    );
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir made")
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let data = std::fs::read(files[0].path()).expect("read object");
    assert_eq!(data.len(), 70, "the MSNObject says Size=70");
    // SHA1D from the client library's own log (captures/msnp11_msnp11-sdk_escargot.client.log).
    let sha = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(&data));
    assert_eq!(sha, "mZPtHSeB/a/YdgOOa+ChFi03e+E=");
    let _ = std::fs::remove_dir_all(&dir);
}
