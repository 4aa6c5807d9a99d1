//! `ssogate token check` as an integrator runs it: the real binary, a config file, tokens made wrong on purpose, and
//! a live gateway on the same directory to show the check neither uses a token up nor misses a used one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::sso::{NEXT_SECRET, SECRET, hs256, meltingspot_claims, now, sso_yaml, tribe_claims};
use common::upstream::EchoUpstream;
use common::{Scratch, TestGateway, client};
use serde_json::{Value, json};

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `ssogate --config <config> token check <args>`, with `stdin` piped in when given.
fn token_check(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssogate"));
    command
        .arg("--config")
        .arg(config)
        .args(["token", "check"])
        .args(args)
        .env_remove("SSOGATE_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The gateway's SSO config (keys `main` and `next`, directory in `scratch`) as a file; the upstream is never called.
fn config_file(scratch: &Scratch) -> PathBuf {
    let yaml = sso_yaml(&scratch.0, "", "").replace("{upstream}", "127.0.0.1:9");
    scratch.write("ssogate.yaml", &yaml)
}

/// The one line of `step` (optionally `[entry]`) in the text report.
fn line<'a>(output: &'a Output, label: &str) -> &'a str {
    let prefix = format!("{label}: ");
    output
        .stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| {
            panic!(
                "no {label:?} line in:\n{}\nstderr: {}",
                output.stdout, output.stderr
            )
        })
}

/// The number right after `before` in `text`.
fn number_after(text: &str, before: &str) -> i64 {
    let start = text
        .find(before)
        .unwrap_or_else(|| panic!("{before:?} not in {text:?}"))
        + before.len();
    text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {before:?} in {text:?}"))
}

fn assert_nothing_secret(output: &Output, token: &str) {
    for secret in [token, SECRET, NEXT_SECRET, common::sso::SESSION_SECRET] {
        assert!(
            !output.stdout.contains(secret) && !output.stderr.contains(secret),
            "a token or secret was printed:\n{}{}",
            output.stdout,
            output.stderr
        );
    }
}

#[test]
fn a_good_token_is_accepted_and_its_member_shown() {
    let scratch = Scratch::new("tc-good");
    let config = config_file(&scratch);
    let token = hs256(&tribe_claims(42, "ada@example.com", "Ada Lovelace"), SECRET);
    let out = token_check(&config, &[&token], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        line(&out, "structure"),
        r#"structure: ok (3 parts, header {"alg":"HS256","typ":"JWT"})"#
    );
    assert_eq!(
        line(&out, "key"),
        "key: ok (kid absent; trying keys main (HS256), next (HS256))"
    );
    assert_eq!(
        line(&out, "signature"),
        "signature: ok (verified with key main)"
    );
    assert!(
        line(&out, "time").starts_with("time: ok (iat "),
        "{}",
        out.stdout
    );
    assert!(line(&out, "claims [/api/auth/sso]").contains("ok (tribe profile"));
    // The default config has both entries: a Tribe token lacks MeltingSpot's names, and that is said too.
    assert!(
        line(&out, "claims [/sso/jwt]")
            .contains("FAIL: meltingspot profile: required claim firstName is missing")
    );
    let member = line(&out, "member [/api/auth/sso]");
    for part in [
        "ok (",
        "tribe profile",
        r#"sub "42""#,
        r#"email "ada@example.com""#,
        r#"name "Ada Lovelace""#,
    ] {
        assert!(member.contains(part), "{member}");
    }
    assert!(line(&out, "replay").starts_with("replay: not checked (no directory yet"));
    assert!(line(&out, "result").contains("accepted at /api/auth/sso (tribe)"));
    assert_nothing_secret(&out, &token);
    assert!(
        !scratch.0.join("ssogate.db").exists(),
        "a check must not create the directory"
    );
}

#[test]
fn a_token_signed_with_another_key_names_the_keys_tried() {
    let scratch = Scratch::new("tc-key");
    let config = config_file(&scratch);
    let token = hs256(
        &tribe_claims(42, "ada@example.com", "Ada"),
        "some-other-secret-that-is-long-enough-too",
    );
    let out = token_check(&config, &[&token], None);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        line(&out, "signature").starts_with(
            "signature: FAIL: signed with none of the configured keys (tried main, next). Is the secret the one in sso.keys?"
        ),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("time:"),
        "nothing after a bad signature can be trusted"
    );
    assert!(line(&out, "result").starts_with("result: REFUSED"));

    // A kid no key has is the key step's failure.
    let header = jsonwebtoken::Header {
        kid: Some("old-2019".into()),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
    };
    let token = common::sso::with_header(&header, &tribe_claims(1, "a@b.co", "A"), SECRET);
    let out = token_check(&config, &[&token], None);
    assert_eq!(out.code, 1);
    assert!(
        line(&out, "key").starts_with(
            r#"key: FAIL: no configured key has kid "old-2019" (keys: main HS256, next HS256)"#
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn an_expired_token_says_how_long_ago() {
    let scratch = Scratch::new("tc-exp");
    let config = config_file(&scratch);
    let now = now();
    let claims =
        json!({"sub": 1, "email": "a@b.co", "name": "A", "iat": now - 185, "exp": now - 125});
    let token = hs256(&claims, SECRET);
    let out = token_check(&config, &[&token, "--entry", "/api/auth/sso"], None);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let time = line(&out, "time");
    assert!(time.starts_with("time: FAIL: expired "), "{time}");
    let ago = number_after(time, "expired ");
    assert!((125..=128).contains(&ago), "{time}");
    assert!(
        time.contains("leeway 30 s") && time.contains("(exp 20"),
        "{time}"
    );
    // The other checks still run: the claims were fine.
    assert!(line(&out, "claims [/api/auth/sso]").contains(": ok ("));
}

#[test]
fn an_iat_in_the_future_points_at_the_clocks() {
    let scratch = Scratch::new("tc-clock");
    let config = config_file(&scratch);
    let now = now();
    let claims =
        json!({"sub": 1, "email": "a@b.co", "name": "A", "iat": now + 310, "exp": now + 370});
    let out = token_check(&config, &[&hs256(&claims, SECRET)], None);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let time = line(&out, "time");
    let ahead = number_after(time, "iat is ");
    assert!((307..=310).contains(&ahead), "{time}");
    assert!(
        time.contains(&format!(
            "s in the future: this machine's clock and the minting server's differ by about {ahead} s"
        )),
        "{time}"
    );
}

#[test]
fn missing_and_invalid_claims_are_named() {
    let scratch = Scratch::new("tc-claims");
    let config = config_file(&scratch);
    let now = now();
    let claims = json!({"sub": 7, "name": ["not", "text"], "iat": now, "exp": now + 60});
    let out = token_check(
        &config,
        &[&hs256(&claims, SECRET), "--entry", "/api/auth/sso"],
        None,
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(
        line(&out, "claims [/api/auth/sso]"),
        "claims [/api/auth/sso]: FAIL: tribe profile: required claim email is missing; claim name is invalid: must be a string"
    );
    assert!(
        !out.stdout.contains("[/sso/jwt]"),
        "--entry checks that entry alone"
    );
    assert!(
        !out.stdout.contains("member ["),
        "no member without valid claims"
    );

    let out = token_check(
        &config,
        &[&hs256(&claims, SECRET), "--entry", "/nowhere"],
        None,
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no entry route answers /nowhere"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_malformed_token_is_refused_at_the_structure() {
    let scratch = Scratch::new("tc-malformed");
    let config = config_file(&scratch);
    let out = token_check(&config, &["abc.def"], None);
    assert_eq!(out.code, 1);
    assert_eq!(
        line(&out, "structure"),
        "structure: FAIL: malformed token: a JWT has three dot-separated parts"
    );
    let out = token_check(&config, &["!!!.e30.sig"], None);
    assert_eq!(out.code, 1);
    assert_eq!(
        line(&out, "structure"),
        "structure: FAIL: malformed token: the header is not base64url"
    );
    assert!(!out.stdout.contains("key:"));
}

#[test]
fn the_token_may_come_on_stdin() {
    let scratch = Scratch::new("tc-stdin");
    let config = config_file(&scratch);
    let token = hs256(&tribe_claims(5, "e@example.com", "Eve"), SECRET);
    let out = token_check(&config, &[], Some(&format!("\n  {token}  \n")));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(line(&out, "member [/api/auth/sso]").contains(r#"email "e@example.com""#));
    let out = token_check(&config, &["-"], Some(&token));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = token_check(&config, &[], Some("  \n"));
    assert_eq!(out.code, 2, "an empty stdin is a usage error");
    assert!(out.stderr.contains("no token given"), "{}", out.stderr);
}

#[test]
fn a_whole_sign_in_url_is_understood() {
    let scratch = Scratch::new("tc-url");
    let config = config_file(&scratch);
    let token = hs256(
        &meltingspot_claims("ms-1", "Zoë", "Zed", "zoe@example.fr"),
        SECRET,
    );
    let url = format!(
        "https://forum.example.com/spot/abc-123/sso/jwt?ms_token={token}&referrerUrl=%2Fspaces"
    );
    let out = token_check(&config, &[&url], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let input = line(&out, "input");
    assert!(
        input.contains(
            "from the ms_token parameter of a URL for the entry route /sso/jwt (meltingspot)"
        ),
        "{input}"
    );
    // The URL's path chose the entry: the Tribe entry is not checked.
    assert!(!out.stdout.contains("[/api/auth/sso]"), "{}", out.stdout);
    assert!(line(&out, "member [/sso/jwt]").contains(r#"name "Zoë Zed""#));
    assert_nothing_secret(&out, &token);

    // A URL on another path: any of the platforms' parameter names.
    let tribe = hs256(&tribe_claims(9, "t@example.com", "T"), SECRET);
    let out = token_check(
        &config,
        &[],
        Some(&format!("http://localhost:8080/elsewhere?token={tribe}\n")),
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(line(&out, "input").contains("token parameter"));

    let out = token_check(
        &config,
        &["https://forum.example.com/api/auth/sso?redirect_uri=/"],
        None,
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("the URL has no token"),
        "{}",
        out.stderr
    );
}

#[test]
fn json_output_is_one_object_with_every_step() {
    let scratch = Scratch::new("tc-json");
    let config = config_file(&scratch);
    let good = hs256(&tribe_claims(42, "ada@example.com", "Ada"), SECRET);
    let out = token_check(
        &config,
        &[&good, "--json", "--entry", "/api/auth/sso"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["accepted"], true);
    let steps = report["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "input",
            "structure",
            "key",
            "signature",
            "time",
            "issuer",
            "audience",
            "jti",
            "claims",
            "replay",
            "member"
        ]
    );
    for step in steps {
        assert!(
            step["ok"].is_boolean() && step["detail"].is_string(),
            "{step}"
        );
    }
    assert_eq!(report["member"]["sub"], "42");
    assert_eq!(report["member"]["email"], "ada@example.com");
    assert_eq!(report["member"]["profile"], "tribe");
    assert_eq!(report["member"]["entry"], "/api/auth/sso");

    let now = now();
    let expired = hs256(
        &json!({"sub": 1, "email": "a@b.co", "name": "A", "iat": now - 100, "exp": now - 90}),
        SECRET,
    );
    let out = token_check(&config, &[&expired, "--json"], None);
    assert_eq!(out.code, 1);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["accepted"], false);
    assert!(report.get("member").is_none());
    let time = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "time")
        .unwrap();
    assert_eq!(time["ok"], false);
    assert_eq!(
        time["code"], "token_expired",
        "the gateway's own refusal code"
    );
}

#[test]
fn usage_and_config_errors_exit_2() {
    let scratch = Scratch::new("tc-usage");
    let plain = scratch.write(
        "plain.yaml",
        "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:9\n",
    );
    let out = token_check(&plain, &["a.b.c"], None);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no sso section"), "{}", out.stderr);
    let broken = scratch.write(
        "broken.yaml",
        "listen: 127.0.0.1:0\nupstream:\n  url: http://x\n  timeuot: 1s\n",
    );
    let out = token_check(&broken, &["a.b.c"], None);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("timeuot"), "{}", out.stderr);
}

/// The check against a live gateway on the same directory: it does not use the token up (the gateway still signs
/// the member in with it afterwards), and once the gateway has used it, the check sees the replay.
#[tokio::test]
async fn a_check_does_not_use_the_token_and_sees_it_used_by_a_live_gateway() {
    let scratch = Scratch::new("tc-live");
    let upstream = EchoUpstream::start().await;
    let yaml = sso_yaml(&scratch.0, "", "");
    let config = scratch.write(
        "ssogate.yaml",
        &yaml.replace("{upstream}", &upstream.addr.to_string()),
    );
    let gateway = TestGateway::start(&yaml, upstream.addr).await;
    let check = |args: Vec<String>| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            token_check(&config, &args, None)
        })
    };

    let mut claims = tribe_claims(77, "grace@example.com", "Grace Hopper");
    claims["jti"] = json!("one-time-77");
    let token = hs256(&claims, SECRET);
    let first = check(vec![token.clone()]).await.unwrap();
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert_eq!(line(&first, "replay"), "replay: ok (not used before)");
    assert!(
        line(&first, "member [/api/auth/sso]")
            .starts_with("member [/api/auth/sso]: ok (a new member:")
    );

    let response = client()
        .get(gateway.url(&format!("/api/auth/sso?jwt={token}&redirect_uri=/spaces")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "the checked token still signs in");
    assert!(common::sso::session_cookie(&response).is_some());

    let again = check(vec![token.clone()]).await.unwrap();
    assert_eq!(again.code, 1, "{}", again.stdout);
    assert!(
        line(&again, "replay").starts_with("replay: FAIL: this token was already used"),
        "{}",
        again.stdout
    );
    // The member exists now: the check names the gateway's id for them.
    let member = line(&again, "member [/api/auth/sso]");
    assert!(member.contains("ok (existing member "), "{member}");
    let json = check(vec![token.clone(), "--json".into()]).await.unwrap();
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    let replay = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "replay")
        .unwrap()
        .clone();
    assert_eq!(replay["code"], "token_replayed");

    // A token without jti is known by its whole text: the same holds.
    let plain = hs256(&tribe_claims(78, "kay@example.com", "Kay"), NEXT_SECRET);
    assert_eq!(check(vec![plain.clone()]).await.unwrap().code, 0);
    let response = client()
        .get(gateway.url(&format!("/api/auth/sso?jwt={plain}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let used = check(vec![plain]).await.unwrap();
    assert_eq!(used.code, 1);
    assert!(
        line(&used, "replay").starts_with("replay: FAIL"),
        "{}",
        used.stdout
    );
    gateway.stop().await;
}
