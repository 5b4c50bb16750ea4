//! A restart, as `cargo leptos watch` does after every edit: the app and its embedded demo
//! upstream stop and start again on the same development files (the kept session key and the
//! demo's SQLite database). Everyone stays signed in, accounts stay, refresh still rotates, and
//! a refresh token rotated before the restart is still caught when replayed after it.

mod common;

use axum::http::StatusCode;
use common::*;
use tokenless_bff::KeyRing;
use tokenless_bff::Session;

const COOKIE: &str = "tokenless_session";
const NEWCOMER: (&str, &str) = ("newcomer@example.com", "a long enough password");

/// Ages the access token in the browser's cookie with the development key read from its file, as
/// if its lifetime had passed (waiting would make the refresh count depend on timing).
fn expire_access_token(b: &Browser<'_>, ring: &KeyRing) {
    let mut jar = b.jar.lock().unwrap();
    let sealed = jar.get(COOKIE).expect("a session cookie").clone();
    let mut session =
        Session::from_bytes(&ring.open(COOKIE, &sealed).expect("sealed with the kept key").plaintext)
            .expect("a session");
    session.tokens.access_expires_at = tokenless_bff::now() - 1;
    jar.insert(COOKIE.into(), ring.seal(COOKIE, &session.to_bytes()));
}

/// A browser on `app` holding the cookies another one had before the restart.
fn carry<'a>(app: &'a TestApp, before: &std::collections::BTreeMap<String, String>) -> Browser<'a> {
    let b = Browser::new(app);
    for (name, value) in before {
        b.set_cookie(name, value);
    }
    b
}

#[test]
fn a_restart_keeps_everyone_signed_in_and_every_account() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("dev/demo-upstream.sqlite3").display().to_string();
        let key_file = dir.path().join("dev/session-key").display().to_string();
        // Development as `make watch` runs it: no configured key, the state under one directory.
        let files = [
            ("TOKENLESS_SESSION__KEYS", ""),
            ("TOKENLESS_SESSION__DEV_KEY_FILE", key_file.as_str()),
            ("TOKENLESS_DEMO__DATABASE", database.as_str()),
        ];

        let (dana_jar, newcomer_jar, rotated_before) = {
            let app = app_with(&files).await;
            let ring = KeyRing::parse(std::fs::read_to_string(&key_file).unwrap().trim()).unwrap();
            let dana = Browser::new(&app);
            dana.sign_in(USER).await;
            assert_eq!(dana.get("/account").await.status, StatusCode::OK);
            let newcomer = Browser::new(&app);
            let registered = newcomer
                .call(
                    "register",
                    &[("name", "New Comer"), ("email", NEWCOMER.0), ("password", NEWCOMER.1), ("next", "/")],
                )
                .await;
            assert!(registered.status.is_success(), "{registered:?}");
            assert!(newcomer.get("/account").await.body.contains("New Comer"));
            // One rotation before the restart: its retired token is replayed after it.
            expire_access_token(&dana, &ring);
            assert_eq!(dana.get("/frogs").await.status, StatusCode::OK);
            assert_eq!(app.refresh_grants().await, 1);
            let issued = app.control_get(&format!("/_test/users/{}/tokens", USER.0)).await;
            let rotated = issued["refresh_tokens"][0].as_str().expect("the first refresh token").to_string();
            let jars = (dana.jar.lock().unwrap().clone(), newcomer.jar.lock().unwrap().clone());
            (jars.0, jars.1, rotated)
            // The app and its demo upstream stop here.
        };

        let app = app_with(&files).await;
        let ring = KeyRing::parse(std::fs::read_to_string(&key_file).unwrap().trim()).unwrap();
        let dana = carry(&app, &dana_jar);
        let newcomer = carry(&app, &newcomer_jar);
        let page = dana.get("/account").await;
        assert_eq!(page.status, StatusCode::OK, "still signed in after the restart: {page:?}");
        assert!(page.body.contains("Dana User"));
        assert!(newcomer.get("/account").await.body.contains("New Comer"), "the registered account too");
        let frogs = newcomer.get("/frogs").await;
        assert_eq!(frogs.status, StatusCode::OK, "its access token still passes the upstream");
        assert!(frogs.body.contains("Fern"));

        // The registered account signs in with its password in a fresh browser.
        Browser::new(&app).sign_in(NEWCOMER).await;

        // Refresh still rotates, once.
        expire_access_token(&dana, &ring);
        assert_eq!(dana.get("/frogs").await.status, StatusCode::OK);
        assert_eq!(app.refresh_grants().await, 1);
        app.assert_no_reuse().await;

        // The token retired before the restart, presented again: theft, caught, the sign-in ended.
        let base = app.state.demo.as_ref().expect("the demo upstream").base_url();
        let replay = reqwest::Client::new()
            .post(format!("{base}/oauth/token"))
            .basic_auth("tokenless", Some("tokenless-demo-secret"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", rotated_before.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(replay.status().as_u16(), 400);
        assert_eq!(replay.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant");
        assert_eq!(app.counters().await["reuse_events"], 1);
        let after = dana.get("/frogs").await;
        assert!(after.status.is_redirection(), "the revoked sign-in is over: {after:?}");
        assert_eq!(after.location(), Some("/login?next=%2Ffrogs&reason=expired"));
        assert_eq!(newcomer.get("/frogs").await.status, StatusCode::OK, "other sign-ins untouched");
    })
}

#[test]
fn without_a_key_file_a_restart_signs_everyone_out() {
    // The opposite setting, so the test above cannot pass by accident: a throw-away key per start.
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("demo.sqlite3").display().to_string();
        let files = [
            ("TOKENLESS_SESSION__KEYS", ""),
            ("TOKENLESS_SESSION__DEV_KEY_FILE", ""),
            ("TOKENLESS_DEMO__DATABASE", database.as_str()),
        ];
        let jar = {
            let app = app_with(&files).await;
            let b = Browser::new(&app);
            b.sign_in(USER).await;
            assert_eq!(b.get("/account").await.status, StatusCode::OK);
            let jar = b.jar.lock().unwrap().clone();
            jar
        };
        let app = app_with(&files).await;
        let b = carry(&app, &jar);
        assert_eq!(b.get("/account").await.status, StatusCode::SEE_OTHER);
        // The accounts are in the database all the same.
        Browser::new(&app).sign_in(USER).await;
    })
}

/// The server binary as `make run` and `cargo leptos watch` start it: no settings at all (the
/// defaults put development's files under `target/` of the directory it runs in), stopped with
/// SIGKILL (no graceful shutdown, as a crash) and started again. The cookie from before still
/// opens a signed-in page, and the files are where the README says.
#[test]
fn the_server_killed_and_started_again_keeps_the_session() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let origin = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let start = || {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tokenless"));
            for (name, _) in
                std::env::vars().filter(|(n, _)| n.starts_with("TOKENLESS_") || n.starts_with("LEPTOS_"))
            {
                command.env_remove(name);
            }
            Server(
                command
                    .current_dir(dir.path())
                    .env("TOKENLESS_SERVER__ADDRESS", format!("127.0.0.1:{port}"))
                    .env("TOKENLESS_SERVER__LOG", "warn")
                    .env("TOKENLESS_DEMO__FAST_HASHING", "true")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("the server binary starts"),
            )
        };
        let ready = |http: reqwest::Client, origin: String| async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
            loop {
                if let Ok(r) = http.get(format!("{origin}/login")).send().await {
                    if r.status().is_success() {
                        return;
                    }
                }
                assert!(std::time::Instant::now() < deadline, "the server did not answer within 45 s");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };

        let server = start();
        ready(http.clone(), origin.clone()).await;
        let login = http
            .post(format!("{origin}/api/login"))
            .header("origin", &origin)
            .header("sec-fetch-site", "same-origin")
            .header("accept", "application/json")
            .form(&[("email", USER.0), ("password", USER.1), ("next", "/")])
            .send()
            .await
            .unwrap();
        assert!(login.status().is_success(), "{}", login.status());
        let cookie = login
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("tokenless_session="))
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_string();
        let account = |http: reqwest::Client, origin: String, cookie: String| async move {
            let r = http.get(format!("{origin}/account")).header("cookie", cookie).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        };
        let (status, body) = account(http.clone(), origin.clone(), cookie.clone()).await;
        assert_eq!(status, 200);
        assert!(body.contains("Dana User"));
        let frogs = |http: reqwest::Client, origin: String, cookie: String| async move {
            let r = http.get(format!("{origin}/frogs")).header("cookie", cookie).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        };
        let (status, body) = frogs(http.clone(), origin.clone(), cookie.clone()).await;
        assert_eq!(status, 200);
        assert!(body.contains("Fern"));

        drop(server);
        let kept = dir.path().join("target/tokenless-dev");
        assert!(kept.join("session-key").is_file() && kept.join("demo-upstream.sqlite3").is_file());

        let server = start();
        ready(http.clone(), origin.clone()).await;
        let (status, body) = account(http.clone(), origin.clone(), cookie.clone()).await;
        // The page that calls the upstream with the access token from before the kill: the
        // sign-in and the signing key survived in the database, not only the cookie's key.
        let (frogs_status, frogs_body) = frogs(http.clone(), origin.clone(), cookie).await;
        drop(server);
        assert_eq!(status, 200, "signed in after the restart: {body}");
        assert!(body.contains("Dana User"));
        assert_eq!(frogs_status, 200, "{frogs_body}");
        assert!(frogs_body.contains("Fern"), "the frogs, not the sign-in page: {frogs_body}");
    })
}

/// A server process, killed (SIGKILL) and reaped when dropped, also when a test fails midway.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_key_file_that_cannot_be_kept_stops_the_start_naming_the_settings() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let plain_file = dir.path().join("a-file");
        std::fs::write(&plain_file, "not a directory").unwrap();
        let key_file = plain_file.join("session-key").display().to_string();
        let env = [
            ("TOKENLESS_SESSION__KEYS", ""),
            ("TOKENLESS_SESSION__DEV_KEY_FILE", key_file.as_str()),
            ("TOKENLESS_DEMO__DATABASE", ":memory:"),
        ];
        let settings = tokenless::server::Settings::from_sources(
            None,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        let options = tokenless::server::state::leptos_options(&settings);
        let e = match tokenless::server::AppState::build(settings, options).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a key file under a plain file cannot be kept"),
        };
        assert!(e.contains(&key_file), "{e}");
        assert!(e.contains("TOKENLESS_SESSION__DEV_KEY_FILE") && e.contains("TOKENLESS_SESSION__KEYS"), "{e}");
        assert_eq!(std::fs::read_to_string(&plain_file).unwrap(), "not a directory", "nothing lost");
    })
}

/// The settings of an app whose refresh memory and demo upstream are kept in `dir`: started
/// twice on them, the second start is a restart.
fn kept_in(dir: &std::path::Path) -> [(&'static str, String); 2] {
    [
        ("TOKENLESS_SESSION__SQLITE_PATH", dir.join("refresh-memory.sqlite3").display().to_string()),
        ("TOKENLESS_DEMO__DATABASE", dir.join("demo-upstream.sqlite3").display().to_string()),
    ]
}

fn settings<'a>(kept: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    kept.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Issue 33: a refresh result outlives the process that got it. A tab sends the cookie from
/// before a rotation after the restart (its request was in flight, or the tab was asleep): it
/// gets the rotated tokens the file remembered, and the retired refresh token never reaches the
/// upstream again — which would count it as reuse and end the sign-in everywhere.
#[test]
fn a_refresh_result_outlives_a_restart_for_the_late_cookie_from_before_it() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let kept = kept_in(dir.path());
        let ring = KeyRing::parse(TEST_KEYS).unwrap();
        let (late_jar, rotated) = {
            let app = app_with(&settings(&kept)).await;
            let dana = Browser::new(&app);
            dana.sign_in(USER).await;
            expire_access_token(&dana, &ring);
            let late = dana.jar.lock().unwrap().clone();
            let retired = refresh_token(&dana.session().tokens);
            assert_eq!(dana.get("/frogs").await.status, StatusCode::OK);
            assert_eq!(app.refresh_grants().await, 1);
            let rotated = dana.session().tokens;
            assert_ne!(refresh_token(&rotated), retired, "rotated");
            // Stopped as the binary stops: what the requests began is written first.
            assert!(app.state.sessions.drain(std::time::Duration::from_secs(10)).await);
            (late, rotated)
        };

        let app = app_with(&settings(&kept)).await;
        let tab = carry(&app, &late_jar);
        let frogs = tab.get("/frogs").await;
        assert_eq!(frogs.status, StatusCode::OK, "{frogs:?}");
        assert!(frogs.body.contains("Fern"));
        assert_eq!(app.refresh_grants().await, 0, "the remembered result, not a second grant");
        app.assert_no_reuse().await;
        let handed = tab.session().tokens;
        assert_eq!(refresh_token(&handed), refresh_token(&rotated), "the rotated refresh token");
        assert_eq!(handed.access_token.expose(), rotated.access_token.expose(), "and its access token");
    })
}

fn refresh_token(tokens: &tokenless_bff::TokenSet) -> String {
    tokens.refresh_token.as_ref().expect("a refresh token").expose().to_string()
}

/// Issue 33: a refresh memory file another instance holds, or one that is not a refresh memory,
/// stops the start with an error naming the setting, its variable and the file; the running
/// instance carries on (its sign-outs still hold) and the file is left as it was.
#[test]
fn a_memory_file_in_use_or_damaged_stops_the_start_naming_the_setting() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let kept = kept_in(dir.path());
        let file = &kept[0].1;
        let refused = |e: Result<TestApp, tokenless::server::state::StateError>| match e {
            Ok(_) => panic!("an app started on {file}"),
            Err(e) => e.to_string(),
        };

        let running = app_with(&settings(&kept)).await;
        let (dana, kim) = (Browser::new(&running), Browser::new(&running));
        dana.sign_in(USER).await;
        kim.sign_in(ADMIN).await;
        let e = refused(try_app_with(&settings(&kept)).await);
        assert!(e.contains("in use by another process") && e.contains(file.as_str()), "{e}");
        assert!(e.contains("TOKENLESS_SESSION__SQLITE_PATH") && e.contains("redis"), "{e}");
        assert_eq!(dana.get("/account").await.status, StatusCode::OK, "the running instance carries on");
        let gone = dana.jar.lock().unwrap().clone();
        assert!(dana.call("logout", &[]).await.status.is_success());
        assert_eq!(carry(&running, &gone).get("/account").await.status, StatusCode::SEE_OTHER, "its sign-out holds");
        let kim_jar = kim.jar.lock().unwrap().clone();
        drop((dana, kim));
        drop(running);

        // Not a refresh memory: refused as it is, never opened as an empty one (every sign-out
        // it held would be forgotten) and never written over.
        let kept_bytes = std::fs::read(file).unwrap();
        let damaged: Vec<u8> = b"SQLite format 3\0".iter().copied().chain(std::iter::repeat_n(0xA5, 8192)).collect();
        std::fs::write(file, &damaged).unwrap();
        let e = refused(try_app_with(&settings(&kept)).await);
        assert!(e.contains("not a refresh memory this version can read") && e.contains(file.as_str()), "{e}");
        assert!(e.contains("TOKENLESS_SESSION__SQLITE_PATH") && e.contains("move it away"), "{e}");
        assert_eq!(std::fs::read(file).unwrap(), damaged, "left as it was");

        // Put back, it starts, with what it held.
        std::fs::write(file, &kept_bytes).unwrap();
        let app = app_with(&settings(&kept)).await;
        assert_eq!(carry(&app, &gone).get("/account").await.status, StatusCode::SEE_OTHER, "the sign-out");
        assert_eq!(carry(&app, &kim_jar).get("/account").await.status, StatusCode::OK, "and kim still signed in");
    })
}
