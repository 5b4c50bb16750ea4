//! The token endpoint (RFC 6749: password and refresh_token grants) and the revocation endpoint
//! (RFC 7009), with confidential-client authentication (client_secret_basic or _post).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::passwords;
use crate::state::{now_ms, Upstream};

/// A form-encoded body, with RFC 6749's rules: right content type, no repeated parameter.
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(headers: &HeaderMap, body: &Bytes) -> Result<Form, ApiError> {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(ApiError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded".into(),
            ));
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| ApiError::InvalidRequest("the form body is malformed".into()))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::InvalidRequest(format!("parameter `{name}` is repeated")));
            }
        }
        Ok(Form(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| ApiError::InvalidRequest(format!("parameter `{name}` is missing")))
    }
}

/// Authenticates the calling client; returns its id.
pub fn authenticate_client(
    upstream: &Upstream,
    headers: &HeaderMap,
    form: Option<&Form>,
) -> Result<String, ApiError> {
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then(|| rest.trim().to_string())
    });
    let in_body = form.and_then(|f| f.get("client_id").map(|id| (id, f.get("client_secret").unwrap_or(""))));
    let (id, secret) = match (basic, in_body) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidRequest("use one client authentication method, not two".into()))
        }
        (Some(encoded), None) => {
            let decoded = STANDARD.decode(encoded).map_err(|_| ApiError::InvalidClient)?;
            let decoded = String::from_utf8(decoded).map_err(|_| ApiError::InvalidClient)?;
            let (id, secret) = decoded.split_once(':').ok_or(ApiError::InvalidClient)?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
            let id = form_decode(id).ok_or(ApiError::InvalidClient)?;
            let secret = form_decode(secret).ok_or(ApiError::InvalidClient)?;
            (id, secret)
        }
        (None, Some((id, secret))) => (id.to_string(), secret.to_string()),
        (None, None) => return Err(ApiError::InvalidClient),
    };
    let known = upstream.clients().iter().find(|c| c.id == id).ok_or(ApiError::InvalidClient)?;
    if bool::from(known.secret.as_bytes().ct_eq(secret.as_bytes())) {
        Ok(id)
    } else {
        Err(ApiError::InvalidClient)
    }
}

fn form_decode(s: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `POST /oauth/token`
pub async fn token(
    State(upstream): State<Upstream>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = Form::parse(&headers, &body)?;
    let client_id = authenticate_client(&upstream, &headers, Some(&form))?;
    let grant_type = form.require("grant_type")?;
    let tokens = match grant_type {
        "password" => {
            let username = form.require("username")?.to_string();
            let password = form.require("password")?.to_string();
            let scope = form.get("scope").unwrap_or("").to_string();
            let found = upstream
                .store()
                .user_by_email(&username)
                .map_err(ApiError::store)?
                .map(|u| (u.id, u.password_hash));
            let decoy = upstream.decoy_hash().to_string();
            let (user_id, matches) = passwords::off_thread(move || match found {
                Some((id, stored)) => (Some(id), passwords::verify(&password, &stored)),
                None => {
                    // Same work as for a known user, so timing does not tell who has an account.
                    let _ = passwords::verify(&password, &decoy);
                    (None, false)
                }
            })
            .await
            .ok_or(ApiError::Internal)?;
            let user_id = match (user_id, matches) {
                (Some(id), true) => id,
                _ => {
                    *upstream.store().counters.grant_failures.entry("bad_password".into()).or_default() += 1;
                    return Err(ApiError::InvalidGrant("the username or password is wrong".into()));
                }
            };
            let signer = upstream.signer();
            upstream
                .store()
                .issue_for_password(&user_id, &client_id, &scope, now_ms(), signer)
                .map_err(ApiError::grant)?
        }
        "refresh_token" => {
            let presented = form.require("refresh_token")?;
            upstream
                .store()
                .refresh(presented, &client_id, now_ms(), upstream.signer())
                .map_err(ApiError::grant)?
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(ApiError::UnsupportedGrantType(format!("grant_type `{shown}` is not supported")));
        }
    };
    Ok(no_store((StatusCode::OK, Json(tokens)).into_response()))
}

/// `POST /oauth/revoke` (RFC 7009): 200 whether or not the token was known.
pub async fn revoke(
    State(upstream): State<Upstream>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = Form::parse(&headers, &body)?;
    let client_id = authenticate_client(&upstream, &headers, Some(&form))?;
    let token = form.require("token")?;
    if let Some(hint) = form.get("token_type_hint") {
        if hint != "access_token" && hint != "refresh_token" {
            return Err(ApiError::InvalidRequest("unsupported token_type_hint".into()));
        }
    }
    let revoked =
        upstream.store().revoke(token, &client_id, now_ms(), upstream.signer()).map_err(ApiError::store)?;
    tracing::debug!(revoked, "revocation request");
    Ok(no_store(StatusCode::OK.into_response()))
}
