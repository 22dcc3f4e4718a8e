//! The binary header of application/x-msnmsgrp2p bodies (P2P v1: 48 bytes little-endian,
//! then data, then a 4-byte big-endian application id footer).

use serde_json::{json, Map, Value};

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
    ]
    .iter()
    .filter(|(b, _)| f & b != 0)
    .map(|(_, n)| *n)
    .collect()
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

/// Decodes the P2P v1 header and footer of `body`.
pub fn decode(body: &[u8], _version: Option<u8>, _dest: Option<&str>) -> Value {
    if body.len() < 48 {
        return json!({"problem": format!("P2P body of {} bytes is shorter than the 48-byte header", body.len())});
    }
    let h = &body[..48];
    let flags = u32le(h, 28);
    let size = u32le(h, 24) as usize;
    let mut o = Map::new();
    o.insert("header".into(), json!("v1"));
    o.insert("session_id".into(), json!(u32le(h, 0)));
    o.insert("identifier".into(), json!(u32le(h, 4)));
    o.insert("offset".into(), json!(u64le(h, 8)));
    o.insert("total_size".into(), json!(u64le(h, 16)));
    o.insert("message_size".into(), json!(size));
    o.insert("flags".into(), json!(flags));
    o.insert("flag_names".into(), json!(flag_names(flags)));
    o.insert("ack_session_id".into(), json!(u32le(h, 32)));
    o.insert("ack_identifier".into(), json!(u32le(h, 36)));
    o.insert("ack_total_size".into(), json!(u64le(h, 40)));
    let rest = &body[48..];
    let data_len = size.min(rest.len());
    let data = &rest[..data_len];
    if rest.len() >= data_len + 4 {
        let f = &rest[data_len..data_len + 4];
        o.insert(
            "app_id".into(),
            json!(u32::from_be_bytes([f[0], f[1], f[2], f[3]])),
        );
    }
    if size > rest.len() {
        o.insert(
            "problem".into(),
            json!(format!(
                "header says {size} data bytes, {} present",
                rest.len()
            )),
        );
    }
    if u32le(h, 0) == 0 && !data.is_empty() {
        // Session 0 carries MSNSLP text.
        let text = String::from_utf8_lossy(data);
        o.insert("slp".into(), json!(text.trim_end_matches('\0')));
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_header_fields_by_offset() {
        let mut b = vec![0u8; 48];
        b[0..4].copy_from_slice(&7u32.to_le_bytes()); // session
        b[4..8].copy_from_slice(&0x01020304u32.to_le_bytes()); // identifier
        b[8..16].copy_from_slice(&1200u64.to_le_bytes()); // offset
        b[16..24].copy_from_slice(&5000u64.to_le_bytes()); // total
        b[24..28].copy_from_slice(&3u32.to_le_bytes()); // message size
        b[28..32].copy_from_slice(&0x20u32.to_le_bytes()); // flags
        b.extend_from_slice(b"abc");
        b.extend_from_slice(&12u32.to_be_bytes());
        let v = decode(&b, Some(11), None);
        assert_eq!(v["session_id"], 7);
        assert_eq!(v["identifier"], 0x01020304);
        assert_eq!(v["offset"], 1200);
        assert_eq!(v["total_size"], 5000);
        assert_eq!(v["message_size"], 3);
        assert_eq!(v["flag_names"], json!(["data"]));
        assert_eq!(v["app_id"], 12);
    }

    #[test]
    fn short_body_is_a_problem_not_a_panic() {
        assert!(decode(&[0u8; 10], None, None)["problem"].is_string());
        let mut b = vec![0u8; 48];
        b[24..28].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode(&b, None, None)["problem"].is_string());
    }
}
