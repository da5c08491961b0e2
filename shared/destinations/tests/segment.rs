//! Segment: the wire form of every call, batch limits, and the shared retry behaviour.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sfsync_destinations::{Destination, Outcome};
use sfsync_mapping::{DestinationConfig, DestinationKind};

const WRITE_KEY: &str = "seg_write_key_9f8e7d";

fn cfg(url: &str) -> DestinationConfig {
    let mut c = config(DestinationKind::Segment);
    set(&mut c, "write_key", WRITE_KEY);
    c.endpoint = Some(url.into());
    c
}

const FIXTURE: Fixture = Fixture {
    config: cfg,
    ok: || reply(200, r#"{"success":true}"#),
    gzip_by_default: true,
    secrets: &[WRITE_KEY],
};

fn context(kind: &str, object: &str, i: usize) -> Value {
    json!({
        "sfsync": { "sync": format!("{kind}-sync"), "object": object, "kind": kind, "recordId": format!("REC{i:015}") },
    })
}

#[tokio::test]
async fn shared_behaviour_holds() {
    shared_behaviour(&FIXTURE).await;
}

#[tokio::test]
async fn every_call_has_its_segment_form() {
    let requests = deliver_all("{}", cfg, every_kind()).await;
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/batch");
    assert_eq!(r.query, None);
    assert_eq!(
        r.header("authorization").as_deref(),
        Some(basic(WRITE_KEY, "").as_str())
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let body = r.json();
    let batch = body["batch"].as_array().expect("batch");
    assert_eq!(batch.len(), 8);
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "only `batch`");

    assert_eq!(
        batch[0],
        json!({
            "type": "identify", "messageId": message_id(0), "timestamp": "2024-05-01T12:34:56.789Z",
            "userId": "003U00000000000000",
            "traits": { "email": "p0@example.com", "firstName": "Ada", "Title": "CTO" },
            "context": context("people", "Contact", 0),
        })
    );
    assert_eq!(
        batch[1],
        json!({
            "type": "track", "messageId": message_id(1), "timestamp": "2024-05-01T12:34:56.789Z",
            "userId": "003U00000000000001", "event": "Call Logged",
            "properties": { "Subject": "Intro call", "n": 1 },
            "context": context("events", "Task", 1),
        })
    );
    // An object without a user carries the mapping's stable anonymousId.
    assert_eq!(
        batch[2],
        json!({
            "type": "group", "messageId": message_id(2), "timestamp": "2024-05-01T12:34:56.789Z",
            "groupId": "001A00000000000002", "anonymousId": "sfsync-object-1-001A00000000000002",
            "traits": { "name": "Acme", "Industry": "Tools", "object_type_id": "1" },
            "context": context("objects", "Account", 2),
        })
    );
    // A relationship: group with both ids and the relationship's attributes.
    assert_eq!(batch[3]["type"], "group");
    assert_eq!(batch[3]["userId"], "003U00000000000003");
    assert_eq!(batch[3]["groupId"], "001A00000000000003");
    assert_eq!(
        batch[3]["traits"]["relationshipAttributes"],
        json!({ "Roles": "Buyer" })
    );
    assert!(batch[3].get("anonymousId").is_none());
    // Deletes are semantic track events.
    assert_eq!(
        batch[4],
        json!({
            "type": "track", "messageId": message_id(4), "timestamp": "2024-05-01T12:34:56.789Z",
            "event": "User Deleted", "userId": "003U00000000000004", "properties": {},
            "context": context("people", "Contact", 4),
        })
    );
    assert_eq!(
        batch[5],
        json!({
            "type": "track", "messageId": message_id(5), "timestamp": "2024-05-01T12:34:56.789Z",
            "event": "Object Deleted", "anonymousId": "sfsync-object-1-001A00000000000005",
            "groupId": "001A00000000000005",
            "properties": { "objectId": "001A00000000000005", "objectTypeId": "1" },
            "context": {
                "groupId": "001A00000000000005",
                "sfsync": context("objects", "Account", 5)["sfsync"],
            },
        })
    );
    assert_eq!(batch[6]["event"], "Relationship Deleted");
    assert_eq!(batch[6]["userId"], "003U00000000000006");
    assert_eq!(
        batch[6]["properties"],
        json!({ "objectId": "001A00000000000006", "objectTypeId": "1" })
    );
    // An object with a related user keeps its user and needs no anonymousId.
    assert_eq!(batch[7]["userId"], "005U00000000000007");
    assert!(batch[7].get("anonymousId").is_none());
}

/// A call as small as the spec allows, so that the count limit binds before the bytes.
fn tiny_track(i: usize) -> sfsync_mapping::Call {
    serde_json::from_value(json!({
        "type": "track", "messageId": format!("m{i}"), "timestamp": "2024-05-01T12:34:56Z",
        "userId": "u", "event": "e",
        "context": { "sfsync": { "sync": "s", "object": "Task", "kind": "events", "recordId": "r" } },
    }))
    .expect("call")
}

#[tokio::test]
async fn batches_hold_at_most_2500_calls() {
    let server = serve(|_, _| reply(200, "{}")).await;
    let d = destination(&cfg(&server.url));
    let report = d
        .deliver((0..2501).map(tiny_track).collect(), Duration::from_secs(20))
        .await;
    assert_eq!(report.delivered(), 2501);
    assert_eq!(report.requests, 2);
    let requests = server.requests();
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| r.json()["batch"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, vec![2500, 1]);
    assert!(
        requests[0].body.len() < 500_000,
        "the count bound, not the bytes"
    );
    // The order of calls is kept across batches.
    assert_eq!(requests[1].json()["batch"][0]["messageId"], "m2500");

    // Realistic calls are larger: 2501 of them still make 2 requests, split by bytes.
    let server = serve(|_, _| reply(200, "{}")).await;
    let d = destination(&cfg(&server.url));
    let report = d.deliver(tracks(2501), Duration::from_secs(20)).await;
    assert_eq!(report.delivered(), 2501);
    assert_eq!(report.requests, 2);
    assert!(server.requests().iter().all(|r| r.body.len() <= 500_000));
}

#[tokio::test]
async fn batches_hold_at_most_500_kb() {
    let server = serve(|_, _| reply(200, "{}")).await;
    let d = destination(&cfg(&server.url));
    let calls: Vec<_> = (0..40).map(|i| big_track(i, 15_000)).collect();
    let report = d.deliver(calls, Duration::from_secs(20)).await;
    assert_eq!(report.delivered(), 40);
    let requests = server.requests();
    assert!(requests.len() >= 2, "{} requests", requests.len());
    let mut total = 0;
    for r in &requests {
        assert!(r.body.len() <= 500_000, "a {} byte batch", r.body.len());
        total += r.json()["batch"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(total, 40);
}

#[tokio::test]
async fn lower_overrides_apply_and_limits_report_them() {
    let server = serve(|_, _| reply(200, "{}")).await;
    let mut config = cfg(&server.url);
    config.max_batch_calls = Some(100);
    config.max_batch_bytes = Some(200_000);
    let d = destination(&config);
    let limits = d.limits();
    assert_eq!(limits.max_calls, 100);
    assert_eq!(limits.max_batch_bytes, 200_000);
    assert_eq!(limits.max_call_bytes, 32 * 1024);
    let report = d.deliver(tracks(250), Duration::from_secs(20)).await;
    assert_eq!(report.delivered(), 250);
    assert_eq!(server.requests().len(), 3);

    // Overrides never raise the API's limits.
    let mut config = cfg(&server.url);
    config.max_batch_calls = Some(10_000);
    assert_eq!(destination(&config).limits().max_calls, 2500);
}

#[tokio::test]
async fn regions_choose_the_host() {
    let http = sfsync_destinations::http_client().expect("client");
    let mut config = cfg("http://unused");
    config.endpoint = None;
    let us = Destination::new(&config, http.clone()).expect("us");
    assert_eq!(
        us.plan(&tracks(1)).requests[0].url,
        "https://api.segment.io/v1/batch"
    );
    set(&mut config, "region", "eu");
    let eu = Destination::new(&config, http.clone()).expect("eu");
    assert_eq!(
        eu.plan(&tracks(1)).requests[0].url,
        "https://events.eu1.segmentapis.com/v1/batch"
    );
    // A region the API does not have cannot even be read: the type lists the regions.
    let mut json = serde_json::to_value(&config).expect("serializes");
    json["region"] = "mars".into();
    let err = serde_json::from_value::<DestinationConfig>(json).expect_err("unknown region");
    assert!(err.to_string().contains("unknown variant `mars`"), "{err}");
}

#[tokio::test]
async fn calls_the_api_cannot_take_are_dead_without_a_request() {
    let server = serve(|_, _| reply(200, "{}")).await;
    let d = destination(&cfg(&server.url));
    let mut no_event = track(0);
    no_event.event = None;
    let mut no_user = identify(1);
    no_user.user_id = None;
    let report = d
        .deliver(vec![no_event, no_user], Duration::from_secs(5))
        .await;
    let o = outcomes(&report);
    assert!(
        matches!(&o[0], Outcome::Dead { reason } if reason.contains("event")),
        "{o:?}"
    );
    assert!(
        matches!(&o[1], Outcome::Dead { reason } if reason.contains("userId")),
        "{o:?}"
    );
    assert_eq!(report.requests, 0);
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_413_splits_the_batch_until_the_culprit_is_alone() {
    // The server refuses any batch holding call 5 as too large.
    let culprit = message_id(5);
    let server = serve(move |_, r| {
        if String::from_utf8_lossy(&r.body).contains(&culprit) {
            reply(413, "payload too large")
        } else {
            reply(200, "{}")
        }
    })
    .await;
    let d = destination(&cfg(&server.url));
    let report = d.deliver(tracks(8), Duration::from_secs(20)).await;
    assert_eq!(report.delivered(), 7, "{report:?}");
    let dead: Vec<_> = report.dead().map(|o| o.message_id.clone()).collect();
    assert_eq!(dead, vec![message_id(5)]);
    // Every delivered call was sent in exactly one accepted request.
    let mut accepted = Vec::new();
    for r in server.requests() {
        if !String::from_utf8_lossy(&r.body).contains(&message_id(5)) {
            for c in r.json()["batch"].as_array().expect("batch") {
                accepted.push(c["messageId"].as_str().expect("id").to_string());
            }
        }
    }
    accepted.sort();
    accepted.dedup();
    assert_eq!(accepted.len(), 7);
}

#[tokio::test]
async fn deletes_carry_the_object_id_where_segments_customerio_destination_reads_it() {
    // segmentio/action-destinations, customerio `deleteObject` reads `groupId`,
    // `deleteRelationship` reads `context.groupId`; Customer.io itself reads `properties`.
    let (server, ledger) = vendors::segment_like(WRITE_KEY, vendors::refuse_none()).await;
    let d = destination(&cfg(&server.url));
    let report = d
        .deliver(
            vec![delete_object(0), delete_relationship(1)],
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(report.delivered(), 2, "{report:?}");
    let ledger = ledger.lock().expect("ledger");
    assert!(ledger.dropped.is_empty(), "{:?}", ledger.dropped);
    let (object, relationship) = (&ledger.accepted[0], &ledger.accepted[1]);
    assert_eq!(object["event"], "Object Deleted");
    assert_eq!(object["groupId"], "001A00000000000000");
    assert_eq!(object["context"]["groupId"], "001A00000000000000");
    assert_eq!(object["properties"]["objectId"], "001A00000000000000");
    assert_eq!(object["properties"]["objectTypeId"], "1");
    assert_eq!(relationship["event"], "Relationship Deleted");
    assert_eq!(relationship["context"]["groupId"], "001A00000000000001");
    assert_eq!(relationship["properties"]["objectId"], "001A00000000000001");
    assert_eq!(relationship["userId"], "003U00000000000001");
}
