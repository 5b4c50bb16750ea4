//! `/frogs` (signed in only): the upstream's frogs, fetched and rendered on the server.

use leptos::context::Provider;
use leptos::prelude::*;
use leptos::wasm_bindgen::JsCast;
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
    // One signal for the button's state: the server renders eight of these per page.
    let state = RwSignal::new(Croaking::default());
    let on_click = move |ev: leptos::ev::MouseEvent| {
        if state.with_untracked(|s| s.pending) {
            return;
        }
        // The element clicked, then the button holding it (`currentTarget` would be the document
        // if Leptos delegated events).
        let frog = ev
            .target()
            .and_then(|clicked| clicked.dyn_into::<leptos::web_sys::Element>().ok())
            .and_then(|clicked| clicked.closest("[data-frog]").ok().flatten())
            .and_then(|button| button.get_attribute("data-frog"));
        let Some(id) = frog.and_then(|id| id.parse::<u32>().ok()) else {
            state.update(|s| s.problem = Some("This button does not say which frog it is for.".into()));
            return;
        };
        state.update(|s| {
            s.pending = true;
            s.problem = None;
        });
        leptos::task::spawn_local(async move {
            let answer = croak(id).await;
            if let Err(CallError::SignIn { expired }) = answer {
                // A full page load: the router does not run in the browser.
                let _ = window().location().set_href(&login_href("/frogs", expired));
            }
            state.update(|s| {
                s.pending = false;
                match answer {
                    Ok(answer) => s.croaks = Some(answer.croaks),
                    Err(CallError::Message(m)) => s.problem = Some(m),
                    Err(CallError::SignIn { .. }) => {}
                }
            });
        });
    };
    let id = target.as_ref().map(|t| t.id.to_string());
    view! {
        <p class="croak">
            <button type="button" class="secondary" data-frog=id.clone()
                data-testid=id.as_ref().map(|id| format!("croak-{id}"))
                aria-label=target.map(|t| format!("Croak with {}", t.name))
                disabled=move || state.with(|s| s.pending) on:click=on_click>
                {move || if state.with(|s| s.pending) { "Croaking…" } else { "Croak" }}
            </button>
            <span role="status" data-testid=id.map(|id| format!("croaks-{id}"))>
                {move || state.with(|s| s.croaks).map(|n| if n == 1 { "1 croak".to_string() } else { format!("{n} croaks") })}
            </span>
            {move || state.with(|s| s.problem.clone()).map(|m| view! { <span class="error" role="alert">{m}</span> })}
        </p>
    }
}

/// What a croak button shows: its frog's count once croaked, a problem, whether a croak is on
/// its way.
#[derive(Debug, Clone, Default)]
struct Croaking {
    croaks: Option<u64>,
    problem: Option<String>,
    pending: bool,
}
