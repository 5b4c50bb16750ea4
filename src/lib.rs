//! Tokenless: the app crate. Shared code (components, pages, server-function declarations,
//! DTOs) compiles for both the server and the wasm client, where only the `#[island]`
//! components run (`islands`); `server` is the server-only tree.

pub mod api;
pub mod app;
pub mod browser;
pub mod components;
pub mod error;
pub mod islands;
pub mod pages;
pub mod passthrough_client;
pub mod status;

#[cfg(feature = "ssr")]
pub mod server;

/// The wasm client's entry: hydrate the islands of the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    // A panic's message, in the console; the wasm trap that follows shows where. Not
    // console_error_panic_hook, which also captures a JS stack: about 400 bytes more of the
    // client (BENCHMARKS.md, "Client size").
    std::panic::set_hook(Box::new(|panic| web_sys::console::error_1(&panic.to_string().into())));
    leptos::mount::hydrate_islands();
}
