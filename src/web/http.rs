//! Just enough HTTP/1.1 for one page on loopback: parsing a GET request head (bounded),
//! URL query decoding, and writing responses. Sans-IO; it never reads a request body.

use std::fmt::Write;

/// Largest request head accepted.
pub const MAX_HEAD: usize = 16 << 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request bodies are not accepted")]
    Body,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::TooLarge => 431,
            HttpError::Malformed(_) => 400,
            HttpError::Body => 413,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, percent-decoded.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub host: Option<String>,
    /// The client asked to close after this request (or spoke HTTP/1.0).
    pub close: bool,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decoding (and `+` as space when `plus`); invalid escapes stay as written.
pub fn percent_decode(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=x%20y` -> pairs.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .take(64)
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(p, true), String::new()),
        })
        .collect()
}

/// Parses a request head from the start of `buf`: Ok(None) while it is incomplete,
/// else the request and the bytes it took.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(HttpError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD {
        return Err(HttpError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Malformed("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let first = lines.next().ok_or(HttpError::Malformed("empty"))?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("version"));
    }
    if !target.starts_with('/') {
        return Err(HttpError::Malformed("target"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let mut req = Request {
        method: method.to_string(),
        path: percent_decode(path, false),
        query: parse_query(query),
        host: None,
        close: version == "HTTP/1.0",
    };
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            return Err(HttpError::Malformed("header"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "host" => req.host = Some(value.to_string()),
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    req.close = true;
                } else if v.contains("keep-alive") {
                    req.close = false;
                }
            }
            "content-length" if value != "0" => return Err(HttpError::Body),
            "transfer-encoding" => return Err(HttpError::Body),
            _ => {}
        }
    }
    Ok(Some((req, end + 4)))
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The page's content security policy: nothing but this server, no inline script.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A whole response with its body.
pub fn response(status: u16, content_type: &str, body: &[u8], close: bool) -> Vec<u8> {
    let mut h = String::with_capacity(256);
    let _ = write!(
        h,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nContent-Security-Policy: {CSP}\r\nConnection: {}\r\n\r\n",
        reason(status),
        body.len(),
        if close { "close" } else { "keep-alive" }
    );
    let mut out = h.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The head of a server-sent events stream (no length: it lasts).
pub fn sse_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nretry: 1000\n\n"
        .to_vec()
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_get_with_query_and_keeps_the_rest() {
        let raw = b"GET /api/rows?only=MSG%2CUSR&q=hello+bob HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\nGET /next";
        let (r, n) = parse_head(raw).unwrap().unwrap();
        assert_eq!(r.path, "/api/rows");
        assert_eq!(r.param("only"), Some("MSG,USR"));
        assert_eq!(r.param("q"), Some("hello bob"));
        assert_eq!(r.host.as_deref(), Some("127.0.0.1:8080"));
        assert!(!r.close);
        assert_eq!(&raw[n..], b"GET /next");
    }

    #[test]
    fn incomplete_oversized_and_hostile_heads() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let big = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(parse_head(&big), Err(HttpError::TooLarge));
        assert!(parse_head(b"GET  HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_head(b"GET http://x/ HTTP/1.1\r\n\r\n").is_err());
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
            Err(HttpError::Body)
        );
        assert!(parse_head(b"GET / HTTP/1.1\r\nnocolon\r\n\r\n").is_err());
        assert!(parse_head(b"GET / HTTP/2\r\n\r\n").is_err());
        assert!(parse_head(b"GET /\xff HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a%20b%zz%", false), "a b%zz%");
        assert_eq!(percent_decode("%e2%9c%93+", true), "\u{2713} ");
        assert_eq!(percent_decode("%4", false), "%4");
        assert_eq!(percent_decode("%ff", false), "\u{fffd}");
    }
}
