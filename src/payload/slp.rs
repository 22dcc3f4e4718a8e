//! MSNSLP, the SIP-like text carried in P2P session 0: start line, headers and the
//! `Key: value` body, with the Context decoded (MSNObject or file-transfer context).
//! It decodes one complete SLP message; it never reassembles P2P chunks.

use serde_json::{json, Map, Value};

use super::{b64, msnobj, unb64};

/// EUF-GUID of file transfers (protocol-facts F.4).
pub const EUF_FILE: &str = "{5D3E02AB-6190-11D3-BBBB-00C04F795683}";
/// EUF-GUID of MSNObject transfers (display pictures, emoticons).
pub const EUF_MSNOBJ: &str = "{A4268EEC-FEC5-49E5-95C3-F126696BDBF6}";

/// What an EUF-GUID asks for.
pub fn application(euf: &str) -> &'static str {
    match euf.trim().to_ascii_uppercase().as_str() {
        EUF_FILE => "file_transfer",
        EUF_MSNOBJ => "msnobj",
        "{41D3E74E-04A2-4B37-96F8-08ACDB610874}" => "photo_share",
        "{6A13AF9C-5308-4F35-923A-67E8DDA40C2F}" => "activity",
        _ => "unknown",
    }
}

/// Largest preview kept (as base64) from a file-transfer context.
const MAX_PREVIEW: usize = 256 * 1024;
/// Fixed part of the file-transfer context: u32 header length, u32 version, u64 file size,
/// u32 type, then the file name as 260 UTF-16LE units.
const FT_NAME_AT: usize = 20;
const FT_NAME_UNITS: usize = 260;

/// Decodes the binary context of a file-transfer INVITE.
pub fn file_context(b: &[u8]) -> Result<Value, String> {
    if b.len() < FT_NAME_AT {
        return Err(format!(
            "file-transfer context of {} bytes is shorter than its 20-byte start",
            b.len()
        ));
    }
    let le32 = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let header_len = le32(0) as usize;
    let version = le32(4);
    let mut sz = [0u8; 8];
    sz.copy_from_slice(&b[8..16]);
    let size = u64::from_le_bytes(sz);
    let ty = le32(16);
    let name_end = (FT_NAME_AT + FT_NAME_UNITS * 2).min(b.len());
    let units: Vec<u16> = b[FT_NAME_AT..name_end]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let name = String::from_utf16_lossy(&units);
    let mut o = Map::new();
    o.insert("header_length".into(), json!(header_len));
    o.insert("version".into(), json!(version));
    o.insert("file_size".into(), json!(size));
    o.insert("type".into(), json!(ty));
    o.insert("file_name".into(), json!(name));
    if header_len >= FT_NAME_AT && header_len < b.len() {
        let preview = &b[header_len..];
        o.insert("preview_length".into(), json!(preview.len()));
        if preview.len() <= MAX_PREVIEW {
            o.insert("preview_base64".into(), json!(b64(preview)));
        }
    } else {
        o.insert("preview_length".into(), json!(0));
    }
    Ok(Value::Object(o))
}

/// `<msnmsgr:alice@example.com;{guid}>` -> (`alice@example.com`, Some(`{guid}`)).
pub fn address(v: &str) -> (String, Option<String>) {
    let v = v.trim().trim_start_matches('<').trim_end_matches('>');
    let v = v
        .strip_prefix("msnmsgr:")
        .or_else(|| v.strip_prefix("MSNMSGR:"))
        .unwrap_or(v);
    match v.split_once(';') {
        Some((h, g)) => (h.to_string(), Some(g.to_string())),
        None => (v.to_string(), None),
    }
}

/// Parses one whole SLP message (NUL terminator and all).
pub fn parse(data: &[u8]) -> Result<Value, String> {
    let text = String::from_utf8_lossy(data);
    let text = text.trim_end_matches('\0');
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (&text[..i], &text[i + 4..]),
        None => match text.find("\n\n") {
            Some(i) => (&text[..i], &text[i + 2..]),
            None => (text, ""),
        },
    };
    let mut lines = head.lines();
    let start = lines.next().unwrap_or("").trim_end();
    let mut o = Map::new();
    o.insert("start_line".into(), json!(start));
    let parts: Vec<&str> = start.splitn(3, ' ').collect();
    if parts.first().is_some_and(|p| p.starts_with("MSNSLP/")) {
        let code = parts.get(1).and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else {
            return Err(format!("SLP status line without a code: {start:?}"));
        };
        o.insert("status".into(), json!(code));
        o.insert("reason".into(), json!(parts.get(2).unwrap_or(&"")));
        let kind = match code {
            200 => "ok",
            603 => "decline",
            _ => "error",
        };
        o.insert("kind".into(), json!(kind));
    } else if parts.len() == 3 && parts[2].starts_with("MSNSLP/") {
        o.insert("method".into(), json!(parts[0]));
        o.insert("uri".into(), json!(parts[1]));
        let kind = match parts[0] {
            "INVITE" => "invite",
            "BYE" => "bye",
            "ACK" => "ack",
            _ => "other",
        };
        o.insert("kind".into(), json!(kind));
    } else {
        return Err(format!(
            "not an MSNSLP start line: {}",
            crate::event::preview(start.as_bytes(), 60)
        ));
    }
    let mut headers = Vec::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            headers.push(json!([k, v]));
            match k.to_ascii_lowercase().as_str() {
                "to" | "from" => {
                    let (h, g) = address(v);
                    let key = k.to_ascii_lowercase();
                    o.insert(key.clone(), json!(h));
                    if let Some(g) = g {
                        o.insert(format!("{key}_endpoint"), json!(g));
                    }
                }
                "call-id" => {
                    o.insert("call_id".into(), json!(v));
                }
                "cseq" => {
                    o.insert("cseq".into(), json!(v.parse::<u64>().ok()));
                }
                "content-type" => {
                    o.insert("content_type".into(), json!(v));
                }
                "content-length" => {
                    o.insert("content_length".into(), json!(v.parse::<u64>().ok()));
                }
                "via" => {
                    if let Some(b) = v.split(';').find_map(|p| p.trim().strip_prefix("branch=")) {
                        o.insert("branch".into(), json!(b));
                    }
                }
                _ => {}
            }
        }
    }
    o.insert("headers".into(), Value::Array(headers));
    let mut kv = Map::new();
    for l in body.lines() {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim();
            if !k.is_empty() && !k.contains(' ') {
                kv.insert(k.to_string(), json!(v.trim()));
            }
        }
    }
    let get = |k: &str| kv.get(k).and_then(Value::as_str);
    if let Some(s) = get("SessionID").and_then(|s| s.parse::<u32>().ok()) {
        o.insert("session_id".into(), json!(s));
    }
    if let Some(a) = get("AppID").and_then(|s| s.parse::<u32>().ok()) {
        o.insert("app_id".into(), json!(a));
    }
    let app = get("EUF-GUID").map(application);
    if let Some(g) = get("EUF-GUID") {
        o.insert("euf_guid".into(), json!(g));
        o.insert("application".into(), json!(application(g)));
    }
    if let Some(c) = get("Context") {
        let ctx = match unb64(c) {
            None => json!({"problem": "Context is not base64", "raw": c}),
            Some(bytes) => match app {
                Some("file_transfer") => {
                    file_context(&bytes).unwrap_or_else(|e| json!({"problem": e}))
                }
                _ => {
                    let t = String::from_utf8_lossy(&bytes);
                    match msnobj::parse(&t) {
                        Some(m) => json!({"msnobj": m}),
                        None if app == Some("msnobj") => {
                            json!({"problem": "Context is not an MSNObject", "text": t.trim_end_matches('\0')})
                        }
                        None => json!({"base64": c, "length": bytes.len()}),
                    }
                }
            },
        };
        o.insert("context".into(), ctx);
    }
    o.insert("body".into(), Value::Object(kv));
    Ok(Value::Object(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The INVITE from the msnp11-sdk capture (checked against its client log).
    const INVITE: &str = "INVITE MSNMSGR:bob@example.com MSNSLP/1.0\r\nTo: <msnmsgr:bob@example.com>\r\nFrom: <msnmsgr:alice@example.com>\r\nVia: MSNSLP/1.0/TLP ;branch={D74787D8-84AA-4FE0-C438-C10B15BA282B}\r\nCSeq: 0 \r\nCall-ID: {835AF7C1-A21D-A397-A29D-81BF608A4DA8}\r\nMax-Forwards: 0\r\nContent-Type: application/x-msnmsgr-sessionreqbody\r\nContent-Length: 337\r\n\r\nEUF-GUID: {A4268EEC-FEC5-49E5-95C3-F126696BDBF6}\r\nSessionID: 2328520848\r\nAppID: 1\r\nContext: PG1zbm9iaiBDcmVhdG9yPSJib2JAZXhhbXBsZS5jb20iIFNpemU9IjcwIiBUeXBlPSIzIiBMb2NhdGlvbj0iUElDLnRtcCIgRnJpZW5kbHk9IkFBQT0iIFNIQTFEPSJtWlB0SFNlQi9hL1lkZ09PYStDaEZpMDNlK0U9IiBTSEExQz0iclhkOWhDUk1uK0c5dVRadHcvVDVSSFFCRHQ0PSIgY29udGVudHR5cGU9IiIvPgA=\r\n\r\n\0";

    #[test]
    fn invite_with_msnobj_context() {
        let v = parse(INVITE.as_bytes()).unwrap();
        assert_eq!(v["kind"], "invite");
        assert_eq!(v["method"], "INVITE");
        assert_eq!(v["to"], "bob@example.com");
        assert_eq!(v["from"], "alice@example.com");
        assert_eq!(v["call_id"], "{835AF7C1-A21D-A397-A29D-81BF608A4DA8}");
        assert_eq!(v["branch"], "{D74787D8-84AA-4FE0-C438-C10B15BA282B}");
        assert_eq!(v["session_id"], 2328520848u32);
        assert_eq!(v["app_id"], 1);
        assert_eq!(v["application"], "msnobj");
        assert_eq!(
            v["context"]["msnobj"]["SHA1D"],
            "mZPtHSeB/a/YdgOOa+ChFi03e+E="
        );
        assert_eq!(v["context"]["msnobj"]["Size"], "70");
    }

    #[test]
    fn status_lines_and_v2_addresses() {
        let ok = "MSNSLP/1.0 200 OK\r\nTo: <msnmsgr:alice@example.com;{11111111-2222-3333-4444-555555555555}>\r\nFrom: <msnmsgr:bob@example.com>\r\nCall-ID: {X}\r\n\r\nSessionID: 5\r\n\r\n\0";
        let v = parse(ok.as_bytes()).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["kind"], "ok");
        assert_eq!(v["to"], "alice@example.com");
        assert_eq!(v["to_endpoint"], "{11111111-2222-3333-4444-555555555555}");
        assert_eq!(v["session_id"], 5);
        let no = "MSNSLP/1.0 603 Decline\r\nCall-ID: {X}\r\n\r\n\0";
        let v = parse(no.as_bytes()).unwrap();
        assert_eq!(v["kind"], "decline");
        assert_eq!(v["reason"], "Decline");
        assert!(parse(b"hello world").is_err());
        assert!(parse(b"MSNSLP/1.0 abc").is_err());
        assert_eq!(
            parse(b"ACK MSNMSGR:x MSNSLP/1.0\r\n\r\n").unwrap()["kind"],
            "ack"
        );
    }

    #[test]
    fn file_context_layout() {
        // Built by hand: header length 574, version 2, size 123456, type 1 (no preview),
        // name "a/b.txt" in UTF-16LE, then 3 preview bytes after the header.
        let mut c = vec![0u8; 574];
        c[0..4].copy_from_slice(&574u32.to_le_bytes());
        c[4..8].copy_from_slice(&2u32.to_le_bytes());
        c[8..16].copy_from_slice(&123456u64.to_le_bytes());
        c[16..20].copy_from_slice(&1u32.to_le_bytes());
        for (i, ch) in "a/b.txt".encode_utf16().enumerate() {
            c[20 + 2 * i..22 + 2 * i].copy_from_slice(&ch.to_le_bytes());
        }
        c.extend_from_slice(b"PNG");
        let v = file_context(&c).unwrap();
        assert_eq!(v["file_size"], 123456);
        assert_eq!(v["file_name"], "a/b.txt");
        assert_eq!(v["preview_length"], 3);
        assert_eq!(v["preview_base64"], "UE5H");
        assert!(file_context(&c[..10]).is_err());
        // A short context (name cut off) is still decoded as far as it goes.
        assert_eq!(file_context(&c[..26]).unwrap()["file_name"], "a/b");
    }
}
