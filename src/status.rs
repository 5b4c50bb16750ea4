//! Setting the HTTP status of a server-rendered page from a component. A no-op in the browser,
//! where the status was decided long ago.

/// Sets the status code of the response being rendered on the server.
#[cfg(feature = "ssr")]
pub fn set_status(code: u16) {
    use leptos::prelude::use_context;
    if let (Some(response), Ok(status)) =
        (use_context::<leptos_axum::ResponseOptions>(), axum::http::StatusCode::from_u16(code))
    {
        response.set_status(status);
    }
}

/// Sets the status code of the response being rendered on the server.
#[cfg(not(feature = "ssr"))]
pub fn set_status(_code: u16) {}
