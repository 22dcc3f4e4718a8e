//! The view's memory of a run: one row and the JSON text of each (redacted) event, the
//! chains, and the queries the page asks (filters, search, pages of the list). Bounded in
//! bytes: past the bound the oldest events go, counted. Sans-IO.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::Serialize;

use super::chain::{Chain, ChainLimits, Chains, ConnInfo, CookieKey};
use super::row::{Kind, Row};
use crate::event::filter::bare_handle;
use crate::event::{Dir, Event, Service};
use crate::secret::Redact;

/// An event ready for the store: redacted (unless asked not to), with the digest of its
/// cookie taken before redaction.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub ev: Event<'static>,
    pub cookie: Option<u64>,
}

/// Digests the cookie, redacts (unless `redact` is false) and copies the event.
pub fn prepare(key: &CookieKey, ev: &mut Event<'_>, redact: bool) -> Prepared {
    let cookie = key.of_event(ev);
    if redact {
        ev.redact();
    }
    Prepared {
        ev: ev.clone().into_owned(),
        cookie,
    }
}

/// The filters of the list: the CLI's vocabulary (only, hide, service, dir, user), text
/// search, and one chain or connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub only: HashSet<String>,
    pub hide: HashSet<String>,
    pub service: Option<Service>,
    pub dir: Option<Dir>,
    pub user: Option<String>,
    /// Lower case.
    pub text: Option<String>,
    pub chain: Option<u64>,
    pub conn: Option<u64>,
    /// Only problems: error replies and events, unknown commands, desyncs, gaps.
    pub problems: bool,
}

fn cmd_set(v: &str) -> HashSet<String> {
    v.split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Query {
    /// From URL query pairs; unknown keys are ignored (paging keys share the string).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Query, String> {
        let mut q = Query::default();
        for (k, v) in pairs {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            match k.as_str() {
                "only" => q.only = cmd_set(v),
                "hide" => q.hide = cmd_set(v),
                "service" => {
                    q.service =
                        Some(Service::parse(v).ok_or_else(|| format!("unknown service {v:?}"))?)
                }
                "dir" => {
                    q.dir = Some(match v.to_ascii_lowercase().as_str() {
                        "c2s" | ">>>" => Dir::C2s,
                        "s2c" | "<<<" => Dir::S2c,
                        _ => return Err(format!("unknown direction {v:?}")),
                    })
                }
                "user" => q.user = Some(bare_handle(v)),
                "q" => q.text = Some(v.to_lowercase()),
                "chain" => q.chain = Some(v.parse().map_err(|_| format!("bad chain {v:?}"))?),
                "conn" => q.conn = Some(v.parse().map_err(|_| format!("bad conn {v:?}"))?),
                "problems" => q.problems = v == "1" || v == "true",
                _ => {}
            }
        }
        Ok(q)
    }

    fn matches(&self, r: &Row, owner: Option<&str>, chain: Option<u64>) -> bool {
        if let Some(s) = self.service {
            if r.service != s {
                return false;
            }
        }
        if let Some(d) = self.dir {
            if r.dir.is_some_and(|x| x != d) {
                return false;
            }
        }
        if let Some(c) = self.conn {
            if r.conn != c {
                return false;
            }
        }
        if let Some(c) = self.chain {
            if chain != Some(c) {
                return false;
            }
        }
        if r.kind == Kind::Command {
            if !self.only.is_empty() && !self.only.contains(r.cmd.as_ref()) {
                return false;
            }
            if self.hide.contains(r.cmd.as_ref()) {
                return false;
            }
        } else if !self.only.is_empty() && r.kind == Kind::Note {
            // As in the CLI: with --only, connection-level events that explain the stream stay.
            return false;
        }
        if self.problems {
            let problem = r.flags & (super::row::F_ERROR | super::row::F_UNKNOWN) != 0
                || matches!(r.kind, Kind::Desync | Kind::Gap | Kind::Dropped);
            if !problem {
                return false;
            }
        }
        if let Some(u) = &self.user {
            let named = owner == Some(u.as_str())
                || r.lower
                    .split(' ')
                    .take(24)
                    .any(|t| t.len() >= u.len() && bare_handle(t) == *u);
            if !named {
                return false;
            }
        }
        if let Some(t) = &self.text {
            if memchr::memmem::find(r.lower.as_bytes(), t.as_bytes()).is_none() {
                return false;
            }
        }
        true
    }
}

/// How much the store keeps.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Bytes of rows and event JSON kept; past it the oldest events go.
    pub bytes: usize,
    pub chains: ChainLimits,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            bytes: 512 << 20,
            chains: ChainLimits::default(),
        }
    }
}

/// Events dropped before they reached the store (a consumer fell behind).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DropCount {
    pub events: u64,
    pub bytes: u64,
}

struct Cache {
    query: Query,
    /// The store's `next` when computed, and the chains' generation.
    upto: u64,
    chains_gen: u64,
    seqs: Vec<u64>,
}

/// Most chains the summary lists (a capture of thousands of clients would otherwise make
/// every refresh of the page's session list heavy).
pub const MAX_CHAINS: usize = 300;

/// A chain with its connections, as the page lists it.
#[derive(Debug, Serialize)]
pub struct ChainView<'a> {
    pub id: u64,
    pub user: Option<&'a str>,
    pub conns: Vec<&'a ConnInfo>,
}

/// What the page shows in its header and session list.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub title: &'a str,
    pub live: bool,
    pub done: bool,
    pub events: u64,
    pub first_seq: u64,
    pub next_seq: u64,
    pub evicted: u64,
    pub dropped: DropCount,
    pub bytes: usize,
    pub limit: usize,
    pub redacted: bool,
    pub problems: &'a [String],
    /// The first `MAX_CHAINS` chains (the page lists them); `chains_total` counts all.
    pub chains: Vec<ChainView<'a>>,
    pub chains_total: usize,
    pub commands: Vec<(&'a str, u64)>,
    pub forgotten_conns: u64,
}

pub struct Store {
    rows: VecDeque<Row>,
    json: VecDeque<Box<str>>,
    first: u64,
    next: u64,
    bytes: usize,
    limits: StoreLimits,
    pub evicted: u64,
    pub dropped: DropCount,
    pub chains: Chains,
    counts: BTreeMap<Box<str>, u64>,
    pub title: String,
    pub live: bool,
    pub done: bool,
    pub redacted: bool,
    pub problems: Vec<String>,
    cache: Option<Cache>,
    assignment: (u64, HashMap<u64, u64>),
}

impl Store {
    pub fn new(limits: StoreLimits) -> Store {
        Store {
            rows: VecDeque::new(),
            json: VecDeque::new(),
            first: 0,
            next: 0,
            bytes: 0,
            limits,
            evicted: 0,
            dropped: DropCount::default(),
            chains: Chains::new(limits.chains),
            counts: BTreeMap::new(),
            title: String::new(),
            live: false,
            done: false,
            redacted: true,
            problems: Vec::new(),
            cache: None,
            assignment: (u64::MAX, HashMap::new()),
        }
    }

    /// Adds one prepared event; returns its number.
    pub fn push(&mut self, p: &Prepared) -> u64 {
        self.chains.observe(&p.ev, p.cookie);
        let seq = self.next;
        let row = Row::of(seq, &p.ev);
        let json = serde_json::to_string(&p.ev)
            .unwrap_or_else(|e| format!(r#"{{"type":"error","message":"not serializable: {e}"}}"#))
            .into_boxed_str();
        if row.kind == Kind::Command {
            *self.counts.entry(row.cmd.clone()).or_insert(0) += 1;
        }
        if let crate::EventKind::Dropped(d) = &p.ev.kind {
            self.dropped.events += d.events;
            self.dropped.bytes += d.bytes;
        }
        self.bytes += row.weight() + json.len();
        self.rows.push_back(row);
        self.json.push_back(json);
        self.next += 1;
        while self.bytes > self.limits.bytes && self.rows.len() > 1 {
            let (Some(r), Some(j)) = (self.rows.pop_front(), self.json.pop_front()) else {
                break;
            };
            self.bytes -= r.weight() + j.len();
            self.first += 1;
            self.evicted += 1;
        }
        seq
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn next_seq(&self) -> u64 {
        self.next
    }

    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter()
    }

    /// The row and event JSON of event `seq`, if still kept.
    pub fn get(&self, seq: u64) -> Option<(&Row, &str)> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        Some((self.rows.get(i)?, self.json.get(i)?))
    }

    /// Every kept event's JSON text, in order.
    pub fn json(&self) -> impl Iterator<Item = &str> {
        self.json.iter().map(|j| j.as_ref())
    }

    fn refresh_assignment(&mut self) {
        if self.assignment.0 != self.chains.generation {
            self.assignment = (self.chains.generation, self.chains.assignment());
        }
    }

    /// The chain `conn` belongs to.
    pub fn chain_of(&mut self, conn: u64) -> Option<u64> {
        self.refresh_assignment();
        self.assignment.1.get(&conn).copied()
    }

    pub fn chain(&self, id: u64) -> Option<Chain> {
        self.chains.chains().into_iter().find(|c| c.id == id)
    }

    /// The events `q` lets through: how many, and `limit` of them from `offset`.
    pub fn query(&mut self, q: &Query, offset: usize, limit: usize) -> (usize, Vec<&Row>) {
        self.refresh_assignment();
        let gen = self.chains.generation;
        // Only the user and chain filters depend on the grouping, which a live run changes
        // with every new connection.
        let grouped = q.chain.is_some() || q.user.is_some();
        let reuse = self
            .cache
            .as_ref()
            .is_some_and(|c| c.query == *q && (!grouped || c.chains_gen == gen));
        if !reuse {
            self.cache = Some(Cache {
                query: q.clone(),
                upto: self.first,
                chains_gen: gen,
                seqs: Vec::new(),
            });
        }
        if let Some(cache) = self.cache.as_mut() {
            // Only rows added since the last time are looked at; evicted ones are let go.
            let first = self.first;
            if cache.seqs.first().is_some_and(|&s| s < first) {
                let cut = cache.seqs.partition_point(|&s| s < first);
                cache.seqs.drain(..cut);
            }
            let from = cache.upto.max(first);
            let start = (from - first) as usize;
            for r in self.rows.iter().skip(start) {
                let info = self.chains.conn(r.conn);
                let owner = info.and_then(|c| c.user.as_deref());
                let chain = self.assignment.1.get(&r.conn).copied();
                if q.matches(r, owner, chain) {
                    cache.seqs.push(r.seq);
                }
            }
            cache.upto = self.next;
        }
        let Some(cache) = self.cache.as_ref() else {
            return (0, Vec::new());
        };
        let total = cache.seqs.len();
        let first = self.first;
        let rows = cache
            .seqs
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|&s| self.rows.get((s - first) as usize))
            .collect();
        (total, rows)
    }

    /// Where event `seq` is in the list `q` gives (for scrolling to it).
    pub fn position(&mut self, q: &Query, seq: u64) -> Option<usize> {
        self.query(q, 0, 0);
        let c = self.cache.as_ref()?;
        c.seqs.binary_search(&seq).ok()
    }

    pub fn summary(&self) -> Summary<'_> {
        let all = self.chains.chains();
        let chains_total = all.len();
        let chains = all
            .into_iter()
            .take(MAX_CHAINS)
            .map(|c| (c.id, c.conns))
            .collect::<Vec<_>>();
        Summary {
            title: &self.title,
            live: self.live,
            done: self.done,
            events: self.rows.len() as u64,
            first_seq: self.first,
            next_seq: self.next,
            evicted: self.evicted,
            dropped: self.dropped,
            bytes: self.bytes,
            limit: self.limits.bytes,
            redacted: self.redacted,
            problems: &self.problems,
            chains: chains
                .into_iter()
                .map(|(id, conns)| {
                    let conns: Vec<&ConnInfo> =
                        conns.iter().filter_map(|c| self.chains.conn(*c)).collect();
                    ChainView {
                        id,
                        user: conns.iter().find_map(|c| c.user.as_deref()),
                        conns,
                    }
                })
                .collect(),
            chains_total,
            commands: self.counts.iter().map(|(k, v)| (k.as_ref(), *v)).collect(),
            forgotten_conns: self.chains.forgotten,
        }
    }
}
