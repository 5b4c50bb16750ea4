//! The home page: server-rendered content and two islands, the server status (asked again
//! with a server function) and a counter that only works once the wasm client has hydrated.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::server_status;
use crate::islands::{mark_hydrated, IslandScripts};

#[component]
pub fn HomePage() -> impl IntoView {
    view! {
        <Title text=""/>
        <IslandScripts/>
        <section class="hero">
            <h1>"Sign in without handing your browser a token"</h1>
            <p class="lead">
                "Tokenless renders every page on the server, keeps the upstream API's tokens there, "
                "and gives your browser nothing but a sealed, HttpOnly cookie."
            </p>
        </section>

        <section class="card" aria-labelledby="status-title">
            <h2 id="status-title">"Server status"</h2>
            <ServerStatus/>
        </section>

        <section class="card" aria-labelledby="counter-title">
            <h2 id="counter-title">"This page is alive"</h2>
            <p>"The button below only counts once the client has hydrated."</p>
            <Counter/>
        </section>
    }
}

/// The server's status, rendered on the server and asked again from the browser with a server
/// function.
#[island]
fn ServerStatus() -> impl IntoView {
    mark_hydrated();
    let asked = RwSignal::new(0u32);
    let status = Resource::new(move || asked.get(), |_| server_status());
    view! {
        <Transition fallback=|| view! { <p>"Asking the server…"</p> }>
            {move || status.get().map(|answer| match answer {
                Ok(s) => view! {
                    <dl class="facts" data-testid="server-status">
                        <dt>"Version"</dt><dd>{s.version}</dd>
                        <dt>"Upstream"</dt><dd data-testid="upstream">{s.upstream}</dd>
                        <dt>"Server clock"</dt>
                        <dd data-testid="answered-at">{format!("{} ms since 1970", s.answered_at_ms)}</dd>
                    </dl>
                }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
        <button type="button" data-testid="ask-server" on:click=move |_| asked.update(|n| *n += 1)>
            "Ask the server again"
        </button>
    }
}

/// Counts clicks: works only once the island has hydrated.
#[island]
fn Counter() -> impl IntoView {
    mark_hydrated();
    let clicks = RwSignal::new(0u32);
    view! {
        <button type="button" data-testid="counter" on:click=move |_| clicks.update(|n| *n += 1)>
            {move || match clicks.get() {
                1 => "Clicked 1 time".to_string(),
                n => format!("Clicked {n} times"),
            }}
        </button>
    }
}
