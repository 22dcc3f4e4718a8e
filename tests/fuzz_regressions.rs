//! What the fuzz targets (fuzz/, docs/fuzzing.md) found, kept as ordinary tests: each
//! feeds the input that failed (or its minimal form) to the same code and checks what
//! the target checked. A new finding gets a test here before its fix.

use bytes::Bytes;
use msntap::event::{EventKind, Service};
use msntap::protocol::{Dialect, SessionHint};
use msntap::proxy::forward::{Budget, Ctx, Direction, Entry, Router};
use msntap::wire::Limits;
use msntap::{Dir, Tables, Ts};

fn tables() -> &'static Tables {
    static T: std::sync::OnceLock<Tables> = std::sync::OnceLock::new();
    T.get_or_init(|| Tables::builtin().expect("tables"))
}

/// Routes every redirect to one loopback address.
struct To(&'static str);

impl Router for To {
    fn route(&mut self, _t: Service, _a: &str, _v: Option<u8>) -> Result<String, String> {
        Ok(self.0.to_string())
    }
}

/// Pushes `stream` (server to client) through the forwarding path in one read and an end;
/// returns the bytes forwarded and the redirect events.
fn forward(stream: &[u8]) -> (Vec<u8>, Vec<msntap::event::Redirect<'static>>) {
    let tables = tables();
    let mut dialect = Dialect::new(SessionHint::default());
    let mut router = To("127.0.0.1:40000");
    let budget = Budget::new(1 << 20);
    let mut d = Direction::new(Dir::S2c, Limits::default());
    let mut out = Vec::new();
    let mut redirects = Vec::new();
    for (chunk, eof) in [(stream, false), (&b""[..], true)] {
        let mut ctx = Ctx {
            tables,
            dialect: &mut dialect,
            router: &mut router,
            budget: &budget,
            conn: 1,
            ts: Ts(0),
            chunk_capacity: chunk.len(),
        };
        let p = d.push(&Bytes::copy_from_slice(chunk), eof, &mut ctx);
        for b in &p.out {
            out.extend_from_slice(b);
        }
        for e in p.batches.iter().flat_map(|b| b.entries.iter()) {
            if let Entry::Event(ev) = e {
                if let EventKind::Redirect(r) = &ev.kind {
                    redirects.push(r.clone());
                }
            }
        }
    }
    (out, redirects)
}

/// fuzz/forward, first run: an XFR whose address holds bytes that are not UTF-8 was
/// routed with a lossy text of them (U+FFFD in place of the bytes) and rewritten, so the
/// router was asked about an address the server never sent. Such an address is no
/// HOST:PORT: it is forwarded as it came, with the redirect's problem saying why.
#[test]
fn forward_leaves_an_address_with_bytes_outside_ascii_alone() {
    for stream in [
        &b"XFR 12 NS 207.46.1\xff8.39:1863 CKI 17271.1184000693.4411\r\n"[..],
        b"XFR 10 SB 10.\xc3.0.8:184 CKI 3110578.11176222230.743\r\n",
        b"XFR 10 SB 10\x000.0.8:1 CKI x\r\n",
    ] {
        let (out, redirects) = forward(stream);
        assert_eq!(out, stream, "forwarded unchanged");
        assert_eq!(redirects.len(), 1, "{redirects:?}");
        let r = &redirects[0];
        assert!(r.rewritten.is_none(), "{r:?}");
        let problem = r.problem.as_deref().unwrap_or("");
        assert!(problem.contains("is not a HOST:PORT address"), "{problem}");
    }
    // The same line with a plain address is rewritten, address token only.
    let (out, redirects) = forward(b"XFR 12 NS 207.46.108.39:1863 CKI 17271.1184000693.4411\r\n");
    assert_eq!(
        out,
        b"XFR 12 NS 127.0.0.1:40000 CKI 17271.1184000693.4411\r\n".to_vec()
    );
    assert_eq!(redirects[0].rewritten.as_deref(), Some("127.0.0.1:40000"));
}
