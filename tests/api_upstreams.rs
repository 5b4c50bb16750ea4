//! The app in front of the seeds' kind of backend: the embedded demo upstream in seed 003's
//! shape (access token in JSON, refresh token in a cookie, 10 s tokens, one sign-in per user)
//! and in seed 002's (both tokens only in cookies, resources read the access cookie), fronted
//! through the `[upstream.http_api]` presets. The same guarantees as for OAuth 2.0: one refresh
//! per fan-out, no reuse, refusal signs out, outages (a 500 included) keep the session, sign-out
//! calls the API's logout, and no token reaches the browser.

mod common;

use axum::http::StatusCode;
use common::*;
use futures::future::join_all;

const COOKIE: &str = "tokenless_session";
const SHAPES: [&str; 2] = ["seed003", "seed002"];

async fn app_in(shape: &str) -> TestApp {
    // Long-lived access tokens: the tests age them in the cookie instead of waiting, so the
    // refresh counts never depend on how slow a debug build is.
    app_with(&[("TOKENLESS_DEMO__SHAPE", shape), ("TOKENLESS_DEMO__ACCESS_TTL_SECS", "600")]).await
}

fn logout_route(shape: &str) -> &'static str {
    if shape == "seed003" {
        "DELETE /auth/logout"
    } else {
        "POST /auth/logout"
    }
}

fn refresh_path(shape: &str) -> &'static str {
    if shape == "seed003" {
        "/auth/refresh-token"
    } else {
        "/auth/refresh"
    }
}

#[test]
fn sign_in_pages_and_the_token_canary() {
    block_on(async {
        for shape in SHAPES {
            let app = app_in(shape).await;
            let b = Browser::new(&app);
            let wrong =
                b.call("login", &[("email", USER.0), ("password", "not the password"), ("next", "/")]).await;
            assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{shape}: {}", wrong.body);
            assert!(wrong.body.contains("InvalidCredentials"), "{shape}: {}", wrong.body);
            b.sign_in(USER).await;
            let frogs = b.get("/frogs").await;
            assert_eq!(frogs.status, StatusCode::OK, "{shape}: {}", frogs.body);
            assert!(frogs.body.contains("Fern"));
            let account = b.get("/account").await;
            assert!(account.body.contains("Dana User"), "{shape}: the profile mapped: {}", account.body);
            let tokens = app.tokens_of(USER.0).await;
            assert!(!tokens.is_empty());
            for page in [&frogs.body, &account.body, &b.get("/").await.body] {
                for t in &tokens {
                    assert!(!page.contains(t.as_str()), "{shape}: a token reached a page");
                }
                assert!(!page.contains("eyJ"), "{shape}: something JWT-like reached a page");
            }
            for t in &tokens {
                assert!(!b.cookie_header().contains(t.as_str()), "{shape}: the cookie is sealed");
            }
            // The upstream's own cookies (refresh_token, access_token) never reach the browser.
            for c in b.received.lock().unwrap().iter() {
                assert!(c.name().ends_with(COOKIE), "{shape}: only Tokenless's cookie: {}", c.name());
            }
        }
    })
}

#[test]
fn fan_out_of_an_expired_session_is_one_refresh_and_late_cookies_no_reuse() {
    block_on(async {
        for shape in SHAPES {
            let app = app_in(shape).await;
            let b = Browser::new(&app);
            b.sign_in(USER).await;
            b.expire_access_token();
            let expired = b.jar.lock().unwrap()[COOKIE].clone();
            let answers = join_all((0..100).map(|i| {
                let app = &app;
                let expired = expired.clone();
                async move {
                    let tab = Browser::new(app);
                    tab.set_cookie(COOKIE, &expired);
                    let answer =
                        if i % 2 == 0 { tab.get("/frogs").await } else { tab.call("frogs", &[]).await };
                    (tab, answer)
                }
            }))
            .await;
            for (tab, answer) in &answers {
                assert_eq!(answer.status, StatusCode::OK, "{shape}: {}", answer.body);
                assert_eq!(tab.session().generation, 2);
            }
            assert_eq!(app.refresh_grants().await, 1, "{shape}: one refresh for 100 requests");
            // The pre-rotation cookie again, later: the newest tokens, no reuse.
            let late = Browser::new(&app);
            late.set_cookie(COOKIE, &expired);
            assert_eq!(late.get("/frogs").await.status, StatusCode::OK);
            assert_eq!(late.session().generation, 2);
            assert_eq!(app.refresh_grants().await, 1);
            app.assert_no_reuse().await;
        }
    })
}

#[test]
fn a_refused_refresh_signs_out_with_the_return_path() {
    block_on(async {
        for shape in SHAPES {
            let app = app_in(shape).await;
            let b = Browser::new(&app);
            b.sign_in(USER).await;
            app.control_post(&format!("/_test/users/{}/revoke", USER.0), serde_json::json!({})).await;
            b.expire_access_token();
            let page = b.get("/frogs").await;
            assert!(page.status.is_redirection(), "{shape}: {page:?}");
            assert_eq!(page.location(), Some("/login?next=%2Ffrogs&reason=expired"), "{shape}");
            assert!(b.jar.lock().unwrap().get(COOKIE).is_none(), "{shape}: the cookie is deleted");
        }
    })
}

#[test]
fn an_outage_or_a_500_during_refresh_keeps_the_session() {
    block_on(async {
        for shape in SHAPES {
            for kind in ["down", "server_error"] {
                let app = app_in(shape).await;
                let b = Browser::new(&app);
                b.sign_in(USER).await;
                b.expire_access_token();
                let cookie = b.cookie_header();
                let fault = serde_json::json!({"kind": kind, "endpoint": refresh_path(shape)});
                assert_eq!(app.control_post("/_test/faults", fault).await, StatusCode::NO_CONTENT);
                let page = b.get("/frogs").await;
                assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{shape} {kind}: {}", page.body);
                assert_eq!(b.cookie_header(), cookie, "{shape} {kind}: the cookie is unchanged");
                reqwest::Client::new().delete(format!("{}/_test/faults", app.controls)).send().await.unwrap();
                assert_eq!(b.get("/frogs").await.status, StatusCode::OK, "{shape} {kind}: recovered");
                assert_eq!(app.refresh_grants().await, 1);
                app.assert_no_reuse().await;
            }
        }
    })
}

#[test]
fn sign_out_calls_the_apis_logout_and_ends_the_sign_in() {
    block_on(async {
        for shape in SHAPES {
            let app = app_in(shape).await;
            let b = Browser::new(&app);
            b.sign_in(USER).await;
            let stolen = b.jar.lock().unwrap()[COOKIE].clone();
            let out = b.call("logout", &[]).await;
            assert!(out.status.is_success(), "{shape}: {out:?}");
            let counters = app.counters().await;
            assert_eq!(counters["requests"][logout_route(shape)], 1, "{shape}: {counters}");
            assert_eq!(counters["revocations"], 1, "{shape}: the sign-in ended upstream: {counters}");
            // The cookie from before sign-out, replayed after its access token aged: refused.
            let replay = Browser::new(&app);
            replay.set_cookie(COOKIE, &stolen);
            replay.expire_access_token();
            assert!(replay.get("/frogs").await.status.is_redirection(), "{shape}");
            app.assert_no_reuse().await;
        }
    })
}

#[test]
fn seed003_registration_signs_in_on_the_spot() {
    block_on(async {
        let app = app_in("seed003").await;
        let b = Browser::new(&app);
        let form = [
            ("name", "New Comer"),
            ("email", "new@example.com"),
            ("password", "long enough pw"),
            ("next", "/"),
        ];
        let ok = b.call("register", &form).await;
        assert!(ok.status.is_success(), "{ok:?}");
        assert!(b.get("/account").await.body.contains("New Comer"));
        let counters = app.counters().await;
        assert_eq!(counters["grants"]["password"], 1, "the registration's own tokens: {counters}");
        assert!(counters["requests"].get("POST /auth/login").is_none(), "no second sign-in: {counters}");
        let again = Browser::new(&app).call("register", &form).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
        assert!(again.body.contains("EmailTaken"));
    })
}

#[test]
fn seed003_one_sign_in_per_user_and_a_refresh_retires_the_old_access_token() {
    block_on(async {
        let app = app_in("seed003").await;
        let first = Browser::new(&app);
        first.sign_in(USER).await;
        let old_access = first.session().tokens.access_token;
        first.expire_access_token();
        assert_eq!(first.get("/frogs").await.status, StatusCode::OK);
        // The retired access token, used directly: refused by the API.
        let base = app.state.demo.as_ref().unwrap().base_url();
        let direct = reqwest::Client::new()
            .get(format!("{base}/frogs"))
            .bearer_auth(old_access.expose())
            .send()
            .await
            .unwrap();
        assert_eq!(direct.status().as_u16(), 401);
        // Another sign-in of the same user ends the first (the backend keeps one per user).
        Browser::new(&app).sign_in(USER).await;
        first.expire_access_token();
        assert!(first.get("/frogs").await.status.is_redirection());
        app.assert_no_reuse().await;
    })
}

#[test]
fn seed002_roles_come_through_and_registration_is_closed() {
    block_on(async {
        let app = app_in("seed002").await;
        let admin = Browser::new(&app);
        admin.sign_in(ADMIN).await;
        let page = admin.get("/admin").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("Ada Admin"));
        let user = Browser::new(&app);
        user.sign_in(USER).await;
        assert_eq!(user.get("/admin").await.status, StatusCode::FORBIDDEN);
        let form = [("name", "N"), ("email", "n@example.com"), ("password", "long enough pw"), ("next", "/")];
        let closed = Browser::new(&app).call("register", &form).await;
        assert_eq!(closed.status, StatusCode::FORBIDDEN, "{closed:?}");
        assert!(closed.body.contains("RegistrationClosed"));
    })
}
