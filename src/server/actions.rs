//! The bodies of the server functions declared in `crate::api`: they reach the request's
//! session, call the upstream through it, and turn every failure into a user-safe `AppError`
//! (the detail goes to the log).

use leptos::prelude::use_context;
use serde::Deserialize;
use tokenless_bff::{RegisterError, UpstreamError};
use tokenless_bff::SignInError;
use tokenless_bff::{RequestSession, ResourceError};
use tokenless_bff::safe_next;
use tokenless_bff::Revocation;
use tokenless_bff::Profile;

use crate::api::{AccountView, AdminStatsView, FrogView, UserView};
use crate::error::{AppError, FieldError};
use crate::server::form_memory;

/// The request's session, put there by the session middleware.
pub fn request_session() -> Result<RequestSession, AppError> {
    let parts = use_context::<axum::http::request::Parts>();
    parts.as_ref().and_then(|parts| parts.extensions.get::<RequestSession>().cloned()).ok_or_else(|| {
        match parts {
            // A missing static file's 404 page (a browser asking for /favicon.ico): those paths
            // never read the session, so the page renders signed out.
            Some(parts) if crate::server::middleware::is_sessionless(parts.uri.path()) => {
                tracing::debug!(path = %parts.uri.path(), "no session on a sessionless path")
            }
            _ => tracing::error!("no session on the request: is the session middleware in front of this route?"),
        }
        AppError::Internal
    })
}

/// The configured OpenID provider's name, if people sign in there.
pub fn sign_in_provider() -> Option<String> {
    use_context::<crate::server::AppState>()
        .and_then(|state| state.oidc.as_ref().map(|provider| provider.options().provider_name.clone()))
}

fn user_view(profile: Profile) -> UserView {
    UserView { name: profile.name, email: profile.email, roles: profile.roles }
}

fn signed_in(session: &RequestSession) -> Result<(), AppError> {
    if session.is_signed_in() {
        Ok(())
    } else if session.ended().is_some() {
        Err(AppError::SessionExpired)
    } else {
        Err(AppError::Unauthorized)
    }
}

fn upstream_error(context: &str, e: UpstreamError) -> AppError {
    match e {
        UpstreamError::Unavailable(detail) => {
            tracing::warn!(%detail, "{context}: upstream unavailable");
            AppError::UpstreamUnavailable
        }
        other => {
            tracing::error!(error = %other, "{context}: unexpected upstream answer");
            AppError::BadGateway
        }
    }
}

fn resource_error(context: &str, e: ResourceError) -> AppError {
    match e {
        ResourceError::SignedOut => AppError::Unauthorized,
        ResourceError::SessionEnded => AppError::SessionExpired,
        ResourceError::Forbidden => AppError::Forbidden,
        ResourceError::Unavailable(detail) => {
            tracing::warn!(%detail, "{context}: upstream unavailable");
            AppError::UpstreamUnavailable
        }
        ResourceError::Unexpected(detail) => {
            tracing::error!(%detail, "{context}: unexpected upstream answer");
            AppError::BadGateway
        }
    }
}

/// Where to go after signing in: `next` when it is a path of this site, else home.
fn destination(next: &str) -> String {
    safe_next(next.trim())
        .map(|next| crate::server::middleware::without_form_errors(&next))
        .unwrap_or_else(|| "/".to_string())
}

const EMAIL_MAX: usize = 254;
const NAME_MAX: usize = 100;
const PASSWORD_MAX: usize = 128;

pub fn who_am_i() -> Result<Option<UserView>, AppError> {
    Ok(request_session()?.profile().map(user_view))
}

pub async fn login(email: String, password: String, next: String) -> Result<(), AppError> {
    let email = email.trim();
    let result = sign_in(email, &password, &next).await;
    if result.is_err() {
        form_memory::remember("login", &[("email", email)]);
    }
    result
}

async fn sign_in(email: &str, password: &str, next: &str) -> Result<(), AppError> {
    let mut problems = Vec::new();
    if email.is_empty() {
        problems.push(FieldError { field: "email".into(), message: "Enter your email address.".into() });
    } else if email.len() > EMAIL_MAX {
        problems
            .push(FieldError { field: "email".into(), message: "This email address is too long.".into() });
    }
    if password.is_empty() {
        problems.push(FieldError { field: "password".into(), message: "Enter your password.".into() });
    } else if password.len() > PASSWORD_MAX {
        // Cannot be anyone's password (registration refuses it): same answer as a wrong one.
        return Err(AppError::InvalidCredentials);
    }
    if !problems.is_empty() {
        return Err(AppError::Validation(problems));
    }
    if sign_in_provider().is_some() {
        // People sign in at the OpenID provider: a password never goes to it from here.
        return Err(AppError::BadRequest);
    }
    let session = request_session()?;
    match session.sign_in(email, password).await {
        Ok(_) => {
            leptos_axum::redirect(&destination(next));
            Ok(())
        }
        Err(SignInError::InvalidCredentials) => Err(AppError::InvalidCredentials),
        Err(SignInError::Upstream(e)) => Err(upstream_error("sign-in", e)),
    }
}

pub async fn register(name: String, email: String, password: String, next: String) -> Result<(), AppError> {
    let (name, email) = (name.trim(), email.trim());
    let result = create_account(name, email, &password, &next).await;
    if result.is_err() {
        form_memory::remember("register", &[("name", name), ("email", email)]);
    }
    result
}

async fn create_account(name: &str, email: &str, password: &str, next: &str) -> Result<(), AppError> {
    let mut problems = Vec::new();
    if name.is_empty() {
        problems.push(FieldError { field: "name".into(), message: "Enter your name.".into() });
    } else if name.chars().count() > NAME_MAX {
        problems.push(FieldError {
            field: "name".into(),
            message: format!("Use at most {NAME_MAX} characters."),
        });
    }
    if email.is_empty() {
        problems.push(FieldError { field: "email".into(), message: "Enter your email address.".into() });
    } else if email.len() > EMAIL_MAX {
        problems
            .push(FieldError { field: "email".into(), message: "This email address is too long.".into() });
    }
    if password.is_empty() {
        problems.push(FieldError { field: "password".into(), message: "Choose a password.".into() });
    } else if password.len() > PASSWORD_MAX {
        problems.push(FieldError {
            field: "password".into(),
            message: format!("Use at most {PASSWORD_MAX} characters."),
        });
    }
    if !problems.is_empty() {
        return Err(AppError::Validation(problems));
    }
    let session = request_session()?;
    match session.register(email, name, password).await {
        Ok(_) => {
            leptos_axum::redirect(&destination(next));
            Ok(())
        }
        Err(RegisterError::EmailTaken) => Err(AppError::EmailTaken),
        Err(RegisterError::Invalid(fields)) => Err(AppError::Validation(
            fields.into_iter().map(|f| FieldError { field: f.field, message: f.message }).collect(),
        )),
        Err(RegisterError::Upstream(e)) => Err(upstream_error("registration", e)),
        Err(RegisterError::Unsupported) => Err(AppError::RegistrationClosed),
    }
}

pub async fn logout() -> Result<(), AppError> {
    let session = request_session()?;
    // Signed in at an OpenID provider: signed out here, then at the provider (RP-initiated
    // logout), which sends the browser back to this site's front page.
    if let Some(provider) = use_context::<crate::server::AppState>().and_then(|state| state.oidc.clone()) {
        let origin = use_context::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<tokenless_bff::SiteOrigin>().cloned());
        let back_to = origin.and_then(|tokenless_bff::SiteOrigin(o)| url::Url::parse(&o).ok()?.join("/").ok());
        let at_provider = match back_to {
            Some(back_to) => tokenless_bff::oidc::sign_out(&provider, &session, &back_to).await,
            None => {
                session.sign_out().await;
                None
            }
        };
        leptos_axum::redirect(at_provider.as_ref().map_or("/", url::Url::as_str));
        return Ok(());
    }
    let revocation = session.sign_out().await;
    match revocation {
        // Signed out here; say that the upstream has not confirmed it (retried meanwhile, or not).
        Some(Revocation::Pending) => {
            leptos_axum::redirect(&format!("/login?reason={}", crate::app::SIGNOUT_PENDING))
        }
        Some(Revocation::Failed) => {
            leptos_axum::redirect(&format!("/login?reason={}", crate::app::SIGNOUT_UNCONFIRMED))
        }
        Some(Revocation::Confirmed) | None => leptos_axum::redirect("/"),
    }
    Ok(())
}

pub fn account() -> Result<AccountView, AppError> {
    let request = request_session()?;
    signed_in(&request)?;
    let session = request.session().ok_or(AppError::Unauthorized)?;
    let manager = request.manager();
    let idle_end = tokenless_bff::now().saturating_add(manager.limits().idle_timeout.as_secs());
    Ok(AccountView {
        signed_in_at: session.created_at,
        session_ends_at: manager.ends_at(&session).min(idle_end),
        user: user_view(session.profile),
    })
}

/// The upstream's frog, as `/frogs` answers.
#[derive(Deserialize)]
struct UpstreamFrog {
    id: u32,
    name: String,
    #[serde(default)]
    species: String,
    #[serde(default)]
    habitat: String,
    #[serde(default)]
    picture_svg: String,
}

pub async fn list_frogs() -> Result<Vec<FrogView>, AppError> {
    let session = request_session()?;
    signed_in(&session)?;
    let frogs: Vec<UpstreamFrog> =
        session.get_json("/frogs").await.map_err(|e| resource_error("frogs", e))?;
    Ok(frogs
        .into_iter()
        .map(|f| FrogView {
            id: f.id,
            name: f.name,
            species: f.species,
            habitat: f.habitat,
            picture: svg_data_uri(&f.picture_svg),
        })
        .collect())
}

/// An SVG drawing as a `data:` URI, percent-encoded rather than base64: a drawing is ASCII
/// markup, which base64 makes a third larger, and `/frogs`'s HTML goes out uncompressed
/// (BENCHMARKS.md, "Client size"). Escaped: `%` and `#` (they would end or change the URI's
/// body), `"`, `&`, `<` and `>` (the renderer would otherwise escape them again as longer
/// entities in the double-quoted `src`), control characters (the URL parser drops tabs and
/// newlines) and every byte outside ASCII. The single quotes SVG attributes use stay as they
/// are: they end nothing in a double-quoted attribute.
fn svg_data_uri(svg: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut uri = String::with_capacity("data:image/svg+xml,".len() + svg.len() + svg.len() / 8);
    uri.push_str("data:image/svg+xml,");
    for &byte in svg.as_bytes() {
        match byte {
            b'%' | b'#' | b'"' | b'&' | b'<' | b'>' | 0..=0x1f | 0x7f..=0xff => {
                uri.push('%');
                uri.push(char::from(HEX[usize::from(byte >> 4)]));
                uri.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
            _ => uri.push(char::from(byte)),
        }
    }
    uri
}

pub async fn admin_stats() -> Result<AdminStatsView, AppError> {
    let session = request_session()?;
    signed_in(&session)?;
    // Ask the upstream even when the profile lacks the role: it is the authority.
    #[derive(Deserialize)]
    struct Stats {
        users: u64,
        active_sessions: u64,
        refresh_grants: u64,
        reuse_events: u64,
    }
    let s: Stats = session.get_json("/admin/stats").await.map_err(|e| resource_error("admin stats", e))?;
    Ok(AdminStatsView {
        users: s.users,
        active_sessions: s.active_sessions,
        refresh_grants: s.refresh_grants,
        reuse_events: s.reuse_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drawing_becomes_a_data_uri_that_reads_back_the_same_and_cannot_leave_its_attribute() {
        let svg = "<svg xmlns='http://www.w3.org/2000/svg'><circle fill='#fff' r=\"3.5\"/>\n<text>50% & é\t</text></svg>";
        let uri = svg_data_uri(svg);
        let body = uri.strip_prefix("data:image/svg+xml,").expect("the media type");
        assert!(body.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{uri}");
        for forbidden in ['"', '<', '>', '&', '#', '\n', '\t'] {
            assert!(!body.contains(forbidden), "{forbidden:?} in {uri}");
        }
        // Percent-decoding gives the drawing back, byte for byte.
        let mut decoded = Vec::new();
        let mut bytes = body.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex: String = [bytes.next().unwrap(), bytes.next().unwrap()].iter().map(|&b| char::from(b)).collect();
                decoded.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                decoded.push(b);
            }
        }
        assert_eq!(String::from_utf8(decoded).unwrap(), svg);
        // Smaller than base64 for the demo's drawings: an escape per tag bracket and colour.
        let demo = tokenless_upstream::resources::frogs()[0].picture_svg.clone();
        assert!(svg_data_uri(&demo).len() < demo.len() * 4 / 3, "{}", svg_data_uri(&demo));
    }

    #[test]
    fn an_upstream_that_makes_no_sense_is_a_bad_gateway_never_our_500() {
        let e = resource_error("frogs", ResourceError::Unexpected("not JSON".into()));
        assert_eq!((e.status(), e), (502, AppError::BadGateway));
        let e = upstream_error("sign-in", UpstreamError::Unexpected("an answer larger than 65536 bytes".into()));
        assert_eq!(e.status(), 502);
        assert_eq!(upstream_error("sign-in", UpstreamError::Unavailable("503".into())).status(), 503);
    }
}
