//! The session payload that travels sealed in the cookie: the token set, the profile pages
//! show, and the timestamps and generation counter that refresh and lifetime rules read.

use serde::{Deserialize, Serialize};

/// A token. Serialized (it has to ride in the sealed cookie) but never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// A token from its text.
    pub fn new(value: impl Into<String>) -> Self {
        Token(value.into())
    }

    /// The token itself, for the one place that sends it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// What the pages may show about the signed-in person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// A stable id for the person (the upstream's, or the email).
    pub id: String,
    /// The name pages show.
    pub name: String,
    /// The email.
    pub email: String,
    /// Roles the upstream grants (`admin`...).
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Profile {
    /// Whether the person has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// The tokens of one sign-in, never printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    /// The access token resource calls carry.
    pub access_token: Token,
    /// Unix seconds.
    pub access_expires_at: u64,
    /// The refresh token, if the upstream issued one.
    pub refresh_token: Option<Token>,
    /// Unix seconds; `None` when the upstream did not say.
    pub refresh_expires_at: Option<u64>,
    /// Unix seconds when the access token was received; 0 when unknown (a format-2 cookie).
    /// With the expiry it gives the token's lifetime, which bounds the refresh skew.
    pub access_issued_at: u64,
}

impl TokenSet {
    /// The token whose revocation ends this sign-in (RFC 7009) and its `token_type_hint`: the
    /// refresh token, else the access token.
    pub fn revocable(&self) -> (&Token, &'static str) {
        match &self.refresh_token {
            Some(refresh) => (refresh, "refresh_token"),
            None => (&self.access_token, "access_token"),
        }
    }
}

/// The sign-in at an OpenID provider a session came from: the provider's names for it, which
/// back-channel logout refers to, and the ID token, which RP-initiated logout hands back as
/// `id_token_hint`. Never printed whole.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSession {
    /// The issuer.
    pub issuer: String,
    /// The person's subject at the issuer.
    pub subject: String,
    /// The provider's session id (`sid`), when its ID token carried one.
    pub session_id: Option<String>,
    /// The ID token of the sign-in.
    pub id_token: Token,
}

impl std::fmt::Debug for ProviderSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSession")
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// The format of [`Session`]; a cookie of an unknown format is "signed out". Format 1 was JSON
/// (its first byte, `{`, is never 2); format 2 is postcard: the same fields in order, integers
/// as varints, strings length-prefixed, no field names, so a session costs about a fifth of the
/// time and 20 % fewer bytes (BENCHMARKS.md). Format 3 adds `access_issued_at` at the end of the
/// token set; format 4 adds the OpenID provider's sign-in ([`ProviderSession`]) at the end.
/// Format-2 and format-3 cookies still open (issued-at unknown; no provider). Field order is the
/// format: the known-answer tests pin the bytes.
pub const SESSION_FORMAT: u8 = 4;

/// Format 3, read only: cookies written before format 4 keep their session.
#[derive(Deserialize)]
struct SessionV3 {
    _format: u8,
    id: String,
    generation: u64,
    created_at: u64,
    last_seen_at: u64,
    tokens: TokenSet,
    profile: Profile,
}

impl From<SessionV3> for Session {
    fn from(v3: SessionV3) -> Self {
        Session {
            format: SESSION_FORMAT,
            id: v3.id,
            generation: v3.generation,
            created_at: v3.created_at,
            last_seen_at: v3.last_seen_at,
            tokens: v3.tokens,
            profile: v3.profile,
            provider: None,
        }
    }
}

/// Format 2, read only: cookies written before format 3 keep their session.
#[derive(Deserialize)]
struct SessionV2 {
    _format: u8,
    id: String,
    generation: u64,
    created_at: u64,
    last_seen_at: u64,
    tokens: TokenSetV2,
    profile: Profile,
}

#[derive(Deserialize)]
struct TokenSetV2 {
    access_token: Token,
    access_expires_at: u64,
    refresh_token: Option<Token>,
    refresh_expires_at: Option<u64>,
}

impl From<SessionV2> for Session {
    fn from(v2: SessionV2) -> Self {
        Session {
            format: SESSION_FORMAT,
            id: v2.id,
            generation: v2.generation,
            created_at: v2.created_at,
            last_seen_at: v2.last_seen_at,
            tokens: TokenSet {
                access_token: v2.tokens.access_token,
                access_expires_at: v2.tokens.access_expires_at,
                refresh_token: v2.tokens.refresh_token,
                refresh_expires_at: v2.tokens.refresh_expires_at,
                access_issued_at: 0,
            },
            profile: v2.profile,
            provider: None,
        }
    }
}

/// What the sealed cookie carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The payload's format version (3 today; older cookies still open).
    pub format: u8,
    /// Random, stable for the session's life; names it in logs and in refresh bookkeeping.
    pub id: String,
    /// Incremented each time the tokens change, so an older cookie never overwrites a newer one.
    pub generation: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; for the idle limit.
    pub last_seen_at: u64,
    /// The upstream's tokens.
    pub tokens: TokenSet,
    /// The signed-in person.
    pub profile: Profile,
    /// The OpenID provider's sign-in, for a session that began at one.
    pub provider: Option<ProviderSession>,
}

/// What to do about a session's access token before using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Use it.
    Fresh,
    /// Expires within the skew window (or has): refresh first.
    Refresh,
    /// Expired and nothing can refresh it: the session is over.
    Over,
}

impl Session {
    /// A new session (generation 1) for tokens just issued.
    pub fn new(id: String, now: u64, tokens: TokenSet, profile: Profile) -> Self {
        Session {
            format: SESSION_FORMAT,
            id,
            generation: 1,
            created_at: now,
            last_seen_at: now,
            tokens,
            profile,
            provider: None,
        }
    }

    /// The refresh skew for this token: `skew_secs`, but at most half the token's lifetime, so
    /// that a token living no longer than the skew (seed 003's 10 s tokens, a provider's 30 s
    /// ones) is not refreshed on every request, and a token just issued never is.
    pub fn effective_skew(&self, skew_secs: u64) -> u64 {
        let t = &self.tokens;
        if t.access_issued_at == 0 {
            return skew_secs;
        }
        skew_secs.min(t.access_expires_at.saturating_sub(t.access_issued_at) / 2)
    }

    /// Whether the access token is good for this request, needs a refresh first (it expires within `skew_secs`, at most half its lifetime), or is over.
    pub fn freshness(&self, now: u64, skew_secs: u64) -> Freshness {
        let skew_secs = self.effective_skew(skew_secs);
        if now.saturating_add(skew_secs) < self.tokens.access_expires_at {
            return Freshness::Fresh;
        }
        let refresh_alive = match (&self.tokens.refresh_token, self.tokens.refresh_expires_at) {
            (None, _) => false,
            (Some(_), Some(at)) => now < at,
            (Some(_), None) => true,
        };
        if refresh_alive {
            Freshness::Refresh
        } else if now < self.tokens.access_expires_at {
            // Inside the skew window with no way to refresh: use it while it lasts.
            Freshness::Fresh
        } else {
            Freshness::Over
        }
    }

    /// The moment the session ends at the latest: it never outlives its refresh token (or,
    /// without one, its access token).
    pub fn ends_at(&self) -> u64 {
        match (&self.tokens.refresh_token, self.tokens.refresh_expires_at) {
            (Some(_), Some(at)) => at,
            (Some(_), None) => u64::MAX,
            (None, _) => self.tokens.access_expires_at,
        }
    }

    /// The payload in its compact binary form (postcard), ready to seal.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and options to a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// `None` for anything that is not exactly one session of the current format (or format 2
    /// or 3, upgraded).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        match bytes.first() {
            Some(&SESSION_FORMAT) => match postcard::take_from_bytes::<Session>(bytes) {
                Ok((session, [])) => Some(session),
                _ => None,
            },
            Some(3) => match postcard::take_from_bytes::<SessionV3>(bytes) {
                Ok((session, [])) => Some(session.into()),
                _ => None,
            },
            Some(2) => match postcard::take_from_bytes::<SessionV2>(bytes) {
                Ok((session, [])) => Some(session.into()),
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers, encoded outside this code (a hand-written postcard encoder in Python):
    /// the fields in declaration order, u64 as LEB128 varints, strings length-prefixed, options
    /// as a 0/1 tag. A reordered, added or retyped field changes these bytes, and every cookie in
    /// the field would read as "signed out": it fails here first.
    const KNOWN_V4: &str = "040830313233616263640380e2cfaa06e4e2cfaa060a6163636573732e6a777490e5cfaa060109726566726573682d310180fcedab06e4e2cfaa0603752d310444616e611064616e61406578616d706c652e636f6d020561646d696e096576616c7561746f72011268747470733a2f2f69642e6578616d706c6503752d3101057369642d370669642e6a7774";
    const KNOWN_V4_NO_PROVIDER: &str = "040830313233616263640380e2cfaa06e4e2cfaa060a6163636573732e6a777490e5cfaa060109726566726573682d310180fcedab06e4e2cfaa0603752d310444616e611064616e61406578616d706c652e636f6d020561646d696e096576616c7561746f7200";
    const KNOWN_V3: &str = "030830313233616263640380e2cfaa06e4e2cfaa060a6163636573732e6a777490e5cfaa060109726566726573682d310180fcedab06e4e2cfaa0603752d310444616e611064616e61406578616d706c652e636f6d020561646d696e096576616c7561746f72";
    const KNOWN_V2: &str = "020830313233616263640380e2cfaa06e4e2cfaa060a6163636573732e6a777490e5cfaa060109726566726573682d310180fcedab0603752d310444616e611064616e61406578616d706c652e636f6d020561646d696e096576616c7561746f72";

    fn known_session() -> Session {
        Session {
            format: SESSION_FORMAT,
            id: "0123abcd".into(),
            generation: 3,
            created_at: 1_700_000_000,
            last_seen_at: 1_700_000_100,
            tokens: TokenSet {
                access_token: Token::new("access.jwt"),
                access_expires_at: 1_700_000_400,
                refresh_token: Some(Token::new("refresh-1")),
                refresh_expires_at: Some(1_702_592_000),
                access_issued_at: 1_700_000_100,
            },
            profile: Profile {
                id: "u-1".into(),
                name: "Dana".into(),
                email: "dana@example.com".into(),
                roles: vec!["admin".into(), "evaluator".into()],
            },
            provider: Some(ProviderSession {
                issuer: "https://id.example".into(),
                subject: "u-1".into(),
                session_id: Some("sid-7".into()),
                id_token: Token::new("id.jwt"),
            }),
        }
    }

    #[test]
    fn known_answer_payload() {
        let known = known_session();
        assert_eq!(hex::encode(known.to_bytes()), KNOWN_V4);
        assert_eq!(Session::from_bytes(&hex::decode(KNOWN_V4).unwrap()), Some(known.clone()));
        let mut without = known.clone();
        without.provider = None;
        assert_eq!(hex::encode(without.to_bytes()), KNOWN_V4_NO_PROVIDER);
        // A format-3 cookie (before the provider's sign-in) keeps its session: no provider.
        assert_eq!(Session::from_bytes(&hex::decode(KNOWN_V3).unwrap()), Some(without.clone()));
        let v4 = hex::decode(KNOWN_V4).unwrap();
        for cut in 0..v4.len() {
            assert_eq!(Session::from_bytes(&v4[..cut]), None, "format 4 cut at {cut}");
        }
        // A format-2 cookie (before `access_issued_at`) keeps its session: issued-at unknown.
        let mut upgraded = without;
        upgraded.tokens.access_issued_at = 0;
        assert_eq!(Session::from_bytes(&hex::decode(KNOWN_V2).unwrap()), Some(upgraded));
        let v2 = hex::decode(KNOWN_V2).unwrap();
        for cut in 0..v2.len() {
            assert_eq!(Session::from_bytes(&v2[..cut]), None, "format 2 cut at {cut}");
        }
    }

    #[test]
    fn the_skew_is_at_most_half_the_tokens_lifetime() {
        let mut s = session(110, Some(1000));
        s.tokens.access_issued_at = 100;
        // A 10-second token with a 30-second skew: refreshed in its last 5 seconds only.
        assert_eq!(s.effective_skew(30), 5);
        assert_eq!(s.freshness(100, 30), Freshness::Fresh, "just issued: never refreshed");
        assert_eq!(s.freshness(104, 30), Freshness::Fresh);
        assert_eq!(s.freshness(105, 30), Freshness::Refresh);
        // A long-lived token keeps the configured skew.
        s.tokens.access_expires_at = 100 + 3600;
        assert_eq!(s.effective_skew(30), 30);
        // Unknown issue time (a format-2 cookie): the configured skew, as before.
        s.tokens.access_issued_at = 0;
        assert_eq!(s.effective_skew(30), 30);
        // Nonsense (issued after it expires) never underflows.
        s.tokens.access_issued_at = 10_000;
        assert_eq!(s.effective_skew(30), 0);
    }

    fn session(access_expires_at: u64, refresh: Option<u64>) -> Session {
        Session::new(
            "sid".into(),
            100,
            TokenSet {
                access_token: Token::new("eyJ.secret.access"),
                access_expires_at,
                refresh_token: refresh.map(|_| Token::new("secret-refresh")),
                refresh_expires_at: refresh,
                access_issued_at: 0,
            },
            Profile { id: "1".into(), name: "A".into(), email: "a@b.co".into(), roles: vec!["admin".into()] },
        )
    }

    #[test]
    fn tokens_never_print() {
        let mut s = session(200, Some(1000));
        s.provider = Some(ProviderSession {
            issuer: "https://id.example".into(),
            subject: "u-1".into(),
            session_id: None,
            id_token: Token::new("eyJ.secret.id"),
        });
        let shown = format!("{s:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn freshness_decision() {
        let s = session(200, Some(1000));
        assert_eq!(s.freshness(100, 30), Freshness::Fresh);
        assert_eq!(s.freshness(169, 30), Freshness::Fresh);
        assert_eq!(s.freshness(170, 30), Freshness::Refresh, "inside the skew window");
        assert_eq!(s.freshness(500, 30), Freshness::Refresh, "expired, refreshable");
        assert_eq!(s.freshness(1000, 30), Freshness::Over, "refresh token expired too");

        let no_refresh = session(200, None);
        assert_eq!(no_refresh.freshness(180, 30), Freshness::Fresh, "nothing to refresh with: use it");
        assert_eq!(no_refresh.freshness(200, 30), Freshness::Over);
    }

    #[test]
    fn lifetime_follows_the_refresh_token() {
        assert_eq!(session(200, Some(1000)).ends_at(), 1000);
        assert_eq!(session(200, None).ends_at(), 200);
    }

    #[test]
    fn bytes_round_trip_and_foreign_bytes_are_none() {
        let s = session(200, Some(1000));
        assert_eq!(Session::from_bytes(&s.to_bytes()), Some(s.clone()));
        let mut other = s.clone();
        other.format = 99;
        assert_eq!(Session::from_bytes(&other.to_bytes()), None);
        assert_eq!(Session::from_bytes(b"{}"), None);
        assert_eq!(Session::from_bytes(b"\xff\x00"), None);
        assert_eq!(Session::from_bytes(b""), None);
        // A format-1 (JSON) cookie from before the change: signed out, not misread.
        assert_eq!(Session::from_bytes(&serde_json::to_vec(&s).unwrap()), None);
        let bytes = s.to_bytes();
        assert_eq!(bytes[0], SESSION_FORMAT);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Session::from_bytes(&longer), None, "trailing bytes");
        for cut in 0..bytes.len() {
            assert_eq!(Session::from_bytes(&bytes[..cut]), None, "cut at {cut}");
        }
        assert!(Profile { id: "".into(), name: "".into(), email: "".into(), roles: vec!["admin".into()] }
            .has_role("admin"));
    }
}
