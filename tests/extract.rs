//! Object extraction end to end: synthetic switchboard conversations (MSG frames carrying
//! P2P v1/v2 chunks and MSNSLP) are fed through a Session, and the extractor's objects are
//! checked against data and hashes computed here, independently of the extractor.

mod scratch_support;

use std::sync::Arc;

use base64::Engine as _;
use sha1::{Digest, Sha1};

use msntap::analysis::extract::{Check, ExtractSink, Extractor, Limits, Object};
use msntap::event::{Close, Sink};
use msntap::payload::p2p::{build, Layout, P2p};
use msntap::payload::Body;
use msntap::{Dir, Event, EventKind, Service, Session, SessionHint, Tables, Ts};
use scratch_support::Scratch;

/// The 1x1 PNG bob offers as his display picture in msnp11_msnp11-sdk_escargot.pcap; its
/// SHA1D (from the client log) is mZPtHSeB/a/YdgOOa+ChFi03e+E=.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";
const PNG_SHA1D: &str = "mZPtHSeB/a/YdgOOa+ChFi03e+E=";

fn sha1d(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(data))
}

fn msnobj(creator: &str, ty: u32, data: &[u8], sha1d: &str, location: &str) -> String {
    format!(
        r#"<msnobj Creator="{creator}" Size="{}" Type="{ty}" Location="{location}" Friendly="AAA=" SHA1D="{sha1d}" SHA1C="x"/>"#,
        data.len()
    )
}

fn slp_invite(
    from: &str,
    to: &str,
    guid_suffix: &str,
    sid: u32,
    euf: &str,
    app: u32,
    context: &[u8],
) -> Vec<u8> {
    let ctx = base64::engine::general_purpose::STANDARD.encode(context);
    let body =
        format!("EUF-GUID: {euf}\r\nSessionID: {sid}\r\nAppID: {app}\r\nContext: {ctx}\r\n\r\n\0");
    format!(
        "INVITE MSNMSGR:{to}{guid_suffix} MSNSLP/1.0\r\nTo: <msnmsgr:{to}{guid_suffix}>\r\nFrom: <msnmsgr:{from}{guid_suffix}>\r\nVia: MSNSLP/1.0/TLP ;branch={{B}}\r\nCSeq: 0 \r\nCall-ID: {{CALL-{sid}}}\r\nMax-Forwards: 0\r\nContent-Type: application/x-msnmsgr-sessionreqbody\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn slp_status(from: &str, to: &str, code: &str, sid: u32) -> Vec<u8> {
    let body = format!("SessionID: {sid}\r\n\r\n\0");
    format!(
        "MSNSLP/1.0 {code}\r\nTo: <msnmsgr:{to}>\r\nFrom: <msnmsgr:{from}>\r\nVia: MSNSLP/1.0/TLP ;branch={{B}}\r\nCSeq: 1 \r\nCall-ID: {{CALL-{sid}}}\r\nMax-Forwards: 0\r\nContent-Type: application/x-msnmsgr-sessionreqbody\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One switchboard connection as seen by `me`'s client.
struct Conv {
    s: Session,
    evs: Vec<Event<'static>>,
    trid: u32,
    dest_suffix: String,
    ts: i64,
}

impl Conv {
    fn new(conn: u64, version: u8, dest_suffix: &str) -> Conv {
        let tables = Arc::new(Tables::builtin().expect("built-in tables"));
        let hint = SessionHint {
            service: Some(Service::Sb),
            version: Some(version),
        };
        Conv {
            s: Session::new(tables, conn, hint),
            evs: Vec::new(),
            trid: 1,
            dest_suffix: dest_suffix.to_string(),
            ts: 1_000_000,
        }
    }

    /// One MSG frame with a P2P body; c2s from the local client, s2c from `peer`.
    fn p2p(&mut self, dir: Dir, peer: &str, dest: &str, body: &[u8]) {
        self.p2p_cut(dir, peer, dest, body, 0);
    }

    /// As `p2p`, with the last `cut` bytes of the frame never sent (the stream ends).
    fn p2p_cut(&mut self, dir: Dir, peer: &str, dest: &str, body: &[u8], cut: usize) {
        let mut mime = format!(
            "MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: {dest}{}\r\n\r\n",
            self.dest_suffix
        )
        .into_bytes();
        mime.extend_from_slice(body);
        let line = match dir {
            Dir::C2s => {
                self.trid += 1;
                format!("MSG {} D {}\r\n", self.trid, mime.len())
            }
            Dir::S2c => format!("MSG {peer} Peer {}\r\n", mime.len()),
        };
        let mut frame = line.into_bytes();
        frame.extend_from_slice(&mime);
        frame.truncate(frame.len() - cut);
        self.ts += 1000;
        let evs = &mut self.evs;
        self.s.feed(dir, &frame, Ts(self.ts), &mut |e| {
            evs.push(e.clone().into_owned())
        });
    }

    fn close(mut self) -> Vec<Event<'static>> {
        let evs = &mut self.evs;
        self.s
            .finish(Ts(self.ts + 1), &mut |e| evs.push(e.clone().into_owned()));
        let close = self
            .s
            .event(Ts(self.ts + 2), None, EventKind::Close(Close::default()));
        self.evs.push(close);
        self.evs
    }
}

/// The P2P header of each event that carries one.
fn p2p_of<'e>(evs: &'e [Event<'_>]) -> Vec<&'e P2p<'e>> {
    evs.iter()
        .filter_map(|e| e.command()?.payload.as_ref()?.content()?.p2p.as_deref())
        .collect()
}

fn extract(events: &[Event<'_>]) -> (Vec<Object>, Vec<String>) {
    let mut ex = Extractor::new(Limits::default());
    let mut out = Vec::new();
    for e in events {
        ex.event(e, &mut out);
    }
    ex.finish(&mut out);
    (out, ex.notes.clone())
}

fn v1_slp(c: &mut Conv, dir: Dir, id: u32, text: &[u8], dest: &str) {
    c.p2p(
        dir,
        "bob@example.com",
        dest,
        &build::v1(0, id, 0, text.len() as u64, 0, text, Some(0)),
    );
}

/// The display-picture exchange of the msnp11-sdk capture, on alice's connection.
fn msnp11_picture(conn: u64) -> Vec<Event<'static>> {
    let sid = 2328520848u32;
    let obj = msnobj("bob@example.com", 3, PNG, PNG_SHA1D, "PIC.tmp");
    let mut c = Conv::new(conn, 11, "");
    let mut ctx = obj.into_bytes();
    ctx.push(0);
    let inv = slp_invite(
        "alice@example.com",
        "bob@example.com",
        "",
        sid,
        "{A4268EEC-FEC5-49E5-95C3-F126696BDBF6}",
        1,
        &ctx,
    );
    v1_slp(&mut c, Dir::C2s, 100, &inv, "bob@example.com");
    c.p2p(
        Dir::S2c,
        "bob@example.com",
        "alice@example.com",
        &build::v1(0, 500, 0, inv.len() as u64, 0x2, &[], Some(0)),
    );
    let ok = slp_status("bob@example.com", "alice@example.com", "200 OK", sid);
    v1_slp(&mut c, Dir::S2c, 501, &ok, "alice@example.com");
    // Data preparation (4 zero bytes), then the picture in one chunk.
    c.p2p(
        Dir::S2c,
        "bob@example.com",
        "alice@example.com",
        &build::v1(sid, 502, 0, 4, 0, &[0; 4], Some(1)),
    );
    c.p2p(
        Dir::S2c,
        "bob@example.com",
        "alice@example.com",
        &build::v1(sid, 503, 0, PNG.len() as u64, 0x20, PNG, Some(1)),
    );
    c.close()
}

#[test]
fn display_picture_like_the_msnp11_capture_matches_its_sha1d() {
    assert_eq!(sha1d(PNG), PNG_SHA1D, "the test's own PNG bytes");
    let (objs, _) = extract(&msnp11_picture(1));
    assert_eq!(objs.len(), 1, "{objs:#?}");
    let o = &objs[0];
    assert_eq!(o.kind, "display_picture");
    assert_eq!(o.sender.as_deref(), Some("bob@example.com"));
    assert_eq!(o.receiver.as_deref(), Some("alice@example.com"));
    assert_eq!(o.data, PNG);
    assert!(o.complete);
    assert_eq!(o.check, Check::Match);
    assert_eq!(o.session_id, 2328520848);
    assert_eq!(
        msntap::analysis::extract::file_name(o),
        "bob@example.com-display_picture-PIC.png"
    );
}

#[test]
fn both_legs_of_a_relayed_transfer_give_one_file() {
    let mut evs = msnp11_picture(1);
    evs.extend(msnp11_picture(2));
    let dir = tempdir("legs");
    let mut sink = ExtractSink::new(&dir, Limits::default()).unwrap();
    sink.feed_all(evs).unwrap();
    sink.finish().unwrap();
    assert_eq!(sink.done.len(), 2);
    assert_eq!(sink.done[1].object.duplicate_of, Some(1));
    assert!(sink.done[1].path.is_none());
    let p = sink.done[0].path.clone().unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), PNG);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

/// Where a test's objects go; the extractor makes the directory.
fn tempdir(tag: &str) -> Scratch {
    Scratch::path(&format!("extract-{tag}"))
}

/// Data of `n` bytes that is not periodic in the chunk size.
fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| ((i * 131 + i / 7) as u8) ^ seed).collect()
}

#[test]
fn v2_headers_chunked_emoticon() {
    let sid = 77;
    let obj_data = data(3000, 5);
    let obj = msnobj(
        "bob@example.com",
        2,
        &obj_data,
        &sha1d(&obj_data),
        "smile.tmp",
    );
    let mut c = Conv::new(1, 18, ";{11111111-2222-3333-4444-555555555555}");
    let mut ctx = obj.into_bytes();
    ctx.push(0);
    let inv = slp_invite(
        "alice@example.com",
        "bob@example.com",
        ";{11111111-2222-3333-4444-555555555555}",
        sid,
        "{A4268EEC-FEC5-49E5-95C3-F126696BDBF6}",
        11,
        &ctx,
    );
    // The INVITE in two v2 chunks: first (TF 1) with the rest remaining, then the rest.
    let (a, b) = inv.split_at(600);
    c.p2p(
        Dir::C2s,
        "",
        "bob@example.com",
        &build::v2(1, None, 1, 1, 0, b.len() as u64, a, 0),
    );
    c.p2p(
        Dir::C2s,
        "",
        "bob@example.com",
        &build::v2(601, None, 0, 1, 0, 0, b, 0),
    );
    // The emoticon in three chunks: 1200 + 1200 + 600.
    let total = obj_data.len();
    let mut off = 0;
    for (i, n) in [1200usize, 1200, 600].into_iter().enumerate() {
        let chunk = &obj_data[off..off + n];
        let rem = (total - off - n) as u64;
        let tf = if i == 0 { 5 } else { 4 };
        c.p2p(
            Dir::S2c,
            "bob@example.com",
            "alice@example.com",
            &build::v2(9000 + off as u32, None, tf, 2, sid, rem, chunk, 11),
        );
        off += n;
    }
    let evs = c.close();
    // The events carry the v2 fields, typed.
    let p2p = p2p_of(&evs);
    assert_eq!(p2p.len(), 5);
    assert!(p2p.iter().all(|p| p.header == Layout::V2));
    assert_eq!(p2p[2].tf_names, ["first", "msnobj"]);
    assert_eq!(p2p[2].data_remaining, Some(1800));
    let (objs, _) = extract(&evs);
    assert_eq!(objs.len(), 1, "{objs:#?}");
    let o = &objs[0];
    assert_eq!(o.kind, "custom_emoticon");
    assert_eq!(o.data, obj_data);
    assert!(o.complete);
    assert_eq!(o.check, Check::Match);
    assert_eq!(o.sender.as_deref(), Some("bob@example.com"));
}

/// An invite + accept for `sid` offering `d` as a display picture with hash `hash`.
fn offer(c: &mut Conv, id: u32, sid: u32, d: &[u8], hash: &str) {
    let mut ctx = msnobj("bob@example.com", 3, d, hash, &format!("p{sid}.tmp")).into_bytes();
    ctx.push(0);
    let inv = slp_invite(
        "alice@example.com",
        "bob@example.com",
        "",
        sid,
        "{A4268EEC-FEC5-49E5-95C3-F126696BDBF6}",
        1,
        &ctx,
    );
    v1_slp(c, Dir::C2s, id, &inv, "bob@example.com");
    let ok = slp_status("bob@example.com", "alice@example.com", "200 OK", sid);
    v1_slp(c, Dir::S2c, id + 1, &ok, "alice@example.com");
}

fn v1_chunk(c: &mut Conv, sid: u32, id: u32, d: &[u8], off: usize, n: usize) {
    let body = build::v1(
        sid,
        id,
        off as u64,
        d.len() as u64,
        0x20,
        &d[off..off + n],
        Some(1),
    );
    c.p2p(Dir::S2c, "bob@example.com", "alice@example.com", &body);
}

#[test]
fn out_of_order_chunks() {
    let d = data(3500, 1);
    let mut c = Conv::new(1, 11, "");
    offer(&mut c, 10, 1234, &d, &sha1d(&d));
    for off in [2400, 0, 1200] {
        v1_chunk(&mut c, 1234, 55, &d, off, (d.len() - off).min(1200));
    }
    let (objs, _) = extract(&c.close());
    assert_eq!(objs.len(), 1);
    assert!(objs[0].complete);
    assert_eq!(objs[0].data, d);
    assert_eq!(objs[0].check, Check::Match);
}

#[test]
fn two_interleaved_transfers() {
    let (d1, d2) = (data(2500, 7), data(2000, 9));
    let mut c = Conv::new(1, 11, "");
    offer(&mut c, 10, 111, &d1, &sha1d(&d1));
    offer(&mut c, 20, 222, &d2, &sha1d(&d2));
    for off in [0, 1000, 2000] {
        v1_chunk(&mut c, 111, 1, &d1, off, (d1.len() - off).min(1000));
        if off < d2.len() {
            v1_chunk(&mut c, 222, 2, &d2, off, (d2.len() - off).min(1000));
        }
    }
    let (objs, _) = extract(&c.close());
    assert_eq!(objs.len(), 2, "{objs:#?}");
    let by = |sid| objs.iter().find(|o| o.session_id == sid).unwrap();
    assert_eq!(by(111).data, d1);
    assert_eq!(by(222).data, d2);
    assert!(objs.iter().all(|o| o.complete && o.check == Check::Match));
    assert_eq!(by(111).name.as_deref(), Some("p111.tmp"));
}

#[test]
fn truncated_transfer_is_reported_and_written_as_partial() {
    let d = data(3000, 3);
    let mut c = Conv::new(1, 11, "");
    offer(&mut c, 10, 42, &d, &sha1d(&d));
    v1_chunk(&mut c, 42, 5, &d, 0, 1200);
    v1_chunk(&mut c, 42, 5, &d, 1200, 1200); // the last 600 bytes never come
    let dir = tempdir("trunc");
    let mut sink = ExtractSink::new(&dir, Limits::default()).unwrap();
    sink.feed_all(c.close()).unwrap();
    sink.finish().unwrap();
    assert_eq!(sink.done.len(), 1);
    let o = &sink.done[0].object;
    assert!(!o.complete);
    assert_eq!(o.received, 2400);
    assert_eq!(o.expected_size, Some(3000));
    assert_eq!(o.size, 2400);
    assert!(matches!(o.check, Check::Mismatch { .. }));
    let p = sink.done[0].path.clone().unwrap();
    assert!(
        p.to_string_lossy().ends_with(".bin.partial"),
        "{}",
        p.display()
    );
    assert_eq!(std::fs::read(&p).unwrap(), &d[..2400]);
}

#[test]
fn sha1d_mismatch_is_reported() {
    let d = data(100, 4);
    let other = data(100, 5);
    let mut c = Conv::new(1, 11, "");
    offer(&mut c, 10, 9, &d, &sha1d(&other));
    v1_chunk(&mut c, 9, 5, &d, 0, 100);
    let (objs, _) = extract(&c.close());
    assert_eq!(objs.len(), 1);
    assert!(objs[0].complete);
    assert_eq!(
        objs[0].check,
        Check::Mismatch {
            expected: sha1d(&other)
        }
    );
    assert_eq!(objs[0].sha1, sha1d(&d));
}

#[test]
fn json_lines_alone_are_enough() {
    let evs = msnp11_picture(1);
    let lines: Vec<String> = evs
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let back: Vec<Event> = lines.iter().map(|l| Event::from_json(l).unwrap()).collect();
    // Every P2P body travels as base64 in the JSON, whatever its bytes look like.
    let bodies: Vec<&Body> = back
        .iter()
        .filter_map(|e| {
            let c = e.command()?.payload.as_ref()?.content()?;
            c.p2p.as_ref()?;
            c.body.as_ref()
        })
        .collect();
    assert_eq!(bodies.len(), 5);
    assert!(bodies.iter().all(|b| matches!(b, Body::Base64 { .. })));
    let (objs, _) = extract(&back);
    assert_eq!(objs.len(), 1);
    assert_eq!(objs[0].data, PNG);
    assert_eq!(objs[0].check, Check::Match);
}

#[test]
fn file_transfer_with_chunked_invite_and_hostile_name() {
    let d = data(5000, 2);
    // File-transfer context: header length 574, version 2, size, type 0, then the name in
    // UTF-16LE, then a 2000-byte preview, so the INVITE spans several P2P chunks.
    let mut ctx = vec![0u8; 574];
    ctx[0..4].copy_from_slice(&574u32.to_le_bytes());
    ctx[4..8].copy_from_slice(&2u32.to_le_bytes());
    ctx[8..16].copy_from_slice(&(d.len() as u64).to_le_bytes());
    for (i, ch) in "..\\..\\report 1.txt".encode_utf16().enumerate() {
        ctx[20 + 2 * i..22 + 2 * i].copy_from_slice(&ch.to_le_bytes());
    }
    ctx.extend_from_slice(&data(2000, 8));
    let inv = slp_invite(
        "bob@example.com",
        "alice@example.com",
        "",
        31337,
        "{5D3E02AB-6190-11D3-BBBB-00C04F795683}",
        2,
        &ctx,
    );
    assert!(inv.len() > 2400);
    let mut c = Conv::new(1, 11, "");
    for off in (0..inv.len()).step_by(1202) {
        let n = (inv.len() - off).min(1202);
        let body = build::v1(
            0,
            70,
            off as u64,
            inv.len() as u64,
            0,
            &inv[off..off + n],
            Some(0),
        );
        c.p2p(Dir::S2c, "bob@example.com", "alice@example.com", &body);
    }
    for off in (0..d.len()).step_by(1202) {
        let n = (d.len() - off).min(1202);
        let body = build::v1(
            31337,
            71,
            off as u64,
            d.len() as u64,
            0x0100_0030,
            &d[off..off + n],
            Some(2),
        );
        c.p2p(Dir::S2c, "bob@example.com", "alice@example.com", &body);
    }
    let (objs, _) = extract(&c.close());
    assert_eq!(objs.len(), 1, "{objs:#?}");
    let o = &objs[0];
    assert_eq!(o.kind, "file");
    assert_eq!(o.data, d);
    assert_eq!(o.check, Check::NoHash);
    assert_eq!(o.sender.as_deref(), Some("bob@example.com"));
    assert_eq!(o.name.as_deref(), Some("..\\..\\report 1.txt"));
    assert_eq!(
        msntap::analysis::extract::file_name(o),
        "bob@example.com-file-report_1.txt"
    );
}

#[test]
fn declined_session_is_noted() {
    let mut c = Conv::new(1, 11, "");
    let mut ctx = msnobj("bob@example.com", 3, PNG, PNG_SHA1D, "PIC.tmp").into_bytes();
    ctx.push(0);
    let inv = slp_invite(
        "alice@example.com",
        "bob@example.com",
        "",
        5,
        "{A4268EEC-FEC5-49E5-95C3-F126696BDBF6}",
        1,
        &ctx,
    );
    v1_slp(&mut c, Dir::C2s, 1, &inv, "bob@example.com");
    let no = slp_status("bob@example.com", "alice@example.com", "603 Decline", 5);
    v1_slp(&mut c, Dir::S2c, 2, &no, "alice@example.com");
    let (objs, notes) = extract(&c.close());
    assert!(objs.is_empty());
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains("declined"), "{notes:?}");
}

#[test]
fn memory_stays_bounded() {
    let limits = Limits {
        max_object: 10_000,
        max_open: 4,
        max_buffered: 20_000,
        max_slp: 4096,
    };
    let mut c = Conv::new(1, 11, "");
    // A header declaring 4 GiB is refused without allocating.
    c.p2p(
        Dir::S2c,
        "bob@example.com",
        "alice@example.com",
        &build::v1(1, 1, 0, 4 << 30, 0x20, b"xx", Some(1)),
    );
    // Twenty transfers that never finish: at most four are held at once.
    for sid in 10..30u32 {
        c.p2p(
            Dir::S2c,
            "bob@example.com",
            "alice@example.com",
            &build::v1(sid, sid, 0, 9000, 0x20, &data(3000, 1), Some(1)),
        );
    }
    let evs = c.close();
    let mut ex = Extractor::new(limits);
    let mut out = Vec::new();
    for e in &evs {
        ex.event(e, &mut out);
        assert!(ex.open() <= 4);
        assert!(ex.buffered() <= 20_000);
    }
    ex.finish(&mut out);
    assert_eq!(out.len(), 21);
    assert!(
        out[0]
            .problems
            .iter()
            .any(|p| p.contains("over the 10000 byte limit")),
        "{:?}",
        out[0].problems
    );
    assert!(out.iter().all(|o| !o.complete));
}

/// The stream ends inside the last chunk's payload: the bytes of it that arrived are kept,
/// the object comes out truncated, and the same holds when the events are read back from
/// JSON Lines. (Schema 1 sliced the chunk out of the frame's bytes, which for a payload
/// cut off by the stream's end were the command line.)
#[test]
fn truncated_final_chunk_keeps_what_arrived() {
    let d = data(3000, 6);
    let mut c = Conv::new(1, 11, "");
    offer(&mut c, 10, 43, &d, &sha1d(&d));
    v1_chunk(&mut c, 43, 5, &d, 0, 1200);
    v1_chunk(&mut c, 43, 5, &d, 1200, 1200);
    // The last chunk (600 bytes and the 4-byte footer) loses its footer and 250 bytes.
    let last = build::v1(43, 5, 2400, 3000, 0x20, &d[2400..], Some(1));
    c.p2p_cut(
        Dir::S2c,
        "bob@example.com",
        "alice@example.com",
        &last,
        4 + 250,
    );
    let evs = c.close();
    let cut = evs
        .iter()
        .filter_map(|e| e.command())
        .filter(|c| c.payload.as_ref().is_some_and(|p| p.problem.is_some()))
        .collect::<Vec<_>>();
    assert_eq!(cut.len(), 1, "one command cut off by the end of the stream");
    assert!(
        cut[0].line.starts_with("MSG bob@example.com Peer "),
        "{}",
        cut[0].line
    );
    let p2p = p2p_of(&evs);
    let lp = p2p.last().unwrap();
    assert_eq!((lp.offset, lp.data_length), (Some(2400), Some(350)));
    let lines: Vec<String> = evs
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let back: Vec<Event> = lines.iter().map(|l| Event::from_json(l).unwrap()).collect();
    for evs in [&evs, &back] {
        let (objs, _) = extract(evs);
        assert_eq!(objs.len(), 1, "{objs:#?}");
        let o = &objs[0];
        assert!(!o.complete);
        assert_eq!(o.received, 2750);
        assert_eq!(o.data, &d[..2750]);
        assert_eq!(o.expected_size, Some(3000));
        assert!(matches!(o.check, Check::Mismatch { .. }));
        assert!(
            o.problems
                .iter()
                .any(|p| p.contains("600 data bytes, 350 present")),
            "{:?}",
            o.problems
        );
    }
}

#[test]
fn cli_extracts_from_json_lines() {
    let dir = tempdir("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("events.jsonl");
    let mut text = String::new();
    for e in msnp11_picture(1) {
        text.push_str(&serde_json::to_string(&e).unwrap());
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let out_dir = dir.join("objects");
    let report = dir.join("report.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_msntap"))
        .arg("extract")
        .arg(&input)
        .arg("-o")
        .arg(&out_dir)
        .arg("--json")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("display_picture 70 bytes"), "{stdout}");
    assert!(stdout.contains("SHA1D match, complete"), "{stdout}");
    assert!(
        stderr.contains("1 objects (1 complete, 0 truncated, 0 duplicates); SHA1D: 1 match"),
        "{stderr}"
    );
    let written = out_dir.join("bob@example.com-display_picture-PIC.png");
    assert_eq!(std::fs::read(&written).unwrap(), PNG);
    let r: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&report).unwrap().trim()).unwrap();
    assert_eq!(r["sha1d_check"], "match");
    assert_eq!(r["sha1"], PNG_SHA1D);
    assert_eq!(r["complete"], true);
}

/// The real capture: msnp11-sdk against Escargot, where alice fetches bob's display picture.
/// The picture travels on both switchboard legs (bob's upload, alice's download).
#[test]
fn real_capture_display_picture_matches_its_sha1d() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures/msnp11_msnp11-sdk_escargot.pcap");
    if !path.exists() {
        println!("skipped: {} is not present", path.display());
        return;
    }
    let tables = Arc::new(Tables::builtin().unwrap());
    let mut ex = Extractor::new(Limits::default());
    let mut objs = Vec::new();
    msntap::capture::read_path(&path, tables, &Default::default(), &mut |ev| {
        ex.event(ev, &mut objs);
        Ok(())
    })
    .unwrap();
    ex.finish(&mut objs);
    assert_eq!(objs.len(), 2, "{objs:#?}");
    for o in &objs {
        assert_eq!(o.kind, "display_picture");
        assert_eq!(o.sender.as_deref(), Some("bob@example.com"));
        assert!(o.complete);
        assert_eq!(o.data.len(), 70);
        // Hashed here, compared with the SHA1D from the client log.
        assert_eq!(sha1d(&o.data), PNG_SHA1D);
        assert_eq!(o.check, Check::Match);
    }
    assert_eq!(objs[0].duplicate_of, None);
    assert_eq!(objs[1].duplicate_of, Some(1));
}

#[test]
fn cli_extracts_from_the_real_capture() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures/msnp11_msnp11-sdk_escargot.pcap");
    if !path.exists() {
        println!("skipped: {} is not present", path.display());
        return;
    }
    let dir = tempdir("cli-pcap");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_msntap"))
        .arg("extract")
        .arg(&path)
        .arg("-o")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("SHA1D match, complete"))
            .count(),
        2,
        "{stdout}"
    );
    let written = dir.join("bob@example.com-display_picture-PIC.png");
    assert_eq!(sha1d(&std::fs::read(&written).unwrap()), PNG_SHA1D);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// A P2P body with arbitrary header fields (lengths may lie) and arbitrary data.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        (
            0u32..4,
            0u32..4,
            prop_oneof![Just(0u64), 0u64..5000, any::<u64>()],
            prop_oneof![Just(0u64), 0u64..5000, any::<u64>()],
            prop_oneof![Just(0u32), Just(0x20u32), Just(0x2u32), any::<u32>()],
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
        )
            .prop_map(|(sid, id, off, total, flags, data, v2)| {
                if v2 {
                    build::v2(
                        id,
                        None,
                        (flags & 7) as u8,
                        id as u16,
                        sid,
                        off % 10_000,
                        &data,
                        1,
                    )
                } else {
                    let mut b = build::v1(sid, id, off, total, flags, &data, Some(1));
                    if flags & 1 == 1 {
                        // Lie about the chunk size.
                        b[24..28].copy_from_slice(&(total as u32).to_le_bytes());
                    }
                    b
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_p2p_never_panics_and_stays_bounded(bodies in proptest::collection::vec((body(), any::<bool>()), 1..40)) {
            let limits = Limits { max_object: 20_000, max_open: 8, max_buffered: 50_000, max_slp: 4096 };
            let mut c = Conv::new(1, 11, "");
            for (b, v2dest) in &bodies {
                let dest = if *v2dest { "bob@example.com;{1}" } else { "bob@example.com" };
                c.p2p(Dir::S2c, "alice@example.com", dest, b);
            }
            let mut ex = Extractor::new(limits);
            let mut out = Vec::new();
            for e in c.close() {
                ex.event(&e, &mut out);
                prop_assert!(ex.open() <= 8);
                prop_assert!(ex.buffered() <= 50_000);
            }
            ex.finish(&mut out);
            for o in &out {
                prop_assert!(o.size <= 20_000);
                if o.complete {
                    // A complete object has every byte received, no holes.
                    prop_assert_eq!(o.received, o.size);
                }
            }
        }
    }
}
