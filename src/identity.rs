//! Identity to the forum: strip every header a client could forge, then set the verified member's.
//!
//! On every request, with or without a session, any client-sent header that an upstream could read as one of ours
//! is removed first: any case, `_` or `.` in place of `-` (PHP, WSGI and CGI fold all three into `HTTP_X_AUTH_USER`),
//! every copy. Each strip is logged with the peer. Then, for a request with a valid session, exactly one copy of each
//! identity header is set, never an empty one (linkerd's set_identity_header does the same).
//!
//! Every value is percent-encoded UTF-8: bytes outside printable ASCII, and `%` itself, become `%XX`. So a value is
//! always one line of ASCII (a CR or LF in a claim can never start a header), and the forum decodes every value the
//! same way (`urllib.parse.unquote`, PHP's `rawurldecode`) whatever it holds.
//!
//! Header values are encoded once per member and kept in [`MemberCache`], so a proxied request costs a map lookup and
//! a few reference-count increments.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use dashmap::DashMap;
use http::HeaderMap;
use http::header::{COOKIE, HeaderName, HeaderValue};

use crate::assertion::Assertion;
use crate::config::forum::{IdentityConfig, IdentityHeaders, UserId};
use crate::directory::{Member, Status};

/// The identity headers and how to fill them.
#[derive(Debug)]
pub struct ForumIdentity {
    headers: IdentityHeaders,
    user_id: UserId,
    /// Every name we set, folded (lower case, `-` for `_` and `.`): what a client must never send.
    folded: HashSet<String>,
    /// Bit `n` set when one of `folded` is `n` bytes long (folding keeps the length): most header names are
    /// ruled out by their length alone, before any folding or hashing.
    lengths: u64,
    custom_prefix: Option<String>,
    assertion: Option<Assertion>,
}

impl ForumIdentity {
    pub fn new(config: &IdentityConfig, assertion: Option<Assertion>) -> Self {
        let h = &config.headers;
        let mut folded: HashSet<String> = [
            &h.user,
            &h.email,
            &h.name,
            &h.first_name,
            &h.last_name,
            &h.title,
            &h.avatar,
            &h.lang,
            &h.timezone,
            &h.groups,
        ]
        .into_iter()
        .flatten()
        .map(|name| fold(name.as_str()))
        .collect();
        // The assertion's default name is ours even when no assertion is configured: a forum that once verified
        // assertions may still trust one a client sends.
        folded.insert(fold(crate::config::forum::defaults::ASSERTION_HEADER));
        if let Some(assertion) = &assertion {
            folded.insert(fold(assertion.header().as_str()));
        }
        let lengths = folded
            .iter()
            .fold(0u64, |bits, name| bits | length_bit(name.len()));
        Self {
            headers: h.clone(),
            user_id: config.user_id,
            folded,
            lengths,
            custom_prefix: h.custom_prefix.as_deref().map(fold),
            assertion,
        }
    }

    pub fn assertion(&self) -> Option<&Assertion> {
        self.assertion.as_ref()
    }

    /// Removes every client-sent header that folds to one of ours, logging each with the peer.
    pub fn strip(&self, headers: &mut HeaderMap, peer: SocketAddr) {
        let mut doomed: Vec<HeaderName> = Vec::new();
        let mut folded = String::with_capacity(32);
        for name in headers.keys() {
            let len = name.as_str().len();
            let maybe_ours = self.lengths & length_bit(len) != 0
                || self
                    .custom_prefix
                    .as_deref()
                    .is_some_and(|prefix| len >= prefix.len());
            if !maybe_ours {
                continue;
            }
            folded.clear();
            folded.extend(name.as_str().chars().map(fold_char));
            let ours = self.folded.contains(folded.as_str())
                || self
                    .custom_prefix
                    .as_deref()
                    .is_some_and(|prefix| folded.starts_with(prefix));
            if ours {
                doomed.push(name.clone());
            }
        }
        for name in doomed {
            let copies = headers.get_all(&name).iter().count();
            headers.remove(&name);
            tracing::warn!(
                target: "ssogate::identity",
                %peer,
                header = %name,
                copies,
                "stripped a client-sent identity header"
            );
        }
    }

    /// The precomputed header set for `member`.
    pub fn encode(&self, member: &Member) -> Vec<(HeaderName, HeaderValue)> {
        let h = &self.headers;
        let user = match self.user_id {
            UserId::Id => Some(member.id.as_str()),
            UserId::Sub => Some(member.sub.as_str()),
        };
        let title = member.title.as_deref().or(member.tagline.as_deref());
        let fields: [(&Option<HeaderName>, Option<&str>); 9] = [
            (&h.user, user),
            (&h.email, Some(member.email.as_str())),
            (&h.name, Some(member.name.as_str())),
            (&h.first_name, member.first_name.as_deref()),
            (&h.last_name, member.last_name.as_deref()),
            (&h.title, title),
            (&h.avatar, member.picture.as_deref()),
            (&h.lang, member.lang.as_deref()),
            (&h.timezone, member.timezone.as_deref()),
        ];
        let mut out = Vec::with_capacity(12);
        if let (Some(name), false) = (&h.groups, member.spaces.is_empty()) {
            // `space:role` items, comma-separated; `,` `:` and `%` inside an id are escaped like everything else.
            let value = member
                .spaces
                .iter()
                .map(|space| format!("{}:{}", escape_list_item(&space.space_id), space.role))
                .collect::<Vec<_>>()
                .join(",");
            if let Ok(value) = HeaderValue::from_str(&value) {
                out.push((name.clone(), value));
            }
        }
        for (name, value) in fields {
            if let (Some(name), Some(value)) = (name, value.and_then(encode_value)) {
                out.push((name.clone(), value));
            }
        }
        if let Some(prefix) = &h.custom_prefix {
            for (field, value) in &member.custom {
                let text = match value {
                    serde_json::Value::String(text) => text.clone(),
                    serde_json::Value::Null => continue,
                    other => other.to_string(),
                };
                let name = format!("{prefix}{}", header_suffix(field));
                // A custom field never takes the place of a standard identity header, whatever the prefix.
                if self.folded.contains(&fold(&name)) {
                    continue;
                }
                if let (Ok(name), Some(value)) =
                    (HeaderName::from_bytes(name.as_bytes()), encode_value(&text))
                {
                    out.push((name, value));
                }
            }
        }
        out
    }

    /// Sets the member's headers on a request whose client-sent copies were already stripped.
    pub fn apply(&self, headers: &mut HeaderMap, entry: &MemberEntry, audience: &str, now: i64) {
        for (name, value) in entry.headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(assertion) = &self.assertion {
            if let Some(token) = entry.assertion(assertion, audience, now) {
                headers.insert(assertion.header().clone(), token);
            }
        }
    }
}

/// A member as the request path needs it: the directory record and its encoded headers.
#[derive(Debug)]
pub struct MemberEntry {
    pub member: Member,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Unix second of the last request that used this entry: idle entries are swept.
    last_used: std::sync::atomic::AtomicI64,
    /// The last signed assertion and until when it may be reused.
    assertion: Mutex<Option<(HeaderValue, i64)>>,
}

impl MemberEntry {
    pub fn is_active(&self) -> bool {
        self.member.status == Status::Active
    }

    fn assertion(&self, assertion: &Assertion, audience: &str, now: i64) -> Option<HeaderValue> {
        let mut cached = self
            .assertion
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((token, reuse_until)) = cached.as_ref() {
            if now < *reuse_until {
                return Some(token.clone());
            }
        }
        // Signing (ES256 especially) costs tens of microseconds: reuse an assertion for half its lifetime.
        let (token, expires) = assertion.sign(&self.member, audience, now)?;
        let value = HeaderValue::from_str(&token).ok()?;
        *cached = Some((value.clone(), now + (expires - now) / 2));
        Some(value)
    }
}

/// Members with live sessions, with their encoded headers; filled at sign-in and on a miss from the directory.
#[derive(Debug, Default)]
pub struct MemberCache {
    entries: DashMap<String, Arc<MemberEntry>>,
}

impl MemberCache {
    pub fn get(&self, id: &str, now: i64) -> Option<Arc<MemberEntry>> {
        let entry = self
            .entries
            .get(id)
            .map(|entry| Arc::clone(entry.value()))?;
        entry
            .last_used
            .store(now, std::sync::atomic::Ordering::Relaxed);
        Some(entry)
    }

    /// Forgets members no request has needed for `idle` seconds; a later request reloads them from the directory.
    /// Keeps memory proportional to the members active lately, not to every member ever seen.
    pub fn sweep(&self, now: i64, idle: i64) {
        self.entries.retain(|_, entry| {
            now - entry.last_used.load(std::sync::atomic::Ordering::Relaxed) < idle
        });
    }

    /// Stores (or replaces) a member's entry.
    pub fn put(&self, identity: &ForumIdentity, member: Member) -> Arc<MemberEntry> {
        let now = crate::sso::now();
        let mut headers = identity.encode(&member);
        headers.shrink_to_fit();
        let entry = Arc::new(MemberEntry {
            headers,
            last_used: std::sync::atomic::AtomicI64::new(now),
            member,
            assertion: Mutex::new(None),
        });
        // Keep the newer copy: a sign-in that read the member before an admin changed its status must not put
        // the old status back.
        match self.entries.entry(entry.member.id.clone()) {
            dashmap::mapref::entry::Entry::Occupied(mut held) => {
                if held.get().member.revision > entry.member.revision {
                    return Arc::clone(held.get());
                }
                held.insert(Arc::clone(&entry));
            }
            dashmap::mapref::entry::Entry::Vacant(slot) => {
                slot.insert(Arc::clone(&entry));
            }
        }
        entry
    }

    pub fn remove(&self, id: &str) {
        self.entries.remove(id);
    }
}

/// Removes cookie `name` from the `Cookie` headers going upstream, leaving every other cookie as it was. Several
/// `Cookie` headers (HTTP/2 sends one per cookie) are joined into one, as HTTP/1.1 requires.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    let has_ours = values.iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(';')
                .any(|pair| pair.trim().split('=').next() == Some(name))
        })
    });
    if !has_ours && values.len() == 1 {
        return;
    }
    let mut kept: Vec<&str> = Vec::new();
    let texts: Vec<String> = values
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    for text in &texts {
        for pair in text.split(';') {
            let pair = pair.trim();
            if pair.is_empty() || pair.split('=').next() == Some(name) {
                continue;
            }
            kept.push(pair);
        }
    }
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(COOKIE, value);
        }
    }
}

/// Percent-encodes a value as documented above; `None` for an empty value (never sent).
pub fn encode_value(text: &str) -> Option<HeaderValue> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    HeaderValue::from_str(&out).ok()
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// One groups item, percent-encoded like every value and with `,` and `:` escaped too, so the forum splits on them
/// first and decodes each part after.
fn escape_list_item(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.trim().bytes() {
        if (0x20..0x7f).contains(&byte) && !matches!(byte, b'%' | b',' | b':') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    out
}

/// The bit for names of `len` bytes; every name of 63 bytes or more shares the last one.
fn length_bit(len: usize) -> u64 {
    1u64 << len.min(63)
}

fn fold_char(c: char) -> char {
    match c {
        '_' | '.' => '-',
        c => c.to_ascii_lowercase(),
    }
}

/// A header name in the form PHP, WSGI and CGI all reduce it to.
pub fn fold(name: &str) -> String {
    name.chars().map(fold_char).collect()
}

/// A custom field name as a header-name suffix: letters and digits kept, anything else becomes `-`.
fn header_suffix(field: &str) -> String {
    field
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::forum::defaults;

    fn identity() -> ForumIdentity {
        let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).ok();
        let config = IdentityConfig {
            user_id: UserId::Id,
            headers: IdentityHeaders {
                user: name(defaults::USER),
                email: name(defaults::EMAIL),
                name: name(defaults::NAME),
                first_name: name(defaults::FIRST_NAME),
                last_name: name(defaults::LAST_NAME),
                title: name(defaults::TITLE),
                avatar: name(defaults::AVATAR),
                lang: name(defaults::LANG),
                timezone: name(defaults::TIMEZONE),
                groups: name(defaults::GROUPS),
                custom_prefix: Some(defaults::CUSTOM_PREFIX.into()),
            },
            assertion: None,
        };
        ForumIdentity::new(&config, None)
    }

    #[test]
    fn every_spelling_is_stripped() {
        let mut headers = HeaderMap::new();
        for name in [
            "x-auth-user",
            "X_AUTH_USER",
            "x.auth.email",
            "X-Auth_Name",
            "x-auth-field-company",
            "x-authx",
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("forged"),
            );
        }
        headers.append("x-auth-user", HeaderValue::from_static("second copy"));
        identity().strip(&mut headers, "127.0.0.1:1".parse().unwrap());
        let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-authx"]);
    }

    #[test]
    fn values_are_percent_encoded_and_never_empty() {
        assert_eq!(encode_value("Ada Lovelace").unwrap(), "Ada Lovelace");
        assert_eq!(encode_value("Zoë").unwrap(), "Zo%C3%AB");
        assert_eq!(
            encode_value("a\r\nX-Auth-User: admin").unwrap(),
            "a%0D%0AX-Auth-User: admin"
        );
        assert_eq!(encode_value("100%").unwrap(), "100%25");
        assert_eq!(encode_value("  "), None);
        assert_eq!(encode_value("李").unwrap(), "%E6%9D%8E");
    }

    #[test]
    fn our_cookie_is_removed_and_the_rest_kept() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("csrftoken=abc; ssogate_session=SEALED; sessionid=xyz"),
        );
        remove_cookie(&mut headers, "ssogate_session");
        assert_eq!(headers[COOKIE], "csrftoken=abc; sessionid=xyz");
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("ssogate_session=SEALED"));
        remove_cookie(&mut headers, "ssogate_session");
        assert!(!headers.contains_key(COOKIE));
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1"));
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        remove_cookie(&mut headers, "ssogate_session");
        assert_eq!(headers[COOKIE], "a=1; b=2");
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("ssogate_session_x=1; xssogate_session=2"),
        );
        remove_cookie(&mut headers, "ssogate_session");
        assert_eq!(headers[COOKIE], "ssogate_session_x=1; xssogate_session=2");
    }

    #[test]
    fn the_cache_keeps_the_newer_copy_of_a_member() {
        let identity = identity();
        let cache = MemberCache::default();
        let member = |revision: u64, status: Status| Member {
            id: "m".into(),
            sub: "1".into(),
            email: "a@b.co".into(),
            name: "A".into(),
            first_name: None,
            last_name: None,
            tagline: None,
            title: None,
            picture: None,
            lang: None,
            timezone: None,
            custom: serde_json::Map::new(),
            status,
            profile: "tribe",
            spaces: Vec::new(),
            revision,
            created_at: 0,
            updated_at: 0,
            last_login_at: 0,
            login_count: 0,
        };
        // An admin's change (read later by the writer) lands first; the racing sign-in's older copy must not win.
        cache.put(&identity, member(7, Status::Pending));
        let kept = cache.put(&identity, member(5, Status::Active));
        assert_eq!(kept.member.status, Status::Pending);
        assert_eq!(cache.get("m", 0).unwrap().member.status, Status::Pending);
        cache.put(&identity, member(9, Status::Active));
        assert_eq!(cache.get("m", 0).unwrap().member.status, Status::Active);
    }
}
