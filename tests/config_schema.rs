//! `ssogate config-schema`: the binary's output is a valid draft 2020-12 JSON Schema (checked by the Python
//! `jsonschema` package, an independent implementation), the shipped example validates against it, and files the
//! parser refuses for their structure or values fail it too. The example and the schema name the same keys, so
//! neither can gain a key the other lacks.
//!
//! The validator is `jsonschema` from tests/interop/requirements.txt in `.venv/` (else `python3` if it has it).
//! Without it the validation test prints a SKIPPED line and passes, except with `CI=true`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::Scratch;
use serde_json::{Value, json};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn example_text() -> String {
    std::fs::read_to_string(repo().join("config/ssogate.example.yaml")).unwrap()
}

/// The schema as the binary prints it.
fn schema() -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_ssogate"))
        .arg("config-schema")
        .env_remove("SSOGATE_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("config-schema prints JSON")
}

/// The environment the example file reads its secrets from.
fn example_env(name: &str) -> Option<String> {
    match name {
        "SSOGATE_SSO_SECRET" => Some("an-example-sso-secret-of-32-bytes-at-least".into()),
        "SSOGATE_SESSION_SECRET" => Some("an-example-session-secret-of-32-bytes-at-least".into()),
        "T" => Some("5s".into()),
        "N" => Some("4096".into()),
        _ => None,
    }
}

/// A YAML file as the gateway reads it (yaml_serde, YAML 1.2), as JSON for the validator.
fn yaml_to_json(text: &str) -> Value {
    yaml_serde::from_str(text).unwrap()
}

/// The example file with the first occurrence of `from` (whole lines, indentation included) replaced by `to`.
fn example_with(from: &str, to: &str) -> String {
    let text = example_text();
    assert!(text.contains(from), "the example no longer has {from:?}");
    text.replacen(from, to, 1)
}

/// A Python with `jsonschema`, or why there is none.
fn find_validator() -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    for program in [repo().join(".venv/bin/python"), PathBuf::from("python3")] {
        match Command::new(&program)
            .args(["-c", "import jsonschema"])
            .output()
        {
            Ok(output) if output.status.success() => return Ok(program),
            Ok(output) => tried.push(format!(
                "{}: {}",
                program.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Err(error) => tried.push(format!("{}: {error}", program.display())),
        }
    }
    Err(format!(
        "Python jsonschema not found ({})",
        tried.join("; ")
    ))
}

/// Checks the schema against the draft 2020-12 meta-schema, then validates each document: `None` when valid, else
/// the validator's most relevant message (`best_match` looks inside `anyOf` for the leaf at fault).
const VALIDATE: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)
results = []
for document in json.load(open(sys.argv[2])):
    error = best_match(validator.iter_errors(document))
    results.append(None if error is None else "%s: %s" % ("/".join(map(str, error.absolute_path)), error.message))
json.dump(results, sys.stdout)
"#;

fn validate(python: &Path, schema: &Value, documents: &[Value]) -> Vec<Option<String>> {
    let scratch = Scratch::new("schema-validate");
    let schema_path = scratch.write("schema.json", &schema.to_string());
    let documents_path = scratch.write(
        "documents.json",
        &Value::from(documents.to_vec()).to_string(),
    );
    let mut child = Command::new(python)
        .arg("-")
        .arg(&schema_path)
        .arg(&documents_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(VALIDATE.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the schema is not a valid draft 2020-12 schema, or the validator failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_schema_is_valid_and_judges_files_as_the_parser_does() {
    let python = match find_validator() {
        Ok(python) => python,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "{why}; CI=true, so this is a failure: .ci/run installs tests/interop/requirements.txt"
            )
        }
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "SKIPPED config_schema validation: {why}");
            return;
        }
    };
    let schema = schema();

    // (file text, what the schema should say); each is also given to the parser, which must agree.
    let valid = [
        example_text(),
        example_with("  timeout: 60s\n", "  timeout: 1h30m\n"),
        example_with("  timeout: 60s\n", "  timeout: ${T}\n"),
        example_with("workers: auto\n", "workers: 4\n"),
        example_with(
            "  max_header_bytes: 65536\n",
            "  max_header_bytes: \"${N}\"\n",
        ),
        example_with("  preserve_host: true\n", "  preserve_host: yes\n"),
        example_with("  same_site: lax\n", "  same_site: Strict\n"),
        example_with("  sso_per_ip: 10/s\n", "  sso_per_ip: 5/m burst 10\n"),
        example_with("  sso_per_subject: 1/s\n", "  sso_per_subject: off\n"),
        example_with("  format: text\n", "  format: json\n"),
        example_with("    - profile: tribe\n", "    - profile: bettermode\n"),
    ];
    let invalid = [
        (
            example_with(
                "listen: 127.0.0.1:8080\n",
                "listne: 127.0.0.1:8080\nlisten: 127.0.0.1:8080\n",
            ),
            "listne",
        ),
        (
            example_with("  timeout: 60s\n", "  timeout: 5 minutes\n"),
            "upstream/timeout",
        ),
        (
            example_with("  timeout: 60s\n", "  timeout: 60\n"),
            "upstream/timeout",
        ),
        (
            example_with(
                "      secret: \"${SSOGATE_SSO_SECRET}\"\n",
                "      secert: x\n",
            ),
            "secert",
        ),
        (
            example_with("  format: text\n", "  format: yaml\n"),
            "log/format",
        ),
        (example_with("workers: auto\n", "workers: 0\n"), "workers"),
        (
            example_with("  max_header_bytes: 65536\n", "  max_header_bytes: 12\n"),
            "limits/max_header_bytes",
        ),
        (
            example_with("  sso_per_ip: 10/s\n", "  sso_per_ip: 10 per second\n"),
            "rate_limit/sso_per_ip",
        ),
        (
            example_with(
                "  secret: \"${SSOGATE_SESSION_SECRET}\"\n",
                "  secret: too-short\n",
            ),
            "session/secret",
        ),
        (
            example_with("      algorithm: HS256\n", "      algorithm: none\n"),
            "sso/keys/0/algorithm",
        ),
        (
            example_with("  preserve_host: true\n", "  preserve_host: maybe\n"),
            "upstream/preserve_host",
        ),
    ];
    let mut documents: Vec<Value> = valid.iter().map(|text| yaml_to_json(text)).collect();
    documents.extend(invalid.iter().map(|(text, _)| yaml_to_json(text)));
    let results = validate(&python, &schema, &documents);
    assert_eq!(results.len(), documents.len());

    for (text, result) in valid.iter().zip(&results) {
        assert_eq!(result, &None, "the schema refuses a valid file:\n{text}");
        let parsed = ssogate::Config::parse(text, "valid.yaml", &example_env);
        assert!(
            parsed.is_ok(),
            "the parser refuses what the schema accepts: {:?}",
            parsed.err()
        );
    }
    for ((text, place), result) in invalid.iter().zip(&results[valid.len()..]) {
        let message = result.as_deref().unwrap_or_else(|| {
            panic!("the schema accepts an invalid file (expected a complaint at {place})")
        });
        assert!(message.contains(place), "{place}: {message}");
        assert!(
            ssogate::Config::parse(text, "invalid.yaml", &example_env).is_err(),
            "the parser accepts what the schema refuses ({place})"
        );
    }
}

#[test]
fn every_key_has_a_description() {
    let schema = schema();
    let mut undescribed = Vec::new();
    walk_schema(&schema, &schema, "", &mut |path, property| {
        let described = property
            .get("description")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.trim().is_empty());
        if !described {
            undescribed.push(path.to_owned());
        }
    });
    assert!(
        undescribed.is_empty(),
        "keys without a description: {undescribed:?}"
    );
}

/// Every key of the example file (set, or shown commented out as `#key: value`) is in the schema, and every key of
/// the schema is in the example file.
#[test]
fn the_example_and_the_schema_name_the_same_keys() {
    let schema = schema();
    let mut schema_keys = BTreeSet::new();
    walk_schema(&schema, &schema, "", &mut |path, _| {
        schema_keys.insert(path.to_owned());
    });
    assert!(
        schema_keys.contains("sso.keys.algorithm") && schema_keys.contains("sso.custom_fields.*")
    );

    let text = example_text();
    let mut example_keys = BTreeSet::new();
    live_keys(&yaml_to_json(&text), "", &mut example_keys);
    let live = example_keys.len();
    commented_keys(&text, &mut example_keys);
    assert!(
        example_keys.len() > live,
        "the commented-out keys were not found"
    );

    let in_schema = |key: &str| {
        schema_keys.contains(key)
            || key
                .rsplit_once('.')
                .is_some_and(|(parent, _)| schema_keys.contains(&format!("{parent}.*")))
    };
    let unknown: Vec<_> = example_keys.iter().filter(|k| !in_schema(k)).collect();
    assert!(
        unknown.is_empty(),
        "keys in the example but not in the schema: {unknown:?}"
    );
    let missing: Vec<_> = schema_keys
        .iter()
        .filter(|k| !k.ends_with(".*") && !example_keys.contains(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys in the schema but not in the example file: {missing:?}"
    );
}

/// Calls `visit(dotted.path, property schema)` for every property, through `$ref`, `anyOf` and array `items`; a map
/// whose keys are free (`additionalProperties` is a schema) gets the child `*`.
fn walk_schema(root: &Value, node: &Value, prefix: &str, visit: &mut dyn FnMut(&str, &Value)) {
    let node = resolve(root, node);
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            visit(&path, property);
            walk_schema(root, property, &path, visit);
        }
    }
    if let Some(items) = node.get("items") {
        walk_schema(root, items, prefix, visit);
    }
    if let Some(map) = node.get("additionalProperties").filter(|v| v.is_object()) {
        let path = format!("{prefix}.*");
        visit(&path, &json!({"description": "a free key"}));
        walk_schema(root, map, &path, visit);
    }
    for alternative in node
        .get("anyOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        walk_schema(root, alternative, prefix, visit);
    }
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            root.pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"))
        }
        None => node,
    }
}

fn live_keys(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                out.insert(path.clone());
                live_keys(child, &path, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| live_keys(item, prefix, out)),
        _ => {}
    }
}

/// Key paths of the example's commented-out settings: lines whose `#` is followed by the YAML itself (`#key:` or,
/// inside a commented block, `#  key:`); prose comments have one space after the `#`. The `#` is dropped and the
/// line read in place, its indentation placing it among the live keys around it.
fn commented_keys(text: &str, out: &mut BTreeSet<String>) {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for raw in text.lines() {
        let trimmed = raw.trim_start();
        let line = match trimmed.strip_prefix('#') {
            Some(rest) if !rest.starts_with(' ') || rest.starts_with("  ") => {
                let indent = raw.len() - trimmed.len();
                format!("{}{rest}", " ".repeat(indent))
            }
            Some(_) => continue,
            None => raw.to_owned(),
        };
        let body_start = line.trim_start();
        if body_start.is_empty() || body_start.starts_with('#') {
            continue;
        }
        let mut indent = line.len() - body_start.len();
        let mut body = body_start;
        while let Some(after) = body.strip_prefix("- ") {
            indent += 2;
            body = after.trim_start();
        }
        // A mapping key ends at ": " or at a ':' closing the line (not the ':' of a URL or an address).
        let end = body
            .find(": ")
            .or_else(|| body.ends_with(':').then(|| body.len() - 1));
        let Some(end) = end else { continue };
        let key = &body[..end];
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            continue;
        }
        while stack.last().is_some_and(|(depth, _)| *depth >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_owned()));
        if trimmed.starts_with('#') {
            out.insert(
                stack
                    .iter()
                    .map(|(_, k)| k.as_str())
                    .collect::<Vec<_>>()
                    .join("."),
            );
        }
    }
}
