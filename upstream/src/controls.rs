//! Test controls, served only when enabled and only on their own listener, under `/_test`:
//! counters, fault injection, revoke-everything-for-a-user, the tokens a user was given and the
//! requests the API received. The app never calls these.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::error::ApiError;
use crate::faults::FaultSpec;
use crate::state::Upstream;

pub fn router(upstream: Upstream) -> Router {
    Router::new()
        .route("/_test/counters", get(counters))
        .route("/_test/reset", post(reset))
        .route("/_test/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/_test/users/{email}/revoke", post(revoke_user))
        .route("/_test/users/{email}/tokens", get(tokens))
        .route("/_test/requests", get(requests))
        .fallback(|| async { ApiError::NotFound })
        .with_state(upstream)
}

async fn counters(State(u): State<Upstream>) -> Response {
    Json(u.counters()).into_response()
}

async fn reset(State(u): State<Upstream>) -> StatusCode {
    u.reset();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(u): State<Upstream>) -> Response {
    Json(u.faults().list()).into_response()
}

async fn add_fault(State(u): State<Upstream>, body: Bytes) -> Result<StatusCode, ApiError> {
    let spec: FaultSpec = serde_json::from_slice(&body).map_err(|e| {
        ApiError::InvalidRequest(format!(
            "a fault is {{\"kind\": \"down|unavailable|server_error|latency\", \"endpoint\"?, \"count\"?, \"seconds\"?, \"latency_ms\"?}}: {e}"
        ))
    })?;
    u.add_fault(spec).map_err(ApiError::InvalidRequest)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(u): State<Upstream>) -> StatusCode {
    u.clear_faults();
    StatusCode::NO_CONTENT
}

async fn revoke_user(State(u): State<Upstream>, Path(email): Path<String>) -> Result<Response, ApiError> {
    let revoked = u.revoke_user(&email).map_err(ApiError::store)?.ok_or(ApiError::NotFound)?;
    Ok(Json(json!({ "revoked_sessions": revoked })).into_response())
}

async fn tokens(State(u): State<Upstream>, Path(email): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(u.issued_to(&email).map_err(ApiError::store)?.ok_or(ApiError::NotFound)?).into_response())
}

async fn requests(State(u): State<Upstream>) -> Response {
    Json(u.requests()).into_response()
}
