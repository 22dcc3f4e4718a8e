//! What the analysis layer adds to a command event: login and challenge findings. Typed
//! here because they are part of the event schema; computed by `analysis::auth`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::payload::{owned, owned_opt, KvMap};
use crate::secret::{Redact, Secret};

/// Annotations of one command.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Annotations<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Box<Auth<'a>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Box<Challenge<'a>>>,
}

impl Annotations<'_> {
    pub fn is_empty(&self) -> bool {
        self.auth.is_none() && self.challenge.is_none()
    }
    pub fn into_owned(self) -> Annotations<'static> {
        Annotations {
            auth: self.auth.map(|a| Box::new(a.into_owned())),
            challenge: self.challenge.map(|c| Box::new(c.into_owned())),
        }
    }
}

impl Redact for Annotations<'_> {
    fn redact(&mut self) -> bool {
        self.auth.as_mut().is_some_and(|a| a.redact())
    }
}

/// A login step: which scheme, which stage, and what could be checked.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Auth<'a> {
    /// MD5, TWN, SSO, CTP or SHA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Cow<'a, str>>,
    pub stage: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<Cow<'a, str>>,
    /// MD5 response: whether the salt was seen on this connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt_seen: Option<bool>,
    /// MD5 response checked against `--password`/`--wordlist`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordCheck<'a>>,
    /// TWN passport challenge parameters (server side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<KvMap<'a>>,
    /// TWN ticket: the names of the ticket parts sent (never their values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tickets: Option<Vec<Cow<'a, str>>>,
    /// SSO nonce stage: the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_present: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_guid: Option<Cow<'a, str>>,
    /// SSO response blob header fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<SsoResponse>,
    /// SSO response checked against the BinarySecret seen over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_check: Option<Check<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Cow<'a, str>>,
}

impl Auth<'_> {
    pub fn into_owned(self) -> Auth<'static> {
        Auth {
            scheme: owned_opt(self.scheme),
            stage: owned(self.stage),
            handle: owned_opt(self.handle),
            salt_seen: self.salt_seen,
            password: self.password.map(PasswordCheck::into_owned),
            params: self.params.map(KvMap::into_owned),
            tickets: self.tickets.map(|t| t.into_iter().map(owned).collect()),
            policy: owned_opt(self.policy),
            ticket_present: self.ticket_present,
            machine_guid: owned_opt(self.machine_guid),
            response: self.response,
            sso_check: self.sso_check.map(Check::into_owned),
            note: owned_opt(self.note),
        }
    }
}

impl Redact for Auth<'_> {
    fn redact(&mut self) -> bool {
        self.password.as_mut().is_some_and(|p| p.value.redact())
    }
}

/// An MD5 login response checked against candidate passwords.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PasswordCheck<'a> {
    /// Candidates tried.
    pub checked: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<bool>,
    /// 1-based position of the matching candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<usize>,
    /// The matching password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Secret<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Cow<'a, str>>,
}

impl PasswordCheck<'_> {
    fn into_owned(self) -> PasswordCheck<'static> {
        PasswordCheck {
            checked: self.checked,
            matched: self.matched,
            candidate: self.candidate,
            value: self.value.map(Secret::into_owned),
            note: owned_opt(self.note),
        }
    }
}

/// The 28-byte header of an SSO (MBI) response blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SsoResponse {
    pub length: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypt_mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_type: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_type: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iv_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_length: Option<u32>,
    /// The blob is shorter than its header.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub short: bool,
}

/// A verdict on a response: valid, invalid, or not checkable (with why).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Check<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Cow<'a, str>>,
}

impl Check<'_> {
    fn into_owned(self) -> Check<'static> {
        Check {
            valid: self.valid,
            note: owned_opt(self.note),
        }
    }
}

/// A CHL/QRY challenge response checked against the known product keys.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Challenge<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Cow<'a, str>>,
    pub product_id: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_key: Option<bool>,
    /// `md5` (MSNP6-10) or `msnp11`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm_matches_version: Option<bool>,
    /// Absent when no known key can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    /// The response the known key gives, when the one sent differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Cow<'a, str>>,
    /// An unknown product id answered with the key of this known one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_with_key_of: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Cow<'a, str>>,
}

impl Challenge<'_> {
    pub fn into_owned(self) -> Challenge<'static> {
        Challenge {
            challenge: owned_opt(self.challenge),
            product_id: owned(self.product_id),
            known_key: self.known_key,
            algorithm: owned_opt(self.algorithm),
            algorithm_matches_version: self.algorithm_matches_version,
            valid: self.valid,
            expected: owned_opt(self.expected),
            answered_with_key_of: owned_opt(self.answered_with_key_of),
            note: owned_opt(self.note),
        }
    }
}
