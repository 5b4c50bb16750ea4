//! The demo upstream: a small, strict OAuth 2.0-style API (RFC 6749 password and refresh grants
//! with rotation and reuse detection, RFC 7009 revocation, userinfo, registration, frogs, admin
//! stats) that Tokenless and its tests run against, in-process or as its own binary.

pub mod config;
pub mod controls;
pub mod cookie_api;
pub mod error;
pub mod faults;
pub mod oauth;
pub mod passwords;
pub mod recorder;
pub mod resources;
pub mod server;
pub mod state;
pub mod store;
pub mod tokens;

pub use config::{ClientCredentials, Database, HashCost, Shape, UpstreamConfig, DEMO_USERS, DEV_DATABASE};
pub use faults::{FaultKind, FaultSpec};
pub use server::{spawn, RunningUpstream, StartError};
pub use state::Upstream;
