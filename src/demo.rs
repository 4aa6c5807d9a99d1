//! `ssogate demo`: the whole SSO flow on one machine in a minute, with no config file and no other software.
//!
//! One process runs three parts:
//!
//! - the gateway, started with [`crate::start`] from a config built in memory: an embedded YAML template
//!   (`src/demo.yaml`) whose `${DEMO_*}` values are filled in here, with a random HS256 key and session secret (printed
//!   nowhere) and the member directory in a fresh temporary directory, removed when the demo stops;
//! - a demo forum, the gateway's upstream, on a loopback port of its own: its page shows who the forum thinks you are,
//!   from the identity headers the gateway sent;
//! - a demo "integrator", the site that mints tokens (a member's main site, in production), served by the same small
//!   server under `/demo/integrator/`. The gateway's login, sign-up and logout routes point at its pages.
//!
//! So in a browser: forum -> "sign in" -> the gateway's login route -> integrator page -> a token -> the gateway's SSO
//! entry -> a session -> the forum shows you. The banner also prints a ready sign-in link with a token of its own.
//! Since the key exists only in this process, a token the demo minted is the one way in, which is the point shown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::body::Body;
use crate::config::auth::Profile;
use crate::config::{Config, ConfigErrors, LogFormat};
use crate::reject::escape_html as escape;
use crate::server::{Running, StartError};

/// The config template; every `${DEMO_*}` in it is answered by [`Demo::start`].
const TEMPLATE: &str = include_str!("demo.yaml");
/// How long the banner's sign-in link works (the template's `sso.max_token_age` allows exactly this).
const BANNER_TOKEN_LIFETIME: u64 = 600;
/// What the integrator pages mint: the lifetime the platforms' docs recommend.
const PAGE_TOKEN_LIFETIME: u64 = 60;
/// Random bytes in each secret (hex-encoded, so the gateway sees twice as many characters).
const SECRET_BYTES: usize = 32;
/// The largest sign-in form the integrator reads.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// With `--listen` on port 0, how many free ports to try when another program takes the one found first.
const PORT_ATTEMPTS: usize = 5;
/// How long the demo forum waits for its connections to finish at exit.
const FORUM_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

const INTEGRATOR_LOGIN: &str = "/demo/integrator/login";
const INTEGRATOR_SIGNUP: &str = "/demo/integrator/signup";
const INTEGRATOR_SIGN_IN: &str = "/demo/integrator/sign-in";
const INTEGRATOR_SIGNED_OUT: &str = "/demo/integrator/signed-out";

/// The members the integrator's page offers with one click; the last shows that non-ASCII names arrive intact.
const PRESETS: [(&str, &str); 3] = [
    ("Ada Lovelace", "ada@example.com"),
    ("Grace Hopper", "grace@example.com"),
    ("Zoë Ñúñez", "zoe@example.com"),
];

/// Characters percent-encoded in a query value we build; `/` stays, so `redirect_uri=/` reads as the docs show it.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `ssogate demo` options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the gateway listens; port 0 picks a free port (the banner prints the real address).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The operating system's random source failed, so there is no key to sign with.
    #[error("cannot make random secrets: the system's random source failed")]
    Random,
    /// The temporary directory for the member directory could not be made.
    #[error("cannot create a temporary directory in {}: {source}", .dir.display())]
    TempDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The demo forum's loopback listener could not be bound.
    #[error("cannot listen for the demo forum on 127.0.0.1: {0}")]
    ForumListen(std::io::Error),
    /// No free port was found for `--listen ...:0`.
    #[error("cannot find a free port on {addr}: {source}")]
    FreePort {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The built-in template did not validate: a bug in ssogate, never the user's doing.
    #[error("the built-in demo config was refused (a bug in ssogate): {0}")]
    Config(#[from] ConfigErrors),
    /// The built-in template has no Tribe entry for the integrator to send members to: a bug in ssogate.
    #[error("the built-in demo config has no tribe entry (a bug in ssogate)")]
    NoTribeEntry,
    /// The gateway did not start (most often: the --listen address is taken).
    #[error(transparent)]
    Start(#[from] StartError),
    /// A token could not be signed.
    #[error("cannot sign a demo token: {0}")]
    Mint(#[from] jsonwebtoken::errors::Error),
}

/// Runs the demo until SIGINT or SIGTERM: the banner on stdout, logs on stderr. Exit 0 after a clean stop.
pub fn run(args: &DemoArgs) -> ExitCode {
    let log = crate::logging::init(LogFormat::Text);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ssogate demo: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        tokio::spawn(crate::logging::flush_periodically(log.clone()));
        let demo = match Demo::start(args.listen).await {
            Ok(demo) => demo,
            Err(error) => {
                tracing::error!(error = %error, "the demo cannot start");
                eprintln!("ssogate demo: {error}");
                if matches!(error, DemoError::Start(StartError::Bind { .. })) {
                    eprintln!(
                        "ssogate demo: try another address; --listen 127.0.0.1:0 picks a free port"
                    );
                }
                return ExitCode::FAILURE;
            }
        };
        let banner = match demo.banner() {
            Ok(banner) => banner,
            Err(error) => {
                eprintln!("ssogate demo: {error}");
                demo.shutdown_token().cancel();
                demo.serve_until_stopped().await;
                return ExitCode::FAILURE;
            }
        };
        // Flushed at once: whoever reads stdout (a person, a test, a pipe) needs the link now, not at exit.
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(banner.as_bytes());
        let _ = stdout.flush();
        drop(stdout);

        let token = demo.shutdown_token();
        let temp = demo.temp_dir().to_owned();
        tokio::spawn(async move {
            crate::server::stop_signal().await;
            token.cancel();
            crate::server::stop_signal().await;
            // Asked twice: leave now, but not without the members' database of a demo nobody will run again.
            tracing::warn!("second stop signal: exiting without waiting for requests in flight");
            let _ = std::fs::remove_dir_all(&temp);
            std::process::exit(1);
        });
        demo.serve_until_stopped().await;
        ExitCode::SUCCESS
    });
    log.flush();
    code
}

/// A running demo: the gateway, the demo forum and integrator, and the temporary directory they use.
#[derive(Debug)]
pub struct Demo {
    gateway: Running,
    forum: ForumServer,
    site: Arc<Site>,
    /// Dropped last (see [`Demo::serve_until_stopped`]), which removes it.
    temp: TempDir,
}

impl Demo {
    /// Makes the secrets and the temporary directory, starts the demo forum on 127.0.0.1:0 and the gateway on
    /// `listen`. Returns once both listen.
    pub async fn start(listen: SocketAddr) -> Result<Demo, DemoError> {
        let sso_secret = Secret::random()?;
        let session_secret = Secret::random()?;
        let temp = TempDir::create()?;
        let forum_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(DemoError::ForumListen)?;
        let forum_addr = forum_listener
            .local_addr()
            .map_err(DemoError::ForumListen)?;

        // The gateway's public URL must carry its real port (it is in every redirect the gateway builds), so with
        // port 0 a free port is found first; if another program takes it before the gateway binds it, try again.
        let mut attempt = 1;
        let (config, gateway) = loop {
            let addr = free_addr(listen)?;
            let vars = HashMap::from([
                ("DEMO_LISTEN", addr.to_string()),
                ("DEMO_PUBLIC_URL", public_url(addr)),
                ("DEMO_FORUM_URL", format!("http://{forum_addr}")),
                ("DEMO_SSO_SECRET", sso_secret.0.clone()),
                ("DEMO_SESSION_SECRET", session_secret.0.clone()),
                (
                    "DEMO_DIRECTORY",
                    temp.path.join("ssogate.db").display().to_string(),
                ),
            ]);
            let config = Config::parse(TEMPLATE, "the built-in demo config", &|name| {
                vars.get(name).cloned()
            })?;
            match crate::start(&config).await {
                Ok(gateway) => break (config, gateway),
                Err(StartError::Bind { source, .. })
                    if listen.port() == 0
                        && source.kind() == std::io::ErrorKind::AddrInUse
                        && attempt < PORT_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(error) => return Err(error.into()),
            }
        };

        let site = Arc::new(Site::new(&config, &sso_secret)?);
        let forum = ForumServer::start(forum_listener, forum_addr, Arc::clone(&site));
        tracing::info!(
            forum = %forum_addr,
            directory = %temp.path.display(),
            "demo forum and integrator running behind the gateway"
        );
        Ok(Demo {
            gateway,
            forum,
            site,
            temp,
        })
    }

    /// The forum's address as a browser should use it (the gateway's public URL).
    pub fn forum_url(&self) -> &Url {
        &self.site.public
    }

    /// The temporary directory holding the member directory; removed when the demo stops.
    pub fn temp_dir(&self) -> &Path {
        &self.temp.path
    }

    /// An absolute link to the gateway's Tribe entry with a fresh token for `name` and `email`, valid for
    /// `lifetime` seconds and usable once, that lands on `/`.
    pub fn sign_in_link(
        &self,
        name: &str,
        email: &str,
        lifetime: u64,
    ) -> Result<String, DemoError> {
        let token = self.site.mint(name, email, lifetime)?;
        Ok(self.site.entry_link(&token, "/"))
    }

    /// What the demo prints on start: where the forum is, a ready sign-in link, where its data lives.
    pub fn banner(&self) -> Result<String, DemoError> {
        let (name, email) = PRESETS[0];
        let link = self.sign_in_link(name, email, BANNER_TOKEN_LIFETIME)?;
        Ok(format!(
            "\nssogate demo: a forum behind the gateway, with JWT single sign-on and a demo sign-in site.\n\n\
\x20 Forum:     {forum}\n\
\x20 Sign in:   {link}\n\
\x20            (as {name}; works once, for {minutes} minutes: the forum's \"Sign in\" link makes new ones)\n\
\x20 Data:      {temp} (temporary, removed when the demo stops)\n\n\
The signing key is random and printed nowhere. Logs go to stderr. Press Ctrl-C to stop.\n\n",
            forum = self.site.public,
            minutes = BANNER_TOKEN_LIFETIME / 60,
            temp = self.temp.path.display(),
        ))
    }

    /// A token that stops the demo when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.gateway.shutdown_token()
    }

    /// Waits for the shutdown token, then stops the gateway (requests in flight finish), the demo forum, and removes
    /// the temporary directory. Returns `true` when the gateway drained in time.
    pub async fn serve_until_stopped(self) -> bool {
        let Demo {
            gateway,
            forum,
            site,
            temp,
        } = self;
        let drained = gateway.serve_until_stopped().await;
        forum.stop().await;
        drop(site);
        // The gateway's housekeeping task holds the directory until it sees the cancellation; let it run first.
        tokio::task::yield_now().await;
        drop(temp);
        drained
    }
}

/// `listen` itself, or with port 0, a free port on its address.
fn free_addr(listen: SocketAddr) -> Result<SocketAddr, DemoError> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    let probe = std::net::TcpListener::bind(listen).map_err(|source| DemoError::FreePort {
        addr: listen,
        source,
    })?;
    probe.local_addr().map_err(|source| DemoError::FreePort {
        addr: listen,
        source,
    })
}

/// `http://addr`, with a loopback address in place of an unspecified one (a browser cannot open `0.0.0.0`).
fn public_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// A secret of [`SECRET_BYTES`] random bytes, hex-encoded; its `Debug` shows nothing of it.
struct Secret(String);

impl Secret {
    fn random() -> Result<Self, DemoError> {
        let mut bytes = [0u8; SECRET_BYTES];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| DemoError::Random)?;
        Ok(Secret(hex(&bytes)))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// A directory of the demo's own under the system's temporary directory, removed on drop.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn create() -> Result<Self, DemoError> {
        use std::os::unix::fs::DirBuilderExt;

        let base = std::env::temp_dir();
        let mut suffix = [0u8; 6];
        aws_lc_rs::rand::fill(&mut suffix).map_err(|_| DemoError::Random)?;
        let path = base.join(format!(
            "ssogate-demo-{}-{}",
            std::process::id(),
            hex(&suffix)
        ));
        // `create`, not `create_all`: a name that already exists is never taken over, and 0700 keeps other users out
        // of the member database.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| DemoError::TempDir { dir: base, source })?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {
                tracing::info!(directory = %self.path.display(), "removed the demo's temporary directory");
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(directory = %self.path.display(), error = %error, "cannot remove the demo's temporary directory");
            }
        }
    }
}

/// What the demo forum and integrator pages need: where the gateway is, its Tribe entry, and the demo key.
struct Site {
    /// The gateway's public URL (`http://host:port/`).
    public: Url,
    /// The Tribe entry's path and parameter names, as the gateway's config has them.
    entry_path: String,
    token_param: String,
    return_param: String,
    key: EncodingKey,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("public", &self.public.as_str())
            .field("entry_path", &self.entry_path)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl Site {
    fn new(config: &Config, secret: &Secret) -> Result<Self, DemoError> {
        // The entry as the gateway has it, so the integrator can never drift from the gateway's defaults.
        let entry = config
            .sso
            .as_ref()
            .and_then(|sso| sso.entries.iter().find(|e| e.profile == Profile::Tribe))
            .ok_or(DemoError::NoTribeEntry)?;
        Ok(Site {
            public: config.public_url.clone(),
            entry_path: entry.path.clone(),
            token_param: entry.token_param.clone(),
            return_param: entry.return_param.clone(),
            key: EncodingKey::from_secret(secret.0.as_bytes()),
        })
    }

    /// A token as integrators mint them (Tribe's sample: sub, email, name, iat, exp), HS256 with no `kid`.
    fn mint(&self, name: &str, email: &str, lifetime: u64) -> Result<String, DemoError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = serde_json::json!({
            "sub": member_id(email),
            "email": email,
            "name": name,
            "iat": now,
            "exp": now + lifetime,
        });
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.key,
        )?)
    }

    /// `<public>/api/auth/sso?jwt=<token>&redirect_uri=<return_path>`.
    fn entry_link(&self, token: &str, return_path: &str) -> String {
        format!(
            "{}{}?{}={}&{}={}",
            self.public.as_str().trim_end_matches('/'),
            self.entry_path,
            self.token_param,
            utf8_percent_encode(token, QUERY_VALUE),
            self.return_param,
            utf8_percent_encode(return_path, QUERY_VALUE),
        )
    }

    /// The return path a `redirectUrl` carries, when it points at the gateway's own entry; otherwise `/`. The
    /// integrator sends members to no other place: a `redirectUrl` is request data, and anything else would make
    /// it an open redirect.
    fn return_path(&self, redirect_url: Option<&str>) -> String {
        redirect_url
            .and_then(|text| Url::parse(text).ok())
            .filter(|url| url.origin() == self.public.origin() && url.path() == self.entry_path)
            .and_then(|url| {
                url.query_pairs()
                    .find(|(name, _)| *name == self.return_param)
                    .map(|(_, value)| value.into_owned())
            })
            .unwrap_or_else(|| "/".to_owned())
    }
}

/// The integrator's user id for an email: stable, so signing in again with the same address is the same member.
fn member_id(email: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        email.trim().to_lowercase().as_bytes(),
    );
    format!("demo-{}", hex(&digest.as_ref()[..8]))
}

/// The demo forum and integrator's HTTP/1.1 server on its loopback port.
#[derive(Debug)]
struct ForumServer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ForumServer {
    fn start(listener: TcpListener, addr: SocketAddr, site: Arc<Site>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, addr, site, stop.clone()));
        ForumServer { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    site: Arc<Site>,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %error, %addr, "demo forum cannot accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let site = Arc::clone(&site);
        let service = service_fn(move |request| {
            let site = Arc::clone(&site);
            async move { Ok::<_, Infallible>(handle(request, &site).await) }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(FORUM_SHUTDOWN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("demo forum stopped with connections still open");
    }
}

async fn handle(request: Request<Incoming>, site: &Site) -> Response<Body> {
    let path = request.uri().path();
    let method = request.method();
    let read = *method == Method::GET || *method == Method::HEAD;
    match path {
        INTEGRATOR_LOGIN if read => integrator_page(&request, site, Intent::SignIn),
        INTEGRATOR_SIGNUP if read => integrator_page(&request, site, Intent::SignUp),
        INTEGRATOR_SIGN_IN if *method == Method::POST => integrator_sign_in(request, site).await,
        INTEGRATOR_SIGNED_OUT if read => html(StatusCode::OK, "Signed out", SIGNED_OUT_BODY),
        "/favicon.ico" => html(StatusCode::NOT_FOUND, "Not found", "<p>Not found.</p>"),
        _ if read => forum_page(&request),
        _ => {
            let mut response = html(
                StatusCode::METHOD_NOT_ALLOWED,
                "Not allowed",
                "<p>The demo forum only shows pages.</p>",
            );
            response
                .headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
    }
}

/// The forum's one page: who the forum thinks you are, from the identity headers alone (as a legacy forum behind
/// the gateway would read them), and the sign-in or sign-out links the gateway intercepts.
fn forum_page(request: &Request<Incoming>) -> Response<Body> {
    use crate::config::forum::defaults;

    let headers = request.headers();
    let decoded = |name: &str| headers.get(name).map(decode_header);
    let identity: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-auth-"))
        .map(|(name, value)| (name.as_str().to_owned(), decode_header(value)))
        .collect();
    let here = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let next = utf8_percent_encode(here, QUERY_VALUE).to_string();

    let mut body = String::new();
    if let Some(user) = decoded(defaults::USER) {
        let name = decoded(defaults::NAME).unwrap_or_else(|| user.clone());
        body.push_str(&format!(
            "<p class=\"who\">The forum sees you as <strong>{}</strong>",
            escape(&name)
        ));
        if let Some(email) = decoded(defaults::EMAIL) {
            body.push_str(&format!(" &lt;{}&gt;", escape(&email)));
        }
        body.push_str(&format!(
            ".</p>\n<p><a href=\"/logout\">Sign out</a></p>\n\
<h2>The identity headers the gateway sent</h2>\n\
<p>Values are percent-encoded UTF-8 on the wire; shown here decoded.</p>\n<table>\n{}</table>\n",
            identity
                .iter()
                .map(|(name, value)| format!(
                    "<tr><th>{}</th><td>{}</td></tr>\n",
                    escape(name),
                    escape(value)
                ))
                .collect::<String>()
        ));
    } else {
        body.push_str(&format!(
            "<p class=\"who\">The forum sees you as <strong>anonymous</strong>: this request came with no identity \
headers.</p>\n<p><a href=\"/login?next={next}\">Sign in</a> &middot; <a href=\"/signup?next={next}\">Sign up</a></p>\n\
<p><small>These links are the forum's own login and sign-up routes; the gateway answers them by sending you to the \
demo integrator, the site that signs tokens.</small></p>\n",
            next = escape(&next)
        ));
    }
    body.push_str(&format!(
        "<p><small>You asked for <code>{}</code>. Every path of this forum shows this page.</small></p>\n",
        escape(here)
    ));
    html(StatusCode::OK, "Demo forum", &body)
}

/// A header value the gateway percent-encoded, decoded for display (never for trust: the gateway already decided).
fn decode_header(value: &HeaderValue) -> String {
    percent_encoding::percent_decode(value.as_bytes())
        .decode_utf8_lossy()
        .into_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    SignIn,
    SignUp,
}

/// The integrator's login (or sign-up) page: pick a member or type one; the form posts to [`INTEGRATOR_SIGN_IN`].
fn integrator_page(request: &Request<Incoming>, site: &Site, intent: Intent) -> Response<Body> {
    let redirect_url = request.uri().query().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "redirectUrl")
            .map(|(_, value)| value.into_owned())
    });
    let form = SignInForm {
        name: String::new(),
        email: String::new(),
        redirect_url: redirect_url.unwrap_or_default(),
    };
    integrator_form(site, intent, &form, None)
}

/// What the sign-in form posts.
#[derive(Debug, Default)]
struct SignInForm {
    name: String,
    email: String,
    /// The gateway's `redirectUrl`, carried through the form unchanged.
    redirect_url: String,
}

fn integrator_form(
    site: &Site,
    intent: Intent,
    form: &SignInForm,
    error: Option<&str>,
) -> Response<Body> {
    let back = site.return_path(Some(&form.redirect_url));
    let hidden = format!(
        "<input type=\"hidden\" name=\"redirectUrl\" value=\"{}\">",
        escape(&form.redirect_url)
    );
    let presets: String = PRESETS
        .iter()
        .map(|(name, email)| {
            format!(
                "<form method=\"post\" action=\"{INTEGRATOR_SIGN_IN}\" class=\"preset\">{hidden}\
<input type=\"hidden\" name=\"name\" value=\"{n}\"><input type=\"hidden\" name=\"email\" value=\"{e}\">\
<button type=\"submit\">{verb} as {n} &lt;{e}&gt;</button></form>\n",
                n = escape(name),
                e = escape(email),
                verb = if intent == Intent::SignUp { "Join" } else { "Sign in" },
            )
        })
        .collect();
    let (title, lead) = match intent {
        Intent::SignIn => (
            "Demo integrator: sign in",
            "This page stands for your main site, the one that knows your members and holds the signing key.",
        ),
        Intent::SignUp => (
            "Demo integrator: create an account",
            "This page stands for your main site's sign-up page. Any name and address make a new member.",
        ),
    };
    let error = error
        .map(|message| format!("<p class=\"error\">{}</p>\n", escape(message)))
        .unwrap_or_default();
    let body = format!(
        "<p>{lead} Choosing a member below mints a token with the demo key (Tribe claims: sub, email, name, iat, exp \
{PAGE_TOKEN_LIFETIME} s later) and sends you to the gateway's SSO entry with it. You will come back to \
<code>{back}</code>.</p>\n{error}{presets}\
<form method=\"post\" action=\"{INTEGRATOR_SIGN_IN}\" class=\"custom\">{hidden}\n\
<label>Name <input name=\"name\" value=\"{name}\" maxlength=\"255\" required></label>\n\
<label>Email <input name=\"email\" type=\"email\" value=\"{email}\" maxlength=\"255\" required></label>\n\
<button type=\"submit\">{verb}</button></form>\n\
<p><a href=\"/\">Back to the forum</a></p>\n",
        back = escape(&back),
        name = escape(&form.name),
        email = escape(&form.email),
        verb = if intent == Intent::SignUp {
            "Create and sign in"
        } else {
            "Sign in"
        },
    );
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    html(status, title, &body)
}

/// The form's answer: mint a token for the member and send the browser to the gateway's entry with it (303).
async fn integrator_sign_in(request: Request<Incoming>, site: &Site) -> Response<Body> {
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return html(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Not a form",
            "<p>Send the sign-in form as application/x-www-form-urlencoded.</p>",
        );
    }
    let body = match http_body_util::Limited::new(request.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return html(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form too large",
                "<p>The sign-in form was too large or broken off.</p>",
            );
        }
    };
    let mut form = SignInForm::default();
    for (name, value) in url::form_urlencoded::parse(&body) {
        match &*name {
            "name" => form.name = value.trim().to_owned(),
            "email" => form.email = value.trim().to_owned(),
            "redirectUrl" => form.redirect_url = value.into_owned(),
            _ => {}
        }
    }
    // The checks an integrator makes before vouching for a member; the gateway checks again and would refuse these.
    let problem = if form.name.is_empty() || form.name.chars().count() > 255 {
        Some("Give a name of 1 to 255 characters.")
    } else if !crate::sso::claims::is_valid_email(&form.email) {
        Some("Give an email address such as someone@example.com.")
    } else {
        None
    };
    if let Some(problem) = problem {
        return integrator_form(site, Intent::SignIn, &form, Some(problem));
    }
    let token = match site.mint(&form.name, &form.email, PAGE_TOKEN_LIFETIME) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(error = %error, "demo integrator cannot sign a token");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot sign in",
                "<p>The demo integrator could not sign a token; see the log.</p>",
            );
        }
    };
    let location = site.entry_link(&token, &site.return_path(Some(&form.redirect_url)));
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(LOCATION, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

const SIGNED_OUT_BODY: &str = "<p>The gateway ended your forum session and sent you here, the integrator's \
\"logged out\" page (routes.logout_url).</p>\n<p><a href=\"/\">Back to the forum</a> &middot; \
<a href=\"/demo/integrator/login\">Sign in again</a></p>\n";

/// A page of the demo. `title` is our own text; `body` is HTML whose request-derived parts are already escaped.
fn html(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}}\
h1{{font-size:1.4rem}}p{{line-height:1.5}}small{{color:#666}}.who{{font-size:1.2rem}}\
table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;font-family:monospace}}\
form.preset{{margin:.4rem 0}}form.custom{{margin-top:1rem;display:grid;gap:.5rem;max-width:22rem}}\
.error{{color:#a00}}</style></head>\n<body><h1>{title}</h1>\n{body}</body></html>\n",
        title = escape(title),
    );
    let mut response = Response::new(Body::full(page));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Nothing on these pages needs scripts or other origins; values from headers and forms stay text.
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    fn site() -> Site {
        let secret = Secret("k".repeat(64));
        let vars = HashMap::from([
            ("DEMO_LISTEN", "127.0.0.1:8080".to_owned()),
            ("DEMO_PUBLIC_URL", "http://127.0.0.1:8080".to_owned()),
            ("DEMO_FORUM_URL", "http://127.0.0.1:3000".to_owned()),
            ("DEMO_SSO_SECRET", secret.0.clone()),
            ("DEMO_SESSION_SECRET", "s".repeat(64)),
            ("DEMO_DIRECTORY", "/nonexistent/ssogate.db".to_owned()),
        ]);
        let config = Config::parse(TEMPLATE, "demo", &|name| vars.get(name).cloned()).unwrap();
        Site::new(&config, &secret).unwrap()
    }

    #[test]
    fn the_template_gives_both_entries_and_the_integrator_routes() {
        let secret = "k".repeat(64);
        let vars = HashMap::from([
            ("DEMO_LISTEN", "127.0.0.1:0".to_owned()),
            ("DEMO_PUBLIC_URL", "http://127.0.0.1:8080".to_owned()),
            ("DEMO_FORUM_URL", "http://127.0.0.1:3000".to_owned()),
            ("DEMO_SSO_SECRET", secret),
            ("DEMO_SESSION_SECRET", "s".repeat(64)),
            ("DEMO_DIRECTORY", "/tmp/x/ssogate.db".to_owned()),
        ]);
        let config = Config::parse(TEMPLATE, "demo", &|name| vars.get(name).cloned())
            .unwrap_or_else(|e| panic!("{e}"));
        let sso = config.sso.unwrap_or_else(|| panic!("sso on"));
        let paths: Vec<_> = sso.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/api/auth/sso", "/sso/jwt"]);
        assert_eq!(
            config.routes.authorization_url.map(String::from).as_deref(),
            Some("http://127.0.0.1:8080/demo/integrator/login")
        );
        assert_eq!(config.routes.entry.as_deref(), Some("/api/auth/sso"));
    }

    #[test]
    fn only_the_gateways_own_entry_is_a_redirect_target() {
        let site = site();
        let entry = "http://127.0.0.1:8080/api/auth/sso?redirect_uri=%2Ft%2F1%3Fx%3D2";
        assert_eq!(site.return_path(Some(entry)), "/t/1?x=2");
        for other in [
            "http://evil.example/api/auth/sso?redirect_uri=/x",
            "http://127.0.0.1:8081/api/auth/sso?redirect_uri=/x",
            "http://127.0.0.1:8080/elsewhere?redirect_uri=/x",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(site.return_path(Some(other)), "/", "{other}");
        }
        assert_eq!(site.return_path(None), "/");
    }

    #[test]
    fn the_entry_link_reads_as_the_docs_show_it() {
        let site = site();
        assert_eq!(
            site.entry_link("a.b-c_d", "/"),
            "http://127.0.0.1:8080/api/auth/sso?jwt=a.b-c_d&redirect_uri=/"
        );
        assert_eq!(
            site.entry_link("t", "/x?a=1&b=2"),
            "http://127.0.0.1:8080/api/auth/sso?jwt=t&redirect_uri=/x%3Fa%3D1%26b%3D2"
        );
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn minted_tokens_carry_tribe_claims_and_verify_with_the_key() {
        let site = site();
        let token = site.mint("Zoë", "Zoe@Example.com", 60).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.required_spec_claims = ["exp", "iat", "sub"].map(String::from).into();
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret("k".repeat(64).as_bytes()),
            &validation,
        )
        .unwrap();
        let claims = data.claims;
        assert_eq!(claims["name"], "Zoë");
        assert_eq!(claims["email"], "Zoe@Example.com");
        assert_eq!(claims["sub"], member_id("zoe@example.com"));
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
        assert!(data.header.kid.is_none());
    }

    #[test]
    fn html_escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn unspecified_listen_addresses_become_loopback_links() {
        assert_eq!(
            public_url("0.0.0.0:8080".parse().unwrap_or_else(|e| panic!("{e}"))),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            public_url("[::]:80".parse().unwrap_or_else(|e| panic!("{e}"))),
            "http://[::1]:80"
        );
    }
}
