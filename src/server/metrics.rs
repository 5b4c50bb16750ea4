//! `GET /metrics`: the library's refresh metrics route, behind the configured bearer token, or
//! nothing at all when turned off.

use axum::routing::MethodRouter;
use axum::http::StatusCode;

use crate::server::AppState;

pub const PATH: &str = "/metrics";

/// The route as `metrics.enabled` and `metrics.token` say.
pub fn route(state: &AppState) -> MethodRouter<AppState> {
    let settings = &state.settings.metrics;
    if settings.enabled {
        tokenless_bff::metrics::handler(state.sessions.clone(), settings.token.clone())
    } else {
        axum::routing::get(|| async { StatusCode::NOT_FOUND })
    }
}
