//! XML payloads (NOT, IPG, UBX/UUX, ADL/RML/FQY, GCF) parsed into elements and attributes.

use serde_json::{json, Map, Value};

/// Deepest element nesting that is turned into JSON; deeper content is summarised.
const MAX_DEPTH: usize = 64;

/// Parses an XML document into `{name, attrs, text, children}` objects.
pub fn parse(text: &str) -> Result<Value, String> {
    // MSN payloads sometimes end with NUL or stray whitespace after the root element.
    let t = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 200_000,
    };
    let doc = roxmltree::Document::parse_with_options(t, opts).map_err(|e| e.to_string())?;
    Ok(element(doc.root_element(), 0))
}

fn element(n: roxmltree::Node, depth: usize) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(n.tag_name().name()));
    let attrs: Map<String, Value> = n
        .attributes()
        .map(|a| (a.name().to_string(), json!(a.value())))
        .collect();
    if !attrs.is_empty() {
        o.insert("attrs".into(), Value::Object(attrs));
    }
    // Most elements have no text and few children: allocate only for what is there.
    let mut texts = n
        .children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text());
    if let Some(first) = texts.next() {
        let mut text = first.to_string();
        texts.for_each(|t| text.push_str(t));
        if !text.trim().is_empty() {
            o.insert("text".into(), Value::String(text));
        }
    }
    let nkids = n.children().filter(|c| c.is_element()).count();
    if nkids > 0 {
        if depth >= MAX_DEPTH {
            o.insert("children_omitted".into(), json!(nkids));
        } else {
            let kids = n.children().filter(|c| c.is_element());
            o.insert(
                "children".into(),
                Value::Array(kids.map(|c| element(c, depth + 1)).collect()),
            );
        }
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adl_list() {
        let v = parse(r#"<ml l="1"><d n="example.com"><c n="bob" l="3" t="1"/></d></ml>"#).unwrap();
        assert_eq!(v["name"], "ml");
        assert_eq!(v["attrs"]["l"], "1");
        assert_eq!(v["children"][0]["attrs"]["n"], "example.com");
        assert_eq!(v["children"][0]["children"][0]["attrs"]["l"], "3");
    }

    #[test]
    fn text_and_errors() {
        let v = parse("<Data><PSM>hi there</PSM><CurrentMedia></CurrentMedia></Data>\0").unwrap();
        assert_eq!(v["children"][0]["text"], "hi there");
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("not xml").is_err());
    }
}
