//! Which connections make up one client's chain (DS -> NS -> SB ...), learned from the
//! event stream: redirects (XFR/RNG and the proxy's redirect events), the addresses they
//! hand out, switchboard cookies and login handles. Sans-IO and bounded in count; it keeps
//! only keyed digests of cookies, never the cookies, and nothing of it holds a secret.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;

use serde::Serialize;

use crate::event::filter::{bare_handle, login_handle};
use crate::event::{Dir, Ending, Event, EventKind, FieldValue, Service, Ts, Version};
use crate::secret::REDACTED;

/// How a connection was tied to the one before it in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// Its login used the cookie a referral handed out (XFR SB / RNG).
    Cookie,
    /// It connected to the address a referral handed out.
    Address,
}

/// What is known of one connection.
#[derive(Debug, Clone, Serialize)]
pub struct ConnInfo {
    pub id: u64,
    pub service: Service,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// The handle that logged in on it (bare, lower-case).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub first: Ts,
    pub last: Ts,
    pub open: bool,
    /// How it ended: `closed by client (FIN)`, `still open at the end of the capture`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ending: Option<String>,
    pub bytes_c2s: u64,
    pub bytes_s2c: u64,
    /// The connection whose referral led here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
    /// The referral that led here, e.g. `XFR SB 127.0.0.1:1864`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Seen through the proxy (a redirect was rewritten on it, or it was accepted by msntap).
    pub proxied: bool,
    pub events: u64,
    pub commands: u64,
    pub errors: u64,
    pub desyncs: u64,
    pub gaps: u64,
}

impl ConnInfo {
    fn new(id: u64, ts: Ts) -> ConnInfo {
        ConnInfo {
            id,
            service: Service::Unknown,
            version: None,
            user: None,
            client: None,
            server: None,
            first: ts,
            last: ts,
            open: true,
            ending: None,
            bytes_c2s: 0,
            bytes_s2c: 0,
            parent: None,
            link: None,
            via: None,
            proxied: false,
            events: 0,
            commands: 0,
            errors: 0,
            desyncs: 0,
            gaps: 0,
        }
    }

    /// `NS 127.0.0.1:1863`, the label of its lane.
    pub fn label(&self) -> String {
        match &self.server {
            Some(s) => format!("{} {s}", self.service),
            None => format!("{} conn {}", self.service, self.id),
        }
    }
}

/// One client's chain of connections.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    /// The id of its first connection.
    pub id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Its connections, in the order they opened.
    pub conns: Vec<u64>,
}

/// A server address handed to a client, waiting for the connection it causes.
#[derive(Debug, Clone)]
struct Referral {
    from: u64,
    label: String,
    addrs: Vec<String>,
    cookie: Option<u64>,
    ts: Ts,
    claimed: Option<u64>,
}

/// The key cookies are digested with: one per run, shared by whoever prepares events
/// for the chains (the digest is taken before redaction hides the cookie).
#[derive(Debug, Clone, Default)]
pub struct CookieKey(RandomState);

impl CookieKey {
    pub fn digest(&self, cookie: &str) -> Option<u64> {
        (cookie != REDACTED && !cookie.is_empty()).then(|| self.0.hash_one(cookie))
    }

    /// The digest of the cookie `ev` carries: a referral's (XFR SB, RNG) or a
    /// switchboard login's (USR, ANS).
    pub fn of_event(&self, ev: &Event<'_>) -> Option<u64> {
        self.digest(cookie_of(ev)?)
    }
}

/// The cookie an event carries, if any: a referral's or a switchboard login's.
pub fn cookie_of<'e>(ev: &'e Event<'_>) -> Option<&'e str> {
    let c = ev.command()?;
    match (ev.dir, c.cmd.as_ref()) {
        (Some(Dir::C2s), "USR") if c.argc() == 3 => c.arg(2),
        (Some(Dir::C2s), "ANS") => c.arg(2),
        (Some(Dir::S2c), "XFR" | "RNG") => {
            let args: Vec<&str> = c.args().collect();
            let i = args.iter().position(|a| *a == "CKI")?;
            args.get(i + 1).copied()
        }
        _ => None,
    }
}

/// How many connections and pending referrals are remembered.
#[derive(Debug, Clone, Copy)]
pub struct ChainLimits {
    pub conns: usize,
    pub referrals: usize,
}

impl Default for ChainLimits {
    fn default() -> Self {
        ChainLimits {
            conns: 200_000,
            referrals: 4096,
        }
    }
}

/// Learns the chains from events. Feed it every event before redaction (cookies are how
/// switchboard connections are joined); redacted events still join by address and user.
#[derive(Debug)]
pub struct Chains {
    conns: BTreeMap<u64, ConnInfo>,
    referrals: VecDeque<Referral>,
    limits: ChainLimits,
    /// Connections forgotten because of the bound.
    pub forgotten: u64,
    /// Bumped whenever the grouping may have changed.
    pub generation: u64,
}

impl Default for Chains {
    fn default() -> Self {
        Chains::new(ChainLimits::default())
    }
}

fn join_host_port(host: &str, port: u64) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn host_of(addr: &str) -> &str {
    match addr.rfind(':') {
        Some(i) => addr[..i].trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    }
}

fn ending_text(c: &crate::event::Close<'_>) -> String {
    let end = |e: Option<Ending>| match e {
        Some(Ending::Fin) => "FIN",
        Some(Ending::Reset) => "reset",
        Some(Ending::Open) => "open",
        Some(Ending::Aborted) => "aborted",
        None => "",
    };
    let mut s = String::from("closed");
    if let Some(b) = &c.by {
        s.push_str(" by ");
        s.push_str(b);
    }
    if let Some(r) = &c.reason {
        s.push_str(&format!(" ({r})"));
    } else if c.client_end.is_some() || c.server_end.is_some() {
        s.push_str(&format!(
            " (client {}, server {})",
            end(c.client_end),
            end(c.server_end)
        ));
    }
    s
}

/// The redirect a server line carries: (label, address, cookie). Works on JSON Lines
/// input too, where the tables' address argument indices are not carried.
pub fn referral_of(ev: &Event<'_>) -> Option<(String, String, Option<String>)> {
    let c = ev.command()?;
    if ev.dir != Some(Dir::S2c) {
        return None;
    }
    if let Some((target, addr, cookie)) = crate::protocol::redirect::of_command(ev.dir, c) {
        return Some((format!("{} {target} {addr}", c.cmd), addr, cookie));
    }
    if c.cmd != "XFR" && c.cmd != "RNG" {
        return None;
    }
    let addr = match c.fields.get("address")? {
        FieldValue::Address(a) => join_host_port(&a.host, a.port),
        FieldValue::Str(s) => s.to_string(),
        _ => return None,
    };
    if addr == "0" {
        return None;
    }
    let target = if c.cmd == "RNG" || c.arg(1) == Some("SB") {
        Service::Sb
    } else {
        Service::Ns
    };
    let cookie = c.fields.str("cookie").map(str::to_string);
    Some((format!("{} {target} {addr}", c.cmd), addr, cookie))
}

impl Chains {
    pub fn new(limits: ChainLimits) -> Chains {
        Chains {
            conns: BTreeMap::new(),
            referrals: VecDeque::new(),
            limits,
            forgotten: 0,
            generation: 0,
        }
    }

    pub fn conn(&self, id: u64) -> Option<&ConnInfo> {
        self.conns.get(&id)
    }

    pub fn conns(&self) -> impl Iterator<Item = &ConnInfo> {
        self.conns.values()
    }

    fn entry(&mut self, id: u64, ts: Ts) -> &mut ConnInfo {
        if !self.conns.contains_key(&id) && self.conns.len() >= self.limits.conns {
            // Forget the oldest closed connection (or the oldest at all).
            let victim = self
                .conns
                .values()
                .find(|c| !c.open)
                .map(|c| c.id)
                .or_else(|| self.conns.keys().next().copied());
            if let Some(v) = victim {
                self.conns.remove(&v);
                self.forgotten += 1;
                self.generation += 1;
            }
        }
        self.conns
            .entry(id)
            .or_insert_with(|| ConnInfo::new(id, ts))
    }

    fn push_referral(&mut self, r: Referral) {
        if self.referrals.len() >= self.limits.referrals {
            self.referrals.pop_front();
        }
        self.referrals.push_back(r);
    }

    /// Ties `conn` to the newest unclaimed referral handing out `server`.
    fn link_by_address(&mut self, conn: u64, server: &str, client: Option<&str>, ts: Ts) {
        let client_host = client.map(host_of);
        let mut found = None;
        for (i, r) in self.referrals.iter().enumerate().rev() {
            if r.claimed.is_some() || r.from == conn || r.ts > ts {
                continue;
            }
            if !r.addrs.iter().any(|a| a == server) {
                continue;
            }
            // A referral goes to the client of the connection that received it.
            let from_host = self
                .conns
                .get(&r.from)
                .and_then(|c| c.client.as_deref())
                .map(host_of);
            if let (Some(a), Some(b)) = (client_host, from_host) {
                if a != b {
                    continue;
                }
            }
            found = Some(i);
            break;
        }
        if let Some(i) = found {
            let (from, label) = {
                let r = &mut self.referrals[i];
                r.claimed = Some(conn);
                (r.from, r.label.clone())
            };
            let c = self.entry(conn, ts);
            c.parent = Some(from);
            c.link = Some(Link::Address);
            c.via = Some(label);
            self.generation += 1;
        }
    }

    /// Ties `conn` to the referral whose cookie its login carries; undoes a guess by address.
    fn link_by_cookie(&mut self, conn: u64, d: u64, ts: Ts) {
        let Some(i) = self
            .referrals
            .iter()
            .rposition(|r| r.cookie == Some(d) && r.from != conn)
        else {
            return;
        };
        for r in self.referrals.iter_mut() {
            if r.claimed == Some(conn) {
                r.claimed = None;
            }
        }
        let (from, label, stolen) = {
            let r = &mut self.referrals[i];
            let stolen = r.claimed.filter(|&o| o != conn);
            r.claimed = Some(conn);
            (r.from, r.label.clone(), stolen)
        };
        if let Some(o) = stolen {
            // Another connection had guessed this referral by address: the cookie wins.
            if let Some(oc) = self.conns.get_mut(&o) {
                if oc.link == Some(Link::Address) {
                    oc.parent = None;
                    oc.link = None;
                    oc.via = None;
                }
            }
        }
        let c = self.entry(conn, ts);
        c.parent = Some(from);
        c.link = Some(Link::Cookie);
        c.via = Some(label);
        self.generation += 1;
    }

    /// Learns from one event; `cookie` is `CookieKey::of_event` taken before redaction.
    pub fn observe(&mut self, ev: &Event<'_>, cookie: Option<u64>) {
        let id = ev.conn;
        if id == 0 {
            return;
        }
        {
            let c = self.entry(id, ev.ts);
            c.events += 1;
            c.last = c.last.max(ev.ts);
            if ev.service != Service::Unknown && c.service != ev.service {
                c.service = ev.service;
            }
            if ev.version.is_some() {
                c.version = ev.version;
            }
        }
        match &ev.kind {
            EventKind::Connect(k) => {
                let proxied = k
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with("accepted on"));
                let c = self.entry(id, ev.ts);
                if let Some(s) = &k.client {
                    c.client = Some(s.to_string());
                }
                if let Some(s) = &k.server {
                    c.server = Some(s.to_string());
                }
                c.proxied |= proxied;
                c.open = true;
                if c.parent.is_none() {
                    if let Some(server) = k.server.as_deref() {
                        let client = k.client.as_deref().map(str::to_string);
                        self.link_by_address(id, server, client.as_deref(), ev.ts);
                    }
                }
            }
            EventKind::Close(k) => {
                let c = self.entry(id, ev.ts);
                c.open = false;
                c.bytes_c2s = c.bytes_c2s.max(k.bytes_c2s);
                c.bytes_s2c = c.bytes_s2c.max(k.bytes_s2c);
                let still_open = k.client_end == Some(Ending::Open)
                    || k.server_end == Some(Ending::Open)
                    || k.reason.as_deref().is_some_and(|r| r.contains("open"));
                if still_open {
                    c.open = true;
                }
                c.ending = Some(ending_text(k));
            }
            EventKind::Desync(_) => self.entry(id, ev.ts).desyncs += 1,
            EventKind::Gap(_) => self.entry(id, ev.ts).gaps += 1,
            EventKind::Error(_) => self.entry(id, ev.ts).errors += 1,
            EventKind::Redirect(r) => {
                self.entry(id, ev.ts).proxied = true;
                // The client will connect to the rewritten address: add it to the referral.
                let original = r.original.to_string();
                let rewritten = r.rewritten.as_deref().map(str::to_string);
                if let Some(rf) = self
                    .referrals
                    .iter_mut()
                    .rev()
                    .find(|x| x.from == id && x.addrs.contains(&original))
                {
                    if let Some(w) = rewritten {
                        if !rf.addrs.contains(&w) {
                            rf.addrs.push(w);
                        }
                    }
                } else {
                    let mut addrs = vec![original.clone()];
                    addrs.extend(rewritten);
                    let label = format!("{} {} {original}", r.cmd, r.target);
                    self.push_referral(Referral {
                        from: id,
                        label,
                        addrs,
                        cookie: None,
                        ts: ev.ts,
                        claimed: None,
                    });
                }
            }
            EventKind::Command(cmd) => {
                {
                    let c = self.entry(id, ev.ts);
                    c.commands += 1;
                    if cmd.error.is_some() {
                        c.errors += 1;
                    }
                    if cmd.rewritten.is_some() {
                        c.proxied = true;
                    }
                    if c.ending.is_none() {
                        let n = cmd.line.len() as u64
                            + 2
                            + cmd.payload.as_ref().map_or(0, |p| p.length);
                        match ev.dir {
                            Some(Dir::C2s) => c.bytes_c2s += n,
                            Some(Dir::S2c) => c.bytes_s2c += n,
                            None => {}
                        }
                    }
                }
                if let Some(h) = login_handle(ev) {
                    let h = bare_handle(h);
                    let c = self.entry(id, ev.ts);
                    if c.user.as_deref() != Some(h.as_str()) {
                        c.user = Some(h);
                        self.generation += 1;
                    }
                }
                // A switchboard login carries the cookie of the referral that led to it.
                if ev.dir == Some(Dir::C2s) {
                    if let Some(d) = cookie {
                        let already = self
                            .conns
                            .get(&id)
                            .is_some_and(|c| c.link == Some(Link::Cookie));
                        if !already {
                            self.link_by_cookie(id, d, ev.ts);
                        }
                    }
                }
                if let Some((label, addr, _)) = referral_of(ev) {
                    self.push_referral(Referral {
                        from: id,
                        label,
                        addrs: vec![addr],
                        cookie,
                        ts: ev.ts,
                        claimed: None,
                    });
                }
            }
            EventKind::Note(_)
            | EventKind::Dropped(_)
            | EventKind::Http(_)
            | EventKind::Gateway(_) => {}
        }
    }

    /// The first connection of the chain `conn` belongs to, following referrals back.
    fn root_of(&self, conn: u64) -> u64 {
        let mut at = conn;
        // Referrals point back in time, but a bound keeps a corrupt input from looping.
        for _ in 0..64 {
            match self.conns.get(&at).and_then(|c| c.parent) {
                Some(p) if self.conns.contains_key(&p) && p != at => at = p,
                _ => break,
            }
        }
        at
    }

    /// Connection -> chain id, for every connection.
    pub fn assignment(&self) -> HashMap<u64, u64> {
        // Roots that logged in as the same user are one client's chain (a reconnect, or a
        // capture that began after the dispatch server).
        let mut by_user: HashMap<&str, u64> = HashMap::new();
        let mut root_chain: HashMap<u64, u64> = HashMap::new();
        for c in self.conns.values() {
            if self.root_of(c.id) != c.id {
                continue;
            }
            let chain = match c.user.as_deref() {
                Some(u) => *by_user.entry(u).or_insert(c.id),
                None => c.id,
            };
            root_chain.insert(c.id, chain);
        }
        self.conns
            .keys()
            .map(|&id| {
                let r = self.root_of(id);
                (id, root_chain.get(&r).copied().unwrap_or(r))
            })
            .collect()
    }

    /// The chains, in the order their first connection opened.
    pub fn chains(&self) -> Vec<Chain> {
        let a = self.assignment();
        let mut map: BTreeMap<u64, Chain> = BTreeMap::new();
        for c in self.conns.values() {
            let chain = a.get(&c.id).copied().unwrap_or(c.id);
            let e = map.entry(chain).or_insert_with(|| Chain {
                id: chain,
                user: None,
                conns: Vec::new(),
            });
            e.conns.push(c.id);
        }
        let mut v: Vec<Chain> = map.into_values().collect();
        for ch in &mut v {
            ch.conns.sort_by_key(|id| {
                let c = &self.conns[id];
                (c.first, c.id)
            });
            ch.user = ch.conns.iter().find_map(|id| self.conns[id].user.clone());
        }
        v.sort_by_key(|ch| {
            ch.conns
                .first()
                .map(|id| (self.conns[id].first, *id))
                .unwrap_or_default()
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Connect;
    use crate::protocol::session::decode_all;
    use crate::protocol::{SessionHint, Tables};
    use std::sync::Arc;

    /// Events of one connection: a connect, then the decoded lines (with `hint`).
    fn conn(
        id: u64,
        client: &str,
        server: &str,
        hint: Service,
        lines: &[(Dir, &str)],
        t0: i64,
    ) -> Vec<Event<'static>> {
        let tables = Arc::new(Tables::builtin().unwrap());
        let mut s = crate::protocol::Session::new(
            tables,
            id,
            SessionHint {
                service: Some(hint),
                version: Some(11),
            },
        );
        let mut out = vec![Event::new(
            Ts(t0),
            id,
            None,
            hint,
            None,
            EventKind::Connect(Connect {
                client: Some(client.to_string().into()),
                server: Some(server.to_string().into()),
                detail: None,
            }),
        )];
        for (i, (d, l)) in lines.iter().enumerate() {
            s.feed(
                *d,
                format!("{l}\r\n").as_bytes(),
                Ts(t0 + 1 + i as i64),
                &mut |e| out.push(e.clone().into_owned()),
            );
        }
        out
    }

    fn feed(c: &mut Chains, key: &CookieKey, evs: &mut [Event<'static>]) {
        for ev in evs.iter_mut() {
            let d = key.of_event(ev);
            crate::secret::Redact::redact(ev);
            c.observe(ev, d);
        }
    }

    #[test]
    fn the_cookie_overrides_an_address_guess_and_xfr_ns_joins_by_address() {
        let key = CookieKey::default();
        let mut c = Chains::default();
        let (s2c, c2s) = (Dir::S2c, Dir::C2s);
        // A dispatch connection sends Alice to the notification server.
        feed(
            &mut c,
            &key,
            &mut conn(
                1,
                "127.0.0.1:5000",
                "10.0.0.1:1863",
                Service::Ds,
                &[
                    (c2s, "VER 1 MSNP11 CVR0"),
                    (c2s, "USR 2 TWN I alice@example.com"),
                    (s2c, "XFR 2 NS 10.0.0.5:1863 0 10.0.0.1:1863"),
                ],
                0,
            ),
        );
        feed(
            &mut c,
            &key,
            &mut conn(
                2,
                "127.0.0.1:5001",
                "10.0.0.5:1863",
                Service::Ns,
                &[
                    (c2s, "USR 3 TWN I alice@example.com"),
                    (c2s, "XFR 4 SB"),
                    (s2c, "XFR 4 SB 10.9.9.9:1864 CKI alicecookie.1"),
                ],
                100,
            ),
        );
        // Bob, on the same host, is rung to the same switchboard address.
        feed(
            &mut c,
            &key,
            &mut conn(
                3,
                "127.0.0.1:6000",
                "10.0.0.5:1863",
                Service::Ns,
                &[
                    (c2s, "USR 3 TWN I bob@example.com"),
                    (
                        s2c,
                        "RNG 777 10.9.9.9:1864 CKI bobcookie.2 alice@example.com Alice",
                    ),
                ],
                200,
            ),
        );
        // Alice's switchboard connects first: the newest referral to that address is Bob's
        // RNG, so the address alone guesses wrong, until her cookie says otherwise.
        let mut sb_alice = conn(
            4,
            "127.0.0.1:5002",
            "10.9.9.9:1864",
            Service::Sb,
            &[(c2s, "USR 1 alice@example.com alicecookie.1")],
            300,
        );
        feed(&mut c, &key, &mut sb_alice[..1]);
        assert_eq!(c.conn(4).unwrap().parent, Some(3));
        assert_eq!(c.conn(4).unwrap().link, Some(Link::Address));
        feed(&mut c, &key, &mut sb_alice[1..]);
        assert_eq!(c.conn(4).unwrap().parent, Some(2));
        assert_eq!(c.conn(4).unwrap().link, Some(Link::Cookie));
        // Bob's RNG is free again for his own switchboard connection.
        feed(
            &mut c,
            &key,
            &mut conn(
                5,
                "127.0.0.1:6001",
                "10.9.9.9:1864",
                Service::Sb,
                &[(c2s, "ANS 1 bob@example.com bobcookie.2 777")],
                400,
            ),
        );
        assert_eq!(c.conn(5).unwrap().parent, Some(3));
        assert_eq!(c.conn(5).unwrap().link, Some(Link::Cookie));
        // XFR NS joined dispatch and notification by address.
        assert_eq!(c.conn(2).unwrap().parent, Some(1));
        assert_eq!(c.conn(2).unwrap().link, Some(Link::Address));
        let chains: Vec<(Option<String>, Vec<u64>)> = c
            .chains()
            .into_iter()
            .map(|ch| (ch.user, ch.conns))
            .collect();
        assert_eq!(
            chains,
            vec![
                (Some("alice@example.com".into()), vec![1, 2, 4]),
                (Some("bob@example.com".into()), vec![3, 5]),
            ]
        );
        // Nothing kept is a cookie (the digests are keyed per run).
        let dump = format!("{c:?}");
        assert!(!dump.contains("alicecookie") && !dump.contains("bobcookie"));
    }

    #[test]
    fn bounded_in_connections_and_referrals() {
        let mut c = Chains::new(ChainLimits {
            conns: 100,
            referrals: 10,
        });
        let tables = Arc::new(Tables::builtin().unwrap());
        for i in 1..=1000u64 {
            let mut evs = decode_all(
                tables.clone(),
                &[(Dir::S2c, b"XFR 4 SB 10.9.9.9:1864 CKI x\r\n")],
            );
            for ev in evs.iter_mut() {
                ev.conn = i;
                c.observe(ev, Some(i));
            }
        }
        assert!(c.conns().count() <= 100);
        assert!(c.referrals.len() <= 10);
        assert_eq!(c.forgotten, 900);
    }
}
