//! The event kinds of MSN's HTTP side: one `http` event per request, response or problem
//! of an HTTP connection (summary plus the MSN part decoded by `crate::http`), one
//! `gateway` event per gateway session step (open, poll, id/host change, close, error),
//! and the [`Via`] context that MSNP events decoded from gateway bodies carry. Plain
//! owned data; it decodes nothing itself, and every secret in it is a `Secret` hidden by
//! the crate's one [`Redact`] rule.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::http::detect::MsnHttp;
use crate::http::gateway::{CloseReason, GatewayQuery, GatewayService, MessengerHeader};
use crate::http::passport::{Outcome, PassportExchange};
use crate::http::soap::{SoapBody, SoapMessage};
use crate::http::stream::{Framing, ProblemKind};
use crate::secret::Redact;

fn is_false(b: &bool) -> bool {
    !*b
}

/// Which HTTP message an `http` event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpMessage {
    Request,
    Response,
    /// Something the HTTP decoder could not read (see `problem`).
    Problem,
    /// A 2xx to CONNECT or a 101: the rest of the connection is opaque.
    Tunnel,
}

/// What went wrong while reading HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpProblem {
    pub kind: ProblemKind,
    pub detail: String,
    /// Stream offset in the event's direction.
    pub offset: u64,
}

/// One HTTP request, response or problem, summarized, with its MSN part decoded.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Http {
    pub message: Option<HttpMessage>,
    /// The request's number on its TCP connection (a response names the one it answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The request target as sent (origin or absolute form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The target's path: what `report` lists as the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Host of an absolute target, else the Host header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A 1xx interim response (`100 Continue`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub interim: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Body bytes on the wire (after de-chunking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framing: Option<Framing>,
    /// The body ended early or has holes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub incomplete: bool,
    /// Which part of MSN this is; None for HTTP msntap does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<MsnHttp>,
    /// The endpoint is one msntap knows (docs/http.md lists them).
    #[serde(default, skip_serializing_if = "is_false")]
    pub known_endpoint: bool,
    /// The gateway query of a gateway.dll request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayQuery>,
    /// `X-MSN-Messenger` of a gateway answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messenger: Option<MessengerHeader>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passport: Option<PassportExchange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap: Option<SoapMessage>,
    /// Why a body that looked like SOAP did not parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<HttpProblem>,
}

impl Redact for Http {
    fn redact(&mut self) -> bool {
        self.passport.redact() | self.soap.redact()
    }
}

impl Http {
    /// The one-line description of the log.
    pub fn describe(&self) -> String {
        let mut s = String::from("http");
        match self.message {
            Some(HttpMessage::Request) => {
                let _ = write!(
                    s,
                    " {} {}",
                    self.method.as_deref().unwrap_or("?"),
                    self.target.as_deref().unwrap_or("?")
                );
            }
            Some(HttpMessage::Response) => {
                let _ = write!(
                    s,
                    " {} {}",
                    self.status.map_or("?".to_string(), |n| n.to_string()),
                    self.reason.as_deref().unwrap_or("")
                );
                if let (Some(m), Some(t)) = (&self.method, &self.endpoint) {
                    let _ = write!(s, " to {m} {t}");
                }
            }
            Some(HttpMessage::Problem) => {
                if let Some(p) = &self.problem {
                    let _ = write!(s, " problem at offset {}: {}", p.offset, p.detail);
                }
            }
            Some(HttpMessage::Tunnel) => {
                let _ = write!(
                    s,
                    " tunnel ({} {})",
                    self.status.unwrap_or(0),
                    self.target.as_deref().unwrap_or("")
                );
            }
            None => {}
        }
        if let Some(ct) = &self.content_type {
            let _ = write!(s, " [{ct}");
            if let Some(n) = self.content_length {
                let _ = write!(s, ", {n} bytes");
            }
            s.push(']');
        } else if let Some(n) = self.content_length.filter(|&n| n > 0) {
            let _ = write!(s, " [{n} bytes]");
        }
        if self.incomplete {
            s.push_str(" (incomplete)");
        }
        if let Some(p) = self.part {
            let _ = write!(s, " {}", part_name(p));
        } else if matches!(self.message, Some(HttpMessage::Request)) {
            s.push_str(" (unknown endpoint)");
        }
        if let Some(g) = &self.gateway {
            for (k, v) in [
                ("Action", &g.action),
                ("SessionID", &g.session_id),
                ("Server", &g.server),
                ("IP", &g.ip),
            ] {
                if let Some(v) = v {
                    let _ = write!(s, " {k}={v}");
                }
            }
        }
        if let Some(m) = &self.messenger {
            if let Some(id) = &m.session_id {
                let _ = write!(s, " SessionID={id}");
            }
            if let Some(h) = &m.gw_ip {
                let _ = write!(s, " GW-IP={h}");
            }
            if m.close {
                s.push_str(" Session=close");
            }
        }
        if let Some(p) = &self.passport {
            s.push_str(&passport_summary(p));
        }
        if let Some(m) = &self.soap {
            s.push_str(&soap_summary(m));
        }
        if let Some(e) = &self.soap_error {
            let _ = write!(s, " SOAP unreadable: {e}");
        }
        s
    }
}

fn part_name(p: MsnHttp) -> &'static str {
    match p {
        MsnHttp::Gateway => "gateway",
        MsnHttp::Passport => "passport",
        MsnHttp::SecurityToken => "security-token",
        MsnHttp::Soap => "soap",
        MsnHttp::Config => "config",
    }
}

fn passport_summary(p: &PassportExchange) -> String {
    match p {
        PassportExchange::Nexus { urls, .. } => {
            match urls.as_ref().and_then(|u| u.da_login.as_ref()) {
                Some(d) => format!(": nexus, DALogin={d}"),
                None => ": nexus".to_string(),
            }
        }
        PassportExchange::Login {
            credentials,
            outcome,
            ..
        } => {
            let mut s = String::from(": Passport1.4 login");
            if let Some(c) = credentials {
                if let Some(u) = &c.sign_in {
                    let _ = write!(s, " sign-in={u}");
                }
                if let Some(p) = &c.password {
                    let _ = write!(s, " pwd={}", p.expose());
                }
            }
            match outcome {
                Some(Outcome::Success(ok)) => {
                    let _ = write!(s, " -> {}", ok.da_status);
                    if let Some(t) = &ok.ticket {
                        let _ = write!(s, ", ticket {}", t.expose());
                    }
                }
                Some(Outcome::Failure(f)) => {
                    let _ = write!(
                        s,
                        " -> {} {}",
                        f.status,
                        f.da_status.as_deref().unwrap_or("failed")
                    );
                }
                Some(Outcome::Redirect { status, location }) => {
                    let _ = write!(
                        s,
                        " -> {status} redirect {}",
                        location.as_deref().unwrap_or("")
                    );
                }
                Some(Outcome::Other { status }) => {
                    let _ = write!(s, " -> {status}");
                }
                None => {}
            }
            s
        }
    }
}

fn soap_summary(m: &SoapMessage) -> String {
    let mut s = format!(": SOAP {:?} {}", m.service, m.operation);
    match &m.body {
        SoapBody::RstRequest(r) => {
            if let Some(u) = &r.username {
                let _ = write!(s, " user={u}");
            }
            if let Some(p) = &r.password {
                let _ = write!(s, " password={}", p.expose());
            }
            let _ = write!(s, ", {} tokens asked", r.tokens.len());
        }
        SoapBody::RstResponse(r) => {
            let _ = write!(s, ", {} tokens", r.tokens.len());
            for t in &r.tokens {
                if let Some(b) = &t.binary_secret {
                    let _ = write!(s, ", {} BinarySecret {}", t.address, b.expose());
                }
            }
        }
        SoapBody::AddressBook {
            contacts, groups, ..
        } => {
            let _ = write!(s, ", {} contacts, {} groups", contacts.len(), groups.len());
        }
        SoapBody::Memberships { memberships } => {
            let n: usize = memberships.iter().map(|m| m.members.len()).sum();
            let _ = write!(s, ", {} memberships, {n} members", memberships.len());
        }
        SoapBody::OimMetadata { messages } => {
            let _ = write!(s, ", {} offline messages", messages.len());
        }
        SoapBody::Fault(f) => {
            let _ = write!(s, " {}", f.code);
            if let Some(c) = &f.subcode {
                let _ = write!(s, "/{c}");
            }
            if let Some(c) = &f.error_code {
                let _ = write!(s, " ({c})");
            }
            let _ = write!(s, ": {}", f.reason);
        }
        SoapBody::Other => s.push_str(" (operation not typed)"),
        _ => {}
    }
    s
}

/// Which step of a gateway session a `gateway` event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayStep {
    Opened,
    Poll,
    IdChanged,
    HostChanged,
    Closed,
    Error,
}

/// One step of a gateway session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gateway {
    pub step: GatewayStep,
    /// The decoder's number of the session (stable across SessionID changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_service: Option<GatewayService>,
    /// `IP=` of the open request (the NS host, or the switchboard's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_host: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub midway: bool,
    /// Poll: the server had nothing queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifespan: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CloseReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Client bytes that reached no session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// The TCP connection (msntap's id) and request number of the exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_conn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_seq: Option<u64>,
}

impl Gateway {
    pub fn new(step: GatewayStep) -> Gateway {
        Gateway {
            step,
            session: None,
            gateway_id: None,
            gateway_service: None,
            server: None,
            gateway_host: None,
            http_host: None,
            midway: false,
            empty: None,
            lifespan: None,
            old: None,
            new: None,
            reason: None,
            status: None,
            detail: None,
            lost: None,
            tcp_conn: None,
            request_seq: None,
        }
    }

    pub fn describe(&self) -> String {
        let mut s = String::from("gateway");
        if let Some(n) = self.session {
            let _ = write!(s, " session {n}");
        }
        match self.step {
            GatewayStep::Opened => {
                let _ = write!(
                    s,
                    " opened: {} {} SessionID={}",
                    self.gateway_service
                        .as_ref()
                        .map_or("?".to_string(), service_name),
                    self.server.as_deref().unwrap_or("?"),
                    self.gateway_id.as_deref().unwrap_or("?")
                );
                if let Some(h) = &self.gateway_host {
                    let _ = write!(s, " GW-IP={h}");
                }
                if self.midway {
                    s.push_str(" (picked up mid-session)");
                }
            }
            GatewayStep::Poll => {
                s.push_str(if self.empty == Some(true) {
                    " poll (empty)"
                } else {
                    " poll"
                });
            }
            GatewayStep::IdChanged | GatewayStep::HostChanged => {
                let what = if self.step == GatewayStep::IdChanged {
                    "SessionID"
                } else {
                    "gateway host"
                };
                let _ = write!(
                    s,
                    " {what} {} -> {}",
                    self.old.as_deref().unwrap_or("?"),
                    self.new.as_deref().unwrap_or("?")
                );
            }
            GatewayStep::Closed => {
                let _ = write!(
                    s,
                    " closed ({})",
                    match self.reason {
                        Some(CloseReason::ServerClosed) => "Session=close",
                        Some(CloseReason::Evicted) => "evicted",
                        Some(CloseReason::EndOfInput) => "end of input",
                        None => "?",
                    }
                );
            }
            GatewayStep::Error => {
                let _ = write!(s, " error: {}", self.detail.as_deref().unwrap_or("?"));
                if let Some(n) = self.lost.filter(|&n| n > 0) {
                    let _ = write!(s, " ({n} client bytes lost)");
                }
            }
        }
        s
    }
}

fn service_name(s: &GatewayService) -> String {
    match s {
        GatewayService::Ns => "NS".into(),
        GatewayService::Sb => "SB".into(),
        GatewayService::Other(o) => format!("Server={o}"),
    }
}

/// Where the bytes of an MSNP event travelled when not over their own TCP connection:
/// the HTTP gateway session and the exchange whose body carried them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Via {
    /// The decoder's number of the gateway session.
    pub gateway_session: u64,
    pub gateway_id: String,
    pub gateway_service: GatewayService,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// msntap's id of the TCP connection, and the request number on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_conn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_seq: Option<u64>,
}
