//! The ladder (sequence) diagram of one chain: lanes for the client, msntap (when the
//! events came through the proxy) and each server connection; one arrow per command,
//! redirects drawn as the hop they cause, gaps, desyncs and errors as marked notes.
//! Layout is plain data; `svg` and `mermaid` render it. Nothing here does I/O.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use serde::Serialize;

use super::chain::{Chain, Chains};
use super::row::{Kind, Row, F_ERROR, F_REWRITTEN, F_UNKNOWN, F_UNMATCHED};
use crate::event::{Dir, Ts};

/// Which events a ladder shows.
#[derive(Debug, Clone)]
pub struct LadderOptions {
    /// Commands not drawn (upper-case), e.g. the keep-alives PNG and QNG.
    pub hide: HashSet<String>,
    pub from: Option<Ts>,
    pub to: Option<Ts>,
    /// Steps skipped before the first one drawn (the web view pages through long chains).
    pub skip: usize,
    /// At most this many steps are drawn; the rest are counted in `Ladder::truncated`.
    pub max_steps: usize,
    /// Draw the msntap lane: None decides from the events (proxied connections).
    pub msntap_lane: Option<bool>,
}

impl Default for LadderOptions {
    fn default() -> Self {
        LadderOptions {
            hide: keepalives(),
            from: None,
            to: None,
            skip: 0,
            max_steps: 5000,
            msntap_lane: None,
        }
    }
}

/// PNG and QNG, hidden unless asked for.
pub fn keepalives() -> HashSet<String> {
    ["PNG", "QNG"].into_iter().map(String::from).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneKind {
    Client,
    Msntap,
    Server,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lane {
    /// A short identifier (Mermaid participant id).
    pub key: String,
    pub label: String,
    pub sub: String,
    pub kind: LaneKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn: Option<u64>,
}

/// What a step is drawn as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// One command line.
    Cmd,
    /// A referral's hop: the client connects where it was sent.
    Hop,
    /// The proxy rewrote a redirect.
    Redirect,
    Connect,
    Close,
    Gap,
    Desync,
    Error,
    Note,
    Dropped,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Cmd => "cmd",
            Class::Hop => "hop",
            Class::Redirect => "redirect",
            Class::Connect => "connect",
            Class::Close => "close",
            Class::Gap => "gap",
            Class::Desync => "desync",
            Class::Error => "error",
            Class::Note => "note",
            Class::Dropped => "dropped",
        }
    }
    fn is_problem(self) -> bool {
        matches!(
            self,
            Class::Gap | Class::Desync | Class::Error | Class::Dropped
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The event drawn (None for a hop drawn without its own event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub ts: Ts,
    pub class: Class,
    /// An arrow from lane to lane, or a note over `from` when `to` is None.
    pub from: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<Dir>,
    pub label: String,
    /// An error reply, an unknown command or an unmatched form.
    pub flagged: bool,
    /// The line as the proxy forwarded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewritten: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ladder {
    pub title: String,
    pub start: Ts,
    pub lanes: Vec<Lane>,
    pub steps: Vec<Step>,
    /// Steps past `max_steps`.
    pub truncated: usize,
    /// Commands hidden by `hide`.
    pub hidden: usize,
    /// Steps before the window (`skip`).
    pub skipped: usize,
}

impl Ladder {
    /// How many steps are command arrows.
    pub fn commands(&self) -> usize {
        self.steps.iter().filter(|s| s.class == Class::Cmd).count()
    }
}

/// Lays out `chain` from `rows` (any order of the store; only the chain's are used).
pub fn layout<'r>(
    chains: &Chains,
    chain: &Chain,
    rows: impl IntoIterator<Item = &'r Row>,
    opts: &LadderOptions,
) -> Ladder {
    let members: HashSet<u64> = chain.conns.iter().copied().collect();
    let rows: Vec<&Row> = rows
        .into_iter()
        .filter(|r| members.contains(&r.conn))
        .collect();
    let proxied = opts.msntap_lane.unwrap_or_else(|| {
        chain
            .conns
            .iter()
            .any(|c| chains.conn(*c).is_some_and(|i| i.proxied))
            || rows.iter().any(|r| r.kind == Kind::Redirect)
    });
    let mut lanes = vec![Lane {
        key: "C".into(),
        label: chain.user.clone().unwrap_or_else(|| "client".into()),
        sub: chain
            .conns
            .first()
            .and_then(|c| chains.conn(*c))
            .and_then(|c| c.client.clone())
            .map(|c| format!("client {c}"))
            .unwrap_or_else(|| "client".into()),
        kind: LaneKind::Client,
        conn: None,
    }];
    let msntap = proxied.then(|| {
        lanes.push(Lane {
            key: "M".into(),
            label: "msntap".into(),
            sub: "proxy".into(),
            kind: LaneKind::Msntap,
            conn: None,
        });
        lanes.len() - 1
    });
    let mut lane_of: HashMap<u64, usize> = HashMap::new();
    for &c in &chain.conns {
        let info = chains.conn(c);
        lanes.push(Lane {
            key: format!("S{c}"),
            label: info
                .map(|i| i.label())
                .unwrap_or_else(|| format!("conn {c}")),
            sub: match info.and_then(|i| i.version) {
                Some(v) => format!("conn {c} \u{b7} {v}"),
                None => format!("conn {c}"),
            },
            kind: LaneKind::Server,
            conn: Some(c),
        });
        lane_of.insert(c, lanes.len() - 1);
    }
    let start = rows.iter().map(|r| r.ts).min().unwrap_or_default();
    let mut ladder = Ladder {
        title: format!(
            "{} \u{2014} chain {}",
            chain.user.as_deref().unwrap_or("client"),
            chain.id
        ),
        start,
        lanes,
        steps: Vec::new(),
        truncated: 0,
        hidden: 0,
        skipped: 0,
    };
    let mut started: HashSet<u64> = HashSet::new();
    let mut skip = opts.skip;
    let mut push = |l: &mut Ladder, s: Step| {
        if skip > 0 {
            skip -= 1;
            l.skipped += 1;
        } else if l.steps.len() >= opts.max_steps {
            l.truncated += 1;
        } else {
            l.steps.push(s);
        }
    };
    let over = |conn: u64| lane_of.get(&conn).copied().or(msntap).unwrap_or(0);
    for r in rows {
        if opts.from.is_some_and(|f| r.ts < f) || opts.to.is_some_and(|t| r.ts > t) {
            continue;
        }
        if r.kind == Kind::Command && opts.hide.contains(r.cmd.as_ref()) {
            ladder.hidden += 1;
            continue;
        }
        let lane = over(r.conn);
        if started.insert(r.conn) {
            let info = chains.conn(r.conn);
            if let Some((parent, via)) = info.and_then(|i| Some((i.parent?, i.via.clone()?))) {
                if let Some(&pl) = lane_of.get(&parent) {
                    push(
                        &mut ladder,
                        Step {
                            seq: (r.kind == Kind::Connect).then_some(r.seq),
                            ts: r.ts,
                            class: Class::Hop,
                            from: pl,
                            to: Some(lane),
                            dir: None,
                            label: format!("hop: {via}"),
                            flagged: false,
                            rewritten: None,
                        },
                    );
                    if r.kind == Kind::Connect {
                        continue;
                    }
                }
            }
        }
        let (class, from, to) = match r.kind {
            Kind::Command => match r.dir {
                Some(Dir::S2c) => (Class::Cmd, lane, Some(0)),
                _ => (Class::Cmd, 0, Some(lane)),
            },
            Kind::Connect => (Class::Connect, 0, Some(lane)),
            Kind::Close => (Class::Close, lane, None),
            Kind::Gap => (Class::Gap, lane, None),
            Kind::Desync => (Class::Desync, lane, None),
            Kind::Error => (Class::Error, msntap.unwrap_or(lane), None),
            Kind::Redirect => (Class::Redirect, msntap.unwrap_or(lane), None),
            Kind::Note => (Class::Note, lane, None),
            Kind::Dropped => (Class::Dropped, msntap.unwrap_or(0), None),
        };
        // The whole summary (line, payload, annotations); renderers clip it to the room.
        let label: &str = &r.text;
        push(
            &mut ladder,
            Step {
                seq: Some(r.seq),
                ts: r.ts,
                class,
                from,
                to,
                dir: r.dir,
                label: label.to_string(),
                flagged: r.flags & (F_ERROR | F_UNKNOWN | F_UNMATCHED) != 0,
                rewritten: (r.flags & F_REWRITTEN != 0)
                    .then(|| r.rewritten.as_deref().map(str::to_string))
                    .flatten(),
            },
        );
    }
    prune_lanes(&mut ladder, msntap);
    ladder
}

/// Leaves out the server lanes nothing in the drawn window touches (a long live chain
/// has many switchboards; a page of its ladder should not be as wide as all of them).
fn prune_lanes(l: &mut Ladder, msntap: Option<usize>) {
    let mut used = vec![false; l.lanes.len()];
    used[0] = true;
    if let Some(m) = msntap {
        used[m] = true;
    }
    for s in &l.steps {
        used[s.from] = true;
        if let Some(t) = s.to {
            used[t] = true;
        }
    }
    if used.iter().all(|&u| u) {
        return;
    }
    let mut map = vec![0; l.lanes.len()];
    let mut lanes = Vec::with_capacity(l.lanes.len());
    for (i, lane) in std::mem::take(&mut l.lanes).into_iter().enumerate() {
        if used[i] {
            map[i] = lanes.len();
            lanes.push(lane);
        }
    }
    l.lanes = lanes;
    for s in &mut l.steps {
        s.from = map[s.from];
        if let Some(t) = s.to.as_mut() {
            *t = map[*t];
        }
    }
}

const LEFT: i64 = 78;
const LANE_W: i64 = 250;
const TOP: i64 = 62;
const ROW_H: i64 = 22;
const CHAR_W: f64 = 6.6;
/// Arrow colours (and their arrowhead markers): c2s, s2c, hop, flagged, other.
const COLORS: [(&str, &str); 5] = [
    ("c2s", "#1f5fbf"),
    ("s2c", "#1d7a36"),
    ("hop", "#8a3ab9"),
    ("err", "#c0392b"),
    ("other", "#555555"),
];

/// Text safe inside an XML element or attribute: escaped, control characters dropped.
pub fn xml_text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' => o.push(' '),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => o.push(c),
        }
    }
    o
}

fn clip(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars {
        return s.to_string();
    }
    let mut o: String = s.chars().take(chars.saturating_sub(1)).collect();
    o.push('\u{2026}');
    o
}

fn rel(ts: Ts, start: Ts) -> String {
    let d = ts.0.saturating_sub(start.0);
    format!("+{}.{:03}", d / 1_000_000, (d % 1_000_000) / 1000)
}

/// The ladder as a standalone SVG document. Each step is a `<g>` with class
/// `step <class>` and `data-seq` (the event's number) so the view can open its detail.
pub fn svg(l: &Ladder) -> String {
    let x = |lane: usize| LEFT + LANE_W * lane as i64 + LANE_W / 2;
    let width = LEFT + LANE_W * l.lanes.len() as i64 + 10;
    let extra = i64::from(l.truncated > 0 || l.skipped > 0);
    let height = TOP + ROW_H * (l.steps.len() as i64 + 1 + extra) + 10;
    let mut o = String::with_capacity(256 + l.steps.len() * 260);
    let _ = write!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">
<title>{}</title>
<defs>{}</defs>
"##,
        xml_text(&l.title),
        COLORS
            .iter()
            .map(|(n, c)| format!(r#"<marker id="ah-{n}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>"#))
            .collect::<String>()
    );
    let _ = writeln!(
        o,
        r##"<text class="t" fill="#777" font-size="10" x="4" y="14">start {}</text>"##,
        xml_text(&l.start.to_string())
    );
    for (i, lane) in l.lanes.iter().enumerate() {
        let cx = x(i);
        let _ = writeln!(
            o,
            r##"<g class="lane {}"><rect x="{}" y="20" width="{}" height="34" rx="4" fill="#eef2f7" stroke="#8899aa"/><text x="{cx}" y="34" text-anchor="middle" font-weight="bold">{}</text><text class="t" fill="#777" font-size="10" x="{cx}" y="48" text-anchor="middle">{}</text><line x1="{cx}" y1="54" x2="{cx}" y2="{}" stroke="#99a" stroke-dasharray="3 3"/></g>"##,
            match lane.kind {
                LaneKind::Client => "client",
                LaneKind::Msntap => "msntap",
                LaneKind::Server => "server",
            },
            cx - LANE_W / 2 + 8,
            LANE_W - 16,
            xml_text(&clip(&lane.label, 34)),
            xml_text(&clip(&lane.sub, 38)),
            height - 6
        );
    }
    let msntap = l.lanes.iter().position(|x| x.kind == LaneKind::Msntap);
    for (k, s) in l.steps.iter().enumerate() {
        let y = TOP + 16 + ROW_H * k as i64;
        let mut cls = format!("step {}", s.class.as_str());
        if let Some(d) = s.dir {
            let _ = write!(cls, " {}", d.as_str());
        }
        if s.flagged || s.class.is_problem() {
            cls.push_str(" flagged");
        }
        if s.rewritten.is_some() {
            cls.push_str(" rewritten");
        }
        let seq = s
            .seq
            .map(|n| format!(r#" data-seq="{n}""#))
            .unwrap_or_default();
        let _ = write!(o, r#"<g class="{cls}"{seq}>"#);
        // The whole row answers a click, not just the thin arrow.
        let _ = write!(
            o,
            r#"<rect x="0" y="{}" width="{width}" height="{ROW_H}" fill="transparent"/>"#,
            y - ROW_H / 2 - 4
        );
        let mut tip = s.label.clone();
        if let Some(r) = &s.rewritten {
            let _ = write!(tip, "\nforwarded as: {r}");
        }
        let _ = write!(o, "<title>{}</title>", xml_text(&tip));
        let _ = write!(
            o,
            r##"<text class="t" fill="#777" font-size="10" x="4" y="{}">{}</text>"##,
            y + 4,
            rel(s.ts, l.start)
        );
        match s.to {
            Some(to) => {
                let (x1, x2) = (x(s.from), x(to));
                let color = match (s.class, s.dir) {
                    (Class::Hop, _) => 2,
                    _ if s.flagged => 3,
                    (_, Some(Dir::C2s)) => 0,
                    (_, Some(Dir::S2c)) => 1,
                    _ => 4,
                };
                let (name, stroke) = COLORS[color];
                let dash = if s.class == Class::Hop {
                    r#" stroke-dasharray="6 3""#
                } else {
                    ""
                };
                let _ = write!(
                    o,
                    r#"<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{stroke}" stroke-width="1.4"{dash} marker-end="url(#ah-{name})"/>"#
                );
                if let (Some(m), Class::Cmd) = (msntap, s.class) {
                    let fill = if s.rewritten.is_some() {
                        "#e67e22"
                    } else {
                        "#fff"
                    };
                    let _ = write!(
                        o,
                        r##"<circle cx="{}" cy="{y}" r="3.5" fill="{fill}" stroke="#555"/>"##,
                        x(m)
                    );
                }
                let span = (x2 - x1).unsigned_abs() as f64;
                let chars = ((span - 16.0) / CHAR_W).max(20.0) as usize;
                let tx = x1.min(x2) + 8;
                let mut label = s.label.clone();
                if let Some(r) = &s.rewritten {
                    let _ = write!(label, "  \u{21d2} {r}");
                }
                let _ = write!(
                    o,
                    r#"<text x="{tx}" y="{}">{}</text>"#,
                    y - 4,
                    xml_text(&clip(&label, chars))
                );
            }
            None => {
                let cx = x(s.from);
                let text = clip(&s.label, 56);
                let w = ((text.chars().count() as f64 * CHAR_W) as i64 + 12).min(LANE_W * 2);
                // Centred over its lane, but kept inside the picture.
                let left = (cx - w / 2).clamp(LEFT, (width - w - 2).max(LEFT));
                let (kind, fill, stroke) = if s.class.is_problem() {
                    ("note problem", "#fde2e0", "#c0392b")
                } else {
                    ("note", "#fff8d6", "#c9b458")
                };
                let _ = write!(
                    o,
                    r#"<g class="{kind}"><rect x="{}" y="{}" width="{w}" height="16" rx="3" fill="{fill}" stroke="{stroke}"/><text x="{}" y="{}" text-anchor="middle">{}</text></g>"#,
                    left,
                    y - 11,
                    left + w / 2,
                    y + 1,
                    xml_text(&text)
                );
            }
        }
        o.push_str("</g>\n");
    }
    if extra > 0 {
        let y = TOP + 16 + ROW_H * l.steps.len() as i64;
        let _ = writeln!(
            o,
            r##"<text class="t more" fill="#777" font-size="10" x="4" y="{y}">{} steps before, {} after this window</text>"##,
            l.skipped, l.truncated
        );
    }
    o.push_str("</svg>\n");
    o
}

/// Text for a Mermaid message or note: no line breaks, and `#`, `;` (which end a
/// message in the grammar) and `<`, `>` (which Mermaid would read as HTML) written as
/// Mermaid's entity codes.
pub fn mermaid_text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '#' => o.push_str("#35;"),
            ';' => o.push_str("#59;"),
            '<' => o.push_str("#60;"),
            '>' => o.push_str("#62;"),
            '\r' | '\n' | '\t' => o.push(' '),
            c if (c as u32) < 0x20 => {}
            c => o.push(c),
        }
    }
    o.trim().to_string()
}

/// The ladder as Mermaid `sequenceDiagram` text.
pub fn mermaid(l: &Ladder) -> String {
    let mut o = String::from("sequenceDiagram\n");
    let _ = writeln!(o, "    %% {}", mermaid_text(&l.title).replace('%', " "));
    for lane in &l.lanes {
        let mut alias = lane.label.clone();
        if lane.kind == LaneKind::Server {
            let _ = write!(alias, " ({})", lane.sub);
        }
        let _ = writeln!(
            o,
            "    participant {} as {}",
            lane.key,
            mermaid_text(&alias)
        );
    }
    for s in &l.steps {
        let from = &l.lanes[s.from].key;
        let t = rel(s.ts, l.start);
        match s.to {
            Some(to) => {
                let arrow = match (s.class, s.dir) {
                    (Class::Hop, _) => "--)",
                    (_, Some(Dir::S2c)) => "-->>",
                    _ => "->>",
                };
                let mut label = format!("{t} {}", s.label);
                if let Some(r) = &s.rewritten {
                    let _ = write!(label, " => {r}");
                }
                let _ = writeln!(
                    o,
                    "    {from}{arrow}{}: {}",
                    l.lanes[to].key,
                    mermaid_text(&clip(&label, 160))
                );
            }
            None => {
                let mark = if s.class.is_problem() { "!! " } else { "" };
                let _ = writeln!(
                    o,
                    "    Note over {from}: {}",
                    mermaid_text(&clip(&format!("{t} {mark}{}", s.label), 160))
                );
            }
        }
    }
    if l.truncated > 0 || l.skipped > 0 {
        let _ = writeln!(
            o,
            "    Note over {}: {} steps before and {} after this window not drawn",
            l.lanes[0].key, l.skipped, l.truncated
        );
    }
    o
}
