//! `/register`: name, email and password; the upstream's field errors shown next to the
//! fields; signed in afterwards and sent on to `?next=` (or home). With an OpenID provider,
//! accounts are made there: the page says so and leads to it instead.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use crate::api::Register;
use crate::app::encode_component;
use crate::components::{remembered, Field, FormError};

#[component]
pub fn RegisterPage() -> impl IntoView {
    let action = ServerAction::<Register>::new();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let error = Signal::derive(move || action.value().get().and_then(Result::err));
    let field =
        move |name: &'static str| Signal::derive(move || error.get().and_then(|e| e.field_message(name)));
    let provider = Resource::new(|| (), |_| crate::api::sign_in_provider());
    let provider_name = move || provider.get().and_then(Result::ok).flatten();
    // Read inside the <Suspense> below, which waits for the resource's answer.
    let at_provider = move || provider_name().is_some();
    let provider_href = move || format!("/auth/login?next={}", encode_component(&next()));

    view! {
        <Title text="Register"/>
        <section class="card narrow" aria-labelledby="register-title">
            <h1 id="register-title">"Create an account"</h1>
            <Suspense fallback=|| ()>
                {move || provider_name().map(|name| view! {
                    <p data-testid="register-at-provider">{format!("Accounts are made at {name}: sign in there, new or not.")}</p>
                    // A full page load to the provider (rel="external": not the client router).
                    <a class="button" rel="external" href=provider_href>{format!("Continue with {name}")}</a>
                })}
                <ActionForm action=action attr:class="form" attr:data-testid="register-form" attr:hidden=at_provider>
                    <input type="hidden" name="next" value=next/>
                    <Field name="name" label="Name" autocomplete="name" error=field("name") autofocus=true maxlength=100
                        value=remembered("register", "name")/>
                    <Field name="email" label="Email" kind="email" autocomplete="email" error=field("email") maxlength=254
                        value=remembered("register", "email")/>
                    <Field name="password" label="Password" kind="password" autocomplete="new-password"
                        error=field("password") hint="At least 8 characters." minlength=8 maxlength=128/>
                    <FormError error=error/>
                    <button type="submit" data-pending="Creating your account…">"Create account"</button>
                </ActionForm>
                <p class="aside" hidden=at_provider>"Already registered? " <A href="/login">"Sign in"</A></p>
            </Suspense>
        </section>
    }
}
