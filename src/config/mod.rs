//! Configuration: one YAML file, parsed once into typed values.
//!
//! Loading happens in two passes. yaml_serde turns the text into [`raw::RawConfig`], refusing unknown keys and broken
//! structure with the key path and line. Then [`Config::from_raw`] parses every leaf (durations, addresses, URLs,
//! `${VAR}` references), checks the rules that span keys, and gathers *every* error it finds, each naming its key and,
//! where the file shows it, its line, so `ssogate check-config` can list them all at once. [`schema`] derives the
//! file's JSON Schema from the same raw structures.

pub mod auth;
pub mod forum;
mod raw;
pub mod schema;
mod value;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

use raw::RawConfig;
use value::{Scalar, locate};
pub use value::{expand_env, parse_bool, parse_duration};

/// The validated configuration the gateway runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Plain HTTP listener; `None` when only TLS is served.
    pub listen: Option<SocketAddr>,
    /// Worker threads, each with its own event loop (`auto`: one per CPU).
    pub workers: usize,
    /// How members reach the gateway (scheme, host, optional port); the base of absolute URLs.
    pub public_url: Url,
    pub tls: Option<TlsConfig>,
    pub upstream: UpstreamConfig,
    /// Peers whose `X-Forwarded-*` headers are extended rather than replaced.
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
    pub log: LogConfig,
    /// JWT SSO; `None` when the file has no `sso` section (the gateway then only proxies).
    pub sso: Option<auth::SsoConfig>,
    /// The session cookie; present whenever `sso` is.
    pub session: Option<auth::SessionConfig>,
    pub directory: auth::DirectoryConfig,
    pub rate_limit: auth::RateLimitConfig,
    /// The identity headers sent to the forum (and the optional signed assertion).
    pub identity: forum::IdentityConfig,
    /// The forum's own login, sign-up, logout and account routes.
    pub routes: forum::RoutesConfig,
    /// Path prefixes that need a session.
    pub protect: Vec<String>,
    pub admin: AdminConfig,
}

/// The admin listener: health, readiness and metrics without a token; the member API with one.
#[derive(Clone)]
pub struct AdminConfig {
    /// Whether the listener runs: `admin.listen` or `admin.token` is in the file.
    pub enabled: bool,
    pub listen: SocketAddr,
    pub token: Option<String>,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `http://host:port` of the forum: scheme and authority only.
    pub url: Url,
    /// The authority (`host:port`) requests are sent to, precomputed for the hot path.
    pub authority: http::uri::Authority,
    pub connect_timeout: Duration,
    /// Until the upstream's response head arrives.
    pub timeout: Duration,
    /// Forward the client's `Host` header rather than the upstream's authority.
    pub preserve_host: bool,
    /// How long an idle keep-alive connection to the upstream stays in the pool.
    pub pool_idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// A client that has not sent a whole request head within this is disconnected (also bounds TLS handshakes).
    pub header_read_timeout: Duration,
    /// The largest request head accepted; larger ones get 431.
    pub max_header_bytes: usize,
    /// Connections served at once, both listeners and open WebSocket tunnels together; further ones wait in the
    /// kernel's backlog (and a WebSocket upgrade beyond it gets 503).
    pub max_connections: usize,
    /// An HTTP/2 connection with no new request for this long is closed (HTTP/1.1 keep-alive connections wait at
    /// most `header_read_timeout` for their next request).
    pub idle_timeout: Duration,
    /// On SIGTERM/SIGINT, how long requests in flight may take to finish.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (coloured when stderr is a terminal).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// Defaults, in one place so the example file and the code cannot drift apart unnoticed (a test checks the file).
pub mod defaults {
    use std::time::Duration;

    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
    pub const PRESERVE_HOST: bool = true;
    pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const MAX_HEADER_BYTES: usize = 65_536;
    pub const MAX_CONNECTIONS: usize = 10_000;
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
}

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `upstream.timeout`; empty for problems with the file as a whole.
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key.is_empty(), self.line) {
            (true, _) => write!(f, "{}", self.message),
            (false, Some(line)) => write!(f, "{} (line {line}): {}", self.key, self.message),
            (false, None) => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    /// The file the errors are about, when the config came from a file.
    pub source_name: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        writeln!(
            f,
            "{}: {count} error{}",
            self.source_name,
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.errors {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates the file at `path`, expanding `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            source_name: name.clone(),
            errors: vec![ConfigError {
                key: String::new(),
                line: None,
                message: format!("cannot read {name}: {e}"),
            }],
        })?;
        Self::parse(&text, &name, &|var| std::env::var(var).ok())
    }

    /// Parses YAML text; `env` answers `${VAR}`. Relative file paths stay relative to the working directory, as
    /// with nginx's `-p` prefix or a systemd `WorkingDirectory=`.
    pub fn parse(
        text: &str,
        source_name: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let fail = |errors| ConfigErrors {
            source_name: source_name.to_owned(),
            errors,
        };
        // An empty file is a config with every key at its default (and so an error about the missing upstream).
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            yaml_serde::from_str(text).map_err(|e| fail(vec![yaml_error(&e)]))?
        };
        let mut ctx = Ctx {
            text,
            env,
            errors: Vec::new(),
        };
        let config = Self::from_raw(raw, &mut ctx);
        // In file order, so the list reads top to bottom like the file; errors with no line go last.
        ctx.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        match config {
            Some(config) if ctx.errors.is_empty() => Ok(config),
            _ => Err(fail(ctx.errors)),
        }
    }

    fn from_raw(raw: RawConfig, ctx: &mut Ctx<'_>) -> Option<Config> {
        let listen = ctx.opt(raw.listen.as_ref(), "listen", parse_socket_addr);
        let workers = ctx
            .opt(raw.workers.as_ref(), "workers", |s| match s {
                "auto" => Ok(default_workers()),
                other => parse_in_range(other, 1, 1024),
            })
            .unwrap_or_else(default_workers);

        let tls = raw.tls.map(|tls| {
            let listen = ctx.required(tls.listen.as_ref(), "tls.listen", parse_socket_addr);
            let cert = ctx.required(tls.cert.as_ref(), "tls.cert", |s| Ok(s.to_owned()));
            let key = ctx.required(tls.key.as_ref(), "tls.key", |s| Ok(s.to_owned()));
            (listen, cert.map(PathBuf::from), key.map(PathBuf::from))
        });
        let tls = match tls {
            Some((Some(listen), Some(cert), Some(key))) => Some(TlsConfig { listen, cert, key }),
            _ => None,
        };
        if listen.is_none()
            && tls.is_none()
            && !ctx.has_error_for("listen")
            && !ctx.has_error_for("tls")
        {
            ctx.error(
                "listen",
                "required: set `listen` (plain HTTP) or a `tls` section, or both",
            );
        }

        let upstream = raw.upstream.unwrap_or_default();
        let upstream_url = ctx.required(upstream.url.as_ref(), "upstream.url", parse_upstream_url);
        let connect_timeout = ctx.duration(
            upstream.connect_timeout.as_ref(),
            "upstream.connect_timeout",
            defaults::CONNECT_TIMEOUT,
        );
        let timeout = ctx.duration(
            upstream.timeout.as_ref(),
            "upstream.timeout",
            defaults::UPSTREAM_TIMEOUT,
        );
        let preserve_host = ctx
            .opt(
                upstream.preserve_host.as_ref(),
                "upstream.preserve_host",
                parse_bool,
            )
            .unwrap_or(defaults::PRESERVE_HOST);
        let pool_idle_timeout = ctx.duration(
            upstream.pool_idle_timeout.as_ref(),
            "upstream.pool_idle_timeout",
            defaults::POOL_IDLE_TIMEOUT,
        );

        let public_url = match raw.public_url.as_ref() {
            Some(_) => ctx.opt(raw.public_url.as_ref(), "public_url", parse_public_url),
            // Without a public URL, absolute links point at the first listener: right for a demo, wrong behind a
            // load balancer, which is why the example file sets it.
            None => match (&tls, listen) {
                (Some(tls), _) => Url::parse(&format!("https://{}", tls.listen)).ok(),
                (None, Some(listen)) => Url::parse(&format!("http://{listen}")).ok(),
                (None, None) => None,
            },
        };

        let mut trusted_proxies = Vec::new();
        for (i, item) in raw.trusted_proxies.iter().flatten().enumerate() {
            if let Some(net) = ctx.leaf(item, &format!("trusted_proxies[{i}]"), parse_cidr) {
                trusted_proxies.push(net);
            }
        }

        let limits = raw.limits;
        let header_read_timeout = ctx.duration(
            limits.header_read_timeout.as_ref(),
            "limits.header_read_timeout",
            defaults::HEADER_READ_TIMEOUT,
        );
        let max_header_bytes = ctx
            .opt(
                limits.max_header_bytes.as_ref(),
                "limits.max_header_bytes",
                |s| parse_in_range(s, 1024, 1 << 20),
            )
            .unwrap_or(defaults::MAX_HEADER_BYTES);
        let max_connections = ctx
            .opt(
                limits.max_connections.as_ref(),
                "limits.max_connections",
                |s| parse_in_range(s, 1, 1_000_000),
            )
            .unwrap_or(defaults::MAX_CONNECTIONS);
        let idle_timeout = ctx.duration(
            limits.idle_timeout.as_ref(),
            "limits.idle_timeout",
            defaults::IDLE_TIMEOUT,
        );
        let shutdown_timeout = ctx.duration(
            limits.shutdown_timeout.as_ref(),
            "limits.shutdown_timeout",
            defaults::SHUTDOWN_TIMEOUT,
        );
        for (key, value) in [
            ("upstream.connect_timeout", connect_timeout),
            ("upstream.timeout", timeout),
            ("limits.header_read_timeout", header_read_timeout),
            ("limits.idle_timeout", idle_timeout),
        ] {
            if value.is_zero() {
                ctx.error(key, "must be greater than zero");
            }
        }

        let format = ctx
            .opt(raw.log.format.as_ref(), "log.format", |s| match s {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                other => Err(format!(
                    "unknown log format {other:?}: expected text or json"
                )),
            })
            .unwrap_or(LogFormat::Text);

        let https = public_url.as_ref().is_some_and(|u| u.scheme() == "https");
        let sso = raw.sso.and_then(|sso| auth::sso(sso, ctx));
        let session = match (&sso, raw.session) {
            (Some(sso), session) => {
                let session = auth::session(session, https, ctx);
                if let Some(session) = &session {
                    let reused = sso
                        .keys
                        .iter()
                        .any(|key| key.secret.as_deref() == Some(session.secret.as_slice()));
                    if reused {
                        ctx.error(
                            "session.secret",
                            "must differ from every sso key's secret: the integrator knows those",
                        );
                    }
                }
                session
            }
            (None, Some(_)) => {
                ctx.error("session", "has no effect without an sso section");
                None
            }
            (None, None) => None,
        };
        let directory = auth::DirectoryConfig {
            path: ctx
                .opt(raw.directory.path.as_ref(), "directory.path", |s| {
                    if s.is_empty() {
                        Err("must not be empty".to_owned())
                    } else {
                        Ok(PathBuf::from(s))
                    }
                })
                .unwrap_or_else(|| PathBuf::from(auth::defaults::DIRECTORY_PATH)),
        };
        let rate_limit = auth::rate_limit(&raw.rate_limit, ctx);
        let identity = forum::identity(raw.identity, ctx);
        let routes = forum::routes(&raw.routes, ctx);
        let protect = forum::protect(raw.protect.as_ref(), ctx);
        let admin = AdminConfig {
            enabled: raw.admin.listen.is_some() || raw.admin.token.is_some(),
            listen: ctx
                .opt(raw.admin.listen.as_ref(), "admin.listen", parse_socket_addr)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9090))),
            token: ctx.opt(raw.admin.token.as_ref(), "admin.token", |s| {
                auth::secret_bytes(s).map(|_| s.to_owned())
            }),
        };
        if let (Some(entry), Some(sso)) = (&routes.entry, &sso) {
            if !sso.entries.iter().any(|e| &e.path == entry) {
                let paths: Vec<&str> = sso.entries.iter().map(|e| e.path.as_str()).collect();
                ctx.error(
                    "routes.entry",
                    format!(
                        "{entry:?} is not the path of any sso.entries item ({})",
                        paths.join(", ")
                    ),
                );
            }
        }
        if sso.is_none() && !protect.is_empty() {
            ctx.error(
                "protect",
                "needs an sso section: without SSO nobody could ever have a session",
            );
        }

        let (url, authority) = upstream_url?;
        Some(Config {
            listen,
            workers,
            public_url: public_url?,
            tls,
            upstream: UpstreamConfig {
                url,
                authority,
                connect_timeout,
                timeout,
                preserve_host,
                pool_idle_timeout,
            },
            trusted_proxies,
            limits: Limits {
                header_read_timeout,
                max_header_bytes,
                max_connections,
                idle_timeout,
                shutdown_timeout,
            },
            log: LogConfig { format },
            sso,
            session,
            directory,
            rate_limit,
            identity,
            routes,
            protect,
            admin,
        })
    }
}

/// Conversion state: the source text (for line numbers), the environment, and the errors found so far.
struct Ctx<'a> {
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.to_owned(),
            line: locate(self.text, key),
            message: message.into(),
        });
    }

    fn has_error_for(&self, prefix: &str) -> bool {
        self.errors.iter().any(|e| e.key.starts_with(prefix))
    }

    /// Expands `${VAR}` in one leaf and parses it; on failure records the error and answers `None`.
    fn leaf<T>(
        &mut self,
        value: &Scalar,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let expanded = match expand_env(&value.0, self.env) {
            Ok(text) => text,
            Err(message) => {
                self.error(key, message);
                return None;
            }
        };
        match parse(expanded.trim()) {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                self.error(key, message);
                None
            }
        }
    }

    fn opt<T>(
        &mut self,
        value: Option<&Scalar>,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        value.and_then(|v| self.leaf(v, key, parse))
    }

    fn required<T>(
        &mut self,
        value: Option<&Scalar>,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match value {
            Some(v) => self.leaf(v, key, parse),
            None => {
                self.error(key, "required key is missing");
                None
            }
        }
    }

    fn duration(&mut self, value: Option<&Scalar>, key: &str, default: Duration) -> Duration {
        self.opt(value, key, parse_duration).unwrap_or(default)
    }
}

fn yaml_error(error: &yaml_serde::Error) -> ConfigError {
    // yaml_serde's message reads "key.path: problem at line L column C": lift the key and the line out, so the error
    // reads like every other one (and a log shipper gets them as fields).
    let message = error.to_string();
    let mut key = message
        .split_once(": ")
        .map(|(head, _)| head)
        .filter(|head| !head.contains(' '))
        .unwrap_or("")
        .to_owned();
    let mut message = if key.is_empty() {
        message
    } else {
        message[key.len() + 2..].to_owned()
    };
    let line = error.location().map(|location| location.line());
    if let Some(at) = message.rfind(" at line ") {
        if line.is_some() {
            message.truncate(at);
        }
    }
    // "unknown field `x`": the key is the unknown one itself, under the path yaml_serde named.
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field.to_owned())
    {
        key = if key.is_empty() {
            field
        } else {
            format!("{key}.{field}")
        };
    }
    ConfigError { key, line, message }
}

/// One worker per CPU the process may use.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    SocketAddr::from_str(text).map_err(|_| {
        format!(
            "invalid listen address {text:?}: expected IP:PORT such as 127.0.0.1:8080 or [::1]:8080"
        )
    })
}

fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = IpNet::from_str(text) {
        return Ok(net.trunc());
    }
    std::net::IpAddr::from_str(text)
        .map(IpNet::from)
        .map_err(|_| {
            format!("invalid address or CIDR {text:?}: expected e.g. 10.0.0.0/8 or 192.0.2.7")
        })
}

fn parse_in_range(text: &str, min: usize, max: usize) -> Result<usize, String> {
    let value: usize = text
        .parse()
        .map_err(|_| format!("invalid number {text:?}: expected a whole number"))?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is out of range: expected {min} to {max}"))
    }
}

fn parse_public_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "{text:?} must be an http:// or https:// URL with a host"
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text:?} must be scheme and host only (ssogate serves the forum at the root of its host)"
        ));
    }
    Ok(url)
}

fn parse_upstream_url(text: &str) -> Result<(Url, http::uri::Authority), String> {
    let url = Url::parse(text).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "{text:?}: the upstream is spoken to in plain HTTP/1.1 (http://host:port); put TLS on the gateway's side"
        ));
    }
    let Some(host) = url.host_str() else {
        return Err(format!("{text:?} has no host"));
    };
    if url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(format!(
            "{text:?} must be scheme, host and port only: paths are forwarded unchanged, so the forum must serve its root"
        ));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let authority = http::uri::Authority::from_str(&format!("{host}:{port}"))
        .map_err(|e| format!("{text:?}: invalid authority: {e}"))?;
    Ok((url, authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(text, "test.yaml", &|name| {
            (name == "UPSTREAM").then(|| "http://127.0.0.1:3000".to_owned())
        })
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let config = parse("listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:3000\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.upstream.timeout, defaults::UPSTREAM_TIMEOUT);
        assert_eq!(config.upstream.authority.as_str(), "127.0.0.1:3000");
        assert_eq!(config.public_url.as_str(), "http://127.0.0.1:8080/");
        assert!(config.upstream.preserve_host);
    }

    #[test]
    fn settings_that_could_never_work_are_errors() {
        let keys = |yaml: &str| -> Vec<String> {
            parse(yaml)
                .err()
                .map(|e| e.errors.into_iter().map(|e| e.key).collect())
                .unwrap_or_default()
        };
        let base = "listen: 127.0.0.1:8080\nupstream:\n  url: http://x\nsession:\n  secret: fedcba9876543210fedcba9876543210\n\
sso:\n  keys:\n    - id: a\n      algorithm: HS256\n      secret: 0123456789abcdef0123456789abcdef\n";
        assert_eq!(keys(&format!("{base}  audience: []\n")), ["sso.audience"]);
        assert_eq!(
            keys(&format!("{base}routes:\n  entry: /nowhere\n")),
            ["routes.entry"]
        );
        assert!(parse(&format!("{base}routes:\n  entry: /sso/jwt\n")).is_ok());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err =
            parse("listen: 127.0.0.1:8080\nupstream:\n  url: http://x\n  timeuot: 5s\n").err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("upstream") && text.contains("timeuot") && text.contains("line 4"),
            "{text}"
        );
    }

    #[test]
    fn every_bad_value_is_reported() {
        let err = parse(
            "listen: nowhere\nupstream:\n  url: ${UPSTREAM}\n  timeout: 5x\n  connect_timeout: ${NOPE}\nlimits:\n  max_header_bytes: 12\n",
        )
        .err()
        .map(|e| e.errors)
        .unwrap_or_default();
        let keys: Vec<_> = err.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            keys,
            [
                ("listen", Some(1)),
                ("upstream.timeout", Some(4)),
                ("upstream.connect_timeout", Some(5)),
                ("limits.max_header_bytes", Some(7)),
            ]
        );
        assert!(err[2].message.contains("NOPE is not set"));
    }

    #[test]
    fn upstream_url_must_be_plain_root() {
        for bad in ["https://x", "http://x/forum", "ftp://x", "not a url"] {
            let text = format!("listen: 127.0.0.1:1\nupstream:\n  url: {bad}\n");
            assert!(parse(&text).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn tls_section_gives_the_public_url() {
        let config = parse("tls:\n  listen: 127.0.0.1:8443\n  cert: certs/a.crt\n  key: /abs/a.key\nupstream:\n  url: http://h:1\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let tls = config.tls.unwrap_or_else(|| panic!("tls"));
        assert_eq!(tls.cert, Path::new("certs/a.crt"));
        assert_eq!(tls.key, Path::new("/abs/a.key"));
        assert_eq!(config.public_url.as_str(), "https://127.0.0.1:8443/");
    }

    #[test]
    fn sso_settings_that_cannot_work_are_refused() {
        let base = "listen: 127.0.0.1:1\nupstream:\n  url: http://h:1\n";
        let secret = "s".repeat(40);
        let cases = [
            (
                format!(
                    "sso:\n  keys: [{{id: a, algorithm: HS256, secret: {secret}}}]\n  entries: []\nsession:\n  secret: {}\n",
                    "t".repeat(40)
                ),
                "sso.entries",
            ),
            (
                format!(
                    "sso:\n  keys: [{{id: a, algorithm: HS256, secret: {secret}}}]\nsession:\n  secret: {secret}\n"
                ),
                "session.secret",
            ),
            (
                format!(
                    "sso:\n  keys: [{{id: a, algorithm: HS256, secret: short}}]\nsession:\n  secret: {}\n",
                    "t".repeat(40)
                ),
                "sso.keys[0].secret",
            ),
            (
                format!(
                    "sso:\n  keys: [{{id: a, algorithm: HS256, secret: {secret}}}]\nsession:\n  secret: {}\n  domain: 'a; Secure'\n",
                    "t".repeat(40)
                ),
                "session.domain",
            ),
            (
                format!(
                    "sso:\n  keys: [{{id: a, algorithm: HS256, secret: {secret}}}]\nsession:\n  secret: {}\nrate_limit:\n  sso_per_ip: 10/0s\n",
                    "t".repeat(40)
                ),
                "rate_limit.sso_per_ip",
            ),
            (
                format!(
                    "sso:\n  keys: [{{id: a, algorithm: none, secret: {secret}}}]\nsession:\n  secret: {}\n",
                    "t".repeat(40)
                ),
                "sso.keys[0].algorithm",
            ),
            ("protect: [/private]\n".to_owned(), "protect"),
        ];
        for (extra, key) in cases {
            let errors = parse(&format!("{base}{extra}"))
                .err()
                .map(|e| e.errors)
                .unwrap_or_default();
            assert!(
                errors.iter().any(|e| e.key == key),
                "{key} not reported for {extra}: {errors:?}"
            );
        }
    }
}
