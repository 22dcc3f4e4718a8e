//! The one event schema shared by every input (live proxy, captures, session logs) and every
//! sink. Events are plain data: they never refer back to sockets or files.

pub mod filter;
pub mod jsonl;
pub mod pretty;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// Version of the JSON event schema; bump on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Direction of a frame on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    C2s,
    S2c,
}

impl Dir {
    pub fn index(self) -> usize {
        match self {
            Dir::C2s => 0,
            Dir::S2c => 1,
        }
    }
    pub fn flip(self) -> Dir {
        match self {
            Dir::C2s => Dir::S2c,
            Dir::S2c => Dir::C2s,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::C2s => "c2s",
            Dir::S2c => "s2c",
        }
    }
}

/// Which MSNP service a connection speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Service {
    #[serde(rename = "DS")]
    Ds,
    #[serde(rename = "NS")]
    Ns,
    #[serde(rename = "SB")]
    Sb,
    #[default]
    #[serde(rename = "unknown")]
    Unknown,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Ds => "DS",
            Service::Ns => "NS",
            Service::Sb => "SB",
            Service::Unknown => "unknown",
        }
    }
    pub fn parse(s: &str) -> Option<Service> {
        match s.to_ascii_uppercase().as_str() {
            "DS" => Some(Service::Ds),
            "NS" => Some(Service::Ns),
            "SB" => Some(Service::Sb),
            "UNKNOWN" => Some(Service::Unknown),
            _ => None,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point in time, microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ts(pub i64);

impl Ts {
    pub fn from_secs_micros(secs: i64, micros: u32) -> Ts {
        Ts(secs.saturating_mul(1_000_000).saturating_add(micros as i64))
    }
    pub fn now() -> Ts {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ts(d.as_micros() as i64)
    }
    /// Parses the RFC 3339 form this type writes (`YYYY-MM-DDTHH:MM:SS[.ffffff]Z`).
    pub fn parse_rfc3339(s: &str) -> Option<Ts> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
            return None;
        }
        let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
        let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
        let (h, mi, se) = (n(11..13)?, n(14..16)?, n(17..19)?);
        let mut micros = 0i64;
        let rest = &s[19..];
        let rest = if let Some(frac) = rest.strip_prefix('.') {
            let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
            let mut v = 0i64;
            for (i, c) in digits
                .chars()
                .chain(std::iter::repeat('0'))
                .take(6)
                .enumerate()
            {
                let _ = i;
                v = v * 10 + (c as i64 - '0' as i64);
            }
            micros = v;
            &frac[digits.len()..]
        } else {
            rest
        };
        if rest != "Z" && rest != "+00:00" {
            return None;
        }
        let days = days_from_civil(y, mo, d);
        Some(Ts(
            (days * 86400 + h * 3600 + mi * 60 + se) * 1_000_000 + micros
        ))
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl Ts {
    /// RFC 3339 digits for years 0-9999 (None outside: `Display` pads those with `write!`).
    fn rfc3339(&self) -> Option<[u8; 27]> {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86400);
        let sod = secs.rem_euclid(86400);
        let (y, m, d) = civil_from_days(days);
        if !(0..=9999).contains(&y) {
            return None;
        }
        // Written digit by digit: this runs once per event and `write!` with padding was a
        // tenth of the time of `msntap read --json`.
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut v: i64| {
            for i in (0..width).rev() {
                b[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y);
        put(5, 2, i64::from(m));
        put(8, 2, i64::from(d));
        put(11, 2, sod / 3600);
        put(14, 2, (sod / 60) % 60);
        put(17, 2, sod % 60);
        put(20, 6, micros);
        Some(b)
    }
}

impl fmt::Display for Ts {
    /// RFC 3339 in UTC with microseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(b) = self.rfc3339() {
            return f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?);
        }
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let sod = secs.rem_euclid(86400);
        let (y, m, d) = civil_from_days(secs.div_euclid(86400));
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

impl Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A plain string, not `collect_str`: no formatter machinery per event.
        match self.rfc3339() {
            Some(b) => s.serialize_str(std::str::from_utf8(&b).map_err(serde::ser::Error::custom)?),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ts::parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("bad RFC 3339 timestamp"))
    }
}

/// A negotiated dialect, written `MSNP11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(pub u8);

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("MSNP{}", self.0))
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.strip_prefix("MSNP")
            .and_then(|n| n.parse().ok())
            .map(Version)
            .ok_or_else(|| serde::de::Error::custom("expected MSNPn"))
    }
}

/// Meaning of a numeric error reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meaning: Option<Arc<str>>,
}

/// A payload that followed a command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// Byte length, as declared on the command line.
    pub length: u64,
    /// `mime`, `xml`, `text`, `binary`, `multipart`, or `skipped` (not read: over the limit).
    pub kind: String,
    /// True when the command is unknown and the payload was framed by looking at what followed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub guess: bool,
    /// The decoded form (headers, XML tree, P2P header, ...); absent when not decodable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoded: Option<Value>,
    /// The body as text when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The body as base64 when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// Decoding problems (bad XML, truncated P2P header, ...); the bytes are still kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A decoded command line with its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub cmd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trid: Option<u64>,
    /// The raw tokens after the command name.
    pub args: Vec<String>,
    /// Named, typed parameters from the dissector table.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
    /// The command is in the dissector tables.
    pub known: bool,
    /// A known command whose line fits none of its forms (arity or literal).
    #[serde(default, skip_serializing_if = "is_false")]
    pub unmatched_form: bool,
    /// One-line meaning from the tables (the form's, else the command's), shared with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meaning: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    /// The command line as received, without its line ending.
    pub line: String,
    /// Byte offset of the frame in its direction of the stream.
    pub offset: u64,
    /// Secrets in this event were replaced by `<redacted>`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub redacted: bool,
    /// What the analysis layer adds: `auth` (login scheme, stage, password check),
    /// `challenge` (CHL/QRY product id and validity).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub annotations: Map<String, Value>,
    /// Indices of `args` holding server addresses (XFR, RNG): what a proxy rewrites.
    #[serde(skip)]
    pub address_args: Vec<usize>,
    /// Indices of `args` holding secrets (cookies, hashes, tickets).
    #[serde(skip)]
    pub secret_args: Vec<usize>,
    /// The exact bytes of the frame: line, line ending and payload.
    #[serde(skip)]
    pub raw: Vec<u8>,
}

impl Command {
    /// The frame exactly as it was on the wire.
    pub fn to_wire(&self) -> &[u8] {
        &self.raw
    }
    /// The payload bytes (empty when none).
    pub fn payload_bytes(&self) -> &[u8] {
        match &self.payload {
            Some(p) if p.kind != "skipped" => {
                let n = (p.length as usize).min(self.raw.len());
                &self.raw[self.raw.len() - n..]
            }
            _ => &[],
        }
    }
    /// The first argument, if it names a service referral (XFR NS/SB, RNG).
    pub fn referral(&self) -> Option<Referral> {
        let i = *self.address_args.first()?;
        let address = self.args.get(i)?.clone();
        if address == "0" {
            return None;
        }
        let target = if self.cmd == "RNG" || self.args.iter().any(|a| a == "SB") {
            Service::Sb
        } else {
            Service::Ns
        };
        let cookie = self
            .args
            .iter()
            .position(|a| a == "CKI")
            .and_then(|p| self.args.get(p + 1).cloned());
        Some(Referral {
            target,
            address,
            cookie,
        })
    }
}

/// A server address handed to the client by XFR or RNG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    pub target: Service,
    pub address: String,
    pub cookie: Option<String>,
}

/// What happened, by type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    Command(Box<Command>),
    Connect {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    Close {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        bytes_c2s: u64,
        bytes_s2c: u64,
    },
    Desync {
        offset: u64,
        skipped: u64,
        reason: String,
        preview: String,
    },
    Error {
        message: String,
    },
    Gap {
        offset: u64,
        length: u64,
    },
    Redirect {
        cmd: String,
        target: Service,
        original: String,
        rewritten: String,
    },
    Note {
        message: String,
    },
}

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema: u32,
    pub ts: Ts,
    pub conn: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<Dir>,
    pub service: Service,
    pub version: Option<Version>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            EventKind::Command(_) => "command",
            EventKind::Connect { .. } => "connect",
            EventKind::Close { .. } => "close",
            EventKind::Desync { .. } => "desync",
            EventKind::Error { .. } => "error",
            EventKind::Gap { .. } => "gap",
            EventKind::Redirect { .. } => "redirect",
            EventKind::Note { .. } => "note",
        }
    }
    pub fn command(&self) -> Option<&Command> {
        match &self.kind {
            EventKind::Command(c) => Some(c),
            _ => None,
        }
    }
}

/// Somewhere events go.
pub trait Sink {
    fn event(&mut self, ev: &Event) -> std::io::Result<()>;
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A short, printable preview of raw bytes (escapes control and non-ASCII bytes).
pub fn preview(bytes: &[u8], max: usize) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(max) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > max {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_formats_rfc3339_with_micros() {
        // 2005-01-02T03:04:05.000006Z: 12785 days after 1970-01-01 (checked with `date -d`).
        let t = Ts::from_secs_micros(1104635045, 6);
        assert_eq!(t.to_string(), "2005-01-02T03:04:05.000006Z");
        assert_eq!(Ts::parse_rfc3339("2005-01-02T03:04:05.000006Z"), Some(t));
        assert_eq!(Ts(0).to_string(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            Ts::parse_rfc3339("2024-02-29T23:59:59Z")
                .unwrap()
                .to_string(),
            "2024-02-29T23:59:59.000000Z"
        );
    }

    #[test]
    fn preview_escapes() {
        assert_eq!(preview(b"A\r\n\x00\xff", 10), "A\\r\\n\\x00\\xff");
        assert_eq!(preview(b"abcdef", 3), "abc...");
    }
}
