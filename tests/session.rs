//! Sign-in, sign-up, sign-out, protected pages, return paths, cross-site refusals, and hostile
//! cookies, against the embedded demo upstream. None may answer 500 or panic.
#![cfg(feature = "ssr")]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{app, app_with, block_on, Browser, ADMIN, ORIGIN, USER};
use tokenless_bff::now;
use tower_cookies::cookie::SameSite;

const COOKIE: &str = "tokenless_session";

/// Every Set-Cookie the browser received carries the policy's attributes.
fn assert_every_cookie_follows_the_policy(b: &Browser) {
    let received = b.received.lock().unwrap();
    assert!(!received.is_empty());
    for c in received.iter() {
        assert!(c.name().starts_with(COOKIE), "{c}");
        assert_eq!(c.http_only(), Some(true), "{c}");
        assert_eq!(c.path(), Some("/"), "{c}");
        assert_eq!(c.same_site(), Some(SameSite::Lax), "{c}");
        assert_eq!(c.domain(), None, "{c}");
        assert!(c.max_age().is_some(), "{c}");
    }
}

#[test]
fn sign_in_sets_one_sealed_httponly_cookie_and_shows_frogs_without_tokens() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        let answer = b.sign_in(USER).await;
        let cookies = answer.set_cookies();
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        let c = &cookies[0];
        assert_eq!(c.name(), COOKIE);
        assert_eq!(c.http_only(), Some(true));
        assert_eq!(c.path(), Some("/"));
        assert_eq!(c.same_site(), Some(SameSite::Lax));
        assert_eq!(c.domain(), None);
        assert!(c.max_age().is_some_and(|a| a.whole_seconds() > 0));

        let frogs = b.get("/frogs").await;
        assert_eq!(frogs.status, StatusCode::OK, "{}", frogs.body);
        assert!(frogs.body.contains("data-testid=\"frogs\""), "{}", frogs.body);
        assert!(frogs.body.contains("Fern"), "the upstream's frogs are rendered on the server");
        let nav = frogs.body.split("<nav").nth(1).and_then(|n| n.split("</nav>").next()).expect("a nav");
        assert!(nav.contains("Dana User"), "the header shows who is signed in, in place: {nav}");
        assert_eq!(frogs.headers["cache-control"], "no-store");

        let tokens = app.tokens_of(USER.0).await;
        assert!(!tokens.is_empty());
        for page in [&frogs.body, &b.get("/account").await.body, &b.get("/").await.body] {
            for t in &tokens {
                assert!(!page.contains(t.as_str()), "a token reached a page");
            }
            assert!(!page.contains("eyJ"), "something JWT-like reached a page");
        }
        let me = b.call("who_am_i", &[]).await;
        assert_eq!(me.status, StatusCode::OK);
        assert!(me.body.contains("user@example.com") && !me.body.contains("eyJ"), "{}", me.body);
        for t in &tokens {
            assert!(!b.cookie_header().contains(t.as_str()), "the cookie is sealed");
        }
        app.assert_no_reuse().await;
    })
}

#[test]
fn wrong_password_and_unknown_email_get_the_same_answer() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        let wrong = b.call("login", &[("email", USER.0), ("password", "nope-nope"), ("next", "/")]).await;
        let unknown = b
            .call("login", &[("email", "nobody@example.com"), ("password", "nope-nope"), ("next", "/")])
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.status, unknown.status);
        assert_eq!(wrong.body, unknown.body);
        assert!(wrong.body.contains("InvalidCredentials"), "{}", wrong.body);
        assert!(wrong.set_cookies().is_empty());
        let empty = b.call("login", &[("email", " "), ("password", ""), ("next", "/")]).await;
        assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            empty.body.contains("Enter your email address.") && empty.body.contains("Enter your password.")
        );
        let malformed = b.call("login", &[("email", USER.0)]).await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST, "{}", malformed.body);
        app.assert_no_reuse().await;
    })
}

#[test]
fn without_javascript_forms_redirect_with_the_result() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        let failed = b
            .form_post(
                "login",
                &[("email", USER.0), ("password", "wrong-one"), ("next", "/frogs")],
                "/login?next=%2Ffrogs",
            )
            .await;
        assert_eq!(failed.status, StatusCode::FOUND);
        let back = failed.location().unwrap().to_string();
        assert!(
            back.starts_with(&format!("{ORIGIN}/login?next=%2Ffrogs")) && back.contains("__err="),
            "{back}"
        );
        let page = b.follow(&failed).await;
        assert!(page.body.contains("Wrong email or password."), "the error is on the page: {}", page.body);
        // The same URL from a link on another site (or typed): the error is dropped, not shown.
        let linked = b
            .send(
                Request::get(back.trim_start_matches(ORIGIN))
                    .header("sec-fetch-site", "cross-site")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(linked.status, StatusCode::SEE_OTHER);
        assert_eq!(linked.location(), Some("/login?next=%2Ffrogs"));

        let ok = b
            .form_post("login", &[("email", USER.0), ("password", USER.1), ("next", "/frogs")], "/login")
            .await;
        assert_eq!(ok.status, StatusCode::FOUND);
        assert_eq!(ok.location(), Some("/frogs"));
        assert_eq!(b.get("/frogs").await.status, StatusCode::OK);

        let out = b.form_post("logout", &[], "/frogs").await;
        assert_eq!(out.status, StatusCode::FOUND);
        assert_eq!(out.location(), Some("/"));
        assert_eq!(b.get("/frogs").await.status, StatusCode::SEE_OTHER);
        app.assert_no_reuse().await;
    })
}

#[test]
fn protected_pages_redirect_to_sign_in_with_the_return_path() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        for (path, next) in [
            ("/frogs", "%2Ffrogs"),
            ("/admin", "%2Fadmin"),
            ("/account", "%2Faccount"),
            ("/frogs?sort=name", "%2Ffrogs%3Fsort%3Dname"),
            // A form error a link put in the URL is not carried to where sign-in lands.
            ("/frogs?__err=eyJ4IjoxfQ&sort=name&%5F%5Fpath=%2Fapi%2Flogin", "%2Ffrogs%3Fsort%3Dname"),
            ("/account?__err=eyJ4IjoxfQ", "%2Faccount"),
        ] {
            let answer = b.get(path).await;
            assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
            assert_eq!(answer.location(), Some(format!("/login?next={next}").as_str()), "{path}");
        }
        // Server functions answer 401, never a redirect.
        let frogs = b.call("frogs", &[]).await;
        assert_eq!(frogs.status, StatusCode::UNAUTHORIZED);
        assert!(frogs.body.contains("Unauthorized"));
        assert_eq!(b.get("/").await.status, StatusCode::OK);
        assert_eq!(b.get("/login").await.status, StatusCode::OK);
        app.assert_no_reuse().await;
    })
}

#[test]
fn next_is_followed_only_to_local_paths() {
    block_on(async {
        let app = app().await;
        for (next, expected) in [
            ("/x", "/x"),
            ("/frogs?a=1", "/frogs?a=1"),
            ("", "/"),
            ("//evil.example", "/"),
            ("https://evil.example", "/"),
            ("/\\evil.example", "/"),
            ("/%2F%2Fevil.example", "/"),
            ("/%5Cevil.example", "/"),
            ("%2F%2Fevil.example", "/"),
            ("/%252F%252Fevil.example", "/"),
            ("javascript:alert(1)", "/"),
            ("/\r\nSet-Cookie: a=b", "/"),
            // Never lands on a page with a form error in its URL: it would look like ours.
            ("/login?__err=eyJ4IjoxfQ&next=%2F", "/login?next=%2F"),
        ] {
            let b = Browser::new(&app);
            let answer = b
                .form_post("login", &[("email", USER.0), ("password", USER.1), ("next", next)], "/login")
                .await;
            assert_eq!(answer.status, StatusCode::FOUND, "{next:?}");
            assert_eq!(answer.location(), Some(expected), "{next:?}");
        }
        app.assert_no_reuse().await;
    })
}

#[test]
fn cross_site_state_changes_are_refused() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        let post = |headers: &[(&str, &str)]| {
            let mut r =
                Request::post("/api/logout").header("content-type", "application/x-www-form-urlencoded");
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.body(Body::empty()).unwrap()
        };
        for headers in [
            vec![("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")],
            vec![("sec-fetch-site", "same-site"), ("origin", "http://sub.127.0.0.1:3000")],
            vec![("sec-fetch-site", "cross-site"), ("origin", ORIGIN)],
            vec![("origin", "https://evil.example")],
            vec![("origin", "null")],
        ] {
            let answer = b.send(post(&headers)).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{headers:?}");
            assert!(answer.body.contains("CrossSite"), "{}", answer.body);
            assert!(answer.set_cookies().is_empty(), "nothing changed: {headers:?}");
        }
        assert_eq!(b.get("/frogs").await.status, StatusCode::OK, "still signed in");
        assert_eq!(app.counters().await["revocations"], 0);
        // Same origin, a typed-in request, and a client that is not a browser all pass.
        for headers in [vec![("sec-fetch-site", "same-origin")], vec![("sec-fetch-site", "none")], vec![]] {
            b.sign_in(USER).await;
            let answer = b.send(post(&headers)).await;
            assert_eq!(answer.status, StatusCode::OK, "{headers:?}: {}", answer.body);
        }
        // A cross-site GET navigation is fine (SameSite=Lax keeps the session on it).
        let nav = b
            .send(Request::get("/").header("sec-fetch-site", "cross-site").body(Body::empty()).unwrap())
            .await;
        assert_eq!(nav.status, StatusCode::OK);
        app.assert_no_reuse().await;
    })
}

#[test]
fn sign_out_revokes_upstream_and_clears_every_cookie() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        assert!(b.get("/").await.headers.get("strict-transport-security").is_none(), "no HSTS over http");
        let before = app.counters().await["revocations"].as_u64().unwrap();
        let out = b.call("logout", &[]).await;
        assert_eq!(out.status, StatusCode::OK, "{}", out.body);
        let cleared = out.set_cookies();
        assert!(cleared.iter().any(|c| c.name() == COOKIE && c.max_age().is_some_and(|a| a.is_zero())));
        assert!(cleared.iter().all(|c| c.http_only() == Some(true) && c.path() == Some("/")));
        assert_eq!(app.counters().await["revocations"].as_u64().unwrap(), before + 1);
        assert!(b.cookie_header().is_empty());
        assert_eq!(b.get("/frogs").await.status, StatusCode::SEE_OTHER);
        assert_every_cookie_follows_the_policy(&b);
        app.assert_no_reuse().await;
    })
}

#[test]
fn admin_page_is_403_for_users_and_open_to_admins() {
    block_on(async {
        let app = app().await;
        let user = Browser::new(&app);
        user.sign_in(USER).await;
        let page = user.get("/admin").await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert!(page.body.contains("data-testid=\"forbidden\""), "{}", page.body);
        assert_eq!(user.call("admin_stats", &[]).await.status, StatusCode::FORBIDDEN);

        let admin = Browser::new(&app);
        admin.sign_in(ADMIN).await;
        let page = admin.get("/admin").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("data-testid=\"admin-stats\""), "{}", page.body);
        app.assert_no_reuse().await;
    })
}

#[test]
fn register_signs_in_and_reports_each_problem() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        let form = [
            ("name", "Fresh Frog"),
            ("email", "fresh@example.com"),
            ("password", "long-enough-pw"),
            ("next", "/frogs"),
        ];
        let ok = b.form_post("register", &form, "/register").await;
        assert_eq!(ok.status, StatusCode::FOUND, "{}", ok.body);
        assert_eq!(ok.location(), Some("/frogs"));
        assert!(b.get("/frogs").await.body.contains("Fresh Frog"));

        let again = Browser::new(&app).call("register", &form).await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        assert!(again.body.contains("EmailTaken"));

        let bad = Browser::new(&app)
            .call(
                "register",
                &[("name", "X"), ("email", "not-an-email"), ("password", "short"), ("next", "")],
            )
            .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
        assert!(bad.body.contains("\"email\"") && bad.body.contains("\"password\""), "{}", bad.body);
        let empty = Browser::new(&app)
            .call("register", &[("name", ""), ("email", ""), ("password", ""), ("next", "")])
            .await;
        assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(empty.body.contains("Enter your name."));
        app.assert_no_reuse().await;
    })
}

#[test]
fn hostile_cookies_mean_signed_out_never_a_500() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        let good = b.jar.lock().unwrap()[COOKIE].clone();
        let mut flipped = good.clone().into_bytes();
        let i = flipped.len() / 2;
        flipped[i] = if flipped[i] == b'a' { b'b' } else { b'a' };
        let cases = vec![
            ("tampered", String::from_utf8(flipped).unwrap()),
            ("truncated", good[..good.len() / 2].to_string()),
            ("garbage", "%%%garbage%%%".to_string()),
            ("empty", String::new()),
            ("huge", "A".repeat(3_900)),
            ("chunk count without chunks", format!("9.{good}")),
        ];
        for (what, value) in cases {
            let evil = Browser::new(&app);
            evil.set_cookie(COOKIE, &value);
            let page = evil.get("/frogs").await;
            assert_eq!(page.status, StatusCode::SEE_OTHER, "{what}");
            let home = evil.get("/").await;
            assert_eq!(home.status, StatusCode::OK, "{what}");
            assert_eq!(evil.call("frogs", &[]).await.status, StatusCode::UNAUTHORIZED, "{what}");
        }
        // The cookie moved under another name does not open either.
        let moved = Browser::new(&app);
        moved.set_cookie("tokenless_session.1", &good);
        moved.set_cookie("other", &good);
        assert_eq!(moved.get("/frogs").await.status, StatusCode::SEE_OTHER);
        // Many cookies at once.
        let many = Browser::new(&app);
        for i in 0..40 {
            many.set_cookie(&format!("{COOKIE}.{i}"), &"B".repeat(100));
        }
        assert_eq!(many.get("/").await.status, StatusCode::OK);
        app.assert_no_reuse().await;
    })
}

#[test]
fn replaying_a_signed_out_cookie_does_not_sign_in() {
    block_on(async {
        // Access tokens always inside the skew window: every request refreshes first.
        let app = app_with(&[("TOKENLESS_DEMO__ACCESS_TTL_SECS", "1")]).await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        let stolen = b.jar.lock().unwrap()[COOKIE].clone();
        b.call("logout", &[]).await;
        let replay = Browser::new(&app);
        replay.set_cookie(COOKIE, &stolen);
        let page = replay.get("/frogs").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.location(), Some("/login?next=%2Ffrogs&reason=expired"));
        // Refused, but not deleted: in a real browser the cookie of that name may already be a
        // new sign-in's (another tab), which a deletion would sign out.
        assert!(page.set_cookies().iter().all(|c| c.name() != COOKIE), "{:?}", page.set_cookies());
        assert_eq!(replay.get("/frogs").await.status, StatusCode::SEE_OTHER, "refused every time");
        app.assert_no_reuse().await;
    })
}

#[test]
fn an_expiring_access_token_is_refreshed_before_the_page_renders() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        // Aged in the cookie rather than waited for: a token that expires on the upstream
        // between our check and our call would add a (correct) reactive refresh and make the
        // count depend on timing.
        b.expire_access_token();
        let first = b.jar.lock().unwrap()[COOKIE].clone();
        let page = b.get("/frogs").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("Fern"));
        assert_eq!(page.set_cookies().len(), 1, "the refreshed session went out with the page");
        let second = b.jar.lock().unwrap()[COOKIE].clone();
        assert_ne!(first, second);
        assert_eq!(app.refresh_grants().await, 1);
        assert_eq!(b.get("/frogs").await.status, StatusCode::OK);
        assert_eq!(app.refresh_grants().await, 1, "the refreshed token is used as it is");
        assert_every_cookie_follows_the_policy(&b);
        app.assert_no_reuse().await;
    })
}

#[test]
fn upstream_down_is_a_clear_error_not_a_500_and_keeps_the_session() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        let cookie = b.cookie_header();
        assert_eq!(
            app.control_post("/_test/faults", serde_json::json!({"kind": "unavailable"})).await,
            StatusCode::NO_CONTENT
        );
        let page = b.get("/frogs").await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(page.body.contains("data-testid=\"unavailable\""), "{}", page.body);
        let call = b.call("frogs", &[]).await;
        assert_eq!(call.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(call.body.contains("UpstreamUnavailable"));
        let login =
            Browser::new(&app).call("login", &[("email", USER.0), ("password", USER.1), ("next", "/")]).await;
        assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b.cookie_header(), cookie, "the session cookie is untouched");
        let cleared =
            reqwest::Client::new().delete(format!("{}/_test/faults", app.controls)).send().await.unwrap();
        assert!(cleared.status().is_success());
        assert_eq!(b.get("/frogs").await.status, StatusCode::OK, "back without signing in again");
        app.assert_no_reuse().await;
    })
}

#[test]
fn on_https_the_cookie_is_secure_and_host_prefixed() {
    block_on(async {
        let app = app_with(&[("TOKENLESS_SITE__ORIGIN", "https://tokenless.example")]).await;
        let b = Browser::new(&app);
        let answer = b.sign_in(USER).await;
        let c = &answer.set_cookies()[0];
        assert_eq!(c.name(), "__Host-tokenless_session");
        assert_eq!(c.secure(), Some(true));
        assert_eq!(c.path(), Some("/"));
        assert_eq!(c.domain(), None);
        let page = b.get("/frogs").await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.headers.get("strict-transport-security").unwrap(), "max-age=31536000", "HSTS on https");
        // The origin check uses the configured origin, not the Host header.
        let from_http = b
            .send(
                Request::post("/api/logout")
                    .header("origin", ORIGIN)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(from_http.status, StatusCode::FORBIDDEN);
        let from_https = b
            .send(
                Request::post("/api/logout")
                    .header("origin", "https://tokenless.example")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(from_https.status, StatusCode::OK);
        app.assert_no_reuse().await;
    })
}

/// Value of the `<input>` whose id is `id` in `html`, as rendered (attributes escaped).
fn input_value(html: &str, id: &str) -> Option<String> {
    let tag = html.split(&format!("id=\"{id}\"")).nth(1)?.split('>').next()?;
    Some(tag.split("value=\"").nth(1)?.split('"').next()?.to_string())
}

#[test]
fn a_failed_form_post_without_javascript_keeps_what_was_typed() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        let form_cookie = format!("{COOKIE}_form");

        // Wrong password: back to the form with the email filled in, never the password.
        let failed = b
            .form_post("login", &[("email", " user@example.com "), ("password", "hunter2-wrong"), ("next", "/")], "/login")
            .await;
        assert_eq!(failed.status, StatusCode::FOUND);
        let kept = failed.set_cookies().into_iter().find(|c| c.name() == form_cookie).expect("the input is kept");
        assert_eq!(kept.http_only(), Some(true));
        assert!(kept.max_age().is_some_and(|a| a.whole_seconds() == 60), "{kept}");
        let page = b.follow(&failed).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(input_value(&page.body, "field-email").as_deref(), Some("user@example.com"));
        assert_eq!(input_value(&page.body, "field-password"), None);
        assert!(!page.body.contains("hunter2-wrong"));
        assert!(page.body.contains("Wrong email or password."));
        // Taken once: the cookie is deleted and a reload shows an empty form.
        assert!(page.set_cookies().iter().any(|c| c.name() == form_cookie && c.value().is_empty()));
        assert_eq!(input_value(&b.get("/login").await.body, "field-email"), None);

        // Registration keeps name and email; markup in them stays text.
        let hostile = "\"><script>alert(1)</script>";
        let failed = b
            .form_post(
                "register",
                &[("name", hostile), ("email", USER.0), ("password", "short"), ("next", "/")],
                "/register",
            )
            .await;
        assert_eq!(failed.status, StatusCode::FOUND);
        let page = b.follow(&failed).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains("<script>alert(1)"), "escaped");
        assert_eq!(input_value(&page.body, "field-email").as_deref(), Some(USER.0));
        assert!(input_value(&page.body, "field-name").is_some_and(|v| v.contains("&quot;&gt;") || v.contains("&quot;>")));
        // The login form does not show what the register form kept.
        let other = b
            .form_post("register", &[("name", "Kept"), ("email", "x@example.com"), ("password", ""), ("next", "/")], "/register")
            .await;
        assert_eq!(other.status, StatusCode::FOUND);
        assert_eq!(input_value(&b.get("/login").await.body, "field-email"), None);

        // Oversized input: cut to the field's length, never a 500, the cookie fits.
        let long = format!("{}@example.com", "a".repeat(20_000));
        let failed = b.form_post("login", &[("email", &long), ("password", "x"), ("next", "/")], "/login").await;
        assert_eq!(failed.status, StatusCode::FOUND);
        let kept = failed.set_cookies().into_iter().find(|c| c.name() == form_cookie).expect("kept, cut");
        assert!(kept.value().len() < 3800);
        let page = b.follow(&failed).await;
        assert_eq!(input_value(&page.body, "field-email").map(|v| v.len()), Some(254));

        // Tampered or foreign: ignored and deleted, the page renders.
        let moved = tokenless_bff::KeyRing::parse(common::TEST_KEYS).unwrap().seal(COOKIE, b"{}");
        for value in ["garbage", "AAAA", &moved] {
            b.set_cookie(&form_cookie, value);
            let page = b.get("/login").await;
            assert_eq!(page.status, StatusCode::OK);
            assert_eq!(input_value(&page.body, "field-email"), None);
        }

        // The hydrated client's failed call keeps its own input: no cookie.
        let call = b.call("login", &[("email", USER.0), ("password", "wrong"), ("next", "/")]).await;
        assert_eq!(call.status, StatusCode::UNAUTHORIZED);
        assert!(call.set_cookies().iter().all(|c| c.name() != form_cookie));
        app.assert_no_reuse().await;
    })
}

/// Hardening finding 7: signing in over an existing session ends the old one (OWASP: invalidate
/// on re-authentication), revoked upstream and refused here.
#[test]
fn signing_in_again_ends_the_previous_session() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        let old = b.jar.lock().unwrap()[COOKIE].clone();
        let old_refresh = b.session().tokens.refresh_token.unwrap().expose().to_string();
        let before = app.counters().await["revocations"].as_u64().unwrap();
        b.sign_in(ADMIN).await;
        assert_eq!(app.counters().await["revocations"].as_u64().unwrap(), before + 1, "old sign-in revoked");
        assert_eq!(b.session().profile.email, ADMIN.0);
        // A request of another tab, sent with the old cookie before the new one arrived, is
        // refused and does not delete the cookie (which is the new session's by now).
        let replay = Browser::new(&app);
        replay.set_cookie(COOKIE, &old);
        let late = replay.get("/frogs").await;
        assert_eq!(late.status, StatusCode::SEE_OTHER, "the old cookie is refused");
        assert!(late.set_cookies().iter().all(|c| c.name() != COOKIE), "{:?}", late.set_cookies());
        // And upstream: the old refresh token no longer refreshes.
        let base = app.state.demo.as_ref().unwrap().base_url();
        let answer = reqwest::Client::new()
            .post(format!("{base}/oauth/token"))
            .basic_auth("tokenless", Some("tokenless-demo-secret"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", old_refresh.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 400, "the old refresh token is dead upstream");
        assert_eq!(b.get("/admin").await.status, StatusCode::OK, "the new session works");
    })
}

/// Hardening finding 11: access tokens that live no longer than the refresh skew (seed 003's
/// 10-second tokens; the default skew is 30 s) are not refreshed on every request.
#[test]
fn short_lived_access_tokens_are_not_refreshed_on_every_request() {
    block_on(async {
        let app = app_with(&[("TOKENLESS_DEMO__ACCESS_TTL_SECS", "10")]).await;
        let b = Browser::new(&app);
        b.sign_in(ADMIN).await;
        for path in ["/frogs", "/account", "/admin", "/frogs"] {
            let page = b.get(path).await;
            assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        }
        assert_eq!(app.refresh_grants().await, 0, "a token just issued is never refreshed");
        // In the last half of its life it is.
        b.edit_session(|s| {
            s.tokens.access_issued_at = now() - 6;
            s.tokens.access_expires_at = now() + 4;
        });
        assert_eq!(b.get("/frogs").await.status, StatusCode::OK);
        assert_eq!(app.refresh_grants().await, 1);
        app.assert_no_reuse().await;
    })
}

/// Hardening finding 2: a form error smuggled in with percent-encoded keys is dropped too
/// (Leptos decodes the keys before reading them).
#[test]
fn form_errors_with_percent_encoded_keys_are_dropped() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        let forged = "/login?next=%2Ffrogs&%5F%5Fpath=%2Fapi%2Flogin&%5F%5Ferr=eyJJbnZhbGlkQ3JlZGVudGlhbHMiOm51bGx9";
        let answer = b
            .send(
                axum::http::Request::get(forged)
                    .header("accept", "text/html")
                    .header("sec-fetch-site", "cross-site")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        assert_eq!(answer.location(), Some("/login?next=%2Ffrogs"));
    })
}

/// Hardening finding 6: a sign-out whose revocation fails on an outage still signs out here,
/// tells the user, and the revocation is retried until the upstream confirms it.
#[test]
fn a_sign_out_during_an_outage_is_revoked_later_and_the_user_is_told() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        b.sign_in(USER).await;
        let old = b.jar.lock().unwrap()[COOKIE].clone();
        let before = app.counters().await["revocations"].as_u64().unwrap();
        let fault = serde_json::json!({"kind": "unavailable", "endpoint": "/oauth/revoke", "count": 1});
        assert_eq!(app.control_post("/_test/faults", fault).await, StatusCode::NO_CONTENT);
        let out = b.form_post("logout", &[], "/").await;
        assert_eq!(out.status, StatusCode::FOUND, "{}", out.body);
        assert_eq!(out.location(), Some("/login?reason=signout_pending"));
        let page = b.follow(&out).await;
        assert!(page.body.contains("data-testid=\"signout-pending\""), "{}", page.body);
        assert!(b.cookie_header().is_empty(), "signed out here at once");
        let replay = Browser::new(&app);
        replay.set_cookie(COOKIE, &old);
        assert_eq!(replay.get("/frogs").await.status, StatusCode::SEE_OTHER);
        // Retried in the background (first after 2 s): wait for the upstream to see it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while app.counters().await["revocations"].as_u64().unwrap() == before {
            assert!(std::time::Instant::now() < deadline, "the revocation was never retried");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(app.state.sessions.refresher().counts().revocations_abandoned, 0);
    })
}

/// A sign-in the upstream accepted but whose profile cannot be read gives no session, and the
/// sign-in is ended upstream too (revoked), not left alive until its tokens expire.
#[test]
fn a_sign_in_whose_profile_fails_is_revoked_upstream() {
    block_on(async {
        let app = app().await;
        let b = Browser::new(&app);
        let before = app.counters().await["revocations"].as_u64().unwrap();
        let fault = serde_json::json!({"kind": "server_error", "endpoint": "/userinfo", "count": 1});
        assert_eq!(app.control_post("/_test/faults", fault).await, StatusCode::NO_CONTENT);
        let answer = b.call("login", &[("email", USER.0), ("password", USER.1), ("next", "/")]).await;
        assert!(!answer.status.is_server_error() || answer.status == StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
        assert!(!answer.status.is_success(), "no session without a profile: {answer:?}");
        assert!(b.cookie_header().is_empty(), "no cookie");
        assert_eq!(app.counters().await["revocations"].as_u64().unwrap(), before + 1, "the sign-in was revoked");
        // The next attempt works.
        b.sign_in(USER).await;
    })
}
