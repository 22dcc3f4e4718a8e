//! MSNObject descriptors (`<msnobj Creator=... SHA1D=.../>`) from CHG/ILN/NLN, datacasts,
//! emoticon lists and P2P contexts: the attributes as sent, plus the decoded type and name.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::KvMap;

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

/// An MSNObject: its attributes in order (written as the keys of one JSON object, with
/// `type_name` and `friendly_decoded` beside them).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MsnObject<'a> {
    pub attrs: KvMap<'a>,
    pub type_name: Option<Cow<'a, str>>,
    /// `Friendly` decoded (base64 of NUL-terminated UTF-16LE).
    pub friendly_decoded: Option<String>,
}

impl<'a> MsnObject<'a> {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.attrs.get(k)
    }
    pub fn creator(&self) -> Option<&str> {
        self.get("Creator")
    }
    pub fn sha1d(&self) -> Option<&str> {
        self.get("SHA1D")
    }
    pub fn location(&self) -> Option<&str> {
        self.get("Location")
    }
    pub fn size(&self) -> Option<u64> {
        self.get("Size").and_then(|s| s.trim().parse().ok())
    }
    pub fn kind(&self) -> Option<u32> {
        self.get("Type").and_then(|s| s.trim().parse().ok())
    }
    pub fn into_owned(self) -> MsnObject<'static> {
        MsnObject {
            attrs: self.attrs.into_owned(),
            type_name: super::owned_opt(self.type_name),
            friendly_decoded: self.friendly_decoded,
        }
    }
}

impl Serialize for MsnObject<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let extra =
            usize::from(self.type_name.is_some()) + usize::from(self.friendly_decoded.is_some());
        let mut m = s.serialize_map(Some(self.attrs.0.len() + extra))?;
        for (k, v) in &self.attrs.0 {
            m.serialize_entry(k.as_ref(), v.as_ref())?;
        }
        if let Some(t) = &self.type_name {
            m.serialize_entry("type_name", t.as_ref())?;
        }
        if let Some(f) = &self.friendly_decoded {
            m.serialize_entry("friendly_decoded", f)?;
        }
        m.end()
    }
}

impl<'de, 'a> Deserialize<'de> for MsnObject<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let all = KvMap::deserialize(d)?;
        let mut o = MsnObject::default();
        for (k, v) in all.0 {
            match k.as_ref() {
                "type_name" => o.type_name = Some(v),
                "friendly_decoded" => o.friendly_decoded = Some(v.into_owned()),
                _ => o.attrs.0.push((k, v)),
            }
        }
        Ok(o)
    }
}

/// Parses an MSNObject element. None when `s` is not an `<msnobj>` element.
pub fn parse(s: &str) -> Option<MsnObject<'_>> {
    let t = s.trim().trim_end_matches('\0');
    if !t.starts_with("<msnobj") {
        return None;
    }
    let root = super::xml::parse(t).ok()?;
    if root.name != "msnobj" {
        return None;
    }
    let type_name = root
        .attr("Type")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map(|t| Cow::Borrowed(type_name(t)));
    let friendly_decoded = root.attr("Friendly").and_then(super::unb64).map(|f| {
        let units: Vec<u16> = f
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
            .trim_end_matches('\0')
            .to_string()
    });
    Some(MsnObject {
        attrs: root.attrs,
        type_name,
        friendly_decoded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_display_picture() {
        let v = parse(r#"<msnobj Creator="bob@example.com" Size="70" Type="3" Location="PIC.tmp" Friendly="AAA=" SHA1D="mZPtHSeB/a/YdgOOa+ChFi03e+E=" SHA1C="rXd9hCRMn+G9uTZtw/T5RHQBDt4=" contenttype=""/>"#).unwrap();
        assert_eq!(v.creator(), Some("bob@example.com"));
        assert_eq!(v.type_name.as_deref(), Some("display_picture"));
        assert_eq!(v.sha1d(), Some("mZPtHSeB/a/YdgOOa+ChFi03e+E="));
        assert_eq!(v.size(), Some(70));
        assert_eq!(v.friendly_decoded.as_deref(), Some(""));
        let j = serde_json::to_string(&v).unwrap();
        assert!(
            j.starts_with(r#"{"Creator":"bob@example.com","Size":"70""#),
            "{j}"
        );
        let back: MsnObject = serde_json::from_str(&j).unwrap();
        assert_eq!(back, v);
        assert!(parse("<msnobj/>").is_some());
        assert!(parse("0").is_none());
        assert!(parse("<msnobj Creator=").is_none());
    }
}
