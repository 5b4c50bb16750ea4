//! The app's middleware, outermost first: security headers (with the CSP nonce Leptos puts on
//! its inline scripts), the library's session layer as this app configures it (cross-site
//! refusal, the session, the server-side redirect of signed-out visitors away from protected
//! pages), the refusal of form errors a link from elsewhere put in a URL, and the status of a
//! server function's error.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use leptos::server_fn::error::FromServerFnError;
use rand::RngCore;
use tokenless_bff::{Ended, SessionLayer, SiteOrigin};

use crate::app::{is_protected, login_href};
use crate::error::AppError;
use crate::server::settings::Mode;
use crate::server::AppState;

/// The nonce of this response's Content-Security-Policy; Leptos puts it on its inline scripts.
#[derive(Clone, Debug)]
pub struct CspNonce(pub Arc<str>);

/// The files of `public/` (and the icon browsers ask for on their own).
const PUBLIC_FILES: [&str; 4] = ["/favicon.svg", "/favicon.ico", "/forms.js", "/islands.js"];

/// Files cargo-leptos builds and `public/` holds: no session, cacheable.
fn is_static(path: &str) -> bool {
    path.starts_with("/pkg/") || PUBLIC_FILES.contains(&path)
}

/// Paths that never read the session.
pub(crate) fn is_sessionless(path: &str) -> bool {
    is_static(path) || path == crate::server::metrics::PATH
}

pub async fn security_headers(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let nonce: Arc<str> = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes).into();
    request.extensions_mut().insert(CspNonce(nonce.clone()));
    let dynamic = !is_static(request.uri().path());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // cargo-leptos's live reload talks over a WebSocket in development.
    let connect = if state.settings.server.mode == Mode::Development { "'self' ws: wss:" } else { "'self'" };
    // Leptos needs: its inline hydration scripts (allowed by nonce, no 'unsafe-inline') and
    // WebAssembly compilation ('wasm-unsafe-eval', not 'unsafe-eval').
    let csp = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; connect-src {connect}; font-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action {form_action}; frame-ancestors 'none'",
        form_action = state.form_action
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if state.settings.site.secure() {
        // https origin: browsers keep to https for a year (never sent over plain http, where it
        // would mean nothing, and never on localhost development).
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    if dynamic {
        // Pages show who is signed in: never store them in a shared or browser cache.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    } else {
        // A release build's assets go out brotli- or gzip-encoded by the browser's
        // Accept-Encoding (`--precompress`); ServeDir does not say so, and a shared cache that
        // is not told would hand brotli to a browser that cannot read it.
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// Query parameters leptos_axum adds when it sends a plain form post back to its page with the
/// error: the page shows the error they carry.
const FORM_ERROR_PARAMS: [&str; 2] = ["__err", "__path"];

/// Whether a raw `key=value` pair of a query is a form error. The key is percent-decoded first,
/// the way Leptos reads it (`%5F%5Ferr` is `__err` to Leptos, so it must be to us too).
fn is_form_error_pair(pair: &str) -> bool {
    url::form_urlencoded::parse(pair.as_bytes())
        .next()
        .is_some_and(|(key, _)| FORM_ERROR_PARAMS.contains(&key.as_ref()))
}

/// `path_and_query` without its form-error pairs (a return path must never carry one).
pub fn without_form_errors(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let kept: Vec<&str> = query.split('&').filter(|pair| !is_form_error_pair(pair)).collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// The same page without a form error in its URL, when the URL carries one that this site's
/// own redirect did not put there: a link from elsewhere could make a form show any message
/// ("your account is locked, call..."). Ours is a navigation from this origin (Sec-Fetch-Site
/// `same-origin`, or, for browsers without Fetch Metadata, a Referer of this origin).
fn without_foreign_form_error(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    origin: &str,
) -> Option<String> {
    if method != Method::GET {
        return None;
    }
    let query = uri.query()?;
    if !query.split('&').any(is_form_error_pair) {
        return None;
    }
    let ours = match headers.get("sec-fetch-site") {
        Some(site) => site.as_bytes() == b"same-origin",
        None => headers
            .get(header::REFERER)
            .and_then(|r| r.to_str().ok())
            .is_some_and(|r| r.strip_prefix(origin).is_some_and(|rest| rest.starts_with('/'))),
    };
    if ours {
        return None;
    }
    let clean = without_form_errors(&format!("{}?{query}", uri.path()));
    // `//host/...` would leave the site.
    Some(tokenless_bff::safe_next(&clean).unwrap_or_else(|| "/".to_string()))
}

/// A link from elsewhere must not make a form show its text: see [`without_foreign_form_error`].
/// Runs inside the session layer, which says what this site's origin is (paths it skips have
/// no forms).
pub async fn refuse_foreign_form_errors(request: Request, next: Next) -> Response {
    let Some(SiteOrigin(origin)) = request.extensions().get::<SiteOrigin>() else {
        if !is_sessionless(request.uri().path()) {
            // Only if this middleware is moved outside the session layer: say so loudly.
            tracing::error!("no SiteOrigin: refuse_foreign_form_errors must run inside the session layer");
        }
        return next.run(request).await;
    };
    if let Some(clean) =
        without_foreign_form_error(request.method(), request.uri(), request.headers(), origin)
    {
        tracing::info!(path = %request.uri().path(), "dropped a form error that did not come from this site");
        return Redirect::to(&clean).into_response();
    }
    next.run(request).await
}

/// What a page request gets while the session's standing cannot be told: still signed in, try
/// again (a page of its own: the app's shell would read the session it cannot trust).
const UNAVAILABLE_PAGE: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Try again — Tokenless</title></head><body><main><h1>Try again in a moment</h1><p>The service cannot check your session right now. You are still signed in. Please try again in a moment.</p><p><a href=\"\">Try again</a></p></main></body></html>";

/// The BFF's layer as this app configures it: the site's origin, no session work for static
/// files and `/metrics`, signed-out visitors of protected pages sent to sign in (with where
/// they were going), the server-function error body for a refused cross-site request, the
/// benchmark baseline's fixed session when enabled.
pub fn session_layer(state: &AppState) -> SessionLayer {
    let mut layer = SessionLayer::new(state.sessions.clone())
        .skip(is_sessionless)
        // The body is the error the server-function client understands.
        .cross_site_answer(|| {
            let body = AppError::CrossSite.ser();
            (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        })
        // The session's sign-out marks cannot be read (Redis does not answer): try again.
        .unavailable_answer(|path| {
            let retry = [(header::RETRY_AFTER, "1")];
            if path.starts_with("/api/") {
                let body = AppError::UpstreamUnavailable.ser();
                (StatusCode::SERVICE_UNAVAILABLE, retry, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, retry, axum::response::Html(UNAVAILABLE_PAGE)).into_response()
            }
        })
        .protect(is_protected, |here, ended| {
            // The return path never carries a form error: after sign-in it would be a
            // navigation from this site, and its text shown as ours.
            login_href(&without_form_errors(here), matches!(ended, Some(Ended::Revoked | Ended::Expired)))
        })
        .fixed_session(state.fixed_session.as_deref().cloned());
    if let Some(origin) = &state.settings.site.origin {
        layer = layer.origin(origin);
    }
    layer
}

/// Leptos answers every server-function error with 500. This gives each the status that says
/// what went wrong (401, 403, 409, 422, 503...), read from the error itself; a 500 then means a
/// real failure on our side. Plain form posts are redirects and pass untouched.
pub async fn server_fn_status(request: Request, next: Next) -> Response {
    let is_server_fn = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    if !is_server_fn || response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, AppError::Internal.ser()).into_response();
    };
    if let Ok(error) = serde_json::from_slice::<AppError>(&bytes) {
        if let Ok(status) = StatusCode::from_u16(error.status()) {
            parts.status = status;
        }
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "https://app.example";

    fn clean(uri: &str, headers: &[(&str, &str)]) -> Option<String> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        without_foreign_form_error(&Method::GET, &uri.parse().unwrap(), &map, ORIGIN)
    }

    #[test]
    fn form_errors_only_from_this_sites_own_redirect() {
        let uri = "/login?next=%2Ffrogs&__path=%2Fapi%2Flogin&__err=Zm9v";
        // The redirect after our own form post.
        assert_eq!(clean(uri, &[("sec-fetch-site", "same-origin")]), None);
        assert_eq!(clean(uri, &[("referer", "https://app.example/login")]), None);
        // A link from elsewhere, a typed or bookmarked URL, a look-alike referer.
        for headers in [
            &[("sec-fetch-site", "cross-site")][..],
            &[("sec-fetch-site", "same-site")],
            &[("sec-fetch-site", "none")],
            &[("sec-fetch-site", "none"), ("referer", "https://app.example/login")],
            &[("referer", "https://app.example.evil.test/login")],
            &[("referer", "https://evil.test/")],
            &[],
        ] {
            assert_eq!(clean(uri, headers).as_deref(), Some("/login?next=%2Ffrogs"), "{headers:?}");
        }
        assert_eq!(clean("/register?__err=x", &[]).as_deref(), Some("/register"));
        // Percent-encoded keys are the same keys to Leptos (url's query_pairs decodes them).
        for sneaky in [
            "/login?%5F%5Fpath=%2Fapi%2Flogin&%5F%5Ferr=eyJ4IjoxfQ",
            "/login?%5f%5fpath=%2Fapi%2Flogin&_%5Ferr=eyJ4IjoxfQ",
            "/login?__p%61th=%2Fapi%2Flogin&__%65rr=eyJ4IjoxfQ",
            "/login?__err",
            "/login?next=%2F&__err",
        ] {
            let cleaned = clean(sneaky, &[("sec-fetch-site", "cross-site")]);
            let cleaned = cleaned.unwrap_or_else(|| panic!("{sneaky} kept its form error"));
            assert!(cleaned == "/login" || cleaned == "/login?next=%2F", "{sneaky} -> {cleaned}");
        }
        // A key that only looks like one after decoding something else is left alone.
        assert_eq!(clean("/login?x=__err", &[]), None);
        assert_eq!(clean("/login?__errata=1", &[]), None);
        assert_eq!(clean("//evil.test/?__err=x", &[]).as_deref(), Some("/"), "never off the site");
        // Nothing to do.
        assert_eq!(clean("/login?next=%2F", &[]), None);
        // Return paths lose theirs.
        assert_eq!(without_form_errors("/frogs?__err=x&sort=name&%5F%5Fpath=y"), "/frogs?sort=name");
        assert_eq!(without_form_errors("/frogs?__err=x"), "/frogs");
        assert_eq!(without_form_errors("/frogs?sort=name"), "/frogs?sort=name");
        assert_eq!(clean("/login", &[]), None);
        let post = without_foreign_form_error(
            &Method::POST,
            &"/api/login?__err=x".parse().unwrap(),
            &HeaderMap::new(),
            ORIGIN,
        );
        assert_eq!(post, None);
    }
}
