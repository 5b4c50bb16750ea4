//! The router driven through `tower::ServiceExt::oneshot`: pages, server functions, 404s.
#![cfg(feature = "ssr")]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use tokenless::server::{router, state::leptos_options, AppState, Settings};

/// One runtime for every test, as in production: Leptos sets its task spawner once per process
/// (`tokio::spawn` on the current runtime), and per-test runtimes that shut down under it can
/// leave a later render waiting on a task that will never run.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
    });
    RUNTIME.block_on(future)
}

fn app() -> axum::Router {
    let settings = Settings::defaults().expect("defaults are valid");
    let options = leptos_options(&settings);
    router(AppState::new(settings, options))
}

async fn body_text(response: axum::response::Response) -> String {
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

#[test]
fn home_page_is_server_rendered_with_the_status() {
    block_on(async {
        let response = app().oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let html = body_text(response).await;
        assert!(html.contains("Sign in without handing your browser a token"), "{html}");
        assert!(html.contains("data-testid=\"server-status\""), "status resolved during SSR: {html}");
        assert!(html.contains("/pkg/tokenless.js"), "hydration script is linked: {html}");
    })
}

#[test]
fn unknown_page_is_404() {
    block_on(async {
        let response =
            app().oneshot(Request::get("/nope/nothing").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(body_text(response).await.contains("Page not found"));
    })
}

#[test]
fn server_function_answers_json() {
    block_on(async {
        let request = Request::post("/api/server_status")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
        assert!(json["answered_at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    })
}
