//! Member rules over real sockets: which statuses may sign in by SSO, Tribe's spaces (ADD, REPLACE, per-space
//! actions) as the forum sees them in the groups header, and custom fields mapped from token claims.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use common::sso::{SECRET, hs256, open_session, session_cookie, sso_yaml, tribe_claims};
use common::upstream::{EchoUpstream, Seen};
use common::{Scratch, TestGateway, client};
use serde_json::{Value, json};

const NO_LIMITS: &str = "rate_limit:\n  sso_per_ip: off\n  sso_per_subject: off\n";

async fn start(scratch: &Scratch, sso_extra: &str) -> (TestGateway, EchoUpstream) {
    let upstream = EchoUpstream::start().await;
    let yaml = sso_yaml(&scratch.0, sso_extra, NO_LIMITS);
    (TestGateway::start(&yaml, upstream.addr).await, upstream)
}

async fn login(gateway: &TestGateway, claims: &Value) -> reqwest::Response {
    client()
        .get(gateway.url(&format!("/api/auth/sso?jwt={}", hs256(claims, SECRET))))
        .send()
        .await
        .unwrap()
}

/// What the forum sees for this session cookie.
async fn forum_view(gateway: &TestGateway, cookie: &str) -> Seen {
    let response = client()
        .get(gateway.url("/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    Seen(response.json().await.unwrap())
}

fn with(mut claims: Value, extra: Value) -> Value {
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            claims[k] = v;
        }
    }
    claims
}

#[tokio::test]
async fn only_deactivated_members_are_refused_by_sso() {
    let scratch = Scratch::new("members-status");
    let (gateway, _) = start(&scratch, "").await;
    let db = || {
        let db = rusqlite::Connection::open(scratch.0.join("ssogate.db")).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        db
    };
    for (i, status) in [
        "invited",
        "pending",
        "declined",
        "rejected",
        "left",
        "deactivated",
    ]
    .into_iter()
    .enumerate()
    {
        let sub = 100 + i as i64;
        let email = format!("{status}@example.com");
        let first = login(
            &gateway,
            &with(
                tribe_claims(sub, &email, "M"),
                json!({"jti": format!("{status}-a")}),
            ),
        )
        .await;
        assert_eq!(first.status(), 303);
        let member = open_session(&session_cookie(&first).unwrap())
            .unwrap()
            .member_id;
        db().execute(
            "UPDATE members SET status = ?2 WHERE id = ?1",
            [&member, status],
        )
        .unwrap();

        let again = login(
            &gateway,
            &with(
                tribe_claims(sub, &email, "M2"),
                json!({"jti": format!("{status}-b")}),
            ),
        )
        .await;
        let stored: (String, String) = db()
            .query_row(
                "SELECT status, name FROM members WHERE id = ?1",
                [&member],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        if status == "deactivated" {
            assert_eq!(again.status(), 403, "{status}");
            assert!(session_cookie(&again).is_none());
            assert_eq!(
                stored,
                ("deactivated".to_owned(), "M".to_owned()),
                "a refused login changes nothing"
            );
        } else {
            // MeltingSpot: members who come in through SSO are accepted, whatever their standing was.
            assert_eq!(again.status(), 303, "{status}");
            assert_eq!(stored.0, "active", "{status} became active");
        }
    }
    let audit: i64 = db()
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE action = 'sign_in_refused'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audit, 1);
}

#[tokio::test]
async fn tribe_spaces_add_replace_and_actions_reach_the_forum() {
    let scratch = Scratch::new("members-spaces");
    let secret = "assertion-secret-shared-with-the-forum-32b";
    let upstream = EchoUpstream::start().await;
    let yaml = sso_yaml(
        &scratch.0,
        "",
        &format!("{NO_LIMITS}identity:\n  assertion:\n    secret: {secret}\n"),
    );
    let gateway = TestGateway::start(&yaml, upstream.addr).await;
    let base = |jti: &str, extra: Value| {
        with(
            tribe_claims(7, "spaces@example.com", "S"),
            with(extra, json!({"jti": jti})),
        )
    };
    let groups = |seen: &Seen| seen.header("x-auth-groups").unwrap_or_default();

    let steps: [(Value, &str); 6] = [
        (json!({"spaceIds": ["a", "b"]}), "a:member,b:member"),
        // ADD (the default) keeps what the member had.
        (json!({"spaceIds": ["c"]}), "a:member,b:member,c:member"),
        // spaces items: their action decides; a role can be raised.
        (
            json!({"spaces": [{"spaceId": "b", "role": "ADMIN", "action": "JOIN"}, {"spaceId": "a", "action": "LEAVE"}]}),
            "b:admin,c:member",
        ),
        // REPLACE: only these.
        (
            json!({"spaceIds": ["d"], "spacesOperation": "REPLACE"}),
            "d:member",
        ),
        // With both fields, `spaces` wins for the space both name (Tribe: "the action field is the determinant").
        (
            json!({"spaceIds": ["x"], "spaces": [{"spaceId": "x", "action": "LEAVE"}, {"spaceId": "y", "role": "ADMIN"}],
                   "spacesOperation": "REPLACE"}),
            "y:admin",
        ),
        // REPLACE with no space claims changes nothing.
        (json!({"spacesOperation": "REPLACE"}), "y:admin"),
    ];
    let mut cookie = String::new();
    for (i, (extra, want)) in steps.into_iter().enumerate() {
        let response = login(&gateway, &base(&format!("step-{i}"), extra)).await;
        assert_eq!(response.status(), 303);
        cookie = session_cookie(&response).unwrap();
        assert_eq!(
            groups(&forum_view(&gateway, &cookie).await),
            want,
            "step {i}"
        );
    }
    // The assertion carries the same spaces.
    let seen = forum_view(&gateway, &cookie).await;
    let token = seen.header("x-auth-assertion").unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&[format!("http://{}", upstream.addr)]);
    let data = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .unwrap();
    assert_eq!(data.claims["spaces"], json!([{"id": "y", "role": "admin"}]));
    // Odd space ids cannot break the list: separators are escaped.
    let response = login(
        &gateway,
        &base(
            "odd",
            json!({"spaceIds": ["a,b:c%", "Zoë"], "spacesOperation": "REPLACE"}),
        ),
    )
    .await;
    let cookie = session_cookie(&response).unwrap();
    assert_eq!(
        groups(&forum_view(&gateway, &cookie).await),
        "Zo%C3%AB:member,a%2Cb%3Ac%25:member"
    );
}

#[tokio::test]
async fn custom_fields_are_mapped_from_the_first_non_empty_claim() {
    let scratch = Scratch::new("members-custom");
    let sso_extra =
        "  custom_fields:\n    company: [org, company, employer]\n    plan: [subscription]\n";
    let (gateway, _) = start(&scratch, sso_extra).await;
    let claims = with(
        tribe_claims(9, "c@example.com", "C"),
        json!({"org": "", "company": "Analytical Engines", "employer": "ignored", "unmapped": "dropped"}),
    );
    let response = login(&gateway, &claims).await;
    let cookie = session_cookie(&response).unwrap();
    let seen = forum_view(&gateway, &cookie).await;
    assert_eq!(
        seen.header("x-auth-field-company").as_deref(),
        Some("Analytical Engines")
    );
    assert!(seen.headers("x-auth-field-plan").is_empty());
    assert!(
        seen.headers("x-auth-field-unmapped").is_empty(),
        "with a mapping, only mapped fields are kept"
    );
}
