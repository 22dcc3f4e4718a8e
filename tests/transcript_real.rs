//! Transcripts of the real Escargot captures against what each client library reported
//! seeing (the `.client.log` beside each capture): every message, with sender, receiver,
//! text and (MSNP11) colour; typing and nudges. The captures are the project's copies in
//! captures/ (the same files as ../shared/captures).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use msntap::analysis::transcript::{Conversation, Transcripts};
use msntap::capture::{read_path, ReadOptions};
use msntap::Tables;

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

fn transcripts(pcap: &Path) -> Vec<Conversation> {
    let tables = Arc::new(Tables::builtin().expect("tables"));
    let mut t = Transcripts::default();
    read_path(
        pcap,
        tables,
        &ReadOptions {
            first_conn: 1,
            ..Default::default()
        },
        &mut |e| {
            t.add(&e);
            Ok(())
        },
    )
    .expect("capture reads");
    t.finish();
    t.done
}

/// Does `receiver`'s conversation hold an entry of `kind` from `sender` (with `text`)?
fn find<'a>(
    convs: &'a [Conversation],
    receiver: &str,
    kind: &str,
    sender: &str,
    text: Option<&str>,
) -> Option<&'a msntap::analysis::transcript::Entry> {
    convs
        .iter()
        .filter(|c| c.user.as_deref() == Some(receiver))
        .flat_map(|c| c.entries.iter())
        .find(|e| {
            e.kind == kind && e.who == sender && (text.is_none() || e.text.as_deref() == text)
        })
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> Option<&'a str> {
    let i = s.find(a)? + a.len();
    let j = s[i..].find(b)? + i;
    Some(&s[i..j])
}

#[test]
fn msnp8_messages_match_the_client_log() {
    let convs = transcripts(&capture("msnp8_twisted_escargot.pcap"));
    assert_eq!(convs.len(), 2, "one switchboard connection per client");
    let log =
        std::fs::read_to_string(capture("msnp8_twisted_escargot.client.log")).expect("client log");
    let mut checked = 0;
    for line in log.lines() {
        // [bob@example.com] MSG from alice@example.com 'Hello from ...'
        let Some(receiver) = between(line, "[", "]") else {
            continue;
        };
        if let Some(rest) = line.split_once("] MSG from ").map(|x| x.1) {
            let (sender, quoted) = rest.split_once(' ').expect("sender and text");
            let text = quoted.trim_matches('\'');
            assert!(
                find(&convs, receiver, "message", sender, Some(text)).is_some(),
                "{line}"
            );
            checked += 1;
        } else if let Some(sender) = line.split_once("] typing from ").map(|x| x.1) {
            assert!(
                find(&convs, receiver, "typing", sender, None).is_some(),
                "{line}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "two messages and two typing notices in the log");
}

#[test]
fn msnp11_messages_colours_and_nudge_match_the_client_log() {
    let convs = transcripts(&capture("msnp11_msnp11-sdk_escargot.pcap"));
    let log = std::fs::read_to_string(capture("msnp11_msnp11-sdk_escargot.client.log"))
        .expect("client log");
    let handle = |who: &str| format!("{who}@example.com");
    let mut checked = 0;
    for line in log.lines() {
        let Some(who) = between(line, "[", "/SB]") else {
            continue;
        };
        let receiver = handle(who);
        let Some(sender) = between(line, "email: \"", "\"") else {
            continue;
        };
        if line.contains("TextMessage") {
            let text = between(line, "text: \"", "\" }").expect("text");
            let e = find(&convs, &receiver, "message", sender, Some(text))
                .unwrap_or_else(|| panic!("{line}"));
            // The library reports the colour as RGB hex without leading zeros; the wire
            // carries BGR (CO=ff for red), which the transcript turns into #rrggbb.
            let rgb = between(line, "color: \"", "\"").expect("color");
            let want = format!("#{:0>6}", rgb);
            assert_eq!(
                e.format.as_ref().expect("format")["color"],
                want.as_str(),
                "{line}"
            );
            checked += 1;
        } else if line.contains("TypingNotification") {
            assert!(
                find(&convs, &receiver, "typing", sender, None).is_some(),
                "{line}"
            );
            checked += 1;
        } else if line.contains("Nudge") {
            let e = find(&convs, &receiver, "datacast", sender, None)
                .unwrap_or_else(|| panic!("{line}"));
            assert_eq!(e.detail.as_ref().expect("detail")["name"], "nudge");
            checked += 1;
        } else if line.contains("ParticipantLeftSwitchboard") {
            assert!(
                find(&convs, &receiver, "left", sender, None).is_some(),
                "{line}"
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked, 6,
        "two messages, two typing notices, a nudge and a leave"
    );
}
