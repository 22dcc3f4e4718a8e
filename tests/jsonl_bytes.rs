//! The hand-written JSON writer of the JSON Lines sink (src/event/jsonl.rs) against
//! `serde_json::to_writer`: every event of every capture and session log in captures/, as
//! decoded, then with the auth annotations of `msntap read`, then redacted, must come out
//! byte for byte the same. (The sink's output over each capture is held to its
//! captures/expected file by tests/capture_golden.rs.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use msntap::analysis::auth::AuthAnnotator;
use msntap::capture::{read_path, ReadOptions};
use msntap::event::filter::redact;
use msntap::event::jsonl::write_event;
use msntap::input::{decode_log, LogOptions};
use msntap::{Event, Tables};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under captures/ (sorted), without expected/.
fn inputs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut dirs = vec![root().join("captures")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("captures dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "expected") {
                    dirs.push(p);
                }
            } else {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn is_capture(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "pcap" || x == "pcapng")
}

fn events(p: &Path, tables: &Arc<Tables>) -> Vec<Event> {
    let mut evs = Vec::new();
    if is_capture(p) {
        read_path(p, tables.clone(), &ReadOptions::default(), &mut |e| {
            evs.push(e);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    } else {
        let text = std::fs::read_to_string(p).expect("log");
        let name = p.display().to_string();
        decode_log(&text, &name, tables, LogOptions::default(), 0, &mut |e| {
            evs.push(e);
            Ok(())
        })
        .expect("decode log");
    }
    evs
}

fn check(what: &str, ev: &Event, ours: &mut Vec<u8>, theirs: &mut Vec<u8>) {
    ours.clear();
    theirs.clear();
    write_event(ours, ev);
    serde_json::to_writer(&mut *theirs, ev).expect("serde_json");
    assert!(
        ours == theirs,
        "{what}: the writer differs from serde_json\n ours: {}\nserde: {}",
        String::from_utf8_lossy(ours),
        String::from_utf8_lossy(theirs)
    );
}

#[test]
fn every_event_of_every_fixture_is_written_as_serde_json_writes_it() {
    let tables = Arc::new(Tables::builtin().expect("built-in tables"));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut files, mut total, mut annotated, mut redacted) = (0, 0, 0, 0);
    for p in inputs() {
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or_default();
        if !matches!(ext, "pcap" | "pcapng" | "log") {
            continue;
        }
        files += 1;
        let name = p.strip_prefix(root()).unwrap_or(&p).display().to_string();
        let mut auth = AuthAnnotator::new(&tables, vec!["password".into(), "hunter2".into()]);
        for (i, mut ev) in events(&p, &tables).into_iter().enumerate() {
            total += 1;
            check(&format!("{name} event {i}"), &ev, &mut ours, &mut theirs);
            auth.annotate(&mut ev);
            if ev.command().is_some_and(|c| !c.annotations.is_empty()) {
                annotated += 1;
                check(
                    &format!("{name} event {i} annotated"),
                    &ev,
                    &mut ours,
                    &mut theirs,
                );
            }
            redact(&mut ev);
            if ev.command().is_some_and(|c| c.redacted) {
                redacted += 1;
                check(
                    &format!("{name} event {i} redacted"),
                    &ev,
                    &mut ours,
                    &mut theirs,
                );
            }
        }
    }
    // Coverage of the fixtures, so a lost directory does not pass silently.
    assert!(files >= 35, "only {files} fixture files");
    assert!(total > 1000, "only {total} events");
    assert!(annotated > 10, "only {annotated} annotated events");
    assert!(redacted > 10, "only {redacted} redacted events");
}
