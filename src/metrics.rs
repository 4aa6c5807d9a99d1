//! Prometheus metrics, served at `/metrics` on the admin listener.
//!
//! One [`Metrics`] lives as long as the process: reloads swap the configuration, never the counters. The request path
//! only increments atomics (and takes a read lock to find a label set it has seen before); everything that costs I/O
//! (the count of active sessions) is computed when a scraper asks.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// What part of the gateway answered a request: the `route` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RouteKind {
    /// Forwarded to the forum (or refused on the way there, e.g. 502).
    Proxy,
    /// An SSO entry route (`/api/auth/sso`, `/sso/jwt`, ...).
    SsoEntry,
    /// The forum's login, sign-up or account routes, sent to the integrator.
    ForumRoute,
    Logout,
    /// The identity assertion's public keys.
    Jwks,
    /// Refused before any route was chosen (ambiguous framing or path, CONNECT).
    #[default]
    Refused,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Proxy => "proxy",
            RouteKind::SsoEntry => "sso_entry",
            RouteKind::ForumRoute => "forum_route",
            RouteKind::Logout => "logout",
            RouteKind::Jwks => "jwks",
            RouteKind::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Every metric the gateway exports, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    sso_logins: Family<OutcomeLabels, Counter>,
    upstream_seconds: Histogram,
    sessions_active: Gauge,
    connections_open: Gauge,
    reloads: Family<ResultLabels, Counter>,
    last_reload_ok: Gauge,
    last_reload_success: Gauge<f64, AtomicU64>,
}

/// Request counters a thread keeps at hand (see [`Metrics::request`]).
const MAX_CACHED_COUNTERS: usize = 32;

thread_local! {
    static COUNTERS: std::cell::RefCell<Vec<(usize, RouteKind, u16, Counter)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Seconds: from a sub-millisecond local forum to a slow page near the default 60 s upstream timeout.
const UPSTREAM_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ssogate");
        let requests = Family::<RequestLabels, Counter>::default();
        let sso_logins = Family::<OutcomeLabels, Counter>::default();
        let upstream_seconds = Histogram::new(UPSTREAM_BUCKETS);
        let sessions_active = Gauge::default();
        let connections_open = Gauge::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let last_reload_ok = Gauge::default();
        let last_reload_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "requests",
            "Requests answered, by the part of the gateway that answered (route) and HTTP status",
            requests.clone(),
        );
        registry.register(
            "sso_logins",
            "SSO sign-in attempts by outcome: ok, or the refusal code (token_expired, token_replayed, ...)",
            sso_logins.clone(),
        );
        registry.register(
            "upstream_response_seconds",
            "Time from sending a request to the forum until its response head arrived",
            upstream_seconds.clone(),
        );
        registry.register(
            "sessions_active",
            "Sessions issued that have not ended or expired (computed at scrape time)",
            sessions_active.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections being served, on all listeners",
            connections_open.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP), by result",
            reloads.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "1 when the last reload was applied (or none was tried), 0 when it failed",
            last_reload_ok.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time when the configuration now running was loaded",
            last_reload_success.clone(),
        );
        registry.register(
            "build",
            "The running ssogate's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        // Both outcomes appear from the start, so a dashboard can rate() them before the first reload.
        reloads
            .get_or_create(&ResultLabels { result: "success" })
            .get();
        reloads
            .get_or_create(&ResultLabels { result: "failure" })
            .get();
        last_reload_ok.set(1);
        last_reload_success.set(unix_now());
        Self {
            registry,
            requests,
            sso_logins,
            upstream_seconds,
            sessions_active,
            connections_open,
            reloads,
            last_reload_ok,
            last_reload_success,
        }
    }

    /// One answered request.
    pub fn request(&self, route: RouteKind, status: u16, upstream: Option<Duration>) {
        // The family's map takes a lock and a SipHash per lookup; a worker sees a handful of (route, status) pairs,
        // so it keeps their counters at hand. Keyed by this registry too: tests run several gateways in one process.
        let owner = std::ptr::from_ref(self) as usize;
        let lookup = || {
            self.requests
                .get_or_create(&RequestLabels {
                    route: route.as_str(),
                    status,
                })
                .clone()
        };
        COUNTERS.with(|counters| {
            let mut counters = counters.borrow_mut();
            if let Some((.., counter)) = counters
                .iter()
                .find(|(o, r, s, _)| *o == owner && *r == route && *s == status)
            {
                counter.inc();
            } else if counters.len() < MAX_CACHED_COUNTERS {
                let counter = lookup();
                counter.inc();
                counters.push((owner, route, status, counter));
            } else {
                lookup().inc();
            }
        });
        if let Some(upstream) = upstream {
            self.upstream_seconds.observe(upstream.as_secs_f64());
        }
    }

    /// One SSO sign-in attempt: `ok` or the refusal's code.
    pub fn sso_login(&self, outcome: &'static str) {
        self.sso_logins
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub fn reload_succeeded(&self) {
        self.reloads
            .get_or_create(&ResultLabels { result: "success" })
            .inc();
        self.last_reload_ok.set(1);
        self.last_reload_success.set(unix_now());
    }

    pub fn reload_failed(&self) {
        self.reloads
            .get_or_create(&ResultLabels { result: "failure" })
            .inc();
        self.last_reload_ok.set(0);
    }

    /// Renders every metric in the OpenMetrics text format; `sessions_active` is the count just taken.
    pub fn render(&self, sessions_active: Option<i64>) -> String {
        if let Some(count) = sessions_active {
            self.sessions_active.set(count);
        }
        let mut text = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_names() {
        let metrics = Metrics::new();
        metrics.request(RouteKind::Proxy, 200, Some(Duration::from_millis(3)));
        metrics.sso_login("token_expired");
        metrics.reload_failed();
        let text = metrics.render(Some(7));
        for line in [
            "ssogate_requests_total{route=\"proxy\",status=\"200\"} 1",
            "ssogate_sso_logins_total{outcome=\"token_expired\"} 1",
            "ssogate_upstream_response_seconds_bucket{le=\"0.005\"} 1",
            "ssogate_sessions_active 7",
            "ssogate_config_reloads_total{result=\"failure\"} 1",
            "ssogate_config_reloads_total{result=\"success\"} 0",
            "ssogate_config_last_reload_successful 0",
            "ssogate_build_info{version=\"",
            "ssogate_connections_open 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
