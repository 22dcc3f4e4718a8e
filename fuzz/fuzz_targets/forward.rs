//! Fuzz target: the proxy's forwarding path (`proxy::forward::Direction`) fed arbitrary
//! reads. The bytes forwarded must be the bytes received, except that the address token
//! of a rewritten XFR/RNG line becomes the router's address: with a router that maps
//! nothing the output equals the input exactly; with one that maps everything, the output
//! equals the input with each rewritten line's address token (and nothing else) replaced.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use msntap::event::{EventKind, Service};
use msntap::protocol::{Dialect, SessionHint};
use msntap::proxy::forward::{Budget, Ctx, Direction, Entry, Router, MAX_HOLD};
use msntap::wire::Limits;
use msntap::{Dir, Ts};
use msntap_fuzz::{check_event, records, tables, Op};

/// Maps every target to a new loopback address, or refuses every one.
struct Map {
    on: bool,
    issued: Vec<String>,
}

impl Router for Map {
    fn route(&mut self, _t: Service, _a: &str, _v: Option<u8>) -> Result<String, String> {
        if !self.on {
            return Err("no route".into());
        }
        let n = self.issued.len() as u32;
        let to = format!("127.0.{}.{}:{}", n / 250, n % 250 + 1, 40000 + n % 20000);
        self.issued.push(to.clone());
        Ok(to)
    }
}

/// One rewrite the event side was told about.
struct Seen {
    offset: u64,
    old_line: Vec<u8>,
    new_line: Vec<u8>,
    original: String,
    rewritten: String,
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let dir = if sel & 2 != 0 { Dir::C2s } else { Dir::S2c };
    let limits = if sel & 4 != 0 {
        Limits {
            max_line: 64,
            max_payload: 256,
            max_guess: 64,
        }
    } else {
        Limits::default()
    };
    let budget = Budget::new(if sel & 8 != 0 { 1024 } else { 32 << 20 });
    let tables = tables();
    let mut dialect = Dialect::new(SessionHint::default());
    let mut router = Map {
        on: sel & 1 != 0,
        issued: Vec::new(),
    };
    let mut d = Direction::new(dir, limits);
    let mut input = Vec::new();
    let mut out = Vec::new();
    let mut seen: Vec<Seen> = Vec::new();
    let mut chunks: Vec<(&[u8], bool)> = Vec::new();
    for r in records(rest) {
        let eof = r.op == Op::FinishDir;
        chunks.push((r.data, eof));
        if eof {
            break;
        }
    }
    if !chunks.last().is_some_and(|c| c.1) {
        chunks.push((&[], true));
    }
    for (chunk, eof) in chunks {
        input.extend_from_slice(chunk);
        let mut ctx = Ctx {
            tables: &tables,
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
        assert!(d.held() <= MAX_HOLD, "{} bytes held back", d.held());
        assert_eq!(
            d.forwarded() + d.held() as u64,
            d.received(),
            "every byte received is forwarded or held"
        );
        for b in &p.batches {
            let mut pending: Option<Box<str>> = None;
            for e in &b.entries {
                match e {
                    Entry::Rewritten(l) => {
                        assert!(pending.is_none(), "two rewritten lines for one frame");
                        pending = Some(l.clone());
                    }
                    Entry::Frame(f) => {
                        let c = &b.containers[f.container as usize];
                        let s = f.start as usize;
                        let line = &c[s..s + f.line_len as usize];
                        if let Some(l) = pending.take() {
                            seen.push(Seen {
                                offset: f.offset,
                                old_line: line.to_vec(),
                                new_line: l.as_bytes().to_vec(),
                                original: String::new(),
                                rewritten: String::new(),
                            });
                        }
                    }
                    Entry::Event(ev) => {
                        check_event(ev);
                        if let EventKind::Redirect(r) = &ev.kind {
                            if let Some(to) = &r.rewritten {
                                let s = seen.last_mut().expect("a rewrite follows its frame");
                                assert!(s.original.is_empty(), "one redirect per rewrite");
                                s.original = r.original.to_string();
                                s.rewritten = to.to_string();
                            }
                        }
                    }
                    Entry::Desync(_) => {}
                }
            }
            assert!(pending.is_none(), "a rewritten line without its frame");
        }
    }
    assert_eq!(d.held(), 0, "nothing held after the end");
    assert_eq!(budget.used(), 0, "the framing budget is given back");
    if !router.on || dir == Dir::C2s {
        assert!(seen.is_empty(), "a rewrite without a route or client-side");
        assert!(
            out == input,
            "forwarded bytes differ from the bytes received"
        );
        return;
    }
    // Rebuild the expected output from the input and the rewrites reported.
    let mut want = Vec::with_capacity(out.len());
    let mut at = 0usize;
    for s in &seen {
        let o = s.offset as usize;
        assert!(o >= at, "rewrites in stream order");
        assert_eq!(
            &input[o..o + s.old_line.len()],
            &s.old_line[..],
            "frame offset"
        );
        let name = &s.old_line[..s.old_line.len().min(4)];
        assert!(
            name == b"XFR " || name == b"RNG ",
            "only XFR/RNG lines are rewritten"
        );
        assert!(
            router.issued.contains(&s.rewritten),
            "address from the router"
        );
        // Exactly one whole token, the original address, became the router's address.
        // The line handed to the event side is text (lossy where the line is not UTF-8):
        // the bytes expected are built here from the original line.
        let candidates = (1..=s.old_line.len().saturating_sub(s.original.len())).filter_map(|i| {
            let end = i + s.original.len();
            let token = s.old_line[i..end] == *s.original.as_bytes()
                && s.old_line[i - 1] == b' '
                && s.old_line.get(end).is_none_or(|&b| b == b' ' || b == b'\t');
            token.then(|| {
                let mut v = s.old_line[..i].to_vec();
                v.extend_from_slice(s.rewritten.as_bytes());
                v.extend_from_slice(&s.old_line[end..]);
                v
            })
        });
        let mut found = None;
        for c in candidates {
            if String::from_utf8_lossy(&c).as_bytes() == &s.new_line[..] {
                found = Some(c);
                break;
            }
        }
        let Some(new_line) = found else {
            panic!(
                "the rewritten line differs from the original in more than its address: {:?} -> {:?} ({} -> {})",
                String::from_utf8_lossy(&s.old_line),
                String::from_utf8_lossy(&s.new_line),
                s.original,
                s.rewritten
            );
        };
        want.extend_from_slice(&input[at..o]);
        want.extend_from_slice(&new_line);
        at = o + s.old_line.len();
    }
    want.extend_from_slice(&input[at..]);
    assert!(
        out == want,
        "forwarded bytes differ from input plus rewrites"
    );
});
