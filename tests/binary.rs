//! The `ssogate` binary as an operator runs it: config checking, start-up errors, signals, and memory under large
//! streamed bodies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::process::Command;
use std::time::Duration;

use common::upstream::{EchoUpstream, matches_pattern, pattern_stream};
use common::{GatewayProcess, Scratch, client};
use futures_util::StreamExt;
use serde_json::Value;

fn check_config(path: &std::path::Path, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssogate"));
    command
        .arg("check-config")
        .arg(path)
        .env_remove("SSOGATE_TEST_MISSING");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_a_good_file_and_the_shipped_example() {
    let scratch = Scratch::new("check-ok");
    let path = scratch.write(
        "ok.yaml",
        "listen: 127.0.0.1:8080\nupstream:\n  url: ${SSOGATE_TEST_UPSTREAM}\n  timeout: 1m30s\n",
    );
    let (ok, stdout, stderr) =
        check_config(&path, &[("SSOGATE_TEST_UPSTREAM", "http://127.0.0.1:3000")]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "ok");

    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ssogate.example.yaml");
    let secrets = [
        (
            "SSOGATE_SSO_SECRET",
            "an-example-sso-secret-of-32-bytes-at-least",
        ),
        (
            "SSOGATE_SESSION_SECRET",
            "an-example-session-secret-of-32-bytes-at-least",
        ),
    ];
    let (ok, stdout, stderr) = check_config(&example, &secrets);
    assert!(ok, "the shipped example must pass check-config: {stderr}");
    assert_eq!(stdout.trim(), "ok");
}

#[test]
fn check_config_names_the_key_of_each_error() {
    let scratch = Scratch::new("check-bad");
    let unknown = scratch.write(
        "unknown.yaml",
        "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:3000\n  timeuot: 5s\n",
    );
    let (ok, _, stderr) = check_config(&unknown, &[]);
    assert!(!ok);
    assert!(
        stderr.contains("upstream") && stderr.contains("timeuot") && stderr.contains("line 4"),
        "{stderr}"
    );

    let values = scratch.write(
        "values.yaml",
        "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:3000\n  timeout: 5 minutes\n  \
connect_timeout: ${SSOGATE_TEST_MISSING}\nlimits:\n  header_read_timeout: 10\n",
    );
    let (ok, _, stderr) = check_config(&values, &[]);
    assert!(!ok);
    // Every error at once, each with its key and line.
    assert!(stderr.contains("3 errors"), "{stderr}");
    assert!(
        stderr.contains("upstream.timeout (line 4): invalid duration"),
        "{stderr}"
    );
    assert!(
        stderr.contains("upstream.connect_timeout (line 5): environment variable SSOGATE_TEST_MISSING is not set"),
        "{stderr}"
    );
    assert!(
        stderr.contains("limits.header_read_timeout (line 7)"),
        "{stderr}"
    );

    let (ok, _, stderr) = check_config(&scratch.0.join("absent.yaml"), &[]);
    assert!(!ok);
    assert!(stderr.contains("absent.yaml"), "{stderr}");
}

#[test]
fn missing_certificate_is_a_startup_error_naming_the_file() {
    let scratch = Scratch::new("bad-cert");
    let key = scratch.write("gateway.key", "not a key\n");
    let config = scratch.write(
        "c.yaml",
        &format!(
            "tls:\n  listen: 127.0.0.1:0\n  cert: {}/missing.crt\n  key: {}\nupstream:\n  url: http://127.0.0.1:9\n",
            scratch.0.display(),
            key.display()
        ),
    );
    let mut process = GatewayProcess::spawn(&config, &[]);
    let status = process.wait(Duration::from_secs(10)).expect("exits");
    assert!(!status.success());
    assert!(process.log().contains("missing.crt"), "{}", process.log());

    // A certificate that exists but a key file that holds no key: the key file is named.
    let made = ssogate::tls::make_dev_certs(&scratch.0.join("dev"), &[]).unwrap();
    let config = scratch.write(
        "c2.yaml",
        &format!(
            "tls:\n  listen: 127.0.0.1:0\n  cert: {}\n  key: {}\nupstream:\n  url: http://127.0.0.1:9\n",
            made.cert.display(),
            key.display()
        ),
    );
    let mut process = GatewayProcess::spawn(&config, &[]);
    let status = process.wait(Duration::from_secs(10)).expect("exits");
    assert!(!status.success());
    assert!(
        process.log().contains("tls.key") && process.log().contains("gateway.key"),
        "{}",
        process.log()
    );
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_and_exits_zero() {
    let upstream = EchoUpstream::start().await;
    let scratch = Scratch::new("sigterm");
    let config = scratch.write(
        "c.yaml",
        &format!(
            "listen: 127.0.0.1:0\nupstream:\n  url: http://{}\n",
            upstream.addr
        ),
    );
    let mut process = GatewayProcess::spawn(&config, &[]);
    let url = process.url("/slow?ms=800");
    let in_flight =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = process.signal_and_wait("TERM", Duration::from_secs(15));
        (status, process.log())
    })
    .await
    .unwrap();
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "the request in flight was dropped"
    );
    let (status, log) = status;
    assert!(status.expect("exited").success(), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
}

/// 1 GiB up and 1 GiB down through the gateway process, then its peak memory compared with its memory before.
#[tokio::test]
async fn large_bodies_stream_both_ways_with_flat_memory() {
    const SIZE: u64 = 1024 * 1024 * 1024;
    let upstream = EchoUpstream::start().await;
    let scratch = Scratch::new("big");
    let config = scratch.write(
        "c.yaml",
        &format!(
            "listen: 127.0.0.1:0\nupstream:\n  url: http://{}\n",
            upstream.addr
        ),
    );
    let process = GatewayProcess::spawn(&config, &[("RUST_LOG", "warn,ssogate::server=info")]);
    // Warm up (first connection, pool, allocator), then take the baseline.
    let warm = client().get(process.url("/")).send().await.unwrap();
    assert_eq!(warm.status(), 200);
    let before = process.memory_kb("VmRSS");

    let upload = client()
        .post(process.url("/sink"))
        .body(reqwest::Body::wrap_stream(pattern_stream(SIZE)))
        .send()
        .await
        .unwrap();
    let report: Value = upload.json().await.unwrap();
    assert_eq!(report["bytes"].as_u64(), Some(SIZE));
    assert_eq!(report["intact"], true);

    let download = client()
        .get(process.url(&format!("/stream?bytes={SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    let mut stream = download.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(matches_pattern(received, &chunk), "corrupted at {received}");
        received += chunk.len() as u64;
    }
    assert_eq!(received, SIZE);

    let peak = process.memory_kb("VmHWM");
    let growth_mib = peak.saturating_sub(before) / 1024;
    println!(
        "gateway RSS before {before} kB, peak {peak} kB after 2 x {} MiB",
        SIZE >> 20
    );
    // Buffering even a tenth of one body would show as 50+ MiB.
    assert!(
        growth_mib < 32,
        "gateway memory grew by {growth_mib} MiB while streaming"
    );
}

#[tokio::test]
async fn a_second_instance_on_the_same_address_is_refused() {
    let upstream = EchoUpstream::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scratch = Scratch::new("second");
    let config = scratch.write(
        "c.yaml",
        &format!(
            "listen: 127.0.0.1:{port}\nupstream:\n  url: http://{}\n",
            upstream.addr
        ),
    );
    let first = GatewayProcess::spawn(&config, &[]);
    assert!(first.addr.is_some(), "{}", first.log());
    let mut second = GatewayProcess::spawn(&config, &[]);
    let status = second
        .wait(Duration::from_secs(10))
        .expect("the second instance exits");
    assert!(!status.success());
    assert!(second.log().contains("cannot listen"), "{}", second.log());
}
