//! App instances sharing their refresh memory on a real `redis-server` (started here on a
//! loopback port), in front of one demo upstream: a cookie whose access token expired, sent to
//! three at once a thousand times, is refreshed once; a sign-out on one holds on another; Redis
//! down is a 503 "try again" that keeps the session.

mod common;
// The benchmarks' requests, fan-out and redis-server, driven here as tests.
#[allow(dead_code)]
#[path = "../benches/support/mod.rs"]
mod support;

use axum::http::StatusCode;
use common::*;
use http_body_util::BodyExt;
use support::{fan_out, request, start_redis, Redis};
use tower::ServiceExt;

/// Instance A (with the demo upstream) and `more` instances fronting A's demo upstream, all on
/// `redis` with the same keys and prefix.
async fn instances(redis: &Redis, more: usize) -> Vec<TestApp> {
    let shared = [
        ("TOKENLESS_SESSION__STORE", "redis"),
        ("TOKENLESS_SESSION__REDIS_URL", redis.url.as_str()),
        ("TOKENLESS_DEMO__ACCESS_TTL_SECS", "600"),
    ];
    let a = app_with(&shared).await;
    let demo = a.state.demo.as_ref().expect("A runs the demo upstream").base_url();
    let mut others_env = shared.to_vec();
    others_env.push(("TOKENLESS_UPSTREAM__BASE_URL", demo.as_str()));
    let mut all = vec![a];
    for _ in 0..more {
        all.push(app_with(&others_env).await);
    }
    all
}

async fn two_instances(redis: &Redis) -> (TestApp, TestApp) {
    let mut both = instances(redis, 1).await;
    let b = both.pop().unwrap();
    (both.pop().unwrap(), b)
}

/// A metric of the shared memory on `app` (`tokenless_refresh_shared_{name}`, all labels).
fn shared(app: &TestApp, name: &str) -> u64 {
    let wanted = format!("tokenless_refresh_shared_{name}");
    app.state
        .sessions
        .refresher()
        .metrics_text()
        .lines()
        .filter_map(|line| {
            // The name, then `_total` (counters) or nothing, then labels or the value.
            let rest = line.strip_prefix(&wanted)?;
            let rest = rest.strip_prefix("_total").unwrap_or(rest);
            rest.starts_with([' ', '{']).then(|| line.rsplit(' ').next()?.parse::<u64>().ok())?
        })
        .sum()
}


#[test]
fn an_expired_cookie_sent_a_thousand_times_round_robin_to_three_instances_is_refreshed_once() {
    block_on(async {
        let redis = start_redis().await;
        let apps = instances(&redis, 2).await;
        let a = &apps[0];
        let dana = Browser::new(a);
        assert_eq!(dana.call("login", &[("email", USER.0), ("password", USER.1), ("next", "/")]).await.status, StatusCode::OK);
        dana.edit_session(|s| s.tokens.access_expires_at = tokenless_bff::now() - 1);
        let cookie = dana.cookie_header();
        let before = a.counters().await;

        let routers: Vec<axum::Router> = apps.iter().map(|app| app.router.clone()).collect();
        let (_, errors) = fan_out(&routers, &cookie, 1000, "/frogs", "/api/frogs").await;
        assert_eq!(errors, 0, "every request answered 200");
        let after = a.counters().await;
        let refreshes = |c: &serde_json::Value| c["grants"]["refresh_token"].as_u64().unwrap_or(0);
        assert_eq!(refreshes(&after) - refreshes(&before), 1, "one refresh across the instances: {after}");
        assert_eq!(after["reuse_events"], 0, "{after}");
        let used: u64 = apps
            .iter()
            .map(|app| {
                let c = app.state.sessions.refresher().counts();
                c.joined + c.grace_hits
            })
            .sum();
        assert!(used >= 999, "every other request used that one refresh (joined it, or took its result): {used}");
        // What an operator sees: one lease in all.
        let sum = |name: &str| apps.iter().map(|app| shared(app, name)).sum::<u64>();
        assert_eq!(sum("leases"), 1, "failures: {}", sum("failures"));

        // Later, the old cookie on every instance: the result, no second refresh.
        for app in &apps {
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
fn redis_down_is_a_503_that_keeps_the_session() {
    block_on(async {
        let mut redis = start_redis().await;
        let (a, b) = two_instances(&redis).await;
        let dana = Browser::new(&a);
        assert_eq!(dana.call("login", &[("email", USER.0), ("password", USER.1), ("next", "/")]).await.status, StatusCode::OK);
        let fresh = dana.cookie_header();
        dana.edit_session(|s| s.tokens.access_expires_at = tokenless_bff::now() - 1);
        let cookie = dana.cookie_header();
        let signed_out = Browser::new(&a);
        assert_eq!(signed_out.call("login", &[("email", USER.0), ("password", USER.1), ("next", "/")]).await.status, StatusCode::OK);
        let signed_out_cookie = signed_out.cookie_header();
        assert_eq!(signed_out.call("logout", &[]).await.status, StatusCode::OK);
        redis.child.kill().await.unwrap();
        let before = a.counters().await;
        // A page that needs a refresh: "try again", still signed in, the cookie left as it is.
        let page = b.router.clone().oneshot(request("/frogs", &cookie, false)).await.unwrap();
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(page.headers().get("set-cookie").is_none(), "{:?}", page.headers());
        let body = String::from_utf8(page.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(body.contains("Please try again in a moment") && body.contains("You are still signed in"), "{body}");
        // A server function too: 503, nothing sent upstream (another instance may have rotated
        // the token).
        let call = b.router.clone().oneshot(request("/api/frogs", &cookie, true)).await.unwrap();
        assert_eq!(call.status(), StatusCode::SERVICE_UNAVAILABLE);
        let after = a.counters().await;
        assert_eq!(after["grants"]["refresh_token"], before["grants"]["refresh_token"], "{after}");
        assert!(shared(&b, "try_again") >= 1 && shared(&b, "failures") >= 1);
        assert_eq!(shared(&b, "reachable"), 0);
        // A page that needs no refresh: whether the session signed out cannot be read, so it is
        // not served either ("try again"); a signed-out cookie (on B, which did not see the
        // sign-out) does not open for want of its mark.
        for (what, cookie) in [("a live session", fresh), ("a signed-out session", signed_out_cookie)] {
            let page = b.router.clone().oneshot(request("/account", &cookie, false)).await.unwrap();
            assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
            assert!(page.headers().get("set-cookie").is_none(), "{what}: {:?}", page.headers());
        }
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
