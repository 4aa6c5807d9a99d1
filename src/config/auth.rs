//! The typed SSO, session, directory and rate-limit settings, and their conversion from the raw file.

use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};

use super::Ctx;
use super::raw::{RawEntry, RawKey, RawRateLimit, RawSession, RawSso};
use super::value::{Scalar, parse_bool, parse_duration};

/// Secrets shorter than this are refused: an HMAC key or cookie key must not be guessable offline.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone)]
pub struct SsoConfig {
    pub keys: Vec<SsoKey>,
    pub entries: Vec<EntryConfig>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// A token older than this (by `iat`), or living longer than this (`exp - iat`), is refused.
    pub max_token_age: Duration,
    pub require_exp: bool,
    /// Accept tokens without `exp`, each usable once, ever (its fingerprint is kept in the directory).
    pub danger_accept_tokens_without_expiry: bool,
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    /// Custom profile field -> token claim names; the first non-empty claim wins.
    pub custom_fields: Vec<(String, Vec<String>)>,
}

/// One verification key; its algorithm is pinned here, never taken from a token.
#[derive(Clone)]
pub struct SsoKey {
    pub id: String,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    /// The HMAC secret (HS* keys only), kept to refuse it as the session secret.
    pub secret: Option<Vec<u8>>,
}

impl fmt::Debug for SsoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsoKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Which platform's claim names and rules an entry route follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Tribe / Bettermode: `sub`, `email`, `name`; the profile is updated on every login.
    Tribe,
    /// MeltingSpot: `sub`, `firstName`, `lastName`, `email`; created once, never updated by a login.
    MeltingSpot,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Tribe => "tribe",
            Profile::MeltingSpot => "meltingspot",
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "tribe" | "bettermode" => Ok(Profile::Tribe),
            "meltingspot" => Ok(Profile::MeltingSpot),
            other => Err(format!(
                "unknown profile {other:?}: expected tribe or meltingspot"
            )),
        }
    }
}

/// One SSO entry route.
#[derive(Debug, Clone)]
pub struct EntryConfig {
    pub path: String,
    /// More paths answering the same way; `{name}` in a segment matches any one non-empty segment.
    pub aliases: Vec<String>,
    pub profile: Profile,
    pub token_param: String,
    /// Other names the token may arrive under; two different tokens in one request are refused.
    pub token_aliases: Vec<String>,
    pub return_param: String,
}

impl EntryConfig {
    fn defaults(profile: Profile) -> Self {
        match profile {
            Profile::Tribe => Self {
                path: "/api/auth/sso".into(),
                aliases: Vec::new(),
                profile,
                token_param: "jwt".into(),
                token_aliases: vec!["token".into()],
                return_param: "redirect_uri".into(),
            },
            Profile::MeltingSpot => Self {
                path: "/sso/jwt".into(),
                aliases: vec!["/spot/{spotId}/sso/jwt".into()],
                profile,
                token_param: "ms_token".into(),
                token_aliases: Vec::new(),
                return_param: "referrerUrl".into(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

#[derive(Clone)]
pub struct SessionConfig {
    pub secret: Vec<u8>,
    /// The name as configured; the `__Host-` prefix is added when the cookie is secure and has no domain.
    pub cookie_name: String,
    pub ttl: Duration,
    pub same_site: SameSite,
    pub partitioned: bool,
    pub secure: bool,
    pub domain: Option<String>,
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("secret", &"[redacted]")
            .field("cookie_name", &self.cookie_name)
            .field("ttl", &self.ttl)
            .field("same_site", &self.same_site)
            .field("partitioned", &self.partitioned)
            .field("secure", &self.secure)
            .field("domain", &self.domain)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// The SQLite file; created (with its folder) and migrated on start.
    pub path: PathBuf,
}

/// `N` events per `per`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
    pub burst: NonZeroU32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub sso_per_ip: Option<Rate>,
    pub sso_per_subject: Option<Rate>,
}

pub mod defaults {
    use std::time::Duration;

    pub const LEEWAY: Duration = Duration::from_secs(30);
    pub const MAX_TOKEN_AGE: Duration = Duration::from_secs(600);
    pub const COOKIE_NAME: &str = "ssogate_session";
    pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
    pub const DIRECTORY_PATH: &str = "data/ssogate.db";
    pub const SSO_PER_IP: &str = "10/s";
    pub const SSO_PER_SUBJECT: &str = "1/s";
}

pub(super) fn sso(raw: RawSso, ctx: &mut Ctx<'_>) -> Option<SsoConfig> {
    let mut keys = Vec::new();
    let raw_keys = raw.keys.unwrap_or_default();
    if raw_keys.is_empty() {
        ctx.error(
            "sso.keys",
            "at least one key is required when the sso section is present",
        );
    }
    for (i, raw_key) in raw_keys.iter().enumerate() {
        if let Some(key) = sso_key(raw_key, &format!("sso.keys[{i}]"), ctx) {
            if keys.iter().any(|k: &SsoKey| k.id == key.id) {
                ctx.error(
                    &format!("sso.keys[{i}].id"),
                    format!("duplicate key id {:?}", key.id),
                );
            }
            keys.push(key);
        }
    }

    let entries = match raw.entries {
        None => vec![
            EntryConfig::defaults(Profile::Tribe),
            EntryConfig::defaults(Profile::MeltingSpot),
        ],
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, entry)| entry_config(entry, &format!("sso.entries[{i}]"), ctx))
            .collect(),
    };
    if entries.is_empty() {
        ctx.error(
            "sso.entries",
            "no entry route: leave the key out for the two defaults, or list at least one",
        );
    }
    let mut seen = std::collections::HashSet::new();
    for entry in &entries {
        for path in std::iter::once(&entry.path).chain(&entry.aliases) {
            if !seen.insert(path.clone()) {
                ctx.error(
                    "sso.entries",
                    format!("path {path:?} is used by two entries"),
                );
            }
        }
    }

    let leeway = ctx.duration(raw.leeway.as_ref(), "sso.leeway", defaults::LEEWAY);
    let max_token_age = ctx.duration(
        raw.max_token_age.as_ref(),
        "sso.max_token_age",
        defaults::MAX_TOKEN_AGE,
    );
    if max_token_age.is_zero() {
        ctx.error("sso.max_token_age", "must be greater than zero");
    }
    let require_exp = ctx
        .opt(raw.require_exp.as_ref(), "sso.require_exp", parse_bool)
        .unwrap_or(true);
    let danger = ctx
        .opt(
            raw.danger_accept_tokens_without_expiry.as_ref(),
            "sso.danger_accept_tokens_without_expiry",
            parse_bool,
        )
        .unwrap_or(false);
    if danger && require_exp {
        ctx.error(
            "sso.danger_accept_tokens_without_expiry",
            "has no effect while sso.require_exp is true: set require_exp: false as well",
        );
    }
    let issuer = ctx.opt(raw.issuer.as_ref(), "sso.issuer", non_empty);
    let audience = raw.audience.as_ref().map(|list| {
        if list.is_empty() {
            ctx.error(
                "sso.audience",
                "an empty list would refuse every token: list the accepted audiences, or remove the key to skip the check",
            );
        }
        list.iter()
            .enumerate()
            .filter_map(|(i, item)| ctx.leaf(item, &format!("sso.audience[{i}]"), non_empty))
            .collect::<Vec<_>>()
    });
    let mut custom_fields = Vec::new();
    for (field, claims) in raw.custom_fields.iter().flatten() {
        let key = format!("sso.custom_fields.{field}");
        if field.is_empty()
            || !field
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        {
            ctx.error(
                &key,
                "a field name is letters, digits, _ and - (it becomes a header name)",
            );
            continue;
        }
        let names: Vec<String> = claims
            .iter()
            .enumerate()
            .filter_map(|(i, claim)| ctx.leaf(claim, &format!("{key}[{i}]"), non_empty))
            .collect();
        if names.is_empty() {
            ctx.error(&key, "list at least one claim name");
        }
        custom_fields.push((field.clone(), names));
    }
    Some(SsoConfig {
        keys,
        entries,
        custom_fields,
        leeway,
        max_token_age,
        require_exp,
        danger_accept_tokens_without_expiry: danger,
        issuer,
        audience,
    })
}

fn non_empty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

fn sso_key(raw: &RawKey, key: &str, ctx: &mut Ctx<'_>) -> Option<SsoKey> {
    let id = ctx.required(raw.id.as_ref(), &format!("{key}.id"), non_empty)?;
    let algorithm = ctx.required(
        raw.algorithm.as_ref(),
        &format!("{key}.algorithm"),
        parse_algorithm,
    )?;
    let symmetric = matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    );
    match (symmetric, &raw.secret, &raw.public_key) {
        (true, Some(secret), None) => {
            let secret = ctx.leaf(secret, &format!("{key}.secret"), secret_bytes)?;
            Some(SsoKey {
                id,
                algorithm,
                key: DecodingKey::from_secret(&secret),
                secret: Some(secret),
            })
        }
        (false, None, Some(path)) => {
            let path_key = format!("{key}.public_key");
            let path = ctx.leaf(path, &path_key, non_empty)?;
            let pem = match std::fs::read(&path) {
                Ok(pem) => pem,
                Err(e) => {
                    ctx.error(&path_key, format!("cannot read {path}: {e}"));
                    return None;
                }
            };
            let decoded = match algorithm {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                _ => DecodingKey::from_rsa_pem(&pem),
            };
            match decoded {
                Ok(decoded) => Some(SsoKey {
                    id,
                    algorithm,
                    key: decoded,
                    secret: None,
                }),
                Err(e) => {
                    ctx.error(
                        &path_key,
                        format!("{path} is not a PEM public key for {algorithm:?}: {e}"),
                    );
                    None
                }
            }
        }
        (true, _, _) => {
            ctx.error(
                &format!("{key}.secret"),
                format!("{algorithm:?} keys take `secret` (and no `public_key`)"),
            );
            None
        }
        (false, _, _) => {
            ctx.error(
                &format!("{key}.public_key"),
                format!("{algorithm:?} keys take `public_key`, a PEM file (and no `secret`)"),
            );
            None
        }
    }
}

/// A JWT algorithm name, as the config and the token header write it.
pub(crate) fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    Ok(match text {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => {
            return Err(format!(
                "unsupported algorithm {other:?}: expected HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA"
            ));
        }
    })
}

/// A secret of at least [`MIN_SECRET_BYTES`] bytes.
pub(super) fn secret_bytes(text: &str) -> Result<Vec<u8>, String> {
    if text.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "too short: {} bytes, at least {MIN_SECRET_BYTES} are required (e.g. `openssl rand -hex 32`)",
            text.len()
        ));
    }
    Ok(text.as_bytes().to_vec())
}

fn entry_config(raw: &RawEntry, key: &str, ctx: &mut Ctx<'_>) -> Option<EntryConfig> {
    let profile = ctx.required(
        raw.profile.as_ref(),
        &format!("{key}.profile"),
        Profile::parse,
    )?;
    let mut entry = EntryConfig::defaults(profile);
    if let Some(path) = ctx.opt(raw.path.as_ref(), &format!("{key}.path"), parse_route) {
        entry.path = path;
    }
    if let Some(aliases) = &raw.aliases {
        entry.aliases = scalars(aliases, &format!("{key}.aliases"), ctx, parse_route);
    }
    if let Some(name) = ctx.opt(
        raw.token_param.as_ref(),
        &format!("{key}.token_param"),
        parse_param,
    ) {
        entry.token_param = name;
    }
    if let Some(aliases) = &raw.token_aliases {
        entry.token_aliases = scalars(aliases, &format!("{key}.token_aliases"), ctx, parse_param);
    }
    if let Some(name) = ctx.opt(
        raw.return_param.as_ref(),
        &format!("{key}.return_param"),
        parse_param,
    ) {
        entry.return_param = name;
    }
    Some(entry)
}

fn scalars(
    list: &[Scalar],
    key: &str,
    ctx: &mut Ctx<'_>,
    parse: fn(&str) -> Result<String, String>,
) -> Vec<String> {
    list.iter()
        .enumerate()
        .filter_map(|(i, item)| ctx.leaf(item, &format!("{key}[{i}]"), parse))
        .collect()
}

fn parse_route(text: &str) -> Result<String, String> {
    if !text.starts_with('/') || text.contains(['?', '#', ' ']) {
        return Err(format!(
            "{text:?} must be a path starting with / (no query)"
        ));
    }
    if text == "/" {
        return Err("an entry route at / would hide the forum's home page".to_owned());
    }
    Ok(text.to_owned())
}

fn parse_param(text: &str) -> Result<String, String> {
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        return Err(format!("{text:?} is not a usable parameter name"));
    }
    Ok(text.to_owned())
}

pub(super) fn session(
    raw: Option<RawSession>,
    https: bool,
    ctx: &mut Ctx<'_>,
) -> Option<SessionConfig> {
    let raw = raw.unwrap_or_default();
    let secret = ctx.required(raw.secret.as_ref(), "session.secret", secret_bytes);
    let cookie_name = ctx
        .opt(raw.cookie_name.as_ref(), "session.cookie_name", |s| {
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
            {
                Err(format!(
                    "{s:?} is not a usable cookie name (letters, digits, _ and -)"
                ))
            } else {
                Ok(s.to_owned())
            }
        })
        .unwrap_or_else(|| defaults::COOKIE_NAME.to_owned());
    let ttl = ctx.duration(raw.ttl.as_ref(), "session.ttl", defaults::SESSION_TTL);
    if ttl.is_zero() {
        ctx.error("session.ttl", "must be greater than zero");
    }
    let same_site = ctx
        .opt(raw.same_site.as_ref(), "session.same_site", |s| {
            match s.to_ascii_lowercase().as_str() {
                "lax" => Ok(SameSite::Lax),
                "strict" => Ok(SameSite::Strict),
                "none" => Ok(SameSite::None),
                _ => Err(format!("{s:?}: expected lax, strict or none")),
            }
        })
        .unwrap_or(SameSite::Lax);
    let partitioned = ctx
        .opt(raw.partitioned.as_ref(), "session.partitioned", parse_bool)
        .unwrap_or(false);
    let secure = ctx
        .opt(raw.secure.as_ref(), "session.secure", |s| match s {
            "auto" => Ok(https),
            other => parse_bool(other),
        })
        .unwrap_or(https);
    let domain = ctx.opt(raw.domain.as_ref(), "session.domain", |s| {
        let host = s.strip_prefix('.').unwrap_or(s);
        let valid = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if valid {
            Ok(s.to_ascii_lowercase())
        } else {
            Err(format!("{s:?} is not a domain name"))
        }
    });
    if same_site == SameSite::None && !secure {
        ctx.error(
            "session.same_site",
            "none requires a secure cookie: browsers drop SameSite=None cookies without Secure (serve https)",
        );
    }
    if partitioned && !secure {
        ctx.error(
            "session.partitioned",
            "partitioned cookies must be secure (serve https)",
        );
    }
    Some(SessionConfig {
        secret: secret?,
        cookie_name,
        ttl,
        same_site,
        partitioned,
        secure,
        domain,
    })
}

pub(super) fn rate_limit(raw: &RawRateLimit, ctx: &mut Ctx<'_>) -> RateLimitConfig {
    let per_ip = raw
        .sso_per_ip
        .clone()
        .unwrap_or_else(|| Scalar(defaults::SSO_PER_IP.to_owned()));
    let per_subject = raw
        .sso_per_subject
        .clone()
        .unwrap_or_else(|| Scalar(defaults::SSO_PER_SUBJECT.to_owned()));
    RateLimitConfig {
        sso_per_ip: ctx
            .leaf(&per_ip, "rate_limit.sso_per_ip", parse_rate)
            .flatten(),
        sso_per_subject: ctx
            .leaf(&per_subject, "rate_limit.sso_per_subject", parse_rate)
            .flatten(),
    }
}

/// `10/s`, `600/m`, `5/h`, optionally `10/s burst 20`; `off` disables the limit.
pub fn parse_rate(text: &str) -> Result<Option<Rate>, String> {
    const HELP: &str = "expected N/s, N/m or N/h, optionally followed by `burst M`, or off";
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let (rate, burst) = match text.split_once("burst") {
        Some((rate, burst)) => (rate.trim(), Some(burst.trim())),
        None => (text.trim(), None),
    };
    let (count, unit) = rate
        .split_once('/')
        .ok_or_else(|| format!("invalid rate {text:?}: {HELP}"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("invalid rate {text:?}: {HELP}"))?;
    let count = NonZeroU32::new(count)
        .ok_or_else(|| format!("invalid rate {text:?}: must be at least 1 (or off)"))?;
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => parse_duration(other).map_err(|_| format!("invalid rate {text:?}: {HELP}"))?,
    };
    if per < Duration::from_millis(1) {
        return Err(format!(
            "invalid rate {text:?}: the period must be at least 1ms"
        ));
    }
    let burst = match burst {
        Some(b) => b
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| format!("invalid burst in {text:?}: {HELP}"))?,
        None => count,
    };
    Ok(Some(Rate { count, per, burst }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let rate = parse_rate("10/s").unwrap().unwrap();
        assert_eq!(
            (rate.count.get(), rate.per, rate.burst.get()),
            (10, Duration::from_secs(1), 10)
        );
        let rate = parse_rate("1/s burst 3").unwrap().unwrap();
        assert_eq!(rate.burst.get(), 3);
        assert_eq!(
            parse_rate("600/m").unwrap().unwrap().per,
            Duration::from_secs(60)
        );
        assert_eq!(parse_rate("off").unwrap(), None);
        for bad in ["0/s", "10", "x/s", "10/fortnight", "10/s burst 0"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
