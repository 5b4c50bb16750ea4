//! Property tests (proptest) over every input a browser controls: the cookie path (chunk join,
//! envelope open, payload decode), return paths, the cross-site decision and the passthrough's
//! path check. None may panic; nothing may open that was not sealed; nothing unsafe may pass.
//!
//! `make test` runs a short pass (proptest's default 256 cases each, or `PROPTEST_CASES`). The
//! long run is in BENCHMARKS.md:
//! `PROPTEST_CASES=1000000 cargo test --release -p tokenless-bff --lib cookie_path`.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;
use crate::cookies::{self, CookiePolicy, ReadSession};
use crate::csrf;
use crate::passthrough::clean_path;
use crate::redirect::safe_next;
use crate::seal::{self, KeyRing};
use crate::session::{Profile, Session, Token, TokenSet};
use tower_cookies::cookie::{Cookie, SameSite};
use tower_cookies::Cookies;

const NAME: &str = "tokenless_session";

fn ring() -> KeyRing {
    KeyRing::new(&[(1, [42; 32]), (2, [43; 32])]).unwrap()
}

fn a_session(access: String) -> Session {
    Session::new(
        "sid".into(),
        1_000,
        TokenSet {
            access_token: Token::new(access),
            access_expires_at: 2_000,
            refresh_token: Some(Token::new("refresh")),
            refresh_expires_at: Some(9_000),
            access_issued_at: 1_000,
        },
        Profile { id: "1".into(), name: "N".into(), email: "n@example.com".into(), roles: vec![] },
    )
}

/// How a sealed value is damaged before it comes back.
#[derive(Debug, Clone)]
enum Damage {
    FlipBit { at: usize, bit: u8 },
    Truncate(usize),
    Insert { at: usize, byte: u8 },
    Replace { at: usize, byte: u8 },
    Garbage(String),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::FlipBit { at, bit }),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Damage::Insert { at, byte }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Damage::Replace { at, byte }),
        ".{0,600}".prop_map(Damage::Garbage),
    ]
}

fn apply(sealed: &str, d: &Damage) -> String {
    let mut bytes = sealed.as_bytes().to_vec();
    let len = bytes.len().max(1);
    match d {
        Damage::FlipBit { at, bit } => bytes[at % len] ^= 1 << bit,
        Damage::Truncate(at) => bytes.truncate(at % len),
        Damage::Insert { at, byte } => bytes.insert(at % len, *byte),
        Damage::Replace { at, byte } => bytes[at % len] = *byte,
        Damage::Garbage(g) => return g.clone(),
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `d` applied to raw bytes (a payload before sealing).
fn apply_bytes(bytes: &[u8], d: &Damage) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    let len = bytes.len().max(1);
    match d {
        Damage::FlipBit { at, bit } if !bytes.is_empty() => bytes[at % len] ^= 1 << bit,
        Damage::Truncate(at) => bytes.truncate(at % len),
        Damage::Insert { at, byte } => bytes.insert(at % len.min(bytes.len() + 1), *byte),
        Damage::Replace { at, byte } if !bytes.is_empty() => bytes[at % len] = *byte,
        Damage::Garbage(g) => return g.as_bytes().to_vec(),
        _ => {}
    }
    bytes
}

/// Sessions of every shape the payload holds: long and empty strings, any numbers, with and
/// without a refresh token, its end, roles and a provider sign-in.
fn any_session() -> impl Strategy<Value = Session> {
    let text = || "\\PC{0,40}";
    let tokens = (text(), any::<u64>(), proptest::option::of(text()), proptest::option::of(any::<u64>()), any::<u64>()).prop_map(
        |(access, access_expires_at, refresh, refresh_expires_at, access_issued_at)| TokenSet {
            access_token: Token::new(access),
            access_expires_at,
            refresh_token: refresh.map(Token::new),
            refresh_expires_at,
            access_issued_at,
        },
    );
    let profile = (text(), text(), text(), proptest::collection::vec(text(), 0..4))
        .prop_map(|(id, name, email, roles)| Profile { id, name, email, roles });
    let provider = proptest::option::of((text(), text(), proptest::option::of(text()), text()).prop_map(
        |(issuer, subject, session_id, id_token)| crate::session::ProviderSession { issuer, subject, session_id, id_token: Token::new(id_token) },
    ));
    (text(), any::<u64>(), any::<u64>(), any::<u64>(), tokens, profile, provider).prop_map(
        |(id, generation, created_at, last_seen_at, tokens, profile, provider)| {
            let mut session = Session::new(id, created_at, tokens, profile);
            session.generation = generation;
            session.last_seen_at = last_seen_at;
            session.provider = provider;
            session
        },
    )
}

proptest! {
    /// The cookie path end to end: a sealed session, damaged, put in a jar (alone or as one of
    /// the chunks), read back. Never a panic; a value that opens is exactly what was sealed.
    #[test]
    fn cookie_path(access in "[A-Za-z0-9._-]{1,5000}", d in damage(), as_chunk in any::<bool>()) {
        let ring = ring();
        let policy = CookiePolicy::new(NAME, false, SameSite::Lax);
        let session = a_session(access);
        let sealed = ring.seal(NAME, &session.to_bytes());
        let damaged = apply(&sealed, &d);
        let original = URL_SAFE_NO_PAD.decode(&sealed).unwrap();

        // The envelope alone.
        if let Some(opened) = ring.open(NAME, &damaged) {
            prop_assert_eq!(URL_SAFE_NO_PAD.decode(&damaged).ok(), Some(original.clone()), "opened a value that was not sealed");
            prop_assert_eq!(opened.plaintext, session.to_bytes());
        }

        // Through the jar, chunked when long, one chunk damaged.
        let jar = Cookies::default();
        let mut chunks = seal::split(&sealed);
        let which = if as_chunk { chunks.len() - 1 } else { 0 };
        chunks[which] = apply(&chunks[which], &d);
        for (i, value) in chunks.iter().enumerate() {
            // A value the cookie crate would not carry cannot reach us either.
            if value.chars().any(|c| c == ';' || c.is_control()) {
                return Ok(());
            }
            jar.add(Cookie::new(seal::chunk_name(NAME, i), value.clone()));
        }
        match cookies::read(&policy, &ring, &jar) {
            ReadSession::Valid { session: read, .. } => prop_assert_eq!(read, session),
            ReadSession::Invalid | ReadSession::Absent => {}
        }
    }

    /// Real sessions of every shape, encoded, then damaged: the undamaged encoding always comes
    /// back as the same session; a damaged one never panics, and what it decodes to encodes
    /// and decodes to itself.
    #[test]
    fn payload_decode(session in any_session(), d in damage()) {
        let bytes = session.to_bytes();
        prop_assert_eq!(Session::from_bytes(&bytes), Some(session.clone()));
        let damaged = apply_bytes(&bytes, &d);
        if let Some(decoded) = Session::from_bytes(&damaged) {
            prop_assert_eq!(Session::from_bytes(&decoded.to_bytes()), Some(decoded));
        }
    }

    /// Chunk sets as the cookie jar holds them — a first value `"{count}.{head}"` (or a count
    /// that is no number, or none at all), numbered chunks some of which are missing, stale
    /// ones beyond the count — join to exactly the head and the first `count - 1` chunks, or
    /// to nothing when the count is out of range or a chunk it names is missing.
    #[test]
    fn chunk_join(
        // The edges of the allowed range as often as the rest of it.
        count in prop_oneof![0usize..=12, Just(0usize), Just(1usize), Just(2usize), Just(seal::MAX_CHUNKS), Just(seal::MAX_CHUNKS + 1)],
        numbered in any::<bool>(),
        head in "[A-Za-z0-9_-]{0,64}",
        chunks in proptest::collection::vec(proptest::option::weighted(0.9, "[A-Za-z0-9_-]{1,64}"), 0..14),
    ) {
        let first = if numbered { format!("{count}.{head}") } else { head.clone() };
        let get = |i: usize| chunks.get(i - 1).cloned().flatten();
        let joined = seal::join(&first, get);
        if !numbered {
            prop_assert_eq!(joined, Some(head));
        } else if !(2..=seal::MAX_CHUNKS).contains(&count) {
            prop_assert_eq!(joined, None);
        } else {
            let parts: Option<Vec<String>> = (1..count).map(get).collect();
            let expected = parts.map(|parts| format!("{head}{}", parts.concat()));
            prop_assert_eq!(joined, expected);
        }
    }

    /// A return path that passes stays on this site.
    #[test]
    fn return_paths(next in prop_oneof![
        ".{0,80}",
        "(/|//|/\\\\|%2[fF]|%5[cC]|https?:|[a-z]+:|\\.|\\t|\\n| |@|[a-z]){0,12}",
    ]) {
        if let Some(path) = safe_next(&next) {
            prop_assert_eq!(&path, &next);
            prop_assert!(path.starts_with('/'));
            prop_assert!(!path.starts_with("//") && !path.starts_with("/\\"), "{}", path);
            prop_assert!(path.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{:?}", path);
            let lower = path.to_ascii_lowercase();
            prop_assert!(!lower.starts_with("/%2f") && !lower.starts_with("/%5c"), "{}", path);
            // Resolved against this site, it never names another host.
            let resolved = url::Url::parse("https://app.example/").unwrap().join(&path).unwrap();
            prop_assert_eq!(resolved.host_str(), Some("app.example"), "{}", path);
        }
    }

    /// The cross-site decision: never a panic; a state-changing request whose Fetch Metadata
    /// or Origin names another site never passes.
    #[test]
    fn cross_site(
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PUT), Just(Method::DELETE), Just(Method::PATCH)],
        site in proptest::option::of(prop_oneof![Just("same-origin".to_string()), Just("same-site".to_string()), Just("cross-site".to_string()), Just("none".to_string()), "[ -~]{0,20}"]),
        origin in proptest::option::of(prop_oneof![Just("https://app.example".to_string()), Just("https://evil.test".to_string()), Just("null".to_string()), "[ -~]{0,40}"]),
        extra in proptest::collection::vec(("[a-z-]{1,20}", "[ -~]{0,40}"), 0..4),
    ) {
        let mut headers = HeaderMap::new();
        for (k, v) in &extra {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v.as_str())) {
                headers.append(k, v);
            }
        }
        if let Some(site) = &site {
            if let Ok(v) = HeaderValue::try_from(site.as_str()) { headers.insert("sec-fetch-site", v); }
        }
        if let Some(origin) = &origin {
            if let Ok(v) = HeaderValue::try_from(origin.as_str()) { headers.insert("origin", v); }
        }
        let decision = csrf::check(&method, &headers, "https://app.example");
        let fetch_site: Vec<_> = headers.get_all("sec-fetch-site").iter().collect();
        let origins: Vec<_> = headers.get_all("origin").iter().collect();
        if !csrf::is_safe(&method) {
            if fetch_site.iter().any(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site") {
                prop_assert!(decision.is_err(), "{:?}", headers);
            }
            if fetch_site.is_empty() && origins.iter().any(|v| !v.as_bytes().eq_ignore_ascii_case(b"https://app.example")) {
                prop_assert!(decision.is_err(), "{:?}", headers);
            }
        }
    }

    /// The passthrough's path check: what passes is plain segments only.
    #[test]
    fn passthrough_paths(raw in prop_oneof![
        ".{0,60}",
        "(/|\\.|\\.\\.|%2[eEfF]|%25|%5[cC]|;|\\\\|[a-z0-9]{1,4}|\\?|#){0,14}",
    ]) {
        if let Some(path) = clean_path(&raw) {
            prop_assert!(path.starts_with('/'));
            for segment in path[1..].split('/') {
                prop_assert!(!segment.is_empty(), "{}", raw);
                prop_assert!(segment != "." && segment != "..", "{}", raw);
                prop_assert!(segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)), "{}", raw);
            }
        }
    }
}

#[test]
fn a_sealed_session_survives_the_jar() {
    let ring = ring();
    let policy = CookiePolicy::new(NAME, false, SameSite::Lax);
    let jar = Cookies::default();
    let session = a_session("x".repeat(9000));
    cookies::write(&policy, &ring, &jar, &session, Duration::from_secs(60));
    assert!(matches!(cookies::read(&policy, &ring, &jar), ReadSession::Valid { session: s, .. } if s == session));
}
