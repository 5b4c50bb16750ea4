//! The app signing people in through a real OpenID provider (node-oidc-provider, started here on
//! a loopback port): the sign-in page's button, the provider's own pages, the callback, the
//! protected page; the provider's refusal; the settings that configure it.

mod common;

use std::process::Stdio;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

/// node-oidc-provider with its client's redirect URIs under the test apps' origin; stopped
/// when dropped.
struct Provider {
    issuer: String,
    _child: tokio::process::Child,
}

async fn start_provider() -> Provider {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("end2end/node_modules/oidc-provider").is_dir(),
        "the OpenID provider's npm package is missing: run `make setup` (npm ci in end2end/)"
    );
    let mut child = tokio::process::Command::new("node")
        .arg("end2end/oidc/provider.mjs")
        .current_dir(root)
        .env("OIDC_PORT", "0")
        .env("OIDC_APP_ORIGIN", ORIGIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (make setup installs it)");
    let mut lines = BufReader::new(child.stdout.take().expect("its stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the provider starts within 30 s")
        .expect("its stdout reads")
        .expect("it prints `ready <issuer>`");
    let issuer = first.strip_prefix("ready ").expect("`ready <issuer>`").to_string();
    // It logs to stdout as it goes: keep reading, or its writes fail.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Provider { issuer, _child: child }
}

/// The app configured for `provider` through the settings a deployment would set.
async fn app_for(provider: &Provider) -> TestApp {
    app_with(&[
        ("TOKENLESS_UPSTREAM__KIND", "oidc"),
        ("TOKENLESS_UPSTREAM__BASE_URL", &provider.issuer),
        ("TOKENLESS_UPSTREAM__OIDC__ISSUER", &provider.issuer),
        ("TOKENLESS_UPSTREAM__OIDC__CLIENT_ID", "tokenless"),
        ("TOKENLESS_UPSTREAM__OIDC__CLIENT_SECRET", "tokenless-oidc-test-secret"),
        ("TOKENLESS_UPSTREAM__OIDC__SCOPES", "openid profile email offline_access roles"),
        ("TOKENLESS_UPSTREAM__OIDC__ROLES_CLAIM", "/roles"),
        ("TOKENLESS_UPSTREAM__OIDC__PROVIDER_NAME", "Test ID"),
    ])
    .await
}

/// At the provider's own pages (its development login and consent forms) as `account`, from
/// `start` until it sends the browser back to this site: that path and query.
async fn at_provider(issuer: &str, start: &str, account: &str) -> String {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = url::Url::parse(issuer).unwrap();
    let mut response = browser.get(start).send().await.unwrap();
    for _ in 0..12 {
        if response.status().is_redirection() {
            let next = base.join(response.headers()["location"].to_str().unwrap()).unwrap();
            if next.as_str().starts_with(ORIGIN) {
                return next.as_str()[ORIGIN.len()..].to_string();
            }
            response = browser.get(next).send().await.unwrap();
            continue;
        }
        let page = response.text().await.unwrap();
        let at = page.find("action=\"").unwrap_or_else(|| panic!("no form in {page}")) + "action=\"".len();
        let action = base.join(page[at..].split('"').next().unwrap()).unwrap();
        let form: Vec<(&str, &str)> = if page.contains(r#"value="login""#) {
            vec![("prompt", "login"), ("login", account), ("password", "any")]
        } else {
            vec![("prompt", "consent")]
        };
        response = browser.post(action).form(&form).send().await.unwrap();
    }
    panic!("the provider never sent the browser back");
}

#[test]
fn people_sign_in_at_the_provider_and_land_on_the_page_they_asked_for() {
    block_on(async {
        let provider = start_provider().await;
        let app = app_for(&provider).await;
        let b = Browser::new(&app);

        // Signed out: the protected page sends to sign-in, which offers the provider.
        let account = b.get("/account").await;
        assert_eq!(account.location(), Some("/login?next=%2Faccount"));
        let login = b.get("/login?next=%2Faccount").await;
        assert_eq!(login.status, StatusCode::OK);
        assert!(login.body.contains("Continue with Test ID"), "{}", login.body);
        assert!(login.body.contains(r#"href="/auth/login?next=%2Faccount""#), "{}", login.body);
        let form = login.body.split("<form").nth(1).expect("the form").split('>').next().unwrap();
        assert!(form.contains("hidden"), "no password form with a provider: <form{form}>");
        // A password posted all the same never goes to the provider (the app refuses it, and the
        // library's upstream for a provider has no password sign-in at all).
        // Registration is the provider's too: the page leads there.
        let register = b.get("/register?next=%2Faccount").await;
        assert!(register.body.contains("Accounts are made at Test ID"), "{}", register.body);
        assert!(register.body.contains(r#"href="/auth/login?next=%2Faccount""#), "{}", register.body);
        let form = register.body.split("<form").nth(1).expect("the form").split('>').next().unwrap();
        assert!(form.contains("hidden"), "no registration form with a provider: <form{form}>");
        let posted = b.call("login", &[("email", "user@example.com"), ("password", "x"), ("next", "/")]).await;
        assert_eq!(posted.status, StatusCode::BAD_REQUEST, "{posted:?}");

        // The button's link: off to the provider, back to the callback, on to /account.
        let begun = b.get("/auth/login?next=%2Faccount").await;
        assert_eq!(begun.status, StatusCode::SEE_OTHER);
        let start = begun.location().expect("to the provider").to_string();
        assert!(start.starts_with(&provider.issuer), "{start}");
        let callback = at_provider(&provider.issuer, &start, "dana").await;
        assert!(callback.starts_with("/auth/callback?"), "{callback}");
        let landed = b.get(&callback).await;
        assert_eq!(landed.location(), Some("/account"), "{}", landed.body);
        let page = b.get("/account").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("Dana User") && page.body.contains("user@example.com"), "{}", page.body);

        // The same callback again (a replay): refused, and the session stays what it was.
        let replayed = b.get(&callback).await;
        assert_eq!(replayed.status, StatusCode::BAD_REQUEST);
        assert_eq!(b.get("/account").await.status, StatusCode::OK);

        // Another browser given the callback URL gets no session.
        let other = Browser::new(&app);
        let begun = b.get("/auth/login?next=%2F").await;
        let fresh = at_provider(&provider.issuer, begun.location().unwrap(), "dana").await;
        assert_eq!(other.get(&fresh).await.status, StatusCode::BAD_REQUEST);
        assert_eq!(other.get("/account").await.location(), Some("/login?next=%2Faccount"));
    })
}

/// Signs `b` in at the provider as dana through the app's button link: on `/account`.
async fn sign_in(b: &Browser<'_>, provider: &Provider) {
    let begun = b.get("/auth/login?next=%2Faccount").await;
    let callback = at_provider(&provider.issuer, begun.location().expect("to the provider"), "dana").await;
    assert_eq!(b.get(&callback).await.location(), Some("/account"));
    assert_eq!(b.get("/account").await.status, StatusCode::OK);
}

#[test]
fn signing_out_sends_the_browser_to_end_the_providers_session_and_back() {
    block_on(async {
        let provider = start_provider().await;
        let app = app_for(&provider).await;
        let b = Browser::new(&app);
        sign_in(&b, &provider).await;
        let id_token = b.session().provider.expect("the session records its provider sign-in").id_token;

        // The page's CSP lets the sign-out form's answer lead to the provider.
        let page = b.get("/account").await;
        let csp = page.headers["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.contains(&format!("form-action 'self' {}", provider.issuer)), "{csp}");

        // Without JavaScript: the form's answer is the provider's end-session page.
        let out = b.form_post("logout", &[], "/account").await;
        assert!(out.status.is_redirection(), "{out:?}");
        let to = url::Url::parse(out.location().expect("to the provider")).unwrap();
        assert_eq!(to.path(), "/session/end");
        let query: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
        assert_eq!(query["id_token_hint"], id_token.expose());
        assert_eq!(query["post_logout_redirect_uri"], format!("{ORIGIN}/"));
        assert_eq!(b.get("/account").await.location(), Some("/login?next=%2Faccount"), "signed out here already");

        // With JavaScript (a server-function call): the same destination, for the client to go to.
        let b = Browser::new(&app);
        sign_in(&b, &provider).await;
        let out = b.call("logout", &[]).await;
        assert!(out.location().is_some_and(|l| l.starts_with(&format!("{}/session/end?", provider.issuer))), "{out:?}");
        assert_eq!(b.get("/account").await.location(), Some("/login?next=%2Faccount"));
    })
}

#[test]
fn the_back_channel_endpoint_refuses_what_is_not_a_logout_token_without_touching_sessions() {
    block_on(async {
        let provider = start_provider().await;
        let app = app_for(&provider).await;
        let b = Browser::new(&app);
        sign_in(&b, &provider).await;
        let post = |body: &'static str, content_type: &'static str| {
            axum::http::Request::post("/auth/backchannel-logout")
                .header("content-type", content_type)
                .body(axum::body::Body::from(body))
                .unwrap()
        };
        // The provider's server calls it: no Origin, no cookie. Refusals are the spec's 400.
        let stranger = Browser::new(&app);
        for (body, content_type) in [
            ("logout_token=a.b.c", "application/x-www-form-urlencoded"),
            ("", "application/x-www-form-urlencoded"),
            (r#"{"logout_token":"a.b.c"}"#, "application/json"),
        ] {
            let answer = stranger.send(post(body, content_type)).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(answer.body.contains("invalid_request"), "{}", answer.body);
        }
        // A browser's cross-site form cannot reach it either.
        let mut forged = post("logout_token=a.b.c", "application/x-www-form-urlencoded");
        forged.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert_eq!(stranger.send(forged).await.status, StatusCode::FORBIDDEN);
        assert_eq!(b.get("/account").await.status, StatusCode::OK);
    })
}

#[test]
fn a_refusal_at_the_provider_lands_on_sign_in_with_its_reason() {
    block_on(async {
        let provider = start_provider().await;
        let app = app_for(&provider).await;
        let b = Browser::new(&app);
        let begun = b.get("/auth/login?next=%2Ffrogs").await;
        let start = url::Url::parse(begun.location().unwrap()).unwrap();
        let state = start.query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string();
        let issuer: String = url::form_urlencoded::byte_serialize(provider.issuer.as_bytes()).collect();
        let refused = b.get(&format!("/auth/callback?error=access_denied&state={state}&iss={issuer}")).await;
        assert_eq!(refused.location(), Some("/login?next=%2Ffrogs&reason=provider_denied"));
        let page = b.get("/login?next=%2Ffrogs&reason=provider_denied").await;
        assert!(page.body.contains("cancelled at your identity provider"), "{}", page.body);
    })
}

#[test]
fn the_provider_is_configured_by_its_issuer_and_mistakes_name_their_variable() {
    use tokenless::server::Settings;
    let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    let base = [
        ("TOKENLESS_UPSTREAM__KIND", "oidc"),
        ("TOKENLESS_UPSTREAM__BASE_URL", "https://api.example"),
        ("TOKENLESS_UPSTREAM__OIDC__ISSUER", "https://id.example/realms/acme"),
        ("TOKENLESS_UPSTREAM__OIDC__CLIENT_ID", "tokenless"),
        ("TOKENLESS_UPSTREAM__OIDC__CLIENT_SECRET", "s3cret"),
    ];
    Settings::from_sources(None, env(&base)).unwrap();
    // Google's offline access, set through the environment.
    let mut google = base.to_vec();
    google.push(("TOKENLESS_UPSTREAM__OIDC__AUTH_PARAMS__ACCESS_TYPE", "offline"));
    google.push(("TOKENLESS_UPSTREAM__OIDC__SCOPES", "openid email profile"));
    let settings = Settings::from_sources(None, env(&google)).unwrap();
    match &settings.upstream.kind {
        tokenless_bff::UpstreamKind::Oidc(o) => assert!(o.asks_offline(), "{:?}", o.auth_params),
        other => panic!("{other:?}"),
    }
    for (change, key) in [
        (("TOKENLESS_UPSTREAM__OIDC__ISSUER", "http://id.example"), "upstream.oidc.issuer"),
        (("TOKENLESS_UPSTREAM__OIDC__CLIENT_SECRET", ""), "upstream.oidc.client_secret"),
        (("TOKENLESS_UPSTREAM__OIDC__SCOPES", "profile"), "upstream.oidc.scopes"),
        (("TOKENLESS_UPSTREAM__BASE_URL", ""), "upstream.base_url"),
        (("TOKENLESS_SESSION__SAME_SITE", "strict"), "session.same_site"),
        (("TOKENLESS_UPSTREAM__OIDC__TOKEN_URL", "/x"), "upstream.oidc"),
        (("TOKENLESS_UPSTREAM__OIDC__AUTH_PARAMS__PROMPT", "none"), "upstream.oidc.auth_params.prompt"),
    ] {
        let mut pairs = base.to_vec();
        pairs.retain(|(k, _)| *k != change.0);
        pairs.push(change);
        match Settings::from_sources(None, env(&pairs)) {
            Err(tokenless::server::settings::SettingsError::Invalid { key: named, env, .. }) => {
                assert_eq!(named, key);
                assert_eq!(env, tokenless::server::settings::env_var(key));
            }
            other => panic!("{change:?}: {other:?}"),
        }
    }
}

#[test]
fn without_a_provider_the_sign_in_page_is_the_password_form() {
    block_on(async {
        let app = app().await;
        let login = Browser::new(&app).get("/login").await;
        let form = login.body.split("<form").nth(1).expect("the form").split('>').next().unwrap();
        assert!(!form.contains("hidden"), "<form{form}>");
        assert!(!login.body.contains("provider-sign-in"));
    })
}
