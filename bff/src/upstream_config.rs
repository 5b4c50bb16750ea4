//! The upstream as an app nests it in its own settings (an `[upstream]` table, say): which kind
//! of API, where it is and how to talk to it. [`UpstreamConfig`] deserializes with the library's
//! one set of defaults; [`UpstreamConfig::validate`] checks it once, at start, into
//! [`UpstreamOptions`], which builds the [`Upstream`] that [`crate::SessionManager::builder`]
//! takes. A bad value's [`ConfigError`] names its key, relative to the table.
//!
//! ```
//! # use tokenless_bff::UpstreamConfig;
//! let config: UpstreamConfig = serde_json::from_str(r#"{
//!     "base_url": "https://auth.example",
//!     "token_url": "/oauth/token",
//!     "revocation_url": "/oauth/revoke",
//!     "userinfo_url": "/userinfo",
//!     "client_id": "tokenless",
//!     "client_secret": "s3cret"
//! }"#).unwrap();
//! let upstream = config.validate().unwrap().build().unwrap();
//! # drop(upstream);
//! ```

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::client::{ClientAuth, ClientConfig, EndpointPaths, UpstreamClient, UpstreamEndpoints};
use crate::config::{client_auth, http_url, millis, ConfigError};
use crate::http_api::{Fields, HttpApi, HttpApiConfig, ProfileMap};
use crate::oidc::{OidcConfig, OidcOptions, OidcProvider};
use crate::upstream::Upstream;

/// The upstream as written in a file or the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The API's address (`https://api.example`, a path under it is kept); empty: none is
    /// configured, and the app decides ([`UpstreamOptions::build_at`] an address of its own,
    /// or refusing to start).
    pub base_url: String,
    /// `oauth2`: an OAuth 2.0 server (password and refresh grants, RFC 7009 revocation,
    /// userinfo); `http_api`: the API [`UpstreamConfig::http_api`] describes.
    pub kind: String,
    /// OAuth 2.0: the token endpoint, a path under `base_url` (`/oauth/token`) or an absolute
    /// http(s) URL. Required for `oauth2`.
    pub token_url: String,
    /// OAuth 2.0: the RFC 7009 revocation endpoint (sign-out revokes there). Required.
    pub revocation_url: String,
    /// OAuth 2.0: the userinfo endpoint the profile is read from. Required.
    pub userinfo_url: String,
    /// OAuth 2.0: where accounts are created; empty: no registration.
    pub registration_url: String,
    /// OAuth 2.0: how the userinfo answer maps onto the profile. Keys left out are OpenID
    /// Connect's claims ([`ProfileMap::oidc`]).
    #[serde(deserialize_with = "crate::http_api::profile_over_oidc")]
    pub profile: ProfileMap,
    /// OAuth 2.0: the registration body's field names.
    pub registration_fields: Fields,
    /// OAuth 2.0: this app's client id at the server. Required.
    pub client_id: String,
    /// OAuth 2.0: this app's client secret.
    pub client_secret: SecretString,
    /// OAuth 2.0: `client_secret_basic` or `client_secret_post`.
    pub client_auth: String,
    /// Timeout of a whole upstream call, in milliseconds.
    pub timeout_ms: u64,
    /// Timeout of connecting to the upstream, in milliseconds.
    pub connect_timeout_ms: u64,
    /// `http_api`: the API's endpoints, where tokens come back, how they are presented
    /// ([`HttpApiConfig`]; README: "Plug in your API").
    pub http_api: Option<HttpApiConfig>,
    /// `oidc`: the OpenID provider people sign in at ([`OidcConfig`]: issuer, client, scopes,
    /// roles claim); `base_url` is then the API the pages call with its access tokens.
    pub oidc: Option<OidcConfig>,
}

impl Default for UpstreamConfig {
    /// The library's defaults, the only place they are written.
    fn default() -> Self {
        UpstreamConfig {
            base_url: String::new(),
            kind: "oauth2".into(),
            token_url: String::new(),
            revocation_url: String::new(),
            userinfo_url: String::new(),
            registration_url: String::new(),
            profile: ProfileMap::oidc(),
            registration_fields: Fields::default(),
            client_id: String::new(),
            client_secret: SecretString::from(String::new()),
            client_auth: "client_secret_basic".into(),
            timeout_ms: 5_000,
            connect_timeout_ms: 2_000,
            http_api: None,
            oidc: None,
        }
    }
}

/// A validated upstream: builds the [`Upstream`] (with [`UpstreamOptions::build`], or
/// [`UpstreamOptions::build_at`] an address the app chose).
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// The configured address, if any.
    pub base_url: Option<Url>,
    /// The kind of API and how to talk to it.
    pub kind: UpstreamKind,
    /// Timeout of a whole upstream call.
    pub timeout: Duration,
    /// Timeout of connecting.
    pub connect_timeout: Duration,
}

/// What kind of API the upstream is.
#[derive(Debug, Clone)]
pub enum UpstreamKind {
    /// An OAuth 2.0 server.
    OAuth2(Box<OAuth2Options>),
    /// An HTTP API described by configuration.
    HttpApi(Box<HttpApiConfig>),
    /// An OpenID provider (its metadata discovered at start: [`UpstreamOptions::connect`]).
    Oidc(Box<OidcOptions>),
}

/// A validated OAuth 2.0 upstream: endpoints (paths under the base URL, or absolute URLs),
/// profile map and client credentials.
#[derive(Debug, Clone)]
pub struct OAuth2Options {
    /// The token endpoint.
    pub token_url: String,
    /// The revocation endpoint.
    pub revocation_url: String,
    /// The userinfo endpoint.
    pub userinfo_url: String,
    /// The registration endpoint, if any.
    pub registration_url: Option<String>,
    /// How the userinfo answer maps onto the profile.
    pub profile: ProfileMap,
    /// The registration body's field names.
    pub registration_fields: Fields,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// How the client authenticates at the token endpoint.
    pub auth: ClientAuth,
}

/// Why an upstream could not be built from valid options.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamBuildError {
    /// [`UpstreamOptions::build`] without a `base_url`.
    #[error("`base_url` is empty: set the upstream's address (https://api.example)")]
    NoBaseUrl,
    /// An OpenID provider is built with [`UpstreamOptions::connect`] (its metadata is
    /// discovered first).
    #[error("an OpenID provider is connected to (UpstreamOptions::connect), not built")]
    NeedsDiscovery,
    /// The OpenID provider could not be discovered.
    #[error(transparent)]
    Discovery(#[from] crate::oidc::DiscoveryError),
    /// An OpenID provider lacks an endpoint Tokenless needs.
    #[error("the OpenID provider has no {0}")]
    Missing(&'static str),
    /// An endpoint does not combine with the base URL.
    #[error("the upstream's endpoints do not combine with its base URL: {0}")]
    Url(#[from] url::ParseError),
    /// The HTTP client could not be built (TLS roots unreadable, say).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// An endpoint: a path under `base_url` (`/oauth/token`) or an absolute http(s) URL.
fn endpoint(raw: &str, key: &'static str) -> Result<String, ConfigError> {
    let raw = raw.trim();
    if raw.starts_with('/') && !raw.starts_with("//") {
        return Ok(raw.to_string());
    }
    if raw.is_empty() {
        return Err(ConfigError::new(key, "is required for kind = \"oauth2\": a path under base_url (/oauth/token) or an http(s) URL"));
    }
    match http_url(raw, key)? {
        Some(url) => Ok(url.to_string()),
        None => Err(ConfigError::new(key, "must be a path under base_url (/oauth/token) or an http(s) URL")),
    }
}

impl UpstreamConfig {
    /// Checks every value the kind uses (the OAuth 2.0 keys are not read for an `http_api`);
    /// the first bad one is the error.
    pub fn validate(&self) -> Result<UpstreamOptions, ConfigError> {
        let base_url = http_url(&self.base_url, "base_url")?;
        let timeout = millis(self.timeout_ms, "timeout_ms")?;
        let connect_timeout = millis(self.connect_timeout_ms, "connect_timeout_ms")?;
        let kind_name = self.kind.trim().to_ascii_lowercase();
        if kind_name != "oidc" && self.oidc.is_some() {
            return Err(ConfigError::new(
                "kind",
                format!("is {kind_name:?} but an oidc table describes a provider: set kind = \"oidc\" to use it, or remove the table"),
            ));
        }
        let kind = match (kind_name.as_str(), &self.http_api) {
            ("oidc", None) => match &self.oidc {
                Some(oidc) => UpstreamKind::Oidc(Box::new(oidc.validate().map_err(|e| e.within("oidc"))?)),
                None => {
                    return Err(ConfigError::new(
                        "oidc",
                        "kind = \"oidc\" needs an oidc table with the provider's issuer and this app's client",
                    ))
                }
            },
            ("oidc", Some(_)) => {
                return Err(ConfigError::new("kind", "is \"oidc\" but an http_api table describes an API: remove one"))
            }
            ("oauth2", None) => UpstreamKind::OAuth2(Box::new(self.oauth2()?)),
            ("oauth2", Some(_)) => {
                return Err(ConfigError::new(
                    "kind",
                    "is \"oauth2\" but an http_api table describes an API: set kind = \"http_api\" to use \
                     it, or remove the table",
                ))
            }
            ("http_api", Some(api)) => {
                api.validate().map_err(|problem| ConfigError::new("http_api", problem))?;
                UpstreamKind::HttpApi(Box::new(api.clone()))
            }
            ("http_api", None) => {
                return Err(ConfigError::new(
                    "http_api",
                    "kind = \"http_api\" needs an http_api table describing the API (README: Plug in your API)",
                ))
            }
            (other, _) => {
                return Err(ConfigError::new(
                    "kind",
                    format!("{other:?} is neither \"oauth2\", \"http_api\" nor \"oidc\""),
                ))
            }
        };
        Ok(UpstreamOptions { base_url, kind, timeout, connect_timeout })
    }

    fn oauth2(&self) -> Result<OAuth2Options, ConfigError> {
        let auth = client_auth(&self.client_auth, "client_auth")?;
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::new("client_id", "must not be empty: the client id the server issued to this app"));
        }
        crate::http_api::check_profile_map(&self.profile)
            .map_err(|(key, problem)| ConfigError::new(key, problem).within("profile"))?;
        Ok(OAuth2Options {
            token_url: endpoint(&self.token_url, "token_url")?,
            revocation_url: endpoint(&self.revocation_url, "revocation_url")?,
            userinfo_url: endpoint(&self.userinfo_url, "userinfo_url")?,
            registration_url: match self.registration_url.trim() {
                "" => None,
                raw => Some(endpoint(raw, "registration_url")?),
            },
            profile: self.profile.clone(),
            registration_fields: self.registration_fields.clone(),
            client_id: self.client_id.trim().to_string(),
            client_secret: self.client_secret.clone(),
            auth,
        })
    }
}

/// An upstream ready to use: what the session manager takes, and the OpenID provider's
/// sign-in when the kind is `oidc` (mount [`crate::oidc::routes`] with it).
pub struct Connected {
    /// The upstream.
    pub upstream: Arc<dyn Upstream>,
    /// The provider, for `oidc`.
    pub oidc: Option<Arc<OidcProvider>>,
}

impl UpstreamOptions {
    /// The upstream at `base`, ready: for `oidc`, the provider's metadata is discovered first
    /// (waited for while it cannot be reached, [`crate::oidc::start_delays`]) and people come
    /// back from it to `callback` (this site's `/auth/callback`, registered at the provider).
    pub async fn connect(&self, base: &Url, callback: &Url) -> Result<Connected, UpstreamBuildError> {
        let UpstreamKind::Oidc(options) = &self.kind else {
            return Ok(Connected { upstream: self.build_at(base)?, oidc: None });
        };
        let http = crate::oidc::http_client(options)?;
        let metadata = crate::oidc::discover_retrying(options, &http, crate::oidc::start_delays()).await?;
        let provider = Arc::new(OidcProvider::new((**options).clone(), metadata, callback)?);
        let upstream: Arc<dyn Upstream> = Arc::new(provider.upstream(base)?);
        Ok(Connected { upstream, oidc: Some(provider) })
    }

    /// The upstream at the configured `base_url`.
    pub fn build(&self) -> Result<Arc<dyn Upstream>, UpstreamBuildError> {
        let base = self.base_url.as_ref().ok_or(UpstreamBuildError::NoBaseUrl)?;
        self.build_at(base)
    }

    /// The upstream at `base` (an address the app chose: a server it started itself, say).
    pub fn build_at(&self, base: &Url) -> Result<Arc<dyn Upstream>, UpstreamBuildError> {
        Ok(match &self.kind {
            UpstreamKind::Oidc(_) => return Err(UpstreamBuildError::NeedsDiscovery),
            UpstreamKind::HttpApi(api) => {
                Arc::new(HttpApi::new(base.clone(), (**api).clone(), self.timeout, self.connect_timeout)?)
            }
            UpstreamKind::OAuth2(o) => {
                let paths = EndpointPaths {
                    token: &o.token_url,
                    revocation: &o.revocation_url,
                    userinfo: &o.userinfo_url,
                    registration: o.registration_url.as_deref(),
                };
                Arc::new(UpstreamClient::new(ClientConfig {
                    endpoints: UpstreamEndpoints::at(base, paths)?,
                    profile: o.profile.clone(),
                    registration_fields: o.registration_fields.clone(),
                    client_id: o.client_id.clone(),
                    client_secret: o.client_secret.clone(),
                    auth: o.auth,
                    timeout: self.timeout,
                    connect_timeout: self.connect_timeout,
                })?)
            }
        })
    }

    /// The OAuth 2.0 client secret, when the kind has one (an app may refuse a known one).
    pub fn client_secret(&self) -> Option<&SecretString> {
        match &self.kind {
            UpstreamKind::OAuth2(o) => Some(&o.client_secret),
            UpstreamKind::Oidc(o) => Some(&o.client_secret),
            UpstreamKind::HttpApi(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(json: &str) -> UpstreamConfig {
        serde_json::from_str(json).unwrap()
    }

    const OAUTH2: &str = r#"{
        "base_url": "https://auth.example/v1",
        "token_url": "/oauth/token",
        "revocation_url": "https://revoke.example/r",
        "userinfo_url": "/userinfo",
        "client_id": " app ",
        "client_secret": "s3cret",
        "profile": { "roles": "/roles" }
    }"#;

    #[test]
    fn an_openid_provider_is_its_issuer_and_a_client() {
        let mut config = parse(OAUTH2);
        config.kind = "oidc".into();
        config.oidc = Some(serde_json::from_str(
            r#"{"issuer": "https://id.example/realms/acme", "client_id": "c", "client_secret": "s"}"#,
        ).unwrap());
        let options = config.validate().unwrap();
        let UpstreamKind::Oidc(o) = &options.kind else { panic!("oidc") };
        assert_eq!(o.issuer, "https://id.example/realms/acme");
        assert!(matches!(options.build(), Err(UpstreamBuildError::NeedsDiscovery)), "discovered, not built");
    }

    #[test]
    fn an_oauth2_server_is_a_few_keys() {
        let options = parse(OAUTH2).validate().unwrap();
        let UpstreamKind::OAuth2(o) = &options.kind else { panic!("oauth2") };
        assert_eq!(o.client_id, "app");
        assert_eq!(o.client_secret.expose_secret(), "s3cret");
        assert_eq!(o.registration_url, None, "no registration unless configured");
        assert_eq!(o.profile, ProfileMap { roles: "/roles".into(), ..ProfileMap::oidc() }, "keys left out are OIDC's");
        assert_eq!(options.timeout, Duration::from_secs(5));
        assert_eq!(options.client_secret().map(|s| s.expose_secret()), Some("s3cret"));
        options.build().unwrap();
        let secret = format!("{:?}", parse(OAUTH2));
        assert!(!secret.contains("s3cret"), "never printed: {secret}");
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let cases = [
            (r#"{"base_url": "not a url"}"#, "base_url"),
            (r#"{"base_url": "ftp://x.example"}"#, "base_url"),
            (r#"{"kind": "soap"}"#, "kind"),
            (r#"{"token_url": ""}"#, "token_url"),
            (r#"{"token_url": "//evil.example/token"}"#, "token_url"),
            (r#"{"revocation_url": "mailto:x@y"}"#, "revocation_url"),
            (r#"{"userinfo_url": "x"}"#, "userinfo_url"),
            (r#"{"registration_url": "users"}"#, "registration_url"),
            (r#"{"client_id": " "}"#, "client_id"),
            (r#"{"client_auth": "private_key_jwt"}"#, "client_auth"),
            (r#"{"timeout_ms": 0}"#, "timeout_ms"),
            (r#"{"connect_timeout_ms": 0}"#, "connect_timeout_ms"),
            (r#"{"profile": {"email": "email"}}"#, "profile.email"),
            (r#"{"profile": {"name": "name"}}"#, "profile.name"),
            (r#"{"kind": "http_api"}"#, "http_api"),
            (r#"{"kind": "oidc"}"#, "oidc"),
            (r#"{"kind": "oidc", "oidc": {"issuer": "http://id.example", "client_id": "c", "client_secret": "s"}}"#, "oidc.issuer"),
            (r#"{"oidc": {"issuer": "https://id.example", "client_id": "c", "client_secret": "s"}}"#, "kind"),
        ];
        for (change, key) in cases {
            let mut config: serde_json::Value = serde_json::from_str(OAUTH2).unwrap();
            let change: serde_json::Value = serde_json::from_str(change).unwrap();
            for (k, v) in change.as_object().unwrap() {
                config[k] = v.clone();
            }
            let config: UpstreamConfig = serde_json::from_value(config).unwrap();
            let e = config.validate().expect_err(key);
            assert_eq!(e.key, key, "{change}: {e}");
        }
    }

    #[test]
    fn without_an_address_it_builds_only_where_told() {
        let mut config = parse(OAUTH2);
        config.base_url = String::new();
        let options = config.validate().unwrap();
        assert!(matches!(options.build(), Err(UpstreamBuildError::NoBaseUrl)));
        options.build_at(&Url::parse("http://127.0.0.1:9").unwrap()).unwrap();
    }

    #[test]
    fn an_http_api_reads_no_oauth2_key() {
        let config = parse(
            r#"{
            "base_url": "http://127.0.0.1:4000",
            "kind": "http_api",
            "http_api": {
                "sign_in": "POST /auth/login", "refresh": "POST /auth/refresh-token",
                "profile": "GET /me", "access_token": "json:/accessToken",
                "refresh_token": "cookie:refresh_token", "present_refresh": "cookie:refresh_token",
                "present_access": "bearer", "access_expiry": "jwt"
            }
        }"#,
        );
        let options = config.validate().unwrap();
        assert!(matches!(options.kind, UpstreamKind::HttpApi(_)));
        assert!(options.client_secret().is_none());
        options.build().unwrap();
        let mut both = config.clone();
        both.kind = "oauth2".into();
        assert_eq!(both.validate().unwrap_err().key, "kind", "a table that would be ignored is an error");
    }
}
