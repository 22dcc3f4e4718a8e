//! JSON Lines sink: one event per line, schema documented in docs/events.md.
//!
//! Events are written by hand, not through serde: with `serde_json::to_writer` the
//! serialisation (the `flatten` of `EventKind` into a map, `Value::serialize`, per-byte string
//! escaping) was about half of the time of `msntap read --json`. The output must stay byte for
//! byte what `serde_json::to_writer(out, ev)` writes for the `Serialize` derives in
//! event/mod.rs (which stay, for `serde_json::to_value` and reading back): the same key order
//! (declaration order, the `type` tag right after the `Event` fields, `Map` keys in the map's
//! order), the same `skip_serializing_if` rules, numbers through serde_json's own formatter,
//! and serde_json's escaping (`"`, `\`, and bytes below 0x20; never `/` or non-ASCII).
//! tests/jsonl_bytes.rs compares the two on every event of every capture and log in
//! captures/, and the tests below on edge cases; a field added to an event type must be added
//! here too (those tests fail until it is).

use std::io::Write;

use serde_json::ser::{CompactFormatter, Formatter};
use serde_json::{Map, Number, Value};

use super::{Command, ErrorInfo, Event, EventKind, Payload, Sink};

/// Buffered bytes written out once past this size.
const FLUSH_AT: usize = 256 * 1024;

pub struct JsonlSink<W: Write> {
    out: W,
    /// Whole lines not yet written to `out`; events are written straight into it.
    buf: Vec<u8>,
}

impl<W: Write> JsonlSink<W> {
    pub fn new(w: W) -> Self {
        JsonlSink {
            out: w,
            buf: Vec::with_capacity(FLUSH_AT + 16 * 1024),
        }
    }

    fn write_buf(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl<W: Write> Sink for JsonlSink<W> {
    fn event(&mut self, ev: &Event) -> std::io::Result<()> {
        write_event(&mut self.buf, ev);
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_AT {
            self.write_buf()?;
        }
        Ok(())
    }
    fn finish(&mut self) -> std::io::Result<()> {
        self.write_buf()?;
        self.out.flush()
    }
}

impl<W: Write> Drop for JsonlSink<W> {
    /// Like `BufWriter`: what is still buffered is written, errors ignored.
    fn drop(&mut self) {
        let _ = self.write_buf();
    }
}

/// Appends `ev` as one JSON object (no line ending): the bytes of
/// `serde_json::to_writer(out, ev)`.
pub fn write_event(out: &mut Vec<u8>, ev: &Event) {
    out.extend_from_slice(b"{\"schema\":");
    write_u64(out, u64::from(ev.schema));
    out.extend_from_slice(b",\"ts\":");
    match ev.ts.rfc3339() {
        Some(b) => {
            out.push(b'"');
            out.extend_from_slice(&b);
            out.push(b'"');
        }
        None => write_str(out, &ev.ts.to_string()),
    }
    out.extend_from_slice(b",\"conn\":");
    write_u64(out, ev.conn);
    if let Some(d) = ev.dir {
        out.extend_from_slice(b",\"dir\":");
        write_str(out, d.as_str());
    }
    out.extend_from_slice(b",\"service\":");
    write_str(out, ev.service.as_str());
    out.extend_from_slice(b",\"version\":");
    match ev.version {
        Some(v) => {
            out.extend_from_slice(b"\"MSNP");
            write_u64(out, u64::from(v.0));
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"type\":");
    write_str(out, ev.type_name());
    match &ev.kind {
        EventKind::Command(c) => write_command(out, c),
        EventKind::Connect {
            client,
            server,
            detail,
        } => {
            opt_str(out, b",\"client\":", client.as_deref());
            opt_str(out, b",\"server\":", server.as_deref());
            opt_str(out, b",\"detail\":", detail.as_deref());
        }
        EventKind::Close {
            by,
            reason,
            bytes_c2s,
            bytes_s2c,
        } => {
            opt_str(out, b",\"by\":", by.as_deref());
            opt_str(out, b",\"reason\":", reason.as_deref());
            out.extend_from_slice(b",\"bytes_c2s\":");
            write_u64(out, *bytes_c2s);
            out.extend_from_slice(b",\"bytes_s2c\":");
            write_u64(out, *bytes_s2c);
        }
        EventKind::Desync {
            offset,
            skipped,
            reason,
            preview,
        } => {
            out.extend_from_slice(b",\"offset\":");
            write_u64(out, *offset);
            out.extend_from_slice(b",\"skipped\":");
            write_u64(out, *skipped);
            out.extend_from_slice(b",\"reason\":");
            write_str(out, reason);
            out.extend_from_slice(b",\"preview\":");
            write_str(out, preview);
        }
        EventKind::Error { message } | EventKind::Note { message } => {
            out.extend_from_slice(b",\"message\":");
            write_str(out, message);
        }
        EventKind::Gap { offset, length } => {
            out.extend_from_slice(b",\"offset\":");
            write_u64(out, *offset);
            out.extend_from_slice(b",\"length\":");
            write_u64(out, *length);
        }
        EventKind::Redirect {
            cmd,
            target,
            original,
            rewritten,
        } => {
            out.extend_from_slice(b",\"cmd\":");
            write_str(out, cmd);
            out.extend_from_slice(b",\"target\":");
            write_str(out, target.as_str());
            out.extend_from_slice(b",\"original\":");
            write_str(out, original);
            out.extend_from_slice(b",\"rewritten\":");
            write_str(out, rewritten);
        }
    }
    out.push(b'}');
}

fn write_command(out: &mut Vec<u8>, c: &Command) {
    out.extend_from_slice(b",\"cmd\":");
    write_str(out, &c.cmd);
    if let Some(t) = c.trid {
        out.extend_from_slice(b",\"trid\":");
        write_u64(out, t);
    }
    out.extend_from_slice(b",\"args\":[");
    for (i, a) in c.args.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, a);
    }
    out.push(b']');
    if !c.fields.is_empty() {
        out.extend_from_slice(b",\"fields\":");
        write_map(out, &c.fields);
    }
    out.extend_from_slice(if c.known {
        b",\"known\":true"
    } else {
        b",\"known\":false"
    });
    if c.unmatched_form {
        out.extend_from_slice(b",\"unmatched_form\":true");
    }
    opt_str(out, b",\"meaning\":", c.meaning.as_deref());
    if let Some(e) = &c.error {
        write_error(out, e);
    }
    if let Some(p) = &c.payload {
        write_payload(out, p);
    }
    out.extend_from_slice(b",\"line\":");
    write_str(out, &c.line);
    out.extend_from_slice(b",\"offset\":");
    write_u64(out, c.offset);
    if c.redacted {
        out.extend_from_slice(b",\"redacted\":true");
    }
    if !c.annotations.is_empty() {
        out.extend_from_slice(b",\"annotations\":");
        write_map(out, &c.annotations);
    }
}

fn write_error(out: &mut Vec<u8>, e: &ErrorInfo) {
    out.extend_from_slice(b",\"error\":{\"code\":");
    write_u64(out, u64::from(e.code));
    opt_str(out, b",\"name\":", e.name.as_deref());
    opt_str(out, b",\"meaning\":", e.meaning.as_deref());
    out.push(b'}');
}

fn write_payload(out: &mut Vec<u8>, p: &Payload) {
    out.extend_from_slice(b",\"payload\":{\"length\":");
    write_u64(out, p.length);
    out.extend_from_slice(b",\"kind\":");
    write_str(out, &p.kind);
    if p.guess {
        out.extend_from_slice(b",\"guess\":true");
    }
    if let Some(d) = &p.decoded {
        out.extend_from_slice(b",\"decoded\":");
        write_value(out, d);
    }
    opt_str(out, b",\"text\":", p.text.as_deref());
    opt_str(out, b",\"base64\":", p.base64.as_deref());
    opt_str(out, b",\"problem\":", p.problem.as_deref());
    out.push(b'}');
}

/// `key` (with its leading comma and colon) and the string, when there is one.
#[inline]
fn opt_str(out: &mut Vec<u8>, key: &[u8], s: Option<&str>) {
    if let Some(s) = s {
        out.extend_from_slice(key);
        write_str(out, s);
    }
}

/// A `serde_json::Value` as `Value::serialize` writes it.
fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, v);
            }
            out.push(b']');
        }
        Value::Object(m) => write_map(out, m),
    }
}

fn write_map(out: &mut Vec<u8>, m: &Map<String, Value>) {
    out.push(b'{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

// Numbers go through serde_json's own formatter (itoa, and its float formatting), as
// `Number::serialize` does: `u64` when it is one, else `i64`, else a (finite) float.
// Writing into a `Vec` cannot fail.
fn write_number(out: &mut Vec<u8>, n: &Number) {
    let r = if let Some(u) = n.as_u64() {
        CompactFormatter.write_u64(out, u)
    } else if let Some(i) = n.as_i64() {
        CompactFormatter.write_i64(out, i)
    } else if let Some(f) = n.as_f64() {
        CompactFormatter.write_f64(out, f)
    } else {
        CompactFormatter.write_null(out)
    };
    debug_assert!(r.is_ok());
}

#[inline]
fn write_u64(out: &mut Vec<u8>, v: u64) {
    let r = CompactFormatter.write_u64(out, v);
    debug_assert!(r.is_ok());
}

/// serde_json's escape table: `b'u'` for `\u00XX`, another letter for a two-byte escape,
/// 0 for a byte written as it is.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const LO: u64 = u64::from_ne_bytes([0x01; 8]);
const HI: u64 = u64::from_ne_bytes([0x80; 8]);

/// High bit set in the bytes of `x` (little-endian lanes) that need an escape: below 0x20,
/// `"` or `\`. Only the lowest set lane is exact (a borrow can mark lanes above it), which
/// is the only one used.
#[inline]
fn needs_escape(x: u64) -> u64 {
    let ctrl = x.wrapping_sub(LO * 0x20) & !x;
    let q = x ^ (LO * u64::from(b'"'));
    let q = q.wrapping_sub(LO) & !q;
    let b = x ^ (LO * u64::from(b'\\'));
    let b = b.wrapping_sub(LO) & !b;
    (ctrl | q | b) & HI
}

#[inline]
fn load8(b: &[u8], at: usize) -> u64 {
    let mut lane = [0u8; 8];
    lane.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(lane)
}

/// Whether some byte of `b` needs an escape. Bytes may be tested twice (overlapping loads):
/// only the yes/no answer is used.
#[inline]
fn any_escape(b: &[u8]) -> bool {
    let n = b.len();
    if n >= 8 {
        let mut i = 0;
        while i + 16 <= n {
            if needs_escape(load8(b, i)) | needs_escape(load8(b, i + 8)) != 0 {
                return true;
            }
            i += 16;
        }
        if i + 8 <= n && needs_escape(load8(b, i)) != 0 {
            return true;
        }
        needs_escape(load8(b, n - 8)) != 0
    } else if n >= 4 {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]);
        needs_escape(u64::from(lo) | u64::from(hi) << 32) != 0
    } else if n > 0 {
        // Three bytes (some twice), the other lanes spaces.
        let x = u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16;
        needs_escape(x | (LO * 0x20) << 24) != 0
    } else {
        false
    }
}

/// Appends `s` as a JSON string.
#[inline]
fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    if any_escape(b) {
        write_escaped(out, b);
    } else {
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    }
}

/// A string with escapes: safe runs are found 8 bytes at a time and copied whole.
#[inline(never)]
fn write_escaped(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'"');
    // `b[start..i]` is checked and waits to be copied.
    let mut start = 0;
    let mut i = 0;
    while i + 8 <= b.len() {
        let m = needs_escape(load8(b, i));
        if m == 0 {
            i += 8;
            continue;
        }
        let j = i + (m.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&b[start..j]);
        escape(out, b[j]);
        i = j + 1;
        start = i;
    }
    while i < b.len() {
        if ESCAPE[b[i] as usize] != 0 {
            out.extend_from_slice(&b[start..i]);
            escape(out, b[i]);
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

#[cold]
fn escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ESCAPE[byte as usize] {
        b'u' => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xf)],
        ]),
        e => out.extend_from_slice(&[b'\\', e]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Dir, Service, Ts, Version, SCHEMA_VERSION};
    use serde_json::json;

    fn serde_bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        serde_json::to_writer(&mut out, v).expect("serialise");
        out
    }

    fn same_event(ev: &Event) {
        let mut ours = Vec::new();
        write_event(&mut ours, ev);
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&serde_bytes(ev)),
            "{ev:?}"
        );
    }

    fn same_str(s: &str) {
        let mut ours = Vec::new();
        write_str(&mut ours, s);
        assert_eq!(ours, serde_bytes(&s), "{s:?}");
    }

    fn same_value(v: &Value) {
        let mut ours = Vec::new();
        write_value(&mut ours, v);
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&serde_bytes(v))
        );
    }

    /// Strings that test every escape at every offset of an 8-byte lane.
    fn tricky_strings() -> Vec<String> {
        let mut v: Vec<String> = vec![
            String::new(),
            "a".into(),
            "\"".into(),
            "\\".into(),
            "/ and \u{7f} stay".into(),
            "quote \" backslash \\ slash / done".into(),
            "\"\"\"\"\"\"\"\"\"\\\\\\\\\\\\\\\\\\".into(),
            "héllo wörld ✓ 𝄞 日本語 \u{80}\u{ff}\u{100}\u{fffd}".into(),
            "\r\n\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nhi".into(),
        ];
        let all_ctrl: String = (0u8..0x20).map(char::from).collect();
        v.push(all_ctrl.clone());
        v.push(format!("x{all_ctrl}\u{7f}y"));
        for c in (0u8..0x20).chain([b'"', b'\\', 0x7f, b'/', b' ', b'~']) {
            for len in 0..40 {
                for at in 0..len {
                    let mut s: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    s[at] = c;
                    v.push(String::from_utf8(s).expect("ASCII"));
                }
            }
        }
        // Multi-byte characters (whose bytes are >= 0x80, next to 0x22/0x5c-like patterns)
        // crossing lane boundaries at every offset, with escapes after them.
        for pre in 0..17 {
            let p = "-".repeat(pre);
            v.push(format!("{p}é\"ü\\𝄞\n€"));
            v.push(format!("{p}\u{a2}\u{dc}\u{5c}\u{222}\u{2022}\u{1f}"));
        }
        v.push("long ".repeat(1000) + "\"end\"");
        v
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        for s in tricky_strings() {
            same_str(&s);
        }
        for b in 0u8..0x80 {
            same_str(&char::from(b).to_string());
        }
    }

    #[test]
    fn values_write_as_serde_json_does() {
        let vals = [
            Value::Null,
            json!(true),
            json!(false),
            json!(0),
            json!(u64::MAX),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(-1),
            json!(0.0),
            json!(-0.0),
            json!(1.0),
            json!(1.5),
            json!(-2.25e-7),
            json!(1e20),
            json!(1e21),
            json!(123456789.125),
            json!(f64::MAX),
            json!(f64::MIN_POSITIVE),
            json!(5e-324),
            json!(std::f64::consts::PI),
            json!(f64::NAN),
            json!([]),
            json!({}),
            json!([[], {}, [null], {"": ""}]),
            json!({"b": 1, "a": [1, -2, 3.5, "x\"y"], "\u{1}key\n": {"z": {"y": [true]}}, "é": null}),
        ];
        for v in &vals {
            same_value(v);
        }
        let strings: Vec<Value> = tricky_strings().into_iter().map(Value::String).collect();
        same_value(&Value::Array(strings.clone()));
        let keyed: Map<String, Value> = tricky_strings()
            .into_iter()
            .zip(strings)
            .collect::<Map<_, _>>();
        same_value(&Value::Object(keyed));
    }

    fn base(kind: EventKind) -> Event {
        Event {
            schema: SCHEMA_VERSION,
            ts: Ts::from_secs_micros(1_117_627_230, 42),
            conn: 7,
            dir: Some(Dir::S2c),
            service: Service::Sb,
            version: Some(Version(11)),
            kind,
        }
    }

    fn command() -> Command {
        Command {
            cmd: "MSG".into(),
            trid: None,
            args: vec![],
            fields: Map::new(),
            known: false,
            unmatched_form: false,
            meaning: None,
            error: None,
            payload: None,
            line: "".into(),
            offset: 0,
            redacted: false,
            annotations: Map::new(),
            address_args: vec![1],
            secret_args: vec![2],
            raw: b"raw".to_vec(),
        }
    }

    /// Some text, whichever string type the field has.
    fn s<T: From<&'static str>>(x: &'static str) -> Option<T> {
        Some(x.into())
    }

    #[test]
    fn every_event_kind_writes_as_serde_json_does() {
        let mut full = command();
        full.trid = Some(u64::MAX);
        full.args = vec!["a\"b".into(), "".into(), "é\\".into()];
        full.fields = json!({"z": 1, "a": {"n": [-5, 2.5]}, "m": "\u{0}"})
            .as_object()
            .cloned()
            .expect("object");
        full.known = true;
        full.unmatched_form = true;
        full.meaning = s("means \"this\"");
        full.error = Some(ErrorInfo {
            code: 911,
            name: s("ERR_AUTH"),
            meaning: s("bad\tauth"),
        });
        full.payload = Some(Payload {
            length: 12,
            kind: "mime".into(),
            guess: true,
            decoded: Some(json!({"headers": [["A", "b\r\n"]], "x": null})),
            text: s("hi\r\nthere\u{1f}"),
            base64: s("AAEC/w=="),
            problem: s("truncated"),
        });
        full.line = "MSG 1 U 12".into();
        full.offset = 1 << 40;
        full.redacted = true;
        full.annotations =
            json!({"auth": {"scheme": "MD5", "ok": true}, "challenge": {"valid": false}})
                .as_object()
                .cloned()
                .expect("object");
        let mut sparse_payload = command();
        sparse_payload.error = Some(ErrorInfo {
            code: 0,
            name: None,
            meaning: None,
        });
        sparse_payload.payload = Some(Payload {
            length: 0,
            kind: "skipped".into(),
            guess: false,
            decoded: None,
            text: None,
            base64: None,
            problem: None,
        });
        let kinds = vec![
            EventKind::Command(Box::new(command())),
            EventKind::Command(Box::new(full)),
            EventKind::Command(Box::new(sparse_payload)),
            EventKind::Connect {
                client: None,
                server: None,
                detail: None,
            },
            EventKind::Connect {
                client: s("1.2.3.4:5"),
                server: s("[::1]:1863"),
                detail: s("d\u{7}"),
            },
            EventKind::Close {
                by: None,
                reason: None,
                bytes_c2s: 0,
                bytes_s2c: u64::MAX,
            },
            EventKind::Close {
                by: s("server"),
                reason: s("eof"),
                bytes_c2s: 1,
                bytes_s2c: 2,
            },
            EventKind::Desync {
                offset: 3,
                skipped: 4,
                reason: "no line".into(),
                preview: "\\x00\\xff".into(),
            },
            EventKind::Error {
                message: "boom \"x\"".into(),
            },
            EventKind::Gap {
                offset: 5,
                length: 6,
            },
            EventKind::Redirect {
                cmd: "XFR".into(),
                target: Service::Ns,
                original: "1.2.3.4:1863".into(),
                rewritten: "127.0.0.1:1863".into(),
            },
            EventKind::Note {
                message: "log:3: note".into(),
            },
        ];
        for kind in kinds {
            let mut ev = base(kind);
            same_event(&ev);
            ev.dir = None;
            ev.version = None;
            ev.service = Service::Unknown;
            same_event(&ev);
            ev.dir = Some(Dir::C2s);
            ev.service = Service::Ds;
            ev.version = Some(Version(255));
            ev.conn = u64::MAX;
            ev.schema = u32::MAX;
            same_event(&ev);
            ev.service = Service::Ns;
            for ts in [
                0,
                -1,
                i64::MIN,
                i64::MAX,
                253_402_300_800_000_000,
                -62_167_219_200_000_001,
            ] {
                ev.ts = Ts(ts);
                same_event(&ev);
            }
        }
    }

    #[test]
    fn the_sink_writes_lines_and_flushes_what_is_left() {
        let evs: Vec<Event> = (0..3000)
            .map(|i| {
                base(EventKind::Note {
                    message: "n".repeat(i),
                })
            })
            .collect();
        let mut want = Vec::new();
        for ev in &evs {
            want.extend(serde_bytes(ev));
            want.push(b'\n');
        }
        let mut got = Vec::new();
        {
            let mut sink = JsonlSink::new(&mut got);
            for ev in &evs {
                sink.event(ev).expect("event");
            }
            sink.finish().expect("finish");
        }
        assert_eq!(got, want);
        let mut dropped = Vec::new();
        {
            let mut sink = JsonlSink::new(&mut dropped);
            sink.event(&evs[1]).expect("event");
        }
        assert_eq!(dropped, [serde_bytes(&evs[1]), b"\n".to_vec()].concat());
    }
}
