//! Tests that reach inside the crate: the refresh machinery on an injected clock and a scripted
//! upstream (every interleaving, both refresh memories), and property tests over every input a
//! browser controls. The crate's public surface is tested from `bff/tests/` and `examples/`.

mod fuzz;
mod refresher;

/// A manager whose upstream is never called (for tests where nobody signs in).
pub(crate) fn quiet_manager() -> std::sync::Arc<crate::SessionManager> {
    let upstream = crate::UpstreamConfig {
        base_url: "http://127.0.0.1:9".into(),
        token_url: "/token".into(),
        revocation_url: "/revoke".into(),
        userinfo_url: "/userinfo".into(),
        client_id: "c".into(),
        ..crate::UpstreamConfig::default()
    };
    let manager = crate::SessionManager::builder(upstream.validate().unwrap().build().unwrap())
        .options(crate::SessionConfig::default().validate().unwrap())
        .keys(crate::KeyRing::ephemeral())
        .build()
        .unwrap();
    std::sync::Arc::new(manager)
}
