//! `/register`: name, email and password; the upstream's field errors shown next to the
//! fields; signed in afterwards and sent on to `?next=` (or home).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use crate::api::Register;
use crate::app::use_auth;
use crate::components::{remembered, Field, FormError};

#[component]
pub fn RegisterPage() -> impl IntoView {
    let auth = use_auth();
    let action = ServerAction::<Register>::new();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    Effect::new(move |_| {
        if let Some(Ok(())) = action.value().get() {
            auth.signed_in_again();
        }
    });
    let error = Signal::derive(move || action.value().get().and_then(Result::err));
    let field =
        move |name: &'static str| Signal::derive(move || error.get().and_then(|e| e.field_message(name)));

    view! {
        <Title text="Register"/>
        <section class="card narrow" aria-labelledby="register-title">
            <h1 id="register-title">"Create an account"</h1>
            <ActionForm action=action attr:class="form" attr:data-testid="register-form">
                <input type="hidden" name="next" value=next/>
                <Field name="name" label="Name" autocomplete="name" error=field("name") autofocus=true maxlength=100
                    value=remembered("register", "name")/>
                <Field name="email" label="Email" kind="email" autocomplete="email" error=field("email") maxlength=254
                    value=remembered("register", "email")/>
                <Field name="password" label="Password" kind="password" autocomplete="new-password"
                    error=field("password") hint="At least 8 characters." minlength=8 maxlength=128/>
                <FormError error=error/>
                <button type="submit" disabled=move || action.pending().get()>
                    {move || if action.pending().get() { "Creating your account…" } else { "Create account" }}
                </button>
            </ActionForm>
            <p class="aside">"Already registered? " <A href="/login">"Sign in"</A></p>
        </section>
    }
}
