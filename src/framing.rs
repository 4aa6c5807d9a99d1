//! A guard against request smuggling on HTTP/1 connections.
//!
//! hyper is lenient where a proxy must be strict: given `Content-Length` with `Transfer-Encoding` it drops the length
//! and reads chunked, and it quietly merges repeated equal `Content-Length` lines. Either message means different
//! things to different parsers, so a gateway must refuse it (RFC 9112 §6.3) rather than forward its own reading.
//! By the time hyper hands us a request those facts are gone, so [`FramingGuard`] watches the bytes on their way in:
//! it parses each request head with httparse, follows the body framing to find the next head, and records the index
//! of the first ambiguous request in [`FramingVerdicts`]. The connection's service checks that index before it does
//! anything else with request number *n*.
//!
//! The guard only reads; it never changes or holds back a byte. When it cannot follow the stream (an upgrade, a head
//! hyper will refuse anyway) it stops looking, which leaves hyper's own checks in place.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Why a request's framing was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    ContentLengthWithTransferEncoding,
    DuplicateContentLength,
}

impl Ambiguity {
    pub fn as_str(self) -> &'static str {
        match self {
            Ambiguity::ContentLengthWithTransferEncoding => {
                "Content-Length together with Transfer-Encoding"
            }
            Ambiguity::DuplicateContentLength => "more than one Content-Length",
        }
    }
}

const NONE: u64 = u64::MAX;

/// What the guard learned about one connection, shared with that connection's service.
#[derive(Debug)]
pub struct FramingVerdicts {
    first_bad: AtomicU64,
    kind: AtomicU64,
    head_started: AtomicBool,
}

impl Default for FramingVerdicts {
    fn default() -> Self {
        Self {
            first_bad: AtomicU64::new(NONE),
            kind: AtomicU64::new(0),
            head_started: AtomicBool::new(false),
        }
    }
}

impl FramingVerdicts {
    /// Whether part of a request head has arrived and the rest has not: tells a slow client (worth a log line) from
    /// an idle keep-alive connection when the header timer fires.
    pub fn head_started(&self) -> bool {
        self.head_started.load(Ordering::Relaxed)
    }

    /// The ambiguity of request number `index` (0-based, in arrival order), if it had one.
    pub fn check(&self, index: u64) -> Option<Ambiguity> {
        if self.first_bad.load(Ordering::Acquire) != index {
            return None;
        }
        Some(match self.kind.load(Ordering::Relaxed) {
            0 => Ambiguity::ContentLengthWithTransferEncoding,
            _ => Ambiguity::DuplicateContentLength,
        })
    }

    fn record(&self, index: u64, ambiguity: Ambiguity) {
        let kind = match ambiguity {
            Ambiguity::ContentLengthWithTransferEncoding => 0,
            Ambiguity::DuplicateContentLength => 1,
        };
        self.kind.store(kind, Ordering::Relaxed);
        self.first_bad.store(index, Ordering::Release);
    }
}

/// An I/O wrapper that lets every byte through and scans request heads on the way.
pub struct FramingGuard<T> {
    inner: T,
    scanner: Scanner,
    verdicts: Arc<FramingVerdicts>,
}

impl<T> FramingGuard<T> {
    pub fn new(inner: T, max_head_bytes: usize) -> (Self, Arc<FramingVerdicts>) {
        let verdicts = Arc::new(FramingVerdicts::default());
        let guard = Self {
            inner,
            scanner: Scanner::new(max_head_bytes),
            verdicts: Arc::clone(&verdicts),
        };
        (guard, verdicts)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FramingGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            if let Some((index, ambiguity)) = this.scanner.feed(&buf.filled()[before..]) {
                this.verdicts.record(index, ambiguity);
            }
            let partial = !this.scanner.head.is_empty();
            if partial != this.verdicts.head_started.load(Ordering::Relaxed) {
                this.verdicts.head_started.store(partial, Ordering::Relaxed);
            }
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FramingGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where the scanner is in the byte stream.
#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Reading a request head; `Scanner::head` holds what arrived so far when it came in pieces.
    Head,
    /// Skipping a body of known length.
    Body(u64),
    /// In a chunked body, reading a chunk-size line.
    ChunkSize,
    /// Skipping chunk data, then its CRLF.
    ChunkData(u64),
    ChunkDataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    /// Not following this connection any more.
    Off,
}

struct Scanner {
    state: State,
    head: Vec<u8>,
    line: Vec<u8>,
    max_head_bytes: usize,
    index: u64,
}

/// Request heads carry at most this many header lines before hyper refuses them itself.
const MAX_HEADERS: usize = 128;
/// Chunk-size and trailer lines longer than this are not HTTP any more.
const MAX_LINE: usize = 4096;

impl Scanner {
    fn new(max_head_bytes: usize) -> Self {
        Self {
            state: State::Head,
            head: Vec::new(),
            line: Vec::new(),
            max_head_bytes,
            index: 0,
        }
    }

    /// Consumes bytes; returns the index and kind of an ambiguous request head when one completes.
    fn feed(&mut self, mut data: &[u8]) -> Option<(u64, Ambiguity)> {
        while !data.is_empty() {
            match self.state {
                State::Off => return None,
                State::Head => {
                    if self.head.is_empty() {
                        // hyper, like RFC 9112 §2.2 allows, skips empty lines before a request line.
                        let skip = data
                            .iter()
                            .take_while(|&&b| b == b'\r' || b == b'\n')
                            .count();
                        data = &data[skip..];
                        if data.is_empty() {
                            return None;
                        }
                        match self.parse_head(data) {
                            HeadParse::Done(used, verdict) => {
                                data = &data[used..];
                                if verdict.is_some() {
                                    return verdict;
                                }
                            }
                            HeadParse::Partial => {
                                self.head.extend_from_slice(data);
                                self.check_head_size();
                                return None;
                            }
                            HeadParse::Invalid => return None,
                        }
                    } else {
                        let old = self.head.len();
                        self.head.extend_from_slice(data);
                        let head = std::mem::take(&mut self.head);
                        match self.parse_head(&head) {
                            HeadParse::Done(used, verdict) => {
                                data = &data[used.saturating_sub(old)..];
                                if verdict.is_some() {
                                    return verdict;
                                }
                            }
                            HeadParse::Partial => {
                                self.head = head;
                                self.check_head_size();
                                return None;
                            }
                            HeadParse::Invalid => return None,
                        }
                    }
                }
                State::Body(remaining) => {
                    let take = remaining.min(data.len() as u64);
                    data = &data[take as usize..];
                    self.state = if remaining == take {
                        State::Head
                    } else {
                        State::Body(remaining - take)
                    };
                }
                State::ChunkSize => {
                    let line = self.take_line(&mut data)?;
                    self.state = match parse_chunk_size(&line) {
                        Some(0) => State::Trailers,
                        Some(size) => State::ChunkData(size),
                        None => State::Off,
                    };
                }
                State::ChunkData(remaining) => {
                    let take = remaining.min(data.len() as u64);
                    data = &data[take as usize..];
                    self.state = if remaining == take {
                        State::ChunkDataEnd
                    } else {
                        State::ChunkData(remaining - take)
                    };
                }
                State::ChunkDataEnd => {
                    let line = self.take_line(&mut data)?;
                    self.state = if line.is_empty() {
                        State::ChunkSize
                    } else {
                        State::Off
                    };
                }
                State::Trailers => {
                    let line = self.take_line(&mut data)?;
                    if line.is_empty() {
                        self.state = State::Head;
                    }
                }
            }
        }
        None
    }

    fn check_head_size(&mut self) {
        // hyper answers 431 to an oversized head; nothing after it needs following.
        if self.head.len() > self.max_head_bytes {
            self.head = Vec::new();
            self.state = State::Off;
        }
    }

    /// Takes one line (without its CRLF or LF) once it is complete, buffering a partial one.
    fn take_line(&mut self, data: &mut &[u8]) -> Option<Vec<u8>> {
        match data.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                self.line.extend_from_slice(&data[..pos]);
                *data = &data[pos + 1..];
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(line)
            }
            None => {
                self.line.extend_from_slice(data);
                *data = &[];
                if self.line.len() > MAX_LINE {
                    self.state = State::Off;
                }
                None
            }
        }
    }

    fn parse_head(&mut self, bytes: &[u8]) -> HeadParse {
        // Uninitialised slots: zeroing 128 of them cost more than parsing a typical head.
        let mut headers =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        let used = match request.parse_with_uninit_headers(bytes, &mut headers) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return HeadParse::Partial,
            Err(_) => {
                self.state = State::Off;
                return HeadParse::Invalid;
            }
        };
        let index = self.index;
        self.index += 1;

        let mut content_lengths = 0usize;
        let mut length = None;
        let mut chunked = false;
        let mut transfer_encoding = false;
        let mut upgrade = request.method == Some("CONNECT");
        for header in request.headers.iter() {
            if header.name.eq_ignore_ascii_case("content-length") {
                content_lengths += 1;
                length = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoding = true;
                chunked = header
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if header.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }

        let verdict = if transfer_encoding && content_lengths > 0 {
            Some(Ambiguity::ContentLengthWithTransferEncoding)
        } else if content_lengths > 1 {
            Some(Ambiguity::DuplicateContentLength)
        } else {
            None
        };
        self.state = match (verdict, upgrade, chunked, length) {
            // The service answers an ambiguous request with 400 and closes; nothing after it is read.
            (Some(_), ..) => State::Off,
            // After an upgrade the bytes are another protocol's.
            (None, true, ..) => State::Off,
            (None, false, true, _) => State::ChunkSize,
            (None, false, false, Some(0) | None) if !transfer_encoding => State::Head,
            (None, false, false, Some(n)) => State::Body(n),
            // Transfer-Encoding without chunked last: hyper refuses it.
            (None, false, false, None) => State::Off,
        };
        HeadParse::Done(used, verdict.map(|v| (index, v)))
    }
}

enum HeadParse {
    Done(usize, Option<(u64, Ambiguity)>),
    Partial,
    Invalid,
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?.trim_ascii();
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(pieces: &[&[u8]]) -> (Vec<(u64, Ambiguity)>, State, u64) {
        let mut scanner = Scanner::new(65_536);
        let mut found = Vec::new();
        for piece in pieces {
            found.extend(scanner.feed(piece));
        }
        (found, scanner.state, scanner.index)
    }

    #[test]
    fn follows_keep_alive_requests_with_bodies() {
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\nGET /d HTTP/1.1\r\n\r\n";
        let (found, state, index) = scan(&[stream]);
        assert!(found.is_empty());
        assert_eq!((state, index), (State::Head, 4));
        // The same bytes one at a time give the same answer.
        let singles: Vec<&[u8]> = stream.chunks(1).collect();
        let (found, state, index) = scan(&singles);
        assert!(found.is_empty());
        assert_eq!((state, index), (State::Head, 4));
    }

    #[test]
    fn flags_content_length_with_transfer_encoding_in_either_order() {
        let a: &[u8] = b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let b: &[u8] =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n";
        assert_eq!(
            scan(&[a]).0,
            [(1, Ambiguity::ContentLengthWithTransferEncoding)]
        );
        assert_eq!(
            scan(&[b]).0,
            [(0, Ambiguity::ContentLengthWithTransferEncoding)]
        );
    }

    #[test]
    fn flags_duplicate_content_length_even_when_equal() {
        let a: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(scan(&[a]).0, [(0, Ambiguity::DuplicateContentLength)]);
    }

    #[test]
    fn stops_following_after_an_upgrade() {
        let a: &[u8] =
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello";
        let (found, state, _) = scan(&[a]);
        assert!(found.is_empty());
        assert_eq!(state, State::Off);
    }

    #[test]
    fn verdicts_match_only_their_index() {
        let verdicts = FramingVerdicts::default();
        assert_eq!(verdicts.check(0), None);
        verdicts.record(2, Ambiguity::DuplicateContentLength);
        assert_eq!(verdicts.check(1), None);
        assert_eq!(verdicts.check(2), Some(Ambiguity::DuplicateContentLength));
    }
}
