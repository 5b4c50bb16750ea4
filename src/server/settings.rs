//! The app's settings: one typed struct, read at start from `Leptos.toml` (or the file named by
//! `TOKENLESS_CONFIG`) with environment variables overriding it, and validated before anything
//! starts. Every error names the setting and the variable that sets it and says how to fix it.
//!
//! Environment variables: `TOKENLESS_<SECTION>__<KEY>`, e.g. `TOKENLESS_SERVER__ADDRESS`.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokenless_bff::http_api::HttpApiConfig;
use tokenless_bff::{ConfigError, SessionConfig, SessionOptions, UpstreamConfig, UpstreamKind, UpstreamOptions};
use tokenless_upstream::config::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEV_DATABASE, OAUTH2_PATHS};
use tokenless_upstream::{Database, Shape};
use url::Url;

/// Where the settings file is, unless `TOKENLESS_CONFIG` says otherwise.
pub const DEFAULT_FILE: &str = "Leptos.toml";

/// Where development keeps its session key when none is configured, relative to the directory
/// the app runs in (the project root under `cargo leptos` and `make`).
pub const DEV_KEY_FILE: &str = "target/tokenless-dev/session-key";

/// Where development keeps its refresh memory (sign-outs, refresh results) when no
/// `session.sqlite_path` is configured, relative to the same directory; `make reset-demo`
/// removes it with the rest.
pub const DEV_MEMORY_FILE: &str = "target/tokenless-dev/refresh-memory.sqlite3";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the settings: {0}")]
    Read(String),
    #[error("setting `{key}` (env {env}) is invalid: {problem}")]
    Invalid { key: String, env: String, problem: String },
}

/// Development allows plain http on localhost and generates throw-away keys; production refuses
/// to start without real ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Development,
    Production,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub site: SiteSettings,
    pub session: SessionSettings,
    /// The library's upstream settings; the app's defaults are the demo's layout and
    /// credentials ([`APP_DEFAULTS`]).
    pub upstream: UpstreamOptions,
    pub demo: DemoSettings,
    pub metrics: MetricsSettings,
    pub passthrough: PassthroughSettings,
}

/// `/api/upstream/...`: which upstream calls browser code may make through the BFF.
#[derive(Debug, Clone)]
pub struct PassthroughSettings {
    pub allow: tokenless_bff::passthrough::Allowlist,
}

/// The shortest `/metrics` bearer token production accepts.
const METRICS_TOKEN_MIN: usize = 16;

/// `/metrics` (Prometheus text): refresh counters and timings.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`.
    pub token: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub address: SocketAddr,
    pub mode: Mode,
    /// The default `tracing` filter when `RUST_LOG` is not set.
    pub log: String,
}

#[derive(Debug, Clone)]
pub struct SiteSettings {
    /// The origin people reach the app at (`https://app.example`). `None` in development: the
    /// request's `Host` over plain http.
    pub origin: Option<Url>,
}

impl SiteSettings {
    /// Served over https: cookies get `Secure` and the `__Host-` prefix.
    pub fn secure(&self) -> bool {
        self.origin.as_ref().is_some_and(|o| o.scheme() == "https")
    }
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The library's session settings (cookie, keys, limits, refresh).
    pub options: SessionOptions,
    /// Development without `keys`: the file its key is kept in (made at the first start), so
    /// sessions survive restarts. `None`: a throw-away key per start.
    pub dev_key_file: Option<PathBuf>,
}

/// The embedded demo upstream, used when `upstream.base_url` is empty.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    pub address: SocketAddr,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub test_controls: bool,
    /// Benchmark baseline only: every request gets one server-held session of the demo user,
    /// without reading or writing any cookie (the auth layer bypassed). Development mode only.
    pub bench_fixed_session: bool,
    pub control_address: SocketAddr,
    /// Cheap password hashing (tests create many accounts on debug builds).
    pub fast_hashing: bool,
    /// Where its users and sign-ins are kept: a SQLite file, or in memory.
    pub database: Database,
    /// The API it speaks; the app talks to it accordingly (a cookie shape through
    /// [`HttpApiConfig`] presets: [`preset`]).
    pub shape: Shape,
}

/// The `[upstream.http_api]` block that fronts the demo upstream in a seed's shape: the same
/// text as README's "Plug in your API" (a test keeps them equal).
pub fn preset_text(shape: Shape) -> Option<&'static str> {
    match shape {
        Shape::OAuth2 => None,
        Shape::Seed003 => Some(include_str!("presets/seed003.toml")),
        Shape::Seed002 => Some(include_str!("presets/seed002.toml")),
    }
}

/// The demo upstream's [`HttpApiConfig`] for a cookie shape.
pub fn preset(shape: Shape) -> Option<HttpApiConfig> {
    let text = preset_text(shape)?;
    #[derive(Deserialize)]
    struct Wrapper {
        upstream: UpstreamTable,
    }
    #[derive(Deserialize)]
    struct UpstreamTable {
        http_api: HttpApiConfig,
    }
    let parsed: Result<Wrapper, _> = Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize());
    match parsed {
        Ok(w) => Some(w.upstream.http_api),
        Err(e) => {
            // Compiled in and covered by a test: cannot happen in a build that passed it.
            tracing::error!(error = %e, "a built-in upstream preset does not parse");
            None
        }
    }
}

/// This app's defaults for the library's `[upstream]` table (whose own leave them empty): the
/// embedded demo's layout and client, and the roles its userinfo answers with.
pub const APP_DEFAULTS: [(&str, &str); 7] = [
    ("upstream.token_url", OAUTH2_PATHS[0]),
    ("upstream.revocation_url", OAUTH2_PATHS[1]),
    ("upstream.userinfo_url", OAUTH2_PATHS[2]),
    ("upstream.registration_url", OAUTH2_PATHS[3]),
    ("upstream.client_id", DEFAULT_CLIENT_ID),
    ("upstream.client_secret", DEFAULT_CLIENT_SECRET),
    ("upstream.profile.roles", "/roles"),
];

/// The shape of the file and environment, before validation.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct Raw {
    server: RawServer,
    site: RawSite,
    session: SessionConfig,
    /// `session.dev_key_file`, read on its own (the `[session]` table is the library's).
    #[serde(skip)]
    dev_key_file: String,
    upstream: UpstreamConfig,
    demo: RawDemo,
    metrics: RawMetrics,
    passthrough: RawPassthrough,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            server: RawServer::default(),
            site: RawSite::default(),
            session: SessionConfig::default(),
            dev_key_file: DEV_KEY_FILE.into(),
            upstream: UpstreamConfig::default(),
            demo: RawDemo::default(),
            metrics: RawMetrics::default(),
            passthrough: RawPassthrough::default(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawPassthrough {
    allow: String,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawMetrics {
    enabled: bool,
    token: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics { enabled: true, token: String::new() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawServer {
    address: String,
    mode: String,
    log: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            address: "127.0.0.1:3000".into(),
            mode: "development".into(),
            log: "info,tokenless=debug,tokenless_bff=debug,tokenless_upstream=info".into(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawSite {
    origin: String,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawDemo {
    address: String,
    access_ttl_secs: Option<u64>,
    refresh_ttl_secs: Option<u64>,
    shape: String,
    test_controls: bool,
    bench_fixed_session: bool,
    control_address: String,
    fast_hashing: bool,
    database: String,
}

impl Default for RawDemo {
    fn default() -> Self {
        RawDemo {
            address: "127.0.0.1:0".into(),
            access_ttl_secs: None,
            refresh_ttl_secs: None,
            shape: "oauth2".into(),
            test_controls: false,
            bench_fixed_session: false,
            control_address: "127.0.0.1:0".into(),
            fast_hashing: false,
            database: DEV_DATABASE.into(),
        }
    }
}

/// The environment variable that sets `key` (`session.cookie_name` →
/// `TOKENLESS_SESSION__COOKIE_NAME`): how the `config` crate reads the environment, written
/// once.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}_{}", key.replace('.', ENV_SEPARATOR).to_ascii_uppercase())
}

/// Environment variables start with this, then `_`...
const ENV_PREFIX: &str = "TOKENLESS";
/// ...and nested keys are joined with this.
const ENV_SEPARATOR: &str = "__";

/// A value of the wrong type names its key and variable; anything else (an unreadable file) is
/// said as it is.
fn read_error(e: config::ConfigError) -> SettingsError {
    match &e {
        config::ConfigError::Type { key: Some(key), .. } => invalid(key, e.to_string()),
        // A value a table's own parser refused (an endpoint string, an unknown key in it).
        config::ConfigError::At { key: Some(key), error, .. } => invalid(key, error.to_string()),
        // A table given without one of its required keys.
        config::ConfigError::NotFound(key) => invalid(key, "is required in its table (README: Plug in your API)"),
        _ => SettingsError::Read(e.to_string()),
    }
}

fn invalid(key: &str, problem: impl Into<String>) -> SettingsError {
    SettingsError::Invalid { key: key.to_string(), env: env_var(key), problem: problem.into() }
}

/// A library setting's error, named in the app's `table`.
fn nested(table: &str, e: ConfigError) -> SettingsError {
    let e = e.within(table);
    invalid(&e.key, e.problem)
}

/// An http(s) URL with a host, or none (the library's rule, named in this app's settings).
fn optional_url(raw: &str, key: &str) -> Result<Option<Url>, SettingsError> {
    tokenless_bff::http_url(raw, key).map_err(|e| invalid(&e.key, e.problem))
}

fn parse_address(raw: &str, key: &str) -> Result<SocketAddr, SettingsError> {
    raw.trim().parse().map_err(|_| {
        invalid(key, format!("{raw:?} is not an address to listen on; write it like 127.0.0.1:3000"))
    })
}

fn seconds(value: u64, key: &'static str) -> Result<Duration, SettingsError> {
    tokenless_bff::seconds(value, key).map_err(|e| invalid(&e.key, e.problem))
}

impl Settings {
    /// Reads `TOKENLESS_CONFIG` (or `Leptos.toml` in the working directory, if present) and the
    /// `TOKENLESS_*` environment variables.
    pub fn load() -> Result<Self, SettingsError> {
        let path = std::env::var_os("TOKENLESS_CONFIG").map(PathBuf::from);
        let required = path.is_some();
        let path = path.unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
        let file = File::from(path.clone()).format(FileFormat::Toml).required(required);
        Self::from_sources(Some(file), std::env::vars())
    }

    /// Settings from an optional file plus the given environment; what tests use.
    pub fn from_sources(
        file: Option<File<config::FileSourceFile, FileFormat>>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let prefix = format!("{ENV_PREFIX}_");
        let env: config::Map<String, String> = env.into_iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
        let mut builder = Config::builder();
        for (key, value) in APP_DEFAULTS {
            builder = builder.set_default(key, value).map_err(read_error)?;
        }
        if let Some(file) = file {
            builder = builder.add_source(file);
        }
        let config = builder
            .add_source(
                Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("_")
                    .separator(ENV_SEPARATOR)
                    .try_parsing(true)
                    .source(Some(env)),
            )
            .build()
            .map_err(read_error)?;
        if config.get::<config::Value>("upstream.refresh_timeout_ms").is_ok() {
            return Err(invalid(
                "upstream.refresh_timeout_ms",
                "moved: write it as session.refresh_timeout_ms (TOKENLESS_SESSION__REFRESH_TIMEOUT_MS)",
            ));
        }
        let mut raw: Raw = config.clone().try_deserialize().map_err(read_error)?;
        // The app's own key in the library's `[session]` table.
        match config.get_string("session.dev_key_file") {
            Ok(path) => raw.dev_key_file = path,
            Err(config::ConfigError::NotFound(_)) => raw.dev_key_file = DEV_KEY_FILE.into(),
            Err(e) => return Err(read_error(e)),
        }
        Self::validate(raw)
    }

    /// Defaults only: no file, no environment.
    pub fn defaults() -> Result<Self, SettingsError> {
        Self::from_sources(None, Vec::new())
    }

    fn validate(raw: Raw) -> Result<Self, SettingsError> {
        let address = parse_address(&raw.server.address, "server.address")?;
        let mode = match raw.server.mode.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Mode::Development,
            "production" | "prod" => Mode::Production,
            other => {
                return Err(invalid(
                    "server.mode",
                    format!("{other:?} is neither \"development\" nor \"production\""),
                ))
            }
        };
        let server = ServerSettings { address, mode, log: raw.server.log };

        let origin = optional_url(&raw.site.origin, "site.origin")?;
        if let Some(o) = &origin {
            if o.path() != "/" || o.query().is_some() {
                return Err(invalid(
                    "site.origin",
                    "an origin has no path or query: write it like https://app.example",
                ));
            }
        }
        if mode == Mode::Production && !origin.as_ref().is_some_and(|o| o.scheme() == "https") {
            return Err(invalid(
                "site.origin",
                "production needs the https origin people use, like https://app.example",
            ));
        }
        let site = SiteSettings { origin };

        let mut options = raw.session.validate().map_err(|e| nested("session", e))?;
        if options.keys.is_none() && mode == Mode::Production {
            return Err(invalid(
                "session.keys",
                "production needs a sealing key; generate one with `tokenless generate-key` and set it",
            ));
        }
        if let tokenless_bff::Store::Sqlite { path: path @ None } = &mut options.store {
            if mode == Mode::Production {
                return Err(invalid(
                    "session.sqlite_path",
                    "production needs the file the refresh memory is kept in, so that sign-outs survive a restart (like /var/lib/tokenless/refresh-memory.sqlite3); several instances share session.store = \"redis\" instead",
                ));
            }
            *path = Some(PathBuf::from(DEV_MEMORY_FILE));
        }
        let dev_key_file = match raw.dev_key_file.trim() {
            "" => None,
            path => Some(PathBuf::from(path)),
        };
        let session = SessionSettings { options, dev_key_file };

        let upstream = raw.upstream.validate().map_err(|e| nested("upstream", e))?;
        if matches!(upstream.kind, UpstreamKind::HttpApi(_)) && upstream.base_url.is_none() {
            return Err(invalid(
                "upstream.base_url",
                "upstream.kind = \"http_api\" needs the API's address here; without one the embedded demo \
                 starts, and it speaks what demo.shape says (oauth2, seed003, seed002)",
            ));
        }
        if matches!(upstream.kind, UpstreamKind::Oidc(_)) && upstream.base_url.is_none() {
            return Err(invalid(
                "upstream.base_url",
                "upstream.kind = \"oidc\" needs the address of the API your pages call with the provider's \
                 access tokens (the embedded demo accepts only its own)",
            ));
        }
        if matches!(upstream.kind, UpstreamKind::Oidc(_))
            && session.options.same_site == tower_cookies::cookie::SameSite::Strict
        {
            return Err(invalid(
                "session.same_site",
                "\"strict\" cookies are not sent on the way back from an OpenID provider (a cross-site \
                 redirect), so nobody could stay signed in: use \"lax\" with upstream.kind = \"oidc\"",
            ));
        }
        if mode == Mode::Production && upstream.base_url.is_none() {
            return Err(invalid(
                "upstream.base_url",
                "production needs a real upstream; the embedded demo is for development",
            ));
        }
        if mode == Mode::Production
            && upstream.client_secret().is_some_and(|s| s.expose_secret() == DEFAULT_CLIENT_SECRET)
        {
            let key = match upstream.kind {
                UpstreamKind::Oidc(_) => "upstream.oidc.client_secret",
                _ => "upstream.client_secret",
            };
            return Err(invalid(
                key,
                "production refuses the demo upstream's built-in client secret (it is public in this \
                 repository): set the client secret your upstream issued to Tokenless",
            ));
        }

        let d = raw.demo;
        if d.bench_fixed_session && mode == Mode::Production {
            return Err(invalid(
                "demo.bench_fixed_session",
                "bypasses sign-in for benchmarks; never in production",
            ));
        }
        let shape = Shape::parse(&d.shape).ok_or_else(|| {
            invalid(
                "demo.shape",
                format!("{:?} is not oauth2, seed003 or seed002", d.shape),
            )
        })?;
        let (access_default, refresh_default) = shape.lifetimes();
        let demo = DemoSettings {
            address: parse_address(&d.address, "demo.address")?,
            access_ttl: match d.access_ttl_secs {
                Some(v) => seconds(v, "demo.access_ttl_secs")?,
                None => access_default,
            },
            refresh_ttl: match d.refresh_ttl_secs {
                Some(v) => seconds(v, "demo.refresh_ttl_secs")?,
                None => refresh_default,
            },
            shape,
            test_controls: d.test_controls,
            bench_fixed_session: d.bench_fixed_session,
            control_address: parse_address(
                &d.control_address,
                "demo.control_address",
            )?,
            fast_hashing: d.fast_hashing,
            database: match d.database.trim() {
                "" => {
                    return Err(invalid(
                        "demo.database",
                        format!("must name a SQLite file (the default is {DEV_DATABASE}) or be \":memory:\""),
                    ))
                }
                raw => Database::parse(raw),
            },
        };
        let m = raw.metrics;
        let token = m.token.trim();
        if mode == Mode::Production && m.enabled && token.len() < METRICS_TOKEN_MIN {
            return Err(invalid(
                "metrics.token",
                format!(
                    "production serves /metrics only behind a bearer token of at least {METRICS_TOKEN_MIN} \
                     characters: set one (`openssl rand -hex 32`), or turn /metrics off with \
                     {}=false",
                    env_var("metrics.enabled")
                ),
            ));
        }
        let metrics = MetricsSettings {
            enabled: m.enabled,
            token: (!token.is_empty()).then(|| SecretString::from(token.to_string())),
        };
        let allow = tokenless_bff::passthrough::Allowlist::parse(&raw.passthrough.allow).map_err(|e| {
            invalid(
                "passthrough.allow",
                format!("{e}; write rules like \"GET /frogs, GET|HEAD /frogs/*, POST /frogs/*/croaks\""),
            )
        })?;
        let passthrough = PassthroughSettings { allow };
        Ok(Settings { server, site, session, upstream, demo, metrics, passthrough })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenless_bff::http_api::ProfileMap;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let s = Settings::defaults().unwrap();
        assert_eq!(s.server.address.to_string(), "127.0.0.1:3000");
        assert_eq!(s.server.mode, Mode::Development);
    }

    #[test]
    fn the_shipped_file_is_valid() {
        let file = File::new(DEFAULT_FILE, FileFormat::Toml).required(true);
        Settings::from_sources(Some(file), env(&[])).unwrap();
    }

    #[test]
    fn environment_overrides() {
        let s = Settings::from_sources(
            None,
            env(&[
                ("TOKENLESS_SERVER__ADDRESS", "0.0.0.0:8080"),
                ("TOKENLESS_DEMO__TEST_CONTROLS", "true"),
                ("TOKENLESS_DEMO__ACCESS_TTL_SECS", "7"),
                ("TOKENLESS_UPSTREAM__TIMEOUT_MS", "250"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.address.to_string(), "0.0.0.0:8080");
        assert!(s.demo.test_controls);
        assert_eq!(s.demo.access_ttl.as_secs(), 7);
        assert_eq!(s.upstream.timeout.as_millis(), 250);
    }

    #[test]
    fn development_keeps_its_state_under_target_unless_told_otherwise() {
        let s = Settings::defaults().unwrap();
        assert_eq!(s.session.dev_key_file.as_deref(), Some(std::path::Path::new(DEV_KEY_FILE)));
        assert_eq!(s.demo.database, Database::File(DEV_DATABASE.into()));
        assert!(
            matches!(&s.session.options.store, tokenless_bff::Store::Sqlite { path: Some(p) } if p == std::path::Path::new(DEV_MEMORY_FILE)),
            "sign-outs kept in a file by default"
        );
        assert!(DEV_KEY_FILE.starts_with("target/tokenless-dev/") && DEV_DATABASE.starts_with("target/tokenless-dev/"));
        assert!(DEV_MEMORY_FILE.starts_with("target/tokenless-dev/"), "make reset-demo removes it");
        let s = Settings::from_sources(
            None,
            env(&[("TOKENLESS_SESSION__DEV_KEY_FILE", ""), ("TOKENLESS_DEMO__DATABASE", ":memory:")]),
        )
        .unwrap();
        assert_eq!(s.session.dev_key_file, None);
        assert_eq!(s.demo.database, Database::Memory);
        let e =
            Settings::from_sources(None, env(&[("TOKENLESS_DEMO__DATABASE", " ")])).unwrap_err().to_string();
        assert!(e.contains("TOKENLESS_DEMO__DATABASE") && e.contains(":memory:"), "{e}");
    }

    /// A settings file holding `text`, as a user would write it.
    fn settings_file(text: &str) -> (tempfile::TempDir, File<config::FileSourceFile, FileFormat>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, text).unwrap();
        let file = File::from(path).format(FileFormat::Toml).required(true);
        (dir, file)
    }

    #[test]
    fn the_presets_parse_validate_and_are_the_readmes_blocks() {
        let readme = include_str!("../../README.md");
        for shape in [Shape::Seed003, Shape::Seed002] {
            let api = preset(shape).expect("parses");
            api.validate().unwrap();
            assert!(
                readme.contains(preset_text(shape).unwrap()),
                "README shows the {shape:?} preset as it is"
            );
            // The block, copied into a settings file, gives the same description.
            let (_dir, file) = settings_file(preset_text(shape).unwrap());
            let s = Settings::from_sources(Some(file), env(&[])).unwrap();
            match s.upstream.kind {
                UpstreamKind::HttpApi(configured) => assert_eq!(*configured, api),
                other => panic!("{other:?}"),
            }
            assert_eq!(s.upstream.base_url.unwrap().as_str(), "http://127.0.0.1:4000/");
        }
        assert!(preset(Shape::OAuth2).is_none());
    }

    #[test]
    fn an_http_api_is_described_in_a_file_and_overridden_by_the_environment() {
        let (_dir, file) = settings_file(preset_text(Shape::Seed003).unwrap());
        let s = Settings::from_sources(
            Some(file),
            env(&[("TOKENLESS_UPSTREAM__HTTP_API__PRESENT_ACCESS", "cookie:access_token")]),
        )
        .unwrap();
        let UpstreamKind::HttpApi(api) = s.upstream.kind else { panic!("http_api") };
        assert_eq!(api.present_access, tokenless_bff::http_api::Presentation::Cookie("access_token".into()));

        let (_dir2, file) = settings_file(preset_text(Shape::Seed003).unwrap());
        let e = Settings::from_sources(
            Some(file),
            env(&[("TOKENLESS_UPSTREAM__HTTP_API__ACCESS_TOKEN", "accessToken")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("json:/accessToken") && e.contains("access_token"), "{e}");
        let e = Settings::from_sources(None, env(&[("TOKENLESS_UPSTREAM__KIND", "http_api")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("http_api table") && e.contains("TOKENLESS_UPSTREAM__HTTP_API"), "{e}");
        let e = Settings::from_sources(None, env(&[("TOKENLESS_UPSTREAM__KIND", "soap")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("TOKENLESS_UPSTREAM__KIND"), "{e}");
        let e = Settings::from_sources(None, env(&[("TOKENLESS_DEMO__SHAPE", "seed004")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("TOKENLESS_DEMO__SHAPE"), "{e}");
        let s = Settings::from_sources(None, env(&[("TOKENLESS_DEMO__SHAPE", "seed003")])).unwrap();
        assert_eq!(s.demo.access_ttl.as_secs(), 10, "the shape's lifetime");
    }

    /// Every validated key, set through the variable derived from its name, is read from there,
    /// and its error names both: no variable name is spelled by hand.
    #[test]
    fn every_key_is_set_by_its_derived_variable_and_named_in_its_error() {
        let cases = [
            ("server.address", "localhost"),
            ("server.mode", "staging"),
            ("site.origin", "ftp://app.example"),
            ("session.cookie_name", "a b"),
            ("session.same_site", "none"),
            ("session.keys", "1:short"),
            ("session.idle_timeout_secs", "0"),
            ("session.absolute_timeout_secs", "99999999999"),
            ("session.refresh_wait_ms", "0"),
            ("session.refresh_timeout_ms", "0"),
            ("session.refresh_memory", "0"),
            ("session.idle_timeout_secs", "soon"),
            ("upstream.kind", "soap"),
            ("upstream.base_url", "not a url"),
            ("upstream.token_url", "mailto:x@y"),
            ("upstream.revocation_url", "ftp://auth.example/revoke"),
            ("upstream.userinfo_url", "//userinfo"),
            ("upstream.registration_url", "x"),
            ("upstream.client_auth", "private_key_jwt"),
            ("upstream.client_id", " "),
            ("upstream.timeout_ms", "fast"),
            ("upstream.connect_timeout_ms", "0"),
            ("upstream.profile.email", "email"),
            ("demo.address", "nowhere"),
            ("demo.control_address", "nowhere"),
            ("demo.shape", "seed004"),
            ("demo.access_ttl_secs", "0"),
            ("demo.refresh_ttl_secs", "0"),
            ("demo.database", " "),
            ("passthrough.allow", "FETCH /frogs"),
        ];
        for (key, bad) in cases {
            let var = env_var(key);
            assert!(var.starts_with("TOKENLESS_") && !var.contains('.'), "{var}");
            match Settings::from_sources(None, env(&[(&var, bad)])) {
                Err(SettingsError::Invalid { key: named, env, problem }) => {
                    assert_eq!((named.as_str(), env.as_str()), (key, var.as_str()), "{problem}");
                }
                other => panic!("{var}={bad:?} gave {other:?}"),
            }
        }
        assert_eq!(env_var("upstream.http_api.sign_in"), "TOKENLESS_UPSTREAM__HTTP_API__SIGN_IN");
    }

    #[test]
    fn the_oauth2_upstreams_endpoints_and_profile_are_configuration() {
        fn oauth2(s: Settings) -> tokenless_bff::OAuth2Options {
            match s.upstream.kind {
                UpstreamKind::OAuth2(o) => *o,
                other => panic!("{other:?}"),
            }
        }
        let o = oauth2(Settings::defaults().unwrap());
        assert_eq!(
            [&*o.token_url, &*o.revocation_url, &*o.userinfo_url],
            ["/oauth/token", "/oauth/revoke", "/userinfo"]
        );
        assert_eq!(o.registration_url.as_deref(), Some("/users"));
        assert_eq!(o.profile, ProfileMap { roles: "/roles".into(), ..ProfileMap::oidc() });
        assert_eq!(o.client_id, DEFAULT_CLIENT_ID);
        let s = Settings::from_sources(
            None,
            env(&[
                ("TOKENLESS_UPSTREAM__REGISTRATION_URL", ""),
                ("TOKENLESS_UPSTREAM__TOKEN_URL", "https://auth.example/token"),
                ("TOKENLESS_UPSTREAM__PROFILE__NAME", "{given_name} {family_name}"),
            ]),
        )
        .unwrap();
        let o = oauth2(s);
        assert_eq!(o.registration_url, None, "no registration");
        assert_eq!(o.token_url, "https://auth.example/token");
        assert_eq!(o.profile.name, "{given_name} {family_name}");
        assert_eq!(o.profile.id, "/sub", "the other keys keep OIDC's");
        assert_eq!(o.profile.roles, "/roles", "and the app's");
        // An API described but not used, or used without an address, is a mistake said at start.
        let (dir, file) = settings_file(preset_text(Shape::Seed003).unwrap());
        let described = Settings::from_sources(Some(file), env(&[("TOKENLESS_UPSTREAM__KIND", "oauth2")]));
        drop(dir);
        match described {
            Err(SettingsError::Invalid { key, problem, .. }) => {
                assert_eq!(key, "upstream.kind", "{problem}");
                assert!(problem.contains("kind = \"http_api\""), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        let (dir, file) = settings_file(preset_text(Shape::Seed003).unwrap());
        let e = Settings::from_sources(Some(file), env(&[("TOKENLESS_UPSTREAM__BASE_URL", "")])).unwrap_err();
        drop(dir);
        assert!(matches!(&e, SettingsError::Invalid { key, .. } if key == "upstream.base_url"), "{e}");
        let partial = [("TOKENLESS_UPSTREAM__HTTP_API__SIGN_IN", "POST /auth/login")];
        match Settings::from_sources(None, env(&partial)) {
            Err(SettingsError::Invalid { key, env, .. }) => {
                assert_eq!(key, "upstream.http_api.refresh");
                assert_eq!(env, "TOKENLESS_UPSTREAM__HTTP_API__REFRESH");
            }
            other => panic!("a table missing a required key names it: {other:?}"),
        }
        let e = Settings::from_sources(None, env(&[("TOKENLESS_UPSTREAM__PROFILE__AGE", "/age")])).unwrap_err();
        assert!(e.to_string().contains("age"), "an unknown profile key is refused: {e}");
        let e = Settings::from_sources(None, env(&[("TOKENLESS_UPSTREAM__TIMOUT_MS", "50")])).unwrap_err();
        assert!(e.to_string().contains("timout_ms"), "a misspelt key is refused, not ignored: {e}");
        let e = Settings::from_sources(None, env(&[("TOKENLESS_UPSTREAM__REFRESH_TIMEOUT_MS", "30000")])).unwrap_err();
        assert!(
            matches!(&e, SettingsError::Invalid { key, problem, .. }
                if key == "upstream.refresh_timeout_ms" && problem.contains("session.refresh_timeout_ms")),
            "a moved key says where it went: {e}"
        );
        let s = Settings::from_sources(None, env(&[("TOKENLESS_UPSTREAM__REGISTRATION_FIELDS__NAME", "fullName")]))
            .unwrap();
        let fields = oauth2(s).registration_fields;
        assert_eq!((fields.name.as_str(), fields.email.as_str()), ("fullName", "email"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = Settings::from_sources(None, env(&[("TOKENLESS_SERVER__ADDRESS", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("TOKENLESS_SERVER__ADDRESS"), "{e}");
        assert!(e.contains("127.0.0.1:3000"), "{e}");
        let e = Settings::from_sources(None, env(&[("TOKENLESS_SERVER__MODE", "staging")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("TOKENLESS_SERVER__MODE"), "{e}");
    }

    #[test]
    fn production_demands_keys_an_https_origin_and_an_upstream() {
        let prod = [("TOKENLESS_SERVER__MODE", "production")];
        let e = Settings::from_sources(None, env(&prod)).unwrap_err().to_string();
        assert!(e.contains("TOKENLESS_SITE__ORIGIN"), "{e}");
        let e =
            Settings::from_sources(None, env(&[prod[0], ("TOKENLESS_SITE__ORIGIN", "https://app.example")]))
                .unwrap_err()
                .to_string();
        assert!(e.contains("TOKENLESS_SESSION__KEYS") && e.contains("generate-key"), "{e}");
        let key = tokenless_bff::generate_key_spec(1);
        let keyed = [prod[0], ("TOKENLESS_SITE__ORIGIN", "https://app.example"), ("TOKENLESS_SESSION__KEYS", &key)];
        let e = Settings::from_sources(None, env(&keyed)).unwrap_err().to_string();
        assert!(e.contains("TOKENLESS_SESSION__SQLITE_PATH") && e.contains("redis"), "sign-outs must survive a restart: {e}");
        let e = Settings::from_sources(None, env(&[&keyed[..], &[("TOKENLESS_SESSION__SQLITE_PATH", "/var/lib/t/m.sqlite3")]].concat()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("TOKENLESS_UPSTREAM__BASE_URL"), "{e}");
        let complete = [
            prod[0],
            ("TOKENLESS_SITE__ORIGIN", "https://app.example"),
            ("TOKENLESS_SESSION__KEYS", &key),
            ("TOKENLESS_SESSION__SQLITE_PATH", "/var/lib/t/m.sqlite3"),
            ("TOKENLESS_UPSTREAM__BASE_URL", "https://api.example"),
        ];
        // The demo's client secret is in this repository: never in production.
        let e = Settings::from_sources(None, env(&complete)).unwrap_err().to_string();
        assert!(e.contains("TOKENLESS_UPSTREAM__CLIENT_SECRET"), "{e}");
        let complete =
            [&complete[..], &[("TOKENLESS_UPSTREAM__CLIENT_SECRET", "a-real-secret-from-the-upstream")]]
                .concat();
        let complete = &complete[..];
        for weak in ["", "short"] {
            let e = Settings::from_sources(
                None,
                env(&[&complete[..], &[("TOKENLESS_METRICS__TOKEN", weak)]].concat()),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("TOKENLESS_METRICS__TOKEN") && e.contains("TOKENLESS_METRICS__ENABLED=false"),
                "{e}"
            );
        }
        let off = Settings::from_sources(
            None,
            env(&[&complete[..], &[("TOKENLESS_METRICS__ENABLED", "false")]].concat()),
        )
        .unwrap();
        assert!(!off.metrics.enabled);
        let metrics_token = "0123456789abcdef0123456789abcdef";
        let s = Settings::from_sources(
            None,
            env(&[&complete[..], &[("TOKENLESS_METRICS__TOKEN", metrics_token)]].concat()),
        )
        .unwrap();
        assert!(s.site.secure());
        assert!(!format!("{s:?}").contains(metrics_token), "the metrics token never prints");
        assert!(!format!("{s:?}").contains(key.split(':').nth(1).unwrap()), "keys never print");
    }

    #[test]
    fn short_or_malformed_keys_name_the_variable() {
        for bad in ["1:c2hvcnQ=", "nonsense", "1:!!!!"] {
            let e = Settings::from_sources(None, env(&[("TOKENLESS_SESSION__KEYS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("TOKENLESS_SESSION__KEYS"), "{bad}: {e}");
        }
        let e =
            Settings::from_sources(None, env(&[("TOKENLESS_UPSTREAM__BASE_URL", "ftp://x")])).unwrap_err();
        assert!(e.to_string().contains("TOKENLESS_UPSTREAM__BASE_URL"));
        let e = Settings::from_sources(None, env(&[("TOKENLESS_SESSION__SAME_SITE", "none")])).unwrap_err();
        assert!(e.to_string().contains("TOKENLESS_SESSION__SAME_SITE"));
    }

    const VARS: &[&str] = &[
        "TOKENLESS_DEMO__ACCESS_TTL_SECS",
        "TOKENLESS_DEMO__ADDRESS",
        "TOKENLESS_DEMO__BENCH_FIXED_SESSION",
        "TOKENLESS_DEMO__CONTROL_ADDRESS",
        "TOKENLESS_DEMO__DATABASE",
        "TOKENLESS_DEMO__REFRESH_TTL_SECS",
        "TOKENLESS_DEMO__TEST_CONTROLS",
        "TOKENLESS_METRICS__ENABLED",
        "TOKENLESS_METRICS__TOKEN",
        "TOKENLESS_PASSTHROUGH__ALLOW",
        "TOKENLESS_SERVER__ADDRESS",
        "TOKENLESS_SERVER__MODE",
        "TOKENLESS_SESSION__ABSOLUTE_TIMEOUT_SECS",
        "TOKENLESS_SESSION__COOKIE_NAME",
        "TOKENLESS_SESSION__DEV_KEY_FILE",
        "TOKENLESS_SESSION__IDLE_TIMEOUT_SECS",
        "TOKENLESS_SESSION__KEYS",
        "TOKENLESS_SESSION__REFRESH_MEMORY",
        "TOKENLESS_SESSION__REFRESH_WAIT_MS",
        "TOKENLESS_SESSION__SAME_SITE",
        "TOKENLESS_SESSION__REFRESH_SKEW_SECS",
        "TOKENLESS_SESSION__ROTATION_GRACE_SECS",
        "TOKENLESS_SITE__ORIGIN",
        "TOKENLESS_UPSTREAM__BASE_URL",
        "TOKENLESS_UPSTREAM__CLIENT_AUTH",
        "TOKENLESS_UPSTREAM__CLIENT_ID",
        "TOKENLESS_UPSTREAM__CLIENT_SECRET",
        "TOKENLESS_UPSTREAM__REGISTRATION_URL",
        "TOKENLESS_UPSTREAM__REVOCATION_URL",
        "TOKENLESS_UPSTREAM__TIMEOUT_MS",
        "TOKENLESS_UPSTREAM__TOKEN_URL",
        "TOKENLESS_UPSTREAM__USERINFO_URL",
        "TOKENLESS_UPSTREAM__REFRESH_TIMEOUT_MS",
        "TOKENLESS_SESSION__REFRESH_TIMEOUT_MS",
        "TOKENLESS_UPSTREAM__PROFILE__ID",
        "TOKENLESS_UPSTREAM__PROFILE__NAME",
        "TOKENLESS_UPSTREAM__REGISTRATION_FIELDS__EMAIL",
    ];

    proptest::proptest! {
        /// Any environment gets an answer: settings, or an error that says something. Never a
        /// panic (huge numbers, odd URLs, unicode, empty values...).
        #[test]
        fn any_environment_is_an_answer_never_a_panic(
            pairs in proptest::collection::vec(
                (
                    proptest::sample::select(VARS),
                    proptest::prop_oneof![
                        "[0-9]{1,25}",
                        ".{0,30}",
                        proptest::strategy::Just("production".to_string()),
                        proptest::strategy::Just("true".to_string()),
                        "(https?|ftp)://[a-z.]{0,10}(:[0-9]{1,6})?(/[a-z%.]{0,8}){0,2}",
                        "[0-9]{1,3}:[A-Za-z0-9+/=]{0,50}",
                    ],
                ),
                0..8,
            )
        ) {
            let env: Vec<(String, String)> = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            if let Err(e) = Settings::from_sources(None, env) {
                proptest::prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn durations_have_an_upper_bound() {
        let e = Settings::from_sources(
            None,
            env(&[("TOKENLESS_SESSION__IDLE_TIMEOUT_SECS", "18446744073709551615")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("TOKENLESS_SESSION__IDLE_TIMEOUT_SECS") && e.contains("ten years"), "{e}");
    }
}
