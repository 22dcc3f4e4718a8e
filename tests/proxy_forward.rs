//! The forwarding path alone (`msntap::proxy::forward`, sans-IO): whatever the split of the
//! stream into reads, the bytes forwarded are the bytes received with exactly the address
//! token of each server redirect line replaced, nothing held back beyond a partial line
//! that may still become a redirect, payloads never touched, and the frames handed to the
//! event side are the ones a whole-stream framing finds.

use bytes::Bytes;
use msntap::event::Service;
use msntap::protocol::{Dialect, SessionHint};
use msntap::proxy::forward::{Budget, Ctx, Direction, Entry, Router, MAX_ENTRIES, MAX_HOLD};
use msntap::wire::Limits;
use msntap::{Dir, Tables, Ts};
use proptest::prelude::*;

/// Routes every target to a fixed address, remembering what it was asked.
#[derive(Default)]
struct Fixed {
    asked: Vec<(Service, String)>,
}

impl Router for Fixed {
    fn route(&mut self, target: Service, address: &str, _v: Option<u8>) -> Result<String, String> {
        self.asked.push((target, address.to_string()));
        Ok("127.0.0.1:40001".to_string())
    }
}

struct Run {
    out: Vec<u8>,
    /// (stream offset, frame bytes) of every frame handed to the event side.
    frames: Vec<(u64, Vec<u8>)>,
    desyncs: usize,
    redirects: usize,
    /// Most bytes held back at once.
    max_held: usize,
    /// Most entries in one batch.
    max_batch: usize,
}

fn tables() -> &'static Tables {
    static T: std::sync::OnceLock<Tables> = std::sync::OnceLock::new();
    T.get_or_init(|| Tables::builtin().expect("tables"))
}

fn run(dir: Dir, chunks: &[&[u8]]) -> Run {
    let tables = tables();
    let mut dialect = Dialect::new(SessionHint::default());
    let mut router = Fixed::default();
    let budget = Budget::new(32 << 20);
    let mut d = Direction::new(dir, Limits::default());
    let mut r = Run {
        out: Vec::new(),
        frames: Vec::new(),
        desyncs: 0,
        redirects: 0,
        max_held: 0,
        max_batch: 0,
    };
    let n = chunks.len();
    for (i, c) in chunks.iter().chain(std::iter::once(&&b""[..])).enumerate() {
        let mut ctx = Ctx {
            tables,
            dialect: &mut dialect,
            router: &mut router,
            budget: &budget,
            conn: 1,
            ts: Ts(0),
            chunk_capacity: c.len(),
        };
        let p = d.push(&Bytes::copy_from_slice(c), i == n, &mut ctx);
        for b in &p.out {
            r.out.extend_from_slice(b);
        }
        r.max_held = r.max_held.max(d.held());
        for b in &p.batches {
            r.max_batch = r.max_batch.max(b.entries.len());
        }
        for (b, e) in p
            .batches
            .iter()
            .flat_map(|b| b.entries.iter().map(move |e| (b, e)))
        {
            match e {
                Entry::Frame(f) => {
                    let c = &b.containers[f.container as usize];
                    let s = f.start as usize;
                    r.frames.push((f.offset, c[s..s + f.len as usize].to_vec()));
                }
                Entry::Desync(_) => r.desyncs += 1,
                Entry::Event(_) => r.redirects += 1,
                Entry::Rewritten(_) => {}
            }
        }
    }
    assert_eq!(d.held(), 0, "nothing held at the end");
    assert_eq!(budget.used(), 0, "the framing budget is given back");
    r
}

const MOTD: &str = "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nXFR 9 NS 10.9.9.9:1863 0\r\nRNG 1 10.9.9.9:1865 CKI x a@b c\r\n";

/// A server-to-client stream with redirects, a payload quoting redirect lines, junk, and
/// the output it must produce.
fn stream() -> (Vec<u8>, Vec<u8>) {
    let mut s = Vec::new();
    let mut want = Vec::new();
    let mut both = |a: &str, b: &str| {
        s.extend_from_slice(a.as_bytes());
        want.extend_from_slice(b.as_bytes());
    };
    both("VER 1 MSNP11\r\n", "VER 1 MSNP11\r\n");
    both(
        "XFR 2 NS 10.0.0.5:1863 0 10.0.0.1:1863\r\n",
        "XFR 2 NS 127.0.0.1:40001 0 10.0.0.1:1863\r\n",
    );
    let msg = format!("MSG Hotmail Hotmail {}\r\n{MOTD}", MOTD.len());
    both(&msg, &msg);
    both(
        "\x00\x01junk that is not a command\r\n",
        "\x00\x01junk that is not a command\r\n",
    );
    both(
        "XFR 5 SB 10.0.0.7:1865 CKI 17262740.1050826919.32308 U messenger.msn.com 1\r\n",
        "XFR 5 SB 127.0.0.1:40001 CKI 17262740.1050826919.32308 U messenger.msn.com 1\r\n",
    );
    both("XFR 0 NS 0\r\n", "XFR 0 NS 0\r\n");
    both(
        "RNG 11752013 sb.example.org:1865 CKI abc carol@example.com Carol\r\n",
        "RNG 11752013 127.0.0.1:40001 CKI abc carol@example.com Carol\r\n",
    );
    both("QNG 50\n", "QNG 50\n");
    both(
        "XFR 6 SB 10.0.0.7:1865  CKI two-spaces\r\n",
        "XFR 6 SB 127.0.0.1:40001  CKI two-spaces\r\n",
    );
    (s, want)
}

#[test]
fn the_whole_stream_in_one_read() {
    let (s, want) = stream();
    let r = run(Dir::S2c, &[&s]);
    assert_eq!(
        String::from_utf8_lossy(&r.out),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(r.redirects, 4);
    assert_eq!(r.desyncs, 1);
    assert_eq!(r.frames.len(), 8);
}

#[test]
fn client_bytes_are_never_rewritten() {
    let (s, _) = stream();
    let r = run(Dir::C2s, &[&s]);
    assert_eq!(r.out, s);
    assert_eq!(r.redirects, 0);
    assert_eq!(r.max_held, 0);
}

#[test]
fn an_overlong_line_and_a_long_redirect_line_pass_unchanged() {
    let mut s = b"VER 1 MSNP8\r\n".to_vec();
    s.extend_from_slice(&vec![b'A'; 300_000]);
    s.extend_from_slice(b"\r\n");
    s.extend_from_slice(
        format!("XFR 9 SB 10.0.0.9:1865 CKI {}\r\n", "c".repeat(10_000)).as_bytes(),
    );
    s.extend_from_slice(b"OUT\r\n");
    for size in [1 << 16, 1000, 4097, 7] {
        let chunks: Vec<&[u8]> = s.chunks(size).collect();
        let r = run(Dir::S2c, &chunks);
        if r.out != s {
            let at = r
                .out
                .iter()
                .zip(&s)
                .position(|(a, b)| a != b)
                .unwrap_or(s.len().min(r.out.len()));
            panic!(
                "read size {size}: {} bytes out of {}, first difference at {at}: {:?} vs {:?}",
                r.out.len(),
                s.len(),
                String::from_utf8_lossy(&r.out[at.saturating_sub(20)..(at + 20).min(r.out.len())]),
                String::from_utf8_lossy(&s[at.saturating_sub(20)..(at + 20).min(s.len())])
            );
        }
        assert!(r.max_held <= MAX_HOLD);
        assert_eq!(r.redirects, 1, "the long XFR is reported as not rewritten");
        let names: Vec<&[u8]> = r.frames.iter().map(|(_, f)| &f[..3]).collect();
        assert_eq!(names, [&b"VER"[..], b"XFR", b"OUT"]);
    }
}

#[test]
fn a_read_full_of_short_commands_is_handed_over_in_bounded_batches() {
    let s = b"QNG 50\r\n".repeat(5000);
    let r = run(Dir::S2c, &[&s]);
    assert!(r.out == s);
    assert_eq!(r.frames.len(), 5000);
    assert!(r.frames.iter().all(|(_, f)| f == b"QNG 50\r\n"));
    assert_eq!(r.max_batch, MAX_ENTRIES);
    let offsets: Vec<u64> = r.frames.iter().map(|(o, _)| *o).collect();
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 8),
        "in stream order"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn any_split_forwards_the_same_bytes_and_frames(cuts in proptest::collection::vec(0usize..1000, 0..12)) {
        let (s, want) = stream();
        let whole = run(Dir::S2c, &[&s]);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (s.len() + 1)).collect();
        cuts.sort();
        cuts.dedup();
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in cuts {
            chunks.push(&s[at..c]);
            at = c;
        }
        chunks.push(&s[at..]);
        let r = run(Dir::S2c, &chunks);
        prop_assert_eq!(String::from_utf8_lossy(&r.out), String::from_utf8_lossy(&want));
        prop_assert_eq!(&r.frames, &whole.frames);
        prop_assert_eq!(r.redirects, whole.redirects);
        prop_assert_eq!(r.desyncs, whole.desyncs);
        // What waits is at most one partial line.
        prop_assert!(r.max_held < 100, "held {}", r.max_held);
    }
}
