//! Decoder fixtures for every MSNP dialect 2..21: decodes captures/logs/msnpN.log through the
//! library exactly as `msntap decode` does and checks facts written into each log by hand
//! (addresses, cookies, message texts, challenge answers computed separately in Python).
//! It must not take expected values from the decoder's own output, and it reads only files
//! inside the project.

use std::path::PathBuf;
use std::sync::Arc;

use msntap::event::{Command, Version};
use msntap::protocol::redirect;
use msntap::{logfile, Dir, Event, EventKind, Service, Session, SessionHint, Tables};

/// What each log was written to contain.
struct Fx {
    v: u8,
    /// Connections in the log: DS, NS, then the XFR and RNG switchboards where present.
    conns: usize,
    /// XFR NS referral address given by the dispatch server.
    ns: &'static str,
    /// (product id, challenge, answer): the answer computed in Python with md5(chl + key)
    /// for MSNP6-10 and the protocol-facts C.2 algorithm for MSNP11+ (which reproduced
    /// the published test vectors first).
    qry: Option<(&'static str, &'static str, &'static str)>,
    /// Error code the server answers to a bad ADD/ADC/ADL.
    error: u16,
    /// (XFR SB address, cookie, text Alice sends, text Bob answers).
    sb: Option<(&'static str, &'static str, &'static str, &'static str)>,
    /// (RNG address, text Carol sends).
    rng: Option<(&'static str, &'static str)>,
    /// (own CHG capabilities, client version its top nibble names per protocol-facts F.5).
    caps: Option<(&'static str, Option<&'static str>)>,
    /// MSNP21: (text sent with SDG, text received with SDG).
    sdg: Option<(&'static str, &'static str)>,
}

const FIXTURES: &[Fx] = &[
    Fx {
        v: 2,
        conns: 4,
        ns: "207.46.106.102:1863",
        qry: None,
        error: 215,
        sb: Some((
            "207.46.108.32:1863",
            "17264.1184000154.4411",
            "Hi Bob! Testing MSNP2, are you there?",
            "yes, loud and clear (2)",
        )),
        rng: Some(("207.46.108.62:1863", "are we still on for Friday?")),
        caps: None,
        sdg: None,
    },
    Fx {
        v: 3,
        conns: 4,
        ns: "207.46.106.103:1863",
        qry: None,
        error: 215,
        sb: Some((
            "207.46.108.33:1863",
            "17265.1184000231.4411",
            "Hi Bob! Testing MSNP3, are you there?",
            "yes, loud and clear (3)",
        )),
        rng: Some(("207.46.108.63:1863", "are we still on for Friday?")),
        caps: None,
        sdg: None,
    },
    Fx {
        v: 4,
        conns: 4,
        ns: "207.46.106.104:1863",
        qry: None,
        error: 215,
        sb: Some((
            "207.46.108.34:1863",
            "17266.1184000308.4411",
            "Hi Bob! Testing MSNP4, are you there?",
            "yes, loud and clear (4)",
        )),
        rng: Some(("207.46.108.64:1863", "are we still on for Friday?")),
        caps: None,
        sdg: None,
    },
    Fx {
        v: 5,
        conns: 4,
        ns: "207.46.106.105:1863",
        qry: None,
        error: 215,
        sb: Some((
            "207.46.108.35:1863",
            "17267.1184000385.4411",
            "Hi Bob! Testing MSNP5, are you there?",
            "yes, loud and clear (5)",
        )),
        rng: Some(("207.46.108.65:1863", "are we still on for Friday?")),
        caps: None,
        sdg: None,
    },
    Fx {
        v: 6,
        conns: 4,
        ns: "207.46.106.106:1863",
        qry: Some((
            "msmsgs@msnmsgr.com",
            "10000058659258772974",
            "e53371cc9f8f760d8f67575a85162c65",
        )),
        error: 215,
        sb: Some((
            "207.46.108.36:1863",
            "17268.1184000462.4411",
            "Hi Bob! Testing MSNP6, are you there?",
            "yes, loud and clear (6)",
        )),
        rng: Some(("207.46.108.66:1863", "are we still on for Friday?")),
        caps: None,
        sdg: None,
    },
    Fx {
        v: 7,
        conns: 4,
        ns: "207.46.106.107:1863",
        qry: Some((
            "msmsgs@msnmsgr.com",
            "10000068435801901803",
            "ccf3666e79ffa790840f1e996b7eaf32",
        )),
        error: 215,
        sb: Some((
            "207.46.108.37:1863",
            "17269.1184000539.4411",
            "Hi Bob! Testing MSNP7, are you there?",
            "yes, loud and clear (7)",
        )),
        rng: Some(("207.46.108.67:1863", "are we still on for Friday?")),
        caps: None,
        sdg: None,
    },
    Fx {
        v: 8,
        conns: 4,
        ns: "207.46.106.108:1863",
        qry: Some((
            "msmsgs@msnmsgr.com",
            "10000078212345030632",
            "2b38f0bb02a0400b46729124a6bcaacc",
        )),
        error: 215,
        sb: Some((
            "207.46.108.38:1863",
            "17270.1184000616.4411",
            "Hi Bob! Testing MSNP8, are you there?",
            "yes, loud and clear (8)",
        )),
        rng: Some(("207.46.108.68:1863", "are we still on for Friday?")),
        caps: Some(("16428", None)),
        sdg: None,
    },
    Fx {
        v: 9,
        conns: 4,
        ns: "207.46.106.109:1863",
        qry: Some((
            "PROD0038W!61ZTF9",
            "10000087988888159461",
            "b10519fa0590e0aa6d1807fc8bd56480",
        )),
        error: 215,
        sb: Some((
            "207.46.108.39:1863",
            "17271.1184000693.4411",
            "Hi Bob! Testing MSNP9, are you there?",
            "yes, loud and clear (9)",
        )),
        rng: Some(("207.46.108.69:1863", "are we still on for Friday?")),
        caps: Some(("268451884", Some("6.0"))),
        sdg: None,
    },
    Fx {
        v: 10,
        conns: 4,
        ns: "207.46.106.110:1863",
        qry: Some((
            "PROD0061VRRZH@4F",
            "10000097765431288290",
            "02d2f1ceb5229c10dc3b118a1971a70f",
        )),
        error: 215,
        sb: Some((
            "207.46.108.40:1863",
            "17272.1184000770.4411",
            "Hi Bob! Testing MSNP10, are you there?",
            "yes, loud and clear (10)",
        )),
        rng: Some(("207.46.108.70:1863", "are we still on for Friday?")),
        caps: Some(("805322796", Some("6.2"))),
        sdg: None,
    },
    Fx {
        v: 11,
        conns: 4,
        ns: "207.46.106.111:1863",
        qry: Some((
            "PROD0090YUAUV{2B",
            "10000107541974417119",
            "d3d5ace274161cab6680f9e180269fe6",
        )),
        error: 215,
        sb: Some((
            "207.46.108.41:1863",
            "17273.1184000847.4411",
            "Hi Bob! Testing MSNP11, are you there?",
            "yes, loud and clear (11)",
        )),
        rng: Some(("207.46.108.71:1863", "are we still on for Friday?")),
        caps: Some(("1073791020", Some("7.0"))),
        sdg: None,
    },
    Fx {
        v: 12,
        conns: 4,
        ns: "207.46.106.112:1863",
        qry: Some((
            "PROD0101{0RM?UBW",
            "10000117318517545948",
            "0ce8a2403d13eb86ea72362373e980fc",
        )),
        error: 215,
        sb: Some((
            "207.46.108.42:1863",
            "17274.1184000924.4411",
            "Hi Bob! Testing MSNP12, are you there?",
            "yes, loud and clear (12)",
        )),
        rng: Some(("207.46.108.72:1863", "are we still on for Friday?")),
        caps: Some(("1342226476", Some("7.5"))),
        sdg: None,
    },
    Fx {
        v: 13,
        conns: 4,
        ns: "207.46.106.113:1863",
        qry: Some((
            "PROD01065C%ZFN6F",
            "10000127095060674777",
            "65263f04b684f5f3e0201a5254e89b57",
        )),
        error: 241,
        sb: Some((
            "207.46.108.43:1863",
            "17275.1184001001.4411",
            "Hi Bob! Testing MSNP13, are you there?",
            "yes, loud and clear (13)",
        )),
        rng: Some(("207.46.108.73:1863", "are we still on for Friday?")),
        caps: Some(("1610661932", Some("8.0"))),
        sdg: None,
    },
    Fx {
        v: 14,
        conns: 4,
        ns: "207.46.106.114:1863",
        qry: Some((
            "PROD0112J1LW7%NB",
            "10000136871603803606",
            "e32017b94c7b6310989dc335f6912b43",
        )),
        error: 241,
        sb: Some((
            "207.46.108.44:1863",
            "17276.1184001078.4411",
            "Hi Bob! Testing MSNP14, are you there?",
            "yes, loud and clear (14)",
        )),
        rng: Some(("207.46.108.74:1863", "are we still on for Friday?")),
        caps: Some(("1610661932", Some("8.0"))),
        sdg: None,
    },
    Fx {
        v: 15,
        conns: 4,
        ns: "207.46.106.115:1863",
        qry: Some((
            "PROD0119GSJUC$18",
            "10000146648146932435",
            "0cd7f513aebcca22c4542947ea32394b",
        )),
        error: 241,
        sb: Some((
            "207.46.108.45:1863",
            "17277.1184001155.4411",
            "Hi Bob! Testing MSNP15, are you there?",
            "yes, loud and clear (15)",
        )),
        rng: Some(("207.46.108.75:1863", "are we still on for Friday?")),
        caps: Some(("2147532844", Some("8.5"))),
        sdg: None,
    },
    Fx {
        v: 16,
        conns: 4,
        ns: "207.46.106.116:1863",
        qry: Some((
            "PROD0114ES4Z%Q5W",
            "10000156424690061264",
            "e2d3b407ec8d422c5c9c771734e4de2b",
        )),
        error: 241,
        sb: Some((
            "207.46.108.46:1863",
            "17278.1184001232.4411",
            "Hi Bob! Testing MSNP16, are you there?",
            "yes, loud and clear (16)",
        )),
        rng: Some(("207.46.108.76:1863", "are we still on for Friday?")),
        caps: Some(("2415968300:1312", Some("9.0"))),
        sdg: None,
    },
    Fx {
        v: 17,
        conns: 4,
        ns: "207.46.106.117:1863",
        qry: Some((
            "PROD0118R6%2WYOS",
            "10000166201233190093",
            "53b395cf5b1dc7218e0fbd57711f520a",
        )),
        error: 241,
        sb: Some((
            "207.46.108.47:1863",
            "17279.1184001309.4411",
            "Hi Bob! Testing MSNP17, are you there?",
            "yes, loud and clear (17)",
        )),
        rng: Some(("207.46.108.77:1863", "are we still on for Friday?")),
        caps: Some(("2684403756:1312", Some("2009"))),
        sdg: None,
    },
    Fx {
        v: 18,
        conns: 3,
        ns: "207.46.106.118:1863",
        qry: Some((
            "PROD0120PW!CCV9@",
            "10000175977776318922",
            "f11b0ce3c3c6671917eb60bc1c9696a9",
        )),
        error: 241,
        sb: Some((
            "207.46.108.48:1863",
            "17280.1184001386.4411",
            "Hi Bob! Testing MSNP18, are you there?",
            "yes, loud and clear (18)",
        )),
        rng: None,
        caps: Some(("2684403756:1312", Some("2009"))),
        sdg: None,
    },
    Fx {
        v: 19,
        conns: 3,
        ns: "207.46.106.119:1863",
        qry: Some((
            "PROD0120PW!CCV9@",
            "10000185754319447751",
            "d856c5ebc9d623f449d86e721d3a8f62",
        )),
        error: 241,
        sb: Some((
            "207.46.108.49:1863",
            "17281.1184001463.4411",
            "Hi Bob! Testing MSNP19, are you there?",
            "yes, loud and clear (19)",
        )),
        rng: None,
        caps: Some(("2952839212:1312", Some("2011"))),
        sdg: None,
    },
    Fx {
        v: 20,
        conns: 3,
        ns: "207.46.106.120:1863",
        qry: Some((
            "PROD0113H11T8$X_",
            "10000195530862576580",
            "1d2b2c532b4ee565854e730f484fbf93",
        )),
        error: 241,
        sb: Some((
            "207.46.108.50:1863",
            "17282.1184001540.4411",
            "Hi Bob! Testing MSNP20, are you there?",
            "yes, loud and clear (20)",
        )),
        rng: None,
        caps: Some(("2952839212:1312", Some("2011"))),
        sdg: None,
    },
    Fx {
        v: 21,
        conns: 2,
        ns: "207.46.106.121:1863",
        qry: Some((
            "PROD0113H11T8$X_",
            "10000205307405705409",
            "5e856c4ec0407e519da39dfde8e65f39",
        )),
        error: 241,
        sb: None,
        rng: None,
        caps: Some(("3221274668:1312", Some("2012"))),
        sdg: Some(("hi Bob, this is the MSNP21 test", "got it, loud and clear")),
    },
];

fn tables() -> Arc<Tables> {
    Arc::new(Tables::builtin().expect("built-in tables load"))
}

fn log_path(v: u8) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("captures/logs/msnp{v}.log"))
}

/// Decodes every connection of a log as `msntap decode` does (no hints).
fn decode(
    v: u8,
    tables: &Arc<Tables>,
    hint: impl Fn(usize) -> SessionHint,
) -> (Vec<Vec<Event<'static>>>, usize) {
    let text = std::fs::read_to_string(log_path(v)).expect("fixture log is readable");
    let conns = logfile::parse(&text, tables, false);
    let mut notes = 0;
    let mut all = Vec::new();
    for (i, c) in conns.iter().enumerate() {
        notes += c.notes.len();
        let mut s = Session::new(tables.clone(), i as u64 + 1, hint(i));
        let mut evs = Vec::new();
        let mut keep = |e: &mut Event<'_>| evs.push(e.clone().into_owned());
        for ch in &c.chunks {
            s.feed(ch.dir, &ch.bytes, ch.ts, &mut keep);
        }
        let end = c.chunks.last().map(|c| c.ts).unwrap_or_default();
        s.finish(end, &mut keep);
        all.push(evs);
    }
    (all, notes)
}

fn cmds<'e>(evs: &'e [Event<'static>]) -> impl Iterator<Item = (Dir, &'e Command<'static>)> {
    evs.iter()
        .filter_map(|e| e.command().map(|c| (e.dir.unwrap_or(Dir::C2s), c)))
}

fn find<'a>(evs: &'a [Event<'static>], dir: Dir, name: &str) -> Vec<&'a Command<'static>> {
    cmds(evs)
        .filter(|(d, c)| *d == dir && c.cmd == name)
        .map(|(_, c)| c)
        .collect()
}

fn clean(v: u8, what: &str, evs: &[Event<'static>]) {
    for e in evs {
        match &e.kind {
            EventKind::Desync(_) | EventKind::Note(_) | EventKind::Gap(_) | EventKind::Error(_) => {
                panic!("MSNP{v} {what}: unexpected {} event: {e:?}", e.type_name())
            }
            EventKind::Command(c) => {
                assert!(c.known, "MSNP{v} {what}: unknown command {:?}", c.line);
                assert!(
                    !c.unmatched_form,
                    "MSNP{v} {what}: no form fits {:?}",
                    c.line
                );
                if let Some(p) = &c.payload {
                    assert!(
                        p.problem.is_none(),
                        "MSNP{v} {what}: payload problem {:?} in {:?}",
                        p.problem,
                        c.line
                    );
                    assert!(!p.guess, "MSNP{v} {what}: guessed payload in {:?}", c.line);
                }
            }
            _ => {}
        }
    }
}

/// Where the tables say a redirect's address is: (target service, address, cookie).
fn referral(c: &Command) -> Option<(Service, String, Option<String>)> {
    redirect::of_command(Some(Dir::S2c), c)
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("serializes")
}

fn body<'c>(c: &'c Command<'static>) -> &'c str {
    c.payload
        .as_ref()
        .and_then(|p| p.content())
        .and_then(|d| d.text())
        .unwrap_or_else(|| panic!("no decoded body in {:?}", c.line))
}

#[test]
fn every_dialect_has_a_fixture() {
    let vs: Vec<u8> = FIXTURES.iter().map(|f| f.v).collect();
    assert_eq!(vs, (2..=21).collect::<Vec<u8>>());
    for f in FIXTURES {
        let text = std::fs::read_to_string(log_path(f.v)).expect("fixture log is readable");
        let n = text.lines().count();
        assert!((30..=120).contains(&n), "msnp{}.log has {n} lines", f.v);
    }
}

#[test]
fn fixtures_decode_cleanly_with_the_negotiated_version() {
    let t = tables();
    for f in FIXTURES {
        let v = f.v;
        let (conns, notes) = decode(v, &t, |_| SessionHint::default());
        assert_eq!(
            notes, 0,
            "MSNP{v}: the log reader found payload lengths that do not match the text"
        );
        assert_eq!(conns.len(), f.conns, "MSNP{v}: connections");
        for (i, evs) in conns.iter().enumerate() {
            clean(v, &format!("connection {}", i + 1), evs);
        }
        // DS and NS: the server picks MSNPv, and every event after its VER carries it.
        for (i, evs) in conns.iter().take(2).enumerate() {
            let pos = evs
                .iter()
                .position(|e| {
                    e.dir == Some(Dir::S2c) && e.command().is_some_and(|c| c.cmd == "VER")
                })
                .unwrap_or_else(|| panic!("MSNP{v} connection {}: no VER reply", i + 1));
            let ver = evs[pos]
                .command()
                .map(|c| c.args().map(str::to_string).collect::<Vec<_>>())
                .unwrap_or_default();
            assert_eq!(
                ver,
                vec![
                    if i == 0 { "1" } else { "4" }.to_string(),
                    format!("MSNP{v}")
                ]
            );
            for e in &evs[pos..] {
                assert_eq!(e.version, Some(Version(v)), "MSNP{v}: version of {e:?}");
            }
        }
        let (ds, ns) = (&conns[0], &conns[1]);
        // The dispatch server refers to the notification server.
        assert_eq!(
            ds.last().map(|e| e.service),
            Some(Service::Ds),
            "MSNP{v}: DS recognised"
        );
        let xfr = find(ds, Dir::S2c, "XFR");
        assert_eq!(xfr.len(), 1);
        let r = referral(xfr[0]).expect("XFR NS is a referral");
        assert_eq!(
            (r.0, r.1.as_str()),
            (Service::Ns, f.ns),
            "MSNP{v}: NS referral"
        );
        assert_eq!(ns.last().map(|e| e.service), Some(Service::Ns));
        // Login scheme of the era.
        let usr_i = find(ns, Dir::C2s, "USR");
        let scheme = match v {
            2..=7 => "MD5",
            8..=14 => "TWN",
            _ => "SSO",
        };
        assert_eq!(usr_i[0].arg(1), Some(scheme), "MSNP{v}: login scheme");
        assert!(
            find(ns, Dir::S2c, "USR")
                .iter()
                .any(|c| c.arg(1) == Some("OK")),
            "MSNP{v}: login succeeds"
        );
        // Challenge and answer.
        match f.qry {
            Some((pid, chl, answer)) => {
                let c = find(ns, Dir::S2c, "CHL");
                assert_eq!(c[0].args().collect::<Vec<_>>(), vec!["0", chl]);
                let q = find(ns, Dir::C2s, "QRY");
                assert_eq!(q[0].arg(1), Some(pid));
                let p = q[0].payload.as_ref().expect("QRY payload");
                assert_eq!(
                    (p.length, p.text.as_deref()),
                    (32, Some(answer)),
                    "MSNP{v}: QRY answer"
                );
                assert_eq!(
                    find(ns, Dir::S2c, "QRY").len(),
                    1,
                    "MSNP{v}: answer accepted"
                );
            }
            None => assert!(find(ns, Dir::S2c, "CHL").is_empty(), "no CHL before MSNP6"),
        }
        // The error reply, with its XML echo from MSNP13.
        let err = cmds(ns)
            .find(|(d, c)| *d == Dir::S2c && c.error.is_some())
            .map(|(_, c)| c)
            .unwrap_or_else(|| panic!("MSNP{v}: no error reply"));
        assert_eq!(err.error.as_ref().map(|e| e.code), Some(f.error));
        if v >= 13 {
            let p = err.payload.as_ref().expect("241 carries the rejected list");
            assert_eq!(
                p.text.as_deref(),
                Some(r#"<ml><d n="example.invalid"><c n="nobody" l="1" t="1"/></d></ml>"#)
            );
        } else {
            assert!(
                err.payload.is_none(),
                "MSNP{v}: errors before 13 have no payload"
            );
        }
        // Own capabilities, and the client version they name.
        match f.caps {
            Some((raw, client)) if v == 21 => {
                // MSNP21 publishes capabilities in the PUT user document, not with CHG.
                assert!(find(ns, Dir::C2s, "CHG").is_empty());
                let put = find(ns, Dir::C2s, "PUT");
                let doc = body(put[0]);
                assert!(
                    doc.contains(&format!("<Capabilities>{raw}</Capabilities>")),
                    "MSNP21: {doc}"
                );
                let caps = json(&msntap::protocol::fields::caps(&t, raw.as_bytes()));
                assert_eq!(caps["client"].as_str(), client);
            }
            Some((raw, client)) => {
                let chg = find(ns, Dir::C2s, "CHG");
                let chg = chg.first().unwrap_or_else(|| panic!("MSNP{v}: no CHG"));
                assert_eq!(chg.arg(2), Some(raw));
                let fields = json(&chg.fields);
                let caps = &fields["capabilities"];
                assert_eq!(
                    caps["client"].as_str(),
                    client,
                    "MSNP{v}: client version in caps"
                );
                let bits = raw
                    .split(':')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                assert_eq!(caps["value"].as_u64(), Some(bits));
                if v >= 16 {
                    let ext: u64 = raw
                        .split(':')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    assert_eq!((caps["ext"].as_u64(), ext), (Some(0x520), 0x520));
                }
            }
            None if v <= 20 => {
                let chg = find(ns, Dir::C2s, "CHG");
                assert_eq!(chg[0].argc(), 2, "MSNP{v}: no capabilities before MSNP8");
            }
            None => {}
        }
        // Contact presence: msnobj from 9, netid from 14, netid:handle from 18.
        if (9..=20).contains(&v) {
            let p = cmds(ns)
                .find(|(_, c)| {
                    c.fields.get("msnobj").is_some() && (c.cmd == "ILN" || c.cmd == "NLN")
                })
                .map(|(_, c)| c)
                .unwrap_or_else(|| panic!("MSNP{v}: no ILN/NLN with msnobj"));
            let fields = json(&p.fields);
            assert_eq!(
                fields["msnobj"]["Creator"].as_str(),
                Some("bob_k@msn.com"),
                "MSNP{v}: {:?}",
                fields["msnobj"]
            );
            match v {
                14..=17 => assert_eq!(p.arg(3), Some("1")),
                18.. => assert_eq!(p.arg(1), Some("1:bob_k@msn.com")),
                _ => {}
            }
        }
        // Switchboards.
        match f.sb {
            Some((addr, cookie, text, reply)) => {
                let x = find(ns, Dir::S2c, "XFR");
                let r = referral(x[0]).expect("XFR SB is a referral");
                assert_eq!(
                    (r.0, r.1.as_str(), r.2.as_deref()),
                    (Service::Sb, addr, Some(cookie))
                );
                let sb = &conns[2];
                assert_eq!(
                    sb.last().map(|e| e.service),
                    Some(Service::Sb),
                    "MSNP{v}: SB recognised"
                );
                let usr = find(sb, Dir::C2s, "USR");
                assert_eq!(
                    usr[0].arg(2),
                    Some(cookie),
                    "MSNP{v}: SB login replays the cookie"
                );
                let sent: Vec<&str> = find(sb, Dir::C2s, "MSG").into_iter().map(body).collect();
                assert!(sent.contains(&text), "MSNP{v}: sent {sent:?}");
                let got: Vec<&str> = find(sb, Dir::S2c, "MSG").into_iter().map(body).collect();
                assert!(got.contains(&reply), "MSNP{v}: received {got:?}");
                assert_eq!(find(sb, Dir::S2c, "ACK").len(), 1);
                assert_eq!(find(sb, Dir::S2c, "JOI")[0].arg(0), Some("bob_k@msn.com"));
                if v >= 3 {
                    let typing = find(sb, Dir::C2s, "MSG")
                        .into_iter()
                        .filter_map(|c| c.payload.as_ref()?.content()?.typing_user.as_deref())
                        .collect::<Vec<_>>();
                    assert_eq!(
                        typing,
                        vec!["alice.w@hotmail.com"],
                        "MSNP{v}: typing notice"
                    );
                    let m = find(sb, Dir::C2s, "MSG")
                        .into_iter()
                        .find(|c| body(c) == text)
                        .expect("text message");
                    let fmt = m
                        .payload
                        .as_ref()
                        .and_then(|p| p.content())
                        .and_then(|c| c.format.as_ref())
                        .expect("decoded format");
                    assert_eq!(fmt.font.as_deref(), Some("Verdana"));
                }
            }
            None => assert!(
                find(ns, Dir::C2s, "XFR").is_empty(),
                "MSNP{v}: no switchboard expected"
            ),
        }
        match f.rng {
            Some((addr, text)) => {
                let rng = find(ns, Dir::S2c, "RNG");
                let r = referral(rng[0]).expect("RNG is a referral");
                assert_eq!((r.0, r.1.as_str()), (Service::Sb, addr));
                let sb = &conns[3];
                let ans = find(sb, Dir::C2s, "ANS");
                assert_eq!(
                    ans[0].arg(2),
                    r.2.as_deref(),
                    "MSNP{v}: ANS replays the RNG cookie"
                );
                assert_eq!(
                    ans[0].arg(3),
                    rng[0].arg(0),
                    "MSNP{v}: ANS names the RNG session"
                );
                assert_eq!(
                    find(sb, Dir::S2c, "IRO")[0].arg(3),
                    Some("carol.d@hotmail.com")
                );
                let got: Vec<&str> = find(sb, Dir::S2c, "MSG").into_iter().map(body).collect();
                assert_eq!(got, vec![text], "MSNP{v}: Carol's message");
            }
            None => assert!(find(ns, Dir::S2c, "RNG").is_empty()),
        }
        if let Some((sent, got)) = f.sdg {
            let s = find(ns, Dir::C2s, "SDG");
            assert_eq!(body(s[0]), sent, "MSNP{v}: SDG sent");
            let r = find(ns, Dir::S2c, "SDG");
            assert_eq!(body(r[0]), got, "MSNP{v}: SDG received");
            assert_eq!(find(ns, Dir::S2c, "NFY").len(), 1);
            assert_eq!(
                find(ns, Dir::S2c, "DEL")[0].args().collect::<Vec<_>>(),
                vec!["15", "OK"]
            );
        }
    }
}

/// The switchboard has no VER: a live decoder carries the NS dialect over. Decoding each
/// switchboard with that hint must still fit the tables' forms for exactly that version.
#[test]
fn switchboards_fit_the_forms_of_their_version() {
    let t = tables();
    for f in FIXTURES.iter().filter(|f| f.sb.is_some()) {
        let v = f.v;
        let (conns, _) = decode(v, &t, |i| {
            if i >= 2 {
                SessionHint {
                    service: Some(Service::Sb),
                    version: Some(v),
                }
            } else {
                SessionHint::default()
            }
        });
        for (i, evs) in conns.iter().enumerate().skip(2) {
            clean(v, &format!("switchboard {}", i + 1), evs);
            for e in evs {
                assert_eq!(e.version, Some(Version(v)));
            }
        }
    }
}
