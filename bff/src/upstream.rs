//! The upstream contract: what Tokenless needs from the API it signs people in against — sign
//! in with credentials, refresh and end a sign-in ([`TokenGrants`], which the refresh machinery
//! calls), the profile, optionally registration, and how a resource request carries the access
//! token. Every kind of upstream implements [`Upstream`]: the OAuth 2.0 token endpoint
//! ([`crate::client::UpstreamClient`]) and HTTP APIs that speak cookies or custom JSON
//! ([`crate::http_api::HttpApi`]). Single flight, grace, newest-wins and the failure policy
//! are the same for every implementation.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

pub use crate::client::{upstream_url, FieldProblem, RegisterError, UpstreamError};
pub use crate::grants::{BoxFuture, TokenGrants};
use crate::session::{Profile, Token, TokenSet};

/// Why a sign-in did not give tokens.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Wrong email or password: one message, never which of the two.
    #[error("wrong email or password")]
    InvalidCredentials,
    /// The upstream could not be asked, or answered something else.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// What a registration gave.
#[derive(Debug)]
pub enum Registered {
    /// The account exists; signing in is the next step.
    Created,
    /// The API signed the new account in on the spot (seed 003's `/auth/register`).
    SignedIn(TokenSet),
}

/// An upstream Tokenless can sign people in against. Object safe: the session manager holds an
/// `Arc<dyn Upstream>`.
pub trait Upstream: TokenGrants {
    /// Tokens for an email and password; expiries computed from `now` (Unix seconds).
    fn sign_in<'a>(
        &'a self,
        email: &'a str,
        password: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<TokenSet, SignInError>>;

    /// The signed-in person, as pages show them.
    fn profile<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<Profile, UpstreamError>>;

    /// Creates an account. An upstream without registration answers
    /// [`RegisterError::Unsupported`] (the default).
    fn register<'a>(
        &'a self,
        _email: &'a str,
        _name: &'a str,
        _password: &'a str,
        _now: u64,
    ) -> BoxFuture<'a, Result<Registered, RegisterError>> {
        Box::pin(async { Err(RegisterError::Unsupported) })
    }

    /// A request for the resource at `path_and_query` (starting with `/`, already checked),
    /// without any credential yet.
    fn resource(&self, method: Method, path_and_query: &str) -> Result<RequestBuilder, UpstreamError>;

    /// Adds the access token to a resource request the way this API reads it (a Bearer header,
    /// or a `Cookie`). Called last, after any forwarded headers.
    fn attach(&self, request: RequestBuilder, access: &Token) -> RequestBuilder;
}

/// The refusal code of a refresh whose 2xx answer could not be used: the upstream may have
/// rotated the token already, so it is never presented again (the session ends).
pub const UNUSABLE_REFRESH_ANSWER: &str = "unusable_refresh_answer";

/// The most a resource or profile answer read as JSON ([`get_json`]) may weigh: pages render
/// what they read, and an upstream that never stops sending must not fill memory.
pub const RESOURCE_MAX: usize = 1024 * 1024;

/// The most a token or error answer may weigh: far more than any real one, little enough that
/// an upstream that never stops sending cannot fill memory.
pub(crate) const ANSWER_MAX: usize = 64 * 1024;

/// `GET path` with the access token; JSON back (at most [`RESOURCE_MAX`] bytes). 401 and 403
/// are told apart from outages (5xx, unreachable) and from answers that make no sense.
pub async fn get_json<T: DeserializeOwned>(
    upstream: &dyn Upstream,
    path: &str,
    access: &Token,
) -> Result<T, UpstreamError> {
    let request = upstream.resource(Method::GET, path)?.header("accept", "application/json");
    let response = upstream.attach(request, access).send().await.map_err(UpstreamError::from_reqwest)?;
    read_json(response, RESOURCE_MAX).await
}

/// A resource answer's JSON (at most `limit` bytes), or what its status means: 401 and 403 told
/// apart from outages (5xx) and from answers that make no sense. Every upstream's resource and
/// profile reads use it.
pub(crate) async fn read_json<T: DeserializeOwned>(response: reqwest::Response, limit: usize) -> Result<T, UpstreamError> {
    match response.status() {
        s if s.is_success() => {
            let bytes = read_body(response, limit).await?;
            serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Unexpected(format!("not the JSON expected: {e}")))
        }
        StatusCode::UNAUTHORIZED => Err(UpstreamError::Unauthorized),
        StatusCode::FORBIDDEN => Err(UpstreamError::Forbidden),
        s if s.is_server_error() => Err(UpstreamError::Unavailable(format!("status {s}"))),
        s => Err(UpstreamError::Unexpected(format!("status {s}"))),
    }
}

/// A body read to its end, at most `limit` bytes: a larger one is refused as soon as it is
/// known to be larger (by its `Content-Length`, or while reading), never buffered whole. Both a
/// body too large and one that breaks off are answers that make no sense (`Unexpected`).
pub(crate) async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, UpstreamError> {
    let too_large = || UpstreamError::Unexpected(format!("an answer larger than {limit} bytes"));
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(UpstreamError::from_reqwest)? {
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
