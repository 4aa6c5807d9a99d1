//! The transparent proxy over real sockets: what reaches the forum, what comes back, and what is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::upstream::{EchoUpstream, Seen, raw_exchange, websocket_upstream};
use common::{TestGateway, client, minimal_yaml};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

async fn echoed(response: reqwest::Response) -> Seen {
    assert_eq!(response.status(), 200, "upstream should have answered");
    Seen(response.json::<Value>().await.expect("echo JSON"))
}

#[tokio::test]
async fn method_path_query_headers_and_body_round_trip() {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::plain(upstream.addr).await;
    // Encoded bytes, repeated parameters, a semicolon and a plus must reach the forum exactly as sent.
    let target = "/t/caf%C3%A9;v=1/a%2Fb?q=a+b&q=%20c&empty=&flag&x=%25";
    let response = client()
        .patch(gateway.url(target))
        .header("x-custom", "one")
        .header("x-multi", "a")
        .header("x-multi", "b")
        .header("cookie", "forum_session=abc; theme=dark")
        .body("payload \u{e9}\u{1F600}")
        .send()
        .await
        .unwrap();
    let seen = echoed(response).await;
    assert_eq!(seen.method(), "PATCH");
    assert_eq!(seen.uri(), target);
    assert_eq!(seen.body(), "payload \u{e9}\u{1F600}");
    assert_eq!(seen.header("x-custom").as_deref(), Some("one"));
    assert_eq!(seen.headers("x-multi"), ["a", "b"]);
    assert_eq!(
        seen.header("cookie").as_deref(),
        Some("forum_session=abc; theme=dark")
    );
    // preserve_host defaults to true: the forum sees the host the client asked for.
    assert_eq!(seen.header("host"), Some(gateway.addr.to_string()));

    for method in ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PROPFIND"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client()
            .request(method.clone(), gateway.url("/m"))
            .send()
            .await
            .unwrap();
        assert_eq!(echoed(response).await.method(), method.as_str());
    }
    let head = client().head(gateway.url("/h")).send().await.unwrap();
    assert_eq!(head.status(), 200);
}

#[tokio::test]
async fn preserve_host_false_sends_the_upstream_authority() {
    let upstream = EchoUpstream::start().await;
    let yaml = "listen: 127.0.0.1:0\nupstream:\n  url: http://{upstream}\n  preserve_host: false\n";
    let gateway = TestGateway::start(yaml, upstream.addr).await;
    let seen = echoed(
        client()
            .get(gateway.url("/"))
            .header("host", "forum.test")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen.header("host"), Some(upstream.addr.to_string()));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("forum.test")
    );
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_removed_both_ways() {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::plain(upstream.addr).await;
    // The client also names headers the gateway sets itself: those must still arrive, set by the gateway.
    let request = "GET /echo HTTP/1.1\r\nHost: forum.test\r\nConnection: keep-alive, X-Secret, x-other, X-Real-IP\r\n\
Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
X-Secret: hidden\r\nX-Other: hidden\r\nX-Kept: visible\r\nUpgrade: h2c\r\nConnection: close, X-Forwarded-For\r\n\r\n";
    let (text, _) = raw_exchange(gateway.addr, request.as_bytes(), Duration::from_secs(10)).await;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let seen = Seen(serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}")));
    for name in [
        "x-secret",
        "x-other",
        "keep-alive",
        "te",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(seen.headers(name).is_empty(), "{name} reached the upstream");
    }
    // What hyper's client adds for its own pooled connection is fine; what the client named must not pass.
    assert!(
        seen.headers("connection")
            .iter()
            .all(|v| !v.to_ascii_lowercase().contains("secret"))
    );
    assert_eq!(seen.header("x-kept").as_deref(), Some("visible"));
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));

    let response = client().get(gateway.url("/hop")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert!(
        headers.get("x-resp-secret").is_none(),
        "connection-named response header passed"
    );
    assert!(headers.get("proxy-connection").is_none());
    assert!(headers.get("keep-alive").is_none());
    assert_eq!(headers.get("x-resp-kept").unwrap(), "yes");
}

#[tokio::test]
async fn forwarded_headers_are_replaced_for_untrusted_peers() {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::plain(upstream.addr).await;
    let seen = echoed(
        client()
            .get(gateway.url("/"))
            .header("host", "forum.test")
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
            .header("x-real-ip", "6.6.6.6")
            .header("forwarded", "for=6.6.6.6;proto=https")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("forum.test")
    );
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert!(seen.headers("forwarded").is_empty());
}

#[tokio::test]
async fn forwarded_headers_are_extended_for_trusted_peers() {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::start(
        &minimal_yaml("trusted_proxies: [127.0.0.0/8]\n"),
        upstream.addr,
    )
    .await;
    let seen = echoed(
        client()
            .get(gateway.url("/"))
            .header("host", "internal:8080")
            .header("x-forwarded-for", "203.0.113.7, 10.0.0.1")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "forum.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 10.0.0.1, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("forum.example")
    );
    // 10.0.0.1 is not in trusted_proxies, so it is the last hop that can be believed.
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("10.0.0.1"));
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    // A port held by a socket that is bound but not listening: connecting is refused, and no other socket (the
    // gateway's own port-0 listener, say) can be given that port while the test runs.
    let holder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    holder
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let closed = holder.local_addr().unwrap().as_socket().unwrap();
    let gateway = TestGateway::plain(closed).await;
    let response = client().get(gateway.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("The forum is unavailable"), "{page}");
    assert!(
        !page.contains("127.0.0.1"),
        "the page must not show internals: {page}"
    );

    let response = client()
        .get(gateway.url("/"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"], "upstream_unavailable");

    let upstream = EchoUpstream::start().await;
    let yaml = "listen: 127.0.0.1:0\nupstream:\n  url: http://{upstream}\n  timeout: 300ms\n";
    let gateway = TestGateway::start(yaml, upstream.addr).await;
    let response = client()
        .get(gateway.url("/slow?ms=3000"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"], "upstream_timeout");
    // A fast answer on the same gateway still passes.
    let response = client()
        .get(gateway.url("/slow?ms=10"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn ambiguous_framing_is_refused_and_never_forwarded() {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::plain(upstream.addr).await;
    let cases: [&[u8]; 4] = [
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    ];
    for case in cases {
        let (text, closed) = raw_exchange(gateway.addr, case, Duration::from_secs(10)).await;
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "{}: {text}",
            String::from_utf8_lossy(case)
        );
        assert!(
            closed,
            "the connection must close after a smuggling attempt"
        );
    }
    // A keep-alive connection whose second request is ambiguous: the first passes, the second is refused.
    let pipelined = b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n\
POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let (text, _) = raw_exchange(gateway.addr, pipelined, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 400"), "{text}");
    assert_eq!(
        upstream.count(),
        1,
        "only the unambiguous request may reach the upstream"
    );

    // A chunked body followed by a normal request on the same connection still works.
    let fine =
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let (text, _) = raw_exchange(gateway.addr, fine, Duration::from_secs(10)).await;
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
}

#[tokio::test]
async fn connect_is_refused() {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::plain(upstream.addr).await;
    let (text, _) = raw_exchange(
        gateway.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn slow_client_is_cut_after_header_read_timeout() {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::start(
        &minimal_yaml("limits:\n  header_read_timeout: 1s\n"),
        upstream.addr,
    )
    .await;
    // Half a request head, then silence: the gateway must hang up rather than hold the connection.
    let (_, closed) = raw_exchange(
        gateway.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        Duration::from_secs(8),
    )
    .await;
    assert!(
        closed,
        "the connection stayed open past header_read_timeout"
    );
    // A connection that sends nothing at all is cut too.
    let (_, closed) = raw_exchange(gateway.addr, b"", Duration::from_secs(8)).await;
    assert!(closed, "a silent connection stayed open");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn oversized_request_head_is_431() {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::start(
        &minimal_yaml("limits:\n  max_header_bytes: 16384\n"),
        upstream.addr,
    )
    .await;
    let big = "a".repeat(40_000);
    let response = client()
        .get(gateway.url("/"))
        .header("x-big", big)
        .send()
        .await;
    match response {
        Ok(response) => assert_eq!(response.status(), 431),
        // hyper may close before the client has finished writing; either way nothing was forwarded.
        Err(error) => assert!(error.is_request() || error.is_body(), "{error}"),
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn websocket_upgrade_passes_bytes_both_ways() {
    use tokio_tungstenite::tungstenite::Message;

    let upstream = websocket_upstream().await;
    let gateway = TestGateway::plain(upstream).await;
    let stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let url = format!("ws://{}/live/socket?room=1", gateway.addr);
    let (mut socket, response) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("upgrade through gateway");
    assert_eq!(response.status(), 101);

    // The upstream's first message reports the handshake it received.
    let Some(Ok(Message::Text(report))) = socket.next().await else {
        panic!("no report")
    };
    assert!(report.contains("path: /live/socket?room=1"), "{report}");
    assert!(
        report.to_ascii_lowercase().contains("upgrade: websocket"),
        "{report}"
    );
    assert!(report.contains("x-forwarded-for: 127.0.0.1"), "{report}");

    socket.send(Message::text("hello")).await.unwrap();
    let Some(Ok(Message::Text(reply))) = socket.next().await else {
        panic!("no echo")
    };
    assert_eq!(reply.as_str(), "echo:hello");

    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    socket.send(Message::binary(blob.clone())).await.unwrap();
    let Some(Ok(Message::Binary(back))) = socket.next().await else {
        panic!("no binary echo")
    };
    assert_eq!(back.as_ref(), blob.as_slice());
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn graceful_stop_finishes_requests_in_flight() {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::plain(upstream.addr).await;
    let url = gateway.url("/slow?ms=700");
    let in_flight =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = gateway.addr;
    assert!(gateway.stop().await, "shutdown did not drain");
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after stop"
    );
}

#[tokio::test]
async fn identity_headers_are_stripped_even_without_sso() {
    // A forum that trusts X-Auth-User must never see a client's, even while SSO is not configured yet.
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::plain(upstream.addr).await;
    let seen = echoed(
        client()
            .get(gateway.url("/"))
            .header("x-auth-user", "admin")
            .header("x_auth_email", "root@example.com")
            .header("x-auth-kept-not", "yes")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(seen.headers("x-auth-user").is_empty());
    assert!(seen.headers("x_auth_email").is_empty());
    assert_eq!(seen.header("x-auth-kept-not").as_deref(), Some("yes"));
}

/// An upstream that serves two requests per connection, then closes it 20 ms later (as a forum's keep-alive timeout
/// would); counts connections and answers.
async fn two_per_connection_upstream() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let (conns, answers) = (Arc::clone(&accepted), Arc::clone(&served));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            conns.fetch_add(1, Ordering::SeqCst);
            let answers = Arc::clone(&answers);
            tokio::spawn(async move {
                for _ in 0..2 {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(response).await.is_err() {
                        return;
                    }
                    answers.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            });
        }
    });
    (addr, accepted, served)
}

#[tokio::test]
async fn upstream_connections_are_reused_and_closed_ones_are_never_used() {
    let (upstream, accepted, served) = two_per_connection_upstream().await;
    let gateway = TestGateway::start(&minimal_yaml("workers: 1\n"), upstream).await;
    let client = client();
    for i in 0..10 {
        let response = client
            .get(gateway.url(&format!("/n/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(response.text().await.unwrap(), "ok");
        // Longer than the upstream keeps a finished connection: every other request finds its pooled one closed.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(served.load(Ordering::SeqCst), 10);
    // Two requests per connection: each connection was reused once, and none was used after the forum closed it.
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    gateway.stop().await;
}
