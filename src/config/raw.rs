//! The config file as written: serde structures that mirror the YAML, every leaf a [`Scalar`].
//!
//! `deny_unknown_fields` everywhere, so a misspelt key is an error naming it, never a silently ignored setting.
//!
//! The same structures give the file's JSON Schema (`ssogate config-schema`, see [`super::schema`]): each field's
//! doc comment is its description there, so write it for the operator editing the file. A field whose values the
//! parser restricts (durations, booleans, enums, number ranges) names a schema type from [`super::schema`] with
//! `#[schemars(with = ...)]`; the parser in `config/mod.rs`, `auth.rs` and `forum.rs` stays the authority.

use schemars::JsonSchema;
use serde::Deserialize;

use super::schema;
use super::value::Scalar;

/// ssogate's configuration file (YAML). Unknown keys are errors; any value may use ${VAR} (an environment
/// variable; $$ for a literal $). Check a file with `ssogate check-config PATH`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Config")]
pub struct RawConfig {
    /// Plain-HTTP listener, IP:PORT (no host names; [::]:8080 for all IPv6 addresses, 0.0.0.0:8080 for all IPv4).
    /// HTTP/1.1 only. No default: set `listen`, the `tls` section, or both.
    pub listen: Option<Scalar>,
    /// Worker threads, each with its own event loop and listening sockets: auto (the default, one per CPU) or 1 to
    /// 1024.
    #[schemars(with = "Option<schema::Workers>")]
    pub workers: Option<Scalar>,
    /// How members reach the gateway: scheme, host and optional port only (no path), e.g.
    /// https://forum.example.com. Decides whether the session cookie is Secure (session.secure: auto) and is the
    /// base of absolute URLs. Default: https://<tls.listen> with `tls`, otherwise http://<listen>.
    pub public_url: Option<Scalar>,
    /// HTTPS listener (rustls), offering HTTP/2 and HTTP/1.1 by ALPN. All three keys are required once the section
    /// is present.
    pub tls: Option<RawTls>,
    /// The forum behind the gateway.
    pub upstream: Option<RawUpstream>,
    /// Peers (IP addresses or CIDR ranges) whose X-Forwarded-For/-Proto/-Host and Forwarded headers are believed:
    /// your load balancer or CDN. From anyone else those headers are replaced. Default: none.
    pub trusted_proxies: Option<Vec<Scalar>>,
    /// Bounds on client connections and request heads.
    pub limits: RawLimits,
    /// Log output. The level is set with RUST_LOG (default info), not here.
    pub log: RawLog,
    /// JWT single sign-on. Without this section ssogate is a plain proxy (and `session` and `protect` are errors).
    pub sso: Option<RawSso>,
    /// The session cookie set after a successful sign-in. Required when `sso` is present.
    pub session: Option<RawSession>,
    /// The member directory (only used with `sso`).
    pub directory: RawDirectory,
    /// Rate limits on the SSO entry routes.
    pub rate_limit: RawRateLimit,
    /// Identity headers sent to the forum (only used with `sso`).
    pub identity: RawIdentity,
    /// The forum's own login, sign-up, logout and account-settings routes, answered by the gateway (only used
    /// with `sso`).
    pub routes: RawRoutes,
    /// Path prefixes that need a session, matched on segment boundaries of the canonical path (/private covers
    /// /private and /private/x, not /privateer). Requires `sso`. Default: none.
    pub protect: Option<Vec<Scalar>>,
    /// The admin listener: health, readiness, metrics and the member API.
    pub admin: RawAdmin,
}

/// The admin listener: /healthz, /readyz and /metrics need no token; the member API needs `token`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Admin")]
pub struct RawAdmin {
    /// IP:PORT. Keep it on loopback or a management network. Default 127.0.0.1:9090.
    pub listen: Option<Scalar>,
    /// Bearer token for the member API, at least 32 bytes (openssl rand -hex 32); use ${VAR}. Default: none (no
    /// member API).
    #[schemars(with = "Option<schema::Secret>")]
    pub token: Option<Scalar>,
}

/// Identity to the forum: the headers a request with a valid session carries, after every client-sent copy of
/// them has been stripped.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Identity")]
pub struct RawIdentity {
    /// What X-Auth-User carries: id (default, the gateway's own stable member id) or sub (the integrator's user
    /// id from the token).
    #[schemars(with = "Option<schema::UserId>")]
    pub user_id: Option<Scalar>,
    /// Header names, one per field; off stops sending one.
    pub headers: RawIdentityHeaders,
    /// A signed assertion: a short-lived JWT in one more header restating the identity, so the forum can check
    /// that the headers came from the gateway. Off unless this section is present.
    pub assertion: Option<RawAssertion>,
}

/// Header names for the identity fields. Write off to stop sending one.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "IdentityHeaders")]
pub struct RawIdentityHeaders {
    /// The member (identity.user_id). Default x-auth-user.
    pub user: Option<Scalar>,
    /// E-mail (the token's email). Default x-auth-email.
    pub email: Option<Scalar>,
    /// Display name (Tribe: name; MeltingSpot: "firstName lastName"). Default x-auth-name.
    pub name: Option<Scalar>,
    /// First name (MeltingSpot firstName). Default x-auth-first-name.
    pub first_name: Option<Scalar>,
    /// Last name (MeltingSpot lastName). Default x-auth-last-name.
    pub last_name: Option<Scalar>,
    /// Title (MeltingSpot title), else the Tribe tagline. Default x-auth-title.
    pub title: Option<Scalar>,
    /// Avatar URL (Tribe picture, MeltingSpot avatarUrl). Default x-auth-avatar.
    pub avatar: Option<Scalar>,
    /// Language (MeltingSpot lang: en, fr or de). Default x-auth-lang.
    pub lang: Option<Scalar>,
    /// IANA time zone (MeltingSpot timezone). Default x-auth-timezone.
    pub timezone: Option<Scalar>,
    /// Reserved for space/group membership: stripped from clients, not set yet. Default x-auth-groups.
    pub groups: Option<Scalar>,
    /// Custom fields go out as <prefix><field>; every client header starting with it is stripped. Letters, digits
    /// and -; off to send no custom fields. Default x-auth-field-.
    pub custom_prefix: Option<Scalar>,
}

/// The signed identity assertion (a JWT in one more header).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "IdentityAssertion")]
pub struct RawAssertion {
    /// Header name. Default x-auth-assertion.
    pub header: Option<Scalar>,
    /// HS256 (default: a secret shared with the forum) or ES256 (a P-256 key; the forum needs only the public
    /// JWKS).
    #[schemars(with = "Option<schema::AssertionAlgorithm>")]
    pub algorithm: Option<Scalar>,
    /// HS256 only, required: at least 32 bytes, used as written; use ${VAR}. Never reuse the session secret or an
    /// sso key secret.
    #[schemars(with = "Option<schema::Secret>")]
    pub secret: Option<Scalar>,
    /// ES256 only, required: a PEM PKCS#8 P-256 private key file, read when the config is loaded.
    pub private_key: Option<Scalar>,
    /// Lifetime of each assertion (exp - iat), 1s to 1h. Default 60s.
    #[schemars(with = "Option<schema::Duration>")]
    pub ttl: Option<Scalar>,
    /// ES256 only: where the gateway serves its public key as a JWKS. Default /.well-known/ssogate/jwks.json.
    pub jwks_path: Option<Scalar>,
}

/// The forum's own routes the gateway answers. Paths are matched exactly on the canonical path (no query,
/// trailing slash significant).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Routes")]
pub struct RawRoutes {
    /// Paths that send the member to authorization_url (302) with redirectUrl=<public_url><entry path>; without
    /// authorization_url they pass through to the forum. Default [/login].
    pub login: Option<Vec<Scalar>>,
    /// Same for sign-up, to signup_url. Default [/signup].
    pub signup: Option<Vec<Scalar>>,
    /// Always answered by the gateway: ends the session, clears the cookie and redirects (303) to logout_url,
    /// else /. Default [/logout]; [] for none.
    pub logout: Option<Vec<Scalar>>,
    /// Paths that redirect (302) to account_settings_url; without it they pass through. Default [].
    pub account_settings: Option<Vec<Scalar>>,
    /// The integrator's login page (Tribe/MeltingSpot "authorization URL"); also where a browser hitting a
    /// protected path without a session is sent. Default: none.
    pub authorization_url: Option<Scalar>,
    /// The integrator's sign-up page. Default: none.
    pub signup_url: Option<Scalar>,
    /// Where the member lands after logging out. Default: none (/).
    pub logout_url: Option<Scalar>,
    /// The integrator's account settings page. Default: none.
    pub account_settings_url: Option<Scalar>,
    /// The entry route redirectUrl points at: the `path` of one of sso.entries. Default: the meltingspot entry,
    /// else the first entry.
    pub entry: Option<Scalar>,
}

/// JWT single sign-on: the keys tokens are verified with, the entry routes, and the claim rules.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Sso")]
pub struct RawSso {
    /// Verification keys, at least one. Each pins its algorithm; a token with a `kid` is checked with that key
    /// only, one without with every key of its algorithm, in this order (how to rotate: add the new key, move the
    /// minting site over, remove the old one).
    pub keys: Option<Vec<RawKey>>,
    /// The entry routes. Default: Tribe's /api/auth/sso and MeltingSpot's /sso/jwt; listing any entry replaces
    /// both.
    pub entries: Option<Vec<RawEntry>>,
    /// Clock skew allowed between the minting site and the gateway, on exp, nbf and iat. Default 30s.
    #[schemars(with = "Option<schema::Duration>")]
    pub leeway: Option<Scalar>,
    /// A token issued (iat) longer ago than this, or minted to live longer than this, is refused. Must be > 0.
    /// Default 10m.
    #[schemars(with = "Option<schema::Duration>")]
    pub max_token_age: Option<Scalar>,
    /// Refuse tokens without exp. Default true.
    #[schemars(with = "Option<schema::Bool>")]
    pub require_exp: Option<Scalar>,
    /// Only with require_exp: false: accept tokens without exp, each usable once, ever. Default false.
    #[schemars(with = "Option<schema::Bool>")]
    pub danger_accept_tokens_without_expiry: Option<Scalar>,
    /// When set, the token's iss must equal it. Default: not checked.
    pub issuer: Option<Scalar>,
    /// When set, the token's aud (a string or a list) must name one of these. Default: not checked.
    pub audience: Option<Vec<Scalar>>,
    /// Tribe's "external keys": a custom profile field -> the token claims it may come from; the first present,
    /// non-empty one wins. Default: every claim with no meaning of its own is a custom field.
    #[schemars(extend("propertyNames" = {"pattern": "^[A-Za-z0-9_-]+$"}))]
    pub custom_fields: Option<std::collections::BTreeMap<String, Vec<Scalar>>>,
}

/// One verification key.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "SsoKey")]
pub struct RawKey {
    /// A name for the key: matched against a token's `kid`, and written in the "signed in" log line. Unique.
    pub id: Option<Scalar>,
    /// The algorithm this key verifies (a token's alg header never chooses it). Tribe and MeltingSpot sign with
    /// HS256.
    #[schemars(with = "Option<schema::Algorithm>")]
    pub algorithm: Option<Scalar>,
    /// HS* only: the shared secret, used as written (its bytes), at least 32 bytes; use ${VAR}.
    #[schemars(with = "Option<schema::Secret>")]
    pub secret: Option<Scalar>,
    /// RS*/PS*/ES*/EdDSA only: a PEM public key file, read when the config is loaded.
    pub public_key: Option<Scalar>,
}

/// One entry route. Each key but `profile` defaults to the profile's value.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "SsoEntry")]
pub struct RawEntry {
    /// The path answered (exact match, no trailing slash, no query). Tribe: /api/auth/sso; MeltingSpot: /sso/jwt.
    pub path: Option<Scalar>,
    /// Which claims are read, and the directory's rules: tribe (alias bettermode) or meltingspot. Required.
    #[schemars(with = "Option<schema::Profile>")]
    pub profile: Option<Scalar>,
    /// More paths answered the same way; a {name} segment matches any one non-empty segment. MeltingSpot:
    /// [/spot/{spotId}/sso/jwt].
    pub aliases: Option<Vec<Scalar>>,
    /// The query (or form) parameter carrying the token. Tribe: jwt; MeltingSpot: ms_token.
    pub token_param: Option<Scalar>,
    /// Other names the token may arrive under; two different tokens in one request are refused. Tribe: [token].
    pub token_aliases: Option<Vec<Scalar>>,
    /// The parameter naming where to go after signing in; only a safe root-relative path is followed. Tribe:
    /// redirect_uri; MeltingSpot: referrerUrl.
    pub return_param: Option<Scalar>,
}

/// The session cookie.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Session")]
pub struct RawSession {
    /// Key material for sealing the cookie (AES-256-GCM), at least 32 bytes; use ${VAR}. Changing it signs
    /// everyone out. Must differ from every sso key secret.
    #[schemars(with = "Option<schema::Secret>")]
    pub secret: Option<Scalar>,
    /// Letters, digits, _ and -. With a secure cookie and no domain the browser sees __Host-<name>. Default
    /// ssogate_session.
    pub cookie_name: Option<Scalar>,
    /// How long a session lasts, from sign-in; never extended by activity. Must be > 0. Default 12h.
    #[schemars(with = "Option<schema::Duration>")]
    pub ttl: Option<Scalar>,
    /// lax (default), strict or none (none requires a secure cookie).
    #[schemars(with = "Option<schema::SameSite>")]
    pub same_site: Option<Scalar>,
    /// Partitioned (CHIPS), for a forum embedded in an iframe on another site. Requires a secure cookie. Default
    /// false.
    #[schemars(with = "Option<schema::Bool>")]
    pub partitioned: Option<Scalar>,
    /// true, false, or auto (default): Secure when public_url is https.
    #[schemars(with = "Option<schema::BoolOrAuto>")]
    pub secure: Option<Scalar>,
    /// Domain attribute, to share the cookie with subdomains. Default: none, a host-only cookie.
    pub domain: Option<Scalar>,
}

/// The member directory.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Directory")]
pub struct RawDirectory {
    /// The SQLite file, created with its folder and migrated at start. Relative paths are resolved against the
    /// working directory. Default data/ssogate.db.
    pub path: Option<Scalar>,
}

/// Rate limits on the SSO entry routes: N/s, N/m or N/h, optionally followed by `burst M`, or off.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "RateLimits")]
pub struct RawRateLimit {
    /// Per client address, checked before the token is read. Default 10/s.
    #[schemars(with = "Option<schema::Rate>")]
    pub sso_per_ip: Option<Scalar>,
    /// Per subject (the token's sub), checked after the signature verifies. Default 1/s.
    #[schemars(with = "Option<schema::Rate>")]
    pub sso_per_subject: Option<Scalar>,
}

/// The HTTPS listener.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Tls")]
pub struct RawTls {
    /// IP:PORT for HTTPS.
    pub listen: Option<Scalar>,
    /// PEM certificate chain file, leaf first (Let's Encrypt: fullchain.pem).
    pub cert: Option<Scalar>,
    /// PEM private key file, PKCS#8, PKCS#1 or SEC1 (Let's Encrypt: privkey.pem). Keep it mode 0600.
    pub key: Option<Scalar>,
}

/// The forum behind the gateway.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Upstream")]
pub struct RawUpstream {
    /// The forum: http://host[:port] and nothing else (no path; https:// is refused: TLS ends at the gateway).
    /// Required.
    pub url: Option<Scalar>,
    /// Time allowed to open a TCP connection to the forum; past it the client gets 502. Must be > 0. Default 2s.
    #[schemars(with = "Option<schema::Duration>")]
    pub connect_timeout: Option<Scalar>,
    /// Time until the forum's response head arrives; past it the client gets 504. Bodies then stream with no
    /// limit. Must be > 0. Default 60s.
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Option<Scalar>,
    /// true (default): forward the client's Host; false: send the host:port of upstream.url.
    #[schemars(with = "Option<schema::Bool>")]
    pub preserve_host: Option<Scalar>,
    /// How long an idle keep-alive connection to the forum stays pooled; keep it below the forum's own
    /// keep-alive timeout. Default 90s.
    #[schemars(with = "Option<schema::Duration>")]
    pub pool_idle_timeout: Option<Scalar>,
}

/// Bounds on client connections and request heads.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Limits")]
pub struct RawLimits {
    /// A client must send a complete HTTP/1 request head (and finish the TLS handshake) within this; also closes
    /// idle HTTP/1 keep-alive connections. Must be > 0. Default 10s.
    #[schemars(with = "Option<schema::Duration>")]
    pub header_read_timeout: Option<Scalar>,
    /// Largest request head accepted, in bytes (larger: 431). 1024 to 1048576. Default 65536.
    #[schemars(with = "Option<schema::Int<1024, 1_048_576>>")]
    pub max_header_bytes: Option<Scalar>,
    /// Client connections served at once, both listeners and WebSocket tunnels together. 1 to 1000000. Default
    /// 10000.
    #[schemars(with = "Option<schema::Int<1, 1_000_000>>")]
    pub max_connections: Option<Scalar>,
    /// An HTTP/2 connection that starts no new request for this long is closed. Must be > 0. Default 75s.
    #[schemars(with = "Option<schema::Duration>")]
    pub idle_timeout: Option<Scalar>,
    /// On SIGTERM/SIGINT, how long requests in flight get to finish. Default 30s.
    #[schemars(with = "Option<schema::Duration>")]
    pub shutdown_timeout: Option<Scalar>,
}

/// Log output.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(rename = "Log")]
pub struct RawLog {
    /// text (default): one human-readable line per event. json: one JSON object per line, for log shippers.
    #[schemars(with = "Option<schema::LogFormat>")]
    pub format: Option<Scalar>,
}
