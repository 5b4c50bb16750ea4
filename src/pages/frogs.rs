//! `/frogs` (signed in only): the upstream's frogs, fetched and rendered on the server.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::list_frogs;
use crate::app::login_href;
use crate::components::PageError;
use crate::islands::{mark_hydrated, IslandScripts};
use crate::passthrough_client::{croak, CallError};

#[component]
pub fn FrogsPage() -> impl IntoView {
    let frogs = Resource::new(|| (), |_| list_frogs());
    view! {
        <Title text="Frogs"/>
        <Suspense fallback=|| view! { <p class="loading">"Fetching the frogs…"</p> }>
            {move || frogs.get().map(|answer| match answer {
                Ok(frogs) => view! {
                    <IslandScripts/>
                    <section aria-labelledby="frogs-title">
                        <h1 id="frogs-title">"Frogs"</h1>
                        <p class="lead">"Fetched from the upstream with your access token, which never left the server."</p>
                        <ul class="frogs" data-testid="frogs">
                            {frogs.into_iter().map(|f| view! {
                                <li class="frog card">
                                    <img src=f.picture alt=format!("Drawing of {}", f.name) width="96" height="96"/>
                                    <h2>{f.name.clone()}</h2>
                                    <p>{f.species}</p>
                                    <p class="hint">{f.habitat}</p>
                                    <CroakButton id=f.id name=f.name.clone()/>
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

/// Asks the upstream to record a croak, from the browser through the passthrough (no server
/// function written for it). An island: works once it has hydrated. Its props are written
/// into the page: nothing but the frog's id and name.
#[island]
fn CroakButton(id: u32, name: String) -> impl IntoView {
    mark_hydrated();
    let croaks = RwSignal::new(None::<u64>);
    let problem = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);
    let on_click = move |_| {
        if pending.get_untracked() {
            return;
        }
        pending.set(true);
        problem.set(None);
        leptos::task::spawn_local(async move {
            match croak(id).await {
                Ok(answer) => croaks.set(Some(answer.croaks)),
                Err(CallError::SignIn { expired }) => {
                    // A full page load: the router does not run in the browser.
                    let _ = window().location().set_href(&login_href("/frogs", expired));
                }
                Err(CallError::Message(m)) => problem.set(Some(m)),
            }
            pending.set(false);
        });
    };
    view! {
        <p class="croak">
            <button type="button" class="secondary" data-testid=format!("croak-{id}")
                aria-label=format!("Croak with {name}") disabled=move || pending.get() on:click=on_click>
                {move || if pending.get() { "Croaking…" } else { "Croak" }}
            </button>
            <span role="status" data-testid=format!("croaks-{id}")>
                {move || croaks.get().map(|n| if n == 1 { "1 croak".to_string() } else { format!("{n} croaks") })}
            </span>
            {move || problem.get().map(|m| view! { <span class="error" role="alert">{m}</span> })}
        </p>
    }
}
