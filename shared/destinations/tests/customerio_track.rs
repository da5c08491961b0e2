//! Customer.io Track API v2: entity operations, deterministic event ULIDs, 207 partial
//! success, and the shared behaviour.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sfsync_destinations::{Destination, Outcome, event_ulid};
use sfsync_mapping::{DestinationConfig, DestinationKind};

const SITE_ID: &str = "site_4f3e2d";
const API_KEY: &str = "track_api_key_7c8d9e";

fn cfg(url: &str) -> DestinationConfig {
    let mut c = config(DestinationKind::CustomerioTrack);
    set(&mut c, "site_id", SITE_ID);
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

const SECONDS: i64 = 1_714_566_896; // 2024-05-01T12:34:56Z

#[tokio::test]
async fn shared_behaviour_holds() {
    shared_behaviour(&FIXTURE).await;
}

#[tokio::test]
async fn every_call_is_an_entity_operation() {
    let calls = every_kind();
    let event_id = event_ulid(&calls[1]).expect("ulid");
    let requests = deliver_all("{}", cfg, calls).await;
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/api/v2/batch");
    assert_eq!(
        r.header("authorization").as_deref(),
        Some(basic(SITE_ID, API_KEY).as_str())
    );
    let body = r.json();
    let b = body["batch"].as_array().expect("batch");
    assert_eq!(
        b[0],
        json!({
            "type": "person", "identifiers": { "id": "003U00000000000000" }, "action": "identify",
            "attributes": { "email": "p0@example.com", "firstName": "Ada", "Title": "CTO" },
            "timestamp": SECONDS,
        })
    );
    assert_eq!(
        b[1],
        json!({
            "type": "person", "identifiers": { "id": "003U00000000000001" }, "action": "event",
            "name": "Call Logged", "id": event_id,
            "attributes": { "Subject": "Intro call", "n": 1 }, "timestamp": SECONDS,
        })
    );
    assert_eq!(
        b[2],
        json!({
            "type": "object",
            "identifiers": { "object_type_id": "1", "object_id": "001A00000000000002" },
            "action": "identify", "attributes": { "name": "Acme", "Industry": "Tools" },
            "timestamp": SECONDS,
        })
    );
    assert_eq!(
        b[3],
        json!({
            "type": "person", "identifiers": { "id": "003U00000000000003" },
            "action": "add_relationships",
            "cio_relationships": [{
                "identifiers": { "object_type_id": "1", "object_id": "001A00000000000003" },
                "relationship_attributes": { "Roles": "Buyer" },
            }],
            "timestamp": SECONDS,
        })
    );
    assert_eq!(
        b[4],
        json!({ "type": "person", "identifiers": { "id": "003U00000000000004" }, "action": "delete", "timestamp": SECONDS })
    );
    assert_eq!(
        b[5],
        json!({
            "type": "object",
            "identifiers": { "object_type_id": "1", "object_id": "001A00000000000005" },
            "action": "delete", "timestamp": SECONDS,
        })
    );
    assert_eq!(
        b[6],
        json!({
            "type": "person", "identifiers": { "id": "003U00000000000006" },
            "action": "delete_relationships",
            "cio_relationships": [{ "identifiers": { "object_type_id": "1", "object_id": "001A00000000000006" } }],
            "timestamp": SECONDS,
        })
    );
    // An object naming a user relates that person to it.
    assert_eq!(
        b[7]["cio_relationships"],
        json!([{ "identifiers": { "id": "005U00000000000007" } }])
    );
}

#[tokio::test]
async fn event_ids_are_deterministic_ulids() {
    let call = track(1);
    let id = event_ulid(&call).expect("ulid");
    assert_eq!(id, event_ulid(&call).expect("again"), "same call, same id");
    assert_eq!(id.len(), 26);
    let parsed = ulid::Ulid::from_string(&id).expect("a valid ULID");
    assert_eq!(
        parsed.timestamp_ms(),
        1_714_566_896_789,
        "48-bit time is the call's"
    );
    let other = event_ulid(&track(2)).expect("ulid");
    assert_ne!(id, other, "another messageId, other random bits");
    assert_eq!(id[..10], other[..10], "same timestamp prefix");
}

#[tokio::test]
async fn a_207_dead_letters_only_the_failed_items() {
    let server = serve(|_, _| {
        reply(
            207,
            r#"{"errors":[{"batch_index":1,"reason":"invalid","field":"identifiers","message":"id is too long"},
                          {"batch_index":3,"reason":"required","field":"name","message":"event name is required"}]}"#,
        )
    })
    .await;
    let d = destination(&cfg(&server.url));
    let report = d.deliver(tracks(5), Duration::from_secs(10)).await;
    assert_eq!(
        server.requests().len(),
        1,
        "accepted items are never resent"
    );
    let o = outcomes(&report);
    assert_eq!(o[0], Outcome::Delivered);
    assert_eq!(o[2], Outcome::Delivered);
    assert_eq!(o[4], Outcome::Delivered);
    match &o[1] {
        Outcome::Dead { reason } => {
            assert!(
                reason.contains("207") && reason.contains("id is too long"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&o[3], Outcome::Dead { reason } if reason.contains("event name is required")));
}

#[tokio::test]
async fn a_400_is_dead_for_the_whole_request() {
    let server = serve(|_, _| reply(400, r#"{"errors":[{"message":"malformed batch"}]}"#)).await;
    let d = destination(&cfg(&server.url));
    let report = d.deliver(tracks(3), Duration::from_secs(10)).await;
    assert_eq!(report.dead().count(), 3);
    assert_eq!(server.requests().len(), 1);
    assert!(report.dead().all(
        |o| matches!(&o.outcome, Outcome::Dead { reason } if reason.contains("malformed batch"))
    ));
}

#[tokio::test]
async fn objects_need_an_object_type() {
    let server = serve(|_, _| reply(200, "{}")).await;
    let d = destination(&cfg(&server.url));
    let mut c = object(0);
    let mut traits = c.traits_map();
    traits.remove("object_type_id").expect("an object type");
    c.traits = Some(traits.into());
    let report = d.deliver(vec![c], Duration::from_secs(5)).await;
    assert!(
        matches!(&outcomes(&report)[0], Outcome::Dead { reason } if reason.contains("object_type_id"))
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn regions_choose_the_host() {
    let http = sfsync_destinations::http_client().expect("client");
    let mut config = cfg("http://unused");
    config.endpoint = None;
    set(&mut config, "region", "eu");
    let eu = Destination::new(&config, http).expect("eu");
    assert_eq!(
        eu.plan(&tracks(1)).requests[0].url,
        "https://track-eu.customer.io/api/v2/batch"
    );
}
