//! The one event schema shared by every input (live proxy, captures, session logs, JSON
//! Lines) and every output. Events borrow from the bytes and tables they were decoded
//! from (`Event<'a>`); `into_owned` makes a `'static` copy for consumers that keep them.
//! They are rendered once through serde: the JSON Lines a run writes are read back by the
//! same types. Events never refer to sockets or files.

pub mod annotations;
pub mod filter;
pub mod http;
pub mod jsonl;
pub mod pretty;
pub mod ts;

use std::borrow::Cow;
use std::fmt;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

pub use annotations::Annotations;
pub use ts::Ts;

use crate::payload::{owned, owned_opt, Bytes, Inline, MsnObject, Payload};
use crate::secret::{Redact, Secret, REDACTED};

/// Version of the JSON event schema; bumped on any change a consumer could trip over.
pub const SCHEMA_VERSION: u32 = 2;

/// Direction of a frame on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
    pub fn arrow(self) -> &'static str {
        match self {
            Dir::C2s => ">>>",
            Dir::S2c => "<<<",
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

/// A negotiated dialect, written `MSNP11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(pub u8);

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const NAMES: [&str; 22] = [
            "MSNP0", "MSNP1", "MSNP2", "MSNP3", "MSNP4", "MSNP5", "MSNP6", "MSNP7", "MSNP8",
            "MSNP9", "MSNP10", "MSNP11", "MSNP12", "MSNP13", "MSNP14", "MSNP15", "MSNP16",
            "MSNP17", "MSNP18", "MSNP19", "MSNP20", "MSNP21",
        ];
        match NAMES.get(self.0 as usize) {
            Some(n) => s.serialize_str(n),
            None => s.collect_str(&format_args!("MSNP{}", self.0)),
        }
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.strip_prefix("MSNP")
            .and_then(|n| n.parse().ok())
            .map(Version)
            .ok_or_else(|| serde::de::Error::custom("expected MSNPn"))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MSNP{}", self.0)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Capability flags (`caps` or `caps:extcaps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caps<'a> {
    pub value: u64,
    pub flags: Vec<Cow<'a, str>>,
    /// The Messenger version in the top nibble.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_flags: Option<Vec<Cow<'a, str>>>,
}

/// An enumerated value with its meaning from the tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnumValue<'a> {
    pub value: Cow<'a, str>,
    pub meaning: Cow<'a, str>,
}

/// A server address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address<'a> {
    pub host: Cow<'a, str>,
    pub port: u64,
}

/// List bits of LST/ADC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListBits<'a> {
    pub value: u64,
    pub lists: Vec<Cow<'a, str>>,
}

/// The value of one named parameter, typed by the dissector table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue<'a> {
    Int(u64),
    Str(Cow<'a, str>),
    /// A cookie, hash, ticket: redacted unless `--no-redact`.
    Secret(Secret<'a>),
    Enum(EnumValue<'a>),
    Address(Address<'a>),
    Caps(Box<Caps<'a>>),
    /// List bits of LST/ADC (`FL`, `AL`, `BL`, `RL`, `PL`).
    Lists(ListBits<'a>),
    MsnObj(Box<MsnObject<'a>>),
    /// A repeated last parameter.
    List(Vec<FieldValue<'a>>),
}

impl FieldValue<'_> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::Str(s) => Some(s),
            FieldValue::Secret(s) => Some(s.expose()),
            FieldValue::Enum(e) => Some(&e.value),
            _ => None,
        }
    }
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            FieldValue::Int(n) => Some(*n),
            FieldValue::Caps(c) => Some(c.value),
            FieldValue::Lists(l) => Some(l.value),
            _ => None,
        }
    }
    pub fn into_owned(self) -> FieldValue<'static> {
        match self {
            FieldValue::Int(n) => FieldValue::Int(n),
            FieldValue::Str(s) => FieldValue::Str(owned(s)),
            FieldValue::Secret(s) => FieldValue::Secret(s.into_owned()),
            FieldValue::Enum(e) => FieldValue::Enum(EnumValue {
                value: owned(e.value),
                meaning: owned(e.meaning),
            }),
            FieldValue::Address(a) => FieldValue::Address(Address {
                host: owned(a.host),
                port: a.port,
            }),
            FieldValue::Caps(c) => FieldValue::Caps(Box::new(Caps {
                value: c.value,
                flags: c.flags.into_iter().map(owned).collect(),
                client: owned_opt(c.client),
                ext: c.ext,
                ext_flags: c.ext_flags.map(|v| v.into_iter().map(owned).collect()),
            })),
            FieldValue::Lists(l) => FieldValue::Lists(ListBits {
                value: l.value,
                lists: l.lists.into_iter().map(owned).collect(),
            }),
            FieldValue::MsnObj(o) => FieldValue::MsnObj(Box::new(o.into_owned())),
            FieldValue::List(v) => {
                FieldValue::List(v.into_iter().map(FieldValue::into_owned).collect())
            }
        }
    }
}

impl Redact for FieldValue<'_> {
    fn redact(&mut self) -> bool {
        match self {
            FieldValue::Secret(s) => s.redact(),
            FieldValue::List(v) => v.redact(),
            _ => false,
        }
    }
}

/// One named parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Field<'a> {
    pub name: Cow<'a, str>,
    pub value: FieldValue<'a>,
}

/// The named parameters of a command, in the order of the form; written as a JSON object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fields<'a>(pub SmallVec<[Field<'a>; 6]>);

impl<'a> Fields<'a> {
    pub fn get(&self, name: &str) -> Option<&FieldValue<'a>> {
        self.0.iter().find(|f| f.name == name).map(|f| &f.value)
    }
    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(FieldValue::as_str)
    }
    pub fn u64(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(FieldValue::as_u64)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Field<'a>> {
        self.0.iter()
    }
    pub fn into_owned(self) -> Fields<'static> {
        Fields(
            self.0
                .into_iter()
                .map(|f| Field {
                    name: owned(f.name),
                    value: f.value.into_owned(),
                })
                .collect(),
        )
    }
}

impl Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for f in &self.0 {
            m.serialize_entry(f.name.as_ref(), &f.value)?;
        }
        m.end()
    }
}

impl<'de, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of fields")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                let mut v = Fields::default();
                while let Some((k, val)) = a.next_entry::<String, FieldValue<'a>>()? {
                    v.0.push(Field {
                        name: Cow::Owned(k),
                        value: val,
                    });
                }
                Ok(v)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl Redact for Fields<'_> {
    fn redact(&mut self) -> bool {
        let mut c = false;
        for f in self.0.iter_mut() {
            c |= f.value.redact();
        }
        c
    }
}

/// Meaning of a numeric error reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo<'a> {
    pub code: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meaning: Option<Cow<'a, str>>,
}

/// Indices of arguments (the token after the command name is 0).
pub type ArgIndices = SmallVec<[u8; 2]>;

/// A decoded command line with its payload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Command<'a> {
    /// The three-letter command or three-digit error code.
    pub cmd: Cow<'a, str>,
    #[serde(default)]
    pub trid: Option<u64>,
    #[serde(default)]
    pub fields: Fields<'a>,
    pub known: bool,
    #[serde(default)]
    pub unmatched_form: bool,
    #[serde(default)]
    pub error: Option<ErrorInfo<'a>>,
    #[serde(default)]
    pub payload: Option<Payload<'a>>,
    /// The command line as received, without its line ending (invalid UTF-8 replaced; see
    /// `line_base64`). `args` are its tokens after the name.
    pub line: Cow<'a, str>,
    /// The exact bytes of the line when they are not UTF-8 (legacy Latin-1 names).
    #[serde(default)]
    pub line_base64: Option<Bytes<'a>>,
    /// Byte offset of the frame in its direction of the stream.
    pub offset: u64,
    /// Bytes of the whole frame (line, line ending, payload) as received; 0 when read back
    /// from JSON.
    #[serde(skip)]
    pub frame_len: usize,
    /// The line was ended by the end of the stream, not by a line ending.
    #[serde(default)]
    pub unterminated: bool,
    /// Arguments holding secrets (cookies, hashes, tickets): what redaction hides.
    #[serde(default)]
    pub secret_args: ArgIndices,
    /// Arguments holding server addresses (XFR, RNG): what a proxy rewrites.
    #[serde(skip)]
    pub address_args: ArgIndices,
    /// Secrets in this event were replaced by `<redacted>`.
    #[serde(default)]
    pub redacted: bool,
    /// The line as the proxy forwarded it, when it rewrote an address in it.
    #[serde(default)]
    pub rewritten: Option<Cow<'a, str>>,
    #[serde(default)]
    pub annotations: Annotations<'a>,
}

/// The arguments of a line (tokens after the command name), for serialization.
struct ArgsOf<'l>(&'l str);

impl Serialize for ArgsOf<'_> {
    /// Cut by the one tokenizer's byte loop: `str::split` costs a `memchr` call per token.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut toks = crate::wire::Toks::new();
        crate::wire::tokenize(self.0.as_bytes(), &mut toks);
        let mut seq = s.serialize_seq(None)?;
        for t in toks.iter().skip(1) {
            // Spaces are ASCII, so every token boundary is a char boundary.
            seq.serialize_element(self.0.get(t.range()).unwrap_or_default())?;
        }
        seq.end()
    }
}

impl Serialize for Command<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Command", 16)?;
        self.write_fields(&mut st)?;
        st.end()
    }
}

impl Command<'_> {
    /// The fields of a command event, into the struct being serialized (the event's own,
    /// or the command's when serialized alone).
    fn write_fields<S: SerializeStruct>(&self, st: &mut S) -> Result<(), S::Error> {
        st.serialize_field("cmd", &self.cmd)?;
        if let Some(t) = self.trid {
            st.serialize_field("trid", &t)?;
        }
        st.serialize_field("args", &ArgsOf(&self.line))?;
        if !self.fields.is_empty() {
            st.serialize_field("fields", &self.fields)?;
        }
        st.serialize_field("known", &self.known)?;
        if self.unmatched_form {
            st.serialize_field("unmatched_form", &true)?;
        }
        if let Some(e) = &self.error {
            st.serialize_field("error", e)?;
        }
        if let Some(p) = &self.payload {
            st.serialize_field("payload", p)?;
        }
        st.serialize_field("line", &self.line)?;
        if let Some(b) = &self.line_base64 {
            st.serialize_field("line_base64", b)?;
        }
        st.serialize_field("offset", &self.offset)?;
        if self.unterminated {
            st.serialize_field("unterminated", &true)?;
        }
        if !self.secret_args.is_empty() {
            st.serialize_field("secret_args", &self.secret_args)?;
        }
        if self.redacted {
            st.serialize_field("redacted", &true)?;
        }
        if let Some(r) = &self.rewritten {
            st.serialize_field("rewritten", r)?;
        }
        if !self.annotations.is_empty() {
            st.serialize_field("annotations", &self.annotations)?;
        }
        Ok(())
    }
}

impl Command<'_> {
    /// A command with nothing in it yet, for a decoder to fill in place.
    pub fn blank<'b>() -> Command<'b> {
        Command {
            cmd: Cow::Borrowed(""),
            trid: None,
            fields: Fields::default(),
            known: false,
            unmatched_form: false,
            error: None,
            payload: None,
            line: Cow::Borrowed(""),
            line_base64: None,
            offset: 0,
            frame_len: 0,
            unterminated: false,
            secret_args: SmallVec::new(),
            address_args: SmallVec::new(),
            redacted: false,
            rewritten: None,
            annotations: Annotations::default(),
        }
    }
}

impl<'a> Command<'a> {
    /// The tokens after the command name.
    pub fn args(&self) -> impl Iterator<Item = &str> + Clone {
        crate::wire::tokens(&self.line).skip(1)
    }
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.args().nth(i)
    }
    pub fn argc(&self) -> usize {
        self.args().count()
    }
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }

    /// After reading from JSON: fields that hold a secret argument are typed `Secret`
    /// again (the JSON carries `secret_args`, not the type of each field).
    pub fn retype_secrets(&mut self) {
        if self.secret_args.is_empty() {
            return;
        }
        let secrets: Vec<String> = self
            .secret_args
            .iter()
            .filter_map(|&i| self.arg(i as usize).map(str::to_string))
            .collect();
        for f in self.fields.0.iter_mut() {
            if let FieldValue::Str(s) = &f.value {
                if secrets.iter().any(|x| x == s) {
                    f.value = FieldValue::Secret(Secret(s.clone()));
                }
            }
        }
    }

    pub fn into_owned(self) -> Command<'static> {
        Command {
            cmd: owned(self.cmd),
            trid: self.trid,
            fields: self.fields.into_owned(),
            known: self.known,
            unmatched_form: self.unmatched_form,
            error: self.error.map(|e| ErrorInfo {
                code: e.code,
                name: owned_opt(e.name),
                meaning: owned_opt(e.meaning),
            }),
            payload: self.payload.map(Payload::into_owned),
            line: owned(self.line),
            line_base64: self.line_base64.map(Bytes::into_owned),
            offset: self.offset,
            frame_len: self.frame_len,
            unterminated: self.unterminated,
            secret_args: self.secret_args,
            address_args: self.address_args,
            redacted: self.redacted,
            rewritten: owned_opt(self.rewritten),
            annotations: self.annotations.into_owned(),
        }
    }
}

/// Replaces the tokens of `line` at `args` (argument indices) by `<redacted>`.
fn redact_tokens(line: &[u8], args: &[u8]) -> Option<Vec<u8>> {
    let mut toks = crate::wire::Toks::new();
    crate::wire::tokenize(line, &mut toks);
    let mut out = Vec::with_capacity(line.len());
    let mut at = 0;
    let mut changed = false;
    for (i, t) in toks.iter().enumerate().skip(1) {
        if !args.contains(&((i - 1) as u8)) || t.of(line) == REDACTED.as_bytes() {
            continue;
        }
        out.extend_from_slice(&line[at..t.start as usize]);
        out.extend_from_slice(REDACTED.as_bytes());
        at = t.end as usize;
        changed = true;
    }
    out.extend_from_slice(&line[at..]);
    changed.then_some(out)
}

impl Redact for Command<'_> {
    fn redact(&mut self) -> bool {
        let mut c = false;
        if !self.secret_args.is_empty() {
            if let Some(l) = redact_tokens(self.line.as_bytes(), &self.secret_args) {
                self.line = Cow::Owned(String::from_utf8_lossy(&l).into_owned());
                c = true;
            }
            if let Some(b) = self.line_base64.as_mut() {
                if let Some(l) = redact_tokens(&b.0, &self.secret_args) {
                    b.0 = Cow::Owned(l);
                    c = true;
                }
            }
            if let Some(r) = self.rewritten.as_mut() {
                if let Some(l) = redact_tokens(r.as_bytes(), &self.secret_args) {
                    *r = Cow::Owned(String::from_utf8_lossy(&l).into_owned());
                    c = true;
                }
            }
        }
        c |= self.fields.redact();
        c |= self.payload.redact();
        c |= self.annotations.redact();
        if c {
            self.redacted = true;
        }
        c
    }
}

/// Raw bytes shown escaped (`\r`, `\n`, `\t`, `\\`, `\xNN`), as in desync previews.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Preview<'a>(pub Cow<'a, [u8]>);

impl Preview<'_> {
    pub fn escaped(&self) -> String {
        let mut s = String::with_capacity(self.0.len());
        for &b in self.0.iter() {
            match b {
                b'\r' => s.push_str("\\r"),
                b'\n' => s.push_str("\\n"),
                b'\t' => s.push_str("\\t"),
                b'\\' => s.push_str("\\\\"),
                0x20..=0x7e => s.push(b as char),
                _ => s.push_str(&format!("\\x{b:02x}")),
            }
        }
        s
    }
    fn unescape(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && i + 1 < b.len() {
                let hex = |c: u8| (c as char).to_digit(16);
                match b[i + 1] {
                    b'r' => out.push(b'\r'),
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'\\' => out.push(b'\\'),
                    b'x' if i + 3 < b.len() => {
                        if let (Some(x), Some(y)) = (hex(b[i + 2]), hex(b[i + 3])) {
                            out.push((x * 16 + y) as u8);
                            i += 4;
                            continue;
                        }
                        out.push(b'\\');
                        i += 1;
                        continue;
                    }
                    _ => {
                        out.push(b'\\');
                        i += 1;
                        continue;
                    }
                }
                i += 2;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        out
    }
}

impl Serialize for Preview<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.escaped())
    }
}

impl<'de, 'a> Deserialize<'de> for Preview<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        Ok(Preview(Cow::Owned(Preview::unescape(&s))))
    }
}

/// A connection was opened.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Connect<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Cow<'a, str>>,
}

/// How one side of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Fin,
    Reset,
    /// Still open when the capture or the proxy ended.
    Open,
    /// Closed by msntap (shutdown, timeout, error).
    Aborted,
}

/// A connection was closed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Close<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'a, str>>,
    /// Bytes seen from each side.
    pub bytes_c2s: u64,
    pub bytes_s2c: u64,
    /// Proxy: bytes that reached the other side, and bytes received that could not be
    /// delivered (the receiver was gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_c2s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_s2c: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undelivered_c2s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undelivered_s2c: Option<u64>,
    /// How the client's and the server's side ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_end: Option<Ending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_end: Option<Ending>,
}

/// Bytes that could not be framed; decoding resumed at the next command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desync<'a> {
    pub offset: u64,
    pub skipped: u64,
    pub reason: Cow<'a, str>,
    /// The first bytes skipped (secret-looking tokens redacted unless `--no-redact`).
    pub preview: Preview<'a>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub redacted: bool,
}

impl Redact for Desync<'_> {
    fn redact(&mut self) -> bool {
        if self.redacted {
            return false;
        }
        let s = crate::secret::scrub(&self.preview.0);
        let changed = s != *self.preview.0;
        self.preview = Preview(Cow::Owned(s));
        self.redacted = true;
        changed
    }
}

/// Bytes missing from a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub offset: u64,
    pub length: u64,
}

/// A server address handed to the client, and what the proxy made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redirect<'a> {
    pub cmd: Cow<'a, str>,
    pub target: Service,
    pub original: Cow<'a, str>,
    /// The proxy's route listener; absent when the address could not be rewritten (the
    /// client then leaves the proxy: see `problem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Cow<'a, str>>,
}

/// A message: an error met, or a remark about the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message<'a> {
    pub message: Cow<'a, str>,
}

/// Events dropped because a consumer fell behind (live proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub events: u64,
    pub bytes: u64,
    /// When the first and last dropped events happened.
    pub since: Ts,
    pub until: Ts,
}

/// What happened, by type.
// A command is by far the largest and most frequent kind; events are built in place and
// handed on by reference, so boxing it would only add an allocation per command.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind<'a> {
    Command(Command<'a>),
    Connect(Connect<'a>),
    Close(Close<'a>),
    Desync(Desync<'a>),
    Gap(Gap),
    Redirect(Redirect<'a>),
    Note(Message<'a>),
    Error(Message<'a>),
    Dropped(Dropped),
    /// An HTTP request, response or problem (MSN's HTTP side).
    Http(Box<http::Http>),
    /// A step of an HTTP gateway session.
    Gateway(Box<http::Gateway>),
}

impl EventKind<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::Command(_) => "command",
            EventKind::Connect(_) => "connect",
            EventKind::Close(_) => "close",
            EventKind::Desync(_) => "desync",
            EventKind::Gap(_) => "gap",
            EventKind::Redirect(_) => "redirect",
            EventKind::Note(_) => "note",
            EventKind::Error(_) => "error",
            EventKind::Dropped(_) => "dropped",
            EventKind::Http(_) => "http",
            EventKind::Gateway(_) => "gateway",
        }
    }

    pub fn into_owned(self) -> EventKind<'static> {
        match self {
            EventKind::Command(c) => EventKind::Command(c.into_owned()),
            EventKind::Connect(c) => EventKind::Connect(Connect {
                client: owned_opt(c.client),
                server: owned_opt(c.server),
                detail: owned_opt(c.detail),
            }),
            EventKind::Close(c) => EventKind::Close(Close {
                by: owned_opt(c.by),
                reason: owned_opt(c.reason),
                ..c
            }),
            EventKind::Desync(d) => EventKind::Desync(Desync {
                offset: d.offset,
                skipped: d.skipped,
                reason: owned(d.reason),
                preview: Preview(Cow::Owned(d.preview.0.into_owned())),
                redacted: d.redacted,
            }),
            EventKind::Gap(g) => EventKind::Gap(g),
            EventKind::Redirect(r) => EventKind::Redirect(Redirect {
                cmd: owned(r.cmd),
                target: r.target,
                original: owned(r.original),
                rewritten: owned_opt(r.rewritten),
                problem: owned_opt(r.problem),
            }),
            EventKind::Note(m) => EventKind::Note(Message {
                message: owned(m.message),
            }),
            EventKind::Error(m) => EventKind::Error(Message {
                message: owned(m.message),
            }),
            EventKind::Dropped(d) => EventKind::Dropped(d),
            EventKind::Http(h) => EventKind::Http(h),
            EventKind::Gateway(g) => EventKind::Gateway(g),
        }
    }
}

impl Redact for EventKind<'_> {
    fn redact(&mut self) -> bool {
        match self {
            EventKind::Command(c) => c.redact(),
            EventKind::Desync(d) => d.redact(),
            EventKind::Http(h) => h.redact(),
            _ => false,
        }
    }
}

/// The schema number in every event: written as [`SCHEMA_VERSION`], checked on reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Schema;

impl Serialize for Schema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(SCHEMA_VERSION)
    }
}

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v == SCHEMA_VERSION {
            Ok(Schema)
        } else {
            Err(serde::de::Error::custom(format!(
                "event schema {v}, but this msntap reads schema {SCHEMA_VERSION} (docs/events.md lists the changes)"
            )))
        }
    }
}

/// One event of the stream. Written as one JSON object: these fields, `type`, then the
/// kind's fields (see the `Serialize` impl below); read back through serde's flatten.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event<'a> {
    pub schema: Schema,
    pub ts: Ts,
    pub conn: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<Dir>,
    pub service: Service,
    pub version: Option<Version>,
    #[serde(flatten)]
    pub kind: EventKind<'a>,
    /// The HTTP gateway session an MSNP event's bytes came through (None over TCP).
    #[serde(default)]
    pub via: Option<Box<http::Via>>,
}

impl Serialize for Event<'_> {
    /// The same JSON as serde's `flatten` of the internally tagged kind would write, without
    /// going through a map: field names stay constants (the JSON backend writes them as one
    /// store each), and a kind's derived fields are forwarded into this struct by [`Inline`].
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Event", 24)?;
        st.serialize_field("schema", &self.schema)?;
        st.serialize_field("ts", &self.ts)?;
        st.serialize_field("conn", &self.conn)?;
        if let Some(d) = &self.dir {
            st.serialize_field("dir", d)?;
        }
        st.serialize_field("service", &self.service)?;
        st.serialize_field("version", &self.version)?;
        st.serialize_field("type", self.kind.type_name())?;
        match &self.kind {
            EventKind::Command(c) => c.write_fields(&mut st)?,
            EventKind::Connect(x) => x.serialize(Inline(&mut st))?,
            EventKind::Close(x) => x.serialize(Inline(&mut st))?,
            EventKind::Desync(x) => x.serialize(Inline(&mut st))?,
            EventKind::Gap(x) => x.serialize(Inline(&mut st))?,
            EventKind::Redirect(x) => x.serialize(Inline(&mut st))?,
            EventKind::Note(x) | EventKind::Error(x) => x.serialize(Inline(&mut st))?,
            EventKind::Dropped(x) => x.serialize(Inline(&mut st))?,
            EventKind::Http(x) => inline_cold(&**x, &mut st)?,
            EventKind::Gateway(x) => inline_cold(&**x, &mut st)?,
        }
        if let Some(v) = &self.via {
            via_cold(v, &mut st)?;
        }
        st.end()
    }
}

/// The HTTP side's kinds, out of line: the MSNP events that make up nearly every stream
/// do not pay for their code in `Event::serialize`.
#[cold]
#[inline(never)]
fn inline_cold<S: SerializeStruct, T: Serialize>(x: &T, st: &mut S) -> Result<(), S::Error> {
    x.serialize(Inline(st))
}

#[cold]
#[inline(never)]
fn via_cold<S: SerializeStruct>(v: &http::Via, st: &mut S) -> Result<(), S::Error> {
    st.serialize_field("via", v)
}

impl<'a> Event<'a> {
    #[inline]
    pub fn new(
        ts: Ts,
        conn: u64,
        dir: Option<Dir>,
        service: Service,
        version: Option<u8>,
        kind: EventKind<'a>,
    ) -> Event<'a> {
        Event {
            schema: Schema,
            ts,
            conn,
            dir,
            service,
            version: version.map(Version),
            kind,
            via: None,
        }
    }
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
    pub fn command(&self) -> Option<&Command<'a>> {
        match &self.kind {
            EventKind::Command(c) => Some(c),
            _ => None,
        }
    }
    pub fn command_mut(&mut self) -> Option<&mut Command<'a>> {
        match &mut self.kind {
            EventKind::Command(c) => Some(c),
            _ => None,
        }
    }
    pub fn into_owned(self) -> Event<'static> {
        Event {
            schema: Schema,
            ts: self.ts,
            conn: self.conn,
            dir: self.dir,
            service: self.service,
            version: self.version,
            kind: self.kind.into_owned(),
            via: self.via,
        }
    }

    /// Reads one JSON line written by `--json` (any msntap run of this schema).
    pub fn from_json(line: &str) -> Result<Event<'static>, serde_json::Error> {
        let mut ev: Event<'static> = serde_json::from_str(line)?;
        if let EventKind::Command(c) = &mut ev.kind {
            c.retype_secrets();
        }
        Ok(ev)
    }
}

impl Redact for Event<'_> {
    fn redact(&mut self) -> bool {
        self.kind.redact()
    }
}

/// Somewhere events go.
pub trait Sink {
    fn event(&mut self, ev: &Event<'_>) -> std::io::Result<()>;
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_escapes_and_reads_back() {
        let p = Preview(Cow::Borrowed(b"A\r\n\x00\xff\\x"));
        assert_eq!(p.escaped(), "A\\r\\n\\x00\\xff\\\\x");
        let j = serde_json::to_string(&p).unwrap();
        let back: Preview = serde_json::from_str(&j).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn command_redaction_hides_line_tokens_and_secret_fields() {
        let mut c = Command {
            cmd: "USR".into(),
            trid: Some(7),
            fields: Fields(
                [
                    Field {
                        name: "trid".into(),
                        value: FieldValue::Int(7),
                    },
                    Field {
                        name: "ticket".into(),
                        value: FieldValue::Secret(Secret::new("t=abc&p=def")),
                    },
                ]
                .into_iter()
                .collect(),
            ),
            known: true,
            line: "USR 7 TWN S t=abc&p=def".into(),
            secret_args: [3u8].into_iter().collect(),
            ..Command::blank()
        };
        let ev = Event::new(
            Ts(0),
            1,
            Some(Dir::C2s),
            Service::Ns,
            Some(8),
            EventKind::Command(c.clone()),
        );
        let clear = serde_json::to_string(&ev).unwrap();
        assert!(clear.contains("t=abc&p=def"));
        // Read back (as from a --no-redact JSON Lines file), then redacted: nothing left.
        let mut back = Event::from_json(&clear).unwrap();
        assert!(back.redact());
        let j = serde_json::to_string(&back).unwrap();
        assert!(!j.contains("abc"), "{j}");
        assert!(j.contains(r#""line":"USR 7 TWN S <redacted>""#), "{j}");
        assert!(j.contains(r#""args":["7","TWN","S","<redacted>"]"#), "{j}");
        assert!(c.redact());
        assert!(!c.redact());
    }

    #[test]
    fn schema_is_checked_on_reading() {
        let e = Event::new(
            Ts(0),
            1,
            None,
            Service::Unknown,
            None,
            EventKind::Gap(Gap {
                offset: 1,
                length: 2,
            }),
        );
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(
            j,
            r#"{"schema":2,"ts":"1970-01-01T00:00:00.000000Z","conn":1,"service":"unknown","version":null,"type":"gap","offset":1,"length":2}"#
        );
        assert_eq!(Event::from_json(&j).unwrap(), e);
        let old = j.replace("\"schema\":2", "\"schema\":1");
        let err = Event::from_json(&old).unwrap_err().to_string();
        assert!(err.contains("schema 1"), "{err}");
    }
}
