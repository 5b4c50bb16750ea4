//! The demo upstream's settings: token lifetimes, the confidential client it accepts, test
//! controls, password-hashing cost, where the data is kept.

use std::net::SocketAddr;
use std::time::Duration;

pub use crate::store::Database;

/// A confidential client allowed to use the token and revocation endpoints.
#[derive(Clone)]
pub struct ClientCredentials {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials").field("id", &self.id).field("secret", &"[redacted]").finish()
    }
}

/// Which API the demo upstream speaks (its tokens, rotation and reuse rules are the same).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shape {
    /// RFC 6749 / 7009: `/oauth/token`, `/oauth/revoke`, `/userinfo`, `/users`.
    #[default]
    OAuth2,
    /// Seed 003's Express backend: access token in JSON, refresh token in a cookie, 10 s tokens.
    Seed003,
    /// Seed 002's NestJS backend: both tokens only in cookies.
    Seed002,
}

impl Shape {
    /// `oauth2`, `seed003` or `seed002`.
    pub fn parse(raw: &str) -> Option<Shape> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "oauth2" => Some(Shape::OAuth2),
            "seed003" => Some(Shape::Seed003),
            "seed002" => Some(Shape::Seed002),
            _ => None,
        }
    }

    /// The access and refresh token lifetimes of the backend this shape imitates.
    pub fn lifetimes(self) -> (Duration, Duration) {
        match self {
            Shape::OAuth2 => (Duration::from_secs(5 * 60), Duration::from_secs(30 * 24 * 3600)),
            Shape::Seed003 => (Duration::from_secs(10), Duration::from_secs(3600)),
            Shape::Seed002 => (Duration::from_secs(30 * 60), Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

/// Argon2id parameters. `Standard` is OWASP's recommendation (19 MiB, 2 passes); `Fast` is for
/// tests, which hash many passwords on a debug build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCost {
    Standard,
    Fast,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Where the API listens; port 0 picks a free one.
    pub address: SocketAddr,
    /// Where the test controls listen (only when `test_controls`); port 0 picks a free one.
    /// They have a listener of their own so that a "down" fault on the API cannot lock them out.
    pub control_address: SocketAddr,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// How long the immediately previous refresh token stays usable after a rotation. 0 (the
    /// default) means never: presenting a rotated token is always treated as theft.
    pub rotation_grace: Duration,
    pub test_controls: bool,
    pub clients: Vec<ClientCredentials>,
    pub seed_demo_users: bool,
    pub hash_cost: HashCost,
    /// HS256 signing key for access tokens; random per start when `None`.
    pub signing_key: Option<Vec<u8>>,
    pub issuer: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Where users, sign-ins and the signing key are kept. In memory by default: each start is
    /// fresh. The app's development default is [`DEV_DATABASE`].
    pub database: Database,
    pub shape: Shape,
}

/// Where the app keeps the embedded demo upstream's data in development, relative to the
/// directory it runs in (the project root under `cargo leptos` and `make`). `cargo clean`, or
/// `make reset-demo`, removes it.
pub const DEV_DATABASE: &str = "target/tokenless-dev/demo-upstream.sqlite3";

/// Where the demo's OAuth 2.0 endpoints are, under its base URL: token, revocation, userinfo
/// and registration (`POST`, JSON `{email, name, password}`).
pub const OAUTH2_PATHS: [&str; 4] = ["/oauth/token", "/oauth/revoke", "/userinfo", "/users"];

pub const DEFAULT_CLIENT_ID: &str = "tokenless";
pub const DEFAULT_CLIENT_SECRET: &str = "tokenless-demo-secret";

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            control_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_ttl: Shape::OAuth2.lifetimes().0,
            refresh_ttl: Shape::OAuth2.lifetimes().1,
            rotation_grace: Duration::ZERO,
            test_controls: false,
            clients: vec![ClientCredentials {
                id: DEFAULT_CLIENT_ID.into(),
                secret: DEFAULT_CLIENT_SECRET.into(),
            }],
            seed_demo_users: true,
            hash_cost: HashCost::Standard,
            signing_key: None,
            issuer: "tokenless-demo-upstream".into(),
            max_body_bytes: 16 * 1024,
            database: Database::Memory,
            shape: Shape::OAuth2,
        }
    }
}

impl UpstreamConfig {
    /// What tests use: short-lived access tokens, test controls on, cheap hashing.
    pub fn for_tests() -> Self {
        UpstreamConfig {
            access_ttl: Duration::from_secs(60),
            test_controls: true,
            hash_cost: HashCost::Fast,
            ..UpstreamConfig::default()
        }
    }
}

/// The demo users every fresh upstream knows (when `seed_demo_users`), as the README lists them.
pub struct DemoUser {
    pub email: &'static str,
    pub name: &'static str,
    pub password: &'static str,
    pub roles: &'static [&'static str],
}

pub const DEMO_USERS: &[DemoUser] = &[
    DemoUser { email: "user@example.com", name: "Dana User", password: "frogs-are-green", roles: &["user"] },
    DemoUser {
        email: "admin@example.com",
        name: "Ada Admin",
        password: "admin-frogs-rule",
        roles: &["user", "admin"],
    },
];
