//! `/frogs` (signed in only): the upstream's frogs, fetched and rendered on the server.

use leptos::context::Provider;
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
                                    <Provider value=CroakTarget { id: f.id, name: f.name.clone() }>
                                        <CroakButton/>
                                    </Provider>
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

/// The frog a croak button croaks with, given by the frogs page around each button.
#[derive(Debug, Clone)]
pub struct CroakTarget {
    pub id: u32,
    pub name: String,
}

/// Asks the upstream to record a croak, from the browser through the passthrough (no server
/// function written for it). An island: works once it has hydrated.
///
/// It takes no props. An island's props are written into the page as JSON and read back in the
/// browser with serde_json, the heaviest crate the client would carry, for two fields. The
/// server renders the frog (`CroakTarget`, from context) into the button's attributes;
/// hydration leaves attributes the server rendered as they are (the browser has no context to
/// give), and a click reads the frog's id back from `data-frog`. So nothing about the page's
/// data is serialized for an island at all.
#[island]
fn CroakButton() -> impl IntoView {
    mark_hydrated();
    // Some on the server; None in the browser, where the island hydrates on its own.
    let target = use_context::<CroakTarget>();
    let button = NodeRef::<leptos::html::Button>::new();
    let croaks = RwSignal::new(None::<u64>);
    let problem = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);
    let on_click = move |_| {
        if pending.get_untracked() {
            return;
        }
        let frog = button.get_untracked().and_then(|b| b.get_attribute("data-frog"));
        let Some(id) = frog.and_then(|id| id.parse::<u32>().ok()) else {
            problem.set(Some("This button does not say which frog it is for.".into()));
            return;
        };
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
    let id = target.as_ref().map(|t| t.id.to_string());
    view! {
        <p class="croak">
            <button node_ref=button type="button" class="secondary" data-frog=id.clone()
                data-testid=id.as_ref().map(|id| format!("croak-{id}"))
                aria-label=target.map(|t| format!("Croak with {}", t.name))
                disabled=move || pending.get() on:click=on_click>
                {move || if pending.get() { "Croaking…" } else { "Croak" }}
            </button>
            <span role="status" data-testid=id.map(|id| format!("croaks-{id}"))>
                {move || croaks.get().map(|n| if n == 1 { "1 croak".to_string() } else { format!("{n} croaks") })}
            </span>
            {move || problem.get().map(|m| view! { <span class="error" role="alert">{m}</span> })}
        </p>
    }
}
