//! `/account` (signed in only): the profile and when the session ends. No tokens.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::account;
use crate::components::{format_utc, PageError};

#[component]
pub fn AccountPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| account());
    view! {
        <Title text="Account"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || data.get().map(|answer| match answer {
                Ok(a) => view! {
                    <section class="card" aria-labelledby="account-title" data-testid="account">
                        <h1 id="account-title">"Your account"</h1>
                        <dl class="facts">
                            <dt>"Name"</dt><dd>{a.user.name}</dd>
                            <dt>"Email"</dt><dd data-testid="account-email">{a.user.email}</dd>
                            <dt>"Roles"</dt><dd>{a.user.roles.join(", ")}</dd>
                            <dt>"Signed in"</dt><dd>{format_utc(a.signed_in_at)}</dd>
                            <dt>"Session ends at the latest"</dt>
                            <dd data-testid="session-ends">{format_utc(a.session_ends_at)}</dd>
                        </dl>
                        <p class="hint">"Your browser holds this session as one encrypted, HttpOnly cookie. The tokens behind it stay on the server."</p>
                    </section>
                }.into_any(),
                Err(e) => view! { <PageError error=e/> }.into_any(),
            })}
        </Suspense>
    }
}
