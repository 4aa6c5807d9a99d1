//! Tokens minted by the libraries the platforms' docs tell integrators to use -- PyJWT (`jwt.encode`) and node
//! `jsonwebtoken` (`jwt.sign`) -- run as real subprocesses (tests/interop/mint.py, tests/interop/mint.js), against a
//! gateway over real sockets. Where `sso.rs` builds each defect on purpose in Rust, this file checks that what real
//! integrators send is understood: their header field order, their JSON escaping (PyJWT writes `\uXXXX`, node raw
//! UTF-8), integer `sub`s, `kid` through `keyid`, RS256/ES256 signatures, and their defaults (node adds `iat`).
//!
//! The minters are installed by `.ci/run` (see tests/interop/README.md). Without them each test prints a loud
//! `SKIPPED` line and passes, except with `CI=true`, where a missing minter fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::sso::{NEXT_SECRET, SECRET, SESSION_SECRET, open_session, session_cookie, sso_yaml};
use common::upstream::EchoUpstream;
use common::{Scratch, TestGateway, client};
use serde_json::{Value, json};

const SPOT: &str = "129487c9-6acc-43d9-ab96-182ded763538";

// ------------------------------------------------------------------------------------------------------------------
// The minters
// ------------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lib {
    PyJwt,
    Node,
}

impl Lib {
    fn name(self) -> &'static str {
        match self {
            Lib::PyJwt => "PyJWT",
            Lib::Node => "node jsonwebtoken",
        }
    }
}

/// A way to run one of the minting scripts.
#[derive(Debug, Clone)]
struct Minter {
    lib: Lib,
    program: PathBuf,
    script: PathBuf,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn interop_dir() -> PathBuf {
    repo().join("tests/interop")
}

/// Writes straight to the process's stderr, past libtest's capture, so a skip is seen without `--nocapture`.
fn loud(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Runs `program args…` with `stdin`, in `dir`: its stdout on exit 0, else why not.
fn run(program: &Path, args: &[&str], stdin: &str, dir: &Path) -> Result<String, String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .env("NODE_PATH", interop_dir().join("node_modules"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).map_err(|e| e.to_string())?)
    } else {
        Err(format!(
            "{} {args:?} exited with {}: {}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The Python that has PyJWT with its `crypto` extra: the repository's `.venv`, else `python3` if it has both.
fn find_pyjwt() -> Result<Minter, String> {
    let mut tried = Vec::new();
    for program in [repo().join(".venv/bin/python"), PathBuf::from("python3")] {
        match run(&program, &["-c", "import jwt, cryptography"], "", repo()) {
            Ok(_) => {
                return Ok(Minter {
                    lib: Lib::PyJwt,
                    program,
                    script: interop_dir().join("mint.py"),
                });
            }
            Err(why) => tried.push(why),
        }
    }
    Err(format!("PyJWT[crypto] not found ({})", tried.join("; ")))
}

fn find_node() -> Result<Minter, String> {
    let node = PathBuf::from("node");
    run(
        &node,
        &["-e", "require('jsonwebtoken')"],
        "",
        &interop_dir(),
    )
    .map_err(|why| {
        format!("node with jsonwebtoken in tests/interop/node_modules not found ({why})")
    })?;
    Ok(Minter {
        lib: Lib::Node,
        program: node,
        script: interop_dir().join("mint.js"),
    })
}

/// The minter for `lib`, looked up once per test binary. `None` means skip: the caller returns at once. With
/// `CI=true` a missing minter panics instead, so CI cannot pass by skipping.
fn minter(lib: Lib, test: &str) -> Option<Minter> {
    static PYJWT: OnceLock<Result<Minter, String>> = OnceLock::new();
    static NODE: OnceLock<Result<Minter, String>> = OnceLock::new();
    let found = match lib {
        Lib::PyJwt => PYJWT.get_or_init(find_pyjwt),
        Lib::Node => NODE.get_or_init(find_node),
    };
    match found {
        Ok(minter) => Some(minter.clone()),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "{test}: {why}; CI=true, so this is a failure: .ci/run installs it (tests/interop/README.md)"
            )
        }
        Err(why) => {
            loud(&format!(
                "SKIPPED: {test}: {why} (run .ci/run or see tests/interop/README.md)"
            ));
            None
        }
    }
}

/// Both minters, or `None` (skip) if either is missing.
fn both(test: &str) -> Option<[Minter; 2]> {
    let py = minter(Lib::PyJwt, test);
    let node = minter(Lib::Node, test);
    Some([py?, node?])
}

impl Minter {
    /// Mints one token from the scripts' JSON contract (see mint.py).
    async fn mint(&self, spec: Value) -> String {
        self.mint_many(vec![spec]).await.pop().unwrap()
    }

    /// Mints several tokens with one process (`--lines`).
    async fn mint_many(&self, specs: Vec<Value>) -> Vec<String> {
        let this = self.clone();
        let input: String = specs.iter().map(|spec| format!("{spec}\n")).collect();
        let count = specs.len();
        let out = tokio::task::spawn_blocking(move || {
            run(
                &this.program,
                &[this.script.to_str().unwrap(), "--lines"],
                &input,
                &interop_dir(),
            )
            .unwrap_or_else(|why| panic!("{} could not mint: {why}", this.lib.name()))
        })
        .await
        .unwrap();
        let tokens: Vec<String> = out.lines().map(str::to_owned).collect();
        assert_eq!(tokens.len(), count, "{} printed {out:?}", self.lib.name());
        for token in &tokens {
            assert_eq!(
                token.split('.').count(),
                3,
                "{} printed {token:?}",
                self.lib.name()
            );
        }
        tokens
    }

    /// An HS256 token with the docs' call: `secret` as the "private key", no kid.
    async fn hs256(&self, claims: Value, secret: &str) -> String {
        self.mint(json!({"claims": claims, "secret": secret, "algorithm": "HS256"}))
            .await
    }

    fn python(&self) -> &Path {
        assert_eq!(self.lib, Lib::PyJwt);
        &self.program
    }
}

/// The Tribe docs' payload: `sub: user.id` (a number), email, name, tagline, `iat` now and `exp` 60 s later.
fn tribe(sub: i64, email: &str, name: &str) -> Value {
    json!({
        "sub": sub, "email": email, "name": name, "tagline": "Keeps the forum tidy",
        "iat": "now", "exp": "now+60"
    })
}

/// The MeltingSpot docs' payload, plus the `iat`/`exp` the docs recommend (their sample has neither).
fn meltingspot(sub: &str, first: &str, last: &str, email: &str) -> Value {
    json!({
        "sub": sub, "firstName": first, "lastName": last, "email": email, "title": "Community manager",
        "lang": "fr", "timezone": "Europe/Paris", "iat": "now", "exp": "now+60"
    })
}

// ------------------------------------------------------------------------------------------------------------------
// The gateway side
// ------------------------------------------------------------------------------------------------------------------

async fn start(scratch: &Scratch, extra: &str) -> (TestGateway, EchoUpstream) {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::start(&sso_yaml(&scratch.0, "", extra), upstream.addr).await;
    (gateway, upstream)
}

async fn get(gateway: &TestGateway, path_and_query: &str) -> reqwest::Response {
    client()
        .get(gateway.url(path_and_query))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

async fn tribe_login(gateway: &TestGateway, token: &str) -> reqwest::Response {
    get(
        gateway,
        &format!("/api/auth/sso?jwt={token}&redirect_uri=/spaces"),
    )
    .await
}

/// Status, stable error code and detail of a response (`None`s for a 303).
async fn outcome(response: reqwest::Response) -> (u16, Option<String>, Option<String>) {
    let status = response.status().as_u16();
    if status == 303 {
        return (status, None, None);
    }
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let detail = body["detail"].as_str().map(str::to_owned).or(Some(text));
    (status, body["error"].as_str().map(str::to_owned), detail)
}

/// Asserts a signed-in answer: 303 to `location`, a sealed HttpOnly session, no caching, no referrer. Returns the
/// session.
async fn assert_signed_in(
    response: reqwest::Response,
    location: &str,
    what: &str,
) -> ssogate::session::Session {
    let headers = response.headers().clone();
    let cookie = session_cookie(&response);
    let (status, code, detail) = outcome(response).await;
    assert_eq!(status, 303, "{what}: refused with {code:?}: {detail:?}");
    assert_eq!(headers["location"], location, "{what}");
    assert_eq!(headers["cache-control"], "no-store", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
    let set_cookie = headers
        .get("set-cookie")
        .expect("Set-Cookie")
        .to_str()
        .unwrap();
    assert!(set_cookie.contains("HttpOnly"), "{what}: {set_cookie}");
    open_session(&cookie.expect("the session cookie"))
        .unwrap_or_else(|| panic!("{what}: the cookie does not open"))
}

async fn assert_refused(response: reqwest::Response, status: u16, code: &str, what: &str) {
    let (got, got_code, detail) = outcome(response).await;
    assert_eq!(
        (got, got_code.as_deref()),
        (status, Some(code)),
        "{what}: {detail:?}"
    );
}

/// A member's stored fields, read from the gateway's SQLite file with Python's sqlite3 (no SQLite in the test deps).
async fn stored_member(py: &Minter, db: &Path, sub: &str) -> Value {
    let script = "import json, sqlite3, sys\n\
db = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)\n\
db.row_factory = sqlite3.Row\n\
rows = [dict(r) for r in db.execute('SELECT * FROM members WHERE sub = ?', (sys.argv[2],))]\n\
print(json.dumps(rows))\n";
    let (python, db, sub) = (py.python().to_owned(), db.to_owned(), sub.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        run(
            &python,
            &["-c", script, db.to_str().unwrap(), &sub],
            "",
            repo(),
        )
    })
    .await
    .unwrap()
    .unwrap_or_else(|why| panic!("reading the directory: {why}"));
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 1, "members with sub {out}");
    rows.into_iter().next().unwrap()
}

// ------------------------------------------------------------------------------------------------------------------
// Tribe
// ------------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn tribe_pyjwt_docs_payload_signs_in_and_keeps_the_member() {
    let Some(py) = minter(
        Lib::PyJwt,
        "tribe_pyjwt_docs_payload_signs_in_and_keeps_the_member",
    ) else {
        return;
    };
    let scratch = Scratch::new("interop-tribe-py");
    let (gateway, upstream) = start(&scratch, "").await;

    let token = py
        .hs256(tribe(4217, "ada@example.com", "Ada Lovelace"), SECRET)
        .await;
    let first = assert_signed_in(
        tribe_login(&gateway, &token).await,
        "/spaces",
        "PyJWT first login",
    )
    .await;

    // A later login of the same user, with a fresh token (new iat; the default per-subject limit is 1/s).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let token = py
        .hs256(tribe(4217, "ada@example.com", "Ada King"), SECRET)
        .await;
    let second = assert_signed_in(
        tribe_login(&gateway, &token).await,
        "/spaces",
        "PyJWT second login",
    )
    .await;
    assert_eq!(
        second.member_id, first.member_id,
        "the same sub is the same member"
    );
    assert_ne!(
        second.id, first.id,
        "every login gets a new session id (no fixation)"
    );
    assert_eq!(
        upstream.count(),
        0,
        "the entry route never reaches the forum"
    );

    // Tribe updates the profile on every login; an integer sub is stored as its decimal text.
    let member = stored_member(&py, &scratch.0.join("ssogate.db"), "4217").await;
    assert_eq!(member["name"], "Ada King");
    assert_eq!(member["tagline"], "Keeps the forum tidy");
}

#[tokio::test]
async fn tribe_node_get_alias_and_form_post() {
    let Some(node) = minter(Lib::Node, "tribe_node_get_alias_and_form_post") else {
        return;
    };
    let scratch = Scratch::new("interop-tribe-node");
    let (gateway, _upstream) = start(&scratch, "").await;

    let token = node
        .hs256(tribe(7001, "grace@example.com", "Grace Hopper"), SECRET)
        .await;
    let first = assert_signed_in(tribe_login(&gateway, &token).await, "/spaces", "node jwt=").await;

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let token = node
        .hs256(tribe(7001, "grace@example.com", "Grace Hopper"), SECRET)
        .await;
    let response = get(
        &gateway,
        &format!("/api/auth/sso?token={token}&redirect_uri=/spaces"),
    )
    .await;
    let second = assert_signed_in(response, "/spaces", "node token= alias").await;
    assert_eq!(second.member_id, first.member_id);
    assert_ne!(second.id, first.id);

    // A form POST (an integrator's auto-submitting form), another user.
    let token = node
        .hs256(tribe(7002, "alan@example.com", "Alan Turing"), SECRET)
        .await;
    let response = client()
        .post(gateway.url("/api/auth/sso"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(format!("jwt={token}&redirect_uri=/x"))
        .send()
        .await
        .unwrap();
    let third = assert_signed_in(response, "/x", "node form POST").await;
    assert_ne!(
        third.member_id, first.member_id,
        "another sub is another member"
    );
}

// ------------------------------------------------------------------------------------------------------------------
// MeltingSpot
// ------------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn meltingspot_flow_with_both_libraries_and_the_spot_alias() {
    let Some(minters) = both("meltingspot_flow_with_both_libraries_and_the_spot_alias") else {
        return;
    };
    let scratch = Scratch::new("interop-ms");
    let (gateway, _upstream) = start(&scratch, "").await;
    let referrer = format!("/spot/{SPOT}/lives");

    let mut firsts = Vec::new();
    for (i, minter) in minters.iter().enumerate() {
        let claims = meltingspot(
            &format!("ms-user-{i}"),
            "Marie",
            "Curie",
            &format!("marie{i}@example.fr"),
        );
        let token = minter.hs256(claims, SECRET).await;
        let response = get(
            &gateway,
            &format!("/sso/jwt?ms_token={token}&referrerUrl={referrer}"),
        )
        .await;
        firsts.push(
            assert_signed_in(
                response,
                &referrer,
                &format!("{} /sso/jwt", minter.lib.name()),
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (i, minter) in minters.iter().enumerate() {
        let claims = meltingspot(
            &format!("ms-user-{i}"),
            "Marie",
            "Curie",
            &format!("marie{i}@example.fr"),
        );
        let token = minter.hs256(claims, SECRET).await;
        let response = get(
            &gateway,
            &format!("/spot/{SPOT}/sso/jwt?ms_token={token}&referrerUrl={referrer}"),
        )
        .await;
        let again = assert_signed_in(
            response,
            &referrer,
            &format!("{} /spot/{{id}}/sso/jwt", minter.lib.name()),
        )
        .await;
        assert_eq!(
            again.member_id,
            firsts[i].member_id,
            "{}",
            minter.lib.name()
        );
        assert_ne!(again.id, firsts[i].id, "{}", minter.lib.name());
    }
    assert_ne!(firsts[0].member_id, firsts[1].member_id);
}

#[tokio::test]
async fn meltingspot_sample_without_exp_is_refused_by_default() {
    let Some(minters) = both("meltingspot_sample_without_exp_is_refused_by_default") else {
        return;
    };
    let scratch = Scratch::new("interop-ms-noexp");
    let (gateway, _upstream) = start(&scratch, "").await;
    for (i, minter) in minters.iter().enumerate() {
        // Exactly the docs' sample: no iat, no exp (node jsonwebtoken adds an iat of its own; PyJWT adds nothing).
        let claims = json!({
            "sub": format!("sample-{i}"), "firstName": "Jean", "lastName": "Dupont",
            "email": format!("jean{i}@example.fr"), "title": "CTO", "lang": "fr", "timezone": "Europe/Paris"
        });
        let token = minter.hs256(claims, SECRET).await;
        let response = get(
            &gateway,
            &format!("/sso/jwt?ms_token={token}&referrerUrl=/spot/{SPOT}/lives"),
        )
        .await;
        assert_refused(response, 400, "missing_exp", minter.lib.name()).await;
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Encoding, keys, replays
// ------------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn non_ascii_names_from_both_libraries_are_accepted_and_stored_as_sent() {
    let Some([py, node]) =
        both("non_ascii_names_from_both_libraries_are_accepted_and_stored_as_sent")
    else {
        return;
    };
    let scratch = Scratch::new("interop-utf8");
    // Ten logins, the default per-address burst: lift that limit so the test does not depend on timing.
    let (gateway, _upstream) = start(&scratch, "rate_limit:\n  sso_per_ip: off\n").await;
    let db = scratch.0.join("ssogate.db");
    let names = ["Zoë Ñúñez", "李小龍", "Ada 🐉 Lovelace 👩🏽‍💻", "Ångström Ǆ ß"];

    let mut sub = 100;
    for minter in [&py, &node] {
        for name in names {
            sub += 1;
            let mut claims = tribe(sub, &format!("u{sub}@example.com"), name);
            claims["tagline"] = json!(format!("« {name} »"));
            let token = minter.hs256(claims, SECRET).await;
            let what = format!("{} Tribe {name:?}", minter.lib.name());
            assert_signed_in(tribe_login(&gateway, &token).await, "/spaces", &what).await;
            let member = stored_member(&py, &db, &sub.to_string()).await;
            assert_eq!(member["name"], name, "{what}");
            assert_eq!(member["tagline"], format!("« {name} »"), "{what}");
        }
        let ms_sub = format!("ms-{}", minter.lib.name());
        let claims = meltingspot(&ms_sub, "李", "小龍 🐉", &format!("li{sub}@example.cn"));
        let token = minter.hs256(claims, SECRET).await;
        let response = get(
            &gateway,
            &format!("/sso/jwt?ms_token={token}&referrerUrl=/spot/{SPOT}/lives"),
        )
        .await;
        let what = format!("{} MeltingSpot 李 小龍 🐉", minter.lib.name());
        assert_signed_in(response, &format!("/spot/{SPOT}/lives"), &what).await;
        let member = stored_member(&py, &db, &ms_sub).await;
        assert_eq!(member["first_name"], "李", "{what}");
        assert_eq!(member["last_name"], "小龍 🐉", "{what}");
        assert_eq!(member["name"], "李 小龍 🐉", "{what}");
    }
}

#[tokio::test]
async fn kid_picks_the_key_and_an_unknown_kid_is_refused() {
    let Some(minters) = both("kid_picks_the_key_and_an_unknown_kid_is_refused") else {
        return;
    };
    let scratch = Scratch::new("interop-kid");
    let (gateway, _upstream) = start(&scratch, "").await;
    for (i, minter) in minters.iter().enumerate() {
        let sub = 300 + i64::try_from(i).unwrap();
        let next = minter
            .mint(json!({
                "claims": tribe(sub, &format!("k{sub}@example.com"), "Key Rotation"),
                "secret": NEXT_SECRET, "algorithm": "HS256", "headers": {"kid": "next"}
            }))
            .await;
        assert_signed_in(
            tribe_login(&gateway, &next).await,
            "/spaces",
            &format!("{} kid next", minter.lib.name()),
        )
        .await;

        let nope = minter
            .mint(json!({
                "claims": tribe(sub + 10, &format!("n{sub}@example.com"), "Unknown Key"),
                "secret": NEXT_SECRET, "algorithm": "HS256", "headers": {"kid": "nope"}
            }))
            .await;
        assert_refused(
            tribe_login(&gateway, &nope).await,
            401,
            "unknown_key",
            minter.lib.name(),
        )
        .await;

        // The next key's token named as the main key's: the signature does not hold.
        let wrong = minter
            .mint(json!({
                "claims": tribe(sub + 20, &format!("w{sub}@example.com"), "Wrong Key"),
                "secret": NEXT_SECRET, "algorithm": "HS256", "headers": {"kid": "main"}
            }))
            .await;
        assert_refused(
            tribe_login(&gateway, &wrong).await,
            401,
            "bad_signature",
            minter.lib.name(),
        )
        .await;
    }
}

#[tokio::test]
async fn a_library_minted_token_works_once() {
    let Some(minters) = both("a_library_minted_token_works_once") else {
        return;
    };
    let scratch = Scratch::new("interop-replay");
    let (gateway, _upstream) = start(&scratch, "").await;
    for (i, minter) in minters.iter().enumerate() {
        let sub = 400 + i64::try_from(i).unwrap();
        let token = minter
            .hs256(
                tribe(sub, &format!("r{sub}@example.com"), "Replay Target"),
                SECRET,
            )
            .await;
        assert_signed_in(
            tribe_login(&gateway, &token).await,
            "/spaces",
            minter.lib.name(),
        )
        .await;
        assert_refused(
            tribe_login(&gateway, &token).await,
            401,
            "token_replayed",
            minter.lib.name(),
        )
        .await;
        // Through the alias parameter it is still the same token.
        let response = get(
            &gateway,
            &format!("/api/auth/sso?token={token}&redirect_uri=/"),
        )
        .await;
        assert_refused(response, 401, "token_replayed", minter.lib.name()).await;
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Public-key algorithms
// ------------------------------------------------------------------------------------------------------------------

/// Generates a key pair with Python's `cryptography` into `dir`: (private PEM text, public PEM path).
async fn key_pair(py: &Minter, dir: &Path, kind: &str) -> (String, PathBuf) {
    let script = "import sys\n\
from cryptography.hazmat.primitives import serialization as s\n\
from cryptography.hazmat.primitives.asymmetric import ec, rsa\n\
kind, out = sys.argv[1], sys.argv[2]\n\
key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == 'rsa' \
else ec.generate_private_key(ec.SECP256R1())\n\
open(out + '.key.pem', 'wb').write(key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))\n\
open(out + '.pub.pem', 'wb').write(key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))\n";
    let base = dir.join(kind);
    let (python, kind_arg, base_arg) = (
        py.python().to_owned(),
        kind.to_owned(),
        base.to_str().unwrap().to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        run(&python, &["-c", script, &kind_arg, &base_arg], "", repo())
    })
    .await
    .unwrap()
    .unwrap_or_else(|why| panic!("key generation: {why}"));
    let private = std::fs::read_to_string(base.with_extension("key.pem")).unwrap();
    (private, base.with_extension("pub.pem"))
}

/// Gateway YAML like `sso_yaml`, but with exactly one public key.
fn public_key_yaml(dir: &Path, id: &str, algorithm: &str, public_key: &Path) -> String {
    format!(
        "listen: 127.0.0.1:0\nworkers: 2\nupstream:\n  url: http://{{upstream}}\n\
sso:\n  keys:\n    - id: {id}\n      algorithm: {algorithm}\n      public_key: {}\n\
session:\n  secret: {SESSION_SECRET}\n\
directory:\n  path: {}\n",
        public_key.display(),
        dir.join("ssogate.db").display()
    )
}

#[tokio::test]
async fn rs256_from_both_libraries_and_no_hmac_with_the_public_key() {
    let Some([py, node]) = both("rs256_from_both_libraries_and_no_hmac_with_the_public_key") else {
        return;
    };
    let scratch = Scratch::new("interop-rs256");
    let (private, public) = key_pair(&py, &scratch.0, "rsa").await;
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::start(
        &public_key_yaml(&scratch.0, "rsa", "RS256", &public),
        upstream.addr,
    )
    .await;

    for (i, minter) in [&py, &node].into_iter().enumerate() {
        let sub = 500 + i64::try_from(i).unwrap();
        for (j, headers) in [json!({}), json!({"kid": "rsa"})].into_iter().enumerate() {
            let sub = sub + 10 * i64::try_from(j).unwrap();
            let token = minter
                .mint(json!({
                    "claims": tribe(sub, &format!("rsa{sub}@example.com"), "Rivest Shamir"),
                    "private_key_pem": private, "algorithm": "RS256", "headers": headers
                }))
                .await;
            let what = format!("{} RS256 headers {headers}", minter.lib.name());
            assert_signed_in(tribe_login(&gateway, &token).await, "/spaces", &what).await;
        }
    }

    // The classic confusion: HS256 keyed with the public key's PEM text. PyJWT refuses to make such a token; node
    // jsonwebtoken makes it, so an attacker can. With and without naming the RSA key, it must not verify.
    let pem = std::fs::read_to_string(&public).unwrap();
    for (j, headers) in [json!({}), json!({"kid": "rsa"})].into_iter().enumerate() {
        let sub = 600 + i64::try_from(j).unwrap();
        let forged = node
            .mint(json!({
                "claims": tribe(sub, &format!("forged{sub}@example.com"), "Mallory"),
                "secret": pem, "algorithm": "HS256", "headers": headers
            }))
            .await;
        let (status, code, detail) = outcome(tribe_login(&gateway, &forged).await).await;
        assert_eq!(
            status, 401,
            "HS256 keyed with the RSA public key, headers {headers}: {code:?} {detail:?}"
        );
        assert_eq!(
            code.as_deref(),
            Some("algorithm_not_allowed"),
            "headers {headers}: {detail:?}"
        );
    }
}

#[tokio::test]
async fn es256_from_both_libraries() {
    let Some([py, node]) = both("es256_from_both_libraries") else {
        return;
    };
    let scratch = Scratch::new("interop-es256");
    let (private, public) = key_pair(&py, &scratch.0, "ec").await;
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::start(
        &public_key_yaml(&scratch.0, "ec", "ES256", &public),
        upstream.addr,
    )
    .await;
    for (i, minter) in [&py, &node].into_iter().enumerate() {
        let sub = 700 + i64::try_from(i).unwrap();
        let token = minter
            .mint(json!({
                "claims": tribe(sub, &format!("ec{sub}@example.com"), "Elliptic Curve"),
                "private_key_pem": private, "algorithm": "ES256", "headers": {"kid": "ec"}
            }))
            .await;
        assert_signed_in(
            tribe_login(&gateway, &token).await,
            "/spaces",
            &format!("{} ES256", minter.lib.name()),
        )
        .await;
        // An ES256 token is not an RS256 or HS256 one: the same key refuses another algorithm.
        let hs = minter
            .hs256(
                tribe(sub + 10, &format!("hs{sub}@example.com"), "Wrong Alg"),
                SECRET,
            )
            .await;
        assert_refused(
            tribe_login(&gateway, &hs).await,
            401,
            "algorithm_not_allowed",
            minter.lib.name(),
        )
        .await;
    }
}
