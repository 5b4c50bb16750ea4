//! `/frogs` (signed in only): the upstream's frogs, fetched and rendered on the server.

use leptos::prelude::*;
use leptos::web_sys::Element;
use leptos_meta::Title;

use crate::api::list_frogs;
use crate::app::login_href;
use crate::browser::{clear_problem, clicked, set_busy, show_problem};
use crate::components::PageError;
use crate::islands::IslandScripts;
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
                        <CroakButtons>
                            <ul class="frogs" data-testid="frogs">
                                {frogs.into_iter().map(|f| view! {
                                    <li>
                                        <img src=f.picture alt=format!("Drawing of {}", f.name)/>
                                        <h2>{f.name.clone()}</h2>
                                        <p>{f.species}</p>
                                        <p>{f.habitat}</p>
                                        <CroakControls id=f.id name=f.name/>
                                    </li>
                                }).collect_view()}
                            </ul>
                        </CroakButtons>
                    </section>
                }.into_any(),
                Err(e) => view! { <PageError error=e/> }.into_any(),
            })}
        </Suspense>
    }
}

/// A frog's croak button and where its count shows, as plain HTML: the server renders them, and
/// [`CroakButtons`] around the list makes every one of them work in the browser. The button
/// says which frog it is for in `data-frog` (tests find it there too).
///
/// The list's items carry no class, size or test id of their own: `/frogs`'s HTML goes out
/// uncompressed, so what eight cards repeat counts (the stylesheet styles `.frogs li`).
#[component]
fn CroakControls(id: u32, name: String) -> impl IntoView {
    view! {
        <p class="croak">
            <button type="button" data-frog=id aria-label=format!("Croak with {name}")>"Croak"</button>
            <span role="status"></span>
        </p>
    }
}

/// Makes the croak buttons in its children work: a click asks the upstream to record a croak,
/// from the browser through the passthrough (no server function written for it). One island
/// for the whole list, its children rendered on the server as plain HTML.
///
/// It used to be one island per button (state in a signal, the frog given through context),
/// and the eight islands were 44 % of the server's work for the page: 506,000 of its 1,155,600
/// instructions per request (`bash bench/instructions.sh`, BENCHMARKS.md), an owner, a
/// hydration scope, a signal and four reactive closures per button, each view moved through
/// the async render several times. The browser's part is small enough to write against the
/// DOM: one click handler for the list (the button clicked is the closest
/// `button[data-frog]`), and the state a button shows is the button itself (disabled while its
/// croak is on its way, which also makes a second press send nothing).
///
/// It takes no props but its children, which stay server HTML: nothing about the page's data
/// is serialized for the island, and the client carries no serde_json to read props.
#[island]
fn CroakButtons(children: Children) -> impl IntoView {
    view! { <div class="croak-buttons" on:click=croak_clicked>{children()}</div> }
}

/// Which croak button a click in the list was on, if any.
fn croak_clicked(ev: leptos::ev::MouseEvent) {
    if let Some(button) = clicked(&ev, "button[data-frog]") {
        croak_with(button);
    }
}

/// The text a button's count shows.
fn croaks_text(n: u64) -> String {
    if n == 1 {
        "1 croak".to_string()
    } else {
        format!("{n} croaks")
    }
}

/// Sends `button`'s croak and shows what came back next to it.
fn croak_with(button: Element) {
    if button.has_attribute("disabled") {
        // Its croak is on its way.
        return;
    }
    // The button's row (`p.croak`): its count and its problem go there.
    let Some(controls) = button.closest(".croak").ok().flatten() else {
        return;
    };
    clear_problem(&controls);
    let Some(id) = button.get_attribute("data-frog").and_then(|id| id.parse::<u32>().ok()) else {
        show_problem(&controls, "This button does not say which frog it is for.");
        return;
    };
    set_busy(&button, true, "Croaking…");
    leptos::task::spawn_local(async move {
        let answer = croak(id).await;
        if let Err(CallError::SignIn { expired }) = &answer {
            // A full page load (the router does not run in the browser); the button stays
            // disabled while the page changes, so a press meanwhile sends nothing.
            let _ = window().location().set_href(&login_href("/frogs", *expired));
            return;
        }
        set_busy(&button, false, "Croak");
        match answer {
            Ok(answer) => {
                if let Ok(Some(status)) = controls.query_selector("[role=status]") {
                    status.set_text_content(Some(&croaks_text(answer.croaks)));
                }
            }
            Err(CallError::Message(m)) => show_problem(&controls, &m),
            Err(CallError::SignIn { .. }) => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::croaks_text;

    #[test]
    fn counts_read_as_words() {
        assert_eq!(croaks_text(0), "0 croaks");
        assert_eq!(croaks_text(1), "1 croak");
        assert_eq!(croaks_text(2), "2 croaks");
    }
}
