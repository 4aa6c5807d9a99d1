//! Liveness and readiness, for `/healthz` and `/readyz` on the admin listener.
//!
//! Liveness is the process answering at all. Readiness is what a load balancer needs before sending members here: a
//! configuration in force, a member directory that accepts a write (SSO on), and a forum that accepts a TCP
//! connection. Results are cached for a second, so a probe storm costs one check per second, not one per probe.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::UpstreamConfig;
use crate::gateway::Shared;

/// How long a readiness answer (and an active-session count) is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// The readiness checks and their cached answers.
#[derive(Debug)]
pub struct Readiness {
    /// `host:port` of the forum.
    upstream: String,
    connect_timeout: Duration,
    last: Mutex<Option<(Instant, Report)>>,
    sessions: Mutex<Option<(Instant, i64)>>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ready: bool,
    /// Check name -> `ok`, `off`, or what failed.
    pub checks: BTreeMap<&'static str, String>,
}

impl Readiness {
    pub fn new(upstream: &UpstreamConfig) -> Self {
        Self {
            upstream: upstream.authority.to_string(),
            connect_timeout: upstream.connect_timeout,
            last: Mutex::new(None),
            sessions: Mutex::new(None),
        }
    }

    /// Runs the checks (or reuses the answer of the last second).
    pub async fn check(&self, shared: &Shared) -> Report {
        if let Some(report) = cached(&self.last) {
            return report;
        }
        let mut checks = BTreeMap::new();
        // Only a valid configuration is ever put in force (a reload that fails keeps the running one).
        checks.insert("config", "ok".to_owned());
        let directory = match shared.sso() {
            None => "off".to_owned(),
            Some(sso) => match sso.directory().check_writable(crate::sso::now()).await {
                Ok(()) => "ok".to_owned(),
                Err(error) => format!("cannot write: {error}"),
            },
        };
        checks.insert("directory", directory);
        let upstream = match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&self.upstream),
        )
        .await
        {
            Ok(Ok(_)) => "ok".to_owned(),
            Ok(Err(error)) => format!("connect {}: {error}", self.upstream),
            Err(_) => format!(
                "connect {}: no answer within {:?} (upstream.connect_timeout)",
                self.upstream, self.connect_timeout
            ),
        };
        checks.insert("upstream", upstream);
        let ready = checks.values().all(|v| v == "ok" || v == "off");
        let report = Report { ready, checks };
        store(&self.last, report.clone());
        report
    }

    /// Sessions issued that are neither expired nor ended; `None` without SSO or when the directory fails.
    pub async fn active_sessions(&self, shared: &Shared) -> Option<i64> {
        if let Some(count) = cached(&self.sessions) {
            return Some(count);
        }
        let sso = shared.sso()?;
        match sso.directory().active_sessions(crate::sso::now()).await {
            Ok(count) => {
                store(&self.sessions, count);
                Some(count)
            }
            Err(error) => {
                tracing::warn!(error = %error, "metrics: cannot count active sessions");
                None
            }
        }
    }
}

fn cached<T: Clone>(slot: &Mutex<Option<(Instant, T)>>) -> Option<T> {
    let guard = slot.lock().ok()?;
    match &*guard {
        Some((at, value)) if at.elapsed() < CACHE_FOR => Some(value.clone()),
        _ => None,
    }
}

fn store<T>(slot: &Mutex<Option<(Instant, T)>>, value: T) {
    if let Ok(mut guard) = slot.lock() {
        *guard = Some((Instant::now(), value));
    }
}
