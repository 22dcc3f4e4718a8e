//! The discovery report: what was seen, per version and service, and everything the tables
//! do not describe (unknown commands, unfamiliar forms, payload vocabulary, P2P flags),
//! plus error codes, payload guesses and desyncs. Also writes dissector stubs. It reads
//! typed events only (redacted by the caller unless --no-redact), copies out the little it
//! keeps, and never overwrites a file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::event::{Dir, Event, EventKind, Ts};
use crate::payload::{Decoded, Headers};
use crate::protocol::tables::Tables;

/// Where something was first seen.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    pub conn: u64,
    pub ts: Ts,
    pub dir: Option<Dir>,
    pub line: String,
}

impl std::fmt::Display for Example {
    /// `#conn ts dir: line`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = self.dir.map(Dir::as_str).unwrap_or("?");
        write!(f, "#{} {} {dir}: {}", self.conn, self.ts, self.line)
    }
}

impl Example {
    fn of(ev: &Event<'_>, line: &str) -> Example {
        Example {
            conn: ev.conn,
            ts: ev.ts,
            dir: ev.dir,
            line: line.to_string(),
        }
    }
}

const MAX_EXAMPLES: usize = 3;
/// Most desyncs and payload guesses listed one by one (all are counted).
const MAX_LISTED: usize = 1000;
/// Most distinct names kept per vocabulary list.
const MAX_KEYS: usize = 1000;

/// A command the tables do not know, or whose line fits none of its forms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Oddity {
    pub count: u64,
    pub arities: BTreeSet<usize>,
    pub directions: BTreeSet<&'static str>,
    pub services: BTreeSet<String>,
    pub versions: BTreeSet<String>,
    /// How often a payload followed (guessed for unknown commands).
    pub with_payload: u64,
    /// Per (direction, arity): whether every example had a numeric first argument, and
    /// whether any carried a payload.
    #[serde(skip)]
    shapes: BTreeMap<(&'static str, usize), (bool, bool)>,
    pub examples: Vec<Example>,
}

/// Counted vocabulary (content types, headers, XML roots, flags) with first examples.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Seen {
    pub count: u64,
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorSeen {
    pub count: u64,
    pub name: Option<String>,
    pub meaning: Option<String>,
    pub examples: Vec<Example>,
}

/// One desync, as the report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DesyncSeen {
    pub conn: u64,
    pub ts: Ts,
    pub dir: Option<Dir>,
    pub offset: u64,
    pub skipped: u64,
    pub reason: String,
    /// The first bytes skipped, escaped (already scrubbed unless --no-redact).
    pub preview: String,
}

/// The whole report.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub inputs: Vec<String>,
    pub connections: BTreeSet<u64>,
    pub events: u64,
    /// "MSNP11 NS" -> command -> count.
    pub commands: BTreeMap<String, BTreeMap<String, u64>>,
    pub unknown_commands: BTreeMap<String, Oddity>,
    pub unmatched_forms: BTreeMap<String, Oddity>,
    pub unknown_content_types: BTreeMap<String, Seen>,
    pub unknown_mime_headers: BTreeMap<String, Seen>,
    pub unknown_xml_roots: BTreeMap<String, Seen>,
    pub unknown_p2p_flags: BTreeMap<String, Seen>,
    /// Occurrences of unknown names not listed because a list was full.
    pub vocabulary_overflow: u64,
    pub errors: BTreeMap<u16, ErrorSeen>,
    /// The first payload guesses (`payload_guess_count` counts them all).
    pub payload_guesses: Vec<Example>,
    pub payload_guess_count: u64,
    /// The first desyncs (`desync_count` counts them all).
    pub desyncs: Vec<DesyncSeen>,
    pub desync_count: u64,
    pub gaps: u64,
    /// HTTP requests by `METHOD path` (MSN's HTTP side).
    pub http_endpoints: BTreeMap<String, Endpoint>,
    /// SOAP operations by `Service Operation`.
    pub soap_actions: BTreeMap<String, SoapSeen>,
    /// SOAP faults by `code[/subcode] [error code]`.
    pub soap_faults: BTreeMap<String, Seen>,
    /// HTTP gateway sessions opened.
    pub gateway_sessions: u64,
    /// HTTP messages msntap could not read, and gateway exchanges that failed.
    pub http_problems: u64,
}

/// An HTTP endpoint, as the report lists it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Endpoint {
    pub count: u64,
    /// gateway, passport, security_token, soap, config; None when not MSN's.
    pub part: Option<String>,
    /// One of the endpoints msntap knows (docs/http.md).
    pub known: bool,
    /// Status codes of the answers.
    pub statuses: BTreeMap<u16, u64>,
}

/// A SOAP operation, as the report lists it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoapSeen {
    pub count: u64,
    /// msntap reads its fields (else only the operation name is known).
    pub typed: bool,
    pub action: Option<String>,
}

/// Known P2P v1 flag bits (protocol-facts F.2).
const P2P_KNOWN: u32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x0100_0000;

/// Where an event is seen, made only when it is kept (most sightings are only counted).
type ExampleOf<'x> = &'x dyn Fn() -> Example;

fn push_example(v: &mut Vec<Example>, e: ExampleOf<'_>) {
    if v.len() < MAX_EXAMPLES {
        v.push(e());
    }
}

/// Counts `key` in `map`; a new key past [`MAX_KEYS`] is only counted in `overflow`
/// (names come off the wire: a hostile stream could make up any number).
fn seen(map: &mut BTreeMap<String, Seen>, overflow: &mut u64, key: &str, ex: ExampleOf<'_>) {
    if !map.contains_key(key) {
        if map.len() >= MAX_KEYS {
            *overflow += 1;
            return;
        }
        map.insert(key.to_string(), Seen::default());
    }
    if let Some(s) = map.get_mut(key) {
        s.count += 1;
        push_example(&mut s.examples, ex);
    }
}

/// The stubs `write_stubs` wrote, and those it left alone because a file of that name was
/// already there (perhaps edited by hand: stubs are never overwritten).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stubs {
    pub written: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

impl Report {
    /// Adds one event; it is only read, and what is kept is copied out of it.
    pub fn add(&mut self, ev: &Event<'_>, tables: &Tables) {
        self.events += 1;
        self.connections.insert(ev.conn);
        let ver = ev
            .version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "MSNP?".into());
        match &ev.kind {
            EventKind::Command(c) => {
                let key = format!("{ver} {}", ev.service);
                let per = self.commands.entry(key).or_default();
                match per.get_mut(c.cmd.as_ref()) {
                    Some(n) => *n += 1,
                    None => {
                        per.insert(c.cmd.to_string(), 1);
                    }
                }
                let ex = || Example::of(ev, &c.line);
                let dir = ev.dir.map(Dir::as_str).unwrap_or("?");
                if let Some(e) = &c.error {
                    let s = self.errors.entry(e.code).or_insert_with(|| ErrorSeen {
                        count: 0,
                        name: e.name.as_deref().map(str::to_string),
                        meaning: e.meaning.as_deref().map(str::to_string),
                        examples: Vec::new(),
                    });
                    s.count += 1;
                    push_example(&mut s.examples, &ex);
                }
                let odd = if !c.known && c.error.is_none() {
                    Some(self.unknown_commands.entry(c.cmd.to_string()).or_default())
                } else if c.unmatched_form {
                    Some(self.unmatched_forms.entry(c.cmd.to_string()).or_default())
                } else {
                    None
                };
                if let Some(o) = odd {
                    let argc = c.argc();
                    o.count += 1;
                    o.arities.insert(argc);
                    o.directions.insert(dir);
                    o.services.insert(ev.service.to_string());
                    o.versions.insert(ver.clone());
                    if c.payload.is_some() {
                        o.with_payload += 1;
                    }
                    let first_numeric = c
                        .arg(0)
                        .is_some_and(|a| a.bytes().all(|b| b.is_ascii_digit()));
                    let shape = o.shapes.entry((dir, argc)).or_insert((true, false));
                    shape.0 &= first_numeric;
                    shape.1 |= c.payload.is_some();
                    push_example(&mut o.examples, &ex);
                }
                if let Some(p) = &c.payload {
                    if p.guess {
                        self.payload_guess_count += 1;
                        if self.payload_guesses.len() < MAX_LISTED {
                            self.payload_guesses.push(ex());
                        }
                    }
                    if let Some(d) = &p.decoded {
                        self.vocabulary(d, tables, &ex);
                    }
                }
            }
            EventKind::Desync(d) => {
                self.desync_count += 1;
                if self.desyncs.len() < MAX_LISTED {
                    self.desyncs.push(DesyncSeen {
                        conn: ev.conn,
                        ts: ev.ts,
                        dir: ev.dir,
                        offset: d.offset,
                        skipped: d.skipped,
                        reason: d.reason.to_string(),
                        preview: d.preview.escaped(),
                    });
                }
            }
            EventKind::Gap(_) => self.gaps += 1,
            EventKind::Http(h) => self.http(ev, h),
            EventKind::Gateway(g) => match g.step {
                crate::event::http::GatewayStep::Opened => self.gateway_sessions += 1,
                crate::event::http::GatewayStep::Error => self.http_problems += 1,
                _ => {}
            },
            _ => {}
        }
    }

    fn http(&mut self, ev: &Event<'_>, h: &crate::event::http::Http) {
        use crate::event::http::HttpMessage;
        if h.problem.is_some() {
            self.http_problems += 1;
        }
        if let (Some(m), Some(path)) = (&h.method, &h.endpoint) {
            let key = format!("{m} {path}");
            let request = h.message == Some(HttpMessage::Request);
            if request && !self.http_endpoints.contains_key(&key) {
                if self.http_endpoints.len() >= MAX_KEYS {
                    self.vocabulary_overflow += 1;
                } else {
                    self.http_endpoints.insert(key.clone(), Endpoint::default());
                }
            }
            if let Some(e) = self.http_endpoints.get_mut(&key) {
                if request {
                    e.count += 1;
                    e.known |= h.known_endpoint;
                    if e.part.is_none() {
                        e.part = h.part.and_then(|p| {
                            serde_json::to_value(p)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                        });
                    }
                } else if let Some(st) = h.status.filter(|_| !h.interim) {
                    *e.statuses.entry(st).or_default() += 1;
                }
            }
        }
        let Some(m) = &h.soap else {
            return;
        };
        if let Some(f) = m.fault() {
            let mut key = f.code.clone();
            if let Some(sc) = &f.subcode {
                let _ = write!(key, "/{sc}");
            }
            if let Some(c) = &f.error_code {
                let _ = write!(key, " {c}");
            }
            let line = format!("{key}: {}", f.reason);
            seen(
                &mut self.soap_faults,
                &mut self.vocabulary_overflow,
                &key,
                &|| Example::of(ev, &line),
            );
            return;
        }
        if h.message != Some(HttpMessage::Request) {
            return;
        }
        let key = format!("{:?} {}", m.service, m.operation);
        if !self.soap_actions.contains_key(&key) {
            if self.soap_actions.len() >= MAX_KEYS {
                self.vocabulary_overflow += 1;
                return;
            }
            self.soap_actions.insert(key.clone(), SoapSeen::default());
        }
        if let Some(a) = self.soap_actions.get_mut(&key) {
            a.count += 1;
            a.typed |= !matches!(m.body, crate::http::soap::SoapBody::Other);
            if a.action.is_none() {
                a.action = m.action.clone();
            }
        }
    }

    fn headers(&mut self, h: &Headers<'_>, tables: &Tables, ex: ExampleOf<'_>) {
        for (name, _) in h {
            if !tables.mime_headers.contains_key(&name.to_ascii_lowercase()) {
                seen(
                    &mut self.unknown_mime_headers,
                    &mut self.vocabulary_overflow,
                    name,
                    ex,
                );
            }
        }
    }

    fn vocabulary(&mut self, d: &Decoded<'_>, tables: &Tables, ex: ExampleOf<'_>) {
        let (ct, content) = match d {
            Decoded::Mime(m) => {
                self.headers(&m.headers, tables, ex);
                (&m.content_type, &m.content)
            }
            Decoded::Multipart(m) => {
                for b in &m.blocks {
                    self.headers(&b.headers, tables, ex);
                }
                (&m.content_type, &m.content)
            }
            Decoded::Xml(x) => {
                if !tables.xml_roots.contains_key(&x.name.to_ascii_lowercase()) {
                    seen(
                        &mut self.unknown_xml_roots,
                        &mut self.vocabulary_overflow,
                        &x.name,
                        ex,
                    );
                }
                return;
            }
        };
        if !ct.is_empty() && !tables.content_types.contains_key(ct.as_ref()) {
            seen(
                &mut self.unknown_content_types,
                &mut self.vocabulary_overflow,
                ct,
                ex,
            );
        }
        if let Some(f) = content.p2p.as_ref().and_then(|p| p.flags) {
            if f & !P2P_KNOWN != 0 {
                seen(
                    &mut self.unknown_p2p_flags,
                    &mut self.vocabulary_overflow,
                    &format!("0x{f:08x}"),
                    ex,
                );
            }
        }
    }

    /// Human-readable report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "msntap report: {} events, {} connections, {} gaps, inputs: {}",
            self.events,
            self.connections.len(),
            self.gaps,
            self.inputs.join(", ")
        );
        let _ = writeln!(s, "\nCommands by version and service:");
        for (k, m) in &self.commands {
            let list: Vec<String> = m.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let _ = writeln!(s, "  {k}: {}", list.join(", "));
        }
        let oddities = |s: &mut String, title: &str, m: &BTreeMap<String, Oddity>| {
            let _ = writeln!(s, "\n{title}: {}", if m.is_empty() { "none" } else { "" });
            for (c, o) in m {
                let _ = writeln!(
                    s,
                    "  {c}: {} times, arity {:?}, {:?}, {:?}, {:?}{}",
                    o.count,
                    o.arities,
                    o.directions,
                    o.services,
                    o.versions,
                    if o.with_payload > 0 {
                        format!(", {} with payload", o.with_payload)
                    } else {
                        String::new()
                    }
                );
                for e in &o.examples {
                    let _ = writeln!(s, "      {e}");
                }
            }
        };
        oddities(&mut s, "Unknown commands", &self.unknown_commands);
        oddities(
            &mut s,
            "Known commands in a form the tables do not describe",
            &self.unmatched_forms,
        );
        let vocab = |s: &mut String, title: &str, m: &BTreeMap<String, Seen>| {
            let _ = writeln!(s, "\n{title}: {}", if m.is_empty() { "none" } else { "" });
            for (k, v) in m {
                let ex = v
                    .examples
                    .first()
                    .map(|e| format!(" (first: #{} {})", e.conn, e.line))
                    .unwrap_or_default();
                let _ = writeln!(s, "  {k}: {} times{ex}", v.count);
            }
        };
        vocab(
            &mut s,
            "Unknown MIME content types",
            &self.unknown_content_types,
        );
        vocab(&mut s, "Unknown MIME headers", &self.unknown_mime_headers);
        vocab(&mut s, "Unknown XML roots", &self.unknown_xml_roots);
        vocab(&mut s, "Unknown P2P flags", &self.unknown_p2p_flags);
        if self.vocabulary_overflow > 0 {
            let _ = writeln!(
                s,
                "  (and {} more occurrences of names past the first {MAX_KEYS} of a list)",
                self.vocabulary_overflow
            );
        }
        let _ = writeln!(
            s,
            "\nError codes: {}",
            if self.errors.is_empty() { "none" } else { "" }
        );
        for (c, e) in &self.errors {
            let _ = writeln!(
                s,
                "  {c} {}: {} ({} times)",
                e.name.as_deref().unwrap_or("?"),
                e.meaning.as_deref().unwrap_or("unknown code"),
                e.count
            );
        }
        let _ = writeln!(
            s,
            "\nHTTP endpoints: {}",
            if self.http_endpoints.is_empty() {
                "none"
            } else {
                ""
            }
        );
        for (k, e) in &self.http_endpoints {
            let st: Vec<String> = e
                .statuses
                .iter()
                .map(|(c, n)| format!("{c} x{n}"))
                .collect();
            let _ = writeln!(
                s,
                "  {k}: {} times, {}{}{}",
                e.count,
                e.part.as_deref().unwrap_or("not MSN"),
                if st.is_empty() {
                    String::new()
                } else {
                    format!(", answered {}", st.join(", "))
                },
                if e.known { "" } else { "  [unknown endpoint]" }
            );
        }
        if self.gateway_sessions > 0 || self.http_problems > 0 {
            let _ = writeln!(
                s,
                "  {} gateway sessions, {} HTTP problems",
                self.gateway_sessions, self.http_problems
            );
        }
        let _ = writeln!(
            s,
            "\nSOAP actions: {}",
            if self.soap_actions.is_empty() {
                "none"
            } else {
                ""
            }
        );
        for (k, a) in &self.soap_actions {
            let _ = writeln!(
                s,
                "  {k}: {} times{}",
                a.count,
                if a.typed {
                    ""
                } else {
                    "  [unknown action: fields not read]"
                }
            );
        }
        vocab(&mut s, "SOAP faults", &self.soap_faults);
        let _ = writeln!(s, "\nPayload guesses: {}", self.payload_guess_count);
        for e in &self.payload_guesses {
            let _ = writeln!(s, "  {e}");
        }
        let _ = writeln!(s, "\nDesyncs: {}", self.desync_count);
        for d in &self.desyncs {
            let _ = writeln!(
                s,
                "  #{} {} {} at {}: {} bytes ({}): {}",
                d.conn,
                d.ts,
                d.dir.map(Dir::as_str).unwrap_or(""),
                d.offset,
                d.skipped,
                d.reason,
                d.preview
            );
        }
        s
    }

    /// Writes one dissector stub per unknown command into `dir`, loadable by `--dissectors`.
    /// A stub whose file already exists is not written (the file may have been edited): it
    /// is listed in `kept` instead.
    pub fn write_stubs(&self, dir: &Path) -> std::io::Result<Stubs> {
        std::fs::create_dir_all(dir)?;
        let mut out = Stubs::default();
        for (name, o) in &self.unknown_commands {
            if name.len() != 3 || !name.bytes().all(|b| b.is_ascii_uppercase()) {
                continue;
            }
            let path = dir.join(format!("{}.toml", name.to_ascii_lowercase()));
            // create_new: never replaces a file, nor follows a link planted in its place.
            let mut f = match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    out.kept.push(path);
                    continue;
                }
                Err(e) => return Err(e),
            };
            std::io::Write::write_all(&mut f, stub(name, o).as_bytes())?;
            out.written.push(path);
        }
        Ok(out)
    }
}

/// `s` with control characters escaped: TOML comments may not hold them, and the example
/// lines come off the wire.
fn comment_safe(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let esc: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            esc
        })
        .collect()
}

/// The text of one stub.
fn stub(name: &str, o: &Oddity) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Stub written by `msntap report` for an undocumented command."
    );
    let _ = writeln!(
        t,
        "# Seen {} times; fill in the meaning and the parameter names and types.",
        o.count
    );
    for e in &o.examples {
        let _ = writeln!(t, "# example: {}", comment_safe(&e.to_string()));
    }
    let versions: Vec<u8> = o
        .versions
        .iter()
        .filter_map(|v| v.strip_prefix("MSNP")?.parse().ok())
        .collect();
    let range = match (versions.iter().min(), versions.iter().max()) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "2-21".to_string(),
    };
    let mut services: Vec<&str> = o
        .services
        .iter()
        .map(String::as_str)
        .filter(|s| matches!(*s, "DS" | "NS" | "SB"))
        .collect();
    if services.is_empty() {
        services = vec!["NS", "SB"];
    }
    let svc: Vec<String> = services.iter().map(|s| format!("{s:?}")).collect();
    let _ = writeln!(t, "\n[[command]]\nname = \"{name}\"\nmeaning = \"Undocumented (seen by msntap report)\"\nservices = [{}]\nversions = \"{range}\"\nsource = \"msntap report\"", svc.join(", "));
    for ((dir, arity), (numeric_first, payload)) in &o.shapes {
        let _ = writeln!(t, "\n  [[command.form]]\n  dir = \"{dir}\"");
        if *payload {
            let _ = writeln!(t, "  payload = \"last\"");
        }
        let mut params = Vec::new();
        for i in 0..*arity {
            let p = if i == 0 && *numeric_first && !(*payload && *arity == 1) {
                "{ name = \"trid\", type = \"trid\" }".to_string()
            } else if *payload && i + 1 == *arity {
                "{ name = \"length\", type = \"length\" }".to_string()
            } else {
                format!("{{ name = \"arg{i}\", type = \"string\" }}")
            };
            params.push(p);
        }
        let _ = writeln!(t, "  params = [{}]", params.join(", "));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_comments_hold_no_control_characters() {
        assert_eq!(comment_safe("ZZQ 1 a\rb\u{7f}"), "ZZQ 1 a\\rb\\u{7f}");
    }
}
