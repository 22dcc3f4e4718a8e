//! Passport 1.4 (TWN, MSNP8-14) over HTTP: the nexus's `PassportURLs`, the DALogin request
//! with `Authorization: Passport1.4 ...sign-in=...,pwd=...`, and its answer
//! (`Authentication-Info: ... from-PP='...'` or `WWW-Authenticate: ... da-status=failed`).
//! Reads complete [`Request`]/[`Response`] pairs into typed values; the password and the
//! ticket are [`Secret`]s. It does not talk to any server.

use serde::{Deserialize, Serialize};

use super::stream::{Request, Response};
use super::{percent_decode, target_path, Secret};
use crate::event::Ts;
use crate::secret::Redact;

/// One `key=value` of a Passport header, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub key: String,
    pub value: String,
}

/// The nexus's `PassportURLs` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassportUrls {
    /// Where the client logs in (`DALogin=`), as given (often without a scheme).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub da_login: Option<String>,
    /// Every field, `DALogin` included (DAReg, Properties, GeneralRedir, ...).
    pub fields: Vec<Field>,
}

/// `Authorization: Passport1.4 OrgVerb=GET,OrgURL=...,sign-in=...,pwd=...,<challenge>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_verb: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_url: Option<String>,
    /// The account, percent-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<String>,
    /// The password, percent-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// The rest: the challenge string of `USR t TWN S` (lc, id, tw, ct, kpp, ...).
    pub challenge: Vec<Field>,
}

/// A 200 answer with `Authentication-Info: Passport1.4 da-status=success,...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Success {
    pub da_status: String,
    /// The ticket for `USR t TWN S` (`t=...&p=...`, or a bare token on revival servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Secret>,
    /// Other fields (ru, ttl, ...).
    pub fields: Vec<Field>,
}

/// A refused login (`WWW-Authenticate: Passport1.4 da-status=failed,...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub da_status: Option<String>,
    /// srealm, prompt, cburl, cbtxt, ...
    pub fields: Vec<Field>,
}

/// How a login request was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Success(Success),
    Failure(Failure),
    /// A 302 to another DALogin (`Location`, or `Authentication-Info: da-status=redir`).
    Redirect {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
    },
    /// Any other answer.
    Other {
        status: u16,
    },
}

/// One Passport 1.4 exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PassportExchange {
    /// `GET /rdr/pprdr.asp` and its `PassportURLs` (None when the answer had none).
    Nexus {
        target: String,
        ts: Ts,
        request_seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        urls: Option<PassportUrls>,
    },
    /// The DALogin request and, once seen, its answer.
    Login {
        target: String,
        ts: Ts,
        request_seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credentials: Option<Credentials>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<Outcome>,
    },
}

impl Redact for PassportExchange {
    /// Replaces the password and the ticket by `<redacted>`.
    fn redact(&mut self) -> bool {
        let mut changed = false;
        if let PassportExchange::Login {
            credentials,
            outcome,
            ..
        } = self
        {
            if let Some(c) = credentials {
                changed |= super::redact_opt(&mut c.password);
            }
            if let Some(Outcome::Success(s)) = outcome {
                changed |= super::redact_opt(&mut s.ticket);
            }
        }
        changed
    }
}

/// Splits `Passport1.4 a=b,c='d,e',f=g` into fields; the scheme is dropped. Quoted values
/// (single or double quotes) may hold commas.
pub fn parse_fields(v: &str) -> Vec<Field> {
    let v = v.trim();
    let v = match v.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.to_ascii_lowercase().starts_with("passport") => rest,
        _ => v,
    };
    let mut out = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = v[ks..i].trim().to_string();
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            if i < b.len() && (b[i] == b'\'' || b[i] == b'"') {
                let q = b[i];
                let vs = i + 1;
                let ve = b[vs..]
                    .iter()
                    .position(|&c| c == q)
                    .map_or(b.len(), |p| vs + p);
                value = v[vs..ve].to_string();
                i = (ve + 1).min(b.len());
            } else {
                let vs = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                value = v[vs..i].trim().to_string();
            }
        }
        if !key.is_empty() {
            out.push(Field { key, value });
        }
    }
    out
}

fn take(fields: &mut Vec<Field>, key: &str) -> Option<String> {
    let i = fields
        .iter()
        .position(|f| f.key.eq_ignore_ascii_case(key))?;
    Some(fields.remove(i).value)
}

/// Reads a `PassportURLs` header value.
pub fn parse_passport_urls(v: &str) -> PassportUrls {
    let fields = parse_fields(v);
    let da_login = fields
        .iter()
        .find(|f| f.key.eq_ignore_ascii_case("DALogin"))
        .map(|f| f.value.clone());
    PassportUrls { da_login, fields }
}

/// Reads an `Authorization: Passport1.4 ...` value; None for another scheme.
pub fn parse_credentials(v: &str) -> Option<Credentials> {
    if !v
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("passport1.4")
    {
        return None;
    }
    let mut fields = parse_fields(v);
    Some(Credentials {
        org_verb: take(&mut fields, "OrgVerb"),
        org_url: take(&mut fields, "OrgURL").map(|u| percent_decode(&u)),
        sign_in: take(&mut fields, "sign-in").map(|u| percent_decode(&u)),
        password: take(&mut fields, "pwd").map(|p| Secret::new(percent_decode(&p))),
        challenge: fields,
    })
}

/// Reads the answer to a login request.
pub fn parse_outcome(r: &Response) -> Outcome {
    let status = r.head.status;
    if let Some(ai) = r.header("authentication-info") {
        let mut fields = parse_fields(ai);
        let da_status = take(&mut fields, "da-status").unwrap_or_default();
        if da_status.eq_ignore_ascii_case("redir") || (300..400).contains(&status) {
            return Outcome::Redirect {
                status,
                location: r.header("location").map(str::to_string),
            };
        }
        if status == 200 || da_status.eq_ignore_ascii_case("success") {
            return Outcome::Success(Success {
                da_status,
                ticket: take(&mut fields, "from-PP").map(Secret::new),
                fields,
            });
        }
    }
    if (300..400).contains(&status) {
        return Outcome::Redirect {
            status,
            location: r.header("location").map(str::to_string),
        };
    }
    if let Some(wa) = r.header("www-authenticate") {
        let mut fields = parse_fields(wa);
        return Outcome::Failure(Failure {
            status,
            da_status: take(&mut fields, "da-status"),
            fields,
        });
    }
    if status == 401 || status == 403 {
        return Outcome::Failure(Failure {
            status,
            da_status: None,
            fields: Vec::new(),
        });
    }
    Outcome::Other { status }
}

/// Is this request (or its answer) part of Passport 1.4?
pub fn is_passport(req: &Request, resp: Option<&Response>) -> bool {
    let p = target_path(&req.head.target).to_ascii_lowercase();
    p.ends_with("/rdr/pprdr.asp")
        || p.ends_with("/nexus-mock")
        || p.ends_with("/login2.srf")
        || req.header("authorization").is_some_and(|a| {
            a.trim_start()
                .to_ascii_lowercase()
                .starts_with("passport1.4")
        })
        || resp.is_some_and(|r| {
            r.header("passporturls").is_some()
                || r.header("authentication-info")
                    .is_some_and(|a| a.to_ascii_lowercase().starts_with("passport1.4"))
        })
}

/// Reads one request (and its answer, when seen) as a Passport 1.4 exchange.
pub fn parse_exchange(req: &Request, resp: Option<&Response>) -> Option<PassportExchange> {
    if !is_passport(req, resp) {
        return None;
    }
    let credentials = req.header("authorization").and_then(parse_credentials);
    let nexus_answer = resp.and_then(|r| r.header("passporturls"));
    if credentials.is_none()
        && (nexus_answer.is_some()
            || !target_path(&req.head.target)
                .to_ascii_lowercase()
                .contains("login"))
    {
        return Some(PassportExchange::Nexus {
            target: req.head.target.clone(),
            ts: req.ts,
            request_seq: req.seq,
            status: resp.map(|r| r.head.status),
            urls: nexus_answer.map(parse_passport_urls),
        });
    }
    Some(PassportExchange::Login {
        target: req.head.target.clone(),
        ts: req.ts,
        request_seq: req.seq,
        credentials,
        outcome: resp.map(parse_outcome),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Dir;
    use crate::http::stream::{HttpItem, HttpStream};

    fn exchange(req: &[u8], resp: &[u8]) -> (Request, Response) {
        let mut s = HttpStream::default();
        let mut out = Vec::new();
        s.feed(Dir::C2s, req, Ts(0), &mut out);
        s.feed(Dir::S2c, resp, Ts(1), &mut out);
        s.finish(Ts(2), &mut out);
        let mut rq = None;
        let mut rs = None;
        for i in out {
            match i {
                HttpItem::Request(r) => rq = Some(r),
                HttpItem::Response(r) => rs = Some(r),
                _ => {}
            }
        }
        (rq.unwrap(), rs.unwrap())
    }

    #[test]
    fn nexus() {
        let (q, r) = exchange(
            b"GET /rdr/pprdr.asp HTTP/1.1\r\nHost: nexus.passport.com\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nPassportURLs: DARealm=Passport.Net,DALogin=login.passport.com/login2.srf,DAReg=http://x/y,Properties=https://a/b\r\nContent-Length: 0\r\n\r\n",
        );
        let Some(PassportExchange::Nexus {
            urls: Some(u),
            status: Some(200),
            ..
        }) = parse_exchange(&q, Some(&r))
        else {
            panic!()
        };
        assert_eq!(u.da_login.as_deref(), Some("login.passport.com/login2.srf"));
        assert_eq!(u.fields.len(), 4);
    }

    #[test]
    fn login_success_and_redaction() {
        let (q, r) = exchange(
            b"GET /login2.srf HTTP/1.1\r\nAuthorization: Passport1.4 OrgVerb=GET,OrgURL=http%3A%2F%2Fmessenger%2Emsn%2Ecom,sign-in=a%40b.com,pwd=p%2Cw%25d,lc=1033,id=507,tw=40,fs=1,ru=http%3A%2F%2Fmessenger%2Emsn%2Ecom,ct=1062764229,kpp=1,kv=5,ver=2.1.0173.1,tpf=43f8a4c8ed940c04e3740be46c4d1619\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nAuthentication-Info: Passport1.4 da-status=success,tname=MSPAuth,tname=MSPProf,tname=MSPSec,from-PP='t=53*1hAu8ADuD3TEwdXoOMi08sD*2!cMrntTwVMTjoB3p6stWTqzbkKZPVQzA5NOt19SLI60PY!b8K4YhC!Ooo5ug$$&p=5eKBBC!yBH6ex5mftp!a9DrSb0B3hU8aqAWpaPn07iCGBw5akemiWSd7t2ot!okPvIR!Wqk!MKvi1IMpxfhkao9wpxlMWYAZ!DqRfACmyQGG112Bp9xrk04!BVBUa9*H9mJLoWw39m63YQRE1yHnYNv08nyz43D3OnMcaCoeSaEHVM7LpR*LWDme29qq2X3j8N',ru=http://messenger.msn.com\r\nContent-Length: 0\r\n\r\n",
        );
        let mut ex = parse_exchange(&q, Some(&r)).unwrap();
        let PassportExchange::Login {
            credentials: Some(c),
            outcome: Some(Outcome::Success(s)),
            ..
        } = &ex
        else {
            panic!("{ex:?}")
        };
        assert_eq!(c.sign_in.as_deref(), Some("a@b.com"));
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("p,w%d"));
        assert_eq!(c.org_url.as_deref(), Some("http://messenger.msn.com"));
        assert_eq!(
            c.challenge[0],
            Field {
                key: "lc".into(),
                value: "1033".into()
            }
        );
        assert!(s
            .ticket
            .as_ref()
            .unwrap()
            .expose()
            .starts_with("t=53*1hAu8"));
        assert_eq!(s.fields.last().unwrap().value, "http://messenger.msn.com");
        ex.redact();
        let j = serde_json::to_string(&ex).unwrap();
        assert!(
            !j.contains("p,w%d") && !j.contains("53*1hAu8") && j.contains("a@b.com"),
            "{j}"
        );
    }

    #[test]
    fn login_failure() {
        let (q, r) = exchange(
            b"GET /login HTTP/1.1\r\nAuthorization: Passport1.4 OrgVerb=GET,sign-in=a,pwd=wrong\r\n\r\n",
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Passport1.4 da-status=failed,srealm=Passport.NET,ts=-3,prompt,cburl=http://x,cbtxt=Help\r\nContent-Length: 0\r\n\r\n",
        );
        let Some(PassportExchange::Login {
            outcome: Some(Outcome::Failure(f)),
            ..
        }) = parse_exchange(&q, Some(&r))
        else {
            panic!()
        };
        assert_eq!((f.status, f.da_status.as_deref()), (401, Some("failed")));
        assert!(f.fields.iter().any(|x| x.key == "prompt"));
    }

    #[test]
    fn fields_edge_cases() {
        assert!(parse_fields("").is_empty());
        assert_eq!(
            parse_fields("Passport1.4 a='x,y"),
            vec![Field {
                key: "a".into(),
                value: "x,y".into()
            }]
        );
        assert_eq!(
            parse_fields("=,,=x,k"),
            vec![Field {
                key: "k".into(),
                value: String::new()
            }]
        );
        assert!(parse_credentials("Basic abc").is_none());
    }
}
