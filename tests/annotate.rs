//! `msntap annotate` as a user runs it: every packet of the input comes out unchanged (bytes,
//! lengths, timestamp, link type, order), `msntap read` of the result gives the same events,
//! and the comments say what was decoded, with secrets redacted unless asked otherwise.
//! Packets are read back here with pcap-parser directly, never with msntap's own reader.
//! Files are written only under the system temporary directory.

mod scratch_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use msntap::capture::writer::{CaptureWriter, Endian, Format, Link, TcpFlowWriter};
use msntap::{Dir, Ts};
use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, OptionCode, PcapBlockOwned, PcapError};
use scratch_support::Scratch;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn msntap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_msntap"))
}

/// One packet as a capture file stores it.
#[derive(Debug, Clone, PartialEq)]
struct Pkt {
    linktype: i32,
    /// Timestamp in nanoseconds since the epoch (exact for micro- and nanosecond files).
    ts_ns: u128,
    /// Timestamp units per second of the packet's interface.
    units: u64,
    origlen: u32,
    data: Vec<u8>,
    comments: Vec<String>,
}

/// Every packet of a pcap or pcapng file, read with pcap-parser.
fn packets(path: &Path) -> Vec<Pkt> {
    let f = std::fs::File::open(path).expect("open");
    let mut r = create_reader(1 << 20, f).expect("capture header");
    // Per interface of the current section: link type, units per second, offset.
    let mut ifaces: Vec<(i32, u64, i64)> = Vec::new();
    let mut out = Vec::new();
    loop {
        match r.next() {
            Ok((len, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        let units = if h.is_nanosecond_precision() {
                            1_000_000_000
                        } else {
                            1_000_000
                        };
                        ifaces = vec![(h.network.0, units, 0)];
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let (lt, units, _) = ifaces[0];
                        let ts = u128::from(b.ts_sec) * 1_000_000_000
                            + u128::from(b.ts_usec) * (1_000_000_000 / u128::from(units));
                        out.push(Pkt {
                            linktype: lt,
                            ts_ns: ts,
                            units,
                            origlen: b.origlen,
                            data: b.data[..b.caplen as usize].to_vec(),
                            comments: Vec::new(),
                        });
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => ifaces.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        let units =
                            pcap_parser::pcapng::build_ts_resolution(idb.if_tsresol).expect("res");
                        ifaces.push((idb.linktype.0, units, idb.if_tsoffset));
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let (lt, units, off) = ifaces[epb.if_id as usize];
                        let t = (u128::from(epb.ts_high) << 32) | u128::from(epb.ts_low);
                        let ts = t * (1_000_000_000 / u128::from(units))
                            + (off as i128 * 1_000_000_000) as u128;
                        let comments = epb
                            .options
                            .iter()
                            .filter(|o| o.code == OptionCode::Comment)
                            .map(|o| {
                                String::from_utf8(o.value()[..o.len as usize].to_vec())
                                    .expect("utf-8 comment")
                            })
                            .collect();
                        out.push(Pkt {
                            linktype: lt,
                            ts_ns: ts,
                            units,
                            origlen: epb.origlen,
                            data: epb.data[..epb.caplen as usize].to_vec(),
                            comments,
                        });
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(_)) => panic!("simple packet block"),
                    PcapBlockOwned::NG(_) => {}
                }
                r.consume(len);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => r.refill().expect("refill"),
            Err(e) => panic!("{}: {e:?}", path.display()),
        }
    }
    out
}

/// Runs `msntap annotate`, which must succeed; returns what it said on stderr.
fn annotate(input: &Path, out: &Path, extra: &[&str]) -> String {
    let o = msntap()
        .arg("annotate")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{}: {err}", input.display());
    err
}

fn read_json(path: &Path) -> String {
    let o = msntap()
        .args(["read", "--json", "-", "--quiet"])
        .arg(path)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8")
}

/// Checks (a) packets unchanged and (b) the same events; returns the output's packets. The
/// output is written in `dir`.
fn check_copy(input: &Path, dir: &Path) -> Vec<Pkt> {
    let name = input.file_name().expect("name").to_string_lossy();
    let out = dir.join(format!("{name}.annotated.pcapng"));
    annotate(input, &out, &[]);
    let before = packets(input);
    let after = packets(&out);
    assert_eq!(before.len(), after.len(), "{name}: packet count");
    assert!(!before.is_empty(), "{name}: no packets");
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(b.data, a.data, "{name}: packet {} bytes", i + 1);
        assert_eq!(b.ts_ns, a.ts_ns, "{name}: packet {} timestamp", i + 1);
        assert_eq!(b.units, a.units, "{name}: packet {} resolution", i + 1);
        assert_eq!(b.linktype, a.linktype, "{name}: packet {} link type", i + 1);
        assert_eq!(b.origlen, a.origlen, "{name}: packet {} length", i + 1);
        // Comments already there are kept, in front of ours.
        assert_eq!(
            b.comments[..],
            a.comments[..b.comments.len()],
            "{name}: packet {}",
            i + 1
        );
    }
    let (ja, jb) = (read_json(input), read_json(&out));
    assert!(!ja.is_empty(), "{name}: no events");
    assert_eq!(ja, jb, "{name}: events differ after annotation");
    after
}

fn capture_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_capture_is_copied_unchanged_and_reads_the_same() {
    let dir = Scratch::dir("annotate-every");
    let mut files = capture_files(&root().join("captures"));
    files.extend(capture_files(&root().join("captures/synth")));
    assert!(files.len() >= 8, "{files:?}");
    for f in &files {
        let after = check_copy(f, &dir);
        assert!(
            after.iter().any(|p| !p.comments.is_empty()),
            "{}: no comment at all",
            f.display()
        );
    }
}

#[test]
fn shared_sample_capture_is_copied_unchanged() {
    let p = root().join("../shared/captures/msnms.pcap");
    if !p.exists() {
        println!(
            "skipped: {} is absent (only the project machine has it)",
            p.display()
        );
        return;
    }
    let dir = Scratch::dir("annotate-shared");
    let after = check_copy(&p, &dir);
    assert!(after.iter().any(|p| !p.comments.is_empty()));
}

/// The comments of the packets whose comment contains `needle`.
fn with<'a>(pk: &'a [Pkt], needle: &str) -> Vec<&'a str> {
    pk.iter()
        .flat_map(|p| p.comments.iter())
        .filter(|c| c.contains(needle))
        .map(String::as_str)
        .collect()
}

#[test]
fn comments_say_what_each_packet_completes_and_redact_secrets() {
    let dir = Scratch::dir("annotate-comments");
    let input = root().join("captures/msnp8_twisted_escargot.pcap");
    let out = dir.join("twisted.pcapng");
    annotate(&input, &out, &[]);
    let pk = packets(&out);
    // Alice's message to Bob (connection 3, the switchboard she opened) and its relay to
    // Bob (connection 4); checked against `msntap read` by eye and the client log.
    let hello = with(&pk, "Hello from alice@example.com (Twisted MSNP8)");
    assert_eq!(hello.len(), 2, "{hello:?}");
    // Frame 120 of the original starts with `MSG 4 A 157` (seen with tshark); Bob's
    // switchboard relays it in frame 122.
    assert_eq!(
        hello[0],
        "#3 c2s MSG 4 A 157: text/plain [Arial, #000000]: Hello from alice@example.com (Twisted MSNP8)"
    );
    assert!(
        hello[1].starts_with("#4 s2c MSG alice@example.com Alice%2520T 157: text/plain"),
        "{hello:?}"
    );
    assert_eq!(pk[119].comments, [hello[0]]);
    assert_eq!(pk[121].comments, [hello[1]]);
    // The Passport tickets of USR 4 TWN S are redacted...
    let usr = with(&pk, "USR 4 TWN S");
    assert_eq!(usr.len(), 2, "{usr:?}");
    for c in &usr {
        assert!(c.contains("USR 4 TWN S <redacted>"), "{c}");
    }
    let all: String = pk.iter().flat_map(|p| p.comments.clone()).collect();
    for secret in [
        "4b3d8c3996f8e284f361",
        "4a1b3bf8b2be5377f75c",
        "7e954e9435ea921faa2d",
        "9789630c001f2314fb9f",
    ] {
        assert!(!all.contains(secret), "{secret} in comments");
    }
    // ...and the connection opening is described on the SYN.
    assert!(pk[0].comments[0].starts_with("#1 connect "), "{:?}", pk[0]);
    // The packets themselves still carry the tickets, so even this file is owner-only.
    assert!(pk
        .iter()
        .any(|p| p.data.windows(20).any(|w| w == b"4b3d8c3996f8e284f361")));
    #[cfg(unix)]
    assert_eq!(mode(&out) & 0o077, 0, "mode {:o}", mode(&out));

    // --no-redact keeps them, in an owner-only file.
    let raw = dir.join("twisted-secrets.pcapng");
    annotate(&input, &raw, &["--no-redact"]);
    let pk = packets(&raw);
    assert!(with(&pk, "USR 4 TWN S 4b3d8c3996f8e284f361").len() == 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&raw).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }
}

#[test]
fn payload_split_over_segments_is_reported_pending_then_complete() {
    let dir = Scratch::dir("annotate-split");
    // One MSG whose 300-byte payload arrives in 100-byte segments.
    let body = format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{}",
        "x".repeat(300 - 62)
    );
    assert_eq!(body.len(), 300);
    let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, Link::Ethernet).expect("w");
    let mut f = TcpFlowWriter::new(
        "10.1.1.1:40000".parse().expect("a"),
        "10.2.2.2:1863".parse().expect("a"),
    );
    let mut t = 1_000_000;
    let mut put = |w: &mut CaptureWriter<Vec<u8>>, p: &[u8]| {
        t += 1;
        w.write_ip(0, Ts(t), p, None).expect("write");
    };
    for (_, p) in f.handshake().expect("hs") {
        put(&mut w, &p);
    }
    let msg = format!("MSG 4 N 300\r\n{body}");
    let head = b"MSG 4 N 300\r\n".len();
    for p in f.data(Dir::C2s, msg.as_bytes(), 100).expect("data") {
        put(&mut w, &p);
    }
    let input = dir.join("split.pcap");
    std::fs::write(&input, w.into_inner().expect("bytes")).expect("write");
    let pk = check_copy(&input, &dir);
    let data: Vec<&Pkt> = pk.iter().skip(3).collect();
    assert_eq!(data.len(), 4, "313 bytes in 100-byte segments");
    // The first segment holds the line and 87 payload bytes, then 187, then 287.
    for (i, p) in data[..3].iter().enumerate() {
        let have = (i + 1) * 100 - head;
        assert_eq!(
            p.comments,
            [format!(
                "#1 pending c2s: {have} of 300 payload bytes of MSG 4"
            )]
        );
    }
    let last = &data[3].comments;
    assert_eq!(last.len(), 1);
    assert!(
        last[0].starts_with("#1 c2s MSG 4 N 300: text/plain") && !last[0].contains("pending"),
        "{last:?}"
    );
}

/// The packets of a connection's handshake and a `VER` exchange (MSNP8), and its writer.
fn ver_exchange() -> (TcpFlowWriter, Vec<Vec<u8>>) {
    let mut f = TcpFlowWriter::new(
        "10.1.1.1:40000".parse().expect("a"),
        "10.2.2.2:1863".parse().expect("a"),
    );
    let mut pk: Vec<Vec<u8>> = f
        .handshake()
        .expect("hs")
        .into_iter()
        .map(|x| x.1)
        .collect();
    pk.extend(f.data(Dir::C2s, b"VER 1 MSNP8 CVR0\r\n", 1000).expect("d"));
    pk.extend(f.data(Dir::S2c, b"VER 1 MSNP8\r\n", 1000).expect("d"));
    (f, pk)
}

/// A reply written to the file before the command it answers (its ACK covers client bytes not
/// yet in) is parked until they come: both commands are then listed, command first, on the
/// packet that brought the client's bytes (docs/capture.md, "What a comment says"), and the
/// reply's own packet lists nothing.
#[test]
fn a_parked_reply_is_listed_on_the_packet_that_released_it() {
    let dir = Scratch::dir("annotate-parked");
    let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, Link::Ethernet).expect("w");
    let (mut f, mut pk) = ver_exchange();
    let cvr = f
        .data(
            Dir::C2s,
            b"CVR 2 0x0409 winnt 5.1 i386 MSNMSGR 6.0.0602 MSMSGS a@b.c\r\n",
            1000,
        )
        .expect("d");
    let reply = f
        .data(
            Dir::S2c,
            b"CVR 2 6.0.0602 6.0.0602 1.0.0000 http://x/ http://y/\r\n",
            1000,
        )
        .expect("d");
    assert_eq!((cvr.len(), reply.len()), (1, 1));
    // The reply goes into the file first.
    pk.extend(reply);
    pk.extend(cvr);
    let mut t = 1_000_000;
    for p in &pk {
        t += 1;
        w.write_ip(0, Ts(t), p, None).expect("write");
    }
    let input = dir.join("parked.pcap");
    std::fs::write(&input, w.into_inner().expect("bytes")).expect("write");
    let out = check_copy(&input, &dir);
    assert_eq!(out.len(), 7, "3 handshake packets and 4 data packets");
    let (reply_pkt, cvr_pkt) = (&out[5], &out[6]);
    assert!(
        !reply_pkt.comments.iter().any(|c| c.contains("CVR")),
        "the parked reply's own packet: {:?}",
        reply_pkt.comments
    );
    // One comment, one line per event.
    let listed: Vec<&str> = cvr_pkt
        .comments
        .iter()
        .flat_map(|c| c.lines())
        .filter(|l| l.contains("CVR 2"))
        .collect();
    assert_eq!(listed.len(), 2, "{:?}", cvr_pkt.comments);
    assert!(listed[0].starts_with("#1 c2s CVR 2 0x0409"), "{listed:?}");
    assert!(listed[1].starts_with("#1 s2c CVR 2 6.0.0602"), "{listed:?}");
    // And the reading keeps that order too.
    let json = read_json(&input);
    let order: Vec<&str> = json
        .lines()
        .filter(|l| l.contains("\"cmd\":\"CVR\""))
        .map(|l| {
            if l.contains("\"dir\":\"c2s\"") {
                "c2s"
            } else {
                "s2c"
            }
        })
        .collect();
    assert_eq!(order, ["c2s", "s2c"]);
}

#[test]
fn pcapng_interfaces_byte_order_and_existing_comments_are_kept() {
    let dir = Scratch::dir("annotate-pcapng");
    // Big-endian pcapng with a microsecond Linux-cooked interface and a nanosecond raw-IP
    // one; one packet already carries a comment.
    let mut w = CaptureWriter::with_options(
        Vec::new(),
        Format::PcapNg,
        Link::LinuxSll,
        false,
        Endian::Big,
    )
    .expect("w");
    let raw = w.add_interface(Link::Raw, true).expect("iface");
    let mut f = TcpFlowWriter::new(
        "10.1.1.1:40000".parse().expect("a"),
        "10.2.2.2:1863".parse().expect("a"),
    );
    let mut t = 1_117_627_200_000_000;
    let mut n = 0;
    let hs = f.handshake().expect("hs");
    let data = f.data(Dir::C2s, b"VER 1 MSNP8 CVR0\r\n", 1000).expect("d");
    let reply = f.data(Dir::S2c, b"VER 1 MSNP8\r\n", 1000).expect("d");
    for p in hs.into_iter().map(|(_, p)| p).chain(data).chain(reply) {
        t += 1;
        n += 1;
        let iface = if n % 2 == 0 { raw } else { 0 };
        let c = (n == 4).then_some("already here");
        w.write_ip(iface, Ts(t), &p, c).expect("w");
    }
    let input = dir.join("two-ifaces.pcapng");
    std::fs::write(&input, w.into_inner().expect("bytes")).expect("write");
    let pk = check_copy(&input, &dir);
    assert_eq!(pk.len(), 5);
    assert_eq!(pk[0].linktype, 113);
    assert_eq!(pk[1].linktype, 101);
    assert_eq!(pk[1].units, 1_000_000_000);
    assert_eq!(
        pk[3].comments,
        ["already here", "#1 c2s VER 1 MSNP8 CVR0"],
        "{pk:?}"
    );
    assert_eq!(pk[4].comments, ["#1 s2c VER 1 MSNP8"]);
    // The output keeps the input's byte order: its section header is big-endian.
    let out = std::fs::read(dir.join("two-ifaces.pcapng.annotated.pcapng")).expect("read");
    assert_eq!(&out[8..12], &0x1A2B_3C4Du32.to_be_bytes());
}

#[test]
fn bad_input_is_refused_clearly() {
    let dir = Scratch::dir("annotate-bad");
    let bad = dir.join("not-a-capture.pcap");
    std::fs::write(&bad, b"GIF89a certainly not a capture").expect("write");
    let o = msntap()
        .arg("annotate")
        .arg(&bad)
        .arg("-o")
        .arg(dir.join("never.pcapng"))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("not a pcap or pcapng file"), "{e}");
    // Annotating a file onto itself would destroy it.
    let input = root().join("captures/synth/msnp2_md5.pcap");
    let o = msntap()
        .arg("annotate")
        .arg(&input)
        .arg("-o")
        .arg(&input)
        .output()
        .expect("run");
    assert!(!o.status.success());
    // The one output function refuses it (tests/cli_outputs.rs covers links and stdin).
    assert!(String::from_utf8_lossy(&o.stderr).contains("is also an input of this run"));
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777
}

#[cfg(unix)]
fn set_mode(p: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
}

/// A capture of one connection that carries no secret: a version exchange and a message.
fn capture_without_secrets() -> Vec<u8> {
    let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, Link::Ethernet).expect("w");
    let (mut f, mut pk) = ver_exchange();
    let mut t = 1_000_000;
    let body = "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nhello";
    let msg = format!("MSG 2 N {}\r\n{body}", body.len());
    pk.extend(f.data(Dir::C2s, msg.as_bytes(), 1000).expect("d"));
    pk.extend(f.close(Dir::C2s).expect("close").into_iter().map(|x| x.1));
    for p in pk {
        t += 1;
        w.write_ip(0, Ts(t), &p, None).expect("write");
    }
    w.into_inner().expect("bytes")
}

/// The copied packets keep every byte, secrets included: the output is owner-only when the
/// input held any (even with redacted comments), and an ordinary file when it held none.
#[cfg(unix)]
#[test]
fn output_mode_follows_the_secrets_of_the_input() {
    let dir = Scratch::dir("annotate-mode");
    // What a new file gets here (the umask applies to msntap as to this test).
    let probe = dir.join("mode-probe");
    let _ = std::fs::remove_file(&probe);
    std::fs::File::create(&probe).expect("probe");
    let usual = mode(&probe);

    // Tickets and cookies on the wire; the output is already there, world-readable.
    let input = root().join("captures/msnp8_twisted_escargot.pcap");
    let out = dir.join("mode-secrets.pcapng");
    std::fs::write(&out, b"an earlier run").expect("write");
    set_mode(&out, 0o644);
    let err = annotate(&input, &out, &[]);
    assert_eq!(mode(&out) & 0o077, 0, "mode {:o}: {err}", mode(&out));
    assert!(err.contains("was readable by others (mode 644)"), "{err}");
    assert!(err.contains("owner-only"), "{err}");
    let comments: String = packets(&out)
        .iter()
        .flat_map(|p| p.comments.clone())
        .collect();
    assert!(comments.contains("USR 4 TWN S <redacted>"));
    assert!(!comments.contains("4b3d8c3996f8e284f361"));

    // No secret anywhere: the usual mode.
    let clean = dir.join("no-secrets.pcap");
    std::fs::write(&clean, capture_without_secrets()).expect("write");
    set_mode(&clean, 0o644);
    let out = dir.join("mode-clean.pcapng");
    let _ = std::fs::remove_file(&out);
    let err = annotate(&clean, &out, &[]);
    assert_eq!(mode(&out), usual, "{err}");
    assert!(!err.contains("owner-only"), "{err}");
    assert!(packets(&out).iter().any(|p| p
        .comments
        .iter()
        .any(|c| c == "#1 c2s MSG 2 N 52: text/plain: hello")));
    // ...unless asked to keep secrets, or the input itself is owner-only.
    let err = annotate(&clean, &out, &["--no-redact"]);
    assert_eq!(mode(&out) & 0o077, 0, "{err}");
    set_mode(&clean, 0o600);
    let out2 = dir.join("mode-clean-private.pcapng");
    let _ = std::fs::remove_file(&out2);
    let err = annotate(&clean, &out2, &[]);
    assert_eq!(mode(&out2) & 0o077, 0, "{err}");
}
