//! Drives the app's router through `oneshot` like a browser would: a cookie jar, same-origin
//! headers on posts, and the embedded demo upstream (test controls on) behind it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_cookies::cookie::Cookie;

use tokenless::server::{router, state::leptos_options, AppState, Settings};

/// One runtime for every test, as in production: Leptos sets its task spawner once per process
/// (`tokio::spawn` on the current runtime), and per-test runtimes that shut down under it can
/// leave a later render waiting on a task that will never run.
///
/// A test that has not finished after a minute fails instead of holding CI until its limit.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
    });
    RUNTIME.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(60), future)
            .await
            .expect("the test did not finish within 60 s")
    })
}

pub const HOST: &str = "127.0.0.1:3000";
pub const ORIGIN: &str = "http://127.0.0.1:3000";
pub const USER: (&str, &str) = ("user@example.com", "frogs-are-green");
pub const ADMIN: (&str, &str) = ("admin@example.com", "admin-frogs-rule");

pub struct TestApp {
    pub router: axum::Router,
    pub state: AppState,
    pub controls: String,
    http: reqwest::Client,
}

pub async fn app_with(extra: &[(&str, &str)]) -> TestApp {
    let mut env: Vec<(String, String)> = vec![
        ("TOKENLESS_DEMO__TEST_CONTROLS".into(), "true".into()),
        ("TOKENLESS_DEMO__FAST_HASHING".into(), "true".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = Settings::from_sources(None, env).expect("test settings are valid");
    let options = leptos_options(&settings);
    let state = AppState::build(settings, options).await.expect("app state");
    let controls = state.demo.as_ref().and_then(|d| d.control_url()).expect("test controls");
    TestApp { router: router(state.clone()), state, controls, http: reqwest::Client::new() }
}

pub async fn app() -> TestApp {
    app_with(&[]).await
}

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<Cookie<'static>> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| Cookie::parse(v.to_str().expect("ascii").to_string()).expect("a valid Set-Cookie"))
            .collect()
    }
}

/// A browser: a cookie jar and the headers a same-origin page sends.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    pub jar: Mutex<BTreeMap<String, String>>,
    /// Every Set-Cookie received, in order.
    pub received: Mutex<Vec<Cookie<'static>>>,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Browser { app, jar: Mutex::new(BTreeMap::new()), received: Mutex::new(Vec::new()) }
    }

    pub fn cookie_header(&self) -> String {
        self.jar.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.jar.lock().unwrap().insert(name.into(), value.into());
    }

    pub async fn send(&self, mut request: Request<Body>) -> Answer {
        let headers = request.headers_mut();
        headers.insert("host", HOST.parse().unwrap());
        let cookie = self.cookie_header();
        if !cookie.is_empty() && !headers.contains_key("cookie") {
            headers.insert("cookie", cookie.parse().unwrap());
        }
        let response = self.app.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let answer = Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() };
        for c in answer.set_cookies() {
            let removed = c.max_age().is_some_and(|a| a.is_zero()) || c.value().is_empty();
            if removed {
                self.jar.lock().unwrap().remove(c.name());
            } else {
                self.jar.lock().unwrap().insert(c.name().to_string(), c.value().to_string());
            }
            self.received.lock().unwrap().push(c);
        }
        answer
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Request::get(path).header("accept", "text/html").body(Body::empty()).unwrap()).await
    }

    /// A server-function call as the hydrated client makes it (JSON back).
    pub async fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> Answer {
        self.send(
            Request::post(format!("/api/{endpoint}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .header("origin", ORIGIN)
                .header("sec-fetch-site", "same-origin")
                .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
                .unwrap(),
        )
        .await
    }

    /// A plain form post, as a browser without JavaScript sends it from `referer`.
    pub async fn form_post(&self, endpoint: &str, form: &[(&str, &str)], referer: &str) -> Answer {
        self.send(
            Request::post(format!("/api/{endpoint}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "text/html,application/xhtml+xml")
                .header("origin", ORIGIN)
                .header("sec-fetch-site", "same-origin")
                .header("referer", format!("{ORIGIN}{referer}"))
                .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
                .unwrap(),
        )
        .await
    }

    pub async fn sign_in(&self, who: (&str, &str)) -> Answer {
        let answer = self.call("login", &[("email", who.0), ("password", who.1), ("next", "/")]).await;
        assert!(answer.status.is_success(), "sign-in failed: {answer:?}");
        answer
    }
}

impl TestApp {
    pub async fn control_get(&self, path: &str) -> serde_json::Value {
        self.http.get(format!("{}{path}", self.controls)).send().await.unwrap().json().await.unwrap()
    }

    pub async fn control_post(&self, path: &str, body: serde_json::Value) -> StatusCode {
        let s = self.http.post(format!("{}{path}", self.controls)).json(&body).send().await.unwrap().status();
        StatusCode::from_u16(s.as_u16()).unwrap()
    }

    pub async fn counters(&self) -> serde_json::Value {
        self.control_get("/_test/counters").await
    }

    /// Every access and refresh token the upstream issued to `email`.
    pub async fn tokens_of(&self, email: &str) -> Vec<String> {
        let t = self.control_get(&format!("/_test/users/{email}/tokens")).await;
        let mut all = Vec::new();
        for key in ["access_tokens", "refresh_tokens"] {
            for v in t[key].as_array().cloned().unwrap_or_default() {
                all.push(v.as_str().unwrap().to_string());
            }
        }
        all
    }
}
