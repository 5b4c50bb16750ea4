//! The HTML shell, the router and the layout shared by the server render and the hydrated client.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::StaticSegment;

use crate::pages::{home::HomePage, not_found::NotFound};

/// The document around the app; rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    mark_hydrated();

    view! {
        <Stylesheet id="leptos" href="/pkg/tokenless.css"/>
        <Title formatter=|page: String| {
            if page.is_empty() { "Tokenless".to_string() } else { format!("{page} · Tokenless") }
        }/>
        <Router>
            <header class="site-header">
                <A href="/" attr:class="brand">"Tokenless"</A>
                <nav aria-label="Main"></nav>
            </header>
            <main id="main">
                <Routes fallback=NotFound>
                    <Route path=StaticSegment("") view=HomePage/>
                </Routes>
            </main>
            <footer class="site-footer">
                <p>"Tokens stay on the server. Your browser holds only an encrypted, HttpOnly cookie."</p>
            </footer>
        </Router>
    }
}

/// Sets `data-hydrated="true"` on `<html>` once the wasm client has taken over the page.
/// Effects never run on the server, so the attribute is a reliable, testable sign of hydration.
fn mark_hydrated() {
    Effect::new(move |_| {
        if let Some(root) = document().document_element() {
            // Failing to set an attribute is not worth a panic in the browser.
            let _ = root.set_attribute("data-hydrated", "true");
        }
    });
}
