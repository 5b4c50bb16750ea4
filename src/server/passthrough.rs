//! `/api/upstream/<path>`: the library's passthrough for browser code (rules and hygiene in
//! `tokenless_bff::passthrough`) with the configured allowlist.

use axum::routing::MethodRouter;

use crate::server::AppState;

pub const PREFIX: &str = "/api/upstream";

/// The passthrough route of `state`'s allowlist.
pub fn route(state: &AppState) -> MethodRouter<AppState> {
    tokenless_bff::passthrough::handler(PREFIX, state.settings.passthrough.allow.clone())
}
