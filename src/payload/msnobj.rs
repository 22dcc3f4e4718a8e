//! MSNObject descriptors (`<msnobj Creator=... SHA1D=.../>`) from CHG/ILN/NLN and P2P contexts.

use serde_json::{json, Map, Value};

/// MSNObject types (protocol-facts F.5).
pub fn type_name(t: u32) -> &'static str {
    match t {
        1 => "avatar",
        2 => "custom_emoticon",
        3 => "display_picture",
        4 => "shared_file",
        5 => "background",
        6 => "history",
        7 => "dynamic_display_picture",
        8 => "wink",
        9 => "map_file",
        10 => "dynamic_background",
        11 => "voice_clip",
        12 => "saved_state",
        13 => "roaming_object",
        14 => "signature_sound",
        16 => "scene",
        _ => "unknown",
    }
}

/// Parses an MSNObject element into its attributes, plus `type_name` and the decoded
/// `friendly` name. Returns None when `s` is not an `<msnobj>` element.
pub fn parse(s: &str) -> Option<Value> {
    let t = s.trim().trim_end_matches('\0');
    if !t.starts_with("<msnobj") {
        return None;
    }
    let doc = roxmltree::Document::parse(t).ok()?;
    let root = doc.root_element();
    if root.tag_name().name() != "msnobj" {
        return None;
    }
    let mut o: Map<String, Value> = root
        .attributes()
        .map(|a| (a.name().to_string(), json!(a.value())))
        .collect();
    if let Some(ty) = root.attribute("Type").and_then(|v| v.parse::<u32>().ok()) {
        o.insert("type_name".into(), json!(type_name(ty)));
    }
    if let Some(f) = root.attribute("Friendly").and_then(super::unb64) {
        // Friendly is base64 of UTF-16LE text, NUL-terminated.
        let units: Vec<u16> = f
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let name: String = String::from_utf16_lossy(&units)
            .trim_end_matches('\0')
            .to_string();
        o.insert("friendly_decoded".into(), json!(name));
    }
    Some(Value::Object(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_display_picture() {
        let v = parse(r#"<msnobj Creator="bob@example.com" Size="70" Type="3" Location="PIC.tmp" Friendly="AAA=" SHA1D="mZPtHSeB/a/YdgOOa+ChFi03e+E=" SHA1C="rXd9hCRMn+G9uTZtw/T5RHQBDt4=" contenttype=""/>"#).unwrap();
        assert_eq!(v["Creator"], "bob@example.com");
        assert_eq!(v["type_name"], "display_picture");
        assert_eq!(v["SHA1D"], "mZPtHSeB/a/YdgOOa+ChFi03e+E=");
        assert_eq!(v["friendly_decoded"], "");
        assert!(parse("<msnobj/>").is_some());
        assert!(parse("0").is_none());
        assert!(parse("<msnobj Creator=").is_none());
    }
}
