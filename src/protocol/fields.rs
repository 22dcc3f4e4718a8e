//! Turns a command's tokens into named, typed fields using the form from the tables.
//! Pure functions over one line; no state.

use std::borrow::Cow;

use smallvec::SmallVec;

use super::tables::{CommandDef, FormDef, ParamType, Tables};
use crate::event::{Address, ArgIndices, Caps, EnumValue, Field, FieldValue, Fields, ListBits};
use crate::payload::{msnobj, urldecode};
use crate::secret::Secret;
use crate::wire::{self, Args};

/// A token as text: borrowed when it is UTF-8 (nearly always).
pub fn text(tok: &[u8]) -> Cow<'_, str> {
    crate::payload::lossy(tok)
}

/// What a form says about a line: its fields, the transaction id, and which arguments
/// hold server addresses and secrets.
pub struct Decoded<'a> {
    pub fields: Fields<'a>,
    pub trid: Option<u64>,
    pub address_args: ArgIndices,
    pub secret_args: ArgIndices,
}

/// Decodes the arguments of a line by `form`.
pub fn decode<'a>(tables: &'a Tables, form: &'a FormDef, args: &Args<'a, '_>) -> Decoded<'a> {
    let mut out = Decoded {
        fields: Fields::default(),
        trid: None,
        address_args: SmallVec::new(),
        secret_args: SmallVec::new(),
    };
    let mut repeated: Vec<FieldValue<'a>> = Vec::new();
    let n = args.len();
    for i in 0..n {
        let Some(p) = form.param(i) else { break };
        let Some(raw) = args.get(i) else { break };
        let idx = u8::try_from(i).unwrap_or(u8::MAX);
        match p.ty {
            ParamType::Address => out.address_args.push(idx),
            t if t.is_secret() => out.secret_args.push(idx),
            _ => {}
        }
        let v = value(
            tables,
            p.ty,
            raw,
            p.values.as_ref().and_then(|v| v.meaning_bytes(raw)),
        );
        if p.ty == ParamType::Trid && out.trid.is_none() {
            out.trid = wire::parse_len(raw);
        }
        if form.repeat_last && i + 1 >= form.params.len() {
            repeated.push(v);
            continue;
        }
        out.fields.0.push(Field {
            name: Cow::Borrowed(&p.name),
            value: v,
        });
    }
    if form.repeat_last && !repeated.is_empty() {
        if let Some(p) = form.params.last() {
            out.fields.0.push(Field {
                name: Cow::Borrowed(&p.name),
                value: FieldValue::List(repeated),
            });
        }
    }
    out
}

/// For a line that fits no form: still find addresses and secrets by type position in any
/// form of the same direction, so the proxy and redaction never miss them.
pub fn mark_by_any_form(
    def: &CommandDef,
    dir: crate::event::Dir,
    args: &Args<'_, '_>,
    address_args: &mut ArgIndices,
    secret_args: &mut ArgIndices,
) {
    for f in def
        .forms
        .iter()
        .filter(|f| f.dir.fits(dir) && f.matches_args(args))
    {
        for i in 0..args.len() {
            let Some(p) = f.param(i) else { continue };
            let idx = u8::try_from(i).unwrap_or(u8::MAX);
            if p.ty == ParamType::Address
                && args.get(i).is_some_and(looks_like_address)
                && !address_args.contains(&idx)
            {
                address_args.push(idx);
            }
            if p.ty.is_secret() && !secret_args.contains(&idx) {
                secret_args.push(idx);
            }
        }
    }
}

/// `host:port` with a numeric port.
pub fn looks_like_address(s: &[u8]) -> bool {
    match s.iter().rposition(|&c| c == b':') {
        Some(i) => i > 0 && wire::parse_len(&s[i + 1..]).is_some_and(|p| p <= 65535),
        None => false,
    }
}

fn value<'a>(
    tables: &'a Tables,
    ty: ParamType,
    raw: &'a [u8],
    meaning: Option<&'a str>,
) -> FieldValue<'a> {
    let t = || text(raw);
    match ty {
        ParamType::Trid | ParamType::Length | ParamType::Int => match wire::parse_len(raw) {
            Some(n) => FieldValue::Int(n),
            None => FieldValue::Str(t()),
        },
        ParamType::Friendly | ParamType::Text => FieldValue::Str(match t() {
            Cow::Borrowed(b) => urldecode(b),
            Cow::Owned(o) => Cow::Owned(urldecode(&o).into_owned()),
        }),
        ParamType::Msnobj => {
            let s = match t() {
                Cow::Borrowed(b) => urldecode(b),
                Cow::Owned(o) => Cow::Owned(urldecode(&o).into_owned()),
            };
            let obj = msnobj::parse(&s).map(|o| o.into_owned());
            match obj {
                Some(o) => FieldValue::MsnObj(Box::new(o)),
                None => FieldValue::Str(s),
            }
        }
        ParamType::Caps => caps(tables, raw).unwrap_or_else(|| FieldValue::Str(t())),
        ParamType::Listbits => match wire::parse_len(raw) {
            Some(n) => FieldValue::Lists(ListBits {
                value: n,
                lists: [(1, "FL"), (2, "AL"), (4, "BL"), (8, "RL"), (16, "PL")]
                    .iter()
                    .filter(|(b, _)| n & b != 0)
                    .map(|(_, s)| Cow::Borrowed(*s))
                    .collect(),
            }),
            None => FieldValue::Str(t()),
        },
        ParamType::Address => match raw.iter().rposition(|&c| c == b':') {
            Some(i) if wire::parse_len(&raw[i + 1..]).is_some() => FieldValue::Address(Address {
                host: text(&raw[..i]),
                port: wire::parse_len(&raw[i + 1..]).unwrap_or(0),
            }),
            _ => FieldValue::Str(t()),
        },
        ParamType::Enum => match meaning {
            Some(m) => FieldValue::Enum(EnumValue {
                value: t(),
                meaning: Cow::Borrowed(m),
            }),
            None => FieldValue::Str(t()),
        },
        ParamType::Cookie | ParamType::Secret => FieldValue::Secret(Secret(t())),
        _ => FieldValue::Str(t()),
    }
}

/// Messenger client version in the top nibble of the capability flags
/// (protocol-facts F.5: 0x1 = 6.0 ... 0xA = 2009, 0xB = 2011, 0xC = 2012).
const CLIENT_NIBBLE: [&str; 13] = [
    "", "6.0", "6.1", "6.2", "7.0", "7.5", "8.0", "8.1", "8.5", "9.0", "2009", "2011", "2012",
];

/// `caps` or `caps:extcaps` into value, flag names and client version.
pub fn caps<'a>(tables: &'a Tables, raw: &[u8]) -> Option<FieldValue<'a>> {
    let (a, b) = match raw.iter().position(|&c| c == b':') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let v = wire::parse_len(a)?;
    let nib = ((v >> 28) & 0xF) as usize;
    let ext = b.and_then(wire::parse_len);
    Some(FieldValue::Caps(Box::new(Caps {
        value: v,
        flags: tables
            .capability_names(v & 0x0FFF_FFFF, false)
            .into_iter()
            .map(Cow::Borrowed)
            .collect(),
        client: CLIENT_NIBBLE
            .get(nib)
            .filter(|s| !s.is_empty())
            .map(|s| Cow::Borrowed(*s)),
        ext,
        ext_flags: ext.map(|e| {
            tables
                .capability_names(e, true)
                .into_iter()
                .map(Cow::Borrowed)
                .collect()
        }),
    })))
}
