//! Starts Tokenless: load and validate settings, build the router, serve until a signal.

/// mimalloc rather than glibc's malloc: a page render allocates a few thousand times, and under
/// load glibc's allocator (arena locks, consolidation) cost about as much as the render itself
/// (BENCHMARKS.md, "Where a request's time goes").
#[cfg(feature = "ssr")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use tokenless::server::{run, Settings};

    // `tokenless generate-key [ID]`: a new session key in the form TOKENLESS_SESSION__KEYS reads.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("generate-key") {
        let id = args.get(1).and_then(|s| s.parse::<u8>().ok()).unwrap_or(1);
        let key = tokenless_bff::generate_key_spec(id);
        // The one place that writes to stdout: the key is the output.
        use std::io::Write;
        return match writeln!(std::io::stdout(), "{key}") {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(_) => std::process::ExitCode::FAILURE,
        };
    }

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
