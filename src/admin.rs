//! The admin API: a separate listener (`admin.listen`, by default 127.0.0.1:9090) where operators and scripts find
//! members, change their status, and end their sessions, with a bearer token (`admin.token`, 32 bytes or more; no
//! token, no admin API). Every change is made in the directory and in the running gateway's memory at once, and
//! survives a restart. Every answer is JSON; see docs/admin-openapi.yaml.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::body::Body;
use crate::directory::{DirectoryError, MemberFilter, Status};
use crate::gateway::{Live, Shared};
use crate::sso::now;

const MAX_BODY_BYTES: usize = 16 * 1024;
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// Answers one admin-listener request: health, readiness and metrics for anyone who can reach the listener, the
/// member API for holders of the token. Never fails: every problem is a JSON error.
pub async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    live: Arc<Live>,
    token: Option<Arc<str>>,
) -> Response<Body> {
    let id = crate::context::new_id();
    let context = crate::context::RequestContext::new(Arc::clone(&id));
    crate::context::scope(context, async move {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let shared = live.load();
        let response = match probe(&request, &live, &shared).await {
            Some(response) => response,
            None => match route(request, peer, &shared, token.as_deref()).await {
                Ok(response) => response,
                Err(error) => error.into_response(),
            },
        };
        // Probes and scrapes arrive every few seconds: their lines would drown the API's, so they go to debug.
        if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
            tracing::debug!(target: "ssogate::admin", %peer, method = %method, path = %path, status = response.status().as_u16());
        } else {
            tracing::info!(target: "ssogate::admin", %peer, method = %method, path = %path, status = response.status().as_u16());
        }
        let mut response = response;
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(crate::context::HEADER, value);
        }
        response
    })
    .await
}

/// `/healthz`, `/readyz` and `/metrics` (GET or HEAD, no token); `None` for every other request.
async fn probe(
    request: &Request<Incoming>,
    live: &Live,
    shared: &Shared,
) -> Option<Response<Body>> {
    let path = request.uri().path();
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return None;
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Some(
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET",
            )
            .into_response(),
        );
    }
    let (status, content_type, body) = match path {
        "/healthz" => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok\n".to_owned(),
        ),
        "/readyz" => {
            let report = live.readiness.check(shared).await;
            let status = if report.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, "application/json", json!(report).to_string())
        }
        _ => {
            let sessions = live.readiness.active_sessions(shared).await;
            (
                StatusCode::OK,
                crate::metrics::CONTENT_TYPE,
                live.metrics.render(sessions),
            )
        }
    };
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(response)
}

async fn route(
    request: Request<Incoming>,
    peer: SocketAddr,
    shared: &Shared,
    token: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let Some(token) = token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "admin_api_off",
            "the member API is off: set admin.token to enable it",
        ));
    };
    authorize(&request, token)?;
    let Some(sso) = shared.sso() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "sso_disabled",
            "SSO is not configured",
        ));
    };
    let segments: Vec<String> = request
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let admin = Some(peer.ip().to_string());
    let method = request.method().clone();
    let directory = sso.directory();
    match (method, segments.as_slice()) {
        (Method::GET, ["admin", "members"]) => {
            let query = Query::parse(request.uri().query());
            let status = match query.get("status") {
                Some(text) => Some(parse_status(text)?),
                None => None,
            };
            let filter = MemberFilter {
                email: query.get("email").map(str::to_owned),
                sub: query.get("sub").map(str::to_owned),
                status,
                limit: query.limit()?,
            };
            let members = directory.members(filter).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "members": members }),
            ))
        }
        (Method::GET, ["admin", "members", id]) => match directory.member(id).await? {
            Some(member) => Ok(json_response(StatusCode::OK, &json!(member))),
            None => Err(ApiError::no_member(id)),
        },
        (Method::PUT, ["admin", "members", id, "status"]) => {
            let id = (*id).to_owned();
            let body = read_json(request).await?;
            let Some(text) = body.get("status").and_then(Value::as_str) else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "expected {\"status\": \"...\"}",
                ));
            };
            let status = parse_status(text)?;
            match sso.set_status(&id, status, admin).await? {
                Some(member) => {
                    tracing::info!(target: "ssogate::admin", %peer, member = %id, status = status.as_str(), "status changed");
                    Ok(json_response(StatusCode::OK, &json!(member)))
                }
                None => Err(ApiError::no_member(&id)),
            }
        }
        (Method::GET, ["admin", "members", id, "sessions"]) => {
            if directory.member(id).await?.is_none() {
                return Err(ApiError::no_member(id));
            }
            let sessions = directory.sessions(id, now()).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "sessions": sessions }),
            ))
        }
        (Method::DELETE, ["admin", "members", id, "sessions"]) => {
            if directory.member(id).await?.is_none() {
                return Err(ApiError::no_member(id));
            }
            let ended = sso.end_sessions(id, admin).await?;
            Ok(json_response(StatusCode::OK, &json!({ "ended": ended })))
        }
        (Method::DELETE, ["admin", "sessions", session]) => {
            match sso.end_session(session, admin).await? {
                Some(ended) => Ok(json_response(
                    StatusCode::OK,
                    &json!({ "ended": u8::from(ended) }),
                )),
                None => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_session",
                    "no session with that id",
                )),
            }
        }
        (Method::GET, ["admin", "audit"]) => {
            let limit = Query::parse(request.uri().query()).limit()?;
            let events = directory.audit(limit).await?;
            Ok(json_response(StatusCode::OK, &json!({ "events": events })))
        }
        (
            _,
            ["admin", "members"]
            | ["admin", "members", _]
            | ["admin", "members", _, "status" | "sessions"],
        )
        | (_, ["admin", "sessions", _] | ["admin", "audit"]) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this resource",
        )),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such admin resource",
        )),
    }
}

/// The bearer token, compared in constant time.
fn authorize(request: &Request<Incoming>, token: &str) -> Result<(), ApiError> {
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // RFC 9110 §11.1: the scheme name is case-insensitive.
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, token)| token.trim());
    let Some(given) = given else {
        return Err(ApiError::unauthorized(
            "an Authorization: Bearer token is required",
        ));
    };
    if aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), token.as_bytes())
        .is_err()
    {
        return Err(ApiError::unauthorized("the token is not valid"));
    }
    Ok(())
}

fn parse_status(text: &str) -> Result<Status, ApiError> {
    Status::parse(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_status",
            "status must be one of active, invited, pending, declined, rejected, deactivated, left",
        )
    })
}

async fn read_json(request: Request<Incoming>) -> Result<Value, ApiError> {
    let bytes: Bytes = Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body is too large or was cut off",
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body is not JSON",
        )
    })
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn limit(&self) -> Result<i64, ApiError> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_limit",
                        "limit must be 1 to 1000",
                    )
                }),
        }
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::full(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An admin API failure, as JSON with a stable code.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: &str) -> Self {
        Self {
            status,
            code,
            message: message.to_owned(),
        }
    }

    fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn no_member(id: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "no_such_member",
            message: format!(
                "no member with id {}",
                id.chars().take(64).collect::<String>()
            ),
        }
    }

    fn into_response(self) -> Response<Body> {
        let mut response = json_response(
            self.status,
            &json!({ "error": self.code, "message": self.message }),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ssogate-admin\""),
            );
        }
        response
    }
}

impl From<DirectoryError> for ApiError {
    fn from(error: DirectoryError) -> Self {
        tracing::error!(target: "ssogate::admin", error = %error, "directory error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "directory_unavailable",
            "the directory failed; see the log",
        )
    }
}
