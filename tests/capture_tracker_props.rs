//! Property: the connection tracker delivers the same byte streams, with no gap, however
//! the packets of a connection are delivered: segments re-split, duplicated, and
//! reordered together with the handshake, the ACKs and the FINs. Packets are built with
//! the project's capture writer and fed to `capture::Tracker` as raw IP frames.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use msntap::capture::tracker::{FlowOptions, StreamEvent, Tracker};
use msntap::capture::writer::TcpFlowWriter;
use msntap::{Dir, Tables, Ts};

/// LINKTYPE_RAW: frames are IP packets.
const RAW: u16 = 101;

#[derive(Default, Debug)]
struct Got {
    streams: BTreeMap<(u64, usize), Vec<u8>>,
    gaps: u64,
    notes: Vec<String>,
    opens: u64,
    closes: u64,
}

fn feed(packets: &[Vec<u8>], opts: FlowOptions) -> Got {
    let tables = Arc::new(Tables::builtin().expect("tables"));
    let mut t = Tracker::new(tables, opts, 1);
    let mut g = Got::default();
    let mut on = |e: StreamEvent<'_>| match e {
        StreamEvent::Data {
            flow, dir, bytes, ..
        } => g
            .streams
            .entry((flow, dir.index()))
            .or_default()
            .extend_from_slice(bytes),
        StreamEvent::Gap { .. } => g.gaps += 1,
        StreamEvent::Note { note, .. } => g.notes.push(note.to_string()),
        StreamEvent::Open { .. } => g.opens += 1,
        StreamEvent::Close { .. } => g.closes += 1,
        StreamEvent::End { .. } => {}
    };
    for (i, p) in packets.iter().enumerate() {
        t.packet(RAW, Ts(i as i64), p, &mut on);
    }
    t.finish(&mut on);
    g
}

/// One connection: handshake, `c2s` and `s2c` sent as segments cut at `cuts` (fractions
/// of each stream), a pure ACK after each burst, an orderly close.
fn connection(c2s: &[u8], s2c: &[u8], cuts: &[u16], port: u16) -> Vec<Vec<u8>> {
    let mut f = TcpFlowWriter::new(
        format!("10.1.0.1:{port}").parse().expect("addr"),
        "10.2.0.2:1863".parse().expect("addr"),
    );
    let mut out: Vec<Vec<u8>> = f
        .handshake()
        .expect("hs")
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    for (dir, data) in [(Dir::C2s, c2s), (Dir::S2c, s2c)] {
        let mut at: Vec<usize> = cuts
            .iter()
            .map(|&c| usize::from(c) * data.len() / 65_536)
            .collect();
        at.push(0);
        at.push(data.len());
        at.sort_unstable();
        at.dedup();
        for w in at.windows(2) {
            out.push(
                f.segment_at(dir, w[0] as u64, &data[w[0]..w[1]])
                    .expect("segment"),
            );
        }
        f.skip(dir, data.len() as u64);
        out.push(f.ack(dir.flip()).expect("ack"));
    }
    out.extend(
        f.close(Dir::C2s)
            .expect("close")
            .into_iter()
            .map(|(_, p)| p),
    );
    out
}

fn stream(first: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut v = first.to_vec();
    v.extend_from_slice(rest);
    v
}

/// Repeats the packets at `dups` (indexes modulo the length), each next to itself.
fn duplicate(mut p: Vec<Vec<u8>>, dups: &[usize]) -> Vec<Vec<u8>> {
    for &d in dups {
        let i = d % p.len();
        let c = p[i].clone();
        p.insert(i, c);
    }
    p
}

fn check(got: &Got, c2s: &[u8], s2c: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.gaps, 0, "notes: {:?}", got.notes);
    prop_assert!(got.notes.is_empty(), "notes: {:?}", got.notes);
    prop_assert_eq!((got.opens, got.closes), (1, 1));
    prop_assert_eq!(got.streams.get(&(1, 0)).map(Vec::as_slice), Some(c2s));
    prop_assert_eq!(got.streams.get(&(1, 1)).map(Vec::as_slice), Some(s2c));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any order at all, when the tracker may wait for the whole capture.
    #[test]
    fn any_order_gives_the_same_streams(
        a in proptest::collection::vec(any::<u8>(), 0..3000),
        b in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(any::<u16>(), 0..12),
        dups in proptest::collection::vec(any::<usize>(), 0..6),
        order in any::<u64>(),
    ) {
        let c2s = stream(b"VER 1 MSNP8 CVR0\r\n", &a);
        let s2c = stream(b"VER 1 MSNP8\r\n", &b);
        let mut p = duplicate(connection(&c2s, &s2c, &cuts, 40000), &dups);
        // A full permutation (Fisher-Yates with a SplitMix64 stream).
        let mut rng = msntap::capture::synth::Rng::new(order);
        for i in (1..p.len()).rev() {
            p.swap(i, rng.below(i + 1));
        }
        let opts = FlowOptions { reorder_window: u64::MAX, ..FlowOptions::default() };
        check(&feed(&p, opts), &c2s, &s2c)?;
    }

    /// With the default reorder window: any order within blocks shorter than the window
    /// (so no packet moves by a window or more).
    #[test]
    fn reordering_within_the_window_gives_the_same_streams(
        a in proptest::collection::vec(any::<u8>(), 0..3000),
        b in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(any::<u16>(), 0..12),
        dups in proptest::collection::vec(any::<usize>(), 0..6),
        block in 2usize..(FlowOptions::default().reorder_window as usize / 2),
        order in any::<u64>(),
    ) {
        let c2s = stream(b"VER 1 MSNP8 CVR0\r\n", &a);
        let s2c = stream(b"VER 1 MSNP8\r\n", &b);
        let mut p = duplicate(connection(&c2s, &s2c, &cuts, 40001), &dups);
        let mut rng = msntap::capture::synth::Rng::new(order);
        for chunk in p.chunks_mut(block) {
            for i in (1..chunk.len()).rev() {
                chunk.swap(i, rng.below(i + 1));
            }
        }
        check(&feed(&p, FlowOptions::default()), &c2s, &s2c)?;
    }
}

/// Several connections interleaved and then reordered as a whole: each keeps its bytes.
#[test]
fn interleaved_connections_keep_their_streams() {
    let mut all: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut want = Vec::new();
    for i in 0..8u16 {
        let c2s = stream(
            b"VER 1 MSNP8 CVR0\r\n",
            &vec![b'a' + i as u8; 500 + usize::from(i) * 97],
        );
        let s2c = stream(
            b"VER 1 MSNP8\r\n",
            &vec![b'A' + i as u8; 900 - usize::from(i) * 31],
        );
        all.push(connection(
            &c2s,
            &s2c,
            &[9000, 20000, 41000, 60000],
            41000 + i,
        ));
        want.push((c2s, s2c));
    }
    let mut p = Vec::new();
    let mut rng = msntap::capture::synth::Rng::new(7);
    while all.iter().any(|c| !c.is_empty()) {
        let k = rng.below(all.len());
        if !all[k].is_empty() {
            p.push(all[k].remove(0));
        }
    }
    for i in (1..p.len()).rev() {
        let j = i.saturating_sub(rng.below(6));
        p.swap(i, j);
    }
    let got = feed(&p, FlowOptions::default());
    assert_eq!(got.gaps, 0, "{:?}", got.notes);
    assert_eq!(got.opens, 8);
    let mut streams: Vec<(Vec<u8>, Vec<u8>)> = (1..=8u64)
        .map(|f| {
            (
                got.streams.get(&(f, 0)).cloned().unwrap_or_default(),
                got.streams.get(&(f, 1)).cloned().unwrap_or_default(),
            )
        })
        .collect();
    streams.sort();
    want.sort();
    assert_eq!(streams, want);
}
