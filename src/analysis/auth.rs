//! Authentication and challenge annotations: MD5 logins checked against candidate
//! passwords, CHL/QRY responses checked against the known product keys (MSNP6-10 and the
//! MSNP11+ algorithm), TWN and SSO stages. It annotates events; it never changes what a
//! command says and never talks to any server.

use std::collections::HashMap;

use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use crate::event::{Command, Dir, Event, EventKind};
use crate::payload::unb64;
use crate::protocol::tables::{ChallengeKey, Tables};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `hex(md5(challenge + key))`: the MSNP6-10 response (and the MD5 login, salt + password).
pub fn md5_hex(a: &str, b: &str) -> String {
    let mut h = Md5::new();
    h.update(a.as_bytes());
    h.update(b.as_bytes());
    hex(&h.finalize())
}

/// The MSNP11+ challenge response (protocol-facts C.2).
pub fn msnp11_response(challenge: &str, product_id: &str, product_key: &str) -> String {
    let mut h = Md5::new();
    h.update(challenge.as_bytes());
    h.update(product_key.as_bytes());
    let digest = h.finalize();
    let hw: Vec<u64> = digest
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64)
        .collect();
    let m: Vec<u64> = hw.iter().map(|h| h & 0x7FFF_FFFF).collect();
    let mut s = format!("{challenge}{product_id}").into_bytes();
    let pad = 8 - s.len() % 8;
    s.extend(std::iter::repeat_n(b'0', pad));
    let c: Vec<u64> = s
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as u64)
        .collect();
    const P: u64 = 0x7FFF_FFFF;
    let (mut high, mut low) = (0u64, 0u64);
    for pair in c.chunks_exact(2) {
        let mut t = (pair[0] * 0x0E79_A9C1) % P + high;
        t = (t * m[0] + m[1]) % P;
        high = ((pair[1] + t) % P * m[2] + m[3]) % P;
        low = low.wrapping_add(high + t);
    }
    high = (high + m[1]) % P;
    low = (low + m[3]) % P;
    let out = [
        (hw[0] ^ high) as u32,
        (hw[1] ^ low) as u32,
        (hw[2] ^ high) as u32,
        (hw[3] ^ low) as u32,
    ];
    hex(&out
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect::<Vec<u8>>())
}

/// Which known key produces `response` to `challenge`.
pub fn check_challenge(
    keys: &[ChallengeKey],
    challenge: &str,
    product_id: &str,
    response: &str,
    version: Option<u8>,
) -> Value {
    let response = response.trim().to_ascii_lowercase();
    let new_algo = version.map(|v| v >= 11);
    let compute = |k: &ChallengeKey, newer: bool| {
        if newer {
            msnp11_response(challenge, &k.product_id, &k.private_key)
        } else {
            md5_hex(challenge, &k.private_key)
        }
    };
    let algo_name = |newer: bool| if newer { "msnp11" } else { "md5" };
    // First the key named on the QRY line, with the algorithm of the version.
    if let Some(k) = keys.iter().find(|k| k.product_id == product_id) {
        let tries: Vec<bool> = match new_algo {
            Some(n) => vec![n, !n],
            None => vec![true, false],
        };
        for newer in tries {
            if compute(k, newer) == response {
                return json!({"challenge": challenge, "product_id": product_id, "known_key": true,
                    "algorithm": algo_name(newer), "valid": true,
                    "algorithm_matches_version": new_algo.is_none_or(|n| n == newer), "note": k.note});
            }
        }
        return json!({"challenge": challenge, "product_id": product_id, "known_key": true, "valid": false,
            "expected": compute(k, new_algo.unwrap_or(true))});
    }
    // An unknown product id: does any known key answer it?
    for k in keys {
        for newer in [true, false] {
            if compute(k, newer) == response {
                return json!({"challenge": challenge, "product_id": product_id, "known_key": false,
                    "answered_with_key_of": k.product_id, "algorithm": algo_name(newer), "valid": true});
            }
        }
    }
    json!({"challenge": challenge, "product_id": product_id, "known_key": false, "valid": null,
        "note": "no known key produces this response"})
}

#[derive(Default)]
struct ConnAuth {
    salt: Option<String>,
    challenge: Option<String>,
}

/// Annotates login and challenge events of every connection it sees.
pub struct AuthAnnotator {
    keys: Vec<ChallengeKey>,
    passwords: Vec<String>,
    conns: HashMap<u64, ConnAuth>,
}

fn passport_params(s: &str) -> Value {
    let m: Map<String, Value> = s
        .split([',', '&'])
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    Value::Object(m)
}

impl AuthAnnotator {
    pub fn new(tables: &Tables, passwords: Vec<String>) -> Self {
        AuthAnnotator {
            keys: tables.challenge_keys.clone(),
            passwords,
            conns: HashMap::new(),
        }
    }

    /// Forgets a connection (call on close to keep memory flat).
    pub fn close(&mut self, conn: u64) {
        self.conns.remove(&conn);
    }

    pub fn annotate(&mut self, ev: &mut Event) {
        let (conn, dir, version) = (ev.conn, ev.dir, ev.version.map(|v| v.0));
        if matches!(ev.kind, EventKind::Close { .. }) {
            self.close(conn);
            return;
        }
        let EventKind::Command(c) = &mut ev.kind else {
            return;
        };
        let st = self.conns.entry(conn).or_default();
        let a = |i: usize| c.args.get(i).map(String::as_str);
        match (dir, c.cmd.as_str()) {
            (Some(Dir::S2c), "CHL") => {
                if let Some(ch) = a(1).or(a(0)) {
                    st.challenge = Some(ch.to_string());
                }
            }
            (Some(Dir::C2s), "QRY") => {
                let response = String::from_utf8_lossy(c.payload_bytes()).into_owned();
                let product = a(1).unwrap_or("").to_string();
                let v = match &st.challenge {
                    Some(ch) => check_challenge(&self.keys, ch, &product, &response, version),
                    None => {
                        json!({"product_id": product, "valid": null, "note": "no CHL seen on this connection"})
                    }
                };
                c.annotations.insert("challenge".into(), v);
            }
            (Some(d), "USR") => {
                let v = usr_annotation(d, c, st, &self.passwords);
                if let Some(v) = v {
                    c.annotations.insert("auth".into(), v);
                }
            }
            _ => {}
        }
    }
}

fn usr_annotation(dir: Dir, c: &Command, st: &mut ConnAuth, passwords: &[String]) -> Option<Value> {
    let a = |i: usize| c.args.get(i).map(String::as_str);
    let scheme = a(1)?;
    let stage = a(2).unwrap_or("");
    match (dir, scheme, stage) {
        (Dir::S2c, "MD5", "S") => {
            st.salt = a(3).map(str::to_string);
            Some(json!({"scheme": "MD5", "stage": "salt"}))
        }
        (Dir::C2s, "MD5", "S") => {
            let hash = a(3).unwrap_or("").to_ascii_lowercase();
            let mut v =
                json!({"scheme": "MD5", "stage": "response", "salt_seen": st.salt.is_some()});
            match (&st.salt, passwords.is_empty()) {
                (_, true) => {
                    v["password"] =
                        json!({"checked": 0, "note": "give --password or --wordlist to check"})
                }
                (None, false) => {
                    v["password"] = json!({"checked": 0, "note": "the salt (USR MD5 S from the server) was not seen"})
                }
                (Some(salt), false) => {
                    let found = passwords.iter().position(|p| md5_hex(salt, p) == hash);
                    v["password"] = match found {
                        Some(i) => {
                            json!({"checked": i + 1, "matched": true, "candidate": i + 1, "value": passwords[i]})
                        }
                        None => json!({"checked": passwords.len(), "matched": false}),
                    };
                }
            }
            Some(v)
        }
        (_, "MD5" | "TWN" | "SSO" | "CTP" | "SHA", "I") => {
            Some(json!({"scheme": scheme, "stage": "initial", "handle": a(3)}))
        }
        (Dir::S2c, "TWN", "S") => Some(
            json!({"scheme": "TWN", "stage": "passport challenge", "params": passport_params(a(3).unwrap_or(""))}),
        ),
        (Dir::C2s, "TWN", "S") => {
            let p = passport_params(a(3).unwrap_or(""));
            let tickets: Vec<String> = p
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            Some(json!({"scheme": "TWN", "stage": "ticket", "tickets": tickets}))
        }
        (Dir::S2c, "SSO", "S") => Some(json!({"scheme": "SSO", "stage": "nonce", "policy": a(3)})),
        (Dir::C2s, "SSO", "S") => {
            let mut v = json!({"scheme": "SSO", "stage": "ticket and response", "ticket_present": a(3).is_some(), "machine_guid": a(5)});
            if let Some(resp) = a(4).and_then(unb64) {
                v["response"] = sso_response(&resp);
            }
            Some(v)
        }
        (Dir::C2s, "CTP", "S") => Some(
            json!({"scheme": "CTP", "stage": "plain password", "note": "the password travels in clear"}),
        ),
        (Dir::C2s, "SHA", "A") => Some(json!({"scheme": "SHA", "stage": "signed ticket"})),
        (Dir::S2c, "OK", _) => Some(json!({"stage": "success", "handle": a(2)})),
        _ => None,
    }
}

/// The 28-byte header of an SSO (MBI) response blob: little-endian u32 fields.
fn sso_response(b: &[u8]) -> Value {
    if b.len() < 28 {
        return json!({"length": b.len(), "problem": "shorter than the 28-byte header"});
    }
    let u = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    json!({"length": b.len(), "header_size": u(0), "crypt_mode": u(4), "cipher_type": format!("0x{:04x}", u(8)),
        "hash_type": format!("0x{:04x}", u(12)), "iv_length": u(16), "hash_length": u(20), "cipher_length": u(24)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msnp6_vectors_from_the_wiki() {
        // protocol-facts C.2, recomputed there from the wiki's examples.
        assert_eq!(
            md5_hex("11111111111111111111", "Q1P7W2E4J9R8U3S5"),
            "3b6666b60157322b6fc6e41a115968f5"
        );
        assert_eq!(
            md5_hex("12345678901234567890", "Q1P7W2E4J9R8U3S5"),
            "8ba1bb9d6dbf624fee31a2053af5fdd0"
        );
    }

    #[test]
    fn msnp11_vectors() {
        // protocol-facts C.2 (em-msn's spec vectors).
        assert_eq!(
            msnp11_response(
                "22210219642164014968",
                "PROD0090YUAUV{2B",
                "YMM8C_H7KCQ2S_KL"
            ),
            "85ecb0db8f32113df79ce0892b9a102c"
        );
        assert_eq!(
            msnp11_response(
                "11533365622852247127",
                "PROD0113H11T8$X_",
                "RG@XY*28Q5QHS%Q5"
            ),
            "f086d1ded067186deca8dba2231602cf"
        );
    }

    #[test]
    fn check_names_the_key_and_validity() {
        let t = Tables::builtin().unwrap();
        let v = check_challenge(
            &t.challenge_keys,
            "22210219642164014968",
            "PROD0090YUAUV{2B",
            "85ecb0db8f32113df79ce0892b9a102c",
            Some(11),
        );
        assert_eq!(v["valid"], true);
        assert_eq!(v["algorithm"], "msnp11");
        let v = check_challenge(
            &t.challenge_keys,
            "22210219642164014968",
            "PROD0090YUAUV{2B",
            "00000000000000000000000000000000",
            Some(11),
        );
        assert_eq!(v["valid"], false);
        let v = check_challenge(
            &t.challenge_keys,
            "11111111111111111111",
            "msmsgs@msnmsgr.com",
            "3b6666b60157322b6fc6e41a115968f5",
            Some(8),
        );
        assert_eq!(v["valid"], true);
        assert_eq!(v["algorithm"], "md5");
        // A response from a known key under an id nobody knows.
        let v = check_challenge(
            &t.challenge_keys,
            "11111111111111111111",
            "MYCLIENT",
            "3b6666b60157322b6fc6e41a115968f5",
            Some(8),
        );
        assert_eq!(v["answered_with_key_of"], "msmsgs@msnmsgr.com");
    }
}
