//! The HTML shell, the router and the layout (header with the signed-in state). All of it
//! renders on the server only: the browser gets HTML, and wasm only for the islands a page
//! holds (`crate::islands`).

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, StaticSegment};

use leptos::server_fn::ServerFn;
use leptos_router::hooks::use_location;

use crate::api::{signed_in_user, Logout};
use crate::pages::{
    account::AccountPage, admin::AdminPage, frogs::FrogsPage, home::HomePage, login::LoginPage,
    not_found::NotFound, register::RegisterPage,
};

/// Pages only a signed-in person may see. The server redirects signed-out requests for them to
/// the sign-in page; their server functions, called directly, answer "unauthorized".
pub const PROTECTED: &[&str] = &["/frogs", "/admin", "/account"];

pub fn is_protected(path: &str) -> bool {
    PROTECTED.iter().any(|p| is_at_or_under(path, p))
}

/// Whether `path` is `prefix` or a path below it (`/frogs/1` is under `/frogs`, `/frogsy` not).
fn is_at_or_under(path: &str, prefix: &str) -> bool {
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// The sign-in page's `reason` after a sign-out whose revocation upstream is not confirmed yet.
pub const SIGNOUT_PENDING: &str = "signout_pending";
/// ... and after a sign-out the upstream refused to revoke (the sign-in may live on upstream).
pub const SIGNOUT_UNCONFIRMED: &str = "signout_unconfirmed";

/// `/login?next=<here>` (and `&reason=expired` when a session just ended).
pub fn login_href(next: &str, expired: bool) -> String {
    let mut href = format!("/login?next={}", encode_component(next));
    if expired {
        href.push_str("&reason=expired");
    }
    href
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The document around the app; rendered on the server only.
///
/// Nothing in it hydrates: the pages with islands render the islands' loader themselves
/// (`crate::islands::IslandScripts`), so the others ship no wasm at all.
///
/// Every page runs `/forms.js`, the pending state of Tokenless's forms (plain form posts): on
/// submit, a button with `data-pending` says what is happening and a second press sends
/// nothing. The button comes back after 15 s (a stopped or lost navigation leaves the page as it
/// was: the person can send again) and when a page is brought back from the back/forward cache.
/// Without JavaScript the forms work the same, minus this.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    crate::islands::render_without_hydration();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <AutoReload options=options.clone()/>
                <MetaTags/>
                // Pending states for plain form posts (no wasm on pages without islands).
                <script src="/forms.js" defer nonce=use_nonce()></script>
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

    view! {
        <Stylesheet id="leptos" href="/pkg/tokenless.css"/>
        <Title formatter=|page: String| {
            if page.is_empty() { "Tokenless".to_string() } else { format!("{page} · Tokenless") }
        }/>
        <Router>
            <Layout/>
        </Router>
    }
}

#[component]
fn Layout() -> impl IntoView {
    view! {
        <a class="skip" href="#main">"Skip to content"</a>
        <header class="site-header">
            <a href="/" class="brand">"Tokenless"</a>
            <Nav/>
        </header>
        <main id="main" tabindex="-1">
            <Routes fallback=NotFound>
                // Async on every page that reads the upstream: rendered whole before the headers
                // leave, so a redirect or a status decided while rendering reaches the browser,
                // and the header's signed-in state is in place for browsers without JavaScript
                // (an out-of-order stream needs a script to move late parts into place). The home
                // page streams in order (no script needed): a token refresh it needs happens in
                // the session middleware, before the first byte.
                <Route path=StaticSegment("") view=HomePage ssr=SsrMode::InOrder/>
                <Route path=StaticSegment("login") view=LoginPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("register") view=RegisterPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("frogs") view=FrogsPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("admin") view=AdminPage ssr=SsrMode::Async/>
                <Route path=StaticSegment("account") view=AccountPage ssr=SsrMode::Async/>
            </Routes>
        </main>
        <footer class="site-footer">
            <p>"Tokens stay on the server. Your browser holds only an encrypted, HttpOnly cookie."</p>
        </footer>
    }
}

#[component]
fn Nav() -> impl IntoView {
    // The header renders on the server only: who is signed in is read there, directly (no
    // resource, no suspense), the links are plain links and signing out a plain form post.
    let here = use_location().pathname.get_untracked();
    let link = move |href: &'static str, label: &'static str, class: Option<&'static str>| {
        let current = is_at_or_under(&here, href);
        view! { <a href=href class=class aria-current=current.then_some("page")>{label}</a> }
    };
    view! {
        <nav aria-label="Main">
            {match signed_in_user() {
                Some(user) => {
                    let admin = user.is_admin();
                    view! {
                        {link("/frogs", "Frogs", None)}
                        {admin.then(|| link("/admin", "Admin", None))}
                        {link("/account", "Account", None)}
                        <span class="who" data-testid="signed-in-as">{user.name}</span>
                        <form method="post" action=Logout::url() class="inline-form">
                            <button type="submit" class="secondary" data-testid="sign-out"
                                data-pending="Signing out…">"Sign out"</button>
                        </form>
                    }
                    .into_any()
                }
                None => view! {
                    {link("/login", "Sign in", None)}
                    {link("/register", "Register", Some("button"))}
                }
                .into_any(),
            }}
        </nav>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_paths() {
        for p in ["/frogs", "/frogs/", "/frogs/1", "/admin", "/account"] {
            assert!(is_protected(p), "{p}");
        }
        for p in ["/", "/login", "/frogsy", "/register", "/administrator"] {
            assert!(!is_protected(p), "{p}");
        }
    }

    #[test]
    fn login_links_encode_the_return_path() {
        assert_eq!(login_href("/frogs?a=1&b=2", false), "/login?next=%2Ffrogs%3Fa%3D1%26b%3D2");
        assert_eq!(login_href("/x", true), "/login?next=%2Fx&reason=expired");
    }
}
