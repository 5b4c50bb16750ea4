//! Token refresh against the demo upstream (rotation on every refresh, reuse revokes the whole
//! sign-in, grace 0): single flight under fan-out, late requests with the pre-rotation cookie,
//! the reactive path, the failure policy, newest-wins, a streamed page, and /metrics.
//!
//! Access tokens are aged by editing the sealed cookie with the test key, never by waiting.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use futures::future::join_all;
use http_body_util::BodyExt;
use tower::ServiceExt;

const COOKIE: &str = "tokenless_session";

/// `n` requests at once, each carrying `cookie` (tabs and parallel fetches of one browser that
/// all left before any answer came back), pages and server functions mixed.
async fn fan_out<'a>(app: &'a TestApp, cookie: &str, n: usize) -> Vec<(Browser<'a>, Answer)> {
    join_all((0..n).map(|i| async move {
        let tab = Browser::new(app);
        tab.set_cookie(COOKIE, cookie);
        let answer = if i % 2 == 0 { tab.get("/frogs").await } else { tab.call("frogs", &[]).await };
        (tab, answer)
    }))
    .await
}

#[test]
fn n_concurrent_requests_of_an_expired_session_cause_one_refresh() {
    block_on(async {
        for n in [1usize, 10, 100, 1000] {
            let app = app().await;
            let b = Browser::new(&app);
            b.sign_in(USER).await;
            b.expire_access_token();
            let expired = b.jar.lock().unwrap()[COOKIE].clone();
            let answers = fan_out(&app, &expired, n).await;
            for (tab, answer) in &answers {
                assert_eq!(answer.status, StatusCode::OK, "every request succeeds: {}", answer.body);
                assert_eq!(tab.session().generation, 2, "each holds the refreshed session");
            }
            assert_eq!(app.refresh_grants().await, 1, "one upstream refresh for {n} requests");
            let counts = app.state.sessions.refresher().counts();
            assert_eq!(counts.grants, 1);
            assert_eq!(counts.joined + counts.grace_hits, n as u64 - 1, "{counts:?}");
            app.assert_no_reuse().await;
        }
    })
}

#[test]
fn late_requests_with_the_pre_rotation_cookie_get_the_new_tokens() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        b.expire_access_token();
        let old = b.jar.lock().unwrap()[COOKIE].clone();
        let first = b.get("/frogs").await;
        assert_eq!(first.status, StatusCode::OK);
        let rotated = b.session();
        assert_eq!(rotated.generation, 2);

        // A second tab, or fetches that left before the first answer arrived: the old cookie.
        let late: Vec<Browser> = (0..20).map(|_| Browser::new(&app)).collect();
        for tab in &late {
            tab.set_cookie(COOKIE, &old);
        }
        let answers = join_all(late.iter().map(|tab| tab.call("frogs", &[]))).await;
        for (tab, answer) in late.iter().zip(&answers) {
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            let s = tab.session();
            assert_eq!(s.generation, 2, "the late request got the newest session");
            assert!(s.tokens.refresh_token == rotated.tokens.refresh_token, "the rotated refresh token");
        }
        assert_eq!(app.refresh_grants().await, 1);
        assert_eq!(app.state.sessions.refresher().counts().grace_hits, 20);
        app.assert_no_reuse().await;
    })
}

#[test]
fn an_access_token_revoked_upstream_is_refreshed_once_and_the_call_retried() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        let before = b.session();
        app.revoke_access_token(before.tokens.access_token.expose()).await;

        let call = b.call("frogs", &[]).await;
        assert_eq!(call.status, StatusCode::OK, "{}", call.body);
        assert!(call.body.contains("Fern"));
        assert_eq!(app.refresh_grants().await, 1);
        let after = b.session();
        assert_eq!(after.generation, 2, "the refreshed session went out with the answer");
        assert!(after.tokens.access_token != before.tokens.access_token);
        // And the page path the same way, with the refreshed cookie: no further refresh.
        assert_eq!(b.get("/frogs").await.status, StatusCode::OK);
        assert_eq!(app.refresh_grants().await, 1);
        app.assert_no_reuse().await;
    })
}

#[test]
fn a_refused_refresh_signs_out_with_the_return_path_and_a_reason() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        assert_eq!(
            app.control_post(&format!("/_test/users/{}/revoke", USER.0), serde_json::json!({})).await,
            StatusCode::OK
        );
        b.expire_access_token();
        let tab = Browser::new(&app);
        tab.set_cookie(COOKIE, &b.jar.lock().unwrap()[COOKIE].clone());

        let page = b.get("/frogs?sort=name").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.location(), Some("/login?next=%2Ffrogs%3Fsort%3Dname&reason=expired"));
        assert!(b.cookie_header().is_empty(), "every session cookie is cleared");
        let login = b.get(page.location().unwrap()).await;
        assert!(login.body.contains("data-testid=\"session-ended\""), "{}", login.body);

        // A server function with the same dead cookie: a typed error, not a 500.
        let call = tab.call("frogs", &[]).await;
        assert_eq!(call.status, StatusCode::UNAUTHORIZED, "{}", call.body);
        assert!(call.body.contains("SessionExpired"), "{}", call.body);
        assert!(tab.cookie_header().is_empty());
        assert_eq!(app.state.sessions.refresher().counts().refused, 1, "asked upstream once");
    })
}

#[test]
fn upstream_down_during_refresh_keeps_the_cookie_and_recovers_by_itself() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        b.expire_access_token();
        let cookie = b.cookie_header();
        assert_eq!(
            app.control_post("/_test/faults", serde_json::json!({"kind": "down"})).await,
            StatusCode::NO_CONTENT
        );
        let page = b.get("/frogs").await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{}", page.body);
        assert!(page.body.contains("data-testid=\"unavailable\""));
        let call = b.call("frogs", &[]).await;
        assert_eq!(call.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(call.body.contains("UpstreamUnavailable"), "{}", call.body);
        assert_eq!(b.cookie_header(), cookie, "the cookie is unchanged");
        assert!(page.set_cookies().is_empty() && call.set_cookies().is_empty());

        reqwest::Client::new().delete(format!("{}/_test/faults", app.controls)).send().await.unwrap();
        assert_eq!(b.get("/frogs").await.status, StatusCode::OK, "recovered without signing in again");
        assert_eq!(b.session().generation, 2);
        let counts = app.state.sessions.refresher().counts();
        assert!(counts.unavailable >= 1 && counts.refreshed == 1, "{counts:?}");
        app.assert_no_reuse().await;
    })
}

#[test]
fn a_refresh_slower_than_the_wait_answers_unavailable_then_its_result_is_used() {
    block_on(async {
        let app = app_with(&[("TOKENLESS_SESSION__REFRESH_WAIT_MS", "200")]).await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        b.expire_access_token();
        let cookie = b.cookie_header();
        let fault = serde_json::json!({"kind": "latency", "latency_ms": 1500, "endpoint": "/oauth/token", "count": 1});
        assert_eq!(app.control_post("/_test/faults", fault).await, StatusCode::NO_CONTENT);
        let page = b.get("/frogs").await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b.cookie_header(), cookie, "the cookie is unchanged");

        // The grant goes on upstream; the next requests join it or get its remembered result.
        let mut attempts = 0;
        let ok = loop {
            attempts += 1;
            let answer = b.get("/frogs").await;
            if answer.status == StatusCode::OK || attempts == 50 {
                break answer;
            }
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        };
        assert_eq!(ok.status, StatusCode::OK, "recovered after {attempts} attempts");
        assert_eq!(app.refresh_grants().await, 1, "the slow grant was not repeated");
        assert!(app.state.sessions.refresher().counts().wait_timeouts >= 1);
        app.assert_no_reuse().await;
    })
}

#[test]
fn a_response_never_writes_a_session_older_than_the_newest_issued() {
    block_on(async {
        // No grace: once the refreshed cookie went out, the old one gets nothing from memory.
        let app = app_with(&[("TOKENLESS_SESSION__ROTATION_GRACE_SECS", "0")]).await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        // An old cookie whose access token still works and whose idle clock is due for a touch.
        b.edit_session(|s| s.last_seen_at -= 3600);
        let old = b.jar.lock().unwrap()[COOKIE].clone();
        b.expire_access_token();
        assert_eq!(b.get("/frogs").await.status, StatusCode::OK);
        assert_eq!(b.session().generation, 2);
        // The browser comes back with it: from now on only the grace (none) keeps the result.
        assert_eq!(b.get("/account").await.status, StatusCode::OK);

        let slow = Browser::new(&app);
        slow.set_cookie(COOKIE, &old);
        let answer = slow.get("/frogs").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.set_cookies().is_empty(), "generation 1 is not written over generation 2");
        assert_eq!(app.state.sessions.refresher().counts().older_not_written, 1);
        app.assert_no_reuse().await;
    })
}

#[test]
fn a_streamed_page_carries_the_refreshed_cookie() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        b.expire_access_token();
        let request = Request::get("/")
            .header("host", HOST)
            .header("accept", "text/html")
            .header("cookie", b.cookie_header())
            .body(Body::empty())
            .unwrap();
        let response = app.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().cloned().collect();
        assert_eq!(cookies.len(), 1, "the refreshed session is in the headers");
        let mut body = response.into_body();
        let mut frames = 0;
        let mut html = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                frames += 1;
                html.extend_from_slice(&data);
            }
        }
        assert!(frames > 1, "the page was streamed ({frames} chunk)");
        assert!(String::from_utf8_lossy(&html).contains("data-testid=\"server-status\""));
        let value = tower_cookies::cookie::Cookie::parse(cookies[0].to_str().unwrap().to_string()).unwrap();
        assert_eq!(open_session(COOKIE, value.value()).generation, 2);
        assert_eq!(app.refresh_grants().await, 1);
        app.assert_no_reuse().await;
    })
}

#[test]
fn metrics_are_served_in_prometheus_text_behind_an_optional_token() {
    block_on(async {
        let app = app_with(&[("TOKENLESS_METRICS__TOKEN", "scrape-me")]).await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        b.expire_access_token();
        assert_eq!(b.get("/frogs").await.status, StatusCode::OK);

        let anonymous = b.get("/metrics").await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        let wrong = b
            .send(
                Request::get("/metrics")
                    .header("authorization", "Bearer scrape-you")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        let scraped = b
            .send(
                Request::get("/metrics")
                    .header("authorization", "Bearer scrape-me")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(scraped.status, StatusCode::OK);
        let text = scraped.body;
        assert!(text.contains("tokenless_refresh_grants_total{outcome=\"refreshed\"} 1"), "{text}");
        assert!(text.contains("# TYPE tokenless_refresh_duration_seconds histogram"), "{text}");
        assert!(text.contains("tokenless_refresh_joined_total 0"), "{text}");
        assert!(!text.contains("eyJ"), "no token in metrics");

        let off = app_with(&[("TOKENLESS_METRICS__ENABLED", "false")]).await;
        assert_eq!(Browser::new(&off).get("/metrics").await.status, StatusCode::NOT_FOUND);
    })
}

#[test]
fn a_signed_out_cookie_is_refused_without_asking_the_upstream() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        let stolen = b.jar.lock().unwrap()[COOKIE].clone();
        assert_eq!(b.call("logout", &[]).await.status, StatusCode::OK);
        let requests_before = app.control_get("/_test/requests").await.as_array().map(|a| a.len());

        let replay = Browser::new(&app);
        replay.set_cookie(COOKIE, &stolen);
        let page = replay.get("/frogs").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        // Refused without deleting the cookie (it may be a newer sign-in's in a real browser).
        assert!(page.set_cookies().is_empty(), "{:?}", page.set_cookies());
        let requests_after = app.control_get("/_test/requests").await.as_array().map(|a| a.len());
        assert_eq!(requests_before, requests_after, "the upstream was not asked");
        assert_eq!(app.state.sessions.refresher().counts().signed_out_refused, 1);
    })
}
