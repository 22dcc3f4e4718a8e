//! `--pcap` recording: a session proxied live (login, an `XFR SB` redirect, a switchboard
//! with a message) is read back from the pcapng file with the capture reader, and the
//! commands read back equal the live ones, connection by connection. Loopback only.

mod proxy_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use msntap::capture::{read_events, FlowOptions, ReadOptions};
use msntap::proxy::Config;
use msntap::{Event, Tables};
use proxy_support::*;
use tokio::io::AsyncWriteExt;

/// One command: direction, line, payload length.
type Cmd = (&'static str, String, Option<u64>);

/// Per connection, the commands in order as (direction, line, payload length); sorted so
/// that connection numbering does not matter.
fn commands(evs: &[Event<'static>]) -> Vec<Vec<Cmd>> {
    let mut by: std::collections::BTreeMap<u64, Vec<Cmd>> = Default::default();
    for e in evs {
        if let Some(c) = e.command() {
            by.entry(e.conn).or_default().push((
                e.dir.expect("command has a direction").as_str(),
                c.line.to_string(),
                c.payload.as_ref().map(|p| p.length),
            ));
        }
    }
    let mut v: Vec<_> = by.into_values().collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_sessions_read_back_as_the_live_events() {
    // Outside the timeout, so that a test that runs out of time keeps its recording.
    let dir = Scratch::dir("proxy-pcap");
    tokio::time::timeout(Duration::from_secs(60), scenario(&dir.join("proxy.pcapng")))
        .await
        .expect("test finishes in time");
}

async fn scenario(path: &Path) {
    let (ns_l, ns) = server().await;
    let (sb_l, sb) = server().await;
    let proxy = start_with(
        Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            upstream: Some(ns.clone()),
            pcap: Some(path.to_path_buf()),
            ..Config::default()
        },
        |_| true,
    )
    .await;
    let sb2 = sb.clone();
    let servers = tokio::spawn(async move {
        let mut n = accept(&ns_l).await;
        assert_eq!(n.line().await, "VER 1 MSNP8 CVR0");
        n.send_line("VER 1 MSNP8").await;
        assert_eq!(n.line().await, "XFR 2 SB");
        n.send_line(&format!("XFR 2 SB {sb2} CKI 17262740.1050826919.32308"))
            .await;
        let mut s = accept(&sb_l).await;
        assert_eq!(
            s.line().await,
            "USR 1 alice@example.com 17262740.1050826919.32308"
        );
        s.send_line("USR 1 OK alice@example.com Alice").await;
        let body = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Arial; EF=; CO=0; CS=0; PF=22\r\n\r\nhello through the proxy";
        s.send(format!("MSG bob@example.com Bob {}\r\n{body}", body.len()).as_bytes())
            .await;
        assert_eq!(s.line().await, "OUT");
        s.s.shutdown().await.expect("close");
        s.eof().await;
        assert_eq!(n.line().await, "OUT");
        n.s.shutdown().await.expect("close");
        n.eof().await;
    });
    let mut c = connect(&proxy.addr.to_string()).await;
    c.send_line("VER 1 MSNP8 CVR0").await;
    c.line().await;
    c.send_line("XFR 2 SB").await;
    let x = c.line().await;
    let via = x.split(' ').nth(3).expect("address").to_string();
    let mut s = connect(&via).await;
    s.send_line("USR 1 alice@example.com 17262740.1050826919.32308")
        .await;
    s.line().await;
    let m = s.line().await;
    let len: usize = m
        .rsplit(' ')
        .next()
        .and_then(|l| l.parse().ok())
        .expect("length");
    s.bytes(len).await;
    s.send_line("OUT").await;
    s.eof().await;
    drop(s);
    c.send_line("OUT").await;
    c.eof().await;
    drop(c);
    servers.await.expect("servers");
    let live = proxy.stop().await;

    let tables = Arc::new(Tables::builtin().expect("tables"));
    let port = |a: &str| {
        a.rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .expect("port")
    };
    let opts = ReadOptions {
        flows: FlowOptions {
            ports: vec![port(&ns), port(&sb)],
            ..FlowOptions::default()
        },
        first_conn: 1,
    };
    let read = read_events(path, tables, &opts).expect("the recording reads back");

    let (l, r) = (commands(&live), commands(&read));
    assert_eq!(l.len(), 2, "two connections live: {l:?}");
    assert_eq!(
        r, l,
        "commands read back from the recording equal the live ones"
    );
    // The recording holds what the server sent: the original switchboard address.
    assert!(r
        .iter()
        .flatten()
        .any(|(_, line, _)| *line == format!("XFR 2 SB {sb} CKI 17262740.1050826919.32308")));
}
