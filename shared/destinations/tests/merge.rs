//! `merge` calls (a converted Lead, a merged Contact or Account) in each destination's own
//! merge API, against test servers that answer as the vendors document.

mod common;

use std::time::Duration;

use common::vendors::{
    customerio_pipelines, customerio_track_people, mixpanel, refuse_none, segment_like,
    webhook_receiver,
};
use common::*;
use serde_json::{Value, json};
use sfsync_destinations::Outcome;
use sfsync_mapping::{DestinationConfig, DestinationKind, MixpanelIdMerge};

const KEY: &str = "merge_test_key_77aa";
const SITE: &str = "merge_site_1";

fn with(
    kind: DestinationKind,
    url: &str,
    set: impl FnOnce(&mut DestinationConfig),
) -> DestinationConfig {
    let mut c = config(kind);
    c.endpoint = Some(url.into());
    set(&mut c);
    c
}

fn dead_reason(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Dead { reason } => reason,
        other => panic!("expected dead, got {other:?}"),
    }
}

/// Segment, RudderStack and Customer.io Data Pipelines: a person merge is an `alias`; an
/// object merge is the "Object Deleted" of the losing object.
#[tokio::test]
async fn segment_spec_destinations_send_alias_for_people_and_delete_the_losing_object() {
    for kind in [
        DestinationKind::Segment,
        DestinationKind::Rudderstack,
        DestinationKind::Customerio,
    ] {
        let (server, ledger) = if kind == DestinationKind::Customerio {
            customerio_pipelines(KEY, refuse_none()).await
        } else {
            segment_like(KEY, refuse_none()).await
        };
        let cfg = with(kind, &server.url, |c| match kind {
            DestinationKind::Customerio => set(c, "api_key", KEY),
            _ => set(c, "write_key", KEY),
        });
        let report = destination(&cfg)
            .deliver(
                vec![merge_person(1), merge_object(2)],
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(report.delivered(), 2, "{kind}: {report:?}");
        let ledger = ledger.lock().expect("ledger");
        assert!(ledger.dropped.is_empty(), "{kind}: {:?}", ledger.dropped);
        let alias = &ledger.accepted[0];
        assert_eq!(alias["type"], "alias", "{kind}");
        assert_eq!(alias["previousId"], "003U00000000000101");
        assert_eq!(alias["userId"], "003U00000000000001");
        assert_eq!(alias["messageId"], message_id(1));
        assert!(alias.get("traits").is_none());
        let object = &ledger.accepted[1];
        assert_eq!(object["type"], "track");
        assert_eq!(object["event"], "Object Deleted");
        assert_eq!(object["anonymousId"], "sfsync-object-1-001A00000000000102");
        assert_eq!(
            object["properties"],
            json!({"objectId": "001A00000000000102", "objectTypeId": "1"})
        );
    }
}

/// Customer.io Track API v2: the `merge` person operation folds the secondary into the
/// primary, leaving one person.
#[tokio::test]
async fn customerio_track_merges_two_people_into_one() {
    let (server, people) = customerio_track_people(SITE, KEY).await;
    let cfg = with(DestinationKind::CustomerioTrack, &server.url, |c| {
        set(c, "site_id", SITE);
        set(c, "api_key", KEY);
    });
    let d = destination(&cfg);
    let mut loser = identify(101);
    loser.traits = Some(
        json!({"email": "ada@example.com", "Title": "CTO"})
            .as_object()
            .map(sfsync_mapping::JsonObject::from_map)
            .expect("an object"),
    );
    let mut winner = identify(1);
    winner.traits = Some(
        json!({"email": "ada@example.com", "Title": null})
            .as_object()
            .map(sfsync_mapping::JsonObject::from_map)
            .expect("an object"),
    );
    let report = d
        .deliver(vec![winner, loser], Duration::from_secs(10))
        .await;
    assert_eq!(report.delivered(), 2, "{report:?}");
    assert_eq!(people.lock().expect("people").profiles.len(), 2);

    let report = d
        .deliver(vec![merge_person(1)], Duration::from_secs(10))
        .await;
    assert_eq!(report.delivered(), 1, "{report:?}");
    let requests = server.requests();
    let op = &requests.last().expect("a request").json()["batch"][0];
    assert_eq!(
        op,
        &json!({"type": "person", "action": "merge",
                "primary": {"id": "003U00000000000001"}, "secondary": {"id": "003U00000000000101"}})
    );
    let people = people.lock().expect("people");
    assert_eq!(people.profiles.len(), 1, "{:?}", people.profiles);
    let ada = &people.profiles["003U00000000000001"];
    assert_eq!(ada["Title"], "CTO", "the primary inherits what it lacked");
    assert!(people.ignored.is_empty(), "{:?}", people.ignored);
}

fn traits(v: Value) -> Option<sfsync_mapping::JsonObject> {
    v.as_object().map(sfsync_mapping::JsonObject::from_map)
}

/// In AWS a merge can reach Customer.io before the identify of its survivor (another SQS
/// message, another delivery), and Track v2 ignores a merge whose primary does not exist.
/// A batch whose merge comes first still ends with one person holding the merged data:
/// the survivor is identified by id first, the merge follows in a request of its own once
/// that was accepted, and the survivor's own identify still sets its attributes. Sending
/// the merge again once the secondary is gone changes nothing.
#[tokio::test]
async fn customerio_track_merge_before_the_survivors_identify_still_leaves_one_merged_person() {
    let (server, people) = customerio_track_people(SITE, KEY).await;
    let cfg = with(DestinationKind::CustomerioTrack, &server.url, |c| {
        set(c, "site_id", SITE);
        set(c, "api_key", KEY);
    });
    let d = destination(&cfg);
    // An earlier delivery: the Lead (the merge's secondary), its attributes and an event.
    let mut lead = identify(101);
    lead.traits = traits(json!({"email": "ada@lead.example", "Company": "Ada Ltd"}));
    let report = d
        .deliver(vec![lead, track(101)], Duration::from_secs(10))
        .await;
    assert_eq!(report.delivered(), 2, "{report:?}");
    let before = server.requests().len();

    // This delivery: the merge first, the survivor's own identify after it.
    let mut contact = identify(1);
    contact.traits = traits(json!({"email": "ada@example.com", "Title": "CTO"}));
    let report = d
        .deliver(vec![merge_person(1), contact], Duration::from_secs(20))
        .await;
    assert_eq!(report.delivered(), 2, "{report:?}");

    {
        let people = people.lock().expect("people");
        assert!(people.ignored.is_empty(), "{:?}", people.ignored);
        assert_eq!(
            people.profiles.keys().collect::<Vec<_>>(),
            vec!["003U00000000000001"],
            "one person"
        );
        let ada = &people.profiles["003U00000000000001"];
        assert_eq!(
            ada["email"], "ada@example.com",
            "the survivor's own attributes"
        );
        assert_eq!(ada["Title"], "CTO");
        assert_eq!(ada["Company"], "Ada Ltd", "what only the secondary had");
        let history = &people.events["003U00000000000001"];
        assert_eq!(history.len(), 1, "the secondary's events: {history:?}");
        assert_eq!(history[0]["name"], "Call Logged");
    }
    // How it went out: the survivor identified by id alone, with the other calls; the merge
    // in a request of its own, after that one was answered.
    let requests = server.requests();
    let sent: Vec<Value> = requests[before..]
        .iter()
        .map(|r| r.json()["batch"].clone())
        .collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        sent[0][0],
        json!({"type": "person", "identifiers": {"id": "003U00000000000001"}, "action": "identify"})
    );
    assert_eq!(sent[0][1]["attributes"]["email"], "ada@example.com");
    assert_eq!(
        sent[1],
        json!([{"type": "person", "action": "merge",
        "primary": {"id": "003U00000000000001"}, "secondary": {"id": "003U00000000000101"}}])
    );
    assert!(requests[before + 1].arrived >= requests[before].answered);

    // At-least-once: the same merge again, after the secondary is gone, is harmless.
    let after_merge = {
        let people = people.lock().expect("people");
        (people.profiles.clone(), people.events.clone())
    };
    let report = d
        .deliver(vec![merge_person(1)], Duration::from_secs(20))
        .await;
    assert_eq!(report.delivered(), 1, "{report:?}");
    let people = people.lock().expect("people");
    assert!(people.ignored.is_empty(), "{:?}", people.ignored);
    assert_eq!(
        (people.profiles.clone(), people.events.clone()),
        after_merge
    );
}

/// A merge whose survivor sfsync never identifies (another sync's `where` left it out)
/// still lands: the person it creates holds the secondary's data.
#[tokio::test]
async fn customerio_track_merge_into_a_survivor_never_identified_creates_it_with_the_merged_data() {
    let (server, people) = customerio_track_people(SITE, KEY).await;
    let cfg = with(DestinationKind::CustomerioTrack, &server.url, |c| {
        set(c, "site_id", SITE);
        set(c, "api_key", KEY);
    });
    let d = destination(&cfg);
    let report = d
        .deliver(vec![identify(102)], Duration::from_secs(10))
        .await;
    assert_eq!(report.delivered(), 1, "{report:?}");
    let report = d
        .deliver(vec![merge_person(2)], Duration::from_secs(20))
        .await;
    assert_eq!(report.delivered(), 1, "{report:?}");
    let people = people.lock().expect("people");
    assert!(people.ignored.is_empty(), "{:?}", people.ignored);
    assert_eq!(
        people.profiles.keys().collect::<Vec<_>>(),
        vec!["003U00000000000002"]
    );
    assert_eq!(
        people.profiles["003U00000000000002"]["email"],
        "p102@example.com"
    );
}

/// The budget is too short to wait for the survivor's identify to settle: the merge is
/// handed back (retry later), never sent too early and never dead.
#[tokio::test]
async fn customerio_track_merge_without_budget_to_follow_its_identify_is_retried_later() {
    let (server, people) = customerio_track_people(SITE, KEY).await;
    let cfg = with(DestinationKind::CustomerioTrack, &server.url, |c| {
        set(c, "site_id", SITE);
        set(c, "api_key", KEY);
    });
    let report = destination(&cfg)
        .deliver(
            vec![merge_person(3), identify(4)],
            Duration::from_millis(1500),
        )
        .await;
    let outcomes = outcomes(&report);
    assert!(outcomes[0].is_retry_later(), "{outcomes:?}");
    assert!(outcomes[1].is_delivered(), "{outcomes:?}");
    assert!(
        server
            .requests()
            .iter()
            .all(|r| !r.json().to_string().contains("\"merge\"")),
        "no merge sent"
    );
    assert!(people.lock().expect("people").ignored.is_empty());
}

/// The dry-run plan shows the same two rounds: the survivor's identify travels with the
/// other calls (it stands for no input call), the merge in a request after them.
#[test]
fn customerio_track_plans_merges_in_a_request_after_the_other_calls() {
    let cfg = with(
        DestinationKind::CustomerioTrack,
        "http://127.0.0.1:9",
        |c| {
            set(c, "site_id", SITE);
            set(c, "api_key", KEY);
        },
    );
    let plan = destination(&cfg).plan(&[merge_person(1), identify(2), merge_object(3)]);
    assert!(plan.rejected.is_empty(), "{:?}", plan.rejected);
    let calls: Vec<Vec<usize>> = plan.requests.iter().map(|r| r.calls.clone()).collect();
    assert_eq!(calls, vec![vec![1, 2], vec![0]]);
}

#[tokio::test]
async fn customerio_track_deletes_the_losing_object_of_an_object_merge() {
    let server = serve(|_, _| reply(200, "{}")).await;
    let cfg = with(DestinationKind::CustomerioTrack, &server.url, |c| {
        set(c, "site_id", SITE);
        set(c, "api_key", KEY);
    });
    let report = destination(&cfg)
        .deliver(vec![merge_object(2)], Duration::from_secs(10))
        .await;
    assert_eq!(report.delivered(), 1, "{report:?}");
    let op = &server.requests()[0].json()["batch"][0];
    assert_eq!(op["type"], "object");
    assert_eq!(op["action"], "delete");
    assert_eq!(
        op["identifiers"],
        json!({"object_type_id": "1", "object_id": "001A00000000000102"})
    );
}

/// Mixpanel, Original ID Merge: a `$merge` event through `/import`. Simplified ID Merge
/// (the default) cannot merge two identified users: dead, with the reason and the fix.
#[tokio::test]
async fn mixpanel_sends_merge_events_for_original_id_merge_and_dead_letters_under_simplified() {
    let (server, ledger) = mixpanel(refuse_none()).await;
    let original = with(DestinationKind::Mixpanel, &server.url, |c| {
        set(c, "project_token", KEY);
        set(c, "id_merge", MixpanelIdMerge::Original);
    });
    let report = destination(&original)
        .deliver(
            vec![merge_person(1), merge_object(2)],
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(report.delivered(), 2, "{report:?}");
    let requests = server.requests();
    let import = requests
        .iter()
        .find(|r| r.path == "/import")
        .expect("an /import request");
    let event = &import.json()[0];
    assert_eq!(event["event"], "$merge");
    assert_eq!(
        event["properties"]["$distinct_ids"],
        json!(["003U00000000000001", "003U00000000000101"])
    );
    assert_eq!(event["properties"]["$insert_id"], message_id(1));
    assert_eq!(event["properties"]["distinct_id"], "003U00000000000001");
    assert!(event["properties"]["time"].as_i64().is_some_and(|t| t > 0));
    let groups = requests
        .iter()
        .find(|r| r.path == "/groups")
        .expect("a /groups request");
    assert_eq!(groups.json()[0]["$group_id"], "001A00000000000102");
    assert_eq!(groups.json()[0]["$delete"], "");
    assert_eq!(ledger.lock().expect("ledger").accepted.len(), 2);

    let simplified = with(DestinationKind::Mixpanel, &server.url, |c| {
        set(c, "project_token", KEY);
    });
    let report = destination(&simplified)
        .deliver(vec![merge_person(1)], Duration::from_secs(10))
        .await;
    let outcomes = outcomes(&report);
    let reason = dead_reason(&outcomes[0]);
    assert!(reason.contains("Simplified ID Merge"), "{reason}");
    assert!(reason.contains("id_merge = \"original\""), "{reason}");
}

#[tokio::test]
async fn amplitude_has_no_merge_so_merges_are_dead_with_the_reason() {
    let server = serve(|_, _| reply(200, "{}")).await;
    let cfg = with(DestinationKind::Amplitude, &server.url, |c| {
        set(c, "api_key", KEY)
    });
    let report = destination(&cfg)
        .deliver(
            vec![merge_person(1), merge_object(2)],
            Duration::from_secs(10),
        )
        .await;
    for outcome in outcomes(&report) {
        let reason = dead_reason(&outcome);
        assert!(reason.contains("Amplitude has no API to merge"), "{reason}");
        assert!(reason.contains("003U00000000000101") || reason.contains("001A00000000000102"));
    }
    assert!(server.requests().is_empty(), "nothing sent in its place");
}

#[tokio::test]
async fn webhooks_and_files_carry_the_merge_call_itself() {
    let (server, ledger) = webhook_receiver(refuse_none()).await;
    let mut cfg = config(DestinationKind::Webhook);
    set(&mut cfg, "url", format!("{}/hooks", server.url));
    set(&mut cfg, "secret", "whsec_c2ZzeW5jLXRlc3Qtc2lnbmluZy1rZXk=");
    let report = destination(&cfg)
        .deliver(vec![merge_person(1)], Duration::from_secs(10))
        .await;
    assert_eq!(report.delivered(), 1, "{report:?}");
    let expected = json!({
        "type": "merge", "messageId": message_id(1), "timestamp": "2024-05-01T12:34:56.789Z",
        "userId": "003U00000000000001", "previousId": "003U00000000000101",
        "entity": "person", "mergeCause": "merge",
        "context": {"sfsync": {"sync": "people-sync", "object": "Contact", "kind": "people", "recordId": "REC000000000000101"}},
    });
    assert_eq!(
        ledger.lock().expect("ledger").accepted,
        vec![expected.clone()]
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("calls.jsonl");
    let mut file = config(DestinationKind::File);
    set(&mut file, "path", path.display().to_string());
    let report = destination(&file)
        .deliver(vec![merge_person(1)], Duration::from_secs(10))
        .await;
    assert_eq!(report.delivered(), 1, "{report:?}");
    let line: Value =
        serde_json::from_str(std::fs::read_to_string(&path).expect("read").trim()).expect("json");
    assert_eq!(line, expected);
}
