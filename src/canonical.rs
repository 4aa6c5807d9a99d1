//! One canonical form of a request path, so that what the gateway checks is what the forum serves.
//!
//! Protected prefixes and the gateway's own routes are matched on this form, and it is the path forwarded, so a
//! request cannot be checked as one path and served as another. Percent-encoded unreserved characters (letters,
//! digits, `-._~`) are decoded, hex digits of the remaining escapes upper-cased, dot segments resolved (RFC 3986
//! §5.2.4) and repeated slashes merged. What different servers read differently is refused outright: an encoded
//! slash or backslash, a raw backslash, an encoded dot segment (`%2e%2e`), a NUL, or a broken escape. The query
//! string is not part of the path and is never looked at.

use std::borrow::Cow;

/// Why a path was refused as ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ambiguous {
    #[error("encoded slash or backslash in the path")]
    EncodedSeparator,
    #[error("backslash in the path")]
    Backslash,
    #[error("encoded dot segment in the path")]
    EncodedDotSegment,
    #[error("NUL in the path")]
    Nul,
    #[error("broken percent-escape in the path")]
    BadEscape,
    #[error("the path does not start with /")]
    NotAbsolute,
}

/// The canonical form of `path` (borrowed when it already is canonical).
pub fn canonical(path: &str) -> Result<Cow<'_, str>, Ambiguous> {
    if !path.starts_with('/') {
        return Err(Ambiguous::NotAbsolute);
    }
    if path.contains('\\') {
        return Err(Ambiguous::Backslash);
    }
    if is_canonical(path) {
        return Ok(Cow::Borrowed(path));
    }

    let mut segments: Vec<String> = Vec::new();
    let raw_segments: Vec<&str> = path[1..].split('/').collect();
    let last = raw_segments.len() - 1;
    let mut trailing_slash = false;
    for (index, raw) in raw_segments.iter().enumerate() {
        let (decoded, had_encoded_dot) = decode_segment(raw)?;
        let is_last = index == last;
        match decoded.as_str() {
            "." | ".." if had_encoded_dot => return Err(Ambiguous::EncodedDotSegment),
            "" => {
                // Empty segments come from repeated slashes; only a final one (a trailing slash) means something.
                trailing_slash = is_last;
            }
            "." => trailing_slash = is_last,
            ".." => {
                segments.pop();
                trailing_slash = is_last;
            }
            _ => {
                segments.push(decoded);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// True when `prefix` (a configured path) covers `path`: equal, or followed by a `/` boundary.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The common case costs one scan: no escapes, no dot segments, no empty segments.
fn is_canonical(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.contains(&b'%') {
        return false;
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// Decodes one segment's unreserved escapes; refuses the ambiguous ones. Also says whether an escaped dot was seen.
fn decode_segment(raw: &str) -> Result<(String, bool), Ambiguous> {
    let bytes = raw.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut encoded_dot = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            if b == 0 {
                return Err(Ambiguous::Nul);
            }
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
            return Err(Ambiguous::BadEscape);
        };
        let (Some(h), Some(l)) = (hex(h), hex(l)) else {
            return Err(Ambiguous::BadEscape);
        };
        let value = h * 16 + l;
        match value {
            b'/' | b'\\' => return Err(Ambiguous::EncodedSeparator),
            0 => return Err(Ambiguous::Nul),
            b'.' => {
                encoded_dot = true;
                out.push(b'.');
            }
            _ if value.is_ascii_alphanumeric() || b"-_~".contains(&value) => {
                out.push(value);
            }
            _ => {
                out.push(b'%');
                out.push(HEX[usize::from(h)]);
                out.push(HEX[usize::from(l)]);
            }
        }
        i += 3;
    }
    // Raw bytes are copied as they came (a raw UTF-8 path stays UTF-8); only ASCII is ever decoded from escapes.
    let out = String::from_utf8(out).map_err(|_| Ambiguous::BadEscape)?;
    Ok((out, encoded_dot))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        for (raw, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("//a///b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../a", "/a"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/%61dmin", "/admin"),
            ("/%7Euser/%2d", "/~user/-"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/private/..%3B/x", "/private/..%3B/x"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a..b/c.", "/a..b/c."),
            ("/café//x", "/café/x"),
        ] {
            assert_eq!(canonical(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (raw, why) in [
            ("/a%2Fb", Ambiguous::EncodedSeparator),
            ("/a%2fb", Ambiguous::EncodedSeparator),
            ("/a%5Cb", Ambiguous::EncodedSeparator),
            ("/a\\b", Ambiguous::Backslash),
            ("/%2e%2e/admin", Ambiguous::EncodedDotSegment),
            ("/private/%2E%2E/x", Ambiguous::EncodedDotSegment),
            ("/.%2e/x", Ambiguous::EncodedDotSegment),
            ("/%2e/x", Ambiguous::EncodedDotSegment),
            ("/a%00b", Ambiguous::Nul),
            ("/a%zz", Ambiguous::BadEscape),
            ("/a%2", Ambiguous::BadEscape),
            ("a/b", Ambiguous::NotAbsolute),
            ("*", Ambiguous::NotAbsolute),
        ] {
            assert_eq!(canonical(raw), Err(why), "{raw}");
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(has_prefix("/private", "/private"));
        assert!(has_prefix("/private/x", "/private"));
        assert!(has_prefix("/private/x", "/private/"));
        assert!(!has_prefix("/privateer", "/private"));
        assert!(has_prefix("/anything", "/"));
    }
}
