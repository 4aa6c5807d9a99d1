//! HTTP/1.1 toward the forum: the request head written out, the response head parsed, the response body's framing
//! decoded (RFC 9112).
//!
//! The upstream side of the gateway is one known HTTP/1.1 server on the worker's own keep-alive connections
//! ([`crate::pool`]), so it needs only the client half of HTTP/1.1, and none of hyper's client machinery (a task per
//! connection, channels, a dispatcher): under callgrind that machinery was a third of the instructions a proxied
//! request costs. The client-facing side stays hyper's, which also checks what clients send.
//!
//! Response heads are parsed with httparse, as hyper does; the header values share one buffer with the head, so a
//! response head costs one allocation however many fields it has.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use http_body::SizeHint;

use crate::proxy::is_hop_by_hop;

/// The largest response head accepted from the forum (nginx's own default is 4 or 8 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header fields accepted in a response head (hyper's limit too).
pub const MAX_HEADERS: usize = 100;
/// A chunk-size line longer than this (it may carry extensions) is taken as garbage.
const MAX_CHUNK_LINE: usize = 4096;

/// What was wrong with the forum's answer, or with the connection it came on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum H1Error {
    #[error("upstream response head is larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("upstream response head has more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("malformed upstream response head: {0}")]
    Malformed(httparse::Error),
    #[error("upstream response has an invalid status code {0}")]
    Status(u16),
    #[error("upstream response has an invalid or conflicting Content-Length")]
    ContentLength,
    #[error("upstream response has a header field that is not valid: {0}")]
    Field(&'static str),
    #[error("malformed chunked framing in the upstream response body")]
    Chunk,
    #[error("upstream closed the connection without answering")]
    NoResponse,
    #[error("upstream closed the connection in the middle of the response head")]
    TruncatedHead,
    #[error("upstream closed the connection before the response body was complete")]
    TruncatedBody,
    #[error("upstream connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes the request head into `out` (cleared first): request line, every field of `headers` as it is, and
/// `Transfer-Encoding: chunked` when the body is sent in chunks.
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    chunked: bool,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The line that opens a chunk of `len` bytes: its size in hex and CRLF.
pub fn chunk_size_line(len: usize) -> ([u8; 18], usize) {
    let mut line = [0u8; 18];
    let digits = if len == 0 {
        1
    } else {
        (usize::BITS - len.leading_zeros()).div_ceil(4) as usize
    };
    for (i, slot) in line[..digits].iter_mut().enumerate() {
        let nibble = (len >> (4 * (digits - 1 - i))) & 0xf;
        *slot = b"0123456789abcdef"[nibble];
    }
    line[digits] = b'\r';
    line[digits + 1] = b'\n';
    (line, digits + 2)
}

/// A final response head and how its body is read.
#[derive(Debug)]
pub struct ResponseHead {
    /// The head, without the hop-by-hop fields of RFC 9110 §7.6.1, which describe this connection only (unless
    /// `connection_names_others`).
    pub response: Response<()>,
    pub body: Decoder,
    /// The connection may carry another request once this body has been read.
    pub keep_alive: bool,
    /// `Connection` names fields beyond its usual options: every field was kept, for the caller to remove those
    /// (rare: no common server does it).
    pub connection_names_others: bool,
}

/// Where one response header field lies in the head.
#[derive(Clone, Copy, Default)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
    hop_by_hop: bool,
}

/// What the framing fields of a head say.
#[derive(Default)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked_last: bool,
    close: bool,
    keep_alive: bool,
    names_others: bool,
}

/// Parses a response head at the start of `buf` and takes it out of the buffer, skipping interim (1xx) responses
/// other than `101`. `None` while the head is incomplete.
pub fn parse_response_head(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, H1Error> {
    loop {
        let mut spans = [Span::default(); MAX_HEADERS];
        let mut framing = Framing::default();
        let (len, code, version, count) = {
            let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut parsed,
                buf,
                &mut slots,
            ) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                    return Err(H1Error::HeadTooLarge);
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => return Err(H1Error::TooManyHeaders),
                Err(error) => return Err(H1Error::Malformed(error)),
            };
            let base = buf.as_ptr() as usize;
            let offset = |part: &[u8]| {
                let start = (part.as_ptr() as usize).saturating_sub(base) as u32;
                (start, start + part.len() as u32)
            };
            for (header, span) in parsed.headers.iter().zip(spans.iter_mut()) {
                framing.note(header.name, header.value)?;
                span.name = offset(header.name.as_bytes());
                span.value = offset(header.value);
                span.hop_by_hop = is_hop_by_hop(header.name.as_bytes());
            }
            (
                len,
                parsed.code.unwrap_or(0),
                parsed.version.unwrap_or(1),
                parsed.headers.len(),
            )
        };
        let status = StatusCode::from_u16(code).map_err(|_| H1Error::Status(code))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            // 100 Continue, 102, 103: nothing to relay (hyper answers the client's Expect itself).
            buf.advance(len);
            continue;
        }

        let head = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        for span in &spans[..count] {
            if span.hop_by_hop && !framing.names_others {
                continue;
            }
            let name = HeaderName::from_bytes(&head[span.name.0 as usize..span.name.1 as usize])
                .map_err(|_| H1Error::Field("name"))?;
            let value = HeaderValue::from_maybe_shared(
                head.slice(span.value.0 as usize..span.value.1 as usize),
            )
            .map_err(|_| H1Error::Field("value"))?;
            headers.append(name, value);
        }

        let version = if version == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let mut keep_alive = if version == Version::HTTP_11 {
            !framing.close
        } else {
            framing.keep_alive && !framing.close
        };
        let body = if *method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::SWITCHING_PROTOCOLS
        {
            Decoder::Done
        } else if framing.transfer_encoding {
            // The body's length comes from the chunks: a Content-Length beside them is wrong and must not reach
            // the client, and the connection is not to be trusted with another request (RFC 9112 §6.3).
            if framing.content_length.is_some() {
                headers.remove(CONTENT_LENGTH);
                keep_alive = false;
            }
            if framing.chunked_last {
                Decoder::Chunked(Chunk::Size)
            } else {
                keep_alive = false;
                Decoder::Close
            }
        } else {
            match framing.content_length {
                Some(0) => Decoder::Done,
                Some(length) => Decoder::Length(length),
                None => {
                    keep_alive = false;
                    Decoder::Close
                }
            }
        };

        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        return Ok(Some(ResponseHead {
            response,
            body,
            keep_alive,
            connection_names_others: framing.names_others,
        }));
    }
}

/// Takes complete interim answers (1xx other than `101`) off the front of `buf`, as they arrive while a body is
/// still going out (`100 Continue` to a forwarded `Expect`, `102 Processing`). `true` when what is left is, or may
/// be, the final answer or something wrong: either way, the upload stops there and the answer is read.
pub fn skip_interim(buf: &mut BytesMut) -> bool {
    loop {
        if buf.is_empty() {
            return false;
        }
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buf,
            &mut slots,
        ) {
            Ok(httparse::Status::Complete(len))
                if parsed
                    .code
                    .is_some_and(|code| (100..200).contains(&code) && code != 101) =>
            {
                buf.advance(len);
            }
            // Perhaps an interim answer still arriving: the upload goes on until it is whole.
            Ok(httparse::Status::Partial) => return buf.len() >= MAX_HEAD_BYTES,
            Ok(httparse::Status::Complete(_)) | Err(_) => return true,
        }
    }
}

impl Framing {
    fn note(&mut self, name: &str, value: &[u8]) -> Result<(), H1Error> {
        if name.eq_ignore_ascii_case("content-length") {
            // `42`, or the same length repeated (`42, 42`, or two fields): anything else is ambiguous.
            for item in value.split(|&b| b == b',') {
                let length = parse_length(item.trim_ascii()).ok_or(H1Error::ContentLength)?;
                match self.content_length {
                    Some(known) if known != length => return Err(H1Error::ContentLength),
                    _ => self.content_length = Some(length),
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.transfer_encoding = true;
            // Only the last coding says how the body ends; a later field supersedes an earlier one.
            self.chunked_last = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for item in value.split(|&b| b == b',') {
                let item = item.trim_ascii();
                if item.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if item.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if !item.is_empty() && !is_hop_by_hop(item) {
                    self.names_others = true;
                }
            }
        }
        Ok(())
    }
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Where a chunked body's reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes still to come.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last (empty) chunk: trailer fields, if any, and the final CRLF.
    Trailers,
}

/// How the rest of a response body is read off the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// This many bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// Until the forum closes the connection.
    Close,
    Done,
}

/// What the next piece of a body is.
#[derive(Debug)]
pub enum Step {
    Data(Bytes),
    /// The buffer holds no more of the body: read from the connection.
    NeedMore,
    End,
}

impl Decoder {
    /// Takes the next piece of body out of `buf`. Chunk framing is consumed, trailer fields are dropped (they never
    /// reach the client, as hyper's server drops them unless the client asked with `TE: trailers`).
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, H1Error> {
        loop {
            match self {
                Decoder::Done => return Ok(Step::End),
                Decoder::Close if buf.is_empty() => return Ok(Step::NeedMore),
                Decoder::Close => return Ok(Step::Data(buf.split().freeze())),
                Decoder::Length(rest) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let data = take(buf, rest);
                    if *rest == 0 {
                        *self = Decoder::Done;
                    }
                    return Ok(Step::Data(data));
                }
                Decoder::Chunked(Chunk::Data(rest)) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let data = take(buf, rest);
                    if *rest == 0 {
                        *self = Decoder::Chunked(Chunk::DataEnd);
                    }
                    return Ok(Step::Data(data));
                }
                Decoder::Chunked(Chunk::Size) => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        *self = Decoder::Chunked(if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        });
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                        return Err(H1Error::Chunk);
                    }
                    Ok(httparse::Status::Partial) => return Ok(Step::NeedMore),
                    Err(_) => return Err(H1Error::Chunk),
                },
                Decoder::Chunked(Chunk::DataEnd) => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(H1Error::Chunk);
                    }
                    buf.advance(2);
                    *self = Decoder::Chunked(Chunk::Size);
                }
                Decoder::Chunked(Chunk::Trailers) => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    let end = if buf.starts_with(b"\r\n") {
                        Some(2)
                    } else {
                        buf.windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .map(|at| at + 4)
                    };
                    match end {
                        Some(end) => {
                            buf.advance(end);
                            *self = Decoder::Done;
                        }
                        None if buf.len() > MAX_HEAD_BYTES => return Err(H1Error::Chunk),
                        None => return Ok(Step::NeedMore),
                    }
                }
            }
        }
    }

    /// The forum closed the connection: the end of a close-delimited body, and a truncation of any other.
    pub fn at_eof(&mut self) -> Result<(), H1Error> {
        match self {
            Decoder::Close | Decoder::Done => {
                *self = Decoder::Done;
                Ok(())
            }
            _ => Err(H1Error::TruncatedBody),
        }
    }

    pub fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    pub fn size_hint(&self) -> SizeHint {
        match self {
            Decoder::Length(rest) => SizeHint::with_exact(*rest),
            Decoder::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Up to `rest` bytes off the front of `buf`, counted off `rest`.
fn take(buf: &mut BytesMut, rest: &mut u64) -> Bytes {
    let n = usize::try_from(*rest).map_or(buf.len(), |rest| rest.min(buf.len()));
    *rest -= n as u64;
    buf.split_to(n).freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], method: &Method) -> Result<Option<ResponseHead>, H1Error> {
        parse_response_head(&mut BytesMut::from(raw), method)
    }

    fn head(raw: &str) -> ResponseHead {
        match parse(raw.as_bytes(), &Method::GET) {
            Ok(Some(head)) => head,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    /// Feeds `raw` to a decoder one slice at a time and collects the body; the bytes left after it end.
    fn decode(mut decoder: Decoder, raw: &[u8], piece: usize) -> Result<(Vec<u8>, usize), H1Error> {
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut input = raw.chunks(piece);
        loop {
            match decoder.step(&mut buf)? {
                Step::Data(data) => body.extend_from_slice(&data),
                Step::End => return Ok((body, buf.len())),
                Step::NeedMore => match input.next() {
                    Some(next) => buf.extend_from_slice(next),
                    None => {
                        decoder.at_eof()?;
                    }
                },
            }
        }
    }

    #[test]
    fn request_head_is_written_as_given() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("forum.test"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut out = vec![b'x'; 3];
        write_request_head(&mut out, &Method::POST, "/p?q=%20", &headers, true);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "POST /p?q=%20 HTTP/1.1\r\nhost: forum.test\r\nx-a: 1\r\nx-a: 2\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn chunk_size_lines_are_hex() {
        for (len, text) in [
            (0, "0\r\n"),
            (1, "1\r\n"),
            (15, "f\r\n"),
            (16, "10\r\n"),
            (65_535, "ffff\r\n"),
        ] {
            let (line, n) = chunk_size_line(len);
            assert_eq!(&line[..n], text.as_bytes());
        }
        let (line, n) = chunk_size_line(usize::MAX);
        assert_eq!(&line[..n], b"ffffffffffffffff\r\n");
    }

    #[test]
    fn a_head_with_its_body_in_the_same_read() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Thing:  spaced value \r\nSet-Cookie: a=1\r\n\
               Set-Cookie: b=2\r\n\r\nhello"[..],
        );
        let Ok(Some(mut head)) = parse_response_head(&mut buf, &Method::GET) else {
            panic!("not parsed")
        };
        assert_eq!(head.response.status(), StatusCode::OK);
        assert!(head.keep_alive);
        assert_eq!(head.body, Decoder::Length(5));
        let headers = head.response.headers();
        assert_eq!(headers["x-thing"], "spaced value");
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
        assert!(matches!(head.body.step(&mut buf), Ok(Step::Data(d)) if &d[..] == b"hello"));
        assert!(head.body.is_done());
        assert!(buf.is_empty());
    }

    #[test]
    fn hop_by_hop_fields_are_left_out_unless_connection_names_others() {
        let h = head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\n\
             Proxy-Authenticate: Basic\r\nTE: trailers\r\nProxy-Connection: x\r\nX-Kept: 1\r\n\
             Content-Length: 0\r\n\r\n",
        );
        let names: Vec<_> = h.response.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept", "content-length"]);
        assert!(!h.connection_names_others);
        let h = head(
            "HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(h.connection_names_others);
        assert!(
            h.response.headers().contains_key("x-secret"),
            "kept for the caller to remove"
        );
        assert!(h.response.headers().contains_key("connection"));
    }

    #[test]
    fn partial_heads_wait_and_huge_ones_fail() {
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nA: b\r\n", &Method::GET),
            Ok(None)
        ));
        let mut huge = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        huge.resize(MAX_HEAD_BYTES + 1, b'a');
        assert!(matches!(
            parse(&huge, &Method::GET),
            Err(H1Error::HeadTooLarge)
        ));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse(&many, &Method::GET),
            Err(H1Error::TooManyHeaders)
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 2000 OK\r\n\r\n", &Method::GET),
            Err(H1Error::Malformed(_))
        ));
        assert!(matches!(
            parse(b"garbage\r\n\r\n", &Method::GET),
            Err(H1Error::Malformed(_))
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 099 Odd\r\n\r\n", &Method::GET),
            Err(H1Error::Status(99))
        ));
    }

    #[test]
    fn interim_responses_are_skipped_but_101_is_not() {
        let raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                   HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
        let answer = head(raw);
        assert_eq!(answer.response.status(), StatusCode::CREATED);
        assert!(answer.response.headers().get("link").is_none());
        assert!(answer.body.is_done());
        let switching = head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(switching.response.status(), StatusCode::SWITCHING_PROTOCOLS);
    }

    #[test]
    fn interim_answers_during_an_upload_do_not_end_it() {
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"[..]);
        assert!(!skip_interim(&mut buf));
        assert!(buf.is_empty());
        buf.extend_from_slice(b"HTTP/1.1 100 Cont");
        assert!(
            !skip_interim(&mut buf),
            "a partial head may be an interim one"
        );
        buf.extend_from_slice(b"inue\r\n\r\nHTTP/1.1 413 Too Large\r\ncontent-length: 0\r\n\r\n");
        assert!(skip_interim(&mut buf));
        assert!(
            buf.starts_with(b"HTTP/1.1 413"),
            "the final answer stays for the reader"
        );
        assert!(skip_interim(&mut BytesMut::from(&b"not http\r\n\r\n"[..])));
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        // No body for HEAD, 204 and 304, whatever the fields say.
        let Ok(Some(h)) = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            &Method::HEAD,
        ) else {
            panic!()
        };
        assert!(h.body.is_done());
        assert_eq!(h.response.headers()["content-length"], "10");
        assert!(head("HTTP/1.1 204 No Content\r\n\r\n").body.is_done());
        assert!(
            head("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n")
                .body
                .is_done()
        );
        // Chunked wins over Content-Length, which is removed, and the connection is not reused.
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.body, Decoder::Chunked(Chunk::Size));
        assert!(h.response.headers().get("content-length").is_none());
        assert!(!h.keep_alive);
        // A transfer coding other than chunked last: the body runs to the close.
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!((h.body, h.keep_alive), (Decoder::Close, false));
        // Neither: to the close.
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.body, h.keep_alive), (Decoder::Close, false));
        // Repeated identical lengths are one length; different ones are refused.
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\nContent-Length: 4\r\n\r\n").body,
            Decoder::Length(4)
        );
        for bad in ["4, 5", "-1", "", "0x10", "1 2", "99999999999999999999"] {
            let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert!(
                matches!(
                    parse(raw.as_bytes(), &Method::GET),
                    Err(H1Error::ContentLength)
                ),
                "{bad:?}"
            );
        }
        // Keep-alive: HTTP/1.1 unless `close`; HTTP/1.0 only when asked.
        assert!(
            !head("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n").keep_alive
        );
        assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(
            head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
                .keep_alive
        );
    }

    #[test]
    fn chunked_bodies_decode_in_any_slicing() {
        let raw = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: t\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, raw.len()] {
            let (body, left) = decode(Decoder::Chunked(Chunk::Size), raw, piece)
                .unwrap_or_else(|e| panic!("{piece}: {e}"));
            assert_eq!(body, b"hello, world", "{piece}");
            // What follows the message stays in the buffer (or unread); never taken as body.
            assert!(left <= 4);
        }
        assert!(decode(Decoder::Chunked(Chunk::Size), b"0\r\n\r\n", 1).is_ok());
    }

    #[test]
    fn broken_chunks_are_errors() {
        for bad in [
            &b"z\r\n"[..],
            b"5\r\nhelloXX",
            b"5\r\nhel",
            b"ffffffffffffffffff\r\n",
        ] {
            assert!(
                decode(Decoder::Chunked(Chunk::Size), bad, 2).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_line = vec![b'1'; MAX_CHUNK_LINE + 2];
        assert!(matches!(
            decode(Decoder::Chunked(Chunk::Size), &long_line, 64),
            Err(H1Error::Chunk)
        ));
    }

    #[test]
    fn length_and_close_bodies() {
        let (body, left) = decode(Decoder::Length(3), b"abcdef", 2).unwrap_or_default();
        assert_eq!(body, b"abc");
        assert!(left <= 1);
        assert!(matches!(
            decode(Decoder::Length(10), b"abc", 2),
            Err(H1Error::TruncatedBody)
        ));
        let (body, _) = decode(Decoder::Close, b"all of it", 4).unwrap_or_default();
        assert_eq!(body, b"all of it");
        assert_eq!(Decoder::Length(7).size_hint().exact(), Some(7));
    }
}
