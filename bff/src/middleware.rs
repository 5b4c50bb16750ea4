//! The request's session as handlers, server functions and components reach it: loaded once by
//! [`attach`] in a middleware in front of everything, then carried in the request's extensions.
//! Calls to the upstream go through it, so the token is attached here and nowhere else.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use tower_cookies::Cookies;

use crate::client::{RegisterError, UpstreamError};
use crate::manager::{Ended, SessionManager, SignInError};
use crate::refresh::Revocation;
use crate::session::{Profile, ProviderSession, Session, TokenSet};

/// Loads the session from the request's cookies (see [`SessionManager::load`]); put the result
/// in the request's extensions.
pub async fn attach(manager: &Arc<SessionManager>, cookies: Cookies) -> RequestSession {
    let loaded = manager.load(&cookies).await;
    RequestSession {
        manager: manager.clone(),
        cookies,
        state: Arc::new(Mutex::new(State {
            session: loaded.session,
            ended: loaded.ended,
            refresh_failed: loaded.refresh_failed,
            unavailable: loaded.unavailable,
            committed: false,
        })),
    }
}

/// A request session for a session the server holds itself: no cookie is read or written and
/// no refresh is attempted. For benchmarks that measure everything but the cookie work.
pub fn fixed(manager: &Arc<SessionManager>, cookies: Cookies, session: Session) -> RequestSession {
    RequestSession {
        manager: manager.clone(),
        cookies,
        state: Arc::new(Mutex::new(State {
            session: Some(session),
            ended: None,
            refresh_failed: false,
            unavailable: false,
            committed: true,
        })),
    }
}

#[derive(Debug)]
struct State {
    session: Option<Session>,
    ended: Option<Ended>,
    refresh_failed: bool,
    /// Whether the session signed out could not be told (see [`crate::Loaded::unavailable`]).
    unavailable: bool,
    /// The response's headers are gone: cookies written now would be lost.
    committed: bool,
}

/// Cheap to clone; every clone is the same request's session.
#[derive(Clone)]
pub struct RequestSession {
    manager: Arc<SessionManager>,
    cookies: Cookies,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for RequestSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSession").field("state", &*self.lock()).finish_non_exhaustive()
    }
}

/// Why a call to an upstream resource failed, in the terms a page needs.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The request has no session.
    #[error("not signed in")]
    SignedOut,
    /// The session ended (refused refresh, sign-out elsewhere): sign in again.
    #[error("the session ended")]
    SessionEnded,
    /// The upstream forbade this to this user.
    #[error("the upstream forbade this")]
    Forbidden,
    /// The upstream could not be reached or timed out: try again.
    #[error("the upstream is unavailable: {0}")]
    Unavailable(String),
    /// The upstream answered something that makes no sense.
    #[error("the upstream answered unexpectedly: {0}")]
    Unexpected(String),
}

impl RequestSession {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-written (plain stores).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The manager this session belongs to.
    pub fn manager(&self) -> &Arc<SessionManager> {
        &self.manager
    }

    /// Whether the request has a session.
    pub fn is_signed_in(&self) -> bool {
        self.lock().session.is_some()
    }

    /// The signed-in person, if any.
    pub fn profile(&self) -> Option<Profile> {
        self.lock().session.as_ref().map(|s| s.profile.clone())
    }

    /// A copy of the session (tokens included: server-side use only; they never print).
    pub fn session(&self) -> Option<Session> {
        self.lock().session.clone()
    }

    /// Set when the request came with a session that ended while loading it.
    pub fn ended(&self) -> Option<Ended> {
        self.lock().ended
    }

    /// The access token needed a refresh the upstream could not do.
    pub fn refresh_failed(&self) -> bool {
        self.lock().refresh_failed
    }

    /// The request came with a session whose standing could not be told (the refresh memory
    /// does not answer): [`crate::SessionLayer`] answers it "try again" before the app runs.
    pub fn unavailable(&self) -> bool {
        self.lock().unavailable
    }

    /// Says the response's headers have been sent (a streamed page is still rendering): from
    /// now on a refresh cannot reach the browser in this response, so its result is kept for
    /// the session's next request instead.
    pub fn commit(&self) {
        self.lock().committed = true;
    }

    /// The moment the session is over at the latest (Unix seconds).
    pub fn ends_at(&self) -> Option<u64> {
        self.lock().session.as_ref().map(|s| self.manager.ends_at(s))
    }

    /// Signs in; a session this request already had is ended (marked and revoked upstream:
    /// OWASP's "invalidate on re-authentication"), whoever signs in.
    pub async fn sign_in(&self, email: &str, password: &str) -> Result<Profile, SignInError> {
        let session = self.manager.sign_in(&self.cookies, email, password).await?;
        let profile = session.profile.clone();
        self.replace(Some(session)).await;
        Ok(profile)
    }

    /// Signs in with tokens and a profile obtained elsewhere (an OpenID provider's callback,
    /// whose sign-in `provider` is); a previous session is ended as in `sign_in`.
    pub async fn sign_in_with(&self, tokens: TokenSet, profile: Profile, provider: Option<ProviderSession>) {
        let session = self.manager.sign_in_with(&self.cookies, tokens, profile, provider).await;
        self.replace(Some(session)).await;
    }

    /// Keeps a sign-in begun at an OpenID provider until its callback (see
    /// [`SessionManager::keep_pending`]).
    pub fn keep_pending(&self, state: &str, bytes: &[u8]) -> bool {
        self.manager.keep_pending(&self.cookies, state, bytes)
    }

    /// Takes the sign-in this browser began with `state` (see [`SessionManager::take_pending`]).
    pub fn take_pending(&self, state: &str) -> Option<Vec<u8>> {
        self.manager.take_pending(&self.cookies, state)
    }

    /// Creates the account and signs in with it; a previous session is ended as in `sign_in`.
    pub async fn register(&self, email: &str, name: &str, password: &str) -> Result<Profile, RegisterError> {
        let session = self.manager.register(&self.cookies, email, name, password).await?;
        let profile = session.profile.clone();
        self.replace(Some(session)).await;
        Ok(profile)
    }

    /// Signs out (see [`SessionManager::sign_out`]): `Some(Revocation::Pending)` tells the user
    /// that the upstream could not confirm it yet (it is retried in the background).
    pub async fn sign_out(&self) -> Option<Revocation> {
        let session = self.session();
        let revocation = self.manager.sign_out(&self.cookies, session.as_ref()).await;
        self.set(None);
        revocation
    }

    /// Puts `session` in place of the request's, ending the one it had.
    async fn replace(&self, session: Option<Session>) {
        let previous = self.set(session);
        if let Some(previous) = previous {
            self.manager.end(&previous).await;
        }
    }

    fn set(&self, session: Option<Session>) -> Option<Session> {
        let mut state = self.lock();
        state.ended = None;
        state.refresh_failed = false;
        state.unavailable = false;
        std::mem::replace(&mut state.session, session)
    }

    /// New tokens after the upstream refused `session`'s access token: the newest known, or one
    /// refresh (single flight). The new session goes into this response's cookies while its
    /// headers are not sent yet. A refusal to refresh ends the session (cookies cleared).
    pub async fn renew_after_refusal(&self, session: &Session) -> Result<Session, UpstreamError> {
        match self.manager.renew(session, &session.tokens.access_token).await {
            Ok(renewed) => {
                let superseded = self.manager.superseded(&renewed).await;
                // Whether the headers are still here is decided now, after the wait, under the
                // lock `commit` takes: a cookie written into a jar already sent would be lost.
                // Either way the result stays remembered until a request carries it back.
                let mut state = self.lock();
                if !state.committed && !superseded {
                    self.manager.write(&self.cookies, &renewed, self.manager.now());
                }
                state.session = Some(renewed.clone());
                drop(state);
                Ok(renewed)
            }
            Err(UpstreamError::Refused { code }) => {
                tracing::info!(session = %session.id, %code, "refresh after 401 refused; signing out");
                // A signed-out session's cookie is left alone (it may be a new session's by now).
                if code != crate::refresh::SIGNED_OUT {
                    crate::cookies::clear(self.manager.cookie_policy(), &self.cookies);
                }
                let mut state = self.lock();
                state.session = None;
                state.ended = Some(Ended::Revoked);
                Err(UpstreamError::Refused { code })
            }
            Err(e) => Err(e),
        }
    }

    /// `GET` an upstream resource with the session's access token. A 401 refreshes once and
    /// retries once; a refusal to refresh ends the session (cookies cleared).
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ResourceError> {
        let Some(session) = self.session() else {
            return Err(if self.ended().is_some() {
                ResourceError::SessionEnded
            } else {
                ResourceError::SignedOut
            });
        };
        if self.refresh_failed() {
            return Err(ResourceError::Unavailable("the access token could not be refreshed".into()));
        }
        match crate::upstream::get_json(self.manager.upstream(), path, &session.tokens.access_token).await {
            Err(UpstreamError::Unauthorized) => {}
            other => return other.map_err(resource_error),
        }
        // The token was refused before its time (revoked, or clocks disagree): refresh once.
        let refreshed = match self.renew_after_refusal(&session).await {
            Ok(refreshed) => refreshed,
            Err(UpstreamError::Refused { .. }) => return Err(ResourceError::SessionEnded),
            Err(e) => return Err(resource_error(e)),
        };
        let access = refreshed.tokens.access_token.clone();
        match crate::upstream::get_json(self.manager.upstream(), path, &access).await {
            Err(UpstreamError::Unauthorized) => {
                Err(ResourceError::Unexpected("a freshly refreshed access token was refused".into()))
            }
            other => other.map_err(resource_error),
        }
    }
}

fn resource_error(e: UpstreamError) -> ResourceError {
    match e {
        UpstreamError::Forbidden => ResourceError::Forbidden,
        UpstreamError::Unavailable(detail) => ResourceError::Unavailable(detail),
        UpstreamError::Unauthorized => ResourceError::Unexpected("access token refused".into()),
        UpstreamError::Refused { code } => ResourceError::Unexpected(format!("refused: {code}")),
        UpstreamError::Unexpected(detail) => ResourceError::Unexpected(detail),
    }
}
