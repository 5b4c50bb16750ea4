//! `/login`: email and password, `?next=` return path, "your session ended" notice. Works as a
//! plain form post, with or without JavaScript (which only adds the pending state, `forms.js`).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use crate::api::Login;
use crate::app::encode_component;
use crate::components::{remembered, Field, FormError};

#[component]
pub fn LoginPage() -> impl IntoView {
    let action = ServerAction::<Login>::new();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let reason = move || query.read().get("reason");
    let expired = move || reason().as_deref() == Some("expired");
    let signout_pending = move || reason().as_deref() == Some(crate::app::SIGNOUT_PENDING);
    let signout_unconfirmed = move || reason().as_deref() == Some(crate::app::SIGNOUT_UNCONFIRMED);
    // Why the OpenID provider did not sign the person in (`tokenless_bff::oidc::reason`).
    let provider_refusal = move || match reason().as_deref() {
        Some("provider_denied") => Some("The sign-in was cancelled at your identity provider."),
        Some("provider_login_required") => Some("Your identity provider needs you to sign in there first."),
        Some("provider_error") => Some("Your identity provider could not sign you in. Please try again."),
        _ => None,
    };
    let provider = Resource::new(|| (), |_| crate::api::sign_in_provider());
    let provider_href = move || format!("/auth/login?next={}", encode_component(&next()));
    // With a provider, people sign in there: no password form, no registration here. (Read
    // inside the <Suspense> below, which waits for the resource's answer.)
    let at_provider = move || provider.get().and_then(Result::ok).flatten().is_some();
    let error = Signal::derive(move || action.value().get().and_then(Result::err));
    let field =
        move |name: &'static str| Signal::derive(move || error.get().and_then(|e| e.field_message(name)));
    let register_href = move || {
        let next = next();
        if next.is_empty() {
            "/register".to_string()
        } else {
            format!("/register?next={}", encode_component(&next))
        }
    };

    view! {
        <Title text="Sign in"/>
        <section class="card narrow" aria-labelledby="login-title">
            <h1 id="login-title">"Sign in"</h1>
            {move || expired().then(|| view! {
                <p class="notice" role="status" data-testid="session-ended">
                    "Your session ended. Please sign in again."
                </p>
            })}
            {move || signout_pending().then(|| view! {
                <p class="notice" role="status" data-testid="signout-pending">
                    "You are signed out on this device. The sign-in service could not be reached to \
                     end your sign-in everywhere; Tokenless keeps trying in the background."
                </p>
            })}
            {move || signout_unconfirmed().then(|| view! {
                <p class="notice" role="status" data-testid="signout-unconfirmed">
                    "You are signed out on this device, but the sign-in service did not confirm \
                     that your sign-in ended everywhere."
                </p>
            })}
            {move || provider_refusal().map(|text| view! {
                <p class="notice" role="status" data-testid="provider-refusal">{text}</p>
            })}
            <Suspense fallback=|| ()>
                {move || provider.get().and_then(Result::ok).flatten().map(|name| view! {
                    // A full page load to the provider (rel="external": not the client router).
                    <a class="button" rel="external" href=provider_href data-testid="provider-sign-in">
                        {format!("Continue with {name}")}
                    </a>
                })}
                <ActionForm action=action attr:class="form" attr:data-testid="login-form" attr:hidden=at_provider>
                    <input type="hidden" name="next" value=next/>
                    <Field name="email" label="Email" kind="email" autocomplete="username"
                        error=field("email") autofocus=true maxlength=254 value=remembered("login", "email")/>
                    <Field name="password" label="Password" kind="password" autocomplete="current-password"
                        error=field("password") maxlength=128/>
                    <FormError error=error/>
                    <button type="submit" data-pending="Signing in…">"Sign in"</button>
                </ActionForm>
                <p class="aside" hidden=at_provider>"No account yet? " <A href=register_href>"Register"</A></p>
                <details class="demo-users" hidden=at_provider>
                    <summary>"Demo accounts"</summary>
                    <p>"user@example.com / frogs-are-green · admin@example.com / admin-frogs-rule"</p>
                </details>
            </Suspense>
        </section>
    }
}
