//! The access log: one line per request, and what it may say about a request target.
//!
//! SSO links carry their token in the query string; a log line must never hold one, so the values of the configured
//! parameters (and anything shaped like a JWT) are written as `[redacted]`.
//!
//! The line is formatted here rather than by `tracing`'s formatter: at proxy speeds the generic formatter (field
//! visitors, a fresh timestamp, a `Debug` per field) cost about a third of the gateway's throughput. It still obeys
//! `RUST_LOG` (the target is `ssogate::access`), goes through the same buffer as every other line, and reads like
//! them: the same text layout, or the same JSON keys with `log.format: json`.

use std::cell::RefCell;
use std::fmt;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Uri, Version};
use tracing::Level;

use crate::config::LogFormat;
use crate::logging;

/// Everything one access line says.
#[derive(Debug)]
pub struct AccessLine<'a> {
    /// WARN when the upstream or the gateway failed, else INFO.
    pub level: Level,
    /// The peer's `IP:port`.
    pub peer: &'a str,
    pub method: &'a http::Method,
    pub target: RedactedTarget<'a>,
    pub version: Version,
    pub status: u16,
    /// Total time, in microseconds (written as milliseconds with three decimals).
    pub us: u64,
    pub upstream_us: Option<u64>,
    /// The decision (`proxied`, `signed_in`, ...) or the refusal's code.
    pub reason: &'static str,
    /// A refusal's cause.
    pub cause: Option<&'a str>,
    pub request_id: &'a str,
    pub member: Option<&'a str>,
}

thread_local! {
    /// The line being built, reused so a line costs no allocation.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    /// The current second, already formatted: most lines of a second share it.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Writes `line` to the log, if `RUST_LOG` lets `ssogate::access` through at its level and logging is set up.
pub fn write(line: &AccessLine<'_>) {
    let enabled = if line.level == Level::WARN {
        tracing::enabled!(target: "ssogate::access", Level::WARN)
    } else {
        tracing::enabled!(target: "ssogate::access", Level::INFO)
    };
    if !enabled {
        return;
    }
    let Some((buffer, format)) = logging::output() else {
        return;
    };
    SCRATCH.with(|scratch| {
        let Ok(mut bytes) = scratch.try_borrow_mut() else {
            return;
        };
        bytes.clear();
        let formatted = match format {
            LogFormat::Text => text(&mut bytes, line, buffer.ansi()),
            LogFormat::Json => json(&mut bytes, line),
        };
        if formatted.is_ok() {
            buffer.append(&bytes, line.level <= Level::WARN);
        }
    });
}

/// `2026-11-23T20:08:29.122880Z`, like the other lines' timestamps.
fn timestamp(out: &mut Vec<u8>) -> std::io::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != secs {
            let stamp = i64::try_from(secs)
                .ok()
                .and_then(|s| jiff::Timestamp::from_second(s).ok())
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            // "2026-11-23T20:08:29Z" without the Z: the fraction goes in between.
            let text = stamp.to_string();
            *second = (secs, text.trim_end_matches('Z').to_owned());
        }
        out.extend_from_slice(second.1.as_bytes());
        let micros = u64::from(now.subsec_micros());
        out.push(b'.');
        for place in [100_000, 10_000, 1000, 100, 10, 1] {
            out.push(digit(micros / place));
        }
        out.push(b'Z');
        Ok(())
    })
}

fn text(out: &mut Vec<u8>, line: &AccessLine<'_>, ansi: bool) -> std::io::Result<()> {
    timestamp(out)?;
    let warn = line.level == Level::WARN;
    out.extend_from_slice(match (ansi, warn) {
        (false, false) => b"  INFO ssogate::access: ".as_slice(),
        (false, true) => b"  WARN ssogate::access: ",
        (true, false) => b" \x1b[32m INFO\x1b[0m \x1b[2mssogate::access\x1b[0m\x1b[2m:\x1b[0m ",
        (true, true) => b" \x1b[33m WARN\x1b[0m \x1b[2mssogate::access\x1b[0m\x1b[2m:\x1b[0m ",
    });
    out.extend_from_slice(b"peer=");
    out.extend_from_slice(line.peer.as_bytes());
    out.extend_from_slice(b" method=");
    out.extend_from_slice(line.method.as_str().as_bytes());
    out.extend_from_slice(b" path=");
    line.target.write_to(out)?;
    out.extend_from_slice(b" version=");
    out.extend_from_slice(version(line.version).as_bytes());
    out.extend_from_slice(b" status=");
    out.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    out.extend_from_slice(b" ms=");
    millis(out, line.us);
    if let Some(upstream_us) = line.upstream_us {
        out.extend_from_slice(b" upstream_ms=");
        millis(out, upstream_us);
    }
    out.extend_from_slice(b" reason=");
    out.extend_from_slice(line.reason.as_bytes());
    if let Some(cause) = line.cause {
        out.extend_from_slice(b" cause=");
        out.extend_from_slice(cause.as_bytes());
    }
    out.extend_from_slice(b" request_id=");
    out.extend_from_slice(line.request_id.as_bytes());
    if let Some(member) = line.member {
        out.extend_from_slice(b" member=");
        out.extend_from_slice(member.as_bytes());
    }
    out.push(b'\n');
    Ok(())
}

fn json(out: &mut Vec<u8>, line: &AccessLine<'_>) -> std::io::Result<()> {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out)?;
    out.extend_from_slice(if line.level == Level::WARN {
        b"\",\"level\":\"WARN\",\"target\":\"ssogate::access\",\"peer\":".as_slice()
    } else {
        b"\",\"level\":\"INFO\",\"target\":\"ssogate::access\",\"peer\":"
    });
    json_string(out, line.peer)?;
    out.extend_from_slice(b",\"method\":");
    json_string(out, line.method.as_str())?;
    out.extend_from_slice(b",\"path\":");
    json_string(out, &line.target.to_string())?;
    out.extend_from_slice(b",\"version\":\"");
    out.extend_from_slice(version(line.version).as_bytes());
    out.extend_from_slice(b"\",\"status\":");
    out.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    out.extend_from_slice(b",\"ms\":");
    millis(out, line.us);
    if let Some(upstream_us) = line.upstream_us {
        out.extend_from_slice(b",\"upstream_ms\":");
        millis(out, upstream_us);
    }
    out.extend_from_slice(b",\"reason\":");
    json_string(out, line.reason)?;
    if let Some(cause) = line.cause {
        out.extend_from_slice(b",\"cause\":");
        json_string(out, cause)?;
    }
    out.extend_from_slice(b",\"request_id\":");
    json_string(out, line.request_id)?;
    if let Some(member) = line.member {
        out.extend_from_slice(b",\"member\":");
        json_string(out, member)?;
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// Microseconds written as milliseconds with three decimals (`1.234`).
fn millis(out: &mut Vec<u8>, us: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(us / 1000).as_bytes());
    let fraction = us % 1000;
    out.extend_from_slice(&[
        b'.',
        digit(fraction / 100),
        digit(fraction / 10),
        digit(fraction),
    ]);
}

/// The last decimal digit of `value`, as ASCII.
fn digit(value: u64) -> u8 {
    b"0123456789"[usize::try_from(value % 10).unwrap_or(0)]
}

/// As `http::Version`'s `Debug` writes it (what the lines always said).
fn version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

fn json_string(out: &mut Vec<u8>, text: &str) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, text).map_err(std::io::Error::other)
}

#[derive(Debug)]
pub struct RedactedTarget<'a> {
    uri: &'a Uri,
    params: &'a [String],
}

impl<'a> RedactedTarget<'a> {
    pub fn new(uri: &'a Uri, params: &'a [String]) -> Self {
        Self { uri, params }
    }

    /// Writes the target into a log line; a target without a query (most of them) is copied as it is.
    fn write_to(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        if self.uri.query().is_none() {
            out.extend_from_slice(self.uri.path().as_bytes());
            return Ok(());
        }
        write!(out, "{self}")
    }
}

impl fmt::Display for RedactedTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.uri.path())?;
        let Some(query) = self.uri.query() else {
            return Ok(());
        };
        f.write_str("?")?;
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            // A JWT under a parameter name nobody configured (a typo, a custom link) is masked all the same.
            if self.params.iter().any(|p| p.eq_ignore_ascii_case(&decoded)) || looks_like_jwt(value)
            {
                write!(f, "{name}=[redacted]")?;
            } else if value.is_empty() && !pair.contains('=') {
                f.write_str(name)?;
            } else {
                write!(f, "{name}={value}")?;
            }
        }
        Ok(())
    }
}

/// A compact JWS: `eyJ` (base64url of `{"`) and three dot-separated parts.
fn looks_like_jwt(value: &str) -> bool {
    value.starts_with("eyJ") && value.bytes().filter(|b| *b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_token_parameters_only() {
        let params = ["jwt".to_owned(), "ms_token".to_owned()];
        let uri: Uri = "/api/auth/sso?jwt=eyJ.a.b&redirect_uri=/x&flag&%6Ds_token=zzz"
            .parse()
            .unwrap_or_default();
        assert_eq!(
            RedactedTarget::new(&uri, &params).to_string(),
            "/api/auth/sso?jwt=[redacted]&redirect_uri=/x&flag&%6Ds_token=[redacted]"
        );
        let uri: Uri = "/x?custom=eyJhbGciOi.eyJzdWIi.c2ln&page=2"
            .parse()
            .unwrap_or_default();
        assert_eq!(
            RedactedTarget::new(&uri, &params).to_string(),
            "/x?custom=[redacted]&page=2"
        );
    }
}
