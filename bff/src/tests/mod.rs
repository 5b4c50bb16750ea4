//! Tests that reach inside the crate: the refresh machinery on an injected clock and a scripted
//! upstream (every interleaving, both refresh memories), and property tests over every input a
//! browser controls. The crate's public surface is tested from `bff/tests/` and `examples/`.

mod fuzz;
pub(crate) mod refresher;

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
        .options(crate::SessionConfig { store: "memory".into(), ..crate::SessionConfig::default() }.validate().unwrap())
        .keys(crate::KeyRing::ephemeral())
        .build()
        .unwrap();
    std::sync::Arc::new(manager)
}

/// The value of `name` in OpenMetrics `text`, summed over its labels: counters by their
/// `_total` line, gauges by their own (`leases` is not `leases_lost`).
pub(crate) fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let rest = rest.strip_prefix("_total").unwrap_or(rest);
            rest.starts_with([' ', '{']).then(|| line.rsplit(' ').next()?.parse::<u64>().ok())?
        })
        .sum()
}
