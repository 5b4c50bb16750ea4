//! Server functions and the DTOs that cross the wire. Declared for both targets; their bodies
//! run on the server only, in `crate::server::actions`. Nothing here carries a token: the DTOs
//! hold only what pages show.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{AppError, StatusError};

/// What the home page shows about the server. Nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    /// "demo upstream (in-process)" or the configured upstream's origin.
    pub upstream: String,
    /// Milliseconds since the Unix epoch when the server answered.
    pub answered_at_ms: u64,
}

/// The signed-in person, as pages show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub email: String,
    pub roles: Vec<String>,
}

impl UserView {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// The account page: the profile and when the session ends. No tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub user: UserView,
    /// Unix seconds.
    pub signed_in_at: u64,
    /// Unix seconds: the earliest of the refresh token's expiry, the absolute limit and the
    /// idle limit counted from now.
    pub session_ends_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrogView {
    pub id: u32,
    pub name: String,
    pub species: String,
    pub habitat: String,
    /// The upstream's SVG drawing as a `data:` URI for an `<img>` (SVG in an image cannot run
    /// scripts).
    pub picture: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminStatsView {
    pub users: u64,
    pub active_sessions: u64,
    pub refresh_grants: u64,
    pub reuse_events: u64,
}

/// The home page's server status, asked again from its island. The island calls it with the
/// browser's `fetch` and reads the JSON answer with the browser's parser (`crate::browser`):
/// the wasm client carries neither this function's client nor a JSON decoder.
#[server(prefix = "/api", endpoint = "server_status")]
pub async fn server_status() -> Result<StatusReport, StatusError> {
    Ok(crate::server::status::current().await)
}

/// The OpenID provider's name for the sign-in page's "Continue with ..." button; `None` when
/// people sign in with an email and password here.
#[server(prefix = "/api", endpoint = "sign_in_provider")]
pub async fn sign_in_provider() -> Result<Option<String>, AppError> {
    Ok(crate::server::actions::sign_in_provider())
}

/// Who is signed in on the request being rendered, read on the server without a round of
/// async work: the header asks it on every page (it is never an island). `None` when nobody,
/// and in the browser.
pub fn signed_in_user() -> Option<UserView> {
    request::signed_in_user()
}

#[cfg(feature = "ssr")]
mod request {
    pub fn signed_in_user() -> Option<super::UserView> {
        crate::server::actions::who_am_i().ok().flatten()
    }
}

#[cfg(not(feature = "ssr"))]
mod request {
    pub fn signed_in_user() -> Option<super::UserView> {
        None
    }
}

/// Who is signed in on this request; `None` when nobody.
#[server(prefix = "/api", endpoint = "who_am_i")]
pub async fn who_am_i() -> Result<Option<UserView>, AppError> {
    crate::server::actions::who_am_i()
}

/// Signs in, then sends the browser to `next` when it is a path of this site, else `/`.
#[server(prefix = "/api", endpoint = "login")]
pub async fn login(email: String, password: String, next: String) -> Result<(), AppError> {
    crate::server::actions::login(email, password, next).await
}

/// Creates the account upstream, signs in with it, then goes to `next` like `login`.
#[server(prefix = "/api", endpoint = "register")]
pub async fn register(name: String, email: String, password: String, next: String) -> Result<(), AppError> {
    crate::server::actions::register(name, email, password, next).await
}

/// Revokes the session's tokens upstream, deletes the session cookies, goes home.
#[server(prefix = "/api", endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    crate::server::actions::logout().await
}

#[server(prefix = "/api", endpoint = "account")]
pub async fn account() -> Result<AccountView, AppError> {
    crate::server::actions::account()
}

#[server(prefix = "/api", endpoint = "frogs")]
pub async fn list_frogs() -> Result<Vec<FrogView>, AppError> {
    crate::server::actions::list_frogs().await
}

#[server(prefix = "/api", endpoint = "admin_stats")]
pub async fn admin_stats() -> Result<AdminStatsView, AppError> {
    crate::server::actions::admin_stats().await
}
