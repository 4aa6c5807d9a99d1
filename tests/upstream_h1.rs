//! The gateway's own HTTP/1.1 toward the forum, against upstreams that answer byte for byte what each test scripts:
//! every way RFC 9112 lets a response end, interim answers, broken answers, an answer that comes before the upload
//! has all gone, and a pooled connection that the forum closes at the instant it is reused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::{TestGateway, client, minimal_yaml};

/// An upstream that runs `script(n, stream)` on its n-th accepted connection (from 0). The counter is the number of
/// connections accepted so far.
async fn scripted<F, Fut>(script: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(script(n, stream));
        }
    });
    (addr, accepted)
}

/// One request head off `stream` (with any bytes read past it), or `None` when the gateway closed the connection.
async fn read_head(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = data.split_off(end + 4);
            return Some((String::from_utf8_lossy(&data).into_owned(), rest));
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// Answers every request on the connection with `answer`, for as long as the gateway keeps it.
async fn serve_each(mut stream: TcpStream, answer: &[u8]) {
    while read_head(&mut stream).await.is_some() {
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

async fn gateway(upstream: SocketAddr) -> TestGateway {
    // One worker: one pool, so connection counts are exact.
    TestGateway::start(
        &minimal_yaml("workers: 1\n").replace(
            "url: http://{upstream}\n",
            "url: http://{upstream}\n  timeout: 5s\n",
        ),
        upstream,
    )
    .await
}

#[tokio::test]
async fn chunked_answers_are_decoded_and_their_connection_reused() {
    let (upstream, accepted) = scripted(|_, stream| {
        serve_each(
            stream,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n\
              5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
    })
    .await;
    let gateway = gateway(upstream).await;
    let client = client();
    for _ in 0..3 {
        let response = client.get(gateway.url("/c")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("x-trailer").is_none());
        assert_eq!(response.text().await.unwrap(), "hello world");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");
}

#[tokio::test]
async fn an_answer_that_ends_with_the_connection_is_relayed_whole_and_not_reused() {
    const SIZE: usize = 300 * 1024;
    let (upstream, accepted) = scripted(|_, mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let mut answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n".to_vec();
            answer.extend((0..SIZE).map(|i| b'a' + (i % 26) as u8));
            let _ = stream.write_all(&answer).await;
        }
    })
    .await;
    let gateway = gateway(upstream).await;
    for _ in 0..2 {
        let response = client().get(gateway.url("/close")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.bytes().await.unwrap();
        assert_eq!(body.len(), SIZE);
        assert!(
            body.iter()
                .enumerate()
                .all(|(i, &b)| b == b'a' + (i % 26) as u8)
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn interim_answers_never_reach_the_client() {
    let (upstream, _) = scripted(|_, stream| {
        serve_each(
            stream,
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
              HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
        )
    })
    .await;
    let gateway = gateway(upstream).await;
    let response = client().get(gateway.url("/i")).send().await.unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers().get("link").is_none());
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn a_head_answer_has_no_body_and_leaves_the_connection_usable() {
    let (upstream, accepted) = scripted(|_, mut stream| async move {
        while let Some((head, _)) = read_head(&mut stream).await {
            let answer: &[u8] = if head.starts_with("HEAD ") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"
            } else {
                OK
            };
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let gateway = gateway(upstream).await;
    let client = client();
    let head = client.head(gateway.url("/h")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "1234");
    let get = client.get(gateway.url("/g")).send().await.unwrap();
    assert_eq!(get.text().await.unwrap(), "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn broken_answers_are_502_and_the_gateway_goes_on() {
    let mut too_many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=100 {
        too_many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    too_many.extend_from_slice(b"content-length: 0\r\n\r\n");
    let mut too_big = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
    too_big.resize(70 * 1024, b'b');
    too_big.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"SMTP ready\r\n\r\n".to_vec()),
        (
            "two lengths",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok".to_vec(),
        ),
        (
            "bad length",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2x\r\n\r\nok".to_vec(),
        ),
        ("too many fields", too_many),
        ("head too large", too_big),
        ("closed without answer", Vec::new()),
    ];
    for (case, answer) in cases {
        let answer = Arc::new(answer);
        let (upstream, _) = scripted(move |_, mut stream| {
            let answer = Arc::clone(&answer);
            async move {
                if read_head(&mut stream).await.is_some() {
                    let _ = stream.write_all(&answer).await;
                }
            }
        })
        .await;
        let gateway = gateway(upstream).await;
        let response = client().get(gateway.url("/b")).send().await.unwrap();
        assert_eq!(response.status(), 502, "{case}");
        gateway.stop().await;
    }
}

#[tokio::test]
async fn a_body_cut_short_aborts_the_client_response_and_its_connection() {
    let (upstream, accepted) = scripted(|n, mut stream| async move {
        match n {
            0 => {
                if read_head(&mut stream).await.is_some() {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten..")
                        .await;
                }
            }
            1 => {
                if read_head(&mut stream).await.is_some() {
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXXzz",
                        )
                        .await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            _ => serve_each(stream, OK).await,
        }
    })
    .await;
    let gateway = gateway(upstream).await;
    for case in ["truncated length", "bad chunk"] {
        // The head may or may not have gone out before the body failed; either way no complete answer arrives.
        match client().get(gateway.url("/cut")).send().await {
            Ok(response) => assert!(response.bytes().await.is_err(), "{case}: a complete body"),
            Err(error) => assert!(error.is_request(), "{case}: {error}"),
        }
    }
    let response = client().get(gateway.url("/after")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "neither broken connection reused"
    );
}

#[tokio::test]
async fn an_answer_before_the_upload_has_gone_is_relayed_and_the_connection_dropped() {
    let (upstream, accepted) = scripted(|n, mut stream| async move {
        if n > 0 {
            return serve_each(stream, OK).await;
        }
        // Refuses the upload from its head alone, then reads nothing more.
        if read_head(&mut stream).await.is_some() {
            let _ = stream
                .write_all(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\n\r\ntoo big!")
                .await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    })
    .await;
    let gateway = gateway(upstream).await;

    let mut conn = TcpStream::connect(gateway.addr).await.unwrap();
    conn.write_all(b"POST /up HTTP/1.1\r\nhost: forum.test\r\ncontent-length: 268435456\r\n\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = conn.into_split();
    let upload = tokio::spawn(async move {
        let chunk = vec![b'u'; 1 << 20];
        for _ in 0..256 {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(4), async {
        let mut buf = [0u8; 4096];
        while !answer.ends_with(b"too big!") {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    upload.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        read.is_ok(),
        "no answer while the upload went on: {answer:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let after = client().get(gateway.url("/after")).send().await.unwrap();
    assert_eq!(after.text().await.unwrap(), "ok");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the half-sent connection is not reused"
    );
}

#[tokio::test]
async fn chunked_uploads_go_out_chunked() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let (upstream, _) = scripted(move |_, mut stream| {
        let tx = tx.clone();
        async move {
            let Some((head, mut raw)) = read_head(&mut stream).await else {
                return;
            };
            let mut buf = [0u8; 4096];
            while !raw.ends_with(b"0\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
            }
            let mut seen = head.into_bytes();
            seen.extend_from_slice(&raw);
            let _ = tx.send(seen);
            let _ = stream.write_all(OK).await;
        }
    })
    .await;
    let gateway = gateway(upstream).await;
    let pieces: Vec<Result<&'static str, std::io::Error>> =
        vec![Ok("hello"), Ok(", "), Ok("world")];
    let response = client()
        .post(gateway.url("/u"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    let seen = String::from_utf8(rx.recv().await.unwrap()).unwrap();
    let (head, body) = seen.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    // However the pieces were framed, they decode to the body that was sent.
    let mut decoded = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            assert_eq!(after, "\r\n");
            break;
        }
        decoded.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap();
    }
    assert_eq!(decoded, "hello, world");
}

/// The forum answers the first request, then closes the connection as the second arrives on it (an idle timeout
/// racing the reuse). A request without a body that is safe to repeat is sent again on a new connection; any other
/// is not, and gets 502.
#[tokio::test]
async fn a_pooled_connection_closed_as_it_is_reused_is_retried_only_when_safe() {
    for (method, expected, connections) in [("GET", 200, 2), ("POST", 502, 1)] {
        let (upstream, accepted) = scripted(|n, mut stream| async move {
            if n > 0 {
                return serve_each(stream, OK).await;
            }
            if read_head(&mut stream).await.is_some() && stream.write_all(OK).await.is_ok() {
                let _ = read_head(&mut stream).await;
            }
        })
        .await;
        let gateway = gateway(upstream).await;
        let client = client();
        let first = client.get(gateway.url("/first")).send().await.unwrap();
        assert_eq!(first.text().await.unwrap(), "ok");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let second = client
            .request(method.clone(), gateway.url("/second"))
            .send()
            .await
            .unwrap();
        assert_eq!(second.status(), expected, "{method}");
        assert_eq!(accepted.load(Ordering::SeqCst), connections, "{method}");
        gateway.stop().await;
    }
}

/// `Expect: 100-continue` goes to the forum, whose `100 Continue` arrives while the body is still going out: the
/// upload goes on, and the final answer is relayed.
#[tokio::test]
async fn an_interim_answer_during_an_upload_does_not_end_it() {
    const SIZE: usize = 32 << 20;
    let (upstream, _) = scripted(|_, mut stream| async move {
        let Some((head, mut body)) = read_head(&mut stream).await else {
            return;
        };
        assert!(
            head.to_ascii_lowercase().contains("expect: 100-continue"),
            "{head}"
        );
        // Before reading a byte of the body, which is far larger than the socket buffers.
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1 << 16];
        while body.len() < SIZE {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
        }
        let text = format!("{}", body.len());
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
    })
    .await;
    let gateway = gateway(upstream).await;
    let response = client()
        .post(gateway.url("/expect"))
        .header("expect", "100-continue")
        .body(vec![b'e'; SIZE])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), SIZE.to_string());
}
