//! Scalar leaves of the YAML file and the small parsers behind them.
//!
//! Every leaf of the raw config is read as a [`Scalar`] (any YAML scalar, kept as text) so that a bad value never stops
//! serde half-way: the typed conversion in `config/mod.rs` parses each leaf, expands `${VAR}` and collects every error
//! with the key it belongs to. Only structural problems (unknown keys, a list where a map belongs, broken YAML) stop the
//! parse early, and yaml_serde names their key and line itself.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// One YAML scalar, whatever its YAML type, as the text the operator wrote.
#[derive(Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl fmt::Debug for Scalar {
    // Config values may hold secrets; a Debug print of the raw tree must not show them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scalar(..)")
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single value (text, number or boolean)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl schemars::JsonSchema for Scalar {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Scalar".into()
    }

    // Any YAML scalar is read (and `${VAR}` expanded) before its key's own parser sees it, so the schema of a leaf
    // with no narrower type says just that. Null is not a scalar here: an `Option` field allows it on its own.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "number", "boolean"]})
    }
}

/// Replaces each `${NAME}` with the environment variable `NAME`; `$$` stands for a literal `$`.
///
/// `lookup` is injected so tests need not touch the process environment.
pub fn expand_env(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err("unterminated `${` (write `$$` for a literal `$`)".to_owned());
            };
            let name = &body[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable name"
                ));
            }
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses `500ms`, `2s`, `5m`, `12h`, `1d` or a sum of them such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const HELP: &str = "expected a number with a unit: ms, s, m, h or d (for example 2s, 5m, 12h)";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration: {HELP}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("invalid duration {text:?}: {HELP}"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            _ => return Err(format!("invalid duration {text:?}: {HELP}")),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// Parses `true`/`false` (also `yes`/`no`, `on`/`off`, as YAML 1.1 readers expect).
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Ok(true),
        "false" | "no" | "off" => Ok(false),
        _ => Err(format!("invalid boolean {text:?}: expected true or false")),
    }
}

/// Finds the line (1-based) of a dotted key path such as `upstream.timeout` in block-style YAML.
///
/// yaml_serde reports lines only for errors it raises itself; values that are well-formed YAML but wrong for ssogate
/// are checked later, so this small walker points the operator at the line. It understands block mappings and
/// `- ` list items, which is how config files are written; for anything else it answers `None`.
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let wanted: Vec<&str> = path
        .split('.')
        .map(|seg| seg.split('[').next().unwrap_or(seg))
        .collect();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let mut indent = line.len() - trimmed.len();
        let mut body = trimmed;
        // A key right after "- " sits one level deeper than the dash.
        while let Some(after) = body.strip_prefix("- ") {
            indent += 2;
            body = after.trim_start();
        }
        let Some(colon) = body.find(':') else {
            continue;
        };
        let key = body[..colon].trim().trim_matches(|c| c == '"' || c == '\'');
        if key.is_empty() || key.contains(' ') {
            continue;
        }
        while stack.last().is_some_and(|(depth, _)| *depth >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_owned()));
        if stack.len() == wanted.len()
            && stack
                .iter()
                .zip(&wanted)
                .all(|((_, have), want)| have == want)
        {
            return Some(index + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SECRET").then(|| "s3cr3t".to_owned())
    }

    #[test]
    fn expands_variables() {
        assert_eq!(
            expand_env("a-${SECRET}-b", &env).as_deref(),
            Ok("a-s3cr3t-b")
        );
        assert_eq!(
            expand_env("cost $$5 and $x", &env).as_deref(),
            Ok("cost $5 and $x")
        );
        assert_eq!(
            expand_env("${MISSING}", &env),
            Err("environment variable MISSING is not set".to_owned())
        );
        assert!(expand_env("${OPEN", &env).is_err());
        assert!(expand_env("${a-b}", &env).is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "5", "s", "5x", "-1s", "1.5s", "2 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn locates_keys() {
        let text = "listen: 1\nupstream:\n  url: x\n  # comment\n  timeout: 5x\nsso:\n  keys:\n    - id: a\n      secret: b\n";
        assert_eq!(locate(text, "listen"), Some(1));
        assert_eq!(locate(text, "upstream.timeout"), Some(5));
        assert_eq!(locate(text, "sso.keys[0].secret"), Some(9));
        assert_eq!(locate(text, "upstream.missing"), None);
    }
}
