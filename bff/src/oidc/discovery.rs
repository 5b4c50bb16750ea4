//! Discovery: the provider's metadata (`/.well-known/openid-configuration`) and its signing keys
//! (JWKS), fetched with this crate's size caps and timeouts, checked for what the authorization
//! code flow needs, and retried while the provider cannot be reached (a provider that is down
//! when the app starts is waited for; a document that lacks something stops the start, naming
//! it).

use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{AdditionalProviderMetadata, JsonWebKeySet, ProviderMetadata};
use serde::{Deserialize, Serialize};
use url::Url;

use super::config::OidcOptions;
use crate::upstream::{read_body, ANSWER_MAX};

/// What Tokenless reads from a discovery document beyond OpenID Connect Discovery's core:
/// RP-initiated logout, revocation, back-channel logout, PKCE and RFC 9207.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RP-Initiated Logout 1.0: where the provider's session is ended.
    pub end_session_endpoint: Option<Url>,
    /// RFC 7009: where refresh tokens are revoked at sign-out.
    pub revocation_endpoint: Option<Url>,
    /// Back-Channel Logout 1.0: the provider calls this app's logout endpoint.
    #[serde(default)]
    pub backchannel_logout_supported: bool,
    /// ... with the `sid` of the provider's session in the logout token.
    #[serde(default)]
    pub backchannel_logout_session_supported: bool,
    /// RFC 7636 methods; Tokenless always uses `S256`.
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9207: the provider names itself (`iss`) in every authorization answer.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

/// A provider's discovered metadata (endpoints, algorithms) with its signing keys set.
pub type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The signing keys of a provider.
pub type KeySet = JsonWebKeySet<CoreJsonWebKey>;

/// Where discovery documents live under an issuer.
pub const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// Why a provider could not be discovered.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Not reachable, too slow, or failing (5xx, 429): worth another try.
    #[error("cannot reach the OpenID provider at {url}: {reason}")]
    Unreachable {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// It answered, with something Tokenless cannot use: a configuration mistake to fix.
    #[error("the OpenID provider's {what} at {url} cannot be used: {problem}")]
    Unusable {
        /// The discovery document or the key set.
        what: &'static str,
        /// What was fetched.
        url: String,
        /// What is wrong, naming the field.
        problem: String,
    },
}

impl DiscoveryError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DiscoveryError::Unreachable { .. })
    }
}

/// The HTTP client discovery and the provider's endpoints are called with: the configured
/// timeouts, no redirects (an endpoint that redirects is misconfigured; credentials never
/// follow it elsewhere).
pub fn http_client(options: &OidcOptions) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(options.timeout)
        .connect_timeout(options.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// `GET url`, the body at most [`ANSWER_MAX`] bytes.
async fn fetch(http: &reqwest::Client, url: &str, what: &'static str) -> Result<Vec<u8>, DiscoveryError> {
    let unreachable = |reason: String| DiscoveryError::Unreachable { url: url.to_string(), reason };
    let unusable = |problem: String| DiscoveryError::Unusable { what, url: url.to_string(), problem };
    let response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| {
            let e = e.without_url();
            if e.is_builder() { unusable(e.to_string()) } else { unreachable(e.to_string()) }
        })?;
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(unreachable(format!("it answered {status}")));
    }
    if !status.is_success() {
        return Err(unusable(format!("it answered {status} (is the issuer URL right?)")));
    }
    read_body(response, ANSWER_MAX).await.map_err(|e| match e {
        crate::UpstreamError::Unexpected(problem) => unusable(problem),
        other => unreachable(other.to_string()),
    })
}

/// The provider's signing keys (fetched again when a token names a key id it has not seen).
pub async fn fetch_keys(http: &reqwest::Client, jwks_uri: &str) -> Result<KeySet, DiscoveryError> {
    let bytes = fetch(http, jwks_uri, "key set").await?;
    let keys: KeySet = serde_json::from_slice(&bytes).map_err(|e| DiscoveryError::Unusable {
        what: "key set",
        url: jwks_uri.to_string(),
        problem: e.to_string(),
    })?;
    if keys.keys().is_empty() {
        return Err(DiscoveryError::Unusable {
            what: "key set",
            url: jwks_uri.to_string(),
            problem: "it holds no key, so no ID token could be checked".into(),
        });
    }
    Ok(keys)
}

/// The provider's metadata and keys, checked for the authorization code flow with PKCE.
pub async fn discover(options: &OidcOptions, http: &reqwest::Client) -> Result<Metadata, DiscoveryError> {
    let url = format!("{}{WELL_KNOWN}", options.issuer.trim_end_matches('/'));
    let bytes = fetch(http, &url, "discovery document").await?;
    let unusable = |problem: String| DiscoveryError::Unusable { what: "discovery document", url: url.clone(), problem };
    let metadata: Metadata = serde_json::from_slice(&bytes).map_err(|e| unusable(e.to_string()))?;
    // OpenID Connect Discovery §4.3: the issuer it states is exactly the one configured.
    let stated = metadata.issuer().as_str();
    if stated != options.issuer {
        return Err(unusable(format!(
            "its issuer is {stated:?}, not the configured {:?}: set issuer to exactly {stated:?}",
            options.issuer
        )));
    }
    if metadata.token_endpoint().is_none() {
        return Err(unusable("it has no token_endpoint (the authorization code flow needs one)".into()));
    }
    let code = openidconnect::ResponseTypes::new(vec![CoreResponseType::Code]);
    if !metadata.response_types_supported().contains(&code) {
        return Err(unusable("response_types_supported lacks \"code\" (the authorization code flow)".into()));
    }
    match &metadata.additional_metadata().code_challenge_methods_supported {
        Some(methods) if !methods.iter().any(|m| m == "S256") => {
            return Err(unusable("code_challenge_methods_supported lacks \"S256\" (PKCE)".into()));
        }
        Some(_) => {}
        None => tracing::info!(issuer = %options.issuer, "the provider does not list code_challenge_methods_supported; sending PKCE S256 all the same"),
    }
    // A plain-http issuer passed validation only on loopback (a test provider).
    check_endpoints(&metadata, options.issuer.starts_with("http://")).map_err(unusable)?;
    let keys = fetch_keys(http, metadata.jwks_uri().as_str()).await?;
    Ok(metadata.set_jwks(keys))
}

/// Credentials, codes and tokens go to these endpoints: https, like the issuer (`plain_ok`
/// only when the issuer itself is a plain-http loopback test provider).
fn check_endpoints(metadata: &Metadata, plain_ok: bool) -> Result<(), String> {
    let extra = metadata.additional_metadata();
    let endpoints = [
        ("authorization_endpoint", Some(metadata.authorization_endpoint().url().clone())),
        ("token_endpoint", metadata.token_endpoint().map(|u| u.url().clone())),
        ("userinfo_endpoint", metadata.userinfo_endpoint().map(|u| u.url().clone())),
        ("jwks_uri", Some(metadata.jwks_uri().url().clone())),
        ("end_session_endpoint", extra.end_session_endpoint.clone()),
        ("revocation_endpoint", extra.revocation_endpoint.clone()),
    ];
    for (name, url) in endpoints {
        if let Some(url) = url {
            if url.scheme() != "https" && !(plain_ok && super::config::is_loopback(&url) && url.scheme() == "http") {
                return Err(format!("{name} {} is not https", url.as_str()));
            }
        }
    }
    Ok(())
}

/// [`discover`], tried again after each of `delays` while the provider is unreachable (each
/// failure logged with the wait before the next); a document that cannot be used is not
/// retried.
pub async fn discover_retrying(
    options: &OidcOptions,
    http: &reqwest::Client,
    delays: impl IntoIterator<Item = Duration>,
) -> Result<Metadata, DiscoveryError> {
    let mut delays = delays.into_iter();
    loop {
        match discover(options, http).await {
            Err(e) if e.is_retryable() => match delays.next() {
                Some(delay) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "OpenID provider not reachable yet");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e),
            },
            done => return done,
        }
    }
}

/// The waits between start-up attempts: 0.5 s doubling up to 30 s, for about five minutes.
pub fn start_delays() -> impl Iterator<Item = Duration> {
    (0..16).map(|i| Duration::from_millis(500u64.saturating_mul(1 << i.min(6))).min(Duration::from_secs(30)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(token_endpoint: &str) -> Metadata {
        serde_json::from_value(serde_json::json!({
            "issuer": "https://id.example",
            "authorization_endpoint": "https://id.example/auth",
            "token_endpoint": token_endpoint,
            "jwks_uri": "https://id.example/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }))
        .unwrap()
    }

    #[test]
    fn endpoints_of_an_https_provider_are_https() {
        assert_eq!(check_endpoints(&metadata("https://id.example/token"), false), Ok(()));
        let e = check_endpoints(&metadata("http://id.example/token"), false).unwrap_err();
        assert!(e.contains("token_endpoint"), "{e}");
        assert_eq!(check_endpoints(&metadata("http://127.0.0.1:9/token"), true), Ok(()), "a loopback test provider");
        assert!(check_endpoints(&metadata("http://id.example/token"), true).is_err(), "plain http off loopback");
    }
}
