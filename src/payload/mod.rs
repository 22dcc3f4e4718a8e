//! Payload decoders: MIME messages, XML documents, P2P binary headers, MSNSLP, MSNObjects.
//! They take bytes that framing already cut out and return structured JSON values; they
//! never frame, never allocate more than a bounded multiple of their input, and never panic.

pub mod mime;
pub mod msnobj;
pub mod p2p;
pub mod slp;
pub mod xml;

use base64::Engine as _;
use serde_json::Value;

use crate::event::Payload;
use crate::protocol::tables::{PayloadKind, Tables};

/// `bytes` as text, invalid UTF-8 replaced. Valid input (nearly all of it) is borrowed after
/// the standard library's fast check; `String::from_utf8_lossy` walks it in slower chunks.
pub fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Decodes `%XX` escapes (friendly names, personal messages). Invalid escapes stay as they
/// are; bytes that do not form UTF-8 are replaced.
pub fn urldecode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
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
    String::from_utf8_lossy(&out).into_owned()
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// Guesses the kind of a payload whose command the tables do not describe.
fn sniff(body: &[u8]) -> PayloadKind {
    let t = body.trim_ascii_start();
    if t.starts_with(b"<") {
        PayloadKind::Xml
    } else if t.starts_with(b"Routing:") {
        PayloadKind::Multipart
    } else if mime::looks_like_headers(body) {
        PayloadKind::Mime
    } else if std::str::from_utf8(body).is_ok() {
        PayloadKind::Text
    } else {
        PayloadKind::Binary
    }
}

fn kind_name(k: PayloadKind) -> &'static str {
    match k {
        PayloadKind::Mime => "mime",
        PayloadKind::Xml => "xml",
        PayloadKind::Text => "text",
        PayloadKind::Binary => "binary",
        PayloadKind::Multipart => "multipart",
    }
}

/// Decodes one payload. `kind` comes from the tables; None means sniff it.
pub fn decode(
    kind: Option<PayloadKind>,
    _cmd: &str,
    body: &[u8],
    tables: &Tables,
    version: Option<u8>,
) -> Payload {
    let k = match kind {
        Some(PayloadKind::Xml)
            if !body.trim_ascii_start().starts_with(b"<") && !body.is_empty() =>
        {
            sniff(body)
        }
        Some(k) => k,
        None => sniff(body),
    };
    let mut p = Payload {
        length: body.len() as u64,
        kind: kind_name(k).into(),
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
        PayloadKind::Mime => match mime::decode(body, tables, version) {
            Ok(v) => p.decoded = Some(v),
            Err(e) => {
                p.problem = Some(e);
                set_body(&mut p, body);
            }
        },
        PayloadKind::Multipart => match mime::decode_multipart(body, tables, version) {
            Ok(v) => p.decoded = Some(v),
            Err(e) => {
                p.problem = Some(e);
                set_body(&mut p, body);
            }
        },
        PayloadKind::Xml => {
            set_body(&mut p, body);
            match std::str::from_utf8(body) {
                Ok(t) => match xml::parse(t) {
                    Ok(v) => p.decoded = Some(v),
                    Err(e) => p.problem = Some(format!("XML: {e}")),
                },
                Err(_) => p.problem = Some("XML payload is not UTF-8".into()),
            }
        }
        PayloadKind::Text | PayloadKind::Binary => set_body(&mut p, body),
    }
    p
}

fn set_body(p: &mut Payload, body: &[u8]) {
    match std::str::from_utf8(body) {
        Ok(t) => p.text = Some(t.to_string()),
        Err(_) => p.base64 = Some(b64(body)),
    }
}

/// A body as JSON: text if UTF-8, else `{ "base64": ... }`.
pub fn body_value(body: &[u8]) -> Value {
    match std::str::from_utf8(body) {
        Ok(t) => Value::String(t.to_string()),
        Err(_) => serde_json::json!({ "base64": b64(body) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urldecode_handles_utf8_and_bad_escapes() {
        assert_eq!(urldecode("another%20user"), "another user");
        assert_eq!(urldecode("caf%C3%A9"), "café");
        assert_eq!(urldecode("100%"), "100%");
        assert_eq!(urldecode("%zz%4"), "%zz%4");
        assert_eq!(urldecode("%3Cmsnobj%2F%3E"), "<msnobj/>");
    }
}
