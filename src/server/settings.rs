//! The app's settings: one typed struct, read at start from `Leptos.toml` (or the file named by
//! `TOKENLESS_CONFIG`) with environment variables overriding it, and validated before anything
//! starts. Every error names the setting and the variable that sets it and says how to fix it.
//!
//! Environment variables: `TOKENLESS_<SECTION>__<KEY>`, e.g. `TOKENLESS_SERVER__ADDRESS`.

use std::net::SocketAddr;
use std::path::PathBuf;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

/// Where the settings file is, unless `TOKENLESS_CONFIG` says otherwise.
pub const DEFAULT_FILE: &str = "Leptos.toml";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the settings: {0}")]
    Read(String),
    #[error("setting `{key}` (env {env}) is invalid: {problem}")]
    Invalid { key: &'static str, env: &'static str, problem: String },
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
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub address: SocketAddr,
    pub mode: Mode,
    /// The default `tracing` filter when `RUST_LOG` is not set.
    pub log: String,
}

/// The shape of the file and environment, before validation.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Raw {
    server: RawServer,
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
        let env: config::Map<String, String> =
            env.into_iter().filter(|(k, _)| k.starts_with("TOKENLESS_")).collect();
        let mut builder = Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(file);
        }
        let raw: Raw = builder
            .add_source(
                Environment::with_prefix("TOKENLESS").prefix_separator("_").separator("__").source(Some(env)),
            )
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| SettingsError::Read(e.to_string()))?;
        Self::validate(raw)
    }

    /// Defaults only: no file, no environment.
    pub fn defaults() -> Result<Self, SettingsError> {
        Self::validate(Raw::default())
    }

    fn validate(raw: Raw) -> Result<Self, SettingsError> {
        let address = raw.server.address.trim().parse().map_err(|_| SettingsError::Invalid {
            key: "server.address",
            env: "TOKENLESS_SERVER__ADDRESS",
            problem: format!(
                "{:?} is not an address to listen on; write it like 127.0.0.1:3000",
                raw.server.address
            ),
        })?;
        let mode = match raw.server.mode.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Mode::Development,
            "production" | "prod" => Mode::Production,
            other => {
                return Err(SettingsError::Invalid {
                    key: "server.mode",
                    env: "TOKENLESS_SERVER__MODE",
                    problem: format!("{other:?} is neither \"development\" nor \"production\""),
                })
            }
        };
        Ok(Settings { server: ServerSettings { address, mode, log: raw.server.log } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            env(&[("TOKENLESS_SERVER__ADDRESS", "0.0.0.0:8080"), ("TOKENLESS_SERVER__MODE", "production")]),
        )
        .unwrap();
        assert_eq!(s.server.address.to_string(), "0.0.0.0:8080");
        assert_eq!(s.server.mode, Mode::Production);
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
}
