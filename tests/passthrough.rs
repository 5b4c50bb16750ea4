//! The upstream passthrough (`/api/upstream/...`) against the demo upstream, whose request log
//! shows exactly what reached it: allowlist, path tricks, CSRF, anonymous calls, header hygiene
//! both ways, refresh (proactive and on 401), outages, body limit.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;

const ALLOW: &str = "GET /frogs, GET /frogs/*, POST /frogs/*/croaks";

async fn passthrough_app() -> TestApp {
    app_with(&[("TOKENLESS_PASSTHROUGH__ALLOW", ALLOW)]).await
}

/// A passthrough call as the hydrated client makes it.
fn call(method: &str, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(format!("/api/upstream{path}"))
        .header("x-csrf", "1")
        .header("accept", "application/json")
        .header("origin", ORIGIN)
        .header("sec-fetch-site", "same-origin")
}

impl TestApp {
    /// The requests the upstream received, oldest first: (method, path, query, headers).
    async fn received(&self) -> Vec<serde_json::Value> {
        self.control_get("/_test/requests").await.as_array().cloned().unwrap_or_default()
    }

    async fn croaks_received(&self) -> usize {
        self.received()
            .await
            .iter()
            .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/croaks")))
            .count()
    }
}

fn header<'a>(request: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    request["headers"].as_array()?.iter().find(|h| h[0].as_str() == Some(name)).and_then(|h| h[1].as_str())
}

fn json(answer: &Answer) -> serde_json::Value {
    serde_json::from_str(&answer.body).unwrap_or_else(|_| panic!("JSON body: {}", answer.body))
}

#[test]
fn an_allowlisted_call_goes_upstream_with_the_token_and_nothing_of_the_browser() {
    block_on(async {
        let app = passthrough_app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        let access = b.session().tokens.access_token.expose().to_string();
        let answer = b
            .send(
                call("GET", "/frogs?sort=name&q=a%20b")
                    .header("authorization", "Bearer stolen-elsewhere")
                    .header("x-custom", "secret")
                    .header("connection", "x-custom")
                    .header("accept-language", "fr")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert!(json(&answer).as_array().unwrap().len() >= 3);
        assert!(answer.set_cookies().is_empty(), "nothing changed in the session");

        let seen = app.received().await;
        let last = seen.last().unwrap();
        assert_eq!(last["method"], "GET");
        assert_eq!(last["path"], "/frogs");
        assert_eq!(last["query"], "sort=name&q=a%20b", "the query string as sent");
        assert_eq!(header(last, "authorization"), Some(format!("Bearer {access}").as_str()));
        assert_eq!(header(last, "cookie"), None, "the browser's cookie stays behind");
        assert_eq!(header(last, "x-custom"), None);
        assert_eq!(header(last, "x-csrf"), None);
        assert_eq!(header(last, "accept-language"), Some("fr"));
        app.assert_no_reuse().await;
    })
}

#[test]
fn the_upstreams_cookies_and_credentials_never_come_back() {
    block_on(async {
        let app = passthrough_app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        let answer = b.send(call("GET", "/frogs/2").body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(json(&answer)["id"], 2);
        assert!(answer.headers.get("set-cookie").is_none(), "the upstream's Set-Cookie is dropped");
        assert!(answer.headers.get("www-authenticate").is_none());
        assert!(answer.headers.get("authorization").is_none());
        assert_eq!(answer.headers.get("content-type").unwrap(), "application/json");
        assert!(!answer.body.contains("eyJ"));

        // An upstream error body passes (a 404 of the upstream's own), its status too.
        let missing = b.send(call("GET", "/frogs/999").body(Body::empty()).unwrap()).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    })
}

#[test]
fn only_the_allowlist_is_forwarded_and_no_path_trick_escapes_it() {
    block_on(async {
        let app = passthrough_app().await;
        let b = Browser::new(&app);
        b.sign_in(ADMIN).await;
        let before = app.received().await.len();
        for (method, path) in [
            ("GET", "/admin/stats"),
            ("GET", "/userinfo"),
            ("DELETE", "/frogs/1"),
            ("GET", "/frogs/1/croaks"),
            ("POST", "/frogs"),
            ("GET", "/frogs/../admin/stats"),
            ("GET", "/frogs/%2e%2e/admin/stats"),
            ("GET", "/frogs/%2E%2E/admin/stats"),
            ("GET", "/frogs%2f..%2fadmin%2fstats"),
            ("GET", "/frogs/%252e%252e/admin"),
            ("GET", "//frogs"),
            ("GET", "/frogs//1"),
            ("GET", "/frogs/1/"),
            ("GET", "/frogs/.%2e/admin"),
            ("GET", "/frogs/%5c..%5cadmin"),
            ("GET", "/frogs/1;jsessionid=x"),
            ("GET", "/oauth/token"),
        ] {
            let answer = b.send(call(method, path).body(Body::empty()).unwrap()).await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}: {}", answer.body);
        }
        let backslash = b.send(call("GET", "/frogs\\..\\admin").body(Body::empty()).unwrap()).await;
        assert_eq!(backslash.status, StatusCode::NOT_FOUND);
        assert_eq!(app.received().await.len(), before, "nothing reached the upstream");

        let nothing = app_with(&[]).await;
        let b = Browser::new(&nothing);
        b.sign_in(USER).await;
        let answer = b.send(call("GET", "/frogs").body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "nothing is forwarded unless the settings say so");
    })
}

#[test]
fn cross_site_and_header_less_calls_are_refused_and_anonymous_ones_get_401() {
    block_on(async {
        let app = passthrough_app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        // A form on another site cannot add X-CSRF; a script there would need a CORS preflight.
        let no_header = b
            .send(
                Request::post("/api/upstream/frogs/1/croaks")
                    .header("origin", ORIGIN)
                    .header("sec-fetch-site", "same-origin")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(no_header.status, StatusCode::FORBIDDEN);
        assert_eq!(json(&no_header)["error"], "csrf");
        let get_no_header = b.send(Request::get("/api/upstream/frogs").body(Body::empty()).unwrap()).await;
        assert_eq!(get_no_header.status, StatusCode::FORBIDDEN, "reads need it too");
        let cross_site = b
            .send(
                Request::post("/api/upstream/frogs/1/croaks")
                    .header("x-csrf", "1")
                    .header("sec-fetch-site", "cross-site")
                    .header("origin", "https://evil.example")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
        assert_eq!(app.croaks_received().await, 0, "no croak reached the upstream");

        let anonymous = Browser::new(&app);
        let answer = anonymous.send(call("GET", "/frogs").body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "401, never a redirect");
        assert!(answer.location().is_none());
        assert_eq!(json(&answer)["error"], "unauthorized");
    })
}

#[test]
fn an_expired_token_is_refreshed_first_and_the_cookie_goes_out_with_the_answer() {
    block_on(async {
        let app = passthrough_app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        b.expire_access_token();
        let answer = b.send(call("POST", "/frogs/3/croaks").body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        assert_eq!(json(&answer)["croaks"], 1);
        assert_eq!(answer.set_cookies().len(), 1);
        assert_eq!(b.session().generation, 2);
        assert_eq!(app.refresh_grants().await, 1);
        app.assert_no_reuse().await;
    })
}

#[test]
fn a_401_renews_once_then_retries_only_what_is_idempotent() {
    block_on(async {
        let app = passthrough_app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        app.revoke_access_token(b.session().tokens.access_token.expose()).await;
        let read = b.send(call("GET", "/frogs/1").body(Body::empty()).unwrap()).await;
        assert_eq!(read.status, StatusCode::OK, "GET retried after the renewal: {}", read.body);
        assert_eq!(app.refresh_grants().await, 1);

        app.revoke_access_token(b.session().tokens.access_token.expose()).await;
        let write = b.send(call("POST", "/frogs/1/croaks").body(Body::empty()).unwrap()).await;
        assert_eq!(write.status, StatusCode::UNAUTHORIZED, "a POST is not sent twice by the BFF");
        assert_eq!(json(&write)["error"], "retry", "the client is told to send it again");
        assert_eq!(app.refresh_grants().await, 2);
        let again = b.send(call("POST", "/frogs/1/croaks").body(Body::empty()).unwrap()).await;
        assert_eq!(again.status, StatusCode::CREATED);
        assert_eq!(json(&again)["croaks"], 1, "the refused attempt did not count");
        app.assert_no_reuse().await;

        // A session revoked upstream: the renewal is refused and the session ends.
        assert_eq!(
            app.control_post(&format!("/_test/users/{}/revoke", USER.0), serde_json::json!({})).await,
            StatusCode::OK
        );
        let ended = b.send(call("GET", "/frogs").body(Body::empty()).unwrap()).await;
        assert_eq!(ended.status, StatusCode::UNAUTHORIZED);
        assert_eq!(json(&ended)["error"], "session_expired");
        assert!(b.cookie_header().is_empty(), "the session cookie is cleared");
    })
}

#[test]
fn upstream_outages_are_502_or_503_and_big_bodies_413() {
    block_on(async {
        let app = passthrough_app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        let cookie = b.cookie_header();
        let fault = |kind: &str| serde_json::json!({"kind": kind, "endpoint": "/frogs", "count": 1});
        assert_eq!(app.control_post("/_test/faults", fault("server_error")).await, StatusCode::NO_CONTENT);
        let failed = b.send(call("GET", "/frogs").body(Body::empty()).unwrap()).await;
        assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
        assert_eq!(json(&failed)["error"], "bad_gateway");
        assert!(!failed.body.contains("injected"), "the upstream's error body is not passed on");
        assert_eq!(app.control_post("/_test/faults", fault("unavailable")).await, StatusCode::NO_CONTENT);
        let unavailable = b.send(call("GET", "/frogs").body(Body::empty()).unwrap()).await;
        assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            app.control_post("/_test/faults", serde_json::json!({"kind": "down"})).await,
            StatusCode::NO_CONTENT
        );
        let down = b.send(call("GET", "/frogs").body(Body::empty()).unwrap()).await;
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json(&down)["error"], "upstream_unavailable");
        reqwest::Client::new().delete(format!("{}/_test/faults", app.controls)).send().await.unwrap();
        assert_eq!(b.cookie_header(), cookie, "the session survived the outages");

        let big = b
            .send(
                call("POST", "/frogs/1/croaks")
                    .header("content-type", "application/json")
                    .body(Body::from(vec![b'x'; 200 * 1024]))
                    .unwrap(),
            )
            .await;
        assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(app.croaks_received().await, 0);
        assert_eq!(b.send(call("GET", "/frogs").body(Body::empty()).unwrap()).await.status, StatusCode::OK);
    })
}

/// An API that reads the access token from a cookie (seed 002's shape): the passthrough sends
/// exactly that cookie (one `Cookie` header, no Bearer), never the browser's own cookies, and
/// never hands the upstream's `Set-Cookie` back; a token the upstream refuses is renewed once.
#[test]
fn a_cookie_api_gets_its_access_cookie_and_only_that() {
    block_on(async {
        let app = app_with(&[
            ("TOKENLESS_PASSTHROUGH__ALLOW", ALLOW),
            ("TOKENLESS_DEMO__SHAPE", "seed002"),
            ("TOKENLESS_DEMO__ACCESS_TTL_SECS", "600"),
        ])
        .await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        let access = b.session().tokens.access_token.expose().to_string();
        let answer = b
            .send(call("GET", "/frogs/2").header("authorization", "Bearer stolen-elsewhere").body(Body::empty()).unwrap())
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert!(answer.headers.get("set-cookie").is_none(), "the upstream's Set-Cookie is dropped");
        let seen = app.received().await;
        let last = seen.last().unwrap();
        assert_eq!(last["path"], "/frogs/2");
        assert_eq!(header(last, "cookie"), Some(format!("access_token={access}").as_str()));
        let cookie_headers = last["headers"].as_array().unwrap().iter().filter(|h| h[0] == "cookie").count();
        assert_eq!(cookie_headers, 1, "one Cookie header: {last}");
        assert!(!last.to_string().contains("tokenless_session"), "the browser's cookie stays behind");
        assert_eq!(header(last, "authorization"), None, "the browser's Authorization stays behind");

        // Revoked upstream before its time: one renewal through the single flight, then the call.
        let demo = &app.state.demo.as_ref().unwrap().upstream;
        let now = tokenless_upstream::state::now_ms();
        let web = tokenless_upstream::cookie_api::WEB_CLIENT;
        assert!(demo.store().revoke(&access, web, now, demo.signer()).unwrap());
        let after = b.send(call("GET", "/frogs/2").body(Body::empty()).unwrap()).await;
        assert_eq!(after.status, StatusCode::OK, "{}", after.body);
        assert_eq!(app.refresh_grants().await, 1);
        let renewed = b.session().tokens.access_token.expose().to_string();
        assert_ne!(renewed, access);
        let seen = app.received().await;
        assert_eq!(header(seen.last().unwrap(), "cookie"), Some(format!("access_token={renewed}").as_str()));
        app.assert_no_reuse().await;
    })
}
