//! The upstream client against the demo upstream on loopback: grants, rotation, revocation,
//! userinfo, registration, and the refusal/outage distinction; and the refresher on top of it,
//! for the orderings of requests around one flight that unit tests cannot reach.

use tokenless_bff::http_api::{Fields, ProfileMap};
use tokenless_upstream::config::OAUTH2_PATHS;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokenless_bff::{
    ClientAuth, ClientConfig, RegisterError, UpstreamClient, UpstreamEndpoints, UpstreamError,
};
use tokenless_bff::{Known, RefreshConfig, Refresher};
use tokenless_bff::{get_json, Upstream};
use tokenless_bff::{Profile, Session, Token};
use tokenless_upstream::config::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use tokenless_upstream::{spawn, FaultKind, FaultSpec, RunningUpstream, UpstreamConfig};
use url::Url;

const NOW: u64 = 1_000;

async fn setup(auth: ClientAuth, secret: &str) -> (RunningUpstream, UpstreamClient) {
    let upstream = spawn(UpstreamConfig::for_tests()).await.unwrap();
    let base = Url::parse(&upstream.base_url()).unwrap();
    let client = UpstreamClient::new(ClientConfig {
        endpoints: UpstreamEndpoints::at(&base, OAUTH2_PATHS.into()).unwrap(),
        profile: ProfileMap { roles: "/roles".into(), ..ProfileMap::oidc() },
        registration_fields: Fields::default(),
        client_id: DEFAULT_CLIENT_ID.into(),
        client_secret: SecretString::from(secret.to_string()),
        auth,
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
    })
    .unwrap();
    (upstream, client)
}

#[tokio::test]
async fn sign_in_use_refresh_revoke() {
    for auth in [ClientAuth::ClientSecretBasic, ClientAuth::ClientSecretPost] {
        let (u, c) = setup(auth, DEFAULT_CLIENT_SECRET).await;
        let tokens = c.password_grant("user@example.com", "frogs-are-green", NOW).await.unwrap();
        assert_eq!(tokens.access_expires_at, NOW + 60);
        assert!(tokens.refresh_expires_at.unwrap() > NOW + 86_400);
        let profile = c.userinfo(&tokens.access_token).await.unwrap();
        assert_eq!(profile.email, "user@example.com");
        let frogs: Vec<serde_json::Value> = get_json(&c, "/frogs", &tokens.access_token).await.unwrap();
        assert!(!frogs.is_empty());

        let rotated = c.refresh_grant(tokens.refresh_token.as_ref().unwrap(), NOW, None).await.unwrap();
        assert_ne!(rotated.refresh_token, tokens.refresh_token);
        c.revoke(rotated.refresh_token.as_ref().unwrap(), "refresh_token").await.unwrap();
        assert!(matches!(c.userinfo(&rotated.access_token).await, Err(UpstreamError::Unauthorized)));
        assert_eq!(u.upstream.counters().revocations, 1);
    }
}

#[tokio::test]
async fn refusals_are_refusals() {
    let (_u, c) = setup(ClientAuth::ClientSecretBasic, DEFAULT_CLIENT_SECRET).await;
    match c.password_grant("user@example.com", "wrong-password", NOW).await {
        Err(UpstreamError::Refused { code }) => assert_eq!(code, "invalid_grant"),
        other => panic!("{other:?}"),
    }
    match c.refresh_grant(&Token::new("made-up"), NOW, None).await {
        Err(UpstreamError::Refused { code }) => assert_eq!(code, "invalid_grant"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.userinfo(&Token::new("nope")).await, Err(UpstreamError::Unauthorized)));

    let (_u, bad) = setup(ClientAuth::ClientSecretBasic, "wrong secret").await;
    match bad.password_grant("user@example.com", "frogs-are-green", NOW).await {
        Err(UpstreamError::Refused { code }) => assert_eq!(code, "invalid_client"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn outages_are_outages_not_refusals() {
    let (u, c) = setup(ClientAuth::ClientSecretBasic, DEFAULT_CLIENT_SECRET).await;
    let tokens = c.password_grant("user@example.com", "frogs-are-green", NOW).await.unwrap();
    let refresh = tokens.refresh_token.clone().unwrap();
    let fault = |kind| FaultSpec { kind, endpoint: None, count: None, seconds: None, latency_ms: None };

    u.upstream.add_fault(fault(FaultKind::Unavailable)).unwrap();
    assert!(matches!(c.refresh_grant(&refresh, NOW, None).await, Err(UpstreamError::Unavailable(_))));
    assert!(matches!(c.userinfo(&tokens.access_token).await, Err(UpstreamError::Unavailable(_))));
    u.upstream.clear_faults();

    u.upstream.add_fault(fault(FaultKind::Down)).unwrap();
    assert!(matches!(c.refresh_grant(&refresh, NOW, None).await, Err(UpstreamError::Unavailable(_))));
    u.upstream.clear_faults();

    u.upstream.add_fault(FaultSpec { latency_ms: Some(2_000), ..fault(FaultKind::Latency) }).unwrap();
    match c.refresh_grant(&refresh, NOW, None).await {
        Err(UpstreamError::Unavailable(why)) => assert!(why.contains("timed out"), "{why}"),
        other => panic!("{other:?}"),
    }
    u.upstream.clear_faults();

    // None of those consumed the refresh token.
    assert!(c.refresh_grant(&refresh, NOW, None).await.is_ok());
    assert_eq!(u.upstream.counters().reuse_events, 0);

    // Nothing listening at all: a port that was just free.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let base = Url::parse(&format!("http://{closed}")).unwrap();
    let nowhere = UpstreamClient::new(ClientConfig {
        endpoints: UpstreamEndpoints::at(&base, OAUTH2_PATHS.into()).unwrap(),
        profile: ProfileMap { roles: "/roles".into(), ..ProfileMap::oidc() },
        registration_fields: Fields::default(),
        ..c.config().clone()
    })
    .unwrap();
    assert!(matches!(nowhere.password_grant("a@b.co", "x", NOW).await, Err(UpstreamError::Unavailable(_))));
}

#[tokio::test]
async fn registration_outcomes() {
    let (_u, c) = setup(ClientAuth::ClientSecretBasic, DEFAULT_CLIENT_SECRET).await;
    c.register("new@example.com", "Newt", "long enough").await.unwrap();
    let tokens = c.password_grant("new@example.com", "long enough", NOW).await.unwrap();
    let p = c.userinfo(&tokens.access_token).await.unwrap();
    assert_eq!((p.name.as_str(), p.email.as_str(), p.roles.as_slice()), ("Newt", "new@example.com", ["user".to_string()].as_slice()));
    assert!(!p.id.is_empty() && p.id != p.email, "the id is the userinfo's sub: {p:?}");
    // The profile is what the configured map makes of the userinfo answer.
    let mapped = UpstreamClient::new(ClientConfig {
        profile: ProfileMap { name: "{name} <{email}>".into(), roles: String::new(), ..ProfileMap::oidc() },
        ..c.config().clone()
    })
    .unwrap();
    let p = mapped.userinfo(&tokens.access_token).await.unwrap();
    assert_eq!((p.name.as_str(), p.roles.len()), ("Newt <new@example.com>", 0));
    // Without a registration endpoint there is no registration, and nothing is sent.
    let mut endpoints = c.config().endpoints.clone();
    endpoints.registration_url = None;
    let closed = UpstreamClient::new(ClientConfig { endpoints, ..c.config().clone() }).unwrap();
    assert!(matches!(closed.register("other@example.com", "O", "long enough").await, Err(RegisterError::Unsupported)));
    assert!(matches!(
        c.register("new@example.com", "Newt", "long enough").await,
        Err(RegisterError::EmailTaken)
    ));
    match c.register("bad", "", "short").await {
        Err(RegisterError::Invalid(fields)) => assert_eq!(fields.len(), 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_secret_never_prints() {
    let config = ClientConfig {
        endpoints: UpstreamEndpoints::at(&Url::parse("http://127.0.0.1:1").unwrap(), OAUTH2_PATHS.into()).unwrap(),
        profile: ProfileMap { roles: "/roles".into(), ..ProfileMap::oidc() },
        registration_fields: Fields::default(),
        client_id: "id".into(),
        client_secret: SecretString::from("hunter2-very-secret".to_string()),
        auth: ClientAuth::ClientSecretBasic,
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// A request that looked at the remembered results while the flight was in the air, and asks
/// for a refresh only after the flight landed (two tabs, or a thousand requests on two cores,
/// interleave this way): it gets the flight's result; the rotated token is never sent again.
#[tokio::test]
async fn a_refresh_asked_for_after_the_flight_landed_uses_its_result() {
    let (upstream, client) = setup(ClientAuth::ClientSecretBasic, DEFAULT_CLIENT_SECRET).await;
    let now = tokenless_bff::now();
    let tokens = client.password_grant("user@example.com", "frogs-are-green", now).await.unwrap();
    let profile = Profile { id: "1".into(), name: "U".into(), email: "user@example.com".into(), roles: vec![] };
    let session = Session::new("sid-late".into(), now, tokens, profile);
    let refresher = Refresher::new(Arc::new(client), RefreshConfig::default(), tokenless_bff::system_clock());

    // The late request's look: nothing remembered yet.
    assert!(matches!(refresher.known(&session).await, Known::Current));
    // The flight (another request's) lands.
    let first = refresher.refresh(&session).await.unwrap();
    // Now the late request asks.
    let late = refresher.refresh(&session).await.unwrap();

    assert_eq!(late.tokens, first.tokens);
    assert_eq!(late.generation, session.generation + 1);
    let counters = upstream.upstream.counters();
    assert_eq!(counters.grants.get("refresh_token").copied().unwrap_or(0), 1, "{counters:?}");
    assert_eq!(counters.reuse_events, 0, "{counters:?}");
    assert_eq!(refresher.counts().grace_hits, 1);
}

/// A stand-in upstream under `/v1` that answers whatever a test wants, recording the paths asked.
async fn mock_under_v1(token_answer: serde_json::Value) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::routing::{get, post};
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = |seen: Arc<std::sync::Mutex<Vec<String>>>, path: &'static str| {
        seen.lock().unwrap().push(path.to_string());
    };
    let app = axum::Router::new()
        .route(
            "/v1/oauth/token",
            post({
                let seen = seen.clone();
                move || {
                    record(seen.clone(), "/v1/oauth/token");
                    let body = token_answer.clone();
                    async move { axum::Json(body) }
                }
            }),
        )
        .route(
            "/v1/frogs",
            get({
                let seen = seen.clone();
                move || {
                    record(seen.clone(), "/v1/frogs");
                    async { axum::Json(serde_json::json!(["fern"])) }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), seen)
}

fn client_for(base: &str) -> UpstreamClient {
    UpstreamClient::new(ClientConfig {
        endpoints: UpstreamEndpoints::at(&Url::parse(base).unwrap(), OAUTH2_PATHS.into()).unwrap(),
        profile: ProfileMap { roles: "/roles".into(), ..ProfileMap::oidc() },
        registration_fields: Fields::default(),
        client_id: "c".into(),
        client_secret: SecretString::from("s".to_string()),
        auth: ClientAuth::ClientSecretBasic,
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
    })
    .unwrap()
}

/// Hardening finding 8: a hostile `expires_in` saturates instead of overflowing (which panicked
/// the refresh task and left its flight stuck).
#[tokio::test]
async fn a_hostile_expires_in_saturates() {
    let (base, _) = mock_under_v1(serde_json::json!({
        "access_token": "a", "token_type": "Bearer", "expires_in": u64::MAX,
        "refresh_token": "r", "refresh_expires_in": u64::MAX,
    }))
    .await;
    let tokens = client_for(&base).refresh_grant(&Token::new("old"), 1_000_000, None).await.unwrap();
    assert_eq!(tokens.access_expires_at, u64::MAX);
    assert_eq!(tokens.refresh_expires_at, Some(u64::MAX));
    assert_eq!(tokens.access_issued_at, 1_000_000);
}

/// Hardening finding 10: a base URL with a path keeps it for every call, grants and resources
/// alike (the passthrough builds its URLs the same way: `upstream_url`).
#[tokio::test]
async fn a_base_url_with_a_path_keeps_it_for_every_call() {
    let (base, seen) = mock_under_v1(serde_json::json!({
        "access_token": "a", "token_type": "Bearer", "expires_in": 60, "refresh_token": "r",
    }))
    .await;
    let client = client_for(&base);
    let tokens = client.password_grant("u", "p", 1).await.unwrap();
    let frogs: Vec<String> = get_json(&client, "/frogs", &tokens.access_token).await.unwrap();
    assert_eq!(frogs, vec!["fern".to_string()]);
    let request = client.resource(reqwest::Method::GET, "/frogs").unwrap();
    let forwarded = client.attach(request, &tokens.access_token).send().await.unwrap();
    assert_eq!(forwarded.status(), 200);
    assert_eq!(*seen.lock().unwrap(), vec!["/v1/oauth/token", "/v1/frogs", "/v1/frogs"]);
}

/// A loopback upstream under `/v1` whose every route answers `status` with `body` as it is
/// (`content_type` JSON), to see what the client makes of answers that lie.
async fn raw_upstream(status: u16, body: Vec<u8>) -> String {
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move {
            (axum::http::StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

/// An upstream that lies: a 2xx refresh without usable tokens ends the session (never a retry
/// of a token it may have rotated), and answers too large are refused without being buffered.
#[tokio::test]
async fn answers_that_lie_or_never_end_are_refused_cleanly() {
    let refresh = |base: String| async move { client_for(&base).refresh_grant(&Token::new("old"), NOW, None).await };
    for garbage in [b"not json".to_vec(), b"{}".to_vec(), br#"{"access_token": 5}"#.to_vec()] {
        let answer = refresh(raw_upstream(200, garbage.clone()).await).await;
        assert!(
            matches!(&answer, Err(UpstreamError::Refused { code }) if code == tokenless_bff::UNUSABLE_REFRESH_ANSWER),
            "{answer:?} for {}",
            String::from_utf8_lossy(&garbage)
        );
    }
    // A refusal without an RFC 6749 error body (a proxy's 404 or 408 page, an empty 401, a WAF)
    // is not a refusal of the token: the session is kept, as for any answer that makes no sense.
    for (status, body) in [(404, b"<html>not found</html>".to_vec()), (408, Vec::new()), (401, Vec::new())] {
        let answer = refresh(raw_upstream(status, body).await).await;
        assert!(matches!(answer, Err(UpstreamError::Unexpected(_))), "{status}: {answer:?}");
    }
    // A sign-in with garbage is "unexpected", not wrong credentials and not a panic.
    let base = raw_upstream(200, b"[1,2,3]".to_vec()).await;
    assert!(matches!(client_for(&base).password_grant("u", "p", NOW).await, Err(UpstreamError::Unexpected(_))));

    // 100 KiB of valid JSON for a token, a profile and an error: refused, whatever it says.
    let huge = format!(r#"{{"access_token":"a","token_type":"Bearer","pad":"{}"}}"#, "x".repeat(100 * 1024));
    let base = raw_upstream(200, huge.clone().into_bytes()).await;
    let answer = client_for(&base).password_grant("u", "p", NOW).await;
    assert!(matches!(&answer, Err(UpstreamError::Unexpected(d)) if d.contains("larger")), "{answer:?}");
    // A profile may carry more (an embedded avatar): up to RESOURCE_MAX.
    let avatar = format!(r#"{{"sub":"u1","email":"a@b.co","picture":"{}"}}"#, "x".repeat(200 * 1024));
    let base_with_avatar = raw_upstream(200, avatar.into_bytes()).await;
    let profile = client_for(&base_with_avatar).userinfo(&Token::new("a")).await.unwrap();
    assert_eq!((profile.id.as_str(), profile.email.as_str()), ("u1", "a@b.co"));
    let huge_error = format!(r#"{{"error":"invalid_grant","pad":"{}"}}"#, "x".repeat(100 * 1024));
    let base = raw_upstream(400, huge_error.into_bytes()).await;
    let answer = client_for(&base).password_grant("u", "p", NOW).await;
    assert!(matches!(answer, Err(UpstreamError::Unexpected(_))), "an oversized error body is not read: {answer:?}");

    // Resources may be larger (up to RESOURCE_MAX), not without end.
    let base = raw_upstream(200, huge.into_bytes()).await;
    let big: serde_json::Value = get_json(&client_for(&base), "/frogs", &Token::new("a")).await.unwrap();
    assert_eq!(big["pad"].as_str().map(str::len), Some(100 * 1024));
    let endless = vec![b' '; tokenless_bff::RESOURCE_MAX + 1];
    let base = raw_upstream(200, endless).await;
    let answer = get_json::<serde_json::Value>(&client_for(&base), "/frogs", &Token::new("a")).await;
    assert!(matches!(&answer, Err(UpstreamError::Unexpected(d)) if d.contains("larger")), "{answer:?}");
    let profile = client_for(&base).userinfo(&Token::new("a")).await;
    assert!(matches!(&profile, Err(UpstreamError::Unexpected(d)) if d.contains("larger")), "{profile:?}");
}
