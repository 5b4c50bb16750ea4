//! Tokenless BFF core: what keeps tokens on the server. Another Leptos or plain axum app can
//! depend on it for the same guarantees.
//!
//! - [`seal`]: AES-256-GCM sealing of cookie values with a rotating key ring, and chunking of
//!   values too large for one cookie.
//! - [`session`]: the sealed payload (tokens that never print, profile, generation, timestamps)
//!   and the freshness decision.
//! - [`cookies`]: the session cookie's name and attributes, read/write/clear with chunks.
//! - [`clock`]: the injected clock that every expiry is measured with.
//! - [`upstream`]: the upstream contract (sign in, refresh, end a sign-in, profile, register,
//!   how resource calls carry the access token) every kind of upstream implements.
//! - [`grants`]: refresh and revocation as a trait the refresh machinery calls.
//! - [`http_api`]: HTTP APIs described by configuration (tokens in JSON or `Set-Cookie`,
//!   presented as Bearer or `Cookie`), the seeds' kind of backend.
//! - [`client`]: the OAuth 2.0 upstream (password and refresh grants, RFC 7009 revocation,
//!   userinfo, registration) with errors that tell a refusal from an outage.
//! - [`manager`]: loading a request's session (limits, refresh, key rotation), sign-in/out.
//! - [`refresh`]: one refresh per rotated token however many requests need it, the result
//!   handed to late requests, newest cookie wins, counters.
//! - [`layer`]: the one Layer an app adds (cookies, cross-site refusal, loading, refresh,
//!   writing the cookie once) and the [`RequestSession`] extractor.
//! - [`middleware`]: the per-request session handle that handlers and components use.
//! - [`passthrough`]: allowlisted upstream calls for browser code, token attached, nothing
//!   leaked either way.
//! - [`csrf`]: refusing state-changing requests from other sites.
//! - [`redirect`]: return paths after sign-in that cannot leave the site.

pub mod client;
pub mod clock;
pub mod config;
pub mod cookies;
pub mod csrf;
pub mod grants;
pub mod http_api;
pub mod layer;
pub mod manager;
pub mod memory;
pub mod middleware;
pub mod passthrough;
pub mod redirect;
pub mod refresh;
pub mod seal;
pub mod session;
pub mod upstream;

pub use client::{UpstreamClient, UpstreamError};
pub use config::{ConfigError, SessionConfig, SessionOptions};
pub use http_api::{HttpApi, HttpApiConfig};
pub use layer::SessionLayer;
pub use manager::{BuildError, SessionManager, SessionManagerBuilder};
pub use memory::{InProcess, RefreshMemory};
pub use seal::KeyRing;
pub use middleware::RequestSession;
pub use session::{Profile, Session};
pub use upstream::Upstream;
