//! The one [`tower::Layer`] an axum app adds: it owns the cookie jar, refuses cross-site
//! state-changing requests, opens the request's session (refreshing an access token about to
//! expire, through the single flight), puts it in the request's extensions for the
//! [`RequestSession`] extractor, and marks it committed when the response's headers leave (a
//! refresh after that is kept for the session's next request). Every cookie change — a
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
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};
use tower_cookies::{CookieManager, Cookies};

use crate::manager::SessionManager;
use crate::middleware::{attach, fixed, RequestSession};
use crate::session::Session;

/// Builds what a refused cross-site request gets (the default: 403, plain text).
pub type CrossSiteAnswer = Arc<dyn Fn() -> Response + Send + Sync>;

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
    fixed: Option<Session>,
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
                fixed: None,
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
