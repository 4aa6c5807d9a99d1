//! One worker's keep-alive connections to the forum, driven by the requests that use them.
//!
//! hyper's pooled client runs every upstream connection as a task of its own and talks to it through channels: each
//! proxied request costs two extra task wake-ups and a trip through the pool's locks. Here a connection has no task.
//! The request that borrows it polls it, first until the response head arrives ([`Pool::send`]), then while the
//! response body streams to the client ([`DrivenBody`]); once the body has ended the connection goes back to the
//! idle list. A connection whose body was not read to the end is closed, never reused.
//!
//! An idle connection is polled once before reuse: one the forum has closed shows up as finished and is dropped. A
//! request that a reused connection could not even start to send (the forum closed it at that instant) is tried
//! once more on a fresh connection, as hyper's client does. WebSocket upgrades need a connection task to hand the
//! socket over, so they keep using hyper's client (see [`crate::proxy`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as _;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Idle connections kept per worker; more are closed when their response ends.
const MAX_IDLE: usize = 256;

type Conn = Connection<TokioIo<TcpStream>, Incoming>;

/// Why an upstream exchange failed before a response head.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    #[error("connect {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect {addr}: no answer within {timeout:?} (upstream.connect_timeout)")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// A connection and the handle that sends requests on it.
struct Driven {
    sender: SendRequest<Incoming>,
    conn: Pin<Box<Conn>>,
}

impl Driven {
    /// Polls the connection: `true` while it is alive.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        self.conn.as_mut().poll(cx).is_pending()
    }
}

struct Idle {
    driven: Driven,
    since: Instant,
}

/// The idle connections of one worker (a worker's requests all run on its thread, so the lock is never contended).
pub struct Pool {
    addr: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("addr", &self.addr)
            .field(
                "idle",
                &self.idle.lock().map(|idle| idle.len()).unwrap_or(0),
            )
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub fn new(addr: String, connect_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            addr,
            connect_timeout,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `request` (origin-form URI, `Host` set) and returns the response head, its body still to be read.
    pub async fn send(
        self: &Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<DrivenBody>, PoolError> {
        let (mut driven, reused) = match self.checkout() {
            Some(driven) => (driven, true),
            None => (Box::pin(self.connect()).await?, false),
        };
        let response = match exchange(&mut driven, request).await {
            Ok(response) => response,
            Err(mut error) => {
                // Never written: the forum closed this idle connection just now. Once more, on a new connection.
                let retry = if reused { error.take_message() } else { None };
                let Some(request) = retry else {
                    return Err(PoolError::Http(error.into_error()));
                };
                driven = Box::pin(self.connect()).await?;
                exchange(&mut driven, request)
                    .await
                    .map_err(|error| PoolError::Http(error.into_error()))?
            }
        };
        Ok(response.map(|body| DrivenBody {
            body,
            driven: Some(driven),
            pool: Arc::clone(self),
        }))
    }

    /// An idle connection still alive and ready, if there is one.
    fn checkout(&self) -> Option<Driven> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(Idle { mut driven, since }) = idle.pop() {
            if since.elapsed() >= self.idle_timeout {
                continue;
            }
            // Polled without a waker of ours: all this needs to learn is whether the forum closed it meanwhile.
            let mut cx = Context::from_waker(Waker::noop());
            if driven.drive(&mut cx) && driven.sender.is_ready() {
                return Some(driven);
            }
        }
        None
    }

    fn checkin(&self, driven: Driven) {
        if driven.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                driven,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<Driven, PoolError> {
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(&self.addr),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(PoolError::Connect {
                    addr: self.addr.clone(),
                    source,
                });
            }
            Err(_) => {
                return Err(PoolError::ConnectTimeout {
                    addr: self.addr.clone(),
                    timeout: self.connect_timeout,
                });
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        Ok(Driven {
            sender,
            conn: Box::pin(conn),
        })
    }
}

/// Sends on `driven`, polling its connection in this task until the response head is in.
async fn exchange(
    driven: &mut Driven,
    request: Request<Incoming>,
) -> Result<Response<Incoming>, TrySendError<Request<Incoming>>> {
    let mut response = std::pin::pin!(driven.sender.try_send_request(request));
    let conn = &mut driven.conn;
    let mut conn_done = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = response.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if !conn_done && conn.as_mut().poll(cx).is_ready() {
            // The connection ended; the response future now holds the reason. Poll it once more.
            conn_done = true;
            return response.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await
}

/// The forum's response body, which keeps its connection going while it is read and returns it to the pool at the
/// end.
pub struct DrivenBody {
    body: Incoming,
    driven: Option<Driven>,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for DrivenBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrivenBody").finish_non_exhaustive()
    }
}

impl http_body::Body for DrivenBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(driven) = &mut this.driven {
            if !driven.drive(cx) {
                // Finished or failed: the body's own poll reports which.
                this.driven = None;
            }
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            if let Some(mut driven) = this.driven.take() {
                // One more turn lets the connection see the end of the message and become idle.
                if driven.drive(cx) {
                    this.pool.checkin(driven);
                }
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for DrivenBody {
    fn drop(&mut self) {
        // An empty body (204, 304, a HEAD answer) is never polled: the connection is reusable all the same. A body
        // dropped half-read takes its connection with it.
        if let Some(mut driven) = self.driven.take() {
            if self.body.is_end_stream() {
                let mut cx = Context::from_waker(Waker::noop());
                if driven.drive(&mut cx) {
                    self.pool.checkin(driven);
                }
            }
        }
    }
}
