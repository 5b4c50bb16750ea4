//! `/api/upstream/<path>`: the upstream passthrough for browser code (rules and hygiene in
//! `tokenless_bff::passthrough`), wired to the request's session and the configured allowlist.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokenless_bff::RequestSession;
use tokenless_bff::passthrough::{forward, PassthroughError};

use crate::server::AppState;

pub const PREFIX: &str = "/api/upstream";

pub async fn passthrough(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(session) = parts.extensions.get::<RequestSession>().cloned() else {
        tracing::error!("no session on a passthrough request: is the session middleware in front of it?");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    // The body is bounded by the router's body limit; over it, 413.
    let body: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    // The path exactly as sent (still percent-encoded), after the prefix.
    let path = parts.uri.path().strip_prefix(PREFIX).unwrap_or("");
    let allow = &state.settings.passthrough.allow;
    match forward(&session, allow, parts.method.clone(), path, parts.uri.query(), &parts.headers, body).await
    {
        Ok(response) => response,
        Err(e) => {
            if !matches!(e, PassthroughError::NotFound) {
                tracing::debug!(path, error = %e, "passthrough refused");
            }
            e.into_response()
        }
    }
}
