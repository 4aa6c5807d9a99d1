//! The packaging files checked against the code they package: the Dockerfile (build command, toolchain, runtime user,
//! entrypoint, health probe), .dockerignore, docker-compose.yml with its gateway config (deploy/ssogate.compose.yaml)
//! and forum image (deploy/forum/), and the systemd unit (deploy/systemd/ssogate.service).
//!
//! No Docker engine runs here, so images are not built: instead every file a build or the compose file names must
//! exist and reach the build context, the command lines they run are run against the real binary, the health probe
//! is run against real listeners, and the config the containers use must pass `ssogate check-config`.
//! `systemd-analyze` checks the unit when it is installed (skipped otherwise, CI included: it is not a CI tool).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::Scratch;
use common::upstream::EchoUpstream;
use serde_json::Value;

const BINARY_PATH: &str = "/usr/local/bin/ssogate";
const CONFIG_PATH: &str = "/etc/ssogate/ssogate.yaml";
const DATA_DIR: &str = "/var/lib/ssogate";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Writes straight to the process's stderr, past libtest's capture, so a skip is seen without `--nocapture`.
fn loud(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

fn ssogate(args: &[&str], env: &[(String, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssogate"));
    command.args(args).current_dir(repo()).stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the ssogate binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config that runs anywhere: plain HTTP on a free port in front of a closed upstream.
fn runnable_config(scratch: &Scratch) -> PathBuf {
    scratch.write(
        "ssogate.yaml",
        "listen: 127.0.0.1:0\nworkers: 1\nupstream:\n  url: http://127.0.0.1:9\n",
    )
}

/// Runs `program args` as a service manager would, waits for the gateway to say it listens, stops it with SIGTERM
/// and expects a clean exit.
fn run_until_listening_then_stop(program: &Path, args: &[String], what: &str) {
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {}: {e}", program.display()));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("listening for") {
                let _ = tx.send(Ok(()));
            }
            seen.push(line);
        }
        let _ = tx.send(Err(seen.join("\n")));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(())) => {}
        Ok(Err(log)) => {
            let _ = child.kill();
            panic!(
                "{what}: exited without listening: {:?}\n{log}",
                child.wait()
            );
        }
        Err(_) => {
            let _ = child.kill();
            panic!("{what}: did not listen within 20 s");
        }
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    for _ in 0..400 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what}: SIGTERM ended it with {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    panic!("{what}: still running 10 s after SIGTERM");
}

// ------------------------------------------------------------------------------------------------------------------
// Dockerfile parsing
// ------------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A Dockerfile's instructions: continuation lines joined, comments (the `# syntax=` directive too) dropped.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let joined = std::mem::take(&mut current);
        let (keyword, args) = joined
            .split_once(char::is_whitespace)
            .unwrap_or((&joined, ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        });
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continuation"
    );
    out
}

/// The stages, each starting with its FROM.
fn stages(instructions: &[Instruction]) -> Vec<Vec<Instruction>> {
    let mut out: Vec<Vec<Instruction>> = Vec::new();
    for instruction in instructions {
        if instruction.keyword == "FROM" {
            out.push(Vec::new());
        }
        out.last_mut()
            .expect("the Dockerfile starts with FROM")
            .push(instruction.clone());
    }
    out
}

fn find<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a Instruction> {
    stage.iter().filter(|i| i.keyword == keyword).collect()
}

/// An exec-form (JSON array) argument list.
fn exec_form(args: &str, what: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{what} is not exec form ({e}): {args}"))
}

fn dockerfile() -> Vec<Vec<Instruction>> {
    stages(&instructions(&read("Dockerfile")))
}

fn runtime_stage() -> Vec<Instruction> {
    dockerfile().pop().unwrap()
}

/// The gateway's command line in the container: ENTRYPOINT then CMD.
fn container_command() -> Vec<String> {
    let runtime = runtime_stage();
    let entrypoint = find(&runtime, "ENTRYPOINT");
    let cmd = find(&runtime, "CMD");
    assert_eq!(
        (entrypoint.len(), cmd.len()),
        (1, 1),
        "one ENTRYPOINT, one CMD"
    );
    let mut line = exec_form(&entrypoint[0].args, "ENTRYPOINT");
    line.extend(exec_form(&cmd[0].args, "CMD"));
    line
}

/// `1.95` -> (1, 95).
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version.trim().split('.');
    let mut next = || -> u32 {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("not a version: {version:?}"))
    };
    (next(), next())
}

// ------------------------------------------------------------------------------------------------------------------
// .dockerignore
// ------------------------------------------------------------------------------------------------------------------

fn dockerignore() -> Vec<String> {
    read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            assert!(
                !l.starts_with('!'),
                "negated patterns are not modelled here: {l}"
            );
            l.trim_start_matches('/').trim_end_matches('/').to_owned()
        })
        .collect()
}

/// Docker's segment glob: `*` matches within one path segment, `?` one character.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// Whether `pattern` (segments, `**` for any number of them) matches the whole of `path`.
fn matches(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.first() {
        None => path.is_empty(),
        Some(&"**") => (0..=path.len()).any(|skip| matches(&pattern[1..], &path[skip..])),
        Some(segment) => {
            !path.is_empty() && glob(segment, path[0]) && matches(&pattern[1..], &path[1..])
        }
    }
}

/// Whether the build context leaves out `path` (relative to the repository): a pattern matching it or a parent.
fn ignored(patterns: &[String], path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    (1..=segments.len()).any(|len| {
        patterns.iter().any(|pattern| {
            let pattern: Vec<&str> = pattern.split('/').collect();
            matches(&pattern, &segments[..len])
        })
    })
}

/// Every file under `path` (itself if a file), relative to the repository, skipping Python caches.
fn files_under(path: &str) -> Vec<String> {
    let full = repo().join(path);
    if full.is_file() {
        return vec![path.to_owned()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&full).unwrap_or_else(|e| panic!("{path}: {e}")) {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name == "__pycache__" || name == "node_modules" || name.ends_with(".pyc") {
            continue;
        }
        out.extend(files_under(&format!(
            "{}/{name}",
            path.trim_end_matches('/')
        )));
    }
    out
}

// ------------------------------------------------------------------------------------------------------------------
// docker-compose.yml and its config
// ------------------------------------------------------------------------------------------------------------------

fn compose() -> Value {
    yaml_serde::from_str(&read("docker-compose.yml"))
        .unwrap_or_else(|e| panic!("docker-compose.yml does not parse: {e}"))
}

fn compose_config_path() -> &'static str {
    "deploy/ssogate.compose.yaml"
}

fn compose_config() -> Value {
    yaml_serde::from_str(&read(compose_config_path())).unwrap()
}

/// A service's `volumes` as (source, target).
fn volumes(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let spec = v.as_str().expect("short volume syntax");
            let mut parts = spec.split(':');
            let source = parts.next().unwrap().to_owned();
            let target = parts
                .next()
                .unwrap_or_else(|| panic!("{spec}: no target"))
                .to_owned();
            (source, target)
        })
        .collect()
}

/// The container side of each published port (`[ip:]host:container`).
fn published_ports(service: &Value) -> Vec<u16> {
    service["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let spec = p.as_str().expect("ports as strings");
            spec.rsplit(':').next().unwrap().parse().unwrap()
        })
        .collect()
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{addr}: {e}"))
        .port()
}

/// The names used as `${NAME}` in the string values of a parsed YAML file (compose's `${NAME:-x}` and `${NAME:?x}`
/// forms too); comments do not count.
fn env_references(value: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    match value {
        Value::String(text) => {
            let mut rest = text.as_str();
            while let Some(at) = rest.find("${") {
                rest = &rest[at + 2..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                names.insert(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
        Value::Array(items) => items.iter().for_each(|v| names.extend(env_references(v))),
        Value::Object(map) => map.values().for_each(|v| names.extend(env_references(v))),
        _ => {}
    }
    names
}

/// `.env.example` as name -> value (empty for the secrets to fill in).
fn env_example() -> BTreeMap<String, String> {
    read(".env.example")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not NAME=value: {l}"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The environment the compose config runs with: `.env.example`, each empty secret filled in with a distinct
/// 64-hex-digit value (the gateway refuses a session secret equal to an SSO key).
fn compose_env() -> Vec<(String, String)> {
    env_example()
        .into_iter()
        .enumerate()
        .map(|(i, (name, value))| {
            let value = if value.is_empty() {
                format!("{:064x}", 0x5eed_0000_u64 + i as u64 * 7919)
            } else {
                value
            };
            (name, value)
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------------------------
// The systemd unit
// ------------------------------------------------------------------------------------------------------------------

fn unit_text() -> String {
    read("deploy/systemd/ssogate.service")
}

/// `[Service]` (or another section) as key -> every value, in order.
fn unit_section(section: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in unit_text().lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            current = line.trim_matches(|c| c == '[' || c == ']').to_owned();
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "continuation lines are not modelled: {line}"
        );
        if current == section {
            let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("{line}"));
            out.entry(key.trim().to_owned())
                .or_default()
                .push(value.trim().to_owned());
        }
    }
    out
}

fn one<'a>(service: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match service.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("{key}: expected exactly one value, found {other:?}"),
    }
}

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

/// The unit's command line run here: its binary path is the binary cargo built, its config path `config`.
fn localized(command: &[String], config: &Path) -> (PathBuf, Vec<String>) {
    assert_eq!(command[0], BINARY_PATH, "{command:?}");
    let args = command[1..]
        .iter()
        .map(|a| {
            if a == CONFIG_PATH {
                config.display().to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    (PathBuf::from(env!("CARGO_BIN_EXE_ssogate")), args)
}

// ==================================================================================================================
// Tests: Dockerfile
// ==================================================================================================================

#[test]
fn dockerfile_builds_like_ci_with_the_toolchain_here() {
    let stages = dockerfile();
    assert!(stages.len() >= 2, "a multi-stage build");
    let builder = &stages[0];
    let from = &builder[0].args;
    let (image, name) = from
        .split_once(" AS ")
        .or_else(|| from.split_once(" as "))
        .unwrap_or((from, ""));
    assert_eq!(name.trim(), "builder", "{from}");
    let tag = image
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("the builder is not the official Rust image: {image}"));
    let version = tag.split('-').next().unwrap();
    assert!(
        tag.ends_with("-bookworm"),
        "{tag}: Debian bookworm, as the runtime stage"
    );
    let image_version = major_minor(version);

    // At least Cargo.toml's rust-version...
    let manifest = read("Cargo.toml");
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version"))
        .and_then(|rest| rest.split('"').nth(1))
        .expect("Cargo.toml has rust-version");
    assert!(
        image_version >= major_minor(msrv),
        "the image's Rust {version} is older than rust-version {msrv}"
    );
    // ...and the toolchain that builds and tests it here (and in CI).
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .expect("rustc runs");
    let rustc = text(&rustc.stdout);
    let local = rustc.split_whitespace().nth(1).expect("rustc X.Y.Z");
    assert_eq!(
        image_version,
        major_minor(local),
        "the image builds with Rust {version}, this machine with {rustc}"
    );

    // The same dependency versions as CI: --locked, in the image and in .ci/run.
    let builds: Vec<&Instruction> = find(builder, "RUN")
        .into_iter()
        .filter(|i| i.args.contains("cargo build"))
        .collect();
    assert_eq!(builds.len(), 1, "one cargo build");
    for flag in ["--release", "--locked"] {
        assert!(
            builds[0].args.contains(flag),
            "cargo build without {flag}: {}",
            builds[0].args
        );
    }
    let ci = read(".ci/run");
    let ci_cargo: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| {
            ["cargo build", "cargo test", "cargo clippy"]
                .iter()
                .any(|c| l.starts_with(c))
                && !l.contains("--version")
        })
        .collect();
    assert!(!ci_cargo.is_empty(), ".ci/run runs cargo");
    for line in ci_cargo {
        assert!(line.contains("--locked"), ".ci/run: {line}");
    }

    // What the build copies in is what `cargo build` needs.
    let copies: Vec<String> = find(builder, "COPY")
        .iter()
        .map(|i| i.args.clone())
        .collect();
    for needed in ["Cargo.toml", "Cargo.lock", "src"] {
        assert!(
            copies
                .iter()
                .any(|c| c.split_whitespace().any(|w| w == needed)),
            "the builder does not copy {needed}: {copies:?}"
        );
    }
}

#[test]
fn dockerfile_runtime_stage_is_small_and_unprivileged() {
    let runtime = runtime_stage();
    let from = &runtime[0].args;
    assert!(
        from.starts_with("debian:bookworm-slim") || from.starts_with("gcr.io/distroless/cc"),
        "runtime base: {from}"
    );

    let users = find(&runtime, "USER");
    assert_eq!(users.len(), 1, "one USER in the runtime stage");
    let user = users[0].args.split(':').next().unwrap();
    let uid: u32 = match user.parse() {
        Ok(uid) => uid,
        Err(_) => {
            // A name: it must be made in this stage with a fixed uid.
            find(&runtime, "RUN")
                .iter()
                .find_map(|i| {
                    let at = i.args.find("useradd")?;
                    let rest = &i.args[at..];
                    let rest = &rest[..rest.find("&&").unwrap_or(rest.len())];
                    rest.contains(user).then(|| {
                        rest.split_whitespace()
                            .skip_while(|w| *w != "--uid")
                            .nth(1)
                            .and_then(|w| w.parse().ok())
                    })?
                })
                .unwrap_or_else(|| {
                    panic!("USER {user} is not created with --uid in the runtime stage")
                })
        }
    };
    assert!(
        uid != 0 && user != "root",
        "the runtime runs as root: USER {}",
        users[0].args
    );
    // The USER must come after everything that needs root.
    let user_at = runtime.iter().position(|i| i.keyword == "USER").unwrap();
    assert!(
        !runtime[user_at..].iter().any(|i| i.keyword == "RUN"),
        "RUN after USER"
    );

    let copies = find(&runtime, "COPY");
    assert!(
        copies
            .iter()
            .any(|i| i.args.starts_with("--from=builder") && i.args.ends_with(BINARY_PATH)),
        "the binary is not copied to {BINARY_PATH}: {copies:?}"
    );
    assert_eq!(container_command(), ["ssogate", "--config", CONFIG_PATH]);
    let volume = find(&runtime, "VOLUME");
    assert!(
        volume.iter().any(|v| v.args.contains(DATA_DIR)),
        "{DATA_DIR} is not a VOLUME: {volume:?}"
    );
    let exposed: Vec<u16> = find(&runtime, "EXPOSE")
        .iter()
        .flat_map(|i| i.args.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
        .collect();
    assert!(exposed.contains(&8080), "EXPOSE {exposed:?}");
    let installs = find(&runtime, "RUN")
        .iter()
        .any(|i| i.args.contains("ca-certificates"));
    assert!(
        installs || from.contains("distroless"),
        "no ca-certificates"
    );
}

#[test]
fn container_command_starts_the_gateway() {
    let scratch = Scratch::new("packaging-cmd");
    let config = runnable_config(&scratch);
    let command = container_command();
    let args: Vec<String> = command[1..]
        .iter()
        .map(|a| {
            if a == CONFIG_PATH {
                config.display().to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    run_until_listening_then_stop(
        Path::new(env!("CARGO_BIN_EXE_ssogate")),
        &args,
        "the container's ENTRYPOINT + CMD",
    );
}

/// A listener that answers every request with `status`.
fn fixed_status_server(status: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    addr
}

#[tokio::test]
async fn dockerfile_healthcheck_probe_tells_up_from_down() {
    let runtime = runtime_stage();
    let checks = find(&runtime, "HEALTHCHECK");
    assert_eq!(checks.len(), 1, "one HEALTHCHECK");
    let args = &checks[0].args;
    let at = args.find("CMD ").expect("HEALTHCHECK ... CMD [...]");
    let probe = exec_form(&args[at + 4..], "HEALTHCHECK CMD");
    assert!(probe.join(" ").contains("/healthz"), "{probe:?}");

    // Its default port is the admin listener's in the compose config.
    let env = find(&runtime, "ENV")
        .iter()
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find_map(|w| {
            w.strip_prefix("SSOGATE_HEALTHCHECK_PORT=")
                .map(str::to_owned)
        })
        .expect("ENV SSOGATE_HEALTHCHECK_PORT");
    let admin = compose_config()["admin"]["listen"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(env.parse::<u16>().unwrap(), port_of(&admin));

    let run = |port: u16| {
        let probe = probe.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(&probe[0])
                    .args(&probe[1..])
                    .env("SSOGATE_HEALTHCHECK_PORT", port.to_string())
                    .stdin(Stdio::null())
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run the probe {probe:?}: {e}"))
            })
            .await
            .unwrap()
        }
    };
    // A server answering 200 (the echo upstream answers 200 on every path).
    let up = EchoUpstream::start().await;
    let out = run(up.addr.port()).await;
    assert!(
        out.status.success(),
        "a 200 is healthy: {}",
        text(&out.stderr)
    );
    assert_eq!(up.count(), 1, "the probe made one request");

    let failing = fixed_status_server("503 Service Unavailable");
    let out = run(failing.port()).await;
    assert!(!out.status.success(), "a 503 is not healthy");

    // A port nobody listens on, held so nothing else takes it meanwhile.
    let closed = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    closed
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let port = closed.local_addr().unwrap().as_socket().unwrap().port();
    let out = run(port).await;
    assert!(!out.status.success(), "a closed port is not healthy");
}

#[test]
fn build_contexts_send_what_the_dockerfiles_copy_and_nothing_private() {
    let patterns = dockerignore();
    for dockerfile in ["Dockerfile", "deploy/forum/Dockerfile"] {
        for instruction in instructions(&read(dockerfile)) {
            if instruction.keyword != "COPY" || instruction.args.starts_with("--from") {
                continue;
            }
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            for source in &words[..words.len() - 1] {
                assert!(
                    repo().join(source).exists(),
                    "{dockerfile}: COPY {source}: no such file"
                );
                for file in files_under(source) {
                    assert!(
                        !ignored(&patterns, &file),
                        "{dockerfile}: COPY {source}: .dockerignore leaves out {file}"
                    );
                }
            }
        }
    }
    for private in [
        "target/release/ssogate",
        ".venv/bin/python",
        "examples/node/node_modules/jsonwebtoken/index.js",
        "tests/interop/node_modules/jws/index.js",
        "tests/forum/ssoforum/__pycache__/settings.cpython-311.pyc",
        "certs/dev/gateway.key",
        "data/ssogate.db",
        ".env",
        ".git/config",
    ] {
        assert!(ignored(&patterns, private), ".dockerignore sends {private}");
    }
}

// ==================================================================================================================
// Tests: docker-compose.yml
// ==================================================================================================================

#[test]
fn compose_file_parses_and_everything_it_names_exists() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["forum", "ssogate"]));

    let declared: BTreeSet<String> = compose["volumes"]
        .as_object()
        .expect("named volumes")
        .keys()
        .cloned()
        .collect();
    let mut used = BTreeSet::new();
    for (name, service) in services {
        let build = &service["build"];
        let context = repo().join(
            build["context"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: build.context")),
        );
        assert!(
            context.is_dir(),
            "{name}: build context {}",
            context.display()
        );
        let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
        assert!(context.join(dockerfile).is_file(), "{name}: {dockerfile}");
        for (source, target) in volumes(service) {
            if source.starts_with('.') || source.starts_with('/') {
                assert!(
                    repo().join(&source).exists(),
                    "{name}: bind mount {source} -> {target}"
                );
            } else {
                assert!(
                    declared.contains(&source),
                    "{name}: volume {source} is not declared"
                );
                used.insert(source);
            }
        }
        for dependency in service["depends_on"].as_array().into_iter().flatten() {
            assert!(
                services.contains_key(dependency.as_str().unwrap()),
                "{name}: depends_on {dependency}"
            );
        }
    }
    assert_eq!(used, declared, "declared volumes no service uses");

    // The gateway: the config where the image's CMD reads it, the directory on a volume at the image's VOLUME.
    let gateway = &services["ssogate"];
    let mounts = volumes(gateway);
    assert!(
        mounts
            .iter()
            .any(|(s, t)| s == &format!("./{}", compose_config_path()) && t == CONFIG_PATH),
        "{} is not mounted at {CONFIG_PATH}: {mounts:?}",
        compose_config_path()
    );
    let config = compose_config();
    let directory = Path::new(config["directory"]["path"].as_str().unwrap());
    let data = mounts
        .iter()
        .find(|(_, t)| t == DATA_DIR)
        .unwrap_or_else(|| panic!("no volume at {DATA_DIR}"));
    assert!(
        directory.starts_with(&data.1),
        "directory.path {} is not on the volume",
        directory.display()
    );
    assert!(
        mounts
            .iter()
            .any(|(_, t)| t.starts_with("/etc/ssogate/certs")),
        "no certificates mount"
    );

    // The gateway reaches the forum by its service name, on the port the forum's image serves.
    let forum_cmd = instructions(&read("deploy/forum/Dockerfile"))
        .into_iter()
        .rfind(|i| i.keyword == "CMD")
        .expect("the forum image has a CMD");
    let forum_cmd = exec_form(&forum_cmd.args, "forum CMD");
    let port = forum_cmd
        .iter()
        .skip_while(|a| *a != "--port")
        .nth(1)
        .expect("the forum CMD names --port");
    assert_eq!(config["upstream"]["url"], format!("http://forum:{port}"));
    let host = forum_cmd.iter().skip_while(|a| *a != "--host").nth(1);
    assert_eq!(
        host.map(String::as_str),
        Some("0.0.0.0"),
        "the forum must listen beyond its loopback"
    );
}

#[test]
fn compose_publishes_only_the_gateway() {
    let compose = compose();
    let forum = &compose["services"]["forum"];
    assert!(
        forum.get("ports").is_none(),
        "the forum trusts X-Auth-* headers: it must not be published"
    );
    let config = compose_config();
    let listen = port_of(config["listen"].as_str().unwrap());
    let admin = port_of(config["admin"]["listen"].as_str().unwrap());
    let published = published_ports(&compose["services"]["ssogate"]);
    assert!(
        published.contains(&listen),
        "the gateway's port {listen} is not published: {published:?}"
    );
    assert!(
        !published.contains(&admin),
        "the admin listener {admin} is published"
    );
    // Inside a container, loopback would be unreachable from the host and from the other services.
    for key in [&config["listen"], &config["admin"]["listen"]] {
        assert!(key.as_str().unwrap().starts_with("0.0.0.0:"), "{key}");
    }
}

#[test]
fn compose_config_passes_check_config_with_the_documented_environment() {
    let config_text = read(compose_config_path());
    let needed = env_references(&compose_config());
    assert!(needed.contains("SSOGATE_SSO_SECRET") && needed.contains("SSOGATE_SESSION_SECRET"));

    // Every variable the config needs is passed by compose, and documented in .env.example.
    let compose = compose();
    let passed: BTreeSet<String> = compose["services"]["ssogate"]["environment"]
        .as_object()
        .expect("environment as a map")
        .keys()
        .cloned()
        .collect();
    let documented: BTreeSet<String> = env_example().keys().cloned().collect();
    for name in &needed {
        assert!(
            passed.contains(name),
            "compose does not pass {name} to the gateway"
        );
    }
    for name in env_references(&compose) {
        assert!(
            documented.contains(&name),
            ".env.example does not document {name}"
        );
    }
    // Secrets are left for the user to fill in, never shipped.
    for (name, value) in env_example() {
        if name.contains("SECRET") || name.contains("TOKEN") {
            assert!(value.is_empty(), ".env.example ships a value for {name}");
        }
    }

    // The real check, with the environment compose would give it.
    let env = compose_env();
    let out = ssogate(&["check-config", compose_config_path()], &env);
    assert!(
        out.status.success() && text(&out.stdout).trim() == "ok",
        "check-config: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // Without the environment it refuses, naming each variable: nothing secret is written in the file.
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssogate"));
    for name in &needed {
        command.env_remove(name);
    }
    let out = command
        .args(["check-config", compose_config_path()])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!out.status.success(), "check-config passed without secrets");
    let stderr = text(&out.stderr);
    for name in &needed {
        assert!(
            stderr.contains(name.as_str()),
            "{name} not named in: {stderr}"
        );
    }

    // The commented-out tls section is valid too once uncommented, with certificates where it points.
    let scratch = Scratch::new("packaging-tls");
    let certs = scratch.0.join("certs");
    let made = ssogate(&["dev-certs", "--out", certs.to_str().unwrap()], &[]);
    assert!(made.status.success(), "dev-certs: {}", text(&made.stderr));
    let mut in_tls = false;
    let uncommented: String = config_text
        .lines()
        .map(|line| {
            in_tls = line == "#tls:" || (in_tls && line.starts_with("#  "));
            let line = if in_tls { &line[1..] } else { line };
            format!(
                "{}\n",
                line.replace("/etc/ssogate/certs/", &format!("{}/", certs.display()))
            )
        })
        .collect();
    assert!(
        uncommented.contains("\ntls:\n"),
        "no commented tls section found"
    );
    let path = scratch.write("with-tls.yaml", &uncommented);
    let out = ssogate(&["check-config", path.to_str().unwrap()], &env);
    assert!(
        out.status.success(),
        "the tls section, uncommented: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The forum image's settings and URLs load in Django (needs Spirit in .venv, as tests/spirit.rs does).
#[test]
fn forum_image_settings_pass_django_checks() {
    let test = "forum_image_settings_pass_django_checks";
    let python = repo().join(".venv/bin/python");
    let probe = Command::new(&python)
        .args(["-c", "import django, spirit, waitress"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        let why = probe.map_or_else(|e| e.to_string(), |o| text(&o.stderr));
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{test}: Spirit not in .venv ({why}); CI=true, so this is a failure: .ci/run installs it"
            );
        }
        loud(&format!(
            "SKIPPED: {test}: Spirit not in .venv ({}) (run .ci/run)",
            why.trim()
        ));
        return;
    }
    // Settings module as the image sets it (ENV DJANGO_SETTINGS_MODULE), found where the image copies it (/app, here
    // deploy/forum beside tests/forum).
    let env_line = instructions(&read("deploy/forum/Dockerfile"))
        .into_iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find_map(|w| w.strip_prefix("DJANGO_SETTINGS_MODULE=").map(str::to_owned))
        .expect("ENV DJANGO_SETTINGS_MODULE");
    let scratch = Scratch::new("packaging-forum");
    let out = Command::new(&python)
        .args([
            repo().join("tests/forum/manage.py").to_str().unwrap(),
            "check",
            "--fail-level",
            "WARNING",
        ])
        .env("DJANGO_SETTINGS_MODULE", &env_line)
        .env("PYTHONPATH", repo().join("deploy/forum"))
        .env("SSOFORUM_DATA_DIR", &scratch.0)
        .env("SSOFORUM_STATIC_ROOT", scratch.0.join("static"))
        .env("SSOFORUM_ALLOWED_HOSTS", "forum.example.com, localhost")
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "manage.py check with {env_line}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = Command::new(&python)
        .args([
            "-c",
            "import django; django.setup(); from django.conf import settings as s; \
             from django.urls import resolve; print(s.ALLOWED_HOSTS, resolve('/static/x.css').func.__name__)",
        ])
        .env("DJANGO_SETTINGS_MODULE", &env_line)
        .env("PYTHONPATH", format!("{}:{}", repo().join("deploy/forum").display(), repo().join("tests/forum").display()))
        .env("SSOFORUM_DATA_DIR", &scratch.0)
        .env("SSOFORUM_ALLOWED_HOSTS", "forum.example.com, localhost")
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout).trim(),
        "['forum.example.com', 'localhost'] serve",
        "{}",
        text(&out.stderr)
    );
}

// ==================================================================================================================
// Tests: systemd
// ==================================================================================================================

#[test]
fn systemd_unit_commands_are_ones_the_binary_runs() {
    let service = unit_section("Service");
    let scratch = Scratch::new("packaging-systemd");
    let good = runnable_config(&scratch);
    let bad = scratch.write(
        "bad.yaml",
        "listen: 127.0.0.1:0\nupstreem:\n  url: http://127.0.0.1:9\n",
    );

    // ExecStartPre and the first ExecReload: check-config, which passes a good file and stops on a bad one.
    let reload = &service["ExecReload"];
    let checks: Vec<&str> = std::iter::once(one(&service, "ExecStartPre"))
        .chain(
            reload
                .iter()
                .map(String::as_str)
                .filter(|c| c.contains("check-config")),
        )
        .collect();
    assert_eq!(
        checks.len(),
        2,
        "ExecStartPre and ExecReload check the config first"
    );
    for check in checks {
        let command = words(check);
        assert_eq!(command[1..], ["check-config", CONFIG_PATH], "{check}");
        let (binary, args) = localized(&command, &good);
        let out = Command::new(&binary).args(&args).output().unwrap();
        assert!(
            out.status.success() && text(&out.stdout).trim() == "ok",
            "{check}: {}",
            text(&out.stderr)
        );
        let (binary, args) = localized(&command, &bad);
        let out = Command::new(&binary).args(&args).output().unwrap();
        assert!(!out.status.success(), "{check} passed a misspelt key");
        assert!(
            text(&out.stderr).contains("upstreem"),
            "{}",
            text(&out.stderr)
        );
    }

    // ExecStart runs the gateway; SIGTERM stops it cleanly (what systemctl stop sends).
    let start = words(one(&service, "ExecStart"));
    assert_eq!(start[1..], ["--config", CONFIG_PATH]);
    let (binary, args) = localized(&start, &good);
    run_until_listening_then_stop(&binary, &args, "ExecStart");

    // Reload is SIGHUP to the main process (ops-spec), after the check.
    assert_eq!(
        reload.last().map(String::as_str),
        Some("/bin/kill -HUP $MAINPID")
    );
    assert!(Path::new("/bin/kill").exists(), "/bin/kill");
}

#[test]
fn systemd_unit_is_sandboxed() {
    let service = unit_section("Service");
    let expect = |key: &str, value: &str| {
        assert_eq!(one(&service, key), value, "{key}");
    };
    let dynamic = service.get("DynamicUser").is_some_and(|v| v == &["yes"]);
    assert!(
        dynamic || service.contains_key("User"),
        "DynamicUser=yes or a dedicated User="
    );
    expect("StateDirectory", "ssogate");
    expect("ProtectSystem", "strict");
    expect("ProtectHome", "yes");
    expect("PrivateTmp", "yes");
    expect("NoNewPrivileges", "yes");
    expect("MemoryDenyWriteExecute", "yes");
    expect("LockPersonality", "yes");
    expect("Restart", "on-failure");
    let caps = one(&service, "CapabilityBoundingSet");
    assert!(
        caps.is_empty() || caps == "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet={caps}"
    );
    let families = words(one(&service, "RestrictAddressFamilies"));
    for family in &families {
        assert!(
            ["AF_INET", "AF_INET6", "AF_UNIX"].contains(&family.as_str()),
            "{family}"
        );
    }
    assert!(
        service["SystemCallFilter"]
            .iter()
            .any(|f| f == "@system-service"),
        "SystemCallFilter=@system-service"
    );
    assert!(
        !one(&service, "EnvironmentFile").starts_with('-'),
        "a missing secrets file must stop the start"
    );

    // The directory lives in the state directory, and systemd waits longer than the gateway drains.
    assert_eq!(one(&service, "WorkingDirectory"), DATA_DIR);
    let stop = one(&service, "TimeoutStopSec");
    let seconds: u64 = stop.trim_end_matches('s').parse().unwrap();
    let drain = ssogate::config::defaults::SHUTDOWN_TIMEOUT.as_secs();
    assert!(
        seconds > drain,
        "TimeoutStopSec={stop} <= limits.shutdown_timeout ({drain}s)"
    );
}

#[test]
fn systemd_analyze_accepts_the_unit() {
    let test = "systemd_analyze_accepts_the_unit";
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        // Not a CI tool: skipped everywhere it is missing.
        loud(&format!("SKIPPED: {test}: systemd-analyze not found"));
        return;
    }
    // verify checks that ExecStart's binary exists: point it at the one cargo built.
    let scratch = Scratch::new("packaging-analyze");
    let unit = scratch.write(
        "ssogate.service",
        &unit_text().replace(BINARY_PATH, env!("CARGO_BIN_EXE_ssogate")),
    );
    let out = Command::new("systemd-analyze")
        .args(["verify", unit.to_str().unwrap()])
        .output()
        .unwrap();
    // Unknown keys and bad values are only warnings (exit 0), so read what it says about this unit.
    let said: Vec<String> = text(&out.stderr)
        .lines()
        .chain(text(&out.stdout).lines())
        .filter(|l| l.contains("ssogate.service"))
        .map(str::to_owned)
        .collect();
    assert!(
        out.status.success() && said.is_empty(),
        "systemd-analyze verify: {}\n{said:#?}",
        out.status
    );

    // The sandbox as systemd scores it: exposure at most 2.0 of 10 ("OK").
    let out = Command::new("systemd-analyze")
        .args([
            "security",
            "--offline=true",
            "--threshold=20",
            unit.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    if stderr.contains("--offline") || stderr.contains("--threshold") {
        loud(&format!(
            "SKIPPED (in part): {test}: this systemd-analyze has no offline security check"
        ));
        return;
    }
    let stdout = text(&out.stdout);
    let overall = stdout
        .lines()
        .find(|l| l.contains("Overall exposure"))
        .unwrap_or_default();
    assert!(
        out.status.success(),
        "systemd-analyze security: {overall}\n{stderr}"
    );
}
