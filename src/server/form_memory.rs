//! Nothing typed is lost when a plain form post (no JavaScript) fails: the browser is sent back
//! to the form (leptos_axum's `__err` redirect), and what it typed, never a password, rides a
//! one-minute sealed cookie to that page, which renders it back into the fields.

use axum::http::header::ACCEPT;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use leptos::prelude::use_context;
use tower_cookies::Cookies;

use crate::components::RememberedInput;
use crate::server::AppState;

/// The longest value kept per field; longer ones are cut (the forms' own `maxlength`).
const FIELD_MAX_CHARS: usize = 254;

/// Whether leptos_axum answers this server-function call by sending the browser back to the
/// page: it does when the request accepts HTML, as a plain form post does.
fn is_plain_form_post(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().any(|v| v.to_str().is_ok_and(|v| v.contains("text/html")))
}

/// Called by a server function that failed: keeps `fields` for the page the browser goes back
/// to. Does nothing for server functions called by a script (JSON), which keep their input.
pub fn remember(form: &str, fields: &[(&str, &str)]) {
    let Some(parts) = use_context::<Parts>() else { return };
    if !is_plain_form_post(&parts.headers) {
        return;
    }
    let (Some(state), Some(cookies)) = (use_context::<AppState>(), parts.extensions.get::<Cookies>()) else {
        return;
    };
    let input = RememberedInput {
        form: form.to_string(),
        fields: fields
            .iter()
            .map(|(name, value)| (name.to_string(), value.chars().take(FIELD_MAX_CHARS).collect()))
            .collect(),
    };
    match serde_json::to_vec(&input) {
        Ok(bytes) if state.sessions.remember_form(cookies, &bytes) => {}
        _ => tracing::debug!(form, "the typed input does not fit in a cookie; not kept"),
    }
}

/// For a page render (GET): takes the remembered input the request carries, if any. The
/// cookie is deleted whatever it held; one that does not open is ignored.
pub fn recall(state: &AppState, parts: &Parts) -> Option<RememberedInput> {
    if parts.method != Method::GET || parts.uri.path().starts_with("/api/") {
        return None;
    }
    let bytes = state.sessions.take_form(parts.extensions.get::<Cookies>()?)?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_form_posts_are_told_from_client_calls() {
        let mut headers = HeaderMap::new();
        assert!(!is_plain_form_post(&headers));
        headers.insert(ACCEPT, "application/json".parse().unwrap());
        assert!(!is_plain_form_post(&headers));
        headers.append(ACCEPT, "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8".parse().unwrap());
        assert!(is_plain_form_post(&headers));
    }
}
