//! The binary header of application/x-msnmsgrp2p bodies: P2P v1 (48 bytes little-endian)
//! and P2P v2 / TLP (MSNP16+, big-endian, with TLVs), plus the 4-byte big-endian application
//! id footer. Decodes one chunk; it never reassembles chunks (analysis::extract does) and
//! never trusts a length field beyond the bytes it was given.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{owned, owned_opt, slp, Bytes, Slp};
use crate::secret::Redact;

/// The first MSNP version whose clients may use P2P v2 (MSNP16, WLM 2009): before it a
/// body is v1 unless its lengths say otherwise.
pub const V2_FROM: u8 = 16;

/// v1 flag values named as a whole (protocol-facts F.2).
pub const FLAG_VALUES: &[(u32, &str)] = &[
    (0, "none"),
    (0x0100_0000, "msnslp_info"),
    (0x0100_0020, "msnobj_data"),
    (0x0100_0030, "file_data"),
];

/// v1 flag bits, named one by one when the value is none of [`FLAG_VALUES`].
pub const FLAG_BITS: &[(u32, &str)] = &[
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
];

/// v2 opcode bits (protocol-facts F.3); any other bit is "unknown".
pub const OPCODE_BITS: &[(u8, &str)] = &[(0x1, "syn"), (0x2, "rak")];

/// The v2 TF bit of a first chunk, and the kinds of the other TF bits.
pub const TF_FIRST: u8 = 0x1;
pub const TF_KINDS: &[(u8, &str)] = &[(4, "msnobj"), (6, "file")];

/// Footer application ids (protocol-facts F.2); any other is "unknown".
pub const APP_NAMES: &[(u32, &str)] = &[
    (0, "none"),
    (1, "msnobj"),
    (2, "file_transfer"),
    (11, "custom_emoticon"),
    (12, "display_picture"),
];

/// Flag names of the v1 header (protocol-facts F.2).
pub fn flag_names(f: u32) -> Vec<&'static str> {
    if let Some((_, e)) = FLAG_VALUES.iter().find(|(v, _)| *v == f) {
        return vec![e];
    }
    FLAG_BITS
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// Names of the v2 data header's TF combination (protocol-facts F.3).
pub fn tf_names(tf: u8) -> Vec<&'static str> {
    let mut v = Vec::new();
    if tf & TF_FIRST != 0 {
        v.push("first");
    }
    match tf & !TF_FIRST {
        0 => {}
        k => v.push(
            TF_KINDS
                .iter()
                .find(|(x, _)| *x == k)
                .map_or("unknown", |(_, n)| *n),
        ),
    }
    if v.is_empty() {
        v.push("none");
    }
    v
}

/// Names of the v2 header opcode bits.
pub fn opcode_names(op: u8) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = OPCODE_BITS
        .iter()
        .filter(|(b, _)| op & b != 0)
        .map(|(_, n)| *n)
        .collect();
    let known = OPCODE_BITS.iter().fold(0u8, |a, (b, _)| a | b);
    if op & !known != 0 {
        v.push("unknown");
    }
    if v.is_empty() {
        v.push("none");
    }
    v
}

/// What the footer's application id says the session carries.
pub fn app_name(id: u32) -> &'static str {
    APP_NAMES
        .iter()
        .find(|(x, _)| *x == id)
        .map_or("unknown", |(_, n)| *n)
}

/// The two header layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// What a chunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkKind {
    Slp,
    Data,
    DataPreparation,
    Ack,
    Nak,
    Control,
    Syn,
    Error,
    CloseAck,
    DirectHandshake,
}

impl ChunkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkKind::Slp => "slp",
            ChunkKind::Data => "data",
            ChunkKind::DataPreparation => "data_preparation",
            ChunkKind::Ack => "ack",
            ChunkKind::Nak => "nak",
            ChunkKind::Control => "control",
            ChunkKind::Syn => "syn",
            ChunkKind::Error => "error",
            ChunkKind::CloseAck => "close_ack",
            ChunkKind::DirectHandshake => "direct_handshake",
        }
    }
}

/// The v2 peer-info TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub protocol_version: u16,
    pub implementation_id: u16,
    pub version: u16,
    pub reserved: u16,
    pub capabilities: u32,
}

/// A TLV value, as far as its type is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TlvValue<'a> {
    Number(u64),
    PeerInfo(PeerInfo),
    Raw(Bytes<'a>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tlv<'a> {
    #[serde(rename = "type")]
    pub ty: u8,
    pub name: Cow<'a, str>,
    pub length: usize,
    pub value: TlvValue<'a>,
}

fn names(v: Vec<&'static str>) -> Vec<Cow<'static, str>> {
    v.into_iter().map(Cow::Borrowed).collect()
}

/// One decoded P2P chunk. Fields of the other layout are absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct P2p<'a> {
    pub header: Layout,
    /// Why this layout was chosen: the P2P-Dest/P2P-Src endpoint GUID, the MSNP version, or
    /// which layout's lengths fit when it had to be sniffed.
    pub header_basis: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ChunkKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_size: Option<u64>,
    /// Where the chunk's data starts in the P2P body, and how many bytes of it are present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_start: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<Cow<'a, str>>,
    /// v1, and v2 first chunks: where the chunk sits in the whole message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flag_names: Vec<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_session_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_identifier: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_total_size: Option<u64>,
    /// On acknowledgements: the identifier of the message acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_identifier: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nak_identifier: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opcode: Option<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opcode_names: Vec<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlvs: Option<Vec<Tlv<'a>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_info: Option<PeerInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_header_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tf_combination: Option<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tf_names: Vec<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_number: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_tlvs: Option<Vec<Tlv<'a>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_remaining: Option<u64>,
    /// A whole SLP message (session 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slp: Option<Box<Slp<'a>>>,
    /// The first line of a chunk of a longer SLP message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slp_fragment: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slp_problem: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Cow<'a, str>>,
}

impl<'a> P2p<'a> {
    fn new(header: Layout, header_basis: Cow<'a, str>) -> Self {
        P2p {
            header,
            header_basis,
            kind: None,
            session_id: None,
            identifier: None,
            message_size: None,
            data_start: None,
            data_length: None,
            app_id: None,
            app_name: None,
            offset: None,
            total_size: None,
            flags: None,
            flag_names: Vec::new(),
            ack_session_id: None,
            ack_identifier: None,
            ack_total_size: None,
            acked_identifier: None,
            nak_identifier: None,
            header_length: None,
            opcode: None,
            opcode_names: Vec::new(),
            tlvs: None,
            peer_info: None,
            data_header_length: None,
            tf_combination: None,
            tf_names: Vec::new(),
            package_number: None,
            data_tlvs: None,
            data_remaining: None,
            slp: None,
            slp_fragment: None,
            slp_problem: None,
            problem: None,
        }
    }

    pub fn into_owned(self) -> P2p<'static> {
        let tl = |v: Option<Vec<Tlv<'_>>>| -> Option<Vec<Tlv<'static>>> {
            v.map(|v| {
                v.into_iter()
                    .map(|t| Tlv {
                        ty: t.ty,
                        name: owned(t.name),
                        length: t.length,
                        value: match t.value {
                            TlvValue::Number(n) => TlvValue::Number(n),
                            TlvValue::PeerInfo(p) => TlvValue::PeerInfo(p),
                            TlvValue::Raw(b) => TlvValue::Raw(b.into_owned()),
                        },
                    })
                    .collect()
            })
        };
        let ns = |v: Vec<Cow<'_, str>>| v.into_iter().map(owned).collect();
        P2p {
            header: self.header,
            header_basis: owned(self.header_basis),
            kind: self.kind,
            session_id: self.session_id,
            identifier: self.identifier,
            message_size: self.message_size,
            data_start: self.data_start,
            data_length: self.data_length,
            app_id: self.app_id,
            app_name: owned_opt(self.app_name),
            offset: self.offset,
            total_size: self.total_size,
            flags: self.flags,
            flag_names: ns(self.flag_names),
            ack_session_id: self.ack_session_id,
            ack_identifier: self.ack_identifier,
            ack_total_size: self.ack_total_size,
            acked_identifier: self.acked_identifier,
            nak_identifier: self.nak_identifier,
            header_length: self.header_length,
            opcode: self.opcode,
            opcode_names: ns(self.opcode_names),
            tlvs: tl(self.tlvs),
            peer_info: self.peer_info,
            data_header_length: self.data_header_length,
            tf_combination: self.tf_combination,
            tf_names: ns(self.tf_names),
            package_number: self.package_number,
            data_tlvs: tl(self.data_tlvs),
            data_remaining: self.data_remaining,
            slp: self.slp.map(|s| Box::new(s.into_owned())),
            slp_fragment: owned_opt(self.slp_fragment),
            slp_problem: owned_opt(self.slp_problem),
            problem: owned_opt(self.problem),
        }
    }
}

impl Redact for P2p<'_> {
    fn redact(&mut self) -> bool {
        self.slp.redact()
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
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(x)
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
    (rest == size || rest == size.saturating_add(4))
        && off.saturating_add(size as u64) <= total.max(size as u64)
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
        let dhl = body.get(hl).copied().unwrap_or(0) as usize;
        if dhl < 8 || dhl > size {
            return false;
        }
    }
    true
}

/// Decides between v1 and v2 and says why.
pub fn choose_layout(body: &[u8], hint: &Hint) -> (Layout, Cow<'static, str>) {
    let guid = [hint.dest, hint.src]
        .iter()
        .flatten()
        .any(|h| h.contains(";{"));
    let (v1, v2) = (fits_v1(body), fits_v2(body));
    let expected: Option<(Layout, Cow<'static, str>)> = if guid {
        Some((
            Layout::V2,
            Cow::Borrowed("P2P-Dest/P2P-Src name an endpoint GUID"),
        ))
    } else {
        hint.version
            .filter(|&v| v < V2_FROM)
            .map(|v| (Layout::V1, Cow::Owned(format!("MSNP{v} predates P2P v2"))))
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
                    Cow::Owned(format!(
                        "assumed {}: the lengths fit it, not {} ({why})",
                        other.as_str(),
                        l.as_str()
                    )),
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
pub fn decode<'a>(body: &'a [u8], hint: Hint) -> P2p<'a> {
    let (layout, why) = choose_layout(body, &hint);
    let mut o = P2p::new(layout, why);
    let res = match layout {
        Layout::V1 => decode_v1(body, &mut o),
        Layout::V2 => decode_v2(body, &mut o),
    };
    if let Err(p) = res {
        o.problem = Some(Cow::Owned(p));
    }
    o
}

/// The data position, the footer and the SLP text (if whole).
fn finish_chunk<'a>(
    o: &mut P2p<'a>,
    body: &'a [u8],
    start: usize,
    declared: usize,
    slp_whole: bool,
) -> Result<(), String> {
    let rest = &body[start..];
    let data_len = declared.min(rest.len());
    let data = &rest[..data_len];
    o.data_start = Some(start);
    o.data_length = Some(data_len);
    if rest.len() >= data_len + 4 {
        let id = u32be(rest, data_len);
        o.app_id = Some(id);
        o.app_name = Some(Cow::Borrowed(app_name(id)));
    }
    if o.kind == Some(ChunkKind::Slp) && !data.is_empty() {
        if slp_whole {
            match slp::parse(data) {
                Ok(v) => o.slp = Some(Box::new(v)),
                Err(e) => o.slp_problem = Some(Cow::Owned(e)),
            }
        } else {
            // Part of a larger SLP message: the extractor reassembles it.
            let first = data.split(|&c| c == b'\n').next().unwrap_or(&[]);
            o.slp_fragment = Some(Cow::Owned(
                String::from_utf8_lossy(first).trim_end().to_string(),
            ));
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

fn decode_v1<'a>(body: &'a [u8], o: &mut P2p<'a>) -> Result<(), String> {
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
    o.session_id = Some(session);
    o.identifier = Some(u32le(h, 4));
    o.offset = Some(offset);
    o.total_size = Some(total);
    o.message_size = Some(size as u64);
    o.flags = Some(flags);
    o.flag_names = names(flag_names(flags));
    o.ack_session_id = Some(u32le(h, 32));
    o.ack_identifier = Some(u64::from(u32le(h, 36)));
    o.ack_total_size = Some(u64le(h, 40));
    let avail = size.min(body.len() - 48);
    let data = &body[48..48 + avail];
    let kind = if flags & 0x1 != 0 {
        ChunkKind::Nak
    } else if flags & 0x2 != 0 {
        ChunkKind::Ack
    } else if flags & 0x8 != 0 || flags & 0x80 != 0 {
        ChunkKind::Error
    } else if flags & 0x40 != 0 {
        ChunkKind::CloseAck
    } else if flags & 0x100 != 0 {
        ChunkKind::DirectHandshake
    } else if size == 0 {
        ChunkKind::Control
    } else if session == 0 {
        ChunkKind::Slp
    } else if flags & 0x30 != 0 {
        ChunkKind::Data
    } else if total == 4 && size == 4 && data.iter().all(|&b| b == 0) {
        ChunkKind::DataPreparation
    } else {
        ChunkKind::Data
    };
    o.kind = Some(kind);
    if matches!(kind, ChunkKind::Ack | ChunkKind::Nak) {
        // Captures show the acknowledged message's identifier at offset 32 (the field MSNPSharp
        // calls AckSessionID); offset 36 echoes that message's own offset-32 value.
        o.acked_identifier = Some(u64::from(u32le(h, 32)));
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

fn tlv<'a>(t: u8, v: &'a [u8], name: &'static str, value: TlvValue<'a>) -> Tlv<'a> {
    Tlv {
        ty: t,
        name: Cow::Borrowed(name),
        length: v.len(),
        value,
    }
}

fn decode_v2<'a>(body: &'a [u8], o: &mut P2p<'a>) -> Result<(), String> {
    if body.len() < 8 {
        return Err(format!(
            "P2P body of {} bytes is shorter than the 8-byte v2 header",
            body.len()
        ));
    }
    let hl = body[0] as usize;
    let op = body[1];
    let size = u16be(body, 2) as usize;
    o.header_length = Some(hl);
    o.opcode = Some(op);
    o.opcode_names = names(opcode_names(op));
    o.message_size = Some(size as u64);
    o.identifier = Some(u32be(body, 4));
    if hl < 8 || hl > body.len() {
        return Err(format!(
            "v2 header length {hl} does not fit a body of {} bytes",
            body.len()
        ));
    }
    let mut list = Vec::new();
    let mut kind = ChunkKind::Control;
    for (t, v) in tlvs(&body[8..hl]) {
        let item = match (t, v.len()) {
            (1, 12) => {
                let info = PeerInfo {
                    protocol_version: u16be(v, 0),
                    implementation_id: u16be(v, 2),
                    version: u16be(v, 4),
                    reserved: u16be(v, 6),
                    capabilities: u32be(v, 8),
                };
                o.peer_info = Some(info);
                tlv(t, v, "peer_info", TlvValue::PeerInfo(info))
            }
            (2, 4 | 8) => {
                o.ack_identifier = Some(be_uint(v));
                o.acked_identifier = Some(be_uint(v));
                kind = ChunkKind::Ack;
                tlv(t, v, "ack", TlvValue::Number(be_uint(v)))
            }
            (3, 4 | 8) => {
                o.nak_identifier = Some(be_uint(v));
                kind = ChunkKind::Nak;
                tlv(t, v, "nak", TlvValue::Number(be_uint(v)))
            }
            _ => tlv(t, v, "unknown", TlvValue::Raw(Bytes(Cow::Borrowed(v)))),
        };
        list.push(item);
    }
    o.tlvs = Some(list);
    if size == 0 {
        if op & 0x1 != 0 && kind == ChunkKind::Control {
            kind = ChunkKind::Syn;
        }
        o.kind = Some(kind);
        return finish_chunk(o, body, hl, 0, false);
    }
    let d = &body[hl..];
    if d.len() < 8 {
        o.kind = Some(ChunkKind::Control);
        return Err(format!(
            "v2 message of {size} bytes but only {} after the header",
            d.len()
        ));
    }
    let dhl = d[0] as usize;
    let tf = d[1];
    let session = u32be(d, 4);
    o.data_header_length = Some(dhl);
    o.tf_combination = Some(tf);
    o.tf_names = names(tf_names(tf));
    o.package_number = Some(u16be(d, 2));
    o.session_id = Some(session);
    if dhl < 8 || dhl > size || dhl > d.len() {
        o.kind = Some(ChunkKind::Control);
        return Err(format!(
            "v2 data header length {dhl} does not fit message size {size}"
        ));
    }
    let mut remaining = None;
    let mut dl = Vec::new();
    for (t, v) in tlvs(&d[8..dhl]) {
        if t == 1 && v.len() == 8 {
            remaining = Some(be_uint(v));
            dl.push(tlv(t, v, "data_remaining", TlvValue::Number(be_uint(v))));
        } else {
            dl.push(tlv(t, v, "unknown", TlvValue::Raw(Bytes(Cow::Borrowed(v)))));
        }
    }
    o.data_tlvs = Some(dl);
    let data_size = size - dhl;
    let start = hl + dhl;
    let avail = data_size.min(body.len() - start);
    let data = &body[start..start + avail];
    let rem = remaining.unwrap_or(0);
    o.data_remaining = Some(rem);
    let first = tf & 0x1 != 0;
    if first {
        o.offset = Some(0);
        o.total_size = Some((data_size as u64).saturating_add(rem));
    }
    let kind = if session == 0 {
        ChunkKind::Slp
    } else if tf & 0x4 != 0 {
        ChunkKind::Data
    } else if first && rem == 0 && data_size == 4 && data.iter().all(|&b| b == 0) {
        ChunkKind::DataPreparation
    } else {
        ChunkKind::Data
    };
    o.kind = Some(kind);
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
        assert_eq!(v.header, Layout::V1);
        assert_eq!(v.session_id, Some(7));
        assert_eq!(v.identifier, Some(0x01020304));
        assert_eq!(v.offset, Some(1200));
        assert_eq!(v.total_size, Some(5000));
        assert_eq!(v.message_size, Some(3));
        assert_eq!(v.flag_names, ["data"]);
        assert_eq!(v.ack_session_id, Some(9));
        assert_eq!(v.app_id, Some(12));
        assert_eq!(v.app_name.as_deref(), Some("display_picture"));
        assert_eq!(v.kind, Some(ChunkKind::Data));
        assert_eq!(v.data_start, Some(48));
        assert_eq!(v.data_length, Some(3));
        assert!(v.problem.is_none());
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["kind"], "data");
        assert_eq!(j["header"], "v1");
        let back: P2p = serde_json::from_value(j).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn v1_ack_and_preparation_kinds() {
        let mut ack = build::v1(0, 5, 0, 329, 0x2, &[], Some(0));
        ack[32..36].copy_from_slice(&4258587639u32.to_le_bytes());
        let v = decode(&ack, hint(Some(11)));
        assert_eq!(v.kind, Some(ChunkKind::Ack));
        assert_eq!(v.acked_identifier, Some(4258587639));
        let prep = build::v1(44, 6, 0, 4, 0, &[0, 0, 0, 0], Some(1));
        assert_eq!(
            decode(&prep, hint(Some(11))).kind,
            Some(ChunkKind::DataPreparation)
        );
    }

    #[test]
    fn v1_whole_slp_is_parsed_fragment_is_marked() {
        let text = b"BYE MSNMSGR:bob@example.com MSNSLP/1.0\r\nTo: <msnmsgr:bob@example.com>\r\nFrom: <msnmsgr:alice@example.com>\r\nCall-ID: {1}\r\nContent-Type: application/x-msnmsgr-sessionclosebody\r\nContent-Length: 3\r\n\r\n\r\n\0";
        let whole = build::v1(0, 1, 0, text.len() as u64, 0, text, Some(0));
        let v = decode(&whole, hint(Some(11)));
        assert_eq!(v.kind, Some(ChunkKind::Slp));
        assert_eq!(v.slp.as_ref().unwrap().method.as_deref(), Some("BYE"));
        let part = build::v1(0, 1, 0, text.len() as u64 + 100, 0, text, Some(0));
        let v = decode(&part, hint(Some(11)));
        assert!(v.slp.is_none());
        assert_eq!(
            v.slp_fragment.as_deref(),
            Some("BYE MSNMSGR:bob@example.com MSNSLP/1.0")
        );
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
        assert_eq!(v.header, Layout::V2);
        assert_eq!(v.header_basis, "P2P-Dest/P2P-Src name an endpoint GUID");
        assert_eq!(v.opcode_names, ["rak"]);
        assert_eq!(v.identifier, Some(0x11223344));
        assert_eq!(v.ack_identifier, Some(256));
        assert_eq!(v.kind, Some(ChunkKind::Data));
        assert_eq!(v.tf_names, ["first", "msnobj"]);
        assert_eq!(v.package_number, Some(7));
        assert_eq!(v.session_id, Some(0x0a0b0c0d));
        assert_eq!(v.data_remaining, Some(1000));
        assert_eq!(v.offset, Some(0));
        assert_eq!(v.total_size, Some(1003));
        assert_eq!(v.data_start, Some(36));
        assert_eq!(v.data_length, Some(3));
        assert_eq!(v.app_id, Some(12));
        assert!(v.problem.is_none(), "{v:?}");
        let back: P2p = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
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
        assert_eq!(v.header, Layout::V2);
        assert_eq!(v.header_basis, "assumed v2: only the v2 lengths fit");
        let v1 = build::v1(9, 1, 0, 5, 0x20, b"hello", Some(1));
        let v = decode(&v1, hint(Some(18)));
        assert_eq!(v.header, Layout::V1);
        assert!(v.header_basis.starts_with("assumed v1"));
        // MSNP11 says v1 even though sniffing would be needed otherwise.
        assert_eq!(
            decode(&v1, hint(Some(11))).header_basis,
            "MSNP11 predates P2P v2"
        );
    }

    #[test]
    fn short_or_lying_bodies_are_problems_not_panics() {
        assert!(decode(&[0u8; 10], hint(None)).problem.is_some());
        let mut b = vec![0u8; 48];
        b[24..28].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode(&b, hint(Some(11))).problem.is_some());
        let g = Hint {
            version: Some(18),
            dest: Some("a;{b}"),
            src: None,
        };
        // v2 with a data header length larger than the message.
        let mut b = vec![8, 0, 0, 9, 0, 0, 0, 1, 200, 4, 0, 1, 0, 0, 0, 1, 0];
        assert!(decode(&b, g).problem.is_some());
        b.truncate(9);
        assert!(decode(&b, g).problem.is_some());
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
