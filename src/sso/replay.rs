//! Each token is accepted once.
//!
//! A token is known by its fingerprint: the SHA-256 of its `jti` (with the key id, so two integrators' ids cannot
//! collide) when it has one, else of the whole token. Fingerprints are remembered until the token could no longer
//! pass the time checks anyway (`exp` plus the leeway), then swept, so memory is bounded by the token lifetime times
//! the login rate. This is the in-memory guard of one gateway instance; several instances will share a Redis-backed
//! one behind the same two calls.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::digest;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

pub type Fingerprint = [u8; 32];

/// The fingerprint a token is remembered by.
pub fn fingerprint(key_id: &str, jti: Option<&str>, token: &str) -> Fingerprint {
    let mut context = digest::Context::new(&digest::SHA256);
    match jti {
        Some(jti) => {
            context.update(b"jti\0");
            context.update(key_id.as_bytes());
            context.update(b"\0");
            context.update(jti.as_bytes());
        }
        None => {
            context.update(b"token\0");
            context.update(token.as_bytes());
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

#[derive(Debug, Default)]
pub struct ReplayGuard {
    /// Fingerprint -> Unix second until which a second use is refused.
    seen: DashMap<Fingerprint, i64>,
    inserts: AtomicUsize,
}

impl ReplayGuard {
    /// Records the token's first use; `false` when it was already used and is still remembered.
    pub fn first_use(&self, fingerprint: Fingerprint, until: i64, now: i64) -> bool {
        // The entry API holds the shard lock between the look and the insert: two racing uses cannot both win.
        let first = match self.seen.entry(fingerprint) {
            Entry::Occupied(mut entry) => {
                if *entry.get() >= now {
                    false
                } else {
                    entry.insert(until);
                    true
                }
            }
            Entry::Vacant(entry) => {
                entry.insert(until);
                true
            }
        };
        // Sweep now and then from the request path too, so a burst cannot outgrow the periodic sweep.
        if first && self.inserts.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.sweep(now);
        }
        first
    }

    /// Whether the token was used already (without recording this use).
    pub fn seen(&self, fingerprint: &Fingerprint, now: i64) -> bool {
        self.seen
            .get(fingerprint)
            .is_some_and(|until| *until >= now)
    }

    /// Forgets one use, when the login it began failed for a reason that is not the token's (so it may be retried).
    pub fn forget(&self, fingerprint: &Fingerprint) {
        self.seen.remove(fingerprint);
    }

    /// Forgets fingerprints whose tokens have expired.
    pub fn sweep(&self, now: i64) {
        self.seen.retain(|_, until| *until >= now);
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_is_refused_until_expiry_then_swept() {
        let guard = ReplayGuard::default();
        let print = fingerprint("main", Some("abc"), "ignored");
        assert!(guard.first_use(print, 100, 50));
        assert!(!guard.first_use(print, 100, 60));
        assert!(!guard.first_use(print, 100, 100));
        guard.sweep(101);
        assert!(guard.is_empty());
        // The same jti under another key is another token.
        assert_ne!(print, fingerprint("other", Some("abc"), "ignored"));
        assert_ne!(
            fingerprint("main", None, "t1"),
            fingerprint("main", None, "t2")
        );
    }
}
