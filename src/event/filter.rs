//! Filters every command shares (show/hide commands, one service, one direction, one user)
//! and redaction of secrets before output.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{Dir, Event, EventKind, Service};

pub const REDACTED: &str = "<redacted>";

/// Names (compared case-insensitively) of MIME headers, body keys and decoded fields whose
/// values are secrets: `AuthCookie` is the MSNFTP direct-connection cookie.
pub const SECRET_NAMES: &[&str] = &["mspauth", "ticket", "authcookie", "auth_cookie"];

fn is_secret_name(k: &str) -> bool {
    SECRET_NAMES.iter().any(|s| k.eq_ignore_ascii_case(s))
}

/// Blanks secrets in a decoded payload: `[name, value]` header pairs, object fields with a
/// secret name, and `Name: value` lines of body text. Returns whether anything changed.
fn redact_value(v: &mut Value, depth: usize) -> bool {
    if depth > 16 {
        return false;
    }
    let mut changed = false;
    match v {
        Value::Array(items) => {
            for it in items.iter_mut() {
                if let Some(pair) = it.as_array_mut() {
                    if pair.len() == 2
                        && pair[0].as_str().is_some_and(is_secret_name)
                        && pair[1].as_str() != Some(REDACTED)
                    {
                        pair[1] = Value::String(REDACTED.into());
                        changed = true;
                        continue;
                    }
                }
                changed |= redact_value(it, depth + 1);
            }
        }
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if is_secret_name(k) && val.is_string() {
                    if val.as_str() != Some(REDACTED) {
                        *val = Value::String(REDACTED.into());
                        changed = true;
                    }
                } else if k == "body" {
                    if let Value::String(text) = val {
                        if let Some(t) = redact_lines(text) {
                            *text = t;
                            changed = true;
                        }
                    }
                } else {
                    changed |= redact_value(val, depth + 1);
                }
            }
        }
        _ => {}
    }
    changed
}

/// `AuthCookie: 123` lines of a text body become `AuthCookie: <redacted>`.
fn redact_lines(text: &str) -> Option<String> {
    let secret = |line: &str| match line.split_once(':') {
        Some((k, rest)) => is_secret_name(k.trim()) && rest.trim() != REDACTED,
        None => false,
    };
    // Nearly every body has no secret line: look before copying anything.
    if !text.split_inclusive('\n').any(secret) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match line.split_once(':') {
            Some((k, _)) if secret(line) => {
                let end = if line.ends_with("\r\n") {
                    "\r\n"
                } else if line.ends_with('\n') {
                    "\n"
                } else {
                    ""
                };
                out.push_str(k);
                out.push_str(": ");
                out.push_str(REDACTED);
                out.push_str(end);
            }
            _ => out.push_str(line),
        }
    }
    Some(out)
}

/// Which events reach the sinks.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only these commands (upper-case); empty: all.
    pub only: HashSet<String>,
    /// Never these commands.
    pub hide: HashSet<String>,
    pub service: Option<Service>,
    pub dir: Option<Dir>,
    /// A user handle (lower-case, no `;{guid}`).
    pub user: Option<String>,
    /// Connection -> the handle that logged in on it.
    pub owners: HashMap<u64, String>,
}

fn bare_handle(h: &str) -> String {
    let h = h.split(';').next().unwrap_or(h);
    let h = match h.split_once(':') {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => h,
    };
    h.to_ascii_lowercase()
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.only.is_empty()
            && self.hide.is_empty()
            && self.service.is_none()
            && self.dir.is_none()
            && self.user.is_none()
    }

    /// Decides whether `ev` passes. Stateful: it learns which user owns which connection.
    pub fn pass(&mut self, ev: &Event) -> bool {
        if let (Some(user), EventKind::Command(c)) = (&self.user, &ev.kind) {
            // `USR t SCHEME I handle`, `USR t handle cookie` (SB), `ANS t handle cookie sid`.
            let owner = match (ev.dir, c.cmd.as_str()) {
                (Some(Dir::C2s), "USR") if c.args.get(2).map(String::as_str) == Some("I") => {
                    c.args.get(3)
                }
                (Some(Dir::C2s), "USR") if c.args.len() == 3 => c.args.get(1),
                (Some(Dir::C2s), "ANS") => c.args.get(1),
                _ => None,
            };
            if let Some(o) = owner {
                let o = bare_handle(o);
                let _ = user;
                self.owners.insert(ev.conn, o);
            }
        }
        if let Some(s) = self.service {
            if ev.service != s {
                return false;
            }
        }
        if let Some(d) = self.dir {
            if ev.dir.is_some_and(|x| x != d) {
                return false;
            }
        }
        if let EventKind::Command(c) = &ev.kind {
            if !self.only.is_empty() && !self.only.contains(&c.cmd) {
                return false;
            }
            if self.hide.contains(&c.cmd) {
                return false;
            }
        } else if !self.only.is_empty() {
            // With --only, keep the connection-level events that explain the stream.
            if matches!(ev.kind, EventKind::Note { .. }) {
                return false;
            }
        }
        if let Some(user) = &self.user {
            if self.owners.get(&ev.conn) == Some(user) {
                return true;
            }
            return match &ev.kind {
                EventKind::Command(c) => c.args.iter().any(|a| &bare_handle(a) == user),
                _ => false,
            };
        }
        true
    }
}

/// Replaces secrets (cookies, hashes, tickets, MSPAuth) in `ev` by `<redacted>`.
pub fn redact(ev: &mut Event) {
    let EventKind::Command(c) = &mut ev.kind else {
        return;
    };
    let mut changed = false;
    for &i in &c.secret_args {
        let Some(a) = c.args.get(i).cloned() else {
            continue;
        };
        if a == REDACTED {
            continue;
        }
        for v in c.fields.values_mut() {
            if v.as_str() == Some(a.as_str()) {
                *v = Value::String(REDACTED.into());
            }
        }
        c.args[i] = REDACTED.into();
        changed = true;
    }
    if changed {
        let mut line = c.cmd.clone();
        for a in &c.args {
            line.push(' ');
            line.push_str(a);
        }
        c.line = line;
    }
    if let Some(Value::Object(pw)) = c
        .annotations
        .get_mut("auth")
        .and_then(|a| a.get_mut("password"))
    {
        if pw.contains_key("value") {
            pw.insert("value".into(), Value::String(REDACTED.into()));
            changed = true;
        }
    }
    if let Some(p) = c.payload.as_mut() {
        if let Some(d) = p.decoded.as_mut() {
            changed |= redact_value(d, 0);
        }
        if let Some(t) = p.text.as_ref().and_then(|t| redact_lines(t)) {
            p.text = Some(t);
            changed = true;
        }
    }
    if changed {
        c.redacted = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::session::decode_all;
    use crate::protocol::Tables;
    use std::sync::Arc;

    #[test]
    fn msnftp_auth_cookie_is_redacted_everywhere() {
        let body = "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\nInvitation-Command: ACCEPT\r\nInvitation-Cookie: 7\r\nIP-Address: 192.0.2.7\r\nPort: 6891\r\nAuthCookie: 99887766\r\n\r\n";
        let wire = format!("MSG alice@example.com Alice {}\r\n{body}", body.len());
        let tables = Arc::new(Tables::builtin().unwrap());
        let mut evs = decode_all(tables, &[(Dir::S2c, wire.as_bytes())]);
        let ev = evs
            .iter_mut()
            .find(|e| e.command().is_some_and(|c| c.cmd == "MSG"))
            .unwrap();
        let before = serde_json::to_string(&*ev).unwrap();
        assert!(before.contains("99887766"));
        redact(ev);
        let after = serde_json::to_string(&*ev).unwrap();
        assert!(!after.contains("99887766"), "{after}");
        let d = ev
            .command()
            .unwrap()
            .payload
            .as_ref()
            .unwrap()
            .decoded
            .as_ref()
            .unwrap();
        assert_eq!(d["msnftp"]["auth_cookie"], REDACTED);
        assert_eq!(d["fields"]["AuthCookie"], REDACTED);
        // What is not secret stays.
        assert_eq!(d["msnftp"]["address"], "192.0.2.7:6891");
        assert!(ev.command().unwrap().redacted);
    }

    #[test]
    fn secret_lines_in_text() {
        assert_eq!(
            redact_lines("A: 1\r\nAuthCookie: 5\r\n").as_deref(),
            Some("A: 1\r\nAuthCookie: <redacted>\r\n")
        );
        assert_eq!(redact_lines("A: 1\n"), None);
    }
}
