//! The app signing in through a real OpenID provider (node-oidc-provider, started here on a
//! loopback port): the sign-in round trip, then the refresh fan-out with the provider as the
//! upstream.
//!
//! - **Sign-in round trip**, 10 times, each a new browser (so the provider asks for the login and
//!   the consent every time): the app's `/auth/login` → the provider's pages (its login and
//!   consent forms posted) → the app's callback (code exchange, ID token checks, userinfo) → the
//!   page asked for. Reported: the median and the range of the whole trip, and of the callback
//!   alone (the app's share).
//! - **Fan-out**: for N = 1, 10, 100, 1000, the session's access token is aged past its expiry
//!   inside the sealed cookie and N requests carrying that cookie are sent at once (pages and
//!   server functions mixed) through the app's router. Reported: refresh grants the provider
//!   honoured and rotated refresh tokens it saw presented again (its own counters), the time
//!   until every request was answered, errors.
//!
//! `cargo bench --features ssr --bench oidc` (add `-- 1 10` to choose N; `-- signin` or
//! `-- fanout` for one part). Needs node and `npm ci` in end2end/ (`make setup`).

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokenless::server::{router, state::leptos_options, AppState, Settings};
use tokenless_bff::{KeyRing, Session};
use tokio::io::{AsyncBufReadExt, BufReader};
use tower::ServiceExt;

use support::{expired, COOKIE, KEYS, ORIGIN};

/// node-oidc-provider for the app at [`ORIGIN`]; stopped when dropped.
struct Provider {
    issuer: String,
    _child: tokio::process::Child,
}

async fn start_provider() -> Provider {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("end2end/node_modules/oidc-provider").is_dir(),
        "the OpenID provider's npm package is missing: run `make setup` (npm ci in end2end/)"
    );
    let mut child = tokio::process::Command::new("node")
        .arg("end2end/oidc/provider.mjs")
        .current_dir(root)
        .env("OIDC_PORT", "0")
        .env("OIDC_APP_ORIGIN", ORIGIN)
        // Long-lived access tokens: only the aged cookie below refreshes.
        .env("OIDC_ACCESS_TTL", "600")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (make setup installs it)");
    let mut lines = BufReader::new(child.stdout.take().expect("its stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the provider starts within 30 s")
        .expect("its stdout reads")
        .expect("it prints `ready <issuer>`");
    let issuer = first.strip_prefix("ready ").expect("`ready <issuer>`").to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Provider { issuer, _child: child }
}

async fn app_for(provider: &Provider) -> (axum::Router, AppState) {
    let env: Vec<(String, String)> = [
        ("TOKENLESS_UPSTREAM__KIND", "oidc"),
        ("TOKENLESS_UPSTREAM__BASE_URL", provider.issuer.as_str()),
        ("TOKENLESS_UPSTREAM__OIDC__ISSUER", provider.issuer.as_str()),
        ("TOKENLESS_UPSTREAM__OIDC__CLIENT_ID", "tokenless"),
        ("TOKENLESS_UPSTREAM__OIDC__CLIENT_SECRET", "tokenless-oidc-test-secret"),
        ("TOKENLESS_UPSTREAM__OIDC__SCOPES", "openid profile email offline_access roles"),
        ("TOKENLESS_UPSTREAM__OIDC__ROLES_CLAIM", "/roles"),
        ("TOKENLESS_SESSION__KEYS", KEYS),
        ("TOKENLESS_SERVER__LOG", "warn"),
        // Sign-in and back-channel flows measured here, not the store.
        ("TOKENLESS_SESSION__STORE", "memory"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings = Settings::from_sources(None, env).expect("settings");
    let options = leptos_options(&settings);
    let state = AppState::build(settings, options).await.expect("state");
    (router(state.clone()), state)
}

/// One sign-in as a new browser: the session cookie (`name=value`), the whole trip's time and
/// the callback's.
async fn sign_in(app: &axum::Router, provider: &Provider) -> (String, Duration, Duration) {
    let started = Instant::now();
    let begun = app
        .clone()
        .oneshot(Request::get("/auth/login?next=%2Faccount").header("host", "127.0.0.1:3000").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(begun.status(), StatusCode::SEE_OTHER);
    let pending = begun.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let to_provider = begun.headers()["location"].to_str().unwrap().to_string();
    let callback = at_provider(&provider.issuer, &to_provider).await;
    let at_callback = Instant::now();
    let back = app
        .clone()
        .oneshot(
            Request::get(callback.trim_start_matches(ORIGIN))
                .header("host", "127.0.0.1:3000")
                .header("cookie", &pending)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(back.headers()["location"], "/account", "signed in and on the page asked for");
    let session = back
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with(&format!("{COOKIE}=")))
        .expect("the session cookie");
    let callback_took = at_callback.elapsed();
    let landed = app
        .clone()
        .oneshot(Request::get("/account").header("host", "127.0.0.1:3000").header("cookie", &session).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(landed.status(), StatusCode::OK);
    let _ = landed.into_body().collect().await;
    (session, started.elapsed(), callback_took)
}

/// A new browser at the provider's pages from `start`, as dana, until it is sent back to the
/// app: that URL.
async fn at_provider(issuer: &str, start: &str) -> String {
    let browser = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = url::Url::parse(issuer).unwrap();
    let mut response = browser.get(start).send().await.unwrap();
    for _ in 0..12 {
        if response.status().is_redirection() {
            let next = base.join(response.headers()["location"].to_str().unwrap()).unwrap();
            if next.as_str().starts_with(ORIGIN) {
                return next.to_string();
            }
            response = browser.get(next).send().await.unwrap();
            continue;
        }
        let page = response.text().await.unwrap();
        let at = page.find("action=\"").expect("a form") + "action=\"".len();
        let action = base.join(page[at..].split('"').next().unwrap()).unwrap();
        let form: Vec<(&str, &str)> = if page.contains(r#"value="login""#) {
            vec![("prompt", "login"), ("login", "dana"), ("password", "any")]
        } else {
            vec![("prompt", "consent")]
        };
        response = browser.post(action).form(&form).send().await.unwrap();
    }
    panic!("the provider never sent the browser back");
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median and the range of `times`, in ms.
fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let median = (times[(times.len() - 1) / 2] + times[times.len() / 2]) / 2;
    format!("{:.1} ms ({:.1}–{:.1})", millis(median), millis(times[0]), millis(times[times.len() - 1]))
}

async fn sign_in_round_trips() {
    let provider = start_provider().await;
    let (app, _state) = app_for(&provider).await;
    // One sign-in first: the JIT-free Rust side needs no warm-up, node's does.
    let (cookie, _, _) = sign_in(&app, &provider).await;
    let sealed = cookie.split_once('=').map_or(0, |(_, v)| v.len());
    let ring = KeyRing::parse(KEYS).unwrap();
    let session = Session::from_bytes(&ring.open(COOKIE, cookie.split_once('=').unwrap().1).unwrap().plaintext).unwrap();
    let id_token = session.provider.as_ref().map_or(0, |p| p.id_token.expose().len());
    println!("session cookie: {sealed} bytes sealed, of which the ID token {id_token} bytes before sealing");
    let mut trips = Vec::new();
    let mut callbacks = Vec::new();
    for _ in 0..10 {
        let (_, trip, callback) = sign_in(&app, &provider).await;
        trips.push(trip);
        callbacks.push(callback);
    }
    println!("| sign-in round trip (10, median and range) | callback alone (the app's share) |");
    println!("|---:|---:|");
    println!("| {} | {} |", summary(trips), summary(callbacks));
}

async fn provider_counters(provider: &Provider) -> (u64, u64) {
    let counters: serde_json::Value =
        reqwest::get(format!("{}/_test/counters", provider.issuer)).await.unwrap().json().await.unwrap();
    (counters["refreshes"].as_u64().unwrap_or(0), counters["reuse"].as_u64().unwrap_or(0))
}

/// Returns whether the run was clean: no error, one refresh, no reuse.
async fn fan_out_at(n: usize) -> bool {
    let provider = start_provider().await;
    let (app, state) = app_for(&provider).await;
    let (cookie, _, _) = sign_in(&app, &provider).await;
    let cookie = expired(cookie.split_once('=').unwrap().1);
    let (elapsed, errors) = support::fan_out(std::slice::from_ref(&app), &cookie, n, "/account", "/api/account").await;
    let (refreshes, reuse) = provider_counters(&provider).await;
    let c = state.sessions.refresher().counts();
    println!(
        "| {n:>5} | {refreshes:>7} | {:>6} | {:>10} | {:>9.1} ms | {errors:>6} | {reuse:>5} |",
        c.joined,
        c.grace_hits,
        millis(elapsed),
    );
    errors == 0 && refreshes == 1 && reuse == 0
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let chosen: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let ns = if chosen.is_empty() { vec![1, 10, 100, 1000] } else { chosen };
    let only = |part: &str| !args.iter().any(|a| a == "signin" || a == "fanout") || args.iter().any(|a| a == part);
    if only("signin") {
        runtime.block_on(sign_in_round_trips());
    }
    if only("fanout") {
        println!("| N | provider refreshes | joined | grace hits | all answered in | errors | reuse |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        let mut clean = true;
        for n in ns {
            clean &= runtime.block_on(fan_out_at(n));
        }
        if !clean {
            eprintln!("a fan-out had errors, more than one refresh, or a reuse event");
            std::process::exit(1);
        }
    }
}
