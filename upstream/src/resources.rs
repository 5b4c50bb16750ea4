//! The protected resources (`/userinfo`, `/frogs`, `/frogs/{id}`, `/frogs/{id}/croaks`,
//! `/admin/stats`) behind Bearer access tokens, and registration (`POST /users`) behind client
//! authentication.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, FieldProblem};
use crate::oauth::authenticate_client;
use crate::passwords;
use crate::state::{now_ms, Upstream};
use crate::store::{AccessError, AddUserError, Profile};
use crate::tokens::AccessClaims;

/// Reads and checks the Bearer token of a request.
/// The access token's claims: from `Authorization: Bearer`, or (seed 002's shape) the
/// `access_token` cookie.
pub(crate) fn bearer(upstream: &Upstream, headers: &HeaderMap) -> Result<AccessClaims, ApiError> {
    let from_cookie = match upstream.shape() {
        crate::config::Shape::Seed002 if !headers.contains_key(header::AUTHORIZATION) => {
            crate::cookie_api::request_cookie(headers, crate::cookie_api::ACCESS_COOKIE)
        }
        _ => None,
    };
    if let Some(token) = from_cookie {
        return check(upstream, &token);
    }
    let value =
        headers.get(header::AUTHORIZATION).ok_or_else(|| ApiError::InvalidToken("no access token".into()))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::InvalidToken("the Authorization header is not a Bearer token".into()))?;
    check(upstream, token)
}

fn check(upstream: &Upstream, token: &str) -> Result<AccessClaims, ApiError> {
    upstream.store().authenticate(token, now_ms(), upstream.signer()).map_err(|e| {
        ApiError::InvalidToken(
            match e {
                AccessError::Invalid => "the access token is invalid",
                AccessError::Expired => "the access token has expired",
                AccessError::Revoked => "the access token was revoked",
                // Logged by the store; our fault, not the token's.
                AccessError::Storage => return ApiError::Internal,
            }
            .into(),
        )
    })
}

/// What `GET /userinfo` answers: OpenID Connect's `sub` (the user's id), and the profile.
#[derive(Debug, Serialize)]
pub struct UserInfo {
    sub: String,
    #[serde(flatten)]
    profile: Profile,
}

/// `GET /userinfo`
pub async fn userinfo(
    State(upstream): State<Upstream>,
    headers: HeaderMap,
) -> Result<Json<UserInfo>, ApiError> {
    let claims = bearer(&upstream, &headers)?;
    let user = upstream
        .store()
        .user(&claims.sub)
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::InvalidToken("the user is gone".into()))?;
    Ok(Json(UserInfo { sub: user.id.clone(), profile: Profile::from(&user) }))
}

#[derive(Debug, Clone, Serialize)]
pub struct Frog {
    pub id: u32,
    pub name: &'static str,
    pub species: &'static str,
    pub habitat: &'static str,
    /// A small SVG drawing of the frog (no external resources).
    pub picture_svg: String,
}

const FROGS: &[(&str, &str, &str, &str, &str)] = &[
    ("Fern", "Red-eyed tree frog", "Rainforest canopy", "#3fae5a", "#d8412f"),
    ("Basil", "European common frog", "Garden ponds", "#7a8f3b", "#2b2b2b"),
    ("Juniper", "Poison dart frog", "Forest floor", "#2f6fd1", "#111111"),
    ("Pepper", "American bullfrog", "Lakes and marshes", "#5c7a34", "#e8c547"),
    ("Clover", "Glass frog", "Mountain streams", "#a6d96a", "#1d3b2a"),
    ("Mossy", "Vietnamese mossy frog", "Flooded caves", "#4e6b3a", "#c9b458"),
    ("Tadpole Tim", "African clawed frog", "Still water", "#9c8f6e", "#3a3a3a"),
    ("Sunny", "Golden mantella", "Madagascar woods", "#f2a81d", "#111111"),
];

fn frog_svg(body: &str, eye: &str) -> String {
    format!(
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 96 96'>\
         <ellipse cx='48' cy='62' rx='34' ry='24' fill='{body}'/>\
         <circle cx='30' cy='34' r='13' fill='{body}'/><circle cx='66' cy='34' r='13' fill='{body}'/>\
         <circle cx='30' cy='33' r='7' fill='#fff'/><circle cx='66' cy='33' r='7' fill='#fff'/>\
         <circle cx='31' cy='34' r='3.5' fill='{eye}'/><circle cx='67' cy='34' r='3.5' fill='{eye}'/>\
         <path d='M32 66 Q48 78 64 66' stroke='#1b1b1b' stroke-width='3' fill='none' stroke-linecap='round'/>\
         </svg>"
    )
}

pub fn frogs() -> Vec<Frog> {
    FROGS
        .iter()
        .enumerate()
        .map(|(i, (name, species, habitat, body, eye))| Frog {
            id: i as u32 + 1,
            name,
            species,
            habitat,
            picture_svg: frog_svg(body, eye),
        })
        .collect()
}

/// `GET /frogs`
pub async fn list_frogs(
    State(upstream): State<Upstream>,
    headers: HeaderMap,
) -> Result<Json<Vec<Frog>>, ApiError> {
    bearer(&upstream, &headers)?;
    Ok(Json(frogs()))
}

#[derive(Debug, Serialize)]
pub struct FrogDetail {
    #[serde(flatten)]
    pub frog: Frog,
    pub croaks: u64,
}

fn frog_by_id(raw: &str) -> Result<Frog, ApiError> {
    let id: u32 = raw.parse().map_err(|_| ApiError::NotFound)?;
    frogs().into_iter().find(|f| f.id == id).ok_or(ApiError::NotFound)
}

/// `GET /frogs/{id}`. Like some real APIs, it also sets a cookie of its own, which a BFF must
/// never pass on to the browser.
pub async fn frog(
    State(upstream): State<Upstream>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    bearer(&upstream, &headers)?;
    let frog = frog_by_id(&id)?;
    let croaks = upstream.store().croaks(frog.id).map_err(ApiError::store)?;
    let cookie = [(header::SET_COOKIE, "demo_upstream_visit=1; Path=/; HttpOnly")];
    Ok((cookie, Json(FrogDetail { frog, croaks })).into_response())
}

/// `POST /frogs/{id}/croaks`: a state-changing call; answers the new count.
pub async fn croak(
    State(upstream): State<Upstream>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    bearer(&upstream, &headers)?;
    let frog = frog_by_id(&id)?;
    let croaks = upstream.store().croak(frog.id).map_err(ApiError::store)?;
    Ok((StatusCode::CREATED, Json(FrogDetail { frog, croaks })).into_response())
}

#[derive(Debug, Serialize)]
pub struct AdminStats {
    pub users: usize,
    pub active_sessions: usize,
    pub refresh_grants: u64,
    pub reuse_events: u64,
}

/// `GET /admin/stats` (role `admin`)
pub async fn admin_stats(
    State(upstream): State<Upstream>,
    headers: HeaderMap,
) -> Result<Json<AdminStats>, ApiError> {
    let claims = bearer(&upstream, &headers)?;
    if !claims.roles.iter().any(|r| r == "admin") {
        return Err(ApiError::InsufficientScope("the admin role is required".into()));
    }
    let store = upstream.store();
    Ok(Json(AdminStats {
        users: store.user_count().map_err(ApiError::store)?,
        active_sessions: store.active_sessions().map_err(ApiError::store)?,
        refresh_grants: store.counters.grants.get("refresh_token").copied().unwrap_or(0),
        reuse_events: store.counters.reuse_events,
    }))
}

#[derive(Debug, Deserialize)]
pub struct Registration {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub password: String,
}

pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

/// A plain, strict-enough check: one `@`, a non-empty local part, a dotted domain, no spaces.
pub fn email_is_well_formed(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    email.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && email.chars().all(|c| c.is_ascii_graphic())
}

pub fn validate(reg: &Registration) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    let email = reg.email.trim();
    if email.is_empty() {
        problems.push(FieldProblem { field: "email", message: "Enter your email address.".into() });
    } else if !email_is_well_formed(email) {
        problems.push(FieldProblem {
            field: "email",
            message: "Enter an email address like name@example.com.".into(),
        });
    }
    let name = reg.name.trim();
    if name.is_empty() {
        problems.push(FieldProblem { field: "name", message: "Enter your name.".into() });
    } else if name.chars().count() > 100 {
        problems.push(FieldProblem { field: "name", message: "Use at most 100 characters.".into() });
    } else if name.chars().any(char::is_control) {
        problems.push(FieldProblem {
            field: "name",
            message: "Use letters, digits and punctuation only.".into(),
        });
    }
    let length = reg.password.chars().count();
    if length < PASSWORD_MIN {
        problems.push(FieldProblem {
            field: "password",
            message: format!("Use at least {PASSWORD_MIN} characters."),
        });
    } else if length > PASSWORD_MAX {
        problems.push(FieldProblem {
            field: "password",
            message: format!("Use at most {PASSWORD_MAX} characters."),
        });
    }
    problems
}

/// `POST /users` (JSON `{email, name, password}`) → 201 with the profile.
pub async fn register(
    State(upstream): State<Upstream>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authenticate_client(&upstream, &headers, None)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType("the body must be application/json".into()));
    }
    let registration: Registration = serde_json::from_slice(&body).map_err(|_| {
        ApiError::InvalidRequest("the body is not a JSON object with email, name and password".into())
    })?;
    let problems = validate(&registration);
    if !problems.is_empty() {
        return Err(ApiError::InvalidFields(problems));
    }
    if upstream.store().email_taken(&registration.email).map_err(ApiError::store)? {
        return Err(ApiError::EmailTaken);
    }
    let cost = upstream.hash_cost();
    let password = registration.password;
    let hash = passwords::off_thread(move || passwords::hash(&password, cost))
        .await
        .and_then(Result::ok)
        .ok_or(ApiError::Internal)?;
    let profile = upstream
        .store()
        .add_user(&registration.email, &registration.name, hash, vec!["user".into()])
        .map_err(|e| match e {
            AddUserError::EmailTaken => ApiError::EmailTaken,
            AddUserError::Store(e) => ApiError::store(e),
        })?;
    Ok((StatusCode::CREATED, Json(profile)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_shapes() {
        for ok in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(email_is_well_formed(ok), "{ok}");
        }
        for bad in ["", "a", "@b.co", "a@", "a@b", "a@@b.co", "a b@c.de", "a@.b.co", "a@b..co", "a@b.co."] {
            assert!(!email_is_well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn each_field_gets_its_message() {
        let problems =
            validate(&Registration { email: "x".into(), name: " ".into(), password: "short".into() });
        let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
        assert_eq!(fields, ["email", "name", "password"]);
        let ok = Registration { email: "a@b.co".into(), name: "A".into(), password: "long enough".into() };
        assert!(validate(&ok).is_empty());
    }

    #[test]
    fn frog_pictures_are_self_contained_svg() {
        for frog in frogs() {
            assert!(frog.picture_svg.starts_with("<svg"));
            assert!(!frog.picture_svg.contains("http://example") && !frog.picture_svg.contains("href"));
        }
    }
}
