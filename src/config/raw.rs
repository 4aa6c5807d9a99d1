//! The config file as written: serde structures that mirror the YAML, every leaf a [`Scalar`].
//!
//! `deny_unknown_fields` everywhere, so a misspelt key is an error naming it, never a silently ignored setting.

use serde::Deserialize;

use super::value::Scalar;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub listen: Option<Scalar>,
    pub public_url: Option<Scalar>,
    pub tls: Option<RawTls>,
    pub upstream: Option<RawUpstream>,
    pub trusted_proxies: Option<Vec<Scalar>>,
    pub limits: RawLimits,
    pub log: RawLog,
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
