//! Identity to the forum over real sockets: headers set from the session and never from the client, the gateway's
//! cookie kept from the forum, the forum's login/sign-up/logout/account routes, protected paths on one canonical
//! path, Cache-Control, and the signed assertion checked with a standard JWT library.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use common::sso::{SECRET, hs256, meltingspot_claims, session_cookie, sso_yaml, tribe_claims};
use common::upstream::{EchoUpstream, Seen, raw_exchange};
use common::{Scratch, TestGateway, client};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde_json::{Value, json};

const NO_LIMITS: &str = "rate_limit:\n  sso_per_ip: off\n  sso_per_subject: off\n";

async fn start(scratch: &Scratch, sso_extra: &str, extra: &str) -> (TestGateway, EchoUpstream) {
    let upstream = EchoUpstream::start().await;
    let yaml = sso_yaml(&scratch.0, sso_extra, &format!("{NO_LIMITS}{extra}"));
    (TestGateway::start(&yaml, upstream.addr).await, upstream)
}

/// Signs in through the entry route and returns the `name=value` session cookie.
async fn sign_in(gateway: &TestGateway, claims: &Value) -> String {
    let response = client()
        .get(gateway.url(&format!("/api/auth/sso?jwt={}", hs256(claims, SECRET))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    session_cookie(&response).unwrap()
}

async fn seen(response: reqwest::Response) -> Seen {
    assert_eq!(response.status(), 200);
    Seen(response.json().await.unwrap())
}

#[tokio::test]
async fn identity_headers_come_from_the_session_only() {
    let scratch = Scratch::new("id-headers");
    let (gateway, _) = start(&scratch, "", "").await;
    let mut claims = tribe_claims(42, "ada@example.com", "Ada\r\nX-Auth-User: admin Lovelace");
    claims["tagline"] = json!("Zoë's \"poet\" 100%");
    claims["picture"] = json!("https://cdn.example.com/ada.png");
    claims["company"] = json!("Analytical Engines");
    let cookie = sign_in(&gateway, &claims).await;

    let response = client()
        .get(gateway.url("/t/1"))
        .header("cookie", format!("theme=dark; {cookie}; csrftoken=abc"))
        .header("x-auth-user", "admin")
        .header("X_AUTH_EMAIL", "root@example.com")
        .header("x.auth.name", "Mallory")
        .header("x-auth-field-company", "Evil")
        .header("x-auth-assertion", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "private");
    let seen = seen(response).await;
    let user = seen.header("x-auth-user").expect("x-auth-user");
    assert_eq!(user.len(), 36, "the gateway's member id (a UUID): {user}");
    assert_eq!(
        seen.header("x-auth-email").as_deref(),
        Some("ada@example.com")
    );
    // A CR/LF in a claim is encoded, never a new header.
    assert_eq!(
        seen.header("x-auth-name").as_deref(),
        Some("Ada%0D%0AX-Auth-User: admin Lovelace")
    );
    assert_eq!(
        seen.header("x-auth-title").as_deref(),
        Some("Zo%C3%AB's \"poet\" 100%25")
    );
    assert_eq!(
        seen.header("x-auth-avatar").as_deref(),
        Some("https://cdn.example.com/ada.png")
    );
    assert_eq!(
        seen.header("x-auth-field-company").as_deref(),
        Some("Analytical Engines")
    );
    assert_eq!(seen.headers("x-auth-user").len(), 1);
    for forged in ["x_auth_email", "x.auth.name", "x-auth-assertion"] {
        assert!(
            seen.headers(forged).is_empty(),
            "{forged} reached the forum"
        );
    }
    // The forum's cookies pass untouched; the gateway's does not.
    assert_eq!(
        seen.header("cookie").as_deref(),
        Some("theme=dark; csrftoken=abc")
    );
    for absent in ["x-auth-first-name", "x-auth-lang", "x-auth-timezone"] {
        assert!(
            seen.headers(absent).is_empty(),
            "empty {absent} must not be sent"
        );
    }
}

#[tokio::test]
async fn spoofed_headers_never_reach_the_forum_without_a_session() {
    let scratch = Scratch::new("id-spoof");
    let (gateway, _) = start(&scratch, "", "").await;
    // Raw bytes, so every spelling really goes on the wire (clients normalise some of them).
    let request = "GET /anything HTTP/1.1\r\nHost: forum.test\r\nX-Auth-User: admin\r\nx_auth_user: admin\r\n\
X.AUTH.USER: admin\r\nX-AUTH-EMAIL: root@example.com\r\nX-Auth-User: second\r\nConnection: close, X-Auth-Name\r\n\
X-Auth-Name: via-connection\r\nX-Auth-Field-Role: admin\r\nCookie: ssogate_session=forged-value; a=1\r\n\r\n";
    let (text, _) = raw_exchange(
        gateway.addr,
        request.as_bytes(),
        std::time::Duration::from_secs(10),
    )
    .await;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let seen = Seen(serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}")));
    let names: Vec<String> = seen.0["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_owned())
        .collect();
    for name in &names {
        let folded = name.replace(['_', '.'], "-");
        assert!(
            !folded.starts_with("x-auth"),
            "{name} reached the forum: {names:?}"
        );
    }
    assert_eq!(seen.header("cookie").as_deref(), Some("a=1"));
    assert!(
        !text.to_ascii_lowercase().contains("cache-control: private"),
        "anonymous responses stay cacheable"
    );
}

#[tokio::test]
async fn meltingspot_members_carry_their_profile_headers() {
    let scratch = Scratch::new("id-ms");
    let (gateway, _) = start(&scratch, "", "").await;
    let mut claims = meltingspot_claims("u-7", "Zoë", "Ñúñez", "zoe@example.fr");
    claims["lang"] = json!("fr");
    claims["timezone"] = json!("America/Montreal");
    claims["title"] = json!("CTO");
    let response = client()
        .get(gateway.url(&format!("/sso/jwt?ms_token={}", hs256(&claims, SECRET))))
        .send()
        .await
        .unwrap();
    let cookie = session_cookie(&response).unwrap();
    let seen = seen(
        client()
            .get(gateway.url("/"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        seen.header("x-auth-first-name").as_deref(),
        Some("Zo%C3%AB")
    );
    assert_eq!(
        seen.header("x-auth-last-name").as_deref(),
        Some("%C3%91%C3%BA%C3%B1ez")
    );
    assert_eq!(
        seen.header("x-auth-name").as_deref(),
        Some("Zo%C3%AB %C3%91%C3%BA%C3%B1ez")
    );
    assert_eq!(seen.header("x-auth-lang").as_deref(), Some("fr"));
    assert_eq!(
        seen.header("x-auth-timezone").as_deref(),
        Some("America/Montreal")
    );
    assert_eq!(seen.header("x-auth-title").as_deref(), Some("CTO"));
}

#[tokio::test]
async fn header_names_and_user_id_are_configurable() {
    let scratch = Scratch::new("id-config");
    let extra = "identity:\n  user_id: sub\n  headers:\n    user: Remote-User\n    email: Remote-Email\n    name: off\n";
    let (gateway, _) = start(&scratch, "", extra).await;
    let cookie = sign_in(&gateway, &tribe_claims(1234, "c@example.com", "C")).await;
    let seen = seen(
        client()
            .get(gateway.url("/"))
            .header("cookie", cookie)
            .header("remote_user", "admin")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen.header("remote-user").as_deref(), Some("1234"));
    assert_eq!(
        seen.header("remote-email").as_deref(),
        Some("c@example.com")
    );
    assert!(seen.headers("x-auth-name").is_empty());
    assert!(seen.headers("remote_user").is_empty());
}

#[tokio::test]
async fn cache_control_private_unless_the_forum_forbids_storing() {
    let scratch = Scratch::new("id-cache");
    let (gateway, _) = start(&scratch, "", "").await;
    let cookie = sign_in(&gateway, &tribe_claims(1, "a@example.com", "A")).await;
    // The echo upstream sends no Cache-Control: private is added.
    let response = client()
        .get(gateway.url("/x"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "private");
    // Without a session nothing is added.
    let response = client().get(gateway.url("/x")).send().await.unwrap();
    assert!(response.headers().get("cache-control").is_none());
}

#[tokio::test]
async fn login_and_signup_go_to_the_integrator_with_a_way_back() {
    let scratch = Scratch::new("id-login");
    let extra = "public_url: https://forum.example.com\nroutes:\n  login: [/login, /user/login/]\n  signup: [/signup]\n  \
account_settings: [/settings/email]\n  authorization_url: https://app.example.com/community/login?lang=fr\n  \
signup_url: https://app.example.com/signup\n  account_settings_url: https://app.example.com/settings\n";
    let (gateway, upstream) = start(&scratch, "", extra).await;
    let response = client()
        .get(gateway.url("/login?next=/t/welcome/42"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.host_str(), Some("app.example.com"));
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    assert_eq!(
        pairs[0],
        ("lang".into(), "fr".into()),
        "the integrator's own query is kept"
    );
    let redirect_url = &pairs.iter().find(|(k, _)| k == "redirectUrl").unwrap().1;
    assert_eq!(
        redirect_url,
        "https://forum.example.com/sso/jwt?referrerUrl=%2Ft%2Fwelcome%2F42"
    );

    // The page the member came from, from a same-origin Referer.
    let response = client()
        .get(gateway.url("/user/login/"))
        .header("referer", "https://forum.example.com/c/general?page=2")
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("referrerUrl%3D%252Fc%252Fgeneral%253Fpage%253D2"),
        "{location}"
    );
    // A foreign Referer or a hostile next= gives /.
    let response = client()
        .get(gateway.url("/login?next=//evil.example"))
        .header("referer", "https://evil.example/x")
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.ends_with("referrerUrl%3D%252F"), "{location}");

    let response = client().get(gateway.url("/signup")).send().await.unwrap();
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://app.example.com/signup?redirectUrl=")
    );
    let response = client()
        .get(gateway.url("/settings/email"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["location"],
        "https://app.example.com/settings"
    );
    assert_eq!(upstream.count(), 0, "none of these reach the forum");
}

#[tokio::test]
async fn login_passes_through_without_an_authorization_url() {
    let scratch = Scratch::new("id-login-pass");
    let (gateway, upstream) = start(&scratch, "", "").await;
    let seen = seen(client().get(gateway.url("/login")).send().await.unwrap()).await;
    assert_eq!(seen.uri(), "/login");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn logout_ends_the_session_everywhere_and_refuses_cross_site_requests() {
    let scratch = Scratch::new("id-logout");
    let extra = "routes:\n  logout_url: https://app.example.com/logout\n";
    let (gateway, upstream) = start(&scratch, "", extra).await;
    let cookie = sign_in(&gateway, &tribe_claims(1, "a@example.com", "A")).await;
    let signed_in = seen(
        client()
            .get(gateway.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(signed_in.header("x-auth-user").is_some());

    // A cross-site GET (an <img> on another site) does nothing but show a confirmation page.
    let response = client()
        .get(gateway.url("/logout"))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("method=\"post\""));
    // A forged cross-site form POST is refused.
    let response = client()
        .post(gateway.url("/logout"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let still = seen(
        client()
            .get(gateway.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        still.header("x-auth-user").is_some(),
        "the member is still signed in"
    );

    // The forum's own sign-out button: a same-origin POST.
    let response = client()
        .post(gateway.url("/logout"))
        .header("cookie", &cookie)
        .header("origin", format!("http://{}", gateway.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "https://app.example.com/logout"
    );
    let cleared = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old cookie, replayed, is worth nothing now.
    let after = seen(
        client()
            .get(gateway.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(after.header("x-auth-user").is_none());
    let before = upstream.count();
    assert!(gateway.stop().await);

    // Not even after a restart.
    let gateway = TestGateway::start(
        &sso_yaml(&scratch.0, "", &format!("{NO_LIMITS}{extra}")),
        upstream.addr,
    )
    .await;
    let after = seen(
        client()
            .get(gateway.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        after.header("x-auth-user").is_none(),
        "a revoked session came back after a restart"
    );
    assert_eq!(upstream.count(), before + 1);
}

#[tokio::test]
async fn protected_prefixes_need_a_session() {
    let scratch = Scratch::new("id-protect");
    let extra = "protect: [/private, /admin/]\nroutes:\n  authorization_url: https://app.example.com/login\n";
    let (gateway, upstream) = start(&scratch, "", extra).await;
    let response = client()
        .get(gateway.url("/private/notes?id=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://app.example.com/login?redirectUrl="),
        "{location}"
    );
    assert!(
        location.contains("referrerUrl%3D%252Fprivate%252Fnotes%253Fid%253D3"),
        "{location}"
    );
    let response = client()
        .get(gateway.url("/private"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = client()
        .get(gateway.url("/admin/x"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Look-alikes are not protected; public paths pass.
    assert_eq!(
        client()
            .get(gateway.url("/privateer"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(upstream.count(), 1);

    // Tricks that would let a server read a protected path while the gateway reads another.
    for (path, status) in [
        ("/public/../private/x", 302),
        ("//private/x", 302),
        ("/./private", 302),
        ("/%70rivate/x", 302),
        ("/x/..%2Fprivate", 400),
        ("/%2e%2e/private", 400),
        ("/public/%2E%2E/private", 400),
        ("/private%2Fx", 400),
        ("/private%5Cx", 400),
        ("/a%00/private", 400),
        ("/%zz", 400),
    ] {
        let (text, _) = raw_exchange(
            gateway.addr,
            format!("GET {path} HTTP/1.1\r\nHost: forum.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            std::time::Duration::from_secs(10),
        )
        .await;
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {}",
            text.lines().next().unwrap_or("")
        );
    }
    assert_eq!(upstream.count(), 1, "no trick reached the forum");

    // With a session, the protected path is served, under its canonical name.
    let cookie = sign_in(&gateway, &tribe_claims(1, "a@example.com", "A")).await;
    let seen = seen(
        client()
            .get(gateway.url("/public/../private/./x//y?q=%2F..%2F"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        seen.uri(),
        "/private/x/y?q=%2F..%2F",
        "the path forwarded is the path checked; the query is untouched"
    );
}

#[tokio::test]
async fn hs256_assertion_verifies_with_a_standard_library() {
    let scratch = Scratch::new("id-assert");
    let secret = "assertion-secret-shared-with-the-forum-32b";
    let extra = format!("identity:\n  assertion:\n    secret: {secret}\n    ttl: 60s\n");
    let (gateway, upstream) = start(&scratch, "", &extra).await;
    let cookie = sign_in(&gateway, &tribe_claims(9, "n@example.com", "Nine")).await;
    let seen = seen(
        client()
            .get(gateway.url("/"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let token = seen.header("x-auth-assertion").expect("assertion header");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[format!("http://{}", upstream.addr)]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let data = decode::<Value>(
        &token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .expect("verifies");
    assert_eq!(
        data.claims["sub"].as_str(),
        seen.header("x-auth-user").as_deref()
    );
    assert_eq!(data.claims["email"], "n@example.com");
    assert_eq!(data.claims["ext_sub"], "9");
    let lifetime = data.claims["exp"].as_i64().unwrap() - data.claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 60);
    // A forum that checks it refuses a wrong secret.
    assert!(
        decode::<Value>(
            &token,
            &DecodingKey::from_secret(b"wrong-secret-wrong-secret-wrong!!"),
            &validation
        )
        .is_err()
    );
}

#[tokio::test]
async fn es256_assertion_verifies_against_the_published_jwks() {
    let scratch = Scratch::new("id-es256");
    // A P-256 key in PKCS#8 PEM, as `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes it.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    use base64::Engine as _;
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let key = scratch.write("assertion.pem", &pem);
    let extra = format!(
        "identity:\n  assertion:\n    algorithm: ES256\n    private_key: {}\n",
        key.display()
    );
    let (gateway, upstream) = start(&scratch, "", &extra).await;
    let jwks: Value = client()
        .get(gateway.url("/.well-known/ssogate/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["crv"], "P-256");
    let cookie = sign_in(&gateway, &tribe_claims(3, "e@example.com", "E")).await;
    let seen = seen(
        client()
            .get(gateway.url("/"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let token = seen.header("x-auth-assertion").unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), jwk["kid"].as_str());
    let key =
        DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[format!("http://{}", upstream.addr)]);
    let data = decode::<Value>(&token, &key, &validation).expect("verifies with the JWKS key");
    assert_eq!(data.claims["email"], "e@example.com");
}
