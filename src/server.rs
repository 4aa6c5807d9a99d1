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

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::framing::FramingGuard;
use crate::gateway::{ConnInfo, Gateway};
use crate::proxy::Tunnels;
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
}

/// Per-connection settings, shared by all connections.
#[derive(Debug)]
struct ConnSettings {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_header_bytes: usize,
    slots: Arc<Semaphore>,
}

/// A started gateway: its bound addresses and the means to stop it.
#[derive(Debug)]
pub struct Running {
    /// The plain HTTP listener's address (with the real port when the config said port 0).
    pub http_addr: Option<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    connections: TaskTracker,
    tunnels: TaskTracker,
    accept_loops: Vec<JoinHandle<()>>,
    shutdown_timeout: Duration,
}

/// Binds the listeners and starts serving. Returns once the sockets are bound, so callers (and tests) can connect.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let acceptor = match &config.tls {
        Some(tls) => Some((tls.listen, TlsAcceptor::from(tls::server_config(tls)?))),
        None => None,
    };
    let plain = match config.listen {
        Some(addr) => Some(bind("listen", addr).await?),
        None => None,
    };
    let secure = match acceptor {
        Some((addr, acceptor)) => Some((bind("tls.listen", addr).await?, acceptor)),
        None => None,
    };

    let shutdown = CancellationToken::new();
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(config.limits.max_connections));
    let tunnels = Tunnels {
        tracker: TaskTracker::new(),
        shutdown: shutdown.clone(),
        slots: Arc::clone(&slots),
    };
    let gateway = Gateway::new(config, tunnels.clone());
    let settings = Arc::new(ConnSettings {
        header_read_timeout: config.limits.header_read_timeout,
        idle_timeout: config.limits.idle_timeout,
        max_header_bytes: config.limits.max_header_bytes,
        slots,
    });

    let mut running = Running {
        http_addr: None,
        tls_addr: None,
        shutdown: shutdown.clone(),
        connections: connections.clone(),
        tunnels: tunnels.tracker,
        accept_loops: Vec::new(),
        shutdown_timeout: config.limits.shutdown_timeout,
    };
    if let Some(listener) = plain {
        let addr = listener.local_addr().ok();
        running.http_addr = addr;
        tracing::info!(addr = %addr.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))), upstream = %config.upstream.url, "listening for HTTP");
        running.accept_loops.push(tokio::spawn(accept_loop(
            listener,
            None,
            gateway.clone(),
            Arc::clone(&settings),
            shutdown.clone(),
            connections.clone(),
        )));
    }
    if let Some((listener, acceptor)) = secure {
        let addr = listener.local_addr().ok();
        running.tls_addr = addr;
        tracing::info!(addr = %addr.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))), upstream = %config.upstream.url, "listening for HTTPS (h2, http/1.1)");
        running.accept_loops.push(tokio::spawn(accept_loop(
            listener,
            Some(acceptor),
            gateway,
            settings,
            shutdown,
            connections,
        )));
    }
    Ok(running)
}

impl Running {
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
        for accept_loop in self.accept_loops {
            let _ = accept_loop.await;
        }
        self.connections.close();
        self.tunnels.close();
        let in_flight = self.connections.len();
        tracing::info!(
            connections = in_flight,
            "stopping: listeners closed, finishing requests in flight"
        );
        let drained = tokio::time::timeout(self.shutdown_timeout, async {
            self.connections.wait().await;
            self.tunnels.wait().await;
        })
        .await
        .is_ok();
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

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { key, addr, source })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Gateway,
    settings: Arc<ConnSettings>,
    shutdown: CancellationToken,
    connections: TaskTracker,
) {
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&settings.slots).acquire_owned() => match permit {
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
        let gateway = gateway.clone();
        let settings = Arc::clone(&settings);
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => serve_http1(stream, peer, "http", gateway, &settings, &shutdown).await,
                Some(acceptor) => {
                    serve_tls(stream, peer, acceptor, gateway, &settings, &shutdown).await;
                }
            }
            drop(permit);
        });
    }
}

async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    gateway: Gateway,
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
    gateway: Gateway,
    settings: &ConnSettings,
    shutdown: &CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (stream, verdicts) = FramingGuard::new(stream, settings.max_header_bytes);
    let conn = Arc::new(ConnInfo::new(peer, proto, Some(Arc::clone(&verdicts))));
    let service = service_fn(move |request| {
        let gateway = gateway.clone();
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
    gateway: Gateway,
    settings: &ConnSettings,
    shutdown: &CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(ConnInfo::new(peer, "https", None));
    let watched = Arc::clone(&conn);
    let service = service_fn(move |request| {
        let gateway = gateway.clone();
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
