//! The answer of the `server_status` server function.

use std::time::{SystemTime, UNIX_EPOCH};

use leptos::prelude::use_context;

use crate::api::StatusReport;
use crate::server::AppState;

pub async fn current() -> StatusReport {
    let upstream =
        use_context::<AppState>().map(|state| state.upstream_label()).unwrap_or_else(|| "unknown".into());
    let answered_at_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default();
    StatusReport { version: env!("CARGO_PKG_VERSION").into(), upstream, answered_at_ms }
}
