//! Server functions and the DTOs that cross the wire. Declared for both targets; their bodies
//! run on the server only and reach server state through `crate::server`.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// What the home page shows about the server. Nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    /// "demo upstream (in-process)" or the configured upstream's origin.
    pub upstream: String,
    /// Milliseconds since the Unix epoch when the server answered.
    pub answered_at_ms: u64,
}

#[server(prefix = "/api", endpoint = "server_status")]
pub async fn server_status() -> Result<StatusReport, AppError> {
    Ok(crate::server::status::current().await)
}
