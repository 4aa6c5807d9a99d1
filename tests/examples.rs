//! The integrator examples (examples/node, examples/python, examples/php) run the way an integrator runs them: as
//! subprocesses with their pinned libraries (node `jsonwebtoken` from examples/node/node_modules, PyJWT from the
//! repository's .venv), against a gateway with SSO on in front of a real upstream. Each test follows the sign-in URL
//! the script printed, as a browser would, and checks what the forum then receives: the member's identity headers.
//!
//! `.ci/run` installs the libraries (`npm ci --prefix examples/node`, `.venv/bin/pip install -r
//! examples/python/requirements.txt`). Without them each test prints a loud `SKIPPED` line and passes, except with
//! `CI=true`, where it fails. PHP is not part of CI: `php -l` runs when `php` is on PATH, and the PHP example runs
//! end to end only when `composer install` has been run in examples/php.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use common::sso::{SECRET, session_cookie, sso_yaml};
use common::upstream::{EchoUpstream, Seen};
use common::{Scratch, TestGateway, client};
use serde_json::{Value, json};

/// Where the member lands: a query with `&` and `=`, so a return path that is not URL-encoded would be cut short.
const RETURN: &str = "/spaces?tab=new&page=2";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> PathBuf {
    repo().join("examples")
}

/// Writes straight to the process's stderr, past libtest's capture, so a skip is seen without `--nocapture`.
fn loud(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

// ------------------------------------------------------------------------------------------------------------------
// Finding and running the examples
// ------------------------------------------------------------------------------------------------------------------

/// One example script and the interpreter that runs it.
#[derive(Debug, Clone)]
struct Example {
    name: &'static str,
    program: PathBuf,
    script: PathBuf,
}

fn output(program: &Path, args: &[&str], dir: &Path) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{} {args:?}: {}: {}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// node, with `jsonwebtoken` resolved from examples/node/node_modules (the lock file's copy, not another one).
fn find_node() -> Result<Example, String> {
    let dir = examples().join("node");
    let node = PathBuf::from("node");
    let resolved =
        output(&node, &["-p", "require.resolve('jsonwebtoken')"], &dir).map_err(|why| {
            format!("node with jsonwebtoken in examples/node/node_modules not found ({why})")
        })?;
    if !Path::new(&resolved).starts_with(dir.join("node_modules")) {
        return Err(format!(
            "jsonwebtoken resolves to {resolved}, not examples/node/node_modules (run npm ci --prefix examples/node)"
        ));
    }
    Ok(Example {
        name: "node",
        program: node,
        script: dir.join("mint.js"),
    })
}

/// The repository's .venv Python, else `python3`, if it has PyJWT.
fn find_python() -> Result<Example, String> {
    let mut tried = Vec::new();
    for program in [repo().join(".venv/bin/python"), PathBuf::from("python3")] {
        match output(&program, &["-c", "import jwt"], repo()) {
            Ok(_) => {
                return Ok(Example {
                    name: "python",
                    program,
                    script: examples().join("python/mint.py"),
                });
            }
            Err(why) => tried.push(why),
        }
    }
    Err(format!("PyJWT not found ({})", tried.join("; ")))
}

/// The example, or `None` (skip: the caller returns at once). With `CI=true` a missing tool fails the test.
fn example(found: Result<Example, String>, test: &str) -> Option<Example> {
    match found {
        Ok(example) => Some(example),
        Err(why) if in_ci() => panic!(
            "{test}: {why}; CI=true, so this is a failure: .ci/run installs it (examples/README.md)"
        ),
        Err(why) => {
            loud(&format!(
                "SKIPPED: {test}: {why} (run .ci/run or see examples/README.md)"
            ));
            None
        }
    }
}

impl Example {
    /// Runs the script with `args`; the secret is set only when given (nothing is inherited from the test's env).
    async fn run(&self, secret: Option<&str>, args: Vec<String>) -> Output {
        let mut command = Command::new(&self.program);
        command
            .arg(&self.script)
            .args(&args)
            .current_dir(repo())
            .env_remove("SSOGATE_SSO_SECRET")
            .stdin(Stdio::null());
        if let Some(secret) = secret {
            command.env("SSOGATE_SSO_SECRET", secret);
        }
        let name = self.name;
        tokio::task::spawn_blocking(move || {
            command
                .output()
                .unwrap_or_else(|e| panic!("{name}: cannot run: {e}"))
        })
        .await
        .unwrap()
    }
}

/// A member as the scripts take it on the command line, with every optional claim the docs name.
struct Member {
    sub: &'static str,
    email: &'static str,
    first: &'static str,
    last: &'static str,
}

impl Member {
    fn args(&self, gateway: &TestGateway) -> Vec<String> {
        [
            ("--gateway", gateway.url("/")),
            ("--sub", self.sub.into()),
            ("--email", self.email.into()),
            ("--first-name", self.first.into()),
            ("--last-name", self.last.into()),
            (
                "--picture",
                format!("https://cdn.example.com/{}.png", self.sub),
            ),
            ("--tagline", "Keeps the forum tidy".into()),
            ("--title", "Community manager".into()),
            ("--lang", "fr".into()),
            ("--timezone", "America/Montreal".into()),
            ("--space", "space-general".into()),
            ("--space", "space-help".into()),
            ("--return", RETURN.into()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
    }

    fn name(&self) -> String {
        format!("{} {}", self.first, self.last)
    }
}

/// The two URLs the script printed (`tribe: URL` and `meltingspot: URL`), nothing else.
fn printed_urls(out: &Output, what: &str) -> (url::Url, url::Url) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{what} printed {stdout:?}");
    let url = |label: &str, line: &str| {
        let text = line
            .strip_prefix(label)
            .unwrap_or_else(|| panic!("{what}: expected {label:?}, got {line:?}"));
        url::Url::parse(text).unwrap_or_else(|e| panic!("{what}: {text:?}: {e}"))
    };
    (url("tribe: ", lines[0]), url("meltingspot: ", lines[1]))
}

/// The URL's query parameters, decoded, in order.
fn params(url: &url::Url) -> Vec<(String, String)> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A token's header and claims, decoded without verifying (the gateway does that).
fn decode(token: &str) -> (Value, Value) {
    let part = |i: usize| -> Value {
        let segment = token.split('.').nth(i).expect("three segments");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(segment)
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    (part(0), part(1))
}

/// The lifetime claims every token must carry: iat now, exp 60 s later (the docs' advice), a jti. Returns the jti.
fn check_lifetime(claims: &Value, what: &str) -> String {
    let now = common::sso::now();
    let iat = claims["iat"].as_i64().expect("iat is a number");
    let exp = claims["exp"].as_i64().expect("exp is a number");
    assert!((iat - now).abs() <= 30, "{what}: iat {iat}, now {now}");
    assert_eq!(exp - iat, 60, "{what}: exp - iat");
    let jti = claims["jti"].as_str().expect("jti is a string");
    assert!(
        jti.len() >= 16,
        "{what}: jti {jti:?} is too short to be unique"
    );
    jti.to_owned()
}

/// The claim names of a token, sorted.
fn claim_names(claims: &Value) -> Vec<String> {
    let mut names: Vec<String> = claims.as_object().unwrap().keys().cloned().collect();
    names.sort();
    names
}

// ------------------------------------------------------------------------------------------------------------------
// Following the URL as a browser would
// ------------------------------------------------------------------------------------------------------------------

/// Opens the sign-in URL, checks the 303 to the return path, then follows it with the session cookie and returns
/// what the forum received.
async fn follow(gateway: &TestGateway, url: &url::Url, what: &str) -> Seen {
    let response = client()
        .get(url.as_str())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response.headers().get("location").cloned();
    let cookie = session_cookie(&response);
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 303, "{what}: not signed in: {body}");
    assert_eq!(
        location.as_ref().and_then(|v| v.to_str().ok()),
        Some(RETURN),
        "{what}: the return path did not survive the URL"
    );
    let cookie = cookie.unwrap_or_else(|| panic!("{what}: no session cookie"));
    let landed = client()
        .get(gateway.url(RETURN))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(landed.status(), 200, "{what}: the forum page");
    Seen(landed.json().await.unwrap())
}

/// Opening the same URL again is refused: each token signs in once.
async fn assert_replay_refused(url: &url::Url, what: &str) {
    let response = client()
        .get(url.as_str())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_replayed")),
        "{what}: a second use of the link: {body}"
    );
}

fn assert_no_custom_fields(seen: &Seen, what: &str) {
    let custom: Vec<&str> = seen.0["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|pair| pair[0].as_str())
        .filter(|name| name.starts_with("x-auth-field-"))
        .collect();
    assert!(
        custom.is_empty(),
        "{what}: claims the docs do not name became custom fields: {custom:?}"
    );
}

/// The whole check for one example: both routes, each with its own member, through one gateway.
async fn signs_in_on_both_routes(example: &Example) {
    let scratch = Scratch::new(&format!("examples-{}", example.name));
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::start(&sso_yaml(&scratch.0, "", ""), upstream.addr).await;
    let what = |route: &str| format!("{} example, {route} route", example.name);

    // Tribe: the first URL of one run. Non-ASCII names check each library's JSON and the headers' encoding.
    let ada = Member {
        sub: "app-user-1815",
        email: "ada@example.com",
        first: "Ada",
        last: "Lovelace-Byron",
    };
    let out = example.run(Some(SECRET), ada.args(&gateway)).await;
    let (tribe, _) = printed_urls(&out, &what("tribe"));
    assert_eq!(
        tribe.as_str().split('?').next(),
        Some(gateway.url("/api/auth/sso").as_str())
    );
    let query = params(&tribe);
    let names: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["jwt", "redirect_uri"], "{}", what("tribe"));
    assert_eq!(query[1].1, RETURN);
    let (header, claims) = decode(&query[0].1);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(
        claim_names(&claims),
        [
            "email", "exp", "iat", "jti", "name", "picture", "spaceIds", "sub", "tagline"
        ],
        "{}: {claims}",
        what("tribe")
    );
    assert_eq!(claims["sub"], ada.sub);
    assert_eq!(claims["name"], ada.name());
    assert_eq!(claims["spaceIds"], json!(["space-general", "space-help"]));
    let tribe_jti = check_lifetime(&claims, &what("tribe"));

    let seen = follow(&gateway, &tribe, &what("tribe")).await;
    let user = seen.header("x-auth-user").expect("x-auth-user");
    assert_eq!(user.len(), 36, "the gateway's member id (a UUID): {user}");
    assert_eq!(seen.header("x-auth-email").as_deref(), Some(ada.email));
    assert_eq!(
        seen.header("x-auth-name").as_deref(),
        Some("Ada Lovelace-Byron")
    );
    assert_eq!(
        seen.header("x-auth-avatar").as_deref(),
        Some("https://cdn.example.com/app-user-1815.png")
    );
    assert_eq!(
        seen.header("x-auth-title").as_deref(),
        Some("Keeps the forum tidy"),
        "Tribe's tagline"
    );
    assert_eq!(
        seen.header("x-auth-first-name"),
        None,
        "Tribe sends no first name"
    );
    assert_no_custom_fields(&seen, &what("tribe"));
    assert_replay_refused(&tribe, &what("tribe")).await;

    // MeltingSpot: the second URL of another run, another member.
    let zoe = Member {
        sub: "app-user-2024",
        email: "zoe@example.fr",
        first: "Zoë",
        last: "Brontë",
    };
    let out = example.run(Some(SECRET), zoe.args(&gateway)).await;
    let (_, meltingspot) = printed_urls(&out, &what("meltingspot"));
    assert_eq!(
        meltingspot.as_str().split('?').next(),
        Some(gateway.url("/sso/jwt").as_str())
    );
    let query = params(&meltingspot);
    let names: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["ms_token", "referrerUrl"],
        "{}",
        what("meltingspot")
    );
    assert_eq!(query[1].1, RETURN);
    let (header, claims) = decode(&query[0].1);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(
        claim_names(&claims),
        [
            "avatarUrl",
            "email",
            "exp",
            "firstName",
            "iat",
            "jti",
            "lang",
            "lastName",
            "sub",
            "timezone",
            "title"
        ],
        "{}: {claims}",
        what("meltingspot")
    );
    assert_eq!(claims["firstName"], "Zoë");
    let meltingspot_jti = check_lifetime(&claims, &what("meltingspot"));
    assert_ne!(tribe_jti, meltingspot_jti, "every token has its own jti");

    let seen = follow(&gateway, &meltingspot, &what("meltingspot")).await;
    assert!(seen.header("x-auth-user").is_some());
    assert_eq!(seen.header("x-auth-email").as_deref(), Some(zoe.email));
    // Identity header values are percent-encoded UTF-8.
    assert_eq!(
        seen.header("x-auth-first-name").as_deref(),
        Some("Zo%C3%AB")
    );
    assert_eq!(
        seen.header("x-auth-last-name").as_deref(),
        Some("Bront%C3%AB")
    );
    assert_eq!(
        seen.header("x-auth-name").as_deref(),
        Some("Zo%C3%AB Bront%C3%AB")
    );
    assert_eq!(
        seen.header("x-auth-title").as_deref(),
        Some("Community manager")
    );
    assert_eq!(seen.header("x-auth-lang").as_deref(), Some("fr"));
    assert_eq!(
        seen.header("x-auth-timezone").as_deref(),
        Some("America/Montreal")
    );
    assert_eq!(
        seen.header("x-auth-avatar").as_deref(),
        Some("https://cdn.example.com/app-user-2024.png")
    );
    assert_no_custom_fields(&seen, &what("meltingspot"));
    assert_replay_refused(&meltingspot, &what("meltingspot")).await;
    assert_ne!(
        seen.header("x-auth-user"),
        Some(user),
        "two members, two ids"
    );
}

/// Without the secret, or with one the gateway would refuse, the script prints no URL and exits 2.
async fn refuses_an_unusable_secret_or_return_path(example: &Example) {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::plain(upstream.addr).await;
    let member = Member {
        sub: "1",
        email: "a@example.com",
        first: "A",
        last: "B",
    };
    let cases: [(Option<&str>, &str, &str); 4] = [
        (None, RETURN, "SSOGATE_SSO_SECRET"),
        (Some("only-31-bytes-long-secret-value"), RETURN, "32 bytes"),
        (Some(SECRET), "https://evil.example/", "--return"),
        (Some(SECRET), "//evil.example/", "--return"),
    ];
    for (secret, back, expected) in cases {
        let mut args = member.args(&gateway);
        let at = args.iter().position(|a| a == "--return").unwrap();
        args[at + 1] = back.into();
        let out = example.run(secret, args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: secret {secret:?}, return {back:?}: {stderr}",
            example.name
        );
        assert!(
            out.stdout.is_empty(),
            "{}: printed {:?}",
            example.name,
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            stderr.contains(expected),
            "{}: expected {expected:?} in {stderr:?}",
            example.name
        );
    }
}

// ------------------------------------------------------------------------------------------------------------------
// The tests
// ------------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn node_example_signs_in_on_both_routes() {
    let Some(node) = example(find_node(), "node_example_signs_in_on_both_routes") else {
        return;
    };
    signs_in_on_both_routes(&node).await;
}

#[tokio::test]
async fn python_example_signs_in_on_both_routes() {
    let Some(python) = example(find_python(), "python_example_signs_in_on_both_routes") else {
        return;
    };
    signs_in_on_both_routes(&python).await;
}

#[tokio::test]
async fn node_example_refuses_an_unusable_secret_or_return_path() {
    let Some(node) = example(
        find_node(),
        "node_example_refuses_an_unusable_secret_or_return_path",
    ) else {
        return;
    };
    refuses_an_unusable_secret_or_return_path(&node).await;
}

#[tokio::test]
async fn python_example_refuses_an_unusable_secret_or_return_path() {
    let Some(python) = example(
        find_python(),
        "python_example_refuses_an_unusable_secret_or_return_path",
    ) else {
        return;
    };
    refuses_an_unusable_secret_or_return_path(&python).await;
}

/// PHP is optional everywhere, CI included: `php -l` when `php` exists, and the whole flow when `composer install`
/// has put firebase/php-jwt into examples/php/vendor.
#[tokio::test]
async fn php_example_parses_and_signs_in_when_php_is_there() {
    let test = "php_example_parses_and_signs_in_when_php_is_there";
    let php = PathBuf::from("php");
    let dir = examples().join("php");
    if let Err(why) = output(&php, &["--version"], &dir) {
        loud(&format!(
            "SKIPPED: {test}: php not found ({why}); PHP is optional, CI included"
        ));
        return;
    }
    let lint = output(&php, &["-l", "mint.php"], &dir);
    assert!(
        lint.as_ref()
            .is_ok_and(|out| out.contains("No syntax errors")),
        "php -l examples/php/mint.php: {lint:?}"
    );
    if !dir.join("vendor/autoload.php").is_file() {
        loud(&format!(
            "SKIPPED (in part): {test}: examples/php/vendor is missing (composer install); only php -l ran"
        ));
        return;
    }
    let example = Example {
        name: "php",
        program: php,
        script: dir.join("mint.php"),
    };
    signs_in_on_both_routes(&example).await;
    refuses_an_unusable_secret_or_return_path(&example).await;
}
