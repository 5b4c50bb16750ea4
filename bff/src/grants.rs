//! The token operations the refresh machinery needs from the upstream — refresh a token set,
//! end a sign-in — as a trait, so the machinery does not care which kind of upstream (or which
//! test double) answers. Every [`crate::upstream::Upstream`] is one.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::client::{UpstreamClient, UpstreamError};
use crate::session::{Token, TokenSet};

/// A boxed, sendable future (what a trait object's async method returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Refresh and revocation, as the [`crate::refresh::Refresher`] calls them.
pub trait TokenGrants: Send + Sync + 'static {
    /// New tokens for `refresh_token`, expiries computed from `now` (Unix seconds); `timeout`
    /// bounds the whole call. When the upstream does not rotate, the answer keeps the presented
    /// refresh token.
    fn refresh<'a>(
        &'a self,
        refresh_token: &'a Token,
        now: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<TokenSet, UpstreamError>>;

    /// Ends the sign-in these tokens belong to, upstream: RFC 7009 revocation of the refresh
    /// token (else the access token) for OAuth 2.0, the logout endpoint for an HTTP API. Only
    /// `Ok` confirms it.
    fn revoke<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), UpstreamError>>;
}

impl TokenGrants for UpstreamClient {
    fn refresh<'a>(
        &'a self,
        refresh_token: &'a Token,
        now: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<TokenSet, UpstreamError>> {
        Box::pin(self.refresh_grant(refresh_token, now, Some(timeout)))
    }

    fn revoke<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), UpstreamError>> {
        let (token, hint) = tokens.revocable();
        Box::pin(UpstreamClient::revoke(self, token, hint))
    }
}
