//! Tokenless BFF core: what keeps tokens on the server. Another Leptos or plain axum app can
//! depend on it for the same guarantees.
//!
//! - [`seal`]: AES-256-GCM sealing of cookie values with a rotating key ring, and chunking of
//!   values too large for one cookie.

pub mod seal;
