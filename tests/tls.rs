//! TLS termination with a freshly generated certificate, over HTTP/1.1 and HTTP/2 (ALPN).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::upstream::{EchoUpstream, Seen};
use common::{Scratch, TestGateway};
use serde_json::Value;

fn tls_client(ca_pem: &[u8], addr: SocketAddr, http1_only: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem).unwrap()])
        .resolve("localhost", addr);
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

async fn tls_gateway(scratch: &Scratch, upstream: SocketAddr) -> (TestGateway, Vec<u8>) {
    let made = ssogate::tls::make_dev_certs(&scratch.0.join("certs"), &[]).unwrap();
    let yaml = format!(
        "tls:\n  listen: 127.0.0.1:0\n  cert: {}\n  key: {}\nupstream:\n  url: http://{{upstream}}\n",
        made.cert.display(),
        made.key.display()
    );
    let gateway = TestGateway::start(&yaml, upstream).await;
    (gateway, std::fs::read(made.ca_cert).unwrap())
}

#[tokio::test]
async fn tls_serves_http1_and_http2() {
    let scratch = Scratch::new("tls");
    let upstream = EchoUpstream::start().await;
    let (gateway, ca) = tls_gateway(&scratch, upstream.addr).await;
    let addr = gateway.tls_addr.unwrap();
    let url = format!("https://localhost:{}/over/tls?x=1", addr.port());

    for (http1_only, version) in [
        (true, reqwest::Version::HTTP_11),
        (false, reqwest::Version::HTTP_2),
    ] {
        let response = tls_client(&ca, addr, http1_only)
            .post(&url)
            .body("tls body")
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        let seen = Seen(response.json::<Value>().await.unwrap());
        assert_eq!(seen.uri(), "/over/tls?x=1");
        assert_eq!(seen.body(), "tls body");
        // The forum always gets HTTP/1.1 with a Host header, even when the client spoke HTTP/2 (:authority).
        assert_eq!(seen.0["version"], "HTTP/1.1");
        assert_eq!(
            seen.header("host"),
            Some(format!("localhost:{}", addr.port()))
        );
        assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    }
}

#[tokio::test]
async fn http2_streams_many_requests_on_one_connection() {
    let scratch = Scratch::new("h2");
    let upstream = EchoUpstream::start().await;
    let (gateway, ca) = tls_gateway(&scratch, upstream.addr).await;
    let addr = gateway.tls_addr.unwrap();
    let client = tls_client(&ca, addr, false);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = client.clone();
        let url = format!("https://localhost:{}/n/{i}", addr.port());
        tasks.push(tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            (
                response.version(),
                Seen(response.json::<Value>().await.unwrap())
                    .uri()
                    .to_owned(),
            )
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let (version, uri) = task.await.unwrap();
        assert_eq!(version, reqwest::Version::HTTP_2);
        assert_eq!(uri, format!("/n/{i}"));
    }
}

#[tokio::test]
async fn untrusted_certificate_is_refused_by_clients() {
    // The other side of the coin: a client that does not trust the dev CA must fail the handshake.
    let scratch = Scratch::new("tls-untrusted");
    let upstream = EchoUpstream::start().await;
    let (gateway, _) = tls_gateway(&scratch, upstream.addr).await;
    let addr = gateway.tls_addr.unwrap();
    let other = ssogate::tls::make_dev_certs(&scratch.0.join("other"), &[]).unwrap();
    let client = tls_client(&std::fs::read(other.ca_cert).unwrap(), addr, false);
    let result = client
        .get(format!("https://localhost:{}/", addr.port()))
        .send()
        .await;
    assert!(result.is_err());
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_reload_serves_a_renewed_certificate_and_refuses_a_broken_one() {
    let scratch = Scratch::new("tls-reload");
    let upstream = EchoUpstream::start().await;
    let certs = scratch.0.join("certs");
    let first = ssogate::tls::make_dev_certs(&certs, &[]).unwrap();
    let yaml = format!(
        "tls:\n  listen: 127.0.0.1:0\n  cert: {}\n  key: {}\nupstream:\n  url: http://{}\n",
        first.cert.display(),
        first.key.display(),
        upstream.addr
    );
    let config = scratch.write("ssogate.yaml", &yaml);
    let gateway = TestGateway::start(&yaml, upstream.addr).await;
    let addr = gateway.tls_addr.unwrap();
    let url = format!("https://localhost:{}/renewed", addr.port());
    let old_ca = std::fs::read(&first.ca_cert).unwrap();
    let kept = tls_client(&old_ca, addr, true);
    assert_eq!(kept.get(&url).send().await.unwrap().status(), 200);

    // A renewal writes a new pair (here under a new CA) to the same paths; the reload picks it up.
    let renewed = ssogate::tls::make_dev_certs(&certs, &[]).unwrap();
    let new_ca = std::fs::read(&renewed.ca_cert).unwrap();
    assert_ne!(old_ca, new_ca);
    gateway.reloader.reload_file(&config).unwrap();
    let fresh = tls_client(&new_ca, addr, true);
    assert_eq!(fresh.get(&url).send().await.unwrap().status(), 200);
    assert!(
        tls_client(&old_ca, addr, true)
            .get(&url)
            .send()
            .await
            .is_err(),
        "a new connection still got the old certificate"
    );

    // A key that does not load refuses the whole reload: the renewed certificate stays in service.
    std::fs::write(&renewed.key, "not a key").unwrap();
    let refused = gateway.reloader.reload_file(&config);
    assert!(
        matches!(refused, Err(ssogate::reload::ReloadError::Tls(_))),
        "{refused:?}"
    );
    assert_eq!(
        tls_client(&new_ca, addr, true)
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    gateway.stop().await;
}
