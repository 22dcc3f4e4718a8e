//! The filters every command shares: show or hide commands, one service, one direction,
//! one user, some connections, a time window. Redaction is not here: every event type
//! implements `secret::Redact`.

use std::collections::{HashMap, HashSet};

use super::{Dir, Event, EventKind, Service, Ts};

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
    /// Only these connection numbers; empty: all.
    pub conns: HashSet<u64>,
    /// Only events at or after this time.
    pub since: Option<Ts>,
    /// Only events before this time.
    pub until: Option<Ts>,
    /// Connection -> the handle that logged in on it.
    pub owners: HashMap<u64, String>,
}

/// `1:Bob@Example.com;{guid}` -> `bob@example.com`.
pub fn bare_handle(h: &str) -> String {
    let h = h.split(';').next().unwrap_or(h);
    let h = match h.split_once(':') {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => h,
    };
    h.to_ascii_lowercase()
}

/// The handle a client logs in with on this line: `USR t SCHEME I handle`, `USR t handle
/// cookie` (SB), `ANS t handle cookie sid`.
pub fn login_handle<'c>(ev: &'c Event<'_>) -> Option<&'c str> {
    let c = ev.command()?;
    match (ev.dir, c.cmd.as_ref()) {
        (Some(Dir::C2s), "USR") if c.arg(2) == Some("I") => c.arg(3),
        (Some(Dir::C2s), "USR") if c.argc() == 3 => c.arg(1),
        (Some(Dir::C2s), "ANS") => c.arg(1),
        _ => None,
    }
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.only.is_empty()
            && self.hide.is_empty()
            && self.service.is_none()
            && self.dir.is_none()
            && self.user.is_none()
            && self.conns.is_empty()
            && self.since.is_none()
            && self.until.is_none()
    }

    /// Decides whether `ev` passes. Stateful: it learns which user owns which connection.
    pub fn pass(&mut self, ev: &Event<'_>) -> bool {
        if self.user.is_some() {
            if let Some(o) = login_handle(ev) {
                self.owners.insert(ev.conn, bare_handle(o));
            }
        }
        if !self.conns.is_empty() && !self.conns.contains(&ev.conn) {
            return false;
        }
        if self.since.is_some_and(|t| ev.ts < t) || self.until.is_some_and(|t| ev.ts >= t) {
            return false;
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
            if !self.only.is_empty() && !self.only.contains(c.cmd.as_ref()) {
                return false;
            }
            if self.hide.contains(c.cmd.as_ref()) {
                return false;
            }
        } else if !self.only.is_empty() && matches!(ev.kind, EventKind::Note(_)) {
            // With --only, keep the connection-level events that explain the stream.
            return false;
        }
        if let Some(user) = &self.user {
            if self.owners.get(&ev.conn) == Some(user) {
                return true;
            }
            return match &ev.kind {
                EventKind::Command(c) => c.args().any(|a| &bare_handle(a) == user),
                _ => false,
            };
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::session::decode_all;
    use crate::protocol::Tables;
    use crate::secret::{Redact, REDACTED};
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
        assert!(ev.redact());
        let after = serde_json::to_string(&*ev).unwrap();
        assert!(!after.contains("99887766"), "{after}");
        let c = ev
            .command()
            .unwrap()
            .payload
            .as_ref()
            .unwrap()
            .content()
            .unwrap();
        let ft = c.msnftp.as_ref().unwrap();
        assert_eq!(ft.auth_cookie.as_ref().unwrap().expose(), REDACTED);
        assert_eq!(c.fields.as_ref().unwrap().get("AuthCookie"), Some(REDACTED));
        // What is not secret stays.
        assert_eq!(ft.address.as_deref(), Some("192.0.2.7:6891"));
        assert!(ev.command().unwrap().redacted);
    }

    #[test]
    fn conn_filter_keeps_only_the_connections_named() {
        let tables = Arc::new(Tables::builtin().unwrap());
        let mut evs = decode_all(tables, &[(Dir::C2s, b"PNG\r\nCHG 1 NLN 0\r\n")]);
        assert!(evs.len() >= 2);
        let n = evs.len();
        for (i, e) in evs.iter_mut().enumerate() {
            e.conn = 1 + (i as u64 % 3);
        }
        let mut f = Filter {
            conns: [1, 3].into_iter().collect(),
            ..Filter::default()
        };
        assert!(!f.is_empty());
        let kept: Vec<u64> = evs.iter().filter(|e| f.pass(e)).map(|e| e.conn).collect();
        let want: Vec<u64> = (0..n as u64)
            .map(|i| 1 + i % 3)
            .filter(|&c| c != 2)
            .collect();
        assert_eq!(kept, want);
    }

    #[test]
    fn user_filter_follows_the_login() {
        let tables = Arc::new(Tables::builtin().unwrap());
        let evs = decode_all(
            tables,
            &[(Dir::C2s, b"USR 1 Bob@Example.com 123.456\r\nMSG 2 N 0\r\n")],
        );
        let mut f = Filter {
            user: Some("bob@example.com".into()),
            ..Filter::default()
        };
        assert!(evs.iter().all(|e| f.pass(e)));
        let mut g = Filter {
            user: Some("carol@example.com".into()),
            ..Filter::default()
        };
        assert!(!evs.iter().any(|e| g.pass(e)));
    }
}
