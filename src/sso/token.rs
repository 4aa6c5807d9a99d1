//! JWT verification as RFC 8725 asks: the algorithm comes from the configured key, never from the token.
//!
//! jsonwebtoken checks the signature over the token's raw text (so header order and escaping, which differ between
//! PyJWT, node `jsonwebtoken` and php-jwt, do not matter). Its claim checks are all switched off, each explicitly:
//! its defaults require `exp`, refuse any `aud` until an audience is set, and skip an `exp` they cannot parse when
//! `exp` validation is off. The time and audience rules are checked here instead, on the raw JSON, so each refusal
//! can say exactly what is wrong ("expired 42 s ago") and a malformed claim is refused, never skipped.

use std::collections::HashSet;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::config::auth::{SsoConfig, SsoKey};

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Why a token was refused. The text is for the log; it never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("token is {0} bytes, over the {MAX_TOKEN_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `none`, an algorithm no key uses, or one that differs from the key the `kid` names.
    #[error("algorithm {0} is not accepted")]
    AlgorithmNotAllowed(String),
    #[error("no configured key has kid {0:?}")]
    UnknownKey(String),
    #[error("signature does not verify with any configured key")]
    BadSignature,
    #[error("expired {0} s ago (exp, beyond the leeway)")]
    Expired(u64),
    #[error("not valid for another {0} s (nbf)")]
    NotYetValid(u64),
    #[error("issued {0} s in the future (iat): the issuer's clock is ahead")]
    IssuedInFuture(u64),
    #[error("issued {0} s ago (iat), over sso.max_token_age")]
    TooOld(u64),
    #[error("valid for {0} s (exp - iat), over sso.max_token_age")]
    LifetimeTooLong(u64),
    #[error("no exp claim (required by sso.require_exp, or with no iat either)")]
    MissingExp,
    #[error("required claim {0} is missing")]
    MissingClaim(&'static str),
    #[error("claim {claim} is invalid: {why}")]
    InvalidClaim { claim: &'static str, why: String },
    #[error("iss is not the configured sso.issuer")]
    WrongIssuer,
    #[error("aud does not name the configured sso.audience")]
    WrongAudience,
    #[error("token was already used")]
    Replayed,
}

/// A token whose signature and time claims passed.
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: Map<String, Value>,
    pub key_id: String,
    /// Until when a replay must be refused: `exp` (or `iat` + max age) plus the leeway; `None` means forever.
    pub remember_until: Option<i64>,
    pub jti: Option<String>,
}

/// The configured keys with their pinned validations, and the claim rules.
///
/// [`Verifier::verify`] is what the SSO entry runs. It is a chain of public steps ([`Header::read`],
/// [`Verifier::candidates`], [`Verifier::signature`], [`Verifier::check_time`], [`Verifier::check_issuer`],
/// [`Verifier::check_audience`], [`check_jti`]) so that `ssogate token check` can run the very same steps one by one
/// and report each, instead of a second implementation that could drift from this one.
#[derive(Debug)]
pub struct Verifier {
    keys: Vec<PinnedKey>,
    leeway: i64,
    max_age: i64,
    require_exp: bool,
    allow_no_expiry: bool,
    issuer: Option<String>,
    audience: Option<Vec<String>>,
}

/// One configured key with the jsonwebtoken validation pinned to its algorithm.
#[derive(Debug)]
pub struct PinnedKey {
    pub key: SsoKey,
    validation: Validation,
}

/// The time claims of a token that passed [`Verifier::check_time`], as Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeClaims {
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

impl Verifier {
    pub fn new(config: &SsoConfig) -> Self {
        let keys = config
            .keys
            .iter()
            .map(|key| PinnedKey {
                key: key.clone(),
                validation: pinned_validation(key.algorithm),
            })
            .collect();
        Self {
            keys,
            leeway: secs(config.leeway),
            max_age: secs(config.max_token_age),
            require_exp: config.require_exp,
            allow_no_expiry: config.danger_accept_tokens_without_expiry,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        }
    }

    /// Checks size, header, key, signature and the time, issuer and audience claims. `now` is Unix seconds.
    pub fn verify(&self, token: &str, now: i64) -> Result<Verified, TokenError> {
        let header = Header::read(token)?;
        let candidates = self.candidates(&header)?;
        let (claims, key_id) = self.signature(token, &header, &candidates)?;
        let times = self.check_time(&claims, now)?;
        self.check_issuer(&claims)?;
        self.check_audience(&claims)?;
        let jti = check_jti(&claims)?;
        Ok(Verified {
            remember_until: self.remember_until(times),
            claims,
            key_id,
            jti,
        })
    }

    /// The keys a token with this header may be signed with: the one its `kid` names (whose algorithm must be the
    /// header's), else every key pinned to the header's algorithm, in configured order.
    pub fn candidates(&self, header: &Header) -> Result<Vec<&PinnedKey>, TokenError> {
        let Some(alg) = parse_alg(&header.alg) else {
            return Err(TokenError::AlgorithmNotAllowed(header.alg.clone()));
        };
        if let Some(kid) = &header.kid {
            let Some(entry) = self.keys.iter().find(|pinned| &pinned.key.id == kid) else {
                return Err(TokenError::UnknownKey(kid.chars().take(64).collect()));
            };
            if entry.key.algorithm != alg {
                return Err(TokenError::AlgorithmNotAllowed(format!(
                    "{} (key {:?} is pinned to {:?})",
                    header.alg, entry.key.id, entry.key.algorithm
                )));
            }
            return Ok(vec![entry]);
        }
        let matching: Vec<_> = self
            .keys
            .iter()
            .filter(|pinned| pinned.key.algorithm == alg)
            .collect();
        if matching.is_empty() {
            return Err(TokenError::AlgorithmNotAllowed(header.alg.clone()));
        }
        Ok(matching)
    }

    /// Verifies the signature with each candidate in turn: the claims and the id of the key that verified them.
    pub fn signature(
        &self,
        token: &str,
        header: &Header,
        candidates: &[&PinnedKey],
    ) -> Result<(Map<String, Value>, String), TokenError> {
        for pinned in candidates {
            let key = &pinned.key;
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &pinned.validation) {
                Ok(data) => return Ok((data.claims, key.id.clone())),
                Err(error) => match error.kind() {
                    ErrorKind::InvalidSignature => continue,
                    ErrorKind::Base64(_) => {
                        return Err(TokenError::Malformed("a segment is not base64url"));
                    }
                    ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                        // jsonwebtoken also parses the registered claims into its own types, and a claim of an
                        // odd type (`"sub": {}`) fails there as JSON. When the signature itself holds and the
                        // payload is a JSON object, the claim rules below give the precise refusal instead.
                        return match verified_payload(token, key) {
                            Some(map) => Ok((map, key.id.clone())),
                            None => Err(TokenError::Malformed("the payload is not a JSON object")),
                        };
                    }
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        return Err(TokenError::AlgorithmNotAllowed(header.alg.clone()));
                    }
                    // An RSA/EC key that cannot verify this signature shape, and any other failure: not authentic.
                    _ => continue,
                },
            }
        }
        Err(TokenError::BadSignature)
    }

    /// `exp`, `nbf` and `iat` against `now`, the leeway and `sso.max_token_age`.
    pub fn check_time(
        &self,
        claims: &Map<String, Value>,
        now: i64,
    ) -> Result<TimeClaims, TokenError> {
        let exp = numeric_date(claims, "exp")?;
        let nbf = numeric_date(claims, "nbf")?;
        let iat = numeric_date(claims, "iat")?;
        let leeway = self.leeway;

        match (exp, iat) {
            (Some(exp), _) if now > exp.saturating_add(leeway) => {
                return Err(TokenError::Expired(gap(now, exp)));
            }
            (None, _) if self.require_exp => return Err(TokenError::MissingExp),
            // Without exp, iat and max_token_age still bound the token; with neither, nothing does, and only the
            // operator's explicit danger_ option lets it in (single-use forever).
            (None, None) if !self.allow_no_expiry => return Err(TokenError::MissingExp),
            _ => {}
        }
        if let Some(nbf) = nbf {
            if now.saturating_add(leeway) < nbf {
                return Err(TokenError::NotYetValid(gap(nbf, now)));
            }
        }
        if let Some(iat) = iat {
            if iat > now.saturating_add(leeway) {
                return Err(TokenError::IssuedInFuture(gap(iat, now)));
            }
            if now.saturating_sub(iat) > self.max_age.saturating_add(leeway) {
                return Err(TokenError::TooOld(gap(now, iat)));
            }
        }
        match (exp, iat) {
            (Some(exp), Some(iat)) if exp.saturating_sub(iat) > self.max_age => {
                return Err(TokenError::LifetimeTooLong(gap(exp, iat)));
            }
            (Some(exp), None) if exp.saturating_sub(now) > self.max_age.saturating_add(leeway) => {
                return Err(TokenError::LifetimeTooLong(gap(exp, now)));
            }
            _ => {}
        }
        Ok(TimeClaims { exp, nbf, iat })
    }

    /// `iss` must equal `sso.issuer` when one is configured.
    pub fn check_issuer(&self, claims: &Map<String, Value>) -> Result<(), TokenError> {
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(TokenError::WrongIssuer);
            }
        }
        Ok(())
    }

    /// `aud` (a string or a list) must name one of `sso.audience` when it is configured.
    pub fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), TokenError> {
        if let Some(audience) = &self.audience {
            let named = match claims.get("aud") {
                Some(Value::String(aud)) => audience.contains(aud),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|aud| audience.iter().any(|a| a == aud)),
                _ => false,
            };
            if !named {
                return Err(TokenError::WrongAudience);
            }
        }
        Ok(())
    }

    /// Until when a replay must be refused: `exp` (or `iat` + max age) plus the leeway; `None` means forever.
    pub fn remember_until(&self, times: TimeClaims) -> Option<i64> {
        let leeway = self.leeway;
        match (times.exp, times.iat) {
            (Some(exp), _) => Some(exp.saturating_add(leeway)),
            (None, Some(iat)) => Some(
                iat.saturating_add(self.max_age)
                    .saturating_add(leeway.saturating_mul(2)),
            ),
            (None, None) => None,
        }
    }

    /// The configured keys, in the order they are tried.
    pub fn keys(&self) -> impl Iterator<Item = &SsoKey> {
        self.keys.iter().map(|pinned| &pinned.key)
    }

    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub fn leeway(&self) -> i64 {
        self.leeway
    }

    /// `sso.max_token_age` in seconds.
    pub fn max_age(&self) -> i64 {
        self.max_age
    }

    pub fn require_exp(&self) -> bool {
        self.require_exp
    }

    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    pub fn audience(&self) -> Option<&[String]> {
        self.audience.as_deref()
    }
}

/// `jti`, when present, must be a non-empty string of at most 256 bytes: the replay guard keys on it.
pub fn check_jti(claims: &Map<String, Value>) -> Result<Option<String>, TokenError> {
    match claims.get("jti") {
        None => Ok(None),
        Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= 256 => Ok(Some(jti.clone())),
        Some(_) => Err(TokenError::InvalidClaim {
            claim: "jti",
            why: "must be a non-empty string of at most 256 bytes".into(),
        }),
    }
}

/// The payload as a JSON object, only if the signature verifies with `key` (checked here again, explicitly).
fn verified_payload(token: &str, key: &SsoKey) -> Option<Map<String, Value>> {
    let (message, signature) = token.rsplit_once('.')?;
    if !jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, key.algorithm).ok()? {
        return None;
    }
    let payload = message.split_once('.')?.1;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Every jsonwebtoken check but the signature is off, on purpose and each by name: see the module doc.
fn pinned_validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.algorithms = vec![algorithm];
    validation.required_spec_claims = HashSet::new();
    validation.leeway = 0;
    validation.reject_tokens_expiring_in_less_than = 0;
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.aud = None;
    validation.iss = None;
    validation.sub = None;
    validation
}

/// The header fields that pick a key, parsed here so that `none` and unknown algorithms get a precise refusal.
#[derive(Debug, Clone)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    /// The whole header, for `ssogate token check` to show.
    pub fields: Map<String, Value>,
}

impl Header {
    /// Checks the token's size and shape and reads its header.
    pub fn read(token: &str) -> Result<Self, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge(token.len()));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("a JWT has three dot-separated parts"));
        };
        if header.is_empty() {
            return Err(TokenError::Malformed("empty header"));
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header.trim_end_matches('='))
            .map_err(|_| TokenError::Malformed("the header is not base64url"))?;
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(TokenError::Malformed("the header is not a JSON object"));
        };
        let alg = match fields.get("alg") {
            Some(Value::String(alg)) => alg.chars().take(32).collect(),
            _ => return Err(TokenError::Malformed("the header has no alg")),
        };
        let kid = match fields.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(TokenError::Malformed("kid is not a string")),
        };
        Ok(Self { alg, kid, fields })
    }
}

fn parse_alg(name: &str) -> Option<Algorithm> {
    crate::config::auth::parse_algorithm(name).ok()
}

/// A NumericDate claim (RFC 7519 §2): a JSON number of seconds, fractions allowed and floored.
pub fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, TokenError> {
    let invalid = |why: &str| TokenError::InvalidClaim {
        claim: name,
        why: why.to_owned(),
    };
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => {
            if let Some(value) = number.as_i64() {
                return Ok(Some(value));
            }
            match number.as_f64() {
                Some(value) if value.is_finite() && value.abs() < 1e15 => {
                    Ok(Some(value.floor() as i64))
                }
                _ => Err(invalid("out of range")),
            }
        }
        Some(_) => Err(invalid(
            "must be a number of seconds since 1970 (a JSON number, not a string)",
        )),
    }
}

fn gap(later: i64, earlier: i64) -> u64 {
    u64::try_from(later.saturating_sub(earlier)).unwrap_or(0)
}

fn secs(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}
