//! Reloading the configuration without a restart (SIGHUP).
//!
//! A reload reads the file again and validates it exactly as `ssogate check-config` does. A file with any error is
//! not applied: the running configuration stays, every error is logged with its key and line, and the
//! `ssogate_config_reloads_total{result="failure"}` metric goes up. A valid file is applied in one atomic swap
//! ([`crate::gateway::Live::store`]): requests already running finish on the configuration they started with, new
//! ones get the new one, and no connection is dropped.
//!
//! Some keys describe things that exist once per process (sockets, worker threads, the directory file, the upstream
//! pools): changing them needs a restart. A reload that changes one of them keeps its running value, logs a warning
//! naming it, and applies the rest, as nginx does with a changed `worker_processes`. What carries over from one
//! configuration to the next (the member directory, the replay memory, ended sessions, unchanged rate limiters, the
//! old session key) is in [`crate::sso::Sso::reloaded`].

use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigErrors};
use crate::gateway::Live;
use crate::server::ConnSettings;
use crate::tls::TlsError;

/// Re-reads and applies the configuration of a running gateway. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The configuration in force (restart-only keys at their running values).
    running: Mutex<Config>,
    live: Arc<Live>,
    settings: Arc<ArcSwap<ConnSettings>>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error("{0}")]
    Config(ConfigErrors),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// What a successful reload did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys whose new value needs a restart; their running values were kept.
    pub needs_restart: Vec<&'static str>,
}

impl Reloader {
    pub(crate) fn new(
        running: Config,
        live: Arc<Live>,
        settings: Arc<ArcSwap<ConnSettings>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                running: Mutex::new(running),
                live,
                settings,
            }),
        }
    }

    /// Reads `path`, and applies it if it is valid; logs and counts the outcome either way.
    pub fn reload_file(&self, path: &Path) -> Result<Reloaded, ReloadError> {
        let result = Config::load(path)
            .map_err(ReloadError::Config)
            .and_then(|config| self.apply(config));
        let metrics = &self.inner.live.metrics;
        match &result {
            Ok(reloaded) => {
                metrics.reload_succeeded();
                for key in &reloaded.needs_restart {
                    tracing::warn!(
                        key,
                        "reload: {key} changed, but that takes a restart; it keeps its running value"
                    );
                }
                tracing::info!(file = %path.display(), "configuration reloaded");
            }
            Err(ReloadError::Config(errors)) => {
                metrics.reload_failed();
                for error in &errors.errors {
                    tracing::error!(
                        file = %path.display(),
                        key = %error.key,
                        line = error.line,
                        "reload refused, the running configuration stays: {}",
                        error.message
                    );
                }
            }
            Err(error) => {
                metrics.reload_failed();
                tracing::error!(file = %path.display(), error = %error, "reload refused, the running configuration stays");
            }
        }
        result
    }

    /// Applies an already validated configuration.
    pub fn apply(&self, config: Config) -> Result<Reloaded, ReloadError> {
        let mut running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (effective, needs_restart) = merge(&running, config);
        // Everything that can fail is built before anything is swapped: a reload applies whole or not at all.
        let settings = ConnSettings::new(&effective, self.inner.settings.load().slots())?;
        if let (Some(old), Some(new)) = (&running.session, &effective.session) {
            if old.cookie_name != new.cookie_name {
                tracing::warn!(
                    "reload: session.cookie_name changed; members signed in before must sign in again"
                );
            }
        }
        let shared = self.inner.live.load().reloaded(&effective);
        self.inner.live.store(shared);
        self.inner.settings.store(Arc::new(settings));
        *running = effective;
        Ok(Reloaded { needs_restart })
    }
}

/// `new` with every restart-only key at its running value, and the names of those that differed.
fn merge(running: &Config, mut new: Config) -> (Config, Vec<&'static str>) {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($key:literal, $($field:ident).+) => {
            if !same(&running.$($field).+, &new.$($field).+) {
                kept.push($key);
                new.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    keep!("listen", listen);
    keep!("workers", workers);
    keep!("public_url", public_url);
    keep!("directory.path", directory.path);
    keep!("log.format", log.format);
    keep!("limits.max_connections", limits.max_connections);
    keep!("limits.shutdown_timeout", limits.shutdown_timeout);
    keep!("admin.listen", admin.listen);
    keep!("admin.enabled", admin.enabled);
    if running.admin.token != new.admin.token {
        kept.push("admin.token");
        new.admin.token.clone_from(&running.admin.token);
    }

    // The upstream pools live in the workers: the whole section is kept if any of it changed.
    let upstream_keys: [(&'static str, bool); 5] = [
        (
            "upstream.url",
            same(&running.upstream.url, &new.upstream.url),
        ),
        (
            "upstream.connect_timeout",
            same(
                &running.upstream.connect_timeout,
                &new.upstream.connect_timeout,
            ),
        ),
        (
            "upstream.timeout",
            same(&running.upstream.timeout, &new.upstream.timeout),
        ),
        (
            "upstream.preserve_host",
            same(&running.upstream.preserve_host, &new.upstream.preserve_host),
        ),
        (
            "upstream.pool_idle_timeout",
            same(
                &running.upstream.pool_idle_timeout,
                &new.upstream.pool_idle_timeout,
            ),
        ),
    ];
    let changed: Vec<&'static str> = upstream_keys
        .iter()
        .filter(|(_, same)| !same)
        .map(|(key, _)| *key)
        .collect();
    if !changed.is_empty() {
        kept.extend(changed);
        new.upstream = running.upstream.clone();
    }

    // Certificates reload; the TLS socket itself does not come or go.
    match (&running.tls, &mut new.tls) {
        (Some(old), Some(tls)) => {
            if old.listen != tls.listen {
                kept.push("tls.listen");
                tls.listen = old.listen;
            }
        }
        (None, None) => {}
        (old, _) => {
            kept.push("tls");
            new.tls.clone_from(old);
        }
    }
    if running.sso.is_some() != new.sso.is_some() {
        kept.push("sso");
        new.sso.clone_from(&running.sso);
        new.session.clone_from(&running.session);
    }
    (new, kept)
}

/// Whether two values are the same. Debug output is compared because config types hold secrets and foreign types
/// without `PartialEq`; it is never shown.
fn same<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Config {
        Config::parse(yaml, "test", &|_| None).unwrap()
    }

    #[test]
    fn restart_only_keys_keep_their_running_values() {
        let running = parse("listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:3000\n");
        let new = parse(
            "listen: 127.0.0.1:8081\nupstream:\n  url: http://127.0.0.1:3001\n  timeout: 5s\n\
             limits:\n  header_read_timeout: 3s\n",
        );
        let (effective, kept) = merge(&running, new);
        // public_url follows listen when the file does not set it.
        assert_eq!(
            kept,
            ["listen", "public_url", "upstream.url", "upstream.timeout"]
        );
        assert_eq!(effective.listen, running.listen);
        assert_eq!(effective.upstream.url, running.upstream.url);
        assert_eq!(
            effective.limits.header_read_timeout,
            std::time::Duration::from_secs(3)
        );
    }

    #[test]
    fn an_unchanged_file_needs_no_restart() {
        let yaml = "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:3000\n";
        let (_, kept) = merge(&parse(yaml), parse(yaml));
        assert!(kept.is_empty(), "{kept:?}");
    }
}
