//! `GET /metrics` as a route an app mounts: the refresh machinery's counters and timings in the
//! OpenMetrics text format, behind a bearer token when one is given (compared in constant time).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use tokenless_bff::SessionManager;
//! # fn app(manager: Arc<SessionManager>, token: secrecy::SecretString) -> axum::Router {
//! axum::Router::new().route("/metrics", tokenless_bff::metrics::handler(manager, Some(token)))
//! # }
//! ```

use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::manager::SessionManager;

/// The answer's media type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `GET` route with `manager`'s refresh metrics; with `token`, only for
/// `Authorization: Bearer <token>` (anything else: 401; an empty token opens to nobody). Keep the route out of the
/// [`crate::SessionLayer`] ([`crate::SessionLayer::skip`]): a scraper has no session.
pub fn handler<S: Clone + Send + Sync + 'static>(
    manager: Arc<SessionManager>,
    token: Option<SecretString>,
) -> MethodRouter<S> {
    let token = Arc::new(token);
    axum::routing::get(move |headers: HeaderMap| {
        let (manager, token) = (manager.clone(), token.clone());
        async move { answer(&manager, token.as_ref().as_ref(), &headers) }
    })
}

fn answer(manager: &SessionManager, token: Option<&SecretString>, headers: &HeaderMap) -> Response {
    if let Some(token) = token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let expected = token.expose_secret().as_bytes();
        let ok = !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected));
        if !ok {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "").into_response();
        }
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], manager.refresher().metrics_text()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn status(token: Option<&str>, authorization: Option<&str>) -> StatusCode {
        let token = token.map(|t| SecretString::from(t.to_string()));
        let app: axum::Router = axum::Router::new().route("/metrics", handler(crate::tests::quiet_manager(), token));
        let mut request = Request::get("/metrics");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        if response.status() == StatusCode::OK {
            assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            assert!(String::from_utf8_lossy(&body).contains("# EOF"), "OpenMetrics text");
            return StatusCode::OK;
        }
        response.status()
    }

    #[tokio::test]
    async fn the_token_is_required_when_given() {
        assert_eq!(status(None, None).await, StatusCode::OK);
        let token = Some("a-long-enough-token");
        assert_eq!(status(token, Some("Bearer a-long-enough-token")).await, StatusCode::OK);
        for wrong in [None, Some("Bearer "), Some("Bearer a-long-enough-toke"), Some("a-long-enough-token"), Some("Basic x")] {
            assert_eq!(status(token, wrong).await, StatusCode::UNAUTHORIZED, "{wrong:?}");
        }
        // An empty token is a mistake, not an open door.
        for presented in [None, Some("Bearer "), Some("Bearer x")] {
            assert_eq!(status(Some(""), presented).await, StatusCode::UNAUTHORIZED, "{presented:?}");
        }
    }
}
