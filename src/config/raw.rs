//! The config file as written: serde structures that mirror the YAML, every leaf a [`Scalar`].
//!
//! `deny_unknown_fields` everywhere, so a misspelt key is an error naming it, never a silently ignored setting.

use serde::Deserialize;

use super::value::Scalar;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub listen: Option<Scalar>,
    pub workers: Option<Scalar>,
    pub public_url: Option<Scalar>,
    pub tls: Option<RawTls>,
    pub upstream: Option<RawUpstream>,
    pub trusted_proxies: Option<Vec<Scalar>>,
    pub limits: RawLimits,
    pub log: RawLog,
    pub sso: Option<RawSso>,
    pub session: Option<RawSession>,
    pub directory: RawDirectory,
    pub rate_limit: RawRateLimit,
    pub identity: RawIdentity,
    pub routes: RawRoutes,
    pub protect: Option<Vec<Scalar>>,
    pub admin: RawAdmin,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: Option<Scalar>,
    pub token: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdentity {
    pub user_id: Option<Scalar>,
    pub headers: RawIdentityHeaders,
    pub assertion: Option<RawAssertion>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdentityHeaders {
    pub user: Option<Scalar>,
    pub email: Option<Scalar>,
    pub name: Option<Scalar>,
    pub first_name: Option<Scalar>,
    pub last_name: Option<Scalar>,
    pub title: Option<Scalar>,
    pub avatar: Option<Scalar>,
    pub lang: Option<Scalar>,
    pub timezone: Option<Scalar>,
    pub groups: Option<Scalar>,
    pub custom_prefix: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAssertion {
    pub header: Option<Scalar>,
    pub algorithm: Option<Scalar>,
    pub secret: Option<Scalar>,
    pub private_key: Option<Scalar>,
    pub ttl: Option<Scalar>,
    pub jwks_path: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRoutes {
    pub login: Option<Vec<Scalar>>,
    pub signup: Option<Vec<Scalar>>,
    pub logout: Option<Vec<Scalar>>,
    pub account_settings: Option<Vec<Scalar>>,
    pub authorization_url: Option<Scalar>,
    pub signup_url: Option<Scalar>,
    pub logout_url: Option<Scalar>,
    pub account_settings_url: Option<Scalar>,
    pub entry: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSso {
    pub keys: Option<Vec<RawKey>>,
    pub entries: Option<Vec<RawEntry>>,
    pub leeway: Option<Scalar>,
    pub max_token_age: Option<Scalar>,
    pub require_exp: Option<Scalar>,
    pub danger_accept_tokens_without_expiry: Option<Scalar>,
    pub issuer: Option<Scalar>,
    pub audience: Option<Vec<Scalar>>,
    /// Profile field -> the token claims it may come from (Tribe's "external keys").
    pub custom_fields: Option<std::collections::BTreeMap<String, Vec<Scalar>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKey {
    pub id: Option<Scalar>,
    pub algorithm: Option<Scalar>,
    pub secret: Option<Scalar>,
    pub public_key: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEntry {
    pub path: Option<Scalar>,
    pub profile: Option<Scalar>,
    pub aliases: Option<Vec<Scalar>>,
    pub token_param: Option<Scalar>,
    pub token_aliases: Option<Vec<Scalar>>,
    pub return_param: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    pub secret: Option<Scalar>,
    pub cookie_name: Option<Scalar>,
    pub ttl: Option<Scalar>,
    pub same_site: Option<Scalar>,
    pub partitioned: Option<Scalar>,
    pub secure: Option<Scalar>,
    pub domain: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDirectory {
    pub path: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    pub sso_per_ip: Option<Scalar>,
    pub sso_per_subject: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub listen: Option<Scalar>,
    pub cert: Option<Scalar>,
    pub key: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub url: Option<Scalar>,
    pub connect_timeout: Option<Scalar>,
    pub timeout: Option<Scalar>,
    pub preserve_host: Option<Scalar>,
    pub pool_idle_timeout: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub header_read_timeout: Option<Scalar>,
    pub max_header_bytes: Option<Scalar>,
    pub max_connections: Option<Scalar>,
    pub idle_timeout: Option<Scalar>,
    pub shutdown_timeout: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: Option<Scalar>,
}
