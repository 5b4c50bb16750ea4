//! The authorization code flow with PKCE (S256): where the browser is sent to sign in
//! ([`OidcProvider::begin`]), what must be kept meanwhile ([`Pending`]: state, nonce, PKCE
//! verifier, return path — the caller seals it into a short-lived cookie bound to the browser),
//! and what the callback gives once every check passed ([`OidcProvider::finish`]): the tokens,
//! the profile from the ID token's claims, and the provider's names for the sign-in (`iss`,
//! `sub`, `sid`), which back-channel logout refers to.
//!
//! The ID token is checked by `openidconnect` — signature against the provider's keys with its
//! asymmetric algorithms only (fetched again when a token names a key id not seen yet, at most
//! once a minute), `iss`, `aud` (no other audience), `exp`, `nonce` — and here: `iat` (not in
//! the future, not before the sign-in began), `azp` when present, `at_hash` when present. The
//! token endpoint's answer is read through this crate's size cap, and RFC 9207's `iss` is
//! required when the provider says it sends it.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreJwsSigningAlgorithm};
use openidconnect::{ClaimsVerificationError, HttpRequest, HttpResponse, JwsSigningAlgorithm, SignatureVerificationError};
use openidconnect::{
    AccessTokenHash, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::config::OidcOptions;
use super::discovery::{fetch_keys, Metadata};
use crate::client::{ClientAuth, ClientConfig, EndpointPaths, UpstreamClient, UpstreamEndpoints};
use crate::upstream_config::UpstreamBuildError;
use crate::http_api::{jwt_claims, map_profile, Fields, ProfileMap};
use crate::session::{Profile, ProviderSession, Token, TokenSet};
use crate::upstream::{read_body, UpstreamError, ANSWER_MAX};

/// The longest return path a pending sign-in keeps.
pub const NEXT_MAX: usize = 256;

/// How long a sign-in at the provider may take before its callback is refused.
pub const PENDING_LIFETIME_SECS: u64 = 600;

/// Access tokens whose lifetime the provider does not state are assumed to live this long.
const DEFAULT_ACCESS_LIFETIME: u64 = 300;

type Client = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// A provider ready for sign-ins: its discovered metadata, this app's client and callback URL.
pub struct OidcProvider {
    options: OidcOptions,
    metadata: RwLock<Metadata>,
    http: reqwest::Client,
    redirect: RedirectUrl,
    /// When the keys were last fetched again for an unknown key id (at most once a minute).
    keys_fetched: Mutex<Option<Instant>>,
}

/// The least time between two fetches of the keys for an unknown key id.
const KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// How far a provider's clock may be ahead of ours (`iat` in the future).
const CLOCK_SKEW_SECS: i64 = 60;

/// What one sign-in at the provider needs kept until its callback. Secret: seal it (its
/// `Debug` shows only where it leads).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The `state` sent; the callback must bring it back.
    pub state: String,
    /// The `nonce` sent; the ID token must carry it.
    pub nonce: String,
    /// The PKCE verifier of the challenge sent.
    pub verifier: String,
    /// Where the person goes once signed in (already checked to stay on the site).
    pub next: String,
    /// When the sign-in began (Unix seconds).
    pub started_at: u64,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("next", &self.next).field("started_at", &self.started_at).finish_non_exhaustive()
    }
}

/// The callback's query: a code and the state, or the provider's error.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state the sign-in began with.
    pub state: Option<String>,
    /// RFC 9207: the issuer that answered.
    pub iss: Option<String>,
    /// The provider's error code (`access_denied`, `login_required`...).
    pub error: Option<String>,
    /// Its human-readable text.
    pub error_description: Option<String>,
}

/// A finished sign-in.
#[derive(Debug)]
pub struct SignedIn {
    /// The tokens.
    pub tokens: TokenSet,
    /// The person, from the ID token's claims.
    pub profile: Profile,
    /// The provider's names for this sign-in (what back-channel logout refers to) and its ID
    /// token (RP-initiated logout's `id_token_hint`): the session keeps them.
    pub provider: ProviderSession,
    /// Where to go now.
    pub next: String,
}

/// Why a callback did not sign anyone in.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The provider said no (`access_denied`, `login_required`...): shown to the person.
    #[error("the provider answered {error}")]
    Provider {
        /// Its error code.
        error: String,
        /// Its text, if any.
        description: Option<String>,
    },
    /// The callback does not belong to the sign-in this browser began (forged, replayed, or
    /// another tab's): no session.
    #[error("the callback does not match the sign-in this browser began")]
    StateMismatch,
    /// The sign-in began too long ago.
    #[error("the sign-in took longer than {PENDING_LIFETIME_SECS} s")]
    Expired,
    /// The provider refused the code (used already, expired, or not for this client).
    #[error("the provider refused the code: {0}")]
    CodeRefused(String),
    /// The provider's answer cannot be trusted (ID token missing, badly signed, wrong audience,
    /// wrong nonce...).
    #[error("the provider's answer was refused: {0}")]
    Invalid(String),
    /// The provider could not be reached.
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
}

impl OidcProvider {
    /// A provider of `metadata` (from [`super::discover`]); the browser comes back to
    /// `redirect_uri` (`https://app.example/auth/callback`, registered at the provider). Calls
    /// to the provider use [`super::http_client`] (the configured timeouts, no redirects).
    pub fn new(options: OidcOptions, metadata: Metadata, redirect_uri: &Url) -> Result<Self, reqwest::Error> {
        let http = super::http_client(&options)?;
        Ok(OidcProvider {
            options,
            metadata: RwLock::new(metadata),
            http,
            redirect: RedirectUrl::from_url(redirect_uri.clone()),
            keys_fetched: Mutex::new(None),
        })
    }

    /// Its configuration.
    pub fn options(&self) -> &OidcOptions {
        &self.options
    }

    /// Its metadata as discovered, with the keys as last fetched.
    pub fn metadata(&self) -> Metadata {
        self.metadata.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// This app's client at the provider `metadata` describes.
    fn client(&self, metadata: Metadata) -> Client {
        let secret = self.options.client_secret.expose_secret();
        let secret = (!secret.is_empty()).then(|| ClientSecret::new(secret.to_string()));
        let auth = match self.options.auth {
            ClientAuth::ClientSecretBasic => AuthType::BasicAuth,
            ClientAuth::ClientSecretPost => AuthType::RequestBody,
        };
        CoreClient::from_provider_metadata(metadata, ClientId::new(self.options.client_id.clone()), secret)
            .set_redirect_uri(self.redirect.clone())
            .set_auth_type(auth)
    }

    /// Where to send the browser, and what to keep until it comes back. `next` longer than
    /// [`NEXT_MAX`] becomes `/` (it is kept in a cookie per pending sign-in).
    pub fn begin(&self, next: &str, now: u64) -> (Url, Pending) {
        let next = if next.len() > NEXT_MAX { "/" } else { next };
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(self.metadata());
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge);
        for scope in self.options.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for (name, value) in &self.options.auth_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        if self.options.asks_offline() {
            // OpenID Connect Core §11: offline access (a refresh token) is asked with consent
            // (Google, too, gives a refresh token again only with consent).
            request = request.add_prompt(CoreAuthPrompt::Consent);
        }
        let (url, state, nonce) = request.url();
        let pending = Pending {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            next: next.to_string(),
            started_at: now,
        };
        (url, pending)
    }

    /// The callback's code exchanged and its ID token checked against what `pending` kept.
    pub async fn finish(&self, callback: &Callback, pending: &Pending, now: u64) -> Result<SignedIn, FlowError> {
        // Only for the sign-in this browser began, within its time, from this issuer — an
        // error answer too (a forged error page is refused like a forged code).
        let state_ok = callback
            .state
            .as_deref()
            .is_some_and(|state| constant_time_eq(state.as_bytes(), pending.state.as_bytes()));
        if !state_ok {
            return Err(FlowError::StateMismatch);
        }
        if now.saturating_sub(pending.started_at) > PENDING_LIFETIME_SECS || pending.started_at > now + 60 {
            return Err(FlowError::Expired);
        }
        // One reading of the metadata for the whole callback (again only if the keys are).
        let metadata = self.metadata();
        let algs = asymmetric_algs(&metadata);
        let userinfo_endpoint = metadata.userinfo_endpoint().map(|u| u.url().clone());
        // RFC 9207: the issuer names itself in the answer (required when it says it does).
        match &callback.iss {
            Some(iss) if iss != &self.options.issuer => {
                return Err(FlowError::Invalid(format!("the callback came from issuer {iss:?}")));
            }
            None if metadata.additional_metadata().authorization_response_iss_parameter_supported => {
                return Err(FlowError::Invalid("the callback does not name its issuer, though the provider says it does".into()));
            }
            _ => {}
        }
        if let Some(error) = &callback.error {
            return Err(FlowError::Provider { error: error.clone(), description: callback.error_description.clone() });
        }
        let Some(code) = &callback.code else {
            return Err(FlowError::StateMismatch);
        };
        let mut client = self.client(metadata);
        let request = client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .map_err(|e| FlowError::Invalid(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()));
        let http = |request: HttpRequest| {
            let client = self.http.clone();
            async move { capped(&client, request).await }
        };
        let response = request.request_async(&http).await.map_err(|e| match e {
            openidconnect::RequestTokenError::ServerResponse(r) => match r.error() {
                CoreErrorResponseType::InvalidGrant => FlowError::CodeRefused(r.error().to_string()),
                other => FlowError::Invalid(format!("the token endpoint answered {other}")),
            },
            // Only an outage is "could not be reached"; an answer over the cap is a lie.
            openidconnect::RequestTokenError::Request(e @ UpstreamError::Unavailable(_)) => {
                FlowError::Unreachable(e.to_string())
            }
            other => FlowError::Invalid(other.to_string()),
        })?;
        if !matches!(response.token_type(), openidconnect::core::CoreTokenType::Bearer) {
            return Err(FlowError::Invalid("the access token is not a Bearer token".into()));
        }
        let id_token = response.id_token().ok_or_else(|| FlowError::Invalid("no ID token".into()))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let began = pending.started_at;
        let first = id_token.claims(&verifier(&client, &algs, now, began), &nonce).map(Clone::clone);
        let claims = match first {
            Ok(claims) => claims,
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey))
                if self.may_fetch_keys() =>
            {
                // A key the provider rotated in since the keys were fetched.
                let refreshed = self.refresh_keys().await.map_err(|e| FlowError::Unreachable(e.to_string()))?;
                client = self.client(refreshed);
                let verified = id_token.claims(&verifier(&client, &algs, now, began), &nonce).map(Clone::clone);
                verified.map_err(|e| FlowError::Invalid(e.to_string()))?
            }
            Err(e) => return Err(FlowError::Invalid(e.to_string())),
        };
        // What openidconnect leaves out: `azp`, when present, is this client (OIDC Core §2).
        let id_token_text = id_token.to_string();
        let raw = jwt_claims(&id_token_text).unwrap_or(Value::Null);
        if let Some(azp) = raw.get("azp") {
            if azp.as_str() != Some(self.options.client_id.as_str()) {
                return Err(FlowError::Invalid("the ID token was issued to another party (azp)".into()));
            }
        }
        if let Some(expected) = claims.access_token_hash() {
            let verifier = verifier(&client, &algs, now, began);
            let alg = id_token.signing_alg().map_err(|e| FlowError::Invalid(e.to_string()))?;
            let key = id_token.signing_key(&verifier).map_err(|e| FlowError::Invalid(e.to_string()))?;
            let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                .map_err(|e| FlowError::Invalid(e.to_string()))?;
            if &actual != expected {
                return Err(FlowError::Invalid("at_hash does not match the access token".into()));
            }
        }
        let subject = claims.subject().to_string();
        // The provider's session is the ID token's `sid`, never userinfo's.
        let session_id = raw.get("sid").and_then(Value::as_str).map(str::to_string);
        // The verified claims with what userinfo adds (a code-flow ID token often carries only
        // `sub`), for the profile map.
        let mut profile_claims = raw;
        if let Some(userinfo) = self.userinfo(userinfo_endpoint, response.access_token().secret(), &subject).await? {
            if let (Value::Object(into), Value::Object(more)) = (&mut profile_claims, userinfo) {
                for (k, v) in more {
                    into.entry(k).or_insert(v);
                }
            }
        }
        let map = ProfileMap { roles: self.options.roles_claim.clone().unwrap_or_default(), ..ProfileMap::oidc() };
        let mut profile = map_profile(&map, &profile_claims).map_err(|e| FlowError::Invalid(e.to_string()))?;
        // The person is the issuer's subject, whatever else the claims say.
        profile.id = subject.clone();
        let lifetime = response
            .expires_in()
            .map(|d| d.as_secs().min(crate::MAX_SECONDS))
            .unwrap_or(DEFAULT_ACCESS_LIFETIME);
        let tokens = TokenSet {
            access_token: Token::new(response.access_token().secret().clone()),
            access_expires_at: now.saturating_add(lifetime),
            refresh_token: response.refresh_token().map(|t| Token::new(t.secret().clone())),
            refresh_expires_at: None,
            access_issued_at: now,
        };
        let provider =
            ProviderSession { issuer: claims.issuer().to_string(), subject, session_id, id_token: Token::new(id_token_text) };
        Ok(SignedIn { tokens, profile, provider, next: pending.next.clone() })
    }

    /// Whether an unknown key id may send for the keys again now (at most once a minute).
    pub(super) fn may_fetch_keys(&self) -> bool {
        let mut last = self.keys_fetched.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < KEY_REFETCH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// The userinfo answer for `access_token`, when the provider has the endpoint; its `sub`
    /// must be the ID token's (OpenID Connect Core §5.3.2).
    async fn userinfo(&self, endpoint: Option<Url>, access_token: &str, subject: &str) -> Result<Option<Value>, FlowError> {
        let Some(endpoint) = endpoint else {
            return Ok(None);
        };
        let response = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FlowError::Unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(FlowError::Invalid(format!("userinfo answered {}", response.status())));
        }
        let bytes = read_body(response, ANSWER_MAX).await.map_err(|e| FlowError::Invalid(e.to_string()))?;
        let info: Value = serde_json::from_slice(&bytes)
            .map_err(|_| FlowError::Invalid("userinfo is not JSON (a signed userinfo is not read)".into()))?;
        if info.get("sub").and_then(Value::as_str) != Some(subject) {
            return Err(FlowError::Invalid("userinfo is about another subject".into()));
        }
        Ok(Some(info))
    }

    /// The [`crate::Upstream`] that refreshes, revokes and reads the profile at this provider's
    /// endpoints (the refresh grant, RFC 7009, userinfo), with resources under
    /// `resource_base` (the app's API, not the provider). Sign-in is this module's flow.
    pub fn upstream(&self, resource_base: &Url) -> Result<super::OidcUpstream, UpstreamBuildError> {
        let metadata = self.metadata();
        let token = metadata.token_endpoint().ok_or(UpstreamBuildError::Missing("token_endpoint"))?.to_string();
        // Without a revocation endpoint (Entra ID), sign-out cannot revoke a refresh token: it
        // ends with the provider's session (RP-initiated logout) or its own expiry. The client
        // never calls the stand-in.
        let revocation = metadata.additional_metadata().revocation_endpoint.as_ref().map(Url::to_string);
        if revocation.is_none() {
            tracing::warn!("the OpenID provider has no revocation endpoint: sign-out cannot revoke refresh tokens (they end with the provider's session or their expiry)");
        }
        let userinfo = metadata.userinfo_endpoint().ok_or(UpstreamBuildError::Missing("userinfo_endpoint"))?.to_string();
        let paths = EndpointPaths {
            token: &token,
            revocation: revocation.as_deref().unwrap_or(&token),
            userinfo: &userinfo,
            registration: None,
        };
        let o = &self.options;
        let client = UpstreamClient::new(ClientConfig {
            endpoints: UpstreamEndpoints::at(resource_base, paths)?,
            profile: ProfileMap { roles: o.roles_claim.clone().unwrap_or_default(), ..ProfileMap::oidc() },
            registration_fields: Fields::default(),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.clone(),
            auth: o.auth,
            timeout: o.timeout,
            connect_timeout: o.connect_timeout,
        })?;
        Ok(super::OidcUpstream::new(client, revocation.is_some()))
    }

    /// Fetches the provider's signing keys again: the metadata with them.
    pub(super) async fn refresh_keys(&self) -> Result<Metadata, super::DiscoveryError> {
        let uri = self.metadata().jwks_uri().to_string();
        let keys = fetch_keys(&self.http, &uri).await?;
        let mut metadata = self.metadata.write().unwrap_or_else(|e| e.into_inner());
        *metadata = metadata.clone().set_jwks(keys);
        Ok(metadata.clone())
    }
}

/// The provider's asymmetric ID token algorithms: a MAC with the client secret would let anyone
/// who holds the secret write ID tokens.
fn asymmetric_algs(metadata: &Metadata) -> Vec<CoreJwsSigningAlgorithm> {
    metadata
        .id_token_signing_alg_values_supported()
        .iter()
        .filter(|alg| !alg.uses_shared_secret() && **alg != CoreJwsSigningAlgorithm::None)
        .cloned()
        .collect()
}

/// The ID token verifier of `client`: `algs` only, `iat` neither in the future nor before this
/// sign-in `began`.
fn verifier<'a>(
    client: &'a Client,
    algs: &[CoreJwsSigningAlgorithm],
    now: u64,
    began: u64,
) -> openidconnect::core::CoreIdTokenVerifier<'a> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let began = i64::try_from(began).unwrap_or(i64::MAX);
    client.id_token_verifier().set_allowed_algs(algs.to_vec()).set_issue_time_verifier_fn(move |iat| {
        let iat = iat.timestamp();
        if iat > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(format!("issued {} s in the future", iat - now));
        }
        if iat < began.saturating_sub(CLOCK_SKEW_SECS) {
            return Err("issued before this sign-in began".to_string());
        }
        Ok(())
    })
}

/// The HTTP client the token request goes through: this provider's client (timeouts, no
/// redirects), the answer read up to [`ANSWER_MAX`] bytes like every upstream answer.
async fn capped(http: &reqwest::Client, request: HttpRequest) -> Result<HttpResponse, UpstreamError> {
    let (parts, body) = request.into_parts();
    let url = parts.uri.to_string();
    let response = http
        .request(parts.method, url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(UpstreamError::from_reqwest)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_body(response, ANSWER_MAX).await?;
    let mut answer = HttpResponse::new(body);
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    Ok(answer)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
