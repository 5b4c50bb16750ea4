//! The API's router, the middleware that counts, records and injects faults, and `spawn`, which
//! starts the whole upstream on loopback ports inside the caller's runtime.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Shape, UpstreamConfig, DEMO_USERS};
use crate::error::ApiError;
use crate::faults::{Applied, FaultyListener};
use crate::recorder::RecordedRequest;
use crate::state::Upstream;
use crate::{controls, cookie_api, oauth, passwords, resources};

/// The API (not the test controls).
pub fn api_router(upstream: Upstream, max_body_bytes: usize) -> Router {
    let auth = match upstream.shape() {
        Shape::OAuth2 => Router::new()
            .route("/oauth/token", post(oauth::token))
            .route("/oauth/revoke", post(oauth::revoke))
            .route("/userinfo", get(resources::userinfo))
            .route("/users", post(resources::register)),
        Shape::Seed003 => Router::new()
            .route("/auth/login", post(cookie_api::login))
            .route("/auth/register", post(cookie_api::register))
            .route("/auth/refresh-token", post(cookie_api::refresh))
            .route("/auth/logout", delete(cookie_api::logout))
            .route("/me", get(cookie_api::me)),
        Shape::Seed002 => Router::new()
            .route("/auth/login", post(cookie_api::login))
            .route("/auth/refresh", post(cookie_api::refresh))
            .route("/auth/logout", post(cookie_api::logout))
            .route("/users/me", get(cookie_api::me)),
    };
    auth.route("/frogs", get(resources::list_frogs))
        .route("/frogs/{id}", get(resources::frog))
        .route("/frogs/{id}/croaks", post(resources::croak))
        .route("/admin/stats", get(resources::admin_stats))
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(upstream.clone(), observe))
        .with_state(upstream)
}

/// Counts and records each request, then applies the HTTP-level faults.
async fn observe(State(upstream): State<Upstream>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let key = format!("{} {}", request.method(), path);
    *upstream.store().counters.requests.entry(key).or_default() += 1;
    if upstream.test_controls_enabled() {
        upstream.recorder().record(RecordedRequest {
            method: request.method().to_string(),
            path: path.clone(),
            query: request.uri().query().map(str::to_string),
            headers: request
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
        });
    }
    match upstream.faults().for_request(&path) {
        None => next.run(request).await,
        Some(applied) => {
            upstream.store().counters.faults_applied += 1;
            match applied {
                Applied::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    next.run(request).await
                }
                Applied::Unavailable => {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "injected fault: unavailable")
                        .into_response()
                }
                Applied::ServerError => {
                    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "injected fault: server error")
                        .into_response()
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("hashing the demo users' passwords failed")]
    Seed,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A running upstream. Dropping it (or calling `shutdown`) stops its listeners.
pub struct RunningUpstream {
    pub api_address: SocketAddr,
    pub control_address: Option<SocketAddr>,
    pub upstream: Upstream,
    stop: watch::Sender<bool>,
}

impl RunningUpstream {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.api_address)
    }

    pub fn control_url(&self) -> Option<String> {
        self.control_address.map(|a| format!("http://{a}"))
    }

    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for RunningUpstream {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Opens the store, adds the demo users it lacks (if configured), binds the listeners and serves
/// them in the background.
pub async fn spawn(config: UpstreamConfig) -> Result<RunningUpstream, StartError> {
    let upstream = Upstream::new(&config)?;
    if config.seed_demo_users {
        seed_demo_users(&upstream, config.hash_cost).await?;
    }

    let (stop, stopped) = watch::channel(false);
    let api = TcpListener::bind(config.address)
        .await
        .map_err(|source| StartError::Bind { address: config.address, source })?;
    let api_address =
        api.local_addr().map_err(|source| StartError::Bind { address: config.address, source })?;
    let counter = upstream.clone();
    let on_refused: Arc<dyn Fn() + Send + Sync> =
        Arc::new(move || counter.store().counters.faults_applied += 1);
    let listener = FaultyListener::new(api, upstream.faults().clone(), on_refused);
    let app = api_router(upstream.clone(), config.max_body_bytes);
    tokio::spawn(serve_until(listener, app, stopped.clone()));

    let control_address = if config.test_controls {
        let control = TcpListener::bind(config.control_address)
            .await
            .map_err(|source| StartError::Bind { address: config.control_address, source })?;
        let address = control
            .local_addr()
            .map_err(|source| StartError::Bind { address: config.control_address, source })?;
        tokio::spawn(serve_until(control, controls::router(upstream.clone()), stopped));
        Some(address)
    } else {
        None
    };
    tracing::info!(api = %api_address, controls = ?control_address, "demo upstream listening");
    Ok(RunningUpstream { api_address, control_address, upstream, stop })
}

/// Adds each demo user the store does not have yet: once for a database that persists, so a
/// restart neither hashes their passwords again nor undoes a change to them.
async fn seed_demo_users(upstream: &Upstream, cost: crate::config::HashCost) -> Result<(), StartError> {
    let mut missing = Vec::new();
    for user in DEMO_USERS {
        if !upstream.store().email_taken(user.email)? {
            missing.push(user);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let hashed = passwords::off_thread(move || {
        missing
            .into_iter()
            .map(|u| passwords::hash(u.password, cost).map(|h| (u, h)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .and_then(Result::ok)
    .ok_or(StartError::Seed)?;
    let mut store = upstream.store();
    for (user, hash) in hashed {
        match store.add_user(user.email, user.name, hash, user.roles.iter().map(|r| r.to_string()).collect())
        {
            // Another process on the same file seeded it in between: theirs is as good.
            Ok(_) | Err(crate::store::AddUserError::EmailTaken) => {}
            Err(crate::store::AddUserError::Store(e)) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn serve_until<L>(listener: L, app: Router, mut stopped: watch::Receiver<bool>)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %e, "demo upstream listener failed");
    }
}
