//! The typed identity-header, forum-route and protected-path settings.

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use url::Url;

use super::Ctx;
use super::raw::{RawAssertion, RawIdentity, RawRoutes};
use super::value::{Scalar, parse_duration};

/// What `X-Auth-User` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserId {
    /// The gateway's own stable member id (a UUID): never changes, never reused.
    Id,
    /// The integrator's `sub`.
    Sub,
}

/// Header names for each identity field; `None` turns a header off.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: Option<HeaderName>,
    pub email: Option<HeaderName>,
    pub name: Option<HeaderName>,
    pub first_name: Option<HeaderName>,
    pub last_name: Option<HeaderName>,
    pub title: Option<HeaderName>,
    pub avatar: Option<HeaderName>,
    pub lang: Option<HeaderName>,
    pub timezone: Option<HeaderName>,
    pub groups: Option<HeaderName>,
    /// Custom fields go out as `<prefix><field>`; every client header with this prefix is stripped.
    pub custom_prefix: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub user_id: UserId,
    pub headers: IdentityHeaders,
    pub assertion: Option<AssertionConfig>,
}

#[derive(Clone)]
pub enum AssertionKey {
    Hs256(Vec<u8>),
    /// A P-256 private key, PKCS#8 DER; its public half is published as a JWKS.
    Es256 {
        pkcs8: Vec<u8>,
        path: PathBuf,
    },
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AssertionKey::Hs256(_) => f.write_str("Hs256([redacted])"),
            AssertionKey::Es256 { path, .. } => write!(f, "Es256({})", path.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AssertionConfig {
    pub header: HeaderName,
    pub key: AssertionKey,
    pub ttl: Duration,
    /// Where the gateway publishes the ES256 public key as a JWKS.
    pub jwks_path: String,
}

#[derive(Debug, Clone, Default)]
pub struct RoutesConfig {
    pub login: Vec<String>,
    pub signup: Vec<String>,
    pub logout: Vec<String>,
    pub account_settings: Vec<String>,
    pub authorization_url: Option<Url>,
    pub signup_url: Option<Url>,
    pub logout_url: Option<Url>,
    pub account_settings_url: Option<Url>,
    /// The SSO entry path `redirectUrl` points at (default: the MeltingSpot entry, else the first one).
    pub entry: Option<String>,
}

pub mod defaults {
    pub const USER: &str = "x-auth-user";
    pub const EMAIL: &str = "x-auth-email";
    pub const NAME: &str = "x-auth-name";
    pub const FIRST_NAME: &str = "x-auth-first-name";
    pub const LAST_NAME: &str = "x-auth-last-name";
    pub const TITLE: &str = "x-auth-title";
    pub const AVATAR: &str = "x-auth-avatar";
    pub const LANG: &str = "x-auth-lang";
    pub const TIMEZONE: &str = "x-auth-timezone";
    pub const GROUPS: &str = "x-auth-groups";
    pub const CUSTOM_PREFIX: &str = "x-auth-field-";
    pub const ASSERTION_HEADER: &str = "x-auth-assertion";
    pub const ASSERTION_TTL_SECS: u64 = 60;
    pub const JWKS_PATH: &str = "/.well-known/ssogate/jwks.json";
}

pub(super) fn identity(raw: RawIdentity, ctx: &mut Ctx<'_>) -> IdentityConfig {
    let user_id = ctx
        .opt(raw.user_id.as_ref(), "identity.user_id", |s| match s {
            "id" => Ok(UserId::Id),
            "sub" => Ok(UserId::Sub),
            other => Err(format!(
                "{other:?}: expected id (the gateway's member id) or sub"
            )),
        })
        .unwrap_or(UserId::Id);
    let h = &raw.headers;
    let mut header = |value: &Option<Scalar>, key: &str, default: &str| match value {
        None => HeaderName::from_bytes(default.as_bytes()).ok(),
        Some(value) => ctx
            .leaf(value, &format!("identity.headers.{key}"), parse_header_name)
            .flatten(),
    };
    let headers = IdentityHeaders {
        user: header(&h.user, "user", defaults::USER),
        email: header(&h.email, "email", defaults::EMAIL),
        name: header(&h.name, "name", defaults::NAME),
        first_name: header(&h.first_name, "first_name", defaults::FIRST_NAME),
        last_name: header(&h.last_name, "last_name", defaults::LAST_NAME),
        title: header(&h.title, "title", defaults::TITLE),
        avatar: header(&h.avatar, "avatar", defaults::AVATAR),
        lang: header(&h.lang, "lang", defaults::LANG),
        timezone: header(&h.timezone, "timezone", defaults::TIMEZONE),
        groups: header(&h.groups, "groups", defaults::GROUPS),
        custom_prefix: match &h.custom_prefix {
            None => Some(defaults::CUSTOM_PREFIX.to_owned()),
            Some(value) => ctx
                .leaf(value, "identity.headers.custom_prefix", |s| {
                    if s.is_empty() || s == "off" {
                        Ok(None)
                    } else if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                        Ok(Some(s.to_ascii_lowercase()))
                    } else {
                        Err(format!(
                            "{s:?} is not a header-name prefix (letters, digits and -)"
                        ))
                    }
                })
                .flatten(),
        },
    };
    let assertion = raw.assertion.and_then(|a| assertion(&a, ctx));
    IdentityConfig {
        user_id,
        headers,
        assertion,
    }
}

/// A header name, or `off`/empty to turn the header off.
fn parse_header_name(text: &str) -> Result<Option<HeaderName>, String> {
    if text.is_empty() || text == "off" {
        return Ok(None);
    }
    HeaderName::from_bytes(text.as_bytes())
        .map(Some)
        .map_err(|_| format!("{text:?} is not a valid header name"))
}

fn assertion(raw: &RawAssertion, ctx: &mut Ctx<'_>) -> Option<AssertionConfig> {
    let header = match &raw.header {
        None => HeaderName::from_static(defaults::ASSERTION_HEADER),
        Some(value) => ctx
            .leaf(value, "identity.assertion.header", parse_header_name)
            .flatten()?,
    };
    let algorithm = ctx
        .opt(
            raw.algorithm.as_ref(),
            "identity.assertion.algorithm",
            |s| match s {
                "HS256" | "ES256" => Ok(s.to_owned()),
                other => Err(format!("{other:?}: expected HS256 or ES256")),
            },
        )
        .unwrap_or_else(|| "HS256".to_owned());
    let key = if algorithm == "HS256" {
        let secret = ctx.required(
            raw.secret.as_ref(),
            "identity.assertion.secret",
            super::auth::secret_bytes,
        )?;
        AssertionKey::Hs256(secret)
    } else {
        let path = ctx.required(
            raw.private_key.as_ref(),
            "identity.assertion.private_key",
            |s| Ok(PathBuf::from(s)),
        )?;
        let pkcs8 = match load_p256_pkcs8(&path) {
            Ok(der) => der,
            Err(message) => {
                ctx.error("identity.assertion.private_key", message);
                return None;
            }
        };
        AssertionKey::Es256 { pkcs8, path }
    };
    let ttl = ctx
        .opt(raw.ttl.as_ref(), "identity.assertion.ttl", parse_duration)
        .unwrap_or(Duration::from_secs(defaults::ASSERTION_TTL_SECS));
    if ttl.is_zero() || ttl > Duration::from_secs(3600) {
        ctx.error("identity.assertion.ttl", "must be between 1s and 1h");
    }
    let jwks_path = ctx
        .opt(
            raw.jwks_path.as_ref(),
            "identity.assertion.jwks_path",
            |text| match parse_route(text)? {
                // The gateway answers this path itself: "/" would hide the forum's home page.
                path if path == "/" => {
                    Err("must not be / (the gateway answers this path itself)".to_owned())
                }
                path => Ok(path),
            },
        )
        .unwrap_or_else(|| defaults::JWKS_PATH.to_owned());
    Some(AssertionConfig {
        header,
        key,
        ttl,
        jwks_path,
    })
}

/// Reads a PEM PKCS#8 P-256 private key and checks it can sign.
fn load_p256_pkcs8(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;

    let key = PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{}: no PEM private key: {e}", path.display()))?;
    let PrivateKeyDer::Pkcs8(der) = key else {
        return Err(format!(
            "{}: must be a PKCS#8 key (openssl pkcs8 -topk8 -nocrypt)",
            path.display()
        ));
    };
    let der = der.secret_pkcs8_der().to_vec();
    aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &der,
    )
    .map_err(|_| format!("{}: not a P-256 (prime256v1) key", path.display()))?;
    Ok(der)
}

fn parse_route(text: &str) -> Result<String, String> {
    if !text.starts_with('/') || text.contains(['?', '#', ' ']) {
        return Err(format!(
            "{text:?} must be a path starting with / (no query)"
        ));
    }
    Ok(text.to_owned())
}

fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} must be an http:// or https:// URL"));
    }
    Ok(url)
}

pub(super) fn routes(raw: &RawRoutes, ctx: &mut Ctx<'_>) -> RoutesConfig {
    let mut paths = |list: &Option<Vec<Scalar>>, key: &str, default: &[&str]| -> Vec<String> {
        match list {
            None => default.iter().map(|p| (*p).to_owned()).collect(),
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, item)| ctx.leaf(item, &format!("routes.{key}[{i}]"), parse_route))
                .collect(),
        }
    };
    let login = paths(&raw.login, "login", &["/login"]);
    let signup = paths(&raw.signup, "signup", &["/signup"]);
    let logout = paths(&raw.logout, "logout", &["/logout"]);
    let account_settings = paths(&raw.account_settings, "account_settings", &[]);
    RoutesConfig {
        login,
        signup,
        logout,
        account_settings,
        authorization_url: ctx.opt(
            raw.authorization_url.as_ref(),
            "routes.authorization_url",
            parse_url,
        ),
        signup_url: ctx.opt(raw.signup_url.as_ref(), "routes.signup_url", parse_url),
        logout_url: ctx.opt(raw.logout_url.as_ref(), "routes.logout_url", parse_url),
        account_settings_url: ctx.opt(
            raw.account_settings_url.as_ref(),
            "routes.account_settings_url",
            parse_url,
        ),
        entry: ctx.opt(raw.entry.as_ref(), "routes.entry", parse_route),
    }
}

pub(super) fn protect(raw: Option<&Vec<Scalar>>, ctx: &mut Ctx<'_>) -> Vec<String> {
    raw.into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, item)| ctx.leaf(item, &format!("protect[{i}]"), parse_route))
        .collect()
}
