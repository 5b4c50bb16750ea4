//! Error answers in the RFC 6749 §5.2 / RFC 6750 §3 shapes: `{error, error_description}` with the
//! right status and `WWW-Authenticate` header. Never a panic, never a 500 for bad input.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

pub const REALM: &str = "tokenless-demo";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400 `invalid_request`: malformed, missing or repeated parameter, wrong content type.
    InvalidRequest(String),
    /// 401 `invalid_client`: client authentication failed.
    InvalidClient,
    /// 400 `invalid_grant`.
    InvalidGrant(String),
    /// 400 `unsupported_grant_type`.
    UnsupportedGrantType(String),
    /// 401 `invalid_token` with a Bearer challenge.
    InvalidToken(String),
    /// 403 `insufficient_scope`.
    InsufficientScope(String),
    /// 415 `invalid_request`: the body is not of a type this endpoint reads.
    UnsupportedMediaType(String),
    /// 422 `invalid_request` with one message per field.
    InvalidFields(Vec<FieldProblem>),
    /// 409 `email_taken`.
    EmailTaken,
    /// 404 `not_found`.
    NotFound,
    /// 500 `server_error`: our fault, detail logged not sent.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldProblem {
    pub field: &'static str,
    pub message: String,
}

impl ApiError {
    /// The store failed: logged here, a plain 500 on the wire.
    pub fn store(e: crate::store::StoreError) -> ApiError {
        tracing::error!(error = %e, "the demo upstream's store failed");
        ApiError::Internal
    }

    /// A refused grant as `invalid_grant`; the store's own failure as a 500 (never a refusal:
    /// a client would sign its user out over our fault).
    pub fn grant(e: crate::store::GrantError) -> ApiError {
        match e {
            crate::store::GrantError::Storage => ApiError::Internal,
            e => ApiError::InvalidGrant(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::GrantError;

    /// A store failure is the upstream's fault: a 500, never a refusal that makes a client sign
    /// its user out.
    #[test]
    fn store_failures_are_500_and_refusals_400() {
        assert_eq!(ApiError::grant(GrantError::Storage).into_response().status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(ApiError::grant(GrantError::Reused).into_response().status(), StatusCode::BAD_REQUEST);
        let e = crate::store::StoreError::Sql(rusqlite::Error::InvalidQuery);
        assert_eq!(ApiError::store(e).into_response().status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a [FieldProblem]>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, description, fields) = match &self {
            ApiError::InvalidRequest(d) => {
                (StatusCode::BAD_REQUEST, "invalid_request", Some(d.as_str()), None)
            }
            ApiError::InvalidClient => {
                (StatusCode::UNAUTHORIZED, "invalid_client", Some("client authentication failed"), None)
            }
            ApiError::InvalidGrant(d) => (StatusCode::BAD_REQUEST, "invalid_grant", Some(d.as_str()), None),
            ApiError::UnsupportedGrantType(d) => {
                (StatusCode::BAD_REQUEST, "unsupported_grant_type", Some(d.as_str()), None)
            }
            ApiError::InvalidToken(d) => (StatusCode::UNAUTHORIZED, "invalid_token", Some(d.as_str()), None),
            ApiError::InsufficientScope(d) => {
                (StatusCode::FORBIDDEN, "insufficient_scope", Some(d.as_str()), None)
            }
            ApiError::UnsupportedMediaType(d) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request", Some(d.as_str()), None)
            }
            ApiError::InvalidFields(f) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                Some("some fields are not valid"),
                Some(f.as_slice()),
            ),
            ApiError::EmailTaken => {
                (StatusCode::CONFLICT, "email_taken", Some("an account with this email already exists"), None)
            }
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", None, None),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, None),
        };
        let mut response =
            (status, Json(Body { error: code, error_description: description, fields })).into_response();
        let challenge = match &self {
            ApiError::InvalidClient => Some(format!("Basic realm=\"{REALM}\"")),
            ApiError::InvalidToken(d) => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                d.replace(['"', '\\'], "")
            )),
            ApiError::InsufficientScope(_) => {
                Some(format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\""))
            }
            _ => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
