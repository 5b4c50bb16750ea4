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
use tokenless_bff::now;
use tokenless_bff::KeyRing;
use tokenless_bff::Session;

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
    /// The folder of this app's refresh memory file (removed with the app).
    _files: tempfile::TempDir,
}

/// The sealing key of test apps, so that tests can open and edit the cookie as an attacker with
/// the key (or a clock) could: e.g. age the access token instead of waiting for it to expire.
pub const TEST_KEYS: &str = "7:25U3If1KXaC+SlAjjY1CD9jqxQE8Dc8/P1u6z3U8m3o=";

pub async fn app_with(extra: &[(&str, &str)]) -> TestApp {
    try_app_with(extra).await.expect("app state")
}

/// The app of [`app_with`], or why it did not start.
pub async fn try_app_with(extra: &[(&str, &str)]) -> Result<TestApp, tokenless::server::state::StateError> {
    let files = tempfile::tempdir().expect("a folder for the refresh memory");
    let memory = files.path().join("refresh-memory.sqlite3").display().to_string();
    let mut env: Vec<(String, String)> = vec![
        // The default store (a file), one per test app.
        ("TOKENLESS_SESSION__SQLITE_PATH".into(), memory),
        ("TOKENLESS_DEMO__TEST_CONTROLS".into(), "true".into()),
        ("TOKENLESS_DEMO__FAST_HASHING".into(), "true".into()),
        ("TOKENLESS_SESSION__KEYS".into(), TEST_KEYS.into()),
        // Each test app its own fresh demo upstream, nothing shared through a file.
        ("TOKENLESS_DEMO__DATABASE".into(), ":memory:".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = Settings::from_sources(None, env).expect("test settings are valid");
    let options = leptos_options(&settings);
    let state = AppState::build(settings, options).await?;
    // The demo's test controls; none when the app fronts another upstream.
    let controls = state.demo.as_ref().and_then(|d| d.control_url()).unwrap_or_default();
    Ok(TestApp { router: router(state.clone()), state, controls, http: reqwest::Client::new(), _files: files })
}

pub async fn app() -> TestApp {
    app_with(&[]).await
}

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The body as sent, for answers that are not text.
    pub bytes: axum::body::Bytes,
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
        let answer = Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned(), bytes };
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

    /// Follows `answer`'s redirect as a browser does after this site's own answer: a
    /// same-origin navigation.
    pub async fn follow(&self, answer: &Answer) -> Answer {
        let location = answer.location().expect("a redirect").trim_start_matches(ORIGIN).to_string();
        self.send(
            Request::get(location)
                .header("accept", "text/html")
                .header("sec-fetch-site", "same-origin")
                .body(Body::empty())
                .unwrap(),
        )
        .await
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

    /// The session in the jar's cookie, opened with the test key.
    pub fn session(&self) -> Session {
        let jar = self.jar.lock().unwrap();
        let (name, value) =
            jar.iter().find(|(k, _)| k.ends_with("tokenless_session")).expect("a session cookie");
        open_session(name, value)
    }

    /// Changes the session in the jar's cookie (sealed again with the test key).
    pub fn edit_session(&self, edit: impl FnOnce(&mut Session)) {
        let mut session = self.session();
        edit(&mut session);
        let mut jar = self.jar.lock().unwrap();
        let name = jar.keys().find(|k| k.ends_with("tokenless_session")).cloned().expect("a session cookie");
        let sealed = KeyRing::parse(TEST_KEYS).unwrap().seal(&name, &session.to_bytes());
        jar.insert(name, sealed);
    }

    /// Makes the cookie's access token expired, as if its lifetime had passed.
    pub fn expire_access_token(&self) {
        self.edit_session(|s| s.tokens.access_expires_at = now() - 1);
    }

    pub async fn sign_in(&self, who: (&str, &str)) -> Answer {
        let answer = self.call("login", &[("email", who.0), ("password", who.1), ("next", "/")]).await;
        assert!(answer.status.is_success(), "sign-in failed: {answer:?}");
        answer
    }
}

/// Opens a sealed session cookie value with the test key.
pub fn open_session(name: &str, value: &str) -> Session {
    let opened =
        KeyRing::parse(TEST_KEYS).unwrap().open(name, value).expect("a cookie sealed with the test key");
    Session::from_bytes(&opened.plaintext).expect("a session")
}

impl TestApp {
    /// Fails the test if the upstream saw a rotated refresh token come back.
    pub async fn assert_no_reuse(&self) {
        let counters = self.counters().await;
        assert_eq!(counters["reuse_events"], 0, "{counters}");
    }

    /// Revokes one access token at the upstream (RFC 7009), as an upstream may do at any time.
    pub async fn revoke_access_token(&self, token: &str) {
        let base = self.state.demo.as_ref().expect("the demo upstream").base_url();
        let answer = self
            .http
            .post(format!("{base}/oauth/revoke"))
            .basic_auth("tokenless", Some("tokenless-demo-secret"))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "revocation: {}", answer.status());
    }

    /// Refresh grants the upstream answered (all users).
    pub async fn refresh_grants(&self) -> u64 {
        self.counters().await["grants"]["refresh_token"].as_u64().unwrap_or(0)
    }

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
