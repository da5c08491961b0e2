//! Amplitude: /2/httpapi events, /identify and /groupidentify forms, the 400 partial
//! rejection, and the shared behaviour.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sfsync_destinations::{Destination, Outcome};
use sfsync_mapping::{DestinationConfig, DestinationKind};

const API_KEY: &str = "amp_api_key_0f1e2d3c";

fn cfg(url: &str) -> DestinationConfig {
    let mut c = config(DestinationKind::Amplitude);
    set(&mut c, "api_key", API_KEY);
    c.endpoint = Some(url.into());
    c
}

const FIXTURE: Fixture = Fixture {
    config: cfg,
    ok: || reply(200, r#"{"code":200,"events_ingested":3}"#),
    gzip_by_default: false,
    secrets: &[API_KEY],
};

#[tokio::test]
async fn shared_behaviour_holds() {
    shared_behaviour(&FIXTURE).await;
}

fn library() -> Value {
    json!(concat!("sfsync/", env!("CARGO_PKG_VERSION")))
}

#[tokio::test]
async fn events_carry_insert_id_and_ms_time() {
    let server = serve(|_, _| reply(200, r#"{"code":200}"#)).await;
    let d = destination(&cfg(&server.url));
    let report = d.deliver(vec![track(0)], Duration::from_secs(10)).await;
    assert_eq!(report.delivered(), 1);
    let r = &server.requests()[0];
    assert_eq!(r.path, "/2/httpapi");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(!r.gzipped);
    assert_eq!(
        r.json(),
        json!({
            "api_key": API_KEY,
            "events": [{
                "user_id": "003U00000000000000", "event_type": "Call Logged",
                "time": 1_714_566_896_789_i64, "insert_id": message_id(0),
                "event_properties": { "Subject": "Intro call", "n": 0 },
                "library": library(),
            }],
        })
    );
}

#[tokio::test]
async fn profiles_groups_relationships_and_deletes() {
    let server = serve(|_, _| reply(200, "success")).await;
    let http = sfsync_destinations::http_client().expect("client");
    let names = HashMap::from([("1".to_string(), "Account".to_string())]);
    let mut d = Destination::with_object_names(&cfg(&server.url), http, &names).expect("build");
    d.set_backoff(Duration::from_millis(10), Duration::from_millis(100));
    let calls = vec![identify(0), object(1), relationship(2)];
    let report = d.deliver(calls, Duration::from_secs(10)).await;
    assert_eq!(report.delivered(), 3, "{report:?}");
    let requests = server.requests();
    let by_path = |p: &str| requests.iter().find(|r| r.path == p).expect(p).clone();

    let identify = by_path("/identify");
    assert_eq!(
        identify.header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(identify.form_field("api_key"), API_KEY);
    let identification: Value =
        serde_json::from_str(&identify.form_field("identification")).expect("json");
    assert_eq!(
        identification,
        json!([
            { "user_id": "003U00000000000000",
              "user_properties": { "$set": { "email": "p0@example.com", "firstName": "Ada", "Title": "CTO" } } },
            { "user_id": "003U00000000000002", "groups": { "Account": "001A00000000000002" } },
        ])
    );

    let groups = by_path("/groupidentify");
    assert_eq!(groups.form_field("api_key"), API_KEY);
    let identification: Value =
        serde_json::from_str(&groups.form_field("identification")).expect("json");
    assert_eq!(
        identification,
        json!([{ "group_type": "Account", "group_value": "001A00000000000001",
                 "group_properties": { "$set": { "name": "Acme", "Industry": "Tools" } } }])
    );
    assert!(
        requests.iter().all(|r| r.path != "/2/httpapi"),
        "nothing here is an event"
    );
}

#[tokio::test]
async fn group_types_default_to_the_object_type_id() {
    let server = serve(|_, _| reply(200, "success")).await;
    let d = destination(&cfg(&server.url));
    d.deliver(vec![object(0)], Duration::from_secs(10)).await;
    let identification: Value =
        serde_json::from_str(&server.requests()[0].form_field("identification")).expect("json");
    assert_eq!(identification[0]["group_type"], "object_type_1");
}

#[tokio::test]
async fn a_400_drops_the_named_events_and_resends_the_rest() {
    let server = serve(|n, _| {
        if n == 0 {
            reply(
                400,
                r#"{"code":400,"error":"Request missing required field","missing_field":"event_type",
                    "events_with_invalid_fields":{"time":[1]},"events_with_missing_fields":{"event_type":[3]}}"#,
            )
        } else {
            reply(200, r#"{"code":200,"events_ingested":2}"#)
        }
    })
    .await;
    let d = destination(&cfg(&server.url));
    let report = d.deliver(tracks(4), Duration::from_secs(10)).await;
    let o = outcomes(&report);
    assert_eq!(o[0], Outcome::Delivered);
    assert_eq!(o[2], Outcome::Delivered);
    assert!(
        matches!(&o[1], Outcome::Dead { reason } if reason.contains("invalid field time")),
        "{o:?}"
    );
    assert!(
        matches!(&o[3], Outcome::Dead { reason } if reason.contains("missing field event_type")),
        "{o:?}"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let resent: Vec<Value> = requests[1].json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["insert_id"].clone())
        .collect();
    assert_eq!(resent, vec![json!(message_id(0)), json!(message_id(2))]);
}

#[tokio::test]
async fn a_400_without_indices_is_dead() {
    let server =
        serve(|_, _| reply(400, r#"{"code":400,"error":"Invalid JSON request body"}"#)).await;
    let d = destination(&cfg(&server.url));
    let report = d.deliver(tracks(2), Duration::from_secs(10)).await;
    assert_eq!(report.dead().count(), 2);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_400_invalid_api_key_pauses_instead_of_dead_lettering() {
    // HTTP V2 answers a wrong key with 400 "Invalid API key": the key, not the calls.
    let (server, _ledger) = vendors::amplitude(API_KEY, "s", vendors::refuse_none()).await;
    let mut config = cfg(&server.url);
    set(&mut config, "api_key", "amp_revoked_key_99");
    let d = destination(&config);
    let report = d
        .deliver(
            vec![track(0), track(1), identify(2)],
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(report.dead().count(), 0, "{report:?}");
    assert_eq!(report.paused().count(), 3);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_429_without_retry_after_waits_30_seconds() {
    let server = serve(|_, _| {
        reply(
            429,
            r#"{"code":429,"error":"Too many requests for some devices and users"}"#,
        )
    })
    .await;
    let d = destination(&cfg(&server.url));
    let report = d.deliver(tracks(1), Duration::from_secs(5)).await;
    assert_eq!(server.requests().len(), 1);
    let after = report.max_retry_after().expect("a wait");
    assert!(
        after > Duration::from_secs(28) && after <= Duration::from_secs(30),
        "{after:?}"
    );
}

#[tokio::test]
async fn limits_and_regions() {
    let http = sfsync_destinations::http_client().expect("client");
    let mut config = cfg("http://unused");
    config.endpoint = None;
    let d = Destination::new(&config, http.clone()).expect("us");
    assert_eq!(d.limits().max_calls, 2000);
    assert_eq!(d.limits().max_batch_bytes, 1_000_000);
    assert_eq!(
        d.plan(&tracks(1)).requests[0].url,
        "https://api2.amplitude.com/2/httpapi"
    );
    let plan = d.plan(
        &(0..1025)
            .map(|i| object_with_properties(i, 0))
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        plan.requests.len(),
        2,
        "≤ 1024 group identifications per request"
    );
    assert_eq!(plan.requests[0].calls.len(), 1024);
    // Two group properties each: ≤ 1024 group properties per request binds first.
    let plan = d.plan(&(0..1025).map(object).collect::<Vec<_>>());
    assert_eq!(plan.requests.len(), 3);
    assert_eq!(plan.requests[0].calls.len(), 512);
    for r in &plan.requests {
        assert!(r.body_bytes <= 1_000_000);
    }
    set(&mut config, "region", "eu");
    let eu = Destination::new(&config, http).expect("eu");
    assert_eq!(
        eu.plan(&[identify(0)]).requests[0].url,
        "https://api.eu.amplitude.com/identify"
    );
}

/// An object with `n` group properties.
fn object_with_properties(i: usize, n: usize) -> sfsync_mapping::Call {
    let mut c = object(i);
    let mut traits = serde_json::Map::new();
    traits.insert("object_type_id".into(), json!("1"));
    for p in 0..n {
        traits.insert(format!("Field{p}__c"), json!(p));
    }
    c.traits = Some(traits.into());
    c
}

#[tokio::test]
async fn group_identify_requests_hold_at_most_1024_group_properties() {
    let (server, ledger) = vendors::amplitude(API_KEY, "s", vendors::refuse_none()).await;
    let d = destination(&cfg(&server.url));
    // 1024 identifications (the count limit) of 3 properties each: 3072 properties.
    let calls: Vec<_> = (0..1024).map(|i| object_with_properties(i, 3)).collect();
    let report = d.deliver(calls, Duration::from_secs(20)).await;
    assert_eq!(report.delivered(), 1024, "{:?}", report.dead().next());
    let ledger = ledger.lock().expect("ledger");
    assert_eq!(ledger.refused, 0, "a request broke Amplitude's limits");
    assert_eq!(ledger.accepted.len(), 1024);
    // 341 objects of 3 properties (1023) per request.
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn an_object_with_more_than_1024_group_properties_is_dead_unsent() {
    let server = serve(|_, _| reply(200, "success")).await;
    let d = destination(&cfg(&server.url));
    let report = d
        .deliver(
            vec![object_with_properties(0, 1025), object(1)],
            Duration::from_secs(10),
        )
        .await;
    let o = outcomes(&report);
    assert!(
        matches!(&o[0], Outcome::Dead { reason } if reason.contains("1025 group properties")),
        "{o:?}"
    );
    assert_eq!(o[1], Outcome::Delivered);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn an_identify_refused_for_one_identification_costs_that_one() {
    // Amplitude refuses a whole /identify request for a user_id shorter than 5 characters.
    let (server, ledger) = vendors::amplitude(API_KEY, "s", vendors::refuse_none()).await;
    let d = destination(&cfg(&server.url));
    let mut calls: Vec<_> = (0..10).map(identify).collect();
    calls[6].user_id = Some("u6".into());
    let report = d.deliver(calls, Duration::from_secs(10)).await;
    let dead: Vec<_> = report.dead().map(|o| o.message_id.clone()).collect();
    assert_eq!(dead, vec![message_id(6)]);
    assert!(
        matches!(&report.outcomes[6].outcome, Outcome::Dead { reason } if reason.contains("shorter than 5")),
        "{:?}",
        report.outcomes[6]
    );
    assert_eq!(report.delivered(), 9);
    assert_eq!(ledger.lock().expect("ledger").accepted.len(), 9);
}

#[tokio::test]
async fn without_a_secret_key_deletes_are_dead_with_how_to_enable_them() {
    let (server, ledger) = vendors::amplitude(API_KEY, "s", vendors::refuse_none()).await;
    let d = destination(&cfg(&server.url));
    let report = d
        .deliver(
            vec![delete_person(0), delete_object(1), delete_relationship(2)],
            Duration::from_secs(10),
        )
        .await;
    assert!(server.requests().is_empty(), "no delete became an event");
    assert!(ledger.lock().expect("ledger").accepted.is_empty());
    let o = outcomes(&report);
    assert!(
        matches!(&o[0], Outcome::Dead { reason } if reason.contains("secret_key")),
        "{o:?}"
    );
    for dead in &o[1..] {
        assert!(
            matches!(dead, Outcome::Dead { reason } if reason.contains("no API to delete")),
            "{o:?}"
        );
    }
}

#[tokio::test]
async fn person_deletes_go_through_the_user_privacy_api() {
    const SECRET_KEY: &str = "amp_secret_key_5e6f7a";
    let (server, ledger) = vendors::amplitude(API_KEY, SECRET_KEY, vendors::refuse_none()).await;
    let mut config = cfg(&server.url);
    set(&mut config, "secret_key", SECRET_KEY);
    let d = destination(&config);
    let calls: Vec<_> = (0..250).map(delete_person).collect();
    let report = d.deliver(calls, Duration::from_secs(20)).await;
    assert_eq!(
        report.delivered(),
        250,
        "{:?}",
        report.outcomes.iter().find(|o| !o.outcome.is_delivered())
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "at most 100 ids per request");
    for r in &requests {
        assert_eq!(r.path, "/api/2/deletions/users");
        assert_eq!(
            r.header("authorization").as_deref(),
            Some(basic(API_KEY, SECRET_KEY).as_str())
        );
        let body = r.json();
        assert!(
            body["user_ids"]
                .as_array()
                .is_some_and(|ids| ids.len() <= 100)
        );
        assert_eq!(body["requester"], "sfsync");
    }
    for pair in requests.windows(2) {
        assert!(
            pair[1].arrived.duration_since(pair[0].arrived) >= Duration::from_secs(1),
            "one request per second"
        );
    }
    let ledger = ledger.lock().expect("ledger");
    assert_eq!(ledger.accepted.len(), 250);
    assert_eq!(ledger.accepted[0], json!("003U00000000000000"));
}
