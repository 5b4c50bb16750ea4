//! The OpenID provider as the refresh machinery and pages see it: refresh, revocation (when the
//! provider has the endpoint) and userinfo at the discovered endpoints (the OAuth 2.0 client's
//! work), and no password sign-in —
//! people sign in at the provider ([`super::OidcProvider::begin`]); a password never goes to it.

use std::time::Duration;

use reqwest::{Method, RequestBuilder};

use crate::client::{UpstreamClient, UpstreamError};
use crate::grants::{BoxFuture, TokenGrants};
use crate::session::{Profile, Token, TokenSet};
use crate::upstream::{SignInError, Upstream};

/// The [`Upstream`] of an OpenID provider ([`super::OidcProvider::upstream`]).
pub struct OidcUpstream {
    client: UpstreamClient,
    /// Whether the provider has a revocation endpoint.
    revocable: bool,
}

impl OidcUpstream {
    pub(crate) fn new(client: UpstreamClient, revocable: bool) -> Self {
        OidcUpstream { client, revocable }
    }
}

/// The refusal a revocation gets from a provider without a revocation endpoint.
pub const NO_REVOCATION_ENDPOINT: &str = "no_revocation_endpoint";

/// What a password sign-in at an OpenID provider's upstream answers.
pub const PASSWORD_REFUSED: &str = "people sign in at the OpenID provider, not with a password here";

impl TokenGrants for OidcUpstream {
    fn refresh<'a>(
        &'a self,
        refresh_token: &'a Token,
        now: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<TokenSet, UpstreamError>> {
        TokenGrants::refresh(&self.client, refresh_token, now, timeout)
    }

    fn revoke<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), UpstreamError>> {
        if !self.revocable {
            return Box::pin(async { Err(UpstreamError::Refused { code: NO_REVOCATION_ENDPOINT.into() }) });
        }
        TokenGrants::revoke(&self.client, tokens)
    }
}

impl Upstream for OidcUpstream {
    fn sign_in<'a>(&'a self, _email: &'a str, _password: &'a str, _now: u64) -> BoxFuture<'a, Result<TokenSet, SignInError>> {
        Box::pin(async { Err(SignInError::Upstream(UpstreamError::Unexpected(PASSWORD_REFUSED.into()))) })
    }

    fn profile<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<Profile, UpstreamError>> {
        Upstream::profile(&self.client, tokens)
    }

    fn resource(&self, method: Method, path_and_query: &str) -> Result<RequestBuilder, UpstreamError> {
        Upstream::resource(&self.client, method, path_and_query)
    }

    fn attach(&self, request: RequestBuilder, access: &Token) -> RequestBuilder {
        Upstream::attach(&self.client, request, access)
    }
}
