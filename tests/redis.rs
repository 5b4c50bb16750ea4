//! Two app instances sharing their refresh memory on a real `redis-server` (started here on a
//! loopback port), in front of one demo upstream: a cookie whose access token expired, sent to
//! both at once, is refreshed once; a sign-out on one holds on the other.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// `redis-server` on a free loopback port; stopped when dropped.
struct Redis {
    url: String,
    _child: tokio::process::Child,
}

async fn start_redis() -> Redis {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server runs (scripts/setup.sh test installs it)");
    // Up when it accepts a connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "redis-server did not listen within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Redis { url: format!("redis://127.0.0.1:{port}/0"), _child: child }
}

/// Instance A (with the demo upstream) and instance B (fronting A's demo upstream), both on
/// `redis` with the same keys and prefix.
async fn two_instances(redis: &Redis) -> (TestApp, TestApp) {
    let shared = [
        ("TOKENLESS_SESSION__STORE", "redis"),
        ("TOKENLESS_SESSION__REDIS_URL", redis.url.as_str()),
        ("TOKENLESS_DEMO__ACCESS_TTL_SECS", "600"),
    ];
    let a = app_with(&shared).await;
    let demo = a.state.demo.as_ref().expect("A runs the demo upstream").base_url();
    let mut b_env = shared.to_vec();
    b_env.push(("TOKENLESS_UPSTREAM__BASE_URL", demo.as_str()));
    let b = app_with(&b_env).await;
    (a, b)
}

fn request(path: &str, cookie: &str, server_fn: bool) -> Request<Body> {
    let builder = Request::builder().header("host", "127.0.0.1:3000").header("cookie", cookie);
    if server_fn {
        builder
            .method("POST")
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .header("origin", ORIGIN)
            .header("sec-fetch-site", "same-origin")
            .body(Body::empty())
            .unwrap()
    } else {
        builder.method("GET").uri(path).header("accept", "text/html").body(Body::empty()).unwrap()
    }
}

#[test]
fn an_expired_cookie_sent_to_two_instances_at_once_is_refreshed_once() {
    block_on(async {
        let redis = start_redis().await;
        let (a, b) = two_instances(&redis).await;
        let dana = Browser::new(&a);
        assert_eq!(dana.call("login", &[("email", USER.0), ("password", USER.1), ("next", "/")]).await.status, StatusCode::OK);
        dana.edit_session(|s| s.tokens.access_expires_at = tokenless_bff::now() - 1);
        let cookie = dana.cookie_header();
        let before = a.counters().await;

        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let router = if i % 2 == 0 { a.router.clone() } else { b.router.clone() };
                let request = if i % 4 < 2 { request("/frogs", &cookie, false) } else { request("/api/frogs", &cookie, true) };
                tokio::spawn(async move {
                    let response = router.oneshot(request).await.unwrap();
                    let status = response.status();
                    let _ = response.into_body().collect().await;
                    status
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), StatusCode::OK);
        }
        let after = a.counters().await;
        let refreshes = |c: &serde_json::Value| c["grants"]["refresh_token"].as_u64().unwrap_or(0);
        assert_eq!(refreshes(&after) - refreshes(&before), 1, "one refresh across both instances: {after}");
        assert_eq!(after["reuse_events"], 0, "{after}");
        let shared: u64 = [&a, &b]
            .iter()
            .map(|app| {
                let c = app.state.sessions.refresher().counts();
                c.joined + c.grace_hits
            })
            .sum();
        assert!(shared >= 199, "every other request used that one refresh (joined it, or took its result): {shared}");

        // Later, the old cookie on either instance: the result, no second refresh.
        for app in [&a, &b] {
            let late = app.router.clone().oneshot(request("/api/frogs", &cookie, true)).await.unwrap();
            assert_eq!(late.status(), StatusCode::OK);
        }
        assert_eq!(refreshes(&a.counters().await), refreshes(&after));
    })
}

#[test]
fn a_sign_out_on_one_instance_holds_on_the_other() {
    block_on(async {
        let redis = start_redis().await;
        let (a, b) = two_instances(&redis).await;
        let dana = Browser::new(&a);
        assert_eq!(dana.call("login", &[("email", USER.0), ("password", USER.1), ("next", "/")]).await.status, StatusCode::OK);
        let cookie = dana.cookie_header();
        let on_b = |cookie: String| {
            let router = b.router.clone();
            async move { router.oneshot(request("/account", &cookie, false)).await.unwrap() }
        };
        assert_eq!(on_b(cookie.clone()).await.status(), StatusCode::OK, "B opens A's session");
        assert_eq!(dana.call("logout", &[]).await.status, StatusCode::OK);
        // A copy of the cookie kept from before (another tab, a stolen copy) on B: refused.
        let refused = on_b(cookie).await;
        assert_eq!(refused.status(), StatusCode::SEE_OTHER);
        assert!(refused.headers()["location"].to_str().unwrap().starts_with("/login"));
    })
}

#[test]
fn a_store_that_is_not_redis_or_not_there_stops_the_start_naming_the_setting() {
    block_on(async {
        let settings = |url: &str| {
            tokenless::server::Settings::from_sources(
                None,
                vec![
                    ("TOKENLESS_SESSION__STORE".to_string(), "redis".to_string()),
                    ("TOKENLESS_SESSION__REDIS_URL".to_string(), url.to_string()),
                    ("TOKENLESS_SESSION__KEYS".to_string(), TEST_KEYS.to_string()),
                ],
            )
        };
        match settings("http://127.0.0.1:6379") {
            Err(tokenless::server::settings::SettingsError::Invalid { key, env, .. }) => {
                assert_eq!((key.as_str(), env.as_str()), ("session.redis_url", "TOKENLESS_SESSION__REDIS_URL"));
            }
            other => panic!("{other:?}"),
        }
        // A Redis URL where nothing listens: the start says so.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let settings = settings(&format!("redis://127.0.0.1:{port}/0")).unwrap();
        let options = tokenless::server::state::leptos_options(&settings);
        let error = tokenless::server::AppState::build(settings, options).await.err().expect("no Redis, no start");
        assert!(error.to_string().contains("session.redis_url"), "{error}");
    })
}
