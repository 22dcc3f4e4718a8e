//! SOAP of MSNP13+ read into typed values with roxmltree: the RST/RST2 security token
//! service (UsernameToken, per-domain tickets, BinarySecret), ABService, SharingService,
//! StorageService, OIM store and RSI, and SOAP 1.1/1.2 faults with their codes. Passwords,
//! tickets, proof keys and cookies are [`Secret`]s. It reads bodies only; which HTTP
//! exchange carried them is the caller's business.

use serde::{Deserialize, Serialize};

use super::stream::{Request, Response};
use super::{redact_opt, target_path, Secret};
use crate::secret::Redact;

/// Which service a SOAP message belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoapService {
    /// RST.srf / RST2.srf (login.live.com).
    SecurityToken,
    /// ABService (contacts and groups).
    AddressBook,
    /// SharingService (memberships, circles).
    Sharing,
    /// StorageService (profile, display picture).
    Storage,
    /// OIM sending (OimWS/oim.asmx).
    OimStore,
    /// OIM reading (rsi.asmx).
    Rsi,
    /// MsgrConfig.
    Config,
    Other,
}

/// Credentials from the SOAP header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoapAuth {
    /// `ABAuthHeader/TicketToken`, `StorageUserHeader/TicketToken` (t=...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_token: Option<Secret>,
    /// `PassportCookie` t and p (RSI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_t: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_p: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_scenario: Option<String>,
}

impl SoapAuth {
    fn is_empty(&self) -> bool {
        *self == SoapAuth::default()
    }
}

/// One token asked for in an RST request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The domain (`messengerclear.live.com`, `http://Passport.NET/tb`, ...).
    pub address: String,
    /// The policy (`MBI_KEY_OLD`, `?id=507`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// `RequestSecurityToken`(s) with the UsernameToken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RstRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    pub tokens: Vec<TokenRequest>,
}

/// One issued token of an RST response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub address: String,
    /// `Compact1`, ... (`BinarySecurityToken/@Id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The compact ticket (`t=...&p=...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Secret>,
    /// The proof key (messengerclear.live.com): what the SSO answer is computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// `RequestSecurityTokenResponseCollection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RstResponse {
    pub tokens: Vec<IssuedToken>,
    /// `psf:PUID` of the account, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub puid: Option<String>,
}

impl RstResponse {
    /// The token for a domain (`messengerclear.live.com` holds the BinarySecret).
    pub fn token(&self, address: &str) -> Option<&IssuedToken> {
        self.tokens
            .iter()
            .find(|t| t.address.eq_ignore_ascii_case(address))
    }
}

/// A contact of the address book.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passport_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_messenger_user: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_ids: Vec<String>,
}

/// A group of the address book.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A member of a membership list (Allow, Block, Reverse, Pending).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `Passport`, `Email`, `Phone`, ... (the `Type` element, else `xsi:type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub role: String,
    pub members: Vec<Member>,
}

/// The StorageService profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_status: Option<String>,
    /// Documents (display pictures): name and size of their base64 data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<Document>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Length of the base64 `Data`.
    pub data_length: usize,
}

/// OIM `Store`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OimStore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// The CHL/QRY-style answer to a LockKeyChallenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Bytes of the MIME content.
    pub content_length: usize,
}

/// One offline message in RSI metadata (`<M>` of `<MD>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OimMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<String>,
}

/// A SOAP fault, 1.1 (`faultcode`/`faultstring`/`detail`) or 1.2 (`Code`/`Reason`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoapFault {
    /// `soap:Client`, `S:Sender`, `psf:Redirect`, ...
    pub code: String,
    /// SOAP 1.2 subcode (`wst:FailedAuthentication`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcode: Option<String>,
    pub reason: String,
    /// The service's code in the detail: `errorcode` (`PassportAuthFail`, `BadContextToken`,
    /// `FullSyncRequired`, ...) or Passport's `psf:value` (`0x80048821`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_text: Option<String>,
    /// OIM's `LockKeyChallenge`, answered by the next Store's lock key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_key_challenge: Option<String>,
}

/// The typed content of a SOAP body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SoapBody {
    RstRequest(RstRequest),
    RstResponse(RstResponse),
    /// ABFindAll / ABFindContactsPaged.
    FindAddressBook {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ab_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deltas_only: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_change: Option<String>,
    },
    /// The address book of ABFindAllResponse / ABFindContactsPagedResponse.
    AddressBook {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ab_id: Option<String>,
        contacts: Vec<Contact>,
        groups: Vec<Group>,
    },
    /// ABContactAdd/Delete/Update, ABGroupAdd/Update/Delete, ABGroupContactAdd/Delete and
    /// their answers: the contacts and groups named.
    AddressBookChange {
        contacts: Vec<Contact>,
        groups: Vec<Group>,
        /// `guid` elements of the answer (new ids).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        new_ids: Vec<String>,
    },
    FindMembership {
        service_types: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deltas_only: Option<bool>,
    },
    /// FindMembershipResponse, AddMember, DeleteMember.
    Memberships {
        memberships: Vec<Membership>,
    },
    Profile(Profile),
    OimStore(OimStore),
    /// RSI GetMetadataResponse (also the `Mail-Data` of an NS notification).
    OimMetadata {
        messages: Vec<OimMeta>,
    },
    OimGetMessage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mark_read: Option<bool>,
    },
    /// GetMessageResponse: the message's size (the MIME text itself is not kept).
    OimMessage {
        length: usize,
    },
    OimDelete {
        message_ids: Vec<String>,
    },
    Fault(SoapFault),
    /// An operation without a typed form here.
    Other,
}

/// One SOAP message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoapMessage {
    pub service: SoapService,
    /// The `SOAPAction` header, unquoted (SOAP 1.1), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Local name of the first element of the Body (`ABFindAll`, `Fault`, ...).
    pub operation: String,
    /// Its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "SoapAuth::is_empty")]
    pub auth: SoapAuth,
    pub body: SoapBody,
}

impl Redact for SoapMessage {
    /// Replaces every password, ticket, proof key and cookie by `<redacted>`.
    fn redact(&mut self) -> bool {
        let mut c = redact_opt(&mut self.auth.ticket_token);
        c |= redact_opt(&mut self.auth.cookie_t);
        c |= redact_opt(&mut self.auth.cookie_p);
        match &mut self.body {
            SoapBody::RstRequest(r) => c |= redact_opt(&mut r.password),
            SoapBody::RstResponse(r) => {
                for t in &mut r.tokens {
                    c |= redact_opt(&mut t.ticket);
                    c |= redact_opt(&mut t.binary_secret);
                }
            }
            SoapBody::OimStore(o) => {
                c |= redact_opt(&mut o.ticket);
                c |= redact_opt(&mut o.lock_key);
            }
            _ => {}
        }
        c
    }
}

impl SoapMessage {
    pub fn fault(&self) -> Option<&SoapFault> {
        match &self.body {
            SoapBody::Fault(f) => Some(f),
            _ => None,
        }
    }
}

/// Why a body is not SOAP that this module reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    #[error("the body is not UTF-8")]
    NotUtf8,
    #[error("bad XML: {0}")]
    Xml(String),
    #[error("no SOAP Envelope/Body")]
    NotSoap,
}

type Node<'a, 'i> = roxmltree::Node<'a, 'i>;

fn child<'a, 'i>(n: Node<'a, 'i>, local: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name().eq_ignore_ascii_case(local))
}

fn desc<'a, 'i>(n: Node<'a, 'i>, local: &str) -> Option<Node<'a, 'i>> {
    n.descendants()
        .find(|c| c.is_element() && c.tag_name().name().eq_ignore_ascii_case(local))
}

fn descs<'a, 'i: 'a>(n: Node<'a, 'i>, local: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.descendants()
        .filter(move |c| c.is_element() && c.tag_name().name().eq_ignore_ascii_case(local))
}

/// Text of an element (all of its text nodes), trimmed; None when empty.
fn text(n: Node<'_, '_>) -> Option<String> {
    let t: String = n
        .descendants()
        .filter(|d| d.is_text())
        .filter_map(|d| d.text())
        .collect();
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn text_of(n: Node<'_, '_>, path: &[&str]) -> Option<String> {
    let mut cur = n;
    for p in path {
        cur = child(cur, p)?;
    }
    text(cur)
}

fn desc_text(n: Node<'_, '_>, local: &str) -> Option<String> {
    desc(n, local).and_then(text)
}

fn boolean(s: Option<String>) -> Option<bool> {
    match s?.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn service_of(path: &str, ns: &str, op: &str) -> SoapService {
    let p = path.to_ascii_lowercase();
    if p.ends_with("/rst.srf") || p.ends_with("/rst2.srf") || ns.contains("Passport/SoapServices") {
        SoapService::SecurityToken
    } else if p.ends_with("sharingservice.asmx")
        || (ns.contains("AddressBook")
            && (op.contains("Membership") || op.contains("Member") || op.contains("Circle")))
    {
        SoapService::Sharing
    } else if p.ends_with("abservice.asmx") || ns.contains("AddressBook") {
        SoapService::AddressBook
    } else if p.ends_with("schematizedstore.asmx") || ns.contains("/storage/") {
        SoapService::Storage
    } else if p.ends_with("oim.asmx")
        || ns.contains("messenger.msn.com/ws/2004/09/oim")
        || ns.contains("messenger.live.com/ws/2006/09/oim")
    {
        SoapService::OimStore
    } else if p.ends_with("rsi.asmx") || ns.contains("oim/rsi") {
        SoapService::Rsi
    } else if p.contains("msgrconfig") {
        SoapService::Config
    } else {
        SoapService::Other
    }
}

/// Parses a SOAP body. `path` is the request path (for the service), `action` the
/// `SOAPAction` header.
pub fn parse(body: &[u8], path: &str, action: Option<&str>) -> Result<SoapMessage, SoapError> {
    let s = std::str::from_utf8(body).map_err(|_| SoapError::NotUtf8)?;
    let s = s.trim_start_matches('\u{feff}');
    let doc = roxmltree::Document::parse(s).map_err(|e| SoapError::Xml(e.to_string()))?;
    let env = doc.root_element();
    if !env.tag_name().name().eq_ignore_ascii_case("Envelope") {
        return Err(SoapError::NotSoap);
    }
    let body = child(env, "Body").ok_or(SoapError::NotSoap)?;
    let header = child(env, "Header");
    let first = body.children().find(|c| c.is_element());
    let mut operation = first.map_or(String::new(), |f| f.tag_name().name().to_string());
    let namespace = first
        .and_then(|f| f.tag_name().namespace())
        .map(str::to_string);
    let service = service_of(path, namespace.as_deref().unwrap_or(""), &operation);
    let auth = header.map(read_auth).unwrap_or_default();
    let body = match first {
        // OIM Store puts MessageType and Content straight in the Body: the operation is
        // the SOAPAction's last segment.
        Some(_) if operation == "MessageType" => {
            operation = action
                .and_then(|a| a.trim().trim_matches('"').rsplit('/').next())
                .filter(|a| !a.is_empty())
                .unwrap_or("Store")
                .to_string();
            SoapBody::OimStore(read_oim_store(body, header))
        }
        Some(f) => read_body(f, header, &operation),
        None => SoapBody::Other,
    };
    Ok(SoapMessage {
        service,
        action: action
            .map(|a| a.trim().trim_matches('"').to_string())
            .filter(|a| !a.is_empty()),
        operation,
        namespace,
        auth,
        body,
    })
}

/// Parses the body of a request (None when it is not SOAP: not XML with an Envelope).
pub fn parse_request(r: &Request) -> Option<Result<SoapMessage, SoapError>> {
    soap_like(&r.body.data.0).then(|| {
        parse(
            &r.body.data.0,
            target_path(&r.head.target),
            r.header("soapaction"),
        )
    })
}

/// Parses the body of a response; `request_target` gives the service.
pub fn parse_response(r: &Response) -> Option<Result<SoapMessage, SoapError>> {
    let path = r.request_target.as_deref().map(target_path).unwrap_or("");
    soap_like(&r.body.data.0).then(|| parse(&r.body.data.0, path, None))
}

/// Does a body look like a SOAP envelope (before parsing it)?
pub fn soap_like(body: &[u8]) -> bool {
    let head = &body[..body.len().min(1024)];
    super::find_ci(head, b"Envelope").is_some()
}

fn read_auth(h: Node<'_, '_>) -> SoapAuth {
    let cookie = desc(h, "PassportCookie");
    SoapAuth {
        ticket_token: desc_text(h, "TicketToken").map(Secret::new),
        cookie_t: cookie
            .and_then(|c| child(c, "t"))
            .and_then(text)
            .map(Secret::new),
        cookie_p: cookie
            .and_then(|c| child(c, "p"))
            .and_then(text)
            .map(Secret::new),
        application_id: desc_text(h, "ApplicationId"),
        partner_scenario: desc_text(h, "PartnerScenario"),
    }
}

fn read_body(op: Node<'_, '_>, header: Option<Node<'_, '_>>, name: &str) -> SoapBody {
    match name {
        "Fault" => SoapBody::Fault(read_fault(op)),
        "RequestMultipleSecurityTokens" | "RequestSecurityToken" => {
            let token = header.and_then(|h| desc(h, "UsernameToken"));
            let mut tokens = Vec::new();
            let rsts: Vec<Node> = if name == "RequestSecurityToken" {
                vec![op]
            } else {
                descs(op, "RequestSecurityToken").collect()
            };
            for rst in rsts {
                tokens.push(TokenRequest {
                    id: rst.attribute("Id").map(str::to_string),
                    address: desc_text(rst, "Address").unwrap_or_default(),
                    policy: desc(rst, "PolicyReference")
                        .and_then(|p| p.attribute("URI"))
                        .map(str::to_string),
                });
            }
            SoapBody::RstRequest(RstRequest {
                username: token.and_then(|t| desc_text(t, "Username")),
                password: token
                    .and_then(|t| desc_text(t, "Password"))
                    .map(Secret::new),
                tokens,
            })
        }
        "RequestSecurityTokenResponseCollection" | "RequestSecurityTokenResponse" => {
            let rstrs: Vec<Node> = if name == "RequestSecurityTokenResponse" {
                vec![op]
            } else {
                descs(op, "RequestSecurityTokenResponse").collect()
            };
            let tokens = rstrs
                .into_iter()
                .map(|r| {
                    let bst = desc(r, "BinarySecurityToken");
                    IssuedToken {
                        address: desc_text(r, "Address").unwrap_or_default(),
                        token_id: bst.and_then(|b| b.attribute("Id")).map(str::to_string),
                        ticket: bst.and_then(text).map(Secret::new),
                        binary_secret: desc_text(r, "BinarySecret").map(Secret::new),
                        created: desc(r, "Lifetime").and_then(|l| desc_text(l, "Created")),
                        expires: desc(r, "Lifetime").and_then(|l| desc_text(l, "Expires")),
                    }
                })
                .collect();
            SoapBody::RstResponse(RstResponse {
                tokens,
                puid: header.and_then(|h| desc_text(h, "PUID")),
            })
        }
        "ABFindAll" | "ABFindContactsPaged" => SoapBody::FindAddressBook {
            ab_id: desc_text(op, "abId"),
            deltas_only: boolean(desc_text(op, "deltasOnly")),
            last_change: desc_text(op, "lastChange"),
        },
        "ABFindAllResponse" | "ABFindContactsPagedResponse" => SoapBody::AddressBook {
            ab_id: desc_text(op, "abId"),
            contacts: descs(op, "Contact").map(read_contact).collect(),
            groups: descs(op, "Group").map(read_group).collect(),
        },
        n if (n.starts_with("ABContact") || n.starts_with("ABGroup"))
            && !n.starts_with("ABContactUpdateResponse") =>
        {
            let response = n.ends_with("Response");
            SoapBody::AddressBookChange {
                contacts: descs(op, "Contact").map(read_contact).collect(),
                groups: if response {
                    Vec::new()
                } else {
                    descs(op, "Group")
                        .map(read_group)
                        .chain(descs(op, "groupInfo").map(|g| Group {
                            id: None,
                            name: desc_text(g, "name"),
                        }))
                        .collect()
                },
                new_ids: if response {
                    descs(op, "guid").filter_map(text).collect()
                } else {
                    Vec::new()
                },
            }
        }
        "FindMembership" => SoapBody::FindMembership {
            service_types: descs(op, "ServiceType").filter_map(text).collect(),
            deltas_only: boolean(desc_text(op, "deltasOnly")),
        },
        "FindMembershipResponse" | "AddMember" | "DeleteMember" => SoapBody::Memberships {
            memberships: descs(op, "Membership").map(read_membership).collect(),
        },
        "GetProfileResponse" | "UpdateProfile" | "GetProfile" => {
            let expr = desc(op, "ExpressionProfile");
            SoapBody::Profile(Profile {
                resource_id: desc_text(op, "ResourceID"),
                display_name: expr.and_then(|e| child(e, "DisplayName")).and_then(text),
                personal_status: expr.and_then(|e| child(e, "PersonalStatus")).and_then(text),
                documents: descs(op, "Document").map(read_document).collect(),
            })
        }
        "CreateDocument" | "UpdateDocument" => SoapBody::Profile(Profile {
            documents: descs(op, "document")
                .chain(descs(op, "Document"))
                .take(1)
                .map(read_document)
                .collect(),
            ..Profile::default()
        }),
        "Store" | "Store2" => SoapBody::OimStore(read_oim_store(op, header)),
        "GetMetadataResponse" => {
            // The metadata is XML either as elements or as escaped text.
            let inner = text(op).unwrap_or_default();
            let messages = match roxmltree::Document::parse(&inner) {
                Ok(d) if !inner.is_empty() => read_oim_metadata(d.root_element()),
                _ => read_oim_metadata(op),
            };
            SoapBody::OimMetadata { messages }
        }
        "GetMessage" => SoapBody::OimGetMessage {
            message_id: desc_text(op, "messageId"),
            mark_read: boolean(desc_text(op, "alsoMarkAsRead")),
        },
        "GetMessageResponse" => SoapBody::OimMessage {
            length: desc(op, "GetMessageResult")
                .and_then(text)
                .map_or(0, |t| t.len()),
        },
        "DeleteMessages" => SoapBody::OimDelete {
            message_ids: descs(op, "messageId").filter_map(text).collect(),
        },
        _ => SoapBody::Other,
    }
}

fn read_fault(f: Node<'_, '_>) -> SoapFault {
    // SOAP 1.2 nests Code/Value and Reason/Text; 1.1 has faultcode/faultstring.
    let code = text_of(f, &["Code", "Value"])
        .or_else(|| text_of(f, &["faultcode"]))
        .unwrap_or_default();
    let subcode = text_of(f, &["Code", "Subcode", "Value"]);
    let reason = text_of(f, &["Reason", "Text"])
        .or_else(|| text_of(f, &["faultstring"]))
        .unwrap_or_default();
    let detail = child(f, "detail").or_else(|| child(f, "Detail"));
    let error_code = detail.and_then(|d| {
        desc_text(d, "errorcode").or_else(|| {
            desc(d, "error")
                .and_then(|e| child(e, "value"))
                .and_then(text)
        })
    });
    let error_text = detail.and_then(|d| {
        desc_text(d, "errorstring").or_else(|| {
            desc(d, "internalerror")
                .and_then(|e| child(e, "text"))
                .and_then(text)
        })
    });
    SoapFault {
        code,
        subcode,
        reason,
        error_code,
        error_text,
        lock_key_challenge: detail.and_then(|d| desc_text(d, "LockKeyChallenge")),
    }
}

fn read_contact(c: Node<'_, '_>) -> Contact {
    let info = child(c, "contactInfo").unwrap_or(c);
    Contact {
        id: text_of(c, &["contactId"]),
        passport_name: text_of(info, &["passportName"])
            .or_else(|| desc(info, "ContactEmail").and_then(|e| desc_text(e, "email"))),
        display_name: text_of(info, &["displayName"]),
        contact_type: text_of(info, &["contactType"]),
        is_messenger_user: boolean(text_of(info, &["isMessengerUser"])),
        group_ids: child(info, "groupIds")
            .map(|g| descs(g, "guid").filter_map(text).collect())
            .unwrap_or_default(),
    }
}

fn read_group(g: Node<'_, '_>) -> Group {
    Group {
        id: text_of(g, &["groupId"]),
        name: child(g, "groupInfo").and_then(|i| text_of(i, &["name"])),
    }
}

fn read_membership(m: Node<'_, '_>) -> Membership {
    Membership {
        role: text_of(m, &["MemberRole"]).unwrap_or_default(),
        members: descs(m, "Member")
            .map(|x| Member {
                kind: text_of(x, &["Type"]).or_else(|| {
                    x.attributes()
                        .find(|a| a.name() == "type")
                        .map(|a| a.value().to_string())
                }),
                name: text_of(x, &["PassportName"]).or_else(|| text_of(x, &["Email"])),
                display_name: text_of(x, &["DisplayName"]),
                state: text_of(x, &["State"]),
                membership_id: text_of(x, &["MembershipId"]),
            })
            .collect(),
    }
}

fn read_document(d: Node<'_, '_>) -> Document {
    Document {
        name: text_of(d, &["Name"]),
        mime_type: desc_text(d, "MimeType"),
        data_length: desc_text(d, "Data").map_or(0, |t| t.len()),
    }
}

fn read_oim_store(op: Node<'_, '_>, header: Option<Node<'_, '_>>) -> OimStore {
    let from = header.and_then(|h| desc(h, "From"));
    let to = header.and_then(|h| desc(h, "To"));
    let ticket = header.and_then(|h| desc(h, "Ticket"));
    let content = desc_text(op, "Content").unwrap_or_default();
    let mime_header = |name: &str| {
        content.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    OimStore {
        from: from
            .and_then(|f| f.attribute("memberName"))
            .map(str::to_string),
        friendly_name: from
            .and_then(|f| f.attribute("friendlyName"))
            .map(str::to_string),
        to: to
            .and_then(|t| t.attribute("memberName"))
            .map(str::to_string),
        ticket: ticket
            .and_then(|t| t.attribute("passport"))
            .map(|t| Secret::new(t.to_string())),
        app_id: ticket
            .and_then(|t| t.attribute("appid"))
            .map(str::to_string),
        lock_key: ticket
            .and_then(|t| t.attribute("lockkey"))
            .filter(|k| !k.is_empty())
            .map(|k| Secret::new(k.to_string())),
        message_number: header
            .and_then(|h| desc_text(h, "MessageNumber"))
            .and_then(|n| n.parse().ok()),
        run_id: mime_header("X-OIM-Run-Id"),
        content_length: content.len(),
    }
}

fn read_oim_metadata(root: Node<'_, '_>) -> Vec<OimMeta> {
    descs(root, "M")
        .map(|m| OimMeta {
            id: text_of(m, &["I"]),
            from: text_of(m, &["E"]),
            from_name: text_of(m, &["N"]),
            size: text_of(m, &["SZ"]).and_then(|s| s.parse().ok()),
            received: text_of(m, &["RT"]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(xml: &str, path: &str) -> SoapMessage {
        parse(
            xml.as_bytes(),
            path,
            Some("\"http://www.msn.com/webservices/AddressBook/ABFindAll\""),
        )
        .unwrap()
    }

    #[test]
    fn rst_request_and_redaction() {
        let xml = r#"<?xml version="1.0"?><Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsse="http://schemas.xmlsoap.org/ws/2003/06/secext" xmlns:wst="http://schemas.xmlsoap.org/ws/2004/04/trust" xmlns:wsp="http://schemas.xmlsoap.org/ws/2002/12/policy" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/03/addressing" xmlns:ps="http://schemas.microsoft.com/Passport/SoapServices/PPCRL">
<Header><wsse:Security><wsse:UsernameToken Id="user"><wsse:Username>a@b.c</wsse:Username><wsse:Password>hunter2</wsse:Password></wsse:UsernameToken></wsse:Security></Header>
<Body><ps:RequestMultipleSecurityTokens Id="RSTS">
<wst:RequestSecurityToken Id="RST0"><wsp:AppliesTo><wsa:EndpointReference><wsa:Address>http://Passport.NET/tb</wsa:Address></wsa:EndpointReference></wsp:AppliesTo></wst:RequestSecurityToken>
<wst:RequestSecurityToken Id="RST1"><wsp:AppliesTo><wsa:EndpointReference><wsa:Address>messengerclear.live.com</wsa:Address></wsa:EndpointReference></wsp:AppliesTo><wsse:PolicyReference URI="MBI_KEY_OLD"/></wst:RequestSecurityToken>
</ps:RequestMultipleSecurityTokens></Body></Envelope>"#;
        let mut m = p(xml, "/RST2.srf");
        assert_eq!(m.service, SoapService::SecurityToken);
        assert_eq!(m.operation, "RequestMultipleSecurityTokens");
        let SoapBody::RstRequest(r) = &m.body else {
            panic!("{m:?}")
        };
        assert_eq!(r.username.as_deref(), Some("a@b.c"));
        assert_eq!(r.password.as_ref().map(Secret::expose), Some("hunter2"));
        assert_eq!(r.tokens.len(), 2);
        assert_eq!(r.tokens[1].address, "messengerclear.live.com");
        assert_eq!(r.tokens[1].policy.as_deref(), Some("MBI_KEY_OLD"));
        m.redact();
        assert!(!serde_json::to_string(&m).unwrap().contains("hunter2"));
    }

    #[test]
    fn rst_response_tokens_and_binary_secret() {
        let xml = r#"<S:Envelope xmlns:S="http://www.w3.org/2003/05/soap-envelope" xmlns:wst="http://schemas.xmlsoap.org/ws/2005/02/trust" xmlns:wsse="x" xmlns:wsu="u" xmlns:wsa="a" xmlns:wsp="p" xmlns:psf="http://schemas.microsoft.com/Passport/SoapServices/SOAPFault">
<S:Header><psf:pp><psf:PUID>00060000DEADBEEF</psf:PUID></psf:pp></S:Header>
<S:Body><wst:RequestSecurityTokenResponseCollection>
<wst:RequestSecurityTokenResponse><wsp:AppliesTo><wsa:EndpointReference><wsa:Address>messengerclear.live.com</wsa:Address></wsa:EndpointReference></wsp:AppliesTo>
<wst:Lifetime><wsu:Created>2026-01-01T00:00:00Z</wsu:Created><wsu:Expires>2026-01-02T00:00:00Z</wsu:Expires></wst:Lifetime>
<wst:RequestedSecurityToken><wsse:BinarySecurityToken Id="Compact1">t=TICKET1&amp;p=PROF1</wsse:BinarySecurityToken></wst:RequestedSecurityToken>
<wst:RequestedProofToken><wst:BinarySecret>U0VDUkVU</wst:BinarySecret></wst:RequestedProofToken></wst:RequestSecurityTokenResponse>
<wst:RequestSecurityTokenResponse><wsp:AppliesTo><wsa:EndpointReference><wsa:Address>contacts.msn.com</wsa:Address></wsa:EndpointReference></wsp:AppliesTo>
<wst:RequestedSecurityToken><wsse:BinarySecurityToken Id="Compact2">t=TICKET2&amp;p=</wsse:BinarySecurityToken></wst:RequestedSecurityToken></wst:RequestSecurityTokenResponse>
</wst:RequestSecurityTokenResponseCollection></S:Body></S:Envelope>"#;
        let mut m = p(xml, "/RST2.srf");
        let SoapBody::RstResponse(r) = &m.body else {
            panic!("{m:?}")
        };
        assert_eq!(r.puid.as_deref(), Some("00060000DEADBEEF"));
        let t = r.token("messengerclear.live.com").unwrap();
        assert_eq!(t.ticket.as_ref().unwrap().expose(), "t=TICKET1&p=PROF1");
        assert_eq!(t.binary_secret.as_ref().unwrap().expose(), "U0VDUkVU");
        assert_eq!(t.token_id.as_deref(), Some("Compact1"));
        assert_eq!(t.expires.as_deref(), Some("2026-01-02T00:00:00Z"));
        assert!(r.token("contacts.msn.com").unwrap().binary_secret.is_none());
        m.redact();
        let j = serde_json::to_string(&m).unwrap();
        assert!(!j.contains("TICKET") && !j.contains("U0VDUkVU"), "{j}");
    }

    #[test]
    fn faults_with_codes() {
        let xml = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>Ticket is expired</faultstring><detail><errorcode xmlns="http://www.msn.com/webservices/AddressBook">PassportAuthFail</errorcode><errorstring>Bad ticket</errorstring></detail></soap:Fault></soap:Body></soap:Envelope>"#;
        let m = p(xml, "/abservice/abservice.asmx");
        let f = m.fault().unwrap();
        assert_eq!(
            (f.code.as_str(), f.reason.as_str()),
            ("soap:Client", "Ticket is expired")
        );
        assert_eq!(f.error_code.as_deref(), Some("PassportAuthFail"));
        assert_eq!(m.service, SoapService::AddressBook);
        let xml = r#"<S:Envelope xmlns:S="http://www.w3.org/2003/05/soap-envelope" xmlns:psf="http://schemas.microsoft.com/Passport/SoapServices/SOAPFault"><S:Body><S:Fault><S:Code><S:Value>S:Sender</S:Value><S:Subcode><S:Value>wst:FailedAuthentication</S:Value></S:Subcode></S:Code><S:Reason><S:Text xml:lang="en-US">Authentication Failure</S:Text></S:Reason><S:Detail><psf:error><psf:value>0x80048821</psf:value><psf:internalerror><psf:code>0x80041012</psf:code><psf:text>passwords do not match</psf:text></psf:internalerror></psf:error></S:Detail></S:Fault></S:Body></S:Envelope>"#;
        let f = p(xml, "/RST2.srf").fault().cloned().unwrap();
        assert_eq!(f.code, "S:Sender");
        assert_eq!(f.subcode.as_deref(), Some("wst:FailedAuthentication"));
        assert_eq!(f.error_code.as_deref(), Some("0x80048821"));
        assert_eq!(f.error_text.as_deref(), Some("passwords do not match"));
        let xml = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode xmlns:q0="http://messenger.msn.com/ws/2004/09/oim/">q0:AuthenticationFailed</faultcode><faultstring>Exception of type 'System.Web.Services.Protocols.SoapException' was thrown.</faultstring><detail><TweenerChallenge xmlns="http://messenger.msn.com/ws/2004/09/oim/">ct=1,rver=1</TweenerChallenge><LockKeyChallenge xmlns="http://messenger.msn.com/ws/2004/09/oim/">72254366</LockKeyChallenge></detail></soap:Fault></soap:Body></soap:Envelope>"#;
        let f = p(xml, "/OimWS/oim.asmx").fault().cloned().unwrap();
        assert_eq!(f.lock_key_challenge.as_deref(), Some("72254366"));
    }

    #[test]
    fn address_book_and_memberships() {
        let xml = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header><ServiceHeader xmlns="http://www.msn.com/webservices/AddressBook"><Version>15.01</Version></ServiceHeader></soap:Header><soap:Body><ABFindAllResponse xmlns="http://www.msn.com/webservices/AddressBook"><ABFindAllResult>
<groups><Group><groupId>g-1</groupId><groupInfo><name>Friends</name></groupInfo></Group></groups>
<contacts><Contact><contactId>c-1</contactId><contactInfo><groupIds><guid>g-1</guid></groupIds><contactType>Regular</contactType><passportName>bob@example.com</passportName><isMessengerUser>true</isMessengerUser><displayName>Bob</displayName></contactInfo></Contact>
<Contact><contactId>c-0</contactId><contactInfo><contactType>Me</contactType><passportName>alice@example.com</passportName><displayName>alice</displayName></contactInfo></Contact></contacts>
<ab><abId>00000000-0000-0000-0000-000000000000</abId></ab></ABFindAllResult></ABFindAllResponse></soap:Body></soap:Envelope>"#;
        let m = p(xml, "/abservice/abservice.asmx");
        let SoapBody::AddressBook {
            contacts,
            groups,
            ab_id,
        } = &m.body
        else {
            panic!("{m:?}")
        };
        assert_eq!(
            ab_id.as_deref(),
            Some("00000000-0000-0000-0000-000000000000")
        );
        assert_eq!(
            groups,
            &vec![Group {
                id: Some("g-1".into()),
                name: Some("Friends".into())
            }]
        );
        assert_eq!(contacts.len(), 2);
        assert_eq!(
            contacts[0].passport_name.as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(contacts[0].group_ids, vec!["g-1".to_string()]);
        assert_eq!(contacts[0].is_messenger_user, Some(true));
        assert_eq!(contacts[1].contact_type.as_deref(), Some("Me"));
        let xml = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Header><ABAuthHeader xmlns="http://www.msn.com/webservices/AddressBook"><ManagedGroupRequest>false</ManagedGroupRequest><TicketToken>t=SECRET&amp;p=X</TicketToken></ABAuthHeader></soap:Header><soap:Body><FindMembershipResponse xmlns="http://www.msn.com/webservices/AddressBook"><FindMembershipResult><Services><Service><Memberships>
<Membership><MemberRole>Allow</MemberRole><Members><Member xsi:type="PassportMember"><MembershipId>Allow/1</MembershipId><Type>Passport</Type><State>Accepted</State><PassportName>bob@example.com</PassportName></Member></Members></Membership>
<Membership><MemberRole>Reverse</MemberRole><Members><Member xsi:type="PassportMember"><State>Accepted</State><PassportName>bob@example.com</PassportName><DisplayName>Bob</DisplayName></Member></Members></Membership>
</Memberships></Service></Services></FindMembershipResult></FindMembershipResponse></soap:Body></soap:Envelope>"#;
        let mut m = p(xml, "/abservice/SharingService.asmx");
        assert_eq!(m.service, SoapService::Sharing);
        assert_eq!(
            m.auth.ticket_token.as_ref().unwrap().expose(),
            "t=SECRET&p=X"
        );
        let SoapBody::Memberships { memberships } = &m.body else {
            panic!()
        };
        assert_eq!(memberships[0].role, "Allow");
        assert_eq!(memberships[0].members[0].kind.as_deref(), Some("Passport"));
        assert_eq!(
            memberships[1].members[0].kind.as_deref(),
            Some("PassportMember")
        );
        assert_eq!(
            memberships[1].members[0].display_name.as_deref(),
            Some("Bob")
        );
        m.redact();
        assert!(!serde_json::to_string(&m).unwrap().contains("SECRET"));
    }

    #[test]
    fn oim_store_and_metadata() {
        let xml = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header><From memberName="a@b.c" friendlyName="=?utf-8?B?YQ==?=" xml:lang="en-US" proxy="MSNMSGR" xmlns="http://messenger.msn.com/ws/2004/09/oim/" msnpVer="MSNP15" buildVer="8.5.1288"/><To memberName="b@c.d" xmlns="http://messenger.msn.com/ws/2004/09/oim/"/><Ticket passport="t=TT&amp;p=PP" appid="PROD0119GSJUC$18" lockkey="LOCK" xmlns="http://messenger.msn.com/ws/2004/09/oim/"/><Sequence xmlns="http://schemas.xmlsoap.org/ws/2003/03/rm"><Identifier xmlns="http://schemas.xmlsoap.org/ws/2002/07/utility">http://messenger.msn.com</Identifier><MessageNumber>1</MessageNumber></Sequence></soap:Header><soap:Body><MessageType xmlns="http://messenger.msn.com/ws/2004/09/oim/">text</MessageType><Content xmlns="http://messenger.msn.com/ws/2004/09/oim/">MIME-Version: 1.0
X-OIM-Run-Id: {3A3BE82D-0000}
X-OIM-Sequence-Num: 1

aGk=</Content></soap:Body></soap:Envelope>"#;
        // The Body's first element is MessageType: the operation comes from SOAPAction.
        let mut m = parse(
            xml.as_bytes(),
            "/OimWS/oim.asmx",
            Some("http://messenger.live.com/ws/2006/09/oim/Store2"),
        )
        .unwrap();
        assert_eq!(m.service, SoapService::OimStore);
        assert_eq!(
            m.action.as_deref(),
            Some("http://messenger.live.com/ws/2006/09/oim/Store2")
        );
        assert_eq!(m.operation, "Store2");
        let SoapBody::OimStore(o) = &m.body else {
            panic!("{m:?}")
        };
        assert_eq!(
            (o.from.as_deref(), o.to.as_deref()),
            (Some("a@b.c"), Some("b@c.d"))
        );
        assert_eq!(o.ticket.as_ref().unwrap().expose(), "t=TT&p=PP");
        assert_eq!(o.lock_key.as_ref().unwrap().expose(), "LOCK");
        assert_eq!(o.message_number, Some(1));
        assert_eq!(o.run_id.as_deref(), Some("{3A3BE82D-0000}"));
        m.redact();
        let j = serde_json::to_string(&m).unwrap();
        assert!(!j.contains("TT") && !j.contains("LOCK"), "{j}");
        let xml = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetMetadataResponse xmlns="http://www.hotmail.msn.com/ws/2004/09/oim/rsi">&lt;MD&gt;&lt;M&gt;&lt;T&gt;11&lt;/T&gt;&lt;E&gt;a@b.c&lt;/E&gt;&lt;I&gt;ID-1&lt;/I&gt;&lt;N&gt;Alice&lt;/N&gt;&lt;SZ&gt;900&lt;/SZ&gt;&lt;RT&gt;2026-01-01T00:00:00Z&lt;/RT&gt;&lt;/M&gt;&lt;/MD&gt;</GetMetadataResponse></soap:Body></soap:Envelope>"#;
        let m = p(xml, "/rsi/rsi.asmx");
        assert_eq!(m.service, SoapService::Rsi);
        let SoapBody::OimMetadata { messages } = &m.body else {
            panic!("{m:?}")
        };
        assert_eq!(messages[0].id.as_deref(), Some("ID-1"));
        assert_eq!(messages[0].size, Some(900));
        assert_eq!(messages[0].from.as_deref(), Some("a@b.c"));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(parse(b"\xff\xfe", "/", None), Err(SoapError::NotUtf8));
        assert!(matches!(
            parse(b"<a><b></a>", "/", None),
            Err(SoapError::Xml(_))
        ));
        assert_eq!(
            parse(b"<html><body/></html>", "/", None),
            Err(SoapError::NotSoap)
        );
        // Entity expansion is refused or bounded by roxmltree, never unbounded.
        let bomb = r#"<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;"><!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">]><Envelope><Body><x>&g;&g;&g;&g;&g;&g;&g;&g;</x></Body></Envelope>"#;
        let _ = parse(bomb.as_bytes(), "/", None);
    }
}
