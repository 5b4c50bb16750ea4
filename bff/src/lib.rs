//! Tokenless BFF core: sign people in against an upstream API and keep every token on the
//! server. The browser holds one sealed (AES-256-GCM), HttpOnly cookie; the server refreshes
//! access tokens while it handles a request, one refresh per rotated token however many requests
//! need it.
//!
//! An axum app adds one [`SessionLayer`] and takes a [`RequestSession`] in its handlers:
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{routing::get, Json, Router};
//! use tokenless_bff::{RequestSession, SessionConfig, SessionLayer, SessionManager, UpstreamConfig};
//!
//! async fn me(session: RequestSession) -> Json<Option<String>> {
//!     Json(session.profile().map(|p| p.name))
//! }
//!
//! // `upstream` and `session`: tables of the app's own settings, read with serde.
//! fn app(upstream: &UpstreamConfig, session: &SessionConfig) -> Result<Router, Box<dyn std::error::Error>> {
//!     let upstream = upstream.validate()?.build()?;
//!     let manager = SessionManager::builder(upstream).options(session.validate()?).secure(true).build()?;
//!     Ok(Router::new().route("/me", get(me)).layer(SessionLayer::new(Arc::new(manager))))
//! }
//! ```
//!
//! - **Sessions**: [`SessionManager`] (built with [`SessionManager::builder`] from a
//!   [`SessionConfig`] an app nests in its own settings), [`SessionLayer`] (cookie jar,
//!   cross-site refusal, loading and proactive refresh, the cookie written once per response),
//!   [`RequestSession`] (sign in, register, sign out, profile, upstream calls with the token
//!   attached and a 401 answered by one refresh).
//! - **Upstreams** implement [`Upstream`]; [`UpstreamConfig`] (nested in an app's settings)
//!   builds either kind the library has: the OAuth 2.0 token endpoint ([`UpstreamClient`])
//!   and HTTP APIs described by configuration ([`HttpApi`], [`HttpApiConfig`]: tokens in JSON or
//!   `Set-Cookie`, presented as Bearer or `Cookie`, the seeds' kind of backend).
//! - **Refresh**: [`Refresher`] (single flight, rotation grace, newest wins, sign-out wins,
//!   counters) remembers through a [`RefreshMemory`]: this process's [`InProcess`] memory, or a
//!   store several instances share ([`memory`] has the contract).
//! - **OpenID Connect** (in progress): [`oidc`] (a provider by its issuer URL, discovery with
//!   its signing keys, waited for at start).
//! - **Operations**: [`metrics`] (the refresh counters for a Prometheus scraper).
//! - **Browser code's upstream calls**: [`passthrough`] (allowlisted, token attached, nothing
//!   leaked either way).
//! - **Keys and time**: [`KeyRing`] (rotating sealing keys; [`KeyRing::load_or_create`] for a
//!   development key kept in a file), [`Clock`] (every expiry is
//!   measured with an injected clock; [`ManualClock`] in tests).
//! - [`safe_next`]: return paths after sign-in that cannot leave the site.

#![deny(missing_docs)]

mod client;
mod clock;
mod config;
mod cookies;
mod csrf;
mod grants;
mod key_file;
pub mod http_api;
mod layer;
mod manager;
pub mod memory;
pub mod metrics;
pub mod oidc;
mod middleware;
pub mod passthrough;
mod redirect;
#[cfg(feature = "redis")]
mod redis_memory;
mod refresh;
#[cfg(any(feature = "redis", feature = "sqlite"))]
mod result_seal;
mod seal;
mod session;
#[cfg(feature = "sqlite")]
mod sqlite_memory;
mod upstream;
mod upstream_config;

#[cfg(test)]
mod tests;

// The layer, the extractor and the manager.
pub use layer::{CrossSiteAnswer, MissingSessionLayer, SessionLayer, SessionService, SignInHref, SiteOrigin, UnavailableAnswer};
pub use manager::{now, BuildError, Ended, Limits, Loaded, SessionManager, SessionManagerBuilder, MEMORY_UNAVAILABLE};
pub use middleware::{RequestSession, ResourceError};

// Configuration.
pub use config::{http_url, millis, seconds, ConfigError, SessionConfig, SessionOptions, Store, MAX_SECONDS};
pub use cookies::CookiePolicy;
pub use key_file::{KeyFile, KeyFileError};
pub use seal::{generate_key_spec, KeyError, KeyRing};

// Upstreams.
pub use upstream_config::{Connected, OAuth2Options, UpstreamBuildError, UpstreamConfig, UpstreamKind, UpstreamOptions};
pub use client::{ClientAuth, ClientConfig, EndpointPaths, UpstreamClient, UpstreamEndpoints};
pub use http_api::{Fields, HttpApi, HttpApiConfig, ProfileMap};
pub use upstream::{
    get_json, upstream_url, BoxFuture, RESOURCE_MAX, UNUSABLE_REFRESH_ANSWER, FieldProblem, RegisterError, Registered, SignInError, TokenGrants, Upstream,
    UpstreamError,
};

// Sessions and tokens.
pub use session::{Freshness, Profile, ProviderSession, Session, Token, TokenSet};

// The refresh machinery.
pub use memory::{InProcess, RefreshMemory};
#[cfg(feature = "redis")]
pub use redis_memory::{RedisMemory, RedisOptions, RedisStartError, SHARED_MEMORY_UNAVAILABLE};
#[cfg(feature = "sqlite")]
pub use sqlite_memory::{SqliteMemory, SqliteOptions, SqliteStartError};
pub use refresh::{
    ends_session, Known, OutcomeKind, RefreshConfig, RefreshCounts, Refresher, Revocation, HANDOFF, NO_REFRESH_TOKEN, SIGNED_OUT,
    SUBJECT_CHANGED,
};

// Time.
pub use clock::{system as system_clock, Clock, ManualClock, SystemClock};

// Paths.
pub use redirect::{safe_next, MAX_NEXT_LEN};
