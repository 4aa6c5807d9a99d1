//! One worker's keep-alive connections to the forum, driven by the requests that use them.
//!
//! A connection has no task of its own. The request that borrows it writes its head and body ([`Pool::send`]), reads
//! the response head, then reads the response body while it streams to the client ([`DrivenBody`]); once the body has
//! ended the connection goes back to the idle list. A connection whose body was not read to the end is closed, never
//! reused. The HTTP/1.1 itself is [`crate::h1`].
//!
//! An idle connection is checked before reuse: one the forum has closed (or written to, unasked) is dropped. A
//! request that a reused connection fails before any answer (the forum closed it at that instant) is sent once more
//! on a fresh connection when that is safe: the request has no body and either never left (the write failed) or is
//! idempotent, which is nginx's rule. WebSocket upgrades need a connection task to hand the socket over, so they keep
//! using hyper's client (see [`crate::proxy`]).

use std::collections::VecDeque;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{Method, Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::h1::{self, Decoder, H1Error, ResponseHead, Step};

/// Idle connections kept per worker; more are closed when their response ends.
const MAX_IDLE: usize = 256;
/// A connection's read buffer to start with, and what is added when it runs low.
const READ_BUFFER: usize = 16 * 1024;
/// Below this much free room, the read buffer grows before the next read.
const READ_MIN_ROOM: usize = 2 * 1024;

/// Why an upstream exchange failed before a response head.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    #[error("connect {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("connect {addr}: no answer within {timeout:?} (upstream.connect_timeout)")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("sending the request: {0}")]
    Send(io::Error),
    #[error("reading the client's request body: {0}")]
    ClientBody(hyper::Error),
    #[error(transparent)]
    Response(#[from] H1Error),
}

/// One keep-alive connection and its buffers, which live as long as it does.
struct Conn {
    stream: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
}

impl Conn {
    /// Whether an idle connection can carry a request: the forum has neither closed it nor sent anything unasked.
    fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            // Nothing arrived since the last response was read: the usual case, and no system call.
            Poll::Pending => true,
            Poll::Ready(Ok(())) => {
                self.read.reserve(1);
                matches!(self.stream.try_read_buf(&mut self.read), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Poll::Ready(Err(_)) => false,
        }
    }
}

/// Room in a read buffer for the next read.
fn make_room(read: &mut BytesMut) {
    if read.capacity() - read.len() < READ_MIN_ROOM {
        read.reserve(READ_BUFFER);
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The idle connections of one worker (a worker's requests all run on its thread, so the lock is never contended).
pub struct Pool {
    addr: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// Oldest first; reuse takes the newest (the warmest, and the least likely to have timed out at the forum).
    idle: Mutex<VecDeque<Idle>>,
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

/// How an exchange failed, and whether the request may go out again on a fresh connection.
struct Failure {
    error: PoolError,
    /// The request never reached the forum: the head could not be written.
    unsent: bool,
    /// No byte of an answer came back.
    unanswered: bool,
}

impl Pool {
    pub fn new(addr: String, connect_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            addr,
            connect_timeout,
            idle_timeout,
            idle: Mutex::new(VecDeque::new()),
        })
    }

    /// Sends `request` (`Host` set, hop-by-hop fields already removed; the target goes out in origin-form) and
    /// returns the response head without its hop-by-hop fields, its body still to be read.
    pub async fn send(
        self: &Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<DrivenBody>, PoolError> {
        let (parts, mut body) = request.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |target| target.as_str());
        let has_body = !body.is_end_stream();
        // A body of unknown length (a chunked upload, an HTTP/2 stream without content-length) goes out chunked.
        let chunked = has_body && !parts.headers.contains_key(CONTENT_LENGTH);

        let (mut conn, mut reused) = match self.checkout() {
            Some(conn) => (conn, true),
            None => (self.connect().await?, false),
        };
        h1::write_request_head(
            &mut conn.write,
            &parts.method,
            target,
            &parts.headers,
            chunked,
        );
        let (head, body_sent) = loop {
            match exchange(&mut conn, &mut body, has_body, chunked, &parts.method).await {
                Ok(done) => break done,
                Err(failure) => {
                    let again = reused
                        && !has_body
                        && (failure.unsent || (failure.unanswered && parts.method.is_idempotent()));
                    if !again {
                        return Err(failure.error);
                    }
                    tracing::debug!(error = %failure.error, "reused upstream connection failed; once more on a new one");
                    let mut fresh = self.connect().await?;
                    std::mem::swap(&mut fresh.write, &mut conn.write);
                    conn = fresh;
                    reused = false;
                }
            }
        };

        let ResponseHead {
            mut response,
            body: decoder,
            keep_alive,
            connection_names_others,
        } = head;
        if connection_names_others {
            crate::proxy::strip_hop_by_hop(response.headers_mut());
        }
        let mut driven = DrivenBody {
            decoder,
            conn: Some(conn),
            // An upload cut short by an early answer leaves the connection mid-request.
            keep_alive: keep_alive && body_sent,
            pool: Arc::clone(self),
        };
        if driven.decoder.is_done() {
            // No body (HEAD, 204, 304, a zero length): the connection is free now, whether or not the body is
            // ever polled.
            driven.finish();
        }
        Ok(response.map(|()| driven))
    }

    /// An idle connection still alive, if there is one.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(Idle { mut conn, since }) = idle.pop_back() {
            if since.elapsed() < self.idle_timeout && conn.still_open() {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        // Connections idle past `upstream.pool_idle_timeout` are closed here, not left open until a lull in
        // traffic reaches them.
        while idle
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.since) >= self.idle_timeout)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle { conn, since: now });
        }
    }

    async fn connect(&self) -> Result<Conn, PoolError> {
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
        Ok(Conn {
            stream,
            read: BytesMut::with_capacity(READ_BUFFER),
            write: Vec::with_capacity(1024),
        })
    }
}

/// Writes the request (its head is in `conn.write`) and reads the final response head. The second value is whether
/// the whole body went out: an answer that comes while the body is still being sent ends the upload.
async fn exchange(
    conn: &mut Conn,
    body: &mut Incoming,
    has_body: bool,
    chunked: bool,
    method: &Method,
) -> Result<(ResponseHead, bool), Failure> {
    let unsent = |error: io::Error| Failure {
        error: PoolError::Send(error),
        unsent: true,
        unanswered: true,
    };
    conn.stream.write_all(&conn.write).await.map_err(unsent)?;
    let body_sent = if has_body {
        send_body(conn, body, chunked)
            .await
            .map_err(|error| Failure {
                error,
                unsent: false,
                unanswered: true,
            })?
    } else {
        true
    };
    loop {
        let answered = !conn.read.is_empty();
        if answered {
            match h1::parse_response_head(&mut conn.read, method) {
                Ok(Some(head)) => return Ok((head, body_sent)),
                Ok(None) => {}
                Err(error) => return Err(failed(error.into(), true)),
            }
        }
        make_room(&mut conn.read);
        match conn.stream.read_buf(&mut conn.read).await {
            Ok(0) if answered => return Err(failed(H1Error::TruncatedHead.into(), true)),
            Ok(0) => return Err(failed(H1Error::NoResponse.into(), false)),
            Ok(_) => {}
            Err(error) => return Err(failed(H1Error::Io(error).into(), answered)),
        }
    }
}

fn failed(error: PoolError, answered: bool) -> Failure {
    Failure {
        error,
        unsent: false,
        unanswered: !answered,
    }
}

/// Streams the client's body to the forum, watching for an answer that comes before the body has all gone. `false`
/// when the forum answered (or closed) first: the rest of the body is not sent.
async fn send_body(conn: &mut Conn, body: &mut Incoming, chunked: bool) -> Result<bool, PoolError> {
    let (reader, mut writer) = conn.stream.split();
    let read = &mut conn.read;
    let mut upload = pin!(async move {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(PoolError::ClientBody)?;
            // Trailer fields of a chunked upload are not relayed.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            if chunked {
                let (line, len) = h1::chunk_size_line(data.len());
                let mut framed =
                    bytes::Buf::chain(bytes::Buf::chain(&line[..len], data), &b"\r\n"[..]);
                writer.write_all_buf(&mut framed).await
            } else {
                writer.write_all(&data).await
            }
            .map_err(PoolError::Send)?;
        }
        if chunked {
            writer
                .write_all(b"0\r\n\r\n")
                .await
                .map_err(PoolError::Send)?;
        }
        Ok::<(), PoolError>(())
    });
    loop {
        tokio::select! {
            biased;
            sent = &mut upload => return sent.map(|()| true),
            ready = reader.readable() => {
                ready.map_err(PoolError::Send)?;
                make_room(read);
                match reader.try_read_buf(read) {
                    // The forum hung up first.
                    Ok(0) => return Ok(false),
                    // The forum answered first; the answer is read as usual from here. An interim answer is not one.
                    Ok(_) if h1::skip_interim(read) => return Ok(false),
                    Ok(_) => {}
                    // Readiness can be stale; the upload goes on.
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Err(PoolError::Response(H1Error::Io(error))),
                }
            }
        }
    }
}

/// The forum's response body, read off its connection as the client takes it; the connection goes back to the pool
/// at the end.
pub struct DrivenBody {
    decoder: Decoder,
    /// `None` once the body has ended (the connection is back in the pool, or closed).
    conn: Option<Conn>,
    keep_alive: bool,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for DrivenBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrivenBody")
            .field("decoder", &self.decoder)
            .finish_non_exhaustive()
    }
}

impl DrivenBody {
    /// The body has ended: the connection goes back to the pool if it can carry another request.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Bytes past the end of the response are a forum that does not frame its answers as it says.
            if self.keep_alive && conn.read.is_empty() {
                self.pool.checkin(conn);
            }
        }
    }

    fn fail(&mut self, error: H1Error) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        self.conn = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl http_body::Body for DrivenBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.step(&mut conn.read) {
                Ok(Step::Data(data)) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {}
                Err(error) => return this.fail(error),
            }
            make_room(&mut conn.read);
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut conn.stream),
                cx,
                &mut conn.read
            )) {
                Ok(0) => match this.decoder.at_eof() {
                    Ok(()) => {
                        this.keep_alive = false;
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Err(error) => return this.fail(error),
                },
                Ok(_) => {}
                Err(error) => return this.fail(H1Error::Io(error)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.decoder.size_hint()
    }
}
