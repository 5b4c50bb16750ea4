//! The one [`tower::Layer`] an axum app adds: it owns the cookie jar, refuses cross-site
//! state-changing requests, opens the request's session (refreshing an access token about to
//! expire, through the single flight), puts it in the request's extensions for the
//! [`RequestSession`] extractor, and marks it committed when the response's headers leave (a
//! refresh after that is kept for the session's next request). Pages it is told to
//! [protect](SessionLayer::protect) send signed-out visitors to sign in. Every cookie change — a
//! refresh, a sign-in, a sign-out, a cleared cookie — goes out in that one response.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use axum::{routing::get, Json, Router};
//! # use tokenless_bff::{SessionLayer, RequestSession, SessionManager};
//! # fn app(manager: Arc<SessionManager>) -> Router {
//! async fn me(session: RequestSession) -> Json<Option<String>> {
//!     Json(session.profile().map(|p| p.name))
//! }
//! Router::new().route("/me", get(me)).layer(SessionLayer::new(manager))
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use tower::{Layer, Service};
use tower_cookies::{CookieManager, Cookies};

use crate::manager::{Ended, SessionManager};
use crate::middleware::{attach, fixed, RequestSession};
use crate::session::Session;

/// Builds what a refused cross-site request gets (the default: 403, plain text).
pub type CrossSiteAnswer = Arc<dyn Fn() -> Response + Send + Sync>;

/// Builds what a request gets whose session's standing cannot be told (the refresh memory does
/// not answer), from the request's path (the default: 503, `Retry-After: 1`, plain text).
pub type UnavailableAnswer = Arc<dyn Fn(&str) -> Response + Send + Sync>;

/// Where a signed-out visitor of a protected page is sent: from the page's path and query, and
/// how the session ended if it just did (so the sign-in page can say "your session ended").
pub type SignInHref = Arc<dyn Fn(&str, Option<Ended>) -> String + Send + Sync>;

/// The origin this request's site is reached at (`https://app.example`), as the layer decided
/// it for the cross-site check: in the request's extensions for whatever runs inside the layer
/// (a check of a `Referer`, an absolute link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteOrigin(pub String);

/// Adds sessions to every route under it. Cheap to clone.
#[derive(Clone)]
pub struct SessionLayer {
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    manager: Arc<SessionManager>,
    origin: Option<String>,
    skip: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    cross_site: CrossSiteAnswer,
    unavailable: UnavailableAnswer,
    fixed: Option<Session>,
    protected: Option<(Arc<dyn Fn(&str) -> bool + Send + Sync>, SignInHref)>,
}

impl SessionLayer {
    /// Sessions of `manager`. The origin that state-changing requests must come from is the
    /// request's own `http://{Host}` until [`SessionLayer::origin`] sets the real one.
    pub fn new(manager: Arc<SessionManager>) -> Self {
        SessionLayer {
            config: Arc::new(Config {
                manager,
                origin: None,
                skip: Arc::new(|_| false),
                cross_site: Arc::new(|| {
                    (StatusCode::FORBIDDEN, "cross-site request refused").into_response()
                }),
                unavailable: Arc::new(|_| {
                    let text = "The service cannot check your session right now. You are still signed in: try again in a moment.";
                    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], text).into_response()
                }),
                fixed: None,
                protected: None,
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = Arc::unwrap_or_clone(self.config);
        change(&mut config);
        SessionLayer { config: Arc::new(config) }
    }

    /// The origin people reach the app at (`https://app.example`): state-changing requests from
    /// any other are refused.
    pub fn origin(self, origin: &url::Url) -> Self {
        let origin = origin.origin().ascii_serialization();
        self.with(|c| c.origin = Some(origin))
    }

    /// Paths that never read the session (static files, metrics): no cookie work at all.
    pub fn skip(self, paths: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.with(|c| c.skip = Arc::new(paths))
    }

    /// What a refused cross-site request gets instead of the default 403 text (an app's own
    /// error body, say).
    pub fn cross_site_answer(self, answer: impl Fn() -> Response + Send + Sync + 'static) -> Self {
        self.with(|c| c.cross_site = Arc::new(answer))
    }

    /// What a request gets whose session's standing cannot be told — the refresh memory (a
    /// shared store) does not answer, so whether it signed out is unknown — instead of the
    /// default 503 text: never served as signed in, never refused (its cookie is left as is).
    pub fn unavailable_answer(self, answer: impl Fn(&str) -> Response + Send + Sync + 'static) -> Self {
        self.with(|c| c.unavailable = Arc::new(answer))
    }

    /// Pages only signed-in people see: a `GET` or `HEAD` of a path `paths` accepts, without a
    /// signed-in session, is sent (303) to `sign_in(path_and_query, ended)` before the app runs
    /// (the cookie changes of a session that just ended go out with the redirect). Other
    /// methods reach the app, which answers them itself (a 401 for an API, say).
    pub fn protect(
        self,
        paths: impl Fn(&str) -> bool + Send + Sync + 'static,
        sign_in: impl Fn(&str, Option<Ended>) -> String + Send + Sync + 'static,
    ) -> Self {
        self.with(|c| c.protected = Some((Arc::new(paths), Arc::new(sign_in))))
    }

    /// Benchmarks only: every request gets this session, no cookie is read or written and no
    /// refresh is attempted (a baseline for what the cookie work costs).
    pub fn fixed_session(self, session: Option<Session>) -> Self {
        self.with(|c| c.fixed = session)
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = CookieManager<SessionService<S>>;

    fn layer(&self, inner: S) -> Self::Service {
        CookieManager::new(SessionService { inner, config: self.config.clone() })
    }
}

/// The service [`SessionLayer`] wraps around the app's (inside the cookie manager).
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Service<Request<Body>> for SessionService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        Box::pin(async move {
            if (config.skip)(request.uri().path()) {
                return inner.call(request).await;
            }
            let origin = config.origin.clone().unwrap_or_else(|| {
                let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
                format!("http://{host}")
            });
            if let Err(why) = crate::csrf::check(request.method(), request.headers(), &origin) {
                tracing::warn!(method = %request.method(), path = %request.uri().path(), %why, "refused a cross-site request");
                return Ok((config.cross_site)());
            }
            let Some(cookies) = request.extensions().get::<Cookies>().cloned() else {
                // The cookie manager is this layer's own outer half: always there.
                tracing::error!("no cookie jar on the request");
                return Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response());
            };
            let session = match &config.fixed {
                Some(session) => fixed(&config.manager, cookies, session.clone()),
                None => attach(&config.manager, cookies).await,
            };
            if session.unavailable() {
                // Its cookie changes (none: the cookie is left as it is) go out with it.
                return Ok((config.unavailable)(request.uri().path()));
            }
            if let Some((paths, sign_in)) = &config.protected {
                let page = matches!(*request.method(), Method::GET | Method::HEAD);
                if page && !session.is_signed_in() && paths(request.uri().path()) {
                    let here = request.uri().path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
                    return Ok(Redirect::to(&sign_in(here, session.ended())).into_response());
                }
            }
            request.extensions_mut().insert(SiteOrigin(origin));
            request.extensions_mut().insert(session.clone());
            let response = inner.call(request).await;
            // The headers leave now; a streamed body may still be rendering.
            session.commit();
            response
        })
    }
}

/// A handler's or server function's argument: the request's session. Needs [`SessionLayer`].
impl<S: Send + Sync> FromRequestParts<S> for RequestSession {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<RequestSession>().cloned().ok_or(MissingSessionLayer)
    }
}

/// The route is not under a [`SessionLayer`] (a wiring mistake: 500, logged).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("this route is not under the SessionLayer")]
pub struct MissingSessionLayer;

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::quiet_manager as manager;
    use axum::routing::get;
    use tower::ServiceExt;

    /// The inner app answers with the origin the layer told it, or "none".
    fn app(layer: SessionLayer) -> axum::Router {
        let origin = |request: axum::extract::Request| async move {
            request.extensions().get::<SiteOrigin>().map(|o| o.0.clone()).unwrap_or_else(|| "none".into())
        };
        axum::Router::new()
            .route("/account", get(origin).post(origin))
            .route("/open", get(origin))
            .route("/static.css", get(origin))
            .layer(layer)
    }

    async fn send(app: &axum::Router, method: Method, uri: &str) -> (StatusCode, String, String) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "app.test")
            .header("sec-fetch-site", "same-origin")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let location =
            response.headers().get(header::LOCATION).map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        (status, location, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn protected_pages_send_signed_out_visitors_to_sign_in() {
        let layer = SessionLayer::new(manager())
            .protect(|path| path == "/account", |here, ended| format!("/login?next={here}&ended={}", ended.is_some()));
        let app = app(layer);
        let (status, location, _) = send(&app, Method::GET, "/account?tab=2").await;
        assert_eq!((status, location.as_str()), (StatusCode::SEE_OTHER, "/login?next=/account?tab=2&ended=false"));
        assert_eq!(send(&app, Method::HEAD, "/account").await.0, StatusCode::SEE_OTHER);
        // Not a page: the app answers it (an API says 401 its own way).
        assert_eq!(send(&app, Method::POST, "/account").await.0, StatusCode::OK);
        assert_eq!(send(&app, Method::GET, "/open").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn the_app_reads_the_origin_the_layer_checked_against() {
        let app_on_host = app(SessionLayer::new(manager()).skip(|path| path.ends_with(".css")));
        assert_eq!(send(&app_on_host, Method::GET, "/open").await.2, "http://app.test", "the request's host");
        assert_eq!(send(&app_on_host, Method::GET, "/static.css").await.2, "none", "a skipped path has no session");
        let configured = url::Url::parse("https://app.example/").unwrap();
        let app_configured = app(SessionLayer::new(manager()).origin(&configured));
        assert_eq!(send(&app_configured, Method::GET, "/open").await.2, "https://app.example");
    }
}
