//! Listeners and connections: accept, TLS, HTTP/1.1 or HTTP/2, and a graceful stop.
//!
//! Each listener has an accept loop; each connection a task that serves it with hyper until the client leaves or the
//! gateway stops. The plain listener speaks HTTP/1.1; the TLS listener lets ALPN choose HTTP/2 or HTTP/1.1. HTTP/1
//! connections pass through the [`FramingGuard`]. A semaphore bounds the connections served at once.
//!
//! Stopping ([`Running::shutdown`]) closes the listeners, asks every connection to finish the request it is serving
//! and then close, cuts upgraded tunnels, and waits for all that up to `limits.shutdown_timeout`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, UpstreamConfig};
use crate::framing::FramingGuard;
use crate::gateway::{ConnInfo, Gateway, Live, Shared};
use crate::health::Readiness;
use crate::proxy::{Tunnels, Upstream};
use crate::reload::Reloader;
use crate::tls::{self, TlsError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot start a worker thread: {source}")]
    Worker { source: std::io::Error },
    #[error("directory.path: {0}")]
    Directory(#[from] crate::directory::DirectoryError),
}

/// Per-connection settings, shared by all connections. A reload swaps in new ones (timeouts, header size, the TLS
/// certificate); each connection keeps those it started with.
pub(crate) struct ConnSettings {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_header_bytes: usize,
    shutdown_timeout: Duration,
    slots: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for ConnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnSettings")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl ConnSettings {
    /// The settings for `config`, keeping the connection slots (their number needs a restart).
    pub(crate) fn new(config: &Config, slots: Arc<Semaphore>) -> Result<Self, TlsError> {
        let tls = match &config.tls {
            Some(tls) => Some(TlsAcceptor::from(tls::server_config(tls)?)),
            None => None,
        };
        Ok(Self {
            header_read_timeout: config.limits.header_read_timeout,
            idle_timeout: config.limits.idle_timeout,
            max_header_bytes: config.limits.max_header_bytes,
            shutdown_timeout: config.limits.shutdown_timeout,
            slots,
            tls,
        })
    }

    pub(crate) fn slots(&self) -> Arc<Semaphore> {
        Arc::clone(&self.slots)
    }
}

/// A started gateway: its bound addresses and the means to stop it.
#[derive(Debug)]
pub struct Running {
    /// The plain HTTP listener's address (with the real port when the config said port 0).
    pub http_addr: Option<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
    /// The admin API's address, when it runs (it needs `admin.token`).
    pub admin_addr: Option<SocketAddr>,
    reloader: Reloader,
    shutdown: CancellationToken,
    connections: TaskTracker,
    tunnels: TaskTracker,
    workers: Vec<oneshot::Receiver<()>>,
    shutdown_timeout: Duration,
}

/// Binds the listeners and starts the worker threads. Returns once the sockets are bound, so callers (and tests) can
/// connect at once.
///
/// Each worker is an OS thread with its own single-threaded runtime, accept loops and upstream connection pool, as
/// nginx runs worker processes: a request and the upstream exchange it causes stay on one thread, with no wake-ups
/// across threads. Only the gateway's shared state (keys, directory, limits) is common to all workers.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let slots = Arc::new(Semaphore::new(config.limits.max_connections));
    let settings = Arc::new(ArcSwap::from_pointee(ConnSettings::new(
        config,
        Arc::clone(&slots),
    )?));
    // One socket per worker and listener, all bound to the same address with SO_REUSEPORT: the kernel spreads new
    // connections evenly over the workers' accept queues (one shared queue leaves one worker doing most of the work).
    // The flag says whether the listener speaks TLS.
    let mut listeners: Vec<(Vec<std::net::TcpListener>, bool)> = Vec::new();
    if let Some(addr) = config.listen {
        listeners.push((bind_workers("listen", addr, config.workers)?, false));
    }
    if let Some(tls) = &config.tls {
        listeners.push((
            bind_workers("tls.listen", tls.listen, config.workers)?,
            true,
        ));
    }

    let shutdown = CancellationToken::new();
    let connections = TaskTracker::new();
    let tunnels = Tunnels {
        tracker: TaskTracker::new(),
        shutdown: shutdown.clone(),
        slots: Arc::clone(&slots),
    };
    let shared = Shared::new(config, tunnels.clone()).await?;
    let sso_on = shared.sso().is_some();
    let live = Arc::new(Live::new(shared, Readiness::new(&config.upstream)));
    if sso_on {
        // Housekeeping for the shared SSO state, on the caller's runtime: forget expired replays, idle limiter keys.
        let sweeper = Arc::clone(&live);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = tick.tick() => if let Some(sso) = sweeper.load().sso() { sso.sweep() },
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    let mut running = Running {
        http_addr: None,
        tls_addr: None,
        admin_addr: None,
        reloader: Reloader::new(config.clone(), Arc::clone(&live), Arc::clone(&settings)),
        shutdown: shutdown.clone(),
        connections: connections.clone(),
        tunnels: tunnels.tracker.clone(),
        workers: Vec::new(),
        shutdown_timeout: config.limits.shutdown_timeout,
    };
    for (sockets, tls) in &listeners {
        let addr = sockets.first().and_then(|socket| socket.local_addr().ok());
        let shown = addr.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        if *tls {
            running.tls_addr = addr;
            tracing::info!(addr = %shown, upstream = %config.upstream.url, workers = config.workers, "listening for HTTPS (h2, http/1.1)");
        } else {
            running.http_addr = addr;
            tracing::info!(addr = %shown, upstream = %config.upstream.url, workers = config.workers, "listening for HTTP");
        }
    }

    if config.admin.enabled {
        let listener = TcpListener::bind(config.admin.listen)
            .await
            .map_err(|source| StartError::Bind {
                key: "admin.listen",
                addr: config.admin.listen,
                source,
            })?;
        running.admin_addr = listener.local_addr().ok();
        let addr = running.admin_addr.unwrap_or(config.admin.listen);
        let token = config.admin.token.as_deref().map(Arc::from);
        if token.is_some() {
            tracing::info!(%addr, "admin listener: health, readiness, metrics and the member API");
        } else {
            tracing::info!(%addr, "admin listener: health, readiness and metrics (set admin.token for the member API)");
        }
        tokio::spawn(admin_loop(
            listener,
            Arc::clone(&live),
            token,
            shutdown.clone(),
        ));
    } else {
        tracing::info!("admin listener off: set admin.listen for health, readiness and metrics");
    }

    for index in 0..config.workers {
        let mut own = Vec::new();
        for (sockets, tls) in &mut listeners {
            if let Some(socket) = sockets.pop() {
                own.push((socket, *tls));
            }
        }
        let worker = Worker {
            listeners: own,
            live: Arc::clone(&live),
            upstream: config.upstream.clone(),
            settings: Arc::clone(&settings),
            // Every connection checks this token whenever it is polled: a child per worker keeps that check on a
            // lock no other worker takes.
            shutdown: shutdown.child_token(),
            connections: connections.clone(),
            tunnels: tunnels.tracker.clone(),
        };
        let (done, finished) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("ssogate-worker-{index}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(worker.run()),
                    Err(error) => {
                        tracing::error!(error = %error, "worker {index}: cannot start its runtime");
                    }
                }
                let _ = done.send(());
            })
            .map_err(|source| StartError::Worker { source })?;
        running.workers.push(finished);
    }
    Ok(running)
}

/// One worker thread's share of the work.
struct Worker {
    listeners: Vec<(std::net::TcpListener, bool)>,
    live: Arc<Live>,
    upstream: UpstreamConfig,
    settings: Arc<ArcSwap<ConnSettings>>,
    shutdown: CancellationToken,
    connections: TaskTracker,
    tunnels: TaskTracker,
}

impl Worker {
    async fn run(self) {
        // The pool lives on this thread: its connections are driven by this runtime.
        let gateway = Arc::new(Gateway::new(self.live, Upstream::new(&self.upstream)));
        let mut loops = Vec::new();
        for (listener, tls) in self.listeners {
            let listener = match TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(error = %error, "worker cannot use its listener");
                    continue;
                }
            };
            loops.push(tokio::spawn(accept_loop(
                listener,
                tls,
                Arc::clone(&gateway),
                Arc::clone(&self.settings),
                self.shutdown.clone(),
                self.connections.clone(),
            )));
        }
        self.shutdown.cancelled().await;
        for accept_loop in loops {
            let _ = accept_loop.await;
        }
        // Connections (and tunnels) running on this thread need its runtime until they finish.
        let _ = tokio::time::timeout(self.settings.load().shutdown_timeout, async {
            self.connections.wait().await;
            self.tunnels.wait().await;
        })
        .await;
    }
}

impl Running {
    /// What re-reads the configuration (on SIGHUP, or when a test asks).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// A token that stops the gateway when cancelled (what a signal handler or a test uses).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the shutdown token is cancelled, then stops gracefully. Returns `true` when every connection
    /// finished within `limits.shutdown_timeout`.
    pub async fn serve_until_stopped(self) -> bool {
        self.shutdown.cancelled().await;
        self.shutdown().await
    }

    /// Stops accepting, lets requests in flight finish (bounded by `limits.shutdown_timeout`), cuts tunnels.
    pub async fn shutdown(self) -> bool {
        self.shutdown.cancel();
        self.connections.close();
        self.tunnels.close();
        tracing::info!(
            connections = self.connections.len(),
            "stopping: listeners closed, finishing requests in flight"
        );
        let drained = tokio::time::timeout(self.shutdown_timeout, async {
            self.connections.wait().await;
            self.tunnels.wait().await;
        })
        .await
        .is_ok();
        // Workers return once their share has drained or the same timeout has passed.
        for worker in self.workers {
            let _ =
                tokio::time::timeout(self.shutdown_timeout + Duration::from_secs(1), worker).await;
        }
        if drained {
            tracing::info!("stopped");
        } else {
            tracing::warn!(
                connections = self.connections.len(),
                timeout = ?self.shutdown_timeout,
                "stopped with connections still open after the shutdown timeout"
            );
        }
        drained
    }
}

/// The admin listener: HTTP/1.1, low traffic, on the caller's runtime.
async fn admin_loop(
    listener: TcpListener,
    live: Arc<Live>,
    token: Option<Arc<str>>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let live = Arc::clone(&live);
        let token = token.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let live = Arc::clone(&live);
                let token = token.clone();
                async move {
                    Ok::<_, Infallible>(crate::admin::handle(request, peer, live, token).await)
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            // On shutdown an admin connection finishes the request it is serving and takes no more.
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}

/// Reloads the configuration from `path` on every SIGHUP, until the process ends.
pub async fn reload_on_sighup(reloader: Reloader, path: std::path::PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};

    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(error) => {
            tracing::error!(error = %error, "cannot install the SIGHUP handler; reloading needs a restart");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        tracing::info!(signal = "SIGHUP", file = %path.display(), "reloading the configuration");
        // The outcome is logged and counted by the reloader.
        let _ = reloader.reload_file(&path);
    }
}

/// Resolves when the process gets SIGTERM or SIGINT.
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};

    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the gateway with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "stop requested");
}

/// `count` listening sockets on `addr` (the port of the first when `addr` says port 0), with SO_REUSEPORT.
fn bind_workers(
    key: &'static str,
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<std::net::TcpListener>, StartError> {
    // SO_REUSEPORT would let a second ssogate (same user) bind the same address and silently take half the
    // connections. A plain bind first fails with "address in use" if anything listens there already.
    if addr.port() != 0 {
        let probe = std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind {
            key,
            addr,
            source,
        })?;
        drop(probe);
    }
    let mut sockets = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = bind(addr).map_err(|source| StartError::Bind { key, addr, source })?;
        if let Ok(bound) = socket.local_addr() {
            addr = bound;
        }
        sockets.push(socket);
    }
    Ok(sockets)
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};

    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

async fn accept_loop(
    listener: TcpListener,
    tls: bool,
    gateway: Arc<Gateway>,
    settings: Arc<ArcSwap<ConnSettings>>,
    shutdown: CancellationToken,
    connections: TaskTracker,
) {
    // The slots never change (max_connections needs a restart), so they are taken once, outside the swap.
    let slots = settings.load().slots();
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Usually EMFILE/ENFILE: back off instead of spinning, and keep serving the connections we have.
                tracing::warn!(error = %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let gateway = Arc::clone(&gateway);
        // Each connection runs on the settings in force when it was accepted.
        let settings = settings.load_full();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let live = Arc::clone(gateway.live());
            live.metrics.connection_opened();
            match (tls, settings.tls.clone()) {
                (true, Some(acceptor)) => {
                    serve_tls(stream, peer, acceptor, gateway, &settings, &shutdown).await;
                }
                (false, _) => {
                    serve_http1(stream, peer, "http", gateway, &settings, &shutdown).await;
                }
                // Cannot happen (a reload never removes TLS from a running gateway); never answer in clear text.
                (true, None) => {}
            }
            live.metrics.connection_closed();
            drop(permit);
        });
    }
}

async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    gateway: Arc<Gateway>,
    settings: &ConnSettings,
    shutdown: &CancellationToken,
) {
    // A handshake gets the same time as a request head: a silent client must not hold a slot.
    let stream =
        match tokio::time::timeout(settings.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%peer, error = %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        serve_http2(stream, peer, gateway, settings, shutdown).await;
    } else {
        serve_http1(stream, peer, "https", gateway, settings, shutdown).await;
    }
}

async fn serve_http1<S>(
    stream: S,
    peer: SocketAddr,
    proto: &'static str,
    gateway: Arc<Gateway>,
    settings: &ConnSettings,
    shutdown: &CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (stream, verdicts) = FramingGuard::new(stream, settings.max_header_bytes);
    let conn = Arc::new(ConnInfo::new(peer, proto, Some(Arc::clone(&verdicts))));
    let service = service_fn(move |request| {
        let gateway = Arc::clone(&gateway);
        let conn = Arc::clone(&conn);
        async move { Ok::<_, Infallible>(gateway.handle(request, &conn).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_header_size(settings.max_header_bytes)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        log_connection_error(peer, &error, verdicts.head_started());
    }
}

async fn serve_http2<S>(
    stream: S,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    settings: &ConnSettings,
    shutdown: &CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(ConnInfo::new(peer, "https", None));
    let watched = Arc::clone(&conn);
    let service = service_fn(move |request| {
        let gateway = Arc::clone(&gateway);
        let conn = Arc::clone(&conn);
        async move { Ok::<_, Infallible>(gateway.handle(request, &conn).await) }
    });
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        // Pings find peers that vanished without closing; the idle check below closes live ones that went quiet.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let idle_timeout = settings.idle_timeout;
    let mut idle_check = tokio::time::interval(idle_timeout / 4);
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                break connection.await;
            }
            _ = idle_check.tick() => {
                // GOAWAY lets any stream still open (a long download) finish; only new ones are refused.
                if watched.idle_for() >= idle_timeout {
                    tracing::debug!(%peer, "closing idle HTTP/2 connection");
                    connection.as_mut().graceful_shutdown();
                    break connection.await;
                }
            }
        }
    };
    if let Err(error) = result {
        log_connection_error(peer, &error, false);
    }
}

fn log_connection_error(peer: SocketAddr, error: &hyper::Error, head_started: bool) {
    // Clients hang up and time out all the time; only the unusual is worth more than debug.
    if error.is_timeout() && head_started {
        tracing::info!(%peer, "connection cut: request head not completed within limits.header_read_timeout");
    } else if error.is_timeout() {
        tracing::debug!(%peer, "idle keep-alive connection closed after limits.header_read_timeout");
    } else if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
        tracing::debug!(%peer, error = %error, "connection closed early");
    } else if error.is_parse() || error.is_parse_too_large() {
        tracing::info!(%peer, error = %error, "malformed request refused");
    } else {
        tracing::debug!(%peer, error = %error, "connection error");
    }
}
