//! Serving: bind, set TCP_NODELAY on every accepted socket, serve the router, shut down
//! gracefully on Ctrl-C or SIGTERM (requests finished, then the refreshes they began).

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::server::state::{leptos_options, AppState};
use crate::server::{router, telemetry, Settings};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot listen on {address}: {source} (is another program using it? set TOKENLESS_SERVER__ADDRESS)"
    )]
    Bind { address: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    State(#[from] crate::server::state::StateError),
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How long a stop waits for the refreshes and revocations requests left running.
const DRAIN_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    telemetry::init(&settings.server.log);
    let address = settings.server.address;
    let options = leptos_options(&settings);
    let state = AppState::build(settings, options).await?;
    let listener = TcpListener::bind(address).await.map_err(|source| ServeError::Bind { address, source })?;
    tracing::info!("Tokenless listening on http://{}", listener.local_addr()?);
    // axum leaves Nagle's algorithm on; a streamed SSR response then waits on delayed ACKs
    // (DESIGN.md: p50 44 ms without, 5.5 ms with).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let sessions = state.sessions.clone();
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await?;
    // Refreshes the last requests began land before the process ends (their new tokens lost
    // with it would leave browsers a retired refresh token: reuse to the upstream).
    if !sessions.drain(DRAIN_WITHIN).await {
        tracing::warn!("stopped with refreshes or revocations still running after {DRAIN_WITHIN:?}");
    }
    tracing::info!("Tokenless stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
