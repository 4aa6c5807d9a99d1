//! Every way a request can end without the upstream's answer, and the one place each becomes an HTTP response.
//!
//! Phases return `Err(Rejection)`; [`crate::gateway::Gateway::handle`] logs the cause once and calls
//! [`Rejection::into_response`]. The client sees a fixed, readable message (an HTML page, or JSON with a stable error
//! code when it asked for JSON); the log line gets the cause. Nothing internal reaches the page.

use std::time::Duration;

use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::body::Body;
use crate::canonical::Ambiguous;
use crate::directory::{DirectoryError, Status};
use crate::framing::Ambiguity;
use crate::limit::{Limited, retry_after_secs};
use crate::sso::token::TokenError;

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
    #[error("method {0} is not accepted here")]
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
    /// An SSO entry request without a token.
    #[error("no token in the SSO request")]
    MissingToken,
    /// An SSO entry request with two different tokens (e.g. `jwt` and `token`).
    #[error("two different tokens in one SSO request")]
    ConflictingTokens,
    /// The token was refused; the variant says exactly why.
    #[error("token refused: {0}")]
    Token(TokenError),
    /// Too many SSO attempts from one client address or for one subject.
    #[error("rate limited per {}: retry after {:?}", .0.scope, .0.retry_after)]
    RateLimited(Limited),
    /// The member exists but their status does not allow signing in.
    #[error("member is {}", .0.as_str())]
    MemberRefused(Status),
    /// A Tribe login would give this member an email another member has.
    #[error("the token's email belongs to another member")]
    EmailTaken,
    /// The member directory failed.
    #[error("directory: {0}")]
    Directory(DirectoryError),
    /// A path that servers could read in different ways (encoded slash, encoded dot segment, NUL...).
    #[error("ambiguous path: {0}")]
    AmbiguousPath(Ambiguous),
    /// A protected path, requested by an API client without a session.
    #[error("a session is required for this path")]
    LoginRequired,
    /// A logout POST from another site (a forged form): refused.
    #[error("cross-site logout refused")]
    CrossSiteLogout,
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
            Rejection::MissingToken | Rejection::ConflictingTokens => StatusCode::BAD_REQUEST,
            Rejection::Token(error) => match error {
                TokenError::TooLarge(_)
                | TokenError::Malformed(_)
                | TokenError::MissingClaim(_)
                | TokenError::InvalidClaim { .. }
                | TokenError::MissingExp => StatusCode::BAD_REQUEST,
                TokenError::AlgorithmNotAllowed(_)
                | TokenError::UnknownKey(_)
                | TokenError::BadSignature
                | TokenError::Expired(_)
                | TokenError::NotYetValid(_)
                | TokenError::IssuedInFuture(_)
                | TokenError::TooOld(_)
                | TokenError::LifetimeTooLong(_)
                | TokenError::WrongIssuer
                | TokenError::WrongAudience
                | TokenError::Replayed => StatusCode::UNAUTHORIZED,
            },
            Rejection::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Rejection::MemberRefused(_) => StatusCode::FORBIDDEN,
            Rejection::EmailTaken => StatusCode::CONFLICT,
            Rejection::Directory(_) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::AmbiguousPath(_) => StatusCode::BAD_REQUEST,
            Rejection::LoginRequired => StatusCode::UNAUTHORIZED,
            Rejection::CrossSiteLogout => StatusCode::FORBIDDEN,
        }
    }

    pub fn blame(&self) -> Blame {
        match self {
            Rejection::AmbiguousFraming(_)
            | Rejection::MethodNotAllowed(_)
            | Rejection::BadRequest(_) => Blame::Client,
            Rejection::UpstreamUnavailable(_) | Rejection::UpstreamTimeout(_) => Blame::Upstream,
            Rejection::TooManyConnections | Rejection::Directory(_) => Blame::Gateway,
            Rejection::MissingToken
            | Rejection::ConflictingTokens
            | Rejection::Token(_)
            | Rejection::RateLimited(_)
            | Rejection::MemberRefused(_)
            | Rejection::EmailTaken
            | Rejection::AmbiguousPath(_)
            | Rejection::LoginRequired
            | Rejection::CrossSiteLogout => Blame::Client,
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
            Rejection::MissingToken => "missing_token",
            Rejection::ConflictingTokens => "conflicting_tokens",
            Rejection::Token(error) => match error {
                TokenError::TooLarge(_) => "token_too_large",
                TokenError::Malformed(_) => "malformed_token",
                TokenError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
                TokenError::UnknownKey(_) => "unknown_key",
                TokenError::BadSignature => "bad_signature",
                TokenError::Expired(_) => "token_expired",
                TokenError::NotYetValid(_) => "token_not_yet_valid",
                TokenError::IssuedInFuture(_) => "token_issued_in_future",
                TokenError::TooOld(_) => "token_too_old",
                TokenError::LifetimeTooLong(_) => "token_lifetime_too_long",
                TokenError::MissingExp => "missing_exp",
                TokenError::MissingClaim(_) => "missing_claim",
                TokenError::InvalidClaim { .. } => "invalid_claim",
                TokenError::WrongIssuer => "wrong_issuer",
                TokenError::WrongAudience => "wrong_audience",
                TokenError::Replayed => "token_replayed",
            },
            Rejection::RateLimited(_) => "rate_limited",
            Rejection::MemberRefused(_) => "member_refused",
            Rejection::EmailTaken => "email_taken",
            Rejection::Directory(_) => "directory_unavailable",
            Rejection::AmbiguousPath(_) => "ambiguous_path",
            Rejection::LoginRequired => "login_required",
            Rejection::CrossSiteLogout => "cross_site_logout",
        }
    }

    /// A line for the integrator who made the token (which claim, how many seconds off), never secret material.
    fn detail(&self) -> Option<String> {
        match self {
            Rejection::Token(TokenError::Replayed | TokenError::BadSignature) => None,
            Rejection::Token(error) => Some(error.to_string()),
            Rejection::ConflictingTokens => {
                Some("the request carries two different tokens".to_owned())
            }
            _ => None,
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
            Rejection::MissingToken | Rejection::ConflictingTokens => (
                "This sign-in link is incomplete",
                "The link that brought you here is missing its sign-in information. Go back to the site you came \
from and try again.",
            ),
            Rejection::Token(TokenError::TooLarge(_) | TokenError::Malformed(_)) => (
                "This sign-in link is damaged",
                "The link may have been cut off when it was copied. Go back to the site you came from and try again.",
            ),
            Rejection::Token(TokenError::MissingClaim(_) | TokenError::InvalidClaim { .. }) => (
                "This sign-in link is missing information",
                "The site that sent you here did not include everything the forum needs to sign you in (see the \
details below). Please let that site know.",
            ),
            Rejection::Token(TokenError::MissingExp) => (
                "This sign-in link has no expiry time",
                "The site that made this link must give it an expiry time: an exp claim, 60 seconds after it is \
issued, as both Tribe and MeltingSpot recommend. (The forum's operator can also accept such links with \
sso.require_exp: false and sso.danger_accept_tokens_without_expiry: true.)",
            ),
            Rejection::Token(_) => (
                "This sign-in link has expired or was already used",
                "Go back to the site you came from and try again.",
            ),
            Rejection::RateLimited(_) => (
                "Too many sign-in attempts",
                "Please wait a moment before trying again.",
            ),
            Rejection::MemberRefused(_) => (
                "Your account cannot sign in",
                "Your membership of this forum is not active. Please contact the forum's team.",
            ),
            Rejection::EmailTaken => (
                "This email address is already in use",
                "Another member of the forum already uses the email address of your account. Please contact the \
forum's team.",
            ),
            Rejection::Directory(_) => (
                "Sign-in is unavailable",
                "The forum cannot sign you in right now. Please try again in a few moments.",
            ),
            Rejection::AmbiguousPath(_) => (
                "Bad request",
                "This address could not be read. Please check the link and try again.",
            ),
            Rejection::LoginRequired => ("Sign-in required", "Please sign in to see this page."),
            Rejection::CrossSiteLogout => (
                "Sign-out not confirmed",
                "Another site tried to sign you out. Use the forum's own sign-out button instead.",
            ),
        }
    }

    /// Renders the response; `wants_json` comes from the request's `Accept` header.
    pub fn into_response(self, wants_json: bool) -> Response<Body> {
        let status = self.status();
        let (title, message) = self.page();
        let detail = self.detail();
        let (content_type, body) = if wants_json {
            let mut body = serde_json::json!({ "error": self.code(), "message": message, "status": status.as_u16() });
            if let Some(detail) = &detail {
                body["detail"] = serde_json::Value::String(detail.clone());
            }
            ("application/json", body.to_string())
        } else {
            let page = match &detail {
                Some(detail) => html_page_with_detail(status, title, message, detail),
                None => html_page(status, title, message),
            };
            ("text/html; charset=utf-8", page)
        };
        let mut response = Response::new(Body::full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Rejection::RateLimited(limited) = &self {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(limited.retry_after)),
            );
        }
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

/// A page with a small "for the site's developers" line; `detail` may quote the token's header, so it is escaped.
fn html_page_with_detail(status: StatusCode, title: &str, message: &str, detail: &str) -> String {
    let extra = format!(
        "{message}</p><p><small>Details for the developers of that site: {}</small>",
        escape_html(detail)
    );
    html_page(status, title, &extra)
}

/// Text made safe for HTML element content and quoted attribute values.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
