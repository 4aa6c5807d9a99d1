//! The return path followed after a successful SSO login (`redirect_uri` for Tribe, `referrerUrl` for MeltingSpot).
//!
//! It goes into a 303 `Location`, so anything a browser could resolve off the forum's origin is an open redirect.
//! Only a root-relative path is followed; anything else lands on `/` and the caller logs the [`Unsafe`] reason.
//!
//! - One leading `/`, never `//` or `/\`: those are protocol-relative (browsers read `\` as `/`, so no backslash
//!   anywhere); anything else may be a scheme (`javascript:`, `https:host`), a host or a relative path.
//! - Printable ASCII only, no space: browsers drop tab/CR/LF inside URLs (`/\t/evil.com` is `//evil.com`), CR/LF split
//!   the header, and requiring non-ASCII to be percent-encoded (as a browser's own `location` gives it) refuses Unicode
//!   spaces, bidi and invisible characters and slash look-alikes in one rule. `"` `<` `>` `` ` `` are refused too:
//!   browsers always encode them in a path and they only matter when a URL is echoed into markup.
//! - The same structure after each round of percent-decoding (at most 3; deeper is refused), because another hop may
//!   decode again: `/%2F%2Fevil`, `/%5Cevil`, `/%09/evil`, `%0d%0a`, `%00`, `%252F`, `%20`, overlong `%C0%AF`.
//!   Decoded non-ASCII text is fine (`/search?q=caf%C3%A9`).
//! - A WHATWG (browser) parse of the text and each decoded form must stay on the probe origin, and dot segments must
//!   not leave a path starting with `//` (`/..//evil.com`), which a trailing-slash redirect would send off-site.
//! - At most 2048 bytes.
//!
//! Paths a browser keeps on the origin pass even if they look odd: `/evil.com`, `/@user`, `/https://x`,
//! `/redirect?url=//evil.com` (a forum route taking a URL must check it itself).

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use percent_encoding::percent_decode_str;
use url::Url;

/// Longest return path accepted, in bytes.
pub const MAX_LEN: usize = 2048;

/// How many rounds of percent-decoding are checked; text that still decodes after that is refused.
const MAX_DECODE_ROUNDS: usize = 3;

/// The origin return paths are resolved against for the WHATWG check (`.invalid` never resolves: RFC 2606).
const PROBE_HOST: &str = "gateway.invalid";
static PROBE_BASE: LazyLock<Option<Url>> =
    LazyLock::new(|| Url::parse("https://gateway.invalid/").ok());

/// Why a return path was refused (for the log line; never shown raw to the user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unsafe {
    /// The parameter was present but empty.
    Empty,
    /// Longer than [`MAX_LEN`] bytes.
    TooLong,
    /// Does not start with `/` (a scheme, a host, a relative path, leading whitespace...).
    NotRootRelative,
    /// Starts with `//`.
    ProtocolRelative,
    /// Contains a backslash (browsers treat `\` as `/`).
    Backslash,
    /// Contains an ASCII control character, DEL, or any whitespace or invisible format character.
    ControlOrWhitespace,
    /// Contains a raw non-ASCII character (it must be percent-encoded).
    NonAscii,
    /// Contains `"`, `<`, `>` or `` ` ``, which browsers always percent-encode in a path.
    DisallowedCharacter,
    /// Once percent-decoded it starts with `//` or `/\`, or contains a backslash or a slash look-alike.
    EncodedSeparator,
    /// Once percent-decoded it contains a control character (`%00`, `%0d%0a`, `%09`...), whitespace or an invisible
    /// format character.
    EncodedControlOrWhitespace,
    /// Its percent-encoded bytes are not UTF-8 (overlong forms such as `%C0%AF`, legacy 8-bit encodings).
    EncodedInvalidUtf8,
    /// Still percent-encoded after three rounds of decoding.
    ExcessiveEncoding,
    /// Dot segments resolve to a path starting with `//`.
    DotSegmentEscape,
    /// A WHATWG (browser) parse resolves it off the gateway's origin, or cannot parse it.
    LeavesOrigin,
}

impl Unsafe {
    /// A short description for the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Unsafe::Empty => "empty",
            Unsafe::TooLong => "longer than 2048 bytes",
            Unsafe::NotRootRelative => "does not start with /",
            Unsafe::ProtocolRelative => "starts with // (protocol-relative)",
            Unsafe::Backslash => "contains a backslash (browsers read \\ as /)",
            Unsafe::ControlOrWhitespace => "contains a control, whitespace or invisible character",
            Unsafe::NonAscii => "contains a non-ASCII character that is not percent-encoded",
            Unsafe::DisallowedCharacter => "contains \", <, > or `",
            Unsafe::EncodedSeparator => {
                "percent-decoded, starts with // or /\\ or contains a backslash or slash look-alike"
            }
            Unsafe::EncodedControlOrWhitespace => {
                "percent-decoded, contains a control (NUL, CR, LF, tab...), whitespace or invisible character"
            }
            Unsafe::EncodedInvalidUtf8 => {
                "percent-encoded bytes are not UTF-8 (overlong or legacy encoding)"
            }
            Unsafe::ExcessiveEncoding => "still percent-encoded after 3 rounds of decoding",
            Unsafe::DotSegmentEscape => "dot segments resolve to a path starting with //",
            Unsafe::LeavesOrigin => "a browser would resolve it off this origin",
        }
    }
}

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Unsafe {}

/// `raw` is the parameter value AFTER the one round of form/percent decoding the query parser did.
/// Returns the path to put in Location (the same text, unchanged) when it is safe.
pub fn check(raw: &str) -> Result<&str, Unsafe> {
    if raw.is_empty() {
        return Err(Unsafe::Empty);
    }
    if raw.len() > MAX_LEN {
        return Err(Unsafe::TooLong);
    }
    check_raw(raw)?;
    check_resolution(raw)?;

    let mut current = Cow::Borrowed(raw);
    for round in 0..=MAX_DECODE_ROUNDS {
        // `Cow::Borrowed` when there was no escape to decode.
        let Cow::Owned(bytes) = Cow::<[u8]>::from(percent_decode_str(&current)) else {
            break;
        };
        if round == MAX_DECODE_ROUNDS {
            return Err(Unsafe::ExcessiveEncoding);
        }
        let Ok(decoded) = String::from_utf8(bytes) else {
            return Err(Unsafe::EncodedInvalidUtf8);
        };
        check_decoded(&decoded)?;
        check_resolution(&decoded)?;
        current = Cow::Owned(decoded);
    }
    Ok(raw)
}

/// Convenience: the safe path or "/" (the caller logs the Unsafe reason).
///
/// An absent parameter gives `("/", None)`: nothing was asked for, so there is nothing to log.
pub fn or_root(raw: Option<&str>) -> (&str, Option<Unsafe>) {
    match raw.map(check) {
        None => ("/", None),
        Some(Ok(path)) => (path, None),
        Some(Err(why)) => ("/", Some(why)),
    }
}

/// The rules on the text as received.
fn check_raw(raw: &str) -> Result<(), Unsafe> {
    let mut chars = raw.chars();
    if chars.next() != Some('/') {
        return Err(Unsafe::NotRootRelative);
    }
    match chars.next() {
        Some('/') => return Err(Unsafe::ProtocolRelative),
        Some('\\') => return Err(Unsafe::Backslash),
        _ => {}
    }
    for c in raw.chars() {
        if c == '\\' {
            return Err(Unsafe::Backslash);
        }
        if is_control_space_or_invisible(c) {
            return Err(Unsafe::ControlOrWhitespace);
        }
        if !c.is_ascii() {
            return Err(Unsafe::NonAscii);
        }
        if matches!(c, '"' | '<' | '>' | '`') {
            return Err(Unsafe::DisallowedCharacter);
        }
    }
    Ok(())
}

/// The structural rules on a percent-decoded form (which may hold non-ASCII text).
fn check_decoded(decoded: &str) -> Result<(), Unsafe> {
    let mut chars = decoded.chars();
    if chars.next() != Some('/') {
        // Decoding cannot change a literal leading `/`; fail closed all the same.
        return Err(Unsafe::EncodedSeparator);
    }
    if matches!(chars.next(), Some('/' | '\\')) {
        return Err(Unsafe::EncodedSeparator);
    }
    for c in decoded.chars() {
        if c == '\\' || is_slash_lookalike(c) {
            return Err(Unsafe::EncodedSeparator);
        }
        if is_control_space_or_invisible(c) {
            return Err(Unsafe::EncodedControlOrWhitespace);
        }
    }
    Ok(())
}

/// Resolve as a browser would (WHATWG URL parsing) against a probe origin and require that origin to be kept.
fn check_resolution(path: &str) -> Result<(), Unsafe> {
    let Some(base) = PROBE_BASE.as_ref() else {
        return Err(Unsafe::LeavesOrigin);
    };
    let Ok(url) = base.join(path) else {
        return Err(Unsafe::LeavesOrigin);
    };
    let same_origin = url.scheme() == "https"
        && url.host_str() == Some(PROBE_HOST)
        && url.port().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !same_origin {
        return Err(Unsafe::LeavesOrigin);
    }
    if url.path().starts_with("//") {
        return Err(Unsafe::DotSegmentEscape);
    }
    Ok(())
}

/// Controls (C0, DEL, C1), any Unicode whitespace (U+0020, U+00A0, U+2028, U+3000...), and the invisible format
/// characters (Unicode `Cf` and `Default_Ignorable_Code_Point`: soft hyphen, zero-width characters, bidi controls,
/// BOM, fillers, variation selectors, tags) that could hide what a path really is.
fn is_control_space_or_invisible(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// Characters that are, or normalize (NFKC, IDNA) to something containing, `/` or `\`, or that are drawn as a slash:
/// fullwidth and small solidus and reverse solidus, division, fraction and big slashes, set minus, the `℀`-style
/// "a/c" symbols, and the vertical kana repeat marks used in published bypasses.
fn is_slash_lookalike(c: char) -> bool {
    matches!(
        c,
        '\u{2044}'
            | '\u{2100}'..='\u{2101}'
            | '\u{2105}'..='\u{2106}'
            | '\u{2215}'..='\u{2216}'
            | '\u{29F5}'
            | '\u{29F8}'..='\u{29F9}'
            | '\u{3031}'..='\u{3035}'
            | '\u{FE68}'
            | '\u{FF0F}'
            | '\u{FF3C}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload corpus: see its header for the sources, the escaping and the two sections.
    const CORPUS: &str = include_str!("../../tests/data/open-redirect-payloads.txt");

    #[track_caller]
    fn refused(raw: &str, why: Unsafe) {
        assert_eq!(check(raw), Err(why), "{raw:?}");
    }

    #[track_caller]
    fn accepted(raw: &str) {
        assert_eq!(check(raw), Ok(raw), "{raw:?}");
    }

    #[test]
    fn ordinary_paths_are_accepted_unchanged() {
        for path in [
            "/",
            "/spaces",
            "/t/hello-world/42?page=2#post-7",
            "/spot/129487c9-6acc-43d9-ab96-182ded763538/lives",
            "/search?q=caf%C3%A9",
            "/a/b/../c",
            "/@user",
            "/~x",
            "/a:b",
            "/evil.com",
            "/redirect?url=//evil.com",
            "/?next=//evil.com#//evil.com",
            "/search?q=a+b&tags=x,y;z|w",
            "/t/%E3%82%B3%E3%83%BC%E3%83%92%E3%83%BC",
            "/search?q=100%25",
            "/search?q=%2541",
            "/a/b%2Fc",
            "/x?y=%2F%2Fevil.com",
            "/%",
            "/%zz",
            "/'quoted'",
            "/(x)*!$&=",
            "/../../etc",
        ] {
            accepted(path);
        }
    }

    #[test]
    fn empty_and_length() {
        refused("", Unsafe::Empty);
        let longest = format!("/{}", "a".repeat(MAX_LEN - 1));
        accepted(&longest);
        refused(&format!("{longest}a"), Unsafe::TooLong);
        // Length is counted in bytes of the text as received.
        refused(&format!("/{}", "%2F".repeat(700)), Unsafe::TooLong);
    }

    #[test]
    fn must_start_with_a_single_slash() {
        for raw in [
            "evil.com",
            "spaces",
            "@evil.com",
            "./evil.com",
            "../evil.com",
            "?next=/",
            "#/",
            "https://evil.com",
            "https:evil.com",
            "javascript:alert(1)",
            "data:text/html,x",
            "%2F%2Fevil.com",
            "%2fspaces",
            " /spaces",
            "\t/spaces",
        ] {
            refused(raw, Unsafe::NotRootRelative);
        }
        for raw in [
            "//evil.com",
            "///evil.com",
            "//",
            "//\\evil.com",
            "//%09/evil.com",
        ] {
            refused(raw, Unsafe::ProtocolRelative);
        }
    }

    #[test]
    fn backslash_anywhere() {
        for raw in [
            "/\\evil.com",
            "/\\/evil.com",
            "/a\\b",
            "/a/b?c=d\\e",
            "/x#\\",
        ] {
            refused(raw, Unsafe::Backslash);
        }
    }

    #[test]
    fn controls_and_whitespace() {
        for raw in [
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r/evil.com",
            "/x\r\nSet-Cookie: a=b",
            "/\0",
            "/\u{7f}",
            "/\u{1b}",
            "/a b",
            "/spaces ",
            "/\u{85}",
            "/\u{a0}/evil.com",
            "/\u{2028}/evil.com",
            "/\u{3000}/evil.com",
            "/\u{feff}/evil.com",
            "/\u{202e}moc.live",
            "/\u{200b}/evil.com",
            "/\u{2066}x",
        ] {
            refused(raw, Unsafe::ControlOrWhitespace);
        }
    }

    #[test]
    fn raw_non_ascii_and_markup_characters() {
        for raw in [
            "/café",
            "/\u{ff0f}evil.com",
            "/\u{3031}evil.com",
            "/ーgoogle.com",
            "/\u{2215}evil",
        ] {
            refused(raw, Unsafe::NonAscii);
        }
        for raw in ["/<script>", "/\"x", "/x>", "/`x`"] {
            refused(raw, Unsafe::DisallowedCharacter);
        }
    }

    #[test]
    fn percent_encoded_separators() {
        for raw in [
            "/%2F%2Fevil.com",
            "/%2f/evil.com",
            "/%2Fevil.com",
            "/%5Cevil.com",
            "/%5c",
            "/a/b%5Cc",
            "/%252F%252Fevil.com",
            "/%25252F%25252Fevil.com",
            "/%255Cevil.com",
            "/%25%35%43evil.com",
            "/%EF%BC%8Fevil.com",
            "/%EF%BC%BCevil.com",
            "/%E2%88%95evil.com",
            "/%E2%84%80",
        ] {
            refused(raw, Unsafe::EncodedSeparator);
        }
    }

    #[test]
    fn percent_encoded_controls_and_whitespace() {
        for raw in [
            "/%09/evil.com",
            "/%0d%0aSet-Cookie:x",
            "/%0A",
            "/%00",
            "/index.html%00.jpg",
            "/%2500",
            "/%20/evil.com",
            "/search?q=a%20b",
            "/%7F",
            "/%C2%85",
            "/%C2%A0/evil.com",
            "/%E2%80%A8",
            "/%E3%80%80",
            "/%EF%BB%BF",
            "/%E2%80%AE",
            "/%E2%80%8B",
        ] {
            refused(raw, Unsafe::EncodedControlOrWhitespace);
        }
    }

    #[test]
    fn percent_encoded_invalid_utf8_and_depth() {
        for raw in [
            "/%C0%AF",
            "/%c0%ae%c0%ae/",
            "/%E0%80%AF",
            "/%ED%A0%80",
            "/%FF",
            "/search?q=caf%E9",
            "/%25C0%25AF",
        ] {
            refused(raw, Unsafe::EncodedInvalidUtf8);
        }
        refused("/%2525252F%2525252Fevil.com", Unsafe::ExcessiveEncoding);
        refused("/%25252525", Unsafe::ExcessiveEncoding);
        // Three rounds that settle are fine.
        accepted("/%252541");
    }

    #[test]
    fn dot_segments_that_leave_a_double_slash() {
        for raw in [
            "/..//evil.com",
            "/.//evil.com",
            "/a/..//evil.com",
            "/%2e%2e//evil.com",
            "/.%2E//evil.com",
        ] {
            refused(raw, Unsafe::DotSegmentEscape);
        }
        // `/./%2F/evil.com` decodes to `/.//evil.com`.
        refused("/./%2F/evil.com", Unsafe::DotSegmentEscape);
        refused("/%2E%2E%2F%2Fevil.com", Unsafe::DotSegmentEscape);
    }

    #[test]
    fn probe_base_parses() {
        assert!(PROBE_BASE.is_some());
    }

    #[test]
    fn or_root_falls_back() {
        assert_eq!(or_root(None), ("/", None));
        assert_eq!(or_root(Some("")), ("/", Some(Unsafe::Empty)));
        assert_eq!(or_root(Some("/spaces")), ("/spaces", None));
        assert_eq!(
            or_root(Some("//evil.com")),
            ("/", Some(Unsafe::ProtocolRelative))
        );
    }

    #[test]
    fn reasons_have_log_text() {
        for why in [
            Unsafe::Empty,
            Unsafe::TooLong,
            Unsafe::NotRootRelative,
            Unsafe::ProtocolRelative,
            Unsafe::Backslash,
            Unsafe::ControlOrWhitespace,
            Unsafe::NonAscii,
            Unsafe::DisallowedCharacter,
            Unsafe::EncodedSeparator,
            Unsafe::EncodedControlOrWhitespace,
            Unsafe::EncodedInvalidUtf8,
            Unsafe::ExcessiveEncoding,
            Unsafe::DotSegmentEscape,
            Unsafe::LeavesOrigin,
        ] {
            assert!(!why.as_str().is_empty());
            assert_eq!(why.to_string(), why.as_str());
        }
        assert_eq!(
            Unsafe::ProtocolRelative.as_str(),
            "starts with // (protocol-relative)"
        );
    }

    /// Undo the corpus escaping: `\\`, `\t`, `\n`, `\r`, `\0`, `\xNN` (a byte below 0x80), `\uNNNN`, `\u{N...}`.
    fn unescape(line: &str) -> String {
        let mut out = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    let byte = u8::from_str_radix(&hex, 16).unwrap();
                    assert!(
                        byte.is_ascii(),
                        "\\x{hex} in {line:?}: use \\u for non-ASCII"
                    );
                    out.push(char::from(byte));
                }
                Some('u') => {
                    let rest = chars.as_str();
                    let (hex, skip) = match rest.strip_prefix('{') {
                        Some(braced) => {
                            let end = braced.find('}').unwrap();
                            (&braced[..end], end + 2)
                        }
                        None => (&rest[..4], 4),
                    };
                    out.push(char::from_u32(u32::from_str_radix(hex, 16).unwrap()).unwrap());
                    chars = rest[skip..].chars();
                }
                other => panic!("bad escape \\{other:?} in {line:?}"),
            }
        }
        out
    }

    /// What a form/query parser would hand over for this text: `+` is a space, `%XX` a byte, UTF-8 read lossily.
    fn form_decode(s: &str) -> String {
        let plus_as_space = s.replace('+', " ");
        percent_decode_str(&plus_as_space)
            .decode_utf8_lossy()
            .into_owned()
    }

    /// Independent of `check`: would a browser given this `Location` stay on the origin?
    fn browser_stays(path: &str) -> bool {
        let base = Url::parse("https://gateway.invalid/some/page?x=1").unwrap();
        base.join(path).is_ok_and(|u| {
            u.origin() == base.origin() && u.username().is_empty() && u.password().is_none()
        })
    }

    struct Corpus {
        refuse: Vec<String>,
        accept: Vec<String>,
    }

    fn corpus() -> Corpus {
        let mut corpus = Corpus {
            refuse: Vec::new(),
            accept: Vec::new(),
        };
        let mut accepting = false;
        for line in CORPUS.lines() {
            match line {
                "# accepted:" => accepting = true,
                "# refused:" => accepting = false,
                _ if line.is_empty() || line.starts_with('#') => {}
                _ => {
                    let payload = unescape(line);
                    let section = if accepting {
                        &mut corpus.accept
                    } else {
                        &mut corpus.refuse
                    };
                    section.push(payload);
                }
            }
        }
        corpus
    }

    #[test]
    fn unescape_round_trips_the_documented_escapes() {
        assert_eq!(
            unescape(r"/\t/\n\r\0\\\x20\x23\u3000\u{1F600}x"),
            "/\t/\n\r\0\\ #\u{3000}\u{1F600}x"
        );
    }

    #[test]
    fn corpus_payloads() {
        let corpus = corpus();
        assert!(
            corpus.refuse.len() >= 200,
            "only {} payloads to refuse",
            corpus.refuse.len()
        );

        let mut seen = std::collections::HashSet::new();
        for payload in corpus.refuse.iter().chain(&corpus.accept) {
            assert!(
                seen.insert(payload.as_str()),
                "duplicate corpus line {payload:?}"
            );
        }

        let mut checked = 0;
        let mut failures = Vec::new();
        for payload in &corpus.refuse {
            let decoded = form_decode(payload);
            let variants = if decoded == *payload {
                vec![payload.clone()]
            } else {
                vec![payload.clone(), decoded]
            };
            for variant in variants {
                checked += 1;
                if let Ok(path) = check(&variant) {
                    failures.push(format!("accepted {path:?} (from corpus line {payload:?})"));
                }
            }
        }
        for payload in &corpus.accept {
            checked += 1;
            if check(payload) != Ok(payload.as_str()) {
                failures.push(format!("refused {payload:?}: {:?}", check(payload)));
            }
        }
        assert!(
            failures.is_empty(),
            "{} corpus failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        println!(
            "open-redirect corpus: {} payloads to refuse, {} to accept, {checked} checks",
            corpus.refuse.len(),
            corpus.accept.len()
        );
    }

    /// Whatever `check` lets through, from the corpus or derived from it, a browser keeps on the origin, and so it
    /// does after further rounds of decoding.
    #[test]
    fn everything_accepted_stays_on_the_origin() {
        let corpus = corpus();
        for payload in corpus.refuse.iter().chain(&corpus.accept) {
            for variant in [payload.clone(), form_decode(payload), format!("/{payload}")] {
                let Ok(path) = check(&variant) else { continue };
                let mut current = path.to_owned();
                for _ in 0..=MAX_DECODE_ROUNDS {
                    assert!(
                        browser_stays(&current),
                        "{current:?} (from {variant:?}) leaves the origin"
                    );
                    current = percent_decode_str(&current)
                        .decode_utf8_lossy()
                        .into_owned();
                }
            }
        }
    }
}
