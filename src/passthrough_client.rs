//! Calls the upstream through the BFF's passthrough (`/api/upstream/...`) from the hydrated
//! client: the `X-CSRF: 1` header on every call, one resend when the BFF says the token was
//! renewed (`retry`), and the answers a page acts on. No token is ever seen here: the browser
//! sends its HttpOnly cookie, the server attaches the token.

use serde::{Deserialize, Serialize};

use crate::browser::{self, Answer, Json, NoAnswer};

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
    let answer = post(&format!("/api/upstream/frogs/{id}/croaks")).await?;
    croaked(answer.body.as_ref())
}

/// The upstream's answer to a croak: whole numbers in range, or it could not be read.
fn croaked(body: Option<&Json>) -> Result<Croaked, CallError> {
    let read = |body: &Json| {
        let id = u32::try_from(body.whole("id", u32::MAX as u64)?).ok()?;
        Some(Croaked { id, croaks: body.whole("croaks", u64::MAX)? })
    };
    body.and_then(read).ok_or_else(|| CallError::Message("The answer could not be read.".into()))
}

/// The BFF's error body (`tokenless_bff::passthrough::PassthroughError`).
#[derive(Debug)]
struct ErrorBody {
    error: String,
    message: String,
}

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

/// A passthrough `POST`: `X-CSRF: 1`, and one resend when the BFF renewed the token after the
/// upstream refused the call (`retry`: the call did not happen, so sending it again is safe).
async fn post(url: &str) -> Result<Answer, CallError> {
    let no_answer = |e| {
        CallError::Message(match e {
            NoAnswer::Unreachable => "The server could not be reached. Check your connection.".into(),
            NoAnswer::Unsendable => "The call could not be made.".into(),
        })
    };
    let mut resent = false;
    loop {
        let answer = browser::post(url, &[("x-csrf", "1")]).await.map_err(no_answer)?;
        if answer.ok() {
            return Ok(answer);
        }
        let body = answer.body.as_ref().and_then(|b| {
            Some(ErrorBody { error: b.string("error")?, message: b.string("message").unwrap_or_default() })
        });
        if answer.status == 401 && !resent && body.as_ref().is_some_and(|b| b.error == "retry") {
            resent = true;
            continue;
        }
        return Err(call_error(answer.status, body));
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

    #[test]
    fn no_json_object_is_an_answer_that_could_not_be_read() {
        // The numbers' checks are `browser::whole`'s (tested there); a body the browser could
        // not parse as an object never becomes a croak.
        assert_eq!(croaked(None), Err(CallError::Message("The answer could not be read.".into())));
    }
}
