//! Refresh results sealed at rest, for the stores outside this process's memory (Redis,
//! SQLite): AES-256-GCM under a key derived from a server secret and the consumed refresh
//! token's [`TokenKey::seal_material`] (never stored), the store's name for the result as
//! associated data. A dump of a store holds token hashes and ciphertext: nothing that signs
//! anyone in, and a result moved to another name does not open.

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::memory::TokenKey;
use crate::session::TokenSet;

/// Seals with the first secret, opens with any (one per key of the session key ring, the
/// writing key's first: [`crate::KeyRing::derive_secrets`]), so instances amid a key rotation
/// read each other's results.
#[derive(Clone)]
pub(crate) struct ResultSeal {
    secrets: Arc<Vec<[u8; 32]>>,
}

impl ResultSeal {
    /// Without a secret nothing seals or opens (the stores refuse to start without one).
    pub(crate) fn new(secrets: Vec<[u8; 32]>) -> Self {
        ResultSeal { secrets: Arc::new(secrets) }
    }

    fn cipher(secret: &[u8; 32], key: &TokenKey) -> Aes256Gcm {
        let mut derived = Sha256::new();
        derived.update(b"tokenless/v1/redis-result\0");
        derived.update(secret);
        derived.update(key.seal_material());
        Aes256Gcm::new(&derived.finalize())
    }

    /// `tokens` sealed for `key`'s result stored as `name`: base64url of nonce ‖ ciphertext.
    pub(crate) fn seal(&self, key: &TokenKey, name: &str, tokens: &TokenSet) -> Option<String> {
        let plain = postcard::to_allocvec(tokens).ok()?;
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed =
            Self::cipher(self.secrets.first()?, key).encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad: name.as_bytes() }).ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out))
    }

    /// What [`ResultSeal::seal`] made for `key` and `name`, if it opens with any secret.
    pub(crate) fn open(&self, key: &TokenKey, name: &str, sealed: &str) -> Option<TokenSet> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, body) = bytes.split_at(12);
        let plain = self.secrets.iter().find_map(|secret| {
            Self::cipher(secret, key).decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: name.as_bytes() }).ok()
        })?;
        postcard::from_bytes(&plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Token;

    fn tokens() -> TokenSet {
        TokenSet {
            access_token: Token::new("a"),
            access_expires_at: 10,
            refresh_token: Some(Token::new("r")),
            refresh_expires_at: None,
            access_issued_at: 1,
        }
    }

    #[test]
    fn a_result_opens_only_with_its_token_its_name_and_a_secret_of_the_ring() {
        let key = TokenKey::of(&Token::new("consumed"));
        let old = ResultSeal::new(vec![[1; 32]]);
        let sealed = old.seal(&key, "p:result:x", &tokens()).unwrap();
        assert_eq!(old.open(&key, "p:result:x", &sealed), Some(tokens()));
        let rotated = ResultSeal::new(vec![[2; 32], [1; 32]]);
        assert_eq!(rotated.open(&key, "p:result:x", &sealed), Some(tokens()), "a later ring opens it");
        assert_eq!(old.open(&key, "p:result:y", &sealed), None, "moved to another name");
        assert_eq!(old.open(&TokenKey::of(&Token::new("other")), "p:result:x", &sealed), None, "another token");
        assert_eq!(ResultSeal::new(vec![[2; 32]]).open(&key, "p:result:x", &sealed), None, "another secret");
        let mut damaged = sealed.into_bytes();
        let last = damaged.len() - 1;
        damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(old.open(&key, "p:result:x", std::str::from_utf8(&damaged).unwrap()), None, "tampered");
        assert_eq!(ResultSeal::new(Vec::new()).seal(&key, "p:result:x", &tokens()), None, "no secret, nothing sealed");
    }
}
