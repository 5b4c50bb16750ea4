//! `router(state)`: the whole HTTP surface of the app, which `main` serves and tests drive with
//! `tower::ServiceExt::oneshot`.

use axum::middleware::from_fn_with_state;
use axum::Router;
use leptos::nonce::Nonce;
use leptos::prelude::{provide_context, use_context};
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use tower_http::limit::RequestBodyLimitLayer;

use crate::app::{shell, App};
use crate::islands::ClientFiles;
use crate::server::middleware::{self, CspNonce};
use crate::server::AppState;
use crate::server::{form_memory, metrics, passthrough};

/// Largest request body: forms and server-function arguments are small.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The app's routes, listed once per process.
///
/// Listing renders the app with resource loading suppressed through a process-wide flag
/// (leptos_server's `SuppressResourceLoad`): a resource first polled by a request rendering
/// at that moment waits forever (leptos-rs/leptos#4773). Listing once, before any router
/// exists, keeps every render clear of that window, however many routers a process builds.
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<AxumRouteListing>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

pub fn router(state: AppState) -> Router {
    let routes = route_list();
    let context_state = state.clone();
    // For the islands' loader, which the pages with islands render.
    let client_files = ClientFiles::new(&state.leptos_options);
    let provide_state = move || {
        provide_context(context_state.clone());
        provide_context(client_files.clone());
        if let Some(parts) = use_context::<axum::http::request::Parts>() {
            // The nonce the CSP header names, for Leptos's inline scripts.
            if let Some(nonce) = parts.extensions.get::<CspNonce>() {
                provide_context(Nonce::from_value(nonce.0.clone()));
            }
            // What a failed plain form post typed, for the form it is sent back to.
            if let Some(input) = form_memory::recall(&context_state, &parts) {
                provide_context(input);
            }
        }
    };
    let mut app = Router::new();
    if let Some(provider) = &state.oidc {
        // /auth/login, /auth/callback, /auth/logout and /auth/backchannel-logout: signing in
        // and out at the OpenID provider.
        app = app.merge(tokenless_bff::oidc::routes(provider.clone(), tokenless_bff::oidc::OidcPaths::default()));
    }
    app.route(metrics::PATH, metrics::route(&state))
        .route(&format!("{}/{{*path}}", passthrough::PREFIX), passthrough::route(&state))
        .leptos_routes_with_context(&state, routes, provide_state.clone(), {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(provide_state, shell))
        // Innermost first: form errors that another site put in a URL dropped, then the BFF's
        // layer (cookies, cross-site refusal, the session loaded and refreshed, signed-out
        // visitors sent away from protected pages), security headers around everything.
        .layer(axum::middleware::from_fn(middleware::server_fn_status))
        .layer(axum::middleware::from_fn(middleware::refuse_foreign_form_errors))
        .layer(middleware::session_layer(&state))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), middleware::security_headers))
        .with_state(state)
}
