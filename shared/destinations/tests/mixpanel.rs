//! Mixpanel: /import, /engage and /groups forms, strict partial success, verbose answers,
//! and the shared behaviour.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sfsync_destinations::{Destination, Outcome};
use sfsync_mapping::{DestinationConfig, DestinationKind};

const TOKEN: &str = "mp_project_token_aa11";
const SA_SECRET: &str = "mp_service_secret_bb22";

fn cfg(url: &str) -> DestinationConfig {
    let mut c = config(DestinationKind::Mixpanel);
    set(&mut c, "project_token", TOKEN);
    c.endpoint = Some(url.into());
    c
}

fn service_account(url: &str) -> DestinationConfig {
    let mut c = cfg(url);
    set(&mut c, "project_id", "31415");
    set(&mut c, "username", "sfsync.sa");
    set(&mut c, "secret", SA_SECRET);
    c
}

fn ok_for(path: &str) -> Reply {
    if path == "/import" {
        reply(
            200,
            r#"{"code":200,"num_records_imported":1,"status":"OK"}"#,
        )
    } else {
        reply(200, r#"{"status":1,"error":null}"#)
    }
}

const FIXTURE: Fixture = Fixture {
    config: service_account,
    ok: || {
        reply(
            200,
            r#"{"code":200,"num_records_imported":3,"status":"OK"}"#,
        )
    },
    gzip_by_default: true,
    secrets: &[TOKEN, SA_SECRET],
};

#[tokio::test]
async fn shared_behaviour_holds() {
    shared_behaviour(&FIXTURE).await;
}

#[tokio::test]
async fn events_go_to_strict_import_with_the_service_account() {
    let server = serve(|_, r| ok_for(&r.path)).await;
    let d = destination(&service_account(&server.url));
    let report = d
        .deliver(vec![track(0), track(1)], Duration::from_secs(10))
        .await;
    assert_eq!(report.delivered(), 2, "{report:?}");
    let r = &server.requests()[0];
    assert_eq!(r.path, "/import");
    assert_eq!(r.query.as_deref(), Some("strict=1&project_id=31415"));
    assert_eq!(
        r.header("authorization").as_deref(),
        Some(basic("sfsync.sa", SA_SECRET).as_str())
    );
    assert!(r.gzipped, "/import takes gzip");
    assert_eq!(
        r.json(),
        json!([
            { "event": "Call Logged", "properties": {
                "Subject": "Intro call", "n": 0, "time": 1_714_566_896_789_i64,
                "distinct_id": "003U00000000000000", "$insert_id": message_id(0) } },
            { "event": "Call Logged", "properties": {
                "Subject": "Intro call", "n": 1, "time": 1_714_566_896_789_i64,
                "distinct_id": "003U00000000000001", "$insert_id": message_id(1) } },
        ])
    );
}

#[tokio::test]
async fn without_a_service_account_the_token_authenticates() {
    let server = serve(|_, r| ok_for(&r.path)).await;
    let d = destination(&cfg(&server.url));
    d.deliver(vec![track(0)], Duration::from_secs(10)).await;
    let r = &server.requests()[0];
    assert_eq!(r.query.as_deref(), Some("strict=1"));
    assert_eq!(
        r.header("authorization").as_deref(),
        Some(basic(TOKEN, "").as_str())
    );
}

#[tokio::test]
async fn profiles_groups_relationships_and_deletes() {
    let server = serve(|_, r| ok_for(&r.path)).await;
    let d = destination(&cfg(&server.url));
    let calls = vec![
        identify(0),
        object(1),
        relationship(2),
        delete_person(3),
        delete_object(4),
        delete_relationship(5),
    ];
    let report = d.deliver(calls, Duration::from_secs(10)).await;
    assert_eq!(report.delivered(), 6, "{report:?}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "one /engage and one /groups request");
    let engage = requests
        .iter()
        .find(|r| r.path == "/engage")
        .expect("engage");
    let groups = requests
        .iter()
        .find(|r| r.path == "/groups")
        .expect("groups");
    assert_eq!(engage.query.as_deref(), Some("verbose=1&ip=0"));
    assert_eq!(groups.query.as_deref(), Some("verbose=1"));
    assert!(!engage.gzipped && !groups.gzipped);
    assert_eq!(
        engage.json(),
        json!([
            { "$token": TOKEN, "$distinct_id": "003U00000000000000",
              "$set": { "$email": "p0@example.com", "$first_name": "Ada", "Title": "CTO" } },
            { "$token": TOKEN, "$distinct_id": "003U00000000000002",
              "$union": { "company_id": ["001A00000000000002"] } },
            { "$token": TOKEN, "$distinct_id": "003U00000000000003", "$delete": "" },
            { "$token": TOKEN, "$distinct_id": "003U00000000000005",
              "$remove": { "company_id": "001A00000000000005" } },
        ])
    );
    assert_eq!(
        groups.json(),
        json!([
            { "$token": TOKEN, "$group_key": "company_id", "$group_id": "001A00000000000001",
              "$set": { "$name": "Acme", "Industry": "Tools" } },
            { "$token": TOKEN, "$group_key": "company_id", "$group_id": "001A00000000000004",
              "$delete": "" },
        ])
    );
}

#[tokio::test]
async fn the_configured_group_key_is_used() {
    let server = serve(|_, r| ok_for(&r.path)).await;
    let mut config = cfg(&server.url);
    set(&mut config, "group_key", "account_id");
    let d = destination(&config);
    d.deliver(vec![object(0), relationship(1)], Duration::from_secs(10))
        .await;
    for r in server.requests() {
        assert!(String::from_utf8_lossy(&r.body).contains("account_id"));
        assert!(!String::from_utf8_lossy(&r.body).contains("company_id"));
    }
}

#[tokio::test]
async fn a_strict_400_dead_letters_only_the_failed_records() {
    let server = serve(|_, _| {
        reply(
            400,
            r#"{"code":400,"error":"some data points in the request failed validation",
                "num_records_imported":2,"status":"Bad Request",
                "failed_records":[{"index":1,"$insert_id":"x","field":"properties.time",
                                   "message":"'properties.time' is invalid: must be specified as seconds since epoch"}]}"#,
        )
    })
    .await;
    let d = destination(&cfg(&server.url));
    let report = d.deliver(tracks(3), Duration::from_secs(10)).await;
    assert_eq!(
        server.requests().len(),
        1,
        "the ingested records are not resent"
    );
    let o = outcomes(&report);
    assert_eq!(o[0], Outcome::Delivered);
    assert_eq!(o[2], Outcome::Delivered);
    assert!(
        matches!(&o[1], Outcome::Dead { reason } if reason.contains("properties.time")),
        "{o:?}"
    );
}

#[tokio::test]
async fn failed_records_are_matched_by_insert_id_without_an_index() {
    let body = format!(
        r#"{{"code":400,"failed_records":[{{"insert_id":"{}","field":"event","message":"bad"}}]}}"#,
        message_id(2)
    );
    let server = serve(move |_, _| reply(400, &body)).await;
    let d = destination(&cfg(&server.url));
    let report = d.deliver(tracks(3), Duration::from_secs(10)).await;
    let o = outcomes(&report);
    assert_eq!(o[0], Outcome::Delivered);
    assert_eq!(o[1], Outcome::Delivered);
    assert!(o[2].is_dead());
}

#[tokio::test]
async fn a_200_with_status_0_isolates_the_rejected_update() {
    // /engage answers 200 with status 0 for any batch holding the bad profile.
    let server = serve(|_, r| {
        if String::from_utf8_lossy(&r.body).contains("003U00000000000005") {
            reply(
                200,
                r#"{"status":0,"error":"$set values must be JSON objects"}"#,
            )
        } else {
            reply(200, r#"{"status":1,"error":null}"#)
        }
    })
    .await;
    let d = destination(&cfg(&server.url));
    let calls: Vec<_> = (0..8).map(identify).collect();
    let report = d.deliver(calls, Duration::from_secs(10)).await;
    assert_eq!(report.delivered(), 7, "{report:?}");
    let dead: Vec<_> = report.dead().collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, message_id(5));
    assert!(
        matches!(&dead[0].outcome, Outcome::Dead { reason } if reason.contains("$set values must be JSON objects"))
    );
    assert!(
        report.requests > 1 && report.requests <= 7,
        "{} requests",
        report.requests
    );
}

#[tokio::test]
async fn placeholder_distinct_ids_are_dead_before_sending() {
    let server = serve(|_, r| ok_for(&r.path)).await;
    let d = destination(&cfg(&server.url));
    let mut bad = identify(0);
    bad.user_id = Some("undefined".into());
    let report = d
        .deliver(vec![bad, identify(1)], Duration::from_secs(10))
        .await;
    let o = outcomes(&report);
    assert!(matches!(&o[0], Outcome::Dead { reason } if reason.contains("placeholder")));
    assert_eq!(o[1], Outcome::Delivered);
    assert!(!String::from_utf8_lossy(&server.requests()[0].body).contains("undefined"));
}

#[tokio::test]
async fn limits_are_2000_events_and_regions_choose_the_host() {
    let http = sfsync_destinations::http_client().expect("client");
    let mut config = cfg("http://unused");
    config.endpoint = None;
    let d = Destination::new(&config, http.clone()).expect("us");
    assert_eq!(d.limits().max_calls, 2000);
    assert_eq!(d.limits().max_batch_bytes, 10_000_000);
    let plan = d.plan(&tracks(2001));
    assert_eq!(plan.requests.len(), 2);
    assert_eq!(plan.requests[0].calls.len(), 2000);
    assert_eq!(
        plan.requests[0].url,
        "https://api.mixpanel.com/import?strict=1"
    );
    for (region, host) in [("eu", "api-eu.mixpanel.com"), ("in", "api-in.mixpanel.com")] {
        set(&mut config, "region", region);
        let d = Destination::new(&config, http.clone()).expect("region");
        let url = d.plan(&[identify(0)]).requests[0].url.clone();
        assert_eq!(url, format!("https://{host}/engage?verbose=1&ip=0"));
    }
}

#[tokio::test]
async fn an_incomplete_service_account_is_refused() {
    let mut config = cfg("http://unused");
    set(&mut config, "project_id", "1");
    let http = sfsync_destinations::http_client().expect("client");
    let err = Destination::new(&config, http).expect_err("incomplete");
    assert!(err.to_string().contains("project_id"), "{err}");
}

#[tokio::test]
async fn a_rejected_project_token_pauses_instead_of_bisecting_to_dead_letters() {
    // Every update carries the same $token: Mixpanel's verbose answer about it is the key.
    let server = serve(|_, _| reply(200, r#"{"status":0,"error":"Invalid project token"}"#)).await;
    let d = destination(&cfg(&server.url));
    let calls: Vec<_> = (0..8).map(identify).collect();
    let report = d.deliver(calls, Duration::from_secs(10)).await;
    assert_eq!(report.dead().count(), 0, "{report:?}");
    assert_eq!(report.paused().count(), 8);
    assert_eq!(server.requests().len(), 1, "no bisection of a key problem");
}
