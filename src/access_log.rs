//! What the access log may say about a request target: the path, and the query with token values masked.
//!
//! SSO links carry their token in the query string; a log line must never hold one, so the values of the configured
//! parameters are written as `[redacted]`. Formatting happens only when the line is written (a `Display` value).

use std::fmt;

use http::Uri;

pub struct RedactedTarget<'a> {
    uri: &'a Uri,
    params: &'a [String],
}

impl<'a> RedactedTarget<'a> {
    pub fn new(uri: &'a Uri, params: &'a [String]) -> Self {
        Self { uri, params }
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
