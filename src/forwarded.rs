//! `X-Forwarded-*`: who the client is, and what the upstream is told about it.
//!
//! A client can write any `X-Forwarded-For` it likes, so such headers are believed only when they come from a peer in
//! `trusted_proxies` (a load balancer in front of the gateway). From a trusted peer the chain is extended; from anyone
//! else it is replaced. The same rule gives [`Forwarding::client_ip`], the address rate limits are keyed on.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::HeaderMap;
use http::header::{FORWARDED, HeaderName, HeaderValue};
use ipnet::IpNet;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    trusted: Vec<IpNet>,
}

impl Forwarding {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The address of the real client: the peer, or, behind trusted proxies, the right-most address in
    /// `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return canonical(peer);
        }
        let mut client = canonical(peer);
        for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            let Ok(text) = value.to_str() else {
                return client;
            };
            for item in text.rsplit(',') {
                let Some(ip) = parse_forwarded_ip(item) else {
                    return client;
                };
                client = ip;
                if !self.is_trusted(ip) {
                    return client;
                }
            }
        }
        client
    }

    /// Sets `X-Forwarded-For`, `-Proto`, `-Host` and `X-Real-IP` on a request about to go upstream.
    ///
    /// `host` is the host the client asked for (its `Host` header or `:authority`).
    ///
    /// `peer_value` is the peer's address as [`peer_value`] renders it (a connection renders it once for all its
    /// requests).
    pub fn apply(
        &self,
        headers: &mut HeaderMap,
        peer: IpAddr,
        peer_value: &HeaderValue,
        proto: &'static str,
        host: Option<&HeaderValue>,
    ) {
        let trusted = self.is_trusted(peer);
        if trusted {
            let client = self.client_ip(peer, headers);
            let mut chain = String::with_capacity(48);
            for value in headers.get_all(&X_FORWARDED_FOR) {
                if let Ok(text) = value.to_str() {
                    let text = text.trim();
                    if !text.is_empty() {
                        chain.push_str(text);
                        chain.push_str(", ");
                    }
                }
            }
            let _ = write!(chain, "{}", canonical(peer));
            set(
                headers,
                &X_FORWARDED_FOR,
                HeaderValue::from_str(&chain).ok(),
            );
            set(
                headers,
                &X_REAL_IP,
                HeaderValue::from_str(&client.to_string()).ok(),
            );
        } else {
            // The usual case: the client is the peer, and both headers say just that.
            headers.insert(&X_FORWARDED_FOR, peer_value.clone());
            headers.insert(&X_REAL_IP, peer_value.clone());
        }

        if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
            set(
                headers,
                &X_FORWARDED_PROTO,
                Some(HeaderValue::from_static(proto)),
            );
        }
        if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
            set(headers, &X_FORWARDED_HOST, host.cloned());
        }
        if !trusted {
            // RFC 7239's header says the same things and an upstream may prefer it; an untrusted peer's is a lie.
            headers.remove(FORWARDED);
        }
    }
}

/// The peer's address as a header value (IPv4-mapped IPv6 shown as IPv4).
pub fn peer_value(peer: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&canonical(peer).to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: Option<HeaderValue>) {
    match value {
        Some(value) => {
            headers.insert(name.clone(), value);
        }
        None => {
            headers.remove(name);
        }
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) compare and print as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One `X-Forwarded-For` item: an address, optionally with a port (`1.2.3.4:5`, `[::1]:5`), as proxies write them.
fn parse_forwarded_ip(item: &str) -> Option<IpAddr> {
    let item = item.trim();
    if let Ok(ip) = item.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = item.parse::<std::net::SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    item.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn untrusted_peers_values_are_replaced() {
        let fwd = Forwarding::new(vec!["10.0.0.0/8".parse().unwrap_or_default()]);
        let mut h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=6.6.6.6"),
        ]);
        fwd.apply(
            &mut h,
            ip("192.0.2.1"),
            &peer_value(ip("192.0.2.1")),
            "http",
            Some(&HeaderValue::from_static("forum.test")),
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "forum.test");
        assert_eq!(h["x-real-ip"], "192.0.2.1");
        assert!(!h.contains_key("forwarded"));
    }

    #[test]
    fn trusted_peers_chain_is_extended() {
        let fwd = Forwarding::new(vec!["10.0.0.0/8".parse().unwrap_or_default()]);
        let mut h = headers(&[
            ("x-forwarded-for", "203.0.113.9, 10.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "forum.example"),
        ]);
        fwd.apply(
            &mut h,
            ip("10.0.0.2"),
            &peer_value(ip("10.0.0.2")),
            "http",
            Some(&HeaderValue::from_static("internal")),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.1.1.1, 10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "forum.example");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
    }

    #[test]
    fn client_ip_skips_trusted_hops_and_stops_at_garbage() {
        let fwd = Forwarding::new(vec!["10.0.0.0/8".parse().unwrap_or_default()]);
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 2.2.2.2, 10.9.9.9")]);
        assert_eq!(fwd.client_ip(ip("10.0.0.1"), &h), ip("2.2.2.2"));
        assert_eq!(fwd.client_ip(ip("192.0.2.5"), &h), ip("192.0.2.5"));
        let h = headers(&[("x-forwarded-for", "junk, 10.9.9.9")]);
        assert_eq!(fwd.client_ip(ip("10.0.0.1"), &h), ip("10.9.9.9"));
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(fwd.client_ip(ip("10.0.0.1"), &h), ip("2001:db8::1"));
        assert_eq!(
            fwd.client_ip(ip("::ffff:10.0.0.1"), &headers(&[])),
            ip("10.0.0.1")
        );
    }
}
