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
    // It logs to stdout as it goes: keep reading, or its writes fail.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
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
    let base = url::Url::parse(issuer).unwrap();
    let mut response = browser.get(start).send().await.unwrap();
    for _ in 0..12 {
        if response.status().is_redirection() {
            let location = response.headers()["location"].to_str().unwrap().to_string();
            let next = base.join(&location).unwrap();
            if next.as_str().starts_with(stop_at) {
                return next;
            }
            response = browser.get(next).send().await.unwrap();
            continue;
        }
        let page = response.text().await.unwrap();
        let action = base.join(&form_action(&page)).unwrap();
        // The login form (prompt=login) or the consent form (prompt=consent).
        let form: Vec<(&str, &str)> = if page.contains(r#"value="login""#) {
            vec![("prompt", "login"), ("login", account), ("password", "any")]
        } else {
            vec![("prompt", "consent")]
        };
        response = browser.post(action).form(&form).send().await.unwrap();
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
    assert_eq!(signed_in.identity.issuer, provider.issuer);
    assert_eq!(signed_in.identity.subject, "dana");
    assert!(signed_in.identity.session_id.is_some(), "sid, for back-channel logout");
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
    let mut options = for_issuer(&provider.issuer);
    options.roles_claim = Some("/roles".into());
    options.scopes.push("roles".into());
    let http = oidc::http_client(&options).unwrap();
    let metadata = oidc::discover(&options, &http).await.unwrap();
    let callback = url::Url::parse(&format!("{origin}/auth/callback")).unwrap();
    let oidc = Arc::new(oidc::OidcProvider::new(options, metadata, &callback).unwrap());
    let upstream = oidc.upstream(&url::Url::parse(&provider.issuer).unwrap()).unwrap();
    let clock = tokenless_bff::ManualClock::new();
    let manager = tokenless_bff::SessionManager::builder(Arc::new(upstream))
        .options(tokenless_bff::SessionConfig::default().validate().unwrap())
        .keys(tokenless_bff::KeyRing::ephemeral())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let manager = Arc::new(manager);
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
    tokio::spawn(async move { axum::serve(listener, app).await });
    OidcApp { provider, origin, manager, clock }
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
