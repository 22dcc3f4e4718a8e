//! Frames into events: the payload plan the framer asks for (from the dissector tables and
//! the dialect), and the command event built from a frame's bytes. Pure functions; the
//! session and the proxy's decoder both call them.

use std::borrow::Cow;

use super::dialect::Dialect;
use super::fields;
use super::tables::{PayloadKind, PayloadRule, Tables};
use crate::event::{Command, Dir, ErrorInfo};
use crate::payload::{self, Bytes, Kind, Payload};
use crate::wire::{self, Args, Eol, Frame, Limits, Plan, Rules, Tok};

/// The tag of a frame whose command is not in the tables (or is an error code).
pub const NO_COMMAND: u32 = u32::MAX;
const NO_FORM: u32 = 0xFFFF;
/// Error replies carry a payload (`NNN trid len`) from this dialect on: while the
/// newest possible version is older, a third token is no length.
pub const ERROR_PAYLOAD_FROM: u8 = 13;

fn tag(cmd: usize, form: Option<usize>) -> u32 {
    ((cmd as u32) << 16) | form.map_or(NO_FORM, |f| f as u32)
}

/// The command index and form index a frame's tag names.
pub fn untag(tag: u32) -> Option<(usize, Option<usize>)> {
    if tag == NO_COMMAND {
        return None;
    }
    let f = tag & 0xFFFF;
    Some(((tag >> 16) as usize, (f != NO_FORM).then_some(f as usize)))
}

/// What the framer asks of the protocol, answered from the tables and the dialect.
pub struct FrameRules<'a> {
    pub tables: &'a Tables,
    pub dialect: &'a Dialect,
    pub dir: Dir,
    pub limits: Limits,
}

impl Rules for FrameRules<'_> {
    fn is_known(&self, name: &[u8]) -> bool {
        self.tables.is_known(name)
    }

    fn plan(&self, line: &[u8], toks: &[Tok], after: &[u8], eof: bool) -> Plan {
        let Some(name) = toks.first().map(|t| t.of(line)) else {
            return Plan::None { tag: NO_COMMAND };
        };
        let args = Args::of_line(line, toks);
        let last_len = || args.last().and_then(wire::parse_len);
        if name[0].is_ascii_digit() {
            // Errors carry a payload only from MSNP13 on, as `NNN trid len`.
            let len = (self.dialect.range.hi >= ERROR_PAYLOAD_FROM && args.len() == 2)
                .then(|| args.get(1).and_then(wire::parse_len))
                .flatten();
            return plan_of(len, NO_COMMAND);
        }
        let Some(ci) = self.tables.command_index(name) else {
            // Unknown command: guess from what follows.
            return match last_len() {
                Some(n) if n > 0 && n as usize <= self.limits.max_guess => {
                    match wire::line_starts(after, eof, |_| true) {
                        None => Plan::NeedMore,
                        Some(true) => Plan::None { tag: NO_COMMAND },
                        Some(false) if eof && after.is_empty() => Plan::None { tag: NO_COMMAND },
                        Some(false) => Plan::Payload {
                            len: n,
                            guess: true,
                            tag: NO_COMMAND,
                        },
                    }
                }
                _ => Plan::None { tag: NO_COMMAND },
            };
        };
        let Some(def) = self.tables.command_at(ci) else {
            return Plan::None { tag: NO_COMMAND };
        };
        let form = Tables::select_form(
            def,
            self.dir,
            self.dialect.service,
            self.dialect.versions(),
            &args,
        );
        let len = match form.and_then(|f| def.forms.get(f)) {
            Some(f) if f.payload == PayloadRule::Last => last_len(),
            Some(_) => None,
            // No form fits: fall back to what the command can do in this direction.
            None if def.may_carry_payload(self.dir) => last_len(),
            None => None,
        };
        plan_of(len, tag(ci, form))
    }
}

fn plan_of(len: Option<u64>, tag: u32) -> Plan {
    match len {
        Some(n) => Plan::Payload {
            len: n,
            guess: false,
            tag,
        },
        None => Plan::None { tag },
    }
}

fn kind_of(k: PayloadKind) -> Kind {
    match k {
        PayloadKind::Mime => Kind::Mime,
        PayloadKind::Xml => Kind::Xml,
        PayloadKind::Text => Kind::Text,
        PayloadKind::Binary => Kind::Binary,
        PayloadKind::Multipart => Kind::Multipart,
    }
}

/// The command event of one frame, decoded into `c`, a blank command already in its event
/// (the command is some 800 bytes; returning it and wrapping it in an event moved it three or
/// four times per line). `version` is the dialect's version when the frame was cut (payload
/// decoders use it), `limits` only for the problem text of skipped payloads.
pub fn command_into<'a>(
    c: &mut Command<'a>,
    tables: &'a Tables,
    dir: Dir,
    version: Option<u8>,
    limits: Limits,
    frame: &Frame,
    bytes: &'a [u8],
) {
    let line = frame.line(bytes);
    let text = payload::lossy(line);
    let line_base64 = matches!(text, Cow::Owned(_)).then(|| Bytes(Cow::Borrowed(line)));
    let args = match text {
        Cow::Borrowed(s) => Args::of_text(s, &frame.toks),
        Cow::Owned(_) => Args::of_line(line, &frame.toks),
    };
    let name = frame.name(bytes);
    c.cmd = match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.get(..name.len()).unwrap_or_default()),
        Cow::Owned(_) => fields::text(name),
    };
    c.line = text;
    c.line_base64 = line_base64;
    c.offset = frame.offset;
    c.frame_len = frame.len;
    c.unterminated = frame.eol == Eol::Missing;
    let first_num = || args.get(0).and_then(wire::parse_len);
    let mut kind: Option<Kind> = None;
    if name.first().is_some_and(u8::is_ascii_digit) {
        let code = wire::parse_len(name)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(0);
        let def = tables.error(code);
        c.known = def.is_some();
        c.error = Some(ErrorInfo {
            code,
            name: def.map(|d| Cow::Borrowed(d.name.as_ref())),
            meaning: def.map(|d| Cow::Borrowed(d.meaning.as_ref())),
        });
        c.trid = first_num();
        kind = Some(Kind::Xml);
    } else if let Some((ci, form)) = untag(frame.tag) {
        let def = tables.command_at(ci);
        c.known = def.is_some();
        match (def, form.and_then(|f| def.and_then(|d| d.forms.get(f)))) {
            (Some(_), Some(form)) => {
                kind = form.payload_kind.map(kind_of);
                fields::decode(tables, form, &args, c);
            }
            (Some(def), None) => {
                c.unmatched_form = true;
                c.trid = first_num();
                // Still mark addresses and secrets by looking at any form of this direction.
                fields::mark_by_any_form(def, dir, &args, &mut c.address_args, &mut c.secret_args);
            }
            (None, _) => c.trid = first_num(),
        }
    } else {
        c.trid = first_num();
    }
    if let Some(span) = frame.payload {
        c.payload = Some(if span.oversize {
            Payload {
                length: span.declared,
                kind: Kind::Skipped,
                guess: span.guess,
                decoded: None,
                text: None,
                base64: None,
                problem: Some(Cow::Owned(format!(
                    "declared length exceeds the {}-byte payload limit; not read",
                    limits.max_payload
                ))),
            }
        } else {
            let body = frame.payload(bytes);
            let mut p = payload::decode(kind, body, version);
            p.guess = span.guess;
            if span.truncated() {
                p.length = span.declared;
                p.problem = Some(Cow::Owned(format!(
                    "truncated: the stream ended after {} of {} payload bytes",
                    span.have, span.declared
                )));
            }
            p
        });
    }
}
