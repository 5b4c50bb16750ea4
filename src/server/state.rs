//! The state every handler, server function and component on the server can reach.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use crate::server::Settings;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub settings: Arc<Settings>,
}

impl AppState {
    pub fn new(settings: Settings, leptos_options: LeptosOptions) -> Self {
        AppState { leptos_options, settings: Arc::new(settings) }
    }

    /// What the status card says about the upstream.
    pub fn upstream_label(&self) -> String {
        "none yet".into()
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// Leptos's options for this process: what cargo-leptos put in the environment (site root,
/// reload port...), with the name of our output and the address from our settings.
pub fn leptos_options(settings: &Settings) -> LeptosOptions {
    let mut options = match leptos::config::get_configuration(None) {
        Ok(conf) => conf.leptos_options,
        Err(e) => {
            tracing::warn!(error = %e, "Leptos environment unreadable; using defaults");
            LeptosOptions::builder().output_name("tokenless").build()
        }
    };
    if options.output_name.is_empty() {
        options.output_name = "tokenless".into();
    }
    options.site_addr = settings.server.address;
    options
}
