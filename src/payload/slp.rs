//! MSNSLP, the SIP-like text carried in P2P session 0: start line, headers and the
//! `Key: value` body, with the Context decoded (MSNObject or file-transfer context).
//! It decodes one complete SLP message; it never reassembles P2P chunks.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{msnobj, owned, owned_opt, owned_pairs, unb64, Bytes, Headers, KvMap, MsnObject};
use crate::secret::Redact;

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

/// The binary context of a file-transfer INVITE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileContext {
    pub header_length: usize,
    pub version: u32,
    pub file_size: u64,
    #[serde(rename = "type")]
    pub ty: u32,
    pub file_name: String,
    pub preview_length: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_base64: Option<Bytes<'static>>,
}

/// The decoded `Context` of an INVITE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Context<'a> {
    MsnObj {
        msnobj: MsnObject<'a>,
    },
    File(FileContext),
    Problem {
        problem: Cow<'a, str>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<Cow<'a, str>>,
    },
    Raw {
        base64: Cow<'a, str>,
        length: usize,
    },
}

impl Context<'_> {
    fn into_owned(self) -> Context<'static> {
        match self {
            Context::MsnObj { msnobj } => Context::MsnObj {
                msnobj: msnobj.into_owned(),
            },
            Context::File(f) => Context::File(f),
            Context::Problem { problem, text } => Context::Problem {
                problem: owned(problem),
                text: owned_opt(text),
            },
            Context::Raw { base64, length } => Context::Raw {
                base64: owned(base64),
                length,
            },
        }
    }
}

/// Decodes the binary context of a file-transfer INVITE.
pub fn file_context(b: &[u8]) -> Result<FileContext, String> {
    if b.len() < FT_NAME_AT {
        return Err(format!(
            "file-transfer context of {} bytes is shorter than its 20-byte start",
            b.len()
        ));
    }
    let le32 = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let header_len = le32(0) as usize;
    let mut sz = [0u8; 8];
    sz.copy_from_slice(&b[8..16]);
    let name_end = (FT_NAME_AT + FT_NAME_UNITS * 2).min(b.len());
    let units: Vec<u16> = b[FT_NAME_AT..name_end]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let mut c = FileContext {
        header_length: header_len,
        version: le32(4),
        file_size: u64::from_le_bytes(sz),
        ty: le32(16),
        file_name: String::from_utf16_lossy(&units),
        preview_length: 0,
        preview_base64: None,
    };
    if header_len >= FT_NAME_AT && header_len < b.len() {
        let preview = &b[header_len..];
        c.preview_length = preview.len();
        if preview.len() <= MAX_PREVIEW {
            c.preview_base64 = Some(Bytes(Cow::Owned(preview.to_vec())));
        }
    }
    Ok(c)
}

/// `<msnmsgr:alice@example.com;{guid}>` -> (`alice@example.com`, Some(`{guid}`)).
pub fn address(v: &str) -> (&str, Option<&str>) {
    let v = v.trim().trim_start_matches('<').trim_end_matches('>');
    let v = v
        .strip_prefix("msnmsgr:")
        .or_else(|| v.strip_prefix("MSNMSGR:"))
        .unwrap_or(v);
    match v.split_once(';') {
        Some((h, g)) => (h, Some(g)),
        None => (v, None),
    }
}

/// What an SLP message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlpKind {
    Invite,
    Ok,
    Decline,
    Error,
    Bye,
    Ack,
    Other,
}

/// One whole SLP message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slp<'a> {
    pub start_line: Cow<'a, str>,
    pub kind: SlpKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_endpoint: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_endpoint: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cseq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    pub headers: Headers<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub euf_guid: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context<'a>>,
    pub body: KvMap<'a>,
}

impl Slp<'_> {
    pub fn into_owned(self) -> Slp<'static> {
        Slp {
            start_line: owned(self.start_line),
            kind: self.kind,
            method: owned_opt(self.method),
            uri: owned_opt(self.uri),
            status: self.status,
            reason: owned_opt(self.reason),
            to: owned_opt(self.to),
            to_endpoint: owned_opt(self.to_endpoint),
            from: owned_opt(self.from),
            from_endpoint: owned_opt(self.from_endpoint),
            call_id: owned_opt(self.call_id),
            cseq: self.cseq,
            branch: owned_opt(self.branch),
            content_type: owned_opt(self.content_type),
            content_length: self.content_length,
            headers: owned_pairs(self.headers),
            session_id: self.session_id,
            app_id: self.app_id,
            euf_guid: owned_opt(self.euf_guid),
            application: owned_opt(self.application),
            context: self.context.map(Context::into_owned),
            body: self.body.into_owned(),
        }
    }
}

impl Redact for Slp<'_> {
    fn redact(&mut self) -> bool {
        self.body.redact() | super::redact_headers(&mut self.headers)
    }
}

/// Parses one whole SLP message (NUL terminator and all).
pub fn parse(data: &[u8]) -> Result<Slp<'_>, String> {
    match super::lossy(data) {
        Cow::Borrowed(t) => parse_text(t),
        Cow::Owned(t) => parse_text(&t).map(Slp::into_owned),
    }
}

fn parse_text(text: &str) -> Result<Slp<'_>, String> {
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
    let parts: Vec<&str> = start.splitn(3, ' ').collect();
    let mut o = Slp {
        start_line: Cow::Borrowed(start),
        kind: SlpKind::Other,
        method: None,
        uri: None,
        status: None,
        reason: None,
        to: None,
        to_endpoint: None,
        from: None,
        from_endpoint: None,
        call_id: None,
        cseq: None,
        branch: None,
        content_type: None,
        content_length: None,
        headers: Vec::new(),
        session_id: None,
        app_id: None,
        euf_guid: None,
        application: None,
        context: None,
        body: KvMap::default(),
    };
    if parts.first().is_some_and(|p| p.starts_with("MSNSLP/")) {
        let Some(code) = parts.get(1).and_then(|c| c.parse::<u16>().ok()) else {
            return Err(format!("SLP status line without a code: {start:?}"));
        };
        o.status = Some(code);
        o.reason = Some(Cow::Borrowed(parts.get(2).copied().unwrap_or("")));
        o.kind = match code {
            200 => SlpKind::Ok,
            603 => SlpKind::Decline,
            _ => SlpKind::Error,
        };
    } else if parts.len() == 3 && parts[2].starts_with("MSNSLP/") {
        o.method = Some(Cow::Borrowed(parts[0]));
        o.uri = Some(Cow::Borrowed(parts[1]));
        o.kind = match parts[0] {
            "INVITE" => SlpKind::Invite,
            "BYE" => SlpKind::Bye,
            "ACK" => SlpKind::Ack,
            _ => SlpKind::Other,
        };
    } else {
        return Err(format!(
            "not an MSNSLP start line: {}",
            String::from_utf8_lossy(&crate::secret::scrub(
                &start.as_bytes()[..start.len().min(60)]
            ))
        ));
    }
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        o.headers.push((Cow::Borrowed(k), Cow::Borrowed(v)));
        if k.eq_ignore_ascii_case("to") || k.eq_ignore_ascii_case("from") {
            let (h, g) = address(v);
            let (h, g) = (Some(Cow::Borrowed(h)), g.map(Cow::Borrowed));
            if k.eq_ignore_ascii_case("to") {
                (o.to, o.to_endpoint) = (h, g);
            } else {
                (o.from, o.from_endpoint) = (h, g);
            }
        } else if k.eq_ignore_ascii_case("call-id") {
            o.call_id = Some(Cow::Borrowed(v));
        } else if k.eq_ignore_ascii_case("cseq") {
            o.cseq = v.parse().ok();
        } else if k.eq_ignore_ascii_case("content-type") {
            o.content_type = Some(Cow::Borrowed(v));
        } else if k.eq_ignore_ascii_case("content-length") {
            o.content_length = v.parse().ok();
        } else if k.eq_ignore_ascii_case("via") {
            if let Some(b) = v.split(';').find_map(|p| p.trim().strip_prefix("branch=")) {
                o.branch = Some(Cow::Borrowed(b));
            }
        }
    }
    for l in body.lines() {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim();
            if !k.is_empty() && !k.contains(' ') {
                o.body.insert(Cow::Borrowed(k), Cow::Borrowed(v.trim()));
            }
        }
    }
    o.session_id = o.body.get("SessionID").and_then(|s| s.parse::<u32>().ok());
    o.app_id = o.body.get("AppID").and_then(|s| s.parse::<u32>().ok());
    let app = o.body.get("EUF-GUID").map(application);
    if let Some(g) = o
        .body
        .0
        .iter()
        .find(|(k, _)| k == "EUF-GUID")
        .map(|(_, v)| v.clone())
    {
        o.application = Some(Cow::Borrowed(application(&g)));
        o.euf_guid = Some(g);
    }
    if let Some(c) = o
        .body
        .0
        .iter()
        .find(|(k, _)| k == "Context")
        .map(|(_, v)| v.clone())
    {
        o.context = Some(match unb64(&c) {
            None => Context::Problem {
                problem: Cow::Borrowed("Context is not base64"),
                text: Some(c),
            },
            Some(bytes) => match app {
                Some("file_transfer") => match file_context(&bytes) {
                    Ok(f) => Context::File(f),
                    Err(e) => Context::Problem {
                        problem: Cow::Owned(e),
                        text: None,
                    },
                },
                _ => {
                    let t = String::from_utf8_lossy(&bytes);
                    match msnobj::parse(&t) {
                        Some(m) => Context::MsnObj {
                            msnobj: m.into_owned(),
                        },
                        None if app == Some("msnobj") => Context::Problem {
                            problem: Cow::Borrowed("Context is not an MSNObject"),
                            text: Some(Cow::Owned(t.trim_end_matches('\0').to_string())),
                        },
                        None => Context::Raw {
                            base64: c,
                            length: bytes.len(),
                        },
                    }
                }
            },
        });
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The INVITE from the msnp11-sdk capture (checked against its client log).
    const INVITE: &str = "INVITE MSNMSGR:bob@example.com MSNSLP/1.0\r\nTo: <msnmsgr:bob@example.com>\r\nFrom: <msnmsgr:alice@example.com>\r\nVia: MSNSLP/1.0/TLP ;branch={D74787D8-84AA-4FE0-C438-C10B15BA282B}\r\nCSeq: 0 \r\nCall-ID: {835AF7C1-A21D-A397-A29D-81BF608A4DA8}\r\nMax-Forwards: 0\r\nContent-Type: application/x-msnmsgr-sessionreqbody\r\nContent-Length: 337\r\n\r\nEUF-GUID: {A4268EEC-FEC5-49E5-95C3-F126696BDBF6}\r\nSessionID: 2328520848\r\nAppID: 1\r\nContext: PG1zbm9iaiBDcmVhdG9yPSJib2JAZXhhbXBsZS5jb20iIFNpemU9IjcwIiBUeXBlPSIzIiBMb2NhdGlvbj0iUElDLnRtcCIgRnJpZW5kbHk9IkFBQT0iIFNIQTFEPSJtWlB0SFNlQi9hL1lkZ09PYStDaEZpMDNlK0U9IiBTSEExQz0iclhkOWhDUk1uK0c5dVRadHcvVDVSSFFCRHQ0PSIgY29udGVudHR5cGU9IiIvPgA=\r\n\r\n\0";

    #[test]
    fn invite_with_msnobj_context() {
        let v = parse(INVITE.as_bytes()).unwrap();
        assert_eq!(v.kind, SlpKind::Invite);
        assert_eq!(v.method.as_deref(), Some("INVITE"));
        assert_eq!(v.to.as_deref(), Some("bob@example.com"));
        assert_eq!(v.from.as_deref(), Some("alice@example.com"));
        assert_eq!(
            v.call_id.as_deref(),
            Some("{835AF7C1-A21D-A397-A29D-81BF608A4DA8}")
        );
        assert_eq!(
            v.branch.as_deref(),
            Some("{D74787D8-84AA-4FE0-C438-C10B15BA282B}")
        );
        assert_eq!(v.session_id, Some(2328520848));
        assert_eq!(v.app_id, Some(1));
        assert_eq!(v.application.as_deref(), Some("msnobj"));
        let Some(Context::MsnObj { msnobj }) = &v.context else {
            panic!("{:?}", v.context)
        };
        assert_eq!(msnobj.sha1d(), Some("mZPtHSeB/a/YdgOOa+ChFi03e+E="));
        assert_eq!(msnobj.size(), Some(70));
        let back: Slp = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn status_lines_and_v2_addresses() {
        let ok = "MSNSLP/1.0 200 OK\r\nTo: <msnmsgr:alice@example.com;{11111111-2222-3333-4444-555555555555}>\r\nFrom: <msnmsgr:bob@example.com>\r\nCall-ID: {X}\r\n\r\nSessionID: 5\r\n\r\n\0";
        let v = parse(ok.as_bytes()).unwrap();
        assert_eq!(v.status, Some(200));
        assert_eq!(v.kind, SlpKind::Ok);
        assert_eq!(v.to.as_deref(), Some("alice@example.com"));
        assert_eq!(
            v.to_endpoint.as_deref(),
            Some("{11111111-2222-3333-4444-555555555555}")
        );
        assert_eq!(v.session_id, Some(5));
        let no = "MSNSLP/1.0 603 Decline\r\nCall-ID: {X}\r\n\r\n\0";
        let v = parse(no.as_bytes()).unwrap();
        assert_eq!(v.kind, SlpKind::Decline);
        assert_eq!(v.reason.as_deref(), Some("Decline"));
        assert!(parse(b"hello world").is_err());
        assert!(parse(b"MSNSLP/1.0 abc").is_err());
        assert_eq!(
            parse(b"ACK MSNMSGR:x MSNSLP/1.0\r\n\r\n").unwrap().kind,
            SlpKind::Ack
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
        assert_eq!(v.file_size, 123456);
        assert_eq!(v.file_name, "a/b.txt");
        assert_eq!(v.preview_length, 3);
        assert_eq!(serde_json::to_value(&v).unwrap()["preview_base64"], "UE5H");
        assert!(file_context(&c[..10]).is_err());
        // A short context (name cut off) is still decoded as far as it goes.
        assert_eq!(file_context(&c[..26]).unwrap().file_name, "a/b");
    }
}
