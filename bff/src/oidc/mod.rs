//! OpenID Connect: a provider configured by its issuer URL alone ([`OidcConfig`]), its metadata
//! and signing keys discovered ([`discover`], [`discover_retrying`] at start), and the
//! authorization code flow with PKCE ([`OidcProvider::begin`], [`OidcProvider::finish`]).
//!
//! ```no_run
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! use tokenless_bff::oidc::{self, OidcConfig};
//! let config: OidcConfig = serde_json::from_str(r#"{
//!     "issuer": "https://id.example/realms/acme",
//!     "client_id": "tokenless",
//!     "client_secret": "s3cret",
//!     "roles_claim": "/realm_access/roles"
//! }"#)?;
//! let options = config.validate()?;
//! let http = oidc::http_client(&options)?;
//! let metadata = oidc::discover_retrying(&options, &http, oidc::start_delays()).await?;
//! println!("signing in at {}", metadata.authorization_endpoint().as_str());
//! # Ok(()) }
//! ```

mod config;
mod discovery;
mod flow;
mod logout;
mod routes;
mod upstream;

pub use config::{OidcConfig, OidcOptions};
pub use routes::{end_named, reason, routes, sign_out, LogoutNotDone, OidcPaths};
pub use upstream::{OidcUpstream, NO_REVOCATION_ENDPOINT, PASSWORD_REFUSED};
pub use logout::{
    check_logout_token, LogoutClaims, LogoutTokenError, BACKCHANNEL_EVENT, LOGOUT_CLAIM_MAX, LOGOUT_JTI_MEMORY_SECS,
    LOGOUT_TOKEN_MAX, LOGOUT_TOKEN_WINDOW_SECS,
};
pub use flow::{Callback, FlowError, OidcProvider, Pending, SignedIn, NEXT_MAX, PENDING_LIFETIME_SECS};
pub use discovery::{
    discover, discover_retrying, fetch_keys, http_client, start_delays, DiscoveryError, KeySet, ExtraMetadata,
    Metadata, WELL_KNOWN,
};
