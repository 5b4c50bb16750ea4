//! The session settings as an app nests them in its own configuration (a `[session]` table,
//! say): [`SessionConfig`] deserializes with the library's one set of defaults and is validated
//! once, at start, into [`SessionOptions`], what [`crate::SessionManager::builder`] takes.
//! A bad value's [`ConfigError`] names its key (relative to the table) and the fix; the app
//! adds the table's name and, if it reads the environment, the variable.
//!
//! ```
//! # use tokenless_bff::SessionConfig;
//! let config: SessionConfig = serde_json::from_str(r#"{ "same_site": "strict" }"#).unwrap();
//! let options = config.validate().unwrap();
//! assert_eq!(options.cookie_name, "tokenless_session");
//! ```

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tower_cookies::cookie::SameSite;

use crate::client::ClientAuth;
use crate::cookies::CookiePolicy;
use crate::manager::Limits;
use crate::refresh::RefreshConfig;
use crate::seal::{KeyError, KeyRing};

/// Ten years: more than any session, token or wait should last, and far from overflowing.
pub const MAX_SECONDS: u64 = 10 * 366 * 24 * 3600;

/// A setting that cannot be used: which one, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` {problem}")]
pub struct ConfigError {
    /// The key, relative to the table the settings are nested in (`cookie_name`,
    /// `oidc.issuer`).
    pub key: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl ConfigError {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError { key: key.into(), problem: problem.into() }
    }

    /// The same problem, its key named from the table `table` is nested in (`issuer` in
    /// `oidc` → `oidc.issuer`).
    pub fn within(self, table: &str) -> Self {
        ConfigError { key: format!("{table}.{}", self.key), problem: self.problem }
    }
}

/// The session cookie and refresh settings, as written in a file or the environment.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// The cookie's name; over https it gets the `__Host-` prefix. Letters, digits, `_`, `-`.
    pub cookie_name: String,
    /// `lax` or `strict` (`none` would send the session cross-site, and is refused).
    pub same_site: String,
    /// The sealing keys, `ID:BASE64` (32 bytes), comma separated, the first one sealing; empty
    /// when none is configured (the app decides what then: a development key, or refusing to
    /// start).
    pub keys: SecretString,
    /// Refresh an access token that expires within this many seconds before using it.
    pub refresh_skew_secs: u64,
    /// A session unused this long is over.
    pub idle_timeout_secs: u64,
    /// A session is over this long after sign-in, however active.
    pub absolute_timeout_secs: u64,
    /// How long a request waits for a refresh (its own or one it joined), in milliseconds.
    pub refresh_wait_ms: u64,
    /// How long a refresh's result is handed to requests still carrying the old cookie; 0 is
    /// allowed (tests use it) but makes parallel requests present rotated tokens.
    pub rotation_grace_secs: u64,
    /// Refresh results and session marks remembered at most (each kind).
    pub refresh_memory: usize,
    /// Timeout of a refresh grant, in milliseconds; longer than the wait, because a grant
    /// abandoned after the upstream rotated is one the next request would replay.
    pub refresh_timeout_ms: u64,
    /// Where the refresh memory lives: `sqlite` (a file of this instance's, at `sqlite_path`:
    /// sign-outs survive a restart; needs the `sqlite` feature), `memory` (this process:
    /// forgotten at restart; tests and benchmarks) or `redis` (shared by every instance that
    /// names the same Redis and prefix; needs the `redis` feature).
    pub store: String,
    /// The file of `store = "sqlite"` (made with its folder if missing); one process per file.
    pub sqlite_path: String,
    /// The Redis of `store = "redis"`: `redis://host:6379/0` (`rediss://` for TLS; a password
    /// in it stays secret).
    pub redis_url: SecretString,
    /// What every Redis key of these sessions starts with; instances that share it share
    /// refreshes.
    pub redis_prefix: String,
}

/// Where the refresh memory lives.
#[derive(Debug, Clone)]
pub enum Store {
    /// In this process ([`crate::InProcess`]): forgotten at restart.
    Memory,
    /// In a SQLite file of this instance's (`SqliteMemory`, feature `sqlite`); `None` when no
    /// path was given (the builder refuses it: an app decides where, as Tokenless does in
    /// development).
    Sqlite {
        /// The file.
        path: Option<std::path::PathBuf>,
    },
    /// On Redis, shared by every instance with the same URL and prefix (`RedisMemory`).
    Redis {
        /// The server's URL.
        url: SecretString,
        /// The key prefix.
        prefix: String,
    },
}

impl Default for SessionConfig {
    /// The library's defaults, the only place they are written.
    fn default() -> Self {
        SessionConfig {
            cookie_name: "tokenless_session".into(),
            same_site: "lax".into(),
            keys: SecretString::from(String::new()),
            refresh_skew_secs: 30,
            idle_timeout_secs: 14 * 24 * 3600,
            absolute_timeout_secs: 30 * 24 * 3600,
            refresh_wait_ms: 5_000,
            rotation_grace_secs: 60,
            refresh_memory: 100_000,
            refresh_timeout_ms: 30_000,
            store: "sqlite".into(),
            sqlite_path: String::new(),
            redis_url: SecretString::from(String::new()),
            redis_prefix: "tokenless:".into(),
        }
    }
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("cookie_name", &self.cookie_name)
            .field("same_site", &self.same_site)
            .field("keys", &if self.keys.expose_secret().is_empty() { "(none)" } else { "(set)" })
            .finish_non_exhaustive()
    }
}

/// Validated session settings.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The cookie's base name (without the `__Host-` prefix).
    pub cookie_name: String,
    /// The cookie's SameSite attribute.
    pub same_site: SameSite,
    /// The configured keys (already checked to parse), if any.
    pub keys: Option<SecretString>,
    /// Refresh skew, idle and absolute timeouts.
    pub limits: Limits,
    /// The refresh machinery's waits, grace and memory.
    pub refresh: RefreshConfig,
    /// Where the refresh memory lives.
    pub store: Store,
}

impl Default for SessionOptions {
    fn default() -> Self {
        match SessionConfig::default().validate() {
            Ok(options) => options,
            // The defaults are valid (a unit test says so); this arm is never taken.
            Err(e) => unreachable!("the default session settings are invalid: {e}"),
        }
    }
}

impl SessionOptions {
    /// The cookie's attributes; `secure` when the site is served over https.
    pub fn cookie_policy(&self, secure: bool) -> CookiePolicy {
        CookiePolicy::new(&self.cookie_name, secure, self.same_site)
    }

    /// The key ring of the configured keys, if any.
    pub fn key_ring(&self) -> Option<Result<KeyRing, KeyError>> {
        self.keys.as_ref().map(|keys| KeyRing::parse(keys.expose_secret()))
    }
}

/// `raw` as an http(s) URL with a host; empty (after trimming) is none. The error names `key`.
pub fn http_url(raw: &str, key: &str) -> Result<Option<url::Url>, ConfigError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let url = url::Url::parse(raw).map_err(|e| ConfigError::new(key, format!("{raw:?} is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::new(key, format!("{raw:?} must be an http(s) URL with a host")));
    }
    Ok(Some(url))
}

/// How an OAuth 2.0 client authenticates: `client_secret_basic` or `client_secret_post`.
pub(crate) fn client_auth(raw: &str, key: &str) -> Result<ClientAuth, ConfigError> {
    match raw.trim() {
        "client_secret_basic" => Ok(ClientAuth::ClientSecretBasic),
        "client_secret_post" => Ok(ClientAuth::ClientSecretPost),
        other => Err(ConfigError::new(
            key,
            format!("{other:?} is neither client_secret_basic nor client_secret_post"),
        )),
    }
}

/// A duration in seconds between 1 and [`MAX_SECONDS`].
pub fn seconds(value: u64, key: &'static str) -> Result<Duration, ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(key, "must be at least 1"));
    }
    if value > MAX_SECONDS {
        return Err(ConfigError::new(key, format!("must be at most {MAX_SECONDS} (ten years)")));
    }
    Ok(Duration::from_secs(value))
}

/// A duration in milliseconds, at least 1, at most [`MAX_SECONDS`].
pub fn millis(value: u64, key: &'static str) -> Result<Duration, ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(key, "must be at least 1"));
    }
    if value / 1000 > MAX_SECONDS {
        return Err(ConfigError::new(key, format!("must be at most {} (ten years)", MAX_SECONDS * 1000)));
    }
    Ok(Duration::from_millis(value))
}

impl SessionConfig {
    /// Checks every value; the first bad one is the error.
    pub fn validate(&self) -> Result<SessionOptions, ConfigError> {
        let cookie_name = self.cookie_name.trim().to_string();
        if cookie_name.is_empty()
            || !cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::new("cookie_name", "use letters, digits, '_' and '-' only"));
        }
        let same_site = match self.same_site.trim().to_ascii_lowercase().as_str() {
            "lax" => SameSite::Lax,
            "strict" => SameSite::Strict,
            other => {
                return Err(ConfigError::new(
                    "same_site",
                    format!("{other:?} is neither \"lax\" nor \"strict\" (None would send the session cross-site)"),
                ))
            }
        };
        let keys = self.keys.expose_secret().trim();
        let keys = if keys.is_empty() {
            None
        } else {
            KeyRing::parse(keys).map_err(|e| ConfigError::new("keys", e.to_string()))?;
            Some(SecretString::from(keys.to_string()))
        };
        let limits = Limits {
            refresh_skew: Duration::from_secs(self.refresh_skew_secs.min(MAX_SECONDS)),
            idle_timeout: seconds(self.idle_timeout_secs, "idle_timeout_secs")?,
            absolute_timeout: seconds(self.absolute_timeout_secs, "absolute_timeout_secs")?,
        };
        if self.refresh_memory == 0 {
            return Err(ConfigError::new(
                "refresh_memory",
                "must be at least 1 (100000 entries take a few tens of MB at most)",
            ));
        }
        let refresh = RefreshConfig {
            wait: millis(self.refresh_wait_ms, "refresh_wait_ms")?,
            grant_timeout: millis(self.refresh_timeout_ms, "refresh_timeout_ms")?,
            grace: Duration::from_secs(self.rotation_grace_secs.min(MAX_SECONDS)),
            capacity: self.refresh_memory,
            ended_capacity: self.refresh_memory,
            ..RefreshConfig::default()
        };
        let store = match self.store.trim() {
            "memory" => Store::Memory,
            "sqlite" => Store::Sqlite {
                path: Some(self.sqlite_path.trim()).filter(|p| !p.is_empty()).map(std::path::PathBuf::from),
            },
            "redis" => {
                let raw = self.redis_url.expose_secret().trim();
                let url_ok = url::Url::parse(raw).is_ok_and(|u| matches!(u.scheme(), "redis" | "rediss") && u.host().is_some());
                if !url_ok {
                    return Err(ConfigError::new(
                        "redis_url",
                        "with store = \"redis\", the Redis to use: redis://host:6379/0 (rediss:// for TLS)",
                    ));
                }
                let prefix = self.redis_prefix.trim();
                if prefix.is_empty() || prefix.len() > 64 || prefix.contains(char::is_whitespace) {
                    return Err(ConfigError::new("redis_prefix", "must be 1 to 64 characters without spaces (tokenless:)"));
                }
                Store::Redis { url: SecretString::from(raw.to_string()), prefix: prefix.to_string() }
            }
            other => {
                return Err(ConfigError::new("store", format!("{other:?} is none of \"sqlite\", \"memory\", \"redis\"")));
            }
        };
        Ok(SessionOptions { cookie_name, same_site, keys, limits, refresh, store })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(change: impl FnOnce(&mut SessionConfig)) -> Result<SessionOptions, ConfigError> {
        let mut config = SessionConfig::default();
        change(&mut config);
        config.validate()
    }

    #[test]
    fn the_defaults_are_valid_and_match_the_parts_defaults() {
        let options = SessionConfig::default().validate().unwrap();
        assert_eq!(options.limits.refresh_skew, Limits::default().refresh_skew);
        assert_eq!(options.limits.idle_timeout, Limits::default().idle_timeout);
        assert_eq!(options.refresh.wait, RefreshConfig::default().wait);
        assert_eq!(options.refresh.grant_timeout, RefreshConfig::default().grant_timeout);
        assert_eq!(options.same_site, SameSite::Lax);
        assert!(options.keys.is_none());
        assert!(matches!(options.store, Store::Sqlite { path: None }), "a file, named by the app");
        let named = SessionConfig { sqlite_path: " /var/lib/m.sqlite3 ".into(), ..SessionConfig::default() }.validate().unwrap();
        assert!(matches!(named.store, Store::Sqlite { path: Some(p) } if p == std::path::Path::new("/var/lib/m.sqlite3")));
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let cases: [(&str, fn(&mut SessionConfig)); 13] = [
            ("store", |c| c.store = "postgres".into()),
            ("redis_url", |c| c.store = "redis".into()),
            ("redis_url", |c| {
                c.store = "redis".into();
                c.redis_url = SecretString::from("http://127.0.0.1:6379".to_string());
            }),
            ("redis_prefix", |c| {
                c.store = "redis".into();
                c.redis_url = SecretString::from("redis://127.0.0.1:6379/0".to_string());
                c.redis_prefix = "a b".into();
            }),
            ("cookie_name", |c| c.cookie_name = "a b".into()),
            ("cookie_name", |c| c.cookie_name = " ".into()),
            ("same_site", |c| c.same_site = "none".into()),
            ("keys", |c| c.keys = SecretString::from("1:short".to_string())),
            ("idle_timeout_secs", |c| c.idle_timeout_secs = 0),
            ("absolute_timeout_secs", |c| c.absolute_timeout_secs = u64::MAX),
            ("refresh_wait_ms", |c| c.refresh_wait_ms = 0),
            ("refresh_memory", |c| c.refresh_memory = 0),
            ("refresh_timeout_ms", |c| c.refresh_timeout_ms = 0),
        ];
        for (key, change) in cases {
            let e = with(change).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn keys_never_print() {
        let secret = "1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let config = SessionConfig { keys: SecretString::from(secret.to_string()), ..SessionConfig::default() };
        assert!(!format!("{config:?}").contains("AAAA"));
        let options = config.validate().unwrap();
        assert!(!format!("{options:?}").contains("AAAA"));
        let redis = SessionConfig {
            store: "redis".into(),
            redis_url: SecretString::from("redis://:hunter2@127.0.0.1:6379/0".to_string()),
            ..SessionConfig::default()
        };
        assert!(!format!("{redis:?}").contains("hunter2"));
        let options = redis.validate().unwrap();
        assert!(matches!(&options.store, Store::Redis { prefix, .. } if prefix == "tokenless:"));
        assert!(!format!("{options:?}").contains("hunter2"), "{options:?}");
    }
}
