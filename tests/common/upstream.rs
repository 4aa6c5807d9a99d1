//! A real HTTP/1.1 upstream for tests: it answers with what it received, and has a few routes for the cases a
//! proxy must handle (streamed bodies both ways, slow answers, hop-by-hop headers in responses, WebSocket).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub type TestBody = BoxBody<Bytes, Infallible>;

/// What the upstream saw, as the JSON its default route answers with.
#[derive(Debug, Clone)]
pub struct Seen(pub Value);

impl Seen {
    pub fn method(&self) -> &str {
        self.0["method"].as_str().unwrap_or_default()
    }

    pub fn uri(&self) -> &str {
        self.0["uri"].as_str().unwrap_or_default()
    }

    pub fn body(&self) -> &str {
        self.0["body"].as_str().unwrap_or_default()
    }

    /// Every value of header `name` (lower-case), in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|pair| pair[0].as_str() == Some(name))
            .filter_map(|pair| pair[1].as_str().map(str::to_owned))
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.headers(name);
        assert!(
            values.len() <= 1,
            "header {name} arrived {} times: {values:?}",
            values.len()
        );
        values.into_iter().next()
    }
}

/// The upstream's address and how many requests it has answered.
pub struct EchoUpstream {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
}

impl EchoUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        route(request)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr, requests }
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn query_number(request: &Request<Incoming>, name: &str) -> u64 {
    request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn route(request: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
    let path = request.uri().path().to_owned();
    Ok(match path.as_str() {
        "/stream" => stream_response(query_number(&request, "bytes")),
        "/sink" => sink(request).await,
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_number(&request, "ms"))).await;
            echo(request).await
        }
        "/hop" => {
            let mut response = full(json!({"ok": true}).to_string());
            let headers = response.headers_mut();
            headers.insert("connection", "X-Resp-Secret".parse().unwrap());
            headers.insert("x-resp-secret", "1".parse().unwrap());
            headers.insert("keep-alive", "timeout=5".parse().unwrap());
            headers.insert("proxy-connection", "keep-alive".parse().unwrap());
            headers.insert("x-resp-kept", "yes".parse().unwrap());
            response
        }
        _ => echo(request).await,
    })
}

fn full(text: String) -> Response<TestBody> {
    Response::new(Full::new(Bytes::from(text)).boxed())
}

async fn echo(request: Request<Incoming>) -> Response<TestBody> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: Vec<Value> = parts
        .headers
        .iter()
        .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
        .collect();
    let report = json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut response = full(report.to_string());
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// The test pattern repeats every 251 bytes (a prime, so it never lines up with buffer sizes by accident).
const PERIOD: usize = 251;
/// A chunk is a whole number of periods, so every chunk of a streamed body is the same bytes.
pub const CHUNK: usize = PERIOD * 261;

/// One chunk of the pattern; a body is this chunk repeated, cut short at the end.
pub fn pattern_chunk() -> Bytes {
    static CHUNK_BYTES: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    CHUNK_BYTES
        .get_or_init(|| {
            (0..CHUNK)
                .map(|i| (i % PERIOD) as u8)
                .collect::<Vec<u8>>()
                .into()
        })
        .clone()
}

/// Whether `data`, found at offset `at` of a streamed body, is the pattern there.
pub fn matches_pattern(at: u64, data: &[u8]) -> bool {
    let chunk = pattern_chunk();
    let mut offset = (at % PERIOD as u64) as usize;
    data.chunks(CHUNK - PERIOD).all(|piece| {
        let ok = piece == &chunk[offset..offset + piece.len()];
        offset = (offset + piece.len()) % PERIOD;
        ok
    })
}

/// A stream of `bytes` bytes of the pattern, produced as the reader takes it.
pub fn pattern_stream(
    bytes: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures_util::stream::unfold(0u64, move |sent| async move {
        if sent >= bytes {
            return None;
        }
        let len = (CHUNK as u64).min(bytes - sent) as usize;
        Some((Ok(pattern_chunk().slice(..len)), sent + len as u64))
    })
}

/// `bytes` bytes of the pattern, produced a chunk at a time as the client reads them.
fn stream_response(bytes: u64) -> Response<TestBody> {
    let stream =
        futures_util::StreamExt::map(pattern_stream(bytes), |chunk| chunk.map(Frame::data));
    Response::new(BodyExt::boxed(StreamBody::new(stream)))
}

/// Reads the request body frame by frame, checking it against the pattern, and reports the count.
async fn sink(request: Request<Incoming>) -> Response<TestBody> {
    let mut body = request.into_body();
    let mut bytes = 0u64;
    let mut intact = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            intact = false;
            break;
        };
        if let Some(data) = frame.data_ref() {
            intact &= matches_pattern(bytes, data);
            bytes += data.len() as u64;
        }
    }
    full(json!({"bytes": bytes, "intact": intact}).to_string())
}

/// A WebSocket echo server (tungstenite does the handshake): every message comes back, prefixed with "echo:" for
/// text. It also reports the upgrade request's headers as its first message.
#[allow(clippy::result_large_err)] // tungstenite's handshake callback fixes the error type
pub async fn websocket_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
                let record = Arc::clone(&seen);
                let callback =
                    move |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                          response| {
                        let mut names: Vec<String> = request
                            .headers()
                            .iter()
                            .map(|(n, v)| format!("{}: {}", n, v.to_str().unwrap_or("?")))
                            .collect();
                        names.insert(0, format!("path: {}", request.uri()));
                        *record.lock().unwrap() = names;
                        Ok(response)
                    };
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                else {
                    return;
                };
                use tokio_tungstenite::tungstenite::Message;
                let report = seen.lock().unwrap().join("\n");
                let _ = socket.send(Message::text(report)).await;
                while let Some(Ok(message)) = socket.next().await {
                    let reply = match message {
                        Message::Text(text) => Message::text(format!("echo:{text}")),
                        Message::Binary(data) => Message::Binary(data),
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    if socket.send(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Sends raw bytes on a new connection and returns everything read until the server closes it (or `limit` passes).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}
