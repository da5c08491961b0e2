//! Bad input at every edge: records without ids, a record too large for any queue message,
//! a field of a megabyte, and SQS bodies that are not ours (malformed, oversize, not
//! decodable) handed to the map and deliver handlers. Each bad item fails alone, with a
//! reason, and never takes good ones down with it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{Value, json};
use sfsync_deliver::DeliverState;
use sfsync_e2e::aws_harness::AwsStack;
use sfsync_e2e::local::{CONFIG, Local, org, repeats};
use sfsync_e2e::*;
use sfsync_extract::{ExtractInput, ExtractState};
use sfsync_mapping::Config;
use sfsync_pipeline::deliver::DeliverPolicy;
use sfsync_pipeline::message::{CallsMessage, DeadLetter, Packer, RecordsMessage, decode};
use sfsync_pipeline::queue::SqsQueue;
use sfsync_pipeline::report::RunStatus;
use sfsync_pipeline::state::StateStore;
use sfsync_salesforce::Cursor;
use sfsync_simulator::Faults;

/// `n` bytes of printable ASCII that gzip cannot shrink.
fn noise(n: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

/// The queues and state table on moto for one test (the handlers' states are built here).
async fn moto() -> AwsStack {
    AwsStack::without_secret("sfsync-bad", 10).await
}

/// The deliver function's state for `config`, with 10 s to deliver.
fn deliver_state(aws: &AwsStack, config: &Config) -> DeliverState {
    let mut policy = DeliverPolicy::lambda();
    policy.max_budget = Duration::from_secs(10);
    aws.deliver_state_for(config, policy)
}

/// An SQS event of these (messageId, body) pairs, as Lambda hands it over.
fn event(messages: &[(&str, Option<String>)]) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id, "receiptHandle": format!("rh-{id}"), "body": body,
                "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs",
                "awsRegion": REGION,
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap_or_else(|e| panic!("{e}"))
}

fn contact(i: usize) -> Value {
    json!({
        "attributes": {"type": "Contact"},
        "Id": format!("003{i:015}"),
        "SystemModstamp": "2026-01-01T00:00:00.000+0000",
        "IsDeleted": false,
        "Email": format!("person{i}@example.com"),
        "LastName": "Ünïcødé \u{202e}\u{fffd} 🦀",
    })
}

fn records_message(sync: &str, records: Vec<Value>) -> String {
    json!({"v": 1, "run_id": "20260101T000000Z-bad", "sync": sync, "records": records}).to_string()
}

/// Bodies no stage ever writes, each with why it is bad.
fn malformed_bodies() -> Vec<(&'static str, Option<String>)> {
    let mut bodies: Vec<(&'static str, Option<String>)> = vec![
        ("no-body", None),
        ("empty", Some(String::new())),
        ("not-json", Some("{this is not a message".into())),
        ("json-null", Some("null".into())),
        ("bare-array", Some("[1,2,3]".into())),
        ("no-version", Some(r#"{"run_id":"r","sync":"contacts","records":[]}"#.into())),
        ("future-version", Some(r#"{"v":2,"run_id":"r","sync":"contacts","records":[]}"#.into())),
        ("version-as-string", Some(r#"{"v":"1","run_id":"r","sync":"contacts","records":[]}"#.into())),
        ("unknown-encoding", Some(r#"{"v":1,"encoding":"zstd","payload":"AAAA"}"#.into())),
        ("bad-base64", Some(r#"{"v":1,"encoding":"gzip+base64","payload":"!!!not base64!!!"}"#.into())),
        ("not-gzip", Some(r#"{"v":1,"encoding":"gzip+base64","payload":"aGVsbG8gd29ybGQ="}"#.into())),
        // Encodings of text that cannot be in a JSON string.
        ("lone-surrogate", Some(r#"{"v":1,"run_id":"r","sync":"contacts","destination":"seg","records":[{"Id":"\ud800"}],"calls":[{"x":"\udfff"}]}"#.into())),
        ("raw-nul", Some("{\"v\":1,\"run_id\":\"r\u{0}\",\"sync\":\"contacts\",\"records\":[]}".into())),
        ("byte-order-mark", Some(format!("\u{feff}{}", records_message("contacts", vec![contact(1)])))),
        ("replacement-chars-only", Some("\u{fffd}\u{fffd}\u{fffd}".into())),
        // A megabyte and a half of a message that never ends.
        ("oversize-unterminated", Some(format!("{{\"v\":1,\"run_id\":\"r\",\"sync\":\"contacts\",\"records\":[\"{}", "x".repeat(1_500_000)))),
    ];
    // Valid gzip+base64 of something that is not a message.
    let mut packer = Packer::new("{\"v\":1,\"nothing\":[".into(), 1 << 20, true);
    packer
        .push(&json!("junk"))
        .unwrap_or_else(|e| panic!("{e}"));
    let junk = packer
        .finish()
        .unwrap_or_else(|e| panic!("{e}"))
        .pop()
        .map(|b| b.body);
    bodies.push(("gzip-of-junk", junk));
    bodies
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_fail_alone_in_the_map_handler() {
    let aws = moto().await;
    let local = Local::start(&CONFIG, org(5), Faults::default()).await;
    let state = aws.map_state_for(&local.config);

    let mut messages = malformed_bodies();
    let specific: Vec<(&'static str, Option<String>)> = vec![
        (
            "unknown-sync",
            Some(records_message("no-such-sync", vec![contact(9)])),
        ),
        (
            "records-not-an-array",
            Some(r#"{"v":1,"run_id":"r","sync":"contacts","records":{}}"#.into()),
        ),
        (
            "no-run-id",
            Some(r#"{"v":1,"sync":"contacts","records":[]}"#.into()),
        ),
    ];
    messages.extend(specific);
    let bad: HashSet<String> = messages.iter().map(|(id, _)| id.to_string()).collect();
    // Good messages in the same batch, plain and compressed.
    messages.insert(
        3,
        (
            "good-plain",
            Some(records_message("contacts", vec![contact(1), contact(2)])),
        ),
    );
    let mut packer = Packer::new(
        Packer::records_prefix("20260101T000000Z-bad", "contacts"),
        256 * 1024,
        true,
    );
    packer.push(&contact(3)).unwrap_or_else(|e| panic!("{e}"));
    let compressed = packer
        .finish()
        .unwrap_or_else(|e| panic!("{e}"))
        .pop()
        .map(|b| b.body);
    messages.push(("good-compressed", compressed));

    let response = sfsync_map::handle(&state, event(&messages))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let failed = failed_ids(&response);
    assert!(
        failed.iter().all(|id| !id.is_empty()),
        "an empty item identifier"
    );
    assert_eq!(
        failed.iter().cloned().collect::<HashSet<_>>(),
        bad,
        "exactly the bad ones fail"
    );
    assert_eq!(repeats(&failed), 0);

    // The good records were mapped and forwarded, each once.
    let mut users: Vec<String> = Vec::new();
    for body in aws.drain(&aws.delivery_q()).await {
        let calls: CallsMessage = decode(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(calls.destination, "seg");
        users.extend(calls.calls.iter().filter_map(|c| c.user_id.clone()));
    }
    users.sort();
    assert_eq!(
        users,
        vec![
            format!("003{:015}", 1),
            format!("003{:015}", 2),
            format!("003{:015}", 3)
        ]
    );

    // No item identifier, or an empty one: the whole batch is retried, never a failure
    // reported under an empty id (which Lambda would refuse).
    for id in [Value::Null, json!("")] {
        let mut e = event(&[("good", Some(records_message("contacts", vec![contact(4)])))]);
        e.records[0].message_id = id.as_str().map(str::to_string);
        assert!(sfsync_map::handle(&state, e).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_without_ids_or_dates_are_skipped_and_counted_never_fatal() {
    let aws = moto().await;
    let local = Local::start(&CONFIG, org(5), Faults::default()).await;
    let state = aws.map_state_for(&local.config);
    let mut no_modstamp = contact(8);
    no_modstamp
        .as_object_mut()
        .map(|m| m.remove("SystemModstamp"));
    let mut bad_date = contact(9);
    bad_date["SystemModstamp"] = json!("yesterday");
    let records = vec![
        contact(1),
        json!({"SystemModstamp": "2026-01-01T00:00:00.000+0000", "Email": "a@example.com"}),
        json!({"Id": "", "SystemModstamp": "2026-01-01T00:00:00.000+0000"}),
        json!({"Id": null, "SystemModstamp": "2026-01-01T00:00:00.000+0000"}),
        json!({"Id": 42, "SystemModstamp": "2026-01-01T00:00:00.000+0000"}),
        json!("a record that is a string"),
        Value::Null,
        no_modstamp,
        bad_date,
        contact(2),
    ];
    let body =
        json!({"v": 1, "run_id": "20260101T000000Z-ids", "sync": "contacts", "records": records})
            .to_string();
    let response = sfsync_map::handle(&state, event(&[("m1", Some(body))]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(failed_ids(&response).is_empty(), "skips are not failures");
    let calls: Vec<String> = aws
        .drain(&aws.delivery_q())
        .await
        .iter()
        .flat_map(|b| {
            decode::<CallsMessage>(b)
                .unwrap_or_else(|e| panic!("{e}"))
                .calls
        })
        .filter_map(|c| c.user_id)
        .collect();
    assert_eq!(
        calls,
        vec![format!("003{:015}", 1), format!("003{:015}", 2)]
    );
    let runs = aws.store().runs(10).await.unwrap_or_else(|e| panic!("{e}"));
    let run = runs
        .iter()
        .find(|r| r.run_id == "20260101T000000Z-ids")
        .unwrap_or_else(|| panic!("no counters: {runs:?}"));
    assert_eq!(run.counts.mapped, 2, "{run}");
    assert_eq!(run.counts.skipped, 8, "{run}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_fail_alone_in_the_deliver_handler() {
    let aws = moto().await;
    let local = Local::start(&CONFIG, org(5), Faults::default()).await;
    let state = deliver_state(&aws, &local.config);
    let call = |i: usize| {
        let sync = local
            .config
            .sync("contacts")
            .cloned()
            .unwrap_or_else(|| panic!("no sync"));
        sfsync_mapping::map_record(&sync, contact(i)).unwrap_or_else(|e| panic!("{e}"))
    };
    let calls_message = |destination: &str, calls: Vec<sfsync_mapping::Call>| {
        serde_json::to_string(&CallsMessage {
            v: 1,
            run_id: "20260101T000000Z-dlv".into(),
            destination: destination.into(),
            attempt: 0,
            paused_since: None,
            calls,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let mut messages = malformed_bodies();
    messages.extend(vec![
        ("call-without-fields", Some(r#"{"v":1,"run_id":"r","destination":"seg","calls":[{"type":"identify"}]}"#.into())),
        ("dead-letter-without-call", Some(r#"{"v":1,"run_id":"r","destination":"seg","reason":"x"}"#.into())),
        ("unknown-call-type", Some(r#"{"v":1,"run_id":"r","destination":"seg","calls":[{"type":"page","messageId":"m","timestamp":"t","context":{"sfsync":{"sync":"s","object":"o","kind":"people","recordId":"r"}}}]}"#.into())),
    ]);
    let bad: HashSet<String> = messages.iter().map(|(id, _)| id.to_string()).collect();
    // Good ones: a calls message, a redriven dead letter, calls for a destination no
    // longer configured (dead-lettered), and a call too large for Segment (dead-lettered).
    messages.insert(
        2,
        (
            "good-calls",
            Some(calls_message("seg", vec![call(1), call(2)])),
        ),
    );
    let redriven = DeadLetter {
        v: 1,
        run_id: "20260101T000000Z-dlv".into(),
        destination: "seg".into(),
        reason: "HTTP 503 last week".into(),
        call: call(3),
    };
    messages.push((
        "redriven",
        Some(serde_json::to_string(&redriven).unwrap_or_else(|e| panic!("{e}"))),
    ));
    messages.push((
        "gone-destination",
        Some(calls_message("removed", vec![call(4)])),
    ));
    let mut huge = call(5);
    let mut traits = huge.traits_map();
    traits.insert("Description".into(), json!(noise(100_000)));
    huge.traits = Some(traits.into());
    messages.push((
        "too-large-for-segment",
        Some(calls_message("seg", vec![huge])),
    ));

    let response = sfsync_deliver::handle(&state, event(&messages), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let failed = failed_ids(&response);
    assert!(
        failed.iter().all(|id| !id.is_empty()),
        "an empty item identifier"
    );
    assert_eq!(
        failed.iter().cloned().collect::<HashSet<_>>(),
        bad,
        "exactly the bad ones fail"
    );

    let delivered: Vec<String> = local
        .delivered()
        .iter()
        .filter_map(|c| c["userId"].as_str().map(str::to_string))
        .collect();
    let want: Vec<String> = (1..=3).map(|i| format!("003{i:015}")).collect();
    assert_eq!(delivered, want);
    let dead: Vec<DeadLetter> = aws
        .drain(&aws.delivery_dlq)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let reasons: HashMap<String, String> = dead
        .iter()
        .map(|d| (d.call.source().record_id.clone(), d.reason.clone()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[&format!("003{:015}", 4)].contains("not in the config"),
        "{reasons:?}"
    );
    assert!(
        reasons[&format!("003{:015}", 5)].contains("too large"),
        "{reasons:?}"
    );

    let mut e = event(&[("x", Some(calls_message("seg", vec![call(6)])))]);
    e.records[0].message_id = Some(String::new());
    assert!(sfsync_deliver::handle(&state, e, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_larger_than_any_queue_message_fails_the_run_naming_it_and_holds_the_checkpoint() {
    let aws = moto().await;
    let local = Local::start(&CONFIG, org(600), Faults::default()).await;
    // A contact in the middle of the order, with 300 KB that gzip cannot shrink: no SQS
    // message can carry it, compressed or not.
    let (big_id, big_cursor) = {
        let org = local.sim.org();
        let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        let middle = org.records("Contact")[300].clone();
        let at = Cursor::of_value(&middle)
            .unwrap_or_else(|e| panic!("{e}"))
            .modstamp;
        let fields = json!({"LastName": "Huge", "Description": noise(300 * 1024)});
        let id = org.insert_late(
            "Contact",
            fields.as_object().cloned().unwrap_or_default(),
            at,
        );
        let record = org
            .record("Contact", &id)
            .unwrap_or_else(|| panic!("no {id}"));
        (
            id,
            Cursor::of_value(&record).unwrap_or_else(|e| panic!("{e}")),
        )
    };
    let client = sfsync_salesforce::ClientConfig::from_config(&local.config.salesforce)
        .and_then(sfsync_salesforce::Client::new)
        .unwrap_or_else(|e| panic!("{e}"));
    let state = ExtractState {
        config: Arc::new(local.config.clone()),
        client,
        queue: SqsQueue::new(aws.sqs.clone(), aws.records_q()),
        store: aws.store(),
        clock: Arc::new(sfsync_pipeline::extract::SystemClock),
    };
    let input = || ExtractInput {
        syncs: Some(vec!["contacts".into()]),
        ..ExtractInput::default()
    };
    let error = sfsync_extract::handle(&state, input(), "req-1", None)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains(&format!("record {big_id} cannot be enqueued")),
        "the error must name the record: {error}"
    );
    let checkpoint = aws
        .store()
        .checkpoint("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the pages before it moved the checkpoint"));
    assert!(
        checkpoint.cursor < big_cursor,
        "the checkpoint passed the record"
    );
    // Everything up to the checkpoint is on the queue; the huge record is not.
    let mut enqueued: HashMap<String, Cursor> = HashMap::new();
    for body in aws.drain(&aws.records_q()).await {
        let message: RecordsMessage = decode(&body).unwrap_or_else(|e| panic!("{e}"));
        for r in &message.records {
            let c = Cursor::of_record(r).unwrap_or_else(|e| panic!("{e}"));
            enqueued.insert(c.id.clone(), c);
        }
    }
    assert!(!enqueued.contains_key(&big_id));
    {
        let org = local.sim.org();
        let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        for r in org.records("Contact") {
            let c = Cursor::of_value(&r).unwrap_or_else(|e| panic!("{e}"));
            if c <= checkpoint.cursor {
                assert!(
                    enqueued.contains_key(&c.id),
                    "{} passed but not enqueued",
                    c.id
                );
            }
        }
    }
    let runs = aws.store().runs(10).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(runs.iter().any(|r| r.status == RunStatus::Failed
        && r.error.as_deref().is_some_and(|e| e.contains(&big_id))));

    // Someone trims the field: the next run gets past it.
    {
        let org = local.sim.org();
        let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        let fields = json!({"Description": "trimmed"});
        assert!(org.update(
            "Contact",
            &big_id,
            fields.as_object().cloned().unwrap_or_default()
        ));
    }
    let out = sfsync_extract::handle(&state, input(), "req-2", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.reports[0].status,
        RunStatus::Complete,
        "{}",
        out.reports[0]
    );
    let mut seen = false;
    for body in aws.drain(&aws.records_q()).await {
        let message: RecordsMessage = decode(&body).unwrap_or_else(|e| panic!("{e}"));
        seen |= message
            .records
            .iter()
            .any(|r| r.string_field("Id").as_deref() == Some(big_id.as_str()));
    }
    assert!(seen, "the trimmed record was extracted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_megabyte_field_is_dead_lettered_with_its_reason_and_the_run_completes() {
    let local = Local::start(&CONFIG, org(300), Faults::default()).await;
    let big_id = {
        let org = local.sim.org();
        let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        let fields = json!({"LastName": "Verbose", "Email": "v@example.com", "Description": "ä".repeat(1 << 19)});
        org.insert("Contact", fields.as_object().cloned().unwrap_or_default())
    };
    let outcome = local.run().await.unwrap_or_else(|e| panic!("{e}"));
    let contacts = outcome
        .reports
        .iter()
        .find(|r| r.sync == "contacts")
        .unwrap_or_else(|| panic!("no report"));
    assert_eq!(contacts.status, RunStatus::Complete, "{contacts}");
    assert_eq!(contacts.counts.dead, 1, "{contacts}");
    let dead = local.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].call.source().record_id, big_id);
    assert!(dead[0].reason.contains("too large"), "{}", dead[0].reason);
    // The field travelled whole to the point where it was refused.
    let description = dead[0]
        .call
        .traits
        .as_ref()
        .and_then(|t| t.get("description"))
        .and_then(|d| d.as_str().map(str::len));
    assert_eq!(description, Some(1 << 20));
    // Everything else arrived once, and the checkpoint covers the dead-lettered record.
    let ids = local.delivered_ids();
    let got: HashSet<String> = ids.iter().cloned().collect();
    let mut want = local.expected_all();
    want.remove(&dead[0].call.message_id);
    assert_eq!(got, want);
    assert_eq!(repeats(&ids), 0);
    let live = local
        .sim
        .org()
        .lock()
        .map(|o| o.records("Contact").len())
        .unwrap_or_default();
    assert_eq!(local.assert_checkpoint_covered("contacts").await, live);
}
