//! What must outlive the process, through the real binary. Issue 33: with nothing configured, a
//! sign-out survives a restart — started twice in a project folder of the test's own (its
//! `Leptos.toml`, and nothing else: the development key, the demo's database and the refresh
//! memory all land under its `target/tokenless-dev/`), the cookie signed out of before the
//! restart is still refused after it, while a session that did not sign out is still signed
//! in. Issue 32: a graceful stop lets the refresh a gone request began land first.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const COOKIE: &str = "tokenless_session";

/// The binary on `port`, in `folder`, with no `TOKENLESS_*` setting of the test's environment.
fn start(folder: &Path, port: u16) -> Child {
    start_with(folder, port, &[])
}

/// [`start`], with `settings` set.
fn start_with(folder: &Path, port: u16, settings: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenless"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("TOKENLESS_") || name.starts_with("LEPTOS_")) {
        command.env_remove(name);
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(folder.join("app.log")).unwrap();
    command
        .current_dir(folder)
        .env("TOKENLESS_SERVER__ADDRESS", format!("127.0.0.1:{port}"))
        .env("LEPTOS_SITE_ROOT", folder.join("site"))
        .envs(settings.iter().copied())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("the tokenless binary of this build")
}

/// Stops it as a deploy or `cargo leptos watch` does (SIGTERM), waited for.
fn stop(mut child: Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the app did not stop within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn answering(client: &reqwest::Client, base: &str, folder: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{base}/")).send().await.is_err() {
        let log = std::fs::read_to_string(folder.join("app.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "the app did not answer within 60 s:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The session cookie a response set.
fn cookie(response: &reqwest::Response) -> Option<String> {
    response.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let value = v.strip_prefix(&format!("{COOKIE}="))?.split(';').next()?;
        (!value.is_empty()).then(|| value.to_string())
    })
}

async fn post(client: &reqwest::Client, url: String, cookie: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("sec-fetch-site", "same-origin")
        .body(serde_urlencoded::to_string(form).unwrap());
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("{COOKIE}={cookie}"));
    }
    request.send().await.expect("the app answers")
}

async fn sign_in(client: &reqwest::Client, base: &str, user: &tokenless_upstream::config::DemoUser) -> String {
    let answer = post(client, format!("{base}/api/login"), None, &[("email", user.email), ("password", user.password), ("next", "/")]).await;
    assert!(answer.status().is_success(), "signed in: {}", answer.status());
    cookie(&answer).expect("a session cookie")
}

/// 200 (signed in) or where it was sent.
async fn account(client: &reqwest::Client, base: &str, cookie: &str) -> String {
    let answer = client.get(format!("{base}/account")).header("cookie", format!("{COOKIE}={cookie}")).send().await.expect("the app answers");
    match answer.status().as_u16() {
        200 => "signed in".into(),
        _ => format!("{} {}", answer.status().as_u16(), answer.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("")),
    }
}

#[tokio::test]
async fn with_nothing_configured_a_sign_out_survives_a_restart() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("Leptos.toml"), folder.path().join("Leptos.toml")).unwrap();
    std::fs::create_dir_all(folder.path().join("site")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let [first, second, ..] = &tokenless_upstream::config::DEMO_USERS else { panic!("two demo users") };

    let app = start(folder.path(), port);
    answering(&client, &base, folder.path()).await;
    let (gone, kept) = (sign_in(&client, &base, first).await, sign_in(&client, &base, second).await);
    assert_eq!(account(&client, &base, &gone).await, "signed in");
    let out = post(&client, format!("{base}/api/logout"), Some(&gone), &[]).await;
    assert!(out.status().is_success(), "signed out: {}", out.status());
    let refused = account(&client, &base, &gone).await;
    assert!(refused.starts_with("303 /login"), "refused before the restart: {refused}");
    stop(app);

    let app = start(folder.path(), port);
    answering(&client, &base, folder.path()).await;
    let after = account(&client, &base, &gone).await;
    let still = account(&client, &base, &kept).await;
    stop(app);
    assert!(after.starts_with("303 /login"), "the cookie signed out of opens again after the restart: {after}");
    assert_eq!(still, "signed in", "the other session survives the restart");
    assert!(folder.path().join("target/tokenless-dev/refresh-memory.sqlite3").exists(), "kept where development keeps its state");
}

/// A project folder of the test's own: its `Leptos.toml` and a site folder.
fn project() -> tempfile::TempDir {
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("Leptos.toml"), folder.path().join("Leptos.toml")).unwrap();
    std::fs::create_dir_all(folder.path().join("site")).unwrap();
    folder
}

/// The key the app below seals with, so that the test can age a cookie's access token.
const KEYS: &str = "3:ZHJhaW4gdGVzdCBrZXksIG5vdCBmb3IgYW55IHVzZSE=";

/// An upstream that takes its time to answer a refresh it has already done (rotated at the
/// demo upstream behind it, the answer held for `hold`): everything else passes straight.
async fn slow_to_answer_refreshes(demo: String, hold: Duration) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let http = reqwest::Client::new();
    let forward = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (http, demo) = (http.clone(), demo.clone());
        async move {
            let refresh = uri.path() == "/oauth/token" && String::from_utf8_lossy(&body).contains("grant_type=refresh_token");
            let mut request = http.request(method, format!("{demo}{uri}")).body(body);
            for name in ["authorization", "content-type", "accept", "cookie"] {
                if let Some(value) = headers.get(name) {
                    request = request.header(name, value);
                }
            }
            let answer = request.send().await.expect("the demo upstream answers");
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
            let content_type = answer.headers().get("content-type").cloned();
            let body = answer.bytes().await.unwrap();
            if refresh {
                tokio::time::sleep(hold).await;
            }
            let mut response = axum::response::Response::builder().status(status);
            if let Some(content_type) = content_type {
                response = response.header("content-type", content_type);
            }
            response.body(axum::body::Body::from(body)).unwrap()
        }
    };
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(forward)).await });
    base
}

/// A graceful stop (SIGTERM: a deploy) waits for the refresh a request began and then gave up
/// on (its client went away): the upstream had rotated the token and was slow to answer; the
/// app stored the answer before it exited, so the cookie from before, sent after the restart,
/// gets the new tokens — no second grant, no reuse. Stopping without waiting loses the answer
/// with the process: the retired token is presented again, and the sign-in ends.
// Several threads: `stop` blocks one while the upstreams here must go on answering the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_waits_for_the_refresh_a_gone_request_began() {
    let demo = tokenless_upstream::spawn(tokenless_upstream::UpstreamConfig {
        test_controls: true,
        hash_cost: tokenless_upstream::HashCost::Fast,
        ..tokenless_upstream::UpstreamConfig::default()
    })
    .await
    .expect("the demo upstream");
    let upstream = slow_to_answer_refreshes(demo.base_url(), Duration::from_secs(2)).await;
    let folder = project();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let settings = [("TOKENLESS_SESSION__KEYS", KEYS), ("TOKENLESS_UPSTREAM__BASE_URL", upstream.as_str())];
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let grants = || demo.upstream.counters().grants.get("refresh_token").copied().unwrap_or(0);

    let app = start_with(folder.path(), port, &settings);
    answering(&client, &base, folder.path()).await;
    let signed_in = sign_in(&client, &base, &tokenless_upstream::config::DEMO_USERS[0]).await;
    let ring = tokenless_bff::KeyRing::parse(KEYS).unwrap();
    let mut session = tokenless_bff::Session::from_bytes(&ring.open(COOKIE, &signed_in).unwrap().plaintext).unwrap();
    session.tokens.access_expires_at = tokenless_bff::now() - 1;
    let expired = ring.seal(COOKIE, &session.to_bytes());

    // The page that needs the refresh, given up once the upstream has rotated (it holds the
    // answer for 2 s): nobody is left to carry the new tokens.
    let page = tokio::spawn({
        let (client, url, cookie) = (client.clone(), format!("{base}/frogs"), format!("{COOKIE}={expired}"));
        async move { client.get(url).header("cookie", cookie).send().await }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while grants() == 0 {
        assert!(Instant::now() < deadline, "the refresh never reached the upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    page.abort();
    stop(app);

    let app = start_with(folder.path(), port, &settings);
    answering(&client, &base, folder.path()).await;
    let late = client.get(format!("{base}/frogs")).header("cookie", format!("{COOKIE}={expired}")).send().await.unwrap();
    let status = late.status().as_u16();
    stop(app);
    let counters = demo.upstream.counters();
    assert_eq!(counters.reuse_events, 0, "the retired token presented again");
    assert_eq!(status, 200, "the cookie from before the stop gets the stored result");
    assert_eq!(grants(), 1, "one refresh");
}
