//! `/admin` (role admin): the upstream's statistics. Signed-in people without the role get a
//! 403 page, not a redirect.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::admin_stats;
use crate::components::PageError;

#[component]
pub fn AdminPage() -> impl IntoView {
    let stats = Resource::new(|| (), |_| admin_stats());
    view! {
        <Title text="Admin"/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || stats.get().map(|answer| match answer {
                Ok(s) => view! {
                    <section class="card" aria-labelledby="admin-title" data-testid="admin-stats">
                        <h1 id="admin-title">"Admin"</h1>
                        <dl class="facts">
                            <dt>"Users"</dt><dd>{s.users}</dd>
                            <dt>"Active sessions"</dt><dd>{s.active_sessions}</dd>
                            <dt>"Refresh grants"</dt><dd>{s.refresh_grants}</dd>
                            <dt>"Refresh-token reuse events"</dt><dd>{s.reuse_events}</dd>
                        </dl>
                    </section>
                }.into_any(),
                Err(e) => view! { <PageError error=e/> }.into_any(),
            })}
        </Suspense>
    }
}
