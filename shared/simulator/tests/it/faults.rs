//! Each injected fault, observed over HTTP.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sfsync_simulator::{Faults, Org, OrgSpec};

use crate::common::{V, client_credentials_token, start_with, tiny};

fn limits() -> String {
    format!("/services/data/v{V}/limits")
}

#[tokio::test]
async fn token_expires_after_n_calls_and_a_new_one_works() {
    let api = start_with(
        Org::empty(),
        Faults {
            expire_token_after_calls: Some(2),
            ..Faults::default()
        },
    )
    .await;
    assert_eq!(api.get(&limits()).await.status, StatusCode::OK);
    assert_eq!(api.get(&limits()).await.status, StatusCode::OK);
    let third = api.get(&limits()).await;
    assert_eq!(third.status, StatusCode::UNAUTHORIZED);
    assert_eq!(third.error_code(), "INVALID_SESSION_ID");
    let fresh = client_credentials_token(&api.http, &api.url()).await;
    assert_eq!(
        api.get_with_token(&limits(), &fresh).await.status,
        StatusCode::OK
    );
    // The expired one stays dead.
    assert_eq!(api.get(&limits()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.sim.stats().api_calls, 3);
}

#[tokio::test]
async fn every_nth_call_fails_with_503() {
    let api = start_with(
        Org::empty(),
        Faults {
            fail_every_nth: Some(3),
            ..Faults::default()
        },
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(api.get(&limits()).await.status.as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 503, 200, 200, 503]);
}

#[tokio::test]
async fn daily_limit_answers_403_request_limit_exceeded() {
    let api = start_with(
        Org::empty(),
        Faults {
            daily_limit: Some(2),
            ..Faults::default()
        },
    )
    .await;
    let a = api.get(&limits()).await;
    assert_eq!(a.header("sforce-limit-info"), "api-usage=1/2");
    assert_eq!(a.json()["DailyApiRequests"]["Max"], 2);
    assert_eq!(api.get(&limits()).await.status, StatusCode::OK);
    let over = api.get(&limits()).await;
    assert_eq!(over.status, StatusCode::FORBIDDEN);
    assert_eq!(over.error_code(), "REQUEST_LIMIT_EXCEEDED");
    assert_eq!(over.json()[0]["message"], "TotalRequests Limit exceeded.");
    assert_eq!(over.header("sforce-limit-info"), "api-usage=2/2");
    // Raising the limit at run time lets calls through again.
    api.sim.set_faults(Faults {
        daily_limit: Some(10),
        ..Faults::default()
    });
    assert_eq!(api.get(&limits()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn latency_delays_responses() {
    let api = tiny().await;
    api.sim.set_faults(Faults {
        latency: Some(Duration::from_millis(150)),
        ..Faults::default()
    });
    let started = Instant::now();
    let r = api.get(&limits()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn wide_windows_time_out_and_narrow_ones_pass() {
    let api = start_with(
        Org::generate(&OrgSpec::demo()),
        Faults {
            query_timeout_over_rows: Some(100),
            query_timeout_after: Duration::from_millis(10),
            ..Faults::default()
        },
    )
    .await;
    let wide = api.query("SELECT Id FROM Contact LIMIT 10").await;
    assert_eq!(wide.status, StatusCode::BAD_REQUEST);
    assert_eq!(wide.error_code(), "QUERY_TIMEOUT");
    // Find a window holding at most 100 rows: the newest few.
    let all = api.sim.org().lock().expect("org").records("Contact");
    let mut stamps: Vec<String> = all
        .iter()
        .filter_map(|r| r["SystemModstamp"].as_str().map(str::to_string))
        .collect();
    stamps.sort();
    let pivot = &stamps[stamps.len() - 50];
    let lit = chrono::DateTime::parse_from_str(pivot, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .map(|d| d.to_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let narrow = api
        .query(&format!(
            "SELECT Id FROM Contact WHERE SystemModstamp >= {lit}"
        ))
        .await;
    assert_eq!(narrow.status, StatusCode::OK, "{}", narrow.text);
    assert!(
        narrow.json()["totalSize"]
            .as_u64()
            .is_some_and(|n| (50..=100).contains(&n))
    );
}
