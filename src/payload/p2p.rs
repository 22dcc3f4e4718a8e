//! The binary header of application/x-msnmsgrp2p bodies: P2P v1 (48 bytes little-endian)
//! and P2P v2 / TLP (MSNP16+, big-endian, with TLVs), plus the 4-byte big-endian application
//! id footer. Decodes one chunk into JSON; it never reassembles chunks (analysis::extract
//! does) and never trusts a length field beyond the bytes it was given.

use serde_json::{json, Map, Value};

use super::slp;

/// Flag names of the v1 header (protocol-facts F.2).
pub fn flag_names(f: u32) -> Vec<&'static str> {
    let exact = match f {
        0 => Some("none"),
        0x0100_0000 => Some("msnslp_info"),
        0x0100_0020 => Some("msnobj_data"),
        0x0100_0030 => Some("file_data"),
        _ => None,
    };
    if let Some(e) = exact {
        return vec![e];
    }
    [
        (0x1, "nak"),
        (0x2, "ack"),
        (0x4, "require_ack"),
        (0x8, "error"),
        (0x10, "file"),
        (0x20, "data"),
        (0x40, "close_ack"),
        (0x80, "tlp_error"),
        (0x100, "direct_handshake"),
        (0x0100_0000, "msnslp_info"),
    ]
    .iter()
    .filter(|(b, _)| f & b != 0)
    .map(|(_, n)| *n)
    .collect()
}

/// Names of the v2 data header's TF combination (protocol-facts F.3).
pub fn tf_names(tf: u8) -> Vec<&'static str> {
    let mut v = Vec::new();
    if tf & 0x1 != 0 {
        v.push("first");
    }
    match tf & !0x1 {
        0 => {}
        4 => v.push("msnobj"),
        6 => v.push("file"),
        _ => v.push("unknown"),
    }
    if v.is_empty() {
        v.push("none");
    }
    v
}

/// Names of the v2 header opcode bits.
pub fn opcode_names(op: u8) -> Vec<&'static str> {
    let mut v = Vec::new();
    if op & 0x1 != 0 {
        v.push("syn");
    }
    if op & 0x2 != 0 {
        v.push("rak");
    }
    if op & !0x3 != 0 {
        v.push("unknown");
    }
    if v.is_empty() {
        v.push("none");
    }
    v
}

/// What the footer's application id says the session carries.
pub fn app_name(id: u32) -> &'static str {
    match id {
        0 => "none",
        1 => "msnobj",
        2 => "file_transfer",
        11 => "custom_emoticon",
        12 => "display_picture",
        _ => "unknown",
    }
}

/// The two header layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    V1,
    V2,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::V1 => "v1",
            Layout::V2 => "v2",
        }
    }
}

/// What the decoder knows about the context of one P2P body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hint<'a> {
    /// The negotiated MSNP version of the connection.
    pub version: Option<u8>,
    /// The `P2P-Dest` header (`handle` or `handle;{guid}`).
    pub dest: Option<&'a str>,
    /// The `P2P-Src` header, when present.
    pub src: Option<&'a str>,
}

fn u16be(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}
fn u32be(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64le(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes([
        b[o],
        b[o + 1],
        b[o + 2],
        b[o + 3],
        b[o + 4],
        b[o + 5],
        b[o + 6],
        b[o + 7],
    ])
}

/// Big-endian integer of up to 8 bytes.
fn be_uint(b: &[u8]) -> u64 {
    b.iter().take(8).fold(0u64, |a, &x| (a << 8) | x as u64)
}

/// True when the v1 header's sizes agree with the body length (with or without footer).
fn fits_v1(body: &[u8]) -> bool {
    if body.len() < 48 {
        return false;
    }
    let size = u32le(body, 24) as usize;
    let rest = body.len() - 48;
    let off = u64le(body, 8);
    let total = u64le(body, 16);
    (rest == size || rest == size + 4) && off.saturating_add(size as u64) <= total.max(size as u64)
}

/// True when the v2 header's lengths agree with the body length.
fn fits_v2(body: &[u8]) -> bool {
    if body.len() < 8 {
        return false;
    }
    let hl = body[0] as usize;
    let op = body[1];
    let size = u16be(body, 2) as usize;
    if hl < 8 || op > 3 || hl > body.len() {
        return false;
    }
    let rest = body.len() - hl;
    if rest != size && rest != size + 4 {
        return false;
    }
    if size > 0 {
        let dhl = body[hl] as usize;
        if dhl < 8 || dhl > size {
            return false;
        }
    }
    true
}

/// Decides between v1 and v2 and says why.
pub fn choose_layout(body: &[u8], hint: &Hint) -> (Layout, String) {
    let guid = [hint.dest, hint.src]
        .iter()
        .flatten()
        .any(|h| h.contains(";{"));
    let (v1, v2) = (fits_v1(body), fits_v2(body));
    let expected = if guid {
        Some((
            Layout::V2,
            "P2P-Dest/P2P-Src name an endpoint GUID".to_string(),
        ))
    } else {
        hint.version
            .filter(|&v| v < 16)
            .map(|v| (Layout::V1, format!("MSNP{v} predates P2P v2")))
    };
    let fits = |l: Layout| if l == Layout::V1 { v1 } else { v2 };
    match expected {
        Some((l, why)) if fits(l) => (l, why),
        Some((l, why)) => {
            let other = if l == Layout::V1 {
                Layout::V2
            } else {
                Layout::V1
            };
            if fits(other) {
                (
                    other,
                    format!(
                        "assumed {}: the lengths fit it, not {} ({why})",
                        other.as_str(),
                        l.as_str()
                    ),
                )
            } else {
                (l, why)
            }
        }
        None => match (v1, v2) {
            (true, false) => (Layout::V1, "assumed v1: only the v1 lengths fit".into()),
            (false, true) => (Layout::V2, "assumed v2: only the v2 lengths fit".into()),
            (true, true) => (
                Layout::V1,
                "assumed v1: both layouts fit and no endpoint GUID was given".into(),
            ),
            (false, false) => (
                Layout::V1,
                "assumed v1: neither layout's lengths fit".into(),
            ),
        },
    }
}

/// Decodes the P2P header, data position and footer of `body` (one chunk).
///
/// Fields the extractor relies on: `header`, `session_id`, `identifier`, `kind` (`slp`,
/// `data`, `data_preparation`, `ack`, `nak`, `control`, ...), `data_start`, `data_length`,
/// and `offset`/`total_size` (v1, or v2 first chunks) or `data_remaining` (v2).
pub fn decode(body: &[u8], hint: Hint) -> Value {
    let (layout, why) = choose_layout(body, &hint);
    let mut o = Map::new();
    o.insert("header".into(), json!(layout.as_str()));
    o.insert("header_basis".into(), json!(why));
    let res = match layout {
        Layout::V1 => decode_v1(body, &mut o),
        Layout::V2 => decode_v2(body, &mut o),
    };
    if let Err(p) = res {
        o.insert("problem".into(), json!(p));
    }
    Value::Object(o)
}

/// Puts the data position, the footer and the SLP text (if whole) into `o`.
fn finish_chunk(
    o: &mut Map<String, Value>,
    body: &[u8],
    start: usize,
    declared: usize,
    slp_whole: bool,
) -> Result<(), String> {
    let rest = &body[start..];
    let data_len = declared.min(rest.len());
    let data = &rest[..data_len];
    o.insert("data_start".into(), json!(start));
    o.insert("data_length".into(), json!(data_len));
    if rest.len() >= data_len + 4 {
        let f = &rest[data_len..data_len + 4];
        let id = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
        o.insert("app_id".into(), json!(id));
        o.insert("app_name".into(), json!(app_name(id)));
    }
    if o.get("kind").and_then(Value::as_str) == Some("slp") && !data.is_empty() {
        if slp_whole {
            match slp::parse(data) {
                Ok(v) => {
                    o.insert("slp".into(), v);
                }
                Err(e) => {
                    o.insert("slp_problem".into(), json!(e));
                }
            }
        } else {
            // Part of a larger SLP message: the extractor reassembles it.
            let first = data.split(|&c| c == b'\n').next().unwrap_or(&[]);
            o.insert(
                "slp_fragment".into(),
                json!(String::from_utf8_lossy(first).trim_end()),
            );
        }
    }
    if declared > rest.len() {
        return Err(format!(
            "header says {declared} data bytes, {} present",
            rest.len()
        ));
    }
    Ok(())
}

fn decode_v1(body: &[u8], o: &mut Map<String, Value>) -> Result<(), String> {
    if body.len() < 48 {
        return Err(format!(
            "P2P body of {} bytes is shorter than the 48-byte v1 header",
            body.len()
        ));
    }
    let h = &body[..48];
    let session = u32le(h, 0);
    let offset = u64le(h, 8);
    let total = u64le(h, 16);
    let size = u32le(h, 24) as usize;
    let flags = u32le(h, 28);
    o.insert("session_id".into(), json!(session));
    o.insert("identifier".into(), json!(u32le(h, 4)));
    o.insert("offset".into(), json!(offset));
    o.insert("total_size".into(), json!(total));
    o.insert("message_size".into(), json!(size));
    o.insert("flags".into(), json!(flags));
    o.insert("flag_names".into(), json!(flag_names(flags)));
    o.insert("ack_session_id".into(), json!(u32le(h, 32)));
    o.insert("ack_identifier".into(), json!(u32le(h, 36)));
    o.insert("ack_total_size".into(), json!(u64le(h, 40)));
    let avail = size.min(body.len() - 48);
    let data = &body[48..48 + avail];
    let kind = if flags & 0x1 != 0 {
        "nak"
    } else if flags & 0x2 != 0 {
        "ack"
    } else if flags & 0x8 != 0 || flags & 0x80 != 0 {
        "error"
    } else if flags & 0x40 != 0 {
        "close_ack"
    } else if flags & 0x100 != 0 {
        "direct_handshake"
    } else if size == 0 {
        "control"
    } else if session == 0 {
        "slp"
    } else if flags & 0x30 != 0 {
        "data"
    } else if total == 4 && size == 4 && data.iter().all(|&b| b == 0) {
        "data_preparation"
    } else {
        "data"
    };
    o.insert("kind".into(), json!(kind));
    if kind == "ack" || kind == "nak" {
        // Captures show the acknowledged message's identifier at offset 32 (the field MSNPSharp
        // calls AckSessionID); offset 36 echoes that message's own offset-32 value.
        o.insert("acked_identifier".into(), json!(u32le(h, 32)));
    }
    let whole = offset == 0 && total == size as u64;
    finish_chunk(o, body, 48, size, whole)
}

/// Decodes a TLV list; type 0 is padding and ends the list.
fn tlvs(b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 <= b.len() {
        let (t, l) = (b[i], b[i + 1] as usize);
        if t == 0 {
            break;
        }
        let end = (i + 2 + l).min(b.len());
        out.push((t, &b[i + 2..end]));
        i = end;
    }
    out
}

fn tlv_json(t: u8, v: &[u8], name: &str, value: Value) -> Value {
    json!({"type": t, "name": name, "length": v.len(), "value": value})
}

fn decode_v2(body: &[u8], o: &mut Map<String, Value>) -> Result<(), String> {
    if body.len() < 8 {
        return Err(format!(
            "P2P body of {} bytes is shorter than the 8-byte v2 header",
            body.len()
        ));
    }
    let hl = body[0] as usize;
    let op = body[1];
    let size = u16be(body, 2) as usize;
    o.insert("header_length".into(), json!(hl));
    o.insert("opcode".into(), json!(op));
    o.insert("opcode_names".into(), json!(opcode_names(op)));
    o.insert("message_size".into(), json!(size));
    o.insert("identifier".into(), json!(u32be(body, 4)));
    if hl < 8 || hl > body.len() {
        return Err(format!(
            "v2 header length {hl} does not fit a body of {} bytes",
            body.len()
        ));
    }
    let mut list = Vec::new();
    let mut kind = "control";
    for (t, v) in tlvs(&body[8..hl]) {
        let item = match (t, v.len()) {
            (1, 12) => {
                let info = json!({
                    "protocol_version": u16be(v, 0),
                    "implementation_id": u16be(v, 2),
                    "version": u16be(v, 4),
                    "reserved": u16be(v, 6),
                    "capabilities": u32be(v, 8),
                });
                o.insert("peer_info".into(), info.clone());
                tlv_json(t, v, "peer_info", info)
            }
            (2, 4 | 8) => {
                o.insert("ack_identifier".into(), json!(be_uint(v)));
                o.insert("acked_identifier".into(), json!(be_uint(v)));
                kind = "ack";
                tlv_json(t, v, "ack", json!(be_uint(v)))
            }
            (3, 4 | 8) => {
                o.insert("nak_identifier".into(), json!(be_uint(v)));
                kind = "nak";
                tlv_json(t, v, "nak", json!(be_uint(v)))
            }
            _ => tlv_json(t, v, "unknown", json!(super::b64(v))),
        };
        list.push(item);
    }
    o.insert("tlvs".into(), Value::Array(list));
    if size == 0 {
        if op & 0x1 != 0 && kind == "control" {
            kind = "syn";
        }
        o.insert("kind".into(), json!(kind));
        return finish_chunk(o, body, hl, 0, false);
    }
    let d = &body[hl..];
    if d.len() < 8 {
        o.insert("kind".into(), json!("control"));
        return Err(format!(
            "v2 message of {size} bytes but only {} after the header",
            d.len()
        ));
    }
    let dhl = d[0] as usize;
    let tf = d[1];
    let session = u32be(d, 4);
    o.insert("data_header_length".into(), json!(dhl));
    o.insert("tf_combination".into(), json!(tf));
    o.insert("tf_names".into(), json!(tf_names(tf)));
    o.insert("package_number".into(), json!(u16be(d, 2)));
    o.insert("session_id".into(), json!(session));
    if dhl < 8 || dhl > size || dhl > d.len() {
        o.insert("kind".into(), json!("control"));
        return Err(format!(
            "v2 data header length {dhl} does not fit message size {size}"
        ));
    }
    let mut remaining = None;
    let mut dl = Vec::new();
    for (t, v) in tlvs(&d[8..dhl]) {
        if t == 1 && v.len() == 8 {
            remaining = Some(be_uint(v));
            dl.push(tlv_json(t, v, "data_remaining", json!(be_uint(v))));
        } else {
            dl.push(tlv_json(t, v, "unknown", json!(super::b64(v))));
        }
    }
    o.insert("data_tlvs".into(), Value::Array(dl));
    let data_size = size - dhl;
    let start = hl + dhl;
    let avail = data_size.min(body.len() - start);
    let data = &body[start..start + avail];
    let rem = remaining.unwrap_or(0);
    o.insert("data_remaining".into(), json!(rem));
    let first = tf & 0x1 != 0;
    if first {
        o.insert("offset".into(), json!(0));
        o.insert(
            "total_size".into(),
            json!((data_size as u64).saturating_add(rem)),
        );
    }
    let kind = if session == 0 {
        "slp"
    } else if tf & 0x4 != 0 {
        "data"
    } else if first && rem == 0 && data_size == 4 && data.iter().all(|&b| b == 0) {
        "data_preparation"
    } else {
        "data"
    };
    o.insert("kind".into(), json!(kind));
    finish_chunk(o, body, start, data_size, first && rem == 0)
}

/// Builders for well-formed P2P bodies, for tests (here and in analysis) and synthetic inputs.
pub mod build {
    /// A v1 body: 48-byte header, `data`, and a footer when `app_id` is given.
    #[allow(clippy::too_many_arguments)]
    pub fn v1(
        session: u32,
        identifier: u32,
        offset: u64,
        total: u64,
        flags: u32,
        data: &[u8],
        app_id: Option<u32>,
    ) -> Vec<u8> {
        let mut b = Vec::with_capacity(52 + data.len());
        b.extend_from_slice(&session.to_le_bytes());
        b.extend_from_slice(&identifier.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
        b.extend_from_slice(&total.to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&[0u8; 16]);
        b.extend_from_slice(data);
        if let Some(a) = app_id {
            b.extend_from_slice(&a.to_be_bytes());
        }
        b
    }

    /// A v2 body with one data chunk: header (optionally with an ACK TLV), data header with
    /// the data-remaining TLV, `data`, and a footer.
    #[allow(clippy::too_many_arguments)]
    pub fn v2(
        identifier: u32,
        ack: Option<u32>,
        tf: u8,
        package: u16,
        session: u32,
        remaining: u64,
        data: &[u8],
        app_id: u32,
    ) -> Vec<u8> {
        let mut htlv = Vec::new();
        if let Some(a) = ack {
            htlv.extend_from_slice(&[2, 4]);
            htlv.extend_from_slice(&a.to_be_bytes());
            htlv.extend_from_slice(&[0, 0]); // padding to a multiple of 4
        }
        let dtlv: Vec<u8> = if data.is_empty() {
            Vec::new()
        } else {
            let mut t = vec![1, 8];
            t.extend_from_slice(&remaining.to_be_bytes());
            t.extend_from_slice(&[0, 0]);
            t
        };
        let hl = 8 + htlv.len();
        let msg = if data.is_empty() {
            0
        } else {
            8 + dtlv.len() + data.len()
        };
        let mut b = vec![hl as u8, 0];
        b.extend_from_slice(&(msg as u16).to_be_bytes());
        b.extend_from_slice(&identifier.to_be_bytes());
        b.extend_from_slice(&htlv);
        if !data.is_empty() {
            b.push((8 + dtlv.len()) as u8);
            b.push(tf);
            b.extend_from_slice(&package.to_be_bytes());
            b.extend_from_slice(&session.to_be_bytes());
            b.extend_from_slice(&dtlv);
            b.extend_from_slice(data);
        }
        b.extend_from_slice(&app_id.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(v: Option<u8>) -> Hint<'static> {
        Hint {
            version: v,
            dest: None,
            src: None,
        }
    }

    #[test]
    fn decodes_v1_header_fields_by_offset() {
        let mut b = vec![0u8; 48];
        b[0..4].copy_from_slice(&7u32.to_le_bytes()); // session
        b[4..8].copy_from_slice(&0x01020304u32.to_le_bytes()); // identifier
        b[8..16].copy_from_slice(&1200u64.to_le_bytes()); // offset
        b[16..24].copy_from_slice(&5000u64.to_le_bytes()); // total
        b[24..28].copy_from_slice(&3u32.to_le_bytes()); // message size
        b[28..32].copy_from_slice(&0x20u32.to_le_bytes()); // flags
        b[32..36].copy_from_slice(&9u32.to_le_bytes()); // ack session id
        b.extend_from_slice(b"abc");
        b.extend_from_slice(&12u32.to_be_bytes());
        let v = decode(&b, hint(Some(11)));
        assert_eq!(v["header"], "v1");
        assert_eq!(v["session_id"], 7);
        assert_eq!(v["identifier"], 0x01020304);
        assert_eq!(v["offset"], 1200);
        assert_eq!(v["total_size"], 5000);
        assert_eq!(v["message_size"], 3);
        assert_eq!(v["flag_names"], json!(["data"]));
        assert_eq!(v["ack_session_id"], 9);
        assert_eq!(v["app_id"], 12);
        assert_eq!(v["app_name"], "display_picture");
        assert_eq!(v["kind"], "data");
        assert_eq!(v["data_start"], 48);
        assert_eq!(v["data_length"], 3);
        assert!(v.get("problem").is_none());
    }

    #[test]
    fn v1_ack_and_preparation_kinds() {
        let mut ack = build::v1(0, 5, 0, 329, 0x2, &[], Some(0));
        ack[32..36].copy_from_slice(&4258587639u32.to_le_bytes());
        let v = decode(&ack, hint(Some(11)));
        assert_eq!(v["kind"], "ack");
        assert_eq!(v["acked_identifier"], 4258587639u32);
        let prep = build::v1(44, 6, 0, 4, 0, &[0, 0, 0, 0], Some(1));
        assert_eq!(decode(&prep, hint(Some(11)))["kind"], "data_preparation");
    }

    #[test]
    fn v1_whole_slp_is_parsed_fragment_is_marked() {
        let text = b"BYE MSNMSGR:bob@example.com MSNSLP/1.0\r\nTo: <msnmsgr:bob@example.com>\r\nFrom: <msnmsgr:alice@example.com>\r\nCall-ID: {1}\r\nContent-Type: application/x-msnmsgr-sessionclosebody\r\nContent-Length: 3\r\n\r\n\r\n\0";
        let whole = build::v1(0, 1, 0, text.len() as u64, 0, text, Some(0));
        let v = decode(&whole, hint(Some(11)));
        assert_eq!(v["kind"], "slp");
        assert_eq!(v["slp"]["method"], "BYE");
        let part = build::v1(0, 1, 0, text.len() as u64 + 100, 0, text, Some(0));
        let v = decode(&part, hint(Some(11)));
        assert!(v.get("slp").is_none());
        assert_eq!(v["slp_fragment"], "BYE MSNMSGR:bob@example.com MSNSLP/1.0");
    }

    #[test]
    fn decodes_v2_header_and_tlvs_by_hand() {
        // Built by hand: header length 16 (8 + ACK TLV 2,4,<id> + 2 padding), opcode RAK,
        // message size 8 + 12 + 3 = 23, identifier 0x11223344.
        let mut b = vec![16, 0x02, 0, 23, 0x11, 0x22, 0x33, 0x44];
        b.extend_from_slice(&[2, 4, 0, 0, 0x01, 0x00, 0, 0]);
        // Data header: length 20, TF 5 (first|msnobj), package 7, session 0x0a0b0c0d,
        // TLV 1 (8 bytes) remaining = 1000, 2 padding bytes.
        b.extend_from_slice(&[20, 5, 0, 7, 0x0a, 0x0b, 0x0c, 0x0d]);
        b.extend_from_slice(&[1, 8, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0]);
        b.extend_from_slice(b"xyz");
        b.extend_from_slice(&[0, 0, 0, 12]);
        let v = decode(
            &b,
            Hint {
                version: Some(18),
                dest: Some("bob@example.com;{aa}"),
                src: None,
            },
        );
        assert_eq!(v["header"], "v2");
        assert_eq!(v["header_basis"], "P2P-Dest/P2P-Src name an endpoint GUID");
        assert_eq!(v["opcode_names"], json!(["rak"]));
        assert_eq!(v["identifier"], 0x11223344u32);
        assert_eq!(v["ack_identifier"], 256);
        assert_eq!(v["kind"], "data");
        assert_eq!(v["tf_names"], json!(["first", "msnobj"]));
        assert_eq!(v["package_number"], 7);
        assert_eq!(v["session_id"], 0x0a0b0c0du32);
        assert_eq!(v["data_remaining"], 1000);
        assert_eq!(v["offset"], 0);
        assert_eq!(v["total_size"], 1003);
        assert_eq!(v["data_start"], 36);
        assert_eq!(v["data_length"], 3);
        assert_eq!(v["app_id"], 12);
        assert!(v.get("problem").is_none(), "{v}");
        // The builder produces the same bytes, except that it sets no opcode.
        b[1] = 0;
        assert_eq!(
            build::v2(0x11223344, Some(256), 5, 7, 0x0a0b0c0d, 1000, b"xyz", 12),
            b
        );
    }

    #[test]
    fn layout_is_sniffed_when_unknown() {
        let v2 = build::v2(1, None, 4, 1, 9, 0, b"hello", 1);
        let v = decode(&v2, hint(None));
        assert_eq!(v["header"], "v2");
        assert_eq!(v["header_basis"], "assumed v2: only the v2 lengths fit");
        let v1 = build::v1(9, 1, 0, 5, 0x20, b"hello", Some(1));
        let v = decode(&v1, hint(Some(18)));
        assert_eq!(v["header"], "v1");
        assert!(v["header_basis"]
            .as_str()
            .unwrap()
            .starts_with("assumed v1"));
        // MSNP11 says v1 even though sniffing would be needed otherwise.
        assert_eq!(
            decode(&v1, hint(Some(11)))["header_basis"],
            "MSNP11 predates P2P v2"
        );
    }

    #[test]
    fn short_or_lying_bodies_are_problems_not_panics() {
        assert!(decode(&[0u8; 10], hint(None))["problem"].is_string());
        let mut b = vec![0u8; 48];
        b[24..28].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode(&b, hint(Some(11)))["problem"].is_string());
        // v2 with a data header length larger than the message.
        let mut b = vec![8, 0, 0, 9, 0, 0, 0, 1, 200, 4, 0, 1, 0, 0, 0, 1, 0];
        assert!(decode(
            &b,
            Hint {
                version: Some(18),
                dest: Some("a;{b}"),
                src: None
            }
        )["problem"]
            .is_string());
        b.truncate(9);
        assert!(decode(
            &b,
            Hint {
                version: Some(18),
                dest: Some("a;{b}"),
                src: None
            }
        )["problem"]
            .is_string());
        for n in 0..60 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let _ = decode(&junk, hint(None));
            let _ = decode(
                &junk,
                Hint {
                    version: Some(18),
                    dest: Some("x;{y}"),
                    src: None,
                },
            );
        }
    }
}
