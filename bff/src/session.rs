//! The session payload that travels sealed in the cookie: the token set, the profile pages
//! show, and the timestamps and generation counter that refresh and lifetime rules read.

use serde::{Deserialize, Serialize};

/// A token. Serialized (it has to ride in the sealed cookie) but never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
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
    pub id: String,
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Profile {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: Token,
    /// Unix seconds.
    pub access_expires_at: u64,
    pub refresh_token: Option<Token>,
    /// Unix seconds; `None` when the upstream did not say.
    pub refresh_expires_at: Option<u64>,
}

/// The format of [`Session`]; a cookie of another format is "signed out". Format 1 was JSON
/// (its first byte, `{`, is never 2); format 2 is postcard: the same fields in order, integers
/// as varints, strings length-prefixed, no field names, so a session costs about a fifth of the
/// time and 20 % fewer bytes (BENCHMARKS.md).
pub const SESSION_FORMAT: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub format: u8,
    /// Random, stable for the session's life; names it in logs and in refresh bookkeeping.
    pub id: String,
    /// Incremented each time the tokens change, so an older cookie never overwrites a newer one.
    pub generation: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; for the idle limit.
    pub last_seen_at: u64,
    pub tokens: TokenSet,
    pub profile: Profile,
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
    pub fn new(id: String, now: u64, tokens: TokenSet, profile: Profile) -> Self {
        Session {
            format: SESSION_FORMAT,
            id,
            generation: 1,
            created_at: now,
            last_seen_at: now,
            tokens,
            profile,
        }
    }

    pub fn freshness(&self, now: u64, skew_secs: u64) -> Freshness {
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

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and options to a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// `None` for anything that is not exactly one session of the current format.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.first() != Some(&SESSION_FORMAT) {
            return None;
        }
        match postcard::take_from_bytes::<Session>(bytes) {
            Ok((session, [])) => Some(session),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(access_expires_at: u64, refresh: Option<u64>) -> Session {
        Session::new(
            "sid".into(),
            100,
            TokenSet {
                access_token: Token::new("eyJ.secret.access"),
                access_expires_at,
                refresh_token: refresh.map(|_| Token::new("secret-refresh")),
                refresh_expires_at: refresh,
            },
            Profile { id: "1".into(), name: "A".into(), email: "a@b.co".into(), roles: vec!["admin".into()] },
        )
    }

    #[test]
    fn tokens_never_print() {
        let shown = format!("{:?}", session(200, Some(1000)));
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
