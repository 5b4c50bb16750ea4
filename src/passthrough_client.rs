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
    let answer = imp::post(&format!("/api/upstream/frogs/{id}/croaks")).await?;
    croaked(answer.number("id"), answer.number("croaks"))
}

/// The upstream's answer to a croak, from the numbers its JSON held: whole, not negative, and
/// within what a JSON number carries exactly.
fn croaked(id: Option<f64>, croaks: Option<f64>) -> Result<Croaked, CallError> {
    fn whole(n: Option<f64>, max: f64) -> Option<f64> {
        n.filter(|n| n.fract() == 0.0 && (0.0..=max).contains(n))
    }
    match (whole(id, u32::MAX as f64), whole(croaks, 9_007_199_254_740_991.0)) {
        // Both are whole and in range: the casts are exact.
        (Some(id), Some(croaks)) => Ok(Croaked { id: id as u32, croaks: croaks as u64 }),
        _ => Err(CallError::Message("The answer could not be read.".into())),
    }
}

/// The BFF's error body (`tokenless_bff::passthrough::PassthroughError`).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Debug)]
struct ErrorBody {
    error: String,
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

/// The browser's `fetch`, and answers read with its own JSON parser: no JSON decoder in the wasm.
#[cfg(feature = "hydrate")]
mod imp {
    use js_sys::Reflect;
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{Headers, Request, RequestInit, Response};

    use super::{call_error, CallError, ErrorBody};

    /// A JSON answer, as the browser parsed it.
    pub struct Answer(JsValue);

    impl Answer {
        fn field(&self, key: &str) -> Option<JsValue> {
            Reflect::get(&self.0, &JsValue::from_str(key)).ok()
        }

        pub fn number(&self, key: &str) -> Option<f64> {
            self.field(key)?.as_f64()
        }

        fn string(&self, key: &str) -> Option<String> {
            self.field(key)?.as_string()
        }
    }

    fn unreachable() -> CallError {
        CallError::Message("The server could not be reached. Check your connection.".into())
    }

    async fn send(url: &str) -> Result<Response, CallError> {
        let headers = Headers::new().map_err(|_| unreachable())?;
        headers.set("x-csrf", "1").map_err(|_| unreachable())?;
        headers.set("accept", "application/json").map_err(|_| unreachable())?;
        let init = RequestInit::new();
        init.set_method("POST");
        init.set_headers(&headers);
        let request = Request::new_with_str_and_init(url, &init).map_err(|_| unreachable())?;
        let window = web_sys::window().ok_or_else(unreachable)?;
        let response = JsFuture::from(window.fetch_with_request(&request)).await.map_err(|_| unreachable())?;
        response.dyn_into::<Response>().map_err(|_| unreachable())
    }

    /// The body parsed as JSON; `None` when it is not JSON (or not an object with fields).
    async fn json(response: &Response) -> Option<Answer> {
        let value = JsFuture::from(response.json().ok()?).await.ok()?;
        value.is_object().then_some(Answer(value))
    }

    pub async fn post(url: &str) -> Result<Answer, CallError> {
        let mut response = send(url).await?;
        let mut resent = false;
        loop {
            if response.ok() {
                return json(&response)
                    .await
                    .ok_or_else(|| CallError::Message("The answer could not be read.".into()));
            }
            let status = response.status();
            let body = json(&response).await.and_then(|answer| {
                Some(ErrorBody { error: answer.string("error")?, message: answer.string("message").unwrap_or_default() })
            });
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

    pub struct Answer;

    impl Answer {
        pub fn number(&self, _key: &str) -> Option<f64> {
            None
        }
    }

    pub async fn post(_url: &str) -> Result<Answer, CallError> {
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

    #[test]
    fn a_croak_answer_is_whole_numbers_in_range_or_unreadable() {
        assert_eq!(croaked(Some(3.0), Some(12.0)), Ok(Croaked { id: 3, croaks: 12 }));
        assert_eq!(croaked(Some(0.0), Some(9_007_199_254_740_991.0)).unwrap().croaks, 9_007_199_254_740_991);
        let unreadable = Err(CallError::Message("The answer could not be read.".into()));
        for (id, croaks) in [
            (None, Some(1.0)),
            (Some(1.0), None),
            (Some(1.5), Some(1.0)),
            (Some(1.0), Some(-1.0)),
            (Some(f64::NAN), Some(1.0)),
            (Some(1.0), Some(f64::INFINITY)),
            (Some(4_294_967_296.0), Some(1.0)),
            (Some(1.0), Some(9_007_199_254_740_992.0)),
        ] {
            assert_eq!(croaked(id, croaks), unreadable, "{id:?} {croaks:?}");
        }
    }
}
