//! The session cookie on the wire: its name and attributes (built here and nowhere else), and
//! reading, writing and clearing it through tower-cookies, chunks included.

use std::time::Duration;

use tower_cookies::cookie::SameSite;
use tower_cookies::{Cookie, Cookies};

use crate::seal::{chunk_name, join, split, KeyRing, MAX_CHUNKS};
use crate::session::Session;

/// How the session cookie is named and which attributes it carries.
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    /// The full name, `__Host-` prefix included when `secure`.
    name: String,
    secure: bool,
    same_site: SameSite,
}

impl CookiePolicy {
    /// `secure` (the site is served over https) adds the `Secure` attribute and the `__Host-`
    /// prefix, which makes browsers refuse the cookie from plain http, from a subdomain or with
    /// another path.
    pub fn new(base_name: &str, secure: bool, same_site: SameSite) -> Self {
        let name = if secure { format!("__Host-{base_name}") } else { base_name.to_string() };
        CookiePolicy { name, secure, same_site }
    }

    /// The cookie's name as the browser sees it (`__Host-` prefixed when secure).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the cookie is `Secure` (the site is served over https).
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Every cookie Tokenless sets is built here: HttpOnly, Path=/, no Domain, SameSite and
    /// Secure per the policy.
    fn build(&self, name: String, value: String, max_age: Duration) -> Cookie<'static> {
        Cookie::build((name, value))
            .http_only(true)
            .secure(self.secure)
            .same_site(self.same_site)
            .path("/")
            .max_age(tower_cookies::cookie::time::Duration::seconds(
                i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
            ))
            .build()
    }

    /// A cookie that must come back on a top-level navigation from another site (an OpenID
    /// provider's redirect to the callback): SameSite=Lax whatever the session cookie's.
    fn build_lax(&self, name: String, value: String, max_age: Duration) -> Cookie<'static> {
        let mut cookie = self.build(name, value, max_age);
        cookie.set_same_site(SameSite::Lax);
        cookie
    }

    /// The same cookie with attributes that let a browser match and delete it.
    fn removal(&self, name: String) -> Cookie<'static> {
        self.build(name, String::new(), Duration::ZERO)
    }
}

/// What the request's cookies held.
#[derive(Debug)]
pub enum ReadSession {
    /// No session cookie at all.
    Absent,
    /// A cookie that does not open: tampered, truncated, sealed with a retired key, moved from
    /// another cookie, or garbage. Treated as signed out.
    Invalid,
    Valid {
        session: Session,
        /// Sealed with a key that no longer seals: write it again.
        stale_key: bool,
    },
}

/// Reads the session from the request's cookies.
pub fn read(policy: &CookiePolicy, ring: &KeyRing, cookies: &Cookies) -> ReadSession {
    let Some(first) = cookies.get(&policy.name) else {
        return ReadSession::Absent;
    };
    let sealed =
        join(first.value(), |i| cookies.get(&chunk_name(&policy.name, i)).map(|c| c.value().to_string()));
    let opened = sealed.and_then(|sealed| ring.open(&policy.name, &sealed));
    match opened.and_then(|o| Session::from_bytes(&o.plaintext).map(|s| (s, o.stale_key))) {
        Some((session, stale_key)) => ReadSession::Valid { session, stale_key },
        None => ReadSession::Invalid,
    }
}

/// Seals and writes the session, lasting `max_age`, and deletes chunks left from a larger
/// earlier value.
pub fn write(policy: &CookiePolicy, ring: &KeyRing, cookies: &Cookies, session: &Session, max_age: Duration) {
    let sealed = ring.seal(&policy.name, &session.to_bytes());
    let parts = split(&sealed);
    let count = parts.len();
    for (i, value) in parts.into_iter().enumerate() {
        cookies.add(policy.build(chunk_name(&policy.name, i), value, max_age));
    }
    remove_chunks_from(policy, cookies, count);
}

/// Deletes the session cookie and every chunk of it the browser sent.
pub fn clear(policy: &CookiePolicy, cookies: &Cookies) {
    remove_chunks_from(policy, cookies, 0);
}

fn remove_chunks_from(policy: &CookiePolicy, cookies: &Cookies, from: usize) {
    for i in from..MAX_CHUNKS {
        let name = chunk_name(&policy.name, i);
        if cookies.get(&name).is_some() {
            // tower-cookies sends a removal only for cookies the request carried; one added in
            // this same request is simply dropped.
            cookies.remove(policy.removal(name));
        }
    }
}

/// How long the form-memory cookie lives: the browser is sent straight back to the form.
pub const FORM_MEMORY_MAX_AGE: Duration = Duration::from_secs(60);

impl CookiePolicy {
    /// The form-memory cookie's name: the session cookie's, prefix included, plus `_form`.
    pub fn form_memory_name(&self) -> String {
        format!("{}_form", self.name)
    }
}

/// Seals `bytes` into the form-memory cookie: what a failed plain form post typed, for the page
/// the browser is sent back to. One cookie, no chunks: `false` (and nothing written) when the
/// sealed value would not fit.
pub fn write_form_memory(policy: &CookiePolicy, ring: &KeyRing, cookies: &Cookies, bytes: &[u8]) -> bool {
    let name = policy.form_memory_name();
    let sealed = ring.seal(&name, bytes);
    if sealed.len() > crate::seal::CHUNK_LEN {
        return false;
    }
    cookies.add(policy.build(name, sealed, FORM_MEMORY_MAX_AGE));
    true
}

/// Takes the form memory: deletes the cookie whatever it holds and returns its bytes when it
/// opens (`None` when absent, tampered, moved from another cookie or sealed with a retired key).
pub fn take_form_memory(policy: &CookiePolicy, ring: &KeyRing, cookies: &Cookies) -> Option<Vec<u8>> {
    let name = policy.form_memory_name();
    let value = cookies.get(&name)?.value().to_string();
    cookies.remove(policy.removal(name.clone()));
    ring.open(&name, &value).map(|opened| opened.plaintext)
}

/// How long a sign-in begun at an OpenID provider may take: its pending cookie's life.
pub const PENDING_MAX_AGE: Duration = Duration::from_secs(600);

/// Sign-ins a browser may have begun in parallel (one per tab); beginning one more forgets the
/// others.
pub const PENDING_MAX: usize = 4;

impl CookiePolicy {
    /// The cookie of the sign-in begun with `state`: the session cookie's name, prefix
    /// included, `_oidc_` and the state. `None` for a state that is not a short token
    /// (`[A-Za-z0-9_-]{8,64}`: it comes back in a URL anyone can write).
    pub fn pending_name(&self, state: &str) -> Option<String> {
        let ok = (8..=64).contains(&state.len())
            && state.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| format!("{}_oidc_{state}", self.name))
    }
}

/// Seals `bytes` into the pending cookie of the sign-in begun with `state`; `false` (nothing
/// written) for a state [`CookiePolicy::pending_name`] refuses or a value that would not fit.
/// At [`PENDING_MAX`] pending sign-ins, the others are forgotten first.
pub fn write_pending(policy: &CookiePolicy, ring: &KeyRing, cookies: &Cookies, state: &str, bytes: &[u8]) -> bool {
    let Some(name) = policy.pending_name(state) else {
        return false;
    };
    let sealed = ring.seal(&name, bytes);
    if sealed.len() > crate::seal::CHUNK_LEN {
        return false;
    }
    let prefix = format!("{}_oidc_", policy.name);
    let others: Vec<String> =
        cookies.list().into_iter().map(|c| c.name().to_string()).filter(|n| n.starts_with(&prefix)).collect();
    if others.len() >= PENDING_MAX {
        for other in others {
            cookies.remove(policy.removal(other));
        }
    }
    cookies.add(policy.build_lax(name, sealed, PENDING_MAX_AGE));
    true
}

/// Takes the pending sign-in begun with `state`: deletes its cookie whatever it holds and
/// returns the bytes when it opens (`None` when absent, tampered, moved from another cookie or
/// sealed with a retired key).
pub fn take_pending(policy: &CookiePolicy, ring: &KeyRing, cookies: &Cookies, state: &str) -> Option<Vec<u8>> {
    let name = policy.pending_name(state)?;
    let value = cookies.get(&name)?.value().to_string();
    cookies.remove(policy.build_lax(name.clone(), String::new(), Duration::ZERO));
    ring.open(&name, &value).map(|opened| opened.plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Profile, Token, TokenSet};

    fn ring(id: u8) -> KeyRing {
        KeyRing::new(&[(id, [id.wrapping_add(3); 32])]).unwrap()
    }

    fn session(access_len: usize) -> Session {
        Session::new(
            "sid".into(),
            1_000,
            TokenSet {
                access_token: Token::new("a".repeat(access_len)),
                access_expires_at: 2_000,
                refresh_token: Some(Token::new("refresh")),
                refresh_expires_at: Some(9_000),
                access_issued_at: 1_000,
            },
            Profile { id: "7".into(), name: "Dana".into(), email: "d@example.com".into(), roles: vec![] },
        )
    }

    const DAY: Duration = Duration::from_secs(86_400);

    /// A jar holding exactly `pairs`, as if the browser had sent them.
    fn jar(pairs: &[(String, String)]) -> Cookies {
        let cookies = Cookies::default();
        for (name, value) in pairs {
            cookies.add(Cookie::new(name.clone(), value.clone()));
        }
        cookies
    }

    fn sent(cookies: &Cookies) -> Vec<(String, String)> {
        cookies.list().iter().map(|c| (c.name().to_string(), c.value().to_string())).collect()
    }

    fn valid(read: ReadSession) -> (Session, bool) {
        match read {
            ReadSession::Valid { session, stale_key } => (session, stale_key),
            other => panic!("expected a session, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_and_attributes() {
        let policy = CookiePolicy::new("tokenless_session", false, SameSite::Lax);
        let cookies = Cookies::default();
        write(&policy, &ring(1), &cookies, &session(100), DAY);
        let list = cookies.list();
        assert_eq!(list.len(), 1);
        let c = &list[0];
        assert_eq!(c.name(), "tokenless_session");
        assert_eq!(c.http_only(), Some(true));
        assert_eq!(c.path(), Some("/"));
        assert_eq!(c.same_site(), Some(SameSite::Lax));
        assert_eq!(c.secure(), Some(false));
        assert_eq!(c.domain(), None);
        assert_eq!(c.max_age().map(|d| d.whole_seconds()), Some(86_400));
        let (back, stale) = valid(read(&policy, &ring(1), &jar(&sent(&cookies))));
        assert_eq!(back, session(100));
        assert!(!stale);
    }

    #[test]
    fn https_sites_get_secure_host_cookies() {
        let policy = CookiePolicy::new("tokenless_session", true, SameSite::Strict);
        let cookies = Cookies::default();
        write(&policy, &ring(1), &cookies, &session(10), DAY);
        let c = &cookies.list()[0];
        assert_eq!(c.name(), "__Host-tokenless_session");
        assert_eq!(c.secure(), Some(true));
        assert_eq!(c.same_site(), Some(SameSite::Strict));
    }

    #[test]
    fn anything_else_is_signed_out_never_a_panic() {
        let policy = CookiePolicy::new("s", false, SameSite::Lax);
        let cookies = Cookies::default();
        write(&policy, &ring(1), &cookies, &session(50), DAY);
        let value = sent(&cookies)[0].1.clone();
        let mut flipped = value.clone().into_bytes();
        let mid = flipped.len() / 2;
        flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
        let cases: Vec<(&str, String)> = vec![
            ("tampered", String::from_utf8(flipped).unwrap()),
            ("truncated", value[..value.len() - 5].to_string()),
            ("empty", String::new()),
            ("garbage", "not a sealed value at all %%%".into()),
            ("chunk count without chunks", format!("3.{value}")),
            ("absurd chunk count", format!("99999999999999999999.{value}")),
        ];
        for (what, v) in cases {
            assert!(
                matches!(read(&policy, &ring(1), &jar(&[("s".into(), v)])), ReadSession::Invalid),
                "{what}"
            );
        }
        // Sealed for another cookie name, moved here.
        let other = CookiePolicy::new("other", false, SameSite::Lax);
        let moved = jar(&[("s".into(), ring(1).seal("other", &session(5).to_bytes()))]);
        assert!(matches!(read(&policy, &ring(1), &moved), ReadSession::Invalid));
        assert!(matches!(read(&other, &ring(1), &moved), ReadSession::Absent));
        // Sealed with a key the ring does not hold.
        assert!(matches!(read(&policy, &ring(2), &jar(&sent(&cookies))), ReadSession::Invalid));
        // Sealed by us, but not a session.
        let not_session = jar(&[("s".into(), ring(1).seal("s", b"{\"hello\":1}"))]);
        assert!(matches!(read(&policy, &ring(1), &not_session), ReadSession::Invalid));
    }

    #[test]
    fn rotation_reads_old_keys_and_rewrites_with_the_new_one() {
        let policy = CookiePolicy::new("s", false, SameSite::Lax);
        let old_ring = KeyRing::new(&[(1, [4; 32])]).unwrap();
        let new_ring = KeyRing::new(&[(2, [5; 32]), (1, [4; 32])]).unwrap();
        let cookies = Cookies::default();
        write(&policy, &old_ring, &cookies, &session(20), DAY);
        let (s, stale) = valid(read(&policy, &new_ring, &jar(&sent(&cookies))));
        assert!(stale, "sealed with a key that no longer seals");
        let rewritten = Cookies::default();
        write(&policy, &new_ring, &rewritten, &s, DAY);
        let (_, stale) = valid(read(&policy, &new_ring, &jar(&sent(&rewritten))));
        assert!(!stale);
        // Once key 1 is retired, the old cookie is no longer a session.
        let retired = KeyRing::new(&[(2, [5; 32])]).unwrap();
        assert!(matches!(read(&policy, &retired, &jar(&sent(&cookies))), ReadSession::Invalid));
    }

    #[test]
    fn large_sessions_are_chunked_and_stale_chunks_removed() {
        let policy = CookiePolicy::new("s", false, SameSite::Lax);
        let cookies = Cookies::default();
        write(&policy, &ring(1), &cookies, &session(9_000), DAY);
        let big = sent(&cookies);
        assert!(big.len() >= 3, "{} chunks", big.len());
        assert!(big.iter().all(|(n, v)| n.starts_with('s') && v.len() <= crate::seal::CHUNK_LEN));
        let browser = jar(&big);
        assert_eq!(valid(read(&policy, &ring(1), &browser)).0, session(9_000));
        // A missing middle chunk is not a session.
        let holey: Vec<(String, String)> = big.iter().filter(|(n, _)| n != "s.1").cloned().collect();
        assert!(matches!(read(&policy, &ring(1), &jar(&holey)), ReadSession::Invalid));
        // Writing a small session over it leaves only one cookie.
        write(&policy, &ring(1), &browser, &session(10), DAY);
        let names: Vec<String> = sent(&browser).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["s".to_string()]);
        // Clearing removes everything.
        let browser = jar(&big);
        clear(&policy, &browser);
        assert!(browser.list().is_empty());
    }

    #[test]
    fn pending_sign_ins_are_per_state_lax_bounded_and_refuse_strange_states() {
        let policy = CookiePolicy::new("tokenless_session", true, SameSite::Strict);
        let ring = ring(1);
        let cookies = jar(&[]);
        assert!(write_pending(&policy, &ring, &cookies, "stateAAAAAAAA", b"one"));
        assert!(write_pending(&policy, &ring, &cookies, "stateBBBBBBBB", b"two"));
        let written = cookies.get("__Host-tokenless_session_oidc_stateAAAAAAAA").unwrap();
        assert_eq!(written.same_site(), Some(SameSite::Lax), "comes back on the provider's redirect");
        assert_eq!((written.http_only(), written.secure()), (Some(true), Some(true)));
        for strange in ["", "short", "a/b/c/d/e/f", "has space in it", &"x".repeat(65), "état-accentué"] {
            assert!(!write_pending(&policy, &ring, &cookies, strange, b"x"), "{strange:?}");
            assert_eq!(take_pending(&policy, &ring, &cookies, strange), None, "{strange:?}");
        }
        // A browser sends both back: each state opens its own.
        let back = jar(&sent(&cookies));
        assert_eq!(take_pending(&policy, &ring, &back, "stateBBBBBBBB").as_deref(), Some(&b"two"[..]));
        assert_eq!(take_pending(&policy, &ring, &back, "stateAAAAAAAA").as_deref(), Some(&b"one"[..]));
        // Moved to another state's name: does not open.
        let moved = jar(&[(
            "__Host-tokenless_session_oidc_stateCCCCCCCC".to_string(),
            cookies.get("__Host-tokenless_session_oidc_stateAAAAAAAA").unwrap().value().to_string(),
        )]);
        assert_eq!(take_pending(&policy, &ring, &moved, "stateCCCCCCCC"), None);
        // Bounded: a fifth sign-in forgets the four before it.
        let many = jar(&[]);
        for i in 0..PENDING_MAX {
            assert!(write_pending(&policy, &ring, &many, &format!("state{i:08}"), b"x"));
        }
        assert!(write_pending(&policy, &ring, &many, "stateLAST0000", b"last"));
        let left = jar(&sent(&many));
        assert_eq!(take_pending(&policy, &ring, &left, "state00000000"), None);
        assert_eq!(take_pending(&policy, &ring, &left, "stateLAST0000").as_deref(), Some(&b"last"[..]));
    }

    #[test]
    fn form_memory_round_trip_and_refusals() {
        let policy = CookiePolicy::new("s", true, SameSite::Lax);
        let name = policy.form_memory_name();
        assert_eq!(name, "__Host-s_form");

        let out = jar(&[]);
        assert!(write_form_memory(&policy, &ring(1), &out, b"typed"));
        let c = out.get(&name).expect("written");
        assert!(c.http_only().unwrap_or(false) && c.secure().unwrap_or(false));
        assert_eq!(c.max_age(), Some(tower_cookies::cookie::time::Duration::seconds(60)));
        assert!(!c.value().contains("typed"), "sealed");

        let back = jar(&[(name.clone(), c.value().to_string())]);
        assert_eq!(take_form_memory(&policy, &ring(1), &back).as_deref(), Some(&b"typed"[..]));
        assert!(back.get(&name).is_none(), "taken: deleted");

        // Tampered, another key, the session cookie's value moved in, garbage: none, deleted.
        let mut flipped = c.value().to_string().into_bytes();
        flipped[20] ^= 1;
        let session_value = ring(1).seal(policy.name(), b"typed");
        for value in [String::from_utf8(flipped).unwrap(), session_value, "%%%".into()] {
            let j = jar(&[(name.clone(), value)]);
            assert_eq!(take_form_memory(&policy, &ring(1), &j), None);
            assert!(j.get(&name).is_none());
        }
        let other_key = jar(&[(name.clone(), c.value().to_string())]);
        assert_eq!(take_form_memory(&policy, &ring(2), &other_key), None);
        assert_eq!(take_form_memory(&policy, &ring(1), &jar(&[])), None, "absent");

        // Too big for one cookie: nothing written.
        let big = jar(&[]);
        assert!(!write_form_memory(&policy, &ring(1), &big, &[b'x'; 4000]));
        assert!(big.get(&name).is_none());
    }
}
