//! The discovery report: what was seen, per version and service, and everything the tables
//! do not describe (unknown commands, unfamiliar forms, payload vocabulary, P2P flags),
//! plus error codes, payload guesses and desyncs. Also writes dissector stubs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::event::{Dir, Event, EventKind};
use crate::protocol::tables::Tables;

/// Where something was first seen.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    pub conn: u64,
    pub ts: String,
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
    fn of(ev: &Event, line: &str) -> Example {
        Example {
            conn: ev.conn,
            ts: ev.ts.to_string(),
            dir: ev.dir,
            line: line.to_string(),
        }
    }
}

const MAX_EXAMPLES: usize = 3;

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
    /// Per (direction, arity): whether every example had a numeric first argument.
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
    pub name: Option<std::sync::Arc<str>>,
    pub meaning: Option<std::sync::Arc<str>>,
    pub examples: Vec<Example>,
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
    pub errors: BTreeMap<u16, ErrorSeen>,
    pub payload_guesses: Vec<Example>,
    pub desyncs: Vec<Value>,
    pub gaps: u64,
}

/// Known P2P v1 flag bits (protocol-facts F.2).
const P2P_KNOWN: u32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x0100_0000;

fn push_example(v: &mut Vec<Example>, e: Example) {
    if v.len() < MAX_EXAMPLES {
        v.push(e);
    }
}

fn seen(map: &mut BTreeMap<String, Seen>, key: String, ex: Example) {
    let s = map.entry(key).or_default();
    s.count += 1;
    push_example(&mut s.examples, ex);
}

impl Report {
    pub fn add(&mut self, ev: &Event, tables: &Tables) {
        self.events += 1;
        self.connections.insert(ev.conn);
        let ver = ev
            .version
            .map(|v| format!("MSNP{}", v.0))
            .unwrap_or_else(|| "MSNP?".into());
        match &ev.kind {
            EventKind::Command(c) => {
                let key = format!("{ver} {}", ev.service);
                *self
                    .commands
                    .entry(key)
                    .or_default()
                    .entry(c.cmd.clone())
                    .or_default() += 1;
                let ex = Example::of(ev, &c.line);
                let dir = ev.dir.map(Dir::as_str).unwrap_or("?");
                if let Some(e) = &c.error {
                    let s = self.errors.entry(e.code).or_insert_with(|| ErrorSeen {
                        count: 0,
                        name: e.name.clone(),
                        meaning: e.meaning.clone(),
                        examples: Vec::new(),
                    });
                    s.count += 1;
                    push_example(&mut s.examples, ex.clone());
                }
                let odd = if !c.known && c.error.is_none() {
                    Some(self.unknown_commands.entry(c.cmd.clone()).or_default())
                } else if c.unmatched_form {
                    Some(self.unmatched_forms.entry(c.cmd.clone()).or_default())
                } else {
                    None
                };
                if let Some(o) = odd {
                    o.count += 1;
                    o.arities.insert(c.args.len());
                    o.directions.insert(dir);
                    o.services.insert(ev.service.to_string());
                    o.versions.insert(ver.clone());
                    if c.payload.is_some() {
                        o.with_payload += 1;
                    }
                    let first_numeric = c
                        .args
                        .first()
                        .is_some_and(|a| a.bytes().all(|b| b.is_ascii_digit()));
                    let shape = o.shapes.entry((dir, c.args.len())).or_insert((true, false));
                    shape.0 &= first_numeric;
                    shape.1 |= c.payload.is_some();
                    push_example(&mut o.examples, ex.clone());
                }
                if let Some(p) = &c.payload {
                    if p.guess {
                        self.payload_guesses.push(ex.clone());
                    }
                    if let Some(d) = &p.decoded {
                        self.vocabulary(d, tables, &ex);
                    }
                }
            }
            EventKind::Desync {
                offset,
                skipped,
                reason,
                preview,
            } => {
                self.desyncs.push(
                    serde_json::json!({"conn": ev.conn, "ts": ev.ts.to_string(), "dir": ev.dir,
                    "offset": offset, "skipped": skipped, "reason": reason, "preview": preview}),
                );
            }
            EventKind::Gap { .. } => self.gaps += 1,
            _ => {}
        }
    }

    fn vocabulary(&mut self, d: &Value, tables: &Tables, ex: &Example) {
        if let Some(ct) = d.get("content_type").and_then(Value::as_str) {
            if !ct.is_empty() && !tables.content_types.contains_key(ct) {
                seen(&mut self.unknown_content_types, ct.to_string(), ex.clone());
            }
        }
        let mut header_lists: Vec<&Value> = Vec::new();
        for k in [
            "headers",
            "routing",
            "reliability",
            "messaging",
            "publication",
            "notification",
        ] {
            if let Some(h) = d.get(k) {
                header_lists.push(h);
            }
        }
        for h in header_lists {
            for pair in h.as_array().into_iter().flatten() {
                if let Some(name) = pair.get(0).and_then(Value::as_str) {
                    if !tables.mime_headers.contains_key(&name.to_ascii_lowercase()) {
                        seen(&mut self.unknown_mime_headers, name.to_string(), ex.clone());
                    }
                }
            }
        }
        // An XML payload is decoded to an element with a name (and no content_type).
        if d.get("content_type").is_none() {
            if let Some(root) = d.get("name").and_then(Value::as_str) {
                if !tables.xml_roots.contains_key(&root.to_ascii_lowercase()) {
                    seen(&mut self.unknown_xml_roots, root.to_string(), ex.clone());
                }
            }
        }
        if let Some(flags) = d
            .get("p2p")
            .and_then(|p| p.get("flags"))
            .and_then(Value::as_u64)
        {
            let f = flags as u32;
            if f & !P2P_KNOWN != 0 {
                seen(
                    &mut self.unknown_p2p_flags,
                    format!("0x{f:08x}"),
                    ex.clone(),
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
        let _ = writeln!(s, "\nPayload guesses: {}", self.payload_guesses.len());
        for e in &self.payload_guesses {
            let _ = writeln!(s, "  {e}");
        }
        let _ = writeln!(s, "\nDesyncs: {}", self.desyncs.len());
        for d in &self.desyncs {
            let _ = writeln!(
                s,
                "  #{} {} {} at {}: {} bytes ({}): {}",
                d["conn"],
                d["ts"].as_str().unwrap_or(""),
                d["dir"].as_str().unwrap_or(""),
                d["offset"],
                d["skipped"],
                d["reason"].as_str().unwrap_or(""),
                d["preview"].as_str().unwrap_or("")
            );
        }
        s
    }

    /// Writes one dissector stub per unknown command into `dir`, loadable by `--dissectors`.
    pub fn write_stubs(&self, dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        for (name, o) in &self.unknown_commands {
            if name.len() != 3 || !name.bytes().all(|b| b.is_ascii_uppercase()) {
                continue;
            }
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
                let _ = writeln!(t, "# example: {e}");
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
            let path = dir.join(format!("{}.toml", name.to_ascii_lowercase()));
            std::fs::write(&path, t)?;
            written.push(path);
        }
        Ok(written)
    }
}
