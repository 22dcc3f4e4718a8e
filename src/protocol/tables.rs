//! The dissector tables: loads the TOML data of dissectors/ (built in) and of user folders,
//! merges them and answers look-ups. It holds data only; framing and decoding live elsewhere.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::event::{Dir, Service};
use crate::wire::Args;

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
    pub fn meaning_bytes(&self, v: &[u8]) -> Option<&str> {
        std::str::from_utf8(v).ok().and_then(|v| self.meaning(v))
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
    /// The services of the form (its own or its command's) as bits of [`service_bit`],
    /// set when the tables are loaded: `select_form` runs on every line.
    #[serde(skip)]
    pub(crate) service_mask: u8,
}

/// A three-byte command name as a number that sorts like the name.
fn rule_key(name: &[u8]) -> Option<u32> {
    let [a, b, c] = <[u8; 3]>::try_from(name).ok()?;
    Some(u32::from_be_bytes([0, a, b, c]))
}

/// One bit per service, for [`FormDef::service_mask`].
fn service_bit(s: Service) -> u8 {
    match s {
        Service::Ds => 1,
        Service::Ns => 2,
        Service::Sb => 4,
        Service::Unknown => 8,
    }
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

    pub fn matches_args(&self, args: &Args<'_, '_>) -> bool {
        self.matchers.iter().all(|(i, lits)| {
            args.get(*i)
                .is_some_and(|a| lits.iter().any(|l| l.as_bytes() == a))
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

/// A name of the client-version nibble, the top four bits of the capability flags
/// (capabilities.toml).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientVersion {
    /// The nibble's value, 1-15.
    pub nibble: u8,
    /// The Messenger version it stands for ("6.0", "2009").
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A bit of the `listbits` parameter type (lists.toml).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListBit {
    pub bit: u64,
    /// Its short name ("FL"), as msntap's JSON writes it.
    pub name: String,
    #[serde(default)]
    pub meaning: String,
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
    client_version: Vec<ClientVersion>,
    #[serde(default)]
    list: Vec<ListBit>,
    #[serde(default)]
    challenge_key: Vec<ChallengeKey>,
    #[serde(default)]
    rule: Vec<DialectRule>,
}

/// What a dialect rule can change, one bit each: a connection whose dialect can no longer
/// change in some way skips the rules that could only do that (most switchboard and
/// presence lines name a rule that only sets the service).
pub mod effect {
    pub const VERSIONS: u8 = 1;
    pub const SERVICE: u8 = 2;
    pub const OFFER: u8 = 4;
    pub const NEGOTIATE: u8 = 8;
    pub const LOGGED_IN: u8 = 16;
    pub const DISPATCH: u8 = 32;
}

/// What a rule does to the connection when its command is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// The client's `VER`: the dialects it offers bound the version.
    Offer,
    /// The server's `VER`: the version is the dialect it picked.
    Negotiate,
    /// A successful login.
    LoggedIn,
    /// A referral that answers a login: the server was a dispatch server.
    Dispatch,
}

/// A version/service inference rule (dissectors/dialect.toml).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialectRule {
    pub dir: DirSpec,
    /// The commands it applies to.
    pub cmd: Vec<String>,
    /// Argument literals that must match (`{ 1 = "MD5|CTP" }`).
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub matches: BTreeMap<String, String>,
    /// Argument literals that must not match.
    #[serde(
        default,
        rename = "not_match",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub not_matches: BTreeMap<String, String>,
    /// Exact number of arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argc: Option<usize>,
    /// Least number of arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_args: Option<usize>,
    /// While the version is unknown, narrow it to this range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<VersionRange>,
    /// While the service is unknown, it is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RuleAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(skip)]
    matchers: Vec<(usize, Vec<String>)>,
    #[serde(skip)]
    anti: Vec<(usize, Vec<String>)>,
}

fn matchers(m: &BTreeMap<String, String>) -> Result<Vec<(usize, Vec<String>)>, String> {
    m.iter()
        .map(|(k, v)| {
            let idx: usize = k
                .parse()
                .map_err(|_| format!("match key {k:?} is not an argument index"))?;
            Ok((idx, v.split('|').map(str::to_string).collect()))
        })
        .collect()
}

impl DialectRule {
    fn prepare(&mut self) -> Result<(), String> {
        self.matchers = matchers(&self.matches)?;
        self.anti = matchers(&self.not_matches)?;
        if self.versions.is_none() && self.service.is_none() && self.action.is_none() {
            return Err("a rule needs versions, service or action".into());
        }
        Ok(())
    }

    /// The parsed `match`: (argument index, accepted literals); all must hold.
    pub fn matchers(&self) -> &[(usize, Vec<String>)] {
        &self.matchers
    }

    /// The parsed `not_match`: the rule does not apply when one of them holds.
    pub fn anti_matchers(&self) -> &[(usize, Vec<String>)] {
        &self.anti
    }

    /// What applying the rule can change, as [`effect`] bits.
    pub fn effects(&self) -> u8 {
        let mut e = 0;
        if self.versions.is_some() {
            e |= effect::VERSIONS;
        }
        if self.service.is_some() {
            e |= effect::SERVICE;
        }
        e | match self.action {
            Some(RuleAction::Offer) => effect::OFFER,
            Some(RuleAction::Negotiate) => effect::NEGOTIATE,
            Some(RuleAction::LoggedIn) => effect::LOGGED_IN,
            Some(RuleAction::Dispatch) => effect::DISPATCH,
            None => 0,
        }
    }

    /// Does the rule apply to this line?
    pub fn applies(&self, dir: Dir, name: &[u8], args: &Args<'_, '_>) -> bool {
        let hit = |m: &[(usize, Vec<String>)]| {
            m.iter().all(|(i, lits)| {
                args.get(*i)
                    .is_some_and(|a| lits.iter().any(|l| l.as_bytes() == a))
            })
        };
        self.dir.fits(dir)
            && self.cmd.iter().any(|c| c.as_bytes() == name)
            && self.argc.is_none_or(|n| args.len() == n)
            && self.min_args.is_none_or(|n| args.len() >= n)
            && hit(&self.matchers)
            && (self.anti.is_empty()
                || !self.anti.iter().any(|(i, lits)| {
                    args.get(*i)
                        .is_some_and(|a| lits.iter().any(|l| l.as_bytes() == a))
                }))
    }
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
    /// Names of the client-version nibble of the capability flags, by nibble.
    pub client_versions: BTreeMap<u8, ClientVersion>,
    /// The bits of the `listbits` parameter type, by bit.
    pub lists: Vec<ListBit>,
    pub challenge_keys: Vec<ChallengeKey>,
    /// Known MIME content types, MIME headers and XML roots (lower-case keys).
    pub content_types: BTreeMap<String, NamedEntry>,
    pub mime_headers: BTreeMap<String, NamedEntry>,
    pub xml_roots: BTreeMap<String, NamedEntry>,
    /// What commands say about a connection's version and service (dialect.toml).
    pub rules: Vec<DialectRule>,
    /// Rule indices by command name, sorted by name (nearly every line has no rule).
    /// Command names as big-endian numbers (a compare per probe, not a `memcmp` call).
    /// Rules by command: (name key, the effects of all its rules, rule indexes).
    rule_index: Vec<(u32, u8, Vec<u16>)>,
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
            client_versions: BTreeMap::new(),
            lists: Vec::new(),
            challenge_keys: Vec::new(),
            content_types: BTreeMap::new(),
            mime_headers: BTreeMap::new(),
            xml_roots: BTreeMap::new(),
            rules: Vec::new(),
            rule_index: Vec::new(),
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
                f.service_mask = f
                    .services
                    .as_ref()
                    .unwrap_or(&c.services)
                    .iter()
                    .fold(0, |m, &s| m | service_bit(s));
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
        for v in doc.client_version {
            if !(1..=15).contains(&v.nibble) {
                return Err(invalid(format!(
                    "client_version nibble {} is not 1-15",
                    v.nibble
                )));
            }
            self.client_versions.insert(v.nibble, v);
        }
        for l in doc.list {
            if l.bit == 0 {
                return Err(invalid(format!("list {:?} has bit 0", l.name)));
            }
            self.lists.retain(|x| x.bit != l.bit);
            self.lists.push(l);
        }
        self.lists.sort_by_key(|l| l.bit);
        for e in doc.content_type {
            self.content_types.insert(e.name.to_ascii_lowercase(), e);
        }
        for e in doc.mime_header {
            self.mime_headers.insert(e.name.to_ascii_lowercase(), e);
        }
        for e in doc.xml_root {
            self.xml_roots.insert(e.name.to_ascii_lowercase(), e);
        }
        for mut r in doc.rule {
            r.prepare()
                .map_err(|m| invalid(format!("rule for {}: {m}", r.cmd.join("|"))))?;
            self.rules.push(r);
        }
        self.index_rules();
        for k in doc.challenge_key {
            self.challenge_keys.retain(|x| x.product_id != k.product_id);
            self.challenge_keys.push(k);
        }
        Ok(())
    }

    fn index_rules(&mut self) {
        let mut idx: Vec<(u32, u8, Vec<u16>)> = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            for c in &r.cmd {
                let Some(k) = rule_key(c.as_bytes()) else {
                    continue;
                };
                match idx.binary_search_by(|(n, ..)| n.cmp(&k)) {
                    Ok(p) => {
                        idx[p].1 |= r.effects();
                        idx[p].2.push(i as u16);
                    }
                    Err(p) => idx.insert(p, (k, r.effects(), vec![i as u16])),
                }
            }
        }
        self.rule_index = idx;
    }

    /// The dialect rules that name this command and can still change one of the `open`
    /// [`effect`]s, in file order.
    pub fn rules_for(&self, name: &[u8], open: u8) -> impl Iterator<Item = &DialectRule> {
        let hit = rule_key(name)
            .and_then(|k| self.rule_index.binary_search_by(|(n, ..)| n.cmp(&k)).ok())
            .filter(|&p| self.rule_index[p].1 & open != 0);
        hit.into_iter()
            .flat_map(move |p| self.rule_index[p].2.iter())
            .filter_map(move |&i| self.rules.get(i as usize))
            .filter(move |r| r.effects() & open != 0)
    }

    /// Replaces the dialect rules (tests).
    pub fn set_rules(&mut self, rules: Vec<DialectRule>) {
        self.rules = rules;
        self.index_rules();
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

    /// Finds the first form of `def` that fits the line; returns its index.
    pub fn select_form(
        def: &CommandDef,
        dir: Dir,
        service: Service,
        versions: VersionRange,
        args: &Args<'_, '_>,
    ) -> Option<usize> {
        // Any form fits an unknown service; a dispatch server speaks the NS forms too.
        let want = match service {
            Service::Ds => service_bit(Service::Ds) | service_bit(Service::Ns),
            s => service_bit(s),
        };
        def.forms.iter().position(|f| {
            f.dir.fits(dir)
                && (service == Service::Unknown || f.service_mask & want != 0)
                && f.versions.unwrap_or(def.versions).intersects(&versions)
                && f.arity_fits(args.len())
                && f.matches_args(args)
        })
    }

    /// The index of a command in the tables (stable for the life of the tables).
    pub fn command_index(&self, name: &[u8]) -> Option<usize> {
        let s = slot(name)?;
        match self.index[s] {
            u16::MAX => None,
            i => Some(i as usize),
        }
    }

    pub fn command_at(&self, i: usize) -> Option<&CommandDef> {
        self.commands.get(i)
    }

    /// Does any server-to-client form of `name` carry a server address (XFR, RNG)?
    pub fn may_redirect(&self, name: &[u8]) -> bool {
        self.command(name).is_some_and(|d| {
            d.forms.iter().any(|f| {
                f.dir.fits(Dir::S2c) && f.params.iter().any(|p| p.ty == ParamType::Address)
            })
        })
    }

    /// The Messenger version a client-version nibble stands for.
    pub fn client_version(&self, nibble: u8) -> Option<&str> {
        self.client_versions.get(&nibble).map(|v| v.name.as_str())
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
