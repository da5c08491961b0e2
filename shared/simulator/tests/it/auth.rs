//! The three OAuth flows, their errors, and session checks on the API.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sfsync_simulator::{Credentials, DEMO_PRIVATE_KEY_PEM, Org, Simulator};

use crate::common::{V, start, tiny};

fn jwt(iss: &str, sub: &str, aud: &str, exp_offset_secs: i64) -> String {
    let claims = json!({
        "iss": iss,
        "sub": sub,
        "aud": aud,
        "exp": chrono::Utc::now().timestamp() + exp_offset_secs,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(DEMO_PRIVATE_KEY_PEM.as_bytes())
        .expect("demo private key parses");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .expect("sign")
}

fn assert_token_body(body: &Value, url: &str) {
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() > 20));
    assert_eq!(body["instance_url"], url);
    assert_eq!(body["token_type"], "Bearer");
    let issued = body["issued_at"].as_str().expect("issued_at is a string");
    assert!(issued.len() >= 13 && issued.bytes().all(|b| b.is_ascii_digit()));
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with(url)));
    assert!(body["signature"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(
        body.get("expires_in").is_none(),
        "Salesforce sends no expires_in"
    );
}

#[tokio::test]
async fn client_credentials_in_form_and_basic() {
    let api = tiny().await;
    let c = Credentials::demo();
    let r = api
        .token_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
        ])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_token_body(&r.json(), &api.url());
    let token = r.json()["access_token"].as_str().unwrap_or("").to_string();
    let ok = api
        .get_with_token(&format!("/services/data/v{V}/limits"), &token)
        .await;
    assert_eq!(ok.status, StatusCode::OK);

    let basic = api
        .http
        .post(format!("{}/services/oauth2/token", api.url()))
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("request");
    assert_eq!(basic.status(), StatusCode::OK);

    let bad = api
        .token_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
            ("client_secret", "wrong"),
        ])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"], "invalid_client");
    assert!(bad.json()["error_description"].is_string());
    assert_eq!(api.sim.stats().token_requests, 4);
}

#[tokio::test]
async fn jwt_bearer_verifies_signature_and_claims() {
    let api = tiny().await;
    let c = Credentials::demo();
    let grant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let good = jwt(
        &c.client_id,
        &c.username,
        "https://login.salesforce.com",
        180,
    );
    let r = api
        .token_form(&[("grant_type", grant), ("assertion", &good)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_token_body(&r.json(), &api.url());
    assert!(r.json().get("refresh_token").is_none());

    // The simulator's own URL is an accepted audience too (a login_url pointing at it).
    let own = jwt(&c.client_id, &c.username, &api.url(), 180);
    let r = api
        .token_form(&[("grant_type", grant), ("assertion", &own)])
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let cases = [
        (
            jwt(
                "other-app",
                &c.username,
                "https://login.salesforce.com",
                180,
            ),
            "invalid_client_id",
        ),
        (
            jwt(
                &c.client_id,
                "someone@else",
                "https://login.salesforce.com",
                180,
            ),
            "invalid_grant",
        ),
        (
            jwt(&c.client_id, &c.username, "https://evil.example", 180),
            "invalid_grant",
        ),
        (
            jwt(
                &c.client_id,
                &c.username,
                "https://login.salesforce.com",
                -3600,
            ),
            "invalid_grant",
        ),
    ];
    for (assertion, error) in cases {
        let r = api
            .token_form(&[("grant_type", grant), ("assertion", &assertion)])
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{assertion}");
        assert_eq!(r.json()["error"], error, "{}", r.text);
    }

    // A tampered signature fails verification.
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap_or('A');
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let r = api
        .token_form(&[("grant_type", grant), ("assertion", &tampered)])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(r.json()["error_description"], "invalid assertion");
}

#[tokio::test]
async fn jwt_without_configured_key_is_refused() {
    let creds = Credentials {
        jwt_public_key_pem: None,
        ..Credentials::demo()
    };
    let sim = Simulator::start(Org::empty(), creds.clone(), Default::default())
        .await
        .expect("start");
    let assertion = jwt(
        &creds.client_id,
        &creds.username,
        "https://login.salesforce.com",
        180,
    );
    let r = reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", sim.url()))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
    sim.shutdown().await;
}

#[tokio::test]
async fn refresh_token_flow() {
    let api = tiny().await;
    let c = Credentials::demo();
    let r = api
        .token_form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &c.client_id),
            ("refresh_token", &c.refresh_token),
        ])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_token_body(&r.json(), &api.url());

    let r = api
        .token_form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
            ("refresh_token", "revoked"),
        ])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_grant");

    let r = api.token_form(&[("grant_type", "password")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn rotation_issues_a_new_refresh_token_and_a_reused_one_revokes_the_chain() {
    let api = crate::common::start_with(
        Org::empty(),
        sfsync_simulator::Faults {
            rotate_refresh_tokens: true,
            ..Default::default()
        },
    )
    .await;
    let c = Credentials::demo();
    let refresh = |token: String| {
        let api = &api;
        let client_id = c.client_id.clone();
        async move {
            api.token_form(&[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", &token),
            ])
            .await
        }
    };
    // Each exchange answers the chain's next refresh token...
    let first = refresh(c.refresh_token.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let second_token = first.json()["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!second_token.is_empty() && second_token != c.refresh_token);
    let second = refresh(second_token.clone()).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    let third_token = second.json()["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_ne!(third_token, second_token);
    let access = second.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let works = api
        .get_with_token(&format!("/services/data/v{V}/limits"), &access)
        .await;
    assert_eq!(works.status, StatusCode::OK);

    // ...and presenting a rotated-out one is refused and revokes the whole chain: the
    // current refresh token and the access tokens it issued.
    let reused = refresh(c.refresh_token.clone()).await;
    assert_eq!(reused.status, StatusCode::BAD_REQUEST);
    assert_eq!(reused.json()["error"], "invalid_grant");
    let current = refresh(third_token).await;
    assert_eq!(current.status, StatusCode::BAD_REQUEST, "{}", current.text);
    let revoked = api
        .get_with_token(&format!("/services/data/v{V}/limits"), &access)
        .await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_rotation_the_refresh_token_is_reused_and_none_is_returned() {
    let api = tiny().await;
    let c = Credentials::demo();
    for _ in 0..2 {
        let r = api
            .token_form(&[
                ("grant_type", "refresh_token"),
                ("client_id", &c.client_id),
                ("refresh_token", &c.refresh_token),
            ])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.json().get("refresh_token").is_none());
    }
}

#[tokio::test]
async fn api_requires_a_known_session() {
    let api = start(Org::empty()).await;
    // The versions list needs no session.
    let versions = api
        .http
        .get(format!("{}/services/data/", api.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(versions.status(), StatusCode::OK);
    let list: Value = versions.json().await.expect("json");
    assert!(list.as_array().is_some_and(|l| {
        l.iter()
            .any(|v| v["version"] == V && v["url"] == format!("/services/data/v{V}"))
    }));

    let r = api
        .get_with_token(&format!("/services/data/v{V}/sobjects"), "00D!forged")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json(),
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    let none = api
        .http
        .get(format!("{}/services/data/v{V}/sobjects", api.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    // Rejected sessions are not API usage.
    assert_eq!(api.sim.stats().api_calls, 0);

    // An unlisted version is not found.
    let r = api.get("/services/data/v12.0/limits").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
