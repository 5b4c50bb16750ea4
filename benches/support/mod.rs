//! What the benchmarks driving the app through its router share: the sealing key, the cookie
//! name, the origin, and a request as a browser sends it.

use axum::body::Body;
use axum::http::Request;

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

