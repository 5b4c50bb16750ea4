//! The two routes of a sign-in through an OpenID provider, for an app to mount under the
//! [`crate::SessionLayer`]: `GET {login}?next=/path` sends the browser to the provider with the
//! pending sign-in sealed in a short-lived cookie of its own (one per sign-in: parallel tabs do
//! not disturb each other); `GET {callback}` checks the provider's answer against that cookie
//! and starts a new session, or answers why not — a provider's refusal lands on the app's
//! sign-in page with a reason, anything forged, replayed or stale gets a plain error page and
//! never a session.

use std::sync::Arc;

use axum::extract::RawQuery;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::flow::{Callback, FlowError, OidcProvider, Pending};
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
}

impl Default for OidcPaths {
    fn default() -> Self {
        OidcPaths { login: "/auth/login".into(), callback: "/auth/callback".into(), sign_in_page: "/login".into() }
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

/// The sign-in and callback routes of `provider`.
pub fn routes<S: Clone + Send + Sync + 'static>(provider: Arc<OidcProvider>, paths: OidcPaths) -> Router<S> {
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
    Router::new().route(&paths.login, get(begin)).route(&paths.callback, get(finish))
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
            tracing::info!(issuer = %signed_in.identity.issuer, subject = %signed_in.identity.subject, "signed in at the OpenID provider");
            session.sign_in_with(signed_in.tokens, signed_in.profile).await;
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
