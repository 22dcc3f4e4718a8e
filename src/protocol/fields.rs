//! Turns a command's raw tokens into named, typed fields using the form from the tables.
//! Pure functions over one line; no state.

use serde_json::{json, Map, Value};

use super::tables::{CommandDef, FormDef, ParamType, Tables};
use crate::event::{Command, Dir};
use crate::payload::{msnobj, urldecode};
use crate::wire;

/// Fills `cmd.fields`, `cmd.trid`, address and secret indices from `form`.
pub fn decode(tables: &Tables, form: &FormDef, cmd: &mut Command) {
    let mut fields = Map::new();
    let mut repeated: Vec<Value> = Vec::new();
    let n = cmd.args.len();
    for i in 0..n {
        let Some(p) = form.param(i) else { break };
        let raw = cmd.args[i].as_str();
        match p.ty {
            ParamType::Address => cmd.address_args.push(i),
            t if t.is_secret() => cmd.secret_args.push(i),
            _ => {}
        }
        let v = value(
            tables,
            p.ty,
            raw,
            p.values.as_ref().and_then(|v| v.meaning(raw)),
        );
        if p.ty == ParamType::Trid && cmd.trid.is_none() {
            cmd.trid = wire::parse_len(raw);
        }
        if form.repeat_last && i + 1 >= form.params.len() {
            repeated.push(v);
            continue;
        }
        fields.insert(p.name.clone(), v);
    }
    if form.repeat_last && !repeated.is_empty() {
        if let Some(p) = form.params.last() {
            fields.insert(p.name.clone(), Value::Array(repeated));
        }
    }
    cmd.fields = fields;
}

/// For a line that fits no form: still find addresses and secrets by type position in any
/// form of the same direction and arity, so the proxy and redaction never miss them.
pub fn mark_by_any_form(def: &CommandDef, dir: Dir, cmd: &mut Command) {
    let n = cmd.args.len();
    for f in def
        .forms
        .iter()
        .filter(|f| f.dir.fits(dir) && f.matches_args(&cmd.args))
    {
        for i in 0..n {
            if let Some(p) = f.param(i) {
                if p.ty == ParamType::Address
                    && looks_like_address(&cmd.args[i])
                    && !cmd.address_args.contains(&i)
                {
                    cmd.address_args.push(i);
                }
                if p.ty.is_secret() && !cmd.secret_args.contains(&i) {
                    cmd.secret_args.push(i);
                }
            }
        }
    }
}

/// `host:port` with a numeric port.
pub fn looks_like_address(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((h, p)) => !h.is_empty() && wire::parse_len(p).is_some_and(|p| p <= 65535),
        None => false,
    }
}

fn value(tables: &Tables, ty: ParamType, raw: &str, meaning: Option<&str>) -> Value {
    match ty {
        ParamType::Trid | ParamType::Length | ParamType::Int => match wire::parse_len(raw) {
            Some(n) => json!(n),
            None => json!(raw),
        },
        ParamType::Friendly | ParamType::Text => json!(urldecode(raw)),
        ParamType::Msnobj => {
            let text = urldecode(raw);
            match msnobj::parse(&text) {
                Some(o) => o,
                None => json!(text),
            }
        }
        ParamType::Caps => caps(tables, raw),
        ParamType::Listbits => match wire::parse_len(raw) {
            Some(n) => {
                let names: Vec<&str> = [(1, "FL"), (2, "AL"), (4, "BL"), (8, "RL"), (16, "PL")]
                    .iter()
                    .filter(|(b, _)| n & b != 0)
                    .map(|(_, s)| *s)
                    .collect();
                json!({"value": n, "lists": names})
            }
            None => json!(raw),
        },
        ParamType::Address => match raw.rsplit_once(':') {
            Some((h, p)) if wire::parse_len(p).is_some() => {
                json!({"host": h, "port": wire::parse_len(p)})
            }
            _ => json!(raw),
        },
        ParamType::Enum => match meaning {
            Some(m) => json!({"value": raw, "meaning": m}),
            None => json!(raw),
        },
        _ => json!(raw),
    }
}

/// Messenger client version in the top nibble of the capability flags
/// (protocol-facts F.5: 0x1 = 6.0 ... 0xA = 2009, 0xB = 2011, 0xC = 2012).
const CLIENT_NIBBLE: [&str; 13] = [
    "", "6.0", "6.1", "6.2", "7.0", "7.5", "8.0", "8.1", "8.5", "9.0", "2009", "2011", "2012",
];

/// `caps` or `caps:extcaps` into value, flag names and client version.
pub fn caps(tables: &Tables, raw: &str) -> Value {
    let (a, b) = match raw.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (raw, None),
    };
    let Some(v) = wire::parse_len(a) else {
        return json!(raw);
    };
    let mut o = Map::new();
    o.insert("value".into(), json!(v));
    o.insert(
        "flags".into(),
        json!(tables.capability_names(v & 0x0FFF_FFFF, false)),
    );
    let nib = ((v >> 28) & 0xF) as usize;
    if let Some(name) = CLIENT_NIBBLE.get(nib).filter(|s| !s.is_empty()) {
        o.insert("client".into(), json!(name));
    }
    if let Some(e) = b.and_then(wire::parse_len) {
        o.insert("ext".into(), json!(e));
        o.insert("ext_flags".into(), json!(tables.capability_names(e, true)));
    }
    Value::Object(o)
}
