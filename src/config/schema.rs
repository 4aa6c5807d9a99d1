//! The config file's JSON Schema (draft 2020-12), printed by `ssogate config-schema` for editors and linters.
//!
//! It is derived (schemars) from the very structures the file is parsed into ([`super::raw`]), so it has exactly
//! their keys, `additionalProperties: false` where the parser refuses unknown keys, and their doc comments as
//! descriptions. Leaves the parser restricts name one of the schema types below: durations, booleans, enums and
//! number ranges, each also accepting a `${VAR}` reference, since every leaf is expanded before it is parsed.
//!
//! The schema is a help, not the judge: it accepts everything the parser accepts, and catches the common value
//! mistakes; rules that span keys (`session` requires `sso`, a secret reused as another) and the files a key
//! names are `ssogate check-config`'s to check.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings, json_schema};
use serde_json::{Value, json};

use super::raw::RawConfig;

/// The schema of the whole config file, as JSON.
pub fn json_schema() -> Value {
    let mut schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<RawConfig>();
    schema.insert("title".into(), json!("ssogate configuration"));
    let mut value = schema.to_value();
    unwrap_descriptions(&mut value);
    value
}

/// Doc comments are wrapped at the source's line width; an editor's hover should reflow them, so single line
/// breaks become spaces (blank lines, paragraph breaks, stay).
fn unwrap_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(text) if key == "description" => {
                        *text = text
                            .split("\n\n")
                            .map(|paragraph| {
                                paragraph
                                    .split('\n')
                                    .map(str::trim)
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    other => unwrap_descriptions(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// A `${VAR}` reference anywhere in the text, replaced by the environment variable when the file is loaded.
const ENV_REF_PATTERN: &str = r"\$\{[A-Za-z0-9_]+\}";

/// A duration as `parse_duration` reads it.
const DURATION_PATTERN: &str = r"^(?:[0-9]+(?:ms|s|m|h|d))+$";

/// The JWT algorithms `auth::parse_algorithm` accepts for a verification key.
const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// `words` in any letter case, as a regular expression matching the whole text (JSON Schema patterns have no
/// case-insensitive flag).
fn any_case(words: &[&str]) -> String {
    let alternatives = words
        .iter()
        .map(|word| {
            word.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                    } else {
                        c.to_string()
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>();
    format!("^(?:{})$", alternatives.join("|"))
}

/// The boolean spellings `parse_bool` accepts, as YAML booleans or as text.
fn boolean() -> Value {
    json!({"anyOf": [
        {"type": "boolean"},
        {"type": "string", "pattern": any_case(&["true", "false", "yes", "no", "on", "off"])}
    ]})
}

/// Defines a schema type: `$schema` (which may use `generator`) or a `${VAR}` reference, under `$defs/<name>`.
macro_rules! leaf_schema {
    ($(#[$doc:meta])* $name:ident, $description:expr, $schema:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(generator: &mut SchemaGenerator) -> Schema {
                let env = generator.subschema_for::<EnvRef>();
                let mut alternatives: Vec<Value> = match $schema {
                    Value::Object(map) if map.contains_key("anyOf") => {
                        map.get("anyOf").and_then(Value::as_array).cloned().unwrap_or_default()
                    }
                    other => vec![other],
                };
                alternatives.push(env.to_value());
                json_schema!({"description": $description, "anyOf": alternatives})
            }
        }
    };
}

/// `${NAME}`: replaced by the environment variable NAME when the file is loaded (`$$` is a literal `$`).
pub struct EnvRef;

impl JsonSchema for EnvRef {
    fn schema_name() -> Cow<'static, str> {
        "EnvRef".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Text containing ${NAME}: replaced by the environment variable NAME when the file is loaded (an unset NAME is an error; $$ is a literal $).",
            "type": "string",
            "pattern": ENV_REF_PATTERN
        })
    }
}

leaf_schema!(
    /// A duration: `500ms`, `2s`, `5m`, `12h`, `1d`, or a sum such as `1h30m`.
    Duration,
    "A whole number with a unit: ms, s, m, h or d (500ms, 2s, 5m, 12h, 1d), or a sum of them written together (1h30m). No spaces, no fractions.",
    json!({"type": "string", "pattern": DURATION_PATTERN})
);

leaf_schema!(
    /// A boolean.
    Bool,
    "true or false (yes/no and on/off are accepted too).",
    boolean()
);

leaf_schema!(
    /// `session.secure`: a boolean or `auto`.
    BoolOrAuto,
    "true, false, or auto.",
    {
        let mut alternatives = boolean()["anyOf"].as_array().cloned().unwrap_or_default();
        alternatives.push(json!({"const": "auto"}));
        json!({"anyOf": alternatives})
    }
);

leaf_schema!(
    /// `workers`: `auto` or 1 to 1024.
    Workers,
    "auto (one worker per CPU) or a number from 1 to 1024.",
    json!({"anyOf": [
        {"const": "auto"},
        {"type": "integer", "minimum": 1, "maximum": 1024},
        {"type": "string", "pattern": "^[0-9]+$"}
    ]})
);

leaf_schema!(
    /// A secret: at least 32 bytes, best given as `${VAR}`.
    Secret,
    "A secret of at least 32 bytes, used as written (e.g. openssl rand -hex 32). Keep it out of the file: use ${VAR}.",
    json!({"type": "string", "minLength": 32})
);

leaf_schema!(
    /// A rate limit: `N/s`, `N/m`, `N/h` (or `N/<duration>`), optionally `burst M`, or `off`.
    Rate,
    "N/s, N/m or N/h (or N/<duration>), optionally followed by `burst M` (how many may come at once; default N), or off.",
    json!({"type": "string", "pattern":
        r"^\s*(?:[Oo][Ff][Ff]|[0-9]+\s*/\s*(?:[smh]|(?:[0-9]+(?:ms|s|m|h|d))+)(?:\s*burst\s*[0-9]+)?)\s*$"})
);

leaf_schema!(
    /// `sso.keys[].algorithm`.
    Algorithm,
    "HS256, HS384, HS512 (shared secret), RS256/384/512, PS256/384/512, ES256, ES384 or EdDSA (public key).",
    json!({"enum": ALGORITHMS})
);

leaf_schema!(
    /// `sso.entries[].profile`.
    Profile,
    "tribe (alias: bettermode) or meltingspot.",
    json!({"enum": ["tribe", "bettermode", "meltingspot"]})
);

leaf_schema!(
    /// `session.same_site`.
    SameSite,
    "lax, strict or none (any letter case).",
    json!({"type": "string", "pattern": any_case(&["lax", "strict", "none"])})
);

leaf_schema!(
    /// `log.format`.
    LogFormat,
    "text or json.",
    json!({"enum": ["text", "json"]})
);

leaf_schema!(
    /// `identity.user_id`.
    UserId,
    "id (the gateway's own member id) or sub (the integrator's user id).",
    json!({"enum": ["id", "sub"]})
);

leaf_schema!(
    /// `identity.assertion.algorithm`.
    AssertionAlgorithm,
    "HS256 or ES256.",
    json!({"enum": ["HS256", "ES256"]})
);

/// A whole number from `MIN` to `MAX` (YAML may also quote it), or `${VAR}`.
pub struct Int<const MIN: u64, const MAX: u64>;

impl<const MIN: u64, const MAX: u64> JsonSchema for Int<MIN, MAX> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("Int_{MIN}_{MAX}").into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let env = generator.subschema_for::<EnvRef>();
        json_schema!({"anyOf": [
            {"type": "integer", "minimum": MIN, "maximum": MAX},
            {"type": "string", "pattern": "^[0-9]+$"},
            env
        ]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:3000\n";

    fn sso_with(key_algorithm: &str, entry_profile: &str, session_extra: &str) -> String {
        let secret = "s".repeat(40);
        format!(
            "{BASE}sso:\n  keys: [{{id: a, algorithm: {key_algorithm}, secret: {secret}}}]\n  entries: [{{profile: {entry_profile}}}]\n\
session:\n  secret: {}\n{session_extra}",
            "t".repeat(40)
        )
    }

    fn parses(text: &str) -> bool {
        Config::parse(text, "test.yaml", &|_| None).is_ok()
    }

    /// The enums in the schema are the parser's: each value parses, and a value outside them does not.
    #[test]
    fn schema_enums_are_the_parsers() {
        for profile in ["tribe", "bettermode", "meltingspot"] {
            assert!(parses(&sso_with("HS256", profile, "")), "{profile}");
        }
        assert!(!parses(&sso_with("HS256", "discourse", "")));
        for format in ["text", "json"] {
            assert!(
                parses(&format!("{BASE}log:\n  format: {format}\n")),
                "{format}"
            );
        }
        assert!(!parses(&format!("{BASE}log:\n  format: yaml\n")));
        for user_id in ["id", "sub"] {
            assert!(parses(&format!("{BASE}identity:\n  user_id: {user_id}\n")));
        }
        assert!(!parses(&format!("{BASE}identity:\n  user_id: email\n")));
        for same_site in ["lax", "Strict", "LAX"] {
            assert!(parses(&sso_with(
                "HS256",
                "tribe",
                &format!("  same_site: {same_site}\n")
            )));
        }
        assert!(!parses(&sso_with("HS256", "tribe", "  same_site: loose\n")));
        for secure in ["auto", "true", "No"] {
            assert!(parses(&sso_with(
                "HS256",
                "tribe",
                &format!("  secure: {secure}\n")
            )));
        }
        // Every HMAC algorithm parses with a secret; the asymmetric ones are refused here only for the missing
        // public key file, never as an unknown algorithm.
        for algorithm in ALGORITHMS {
            let errors = Config::parse(&sso_with(algorithm, "tribe", ""), "t", &|_| None)
                .err()
                .map(|e| e.errors)
                .unwrap_or_default();
            assert!(
                errors.iter().all(|e| e.key != "sso.keys[0].algorithm"),
                "{algorithm}: {errors:?}"
            );
        }
    }

    #[test]
    fn any_case_spells_every_case() {
        assert_eq!(any_case(&["on", "off"]), "^(?:[Oo][Nn]|[Oo][Ff][Ff])$");
    }

    #[test]
    fn the_schema_is_closed_and_described() {
        let schema = json_schema();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["additionalProperties"], false);
        assert!(schema["$defs"]["Duration"]["anyOf"].is_array());
        assert_eq!(schema["$defs"]["Upstream"]["additionalProperties"], false);
    }
}
