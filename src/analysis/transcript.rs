//! Conversation transcripts: switchboard sessions (and MSNP18/21 SDG messaging) turned into
//! who joined and left when, and each message in order with sender, text and formatting,
//! typing, nudges and other datacasts, invitations.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};

use crate::event::pretty::format_label;
use crate::event::{Dir, Event, EventKind, Service};
use crate::payload::urldecode;

/// One line of a conversation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub ts: String,
    /// `present`, `joined`, `left`, `message`, `typing`, `datacast`, `invitation`, `p2p`, `emoticons`.
    pub kind: String,
    pub who: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// A conversation on one switchboard connection (or the SDG messages of one NS connection).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Conversation {
    pub conn: u64,
    pub service: String,
    pub version: Option<String>,
    pub started: Option<String>,
    /// The local user (who authenticated on this connection).
    pub user: Option<String>,
    pub participants: BTreeMap<String, String>,
    pub entries: Vec<Entry>,
}

/// Builds conversations from events.
#[derive(Debug, Default)]
pub struct Transcripts {
    open: BTreeMap<u64, Conversation>,
    pub done: Vec<Conversation>,
}

fn base(h: &str) -> String {
    h.split(';').next().unwrap_or(h).to_string()
}

impl Transcripts {
    pub fn add(&mut self, ev: &Event) {
        if let EventKind::Close { .. } = ev.kind {
            if let Some(c) = self.open.remove(&ev.conn) {
                if !c.entries.is_empty() {
                    self.done.push(c);
                }
            }
            return;
        }
        let EventKind::Command(c) = &ev.kind else {
            return;
        };
        let is_sb = ev.service == Service::Sb;
        let is_sdg = matches!(c.cmd.as_str(), "SDG");
        if !is_sb && !is_sdg {
            return;
        }
        let conv = self.open.entry(ev.conn).or_insert_with(|| Conversation {
            conn: ev.conn,
            service: ev.service.to_string(),
            ..Conversation::default()
        });
        if conv.started.is_none() {
            conv.started = Some(ev.ts.to_string());
        }
        if let Some(v) = ev.version {
            conv.version = Some(format!("MSNP{}", v.0));
        }
        let ts = ev.ts.to_string();
        let a = |i: usize| c.args.get(i).map(String::as_str);
        let push = |conv: &mut Conversation,
                    kind: &str,
                    who: &str,
                    text: Option<String>,
                    format: Option<Value>,
                    detail: Option<Value>| {
            conv.entries.push(Entry {
                ts: ts.clone(),
                kind: kind.into(),
                who: who.to_string(),
                text,
                format,
                detail,
            });
        };
        match (ev.dir, c.cmd.as_str()) {
            (Some(Dir::C2s), "USR") if c.args.len() == 3 => conv.user = a(1).map(base),
            (Some(Dir::C2s), "ANS") => conv.user = a(1).map(base),
            (Some(Dir::S2c), "USR") if a(1) == Some("OK") => {
                if let (Some(h), Some(n)) = (a(2), a(3)) {
                    conv.participants.insert(base(h), urldecode(n));
                }
            }
            (Some(Dir::S2c), "IRO") => {
                if let (Some(h), Some(n)) = (a(3), a(4)) {
                    conv.participants.insert(base(h), urldecode(n));
                    push(conv, "present", &base(h), None, None, None);
                }
            }
            (Some(Dir::S2c), "JOI") => {
                if let Some(h) = a(0) {
                    conv.participants
                        .insert(base(h), a(1).map(urldecode).unwrap_or_default());
                    push(conv, "joined", &base(h), None, None, None);
                }
            }
            (Some(Dir::S2c), "BYE") => {
                if let Some(h) = a(0) {
                    push(
                        conv,
                        "left",
                        &base(h),
                        None,
                        None,
                        a(1).map(|r| json!({"reason": r})),
                    );
                }
            }
            (Some(Dir::C2s), "CAL") => {
                if let Some(h) = a(1) {
                    let who = conv.user.clone().unwrap_or_else(|| "(local user)".into());
                    push(
                        conv,
                        "invited",
                        &who,
                        None,
                        None,
                        Some(json!({"invitee": h})),
                    );
                }
            }
            (Some(d), "MSG" | "SDG") => {
                let Some(p) = &c.payload else { return };
                let Some(dec) = &p.decoded else { return };
                let sender = match (d, c.cmd.as_str()) {
                    (Dir::S2c, "MSG") => a(0).map(base).unwrap_or_default(),
                    (_, "SDG") => sdg_from(dec).unwrap_or_else(|| {
                        conv.user.clone().unwrap_or_else(|| "(local user)".into())
                    }),
                    _ => conv.user.clone().unwrap_or_else(|| "(local user)".into()),
                };
                let ct = dec
                    .get("content_type")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let body = dec.get("body").and_then(Value::as_str).map(str::to_string);
                match ct {
                    "text/plain" => push(
                        conv,
                        "message",
                        &sender,
                        body,
                        dec.get("format").cloned(),
                        None,
                    ),
                    "text/x-msmsgscontrol" => push(conv, "typing", &sender, None, None, None),
                    "text/x-msnmsgr-datacast" => push(
                        conv,
                        "datacast",
                        &sender,
                        None,
                        None,
                        dec.get("datacast").cloned(),
                    ),
                    "text/x-msmsgsinvite" => push(
                        conv,
                        "invitation",
                        &sender,
                        None,
                        None,
                        dec.get("invite").cloned(),
                    ),
                    "text/x-mms-emoticon" | "text/x-mms-animemoticon" => push(
                        conv,
                        "emoticons",
                        &sender,
                        None,
                        None,
                        dec.get("emoticons").cloned(),
                    ),
                    "application/x-msnmsgrp2p" => {
                        let p2p = dec.get("p2p");
                        // Only the SLP control messages are worth a line; data chunks are not.
                        if let Some(slp) = p2p.and_then(|p| p.get("slp")).and_then(Value::as_str) {
                            let first = slp.lines().next().unwrap_or("").to_string();
                            push(conv, "p2p", &sender, Some(first), None, None);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Ends every open conversation (end of input).
    pub fn finish(&mut self) {
        let open = std::mem::take(&mut self.open);
        self.done
            .extend(open.into_values().filter(|c| !c.entries.is_empty()));
        self.done.sort_by_key(|c| c.conn);
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        for c in &self.done {
            let who: Vec<String> = c
                .participants
                .iter()
                .map(|(h, n)| {
                    if n.is_empty() || n == h {
                        h.clone()
                    } else {
                        format!("{h} ({n})")
                    }
                })
                .collect();
            let _ =
                writeln!(
                s,
                "=== conversation on connection #{} ({} {}), started {}; local user {}; with {}",
                c.conn,
                c.service,
                c.version.as_deref().unwrap_or("MSNP?"),
                c.started.as_deref().unwrap_or("?"),
                c.user.as_deref().unwrap_or("?"),
                if who.is_empty() { "nobody".to_string() } else { who.join(", ") }
            );
            for e in &c.entries {
                let t = e.ts.get(11..26).unwrap_or(&e.ts);
                let line = match e.kind.as_str() {
                    "message" => {
                        let f = e
                            .format
                            .as_ref()
                            .map(format_label)
                            .filter(|f| !f.is_empty())
                            .map(|f| format!("  [{f}]"))
                            .unwrap_or_default();
                        format!("<{}> {}{f}", e.who, e.text.as_deref().unwrap_or(""))
                    }
                    "typing" => format!("* {} is typing", e.who),
                    "present" => format!("* {} is here", e.who),
                    "joined" => format!("* {} joined", e.who),
                    "left" => format!("* {} left", e.who),
                    "invited" => format!(
                        "* {} invited {}",
                        e.who,
                        e.detail
                            .as_ref()
                            .and_then(|d| d["invitee"].as_str())
                            .unwrap_or("?")
                    ),
                    "datacast" => format!(
                        "* {} sent a {}",
                        e.who,
                        e.detail
                            .as_ref()
                            .and_then(|d| d["name"].as_str())
                            .unwrap_or("datacast")
                    ),
                    "invitation" => {
                        let d = e.detail.as_ref();
                        let g = |k: &str| d.and_then(|d| d[k].as_str()).unwrap_or("?").to_string();
                        format!(
                            "* {} invitation {} {} {}",
                            e.who,
                            g("Invitation-Command"),
                            g("Application-Name"),
                            d.and_then(|d| d["Application-File"].as_str()).unwrap_or("")
                        )
                    }
                    "emoticons" => format!("* {} announced custom emoticons", e.who),
                    "p2p" => format!("* {} P2P: {}", e.who, e.text.as_deref().unwrap_or("")),
                    other => format!("* {} {other}", e.who),
                };
                let _ = writeln!(s, "[{t}] {line}");
            }
            s.push('\n');
        }
        s
    }
}

/// The sender of an SDG message: `From: 1:alice@example.com;epid={...}`.
fn sdg_from(dec: &Value) -> Option<String> {
    let routing = dec.get("routing")?.as_array()?;
    let from = routing
        .iter()
        .find(|p| p.get(0).and_then(Value::as_str) == Some("From"))?;
    let v = from.get(1)?.as_str()?;
    let v = v.split(';').next()?;
    Some(v.split_once(':').map(|(_, h)| h).unwrap_or(v).to_string())
}
