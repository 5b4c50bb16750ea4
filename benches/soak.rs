//! Soak: many signed-in sessions, each sending several requests at once, round after round, for
//! minutes, while access tokens live a few seconds, so refreshes happen all the time, from many
//! sessions, with parallel requests racing each rotation. The embedded demo upstream rotates on
//! every refresh and revokes the sign-in when a rotated token comes back.
//!
//! Fails (exit 1) on any error, any reuse event upstream, or any spurious sign-out (a request
//! sent to the sign-in page). Prints the RSS samples and their slope after warm-up.
//!
//! `bash bench/soak.sh` (release, 10 minutes; `SOAK_SECS`, `SOAK_SESSIONS`, `SOAK_PARALLEL`,
//! `SOAK_TTL_SECS` change it). Under `cargo test --benches` (make test) it runs 20 seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokenless::server::{router, state::leptos_options, AppState, Settings};
use tower::ServiceExt;

const KEYS: &str = "5:QmVuY2htYXJrIGtleSwgbmV2ZXIgdXNlIGl0IGVsc2U=";
const COOKIE: &str = "tokenless_session";
const ORIGIN: &str = "http://127.0.0.1:3000";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    signed_out: AtomicU64,
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "127.0.0.1:3000")
        .header("accept", "text/html")
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap()
}

fn server_fn(endpoint: &str, cookie: &str, body: String) -> Request<Body> {
    Request::post(format!("/api/{endpoint}"))
        .header("host", "127.0.0.1:3000")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("origin", ORIGIN)
        .header("sec-fetch-site", "same-origin")
        .header("cookie", cookie)
        .body(Body::from(body))
        .unwrap()
}

/// The session cookie a response set, if any (a browser keeps the last one it processed).
fn set_cookie(response: &axum::http::Response<Body>) -> Option<String> {
    response.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (name, rest) = v.split_once('=')?;
        let value = rest.split(';').next()?;
        (name == COOKIE && !value.is_empty()).then(|| value.to_string())
    })
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Least-squares slope of (seconds, KB) samples, in KB per minute.
fn slope_kb_per_min(samples: &[(f64, u64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let cov: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 as f64 - my)).sum();
    let var: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    if var == 0.0 {
        0.0
    } else {
        cov / var * 60.0
    }
}

async fn soak(secs: u64, sessions: u64, parallel: u64, ttl: u64) -> bool {
    let files = tempfile::tempdir().expect("a folder for the refresh memory");
    let env = vec![
        ("TOKENLESS_DEMO__TEST_CONTROLS".to_string(), "true".to_string()),
        ("TOKENLESS_DEMO__FAST_HASHING".to_string(), "true".to_string()),
        ("TOKENLESS_DEMO__ACCESS_TTL_SECS".to_string(), ttl.to_string()),
        ("TOKENLESS_DEMO__DATABASE".to_string(), ":memory:".to_string()),
        ("TOKENLESS_SESSION__KEYS".to_string(), KEYS.to_string()),
        ("TOKENLESS_SERVER__LOG".to_string(), "warn".to_string()),
        ("TOKENLESS_SESSION__SQLITE_PATH".to_string(), files.path().join("refresh-memory.sqlite3").display().to_string()),
    ];
    let settings = Settings::from_sources(None, env).expect("settings");
    let options = leptos_options(&settings);
    let state = AppState::build(settings, options).await.expect("state");
    let controls = state.demo.as_ref().and_then(|d| d.control_url()).expect("controls");
    let app = router(state.clone());
    let users = tokenless_upstream::config::DEMO_USERS;

    // Sign every session in through the server function, as the browser does.
    let mut cookies = Vec::new();
    for i in 0..sessions {
        let user = &users[i as usize % users.len()];
        let body =
            serde_urlencoded::to_string([("email", user.email), ("password", user.password), ("next", "/")])
                .unwrap();
        let answer = app.clone().oneshot(server_fn("login", "", body)).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "sign-in");
        cookies.push(set_cookie(&answer).expect("a session cookie"));
    }

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for (i, cookie) in cookies.into_iter().enumerate() {
        let (app, tally) = (app.clone(), tally.clone());
        workers.push(tokio::spawn(async move {
            let mut cookie = cookie;
            let mut round = 0u64;
            while Instant::now() < deadline {
                round += 1;
                let header = format!("{COOKIE}={cookie}");
                let calls: Vec<_> = (0..parallel)
                    .map(|j| {
                        let request = match (j + round + i as u64) % 3 {
                            0 => get("/frogs", &header),
                            1 => get("/account", &header),
                            _ => server_fn("frogs", &header, String::new()),
                        };
                        let app = app.clone();
                        tokio::spawn(async move {
                            let response = app.oneshot(request).await.unwrap();
                            let status = response.status();
                            let location = response
                                .headers()
                                .get("location")
                                .and_then(|l| l.to_str().ok())
                                .map(str::to_string);
                            let renewed = set_cookie(&response);
                            let _ = response.into_body().collect().await;
                            (status, location, renewed)
                        })
                    })
                    .collect();
                for call in calls {
                    let (status, location, renewed) = call.await.unwrap();
                    if status == StatusCode::OK {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    } else if location.as_deref().is_some_and(|l| l.starts_with("/login"))
                        || status == StatusCode::UNAUTHORIZED
                    {
                        tally.signed_out.fetch_add(1, Ordering::Relaxed);
                        eprintln!("session {i}: signed out ({status}, {location:?})");
                    } else {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("session {i}: {status}");
                    }
                    if let Some(renewed) = renewed {
                        cookie = renewed;
                    }
                }
            }
        }));
    }

    let mut samples = Vec::new();
    let sample_every = Duration::from_secs((secs / 40).clamp(1, 15));
    while Instant::now() < deadline {
        tokio::time::sleep(sample_every).await;
        samples.push((started.elapsed().as_secs_f64(), rss_kb()));
    }
    for w in workers {
        w.await.unwrap();
    }
    let counters: serde_json::Value =
        reqwest::get(format!("{controls}/_test/counters")).await.unwrap().json().await.unwrap();
    let refreshes = counters["grants"]["refresh_token"].as_u64().unwrap_or(0);
    let reuse = counters["reuse_events"].as_u64().unwrap_or(0);
    let c = state.sessions.refresher().counts();
    let (ok, errors, signed_out) = (
        tally.ok.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        tally.signed_out.load(Ordering::Relaxed),
    );
    let warm: Vec<_> = samples.iter().copied().filter(|(t, _)| *t >= secs as f64 * 0.2).collect();
    let elapsed = started.elapsed().as_secs_f64();
    println!("soak: {secs} s, {sessions} sessions x {parallel} parallel requests, access tokens {ttl} s");
    println!(
        "requests {ok} ok ({:.0}/s), {errors} errors, {signed_out} spurious sign-outs; upstream refreshes {refreshes} \
         ({:.1}/s), reuse events {reuse}; joined {}, grace hits {}, older cookies not written {}",
        ok as f64 / elapsed,
        refreshes as f64 / elapsed,
        c.joined,
        c.grace_hits,
        c.older_not_written,
    );
    let rss: Vec<String> =
        samples.iter().map(|(t, kb)| format!("{t:.0}s:{:.1}MB", *kb as f64 / 1024.0)).collect();
    println!("RSS samples: {}", rss.join(" "));
    println!("RSS slope after warm-up (last 80 %): {:+.1} KB/min", slope_kb_per_min(&warm));
    errors == 0 && signed_out == 0 && reuse == 0 && ok > 0 && refreshes > 0
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: the 20-second smoke.
    let benching = std::env::args().any(|a| a == "--bench");
    let secs = env_or("SOAK_SECS", if benching { 600 } else { 20 });
    let sessions = env_or("SOAK_SESSIONS", if benching { 200 } else { 20 });
    let parallel = env_or("SOAK_PARALLEL", 4);
    let ttl = env_or("SOAK_TTL_SECS", 4);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if !runtime.block_on(soak(secs, sessions, parallel, ttl)) {
        eprintln!("the soak had errors, spurious sign-outs or reuse events");
        std::process::exit(1);
    }
}
