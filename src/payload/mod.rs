//! Payload decoders: MIME messages, XML documents, P2P binary headers, MSNSLP, MSNObjects.
//! They take bytes that framing already cut out and return typed values that borrow from
//! those bytes; they never frame, never allocate more than a bounded multiple of their
//! input, and never panic. They know nothing of events or of the dissector tables.

pub mod mime;
pub mod msnobj;
pub mod p2p;
pub mod slp;
pub mod xml;

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::secret::{redact_lines, Redact};

pub use mime::{Mime, Multipart};
pub use msnobj::MsnObject;
pub use p2p::P2p;
pub use slp::Slp;
pub use xml::Element;

/// `bytes` as text when they are UTF-8: the same answer as `std::str::from_utf8(..).ok()`,
/// checked with SIMD (simdutf8; short input goes to the standard library's check). Payload
/// bodies and lines are checked here, and message bodies are the bulk of a switchboard's bytes.
#[inline]
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// `bytes` as text, invalid UTF-8 replaced; valid input (nearly all) is borrowed.
pub fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match utf8(bytes) {
        Some(s) => Cow::Borrowed(s),
        None => String::from_utf8_lossy(bytes),
    }
}

/// Decodes `%XX` escapes (friendly names, personal messages). Invalid escapes stay as they
/// are; bytes that do not form UTF-8 are replaced. Borrowed when there is no escape.
pub fn urldecode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = |c: u8| (c as char).to_digit(16);
            if let (Some(x), Some(y)) = (h(b[i + 1]), h(b[i + 2])) {
                out.push((x * 16 + y) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    // Valid UTF-8 (the usual case) moves into the String without a second copy.
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// Raw bytes, written as a base64 string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bytes<'a>(pub Cow<'a, [u8]>);

impl Bytes<'_> {
    pub fn into_owned(self) -> Bytes<'static> {
        Bytes(Cow::Owned(self.0.into_owned()))
    }
}

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::json::Base64(&self.0).serialize(s)
    }
}

impl<'de, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        unb64(&s)
            .map(|v| Bytes(Cow::Owned(v)))
            .ok_or_else(|| serde::de::Error::custom("bad base64"))
    }
}

/// A body: its text when UTF-8, else `{"base64": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Body<'a> {
    Text(Cow<'a, str>),
    Base64 { base64: Bytes<'a> },
}

impl<'a> Body<'a> {
    pub fn of(b: &'a [u8]) -> Body<'a> {
        match utf8(b) {
            Some(t) => Body::Text(Cow::Borrowed(t)),
            None => Body::Base64 {
                base64: Bytes(Cow::Borrowed(b)),
            },
        }
    }
    /// Binary content (P2P): always base64, whatever it looks like.
    pub fn binary(b: &'a [u8]) -> Body<'a> {
        Body::Base64 {
            base64: Bytes(Cow::Borrowed(b)),
        }
    }
    pub fn text(&self) -> Option<&str> {
        match self {
            Body::Text(t) => Some(t),
            Body::Base64 { .. } => None,
        }
    }
    /// The bytes of the body, whichever way it is held.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Body::Text(t) => t.as_bytes(),
            Body::Base64 { base64 } => &base64.0,
        }
    }
    pub fn into_owned(self) -> Body<'static> {
        match self {
            Body::Text(t) => Body::Text(Cow::Owned(t.into_owned())),
            Body::Base64 { base64 } => Body::Base64 {
                base64: base64.into_owned(),
            },
        }
    }
}

impl Redact for Body<'_> {
    fn redact(&mut self) -> bool {
        if let Body::Text(t) = self {
            if let Some(r) = redact_lines(t) {
                *t = Cow::Owned(r);
                return true;
            }
        }
        false
    }
}

/// Ordered `name: value` pairs, written as a JSON object (bodies of invitations, mail
/// notifications, SLP messages, XML attributes). A repeated name keeps its last value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KvMap<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> KvMap<'a> {
    pub fn insert(&mut self, k: impl Into<Cow<'a, str>>, v: impl Into<Cow<'a, str>>) {
        let k = k.into();
        let v = v.into();
        match self.0.iter_mut().find(|(n, _)| *n == k) {
            Some(e) => e.1 = v,
            None => self.0.push((k, v)),
        }
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_ref())
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
    pub fn into_owned(self) -> KvMap<'static> {
        KvMap(
            self.0
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
        )
    }

    /// `Key: value` lines of a body.
    pub fn from_lines(text: &'a str) -> KvMap<'a> {
        let mut m = KvMap::default();
        for line in text.split('\n') {
            let line = line.trim_end_matches('\r');
            if let Some((k, v)) = line.split_once(':') {
                if !k.is_empty() && !k.contains(' ') {
                    m.insert(k, v.trim_start());
                }
            }
        }
        m
    }
}

impl Redact for KvMap<'_> {
    fn redact(&mut self) -> bool {
        let mut changed = false;
        for (k, v) in self.0.iter_mut() {
            if crate::secret::is_secret_name(k) && v != crate::secret::REDACTED {
                *v = Cow::Borrowed(crate::secret::REDACTED);
                changed = true;
            }
        }
        changed
    }
}

impl Serialize for KvMap<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k.as_ref(), v.as_ref())?;
        }
        m.end()
    }
}

impl<'de, 'a> Deserialize<'de> for KvMap<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = KvMap<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                let mut m = KvMap::default();
                while let Some((k, v)) = a.next_entry::<String, String>()? {
                    m.insert(k, v);
                }
                Ok(m)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Ordered header pairs, written as `[[name, value], ...]`.
pub type Headers<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Redacts the values of headers with secret names.
pub fn redact_headers(h: &mut Headers<'_>) -> bool {
    let mut changed = false;
    for (k, v) in h.iter_mut() {
        if crate::secret::is_secret_name(k) && v != crate::secret::REDACTED {
            *v = Cow::Borrowed(crate::secret::REDACTED);
            changed = true;
        }
    }
    changed
}

pub fn owned_pairs(h: Headers<'_>) -> Headers<'static> {
    h.into_iter()
        .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
        .collect()
}

pub fn owned(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

pub fn owned_opt(s: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    s.map(owned)
}

/// How a payload is to be decoded (from the tables), and what it was decoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Mime,
    Xml,
    Text,
    Binary,
    Multipart,
    /// Declared length over the limit: not read.
    Skipped,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Mime => "mime",
            Kind::Xml => "xml",
            Kind::Text => "text",
            Kind::Binary => "binary",
            Kind::Multipart => "multipart",
            Kind::Skipped => "skipped",
        }
    }
}

/// A decoded payload body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Decoded<'a> {
    Mime(Box<Mime<'a>>),
    Multipart(Box<Multipart<'a>>),
    Xml(Box<Element<'a>>),
}

impl Decoded<'_> {
    pub fn into_owned(self) -> Decoded<'static> {
        match self {
            Decoded::Mime(m) => Decoded::Mime(Box::new(m.into_owned())),
            Decoded::Multipart(m) => Decoded::Multipart(Box::new(m.into_owned())),
            Decoded::Xml(x) => Decoded::Xml(Box::new(x.into_owned())),
        }
    }
}

impl Redact for Decoded<'_> {
    fn redact(&mut self) -> bool {
        match self {
            Decoded::Mime(m) => m.redact(),
            Decoded::Multipart(m) => m.redact(),
            Decoded::Xml(x) => x.redact(),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A payload that followed a command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload<'a> {
    /// Byte length, as declared on the command line.
    pub length: u64,
    pub kind: Kind,
    /// The command is unknown and the payload was framed by looking at what followed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub guess: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoded: Option<Decoded<'a>>,
    /// The body as text when it is UTF-8 and not already given by `decoded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
    /// The body as base64 when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<Bytes<'a>>,
    /// Decoding problems (bad XML, truncated P2P header, the stream ended early); the bytes
    /// are still kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Cow<'a, str>>,
}

impl Payload<'_> {
    pub fn into_owned(self) -> Payload<'static> {
        Payload {
            length: self.length,
            kind: self.kind,
            guess: self.guess,
            decoded: self.decoded.map(Decoded::into_owned),
            text: owned_opt(self.text),
            base64: self.base64.map(Bytes::into_owned),
            problem: owned_opt(self.problem),
        }
    }
    pub fn mime(&self) -> Option<&Mime<'_>> {
        match &self.decoded {
            Some(Decoded::Mime(m)) => Some(m),
            _ => None,
        }
    }
    pub fn multipart(&self) -> Option<&Multipart<'_>> {
        match &self.decoded {
            Some(Decoded::Multipart(m)) => Some(m),
            _ => None,
        }
    }
    pub fn xml(&self) -> Option<&Element<'_>> {
        match &self.decoded {
            Some(Decoded::Xml(x)) => Some(x),
            _ => None,
        }
    }
    /// The typed content of a MIME or multipart payload.
    pub fn content(&self) -> Option<&mime::Content<'_>> {
        match &self.decoded {
            Some(Decoded::Mime(m)) => Some(&m.content),
            Some(Decoded::Multipart(m)) => Some(&m.content),
            _ => None,
        }
    }
    pub fn content_type(&self) -> Option<&str> {
        match &self.decoded {
            Some(Decoded::Mime(m)) => Some(&m.content_type),
            Some(Decoded::Multipart(m)) => Some(&m.content_type),
            _ => None,
        }
    }
}

impl Redact for Payload<'_> {
    fn redact(&mut self) -> bool {
        let mut changed = self.decoded.redact();
        if let Some(t) = self.text.as_mut() {
            if let Some(r) = redact_lines(t) {
                *t = Cow::Owned(r);
                changed = true;
            }
        }
        changed
    }
}

/// Guesses the kind of a payload whose command the tables do not describe.
fn sniff(body: &[u8]) -> Kind {
    let t = body.trim_ascii_start();
    if t.starts_with(b"<") {
        Kind::Xml
    } else if t.starts_with(b"Routing:") {
        Kind::Multipart
    } else if mime::looks_like_headers(body) {
        Kind::Mime
    } else if utf8(body).is_some() {
        Kind::Text
    } else {
        Kind::Binary
    }
}

/// Decodes one payload body. `kind` comes from the tables; None means sniff it.
pub fn decode<'a>(kind: Option<Kind>, body: &'a [u8], version: Option<u8>) -> Payload<'a> {
    let k = match kind {
        Some(Kind::Xml) if !body.trim_ascii_start().starts_with(b"<") && !body.is_empty() => {
            sniff(body)
        }
        Some(k) => k,
        None => sniff(body),
    };
    let mut p = Payload {
        length: body.len() as u64,
        kind: k,
        guess: false,
        decoded: None,
        text: None,
        base64: None,
        problem: None,
    };
    if body.is_empty() {
        return p;
    }
    match k {
        Kind::Mime => match mime::decode(body, version) {
            Ok(m) => p.decoded = Some(Decoded::Mime(Box::new(m))),
            Err(e) => {
                p.problem = Some(Cow::Owned(e));
                set_body(&mut p, body);
            }
        },
        Kind::Multipart => match mime::decode_multipart(body, version) {
            Ok(m) => p.decoded = Some(Decoded::Multipart(Box::new(m))),
            Err(e) => {
                p.problem = Some(Cow::Owned(e));
                set_body(&mut p, body);
            }
        },
        Kind::Xml => match set_body(&mut p, body) {
            Some(t) => match xml::parse(t) {
                Ok(e) => p.decoded = Some(Decoded::Xml(Box::new(e))),
                Err(e) => p.problem = Some(Cow::Owned(format!("XML: {e}"))),
            },
            None => p.problem = Some(Cow::Borrowed("XML payload is not UTF-8")),
        },
        Kind::Text | Kind::Binary | Kind::Skipped => {
            set_body(&mut p, body);
        }
    }
    p
}

/// The body as text when it is UTF-8, as base64 otherwise; the text, for a decoder to read.
fn set_body<'a>(p: &mut Payload<'a>, body: &'a [u8]) -> Option<&'a str> {
    let t = utf8(body);
    match t {
        Some(t) => p.text = Some(Cow::Borrowed(t)),
        None => p.base64 = Some(Bytes(Cow::Borrowed(body))),
    }
    t
}

use serde::ser::SerializeStruct;

/// Forwards the fields of a struct's derived `Serialize` into an enclosing struct being
/// serialized; anything but a struct is refused.
pub(crate) struct Inline<'s, S>(pub(crate) &'s mut S);

impl<S: SerializeStruct> SerializeStruct for Inline<'_, S> {
    type Ok = ();
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), S::Error> {
        self.0.serialize_field(key, v)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
        self.0.skip_field(key)
    }
    fn end(self) -> Result<(), S::Error> {
        Ok(())
    }
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<(), S::Error> {
            Err(serde::ser::Error::custom("only a struct can be inlined"))
        })*
    };
}

impl<'s, S: SerializeStruct> serde::Serializer for Inline<'s, S> {
    type Ok = ();
    type Error = S::Error;
    type SerializeSeq = serde::ser::Impossible<(), S::Error>;
    type SerializeTuple = serde::ser::Impossible<(), S::Error>;
    type SerializeTupleStruct = serde::ser::Impossible<(), S::Error>;
    type SerializeTupleVariant = serde::ser::Impossible<(), S::Error>;
    type SerializeMap = serde::ser::Impossible<(), S::Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = serde::ser::Impossible<(), S::Error>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, S::Error> {
        Ok(self)
    }
    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), S::Error> {
        Err(serde::ser::Error::custom("only a struct can be inlined"))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), S::Error> {
        Err(serde::ser::Error::custom("only a struct can be inlined"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), S::Error> {
        Err(serde::ser::Error::custom("only a struct can be inlined"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        Err(serde::ser::Error::custom("only a struct can be inlined"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, S::Error> {
        Err(serde::ser::Error::custom("only a struct can be inlined"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        Err(serde::ser::Error::custom("only a struct can be inlined"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        Err(serde::ser::Error::custom("only a struct can be inlined"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Err(serde::ser::Error::custom("only a struct can be inlined"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        Err(serde::ser::Error::custom("only a struct can be inlined"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_answers_as_the_standard_library_at_every_length_and_position() {
        // Text of one- to four-byte characters, past two 64-byte SIMD blocks, then each
        // length with a bad byte, a cut-off character or a surrogate at every position.
        let text = "MSG a\u{e9}\u{20ac}\u{1f600} x".repeat(12);
        let t = text.as_bytes();
        let mut checked = 0;
        for n in 0..t.len() {
            let b = &t[..n];
            assert_eq!(utf8(b), std::str::from_utf8(b).ok(), "prefix {n}");
            for bad in [&[0xffu8][..], &[0xc3], &[0xed, 0xa0, 0x80], &[0xf0, 0x9f]] {
                for at in [0, n / 2, n] {
                    let mut v = b.to_vec();
                    v.splice(at..at, bad.iter().copied());
                    assert_eq!(utf8(&v), std::str::from_utf8(&v).ok(), "{n} {at} {bad:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000);
    }

    #[test]
    fn urldecode_handles_utf8_and_bad_escapes() {
        assert_eq!(urldecode("another%20user"), "another user");
        assert_eq!(urldecode("caf%C3%A9"), "café");
        assert_eq!(urldecode("100%"), "100%");
        assert_eq!(urldecode("%zz%4"), "%zz%4");
        assert_eq!(urldecode("%3Cmsnobj%2F%3E"), "<msnobj/>");
        assert!(matches!(urldecode("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn kv_map_keeps_order_and_last_value() {
        let m = KvMap::from_lines("B: 1\r\nA: 2\r\nB: 3\r\nnot a pair\r\n");
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"B":"3","A":"2"}"#);
        let back: KvMap = serde_json::from_str(r#"{"B":"3","A":"2"}"#).unwrap();
        assert_eq!(back, m.into_owned());
    }

    #[test]
    fn body_text_or_base64() {
        assert_eq!(serde_json::to_string(&Body::of(b"hi")).unwrap(), "\"hi\"");
        assert_eq!(
            serde_json::to_string(&Body::of(b"\xff\x00")).unwrap(),
            r#"{"base64":"/wA="}"#
        );
        let b: Body = serde_json::from_str(r#"{"base64":"/wA="}"#).unwrap();
        assert_eq!(b.bytes(), b"\xff\x00");
    }
}
