//! The upstream passthrough: browser code calls `{prefix}/<upstream path>` and the BFF forwards
//! it with the session's access token, never as an open proxy (IETF browser-based apps, BFF):
//!
//! - only the methods and paths the allowlist names; a path whose segments are not plain
//!   unreserved characters (`%`, `\`, `.`/`..` segments, empty segments) matches nothing;
//! - a static `X-CSRF: 1` header on every call (a cross-site form or `<img>` cannot send one,
//!   a cross-site `fetch` with it needs a CORS preflight that is never granted), on top of the
//!   same-origin check every state-changing request gets;
//! - request headers forwarded from a short allowlist (never `Cookie`, `Authorization` or
//!   hop-by-hop ones), response headers passed back from another (never `Set-Cookie`);
//! - a 401 from upstream refreshes (single flight) and retries once, for idempotent methods;
//! - the upstream's answer is streamed back, not held in memory.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use serde::Serialize;

use crate::client::UpstreamError;
use crate::middleware::RequestSession;

/// The largest request body [`handler`] reads (64 KiB); a larger one is answered 413 before
/// anything else is looked at. An app that routes the passthrough itself ([`forward`]) sets
/// its own limit.
pub const BODY_MAX: usize = 64 * 1024;

/// The header every passthrough call carries, and its value.
pub const CSRF_HEADER: &str = "x-csrf";
/// The value [`CSRF_HEADER`] must have.
pub const CSRF_VALUE: &str = "1";

/// Request headers passed on to the upstream; everything else stays behind.
const REQUEST_HEADERS: &[HeaderName] = &[
    header::ACCEPT,
    header::ACCEPT_LANGUAGE,
    header::CONTENT_TYPE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::RANGE,
];

/// Response headers passed back to the browser; everything else stays behind.
const RESPONSE_HEADERS: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_LANGUAGE,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::ETAG,
    header::LAST_MODIFIED,
    header::VARY,
];

/// An allowlist rule that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("passthrough rule {rule:?}: {problem}")]
pub struct AllowlistError {
    /// The rule as written.
    pub rule: String,
    /// What is wrong with it.
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    methods: Vec<Method>,
    segments: Vec<Segment>,
}

/// Which upstream paths and methods the passthrough forwards. Written as
/// `"GET /frogs, GET|HEAD /frogs/*, POST /frogs/*/croaks"`: methods joined by `|`, a path
/// whose `*` segments match exactly one plain segment. Empty: nothing is forwarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    rules: Vec<Rule>,
}

impl Allowlist {
    /// Rules like `"GET /frogs, GET|HEAD /frogs/*, POST /frogs/*/croaks"` (`*` one segment).
    pub fn parse(spec: &str) -> Result<Self, AllowlistError> {
        let mut rules = Vec::new();
        for raw in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let fail = |problem: &str| AllowlistError { rule: raw.to_string(), problem: problem.to_string() };
            let (methods, path) =
                raw.split_once(char::is_whitespace).ok_or_else(|| fail("write it as \"METHOD /path\""))?;
            let methods = methods
                .split('|')
                .map(|m| match m.trim().to_ascii_uppercase().as_str() {
                    "GET" => Ok(Method::GET),
                    "HEAD" => Ok(Method::HEAD),
                    "POST" => Ok(Method::POST),
                    "PUT" => Ok(Method::PUT),
                    "PATCH" => Ok(Method::PATCH),
                    "DELETE" => Ok(Method::DELETE),
                    _ => Err(fail("methods are GET, HEAD, POST, PUT, PATCH or DELETE")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let path = path.trim();
            let segments = path
                .strip_prefix('/')
                .ok_or_else(|| fail("the path starts with /"))?
                .split('/')
                .map(|s| match s {
                    "*" => Ok(Segment::Any),
                    s if is_plain_segment(s) => Ok(Segment::Literal(s.to_string())),
                    _ => Err(fail("segments are * or letters, digits, '-', '_', '.', '~' (not . or ..)")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule { methods, segments });
        }
        Ok(Allowlist { rules })
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `method` on `path` (as [`clean_path`] returned it) is forwarded.
    pub fn allows(&self, method: &Method, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else { return false };
        let segments: Vec<&str> = rest.split('/').collect();
        self.rules.iter().any(|rule| {
            rule.methods.contains(method)
                && rule.segments.len() == segments.len()
                && rule.segments.iter().zip(&segments).all(|(want, got)| match want {
                    Segment::Any => true,
                    Segment::Literal(l) => l == got,
                })
        })
    }
}

/// A segment made of RFC 3986 unreserved characters only, and not `.` or `..`.
fn is_plain_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// The upstream path of a passthrough request: `raw` is the request's path exactly as it came
/// (still percent-encoded) after the prefix. `None` for anything but `/plain/segments`:
/// percent-encoding, backslashes, `.`/`..` and empty segments never reach the allowlist.
pub fn clean_path(raw: &str) -> Option<&str> {
    let rest = raw.strip_prefix('/')?;
    rest.split('/').all(is_plain_segment).then_some(raw)
}

/// Why a passthrough call was not forwarded, or failed; the body tells browser code what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassthroughError {
    /// Not allowlisted (or not a clean path): 404.
    #[error("no such upstream resource")]
    NotFound,
    /// A state-changing call without the `X-CSRF: 1` header: 403.
    #[error("the X-CSRF: 1 header is required")]
    MissingCsrfHeader,
    /// No session: 401.
    #[error("sign in first")]
    Unauthorized,
    /// The session ended while calling: 401, sign in again.
    #[error("the session ended; sign in again")]
    SessionExpired,
    /// A non-idempotent call was refused with 401; the session has fresh tokens now.
    #[error("the access token was renewed; send the request again")]
    Retry,
    /// The upstream is down or timed out: 503.
    #[error("the upstream is unavailable; try again")]
    Unavailable,
    /// The upstream's answer cannot be passed on: 502.
    #[error("the upstream answered in a way we cannot pass on")]
    BadGateway,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

impl PassthroughError {
    /// The status the browser gets.
    pub fn status(&self) -> StatusCode {
        match self {
            PassthroughError::NotFound => StatusCode::NOT_FOUND,
            PassthroughError::MissingCsrfHeader => StatusCode::FORBIDDEN,
            PassthroughError::Unauthorized | PassthroughError::SessionExpired | PassthroughError::Retry => {
                StatusCode::UNAUTHORIZED
            }
            PassthroughError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            PassthroughError::BadGateway => StatusCode::BAD_GATEWAY,
        }
    }

    /// The machine-readable code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            PassthroughError::NotFound => "not_found",
            PassthroughError::MissingCsrfHeader => "csrf",
            PassthroughError::Unauthorized => "unauthorized",
            PassthroughError::SessionExpired => "session_expired",
            PassthroughError::Retry => "retry",
            PassthroughError::Unavailable => "upstream_unavailable",
            PassthroughError::BadGateway => "bad_gateway",
        }
    }
}

impl IntoResponse for PassthroughError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.code(), message: self.to_string() };
        let json = serde_json::to_string(&body).unwrap_or_default();
        (self.status(), [(header::CONTENT_TYPE, "application/json")], json).into_response()
    }
}

/// Whether a method may be sent twice (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE)
}

/// The request's headers that go upstream.
fn forwarded_headers(from: &HeaderMap) -> reqwest::header::HeaderMap {
    let mut out = reqwest::header::HeaderMap::new();
    for name in REQUEST_HEADERS {
        for value in from.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// One passthrough call: checks, then forwards with the session's access token.
/// `path` is the raw path after the passthrough prefix, `query` the raw query string.
pub async fn forward(
    session: &RequestSession,
    allowlist: &Allowlist,
    method: Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, PassthroughError> {
    let path = clean_path(path).filter(|p| allowlist.allows(&method, p)).ok_or(PassthroughError::NotFound)?;
    if headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) != Some(CSRF_VALUE) {
        return Err(PassthroughError::MissingCsrfHeader);
    }
    let Some(current) = session.session() else {
        return Err(if session.ended().is_some() {
            PassthroughError::SessionExpired
        } else {
            PassthroughError::Unauthorized
        });
    };
    if session.refresh_failed() {
        return Err(PassthroughError::Unavailable);
    }
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let upstream = session.manager().upstream();
    let upstream_headers = forwarded_headers(headers);
    let send = |access: crate::session::Token| {
        let method = method.clone();
        let headers = upstream_headers.clone();
        let body = body.clone();
        let target = target.clone();
        async move {
            // The forwarded headers first, the credential last: nothing from the browser can
            // stand in for it.
            let mut request = upstream.resource(method, &target)?.headers(headers);
            if !body.is_empty() {
                request = request.body(body);
            }
            upstream.attach(request, &access).send().await.map_err(UpstreamError::from_reqwest)
        }
    };
    let mut response = send(current.tokens.access_token.clone()).await.map_err(outage)?;
    if response.status() == StatusCode::UNAUTHORIZED {
        // Refused before its time (revoked, clocks apart): renew once, through the same single
        // flight as pages; send again only when sending twice is harmless.
        let renewed = session.renew_after_refusal(&current).await.map_err(|e| match e {
            UpstreamError::Refused { .. } => PassthroughError::SessionExpired,
            other => outage(other),
        })?;
        if !is_idempotent(&method) {
            return Err(PassthroughError::Retry);
        }
        response = send(renewed.tokens.access_token.clone()).await.map_err(outage)?;
        if response.status() == StatusCode::UNAUTHORIZED {
            tracing::warn!("the upstream refused a freshly renewed access token");
            return Err(PassthroughError::SessionExpired);
        }
    }
    let status = response.status();
    if status.is_server_error() {
        tracing::warn!(%status, path, "passthrough: the upstream failed");
        return Err(if status == StatusCode::SERVICE_UNAVAILABLE {
            PassthroughError::Unavailable
        } else {
            PassthroughError::BadGateway
        });
    }
    if status.is_redirection() {
        tracing::warn!(%status, path, "passthrough: the upstream redirected; not followed");
        return Err(PassthroughError::BadGateway);
    }
    let mut out = Response::builder().status(status.as_u16());
    for name in RESPONSE_HEADERS {
        for value in response.headers().get_all(name) {
            out = out.header(name.clone(), value.clone());
        }
    }
    out.body(Body::from_stream(response.bytes_stream())).map_err(|e| {
        tracing::error!(error = %e, "passthrough: cannot build the response");
        PassthroughError::BadGateway
    })
}

fn outage(e: UpstreamError) -> PassthroughError {
    match e {
        UpstreamError::Unavailable(detail) => {
            tracing::warn!(%detail, "passthrough: upstream unavailable");
            PassthroughError::Unavailable
        }
        other => {
            tracing::error!(error = %other, "passthrough: upstream call failed");
            PassthroughError::BadGateway
        }
    }
}


/// The passthrough as a route: every method under `prefix` (`/api/upstream`), checked against
/// `allowlist` and forwarded with the request's session (needs [`crate::SessionLayer`]). A
/// body over [`BODY_MAX`] (or over the router's own limit, if lower) is answered 413, whatever
/// the router's limits: a raw request body is not bounded by axum's `DefaultBodyLimit`.
///
/// ```no_run
/// # use tokenless_bff::passthrough::{self, Allowlist};
/// # fn app(allow: Allowlist) -> axum::Router {
/// axum::Router::new().route("/api/upstream/{*path}", passthrough::handler("/api/upstream", allow))
/// # }
/// ```
pub fn handler<S: Clone + Send + Sync + 'static>(prefix: &'static str, allowlist: Allowlist) -> MethodRouter<S> {
    let allowlist = std::sync::Arc::new(allowlist);
    axum::routing::any(move |session: RequestSession, request: axum::extract::Request| {
        let allowlist = allowlist.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = match axum::body::to_bytes(body, BODY_MAX).await {
                Ok(body) => body,
                Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
            };
            // The path exactly as sent (still percent-encoded), after the prefix.
            let path = parts.uri.path().strip_prefix(prefix).unwrap_or("");
            let forwarded =
                forward(&session, &allowlist, parts.method.clone(), path, parts.uri.query(), &parts.headers, body).await;
            match forwarded {
                Ok(response) => response,
                Err(e) => {
                    if !matches!(e, PassthroughError::NotFound) {
                        tracing::debug!(path, error = %e, "passthrough refused");
                    }
                    e.into_response()
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn allowlist_parses_and_matches_whole_segments() {
        let a = Allowlist::parse("GET /frogs, GET|HEAD /frogs/*, post /frogs/*/croaks").unwrap();
        assert!(a.allows(&Method::GET, "/frogs"));
        assert!(a.allows(&Method::GET, "/frogs/3"));
        assert!(a.allows(&Method::HEAD, "/frogs/3"));
        assert!(a.allows(&Method::POST, "/frogs/3/croaks"));
        assert!(!a.allows(&Method::POST, "/frogs"), "method not named");
        assert!(!a.allows(&Method::DELETE, "/frogs/3"));
        assert!(!a.allows(&Method::GET, "/frogs/3/croaks"), "GET not named there");
        assert!(!a.allows(&Method::GET, "/frogsx"));
        assert!(!a.allows(&Method::GET, "/frogs/3/4"), "* is one segment");
        assert!(!a.allows(&Method::GET, "/admin/stats"));
        assert!(!a.allows(&Method::GET, "frogs"));
        assert!(Allowlist::parse("").unwrap().is_empty());
        assert!(!Allowlist::parse("").unwrap().allows(&Method::GET, "/frogs"));
    }

    #[test]
    fn bad_rules_are_refused_with_the_rule_named() {
        for bad in ["/frogs", "FETCH /frogs", "GET frogs", "GET /frogs/../admin", "GET /a//b", "GET /a/%2e"] {
            let e = Allowlist::parse(bad).unwrap_err();
            assert_eq!(e.rule, bad);
        }
    }

    #[test]
    fn only_plain_paths_are_clean() {
        assert_eq!(clean_path("/frogs"), Some("/frogs"));
        assert_eq!(clean_path("/frogs/3"), Some("/frogs/3"));
        assert_eq!(clean_path("/frogs/a.b~c_d-e"), Some("/frogs/a.b~c_d-e"));
        for tricky in [
            "",
            "frogs",
            "/",
            "/frogs/",
            "//frogs",
            "/frogs//3",
            "/frogs/..",
            "/frogs/../admin/stats",
            "/frogs/.",
            "/frogs/%2e%2e/admin",
            "/frogs/%2E%2E/admin",
            "/frogs%2f..%2fadmin",
            "/frogs/%252e%252e",
            "/frogs\\..\\admin",
            "/frogs/3;x=1",
            "/frogs/3 ",
            "/frögs",
        ] {
            assert_eq!(clean_path(tricky), None, "{tricky:?}");
        }
    }

    #[test]
    fn hygiene_lists_leave_credentials_behind() {
        for name in [header::COOKIE, header::AUTHORIZATION, header::CONNECTION, header::HOST] {
            assert!(!REQUEST_HEADERS.contains(&name), "{name}");
        }
        for name in [header::SET_COOKIE, header::WWW_AUTHENTICATE, header::LOCATION] {
            assert!(!RESPONSE_HEADERS.contains(&name), "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("tokenless_session=x"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer stolen"));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let out = forwarded_headers(&h);
        assert_eq!(out.len(), 1);
        assert_eq!(out.get(header::ACCEPT).unwrap(), "application/json");
    }

    #[test]
    fn errors_have_statuses_and_codes() {
        assert_eq!(PassthroughError::NotFound.status(), StatusCode::NOT_FOUND);
        assert_eq!(PassthroughError::Retry.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(PassthroughError::Retry.code(), "retry");
        assert_eq!(PassthroughError::Unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(PassthroughError::BadGateway.status(), StatusCode::BAD_GATEWAY);
        assert!(is_idempotent(&Method::GET) && !is_idempotent(&Method::POST));
    }
}
