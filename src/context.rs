//! The request's context for log lines: its id and, once known, its member.
//!
//! The gateway runs each request inside [`scope`]; [`crate::logging`] reads the context of whatever task is
//! emitting an event and adds `request_id` and `member` to the line. So every line logged while a request is served,
//! in any module, names its request without each call passing the id along, and lines from elsewhere (the directory's
//! writer thread, the accept loops) carry none.
//!
//! Request ids are 32 hex digits, like nginx's `$request_id`. They come from a per-thread generator seeded from the
//! system RNG: unique and unpredictable enough to correlate logs, and cheap (no syscall per request).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::Arc;

use http::HeaderValue;

/// The header a request id travels in, to the forum and back to the client.
pub const HEADER: &str = "x-request-id";

/// The longest request id accepted from a trusted proxy.
const MAX_INCOMING_LEN: usize = 200;

/// What log lines about one request carry.
#[derive(Debug)]
pub struct RequestContext {
    id: Arc<str>,
    member: RefCell<Option<Arc<str>>>,
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

impl RequestContext {
    pub fn new(id: Arc<str>) -> Self {
        Self {
            id,
            member: RefCell::new(None),
        }
    }
}

/// Runs `future` with `context` as the current request's.
pub fn scope<F: Future>(context: RequestContext, future: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(context, future)
}

/// Records the member the current request acts for (no-op outside a request).
pub fn set_member(member: &str) {
    let _ = CURRENT.try_with(|context| {
        *context.member.borrow_mut() = Some(Arc::from(member));
    });
}

/// The current request's id and member, if the caller runs inside a request.
pub fn current() -> Option<(Arc<str>, Option<Arc<str>>)> {
    CURRENT
        .try_with(|context| {
            let member = context.member.try_borrow().ok().and_then(|m| m.clone());
            (Arc::clone(&context.id), member)
        })
        .ok()
}

/// The member the current request acts for, once known.
pub fn current_member() -> Option<Arc<str>> {
    CURRENT
        .try_with(|context| context.member.try_borrow().ok().and_then(|m| m.clone()))
        .ok()
        .flatten()
}

thread_local! {
    static GENERATOR: Cell<(u64, u64)> = Cell::new(seed());
}

fn seed() -> (u64, u64) {
    let bytes = crate::session::random_bytes();
    let (a, b) = bytes.split_at(8);
    let word = |half: &[u8]| {
        half.iter()
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte))
    };
    // xorshift128+ must not start at all zeros.
    (word(a) | 1, word(b))
}

/// A fresh request id: 32 lowercase hex digits.
pub fn new_id() -> Arc<str> {
    let (high, low) = GENERATOR.with(|state| {
        // xorshift128+ (Vigna): fast, and seeded per thread from the system RNG.
        let next = |state: &Cell<(u64, u64)>| {
            let (mut s1, s0) = state.get();
            s1 ^= s1 << 23;
            let s1 = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
            state.set((s0, s1));
            s1.wrapping_add(s0)
        };
        (next(state), next(state))
    });
    let mut hex = [0u8; 32];
    for (i, nibble) in (0..16)
        .rev()
        .map(|i| (high >> (i * 4)) & 0xf)
        .chain((0..16).rev().map(|i| (low >> (i * 4)) & 0xf))
        .enumerate()
    {
        hex[i] = b"0123456789abcdef"[nibble as usize];
    }
    Arc::from(std::str::from_utf8(&hex).unwrap_or("00000000000000000000000000000000"))
}

/// A request id a trusted proxy sent, if it is one we can log and forward verbatim: 1 to 200 visible ASCII
/// characters (no spaces, quotes or backslashes that would need escaping in a log line).
pub fn accept_incoming(value: &HeaderValue) -> Option<Arc<str>> {
    let bytes = value.as_bytes();
    let usable = !bytes.is_empty()
        && bytes.len() <= MAX_INCOMING_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\'));
    if !usable {
        return None;
    }
    std::str::from_utf8(bytes).ok().map(Arc::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_digits_and_differ() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn incoming_ids_must_be_plain() {
        let ok = HeaderValue::from_static("req-123_abc.def:42");
        assert_eq!(accept_incoming(&ok).as_deref(), Some("req-123_abc.def:42"));
        for bad in ["", "has space", "quote\"d", "back\\slash"] {
            let value = HeaderValue::from_str(bad).unwrap_or(HeaderValue::from_static(" "));
            assert!(accept_incoming(&value).is_none(), "{bad:?}");
        }
        let long = HeaderValue::from_str(&"a".repeat(201)).unwrap_or(HeaderValue::from_static(" "));
        assert!(accept_incoming(&long).is_none());
    }

    #[tokio::test]
    async fn the_scope_carries_id_and_member() {
        assert!(current().is_none());
        let (id, member) = scope(RequestContext::new(Arc::from("abc")), async {
            set_member("m1");
            current()
        })
        .await
        .unwrap_or((Arc::from(""), None));
        assert_eq!(&*id, "abc");
        assert_eq!(member.as_deref(), Some("m1"));
    }
}
