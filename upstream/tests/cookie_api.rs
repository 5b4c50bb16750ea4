//! The demo upstream in the seeds' shapes, over real HTTP on loopback, as a BFF (or a naive
//! client) sees it: where the tokens come back and with which cookie flags, rotation, reuse, the
//! 500 for a client mistake, logout's demands, and the error bodies.

use reqwest::header::SET_COOKIE;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokenless_upstream::{spawn, RunningUpstream, Shape, UpstreamConfig};

const USER: (&str, &str) = ("user@example.com", "frogs-are-green");

async fn start(shape: Shape) -> RunningUpstream {
    let (access_ttl, refresh_ttl) = shape.lifetimes();
    spawn(UpstreamConfig { shape, access_ttl, refresh_ttl, ..UpstreamConfig::for_tests() })
        .await
        .expect("starts")
}

fn url(u: &RunningUpstream, path: &str) -> String {
    format!("{}{path}", u.base_url())
}

/// The Set-Cookie lines of an answer, by cookie name.
fn set_cookies(r: &reqwest::Response) -> Vec<(String, String)> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .map(|line| (line.split('=').next().unwrap().to_string(), line))
        .collect()
}

fn cookie_value(line: &str) -> String {
    line.split(';').next().unwrap().split_once('=').unwrap().1.to_string()
}

async fn login(c: &Client, u: &RunningUpstream, who: (&str, &str)) -> reqwest::Response {
    c.post(url(u, "/auth/login")).json(&json!({"email": who.0, "password": who.1})).send().await.unwrap()
}

#[tokio::test]
async fn seed003_tokens_rotation_reuse_and_its_errors() {
    let u = start(Shape::Seed003).await;
    let c = Client::new();
    let wrong = login(&c, &u, (USER.0, "nope")).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json::<Value>().await.unwrap()["error"]["status"], 401);

    let r = login(&c, &u, USER).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 1, "only the refresh token is a cookie: {cookies:?}");
    let (name, line) = &cookies[0];
    assert_eq!(name, "refresh_token");
    assert!(line.contains("HttpOnly") && line.contains("Max-Age=3600") && line.contains("Path=/"), "{line}");
    let r1 = cookie_value(line);
    let body: Value = r.json().await.unwrap();
    let a1 = body["accessToken"].as_str().unwrap().to_string();
    let me: Value = c.get(url(&u, "/me")).bearer_auth(&a1).send().await.unwrap().json().await.unwrap();
    assert_eq!(me, json!({"name": "Dana User", "email": "user@example.com"}));

    // The refresh reads only the cookie; without it, Express answers 500.
    let bare = c.post(url(&u, "/auth/refresh-token")).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(bare.json::<Value>().await.unwrap()["error"]["message"], "jwt must be provided");
    let refreshed = c
        .post(url(&u, "/auth/refresh-token"))
        .header("cookie", format!("refresh_token={r1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let r2 = cookie_value(&set_cookies(&refreshed)[0].1);
    assert_ne!(r1, r2, "rotated");
    let a2 = refreshed.json::<Value>().await.unwrap()["accessToken"].as_str().unwrap().to_string();
    assert_eq!(
        c.get(url(&u, "/frogs")).bearer_auth(&a1).send().await.unwrap().status(),
        401,
        "the old access token is retired"
    );
    assert_eq!(c.get(url(&u, "/frogs")).bearer_auth(&a2).send().await.unwrap().status(), 200);

    // R1 again: theft; the family goes.
    let reuse = c
        .post(url(&u, "/auth/refresh-token"))
        .header("cookie", format!("refresh_token={r1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), StatusCode::FORBIDDEN);
    assert_eq!(c.get(url(&u, "/frogs")).bearer_auth(&a2).send().await.unwrap().status(), 401);
    let late = c
        .post(url(&u, "/auth/refresh-token"))
        .header("cookie", format!("refresh_token={r2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::UNAUTHORIZED);
    let counters = u.upstream.counters();
    assert_eq!((counters.reuse_events, counters.grants["refresh_token"]), (1, 1));

    // A new sign-in ends the previous one.
    let first = cookie_value(&set_cookies(&login(&c, &u, USER).await)[0].1);
    let _second = login(&c, &u, USER).await;
    let ended = c
        .post(url(&u, "/auth/refresh-token"))
        .header("cookie", format!("refresh_token={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::UNAUTHORIZED);

    // Logout with the cookie clears it and ends the sign-in.
    let fresh = cookie_value(&set_cookies(&login(&c, &u, USER).await)[0].1);
    let out = c
        .delete(url(&u, "/auth/logout"))
        .header("cookie", format!("refresh_token={fresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert!(set_cookies(&out)[0].1.contains("Max-Age=0"));
    let after = c
        .post(url(&u, "/auth/refresh-token"))
        .header("cookie", format!("refresh_token={fresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);

    // Registration signs in; a taken email is a 409; bad fields a 400 with a message.
    let reg = c
        .post(url(&u, "/auth/register"))
        .json(&json!({"name": "N", "email": "n@example.com", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reg.status(), StatusCode::OK);
    assert!(reg.json::<Value>().await.unwrap()["accessToken"].is_string());
    let taken = c
        .post(url(&u, "/auth/register"))
        .json(&json!({"name": "N", "email": "n@example.com", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    let bad = c
        .post(url(&u, "/auth/register"))
        .json(&json!({"name": "N", "email": "x", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let garbage = c
        .post(url(&u, "/auth/login"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), StatusCode::INTERNAL_SERVER_ERROR, "a client mistake answered with 500");
    // The OAuth 2.0 routes are not this shape's.
    assert_eq!(c.post(url(&u, "/oauth/token")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn seed002_cookies_only_reuse_wipes_the_user_and_logout_needs_both() {
    let u = start(Shape::Seed002).await;
    let c = Client::new();
    let wrong = login(&c, &u, (USER.0, "nope")).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json::<Value>().await.unwrap()["statusCode"], 401);

    let r = login(&c, &u, USER).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookies = set_cookies(&r);
    let names: Vec<&str> = cookies.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["access_token", "refresh_token"]);
    for (_, line) in &cookies {
        assert!(line.contains("HttpOnly; Secure; SameSite=None"), "even over plain http: {line}");
    }
    assert!(cookies[0].1.contains("Max-Age=1800") && cookies[1].1.contains("Max-Age=604800"));
    let body: Value = r.json().await.unwrap();
    assert!(body.get("accessToken").is_none(), "no token in the body: {body}");
    let (a1, r1) = (cookie_value(&cookies[0].1), cookie_value(&cookies[1].1));

    let me: Value = c
        .get(url(&u, "/users/me"))
        .header("cookie", format!("access_token={a1}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((me["firstName"].as_str(), me["lastName"].as_str()), (Some("Dana"), Some("User")));
    assert_eq!(me["roles"], json!(["user"]));
    assert_eq!(
        c.get(url(&u, "/frogs"))
            .header("cookie", format!("access_token={a1}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(c.get(url(&u, "/frogs")).bearer_auth(&a1).send().await.unwrap().status(), 200, "or Bearer");

    // A second sign-in of the same user (another device) lives beside the first...
    let other = set_cookies(&login(&c, &u, USER).await);
    let other_refresh = cookie_value(&other[1].1);
    let refreshed = c
        .post(url(&u, "/auth/refresh"))
        .header("cookie", format!("refresh_token={r1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_eq!(set_cookies(&refreshed).len(), 2, "both cookies set again");
    // ...until a rotated token comes back: 403, and every sign-in of the user is wiped.
    let reuse = c
        .post(url(&u, "/auth/refresh"))
        .header("cookie", format!("refresh_token={r1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), StatusCode::FORBIDDEN);
    let wiped = c
        .post(url(&u, "/auth/refresh"))
        .header("cookie", format!("refresh_token={other_refresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(wiped.status(), StatusCode::UNAUTHORIZED, "the other device's sign-in went too");

    // Logout needs both cookies.
    let fresh = set_cookies(&login(&c, &u, USER).await);
    let (fa, fr) = (cookie_value(&fresh[0].1), cookie_value(&fresh[1].1));
    let half =
        c.post(url(&u, "/auth/logout")).header("cookie", format!("refresh_token={fr}")).send().await.unwrap();
    assert_eq!(half.status(), StatusCode::UNAUTHORIZED);
    let out = c
        .post(url(&u, "/auth/logout"))
        .header("cookie", format!("access_token={fa}; refresh_token={fr}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    assert_eq!(set_cookies(&out).len(), 2, "both cleared");
    let after = c
        .post(url(&u, "/auth/refresh"))
        .header("cookie", format!("refresh_token={fr}"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        c.post(url(&u, "/auth/register")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "no registration"
    );
}
