//! The colored `>>>` / `<<<` log for people: one line per command, a summary line per
//! payload (whole payloads with `--full`), annotations (login and challenge results),
//! and one line per connection-level event. Colour only when asked (the caller decides
//! from --color, NO_COLOR and the terminal).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};

use owo_colors::OwoColorize;

use super::annotations::Annotations;
use super::{Dir, Event, EventKind, Sink};
use crate::payload::mime::{Content, Msnftp};
use crate::payload::p2p::{Layout, P2p};
use crate::payload::{Decoded, Payload};

pub struct PrettySink<W: Write> {
    out: BufWriter<W>,
    color: bool,
    full: bool,
    /// Flush after every event (a terminal or a live run).
    eager: bool,
    /// The line head of the event being written, reused from one event to the next.
    head: String,
}

impl<W: Write> PrettySink<W> {
    pub fn new(w: W, color: bool, full: bool) -> Self {
        PrettySink {
            out: BufWriter::with_capacity(64 * 1024, w),
            color,
            full,
            eager: false,
            head: String::new(),
        }
    }
    /// Writes each event out at once instead of in buffered blocks.
    pub fn eager(mut self, yes: bool) -> Self {
        self.eager = yes;
        self
    }
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// `s` on one line (line breaks shown as ↵), cut to `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    // Nearly always: already one line and no longer than `max` bytes, so no longer than
    // `max` characters either.
    if s.len() <= max && memchr::memchr2(b'\r', b'\n', s.as_bytes()).is_none() {
        return s.to_string();
    }
    one_line_by_chars(s, max)
}

/// [`one_line`] a character at a time: what it does whenever the shortcut does not apply.
fn one_line_by_chars(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 4));
    for (n, c) in s.chars().filter(|&c| c != '\r').enumerate() {
        if n == max {
            out.push('\u{2026}');
            break;
        }
        out.push(if c == '\n' { '\u{21b5}' } else { c });
    }
    out
}

/// The one-line description of an event that is not a command (also used by annotate).
pub fn describe_other(kind: &EventKind<'_>) -> Option<String> {
    Some(match kind {
        EventKind::Command(_) => return None,
        EventKind::Connect(c) => format!(
            "connect {} -> {}{}",
            c.client.as_deref().unwrap_or("?"),
            c.server.as_deref().unwrap_or("?"),
            c.detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        EventKind::Close(c) => {
            let mut s = format!(
                "close{}{}, {} bytes c2s, {} bytes s2c",
                c.by.as_deref()
                    .map(|b| format!(" by {b}"))
                    .unwrap_or_default(),
                c.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                c.bytes_c2s,
                c.bytes_s2c
            );
            for (what, n) in [("c2s", c.undelivered_c2s), ("s2c", c.undelivered_s2c)] {
                if let Some(n) = n.filter(|&n| n > 0) {
                    let _ = write!(s, "; {n} bytes {what} not delivered");
                }
            }
            s
        }
        EventKind::Desync(d) => format!(
            "desync: skipped {} bytes at stream offset {} ({}): {}",
            d.skipped,
            d.offset,
            d.reason,
            one_line(&d.preview.escaped(), 80)
        ),
        EventKind::Error(m) => format!("error: {}", one_line(&m.message, 300)),
        EventKind::Gap(g) => format!(
            "gap: {} bytes lost in the capture at stream offset {}",
            g.length, g.offset
        ),
        EventKind::Redirect(r) => match (&r.rewritten, &r.problem) {
            (Some(to), _) => format!(
                "redirect {} to {}: {} -> {}",
                r.cmd, r.target, r.original, to
            ),
            (None, p) => format!(
                "redirect {} to {}: {} NOT rewritten{}",
                r.cmd,
                r.target,
                r.original,
                p.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
            ),
        },
        EventKind::Note(m) => format!("note: {}", one_line(&m.message, 300)),
        EventKind::Dropped(d) => format!(
            "dropped {} events ({} bytes) between {} and {}: the output fell behind",
            d.events, d.bytes, d.since, d.until
        ),
        EventKind::Http(h) => one_line(&h.describe(), 400),
        EventKind::Gateway(g) => one_line(&g.describe(), 300),
    })
}

/// `: P2P v1 session 0 id 9 ack [ack] acks 4`.
pub fn p2p_summary(p: &P2p<'_>) -> String {
    let mut s = format!(
        ": P2P {} session {} id {} {}",
        p.header.as_str(),
        p.session_id.map_or("?".into(), |n| n.to_string()),
        p.identifier.map_or("?".into(), |n| n.to_string()),
        p.kind.map_or("?", |k| k.as_str())
    );
    if let Some(n) = p.data_length.filter(|&n| n > 0) {
        match (p.offset, p.total_size, p.data_remaining) {
            (Some(o), Some(t), _) => {
                let _ = write!(s, " {o}+{n}/{t}");
            }
            (_, _, Some(r)) => {
                let _ = write!(s, " {n} bytes, {r} remaining");
            }
            _ => {
                let _ = write!(s, " {n} bytes");
            }
        }
    }
    let names = if p.header == Layout::V2 {
        &p.tf_names
    } else {
        &p.flag_names
    };
    if !names.is_empty() {
        let f: Vec<&str> = names.iter().map(|n| n.as_ref()).collect();
        let _ = write!(s, " [{}]", f.join("|"));
    }
    if let Some(a) = p.acked_identifier {
        let _ = write!(s, " acks {a}");
    }
    if let Some(slp) = &p.slp {
        let _ = write!(s, " SLP {}", one_line(&slp.start_line, 60));
    } else if let Some(fr) = &p.slp_fragment {
        let _ = write!(s, " SLP (part) {}", one_line(fr, 60));
    }
    s
}

/// `: INVITE File Transfer "a.txt" (5 bytes) cookie 7`.
pub fn msnftp_summary(ft: &Msnftp<'_>) -> String {
    let mut s = format!(": {}", ft.command.as_deref().unwrap_or("?"));
    if let Some(a) = ft.application_name.as_deref().or(ft.application.as_deref()) {
        let _ = write!(s, " {a}");
    }
    if let Some(f) = &ft.file_name {
        let _ = write!(s, " {f:?}");
    }
    if let Some(n) = ft.file_size {
        let _ = write!(s, " ({n} bytes)");
    }
    if let Some(c) = &ft.cookie {
        let _ = write!(s, " cookie {c}");
    }
    if let Some(a) = &ft.address {
        let _ = write!(s, " connect to {a}");
    }
    if let Some(c) = &ft.auth_cookie {
        let _ = write!(s, " AuthCookie {}", c.expose());
    }
    s
}

fn content_summary(ct: &str, c: &Content<'_>, s: &mut String) {
    s.push_str(ct);
    if let Some(f) = &c.format {
        let _ = write!(s, " [{}]", f.label());
    }
    if let Some(u) = &c.typing_user {
        let _ = write!(s, ": {u} is typing");
    } else if let Some(d) = &c.datacast {
        let _ = write!(s, ": {}", d.name);
    } else if let Some(p) = &c.p2p {
        s.push_str(&p2p_summary(p));
    } else if let Some(ft) = &c.msnftp {
        s.push_str(&msnftp_summary(ft));
    } else if let Some(b) = c.text() {
        if !b.trim().is_empty() {
            let _ = write!(s, ": {}", one_line(b, 100));
        }
    }
}

/// One line saying what a payload holds.
pub fn payload_summary(p: &Payload<'_>) -> String {
    let mut s = String::new();
    if p.guess {
        s.push_str("[payload guessed] ");
    }
    match &p.decoded {
        Some(Decoded::Mime(m)) => content_summary(&m.content_type, &m.content, &mut s),
        Some(Decoded::Multipart(m)) => content_summary(&m.content_type, &m.content, &mut s),
        Some(Decoded::Xml(x)) => {
            let _ = write!(s, "<{}> ", x.name);
            if let Some(t) = &p.text {
                s.push_str(&one_line(t, 100));
            }
        }
        None => {
            if let Some(t) = &p.text {
                let _ = write!(s, "{}: {}", p.kind.as_str(), one_line(t, 100));
            } else if p.base64.is_some() {
                let _ = write!(s, "{} ({} bytes, not UTF-8)", p.kind.as_str(), p.length);
            } else {
                let _ = write!(s, "{} ({} bytes)", p.kind.as_str(), p.length);
            }
        }
    }
    if let Some(pr) = &p.problem {
        let _ = write!(s, " !! {pr}");
    }
    s
}

/// The login and challenge findings of a command, one line (empty when none).
pub fn annotation_summary(a: &Annotations<'_>) -> String {
    let mut s = String::new();
    // The stage alone is in the line itself; results are what is worth a line.
    if let Some(au) = a
        .auth
        .as_ref()
        .filter(|au| au.password.is_some() || au.sso_check.is_some() || au.note.is_some())
    {
        let _ = write!(
            s,
            "auth: {}{}",
            au.scheme
                .as_deref()
                .map(|x| format!("{x} "))
                .unwrap_or_default(),
            au.stage
        );
        if let Some(pw) = &au.password {
            match (pw.matched, pw.candidate) {
                (Some(true), Some(n)) => {
                    let _ = write!(s, ", password matched (candidate {n})");
                }
                (Some(false), _) => {
                    let _ = write!(s, ", password not among {} candidates", pw.checked);
                }
                _ => {
                    if let Some(n) = &pw.note {
                        let _ = write!(s, " ({n})");
                    }
                }
            }
        }
        if let Some(chk) = &au.sso_check {
            let _ = write!(
                s,
                ", SSO response {}",
                match chk.valid {
                    Some(true) => "valid",
                    Some(false) => "INVALID",
                    None => "not checked",
                }
            );
            if let Some(n) = &chk.note {
                let _ = write!(s, " ({n})");
            }
        }
    }
    if let Some(ch) = &a.challenge {
        if !s.is_empty() {
            s.push_str("; ");
        }
        let verdict = match ch.valid {
            Some(true) => "valid",
            Some(false) => "INVALID",
            None => "unknown",
        };
        let _ = write!(s, "challenge response {verdict} (product {}", ch.product_id);
        if let Some(al) = &ch.algorithm {
            let _ = write!(s, ", {al}");
        }
        s.push(')');
        if let Some(e) = &ch.expected {
            let _ = write!(s, ", expected {e}");
        }
    }
    s
}

impl<W: Write> PrettySink<W> {
    /// `s` in colour when colour is on; `s` itself otherwise (no copy).
    fn paint<'s>(&self, s: &'s str, f: impl Fn(&str) -> String) -> Cow<'s, str> {
        if self.color {
            Cow::Owned(f(s))
        } else {
            Cow::Borrowed(s)
        }
    }

    fn write_full(&mut self, p: &Payload<'_>) -> std::io::Result<()> {
        let mut body = String::new();
        let headers = match &p.decoded {
            Some(Decoded::Mime(m)) => Some((&m.headers, &m.content)),
            Some(Decoded::Multipart(m)) => {
                for b in &m.blocks {
                    for (k, v) in &b.headers {
                        let _ = writeln!(body, "{k}: {v}");
                    }
                    body.push('\n');
                }
                None
            }
            _ => None,
        };
        if let Some((h, _)) = headers {
            for (k, v) in h {
                let _ = writeln!(body, "{k}: {v}");
            }
            body.push('\n');
        }
        match (&p.text, p.content()) {
            (Some(t), _) => body.push_str(t),
            (None, Some(c)) => match c.text() {
                Some(t) => body.push_str(t),
                None => {
                    if let Some(b) = &c.body {
                        let _ = write!(body, "({} bytes of binary data)", b.bytes().len());
                    }
                }
            },
            _ => {}
        }
        for l in body.lines() {
            writeln!(self.out, "        | {l}")?;
        }
        Ok(())
    }
}

impl<W: Write> Sink for PrettySink<W> {
    fn event(&mut self, ev: &Event<'_>) -> std::io::Result<()> {
        // `2005-01-02 03:04:05.000006Z #conn service/version`, written into a buffer kept
        // across events: this runs for every line of the log.
        let mut h = std::mem::take(&mut self.head);
        h.clear();
        ev.ts.push_clock(&mut h);
        let _ = write!(h, " #{} {}/", ev.conn, ev.service);
        match ev.version {
            Some(v) => {
                let _ = write!(h, "{v}");
            }
            None => h.push('?'),
        }
        let r = self.write_event(ev, &h);
        self.head = h;
        r
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> PrettySink<W> {
    fn write_event(&mut self, ev: &Event<'_>, head: &str) -> std::io::Result<()> {
        let head = self.paint(head, |s| s.dimmed().to_string());
        match &ev.kind {
            EventKind::Command(c) => {
                let arrow = match ev.dir {
                    Some(Dir::C2s) => self.paint(">>>", |s| s.green().bold().to_string()),
                    _ => self.paint("<<<", |s| s.cyan().bold().to_string()),
                };
                let mut line: Cow<'_, str> = if c.error.is_some() {
                    self.paint(&c.line, |s| s.red().to_string())
                } else if !c.known {
                    self.paint(&c.line, |s| s.yellow().to_string())
                } else {
                    Cow::Borrowed(&c.line)
                };
                if !c.known {
                    line.to_mut().push_str(
                        &self.paint("  [unknown command]", |s| s.yellow().italic().to_string()),
                    );
                } else if c.unmatched_form {
                    line.to_mut()
                        .push_str(&self.paint("  [form not in tables]", |s| {
                            s.yellow().italic().to_string()
                        }));
                }
                if c.unterminated {
                    line.to_mut().push_str(
                        &self.paint("  [no line ending]", |s| s.yellow().italic().to_string()),
                    );
                }
                if let Some(e) = &c.error {
                    let m = format!(
                        "  [{} {}]",
                        e.name.as_deref().unwrap_or("?"),
                        e.meaning.as_deref().unwrap_or("unknown error")
                    );
                    line.to_mut()
                        .push_str(&self.paint(&m, |s| s.red().italic().to_string()));
                }
                if let Some(r) = &c.rewritten {
                    line.to_mut().push_str(
                        &self.paint(&format!("  [forwarded as: {r}]"), |s| s.blue().to_string()),
                    );
                }
                writeln!(self.out, "{head} {arrow} {line}")?;
                if let Some(p) = &c.payload {
                    let sum = payload_summary(p);
                    let l = format!("        | {sum}");
                    let l = self.paint(&l, |s| s.dimmed().to_string());
                    writeln!(self.out, "{l}")?;
                    if self.full {
                        self.write_full(p)?;
                    }
                }
                let a = annotation_summary(&c.annotations);
                if !a.is_empty() {
                    let bad = a.contains("INVALID");
                    let l = format!("        = {a}");
                    let l = if bad {
                        self.paint(&l, |s| s.red().to_string())
                    } else {
                        self.paint(&l, |s| s.blue().to_string())
                    };
                    writeln!(self.out, "{l}")?;
                }
            }
            other => {
                let text = describe_other(other).unwrap_or_default();
                let alarm = matches!(
                    other,
                    EventKind::Desync(_)
                        | EventKind::Error(_)
                        | EventKind::Gap(_)
                        | EventKind::Dropped(_)
                ) || matches!(other, EventKind::Redirect(r) if r.rewritten.is_none())
                    || matches!(other, EventKind::Http(h) if h.problem.is_some()
                        || h.soap.as_ref().is_some_and(|m| m.fault().is_some()))
                    || matches!(other, EventKind::Gateway(g)
                        if g.step == crate::event::http::GatewayStep::Error);
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
                    EventKind::Desync(_) | EventKind::Dropped(_) => {
                        self.paint(&m, |s| s.magenta().bold().to_string())
                    }
                    EventKind::Error(_) => self.paint(&m, |s| s.red().bold().to_string()),
                    EventKind::Gap(_) => self.paint(&m, |s| s.magenta().to_string()),
                    EventKind::Note(_) => self.paint(&m, |s| s.dimmed().to_string()),
                    _ if alarm => self.paint(&m, |s| s.red().bold().to_string()),
                    _ => self.paint(&m, |s| s.blue().to_string()),
                };
                writeln!(self.out, "{head} {painted}")?;
            }
        }
        if self.eager {
            self.out.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::p2p::{build, decode, Hint};

    #[test]
    fn msnftp_and_p2p_one_liners() {
        let ft = Msnftp {
            command: Some("INVITE".into()),
            application_name: Some("File Transfer".into()),
            file_name: Some("a.txt".into()),
            file_size: Some(5),
            cookie: Some("7".into()),
            ..Msnftp::default()
        };
        assert_eq!(
            msnftp_summary(&ft),
            ": INVITE File Transfer \"a.txt\" (5 bytes) cookie 7"
        );
        let mut ack = build::v1(0, 9, 0, 329, 0x2, &[], Some(0));
        ack[32..36].copy_from_slice(&4u32.to_le_bytes());
        let p = decode(
            &ack,
            Hint {
                version: Some(11),
                ..Hint::default()
            },
        );
        assert_eq!(p2p_summary(&p), ": P2P v1 session 0 id 9 ack [ack] acks 4");
        let v2 = build::v2(1, None, 4, 1, 5, 20, b"0123456789", 1);
        let p = decode(
            &v2,
            Hint {
                version: Some(18),
                dest: Some("a;{b}"),
                src: None,
            },
        );
        assert_eq!(
            p2p_summary(&p),
            ": P2P v2 session 5 id 1 data 10 bytes, 20 remaining [msnobj]"
        );
    }

    #[test]
    fn one_line_cuts_and_marks_breaks() {
        assert_eq!(one_line("a\r\nb", 10), "a\u{21b5}b");
        assert_eq!(one_line("abcdef", 3), "abc\u{2026}");
        // The short-line shortcut against the character loop it skips, at the edges.
        for s in [
            "",
            "abc",
            "abcd",
            "ab\rc",
            "ab\n",
            "\u{e9}t\u{e9}",
            "\u{1f600}\u{1f600}x",
        ] {
            for max in 0..8 {
                assert_eq!(one_line(s, max), one_line_by_chars(s, max), "{s:?} {max}");
            }
        }
    }
}
