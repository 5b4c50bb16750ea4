//! Refresh fan-out: for N = 1, 10, 100, 1000, a signed-in session's access token is aged past its
//! expiry inside the sealed cookie, then N requests carrying that cookie are sent at once (each
//! its own task, pages and server functions mixed) through the app's router, with the embedded
//! demo upstream (rotation on, reuse revokes) behind it. Reported: upstream refresh grants,
//! the app's own counters, time until every request was answered, errors, reuse events. Each N
//! runs against each kind of upstream: OAuth 2.0 with the demo's store in memory and in a SQLite
//! file (its development default), then the seed-003 and seed-002 API shapes (through the
//! `[upstream.http_api]` presets, store in memory), then across two instances: two app states
//! sharing their refresh memory on a `redis-server` started here, the requests alternating
//! between them.
//!
//! `cargo bench --features ssr --bench fanout` (add `-- 1 10` to choose N; `-- oauth2`,
//! `-- seed003`, `-- seed002`, `-- file`, `-- redis` to choose runs).

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tokenless::server::{router, state::leptos_options, AppState, Settings};
use tower::ServiceExt;

use support::{expired, fan_out, start_redis, KEYS, ORIGIN};

/// Returns whether the run was clean: no error, one refresh, no reuse.
async fn run(n: usize, shape: &str, store: &str) -> bool {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = match store {
        "file" => dir.path().join("demo.sqlite3").display().to_string(),
        _ => ":memory:".to_string(),
    };
    let redis = if store == "redis" { Some(start_redis().await) } else { None };
    let mut env = vec![
        ("TOKENLESS_DEMO__DATABASE".to_string(), database),
        // The default store, a file (unless on Redis below).
        ("TOKENLESS_SESSION__SQLITE_PATH".to_string(), dir.path().join("refresh-memory.sqlite3").display().to_string()),
        ("TOKENLESS_DEMO__SHAPE".to_string(), shape.to_string()),
        // Aged in the cookie below; long-lived otherwise, so only the fan-out refreshes.
        ("TOKENLESS_DEMO__ACCESS_TTL_SECS".to_string(), "600".to_string()),
        ("TOKENLESS_DEMO__TEST_CONTROLS".to_string(), "true".to_string()),
        ("TOKENLESS_DEMO__FAST_HASHING".to_string(), "true".to_string()),
        ("TOKENLESS_SESSION__KEYS".to_string(), KEYS.to_string()),
        ("TOKENLESS_SERVER__LOG".to_string(), "warn".to_string()),
    ];
    if let Some(redis) = &redis {
        env.push(("TOKENLESS_SESSION__STORE".to_string(), "redis".to_string()));
        env.push(("TOKENLESS_SESSION__REDIS_URL".to_string(), redis.url.clone()));
    }
    let build = |env: Vec<(String, String)>| async move {
        let settings = Settings::from_sources(None, env).expect("settings");
        let options = leptos_options(&settings);
        AppState::build(settings, options).await.expect("state")
    };
    let state = build(env.clone()).await;
    let controls = state.demo.as_ref().and_then(|d| d.control_url()).expect("controls");
    let app = router(state.clone());
    // With Redis, a second instance in front of the first one's demo upstream.
    let mut states = vec![state.clone()];
    let mut apps = vec![app.clone()];
    if redis.is_some() {
        let demo = state.demo.as_ref().expect("the demo upstream").base_url();
        env.push(("TOKENLESS_UPSTREAM__BASE_URL".to_string(), demo));
        let second = build(env).await;
        apps.push(router(second.clone()));
        states.push(second);
    }

    // Sign in through the server function, as the browser does.
    let login = Request::post("/api/login")
        .header("host", "127.0.0.1:3000")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("origin", ORIGIN)
        .header("sec-fetch-site", "same-origin")
        .body(Body::from("email=user%40example.com&password=frogs-are-green&next=%2F"))
        .unwrap();
    let answer = app.clone().oneshot(login).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let set_cookie = answer.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    let sealed = set_cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string();

    let cookie = expired(&sealed);
    let (elapsed, errors) = fan_out(&apps, &cookie, n, "/frogs", "/api/frogs").await;
    let counters: serde_json::Value =
        reqwest::get(format!("{controls}/_test/counters")).await.unwrap().json().await.unwrap();
    let (joined, grace_hits) = states.iter().map(|s| s.sessions.refresher().counts()).fold((0, 0), |(j, g), c| (j + c.joined, g + c.grace_hits));
    let refreshes = counters["grants"]["refresh_token"].as_u64().unwrap_or(0);
    let reuse = counters["reuse_events"].as_u64().unwrap_or(0);
    println!(
        "| {n:>5} | {shape:>7} | {store:>6} | {:>7} | {:>6} | {:>10} | {:>9.1} ms | {errors:>6} | {:>5} |",
        refreshes,
        joined,
        grace_hits,
        elapsed.as_secs_f64() * 1000.0,
        reuse,
    );
    errors == 0 && refreshes == 1 && reuse == 0
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let chosen: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let ns = if chosen.is_empty() { vec![1, 10, 100, 1000] } else { chosen };
    const RUNS: [(&str, &str); 5] =
        [("oauth2", "memory"), ("oauth2", "file"), ("seed003", "memory"), ("seed002", "memory"), ("oauth2", "redis")];
    let chosen_runs: Vec<(&str, &str)> =
        RUNS.into_iter().filter(|(shape, store)| args.iter().any(|a| a == shape || a == store)).collect();
    let runs = if chosen_runs.is_empty() { RUNS.to_vec() } else { chosen_runs };
    println!("| N | upstream | store | upstream refreshes | joined | grace hits | all answered in | errors | reuse |");
    println!("|---:|---|---|---:|---:|---:|---:|---:|---:|");
    let mut clean = true;
    for n in ns {
        for (shape, store) in &runs {
            clean &= runtime.block_on(run(n, shape, store));
        }
    }
    if !clean {
        eprintln!("a fan-out had errors, more than one refresh, or a reuse event");
        std::process::exit(1);
    }
}
