//! An OpenID provider as an app nests it in its settings: the issuer URL, this app's client,
//! the scopes it asks for, which claim holds the roles and the name the sign-in page shows.
//! Everything else is discovered ([`super::discover`]).

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::client::ClientAuth;
use crate::config::{client_auth, millis, ConfigError};

/// The provider as written in a file or the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL (`https://id.example/realms/acme`): exactly the `iss` of its tokens, and
    /// where `/.well-known/openid-configuration` is found. Required.
    pub issuer: String,
    /// This app's client id at the provider. Required.
    pub client_id: String,
    /// This app's client secret (a confidential client).
    pub client_secret: SecretString,
    /// `client_secret_basic` or `client_secret_post`.
    pub client_auth: String,
    /// The scopes asked for, space separated; `openid` must be one.
    pub scopes: String,
    /// A JSON pointer into the ID token's claims (or userinfo) that holds the roles (`/roles`,
    /// `/realm_access/roles` for Keycloak); empty: no roles.
    pub roles_claim: String,
    /// What the sign-in page's button says: "Continue with {provider_name}".
    pub provider_name: String,
    /// Timeout of a whole call to the provider, in milliseconds.
    pub timeout_ms: u64,
    /// Timeout of connecting to the provider, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Extra parameters of the authorization request, for providers that want them (Google's
    /// refresh token: `access_type = "offline"`; Auth0's API: `audience = "https://api.example"`).
    /// The flow's own parameters cannot be set here.
    pub auth_params: BTreeMap<String, String>,
}

/// The authorization request's own parameters, which `auth_params` may not set.
const RESERVED_PARAMS: [&str; 9] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
];

impl Default for OidcConfig {
    /// The library's defaults, the only place they are written.
    fn default() -> Self {
        OidcConfig {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: SecretString::from(String::new()),
            client_auth: "client_secret_basic".into(),
            scopes: "openid profile email offline_access".into(),
            roles_claim: String::new(),
            provider_name: "your identity provider".into(),
            timeout_ms: 5_000,
            connect_timeout_ms: 2_000,
            auth_params: BTreeMap::new(),
        }
    }
}

/// A validated provider configuration.
#[derive(Debug, Clone)]
pub struct OidcOptions {
    /// The issuer, as configured (compared with the discovered one character for character).
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// How the client authenticates at the token endpoint.
    pub auth: ClientAuth,
    /// The scopes asked for (`openid` first).
    pub scopes: Vec<String>,
    /// Where the roles are in the claims, if anywhere.
    pub roles_claim: Option<String>,
    /// The provider's name on the sign-in page.
    pub provider_name: String,
    /// Timeout of a whole call.
    pub timeout: Duration,
    /// Timeout of connecting.
    pub connect_timeout: Duration,
    /// Extra parameters of the authorization request.
    pub auth_params: Vec<(String, String)>,
}

impl OidcOptions {
    /// Whether the sign-in asks for offline access (a refresh token): the `offline_access` scope,
    /// or Google's `access_type = offline`.
    pub fn asks_offline(&self) -> bool {
        self.scopes.iter().any(|s| s == "offline_access")
            || self.auth_params.iter().any(|(k, v)| k == "access_type" && v == "offline")
    }
}

/// Whether `url` is on this machine's loopback (where a test provider may speak plain http).
pub(crate) fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

impl OidcConfig {
    /// Checks every value; the first bad one is the error.
    pub fn validate(&self) -> Result<OidcOptions, ConfigError> {
        let issuer = self.issuer.trim();
        if issuer.is_empty() {
            return Err(ConfigError::new("issuer", "is required: the provider's issuer URL (https://id.example/realms/acme)"));
        }
        let url = Url::parse(issuer).map_err(|e| ConfigError::new("issuer", format!("{issuer:?} is not a URL ({e})")))?;
        if !(url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url))) || url.host().is_none() {
            return Err(ConfigError::new(
                "issuer",
                format!("{issuer:?} must be an https URL (plain http only on loopback, for tests)"),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::new("issuer", "an issuer has no query or fragment"));
        }
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::new("client_id", "must not be empty: the client id the provider issued to this app"));
        }
        if secrecy::ExposeSecret::expose_secret(&self.client_secret).is_empty() {
            return Err(ConfigError::new(
                "client_secret",
                "must not be empty: Tokenless is a confidential client (set the secret the provider issued)",
            ));
        }
        let auth = client_auth(&self.client_auth, "client_auth")?;
        let mut scopes: Vec<String> = self.scopes.split_whitespace().map(str::to_string).collect();
        let Some(at) = scopes.iter().position(|s| s == "openid") else {
            return Err(ConfigError::new("scopes", "must include openid (the default: openid profile email offline_access)"));
        };
        scopes.swap(0, at);
        let roles_claim = match self.roles_claim.trim() {
            "" => None,
            pointer if pointer.starts_with('/') => Some(pointer.to_string()),
            other => {
                return Err(ConfigError::new(
                    "roles_claim",
                    format!("{other:?} is not a JSON pointer (/roles, /realm_access/roles)"),
                ))
            }
        };
        let provider_name = self.provider_name.trim();
        if provider_name.is_empty() || provider_name.chars().count() > 60 {
            return Err(ConfigError::new("provider_name", "must be 1 to 60 characters (the sign-in button's text)"));
        }
        let mut auth_params = Vec::with_capacity(self.auth_params.len());
        for (name, value) in &self.auth_params {
            let shown = format!("auth_params.{name}");
            if RESERVED_PARAMS.contains(&name.as_str()) {
                return Err(ConfigError::new(shown, "is the sign-in flow's own parameter: it cannot be set"));
            }
            let name_ok = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            if !name_ok {
                return Err(ConfigError::new(shown, "a parameter name is 1 to 64 letters, digits, _, - or ."));
            }
            if value.trim().is_empty() || value.len() > 512 {
                return Err(ConfigError::new(shown, "must be 1 to 512 characters"));
            }
            auth_params.push((name.clone(), value.trim().to_string()));
        }
        Ok(OidcOptions {
            issuer: issuer.to_string(),
            client_id: self.client_id.trim().to_string(),
            client_secret: self.client_secret.clone(),
            auth,
            scopes,
            roles_claim,
            provider_name: provider_name.to_string(),
            timeout: millis(self.timeout_ms, "timeout_ms")?,
            connect_timeout: millis(self.connect_timeout_ms, "connect_timeout_ms")?,
            auth_params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> OidcConfig {
        let mut base = serde_json::json!({
            "issuer": "https://id.example/realms/acme", "client_id": "tokenless", "client_secret": "s"
        });
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn an_issuer_and_a_client_are_enough() {
        let o = config(serde_json::json!({})).validate().unwrap();
        assert_eq!(o.scopes, ["openid", "profile", "email", "offline_access"]);
        assert_eq!((o.roles_claim, o.auth), (None, ClientAuth::ClientSecretBasic));
        let o = config(serde_json::json!({ "scopes": "email openid", "roles_claim": "/realm_access/roles" }))
            .validate()
            .unwrap();
        assert_eq!(o.scopes, ["openid", "email"], "openid first");
        assert_eq!(o.roles_claim.as_deref(), Some("/realm_access/roles"));
        config(serde_json::json!({ "issuer": "http://127.0.0.1:4444" })).validate().unwrap();
        assert!(!o.asks_offline(), "email openid: no refresh token asked");
        // Google: no offline_access scope, access_type=offline instead.
        let google = config(serde_json::json!({ "scopes": "openid email profile", "auth_params": { "access_type": "offline" } }))
            .validate()
            .unwrap();
        assert_eq!(google.auth_params, [("access_type".to_string(), "offline".to_string())]);
        assert!(google.asks_offline());
        assert!(!config(serde_json::json!({ "scopes": "openid" })).validate().unwrap().asks_offline());
    }

    #[test]
    fn every_bad_value_names_its_key() {
        for (change, key) in [
            (serde_json::json!({ "issuer": "" }), "issuer"),
            (serde_json::json!({ "issuer": "id.example" }), "issuer"),
            (serde_json::json!({ "issuer": "http://id.example" }), "issuer"),
            (serde_json::json!({ "issuer": "https://id.example/?realm=x" }), "issuer"),
            (serde_json::json!({ "client_id": " " }), "client_id"),
            (serde_json::json!({ "client_secret": "" }), "client_secret"),
            (serde_json::json!({ "client_auth": "none" }), "client_auth"),
            (serde_json::json!({ "scopes": "profile email" }), "scopes"),
            (serde_json::json!({ "roles_claim": "roles" }), "roles_claim"),
            (serde_json::json!({ "provider_name": " " }), "provider_name"),
            (serde_json::json!({ "timeout_ms": 0 }), "timeout_ms"),
            (serde_json::json!({ "auth_params": { "redirect_uri": "https://evil.example" } }), "auth_params.redirect_uri"),
            (serde_json::json!({ "auth_params": { "prompt": "none" } }), "auth_params.prompt"),
            (serde_json::json!({ "auth_params": { "a b": "x" } }), "auth_params.a b"),
            (serde_json::json!({ "auth_params": { "audience": " " } }), "auth_params.audience"),
        ] {
            let e = config(change.clone()).validate().expect_err(key);
            assert_eq!(e.key, key, "{change}: {e}");
        }
        let unknown: Result<OidcConfig, _> = serde_json::from_value(serde_json::json!({ "isuer": "x" }));
        assert!(unknown.unwrap_err().to_string().contains("isuer"), "a misspelt key is refused");
    }
}
