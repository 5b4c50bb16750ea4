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
use tokenless_bff::memory::{Claim, Landed, Landing, Marks, NotKept, Outcome, TokenKey};
use tokenless_bff::oidc::{self, DiscoveryError, OidcConfig, OidcOptions};
use tokenless_bff::BoxFuture;
use tokio::io::{AsyncBufReadExt, BufReader};

/// node-oidc-provider running `end2end/oidc/provider.mjs`; stopped when dropped.
struct Provider {
    issuer: String,
    /// Its signing key (PKCS#1 DER), so that tests can sign logout tokens as it does.
    key: Option<Vec<u8>>,
    _child: tokio::process::Child,
}

async fn start_provider() -> Provider {
    start_provider_for("http://127.0.0.1:3000").await
}

/// The provider, with its client's redirect URIs under `app_origin`.
async fn start_provider_for(app_origin: &str) -> Provider {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(
        root.join("end2end/node_modules/oidc-provider").is_dir(),
        "the OpenID provider's npm package is missing: run `make setup` (npm ci in end2end/)"
    );
    let mut child = tokio::process::Command::new("node")
        .arg("end2end/oidc/provider.mjs")
        .current_dir(&root)
        .env("OIDC_PORT", "0")
        .env("OIDC_APP_ORIGIN", app_origin)
        .env("OIDC_PRINT_SIGNING_KEY", "1")
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
    let ready = first.strip_prefix("ready ").unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let (issuer, key) = match ready.split_once(" key=") {
        Some((issuer, key)) => {
            use base64::Engine;
            (issuer.to_string(), Some(base64::engine::general_purpose::STANDARD.decode(key).expect("the key's base64")))
        }
        None => (ready.to_string(), None),
    };
    // It logs to stdout as it goes: keep reading, or its writes fail.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Provider { issuer, key, _child: child }
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

// ---------------------------------------------------------------- the authorization code flow

const CALLBACK: &str = "http://127.0.0.1:3000/auth/callback";

/// A provider ready for sign-ins, with the roles claim read.
async fn ready(provider: &Provider) -> oidc::OidcProvider {
    let mut options = for_issuer(&provider.issuer);
    options.roles_claim = Some("/roles".into());
    // The test provider releases `roles` under a scope of that name.
    options.scopes.push("roles".into());
    let http = oidc::http_client(&options).unwrap();
    let metadata = oidc::discover(&options, &http).await.unwrap();
    oidc::OidcProvider::new(options, metadata, &url::Url::parse(CALLBACK).unwrap()).unwrap()
}

/// The `action` of the page's form.
fn form_action(html: &str) -> String {
    let at = html.find("action=\"").unwrap_or_else(|| panic!("no form in {html}")) + "action=\"".len();
    html[at..].split('"').next().unwrap().replace("&amp;", "&")
}

/// A browser that signs in as `account` at the provider's own pages (its development login and
/// consent forms) and is sent back to the callback: its query.
async fn sign_in_at_provider(issuer: &str, start: url::Url, account: &str) -> oidc::Callback {
    let at = browse(&browser(), issuer, start, account, CALLBACK).await;
    serde_urlencoded::from_str(at.query().unwrap_or("")).unwrap()
}

/// A browser with a cookie jar that follows no redirect by itself.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Follows redirects and fills the provider's forms as `account` until a redirect leads to a
/// URL starting with `stop_at`: that URL.
async fn browse(browser: &reqwest::Client, issuer: &str, start: url::Url, account: &str, stop_at: &str) -> url::Url {
    // The login form (prompt=login) or the consent form (prompt=consent).
    let fill = |page: &str| -> Vec<(String, String)> {
        let pairs: &[(&str, &str)] = if page.contains(r#"value="login""#) {
            &[("prompt", "login"), ("login", account), ("password", "any")]
        } else {
            &[("prompt", "consent")]
        };
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    through_provider(browser, issuer, start, stop_at, 12, fill).await
}

/// From `start`, follows the provider's redirects and posts each page's form as `fill` fills
/// it (at most `pages` steps), until a redirect leads to a URL starting with `stop_at`.
async fn through_provider(
    browser: &reqwest::Client,
    issuer: &str,
    start: url::Url,
    stop_at: &str,
    pages: usize,
    fill: impl Fn(&str) -> Vec<(String, String)>,
) -> url::Url {
    let base = url::Url::parse(issuer).unwrap();
    let mut response = browser.get(start).send().await.unwrap();
    for _ in 0..pages {
        if response.status().is_redirection() {
            let next = base.join(response.headers()["location"].to_str().unwrap()).unwrap();
            if next.as_str().starts_with(stop_at) {
                return next;
            }
            response = browser.get(next).send().await.unwrap();
            continue;
        }
        let page = response.text().await.unwrap();
        let action = base.join(&form_action(&page)).unwrap();
        response = browser.post(action).form(&fill(&page)).send().await.unwrap();
    }
    panic!("the provider never sent the browser back");
}

fn now() -> u64 {
    tokenless_bff::now()
}

#[tokio::test]
async fn a_sign_in_at_a_real_provider_gives_tokens_a_profile_and_its_session_id() {
    let provider = start_provider().await;
    let oidc = ready(&provider).await;
    let (start, pending) = oidc.begin("/frogs", now());
    let query: std::collections::HashMap<String, String> = start.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["state"], pending.state);
    assert_eq!(query["nonce"], pending.nonce);
    assert_eq!(query["redirect_uri"], CALLBACK);
    assert!(query["scope"].split(' ').any(|s| s == "offline_access"), "{query:?}");
    assert_eq!(query["prompt"], "consent", "offline access is asked with consent");
    assert!(!start.as_str().contains(&pending.verifier), "the verifier never leaves the server");
    let shown = format!("{pending:?}");
    for secret in [&pending.state, &pending.nonce, &pending.verifier] {
        assert!(!shown.contains(secret.as_str()), "Debug prints no secret: {shown}");
    }

    let callback = sign_in_at_provider(&provider.issuer, start, "dana").await;
    let signed_in = oidc.finish(&callback, &pending, now()).await.unwrap();
    assert_eq!(signed_in.next, "/frogs");
    assert_eq!(signed_in.profile.name, "Dana User");
    assert_eq!(signed_in.profile.email, "user@example.com");
    assert_eq!(signed_in.profile.roles, ["user"]);
    assert_eq!(signed_in.provider.issuer, provider.issuer);
    assert_eq!(signed_in.provider.subject, "dana");
    assert!(signed_in.provider.session_id.is_some(), "sid, for back-channel logout");
    assert!(signed_in.tokens.refresh_token.is_some(), "offline_access gives a refresh token");
    assert!(signed_in.tokens.access_expires_at > now());

    // The same callback again: the code is spent.
    match oidc.finish(&callback, &pending, now()).await {
        Err(oidc::FlowError::CodeRefused(error)) => assert_eq!(error, "invalid_grant"),
        other => panic!("a replayed code signed someone in: {other:?}"),
    }
}

#[tokio::test]
async fn forged_replayed_or_late_callbacks_sign_nobody_in() {
    let provider = start_provider().await;
    let oidc = ready(&provider).await;

    // Another tab's sign-in: its callback does not match this browser's pending one.
    let (start, pending) = oidc.begin("/", now());
    let (_, other_tab) = oidc.begin("/", now());
    let callback = sign_in_at_provider(&provider.issuer, start, "dana").await;
    assert!(matches!(oidc.finish(&callback, &other_tab, now()).await, Err(oidc::FlowError::StateMismatch)));
    // No state, no code, a state with one character changed.
    let mut forged = callback.clone();
    forged.state = None;
    assert!(matches!(oidc.finish(&forged, &pending, now()).await, Err(oidc::FlowError::StateMismatch)));
    let mut forged = callback.clone();
    forged.code = None;
    assert!(matches!(oidc.finish(&forged, &pending, now()).await, Err(oidc::FlowError::StateMismatch)));
    let mut tampered = pending.clone();
    tampered.state.push('x');
    assert!(matches!(oidc.finish(&callback, &tampered, now()).await, Err(oidc::FlowError::StateMismatch)));
    // Too late.
    assert!(matches!(
        oidc.finish(&callback, &pending, now() + oidc::PENDING_LIFETIME_SECS + 1).await,
        Err(oidc::FlowError::Expired)
    ));
    // Another issuer named in the callback (a mix-up).
    let mut mixed = callback.clone();
    mixed.iss = Some("https://evil.example".into());
    assert!(matches!(oidc.finish(&mixed, &pending, now()).await, Err(oidc::FlowError::Invalid(_))));
    // The right state with the wrong nonce: the ID token is refused (and the code is spent).
    let mut wrong_nonce = pending.clone();
    wrong_nonce.nonce = "not-the-nonce".into();
    match oidc.finish(&callback, &wrong_nonce, now()).await {
        Err(oidc::FlowError::Invalid(why)) => assert!(why.to_lowercase().contains("nonce"), "{why}"),
        other => panic!("a wrong nonce signed someone in: {other:?}"),
    }
    // A callback that does not name its issuer, from a provider that says it always does.
    let mut unnamed = callback.clone();
    unnamed.iss = None;
    assert!(matches!(oidc.finish(&unnamed, &pending, now()).await, Err(oidc::FlowError::Invalid(_))));
    // A wrong PKCE verifier: the provider refuses the code.
    let (start, pending) = oidc.begin("/", now());
    let callback = sign_in_at_provider(&provider.issuer, start, "dana").await;
    let mut wrong_verifier = pending.clone();
    wrong_verifier.verifier = "x".repeat(43);
    assert!(matches!(oidc.finish(&callback, &wrong_verifier, now()).await, Err(oidc::FlowError::CodeRefused(_))));

    // The provider's own error, for the sign-in this browser began: said as it is.
    let (_, pending) = oidc.begin("/", now());
    let denied = oidc::Callback {
        error: Some("access_denied".into()),
        state: Some(pending.state.clone()),
        iss: Some(provider.issuer.clone()),
        ..Default::default()
    };
    match oidc.finish(&denied, &pending, now()).await {
        Err(oidc::FlowError::Provider { error, .. }) => assert_eq!(error, "access_denied"),
        other => panic!("{other:?}"),
    }
    let forged_error = oidc::Callback { error: Some("login_required".into()), ..Default::default() };
    assert!(matches!(oidc.finish(&forged_error, &pending, now()).await, Err(oidc::FlowError::StateMismatch)));
}

// ---------------------------------------------------------------- the routes, in a plain axum app

/// A plain axum app that signs in through the provider: the library's routes, `/me`,
/// `POST /logout`; its manager and clock.
struct OidcApp {
    provider: Provider,
    origin: String,
    manager: Arc<tokenless_bff::SessionManager>,
    clock: tokenless_bff::ManualClock,
}

async fn app_with_provider() -> (Provider, String) {
    let app = oidc_app().await;
    (app.provider, app.origin)
}

async fn oidc_app() -> OidcApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let provider = start_provider_for(&origin).await;
    let clock = tokenless_bff::ManualClock::new();
    let manager = serve_instance(&provider, listener, tokenless_bff::KeyRing::ephemeral(), &clock, None).await;
    OidcApp { provider, origin, manager, clock }
}

/// An app instance of `provider`'s client on `listener`: the library's provider routes, `/me`
/// and `/logout`; its refresh memory `memory` (else its own).
async fn serve_instance(
    provider: &Provider,
    listener: tokio::net::TcpListener,
    keys: tokenless_bff::KeyRing,
    clock: &tokenless_bff::ManualClock,
    memory: Option<Arc<dyn tokenless_bff::RefreshMemory>>,
) -> Arc<tokenless_bff::SessionManager> {
    serve_until(provider, listener, keys, clock, memory, std::future::pending()).await.0
}

/// [`serve_instance`] until `stop` completes: then it stops as a deploy stops it (open
/// connections closed, every request finished); the handle ends when it has.
async fn serve_until(
    provider: &Provider,
    listener: tokio::net::TcpListener,
    keys: tokenless_bff::KeyRing,
    clock: &tokenless_bff::ManualClock,
    memory: Option<Arc<dyn tokenless_bff::RefreshMemory>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> (Arc<tokenless_bff::SessionManager>, tokio::task::JoinHandle<()>) {
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let mut options = for_issuer(&provider.issuer);
    options.roles_claim = Some("/roles".into());
    options.scopes.push("roles".into());
    let http = oidc::http_client(&options).unwrap();
    let metadata = oidc::discover(&options, &http).await.unwrap();
    let callback = url::Url::parse(&format!("{origin}/auth/callback")).unwrap();
    let oidc = Arc::new(oidc::OidcProvider::new(options, metadata, &callback).unwrap());
    let upstream = oidc.upstream(&url::Url::parse(&provider.issuer).unwrap()).unwrap();
    let mut builder = tokenless_bff::SessionManager::builder(Arc::new(upstream))
        .options(tokenless_bff::SessionConfig { store: "memory".into(), ..tokenless_bff::SessionConfig::default() }.validate().unwrap())
        .keys(keys)
        .clock(Arc::new(clock.clone()));
    if let Some(memory) = memory {
        builder = builder.memory(memory);
    }
    let manager = Arc::new(builder.build().unwrap());
    let me = |session: tokenless_bff::RequestSession| async move {
        match session.profile() {
            Some(profile) => axum::Json(profile).into_response(),
            None => StatusCode::UNAUTHORIZED.into_response(),
        }
    };
    let logout = |session: tokenless_bff::RequestSession| async move {
        match session.sign_out().await {
            Some(tokenless_bff::Revocation::Confirmed) => StatusCode::NO_CONTENT,
            other => panic!("the provider did not confirm the revocation: {other:?}"),
        }
    };
    let app = Router::new()
        .merge(oidc::routes(oidc, oidc::OidcPaths::default()))
        .route("/me", get(me))
        .route("/logout", axum::routing::post(logout))
        .layer(tokenless_bff::SessionLayer::new(manager.clone()));
    let served = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(stop).await.expect("served");
    });
    (manager, served)
}

/// Begins a sign-in at the app and signs in at the provider: the callback URL it is sent to.
async fn begin_and_sign_in(browser: &reqwest::Client, provider: &Provider, origin: &str, next: &str) -> url::Url {
    let begun = browser.get(format!("{origin}/auth/login?next={next}")).send().await.unwrap();
    assert_eq!(begun.status(), StatusCode::SEE_OTHER);
    let to = url::Url::parse(begun.headers()["location"].to_str().unwrap()).unwrap();
    assert!(to.as_str().starts_with(&provider.issuer), "{to}");
    browse(browser, &provider.issuer, to, "dana", &format!("{origin}/auth/callback")).await
}

#[tokio::test]
async fn the_library_routes_sign_a_browser_in_and_refuse_what_it_did_not_begin() {
    let (provider, origin) = app_with_provider().await;
    let dana = browser();
    assert_eq!(dana.get(format!("{origin}/me")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // Two tabs begin; each comes back to its own pending sign-in, in either order.
    let first = begin_and_sign_in(&dana, &provider, &origin, "%2Fme%3Ftab%3D1").await;
    let second = begin_and_sign_in(&dana, &provider, &origin, "%2Fme%3Ftab%3D2").await;
    for (callback, next) in [(&second, "/me?tab=2"), (&first, "/me?tab=1")] {
        let back = dana.get(callback.clone()).send().await.unwrap();
        assert_eq!(back.status(), StatusCode::SEE_OTHER, "{callback}");
        assert_eq!(back.headers()["location"], next);
    }
    let me = dana.get(format!("{origin}/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    assert_eq!((me["name"].as_str(), me["roles"][0].as_str()), (Some("Dana User"), Some("user")));

    // The same callback again: its pending sign-in is gone.
    let replayed = dana.get(first.clone()).send().await.unwrap();
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);

    // Another browser handed a fresh callback URL (a link sent to a victim): no session there.
    let attacker = browser();
    let fresh = begin_and_sign_in(&attacker, &provider, &origin, "%2F").await;
    let victim = browser();
    let answer = victim.get(fresh.clone()).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert!(answer.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("tokenless_session=")));
    assert_eq!(victim.get(format!("{origin}/me")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // The provider's refusal of this browser's sign-in lands on the sign-in page with a reason.
    let begun = victim.get(format!("{origin}/auth/login?next=%2Ffrogs")).send().await.unwrap();
    let to = url::Url::parse(begun.headers()["location"].to_str().unwrap()).unwrap();
    let state = to.query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string();
    let denied = victim
        .get(format!("{origin}/auth/callback?error=access_denied&state={state}&iss={}", provider.issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::SEE_OTHER);
    assert_eq!(denied.headers()["location"], "/login?next=%2Ffrogs&reason=provider_denied");
    // Off-site return paths are not followed.
    let begun = victim.get(format!("{origin}/auth/login?next=https%3A%2F%2Fevil.example")).send().await.unwrap();
    let to = url::Url::parse(begun.headers()["location"].to_str().unwrap()).unwrap();
    let back = browse(&victim, &provider.issuer, to, "dana", &format!("{origin}/auth/callback")).await;
    let landed = victim.get(back).send().await.unwrap();
    assert_eq!(landed.headers()["location"], "/");
}

#[tokio::test]
async fn a_tampered_pending_cookie_signs_nobody_in() {
    let (provider, origin) = app_with_provider().await;
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let dana = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let callback = begin_and_sign_in(&dana, &provider, &origin, "%2Fme").await;
    let app = url::Url::parse(&origin).unwrap();
    use reqwest::cookie::CookieStore;
    let header = jar.cookies(&app).unwrap().to_str().unwrap().to_string();
    let pending = header
        .split("; ")
        .find(|c| c.starts_with("tokenless_session_oidc_"))
        .expect("the pending sign-in's cookie")
        .to_string();
    let (name, value) = pending.split_once('=').unwrap();
    let flipped = if value.ends_with('A') { 'B' } else { 'A' };
    let tampered = format!("{name}={}{flipped}", &value[..value.len() - 1]);
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(callback)
        .header("cookie", tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert!(answer.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("tokenless_session=")));
}

#[tokio::test]
async fn expiry_refreshes_once_through_the_provider_for_parallel_requests_and_sign_out_revokes() {
    let app = oidc_app().await;
    let dana = browser();
    let callback = begin_and_sign_in(&dana, &app.provider, &app.origin, "%2Fme").await;
    assert_eq!(dana.get(callback).send().await.unwrap().status(), StatusCode::SEE_OTHER);
    let me = format!("{}/me", app.origin);

    for round in 1..=2u64 {
        // The access token (300 s at this provider) is over: 20 requests at once need it.
        app.clock.advance(Duration::from_secs(301));
        let answers = futures_join(&dana, &me, 20).await;
        assert!(answers.iter().all(|s| *s == StatusCode::OK), "round {round}: {answers:?}");
        let counts = app.manager.refresher().counts();
        assert_eq!((counts.grants, counts.refreshed), (round, round), "one rotation per expiry: {counts:?}");
    }
    // The provider rotated the refresh token twice and never saw one presented again (it would
    // have revoked the whole grant and the second round would have been refused).
    assert_eq!(app.manager.refresher().counts().refused, 0);

    // No password ever goes to the provider through the library's upstream for it.
    match app.manager.upstream().sign_in("dana", "any", now()).await {
        Err(tokenless_bff::SignInError::Upstream(e)) => assert!(e.to_string().contains(oidc::PASSWORD_REFUSED), "{e}"),
        other => panic!("a password sign-in at an OpenID provider: {other:?}"),
    }

    // Sign-out revokes at the provider (the app's handler insists on a confirmation).
    let out = dana.post(format!("{}/logout", app.origin)).header("origin", &app.origin).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(dana.get(&me).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

/// `n` GETs of `url` at once from `browser`: their statuses.
async fn futures_join(browser: &reqwest::Client, url: &str, n: usize) -> Vec<StatusCode> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (browser, url) = (browser.clone(), url.to_string());
        tasks.spawn(async move { browser.get(url).send().await.map(|r| r.status()) });
    }
    let mut statuses = Vec::new();
    while let Some(done) = tasks.join_next().await {
        statuses.push(done.unwrap().unwrap());
    }
    statuses
}

// ---------------------------------------------------------------- signing out with the provider

/// The provider's own pages from `start` (its end-session confirmation: "yes, sign me out")
/// until it sends the browser to a URL starting with `stop_at`: that URL.
async fn confirm_sign_out(browser: &reqwest::Client, issuer: &str, start: url::Url, stop_at: &str) -> url::Url {
    let fill = |page: &str| {
        let at = page.find(r#"name="xsrf" value=""#).unwrap_or_else(|| panic!("no xsrf in {page}")) + r#"name="xsrf" value=""#.len();
        let xsrf = page[at..].split('"').next().unwrap().to_string();
        vec![("xsrf".to_string(), xsrf), ("logout".to_string(), "yes".to_string())]
    };
    through_provider(browser, issuer, start, stop_at, 6, fill).await
}

/// Signs dana in at the app in `browser`: `/me` answers.
async fn signed_in(app: &OidcApp, browser: &reqwest::Client) {
    let callback = begin_and_sign_in(browser, &app.provider, &app.origin, "%2Fme").await;
    assert_eq!(browser.get(callback).send().await.unwrap().status(), StatusCode::SEE_OTHER);
    assert_eq!(browser.get(format!("{}/me", app.origin)).send().await.unwrap().status(), StatusCode::OK);
}

/// Whether the provider asks `browser` to sign in again (its session there is over) when the
/// app begins a sign-in.
async fn provider_asks_to_sign_in(app: &OidcApp, browser: &reqwest::Client) -> bool {
    let begun = browser.get(format!("{}/auth/login?next=%2F", app.origin)).send().await.unwrap();
    let base = url::Url::parse(&app.provider.issuer).unwrap();
    let mut response = browser.get(begun.headers()["location"].to_str().unwrap()).send().await.unwrap();
    while response.status().is_redirection() {
        let next = base.join(response.headers()["location"].to_str().unwrap()).unwrap();
        response = browser.get(next).send().await.unwrap();
    }
    response.text().await.unwrap().contains(r#"value="login""#)
}

#[tokio::test]
async fn signing_out_ends_the_providers_session_too_and_comes_back_signed_out() {
    let app = oidc_app().await;
    let dana = browser();
    signed_in(&app, &dana).await;
    assert!(!provider_asks_to_sign_in(&app, &dana).await, "signed in at the provider meanwhile");
    signed_in(&app, &dana).await;

    let out = dana.post(format!("{}/auth/logout", app.origin)).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let to = url::Url::parse(out.headers()["location"].to_str().unwrap()).unwrap();
    assert!(to.as_str().starts_with(&format!("{}/session/end", app.provider.issuer)), "{to}");
    let query: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
    assert_eq!(query["post_logout_redirect_uri"], format!("{}/", app.origin));
    assert_eq!(query["client_id"], "tokenless");
    assert_eq!(query["id_token_hint"].split('.').count(), 3, "the sign-in's ID token");
    // Signed out here already: the cookie is gone and the session refused.
    assert_eq!(dana.get(format!("{}/me", app.origin)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // At the provider: "sign out?" → yes → back on the site.
    let back = confirm_sign_out(&dana, &app.provider.issuer, to, &app.origin).await;
    assert_eq!(back.as_str(), format!("{}/", app.origin));
    assert!(provider_asks_to_sign_in(&app, &dana).await, "the provider's session ended too");

    // Without a session, or with a cross-site form: no provider session to end, nothing changes.
    let nobody = browser().post(format!("{}/auth/logout", app.origin)).send().await.unwrap();
    assert_eq!(nobody.headers()["location"], "/");
    let eve = browser();
    signed_in(&app, &eve).await;
    let forged = eve
        .post(format!("{}/auth/logout", app.origin))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(eve.get(format!("{}/me", app.origin)).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn the_providers_back_channel_logout_signs_the_browser_out_on_its_next_request() {
    let app = oidc_app().await;
    let dana = browser();
    signed_in(&app, &dana).await;
    let other = browser();
    signed_in(&app, &other).await;
    let grants = app.manager.refresher().counts().grants;

    // Dana signs out at the provider itself (not through the app): it tells the app, which
    // ends the session with that sid; the other browser's session (another sid) lives on.
    let end = url::Url::parse(&format!("{}/session/end?client_id=tokenless", app.provider.issuer)).unwrap();
    confirm_sign_out(&dana, &app.provider.issuer, end, &app.provider.issuer).await;
    let me = format!("{}/me", app.origin);
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        status = dana.get(&me).send().await.unwrap().status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the back-channel logout ended the session");
    assert_eq!(app.manager.refresher().counts().grants, grants, "without asking the provider");
    assert_eq!(other.get(&me).send().await.unwrap().status(), StatusCode::OK);
}

/// Two instances on one Redis (started here): the provider tells instance A that dana signed
/// out; instance B, which never heard from the provider, refuses her cookie from then on.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_back_channel_logout_received_by_one_instance_holds_on_the_other() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _redis = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server runs (scripts/setup.sh test installs it)");
    let redis_url = format!("redis://127.0.0.1:{port}/0");
    let listener_a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener_b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (origin_a, origin_b) =
        (format!("http://{}", listener_a.local_addr().unwrap()), format!("http://{}", listener_b.local_addr().unwrap()));
    // The provider knows A alone (its back-channel logout URI is A's).
    let provider = start_provider_for(&origin_a).await;
    let clock = tokenless_bff::ManualClock::new();
    let spec = tokenless_bff::generate_key_spec(1);
    let prefix = format!("bc{}:", std::process::id());
    let mut managers = Vec::new();
    for listener in [listener_a, listener_b] {
        let options = tokenless_bff::RedisOptions { prefix: prefix.clone(), secrets: vec![[3; 32]], lease: Duration::from_secs(35), local_capacity: 100 };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let memory = loop {
            match tokenless_bff::RedisMemory::connect(&redis_url, options.clone(), Arc::new(clock.clone())).await {
                Ok(memory) => break memory,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "redis-server never answered: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let keys = tokenless_bff::KeyRing::parse(&spec).unwrap();
        managers.push(serve_instance(&provider, listener, keys, &clock, Some(Arc::new(memory))).await);
    }
    let app = OidcApp { provider, origin: origin_a, manager: managers[0].clone(), clock };
    let (dana, other) = (browser(), browser());
    signed_in(&app, &dana).await;
    signed_in(&app, &other).await;
    // The cookie of A opens on B (same keys; a browser sends it to every port of the host).
    let me_b = format!("{origin_b}/me");
    assert_eq!(dana.get(&me_b).send().await.unwrap().status(), StatusCode::OK);
    let grants_b = managers[1].refresher().counts().grants;

    let end = url::Url::parse(&format!("{}/session/end?client_id=tokenless", app.provider.issuer)).unwrap();
    confirm_sign_out(&dana, &app.provider.issuer, end, &app.provider.issuer).await;
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        status = dana.get(&me_b).send().await.unwrap().status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED, "B refuses the session A heard ended");
    assert_eq!(managers[1].refresher().counts().grants, grants_b, "without asking the provider");
    assert_eq!(other.get(&me_b).send().await.unwrap().status(), StatusCode::OK, "another sid lives on");
}

/// Issue 33: the provider's back-channel logout, received before a restart, still holds after
/// it: instance A keeps it in its SQLite file and stops; B, started on the same file (and the
/// same keys), refuses dana's cookie without asking the provider, while the other sign-in (another
/// provider session) lives on. On an in-process memory B would show dana's page again: her
/// cookie's access token is still valid.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_back_channel_logout_survives_a_restart_on_the_sqlite_memory() {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("refresh-memory.sqlite3");
    let clock = tokenless_bff::ManualClock::new();
    let spec = tokenless_bff::generate_key_spec(1);
    // Opened once the file is free: the instance that held it stopped, and with it the work it
    // had left in the background (ending dana's session and revoking her tokens at the
    // provider, which began when A refused her cookie).
    let memory = |clock: &tokenless_bff::ManualClock| {
        let (file, clock) = (file.clone(), clock.clone());
        async move {
            let options = tokenless_bff::SqliteOptions { secrets: vec![[3; 32]], capacity: 100, ended_capacity: 100 };
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                match tokenless_bff::SqliteMemory::open(&file, options.clone(), Arc::new(clock.clone())) {
                    Ok(memory) => return Arc::new(memory) as Arc<dyn tokenless_bff::RefreshMemory>,
                    Err(tokenless_bff::SqliteStartError::Locked { .. }) if std::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    Err(e) => panic!("the file does not open: {e}"),
                }
            }
        }
    };
    let listener_a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_a = format!("http://{}", listener_a.local_addr().unwrap());
    let provider = start_provider_for(&origin_a).await;
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let keys = tokenless_bff::KeyRing::parse(&spec).unwrap();
    let (manager_a, served_a) =
        serve_until(&provider, listener_a, keys, &clock, Some(memory(&clock).await), async move { drop(stopped_a.await) }).await;
    let app = OidcApp { provider, origin: origin_a, manager: manager_a, clock: clock.clone() };
    let (dana, other) = (browser(), browser());
    signed_in(&app, &dana).await;
    signed_in(&app, &other).await;

    let end = url::Url::parse(&format!("{}/session/end?client_id=tokenless", app.provider.issuer)).unwrap();
    confirm_sign_out(&dana, &app.provider.issuer, end, &app.provider.issuer).await;
    let me_a = format!("{}/me", app.origin);
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        status = dana.get(&me_a).send().await.unwrap().status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED, "A heard the provider end dana's session");

    // A stops; its file is closed once the last request and the manager are gone.
    let OidcApp { provider, manager, .. } = app;
    drop(manager);
    stop_a.send(()).unwrap();
    served_a.await.unwrap();

    let listener_b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me_b = format!("http://{}/me", listener_b.local_addr().unwrap());
    let keys = tokenless_bff::KeyRing::parse(&spec).unwrap();
    let memory_b = memory(&clock).await;
    let manager_b = serve_instance(&provider, listener_b, keys, &clock, Some(memory_b)).await;
    // The browsers send A's cookies to B: same host, and a cookie is not bound to a port.
    assert_eq!(other.get(&me_b).send().await.unwrap().status(), StatusCode::OK, "the other sign-in survives");
    assert_eq!(dana.get(&me_b).send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "dana's stays ended");
    assert_eq!(manager_b.refresher().counts().grants, 0, "without asking the provider");
}

/// `claims` signed as the provider signs its logout tokens, under the key id `kid`.
fn sign_logout(app: &OidcApp, claims: &Value, kid: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_der(app.provider.key.as_ref().expect("the provider printed its key"));
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    header.typ = Some("logout+jwt".into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A logout token's claims ending every session of `sub`, issued now.
fn logout_claims(app: &OidcApp, jti: &str, sub: &str) -> Value {
    let at = app.manager.now();
    json!({
        "iss": app.provider.issuer, "aud": "tokenless", "iat": at, "exp": at + 120, "jti": jti, "sub": sub,
        "events": { oidc::BACKCHANNEL_EVENT: {} }
    })
}

/// A refresh memory whose next `failures` provider ends are not kept (a shared store that did
/// not answer), the rest as [`tokenless_bff::InProcess`].
struct Flaky {
    inner: tokenless_bff::InProcess,
    failures: AtomicUsize,
    /// Held (written) by a test: `first_use` does not answer until it is let go (a store that
    /// stalled).
    stall: tokio::sync::RwLock<()>,
}

impl tokenless_bff::RefreshMemory for Flaky {
    fn claim<'a>(&'a self, key: TokenKey, session_id: &'a str, generation: u64) -> BoxFuture<'a, Claim> {
        self.inner.claim(key, session_id, generation)
    }
    fn land<'a>(&'a self, key: TokenKey, landing: Landing<'a>) -> BoxFuture<'a, Landed> {
        self.inner.land(key, landing)
    }
    fn abandon(&self, key: TokenKey) {
        self.inner.abandon(key)
    }
    fn remembered(&self, key: TokenKey) -> BoxFuture<'_, Option<Outcome>> {
        self.inner.remembered(key)
    }
    fn shorten(&self, key: TokenKey, left: Duration) -> BoxFuture<'_, ()> {
        self.inner.shorten(key, left)
    }
    fn marks<'a>(&'a self, session_id: &'a str, created_at: u64) -> BoxFuture<'a, Marks> {
        self.inner.marks(session_id, created_at)
    }
    fn sign_out<'a>(&'a self, session_id: &'a str, created_at: u64, left: Duration) -> BoxFuture<'a, ()> {
        self.inner.sign_out(session_id, created_at, left)
    }
    fn carried<'a>(&'a self, session_id: &'a str, generation: u64, grace: Duration) -> BoxFuture<'a, ()> {
        self.inner.carried(session_id, generation, grace)
    }
    fn end_at_provider<'a>(&'a self, key: &'a str, at: u64, every: bool, left: Duration) -> BoxFuture<'a, Result<(), NotKept>> {
        let fail = self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if fail {
            return Box::pin(async { Err(NotKept) });
        }
        self.inner.end_at_provider(key, at, every, left)
    }
    fn ended_at_provider<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Option<u64>> {
        self.inner.ended_at_provider(keys)
    }
    fn first_use<'a>(&'a self, jti: &'a str, left: Duration) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let _answering = self.stall.read().await;
            self.inner.first_use(jti, left).await
        })
    }
    fn forget_use<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, ()> {
        self.inner.forget_use(jti)
    }
}

/// An app instance of a new provider on a [`Flaky`] memory whose next `failures` provider ends
/// are not kept.
async fn flaky_app(failures: usize) -> (OidcApp, Arc<Flaky>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let provider = start_provider_for(&origin).await;
    let clock = tokenless_bff::ManualClock::new();
    let flaky = Arc::new(Flaky {
        inner: tokenless_bff::InProcess::new(1000, 1000, Arc::new(clock.clone())),
        failures: AtomicUsize::new(failures),
        stall: tokio::sync::RwLock::new(()),
    });
    let manager = serve_instance(&provider, listener, tokenless_bff::KeyRing::ephemeral(), &clock, Some(flaky.clone())).await;
    (OidcApp { provider, origin, manager, clock }, flaky)
}

/// Issue 32, finding 1: with the shared memory stalled, a valid logout token was answered 200
/// though the end was never stored, and its `jti` was spent: the provider never sent it again
/// and the session lived on. Now the endpoint answers 400 (Back-Channel Logout 1.0 §2.8) and
/// the token stays good for the provider's next try.
#[tokio::test]
async fn a_logout_the_memory_cannot_keep_is_a_400_and_can_be_sent_again() {
    let (app, _flaky) = flaky_app(1).await;
    let dana = browser();
    signed_in(&app, &dana).await;
    let me = format!("{}/me", app.origin);
    let token = sign_logout(&app, &logout_claims(&app, "j-stall", "dana"), "test-rs256");
    let (status, body) = post_logout_token(&app, &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not a 200 for a logout that was not kept: {body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    // The provider sends it again: not a replay, and dana is signed out.
    let (status, body) = post_logout_token(&app, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(dana.get(&me).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(post_logout_token(&app, &token).await.0, StatusCode::BAD_REQUEST, "then it is used");
}

/// Issue 32, found by the chaos run's OpenID variant: the provider stops waiting for a
/// back-channel logout after 2.5 s and drops its request. With the memory stalled, that used
/// to drop the logout with it: never stored, the session alive. Now its work goes on without
/// the request: the endpoint answers 400 in time, and the end holds once the memory answers.
#[tokio::test]
async fn a_logout_whose_request_the_provider_gave_up_on_is_still_done() {
    let (app, flaky) = flaky_app(0).await;
    let (dana, other) = (browser(), browser());
    signed_in(&app, &dana).await;
    signed_in(&app, &other).await;
    let stalled = flaky.stall.write().await;
    // Dana signs out at the provider: its back-channel logout waits on the stalled memory
    // until the provider gives up on it.
    let end = url::Url::parse(&format!("{}/session/end?client_id=tokenless", app.provider.issuer)).unwrap();
    confirm_sign_out(&dana, &app.provider.issuer, end, &app.provider.issuer).await;
    drop(stalled);
    let me = format!("{}/me", app.origin);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while dana.get(&me).send().await.unwrap().status() != StatusCode::UNAUTHORIZED {
        assert!(std::time::Instant::now() < deadline, "the logout was dropped with its request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(other.get(&me).send().await.unwrap().status(), StatusCode::OK, "another sid lives on");
}

/// Posts `token` to the app's back-channel logout endpoint.
async fn post_logout_token(app: &OidcApp, token: &str) -> (StatusCode, Value) {
    let answer = reqwest::Client::new()
        .post(format!("{}/auth/backchannel-logout", app.origin))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    let status = answer.status();
    assert_eq!(answer.headers()["cache-control"], "no-store");
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn logout_tokens_that_are_forged_replayed_or_wrong_end_nothing() {
    let app = oidc_app().await;
    let dana = browser();
    signed_in(&app, &dana).await;
    let me = format!("{}/me", app.origin);
    let sign = |claims: &Value, kid: &str| sign_logout(&app, claims, kid);
    let claims = |jti: &str, sub: &str| logout_claims(&app, jti, sub);
    let at = app.manager.now();
    let with = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = claims("j-bad", "dana");
        change(c.as_object_mut().unwrap());
        sign(&c, "test-rs256")
    };
    let wrong: Vec<(String, &str)> = vec![
        (with(&|c| drop(c.insert("iss".into(), json!("https://evil.example")))), "another issuer"),
        (with(&|c| drop(c.insert("aud".into(), json!("someone-else")))), "another client"),
        (with(&|c| drop(c.insert("nonce".into(), json!("n")))), "a nonce"),
        (with(&|c| drop(c.remove("events"))), "no event"),
        (with(&|c| drop(c.insert("iat".into(), json!(at - 3600)))), "an hour old"),
        (with(&|c| drop(c.remove("jti"))), "no jti"),
        (sign(&claims("j-kid", "dana"), "no-such-key"), "an unknown key"),
        ("not.a.token".into(), "junk"),
    ];
    for (token, what) in wrong {
        let (status, body) = post_logout_token(&app, &token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(body["error"], "invalid_request", "{what}: {body}");
    }
    // Not form-encoded, two tokens, none, too big.
    let client = reqwest::Client::new();
    let url = format!("{}/auth/backchannel-logout", app.origin);
    let good = sign(&claims("j-1", "dana"), "test-rs256");
    let json_body = client.post(&url).json(&json!({ "logout_token": good })).send().await.unwrap();
    assert_eq!(json_body.status(), StatusCode::BAD_REQUEST);
    let two = client.post(&url).form(&[("logout_token", &good), ("logout_token", &good)]).send().await.unwrap();
    assert_eq!(two.status(), StatusCode::BAD_REQUEST);
    assert_eq!(client.post(&url).form(&[("x", "y")]).send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    let huge = client.post(&url).form(&[("logout_token", "a".repeat(64 * 1024))]).send().await.unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(dana.get(&me).send().await.unwrap().status(), StatusCode::OK, "nothing above ended anything");

    // Someone else's logout: dana stays.
    assert_eq!(post_logout_token(&app, &sign(&claims("j-0", "ada"), "test-rs256")).await.0, StatusCode::OK);
    assert_eq!(dana.get(&me).send().await.unwrap().status(), StatusCode::OK);
    // Dana's (by sub: every session of hers): signed out; the same token again is a replay.
    assert_eq!(post_logout_token(&app, &good).await.0, StatusCode::OK);
    assert_eq!(dana.get(&me).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let (status, body) = post_logout_token(&app, &good).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error_description"].as_str().unwrap().contains("used already"), "{body}");
    // A sign-in after the logout is a new session and is not ended by it (a second later: a
    // logout by sub ends the sign-ins of its own second too). A new browser: the app revoked
    // the ended session's grant, which this provider's session still points at.
    app.clock.advance(Duration::from_secs(1));
    let again = browser();
    signed_in(&app, &again).await;
    assert_eq!(again.get(&me).send().await.unwrap().status(), StatusCode::OK);
}

// ---------------------------------------------------------------- a provider that lies

/// Two P-256 keys made for these tests only (`openssl ecparam -name prime256v1`), PKCS#8 DER:
/// the liar's published signing key, and one it does not publish (an attacker's).
const LIAR_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgpR/4EUvT/IKGjKoeeuRgrkMnC410A9yeISahiKavoUOhRANCAASQhuPtCQIuQU0HEx1JYZaQ5pAxCTv9xZTU+1Lxw9nCnQl+4ZxQSSiAzz6ApTPRSH0tQZM5/6G6GN6H6OIFIkN9";
const LIAR_X: &str = "kIbj7QkCLkFNBxMdSWGWkOaQMQk7_cWU1PtS8cPZwp0";
const LIAR_Y: &str = "CX7hnFBJKIDPPoClM9FIfS1Bkzn_oboY3ofo4gUiQ30";
const OTHER_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRTy6S5uslgZHFhs/7tMZj79UZHN4sragCLDTXTVQ8yOhRANCAARHsbgtgglZ8ae2qUXeFdEE677mFG8jj8EIJM3MIu8yKbBU2kVufIwU7fENImbROnaX0oDO+2xyCM11JJLZg4zK";

/// What the liar's token and userinfo endpoints answer next.
#[derive(Clone)]
struct Script {
    token: (StatusCode, String),
    userinfo: Value,
}

/// A provider of our own whose token endpoint answers whatever the test scripted: discovery,
/// its key set (the liar's key), token and userinfo endpoints.
async fn liar() -> (oidc::OidcProvider, Arc<std::sync::Mutex<Script>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let script = Arc::new(std::sync::Mutex::new(Script { token: (StatusCode::OK, String::new()), userinfo: json!({}) }));
    let at = issuer.clone();
    let (for_token, for_userinfo) = (script.clone(), script.clone());
    let app = Router::new()
        .route(
            oidc::WELL_KNOWN,
            get(move || {
                let mut doc = changed(&at, "id_token_signing_alg_values_supported", json!(["ES256"]));
                doc["userinfo_endpoint"] = json!(format!("{at}/userinfo"));
                async move { axum::Json(doc) }
            }),
        )
        .route(
            "/jwks",
            get(|| async {
                axum::Json(json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": LIAR_X, "y": LIAR_Y, "kid": "liar", "use": "sig", "alg": "ES256" }] }))
            }),
        )
        .route(
            "/token",
            axum::routing::post(move || {
                let (status, body) = for_token.lock().unwrap().token.clone();
                async move { (status, [("content-type", "application/json")], body).into_response() }
            }),
        )
        .route(
            "/userinfo",
            get(move || {
                let body = for_userinfo.lock().unwrap().userinfo.clone();
                async move { axum::Json(body) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let options = for_issuer(&issuer);
    let http = oidc::http_client(&options).unwrap();
    let metadata = oidc::discover(&options, &http).await.unwrap();
    (oidc::OidcProvider::new(options, metadata, &url::Url::parse(CALLBACK).unwrap()).unwrap(), script)
}

fn sign_es256(claims: &Value, der: &str, kid: &str) -> String {
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD.decode(der).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ec_der(&der)).unwrap()
}

/// `at_hash` of `access` for an ES256 ID token: the left half of its SHA-256, base64url.
fn at_hash(access: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(access.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

#[tokio::test]
async fn a_provider_that_lies_signs_nobody_in() {
    let (oidc, script) = liar().await;
    let issuer = oidc.metadata().issuer().as_str().to_string();
    let good_claims = |nonce: &str| {
        json!({
            "iss": issuer, "aud": "tokenless", "sub": "dana", "nonce": nonce,
            "iat": now(), "exp": now() + 300, "at_hash": at_hash("access-1"),
            "name": "Dana User", "email": "user@example.com"
        })
    };
    let answer = |id_token: Option<String>| {
        let mut body = json!({ "access_token": "access-1", "token_type": "Bearer", "expires_in": 300, "refresh_token": "refresh-1" });
        if let Some(id_token) = id_token {
            body["id_token"] = json!(id_token);
        }
        (StatusCode::OK, body.to_string())
    };
    let attempt = |token: (StatusCode, String), userinfo: Value| {
        *script.lock().unwrap() = Script { token, userinfo };
    };
    let callback = |pending: &oidc::Pending| oidc::Callback {
        code: Some("code-1".into()),
        state: Some(pending.state.clone()),
        ..Default::default()
    };

    // The liar telling the truth: signed in (so every refusal below is the lie's).
    let (_, pending) = oidc.begin("/", now());
    attempt(answer(Some(sign_es256(&good_claims(&pending.nonce), LIAR_KEY, "liar"))), json!({ "sub": "dana" }));
    let signed_in = oidc.finish(&callback(&pending), &pending, now()).await.expect("a truthful answer signs in");
    assert_eq!((signed_in.profile.id.as_str(), signed_in.profile.name.as_str()), ("dana", "Dana User"));

    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    type Lie<'a> = Box<dyn Fn(&str) -> ((StatusCode, String), Value) + 'a>;
    let with = |change: fn(&mut serde_json::Map<String, Value>)| -> Lie<'_> {
        let good_claims = good_claims.clone();
        Box::new(move |nonce: &str| {
            let mut claims = good_claims(nonce);
            change(claims.as_object_mut().unwrap());
            (answer(Some(sign_es256(&claims, LIAR_KEY, "liar"))), json!({ "sub": "dana" }))
        })
    };
    let lies: Vec<(&str, Lie<'_>)> = vec![
        ("signed with a key it does not publish", {
            let good_claims = good_claims.clone();
            Box::new(move |nonce: &str| (answer(Some(sign_es256(&good_claims(nonce), OTHER_KEY, "liar"))), json!({ "sub": "dana" })))
        }),
        ("alg none", {
            let good_claims = good_claims.clone();
            Box::new(move |nonce: &str| {
                let token = format!("{}.{}.", b64(&json!({ "alg": "none" })), b64(&good_claims(nonce)));
                (answer(Some(token)), json!({ "sub": "dana" }))
            })
        }),
        ("HS256 keyed with the client secret", {
            let good_claims = good_claims.clone();
            Box::new(move |nonce: &str| {
                let key = jsonwebtoken::EncodingKey::from_secret(b"tokenless-oidc-test-secret");
                let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &good_claims(nonce), &key).unwrap();
                (answer(Some(token)), json!({ "sub": "dana" }))
            })
        }),
        ("another audience", with(|c| drop(c.insert("aud".into(), json!("someone-else"))))),
        ("an extra untrusted audience", with(|c| drop(c.insert("aud".into(), json!(["tokenless", "someone-else"]))))),
        ("another issuer", with(|c| drop(c.insert("iss".into(), json!("https://evil.example"))))),
        ("a stolen nonce", with(|c| drop(c.insert("nonce".into(), json!("another-sign-in"))))),
        ("expired", with(|c| drop(c.insert("exp".into(), json!(now() - 600))))),
        ("issued in the future", with(|c| drop(c.insert("iat".into(), json!(now() + 3600))))),
        ("issued before the sign-in began", with(|c| drop(c.insert("iat".into(), json!(now() - 3600))))),
        ("an access token that is not the one it hashed", with(|c| drop(c.insert("at_hash".into(), json!(at_hash("other")))))),
        ("azp naming another client", with(|c| drop(c.insert("azp".into(), json!("someone-else"))))),
        ("no ID token", Box::new(move |_: &str| (answer(None), json!({ "sub": "dana" })))),
        ("userinfo about someone else", {
            let good_claims = good_claims.clone();
            Box::new(move |nonce: &str| (answer(Some(sign_es256(&good_claims(nonce), LIAR_KEY, "liar"))), json!({ "sub": "ada" })))
        }),
        ("a token type that is not Bearer", {
            let good_claims = good_claims.clone();
            Box::new(move |nonce: &str| {
                let (status, body) = answer(Some(sign_es256(&good_claims(nonce), LIAR_KEY, "liar")));
                ((status, body.replace("\"Bearer\"", "\"MAC\"")), json!({ "sub": "dana" }))
            })
        }),
        ("not JSON", Box::new(|_: &str| ((StatusCode::OK, "<html>oops</html>".into()), json!({})))),
        ("a 200 without an access token", Box::new(|_: &str| ((StatusCode::OK, "{}".into()), json!({})))),
        ("an answer of 1 MiB", Box::new(|_: &str| {
            ((StatusCode::OK, format!("{{\"access_token\":\"{}\",\"token_type\":\"Bearer\"}}", "a".repeat(1 << 20))), json!({}))
        })),
    ];
    for (lie, script_it) in lies {
        let (_, pending) = oidc.begin("/", now());
        let (token, userinfo) = script_it(&pending.nonce);
        attempt(token, userinfo);
        match oidc.finish(&callback(&pending), &pending, now()).await {
            Err(oidc::FlowError::Invalid(_)) => {}
            other => panic!("{lie}: {other:?}"),
        }
    }
    // The token endpoint's refusal and its outage are said as such.
    let (_, pending) = oidc.begin("/", now());
    attempt((StatusCode::BAD_REQUEST, json!({ "error": "invalid_grant" }).to_string()), json!({}));
    assert!(matches!(oidc.finish(&callback(&pending), &pending, now()).await, Err(oidc::FlowError::CodeRefused(_))));
}

#[tokio::test]
async fn googles_offline_access_and_a_provider_without_revocation() {
    use tokenless_bff::TokenGrants;
    // Google: no offline_access scope; access_type=offline (and consent) asks for the refresh token.
    let (issuer, _) = stub(|at| (StatusCode::OK, changed(at, "userinfo_endpoint", json!(format!("{at}/userinfo"))))).await;
    let config = OidcConfig {
        issuer: issuer.clone(),
        client_id: "tokenless".into(),
        client_secret: "s".to_string().into(),
        scopes: "openid email profile".into(),
        auth_params: [("access_type".to_string(), "offline".to_string())].into(),
        ..OidcConfig::default()
    };
    let options = config.validate().unwrap();
    let http = oidc::http_client(&options).unwrap();
    let metadata = oidc::discover(&options, &http).await.unwrap();
    let provider = oidc::OidcProvider::new(options, metadata, &url::Url::parse(CALLBACK).unwrap()).unwrap();
    let (start, _) = provider.begin("/", now());
    let query: std::collections::HashMap<String, String> = start.query_pairs().into_owned().collect();
    assert_eq!(query["access_type"], "offline");
    assert_eq!(query["prompt"], "consent");
    assert_eq!(query["scope"], "openid email profile");

    // No revocation endpoint (Entra ID): the upstream builds, and a revocation says it cannot
    // be done instead of pretending.
    let upstream = provider.upstream(&url::Url::parse(&issuer).unwrap()).expect("no revocation endpoint is fine");
    let tokens = tokenless_bff::TokenSet {
        access_token: tokenless_bff::Token::new("a"),
        access_expires_at: now() + 60,
        refresh_token: Some(tokenless_bff::Token::new("r")),
        refresh_expires_at: None,
        access_issued_at: now(),
    };
    match upstream.revoke(&tokens).await {
        Err(tokenless_bff::UpstreamError::Refused { code }) => assert_eq!(code, oidc::NO_REVOCATION_ENDPOINT),
        other => panic!("{other:?}"),
    }
}
