//! Rate limits on the SSO entry routes (governor's GCRA, keyed): per client address, and per subject.
//!
//! The address limit runs before the token is even parsed, so floods cost little. The subject limit runs after the
//! signature is verified, so a forged token cannot use up a real member's allowance. Stale keys are pruned on a
//! timer, or memory would grow with every address ever seen.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::auth::{Rate, RateLimitConfig};

#[derive(Debug)]
pub struct SsoLimits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_subject: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

/// Which limit refused a request, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub scope: &'static str,
    pub retry_after: Duration,
}

impl SsoLimits {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            per_ip: config
                .sso_per_ip
                .map(|rate| RateLimiter::keyed(quota(rate))),
            per_subject: config
                .sso_per_subject
                .map(|rate| RateLimiter::keyed(quota(rate))),
            clock: DefaultClock::default(),
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Limited> {
        let Some(limiter) = &self.per_ip else {
            return Ok(());
        };
        limiter.check_key(&ip).map_err(|not_until| Limited {
            scope: "client address",
            retry_after: not_until.wait_time_from(self.clock.now()),
        })
    }

    pub fn check_subject(&self, subject: &str) -> Result<(), Limited> {
        let Some(limiter) = &self.per_subject else {
            return Ok(());
        };
        // A borrowed key would need the map to hash &str; one short allocation per login is nothing next to a
        // signature check.
        limiter
            .check_key(&subject.to_owned())
            .map_err(|not_until| Limited {
                scope: "subject",
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Drops keys whose allowance is full again; call periodically.
    pub fn prune(&self) {
        if let Some(limiter) = &self.per_ip {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_subject {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn quota(rate: Rate) -> Quota {
    // One cell every `per / count`, bursts of `burst`.
    let period = rate.per / rate.count.get();
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(rate.burst)
}

/// `Retry-After` wants whole seconds; round up so a client that obeys is never refused again at once.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::auth::parse_rate;

    #[test]
    fn bursts_then_refuses_with_a_wait() {
        let limits = SsoLimits::new(&RateLimitConfig {
            sso_per_ip: parse_rate("2/s").unwrap(),
            sso_per_subject: parse_rate("1/m").unwrap(),
        });
        let ip: IpAddr = [192, 0, 2, 1].into();
        assert!(limits.check_ip(ip).is_ok());
        assert!(limits.check_ip(ip).is_ok());
        let refused = limits.check_ip(ip).unwrap_err();
        assert_eq!(refused.scope, "client address");
        assert!(refused.retry_after <= Duration::from_secs(1));
        assert!(
            limits.check_ip([192, 0, 2, 2].into()).is_ok(),
            "another address has its own allowance"
        );
        assert!(limits.check_subject("42").is_ok());
        assert!(retry_after_secs(limits.check_subject("42").unwrap_err().retry_after) >= 59);
        assert!(limits.check_subject("43").is_ok());
    }
}
