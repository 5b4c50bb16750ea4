//! The HTTP-API upstream against an API that lies, breaks or stalls: every answer it cannot use
//! becomes a typed error (an outage keeps the session, a refusal ends it, nonsense is never a
//! session), nothing panics, nothing grows without bound, no redirect is followed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tokenless_bff::http_api::{HttpApi, HttpApiConfig};
use tokenless_bff::session::Token;
use tokenless_bff::upstream::{SignInError, TokenGrants, Upstream, UpstreamError};

/// What the mock answers next, and what it received.
#[derive(Clone, Default)]
struct Script {
    next: Arc<Mutex<Option<fn() -> Response>>>,
    received_cookies: Arc<Mutex<Vec<String>>>,
}

async fn mock(script: Script) -> String {
    let handler = {
        let script = script.clone();
        move |headers: HeaderMap| {
            let script = script.clone();
            async move {
                let cookie =
                    headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                script.received_cookies.lock().unwrap().push(cookie);
                let answer = script.next.lock().unwrap().expect("an answer was scripted");
                answer()
            }
        }
    };
    let app = Router::new()
        .route("/auth/login", post(handler.clone()))
        .route("/auth/refresh-token", post(handler.clone()))
        .route("/auth/logout", axum::routing::delete(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn api(base: &str) -> HttpApi {
    let config: HttpApiConfig = serde_json::from_value(serde_json::json!({
        "sign_in": "POST /auth/login", "refresh": "POST /auth/refresh-token", "sign_out": "DELETE /auth/logout",
        "profile": "GET /me", "access_token": "json:/accessToken", "refresh_token": "cookie:refresh_token",
        "present_refresh": "cookie:refresh_token", "present_access": "bearer",
        "access_expiry": "expires_in:/expiresIn", "refresh_expiry": "cookie",
        "refresh_refused": [401, 403],
    }))
    .unwrap();
    HttpApi::new(base.parse().unwrap(), config, Duration::from_millis(500), Duration::from_millis(500))
        .unwrap()
}

fn with_cookie(body: &'static str, set_cookie: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static(set_cookie));
    r
}

async fn sign_in(api: &HttpApi) -> Result<tokenless_bff::session::TokenSet, SignInError> {
    api.sign_in("u@example.com", "pw", 1_000_000).await
}

#[tokio::test]
async fn answers_without_usable_tokens_are_never_a_session() {
    let script = Script::default();
    let api = api(&mock(script.clone()).await);
    let cases: [fn() -> Response; 6] = [
        || (StatusCode::OK, "not json").into_response(),
        || (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"token":"x"}"#).into_response(),
        || {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"accessToken":""}"#)
                .into_response()
        },
        || {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"accessToken":42}"#)
                .into_response()
        },
        // Larger than any token answer: read up to the limit, then refused.
        || (StatusCode::OK, "x".repeat(200 * 1024)).into_response(),
        // A redirect is not followed (credentials never go elsewhere), and is no session.
        || (StatusCode::FOUND, [(header::LOCATION, "http://evil.test/")]).into_response(),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        *script.next.lock().unwrap() = Some(case);
        match sign_in(&api).await {
            Err(SignInError::Upstream(UpstreamError::Unexpected(_))) => {}
            other => panic!("case {i}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn hostile_expiries_saturate_and_the_last_cookie_of_a_name_wins() {
    let script = Script::default();
    let api = api(&mock(script.clone()).await);
    *script.next.lock().unwrap() = Some(|| {
        let mut r = with_cookie(
            r#"{"accessToken":"a1","expiresIn":18446744073709551615}"#,
            "refresh_token=old; Max-Age=60",
        );
        r.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static("refresh_token=new; Max-Age=99999999999999"),
        );
        r
    });
    let t = sign_in(&api).await.unwrap();
    assert_eq!(t.access_expires_at, u64::MAX);
    assert_eq!(t.refresh_token.as_ref().map(Token::expose), Some("new"));
    assert!(t.refresh_expires_at.unwrap() > 1_000_000);
    *script.next.lock().unwrap() =
        Some(|| with_cookie(r#"{"accessToken":"a1","expiresIn":"soon"}"#, "refresh_token=r"));
    let t = sign_in(&api).await.unwrap();
    assert_eq!(t.access_expires_at, 1_000_060, "unreadable: a short assumed lifetime, so it refreshes soon");
}

#[tokio::test]
async fn refresh_failures_keep_or_end_the_session_as_configured() {
    let script = Script::default();
    let api = api(&mock(script.clone()).await);
    async fn refresh(api: &HttpApi) -> Result<tokenless_bff::session::TokenSet, UpstreamError> {
        api.refresh(&Token::new("r0"), 1_000_000, Duration::from_millis(300)).await
    }
    *script.next.lock().unwrap() = Some(|| (StatusCode::FORBIDDEN, "reuse").into_response());
    assert!(matches!(refresh(&api).await, Err(UpstreamError::Refused { .. })));
    *script.next.lock().unwrap() =
        Some(|| (StatusCode::INTERNAL_SERVER_ERROR, "jwt must be provided").into_response());
    assert!(matches!(refresh(&api).await, Err(UpstreamError::Unavailable(_))), "a 500 keeps the session");
    *script.next.lock().unwrap() = Some(|| (StatusCode::BAD_REQUEST, "?").into_response());
    assert!(
        matches!(refresh(&api).await, Err(UpstreamError::Unexpected(_))),
        "not configured as refused: kept"
    );
    *script.next.lock().unwrap() = Some(|| (StatusCode::OK, "{}").into_response());
    assert!(matches!(refresh(&api).await, Err(UpstreamError::Unexpected(_))));
    // The presented token went as the configured cookie, alone.
    assert_eq!(script.received_cookies.lock().unwrap().last().unwrap(), "refresh_token=r0");
    // No new refresh cookie: the API does not rotate, the presented one stays.
    *script.next.lock().unwrap() = Some(|| {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"accessToken":"a2","expiresIn":10}"#,
        )
            .into_response()
    });
    let t = refresh(&api).await.unwrap();
    assert_eq!(t.refresh_token.as_ref().map(Token::expose), Some("r0"));
}

#[tokio::test]
async fn a_stalled_or_absent_api_is_an_outage() {
    let api = api("http://127.0.0.1:9");
    assert!(matches!(sign_in(&api).await, Err(SignInError::Upstream(UpstreamError::Unavailable(_)))));
    // Accepts the connection, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let stalled = api_at(&format!("http://{addr}"));
    let r = stalled.refresh(&Token::new("r"), 1, Duration::from_millis(200)).await;
    assert!(matches!(&r, Err(e) if e.is_timeout()), "{r:?}");
}

fn api_at(base: &str) -> HttpApi {
    api(base)
}

#[tokio::test]
async fn sign_out_sends_both_tokens_and_an_already_ended_sign_in_is_fine() {
    let script = Script::default();
    let api = api(&mock(script.clone()).await);
    let tokens = tokenless_bff::session::TokenSet {
        access_token: Token::new("a1"),
        access_expires_at: 10,
        refresh_token: Some(Token::new("r1")),
        refresh_expires_at: None,
        access_issued_at: 0,
    };
    *script.next.lock().unwrap() = Some(|| StatusCode::NO_CONTENT.into_response());
    api.revoke(&tokens).await.unwrap();
    assert_eq!(script.received_cookies.lock().unwrap().last().unwrap(), "refresh_token=r1");
    *script.next.lock().unwrap() = Some(|| StatusCode::UNAUTHORIZED.into_response());
    api.revoke(&tokens).await.unwrap();
    *script.next.lock().unwrap() = Some(|| StatusCode::SERVICE_UNAVAILABLE.into_response());
    assert!(matches!(api.revoke(&tokens).await, Err(UpstreamError::Unavailable(_))), "retried later");
}
