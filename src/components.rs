//! Pieces several pages share: a labelled form field with its error next to it (and what a
//! failed plain form post typed into it), the form-level error, the error state of a page whose
//! data call failed, and a UTC time formatter.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use leptos_router::components::Redirect;
use leptos_router::hooks::use_location;

use crate::app::login_href;
use crate::error::AppError;
use crate::status::set_status;

/// An input with its label, and its error message (announced, linked by `aria-describedby`).
#[component]
pub fn Field(
    name: &'static str,
    label: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(default = "off")] autocomplete: &'static str,
    #[prop(into)] error: Signal<Option<String>>,
    #[prop(optional)] autofocus: bool,
    #[prop(optional)] hint: Option<&'static str>,
    #[prop(optional)] minlength: Option<u32>,
    #[prop(optional)] maxlength: Option<u32>,
    /// What the field holds when the page is rendered.
    #[prop(default = None)]
    value: Option<String>,
) -> impl IntoView {
    let id = format!("field-{name}");
    let error_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    let described_by = if hint.is_some() { format!("{hint_id} {error_id}") } else { error_id.clone() };
    view! {
        <div class="field" class:invalid=move || error.get().is_some()>
            <label for=id.clone()>{label}</label>
            {hint.map(|h| view! { <p class="hint" id=hint_id>{h}</p> })}
            <input
                id=id
                name=name
                type=kind
                autocomplete=autocomplete
                required=true
                autofocus=autofocus
                minlength=minlength
                maxlength=maxlength
                value=value
                aria-invalid=move || if error.get().is_some() { "true" } else { "false" }
                aria-describedby=described_by
            />
            <p class="field-error" id=error_id data-testid=format!("{name}-error")>{move || error.get()}</p>
        </div>
    }
}

/// What a form post typed before it failed, never a password: the server sends the browser back
/// to the form and provides this while rendering it (`server::form_memory`), so that nothing
/// typed is lost. Every form is a plain post, with or without JavaScript.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RememberedInput {
    /// The server function the form posted to, e.g. `login`.
    pub form: String,
    pub fields: Vec<(String, String)>,
}

/// The value `field` of `form` had in the failed post this page answers, if any.
pub fn remembered(form: &str, field: &str) -> Option<String> {
    let input = use_context::<RememberedInput>()?;
    if input.form != form {
        return None;
    }
    input.fields.into_iter().find(|(name, _)| name == field).map(|(_, value)| value)
}

/// The message of a form's failed submission, for a live region above the submit button.
#[component]
pub fn FormError(#[prop(into)] error: Signal<Option<AppError>>) -> impl IntoView {
    view! {
        <div class="form-error" role="alert" data-testid="form-error">
            {move || error.get().map(|e| view! { <p>{e.to_string()}</p> })}
        </div>
    }
}

/// What a protected page shows when its data call failed: signed out → to the sign-in page
/// (with a return path); no admin role → 403; upstream down → 503 with a way to try again.
#[component]
pub fn PageError(error: AppError) -> impl IntoView {
    let location = use_location();
    let here = {
        let path = location.pathname.get_untracked();
        let search = location.search.get_untracked();
        if search.is_empty() {
            path
        } else {
            format!("{path}?{search}")
        }
    };
    match error {
        AppError::Unauthorized | AppError::SessionExpired => {
            let expired = error == AppError::SessionExpired;
            view! { <Redirect path=login_href(&here, expired)/> }.into_any()
        }
        AppError::Forbidden => {
            set_status(403);
            view! {
                <section class="card narrow" data-testid="forbidden">
                    <h1>"Not for this account"</h1>
                    <p>"This page is for administrators. You are signed in, but your account does not have the admin role."</p>
                    <p><a href="/">"Back to the start"</a></p>
                </section>
            }
            .into_any()
        }
        AppError::UpstreamUnavailable => {
            set_status(503);
            view! {
                <section class="card narrow" data-testid="unavailable">
                    <h1>"Service unavailable"</h1>
                    <p>{AppError::UpstreamUnavailable.to_string()}</p>
                    <p>"You are still signed in."</p>
                    <p><a href=here rel="external">"Try again"</a></p>
                </section>
            }
            .into_any()
        }
        AppError::BadGateway => {
            set_status(502);
            view! {
                <section class="card narrow" data-testid="bad-gateway">
                    <h1>"The service answered oddly"</h1>
                    <p>{AppError::BadGateway.to_string()}</p>
                    <p><a href=here rel="external">"Try again"</a></p>
                </section>
            }
            .into_any()
        }
        other => {
            set_status(500);
            view! {
                <section class="card narrow" data-testid="page-error">
                    <h1>"Something went wrong"</h1>
                    <p>{other.to_string()}</p>
                </section>
            }
            .into_any()
        }
    }
}

/// `2026-11-23 14:05 UTC` from Unix seconds; the same on server and client.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rem / 3600, (rem % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_795_403_947), "2026-11-23 03:19 UTC");
    }
}
