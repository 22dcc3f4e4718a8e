//! Turns a command's tokens into named, typed fields using the form from the tables.
//! Pure functions over one line; no state.

use std::borrow::Cow;

use super::tables::{CommandDef, FormDef, ParamType, Tables};
use crate::event::{Address, ArgIndices, Caps, Command, EnumValue, Field, FieldValue, ListBits};
use crate::payload::{msnobj, urldecode};
use crate::secret::Secret;
use crate::wire::{self, Args};

/// A token as text: borrowed when it is UTF-8 (nearly always).
pub fn text(tok: &[u8]) -> Cow<'_, str> {
    crate::payload::lossy(tok)
}

/// Decodes the arguments of a line by `form` into the command: its fields, the
/// transaction id, and which arguments hold server addresses and secrets. Written in place:
/// the fields are a few hundred bytes inline, and returning them moved them twice.
pub fn decode<'a>(
    tables: &'a Tables,
    form: &'a FormDef,
    args: &Args<'a, '_>,
    out: &mut Command<'a>,
) {
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
        // Only enumerations have meanings to look up.
        let meaning = match p.ty {
            ParamType::Enum => p.values.as_ref().and_then(|v| v.meaning_bytes(raw)),
            _ => None,
        };
        let v = value(tables, p.ty, raw, args.str(i).unwrap_or_default(), meaning);
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
    s: Cow<'a, str>,
    meaning: Option<&'a str>,
) -> FieldValue<'a> {
    let t = || s.clone();
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
                lists: tables
                    .lists
                    .iter()
                    .filter(|l| n & l.bit != 0)
                    .map(|l| Cow::Borrowed(l.name.as_str()))
                    .collect(),
            }),
            None => FieldValue::Str(t()),
        },
        ParamType::Address => match raw.iter().rposition(|&c| c == b':') {
            Some(i) if wire::parse_len(&raw[i + 1..]).is_some() => FieldValue::Address(Address {
                host: match &s {
                    Cow::Borrowed(b) => Cow::Borrowed(b.get(..i).unwrap_or(b)),
                    Cow::Owned(_) => text(&raw[..i]),
                },
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

/// The bits of the capability flags that hold the Messenger client version (its names are
/// the tables' `client_version` entries); the other bits are capabilities.
pub const CLIENT_VERSION_MASK: u64 = 0xF000_0000;
const CLIENT_VERSION_SHIFT: u32 = CLIENT_VERSION_MASK.trailing_zeros();
/// The capability bits of the 32-bit caps number.
const CAPABILITY_BITS: u64 = 0xFFFF_FFFF & !CLIENT_VERSION_MASK;

/// `caps` or `caps:extcaps` into value, flag names and client version.
pub fn caps<'a>(tables: &'a Tables, raw: &[u8]) -> Option<FieldValue<'a>> {
    let (a, b) = match raw.iter().position(|&c| c == b':') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let v = wire::parse_len(a)?;
    let nib = ((v & CLIENT_VERSION_MASK) >> CLIENT_VERSION_SHIFT) as u8;
    let ext = b.and_then(wire::parse_len);
    Some(FieldValue::Caps(Box::new(Caps {
        value: v,
        flags: tables
            .capability_names(v & CAPABILITY_BITS, false)
            .into_iter()
            .map(Cow::Borrowed)
            .collect(),
        client: tables.client_version(nib).map(Cow::Borrowed),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FieldValue;

    fn client_of(t: &Tables, raw: &[u8]) -> Option<String> {
        match caps(t, raw) {
            Some(FieldValue::Caps(c)) => c.client.map(|c| c.into_owned()),
            other => panic!("{other:?}"),
        }
    }

    fn lists_of(t: &Tables, raw: &[u8]) -> Vec<String> {
        match value(t, ParamType::Listbits, raw, text(raw), None) {
            FieldValue::Lists(l) => l.lists.iter().map(|s| s.to_string()).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_versions_and_list_names_come_from_the_tables() {
        let mut t = Tables::builtin().expect("built-in tables");
        // 0x50000000: nibble 5; 0xC...: 12; 0xD...: no name.
        assert_eq!(client_of(&t, b"1342177280").as_deref(), Some("7.5"));
        assert_eq!(client_of(&t, b"3221225472").as_deref(), Some("2012"));
        assert_eq!(client_of(&t, b"3489660928"), None);
        assert_eq!(client_of(&t, b"16384"), None);
        assert_eq!(lists_of(&t, b"11"), ["FL", "AL", "RL"]);
        t.add_file(
            "user.toml",
            "[[client_version]]\nnibble = 13\nname = \"2013\"\n\n[[list]]\nbit = 2\nname = \"ALLOW\"\n\n[[list]]\nbit = 32\nname = \"XL\"\n",
        )
        .expect("user table");
        assert_eq!(client_of(&t, b"3489660928").as_deref(), Some("2013"));
        assert_eq!(lists_of(&t, b"43"), ["FL", "ALLOW", "RL", "XL"]);
        // The nibble's bits are never capability flags.
        t.add_file(
            "caps.toml",
            "[[capability]]\nbit = 0x10000000\nname = \"Top\"\n",
        )
        .expect("caps table");
        match caps(&t, b"268435456") {
            Some(FieldValue::Caps(c)) => assert!(c.flags.is_empty(), "{:?}", c.flags),
            other => panic!("{other:?}"),
        }
        let bad = Tables::builtin().expect("tables").add_file(
            "bad.toml",
            "[[client_version]]\nnibble = 16\nname = \"x\"\n",
        );
        assert!(bad.is_err());
    }
}
