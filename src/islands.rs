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

/// The islands' loader: preloads the wasm client and its JS glue, and runs `/islands.js`, which
/// hydrates every island of the page as soon as the client is ready. Rendered by the pages that
/// hold islands, never by the shell: the loader fetches the wasm wherever it is.
///
/// Leptos's `<HydrationScripts islands=true/>` does the same but starts only once the browser is
/// idle, which on `/frogs` left the croak buttons dead for a few hundred milliseconds after the
/// page was drawn. The file names are the ones Leptos's loader uses (Tokenless builds without
/// cargo-leptos's file hashing).
///
/// `/islands.js` imports the JS glue the preload link names, instantiates the wasm, and
/// hydrates the islands in document order. An island inside another island's server-rendered
/// children (`<leptos-children>`) hydrates after its parent, under the owner its parent left on
/// that element, as Leptos's loader does. Once every island has hydrated, `<html>` gets
/// `data-hydrated="true"`: the sign, for tests and benchmarks, that the page's interactive parts
/// work. An island the client does not have (a client from another build than the server's: an
/// island's name is a hash of its source) is an error in the console, and the page is never
/// marked.
#[component]
pub fn IslandScripts() -> impl IntoView {
    use_context::<ClientFiles>().map(|client| {
        view! {
            <link rel="modulepreload" href=client.glue data-islands=""/>
            <link rel="preload" href=client.wasm r#as="fetch" r#type="application/wasm"
                crossorigin="anonymous" data-islands=""/>
            <script type="module" src="/islands.js" nonce=use_nonce()></script>
        }
    })
}

/// Where the wasm client and its JS glue are served. The server makes it once and provides it
/// to every render, for `IslandScripts`.
#[derive(Clone, Debug)]
pub struct ClientFiles {
    pub glue: std::sync::Arc<str>,
    pub wasm: std::sync::Arc<str>,
}

impl ClientFiles {
    pub fn new(options: &LeptosOptions) -> Self {
        let client = format!("/{}/{}", options.site_pkg_dir, options.output_name);
        // cargo-leptos (and .cargo/config.toml) set LEPTOS_OUTPUT_NAME; wasm-bindgen's own
        // name for the wasm is used only without it, as Leptos does.
        let wasm_suffix = if option_env!("LEPTOS_OUTPUT_NAME").is_some() { "" } else { "_bg" };
        ClientFiles { glue: format!("{client}.js").into(), wasm: format!("{client}{wasm_suffix}.wasm").into() }
    }
}
