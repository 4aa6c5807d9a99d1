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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use std::borrow::Cow;

use http::HeaderMap;
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST, HeaderValue, SET_COOKIE};
use http::{Method, Request, Response};
use hyper::body::Incoming;

use arc_swap::ArcSwap;

use crate::access_log::{self, AccessLine, RedactedTarget};
use crate::body::Body;
use crate::canonical;
use crate::config::Config;
use crate::context::{self, RequestContext};
use crate::directory::DirectoryError;
use crate::forwarded::Forwarding;
use crate::framing::FramingVerdicts;
use crate::identity::{self, ForumIdentity};
use crate::metrics::{Metrics, RouteKind};
use crate::proxy::{self, Timing, Tunnels, Upstream};
use crate::reject::{Blame, Rejection, wants_json};
use crate::routes::{self, LogoutDecision, Route};
use crate::sso::{Sso, now, return_path};

/// Facts about the connection a request arrived on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The peer's address as a header value, rendered once for every request on the connection.
    pub peer_value: HeaderValue,
    /// `IP:port`, rendered once for the access lines of every request on the connection.
    pub peer_text: Box<str>,
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
            peer_value: crate::forwarded::peer_value(peer.ip()),
            peer_text: peer.to_string().into_boxed_str(),
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
    live: Arc<Live>,
    upstream: Upstream,
    /// This worker's handle on the `Shared` in force (see [`Gateway::shared`]).
    local: Mutex<Local>,
}

#[derive(Debug)]
struct Local {
    generation: u64,
    shared: Arc<LocalShared>,
}

/// A worker's own reference to a `Shared`. Each request clones this `Arc`, whose count only this worker touches;
/// cloning the `Arc<Shared>` itself would bounce one counter between every worker's CPU on every request.
#[derive(Debug)]
struct LocalShared(Arc<Shared>);

impl std::ops::Deref for LocalShared {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every worker and the admin listener share for the whole run: the configuration-derived [`Shared`], which a
/// reload replaces in one atomic swap, and what a reload must never reset (metrics, readiness probes).
#[derive(Debug)]
pub struct Live {
    shared: ArcSwap<Shared>,
    /// Bumped after every swap, so workers can tell cheaply that their cached `Shared` is stale.
    generation: AtomicU64,
    pub metrics: Metrics,
    pub readiness: crate::health::Readiness,
}

impl Live {
    pub fn new(shared: Arc<Shared>, readiness: crate::health::Readiness) -> Self {
        Self {
            shared: ArcSwap::new(shared),
            generation: AtomicU64::new(0),
            metrics: Metrics::new(),
            readiness,
        }
    }

    /// The configuration now in force. A request takes it once and keeps it to the end, so one request never sees
    /// half of an old configuration and half of a new one.
    pub fn load(&self) -> Arc<Shared> {
        self.shared.load_full()
    }

    /// Puts a reloaded configuration in force for every request that starts from now on.
    pub fn store(&self, shared: Arc<Shared>) {
        self.shared.store(shared);
        self.generation.fetch_add(1, Ordering::Release);
    }
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
    /// The signed assertion's audience: the upstream's URL.
    audience: String,
    /// The identity headers' names, stripped from every request even when SSO is off (a forum that trusts them must
    /// never see a client's).
    identity: ForumIdentity,
}

impl Shared {
    /// Builds what every worker shares; opens the member directory when SSO is configured.
    pub async fn new(config: &Config, tunnels: Tunnels) -> Result<Arc<Self>, DirectoryError> {
        let sso = Sso::new(config).await?;
        Ok(Arc::new(Self::assemble(config, tunnels, sso)))
    }

    /// The same, for a reloaded `config`: the directory, replay memory and ended sessions carry over (see
    /// [`Sso::reloaded`]).
    pub fn reloaded(&self, config: &Config) -> Arc<Self> {
        let sso = self.sso.as_ref().and_then(|sso| sso.reloaded(config));
        Arc::new(Self::assemble(config, self.tunnels.clone(), sso))
    }

    fn assemble(config: &Config, tunnels: Tunnels, sso: Option<Sso>) -> Self {
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
        Shared {
            audience: config
                .upstream
                .url
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            forwarding: Forwarding::new(config.trusted_proxies.clone()),
            identity: ForumIdentity::new(&config.identity, None),
            tunnels,
            redacted_params,
            sso,
        }
    }

    pub fn sso(&self) -> Option<&Sso> {
        self.sso.as_ref()
    }
}

impl Gateway {
    pub fn new(live: Arc<Live>, upstream: Upstream) -> Self {
        let local = Mutex::new(Local {
            generation: live.generation.load(Ordering::Acquire),
            shared: Arc::new(LocalShared(live.load())),
        });
        Self {
            live,
            upstream,
            local,
        }
    }

    /// The `Shared` in force, through this worker's cache: refreshed only after a reload.
    fn shared(&self) -> Arc<LocalShared> {
        let generation = self.live.generation.load(Ordering::Acquire);
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        if local.generation != generation {
            *local = Local {
                generation,
                shared: Arc::new(LocalShared(self.live.load())),
            };
        }
        Arc::clone(&local.shared)
    }

    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// Answers one request. Never fails: rejections become their page, and every request gets one access-log line.
    /// Everything it logs carries the request's id (see [`crate::context`]).
    pub async fn handle(&self, request: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let shared = self.shared();
        let id = request_id(&shared, conn, request.headers());
        let context = RequestContext::new(Arc::clone(&id));
        // Boxed once here: the request's future is several KiB, and hyper and the context scope would otherwise copy
        // it on every hand-over (a measurable share of the proxy's time went to those copies).
        let inner = Box::pin(self.handle_in_context(shared, id, request, conn));
        context::scope(context, inner).await
    }

    async fn handle_in_context(
        &self,
        shared: Arc<LocalShared>,
        id: Arc<str>,
        mut request: Request<Incoming>,
        conn: &ConnInfo,
    ) -> Response<Body> {
        let started = Instant::now();
        conn.touch(started);
        let index = conn.requests.fetch_add(1, Ordering::Relaxed);
        let method = request.method().clone();
        let uri = request.uri().clone();
        let version = request.version();
        let json = wants_json(request.headers());
        let id_header = HeaderValue::from_str(&id).ok();
        if let Some(value) = &id_header {
            request.headers_mut().insert(context::HEADER, value.clone());
        }
        let mut timing = Timing::default();

        let result = self
            .try_handle(&shared, request, conn, index, &mut timing)
            .await;
        let (mut response, rejection) = match result {
            Ok(response) => (response, None),
            Err(rejection) => {
                let facts = (rejection.code(), rejection.to_string(), rejection.blame());
                (rejection.into_response(json), Some(facts))
            }
        };
        if let Some(value) = id_header {
            response.headers_mut().insert(context::HEADER, value);
        }

        let target = RedactedTarget::new(&uri, &shared.redacted_params);
        let status = response.status().as_u16();
        let metrics = &self.live.metrics;
        metrics.request(timing.route, status, timing.upstream);
        if timing.route == RouteKind::SsoEntry {
            metrics.sso_login(rejection.as_ref().map_or("ok", |(code, _, _)| *code));
        }
        let us = micros(started.elapsed());
        let upstream_us = timing.upstream.map(micros);
        let (reason, cause, blame) = match rejection {
            Some((code, cause, blame)) => (code, Some(cause), Some(blame)),
            None => (timing.decision, None, None),
        };
        // One line per request; a refusal carries its code and cause on that same line, at warn when it is not the
        // client's doing (the upstream is down, or the gateway is).
        let member = context::current_member();
        access_log::write(&AccessLine {
            level: match blame {
                Some(Blame::Upstream | Blame::Gateway) => tracing::Level::WARN,
                Some(Blame::Client) | None => tracing::Level::INFO,
            },
            peer: &conn.peer_text,
            method: &method,
            target,
            version,
            status,
            us,
            upstream_us,
            reason,
            cause: cause.as_deref(),
            request_id: &id,
            member: member.as_deref(),
        });
        response
    }

    async fn try_handle(
        &self,
        shared: &Shared,
        mut request: Request<Incoming>,
        conn: &ConnInfo,
        index: u64,
        timing: &mut Timing,
    ) -> Result<Response<Body>, Rejection> {
        request_filter(&request, conn, index)?;
        // Strip first, on every request and in every mode: whatever the client sent under our headers' names (in any
        // spelling, also when named in `Connection:`) never reaches the forum, and each strip is logged.
        shared.identity.strip(request.headers_mut(), conn.peer);
        // Before anything of ours is added: a client naming our headers in `Connection:` must not remove them.
        let upgrade = proxy::websocket_upgrade(&request);
        proxy::strip_hop_by_hop(request.headers_mut());

        let Some(sso) = &shared.sso else {
            // A plain proxy: the path goes through byte for byte.
            timing.route = RouteKind::Proxy;
            timing.decision = "proxied";
            return self.forward(shared, request, conn, upgrade, timing).await;
        };

        // From here on every decision is made on one canonical path, and that is the path the forum gets.
        canonicalize(&mut request)?;
        let mut request = match self
            .gateway_route(shared, sso, request, conn, timing)
            .await?
        {
            Routed::Answered(response) => return Ok(response),
            Routed::Forum(request) => request,
        };

        timing.route = RouteKind::Proxy;
        let now = now();
        let member = sso.session_member(request.headers(), now).await;
        identity::remove_cookie(request.headers_mut(), sso.sessions().cookie_name());
        let Some((_, entry)) = member else {
            if sso.routes().is_protected(request.uri().path()) {
                timing.decision = "sign_in_first";
                return self.sign_in_first(sso, &request);
            }
            timing.decision = "proxied";
            return self.forward(shared, request, conn, upgrade, timing).await;
        };
        sso.identity()
            .apply(request.headers_mut(), &entry, &shared.audience, now);
        context::set_member(&entry.member.id);
        timing.decision = "proxied_member";
        let mut response = self.forward(shared, request, conn, upgrade, timing).await?;
        private_cache(response.headers_mut());
        Ok(response)
    }

    /// The routes the gateway answers itself when SSO is on: the entry routes, the JWKS, the forum's login,
    /// sign-up, logout and account routes. `None`: the request is for the forum.
    async fn gateway_route(
        &self,
        shared: &Shared,
        sso: &Sso,
        request: Request<Incoming>,
        conn: &ConnInfo,
        timing: &mut Timing,
    ) -> Result<Routed, Rejection> {
        let path = request.uri().path();
        if let Some(entry) = sso.route(path) {
            timing.route = RouteKind::SsoEntry;
            timing.decision = "signed_in";
            let client = shared
                .forwarding
                .client_ip(conn.peer.ip(), request.headers());
            // Boxed: the sign-in's future is large, and every request's future would otherwise carry (and copy) it.
            return Box::pin(sso.enter(entry, request, client))
                .await
                .map(Routed::Answered);
        }
        if let Some((jwks_path, jwks)) = sso.identity().assertion().and_then(|a| a.jwks()) {
            if path == jwks_path {
                timing.route = RouteKind::Jwks;
                timing.decision = "jwks";
                return Ok(Routed::Answered(jwks_response(jwks)));
            }
        }
        let Some(route) = sso.routes().route(path) else {
            return Ok(Routed::Forum(request));
        };
        if route != Route::Logout {
            timing.route = RouteKind::ForumRoute;
            timing.decision = match route {
                Route::Login => "login_redirect",
                Route::Signup => "signup_redirect",
                Route::AccountSettings | Route::Logout => "account_redirect",
            };
            return Ok(Routed::Answered(
                sso.routes().integrator_redirect(route, &request),
            ));
        }
        timing.route = RouteKind::Logout;
        let response = match routes::logout_decision(
            request.method(),
            sso.routes().same_origin(request.headers()),
        ) {
            LogoutDecision::LogOut => {
                timing.decision = "signed_out";
                if let Some(session) = sso.sessions().read(request.headers(), now()) {
                    context::set_member(&session.member_id);
                    Box::pin(sso.log_out(&session))
                        .await
                        .map_err(Rejection::Directory)?;
                }
                let mut response =
                    routes::redirect(StatusCode::SEE_OTHER, &sso.routes().after_logout());
                if let Ok(clear) = HeaderValue::from_str(&sso.sessions().clear()) {
                    response.headers_mut().insert(SET_COOKIE, clear);
                }
                response
            }
            LogoutDecision::Confirm => {
                timing.decision = "logout_confirm";
                routes::confirm_logout_page(path)
            }
            LogoutDecision::Refuse => return Err(Rejection::CrossSiteLogout),
            LogoutDecision::WrongMethod => {
                return Err(Rejection::MethodNotAllowed(request.method().clone()));
            }
        };
        Ok(Routed::Answered(response))
    }

    /// A protected path without a session: browsers go to sign in and come back; API callers get 401.
    fn sign_in_first(
        &self,
        sso: &Sso,
        request: &Request<Incoming>,
    ) -> Result<Response<Body>, Rejection> {
        if routes::is_api_request(request.headers()) {
            return Err(Rejection::LoginRequired);
        }
        let here = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let back = return_path::check(here).unwrap_or("/");
        Ok(sso.routes().sign_in_redirect(back))
    }

    async fn forward(
        &self,
        shared: &Shared,
        mut request: Request<Incoming>,
        conn: &ConnInfo,
        upgrade: Option<HeaderValue>,
        timing: &mut Timing,
    ) -> Result<Response<Body>, Rejection> {
        let client_host = client_host(&request);
        shared.forwarding.apply(
            request.headers_mut(),
            conn.peer.ip(),
            &conn.peer_value,
            conn.proto,
            client_host.as_ref(),
        );
        self.upstream
            .forward(request, upgrade, client_host, &shared.tunnels, timing)
            .await
    }
}

/// What the gateway's own routes made of a request.
enum Routed {
    Answered(Response<Body>),
    /// Not one of ours: it goes on to the forum.
    Forum(Request<Incoming>),
}

/// Rewrites the request's path to its canonical form, or refuses an ambiguous one.
fn canonicalize(request: &mut Request<Incoming>) -> Result<(), Rejection> {
    let canonical = match canonical::canonical(request.uri().path()) {
        Err(ambiguous) => return Err(Rejection::AmbiguousPath(ambiguous)),
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(path)) => path,
    };
    let target = match request.uri().query() {
        Some(query) => format!("{canonical}?{query}"),
        None => canonical,
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = Some(
        http::uri::PathAndQuery::try_from(target)
            .map_err(|_| Rejection::BadRequest("unusable request target"))?,
    );
    *request.uri_mut() = http::Uri::from_parts(parts)
        .map_err(|_| Rejection::BadRequest("unusable request target"))?;
    Ok(())
}

/// A response to a request that carried a session must not be stored by shared caches: `private` is added unless
/// the forum already said `private` or `no-store` (and a `public` or `s-maxage` it said is dropped).
fn private_cache(headers: &mut HeaderMap) {
    let existing: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect();
    let lower = |d: &String| d.to_ascii_lowercase();
    if existing
        .iter()
        .map(lower)
        .any(|d| d == "no-store" || d == "private" || d.starts_with("private="))
    {
        return;
    }
    let mut directives = vec!["private".to_owned()];
    directives.extend(existing.into_iter().filter(|d| {
        let d = d.to_ascii_lowercase();
        d != "public" && !d.starts_with("s-maxage")
    }));
    if let Ok(value) = HeaderValue::from_str(&directives.join(", ")) {
        headers.insert(CACHE_CONTROL, value);
    }
}

fn jwks_response(body: &str) -> Response<Body> {
    let mut response = Response::new(Body::full(body.to_owned()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The request's id: a trusted proxy's `X-Request-Id` when it sent a usable one, else a new one.
fn request_id(shared: &Shared, conn: &ConnInfo, headers: &HeaderMap) -> Arc<str> {
    if let Some(value) = headers.get(context::HEADER) {
        if shared.forwarding.is_trusted(conn.peer.ip()) {
            if let Some(id) = context::accept_incoming(value) {
                return id;
            }
        }
    }
    context::new_id()
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
