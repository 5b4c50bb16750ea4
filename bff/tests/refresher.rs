//! The refresher against the demo upstream (rotation on, reuse revokes the family): the
//! orderings of requests around one flight that unit tests cannot reach.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokenless_bff::client::{ClientAuth, ClientConfig, UpstreamClient, UpstreamEndpoints};
use tokenless_bff::refresh::{Known, RefreshConfig, Refresher};
use tokenless_bff::session::{Profile, Session};
use tokenless_upstream::config::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use tokenless_upstream::{spawn, UpstreamConfig};
use url::Url;

/// A request that looked at the remembered results while the flight was in the air, and asks
/// for a refresh only after the flight landed (two tabs, or a thousand requests on two cores,
/// interleave this way): it gets the flight's result; the rotated token is never sent again.
#[tokio::test]
async fn a_refresh_asked_for_after_the_flight_landed_uses_its_result() {
    let upstream = spawn(UpstreamConfig::for_tests()).await.unwrap();
    let base = Url::parse(&upstream.base_url()).unwrap();
    let client = UpstreamClient::new(ClientConfig {
        endpoints: UpstreamEndpoints::under(&base).unwrap(),
        client_id: DEFAULT_CLIENT_ID.into(),
        client_secret: SecretString::from(DEFAULT_CLIENT_SECRET.to_string()),
        auth: ClientAuth::ClientSecretBasic,
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
    })
    .unwrap();
    let now = tokenless_bff::manager::now();
    let tokens = client.password_grant("user@example.com", "frogs-are-green", now).await.unwrap();
    let profile = Profile { id: "1".into(), name: "U".into(), email: "user@example.com".into(), roles: vec![] };
    let session = Session::new("sid-late".into(), now, tokens, profile);
    let refresher = Refresher::new(Arc::new(client), RefreshConfig::default());

    // The late request's look: nothing remembered yet.
    assert!(matches!(refresher.known(&session), Known::Current));
    // The flight (another request's) lands.
    let first = refresher.refresh(&session, true).await.unwrap();
    // Now the late request asks.
    let late = refresher.refresh(&session, true).await.unwrap();

    assert_eq!(late.tokens, first.tokens);
    assert_eq!(late.generation, session.generation + 1);
    let counters = upstream.upstream.counters();
    assert_eq!(counters.grants.get("refresh_token").copied().unwrap_or(0), 1, "{counters:?}");
    assert_eq!(counters.reuse_events, 0, "{counters:?}");
    assert_eq!(refresher.counts().grace_hits, 1);
}
