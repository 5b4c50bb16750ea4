//! The library's passthrough route on its own, with no app around it: the limits it keeps
//! itself (an adopter's router may have none).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use secrecy::SecretString;
use tokenless_bff::passthrough::{self, Allowlist, BODY_MAX};
use tokenless_bff::{
    ClientAuth, ClientConfig, Fields, KeyRing, ProfileMap, SessionConfig, SessionLayer, SessionManager, UpstreamClient,
    UpstreamEndpoints,
};
use tower::ServiceExt;

/// The passthrough under `/api/upstream` of a manager whose upstream is nowhere (port 9): what
/// is answered here is answered before any upstream call.
fn app() -> Router {
    let endpoints = UpstreamEndpoints::at(
        &"http://127.0.0.1:9".parse().unwrap(),
        tokenless_upstream::config::OAUTH2_PATHS.into(),
    )
    .unwrap();
    let client = UpstreamClient::new(ClientConfig {
        endpoints,
        profile: ProfileMap::oidc(),
        registration_fields: Fields::default(),
        client_id: "c".into(),
        client_secret: SecretString::from("s".to_string()),
        auth: ClientAuth::ClientSecretBasic,
        timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(200),
    })
    .unwrap();
    let manager = SessionManager::builder(Arc::new(client))
        .options(SessionConfig { store: "memory".into(), ..SessionConfig::default() }.validate().unwrap())
        .keys(KeyRing::ephemeral())
        .build()
        .unwrap();
    Router::new()
        .route("/api/upstream/{*path}", passthrough::handler("/api/upstream", Allowlist::parse("POST /frogs").unwrap()))
        .layer(SessionLayer::new(Arc::new(manager)))
}

fn post(body: Body) -> Request<Body> {
    Request::post("/api/upstream/frogs")
        .header("x-csrf", "1")
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

/// Issue 32, finding 7: the handler read any body whole (`usize::MAX`) before its allowlist,
/// CSRF or session checks, and axum's `DefaultBodyLimit` does not bound a raw request.
#[tokio::test]
async fn a_body_over_the_limit_is_413_whether_announced_or_streamed() {
    let announced = app().oneshot(post(Body::from(vec![b'a'; BODY_MAX + 1]))).await.unwrap();
    assert_eq!(announced.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // No Content-Length: chunks that never say how much is coming.
    let chunks = (0..=BODY_MAX / 1024).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 1024]));
    let streamed = app().oneshot(post(Body::from_stream(futures_util::stream::iter(chunks)))).await.unwrap();
    assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // At the limit the request goes on to the other checks: no session here.
    let at_limit = app().oneshot(post(Body::from(vec![b'a'; BODY_MAX]))).await.unwrap();
    assert_eq!(at_limit.status(), StatusCode::UNAUTHORIZED);
}
