//! The signed assertion: a short-lived JWT in a header, restating the identity headers, so a forum can check that
//! they came from the gateway and not from someone who reached the forum directly.
//!
//! HS256 with a shared secret by default; ES256 with a P-256 key as an option, whose public half the gateway
//! publishes as a JWKS (`identity.assertion.jwks_path`), so the forum needs no secret at all. The audience is the
//! upstream's URL and the issuer the gateway's public URL.

use base64::Engine as _;
use http::HeaderName;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::config::forum::{AssertionConfig, AssertionKey};
use crate::directory::Member;

#[derive(Clone)]
pub struct Assertion {
    header: HeaderName,
    key: EncodingKey,
    jwt_header: Header,
    ttl: i64,
    issuer: String,
    jwks: Option<(String, String)>,
}

impl std::fmt::Debug for Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertion")
            .field("header", &self.header)
            .field("alg", &self.jwt_header.alg)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Assertion {
    /// `issuer` is the gateway's public URL. Fails only if the (already validated) key cannot be used.
    pub fn new(config: &AssertionConfig, issuer: &str) -> Option<Self> {
        let ttl = i64::try_from(config.ttl.as_secs()).unwrap_or(60);
        let (key, jwt_header, jwks) = match &config.key {
            AssertionKey::Hs256(secret) => (
                EncodingKey::from_secret(secret),
                Header::new(Algorithm::HS256),
                None,
            ),
            AssertionKey::Es256 { pkcs8, .. } => {
                let (jwk, kid) = p256_jwk(pkcs8)?;
                let mut header = Header::new(Algorithm::ES256);
                header.kid = Some(kid);
                let jwks = json!({ "keys": [jwk] }).to_string();
                (
                    EncodingKey::from_ec_der(pkcs8),
                    header,
                    Some((config.jwks_path.clone(), jwks)),
                )
            }
        };
        Some(Self {
            header: config.header.clone(),
            key,
            jwt_header,
            ttl,
            issuer: issuer.trim_end_matches('/').to_owned(),
            jwks,
        })
    }

    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The JWKS document and the path it is served at (ES256 only).
    pub fn jwks(&self) -> Option<(&str, &str)> {
        self.jwks
            .as_ref()
            .map(|(path, body)| (path.as_str(), body.as_str()))
    }

    /// A fresh assertion for `member` and its expiry (Unix seconds).
    pub fn sign(&self, member: &Member, audience: &str, now: i64) -> Option<(String, i64)> {
        let expires = now + self.ttl;
        let mut claims = json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": member.id,
            "ext_sub": member.sub,
            "email": member.email,
            "name": member.name,
            "iat": now,
            "exp": expires,
        });
        let optional = [
            ("given_name", &member.first_name),
            ("family_name", &member.last_name),
            ("picture", &member.picture),
            ("locale", &member.lang),
            ("zoneinfo", &member.timezone),
            ("title", &member.title),
            ("tagline", &member.tagline),
        ];
        for (claim, value) in optional {
            if let Some(value) = value {
                claims[claim] = Value::String(value.clone());
            }
        }
        if !member.spaces.is_empty() {
            claims["spaces"] = Value::Array(
                member
                    .spaces
                    .iter()
                    .map(|space| json!({"id": space.space_id, "role": space.role}))
                    .collect(),
            );
        }
        if !member.custom.is_empty() {
            claims["custom"] = Value::Object(member.custom.clone());
        }
        match jsonwebtoken::encode(&self.jwt_header, &claims, &self.key) {
            Ok(token) => Some((token, expires)),
            Err(error) => {
                tracing::error!(error = %error, "cannot sign the identity assertion");
                None
            }
        }
    }
}

/// The public JWK of a P-256 PKCS#8 key, and its key id (a thumbprint prefix).
fn p256_jwk(pkcs8: &[u8]) -> Option<(Value, String)> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).ok()?;
    let point = pair.public_key().as_ref();
    // Uncompressed SEC1 point: 0x04 || X (32 bytes) || Y (32 bytes).
    if point.len() != 65 || point[0] != 4 {
        return None;
    }
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
    // RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    let kid = b64(digest.as_ref());
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"});
    Some((jwk, kid))
}
