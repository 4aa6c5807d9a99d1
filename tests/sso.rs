//! The SSO entry over real sockets: every way a token can be refused, replays and floods, the directory's rules,
//! persistence through restarts and `kill -9`, and the session cookie. Tokens from PyJWT and node `jsonwebtoken`
//! are in `sso_interop.rs`; here they are built in Rust so each defect can be made on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::sso::{
    NEXT_SECRET, SECRET, hs256, meltingspot_claims, now, open_session, session_cookie, sso_yaml,
    tribe_claims, with_header,
};
use common::upstream::EchoUpstream;
use common::{GatewayProcess, Scratch, TestGateway, client};
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};

const NO_SUBJECT_LIMIT: &str = "rate_limit:\n  sso_per_subject: off\n  sso_per_ip: off\n";

async fn start_sso(scratch: &Scratch, sso_extra: &str, extra: &str) -> (TestGateway, EchoUpstream) {
    let upstream = EchoUpstream::start().await;
    let gateway = TestGateway::start(&sso_yaml(&scratch.0, sso_extra, extra), upstream.addr).await;
    (gateway, upstream)
}

async fn tribe_login(gateway: &TestGateway, token: &str) -> reqwest::Response {
    client()
        .get(gateway.url(&format!("/api/auth/sso?jwt={token}&redirect_uri=/spaces")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

/// The status and stable error code of a refused login (`None` code for a success).
async fn outcome(response: reqwest::Response) -> (u16, Option<String>, Option<String>) {
    let status = response.status().as_u16();
    if status == 303 {
        return (status, None, None);
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"].as_str().map(str::to_owned),
        body["detail"].as_str().map(str::to_owned),
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn valid_token_signs_in_and_redirects_with_a_sealed_session() {
    let scratch = Scratch::new("sso-ok");
    let (gateway, upstream) = start_sso(&scratch, "", "").await;
    let response = tribe_login(
        &gateway,
        &hs256(&tribe_claims(42, "ada@example.com", "Ada Lovelace"), SECRET),
    )
    .await;
    assert_eq!(response.status(), 303);
    let headers = response.headers();
    assert_eq!(headers["location"], "/spaces");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(set_cookie.len() < 4096);
    let session = open_session(&session_cookie(&response).unwrap()).expect("the cookie opens");
    assert_eq!(
        upstream.count(),
        0,
        "the entry route never reaches the forum"
    );

    // A second login (new token) of the same person: same member, new session.
    tokio::time::sleep(Duration::from_millis(1100)).await; // the per-subject limit is 1/s by default
    let again = tribe_login(
        &gateway,
        &hs256(&tribe_claims(42, "ada@example.com", "Ada L."), SECRET),
    )
    .await;
    assert_eq!(again.status(), 303);
    let second = open_session(&session_cookie(&again).unwrap()).unwrap();
    assert_eq!(second.member_id, session.member_id);
    assert_ne!(second.id, session.id, "every login gets a new session id");
}

#[tokio::test]
async fn algorithm_and_key_attacks_are_refused() {
    let scratch = Scratch::new("sso-alg");
    let (gateway, _) = start_sso(&scratch, "", NO_SUBJECT_LIMIT).await;
    let claims = tribe_claims(1, "a@example.com", "A");

    // alg none: no signature at all.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    assert_eq!(
        outcome(tribe_login(&gateway, &none).await)
            .await
            .1
            .as_deref(),
        Some("algorithm_not_allowed")
    );
    // Same with a signature part that is not empty, and the lower-case spelling.
    let none2 = format!(
        "{}.{}.AAAA",
        b64(br#"{"alg":"None"}"#),
        b64(claims.to_string().as_bytes())
    );
    assert_eq!(
        outcome(tribe_login(&gateway, &none2).await)
            .await
            .1
            .as_deref(),
        Some("algorithm_not_allowed")
    );
    // An algorithm no key uses, signed with the right secret.
    let hs384 = with_header(&Header::new(Algorithm::HS384), &claims, SECRET);
    assert_eq!(
        outcome(tribe_login(&gateway, &hs384).await)
            .await
            .1
            .as_deref(),
        Some("algorithm_not_allowed")
    );
    // A kid naming an HS256 key, with another algorithm.
    let mut header = Header::new(Algorithm::HS512);
    header.kid = Some("main".into());
    let mismatched = with_header(&header, &claims, SECRET);
    assert_eq!(
        outcome(tribe_login(&gateway, &mismatched).await)
            .await
            .1
            .as_deref(),
        Some("algorithm_not_allowed")
    );
    // The wrong secret.
    let wrong = hs256(&claims, "someone-elses-secret-that-is-long-enough!!");
    assert_eq!(
        outcome(tribe_login(&gateway, &wrong).await).await,
        (401, Some("bad_signature".into()), None)
    );
    // An unknown kid.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("retired".into());
    let unknown = with_header(&header, &claims, SECRET);
    assert_eq!(
        outcome(tribe_login(&gateway, &unknown).await)
            .await
            .1
            .as_deref(),
        Some("unknown_key")
    );
    // kid picks the rotated key; without kid every key with the algorithm is tried.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("next".into());
    let rotated = with_header(&header, &tribe_claims(2, "b@example.com", "B"), NEXT_SECRET);
    assert_eq!(outcome(tribe_login(&gateway, &rotated).await).await.0, 303);
    let rotated_no_kid = hs256(&tribe_claims(3, "c@example.com", "C"), NEXT_SECRET);
    assert_eq!(
        outcome(tribe_login(&gateway, &rotated_no_kid).await)
            .await
            .0,
        303
    );
    // A signature that is valid for another payload (payload swapped).
    let good = hs256(&claims, SECRET);
    let parts: Vec<&str> = good.split('.').collect();
    let other_payload = b64(tribe_claims(999, "evil@example.com", "Evil")
        .to_string()
        .as_bytes());
    let spliced = format!("{}.{}.{}", parts[0], other_payload, parts[2]);
    assert_eq!(
        outcome(tribe_login(&gateway, &spliced).await)
            .await
            .1
            .as_deref(),
        Some("bad_signature")
    );
}

#[tokio::test]
async fn time_claims_are_checked_with_leeway_and_say_by_how_much() {
    let scratch = Scratch::new("sso-time");
    let (gateway, _) = start_sso(&scratch, "", NO_SUBJECT_LIMIT).await;
    let now = now();
    let base = |sub: i64| json!({"sub": sub, "email": format!("u{sub}@example.com"), "name": "U"});
    let with = |sub: i64, extra: Value| {
        let mut claims = base(sub);
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        hs256(&claims, SECRET)
    };

    let (status, code, detail) = outcome(
        tribe_login(
            &gateway,
            &with(1, json!({"iat": now - 180, "exp": now - 120})),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_deref()), (401, Some("token_expired")));
    assert!(detail.unwrap().contains("expired 12"), "says how long ago");
    // Inside the 30 s leeway: accepted.
    assert_eq!(
        outcome(
            tribe_login(
                &gateway,
                &with(2, json!({"iat": now - 60, "exp": now - 10}))
            )
            .await
        )
        .await
        .0,
        303
    );
    let (_, code, _) = outcome(
        tribe_login(
            &gateway,
            &with(3, json!({"nbf": now + 120, "exp": now + 180})),
        )
        .await,
    )
    .await;
    assert_eq!(code.as_deref(), Some("token_not_yet_valid"));
    let (status, code, detail) = outcome(
        tribe_login(
            &gateway,
            &with(4, json!({"iat": now + 120, "exp": now + 180})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (401, Some("token_issued_in_future"))
    );
    assert!(
        detail.unwrap().contains("issued 1"),
        "says by how many seconds"
    );
    let (_, code, _) = outcome(
        tribe_login(
            &gateway,
            &with(5, json!({"iat": now - 3600, "exp": now + 60})),
        )
        .await,
    )
    .await;
    assert_eq!(code.as_deref(), Some("token_too_old"));
    let (_, code, _) =
        outcome(tribe_login(&gateway, &with(6, json!({"iat": now, "exp": now + 86_400}))).await)
            .await;
    assert_eq!(code.as_deref(), Some("token_lifetime_too_long"));
    let (_, code, _) =
        outcome(tribe_login(&gateway, &with(7, json!({"exp": now + 86_400}))).await).await;
    assert_eq!(
        code.as_deref(),
        Some("token_lifetime_too_long"),
        "no iat: exp itself is bounded"
    );
    // jsonwebtoken skips an exp it cannot parse when exp validation is off; ssogate refuses it.
    let (status, code, detail) =
        outcome(tribe_login(&gateway, &with(8, json!({"iat": now, "exp": "9999999999"}))).await)
            .await;
    assert_eq!((status, code.as_deref()), (400, Some("invalid_claim")));
    assert!(detail.unwrap().contains("exp"));
    let (_, code, _) =
        outcome(tribe_login(&gateway, &with(9, json!({"iat": "now", "exp": now + 60}))).await)
            .await;
    assert_eq!(code.as_deref(), Some("invalid_claim"));
    // No exp at all (the docs' samples often forget it): refused, and the page says what to do.
    let (status, code, _) =
        outcome(tribe_login(&gateway, &with(10, json!({"iat": now}))).await).await;
    assert_eq!((status, code.as_deref()), (400, Some("missing_exp")));
    let page = client()
        .get(gateway.url(&format!(
            "/api/auth/sso?jwt={}",
            with(11, json!({"iat": now}))
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("exp claim, 60 seconds"), "{page}");
    // A fractional NumericDate is fine (RFC 7519 allows it).
    assert_eq!(
        outcome(
            tribe_login(
                &gateway,
                &with(
                    12,
                    json!({"iat": now as f64 + 0.5, "exp": now as f64 + 60.25})
                )
            )
            .await
        )
        .await
        .0,
        303
    );
}

#[tokio::test]
async fn audience_and_issuer_follow_the_config() {
    let scratch = Scratch::new("sso-aud");
    // jsonwebtoken's default refuses any token with aud until an audience is set; integrators do send aud.
    let (gateway, _) = start_sso(&scratch, "", NO_SUBJECT_LIMIT).await;
    let mut claims = tribe_claims(1, "a@example.com", "A");
    claims["aud"] = json!("https://app.example.com");
    assert_eq!(
        outcome(tribe_login(&gateway, &hs256(&claims, SECRET)).await)
            .await
            .0,
        303
    );
    drop(gateway);

    let scratch = Scratch::new("sso-aud2");
    let (gateway, _) = start_sso(
        &scratch,
        "  audience: [forum.example.com]\n  issuer: https://app.example.com\n",
        NO_SUBJECT_LIMIT,
    )
    .await;
    let mut claims = tribe_claims(2, "b@example.com", "B");
    claims["aud"] = json!(["other", "forum.example.com"]);
    claims["iss"] = json!("https://app.example.com");
    assert_eq!(
        outcome(tribe_login(&gateway, &hs256(&claims, SECRET)).await)
            .await
            .0,
        303
    );
    let mut wrong = tribe_claims(3, "c@example.com", "C");
    wrong["aud"] = json!("someone-else");
    wrong["iss"] = json!("https://app.example.com");
    assert_eq!(
        outcome(tribe_login(&gateway, &hs256(&wrong, SECRET)).await)
            .await
            .1
            .as_deref(),
        Some("wrong_audience")
    );
    let mut wrong = tribe_claims(4, "d@example.com", "D");
    wrong["aud"] = json!("forum.example.com");
    wrong["iss"] = json!("https://evil.example.com");
    assert_eq!(
        outcome(tribe_login(&gateway, &hs256(&wrong, SECRET)).await)
            .await
            .1
            .as_deref(),
        Some("wrong_issuer")
    );
}

#[tokio::test]
async fn claims_are_checked_per_profile_and_named_on_the_page() {
    let scratch = Scratch::new("sso-claims");
    let (gateway, _) = start_sso(&scratch, "", NO_SUBJECT_LIMIT).await;
    let now = now();
    let missing = hs256(
        &json!({"sub": 1, "name": "A", "iat": now, "exp": now + 60}),
        SECRET,
    );
    let response = client()
        .get(gateway.url(&format!("/api/auth/sso?jwt={missing}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("required claim email is missing"),
        "the page names the claim: {page}"
    );

    for (sub, code) in [
        (json!(1.5), "invalid_claim"),
        (json!(""), "invalid_claim"),
        (json!({"id": 1}), "invalid_claim"),
    ] {
        let token = hs256(
            &json!({"sub": sub, "email": "a@example.com", "name": "A", "iat": now, "exp": now + 60}),
            SECRET,
        );
        assert_eq!(
            outcome(tribe_login(&gateway, &token).await)
                .await
                .1
                .as_deref(),
            Some(code),
            "sub {sub}"
        );
    }
    let bad_email = hs256(
        &json!({"sub": 2, "email": "not an email", "name": "A", "iat": now, "exp": now + 60}),
        SECRET,
    );
    let (_, code, detail) = outcome(tribe_login(&gateway, &bad_email).await).await;
    assert_eq!(code.as_deref(), Some("invalid_claim"));
    assert!(detail.unwrap().contains("email"));

    // MeltingSpot: 255-character limits; lang and timezone default when invalid.
    let ms_login = |token: String| {
        let url = gateway.url(&format!(
            "/sso/jwt?ms_token={token}&referrerUrl=/spot/1/lives"
        ));
        async move {
            client()
                .get(url)
                .header("accept", "application/json")
                .send()
                .await
                .unwrap()
        }
    };
    let mut long = meltingspot_claims("m1", "Zoë", "x", "z@example.fr");
    long["lastName"] = json!("n".repeat(256));
    assert_eq!(
        outcome(ms_login(hs256(&long, SECRET)).await)
            .await
            .1
            .as_deref(),
        Some("invalid_claim")
    );
    let mut missing_first = meltingspot_claims("m2", "Zoë", "Z", "z2@example.fr");
    missing_first.as_object_mut().unwrap().remove("firstName");
    let (_, code, detail) = outcome(ms_login(hs256(&missing_first, SECRET)).await).await;
    assert_eq!(code.as_deref(), Some("missing_claim"));
    assert!(detail.unwrap().contains("firstName"));
    let mut odd = meltingspot_claims("m3", "李", "小龍 🐉", "li@example.cn");
    odd["lang"] = json!("zz");
    odd["timezone"] = json!("Mars/Base");
    odd["avatarUrl"] = json!("javascript:alert(1)");
    let response = ms_login(hs256(&odd, SECRET)).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/spot/1/lives");
}

#[tokio::test]
async fn malformed_and_oversized_tokens_are_refused_before_parsing() {
    let scratch = Scratch::new("sso-malformed");
    let (gateway, _) = start_sso(&scratch, "", NO_SUBJECT_LIMIT).await;
    for token in [
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.e30.sig",
        "e30.%%%.sig",
        ".e30.sig",
    ] {
        let (status, code, _) = outcome(tribe_login(&gateway, token).await).await;
        assert_eq!(
            (status, code.as_deref()),
            (400, Some("malformed_token")),
            "{token}"
        );
    }
    // A payload that is not JSON, correctly signed.
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64(b"not json");
    let signature = {
        use aws_lc_rs::hmac;
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
        b64(hmac::sign(&key, format!("{header}.{payload}").as_bytes()).as_ref())
    };
    let (status, code, _) =
        outcome(tribe_login(&gateway, &format!("{header}.{payload}.{signature}")).await).await;
    assert_eq!((status, code.as_deref()), (400, Some("malformed_token")));

    let mut huge = tribe_claims(1, "a@example.com", "A");
    huge["padding"] = json!("p".repeat(9000));
    let token = hs256(&huge, SECRET);
    assert!(token.len() > 8192);
    let response = client()
        .post(gateway.url("/api/auth/sso"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(format!("jwt={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        outcome(response).await.1.as_deref(),
        Some("token_too_large")
    );

    let (status, code, _) = outcome(tribe_login(&gateway, "").await).await;
    assert_eq!((status, code.as_deref()), (400, Some("missing_token")));
    let a = hs256(&tribe_claims(5, "e@example.com", "E"), SECRET);
    let b = hs256(&tribe_claims(6, "f@example.com", "F"), SECRET);
    let response = client()
        .get(gateway.url(&format!("/api/auth/sso?jwt={a}&token={b}")))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        outcome(response).await.1.as_deref(),
        Some("conflicting_tokens")
    );
    let response = client()
        .put(gateway.url("/api/auth/sso"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn a_token_works_once() {
    let scratch = Scratch::new("sso-replay");
    let (gateway, _) = start_sso(&scratch, "", NO_SUBJECT_LIMIT).await;
    let token = hs256(&tribe_claims(1, "a@example.com", "A"), SECRET);
    assert_eq!(outcome(tribe_login(&gateway, &token).await).await.0, 303);
    let (status, code, _) = outcome(tribe_login(&gateway, &token).await).await;
    assert_eq!((status, code.as_deref()), (401, Some("token_replayed")));
    // The same jti in a different token is the same token.
    let now = now();
    let with_jti = |name: &str| {
        hs256(
            &json!({"sub": 2, "email": "b@example.com", "name": name, "iat": now, "exp": now + 60, "jti": "j-1"}),
            SECRET,
        )
    };
    assert_eq!(
        outcome(tribe_login(&gateway, &with_jti("B")).await).await.0,
        303
    );
    assert_eq!(
        outcome(tribe_login(&gateway, &with_jti("B again")).await)
            .await
            .1
            .as_deref(),
        Some("token_replayed")
    );
    // The browser page says what happened.
    let page = client()
        .get(gateway.url(&format!("/api/auth/sso?jwt={token}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("expired or was already used"), "{page}");
}

#[tokio::test]
async fn tokens_without_expiry_are_single_use_forever_when_allowed() {
    let scratch = Scratch::new("sso-noexp");
    let sso_extra = "  require_exp: false\n  danger_accept_tokens_without_expiry: true\n";
    let (gateway, upstream) = start_sso(&scratch, sso_extra, NO_SUBJECT_LIMIT).await;
    // As the MeltingSpot sample mints it: no iat, no exp.
    let token = hs256(
        &json!({"sub": "u1", "firstName": "A", "lastName": "B", "email": "ab@example.com"}),
        SECRET,
    );
    let login = |gw: &TestGateway| {
        client()
            .get(gw.url(&format!("/sso/jwt?ms_token={token}")))
            .header("accept", "application/json")
            .send()
    };
    assert_eq!(outcome(login(&gateway).await.unwrap()).await.0, 303);
    assert_eq!(
        outcome(login(&gateway).await.unwrap()).await.1.as_deref(),
        Some("token_replayed")
    );
    assert!(gateway.stop().await);
    // Remembered in the directory, so a restart does not make it usable again.
    let gateway = TestGateway::start(
        &sso_yaml(&scratch.0, sso_extra, NO_SUBJECT_LIMIT),
        upstream.addr,
    )
    .await;
    assert_eq!(
        outcome(login(&gateway).await.unwrap()).await.1.as_deref(),
        Some("token_replayed")
    );
}

#[tokio::test]
async fn require_exp_false_still_needs_iat_without_the_danger_option() {
    let scratch = Scratch::new("sso-noexp-iat");
    let (gateway, _) = start_sso(&scratch, "  require_exp: false\n", NO_SUBJECT_LIMIT).await;
    let now = now();
    // iat bounds the token through max_token_age: accepted.
    let with_iat = hs256(
        &json!({"sub": 1, "email": "a@example.com", "name": "A", "iat": now}),
        SECRET,
    );
    assert_eq!(outcome(tribe_login(&gateway, &with_iat).await).await.0, 303);
    let old = hs256(
        &json!({"sub": 2, "email": "b@example.com", "name": "B", "iat": now - 3600}),
        SECRET,
    );
    assert_eq!(
        outcome(tribe_login(&gateway, &old).await)
            .await
            .1
            .as_deref(),
        Some("token_too_old")
    );
    // Nothing bounds a token with neither exp nor iat: refused unless the operator opts in.
    let unbounded = hs256(
        &json!({"sub": 3, "email": "c@example.com", "name": "C"}),
        SECRET,
    );
    assert_eq!(
        outcome(tribe_login(&gateway, &unbounded).await)
            .await
            .1
            .as_deref(),
        Some("missing_exp")
    );
}

#[tokio::test]
async fn floods_get_429_with_retry_after() {
    let scratch = Scratch::new("sso-flood");
    let (gateway, _) = start_sso(
        &scratch,
        "",
        "rate_limit:\n  sso_per_ip: 5/s\n  sso_per_subject: 1/m\n",
    )
    .await;
    let mut limited = 0;
    // All at once, so the burst is exceeded however slow this machine is today.
    let responses = futures_util::future::join_all((0..30).map(|i| {
        let url = gateway.url(&format!("/api/auth/sso?jwt=junk{i}"));
        async move { client().get(url).send().await.unwrap() }
    }))
    .await;
    for response in responses {
        if response.status() == 429 {
            let retry: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&retry));
            limited += 1;
        }
    }
    assert!(limited >= 15, "only {limited} of 30 were limited");

    let scratch = Scratch::new("sso-flood-sub");
    let (gateway, _) = start_sso(
        &scratch,
        "",
        "rate_limit:\n  sso_per_ip: off\n  sso_per_subject: 1/m\n",
    )
    .await;
    assert_eq!(
        outcome(
            tribe_login(
                &gateway,
                &hs256(&tribe_claims(7, "s@example.com", "S"), SECRET)
            )
            .await
        )
        .await
        .0,
        303
    );
    let mut claims = tribe_claims(7, "s@example.com", "S");
    claims["jti"] = json!("another");
    let (status, code, _) = outcome(tribe_login(&gateway, &hs256(&claims, SECRET)).await).await;
    assert_eq!((status, code.as_deref()), (429, Some("rate_limited")));
    // Forged tokens for a subject do not use up that subject's allowance: they fail before the limit.
    let scratch = Scratch::new("sso-flood-forged");
    let (gateway, _) = start_sso(
        &scratch,
        "",
        "rate_limit:\n  sso_per_ip: off\n  sso_per_subject: 1/m\n",
    )
    .await;
    for _ in 0..5 {
        let forged = hs256(
            &tribe_claims(8, "t@example.com", "T"),
            "a-forger-does-not-know-the-secret-at-all",
        );
        assert_eq!(
            outcome(tribe_login(&gateway, &forged).await)
                .await
                .1
                .as_deref(),
            Some("bad_signature")
        );
    }
    assert_eq!(
        outcome(
            tribe_login(
                &gateway,
                &hs256(&tribe_claims(8, "t@example.com", "T"), SECRET)
            )
            .await
        )
        .await
        .0,
        303
    );

    // A link refused for going too fast is not used up: it works once the member slows down.
    let scratch = Scratch::new("sso-flood-retry");
    let (gateway, _) = start_sso(
        &scratch,
        "",
        "rate_limit:\n  sso_per_ip: off\n  sso_per_subject: 1/s\n",
    )
    .await;
    let mut first = tribe_claims(9, "u@example.com", "U");
    first["jti"] = json!("first");
    let mut second = tribe_claims(9, "u@example.com", "U");
    second["jti"] = json!("second");
    let second = hs256(&second, SECRET);
    assert_eq!(
        outcome(tribe_login(&gateway, &hs256(&first, SECRET)).await)
            .await
            .0,
        303
    );
    assert_eq!(outcome(tribe_login(&gateway, &second).await).await.0, 429);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(outcome(tribe_login(&gateway, &second).await).await.0, 303);
}

#[tokio::test]
async fn concurrent_first_logins_make_one_member() {
    let scratch = Scratch::new("sso-race");
    let (gateway, _) = start_sso(&scratch, "", NO_SUBJECT_LIMIT).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let mut claims = tribe_claims(77, "race@example.com", "Racer");
        claims["jti"] = json!(format!("race-{i}"));
        let url = gateway.url(&format!("/api/auth/sso?jwt={}", hs256(&claims, SECRET)));
        tasks.push(tokio::spawn(async move {
            client().get(url).send().await.unwrap()
        }));
    }
    let mut members = Vec::new();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status(), 303);
        members.push(
            open_session(&session_cookie(&response).unwrap())
                .unwrap()
                .member_id,
        );
    }
    members.dedup();
    assert_eq!(members.len(), 1, "one person, one member: {members:?}");
}

#[tokio::test]
async fn members_survive_a_restart_and_non_active_members_are_refused() {
    let scratch = Scratch::new("sso-restart");
    let (gateway, upstream) = start_sso(&scratch, "", NO_SUBJECT_LIMIT).await;
    let first_token = hs256(&tribe_claims(5, "keep@example.com", "Keep"), SECRET);
    let first = tribe_login(&gateway, &first_token).await;
    let member = open_session(&session_cookie(&first).unwrap())
        .unwrap()
        .member_id;
    assert!(gateway.stop().await);

    let gateway =
        TestGateway::start(&sso_yaml(&scratch.0, "", NO_SUBJECT_LIMIT), upstream.addr).await;
    // The first token is still refused: used tokens are recorded in the directory, not only in memory.
    let replayed = tribe_login(&gateway, &first_token).await;
    assert_eq!(outcome(replayed).await.1.as_deref(), Some("token_replayed"));
    let mut claims = tribe_claims(5, "keep@example.com", "Keep");
    claims["jti"] = json!("after-restart");
    let again = tribe_login(&gateway, &hs256(&claims, SECRET)).await;
    assert_eq!(
        open_session(&session_cookie(&again).unwrap())
            .unwrap()
            .member_id,
        member
    );

    // An operator deactivates the member (the admin API comes later; the directory is the source of truth).
    let db = rusqlite::Connection::open(scratch.0.join("ssogate.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "UPDATE members SET status = 'deactivated' WHERE id = ?1",
        [&member],
    )
    .unwrap();
    let mut claims = tribe_claims(5, "keep@example.com", "Keep");
    claims["jti"] = json!("after-deactivation");
    let response = client()
        .get(gateway.url(&format!("/api/auth/sso?jwt={}", hs256(&claims, SECRET))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(session_cookie(&response).is_none());
    assert!(response.text().await.unwrap().contains("cannot sign in"));
}

#[tokio::test]
async fn hostile_return_paths_fall_back_to_root() {
    let scratch = Scratch::new("sso-return");
    let (gateway, _) = start_sso(&scratch, "", NO_SUBJECT_LIMIT).await;
    for (i, (raw, expected)) in [
        ("%2F%2Fevil.example", "/"),
        ("https://evil.example/", "/"),
        ("/%5Cevil.example", "/"),
        ("%2F%09%2Fevil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/t/welcome%3Fx%3D1", "/t/welcome?x=1"),
        ("", "/"),
    ]
    .into_iter()
    .enumerate()
    {
        let token = hs256(
            &tribe_claims(100 + i as i64, &format!("r{i}@example.com"), "R"),
            SECRET,
        );
        let response = client()
            .get(gateway.url(&format!("/api/auth/sso?jwt={token}&redirect_uri={raw}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{raw}");
        assert_eq!(response.headers()["location"], expected, "{raw}");
    }
}

#[tokio::test]
async fn secure_public_url_gives_a_host_prefixed_secure_cookie() {
    let scratch = Scratch::new("sso-secure");
    let (gateway, _) = start_sso(&scratch, "", "public_url: https://forum.example.com\n").await;
    let response = tribe_login(
        &gateway,
        &hs256(&tribe_claims(1, "a@example.com", "A"), SECRET),
    )
    .await;
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set_cookie.starts_with("__Host-ssogate_session="),
        "{set_cookie}"
    );
    assert!(set_cookie.contains("Secure"), "{set_cookie}");
}

/// The binary under `kill -9` in the middle of logins: every login that was answered is in the directory after a
/// restart, and the database is intact.
#[tokio::test]
async fn answered_logins_survive_kill_9() {
    let upstream = EchoUpstream::start().await;
    let scratch = Scratch::new("sso-kill9");
    let yaml = sso_yaml(&scratch.0, "", NO_SUBJECT_LIMIT)
        .replace("{upstream}", &upstream.addr.to_string());
    let config = scratch.write("c.yaml", &yaml);
    let mut process = GatewayProcess::spawn(&config, &[]);
    let base = process.url("");
    let answered_so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..300 {
        let url = format!(
            "{base}/api/auth/sso?jwt={}",
            hs256(
                &tribe_claims(1000 + i, &format!("k{i}@example.com"), "K"),
                SECRET
            )
        );
        let counter = std::sync::Arc::clone(&answered_so_far);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis((i as u64 % 100) * 15)).await;
            let response = client().get(url).send().await.ok()?;
            let member = (response.status() == 303)
                .then(|| open_session(&session_cookie(&response)?).map(|s| s.member_id))??;
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Some(member)
        }));
    }
    // Kill once logins are being answered (bounded wait: a loaded machine is slow, not broken).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while answered_so_far.load(std::sync::atomic::Ordering::SeqCst) < 20
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = process.pid();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    let mut answered = Vec::new();
    for task in tasks {
        if let Ok(Some(member)) = task.await {
            answered.push(member);
        }
    }
    let _ = process.wait(Duration::from_secs(5));
    assert!(
        !answered.is_empty(),
        "no login was answered before the kill; the test proves nothing"
    );

    let db = rusqlite::Connection::open(scratch.0.join("ssogate.db")).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    for member in &answered {
        let found: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM members WHERE id = ?1",
                [member],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(found, 1, "member {member} was answered but lost");
    }
    drop(db);
    // And the gateway starts again on that file.
    let process = GatewayProcess::spawn(&config, &[]);
    assert!(process.addr.is_some(), "{}", process.log());
    println!(
        "{} of 300 logins answered before kill -9; all present after restart",
        answered.len()
    );
}

/// The log never holds a token, whatever happened to it.
#[tokio::test]
async fn tokens_never_reach_the_log() {
    let upstream = EchoUpstream::start().await;
    let scratch = Scratch::new("sso-log");
    let yaml = sso_yaml(&scratch.0, "", NO_SUBJECT_LIMIT)
        .replace("{upstream}", &upstream.addr.to_string());
    let config = scratch.write("c.yaml", &yaml);
    let process = GatewayProcess::spawn(&config, &[("RUST_LOG", "debug")]);
    let good = hs256(&tribe_claims(1, "a@example.com", "A"), SECRET);
    let expired = hs256(
        &json!({"sub": 2, "email": "b@example.com", "name": "B", "iat": now() - 500, "exp": now() - 400}),
        SECRET,
    );
    let forged = hs256(
        &tribe_claims(3, "c@example.com", "C"),
        "a-forger-does-not-know-the-secret-at-all",
    );
    for token in [&good, &good, &expired, &forged] {
        let _ = client()
            .get(process.url(&format!("/api/auth/sso?jwt={token}&redirect_uri=//evil")))
            .send()
            .await
            .unwrap();
        let _ = client()
            .get(process.url(&format!("/sso/jwt?ms_token={token}")))
            .send()
            .await
            .unwrap();
        let _ = client()
            .post(process.url("/api/auth/sso"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the log buffer flushes every 100 ms
    let log = process.log();
    assert!(log.contains("signed in"), "{log}");
    for token in [&good, &expired, &forged] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !log.contains(signature),
            "a token's signature reached the log"
        );
        let payload = token.split('.').nth(1).unwrap();
        assert!(!log.contains(payload), "a token's payload reached the log");
    }
}

/// A link scanner's HEAD must not use up the one sign-in a token is good for.
#[tokio::test]
async fn head_requests_do_not_use_up_a_token() {
    let scratch = Scratch::new("sso-head");
    let (gateway, _) = start_sso(&scratch, "", NO_SUBJECT_LIMIT).await;
    let token = hs256(&tribe_claims(1, "h@example.com", "H"), SECRET);
    let url = gateway.url(&format!("/api/auth/sso?jwt={token}&redirect_uri=/x"));
    let head = client().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 405);
    assert!(session_cookie(&head).is_none());
    assert_eq!(outcome(tribe_login(&gateway, &token).await).await.0, 303);
}
