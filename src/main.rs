//! Starts Tokenless: load and validate settings, build the router, serve until a signal.

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use tokenless::server::{run, Settings};

    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("tokenless: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match run::serve(settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tokenless stopped");
            eprintln!("tokenless: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "ssr"))]
pub fn main() {
    // The client starts from `tokenless::hydrate` in lib.rs; this binary is built with "ssr".
}
