//! The client side: sending a request to the forum and bringing its answer back.
//!
//! Bodies stream both ways (hyper's `Incoming` is handed on, never collected), connections to the upstream are pooled
//! and kept alive, hop-by-hop headers are removed in both directions (RFC 9110 §7.6.1), and a WebSocket (or any other
//! HTTP/1.1 upgrade) is spliced through once the upstream has answered `101 Switching Protocols`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{CONNECTION, HOST, HeaderName, HeaderValue, UPGRADE};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tokio::sync::Semaphore;

use crate::body::Body;
use crate::config::UpstreamConfig;
use crate::pool::Pool;
use crate::reject::{Rejection, UpstreamError};

/// Headers that describe one connection, not the message, and so never cross a proxy (RFC 9110 §7.6.1, plus the
/// non-standard `Proxy-Connection` that old clients still send).
const HOP_BY_HOP_NAMES: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

static HOP_BY_HOP: [HeaderName; 8] = [
    HeaderName::from_static(HOP_BY_HOP_NAMES[0]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[1]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[2]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[3]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[4]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[5]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[6]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[7]),
];

/// Bit `n` set when some hop-by-hop name is `n` bytes long: most names are passed over on their length alone.
const HOP_BY_HOP_LENGTHS: u32 = {
    let mut mask = 0;
    let mut i = 0;
    while i < HOP_BY_HOP_NAMES.len() {
        mask |= 1 << HOP_BY_HOP_NAMES[i].len();
        i += 1;
    }
    mask
};

/// Whether a field name, in any spelling, is one of the hop-by-hop headers.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    name.len() < 32
        && HOP_BY_HOP_LENGTHS & (1 << name.len()) != 0
        && HOP_BY_HOP_NAMES
            .iter()
            .any(|hop| name.eq_ignore_ascii_case(hop.as_bytes()))
}

/// The pooled client to the forum and what it needs to address it.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// WebSocket upgrades only: handing the socket over needs hyper's connection task.
    client: Client<HttpConnector, Incoming>,
    /// Everything else.
    pool: Arc<Pool>,
    authority: Authority,
    host: HeaderValue,
    timeout: Duration,
    preserve_host: bool,
}

/// What a forwarded exchange reports back for the access log.
#[derive(Debug, Default, Clone)]
pub struct Timing {
    /// From sending the request to receiving the upstream's response head.
    pub upstream: Option<Duration>,
    /// Which part of the gateway answered (the metrics' `route` label).
    pub route: crate::metrics::RouteKind,
    /// Why the request ended as it did, when it was not refused (the access line's `reason`).
    pub decision: &'static str,
}

/// Where the upgraded tunnels live, so shutdown can wait for (or cut) them.
#[derive(Debug, Clone)]
pub struct Tunnels {
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    /// The listeners' connection slots: a tunnel outlives its HTTP connection, so it takes a slot of its own.
    pub slots: Arc<Semaphore>,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            // The gateway sets Host itself (preserve_host decides which); the client must not add its own.
            .set_host(false)
            .build(connector);
        let host = HeaderValue::from_str(config.authority.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Self {
            client,
            pool: Pool::new(
                config.authority.to_string(),
                config.connect_timeout,
                config.pool_idle_timeout,
            ),
            authority: config.authority.clone(),
            host,
            timeout: config.timeout,
            preserve_host: config.preserve_host,
        }
    }

    /// Sends `request` (hop-by-hop headers already removed by the gateway) and returns the upstream's response.
    ///
    /// `upgrade` is the WebSocket upgrade the client asked for ([`websocket_upgrade`]), `client_host` the host it
    /// asked for; `tunnels` receives the splice task of an upgrade.
    pub async fn forward(
        &self,
        mut request: Request<Incoming>,
        upgrade: Option<HeaderValue>,
        client_host: Option<HeaderValue>,
        tunnels: &Tunnels,
        timing: &mut Timing,
    ) -> Result<Response<Body>, Rejection> {
        let host = match client_host {
            Some(host) if self.preserve_host => host,
            _ => self.host.clone(),
        };
        request.headers_mut().insert(HOST, host);
        // The forum speaks HTTP/1.1 whatever the client spoke to us.
        *request.version_mut() = Version::HTTP_11;

        if upgrade.is_none() {
            // The common case, on this worker's own connections (the target goes out in origin-form).
            let started = Instant::now();
            let sent = tokio::time::timeout(self.timeout, self.pool.send(request)).await;
            timing.upstream = Some(started.elapsed());
            let response = self.response_head(sent)?;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                return Err(unasked_upgrade());
            }
            return Ok(response.map(Body::Driven));
        }

        let path_and_query = request.uri().path_and_query().cloned();
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query =
            path_and_query.or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
        *request.uri_mut() =
            Uri::from_parts(parts).map_err(|_| Rejection::BadRequest("unusable request target"))?;

        let downstream_upgrade = match &upgrade {
            Some(protocol) => {
                // Taken before the upstream is asked, so a full house answers 503 rather than a dead 101.
                let slot = Arc::clone(&tunnels.slots)
                    .try_acquire_owned()
                    .map_err(|_| Rejection::TooManyConnections)?;
                let headers = request.headers_mut();
                headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(UPGRADE, protocol.clone());
                Some((hyper::upgrade::on(&mut request), slot))
            }
            None => None,
        };

        let started = Instant::now();
        // Boxed: upgrades are rare, and the client's future would otherwise weigh on every request's.
        let sent = tokio::time::timeout(self.timeout, Box::pin(self.client.request(request))).await;
        timing.upstream = Some(started.elapsed());
        let mut response = self.response_head(sent)?;

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let (Some((downstream, slot)), Some(protocol)) = (downstream_upgrade, upgrade) else {
                return Err(unasked_upgrade());
            };
            let upstream = hyper::upgrade::on(&mut response);
            strip_hop_by_hop(response.headers_mut());
            let headers = response.headers_mut();
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            let agreed = headers_value(headers, &UPGRADE).unwrap_or(protocol);
            headers.insert(UPGRADE, agreed);
            spawn_tunnel(downstream, upstream, slot, tunnels);
            return Ok(response.map(|_| Body::Empty));
        }

        strip_hop_by_hop(response.headers_mut());
        Ok(response.map(Body::Upstream))
    }
}

impl Upstream {
    /// The response head of an exchange bounded by `upstream.timeout`, or why there is none.
    fn response_head<T, E: std::error::Error + 'static>(
        &self,
        sent: Result<Result<T, E>, tokio::time::error::Elapsed>,
    ) -> Result<T, Rejection> {
        match sent {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(Rejection::UpstreamUnavailable(UpstreamError::new(&error))),
            Err(_) => Err(Rejection::UpstreamTimeout(self.timeout)),
        }
    }
}

/// A 101 nobody asked for cannot be relayed: the client would not know what to speak next.
fn unasked_upgrade() -> Rejection {
    Rejection::UpstreamUnavailable(UpstreamError::from_message(
        "upstream answered 101 to a request that asked for no upgrade",
    ))
}

fn headers_value(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    headers.get(name).cloned()
}

/// Splices the client's and the upstream's upgraded connections together until either side closes or the gateway
/// shuts down.
fn spawn_tunnel(
    downstream: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    slot: tokio::sync::OwnedSemaphorePermit,
    tunnels: &Tunnels,
) {
    let shutdown = tunnels.shutdown.clone();
    tunnels.tracker.spawn(async move {
        let _slot = slot;
        let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(error = %error, "upgrade failed before the tunnel opened");
                return;
            }
        };
        let mut downstream = TokioIo::new(downstream);
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut downstream, &mut upstream) => match copied {
                Ok((up, down)) => tracing::debug!(bytes_up = up, bytes_down = down, "tunnel closed"),
                Err(error) => tracing::debug!(error = %error, "tunnel ended with an error"),
            },
            () = shutdown.cancelled() => tracing::debug!("tunnel cut by shutdown"),
        }
    });
}

/// For an HTTP/1.1 WebSocket upgrade (`Connection: upgrade`, `Upgrade: websocket`), the `Upgrade` value to forward.
///
/// Only WebSocket is relayed: a tunnel escapes every later per-request check, and the other upgrades a client could
/// ask for (h2c, TLS) have no business crossing an authentication gateway. Other `Upgrade` headers are dropped with
/// the hop-by-hop headers and the request goes on as a plain one.
pub fn websocket_upgrade<B>(request: &Request<B>) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let protocol = request.headers().get(UPGRADE)?;
    let is_websocket = protocol.to_str().is_ok_and(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
    });
    (is_websocket && connection_has_token(request.headers(), "upgrade")).then(|| protocol.clone())
}

fn connection_has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Removes the hop-by-hop headers and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(named) = connection_named(headers) {
        for name in named {
            headers.remove(&name);
        }
    }
    // One pass to look, then remove only what is there: each removal costs a hash and a probe.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[index] = true;
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, there)| *there) {
        headers.remove(name);
    }
}

/// The headers listed in `Connection:` (its options such as `close` are listed too; removing them is harmless).
fn connection_named(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut values = headers.get_all(CONNECTION).iter().peekable();
    values.peek()?;
    let mut named = Vec::new();
    for value in values {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let item = item.trim();
            // Options and names already in HOP_BY_HOP (nearly every `Connection:` says one of these) need no
            // HeaderName of their own.
            if item.is_empty()
                || ["close", "keep-alive", "upgrade", "te"]
                    .iter()
                    .any(|known| item.eq_ignore_ascii_case(known))
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(item.as_bytes()) {
                named.push(name);
            }
        }
    }
    Some(named)
}

impl UpstreamError {
    pub fn from_message(message: &str) -> Self {
        Self::new(&SimpleError(message.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SimpleError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_connection_named_headers() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Secret, close"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic x"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn finds_connection_tokens_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.append(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(connection_has_token(&headers, "upgrade"));
        assert!(!connection_has_token(&headers, "close"));
    }
}
