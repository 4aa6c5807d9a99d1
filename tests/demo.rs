//! `ssogate demo` as a newcomer runs it: the real binary on port 0, its printed sign-in link followed by a client that
//! keeps the session cookie, the forum's own sign-in link through the demo integrator, and a clean stop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, REFERER, SET_COOKIE};
use reqwest::{StatusCode, Url};

/// The demo running as a child process; killed on drop.
struct DemoProcess {
    child: Child,
    forum: Url,
    link: String,
    temp: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl DemoProcess {
    /// Starts `ssogate demo --listen 127.0.0.1:0` and reads its banner (bounded).
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssogate"))
            .args(["demo", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env_remove("SSOGATE_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssogate binary starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut forum, mut link, mut temp) = (None, None, None);
        while forum.is_none() || link.is_none() || temp.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!(
                    "no complete banner within 20 s; stderr:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["Forum:", url, ..] => forum = Some(Url::parse(url).unwrap()),
                ["Sign", "in:", url, ..] => link = Some((*url).to_owned()),
                ["Data:", path, ..] => temp = Some(PathBuf::from(path)),
                _ => {}
            }
        }
        Self {
            child,
            forum: forum.unwrap(),
            link: link.unwrap(),
            temp: temp.unwrap(),
            stderr,
        }
    }

    fn url(&self, path: &str) -> Url {
        self.forum.join(path).unwrap()
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        common::wait_for_exit(&mut self.child, limit)
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that keeps the session cookie as a browser would, following no redirects on its own.
struct Browser {
    client: reqwest::Client,
    cookie: Option<String>,
}

/// One answer, read whole.
struct Page {
    status: StatusCode,
    url: Url,
    location: Option<String>,
    body: String,
}

impl Browser {
    fn new() -> Self {
        Self {
            client: common::client(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header(COOKIE, cookie),
            None => request,
        };
        let response = request.send().await.expect("the demo answers");
        for set in response.headers().get_all(SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().trim();
            if let Some(value) = pair.strip_prefix("ssogate_session=") {
                self.cookie = (!value.is_empty()).then(|| pair.to_owned());
            }
        }
        let status = response.status();
        let url = response.url().clone();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        Page {
            status,
            url,
            location,
            body,
        }
    }

    async fn get(&mut self, url: &Url) -> Page {
        let request = self.client.get(url.clone());
        self.send(request).await
    }

    /// Follows redirects (at most 10), sending the previous page as Referer, the way a browser navigates.
    async fn follow(&mut self, start: &Url) -> Page {
        let mut url = start.clone();
        let mut referer: Option<Url> = None;
        for _ in 0..10 {
            let mut request = self.client.get(url.clone());
            if let Some(referer) = &referer {
                request = request.header(REFERER, referer.as_str());
            }
            let page = self.send(request).await;
            match (&page.location, page.status.is_redirection()) {
                (Some(location), true) => {
                    referer = Some(url.clone());
                    url = url.join(location).unwrap();
                }
                _ => return page,
            }
        }
        panic!("more than 10 redirects from {start}");
    }
}

/// The value of `name="<field>" value="..."` in a form, still HTML-escaped.
fn hidden_value<'a>(html: &'a str, field: &str) -> &'a str {
    let marker = format!("name=\"{field}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {field} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap();
    &html[start..start + end]
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_link_signs_in_once_and_sigterm_cleans_up() {
    let mut demo = DemoProcess::start();
    assert!(
        demo.temp.is_dir(),
        "the printed data directory exists: {}",
        demo.temp.display()
    );
    assert!(
        demo.link
            .starts_with(&format!("{}api/auth/sso?jwt=", demo.forum))
            && demo.link.ends_with("&redirect_uri=/"),
        "{}",
        demo.link
    );
    let link = Url::parse(&demo.link).unwrap();

    let mut browser = Browser::new();
    let before = browser.get(&demo.forum).await;
    assert_eq!(before.status, StatusCode::OK);
    assert!(before.body.contains("anonymous"), "{}", before.body);
    assert!(!before.body.contains("Ada Lovelace"), "{}", before.body);

    let signed_in = browser.follow(&link).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    assert_eq!(signed_in.url, demo.forum, "lands on redirect_uri=/");
    assert!(browser.cookie.is_some(), "a session cookie was set");
    assert!(
        signed_in.body.contains("<strong>Ada Lovelace</strong>")
            && signed_in.body.contains("ada@example.com"),
        "{}",
        signed_in.body
    );
    // The page reads the gateway's identity headers, not the cookie: a second page view shows the same member.
    let again = browser.get(&demo.url("/t/42")).await;
    assert!(again.body.contains("<strong>Ada Lovelace</strong>"));

    // The same link again, from anyone: the token was used.
    let replayed = browser
        .send(
            browser
                .client
                .get(link.clone())
                .header("accept", "application/json"),
        )
        .await;
    assert_eq!(
        replayed.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        replayed.body
    );
    assert!(
        replayed.body.contains("token_replayed"),
        "{}",
        replayed.body
    );

    let status = demo.terminate(Duration::from_secs(15));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGTERM exits 0; log:\n{}",
        demo.log()
    );
    assert!(
        !demo.temp.exists(),
        "the temporary directory {} is removed at exit",
        demo.temp.display()
    );
    assert!(demo.log().contains("stop requested"), "{}", demo.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forums_sign_in_link_goes_through_the_integrator_to_a_session() {
    let mut demo = DemoProcess::start();
    let mut browser = Browser::new();

    let forum = browser.get(&demo.url("/t/7")).await;
    let start = forum
        .body
        .find("<a href=\"/login?")
        .expect("a sign-in link")
        + "<a href=\"".len();
    let href = &forum.body[start..start + forum.body[start..].find('"').unwrap()];
    assert_eq!(href, "/login?next=/t/7");

    // The forum's login route is the gateway's: it sends the browser to the integrator with redirectUrl.
    let login = browser.get(&demo.url(href)).await;
    assert_eq!(login.status, StatusCode::FOUND, "{}", login.body);
    let integrator = demo.url(login.location.as_deref().unwrap());
    assert_eq!(integrator.path(), "/demo/integrator/login");
    let redirect_url = integrator
        .query_pairs()
        .find(|(k, _)| k == "redirectUrl")
        .map(|(_, v)| v.into_owned())
        .expect("redirectUrl");
    assert_eq!(
        redirect_url,
        format!("{}api/auth/sso?redirect_uri=%2Ft%2F7", demo.forum)
    );

    let page = browser.get(&integrator).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Ada Lovelace"), "presets are offered");
    assert_eq!(
        hidden_value(&page.body, "redirectUrl"),
        escape(&redirect_url)
    );
    assert!(page.body.contains("<code>/t/7</code>"), "{}", page.body);

    // A typed member whose name is markup: the token carries it, the forum shows it as text.
    let name = "Grace <b>Hopper</b>";
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("redirectUrl", &redirect_url)
        .append_pair("name", name)
        .append_pair("email", "grace@example.com")
        .finish();
    let minted = browser
        .send(
            browser
                .client
                .post(demo.url("/demo/integrator/sign-in"))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form),
        )
        .await;
    assert_eq!(minted.status, StatusCode::SEE_OTHER, "{}", minted.body);
    let entry = Url::parse(minted.location.as_deref().unwrap()).unwrap();
    assert_eq!(entry.origin(), demo.forum.origin());
    assert_eq!(entry.path(), "/api/auth/sso");
    assert!(entry.query_pairs().any(|(k, _)| k == "jwt"));

    let landed = browser.follow(&entry).await;
    assert_eq!(
        landed.url,
        demo.url("/t/7"),
        "back where the member started"
    );
    assert!(
        landed
            .body
            .contains("<strong>Grace &lt;b&gt;Hopper&lt;/b&gt;</strong>"),
        "{}",
        landed.body
    );
    assert!(!landed.body.contains("<b>Hopper</b>"), "never raw markup");

    // An integrator form with someone else's redirectUrl still only sends members to the gateway's entry.
    let form = "redirectUrl=http%3A%2F%2Fevil.example%2Fsteal&name=Eve&email=eve%40example.com";
    let elsewhere = browser
        .send(
            browser
                .client
                .post(demo.url("/demo/integrator/sign-in"))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form),
        )
        .await;
    let location = Url::parse(elsewhere.location.as_deref().unwrap()).unwrap();
    assert_eq!(
        (location.origin(), location.path()),
        (demo.forum.origin(), "/api/auth/sso")
    );

    // Sign out: the gateway ends the session and leaves for the integrator's signed-out page.
    // (A click on the forum page's link: the Referer makes it a same-origin GET, which the gateway honours at once.)
    let logout = browser
        .send(
            browser
                .client
                .get(demo.url("/logout"))
                .header(REFERER, landed.url.as_str()),
        )
        .await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER, "{}", logout.body);
    let out = browser
        .follow(&demo.url(logout.location.as_deref().unwrap()))
        .await;
    assert_eq!(
        out.url.path(),
        "/demo/integrator/signed-out",
        "{}",
        out.body
    );
    assert!(browser.cookie.is_none(), "the session cookie is cleared");
    let after = browser.get(&demo.forum).await;
    assert!(after.body.contains("anonymous"), "{}", after.body);

    assert_eq!(
        demo.terminate(Duration::from_secs(15))
            .and_then(|s| s.code()),
        Some(0),
        "{}",
        demo.log()
    );
}
