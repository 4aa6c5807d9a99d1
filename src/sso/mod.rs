//! The SSO entry: token -> member -> session -> redirect.
//!
//! An entry route (`/api/auth/sso?jwt=…&redirect_uri=/…` for Tribe, `/sso/jwt?ms_token=…&referrerUrl=/…` for
//! MeltingSpot, or as configured) answers without the forum. [`Sso::enter`] runs the steps in the order that makes
//! refusals cheapest: the per-address rate limit, the token's size and signature ([`token`]), the claim profile
//! ([`claims`]), the per-subject rate limit, the replay guard ([`replay`]), the member directory, a new session, and a
//! `303 See Other` to a safe return path ([`return_path`]). Each refusal is a [`Rejection`] with a precise cause for
//! the log and a plain page for the member.

pub mod claims;
pub mod replay;
pub mod return_path;
pub mod token;

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use std::sync::Arc;

use dashmap::DashMap;
use http::HeaderMap;

use crate::assertion::Assertion;
use crate::body::Body;
use crate::config::Config;
use crate::config::auth::{EntryConfig, Profile, RateLimitConfig};
use crate::directory::{Directory, DirectoryError, Member, NewSession, Status, TokenUse};
use crate::identity::{ForumIdentity, MemberCache, MemberEntry};
use crate::limit::SsoLimits;
use crate::reject::Rejection;
use crate::routes::ForumRoutes;
use crate::session::Session;
use crate::session::Sessions;
use claims::Identity;
use replay::ReplayGuard;
use token::{TokenError, Verifier};

/// A cached member no request has used for this long is dropped (and reloaded on its next request).
const MEMBER_CACHE_IDLE_SECS: i64 = 3600;

/// The largest form body an entry route reads (a token is at most 8 KiB).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The SSO state shared by every worker.
#[derive(Debug)]
pub struct Sso {
    entries: Vec<Entry>,
    verifier: Verifier,
    /// Shared with the instances a reload makes: a reload must not reopen a used token.
    replay: Arc<ReplayGuard>,
    limits: Arc<SsoLimits>,
    /// What `limits` was built from: a reload keeps the limiters (and their counts) unless this changes.
    rate_limit: RateLimitConfig,
    directory: Directory,
    sessions: Sessions,
    /// Members with live sessions, their identity headers encoded (rebuilt on reload: the encoding may change).
    members: MemberCache,
    /// Ended sessions (id -> when the cookie would have expired): checked in memory on every request, and shared
    /// with the instances a reload makes.
    revoked: Arc<DashMap<String, i64>>,
    identity: ForumIdentity,
    routes: ForumRoutes,
    /// Tribe's "external keys": custom profile field -> token claims, first non-empty wins.
    custom_fields: Vec<(String, Vec<String>)>,
}

/// What one SSO instance hands to the next (see [`Sso::reloaded`]).
struct Carried<'a> {
    directory: Directory,
    replay: Arc<ReplayGuard>,
    revoked: Arc<DashMap<String, i64>>,
    limits: Arc<SsoLimits>,
    /// The sessions of the instance being replaced, whose keys keep opening cookies.
    previous: Option<&'a Sessions>,
}

/// One entry route and the paths it answers on.
#[derive(Debug)]
pub struct Entry {
    config: EntryConfig,
    patterns: Vec<Vec<Segment>>,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Any,
}

impl Sso {
    /// Builds the SSO state when the config has an `sso` section; opens (and migrates) the directory and loads the
    /// sessions ended before a restart.
    pub async fn new(config: &Config) -> Result<Option<Self>, DirectoryError> {
        if config.sso.is_none() || config.session.is_none() {
            return Ok(None);
        }
        let directory = Directory::open_sqlite(&config.directory.path)?;
        let revoked = DashMap::new();
        for (id, until) in directory.revoked(now()).await? {
            revoked.insert(id, until);
        }
        let carried = Carried {
            directory,
            replay: Arc::default(),
            revoked: Arc::new(revoked),
            limits: Arc::new(SsoLimits::new(&config.rate_limit)),
            previous: None,
        };
        Ok(Self::build(config, carried))
    }

    /// The SSO state for a reloaded `config`, carrying over what must survive a reload: the directory, the replay
    /// memory, the ended sessions, the rate limiters (unless their rates changed), and the session key (a new
    /// `session.secret` seals new cookies; the old one still opens the cookies already issued). `config` must have
    /// SSO on, as the caller checks.
    pub fn reloaded(&self, config: &Config) -> Option<Self> {
        let limits = if self.rate_limit == config.rate_limit {
            Arc::clone(&self.limits)
        } else {
            Arc::new(SsoLimits::new(&config.rate_limit))
        };
        let carried = Carried {
            directory: self.directory.clone(),
            replay: Arc::clone(&self.replay),
            revoked: Arc::clone(&self.revoked),
            limits,
            previous: Some(&self.sessions),
        };
        Self::build(config, carried)
    }

    fn build(config: &Config, carried: Carried<'_>) -> Option<Self> {
        let (Some(sso), Some(session)) = (&config.sso, &config.session) else {
            return None;
        };
        let entries: Vec<Entry> = sso.entries.iter().cloned().map(Entry::new).collect();
        // `redirectUrl` points at the configured entry, else MeltingSpot's (whose flow it is), else the first.
        let entry = config
            .routes
            .entry
            .as_ref()
            .and_then(|path| entries.iter().find(|e| &e.config.path == path))
            .or_else(|| {
                entries
                    .iter()
                    .find(|e| e.config.profile == Profile::MeltingSpot)
            })
            .or_else(|| entries.first());
        let (entry_path, entry_return) = entry.map_or_else(
            || ("/sso/jwt".to_owned(), "referrerUrl".to_owned()),
            |e| (e.config.path.clone(), e.config.return_param.clone()),
        );
        let routes = ForumRoutes::new(
            config.routes.clone(),
            config.protect.clone(),
            config.public_url.clone(),
            entry_path,
            entry_return,
        );
        let assertion = config
            .identity
            .assertion
            .as_ref()
            .and_then(|a| Assertion::new(a, config.public_url.as_str()));
        let mut sessions = Sessions::new(session);
        if let Some(previous) = carried.previous {
            sessions.keep_opening(previous);
        }
        Some(Self {
            entries,
            verifier: Verifier::new(sso),
            replay: carried.replay,
            limits: carried.limits,
            rate_limit: config.rate_limit.clone(),
            directory: carried.directory,
            sessions,
            members: MemberCache::default(),
            revoked: carried.revoked,
            identity: ForumIdentity::new(&config.identity, assertion),
            routes,
            custom_fields: sso.custom_fields.clone(),
        })
    }

    pub fn identity(&self) -> &ForumIdentity {
        &self.identity
    }

    pub fn routes(&self) -> &ForumRoutes {
        &self.routes
    }

    /// The session in the request and its member, when both are valid: the cookie opens, the session was not
    /// ended, and the member is active. Costs no I/O unless the member is not cached yet (after a restart).
    pub async fn session_member(
        &self,
        headers: &HeaderMap,
        now: i64,
    ) -> Option<(Session, Arc<MemberEntry>)> {
        let session = self.sessions.read(headers, now)?;
        if self.revoked.contains_key(&session.id) {
            return None;
        }
        let entry = match self.members.get(&session.member_id, now) {
            Some(entry) => entry,
            // Boxed: only a cache miss needs the directory, and the request's future should not carry its size.
            None => match Box::pin(self.directory.member(&session.member_id)).await {
                Ok(Some(member)) => self.members.put(&self.identity, member),
                Ok(None) => return None,
                Err(error) => {
                    tracing::error!(error = %error, "cannot load a session's member; treating the request as anonymous");
                    return None;
                }
            },
        };
        entry.is_active().then_some((session, entry))
    }

    /// An administrator changes a member's status; it takes effect on the member's next request (deactivation also
    /// ends every session they have). `None` when there is no such member.
    pub async fn set_status(
        &self,
        id: &str,
        status: Status,
        admin_address: Option<String>,
    ) -> Result<Option<Member>, DirectoryError> {
        let Some((member, ended)) = self
            .directory
            .set_status(id, status, admin_address, now())
            .await?
        else {
            return Ok(None);
        };
        for (session, until) in ended {
            self.revoked.insert(session, until);
        }
        self.members.put(&self.identity, member.clone());
        Ok(Some(member))
    }

    /// An administrator ends all of a member's sessions; returns how many.
    pub async fn end_sessions(
        &self,
        member_id: &str,
        admin_address: Option<String>,
    ) -> Result<usize, DirectoryError> {
        let ended = self
            .directory
            .end_sessions(member_id, admin_address, now())
            .await?;
        let count = ended.len();
        for (session, until) in ended {
            self.revoked.insert(session, until);
        }
        Ok(count)
    }

    /// An administrator ends one session: `Some(true)` ended now, `Some(false)` already ended or expired, `None` no
    /// such session.
    pub async fn end_session(
        &self,
        session_id: &str,
        admin_address: Option<String>,
    ) -> Result<Option<bool>, DirectoryError> {
        match self
            .directory
            .end_session(session_id, admin_address, now())
            .await?
        {
            Some((_, until, ended)) => {
                if ended {
                    self.revoked.insert(session_id.to_owned(), until);
                }
                Ok(Some(ended))
            }
            None => Ok(None),
        }
    }

    /// Ends a session everywhere: in memory at once, durably before returning.
    pub async fn log_out(&self, session: &Session) -> Result<(), DirectoryError> {
        self.revoked.insert(session.id.clone(), session.expires);
        self.directory
            .sign_out(&session.id, &session.member_id, session.expires, now())
            .await?;
        tracing::info!(target: "ssogate::sso", session = %session.id, "signed out");
        Ok(())
    }

    /// The entry route `path` belongs to, if any.
    pub fn route(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.matches(path))
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Periodic housekeeping: forget expired token fingerprints and idle rate-limit keys.
    pub fn sweep(&self) {
        let now = now();
        self.replay.sweep(now);
        self.revoked.retain(|_, until| *until >= now);
        self.members.sweep(now, MEMBER_CACHE_IDLE_SECS);
        self.directory.sweep(now);
        self.limits.prune();
    }

    /// Query parameters whose values are tokens (masked in logs).
    pub fn token_params(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .flat_map(|entry| {
                std::iter::once(&entry.config.token_param).chain(&entry.config.token_aliases)
            })
            .map(String::as_str)
    }

    /// Signs a member in from an entry-route request. `client_ip` is the real client (trusted-proxy rules).
    pub async fn enter(
        &self,
        entry: &Entry,
        request: Request<Incoming>,
        client_ip: IpAddr,
    ) -> Result<Response<Body>, Rejection> {
        if let Err(limited) = self.limits.check_ip(client_ip) {
            return Err(Rejection::RateLimited(limited));
        }
        let user_agent = request
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect::<String>());
        let params = read_params(request).await?;
        let token = entry.token(&params)?;
        let now = now();

        let verified = self.verifier.verify(token, now).map_err(Rejection::Token)?;
        let identity =
            Identity::from_claims(entry.config.profile, &verified.claims, &self.custom_fields)
                .map_err(Rejection::Token)?;
        // Replays are refused twice over: in memory (cheap, before any I/O) and in the directory, in the sign-in's
        // own transaction, which survives a restart. A token without expiry (only with
        // danger_accept_tokens_without_expiry) is remembered forever, in the directory alone. The subject limit
        // runs between the look and the record, so a reused link is told it was used, and a link refused for going
        // too fast still works once the member slows down.
        let fingerprint = replay::fingerprint(&verified.key_id, verified.jti.as_deref(), token);
        if self.replay.seen(&fingerprint, now) {
            return Err(Rejection::Token(TokenError::Replayed));
        }
        let subject_key = format!("{}:{}", entry.config.profile.as_str(), identity.sub);
        if let Err(limited) = self.limits.check_subject(&subject_key) {
            return Err(Rejection::RateLimited(limited));
        }
        if let Some(until) = verified.remember_until {
            if !self.replay.first_use(fingerprint, until, now) {
                return Err(Rejection::Token(TokenError::Replayed));
            }
        }
        let token_use = TokenUse {
            fingerprint,
            until: verified.remember_until,
        };

        for note in &identity.notes {
            tracing::info!(target: "ssogate::sso", sub = %identity.sub, "optional claim: {note}");
        }
        let profile = entry.config.profile;
        let sub = identity.sub.clone();
        // The session's id exists before the member does, so both are recorded in the same transaction.
        let session = self.sessions.open_new("", now);
        let new_session = NewSession {
            id: session.id.clone(),
            expires: session.expires,
            address: Some(client_ip.to_string()),
            user_agent,
        };
        let signed_in = self
            .directory
            .sign_in(profile, identity, token_use, Some(new_session), now)
            .await
            .map_err(|error| match error {
                DirectoryError::Replayed => Rejection::Token(TokenError::Replayed),
                // The transaction rolled back: the token was not used, and may be tried again.
                DirectoryError::EmailTaken => {
                    self.replay.forget(&fingerprint);
                    Rejection::EmailTaken
                }
                other => {
                    self.replay.forget(&fingerprint);
                    Rejection::Directory(other)
                }
            })?;
        let member = signed_in.member;
        if member.status != Status::Active {
            return Err(Rejection::MemberRefused(member.status));
        }

        let member_id = member.id.clone();
        crate::context::set_member(&member_id);
        self.members.put(&self.identity, member);
        let session = Session {
            member_id,
            ..session
        };
        let set_cookie = self.sessions.set_cookie(&session);
        let (location, unsafe_reason) =
            return_path::or_root(params.get(&entry.config.return_param));
        if let Some(reason) = unsafe_reason {
            tracing::warn!(
                target: "ssogate::sso",
                param = %entry.config.return_param,
                reason = reason.as_str(),
                "return path refused; sending the member to /"
            );
        }
        tracing::info!(
            target: "ssogate::sso",
            sub = %sub,
            profile = profile.as_str(),
            key = %verified.key_id,
            created = signed_in.created,
            session = %session.id,
            "signed in"
        );

        let mut response = Response::new(Body::Empty);
        *response.status_mut() = StatusCode::SEE_OTHER;
        let headers = response.headers_mut();
        headers.insert(
            LOCATION,
            HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/")),
        );
        if let Ok(cookie) = HeaderValue::from_str(&set_cookie) {
            headers.insert(SET_COOKIE, cookie);
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        Ok(response)
    }
}

impl Entry {
    pub fn new(config: EntryConfig) -> Self {
        Self {
            patterns: std::iter::once(&config.path)
                .chain(&config.aliases)
                .map(|path| pattern(path))
                .collect(),
            config,
        }
    }

    pub fn profile(&self) -> Profile {
        self.config.profile
    }

    pub fn config(&self) -> &EntryConfig {
        &self.config
    }

    /// Whether this entry answers on `path` (its own path, or an alias).
    pub fn matches(&self, path: &str) -> bool {
        self.patterns.iter().any(|pattern| {
            let mut segments = path.split('/').skip(1);
            pattern.iter().all(|want| match (want, segments.next()) {
                (Segment::Literal(text), Some(have)) => text == have,
                (Segment::Any, Some(have)) => !have.is_empty(),
                (_, None) => false,
            }) && segments.next().is_none()
        })
    }

    /// The one token in the request: under the main name or an alias; two different ones are refused.
    fn token<'a>(&self, params: &'a Params) -> Result<&'a str, Rejection> {
        let mut found: Option<&str> = None;
        for name in std::iter::once(&self.config.token_param).chain(&self.config.token_aliases) {
            for value in params.all(name) {
                if value.is_empty() {
                    continue;
                }
                match found {
                    Some(other) if other != value => return Err(Rejection::ConflictingTokens),
                    _ => found = Some(value),
                }
            }
        }
        found.ok_or(Rejection::MissingToken)
    }
}

fn pattern(path: &str) -> Vec<Segment> {
    path.split('/')
        .skip(1)
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                Segment::Any
            } else {
                Segment::Literal(segment.to_owned())
            }
        })
        .collect()
}

/// Decoded form/query parameters, in order.
#[derive(Debug, Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(bytes: &[u8], into: &mut Self) {
        into.0.extend(
            url::form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }

    fn all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn get<'a>(&'a self, name: &str) -> Option<&'a str> {
        self.all(name).next()
    }
}

/// The query string's parameters, plus a form body's for a POST.
async fn read_params(request: Request<Incoming>) -> Result<Params, Rejection> {
    let mut params = Params::default();
    if let Some(query) = request.uri().query() {
        Params::parse(query.as_bytes(), &mut params);
    }
    match *request.method() {
        // Not HEAD: link scanners and prefetchers send it, and a token is good for one sign-in only.
        Method::GET => {}
        Method::POST => {
            let is_form = request
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.to_ascii_lowercase()
                        .starts_with("application/x-www-form-urlencoded")
                });
            if !is_form {
                return Err(Rejection::BadRequest(
                    "an SSO form POST must be application/x-www-form-urlencoded",
                ));
            }
            let body: Bytes = Limited::new(request.into_body(), MAX_FORM_BYTES)
                .collect()
                .await
                .map_err(|_| {
                    Rejection::BadRequest("the SSO form body is too large or was cut off")
                })?
                .to_bytes();
            Params::parse(&body, &mut params);
        }
        ref other => return Err(Rejection::MethodNotAllowed(other.clone())),
    }
    Ok(params)
}

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, aliases: &[&str]) -> Entry {
        let mut config = EntryConfig {
            path: path.into(),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            profile: Profile::MeltingSpot,
            token_param: "jwt".into(),
            token_aliases: vec!["token".into()],
            return_param: "redirect_uri".into(),
        };
        config.path = path.into();
        Entry {
            patterns: std::iter::once(&config.path)
                .chain(&config.aliases)
                .map(|p| pattern(p))
                .collect(),
            config,
        }
    }

    #[test]
    fn paths_and_aliases_match_whole_segments() {
        let e = entry("/sso/jwt", &["/spot/{spotId}/sso/jwt"]);
        assert!(e.matches("/sso/jwt"));
        assert!(e.matches("/spot/129487c9-6acc/sso/jwt"));
        assert!(!e.matches("/spot//sso/jwt"));
        assert!(!e.matches("/sso/jwt/"));
        assert!(!e.matches("/sso/jwtx"));
        assert!(!e.matches("/spot/a/b/sso/jwt"));
    }

    #[test]
    fn token_aliases_must_agree() {
        let e = entry("/x", &[]);
        let mut params = Params::default();
        Params::parse(b"jwt=a.b.c&token=a.b.c", &mut params);
        assert_eq!(e.token(&params).ok(), Some("a.b.c"));
        let mut params = Params::default();
        Params::parse(b"jwt=a.b.c&token=x.y.z", &mut params);
        assert!(matches!(
            e.token(&params),
            Err(Rejection::ConflictingTokens)
        ));
        let mut params = Params::default();
        Params::parse(b"jwt=&other=1", &mut params);
        assert!(matches!(e.token(&params), Err(Rejection::MissingToken)));
    }
}
