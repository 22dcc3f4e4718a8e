//! Sans-IO pieces of the HTTP forward proxy: request and response heads (httparse), the
//! request target (absolute form, authority, origin form) and its origin-form rewrite,
//! `--map` host patterns, and a body framer that says how many of the bytes at hand belong
//! to the current body (Content-Length, chunked with trailers) without buffering it. It
//! never does I/O and never allocates beyond one chunk-size or trailer line (bounded).

use std::ops::Range;

/// Longest request or response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line, and longest trailer section.
const MAX_CHUNK_LINE: usize = 1024;
const MAX_TRAILERS: usize = MAX_HEAD;

/// Where a head ends (the index after its blank line), if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let at = i + p;
        let rest = &buf[at + 1..];
        if rest.starts_with(b"\n") {
            return Some(at + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(at + 3);
        }
        i = at + 1;
    }
    None
}

/// A parsed request head; `len` bytes of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReqHead {
    pub method: String,
    pub target: String,
    /// Minor version: 0 or 1.
    pub version: u8,
    /// Where the target stands in the head bytes.
    pub target_span: Range<usize>,
    pub headers: Vec<(String, String)>,
    pub len: usize,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespHead {
    pub status: u16,
    pub reason: String,
    pub version: u8,
    pub headers: Vec<(String, String)>,
    pub len: usize,
}

fn fields(hs: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    hs.iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// Parses a complete request head (`buf` holds at least [`head_end`] bytes).
pub fn parse_request(buf: &[u8]) -> Result<ReqHead, String> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut hs);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the request head is incomplete".into()),
        Err(e) => return Err(format!("bad request head: {e}")),
    };
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("").to_string();
    // The target's place in the raw bytes: the first token after the method.
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end];
    let start = line
        .iter()
        .position(|&b| b == b' ')
        .map(|p| p + line[p..].iter().take_while(|&&b| b == b' ').count())
        .ok_or("no request target")?;
    let end = start
        + line[start..]
            .iter()
            .position(|&b| b == b' ')
            .ok_or("no HTTP version")?;
    if &line[start..end] != target.as_bytes() {
        return Err("the request target could not be located".into());
    }
    Ok(ReqHead {
        method,
        target,
        version: req.version.unwrap_or(1),
        target_span: start..end,
        headers: fields(req.headers),
        len,
    })
}

/// Parses a complete response head.
pub fn parse_response(buf: &[u8]) -> Result<RespHead, String> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut hs);
    let mut cfg = httparse::ParserConfig::default();
    cfg.allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true);
    let len = match cfg.parse_response(&mut res, buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the response head is incomplete".into()),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    Ok(RespHead {
        status: res.code.unwrap_or(0),
        reason: res.reason.unwrap_or("").to_string(),
        version: res.version.unwrap_or(1),
        headers: fields(res.headers),
        len,
    })
}

/// The first value of header `name`.
pub fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Does any `name` header list `token` (comma-separated, case-insensitive)?
pub fn has_token(hs: &[(String, String)], name: &str, token: &str) -> bool {
    hs.iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// How a body's end is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// To the end of the stream (responses only).
    Close,
}

fn content_length(hs: &[(String, String)]) -> Result<Option<u64>, String> {
    let mut found = None;
    for (_, v) in hs
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        for p in v.split(',').map(str::trim) {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("bad Content-Length {v:?}"));
            }
            let n: u64 = p
                .parse()
                .map_err(|_| format!("Content-Length {p} too large"))?;
            if found.is_some_and(|f| f != n) {
                return Err("conflicting Content-Length values".into());
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn chunked_last(hs: &[(String, String)]) -> Option<bool> {
    let te = hs
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>();
    if te.is_empty() {
        return None;
    }
    let all = te.join(",");
    Some(
        all.rsplit(',')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked")),
    )
}

/// A request's body framing (RFC 9112 6.3): chunked, Content-Length, or none.
pub fn request_framing(h: &ReqHead) -> Result<Framing, String> {
    match chunked_last(&h.headers) {
        Some(true) => Ok(Framing::Chunked),
        Some(false) => Err("a request Transfer-Encoding that does not end in chunked".into()),
        None => Ok(content_length(&h.headers)?.map_or(Framing::None, Framing::Length)),
    }
}

/// A final response's body framing, given the request method.
pub fn response_framing(h: &RespHead, method: &str) -> Result<Framing, String> {
    if method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&h.status)
        || h.status == 204
        || h.status == 304
    {
        return Ok(Framing::None);
    }
    match chunked_last(&h.headers) {
        Some(true) => Ok(Framing::Chunked),
        Some(false) => Ok(Framing::Close),
        None => Ok(content_length(&h.headers)?.map_or(Framing::Close, Framing::Length)),
    }
}

/// Will the server close the connection after this response?
pub fn response_closes(h: &RespHead) -> bool {
    if has_token(&h.headers, "connection", "close") {
        return true;
    }
    h.version == 0
        && !has_token(&h.headers, "connection", "keep-alive")
        && !has_token(&h.headers, "proxy-connection", "keep-alive")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Length(u64),
    /// Reading a chunk-size line (bytes of it seen so far).
    Size(usize),
    Data(u64),
    /// The CRLF after a chunk's data: which of its two bytes comes next.
    DataEnd(u8),
    /// Trailer section: bytes seen, bytes of the current line.
    Trailer(usize, usize),
    Close,
    Done,
}

/// Finds where a body ends in the bytes as they come, passing them through untouched.
#[derive(Debug, Clone)]
pub struct BodyFramer {
    st: St,
    line: Vec<u8>,
    /// Body bytes passed so far (framing included).
    pub wire: u64,
}

impl BodyFramer {
    pub fn new(f: Framing) -> BodyFramer {
        let st = match f {
            Framing::None | Framing::Length(0) => St::Done,
            Framing::Length(n) => St::Length(n),
            Framing::Chunked => St::Size(0),
            Framing::Close => St::Close,
        };
        BodyFramer {
            st,
            line: Vec::new(),
            wire: 0,
        }
    }

    pub fn done(&self) -> bool {
        self.st == St::Done
    }

    /// Runs to the end of the stream.
    pub fn close_delimited(&self) -> bool {
        self.st == St::Close
    }

    /// How many bytes at the start of `buf` belong to the body (all of them, or up to its
    /// end); an error for a chunked encoding that cannot be followed.
    pub fn take(&mut self, buf: &[u8]) -> Result<usize, String> {
        let mut i = 0;
        while i < buf.len() {
            match self.st {
                St::Done => break,
                St::Close => i = buf.len(),
                St::Length(n) => {
                    let k = (n.min((buf.len() - i) as u64)) as usize;
                    i += k;
                    self.st = if n == k as u64 {
                        St::Done
                    } else {
                        St::Length(n - k as u64)
                    };
                }
                St::Data(n) => {
                    let k = (n.min((buf.len() - i) as u64)) as usize;
                    i += k;
                    self.st = if n == k as u64 {
                        St::DataEnd(0)
                    } else {
                        St::Data(n - k as u64)
                    };
                }
                St::DataEnd(k) => {
                    let want = if k == 0 { b'\r' } else { b'\n' };
                    match buf[i] {
                        b if b == want => {
                            i += 1;
                            self.st = if k == 0 { St::DataEnd(1) } else { St::Size(0) };
                        }
                        // A bare LF after the data: lenient, as most servers are.
                        b'\n' if k == 0 => {
                            i += 1;
                            self.st = St::Size(0);
                        }
                        _ => return Err("a chunk's data is not followed by CRLF".into()),
                    }
                }
                St::Size(seen) => {
                    let b = buf[i];
                    i += 1;
                    self.line.push(b);
                    if b != b'\n' {
                        if seen + 1 > MAX_CHUNK_LINE {
                            return Err("a chunk-size line longer than 1 KiB".into());
                        }
                        self.st = St::Size(seen + 1);
                        continue;
                    }
                    let n = match httparse::parse_chunk_size(&self.line) {
                        Ok(httparse::Status::Complete((_, n))) => n,
                        _ => {
                            let l = String::from_utf8_lossy(&self.line[..self.line.len().min(40)])
                                .into_owned();
                            return Err(format!("bad chunk-size line {l:?}"));
                        }
                    };
                    self.line.clear();
                    self.st = if n == 0 {
                        St::Trailer(0, 0)
                    } else {
                        St::Data(n)
                    };
                }
                St::Trailer(total, cur) => {
                    let b = buf[i];
                    i += 1;
                    if total + 1 > MAX_TRAILERS {
                        return Err("a chunked trailer section longer than 64 KiB".into());
                    }
                    self.st = match b {
                        b'\n' if cur == 0 => St::Done,
                        b'\n' => St::Trailer(total + 1, 0),
                        // The CR of a line ending does not make the line non-empty.
                        b'\r' => St::Trailer(total + 1, cur),
                        _ => St::Trailer(total + 1, cur + 1),
                    };
                }
            }
        }
        self.wire += i as u64;
        Ok(i)
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// The origin-form target for the upstream (`/path?query`), None for CONNECT.
    pub origin: Option<String>,
}

/// Splits `host[:port]` (IPv6 in brackets).
pub fn split_authority(a: &str, default_port: u16) -> Result<(String, u16), String> {
    let a = a.rsplit_once('@').map_or(a, |(_, h)| h);
    if let Some(rest) = a.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad host {a:?}"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port in {a:?}"))?,
            None if tail.is_empty() => default_port,
            None => return Err(format!("bad host {a:?}")),
        };
        return Ok((format!("[{h}]"), port));
    }
    let (h, port) = match a.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port in {a:?}"))?),
        None => (a, default_port),
    };
    if h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return Err(format!("bad host {a:?}"));
    }
    Ok((h.to_ascii_lowercase(), port))
}

/// The destination of a request: CONNECT's authority, an `http://` absolute URL, or an
/// origin-form target with its Host header.
pub fn target_of(h: &ReqHead) -> Result<Target, String> {
    if h.method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_authority(&h.target, 443)?;
        return Ok(Target {
            host,
            port,
            origin: None,
        });
    }
    let t = h.target.as_str();
    let lower = t.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    if lower.starts_with("http://") {
        let rest = &t[7..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (host, port) = split_authority(&rest[..end], 80)?;
        let path = &rest[end..];
        let origin = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        return Ok(Target {
            host,
            port,
            origin: Some(origin),
        });
    }
    if lower.starts_with("https://") {
        return Err("an https:// URL must come through CONNECT".into());
    }
    if t.starts_with('/') {
        let host = header(&h.headers, "host").ok_or("an origin-form target without a Host")?;
        let (host, port) = split_authority(host.trim(), 80)?;
        return Ok(Target {
            host,
            port,
            origin: Some(t.to_string()),
        });
    }
    Err(format!("unsupported request target {:?}", short(t)))
}

/// At most 80 characters of `s`, for messages.
pub fn short(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The head with its target replaced by `origin` (everything else byte for byte).
pub fn rewrite_target(head: &[u8], span: Range<usize>, origin: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len());
    out.extend_from_slice(&head[..span.start]);
    out.extend_from_slice(origin.as_bytes());
    out.extend_from_slice(&head[span.end..]);
    out
}

/// One `--map HOST=ADDR`: an exact host or `*.suffix`, and `host:port` or `host`
/// (keeping the request's port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMap {
    pub pattern: String,
    pub host: String,
    pub port: Option<u16>,
}

impl HostMap {
    pub fn parse(s: &str) -> Result<HostMap, String> {
        let (p, a) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: give HOST=ADDR"))?;
        let p = p.trim().to_ascii_lowercase();
        let name = p.strip_prefix("*.").unwrap_or(&p);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(format!("{s:?}: the host must be a name or *.domain"));
        }
        let a = a.trim();
        let bare_v6 = a.starts_with('[') && a.ends_with(']');
        let (host, port) = if bare_v6 || !a.contains(':') {
            (split_authority(a, 0)?.0, None)
        } else {
            let (h, p) = split_authority(a, 0)?;
            (h, Some(p))
        };
        Ok(HostMap {
            pattern: p,
            host,
            port,
        })
    }

    fn matches(&self, host: &str) -> Option<usize> {
        match self.pattern.strip_prefix("*.") {
            Some(sfx) => (host.len() > sfx.len()
                && host.ends_with(sfx)
                && host.as_bytes()[host.len() - sfx.len() - 1] == b'.')
                .then_some(sfx.len()),
            None => (host == self.pattern).then_some(usize::MAX),
        }
    }
}

/// Where to connect for `host:port`: the exact mapping, else the longest wildcard, else
/// the host itself. Also says whether a mapping applied.
pub fn resolve_map(maps: &[HostMap], host: &str, port: u16) -> (String, bool) {
    let host = host.to_ascii_lowercase();
    let best = maps
        .iter()
        .filter_map(|m| m.matches(&host).map(|k| (k, m)))
        .max_by_key(|(k, _)| *k);
    match best {
        Some((_, m)) => (format!("{}:{}", m.host, m.port.unwrap_or(port)), true),
        None => (format!("{host}:{port}"), false),
    }
}

/// The URL for a log line: query values other than the gateway's plain parameters are
/// hidden (a query may carry a ticket).
pub fn loggable_url(url: &str) -> String {
    const PLAIN: [&str; 7] = [
        "action",
        "server",
        "ip",
        "sessionid",
        "lifespan",
        "ver",
        "lc",
    ];
    let Some((base, q)) = url.split_once('?') else {
        return short_owned(url, 300);
    };
    let q: Vec<String> = q
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if PLAIN.contains(&k.to_ascii_lowercase().as_str()) => {
                format!("{k}={v}")
            }
            Some((k, _)) => format!("{k}={}", crate::secret::REDACTED),
            None => kv.to_string(),
        })
        .collect();
    short_owned(&format!("{base}?{}", q.join("&")), 300)
}

fn short_owned(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> ReqHead {
        parse_request(s.as_bytes()).expect("request")
    }

    #[test]
    fn heads_end_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nxyz"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\nx"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    #[test]
    fn absolute_targets_are_rewritten_to_origin_form_and_nothing_else() {
        let raw = "POST http://gateway.messenger.hotmail.com/gateway/gateway.dll?Action=open&Server=NS&IP=messenger.hotmail.com HTTP/1.1\r\nHost: gateway.messenger.hotmail.com\r\nProxy-Connection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
        let h = req(raw);
        let t = target_of(&h).expect("target");
        assert_eq!(
            (t.host.as_str(), t.port),
            ("gateway.messenger.hotmail.com", 80)
        );
        let out = rewrite_target(
            raw.as_bytes(),
            h.target_span.clone(),
            t.origin.as_deref().expect("origin"),
        );
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            raw.replace("http://gateway.messenger.hotmail.com", "")
        );
        let h = req("GET http://Example.COM:8080?x=1 HTTP/1.0\r\n\r\n");
        let t = target_of(&h).expect("target");
        assert_eq!(
            (t.host.as_str(), t.port, t.origin.as_deref()),
            ("example.com", 8080, Some("/?x=1"))
        );
        let h = req("CONNECT login.live.com:443 HTTP/1.1\r\nHost: login.live.com:443\r\n\r\n");
        let t = target_of(&h).expect("target");
        assert_eq!(
            (t.host.as_str(), t.port, t.origin),
            ("login.live.com", 443, None)
        );
        assert!(target_of(&req("GET https://x/ HTTP/1.1\r\n\r\n")).is_err());
        assert!(target_of(&req("GET / HTTP/1.1\r\n\r\n")).is_err());
        assert!(parse_request(b"GET http://a b/ HTTP/1.1\r\n\r\n").is_err());
        assert!(target_of(&req("GET http://a%62/ HTTP/1.1\r\n\r\n")).is_err());
        assert!(target_of(&req("CONNECT [::1]:x HTTP/1.1\r\n\r\n")).is_err());
        let t = target_of(&req("CONNECT [::1]:99 HTTP/1.1\r\n\r\n")).expect("v6");
        assert_eq!((t.host.as_str(), t.port), ("[::1]", 99));
    }

    #[test]
    fn maps_exact_before_wildcards_and_keep_the_port_when_told() {
        let maps: Vec<HostMap> = [
            "*.hotmail.com=127.0.0.1:8080",
            "gateway.messenger.hotmail.com=127.0.0.2:9000",
            "*.messenger.hotmail.com=127.0.0.3",
        ]
        .iter()
        .map(|s| HostMap::parse(s).expect("map"))
        .collect();
        let r = |h: &str, p| resolve_map(&maps, h, p);
        assert_eq!(
            r("gateway.messenger.hotmail.com", 80),
            ("127.0.0.2:9000".into(), true)
        );
        assert_eq!(
            r("x.messenger.hotmail.com", 80),
            ("127.0.0.3:80".into(), true)
        );
        assert_eq!(r("rsi.HOTMAIL.com", 80), ("127.0.0.1:8080".into(), true));
        assert_eq!(r("hotmail.com", 80), ("hotmail.com:80".into(), false));
        assert_eq!(r("nothotmail.com", 80), ("nothotmail.com:80".into(), false));
        assert!(HostMap::parse("nohost").is_err());
        assert!(HostMap::parse("a b=1.2.3.4").is_err());
        assert!(HostMap::parse("a=1.2.3.4:x").is_err());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let r = |s: &str| parse_response(s.as_bytes()).expect("response");
        let resp = r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(response_framing(&resp, "GET"), Ok(Framing::Length(5)));
        assert_eq!(response_framing(&resp, "HEAD"), Ok(Framing::None));
        let resp = r("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(response_framing(&resp, "GET"), Ok(Framing::None));
        let resp = r("HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!(response_framing(&resp, "POST"), Ok(Framing::Close));
        assert!(response_closes(&resp));
        let resp =
            r("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(response_framing(&resp, "POST"), Ok(Framing::Chunked));
        assert!(!response_closes(&resp));
        let resp = r("HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n");
        assert!(response_framing(&resp, "POST").is_err());
        assert_eq!(
            request_framing(&req("POST / HTTP/1.1\r\nContent-Length: 7\r\n\r\n")),
            Ok(Framing::Length(7))
        );
        assert_eq!(
            request_framing(&req("GET / HTTP/1.1\r\n\r\n")),
            Ok(Framing::None)
        );
        assert!(
            request_framing(&req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n")).is_err()
        );
    }

    /// Feeds `body` then `next` in pieces of `step` bytes; returns the bytes taken.
    fn frame(f: Framing, wire: &[u8], step: usize) -> Result<usize, String> {
        let mut fr = BodyFramer::new(f);
        let mut at = 0;
        while at < wire.len() && !fr.done() {
            let end = (at + step).min(wire.len());
            at += fr.take(&wire[at..end])?;
            if !fr.done() && at < end {
                return Err("stopped early".into());
            }
        }
        Ok(at)
    }

    #[test]
    fn chunked_bodies_end_exactly_whatever_the_split() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        let mut wire = body.to_vec();
        wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for step in 1..=wire.len() {
            assert_eq!(
                frame(Framing::Chunked, &wire, step),
                Ok(body.len()),
                "{step}"
            );
        }
        let plain = b"3\r\nabc\r\n0\r\n\r\nNEXT";
        assert_eq!(frame(Framing::Chunked, plain, 2), Ok(plain.len() - 4));
        assert_eq!(frame(Framing::Length(4), b"abcdefg", 3), Ok(4));
        assert_eq!(frame(Framing::None, b"abc", 3), Ok(0));
        assert!(frame(Framing::Chunked, b"zz\r\n", 4).is_err());
        assert!(frame(Framing::Chunked, b"3\r\nabcX", 7).is_err());
        let long = vec![b'1'; 2000];
        assert!(frame(Framing::Chunked, &long, 2000).is_err());
        let mut fr = BodyFramer::new(Framing::Close);
        assert_eq!(fr.take(b"anything"), Ok(8));
        assert!(fr.close_delimited());
    }

    #[test]
    fn log_urls_hide_unknown_query_values() {
        assert_eq!(
            loggable_url("http://g/gateway/gateway.dll?Action=poll&SessionID=1.2&t=secret"),
            "http://g/gateway/gateway.dll?Action=poll&SessionID=1.2&t=<redacted>"
        );
    }
}
