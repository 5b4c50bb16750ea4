//! A plain axum app (no Leptos) that uses only the library's public API: sign in with a form,
//! a protected JSON resource from the upstream, who am I, sign out. Tokens stay on the server;
//! the browser holds one sealed, HttpOnly cookie.
//!
//! `cargo run -p tokenless-bff --example plain_axum` starts the bundled demo upstream and serves
//! on http://127.0.0.1:3300 (`curl` below); `cargo test -p tokenless-bff --example plain_axum`
//! drives it the way a browser would.
//!
//! ```sh
//! curl -i -c jar -H 'Origin: http://127.0.0.1:3300' -d 'email=user@example.com&password=frogs-are-green' http://127.0.0.1:3300/login
//! curl -b jar http://127.0.0.1:3300/frogs
//! ```

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use tokenless_bff::http_api::ProfileMap;
use tokenless_bff::{KeyRing, RequestSession, SessionConfig, SessionLayer, SessionManager, SignInError, UpstreamConfig};
use tokenless_upstream::config::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, OAUTH2_PATHS};

/// The whole app: four routes and the layer.
pub fn app(manager: Arc<SessionManager>) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/frogs", get(frogs))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(manager))
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

async fn login(session: RequestSession, Form(c): Form<Credentials>) -> Response {
    match session.sign_in(&c.email, &c.password).await {
        Ok(profile) => Json(profile).into_response(),
        Err(SignInError::InvalidCredentials) => {
            (StatusCode::UNAUTHORIZED, "wrong email or password").into_response()
        }
        Err(SignInError::Upstream(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "try again in a moment").into_response()
        }
    }
}

async fn me(session: RequestSession) -> Response {
    match session.profile() {
        Some(profile) => Json(profile).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// An upstream resource with the session's access token (refreshed on the way if needed).
async fn frogs(session: RequestSession) -> Response {
    match session.get_json::<serde_json::Value>("/frogs").await {
        Ok(frogs) => Json(frogs).into_response(),
        Err(
            tokenless_bff::ResourceError::SignedOut
            | tokenless_bff::ResourceError::SessionEnded,
        ) => StatusCode::UNAUTHORIZED.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn logout(session: RequestSession) -> StatusCode {
    session.sign_out().await;
    StatusCode::NO_CONTENT
}

/// A session manager in front of an OAuth 2.0 upstream at `base`.
pub fn manager(base: &str) -> Arc<SessionManager> {
    // A real app nests both configurations in its own settings (`[upstream]` and `[session]`
    // tables read with serde); here they are written out, with a key made at start.
    let [token_url, revocation_url, userinfo_url, _] = OAUTH2_PATHS;
    let upstream = UpstreamConfig {
        base_url: base.into(),
        token_url: token_url.into(),
        revocation_url: revocation_url.into(),
        userinfo_url: userinfo_url.into(),
        client_id: DEFAULT_CLIENT_ID.into(),
        client_secret: DEFAULT_CLIENT_SECRET.to_string().into(),
        profile: ProfileMap { roles: "/roles".into(), ..ProfileMap::oidc() },
        ..UpstreamConfig::default()
    };
    let upstream = upstream.validate().expect("the upstream settings").build().expect("the upstream");
    // The key is made at start, so sessions end with the process anyway: the refresh memory
    // stays in the process too. With a kept key, keep it in a file (`store = "sqlite"`, the
    // default, and `sqlite_path`): sign-outs then survive a restart.
    let options = SessionConfig { store: "memory".into(), ..SessionConfig::default() }.validate().expect("the session settings");
    let manager = SessionManager::builder(upstream)
        .options(options)
        .keys(KeyRing::ephemeral())
        .build()
        .expect("a session manager");
    Arc::new(manager)
}

#[tokio::main]
async fn main() {
    let demo = tokenless_upstream::spawn(tokenless_upstream::UpstreamConfig::default())
        .await
        .expect("the demo upstream");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3300").await.expect("port 3300");
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "plain_axum on http://127.0.0.1:3300 (demo upstream {})",
        demo.base_url()
    );
    let manager = manager(&demo.base_url());
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, app(manager.clone())).with_graceful_shutdown(stop).await.expect("serve");
    // The refreshes the last requests began land before the process ends.
    manager.drain(std::time::Duration::from_secs(10)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const ORIGIN: &str = "http://127.0.0.1:3300";

    async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Option<String>, String) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let cookie = response
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
        let body =
            String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        (status, cookie, body)
    }

    fn post(path: &str, cookie: &str, body: &str, origin: &str) -> Request<Body> {
        Request::post(path)
            .header("host", "127.0.0.1:3300")
            .header("origin", origin)
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    fn get(path: &str, cookie: &str) -> Request<Body> {
        Request::get(path)
            .header("host", "127.0.0.1:3300")
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn sign_in_read_a_protected_resource_sign_out() {
        let demo = tokenless_upstream::spawn(tokenless_upstream::UpstreamConfig::for_tests()).await.unwrap();
        let app = app(manager(&demo.base_url()));
        let form = "email=user%40example.com&password=frogs-are-green";

        let (status, _, _) =
            send(&app, post("/login", "", "email=user%40example.com&password=no", ORIGIN)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = send(&app, post("/login", "", form, "https://evil.test")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a cross-site post is refused by the layer");

        let (status, cookie, body) = send(&app, post("/login", "", form, ORIGIN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let cookie = cookie.expect("the session cookie");
        assert!(body.contains("Dana User"));
        for token in demo.upstream.issued_to("user@example.com").unwrap().unwrap().access_tokens {
            assert!(!cookie.contains(&token) && !body.contains(&token), "tokens stay on the server");
        }

        let (status, _, body) = send(&app, get("/frogs", &cookie)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("Fern"));
        let (status, _, body) = send(&app, get("/me", &cookie)).await;
        assert_eq!((status, body.contains("user@example.com")), (StatusCode::OK, true));

        let (status, cleared, _) = send(&app, post("/logout", &cookie, "", ORIGIN)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(cleared.as_deref(), Some("tokenless_session="), "the cookie is deleted");
        assert_eq!(send(&app, get("/me", "")).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            send(&app, get("/frogs", &cookie)).await.0,
            StatusCode::UNAUTHORIZED,
            "the old cookie is refused"
        );
    }
}
