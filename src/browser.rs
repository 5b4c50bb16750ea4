//! The islands' browser side: `fetch` read with the browser's JSON parser, busy buttons, problems.
//!
//! The islands hold no signal, effect or resource: their state is the DOM they were given (a
//! button is disabled while its call is on its way). Leptos's reactive machinery, server_fn's
//! client and serde were most of the wasm client (BENCHMARKS.md, "Client size"). On the server
//! these compile only so that islands do; their click handlers never run there.

use leptos::prelude::*;
use leptos::web_sys::Element;

/// An answer's JSON body, as the browser parsed it.
pub struct Json(imp::Value);

impl Json {
    /// A field that is a whole number from 0 to `max`, which the browser's `f64` holds exactly.
    pub fn whole(&self, key: &str, max: u64) -> Option<u64> {
        whole(imp::number(&self.0, key)?, max)
    }

    /// A field that is a string.
    pub fn string(&self, key: &str) -> Option<String> {
        imp::string(&self.0, key)
    }
}

/// `n` when it is a whole number from 0 to `max` (at most 2^53 - 1, past which an `f64` skips
/// integers).
fn whole(n: f64, max: u64) -> Option<u64> {
    const EXACT: u64 = 9_007_199_254_740_991;
    let max = max.min(EXACT) as f64;
    // NaN fails the range test; the cast of a whole number in range is exact.
    (n.fract() == 0.0 && (0.0..=max).contains(&n)).then_some(n as u64)
}

/// What came back from a `POST`: the status and the body if it was a JSON object.
pub struct Answer {
    pub status: u16,
    pub body: Option<Json>,
}

impl Answer {
    /// A 2xx status.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a `POST` got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    /// Offline, the server down, or the request refused by the browser.
    Unreachable,
    /// The browser would not build the request (a URL or header it rejects): a bug in the
    /// caller, logged to the console; people are told the call failed.
    Unsendable,
}

/// `POST url` with no body, asking for JSON, with `headers` added.
pub async fn post(url: &str, headers: &[(&str, &str)]) -> Result<Answer, NoAnswer> {
    imp::post(url, headers).await
}

/// The element matching `selector` that a click was on or in (its target or the closest
/// ancestor). Not the event's `currentTarget`, which Leptos's event delegation would not set.
pub fn clicked(ev: &leptos::ev::MouseEvent, selector: &str) -> Option<Element> {
    use leptos::wasm_bindgen::JsCast;
    let target = ev.target()?.dyn_into::<Element>().ok()?;
    target.closest(selector).ok().flatten()
}

/// Shows `message` at the end of `place`, read out by screen readers (`role=alert`), in place
/// of the one shown before.
pub fn show_problem(place: &Element, message: &str) {
    clear_problem(place);
    let Ok(problem) = document().create_element("span") else {
        return;
    };
    // Failing to set an attribute is not worth a panic in the browser.
    let _ = problem.set_attribute("class", "error");
    let _ = problem.set_attribute("role", "alert");
    problem.set_text_content(Some(message));
    let _ = place.append_child(&problem);
}

/// Removes the problem `show_problem` put in `place`, if any.
pub fn clear_problem(place: &Element) {
    if let Ok(Some(previous)) = place.query_selector(".error") {
        previous.remove();
    }
}

/// Marks `button` busy with `label` (disabled, so a second press sends nothing), or gives it
/// back its `label` and enables it.
pub fn set_busy(button: &Element, busy: bool, label: &str) {
    let _ = if busy { button.set_attribute("disabled", "") } else { button.remove_attribute("disabled") };
    button.set_text_content(Some(label));
}

#[cfg(feature = "hydrate")]
mod imp {
    use js_sys::Reflect;
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{Headers, Request, RequestInit, Response};

    use super::{Answer, Json, NoAnswer};

    pub type Value = JsValue;

    fn field(value: &JsValue, key: &str) -> Option<JsValue> {
        Reflect::get(value, &JsValue::from_str(key)).ok()
    }

    pub fn number(value: &JsValue, key: &str) -> Option<f64> {
        field(value, key)?.as_f64()
    }

    pub fn string(value: &JsValue, key: &str) -> Option<String> {
        field(value, key)?.as_string()
    }

    /// The request, or why the browser would not build it.
    fn request(url: &str, extra: &[(&str, &str)]) -> Result<Request, JsValue> {
        let headers = Headers::new()?;
        headers.set("accept", "application/json")?;
        for (name, value) in extra {
            headers.set(name, value)?;
        }
        let init = RequestInit::new();
        init.set_method("POST");
        init.set_headers(&headers);
        Request::new_with_str_and_init(url, &init)
    }

    pub async fn post(url: &str, extra: &[(&str, &str)]) -> Result<Answer, NoAnswer> {
        let request = request(url, extra).map_err(|e| {
            web_sys::console::error_2(&JsValue::from_str("Tokenless: could not build the request"), &e);
            NoAnswer::Unsendable
        })?;
        let window = web_sys::window().ok_or(NoAnswer::Unreachable)?;
        let response =
            JsFuture::from(window.fetch_with_request(&request)).await.map_err(|_| NoAnswer::Unreachable)?;
        let response: Response = response.dyn_into().map_err(|_| NoAnswer::Unreachable)?;
        // Not JSON, or JSON but not an object: no body to read fields from.
        let body = match response.json() {
            Ok(parsing) => JsFuture::from(parsing).await.ok().filter(JsValue::is_object).map(Json),
            Err(_) => None,
        };
        Ok(Answer { status: response.status(), body })
    }
}

#[cfg(not(feature = "hydrate"))]
mod imp {
    use super::{Answer, NoAnswer};

    /// Never made on the server.
    pub enum Value {}

    pub fn number(value: &Value, _key: &str) -> Option<f64> {
        match *value {}
    }

    pub fn string(value: &Value, _key: &str) -> Option<String> {
        match *value {}
    }

    pub async fn post(_url: &str, _headers: &[(&str, &str)]) -> Result<Answer, NoAnswer> {
        Err(NoAnswer::Unreachable)
    }
}

#[cfg(test)]
mod tests {
    use super::whole;

    #[test]
    fn only_whole_numbers_in_range_are_read() {
        assert_eq!(whole(3.0, u32::MAX as u64), Some(3));
        assert_eq!(whole(0.0, 0), Some(0));
        assert_eq!(whole(9_007_199_254_740_991.0, u64::MAX), Some(9_007_199_254_740_991));
        for (n, max) in [
            (1.5, 10),
            (-1.0, 10),
            (11.0, 10),
            (f64::NAN, 10),
            (f64::INFINITY, u64::MAX),
            (4_294_967_296.0, u32::MAX as u64),
            (9_007_199_254_740_992.0, u64::MAX),
        ] {
            assert_eq!(whole(n, max), None, "{n} in 0..={max}");
        }
    }
}
