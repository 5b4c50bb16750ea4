//! Tokenless BFF core: what keeps tokens on the server. Another Leptos or plain axum app can
//! depend on it for the same guarantees.
//!
//! - [`seal`]: AES-256-GCM sealing of cookie values with a rotating key ring, and chunking of
//!   values too large for one cookie.
//! - [`session`]: the sealed payload (tokens that never print, profile, generation, timestamps)
//!   and the freshness decision.
//! - [`client`]: the one upstream client (OAuth 2.0 grants, revocation, userinfo, registration,
//!   resources) with errors that tell a refusal from an outage.

pub mod client;
pub mod seal;
pub mod session;
