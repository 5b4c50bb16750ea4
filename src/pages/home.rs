//! The home page: server-rendered content and two islands, the server status (asked again
//! with a server function) and a counter that only works once the wasm client has hydrated.

use leptos::context::Provider;
use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{server_status, StatusReport};
use crate::islands::{mark_hydrated, IslandScripts};

#[component]
pub fn HomePage() -> impl IntoView {
    // Asked while the page renders on the server. Outside any island: not written into the page.
    let status = Resource::new(|| (), |_| server_status());
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
            <Suspense fallback=|| view! { <p>"Asking the server…"</p> }>
                {move || status.get().map(|answer| match answer {
                    Ok(report) => view! { <Provider value=report><ServerStatus/></Provider> }.into_any(),
                    Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                })}
            </Suspense>
        </section>

        <section class="card" aria-labelledby="counter-title">
            <h2 id="counter-title">"This page is alive"</h2>
            <p>"The button below only counts once the client has hydrated."</p>
            <Counter/>
        </section>
    }
}

/// The server's status, asked again from the browser with a server function.
///
/// Like the croak button it takes no props (they would be JSON, read with serde_json in the
/// browser), and it holds no resource (Leptos's resources and `<Transition>` were a third of
/// the client). On the server it renders the answer the page got (`StatusReport` from context).
/// In the browser it starts without one: hydration keeps the text the server rendered, and the
/// island writes only answers it asked for itself.
#[island]
fn ServerStatus() -> impl IntoView {
    mark_hydrated();
    let report = RwSignal::new(use_context::<StatusReport>());
    let problem = RwSignal::new(None::<String>);
    let pending = RwSignal::new(false);
    let ask = move |_| {
        if pending.get_untracked() {
            return;
        }
        pending.set(true);
        leptos::task::spawn_local(async move {
            match server_status().await {
                Ok(answer) => {
                    report.set(Some(answer));
                    problem.set(None);
                }
                Err(e) => problem.set(Some(e.to_string())),
            }
            pending.set(false);
        });
    };
    // One fact of the report, as text; empty in the browser until it asks.
    let fact = move |show: fn(&StatusReport) -> String| move || report.with(|r| r.as_ref().map(show).unwrap_or_default());
    view! {
        <dl class="facts" data-testid="server-status">
            <dt>"Version"</dt><dd>{fact(|r| r.version.clone())}</dd>
            <dt>"Upstream"</dt><dd data-testid="upstream">{fact(|r| r.upstream.clone())}</dd>
            <dt>"Server clock"</dt>
            <dd data-testid="answered-at">{fact(|r| format!("{} ms since 1970", r.answered_at_ms))}</dd>
        </dl>
        {move || problem.get().map(|m| view! { <p class="error" role="alert">{m}</p> })}
        <button type="button" data-testid="ask-server" disabled=move || pending.get() on:click=ask>
            {move || if pending.get() { "Asking the server…" } else { "Ask the server again" }}
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
