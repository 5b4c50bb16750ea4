//! `/frogs` (signed in only): the upstream's frogs, fetched and rendered on the server.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::list_frogs;
use crate::components::PageError;

#[component]
pub fn FrogsPage() -> impl IntoView {
    let frogs = Resource::new(|| (), |_| list_frogs());
    view! {
        <Title text="Frogs"/>
        <Suspense fallback=|| view! { <p class="loading">"Fetching the frogs…"</p> }>
            {move || frogs.get().map(|answer| match answer {
                Ok(frogs) => view! {
                    <section aria-labelledby="frogs-title">
                        <h1 id="frogs-title">"Frogs"</h1>
                        <p class="lead">"Fetched from the upstream with your access token, which never left the server."</p>
                        <ul class="frogs" data-testid="frogs">
                            {frogs.into_iter().map(|f| view! {
                                <li class="frog card">
                                    <img src=f.picture alt=format!("Drawing of {}", f.name) width="96" height="96"/>
                                    <h2>{f.name}</h2>
                                    <p>{f.species}</p>
                                    <p class="hint">{f.habitat}</p>
                                </li>
                            }).collect_view()}
                        </ul>
                    </section>
                }.into_any(),
                Err(e) => view! { <PageError error=e/> }.into_any(),
            })}
        </Suspense>
    }
}
