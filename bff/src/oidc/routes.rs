//! The routes of signing in and out through an OpenID provider, for an app to mount under the
//! [`crate::SessionLayer`]: `GET {login}?next=/path` sends the browser to the provider with the
//! pending sign-in sealed in a short-lived cookie of its own (one per sign-in: parallel tabs do
//! not disturb each other); `GET {callback}` checks the provider's answer against that cookie
//! and starts a new session, or answers why not — a provider's refusal lands on the app's
//! sign-in page with a reason, anything forged, replayed or stale gets a plain error page and
//! never a session. `POST {logout}` signs out here and at the provider (RP-initiated logout);
//! `POST {backchannel}` takes the provider's logout token and ends the sessions it names.

use std::sync::Arc;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use url::Url;

use super::flow::{Callback, FlowError, OidcProvider, Pending};
use super::logout::{LogoutClaims, LogoutTokenError, LOGOUT_JTI_MEMORY_SECS, LOGOUT_TOKEN_MAX};
use crate::layer::SiteOrigin;
use crate::manager::SessionManager;
use crate::memory::NotKept;
use crate::middleware::RequestSession;
use crate::redirect::safe_next;

/// Where the routes are and where a refused sign-in lands.
#[derive(Debug, Clone)]
pub struct OidcPaths {
    /// Begins a sign-in (`/auth/login`).
    pub login: String,
    /// The redirect URI registered at the provider, as a path of this site (`/auth/callback`).
    pub callback: String,
    /// The app's sign-in page, which shows `reason` (`/login`).
    pub sign_in_page: String,
    /// Signs out here and at the provider (`/auth/logout`, a POST).
    pub logout: String,
    /// Where the provider sends the browser back after signing out (`/`; with the site's
    /// origin, registered at the provider as a post-logout redirect URI).
    pub signed_out: String,
    /// The back-channel logout URI registered at the provider (`/auth/backchannel-logout`).
    pub backchannel: String,
}

impl Default for OidcPaths {
    fn default() -> Self {
        OidcPaths {
            login: "/auth/login".into(),
            callback: "/auth/callback".into(),
            sign_in_page: "/login".into(),
            logout: "/auth/logout".into(),
            signed_out: "/".into(),
            backchannel: "/auth/backchannel-logout".into(),
        }
    }
}

/// The `reason` a refused sign-in brings to the sign-in page.
pub fn reason(error: &str) -> &'static str {
    match error {
        "access_denied" => "provider_denied",
        "login_required" | "interaction_required" | "consent_required" | "account_selection_required" => {
            "provider_login_required"
        }
        _ => "provider_error",
    }
}

/// The sign-in, callback, sign-out and back-channel logout routes of `provider`.
pub fn routes<S: Clone + Send + Sync + 'static>(provider: Arc<OidcProvider>, paths: OidcPaths) -> Router<S> {
    let logout = {
        let (provider, signed_out) = (provider.clone(), paths.signed_out.clone());
        move |session: RequestSession, origin: Option<Extension<SiteOrigin>>| {
            let (provider, signed_out) = (provider.clone(), signed_out.clone());
            async move {
                let back_to = origin.and_then(|Extension(SiteOrigin(o))| Url::parse(&o).ok()?.join(&signed_out).ok());
                let to = match back_to {
                    Some(back_to) => sign_out(&provider, &session, &back_to).await,
                    None => {
                        session.sign_out().await;
                        None
                    }
                };
                Redirect::to(to.as_ref().map_or(signed_out.as_str(), Url::as_str)).into_response()
            }
        }
    };
    let backchannel = {
        let provider = provider.clone();
        move |session: RequestSession, headers: HeaderMap, body: Bytes| {
            let provider = provider.clone();
            async move { backchannel(&provider, &session, &headers, &body).await }
        }
    };
    let begin = {
        let provider = provider.clone();
        move |session: RequestSession, RawQuery(query): RawQuery| {
            let provider = provider.clone();
            async move { begin(&provider, &session, query.as_deref().unwrap_or("")) }
        }
    };
    let sign_in_page = paths.sign_in_page.clone();
    let finish = move |session: RequestSession, RawQuery(query): RawQuery| {
        let (provider, sign_in_page) = (provider.clone(), sign_in_page.clone());
        async move { finish(&provider, &session, query.as_deref().unwrap_or(""), &sign_in_page).await }
    };
    Router::new()
        .route(&paths.login, get(begin))
        .route(&paths.callback, get(finish))
        .route(&paths.logout, post(logout))
        .route(&paths.backchannel, post(backchannel).layer(DefaultBodyLimit::max(LOGOUT_TOKEN_MAX + 1024)))
}

/// Signs the request's session out here ([`RequestSession::sign_out`]: marked ended, its
/// refresh token revoked, its cookie deleted) and says where the browser goes to end the
/// provider's session too: its end-session page, which sends it back to `back_to` (registered
/// at the provider). `None` when the session did not begin at `provider`, or it has no such page.
pub async fn sign_out(provider: &OidcProvider, session: &RequestSession, back_to: &Url) -> Option<Url> {
    let began_at = session.session().and_then(|s| s.provider);
    let revocation = session.sign_out().await;
    tracing::info!(?revocation, "signed out");
    provider.end_session_url(&began_at?, back_to)
}

/// OpenID Connect Back-Channel Logout 1.0 §2.5–2.8: a form-encoded `logout_token`, checked
/// (its `jti` used once), then the sessions it names are ended; 200, or 400 with the reason.
async fn backchannel(provider: &OidcProvider, session: &RequestSession, headers: &HeaderMap, body: &[u8]) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")));
    let mut tokens = url::form_urlencoded::parse(body).filter(|(k, _)| k == "logout_token").map(|(_, v)| v);
    let token = match (form, tokens.next(), tokens.next()) {
        (true, Some(token), None) => token,
        _ => return logout_refused("send one logout_token, form-encoded"),
    };
    let manager = session.manager();
    let claims = match provider.check_logout_token(&token, manager.now()).await {
        Ok(claims) => claims,
        Err(e) => {
            tracing::warn!(error = %e, "refused a back-channel logout token");
            return logout_refused(&e.to_string());
        }
    };
    let issuer = provider.metadata().issuer().as_str().to_string();
    // In a task of its own: a provider that stops waiting (node-oidc-provider gives up after
    // 2.5 s) while a store does not answer drops this request, and the logout must not go
    // with it — its `jti` marked used, the sessions it names never ended.
    let (done, answer) = tokio::sync::oneshot::channel();
    let ending = manager.clone();
    manager.refresher().in_background(async move {
        let _ = done.send(end_named(&ending, &issuer, &claims).await);
    });
    match tokio::time::timeout(BACKCHANNEL_ANSWER_WITHIN, answer).await {
        Ok(Ok(Ok(()))) => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response(),
        Ok(Ok(Err(LogoutNotDone::Replayed))) => {
            tracing::warn!("refused a back-channel logout token used already");
            logout_refused(&LogoutTokenError::Replayed.to_string())
        }
        // §2.8: a logout that failed is a 400, never a 200 the provider would not send again.
        Ok(Ok(Err(LogoutNotDone::NotKept(e)))) => logout_failed("temporarily_unavailable", &e.to_string()),
        // Still at work (it goes on): not done yet is not a 200 either.
        _ => {
            tracing::warn!("a back-channel logout is still being stored after {BACKCHANNEL_ANSWER_WITHIN:?}; answered 400, it goes on");
            logout_failed("temporarily_unavailable", "the logout is still being stored; it goes on")
        }
    }
}

/// How long the provider waits for a back-channel logout's answer before it is 400 (its work
/// goes on): under node-oidc-provider's 2.5 s, so that its log says why.
const BACKCHANNEL_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the sessions a checked logout token names were not ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutNotDone {
    /// Its `jti` was used already.
    #[error("it was used already")]
    Replayed,
    /// The end could not be stored for every instance (it holds on this one); its `jti` is
    /// forgotten, so the provider may send it again.
    #[error(transparent)]
    NotKept(#[from] NotKept),
}

/// Ends the sessions checked `claims` of `issuer` name, their `jti` used once: recorded first
/// (a replay ends nothing, not even sessions begun since), forgotten again when the end could
/// not be stored, so that the token stays good for the provider's next try.
pub async fn end_named(manager: &SessionManager, issuer: &str, claims: &LogoutClaims) -> Result<(), LogoutNotDone> {
    let memory = manager.refresher().memory();
    if !memory.first_use(&claims.jti, Duration::from_secs(LOGOUT_JTI_MEMORY_SECS)).await {
        return Err(LogoutNotDone::Replayed);
    }
    if let Err(e) = manager.end_at_provider(issuer, claims.session_id.as_deref(), claims.subject.as_deref()).await {
        memory.forget_use(&claims.jti).await;
        return Err(e.into());
    }
    Ok(())
}

fn logout_refused(why: &str) -> Response {
    logout_failed("invalid_request", why)
}

fn logout_failed(error: &str, why: &str) -> Response {
    let body = serde_json::json!({ "error": error, "error_description": why });
    (StatusCode::BAD_REQUEST, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

fn begin(provider: &OidcProvider, session: &RequestSession, query: &str) -> Response {
    let next = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "next")
        .and_then(|(_, v)| safe_next(v.trim()))
        .unwrap_or_else(|| "/".to_string());
    let (url, pending) = provider.begin(&next, session.manager().now());
    let kept = serde_json::to_vec(&pending).map(|bytes| session.keep_pending(&pending.state, &bytes));
    if !matches!(kept, Ok(true)) {
        tracing::error!("a pending sign-in could not be kept in its cookie");
        return page(StatusCode::INTERNAL_SERVER_ERROR, "The sign-in could not begin. Try again.");
    }
    Redirect::to(url.as_str()).into_response()
}

async fn finish(provider: &OidcProvider, session: &RequestSession, query: &str, sign_in_page: &str) -> Response {
    let Ok(callback) = serde_urlencoded::from_str::<Callback>(query) else {
        return stale();
    };
    // Only the browser that began this sign-in holds its cookie.
    let pending = callback
        .state
        .as_deref()
        .and_then(|state| session.take_pending(state))
        .and_then(|bytes| serde_json::from_slice::<Pending>(&bytes).ok());
    let Some(pending) = pending else {
        tracing::warn!("a sign-in callback without its pending sign-in in this browser");
        return stale();
    };
    match provider.finish(&callback, &pending, session.manager().now()).await {
        Ok(signed_in) => {
            tracing::info!(issuer = %signed_in.provider.issuer, subject = %signed_in.provider.subject, "signed in at the OpenID provider");
            session.sign_in_with(signed_in.tokens, signed_in.profile, Some(signed_in.provider)).await;
            Redirect::to(&safe_next(&signed_in.next).unwrap_or_else(|| "/".to_string())).into_response()
        }
        Err(FlowError::Provider { error, description }) => {
            tracing::info!(%error, ?description, "the OpenID provider did not sign the person in");
            let next: String = url::form_urlencoded::byte_serialize(pending.next.as_bytes()).collect();
            Redirect::to(&format!("{sign_in_page}?next={next}&reason={}", reason(&error))).into_response()
        }
        Err(e @ (FlowError::StateMismatch | FlowError::Expired | FlowError::CodeRefused(_))) => {
            tracing::warn!(error = %e, "refused a sign-in callback");
            stale()
        }
        Err(e @ FlowError::Unreachable(_)) => {
            tracing::warn!(error = %e, "the OpenID provider could not be reached for a callback");
            page(StatusCode::SERVICE_UNAVAILABLE, "The identity provider could not be reached. Try again in a moment.")
        }
        Err(e @ FlowError::Invalid(_)) => {
            tracing::error!(error = %e, "the OpenID provider's answer was refused");
            page(StatusCode::BAD_GATEWAY, "The identity provider's answer could not be trusted, so nobody was signed in.")
        }
    }
}

/// A callback this browser did not begin, or one already used: never a session.
fn stale() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "This sign-in link is not valid in this browser: it was used already, took too long, or was begun \
         elsewhere. Start again from the sign-in page.",
    )
}

fn page(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], text)
        .into_response()
}
