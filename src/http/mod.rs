//! The HTTP side of MSN, sans-IO: HTTP/1.1 reassembly ([`stream`]), the gateway.dll
//! tunnel as MSNP byte streams ([`gateway`]), Passport 1.4 ([`passport`]), SOAP services
//! ([`soap`]), the SSO response check ([`sso`]) and detection ([`detect`]).
//! Nothing here does I/O or depends on msntap's event enum or the MSNP session decoder:
//! these are plain typed values the callers turn into events.

pub mod detect;
pub mod gateway;
pub mod passport;
pub mod soap;
pub mod sso;
pub mod stream;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

use crate::secret::Redact;
pub use crate::secret::REDACTED;

/// A secret from the wire (password, ticket, cookie, BinarySecret): the crate's one secret
/// type, owned. Its `Debug` never shows the value; redaction goes through the crate's
/// [`Redact`] rule like every other event part.
pub type Secret = crate::secret::Secret<'static>;

/// Redacts every secret of an optional field.
pub(crate) fn redact_opt(s: &mut Option<Secret>) -> bool {
    s.as_mut().is_some_and(Redact::redact)
}

/// Bytes off the wire: serialized as `{"text": ...}` when UTF-8, else `{"base64": ...}`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) if s.len() <= 64 => write!(f, "Bytes({s:?})"),
            _ => write!(f, "Bytes({} bytes)", self.0.len()),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BytesRepr<'a> {
    #[serde(borrow)]
    Text(std::borrow::Cow<'a, str>),
    Base64(String),
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        match std::str::from_utf8(&self.0) {
            Ok(t) => BytesRepr::Text(t.into()).serialize(s),
            Err(_) => BytesRepr::Base64(base64::engine::general_purpose::STANDARD.encode(&self.0))
                .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        match BytesRepr::deserialize(d)? {
            BytesRepr::Text(t) => Ok(Bytes(t.into_owned().into_bytes())),
            BytesRepr::Base64(b) => base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map(Bytes)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// One header field. Values of the headers that carry credentials or tickets are
/// [`Secret`]s; the rest are text (bytes that are not UTF-8 are replaced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: HeaderValue,
}

/// A header value: a plain string, or `{"secret": ...}` for a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderValue {
    Text(String),
    Secret { secret: Secret },
}

impl HeaderValue {
    /// The value as received (or [`REDACTED`] after redaction).
    pub fn as_str(&self) -> &str {
        match self {
            HeaderValue::Text(s) => s,
            HeaderValue::Secret { secret } => secret.expose(),
        }
    }
}

/// Headers whose whole value is a credential, a ticket or a cookie.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "authentication-info",
    "cookie",
    "set-cookie",
    "x-password",
    "x-token",
    "ticket",
];

impl Header {
    pub fn new(name: &str, value: &str) -> Header {
        let secret = SECRET_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h));
        Header {
            name: name.to_string(),
            value: if secret {
                HeaderValue::Secret {
                    secret: Secret::new(value.to_string()),
                }
            } else {
                HeaderValue::Text(value.to_string())
            },
        }
    }
    pub fn value(&self) -> &str {
        self.value.as_str()
    }
}

impl Redact for Header {
    fn redact(&mut self) -> bool {
        match &mut self.value {
            HeaderValue::Secret { secret } => secret.redact(),
            HeaderValue::Text(_) => false,
        }
    }
}

/// The first header named `name` (case-insensitive).
pub fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(Header::value)
}

/// Percent-decoding of a URL component (`+` stays `+`: Passport fields use `%20`); bytes
/// that are not UTF-8 afterwards are replaced.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query parameters of a request target (`/path?a=1&b=2`, absolute form too), in order,
/// percent-decoded.
pub fn query_params(target: &str) -> Vec<(String, String)> {
    let Some((_, q)) = target.split_once('?') else {
        return Vec::new();
    };
    let q = q.split('#').next().unwrap_or("");
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// The path of a request target, for origin form (`/a/b?x`) and absolute form
/// (`http://host/a/b?x`); the query is cut off.
pub fn target_path(target: &str) -> &str {
    let rest = match target.find("://") {
        Some(i) => {
            let after = &target[i + 3..];
            match after.find('/') {
                Some(j) => &after[j..],
                None => "/",
            }
        }
        None => target,
    };
    rest.split(['?', '#']).next().unwrap_or(rest)
}

/// The host of an absolute-form target (`http://host:port/...`), if any.
pub fn target_host(target: &str) -> Option<&str> {
    let i = target.find("://")?;
    let after = &target[i + 3..];
    let end = after.find(['/', '?']).unwrap_or(after.len());
    Some(&after[..end]).filter(|h| !h.is_empty())
}

/// Replaces the secrets found inside a text (a body, an MSNP line in a gateway body):
/// XML elements and attributes that hold passwords, tickets and proof keys, Passport
/// `pwd=` fields, `from-PP='...'`, and `t=...&p=...` tickets. Returns how many were replaced.
pub fn redact_text(text: &mut Vec<u8>) -> usize {
    let mut n = 0;
    for tag in SECRET_ELEMENTS {
        n += redact_elements(text, tag.as_bytes());
    }
    for attr in SECRET_ATTRS {
        n += redact_after(text, attr.as_bytes(), |c| c == b'"' || c == b'\'');
    }
    for name in SECRET_LINES {
        n += redact_after(text, name.as_bytes(), |c| c == b'\r' || c == b'\n');
    }
    n += redact_after(text, b"pwd=", |c| {
        matches!(c, b',' | b'&' | b'\r' | b'\n' | b' ')
    });
    n += redact_after(text, b"from-PP='", |c| c == b'\'');
    n += redact_tickets(text);
    n
}

/// Local names of XML elements whose text is a secret.
const SECRET_ELEMENTS: &[&str] = &[
    "Password",
    "BinarySecret",
    "BinarySecurityToken",
    "TicketToken",
    "PassportCookie",
    "Ticket",
    "t",
    "p",
    "MSPAuth",
    "MSPProf",
    "Token",
];

/// MIME header lines whose value is a secret (the NS's profile message carries MSPAuth;
/// MSNFTP invitations carry AuthCookie).
const SECRET_LINES: &[&str] = &["MSPAuth:", "MSPProf:", "AuthCookie:"];

/// Attributes (with their opening quote) whose value is a secret.
const SECRET_ATTRS: &[&str] = &["passport=\"", "passport='", "lockkey=\"", "lockkey='"];

/// Replaces the content of every `<[prefix:]tag ...>content</...>` by [`REDACTED`].
fn redact_elements(text: &mut Vec<u8>, tag: &[u8]) -> usize {
    let mut n = 0;
    let mut from = 0;
    while let Some(rel) = find(&text[from..], b"<") {
        let lt = from + rel;
        let mut i = lt + 1;
        if text.get(i) == Some(&b'/') {
            from = i;
            continue;
        }
        // Skip an optional namespace prefix.
        let name_start = i;
        while i < text.len()
            && (text[i].is_ascii_alphanumeric() || matches!(text[i], b'_' | b'-' | b'.'))
        {
            i += 1;
        }
        let local = if text.get(i) == Some(&b':') {
            let s = i + 1;
            i += 1;
            while i < text.len()
                && (text[i].is_ascii_alphanumeric() || matches!(text[i], b'_' | b'-' | b'.'))
            {
                i += 1;
            }
            s
        } else {
            name_start
        };
        if &text[local..i] != tag
            || !matches!(
                text.get(i),
                Some(b'>' | b' ' | b'\t' | b'\r' | b'\n' | b'/')
            )
        {
            from = lt + 1;
            continue;
        }
        let Some(gt_rel) = find(&text[i..], b">") else {
            break;
        };
        let gt = i + gt_rel;
        if text[gt - 1] == b'/' {
            from = gt;
            continue;
        }
        let content = gt + 1;
        let Some(end_rel) = find(&text[content..], b"</") else {
            break;
        };
        let end = content + end_rel;
        let body = &text[content..end];
        if end > content && body != REDACTED.as_bytes() && !body.contains(&b'<') {
            text.splice(content..end, REDACTED.bytes());
            n += 1;
            from = content + REDACTED.len();
        } else {
            // Nested elements (PassportCookie holds <t> and <p>): their own pass handles them.
            from = content;
        }
    }
    n
}

/// Replaces what follows each `marker` up to a byte `stop` accepts (or the end).
fn redact_after(text: &mut Vec<u8>, marker: &[u8], stop: impl Fn(u8) -> bool) -> usize {
    let mut n = 0;
    let mut from = 0;
    while let Some(rel) = find_ci(&text[from..], marker) {
        let mut start = from + rel + marker.len();
        if marker.ends_with(b":") {
            while matches!(text.get(start), Some(b' ' | b'\t')) {
                start += 1;
            }
        }
        let end = text[start..]
            .iter()
            .position(|&c| stop(c))
            .map_or(text.len(), |p| start + p);
        if end > start && &text[start..end] != REDACTED.as_bytes() {
            text.splice(start..end, REDACTED.bytes());
            n += 1;
            from = start + REDACTED.len();
        } else {
            from = end.max(start);
        }
    }
    n
}

/// `t=...&p=...` (also `&amp;p=`): the value of `t=` and of `p=` after it.
fn redact_tickets(text: &mut Vec<u8>) -> usize {
    let mut n = 0;
    let mut from = 0;
    let stop = |c: u8| {
        matches!(
            c,
            b'&' | b'<' | b'"' | b'\'' | b' ' | b'\r' | b'\n' | b',' | b';'
        )
    };
    while let Some(rel) = find(&text[from..], b"t=") {
        let at = from + rel;
        let boundary = at == 0 || !text[at - 1].is_ascii_alphanumeric();
        let start = at + 2;
        if !boundary {
            from = start;
            continue;
        }
        let end = text[start..]
            .iter()
            .position(|&c| stop(c))
            .map_or(text.len(), |p| start + p);
        // A ticket is followed by its p= part; a lone `t=` word elsewhere is left alone.
        let rest = &text[end..];
        let p_at = if rest.starts_with(b"&p=") {
            Some(end + 3)
        } else if rest.starts_with(b"&amp;p=") {
            Some(end + 7)
        } else {
            None
        };
        let Some(p_start) = p_at else {
            from = start;
            continue;
        };
        let p_end = text[p_start..]
            .iter()
            .position(|&c| stop(c))
            .map_or(text.len(), |p| p_start + p);
        let mut next = p_end;
        if p_end > p_start && &text[p_start..p_end] != REDACTED.as_bytes() {
            text.splice(p_start..p_end, REDACTED.bytes());
            next = p_start + REDACTED.len();
            n += 1;
        }
        if end > start && &text[start..end] != REDACTED.as_bytes() {
            text.splice(start..end, REDACTED.bytes());
            let shift = REDACTED.len() as isize - (end - start) as isize;
            next = (next as isize + shift) as usize;
            n += 1;
        }
        from = next;
    }
    n
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(s: &str) -> (String, usize) {
        let mut v = s.as_bytes().to_vec();
        let n = redact_text(&mut v);
        (String::from_utf8(v).unwrap(), n)
    }

    #[test]
    fn secret_debug_hides_value() {
        let s = Secret::new("password1".to_string());
        assert!(!format!("{s:?}").contains("password1"));
        let mut s = s;
        s.redact();
        assert_eq!(s.expose(), REDACTED);
    }

    #[test]
    fn redacts_xml_secrets() {
        let (t, n) = red("<wsse:Password>hunter2</wsse:Password><wst:BinarySecret>QUJD</wst:BinarySecret><Other>x</Other>");
        assert_eq!(n, 2);
        assert!(!t.contains("hunter2") && !t.contains("QUJD") && t.contains("<Other>x</Other>"));
        let (t, _) = red("<PassportCookie><t>TT</t><p>PP</p></PassportCookie>");
        assert_eq!(
            t,
            "<PassportCookie><t><redacted></t><p><redacted></p></PassportCookie>"
        );
        let (t, _) = red(r#"<Ticket passport="t=abc&amp;p=def" appid="X" lockkey="KK"/>"#);
        assert!(
            !t.contains("abc") && !t.contains("def") && !t.contains("KK"),
            "{t}"
        );
        assert!(t.contains("appid=\"X\""));
    }

    #[test]
    fn redacts_passport_fields_and_tickets() {
        let (t, _) = red("Passport1.4 OrgVerb=GET,sign-in=a%40b.c,pwd=pass%2Cword,ct=1");
        assert_eq!(
            t,
            "Passport1.4 OrgVerb=GET,sign-in=a%40b.c,pwd=<redacted>,ct=1"
        );
        let (t, _) = red("da-status=success,from-PP='t=AAA&p=BBB',x=1");
        assert!(!t.contains("AAA") && !t.contains("BBB"));
        let (t, n) = red("USR 4 TWN S t=T1xx&p=P2yy\r\nCHG 5 NLN 0\r\n");
        assert_eq!(
            t,
            "USR 4 TWN S t=<redacted>&p=<redacted>\r\nCHG 5 NLN 0\r\n"
        );
        assert_eq!(n, 2);
        // A `t=` that is not a ticket is kept.
        let (t, n) = red("format=1 t=3 ");
        assert_eq!((t.as_str(), n), ("format=1 t=3 ", 0));
        let (t, _) = red("sid: 507\r\nMSPAuth: 7fB2Y6+H31s==\r\nClientIP: 1\r\n");
        assert_eq!(t, "sid: 507\r\nMSPAuth: <redacted>\r\nClientIP: 1\r\n");
        // Idempotent.
        let (t2, n2) = red(&t);
        assert_eq!((t2, n2), (t, 0));
    }

    #[test]
    fn targets() {
        let t = "http://gateway.messenger.hotmail.com/gateway/gateway.dll?Action=open&Server=NS&IP=messenger.hotmail.com";
        assert_eq!(target_path(t), "/gateway/gateway.dll");
        assert_eq!(target_host(t), Some("gateway.messenger.hotmail.com"));
        let q = query_params(t);
        assert_eq!(q[0], ("Action".into(), "open".into()));
        assert_eq!(q[2], ("IP".into(), "messenger.hotmail.com".into()));
        assert_eq!(target_path("/rdr/pprdr.asp"), "/rdr/pprdr.asp");
        assert_eq!(percent_decode("a%40b%2"), "a@b%2");
        assert_eq!(percent_decode("%"), "%");
    }

    #[test]
    fn bytes_roundtrip() {
        for b in [b"hello".to_vec(), vec![0xff, 0, 1]] {
            let j = serde_json::to_string(&Bytes(b.clone())).unwrap();
            let back: Bytes = serde_json::from_str(&j).unwrap();
            assert_eq!(back.0, b);
        }
        let h = Header::new("Authorization", "Passport1.4 pwd=x");
        let j = serde_json::to_string(&h).unwrap();
        assert_eq!(
            j,
            r#"{"name":"Authorization","value":{"secret":"Passport1.4 pwd=x"}}"#
        );
        let back: Header = serde_json::from_str(&j).unwrap();
        assert_eq!(back, h);
    }

    proptest::proptest! {
        #[test]
        fn redaction_never_panics_and_is_idempotent(v in proptest::collection::vec(proptest::sample::select(b"<>/:=&'\" tpPassword;amp\r\nTicket".to_vec()), 0..200)) {
            let mut a = v.clone();
            redact_text(&mut a);
            let mut b = a.clone();
            redact_text(&mut b);
            proptest::prop_assert_eq!(a, b);
        }

        #[test]
        fn text_helpers_never_panic(s in "\\PC{0,80}") {
            let _ = percent_decode(&s);
            let _ = query_params(&s);
            let _ = target_path(&s);
            let _ = target_host(&s);
            let _ = passport::parse_fields(&s);
            let _ = passport::parse_credentials(&format!("Passport1.4 {s}"));
            let _ = gateway::MessengerHeader::parse(&s);
            let _ = soap::parse(s.as_bytes(), &s, Some(&s));
        }
    }
}
