//! One-pass parser for the common subset of XML payloads, building `Element` trees straight
//! from the text with exactly the result roxmltree gives. It must never accept a document
//! roxmltree rejects nor differ from it on one it accepts: outside its subset, and on every
//! malformation, it returns None and the caller asks roxmltree (whose errors are kept).

use std::borrow::Cow;

use super::{Element, MAX_DEPTH};
use crate::payload::KvMap;

/// Nodes (elements, text runs, CDATA sections, comments) before the fallback; well below
/// roxmltree's nodes_limit of 200_000, counting more than it does (it merges adjacent text),
/// so roxmltree's limit can only be reached by a document this parser has handed over.
const NODE_BUDGET: usize = 100_000;
/// Default namespace declarations before the fallback (roxmltree stops at 2^16 namespaces).
const NS_BUDGET: usize = 1_000;
/// Attributes of one element before the fallback: the duplicate check is quadratic.
const ATTR_BUDGET: usize = 256;

const NS_XML_URI: &str = "http://www.w3.org/XML/1998/namespace";
const NS_XMLNS_URI: &str = "http://www.w3.org/2000/xmlns/";

/// An open element whose depth is kept.
struct Frame<'a> {
    name: &'a str,
    attrs: KvMap<'a>,
    text: Option<Cow<'a, str>>,
    children: Vec<Element<'a>>,
    /// Child elements past MAX_DEPTH (only the frame at MAX_DEPTH counts them).
    omitted: usize,
}

impl<'a> Frame<'a> {
    fn finish(self) -> Element<'a> {
        Element {
            name: Cow::Borrowed(self.name),
            attrs: self.attrs,
            // Same filter as the roxmltree conversion: whitespace-only text is dropped.
            text: self.text.filter(|t| !t.trim().is_empty()),
            children: self.children,
            children_omitted: (self.omitted > 0).then_some(self.omitted),
        }
    }

    fn push_text(&mut self, piece: Cow<'a, str>) {
        match self.text.as_mut() {
            None => self.text = Some(piece),
            Some(t) => t.to_mut().push_str(&piece),
        }
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    nodes: usize,
    namespaces: usize,
}

/// The root element of `s` (already trimmed by the caller), or None when roxmltree has to
/// decide.
pub(super) fn parse(s: &str) -> Option<Element<'_>> {
    let mut p = Parser {
        s,
        b: s.as_bytes(),
        pos: 0,
        nodes: 0,
        namespaces: 0,
    };
    if p.rest().starts_with(b"\xEF\xBB\xBF") {
        p.pos = 3;
    }
    if p.rest().starts_with(b"<?xml ") {
        p.declaration()?;
    }
    p.misc()?;
    // A DOCTYPE or anything else not starting a name ends in the fallback inside root().
    if p.peek()? != b'<' {
        return None;
    }
    let root = p.root()?;
    p.misc()?;
    (p.pos == p.b.len()).then_some(root)
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a [u8] {
        self.b.get(self.pos..).unwrap_or(&[])
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }

    /// Skips XML whitespace; tells whether there was any.
    fn skip_spaces(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.pos += 1)
    }

    fn count_node(&mut self) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= NODE_BUDGET).then_some(())
    }

    fn slice(&self, start: usize, end: usize) -> Option<&'a str> {
        self.s.get(start..end)
    }

    /// An ASCII name without a prefix; a ':' or a non-ASCII character hands over.
    fn name(&mut self) -> Option<&'a str> {
        let start = self.pos;
        match self.peek()? {
            c if c.is_ascii_alphabetic() || c == b'_' => {}
            _ => return None,
        }
        let mut i = start + 1;
        while let Some(c) = self.at(i) {
            if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.') {
                i += 1;
            } else if c == b':' || c >= 0x80 {
                return None;
            } else {
                break;
            }
        }
        self.pos = i;
        self.slice(start, i)
    }

    /// A quoted value from the opening quote on: the raw text and its scan.
    fn quoted(&mut self) -> Option<(&'a str, Scan)> {
        let q = self.peek()?;
        if q != b'"' && q != b'\'' {
            return None;
        }
        let start = self.pos + 1;
        let end = start + memchr::memchr(q, self.b.get(start..)?)?;
        let raw = self.slice(start, end)?;
        let scan = scan(raw.as_bytes())?;
        if scan.lt {
            return None;
        }
        self.pos = end + 1;
        Some((raw, scan))
    }

    /// `<?xml version=".." encoding=".." standalone=".." ?>`, validated as roxmltree does
    /// (values are not checked), nothing kept.
    fn declaration(&mut self) -> Option<()> {
        self.pos += 5;
        self.skip_spaces();
        self.decl_attr("version")?;
        self.decl_spaces()?;
        if self.rest().starts_with(b"encoding") {
            self.decl_attr("encoding")?;
            self.decl_spaces()?;
        }
        if self.rest().starts_with(b"standalone") {
            self.decl_attr("standalone")?;
        }
        self.skip_spaces();
        if !self.rest().starts_with(b"?>") {
            return None;
        }
        self.pos += 2;
        Some(())
    }

    fn decl_attr(&mut self, want: &str) -> Option<()> {
        if self.name()? != want {
            return None;
        }
        self.skip_spaces();
        self.expect(b'=')?;
        self.skip_spaces();
        self.quoted().map(|_| ())
    }

    fn decl_spaces(&mut self) -> Option<()> {
        if self.skip_spaces() || self.rest().starts_with(b"?>") || self.pos >= self.b.len() {
            Some(())
        } else {
            None
        }
    }

    /// Whitespace and comments around the root; a processing instruction hands over.
    fn misc(&mut self) -> Option<()> {
        loop {
            self.skip_spaces();
            let r = self.rest();
            if r.starts_with(b"<!--") {
                self.comment()?;
            } else if r.starts_with(b"<?") {
                return None;
            } else {
                return Some(());
            }
        }
    }

    /// `<!-- .. -->`, at its `<`.
    fn comment(&mut self) -> Option<()> {
        let start = self.pos + 4;
        let len = memchr::memmem::find(self.b.get(start..)?, b"-->")?;
        let body = self.b.get(start..start + len)?;
        if memchr::memmem::find(body, b"--").is_some() || body.last() == Some(&b'-') {
            return None;
        }
        scan(body)?;
        self.pos = start + len + 3;
        self.count_node()
    }

    /// `<![CDATA[ .. ]]>`, at its `<`: the text, `\r` line ends translated as roxmltree does.
    fn cdata(&mut self) -> Option<Cow<'a, str>> {
        let start = self.pos + 9;
        let len = memchr::memmem::find(self.b.get(start..)?, b"]]>")?;
        let raw = self.slice(start, start + len)?;
        let sc = scan(raw.as_bytes())?;
        self.pos = start + len + 3;
        self.count_node()?;
        if !sc.cr {
            return Some(Cow::Borrowed(raw));
        }
        let b = raw.as_bytes();
        let mut buf = Vec::with_capacity(b.len());
        for (i, &c) in b.iter().enumerate() {
            push_from_text(&mut buf, c, i + 1 == b.len());
        }
        String::from_utf8(buf).ok().map(Cow::Owned)
    }

    /// A text run from `self.pos` to `end` (the next `<`).
    fn text(&mut self, end: usize) -> Option<Cow<'a, str>> {
        let raw = self.slice(self.pos, end)?;
        let sc = scan(raw.as_bytes())?;
        if sc.cdata_end {
            return None;
        }
        self.pos = end;
        self.count_node()?;
        if sc.amp || sc.cr {
            decode_text(raw.as_bytes()).map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(raw))
        }
    }

    /// A start tag at its `<`: the name, the attributes, and whether it is empty (`/>`).
    fn start_tag(&mut self) -> Option<(&'a str, KvMap<'a>, bool)> {
        self.pos += 1;
        let name = self.name()?;
        self.count_node()?;
        let mut attrs = KvMap::default();
        let mut default_ns = false;
        loop {
            let spaced = self.skip_spaces();
            match self.peek()? {
                b'/' => {
                    self.pos += 1;
                    self.expect(b'>')?;
                    return Some((name, attrs, true));
                }
                b'>' => {
                    self.pos += 1;
                    return Some((name, attrs, false));
                }
                _ => {
                    if !spaced {
                        return None;
                    }
                    let an = self.name()?;
                    self.skip_spaces();
                    self.expect(b'=')?;
                    self.skip_spaces();
                    let (raw, sc) = self.quoted()?;
                    let value = if sc.amp || sc.cr || sc.ws {
                        Cow::Owned(decode_attr(raw.as_bytes())?)
                    } else {
                        Cow::Borrowed(raw)
                    };
                    if an == "xmlns" {
                        // roxmltree keeps a default namespace out of attributes(); the checks
                        // it makes on one are refused here rather than repeated.
                        self.namespaces += 1;
                        if default_ns
                            || self.namespaces > NS_BUDGET
                            || value == NS_XML_URI
                            || value == NS_XMLNS_URI
                        {
                            return None;
                        }
                        default_ns = true;
                    } else {
                        if attrs.0.len() >= ATTR_BUDGET || attrs.0.iter().any(|(k, _)| k == an) {
                            return None;
                        }
                        attrs.0.push((Cow::Borrowed(an), value));
                    }
                }
            }
        }
    }

    /// `</name >` at its `<`: the name.
    fn end_tag(&mut self) -> Option<&'a str> {
        self.pos += 2;
        let name = self.name()?;
        self.skip_spaces();
        self.expect(b'>')?;
        Some(name)
    }

    /// The root element and its content, at the root's `<`. Elements past MAX_DEPTH are
    /// checked as thoroughly as the others (an error there fails the document) but kept only
    /// as a name for the matching end tag.
    fn root(&mut self) -> Option<Element<'a>> {
        let (name, attrs, empty) = self.start_tag()?;
        if empty {
            return Some(leaf(name, attrs));
        }
        // MSNP documents nest a few levels: one allocation for the open elements.
        let mut stack = Vec::with_capacity(8);
        stack.push(frame(name, attrs));
        let mut deep: Vec<&'a str> = Vec::new();
        loop {
            let lt = self.pos + memchr::memchr(b'<', self.rest())?;
            if lt > self.pos {
                let piece = self.text(lt)?;
                if deep.is_empty() {
                    stack.last_mut()?.push_text(piece);
                }
            }
            match self.at(lt + 1)? {
                b'!' => {
                    let r = self.rest();
                    if r.starts_with(b"<!--") {
                        self.comment()?;
                    } else if r.starts_with(b"<![CDATA[") {
                        let piece = self.cdata()?;
                        if deep.is_empty() {
                            stack.last_mut()?.push_text(piece);
                        }
                    } else {
                        return None;
                    }
                }
                b'/' => {
                    let name = self.end_tag()?;
                    if let Some(open) = deep.pop() {
                        if open != name {
                            return None;
                        }
                        continue;
                    }
                    let f = stack.pop()?;
                    if f.name != name {
                        return None;
                    }
                    let e = f.finish();
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(e),
                        None => return Some(e),
                    }
                }
                // A processing instruction (`<?`) fails in name() like any non-name.
                _ => {
                    let depth = stack.len() + deep.len();
                    let (name, attrs, empty) = self.start_tag()?;
                    if depth <= MAX_DEPTH {
                        if empty {
                            stack.last_mut()?.children.push(leaf(name, attrs));
                        } else {
                            stack.push(frame(name, attrs));
                        }
                    } else {
                        if depth == MAX_DEPTH + 1 {
                            stack.last_mut()?.omitted += 1;
                        }
                        if !empty {
                            deep.push(name);
                        }
                    }
                }
            }
        }
    }
}

fn frame<'a>(name: &'a str, attrs: KvMap<'a>) -> Frame<'a> {
    Frame {
        name,
        attrs,
        text: None,
        children: Vec::new(),
        omitted: 0,
    }
}

fn leaf<'a>(name: &'a str, attrs: KvMap<'a>) -> Element<'a> {
    Element {
        name: Cow::Borrowed(name),
        attrs,
        text: None,
        children: Vec::new(),
        children_omitted: None,
    }
}

/// What a run of character data holds.
#[derive(Default)]
struct Scan {
    amp: bool,
    cr: bool,
    /// `\t` or `\n` (attribute values turn them into spaces).
    ws: bool,
    lt: bool,
    /// `]]>`, not allowed in text.
    cdata_end: bool,
}

/// Scans character data; None when it holds a character XML does not allow (roxmltree
/// fails on those in text, values, comments and CDATA alike).
fn scan(b: &[u8]) -> Option<Scan> {
    let mut sc = Scan::default();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\r' => sc.cr = true,
            b'\t' | b'\n' => sc.ws = true,
            0..=0x1f => return None,
            b'&' => sc.amp = true,
            b'<' => sc.lt = true,
            b'>' => sc.cdata_end |= i >= 2 && b[i - 2] == b']' && b[i - 1] == b']',
            // U+FFFE and U+FFFF are EF BF BE and EF BF BF in UTF-8.
            0xEF if b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)) => {
                return None
            }
            _ => {}
        }
    }
    Some(sc)
}

fn is_xml_char(c: char) -> bool {
    match c as u32 {
        0..=0x1f => matches!(c, '\t' | '\n' | '\r'),
        n => n != 0xFFFE && n != 0xFFFF,
    }
}

/// A reference at `b[0] == b'&'`: the character and the length of the reference. Character
/// references follow roxmltree (a lowercase `x` only, code points that are not characters
/// become U+FFFD); of entities only the five predefined ones exist without a DTD.
fn reference(b: &[u8]) -> Option<(char, usize)> {
    if b.get(1) == Some(&b'#') {
        let (radix, from) = if b.get(2) == Some(&b'x') {
            (16, 3)
        } else {
            (10, 2)
        };
        let rest = b.get(from..)?;
        let n = rest
            .iter()
            .take_while(|c| {
                if radix == 16 {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
            .count();
        let digits = std::str::from_utf8(rest.get(..n)?).ok()?;
        let v = u32::from_str_radix(digits, radix).ok()?;
        let c = char::from_u32(v).unwrap_or('\u{FFFD}');
        if !is_xml_char(c) || rest.get(n) != Some(&b';') {
            return None;
        }
        return Some((c, from + n + 1));
    }
    let rest = b.get(1..)?;
    for (name, c) in [
        (&b"lt;"[..], '<'),
        (b"gt;", '>'),
        (b"amp;", '&'),
        (b"apos;", '\''),
        (b"quot;", '"'),
    ] {
        if rest.starts_with(name) {
            return Some((c, 1 + name.len()));
        }
    }
    None
}

/// roxmltree's line-end translation for text: `\r\n` and a lone `\r` become `\n`.
fn push_from_text(buf: &mut Vec<u8>, c: u8, at_end: bool) {
    if let Some(last) = buf.last_mut().filter(|l| **l == b'\r') {
        *last = b'\n';
        if at_end && c == b'\r' {
            buf.push(b'\n');
        } else if c != b'\n' {
            buf.push(c);
        }
    } else if at_end && c == b'\r' {
        buf.push(b'\n');
    } else {
        buf.push(c);
    }
}

/// Text with references or `\r`, decoded byte for byte as roxmltree's text buffer does:
/// a referenced character is taken as is, and so is the byte right after it.
fn decode_text(b: &[u8]) -> Option<String> {
    let mut buf = Vec::with_capacity(b.len());
    let mut as_is = false;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'&' {
            let (ch, len) = reference(b.get(i..)?)?;
            buf.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
            as_is = true;
            i += len;
        } else {
            i += 1;
            if as_is {
                buf.push(c);
                as_is = false;
            } else {
                push_from_text(&mut buf, c, i == b.len());
            }
        }
    }
    String::from_utf8(buf).ok()
}

/// An attribute value normalized as roxmltree does: `\r\n` and each of `\t \n \r` become a
/// space, referenced characters are taken as is.
fn decode_attr(b: &[u8]) -> Option<String> {
    let mut buf = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'&' {
            let (ch, len) = reference(b.get(i..)?)?;
            buf.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
            i += len;
        } else {
            i += 1;
            if c == b'\r' && b.get(i) == Some(&b'\n') {
                continue;
            }
            buf.push(if matches!(c, b'\t' | b'\n' | b'\r') {
                b' '
            } else {
                c
            });
        }
    }
    String::from_utf8(buf).ok()
}
