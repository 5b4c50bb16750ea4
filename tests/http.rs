//! The router driven through `oneshot`: pages, server functions, 404s, security headers.
#![cfg(feature = "ssr")]

mod common;

use axum::http::StatusCode;
use common::{app, block_on, Browser};

#[test]
fn home_page_is_server_rendered_with_the_status() {
    block_on(async {
        let app = app().await;
        let answer = Browser::new(&app).get("/").await;
        assert_eq!(answer.status, StatusCode::OK);
        let html = answer.body;
        assert!(html.contains("Sign in without handing your browser a token"), "{html}");
        assert!(html.contains("data-testid=\"server-status\""), "status resolved during SSR: {html}");
        assert!(html.contains("demo upstream (in-process)"), "{html}");
        assert!(html.contains("/pkg/tokenless.js"), "hydration script is linked: {html}");
        let nav = html.split("<nav").nth(1).and_then(|n| n.split("</nav>").next()).expect("a nav");
        assert!(nav.contains("href=\"/login\""), "the signed-out header is in place: {nav}");
    })
}

#[test]
fn unknown_page_is_404() {
    block_on(async {
        let app = app().await;
        let answer = Browser::new(&app).get("/nope/nothing").await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert!(answer.body.contains("Page not found"));
    })
}

#[test]
fn server_function_answers_json() {
    block_on(async {
        let app = app().await;
        let answer = Browser::new(&app).call("server_status", &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
        assert!(json["answered_at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    })
}

#[test]
fn security_headers_and_a_csp_nonce_that_matches_the_scripts() {
    block_on(async {
        let app = app().await;
        let answer = Browser::new(&app).get("/login").await;
        assert_eq!(answer.status, StatusCode::OK);
        let h = &answer.headers;
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(!csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let nonce = csp.split("'nonce-").nth(1).and_then(|r| r.split('\'').next()).expect("a nonce");
        assert!(nonce.len() >= 16);
        let scripts = answer.body.matches("<script").count();
        let with_nonce = answer.body.matches(&format!("nonce=\"{nonce}\"")).count();
        assert!(scripts > 0 && with_nonce >= scripts, "{scripts} scripts, {with_nonce} with the nonce");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(h["cache-control"], "no-store");
        // Another response, another nonce.
        let again = Browser::new(&app).get("/login").await;
        assert_ne!(again.headers["content-security-policy"], answer.headers["content-security-policy"]);
    })
}
