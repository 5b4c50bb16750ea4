//! The authorization code flow with PKCE (S256): where the browser is sent to sign in
//! ([`OidcProvider::begin`]), what must be kept meanwhile ([`Pending`]: state, nonce, PKCE
//! verifier, return path — the caller seals it into a short-lived cookie bound to the browser),
//! and what the callback gives once every check passed ([`OidcProvider::finish`]): the tokens,
//! the profile from the ID token's claims, and the provider's names for the sign-in (`iss`,
//! `sub`, `sid`), which back-channel logout refers to.
//!
//! The ID token is checked by `openidconnect`: signature against the provider's keys (fetched
//! again once when it names a key id not seen yet), `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`,
//! and `at_hash` when present.

use std::sync::RwLock;

use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreClient};
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
use crate::session::{Profile, Token, TokenSet};
use crate::upstream::{read_body, ANSWER_MAX};

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
}

/// What one sign-in at the provider needs kept until its callback. Secret: seal it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The provider's names for a sign-in: what back-channel logout will refer to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The issuer.
    pub issuer: String,
    /// The person's subject at the issuer.
    pub subject: String,
    /// The provider's session id, when it says (`sid`).
    pub session_id: Option<String>,
}

/// A finished sign-in.
#[derive(Debug)]
pub struct SignedIn {
    /// The tokens.
    pub tokens: TokenSet,
    /// The ID token (kept for RP-initiated logout's `id_token_hint`).
    pub id_token: Token,
    /// The person, from the ID token's claims.
    pub profile: Profile,
    /// The provider's names for this sign-in.
    pub identity: Identity,
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
    /// `redirect_uri` (`https://app.example/auth/callback`, registered at the provider).
    pub fn new(options: OidcOptions, metadata: Metadata, http: reqwest::Client, redirect_uri: &Url) -> Self {
        OidcProvider {
            options,
            metadata: RwLock::new(metadata),
            http,
            redirect: RedirectUrl::from_url(redirect_uri.clone()),
        }
    }

    /// Its configuration.
    pub fn options(&self) -> &OidcOptions {
        &self.options
    }

    /// Its metadata as discovered, with the keys as last fetched.
    pub fn metadata(&self) -> Metadata {
        self.metadata.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn client(&self) -> Client {
        let secret = self.options.client_secret.expose_secret();
        let secret = (!secret.is_empty()).then(|| ClientSecret::new(secret.to_string()));
        let auth = match self.options.auth {
            ClientAuth::ClientSecretBasic => AuthType::BasicAuth,
            ClientAuth::ClientSecretPost => AuthType::RequestBody,
        };
        CoreClient::from_provider_metadata(self.metadata(), ClientId::new(self.options.client_id.clone()), secret)
            .set_redirect_uri(self.redirect.clone())
            .set_auth_type(auth)
    }

    /// Where to send the browser, and what to keep until it comes back.
    pub fn begin(&self, next: &str, now: u64) -> (Url, Pending) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client();
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge);
        for scope in self.options.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if self.options.scopes.iter().any(|s| s == "offline_access") {
            // OpenID Connect Core §11: offline access (a refresh token) is asked with consent.
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
        if let Some(error) = &callback.error {
            // Still only for the sign-in this browser began: a forged error page is refused too.
            if callback.state.as_deref() != Some(pending.state.as_str()) {
                return Err(FlowError::StateMismatch);
            }
            return Err(FlowError::Provider { error: error.clone(), description: callback.error_description.clone() });
        }
        let (Some(code), Some(state)) = (&callback.code, &callback.state) else {
            return Err(FlowError::StateMismatch);
        };
        if !constant_time_eq(state.as_bytes(), pending.state.as_bytes()) {
            return Err(FlowError::StateMismatch);
        }
        if now.saturating_sub(pending.started_at) > PENDING_LIFETIME_SECS || pending.started_at > now + 60 {
            return Err(FlowError::Expired);
        }
        // RFC 9207: when the provider names itself, it is this one (a mix-up defence).
        if let Some(iss) = &callback.iss {
            if iss != &self.options.issuer {
                return Err(FlowError::Invalid(format!("the callback came from issuer {iss:?}")));
            }
        }
        let client = self.client();
        let request = client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .map_err(|e| FlowError::Invalid(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()));
        let response = request.request_async(&self.http).await.map_err(|e| match e {
            openidconnect::RequestTokenError::ServerResponse(r) => FlowError::CodeRefused(r.error().to_string()),
            openidconnect::RequestTokenError::Request(e) => FlowError::Unreachable(e.to_string()),
            other => FlowError::Invalid(other.to_string()),
        })?;
        let id_token = response.id_token().ok_or_else(|| FlowError::Invalid("no ID token".into()))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            Err(first) => {
                // A key the provider rotated in since the keys were fetched: fetch them again, once.
                self.refresh_keys().await.map_err(|_| FlowError::Invalid(first.to_string()))?;
                let client = self.client();
                let verified = id_token.claims(&client.id_token_verifier(), &nonce).map(Clone::clone);
                verified.map_err(|e| FlowError::Invalid(e.to_string()))?
            }
        };
        if let Some(expected) = claims.access_token_hash() {
            let client = self.client();
            let verifier = client.id_token_verifier();
            let alg = id_token.signing_alg().map_err(|e| FlowError::Invalid(e.to_string()))?;
            let key = id_token.signing_key(&verifier).map_err(|e| FlowError::Invalid(e.to_string()))?;
            let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                .map_err(|e| FlowError::Invalid(e.to_string()))?;
            if &actual != expected {
                return Err(FlowError::Invalid("at_hash does not match the access token".into()));
            }
        }
        let id_token_text = id_token.to_string();
        // The claims as the provider wrote them (verified above), with what userinfo adds (a
        // code-flow ID token often carries only `sub`) for the profile map.
        let mut raw = jwt_claims(&id_token_text).unwrap_or(Value::Null);
        if let Some(userinfo) = self.userinfo(response.access_token().secret(), claims.subject().as_str()).await? {
            if let (Value::Object(raw), Value::Object(more)) = (&mut raw, userinfo) {
                for (k, v) in more {
                    raw.entry(k).or_insert(v);
                }
            }
        }
        let map = ProfileMap { roles: self.options.roles_claim.clone().unwrap_or_default(), ..ProfileMap::oidc() };
        let profile = map_profile(&map, &raw).map_err(|e| FlowError::Invalid(e.to_string()))?;
        let lifetime = response.expires_in().map(|d| d.as_secs()).unwrap_or(DEFAULT_ACCESS_LIFETIME);
        let tokens = TokenSet {
            access_token: Token::new(response.access_token().secret().clone()),
            access_expires_at: now + lifetime,
            refresh_token: response.refresh_token().map(|t| Token::new(t.secret().clone())),
            refresh_expires_at: None,
            access_issued_at: now,
        };
        let identity = Identity {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            session_id: raw.get("sid").and_then(Value::as_str).map(str::to_string),
        };
        Ok(SignedIn { tokens, id_token: Token::new(id_token_text), profile, identity, next: pending.next.clone() })
    }

    /// The userinfo answer for `access_token`, when the provider has the endpoint; its `sub`
    /// must be the ID token's (OpenID Connect Core §5.3.2).
    async fn userinfo(&self, access_token: &str, subject: &str) -> Result<Option<Value>, FlowError> {
        let Some(endpoint) = self.metadata().userinfo_endpoint().map(|u| u.url().clone()) else {
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
    pub fn upstream(&self, resource_base: &Url) -> Result<UpstreamClient, UpstreamBuildError> {
        let metadata = self.metadata();
        let token = metadata.token_endpoint().ok_or(UpstreamBuildError::Missing("token_endpoint"))?.to_string();
        let revocation = metadata
            .additional_metadata()
            .revocation_endpoint
            .as_ref()
            .ok_or(UpstreamBuildError::Missing("revocation_endpoint (sign-out could not end the sign-in)"))?
            .to_string();
        let userinfo = metadata.userinfo_endpoint().ok_or(UpstreamBuildError::Missing("userinfo_endpoint"))?.to_string();
        let paths = EndpointPaths { token: &token, revocation: &revocation, userinfo: &userinfo, registration: None };
        let o = &self.options;
        Ok(UpstreamClient::new(ClientConfig {
            endpoints: UpstreamEndpoints::at(resource_base, paths)?,
            profile: ProfileMap { roles: o.roles_claim.clone().unwrap_or_default(), ..ProfileMap::oidc() },
            registration_fields: Fields::default(),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.clone(),
            auth: o.auth,
            timeout: o.timeout,
            connect_timeout: o.connect_timeout,
        })?)
    }

    /// Fetches the provider's signing keys again.
    async fn refresh_keys(&self) -> Result<(), super::DiscoveryError> {
        let uri = self.metadata().jwks_uri().to_string();
        let keys = fetch_keys(&self.http, &uri).await?;
        let mut metadata = self.metadata.write().unwrap_or_else(|e| e.into_inner());
        *metadata = metadata.clone().set_jwks(keys);
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
