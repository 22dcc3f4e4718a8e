//! The compact summary of one event that the view lists, filters and draws (the event
//! itself is kept as its JSON text beside it). Built from events after redaction, so a
//! row never holds a secret that the event did not show.

use serde::Serialize;

use crate::event::pretty::{annotation_summary, describe_other, one_line, payload_summary};
use crate::event::{Dir, Event, EventKind, Service, Ts};

/// The event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Command,
    Connect,
    Close,
    Desync,
    Gap,
    Redirect,
    Note,
    Error,
    Dropped,
}

impl Kind {
    pub fn of(k: &EventKind<'_>) -> Kind {
        match k {
            EventKind::Command(_) => Kind::Command,
            EventKind::Connect(_) => Kind::Connect,
            EventKind::Close(_) => Kind::Close,
            EventKind::Desync(_) => Kind::Desync,
            EventKind::Gap(_) => Kind::Gap,
            EventKind::Redirect(_) => Kind::Redirect,
            // The web view shows the HTTP side as remarks beside the MSNP it carries.
            EventKind::Note(_) | EventKind::Http(_) | EventKind::Gateway(_) => Kind::Note,
            EventKind::Error(_) => Kind::Error,
            EventKind::Dropped(_) => Kind::Dropped,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::Connect => "connect",
            Kind::Close => "close",
            Kind::Desync => "desync",
            Kind::Gap => "gap",
            Kind::Redirect => "redirect",
            Kind::Note => "note",
            Kind::Error => "error",
            Kind::Dropped => "dropped",
        }
    }
}

/// An error reply or an error event.
pub const F_ERROR: u8 = 1;
/// A command the tables do not know.
pub const F_UNKNOWN: u8 = 2;
/// A known command in a form the tables do not describe.
pub const F_UNMATCHED: u8 = 4;
/// The proxy forwarded a rewritten line.
pub const F_REWRITTEN: u8 = 8;
/// The command carries a payload.
pub const F_PAYLOAD: u8 = 16;

/// Longest text kept for the list and the ladder (the event's JSON has it all).
pub const TEXT_MAX: usize = 240;

/// One event, summarised.
#[derive(Debug, Clone)]
pub struct Row {
    pub seq: u64,
    pub ts: Ts,
    pub conn: u64,
    pub dir: Option<Dir>,
    pub service: Service,
    pub kind: Kind,
    /// The command name (or the event type for other events).
    pub cmd: Box<str>,
    pub flags: u8,
    /// The line and a payload summary, or a description of the event.
    pub text: Box<str>,
    /// `text` in lower case, for search.
    pub lower: Box<str>,
    /// The line as the proxy forwarded it, when it was rewritten.
    pub rewritten: Option<Box<str>>,
}

impl Row {
    pub fn of(seq: u64, ev: &Event<'_>) -> Row {
        let mut flags = 0;
        let mut rewritten = None;
        let (cmd, text): (Box<str>, String) = match &ev.kind {
            EventKind::Command(c) => {
                if c.error.is_some() {
                    flags |= F_ERROR;
                }
                if !c.known {
                    flags |= F_UNKNOWN;
                }
                if c.unmatched_form {
                    flags |= F_UNMATCHED;
                }
                if let Some(r) = &c.rewritten {
                    flags |= F_REWRITTEN;
                    rewritten = Some(one_line(r, TEXT_MAX).into_boxed_str());
                }
                let mut t = one_line(&c.line, TEXT_MAX);
                if let Some(p) = &c.payload {
                    flags |= F_PAYLOAD;
                    t.push_str("  \u{2014} ");
                    t.push_str(&one_line(&payload_summary(p), TEXT_MAX));
                }
                if let Some(e) = &c.error {
                    if let Some(n) = e.name.as_deref().or(e.meaning.as_deref()) {
                        t.push_str(&format!("  [error {}: {}]", e.code, n));
                    }
                }
                let a = annotation_summary(&c.annotations);
                if !a.is_empty() {
                    t.push_str("  [");
                    t.push_str(&a);
                    t.push(']');
                }
                (c.cmd.as_ref().into(), t)
            }
            other => {
                if matches!(other, EventKind::Error(_)) {
                    flags |= F_ERROR;
                }
                (
                    other.type_name().into(),
                    describe_other(other).unwrap_or_default(),
                )
            }
        };
        let text = one_line(&text, TEXT_MAX * 2);
        Row {
            seq,
            ts: ev.ts,
            conn: ev.conn,
            dir: ev.dir,
            service: ev.service,
            kind: Kind::of(&ev.kind),
            cmd,
            flags,
            lower: text.to_lowercase().into_boxed_str(),
            text: text.into_boxed_str(),
            rewritten,
        }
    }

    /// Bytes this row holds, for the store's bound.
    pub fn weight(&self) -> usize {
        std::mem::size_of::<Row>()
            + self.cmd.len()
            + self.text.len()
            + self.lower.len()
            + self.rewritten.as_ref().map_or(0, |r| r.len())
    }

    pub fn is_command(&self) -> bool {
        self.kind == Kind::Command
    }
}
