//! Generic compact JSON backend for serde: renders any `T: Serialize` into a `Vec<u8>`, byte for
//! byte what `serde_json::to_writer` (compact formatter) writes, only faster on strings.
//! It must not know any schema: the layout is decided by the types' `Serialize` impls alone.
//!
//! Divergences from serde_json, both on misuse only: a `Display` impl that fails inside
//! `collect_str` is an error here (serde_json panics), and a failed value leaves nothing in the
//! buffer (serde_json leaves what it had written).

use std::fmt::{self, Display};
use std::io::{self, Write};

use serde::ser::{self, Impossible, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Same text as serde_json's, so messages do not change with the backend.
    #[error("key must be a string")]
    KeyMustBeAString,
    #[error("float key must be finite (got NaN or +/-inf)")]
    FloatKeyMustBeFinite,
    #[error("a Display impl failed inside collect_str")]
    Display,
    /// From a `Serialize` impl (`ser::Error::custom`), e.g. serde's "can only flatten structs
    /// and maps".
    #[error("{0}")]
    Custom(String),
    #[error("write failed: {0}")]
    Io(#[from] io::Error),
}

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error::Custom(msg.to_string())
    }
}

type Result<T = (), E = Error> = std::result::Result<T, E>;

/// Appends the JSON of `v` to `out`. On error `out` is truncated back to its length on entry,
/// so a buffer of JSON Lines never holds half a value.
pub fn to_vec_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> Result {
    let start = out.len();
    let r = v.serialize(Serializer::new(out));
    if r.is_err() {
        out.truncate(start);
    }
    r
}

pub fn to_vec<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    to_vec_into(&mut out, v)?;
    Ok(out)
}

/// JSON Lines into a writer through one reused buffer, written out once it passes `FLUSH_AT`.
/// Whatever is buffered is lost unless `flush` is called before drop.
pub struct JsonLines<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> JsonLines<W> {
    /// Large enough that the write calls cost nothing, small enough to stay in L2.
    pub const FLUSH_AT: usize = 256 * 1024;

    pub fn new(out: W) -> Self {
        JsonLines {
            out,
            buf: Vec::with_capacity(Self::FLUSH_AT + 16 * 1024),
        }
    }

    /// One value and a newline. A value that fails to serialise writes nothing.
    pub fn write<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
        to_vec_into(&mut self.buf, v)?;
        self.buf.push(b'\n');
        if self.buf.len() >= Self::FLUSH_AT {
            self.write_buf()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result {
        self.write_buf()?;
        Ok(self.out.flush()?)
    }

    fn write_buf(&mut self) -> io::Result<()> {
        let r = self.out.write_all(&self.buf);
        self.buf.clear();
        r
    }
}

/// The serde `Serializer`; `value.serialize(Serializer::new(&mut vec))` appends to `vec`
/// (and leaves a partial value there on error: `to_vec_into` cleans up).
pub struct Serializer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Serializer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Serializer { out }
    }
}

/// serde_json's `State`: `Empty` is a container already closed because its length was 0.
/// Kept rather than simplified so that a `Serialize` impl lying about its length gets
/// serde_json's bytes too.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    First,
    Rest,
}

pub struct Compound<'a> {
    out: &'a mut Vec<u8>,
    state: State,
}

impl Compound<'_> {
    #[inline]
    fn comma(&mut self) {
        if self.state != State::First {
            self.out.push(b',');
        }
        self.state = State::Rest;
    }
    #[inline]
    fn close(&mut self, b: u8) {
        if self.state != State::Empty {
            self.out.push(b);
        }
    }
    #[inline]
    fn ser(&mut self) -> Serializer<'_> {
        Serializer::new(self.out)
    }
}

#[inline(always)]
fn open(out: &mut Vec<u8>, open: u8, close: u8, len: Option<usize>) -> Compound<'_> {
    out.push(open);
    let state = if len == Some(0) {
        out.push(close);
        State::Empty
    } else {
        State::First
    };
    Compound { out, state }
}

/// `{"variant":` of the externally tagged variants.
fn open_variant(out: &mut Vec<u8>, variant: &str) {
    out.push(b'{');
    write_str(out, variant);
    out.push(b':');
}

#[inline]
fn write_int<I: itoa::Integer>(out: &mut Vec<u8>, v: I) {
    // A loop rather than `extend_from_slice`, whose `memcpy` call costs more than the few
    // digits of a typical id or offset.
    out.extend(itoa::Buffer::new().format(v).bytes());
}

/// serde_json formats floats with zmij (not ryu) since 1.0.14x; the same crate gives the same
/// digits by construction.
#[inline]
fn write_float<F: zmij::Float>(out: &mut Vec<u8>, v: F) {
    out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
}

fn write_display<T: Display + ?Sized>(out: &mut Vec<u8>, v: &T) -> Result {
    struct Escaper<'a>(&'a mut Vec<u8>);
    impl fmt::Write for Escaper<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            write_str_contents(self.0, s.as_bytes());
            Ok(())
        }
    }
    out.push(b'"');
    fmt::write(&mut Escaper(out), format_args!("{v}")).map_err(|_| Error::Display)?;
    out.push(b'"');
    Ok(())
}

macro_rules! ints {
    ($($f:ident $t:ty),*) => {$(
        #[inline]
        fn $f(self, v: $t) -> Result {
            write_int(self.out, v);
            Ok(())
        }
    )*};
}

impl<'a> ser::Serializer for Serializer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result {
        self.out
            .extend_from_slice(if v { b"true" as &[u8] } else { b"false" });
        Ok(())
    }
    ints!(serialize_i8 i8, serialize_i16 i16, serialize_i32 i32, serialize_i64 i64,
        serialize_i128 i128, serialize_u8 u8, serialize_u16 u16, serialize_u32 u32,
        serialize_u64 u64, serialize_u128 u128);
    #[inline]
    fn serialize_f32(self, v: f32) -> Result {
        if v.is_finite() {
            write_float(self.out, v);
            Ok(())
        } else {
            self.serialize_unit()
        }
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result {
        if v.is_finite() {
            write_float(self.out, v);
            Ok(())
        } else {
            self.serialize_unit()
        }
    }
    fn serialize_char(self, v: char) -> Result {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    #[inline(always)]
    fn serialize_str(self, v: &str) -> Result {
        write_str_dyn(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result {
        self.out.push(b'[');
        if let Some((first, rest)) = v.split_first() {
            write_int(self.out, *first);
            for b in rest {
                self.out.push(b',');
                write_int(self.out, *b);
            }
        }
        self.out.push(b']');
        Ok(())
    }
    fn serialize_none(self) -> Result {
        self.serialize_unit()
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result {
        v.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> Result {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result {
        self.serialize_unit()
    }
    /// Inlined so that the variant name, a constant, folds to a few stores.
    #[inline(always)]
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        write_str(self.out, variant);
        Ok(())
    }
    /// [`Base64`]'s text is copied without the escape scan; any other newtype is its content.
    #[inline(always)]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, v: &T) -> Result {
        if name == VERBATIM {
            return v.serialize(VerbatimSerializer { out: self.out });
        }
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result {
        open_variant(self.out, variant);
        v.serialize(Serializer::new(self.out))?;
        self.out.push(b'}');
        Ok(())
    }
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a>> {
        Ok(open(self.out, b'[', b']', len))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound<'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>> {
        open_variant(self.out, variant);
        self.serialize_seq(Some(len))
    }
    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a>> {
        Ok(open(self.out, b'{', b'}', len))
    }
    #[inline]
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Compound<'a>> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>> {
        open_variant(self.out, variant);
        self.serialize_map(Some(len))
    }
    fn collect_str<T: Display + ?Sized>(self, v: &T) -> Result {
        write_display(self.out, v)
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
        self.comma();
        v.serialize(self.ser())
    }
    #[inline]
    fn end(mut self) -> Result {
        self.close(b']');
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(mut self) -> Result {
        self.close(b']');
        self.out.push(b'}');
        Ok(())
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result {
        self.comma();
        k.serialize(KeySerializer { out: self.out })
    }
    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result {
        self.out.push(b':');
        v.serialize(self.ser())
    }
    /// As `SerializeStruct::serialize_field`: flattened fields arrive here with constant keys.
    #[inline(always)]
    fn serialize_entry<K, V>(&mut self, k: &K, v: &V) -> Result
    where
        K: Serialize + ?Sized,
        V: Serialize + ?Sized,
    {
        self.comma();
        k.serialize(KeySerializer { out: self.out })?;
        self.out.push(b':');
        v.serialize(self.ser())
    }
    #[inline]
    fn end(mut self) -> Result {
        self.close(b'}');
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    /// Inlined all the way down so that LLVM sees the constant key and folds its escape check
    /// away: a field name costs a few stores.
    #[inline(always)]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result {
        let comma = self.state != State::First;
        self.state = State::Rest;
        write_key(self.out, comma, key);
        v.serialize(self.ser())
    }
    #[inline]
    fn end(mut self) -> Result {
        self.close(b'}');
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result {
        ser::SerializeStruct::serialize_field(self, key, v)
    }
    fn end(mut self) -> Result {
        self.close(b'}');
        self.out.push(b'}');
        Ok(())
    }
}

/// Map keys, by serde_json's rules: strings, chars and unit variants as they are; integers,
/// bools and finite floats quoted; anything else an error.
struct KeySerializer<'a> {
    out: &'a mut Vec<u8>,
}

impl KeySerializer<'_> {
    fn quoted(self, f: impl FnOnce(&mut Vec<u8>)) -> Result {
        self.out.push(b'"');
        f(self.out);
        self.out.push(b'"');
        Ok(())
    }
}

macro_rules! int_keys {
    ($($f:ident $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result {
            self.quoted(|out| write_int(out, v))
        }
    )*};
}

macro_rules! not_keys {
    ($($f:ident($($a:ty),*) -> $r:ty;)*) => {$(
        fn $f(self, $(_: $a),*) -> Result<$r> {
            Err(Error::KeyMustBeAString)
        }
    )*};
}

impl ser::Serializer for KeySerializer<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    #[inline(always)]
    fn serialize_str(self, v: &str) -> Result {
        write_str_dyn(self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        write_str(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result {
        v.serialize(self)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result {
        v.serialize(self)
    }
    fn serialize_bool(self, v: bool) -> Result {
        self.quoted(|out| out.extend_from_slice(if v { b"true" as &[u8] } else { b"false" }))
    }
    int_keys!(serialize_i8 i8, serialize_i16 i16, serialize_i32 i32, serialize_i64 i64,
        serialize_i128 i128, serialize_u8 u8, serialize_u16 u16, serialize_u32 u32,
        serialize_u64 u64, serialize_u128 u128);
    fn serialize_f32(self, v: f32) -> Result {
        if !v.is_finite() {
            return Err(Error::FloatKeyMustBeFinite);
        }
        self.quoted(|out| write_float(out, v))
    }
    fn serialize_f64(self, v: f64) -> Result {
        if !v.is_finite() {
            return Err(Error::FloatKeyMustBeFinite);
        }
        self.quoted(|out| write_float(out, v))
    }
    fn collect_str<T: Display + ?Sized>(self, v: &T) -> Result {
        write_display(self.out, v)
    }
    not_keys! {
        serialize_bytes(&[u8]) -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_none() -> ();
        serialize_seq(Option<usize>) -> Impossible<(), Error>;
        serialize_tuple(usize) -> Impossible<(), Error>;
        serialize_tuple_struct(&'static str, usize) -> Impossible<(), Error>;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Impossible<(), Error>;
        serialize_map(Option<usize>) -> Impossible<(), Error>;
        serialize_struct(&'static str, usize) -> Impossible<(), Error>;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Impossible<(), Error>;
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result {
        Err(Error::KeyMustBeAString)
    }
}

// ---- base64 --------------------------------------------------------------------------------

/// The newtype-struct name by which [`Base64`] and [`Verbatim`] mark text that needs no
/// escape. Private: only they write it, so what this backend copies unchecked is always
/// base64 digits or text the crate made itself.
const VERBATIM: &str = "$msntap::json::Verbatim";

/// Bytes written as a standard base64 string (RFC 4648 alphabet, `=` padding), what
/// `base64::engine::general_purpose::STANDARD` writes. Any serializer gets a newtype struct
/// around a `collect_str`, so serde_json writes the same string through its escaper; this
/// backend encodes it straight into its buffer in stack-sized chunks, never through a
/// `String` and without scanning digits that cannot need an escape.
pub struct Base64<'a>(pub &'a [u8]);

impl Serialize for Base64<'_> {
    #[inline]
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_struct(VERBATIM, &Base64Text(self.0))
    }
}

/// Text that needs no JSON escape by the construction of whoever makes it (timestamps:
/// digits and date punctuation), written as a string like any other by every serializer and
/// copied without the escape scan by this one.
pub(crate) struct Verbatim<'a>(pub(crate) &'a str);

impl Serialize for Verbatim<'_> {
    #[inline(always)]
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        debug_assert!(
            !self.0.bytes().any(needs_escape),
            "verbatim text needs an escape"
        );
        s.serialize_newtype_struct(VERBATIM, self.0)
    }
}

struct Base64Text<'a>(&'a [u8]);

impl Serialize for Base64Text<'_> {
    /// Every serializer gets the text through `collect_str`, except this backend's
    /// [`VerbatimSerializer`], the only one that says it is not human-readable: it takes the
    /// bytes and encodes them straight into its buffer (no formatter, no UTF-8 check of the
    /// digits, no copy through the stack).
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_bytes(self.0)
        }
    }
}

/// Input bytes per chunk of [`Base64Text`]'s `Display`: a multiple of 3, so only the last
/// chunk pads.
const B64_CHUNK_IN: usize = 768;
const B64_CHUNK_OUT: usize = B64_CHUNK_IN / 3 * 4;

impl Display for Base64Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; B64_CHUNK_OUT];
        for chunk in self.0.chunks(B64_CHUNK_IN) {
            let digits = BASE64.encode(chunk, base64_simd::Out::from_slice(&mut buf));
            // Always ASCII; the check runs a word at a time and is the price of no `unsafe`.
            f.write_str(std::str::from_utf8(digits).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

/// The encoder: base64-simd's standard alphabet with `=` padding (what
/// `base64::engine::general_purpose::STANDARD` writes), with SIMD chosen at run time. About a
/// quarter of the instructions of the word-at-a-time table encoder this crate had (measured in
/// docs/performance.md); binary P2P bodies are a third of the JSON of a switchboard capture.
const BASE64: base64_simd::Base64 = base64_simd::STANDARD;

/// Writes [`Base64`]'s and [`Verbatim`]'s text: `collect_str` and `serialize_str` without the
/// escape scan. Nothing else reaches it (the token is private), so every other method refuses.
struct VerbatimSerializer<'a> {
    out: &'a mut Vec<u8>,
}

struct Raw<'a>(&'a mut Vec<u8>);

impl fmt::Write for Raw<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        debug_assert!(
            !s.bytes().any(needs_escape),
            "verbatim text needs an escape"
        );
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

macro_rules! not_verbatim {
    ($($f:ident($($a:ty),*) -> $r:ty;)*) => {$(
        fn $f(self, $(_: $a),*) -> Result<$r> {
            Err(Error::Custom("verbatim text must come from collect_str".into()))
        }
    )*};
}

impl ser::Serializer for VerbatimSerializer<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    /// Not human-readable only so that [`Base64Text`] hands over its bytes (see there);
    /// nothing else reaches this serializer.
    fn is_human_readable(&self) -> bool {
        false
    }
    /// [`Base64Text`]'s bytes: encoded into the buffer, `"` and padding included.
    fn serialize_bytes(self, v: &[u8]) -> Result {
        let out = self.out;
        out.reserve(BASE64.encoded_length(v.len()) + 2);
        out.push(b'"');
        BASE64.encode_append(v, out);
        out.push(b'"');
        Ok(())
    }

    fn collect_str<T: Display + ?Sized>(self, v: &T) -> Result {
        self.out.push(b'"');
        fmt::write(&mut Raw(self.out), format_args!("{v}")).map_err(|_| Error::Display)?;
        self.out.push(b'"');
        Ok(())
    }
    #[inline(always)]
    fn serialize_str(self, v: &str) -> Result {
        let v = v.as_bytes();
        if v.len() > SHORT || !write_short_as::<false>(self.out, v) {
            self.out.push(b'"');
            self.out.extend_from_slice(v);
            self.out.push(b'"');
        }
        Ok(())
    }
    not_verbatim! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Impossible<(), Error>;
        serialize_tuple(usize) -> Impossible<(), Error>;
        serialize_tuple_struct(&'static str, usize) -> Impossible<(), Error>;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Impossible<(), Error>;
        serialize_map(Option<usize>) -> Impossible<(), Error>;
        serialize_struct(&'static str, usize) -> Impossible<(), Error>;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Impossible<(), Error>;
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result {
        Err(Error::Custom(
            "verbatim text must come from collect_str".into(),
        ))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, _: &T) -> Result {
        Err(Error::Custom(
            "verbatim text must come from collect_str".into(),
        ))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result {
        Err(Error::Custom(
            "verbatim text must come from collect_str".into(),
        ))
    }
}

// ---- strings -------------------------------------------------------------------------------

/// `,"key":` (or `"key":` for the first field) of a struct field. A constant key, the usual
/// case once inlined, folds to one 16-byte store of a constant and a truncate.
#[inline(always)]
fn write_key(out: &mut Vec<u8>, comma: bool, key: &str) {
    let k = key.as_bytes();
    if k.len() <= 12 && short_is_clean(k) {
        let mut buf = [0u8; 17];
        buf[0] = b',';
        buf[1] = b'"';
        if let Some(dst) = buf.get_mut(2..2 + k.len()) {
            dst.copy_from_slice(k);
        }
        buf[2 + k.len()] = b'"';
        buf[3 + k.len()] = b':';
        // Two arms with constant offsets, so that each folds to a constant store. (One
        // load at offset `!comma` read back the bytes just stored on the stack at a
        // computed address: a store-forwarding stall on every key, seen with perf.)
        let len = out.len();
        if comma {
            out.extend_from_slice(&array::<16>(&buf, 0));
            out.truncate(len + k.len() + 4);
        } else {
            out.extend_from_slice(&array::<16>(&buf, 1));
            out.truncate(len + k.len() + 3);
        }
        return;
    }
    if comma {
        out.push(b',');
    }
    write_str(out, key);
    out.push(b':');
}

/// Whether `k` (at most 16 bytes) needs no escape, in words so that a constant folds.
#[inline(always)]
fn short_is_clean(k: &[u8]) -> bool {
    let n = k.len();
    if n >= 8 {
        return swar(u64::from_le_bytes(array(k, 0))) | swar(u64::from_le_bytes(array(k, n - 8)))
            == 0;
    }
    if n >= 4 {
        let both = u64::from(u32::from_le_bytes(array(k, 0)))
            | u64::from(u32::from_le_bytes(array(k, n - 4))) << 32;
        return swar(both) == 0;
    }
    let bad = |i: usize| k.get(i).is_some_and(|&b| needs_escape(b));
    !(bad(0) | bad(1) | bad(2))
}

/// A JSON string. The short and clean case (nearly every string of an event) is inlined at
/// every call site, where a constant string (a variant name) folds to a few stores; the
/// rest is one call.
#[inline(always)]
fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.len() <= SHORT && write_short(out, s.as_bytes()) {
        return;
    }
    write_str_slow(out, s);
}

/// [`write_str`] for strings known only at run time: one call to a leaf that saves no
/// registers, so that `str::serialize` and its wrappers inline into their callers instead of
/// each carrying every size class.
#[inline(always)]
fn write_str_dyn(out: &mut Vec<u8>, s: &str) {
    if !write_short_leaf(out, s.as_bytes()) {
        write_str_slow(out, s);
    }
}

/// Dispatches on the size class and jumps to that class's own leaf, which uses only the
/// registers it needs (one function for all classes saved five on every call); out of line so
/// that `str::serialize` and its wrappers stay small enough to inline into their callers.
#[inline(never)]
fn write_short_leaf(out: &mut Vec<u8>, s: &[u8]) -> bool {
    match s.len() {
        16..=SHORT => leaf::<16>(out, s),
        8..=15 => leaf::<8>(out, s),
        4..=7 => leaf::<4>(out, s),
        1..=3 => leaf::<1>(out, s),
        0 => {
            out.extend_from_slice(b"\"\"");
            true
        }
        _ => false,
    }
}

#[inline(never)]
fn leaf<const MIN: usize>(out: &mut Vec<u8>, s: &[u8]) -> bool {
    short_class::<true, MIN>(out, s)
}

/// Longest string [`write_short`] takes: its quoted text fits one 32-byte window.
const SHORT: usize = 30;

/// Appends 32 zero bytes and returns them, to be overwritten and then cut to length: one
/// capacity check and two stores for a whole short string, instead of one check per piece.
/// None when the buffer would have to grow: the caller takes its slow path, which grows it,
/// so that the short paths never call out and need no saved registers.
#[inline(always)]
fn window(out: &mut Vec<u8>) -> Option<&mut [u8; 32]> {
    let len = out.len();
    if out.capacity() - len < 32 {
        return None;
    }
    out.extend_from_slice(&[0; 32]);
    out.get_mut(len..)
        .and_then(|w| <&mut [u8; 32]>::try_from(w).ok())
}

/// Writes `"s"` when `s` (at most [`SHORT`] bytes) needs no escape, checked in words
/// overlapping at the ends; false, with nothing written, when it needs one.
#[inline(always)]
fn write_short(out: &mut Vec<u8>, s: &[u8]) -> bool {
    write_short_as::<true>(out, s)
}

/// [`write_short`], with the escape check only when `CHECK` (verbatim text skips it).
#[inline(always)]
fn write_short_as<const CHECK: bool>(out: &mut Vec<u8>, s: &[u8]) -> bool {
    match s.len() {
        16..=SHORT => short_class::<CHECK, 16>(out, s),
        8..=15 => short_class::<CHECK, 8>(out, s),
        4..=7 => short_class::<CHECK, 4>(out, s),
        1..=3 => short_class::<CHECK, 1>(out, s),
        0 => {
            out.extend_from_slice(b"\"\"");
            true
        }
        _ => false,
    }
}

/// One size class of [`write_short_as`]: strings of `MIN` bytes up to the next class (16 to
/// [`SHORT`], 8-15, 4-7, 1-3), read as two words overlapping in the middle.
#[inline(always)]
fn short_class<const CHECK: bool, const MIN: usize>(out: &mut Vec<u8>, s: &[u8]) -> bool {
    let n = s.len();
    let len = out.len();
    if MIN == 16 {
        let (h, t) = (array::<16>(s, 0), array::<16>(s, n - 16));
        if CHECK && any_escape(&h) | any_escape(&t) {
            return false;
        }
        let Some(w) = window(out) else { return false };
        w[0] = b'"';
        put(w, 1, &h);
        put(w, n - 15, &t);
        put(w, n + 1, b"\"");
    } else if MIN == 8 {
        let (h, t) = (array::<8>(s, 0), array::<8>(s, n - 8));
        if CHECK && swar(u64::from_le_bytes(h)) | swar(u64::from_le_bytes(t)) != 0 {
            return false;
        }
        let Some(w) = window(out) else { return false };
        w[0] = b'"';
        put(w, 1, &h);
        put(w, n - 7, &t);
        put(w, n + 1, b"\"");
    } else if MIN == 4 {
        let (h, t) = (array::<4>(s, 0), array::<4>(s, n - 4));
        let both = u64::from(u32::from_le_bytes(h)) | u64::from(u32::from_le_bytes(t)) << 32;
        if CHECK && swar(both) != 0 {
            return false;
        }
        let Some(w) = window(out) else { return false };
        w[0] = b'"';
        put(w, 1, &h);
        put(w, n - 3, &t);
        put(w, n + 1, b"\"");
    } else {
        // First, middle and last byte: all of a string of one to three.
        let (Some(&a), Some(&b), Some(&c)) = (s.first(), s.get(n / 2), s.last()) else {
            return false;
        };
        if CHECK && ESCAPE[usize::from(a)] | ESCAPE[usize::from(b)] | ESCAPE[usize::from(c)] {
            return false;
        }
        let Some(w) = window(out) else { return false };
        w[0] = b'"';
        w[1] = a;
        put(w, 1 + n / 2, &[b]);
        put(w, n, &[c, b'"']);
    }
    out.truncate(len + n + 2);
    true
}

/// Copies `v` into the window at `at` (callers keep it inside).
#[inline(always)]
fn put<const N: usize>(w: &mut [u8; 32], at: usize, v: &[u8; N]) {
    if let Some(d) = w.get_mut(at..at + N) {
        d.copy_from_slice(v);
    }
}

/// Strings too long for [`write_short`], or with something to escape. Those longer than
/// [`LONG`] (message bodies, XML text) go to json-escape-simd, whose kernels (AVX2 where the
/// CPU has it, chosen at run time) scan and copy 32 bytes per step against this file's 16:
/// about a fifth of the instructions for a 1,000-byte body. It escapes as serde_json does
/// (the same seven short forms, `\u00xx` in lower case, nothing else), quotes included.
#[inline(never)]
fn write_str_slow(out: &mut Vec<u8>, s: &str) {
    if s.len() > LONG {
        json_escape_simd::escape_into(s, out);
        return;
    }
    let s = s.as_bytes();
    out.push(b'"');
    let clean = copy_clean(out, s);
    if clean < s.len() {
        write_str_contents(out, s.get(clean..).unwrap_or_default());
    }
    out.push(b'"');
}

/// Bytes JSON escapes, for strings too short for a word.
static ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i < 0x20 || i == b'"' as usize || i == b'\\' as usize;
        i += 1;
    }
    t
};

/// Only `"`, `\\` and bytes below 0x20 are escaped (serde_json leaves `/`, DEL and non-ASCII
/// alone), so splitting at them keeps UTF-8 whole.
#[inline]
fn write_str_contents(out: &mut Vec<u8>, mut s: &[u8]) {
    loop {
        let clean = copy_clean(out, s);
        let Some((&b, rest)) = s.get(clean..).and_then(<[u8]>::split_first) else {
            return;
        };
        write_escape(out, b);
        s = rest;
    }
}

#[cold]
fn write_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        0x08 => b'b',
        0x0c => b'f',
        _ => {
            let hex = [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex[0], hex[1]]);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

#[inline(always)]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

const LO: u64 = u64::from_le_bytes([1; 8]);
const HI: u64 = u64::from_le_bytes([0x80; 8]);

/// High bit set in each byte of `x` that needs escaping. Exact for the lowest flagged byte
/// (a borrow only runs upward from a byte that is itself flagged), which is all that is used.
/// The three tests are the classic "has less than" and "has zero" forms; they share one `!x`
/// because XOR with `"` or `\\` (both below 0x80) leaves every byte's high bit as it was.
#[inline(always)]
fn swar(x: u64) -> u64 {
    let q = x ^ (LO * u64::from(b'"'));
    let bs = x ^ (LO * u64::from(b'\\'));
    (x.wrapping_sub(LO * 0x20) | q.wrapping_sub(LO) | bs.wrapping_sub(LO)) & !x & HI
}

#[inline(always)]
fn first(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// `N` bytes of `s` from `at`; callers keep `at + N <= s.len()` (zeros otherwise, never read).
#[inline(always)]
fn array<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
    let mut w = [0; N];
    if let Some(b) = s.get(at..at + N) {
        w.copy_from_slice(b);
    }
    w
}

/// Whether a block has a byte to escape: three separate folds, each one SSE2 compare per 16
/// bytes. (A single `||` fold came out about twice as long, and per-lane SWAR flags with one
/// reduction lost LLVM's vectorisation where inlined; both measured with callgrind.)
#[inline(always)]
fn any_escape<const N: usize>(block: &[u8; N]) -> bool {
    let (mut ctl, mut quote, mut bs) = (false, false, false);
    for &b in block {
        ctl |= b < 0x20;
        quote |= b == b'"';
        bs |= b == b'\\';
    }
    ctl | quote | bs
}

/// [`any_escape`] of 64 bytes: per lane of 16, the minimum of the bytes, of the bytes xor
/// `"` and of the bytes xor `\\` over the four rows (one `pminub` each), then one test of
/// each minimum: below 0x20, or zero. (Or-ing flags per byte vectorised into shuffles.)
#[inline(always)]
fn any_escape_64(block: &[u8; 64]) -> bool {
    let (mut lo, mut q, mut bs) = ([0xffu8; 16], [0xffu8; 16], [0xffu8; 16]);
    for c in block.chunks_exact(16) {
        for j in 0..16 {
            let b = c[j];
            lo[j] = lo[j].min(b);
            q[j] = q[j].min(b ^ b'"');
            bs[j] = bs[j].min(b ^ b'\\');
        }
    }
    let (mut ctl, mut quote, mut back) = (false, false, false);
    for j in 0..16 {
        ctl |= lo[j] < 0x20;
        quote |= q[j] == 0;
        back |= bs[j] == 0;
    }
    ctl | quote | back
}

/// The first escape in a 16-byte block, if any: `any_escape`, then the position from two SWAR
/// words only when there is one.
#[inline(always)]
fn first_in_16(block: &[u8; 16]) -> Option<usize> {
    if !any_escape(block) {
        return None;
    }
    let lo = swar(u64::from_le_bytes(array(block, 0)));
    Some(if lo != 0 {
        first(lo)
    } else {
        8 + first(swar(u64::from_le_bytes(array(block, 8))))
    })
}

/// Strings longer than this are scanned first and copied once.
const LONG: usize = 128;

/// Length of the clean prefix of `s` (at least 16 bytes): 32-byte blocks while clean, then
/// 16-byte blocks to place the escape, then the last 16 bytes overlapping what is known clean.
fn clean_prefix_long(s: &[u8]) -> usize {
    let n = s.len();
    let mut at = 0;
    // Long clean runs (message bodies) 64 bytes at a time, one reduction per block.
    while at + 64 <= n {
        if any_escape_64(&array::<64>(s, at)) {
            break;
        }
        at += 64;
    }
    while at + 32 <= n {
        if any_escape(&array::<32>(s, at)) {
            break;
        }
        at += 32;
    }
    while at + 16 <= n {
        if let Some(p) = first_in_16(&array(s, at)) {
            return at + p;
        }
        at += 16;
    }
    if at < n {
        if let Some(p) = first_in_16(&array(s, n - 16)) {
            return n - 16 + p;
        }
    }
    n
}

/// Appends the longest prefix of `s` that needs no escape and returns its length.
/// Everything is moved in fixed-size words and blocks, never a variable-length copy on a
/// clean string: the ragged end is a word or block overlapping bytes already written, which
/// are truncated away first. This is what beats serde_json (a table lookup per byte, then a
/// `memcpy` call per run) on the short keys and values that make up most of an event.
#[inline(always)]
fn copy_clean(out: &mut Vec<u8>, s: &[u8]) -> usize {
    let n = s.len();
    if n > LONG {
        // Long runs are scanned first and copied in one `memcpy`, which moves more bytes per
        // instruction than block stores do. Whole long strings go to json-escape-simd
        // (`write_str_slow`); what reaches this is a long piece of `collect_str` text, whose
        // quotes that crate would add.
        let p = clean_prefix_long(s);
        out.extend_from_slice(s.get(..p).unwrap_or_default());
        return p;
    }
    if n >= 16 {
        let mut at = 0;
        while at + 16 <= n {
            let block = array::<16>(s, at);
            if let Some(p) = first_in_16(&block) {
                out.extend_from_slice(block.get(..p).unwrap_or_default());
                return at + p;
            }
            out.extend_from_slice(&block);
            at += 16;
        }
        if at == n {
            return n;
        }
        let block = array::<16>(s, n - 16);
        let overlap = at - (n - 16);
        if let Some(p) = first_in_16(&block) {
            out.extend_from_slice(block.get(overlap..p).unwrap_or_default());
            return n - 16 + p;
        }
        out.truncate(out.len() - overlap);
        out.extend_from_slice(&block);
        return n;
    }
    if n >= 8 {
        let (head, tail) = (array::<8>(s, 0), array::<8>(s, n - 8));
        let (mh, mt) = (
            swar(u64::from_le_bytes(head)),
            swar(u64::from_le_bytes(tail)),
        );
        if mh | mt == 0 {
            out.extend_from_slice(&head);
            out.truncate(out.len() + n - 16);
            out.extend_from_slice(&tail);
            return n;
        }
        // The tail's first flag cannot lie in the overlap: the head cleared it.
        let p = if mh != 0 {
            first(mh)
        } else {
            n - 8 + first(mt)
        };
        out.extend_from_slice(s.get(..p).unwrap_or_default());
        return p;
    }
    if n >= 4 {
        let (head, tail) = (array::<4>(s, 0), array::<4>(s, n - 4));
        let both = u64::from(u32::from_le_bytes(head)) | u64::from(u32::from_le_bytes(tail)) << 32;
        let m = swar(both);
        if m == 0 {
            out.extend_from_slice(&head);
            out.truncate(out.len() + n - 8);
            out.extend_from_slice(&tail);
            return n;
        }
        let i = first(m);
        let p = if i < 4 { i } else { n + i - 8 };
        out.extend_from_slice(s.get(..p).unwrap_or_default());
        return p;
    }
    for (i, &b) in s.iter().enumerate() {
        if needs_escape(b) {
            return i;
        }
        out.push(b);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    fn same<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        let theirs = serde_json::to_vec(v).expect("serde_json accepts it");
        let ours = to_vec(v).expect("ours accepts it");
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
        ours
    }

    #[test]
    fn copy_clean_agrees_with_a_byte_scan_at_every_length_and_position() {
        let check = |s: &[u8], expect: usize, what: &str| {
            let mut out = b"pre".to_vec();
            assert_eq!(copy_clean(&mut out, s), expect, "{what}");
            assert_eq!(&out[3..], &s[..expect], "{what}");
            assert_eq!(&out[..3], b"pre", "{what}");
        };
        // Every length up to 70, and around LONG, where the long scan takes over.
        for n in (0..70).chain([127, 128, 129, 130, 161, 200, 257]) {
            let clean: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            check(&clean, n, &format!("clean {n}"));
            for at in 0..n {
                for bad in [0u8, 0x1f, b'"', b'\\', b'\n'] {
                    let mut s = clean.clone();
                    s[at] = bad;
                    // A second escape later must not move the answer.
                    if at + 3 < n {
                        s[at + 3] = b'"';
                    }
                    check(&s, at, &format!("n {n} at {at} byte {bad:#x}"));
                }
                for ok in [0x20u8, b'/', 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']', 0x21] {
                    let mut s = clean.clone();
                    s[at] = ok;
                    check(&s, n, &format!("n {n} at {at} byte {ok:#x}"));
                }
            }
        }
    }

    #[test]
    fn strings_of_every_short_length_with_an_escape_anywhere_are_serde_jsons() {
        for n in 0..40 {
            let clean: String = (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            same(&clean);
            same(&[clean.as_str(), "x", clean.as_str()]);
            for at in 0..n {
                for bad in ['\0', '\u{1f}', '"', '\\', '\n', 'é', '\u{7f}', '😀'] {
                    let mut s = clean.clone();
                    s.replace_range(at..at + 1, bad.encode_utf8(&mut [0; 4]));
                    same(&s);
                }
            }
        }
    }

    /// Strings longer than `LONG` go to json-escape-simd: held to serde_json with every escape
    /// byte at every position of strings around its 32-byte steps, non-ASCII text beside the
    /// escapes, and strings made of nothing but escapes.
    #[test]
    fn long_strings_with_an_escape_anywhere_are_serde_jsons() {
        for n in [LONG + 1, LONG + 2, 159, 160, 161, 191, 192, 193, 300] {
            let clean: String = (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            same(&clean);
            for at in 0..n {
                for bad in [
                    '\0', '\u{8}', '\u{c}', '\u{1f}', '"', '\\', '\n', '\r', '\t',
                ] {
                    let mut s = clean.clone();
                    s.replace_range(at..at + 1, bad.encode_utf8(&mut [0; 4]));
                    same(&s);
                }
            }
            for at in (0..n - 4).step_by(7) {
                let mut s = clean.clone();
                s.replace_range(at..at + 4, "\u{1f600}");
                same(&s);
                s.insert_str(at / 2, "é\u{7f}\u{2028}/\"");
                same(&s);
            }
        }
        for piece in ["\"", "\\", "\r\n", "\u{1}", "é"] {
            same(&piece.repeat(300));
        }
        // A value holding long strings among short ones, as an event does.
        same(&("x".repeat(200), "y", "z\n".repeat(100)));
    }

    #[test]
    fn every_byte_value_escapes_as_serde_json() {
        for b in 0u8..0x80 {
            let s = format!("ab{}cd", b as char);
            same(&s);
            same(&(b as char));
        }
        same("é€😀\u{2028}/\u{7f}");
        same("");
        same("\"\\\"\\");
        same(&"\r\n".repeat(40));
    }

    #[test]
    fn numbers_at_their_limits() {
        same(&(i8::MIN, i16::MIN, i32::MIN, i64::MIN, i128::MIN));
        same(&(u8::MAX, u16::MAX, u32::MAX, u64::MAX, u128::MAX, 0u8, -0i64));
        for f in [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e21,
            1e-7,
            123456789.0,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            same(&f);
            same(&(f as f32));
        }
    }

    #[test]
    fn containers_units_and_variants() {
        #[derive(Serialize)]
        struct Unit;
        #[derive(Serialize)]
        struct New(u8);
        #[derive(Serialize)]
        struct Tup(u8, &'static str);
        #[derive(Serialize)]
        struct Empty {}
        #[derive(Serialize)]
        enum E {
            U,
            N(i8),
            T(u8, u8),
            T0(),
            S { a: () },
            S0 {},
        }
        same(&());
        same(&Unit);
        same(&New(3));
        same(&Tup(1, "x"));
        same(&Empty {});
        same(&[
            E::U,
            E::N(-1),
            E::T(1, 2),
            E::T0(),
            E::S { a: () },
            E::S0 {},
        ]);
        same(&(
            Some(1),
            None::<u8>,
            Some(Some(())),
            Vec::<u8>::new(),
            [[0u8; 0]; 2],
        ));
        same(&BTreeMap::<String, u8>::new());
    }

    #[test]
    fn field_names_of_every_length_and_escape_with_skipped_fields_first() {
        #[derive(Serialize)]
        struct Names {
            #[serde(skip_serializing_if = "Option::is_none")]
            skipped: Option<u8>,
            #[serde(rename = "")]
            empty: u8,
            #[serde(rename = "q\"uote")]
            quote: u8,
            #[serde(rename = "tab\t")]
            tab: u8,
            #[serde(rename = "exactly12chr")]
            twelve: u8,
            #[serde(rename = "thirteen_char")]
            thirteen: u8,
            #[serde(rename = "a_rather_long_field_name_past_16")]
            long: u8,
            #[serde(rename = "é€😀")]
            unicode: u8,
            #[serde(rename = "back\\slash_at_the_end_of_a_long_name\\")]
            backslash: u8,
        }
        let v = Names {
            skipped: None,
            empty: 1,
            quote: 2,
            tab: 3,
            twelve: 4,
            thirteen: 5,
            long: 6,
            unicode: 7,
            backslash: 8,
        };
        same(&v);
        same(&Names {
            skipped: Some(0),
            ..v
        });

        #[derive(Serialize)]
        struct AllSkipped {
            #[serde(skip_serializing_if = "Option::is_none")]
            a: Option<u8>,
        }
        assert_eq!(same(&AllSkipped { a: None }), b"{}");
    }

    #[test]
    fn base64_is_the_base64_crates_at_every_length_and_serde_json_agrees() {
        use base64::Engine as _;
        // Past two chunks, so that chunk edges and every tail length are crossed.
        let data: Vec<u8> = (0..2 * B64_CHUNK_IN as u32 + 40)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for n in (0..70)
            .chain(B64_CHUNK_IN - 8..B64_CHUNK_IN + 8)
            .chain([data.len()])
        {
            let b = &data[..n];
            let expect = format!(
                "\"{}\"",
                base64::engine::general_purpose::STANDARD.encode(b)
            );
            assert_eq!(String::from_utf8(same(&Base64(b))).unwrap(), expect, "{n}");
        }
        assert_eq!(
            same(&[Base64(&[0xff; 4]), Base64(b"")]),
            br#"["/////w==",""]"#
        );
        // Inside a map, through serde_json's escaper.
        same(&BTreeMap::from([("k", Base64(b"\x00\x01"))]));
    }

    #[test]
    fn bytes_are_an_array_of_numbers() {
        struct B(&'static [u8]);
        impl Serialize for B {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        assert_eq!(same(&B(&[0, 9, 10, 99, 100, 255])), b"[0,9,10,99,100,255]");
        assert_eq!(same(&B(&[])), b"[]");
    }

    #[test]
    fn map_keys_follow_serde_json() {
        #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
        enum K {
            A,
        }
        same(&BTreeMap::from([(-1i64, 1), (7, 2)]));
        same(&BTreeMap::from([(u128::MAX, 1)]));
        same(&BTreeMap::from([(true, 1), (false, 2)]));
        same(&BTreeMap::from([('"', 1)]));
        same(&BTreeMap::from([(K::A, 1)]));
        same(&BTreeMap::from([(Some("k\n"), 1)]));

        struct Keys<K>(Vec<K>);
        impl<K: Serialize> Serialize for Keys<K> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for k in &self.0 {
                    m.serialize_entry(k, &0)?;
                }
                m.end()
            }
        }
        same(&Keys(vec![1.5f64, -0.0, 1e300]));
        same(&Keys(vec![0.1f32]));
        let fails = |e: Error, expect: &str| {
            assert_eq!(e.to_string(), expect);
        };
        let theirs = |r: serde_json::Result<Vec<u8>>| r.expect_err("serde_json refuses it");
        for (ours, theirs) in [
            (
                to_vec(&Keys(vec![f64::NAN])),
                theirs(serde_json::to_vec(&Keys(vec![f64::NAN]))),
            ),
            (
                to_vec(&Keys(vec![f32::INFINITY])),
                theirs(serde_json::to_vec(&Keys(vec![f32::INFINITY]))),
            ),
            (
                to_vec(&Keys(vec![()])),
                theirs(serde_json::to_vec(&Keys(vec![()]))),
            ),
            (
                to_vec(&Keys(vec![None::<u8>])),
                theirs(serde_json::to_vec(&Keys(vec![None::<u8>]))),
            ),
            (
                to_vec(&Keys(vec![vec![1]])),
                theirs(serde_json::to_vec(&Keys(vec![vec![1]]))),
            ),
            (
                to_vec(&Keys(vec![(1, 2)])),
                theirs(serde_json::to_vec(&Keys(vec![(1, 2)]))),
            ),
        ] {
            fails(ours.expect_err("ours refuses it"), &theirs.to_string());
        }
    }

    #[test]
    fn collect_str_escapes_and_a_failing_display_is_an_error() {
        struct D(&'static str);
        impl Serialize for D {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&format_args!("{}/{}", self.0, 7))
            }
        }
        same(&D("a\"b\n"));
        same(&BTreeMap::from([("k", D("\t"))]));

        struct Bad;
        impl Display for Bad {
            fn fmt(&self, _: &mut fmt::Formatter) -> fmt::Result {
                Err(fmt::Error)
            }
        }
        struct UsesBad;
        impl Serialize for UsesBad {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&Bad)
            }
        }
        let mut out = b"kept\n".to_vec();
        assert!(matches!(
            to_vec_into(&mut out, &[UsesBad]),
            Err(Error::Display)
        ));
        assert_eq!(out, b"kept\n", "a failed value leaves nothing behind");
    }

    #[test]
    fn custom_errors_pass_through_and_json_lines_keeps_only_whole_values() {
        #[derive(Serialize)]
        struct Outer {
            a: u8,
            #[serde(flatten)]
            inner: u8,
        }
        let mut lines = JsonLines::new(Vec::new());
        lines.write(&[1, 2]).expect("plain value");
        let e = lines
            .write(&Outer { a: 1, inner: 2 })
            .expect_err("flatten of a u8");
        let theirs = serde_json::to_vec(&Outer { a: 1, inner: 2 }).expect_err("serde_json too");
        assert_eq!(e.to_string(), theirs.to_string());
        lines.write("x").expect("plain value");
        lines.flush().expect("flush to a Vec");
        assert_eq!(lines.out, b"[1,2]\n\"x\"\n");
    }
}
