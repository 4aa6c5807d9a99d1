//! Every way a request can end without the upstream's answer, and the one place each becomes an HTTP response.
//!
//! Phases return `Err(Rejection)`; [`crate::gateway::Gateway::handle`] logs the cause once and calls
//! [`Rejection::into_response`]. The client sees a fixed, readable message (an HTML page, or JSON with a stable error
//! code when it asked for JSON); the log line gets the cause. Nothing internal reaches the page.

use std::time::Duration;

use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::body::Body;
use crate::framing::Ambiguity;

/// Who caused the failure, so logs can be filtered by it (pingora's downstream/upstream/internal split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Client,
    Upstream,
    Gateway,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The request's body framing can be read two ways (request smuggling); refused and the connection closed.
    #[error("ambiguous request framing: {}", .0.as_str())]
    AmbiguousFraming(Ambiguity),
    /// A method the gateway does not forward (CONNECT: the gateway is not a forward proxy).
    #[error("method {0} is not forwarded")]
    MethodNotAllowed(http::Method),
    /// The request is malformed in a way the gateway can name.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The upstream refused the connection, could not be reached, or broke off before its response head.
    #[error("upstream unreachable: {0}")]
    UpstreamUnavailable(#[source] UpstreamError),
    /// The upstream accepted the request but sent no response head in time.
    #[error("upstream sent no response within {0:?}")]
    UpstreamTimeout(Duration),
    /// Every connection slot (`limits.max_connections`) is taken, so a new WebSocket tunnel cannot open.
    #[error("no connection slot left for a WebSocket tunnel (limits.max_connections)")]
    TooManyConnections,
}

/// The cause of a failed upstream exchange, with the chain of sources hyper gives.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    message: String,
}

impl UpstreamError {
    pub fn new(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self { message }
    }
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::AmbiguousFraming(_) | Rejection::BadRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            Rejection::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Rejection::TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn blame(&self) -> Blame {
        match self {
            Rejection::AmbiguousFraming(_)
            | Rejection::MethodNotAllowed(_)
            | Rejection::BadRequest(_) => Blame::Client,
            Rejection::UpstreamUnavailable(_) | Rejection::UpstreamTimeout(_) => Blame::Upstream,
            Rejection::TooManyConnections => Blame::Gateway,
        }
    }

    /// A stable, machine-readable code for JSON clients and log filters.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::AmbiguousFraming(_) => "ambiguous_framing",
            Rejection::MethodNotAllowed(_) => "method_not_allowed",
            Rejection::BadRequest(_) => "bad_request",
            Rejection::UpstreamUnavailable(_) => "upstream_unavailable",
            Rejection::UpstreamTimeout(_) => "upstream_timeout",
            Rejection::TooManyConnections => "too_many_connections",
        }
    }

    /// What a person is told: short, in the forum's tone, with nothing internal.
    fn page(&self) -> (&'static str, &'static str) {
        match self {
            Rejection::AmbiguousFraming(_) => (
                "Bad request",
                "Your browser sent a request this site could not read. Please reload the page and try again.",
            ),
            Rejection::MethodNotAllowed(_) => {
                ("Not allowed", "This kind of request is not accepted here.")
            }
            Rejection::BadRequest(_) => (
                "Bad request",
                "Your browser sent a request this site could not read. Please reload the page and try again.",
            ),
            Rejection::UpstreamUnavailable(_) => (
                "The forum is unavailable",
                "The forum is not answering right now. Please try again in a few moments.",
            ),
            Rejection::UpstreamTimeout(_) => (
                "The forum is taking too long",
                "The forum did not answer in time. Please try again in a few moments.",
            ),
            Rejection::TooManyConnections => (
                "The forum is busy",
                "Too many people are connected right now. Please try again in a few moments.",
            ),
        }
    }

    /// Renders the response; `wants_json` comes from the request's `Accept` header.
    pub fn into_response(self, wants_json: bool) -> Response<Body> {
        let status = self.status();
        let (title, message) = self.page();
        let (content_type, body) = if wants_json {
            let body = serde_json::json!({ "error": self.code(), "message": message, "status": status.as_u16() });
            ("application/json", body.to_string())
        } else {
            (
                "text/html; charset=utf-8",
                html_page(status, title, message),
            )
        };
        let mut response = Response::new(Body::full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, Rejection::AmbiguousFraming(_)) {
            // Whatever follows on this connection was framed by a message we refused to read.
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Whether the client prefers JSON: an `Accept` that names a JSON type and not HTML (XHR and API clients).
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::ACCEPT).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            let v = v.to_ascii_lowercase();
            (v.contains("application/json") || v.contains("+json")) && !v.contains("text/html")
        })
    })
}

/// A small page in the forum's tone. `title` and `message` are our own fixed texts, never request data.
pub fn html_page(status: StatusCode, title: &str, message: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}\
h1{{font-size:1.4rem}}p{{line-height:1.5}}small{{color:#777}}</style></head>\
<body><h1>{title}</h1><p>{message}</p><p><a href=\"/\">Back to the forum</a></p>\
<small>Error {code}</small></body></html>\n",
        code = status.as_u16()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_only_when_asked_without_html() {
        let mut headers = HeaderMap::new();
        assert!(!wants_json(&headers));
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        assert!(wants_json(&headers));
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,application/json;q=0.9"),
        );
        assert!(!wants_json(&headers));
    }

    #[test]
    fn statuses_follow_blame() {
        let timeout = Rejection::UpstreamTimeout(Duration::from_secs(1));
        assert_eq!(
            (timeout.status(), timeout.blame()),
            (StatusCode::GATEWAY_TIMEOUT, Blame::Upstream)
        );
        let framing = Rejection::AmbiguousFraming(Ambiguity::DuplicateContentLength);
        let response = framing.into_response(true);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers().get(CONNECTION).map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
    }
}
