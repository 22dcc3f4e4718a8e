//! HTTP-side benchmark (run with `cargo bench --bench http`): `HttpStream::feed` and the
//! gateway decoder over about 64 MiB of gateway.dll exchanges (1 KiB MSG bodies each way,
//! Content-Length framed, then chunked), fed in 1460-byte segments as from a capture.
//! It reports MB/s and ns per exchange; it measures only, asserts nothing, opens no socket.
//! MSNTAP_BENCH_MB sets the size of each input (default 64).

use std::hint::black_box;
use std::time::Instant;

use msntap::http::gateway::{Gateway, GatewayItem};
use msntap::http::stream::HttpStream;
use msntap::{Dir, Ts};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn msg_body() -> Vec<u8> {
    let mut p = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n".to_vec();
    p.extend((0..900).map(|i| b"the quick brown fox jumps over the lazy dog "[i % 44]));
    let mut f = format!("MSG 5 N {}\r\n", p.len()).into_bytes();
    f.extend_from_slice(&p);
    f
}

/// One open exchange, then `n` SessionID exchanges; returns (requests, responses) streams.
fn conversation(size: usize, chunked: bool) -> (Vec<u8>, Vec<u8>, usize) {
    let body = msg_body();
    let mut c = Vec::with_capacity(size);
    let mut s = Vec::with_capacity(size);
    let mut n = 0;
    let frame = |chunked: bool| -> Vec<u8> {
        if chunked {
            let mut v = b"Transfer-Encoding: chunked\r\n\r\n".to_vec();
            v.extend(format!("{:x}\r\n", body.len()).bytes());
            v.extend_from_slice(&body);
            v.extend_from_slice(b"\r\n0\r\n\r\n");
            v
        } else {
            let mut v = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
            v.extend_from_slice(&body);
            v
        }
    };
    while c.len() < size {
        let q = if n == 0 {
            "Action=open&Server=SB&IP=10.0.0.1:1864".to_string()
        } else {
            "SessionID=42.1".to_string()
        };
        c.extend(format!("POST http://10.0.0.1/gateway/gateway.dll?{q} HTTP/1.1\r\nUser-Agent: MSMSGS\r\nContent-Type: application/x-msn-messenger\r\n").bytes());
        c.extend(frame(chunked));
        s.extend(b"HTTP/1.1 200 OK\r\nX-MSN-Messenger: SessionID=42.1; GW-IP=10.0.0.1\r\nContent-Type: application/x-msn-messenger\r\n");
        s.extend(frame(chunked));
        n += 1;
    }
    (c, s, n)
}

fn run(name: &str, c: &[u8], s: &[u8], n: usize) {
    let t = Instant::now();
    let mut st = HttpStream::default();
    let mut gw = Gateway::default();
    let mut items = Vec::new();
    let mut out: Vec<GatewayItem> = Vec::new();
    let mut bytes = 0usize;
    // Interleave the two directions exchange by exchange, a segment at a time.
    let (mut ci, mut si) = (0, 0);
    while ci < c.len() || si < s.len() {
        for (dir, buf, at) in [(Dir::C2s, c, &mut ci), (Dir::S2c, s, &mut si)] {
            let end = (*at + 1460).min(buf.len());
            if *at < end {
                st.feed(dir, &buf[*at..end], Ts(0), &mut items);
                bytes += end - *at;
                *at = end;
            }
        }
        for i in items.drain(..) {
            gw.on_item(1, &i, &mut out);
        }
        black_box(out.len());
        out.clear();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{name}: {:.1} MB in {:.3} s = {:.0} MB/s, {:.0} ns per exchange",
        bytes as f64 / 1e6,
        secs,
        bytes as f64 / 1e6 / secs,
        secs * 1e9 / n as f64
    );
}

fn main() {
    let mb: usize = std::env::var("MSNTAP_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    for chunked in [false, true] {
        let (c, s, n) = conversation(mb << 20, chunked);
        run(
            if chunked {
                "gateway, chunked bodies"
            } else {
                "gateway, Content-Length bodies"
            },
            &c,
            &s,
            n,
        );
    }
}
