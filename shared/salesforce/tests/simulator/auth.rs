//! The three OAuth flows, one token per process, refresh on 401.

use sfsync_mapping::config::ExtractApi;
use sfsync_salesforce::{Credentials, Error};
use sfsync_simulator::{DEMO_PRIVATE_KEY_PEM, Faults, Org, OrgSpec};

use crate::common::*;

#[tokio::test]
async fn client_credentials_flow() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let global = client.describe_global().await.unwrap();
    assert!(global.object("Contact").is_some());
    assert_eq!(client.usage().token_requests, 1);
    assert_eq!(sim.stats().token_requests, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn jwt_bearer_flow() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let demo = sfsync_simulator::Credentials::demo();
    let mut config = config(&sim.url());
    config.credentials = Credentials::JwtBearer {
        client_id: demo.client_id.clone(),
        username: demo.username.clone(),
        private_key_pem: DEMO_PRIVATE_KEY_PEM.to_string(),
        audience: sfsync_salesforce::default_audience(&sim.url()).to_string(),
    };
    let client = client_with(config);
    client.describe("Contact").await.unwrap();
    assert_eq!(sim.stats().token_requests, 1);

    // A wrong subject is refused with the OAuth error, as Salesforce does.
    let mut config = crate::common::config(&sim.url());
    config.credentials = Credentials::JwtBearer {
        client_id: demo.client_id,
        username: "nobody@example.com".into(),
        private_key_pem: DEMO_PRIVATE_KEY_PEM.to_string(),
        audience: "https://login.salesforce.com".into(),
    };
    let err = client_with(config).authenticate().await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn jwt_with_a_broken_key_is_a_config_error() {
    let sim = start(Org::empty()).await;
    let mut config = config(&sim.url());
    config.credentials = Credentials::JwtBearer {
        client_id: "x".into(),
        username: "y".into(),
        private_key_pem: "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----".into(),
        audience: "https://login.salesforce.com".into(),
    };
    let err = client_with(config).authenticate().await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(!err.to_string().contains("not a key"), "{err}");
    assert_eq!(sim.stats().token_requests, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn refresh_token_flow() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let demo = sfsync_simulator::Credentials::demo();
    let mut config = config(&sim.url());
    config.credentials = Credentials::RefreshToken {
        client_id: demo.client_id.clone(),
        client_secret: Some(demo.client_secret.clone()),
        refresh_token: demo.refresh_token.clone(),
    };
    let client = client_with(config);
    client.describe("Lead").await.unwrap();
    assert_eq!(sim.stats().token_requests, 1);

    let mut config = crate::common::config(&sim.url());
    config.credentials = Credentials::RefreshToken {
        client_id: demo.client_id,
        client_secret: None,
        refresh_token: "revoked-refresh-token-value".into(),
    };
    let err = client_with(config).authenticate().await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn clones_and_concurrent_requests_share_one_token() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let mut tasks = Vec::new();
    for object in [
        "Contact",
        "Lead",
        "Account",
        "Opportunity",
        "Task",
        "User",
        "Campaign",
        "Contact",
    ] {
        let c = client.clone();
        tasks.push(tokio::spawn(
            async move { c.describe(object).await.map(|_| ()) },
        ));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(sim.stats().token_requests, 1);
    assert_eq!(client.usage().token_requests, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_token_mid_pagination_is_refreshed_once_per_expiry() {
    let sim = start(Org::generate(&OrgSpec::with_contacts(1_000))).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client
        .plan(&contacts_sync(&["Email", "LastName"]))
        .await
        .unwrap();
    sim.set_faults(Faults {
        expire_token_after_calls: Some(3),
        ..Faults::default()
    });
    let mut extraction = client.extract(&plan, window(None, until, ExtractApi::Rest));
    let (records, lasts) = drain(&mut extraction).await.unwrap();
    assert!(
        lasts.len() >= 5,
        "expected several pages, got {}",
        lasts.len()
    );
    let ids = unique_ids(&records);
    assert_eq!(ids, org_ids(&sim, "Contact").await);
    assert_keyset_order(&records);
    let tokens = sim.stats().token_requests;
    assert!(
        tokens >= 2,
        "the token never expired ({tokens} token requests)"
    );
    assert_eq!(client.usage().token_requests, tokens);
    sim.shutdown().await;
}

#[tokio::test]
async fn concurrent_401s_share_one_refresh() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    client.authenticate().await.unwrap();
    // The current session dies: every request in flight gets 401 once.
    sim.expire_all_tokens();
    let mut tasks = Vec::new();
    for object in ["Contact", "Lead", "Account", "Opportunity", "Task", "User"] {
        let c = client.clone();
        tasks.push(tokio::spawn(
            async move { c.describe(object).await.map(|_| ()) },
        ));
    }
    let results: Vec<_> = futures::future::join_all(tasks).await;
    for r in results {
        r.unwrap().unwrap();
    }
    // One token at the start, then exactly one refresh shared by all six.
    assert_eq!(sim.stats().token_requests, 2);
    assert_eq!(client.usage().token_requests, 2);
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Refresh Token Rotation

/// A store in memory, shared by the "processes" of a test (the real ones, a Secrets Manager
/// secret and a file, are tested in sfsync-pipeline and the end-to-end tests).
#[derive(Debug, Default)]
struct SharedStore {
    token: std::sync::Mutex<Option<sfsync_salesforce::RotatedRefreshToken>>,
    refuse: bool,
}

impl sfsync_salesforce::RefreshTokenStore for SharedStore {
    fn load(
        &self,
    ) -> sfsync_salesforce::StoreFuture<'_, Option<sfsync_salesforce::RotatedRefreshToken>> {
        let token = self.token.lock().unwrap().clone();
        Box::pin(async move { Ok(token) })
    }

    fn save<'a>(
        &'a self,
        token: &'a sfsync_salesforce::RotatedRefreshToken,
    ) -> sfsync_salesforce::StoreFuture<'a, ()> {
        Box::pin(async move {
            if self.refuse {
                return Err("the store is read-only".into());
            }
            let mut stored = self.token.lock().unwrap();
            if sfsync_salesforce::supersedes(token, stored.as_ref()) {
                *stored = Some(token.clone());
            }
            Ok(())
        })
    }
}

fn refresh_config(url: &str) -> sfsync_salesforce::ClientConfig {
    let demo = sfsync_simulator::Credentials::demo();
    let mut config = config(url);
    config.credentials = Credentials::RefreshToken {
        client_id: demo.client_id,
        client_secret: None,
        refresh_token: demo.refresh_token,
    };
    config
}

fn rotating() -> Faults {
    Faults {
        rotate_refresh_tokens: true,
        ..Faults::default()
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_and_the_next_process_starts_from_it() {
    let sim = start_with(Org::generate(&OrgSpec::tiny()), rotating()).await;
    let store = std::sync::Arc::new(SharedStore::default());
    for process in 1..=3u64 {
        let client = sfsync_salesforce::Client::with_refresh_token_store(
            refresh_config(&sim.url()),
            store.clone(),
        )
        .unwrap();
        client.describe("Contact").await.unwrap();
        let stored = store.token.lock().unwrap().clone().unwrap();
        assert_eq!(stored.generation, process);
        assert_ne!(
            stored.token,
            sfsync_simulator::Credentials::demo().refresh_token
        );
    }
    // Inside one process, a refresh after a 401 also rotates and stores.
    let client = sfsync_salesforce::Client::with_refresh_token_store(
        refresh_config(&sim.url()),
        store.clone(),
    )
    .unwrap();
    client.authenticate().await.unwrap();
    sim.expire_all_tokens();
    client.describe("Account").await.unwrap();
    assert_eq!(store.token.lock().unwrap().as_ref().unwrap().generation, 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_process_without_the_rotated_token_is_refused_and_revokes_the_chain() {
    // What the store prevents: the configured token is dead after the first rotation.
    let sim = start_with(Org::generate(&OrgSpec::tiny()), rotating()).await;
    let first = client_with(refresh_config(&sim.url()));
    first.describe("Contact").await.unwrap();
    let second = client_with(refresh_config(&sim.url()));
    let err = second.describe("Contact").await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    // The first process's session and refresh token went with the chain.
    assert!(first.describe("Account").await.is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_rotated_token_that_cannot_be_stored_fails_the_request_without_showing_it() {
    let sim = start_with(Org::generate(&OrgSpec::tiny()), rotating()).await;
    let store = std::sync::Arc::new(SharedStore {
        refuse: true,
        ..SharedStore::default()
    });
    let client =
        sfsync_salesforce::Client::with_refresh_token_store(refresh_config(&sim.url()), store)
            .unwrap();
    let err = client.authenticate().await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("could not be stored"), "{shown}");
    assert!(
        !shown.contains("5Aep861"),
        "a refresh token leaked: {shown}"
    );
    assert!(
        !shown.contains(&sfsync_simulator::Credentials::demo().refresh_token),
        "{shown}"
    );
    sim.shutdown().await;
}
