//! The JSON Lines msntap writes go through its fast serde backend (src/json); here every
//! event of every capture and session log in captures/, decoded, redacted and annotated,
//! must come out byte for byte as serde_json writes the same `Serialize` impls.

use std::path::PathBuf;
use std::sync::Arc;

use msntap::analysis::auth::AuthAnnotator;
use msntap::capture::{read_path, ReadOptions};
use msntap::secret::Redact;
use msntap::{Event, Tables};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(ev: &Event<'_>, what: &str) -> usize {
    let ours = msntap::json::to_vec(ev).expect("serializes");
    let theirs = serde_json::to_vec(ev).expect("serializes");
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&theirs),
        "{what}"
    );
    1
}

#[test]
fn every_event_renders_as_serde_json_would() {
    let tables = Arc::new(Tables::builtin().expect("tables"));
    let mut n = 0;
    let mut inputs: Vec<PathBuf> = Vec::new();
    for d in [
        "captures",
        "captures/synth",
        "captures/logs",
        "captures/http",
    ] {
        for e in std::fs::read_dir(root().join(d)).expect("dir").flatten() {
            inputs.push(e.path());
        }
    }
    inputs.sort();
    // The annotator adds auth/challenge annotations, as `read` does (with a password to try).
    let mut annot = AuthAnnotator::new(&tables, vec!["password".into(), "hunter2".into()]);
    for p in inputs {
        let name = p.display().to_string();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        let mut each = |ev: &mut Event<'_>| {
            n += check(ev, &name);
            let mut r = ev.clone();
            annot.annotate(&mut r);
            n += check(&r, &name);
            r.redact();
            n += check(&r, &name);
        };
        match ext {
            "pcap" | "pcapng" => {
                read_path(&p, tables.clone(), &ReadOptions::default(), &mut |e| {
                    each(e);
                    Ok(())
                })
                .expect("read");
            }
            "log" => {
                let text = std::fs::read_to_string(&p).expect("log");
                for (i, c) in msntap::logfile::parse(&text, &tables, false)
                    .iter()
                    .enumerate()
                {
                    let mut s =
                        msntap::Session::new(tables.clone(), i as u64 + 1, Default::default());
                    for ch in &c.chunks {
                        s.feed(ch.dir, &ch.bytes, ch.ts, &mut each);
                    }
                    s.finish(msntap::Ts(0), &mut each);
                }
            }
            _ => {}
        }
    }
    assert!(n > 2000, "only {n} events compared");
}
