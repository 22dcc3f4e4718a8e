//! The dissector tables: loads the TOML data of dissectors/ (built in) and of user folders,
//! merges them and answers look-ups. It holds data only; framing and decoding live elsewhere.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::event::{Dir, Service};

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_dissectors.rs"));
}

/// Errors met while loading dissector files.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("cannot read dissector folder {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// An inclusive range of MSNP dialect numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    pub lo: u8,
    pub hi: u8,
}

impl VersionRange {
    pub const ALL: VersionRange = VersionRange { lo: 2, hi: 21 };

    pub fn contains(&self, v: u8) -> bool {
        self.lo <= v && v <= self.hi
    }

    pub fn intersects(&self, other: &VersionRange) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let num = |t: &str, default: u8| -> Result<u8, String> {
            let t = t.trim().trim_start_matches("MSNP");
            if t.is_empty() {
                return Ok(default);
            }
            t.parse::<u8>()
                .map_err(|_| format!("bad version number {t:?}"))
        };
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (num(a, 2)?, num(b, 21)?),
            None => {
                let v = num(s, 0)?;
                (v, v)
            }
        };
        if lo == 0 || lo > hi {
            return Err(format!("bad version range {s:?}"));
        }
        Ok(VersionRange { lo, hi })
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl Serialize for VersionRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VersionRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            N(u8),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => VersionRange::parse(&s).map_err(serde::de::Error::custom),
            Raw::N(n) => Ok(VersionRange { lo: n, hi: n }),
        }
    }
}

/// Which directions a form applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirSpec {
    C2s,
    S2c,
    Both,
}

impl DirSpec {
    pub fn fits(self, d: Dir) -> bool {
        matches!(
            (self, d),
            (DirSpec::Both, _) | (DirSpec::C2s, Dir::C2s) | (DirSpec::S2c, Dir::S2c)
        )
    }
}

/// Where a form's payload length sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PayloadRule {
    #[default]
    None,
    Last,
}

/// How a payload body is to be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    Mime,
    Xml,
    Text,
    Binary,
    Multipart,
}

/// The type of a command parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Trid,
    Length,
    Int,
    Enum,
    Handle,
    Friendly,
    Text,
    Address,
    Cookie,
    Secret,
    Caps,
    Msnobj,
    Listbits,
    List,
    Status,
    Netid,
    Guid,
    Url,
    Dialect,
    String,
}

impl ParamType {
    /// Parameters whose value is a credential or session secret.
    pub fn is_secret(self) -> bool {
        matches!(self, ParamType::Cookie | ParamType::Secret)
    }
}

/// Enum values: either a plain list or a map of value to meaning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnumValues {
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

impl EnumValues {
    pub fn meaning(&self, v: &str) -> Option<&str> {
        match self {
            EnumValues::List(_) => None,
            EnumValues::Map(m) => m.get(v).map(String::as_str),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ParamType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<EnumValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meaning: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormDef {
    pub dir: DirSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<VersionRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<Service>>,
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub matches: BTreeMap<String, String>,
    #[serde(default)]
    pub payload: PayloadRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_kind: Option<PayloadKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meaning: Option<Arc<str>>,
    #[serde(default)]
    pub params: Vec<ParamDef>,
    #[serde(default)]
    pub optional: usize,
    #[serde(default)]
    pub repeat_last: bool,
    /// Parsed `match`: (argument index, accepted literals).
    #[serde(skip)]
    pub matchers: Vec<(usize, Vec<String>)>,
}

impl FormDef {
    fn prepare(&mut self) -> Result<(), String> {
        self.matchers.clear();
        for (k, v) in &self.matches {
            let idx: usize = k
                .parse()
                .map_err(|_| format!("match key {k:?} is not an argument index"))?;
            self.matchers
                .push((idx, v.split('|').map(str::to_string).collect()));
        }
        if self.optional > self.params.len() {
            return Err(format!(
                "optional = {} but only {} params",
                self.optional,
                self.params.len()
            ));
        }
        if self.payload == PayloadRule::Last
            && self
                .params
                .last()
                .is_some_and(|p| p.ty != ParamType::Length)
        {
            return Err("payload = \"last\" but the last param is not of type length".into());
        }
        Ok(())
    }

    pub fn arity_fits(&self, n: usize) -> bool {
        let max = self.params.len();
        let min = max - self.optional;
        n >= min && (n <= max || self.repeat_last)
    }

    pub fn matches_args<S: AsRef<str>>(&self, args: &[S]) -> bool {
        self.matchers.iter().all(|(i, lits)| {
            args.get(*i)
                .is_some_and(|a| lits.iter().any(|l| l == a.as_ref()))
        })
    }

    /// The definition of argument `i`, honouring `repeat_last`.
    pub fn param(&self, i: usize) -> Option<&ParamDef> {
        self.params
            .get(i)
            .or_else(|| self.repeat_last.then(|| self.params.last()).flatten())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandDef {
    pub name: String,
    pub meaning: Arc<str>,
    pub services: Vec<Service>,
    pub versions: VersionRange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, rename = "form")]
    pub forms: Vec<FormDef>,
    /// Which file defined this entry (the last one wins).
    #[serde(default)]
    pub origin: String,
}

impl CommandDef {
    /// Whether any form of this command may carry a payload in direction `dir`.
    pub fn may_carry_payload(&self, dir: Dir) -> bool {
        self.forms
            .iter()
            .any(|f| f.dir.fits(dir) && f.payload == PayloadRule::Last)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDef {
    pub code: u16,
    pub name: Arc<str>,
    pub meaning: Arc<str>,
    #[serde(default = "all_versions")]
    pub versions: VersionRange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub origin: String,
}

fn all_versions() -> VersionRange {
    VersionRange::ALL
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityDef {
    pub bit: u64,
    pub name: String,
    #[serde(default)]
    pub meaning: String,
    #[serde(default)]
    pub ext: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeKey {
    pub product_id: String,
    pub private_key: String,
    #[serde(default = "all_versions")]
    pub versions: VersionRange,
    #[serde(default)]
    pub note: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A known payload vocabulary entry: MIME content type, MIME header or XML root element.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedEntry {
    pub name: String,
    #[serde(default)]
    pub meaning: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    content_type: Vec<NamedEntry>,
    #[serde(default)]
    mime_header: Vec<NamedEntry>,
    #[serde(default)]
    xml_root: Vec<NamedEntry>,
    #[serde(default)]
    command: Vec<CommandDef>,
    #[serde(default)]
    error: Vec<ErrorDef>,
    #[serde(default)]
    capability: Vec<CapabilityDef>,
    #[serde(default)]
    challenge_key: Vec<ChallengeKey>,
}

const SLOTS: usize = 26 * 26 * 26;

/// The merged protocol tables.
#[derive(Debug, Clone)]
pub struct Tables {
    commands: Vec<CommandDef>,
    /// Index of a three-letter command (A-Z only) into `commands`, or u16::MAX.
    index: Vec<u16>,
    pub errors: BTreeMap<u16, ErrorDef>,
    pub capabilities: Vec<CapabilityDef>,
    pub challenge_keys: Vec<ChallengeKey>,
    /// Known MIME content types, MIME headers and XML roots (lower-case keys).
    pub content_types: BTreeMap<String, NamedEntry>,
    pub mime_headers: BTreeMap<String, NamedEntry>,
    pub xml_roots: BTreeMap<String, NamedEntry>,
    /// Every file merged in, in load order (built-in ones first).
    files: Vec<String>,
}

fn slot(name: &[u8]) -> Option<usize> {
    if name.len() != 3 || !name.iter().all(u8::is_ascii_uppercase) {
        return None;
    }
    Some(
        (name[0] - b'A') as usize * 676
            + (name[1] - b'A') as usize * 26
            + (name[2] - b'A') as usize,
    )
}

impl Tables {
    /// The built-in tables only.
    pub fn builtin() -> Result<Tables, TableError> {
        let mut t = Tables::empty();
        for (name, text) in builtin::BUILTIN {
            t.add_file(name, text)?;
        }
        Ok(t)
    }

    /// The built-in tables merged with every `*.toml` file of `dir` (sorted by name).
    pub fn with_overrides(dir: &Path) -> Result<Tables, TableError> {
        let mut t = Tables::builtin()?;
        t.add_dir(dir)?;
        Ok(t)
    }

    pub fn empty() -> Tables {
        Tables {
            commands: Vec::new(),
            index: vec![u16::MAX; SLOTS],
            errors: BTreeMap::new(),
            capabilities: Vec::new(),
            challenge_keys: Vec::new(),
            content_types: BTreeMap::new(),
            mime_headers: BTreeMap::new(),
            xml_roots: BTreeMap::new(),
            files: Vec::new(),
        }
    }

    pub fn add_dir(&mut self, dir: &Path) -> Result<(), TableError> {
        let io = |e| TableError::Io {
            path: dir.display().to_string(),
            source: e,
        };
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(io)? {
                let p = e.map_err(io)?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "toml") {
                    files.push(p);
                }
            }
        }
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| TableError::Io {
                path: f.display().to_string(),
                source: e,
            })?;
            self.add_file(&f.display().to_string(), &text)?;
        }
        Ok(())
    }

    /// Parses one TOML file and merges its entries (same key replaces).
    pub fn add_file(&mut self, file: &str, text: &str) -> Result<(), TableError> {
        let doc: FileDoc = toml::from_str(text).map_err(|e| TableError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        self.files.push(file.to_string());
        let invalid = |m: String| TableError::Invalid {
            file: file.to_string(),
            message: m,
        };
        for mut c in doc.command {
            let Some(s) = slot(c.name.as_bytes()) else {
                return Err(invalid(format!(
                    "command name {:?} must be three letters A-Z",
                    c.name
                )));
            };
            for (i, f) in c.forms.iter_mut().enumerate() {
                f.prepare()
                    .map_err(|m| invalid(format!("{} form {}: {m}", c.name, i + 1)))?;
            }
            c.origin = file.to_string();
            match self.index[s] {
                u16::MAX => {
                    self.index[s] = self.commands.len() as u16;
                    self.commands.push(c);
                }
                i => self.commands[i as usize] = c,
            }
        }
        for mut e in doc.error {
            e.origin = file.to_string();
            self.errors.insert(e.code, e);
        }
        for c in doc.capability {
            self.capabilities
                .retain(|x| !(x.bit == c.bit && x.ext == c.ext));
            self.capabilities.push(c);
        }
        self.capabilities.sort_by_key(|c| (c.ext, c.bit));
        for e in doc.content_type {
            self.content_types.insert(e.name.to_ascii_lowercase(), e);
        }
        for e in doc.mime_header {
            self.mime_headers.insert(e.name.to_ascii_lowercase(), e);
        }
        for e in doc.xml_root {
            self.xml_roots.insert(e.name.to_ascii_lowercase(), e);
        }
        for k in doc.challenge_key {
            self.challenge_keys.retain(|x| x.product_id != k.product_id);
            self.challenge_keys.push(k);
        }
        Ok(())
    }

    /// Drops a command from the tables (to study what msntap makes of it unknown).
    pub fn remove_command(&mut self, name: &str) -> bool {
        let Some(s) = slot(name.as_bytes()) else {
            return false;
        };
        let i = self.index[s];
        if i == u16::MAX {
            return false;
        }
        self.commands.remove(i as usize);
        self.index = vec![u16::MAX; SLOTS];
        for (j, c) in self.commands.iter().enumerate() {
            if let Some(k) = slot(c.name.as_bytes()) {
                self.index[k] = j as u16;
            }
        }
        true
    }

    pub fn command(&self, name: &[u8]) -> Option<&CommandDef> {
        let s = slot(name)?;
        match self.index[s] {
            u16::MAX => None,
            i => self.commands.get(i as usize),
        }
    }

    /// The files these tables were merged from, in load order (built-in ones first).
    pub fn files(&self) -> &[String] {
        &self.files
    }

    pub fn is_known(&self, name: &[u8]) -> bool {
        self.command(name).is_some()
    }

    pub fn commands(&self) -> impl Iterator<Item = &CommandDef> {
        let mut v: Vec<&CommandDef> = self.commands.iter().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.into_iter()
    }

    pub fn error(&self, code: u16) -> Option<&ErrorDef> {
        self.errors.get(&code)
    }

    /// Finds the first form of `def` that fits the line.
    pub fn select_form<'a, S: AsRef<str>>(
        def: &'a CommandDef,
        dir: Dir,
        service: Service,
        versions: VersionRange,
        args: &[S],
    ) -> Option<&'a FormDef> {
        def.forms.iter().find(|f| {
            f.dir.fits(dir)
                && (service == Service::Unknown
                    || f.services
                        .as_ref()
                        .unwrap_or(&def.services)
                        .contains(&service)
                    || (service == Service::Ds
                        && f.services
                            .as_ref()
                            .unwrap_or(&def.services)
                            .contains(&Service::Ns)))
                && f.versions.unwrap_or(def.versions).intersects(&versions)
                && f.arity_fits(args.len())
                && f.matches_args(args)
        })
    }

    /// Names of capability flags set in `value`.
    pub fn capability_names(&self, value: u64, ext: bool) -> Vec<&str> {
        self.capabilities
            .iter()
            .filter(|c| c.ext == ext && c.bit != 0 && value & c.bit == c.bit)
            .map(|c| c.name.as_str())
            .collect()
    }
}
