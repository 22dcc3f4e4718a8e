//! The input source as a library: kinds told from the first bytes, session logs streamed
//! (the same chunks whatever the read sizes, bounded lines and open connections), JSON
//! Lines renumbered, one connection numbering across inputs, input problems kept apart
//! from output failures.

mod scratch_support;

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;

use msntap::logfile::{self, Item, Reader, MAX_LINE, MAX_OPEN};
use msntap::source::{kind_of, Input, Kind, Options, Source, SourceError};
use msntap::{Event, Tables};
use scratch_support::Scratch;

fn tables() -> Arc<Tables> {
    Arc::new(Tables::builtin().expect("tables"))
}

/// Hands out at most `n` bytes per read, to show no read size changes what is parsed.
struct Trickle<R>(R, usize);

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.1);
        self.0.read(&mut buf[..n])
    }
}

fn items<R: BufRead>(r: R, t: &Tables) -> Vec<String> {
    let mut rd = Reader::new(r, t, false, None);
    let mut out = Vec::new();
    while let Some(it) = rd.next_item().expect("read") {
        out.push(match it {
            Item::Chunk { conn, chunk } => format!(
                "{conn} {:?} {} {}",
                chunk.dir,
                chunk.line_no,
                String::from_utf8_lossy(&chunk.bytes)
            ),
            Item::Note {
                conn,
                line,
                message,
                ..
            } => format!("{conn} note {line} {message}"),
            Item::End { conn } => format!("{conn} end"),
        });
    }
    out
}

#[test]
fn kinds_from_the_first_bytes() {
    assert_eq!(kind_of(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]), Ok(Kind::Pcap));
    assert_eq!(kind_of(&[0xa1, 0xb2, 0x3c, 0x4d]), Ok(Kind::Pcap));
    assert_eq!(kind_of(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0]), Ok(Kind::Pcapng));
    assert_eq!(kind_of(b"  {\"schema\":2}"), Ok(Kind::JsonLines));
    assert_eq!(kind_of(b"\xef\xbb\xbf{\"schema\":2}"), Ok(Kind::JsonLines));
    assert_eq!(kind_of(b"C: VER 1 MSNP8\r\n"), Ok(Kind::SessionLog));
    // Latin-1 text is still text.
    assert_eq!(
        kind_of(b"S: ILN 1 NLN a@b Jos\xe9 0\n"),
        Ok(Kind::SessionLog)
    );
    let e = kind_of(b"\x00\x01\x02\x03binary").unwrap_err();
    assert_eq!(e, "binary data starting 00 01 02 03");
    assert!(kind_of(&[7u8; 100]).is_err(), "control bytes are not text");
}

#[test]
fn the_log_reader_gives_the_same_items_whatever_the_read_sizes() {
    let t = tables();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = ["captures/logs", "captures/synth"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).expect("dir"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    assert!(files.len() > 20);
    for f in files {
        let bytes = std::fs::read(&f).expect("log");
        let whole = items(&bytes[..], &t);
        assert!(!whole.is_empty(), "{}", f.display());
        for n in [1, 7, 100] {
            let r = BufReader::with_capacity(16, Trickle(&bytes[..], n));
            assert_eq!(
                items(r, &t),
                whole,
                "{} read {n} bytes at a time",
                f.display()
            );
        }
        // The whole-text parser is the same reader, collected.
        let conns = logfile::parse(&String::from_utf8_lossy(&bytes), &t, false);
        let chunks: usize = conns.iter().map(|c| c.chunks.len()).sum();
        assert_eq!(
            chunks,
            whole
                .iter()
                .filter(|l| !l.contains(" note ") && !l.ends_with(" end"))
                .count()
        );
        // Every connection ends exactly once, after its last chunk.
        for c in 0..conns.len() {
            let end = whole
                .iter()
                .position(|l| *l == format!("{c} end"))
                .expect("end");
            assert_eq!(
                whole.iter().filter(|l| **l == format!("{c} end")).count(),
                1
            );
            assert!(!whole[end..]
                .iter()
                .any(|l| l.starts_with(&format!("{c} C2s")) || l.starts_with(&format!("{c} S2c"))));
        }
    }
}

#[test]
fn log_lines_and_open_connections_are_bounded() {
    let t = tables();
    // A line longer than the cap is cut, with a note, and the next line is still read.
    let mut log = b"C: VER 1 MSNP8 CVR0\nC: USR 2 TWN I ".to_vec();
    log.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
    log.extend_from_slice(b"\nC: OUT\n");
    let got = items(&log[..], &t);
    assert!(
        got.iter().any(|l| l.contains("note 2 line longer than")),
        "{:?}",
        &got.iter()
            .map(|l| &l[..l.len().min(60)])
            .collect::<Vec<_>>()
    );
    assert!(got.iter().any(|l| l.ends_with("OUT\r\n")));
    let usr = got.iter().find(|l| l.contains("USR 2")).expect("USR");
    assert!(usr.len() < MAX_LINE + 100);
    // More `#N` connections than may be open at once: the oldest are ended early.
    let mut log = String::new();
    for i in 0..MAX_OPEN + 10 {
        log.push_str(&format!("#{i} NS >>> PNG\n"));
    }
    let got = items(log.as_bytes(), &t);
    let first_end = got.iter().position(|l| l.ends_with(" end")).expect("end");
    assert!(
        first_end < got.len() - MAX_OPEN,
        "ended before the log's end"
    );
    assert_eq!(
        got.iter().filter(|l| l.ends_with(" end")).count(),
        MAX_OPEN + 10
    );
}

#[test]
fn one_numbering_across_inputs_and_problems_apart_from_output_failures() {
    let t = tables();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cap = Input::Path(root.join("captures/msnp8_twisted_escargot.pcap"));
    let log = Input::Path(root.join("captures/logs/msnp11.log"));
    let missing = Input::Path(root.join("no-such-file"));
    let mut src = Source::new(t.clone(), Options::default());
    let mut conns: Vec<u64> = Vec::new();
    let reports = src
        .read_all(
            &[cap.clone(), missing, log, cap],
            &mut |e: &mut Event<'_>| {
                conns.push(e.conn);
                Ok(())
            },
            &mut |_, _| {},
        )
        .expect("no output failure");
    assert_eq!(reports.len(), 4);
    assert!(matches!(reports[1].problem, Some(SourceError::Io { .. })));
    let firsts: Vec<u64> = reports.iter().map(|r| r.stats.connections).collect();
    assert_eq!(firsts, [4, 0, 4, 4]);
    assert_eq!(
        reports[0].stats.capture.as_ref().map(|c| c.packets),
        Some(151)
    );
    assert_eq!(reports[2].stats.lines, 114);
    assert_eq!(*conns.iter().max().unwrap(), 12);
    assert_eq!(src.next_conn(), 13);
    // The callback failing stops the run, as an output problem, not an input's.
    let mut src = Source::new(t, Options::default());
    let mut n = 0;
    let r = src.read_all(
        &[Input::Path(root.join("captures/logs/msnp8.log"))],
        &mut |_: &mut Event<'_>| {
            n += 1;
            if n == 3 {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
            } else {
                Ok(())
            }
        },
        &mut |_, _| {},
    );
    match r {
        Err(e @ SourceError::Output(_)) => assert!(e.is_output()),
        other => panic!("{other:?}"),
    }
    assert_eq!(n, 3, "nothing more was handed on");
}

#[test]
fn json_lines_keep_connection_zero_and_move_the_others_up() {
    let t = tables();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = Scratch::dir("source");
    let j = dir.join("e.jsonl");
    let gap = |conn: u64| {
        format!(
            "{{\"schema\":2,\"ts\":\"1970-01-01T00:00:00.000000Z\",\"conn\":{conn},\"service\":\"unknown\",\"version\":null,\"type\":\"gap\",\"offset\":0,\"length\":1}}\n"
        )
    };
    std::fs::write(&j, format!("{}\n{}{}", gap(0), gap(2), gap(5))).unwrap();
    let mut src = Source::new(t, Options::default());
    src.read_path(&root.join("captures/logs/msnp8.log"), &mut |_| Ok(()))
        .unwrap();
    assert_eq!(src.next_conn(), 5);
    let mut conns = Vec::new();
    let stats = src
        .read_path(&j, &mut |e| {
            conns.push(e.conn);
            Ok(())
        })
        .unwrap();
    assert_eq!(conns, [0, 6, 9]);
    assert_eq!(stats.lines, 4, "the blank line counts as a line read");
    assert_eq!(src.next_conn(), 10);
}
