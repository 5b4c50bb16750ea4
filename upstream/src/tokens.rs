//! Token material: signed JWT access tokens, opaque random refresh tokens, and the hashes the
//! store keeps instead of refresh tokens themselves.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What an access token says. `sid` names the token family (one sign-in) it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    pub sid: String,
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

/// Signs and checks access tokens (HS256).
pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(key: &[u8], issuer: &str) -> Self {
        Signer {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            issuer: issuer.into(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// Checks the signature, algorithm and issuer. Expiry is the store's business (it has the
    /// clock), so it is not checked here.
    pub fn verify(&self, token: &str) -> Option<AccessClaims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation).ok().map(|d| d.claims)
    }
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A fresh refresh token: 32 random bytes (256 bits), base64url.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The key under which a refresh token is stored: its SHA-256. The token itself is not kept.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A random signing key for a run that was given none.
pub fn random_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "me".into(),
            sub: "u1".into(),
            aud: "c".into(),
            exp: 10,
            iat: 1,
            jti: "j".into(),
            sid: "s".into(),
            roles: vec!["user".into()],
            scope: String::new(),
        }
    }

    #[test]
    fn signed_token_verifies_and_forgeries_do_not() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef", "me");
        let token = signer.sign(&claims()).unwrap();
        assert!(token.starts_with("eyJ"));
        assert_eq!(signer.verify(&token), Some(claims()));

        let other = Signer::new(b"another key, another key, another", "me");
        assert_eq!(other.verify(&token), None, "wrong key");
        let wrong_issuer = Signer::new(b"0123456789abcdef0123456789abcdef", "someone else");
        assert_eq!(wrong_issuer.verify(&token), None, "wrong issuer");

        let mut parts: Vec<&str> = token.split('.').collect();
        let tampered_payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"me","sub":"admin","exp":99,"iat":1}"#);
        parts[1] = &tampered_payload;
        assert_eq!(signer.verify(&parts.join(".")), None, "tampered payload");
        assert_eq!(signer.verify("garbage"), None);
        assert_eq!(signer.verify(""), None);
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
