//! Does a TCP stream carry MSN's HTTP side, whatever its port? Judged from content only:
//! the gateway (`gateway.dll`, `application/x-msn-messenger`, `X-MSN-Messenger`), the
//! Passport and SOAP service paths and headers. Looks at a bounded prefix of the streams;
//! it decodes nothing and keeps nothing.

use serde::{Deserialize, Serialize};

use super::stream::{parse_request_head, parse_response_head, Parsed, RequestHead, ResponseHead};
use super::{find_ci, header, target_path, Header};

/// Which part of MSN's HTTP side a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MsnHttp {
    /// gateway.dll: MSNP inside HTTP.
    Gateway,
    /// Passport 1.4: nexus and DALogin.
    Passport,
    /// RST/RST2 SSO.
    SecurityToken,
    /// ABService, SharingService, StorageService, OIM, RSI.
    Soap,
    /// MsgrConfig, tabs, text ads and other client configuration.
    Config,
}

/// What the start of a connection says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "kind", rename_all = "snake_case")]
pub enum Detection {
    /// Not HTTP (or not from the start of the stream).
    NotHttp,
    /// Too few bytes yet.
    NeedMore,
    /// HTTP, and MSN's when `Some`.
    Http(Option<MsnHttp>),
}

/// How much of a stream is looked at before deciding.
pub const MAX_PREFIX: usize = 16 * 1024;

const PATHS: &[(&str, MsnHttp)] = &[
    ("gateway.dll", MsnHttp::Gateway),
    ("/rdr/pprdr.asp", MsnHttp::Passport),
    ("/nexus-mock", MsnHttp::Passport),
    ("/login2.srf", MsnHttp::Passport),
    ("/ppsecure/sha1auth.srf", MsnHttp::Passport),
    ("/rst.srf", MsnHttp::SecurityToken),
    ("/rst2.srf", MsnHttp::SecurityToken),
    ("/notrst.srf", MsnHttp::SecurityToken),
    ("/abservice/abservice.asmx", MsnHttp::Soap),
    ("/abservice/sharingservice.asmx", MsnHttp::Soap),
    ("/storageservice/schematizedstore.asmx", MsnHttp::Soap),
    ("/oimws/oim.asmx", MsnHttp::Soap),
    ("/rsi/rsi.asmx", MsnHttp::Soap),
    ("/config/msgrconfig.asmx", MsnHttp::Config),
    ("/etc/msgrconfig", MsnHttp::Config),
    ("/svcs/mms/tabs.asp", MsnHttp::Config),
    ("/etc/text-ad-service", MsnHttp::Config),
];

const SOAP_NAMESPACES: &[&str] = &[
    "msn.com/webservices",
    "messenger.msn.com/ws/",
    "messenger.live.com/ws/",
    "hotmail.msn.com/ws/",
];

/// Which part of MSN a request path is, when it is one of the endpoints this module
/// knows (case-insensitive; origin or absolute form, query cut off).
pub fn endpoint(target: &str) -> Option<MsnHttp> {
    let path = target_path(target).to_ascii_lowercase();
    PATHS
        .iter()
        .find(|(p, _)| path.ends_with(p))
        .map(|(_, k)| *k)
}

/// Classifies a request head.
pub fn classify_request(h: &RequestHead) -> Option<MsnHttp> {
    let path = target_path(&h.target).to_ascii_lowercase();
    if let Some((_, k)) = PATHS.iter().find(|(p, _)| path.ends_with(p)) {
        return Some(*k);
    }
    classify_headers(&h.headers).or_else(|| {
        header(&h.headers, "authorization")
            .filter(|a| {
                a.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("passport1.4")
            })
            .map(|_| MsnHttp::Passport)
    })
}

/// Classifies a response head.
pub fn classify_response(h: &ResponseHead) -> Option<MsnHttp> {
    if header(&h.headers, "x-msn-messenger").is_some() {
        return Some(MsnHttp::Gateway);
    }
    if header(&h.headers, "passporturls").is_some()
        || header(&h.headers, "authentication-info")
            .is_some_and(|a| a.to_ascii_lowercase().starts_with("passport1.4"))
    {
        return Some(MsnHttp::Passport);
    }
    classify_headers(&h.headers)
}

fn classify_headers(hs: &[Header]) -> Option<MsnHttp> {
    if header(hs, "content-type").is_some_and(super::gateway::is_gateway_content_type) {
        return Some(MsnHttp::Gateway);
    }
    if header(hs, "soapaction").is_some_and(|a| SOAP_NAMESPACES.iter().any(|n| a.contains(n))) {
        return Some(MsnHttp::Soap);
    }
    if header(hs, "user-agent").is_some_and(|u| u.trim() == "MSMSGS") {
        return Some(MsnHttp::Gateway);
    }
    None
}

/// Looks at the first bytes of each direction of a connection (from its start).
pub fn detect(c2s: &[u8], s2c: &[u8]) -> Detection {
    let c = &c2s[..c2s.len().min(MAX_PREFIX)];
    let s = &s2c[..s2c.len().min(MAX_PREFIX)];
    let req = head_of(c, true);
    let resp = head_of(s, false);
    // The client speaks first in HTTP: its bytes decide whether this is HTTP at all.
    if req == Head::No {
        return Detection::NotHttp;
    }
    let mut msn = None;
    let mut undecided = false;
    for (h, client) in [(&req, true), (&resp, false)] {
        match h {
            Head::Request(r) if client => msn = msn.or(classify_request(r)),
            Head::Response(r) if !client => msn = msn.or(classify_response(r)),
            // An answer not begun yet does not hold the decision up.
            Head::Partial if client || !s.is_empty() => undecided = true,
            _ => {}
        }
    }
    if msn.is_none() {
        // A head not complete yet, or one that says little: markers anywhere in what
        // has been seen still count.
        msn = markers(c).or_else(|| markers(s));
    }
    match (msn, undecided) {
        (Some(k), _) => Detection::Http(Some(k)),
        (None, true) if c.len() < MAX_PREFIX && s.len() < MAX_PREFIX => Detection::NeedMore,
        _ => Detection::Http(None),
    }
}

/// Searches a stream prefix (also one picked up mid-way) for MSN HTTP markers.
pub fn markers(b: &[u8]) -> Option<MsnHttp> {
    let b = &b[..b.len().min(MAX_PREFIX)];
    if find_ci(b, b"gateway.dll").is_some()
        || find_ci(b, b"application/x-msn-messenger").is_some()
        || find_ci(b, b"\nX-MSN-Messenger:").is_some()
    {
        return Some(MsnHttp::Gateway);
    }
    if find_ci(b, b"Passport1.4").is_some() || find_ci(b, b"\nPassportURLs:").is_some() {
        return Some(MsnHttp::Passport);
    }
    if find_ci(b, b"RequestMultipleSecurityTokens").is_some() || find_ci(b, b"/RST2.srf").is_some()
    {
        return Some(MsnHttp::SecurityToken);
    }
    if SOAP_NAMESPACES
        .iter()
        .any(|n| find_ci(b, n.as_bytes()).is_some())
    {
        return Some(MsnHttp::Soap);
    }
    None
}

#[derive(Debug, PartialEq)]
enum Head {
    No,
    Partial,
    Request(RequestHead),
    Response(ResponseHead),
}

fn head_of(b: &[u8], client: bool) -> Head {
    if b.is_empty() {
        return Head::Partial;
    }
    fn judge<T>(p: Parsed<T>, f: fn(T) -> Head) -> Head {
        match p {
            Parsed::Done(h) => f(h),
            // Too many headers for the probe is still HTTP.
            Parsed::Partial | Parsed::Bad(httparse::Error::TooManyHeaders) => Head::Partial,
            Parsed::Bad(_) => Head::No,
        }
    }
    if client {
        judge(parse_request_head(b, 64), Head::Request)
    } else {
        judge(parse_response_head(b, 64), Head::Response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_on_any_port() {
        let c = b"POST http://gateway.messenger.hotmail.com/gateway/gateway.dll?Action=open&Server=NS&IP=messenger.hotmail.com HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(detect(c, b""), Detection::Http(Some(MsnHttp::Gateway)));
        // By content type alone, on an unusual path.
        let c = b"POST /x HTTP/1.1\r\nContent-Type: application/x-msn-messenger\r\n\r\n";
        assert_eq!(detect(c, b""), Detection::Http(Some(MsnHttp::Gateway)));
        // By the answer.
        let s = b"HTTP/1.0 200 OK\r\nX-MSN-Messenger: SessionID=1; GW-IP=2\r\n\r\n";
        assert_eq!(
            detect(b"POST /x HTTP/1.0\r\n\r\n", s),
            Detection::Http(Some(MsnHttp::Gateway))
        );
    }

    #[test]
    fn services_and_others() {
        let cases: &[(&[u8], MsnHttp)] = &[
            (b"GET /rdr/pprdr.asp HTTP/1.1\r\n\r\n", MsnHttp::Passport),
            (b"GET /login HTTP/1.1\r\nAuthorization: Passport1.4 OrgVerb=GET\r\n\r\n", MsnHttp::Passport),
            (b"POST /RST2.srf HTTP/1.1\r\n\r\n", MsnHttp::SecurityToken),
            (b"POST /abservice/SharingService.asmx HTTP/1.1\r\n\r\n", MsnHttp::Soap),
            (b"POST /svc HTTP/1.1\r\nSOAPAction: \"http://www.msn.com/webservices/AddressBook/ABFindAll\"\r\n\r\n", MsnHttp::Soap),
            (b"GET /Config/MsgrConfig.asmx?ver=8.5 HTTP/1.1\r\n\r\n", MsnHttp::Config),
        ];
        for (c, k) in cases {
            assert_eq!(
                detect(c, b""),
                Detection::Http(Some(*k)),
                "{}",
                String::from_utf8_lossy(c)
            );
        }
        assert_eq!(
            detect(b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n", b""),
            Detection::Http(None)
        );
        assert_eq!(
            detect(b"VER 1 MSNP8 CVR0\r\n", b"VER 1 MSNP8\r\n"),
            Detection::NotHttp
        );
        assert_eq!(detect(b"\x16\x03\x01\x00", b""), Detection::NotHttp);
        assert_eq!(detect(b"POST /gate", b""), Detection::NeedMore);
        // A partial head that already names the gateway is enough.
        assert_eq!(
            detect(b"POST /gateway/gateway.dll?Action=po", b""),
            Detection::Http(Some(MsnHttp::Gateway))
        );
    }

    #[test]
    fn markers_mid_stream() {
        assert_eq!(
            markers(b"...body...\r\nPOST /gateway/gateway.dll?SessionID=1 HTTP/1.1"),
            Some(MsnHttp::Gateway)
        );
        assert_eq!(
            markers(b"<soap:Envelope xmlns=\"http://www.msn.com/webservices/AddressBook\">"),
            Some(MsnHttp::Soap)
        );
        assert_eq!(markers(b"nothing here"), None);
    }
}
