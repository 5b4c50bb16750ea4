//! An upstream described by configuration only: HTTP APIs that sign in with JSON or a form and
//! hand tokens back in JSON or in `Set-Cookie` (seed 003's Express backend, seed 002's NestJS
//! one, and most home-made APIs). The upstream's cookies are read here, server-side, whatever
//! their `Secure`/`SameSite` flags, sealed into Tokenless's own cookie, and presented back the
//! way the API wants (a `Cookie` header, a body field or Bearer); they never reach the browser.
//!
//! Small strings keep the configuration one line per decision, in a file or an environment
//! variable alike: where a token comes back (`json:/accessToken`, `cookie:refresh_token`), how
//! the refresh token is presented (`cookie:refresh_token`, `body:refreshToken`, `bearer`), how
//! resources get the access token (`bearer`, `cookie:access_token`), how expiry is known
//! (`jwt`, `cookie`, `expires_in:/expiresIn`, `lifetime:600`).

use std::str::FromStr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use tower_cookies::cookie::Cookie;
use url::Url;

use crate::client::{upstream_url, FieldProblem, RegisterError, UpstreamError};
use crate::session::{Profile, Token, TokenSet};
use crate::upstream::{BoxFuture, Registered, SignInError, TokenGrants, Upstream, ANSWER_MAX, UNUSABLE_REFRESH_ANSWER};

/// A configuration value that does not parse; `Display` says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not {expected}")]
pub struct ConfigError {
    /// The value as written.
    pub value: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

fn bad(value: &str, expected: &'static str) -> ConfigError {
    ConfigError { value: value.to_string(), expected }
}

/// `"METHOD /path"`, e.g. `"POST /auth/login"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path under the upstream's base URL, starting with `/`.
    pub path: String,
}

impl FromStr for Route {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        const EXPECTED: &str = "a route like \"POST /auth/login\"";
        let (method, path) = s.trim().split_once(' ').ok_or_else(|| bad(s, EXPECTED))?;
        let method = Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| bad(s, EXPECTED))?;
        let path = path.trim();
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            return Err(bad(s, EXPECTED));
        }
        Ok(Route { method, path: path.to_string() })
    }
}

impl TryFrom<String> for Route {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        s.parse()
    }
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    /// `application/json`.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// Where a token comes back in an answer: `json:/pointer` (RFC 6901) or `cookie:name`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum TokenSource {
    /// `json:/pointer`: a JSON pointer into the answer's body.
    Json(String),
    /// `cookie:name`: a `Set-Cookie` of the answer, whatever its flags.
    Cookie(String),
}

impl FromStr for TokenSource {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        const EXPECTED: &str = "where a token comes back: \"json:/accessToken\" or \"cookie:refresh_token\"";
        match s.trim().split_once(':') {
            Some(("json", p)) if p.starts_with('/') => Ok(TokenSource::Json(p.to_string())),
            Some(("cookie", n)) if is_cookie_name(n) => Ok(TokenSource::Cookie(n.to_string())),
            _ => Err(bad(s, EXPECTED)),
        }
    }
}

impl TryFrom<String> for TokenSource {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        s.parse()
    }
}

/// How a token is sent to the API: `cookie:name`, `body:field` or `bearer`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Presentation {
    /// `cookie:name`: a `Cookie` header.
    Cookie(String),
    /// `body:field`: a field of the request's body.
    Body(String),
    /// `bearer`: `Authorization: Bearer`.
    Bearer,
}

impl FromStr for Presentation {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        const EXPECTED: &str =
            "how a token is sent: \"bearer\", \"cookie:refresh_token\" or \"body:refreshToken\"";
        match s.trim().split_once(':') {
            None if s.trim() == "bearer" => Ok(Presentation::Bearer),
            Some(("cookie", n)) if is_cookie_name(n) => Ok(Presentation::Cookie(n.to_string())),
            Some(("body", f)) if !f.is_empty() => Ok(Presentation::Body(f.to_string())),
            _ => Err(bad(s, EXPECTED)),
        }
    }
}

impl TryFrom<String> for Presentation {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        s.parse()
    }
}

/// How a token's expiry is known: the JWT's `exp`, the cookie's `Max-Age`/`Expires`, a number
/// of seconds in the JSON answer, or a fixed lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Expiry {
    /// `jwt`: the token's `exp` claim, counted from our clock (`exp - iat`).
    Jwt,
    /// `cookie`: the token's cookie's `Max-Age` or `Expires`.
    Cookie,
    /// `expires_in:/pointer`: seconds, at a JSON pointer into the answer.
    ExpiresIn(String),
    /// `lifetime:N`: always N seconds.
    Lifetime(u64),
}

impl FromStr for Expiry {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        const EXPECTED: &str =
            "how expiry is known: \"jwt\", \"cookie\", \"expires_in:/expires_in\" or \"lifetime:600\" (seconds)";
        match s.trim().split_once(':') {
            None if s.trim() == "jwt" => Ok(Expiry::Jwt),
            None if s.trim() == "cookie" => Ok(Expiry::Cookie),
            Some(("expires_in", p)) if p.starts_with('/') => Ok(Expiry::ExpiresIn(p.to_string())),
            Some(("lifetime", n)) => match n.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(Expiry::Lifetime(n)),
                _ => Err(bad(s, EXPECTED)),
            },
            _ => Err(bad(s, EXPECTED)),
        }
    }
}

impl TryFrom<String> for Expiry {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        s.parse()
    }
}

fn is_cookie_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// How the profile endpoint's JSON maps onto [`Profile`]. Pointers are RFC 6901; `name` is a
/// template whose `{field}` are top-level fields (`"{firstName} {lastName}"`) or a pointer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileMap {
    /// The stable id; `""`: the email stands in.
    pub id: String,
    /// The display name: a pointer, or a template of `{field}`s.
    pub name: String,
    /// When the name comes out empty: this pointer's value.
    pub name_fallback: String,
    /// The email.
    pub email: String,
    /// A list (or one string) of roles; `""`: no roles.
    pub roles: String,
}

impl Default for ProfileMap {
    fn default() -> Self {
        ProfileMap {
            id: "/id".into(),
            name: "/name".into(),
            name_fallback: "/email".into(),
            email: "/email".into(),
            roles: String::new(),
        }
    }
}

impl ProfileMap {
    /// OpenID Connect's standard claims: `sub`, `name` (else `email`), `email`; no roles.
    pub fn oidc() -> Self {
        ProfileMap {
            id: "/sub".into(),
            name: "/name".into(),
            name_fallback: "/email".into(),
            email: "/email".into(),
            roles: String::new(),
        }
    }
}

/// Field names of the sign-in and registration bodies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fields {
    /// The email's field.
    pub email: String,
    /// The password's field.
    pub password: String,
    /// The name's field (registration).
    pub name: String,
}

impl Default for Fields {
    fn default() -> Self {
        Fields { email: "email".into(), password: "password".into(), name: "name".into() }
    }
}

/// An HTTP API, described. Every route is under the upstream's base URL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpApiConfig {
    /// e.g. `"POST /auth/login"`; its answer carries the tokens.
    pub sign_in: Route,
    /// `"POST /auth/register"`; `""` or absent: no registration.
    #[serde(default, deserialize_with = "optional")]
    pub register: Option<Route>,
    /// Whether the registration answer carries tokens (signed in on the spot), read as sign-in's.
    #[serde(default)]
    pub register_signs_in: bool,
    /// The refresh route; its answer carries the new tokens.
    pub refresh: Route,
    /// Called with both tokens when a session ends; absent: nothing to call.
    #[serde(default, deserialize_with = "optional")]
    pub sign_out: Option<Route>,
    /// `GET` route of the signed-in person.
    pub profile: Route,
    /// How sign-in, registration and refresh bodies are encoded.
    #[serde(default)]
    pub body: BodyKind,
    /// The bodies' field names.
    #[serde(default)]
    pub fields: Fields,
    /// Where the access token comes back.
    pub access_token: TokenSource,
    /// Where the refresh token comes back.
    pub refresh_token: TokenSource,
    /// How the refresh token is sent to `refresh` and `sign_out`.
    pub present_refresh: Presentation,
    /// How the access token is sent to resources, `profile` and `sign_out`.
    pub present_access: Presentation,
    /// How the access token's expiry is known.
    pub access_expiry: Expiry,
    /// `None`: the refresh token's end is not known (the session's own limits apply).
    #[serde(default, deserialize_with = "optional")]
    pub refresh_expiry: Option<Expiry>,
    /// How the profile answer becomes a [`crate::Profile`].
    #[serde(default)]
    pub profile_map: ProfileMap,
    /// Sign-in answers meaning "wrong email or password".
    #[serde(default = "default_invalid_credentials")]
    pub invalid_credentials: Vec<u16>,
    /// Refresh answers meaning "this sign-in is over" (the user is signed out). Any other
    /// failure, a 500 included, keeps the session.
    #[serde(default = "default_refresh_refused")]
    pub refresh_refused: Vec<u16>,
    /// Registration answers meaning "an account with this email exists".
    #[serde(default = "default_email_taken")]
    pub email_taken: Vec<u16>,
}

fn default_invalid_credentials() -> Vec<u16> {
    vec![400, 401, 403, 404]
}

fn default_refresh_refused() -> Vec<u16> {
    vec![401, 403]
}

fn default_email_taken() -> Vec<u16> {
    vec![409]
}

/// An optional small string (`register`, `sign_out`, `refresh_expiry`): absent or `""` is none.
fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr<Err = ConfigError>,
{
    let raw: Option<String> = Option::deserialize(d)?;
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

impl HttpApiConfig {
    /// Checks what types cannot: a JSON pointer into an answer only where there is JSON, an
    /// expiry readable from where the token comes, statuses that are statuses.
    pub fn validate(&self) -> Result<(), String> {
        if matches!(self.access_expiry, Expiry::Cookie)
            && !matches!(self.access_token, TokenSource::Cookie(_))
        {
            return Err("access_expiry = \"cookie\" needs access_token = \"cookie:NAME\"".into());
        }
        if matches!(self.refresh_expiry, Some(Expiry::Cookie))
            && !matches!(self.refresh_token, TokenSource::Cookie(_))
        {
            return Err("refresh_expiry = \"cookie\" needs refresh_token = \"cookie:NAME\"".into());
        }
        for (name, list) in [
            ("invalid_credentials", &self.invalid_credentials),
            ("refresh_refused", &self.refresh_refused),
            ("email_taken", &self.email_taken),
        ] {
            if let Some(s) = list.iter().find(|s| !(400..=599).contains(*s)) {
                return Err(format!("{name}: {s} is not an error status (400-599)"));
            }
        }
        if self.profile.method != Method::GET {
            return Err("profile must be a GET route".into());
        }
        if matches!(self.present_access, Presentation::Body(_)) {
            return Err("present_access must be \"bearer\" or \"cookie:NAME\" (resources have bodies of their own)".into());
        }
        if let Some(s) = self.refresh_refused.iter().find(|s| !(400..=499).contains(*s)) {
            return Err(format!(
                "refresh_refused: {s} is not a client error (400-499); an outage must never sign people out"
            ));
        }
        check_profile_map(&self.profile_map).map_err(|(key, problem)| format!("profile_map.{key}: {problem}"))?;
        Ok(())
    }
}

/// Checks a profile map's pointers and name; the error names the key (`email`) and the problem.
pub(crate) fn check_profile_map(m: &ProfileMap) -> Result<(), (&'static str, String)> {
    for (name, pointer, may_be_empty) in [
        ("id", &m.id, true),
        ("email", &m.email, false),
        ("roles", &m.roles, true),
        ("name_fallback", &m.name_fallback, true),
    ] {
        if !(pointer.starts_with('/') || (may_be_empty && pointer.is_empty())) {
            return Err((name, format!("{pointer:?} is not a JSON pointer (they start with /)")));
        }
    }
    if !(m.name.starts_with('/') || m.name.contains('{')) {
        return Err((
            "name",
            format!(
                "{:?} is neither a JSON pointer (/name) nor a template (\"{{firstName}} {{lastName}}\")",
                m.name
            ),
        ));
    }
    Ok(())
}

/// A profile map whose keys left out are OpenID Connect's claims ([`ProfileMap::oidc`]), not
/// [`ProfileMap::default`]'s (for an OAuth 2.0 server's userinfo).
pub(crate) fn profile_over_oidc<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ProfileMap, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Partial {
        id: Option<String>,
        name: Option<String>,
        name_fallback: Option<String>,
        email: Option<String>,
        roles: Option<String>,
    }
    let p = Partial::deserialize(d)?;
    let oidc = ProfileMap::oidc();
    Ok(ProfileMap {
        id: p.id.unwrap_or(oidc.id),
        name: p.name.unwrap_or(oidc.name),
        name_fallback: p.name_fallback.unwrap_or(oidc.name_fallback),
        email: p.email.unwrap_or(oidc.email),
        roles: p.roles.unwrap_or(oidc.roles),
    })
}

/// Access tokens whose expiry cannot be read (a broken JWT) are assumed to live this long.
const FALLBACK_LIFETIME: u64 = 60;

/// The HTTP-API upstream.
pub struct HttpApi {
    http: reqwest::Client,
    base: Url,
    config: HttpApiConfig,
}

impl std::fmt::Debug for HttpApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpApi")
            .field("base", &self.base.origin().ascii_serialization())
            .finish_non_exhaustive()
    }
}

/// A request being built: one `Cookie` header whatever the number of cookies, a JSON or form
/// body whatever the number of fields.
struct Outgoing {
    cookies: Vec<String>,
    fields: Map<String, Value>,
    bearer: Option<String>,
}

impl Outgoing {
    fn new() -> Self {
        Outgoing { cookies: Vec::new(), fields: Map::new(), bearer: None }
    }

    fn present(&mut self, how: &Presentation, token: &Token) {
        match how {
            Presentation::Cookie(name) => self.cookies.push(format!("{name}={}", token.expose())),
            Presentation::Body(field) => {
                self.fields.insert(field.clone(), Value::String(token.expose().to_string()));
            }
            Presentation::Bearer => self.bearer = Some(token.expose().to_string()),
        }
    }

    fn apply(self, mut request: RequestBuilder, body: BodyKind) -> RequestBuilder {
        if !self.cookies.is_empty() {
            // Checked token text (`is_token_text`), so always a valid value; marked sensitive
            // like `bearer_auth`'s, so no HTTP layer logs it.
            if let Ok(mut value) = reqwest::header::HeaderValue::from_str(&self.cookies.join("; ")) {
                value.set_sensitive(true);
                request = request.header(COOKIE, value);
            }
        }
        if let Some(bearer) = self.bearer {
            request = request.bearer_auth(bearer);
        }
        if !self.fields.is_empty() {
            request = match body {
                BodyKind::Json => request.json(&Value::Object(self.fields)),
                BodyKind::Form => {
                    let pairs: Vec<(String, String)> = self
                        .fields
                        .into_iter()
                        .map(|(k, v)| (k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                        .collect();
                    request.form(&pairs)
                }
            };
        }
        request
    }
}

/// An answer's parts that tokens are read from.
struct Answer {
    status: StatusCode,
    cookies: Vec<Cookie<'static>>,
    json: Option<Value>,
}

impl HttpApi {
    /// A client of the API `config` describes, under `base`, with these timeouts.
    pub fn new(
        base: Url,
        config: HttpApiConfig,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        if config.sign_out.is_none() {
            tracing::warn!("no sign_out route configured: signing out forgets the tokens, but the sign-in lives on upstream until it expires");
        }
        Ok(HttpApi { http, base, config })
    }

    /// Its configuration.
    pub fn config(&self) -> &HttpApiConfig {
        &self.config
    }

    fn request(&self, route: &Route) -> Result<RequestBuilder, UpstreamError> {
        let url = upstream_url(&self.base, &route.path)
            .map_err(|e| UpstreamError::Unexpected(format!("URL: {e}")))?;
        Ok(self.http.request(route.method.clone(), url).header("accept", "application/json"))
    }

    async fn send(
        &self,
        request: RequestBuilder,
        timeout: Option<Duration>,
    ) -> Result<Answer, UpstreamError> {
        let request = match timeout {
            Some(t) => request.timeout(t),
            None => request,
        };
        let response = request.send().await.map_err(UpstreamError::from_reqwest)?;
        let status = response.status();
        let cookies = set_cookies(response.headers());
        // Read at most ANSWER_MAX: an upstream that never stops sending must not fill memory.
        // Once the status is in, a body that breaks off or overflows is only "no JSON": the
        // status decides (a 2xx refresh may have rotated the token already).
        let (bytes, whole) = match crate::upstream::read_body(response, ANSWER_MAX).await {
            Ok(bytes) => (bytes, true),
            Err(e) => {
                tracing::warn!(error = %e, "an upstream answer could not be read whole; not used");
                (Vec::new(), false)
            }
        };
        let json = if whole { serde_json::from_slice(&bytes).ok() } else { None };
        Ok(Answer { status, cookies: if whole { cookies } else { Vec::new() }, json })
    }

    /// The tokens in a sign-in, registration or refresh answer.
    fn tokens(
        &self,
        answer: &Answer,
        now: u64,
        presented_refresh: Option<&Token>,
    ) -> Result<TokenSet, UpstreamError> {
        let (access, access_cookie) = find(&self.config.access_token, answer).ok_or_else(|| {
            UpstreamError::Unexpected("the answer has no access token where configured".into())
        })?;
        let refresh = find(&self.config.refresh_token, answer);
        let access_expires_at = match expiry(
            &self.config.access_expiry,
            &access,
            access_cookie.as_ref(),
            answer,
            now,
        ) {
            Some(at) => at,
            None => {
                tracing::warn!(
                    "the access token's expiry cannot be read as configured; assuming {FALLBACK_LIFETIME} s"
                );
                now.saturating_add(FALLBACK_LIFETIME)
            }
        };
        let (refresh_token, refresh_expires_at) = match refresh {
            Some((token, cookie)) => {
                let at = self
                    .config
                    .refresh_expiry
                    .as_ref()
                    .and_then(|e| expiry(e, &token, cookie.as_ref(), answer, now));
                (Some(token), at)
            }
            // A refresh answer that names a new refresh token it cannot hand over (a cookie
            // being cleared, characters no cookie carries): the presented one may be retired
            // already, and presenting it again would look like theft. Not usable.
            None if presented_refresh.is_some() && names(&self.config.refresh_token, answer) => {
                return Err(UpstreamError::Unexpected("the refresh answer's new refresh token is unusable".into()));
            }
            // No new refresh token: the API does not rotate; the presented one stays.
            None => (presented_refresh.cloned(), None),
        };
        Ok(TokenSet {
            access_token: access,
            access_expires_at,
            refresh_token,
            refresh_expires_at,
            access_issued_at: now,
        })
    }

    fn credentials_body(&self, pairs: &[(&str, &str)]) -> Outgoing {
        let mut out = Outgoing::new();
        for (field, value) in pairs {
            out.fields.insert(field.to_string(), Value::String(value.to_string()));
        }
        out
    }
}

/// Every `Set-Cookie` of an answer, parsed (flags are irrelevant here: nothing is stored in a
/// browser). Unparseable ones are skipped.
fn set_cookies(headers: &HeaderMap) -> Vec<Cookie<'static>> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| Cookie::parse(v.to_string()).ok())
        .collect()
}

/// A token where `source` says, with the cookie it came in. An empty value (a cookie being
/// cleared) is no token.
fn find(source: &TokenSource, answer: &Answer) -> Option<(Token, Option<Cookie<'static>>)> {
    let found = match source {
        TokenSource::Json(pointer) => {
            let value = answer.json.as_ref()?.pointer(pointer)?.as_str()?;
            (Token::new(value), None)
        }
        TokenSource::Cookie(name) => {
            let cookie = answer.cookies.iter().rev().find(|c| c.name() == name)?;
            (Token::new(cookie.value()), Some(cookie.clone()))
        }
    };
    if !is_token_text(found.0.expose()) {
        if !found.0.expose().is_empty() {
            tracing::warn!("the upstream's token holds characters a cookie or header cannot carry; not used");
        }
        return None;
    }
    Some(found)
}

/// Whether `answer` holds something where `source` says a token is (usable or not).
fn names(source: &TokenSource, answer: &Answer) -> bool {
    match source {
        TokenSource::Json(pointer) => answer.json.as_ref().and_then(|json| json.pointer(pointer)).is_some_and(|v| !v.is_null()),
        TokenSource::Cookie(name) => answer.cookies.iter().any(|c| c.name() == name),
    }
}

/// RFC 6265 cookie octets (no space, quote, comma, semicolon or backslash, no control
/// character), at most 16 KiB: a token goes back as a cookie value or a header, where anything
/// else would inject into it or break it. Empty is no token (a cookie being cleared).
fn is_token_text(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 16 * 1024
        && value.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

/// When a token expires (Unix seconds), as `how` says; `None` when it cannot be read.
fn expiry(
    how: &Expiry,
    token: &Token,
    cookie: Option<&Cookie<'_>>,
    answer: &Answer,
    now: u64,
) -> Option<u64> {
    match how {
        Expiry::Jwt => {
            // `exp - iat` counted from our own clock when both are there: a clock apart from the
            // upstream's must not make 10 s tokens arrive expired (every request refreshing).
            let (exp, iat) = jwt_times(token.expose())?;
            match iat {
                Some(iat) if exp > iat => Some(now.saturating_add(exp - iat)),
                _ => Some(exp),
            }
        }
        Expiry::Cookie => {
            let cookie = cookie?;
            if let Some(age) = cookie.max_age() {
                return Some(now.saturating_add(age.whole_seconds().max(0) as u64));
            }
            cookie.expires_datetime().map(|at| at.unix_timestamp().max(0) as u64)
        }
        Expiry::ExpiresIn(pointer) => {
            let v = answer.json.as_ref()?.pointer(pointer)?;
            let secs = v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))?;
            Some(now.saturating_add(secs))
        }
        Expiry::Lifetime(secs) => Some(now.saturating_add(*secs)),
    }
}

/// The `exp` claim of a JWT, read without checking the signature: the upstream checks its own
/// tokens; this only decides when to refresh.
pub fn jwt_exp(token: &str) -> Option<u64> {
    jwt_times(token).map(|(exp, _)| exp)
}

/// The `sub` claim of a JWT (unverified), if the token is one and has it.
pub fn jwt_sub(token: &str) -> Option<String> {
    let claims = jwt_claims(token)?;
    match claims.get("sub")? {
        Value::String(sub) => Some(sub.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JWT's claims (unverified): the token is the upstream's, read only for what it says of
/// itself.
pub(crate) fn jwt_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `exp` and `iat` claims of a JWT (unverified).
fn jwt_times(token: &str) -> Option<(u64, Option<u64>)> {
    let claims = jwt_claims(token)?;
    let seconds = |v: &Value| v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64));
    Some((seconds(claims.get("exp")?)?, claims.get("iat").and_then(seconds)))
}

/// `{field}` replaced by top-level string (or number) fields; a template without braces is a
/// pointer.
fn render(template: &str, json: &Value) -> String {
    if template.starts_with('/') {
        return text(json.pointer(template));
    }
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            return out.trim().to_string();
        };
        let field = &rest[open + 1..open + close];
        out.push_str(&text(json.get(field)));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    // "{firstName} {lastName}" with one of them missing leaves no stray space.
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The profile as `map` reads it from the profile answer.
pub fn map_profile(map: &ProfileMap, json: &Value) -> Result<Profile, UpstreamError> {
    let email = text(json.pointer(&map.email));
    let mut name = render(&map.name, json);
    if name.is_empty() && !map.name_fallback.is_empty() {
        name = text(json.pointer(&map.name_fallback));
    }
    let id = if map.id.is_empty() { String::new() } else { text(json.pointer(&map.id)) };
    let id = if id.is_empty() { email.clone() } else { id };
    if id.is_empty() {
        return Err(UpstreamError::Unexpected(
            "the profile has neither the configured id nor an email".into(),
        ));
    }
    let roles = match (map.roles.is_empty(), json.pointer(&map.roles)) {
        (true, _) | (false, None) => Vec::new(),
        (false, Some(Value::Array(items))) => {
            items.iter().filter_map(|r| r.as_str().map(str::to_string)).collect()
        }
        (false, Some(Value::String(one))) => vec![one.clone()],
        (false, Some(_)) => Vec::new(),
    };
    Ok(Profile { id, name, email, roles })
}

/// How a refresh refusal by one of the configured `refresh_refused` statuses is coded
/// (`status 401`): such a refusal ends the session ([`crate::refresh::ends_session`]).
pub(crate) const REFUSED_STATUS: &str = "status ";

/// An error answer's status as an [`UpstreamError`]: outages (5xx, 429) keep the session.
fn failure(status: StatusCode, what: &str) -> UpstreamError {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        UpstreamError::Unavailable(format!("{what}: status {status}"))
    } else {
        UpstreamError::Unexpected(format!("{what}: status {status}"))
    }
}

/// The `message`-like text of an error answer, for field problems (`{"message"}`,
/// `{"error": {"message"}}`, `{"error": "..."}`).
fn error_message(json: Option<&Value>) -> Option<String> {
    let json = json?;
    ["/error/message", "/message", "/error"]
        .iter()
        .find_map(|p| json.pointer(p).and_then(Value::as_str))
        .map(str::to_string)
}

impl TokenGrants for HttpApi {
    fn refresh<'a>(
        &'a self,
        refresh_token: &'a Token,
        now: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<TokenSet, UpstreamError>> {
        Box::pin(async move {
            let mut out = Outgoing::new();
            out.present(&self.config.present_refresh, refresh_token);
            let request = out.apply(self.request(&self.config.refresh)?, self.config.body);
            let answer = self.send(request, Some(timeout)).await?;
            if answer.status.is_success() {
                // A 2xx that cannot be used: the upstream may have rotated the token already, so
                // presenting it again would look like theft. The session ends cleanly instead.
                return self.tokens(&answer, now, Some(refresh_token)).map_err(|e| {
                    tracing::warn!(error = %e, "a successful refresh answer without usable tokens; ending the session");
                    UpstreamError::Refused { code: UNUSABLE_REFRESH_ANSWER.into() }
                });
            }
            if self.config.refresh_refused.contains(&answer.status.as_u16()) {
                return Err(UpstreamError::Refused { code: format!("{REFUSED_STATUS}{}", answer.status.as_u16()) });
            }
            Err(failure(answer.status, "refresh"))
        })
    }

    fn revoke<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<(), UpstreamError>> {
        Box::pin(async move {
            let Some(route) = &self.config.sign_out else { return Ok(()) };
            let status = self.sign_out_once(route, tokens).await?;
            if status.is_success() {
                return Ok(());
            }
            let (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, Some(refresh)) = (status, &tokens.refresh_token)
            else {
                return Err(sign_out_failure(status));
            };
            // The API guards its logout with the access token, which has expired: refresh, then
            // log out with the new one. A refused refresh means the sign-in is over already.
            let now = crate::manager::now();
            let renewed = match TokenGrants::refresh(self, refresh, now, Duration::from_secs(10)).await {
                Ok(renewed) => renewed,
                Err(UpstreamError::Refused { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            match self.sign_out_once(route, &renewed).await? {
                s if s.is_success() => Ok(()),
                s => Err(sign_out_failure(s)),
            }
        })
    }
}

/// A sign-out the API did not confirm: 4xx means it will not (said, not retried), anything else
/// is an outage (retried in the background).
fn sign_out_failure(status: StatusCode) -> UpstreamError {
    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        UpstreamError::Refused { code: format!("status {}", status.as_u16()) }
    } else {
        failure(status, "sign-out")
    }
}

impl HttpApi {
    /// One call of the sign-out route with both tokens; its status.
    async fn sign_out_once(&self, route: &Route, tokens: &TokenSet) -> Result<StatusCode, UpstreamError> {
        let mut out = Outgoing::new();
        out.present(&self.config.present_access, &tokens.access_token);
        if let Some(refresh) = &tokens.refresh_token {
            out.present(&self.config.present_refresh, refresh);
        }
        let request = out.apply(self.request(route)?, self.config.body);
        Ok(self.send(request, None).await?.status)
    }
}

impl Upstream for HttpApi {
    fn sign_in<'a>(
        &'a self,
        email: &'a str,
        password: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<TokenSet, SignInError>> {
        Box::pin(async move {
            let f = &self.config.fields;
            let out = self.credentials_body(&[(&f.email, email), (&f.password, password)]);
            let request = out.apply(self.request(&self.config.sign_in)?, self.config.body);
            let answer = self.send(request, None).await?;
            if answer.status.is_success() {
                return Ok(self.tokens(&answer, now, None)?);
            }
            if self.config.invalid_credentials.contains(&answer.status.as_u16()) {
                return Err(SignInError::InvalidCredentials);
            }
            Err(failure(answer.status, "sign-in").into())
        })
    }

    fn profile<'a>(&'a self, tokens: &'a TokenSet) -> BoxFuture<'a, Result<Profile, UpstreamError>> {
        Box::pin(async move {
            let path = &self.config.profile.path;
            let json: Value = crate::upstream::get_json(self, path, &tokens.access_token).await?;
            map_profile(&self.config.profile_map, &json)
        })
    }

    fn register<'a>(
        &'a self,
        email: &'a str,
        name: &'a str,
        password: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Registered, RegisterError>> {
        Box::pin(async move {
            let Some(route) = &self.config.register else { return Err(RegisterError::Unsupported) };
            let f = &self.config.fields;
            let out = self.credentials_body(&[(&f.email, email), (&f.name, name), (&f.password, password)]);
            let request = out.apply(self.request(route)?, self.config.body);
            let answer = self.send(request, None).await?;
            let status = answer.status;
            if status.is_success() {
                if self.config.register_signs_in {
                    return Ok(Registered::SignedIn(self.tokens(&answer, now, None)?));
                }
                return Ok(Registered::Created);
            }
            if self.config.email_taken.contains(&status.as_u16()) {
                return Err(RegisterError::EmailTaken);
            }
            if matches!(status, StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY) {
                if let Some(message) = error_message(answer.json.as_ref()) {
                    // No field names in a free-text message: it goes with the whole form.
                    return Err(RegisterError::Invalid(vec![FieldProblem { field: String::new(), message }]));
                }
            }
            Err(failure(status, "registration").into())
        })
    }

    fn resource(&self, method: Method, path_and_query: &str) -> Result<RequestBuilder, UpstreamError> {
        let url = upstream_url(&self.base, path_and_query)
            .map_err(|e| UpstreamError::Unexpected(format!("resource URL: {e}")))?;
        Ok(self.http.request(method, url))
    }

    fn attach(&self, request: RequestBuilder, access: &Token) -> RequestBuilder {
        let mut out = Outgoing::new();
        out.present(&self.config.present_access, access);
        // Resource bodies are the caller's: only a cookie or a header is added here.
        out.fields.clear();
        out.apply(request, self.config.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_strings_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!("POST /auth/login".parse::<Route>().unwrap().path, "/auth/login");
        assert_eq!("delete /auth/logout".parse::<Route>().unwrap().method, Method::DELETE);
        for bad in ["/auth/login", "POST auth", "POST /a b", "P@ST /x", ""] {
            let e = bad.parse::<Route>().unwrap_err().to_string();
            assert!(e.contains("POST /auth/login"), "{e}");
        }
        assert_eq!(
            "json:/accessToken".parse::<TokenSource>().unwrap(),
            TokenSource::Json("/accessToken".into())
        );
        assert_eq!(
            "cookie:refresh_token".parse::<TokenSource>().unwrap(),
            TokenSource::Cookie("refresh_token".into())
        );
        for bad in ["json:accessToken", "cookie:", "cookie:a b", "header:x", "accessToken"] {
            assert!(bad.parse::<TokenSource>().is_err(), "{bad}");
        }
        assert_eq!("bearer".parse::<Presentation>().unwrap(), Presentation::Bearer);
        assert_eq!(
            "body:refreshToken".parse::<Presentation>().unwrap(),
            Presentation::Body("refreshToken".into())
        );
        assert!("cookie;x".parse::<Presentation>().is_err());
        assert_eq!("lifetime:10".parse::<Expiry>().unwrap(), Expiry::Lifetime(10));
        assert_eq!(
            "expires_in:/expires_in".parse::<Expiry>().unwrap(),
            Expiry::ExpiresIn("/expires_in".into())
        );
        for bad in ["lifetime:0", "lifetime:x", "exp", "expires_in:x"] {
            assert!(bad.parse::<Expiry>().unwrap_err().to_string().contains("lifetime:600"), "{bad}");
        }
    }

    fn jwt(payload: &str) -> String {
        format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn jwt_expiry_is_read_and_garbage_is_none() {
        assert_eq!(jwt_exp(&jwt(r#"{"sub":"1","exp":1800000000}"#)), Some(1_800_000_000));
        assert_eq!(jwt_exp(&jwt(r#"{"exp":1.8e9}"#)), Some(1_800_000_000));
        for garbage in
            ["", "a.b.c", "only-one-part", &jwt(r#"{"exp":"soon"}"#), &jwt(r#"{"exp":-5}"#), &jwt("not json")]
        {
            assert_eq!(jwt_exp(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn profiles_map_by_pointer_and_template() {
        let seed002 = serde_json::json!({"id": 7, "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "roles": ["admin", "evaluator"]});
        let map = ProfileMap {
            name: "{firstName} {lastName}".into(),
            roles: "/roles".into(),
            ..ProfileMap::default()
        };
        let p = map_profile(&map, &seed002).unwrap();
        assert_eq!(
            (p.id.as_str(), p.name.as_str(), p.email.as_str()),
            ("7", "Ada Lovelace", "ada@example.com")
        );
        assert_eq!(p.roles, vec!["admin", "evaluator"]);
        let seed003 = serde_json::json!({"name": "Fern", "email": "fern@example.com"});
        let p = map_profile(&ProfileMap::default(), &seed003).unwrap();
        assert_eq!(
            (p.id.as_str(), p.name.as_str()),
            ("fern@example.com", "Fern"),
            "no id: the email stands in"
        );
        let no_last = serde_json::json!({"firstName": "Ada", "email": "a@b.co"});
        assert_eq!(map_profile(&map, &no_last).unwrap().name, "Ada");
        let nameless = serde_json::json!({"email": "a@b.co"});
        assert_eq!(map_profile(&map, &nameless).unwrap().name, "a@b.co", "the fallback");
        assert!(map_profile(&map, &serde_json::json!({"name": "x"})).is_err(), "neither id nor email");
        let one_role = serde_json::json!({"email": "a@b.co", "roles": "admin"});
        assert_eq!(map_profile(&map, &one_role).unwrap().roles, vec!["admin"]);
    }

    fn answer(json: Option<Value>, set_cookie: &[&str]) -> Answer {
        let mut headers = HeaderMap::new();
        for c in set_cookie {
            headers.append(SET_COOKIE, c.parse().unwrap());
        }
        Answer { status: StatusCode::OK, cookies: set_cookies(&headers), json }
    }

    fn api(config: &str) -> HttpApi {
        let config: HttpApiConfig = serde_json::from_str(config).unwrap();
        config.validate().unwrap();
        HttpApi::new(
            "http://127.0.0.1:9".parse().unwrap(),
            config,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap()
    }

    const SEED003: &str = r#"{"sign_in": "POST /auth/login", "refresh": "POST /auth/refresh-token", "profile": "GET /me",
        "access_token": "json:/accessToken", "refresh_token": "cookie:refresh_token",
        "present_refresh": "cookie:refresh_token", "present_access": "bearer",
        "access_expiry": "jwt", "refresh_expiry": "cookie"}"#;

    #[test]
    fn tokens_come_from_json_and_set_cookie_whatever_its_flags() {
        let api = api(SEED003);
        let access = jwt(r#"{"exp":1000010}"#);
        let a = answer(
            Some(serde_json::json!({ "accessToken": access })),
            &["other=1; Path=/", "refresh_token=r1; Max-Age=3600; Path=/; HttpOnly; Secure; SameSite=None"],
        );
        let t = api.tokens(&a, 1_000_000, None).unwrap();
        assert_eq!(t.access_token.expose(), access);
        assert_eq!(t.access_expires_at, 1_000_010);
        assert_eq!(t.refresh_token.as_ref().map(Token::expose), Some("r1"));
        assert_eq!(t.refresh_expires_at, Some(1_003_600));
        // No refresh cookie in a refresh answer: the API does not rotate; the presented stays.
        let a = answer(Some(serde_json::json!({ "accessToken": access })), &[]);
        let kept = api.tokens(&a, 1_000_000, Some(&Token::new("r0"))).unwrap();
        assert_eq!(kept.refresh_token.as_ref().map(Token::expose), Some("r0"));
        // A cookie being cleared is no token.
        let a = answer(Some(serde_json::json!({ "accessToken": access })), &["refresh_token=; Max-Age=0"]);
        assert_eq!(api.tokens(&a, 1, None).unwrap().refresh_token, None);
        // Issue 32, finding 9: in a refresh answer, a rotated token that is there but cannot be
        // used is not "no rotation" (keeping the presented, perhaps retired, token): unusable.
        for unusable in ["refresh_token=; Max-Age=0", "refresh_token=a\\b"] {
            let a = answer(Some(serde_json::json!({ "accessToken": access })), &[unusable]);
            assert!(matches!(api.tokens(&a, 1, Some(&Token::new("r0"))), Err(UpstreamError::Unexpected(_))), "{unusable}");
        }
        // No access token where configured: an answer we do not understand, never a session.
        let a = answer(Some(serde_json::json!({ "token": access })), &[]);
        assert!(matches!(api.tokens(&a, 1, None), Err(UpstreamError::Unexpected(_))));
        let a = answer(None, &[]);
        assert!(matches!(api.tokens(&a, 1, None), Err(UpstreamError::Unexpected(_))));
    }

    #[test]
    fn cookies_are_sent_as_one_header_and_bodies_in_the_configured_kind() {
        let mut out = Outgoing::new();
        out.present(&Presentation::Cookie("access_token".into()), &Token::new("a1"));
        out.present(&Presentation::Cookie("refresh_token".into()), &Token::new("r1"));
        let request =
            out.apply(reqwest::Client::new().post("http://127.0.0.1:9/x"), BodyKind::Json).build().unwrap();
        let cookies: Vec<_> = request.headers().get_all(COOKIE).iter().collect();
        assert_eq!(cookies, vec!["access_token=a1; refresh_token=r1"]);
        let mut out = Outgoing::new();
        out.present(&Presentation::Body("refreshToken".into()), &Token::new("r1"));
        let request =
            out.apply(reqwest::Client::new().post("http://127.0.0.1:9/x"), BodyKind::Form).build().unwrap();
        assert_eq!(request.body().and_then(|b| b.as_bytes()), Some(&b"refreshToken=r1"[..]));
    }

    #[test]
    fn jwt_lifetimes_count_from_our_clock_and_token_text_is_checked() {
        let a = answer(Some(serde_json::json!({})), &[]);
        let skewed = Token::new(jwt(r#"{"iat":5000,"exp":5010}"#));
        assert_eq!(expiry(&Expiry::Jwt, &skewed, None, &a, 1_000_000), Some(1_000_010), "10 s from now");
        let no_iat = Token::new(jwt(r#"{"exp":5010}"#));
        assert_eq!(expiry(&Expiry::Jwt, &no_iat, None, &a, 1_000_000), Some(5010));
        for bad in ["", "a;b", "a b", "a,b", "a\"b", "a\\b", "a\u{7f}", "é"] {
            assert!(!is_token_text(bad), "{bad:?}");
        }
        assert!(is_token_text(&jwt(r#"{"exp":1}"#)) && is_token_text("Zm9v-_.~+/="));
        assert!(!is_token_text(&"a".repeat(16 * 1024 + 1)));
    }

    #[test]
    fn configuration_mistakes_are_named() {
        let mut c: HttpApiConfig = serde_json::from_str(SEED003).unwrap();
        c.present_access = Presentation::Body("token".into());
        assert!(c.validate().unwrap_err().contains("present_access"));
        let mut c: HttpApiConfig = serde_json::from_str(SEED003).unwrap();
        c.refresh_refused = vec![401, 500];
        assert!(c.validate().unwrap_err().contains("outage"));
        let mut c: HttpApiConfig = serde_json::from_str(SEED003).unwrap();
        c.profile_map.email = "email".into();
        assert!(c.validate().unwrap_err().contains("profile_map.email"));
        let mut c: HttpApiConfig = serde_json::from_str(SEED003).unwrap();
        c.profile_map.name = "firstName".into();
        assert!(c.validate().unwrap_err().contains("profile_map.name"));
        let c: HttpApiConfig = serde_json::from_str(SEED003).unwrap();
        assert_eq!(c.refresh_refused, vec![401, 403], "the default: only what means the sign-in is over");
        let mut c: HttpApiConfig = serde_json::from_str(SEED003).unwrap();
        c.access_expiry = Expiry::Cookie;
        assert!(c.validate().unwrap_err().contains("access_expiry"));
        let mut c: HttpApiConfig = serde_json::from_str(SEED003).unwrap();
        c.refresh_refused = vec![200];
        assert!(c.validate().unwrap_err().contains("refresh_refused"));
        let e = serde_json::from_str::<HttpApiConfig>(&SEED003.replace("GET /me", "/me"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("POST /auth/login"), "{e}");
        let e = serde_json::from_str::<HttpApiConfig>(&SEED003.replace("\"sign_in\"", "\"signin\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("signin"), "{e}");
    }
}
