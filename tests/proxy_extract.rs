//! `msntap proxy --extract DIR`: the switchboard connection of the msnp11-sdk capture that
//! carries bob's display picture is replayed through the proxy, its reassembled bytes in the
//! capture's order (the test plays both the client and a scripted server on 127.0.0.1), and
//! the picture lands in DIR with its SHA1D verified. Unix only (SIGINT through `kill`);
//! every wait is bounded.
#![cfg(unix)]

mod proxy_support;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use msntap::capture::{read_path, track, ReadOptions, StreamEvent};
use msntap::event::Dir;
use msntap::payload::p2p::ChunkKind;
use msntap::Tables;
use proxy_support::binary::spawn_proxy;
use proxy_support::Scratch;
use sha1::{Digest, Sha1};

/// The bytes, in capture order, of bob's switchboard connection (the picture's sender).
fn picture_connection() -> Option<Vec<(Dir, Vec<u8>)>> {
    let cap =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/msnp11_msnp11-sdk_escargot.pcap");
    if !cap.exists() {
        eprintln!("SKIP: {} absent", cap.display());
        return None;
    }
    let tables = Arc::new(Tables::builtin().expect("tables"));
    let opts = ReadOptions {
        first_conn: 1,
        ..Default::default()
    };
    // Bob's connection is the one where the client sends P2P data chunks.
    let mut sender = None;
    read_path(&cap, tables.clone(), &opts, &mut |e| {
        let p2p = e
            .command()
            .and_then(|c| c.payload.as_ref()?.content()?.p2p.as_ref());
        if e.dir == Some(Dir::C2s) && p2p.is_some_and(|p| p.kind == Some(ChunkKind::Data)) {
            sender.get_or_insert(e.conn);
        }
        Ok(())
    })
    .expect("capture reads");
    let conn = sender?;
    // The same connection's bytes as the tracker delivers them (its flow ids are the
    // connection numbers of the read above).
    let mut chunks = Vec::new();
    let f = std::fs::File::open(&cap).expect("open");
    track("capture", f, tables, &opts, &mut |ev| {
        if let StreamEvent::Data {
            flow, dir, bytes, ..
        } = ev
        {
            if flow == conn {
                chunks.push((dir, bytes.to_vec()));
            }
        }
    })
    .expect("capture tracks");
    Some(chunks)
}

#[test]
fn proxy_extracts_the_display_picture_live() {
    let Some(script) = picture_connection() else {
        return;
    };
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = server.local_addr().expect("addr").to_string();
    // The proxy makes the directory; the guard, declared first, outlives the proxy.
    let dir = Scratch::path("proxy-extract");
    let proxy = spawn_proxy([
        OsStr::new("--upstream"),
        OsStr::new(&up),
        OsStr::new("--quiet"),
        OsStr::new("--extract"),
        dir.as_os_str(),
    ]);
    let addr = proxy.addr.clone();
    let mut c = TcpStream::connect(&addr).expect("connect to the proxy");
    let (mut s, _) = server.accept().expect("the proxy connects upstream");
    for sock in [&c, &s] {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
    }
    // Each piece is read on the far side before the next one is sent, so the proxy sees
    // the session in its real causal order.
    for (d, bytes) in &script {
        let (from, to) = match d {
            Dir::C2s => (&mut c, &mut s),
            Dir::S2c => (&mut s, &mut c),
        };
        from.write_all(bytes).expect("write");
        let mut got = vec![0u8; bytes.len()];
        to.read_exact(&mut got).expect("forwarded");
        assert_eq!(&got, bytes, "forwarded unchanged");
    }
    c.shutdown(Shutdown::Write).expect("half-close");
    s.shutdown(Shutdown::Write).expect("half-close");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).expect("closed");
    let (status, log) = proxy.interrupt();
    assert!(status.success(), "{status:?}: {log}");
    assert!(
        log.contains("extracted") && log.contains("SHA1D match"),
        "{log}"
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
}
