//! Sealing cookie values: AES-256-GCM with a versioned envelope, a key id so keys can rotate
//! (several keys open, one seals), and the cookie's name bound in as associated data so a sealed
//! value cannot be moved to another cookie.
//!
//! Envelope (then base64url without padding, which never contains `.`):
//!
//! ```text
//! byte 0      format version (1)
//! byte 1      key id (0-255)
//! bytes 2-13  random 96-bit nonce
//! rest        ciphertext + 128-bit tag;  AAD = "tokenless/v1/" + cookie name
//! ```
//!
//! Opening never panics: anything that is not a value we sealed with a key we still hold is
//! `None`, which callers treat as "signed out".

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 2 + NONCE_LEN;
const AAD_PREFIX: &[u8] = b"tokenless/v1/";

/// Why a key ring cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key given.
    #[error("no keys: give at least one, as `ID:BASE64` with a 32-byte key (generate one with `openssl rand -base64 32`)")]
    Empty,
    /// An entry (its position) is not `ID:BASE64`.
    #[error("key entry {0} is not `ID:BASE64` with ID a number from 0 to 255")]
    Shape(usize),
    /// A key (its id) is not base64.
    #[error("key {0} is not valid base64")]
    Base64(u8),
    #[error(
        "key {id} is {len} bytes; AES-256 needs exactly 32 (generate one with `openssl rand -base64 32`)"
    )]
    /// A key (its id) is not 32 bytes long.
    Length {
        /// The key's id.
        id: u8,
        /// Its length in bytes.
        len: usize,
    },
    /// A key id appears twice.
    #[error("key id {0} appears twice")]
    Duplicate(u8),
}

struct RingKey {
    id: u8,
    cipher: Aes256Gcm,
}

/// The keys that open sealed values; the first one also seals. Never prints key material.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|k| k.id).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).field("sealing_key", &ids.first()).finish()
    }
}

impl KeyRing {
    /// Keys as `(id, 32 bytes)`; the first seals.
    pub fn new(keys: &[(u8, [u8; 32])]) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut ring = Vec::with_capacity(keys.len());
        for (id, bytes) in keys {
            if ring.iter().any(|k: &RingKey| k.id == *id) {
                return Err(KeyError::Duplicate(*id));
            }
            ring.push(RingKey { id: *id, cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)) });
        }
        Ok(KeyRing { keys: ring })
    }

    /// Parses `"2:BASE64,1:BASE64"` (comma or whitespace separated); the first key seals.
    pub fn parse(spec: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (i, entry) in spec.split([',', ' ', '\n', '\t']).filter(|e| !e.is_empty()).enumerate() {
            let (id, b64) = entry.split_once(':').ok_or(KeyError::Shape(i + 1))?;
            let id: u8 = id.trim().parse().map_err(|_| KeyError::Shape(i + 1))?;
            let b64 = b64.trim();
            let bytes = STANDARD
                .decode(b64)
                .or_else(|_| URL_SAFE.decode(b64))
                .or_else(|_| URL_SAFE_NO_PAD.decode(b64))
                .map_err(|_| KeyError::Base64(id))?;
            let bytes: [u8; 32] =
                bytes.as_slice().try_into().map_err(|_| KeyError::Length { id, len: bytes.len() })?;
            keys.push((id, bytes));
        }
        Self::new(&keys)
    }

    /// A ring of one fresh random key (id 0): development only, sessions die with the process.
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        // One key with one id cannot clash or be empty.
        Self::new(&[(0, key)]).unwrap_or_else(|_| unreachable!("a ring of one key is valid"))
    }

    /// A 32-byte secret for `label` derived from each key of the ring (its AES keystream for a
    /// nonce fixed by the label, hashed: every instance with the same keys derives the same
    /// ones, and they reveal nothing of the keys), the sealing key's first:
    /// what is sealed with the first opens with any of them, so instances amid a key rotation
    /// (some already sealing with the new key, others still with the old one, both reading
    /// both) read each other's values — as they read each other's cookies.
    pub fn derive_secrets(&self, label: &str) -> Vec<[u8; 32]> {
        self.keys.iter().map(|key| Self::derive_with(&key.cipher, label)).collect()
    }

    fn derive_with(cipher: &Aes256Gcm, label: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let nonce_bytes: [u8; 32] = Sha256::digest(label.as_bytes()).into();
        let nonce = Nonce::<<Aes256Gcm as AeadCore>::NonceSize>::from_slice(&nonce_bytes[..12]);
        // Encrypting 32 bytes with a valid key cannot fail.
        let stream = cipher
            .encrypt(nonce, Payload { msg: &[0u8; 32], aad: label.as_bytes() })
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption of 32 bytes"));
        Sha256::digest(&stream).into()
    }

    /// The id of the key that seals.
    pub fn sealing_key_id(&self) -> u8 {
        self.keys[0].id
    }

    /// Seals `plaintext` for the cookie called `name`.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        self.seal_with_nonce(name, plaintext, &nonce)
    }

    /// [`KeyRing::seal`] with a given nonce (the known-answer tests pin the envelope's bytes).
    fn seal_with_nonce(&self, name: &str, plaintext: &[u8], nonce: &Nonce<<Aes256Gcm as AeadCore>::NonceSize>) -> String {
        let key = &self.keys[0];
        let aad = aad(name);
        // Encryption with a valid key and nonce fails only past 64 GiB of plaintext.
        let ciphertext = key
            .cipher
            .encrypt(nonce, Payload { msg: plaintext, aad: &aad })
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption of a cookie-sized value"));
        let mut envelope = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        envelope.push(VERSION);
        envelope.push(key.id);
        envelope.extend_from_slice(nonce);
        envelope.extend_from_slice(&ciphertext);
        URL_SAFE_NO_PAD.encode(envelope)
    }

    /// Opens a value sealed for the cookie called `name`; `None` for anything else.
    pub fn open(&self, name: &str, sealed: &str) -> Option<Opened> {
        let envelope = URL_SAFE_NO_PAD.decode(sealed.as_bytes()).ok()?;
        if envelope.len() < HEADER_LEN + 16 || envelope[0] != VERSION {
            return None;
        }
        let id = envelope[1];
        let key = self.keys.iter().find(|k| k.id == id)?;
        let nonce = Nonce::from_slice(&envelope[2..HEADER_LEN]);
        let plaintext =
            key.cipher.decrypt(nonce, Payload { msg: &envelope[HEADER_LEN..], aad: &aad(name) }).ok()?;
        Some(Opened { plaintext, stale_key: id != self.sealing_key_id() })
    }
}

/// An opened value. `stale_key` says it was sealed with a key that no longer seals: the caller
/// should seal it again so that the old key can be retired.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub plaintext: Vec<u8>,
    pub stale_key: bool,
}

fn aad(name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + name.len());
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// A new random key in the form [`KeyRing::parse`] reads, with the given id.
pub fn generate_key_spec(id: u8) -> String {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    format!("{id}:{}", STANDARD.encode(key))
}

/// Largest value one cookie carries here: browsers keep about 4096 bytes for name, value and
/// attributes together; this leaves room for a name like `__Host-tokenless.9` and attributes.
pub const CHUNK_LEN: usize = 3800;

/// Splits a sealed value into the values of the cookies `name`, `name.1`, `name.2`...
/// One chunk is the value itself. Several: the first is `"{count}.{part}"` (a sealed value is
/// base64url and never holds a `.`), so that a stale extra chunk left in the browser is ignored.
pub fn split(sealed: &str) -> Vec<String> {
    if sealed.len() <= CHUNK_LEN {
        return vec![sealed.to_string()];
    }
    // base64url is ASCII, so byte offsets are character boundaries.
    let first_len = CHUNK_LEN - 4;
    let mut parts = vec![&sealed[..first_len]];
    let mut rest = &sealed[first_len..];
    while !rest.is_empty() {
        let n = rest.len().min(CHUNK_LEN);
        parts.push(&rest[..n]);
        rest = &rest[n..];
    }
    let count = parts.len();
    let mut values: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    values[0] = format!("{count}.{}", values[0]);
    values
}

/// The largest number of chunks read back; more is not a session of ours.
pub const MAX_CHUNKS: usize = 10;

/// Joins the values of `name` and its numbered chunks (`get(i)` returns the value of `name.i`).
/// `None` when a chunk is missing or the count is nonsense.
pub fn join(first: &str, get: impl Fn(usize) -> Option<String>) -> Option<String> {
    let Some((count, head)) = first.split_once('.') else {
        return Some(first.to_string());
    };
    let count: usize = count.parse().ok()?;
    if !(2..=MAX_CHUNKS).contains(&count) {
        return None;
    }
    let mut joined = String::with_capacity(count * CHUNK_LEN);
    joined.push_str(head);
    for i in 1..count {
        joined.push_str(&get(i)?);
    }
    Some(joined)
}

/// The name of chunk `i` of cookie `name` (chunk 0 is `name` itself).
pub fn chunk_name(name: &str, i: usize) -> String {
    if i == 0 {
        name.to_string()
    } else {
        format!("{name}.{i}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answer, computed outside this code (Python's `cryptography` AES-GCM): key 3 =
    /// 32 × 0x07, nonce 01..0c, cookie `tokenless_session`, plaintext "known answer". A change of
    /// envelope layout, AAD or cipher makes every cookie in the field unreadable: it fails here.
    const KNOWN_SEALED: &str = "AQMBAgMEBQYHCAkKCwzQEofpBMqDQpZJZ2wsR9TDP2SELKdmNFjv29Dp";

    #[test]
    fn a_derived_secret_is_the_same_for_the_same_key_and_label_only() {
        let ring = KeyRing::new(&[(1, [3; 32])]).unwrap();
        let again = KeyRing::new(&[(1, [3; 32]), (2, [4; 32])]).unwrap();
        let other_key = KeyRing::new(&[(1, [5; 32])]).unwrap();
        let first = |ring: &KeyRing, label: &str| ring.derive_secrets(label)[0];
        let secret = first(&ring, "a");
        assert_eq!(secret, first(&again, "a"), "the sealing key decides, not the others");
        assert_ne!(secret, first(&ring, "b"));
        assert_ne!(secret, first(&other_key, "a"));
        assert_ne!(secret, [3; 32]);
        let secrets = again.derive_secrets("a");
        assert_eq!(secrets, vec![secret, first(&KeyRing::new(&[(2, [4; 32])]).unwrap(), "a")], "one per key, the sealing key's first");
    }

    #[test]
    fn known_answer_envelope() {
        let ring = KeyRing::new(&[(3, [7; 32])]).unwrap();
        let nonce: [u8; 12] = std::array::from_fn(|i| i as u8 + 1);
        let sealed = ring.seal_with_nonce("tokenless_session", b"known answer", Nonce::from_slice(&nonce));
        assert_eq!(sealed, KNOWN_SEALED);
        let opened = ring.open("tokenless_session", KNOWN_SEALED).unwrap();
        assert_eq!(opened.plaintext, b"known answer");
        assert!(!opened.stale_key);
        assert_eq!(ring.open("tokenless_session_form", KNOWN_SEALED), None, "bound to its cookie name");
    }

    fn ring(ids: &[u8]) -> KeyRing {
        let keys: Vec<(u8, [u8; 32])> =
            ids.iter().map(|&id| (id, [id.wrapping_mul(7).wrapping_add(1); 32])).collect();
        KeyRing::new(&keys).unwrap()
    }

    #[test]
    fn round_trip() {
        let r = ring(&[1]);
        let sealed = r.seal("session", b"hello");
        assert!(!sealed.contains('.'));
        let opened = r.open("session", &sealed).unwrap();
        assert_eq!(opened.plaintext, b"hello");
        assert!(!opened.stale_key);
        assert_ne!(r.seal("session", b"hello"), sealed, "fresh nonce each time");
    }

    #[test]
    fn tampered_truncated_garbage_and_empty_are_none() {
        let r = ring(&[1]);
        let sealed = r.seal("session", b"a session payload");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in [0, 1, 2, 13, 14, bytes.len() - 1] {
            bytes[i] ^= 0x01;
            assert_eq!(r.open("session", &URL_SAFE_NO_PAD.encode(&bytes)), None, "flipped byte {i}");
            bytes[i] ^= 0x01;
        }
        for cut in [0, 1, 10, sealed.len() / 2, sealed.len() - 1] {
            assert_eq!(r.open("session", &sealed[..cut]), None, "truncated to {cut}");
        }
        for garbage in ["", "%%%", "not base64 at all!", "AAAA", "eyJhbGciOiJIUzI1NiJ9"] {
            assert_eq!(r.open("session", garbage), None, "{garbage}");
        }
        let huge = "A".repeat(100_000);
        assert_eq!(r.open("session", &huge), None);
    }

    #[test]
    fn bound_to_the_cookie_name() {
        let r = ring(&[1]);
        let sealed = r.seal("session", b"x");
        assert_eq!(r.open("other", &sealed), None);
        assert_eq!(r.open("session.1", &sealed), None);
    }

    #[test]
    fn unknown_key_is_none() {
        let sealed = ring(&[1]).seal("s", b"x");
        assert_eq!(ring(&[2]).open("s", &sealed), None);
    }

    #[test]
    fn rotation_old_key_still_opens_and_is_flagged_stale() {
        let old = ring(&[1]);
        let sealed = old.seal("s", b"x");
        let rotated = ring(&[2, 1]);
        let opened = rotated.open("s", &sealed).unwrap();
        assert_eq!(opened.plaintext, b"x");
        assert!(opened.stale_key);
        let resealed = rotated.seal("s", &opened.plaintext);
        assert!(!rotated.open("s", &resealed).unwrap().stale_key);
        assert_eq!(old.open("s", &resealed), None, "new key not known to the old ring");
        assert_eq!(ring(&[2]).open("s", &sealed), None, "old key retired");
    }

    #[test]
    fn parse_key_specs() {
        let spec = format!("{} , {}", generate_key_spec(3), generate_key_spec(1));
        let r = KeyRing::parse(&spec).unwrap();
        assert_eq!(r.sealing_key_id(), 3);
        assert_eq!(KeyRing::parse("").unwrap_err(), KeyError::Empty);
        assert_eq!(KeyRing::parse("abc").unwrap_err(), KeyError::Shape(1));
        assert_eq!(KeyRing::parse("300:AAAA").unwrap_err(), KeyError::Shape(1));
        assert_eq!(KeyRing::parse("1:@@@").unwrap_err(), KeyError::Base64(1));
        assert_eq!(KeyRing::parse("1:AAAA").unwrap_err(), KeyError::Length { id: 1, len: 3 });
        let one = generate_key_spec(1);
        assert_eq!(KeyRing::parse(&format!("{one},{one}")).unwrap_err(), KeyError::Duplicate(1));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let shown = format!("{:?}", ring(&[4, 2]));
        assert_eq!(shown, "KeyRing { key_ids: [4, 2], sealing_key: Some(4) }");
    }

    fn round_trip_chunks(value: &str) -> Vec<String> {
        let chunks = split(value);
        let back = join(&chunks[0], |i| chunks.get(i).cloned()).unwrap();
        assert_eq!(back, value);
        for c in &chunks {
            assert!(c.len() <= CHUNK_LEN, "chunk of {} bytes", c.len());
        }
        chunks
    }

    #[test]
    fn chunking_boundaries() {
        assert_eq!(round_trip_chunks("abc").len(), 1);
        assert_eq!(round_trip_chunks(&"a".repeat(CHUNK_LEN)).len(), 1);
        assert_eq!(round_trip_chunks(&"a".repeat(CHUNK_LEN + 1)).len(), 2);
        assert_eq!(round_trip_chunks(&"b".repeat(CHUNK_LEN * 2 - 4)).len(), 2);
        assert_eq!(round_trip_chunks(&"b".repeat(CHUNK_LEN * 2 - 3)).len(), 3);
        let r = ring(&[1]);
        let big = r.seal("s", &vec![7u8; 9000]);
        let chunks = round_trip_chunks(&big);
        let joined = join(&chunks[0], |i| chunks.get(i).cloned()).unwrap();
        assert_eq!(r.open("s", &joined).unwrap().plaintext, vec![7u8; 9000]);
    }

    #[test]
    fn missing_or_nonsense_chunks_are_none() {
        let chunks = split(&"c".repeat(CHUNK_LEN * 3));
        assert_eq!(join(&chunks[0], |i| if i == 2 { None } else { chunks.get(i).cloned() }), None);
        assert_eq!(join("1.abc", |_| None), None, "a count of 1 is never written");
        assert_eq!(join("99.abc", |_| Some("x".into())), None, "too many chunks");
        assert_eq!(join("x.abc", |_| None), None);
        // A stale extra chunk in the browser is simply not read.
        let two = split(&"d".repeat(CHUNK_LEN + 10));
        let joined =
            join(&two[0], |i| if i < 2 { two.get(i).cloned() } else { Some("stale".into()) }).unwrap();
        assert_eq!(joined.len(), CHUNK_LEN + 10);
        assert_eq!(chunk_name("n", 0), "n");
        assert_eq!(chunk_name("n", 3), "n.3");
    }
}
