//! MIME-style messages (MSG bodies) and the multipart routing blocks of SDG/PUT/NFY.
//! Decodes headers in order, the body, and the typed content the MSN clients exchange.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use super::{body_value, msnobj, p2p, urldecode, xml};
use crate::protocol::tables::Tables;

/// True when `b` starts like `Name: value` header lines.
pub fn looks_like_headers(b: &[u8]) -> bool {
    let line = match b.iter().position(|&c| c == b'\n') {
        Some(i) => &b[..i],
        None => b,
    };
    match line.iter().position(|&c| c == b':') {
        Some(i) => {
            i > 0
                && line[..i]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        }
        None => false,
    }
}

/// Splits a header block off `b`: returns (headers, rest after the blank line).
/// Without a blank line the whole input is headers. Names and values borrow from `b`
/// when it is UTF-8; only folded lines and invalid bytes make owned strings.
type Headers<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

fn split_headers(b: &[u8]) -> Result<(Headers<'_>, &[u8], bool), String> {
    let mut headers: Headers<'_> = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let (line, next) = match b[pos..].iter().position(|&c| c == b'\n') {
            Some(i) => (&b[pos..pos + i], pos + i + 1),
            None => (&b[pos..], b.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok((headers, &b[next..], true));
        }
        let text = super::lossy(line);
        let split = text
            .split_once(':')
            .filter(|(k, _)| !k.is_empty() && !k.contains(' '))
            .map(|(k, v)| (k.len(), k.len() + 1 + (v.len() - v.trim_start().len())));
        match (split, &text) {
            (Some((k_end, v_start)), Cow::Borrowed(t)) => {
                headers.push((Cow::Borrowed(&t[..k_end]), Cow::Borrowed(&t[v_start..])));
            }
            (Some((k_end, v_start)), Cow::Owned(t)) => {
                headers.push((
                    Cow::Owned(t[..k_end].to_string()),
                    Cow::Owned(t[v_start..].to_string()),
                ));
            }
            (None, _) => {
                if headers.is_empty() {
                    return Err(format!(
                        "not a MIME header line: {:?}",
                        crate::event::preview(line, 40)
                    ));
                }
                // A folded or stray line: keep it attached to the previous header.
                if let Some(last) = headers.last_mut() {
                    let v = last.1.to_mut();
                    v.push('\n');
                    v.push_str(&text);
                }
            }
        }
        pos = next;
    }
    Ok((headers, &b[b.len()..], false))
}

fn header<'a>(h: &'a Headers<'_>, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

fn headers_value(h: &Headers<'_>) -> Value {
    Value::Array(
        h.iter()
            .map(|(k, v)| Value::Array(vec![Value::from(k.as_ref()), Value::from(v.as_ref())]))
            .collect(),
    )
}

/// `Key: value` lines of a body (invitations, mail notifications, datacasts).
fn kv_body(b: &[u8]) -> Map<String, Value> {
    let mut m = Map::new();
    for line in super::lossy(b).split('\n') {
        let line = line.trim_end_matches('\r');
        if let Some((k, v)) = line.split_once(':') {
            if !k.is_empty() && !k.contains(' ') {
                m.insert(k.to_string(), json!(v.trim_start()));
            }
        }
    }
    m
}

/// Decodes an MSG-style MIME payload.
pub fn decode(b: &[u8], tables: &Tables, version: Option<u8>) -> Result<Value, String> {
    let (headers, body, _) = split_headers(b)?;
    let mut o = Map::new();
    let (ct, charset) = split_ct(header(&headers, "Content-Type").unwrap_or(""));
    o.insert("headers".into(), headers_value(&headers));
    o.insert("content_type".into(), json!(ct));
    if let Some(cs) = charset {
        o.insert("charset".into(), json!(cs));
    }
    typed(
        &mut o,
        &ct,
        &headers,
        body,
        b.len() - body.len(),
        tables,
        version,
    );
    Ok(Value::Object(o))
}

/// The lower-cased media type of a Content-Type value and its `charset` parameter.
fn split_ct(ct: &str) -> (String, Option<&str>) {
    let mut parts = ct.split(';');
    let main = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"'));
    (main, charset)
}

/// `body_offset` is where `body` starts in the whole payload (the extractor slices the
/// P2P data out of the frame with it).
fn typed(
    o: &mut Map<String, Value>,
    ct: &str,
    headers: &Headers<'_>,
    body: &[u8],
    body_offset: usize,
    tables: &Tables,
    version: Option<u8>,
) {
    match ct {
        "application/x-msnmsgrp2p" => {
            let hint = p2p::Hint {
                version,
                dest: header(headers, "P2P-Dest"),
                src: header(headers, "P2P-Src"),
            };
            o.insert("p2p".into(), p2p::decode(body, hint));
            o.insert("body_length".into(), json!(body.len()));
            o.insert("body_offset".into(), json!(body_offset));
            // Kept so that JSON Lines alone are enough to extract objects later.
            o.insert("body".into(), json!({ "base64": super::b64(body) }));
            return;
        }
        "text/plain" => {
            if let Some(f) = header(headers, "X-MMS-IM-Format") {
                o.insert("format".into(), im_format(f));
            }
        }
        "text/x-msmsgscontrol" => {
            if let Some(u) = header(headers, "TypingUser") {
                o.insert("typing_user".into(), json!(u));
            }
        }
        "text/x-msnmsgr-datacast" => {
            let kv = kv_body(body);
            let id = kv
                .get("ID")
                .and_then(Value::as_str)
                .and_then(|s| s.trim().parse::<u32>().ok());
            let name = match id {
                Some(1) => "nudge",
                Some(2) => "wink",
                Some(3) => "voice_clip",
                Some(4) => "action_message",
                _ => "unknown",
            };
            let mut d = json!({"id": id, "name": name, "fields": kv});
            if let Some(obj) = d["fields"]["Data"].as_str().and_then(msnobj::parse) {
                d["msnobj"] = obj;
            }
            o.insert("datacast".into(), d);
        }
        "text/x-mms-emoticon" | "text/x-mms-animemoticon" => {
            let text = String::from_utf8_lossy(body);
            let parts: Vec<&str> = text.split('\t').collect();
            let list: Vec<Value> = parts
                .chunks(2)
                .filter(|c| c.len() == 2 && !c[0].trim().is_empty())
                .map(|c| json!({"shortcut": c[0].trim_start_matches(['\r','\n']), "msnobj": msnobj::parse(c[1]).unwrap_or_else(|| json!(c[1]))}))
                .collect();
            o.insert("emoticons".into(), Value::Array(list));
        }
        "text/x-msmsgsinvite"
        | "text/x-msmsgsemailnotification"
        | "text/x-msmsgsactivemailnotification"
        | "text/x-msmsgsinitialemailnotification"
        | "application/x-msmsgsemailnotification"
        | "application/x-msmsgssystemmessage"
        | "text/x-msmsgsoimnotification"
        | "text/x-msmsgsinitialmdatanotification" => {
            let kv = kv_body(body);
            if ct == "text/x-msmsgsinvite" {
                o.insert("invite".into(), Value::Object(kv.clone()));
                o.insert("msnftp".into(), msnftp(&kv));
            }
            if let Some(md) = kv.get("Mail-Data").and_then(Value::as_str) {
                if let Ok(x) = xml::parse(md) {
                    o.insert("mail_data".into(), x);
                }
            }
            o.insert("fields".into(), Value::Object(kv));
        }
        "text/x-msmsgsprofile" => {
            if let Some(p) =
                header(headers, "ClientPort").and_then(|p| p.trim().parse::<u32>().ok())
            {
                // The profile's ClientPort is byte-swapped (msnp-wiki versions/msnp8.md).
                o.insert(
                    "client_port".into(),
                    json!(((p & 0xff) << 8) | ((p & 0xff00) >> 8)),
                );
            }
        }
        _ => {}
    }
    if ct.ends_with("xml") && body.trim_ascii_start().starts_with(b"<") {
        if let Ok(x) = std::str::from_utf8(body)
            .map_err(|e| e.to_string())
            .and_then(|t| xml::parse(t).map_err(|e| e.to_string()))
        {
            o.insert("xml".into(), x);
        }
    }
    let _ = tables;
    o.insert("body".into(), body_value(body));
}

/// Application-GUID of MSNFTP file transfers (the same GUID as the P2P file EUF-GUID).
const MSNFTP_GUID: &str = "{5D3E02AB-6190-11D3-BBBB-00C04F795683}";

/// The structured view of a text/x-msmsgsinvite body (MSNFTP and other invitation apps):
/// what is offered, and where and with which cookie the direct connection is made.
fn msnftp(kv: &Map<String, Value>) -> Value {
    let get = |k: &str| kv.get(k).and_then(Value::as_str).map(str::trim);
    let mut o = Map::new();
    let mut put = |name: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(name.to_string(), v);
        }
    };
    let num = |k: &str| get(k).and_then(|s| s.parse::<u64>().ok()).map(|n| json!(n));
    let text = |k: &str| get(k).map(|s| json!(s));
    put(
        "command",
        get("Invitation-Command").map(|c| json!(c.to_ascii_uppercase())),
    );
    put(
        "cookie",
        num("Invitation-Cookie").or_else(|| text("Invitation-Cookie")),
    );
    put("application_name", text("Application-Name"));
    put("application_guid", text("Application-GUID"));
    let is_ft = get("Application-GUID").is_some_and(|g| g.eq_ignore_ascii_case(MSNFTP_GUID))
        || get("Application-Name")
            .is_some_and(|n| n.to_ascii_lowercase().contains("file transfer"));
    // ACCEPT and CANCEL do not repeat the application; the INVITE with the same cookie names it.
    let named = get("Application-GUID").is_some() || get("Application-Name").is_some();
    put(
        "application",
        (is_ft || named).then(|| json!(if is_ft { "file_transfer" } else { "other" })),
    );
    put("file_name", text("Application-File"));
    put("file_size", num("Application-FileSize"));
    put("connectivity", text("Connectivity"));
    put("session_id", text("Session-ID"));
    put("cancel_code", text("Cancel-Code"));
    put("request_data", text("Request-Data"));
    let port = get("Port").and_then(|p| p.parse::<u16>().ok());
    if let Some(ip) = get("IP-Address") {
        let addr = match port {
            Some(p) => format!("{ip}:{p}"),
            None => ip.to_string(),
        };
        put("address", Some(json!(addr)));
    }
    put("port", port.map(|p| json!(p)));
    put("port_x", num("PortX"));
    if let Some(ip) = get("IP-Address-Internal") {
        let addr = match get("PortX-Internal").and_then(|p| p.parse::<u16>().ok()) {
            Some(p) => format!("{ip}:{p}"),
            None => ip.to_string(),
        };
        put("internal_address", Some(json!(addr)));
    }
    put("sender_connect", text("Sender-Connect"));
    put("auth_cookie", text("AuthCookie"));
    Value::Object(o)
}

/// X-MMS-IM-Format: `FN=Arial; EF=BI; CO=ff; CS=0; PF=22`.
pub fn im_format(f: &str) -> Value {
    let mut o = Map::new();
    for part in f.split(';') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k.trim() {
            "FN" => {
                o.insert("font".into(), json!(urldecode(v)));
            }
            "EF" => {
                let names: Vec<&str> = v
                    .chars()
                    .filter_map(|c| match c {
                        'B' => Some("bold"),
                        'I' => Some("italic"),
                        'U' => Some("underline"),
                        'S' => Some("strikethrough"),
                        _ => None,
                    })
                    .collect();
                o.insert("effects".into(), json!(names));
            }
            "CO" => {
                o.insert("color".into(), json!(bgr_to_rgb(v)));
            }
            "CS" => {
                o.insert("charset".into(), json!(u32::from_str_radix(v, 16).ok()));
            }
            "PF" => {
                o.insert("pitch_family".into(), json!(v));
            }
            "RL" => {
                o.insert("rtl".into(), json!(v == "1"));
            }
            other => {
                o.insert(other.to_string(), json!(v));
            }
        }
    }
    Value::Object(o)
}

/// The colour is a BGR hex number without leading zeros; `ff` is red.
fn bgr_to_rgb(v: &str) -> String {
    match u32::from_str_radix(v.trim(), 16) {
        Ok(n) if n <= 0xFF_FFFF => {
            let (r, g, b) = (n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff);
            format!("#{r:02x}{g:02x}{b:02x}")
        }
        _ => v.to_string(),
    }
}

/// SDG / PUT / NFY payloads: `Routing`, `Reliability` and a third header block, then a body.
pub fn decode_multipart(b: &[u8], tables: &Tables, version: Option<u8>) -> Result<Value, String> {
    let mut o = Map::new();
    let mut rest = b;
    let mut last: Headers<'_> = Vec::new();
    for _ in 0..3 {
        if rest.is_empty() || !looks_like_headers(rest) {
            break;
        }
        let (h, r, _) = split_headers(rest)?;
        let name = h
            .first()
            .map(|(k, _)| k.to_ascii_lowercase())
            .unwrap_or_default();
        o.insert(name, headers_value(&h));
        last = h;
        rest = r;
    }
    if o.is_empty() {
        return Err("not a routing/reliability/messaging block".into());
    }
    let (ct, _) = split_ct(header(&last, "Content-Type").unwrap_or(""));
    o.insert("content_type".into(), json!(ct));
    typed(
        &mut o,
        &ct,
        &last,
        rest,
        b.len() - rest.len(),
        tables,
        version,
    );
    Ok(Value::Object(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Tables {
        Tables::empty()
    }

    #[test]
    fn text_message_with_format() {
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=MS%20Sans%20Serif; EF=BI; CO=ff; CS=0; PF=22\r\n\r\nHello";
        let v = decode(m, &t(), Some(8)).unwrap();
        assert_eq!(v["content_type"], "text/plain");
        assert_eq!(v["charset"], "UTF-8");
        assert_eq!(v["body"], "Hello");
        assert_eq!(v["format"]["font"], "MS Sans Serif");
        assert_eq!(v["format"]["effects"], json!(["bold", "italic"]));
        assert_eq!(v["format"]["color"], "#ff0000");
        assert_eq!(v["headers"][0], json!(["MIME-Version", "1.0"]));
    }

    #[test]
    fn typing_and_nudge() {
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\nTypingUser: bob@example.com\r\n\r\n\r\n";
        assert_eq!(
            decode(m, &t(), None).unwrap()["typing_user"],
            "bob@example.com"
        );
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/x-msnmsgr-datacast\r\n\r\nID: 1\r\n\r\n";
        let v = decode(m, &t(), None).unwrap();
        assert_eq!(v["datacast"]["id"], 1);
        assert_eq!(v["datacast"]["name"], "nudge");
    }

    #[test]
    fn profile_port_is_swapped() {
        // 18183 = 0x4707; swapped 0x0747 = 1863.
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsprofile; charset=UTF-8\r\nClientPort: 18183\r\n\r\n";
        assert_eq!(decode(m, &t(), None).unwrap()["client_port"], 1863);
    }

    #[test]
    fn not_mime_is_an_error() {
        assert!(decode(b"\x00\x01binary", &t(), None).is_err());
    }

    #[test]
    fn msnftp_invitation_is_structured() {
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\nApplication-Name: File Transfer\r\nApplication-GUID: {5D3E02AB-6190-11D3-BBBB-00C04F795683}\r\nInvitation-Command: INVITE\r\nInvitation-Cookie: 12345\r\nApplication-File: notes.txt\r\nApplication-FileSize: 2048\r\n\r\n";
        let v = decode(m, &t(), Some(7)).unwrap();
        assert_eq!(v["msnftp"]["command"], "INVITE");
        assert_eq!(v["msnftp"]["cookie"], 12345);
        assert_eq!(v["msnftp"]["application"], "file_transfer");
        assert_eq!(v["msnftp"]["file_name"], "notes.txt");
        assert_eq!(v["msnftp"]["file_size"], 2048);
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\nInvitation-Command: ACCEPT\r\nInvitation-Cookie: 12345\r\nIP-Address: 192.0.2.7\r\nPort: 6891\r\nAuthCookie: 99887766\r\nSender-Connect: TRUE\r\n\r\n";
        let v = decode(m, &t(), Some(7)).unwrap();
        assert_eq!(v["msnftp"]["command"], "ACCEPT");
        assert!(v["msnftp"].get("application").is_none());
        assert_eq!(v["msnftp"]["address"], "192.0.2.7:6891");
        assert_eq!(v["msnftp"]["auth_cookie"], "99887766");
        assert_eq!(v["msnftp"]["sender_connect"], "TRUE");
    }

    #[test]
    fn p2p_body_is_kept_with_its_offset() {
        let mut m = b"MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: bob@example.com\r\n\r\n".to_vec();
        let head = m.len();
        m.extend_from_slice(&p2p::build::v1(9, 2, 0, 3, 0x20, b"abc", Some(1)));
        let v = decode(&m, &t(), Some(11)).unwrap();
        assert_eq!(v["body_offset"], head);
        assert_eq!(v["p2p"]["header"], "v1");
        assert_eq!(v["p2p"]["session_id"], 9);
        let body = crate::payload::unb64(v["body"]["base64"].as_str().unwrap()).unwrap();
        assert_eq!(body, &m[head..]);
    }

    #[test]
    fn multipart_blocks() {
        let m = b"Routing: 1.0\r\nTo: 1:bob@example.com\r\nFrom: 1:alice@example.com;epid={x}\r\n\r\nReliability: 1.0\r\n\r\nMessaging: 2.0\r\nMessage-Type: Text\r\nContent-Type: Text/plain; charset=UTF-8\r\nContent-Length: 2\r\n\r\nhi";
        let v = decode_multipart(m, &t(), Some(21)).unwrap();
        assert_eq!(v["routing"][1], json!(["To", "1:bob@example.com"]));
        assert_eq!(v["messaging"][1], json!(["Message-Type", "Text"]));
        assert_eq!(v["content_type"], "text/plain");
        assert_eq!(v["body"], "hi");
    }
}
