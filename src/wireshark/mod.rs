//! Writes a self-contained Wireshark Lua plugin from the merged dissector tables: the
//! tables (commands, errors, capabilities, dialect rules...) and msntap's own limits and
//! constants become Lua data, followed by the fixed framing and tree code in msnp.lua. It
//! only reads public tables and constants and returns text; it does no I/O and decodes
//! nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::payload::p2p;
use crate::protocol::decode::ERROR_PAYLOAD_FROM;
use crate::protocol::fields::CLIENT_VERSION_MASK;
use crate::protocol::session::desync_reason;
use crate::protocol::tables::{
    CapabilityDef, CommandDef, DialectRule, DirSpec, EnumValues, FormDef, ListBit, ParamType,
    PayloadKind, PayloadRule, RuleAction, Tables, VersionRange,
};
use crate::wire::{DesyncReason, Limits};

/// The fixed part of the plugin: framing, state tracking and the protocol tree.
const STATIC_LUA: &str = include_str!("msnp.lua");

/// What a parameter becomes in Wireshark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A 32-bit number field.
    Uint,
    /// A string field (caps, list bits and addresses get further generic fields beneath).
    Str,
}

fn class_of(ty: ParamType) -> Class {
    match ty {
        ParamType::Trid | ParamType::Length | ParamType::Int | ParamType::Listbits => Class::Uint,
        _ => Class::Str,
    }
}

fn type_name(ty: ParamType) -> &'static str {
    match ty {
        ParamType::Trid => "trid",
        ParamType::Length => "length",
        ParamType::Int => "int",
        ParamType::Enum => "enum",
        ParamType::Handle => "handle",
        ParamType::Friendly => "friendly",
        ParamType::Text => "text",
        ParamType::Address => "address",
        ParamType::Cookie => "cookie",
        ParamType::Secret => "secret",
        ParamType::Caps => "caps",
        ParamType::Msnobj => "msnobj",
        ParamType::Listbits => "listbits",
        ParamType::List => "list",
        ParamType::Status => "status",
        ParamType::Netid => "netid",
        ParamType::Guid => "guid",
        ParamType::Url => "url",
        ParamType::Dialect => "dialect",
        ParamType::String => "string",
    }
}

fn kind_name(k: PayloadKind) -> &'static str {
    match k {
        PayloadKind::Mime => "mime",
        PayloadKind::Xml => "xml",
        PayloadKind::Text => "text",
        PayloadKind::Binary => "binary",
        PayloadKind::Multipart => "multipart",
    }
}

/// A Lua string literal; bytes outside printable ASCII as decimal escapes (valid in 5.2-5.4).
fn lua_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for &b in s.as_bytes() {
        match b {
            b'"' => o.push_str("\\\""),
            b'\\' => o.push_str("\\\\"),
            0x20..=0x7e => o.push(b as char),
            _ => {
                let _ = write!(o, "\\{b:03}");
            }
        }
    }
    o.push('"');
    o
}

/// Field abbreviations take letters, digits and underscores only.
fn sanitize(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

/// The Wireshark field of one named parameter (one per command and parameter name).
struct ParamField {
    abbr: String,
    label: String,
    class: Class,
    desc: String,
}

/// Parameter fields keyed by (command, parameter name). When the forms of one command give
/// a name different types that Wireshark cannot hold in one field, it becomes a string.
fn param_fields(tables: &Tables) -> BTreeMap<(String, String), ParamField> {
    let mut out: BTreeMap<(String, String), ParamField> = BTreeMap::new();
    let mut used: BTreeMap<String, (String, String)> = BTreeMap::new();
    for c in tables.commands() {
        for f in &c.forms {
            for p in &f.params {
                let key = (c.name.clone(), p.name.clone());
                let class = class_of(p.ty);
                if let Some(e) = out.get_mut(&key) {
                    if e.class != class {
                        e.class = Class::Str;
                    }
                    if e.desc.is_empty() {
                        e.desc = p.meaning.clone().unwrap_or_default();
                    }
                    continue;
                }
                let mut abbr =
                    format!("msnp.{}.{}", c.name.to_ascii_lowercase(), sanitize(&p.name));
                // Two names that sanitise alike (a-b, a_b) still get fields of their own.
                let mut n = 2;
                while used.contains_key(&abbr) {
                    abbr = format!(
                        "msnp.{}.{}_{n}",
                        c.name.to_ascii_lowercase(),
                        sanitize(&p.name)
                    );
                    n += 1;
                }
                used.insert(abbr.clone(), key.clone());
                out.insert(
                    key,
                    ParamField {
                        abbr,
                        label: format!("{} {}", c.name, p.name),
                        class,
                        desc: p.meaning.clone().unwrap_or_default(),
                    },
                );
            }
        }
    }
    out
}

fn dir_name(d: DirSpec) -> &'static str {
    match d {
        DirSpec::C2s => "c2s",
        DirSpec::S2c => "s2c",
        DirSpec::Both => "both",
    }
}

fn write_form(
    o: &mut String,
    cmd: &CommandDef,
    f: &FormDef,
    fields: &BTreeMap<(String, String), ParamField>,
) {
    let v = f.versions.unwrap_or(cmd.versions);
    let services = f.services.as_ref().unwrap_or(&cmd.services);
    let _ = write!(
        o,
        "      {{ dir = {}, lo = {}, hi = {}, services = {{",
        lua_str(dir_name(f.dir)),
        v.lo,
        v.hi
    );
    for s in services {
        let _ = write!(o, " [{}] = true,", lua_str(&s.to_string()));
    }
    o.push_str(" }, match = {");
    for (i, lits) in &f.matchers {
        // Lua arguments count from 1; the tables count from 0.
        let _ = write!(o, " [{}] = {{", i + 1);
        for l in lits {
            let _ = write!(o, " [{}] = true,", lua_str(l));
        }
        o.push_str(" },");
    }
    let _ = write!(
        o,
        " }},\n        payload = {}, kind = {}, meaning = {}, min = {}, max = {}, rep = {},\n        params = {{\n",
        f.payload == PayloadRule::Last,
        f.payload_kind
            .map_or("nil".to_string(), |k| lua_str(kind_name(k))),
        f.meaning.as_deref().map_or("nil".to_string(), lua_str),
        f.params.len().saturating_sub(f.optional),
        f.params.len(),
        f.repeat_last
    );
    for p in &f.params {
        let Some(pf) = fields.get(&(cmd.name.clone(), p.name.clone())) else {
            continue;
        };
        let _ = write!(
            o,
            "          {{ name = {}, ty = {}, f = {}, class = {}, label = {}",
            lua_str(&p.name),
            lua_str(type_name(p.ty)),
            lua_str(&pf.abbr),
            lua_str(if pf.class == Class::Uint {
                "uint"
            } else {
                "string"
            }),
            lua_str(&pf.label)
        );
        if let Some(EnumValues::Map(m)) = &p.values {
            o.push_str(", values = {");
            for (k, v) in m {
                let _ = write!(o, " [{}] = {},", lua_str(k), lua_str(v));
            }
            o.push_str(" }");
        }
        o.push_str(" },\n");
    }
    o.push_str("        } },\n");
}

/// Capability fields: single bits as booleans, wider masks as masked numbers. Masks that
/// do not fit the 32-bit caps numbers, or that lie in the client-version nibble (msntap
/// never names those as flags), are left out (and named in the plugin's header).
fn capability_fields(tables: &Tables) -> (Vec<(String, &CapabilityDef, bool)>, Vec<String>) {
    let mut out = Vec::new();
    let mut left_out = Vec::new();
    let mut used: Vec<String> = vec!["msnp.caps.client".into()];
    for c in &tables.capabilities {
        if c.bit == 0 || c.bit > 0xFFFF_FFFF || (!c.ext && c.bit & CLIENT_VERSION_MASK != 0) {
            left_out.push(format!("{} (bit {:#x})", c.name, c.bit));
            continue;
        }
        let base = if c.ext { "msnp.extcaps" } else { "msnp.caps" };
        let mut abbr = format!("{base}.{}", sanitize(&c.name));
        if used.contains(&abbr) {
            abbr = format!("{base}.{}_{:x}", sanitize(&c.name), c.bit);
        }
        used.push(abbr.clone());
        out.push((abbr, c, c.bit.count_ones() == 1));
    }
    (out, left_out)
}

/// List-bit fields (booleans under the listbits number); bits past 32 are left out.
fn list_fields(tables: &Tables) -> (Vec<(String, &ListBit)>, Vec<String>) {
    let mut out: Vec<(String, &ListBit)> = Vec::new();
    let mut left_out = Vec::new();
    for l in &tables.lists {
        if l.bit > 0xFFFF_FFFF {
            left_out.push(format!("{} (bit {:#x})", l.name, l.bit));
            continue;
        }
        let mut abbr = format!("msnp.lists.{}", sanitize(&l.name));
        if out.iter().any(|(a, _)| *a == abbr) {
            abbr = format!("msnp.lists.{}_{:x}", sanitize(&l.name), l.bit);
        }
        out.push((abbr, l));
    }
    (out, left_out)
}

fn action_name(a: RuleAction) -> &'static str {
    match a {
        RuleAction::Offer => "offer",
        RuleAction::Negotiate => "negotiate",
        RuleAction::LoggedIn => "logged_in",
        RuleAction::Dispatch => "dispatch",
    }
}

/// Argument matchers as a Lua table: Lua arguments count from 1, the tables from 0.
fn lua_matchers(m: &[(usize, Vec<String>)]) -> String {
    let mut o = String::from("{");
    for (i, lits) in m {
        let _ = write!(o, " [{}] = {{", i.saturating_add(1));
        for l in lits {
            let _ = write!(o, " [{}] = true,", lua_str(l));
        }
        o.push_str(" },");
    }
    o.push_str(" }");
    o
}

/// The dialect rules in table order (protocol/dialect.rs applies them; msnp.lua's
/// update_state the same way).
fn write_rules(o: &mut String, rules: &[DialectRule]) {
    o.push_str("GEN.rules = {\n");
    for r in rules {
        if let Some(w) = &r.why {
            let _ = writeln!(o, "  -- {}", w.replace(['\n', '\r'], " "));
        }
        let _ = write!(o, "  {{ dir = {}, cmd = {{", lua_str(dir_name(r.dir)));
        for c in &r.cmd {
            let _ = write!(o, " {},", lua_str(c));
        }
        let _ = write!(
            o,
            " }}, match = {}, not_match = {}",
            lua_matchers(r.matchers()),
            lua_matchers(r.anti_matchers())
        );
        if let Some(n) = r.argc {
            let _ = write!(o, ", argc = {n}");
        }
        if let Some(n) = r.min_args {
            let _ = write!(o, ", min_args = {n}");
        }
        if let Some(v) = r.versions {
            let _ = write!(o, ", lo = {}, hi = {}", v.lo, v.hi);
        }
        if let Some(s) = r.service {
            let _ = write!(o, ", service = {}", lua_str(s.as_str()));
        }
        if let Some(a) = r.action {
            let _ = write!(o, ", action = {}", lua_str(action_name(a)));
        }
        o.push_str(" },\n");
    }
    o.push_str("}\n\n");
}

/// `{ { value, "name" }, ... }`.
fn lua_pairs<T: std::fmt::LowerHex>(o: &mut String, key: &str, v: &[(T, &str)]) {
    let _ = write!(o, "  {key} = {{");
    for (x, n) in v {
        let _ = write!(o, " {{ {x:#x}, {} }},", lua_str(n));
    }
    o.push_str(" },\n");
}

/// The names payload/p2p.rs gives P2P header values, and when v2 may start.
fn write_p2p(o: &mut String) {
    o.push_str("GEN.p2p = {\n");
    let _ = writeln!(o, "  v2_from = {},", p2p::V2_FROM);
    let _ = writeln!(o, "  tf_first = {:#x},", p2p::TF_FIRST);
    lua_pairs(o, "flag_values", p2p::FLAG_VALUES);
    lua_pairs(o, "flag_bits", p2p::FLAG_BITS);
    lua_pairs(o, "opcode_bits", p2p::OPCODE_BITS);
    lua_pairs(o, "tf_kinds", p2p::TF_KINDS);
    lua_pairs(o, "app_names", p2p::APP_NAMES);
    o.push_str("}\n\n");
}

/// msntap's constants that decide framing and labels, so that the plugin frames as msntap
/// frames: the default limits, the versions, where connections are looked for, and the
/// reasons a desync gives.
fn write_constants(o: &mut String) {
    let l = Limits::default();
    let flow = crate::capture::FlowOptions::default();
    let _ = writeln!(
        o,
        "GEN.limits = {{ max_line = {}, max_payload = {}, max_guess = {} }}",
        l.max_line, l.max_payload, l.max_guess
    );
    let _ = writeln!(
        o,
        "GEN.versions = {{ lo = {}, hi = {} }}",
        VersionRange::ALL.lo,
        VersionRange::ALL.hi
    );
    let _ = writeln!(o, "GEN.error_payload_from = {ERROR_PAYLOAD_FROM}");
    let _ = writeln!(o, "GEN.detect_window = {}", flow.detect_window);
    o.push_str("GEN.ports = {");
    for p in &flow.ports {
        let _ = write!(o, " {p},");
    }
    o.push_str(" }\nGEN.reasons = {\n");
    for (k, r) in [
        ("not_a_command_line", DesyncReason::NotACommandLine),
        ("empty_line", DesyncReason::EmptyLine),
        ("line_too_long", DesyncReason::LineTooLong),
        ("oversize_payload", DesyncReason::OversizePayload),
        ("incomplete_line", DesyncReason::IncompleteLine),
    ] {
        let _ = writeln!(o, "  {k} = {},", lua_str(&desync_reason(r, l)));
    }
    o.push_str("}\n\n");
}

/// The whole plugin: a header naming the msntap version and the table files, the tables as
/// Lua data, then the fixed code.
pub fn generate(tables: &Tables, msntap_version: &str) -> String {
    let fields = param_fields(tables);
    let (caps, caps_left_out) = capability_fields(tables);
    let (lists, lists_left_out) = list_fields(tables);
    let mut o = String::with_capacity(256 * 1024);
    let _ = writeln!(
        o,
        "-- MSNP (MSN Messenger protocol, MSNP2-21) dissector for Wireshark 4.0+ (Lua 5.2-5.4)."
    );
    let _ = writeln!(
        o,
        "-- Generated by msntap {msntap_version} (`msntap dissectors --wireshark`); do not edit: regenerate."
    );
    let _ = writeln!(
        o,
        "-- Made from these dissector tables, merged in this order:"
    );
    for f in tables.files() {
        let _ = writeln!(o, "--   {}", f.replace(['\n', '\r'], " "));
    }
    let _ = writeln!(
        o,
        "-- {} commands, {} error codes, {} capability flags, {} parameter fields.",
        tables.commands().count(),
        tables.errors.len(),
        caps.len(),
        fields.len()
    );
    for c in &caps_left_out {
        let _ = writeln!(
            o,
            "-- Capability left out (mask wider than the 32-bit caps number): {}",
            c.replace(['\n', '\r'], " ")
        );
    }
    for l in &lists_left_out {
        let _ = writeln!(
            o,
            "-- List bit left out (wider than the 32-bit listbits number): {}",
            l.replace(['\n', '\r'], " ")
        );
    }
    o.push_str("--\n-- Install: copy into ~/.local/lib/wireshark/plugins/ (or run wireshark/tshark -X lua_script:FILE).\n\n");
    o.push_str("local GEN = {}\n");
    let _ = writeln!(o, "GEN.msntap_version = {}", lua_str(msntap_version));
    o.push_str("GEN.sources = {\n");
    for f in tables.files() {
        let _ = writeln!(o, "  {},", lua_str(f));
    }
    o.push_str("}\n\nGEN.commands = {\n");
    for c in tables.commands() {
        // Whether some form may carry a payload in a direction (used when no form fits).
        let may = |c2s: bool| {
            c.forms.iter().any(|f| {
                f.payload == PayloadRule::Last
                    && match f.dir {
                        DirSpec::Both => true,
                        DirSpec::C2s => c2s,
                        DirSpec::S2c => !c2s,
                    }
            })
        };
        let _ = write!(
            o,
            "  [{}] = {{\n    meaning = {},\n    payload = {{ c2s = {}, s2c = {} }},\n    forms = {{\n",
            lua_str(&c.name),
            lua_str(&c.meaning),
            may(true),
            may(false)
        );
        for f in &c.forms {
            write_form(&mut o, c, f, &fields);
        }
        o.push_str("    },\n  },\n");
    }
    o.push_str("}\n\nGEN.fields = {\n");
    let mut flist: Vec<&ParamField> = fields.values().collect();
    flist.sort_by(|a, b| a.abbr.cmp(&b.abbr));
    for f in flist {
        let _ = writeln!(
            o,
            "  {{ {}, {}, {}, {} }},",
            lua_str(&f.abbr),
            lua_str(&f.label),
            lua_str(if f.class == Class::Uint {
                "uint"
            } else {
                "string"
            }),
            lua_str(&f.desc)
        );
    }
    o.push_str("}\n\nGEN.errors = {\n");
    for e in tables.errors.values() {
        let _ = writeln!(
            o,
            "  [{}] = {{ {}, {} }},",
            e.code,
            lua_str(&e.name),
            lua_str(&e.meaning)
        );
    }
    o.push_str("}\nGEN.error_names = {}\nfor code, e in pairs(GEN.errors) do\n  GEN.error_names[code] = e[1]\nend\n\nGEN.caps = {\n");
    for (abbr, c, single) in &caps {
        let _ = writeln!(
            o,
            "  {{ abbr = {}, bit = {:#x}, name = {}, meaning = {}, ext = {}, single = {} }},",
            lua_str(abbr),
            c.bit,
            lua_str(&c.name),
            lua_str(&c.meaning),
            c.ext,
            single
        );
    }
    o.push_str("}\n\nGEN.mime_headers = {\n");
    for (k, e) in &tables.mime_headers {
        let _ = writeln!(o, "  [{}] = {},", lua_str(k), lua_str(&e.meaning));
    }
    o.push_str("}\n\n");
    let _ = writeln!(o, "GEN.client_version_mask = {CLIENT_VERSION_MASK:#x}");
    o.push_str("GEN.client_versions = {\n");
    for v in tables.client_versions.values() {
        let _ = writeln!(o, "  [{}] = {},", v.nibble, lua_str(&v.name));
    }
    o.push_str("}\n\nGEN.lists = {\n");
    for (abbr, l) in &lists {
        let _ = writeln!(
            o,
            "  {{ abbr = {}, bit = {:#x}, name = {}, meaning = {} }},",
            lua_str(abbr),
            l.bit,
            lua_str(&l.name),
            lua_str(&l.meaning)
        );
    }
    o.push_str("}\n\n");
    write_rules(&mut o, &tables.rules);
    write_constants(&mut o);
    write_p2p(&mut o);
    o.push_str(STATIC_LUA);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_strings_escape_quotes_backslashes_and_bytes() {
        assert_eq!(lua_str("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(lua_str("x\ny"), "\"x\\010y\"");
        // A digit after an escape must not join it: escapes are always three digits.
        assert_eq!(lua_str("\u{1}1"), "\"\\0011\"");
        assert_eq!(lua_str("é"), "\"\\195\\169\"");
    }

    #[test]
    fn header_names_every_table_file_and_the_version() {
        let t = Tables::builtin().expect("built-in tables");
        let lua = generate(&t, "9.9.9");
        assert!(lua.contains("Generated by msntap 9.9.9"));
        assert!(!t.files().is_empty());
        for f in t.files() {
            assert!(lua.contains(&format!("--   {f}\n")), "{f}");
        }
    }

    #[test]
    fn conflicting_parameter_types_become_strings() {
        let mut t = Tables::empty();
        t.add_file(
            "x.toml",
            r#"
[[command]]
name = "ZZZ"
meaning = "m"
services = ["NS"]
versions = "2-21"
  [[command.form]]
  dir = "c2s"
  params = [{ name = "trid", type = "trid" }, { name = "a-b", type = "int" }]
  [[command.form]]
  dir = "s2c"
  params = [{ name = "trid", type = "trid" }, { name = "a-b", type = "handle" }, { name = "a_b", type = "int" }]
"#,
        )
        .expect("table parses");
        let f = param_fields(&t);
        let ab = &f[&("ZZZ".to_string(), "a-b".to_string())];
        assert_eq!(ab.class, Class::Str);
        assert_eq!(ab.abbr, "msnp.zzz.a_b");
        assert_eq!(
            f[&("ZZZ".to_string(), "a_b".to_string())].abbr,
            "msnp.zzz.a_b_2"
        );
        assert_eq!(
            f[&("ZZZ".to_string(), "trid".to_string())].class,
            Class::Uint
        );
    }
}
