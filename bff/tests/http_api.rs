//! The HTTP-API upstream against an API that lies, breaks or stalls: every answer it cannot use
//! becomes a typed error (an outage keeps the session, a refusal ends it, nonsense is never a
//! session), nothing panics, nothing grows without bound, no redirect is followed, and no token
//! text can inject into the requests it is sent back in.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use tokenless_bff::http_api::{HttpApi, HttpApiConfig};
use tokenless_bff::{Token, TokenSet};
use tokenless_bff::{SignInError, TokenGrants, Upstream, UpstreamError};

type Answer = fn() -> Response;

/// What the mock answers next (in order; the last one again when the list runs out), and what
/// it received: (path, Cookie header, Authorization header).
#[derive(Clone, Default)]
struct Script {
    next: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<(String, String, Option<String>)>>>,
}

impl Script {
    fn answer(&self, answers: &[Answer]) {
        *self.next.lock().unwrap() = answers.iter().copied().collect();
        self.received.lock().unwrap().clear();
    }

    fn received(&self) -> Vec<(String, String, Option<String>)> {
        self.received.lock().unwrap().clone()
    }
}

async fn handle(script: Script, uri: Uri, headers: HeaderMap) -> Response {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_string);
    script.received.lock().unwrap().push((
        uri.path().to_string(),
        text(header::COOKIE).unwrap_or_default(),
        text(header::AUTHORIZATION),
    ));
    let answer = {
        let mut queue = script.next.lock().unwrap();
        if queue.len() > 1 { queue.pop_front() } else { queue.front().copied() }
    };
    answer.expect("an answer was scripted")()
}

async fn mock(script: Script) -> String {
    let s = script.clone();
    let handler = move |uri: Uri, headers: HeaderMap| handle(s.clone(), uri, headers);
    let app = Router::new()
        .route("/auth/login", post(handler.clone()))
        .route("/auth/refresh-token", post(handler.clone()))
        .route("/auth/logout", delete(handler));
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
    }))
    .unwrap();
    config.validate().unwrap();
    HttpApi::new(base.parse().unwrap(), config, Duration::from_millis(500), Duration::from_millis(500)).unwrap()
}

fn json(body: &'static str) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn with_cookie(body: &'static str, set_cookie: &'static str) -> Response {
    let mut r = json(body);
    r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static(set_cookie));
    r
}

async fn sign_in(api: &HttpApi) -> Result<TokenSet, SignInError> {
    api.sign_in("u@example.com", "pw", 1_000_000).await
}

async fn refresh(api: &HttpApi) -> Result<TokenSet, UpstreamError> {
    api.refresh(&Token::new("r0"), 1_000_000, Duration::from_millis(300)).await
}

fn tokens() -> TokenSet {
    TokenSet {
        access_token: Token::new("a1"),
        access_expires_at: 10,
        refresh_token: Some(Token::new("r1")),
        refresh_expires_at: None,
        access_issued_at: 0,
    }
}

#[tokio::test]
async fn answers_without_usable_tokens_are_never_a_session() {
    let script = Script::default();
    let api = api(&mock(script.clone()).await);
    let cases: [Answer; 8] = [
        || (StatusCode::OK, "not json").into_response(),
        || json(r#"{"token":"x"}"#),
        || json(r#"{"accessToken":""}"#),
        || json(r#"{"accessToken":42}"#),
        // Token text that would inject into a Cookie header, or break one.
        || json(r#"{"accessToken":"a; admin=1"}"#),
        || json(r#"{"accessToken":"a\r\nX-Evil: 1"}"#),
        // Larger than any token answer: read up to the limit, then not used.
        || (StatusCode::OK, "x".repeat(200 * 1024)).into_response(),
        // A redirect is not followed (credentials never go elsewhere), and is no session.
        || (StatusCode::FOUND, [(header::LOCATION, "http://evil.test/")]).into_response(),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        script.answer(&[case]);
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
    script.answer(&[|| {
        let mut r =
            with_cookie(r#"{"accessToken":"a1","expiresIn":18446744073709551615}"#, "refresh_token=old; Max-Age=60");
        r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static("refresh_token=new; Max-Age=99999999999999"));
        r
    }]);
    let t = sign_in(&api).await.unwrap();
    assert_eq!(t.access_expires_at, u64::MAX);
    assert_eq!(t.refresh_token.as_ref().map(Token::expose), Some("new"));
    assert!(t.refresh_expires_at.unwrap() > 1_000_000);
    script.answer(&[|| with_cookie(r#"{"accessToken":"a1","expiresIn":"soon"}"#, "refresh_token=r")]);
    let t = sign_in(&api).await.unwrap();
    assert_eq!(t.access_expires_at, 1_000_060, "unreadable: a short assumed lifetime, so it refreshes soon");
    // A refresh cookie that could inject is no refresh token (the session then ends with its
    // access token rather than carry it).
    script.answer(&[|| with_cookie(r#"{"accessToken":"a1","expiresIn":10}"#, "refresh_token=\"r\\\\1\"")]);
    assert_eq!(sign_in(&api).await.unwrap().refresh_token, None);
}

#[tokio::test]
async fn refresh_failures_keep_or_end_the_session_as_configured() {
    let script = Script::default();
    let api = api(&mock(script.clone()).await);
    script.answer(&[|| (StatusCode::FORBIDDEN, "reuse").into_response()]);
    assert!(matches!(refresh(&api).await, Err(UpstreamError::Refused { .. })));
    script.answer(&[|| (StatusCode::INTERNAL_SERVER_ERROR, "jwt must be provided").into_response()]);
    assert!(matches!(refresh(&api).await, Err(UpstreamError::Unavailable(_))), "a 500 keeps the session");
    script.answer(&[|| (StatusCode::BAD_REQUEST, "?").into_response()]);
    assert!(matches!(refresh(&api).await, Err(UpstreamError::Unexpected(_))), "not configured as refused: kept");
    // A 2xx without usable tokens: the upstream may have rotated already; presenting the token
    // again would be reuse, so the session ends instead of being kept.
    for unusable in [(|| json("{}")) as Answer, || (StatusCode::OK, "y".repeat(100 * 1024)).into_response()] {
        script.answer(&[unusable]);
        assert!(matches!(refresh(&api).await, Err(UpstreamError::Refused { .. })));
    }
    // The presented token went as the configured cookie, alone.
    assert_eq!(script.received().last().unwrap().1, "refresh_token=r0");
    // No new refresh cookie: the API does not rotate, the presented one stays.
    script.answer(&[|| json(r#"{"accessToken":"a2","expiresIn":10}"#)]);
    let t = refresh(&api).await.unwrap();
    assert_eq!(t.refresh_token.as_ref().map(Token::expose), Some("r0"));
}

#[tokio::test]
async fn a_stalled_or_absent_api_is_an_outage() {
    let absent = api("http://127.0.0.1:9");
    assert!(matches!(sign_in(&absent).await, Err(SignInError::Upstream(UpstreamError::Unavailable(_)))));
    // Accepts the connection, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let stalled = api(&format!("http://{addr}"));
    let r = stalled.refresh(&Token::new("r"), 1, Duration::from_millis(200)).await;
    assert!(matches!(&r, Err(e) if e.is_timeout()), "{r:?}");
}

#[tokio::test]
async fn sign_out_sends_both_tokens_and_renews_an_expired_access_token_for_it() {
    let script = Script::default();
    let api = api(&mock(script.clone()).await);
    script.answer(&[|| StatusCode::NO_CONTENT.into_response()]);
    api.revoke(&tokens()).await.unwrap();
    let seen = script.received();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].1.as_str(), seen[0].2.as_deref()), ("refresh_token=r1", Some("Bearer a1")));

    // A logout guarded by the (expired) access token: refresh, then log out with the new one.
    script.answer(&[
        || StatusCode::UNAUTHORIZED.into_response(),
        || with_cookie(r#"{"accessToken":"a2","expiresIn":10}"#, "refresh_token=r2"),
        || StatusCode::NO_CONTENT.into_response(),
    ]);
    api.revoke(&tokens()).await.unwrap();
    let paths: Vec<String> = script.received().into_iter().map(|(p, _, _)| p).collect();
    assert_eq!(paths, ["/auth/logout", "/auth/refresh-token", "/auth/logout"]);
    assert_eq!(script.received()[2].2.as_deref(), Some("Bearer a2"));

    // The refresh is refused: the sign-in is over upstream already, which is what was wanted.
    script.answer(&[|| StatusCode::UNAUTHORIZED.into_response()]);
    api.revoke(&tokens()).await.unwrap();
    // Refused for another reason: not confirmed (the user is told), not retried.
    script.answer(&[|| (StatusCode::UNPROCESSABLE_ENTITY, "no").into_response()]);
    assert!(matches!(api.revoke(&tokens()).await, Err(UpstreamError::Refused { .. })));
    script.answer(&[|| StatusCode::SERVICE_UNAVAILABLE.into_response()]);
    assert!(matches!(api.revoke(&tokens()).await, Err(UpstreamError::Unavailable(_))), "retried later");
}
