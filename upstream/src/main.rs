//! `demo-upstream`: runs the demo upstream alone. Configured by environment variables:
//!
//! | variable | default |
//! |---|---|
//! | `DEMO_UPSTREAM_ADDRESS` | `127.0.0.1:4000` |
//! | `DEMO_UPSTREAM_ACCESS_TTL` (seconds) | the shape's: `300`, seed003 `10`, seed002 `1800` |
//! | `DEMO_UPSTREAM_REFRESH_TTL` (seconds) | the shape's: `2592000`, seed003 `3600`, seed002 `604800` |
//! | `DEMO_UPSTREAM_ROTATION_GRACE` (seconds) | `0` |
//! | `DEMO_UPSTREAM_CLIENT_ID` / `DEMO_UPSTREAM_CLIENT_SECRET` | `tokenless` / `tokenless-demo-secret` |
//! | `DEMO_UPSTREAM_TEST_CONTROLS` (`true`/`false`) | `false` |
//! | `DEMO_UPSTREAM_CONTROL_ADDRESS` | `127.0.0.1:4001` |
//! | `DEMO_UPSTREAM_FAST_HASHING` (`true`/`false`; tests and benchmarks) | `false` |
//! | `DEMO_UPSTREAM_DATABASE` (a SQLite file, created if missing, or `:memory:`) | `:memory:` |
//! | `DEMO_UPSTREAM_SHAPE` (`oauth2`, `seed003` or `seed002`: the API it speaks) | `oauth2` |

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokenless_upstream::{spawn, ClientCredentials, Database, HashCost, Shape, UpstreamConfig};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse<T: std::str::FromStr>(name: &str, what: &str) -> Result<Option<T>, String> {
    match var(name) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| format!("{name}={v:?} is not {what}")),
    }
}

fn config() -> Result<UpstreamConfig, String> {
    let mut c = UpstreamConfig::default();
    if let Some(raw) = var("DEMO_UPSTREAM_SHAPE") {
        c.shape = Shape::parse(&raw).ok_or_else(|| format!("DEMO_UPSTREAM_SHAPE={raw:?} is not oauth2, seed003 or seed002"))?;
        // The shape's own lifetimes unless set below.
        (c.access_ttl, c.refresh_ttl) = c.shape.lifetimes();
    }
    c.address = parse::<SocketAddr>("DEMO_UPSTREAM_ADDRESS", "an address like 127.0.0.1:4000")?
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4000)));
    c.control_address =
        parse::<SocketAddr>("DEMO_UPSTREAM_CONTROL_ADDRESS", "an address like 127.0.0.1:4001")?
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4001)));
    let seconds = |name| parse::<u64>(name, "a whole number of seconds");
    if let Some(s) = seconds("DEMO_UPSTREAM_ACCESS_TTL")? {
        if s == 0 {
            return Err("DEMO_UPSTREAM_ACCESS_TTL must be at least 1 second".into());
        }
        c.access_ttl = Duration::from_secs(s);
    }
    if let Some(s) = seconds("DEMO_UPSTREAM_REFRESH_TTL")? {
        c.refresh_ttl = Duration::from_secs(s);
    }
    if let Some(s) = seconds("DEMO_UPSTREAM_ROTATION_GRACE")? {
        c.rotation_grace = Duration::from_secs(s);
    }
    c.test_controls = parse::<bool>("DEMO_UPSTREAM_TEST_CONTROLS", "true or false")?.unwrap_or(false);
    if parse::<bool>("DEMO_UPSTREAM_FAST_HASHING", "true or false")?.unwrap_or(false) {
        c.hash_cost = HashCost::Fast;
    }
    if let Some(raw) = var("DEMO_UPSTREAM_DATABASE") {
        c.database = Database::parse(&raw);
    }
    if let (Some(id), Some(secret)) = (var("DEMO_UPSTREAM_CLIENT_ID"), var("DEMO_UPSTREAM_CLIENT_SECRET")) {
        c.clients = vec![ClientCredentials { id, secret }];
    }
    Ok(c)
}

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        let help: Vec<&str> = include_str!("main.rs")
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect();
        let _ = writeln!(std::io::stdout(), "{}", help.join("\n"));
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo-upstream: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match spawn(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo-upstream: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("demo upstream listening on {}", running.base_url());
    if let Some(url) = running.control_url() {
        eprintln!("test controls on {url}/_test/");
    }
    let _ = tokio::signal::ctrl_c().await;
    running.shutdown();
    ExitCode::SUCCESS
}
