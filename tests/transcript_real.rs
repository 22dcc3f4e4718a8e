//! Transcripts of the real Escargot captures against what each client library reported
//! seeing (the `.client.log` beside each capture): every message, with sender, receiver,
//! text and (MSNP11) colour; typing and nudges. The captures are the project's copies in
//! captures/ (the same files as ../shared/captures).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use msntap::analysis::transcript::{Conversation, Detail, Entry, EntryKind, Transcripts};
use msntap::capture::{read_path, ReadOptions};
use msntap::Tables;

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

fn transcripts(pcap: &Path) -> Vec<Conversation> {
    transcripts_of(pcap).done
}

fn transcripts_of(pcap: &Path) -> Transcripts {
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
            t.add(e);
            Ok(())
        },
    )
    .expect("capture reads");
    t.finish();
    t
}

/// Does `receiver`'s conversation hold an entry of `kind` from `sender` (with `text`)?
fn find<'a>(
    convs: &'a [Conversation],
    receiver: &str,
    kind: &str,
    sender: &str,
    text: Option<&str>,
) -> Option<&'a Entry> {
    convs
        .iter()
        .filter(|c| c.user.as_deref() == Some(receiver))
        .flat_map(|c| c.entries.iter())
        .find(|e| {
            e.kind.as_str() == kind
                && e.who == sender
                && (text.is_none() || e.text.as_deref() == text)
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
                e.format.as_ref().expect("format").color.as_deref(),
                Some(want.as_str()),
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
            match e.detail.as_ref().expect("detail") {
                Detail::Datacast(d) => assert_eq!(d.name, "nudge", "{line}"),
                other => panic!("{line}: {other:?}"),
            }
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

/// The msnp11-sdk client log says alice fetched bob's display picture over the
/// switchboard ("requesting bob's display picture", "dp request done"). That is an MSNSLP
/// INVITE from alice, bob's 200 OK and alice's BYE, seen on both switchboard legs: six
/// P2P lines. (Before the typed events the transcript read the SLP message as a string
/// where the decoder stored an object, and showed none.)
#[test]
fn msnp11_display_picture_request_shows_its_slp_messages() {
    let log = std::fs::read_to_string(capture("msnp11_msnp11-sdk_escargot.client.log"))
        .expect("client log");
    assert!(log.contains("[alice] requesting bob's display picture"));
    assert!(log.contains("[alice] dp request done"));
    let t = transcripts_of(&capture("msnp11_msnp11-sdk_escargot.pcap"));
    let convs = &t.done;
    let mut users = Vec::new();
    for c in convs {
        let slp: Vec<(&str, &str)> = c
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::P2p)
            .map(|e| (e.who.as_str(), e.text.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(
            slp,
            [
                (
                    "alice@example.com",
                    "INVITE MSNMSGR:bob@example.com MSNSLP/1.0"
                ),
                ("bob@example.com", "MSNSLP/1.0 200 OK"),
                (
                    "alice@example.com",
                    "BYE MSNMSGR:bob@example.com MSNSLP/1.0"
                ),
            ],
            "conversation on #{}",
            c.conn
        );
        users.push(c.user.clone().unwrap_or_default());
    }
    users.sort();
    assert_eq!(users, ["alice@example.com", "bob@example.com"]);
    let text = t.text();
    assert_eq!(text.matches(" P2P: ").count(), 6, "{text}");
}
