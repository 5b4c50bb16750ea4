//! Ending sessions together with the provider. RP-initiated logout: where to send the browser
//! so that the provider's session ends too ([`OidcProvider::end_session_url`]: its
//! `end_session_endpoint` with the session's ID token as `id_token_hint`). Back-channel logout:
//! the provider's `logout_token`, checked per OpenID Connect Back-Channel Logout 1.0 §2.6 on
//! `jsonwebtoken` ([`check_logout_token`]: signature with the provider's keys and asymmetric
//! algorithms, `iss`, `aud`, `iat` within [`LOGOUT_TOKEN_WINDOW_SECS`], `exp` when present, the
//! `events` member, `sid` and/or `sub`, no `nonce`, a `jti`), whose sessions the routes then end.

use std::str::FromStr;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::flow::OidcProvider;
use crate::session::ProviderSession;

/// The `events` member a logout token must carry.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How old a logout token may be (its `iat`); its `jti` is remembered this long (plus the clock
/// skew), after which the token is refused as stale anyway.
pub const LOGOUT_TOKEN_WINDOW_SECS: u64 = 300;

/// How far the provider's clock may be ahead of ours.
const CLOCK_SKEW_SECS: u64 = 60;

/// How long a used `jti` is remembered: as long as its token could still be accepted (issued up
/// to the skew ahead, accepted for the window, whole seconds rounded either way).
pub const LOGOUT_JTI_MEMORY_SECS: u64 = LOGOUT_TOKEN_WINDOW_SECS + CLOCK_SKEW_SECS + 2;

/// The longest `sid`, `sub` or `jti` accepted (they become keys of the ended-session memory).
pub const LOGOUT_CLAIM_MAX: usize = 255;

/// The longest logout token read; a provider's are well under 4 KiB.
pub const LOGOUT_TOKEN_MAX: usize = 16 * 1024;

/// Why a logout token was refused (the back-channel endpoint answers 400 with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutTokenError {
    /// Not a JWS of three parts with a readable header.
    #[error("not a signed JWT")]
    Malformed,
    /// Longer than [`LOGOUT_TOKEN_MAX`].
    #[error("longer than {LOGOUT_TOKEN_MAX} bytes")]
    TooLong,
    /// An algorithm the provider does not sign its tokens with, or a MAC (`none` is not even
    /// read: [`LogoutTokenError::Malformed`]).
    #[error("signed with {0}, which is not one of the provider's asymmetric algorithms")]
    Algorithm(String),
    /// Its `typ` is neither `logout+jwt` nor `JWT`.
    #[error("its typ is {0:?}")]
    Type(String),
    /// None of the provider's keys is the one it names (or, without a key id, exactly one fits).
    #[error("none of the provider's keys signed it")]
    UnknownKey,
    /// The signature, `iss`, `aud` or `exp` is wrong.
    #[error("refused: {0}")]
    Invalid(String),
    /// Issued too long ago, in the future, or without saying when (`iat`).
    #[error("not issued within the last {LOGOUT_TOKEN_WINDOW_SECS} s")]
    Stale,
    /// It carries a `nonce` (an ID token is not a logout token).
    #[error("it carries a nonce")]
    Nonce,
    /// No back-channel logout event in `events`.
    #[error("no back-channel logout event")]
    NoEvent,
    /// Neither `sid` nor `sub`.
    #[error("it names neither a session (sid) nor a person (sub)")]
    NoSubject,
    /// A `sid`, `sub` or `jti` longer than [`LOGOUT_CLAIM_MAX`].
    #[error("its {0} is longer than {LOGOUT_CLAIM_MAX} bytes")]
    TooLongClaim(&'static str),
    /// No `jti`.
    #[error("it has no jti")]
    NoJti,
    /// Its `jti` was used already.
    #[error("it was used already")]
    Replayed,
}

/// What a checked logout token ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
    /// The provider's session (`sid`): its sessions end.
    pub session_id: Option<String>,
    /// The person (`sub`): without a `sid`, all their sessions end.
    pub subject: Option<String>,
    /// The token's id, used once.
    pub jti: String,
}

#[derive(Deserialize)]
struct RawClaims {
    iat: Option<u64>,
    exp: Option<u64>,
    jti: Option<String>,
    sub: Option<String>,
    sid: Option<String>,
    nonce: Option<Value>,
    events: Option<Value>,
}

/// Checks `token` against the provider `issuer`'s `keys` and asymmetric `algs`, for this app's
/// `client_id`, at `now` (Unix seconds). Whether its `jti` was seen before is the caller's to
/// ask (a shared memory).
pub fn check_logout_token(
    token: &str,
    keys: &[Jwk],
    algs: &[Algorithm],
    issuer: &str,
    client_id: &str,
    now: u64,
) -> Result<LogoutClaims, LogoutTokenError> {
    if token.len() > LOGOUT_TOKEN_MAX {
        return Err(LogoutTokenError::TooLong);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| LogoutTokenError::Malformed)?;
    if !algs.contains(&header.alg) || !is_asymmetric(header.alg) {
        return Err(LogoutTokenError::Algorithm(format!("{:?}", header.alg)));
    }
    if let Some(typ) = &header.typ {
        if !typ.eq_ignore_ascii_case("logout+jwt") && !typ.eq_ignore_ascii_case("JWT") {
            return Err(LogoutTokenError::Type(typ.chars().take(40).collect()));
        }
    }
    let key = signing_key(keys, header.alg, header.kid.as_deref())?;
    let key = DecodingKey::from_jwk(key).map_err(|_| LogoutTokenError::UnknownKey)?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["iss", "aud"]);
    // Time is checked below against the injected clock, not the system's.
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<RawClaims>(token, &key, &validation)
        .map_err(|e| LogoutTokenError::Invalid(e.to_string()))?
        .claims;
    let iat = claims.iat.ok_or(LogoutTokenError::Stale)?;
    if iat > now.saturating_add(CLOCK_SKEW_SECS) || now.saturating_sub(iat) > LOGOUT_TOKEN_WINDOW_SECS {
        return Err(LogoutTokenError::Stale);
    }
    if claims.exp.is_some_and(|exp| exp.saturating_add(CLOCK_SKEW_SECS) < now) {
        return Err(LogoutTokenError::Invalid("expired".into()));
    }
    if claims.nonce.is_some() {
        return Err(LogoutTokenError::Nonce);
    }
    let event = claims.events.as_ref().and_then(|events| events.get(BACKCHANNEL_EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err(LogoutTokenError::NoEvent);
    }
    let present = |v: Option<String>, name: &'static str| match v.filter(|v| !v.is_empty()) {
        Some(v) if v.len() > LOGOUT_CLAIM_MAX => Err(LogoutTokenError::TooLongClaim(name)),
        other => Ok(other),
    };
    let (session_id, subject) = (present(claims.sid, "sid")?, present(claims.sub, "sub")?);
    if session_id.is_none() && subject.is_none() {
        return Err(LogoutTokenError::NoSubject);
    }
    let jti = present(claims.jti, "jti")?.ok_or(LogoutTokenError::NoJti)?;
    Ok(LogoutClaims { session_id, subject, jti })
}

fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The key that signed a token of `alg` naming `kid`: the one with that id; without an id, the
/// only signing key that fits the algorithm.
fn signing_key<'a>(keys: &'a [Jwk], alg: Algorithm, kid: Option<&str>) -> Result<&'a Jwk, LogoutTokenError> {
    let fits = |key: &&Jwk| {
        let usable = !matches!(key.common.public_key_use, Some(PublicKeyUse::Encryption));
        let same_alg = key.common.key_algorithm.is_none_or(|a| Algorithm::from_str(&a.to_string()) == Ok(alg));
        usable && same_alg && DecodingKey::from_jwk(key).is_ok_and(|k| k.family() == alg.family())
    };
    let mut candidates = keys.iter().filter(fits);
    match kid {
        Some(kid) => candidates.find(|key| key.common.key_id.as_deref() == Some(kid)).ok_or(LogoutTokenError::UnknownKey),
        None => match (candidates.next(), candidates.next()) {
            (Some(key), None) => Ok(key),
            _ => Err(LogoutTokenError::UnknownKey),
        },
    }
}

impl OidcProvider {
    /// Where to send the browser so that the provider's session ends too (RP-Initiated Logout
    /// 1.0): its `end_session_endpoint` with the session's ID token as `id_token_hint`, this
    /// client's id, and `back_to` (registered at the provider as a post-logout redirect URI).
    /// `None` when the provider has no such endpoint, or the session is another issuer's.
    pub fn end_session_url(&self, provider: &ProviderSession, back_to: &Url) -> Option<Url> {
        let metadata = self.metadata();
        if provider.issuer != metadata.issuer().as_str() {
            return None;
        }
        let mut url = metadata.additional_metadata().end_session_endpoint.clone()?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", provider.id_token.expose())
            .append_pair("client_id", &self.options().client_id)
            .append_pair("post_logout_redirect_uri", back_to.as_str());
        Some(url)
    }

    /// Checks a back-channel `logout_token` against this provider (see [`check_logout_token`]);
    /// a token naming a key id not seen yet sends for the keys again (at most once a minute).
    pub async fn check_logout_token(&self, token: &str, now: u64) -> Result<LogoutClaims, LogoutTokenError> {
        let metadata = self.metadata();
        let algs = self.logout_algs(&metadata);
        let issuer = metadata.issuer().as_str().to_string();
        let client_id = self.options().client_id.clone();
        match check_logout_token(token, &jwks(&metadata), &algs, &issuer, &client_id, now) {
            Err(LogoutTokenError::UnknownKey) if self.may_fetch_keys() => {
                let metadata = self.refresh_keys().await.map_err(|_| LogoutTokenError::UnknownKey)?;
                check_logout_token(token, &jwks(&metadata), &algs, &issuer, &client_id, now)
            }
            checked => checked,
        }
    }

    /// The algorithms a logout token may be signed with: the provider's asymmetric ID token
    /// algorithms that `jsonwebtoken` knows.
    fn logout_algs(&self, metadata: &super::Metadata) -> Vec<Algorithm> {
        metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter_map(|alg| serde_json::to_value(alg).ok())
            .filter_map(|alg| alg.as_str().and_then(|a| Algorithm::from_str(a).ok()))
            .filter(|alg| is_asymmetric(*alg))
            .collect()
    }
}

/// The provider's keys as `jsonwebtoken` reads them (a key it cannot read is left out).
fn jwks(metadata: &super::Metadata) -> Vec<Jwk> {
    let Ok(Value::Object(set)) = serde_json::to_value(metadata.jwks()) else {
        return Vec::new();
    };
    let Some(Value::Array(keys)) = set.get("keys") else {
        return Vec::new();
    };
    keys.iter().filter_map(|key| serde_json::from_value(key.clone()).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    /// A P-256 key made for these tests only (`openssl ecparam -name prime256v1`).
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgQ/0ZdFfC4Csm4OP2
YZAgfwgLi7YgdfcMyV3OLO5pnPihRANCAATSxHjMbfsCJdLcAUfynqAb9ZQg0kY/
3ogdrAmdMz/hPWMEFxFImfSI/hg5OKe1QJfPjII2snioxCPWxNCaQA6p
-----END PRIVATE KEY-----
";
    const X: &str = "0sR4zG37AiXS3AFH8p6gG_WUINJGP96IHawJnTM_4T0";
    const Y: &str = "YwQXEUiZ9Ij-GDk4p7VAl8-MgjayeKjEI9bE0JpADqk";
    const ISSUER: &str = "https://id.example";
    const CLIENT: &str = "tokenless";
    const NOW: u64 = 1_800_000_000;

    fn keys() -> Vec<Jwk> {
        let set = json!([{ "kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "k1", "use": "sig", "alg": "ES256" }]);
        serde_json::from_value(set).unwrap()
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER, "aud": CLIENT, "iat": NOW - 5, "exp": NOW + 115, "jti": "j-1", "sub": "dana", "sid": "s-1",
            "events": { BACKCHANNEL_EVENT: {} }
        })
    }

    fn sign(claims: &Value, kid: Option<&str>, typ: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.map(str::to_string);
        header.typ = typ.map(str::to_string);
        use base64::Engine;
        let der: String = TEST_KEY.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(der).unwrap();
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&der)).unwrap()
    }

    fn check(token: &str) -> Result<LogoutClaims, LogoutTokenError> {
        check_logout_token(token, &keys(), &[Algorithm::ES256, Algorithm::RS256], ISSUER, CLIENT, NOW)
    }

    fn with(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut c = claims();
        change(c.as_object_mut().unwrap());
        sign(&c, Some("k1"), Some("logout+jwt"))
    }

    #[test]
    fn a_good_token_names_its_session_and_person() {
        let checked = check(&sign(&claims(), Some("k1"), Some("logout+jwt"))).unwrap();
        assert_eq!(
            checked,
            LogoutClaims { session_id: Some("s-1".into()), subject: Some("dana".into()), jti: "j-1".into() }
        );
        // No key id: the only key that fits. No typ, or JWT: accepted.
        assert!(check(&sign(&claims(), None, None)).is_ok());
        assert!(check(&sign(&claims(), Some("k1"), Some("JWT"))).is_ok());
        // Only a sub, only a sid: each enough.
        assert_eq!(check(&with(|c| drop(c.remove("sid")))).unwrap().session_id, None);
        assert_eq!(check(&with(|c| drop(c.remove("sub")))).unwrap().subject, None);
        // An audience list with this client in it.
        assert!(check(&with(|c| drop(c.insert("aud".into(), json!(["other", CLIENT]))))).is_ok());
    }

    #[test]
    fn every_rule_of_the_spec_refuses_what_breaks_it() {
        use LogoutTokenError as E;
        let cases: Vec<(String, &str)> = vec![
            (with(|c| drop(c.insert("iss".into(), json!("https://evil.example")))), "iss"),
            (with(|c| drop(c.insert("aud".into(), json!("another-client")))), "aud"),
            (with(|c| drop(c.remove("aud"))), "no aud"),
            (with(|c| drop(c.remove("iss"))), "no iss"),
        ];
        for (token, what) in cases {
            assert!(matches!(check(&token), Err(E::Invalid(_))), "{what}: {:?}", check(&token));
        }
        assert_eq!(check(&with(|c| drop(c.insert("iat".into(), json!(NOW - 301))))), Err(E::Stale));
        assert_eq!(check(&with(|c| drop(c.insert("iat".into(), json!(NOW + 61))))), Err(E::Stale));
        assert_eq!(check(&with(|c| drop(c.remove("iat")))), Err(E::Stale));
        assert!(matches!(check(&with(|c| drop(c.insert("exp".into(), json!(NOW - 61))))), Err(E::Invalid(_))));
        assert_eq!(check(&with(|c| drop(c.insert("nonce".into(), json!("n"))))), Err(E::Nonce));
        assert_eq!(check(&with(|c| drop(c.remove("events")))), Err(E::NoEvent));
        assert_eq!(check(&with(|c| drop(c.insert("events".into(), json!({ BACKCHANNEL_EVENT: "x" }))))), Err(E::NoEvent));
        assert_eq!(check(&with(|c| drop(c.insert("events".into(), json!({ "other": {} }))))), Err(E::NoEvent));
        assert_eq!(
            check(&with(|c| {
                c.remove("sid");
                c.remove("sub");
            })),
            Err(E::NoSubject)
        );
        assert_eq!(check(&with(|c| drop(c.insert("sid".into(), json!(""))))).map(|c| c.session_id), Ok(None));
        assert_eq!(check(&with(|c| drop(c.remove("jti")))), Err(E::NoJti));
        let long = "x".repeat(LOGOUT_CLAIM_MAX + 1);
        for claim in ["sid", "sub", "jti"] {
            let token = {
                let mut c = claims();
                c[claim] = json!(long);
                sign(&c, Some("k1"), None)
            };
            assert_eq!(check(&token), Err(E::TooLongClaim(claim)), "{claim}");
        }
        assert_eq!(check(&sign(&claims(), Some("k1"), Some("at+jwt"))), Err(E::Type("at+jwt".into())));
        assert!(E::Type("a\nb".into()).to_string().contains("\\n"), "what the sender wrote is quoted, never a new log line");
        assert_eq!(check(&sign(&claims(), Some("k2"), None)), Err(E::UnknownKey));
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let good = sign(&claims(), Some("k1"), None);
        let parts: Vec<&str> = good.split('.').collect();
        // The claims changed after signing: the signature no longer matches.
        let forged_body = b64(&claims().to_string().replace("dana", "ada!"));
        let forged = format!("{}.{forged_body}.{}", parts[0], parts[2]);
        assert!(matches!(check(&forged), Err(LogoutTokenError::Invalid(_))), "{:?}", check(&forged));
        // alg none, and a MAC keyed with anything: refused before any key is tried.
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), parts[1]);
        assert_eq!(check(&none), Err(LogoutTokenError::Malformed));
        let hs = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &EncodingKey::from_secret(b"s")).unwrap();
        assert_eq!(check(&hs), Err(LogoutTokenError::Algorithm("HS256".into())));
        // An algorithm the provider does not use.
        // Even when listed as allowed, a MAC is refused.
        let listed = check_logout_token(&hs, &keys(), &[Algorithm::ES256, Algorithm::HS256], ISSUER, CLIENT, NOW);
        assert_eq!(listed, Err(LogoutTokenError::Algorithm("HS256".into())));
        let only_rs = check_logout_token(&good, &keys(), &[Algorithm::RS256], ISSUER, CLIENT, NOW);
        assert_eq!(only_rs, Err(LogoutTokenError::Algorithm("ES256".into())));
        for junk in ["", ".", "a.b.c", "not a token", &"a".repeat(LOGOUT_TOKEN_MAX + 1)] {
            assert!(check(junk).is_err(), "{junk:.20}");
        }
    }
}
