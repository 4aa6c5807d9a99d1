//! `ssogate members ...`: member administration from the command line.
//!
//! Every command is one request to the admin API of a running gateway (see [`crate::admin`] and
//! docs/admin-openapi.yaml), so it works while the gateway serves traffic, and every change takes effect in the
//! gateway at once. The API's address and token come from `--admin-url` and `--token` (or `SSOGATE_ADMIN_TOKEN`);
//! without them, from the `admin` section of the config file (`--config` / `SSOGATE_CONFIG`); else the address is
//! `http://127.0.0.1:9090`. Only the `admin` section of that file is read, so the SSO secrets it may name need not
//! be in this command's environment.
//!
//! Output is human-readable by default (a table for lists, `key: value` lines for one member, RFC 3339 times);
//! `--json` prints the API's JSON unchanged, for scripts. Exit status: 0 on success, 1 when the API refuses or
//! cannot be reached (its error message is printed), 2 on a usage error.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::directory::Status;

/// Where the admin API is when neither `--admin-url` nor a config file says.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9090";

/// Connecting may take this long; the whole exchange [`REQUEST_TIMEOUT`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (1000 members with long custom fields fit many times over).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// User agents are cut to this many characters in the sessions table (`--json` has them whole).
const USER_AGENT_COLUMN: usize = 60;

/// What a path segment must escape: everything but RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'!')
    .add(b'"')
    .add(b'#')
    .add(b'$')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*')
    .add(b'+')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// `ssogate members`: the options every members command shares, and the command.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct MembersArgs {
    /// The admin API's base URL [default: http://<admin.listen> from --config, else http://127.0.0.1:9090].
    #[arg(long, global = true, value_name = "URL")]
    pub admin_url: Option<String>,

    /// The admin token [default: admin.token from --config]. Prefer the environment variable: a command-line
    /// argument is visible to other users in the process list.
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "SSOGATE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Print the API's JSON answer unchanged.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: MembersCommand,
}

/// One members command: one admin API request.
#[derive(Debug, Clone, Subcommand)]
pub enum MembersCommand {
    /// List members, oldest first (GET /admin/members).
    List {
        /// Only the member with this email (any case).
        #[arg(long, value_name = "EMAIL")]
        email: Option<String>,
        /// Only members with this integrator user id.
        #[arg(long, value_name = "SUB")]
        sub: Option<String>,
        /// Only members with this status (active, invited, pending, declined, rejected, deactivated, left).
        #[arg(long, value_name = "STATUS", value_parser = parse_status)]
        status: Option<Status>,
        /// At most this many members (1 to 1000; the API's default is 100).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: Option<i64>,
    },
    /// Show one member (GET /admin/members/ID).
    Show {
        /// The member's gateway id (the UUID in X-Auth-User).
        id: String,
    },
    /// Change a member's status (PUT /admin/members/ID/status). `deactivated` also ends all their sessions and
    /// refuses their sign-ins; any other status than `active` makes their sessions anonymous until they sign in
    /// again.
    SetStatus {
        /// The member's gateway id.
        id: String,
        /// active, invited, pending, declined, rejected, deactivated or left.
        #[arg(value_parser = parse_status)]
        status: Status,
    },
    /// List a member's sessions that have not expired, ended ones included (GET /admin/members/ID/sessions).
    Sessions {
        /// The member's gateway id.
        id: String,
    },
    /// End every session of a member at once (DELETE /admin/members/ID/sessions).
    EndSessions {
        /// The member's gateway id.
        id: String,
    },
    /// End one session at once (DELETE /admin/sessions/SESSION_ID).
    EndSession {
        /// The session's id (from `members sessions`). Ids are base64url, so one may start with `-`.
        #[arg(allow_hyphen_values = true)]
        session_id: String,
    },
    /// Show the audit trail, newest first (GET /admin/audit).
    Audit {
        /// At most this many events (1 to 1000; the API's default is 100).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: Option<i64>,
    },
}

const EXAMPLES: &str = "\
Examples:
  export SSOGATE_ADMIN_TOKEN=...                       the admin.token of the running gateway
  ssogate members list --email ada@example.com
  ssogate members list --status deactivated --json
  ssogate members set-status 0b6f...-...-... deactivated
  ssogate members end-sessions 0b6f...-...-...
  ssogate -c /etc/ssogate/ssogate.yaml members audit   address and token from the config's admin section";

fn parse_status(text: &str) -> Result<Status, String> {
    Status::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        format!(
            "unknown status {text:?}: expected one of {}",
            names.join(", ")
        )
    })
}

/// Why a members command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The command line or the config file cannot work (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The API answered with an error (exit 1).
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the admin API at {url} did not answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error("unexpected answer from {url} (HTTP {status}): {reason}")]
    BadResponse {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl CliError {
    /// The process exit status for this failure: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Runs a members command, prints its output (or the error, on stderr) and gives the exit status.
pub fn run(args: MembersArgs, config: Option<&Path>) -> ExitCode {
    match execute(args, config) {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a panic or a message.
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ssogate members: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Runs a members command and returns what it prints.
pub fn execute(args: MembersArgs, config: Option<&Path>) -> Result<String, CliError> {
    let target = Target::resolve(args.admin_url, args.token, config)?;
    let call = Call::of(&args.command);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let answer = runtime.block_on(target.send(&call))?;
    if args.json {
        let mut text = String::from_utf8_lossy(&answer.body).into_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        return Ok(text);
    }
    render(&args.command, &answer)
}

/// The admin API to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Scheme, authority and optional path prefix, without a trailing slash.
    pub base: String,
    pub token: String,
}

impl Target {
    /// `--admin-url` and `--token` (or `SSOGATE_ADMIN_TOKEN`), else the config file's `admin` section, else the
    /// default address (the token has no default).
    pub fn resolve(
        admin_url: Option<String>,
        token: Option<String>,
        config: Option<&Path>,
    ) -> Result<Self, CliError> {
        let token = token.filter(|t| !t.is_empty());
        let file = match (&admin_url, &token, config) {
            (Some(_), Some(_), _) | (_, _, None) => FileAdmin::default(),
            (_, _, Some(path)) => FileAdmin::load(path, &|name| std::env::var(name).ok())?,
        };
        let base = match (admin_url, file.listen) {
            (Some(url), _) => url,
            (None, Some(listen)) => format!("http://{}", connectable(listen)),
            (None, None) => DEFAULT_ADMIN_URL.to_owned(),
        };
        let base = check_base(&base)?;
        let Some(token) = token.or(file.token) else {
            return Err(CliError::Usage(
                "no admin token: pass --token, set SSOGATE_ADMIN_TOKEN, or name a config file with admin.token \
                 (--config / SSOGATE_CONFIG)"
                    .to_owned(),
            ));
        };
        Ok(Self { base, token })
    }

    async fn send(&self, call: &Call) -> Result<Answer, CliError> {
        let url = format!("{}{}", self.base, call.path);
        let uri: Uri = url
            .parse()
            .map_err(|e| CliError::Usage(format!("invalid admin URL {url:?}: {e}")))?;
        let authorization =
            HeaderValue::from_str(&format!("Bearer {}", self.token)).map_err(|_| {
                CliError::Usage("the admin token has characters a header cannot carry".to_owned())
            })?;
        let body = call.body.as_ref().map(Value::to_string).unwrap_or_default();
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(uri)
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json");
        if call.body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CliError::Usage(format!("cannot build the request for {url}: {e}")))?;

        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(connector);
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| CliError::Unreachable {
                    url: url.clone(),
                    reason: error_chain(&e),
                })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| CliError::BadResponse {
                    url: url.clone(),
                    status: status.as_u16(),
                    reason: format!("cannot read the body: {e}"),
                })?
                .to_bytes();
            Ok::<_, CliError>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| CliError::Timeout {
                url: url.clone(),
                seconds: REQUEST_TIMEOUT.as_secs(),
            })??;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            return Err(api_error(&url, status, json.as_ref(), &body));
        }
        let Some(json) = json else {
            return Err(CliError::BadResponse {
                url,
                status: status.as_u16(),
                reason: "the body is not JSON".to_owned(),
            });
        };
        Ok(Answer { url, body, json })
    }
}

/// The API's `{"error", "message"}`, or what can be said about an answer that is not one.
fn api_error(url: &str, status: StatusCode, json: Option<&Value>, body: &[u8]) -> CliError {
    let field = |name: &str| json.and_then(|j| j.get(name)).and_then(Value::as_str);
    match (field("error"), field("message")) {
        (Some(code), Some(message)) => CliError::Api {
            status: status.as_u16(),
            code: clean(code),
            message: clean(message),
        },
        _ => {
            let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
            CliError::BadResponse {
                url: url.to_owned(),
                status: status.as_u16(),
                reason: if text.trim().is_empty() {
                    "empty body".to_owned()
                } else {
                    clean(text.trim())
                },
            }
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// Checks `--admin-url`: `http://host[:port][/prefix]`; returns it without a trailing slash.
fn check_base(text: &str) -> Result<String, CliError> {
    let url = url::Url::parse(text)
        .map_err(|e| CliError::Usage(format!("invalid admin URL {text:?}: {e}")))?;
    if url.scheme() != "http" {
        return Err(CliError::Usage(format!(
            "invalid admin URL {text:?}: the admin API speaks plain http:// (keep it on a private address)"
        )));
    }
    if url.host().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(CliError::Usage(format!(
            "invalid admin URL {text:?}: expected http://HOST[:PORT], e.g. {DEFAULT_ADMIN_URL}"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A listen address as something to connect to: an unspecified address (all interfaces) becomes loopback.
fn connectable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// The `admin` section of a config file: all this command needs from it.
#[derive(Debug, Default, PartialEq, Eq)]
struct FileAdmin {
    listen: Option<SocketAddr>,
    token: Option<String>,
}

#[derive(Deserialize)]
struct FileTop {
    #[serde(default)]
    admin: Option<FileSection>,
}

#[derive(Deserialize)]
struct FileSection {
    #[serde(default)]
    listen: Option<yaml_serde::Value>,
    #[serde(default)]
    token: Option<yaml_serde::Value>,
}

impl FileAdmin {
    fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, CliError> {
        let name = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read the config file {name}: {e}")))?;
        Self::parse(&text, env).map_err(|message| CliError::Usage(format!("{name}: {message}")))
    }

    fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let top: FileTop = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
        let Some(section) = top.admin else {
            return Ok(Self::default());
        };
        let leaf =
            |value: Option<yaml_serde::Value>, key: &str| -> Result<Option<String>, String> {
                let text = match value {
                    None | Some(yaml_serde::Value::Null) => return Ok(None),
                    Some(yaml_serde::Value::String(text)) => text,
                    Some(yaml_serde::Value::Number(number)) => number.to_string(),
                    Some(yaml_serde::Value::Bool(flag)) => flag.to_string(),
                    Some(_) => return Err(format!("{key}: expected a single value")),
                };
                crate::config::expand_env(&text, env)
                    .map(|text| Some(text.trim().to_owned()))
                    .map_err(|message| format!("{key}: {message}"))
            };
        let listen = match leaf(section.listen, "admin.listen")? {
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                format!("admin.listen: invalid address {text:?}: expected IP:PORT such as 127.0.0.1:9090")
            })?),
            None => None,
        };
        let token = leaf(section.token, "admin.token")?.filter(|t| !t.is_empty());
        Ok(Self { listen, token })
    }
}

/// One request to the API.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    method: Method,
    /// Path and query, segments percent-encoded.
    path: String,
    body: Option<Value>,
}

impl Call {
    fn of(command: &MembersCommand) -> Self {
        let get = |path: String| Self {
            method: Method::GET,
            path,
            body: None,
        };
        let delete = |path: String| Self {
            method: Method::DELETE,
            path,
            body: None,
        };
        match command {
            MembersCommand::List {
                email,
                sub,
                status,
                limit,
            } => {
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                if let Some(email) = email {
                    query.append_pair("email", email);
                }
                if let Some(sub) = sub {
                    query.append_pair("sub", sub);
                }
                if let Some(status) = status {
                    query.append_pair("status", status.as_str());
                }
                if let Some(limit) = limit {
                    query.append_pair("limit", &limit.to_string());
                }
                get(with_query("/admin/members", &query.finish()))
            }
            MembersCommand::Show { id } => get(format!("/admin/members/{}", segment(id))),
            MembersCommand::SetStatus { id, status } => Self {
                method: Method::PUT,
                path: format!("/admin/members/{}/status", segment(id)),
                body: Some(serde_json::json!({ "status": status.as_str() })),
            },
            MembersCommand::Sessions { id } => {
                get(format!("/admin/members/{}/sessions", segment(id)))
            }
            MembersCommand::EndSessions { id } => {
                delete(format!("/admin/members/{}/sessions", segment(id)))
            }
            MembersCommand::EndSession { session_id } => {
                delete(format!("/admin/sessions/{}", segment(session_id)))
            }
            MembersCommand::Audit { limit } => {
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                if let Some(limit) = limit {
                    query.append_pair("limit", &limit.to_string());
                }
                get(with_query("/admin/audit", &query.finish()))
            }
        }
    }
}

fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// A successful answer: its raw body (for `--json`) and the parsed JSON.
#[derive(Debug)]
struct Answer {
    url: String,
    body: Bytes,
    json: Value,
}

/// A member as the API shows it.
#[derive(Debug, Deserialize)]
struct MemberView {
    id: String,
    sub: String,
    email: String,
    name: String,
    first_name: Option<String>,
    last_name: Option<String>,
    tagline: Option<String>,
    title: Option<String>,
    picture: Option<String>,
    lang: Option<String>,
    timezone: Option<String>,
    #[serde(default)]
    custom: Map<String, Value>,
    status: String,
    profile: String,
    #[serde(default)]
    spaces: Vec<SpaceView>,
    created_at: i64,
    updated_at: i64,
    last_login_at: i64,
    login_count: i64,
}

#[derive(Debug, Deserialize)]
struct SpaceView {
    space_id: String,
    role: String,
}

#[derive(Debug, Deserialize)]
struct SessionView {
    id: String,
    issued_at: i64,
    expires_at: i64,
    address: Option<String>,
    user_agent: Option<String>,
    revoked: bool,
}

#[derive(Debug, Deserialize)]
struct EventView {
    at: i64,
    actor: String,
    action: String,
    member_id: Option<String>,
    #[serde(default)]
    detail: Value,
    address: Option<String>,
}

#[derive(Deserialize)]
struct MembersList {
    members: Vec<MemberView>,
}

#[derive(Deserialize)]
struct SessionsList {
    sessions: Vec<SessionView>,
}

#[derive(Deserialize)]
struct EventsList {
    events: Vec<EventView>,
}

#[derive(Deserialize)]
struct Ended {
    ended: u64,
}

/// The human-readable output of a successful command.
fn render(command: &MembersCommand, answer: &Answer) -> Result<String, CliError> {
    let shape = |e: serde_json::Error| CliError::BadResponse {
        url: answer.url.clone(),
        status: 200,
        reason: format!("unexpected JSON: {e}"),
    };
    let json = answer.json.clone();
    Ok(match command {
        MembersCommand::List { .. } => {
            let list: MembersList = serde_json::from_value(json).map_err(shape)?;
            members_table(&list.members)
        }
        MembersCommand::Show { .. } => {
            let member: MemberView = serde_json::from_value(json).map_err(shape)?;
            member_lines(&member)
        }
        MembersCommand::SetStatus { .. } => {
            let member: MemberView = serde_json::from_value(json).map_err(shape)?;
            format!(
                "member {}: status is now {}\n",
                clean(&member.id),
                clean(&member.status)
            )
        }
        MembersCommand::Sessions { .. } => {
            let list: SessionsList = serde_json::from_value(json).map_err(shape)?;
            sessions_table(&list.sessions)
        }
        MembersCommand::EndSessions { id } => {
            let ended: Ended = serde_json::from_value(json).map_err(shape)?;
            format!(
                "ended {} session{} of member {}\n",
                ended.ended,
                if ended.ended == 1 { "" } else { "s" },
                clean(id)
            )
        }
        MembersCommand::EndSession { session_id } => {
            let _: Ended = serde_json::from_value(json).map_err(shape)?;
            format!("ended session {}\n", clean(session_id))
        }
        MembersCommand::Audit { .. } => {
            let list: EventsList = serde_json::from_value(json).map_err(shape)?;
            audit_lines(&list.events)
        }
    })
}

fn members_table(members: &[MemberView]) -> String {
    if members.is_empty() {
        return "no members\n".to_owned();
    }
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                clean(&m.id),
                clean(&m.sub),
                clean(&m.email),
                clean(&m.name),
                clean(&m.status),
                spaces(&m.spaces),
            ]
        })
        .collect();
    table(&["ID", "SUB", "EMAIL", "NAME", "STATUS", "SPACES"], &rows)
}

fn member_lines(member: &MemberView) -> String {
    let optional = |value: &Option<String>| value.as_deref().map_or_else(|| "-".to_owned(), clean);
    let custom = if member.custom.is_empty() {
        "-".to_owned()
    } else {
        clean(&Value::Object(member.custom.clone()).to_string())
    };
    let pairs: [(&str, String); 19] = [
        ("id", clean(&member.id)),
        ("sub", clean(&member.sub)),
        ("email", clean(&member.email)),
        ("name", clean(&member.name)),
        ("first_name", optional(&member.first_name)),
        ("last_name", optional(&member.last_name)),
        ("tagline", optional(&member.tagline)),
        ("title", optional(&member.title)),
        ("picture", optional(&member.picture)),
        ("lang", optional(&member.lang)),
        ("timezone", optional(&member.timezone)),
        ("custom", custom),
        ("status", clean(&member.status)),
        ("profile", clean(&member.profile)),
        ("spaces", spaces(&member.spaces)),
        ("created_at", time(member.created_at)),
        ("updated_at", time(member.updated_at)),
        ("last_login_at", time(member.last_login_at)),
        ("login_count", member.login_count.to_string()),
    ];
    let width = pairs.iter().map(|(key, _)| key.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (key, value) in pairs {
        let _ = writeln!(out, "{:<width$} {value}", format!("{key}:"));
    }
    out
}

fn sessions_table(sessions: &[SessionView]) -> String {
    if sessions.is_empty() {
        return "no sessions\n".to_owned();
    }
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                clean(&s.id),
                time(s.issued_at),
                time(s.expires_at),
                s.address.as_deref().map_or_else(|| "-".to_owned(), clean),
                s.user_agent
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), |ua| cut(&clean(ua), USER_AGENT_COLUMN)),
                if s.revoked { "ended" } else { "live" }.to_owned(),
            ]
        })
        .collect();
    table(
        &["ID", "ISSUED", "EXPIRES", "ADDRESS", "USER AGENT", "STATE"],
        &rows,
    )
}

fn audit_lines(events: &[EventView]) -> String {
    if events.is_empty() {
        return "no events\n".to_owned();
    }
    let mut out = String::new();
    for event in events {
        let detail = match &event.detail {
            Value::Null => String::new(),
            Value::Object(map) if map.is_empty() => String::new(),
            other => format!(" {}", clean(&other.to_string())),
        };
        let _ = writeln!(
            out,
            "{}  {:<6} {:<16} member={} address={}{detail}",
            time(event.at),
            clean(&event.actor),
            clean(&event.action),
            event
                .member_id
                .as_deref()
                .map_or_else(|| "-".to_owned(), clean),
            event
                .address
                .as_deref()
                .map_or_else(|| "-".to_owned(), clean),
        );
    }
    out
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (index, cell) in cells.enumerate() {
            if index > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if index + 1 < widths.len() {
                let pad = widths[index].saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn spaces(spaces: &[SpaceView]) -> String {
    if spaces.is_empty() {
        return "-".to_owned();
    }
    spaces
        .iter()
        .map(|s| format!("{} ({})", clean(&s.space_id), clean(&s.role)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Unix seconds as RFC 3339 (UTC); the number itself when out of range.
fn time(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

/// Member data comes from integrators' tokens: control characters (a newline, a terminal escape) are shown
/// escaped, never sent to the terminal.
fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_session_id_may_start_with_a_hyphen() {
        use clap::Parser;

        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            command: MembersCommand,
        }
        let parsed = Cli::try_parse_from(["members", "end-session", "-gAbC_d"]);
        assert!(
            matches!(parsed, Ok(Cli { command: MembersCommand::EndSession { ref session_id } }) if session_id == "-gAbC_d"),
            "a base64url session id starting with - must be taken as the id"
        );
    }

    use super::*;

    #[test]
    fn the_config_file_gives_address_and_token() {
        let env = |name: &str| (name == "ADMIN_TOKEN").then(|| "t".repeat(40));
        let text = "listen: 127.0.0.1:8080\nsso:\n  keys: []\nadmin:\n  listen: 0.0.0.0:9191\n  token: ${ADMIN_TOKEN}\n";
        let admin = FileAdmin::parse(text, &env).unwrap();
        assert_eq!(admin.listen, Some(SocketAddr::from(([0, 0, 0, 0], 9191))));
        assert_eq!(admin.token, Some("t".repeat(40)));
        assert_eq!(
            connectable(SocketAddr::from(([0, 0, 0, 0], 9191))).to_string(),
            "127.0.0.1:9191"
        );
        assert_eq!(
            FileAdmin::parse("listen: 1.2.3.4:1\n", &env).unwrap(),
            FileAdmin::default()
        );
        assert!(FileAdmin::parse("admin:\n  listen: nowhere\n", &env).is_err());
        assert!(FileAdmin::parse("admin:\n  token: ${MISSING}\n", &env).is_err());
    }

    #[test]
    fn explicit_options_win_and_a_token_is_required() {
        let target = Target::resolve(
            Some("http://127.0.0.1:1/".into()),
            Some("secret".into()),
            None,
        )
        .unwrap();
        assert_eq!(target.base, "http://127.0.0.1:1");
        let default = Target::resolve(None, Some("secret".into()), None).unwrap();
        assert_eq!(default.base, DEFAULT_ADMIN_URL);
        let missing = Target::resolve(None, None, None).unwrap_err();
        assert_eq!(missing.exit_code(), 2);
        for bad in [
            "https://127.0.0.1:1",
            "127.0.0.1:1",
            "http://u:p@h:1",
            "http://h:1/?x=1",
        ] {
            assert!(
                Target::resolve(Some(bad.into()), Some("t".into()), None).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn requests_encode_ids_and_filters() {
        let call = Call::of(&MembersCommand::List {
            email: Some("ada+x@example.com".into()),
            sub: None,
            status: Some(Status::Left),
            limit: Some(5),
        });
        assert_eq!(
            call.path,
            "/admin/members?email=ada%2Bx%40example.com&status=left&limit=5"
        );
        let call = Call::of(&MembersCommand::Show { id: "a/b c".into() });
        assert_eq!(call.path, "/admin/members/a%2Fb%20c");
        let call = Call::of(&MembersCommand::SetStatus {
            id: "m".into(),
            status: Status::Deactivated,
        });
        assert_eq!(call.method, Method::PUT);
        assert_eq!(
            call.body,
            Some(serde_json::json!({"status": "deactivated"}))
        );
    }

    #[test]
    fn tables_align_and_escape_control_characters() {
        let text = table(
            &["ID", "NAME", "STATUS"],
            &[
                vec!["1".into(), clean("Ada\r\nX-Auth: x"), "active".into()],
                vec!["22".into(), "Zoë".into(), "left".into()],
            ],
        );
        assert_eq!(
            text,
            "ID  NAME              STATUS\n1   Ada\\r\\nX-Auth: x  active\n22  Zoë               left\n"
        );
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
