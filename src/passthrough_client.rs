//! Calls the upstream through the BFF's passthrough (`/api/upstream/...`) from the hydrated
//! client: the `X-CSRF: 1` header on every call, one resend when the BFF says the token was
//! renewed (`retry`), and the answers a page acts on. No token is ever seen here: the browser
//! sends its HttpOnly cookie, the server attaches the token.

use serde::{Deserialize, Serialize};

/// The upstream's answer to a croak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Croaked {
    pub id: u32,
    pub croaks: u64,
}

/// Why a passthrough call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Signed out, or the session ended: go to sign in.
    SignIn { expired: bool },
    /// Something to show the person.
    Message(String),
}

/// `POST /frogs/{id}/croaks` through the passthrough.
pub async fn croak(id: u32) -> Result<Croaked, CallError> {
    imp::post_json(&format!("/api/upstream/frogs/{id}/croaks")).await
}

/// The BFF's error body (`tokenless_bff::passthrough::PassthroughError`).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    message: String,
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn call_error(status: u16, body: Option<ErrorBody>) -> CallError {
    match (status, body) {
        (401, Some(b)) if b.error == "session_expired" => CallError::SignIn { expired: true },
        (401, _) => CallError::SignIn { expired: false },
        (503, _) => {
            CallError::Message("The service is unavailable right now. Please try again in a moment.".into())
        }
        (_, Some(b)) if !b.message.is_empty() => CallError::Message(format!("{} ({})", b.message, status)),
        _ => CallError::Message(format!("The call failed ({status}).")),
    }
}

#[cfg(feature = "hydrate")]
mod imp {
    use super::{call_error, CallError, ErrorBody};
    use gloo_net::http::{Request, Response};
    use serde::de::DeserializeOwned;

    async fn send(url: &str) -> Result<Response, CallError> {
        Request::post(url)
            .header("x-csrf", "1")
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|_| CallError::Message("The server could not be reached. Check your connection.".into()))
    }

    pub async fn post_json<T: DeserializeOwned>(url: &str) -> Result<T, CallError> {
        let mut response = send(url).await?;
        let mut resent = false;
        loop {
            if response.ok() {
                return response
                    .json::<T>()
                    .await
                    .map_err(|_| CallError::Message("The answer could not be read.".into()));
            }
            let status = response.status();
            let body = response.json::<ErrorBody>().await.ok();
            // The BFF renewed the token after the upstream refused a non-idempotent call:
            // the call did not happen, so sending it once more is safe.
            if status == 401 && !resent && body.as_ref().is_some_and(|b| b.error == "retry") {
                resent = true;
                response = send(url).await?;
                continue;
            }
            return Err(call_error(status, body));
        }
    }
}

/// On the server nothing calls these (they run from click handlers); they exist so that the
/// components compile on both sides.
#[cfg(not(feature = "hydrate"))]
mod imp {
    use super::CallError;
    use serde::de::DeserializeOwned;

    pub async fn post_json<T: DeserializeOwned>(_url: &str) -> Result<T, CallError> {
        Err(CallError::Message("only the browser calls the passthrough".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_what_the_page_does() {
        let body = |e: &str| Some(ErrorBody { error: e.into(), message: "m".into() });
        assert_eq!(call_error(401, body("session_expired")), CallError::SignIn { expired: true });
        assert_eq!(call_error(401, body("unauthorized")), CallError::SignIn { expired: false });
        assert!(matches!(call_error(503, None), CallError::Message(m) if m.contains("unavailable")));
        assert_eq!(call_error(404, body("not_found")), CallError::Message("m (404)".into()));
        assert_eq!(call_error(500, None), CallError::Message("The call failed (500).".into()));
    }
}
