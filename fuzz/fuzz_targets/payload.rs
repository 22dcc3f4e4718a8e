//! Fuzz target: the payload decoders one by one (MIME, multipart, XML element, P2P with
//! and without hints, SLP, the file context, MsnObject, the dispatching `payload::decode`).
//! The first byte picks the decoder and a version; whatever is decoded must serialize and
//! survive redaction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msntap::payload::{self, mime, msnobj, p2p, slp, xml, Kind};
use msntap::secret::Redact;

fn json<T: serde::Serialize>(v: &T) {
    serde_json::to_string(v).expect("decoded payloads serialize");
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let version = match sel >> 4 {
        0 => None,
        v => Some(v + 5),
    };
    match sel & 15 {
        0 => {
            if let Ok(mut m) = mime::decode(body, version) {
                json(&m);
                m.redact();
                json(&m.into_owned());
            }
        }
        1 => {
            if let Ok(mut m) = mime::decode_multipart(body, version) {
                json(&m);
                m.redact();
                json(&m.into_owned());
            }
        }
        2 => {
            if let Ok(t) = std::str::from_utf8(body) {
                if let Ok(mut e) = xml::parse(t) {
                    let _ = e.walk();
                    json(&e);
                    e.redact();
                    json(&e.into_owned());
                }
            }
        }
        3 | 4 => {
            // The hint's headers come from the body's first line when there is one.
            let (hint_text, rest) = match body.iter().position(|&b| b == b'\n') {
                Some(i) if sel & 15 == 4 => (&body[..i], &body[i + 1..]),
                _ => (&b""[..], body),
            };
            let hint_text = std::str::from_utf8(hint_text).unwrap_or("");
            let (dest, src) = hint_text.split_once('|').unwrap_or((hint_text, ""));
            let hint = p2p::Hint {
                version,
                dest: (!dest.is_empty()).then_some(dest),
                src: (!src.is_empty()).then_some(src),
            };
            let _ = p2p::choose_layout(rest, &hint);
            let mut p = p2p::decode(rest, hint);
            json(&p);
            p.redact();
            json(&p.into_owned());
        }
        5 => {
            if let Ok(mut s) = slp::parse(body) {
                json(&s);
                s.redact();
                json(&s.into_owned());
            }
        }
        6 => {
            if let Ok(c) = slp::file_context(body) {
                json(&c);
            }
        }
        7 => {
            if let Ok(t) = std::str::from_utf8(body) {
                if let Some(o) = msnobj::parse(t) {
                    let _ = (o.creator(), o.sha1d(), o.size(), o.kind(), o.location());
                    json(&o);
                    json(&o.into_owned());
                }
            }
        }
        k => {
            let kind = match k {
                8 => None,
                9 => Some(Kind::Mime),
                10 => Some(Kind::Xml),
                11 => Some(Kind::Text),
                12 => Some(Kind::Binary),
                13 => Some(Kind::Multipart),
                _ => Some(Kind::Skipped),
            };
            let mut p = payload::decode(kind, body, version);
            let _ = (
                p.content(),
                p.content_type(),
                p.xml(),
                p.mime(),
                p.multipart(),
            );
            json(&p);
            p.redact();
            json(&p.into_owned());
        }
    }
});
