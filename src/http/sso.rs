//! The MSNP15+ SSO answer to `USR t SSO S <policy> <nonce>`: the 128-byte blob (HMAC-SHA1
//! of the nonce and its 3DES-CBC encryption, under keys derived from the RST BinarySecret),
//! computed and verified. Pure functions over strings and bytes; it never logs or keeps
//! the secret.

use base64::Engine;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// Magic of the hash key.
pub const MAGIC_HASH: &[u8] = b"WS-SecureConversationSESSION KEY HASH";
/// Magic of the encryption key.
pub const MAGIC_ENCRYPTION: &[u8] = b"WS-SecureConversationSESSION KEY ENCRYPTION";

/// The blob header: header size, CRYPT_MODE_CBC, CALG_3DES, CALG_SHA1, IV and hash sizes.
const HEADER: [u32; 6] = [28, 1, 0x6603, 0x8004, 8, 20];

/// Why an SSO answer is not the right one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Invalid {
    #[error("the BinarySecret is not base64")]
    BadSecret,
    #[error("the response is not base64")]
    NotBase64,
    #[error("the response blob is {0} bytes, too short")]
    TooShort(usize),
    #[error("the response header is not 28/CBC/3DES/SHA1/8/20")]
    BadHeader,
    #[error("the response's cipher length does not match its size")]
    BadLength,
    #[error("the hash does not match the nonce under this BinarySecret")]
    HashMismatch,
    #[error("the ciphertext does not match the nonce under this BinarySecret")]
    CipherMismatch,
}

/// The outcome of checking a client's SSO answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Valid,
    Invalid(Invalid),
}

impl Verdict {
    pub fn is_valid(&self) -> bool {
        *self == Verdict::Valid
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    // HMAC accepts keys of any length.
    let mut m = <HmacSha1 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The 24-byte key derivation over `key` and a magic string.
pub fn derive_key(key: &[u8], magic: &[u8]) -> [u8; 24] {
    let h1 = hmac(key, &[magic]);
    let h2 = hmac(key, &[&h1, magic]);
    let h3 = hmac(key, &[&h1]);
    let h4 = hmac(key, &[&h3, magic]);
    let mut out = [0u8; 24];
    out[..20].copy_from_slice(&h2);
    out[20..].copy_from_slice(&h4[..4]);
    out
}

/// The nonce as its ASCII text, padded to the 3DES block with PKCS#5 bytes, encrypted.
fn encrypt(key3: &[u8; 24], iv: &[u8; 8], nonce: &[u8]) -> Vec<u8> {
    let pad = 8 - nonce.len() % 8;
    let mut msg = nonce.to_vec();
    msg.extend(std::iter::repeat_n(pad as u8, pad));
    let enc = cbc::Encryptor::<des::TdesEde3>::new(key3.into(), iv.into());
    enc.encrypt_padded_vec_mut::<cbc::cipher::block_padding::NoPadding>(&msg)
}

fn keys(binary_secret_b64: &str) -> Result<([u8; 24], [u8; 24]), Invalid> {
    let key1 = base64::engine::general_purpose::STANDARD
        .decode(binary_secret_b64.trim())
        .map_err(|_| Invalid::BadSecret)?;
    Ok((
        derive_key(&key1, MAGIC_HASH),
        derive_key(&key1, MAGIC_ENCRYPTION),
    ))
}

/// The blob a client sends for `nonce` (used as its text, not decoded), with this IV.
pub fn compute_blob(binary_secret_b64: &str, nonce: &str, iv: [u8; 8]) -> Result<Vec<u8>, Invalid> {
    let (key2, key3) = keys(binary_secret_b64)?;
    let hash = hmac(&key2, &[nonce.as_bytes()]);
    let ct = encrypt(&key3, &iv, nonce.as_bytes());
    let mut blob = Vec::with_capacity(28 + 8 + 20 + ct.len());
    for v in HEADER.iter().copied().chain([ct.len() as u32]) {
        blob.extend_from_slice(&v.to_le_bytes());
    }
    blob.extend_from_slice(&iv);
    blob.extend_from_slice(&hash);
    blob.extend_from_slice(&ct);
    Ok(blob)
}

/// [`compute_blob`] in base64, as it goes on the `USR` line.
pub fn compute_response(
    binary_secret_b64: &str,
    nonce: &str,
    iv: [u8; 8],
) -> Result<String, Invalid> {
    compute_blob(binary_secret_b64, nonce, iv)
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
}

/// Checks a client's answer: its header and sizes, then its hash and ciphertext
/// recomputed with the IV it carries.
pub fn verify(binary_secret_b64: &str, nonce: &str, response_b64: &str) -> Verdict {
    match check(binary_secret_b64, nonce, response_b64) {
        Ok(()) => Verdict::Valid,
        Err(e) => Verdict::Invalid(e),
    }
}

fn check(binary_secret_b64: &str, nonce: &str, response_b64: &str) -> Result<(), Invalid> {
    let (key2, key3) = keys(binary_secret_b64)?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(response_b64.trim())
        .map_err(|_| Invalid::NotBase64)?;
    if blob.len() < 28 + 8 + 20 {
        return Err(Invalid::TooShort(blob.len()));
    }
    let word = |i: usize| {
        u32::from_le_bytes([
            blob[i * 4],
            blob[i * 4 + 1],
            blob[i * 4 + 2],
            blob[i * 4 + 3],
        ])
    };
    if (0..6).any(|i| word(i) != HEADER[i]) {
        return Err(Invalid::BadHeader);
    }
    let cipher_len = word(6) as usize;
    if blob.len() != 28 + 8 + 20 + cipher_len {
        return Err(Invalid::BadLength);
    }
    let mut iv = [0u8; 8];
    iv.copy_from_slice(&blob[28..36]);
    if blob[36..56] != hmac(&key2, &[nonce.as_bytes()]) {
        return Err(Invalid::HashMismatch);
    }
    if blob[56..] != encrypt(&key3, &iv, nonce.as_bytes())[..] {
        return Err(Invalid::CipherMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    const SECRET: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const NONCE: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const BLOB: &str = "HAAAAAEAAAADZgAABIAAAAgAAAAUAAAASAAAAAAAAAAAAAAA7XgT5ohvaZdoXdrWUUcMF2G8OK2JohyYcK5l5MJSitab33scxJeK/RQXcUr0L+R2ZA9CEAzn0izmUzSMp2LZdxSbHtnuxCmptgtoScHp9E26HjQVkA9YJxgK/HM=";

    /// The reference's test vector (msnpiki's first test value).
    #[test]
    fn reference_test_vector() {
        let key1 = base64::engine::general_purpose::STANDARD
            .decode(SECRET)
            .unwrap();
        assert_eq!(key1, vec![0u8; 23]);
        assert_eq!(
            hex(&derive_key(&key1, MAGIC_HASH)),
            "51fecc58efdcf0b3a156dd7fb63b2b35525abb6e44fb28bc"
        );
        let key3 = derive_key(&key1, MAGIC_ENCRYPTION);
        assert_eq!(
            hex(&key3),
            "5fb82627f21ddea543ca19997f4ad06e16aa09a623b78152"
        );
        let blob = compute_blob(SECRET, NONCE, [0; 8]).unwrap();
        assert_eq!(blob.len(), 128);
        assert_eq!(
            hex(&blob[36..56]),
            "ed7813e6886f6997685ddad651470c1761bc38ad"
        );
        assert_eq!(
            hex(&blob[56..]),
            "89a21c9870ae65e4c2528ad69bdf7b1cc4978afd1417714af42fe476640f42100ce7d22ce653348ca762d977149b1ed9eec429a9b60b6849c1e9f44dba1e3415900f5827180afc73"
        );
        assert_eq!(compute_response(SECRET, NONCE, [0; 8]).unwrap(), BLOB);
        assert_eq!(verify(SECRET, NONCE, BLOB), Verdict::Valid);
    }

    #[test]
    fn changed_bytes_are_invalid() {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(BLOB)
            .unwrap();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        for (at, want) in [
            (0, Invalid::BadHeader),
            (24, Invalid::BadLength),
            (40, Invalid::HashMismatch),
            (100, Invalid::CipherMismatch),
        ] {
            let mut b = blob.clone();
            b[at] ^= 1;
            assert_eq!(
                verify(SECRET, NONCE, &b64(&b)),
                Verdict::Invalid(want),
                "byte {at}"
            );
        }
        // The IV is the client's choice: a changed IV alone is caught by the ciphertext.
        let mut b = blob.clone();
        b[30] ^= 1;
        assert_eq!(
            verify(SECRET, NONCE, &b64(&b)),
            Verdict::Invalid(Invalid::CipherMismatch)
        );
        let other_nonce = NONCE.replacen('A', "B", 1);
        assert_eq!(
            verify(SECRET, &other_nonce, BLOB),
            Verdict::Invalid(Invalid::HashMismatch)
        );
        assert_eq!(
            verify("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", NONCE, BLOB),
            Verdict::Invalid(Invalid::HashMismatch)
        );
        assert_eq!(
            verify("!!", NONCE, BLOB),
            Verdict::Invalid(Invalid::BadSecret)
        );
        assert_eq!(
            verify(SECRET, NONCE, "%%%"),
            Verdict::Invalid(Invalid::NotBase64)
        );
        assert_eq!(
            verify(SECRET, NONCE, "AAAA"),
            Verdict::Invalid(Invalid::TooShort(3))
        );
    }

    #[test]
    fn random_iv_roundtrips() {
        let iv = [1, 2, 3, 4, 5, 6, 7, 8];
        let r = compute_response(
            "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
            "nonce of another length",
            iv,
        )
        .unwrap();
        assert!(verify(
            "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",
            "nonce of another length",
            &r
        )
        .is_valid());
    }
}
