//! No token, secret or key ever shows in Debug, Display or an error.

use sfsync_salesforce::{Credentials, Error};
use sfsync_simulator::{DEMO_PRIVATE_KEY_PEM, Faults, Org, OrgSpec};

use crate::common::*;

fn secret_values() -> Vec<String> {
    let demo = sfsync_simulator::Credentials::demo();
    let mut out = vec![demo.client_secret, demo.refresh_token];
    for line in DEMO_PRIVATE_KEY_PEM.lines() {
        if !line.starts_with("-----") && line.len() > 16 {
            out.push(line.to_string());
        }
    }
    out.push("wrong-secret-9f8e7d6c".into());
    out
}

fn assert_clean(what: &str, text: &str, extra: &[String]) {
    for secret in secret_values().iter().chain(extra) {
        assert!(
            !text.contains(secret.as_str()),
            "{what} leaks a secret: {text}"
        );
    }
}

fn every_flow() -> Vec<Credentials> {
    let demo = sfsync_simulator::Credentials::demo();
    vec![
        Credentials::ClientCredentials {
            client_id: demo.client_id.clone(),
            client_secret: demo.client_secret.clone(),
        },
        Credentials::JwtBearer {
            client_id: demo.client_id.clone(),
            username: demo.username.clone(),
            private_key_pem: DEMO_PRIVATE_KEY_PEM.to_string(),
            audience: "https://login.salesforce.com".into(),
        },
        Credentials::RefreshToken {
            client_id: demo.client_id,
            client_secret: Some(demo.client_secret),
            refresh_token: demo.refresh_token,
        },
    ]
}

/// The access token the simulator issues, fetched by hand.
async fn issued_token(url: &str) -> String {
    let demo = sfsync_simulator::Credentials::demo();
    let response = reqwest::Client::new()
        .post(format!("{url}/services/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", demo.client_id.as_str()),
            ("client_secret", demo.client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn debug_and_display_never_show_secrets() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let mut errors: Vec<Error> = Vec::new();
    for credentials in every_flow() {
        assert_clean("Credentials Debug", &format!("{credentials:?}"), &[]);
        let mut config = config(&sim.url());
        config.credentials = credentials;
        assert_clean("ClientConfig Debug", &format!("{config:?}"), &[]);
        let client = client_with(config);
        client.describe("Contact").await.unwrap();
        assert_clean("Client Debug", &format!("{client:?}"), &[]);
        // An API error after authenticating.
        errors.push(client.describe("NoSuchObject__c").await.unwrap_err());
    }
    let token = issued_token(&sim.url()).await;

    // Authentication failures of every flow, with wrong secrets.
    let demo = sfsync_simulator::Credentials::demo();
    for credentials in [
        Credentials::ClientCredentials {
            client_id: demo.client_id.clone(),
            client_secret: "wrong-secret-9f8e7d6c".into(),
        },
        Credentials::RefreshToken {
            client_id: demo.client_id.clone(),
            client_secret: Some("wrong-secret-9f8e7d6c".into()),
            refresh_token: "wrong-secret-9f8e7d6c".into(),
        },
        Credentials::JwtBearer {
            client_id: "wrong-secret-9f8e7d6c".into(),
            username: demo.username.clone(),
            private_key_pem: DEMO_PRIVATE_KEY_PEM.to_string(),
            audience: "https://login.salesforce.com".into(),
        },
    ] {
        let mut config = config(&sim.url());
        config.credentials = credentials;
        errors.push(client_with(config).authenticate().await.unwrap_err());
    }

    // Token expiry, server errors, the daily limit.
    let client = client(&sim.url());
    client.authenticate().await.unwrap();
    sim.set_faults(Faults {
        fail_every_nth: Some(1),
        ..Faults::default()
    });
    errors.push(client.describe("Contact").await.unwrap_err());
    sim.set_faults(Faults {
        daily_limit: Some(1),
        ..Faults::default()
    });
    errors.push(client.describe("Lead").await.unwrap_err());
    sim.set_faults(Faults::default());

    assert!(errors.iter().any(|e| matches!(e, Error::Auth { .. })));
    assert!(errors.iter().any(|e| matches!(e, Error::ApiLimit { .. })));
    for e in &errors {
        assert_clean(
            "error Display",
            &e.to_string(),
            std::slice::from_ref(&token),
        );
        assert_clean(
            "error Debug",
            &format!("{e:?}"),
            std::slice::from_ref(&token),
        );
    }
    sim.shutdown().await;
}
