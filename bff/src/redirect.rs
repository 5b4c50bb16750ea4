//! Where to send someone after sign-in: only a path on this site (`/frogs?x=1`), never another
//! host, whatever the encoding tricks.

/// The longest return path kept; longer ones are dropped.
pub const MAX_NEXT_LEN: usize = 1024;

/// `Some(path)` when `next` is a local absolute path safe to put in a `Location` header.
///
/// Refused: empty, not starting with exactly one `/`, `//host` and `/\host` (browsers read a
/// backslash as a slash), any control character, whitespace or non-ASCII byte (also makes the
/// header invalid), and the same shapes hidden behind percent-encoding (`/%2F`, `/%5C`), which
/// some routers decode before redirecting.
pub fn safe_next(next: &str) -> Option<String> {
    if next.is_empty() || next.len() > MAX_NEXT_LEN {
        return None;
    }
    let bytes = next.as_bytes();
    if bytes[0] != b'/' {
        return None;
    }
    if bytes.iter().any(|&b| !(0x21..=0x7e).contains(&b) || b == b'\\') {
        return None;
    }
    let decoded_head = decode_head(next);
    if decoded_head.starts_with("//") || decoded_head.starts_with("/\\") {
        return None;
    }
    Some(next.to_string())
}

/// The first few characters with percent-escapes decoded (repeatedly, for double encoding).
fn decode_head(path: &str) -> String {
    let mut current: String = path.chars().take(16).collect();
    for _ in 0..3 {
        let decoded = percent_decode(&current);
        if decoded == current {
            break;
        }
        current = decoded;
    }
    current
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex =
                std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_pass() {
        for ok in ["/", "/x", "/frogs", "/frogs?sort=name&page=2", "/a/b#c", "/%7Euser"] {
            assert_eq!(safe_next(ok).as_deref(), Some(ok), "{ok}");
        }
    }

    #[test]
    fn other_hosts_and_tricks_are_refused() {
        for bad in [
            "",
            "x",
            "frogs",
            "//evil.example",
            "///evil.example",
            "https://evil.example",
            "http:evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/%252Fevil.example",
            "%2F%2Fevil.example",
            "/ evil",
            "/\tevil",
            "/\r\nSet-Cookie: x=1",
            "/é",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(MAX_NEXT_LEN))), None);
    }
}
