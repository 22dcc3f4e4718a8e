//! XML payloads (NOT, IPG, UBX/UUX, ADL/RML/FQY, GCF, errors) parsed into elements whose
//! names, attributes and text borrow from the payload. Bounded in depth and node count.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::KvMap;
use crate::secret::Redact;

#[cfg(test)]
mod differential;
mod direct;

/// Deepest element nesting that is kept; deeper content is counted, not decoded.
const MAX_DEPTH: usize = 64;

/// One element: `{name, attrs, text, children}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Element<'a> {
    pub name: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "KvMap::is_empty")]
    pub attrs: KvMap<'a>,
    /// The element's own text (its text nodes joined), when not only whitespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Element<'a>>,
    /// Child elements past the depth limit, not decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children_omitted: Option<usize>,
}

impl<'a> Element<'a> {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name)
    }
    pub fn child(&self, name: &str) -> Option<&Element<'a>> {
        self.children.iter().find(|c| c.name == name)
    }
    /// Every element of the tree, depth first, this one included.
    pub fn walk(&self) -> Vec<&Element<'a>> {
        let mut out = vec![self];
        let mut i = 0;
        while i < out.len() {
            let e = out[i];
            out.extend(e.children.iter());
            i += 1;
        }
        out
    }
    pub fn into_owned(self) -> Element<'static> {
        Element {
            name: super::owned(self.name),
            attrs: self.attrs.into_owned(),
            text: super::owned_opt(self.text),
            children: self.children.into_iter().map(Element::into_owned).collect(),
            children_omitted: self.children_omitted,
        }
    }
}

impl Redact for Element<'_> {
    /// XML payloads of MSNP carry no credentials by name (tickets travel in command lines
    /// and HTTP); attributes with a secret name are hidden all the same.
    fn redact(&mut self) -> bool {
        let mut changed = self.attrs.redact();
        for c in self.children.iter_mut() {
            changed |= c.redact();
        }
        changed
    }
}

fn storage<'i>(s: &roxmltree::StringStorage<'i>) -> Cow<'i, str> {
    match s {
        roxmltree::StringStorage::Borrowed(b) => Cow::Borrowed(b),
        roxmltree::StringStorage::Owned(o) => Cow::Owned(o.to_string()),
    }
}

/// Parses an XML document into its root element.
pub fn parse(text: &str) -> Result<Element<'_>, String> {
    let t = trim(text);
    // The direct parser builds the same tree without roxmltree's Document in between; what
    // it does not take (and every error, so messages stay roxmltree's) goes to roxmltree.
    match direct::parse(t) {
        Some(e) => Ok(e),
        None => parse_roxml(t),
    }
}

/// The text `parse` reads: MSN payloads sometimes end with NUL or stray whitespace after the
/// root element.
fn trim(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || c == '\0')
}

/// `parse` through roxmltree's Document, on text already trimmed; the fallback of the direct
/// parser and the oracle of its tests.
fn parse_roxml(t: &str) -> Result<Element<'_>, String> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 200_000,
    };
    let doc = roxmltree::Document::parse_with_options(t, opts).map_err(|e| e.to_string())?;
    Ok(element(doc.root_element(), 0))
}

fn element<'i>(n: roxmltree::Node<'_, 'i>, depth: usize) -> Element<'i> {
    let mut attrs = KvMap::default();
    for a in n.attributes() {
        attrs.insert(Cow::Borrowed(a.name()), storage(a.value_storage()));
    }
    let mut text: Option<Cow<'i, str>> = None;
    let mut kids = 0usize;
    for c in n.children() {
        if c.is_element() {
            kids += 1;
        } else if c.is_text() {
            if let Some(s) = c.text_storage() {
                match text.as_mut() {
                    None => text = Some(storage(s)),
                    Some(t) => t.to_mut().push_str(s),
                }
            }
        }
    }
    let text = text.filter(|t| !t.trim().is_empty());
    let (children, children_omitted) = if kids == 0 {
        (Vec::new(), None)
    } else if depth >= MAX_DEPTH {
        (Vec::new(), Some(kids))
    } else {
        (
            n.children()
                .filter(|c| c.is_element())
                .map(|c| element(c, depth + 1))
                .collect(),
            None,
        )
    };
    Element {
        name: Cow::Borrowed(n.tag_name().name()),
        attrs,
        text,
        children,
        children_omitted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adl_list() {
        let v = parse(r#"<ml l="1"><d n="example.com"><c n="bob" l="3" t="1"/></d></ml>"#).unwrap();
        assert_eq!(v.name, "ml");
        assert_eq!(v.attr("l"), Some("1"));
        assert_eq!(v.children[0].attr("n"), Some("example.com"));
        assert_eq!(v.children[0].children[0].attr("l"), Some("3"));
        assert!(matches!(v.children[0].name, Cow::Borrowed(_)));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"name":"ml","attrs":{"l":"1"},"children":[{"name":"d","attrs":{"n":"example.com"},"children":[{"name":"c","attrs":{"n":"bob","l":"3","t":"1"}}]}]}"#
        );
    }

    #[test]
    fn text_entities_and_errors() {
        let v =
            parse("<Data><PSM>hi &amp; there</PSM><CurrentMedia></CurrentMedia></Data>\0").unwrap();
        assert_eq!(v.children[0].text.as_deref(), Some("hi & there"));
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("not xml").is_err());
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        let v = parse(&deep).unwrap();
        let mut d = 0;
        let mut e = &v;
        while let Some(c) = e.children.first() {
            e = c;
            d += 1;
        }
        assert_eq!(d, MAX_DEPTH);
        assert_eq!(e.children_omitted, Some(1));
    }
}
