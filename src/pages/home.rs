//! The home page: server-rendered content and two islands, the server status (asked again
//! with a server function) and a counter that only works once the wasm client has hydrated.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::web_sys::Element;
use leptos_meta::Title;

use crate::api::{server_status, ServerStatus as ServerStatusFn, StatusReport};
use crate::browser::{self, clear_problem, clicked, set_busy, show_problem, Json, NoAnswer};
use crate::error::StatusError;
use crate::islands::IslandScripts;

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
                    Ok(report) => view! { <ServerStatus><StatusFacts report/></ServerStatus> }.into_any(),
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

/// What the server said of itself: rendered on the server, inside the [`ServerStatus`] island's
/// children (plain HTML), where the island writes the answers it asks for.
#[component]
fn StatusFacts(report: StatusReport) -> impl IntoView {
    view! {
        <dl class="facts" data-testid="server-status">
            <dt>"Version"</dt><dd data-fact="version">{report.version}</dd>
            <dt>"Upstream"</dt><dd data-fact="upstream">{report.upstream}</dd>
            <dt>"Server clock"</dt><dd data-fact="answered-at">{answered_at_text(report.answered_at_ms)}</dd>
        </dl>
    }
}

fn answered_at_text(ms: u64) -> String {
    format!("{ms} ms since 1970")
}

/// Asks the server for its status again, from the browser: a `POST` to the `server_status`
/// server function, its JSON answer read with the browser's own parser, the facts written into
/// its children.
///
/// Its children (the facts, [`StatusFacts`]) stay server HTML, and it takes no props: nothing
/// is serialized for the island. Its state is the button (disabled while the call is on its
/// way, so a second press sends nothing); a failure shows next to the button and the next
/// press clears it.
#[island]
fn ServerStatus(children: Children) -> impl IntoView {
    view! {
        <div class="server-status">
            {children()}
            <button type="button" data-testid="ask-server" on:click=ask_clicked>"Ask the server again"</button>
        </div>
    }
}

fn ask_clicked(ev: leptos::ev::MouseEvent) {
    let Some(button) = clicked(&ev, "button") else {
        return;
    };
    let Some(island) = button.closest(".server-status").ok().flatten() else {
        return;
    };
    // Browsers send no click to a disabled button; a click dispatched by a script still comes.
    if button.has_attribute("disabled") {
        return;
    }
    clear_problem(&island);
    set_busy(&button, true, "Asking the server…");
    leptos::task::spawn_local(async move {
        let answer = browser::post(ServerStatusFn::PATH, &[]).await;
        set_busy(&button, false, "Ask the server again");
        let problem = match answer {
            Ok(answer) if answer.ok() => {
                if answer.body.as_ref().and_then(read_report).is_some_and(|facts| show_facts(&island, facts))
                {
                    return;
                }
                StatusError::Failed
            }
            Ok(_) | Err(NoAnswer::Unsendable) => StatusError::Failed,
            Err(NoAnswer::Unreachable) => StatusError::Unreachable,
        };
        show_problem(&island, &problem.to_string());
    });
}

/// The facts of a `StatusReport` as the browser parsed it, each with the selector of its place
/// (`dd[data-fact]`, [`StatusFacts`]); `None` if one is missing or not what it should be.
fn read_report(body: &Json) -> Option<[(&'static str, String); 3]> {
    Some([
        ("[data-fact=version]", body.string("version")?),
        ("[data-fact=upstream]", body.string("upstream")?),
        ("[data-fact=answered-at]", answered_at_text(body.whole("answered_at_ms", u64::MAX)?)),
    ])
}

/// Writes the facts into the island's `dd[data-fact]`s: all of them, or none when one of those
/// is missing from the page (then `false`).
fn show_facts(island: &Element, facts: [(&'static str, String); 3]) -> bool {
    let places: Vec<_> =
        facts.iter().filter_map(|(place, _)| island.query_selector(place).ok().flatten()).collect();
    if places.len() != facts.len() {
        return false;
    }
    for (place, (_, text)) in places.iter().zip(facts) {
        place.set_text_content(Some(&text));
    }
    true
}

/// The counter's text after `n` clicks.
fn clicks_text(n: u32) -> String {
    match n {
        1 => "Clicked 1 time".to_string(),
        n => format!("Clicked {n} times"),
    }
}

/// Counts clicks: works only once the island has hydrated. The count is the button's
/// `data-clicks`.
#[island]
fn Counter() -> impl IntoView {
    view! {
        <button type="button" data-testid="counter" data-clicks="0" on:click=count_click>{clicks_text(0)}</button>
    }
}

fn count_click(ev: leptos::ev::MouseEvent) {
    let Some(button) = clicked(&ev, "button") else {
        return;
    };
    let clicks = button
        .get_attribute("data-clicks")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0)
        .saturating_add(1);
    let _ = button.set_attribute("data-clicks", &clicks.to_string());
    button.set_text_content(Some(&clicks_text(clicks)));
}

#[cfg(test)]
mod tests {
    use super::{answered_at_text, clicks_text};

    #[test]
    fn counts_and_times_read_as_words() {
        assert_eq!(clicks_text(0), "Clicked 0 times");
        assert_eq!(clicks_text(1), "Clicked 1 time");
        assert_eq!(clicks_text(2), "Clicked 2 times");
        assert_eq!(answered_at_text(1_700_000_000_000), "1700000000000 ms since 1970");
    }
}
