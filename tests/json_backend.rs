//! msntap::json against serde_json itself: arbitrary nested values, derived types with
//! flatten/skip/tagging, and every line of captures/expected. Bytes (or the error) must be
//! identical; serde_json is the oracle, never this crate's own earlier output.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use serde::Serialize;
use serde_json::Value;

/// Both serialisers on `v`: the same bytes, or both an error with the same message (and then
/// nothing left in the buffer by ours).
fn check<T: Serialize + ?Sized>(v: &T) -> Result<(), TestCaseError> {
    let theirs = serde_json::to_vec(v);
    let mut ours = b"prefix".to_vec();
    let r = msntap::json::to_vec_into(&mut ours, v);
    match (theirs, r) {
        (Ok(t), Ok(())) => {
            prop_assert_eq!(&ours[..6], b"prefix");
            prop_assert_eq!(
                String::from_utf8_lossy(&ours[6..]),
                String::from_utf8_lossy(&t)
            );
        }
        (Err(t), Err(o)) => {
            prop_assert_eq!(t.to_string(), o.to_string());
            prop_assert_eq!(&ours[..], b"prefix");
        }
        (t, o) => prop_assert!(false, "serde_json {:?}, ours {:?}", t.map(|_| ()), o),
    }
    Ok(())
}

/// Strings built from pieces of every byte class, so escapes, multi-byte characters and
/// quotes fall at every offset from the 8- and 16-byte blocks the escaper reads.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9 ./:@=+-]{0,40}",
        1 => (0u8..0x20).prop_map(|b| char::from(b).to_string()),
        1 => Just("\"".to_string()),
        1 => Just("\\".to_string()),
        1 => Just("\r\n".to_string()),
        1 => prop::sample::select(vec!["/", "\u{7f}", "é", "€", "😀", "\u{2028}", "\u{fffd}"])
            .prop_map(str::to_string),
        1 => any::<String>(),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            Value::from(i64::MIN),
            Value::from(i64::MAX),
            Value::from(u64::MAX),
            Value::from(0),
            Value::from(-1),
            Value::from(f64::MAX),
            Value::from(f64::MIN_POSITIVE),
            Value::from(5e-324),
            Value::from(-0.0),
            Value::from(1e21),
            Value::from(1e-7),
        ]),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Non-finite floats have no Value; the typed cases below carry them.
        any::<f64>().prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "snake_case")]
enum Dir {
    C2s,
    S2c,
}

#[derive(Serialize, Debug, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Kind {
    Command {
        cmd: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        trid: Option<u32>,
        args: Vec<String>,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        fields: BTreeMap<String, Value>,
    },
    Payload(Body),
    Disconnect,
}

#[derive(Serialize, Debug, Clone)]
struct Body {
    #[serde(rename = "content-type")]
    content_type: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
    bytes: Bytes,
}

/// Goes through `serialize_bytes`, which a `Vec<u8>` field would not.
#[derive(Debug, Clone)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

#[derive(Serialize, Debug, Clone)]
#[serde(untagged)]
enum Loose {
    Text(String),
    Num(i128),
    Pair(u8, Option<char>),
    Rec { f: f32 },
}

#[derive(Serialize, Debug, Clone)]
#[serde(tag = "t", content = "c")]
enum Adjacent {
    A(u128),
    B { x: Vec<Loose> },
    C,
}

#[derive(Serialize, Debug, Clone)]
enum External {
    Unit,
    New(f64),
    Tuple(i8, String),
    Struct {
        #[serde(skip_serializing_if = "Option::is_none")]
        a: Option<bool>,
    },
}

#[derive(Serialize, Debug, Clone)]
struct Event {
    schema: u32,
    ts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<Dir>,
    version: Option<String>,
    #[serde(flatten)]
    kind: Kind,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
    loose: Vec<Loose>,
    adjacent: Adjacent,
    external: External,
    int_keys: BTreeMap<i64, bool>,
    bool_keys: BTreeMap<bool, ()>,
    unit: (),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (
            text(),
            any::<Option<u32>>(),
            prop::collection::vec(text(), 0..6),
            prop::collection::btree_map(text(), value(), 0..3),
        )
            .prop_map(|(cmd, trid, args, fields)| Kind::Command {
                cmd,
                trid,
                args,
                fields
            }),
        (
            text(),
            prop::collection::vec((text(), text()), 0..3),
            prop::collection::vec(any::<u8>(), 0..20),
        )
            .prop_map(|(content_type, headers, b)| Kind::Payload(Body {
                content_type,
                headers,
                bytes: Bytes(b),
            })),
        Just(Kind::Disconnect),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            1e300
        ]),
        any::<f64>(),
        prop::num::f64::ANY,
    ]
}

fn loose() -> impl Strategy<Value = Loose> {
    prop_oneof![
        text().prop_map(Loose::Text),
        any::<i128>().prop_map(Loose::Num),
        (any::<u8>(), any::<Option<char>>()).prop_map(|(a, b)| Loose::Pair(a, b)),
        prop::num::f32::ANY.prop_map(|f| Loose::Rec { f }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let head = (
        any::<u32>(),
        text(),
        prop::option::of(prop_oneof![Just(Dir::C2s), Just(Dir::S2c)]),
        prop::option::of(text()),
        kind(),
        // Keys that the flattened kind also has: serde_json then writes the key twice, and
        // so must we.
        prop::collection::btree_map(
            prop_oneof![text(), Just("cmd".to_string()), Just("type".to_string())],
            value(),
            0..3,
        ),
    );
    let tail = (
        prop::collection::vec(loose(), 0..4),
        prop_oneof![
            any::<u128>().prop_map(Adjacent::A),
            prop::collection::vec(loose(), 0..3).prop_map(|x| Adjacent::B { x }),
            Just(Adjacent::C),
        ],
        prop_oneof![
            Just(External::Unit),
            float().prop_map(External::New),
            (any::<i8>(), text()).prop_map(|(a, b)| External::Tuple(a, b)),
            any::<Option<bool>>().prop_map(|a| External::Struct { a }),
        ],
        prop::collection::btree_map(any::<i64>(), any::<bool>(), 0..4),
        prop::collection::btree_map(any::<bool>(), Just(()), 0..3),
    );
    (head, tail).prop_map(
        |(
            (schema, ts, dir, version, kind, extra),
            (loose, adjacent, external, int_keys, bool_keys),
        )| Event {
            schema,
            ts,
            dir,
            version,
            kind,
            extra,
            loose,
            adjacent,
            external,
            int_keys,
            bool_keys,
            unit: (),
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn values_serialise_as_serde_json(v in value()) {
        check(&v)?;
    }

    #[test]
    fn strings_serialise_as_serde_json(s in text(), pad in 0usize..17) {
        // The same string at every alignment inside a longer one, and alone.
        check(&s)?;
        check(&format!("{}{s}", "x".repeat(pad)))?;
    }

    #[test]
    fn derived_types_serialise_as_serde_json(ev in event()) {
        check(&ev)?;
    }

    #[test]
    fn floats_serialise_as_serde_json(f in float(), g in prop::num::f32::ANY) {
        check(&(f, g))?;
        check(&FloatKeys(vec![f]))?;
        check(&FloatKeys(vec![g]))?;
    }
}

/// A map with float keys (no std map has them): finite ones quoted, others an error.
struct FloatKeys<F>(Vec<F>);

impl<F: Serialize> Serialize for FloatKeys<F> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for k in &self.0 {
            m.serialize_entry(k, "v")?;
        }
        m.end()
    }
}

#[test]
fn every_expected_capture_line_serialises_as_serde_json() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("captures/expected");
    let mut lines = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("captures/expected is in the repository") {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).expect("readable");
        for (i, line) in text.lines().enumerate() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
            let ours = msntap::json::to_vec(&v).expect("a Value always serialises");
            let theirs = serde_json::to_vec(&v).expect("a Value always serialises");
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "{}:{}",
                path.display(),
                i + 1
            );
            lines += 1;
        }
    }
    assert!(
        files >= 10 && lines > 500,
        "{files} files, {lines} lines: fixtures missing?"
    );
}
