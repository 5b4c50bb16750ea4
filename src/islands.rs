//! What a page ships to the browser. Pages render on the server as plain HTML; only their
//! `#[island]` components hydrate, and only the pages holding one render the islands' loader,
//! so the others download no wasm at all.

use leptos::prelude::*;

/// Renders what follows as plain HTML: no hydration markers, no resource answers serialized
/// into the page. Called by the shell; an island turns hydration back on for its own subtree.
pub fn render_without_hydration() {
    if let Some(context) = Owner::current_shared_context() {
        context.set_is_hydrating(false);
    }
}

/// The islands' loader: preloads the wasm and its JS glue, then hydrates every island of the
/// page. Rendered by the pages that hold islands, never by the shell: the loader fetches the
/// wasm wherever it is.
#[component]
pub fn IslandScripts() -> impl IntoView {
    use_context::<LeptosOptions>().map(|options| view! { <HydrationScripts options islands=true/> })
}

/// Sets `data-hydrated="true"` on `<html>` once the wasm client has taken over an island.
/// Effects never run on the server, so the attribute is a reliable, testable sign that the
/// page's interactive parts work. Every island calls it.
pub fn mark_hydrated() {
    Effect::new(move |_| {
        if let Some(root) = document().document_element() {
            // Failing to set an attribute is not worth a panic in the browser.
            let _ = root.set_attribute("data-hydrated", "true");
        }
    });
}
