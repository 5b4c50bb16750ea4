//! Refusing state-changing requests that another site made the browser send (OWASP CSRF cheat
//! sheet, "Fetch Metadata" and "Verifying origin with standard headers"). Safe methods pass.
//!
//! | `Sec-Fetch-Site` | decision |
//! |---|---|
//! | `same-origin` | allowed |
//! | `none` (typed in, bookmark: no site involved) | allowed |
//! | `same-site` (a sibling subdomain) | refused: a sibling is not us |
//! | `cross-site` | refused |
//! | absent (older browser, or not a browser) | `Origin` decides: equal to ours → allowed, another or `null` → refused; no `Origin` either → allowed, since every current browser sends `Origin` on a cross-origin POST, so such a request does not come from another site's page |

use axum::http::{HeaderMap, Method};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CrossSite {
    #[error("Sec-Fetch-Site says {0}")]
    FetchSite(&'static str),
    #[error("Origin is another site")]
    ForeignOrigin,
    #[error("Origin is opaque (null)")]
    NullOrigin,
    #[error("{0} appears more than once")]
    Repeated(&'static str),
}

/// Methods that change nothing and pass unchecked.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// `expected_origin` is ours, as a browser writes it: `https://app.example` (no path, no slash).
pub fn check(method: &Method, headers: &HeaderMap, expected_origin: &str) -> Result<(), CrossSite> {
    if is_safe(method) {
        return Ok(());
    }
    // A browser sends each of these once; two values are a forgery or a broken proxy.
    for name in ["sec-fetch-site", "origin"] {
        if headers.get_all(name).iter().count() > 1 {
            return Err(CrossSite::Repeated(name));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            b"same-site" => Err(CrossSite::FetchSite("same-site")),
            b"cross-site" => Err(CrossSite::FetchSite("cross-site")),
            // An unknown value is not a browser we know; fall through to Origin below would be
            // lenient, so refuse.
            _ => Err(CrossSite::FetchSite("an unknown value")),
        };
    }
    match headers.get("origin") {
        None => Ok(()),
        Some(origin) if origin.as_bytes() == b"null" => Err(CrossSite::NullOrigin),
        Some(origin) if origin.as_bytes().eq_ignore_ascii_case(expected_origin.as_bytes()) => Ok(()),
        Some(_) => Err(CrossSite::ForeignOrigin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const US: &str = "http://127.0.0.1:3000";

    #[test]
    fn fetch_metadata_cases() {
        let post = Method::POST;
        assert_eq!(check(&post, &headers(&[("sec-fetch-site", "same-origin")]), US), Ok(()));
        assert_eq!(check(&post, &headers(&[("sec-fetch-site", "none")]), US), Ok(()));
        assert!(check(&post, &headers(&[("sec-fetch-site", "same-site")]), US).is_err());
        assert!(check(&post, &headers(&[("sec-fetch-site", "cross-site")]), US).is_err());
        assert!(check(&post, &headers(&[("sec-fetch-site", "weird")]), US).is_err());
        // Fetch metadata wins over a matching Origin.
        assert!(check(&post, &headers(&[("sec-fetch-site", "cross-site"), ("origin", US)]), US).is_err());
    }

    #[test]
    fn origin_when_fetch_metadata_is_absent() {
        let post = Method::POST;
        assert_eq!(check(&post, &headers(&[("origin", US)]), US), Ok(()));
        assert_eq!(check(&post, &headers(&[("origin", "HTTP://127.0.0.1:3000")]), US), Ok(()));
        assert_eq!(
            check(&post, &headers(&[("origin", "https://evil.example")]), US),
            Err(CrossSite::ForeignOrigin)
        );
        assert_eq!(
            check(&post, &headers(&[("origin", "http://127.0.0.1:3000.evil")]), US),
            Err(CrossSite::ForeignOrigin)
        );
        assert_eq!(check(&post, &headers(&[("origin", "null")]), US), Err(CrossSite::NullOrigin));
        assert_eq!(check(&post, &headers(&[]), US), Ok(()), "no browser headers at all");
    }

    #[test]
    fn safe_methods_pass() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(check(&m, &headers(&[("sec-fetch-site", "cross-site")]), US), Ok(()));
        }
        for m in [Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(check(&m, &headers(&[("sec-fetch-site", "cross-site")]), US).is_err());
        }
    }

    #[test]
    fn repeated_headers_are_refused() {
        let mut h = HeaderMap::new();
        h.append("sec-fetch-site", "same-origin".parse().unwrap());
        h.append("sec-fetch-site", "cross-site".parse().unwrap());
        assert_eq!(check(&Method::POST, &h, "http://a.example"), Err(CrossSite::Repeated("sec-fetch-site")));
        let mut h = HeaderMap::new();
        h.append("origin", "http://a.example".parse().unwrap());
        h.append("origin", "https://evil.example".parse().unwrap());
        assert_eq!(check(&Method::POST, &h, "http://a.example"), Err(CrossSite::Repeated("origin")));
        assert_eq!(check(&Method::GET, &h, "http://a.example"), Ok(()));
    }
}
