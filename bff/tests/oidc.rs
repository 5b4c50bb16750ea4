//! OpenID Connect discovery against a real provider (node-oidc-provider, started here on a
//! loopback port) and against providers that answer badly, are down, or come up late.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokenless_bff::oidc::{self, DiscoveryError, OidcConfig, OidcOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

/// node-oidc-provider running `end2end/oidc/provider.mjs`; stopped when dropped.
struct Provider {
    issuer: String,
    _child: tokio::process::Child,
}

async fn start_provider() -> Provider {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(
        root.join("end2end/node_modules/oidc-provider").is_dir(),
        "the OpenID provider's npm package is missing: run `make setup` (npm ci in end2end/)"
    );
    let mut child = tokio::process::Command::new("node")
        .arg("end2end/oidc/provider.mjs")
        .current_dir(&root)
        .env("OIDC_PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (make setup installs it)");
    let stdout = child.stdout.take().expect("its stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the provider starts within 30 s")
        .expect("its stdout reads")
        .expect("it prints `ready <issuer>`");
    let issuer = first.strip_prefix("ready ").unwrap_or_else(|| panic!("unexpected first line {first:?}")).to_string();
    Provider { issuer, _child: child }
}

fn for_issuer(issuer: &str) -> OidcOptions {
    let config = OidcConfig {
        issuer: issuer.into(),
        client_id: "tokenless".into(),
        client_secret: "tokenless-oidc-test-secret".to_string().into(),
        ..OidcConfig::default()
    };
    config.validate().unwrap()
}

/// A provider of our own on a loopback port: `document(issuer)` at the well-known path (and a
/// key set), each answer counted.
async fn stub(document: impl Fn(&str) -> (StatusCode, Value) + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let asked = Arc::new(AtomicUsize::new(0));
    let (count, at) = (asked.clone(), issuer.clone());
    let document = Arc::new(document);
    let app = Router::new()
        .route(
            oidc::WELL_KNOWN,
            get(move || {
                count.fetch_add(1, Ordering::SeqCst);
                let (status, body) = document(&at);
                async move { (status, axum::Json(body)).into_response() }
            }),
        )
        .route("/jwks", get(|| async { axum::Json(json!({ "keys": [test_key()] })) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (issuer, asked)
}

/// A public RSA key (any valid one will do: nothing is verified with it here).
fn test_key() -> Value {
    json!({
        "kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "e": "AQAB",
        "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw"
    })
}

fn document(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
    })
}

/// `document` with `key` changed (`null` removes it).
fn changed(issuer: &str, key: &str, value: Value) -> Value {
    let mut doc = document(issuer);
    match value {
        Value::Null => {
            doc.as_object_mut().unwrap().remove(key);
        }
        v => doc[key] = v,
    }
    doc
}

#[tokio::test]
async fn a_real_provider_is_configured_by_its_issuer_alone() {
    let provider = start_provider().await;
    let options = for_issuer(&provider.issuer);
    let http = oidc::http_client(&options).unwrap();
    let metadata = oidc::discover(&options, &http).await.unwrap();
    assert_eq!(metadata.issuer().as_str(), provider.issuer);
    assert!(metadata.authorization_endpoint().as_str().starts_with(&provider.issuer));
    assert!(metadata.token_endpoint().is_some());
    let logout = metadata.additional_metadata();
    assert!(logout.end_session_endpoint.is_some(), "RP-initiated logout");
    assert!(logout.revocation_endpoint.is_some(), "revocation");
    assert!(logout.backchannel_logout_supported && logout.backchannel_logout_session_supported);
    assert_eq!(metadata.jwks().keys().len(), 1, "its signing key was fetched");
    let keys = oidc::fetch_keys(&http, metadata.jwks_uri().as_str()).await.unwrap();
    assert_eq!(keys.keys().len(), 1);

    // The same provider under an issuer written differently is refused, naming the right one.
    let e = oidc::discover(&for_issuer(&format!("{}/", provider.issuer)), &http).await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains(&format!("set issuer to exactly {:?}", provider.issuer)), "{e}");
}

#[tokio::test]
async fn a_document_that_lacks_what_the_code_flow_needs_names_it_and_is_not_retried() {
    let cases: [(&str, Value, &str); 6] = [
        ("jwks_uri", Value::Null, "jwks_uri"),
        ("authorization_endpoint", Value::Null, "authorization_endpoint"),
        ("token_endpoint", Value::Null, "token_endpoint"),
        ("response_types_supported", json!(["id_token"]), "response_types_supported"),
        ("code_challenge_methods_supported", json!(["plain"]), "S256"),
        ("issuer", json!("https://someone-else.example"), "someone-else.example"),
    ];
    for (key, value, named) in cases {
        let (issuer, asked) = stub(move |at| (StatusCode::OK, changed(at, key, value.clone()))).await;
        let options = for_issuer(&issuer);
        let http = oidc::http_client(&options).unwrap();
        let e = oidc::discover_retrying(&options, &http, [Duration::ZERO; 5]).await.unwrap_err();
        assert!(matches!(e, DiscoveryError::Unusable { .. }), "{key}: {e}");
        assert!(e.to_string().contains(named), "{key}: {e}");
        assert_eq!(asked.load(Ordering::SeqCst), 1, "{key}: a document that cannot be used is asked once");
    }
    // Not JSON, a 404, a key set without keys.
    let (issuer, _) = stub(|_| (StatusCode::NOT_FOUND, json!({}))).await;
    let e = oidc::discover(&for_issuer(&issuer), &reqwest::Client::new()).await.unwrap_err();
    assert!(!e.is_retryable() && e.to_string().contains("404"), "{e}");
    let (issuer, _) = stub(|at| (StatusCode::OK, changed(at, "jwks_uri", json!(format!("{at}/nothing"))))).await;
    let e = oidc::discover(&for_issuer(&issuer), &reqwest::Client::new()).await.unwrap_err();
    assert!(e.to_string().contains("key set"), "{e}");
}

#[tokio::test]
async fn a_provider_down_at_start_is_waited_for() {
    // A provider answering 503 is asked again after each delay, then given up on.
    let (failing, failing_asked) = stub(|_| (StatusCode::SERVICE_UNAVAILABLE, json!({}))).await;
    let options_failing = for_issuer(&failing);
    let http = oidc::http_client(&options_failing).unwrap();
    let e = oidc::discover_retrying(&options_failing, &http, [Duration::ZERO; 2]).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(failing_asked.load(Ordering::SeqCst), 3, "the first try and one per delay");
    let (issuer, asked) = stub(|at| (StatusCode::OK, document(at))).await;

    let up = oidc::discover_retrying(&for_issuer(&issuer), &http, [Duration::ZERO; 2]).await.unwrap();
    assert_eq!(up.issuer().as_str(), issuer);
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    // Started before anything listens: discovery keeps trying until the provider is up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let late_issuer = format!("http://{address}");
    let options_late = for_issuer(&late_issuer);
    let attempts = tokio::spawn({
        let http = http.clone();
        async move { oidc::discover_retrying(&options_late, &http, std::iter::repeat(Duration::from_millis(20))).await }
    });
    let refused = reqwest::Client::new().get(format!("{late_issuer}{}", oidc::WELL_KNOWN)).send().await;
    assert!(refused.is_err(), "nothing listens yet");
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let at = late_issuer.clone();
    let app = Router::new()
        .route(oidc::WELL_KNOWN, get(move || {
            let doc = document(&at);
            async move { axum::Json(doc) }
        }))
        .route("/jwks", get(|| async { axum::Json(json!({ "keys": [test_key()] })) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let found = tokio::time::timeout(Duration::from_secs(10), attempts).await.unwrap().unwrap().unwrap();
    assert_eq!(found.issuer().as_str(), late_issuer);
}

#[test]
fn start_up_waits_about_five_minutes_in_growing_steps() {
    let delays: Vec<Duration> = oidc::start_delays().collect();
    assert_eq!(delays[0], Duration::from_millis(500));
    assert!(delays.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(*delays.last().unwrap(), Duration::from_secs(30));
    let total: Duration = delays.iter().sum();
    assert!((Duration::from_secs(240)..Duration::from_secs(400)).contains(&total), "{total:?}");
}
