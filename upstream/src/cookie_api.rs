//! The demo upstream in the shape of the seeds' own backends, with the same store (rotation on
//! every refresh, reuse revokes the family) behind them:
//!
//! - **seed 003** (Express): `POST /auth/login` and `POST /auth/register` (JSON) answer
//!   `{"accessToken"}` with the refresh token in `Set-Cookie: refresh_token=...; HttpOnly`;
//!   `POST /auth/refresh-token` reads only that cookie; `DELETE /auth/logout`; `GET /me`
//!   (Bearer) → `{name, email}`. A new sign-in ends the user's other sign-ins and a refresh
//!   retires the access token before it. Errors are `{"error": {"status", "message"}}`, and a
//!   refresh without its cookie is a 500 (a client mistake answered as a server error).
//! - **seed 002** (NestJS): `POST /auth/login` answers `{"message"}` with both tokens only in
//!   cookies (`HttpOnly; Secure; SameSite=None`, even over plain http); `POST /auth/refresh` sets
//!   both again; a rotated refresh token presented again is a 403 and wipes every sign-in of the
//!   user; `GET /users/me` and the resources read the `access_token` cookie (or Bearer);
//!   `POST /auth/logout` needs both cookies. Errors are `{"statusCode", "message", "error"}`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::config::Shape;
use crate::passwords;
use crate::resources::{validate, Registration};
use crate::state::{now_ms, Upstream};
use crate::store::{AddUserError, GrantError, IssuedTokens};

/// The client id the cookie shapes' tokens are bound to (these APIs have no client credentials).
pub const WEB_CLIENT: &str = "web";

pub const ACCESS_COOKIE: &str = "access_token";
pub const REFRESH_COOKIE: &str = "refresh_token";

/// An error in the shape's own format.
fn error(shape: Shape, status: StatusCode, message: &str) -> Response {
    let body = match shape {
        Shape::Seed002 => json!({
            "statusCode": status.as_u16(),
            "message": message,
            "error": status.canonical_reason().unwrap_or("Error"),
        }),
        _ => json!({ "error": { "status": status.as_u16(), "message": message } }),
    };
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn server_error(shape: Shape) -> Response {
    error(shape, StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
}

/// The store failed: logged here, a plain 500 in the shape's format on the wire.
fn store_failed(shape: Shape, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "the demo upstream's store failed");
    server_error(shape)
}

/// The value of cookie `name` in the request's `Cookie` header(s).
pub fn request_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a token, in the shape's style.
fn set_cookie(shape: Shape, name: &str, value: &str, max_age_s: u64) -> HeaderValue {
    let line = match shape {
        // NestJS's `res.cookie(..., { httpOnly: true, secure: true, sameSite: 'none' })`.
        Shape::Seed002 => {
            format!("{name}={value}; Max-Age={max_age_s}; Path=/; HttpOnly; Secure; SameSite=None")
        }
        _ => format!("{name}={value}; Max-Age={max_age_s}; Path=/; HttpOnly"),
    };
    // Tokens are base64url or JWTs: always a valid header value.
    HeaderValue::from_str(&line).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

fn clear_cookie(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}=; Max-Age=0; Path=/"))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// The answer to a successful sign-in, registration or refresh.
fn tokens_answer(shape: Shape, tokens: &IssuedTokens, message: &str) -> Response {
    let mut response = match shape {
        Shape::Seed002 => (StatusCode::OK, Json(json!({ "message": message }))).into_response(),
        _ => (StatusCode::OK, Json(json!({ "accessToken": tokens.access_token }))).into_response(),
    };
    let headers = response.headers_mut();
    if shape == Shape::Seed002 {
        headers.append(
            header::SET_COOKIE,
            set_cookie(shape, ACCESS_COOKIE, &tokens.access_token, tokens.expires_in),
        );
    }
    headers.append(
        header::SET_COOKIE,
        set_cookie(shape, REFRESH_COOKIE, &tokens.refresh_token, tokens.refresh_expires_in),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Option<T> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// Checks the password off the async threads; the user's id when it matches.
async fn check_password(
    upstream: &Upstream,
    email: &str,
    password: String,
) -> Result<Option<String>, Response> {
    let shape = upstream.shape();
    let found = upstream.store().user_by_email(email).map_err(|e| store_failed(shape, e))?;
    let found = found.map(|u| (u.id, u.password_hash));
    let decoy = upstream.decoy_hash().to_string();
    let (id, matches) = passwords::off_thread(move || match found {
        Some((id, stored)) => (Some(id), passwords::verify(&password, &stored)),
        None => {
            // Same work as for a known user, so timing does not tell who has an account.
            let _ = passwords::verify(&password, &decoy);
            (None, false)
        }
    })
    .await
    .ok_or_else(|| server_error(shape))?;
    Ok(id.filter(|_| matches))
}

/// A new sign-in for `user_id`. Seed 003 keeps one per user: the others end.
fn issue(upstream: &Upstream, user_id: &str, email: &str) -> Result<IssuedTokens, Response> {
    let shape = upstream.shape();
    let mut store = upstream.store();
    if shape == Shape::Seed003 {
        store.revoke_user(email).map_err(|e| store_failed(shape, e))?;
    }
    store.issue_for_password(user_id, WEB_CLIENT, "", now_ms(), upstream.signer()).map_err(|e| {
        tracing::error!(error = %e, "issuing tokens failed");
        server_error(shape)
    })
}

/// `POST /auth/login`
pub async fn login(State(upstream): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response {
    let shape = upstream.shape();
    let Some(credentials) = json_body::<Credentials>(&headers, &body) else {
        // Express's body parser error, unhandled: a client mistake answered with 500.
        return error(shape, StatusCode::INTERNAL_SERVER_ERROR, "Unexpected token in JSON");
    };
    let email = credentials.email.trim().to_string();
    match check_password(&upstream, &email, credentials.password).await {
        Err(response) => response,
        Ok(None) => {
            *upstream.store().counters.grant_failures.entry("bad_password".into()).or_default() += 1;
            let message =
                if shape == Shape::Seed002 { "Invalid credentials" } else { "Invalid email or password" };
            error(shape, StatusCode::UNAUTHORIZED, message)
        }
        Ok(Some(user_id)) => match issue(&upstream, &user_id, &email) {
            Ok(tokens) => tokens_answer(shape, &tokens, "Logged in successfully"),
            Err(response) => response,
        },
    }
}

/// `POST /auth/register` (seed 003): creates the account and signs it in.
pub async fn register(State(upstream): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response {
    let shape = upstream.shape();
    let Some(registration) = json_body::<Registration>(&headers, &body) else {
        return error(shape, StatusCode::INTERNAL_SERVER_ERROR, "Unexpected token in JSON");
    };
    if let Some(problem) = validate(&registration).into_iter().next() {
        return error(shape, StatusCode::BAD_REQUEST, &format!("{}: {}", problem.field, problem.message));
    }
    let cost = upstream.hash_cost();
    let password = registration.password.clone();
    let Some(Ok(hash)) = passwords::off_thread(move || passwords::hash(&password, cost)).await else {
        return server_error(shape);
    };
    let added = upstream.store().add_user(&registration.email, &registration.name, hash, vec!["user".into()]);
    match added {
        Ok(profile) => match issue(&upstream, &profile.id, &profile.email) {
            Ok(tokens) => tokens_answer(shape, &tokens, "Registered"),
            Err(response) => response,
        },
        Err(AddUserError::EmailTaken) => error(shape, StatusCode::CONFLICT, "Email already registered"),
        Err(AddUserError::Store(e)) => store_failed(shape, e),
    }
}

/// `POST /auth/refresh-token` (seed 003) and `POST /auth/refresh` (seed 002): the refresh
/// cookie, rotated.
pub async fn refresh(State(upstream): State<Upstream>, headers: HeaderMap) -> Response {
    let shape = upstream.shape();
    let Some(presented) = request_cookie(&headers, REFRESH_COOKIE) else {
        return match shape {
            // jsonwebtoken's "jwt must be provided", unhandled.
            Shape::Seed003 => error(shape, StatusCode::INTERNAL_SERVER_ERROR, "jwt must be provided"),
            _ => error(shape, StatusCode::UNAUTHORIZED, "Refresh token missing"),
        };
    };
    let result = upstream.store().refresh(&presented, WEB_CLIENT, now_ms(), upstream.signer());
    match result {
        Ok(tokens) => tokens_answer(shape, &tokens, "Tokens refreshed"),
        Err(GrantError::Reused) => error(shape, StatusCode::FORBIDDEN, "Refresh token reuse detected"),
        Err(GrantError::Storage) => server_error(shape),
        Err(e) => error(shape, StatusCode::UNAUTHORIZED, &e.to_string()),
    }
}

/// `DELETE /auth/logout` (seed 003) and `POST /auth/logout` (seed 002, both cookies needed).
pub async fn logout(State(upstream): State<Upstream>, headers: HeaderMap) -> Response {
    let shape = upstream.shape();
    let refresh = request_cookie(&headers, REFRESH_COOKIE);
    if shape == Shape::Seed002 && (refresh.is_none() || request_cookie(&headers, ACCESS_COOKIE).is_none()) {
        return error(shape, StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    if let Some(token) = refresh {
        if let Err(e) = upstream.store().revoke(&token, WEB_CLIENT, now_ms(), upstream.signer()) {
            return store_failed(shape, e);
        }
    }
    let mut response = match shape {
        Shape::Seed002 => (StatusCode::OK, Json(json!({ "message": "Logged out" }))).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    };
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, clear_cookie(REFRESH_COOKIE));
    if shape == Shape::Seed002 {
        headers.append(header::SET_COOKIE, clear_cookie(ACCESS_COOKIE));
    }
    response
}

/// `GET /me` (seed 003) → `{name, email}`; `GET /users/me` (seed 002) → `{id, firstName,
/// lastName, email, roles, createdAt}`.
pub async fn me(State(upstream): State<Upstream>, headers: HeaderMap) -> Response {
    let shape = upstream.shape();
    let claims = match crate::resources::bearer(&upstream, &headers) {
        Ok(claims) => claims,
        Err(_) => return error(shape, StatusCode::UNAUTHORIZED, "Unauthorized"),
    };
    let user = match upstream.store().user(&claims.sub) {
        Ok(Some(user)) => user,
        Ok(None) => return error(shape, StatusCode::UNAUTHORIZED, "Unauthorized"),
        Err(e) => return store_failed(shape, e),
    };
    let body = match shape {
        Shape::Seed002 => {
            let (first, last) = user.name.split_once(' ').unwrap_or((user.name.as_str(), ""));
            json!({
                "id": user.id, "firstName": first, "lastName": last, "email": user.email,
                "roles": user.roles, "createdAt": "2026-01-01T00:00:00.000Z",
            })
        }
        _ => json!({ "name": user.name, "email": user.email }),
    };
    Json(body).into_response()
}
