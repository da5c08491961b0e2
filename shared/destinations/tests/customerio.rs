//! Customer.io Data Pipelines: objects and relationships as group calls, semantic deletes,
//! 32 KB / 500 KB limits, and the shared retry behaviour.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sfsync_destinations::{Destination, Outcome};
use sfsync_mapping::{DestinationConfig, DestinationKind};

const API_KEY: &str = "cio_cdp_key_1a2b3c";

fn cfg(url: &str) -> DestinationConfig {
    let mut c = config(DestinationKind::Customerio);
    set(&mut c, "api_key", API_KEY);
    c.endpoint = Some(url.into());
    c
}

const FIXTURE: Fixture = Fixture {
    config: cfg,
    ok: || reply(200, "{}"),
    gzip_by_default: false,
    secrets: &[API_KEY],
};

#[tokio::test]
async fn shared_behaviour_holds() {
    shared_behaviour(&FIXTURE).await;
}

#[tokio::test]
async fn objects_relationships_and_deletes_in_customerio_form() {
    let calls = vec![
        identify(0),
        object(1),
        relationship(2),
        delete_person(3),
        delete_object(4),
        delete_relationship(5),
    ];
    let requests = deliver_all("{}", cfg, calls).await;
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/v1/batch");
    assert_eq!(
        r.header("authorization").as_deref(),
        Some(basic(API_KEY, "").as_str())
    );
    assert!(!r.gzipped, "gzip is off unless configured");
    let body = r.json();
    let batch = body["batch"].as_array().expect("batch");
    assert_eq!(batch[0]["type"], "identify");
    assert_eq!(batch[0]["userId"], "003U00000000000000");
    // An object: group call, object_type_id in traits, the mapping's anonymousId.
    assert_eq!(batch[1]["type"], "group");
    assert_eq!(batch[1]["groupId"], "001A00000000000001");
    assert_eq!(batch[1]["traits"]["object_type_id"], "1");
    assert_eq!(batch[1]["traits"]["name"], "Acme");
    assert_eq!(
        batch[1]["anonymousId"],
        "sfsync-object-1-001A00000000000001"
    );
    assert!(batch[1].get("userId").is_none());
    // A relationship: the person is userId, attributes in relationshipAttributes.
    assert_eq!(batch[2]["type"], "group");
    assert_eq!(batch[2]["userId"], "003U00000000000002");
    assert_eq!(batch[2]["groupId"], "001A00000000000002");
    assert_eq!(
        batch[2]["traits"],
        json!({ "object_type_id": "1", "relationshipAttributes": { "Roles": "Buyer" } })
    );
    // Semantic delete events.
    assert_eq!(batch[3]["type"], "track");
    assert_eq!(batch[3]["event"], "User Deleted");
    assert_eq!(batch[3]["userId"], "003U00000000000003");
    assert_eq!(batch[4]["event"], "Object Deleted");
    assert_eq!(
        batch[4]["anonymousId"],
        "sfsync-object-1-001A00000000000004"
    );
    assert_eq!(
        batch[4]["properties"],
        json!({ "objectId": "001A00000000000004", "objectTypeId": "1" })
    );
    assert_eq!(batch[5]["event"], "Relationship Deleted");
    assert_eq!(batch[5]["userId"], "003U00000000000005");
    assert_eq!(
        batch[5]["properties"],
        json!({ "objectId": "001A00000000000005", "objectTypeId": "1" })
    );
    for (i, call) in batch.iter().enumerate() {
        assert_eq!(call["messageId"], message_id(i));
    }
}

#[tokio::test]
async fn batches_stay_under_500_kb_and_calls_under_32_kb() {
    let server = serve(|_, _| reply(200, "{}")).await;
    let d = destination(&cfg(&server.url));
    assert_eq!(d.limits().max_call_bytes, 32 * 1024);
    assert_eq!(d.limits().max_batch_bytes, 500_000);
    let mut calls: Vec<_> = (0..60).map(|i| big_track(i, 20_000)).collect();
    calls.push(big_track(60, 33 * 1024));
    let report = d.deliver(calls, Duration::from_secs(20)).await;
    assert_eq!(report.delivered(), 60);
    assert_eq!(report.dead().count(), 1);
    let requests = server.requests();
    assert!(requests.len() >= 3);
    for r in &requests {
        assert!(r.body.len() <= 500_000, "{}", r.body.len());
    }
}

#[tokio::test]
async fn regions_choose_the_host() {
    let http = sfsync_destinations::http_client().expect("client");
    let mut config = cfg("http://unused");
    config.endpoint = None;
    let us = Destination::new(&config, http.clone()).expect("us");
    assert_eq!(
        us.plan(&tracks(1)).requests[0].url,
        "https://cdp.customer.io/v1/batch"
    );
    set(&mut config, "region", "eu");
    let eu = Destination::new(&config, http).expect("eu");
    assert_eq!(
        eu.plan(&tracks(1)).requests[0].url,
        "https://cdp-eu.customer.io/v1/batch"
    );
}

#[tokio::test]
async fn gzip_when_configured() {
    let server = serve(|_, _| reply(200, "{}")).await;
    let mut config = cfg(&server.url);
    config.gzip = Some(true);
    let d = destination(&config);
    let report = d.deliver(tracks(10), Duration::from_secs(10)).await;
    assert_eq!(report.delivered(), 10);
    let r = &server.requests()[0];
    assert!(r.gzipped);
    assert_eq!(r.json()["batch"].as_array().map(Vec::len), Some(10));
}

/// An object synced without a related user, as `sfsync map` emits it.
fn mapped_object_without_user(id: &str) -> sfsync_mapping::Call {
    let sync: sfsync_mapping::SyncConfig = serde_json::from_value(json!({
        "name": "accounts", "object": "Account", "kind": "objects", "group_id": "Id",
        "user_id": "OwnerId", "object_type_id": "1", "fields": ["Name"],
    }))
    .expect("sync");
    let record = json!({ "Id": id, "SystemModstamp": "2024-05-01T12:34:56.000+0000",
        "OwnerId": null, "Name": "Acme" });
    sfsync_mapping::map_record(&sync, record).expect("mapped")
}

#[tokio::test]
async fn an_invalid_call_is_refused_in_strict_mode_and_only_it_is_dead() {
    // The vendor server drops an invalid call behind a 200 unless `X-Strict-Mode: 1` is sent.
    let (server, ledger) = vendors::customerio_pipelines(API_KEY, vendors::refuse_none()).await;
    let d = destination(&cfg(&server.url));
    let mut bad = track(1);
    bad.timestamp = "yesterday".into();
    let report = d
        .deliver(vec![track(0), bad, track(2)], Duration::from_secs(10))
        .await;
    let ledger = ledger.lock().expect("ledger");
    assert!(
        ledger.dropped.is_empty(),
        "Customer.io dropped calls silently: {:?}",
        ledger.dropped
    );
    let o = outcomes(&report);
    assert_eq!(o[0], Outcome::Delivered);
    assert_eq!(o[2], Outcome::Delivered);
    assert!(
        matches!(&o[1], Outcome::Dead { reason } if reason.contains("400") && reason.contains("not an ISO-8601")),
        "{o:?}"
    );
    assert_eq!(ledger.accepted.len(), 2);
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("x-strict-mode").as_deref() == Some("1"))
    );
}

#[tokio::test]
async fn an_object_without_a_user_reaches_customerio_with_the_mappings_anonymous_id() {
    let (server, ledger) = vendors::customerio_pipelines(API_KEY, vendors::refuse_none()).await;
    let d = destination(&cfg(&server.url));
    let call = mapped_object_without_user("001A00000000000042");
    let report = d.deliver(vec![call], Duration::from_secs(10)).await;
    assert_eq!(report.delivered(), 1, "{report:?}");
    let ledger = ledger.lock().expect("ledger");
    assert!(ledger.dropped.is_empty(), "{:?}", ledger.dropped);
    assert_eq!(ledger.accepted.len(), 1);
    assert_eq!(
        ledger.accepted[0]["anonymousId"],
        "sfsync-object-1-001A00000000000042"
    );
    assert!(ledger.accepted[0].get("userId").is_none());
}
