//! The demo upstream over real HTTP on loopback: every endpoint, rotation and reuse detection,
//! revocation, bad input, fault injection, and a naive BFF being signed out for refreshing twice.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokenless_upstream::config::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use tokenless_upstream::{spawn, FaultKind, FaultSpec, RunningUpstream, UpstreamConfig};

const USER: (&str, &str) = ("user@example.com", "frogs-are-green");
const ADMIN: (&str, &str) = ("admin@example.com", "admin-frogs-rule");

async fn start(config: UpstreamConfig) -> (RunningUpstream, Client) {
    let running = spawn(config).await.expect("upstream starts");
    (running, Client::new())
}

async fn started() -> (RunningUpstream, Client) {
    start(UpstreamConfig::for_tests()).await
}

fn url(u: &RunningUpstream, path: &str) -> String {
    format!("{}{path}", u.base_url())
}

async fn token_request(c: &Client, u: &RunningUpstream, form: &[(&str, &str)]) -> reqwest::Response {
    c.post(url(u, "/oauth/token"))
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .form(form)
        .send()
        .await
        .expect("request sent")
}

async fn sign_in(c: &Client, u: &RunningUpstream, who: (&str, &str)) -> Value {
    let r =
        token_request(c, u, &[("grant_type", "password"), ("username", who.0), ("password", who.1)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn refresh(c: &Client, u: &RunningUpstream, token: &str) -> reqwest::Response {
    token_request(c, u, &[("grant_type", "refresh_token"), ("refresh_token", token)]).await
}

async fn get_with(c: &Client, u: &RunningUpstream, path: &str, access: &str) -> reqwest::Response {
    c.get(url(u, path)).bearer_auth(access).send().await.unwrap()
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}")).to_string()
}

#[tokio::test]
async fn password_grant_answers_rfc6749_shape() {
    let (u, c) = started().await;
    let r = token_request(&c, &u, &[("grant_type", "password"), ("username", USER.0), ("password", USER.1)])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 60);
    assert!(s(&t, "access_token").starts_with("eyJ"), "a JWT");
    assert_eq!(s(&t, "access_token").split('.').count(), 3);
    assert!(s(&t, "refresh_token").len() >= 43, "256 bits of randomness");
    assert_eq!(t["refresh_expires_in"], 30 * 24 * 3600);
    assert_eq!(u.upstream.counters().grants["password"], 1);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let (u, c) = started().await;
    let wrong =
        token_request(&c, &u, &[("grant_type", "password"), ("username", USER.0), ("password", "nope-nope")])
            .await;
    let unknown = token_request(
        &c,
        &u,
        &[("grant_type", "password"), ("username", "ghost@example.com"), ("password", "nope-nope")],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let (a, b): (Value, Value) = (wrong.json().await.unwrap(), unknown.json().await.unwrap());
    assert_eq!(a, b);
    assert_eq!(a["error"], "invalid_grant");
}

#[tokio::test]
async fn resources_with_a_valid_token() {
    let (u, c) = started().await;
    let t = sign_in(&c, &u, USER).await;
    let access = s(&t, "access_token");

    let me: Value = get_with(&c, &u, "/userinfo", &access).await.json().await.unwrap();
    assert_eq!(me["email"], USER.0);
    assert_eq!(me["name"], "Dana User");
    assert_eq!(me["roles"], json!(["user"]));
    assert!(me["id"].is_string());

    let frogs: Value = get_with(&c, &u, "/frogs", &access).await.json().await.unwrap();
    let frogs = frogs.as_array().unwrap();
    assert!(frogs.len() >= 6);
    assert!(frogs[0]["picture_svg"].as_str().unwrap().starts_with("<svg"));

    let r = get_with(&c, &u, "/admin/stats", &access).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "not an admin");
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));

    let admin = sign_in(&c, &u, ADMIN).await;
    let r = get_with(&c, &u, "/admin/stats", &s(&admin, "access_token")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let stats: Value = r.json().await.unwrap();
    assert_eq!(stats["users"], 2);
    assert_eq!(stats["active_sessions"], 2);
}

#[tokio::test]
async fn missing_forged_and_malformed_tokens_are_401_with_a_bearer_challenge() {
    let (u, c) = started().await;
    let t = sign_in(&c, &u, USER).await;
    let access = s(&t, "access_token");
    let mut forged = access.clone();
    forged.pop();
    forged.push(if access.ends_with('A') { 'B' } else { 'A' });

    let cases = [
        c.get(url(&u, "/frogs")).send().await.unwrap(),
        get_with(&c, &u, "/frogs", &forged).await,
        get_with(&c, &u, "/frogs", "not-a-jwt").await,
        c.get(url(&u, "/frogs")).header("authorization", format!("Basic {access}")).send().await.unwrap(),
        c.get(url(&u, "/frogs")).header("authorization", "Bearer").send().await.unwrap(),
    ];
    for r in cases {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token");
    }
}

#[tokio::test]
async fn access_token_expires() {
    let (u, c) =
        start(UpstreamConfig { access_ttl: Duration::from_secs(1), ..UpstreamConfig::for_tests() }).await;
    let t = sign_in(&c, &u, USER).await;
    let access = s(&t, "access_token");
    assert_eq!(get_with(&c, &u, "/frogs", &access).await.status(), StatusCode::OK);
    // Wait for the condition, with a deadline: the token's `exp` is at most 2 s away.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get_with(&c, &u, "/frogs", &access).await;
        if r.status() == StatusCode::UNAUTHORIZED {
            assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("expired"));
            break;
        }
        assert!(Instant::now() < deadline, "the access token never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The refresh token still works and yields a working access token.
    let r = refresh(&c, &u, &s(&t, "refresh_token")).await;
    let fresh: Value = r.json().await.unwrap();
    assert_eq!(get_with(&c, &u, "/frogs", &s(&fresh, "access_token")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn rotation_chain_and_reuse_of_an_old_token_revokes_the_family() {
    let (u, c) = started().await;
    let t1 = sign_in(&c, &u, USER).await;
    let t2: Value = refresh(&c, &u, &s(&t1, "refresh_token")).await.json().await.unwrap();
    let t3: Value = refresh(&c, &u, &s(&t2, "refresh_token")).await.json().await.unwrap();
    assert_ne!(s(&t1, "refresh_token"), s(&t2, "refresh_token"));
    assert_ne!(s(&t2, "refresh_token"), s(&t3, "refresh_token"));
    assert_eq!(get_with(&c, &u, "/frogs", &s(&t3, "access_token")).await.status(), StatusCode::OK);

    let reuse = refresh(&c, &u, &s(&t1, "refresh_token")).await;
    assert_eq!(reuse.status(), StatusCode::BAD_REQUEST);
    assert_eq!(reuse.json::<Value>().await.unwrap()["error"], "invalid_grant");

    let counters = u.upstream.counters();
    assert_eq!(counters.reuse_events, 1);
    assert_eq!(counters.refreshes_per_user[USER.0], 2);
    // Everything descended from that sign-in is dead.
    assert_eq!(get_with(&c, &u, "/frogs", &s(&t3, "access_token")).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&c, &u, &s(&t3, "refresh_token")).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn two_concurrent_refreshes_with_one_token_exactly_one_wins() {
    let (u, c) = started().await;
    let t = sign_in(&c, &u, USER).await;
    let r = s(&t, "refresh_token");
    let (a, b) = tokio::join!(refresh(&c, &u, &r), refresh(&c, &u, &r));
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_REQUEST]);
    let counters = u.upstream.counters();
    assert_eq!(counters.reuse_events, 1, "the loser is a reuse event");
    assert_eq!(counters.grants["refresh_token"], 1);
}

/// What a careless BFF does: two requests of one session both see an expired access token and
/// both refresh with the refresh token they hold. The upstream takes the second as theft, and the
/// user is signed out: even the winner's new tokens no longer work.
#[tokio::test]
async fn a_bff_that_refreshes_twice_with_the_same_token_is_signed_out() {
    let (u, c) = started().await;
    let session = sign_in(&c, &u, USER).await;
    let held = s(&session, "refresh_token");

    let first = refresh(&c, &u, &held).await;
    assert_eq!(first.status(), StatusCode::OK);
    let winner: Value = first.json().await.unwrap();
    let second = refresh(&c, &u, &held).await;
    assert_eq!(second.status(), StatusCode::BAD_REQUEST);

    assert_eq!(
        get_with(&c, &u, "/userinfo", &s(&winner, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(refresh(&c, &u, &s(&winner, "refresh_token")).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(u.upstream.counters().reuse_events, 1);
}

#[tokio::test]
async fn rotation_grace_when_configured() {
    let (u, c) =
        start(UpstreamConfig { rotation_grace: Duration::from_secs(30), ..UpstreamConfig::for_tests() })
            .await;
    let t = sign_in(&c, &u, USER).await;
    let held = s(&t, "refresh_token");
    assert_eq!(refresh(&c, &u, &held).await.status(), StatusCode::OK);
    assert_eq!(refresh(&c, &u, &held).await.status(), StatusCode::OK, "inside the grace period");
    let counters = u.upstream.counters();
    assert_eq!((counters.grace_reuses, counters.reuse_events), (1, 0));
}

#[tokio::test]
async fn revocation_rfc7009() {
    let (u, c) = started().await;
    let t = sign_in(&c, &u, USER).await;
    let revoke = |token: String, hint: &'static str| {
        let c = c.clone();
        let endpoint = url(&u, "/oauth/revoke");
        async move {
            c.post(endpoint)
                .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
                .form(&[("token", token.as_str()), ("token_type_hint", hint)])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(revoke(s(&t, "refresh_token"), "refresh_token").await.status(), StatusCode::OK);
    assert_eq!(get_with(&c, &u, "/frogs", &s(&t, "access_token")).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&c, &u, &s(&t, "refresh_token")).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        revoke("never-issued".into(), "refresh_token").await.status(),
        StatusCode::OK,
        "unknown: still 200"
    );
    assert_eq!(u.upstream.counters().revocations, 1);

    let t = sign_in(&c, &u, USER).await;
    assert_eq!(revoke(s(&t, "access_token"), "access_token").await.status(), StatusCode::OK);
    assert_eq!(get_with(&c, &u, "/frogs", &s(&t, "access_token")).await.status(), StatusCode::UNAUTHORIZED);

    let r = c.post(url(&u, "/oauth/revoke")).form(&[("token", "x")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "client authentication required");
}

#[tokio::test]
async fn client_authentication_basic_post_and_failures() {
    let (u, c) = started().await;
    let form = [("grant_type", "password"), ("username", USER.0), ("password", USER.1)];
    let post_auth = [
        ("grant_type", "password"),
        ("username", USER.0),
        ("password", USER.1),
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
    ];
    let r = c.post(url(&u, "/oauth/token")).form(&post_auth).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "client_secret_post");

    for r in [
        c.post(url(&u, "/oauth/token")).form(&form).send().await.unwrap(),
        c.post(url(&u, "/oauth/token"))
            .basic_auth(DEFAULT_CLIENT_ID, Some("wrong"))
            .form(&form)
            .send()
            .await
            .unwrap(),
        c.post(url(&u, "/oauth/token"))
            .basic_auth("stranger", Some(DEFAULT_CLIENT_SECRET))
            .form(&form)
            .send()
            .await
            .unwrap(),
        c.post(url(&u, "/oauth/token"))
            .header("authorization", "Basic !!!")
            .form(&form)
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic "));
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    }
    let both = c
        .post(url(&u, "/oauth/token"))
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .form(&post_auth)
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_never_a_500() {
    let (u, c) = started().await;
    let token =
        |body: reqwest::RequestBuilder| body.basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET));
    let post = || token(c.post(url(&u, "/oauth/token")));
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (post().form(&[("grant_type", "magic")]), StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        (post().form(&[("username", "x")]), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            post().form(&[("grant_type", "password"), ("username", USER.0)]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (post().form(&[("grant_type", "refresh_token")]), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            post().form(&[("grant_type", "refresh_token"), ("refresh_token", "made-up")]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            post()
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=password&grant_type=refresh_token"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (post().json(&json!({"grant_type": "password"})), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            post()
                .header("content-type", "application/x-www-form-urlencoded")
                .body(vec![0xff, 0xfe, b'=', 0x00]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (request, status, error) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), status);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], error);
    }

    let huge = "a".repeat(64 * 1024);
    let r = post().form(&[("grant_type", "password"), ("username", huge.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let r = c.get(url(&u, "/no/such/thing")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c.get(url(&u, "/oauth/token")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn registration() {
    let (u, c) = started().await;
    let register = |body: Value| {
        c.post(url(&u, "/users"))
            .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
            .json(&body)
            .send()
    };
    let r = register(json!({"email": "New@Example.com", "name": "Newt", "password": "long enough"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let profile: Value = r.json().await.unwrap();
    assert_eq!(profile["email"], "new@example.com");
    assert_eq!(profile["roles"], json!(["user"]));
    assert!(profile.get("password").is_none() && profile.get("password_hash").is_none());
    sign_in(&c, &u, ("new@example.com", "long enough")).await;

    let r = register(json!({"email": "new@EXAMPLE.com", "name": "Again", "password": "long enough"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "email_taken");

    let r = register(json!({"email": "nope", "name": "", "password": "short"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    let fields: Vec<&str> =
        body["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["email", "name", "password"]);
    assert!(body["fields"][2]["message"].as_str().unwrap().contains("8"));

    let r = c
        .post(url(&u, "/users"))
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = c
        .post(url(&u, "/users"))
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .post(url(&u, "/users"))
        .json(&json!({"email": "a@b.co", "name": "A", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "registration needs the client's credentials");
}

fn fault(kind: FaultKind) -> FaultSpec {
    FaultSpec { kind, endpoint: None, count: None, seconds: None, latency_ms: None }
}

#[tokio::test]
async fn fault_injection_5xx_for_n_requests_and_per_endpoint() {
    let (u, c) = started().await;
    let t = sign_in(&c, &u, USER).await;
    let access = s(&t, "access_token");
    u.upstream.add_fault(FaultSpec { count: Some(2), ..fault(FaultKind::Unavailable) }).unwrap();
    assert_eq!(get_with(&c, &u, "/frogs", &access).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get_with(&c, &u, "/userinfo", &access).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get_with(&c, &u, "/frogs", &access).await.status(), StatusCode::OK, "count used up");

    u.upstream
        .add_fault(FaultSpec { endpoint: Some("/oauth/token".into()), ..fault(FaultKind::ServerError) })
        .unwrap();
    assert_eq!(refresh(&c, &u, &s(&t, "refresh_token")).await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        get_with(&c, &u, "/frogs", &access).await.status(),
        StatusCode::OK,
        "other endpoints unaffected"
    );
    u.upstream.clear_faults();
    assert_eq!(
        refresh(&c, &u, &s(&t, "refresh_token")).await.status(),
        StatusCode::OK,
        "the refused refresh did not consume the token"
    );
    assert_eq!(u.upstream.counters().faults_applied, 3);
}

#[tokio::test]
async fn fault_injection_down_and_recovery_over_the_control_port() {
    let (u, c) = started().await;
    let t = sign_in(&c, &u, USER).await;
    let access = s(&t, "access_token");
    let controls = u.control_url().expect("test controls on");

    let r = c.post(format!("{controls}/_test/faults")).json(&json!({"kind": "down"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Both the kept-alive connection and a new one fail without an HTTP answer.
    let err = c.get(url(&u, "/frogs")).bearer_auth(&access).send().await.unwrap_err();
    assert!(err.is_request() || err.is_connect(), "{err:?}");
    let fresh = Client::new();
    assert!(fresh.get(url(&u, "/frogs")).bearer_auth(&access).send().await.is_err());

    let r = c.delete(format!("{controls}/_test/faults")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(get_with(&c, &u, "/frogs", &access).await.status(), StatusCode::OK, "recovered");
}

#[tokio::test]
async fn fault_injection_latency() {
    let (u, c) = started().await;
    let t = sign_in(&c, &u, USER).await;
    u.upstream
        .add_fault(FaultSpec { latency_ms: Some(300), count: Some(1), ..fault(FaultKind::Latency) })
        .unwrap();
    let quick = Client::builder().timeout(Duration::from_millis(100)).build().unwrap();
    let err = quick.get(url(&u, "/frogs")).bearer_auth(s(&t, "access_token")).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(get_with(&c, &u, "/frogs", &s(&t, "access_token")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn test_controls_over_http() {
    let (u, c) = started().await;
    let t = sign_in(&c, &u, USER).await;
    let controls = u.control_url().unwrap();

    let counters: Value =
        c.get(format!("{controls}/_test/counters")).send().await.unwrap().json().await.unwrap();
    assert_eq!(counters["grants"]["password"], 1);
    assert_eq!(counters["requests"]["POST /oauth/token"], 1);

    let tokens: Value = c
        .get(format!("{controls}/_test/users/{}/tokens", USER.0))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["access_tokens"][0], t["access_token"]);
    assert_eq!(tokens["refresh_tokens"][0], t["refresh_token"]);

    get_with(&c, &u, "/frogs", &s(&t, "access_token")).await;
    let requests: Value =
        c.get(format!("{controls}/_test/requests")).send().await.unwrap().json().await.unwrap();
    let last = requests.as_array().unwrap().last().unwrap();
    assert_eq!(last["path"], "/frogs");
    assert!(last["headers"].as_array().unwrap().iter().any(|h| h[0] == "authorization"));

    let r = c.post(format!("{controls}/_test/users/{}/revoke", USER.0)).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["revoked_sessions"], 1);
    assert_eq!(get_with(&c, &u, "/frogs", &s(&t, "access_token")).await.status(), StatusCode::UNAUTHORIZED);
    let r = c.post(format!("{controls}/_test/users/nobody@example.com/revoke")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r =
        c.post(format!("{controls}/_test/faults")).json(&json!({"kind": "latency"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "latency without latency_ms");
    let r = c.post(format!("{controls}/_test/faults")).body("nonsense").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    assert_eq!(
        c.post(format!("{controls}/_test/reset")).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let counters: Value =
        c.get(format!("{controls}/_test/counters")).send().await.unwrap().json().await.unwrap();
    assert_eq!(counters["grants"], json!({}));

    let r = c.get(url(&u, "/_test/counters")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "never on the API's own port");
}

#[tokio::test]
async fn test_controls_are_off_by_default() {
    let (u, _c) =
        start(UpstreamConfig { hash_cost: tokenless_upstream::HashCost::Fast, ..UpstreamConfig::default() })
            .await;
    assert!(u.control_url().is_none());
    let t = UpstreamConfig::default();
    assert!(!t.test_controls);
    assert_eq!(t.rotation_grace, Duration::ZERO);
}
