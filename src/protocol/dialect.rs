//! Version and service inference for one connection, driven by the rules of
//! dissectors/dialect.toml: the VER exchange, and what logins, keep-alives and
//! switchboard commands reveal before or without it. Pure state; no I/O.

use crate::event::{Dir, Service};
use crate::wire::Args;

use super::tables::{effect, RuleAction, Tables, VersionRange};

/// What the caller knows about a connection before any byte is seen (from redirects).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionHint {
    pub service: Option<Service>,
    pub version: Option<u8>,
}

/// The dialect of one connection as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    pub service: Service,
    /// The negotiated version, once the server's VER (or a redirect) tells it.
    pub version: Option<u8>,
    /// The versions still possible while `version` is unknown.
    pub range: VersionRange,
    service_hinted: bool,
    logged_in: bool,
}

/// `MSNP11` -> 11.
pub fn dialect_number(t: &[u8]) -> Option<u8> {
    let n = t.strip_prefix(b"MSNP")?;
    crate::wire::parse_len(n).and_then(|v| u8::try_from(v).ok())
}

impl Dialect {
    pub fn new(hint: SessionHint) -> Dialect {
        let version = hint.version.filter(|v| VersionRange::ALL.contains(*v));
        Dialect {
            service: hint.service.unwrap_or(Service::Unknown),
            service_hinted: hint.service.is_some_and(|s| s != Service::Unknown),
            version,
            range: version.map_or(VersionRange::ALL, |v| VersionRange { lo: v, hi: v }),
            logged_in: false,
        }
    }

    /// The versions whose forms apply now.
    pub fn versions(&self) -> VersionRange {
        match self.version {
            Some(v) => VersionRange { lo: v, hi: v },
            None => self.range,
        }
    }

    fn narrow(&mut self, r: VersionRange) {
        let n = VersionRange {
            lo: self.range.lo.max(r.lo),
            hi: self.range.hi.min(r.hi),
        };
        if n.lo <= n.hi {
            self.range = n;
        }
    }

    /// The [`effect`]s a rule could still have on this dialect; a rule with none of them
    /// would change nothing, so it is not even matched.
    fn open_effects(&self) -> u8 {
        let mut open = effect::NEGOTIATE;
        if self.version.is_none() {
            open |= effect::VERSIONS | effect::OFFER;
        }
        if self.service == Service::Unknown {
            open |= effect::SERVICE;
        }
        if !self.logged_in {
            open |= effect::LOGGED_IN;
            if !self.service_hinted && self.service != Service::Ds {
                open |= effect::DISPATCH;
            }
        }
        open
    }

    /// Learns from one command line.
    pub fn update(&mut self, tables: &Tables, dir: Dir, name: &[u8], args: &Args<'_, '_>) {
        for r in tables
            .rules_for(name, self.open_effects())
            .filter(|r| r.applies(dir, name, args))
        {
            match r.action {
                Some(RuleAction::Offer) => {
                    let offered = args.iter().filter_map(dialect_number);
                    let (lo, hi) = offered.fold((u8::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)));
                    if self.version.is_none() && lo <= hi {
                        self.range = VersionRange { lo, hi };
                    }
                }
                Some(RuleAction::Negotiate) => {
                    if let Some(v) = args
                        .iter()
                        .filter_map(dialect_number)
                        .filter(|v| VersionRange::ALL.contains(*v))
                        .max()
                    {
                        self.version = Some(v);
                        self.range = VersionRange { lo: v, hi: v };
                    }
                }
                Some(RuleAction::LoggedIn) => self.logged_in = true,
                Some(RuleAction::Dispatch) if !self.logged_in && !self.service_hinted => {
                    self.service = Service::Ds;
                }
                Some(RuleAction::Dispatch) => {}
                None => {}
            }
            if let Some(v) = r.versions {
                if self.version.is_none() {
                    self.narrow(v);
                }
            }
            if let Some(s) = r.service {
                if self.service == Service::Unknown {
                    self.service = s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_dialects_match_only_the_rules_that_can_still_change_them() {
        let fresh = Dialect::new(SessionHint::default());
        assert_eq!(
            fresh.open_effects(),
            effect::NEGOTIATE
                | effect::VERSIONS
                | effect::OFFER
                | effect::SERVICE
                | effect::LOGGED_IN
                | effect::DISPATCH
        );
        // A switchboard reached through a redirect knows its service and version: only a
        // server VER could still change it.
        let sb = Dialect::new(SessionHint {
            service: Some(Service::Sb),
            version: Some(11),
        });
        assert_eq!(sb.open_effects(), effect::NEGOTIATE | effect::LOGGED_IN);
        let mut ns = fresh.clone();
        ns.version = Some(11);
        ns.service = Service::Ns;
        ns.logged_in = true;
        assert_eq!(ns.open_effects(), effect::NEGOTIATE);
    }
}
