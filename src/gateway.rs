//! The request pipeline: what happens to one request, phase by phase, in reading order.
//!
//! [`Gateway::handle`] cannot fail: it runs [`Gateway::try_handle`], turns a [`Rejection`] into its response, and
//! writes the access-log line. `try_handle` is the list of phases, each a plain function that may answer early:
//!
//! 1. `request_filter`: refuse what must never be forwarded (ambiguous framing, CONNECT).
//! 2. (SSO entry and the forum's own login/logout routes slot in here: they answer without the upstream.)
//! 3. hop-by-hop headers removed, then `upstream_request_filter`: `X-Forwarded-*` (and, later, identity headers,
//!    stripped then set).
//! 4. [`Upstream::forward`]: the exchange with the forum, hop-by-hop headers removed both ways.
//! 5. (`response_filter`: later, cache headers for responses that carried a session.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::header::{HOST, HeaderValue};
use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::access_log::RedactedTarget;
use crate::body::Body;
use crate::config::Config;
use crate::directory::DirectoryError;
use crate::forwarded::Forwarding;
use crate::framing::FramingVerdicts;
use crate::proxy::{self, Timing, Tunnels, Upstream};
use crate::reject::{Blame, Rejection, wants_json};
use crate::sso::Sso;

/// Facts about the connection a request arrived on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `https` on the TLS listener, `http` on the plain one: what `X-Forwarded-Proto` says.
    pub proto: &'static str,
    /// The HTTP/1 framing guard's findings; `None` on HTTP/2, whose frames cannot be ambiguous.
    pub framing: Option<Arc<FramingVerdicts>>,
    requests: AtomicU64,
    opened: Instant,
    /// Milliseconds after `opened` when the last request arrived: how HTTP/2 idle connections are found.
    last_request_ms: AtomicU64,
}

impl ConnInfo {
    pub fn new(
        peer: SocketAddr,
        proto: &'static str,
        framing: Option<Arc<FramingVerdicts>>,
    ) -> Self {
        Self {
            peer,
            proto,
            framing,
            requests: AtomicU64::new(0),
            opened: Instant::now(),
            last_request_ms: AtomicU64::new(0),
        }
    }

    /// How long since the last request started (or since the connection opened).
    pub fn idle_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_request_ms.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }

    fn touch(&self, now: Instant) {
        let ms = u64::try_from(now.duration_since(self.opened).as_millis()).unwrap_or(u64::MAX);
        self.last_request_ms.store(ms, Ordering::Relaxed);
    }
}

/// One worker's pipeline: the state all workers share, and this worker's own upstream pool.
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    upstream: Upstream,
}

/// What every worker shares.
#[derive(Debug)]
pub struct Shared {
    forwarding: Forwarding,
    tunnels: Tunnels,
    /// Query parameters whose values never reach a log line (tokens).
    redacted_params: Vec<String>,
    /// JWT SSO, when configured.
    sso: Option<Sso>,
}

impl Shared {
    /// Builds what every worker shares; opens the member directory when SSO is configured.
    pub fn new(config: &Config, tunnels: Tunnels) -> Result<Arc<Self>, DirectoryError> {
        let sso = Sso::new(config)?;
        let mut redacted_params: Vec<String> = [
            "jwt",
            "token",
            "ms_token",
            "access_token",
            "id_token",
            "code",
        ]
        .map(String::from)
        .to_vec();
        if let Some(sso) = &sso {
            for name in sso.token_params() {
                if !redacted_params.iter().any(|known| known == name) {
                    redacted_params.push(name.to_owned());
                }
            }
        }
        Ok(Arc::new(Shared {
            forwarding: Forwarding::new(config.trusted_proxies.clone()),
            tunnels,
            redacted_params,
            sso,
        }))
    }

    pub fn sso(&self) -> Option<&Sso> {
        self.sso.as_ref()
    }
}

impl Gateway {
    pub fn new(shared: Arc<Shared>, upstream: Upstream) -> Self {
        Self { shared, upstream }
    }

    /// Answers one request. Never fails: rejections become their page, and every request gets one access-log line.
    pub async fn handle(&self, request: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let started = Instant::now();
        conn.touch(started);
        let index = conn.requests.fetch_add(1, Ordering::Relaxed);
        let method = request.method().clone();
        let uri = request.uri().clone();
        let version = request.version();
        let json = wants_json(request.headers());
        let mut timing = Timing::default();

        let result = self.try_handle(request, conn, index, &mut timing).await;
        let (response, rejection) = match result {
            Ok(response) => (response, None),
            Err(rejection) => {
                let facts = (rejection.code(), rejection.to_string(), rejection.blame());
                (rejection.into_response(json), Some(facts))
            }
        };

        let target = RedactedTarget::new(&uri, &self.shared.redacted_params);
        let status = response.status().as_u16();
        let ms = millis(started.elapsed());
        let upstream_ms = timing.upstream.map(millis);
        let (reason, cause, blame) = match &rejection {
            Some((code, cause, blame)) => (
                Some(*code),
                Some(tracing::field::display(cause)),
                Some(*blame),
            ),
            None => (None, None, None),
        };
        // One line per request; a refusal carries its code and cause on that same line, at warn when it is not the
        // client's doing (the upstream is down, or the gateway is).
        macro_rules! access_line {
            ($level:expr) => {
                tracing::event!(
                    target: "ssogate::access",
                    $level,
                    peer = %conn.peer,
                    method = %method,
                    path = %target,
                    version = ?version,
                    status,
                    ms,
                    upstream_ms,
                    reason,
                    cause,
                )
            };
        }
        match blame {
            Some(Blame::Upstream | Blame::Gateway) => access_line!(tracing::Level::WARN),
            Some(Blame::Client) | None => access_line!(tracing::Level::INFO),
        }
        response
    }

    async fn try_handle(
        &self,
        mut request: Request<Incoming>,
        conn: &ConnInfo,
        index: u64,
        timing: &mut Timing,
    ) -> Result<Response<Body>, Rejection> {
        request_filter(&request, conn, index)?;
        if let Some(sso) = &self.shared.sso {
            if let Some(entry) = sso.route(request.uri().path()) {
                let client = self
                    .shared
                    .forwarding
                    .client_ip(conn.peer.ip(), request.headers());
                return sso.enter(entry, request, client).await;
            }
        }
        // Before anything of ours is added: a client naming our headers in `Connection:` must not remove them.
        let upgrade = proxy::websocket_upgrade(&request);
        proxy::strip_hop_by_hop(request.headers_mut());
        let client_host = client_host(&request);
        self.upstream_request_filter(&mut request, conn, client_host.as_ref());
        self.upstream
            .forward(request, upgrade, client_host, &self.shared.tunnels, timing)
            .await
    }

    fn upstream_request_filter(
        &self,
        request: &mut Request<Incoming>,
        conn: &ConnInfo,
        host: Option<&HeaderValue>,
    ) {
        self.shared
            .forwarding
            .apply(request.headers_mut(), conn.peer.ip(), conn.proto, host);
    }
}

/// Milliseconds with microsecond precision: readable in a log line, exact enough to compare.
fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Refuses requests that must never reach the upstream.
fn request_filter(
    request: &Request<Incoming>,
    conn: &ConnInfo,
    index: u64,
) -> Result<(), Rejection> {
    if let Some(ambiguity) = conn
        .framing
        .as_ref()
        .and_then(|verdicts| verdicts.check(index))
    {
        return Err(Rejection::AmbiguousFraming(ambiguity));
    }
    if request.method() == Method::CONNECT {
        return Err(Rejection::MethodNotAllowed(Method::CONNECT));
    }
    Ok(())
}

/// The host the client asked for: the URI's authority (HTTP/2 `:authority`, or an absolute-form HTTP/1.1 target,
/// which RFC 9112 §3.2.2 says wins over `Host`), else the `Host` header.
fn client_host(request: &Request<Incoming>) -> Option<HeaderValue> {
    if let Some(authority) = request.uri().authority() {
        return HeaderValue::from_str(authority.as_str()).ok();
    }
    request.headers().get(HOST).cloned()
}
