//! End to end with a real forum: Spirit (`django-spirit`, a Django forum) behind the gateway, trusting the identity
//! headers through Django's RemoteUser pattern (tests/forum/, see its README). A new member signs in with a PyJWT
//! token, is created in Spirit with their non-ASCII name, posts a topic through the gateway (Django's CSRF check
//! included), cannot be impersonated with forged X-Auth-* headers in any spelling, and after logout at the gateway
//! is anonymous to Spirit again, even replaying the old cookies.
//!
//! Spirit is installed into `.venv` by `.ci/run` (tests/forum/requirements.txt). Without it the test prints a loud
//! `SKIPPED` line and passes, except with `CI=true`, where that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::sso::{SECRET, now, sso_yaml};
use common::{Scratch, TestGateway, client};
use serde_json::{Value, json};

/// Spirit's logout URL (`spirit:user:auth:logout`); its "Log out" link POSTs there with `?next=<page>`.
const SPIRIT_LOGOUT: &str = "/user/logout/";
/// Spirit migrates a new SQLite database in about 15 s on two cores; leave room for a slow CI machine.
const SPIRIT_START_LIMIT: Duration = Duration::from_secs(240);
const NAME: &str = "Zoë Ñúñez";
const EMAIL: &str = "zoe.nunez@example.com";
const TITLE: &str = "Hello Spirit, from behind ssogate";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn forum_dir() -> PathBuf {
    repo().join("tests/forum")
}

fn python() -> PathBuf {
    repo().join(".venv/bin/python")
}

/// Writes straight to the process's stderr, past libtest's capture, so a skip is seen without `--nocapture`.
fn loud(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Runs `.venv/bin/python args…`; stdout on exit 0.
fn run_python(args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let mut command = Command::new(python());
    command
        .args(args)
        .current_dir(repo())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python().display()))?;
    if output.status.success() {
        String::from_utf8(output.stdout).map_err(|e| e.to_string())
    } else {
        Err(format!(
            "{} {args:?} exited with {}: {}",
            python().display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// `true` when the venv has Spirit, waitress and PyJWT. Otherwise skips (returns `false`), or panics with `CI=true`.
fn tools_present(test: &str) -> bool {
    let probe = run_python(
        &[
            "-c",
            "import django, spirit, waitress, jwt; print(django.get_version())",
        ],
        &[],
    );
    match probe {
        Ok(_) => true,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{test}: Spirit not installed ({why}); CI=true, so this is a failure: .ci/run installs it \
             (tests/forum/README.md)"
        ),
        Err(why) => {
            loud(&format!(
                "SKIPPED: {test}: Spirit not installed ({why}); install it with \
                 `.venv/bin/pip install -r tests/forum/requirements.txt` (tests/forum/README.md)"
            ));
            false
        }
    }
}

/// An HS256 token minted by PyJWT the way Tribe's docs do it: `jwt.encode(user_data, private_key, algorithm='HS256')`.
fn pyjwt_hs256(claims: &Value, secret: &str) -> String {
    let code = "import json, sys, jwt\n\
                user_data = json.loads(sys.argv[1])\n\
                private_key = sys.argv[2]\n\
                print(jwt.encode(user_data, private_key, algorithm='HS256'))";
    let token = run_python(&["-c", code, &claims.to_string(), secret], &[])
        .unwrap_or_else(|why| panic!("PyJWT could not mint: {why}"));
    let token = token.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "PyJWT printed {token:?}");
    token
}

// ------------------------------------------------------------------------------------------------------------------
// Spirit, as a child process
// ------------------------------------------------------------------------------------------------------------------

/// Spirit served by waitress (tests/forum/serve.py) on 127.0.0.1; killed on drop.
struct Spirit {
    child: Child,
    addr: SocketAddr,
    data: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Spirit {
    /// Migrates a new database under `data` and serves it on a free port, waiting (bounded) for `READY`.
    fn start(data: &Path) -> Self {
        let mut child = Command::new(python())
            .arg(forum_dir().join("serve.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .current_dir(repo())
            .env("SSOFORUM_DATA_DIR", data)
            .env("SSOFORUM_DEBUG_ECHO", "1")
            .env(
                "SSOFORUM_SECRET_KEY",
                "spirit-e2e-test-only-secret-key-not-for-production",
            )
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve.py starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("READY http://") {
                    if let Ok(addr) = url.trim_end_matches('/').parse::<SocketAddr>() {
                        let _ = tx.send(addr);
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let Ok(addr) = rx.recv_timeout(SPIRIT_START_LIMIT) else {
            let _ = child.kill();
            let status = child.wait().ok();
            let lines = log.lock().unwrap().join("\n");
            panic!(
                "Spirit did not print READY within {SPIRIT_START_LIMIT:?} (exit: {status:?}); its output:\n{lines}"
            );
        };
        Self {
            child,
            addr,
            data: data.to_owned(),
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The usernames in Spirit's database, read with `manage.py shell` (SQLite allows a second reader).
    fn usernames(&self) -> Vec<String> {
        let code = "from django.contrib.auth import get_user_model\n\
                    import json\n\
                    print(json.dumps(sorted(get_user_model().objects.values_list('username', flat=True))))";
        let manage = forum_dir().join("manage.py");
        let data = self.data.to_str().unwrap();
        let out = run_python(
            &[manage.to_str().unwrap(), "shell", "-c", code],
            &[("SSOFORUM_DATA_DIR", data)],
        )
        .unwrap_or_else(|why| panic!("manage.py shell failed: {why}"));
        // Django 5.2's shell may first say how many objects it imported: the JSON is the last line.
        let last = out
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("manage.py shell printed {out:?}: {e}"))
    }
}

impl Drop for Spirit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------------------------------
// A browser, as far as cookies go
// ------------------------------------------------------------------------------------------------------------------

/// The cookies one browser holds for the gateway's origin: the gateway's session and Spirit's csrftoken/sessionid.
#[derive(Debug, Clone, Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    /// Takes in every `Set-Cookie` of a response; a cookie set expired (Max-Age=0, a 1970 date) or empty is removed.
    fn absorb(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let mut parts = text.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else {
                continue;
            };
            let expired = parts.any(|attribute| {
                let lower = attribute.to_ascii_lowercase();
                lower == "max-age=0" || lower.starts_with("max-age=-") || lower.contains("1970")
            });
            if expired || value.is_empty() || value == "\"\"" {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

struct Browser<'a> {
    gateway: &'a TestGateway,
    jar: Jar,
    client: reqwest::Client,
}

impl<'a> Browser<'a> {
    fn new(gateway: &'a TestGateway) -> Self {
        Self {
            gateway,
            jar: Jar::default(),
            client: client(),
        }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.gateway.addr)
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let mut request = request.header("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
        if !self.jar.0.is_empty() {
            request = request.header("cookie", self.jar.header());
        }
        let response = request.send().await.unwrap();
        self.jar.absorb(&response);
        response
    }

    async fn get(&mut self, path: &str) -> reqwest::Response {
        let request = self.client.get(self.gateway.url(path));
        self.send(request).await
    }

    /// GET, expecting 200; the body.
    async fn page(&mut self, path: &str) -> String {
        let response = self.get(path).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// GET with extra (forged) headers.
    async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.get(self.gateway.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// A form POST as a browser sends it from one of the site's pages (same-origin `Origin`).
    async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = self
            .client
            .post(self.gateway.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", self.origin())
            .header("sec-fetch-site", "same-origin")
            .body(body);
        self.send(request).await
    }

    /// Spirit's view of this browser, from the test-only echo view (tests/forum/ssoforum/debug.py).
    async fn echo(&mut self, forged: &[(&str, &str)]) -> Value {
        let response = self.get_with("/_sso/echo/", forged).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// The `value` of the first `<input name="{name}" ...>` in `html`.
fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let value = tag.split("value=\"").nth(1)?;
    Some(value[..value.find('"')?].to_owned())
}

/// The first `<option value="N">` with a number in the `<select name="{name}">` of `html`.
fn first_option(html: &str, name: &str) -> Option<String> {
    let select = &html[html.find(&format!("name=\"{name}\""))?..];
    let select = &select[..select.find("</select>")?];
    select.split("<option value=\"").skip(1).find_map(|rest| {
        let value = &rest[..rest.find('"')?];
        (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())).then(|| value.to_owned())
    })
}

/// Spirit's header for an anonymous visitor has its login link; a signed-in member's has their nickname and "Log out".
fn assert_anonymous(html: &str, context: &str) {
    assert!(
        html.contains("/user/login/") && !html.contains("Log out") && !html.contains(NAME),
        "{context}: Spirit should show an anonymous visitor"
    );
}

/// What a client might send to become someone else. Sent straight to Spirit, the hyphenated ones log in as `admin`
/// and the dotted ones show up in request.META as `HTTP_X.AUTH.USER` (the echo view lists both); the underscored ones
/// waitress itself drops (as Django's runserver does), so for those the gateway is a second line.
fn forged_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("X-Auth-User", "admin"),
        ("x-auth-user", "admin"),
        ("X_Auth_User", "admin"),
        ("x_auth_user", "admin"),
        ("X.Auth.User", "admin"),
        ("X-AUTH-EMAIL", "admin@example.com"),
        ("x_auth_email", "admin@example.com"),
        ("X-Auth-Name", "Administrator"),
        ("X.AUTH.NAME", "Administrator"),
    ]
}

// ------------------------------------------------------------------------------------------------------------------
// The test
// ------------------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spirit_trusts_the_gateway_identity_end_to_end() {
    let test = "spirit_trusts_the_gateway_identity_end_to_end";
    if !tools_present(test) {
        return;
    }
    let scratch = Scratch::new("spirit");
    let data = scratch.0.join("forum");
    std::fs::create_dir_all(&data).unwrap();
    let spirit = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || Spirit::start(&data))
            .await
            .unwrap()
    };
    let extra = format!(
        "routes:\n  logout: [{SPIRIT_LOGOUT}]\nrate_limit:\n  sso_per_ip: off\n  sso_per_subject: off\n"
    );
    let gateway = TestGateway::start(&sso_yaml(&scratch.0, "", &extra), spirit.addr).await;
    let outcome = tokio::time::timeout(Duration::from_secs(300), scenario(&gateway, &spirit)).await;
    if let Err(_elapsed) = outcome {
        panic!(
            "the scenario took over 300 s; Spirit's log:\n{}",
            spirit.log()
        );
    }
    gateway.stop().await;
}

async fn scenario(gateway: &TestGateway, spirit: &Spirit) {
    // 0. Before anyone signs in: Spirit's front page through the gateway, anonymous.
    let mut browser = Browser::new(gateway);
    let home = browser.page("/").await;
    assert_anonymous(&home, "before login");

    // 1. A new member signs in with a PyJWT token (Tribe's claims), non-ASCII name.
    let iat = now();
    let claims = json!({"sub": 4242, "email": EMAIL, "name": NAME, "iat": iat, "exp": iat + 60});
    let token = pyjwt_hs256(&claims, SECRET);
    let entry = browser
        .get(&format!("/api/auth/sso?jwt={token}&redirect_uri=/"))
        .await;
    assert_eq!(entry.status(), 303, "the SSO entry signs in");
    assert_eq!(entry.headers()["location"], "/");
    assert!(
        browser.jar.get("ssogate_session").is_some(),
        "the entry sets the session cookie: {:?}",
        entry.headers()
    );

    // 2. Following the 303: Spirit creates the member and shows them by name.
    let home = browser.page("/").await;
    assert!(
        home.contains(NAME),
        "Spirit's page shows the member's name; log:\n{}",
        spirit.log()
    );
    assert!(home.contains("Log out"), "a signed-in member's header");
    assert!(
        browser.jar.get("sessionid").is_some() && browser.jar.get("csrftoken").is_some(),
        "Spirit's own cookies come through the gateway: {:?}",
        browser.jar
    );
    let me = browser.echo(&[]).await;
    assert_eq!(me["authenticated"], true, "{me}");
    let gateway_id = me["auth_headers"]["HTTP_X_AUTH_USER"]
        .as_str()
        .unwrap_or_else(|| panic!("Spirit received X-Auth-User: {me}"))
        .to_owned();
    assert_eq!(
        gateway_id.len(),
        36,
        "X-Auth-User is the gateway's UUID: {me}"
    );
    assert_eq!(me["username"], gateway_id.to_lowercase(), "{me}");
    assert_eq!(me["email"], EMAIL, "{me}");
    assert_eq!(
        me["nickname"], NAME,
        "percent-decoded into Spirit's display name: {me}"
    );
    let raw_name = me["auth_headers"]["HTTP_X_AUTH_NAME"].as_str().unwrap();
    assert!(
        raw_name.is_ascii() && raw_name.contains("%C3%AB"),
        "the name travels percent-encoded: {raw_name:?}"
    );

    // 3. A topic, posted through the gateway with Spirit's CSRF protection (cookie + form token, Origin vs Host).
    let form = browser.page("/topic/publish/").await;
    let csrf =
        input_value(&form, "csrfmiddlewaretoken").expect("the publish form has a CSRF token");
    let category =
        first_option(&form, "category").expect("Spirit has a category (its migration makes one)");
    let posted = browser
        .post_form(
            "/topic/publish/",
            &[
                ("csrfmiddlewaretoken", csrf.as_str()),
                ("title", TITLE),
                ("category", category.as_str()),
                ("comment", "Posted by a member the gateway signed in."),
            ],
        )
        .await;
    let status = posted.status();
    let location = posted
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = posted.text().await.unwrap();
    assert_eq!(
        status,
        302,
        "Spirit accepts the topic: {body}\n{}",
        spirit.log()
    );
    let topic_path = location.unwrap();
    assert!(topic_path.starts_with("/topic/"), "{topic_path}");
    let topic = browser.page(&topic_path).await;
    assert!(topic.contains(TITLE), "the topic page shows its title");
    assert!(topic.contains(NAME), "the topic page shows its author");
    let active = browser.page("/").await;
    assert!(active.contains(TITLE), "the front page lists the new topic");

    // 4. Forged identity headers, in every spelling, never reach Spirit.
    // Without a session: anonymous, no X-Auth-* of any spelling in request.META, no "admin" user created.
    let mut stranger = Browser::new(gateway);
    let seen = stranger.echo(&forged_headers()).await;
    assert_eq!(seen["authenticated"], false, "{seen}");
    assert_eq!(
        seen["auth_headers"],
        json!({}),
        "nothing forged gets through: {seen}"
    );
    for (name, value) in forged_headers() {
        let response = stranger.get_with("/", &[(name, value)]).await;
        assert_eq!(response.status(), 200);
        assert_anonymous(&response.text().await.unwrap(), &format!("forged {name}"));
    }
    // With a session: Spirit sees the real member, one copy of each header, none of the forged values.
    let seen = browser.echo(&forged_headers()).await;
    assert_eq!(seen["username"], gateway_id.to_lowercase(), "{seen}");
    assert_eq!(
        seen["auth_headers"]["HTTP_X_AUTH_USER"],
        gateway_id.as_str(),
        "{seen}"
    );
    assert_eq!(seen["email"], EMAIL, "{seen}");
    assert_eq!(seen["nickname"], NAME, "{seen}");
    let forged_values = ["admin", "admin@example.com", "Administrator"];
    for (key, value) in seen["auth_headers"].as_object().unwrap() {
        let value = value.as_str().unwrap();
        assert!(
            key.starts_with("HTTP_X_AUTH_") && !key.contains('.'),
            "only the gateway's headers: {seen}"
        );
        assert!(
            !forged_values.iter().any(|f| value.contains(f)),
            "{key}={value:?} carries a forged value: {seen}"
        );
    }
    let users = tokio::task::block_in_place(|| spirit.usernames());
    assert_eq!(
        users,
        vec![gateway_id.to_lowercase()],
        "Spirit knows exactly one user"
    );

    // 5. Logout at the gateway, the way Spirit's "Log out" link does it: a same-origin POST to /user/logout/?next=/.
    let before_logout = browser.jar.clone();
    let csrf = before_logout.get("csrftoken").unwrap().to_owned();
    let out = browser
        .post_form(
            &format!("{SPIRIT_LOGOUT}?next=%2F"),
            &[("csrfmiddlewaretoken", csrf.as_str())],
        )
        .await;
    assert!(
        out.status().is_redirection(),
        "the gateway answers the logout itself: {} {:?}",
        out.status(),
        out.headers()
    );
    assert_eq!(out.headers()["location"], "/");
    assert!(
        browser.jar.get("ssogate_session").is_none(),
        "logout clears the session cookie: {:?}",
        out.headers()
    );

    // The old cookies replayed (gateway session and Spirit's sessionid): the gateway no longer vouches, so Spirit
    // receives no X-Auth-User and RemoteUserMiddleware logs its own session out.
    let mut replay = Browser::new(gateway);
    replay.jar = before_logout;
    let seen = replay.echo(&[]).await;
    assert_eq!(
        seen["auth_headers"],
        json!({}),
        "the ended session carries no identity: {seen}"
    );
    assert_eq!(seen["authenticated"], false, "{seen}");
    let replay_home = replay.page("/").await;
    assert_anonymous(&replay_home, "old cookies replayed after logout");

    // And the browser that logged out is anonymous too.
    let home = browser.page("/").await;
    assert_anonymous(&home, "after logout");
    let seen = browser.echo(&[]).await;
    assert_eq!(seen["authenticated"], false, "{seen}");
}
