//! SSO test helpers: a gateway configured for SSO, tokens minted the way integrators mint them, and cookie reading.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

/// The HS256 secret the test gateways trust (key id `main`).
pub const SECRET: &str = "test-integrator-secret-of-at-least-32-bytes";
/// A second key for rotation tests (key id `next`).
pub const NEXT_SECRET: &str = "the-next-integrator-secret-also-32-bytes-long";
pub const SESSION_SECRET: &str = "test-session-secret-of-at-least-32-bytes!!";

/// Gateway YAML with SSO on, its directory under `dir`; `extra` is appended at the top level (it must not repeat
/// `sso`, `session`, `directory` or `upstream`; use `sso_extra` for more `sso` keys).
pub fn sso_yaml(dir: &Path, sso_extra: &str, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nworkers: 2\nupstream:\n  url: http://{{upstream}}\n\
sso:\n  keys:\n    - id: main\n      algorithm: HS256\n      secret: {SECRET}\n    - id: next\n      algorithm: HS256\n      secret: {NEXT_SECRET}\n{sso_extra}\
session:\n  secret: {SESSION_SECRET}\n\
directory:\n  path: {}\n{extra}",
        dir.join("ssogate.db").display()
    )
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Tribe's sample payload (sub as a number, as `user.id` usually is), valid for 60 s.
pub fn tribe_claims(sub: i64, email: &str, name: &str) -> Value {
    let now = now();
    json!({"sub": sub, "email": email, "name": name, "iat": now, "exp": now + 60})
}

/// MeltingSpot's sample payload, valid for 60 s.
pub fn meltingspot_claims(sub: &str, first: &str, last: &str, email: &str) -> Value {
    let now = now();
    json!({"sub": sub, "firstName": first, "lastName": last, "email": email, "iat": now, "exp": now + 60})
}

/// An HS256 token signed with `secret`, with no `kid` (as the docs' samples mint them).
pub fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A token with a chosen header (for kid and algorithm cases).
pub fn with_header(header: &Header, claims: &Value, secret: &str) -> String {
    encode(header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// The session cookie pair (`name=value`) from a `Set-Cookie` header, if the response set one.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("ssogate_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// Opens a session cookie the way the gateway does (same secret), to check what it holds.
pub fn open_session(cookie_pair: &str) -> Option<ssogate::session::Session> {
    let config = ssogate::config::auth::SessionConfig {
        secret: SESSION_SECRET.as_bytes().to_vec(),
        cookie_name: "ssogate_session".into(),
        ttl: std::time::Duration::from_secs(12 * 3600),
        same_site: ssogate::config::auth::SameSite::Lax,
        partitioned: false,
        secure: false,
        domain: None,
    };
    let sessions = ssogate::session::Sessions::new(&config);
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::COOKIE, cookie_pair.parse().ok()?);
    sessions.read(&headers, now())
}
