//! Claim profiles: turning a verified token's claims into the member's identity, as each platform's doc defines it.
//!
//! A missing or invalid *required* claim refuses the login, naming the claim. An invalid *optional* claim is
//! dropped, or set to the doc's default, and reported in [`Identity::notes`] for a log line.

use serde_json::{Map, Value};

use super::token::TokenError;
use crate::config::auth::Profile;

/// Longest value MeltingSpot accepts for its required claims; applied to Tribe's too.
pub const MAX_FIELD_CHARS: usize = 255;
/// Longest free-text optional claim (tagline, title) kept; longer ones are dropped.
const MAX_TEXT_CHARS: usize = 1024;
/// Longest URL kept for a picture or avatar.
const MAX_URL_CHARS: usize = 2048;

/// MeltingSpot's supported languages; anything else becomes `en`.
const MELTINGSPOT_LANGS: [&str; 3] = ["en", "fr", "de"];
const MELTINGSPOT_DEFAULT_LANG: &str = "en";
const MELTINGSPOT_DEFAULT_TIMEZONE: &str = "Europe/Paris";

/// Claims with a meaning of their own: never custom fields.
const REGISTERED: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];
const TRIBE_KNOWN: [&str; 7] = [
    "email",
    "name",
    "tagline",
    "picture",
    "spaceIds",
    "spaces",
    "spacesOperation",
];

/// Who the token says the member is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// The integrator's user id (`sub`), always as a string.
    pub sub: String,
    pub email: String,
    /// Display name: Tribe's `name`, or MeltingSpot's first and last name joined.
    pub name: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Tribe's `tagline`.
    pub tagline: Option<String>,
    /// MeltingSpot's `title` (job title).
    pub title: Option<String>,
    /// Tribe's `picture`, MeltingSpot's `avatarUrl`: http(s) only.
    pub picture: Option<String>,
    pub lang: Option<String>,
    pub timezone: Option<String>,
    /// Tribe: every other claim, for the custom-field mapping.
    pub custom: Map<String, Value>,
    pub spaces: SpaceClaims,
    /// Optional claims that were dropped or defaulted, for the log.
    pub notes: Vec<String>,
}

/// Tribe's `spaceIds`, `spaces` and `spacesOperation`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpaceClaims {
    pub space_ids: Vec<String>,
    pub spaces: Vec<SpaceChange>,
    pub operation: SpacesOperation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceChange {
    pub space_id: String,
    pub role: SpaceRole,
    pub action: SpaceAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceRole {
    Member,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceAction {
    Join,
    Leave,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpacesOperation {
    /// Keep the member's other spaces (Tribe's default).
    #[default]
    Add,
    /// Remove the member from every other space first.
    Replace,
}

impl Identity {
    /// Applies `profile` to verified claims.
    /// `custom_fields` maps profile fields to claim names (Tribe's external keys); when empty, every claim without a
    /// meaning of its own is kept as a custom field.
    pub fn from_claims(
        profile: Profile,
        claims: &Map<String, Value>,
        custom_fields: &[(String, Vec<String>)],
    ) -> Result<Self, TokenError> {
        Self::check(profile, claims, custom_fields).map_err(|problems| {
            // Never empty (see `check`); the fallback only keeps a broken invariant from becoming a panic.
            problems
                .into_iter()
                .next()
                .unwrap_or(TokenError::Malformed("the claims were refused"))
        })
    }

    /// Like [`Identity::from_claims`], but a refusal lists every missing or invalid required claim (never empty),
    /// in the order the profile reads them: the first is the one the SSO entry reports.
    pub fn check(
        profile: Profile,
        claims: &Map<String, Value>,
        custom_fields: &[(String, Vec<String>)],
    ) -> Result<Self, Vec<TokenError>> {
        let mut identity = match profile {
            Profile::Tribe => tribe(claims)?,
            Profile::MeltingSpot => meltingspot(claims)?,
        };
        if !custom_fields.is_empty() {
            identity.custom = map_custom_fields(claims, custom_fields);
        }
        Ok(identity)
    }
}

/// The refusals of one claim profile, gathered so that all of them can be reported at once.
#[derive(Default)]
struct Problems(Vec<TokenError>);

impl Problems {
    fn take<T>(&mut self, result: Result<T, TokenError>) -> Option<T> {
        result.map_err(|problem| self.0.push(problem)).ok()
    }
}

fn tribe(claims: &Map<String, Value>) -> Result<Identity, Vec<TokenError>> {
    let mut problems = Problems::default();
    let sub = problems.take(subject(claims));
    let email = problems.take(email(claims));
    let name = problems.take(required_text(claims, "name"));
    let (Some(sub), Some(email), Some(name)) = (sub, email, name) else {
        return Err(problems.0);
    };
    let mut identity = Identity {
        sub,
        email,
        name,
        ..Identity::default()
    };
    identity.tagline = optional_text(claims, "tagline", &mut identity.notes);
    identity.picture = optional_url(claims, "picture", &mut identity.notes);
    identity.spaces = space_claims(claims, &mut identity.notes);
    for (name, value) in claims {
        if !REGISTERED.contains(&name.as_str()) && !TRIBE_KNOWN.contains(&name.as_str()) {
            identity.custom.insert(name.clone(), value.clone());
        }
    }
    Ok(identity)
}

fn meltingspot(claims: &Map<String, Value>) -> Result<Identity, Vec<TokenError>> {
    let mut problems = Problems::default();
    let first = problems.take(required_text(claims, "firstName"));
    let last = problems.take(required_text(claims, "lastName"));
    let sub = problems.take(subject(claims));
    let email = problems.take(email(claims));
    let (Some(first), Some(last), Some(sub), Some(email)) = (first, last, sub, email) else {
        return Err(problems.0);
    };
    let mut identity = Identity {
        sub,
        email,
        name: format!("{first} {last}"),
        first_name: Some(first),
        last_name: Some(last),
        ..Identity::default()
    };
    identity.title = optional_text(claims, "title", &mut identity.notes);
    identity.picture = optional_url(claims, "avatarUrl", &mut identity.notes);
    identity.lang = Some(match claims.get("lang") {
        None | Some(Value::Null) => MELTINGSPOT_DEFAULT_LANG.to_owned(),
        Some(Value::String(lang)) if MELTINGSPOT_LANGS.contains(&lang.as_str()) => lang.clone(),
        Some(_) => {
            identity.notes.push(format!(
                "lang is not one of en, fr, de: using {MELTINGSPOT_DEFAULT_LANG}"
            ));
            MELTINGSPOT_DEFAULT_LANG.to_owned()
        }
    });
    identity.timezone = Some(match claims.get("timezone") {
        None | Some(Value::Null) => MELTINGSPOT_DEFAULT_TIMEZONE.to_owned(),
        Some(Value::String(zone)) if is_iana_zone(zone) => zone.clone(),
        Some(_) => {
            identity.notes.push(format!(
                "timezone is not an IANA time zone: using {MELTINGSPOT_DEFAULT_TIMEZONE}"
            ));
            MELTINGSPOT_DEFAULT_TIMEZONE.to_owned()
        }
    });
    Ok(identity)
}

/// Each field takes the first of its claims that is present and not empty.
fn map_custom_fields(
    claims: &Map<String, Value>,
    custom_fields: &[(String, Vec<String>)],
) -> Map<String, Value> {
    let mut out = Map::new();
    for (field, names) in custom_fields {
        let value = names
            .iter()
            .filter_map(|name| claims.get(name))
            .find(|value| match value {
                Value::Null => false,
                Value::String(text) => !text.trim().is_empty(),
                Value::Array(items) => !items.is_empty(),
                Value::Object(map) => !map.is_empty(),
                _ => true,
            });
        if let Some(value) = value {
            out.insert(field.clone(), value.clone());
        }
    }
    out
}

/// `sub` as a string: a JSON string, or an integer (both docs' samples send `user.id`) in decimal.
fn subject(claims: &Map<String, Value>) -> Result<String, TokenError> {
    let invalid = |why: &str| TokenError::InvalidClaim {
        claim: "sub",
        why: why.to_owned(),
    };
    let sub = match claims.get("sub") {
        None | Some(Value::Null) => return Err(TokenError::MissingClaim("sub")),
        Some(Value::String(sub)) => sub.clone(),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => number.to_string(),
        Some(Value::Number(number))
            if number
                .as_f64()
                .is_some_and(|f| f.fract() == 0.0 && f.abs() >= 1.8e19) =>
        {
            return Err(invalid(
                "an integer too large to be exact: send a user id that large as a string",
            ));
        }
        Some(Value::Number(_)) => return Err(invalid("a number with a fraction is not a user id")),
        Some(_) => return Err(invalid("must be a string or an integer")),
    };
    if sub.trim().is_empty() {
        return Err(invalid("must not be empty"));
    }
    if sub.chars().count() > MAX_FIELD_CHARS {
        return Err(invalid("longer than 255 characters"));
    }
    if sub.chars().any(char::is_control) {
        return Err(invalid("contains control characters"));
    }
    Ok(sub)
}

fn email(claims: &Map<String, Value>) -> Result<String, TokenError> {
    let text = required_text(claims, "email")?;
    if !is_valid_email(&text) {
        return Err(TokenError::InvalidClaim {
            claim: "email",
            why: "not a valid email address".into(),
        });
    }
    Ok(text)
}

fn required_text(claims: &Map<String, Value>, name: &'static str) -> Result<String, TokenError> {
    let invalid = |why: &str| TokenError::InvalidClaim {
        claim: name,
        why: why.to_owned(),
    };
    match claims.get(name) {
        None | Some(Value::Null) => Err(TokenError::MissingClaim(name)),
        Some(Value::String(text)) if text.trim().is_empty() => Err(invalid("must not be empty")),
        Some(Value::String(text)) if text.chars().count() > MAX_FIELD_CHARS => {
            Err(invalid("longer than 255 characters"))
        }
        Some(Value::String(text)) => Ok(text.trim().to_owned()),
        Some(_) => Err(invalid("must be a string")),
    }
}

fn optional_text(
    claims: &Map<String, Value>,
    name: &str,
    notes: &mut Vec<String>,
) -> Option<String> {
    match claims.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) if text.chars().count() <= MAX_TEXT_CHARS => {
            Some(text.trim().to_owned())
        }
        Some(Value::String(_)) => {
            notes.push(format!(
                "{name} dropped: longer than {MAX_TEXT_CHARS} characters"
            ));
            None
        }
        Some(_) => {
            notes.push(format!("{name} dropped: not a string"));
            None
        }
    }
}

fn optional_url(
    claims: &Map<String, Value>,
    name: &str,
    notes: &mut Vec<String>,
) -> Option<String> {
    let text = optional_text(claims, name, notes)?;
    let acceptable = text.chars().count() <= MAX_URL_CHARS
        && url::Url::parse(&text)
            .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
    if acceptable {
        Some(text)
    } else {
        notes.push(format!("{name} dropped: not an http:// or https:// URL"));
        None
    }
}

fn space_claims(claims: &Map<String, Value>, notes: &mut Vec<String>) -> SpaceClaims {
    let mut spaces = SpaceClaims::default();
    match claims.get("spaceIds") {
        None | Some(Value::Null) => {}
        Some(Value::Array(ids)) => {
            for id in ids {
                match id.as_str().map(str::trim).filter(|id| !id.is_empty()) {
                    Some(id) => spaces.space_ids.push(id.to_owned()),
                    None => {
                        notes.push("spaceIds: an item that is not a space id was dropped".into());
                    }
                }
            }
        }
        Some(_) => notes.push("spaceIds dropped: not an array".into()),
    }
    match claims.get("spaces") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                match space_change(item) {
                    Some(change) => spaces.spaces.push(change),
                    None => notes.push(
                        "spaces: an item without a spaceId, or with a role other than MEMBER/ADMIN or an action \
other than JOIN/LEAVE, was dropped"
                            .into(),
                    ),
                }
            }
        }
        Some(_) => notes.push("spaces dropped: not an array".into()),
    }
    spaces.operation = match claims.get("spacesOperation") {
        None | Some(Value::Null) => SpacesOperation::Add,
        Some(Value::String(op)) if op.eq_ignore_ascii_case("REPLACE") => SpacesOperation::Replace,
        Some(Value::String(op)) if op.eq_ignore_ascii_case("ADD") => SpacesOperation::Add,
        Some(_) => {
            notes.push("spacesOperation is not REPLACE or ADD: using ADD".into());
            SpacesOperation::Add
        }
    };
    spaces
}

fn space_change(item: &Value) -> Option<SpaceChange> {
    let object = item.as_object()?;
    let space_id = object.get("spaceId")?.as_str()?.trim();
    if space_id.is_empty() {
        return None;
    }
    let role = match object.get("role").and_then(Value::as_str) {
        None => SpaceRole::Member,
        Some(role) if role.eq_ignore_ascii_case("MEMBER") => SpaceRole::Member,
        Some(role) if role.eq_ignore_ascii_case("ADMIN") => SpaceRole::Admin,
        Some(_) => return None,
    };
    let action = match object.get("action").and_then(Value::as_str) {
        None => SpaceAction::Join,
        Some(action) if action.eq_ignore_ascii_case("JOIN") => SpaceAction::Join,
        Some(action) if action.eq_ignore_ascii_case("LEAVE") => SpaceAction::Leave,
        Some(_) => return None,
    };
    Some(SpaceChange {
        space_id: space_id.to_owned(),
        role,
        action,
    })
}

/// A pragmatic address check (what signup forms accept), not RFC 5322's full grammar: one `@`, a local part of
/// 1–64 characters without spaces, control characters, leading/trailing/double dots, and a domain of at least two
/// dot-separated labels of letters, digits and hyphens (non-ASCII letters allowed for IDNs).
pub fn is_valid_email(text: &str) -> bool {
    if text.chars().count() > MAX_FIELD_CHARS {
        return false;
    }
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    if local.is_empty() || local.chars().count() > 64 || domain.contains('@') {
        return false;
    }
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"".contains(c);
    if local.chars().any(bad_char)
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.chars().count() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// Whether `zone` names a zone in the IANA database (bundled, so the answer does not depend on the host).
pub fn is_iana_zone(zone: &str) -> bool {
    !zone.is_empty() && zone.len() <= 64 && jiff::tz::db().get(zone).is_ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(profile: Profile, claims: &Map<String, Value>) -> Result<Identity, TokenError> {
        Identity::from_claims(profile, claims, &[])
    }

    #[test]
    fn external_keys_take_the_first_non_empty_claim() {
        let claims = claims(
            json!({"sub": 1, "email": "a@b.co", "name": "A", "org": "", "company": "ACME", "x": 1}),
        );
        let mapping = vec![
            (
                "company".to_owned(),
                vec!["org".to_owned(), "company".to_owned()],
            ),
            ("missing".to_owned(), vec!["nope".to_owned()]),
        ];
        let identity = Identity::from_claims(Profile::Tribe, &claims, &mapping).unwrap();
        assert_eq!(identity.custom, claims_map(json!({"company": "ACME"})));
    }

    fn claims_map(value: Value) -> Map<String, Value> {
        claims(value)
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn tribe_profile_with_integer_sub_and_custom_fields() {
        let identity = parse(
            Profile::Tribe,
            &claims(json!({
                "sub": 42, "email": "ada@example.com", "name": "Ada Lovelace", "tagline": "Poet of science",
                "picture": "javascript:alert(1)", "spaceIds": ["s1", 7], "spacesOperation": "REPLACE",
                "spaces": [{"spaceId": "s2", "role": "ADMIN", "action": "JOIN"}, {"spaceId": "s3", "role": "OWNER"}],
                "company": "Analytical Engines", "iat": 1, "exp": 2
            })),
        )
        .unwrap();
        assert_eq!(identity.sub, "42");
        assert_eq!(identity.name, "Ada Lovelace");
        assert_eq!(identity.tagline.as_deref(), Some("Poet of science"));
        assert_eq!(identity.picture, None);
        assert_eq!(identity.spaces.space_ids, ["s1"]);
        assert_eq!(identity.spaces.operation, SpacesOperation::Replace);
        assert_eq!(identity.spaces.spaces.len(), 1);
        assert_eq!(
            identity.custom.get("company"),
            Some(&json!("Analytical Engines"))
        );
        assert!(!identity.custom.contains_key("iat"));
        assert_eq!(identity.notes.len(), 3, "{:?}", identity.notes);
    }

    #[test]
    fn meltingspot_defaults_and_limits() {
        let base =
            json!({"sub": "u1", "firstName": "Zoë", "lastName": "Ñúñez", "email": "z@example.fr"});
        let identity = parse(Profile::MeltingSpot, &claims(base.clone())).unwrap();
        assert_eq!(identity.name, "Zoë Ñúñez");
        assert_eq!(identity.lang.as_deref(), Some("en"));
        assert_eq!(identity.timezone.as_deref(), Some("Europe/Paris"));

        let mut with = claims(base.clone());
        with.insert("lang".into(), json!("es"));
        with.insert("timezone".into(), json!("Mars/Olympus"));
        with.insert("avatarUrl".into(), json!("ftp://x/y.png"));
        let identity = parse(Profile::MeltingSpot, &with).unwrap();
        assert_eq!(identity.lang.as_deref(), Some("en"));
        assert_eq!(identity.timezone.as_deref(), Some("Europe/Paris"));
        assert_eq!(identity.picture, None);
        assert_eq!(identity.notes.len(), 3);

        let mut with = claims(base.clone());
        with.insert("timezone".into(), json!("America/Argentina/Buenos_Aires"));
        with.insert("lang".into(), json!("de"));
        let identity = parse(Profile::MeltingSpot, &with).unwrap();
        assert_eq!(
            identity.timezone.as_deref(),
            Some("America/Argentina/Buenos_Aires")
        );
        assert_eq!(identity.lang.as_deref(), Some("de"));

        let mut long = claims(base);
        long.insert("lastName".into(), json!("x".repeat(256)));
        assert!(matches!(
            parse(Profile::MeltingSpot, &long),
            Err(TokenError::InvalidClaim {
                claim: "lastName",
                ..
            })
        ));
    }

    #[test]
    fn required_claims_are_named() {
        let missing = claims(json!({"sub": "1", "name": "A"}));
        assert_eq!(
            parse(Profile::Tribe, &missing),
            Err(TokenError::MissingClaim("email"))
        );
        for bad_sub in [
            json!(1.5),
            json!(""),
            json!({"id": 1}),
            json!(true),
            json!([1]),
        ] {
            let c = claims(json!({"sub": bad_sub, "name": "A", "email": "a@b.co"}));
            assert!(
                matches!(
                    parse(Profile::Tribe, &c),
                    Err(TokenError::InvalidClaim { claim: "sub", .. })
                ),
                "{bad_sub}"
            );
        }
        let c = claims(json!({"sub": "1", "name": "A", "email": "not-an-email"}));
        assert!(matches!(
            parse(Profile::Tribe, &c),
            Err(TokenError::InvalidClaim { claim: "email", .. })
        ));
    }

    #[test]
    fn every_refused_claim_is_listed_first_one_first() {
        let c = claims(json!({"sub": 1.5, "lastName": "L"}));
        let problems = Identity::check(Profile::MeltingSpot, &c, &[]).unwrap_err();
        assert_eq!(
            problems
                .iter()
                .map(|p| match p {
                    TokenError::MissingClaim(claim) | TokenError::InvalidClaim { claim, .. } =>
                        *claim,
                    _ => "?",
                })
                .collect::<Vec<_>>(),
            ["firstName", "sub", "email"]
        );
        assert_eq!(
            parse(Profile::MeltingSpot, &c),
            Err(TokenError::MissingClaim("firstName"))
        );
    }

    #[test]
    fn email_shapes() {
        for good in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "josé@exämple.de",
            "x_y-z@a-b.io",
        ] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "", "a", "a@", "@b.co", "a@b", "a b@c.de", "a@@b.co", "a@b..co", ".a@b.co", "a@-b.co",
            "a\n@b.co",
        ] {
            assert!(!is_valid_email(bad), "{bad:?}");
        }
    }
}
