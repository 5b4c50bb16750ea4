//! `GET /metrics`: the refresh counters and timings in the Prometheus text format, behind a
//! bearer token when one is configured.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::server::AppState;

pub const PATH: &str = "/metrics";

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let settings = &state.settings.metrics;
    if !settings.enabled {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(token) = &settings.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = presented.as_bytes().ct_eq(token.expose_secret().as_bytes()).into();
        if !ok {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "").into_response();
        }
    }
    let body = state.sessions.refresher().metrics_text();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}
