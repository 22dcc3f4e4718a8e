//! Filters every command shares (show/hide commands, one service, one direction, one user)
//! and redaction of secrets before output.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{Dir, Event, EventKind, Service};

pub const REDACTED: &str = "<redacted>";

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
    if let Some(p) = c.payload.as_mut() {
        if let Some(Value::Array(headers)) = p.decoded.as_mut().and_then(|d| d.get_mut("headers")) {
            for h in headers.iter_mut() {
                if let Some(pair) = h.as_array_mut() {
                    let secret = pair.first().and_then(Value::as_str).is_some_and(|k| {
                        matches!(
                            k.to_ascii_lowercase().as_str(),
                            "mspauth" | "ticket" | "authcookie"
                        )
                    });
                    if secret && pair.len() == 2 {
                        pair[1] = Value::String(REDACTED.into());
                        changed = true;
                    }
                }
            }
        }
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
    if changed {
        c.redacted = true;
    }
}
