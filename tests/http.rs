//! The router driven through `oneshot`: pages, server functions, 404s, security headers.
#![cfg(feature = "ssr")]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{app, block_on, Browser, ADMIN, ORIGIN, USER};
use tokenless::server::router;

#[test]
fn home_page_is_server_rendered_with_the_status() {
    block_on(async {
        let app = app().await;
        let answer = Browser::new(&app).get("/").await;
        assert_eq!(answer.status, StatusCode::OK);
        let html = answer.body;
        assert!(html.contains("Sign in without handing your browser a token"), "{html}");
        assert!(html.contains("data-testid=\"server-status\""), "status resolved during SSR: {html}");
        assert!(html.contains("demo upstream (in-process)"), "{html}");
        assert!(html.contains("/pkg/tokenless.js") && html.contains("src=\"/islands.js\""), "the islands' loader: {html}");
        assert_eq!(html.matches("<leptos-island").count(), 2, "the status and the counter: {html}");
        let nav = html.split("<nav").nth(1).and_then(|n| n.split("</nav>").next()).expect("a nav");
        assert!(nav.contains("href=\"/login\""), "the signed-out header is in place: {nav}");
    })
}

/// What each `<script>` of a page holds, from its attributes to its end tag.
fn scripts(html: &str) -> impl Iterator<Item = &str> {
    html.split("<script").skip(1).map(|script| script.split("</script>").next().unwrap_or_default())
}

/// Pages without islands are plain HTML: no wasm, no loader, no hydration data.
/// The forms' pending-state script is their one script file.
#[test]
fn pages_without_islands_ship_no_wasm_and_no_hydration_data() {
    block_on(async {
        let app = app().await;
        let plain = |path: &str, html: &str| {
            assert!(!html.contains("/pkg/tokenless.js") && !html.contains(".wasm"), "{path}: {html}");
            assert!(!html.contains("islands.js"), "{path}: {html}");
            assert!(!html.contains("<leptos-island"), "{path}: {html}");
            assert!(html.contains("src=\"/forms.js\""), "{path}: {html}");
            // Resources are not serialized for a client that does not hydrate them.
            for inline in scripts(html) {
                assert!(!inline.contains('{') && !inline.contains("example.com"), "{path}: {inline}");
            }
        };
        let visitor = Browser::new(&app);
        for path in ["/login", "/register", "/login?next=%2Ffrogs&reason=expired", "/nope"] {
            let answer = visitor.get(path).await;
            plain(path, &answer.body);
        }
        let admin = Browser::new(&app);
        admin.sign_in(ADMIN).await;
        for path in ["/account", "/admin"] {
            let answer = admin.get(path).await;
            assert_eq!(answer.status, StatusCode::OK, "{path}");
            plain(path, &answer.body);
        }
        // The pages with islands: nothing is serialized for their islands (the server status is
        // asked outside its island), and nothing about the person is in an inline script.
        let user = Browser::new(&app);
        user.sign_in(USER).await;
        for path in ["/", "/frogs"] {
            let answer = user.get(path).await;
            assert!(answer.body.contains("<leptos-island"), "{path}: {}", answer.body);
            for inline in scripts(&answer.body) {
                assert!(!inline.contains(USER.0) && !inline.contains("roles"), "{path}: {inline}");
                assert!(!inline.contains("Dana"), "{path}: the name is in the header only: {inline}");
            }
        }
        // The frogs page holds one island around its list, which makes the croak buttons work;
        // the buttons are plain HTML inside it. Islands take no props: nothing of a frog reaches
        // the browser but the HTML (the button's `data-frog` is its id).
        let frogs = user.get("/frogs").await;
        assert_eq!(frogs.status, StatusCode::OK);
        assert_eq!(frogs.body.matches("<leptos-island").count(), 1, "{}", frogs.body);
        let (_, island) = frogs.body.split_once("<leptos-island").expect("the island");
        let (island, _) = island.split_once("</leptos-island>").expect("the island's end");
        assert!(island.starts_with(" data-component=\"CroakButtons"), "{island}");
        assert!(frogs.body.contains("/pkg/tokenless.js") && frogs.body.contains("src=\"/islands.js\""), "{}", frogs.body);
        assert!(!frogs.body.contains("data-props"), "{}", frogs.body);
        for id in 1..=8 {
            let (_, button) = island.split_once(&format!("data-frog=\"{id}\"")).expect("the button, inside the island");
            let (button, _) = button.split_once('>').unwrap_or_default();
            assert!(button.contains("aria-label=\"Croak with "), "frog {id}'s button has a name: {button}");
        }
        assert_eq!(island.matches("<button").count(), 8, "{island}");
        assert!(!user.get("/").await.body.contains("data-props"));
    })
}

/// The forms' script and the islands' loader are static files: cacheable, and no session is
/// read or written for them.
#[test]
fn the_scripts_are_static_files() {
    block_on(async {
        let mut app = app().await;
        // The site as cargo-leptos lays it out: `public/` copied to its root.
        let site = std::env::temp_dir().join(format!("tokenless-public-{}", std::process::id()));
        std::fs::create_dir_all(&site).unwrap();
        for file in ["forms.js", "islands.js"] {
            std::fs::copy(format!("{}/public/{file}", env!("CARGO_MANIFEST_DIR")), site.join(file)).unwrap();
        }
        app.router = router(app.state.with_site_root(&site.to_string_lossy()));
        let browser = Browser::new(&app);
        browser.sign_in(USER).await;
        for (file, holds) in [("/forms.js", "dataset.pending"), ("/islands.js", "leptos-island")] {
            let answer = browser.get(file).await;
            assert_eq!(answer.status, StatusCode::OK, "{file}");
            assert!(answer.headers["content-type"].to_str().unwrap().contains("javascript"), "{file}");
            assert!(answer.headers.get("cache-control").is_none_or(|v| v != "no-store"), "{file}: {:?}", answer.headers);
            assert!(answer.set_cookies().is_empty(), "{file}: {:?}", answer.headers);
            assert!(answer.body.contains(holds), "{file}: {}", answer.body);
        }
        let _ = std::fs::remove_dir_all(site);
    })
}

#[test]
fn unknown_page_is_404() {
    block_on(async {
        let app = app().await;
        let answer = Browser::new(&app).get("/nope/nothing").await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert!(answer.body.contains("Page not found"));
    })
}

/// The server status, the one server function an island calls, asked the way the island asks
/// (`crate::browser::post`: no body, no content type): a JSON answer the browser's parser reads.
#[test]
fn the_islands_server_function_answers_the_islands_request_in_json() {
    block_on(async {
        let app = app().await;
        let answer = Browser::new(&app)
            .send(
                Request::post("/api/server_status")
                    .header("accept", "application/json")
                    .header("origin", ORIGIN)
                    .header("sec-fetch-site", "same-origin")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.headers["content-type"], "application/json");
        let report: serde_json::Value = serde_json::from_slice(&answer.bytes).expect("JSON");
        assert_eq!(report["version"], env!("CARGO_PKG_VERSION"));
        assert!(report["upstream"].is_string());
        assert!(report["answered_at_ms"].as_u64().unwrap() > 1_600_000_000_000, "{report}");
    })
}

#[test]
fn security_headers_and_a_csp_nonce_that_matches_the_scripts() {
    block_on(async {
        let app = app().await;
        let answer = Browser::new(&app).get("/login").await;
        assert_eq!(answer.status, StatusCode::OK);
        let h = &answer.headers;
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(!csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let nonce = csp.split("'nonce-").nth(1).and_then(|r| r.split('\'').next()).expect("a nonce");
        assert!(nonce.len() >= 16);
        let scripts = answer.body.matches("<script").count();
        let with_nonce = answer.body.matches(&format!("nonce=\"{nonce}\"")).count();
        assert!(scripts > 0 && with_nonce >= scripts, "{scripts} scripts, {with_nonce} with the nonce");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(h["cache-control"], "no-store");
        // Another response, another nonce.
        let again = Browser::new(&app).get("/login").await;
        assert_ne!(again.headers["content-security-policy"], answer.headers["content-security-policy"]);
    })
}

/// `cargo leptos build --release --precompress` writes `.br` and `.gz` files beside each asset;
/// the server sends them to browsers that accept them, with the asset's own type.
#[test]
fn static_files_go_out_precompressed_when_the_build_wrote_them() {
    block_on(async {
        let mut app = app().await;
        let site = std::env::temp_dir().join(format!("tokenless-site-{}", std::process::id()));
        std::fs::create_dir_all(site.join("pkg")).unwrap();
        std::fs::write(site.join("pkg/tokenless.wasm"), "raw wasm").unwrap();
        std::fs::write(site.join("pkg/tokenless.wasm.br"), "brotli wasm").unwrap();
        std::fs::write(site.join("pkg/tokenless.wasm.gz"), "gzip wasm").unwrap();
        std::fs::write(site.join("pkg/tokenless.css"), "body{}").unwrap();
        app.router = router(app.state.with_site_root(&site.to_string_lossy()));
        let browser = Browser::new(&app);
        let fetch = |path: &str, encodings: Option<&str>| {
            let mut request = Request::get(path);
            if let Some(encodings) = encodings {
                request = request.header("accept-encoding", encodings);
            }
            browser.send(request.body(Body::empty()).unwrap())
        };

        let brotli = fetch("/pkg/tokenless.wasm", Some("gzip, deflate, br, zstd")).await;
        assert_eq!(brotli.status, StatusCode::OK);
        assert_eq!(brotli.body, "brotli wasm");
        assert_eq!(brotli.headers["content-encoding"], "br");
        assert_eq!(brotli.headers["content-type"], "application/wasm");
        assert!(brotli.headers["vary"].to_str().unwrap().to_ascii_lowercase().contains("accept-encoding"));
        // Static: no session work, cacheable, still under the security headers.
        assert!(brotli.headers.get("set-cookie").is_none());
        assert!(brotli.headers.get("cache-control").is_none());
        assert_eq!(brotli.headers["x-content-type-options"], "nosniff");

        let gzip = fetch("/pkg/tokenless.wasm", Some("gzip")).await;
        assert_eq!((gzip.body.as_str(), &gzip.headers["content-encoding"]), ("gzip wasm", &"gzip".parse().unwrap()));
        let plain = fetch("/pkg/tokenless.wasm", None).await;
        assert_eq!(plain.body, "raw wasm");
        assert!(plain.headers.get("content-encoding").is_none());
        // An asset without a compressed copy goes out as it is.
        let css = fetch("/pkg/tokenless.css", Some("br")).await;
        assert_eq!((css.status, css.body.as_str()), (StatusCode::OK, "body{}"));
        assert!(css.headers.get("content-encoding").is_none());
        // A compressed copy is not a file of its own to ask for by a path trick.
        let missing = fetch("/pkg/%2e%2e/Cargo.toml", Some("br")).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);

        std::fs::remove_dir_all(&site).unwrap();
    })
}
