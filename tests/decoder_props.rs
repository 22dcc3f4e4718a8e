//! Property tests of the sans-IO decoder: any segmentation gives the same events, and
//! untouched frames re-encode to the bytes they came from.

use std::sync::Arc;

use msntap::event::{Dir, Event, EventKind, Ts};
use msntap::protocol::decode::FrameRules;
use msntap::protocol::Dialect;
use msntap::wire::{Framer, Item, Limits};
use msntap::{Session, SessionHint, Tables};
use proptest::prelude::*;

/// Streams written for these tests: every payload family, hostile bits included.
fn corpus() -> Vec<Vec<(Dir, Vec<u8>)>> {
    let mime = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Arial; EF=B; CO=ff; CS=0; PF=22\r\n\r\nHello \u{e9}t\u{e9}";
    let typing = "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\nTypingUser: alice@example.com\r\n\r\n\r\n";
    let ubx = "<Data><PSM>busy</PSM><CurrentMedia></CurrentMedia></Data>";
    let adl = "<ml l=\"1\"><d n=\"example.com\"><c n=\"bob\" l=\"3\" t=\"1\"/></d></ml>";
    let sb = vec![
        (
            Dir::C2s,
            b"USR 1 alice@example.com 12345.67890\r\n".to_vec(),
        ),
        (Dir::S2c, b"USR 1 OK alice@example.com Alice\r\n".to_vec()),
        (Dir::C2s, b"CAL 2 bob@example.com\r\n".to_vec()),
        (
            Dir::S2c,
            b"CAL 2 RINGING 1234\r\nJOI bob@example.com Bob\r\n".to_vec(),
        ),
        (
            Dir::C2s,
            format!("MSG 3 N {}\r\n{typing}", typing.len()).into_bytes(),
        ),
        (
            Dir::C2s,
            format!("MSG 4 A {}\r\n{mime}", mime.len()).into_bytes(),
        ),
        (Dir::S2c, b"ACK 4\r\n".to_vec()),
        (
            Dir::S2c,
            format!("MSG bob@example.com Bob {}\r\n{mime}", mime.len()).into_bytes(),
        ),
        (Dir::S2c, b"BYE bob@example.com\r\n".to_vec()),
    ];
    let ns = vec![
        (Dir::C2s, b"VER 1 MSNP13 CVR0\r\n".to_vec()),
        (Dir::S2c, b"VER 1 MSNP13\r\n".to_vec()),
        (
            Dir::C2s,
            format!("ADL 2 {}\r\n{adl}", adl.len()).into_bytes(),
        ),
        (Dir::S2c, b"ADL 2 OK\r\n".to_vec()),
        (
            Dir::S2c,
            format!("UBX bob@example.com {}\r\n{ubx}", ubx.len()).into_bytes(),
        ),
        (
            Dir::C2s,
            format!("UUX 3 {}\r\n{ubx}", ubx.len()).into_bytes(),
        ),
        (
            Dir::S2c,
            b"UUX 3 0\r\nCHL 0 11111111111111111111\r\n".to_vec(),
        ),
        (
            Dir::C2s,
            b"QRY 4 PROD0090YUAUV{2B 32\r\n85ecb0db8f32113df79ce0892b9a102cPNG\r\n".to_vec(),
        ),
        (Dir::S2c, b"QRY 4\r\nQNG 50\r\n241 5 5\r\n<ml/>".to_vec()),
        (
            Dir::C2s,
            b"ZZZ 6 3\r\nabcPNG\r\n\x00\x01junk\r\nPNG\r\nMSG 7 U 4294967295\r\n".to_vec(),
        ),
        (Dir::C2s, b"PNG\r\n".to_vec()),
    ];
    vec![sb, ns]
}

fn tables() -> Arc<Tables> {
    static T: std::sync::OnceLock<Arc<Tables>> = std::sync::OnceLock::new();
    T.get_or_init(|| Arc::new(Tables::builtin().expect("built-in tables")))
        .clone()
}

/// Feeds `stream` with each chunk cut at the given fractions.
fn decode(t: &Arc<Tables>, stream: &[(Dir, Vec<u8>)], cuts: &[Vec<usize>]) -> Vec<Event<'static>> {
    let mut s = Session::new(t.clone(), 1, SessionHint::default());
    let mut evs = Vec::new();
    let mut out = |e: &mut Event<'_>| evs.push(e.clone().into_owned());
    for (i, (d, b)) in stream.iter().enumerate() {
        let mut points: Vec<usize> = cuts
            .get(i)
            .map(|c| c.iter().map(|x| x % (b.len() + 1)).collect())
            .unwrap_or_default();
        points.push(0);
        points.push(b.len());
        points.sort();
        points.dedup();
        for w in points.windows(2) {
            s.feed(*d, &b[w[0]..w[1]], Ts(0), &mut out);
        }
    }
    s.finish(Ts(0), &mut out);
    evs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_segmentation_gives_the_same_events(cuts in proptest::collection::vec(proptest::collection::vec(0usize..400, 0..6), 12)) {
        let t = tables();
        for stream in corpus() {
            let whole = decode(&t, &stream, &[]);
            let split = decode(&t, &stream, &cuts);
            prop_assert_eq!(&whole, &split);
        }
    }

    #[test]
    fn byte_by_byte_equals_whole(idx in 0usize..2) {
        let t = tables();
        let stream = &corpus()[idx];
        let whole = decode(&t, stream, &[]);
        let cuts: Vec<Vec<usize>> = stream.iter().map(|(_, b)| (0..b.len()).collect()).collect();
        prop_assert_eq!(whole, decode(&t, stream, &cuts));
    }
}

/// One switchboard direction as one long buffer: short commands between messages whose bodies
/// are several times the session's 4 KiB first piece (so a frame cut by a chunk's end needs
/// more than one piece of the next chunk), a body over the payload limit and an unframeable
/// line in the middle.
fn long_stream(limits: Limits) -> Vec<u8> {
    let mut b = Vec::new();
    for (i, size) in [10usize, 5_000, 33, 20_000, 4_096, 1, 70_000, 300]
        .iter()
        .enumerate()
    {
        let body: String = (0..*size)
            .map(|j| char::from(b'a' + (j % 26) as u8))
            .collect();
        let mime =
            format!("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{body}");
        b.extend_from_slice(format!("MSG bob@example.com Bob {}\r\n{mime}", mime.len()).as_bytes());
        b.extend_from_slice(
            format!("ACK {i}\r\nNLN NLN bob@example.com Bob 1342177280\r\n").as_bytes(),
        );
        if i == 3 {
            b.extend_from_slice(b"\x00\x01 not a command line\r\nPNG\r\n");
            let over = limits.max_payload + 10;
            b.extend_from_slice(format!("MSG bob@example.com Bob {over}\r\n").as_bytes());
            b.extend(std::iter::repeat_n(b'x', over));
        }
    }
    b
}

fn decode_long(
    t: &Arc<Tables>,
    limits: Limits,
    bytes: &[u8],
    cuts: &[usize],
) -> Vec<Event<'static>> {
    let mut s = Session::with_limits(t.clone(), 1, SessionHint::default(), limits);
    let mut evs = Vec::new();
    let mut out = |e: &mut Event<'_>| evs.push(e.clone().into_owned());
    s.feed(
        Dir::C2s,
        b"ANS 1 alice@example.com 1.2.3 99\r\n",
        Ts(0),
        &mut out,
    );
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.extend([0, bytes.len()]);
    points.sort();
    points.dedup();
    for w in points.windows(2) {
        s.feed(Dir::S2c, &bytes[w[0]..w[1]], Ts(0), &mut out);
    }
    s.finish(Ts(0), &mut out);
    evs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Chunks of any size, tens of kilobytes included, after a frame left unfinished: the
    /// session finishes that frame from the next chunk's first bytes and frames the rest in
    /// place, which must give what one whole buffer gives.
    #[test]
    fn long_chunks_after_an_unfinished_frame_give_the_same_events(
        cuts in proptest::collection::vec(0usize..2_000_000, 1..10),
        small in any::<bool>(),
    ) {
        let t = tables();
        let limits = if small {
            Limits { max_payload: 8_192, ..Limits::default() }
        } else {
            Limits::default()
        };
        let bytes = long_stream(limits);
        let whole = decode_long(&t, limits, &bytes, &[]);
        prop_assert!(whole.len() > 20);
        prop_assert_eq!(&whole, &decode_long(&t, limits, &bytes, &cuts));
    }
}

/// Frames and skipped bytes of one direction, straight from the framer.
fn frames_of(t: &Tables, d: Dir, bytes: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let mut f = Framer::new(Limits::default());
    let dialect = Dialect::new(SessionHint::default());
    let rules = FrameRules {
        tables: t,
        dialect: &dialect,
        dir: d,
        limits: Limits::default(),
    };
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        match f.decode(&bytes[pos..], true, &rules) {
            Item::Frame(fr) => {
                out.push((true, bytes[pos..pos + fr.len].to_vec()));
                pos += fr.len;
            }
            Item::Skip(n) => {
                out.push((false, bytes[pos..pos + n].to_vec()));
                pos += n;
            }
            Item::Desync(_) => {}
            Item::NeedMore => return out,
        }
    }
}

#[test]
fn frames_cover_the_stream_byte_for_byte() {
    let t = tables();
    for stream in corpus() {
        let evs = decode(&t, &stream, &[]);
        for d in [Dir::C2s, Dir::S2c] {
            let input: Vec<u8> = stream
                .iter()
                .filter(|(x, _)| *x == d)
                .flat_map(|(_, b)| b.clone())
                .collect();
            let pieces = frames_of(&t, d, &input);
            assert_eq!(pieces.concat_bytes(), input, "direction {d:?}");
            // The session's command events are those frames, in order.
            let mut frames = pieces.iter().filter(|(f, _)| *f).map(|(_, b)| b.len());
            for c in evs
                .iter()
                .filter(|e| e.dir == Some(d))
                .filter_map(Event::command)
            {
                assert_eq!(Some(c.frame_len), frames.next(), "{}", c.line);
            }
            assert_eq!(frames.next(), None);
        }
    }
    assert!(decode(&t, &corpus()[0], &[])
        .iter()
        .all(|e| e.type_name() == "command"));
}

trait ConcatBytes {
    fn concat_bytes(&self) -> Vec<u8>;
}

impl ConcatBytes for Vec<(bool, Vec<u8>)> {
    fn concat_bytes(&self) -> Vec<u8> {
        self.iter().flat_map(|(_, b)| b.iter().copied()).collect()
    }
}

#[test]
fn hostile_stream_reports_what_happened() {
    let t = tables();
    let evs = decode(&t, &corpus()[1], &[]);
    let types: Vec<&str> = evs.iter().map(Event::type_name).collect();
    // One desync for the junk line; none for the hostile length, because a command follows it.
    assert_eq!(
        types.iter().filter(|t| **t == "desync").count(),
        1,
        "{types:?}"
    );
    let zzz = evs
        .iter()
        .filter_map(Event::command)
        .find(|c| c.cmd == "ZZZ")
        .unwrap();
    assert!(!zzz.known);
    assert!(zzz.payload.as_ref().unwrap().guess);
    let big = evs
        .iter()
        .filter_map(Event::command)
        .find(|c| c.trid == Some(7))
        .unwrap();
    assert_eq!(
        big.payload.as_ref().unwrap().kind,
        msntap::payload::Kind::Skipped
    );
    // Four PNGs: after the QRY payload, after the guessed payload, after the junk, and the
    // one right after the hostile MSG.
    assert_eq!(
        evs.iter()
            .filter_map(Event::command)
            .filter(|c| c.cmd == "PNG")
            .count(),
        4
    );
}

/// Arbitrary bytes, arbitrary splits, both directions: no panic, bounded buffers, and
/// every input byte accounted for by a frame or a desync/gap event.
fn arbitrary_stream() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
    let token = prop_oneof![
        Just(b"MSG 1 N 5\r\n".to_vec()),
        Just(b"MSG a@b c 3\r\n".to_vec()),
        Just(b"VER 1 MSNP13\r\n".to_vec()),
        Just(b"UUX 1 ".to_vec()),
        Just(b"241 5 ".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"ZZZ 9 4\r\n".to_vec()),
        Just(b"4294967295\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..20),
    ];
    proptest::collection::vec(
        (
            any::<bool>(),
            proptest::collection::vec(token, 1..6).prop_map(|v| v.concat()),
        ),
        1..30,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_input_never_panics_and_stays_bounded(stream in arbitrary_stream()) {
        let t = tables();
        let mut s = Session::new(t, 1, SessionHint::default());
        let mut evs: Vec<Event<'static>> = Vec::new();
        let mut out = |e: &mut Event<'_>| evs.push(e.clone().into_owned());
        let mut fed = [0u64; 2];
        for (c2s, bytes) in &stream {
            let d = if *c2s { Dir::C2s } else { Dir::S2c };
            fed[d.index()] += bytes.len() as u64;
            s.feed(d, bytes, Ts(0), &mut out);
            prop_assert!(s.buffered() <= 2 * (1024 * 1024 + 64 * 1024 + 4));
        }
        s.finish(Ts(0), &mut out);
        prop_assert_eq!(s.buffered(), 0);
        let mut seen = [0u64; 2];
        for e in &evs {
            let Some(d) = e.dir else { continue };
            match &e.kind {
                EventKind::Command(c) => seen[d.index()] += c.frame_len as u64,
                EventKind::Desync(x) => seen[d.index()] += x.skipped,
                _ => {}
            }
        }
        prop_assert_eq!(seen, fed);
    }
}
