//! Operations: metrics, health and readiness, request ids, JSON logs, and reloading the config with SIGHUP.
//!
//! The reload test runs the real binary: a new signing key is applied while a request is in flight (which finishes),
//! sessions survive, and a broken file is refused with its key and line while the running config stays. The same
//! run's JSON log is checked line by line: every line parses, request lines carry their id, and no token, cookie or
//! secret appears anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::sso::{
    NEXT_SECRET, SECRET, SESSION_SECRET, hs256, meltingspot_claims, session_cookie, sso_yaml,
    tribe_claims,
};
use common::upstream::{EchoUpstream, Seen};
use common::{GatewayProcess, Scratch, TestGateway, client, minimal_yaml};
use serde_json::Value;

const NO_LIMITS: &str = "rate_limit:\n  sso_per_ip: off\n  sso_per_subject: off\n";
const ADMIN: &str = "admin:\n  listen: 127.0.0.1:0\n";

async fn get_text(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The value of the sample whose line starts with `series` (name and labels), if it is there.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

async fn metrics(admin: SocketAddr) -> String {
    let (status, text) = get_text(&format!("http://{admin}/metrics")).await;
    assert_eq!(status, 200);
    text
}

#[tokio::test]
async fn metrics_count_a_login_a_refusal_and_a_proxied_request() {
    let scratch = Scratch::new("ops-metrics");
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::start(
        &sso_yaml(&scratch.0, "", &format!("{NO_LIMITS}{ADMIN}")),
        upstream.addr,
    )
    .await;
    let admin = gateway.admin_addr.expect("admin listener");

    let (status, body) = get_text(&format!("http://{admin}/healthz")).await;
    assert_eq!((status, body.trim()), (200, "ok"));

    let token = hs256(&tribe_claims(41, "ada@example.com", "Ada"), SECRET);
    let login = client()
        .get(gateway.url(&format!("/api/auth/sso?jwt={token}&redirect_uri=/t/1")))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = session_cookie(&login).expect("session cookie");

    let mut expired = tribe_claims(42, "bob@example.com", "Bob");
    expired["iat"] = Value::from(common::sso::now() - 600);
    expired["exp"] = Value::from(common::sso::now() - 300);
    let refused = client()
        .get(gateway.url(&format!("/api/auth/sso?jwt={}", hs256(&expired, SECRET))))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let proxied = client()
        .get(gateway.url("/t/1"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200);

    let text = metrics(admin).await;
    for (series, want) in [
        ("ssogate_sso_logins_total{outcome=\"ok\"}", 1.0),
        ("ssogate_sso_logins_total{outcome=\"token_expired\"}", 1.0),
        (
            "ssogate_requests_total{route=\"sso_entry\",status=\"303\"}",
            1.0,
        ),
        (
            "ssogate_requests_total{route=\"sso_entry\",status=\"401\"}",
            1.0,
        ),
        (
            "ssogate_requests_total{route=\"proxy\",status=\"200\"}",
            1.0,
        ),
        ("ssogate_upstream_response_seconds_count", 1.0),
        ("ssogate_sessions_active", 1.0),
        ("ssogate_config_last_reload_successful", 1.0),
        ("ssogate_config_reloads_total{result=\"failure\"}", 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    assert!(text.contains("ssogate_build_info{version=\""), "{text}");
    assert!(
        sample(
            &text,
            "ssogate_config_last_reload_success_timestamp_seconds"
        )
        .is_some_and(|t| t > 1.7e9),
        "{text}"
    );

    // Logging out ends the session: the gauge follows (after its one-second cache).
    let logout = client()
        .post(gateway.url("/logout"))
        .header("cookie", &cookie)
        .header("origin", format!("http://{}", gateway.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 303);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let text = metrics(admin).await;
    assert_eq!(
        sample(&text, "ssogate_sessions_active"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "ssogate_requests_total{route=\"logout\",status=\"303\"}"
        ),
        Some(1.0),
        "{text}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn readiness_follows_the_upstream() {
    let scratch = Scratch::new("ops-ready");
    // A bare listener is upstream enough: readiness only needs the forum to accept a connection.
    let forum = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let forum_addr = forum.local_addr().unwrap();
    let gateway = TestGateway::start(
        &sso_yaml(&scratch.0, "", &format!("{NO_LIMITS}{ADMIN}")),
        forum_addr,
    )
    .await;
    let admin = gateway.admin_addr.expect("admin listener");
    let readyz = format!("http://{admin}/readyz");

    let (status, body) = get_text(&readyz).await;
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ready"], true);
    assert_eq!(report["checks"]["upstream"], "ok");
    assert_eq!(report["checks"]["directory"], "ok");
    assert_eq!(report["checks"]["config"], "ok");

    drop(forum);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = get_text(&readyz).await;
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["ready"], false);
    let why = report["checks"]["upstream"].as_str().unwrap();
    assert!(
        why.contains(&forum_addr.to_string()) && why.contains("refused"),
        "{why}"
    );
    // Liveness does not depend on the forum.
    assert_eq!(get_text(&format!("http://{admin}/healthz")).await.0, 200);

    // The forum comes back on the same port: ready again.
    let forum = std::net::TcpListener::bind(forum_addr).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = get_text(&readyz).await;
    assert_eq!(status, 200, "{body}");
    drop(forum);
    gateway.stop().await;
}

#[tokio::test]
async fn request_ids_go_upstream_and_back_and_only_trusted_proxies_choose_them() {
    let upstream = EchoUpstream::start().await;
    for (trusted, keeps) in [("", false), ("trusted_proxies: [127.0.0.1/32]\n", true)] {
        let gateway = TestGateway::start(&minimal_yaml(trusted), upstream.addr).await;
        let response = client()
            .get(gateway.url("/x"))
            .header("x-request-id", "lb-1234")
            .send()
            .await
            .unwrap();
        let returned = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let seen = Seen(response.json().await.unwrap());
        assert_eq!(
            seen.headers("x-request-id"),
            std::slice::from_ref(&returned)
        );
        if keeps {
            assert_eq!(returned, "lb-1234");
        } else {
            assert_eq!(returned.len(), 32, "{returned}");
            assert!(returned.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        gateway.stop().await;
    }
}

fn config_yaml(dir: &std::path::Path, upstream: SocketAddr, key_id: &str, secret: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nworkers: 2\nupstream:\n  url: http://{upstream}\n\
sso:\n  keys:\n    - id: {key_id}\n      algorithm: HS256\n      secret: {secret}\n\
session:\n  secret: {SESSION_SECRET}\n\
directory:\n  path: {}\n{NO_LIMITS}{ADMIN}log:\n  format: json\n",
        dir.join("ssogate.db").display()
    )
}

async fn wait_for_reloads(admin: SocketAddr, result: &str, count: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics(admin).await;
        let series = format!("ssogate_config_reloads_total{{result=\"{result}\"}}");
        if sample(&text, &series) == Some(count) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {result} reload counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sign_in(base: &str, token: &str) -> reqwest::Response {
    client()
        .get(format!("{base}/sso/jwt?ms_token={token}&referrerUrl=/"))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_key_keeps_sessions_and_refuses_a_broken_file() {
    let scratch = Scratch::new("ops-reload");
    let upstream = EchoUpstream::start().await;
    let config = scratch.write(
        "ssogate.yaml",
        &config_yaml(&scratch.0, upstream.addr, "old", SECRET),
    );
    let mut gateway = GatewayProcess::spawn(&config, &[]);
    let base = gateway.url("");
    let admin = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(admin) = gateway.admin_addr() {
                break admin;
            }
            assert!(
                Instant::now() < deadline,
                "no admin listener:\n{}",
                gateway.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let mut tokens = Vec::new();

    let first = hs256(
        &meltingspot_claims("u-1", "Ada", "Lovelace", "ada@example.com"),
        SECRET,
    );
    tokens.push(first.clone());
    let login = sign_in(&base, &first).await;
    assert_eq!(login.status(), 303);
    let cookie = session_cookie(&login).unwrap();

    // A slow request is in flight while the reload happens; it must finish normally.
    let slow = tokio::spawn({
        let url = format!("{base}/slow?ms=1500");
        let cookie = cookie.clone();
        async move {
            let response = client()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    std::fs::write(
        &config,
        config_yaml(&scratch.0, upstream.addr, "new", NEXT_SECRET),
    )
    .unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &gateway.pid().to_string()])
        .status();
    wait_for_reloads(admin, "success", 1.0).await;

    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "the in-flight request was dropped: {body}");
    assert!(body.contains("ada@example.com"), "{body}");

    // The new key signs people in; the old one no longer does.
    let rotated = hs256(
        &meltingspot_claims("u-2", "Grace", "Hopper", "grace@example.com"),
        NEXT_SECRET,
    );
    tokens.push(rotated.clone());
    assert_eq!(sign_in(&base, &rotated).await.status(), 303);
    let stale = hs256(
        &meltingspot_claims("u-3", "Old", "Key", "old@example.com"),
        SECRET,
    );
    tokens.push(stale.clone());
    assert_eq!(sign_in(&base, &stale).await.status(), 401);

    // The session issued before the reload still works.
    let response = client()
        .get(format!("{base}/t/1"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let seen = Seen(response.json().await.unwrap());
    assert_eq!(
        seen.header("x-auth-email").as_deref(),
        Some("ada@example.com")
    );

    // A broken file is refused: the running config stays, the failure is counted and logged with key and line.
    // An unknown key first, then a bad value: both refused, each logged with its key and line.
    let good = config_yaml(&scratch.0, upstream.addr, "new", NEXT_SECRET);
    for (count, broken) in [
        (
            1.0,
            good.replace("  format: json\n", "  format: json\nupstream_typo: 1\n"),
        ),
        (2.0, good.replace("sso:\n", "sso:\n  leeway: 5 parsecs\n")),
    ] {
        std::fs::write(&config, broken).unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &gateway.pid().to_string()])
            .status();
        wait_for_reloads(admin, "failure", count).await;
    }
    let text = metrics(admin).await;
    assert_eq!(
        sample(&text, "ssogate_config_last_reload_successful"),
        Some(0.0)
    );
    let still = hs256(
        &meltingspot_claims("u-4", "Still", "Works", "still@example.com"),
        NEXT_SECRET,
    );
    tokens.push(still.clone());
    assert_eq!(sign_in(&base, &still).await.status(), 303);

    // Give the log buffer its flush interval, then stop and read everything.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = gateway.signal_and_wait("TERM", Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let log = gateway.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();

    let refused: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["level"] == "ERROR"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("reload refused"))
        })
        .collect();
    assert!(
        refused
            .iter()
            .any(|l| l["key"] == "upstream_typo" && l["line"].is_u64()),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|l| l["key"] == "sso.leeway" && l["line"].is_u64()),
        "{refused:?}"
    );

    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "ssogate::access")
        .collect();
    assert_eq!(access.len(), 6, "{log}");
    for line in &access {
        let id = line["request_id"].as_str().unwrap_or_default();
        assert_eq!(id.len(), 32, "{line}");
        assert!(line["reason"].is_string(), "{line}");
    }
    // Requests that carried a session name their member; the signed-in line too.
    assert!(
        access
            .iter()
            .any(|l| l["reason"] == "proxied_member" && l["member"].is_string()),
        "{log}"
    );
    assert!(
        access
            .iter()
            .any(|l| l["reason"] == "signed_in" && l["member"].is_string()),
        "{log}"
    );
    assert!(
        access
            .iter()
            .any(|l| l["reason"] == "bad_signature" || l["reason"] == "unknown_key"),
        "{log}"
    );
    // Other lines logged while serving a request (the sign-in line) carry the same id as its access line.
    let signed_in = lines
        .iter()
        .find(|l| l["message"] == "signed in")
        .expect("a signed-in line");
    let id = signed_in["request_id"].as_str().unwrap();
    assert!(
        access.iter().any(|l| l["request_id"] == id),
        "no access line for {id}"
    );

    // Nothing secret in any line.
    let session_value = cookie.split_once('=').unwrap().1;
    for secret in [SECRET, NEXT_SECRET, SESSION_SECRET, session_value] {
        assert!(!log.contains(secret), "a secret or cookie was logged");
    }
    for token in &tokens {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !log.contains(token.as_str()) && !log.contains(signature),
            "a token was logged"
        );
    }
}
