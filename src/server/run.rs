//! Serving: bind, set TCP_NODELAY on every accepted socket, serve the router, shut down
//! gracefully on Ctrl-C or SIGTERM.

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
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await?;
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
