//! The daily API limit: our own share, Salesforce's 403, and resuming later.

use sfsync_mapping::config::ExtractApi;
use sfsync_salesforce::{Cursor, Error};
use sfsync_simulator::{Faults, Org, OrgSpec};

use crate::common::*;

#[tokio::test]
async fn every_limit_info_field_is_recorded() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    assert!(client.usage().limit.is_none());
    client.describe("Contact").await.unwrap();
    let usage = client.usage();
    assert_eq!(usage.calls, 1);
    let limit = usage.limit.expect("Sforce-Limit-Info was not recorded");
    let (used, max) = limit.api_usage.expect("api-usage");
    assert!(used >= 1 && max > used, "{used}/{max}");
    sim.shutdown().await;
}

/// Extracts page by page, checkpointing each page's `last`, until the end or an error.
async fn run_until_error(
    client: &sfsync_salesforce::Client,
    plan: &sfsync_salesforce::SyncPlan,
    after: Option<Cursor>,
    until: chrono::DateTime<chrono::Utc>,
) -> (Vec<serde_json::Value>, Option<Cursor>, Option<Error>) {
    let mut records = Vec::new();
    let mut checkpoint = after.clone();
    let mut e = client.extract(plan, window(after, until, ExtractApi::Rest));
    loop {
        match e.next_page().await {
            Ok(Some(page)) => {
                records.extend(page.records.iter().map(sfsync_mapping::Record::to_value));
                if page.last.is_some() {
                    checkpoint = page.last;
                }
            }
            Ok(None) => return (records, checkpoint, None),
            Err(err) => return (records, checkpoint, Some(err)),
        }
    }
}

#[tokio::test]
async fn salesforce_daily_limit_mid_run_stops_and_resumes_later() {
    let sim = start(Org::generate(&OrgSpec::with_contacts(1_000))).await;
    let until = now(&sim).await;
    let mut config = config(&sim.url());
    config.max_api_share = 1.0;
    let client = client_with(config.clone());
    let plan = client.plan(&contacts_sync(&["Email"])).await.unwrap();
    let used = sim.stats().api_calls;
    sim.set_faults(Faults {
        daily_limit: Some(used + 3),
        ..Faults::default()
    });
    let (first, checkpoint, err) = run_until_error(&client, &plan, None, until).await;
    let err = err.expect("the limit was never hit");
    assert!(matches!(err, Error::ApiLimit { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!first.is_empty() && first.len() < 1000, "{}", first.len());
    // Not retried in a loop: one refused request, then stop.
    let calls_at_stop = sim.stats().api_calls;
    assert!(
        client
            .extract(&plan, window(checkpoint.clone(), until, ExtractApi::Rest))
            .next_page()
            .await
            .is_err()
    );
    assert!(sim.stats().api_calls <= calls_at_stop + 1);

    // The next day: a new process resumes from the checkpoint.
    sim.set_faults(Faults::default());
    let client = client_with(config);
    let (rest, _, err) = run_until_error(&client, &plan, checkpoint, until).await;
    assert!(err.is_none(), "{err:?}");
    let mut all = first;
    all.extend(rest);
    assert_eq!(unique_ids(&all), org_ids(&sim, "Contact").await);
    sim.shutdown().await;
}

#[tokio::test]
async fn configured_share_stops_before_salesforce_does() {
    let sim = start(Org::generate(&OrgSpec::with_contacts(1_000))).await;
    let until = now(&sim).await;
    let mut config = config(&sim.url());
    config.max_api_share = 0.5;
    let client = client_with(config);
    let plan = client.plan(&contacts_sync(&["Email"])).await.unwrap();
    let used = sim.stats().api_calls;
    // Half the budget is reached after about 3 more requests.
    sim.set_faults(Faults {
        daily_limit: Some((used + 3) * 2),
        ..Faults::default()
    });
    let (first, checkpoint, err) = run_until_error(&client, &plan, None, until).await;
    match err {
        Some(Error::ApiLimit { used, max }) => {
            assert!(used as f64 / max as f64 >= 0.5, "{used}/{max}");
            assert!(used < max, "Salesforce's own limit was hit: {used}/{max}");
        }
        other => panic!("expected ApiLimit, got {other:?}"),
    }
    assert!(checkpoint.is_some());
    assert!(first.len() < 1000);
    sim.shutdown().await;
}
