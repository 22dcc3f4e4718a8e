//! The human log in the MSN community's `>>>` / `<<<` style, colored on a terminal.

use std::io::{BufWriter, Write};

use owo_colors::OwoColorize;
use serde_json::Value;

use super::{Dir, Event, EventKind, Sink};

pub struct PrettySink<W: Write> {
    out: BufWriter<W>,
    color: bool,
    /// Print whole payload bodies instead of a one-line summary.
    full: bool,
}

impl<W: Write> PrettySink<W> {
    pub fn new(w: W, color: bool, full: bool) -> Self {
        PrettySink {
            out: BufWriter::new(w),
            color,
            full,
        }
    }
}

fn clock(ev: &Event) -> String {
    let s = ev.ts.to_string();
    // 2005-01-02T03:04:05.123456Z -> 2005-01-02 03:04:05.123456
    s.replacen('T', " ", 1).trim_end_matches('Z').to_string()
}

/// A clipped, single-line rendering of `s` (line breaks shown as an arrow).
pub fn one_line(s: &str, max: usize) -> String {
    let t = s.replace('\r', "").replace('\n', "\u{21b5}");
    if t.chars().count() > max {
        let mut c: String = t.chars().take(max).collect();
        c.push('\u{2026}');
        c
    } else {
        t
    }
}

/// One line for an event that is not a command (connect, close, desync, gap, ...), as the
/// log and the packet comments of `msntap annotate` show it; None for commands.
pub fn describe_other(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::Command(_) => return None,
        EventKind::Connect {
            client,
            server,
            detail,
        } => format!(
            "connect {} -> {}{}",
            client.as_deref().unwrap_or("?"),
            server.as_deref().unwrap_or("?"),
            detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        EventKind::Close {
            by,
            reason,
            bytes_c2s,
            bytes_s2c,
        } => format!(
            "close{}{}, {bytes_c2s} bytes c2s, {bytes_s2c} bytes s2c",
            by.as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default(),
            reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        EventKind::Desync {
            offset,
            skipped,
            reason,
            preview,
        } => format!(
            "desync: skipped {skipped} bytes at stream offset {offset} ({reason}): {}",
            one_line(preview, 80)
        ),
        EventKind::Error { message } => format!("error: {}", one_line(message, 300)),
        EventKind::Gap { offset, length } => {
            format!("gap: {length} bytes lost in the capture at stream offset {offset}")
        }
        EventKind::Redirect {
            cmd,
            target,
            original,
            rewritten,
        } => {
            format!("redirect {cmd} to {target}: {original} -> {rewritten}")
        }
        EventKind::Note { message } => format!("note: {}", one_line(message, 300)),
    })
}

/// `: v1 session 5 id 7 data 0+1202/5000 [data]` and the SLP start line, if any.
fn p2p_summary(p2p: &Value) -> String {
    let names = |k: &str| {
        p2p[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .unwrap_or_default()
    };
    let mut s = format!(
        ": P2P {} session {} id {} {}",
        p2p["header"].as_str().unwrap_or("?"),
        p2p["session_id"],
        p2p["identifier"],
        p2p["kind"].as_str().unwrap_or("?")
    );
    if let Some(n) = p2p["data_length"].as_u64().filter(|&n| n > 0) {
        match (
            p2p["offset"].as_u64(),
            p2p["total_size"].as_u64(),
            p2p["data_remaining"].as_u64(),
        ) {
            (Some(o), Some(t), _) => s.push_str(&format!(" {o}+{n}/{t}")),
            (_, _, Some(r)) => s.push_str(&format!(" {n} bytes, {r} remaining")),
            _ => s.push_str(&format!(" {n} bytes")),
        }
    }
    let f = if p2p["header"] == "v2" {
        names("tf_names")
    } else {
        names("flag_names")
    };
    if !f.is_empty() {
        s.push_str(&format!(" [{f}]"));
    }
    if let Some(a) = p2p["acked_identifier"].as_u64() {
        s.push_str(&format!(" acks {a}"));
    }
    if let Some(slp) = p2p.get("slp").and_then(|v| v["start_line"].as_str()) {
        s.push_str(&format!(" SLP {}", one_line(slp, 60)));
    } else if let Some(fr) = p2p.get("slp_fragment").and_then(Value::as_str) {
        s.push_str(&format!(" SLP (part) {}", one_line(fr, 60)));
    }
    s
}

/// `: INVITE file_transfer "notes.txt" (2048 bytes) cookie 12345`, and on ACCEPT the
/// direct-connection address and auth cookie.
fn msnftp_summary(ft: &Value) -> String {
    let mut s = format!(": {}", ft["command"].as_str().unwrap_or("?"));
    if let Some(a) = ft["application_name"]
        .as_str()
        .or(ft["application"].as_str())
    {
        s.push_str(&format!(" {a}"));
    }
    if let Some(f) = ft["file_name"].as_str() {
        s.push_str(&format!(" {f:?}"));
    }
    if let Some(n) = ft["file_size"].as_u64() {
        s.push_str(&format!(" ({n} bytes)"));
    }
    if !ft["cookie"].is_null() {
        s.push_str(&format!(" cookie {}", ft["cookie"]));
    }
    if let Some(a) = ft["address"].as_str() {
        s.push_str(&format!(" connect to {a}"));
    }
    if let Some(c) = ft["auth_cookie"].as_str() {
        s.push_str(&format!(" AuthCookie {c}"));
    }
    s
}

/// A decoded X-MMS-IM-Format as `font, effects..., #rrggbb`.
pub fn format_label(f: &Value) -> String {
    let mut bits = Vec::new();
    if let Some(v) = f.get("font").and_then(Value::as_str) {
        bits.push(v.to_string());
    }
    if let Some(Value::Array(e)) = f.get("effects") {
        bits.extend(e.iter().filter_map(Value::as_str).map(str::to_string));
    }
    if let Some(c) = f.get("color").and_then(Value::as_str) {
        bits.push(c.to_string());
    }
    bits.join(", ")
}

/// A one-line description of a decoded payload.
pub fn payload_summary(p: &super::Payload) -> String {
    let mut s = String::new();
    if p.guess {
        s.push_str("[payload guessed] ");
    }
    if let Some(d) = &p.decoded {
        if let Some(ct) = d.get("content_type").and_then(Value::as_str) {
            s.push_str(ct);
            if let Some(f) = d.get("format") {
                s.push_str(&format!(" [{}]", format_label(f)));
            }
            if let Some(u) = d.get("typing_user").and_then(Value::as_str) {
                s.push_str(&format!(": {u} is typing"));
            } else if let Some(dc) = d.get("datacast") {
                s.push_str(&format!(": {}", dc["name"].as_str().unwrap_or("?")));
            } else if let Some(p2p) = d.get("p2p") {
                s.push_str(&p2p_summary(p2p));
            } else if let Some(ft) = d.get("msnftp") {
                s.push_str(&msnftp_summary(ft));
            } else if let Some(b) = d.get("body").and_then(Value::as_str) {
                if !b.trim().is_empty() {
                    s.push_str(&format!(": {}", one_line(b, 100)));
                }
            }
        } else if let Some(name) = d.get("name").and_then(Value::as_str) {
            s.push_str(&format!("<{name}> "));
            if let Some(t) = &p.text {
                s.push_str(&one_line(t, 100));
            }
        }
    } else if let Some(t) = &p.text {
        s.push_str(&format!("{}: {}", p.kind, one_line(t, 100)));
    } else if p.base64.is_some() {
        s.push_str(&format!("{} ({} bytes, not UTF-8)", p.kind, p.length));
    } else {
        s.push_str(&format!("{} ({} bytes)", p.kind, p.length));
    }
    if let Some(pr) = &p.problem {
        s.push_str(&format!(" !! {pr}"));
    }
    s
}

impl<W: Write> PrettySink<W> {
    fn paint(&self, s: &str, f: impl Fn(&str) -> String) -> String {
        if self.color {
            f(s)
        } else {
            s.to_string()
        }
    }
}

impl<W: Write> Sink for PrettySink<W> {
    fn event(&mut self, ev: &Event) -> std::io::Result<()> {
        let ver = ev
            .version
            .map(|v| format!("MSNP{}", v.0))
            .unwrap_or_else(|| "?".into());
        let head = format!("{} #{} {}/{}", clock(ev), ev.conn, ev.service, ver);
        let head = self.paint(&head, |s| s.dimmed().to_string());
        match &ev.kind {
            EventKind::Command(c) => {
                let arrow = match ev.dir {
                    Some(Dir::C2s) => self.paint(">>>", |s| s.green().bold().to_string()),
                    _ => self.paint("<<<", |s| s.cyan().bold().to_string()),
                };
                let mut line = if c.error.is_some() {
                    self.paint(&c.line, |s| s.red().to_string())
                } else if !c.known {
                    self.paint(&c.line, |s| s.yellow().to_string())
                } else {
                    c.line.clone()
                };
                if !c.known {
                    line.push_str(
                        &self.paint("  [unknown command]", |s| s.yellow().italic().to_string()),
                    );
                } else if c.unmatched_form {
                    line.push_str(&self.paint("  [form not in tables]", |s| {
                        s.yellow().italic().to_string()
                    }));
                }
                if let Some(e) = &c.error {
                    let m = format!(
                        "  [{} {}]",
                        e.name.as_deref().unwrap_or("?"),
                        e.meaning.as_deref().unwrap_or("unknown error")
                    );
                    line.push_str(&self.paint(&m, |s| s.red().italic().to_string()));
                }
                writeln!(self.out, "{head} {arrow} {line}")?;
                if let Some(p) = &c.payload {
                    let sum = payload_summary(p);
                    writeln!(
                        self.out,
                        "{}",
                        self.paint(&format!("        | {sum}"), |s| s.dimmed().to_string())
                    )?;
                    if self.full {
                        let body: String = match (&p.text, &p.decoded) {
                            (Some(t), _) => t.clone(),
                            (None, Some(d)) => {
                                let mut t = String::new();
                                if let Some(Value::Array(h)) = d.get("headers") {
                                    for kv in h {
                                        t.push_str(&format!(
                                            "{}: {}\n",
                                            kv[0].as_str().unwrap_or(""),
                                            kv[1].as_str().unwrap_or("")
                                        ));
                                    }
                                    t.push('\n');
                                }
                                if let Some(b) = d.get("body").and_then(Value::as_str) {
                                    t.push_str(b);
                                }
                                t
                            }
                            _ => String::new(),
                        };
                        for l in body.lines() {
                            writeln!(self.out, "        | {l}")?;
                        }
                    }
                }
            }
            other => {
                let text = describe_other(other).unwrap_or_default();
                let alarm = matches!(
                    other,
                    EventKind::Desync { .. } | EventKind::Error { .. } | EventKind::Gap { .. }
                );
                let d = ev
                    .dir
                    .map(|d| format!("{} ", d.as_str()))
                    .unwrap_or_default();
                let m = if alarm {
                    format!("!!! {d}{text}")
                } else {
                    format!("--- {d}{text}")
                };
                let painted = match other {
                    EventKind::Desync { .. } => self.paint(&m, |s| s.magenta().bold().to_string()),
                    EventKind::Error { .. } => self.paint(&m, |s| s.red().bold().to_string()),
                    EventKind::Gap { .. } => self.paint(&m, |s| s.magenta().to_string()),
                    EventKind::Note { .. } => self.paint(&m, |s| s.dimmed().to_string()),
                    _ => self.paint(&m, |s| s.blue().to_string()),
                };
                writeln!(self.out, "{head} {painted}")?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod p2p_summary_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn msnftp_and_p2p_one_liners() {
        let ft = json!({"command": "INVITE", "application_name": "File Transfer", "file_name": "a.txt", "file_size": 5, "cookie": 7});
        assert_eq!(
            msnftp_summary(&ft),
            ": INVITE File Transfer \"a.txt\" (5 bytes) cookie 7"
        );
        let ack = json!({"header": "v1", "session_id": 0, "identifier": 9, "kind": "ack", "flag_names": ["ack"], "acked_identifier": 4});
        assert_eq!(
            p2p_summary(&ack),
            ": P2P v1 session 0 id 9 ack [ack] acks 4"
        );
        let v2 = json!({"header": "v2", "session_id": 5, "identifier": 1, "kind": "data", "data_length": 10, "data_remaining": 20, "tf_names": ["msnobj"]});
        assert_eq!(
            p2p_summary(&v2),
            ": P2P v2 session 5 id 1 data 10 bytes, 20 remaining [msnobj]"
        );
    }
}
