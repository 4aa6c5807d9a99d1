//! Shared test helpers: a real upstream that reports what it received, the gateway started in-process on
//! 127.0.0.1:0, and the `ssogate` binary started as a process.

// Each test crate uses its own part of these helpers; a test failing on an unwrap is the test failing.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod sso;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ssogate::config::Config;
use tokio_util::sync::CancellationToken;

/// A gateway running inside the test process.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    /// The admin API, when the config has `admin.token` (use `admin.listen: 127.0.0.1:0`).
    pub admin_addr: Option<SocketAddr>,
    /// Applies a config file to this gateway, as SIGHUP does to the binary.
    pub reloader: ssogate::reload::Reloader,
    shutdown: CancellationToken,
    done: Option<tokio::task::JoinHandle<bool>>,
}

impl TestGateway {
    /// Starts a gateway from YAML in which `{upstream}` stands for the upstream's address.
    pub async fn start(yaml: &str, upstream: SocketAddr) -> Self {
        let text = yaml.replace("{upstream}", &upstream.to_string());
        let config = Config::parse(&text, "test.yaml", &|name| std::env::var(name).ok())
            .unwrap_or_else(|e| panic!("test config refused: {e}"));
        let running = ssogate::start(&config).await.expect("gateway starts");
        let addr = running.http_addr.or(running.tls_addr).expect("a listener");
        let tls_addr = running.tls_addr;
        let admin_addr = running.admin_addr;
        let reloader = running.reloader();
        let shutdown = running.shutdown_token();
        let done = tokio::spawn(running.serve_until_stopped());
        Self {
            addr,
            tls_addr,
            admin_addr,
            reloader,
            shutdown,
            done: Some(done),
        }
    }

    /// The simplest gateway: plain HTTP in front of `upstream`, defaults otherwise.
    pub async fn plain(upstream: SocketAddr) -> Self {
        Self::start(&minimal_yaml(""), upstream).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the gateway gracefully; `true` when everything in flight finished in time.
    pub async fn stop(mut self) -> bool {
        self.shutdown.cancel();
        match self.done.take() {
            Some(done) => done.await.unwrap_or(false),
            None => true,
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `listen` on port 0 and the upstream placeholder, plus extra top-level YAML (which must not repeat `upstream`).
pub fn minimal_yaml(extra: &str) -> String {
    format!("listen: 127.0.0.1:0\nupstream:\n  url: http://{{upstream}}\n{extra}")
}

/// A reqwest client that talks HTTP/1.1 and never follows redirects or uses a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// The `ssogate` binary running as a child process; killed on drop.
pub struct GatewayProcess {
    child: Child,
    pub addr: Option<SocketAddr>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl GatewayProcess {
    /// Runs `ssogate --config <config>` and waits until it logs its listening address (or exits).
    pub fn spawn(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ssogate"));
        command
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("ssogate binary starts");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_addr(&line) {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(20)).ok();
        Self { child, addr, lines }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr.expect("listening"), path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin listener's address, once the process has logged it.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find_map(|line| logged_addr(line, "admin listener"))
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Sends a signal and waits (bounded) for the exit status.
    pub fn signal_and_wait(
        &mut self,
        signal: &str,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        self.wait(limit)
    }

    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_for_exit(&mut self.child, limit)
    }

    /// A field of /proc/PID/status in kB (VmRSS, VmHWM).
    pub fn memory_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    logged_addr(line, "listening for")
}

/// The `addr` of a line whose message contains `message`, in the text or the JSON log format.
pub fn logged_addr(line: &str, message: &str) -> Option<SocketAddr> {
    if !line.contains(message) {
        return None;
    }
    if line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        return value["addr"].as_str()?.parse().ok();
    }
    let start = line.find("addr=")? + 5;
    let rest = &line[start..];
    let end = rest.find(' ').unwrap_or(rest.len());
    rest[..end].trim_matches('"').parse().ok()
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ssogate-test-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(rand_u32())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now()) as u32
}

/// The child's exit status, if it exits within `limit`.
pub fn wait_for_exit(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}
