//! The session cookie: a small record, sealed with AES-256-GCM (the `cookie` crate's private jar).
//!
//! The record is the session id, the member id and the issue and expiry times. The cookie name is bound into the
//! seal, so a value cannot be moved to another cookie. A cookie that is expired, tampered with or sealed with another
//! key is simply absent: the request goes on anonymously. The TTL is absolute: a session is never extended. The
//! cookie is `HttpOnly`, `Path=/`, `SameSite` as configured, `Secure` when configured (by default when the public URL
//! is https), and named with the `__Host-` prefix when secure and host-only, so no sibling subdomain can plant one.

use cookie::{Cookie, CookieJar, Key};
use http::HeaderMap;
use http::header::COOKIE;

use crate::config::auth::{SameSite, SessionConfig};

/// Browsers drop cookies over 4096 bytes; ours stays far below.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// How many earlier session secrets a chain of reloads keeps accepting.
pub const MAX_PREVIOUS_KEYS: usize = 4;

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub member_id: String,
    /// Unix seconds.
    pub issued: i64,
    pub expires: i64,
}

/// Issues and reads session cookies.
pub struct Sessions {
    key: Key,
    /// Keys of earlier `session.secret`s (newest first), still accepted when opening cookies after a reload.
    previous: Vec<Key>,
    name: String,
    ttl: i64,
    same_site: cookie::SameSite,
    secure: bool,
    partitioned: bool,
    domain: Option<String>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn new(config: &SessionConfig) -> Self {
        let name = if config.secure && config.domain.is_none() {
            format!("__Host-{}", config.cookie_name)
        } else {
            config.cookie_name.clone()
        };
        Self {
            // derive_from needs 32 bytes or more; config validation refuses shorter secrets.
            key: Key::derive_from(&config.secret),
            previous: Vec::new(),
            name,
            ttl: i64::try_from(config.ttl.as_secs()).unwrap_or(i64::MAX),
            same_site: match config.same_site {
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::None => cookie::SameSite::None,
            },
            secure: config.secure,
            partitioned: config.partitioned,
            domain: config.domain.clone(),
        }
    }

    /// Keeps opening the cookies `earlier` issued, when its secret differs from this one's: a reload that changes
    /// `session.secret` signs no one out. Up to [`MAX_PREVIOUS_KEYS`] earlier secrets are kept.
    pub fn keep_opening(&mut self, earlier: &Sessions) {
        self.previous = std::iter::once(&earlier.key)
            .chain(&earlier.previous)
            .filter(|key| key.master() != self.key.master())
            .take(MAX_PREVIOUS_KEYS)
            .cloned()
            .collect();
    }

    /// The cookie's name as browsers see it (with `__Host-` when that applies).
    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    /// A new session for `member_id`, and the `Set-Cookie` value that carries it.
    pub fn issue(&self, member_id: &str, now: i64) -> (Session, String) {
        let session = self.open_new(member_id, now);
        let cookie = self.set_cookie(&session);
        (session, cookie)
    }

    /// A new session record (a fresh random id), not yet sealed into a cookie.
    pub fn open_new(&self, member_id: &str, now: i64) -> Session {
        Session {
            id: random_id(),
            member_id: member_id.to_owned(),
            issued: now,
            expires: now.saturating_add(self.ttl),
        }
    }

    /// The `Set-Cookie` value carrying `session`.
    pub fn set_cookie(&self, session: &Session) -> String {
        let record = format!(
            "v1|{}|{}|{}|{}",
            session.id, session.member_id, session.issued, session.expires
        );
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key)
            .add(Cookie::new(self.name.clone(), record));
        let sealed = jar
            .get(&self.name)
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        let mut cookie = Cookie::new(self.name.clone(), sealed);
        cookie.set_http_only(true);
        cookie.set_path("/");
        cookie.set_same_site(self.same_site);
        cookie.set_secure(self.secure);
        cookie.set_max_age(cookie::time::Duration::seconds(self.ttl));
        if self.partitioned {
            cookie.set_partitioned(true);
        }
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie.to_string()
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn clear(&self) -> String {
        let mut cookie = Cookie::new(self.name.clone(), "");
        cookie.set_http_only(true);
        cookie.set_path("/");
        cookie.set_same_site(self.same_site);
        cookie.set_secure(self.secure);
        cookie.set_max_age(cookie::time::Duration::ZERO);
        if self.partitioned {
            cookie.set_partitioned(true);
        }
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie.to_string()
    }

    /// The valid session in the request's cookies, if any.
    pub fn read(&self, headers: &HeaderMap, now: i64) -> Option<Session> {
        for value in headers.get_all(COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            for pair in text.split(';') {
                let Some((name, sealed)) = pair.trim().split_once('=') else {
                    continue;
                };
                if name != self.name {
                    continue;
                }
                if let Some(session) = self.open(sealed, now) {
                    return Some(session);
                }
            }
        }
        None
    }

    fn open(&self, sealed: &str, now: i64) -> Option<Session> {
        if sealed.len() > MAX_COOKIE_BYTES {
            return None;
        }
        let jar = CookieJar::new();
        let opened = std::iter::once(&self.key)
            .chain(&self.previous)
            .find_map(|key| {
                jar.private(key)
                    .decrypt(Cookie::new(self.name.clone(), sealed.to_owned()))
            })?;
        let mut fields = opened.value().split('|');
        let (Some("v1"), Some(id), Some(member_id), Some(issued), Some(expires), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return None;
        };
        let issued: i64 = issued.parse().ok()?;
        let expires: i64 = expires.parse().ok()?;
        if now >= expires || issued > now.saturating_add(300) {
            return None;
        }
        Some(Session {
            id: id.to_owned(),
            member_id: member_id.to_owned(),
            issued,
            expires,
        })
    }
}

/// 128 random bits, base64url: unguessable session ids.
pub fn random_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes())
}

/// 16 bytes from the system RNG. aws-lc's RNG does not fail on Linux; if it ever did, the time (never zeros, which
/// would collide on every call) stands in, and the failure is logged.
pub fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        tracing::error!("the system random number generator failed; ids fall back to the clock");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    bytes
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;

    fn config(secure: bool) -> SessionConfig {
        SessionConfig {
            secret: b"0123456789abcdef0123456789abcdef".to_vec(),
            cookie_name: "ssogate_session".into(),
            ttl: Duration::from_secs(3600),
            same_site: SameSite::Lax,
            partitioned: false,
            secure,
            domain: None,
        }
    }

    #[test]
    fn a_new_secret_keeps_opening_cookies_sealed_with_the_old_one() {
        let old = Sessions::new(&config(false));
        let (session, cookie) = old.issue("m1", 1000);
        let mut rotated = config(false);
        rotated.secret = b"another-secret-another-secret-32b".to_vec();
        let mut new = Sessions::new(&rotated);
        assert_eq!(new.read(&request_with(&cookie), 1001), None);
        new.keep_opening(&old);
        assert_eq!(new.read(&request_with(&cookie), 1001), Some(session));
        // New cookies are sealed with the new secret only.
        let (_, fresh) = new.issue("m2", 1000);
        assert_eq!(
            Sessions::new(&config(false)).read(&request_with(&fresh), 1001),
            None
        );
        // Reloading the same secret adds nothing to try.
        let mut same = Sessions::new(&rotated);
        same.keep_opening(&new);
        assert_eq!(same.previous.len(), 1);
    }

    fn request_with(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("forum=1; {pair}; other=2")).unwrap(),
        );
        headers
    }

    #[test]
    fn issued_cookie_reads_back_until_expiry() {
        let sessions = Sessions::new(&config(true));
        let (session, set_cookie) = sessions.issue("member-1", 1000);
        assert!(
            set_cookie.starts_with("__Host-ssogate_session="),
            "{set_cookie}"
        );
        for attribute in [
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(
                set_cookie.contains(attribute),
                "{attribute} missing: {set_cookie}"
            );
        }
        assert!(set_cookie.len() < MAX_COOKIE_BYTES);
        let headers = request_with(&set_cookie);
        assert_eq!(sessions.read(&headers, 1001), Some(session.clone()));
        assert_eq!(
            sessions.read(&headers, 1000 + 3600),
            None,
            "ttl is absolute"
        );
        // Another secret cannot open it.
        let mut other = config(true);
        other.secret = b"another secret that is 32 bytes!".to_vec();
        assert_eq!(Sessions::new(&other).read(&headers, 1001), None);
        // New sessions never reuse an id.
        assert_ne!(sessions.issue("member-1", 1000).0.id, session.id);
    }

    #[test]
    fn tampered_or_foreign_values_are_absent() {
        let sessions = Sessions::new(&config(false));
        let (_, set_cookie) = sessions.issue("member-1", 1000);
        assert!(set_cookie.starts_with("ssogate_session="));
        assert!(!set_cookie.contains("Secure"));
        let pair = set_cookie.split(';').next().unwrap();
        let (name, value) = pair.split_once('=').unwrap();
        let mut flipped = value.as_bytes().to_vec();
        let middle = flipped.len() / 2;
        flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{name}={}", String::from_utf8(flipped).unwrap());
        assert_eq!(sessions.read(&request_with(&tampered), 1001), None);
        assert_eq!(
            sessions.read(&request_with("ssogate_session=v1|x|member-1|0|99999"), 1001),
            None
        );
    }
}
