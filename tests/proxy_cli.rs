//! `msntap proxy` as a user runs it: the binary relays a client to a scripted server on
//! 127.0.0.1, and Ctrl-C (SIGINT) ends it with status 0, the open connection reported closed
//! and the JSON Lines file complete. Unix only (SIGINT through `kill`); every wait is bounded.
#![cfg(unix)]

mod proxy_support;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use proxy_support::binary::spawn_proxy;
use proxy_support::json_scratch;

fn read_line(s: &mut TcpStream) -> String {
    let mut v = Vec::new();
    let mut b = [0u8; 1];
    while !v.ends_with(b"\r\n") {
        let n = s.read(&mut b).expect("read within the timeout");
        assert!(n > 0, "closed early; got {:?}", String::from_utf8_lossy(&v));
        v.push(b[0]);
    }
    String::from_utf8_lossy(&v[..v.len() - 2]).into_owned()
}

#[test]
fn ctrl_c_closes_connections_flushes_json_and_exits_zero() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = server.local_addr().expect("addr").to_string();
    let srv = std::thread::spawn(move || {
        let (mut s, _) = server.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        assert_eq!(read_line(&mut s), "VER 1 MSNP8 CVR0");
        s.write_all(b"VER 1 MSNP8\r\n").expect("write");
        // Stay until the proxy closes the connection.
        let mut b = [0u8; 64];
        let n = s
            .read(&mut b)
            .expect("the proxy closes the upstream connection");
        assert_eq!(n, 0);
    });
    let (_dir, json) = json_scratch("proxy-cli");
    let proxy = spawn_proxy([
        OsStr::new("--upstream"),
        OsStr::new(&up),
        OsStr::new("--quiet"),
        OsStr::new("--json"),
        json.as_os_str(),
    ]);
    let addr = proxy.addr.clone();
    let mut c = TcpStream::connect(&addr).expect("connect to the proxy");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    c.write_all(b"VER 1 MSNP8 CVR0\r\n").expect("write");
    assert_eq!(read_line(&mut c), "VER 1 MSNP8");

    let (status, _) = proxy.interrupt();
    assert!(status.success(), "exit status {status:?}");
    // The client's connection was closed by the proxy.
    let mut b = [0u8; 16];
    assert_eq!(c.read(&mut b).expect("clean close"), 0);
    srv.join().expect("server thread");

    let text = std::fs::read_to_string(&json).expect("json written");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        ["connect", "connect", "command", "command", "close"],
        "{text}"
    );
    let close = &events[4];
    assert_eq!(close["by"], "proxy");
    assert_eq!(close["reason"], "proxy shutting down");
    assert_eq!(close["bytes_c2s"], 18);
    assert_eq!(close["bytes_s2c"], 13);
}
