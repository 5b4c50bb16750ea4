//! What the benchmarks driving the app through its router share (and `tests/redis.rs`, which
//! runs the same fan-out as a test): the sealing key, the cookie name, the origin, a request as
//! a browser sends it, a cookie aged past its access token's expiry, N requests with it at
//! once, and a `redis-server` of their own.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokenless_bff::{KeyRing, Session};
use tower::ServiceExt;

pub const KEYS: &str = "5:QmVuY2htYXJrIGtleSwgbmV2ZXIgdXNlIGl0IGVsc2U=";
pub const COOKIE: &str = "tokenless_session";
pub const ORIGIN: &str = "http://127.0.0.1:3000";

pub fn request(path: &str, cookie: &str, server_fn: bool) -> Request<Body> {
    let builder = Request::builder().header("host", "127.0.0.1:3000").header("cookie", cookie);
    if server_fn {
        builder
            .method("POST")
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .header("origin", ORIGIN)
            .header("sec-fetch-site", "same-origin")
            .body(Body::empty())
            .unwrap()
    } else {
        builder.method("GET").uri(path).header("accept", "text/html").body(Body::empty()).unwrap()
    }
}


/// The `Cookie` header for the session sealed in `sealed`, its access token aged past its
/// expiry (sealed again with [`KEYS`]).
pub fn expired(sealed: &str) -> String {
    let ring = KeyRing::parse(KEYS).unwrap();
    let mut session = Session::from_bytes(&ring.open(COOKIE, sealed).unwrap().plaintext).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    session.tokens.access_expires_at = now - 1;
    format!("{COOKIE}={}", ring.seal(COOKIE, &session.to_bytes()))
}

/// `n` requests with `cookie` at once, each its own task, the page and the server function
/// alternating, spread round-robin over `apps` (instances): how long until all were answered,
/// and how many were not 200.
pub async fn fan_out(apps: &[axum::Router], cookie: &str, n: usize, page: &str, server_fn: &str) -> (Duration, usize) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let app = apps[i % apps.len()].clone();
            let request = if i % 2 == 0 { request(page, cookie, false) } else { request(server_fn, cookie, true) };
            tokio::spawn(async move {
                let response = app.oneshot(request).await.unwrap();
                let status = response.status();
                let _ = response.into_body().collect().await;
                status
            })
        })
        .collect();
    let mut errors = 0;
    for t in tasks {
        if t.await.unwrap() != StatusCode::OK {
            errors += 1;
        }
    }
    (started.elapsed(), errors)
}

/// `redis-server` on a free loopback port, answering; stopped when dropped. (Not every bench
/// starts one: each includes this module whole.)
#[allow(dead_code)]
pub struct Redis {
    pub url: String,
    /// The server (a test kills it to see Redis down).
    pub child: tokio::process::Child,
}

#[allow(dead_code)]
pub async fn start_redis() -> Redis {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server runs (scripts/setup.sh test installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Redis { url: format!("redis://127.0.0.1:{port}/0"), child }
}
