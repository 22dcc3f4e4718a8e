//! Conversation transcripts: switchboard sessions (and MSNP18/21 SDG messaging) turned into
//! who joined and left when, and each message in order with sender, text and formatting,
//! typing, nudges and other datacasts, invitations, MSNSLP messages. It reads typed events
//! (redacted by the caller unless --no-redact) and copies out what an entry needs; it
//! never re-parses payload bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::event::{Command, Dir, Event, EventKind, Service, Ts, Version};
use crate::payload::mime::{header, Content, Datacast, Emoticon, ImFormat, Msnftp};
use crate::payload::{urldecode, P2p, Payload};

/// What a line of a conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Already in the switchboard when the local user arrived (IRO).
    Present,
    Joined,
    Left,
    Invited,
    Message,
    Typing,
    Datacast,
    Invitation,
    Emoticons,
    /// An MSNSLP message (INVITE, 200 OK, BYE...) carried over P2P.
    P2p,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Present => "present",
            EntryKind::Joined => "joined",
            EntryKind::Left => "left",
            EntryKind::Invited => "invited",
            EntryKind::Message => "message",
            EntryKind::Typing => "typing",
            EntryKind::Datacast => "datacast",
            EntryKind::Invitation => "invitation",
            EntryKind::Emoticons => "emoticons",
            EntryKind::P2p => "p2p",
        }
    }
}

/// What an entry says beyond its sender and text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    Left { reason: String },
    Invited { invitee: String },
    Datacast(Box<Datacast<'static>>),
    Invitation(Box<Msnftp<'static>>),
    Emoticons(Vec<Emoticon<'static>>),
}

/// One line of a conversation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub ts: Ts,
    pub kind: EntryKind,
    pub who: String,
    /// A message's text; an SLP message's start line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<ImFormat<'static>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
}

/// A conversation on one switchboard connection (or the SDG messages of one NS connection).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Conversation {
    pub conn: u64,
    pub service: Service,
    pub version: Option<Version>,
    pub started: Option<Ts>,
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

/// The sender of an SDG message: `From: 1:alice@example.com;epid={...}`.
fn sdg_from(p: &Payload<'_>) -> Option<String> {
    let routing = p.multipart()?.block("routing")?;
    let v = header(&routing.headers, "From")?;
    let v = v.split(';').next()?;
    Some(v.split_once(':').map(|(_, h)| h).unwrap_or(v).to_string())
}

/// The SLP start line a P2P chunk shows: the whole message's, or the first line of the
/// first chunk of a message split over several (later chunks start mid-text).
fn slp_line(p: &P2p<'_>) -> Option<String> {
    if let Some(s) = &p.slp {
        return Some(s.start_line.to_string());
    }
    p.slp_fragment
        .as_deref()
        .filter(|_| p.offset == Some(0))
        .map(str::to_string)
}

impl Conversation {
    fn push(&mut self, ts: Ts, kind: EntryKind, who: &str) -> &mut Entry {
        self.entries.push(Entry {
            ts,
            kind,
            who: who.to_string(),
            text: None,
            format: None,
            detail: None,
        });
        let last = self.entries.len() - 1;
        &mut self.entries[last]
    }

    fn local_user(&self) -> String {
        self.user.clone().unwrap_or_else(|| "(local user)".into())
    }

    /// A MSG or SDG payload.
    fn message(&mut self, ts: Ts, sender: &str, ct: &str, content: &Content<'_>) {
        match ct {
            "text/plain" => {
                let e = self.push(ts, EntryKind::Message, sender);
                e.text = content.text().map(str::to_string);
                e.format = content.format.clone().map(ImFormat::into_owned);
            }
            "text/x-msmsgscontrol" => {
                self.push(ts, EntryKind::Typing, sender);
            }
            "text/x-msnmsgr-datacast" => {
                let d = content
                    .datacast
                    .as_deref()
                    .map(|d| Detail::Datacast(Box::new(d.clone().into_owned())));
                self.push(ts, EntryKind::Datacast, sender).detail = d;
            }
            "text/x-msmsgsinvite" => {
                let d = content
                    .msnftp
                    .as_deref()
                    .map(|m| Detail::Invitation(Box::new(m.clone().into_owned())));
                self.push(ts, EntryKind::Invitation, sender).detail = d;
            }
            "text/x-mms-emoticon" | "text/x-mms-animemoticon" => {
                let d = content
                    .emoticons
                    .as_ref()
                    .map(|v| Detail::Emoticons(v.iter().map(|e| e.clone().into_owned()).collect()));
                self.push(ts, EntryKind::Emoticons, sender).detail = d;
            }
            "application/x-msnmsgrp2p" => {
                // Only the SLP control messages are worth a line; data chunks are not.
                if let Some(line) = content.p2p.as_deref().and_then(slp_line) {
                    self.push(ts, EntryKind::P2p, sender).text = Some(line);
                }
            }
            _ => {}
        }
    }

    fn command(&mut self, ev: &Event<'_>, c: &Command<'_>) {
        let ts = ev.ts;
        let a = |i: usize| c.arg(i);
        match (ev.dir, c.cmd.as_ref()) {
            (Some(Dir::C2s), "USR") if c.argc() == 3 => self.user = a(1).map(base),
            (Some(Dir::C2s), "ANS") => self.user = a(1).map(base),
            (Some(Dir::S2c), "USR") if a(1) == Some("OK") => {
                if let (Some(h), Some(n)) = (a(2), a(3)) {
                    self.participants.insert(base(h), urldecode(n).into_owned());
                }
            }
            (Some(Dir::S2c), "IRO") => {
                if let (Some(h), Some(n)) = (a(3), a(4)) {
                    self.participants.insert(base(h), urldecode(n).into_owned());
                    self.push(ts, EntryKind::Present, &base(h));
                }
            }
            (Some(Dir::S2c), "JOI") => {
                if let Some(h) = a(0) {
                    let name = a(1).map(|n| urldecode(n).into_owned()).unwrap_or_default();
                    self.participants.insert(base(h), name);
                    self.push(ts, EntryKind::Joined, &base(h));
                }
            }
            (Some(Dir::S2c), "BYE") => {
                if let Some(h) = a(0) {
                    let reason = a(1).map(|r| Detail::Left {
                        reason: r.to_string(),
                    });
                    self.push(ts, EntryKind::Left, &base(h)).detail = reason;
                }
            }
            (Some(Dir::C2s), "CAL") => {
                if let Some(h) = a(1) {
                    let who = self.local_user();
                    self.push(ts, EntryKind::Invited, &who).detail = Some(Detail::Invited {
                        invitee: h.to_string(),
                    });
                }
            }
            (Some(d), "MSG" | "SDG") => {
                let Some(p) = &c.payload else { return };
                let (Some(ct), Some(content)) = (p.content_type(), p.content()) else {
                    return;
                };
                let sender = match (d, c.cmd.as_ref()) {
                    (Dir::S2c, "MSG") => a(0).map(base).unwrap_or_default(),
                    (_, "SDG") => sdg_from(p).unwrap_or_else(|| self.local_user()),
                    _ => self.local_user(),
                };
                self.message(ts, &sender, ct, content);
            }
            _ => {}
        }
    }
}

impl Transcripts {
    /// Adds one event; what a conversation keeps is copied out of it.
    pub fn add(&mut self, ev: &Event<'_>) {
        if let EventKind::Close(_) = ev.kind {
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
        if ev.service != Service::Sb && c.cmd != "SDG" {
            return;
        }
        let conv = self.open.entry(ev.conn).or_insert_with(|| Conversation {
            conn: ev.conn,
            service: ev.service,
            ..Conversation::default()
        });
        if conv.started.is_none() {
            conv.started = Some(ev.ts);
        }
        if let Some(v) = ev.version {
            conv.version = Some(v);
        }
        conv.command(ev, c);
    }

    /// The conversations not ended yet (a live view shows them as they grow).
    pub fn open(&self) -> impl Iterator<Item = &Conversation> {
        self.open.values()
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
            let _ = writeln!(
                s,
                "=== conversation on connection #{} ({} {}), started {}; local user {}; with {}",
                c.conn,
                c.service,
                c.version.map_or_else(|| "MSNP?".into(), |v| v.to_string()),
                c.started.map_or_else(|| "?".into(), |t| t.to_string()),
                c.user.as_deref().unwrap_or("?"),
                if who.is_empty() {
                    "nobody".to_string()
                } else {
                    who.join(", ")
                }
            );
            for e in &c.entries {
                let ts = e.ts.to_string();
                let t = ts.get(11..26).unwrap_or(&ts);
                let _ = writeln!(s, "[{t}] {}", entry_line(e));
            }
            s.push('\n');
        }
        s
    }
}

/// The text of one entry, after its time.
fn entry_line(e: &Entry) -> String {
    let text = e.text.as_deref().unwrap_or("");
    match (e.kind, &e.detail) {
        (EntryKind::Message, _) => {
            let f = e
                .format
                .as_ref()
                .map(ImFormat::label)
                .filter(|f| !f.is_empty())
                .map(|f| format!("  [{f}]"))
                .unwrap_or_default();
            format!("<{}> {text}{f}", e.who)
        }
        (EntryKind::Typing, _) => format!("* {} is typing", e.who),
        (EntryKind::Present, _) => format!("* {} is here", e.who),
        (EntryKind::Joined, _) => format!("* {} joined", e.who),
        (EntryKind::Left, _) => format!("* {} left", e.who),
        (EntryKind::Invited, Some(Detail::Invited { invitee })) => {
            format!("* {} invited {invitee}", e.who)
        }
        (EntryKind::Invited, _) => format!("* {} invited ?", e.who),
        (EntryKind::Datacast, Some(Detail::Datacast(d))) => {
            format!("* {} sent a {}", e.who, d.name)
        }
        (EntryKind::Datacast, _) => format!("* {} sent a datacast", e.who),
        (EntryKind::Invitation, d) => {
            let ft = match d {
                Some(Detail::Invitation(m)) => Some(m),
                _ => None,
            };
            format!(
                "* {} invitation {} {} {}",
                e.who,
                ft.and_then(|m| m.command.as_deref()).unwrap_or("?"),
                ft.and_then(|m| m.application_name.as_deref())
                    .unwrap_or("?"),
                ft.and_then(|m| m.file_name.as_deref()).unwrap_or("")
            )
        }
        (EntryKind::Emoticons, _) => format!("* {} announced custom emoticons", e.who),
        (EntryKind::P2p, _) => format!("* {} P2P: {text}", e.who),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::p2p::build;
    use crate::protocol::session::decode_all;
    use crate::protocol::Tables;
    use std::sync::Arc;

    fn p2p_msg(trid: u32, body: &[u8]) -> Vec<u8> {
        let mut mime = b"MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: bob@example.com\r\n\r\n".to_vec();
        mime.extend_from_slice(body);
        let mut f = format!("MSG {trid} D {}\r\n", mime.len()).into_bytes();
        f.extend_from_slice(&mime);
        f
    }

    #[test]
    fn slp_messages_get_a_line_and_data_chunks_do_not() {
        let slp = b"BYE MSNMSGR:bob@example.com MSNSLP/1.0\r\nTo: <msnmsgr:bob@example.com>\r\nFrom: <msnmsgr:alice@example.com>\r\nCall-ID: {1}\r\nContent-Type: application/x-msnmsgr-sessionclosebody\r\nContent-Length: 3\r\n\r\n\r\n\0";
        let long = [&slp[..40], &[b'x'; 100][..]].concat();
        let mut wire = b"ANS 1 alice@example.com 1.2 3\r\n".to_vec();
        wire.extend(p2p_msg(
            2,
            &build::v1(0, 1, 0, slp.len() as u64, 0, slp, Some(0)),
        ));
        // A longer SLP message in two chunks: one line for its first chunk only.
        wire.extend(p2p_msg(
            3,
            &build::v1(0, 2, 0, 140, 0, &long[..70], Some(0)),
        ));
        wire.extend(p2p_msg(
            4,
            &build::v1(0, 2, 70, 140, 0, &long[70..], Some(0)),
        ));
        wire.extend(p2p_msg(5, &build::v1(9, 3, 0, 5, 0x20, b"hello", Some(1))));
        let tables = Arc::new(Tables::builtin().unwrap());
        let mut t = Transcripts::default();
        for mut e in decode_all(tables, &[(Dir::C2s, &wire)]) {
            e.service = Service::Sb;
            t.add(&e);
        }
        t.finish();
        let lines: Vec<(EntryKind, &str)> = t.done[0]
            .entries
            .iter()
            .map(|e| (e.kind, e.text.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(
            lines,
            [
                (EntryKind::P2p, "BYE MSNMSGR:bob@example.com MSNSLP/1.0"),
                (EntryKind::P2p, "BYE MSNMSGR:bob@example.com MSNSLP/1.0"),
            ]
        );
        assert!(t.text().contains("* alice@example.com P2P: BYE MSNMSGR:"));
    }
}
