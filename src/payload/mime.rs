//! MIME-style messages (MSG bodies) and the multipart routing blocks of SDG/PUT/NFY:
//! headers in order, the body, and the typed content the MSN clients exchange (text with
//! its format, typing, datacasts, emoticons, invitations and MSNFTP, mail notifications,
//! the profile, P2P). Values borrow from the payload.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{
    msnobj, owned, owned_opt, owned_pairs, p2p, redact_headers, urldecode, xml, Body, Element,
    Headers, Inline, KvMap, MsnObject, P2p,
};
use crate::secret::{Redact, Secret};

/// True when `b` starts like `Name: value` header lines.
pub fn looks_like_headers(b: &[u8]) -> bool {
    let line = match memchr::memchr(b'\n', b) {
        Some(i) => &b[..i],
        None => b,
    };
    match memchr::memchr(b':', line) {
        Some(i) => {
            i > 0
                && line[..i]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        }
        None => false,
    }
}

/// Where a header block ends: the offset just past its blank line (or the end of `b`).
fn header_end(b: &[u8]) -> usize {
    let mut pos = 0;
    while pos < b.len() {
        let Some(i) = memchr::memchr(b'\n', &b[pos..]) else {
            return b.len();
        };
        let next = pos + i + 1;
        let line = &b[pos..pos + i];
        if line.is_empty() || line == b"\r" {
            return next;
        }
        pos = next;
    }
    b.len()
}

/// Splits a header block off `b`: (headers, rest after the blank line). Without a blank
/// line the whole input is headers. The block is checked for UTF-8 once; names and values
/// then borrow from it.
fn split_headers(b: &[u8]) -> Result<(Headers<'_>, &[u8]), String> {
    let end = header_end(b);
    let (head, rest) = b.split_at(end);
    match super::utf8(head) {
        Some(t) => Ok((headers_of(t)?, rest)),
        None => {
            // Invalid bytes in the headers (rare): owned, replaced text.
            let t = String::from_utf8_lossy(head);
            Ok((super::owned_pairs(headers_of(&t)?), rest))
        }
    }
}

/// The `Name: value` lines of a header block (its blank line included or not).
fn headers_of(t: &str) -> Result<Headers<'_>, String> {
    let mut headers: Headers<'_> = Vec::with_capacity(4);
    let b = t.as_bytes();
    let mut pos = 0;
    while pos < b.len() {
        let end = memchr::memchr(b'\n', &b[pos..]).map_or(b.len(), |i| pos + i);
        // Cut at ASCII bytes (LF, CR, the colon), so every slice is on a char boundary.
        let line = t.get(pos..end).unwrap_or_default();
        pos = end + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        // A name is what comes before the first colon, if it has no space in it.
        let lb = line.as_bytes();
        let split = lb
            .iter()
            .position(|&c| c == b':' || c == b' ')
            .filter(|&k| k > 0 && lb[k] == b':');
        match split {
            Some(k) => {
                let v = line.get(k + 1..).unwrap_or_default();
                headers.push((
                    Cow::Borrowed(line.get(..k).unwrap_or_default()),
                    Cow::Borrowed(trim_start_ws(v)),
                ));
            }
            None => {
                let Some(last) = headers.last_mut() else {
                    return Err(format!(
                        "not a MIME header line: {:?}",
                        String::from_utf8_lossy(&scrubbed(line.as_bytes(), 40))
                    ));
                };
                // A folded or stray line: kept with the previous header.
                let v = last.1.to_mut();
                v.push('\n');
                v.push_str(line);
            }
        }
    }
    Ok(headers)
}

/// `str::trim_start`, with ASCII whitespace skipped as bytes first.
fn trim_start_ws(v: &str) -> &str {
    let b = v.as_bytes();
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let s = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    match b.get(s) {
        // Unicode whitespace starts with a byte of 0x80 or more: `trim_start` decides.
        Some(c) if *c >= 0x80 => v.get(s..).unwrap_or_default().trim_start(),
        _ => v.get(s..).unwrap_or_default(),
    }
}

/// The first bytes of a line for a problem message, with possible credentials hidden.
fn scrubbed(line: &[u8], max: usize) -> Vec<u8> {
    crate::secret::scrub(&line[..line.len().min(max)])
}

pub fn header<'h>(h: &'h Headers<'_>, name: &str) -> Option<&'h str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

/// X-MMS-IM-Format: `FN=Arial; EF=BI; CO=ff; CS=0; PF=22`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImFormat<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub font: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<Cow<'a, str>>,
    /// `#rrggbb` (the header carries BGR without leading zeros).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitch_family: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtl: Option<bool>,
    /// Keys this decoder does not name.
    #[serde(default, skip_serializing_if = "KvMap::is_empty")]
    pub extra: KvMap<'a>,
}

impl ImFormat<'_> {
    /// `Arial, bold, #ff0000`.
    pub fn label(&self) -> String {
        let mut bits: Vec<&str> = Vec::new();
        if let Some(f) = &self.font {
            bits.push(f);
        }
        bits.extend(self.effects.iter().map(|e| e.as_ref()));
        if let Some(c) = &self.color {
            bits.push(c);
        }
        bits.join(", ")
    }
    pub fn into_owned(self) -> ImFormat<'static> {
        ImFormat {
            font: owned_opt(self.font),
            effects: self.effects.into_iter().map(owned).collect(),
            color: owned_opt(self.color),
            charset: self.charset,
            pitch_family: owned_opt(self.pitch_family),
            rtl: self.rtl,
            extra: self.extra.into_owned(),
        }
    }
}

pub fn im_format(f: &str) -> ImFormat<'_> {
    let mut o = ImFormat::default();
    // A byte loop over `;`-separated `K=V` parts (this header is on every text message, and
    // `split`/`trim`/`format!` cost about 4,000 instructions for five parts). Trimming is
    // `str::trim`'s: on ASCII its whitespace is these six bytes; other text takes `trim`.
    let ascii = f.is_ascii();
    let trim = |t| trim_ws(t, ascii);
    let mut rest = f;
    loop {
        let (part, next) = match find_byte(b';', rest) {
            Some(i) => (rest.get(..i).unwrap_or_default(), rest.get(i + 1..)),
            None => (rest, None),
        };
        if let Some((k, v)) = split_eq(trim(part)) {
            match trim(k) {
                "FN" => o.font = Some(urldecode(v)),
                "EF" => {
                    o.effects = v
                        .bytes()
                        .filter_map(|c| match c {
                            b'B' => Some("bold"),
                            b'I' => Some("italic"),
                            b'U' => Some("underline"),
                            b'S' => Some("strikethrough"),
                            _ => None,
                        })
                        .map(Cow::Borrowed)
                        .collect()
                }
                "CO" => o.color = Some(bgr_to_rgb(trim(v), v)),
                "CS" => o.charset = u32::from_str_radix(trim(v), 16).ok(),
                "PF" => o.pitch_family = Some(Cow::Borrowed(v)),
                "RL" => o.rtl = Some(trim(v) == "1"),
                other => o.extra.insert(other, v),
            }
        }
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    o
}

/// The first `b` in a short header value: a plain loop (`memchr`'s set-up costs more than
/// the scan on the few bytes between two `;`).
fn find_byte(b: u8, t: &str) -> Option<usize> {
    t.bytes().position(|c| c == b)
}

/// `split_once('=')` without a char searcher.
fn split_eq(t: &str) -> Option<(&str, &str)> {
    let i = find_byte(b'=', t)?;
    Some((t.get(..i)?, t.get(i + 1..)?))
}

/// `str::trim` (on ASCII text its whitespace is these six bytes).
fn trim_ws(t: &str, ascii: bool) -> &str {
    if !ascii {
        return t.trim();
    }
    let b = t.as_bytes();
    // ASCII whitespace is all at or below the space: ends above it need no trimming (the
    // usual case, one look at each end instead of a loop).
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) if f > b' ' && l > b' ' => return t,
        _ => {}
    }
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let s = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !ws(c)).map_or(s, |i| i + 1);
    t.get(s..e).unwrap_or_default()
}

/// The colour is a BGR hex number without leading zeros; `ff` is red. `v` is the value as
/// written (kept when it is not a colour), `t` the same trimmed.
fn bgr_to_rgb<'a>(t: &str, v: &'a str) -> Cow<'a, str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match u32::from_str_radix(t, 16) {
        // Black, the colour of most messages: no string to build.
        Ok(0) => Cow::Borrowed("#000000"),
        Ok(n) if n <= 0xFF_FFFF => {
            let mut c = String::with_capacity(7);
            c.push('#');
            for byte in [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff] {
                c.push(char::from(HEX[(byte >> 4) as usize]));
                c.push(char::from(HEX[(byte & 15) as usize]));
            }
            Cow::Owned(c)
        }
        _ => Cow::Borrowed(v),
    }
}

/// A `text/x-msnmsgr-datacast` message (nudge, wink, voice clip, action message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Datacast<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    pub name: Cow<'a, str>,
    pub fields: KvMap<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msnobj: Option<MsnObject<'a>>,
}

impl Datacast<'_> {
    pub fn into_owned(self) -> Datacast<'static> {
        Datacast {
            id: self.id,
            name: owned(self.name),
            fields: self.fields.into_owned(),
            msnobj: self.msnobj.map(MsnObject::into_owned),
        }
    }
}

/// One entry of a custom-emoticon list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emoticon<'a> {
    pub shortcut: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msnobj: Option<MsnObject<'a>>,
    /// The object text when it is not an MSNObject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
}

impl Emoticon<'_> {
    pub fn into_owned(self) -> Emoticon<'static> {
        Emoticon {
            shortcut: owned(self.shortcut),
            msnobj: self.msnobj.map(MsnObject::into_owned),
            text: owned_opt(self.text),
        }
    }
}

/// The structured view of a text/x-msmsgsinvite body (MSNFTP and other invitation
/// applications): what is offered, and where and with which cookie the direct connection
/// is made.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Msnftp<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_guid: Option<Cow<'a, str>>,
    /// `file_transfer` or `other` (absent on ACCEPT/CANCEL, which do not repeat it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_code: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_data: Option<Cow<'a, str>>,
    /// `ip:port` the receiver connects to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_x: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_address: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_connect: Option<Cow<'a, str>>,
    /// The direct connection's credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_cookie: Option<Secret<'a>>,
}

impl Msnftp<'_> {
    pub fn into_owned(self) -> Msnftp<'static> {
        Msnftp {
            command: owned_opt(self.command),
            cookie: owned_opt(self.cookie),
            application_name: owned_opt(self.application_name),
            application_guid: owned_opt(self.application_guid),
            application: owned_opt(self.application),
            file_name: owned_opt(self.file_name),
            file_size: self.file_size,
            connectivity: owned_opt(self.connectivity),
            session_id: owned_opt(self.session_id),
            cancel_code: owned_opt(self.cancel_code),
            request_data: owned_opt(self.request_data),
            address: owned_opt(self.address),
            port: self.port,
            port_x: self.port_x,
            internal_address: owned_opt(self.internal_address),
            sender_connect: owned_opt(self.sender_connect),
            auth_cookie: self.auth_cookie.map(Secret::into_owned),
        }
    }
}

/// Application-GUID of MSNFTP file transfers (the same GUID as the P2P file EUF-GUID).
const MSNFTP_GUID: &str = "{5D3E02AB-6190-11D3-BBBB-00C04F795683}";

fn msnftp<'a>(kv: &KvMap<'a>) -> Msnftp<'a> {
    let get = |k: &str| -> Option<Cow<'a, str>> {
        kv.0.iter().find(|(n, _)| n == k).map(|(_, v)| match v {
            Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
            Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
        })
    };
    let num = |k: &str| get(k).and_then(|s| s.parse::<u64>().ok());
    let is_ft = get("Application-GUID").is_some_and(|g| g.eq_ignore_ascii_case(MSNFTP_GUID))
        || get("Application-Name")
            .is_some_and(|n| n.to_ascii_lowercase().contains("file transfer"));
    let named = get("Application-GUID").is_some() || get("Application-Name").is_some();
    let port = get("Port").and_then(|p| p.parse::<u16>().ok());
    let join = |ip: Cow<'a, str>, port: Option<u16>| match port {
        Some(p) => Cow::Owned(format!("{ip}:{p}")),
        None => ip,
    };
    Msnftp {
        command: get("Invitation-Command").map(|c| Cow::Owned(c.to_ascii_uppercase())),
        cookie: get("Invitation-Cookie"),
        application_name: get("Application-Name"),
        application_guid: get("Application-GUID"),
        application: (is_ft || named).then_some(Cow::Borrowed(if is_ft {
            "file_transfer"
        } else {
            "other"
        })),
        file_name: get("Application-File"),
        file_size: num("Application-FileSize"),
        connectivity: get("Connectivity"),
        session_id: get("Session-ID"),
        cancel_code: get("Cancel-Code"),
        request_data: get("Request-Data"),
        address: get("IP-Address").map(|ip| join(ip, port)),
        port,
        port_x: num("PortX"),
        internal_address: get("IP-Address-Internal").map(|ip| {
            join(
                ip,
                get("PortX-Internal").and_then(|p| p.parse::<u16>().ok()),
            )
        }),
        sender_connect: get("Sender-Connect"),
        auth_cookie: get("AuthCookie").map(Secret),
    }
}

/// What a MIME body is, by content type. Every field is absent unless the content type
/// calls for it; `body` is always there.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Content<'a> {
    /// text/plain: X-MMS-IM-Format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ImFormat<'a>>,
    /// text/x-msmsgscontrol: who is typing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typing_user: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacast: Option<Box<Datacast<'a>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoticons: Option<Vec<Emoticon<'a>>>,
    /// text/x-msmsgsinvite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msnftp: Option<Box<Msnftp<'a>>>,
    /// `Key: value` bodies (invitations, mail and system notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<KvMap<'a>>,
    /// The Mail-Data XML of mail notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_data: Option<Box<Element<'a>>>,
    /// text/x-msmsgsprofile: the byte-swapped ClientPort, corrected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_port: Option<u32>,
    /// application/x-msnmsgrp2p: the binary header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2p: Option<Box<P2p<'a>>>,
    /// Where the body starts in the whole payload and its length (P2P).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_offset: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_length: Option<usize>,
    /// XML bodies (content types ending in xml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml: Option<Box<Element<'a>>>,
    /// The body: text, or `{base64}` (always base64 for P2P, so that JSON Lines alone are
    /// enough to extract objects later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body<'a>>,
}

impl Content<'_> {
    pub fn into_owned(self) -> Content<'static> {
        Content {
            format: self.format.map(ImFormat::into_owned),
            typing_user: owned_opt(self.typing_user),
            datacast: self.datacast.map(|d| Box::new(d.into_owned())),
            emoticons: self
                .emoticons
                .map(|v| v.into_iter().map(Emoticon::into_owned).collect()),
            msnftp: self.msnftp.map(|m| Box::new(m.into_owned())),
            fields: self.fields.map(KvMap::into_owned),
            mail_data: self.mail_data.map(|x| Box::new(x.into_owned())),
            client_port: self.client_port,
            p2p: self.p2p.map(|p| Box::new(p.into_owned())),
            body_offset: self.body_offset,
            body_length: self.body_length,
            xml: self.xml.map(|x| Box::new(x.into_owned())),
            body: self.body.map(Body::into_owned),
        }
    }
    /// The body text, when it is text.
    pub fn text(&self) -> Option<&str> {
        self.body.as_ref().and_then(Body::text)
    }
}

impl Redact for Content<'_> {
    fn redact(&mut self) -> bool {
        let mut c = false;
        if let Some(m) = self.msnftp.as_mut() {
            c |= m.auth_cookie.redact();
        }
        if let Some(f) = self.fields.as_mut() {
            c |= f.redact();
        }
        if let Some(d) = self.datacast.as_mut() {
            c |= d.fields.redact();
        }
        if let Some(p) = self.p2p.as_mut() {
            c |= p.redact();
        }
        c |= self.body.redact();
        c
    }
}

/// A decoded MSG-style MIME payload (written with the typed content's fields beside its
/// own, read back through serde's flatten).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Mime<'a> {
    /// `[name, value]` pairs in order.
    pub headers: Headers<'a>,
    /// The media type, lower-cased.
    pub content_type: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<Cow<'a, str>>,
    #[serde(flatten)]
    pub content: Content<'a>,
}

impl Serialize for Mime<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Mime", 16)?;
        st.serialize_field("headers", &self.headers)?;
        st.serialize_field("content_type", &self.content_type)?;
        if let Some(c) = &self.charset {
            st.serialize_field("charset", c)?;
        }
        self.content.serialize(Inline(&mut st))?;
        st.end()
    }
}

impl Serialize for Multipart<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Multipart", 16)?;
        st.serialize_field("blocks", &self.blocks)?;
        st.serialize_field("content_type", &self.content_type)?;
        self.content.serialize(Inline(&mut st))?;
        st.end()
    }
}

impl Mime<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn into_owned(self) -> Mime<'static> {
        Mime {
            headers: owned_pairs(self.headers),
            content_type: owned(self.content_type),
            charset: owned_opt(self.charset),
            content: self.content.into_owned(),
        }
    }
}

impl Redact for Mime<'_> {
    fn redact(&mut self) -> bool {
        redact_headers(&mut self.headers) | self.content.redact()
    }
}

/// One header block of a multipart payload (`routing`, `reliability`, `messaging`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block<'a> {
    /// The block's first header name, lower-cased.
    pub name: Cow<'a, str>,
    pub headers: Headers<'a>,
}

/// SDG / PUT / NFY payloads: `Routing`, `Reliability` and a third header block, then a body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Multipart<'a> {
    pub blocks: Vec<Block<'a>>,
    pub content_type: Cow<'a, str>,
    #[serde(flatten)]
    pub content: Content<'a>,
}

impl Multipart<'_> {
    pub fn block(&self, name: &str) -> Option<&Block<'_>> {
        self.blocks.iter().find(|b| b.name == name)
    }
    pub fn into_owned(self) -> Multipart<'static> {
        Multipart {
            blocks: self
                .blocks
                .into_iter()
                .map(|b| Block {
                    name: owned(b.name),
                    headers: owned_pairs(b.headers),
                })
                .collect(),
            content_type: owned(self.content_type),
            content: self.content.into_owned(),
        }
    }
}

impl Redact for Multipart<'_> {
    fn redact(&mut self) -> bool {
        let mut c = false;
        for b in self.blocks.iter_mut() {
            c |= redact_headers(&mut b.headers);
        }
        c | self.content.redact()
    }
}

/// Decodes an MSG-style MIME payload.
pub fn decode(b: &[u8], version: Option<u8>) -> Result<Mime<'_>, String> {
    let (headers, body) = split_headers(b)?;
    let (ct, charset) = split_ct(header_cow(&headers, "Content-Type"));
    let content = typed(&ct, &headers, body, b.len() - body.len(), version);
    Ok(Mime {
        charset,
        content_type: ct,
        headers,
        content,
    })
}

/// The lower-cased media type of a Content-Type value and its `charset` parameter
/// (borrowed unless the type had to be lower-cased).
fn split_ct(ct: Option<Cow<'_, str>>) -> (Cow<'_, str>, Option<Cow<'_, str>>) {
    fn parts(s: &str) -> (Cow<'_, str>, Option<Cow<'_, str>>) {
        let ascii = s.is_ascii();
        let trim = |t| trim_ws(t, ascii);
        let (main, mut rest) = match find_byte(b';', s) {
            Some(i) => (s.get(..i).unwrap_or_default(), s.get(i + 1..)),
            None => (s, None),
        };
        let main = trim(main);
        let main = if main.bytes().any(|c| c.is_ascii_uppercase()) {
            Cow::Owned(main.to_ascii_lowercase())
        } else {
            Cow::Borrowed(main)
        };
        // The first `charset=` parameter, as `split(';')` then `split_once('=')` read it.
        let mut charset = None;
        while let Some(r) = rest {
            let (p, next) = match find_byte(b';', r) {
                Some(i) => (r.get(..i).unwrap_or_default(), r.get(i + 1..)),
                None => (r, None),
            };
            if let Some((k, v)) = split_eq(p) {
                if trim(k).eq_ignore_ascii_case("charset") {
                    charset = Some(Cow::Borrowed(trim_quotes(trim(v))));
                    break;
                }
            }
            rest = next;
        }
        (main, charset)
    }
    match ct {
        None => (Cow::Borrowed(""), None),
        Some(Cow::Borrowed(s)) => parts(s),
        Some(Cow::Owned(s)) => {
            let (a, b) = parts(&s);
            (owned(a), owned_opt(b))
        }
    }
}

/// `str::trim_matches('"')` as a byte loop (the char searcher costs about 200 instructions
/// on the `"UTF-8"` of every text message's Content-Type).
fn trim_quotes(t: &str) -> &str {
    let b = t.as_bytes();
    let s = b.iter().position(|&c| c != b'"').unwrap_or(b.len());
    let e = b.iter().rposition(|&c| c != b'"').map_or(s, |i| i + 1);
    // Cut next to `"` bytes (ASCII): char boundaries.
    t.get(s..e).unwrap_or_default()
}

fn header_cow<'a>(h: &Headers<'a>, name: &str) -> Option<Cow<'a, str>> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// `body_offset` is where `body` starts in the whole payload.
fn typed<'a>(
    ct: &str,
    headers: &Headers<'a>,
    body: &'a [u8],
    body_offset: usize,
    version: Option<u8>,
) -> Content<'a> {
    let mut o = Content::default();
    let hdr = |name: &str| header_cow(headers, name);
    match ct {
        "application/x-msnmsgrp2p" => {
            let (dest, src) = (hdr("P2P-Dest"), hdr("P2P-Src"));
            let hint = p2p::Hint {
                version,
                dest: dest.as_deref(),
                src: src.as_deref(),
            };
            o.p2p = Some(Box::new(p2p::decode(body, hint)));
            o.body_length = Some(body.len());
            o.body_offset = Some(body_offset);
            o.body = Some(Body::binary(body));
            return o;
        }
        "text/plain" => {
            if let Some(f) = hdr("X-MMS-IM-Format") {
                o.format = Some(match f {
                    Cow::Borrowed(b) => im_format(b),
                    Cow::Owned(s) => im_format(&s).into_owned(),
                });
            }
        }
        "text/x-msmsgscontrol" => o.typing_user = hdr("TypingUser"),
        "text/x-msnmsgr-datacast" => {
            let kv = KvMap::from_lines_bytes(body);
            let id = kv.get("ID").and_then(|s| s.trim().parse::<u32>().ok());
            let name = match id {
                Some(1) => "nudge",
                Some(2) => "wink",
                Some(3) => "voice_clip",
                Some(4) => "action_message",
                _ => "unknown",
            };
            let msnobj = kv
                .get("Data")
                .and_then(msnobj::parse)
                .map(MsnObject::into_owned);
            o.datacast = Some(Box::new(Datacast {
                id,
                name: Cow::Borrowed(name),
                fields: kv,
                msnobj,
            }));
        }
        "text/x-mms-emoticon" | "text/x-mms-animemoticon" => {
            let text = super::lossy(body);
            let parts: Vec<&str> = text.split('\t').collect();
            let list = parts
                .chunks(2)
                .filter(|c| c.len() == 2 && !c[0].trim().is_empty())
                .map(|c| {
                    let obj = msnobj::parse(c[1]).map(MsnObject::into_owned);
                    Emoticon {
                        shortcut: Cow::Owned(c[0].trim_start_matches(['\r', '\n']).to_string()),
                        text: obj.is_none().then(|| Cow::Owned(c[1].to_string())),
                        msnobj: obj,
                    }
                })
                .collect();
            o.emoticons = Some(list);
        }
        "text/x-msmsgsinvite"
        | "text/x-msmsgsemailnotification"
        | "text/x-msmsgsactivemailnotification"
        | "text/x-msmsgsinitialemailnotification"
        | "application/x-msmsgsemailnotification"
        | "application/x-msmsgssystemmessage"
        | "text/x-msmsgsoimnotification"
        | "text/x-msmsgsinitialmdatanotification" => {
            let kv = KvMap::from_lines_bytes(body);
            if ct == "text/x-msmsgsinvite" {
                o.msnftp = Some(Box::new(msnftp(&kv)));
            }
            if let Some(md) = kv.get("Mail-Data") {
                if let Ok(x) = xml::parse(md) {
                    o.mail_data = Some(Box::new(x.into_owned()));
                }
            }
            o.fields = Some(kv);
        }
        "text/x-msmsgsprofile" => {
            if let Some(p) = hdr("ClientPort").and_then(|p| p.trim().parse::<u32>().ok()) {
                // The profile's ClientPort is byte-swapped (msnp-wiki versions/msnp8.md).
                o.client_port = Some(((p & 0xff) << 8) | ((p & 0xff00) >> 8));
            }
        }
        _ => {}
    }
    // The body is checked for UTF-8 once; an XML body is parsed from that text.
    let b = Body::of(body);
    if ct.ends_with("xml") && body.trim_ascii_start().starts_with(b"<") {
        if let Body::Text(Cow::Borrowed(t)) = &b {
            if let Ok(x) = xml::parse(t) {
                o.xml = Some(Box::new(x));
            }
        }
    }
    o.body = Some(b);
    o
}

impl<'a> KvMap<'a> {
    /// `Key: value` lines of a body that may not be UTF-8.
    pub fn from_lines_bytes(b: &'a [u8]) -> KvMap<'a> {
        match super::lossy(b) {
            Cow::Borrowed(t) => KvMap::from_lines(t),
            Cow::Owned(t) => KvMap::from_lines(&t).into_owned(),
        }
    }
}

/// SDG / PUT / NFY payloads.
pub fn decode_multipart(b: &[u8], version: Option<u8>) -> Result<Multipart<'_>, String> {
    let mut blocks = Vec::new();
    let mut rest = b;
    for _ in 0..3 {
        if rest.is_empty() || !looks_like_headers(rest) {
            break;
        }
        let (h, r) = split_headers(rest)?;
        let name = h
            .first()
            .map(|(k, _)| Cow::Owned(k.to_ascii_lowercase()))
            .unwrap_or(Cow::Borrowed(""));
        blocks.push(Block { name, headers: h });
        rest = r;
    }
    let Some(last) = blocks.last() else {
        return Err("not a routing/reliability/messaging block".into());
    };
    let (ct, _) = split_ct(header_cow(&last.headers, "Content-Type"));
    let content = typed(&ct, &last.headers, rest, b.len() - rest.len(), version);
    Ok(Multipart {
        blocks,
        content_type: ct,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_message_with_format() {
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=MS%20Sans%20Serif; EF=BI; CO=ff; CS=0; PF=22\r\n\r\nHello";
        let v = decode(m, Some(8)).unwrap();
        assert_eq!(v.content_type, "text/plain");
        assert_eq!(v.charset.as_deref(), Some("UTF-8"));
        assert_eq!(v.content.text(), Some("Hello"));
        let f = v.content.format.as_ref().unwrap();
        assert_eq!(f.font.as_deref(), Some("MS Sans Serif"));
        assert_eq!(f.effects, ["bold", "italic"]);
        assert_eq!(f.color.as_deref(), Some("#ff0000"));
        assert_eq!(f.label(), "MS Sans Serif, bold, italic, #ff0000");
        assert_eq!(
            v.headers[0],
            (Cow::Borrowed("MIME-Version"), Cow::Borrowed("1.0"))
        );
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["headers"][0], serde_json::json!(["MIME-Version", "1.0"]));
        assert_eq!(j["body"], "Hello");
        assert_eq!(j["format"]["charset"], 0);
        let back: Mime = serde_json::from_value(j).unwrap();
        assert_eq!(back, v);
    }

    /// The byte loop of `im_format` against the plain `split`/`trim`/`format!` reading of
    /// the header it replaced, written out here, on spacing, empty parts, odd values,
    /// unknown keys and non-ASCII text.
    #[test]
    fn im_format_matches_the_plain_reading() {
        fn plain(f: &str) -> ImFormat<'_> {
            let mut o = ImFormat::default();
            for part in f.split(';') {
                let Some((k, v)) = part.trim().split_once('=') else {
                    continue;
                };
                match k.trim() {
                    "FN" => o.font = Some(urldecode(v)),
                    "EF" => {
                        let names = [('B', "bold"), ('I', "italic"), ('U', "underline")];
                        o.effects = v
                            .chars()
                            .filter_map(|c| {
                                names
                                    .iter()
                                    .chain(&[('S', "strikethrough")])
                                    .find(|(n, _)| *n == c)
                                    .map(|(_, s)| Cow::Borrowed(*s))
                            })
                            .collect()
                    }
                    "CO" => {
                        o.color = Some(match u32::from_str_radix(v.trim(), 16) {
                            Ok(n) if n <= 0xFF_FFFF => Cow::Owned(format!(
                                "#{:02x}{:02x}{:02x}",
                                n & 0xff,
                                (n >> 8) & 0xff,
                                n >> 16
                            )),
                            _ => Cow::Borrowed(v),
                        })
                    }
                    "CS" => o.charset = u32::from_str_radix(v.trim(), 16).ok(),
                    "PF" => o.pitch_family = Some(Cow::Borrowed(v)),
                    "RL" => o.rtl = Some(v.trim() == "1"),
                    other => o.extra.insert(other, v),
                }
            }
            o
        }
        for f in [
            "",
            ";",
            ";;",
            "FN=Segoe%20UI; EF=; CO=0; CS=1; PF=0",
            "FN=MS%20Sans%20Serif; EF=BIUS; CO=ff8000; CS=0; PF=22",
            "  FN = Arial ;EF=B;CO= 1a2b3c ;CS=86;PF=22;RL=1;",
            "CO=zz; CS=; PF=; RL=0; X-Y=1; =5; novalue; FN=",
            "CO=1000000; CS=ffffffff1; EF=bIx\u{e9}",
            "FN=Caf\u{e9}\u{a0}; CO=+ff;\u{a0}EF=B\u{a0}",
            "\u{b}FN=a\u{c};\tCO=ff\r\n",
            "FN=%E6%97%A5%E6%9C%AC; EF=U",
        ] {
            assert_eq!(im_format(f), plain(f), "{f:?}");
        }
    }

    /// Header lines and Content-Type parameters read as bytes, against the `str` methods
    /// they replaced (`trim_start`, `split(';')`, `split_once`, `trim`), written out here.
    #[test]
    fn header_bytes_match_the_str_reading() {
        fn plain_headers(t: &str) -> Vec<(String, String)> {
            let mut v: Vec<(String, String)> = Vec::new();
            for line in t.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.is_empty() {
                    break;
                }
                match line
                    .find(':')
                    .filter(|&k| k > 0 && !line[..k].contains(' '))
                {
                    Some(k) => v.push((line[..k].into(), line[k + 1..].trim_start().into())),
                    None => {
                        let last = v.last_mut().unwrap();
                        last.1.push('\n');
                        last.1.push_str(line);
                    }
                }
            }
            v
        }
        let block = "A: 1\r\nB:\t two\r\nC:\u{a0}\u{2003} x\r\n D: folded\r\nE:\r\nF: a: b\r\n\
                     G H: spaced\r\nI:\u{3000}\r\n\r\nbody: no";
        let got: Vec<(String, String)> = headers_of(block)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(got, plain_headers(block));
        assert!(headers_of(": x\r\n").is_err());
        for (ct, main, cs) in [
            ("text/plain; charset=UTF-8", "text/plain", Some("UTF-8")),
            (
                " Text/Plain ;CHARSET = \"utf-8\" ; x=y",
                "text/plain",
                Some("utf-8"),
            ),
            (
                "text/plain; format=flowed; charset=iso-8859-1; charset=x",
                "text/plain",
                Some("iso-8859-1"),
            ),
            ("text/plain;", "text/plain", None),
            (
                "\u{a0}text/x-msmsgscontrol\u{a0}",
                "text/x-msmsgscontrol",
                None,
            ),
            ("application/x-msnmsgrp2p", "application/x-msnmsgrp2p", None),
            ("", "", None),
        ] {
            let (m, c) = split_ct(Some(Cow::Borrowed(ct)));
            assert_eq!((m.as_ref(), c.as_deref()), (main, cs), "{ct:?}");
        }
    }

    /// The byte trims against the `str` methods they stand for, on the edges the fast exits
    /// look at (spaces, control whitespace, quotes at one end only, empty and all-trimmed).
    #[test]
    fn byte_trims_match_str_trims() {
        for t in [
            "",
            " ",
            "\"",
            "\"\"",
            "a",
            " a",
            "a ",
            "\ta\r\n",
            "\u{b}a\u{c}",
            "\"UTF-8\"",
            "\"UTF-8",
            "UTF-8\"",
            "!x~",
            "a b",
            "\u{1f}a",
        ] {
            assert_eq!(trim_ws(t, true), t.trim(), "{t:?}");
            assert_eq!(trim_quotes(t), t.trim_matches('"'), "{t:?}");
        }
        assert_eq!(bgr_to_rgb("0", "0"), "#000000");
        assert_eq!(bgr_to_rgb("000", " 000"), "#000000");
    }

    #[test]
    fn typing_and_nudge() {
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\nTypingUser: bob@example.com\r\n\r\n\r\n";
        assert_eq!(
            decode(m, None).unwrap().content.typing_user.as_deref(),
            Some("bob@example.com")
        );
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/x-msnmsgr-datacast\r\n\r\nID: 1\r\n\r\n";
        let v = decode(m, None).unwrap();
        let d = v.content.datacast.unwrap();
        assert_eq!(d.id, Some(1));
        assert_eq!(d.name, "nudge");
    }

    #[test]
    fn profile_port_is_swapped_and_mspauth_is_secret() {
        // 18183 = 0x4707; swapped 0x0747 = 1863.
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsprofile; charset=UTF-8\r\nMSPAuth: 7secretAAA\r\nClientPort: 18183\r\n\r\n";
        let mut v = decode(m, None).unwrap();
        assert_eq!(v.content.client_port, Some(1863));
        assert!(v.redact());
        let j = serde_json::to_string(&v).unwrap();
        assert!(!j.contains("7secretAAA"), "{j}");
        assert!(!v.redact());
    }

    #[test]
    fn not_mime_is_an_error() {
        assert!(decode(b"\x00\x01binary", None).is_err());
    }

    #[test]
    fn msnftp_invitation_is_structured_and_its_cookie_secret() {
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\nApplication-Name: File Transfer\r\nApplication-GUID: {5D3E02AB-6190-11D3-BBBB-00C04F795683}\r\nInvitation-Command: INVITE\r\nInvitation-Cookie: 12345\r\nApplication-File: notes.txt\r\nApplication-FileSize: 2048\r\n\r\n";
        let v = decode(m, Some(7)).unwrap();
        let f = v.content.msnftp.as_ref().unwrap();
        assert_eq!(f.command.as_deref(), Some("INVITE"));
        assert_eq!(f.cookie.as_deref(), Some("12345"));
        assert_eq!(f.application.as_deref(), Some("file_transfer"));
        assert_eq!(f.file_name.as_deref(), Some("notes.txt"));
        assert_eq!(f.file_size, Some(2048));
        let m = b"MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\nInvitation-Command: ACCEPT\r\nInvitation-Cookie: 12345\r\nIP-Address: 192.0.2.7\r\nPort: 6891\r\nAuthCookie: 99887766\r\nSender-Connect: TRUE\r\n\r\n";
        let mut v = decode(m, Some(7)).unwrap();
        let f = v.content.msnftp.as_ref().unwrap();
        assert_eq!(f.command.as_deref(), Some("ACCEPT"));
        assert!(f.application.is_none());
        assert_eq!(f.address.as_deref(), Some("192.0.2.7:6891"));
        assert_eq!(f.auth_cookie.as_ref().unwrap().expose(), "99887766");
        assert!(v.redact());
        let j = serde_json::to_string(&v).unwrap();
        assert!(!j.contains("99887766"), "{j}");
    }

    #[test]
    fn p2p_body_is_kept_with_its_offset() {
        let mut m = b"MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: bob@example.com\r\n\r\n".to_vec();
        let head = m.len();
        m.extend_from_slice(&p2p::build::v1(9, 2, 0, 3, 0x20, b"abc", Some(1)));
        let v = decode(&m, Some(11)).unwrap();
        assert_eq!(v.content.body_offset, Some(head));
        let p = v.content.p2p.as_ref().unwrap();
        assert_eq!(p.header, p2p::Layout::V1);
        assert_eq!(p.session_id, Some(9));
        assert_eq!(v.content.body.as_ref().unwrap().bytes(), &m[head..]);
    }

    #[test]
    fn multipart_blocks() {
        let m = b"Routing: 1.0\r\nTo: 1:bob@example.com\r\nFrom: 1:alice@example.com;epid={x}\r\n\r\nReliability: 1.0\r\n\r\nMessaging: 2.0\r\nMessage-Type: Text\r\nContent-Type: Text/plain; charset=UTF-8\r\nContent-Length: 2\r\n\r\nhi";
        let v = decode_multipart(m, Some(21)).unwrap();
        assert_eq!(
            v.block("routing").unwrap().headers[1].1,
            "1:bob@example.com"
        );
        assert_eq!(v.block("messaging").unwrap().headers[1].1, "Text");
        assert_eq!(v.content_type, "text/plain");
        assert_eq!(v.content.text(), Some("hi"));
        let j = serde_json::to_value(&v).unwrap();
        let back: Multipart = serde_json::from_value(j).unwrap();
        assert_eq!(back, v);
    }
}
