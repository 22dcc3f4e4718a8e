//! Golden tests over the example sessions of the protocol references in ../shared/reference
//! (msnp-wiki versions/*.md and commands/*.md, and the seed pages). They need ../shared beside
//! the checkout and skip, saying so, when it is absent (a user's clone).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use msntap::event::Message;
use msntap::event::{Dir, Event, EventKind, Service};
use msntap::protocol::redirect;
use msntap::{logfile, Session, SessionHint, Tables};
use serde_json::Value;

fn reference() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: {} is absent (a clone without ../shared); reference golden tests not run",
            p.display()
        );
        None
    }
}

/// Decodes a log file; returns the events of each connection.
fn decode(path: &Path) -> Vec<Vec<Event<'static>>> {
    let t = Arc::new(Tables::builtin().expect("tables"));
    let text = std::fs::read_to_string(path).expect("read");
    let mut all = Vec::new();
    for (i, c) in logfile::parse(&text, &t, false).into_iter().enumerate() {
        let mut s = Session::new(t.clone(), i as u64 + 1, SessionHint::default());
        let mut out = Vec::new();
        for n in &c.notes {
            out.push(s.event(
                Default::default(),
                None,
                EventKind::Note(Message {
                    message: n.1.clone().into(),
                }),
            ));
        }
        let mut keep = |e: &mut Event<'_>| out.push(e.clone().into_owned());
        for ch in &c.chunks {
            s.feed(ch.dir, &ch.bytes, ch.ts, &mut keep);
        }
        s.finish(Default::default(), &mut keep);
        all.push(out);
    }
    all
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == ext));
    v.sort();
    v
}

/// The `C:`/`S:` lines of a page, joined as the page asks, in order.
fn page_lines(path: &Path) -> Vec<(Dir, String)> {
    let text = std::fs::read_to_string(path).expect("read");
    let t = Tables::builtin().expect("tables");
    logfile::parse(&text, &t, false)
        .into_iter()
        .flat_map(|c| c.chunks)
        .map(|ch| {
            let end = ch
                .bytes
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap_or(ch.bytes.len());
            (
                ch.dir,
                String::from_utf8_lossy(&ch.bytes[..end]).into_owned(),
            )
        })
        .collect()
}

fn check_clean(path: &Path, conns: &[Vec<Event<'static>>]) {
    let name = path.display();
    let mut commands = 0;
    for ev in conns.iter().flatten() {
        match &ev.kind {
            EventKind::Desync(d) => {
                panic!("{name}: desync ({}): {}", d.reason, d.preview.escaped())
            }
            EventKind::Command(c) => {
                commands += 1;
                assert!(c.known, "{name}: unknown command: {}", c.line);
                assert!(!c.unmatched_form, "{name}: line fits no form: {}", c.line);
                if let Some(p) = &c.payload {
                    assert!(!p.guess, "{name}: payload guessed: {}", c.line);
                    assert!(
                        !p.problem
                            .as_deref()
                            .is_some_and(|x| x.starts_with("truncated")),
                        "{name}: {}: {:?}",
                        c.line,
                        p.problem
                    );
                    // The frame holds the line, its line ending and all declared bytes.
                    assert!(
                        c.frame_len as u64 > c.line.len() as u64 + p.length,
                        "{name}: {}",
                        c.line
                    );
                }
            }
            _ => {}
        }
    }
    assert!(commands > 0, "{name}: no commands decoded");
}

/// Every command event reproduces a line of the page, in order and direction.
fn check_matches_page(path: &Path, conns: &[Vec<Event<'static>>]) {
    let lines = page_lines(path);
    let events: Vec<(Dir, String)> = conns
        .iter()
        .flatten()
        .filter_map(|e| {
            e.command()
                .map(|c| (e.dir.expect("dir"), c.line.to_string()))
        })
        .collect();
    assert_eq!(
        events.len(),
        lines.len(),
        "{}: one event per example line",
        path.display()
    );
    // Redaction happens in sinks, not in the decoder: lines come back exactly.
    assert_eq!(events, lines, "{}", path.display());
}

#[test]
fn version_pages_decode_cleanly_with_the_page_version() {
    let Some(r) = reference() else { return };
    let pages = files(&r.join("msnp-wiki/docs/versions"), "md");
    assert!(pages.len() >= 13);
    for p in pages {
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let conns = decode(&p);
        if stem == "msnpx" {
            continue; // the wiki's empty template page
        }
        if stem == "cvr0" {
            check_clean(&p, &conns);
            continue;
        }
        check_clean(&p, &conns);
        check_matches_page(&p, &conns);
        let n: u8 = stem.trim_start_matches("msnp").parse().expect("msnpN");
        // Every connection that negotiated says so on every event after the VER reply.
        for c in &conns {
            let after_ver = c.iter().skip_while(|e| {
                !(e.dir == Some(Dir::S2c) && e.command().is_some_and(|c| c.cmd == "VER"))
            });
            for e in after_ver {
                assert_eq!(
                    e.version.map(|v| v.0),
                    Some(n),
                    "{stem}: {:?}",
                    e.command().map(|c| &c.line)
                );
            }
        }
    }
}

#[test]
fn seed_pages_decode_cleanly() {
    let Some(r) = reference() else { return };
    let pages = files(&r.join("seeds"), "txt");
    assert_eq!(pages.len(), 5);
    let mut with_examples = 0;
    for p in pages {
        let conns = decode(&p);
        if conns.is_empty() {
            continue; // 003 and 004 are prose pages without an example session
        }
        with_examples += 1;
        check_clean(&p, &conns);
        check_matches_page(&p, &conns);
    }
    assert_eq!(with_examples, 3);
}

#[test]
fn command_pages_decode_cleanly() {
    let Some(r) = reference() else { return };
    for p in files(&r.join("msnp-wiki/docs/commands"), "md") {
        if p.file_name().is_some_and(|n| n == "xxx.md") {
            continue; // the wiki's template page with a placeholder command `xxx`
        }
        let conns = decode(&p);
        if conns.is_empty() {
            continue; // pages without examples
        }
        check_clean(&p, &conns);
        check_matches_page(&p, &conns);
    }
}

/// Facts read off msnp8.md by hand: the dispatch referral, the profile, the presence lines.
#[test]
fn msnp8_page_facts() {
    let Some(r) = reference() else { return };
    let conns = decode(&r.join("msnp-wiki/docs/versions/msnp8.md"));
    assert_eq!(
        conns.len(),
        2,
        "dispatch connection, then notification connection"
    );
    let xfr = conns[0]
        .iter()
        .filter_map(Event::command)
        .find(|c| c.cmd == "XFR")
        .expect("XFR");
    let r = redirect::of_command(Some(Dir::S2c), xfr).expect("referral");
    assert_eq!((r.0, r.1.as_str()), (Service::Ns, "10.0.0.5:1863"));
    assert_eq!(conns[0].last().unwrap().service, Service::Ds);
    assert!(conns[1].iter().all(|e| e.service == Service::Ns));
    let msg = conns[1]
        .iter()
        .filter_map(Event::command)
        .find(|c| c.cmd == "MSG")
        .expect("MSG");
    let p = msg.payload.as_ref().unwrap();
    assert_eq!(p.length, 448);
    let d = serde_json::to_value(p.decoded.as_ref().unwrap()).unwrap();
    assert_eq!(d["content_type"], "text/x-msmsgsprofile");
    // ClientPort 18183 = 0x4707, byte-swapped 0x0747 = 1863.
    assert_eq!(d["client_port"], 1863);
    let iln = conns[1]
        .iter()
        .filter_map(Event::command)
        .find(|c| c.cmd == "ILN")
        .expect("ILN");
    let f = serde_json::to_value(&iln.fields).unwrap();
    assert_eq!(f["friendly_name"], "another user");
    assert_eq!(f["capabilities"]["value"], 28);
    let usr_ok = conns[1]
        .iter()
        .filter_map(Event::command)
        .find(|c| c.arg(1) == Some("OK"))
        .unwrap();
    assert_eq!(
        usr_ok.args().collect::<Vec<_>>(),
        ["7", "OK", "example@hotmail.com", "example%20user", "1", "0"]
    );
}

/// msnp13.md: the GCF policy document arrives before USR OK and parses as XML.
#[test]
fn msnp13_page_gcf_is_xml() {
    let Some(r) = reference() else { return };
    let conns = decode(&r.join("msnp-wiki/docs/versions/msnp13.md"));
    let gcf = conns
        .iter()
        .flatten()
        .filter_map(Event::command)
        .find(|c| c.cmd == "GCF")
        .expect("GCF");
    let d = serde_json::to_value(gcf.payload.as_ref().unwrap().decoded.as_ref().unwrap()).unwrap();
    assert_eq!(d["name"], "Policies");
    assert_eq!(d["children"][0]["attrs"]["type"], "SHIELDS");
    let xfr = conns[0]
        .iter()
        .filter_map(Event::command)
        .find(|c| c.cmd == "XFR")
        .unwrap();
    assert_eq!(
        xfr.args().collect::<Vec<_>>(),
        ["3", "NS", "10.0.0.5:1863", "U", "D"]
    );
    assert_eq!(xfr.address_args.as_slice(), [2]);
    let _ = Value::Null;
}
