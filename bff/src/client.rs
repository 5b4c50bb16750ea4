//! The one client of the upstream API: it owns the `reqwest::Client` (one connection pool for the
//! process), the endpoint URLs, the client credentials and the timeouts. Every answer becomes a
//! typed result; the distinction that matters most is between a definitive refusal (sign the
//! user out) and the upstream being unavailable (keep the session, say "try again").

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::http_api::{map_profile, Fields, ProfileMap};
use crate::session::{Profile, Token, TokenSet};
use crate::upstream::{read_body, ANSWER_MAX, RESOURCE_MAX, UNUSABLE_REFRESH_ANSWER};
use crate::upstream::{BoxFuture, Registered, SignInError, Upstream};

/// How the client authenticates to the token and revocation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form.
    ClientSecretPost,
}

/// Where an OAuth 2.0 upstream's endpoints are. No layout is assumed: an app says where each
/// one is (the demo upstream's layout is `tokenless_upstream::config::OAUTH2_PATHS`).
#[derive(Debug, Clone)]
pub struct UpstreamEndpoints {
    /// The token endpoint (password and refresh grants).
    pub token_url: Url,
    /// The RFC 7009 revocation endpoint.
    pub revocation_url: Url,
    /// Where the profile is read with the access token (OpenID Connect's userinfo, or any JSON
    /// the profile map reads).
    pub userinfo_url: Url,
    /// Where accounts are created (JSON body, client authentication); `None`: no registration.
    pub registration_url: Option<Url>,
    /// Where resource paths (`/frogs`) are resolved.
    pub resource_base: Url,
}

/// The endpoints' paths under a base URL (each may also be an absolute URL).
#[derive(Debug, Clone, Copy)]
pub struct EndpointPaths<'a> {
    /// The token endpoint.
    pub token: &'a str,
    /// The revocation endpoint.
    pub revocation: &'a str,
    /// The profile (userinfo) endpoint.
    pub userinfo: &'a str,
    /// The registration endpoint, if there is one.
    pub registration: Option<&'a str>,
}

impl<'a> From<[&'a str; 4]> for EndpointPaths<'a> {
    /// Token, revocation, userinfo and registration paths, in this order.
    fn from([token, revocation, userinfo, registration]: [&'a str; 4]) -> Self {
        EndpointPaths { token, revocation, userinfo, registration: Some(registration) }
    }
}

impl UpstreamEndpoints {
    /// The endpoints at `paths` under `base` (keeping any path `base` has: `https://api/v1` +
    /// `/oauth/token` → `https://api/v1/oauth/token`); an absolute `http(s)://` URL is taken as
    /// it is. Resources are resolved under `base`.
    pub fn at(base: &Url, paths: EndpointPaths<'_>) -> Result<Self, url::ParseError> {
        let resolve = |path: &str| {
            if path.starts_with("http://") || path.starts_with("https://") {
                Url::parse(path)
            } else {
                upstream_url(base, path)
            }
        };
        Ok(UpstreamEndpoints {
            token_url: resolve(paths.token)?,
            revocation_url: resolve(paths.revocation)?,
            userinfo_url: resolve(paths.userinfo)?,
            registration_url: paths.registration.map(resolve).transpose()?,
            resource_base: base.clone(),
        })
    }
}

/// The one way an upstream URL is built: `base`'s path, then `path_and_query` (which starts with
/// `/`) appended as it is. `Url::join` would drop `base`'s path for an absolute `/x` (and resolve
/// `..`), so `https://api/v1` + `/frogs` would become `https://api/frogs`.
pub fn upstream_url(base: &Url, path_and_query: &str) -> Result<Url, url::ParseError> {
    let mut base = base.clone();
    base.set_query(None);
    base.set_fragment(None);
    let prefix = base.as_str().trim_end_matches('/');
    let rest = if path_and_query.starts_with('/') { path_and_query.to_string() } else { format!("/{path_and_query}") };
    Url::parse(&format!("{prefix}{rest}"))
}

/// Everything the OAuth 2.0 client needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where each endpoint is.
    pub endpoints: UpstreamEndpoints,
    /// How the userinfo answer becomes a [`Profile`] (OpenID Connect's claims by default).
    pub profile: ProfileMap,
    /// The registration body's field names (JSON).
    pub registration_fields: Fields,
    /// The client id the upstream issued to this app.
    pub client_id: String,
    /// Debug-prints as `[REDACTED]`.
    pub client_secret: SecretString,
    /// How the client authenticates to the token and revocation endpoints.
    pub auth: ClientAuth,
    /// Whole-request timeout for every call.
    pub timeout: Duration,
    /// Connect timeout for every call.
    pub connect_timeout: Duration,
}

/// Why an upstream call did not give what was asked, told apart by what the user should see.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream definitively refused a grant (`invalid_grant`, `invalid_client`...): the
    /// credentials or tokens are no good and retrying will not help.
    #[error("the upstream refused: {code}")]
    Refused {
        /// The refusal code (`invalid_grant`...).
        code: String,
    },
    /// A resource answered 401: the access token is missing, expired or revoked.
    #[error("the upstream did not accept the access token")]
    Unauthorized,
    /// A resource answered 403.
    #[error("the upstream forbade this")]
    Forbidden,
    /// Unreachable, timed out, or 5xx: the session stays, the user may try again.
    #[error("the upstream is unavailable: {0}")]
    Unavailable(String),
    /// An answer we do not understand (a broken or incompatible upstream).
    #[error("the upstream answered unexpectedly: {0}")]
    Unexpected(String),
}

impl UpstreamError {
    /// An outage that was a timeout (the upstream may still have acted on the request).
    pub fn is_timeout(&self) -> bool {
        matches!(self, UpstreamError::Unavailable(detail) if detail.starts_with(TIMED_OUT))
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> Self {
        // No URL in the message: it could carry a query string.
        let e = e.without_url();
        if e.is_timeout() {
            UpstreamError::Unavailable(format!("{TIMED_OUT}: {e}"))
        } else if e.is_decode() || e.is_body() {
            UpstreamError::Unexpected(e.to_string())
        } else {
            UpstreamError::Unavailable(e.to_string())
        }
    }
}

const TIMED_OUT: &str = "timed out";

/// Why registration did not create an account.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// An account with this email exists.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Some fields were refused, one message each.
    #[error("some fields are invalid")]
    Invalid(Vec<FieldProblem>),
    /// This upstream has no registration.
    #[error("this upstream does not register accounts")]
    Unsupported,
    /// The upstream could not be asked, or answered something else.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// A registration field the upstream refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FieldProblem {
    /// The field's name (`email`, `name`, `password`).
    pub field: String,
    /// What is wrong with it, as the upstream said.
    pub message: String,
}

/// RFC 6749 §5.1. The tokens never print.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Token,
    #[serde(default)]
    token_type: String,
    expires_in: Option<u64>,
    refresh_token: Option<Token>,
    refresh_expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    fields: Vec<FieldProblem>,
}

/// Access tokens without `expires_in` are assumed to live this long.
const DEFAULT_ACCESS_LIFETIME: u64 = 300;

/// The OAuth 2.0 upstream: one connection pool, the endpoints, the client credentials.
pub struct UpstreamClient {
    http: reqwest::Client,
    config: ClientConfig,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient").field("config", &self.config).finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// A client for `config` (no redirects followed, `TCP_NODELAY`).
    pub fn new(config: ClientConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            // A token endpoint that redirects is misconfigured; never follow credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(UpstreamClient { http, config })
    }

    /// Its configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn authenticated(&self, url: &Url, form: &mut Vec<(&'static str, String)>) -> RequestBuilder {
        let request = self.http.post(url.clone()).header("accept", "application/json");
        match self.config.auth {
            ClientAuth::ClientSecretBasic => request.basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(self.config.client_secret.expose_secret())),
            ),
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", self.config.client_id.clone()));
                form.push(("client_secret", self.config.client_secret.expose_secret().to_string()));
                request
            }
        }
    }

    /// A grant at the token endpoint. `Ok(Err(detail))`: the upstream answered 2xx with nothing
    /// usable (a body that is not tokens, breaks off or is too large, a token type other than
    /// Bearer) — it may have acted on the grant all the same, which matters for a refresh.
    async fn token_request(
        &self,
        mut form: Vec<(&'static str, String)>,
        now: u64,
        timeout: Option<Duration>,
    ) -> Result<Result<TokenSet, String>, UpstreamError> {
        let mut request = self.authenticated(&self.config.endpoints.token_url, &mut form);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request.form(&form).send().await.map_err(UpstreamError::from_reqwest)?;
        let status = response.status();
        if !status.is_success() {
            return Err(refusal_or_outage(response).await);
        }
        let bytes = match read_body(response, ANSWER_MAX).await {
            Ok(bytes) => bytes,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let body: TokenResponse = match serde_json::from_slice(&bytes) {
            Ok(body) => body,
            Err(e) => return Ok(Err(format!("a token answer without usable tokens: {e}"))),
        };
        if !body.token_type.is_empty() && !body.token_type.eq_ignore_ascii_case("bearer") {
            return Ok(Err(format!("token_type {:?}", body.token_type)));
        }
        // Saturating: a hostile or broken `expires_in` (u64::MAX) must not overflow.
        Ok(Ok(TokenSet {
            access_token: body.access_token,
            access_expires_at: now.saturating_add(body.expires_in.unwrap_or(DEFAULT_ACCESS_LIFETIME)),
            refresh_token: body.refresh_token,
            refresh_expires_at: body.refresh_expires_in.map(|s| now.saturating_add(s)),
            access_issued_at: now,
        }))
    }

    /// `grant_type=password`.
    pub async fn password_grant(
        &self,
        username: &str,
        password: &str,
        now: u64,
    ) -> Result<TokenSet, UpstreamError> {
        let form = vec![
            ("grant_type", "password".to_string()),
            ("username", username.to_string()),
            ("password", password.to_string()),
        ];
        self.token_request(form, now, None).await?.map_err(UpstreamError::Unexpected)
    }

    /// `grant_type=refresh_token`. When the upstream does not rotate (no new refresh token in
    /// the answer), the presented one is kept. `timeout` replaces the client's for this call.
    /// A 2xx without usable tokens is a refusal ([`UNUSABLE_REFRESH_ANSWER`]): the upstream
    /// may have rotated the token already, and presenting it again would look like theft (the
    /// sign-in revoked for good). Any other failure is what its status says.
    pub async fn refresh_grant(
        &self,
        refresh_token: &Token,
        now: u64,
        timeout: Option<Duration>,
    ) -> Result<TokenSet, UpstreamError> {
        let form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token.expose().to_string()),
        ];
        let mut tokens = match self.token_request(form, now, timeout).await? {
            Ok(tokens) => tokens,
            Err(detail) => {
                tracing::error!(%detail, "a successful refresh answer without usable tokens; the session ends");
                return Err(UpstreamError::Refused { code: UNUSABLE_REFRESH_ANSWER.into() });
            }
        };
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.clone());
        }
        Ok(tokens)
    }

    /// RFC 7009 revocation.
    pub async fn revoke(&self, token: &Token, hint: &'static str) -> Result<(), UpstreamError> {
        let mut form = vec![("token", token.expose().to_string()), ("token_type_hint", hint.to_string())];
        let request = self.authenticated(&self.config.endpoints.revocation_url, &mut form);
        let response = request.form(&form).send().await.map_err(UpstreamError::from_reqwest)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(refusal_or_outage(response).await)
        }
    }

    /// The profile behind an access token (`GET userinfo`, Bearer), read with the profile map.
    pub async fn userinfo(&self, access: &Token) -> Result<Profile, UpstreamError> {
        let request = self.http.get(self.config.endpoints.userinfo_url.clone()).header("accept", "application/json");
        let response = request.bearer_auth(access.expose()).send().await.map_err(UpstreamError::from_reqwest)?;
        let json: serde_json::Value = crate::upstream::read_json(response, RESOURCE_MAX).await?;
        map_profile(&self.config.profile, &json)
    }

    /// Creates an account: `POST` to the registration endpoint, a JSON body with the configured
    /// field names, client authentication. 409 is "taken", 422/400 with `fields` one message
    /// per field; no registration endpoint is [`RegisterError::Unsupported`].
    pub async fn register(&self, email: &str, name: &str, password: &str) -> Result<(), RegisterError> {
        let Some(url) = &self.config.endpoints.registration_url else { return Err(RegisterError::Unsupported) };
        let mut form = Vec::new();
        let request = self.authenticated(url, &mut form);
        let f = &self.config.registration_fields;
        let mut body = serde_json::Map::new();
        for (field, value) in [(&f.email, email), (&f.name, name), (&f.password, password)] {
            body.insert(field.clone(), serde_json::Value::String(value.to_string()));
        }
        let response = request.json(&body).send().await.map_err(UpstreamError::from_reqwest)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        match status {
            StatusCode::CONFLICT => Err(RegisterError::EmailTaken),
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
                let body = read_body(response, ANSWER_MAX).await.ok();
                let body: Option<ErrorBody> = body.and_then(|bytes| serde_json::from_slice(&bytes).ok());
                match body {
                    Some(b) if !b.fields.is_empty() => Err(RegisterError::Invalid(b.fields)),
                    _ => Err(UpstreamError::Unexpected(format!("registration refused with {status}")).into()),
                }
            }
            s if s.is_server_error() => Err(UpstreamError::Unavailable(format!("status {s}")).into()),
            s => Err(UpstreamError::Unexpected(format!("registration answered {s}")).into()),
        }
    }
}

impl Upstream for UpstreamClient {
    fn sign_in<'a>(&'a self, email: &'a str, password: &'a str, now: u64) -> BoxFuture<'a, Result<TokenSet, SignInError>> {
        Box::pin(async move {
            match self.password_grant(email, password, now).await {
                Ok(tokens) => Ok(tokens),
                Err(UpstreamError::Refused { code }) if code == "invalid_grant" => Err(SignInError::InvalidCredentials),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn profile<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<Profile, UpstreamError>> {
        Box::pin(self.userinfo(&tokens.access_token))
    }

    fn register<'a>(
        &'a self,
        email: &'a str,
        name: &'a str,
        password: &'a str,
        _now: u64,
    ) -> BoxFuture<'a, Result<Registered, RegisterError>> {
        Box::pin(async move {
            UpstreamClient::register(self, email, name, password).await?;
            Ok(Registered::Created)
        })
    }

    fn resource(&self, method: Method, path_and_query: &str) -> Result<RequestBuilder, UpstreamError> {
        let url = upstream_url(&self.config.endpoints.resource_base, path_and_query)
            .map_err(|e| UpstreamError::Unexpected(format!("resource URL: {e}")))?;
        Ok(self.http.request(method, url))
    }

    fn attach(&self, request: RequestBuilder, access: &Token) -> RequestBuilder {
        request.bearer_auth(access.expose())
    }
}

/// 5xx (and 429) are outages; 4xx with an RFC 6749 error code are refusals.
async fn refusal_or_outage(response: Response) -> UpstreamError {
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return UpstreamError::Unavailable(format!("status {status}"));
    }
    let body = read_body(response, ANSWER_MAX).await.ok();
    match body.and_then(|bytes| serde_json::from_slice::<ErrorBody>(&bytes).ok()) {
        Some(body) => UpstreamError::Refused { code: body.error },
        None => UpstreamError::Unexpected(format!("status {status} without an error body")),
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_keep_the_base_path() {
        let with_path = Url::parse("https://api.example/v1").unwrap();
        let with_slash = Url::parse("https://api.example/v1/").unwrap();
        let bare = Url::parse("https://api.example").unwrap();
        for base in [&with_path, &with_slash] {
            assert_eq!(upstream_url(base, "/frogs").unwrap().as_str(), "https://api.example/v1/frogs");
            assert_eq!(upstream_url(base, "/frogs/1?x=2").unwrap().as_str(), "https://api.example/v1/frogs/1?x=2");
        }
        assert_eq!(upstream_url(&bare, "/frogs").unwrap().as_str(), "https://api.example/frogs");
        assert_eq!(upstream_url(&bare, "frogs").unwrap().as_str(), "https://api.example/frogs");
        let paths = EndpointPaths {
            token: "/oauth/token",
            revocation: "https://auth.example/revoke",
            userinfo: "userinfo",
            registration: None,
        };
        let endpoints = UpstreamEndpoints::at(&with_path, paths).unwrap();
        assert_eq!(endpoints.token_url.as_str(), "https://api.example/v1/oauth/token");
        assert_eq!(endpoints.revocation_url.as_str(), "https://auth.example/revoke", "absolute as it is");
        assert_eq!(endpoints.userinfo_url.as_str(), "https://api.example/v1/userinfo");
        assert_eq!(endpoints.registration_url, None);
        // A query or fragment on the base is not carried into every call.
        let odd = Url::parse("https://api.example/v1?k=1#f").unwrap();
        assert_eq!(upstream_url(&odd, "/frogs").unwrap().as_str(), "https://api.example/v1/frogs");
    }
}
